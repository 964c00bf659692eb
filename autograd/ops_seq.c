/* ops_seq.c: the sequence ops whose CPU kernels live in
 * kernels/cpu/attention.c, selective_scan.c and conv1d.c: fused multi-head
 * attention, Mamba's selective scan, causal depthwise conv1d. Inference,
 * backward rules (each emits the op's fused _grad op) and builders.
 *
 * Layouts are token-major, as the kernels want, so the Linear layers around
 * them need no transposes: attention reads q, k, v as [B, L, H, Dh] (a
 * reshape of a Linear's [B, L, H*Dh]); the scan and conv1d read channels-last
 * [B, L, D]. Varlen (packed) batches pass B = 1, L = the token budget, and an
 * i32 cu_seqlens [nseq + 1] input; nseq comes from its shape (a loader with a
 * fixed shape repeats the last offset for unused slots). */
#include <math.h>
#include <string.h>

#include "autograd/graph_internal.h"
#include "autograd/ops.h"
#include "autograd/ops_internal.h"

#define CONV1D_MAX_WIDTH 4 /* kernels/cpu/conv1d.h: MB_CONV1D_MAX_WIDTH */
#define SCAN_DEFAULT_CHUNK 128

static mb_dtype stat_dtype(mb_dtype x) { return x == MB_F64 ? MB_F64 : MB_F32; }

static int need_float(const mb_meta *m, const char *what) {
  if (!mb_dtype_info_of(m->dtype)->is_float)
    return MB_ERR(MB_ESHAPE, "%s must be a float tensor, got %s", what, mb_dtype_name(m->dtype));
  return MB_OK;
}

static int need_shape(const mb_meta *m, mb_dtype dt, mb_shape want, const char *what) {
  if (m->dtype != dt || !mb_shape_equal(&m->shape, &want)) {
    char a[96], b[96];
    return MB_ERR(MB_ESHAPE, "%s must be %s%s, got %s%s", what, mb_dtype_name(dt), mb_shape_str(&want, a, sizeof a),
                  mb_dtype_name(m->dtype), mb_shape_str(&m->shape, b, sizeof b));
  }
  return MB_OK;
}

/* cu_seqlens: i32 [nseq + 1] with nseq >= 1, and batch 1. */
static int need_cu_seqlens(const mb_meta *m, int64_t batch) {
  if (m->dtype != MB_I32 || m->shape.ndim != 1 || m->shape.dim[0] < 2)
    return MB_ERR(MB_ESHAPE, "cu_seqlens must be i32[nseq + 1] with nseq >= 1");
  if (batch != 1)
    return MB_ERR(MB_ESHAPE, "varlen mode (cu_seqlens) needs batch 1 (the packed tokens as one row), got %lld",
                  (long long)batch);
  return MB_OK;
}

/* ---- attention ---- */

/* (q, k, v [B, L, H, Dh] [, key_mask i32[B, L] | cu_seqlens i32[nseq+1]])
 * i0 causal, i1 mask mode (0 none, 1 key mask, 2 cu_seqlens), i2 fp8 (q, k,
 * v through e4m3 with per-tensor current scaling; forward only), f0 scale
 * -> out [B, L, H, Dh], lse [B, L, H] */
MB_INFER(attention) {
  MB_TRY(need_float(&in[0], "q"));
  if (in[0].shape.ndim != 4)
    return MB_ERR(MB_ESHAPE, "q, k, v must be [B, L, heads, head_dim]");
  MB_TRY(need_shape(&in[1], in[0].dtype, in[0].shape, "k"));
  MB_TRY(need_shape(&in[2], in[0].dtype, in[0].shape, "v"));
  int64_t B = in[0].shape.dim[0], L = in[0].shape.dim[1];
  int mode = (int)a->i[1];
  if ((n_in == 3) != (mode == 0))
    return MB_ERR(MB_EINVAL, "mask mode %d does not match %d inputs", mode, n_in);
  if (mode == 1)
    MB_TRY(need_shape(&in[3], MB_I32, mb_shape2(B, L), "key_mask"));
  else if (mode == 2)
    MB_TRY(need_cu_seqlens(&in[3], B));
  else if (mode != 0)
    return MB_ERR(MB_EINVAL, "bad mask mode %d", mode);
  if (!(a->f[0] >= 0.0) || isinf(a->f[0]))
    return MB_ERR(MB_EINVAL, "scale %g must be finite and >= 0 (0 = 1/sqrt(head_dim))", a->f[0]);
  if (a->i[2] != 0 && a->i[2] != 1)
    return MB_ERR(MB_EINVAL, "fp8 flag %lld: expected 0 or 1", (long long)a->i[2]);
  out[0] = in[0];
  out[1].dtype = stat_dtype(in[0].dtype);
  out[1].shape = mb_shape3(B, L, in[0].shape.dim[2]);
  *n_out = 2;
  return MB_OK;
}

