/* ops_basic.c: elementwise ops, activations, shape ops, reductions, casts
 * and constants: their inference, backward rules and builders. */
#include <math.h>
#include <string.h>

#include "autograd/graph_internal.h"
#include "autograd/ops.h"
#include "autograd/ops_internal.h"

static int need_float(const mb_meta *m, const char *what) {
  if (!mb_dtype_info_of(m->dtype)->is_float)
    return MB_ERR(MB_ESHAPE, "%s must be a float tensor, got %s", what, mb_dtype_name(m->dtype));
  return MB_OK;
}

static int same_dtype(const mb_meta *a, const mb_meta *b, const char *what) {
  if (a->dtype != b->dtype)
    return MB_ERR(MB_ESHAPE, "%s: dtypes differ (%s vs %s)", what, mb_dtype_name(a->dtype), mb_dtype_name(b->dtype));
  return MB_OK;
}

static mb_shape shape_of_var(mb_graph *g, mb_var v) { return g->vals[v.id].shape; }

/* ---- inference ---- */

MB_INFER(full) {
  if (a->i[0] < 0 || a->i[0] >= MB_DTYPE_COUNT)
    return MB_ERR(MB_EINVAL, "bad dtype %lld", (long long)a->i[0]);
  out[0].dtype = (mb_dtype)a->i[0];
  out[0].shape = a->shape;
  *n_out = 1;
  return MB_OK;
}

MB_INFER(same) {
  out[0] = in[0];
  *n_out = 1;
  return MB_OK;
}

MB_INFER(float_same) {
  MB_TRY(need_float(&in[0], "the input"));
  out[0] = in[0];
  *n_out = 1;
  return MB_OK;
}

MB_INFER(binary) {
  MB_TRY(need_float(&in[0], "a"));
  MB_TRY(same_dtype(&in[0], &in[1], "a and b"));
  out[0].dtype = in[0].dtype;
  MB_TRY(mb_meta_broadcast(&in[0].shape, &in[1].shape, &out[0].shape));
  *n_out = 1;
  return MB_OK;
}

MB_INFER(act_grad) {
  MB_TRY(need_float(&in[0], "the saved tensor"));
  MB_TRY(same_dtype(&in[0], &in[1], "saved and gradient"));
  if (!mb_shape_equal(&in[0].shape, &in[1].shape))
    return MB_ERR(MB_ESHAPE, "saved tensor and gradient differ in shape");
  out[0] = in[0];
  *n_out = 1;
  return MB_OK;
}

MB_INFER(broadcast_to) {
  if (!mb_shape_broadcasts_to(&in[0].shape, &a->shape)) {
    char sh[96];
    return MB_ERR(MB_ESHAPE, "cannot broadcast to %s", mb_shape_str(&a->shape, sh, sizeof sh));
  }
  out[0].dtype = in[0].dtype;
  out[0].shape = a->shape;
  *n_out = 1;
  return MB_OK;
}

MB_INFER(sum_to) {
  MB_TRY(need_float(&in[0], "the input"));
  if (!mb_shape_broadcasts_to(&a->shape, &in[0].shape)) {
    char sh[96];
    return MB_ERR(MB_ESHAPE, "cannot sum to %s: it does not broadcast back to the input",
                  mb_shape_str(&a->shape, sh, sizeof sh));
  }
  out[0].dtype = in[0].dtype;
  out[0].shape = a->shape;
  *n_out = 1;
  return MB_OK;
}

MB_INFER(cast) {
  mb_dtype to = (mb_dtype)a->i[0];
  if (a->i[0] < 0 || a->i[0] >= MB_DTYPE_COUNT)
    return MB_ERR(MB_EINVAL, "bad target dtype %lld", (long long)a->i[0]);
  int from_ok = mb_dtype_info_of(in[0].dtype)->is_float || mb_dtype_is_int(in[0].dtype) || in[0].dtype == MB_BOOL;
  if (!from_ok || !(mb_dtype_info_of(to)->is_float || mb_dtype_is_int(to)))
    return MB_ERR(MB_ESHAPE, "cannot cast %s to %s", mb_dtype_name(in[0].dtype), mb_dtype_name(to));
  out[0].dtype = to;
  out[0].shape = in[0].shape;
  *n_out = 1;
  return MB_OK;
}

