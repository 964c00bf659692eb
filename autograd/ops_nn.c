/* ops_nn.c: matmul, norms, softmax, cross-entropy, embedding, pooling and
 * dropout: inference, backward rules and builders. */
#include <string.h>

#include "autograd/graph_internal.h"
#include "autograd/ops.h"
#include "autograd/ops_internal.h"

static int need_float(const mb_meta *m, const char *what) {
  if (!mb_dtype_info_of(m->dtype)->is_float)
    return MB_ERR(MB_ESHAPE, "%s must be a float tensor, got %s", what, mb_dtype_name(m->dtype));
  return MB_OK;
}

static int need_int(const mb_meta *m, const char *what) {
  if (m->dtype != MB_I32 && m->dtype != MB_I64)
    return MB_ERR(MB_ESHAPE, "%s must be i32 or i64, got %s", what, mb_dtype_name(m->dtype));
  return MB_OK;
}

static int need_vec(const mb_meta *m, int64_t n, mb_dtype dt, const char *what) {
  if (m->shape.ndim != 1 || m->shape.dim[0] != n || m->dtype != dt)
    return MB_ERR(MB_ESHAPE, "%s must be %s[%lld]", what, mb_dtype_name(dt), (long long)n);
  return MB_OK;
}

/* Per-row statistics are f32 for every float dtype but f64. */
static mb_dtype stat_dtype(mb_dtype x) { return x == MB_F64 ? MB_F64 : MB_F32; }

static mb_shape drop_last(mb_shape s) {
  s.dim[s.ndim - 1] = 0;
  s.ndim--;
  return s;
}

/* ---- matmul ---- */

MB_INFER(matmul) {
  const mb_meta *A = &in[0], *B = &in[1];
  int ta = (int)a->i[0], tb = (int)a->i[1];
  MB_TRY(need_float(A, "a"));
  if (A->dtype != B->dtype)
    return MB_ERR(MB_ESHAPE, "a and b dtypes differ");
  if (A->shape.ndim < 2 || B->shape.ndim < 2)
    return MB_ERR(MB_ESHAPE, "a and b need at least 2 dims");
  int na = A->shape.ndim, nb = B->shape.ndim;
  int64_t M = ta ? A->shape.dim[na - 1] : A->shape.dim[na - 2];
  int64_t K = ta ? A->shape.dim[na - 2] : A->shape.dim[na - 1];
  int64_t K2 = tb ? B->shape.dim[nb - 1] : B->shape.dim[nb - 2];
  int64_t N = tb ? B->shape.dim[nb - 2] : B->shape.dim[nb - 1];
  if (K != K2)
    return MB_ERR(MB_ESHAPE, "inner dimensions differ: op(a) is [%lld, %lld], op(b) is [%lld, %lld] (trans_a=%d trans_b=%d)",
                  (long long)M, (long long)K, (long long)K2, (long long)N, ta, tb);
  if (nb > 2) {
    if (na != nb)
      return MB_ERR(MB_ESHAPE, "batched b needs the same batch dims as a");
    for (int d = 0; d < na - 2; d++)
      if (A->shape.dim[d] != B->shape.dim[d])
        return MB_ERR(MB_ESHAPE, "batch dim %d differs (%lld vs %lld)", d, (long long)A->shape.dim[d],
                      (long long)B->shape.dim[d]);
  } else if (na > 2 && ta) {
    return MB_ERR(MB_ESHAPE, "a 2-D b shared across batches needs trans_a = 0");
  }
  if (n_in == 3)
    MB_TRY(need_vec(&in[2], N, A->dtype, "bias"));
  out[0].dtype = A->dtype;
  out[0].shape = A->shape;
  out[0].shape.dim[na - 2] = M;
  out[0].shape.dim[na - 1] = N;
  *n_out = 1;
  return MB_OK;
}

