/* cuda_backend_ops.c: the CUDA kernel of every op in the op table (the glue
 * from a node's bound tensors and attributes to the launchers of
 * cuda_kernels.h and gemm.h), their workspace sizes, the fp8 matmul path,
 * and the registration. The CPU glue (kernels/cpu/) is the reference for
 * what each op reads and writes. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/graph.h"
#include "autograd/op.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/cuda_backend_internal.h"
#include "kernels/cuda/selective_scan.h"
#include "runtime/log.h"

#define STREAM(k) (cuda_of((k)->backend)->stream)
#define ERR(k) (cuda_of((k)->backend)->err)

static int64_t numel(const mb_tensor *t) { return mb_tensor_numel(t); }

static int64_t last_dim(const mb_tensor *t) { return t->shape.ndim ? t->shape.dim[t->shape.ndim - 1] : 1; }

static int is_i64(const mb_tensor *t) { return t->dtype == MB_I64; }

static int need_index(const mb_tensor *t, const char *op, const char *what) {
  if (t->dtype != MB_I32 && t->dtype != MB_I64)
    return MB_ERR(MB_EUNSUPPORTED, "cuda %s: %s must be i32 or i64, got %s", op, what, mb_dtype_name(t->dtype));
  return MB_OK;
}

static const mb_value *value_in(const mb_graph *g, const mb_node *n, int j) {
  return mb_graph_value(g, (mb_var){n->in[j]});
}

/* ---- constants, copies, elementwise ---- */

static int k_full(const mb_kernel_call *k) {
  return mb_cuda_fill(k->out[0].data, k->out[0].dtype, (size_t)numel(&k->out[0]), k->node->attr.f[0], STREAM(k));
}

static int k_copy(const mb_kernel_call *k) {
  return mb_cuda_copy_d2d(k->out[0].data, k->in[0].data, mb_tensor_nbytes(&k->in[0]), STREAM(k));
}

static int k_accumulate(const mb_kernel_call *k) {
  return mb_cuda_accumulate(k->out[0].dtype, k->out[0].data, k->in[0].data, numel(&k->out[0]), STREAM(k));
}

static int k_add(const mb_kernel_call *k) {
  return mb_cuda_binary(MB_CUDA_AXPBY, k->out[0].dtype, k->in[0].data, &k->in[0].shape, k->in[1].data,
                        &k->in[1].shape, k->out[0].data, &k->out[0].shape, (float)k->node->attr.f[0],
                        (float)k->node->attr.f[1], STREAM(k));
}

static int k_mul(const mb_kernel_call *k) {
  return mb_cuda_binary(MB_CUDA_MUL, k->out[0].dtype, k->in[0].data, &k->in[0].shape, k->in[1].data,
                        &k->in[1].shape, k->out[0].data, &k->out[0].shape, 1.0f, 1.0f, STREAM(k));
}

static int k_broadcast_to(const mb_kernel_call *k) {
  return mb_cuda_binary(MB_CUDA_SCALE, k->out[0].dtype, k->in[0].data, &k->in[0].shape, NULL, NULL,
                        k->out[0].data, &k->out[0].shape, (float)k->node->attr.f[0], 0.0f, STREAM(k));
}

/* The activation of an op id (-1 if none). */
static int act_of(int op) {
  switch (op) {
  case MB_OP_AFFINE: return MB_CUDA_AFFINE;
  case MB_OP_RELU: return MB_CUDA_RELU;
  case MB_OP_GELU: return MB_CUDA_GELU;
  case MB_OP_TANH: return MB_CUDA_TANH;
  case MB_OP_SIGMOID: return MB_CUDA_SIGMOID;
  case MB_OP_SILU: return MB_CUDA_SILU;
  case MB_OP_SOFTPLUS: return MB_CUDA_SOFTPLUS;
  case MB_OP_EXP: return MB_CUDA_EXP;
  default: return -1;
  }
}