MB_INFER(reshape) {
  if (mb_shape_numel(&a->shape) != mb_shape_numel(&in[0].shape)) {
    char sh[96];
    return MB_ERR(MB_ESHAPE, "cannot reshape %lld elements to %s", (long long)mb_shape_numel(&in[0].shape),
                  mb_shape_str(&a->shape, sh, sizeof sh));
  }
  out[0].dtype = in[0].dtype;
  out[0].shape = a->shape;
  *n_out = 1;
  return MB_OK;
}

MB_INFER(slice) {
  int64_t axis = a->i[0], start = a->i[1], len = a->i[2];
  if (axis < 0 || axis >= in[0].shape.ndim)
    return MB_ERR(MB_ESHAPE, "axis %lld out of range for %d dims", (long long)axis, in[0].shape.ndim);
  if (start < 0 || len < 1 || start + len > in[0].shape.dim[axis])
    return MB_ERR(MB_ESHAPE, "slice [%lld, %lld) outside dim %lld of size %lld", (long long)start,
                  (long long)(start + len), (long long)axis, (long long)in[0].shape.dim[axis]);
  out[0] = in[0];
  out[0].shape.dim[axis] = len;
  *n_out = 1;
  return MB_OK;
}

MB_INFER(slice_grad) {
  int64_t axis = a->i[0], start = a->i[1];
  if (a->shape.ndim != in[0].shape.ndim || axis < 0 || axis >= a->shape.ndim ||
      start + in[0].shape.dim[axis] > a->shape.dim[axis] || start < 0)
    return MB_ERR(MB_ESHAPE, "gradient does not fit into the sliced shape");
  out[0].dtype = in[0].dtype;
  out[0].shape = a->shape;
  *n_out = 1;
  return MB_OK;
}

MB_INFER(concat) {
  int64_t axis = a->i[0];
  if (axis < 0 || axis >= in[0].shape.ndim)
    return MB_ERR(MB_ESHAPE, "axis %lld out of range for %d dims", (long long)axis, in[0].shape.ndim);
  out[0] = in[0];
  for (int j = 1; j < n_in; j++) {
    MB_TRY(same_dtype(&in[0], &in[j], "concat inputs"));
    if (in[j].shape.ndim != in[0].shape.ndim)
      return MB_ERR(MB_ESHAPE, "input %d has %d dims, input 0 has %d", j, in[j].shape.ndim, in[0].shape.ndim);
    for (int d = 0; d < in[0].shape.ndim; d++)
      if (d != axis && in[j].shape.dim[d] != in[0].shape.dim[d])
        return MB_ERR(MB_ESHAPE, "input %d differs from input 0 in dim %d (not the concat axis %lld)", j, d,
                      (long long)axis);
    out[0].shape.dim[axis] += in[j].shape.dim[axis];
  }
  *n_out = 1;
  return MB_OK;
}

MB_INFER(permute) {
  int nd = in[0].shape.ndim;
  if (a->shape.ndim != nd)
    return MB_ERR(MB_ESHAPE, "permutation has %d entries for %d dims", a->shape.ndim, nd);
  int seen[MB_MAX_DIMS] = {0};
  out[0].dtype = in[0].dtype;
  out[0].shape.ndim = nd;
  for (int d = 0; d < nd; d++) {
    int64_t p = a->i[d];
    if (p < 0 || p >= nd || seen[p])
      return MB_ERR(MB_ESHAPE, "not a permutation of %d dims (entry %d = %lld)", nd, d, (long long)p);
    seen[p] = 1;
    out[0].shape.dim[d] = in[0].shape.dim[p];
  }
  *n_out = 1;
  return MB_OK;
}

/* ---- backward rules ---- */