MB_BACKWARD(matmul) {
  mb_var gy = gout[0];
  if (!mb_var_ok(gy))
    return MB_OK;
  mb_var A = {n->in[0]}, B = {n->in[1]};
  int ta = (int)n->attr.i[0], tb = (int)n->attr.i[1];
  mb_shape as = g->vals[A.id].shape, bs = g->vals[B.id].shape;
  int shared_b = bs.ndim == 2 && as.ndim > 2;
  if (need[0])
    gin[0] = ta ? mb_matmul_(g, MB_BW, B, gy, MB_VAR_NONE, tb, 1) : mb_matmul_(g, MB_BW, gy, B, MB_VAR_NONE, 0, !tb);
  if (need[1]) {
    if (shared_b) {
      /* Sum over batches = one GEMM over the flattened rows. */
      int64_t K = as.dim[as.ndim - 1], N = g->vals[gy.id].shape.dim[as.ndim - 1];
      mb_var a2 = mb_reshape_(g, MB_BW, A, mb_shape2(-1, K));
      mb_var g2 = mb_reshape_(g, MB_BW, gy, mb_shape2(-1, N));
      gin[1] = tb ? mb_matmul_(g, MB_BW, g2, a2, MB_VAR_NONE, 1, 0) : mb_matmul_(g, MB_BW, a2, g2, MB_VAR_NONE, 1, 0);
    } else {
      gin[1] = tb ? mb_matmul_(g, MB_BW, gy, A, MB_VAR_NONE, 1, ta) : mb_matmul_(g, MB_BW, A, gy, MB_VAR_NONE, !ta, 0);
    }
  }
  if (n->n_in == 3 && need[2])
    gin[2] = mb_sum_to_(g, MB_BW, gy, g->vals[n->in[2]].shape, 1.0);
  return MB_OK;
}

mb_var mb_matmul_(mb_graph *g, mb_srcloc at, mb_var a, mb_var b, mb_var bias, int trans_a, int trans_b) {
  mb_attrs at_ = mb_attrs_none();
  at_.i[0] = !!trans_a;
  at_.i[1] = !!trans_b;
  mb_var ins[3] = {a, b, bias};
  return mb_graph_op1(g, at, MB_OP_MATMUL, ins, mb_var_ok(bias) ? 3 : 2, &at_);
}

/* ---- layernorm / rmsnorm ---- */

MB_INFER(layernorm) {
  MB_TRY(need_float(&in[0], "x"));
  if (in[0].shape.ndim < 1)
    return MB_ERR(MB_ESHAPE, "x needs at least 1 dim");
  int64_t H = in[0].shape.dim[in[0].shape.ndim - 1];
  MB_TRY(need_vec(&in[1], H, in[0].dtype, "weight"));
  MB_TRY(need_vec(&in[2], H, in[0].dtype, "bias"));
  out[0] = in[0];
  out[1].dtype = out[2].dtype = stat_dtype(in[0].dtype);
  out[1].shape = out[2].shape = drop_last(in[0].shape);
  *n_out = 3;
  return MB_OK;
}

MB_INFER(layernorm_grad) {
  /* (gy, x, w, mean, rstd) -> dx, dw, db */
  out[0] = in[1];
  out[1] = out[2] = in[2];
  *n_out = 3;
  return MB_OK;
}

MB_BACKWARD(layernorm) {
  if (!mb_var_ok(gout[0]))
    return MB_OK;
  mb_var ins[5] = {gout[0], {n->in[0]}, {n->in[1]}, {n->out[1]}, {n->out[2]}};
  mb_var o[MB_MAX_OUT];
  if (mb_graph_op(g, MB_BW, MB_OP_LAYERNORM_GRAD, ins, 5, NULL, o) < 0)
    return g->status;
  for (int j = 0; j < 3; j++)
    if (need[j])
      gin[j] = o[j];
  return MB_OK;
}

mb_var mb_layernorm_(mb_graph *g, mb_srcloc at, mb_var x, mb_var w, mb_var b, double eps) {
  mb_attrs a = mb_attrs_none();
  a.f[0] = eps;
  return mb_graph_op1(g, at, MB_OP_LAYERNORM, (mb_var[]){x, w, b}, 3, &a);
}

MB_INFER(rmsnorm) {
  MB_TRY(need_float(&in[0], "x"));
  if (in[0].shape.ndim < 1)
    return MB_ERR(MB_ESHAPE, "x needs at least 1 dim");
  MB_TRY(need_vec(&in[1], in[0].shape.dim[in[0].shape.ndim - 1], in[0].dtype, "weight"));
  out[0] = in[0];
  out[1].dtype = stat_dtype(in[0].dtype);
  out[1].shape = drop_last(in[0].shape);
  *n_out = 2;
  return MB_OK;
}

MB_INFER(rmsnorm_grad) {
  /* (gy, x, w, rstd) -> dx, dw */
  out[0] = in[1];
  out[1] = in[2];
  *n_out = 2;
  return MB_OK;
}

