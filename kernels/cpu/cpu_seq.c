/* cpu_seq.c: the op-table glue for the fused sequence kernels
 * (kernels/cpu/attention.c, selective_scan.c, conv1d.c): descriptors from
 * the node's shapes and attributes, f32/f64 dispatch, planned workspaces.
 */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "autograd/graph.h"
#include "kernels/cpu/cpu_internal.h"

#include "kernels/cpu/attention.h"
#include "kernels/cpu/conv1d.h"
#include "kernels/cpu/selective_scan.h"
#include "kernels/seq_op_desc.h"
#include "runtime/alloc.h"
#include "runtime/dtype.h"

/* The planned workspace when it is big enough, else NULL (the kernel then
 * allocates: the thread count may have grown since planning). */
static void *ws_or_null(const mb_kernel_call *k, size_t need, size_t *bytes) {
  if (k->workspace && k->workspace_bytes >= need) {
    *bytes = k->workspace_bytes;
    return k->workspace;
  }
  *bytes = 0;
  return NULL;
}

static const mb_value *val(const mb_graph *g, int32_t id) { return mb_graph_value(g, (mb_var){id}); }

/* ---- attention ---- */

/* mask_at: index of the key_mask / cu_seqlens input (3 forward, 6 backward). */
static void attn_desc_shape(const mb_shape *q, const mb_attrs *a, mb_attn_desc *d) {
  memset(d, 0, sizeof *d);
  d->batch = (int)q->dim[0];
  d->seqlen = (int)q->dim[1];
  d->heads = (int)q->dim[2];
  d->head_dim = (int)q->dim[3];
  d->scale = a->f[0];
  d->causal = (int)a->i[0];
}

static void attn_desc(const mb_kernel_call *k, int mask_at, mb_attn_desc *d) {
  attn_desc_shape(&k->in[0].shape, &k->node->attr, d);
  if (k->node->attr.i[1] == 1)
    d->key_mask = k->in[mask_at].data;
  else if (k->node->attr.i[1] == 2) {
    d->cu_seqlens = k->in[mask_at].data;
    d->nseq = (int)k->in[mask_at].shape.dim[0] - 1;
  }
}

/* The fp8 attention's inputs as a GPU quantises them (attr i2; kernels/cuda
 * optim.cu, current scaling): scale = 448 / amax(x) in f32 (1 when amax is
 * 0 or not finite), code = e4m3(x * scale) saturated, and the value the
 * e4m3 kernel multiplies by is code * (1 / scale). dst gets those values. */
#define ATTN_FP8_ROUNDTRIP(T)                                                                                    \
  static void attn_fp8_roundtrip_##T(T *dst, const T *src, size_t n) {                                         \
    float amax = 0.0f;                                                                                         \
    for (size_t i = 0; i < n; i++) {                                                                           \
      const float a = fabsf((float)src[i]);                                                                    \
      amax = (a > amax || isnan(a)) ? a : amax;                                                                \
    }                                                                                                          \
    const float s = amax > 0.0f && isfinite(amax) ? 448.0f / amax : 1.0f, inv = 1.0f / s;                      \
    for (size_t i = 0; i < n; i++)                                                                             \
      dst[i] = (T)(mb_e4m3_to_f32(mb_f32_to_e4m3((float)src[i] * s, MB_FP8_SATFINITE)) * inv);                \
  }
ATTN_FP8_ROUNDTRIP(float)
ATTN_FP8_ROUNDTRIP(double)

static int attention_kernel(const mb_kernel_call *k) {
  mb_attn_desc d;
  attn_desc(k, 3, &d);
  size_t es = mb_dtype_size(k->in[0].dtype), wb;
  void *ws = ws_or_null(k, mb_cpu_attn_fwd_workspace(&d, es), &wb);
  const void *q = k->in[0].data, *kk = k->in[1].data, *v = k->in[2].data;
  void *q8 = NULL; /* fp8: q, k, v through e4m3, one buffer */
  const mb_dtype dt = k->in[0].dtype;
  if (k->node->attr.i[2] && (dt == MB_F32 || dt == MB_F64)) {
    const size_t n = (size_t)mb_shape_numel(&k->in[0].shape);
    q8 = mb_host_malloc(3 * n * es);
    if (!q8)
      return MB_ERR(MB_ENOMEM, "cpu fp8 attention: %zu bytes for the e4m3 copies of q, k, v", 3 * n * es);
    for (int j = 0; j < 3; j++) {
      if (dt == MB_F32)
        attn_fp8_roundtrip_float((float *)q8 + j * n, k->in[j].data, n);
      else
        attn_fp8_roundtrip_double((double *)q8 + j * n, k->in[j].data, n);
    }
    q = q8, kk = (char *)q8 + n * es, v = (char *)q8 + 2 * n * es;
  }
  int rc;
  switch (dt) {
  case MB_F32: rc = mb_cpu_attn_fwd_f32(&d, q, kk, v, k->out[0].data, k->out[1].data, ws, wb); break;
  case MB_F64: rc = mb_cpu_attn_fwd_f64(&d, q, kk, v, k->out[0].data, k->out[1].data, ws, wb); break;
  default: rc = mb_cpu_unsupported(k, 0);
  }
  mb_host_free(q8);
  return rc;
}