/* (q, k, v, out, lse, dout [, mask]) -> dq, dk, dv */
MB_INFER(attention_grad) {
  out[0] = out[1] = out[2] = in[0];
  *n_out = 3;
  return MB_OK;
}

MB_BACKWARD(attention) {
  if (!mb_var_ok(gout[0]))
    return MB_OK;
  if (n->attr.i[2]) { /* the e4m3 forward is for evaluation */
    mb_var ins[3] = {{n->in[0]}, {n->in[1]}, {n->in[2]}};
    mb_graph_fail(g, n->where, MB_OP_ATTENTION, ins, 3, MB_EUNSUPPORTED,
                  "fp8 attention is forward only (evaluation): no gradient through it");
    return g->status;
  }
  mb_var ins[7] = {{n->in[0]}, {n->in[1]}, {n->in[2]}, {n->out[0]}, {n->out[1]}, gout[0], {-1}};
  int nin = 6;
  if (n->n_in == 4)
    ins[nin++].id = n->in[3];
  mb_var o[MB_MAX_OUT];
  if (mb_graph_op(g, MB_BW, MB_OP_ATTENTION_GRAD, ins, nin, &n->attr, o) < 0)
    return g->status;
  for (int j = 0; j < 3; j++)
    if (need[j])
      gin[j] = o[j];
  return MB_OK;
}

mb_var mb_attention_(mb_graph *g, mb_srcloc at, mb_var q, mb_var k, mb_var v, mb_var key_mask, mb_var cu_seqlens,
                     int causal, double scale, int fp8) {
  mb_attrs a = mb_attrs_none();
  a.i[0] = !!causal;
  a.i[2] = !!fp8;
  a.f[0] = scale;
  mb_var ins[4] = {q, k, v, MB_VAR_NONE};
  if (mb_var_ok(key_mask) && mb_var_ok(cu_seqlens))
    return mb_graph_fail(g, at, MB_OP_ATTENTION, ins, 3, MB_EINVAL, "give a key mask or cu_seqlens, not both");
  if (mb_var_ok(key_mask))
    a.i[1] = 1, ins[3] = key_mask;
  else if (mb_var_ok(cu_seqlens))
    a.i[1] = 2, ins[3] = cu_seqlens;
  return mb_graph_op1(g, at, MB_OP_ATTENTION, ins, a.i[1] ? 4 : 3, &a);
}

/* ---- selective scan ---- */

static int scan_chunk(const mb_attrs *a) { return a->i[1] > 0 ? (int)a->i[1] : SCAN_DEFAULT_CHUNK; }

/* (u, delta [B, L, D], A_log [D, N], B, C [B, L, N], D [D], z [B, L, D],
 *  delta_bias [D] [, cu_seqlens]) i0 delta_softplus, i1 chunk
 * -> y [B, L, D] (dtype of u), states f32 [B, nchunks, D, N] (f64 for f64 u).
 * A_log, D and delta_bias share a float dtype that may differ from u's. */
MB_INFER(selective_scan) {
  MB_TRY(need_float(&in[0], "u"));
  if (in[0].shape.ndim != 3)
    return MB_ERR(MB_ESHAPE, "u must be [B, L, D]");
  if (in[2].shape.ndim != 2)
    return MB_ERR(MB_ESHAPE, "A_log must be [D, N]");
  /* activations (u, delta, B, C, z) share dt; the parameters (A_log, D,
   * delta_bias) share pdt, which may differ: f32 master parameters beside
   * bf16/f16 activations, as mamba_ssm runs under autocast */
  mb_dtype dt = in[0].dtype, pdt = in[2].dtype;
  MB_TRY(need_float(&in[2], "A_log"));
  int64_t Bt = in[0].shape.dim[0], L = in[0].shape.dim[1], D = in[0].shape.dim[2], N = in[2].shape.dim[1];
  mb_shape bld = in[0].shape, bln = mb_shape3(Bt, L, N), d1 = mb_shape1(D);
  MB_TRY(need_shape(&in[1], dt, bld, "delta"));
  MB_TRY(need_shape(&in[2], pdt, mb_shape2(D, N), "A_log"));
  MB_TRY(need_shape(&in[3], dt, bln, "B"));
  MB_TRY(need_shape(&in[4], dt, bln, "C"));
  MB_TRY(need_shape(&in[5], pdt, d1, "D"));
  MB_TRY(need_shape(&in[6], dt, bld, "z"));
  MB_TRY(need_shape(&in[7], pdt, d1, "delta_bias"));
  if (n_in == 9)
    MB_TRY(need_cu_seqlens(&in[8], Bt));
  if (a->i[1] < 0)
    return MB_ERR(MB_EINVAL, "chunk %lld must be >= 0", (long long)a->i[1]);
  int64_t chunk = scan_chunk(a), nchunks = L > 0 ? (L + chunk - 1) / chunk : 0;
  out[0] = in[0];
  /* the saved states are the recurrence's own precision: f32 (f64 for f64
   * inputs), also for bf16/f16 activations (the CUDA kernel keeps them so) */
  out[1].dtype = stat_dtype(dt);
  out[1].shape = mb_shape4(Bt, nchunks, D, N);
  *n_out = 2;
  return MB_OK;
}