MB_BACKWARD(rmsnorm) {
  if (!mb_var_ok(gout[0]))
    return MB_OK;
  mb_var ins[4] = {gout[0], {n->in[0]}, {n->in[1]}, {n->out[1]}};
  mb_var o[MB_MAX_OUT];
  if (mb_graph_op(g, MB_BW, MB_OP_RMSNORM_GRAD, ins, 4, NULL, o) < 0)
    return g->status;
  for (int j = 0; j < 2; j++)
    if (need[j])
      gin[j] = o[j];
  return MB_OK;
}

mb_var mb_rmsnorm_(mb_graph *g, mb_srcloc at, mb_var x, mb_var w, double eps) {
  mb_attrs a = mb_attrs_none();
  a.f[0] = eps;
  return mb_graph_op1(g, at, MB_OP_RMSNORM, (mb_var[]){x, w}, 2, &a);
}

/* ---- softmax ---- */

MB_INFER(softmax_grad) {
  if (!mb_shape_equal(&in[0].shape, &in[1].shape) || in[0].dtype != in[1].dtype)
    return MB_ERR(MB_ESHAPE, "y and its gradient differ");
  out[0] = in[0];
  *n_out = 1;
  return MB_OK;
}

MB_BACKWARD(softmax) {
  if (need[0] && mb_var_ok(gout[0]))
    gin[0] = mb_graph_op1(g, MB_BW, MB_OP_SOFTMAX_GRAD, (mb_var[]){{n->out[0]}, gout[0]}, 2, NULL);
  return MB_OK;
}

mb_var mb_softmax_(mb_graph *g, mb_srcloc at, mb_var x) {
  if (mb_var_ok(x) && x.id < g->nvals && g->vals[x.id].shape.ndim < 1)
    return mb_graph_fail(g, at, MB_OP_SOFTMAX, &x, 1, MB_ESHAPE, "softmax needs at least 1 dim");
  return mb_graph_op1(g, at, MB_OP_SOFTMAX, &x, 1, NULL);
}

/* ---- cross-entropy ---- */

MB_INFER(cross_entropy) {
  MB_TRY(need_float(&in[0], "logits"));
  MB_TRY(need_int(&in[1], "labels"));
  if (in[0].shape.ndim != 2)
    return MB_ERR(MB_ESHAPE, "logits must be [N, C]");
  if (in[1].shape.ndim != 1 || in[1].shape.dim[0] != in[0].shape.dim[0])
    return MB_ERR(MB_ESHAPE, "labels must be [N] with N = %lld", (long long)in[0].shape.dim[0]);
  out[0].dtype = in[0].dtype;
  memset(&out[0].shape, 0, sizeof out[0].shape);
  out[1].dtype = stat_dtype(in[0].dtype);
  out[1].shape = mb_shape1(in[0].shape.dim[0]);
  *n_out = 2;
  return MB_OK;
}

MB_INFER(cross_entropy_grad) {
  /* (gloss, logits, labels, lse) -> dlogits */
  out[0] = in[1];
  *n_out = 1;
  return MB_OK;
}

MB_BACKWARD(cross_entropy) {
  if (!need[0] || !mb_var_ok(gout[0]))
    return MB_OK;
  mb_attrs a = mb_attrs_none();
  a.i[0] = n->attr.i[0];
  mb_var ins[4] = {gout[0], {n->in[0]}, {n->in[1]}, {n->out[1]}};
  gin[0] = mb_graph_op1(g, MB_BW, MB_OP_CROSS_ENTROPY_GRAD, ins, 4, &a);
  return MB_OK;
}

mb_var mb_cross_entropy_(mb_graph *g, mb_srcloc at, mb_var logits, mb_var labels, int64_t ignore_index) {
  mb_attrs a = mb_attrs_none();
  a.i[0] = ignore_index;
  return mb_graph_op1(g, at, MB_OP_CROSS_ENTROPY, (mb_var[]){logits, labels}, 2, &a);
}

/* ---- embedding ---- */

MB_INFER(embedding) {
  MB_TRY(need_int(&in[0], "ids"));
  MB_TRY(need_float(&in[1], "table"));
  if (in[1].shape.ndim != 2)
    return MB_ERR(MB_ESHAPE, "table must be [V, H]");
  if (in[0].shape.ndim >= MB_MAX_DIMS)
    return MB_ERR(MB_ESHAPE, "ids have too many dims");
  out[0].dtype = in[1].dtype;
  out[0].shape = in[0].shape;
  out[0].shape.dim[out[0].shape.ndim++] = in[1].shape.dim[1];
  *n_out = 1;
  return MB_OK;
}