/* (q, k, v, out, lse, dout [, mask]) -> dq, dk, dv */
static int attention_grad_kernel(const mb_kernel_call *k) {
  mb_attn_desc d;
  attn_desc(k, 6, &d);
  size_t es = mb_dtype_size(k->in[0].dtype), wb;
  void *ws = ws_or_null(k, mb_cpu_attn_bwd_workspace(&d, es), &wb);
  const mb_tensor *in = k->in, *out = k->out;
  switch (k->in[0].dtype) {
  case MB_F32:
    return mb_cpu_attn_bwd_f32(&d, in[0].data, in[1].data, in[2].data, in[3].data, in[4].data, in[5].data,
                               out[0].data, out[1].data, out[2].data, ws, wb);
  case MB_F64:
    return mb_cpu_attn_bwd_f64(&d, in[0].data, in[1].data, in[2].data, in[3].data, in[4].data, in[5].data,
                               out[0].data, out[1].data, out[2].data, ws, wb);
  default:
    return mb_cpu_unsupported(k, 0);
  }
}

static size_t attention_ws(const mb_graph *g, const mb_node *n) {
  const mb_value *q = val(g, n->in[0]);
  mb_attn_desc d;
  attn_desc_shape(&q->shape, &n->attr, &d);
  return n->op == MB_OP_ATTENTION ? mb_cpu_attn_fwd_workspace(&d, mb_dtype_size(q->dtype))
                                  : mb_cpu_attn_bwd_workspace(&d, mb_dtype_size(q->dtype));
}

/* ---- selective scan ---- */

/* The CPU kernels take one dtype for activations and parameters (the op
 * table allows the parameters their own: f32 masters beside bf16 on the GPU). */
static int same_dtype(const mb_kernel_call *k, const int *idx, int n) {
  for (int j = 0; j < n; j++)
    if (k->in[idx[j]].dtype != k->in[0].dtype)
      return MB_ERR(MB_EUNSUPPORTED, "cpu kernel for '%s' needs input %d in %s like input 0, got %s (mixed dtypes "
                    "run on the GPU only)", mb_op_name(k->node->op), idx[j], mb_dtype_name(k->in[0].dtype),
                    mb_dtype_name(k->in[idx[j]].dtype));
  return MB_OK;
}

static const int SCAN_PARAMS[3] = {2, 5, 7}; /* A_log, D, delta_bias */
static const int CONV_PARAMS[2] = {1, 2};    /* w, bias */

#define SCAN_IN(T, k) \
  {(const T *)(k)->in[0].data, (const T *)(k)->in[1].data, (const T *)(k)->in[2].data, (const T *)(k)->in[3].data, \
   (const T *)(k)->in[4].data, (const T *)(k)->in[5].data, (const T *)(k)->in[6].data, (const T *)(k)->in[7].data}

static int scan_kernel(const mb_kernel_call *k) {
  MB_TRY(same_dtype(k, SCAN_PARAMS, 3));
  mb_scan_desc d;
  mb_scan_desc_from_call(k, 8, &d);
  size_t es = mb_dtype_size(k->in[0].dtype), wb;
  void *ws = ws_or_null(k, mb_cpu_scan_fwd_workspace(&d, es), &wb);
  switch (k->in[0].dtype) {
  case MB_F32: {
    mb_scan_in_f32 in = SCAN_IN(float, k);
    return mb_cpu_scan_fwd_f32(&d, &in, k->out[0].data, k->out[1].data, ws, wb);
  }
  case MB_F64: {
    mb_scan_in_f64 in = SCAN_IN(double, k);
    return mb_cpu_scan_fwd_f64(&d, &in, k->out[0].data, k->out[1].data, ws, wb);
  }
  default:
    return mb_cpu_unsupported(k, 0);
  }
}