static mb_var reduce_like(mb_graph *g, mb_var gy, mb_shape target, double scale) {
  mb_shape gs = shape_of_var(g, gy);
  if (mb_shape_equal(&gs, &target))
    return scale == 1.0 ? gy : mb_affine_(g, MB_BW, gy, scale, 0.0);
  return mb_sum_to_(g, MB_BW, gy, target, scale);
}

MB_BACKWARD(copy) {
  (void)n;
  if (need[0])
    gin[0] = gout[0];
  return MB_OK;
}

MB_BACKWARD(add) {
  if (!mb_var_ok(gout[0]))
    return MB_OK;
  for (int j = 0; j < 2; j++)
    if (need[j])
      gin[j] = reduce_like(g, gout[0], g->vals[n->in[j]].shape, n->attr.f[j]);
  return MB_OK;
}

MB_BACKWARD(mul) {
  if (!mb_var_ok(gout[0]))
    return MB_OK;
  for (int j = 0; j < 2; j++)
    if (need[j]) {
      mb_var prod = mb_mul_(g, MB_BW, gout[0], (mb_var){n->in[1 - j]});
      gin[j] = reduce_like(g, prod, g->vals[n->in[j]].shape, 1.0);
    }
  return MB_OK;
}

MB_BACKWARD(affine) {
  if (need[0] && mb_var_ok(gout[0]))
    gin[0] = mb_affine_(g, MB_BW, gout[0], n->attr.f[0], 0.0);
  return MB_OK;
}

int mb_act_saves_output(int op) { return op == MB_OP_TANH || op == MB_OP_SIGMOID || op == MB_OP_EXP; }

MB_BACKWARD(act) {
  if (!need[0] || !mb_var_ok(gout[0]))
    return MB_OK;
  mb_var saved = {mb_act_saves_output(n->op) ? n->out[0] : n->in[0]};
  mb_attrs a = mb_attrs_none();
  a.i[0] = n->op;
  gin[0] = mb_graph_op1(g, MB_BW, MB_OP_ACT_GRAD, (mb_var[]){saved, gout[0]}, 2, &a);
  return MB_OK;
}

MB_BACKWARD(broadcast_to) {
  if (need[0] && mb_var_ok(gout[0]))
    gin[0] = mb_sum_to_(g, MB_BW, gout[0], g->vals[n->in[0]].shape, n->attr.f[0]);
  return MB_OK;
}

MB_BACKWARD(sum_to) {
  if (need[0] && mb_var_ok(gout[0]))
    gin[0] = mb_broadcast_to_(g, MB_BW, gout[0], g->vals[n->in[0]].shape, n->attr.f[0]);
  return MB_OK;
}

MB_BACKWARD(cast) {
  mb_dtype from = g->vals[n->in[0]].dtype;
  if (need[0] && mb_var_ok(gout[0]) && mb_dtype_info_of(from)->is_float)
    gin[0] = mb_cast_(g, MB_BW, gout[0], from);
  return MB_OK;
}

MB_BACKWARD(reshape) {
  if (need[0] && mb_var_ok(gout[0]))
    gin[0] = mb_reshape_(g, MB_BW, gout[0], g->vals[n->in[0]].shape);
  return MB_OK;
}

MB_BACKWARD(slice) {
  if (!need[0] || !mb_var_ok(gout[0]))
    return MB_OK;
  mb_attrs a = mb_attrs_none();
  a.i[0] = n->attr.i[0];
  a.i[1] = n->attr.i[1];
  a.shape = g->vals[n->in[0]].shape;
  gin[0] = mb_graph_op1(g, MB_BW, MB_OP_SLICE_GRAD, &gout[0], 1, &a);
  return MB_OK;
}

MB_BACKWARD(concat) {
  if (!mb_var_ok(gout[0]))
    return MB_OK;
  int axis = (int)n->attr.i[0];
  int64_t off = 0;
  for (int j = 0; j < n->n_in; j++) {
    int64_t len = g->vals[n->in[j]].shape.dim[axis];
    if (need[j])
      gin[j] = mb_slice_(g, MB_BW, gout[0], axis, off, len);
    off += len;
  }
  return MB_OK;
}