MB_INFER(embedding_grad) {
  /* (ids, gy) shape = table */
  out[0].dtype = in[1].dtype;
  out[0].shape = a->shape;
  *n_out = 1;
  return MB_OK;
}

MB_BACKWARD(embedding) {
  if (!need[1] || !mb_var_ok(gout[0]))
    return MB_OK;
  mb_attrs a = mb_attrs_none();
  a.shape = g->vals[n->in[1]].shape;
  gin[1] = mb_graph_op1(g, MB_BW, MB_OP_EMBEDDING_GRAD, (mb_var[]){{n->in[0]}, gout[0]}, 2, &a);
  return MB_OK;
}

mb_var mb_embedding_(mb_graph *g, mb_srcloc at, mb_var ids, mb_var table) {
  return mb_graph_op1(g, at, MB_OP_EMBEDDING, (mb_var[]){ids, table}, 2, NULL);
}

/* ---- mean pooling ---- */

MB_INFER(mean_pool) {
  MB_TRY(need_float(&in[0], "x"));
  if (in[0].shape.ndim != 3)
    return MB_ERR(MB_ESHAPE, "x must be [B, L, H]");
  if (n_in == 2) {
    const mb_meta *m = &in[1];
    if (m->shape.ndim != 2 || m->shape.dim[0] != in[0].shape.dim[0] || m->shape.dim[1] != in[0].shape.dim[1])
      return MB_ERR(MB_ESHAPE, "mask must be [B, L] = [%lld, %lld]", (long long)in[0].shape.dim[0],
                    (long long)in[0].shape.dim[1]);
    if (!(m->dtype == in[0].dtype || m->dtype == MB_I32 || m->dtype == MB_I64 || m->dtype == MB_F32))
      return MB_ERR(MB_ESHAPE, "mask must be i32, i64 or the dtype of x");
  }
  out[0].dtype = in[0].dtype;
  out[0].shape = mb_shape2(in[0].shape.dim[0], in[0].shape.dim[2]);
  *n_out = 1;
  return MB_OK;
}

MB_INFER(mean_pool_grad) {
  out[0].dtype = in[0].dtype;
  out[0].shape = a->shape;
  *n_out = 1;
  return MB_OK;
}

MB_BACKWARD(mean_pool) {
  if (!need[0] || !mb_var_ok(gout[0]))
    return MB_OK;
  mb_attrs a = mb_attrs_none();
  a.shape = g->vals[n->in[0]].shape;
  mb_var ins[2] = {gout[0], {n->n_in == 2 ? n->in[1] : -1}};
  gin[0] = mb_graph_op1(g, MB_BW, MB_OP_MEAN_POOL_GRAD, ins, n->n_in, &a);
  return MB_OK;
}

mb_var mb_mean_pool_(mb_graph *g, mb_srcloc at, mb_var x, mb_var mask) {
  mb_var ins[2] = {x, mask};
  return mb_graph_op1(g, at, MB_OP_MEAN_POOL, ins, mb_var_ok(mask) ? 2 : 1, NULL);
}

/* ---- dropout ---- */

MB_INFER(dropout) {
  MB_TRY(need_float(&in[0], "x"));
  if ((in[1].dtype != MB_U64 && in[1].dtype != MB_I64) || in[1].shape.ndim != 1 || in[1].shape.dim[0] != 2)
    return MB_ERR(MB_ESHAPE, "rng must be u64[2] (seed, offset)");
  if (!(a->f[0] >= 0.0 && a->f[0] < 1.0))
    return MB_ERR(MB_EINVAL, "p = %g outside [0, 1)", a->f[0]);
  out[0] = in[0];
  *n_out = 1;
  return MB_OK;
}

MB_BACKWARD(dropout) {
  /* The same mask (same seed, offset, stream) scales the gradient. */
  if (need[0] && mb_var_ok(gout[0]))
    gin[0] = mb_graph_op1(g, MB_BW, MB_OP_DROPOUT, (mb_var[]){gout[0], {n->in[1]}}, 2, &n->attr);
  return MB_OK;
}

mb_var mb_dropout_(mb_graph *g, mb_srcloc at, mb_var x, double p, mb_var rng, int64_t stream) {
  mb_attrs a = mb_attrs_none();
  a.f[0] = p;
  a.i[0] = stream;
  return mb_graph_op1(g, at, MB_OP_DROPOUT, (mb_var[]){x, rng}, 2, &a);
}