static int k_unary(const mb_kernel_call *k) {
  int act = act_of(k->node->op);
  if (act < 0)
    return MB_ERR(MB_EINTERNAL, "cuda unary: op %s", mb_op_name(k->node->op));
  return mb_cuda_unary((mb_cuda_act)act, k->out[0].dtype, k->in[0].data, k->out[0].data, numel(&k->out[0]),
                       (float)k->node->attr.f[0], (float)k->node->attr.f[1], STREAM(k));
}

static int k_act_grad(const mb_kernel_call *k) {
  int act = act_of((int)k->node->attr.i[0]);
  if (act <= 0)
    return MB_ERR(MB_EINTERNAL, "cuda act_grad: activation op %lld", (long long)k->node->attr.i[0]);
  return mb_cuda_act_grad((mb_cuda_act)act, k->out[0].dtype, k->in[0].data, k->in[1].data, k->out[0].data,
                          numel(&k->out[0]), STREAM(k));
}

static int k_sum_to(const mb_kernel_call *k) {
  return mb_cuda_sum_to(k->out[0].dtype, k->in[0].data, &k->in[0].shape, k->out[0].data, &k->out[0].shape,
                        (float)k->node->attr.f[0], k->workspace, k->workspace_bytes, STREAM(k));
}

static size_t ws_sum_to(const mb_graph *g, const mb_node *n) {
  return mb_cuda_sum_to_workspace(&value_in(g, n, 0)->shape, &n->attr.shape);
}

static int k_cast(const mb_kernel_call *k) {
  return mb_cuda_cast(k->out[0].data, k->out[0].dtype, k->in[0].data, k->in[0].dtype, numel(&k->in[0]), STREAM(k));
}

/* ---- matmul ---- */

static fp8_state *fp8_state_for(cuda_backend *c, const mb_node *n, int64_t M, int64_t N, int64_t K, int *rc) {
  *rc = MB_OK;
  for (int i = 0; i < c->n_fp8; i++)
    if (c->fp8[i].node == n && c->fp8[i].M == M && c->fp8[i].N == N && c->fp8[i].K == K)
      return &c->fp8[i];
  if (mb_cuda_stream_is_capturing(c->stream)) {
    *rc = MB_ERR(MB_EINTERNAL, "cuda fp8 matmul: first use inside a graph capture (the warm-up run allocates)");
    return NULL;
  }
  if (c->n_fp8 == c->cap_fp8) {
    int cap = c->cap_fp8 ? 2 * c->cap_fp8 : 16;
    fp8_state *t = realloc(c->fp8, (size_t)cap * sizeof *t);
    if (!t) {
      *rc = MB_ERR(MB_ENOMEM, "cuda fp8 state");
      return NULL;
    }
    c->fp8 = t;
    c->cap_fp8 = cap;
  }
  fp8_state *s = &c->fp8[c->n_fp8];
  memset(s, 0, sizeof *s);
  s->node = n, s->M = M, s->N = N, s->K = K;
  *rc = c->alloc->alloc(c->alloc, 2 * sizeof(mb_fp8_meta), (void **)&s->meta);
  if (*rc == MB_OK)
    *rc = c->alloc->alloc(c->alloc, (size_t)(M * K), (void **)&s->qa);
  if (*rc == MB_OK)
    *rc = c->alloc->alloc(c->alloc, (size_t)(N * K), (void **)&s->qb);
  if (*rc == MB_OK)
    *rc = mb_cuda_fp8_meta_init(s->meta, 2, c->stream);
  if (*rc != MB_OK) {
    if (s->meta)
      c->alloc->free(c->alloc, s->meta);
    if (s->qa)
      c->alloc->free(c->alloc, s->qa);
    if (s->qb)
      c->alloc->free(c->alloc, s->qb);
    return NULL;
  }
  c->n_fp8++;
  return s;
}

void mb_cuda_fp8_states_free(cuda_backend *c) {
  for (int i = 0; i < c->n_fp8; i++) {
    c->alloc->free(c->alloc, c->fp8[i].meta);
    c->alloc->free(c->alloc, c->fp8[i].qa);
    c->alloc->free(c->alloc, c->fp8[i].qb);
  }
  free(c->fp8);
  c->fp8 = NULL;
  c->n_fp8 = c->cap_fp8 = 0;
}