/* (u, delta, A_log, B, C, D, z, delta_bias, states, dy [, cu_seqlens])
 * -> du, ddelta, dA_log, dB, dC, dD, dz, ddelta_bias */
MB_INFER(selective_scan_grad) {
  for (int j = 0; j < 8; j++)
    out[j] = in[j];
  *n_out = 8;
  return MB_OK;
}

MB_BACKWARD(selective_scan) {
  if (!mb_var_ok(gout[0]))
    return MB_OK;
  mb_var ins[11];
  for (int j = 0; j < 8; j++)
    ins[j].id = n->in[j];
  ins[8].id = n->out[1];
  ins[9] = gout[0];
  int nin = 10;
  if (n->n_in == 9)
    ins[nin++].id = n->in[8];
  mb_var o[MB_MAX_OUT];
  if (mb_graph_op(g, MB_BW, MB_OP_SELECTIVE_SCAN_GRAD, ins, nin, &n->attr, o) < 0)
    return g->status;
  for (int j = 0; j < 8; j++)
    if (need[j])
      gin[j] = o[j];
  return MB_OK;
}

mb_var mb_selective_scan_(mb_graph *g, mb_srcloc at, mb_var u, mb_var delta, mb_var A_log, mb_var B, mb_var C,
                          mb_var D, mb_var z, mb_var delta_bias, mb_var cu_seqlens, int delta_softplus) {
  mb_attrs a = mb_attrs_none();
  a.i[0] = !!delta_softplus;
  mb_var ins[9] = {u, delta, A_log, B, C, D, z, delta_bias, cu_seqlens};
  return mb_graph_op1(g, at, MB_OP_SELECTIVE_SCAN, ins, mb_var_ok(cu_seqlens) ? 9 : 8, &a);
}

/* ---- conv1d ---- */

/* (x [B, L, D], w [D, W], bias [D] [, cu_seqlens]) i0 silu -> y [B, L, D];
 * w and bias share a float dtype that may differ from x's */
MB_INFER(conv1d) {
  MB_TRY(need_float(&in[0], "x"));
  if (in[0].shape.ndim != 3)
    return MB_ERR(MB_ESHAPE, "x must be [B, L, D]");
  int64_t D = in[0].shape.dim[2];
  /* w and bias share a float dtype, which may differ from x's (f32 master
   * parameters beside bf16/f16 activations) */
  MB_TRY(need_float(&in[1], "w"));
  if (in[1].shape.ndim != 2 || in[1].shape.dim[0] != D || in[1].shape.dim[1] < 1 ||
      in[1].shape.dim[1] > CONV1D_MAX_WIDTH)
    return MB_ERR(MB_ESHAPE, "w must be [%lld, W] with 1 <= W <= %d (HF's [D, 1, W] reshaped)", (long long)D,
                  CONV1D_MAX_WIDTH);
  MB_TRY(need_shape(&in[2], in[1].dtype, mb_shape1(D), "bias"));
  if (n_in == 4)
    MB_TRY(need_cu_seqlens(&in[3], in[0].shape.dim[0]));
  out[0] = in[0];
  *n_out = 1;
  return MB_OK;
}

/* (x, w, bias, dy [, cu_seqlens]) -> dx, dw, dbias */
MB_INFER(conv1d_grad) {
  out[0] = in[0];
  out[1] = in[1];
  out[2] = in[2];
  *n_out = 3;
  return MB_OK;
}

MB_BACKWARD(conv1d) {
  if (!mb_var_ok(gout[0]))
    return MB_OK;
  mb_var ins[5] = {{n->in[0]}, {n->in[1]}, {n->in[2]}, gout[0], {-1}};
  int nin = 4;
  if (n->n_in == 4)
    ins[nin++].id = n->in[3];
  mb_var o[MB_MAX_OUT];
  if (mb_graph_op(g, MB_BW, MB_OP_CONV1D_GRAD, ins, nin, &n->attr, o) < 0)
    return g->status;
  for (int j = 0; j < 3; j++)
    if (need[j])
      gin[j] = o[j];
  return MB_OK;
}

mb_var mb_conv1d_(mb_graph *g, mb_srcloc at, mb_var x, mb_var w, mb_var bias, mb_var cu_seqlens, int silu) {
  mb_attrs a = mb_attrs_none();
  a.i[0] = !!silu;
  mb_var ins[4] = {x, w, bias, cu_seqlens};
  return mb_graph_op1(g, at, MB_OP_CONV1D, ins, mb_var_ok(cu_seqlens) ? 4 : 3, &a);
}
