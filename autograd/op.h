/* op.h: the op table. One entry per op: id, name, how many inputs, shape and
 * dtype inference, the backward rule (which emits ordinary ops), the names
 * of its attribute slots (for dumps), and one kernel slot per backend.
 *
 * Adding an op: an id below, an entry in the table (autograd/ops_*.c: infer
 * + backward + builder), and one kernel per backend registered with
 * mb_op_set_kernel() from that backend's init (kernels/cpu/cpu_backend.c).
 */
#ifndef MB_AUTOGRAD_OP_H
#define MB_AUTOGRAD_OP_H

#include <stddef.h>
#include <stdint.h>

#include "autograd/graph.h"
#include "runtime/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  MB_OP_INVALID = 0,
  /* constants and copies */
  MB_OP_FULL,            /* () -> shape attr filled with f0 */
  MB_OP_COPY,            /* (x) -> x */
  MB_OP_GRAD_ACCUMULATE, /* (g) -> out += g (out is a parameter's gradient) */
  /* linear algebra */
  MB_OP_MATMUL, /* (a, b[, bias]) i0 trans_a, i1 trans_b */
  /* elementwise with broadcasting */
  MB_OP_ADD,    /* (a, b) f0*a + f1*b */
  MB_OP_MUL,    /* (a, b) a*b */
  MB_OP_AFFINE, /* (x) f0*x + f1 */
  /* activations: (x) -> f(x); their gradients are MB_OP_ACT_GRAD */
  MB_OP_RELU,
  MB_OP_GELU, /* exact erf form */
  MB_OP_TANH,
  MB_OP_SIGMOID,
  MB_OP_SILU,
  MB_OP_SOFTPLUS, /* threshold 20 like torch */
  MB_OP_EXP,
  MB_OP_ACT_GRAD, /* (saved, gy) i0 = activation op id; saved is x or y (see act_saves_output) */
  /* normalisation and softmax over the last dimension */
  MB_OP_LAYERNORM,      /* (x, w, b) f0 eps -> y, mean, rstd */
  MB_OP_LAYERNORM_GRAD, /* (gy, x, w, mean, rstd) -> dx, dw, db */
  MB_OP_RMSNORM,        /* (x, w) f0 eps -> y, rstd */
  MB_OP_RMSNORM_GRAD,   /* (gy, x, w, rstd) -> dx, dw */
  MB_OP_SOFTMAX,        /* (x) -> y */
  MB_OP_SOFTMAX_GRAD,   /* (y, gy) -> dx */
  /* losses */
  MB_OP_CROSS_ENTROPY,      /* (logits[N,C], labels int[N]) i0 ignore_index -> loss[], lse[N] */
  MB_OP_CROSS_ENTROPY_GRAD, /* (gloss[], logits, labels, lse) -> dlogits */
  /* lookups, pooling, regularisation */
  MB_OP_EMBEDDING,      /* (ids int[...], table[V,H]) -> [..., H] */
  MB_OP_EMBEDDING_GRAD, /* (ids, gy) shape [V,H] -> dtable (scatter-add) */
  MB_OP_MEAN_POOL,      /* (x[B,L,H][, mask[B,L]]) -> [B,H] */
  MB_OP_MEAN_POOL_GRAD, /* (gy[B,H][, mask]) shape [B,L,H] -> dx */
  MB_OP_DROPOUT,        /* (x, rng u64[2] = seed, offset) f0 p, i0 stream -> y; its own backward */
  /* shapes (no strides: every op but reshape copies) */
  MB_OP_RESHAPE,      /* (x) shape -> view of x's storage */
  MB_OP_SLICE,        /* (x) i0 axis, i1 start, i2 length */
  MB_OP_SLICE_GRAD,   /* (gy) i0 axis, i1 start, shape = x's shape -> zero-padded */
  MB_OP_CONCAT,       /* (x0..xk) i0 axis */
  MB_OP_PERMUTE,      /* (x) i[0..ndim-1] = perm: out dim d is input dim perm[d] */
  MB_OP_BROADCAST_TO, /* (x) shape, f0 scale */
  MB_OP_SUM_TO,       /* (x) shape, f0 scale: sum over broadcast dimensions */
  MB_OP_CAST,         /* (x) i0 dtype */
  /* sequence kernels (kernels/cpu/attention.c, selective_scan.c, conv1d.c) */
  MB_OP_ATTENTION,
  MB_OP_ATTENTION_GRAD,
  MB_OP_SELECTIVE_SCAN,
  MB_OP_SELECTIVE_SCAN_GRAD,
  MB_OP_CONV1D,
  MB_OP_CONV1D_GRAD,
  MB_OP_COUNT
} mb_op_id;