MB_BACKWARD(permute) {
  if (!need[0] || !mb_var_ok(gout[0]))
    return MB_OK;
  int nd = g->vals[n->in[0]].shape.ndim, inv[MB_MAX_DIMS];
  for (int d = 0; d < nd; d++)
    inv[n->attr.i[d]] = d;
  gin[0] = mb_permute_(g, MB_BW, gout[0], nd, inv);
  return MB_OK;
}

/* ---- builders ---- */

mb_var mb_axpby_(mb_graph *g, mb_srcloc at, mb_var a, mb_var b, double alpha, double beta) {
  mb_attrs at_ = mb_attrs_none();
  at_.f[0] = alpha;
  at_.f[1] = beta;
  return mb_graph_op1(g, at, MB_OP_ADD, (mb_var[]){a, b}, 2, &at_);
}

mb_var mb_mul_(mb_graph *g, mb_srcloc at, mb_var a, mb_var b) {
  return mb_graph_op1(g, at, MB_OP_MUL, (mb_var[]){a, b}, 2, NULL);
}

mb_var mb_affine_(mb_graph *g, mb_srcloc at, mb_var x, double scale, double shift) {
  mb_attrs a = mb_attrs_none();
  a.f[0] = scale;
  a.f[1] = shift;
  return mb_graph_op1(g, at, MB_OP_AFFINE, &x, 1, &a);
}

mb_var mb_unary_(mb_graph *g, mb_srcloc at, int op, mb_var x) {
  if (op < MB_OP_RELU || op > MB_OP_EXP)
    return mb_graph_fail(g, at, op, &x, 1, MB_EINVAL, "op %d is not an activation", op);
  return mb_graph_op1(g, at, op, &x, 1, NULL);
}

static int norm_axis(mb_graph *g, mb_var x, int axis) {
  if (!mb_var_ok(x) || x.id >= g->nvals)
    return axis;
  return axis < 0 ? axis + g->vals[x.id].shape.ndim : axis;
}

mb_var mb_reshape_(mb_graph *g, mb_srcloc at, mb_var x, mb_shape shape) {
  if (!mb_var_ok(x))
    return MB_VAR_NONE;
  int infer_at = -1;
  int64_t known = 1;
  for (int d = 0; d < shape.ndim; d++) {
    if (shape.dim[d] == -1) {
      if (infer_at >= 0)
        return mb_graph_fail(g, at, MB_OP_RESHAPE, &x, 1, MB_ESHAPE, "more than one -1 in the target shape");
      infer_at = d;
    } else
      known *= shape.dim[d];
  }
  if (infer_at >= 0) {
    int64_t total = mb_shape_numel(&g->vals[x.id].shape);
    if (known == 0 || total % known != 0)
      return mb_graph_fail(g, at, MB_OP_RESHAPE, &x, 1, MB_ESHAPE, "cannot infer the -1 dim: %lld elements",
                           (long long)total);
    shape.dim[infer_at] = total / known;
  }
  mb_attrs a = mb_attrs_none();
  a.shape = shape;
  return mb_graph_op1(g, at, MB_OP_RESHAPE, &x, 1, &a);
}

mb_var mb_slice_(mb_graph *g, mb_srcloc at, mb_var x, int axis, int64_t start, int64_t length) {
  mb_attrs a = mb_attrs_none();
  a.i[0] = norm_axis(g, x, axis);
  a.i[1] = start;
  a.i[2] = length;
  return mb_graph_op1(g, at, MB_OP_SLICE, &x, 1, &a);
}

mb_var mb_select_(mb_graph *g, mb_srcloc at, mb_var x, int axis, int64_t index) {
  axis = norm_axis(g, x, axis);
  mb_var s = mb_slice_(g, at, x, axis, index, 1);
  if (!mb_var_ok(s))
    return s;
  mb_shape sh = g->vals[s.id].shape, out;
  out.ndim = 0;
  for (int d = 0; d < sh.ndim; d++)
    if (d != axis)
      out.dim[out.ndim++] = sh.dim[d];
  for (int d = out.ndim; d < MB_MAX_DIMS; d++)
    out.dim[d] = 0;
  return mb_reshape_(g, at, s, out);
}