/* (u, delta, A_log, B, C, D, z, delta_bias, states, dy [, cu]) -> 8 gradients */
static int scan_grad_kernel(const mb_kernel_call *k) {
  MB_TRY(same_dtype(k, SCAN_PARAMS, 3));
  mb_scan_desc d;
  mb_scan_desc_from_call(k, 10, &d);
  size_t es = mb_dtype_size(k->in[0].dtype), wb;
  void *ws = ws_or_null(k, mb_cpu_scan_bwd_workspace(&d, es), &wb);
  void *o[8];
  for (int j = 0; j < 8; j++)
    o[j] = k->out[j].data;
  switch (k->in[0].dtype) {
  case MB_F32: {
    mb_scan_in_f32 in = SCAN_IN(float, k);
    mb_scan_grad_f32 gr = {o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]};
    return mb_cpu_scan_bwd_f32(&d, &in, k->in[8].data, k->in[9].data, &gr, ws, wb);
  }
  case MB_F64: {
    mb_scan_in_f64 in = SCAN_IN(double, k);
    mb_scan_grad_f64 gr = {o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]};
    return mb_cpu_scan_bwd_f64(&d, &in, k->in[8].data, k->in[9].data, &gr, ws, wb);
  }
  default:
    return mb_cpu_unsupported(k, 0);
  }
}

static size_t scan_ws(const mb_graph *g, const mb_node *n) {
  const mb_value *u = val(g, n->in[0]), *A = val(g, n->in[2]);
  mb_scan_desc d;
  mb_scan_desc_from_shapes(&u->shape, &A->shape, &n->attr, &d);
  return n->op == MB_OP_SELECTIVE_SCAN ? mb_cpu_scan_fwd_workspace(&d, mb_dtype_size(u->dtype))
                                       : mb_cpu_scan_bwd_workspace(&d, mb_dtype_size(u->dtype));
}

/* ---- conv1d ---- */

static int conv1d_kernel(const mb_kernel_call *k) {
  MB_TRY(same_dtype(k, CONV_PARAMS, 2));
  mb_conv1d_desc d;
  mb_conv1d_desc_from_call(k, 3, &d);
  const mb_tensor *in = k->in;
  switch (in[0].dtype) {
  case MB_F32: return mb_cpu_conv1d_fwd_f32(&d, in[0].data, in[1].data, in[2].data, k->out[0].data);
  case MB_F64: return mb_cpu_conv1d_fwd_f64(&d, in[0].data, in[1].data, in[2].data, k->out[0].data);
  default: return mb_cpu_unsupported(k, 0);
  }
}

/* (x, w, bias, dy [, cu]) -> dx, dw, dbias */
static int conv1d_grad_kernel(const mb_kernel_call *k) {
  MB_TRY(same_dtype(k, CONV_PARAMS, 2));
  mb_conv1d_desc d;
  mb_conv1d_desc_from_call(k, 4, &d);
  size_t wb;
  void *ws = ws_or_null(k, mb_cpu_conv1d_bwd_workspace(&d, mb_dtype_size(k->in[0].dtype)), &wb);
  const mb_tensor *in = k->in, *out = k->out;
  switch (in[0].dtype) {
  case MB_F32:
    return mb_cpu_conv1d_bwd_f32(&d, in[0].data, in[1].data, in[2].data, in[3].data, out[0].data, out[1].data,
                                 out[2].data, ws, wb);
  case MB_F64:
    return mb_cpu_conv1d_bwd_f64(&d, in[0].data, in[1].data, in[2].data, in[3].data, out[0].data, out[1].data,
                                 out[2].data, ws, wb);
  default:
    return mb_cpu_unsupported(k, 0);
  }
}

static size_t conv1d_grad_ws(const mb_graph *g, const mb_node *n) {
  const mb_value *x = val(g, n->in[0]), *w = val(g, n->in[1]);
  mb_conv1d_desc d;
  mb_conv1d_desc_from_shapes(&x->shape, &w->shape, &n->attr, &d);
  return mb_cpu_conv1d_bwd_workspace(&d, mb_dtype_size(x->dtype));
}

void mb_cpu_register_seq(void) {
  mb_op_set_kernel(MB_OP_ATTENTION, MB_BACKEND_CPU, attention_kernel, attention_ws);
  mb_op_set_kernel(MB_OP_ATTENTION_GRAD, MB_BACKEND_CPU, attention_grad_kernel, attention_ws);
  mb_op_set_kernel(MB_OP_SELECTIVE_SCAN, MB_BACKEND_CPU, scan_kernel, scan_ws);
  mb_op_set_kernel(MB_OP_SELECTIVE_SCAN_GRAD, MB_BACKEND_CPU, scan_grad_kernel, scan_ws);
  mb_op_set_kernel(MB_OP_CONV1D, MB_BACKEND_CPU, conv1d_kernel, NULL);
  mb_op_set_kernel(MB_OP_CONV1D_GRAD, MB_BACKEND_CPU, conv1d_grad_kernel, conv1d_grad_ws);
}