/* C[M, N] (+ bias) with both operands quantised to e4m3: 1 if done, 0 if
 * this matmul cannot take the fp8 path (then nothing was changed), or a
 * negative status. */
static int matmul_fp8(const mb_kernel_call *k, int ta, int tb, int64_t M, int64_t N, int64_t K) {
  cuda_backend *c = cuda_of(k->backend);
  mb_dtype dt = k->out[0].dtype;
  if (K % 16 != 0 || N % 16 != 0)
    return 0;
  int rc;
  fp8_state *s = fp8_state_for(c, k->node, M, N, K, &rc);
  if (!s)
    return rc;
  if (s->disabled)
    return 0;
  /* A as [M, K], B as [N, K] (the layout cuBLASLt's fp8 kernels take) */
  MB_TRY(mb_cuda_fp8_quantize(s->qa, MB_F8E4M3, k->in[0].data, dt, ta ? K : M, ta ? M : K, ta, &s->meta[0],
                              c->stream));
  MB_TRY(mb_cuda_fp8_quantize(s->qb, MB_F8E4M3, k->in[1].data, dt, tb ? N : K, tb ? K : N, !tb, &s->meta[1],
                              c->stream));
  mb_gemm_desc d;
  memset(&d, 0, sizeof d);
  d.trans_b = 1;
  d.m = M, d.n = N, d.k = K;
  d.a_type = d.b_type = MB_F8E4M3;
  d.c_type = dt;
  d.a = s->qa, d.b = s->qb, d.c = k->out[0].data;
  d.alpha = 1.0;
  d.a_scale = &s->meta[0].scale_inv;
  d.b_scale = &s->meta[1].scale_inv;
  if (k->n_in == 3) {
    d.epilogue = MB_EPI_BIAS;
    d.bias = k->in[2].data;
  }
  rc = mb_gemm(c->gemm, &d, c->stream);
  if (rc != MB_OK) { /* no fp8 algorithm for it (or cuBLASLt refused): the plain path from now on */
    s->disabled = 1;
    char key[96];
    snprintf(key, sizeof key, "cuda-fp8-fallback-%lld-%lld-%lld-%s", (long long)M, (long long)N, (long long)K,
             mb_dtype_name(dt));
    mb_log_once(MB_LOG_WARN, key, "cuda: matmul [%lld x %lld x %lld] %s stays in %s, no fp8 algorithm: %s",
                (long long)M, (long long)N, (long long)K, mb_dtype_name(dt), mb_dtype_name(dt), mb_error_message());
    mb_error_clear();
    return 0;
  }
  MB_TRY(rc);
  MB_TRY(mb_cuda_fp8_update(s->meta, 2, MB_F8E4M3, 0, c->stream));
  return 1;
}

/* (a, b[, bias]) i0 trans_a, i1 trans_b; as kernels/cpu/cpu_matmul.c: a 2-D
 * b shared by every batch of a folds the batch into M. */