mb_var mb_concat_(mb_graph *g, mb_srcloc at, const mb_var *xs, int n, int axis) {
  if (n < 1 || n > MB_MAX_IN)
    return mb_graph_fail(g, at, MB_OP_CONCAT, xs, n > 0 ? (n > MB_MAX_IN ? MB_MAX_IN : n) : 0, MB_EINVAL,
                         "concat takes 1 to %d inputs, got %d", MB_MAX_IN, n);
  mb_attrs a = mb_attrs_none();
  a.i[0] = norm_axis(g, xs[0], axis);
  return mb_graph_op1(g, at, MB_OP_CONCAT, xs, n, &a);
}

mb_var mb_permute_(mb_graph *g, mb_srcloc at, mb_var x, int ndim, const int *perm) {
  if (ndim < 0 || ndim > MB_MAX_DIMS)
    return mb_graph_fail(g, at, MB_OP_PERMUTE, &x, 1, MB_EINVAL, "permutation of %d dims", ndim);
  mb_attrs a = mb_attrs_none();
  a.shape.ndim = ndim;
  for (int d = 0; d < ndim; d++)
    a.i[d] = perm[d];
  return mb_graph_op1(g, at, MB_OP_PERMUTE, &x, 1, &a);
}

mb_var mb_transpose_(mb_graph *g, mb_srcloc at, mb_var x, int d0, int d1) {
  if (!mb_var_ok(x))
    return MB_VAR_NONE;
  int nd = g->vals[x.id].shape.ndim, perm[MB_MAX_DIMS];
  d0 = d0 < 0 ? d0 + nd : d0;
  d1 = d1 < 0 ? d1 + nd : d1;
  if (d0 < 0 || d0 >= nd || d1 < 0 || d1 >= nd)
    return mb_graph_fail(g, at, MB_OP_PERMUTE, &x, 1, MB_ESHAPE, "transpose dims %d, %d out of range", d0, d1);
  for (int d = 0; d < nd; d++)
    perm[d] = d;
  perm[d0] = d1;
  perm[d1] = d0;
  return mb_permute_(g, at, x, nd, perm);
}

mb_var mb_broadcast_to_(mb_graph *g, mb_srcloc at, mb_var x, mb_shape shape, double scale) {
  mb_attrs a = mb_attrs_none();
  a.shape = shape;
  a.f[0] = scale;
  return mb_graph_op1(g, at, MB_OP_BROADCAST_TO, &x, 1, &a);
}

mb_var mb_sum_to_(mb_graph *g, mb_srcloc at, mb_var x, mb_shape shape, double scale) {
  mb_attrs a = mb_attrs_none();
  a.shape = shape;
  a.f[0] = scale;
  return mb_graph_op1(g, at, MB_OP_SUM_TO, &x, 1, &a);
}

mb_var mb_sum_(mb_graph *g, mb_srcloc at, mb_var x, int mean) {
  if (!mb_var_ok(x))
    return MB_VAR_NONE;
  int64_t n = mb_shape_numel(&g->vals[x.id].shape);
  mb_shape scalar;
  memset(&scalar, 0, sizeof scalar);
  return mb_sum_to_(g, at, x, scalar, mean ? 1.0 / (double)(n ? n : 1) : 1.0);
}

mb_var mb_cast_(mb_graph *g, mb_srcloc at, mb_var x, mb_dtype dtype) {
  mb_attrs a = mb_attrs_none();
  a.i[0] = dtype;
  return mb_graph_op1(g, at, MB_OP_CAST, &x, 1, &a);
}

mb_var mb_full_(mb_graph *g, mb_srcloc at, mb_shape shape, mb_dtype dtype, double value) {
  mb_attrs a = mb_attrs_none();
  a.shape = shape;
  a.i[0] = dtype;
  a.f[0] = value;
  return mb_graph_op1(g, at, MB_OP_FULL, NULL, 0, &a);
}