typedef enum { MB_BACKEND_CPU = 0, MB_BACKEND_CUDA = 1, MB_BACKEND_COUNT } mb_backend_id;

/* Output metadata computed by inference. */
typedef struct {
  mb_dtype dtype;
  mb_shape shape;
} mb_meta;

/* Infer the outputs' dtypes and shapes from the inputs' and the attributes;
 * on a mismatch return MB_ERR(MB_ESHAPE, "why") (the graph adds op, shapes
 * and caller). */
typedef int (*mb_infer_fn)(const mb_meta *in, int n_in, const mb_attrs *a, mb_meta *out, int *n_out);

/* Emit the gradients of the inputs of node `n` (inputs and outputs already
 * remapped for recompute). gout[k]: gradient of output k, or MB_VAR_NONE when
 * nothing flows back through it. need[j]: whether input j wants a gradient;
 * write gin[j] (or leave MB_VAR_NONE for zero). Build with the ordinary
 * builders; they append to the backward tape. */
typedef int (*mb_backward_fn)(mb_graph *g, const mb_node *n, const mb_var *gout, const uint8_t *need,
                              mb_var *gin);

/* A kernel call: inputs and outputs as bound tensors (pointers already in the
 * backend's memory), the node (op and attributes), optional scratch. */
typedef struct mb_kernel_call {
  const mb_node *node;
  int n_in, n_out;
  mb_tensor in[MB_MAX_IN];
  mb_tensor out[MB_MAX_OUT];
  void *workspace;
  size_t workspace_bytes;
  mb_backend *backend;
} mb_kernel_call;

typedef int (*mb_kernel_fn)(const mb_kernel_call *k);
/* Scratch a kernel needs for this node (0 if none); planned like any buffer. */
typedef size_t (*mb_workspace_fn)(const mb_graph *g, const mb_node *n);

enum {
  MB_OPF_VIEW = 1u << 0,         /* output 0 shares input 0's storage (no kernel runs) */
  MB_OPF_READS_OUTPUT = 1u << 1, /* kernel reads its output (accumulates into it) */
  MB_OPF_RANDOM = 1u << 2        /* depends on an RNG input; recompute replays the same stream */
};

typedef struct {
  const char *name;
  int min_in, max_in;
  unsigned flags;
  uint32_t diff_inputs; /* bit j: input j is differentiable */
  mb_infer_fn infer;
  mb_backward_fn backward; /* NULL: no gradient flows through this op */
  const char *iattr[MB_MAX_IATTR]; /* names of the attribute slots in use (dumps) */
  const char *fattr[MB_MAX_FATTR];
  int shape_attr; /* 1: attr.shape is meaningful */
} mb_op_def;

const mb_op_def *mb_op_get(int op);
const char *mb_op_name(int op);
/* Op id by name, or MB_OP_INVALID. */
int mb_op_find(const char *name);

/* Register a backend's kernel for an op (idempotent; last one wins). */
void mb_op_set_kernel(int op, mb_backend_id be, mb_kernel_fn fn, mb_workspace_fn ws);
mb_kernel_fn mb_op_kernel(int op, mb_backend_id be);
mb_workspace_fn mb_op_workspace(int op, mb_backend_id be);

/* Helpers for op definitions. */
int mb_meta_broadcast(const mb_shape *a, const mb_shape *b, mb_shape *out);
/* 1 if `from` broadcasts to `to` (numpy rules, right-aligned). */
int mb_shape_broadcasts_to(const mb_shape *from, const mb_shape *to);
int mb_dtype_is_int(mb_dtype dt);
static inline int mb_dtype_is_compute_float(mb_dtype dt) { return dt == MB_F32 || dt == MB_F64; }

#ifdef __cplusplus
}
#endif
#endif