static int k_matmul(const mb_kernel_call *k) {
  cuda_backend *c = cuda_of(k->backend);
  const mb_tensor *A = &k->in[0], *B = &k->in[1], *C = &k->out[0];
  int ta = (int)k->node->attr.i[0], tb = (int)k->node->attr.i[1];
  int na = A->shape.ndim, nb = B->shape.ndim;
  int64_t M = C->shape.dim[na - 2], N = C->shape.dim[na - 1];
  int64_t K = ta ? A->shape.dim[na - 2] : A->shape.dim[na - 1];
  int64_t batch = 1;
  for (int d = 0; d < na - 2; d++)
    batch *= A->shape.dim[d];
  if (nb == 2 && !ta) {
    M *= batch;
    batch = 1;
  }
  if (nb == 2 && batch > 1)
    return MB_ERR(MB_EINTERNAL, "cuda matmul: a 2-D b with trans_a over a batch");
  int has_bias = k->n_in == 3;
  mb_dtype dt = C->dtype;
  const mb_node *n = k->node;
  if (c->opts.fp8_matmul && batch == 1 && K > 0 && (n->origin < 0 || n->recomputed) &&
      (dt == MB_BF16 || dt == MB_F16 || dt == MB_F32)) {
    int done = matmul_fp8(k, ta, tb, M, N, K);
    if (done < 0)
      return done;
    if (done)
      return MB_OK;
  }
  mb_gemm_desc d;
  memset(&d, 0, sizeof d);
  d.trans_a = ta, d.trans_b = tb;
  d.m = M, d.n = N, d.k = K;
  d.batch = batch;
  d.stride_a = M * K, d.stride_b = K * N, d.stride_c = M * N;
  d.a_type = d.b_type = d.c_type = dt;
  d.math = (dt == MB_F32 && c->opts.tf32) ? MB_GEMM_TF32 : MB_GEMM_DEFAULT;
  d.a = A->data, d.b = B->data, d.c = C->data;
  d.alpha = 1.0;
  if (has_bias && batch == 1) {
    d.epilogue = MB_EPI_BIAS;
    d.bias = k->in[2].data;
  } else if (has_bias) { /* bias rows first, then accumulate onto them */
    MB_TRY(mb_cuda_broadcast_rows(C->data, k->in[2].data, dt, batch * M, N, c->stream));
    d.beta = 1.0;
  }
  return mb_gemm(c->gemm, &d, c->stream);
}

/* ---- norms, softmax, loss ---- */

static int k_layernorm(const mb_kernel_call *k) {
  int64_t H = last_dim(&k->in[0]), rows = numel(&k->in[0]) / (H ? H : 1);
  return mb_cuda_layernorm_fwd(k->in[0].dtype, k->in[0].data, k->in[1].data, k->in[2].data, k->out[0].data,
                               k->out[1].data, k->out[2].data, rows, H, (float)k->node->attr.f[0], STREAM(k));
}

/* (gy, x, w, mean, rstd) -> dx, dw, db */
static int k_layernorm_grad(const mb_kernel_call *k) {
  int64_t H = last_dim(&k->in[1]), rows = numel(&k->in[1]) / (H ? H : 1);
  return mb_cuda_layernorm_bwd(k->in[1].dtype, k->in[0].data, k->in[1].data, k->in[2].data, k->in[3].data,
                               k->in[4].data, k->out[0].data, k->out[1].data, k->out[2].data, rows, H, k->workspace,
                               k->workspace_bytes, STREAM(k));
}

static size_t ws_norm_grad(const mb_graph *g, const mb_node *n) {
  const mb_value *x = value_in(g, n, 1);
  int64_t H = x->shape.ndim ? x->shape.dim[x->shape.ndim - 1] : 1;
  return mb_cuda_norm_bwd_workspace(mb_shape_numel(&x->shape) / (H ? H : 1), H);
}

static int k_rmsnorm(const mb_kernel_call *k) {
  int64_t H = last_dim(&k->in[0]), rows = numel(&k->in[0]) / (H ? H : 1);
  return mb_cuda_rmsnorm_fwd(k->in[0].dtype, k->in[0].data, k->in[1].data, k->out[0].data, k->out[1].data, rows, H,
                             (float)k->node->attr.f[0], STREAM(k));
}

/* (gy, x, w, rstd) -> dx, dw */
static int k_rmsnorm_grad(const mb_kernel_call *k) {
  int64_t H = last_dim(&k->in[1]), rows = numel(&k->in[1]) / (H ? H : 1);
  return mb_cuda_rmsnorm_bwd(k->in[1].dtype, k->in[0].data, k->in[1].data, k->in[2].data, k->in[3].data,
                             k->out[0].data, k->out[1].data, rows, H, k->workspace, k->workspace_bytes, STREAM(k));
}

static int k_softmax(const mb_kernel_call *k) {
  int64_t H = last_dim(&k->in[0]), rows = numel(&k->in[0]) / (H ? H : 1);
  return mb_cuda_softmax_fwd(k->in[0].dtype, k->in[0].data, k->out[0].data, rows, H, STREAM(k));
}

