/* graph.h: the traced program. Symbolic tensors (values), the forward and
 * backward tapes of nodes, layer/scope marks, the sticky build error, and
 * the compile step (AOT backward, DCE, memory plan).
 *
 * Model code never touches mb_node or mb_value directly; it calls the op
 * builders of autograd/ops.h on mb_var handles. Backends and passes read the
 * structures below.
 *
 * Errors while building: the first failing builder records a message in the
 * graph ("op 'matmul' at models/bert.c:88 (bert_layer) in scope
 * 'encoder.layer.0': inputs f32[2, 3], f32[4, 5]: ...") and returns
 * MB_VAR_NONE; every later builder given MB_VAR_NONE returns MB_VAR_NONE
 * quietly. mb_graph_status() / mb_graph_compile() report the first error. So
 * a forward reads like PyTorch, without a check after every line.
 */
#ifndef MB_AUTOGRAD_GRAPH_H
#define MB_AUTOGRAD_GRAPH_H

#include <stdint.h>
#include <stdio.h>

#include "runtime/dtype.h"
#include "runtime/error.h"
#include "runtime/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A symbolic tensor: an index into the graph's value table (-1: none). */
typedef struct {
  int32_t id;
} mb_var;

#define MB_VAR_NONE ((mb_var){-1})
static inline int mb_var_ok(mb_var v) { return v.id >= 0; }

/* Where a builder was called from; builders are macros that pass MB_HERE. */
typedef struct {
  const char *file;
  int line;
  const char *func;
} mb_srcloc;
#define MB_HERE ((mb_srcloc){__FILE__, __LINE__, __func__})

typedef enum {
  MB_VAL_INTERMEDIATE = 0, /* produced by a node */
  MB_VAL_PARAM = 1,        /* lives in the parameter store (mb_params) */
  MB_VAL_INPUT = 2         /* fed by the caller before each run */
} mb_value_kind;

#define MB_MAX_IN 12 /* the selective scan's gradient reads 11 */
#define MB_MAX_OUT 8 /* and writes 8 */
#define MB_MAX_IATTR 8
#define MB_MAX_FATTR 4

/* Attributes of a node. Each op names the slots it uses (op.h). */
typedef struct {
  int64_t i[MB_MAX_IATTR];
  double f[MB_MAX_FATTR];
  mb_shape shape; /* target shape (reshape, broadcast_to, sum_to, full, *_grad) */
} mb_attrs;

typedef struct {
  mb_dtype dtype;
  mb_shape shape;
  uint8_t kind;          /* mb_value_kind */
  uint8_t requires_grad; /* a trainable parameter reaches it through differentiable inputs */
  uint8_t is_output;     /* kept to the end of the program (loss, logits) */
  uint8_t tape;          /* 0 forward, 1 backward: where its producer sits */
  int32_t producer;      /* node index within its tape, -1 for params and inputs */
  int32_t alias_of;      /* storage root this value is a view of (reshape), -1 if none */
  int32_t param_index;   /* params: index in the store */
  int32_t grad_slot;     /* >= 0: this value is written straight into param k's gradient */
  char *name;            /* params and inputs (owned); NULL for intermediates */
  void *eager_data;      /* eager mode: this value's buffer */
} mb_value;

typedef struct {
  int32_t op; /* mb_op_id */
  int8_t n_in, n_out;
  int32_t in[MB_MAX_IN];
  int32_t out[MB_MAX_OUT];
  mb_attrs attr;
  int32_t layer;    /* recompute unit (mb_graph_layer_begin), -1 if none */
  int32_t scope;    /* index into the scope table, -1 for the root */
  int32_t origin;   /* backward nodes: forward node whose rule emitted them; clones: the cloned node */
  uint8_t recomputed; /* a forward node re-emitted in backward (activation recompute) */
  mb_srcloc where;
} mb_node;

typedef struct mb_params mb_params;
typedef struct mb_backend mb_backend;
typedef struct mb_graph mb_graph;
typedef struct mb_plan mb_plan;

/* ---- building ---- */

/* A graph whose parameters live in `params` (which must outlive it). */
int mb_graph_new(mb_params *params, mb_graph **out) MB_NODISCARD;
void mb_graph_free(mb_graph *g);

/* The first build error, MB_OK if none (its message is in the graph and in
 * mb_error_message()). */
int mb_graph_status(const mb_graph *g);
const char *mb_graph_error(const mb_graph *g);

/* A parameter by name: found in the store, or added to it while the store
 * is not yet materialised. Shape must match the store's. */
#define mb_param(g, name, shape) mb_param_((g), MB_HERE, (name), (shape))
mb_var mb_param_(mb_graph *g, mb_srcloc at, const char *name, mb_shape shape);
/* A named input of any dtype (token ids, masks, labels, cu_seqlens, ...). */
#define mb_input(g, name, dtype, shape) mb_input_((g), MB_HERE, (name), (dtype), (shape))
mb_var mb_input_(mb_graph *g, mb_srcloc at, const char *name, mb_dtype dtype, mb_shape shape);