/* (y, gy) -> dx */
static int k_softmax_grad(const mb_kernel_call *k) {
  int64_t H = last_dim(&k->in[0]), rows = numel(&k->in[0]) / (H ? H : 1);
  return mb_cuda_softmax_bwd(k->in[0].dtype, k->in[0].data, k->in[1].data, k->out[0].data, rows, H, STREAM(k));
}

/* (logits[N, C], labels[N]) i0 ignore_index -> loss[], lse[N] */
static int k_cross_entropy(const mb_kernel_call *k) {
  MB_TRY(need_index(&k->in[1], "cross_entropy", "labels"));
  int64_t N = k->in[0].shape.dim[0], C = k->in[0].shape.dim[1];
  return mb_cuda_cross_entropy_fwd(k->in[0].dtype, k->in[0].data, k->in[1].data, is_i64(&k->in[1]), k->out[0].data,
                                   k->out[1].data, N, C, k->node->attr.i[0], k->workspace, k->workspace_bytes, ERR(k),
                                   STREAM(k));
}

/* (gloss[], logits, labels, lse) -> dlogits */
static int k_cross_entropy_grad(const mb_kernel_call *k) {
  MB_TRY(need_index(&k->in[2], "cross_entropy_grad", "labels"));
  int64_t N = k->in[1].shape.dim[0], C = k->in[1].shape.dim[1];
  return mb_cuda_cross_entropy_bwd(k->in[1].dtype, k->in[0].data, k->in[1].data, k->in[2].data, is_i64(&k->in[2]),
                                   k->in[3].data, k->out[0].data, N, C, k->node->attr.i[0], k->workspace,
                                   k->workspace_bytes, ERR(k), STREAM(k));
}

static size_t ws_cross_entropy(const mb_graph *g, const mb_node *n) {
  /* forward: logits are input 0; backward: input 1 */
  const mb_value *logits = value_in(g, n, n->op == MB_OP_CROSS_ENTROPY ? 0 : 1);
  return mb_cuda_cross_entropy_workspace(logits->shape.dim[0]);
}

/* ---- embedding, pooling, dropout ---- */

static int k_embedding(const mb_kernel_call *k) {
  MB_TRY(need_index(&k->in[0], "embedding", "ids"));
  int64_t V = k->in[1].shape.dim[0], H = k->in[1].shape.dim[1];
  return mb_cuda_embedding_fwd(k->in[1].dtype, k->in[0].data, is_i64(&k->in[0]), k->in[1].data, k->out[0].data,
                               numel(&k->in[0]), V, H, ERR(k), STREAM(k));
}

/* (ids, gy) -> dtable[V, H] */
static int k_embedding_grad(const mb_kernel_call *k) {
  MB_TRY(need_index(&k->in[0], "embedding_grad", "ids"));
  int64_t V = k->out[0].shape.dim[0], H = k->out[0].shape.dim[1];
  return mb_cuda_embedding_bwd(k->in[1].dtype, k->in[0].data, is_i64(&k->in[0]), k->in[1].data, k->out[0].data,
                               numel(&k->in[0]), V, H, k->workspace, k->workspace_bytes, ERR(k), STREAM(k));
}

static size_t ws_embedding_grad(const mb_graph *g, const mb_node *n) {
  return mb_cuda_embedding_bwd_workspace(n->attr.shape.dim[0], n->attr.shape.dim[1]);
}

/* (x[B, L, H][, mask[B, L]]) -> [B, H] */
static int k_mean_pool(const mb_kernel_call *k) {
  const mb_tensor *x = &k->in[0];
  const void *mask = k->n_in == 2 ? k->in[1].data : NULL;
  mb_dtype mdt = k->n_in == 2 ? k->in[1].dtype : MB_F32;
  return mb_cuda_mean_pool_fwd(x->dtype, x->data, mask, mdt, k->out[0].data, x->shape.dim[0], x->shape.dim[1],
                               x->shape.dim[2], STREAM(k));
}

/* (gy[B, H][, mask]) -> dx[B, L, H] */
static int k_mean_pool_grad(const mb_kernel_call *k) {
  const mb_tensor *dx = &k->out[0];
  const void *mask = k->n_in == 2 ? k->in[1].data : NULL;
  mb_dtype mdt = k->n_in == 2 ? k->in[1].dtype : MB_F32;
  return mb_cuda_mean_pool_bwd(dx->dtype, k->in[0].data, mask, mdt, dx->data, dx->shape.dim[0], dx->shape.dim[1],
                               dx->shape.dim[2], k->workspace, k->workspace_bytes, STREAM(k));
}

static size_t ws_mean_pool_grad(const mb_graph *g, const mb_node *n) {
  return mb_cuda_mean_pool_bwd_workspace(n->attr.shape.dim[0]);
}

/* (x, rng u64[2]) f0 p, i0 stream */
static int k_dropout(const mb_kernel_call *k) {
  return mb_cuda_dropout(k->in[0].dtype, k->in[0].data, k->out[0].data, numel(&k->in[0]), k->node->attr.f[0],
                         (const uint64_t *)k->in[1].data, (uint32_t)k->node->attr.i[0], STREAM(k));
}

/* ---- shapes ---- */

static void around(const mb_shape *s, int axis, int64_t *outer, int64_t *inner) {
  *outer = 1;
  *inner = 1;
  for (int d = 0; d < axis; d++)
    *outer *= s->dim[d];
  for (int d = axis + 1; d < s->ndim; d++)
    *inner *= s->dim[d];
}

/* (x) i0 axis, i1 start, i2 length */
static int k_slice(const mb_kernel_call *k) {
  int axis = (int)k->node->attr.i[0];
  int64_t start = k->node->attr.i[1], len = k->node->attr.i[2], outer, inner;
  around(&k->in[0].shape, axis, &outer, &inner);
  int64_t es = (int64_t)mb_dtype_size(k->in[0].dtype), dim = k->in[0].shape.dim[axis];
  return mb_cuda_copy_rows(k->out[0].data, len * inner * es, (const char *)k->in[0].data + start * inner * es,
                           dim * inner * es, len * inner * es, outer, STREAM(k));
}

/* (gy) i0 axis, i1 start; shape = x's shape: zeros around the slice */
static int k_slice_grad(const mb_kernel_call *k) {
  int axis = (int)k->node->attr.i[0];
  int64_t start = k->node->attr.i[1], len = k->in[0].shape.dim[axis], outer, inner;
  around(&k->out[0].shape, axis, &outer, &inner);
  int64_t es = (int64_t)mb_dtype_size(k->out[0].dtype), dim = k->out[0].shape.dim[axis];
  MB_TRY(mb_cuda_memset(k->out[0].data, 0, mb_tensor_nbytes(&k->out[0]), STREAM(k)));
  return mb_cuda_copy_rows((char *)k->out[0].data + start * inner * es, dim * inner * es, k->in[0].data,
                           len * inner * es, len * inner * es, outer, STREAM(k));
}

/* (x0..xk) i0 axis */
static int k_concat(const mb_kernel_call *k) {
  int axis = (int)k->node->attr.i[0];
  int64_t outer, inner;
  around(&k->out[0].shape, axis, &outer, &inner);
  int64_t es = (int64_t)mb_dtype_size(k->out[0].dtype), dim = k->out[0].shape.dim[axis], off = 0;
  for (int j = 0; j < k->n_in; j++) {
    int64_t len = k->in[j].shape.dim[axis];
    MB_TRY(mb_cuda_copy_rows((char *)k->out[0].data + off * inner * es, dim * inner * es, k->in[j].data,
                             len * inner * es, len * inner * es, outer, STREAM(k)));
    off += len;
  }
  return MB_OK;
}