/* The loss (a scalar float); training programs differentiate it. */
int mb_set_loss(mb_graph *g, mb_var loss);
/* Keep a value to the end of the program so it can be read (logits). */
int mb_mark_output(mb_graph *g, mb_var v);

/* Recompute units: nodes recorded between begin and end form one layer.
 * The name also becomes a scope prefix in dumps. Layers do not nest. */
int mb_graph_layer_begin(mb_graph *g, const char *name);
int mb_graph_layer_end(mb_graph *g);
/* Scopes only name things in dumps and errors ("attention", "mlp"). */
int mb_graph_scope_push(mb_graph *g, const char *name);
int mb_graph_scope_pop(mb_graph *g);

/* ---- eager mode (debugging) ----
 * Every op runs as soon as it is recorded, on `be`, in buffers of its own.
 * Parameters are read from the store (materialised on first use); inputs
 * must be fed right after they are declared. Backward ops recorded by
 * mb_graph_backward() run as they are recorded too. */
int mb_graph_set_eager(mb_graph *g, mb_backend *be);
int mb_graph_feed(mb_graph *g, mb_var input, const void *host_data);
/* The buffer of an eagerly computed value (host memory on the CPU). */
const void *mb_graph_eager_data(const mb_graph *g, mb_var v);

/* ---- compiling ---- */

typedef struct {
  int train;            /* generate the backward tape (needs mb_set_loss) */
  int recompute;        /* re-emit each layer's forward in backward instead of keeping activations */
  int poison;           /* NaN-fill every buffer when it dies and outputs before they are written */
  int no_reuse;         /* planner gives every buffer its own bytes (reference for poison tests) */
  int accumulate_grads; /* backward adds into the gradient buffer (micro-batches) instead of writing it */
} mb_compile_opts;

/* Generate the backward tape (if opts->train), eliminate dead code and plan
 * memory. The graph is then frozen: no more builders. */
int mb_graph_compile(mb_graph *g, const mb_compile_opts *opts) MB_NODISCARD;

/* Only the AOT backward (what compile calls): walk the forward tape in
 * reverse, call each op's backward rule, accumulate gradients of values
 * used several times, prune what no trainable parameter needs. Useful in
 * eager mode to debug backward rules op by op. */
int mb_graph_backward(mb_graph *g, int accumulate_grads) MB_NODISCARD;
/* After backward: the gradient value of v (MB_VAR_NONE if pruned or zero). */
mb_var mb_graph_grad(const mb_graph *g, mb_var v);

/* ---- reading the graph ---- */

int mb_graph_num_values(const mb_graph *g);
const mb_value *mb_graph_value(const mb_graph *g, mb_var v);
int mb_graph_num_nodes(const mb_graph *g, int tape);
const mb_node *mb_graph_node(const mb_graph *g, int tape, int index);
mb_var mb_graph_loss(const mb_graph *g);
mb_var mb_graph_find_input(const mb_graph *g, const char *name);
mb_params *mb_graph_params(const mb_graph *g);
const mb_plan *mb_graph_plan(const mb_graph *g);
const char *mb_graph_scope_name(const mb_graph *g, int scope);
int mb_graph_num_layers(const mb_graph *g);
const mb_compile_opts *mb_graph_opts(const mb_graph *g);
int mb_graph_is_compiled(const mb_graph *g);

/* Human-readable dump of both tapes: one line per node with op, inputs,
 * output shape/dtype, attributes, scope and caller. */
void mb_graph_dump(const mb_graph *g, FILE *f);
/* The same into a malloc'ed string (caller frees). */
char *mb_graph_dump_string(const mb_graph *g);

/* ---- used by op builders (ops_*.c) ---- */

/* Append a node of `op` with inputs `in`; shapes/dtypes of the outputs are
 * inferred by the op. Returns the number of outputs written to `out`, or a
 * negative status (recorded as the graph's error, with op, shapes, caller). */
int mb_graph_op(mb_graph *g, mb_srcloc at, int op, const mb_var *in, int n_in, const mb_attrs *attr,
                mb_var *out);
/* The same, returning the first output or MB_VAR_NONE. */
mb_var mb_graph_op1(mb_graph *g, mb_srcloc at, int op, const mb_var *in, int n_in, const mb_attrs *attr);
/* Record a builder-level error (bad argument before inference). */
mb_var mb_graph_fail(mb_graph *g, mb_srcloc at, int op, const mb_var *in, int n_in, int code,
                     const char *fmt, ...) MB_PRINTF(7, 8);
static inline mb_attrs mb_attrs_none(void) {
  mb_attrs a = {{0}, {0}, {0, {0}}};
  return a;
}

#ifdef __cplusplus
}
#endif
#endif