static int k_permute(const mb_kernel_call *k) {
  int perm[MB_MAX_DIMS];
  for (int d = 0; d < k->in[0].shape.ndim; d++)
    perm[d] = (int)k->node->attr.i[d];
  return mb_cuda_permute(k->in[0].data, &k->in[0].shape, k->out[0].data, perm, mb_dtype_size(k->in[0].dtype),
                         STREAM(k));
}

/* ---- registration ---- */

void mb_cuda_register_ops(void) {
  const mb_backend_id B = MB_BACKEND_CUDA;
  mb_op_set_kernel(MB_OP_FULL, B, k_full, NULL);
  mb_op_set_kernel(MB_OP_COPY, B, k_copy, NULL);
  mb_op_set_kernel(MB_OP_GRAD_ACCUMULATE, B, k_accumulate, NULL);
  mb_op_set_kernel(MB_OP_MATMUL, B, k_matmul, NULL);
  mb_op_set_kernel(MB_OP_ADD, B, k_add, NULL);
  mb_op_set_kernel(MB_OP_MUL, B, k_mul, NULL);
  mb_op_set_kernel(MB_OP_AFFINE, B, k_unary, NULL);
  for (int op = MB_OP_RELU; op <= MB_OP_EXP; op++)
    mb_op_set_kernel(op, B, k_unary, NULL);
  mb_op_set_kernel(MB_OP_ACT_GRAD, B, k_act_grad, NULL);
  mb_op_set_kernel(MB_OP_LAYERNORM, B, k_layernorm, NULL);
  mb_op_set_kernel(MB_OP_LAYERNORM_GRAD, B, k_layernorm_grad, ws_norm_grad);
  mb_op_set_kernel(MB_OP_RMSNORM, B, k_rmsnorm, NULL);
  mb_op_set_kernel(MB_OP_RMSNORM_GRAD, B, k_rmsnorm_grad, ws_norm_grad);
  mb_op_set_kernel(MB_OP_SOFTMAX, B, k_softmax, NULL);
  mb_op_set_kernel(MB_OP_SOFTMAX_GRAD, B, k_softmax_grad, NULL);
  mb_op_set_kernel(MB_OP_CROSS_ENTROPY, B, k_cross_entropy, ws_cross_entropy);
  mb_op_set_kernel(MB_OP_CROSS_ENTROPY_GRAD, B, k_cross_entropy_grad, ws_cross_entropy);
  mb_op_set_kernel(MB_OP_EMBEDDING, B, k_embedding, NULL);
  mb_op_set_kernel(MB_OP_EMBEDDING_GRAD, B, k_embedding_grad, ws_embedding_grad);
  mb_op_set_kernel(MB_OP_MEAN_POOL, B, k_mean_pool, NULL);
  mb_op_set_kernel(MB_OP_MEAN_POOL_GRAD, B, k_mean_pool_grad, ws_mean_pool_grad);
  mb_op_set_kernel(MB_OP_DROPOUT, B, k_dropout, NULL);
  mb_op_set_kernel(MB_OP_SLICE, B, k_slice, NULL);
  mb_op_set_kernel(MB_OP_SLICE_GRAD, B, k_slice_grad, NULL);
  mb_op_set_kernel(MB_OP_CONCAT, B, k_concat, NULL);
  mb_op_set_kernel(MB_OP_PERMUTE, B, k_permute, NULL);
  mb_op_set_kernel(MB_OP_BROADCAST_TO, B, k_broadcast_to, NULL);
  mb_op_set_kernel(MB_OP_SUM_TO, B, k_sum_to, ws_sum_to);
  mb_op_set_kernel(MB_OP_CAST, B, k_cast, NULL);
  mb_cuda_attn_register_ops(); /* MB_OP_ATTENTION[_GRAD]: kernels/cuda/attention_ops.c */
  mb_cuda_scan_register_ops(); /* MB_OP_SELECTIVE_SCAN[_GRAD], MB_OP_CONV1D[_GRAD]: kernels/cuda/scan_ops.c */
}

static pthread_once_t register_once = PTHREAD_ONCE_INIT;

void mb_kernels_cuda_init(void) { pthread_once(&register_once, mb_cuda_register_ops); }
