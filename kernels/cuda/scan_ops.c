/* scan_ops.c: the op-table glue of the CUDA selective scan and causal
 * conv1d (selective_scan.h, conv1d.h; notes in SCAN.md): MB_OP_SELECTIVE_SCAN,
 * MB_OP_SELECTIVE_SCAN_GRAD, MB_OP_CONV1D and MB_OP_CONV1D_GRAD on the CUDA
 * backend. The CPU side is kernels/cpu/cpu_seq.c: the same descriptors from
 * the same shapes and attributes (autograd/ops_seq.c):
 *   selective_scan (u, delta, A_log, B, C, D, z, delta_bias [, cu_seqlens])
 *     i0 delta_softplus, i1 chunk (0 or 128 here) -> y, states f32
 *   selective_scan_grad (u .. delta_bias, states, dy [, cu_seqlens])
 *     -> du, ddelta, dA_log, dB, dC, dD, dz, ddelta_bias
 *   conv1d (x, w, bias [, cu_seqlens]) i0 silu -> y
 *   conv1d_grad (x, w, bias, dy [, cu_seqlens]) -> dx, dw, dbias
 * Activations and parameters may differ in dtype (bf16 activations, f32
 * master parameters); cu_seqlens lives in the arena, i.e. on the device, as
 * the launchers want. Registered by mb_cuda_register_ops.
 *
 * The backward launchers want 256-byte aligned scratch; the planner aligns
 * buffers to 64 bytes, so the workspaces ask for 256 bytes more and the
 * kernels align the pointer up.
 *
 * Nothing here includes CUDA headers: the emulated test
 * (tests/cuda/test_cuda_scan_ops_emu.cpp) compiles this file with emulated
 * launchers and runs it through the executor on the CPU.
 */
#include <stdint.h>
#include <string.h>

#include "autograd/graph.h"
#include "autograd/op.h"
#include "kernels/cuda/conv1d.h"
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/selective_scan.h"
#include "kernels/seq_op_desc.h"

#define WS_ALIGN 256 /* MB_SCAN_WS_ALIGN, MB_CONV1D_WS_ALIGN */

static struct CUstream_st *stream_of(const mb_kernel_call *k) { return mb_cuda_backend_stream(k->backend); }

/* The planned scratch, its start aligned up to WS_ALIGN. */
static void *aligned_ws(const mb_kernel_call *k, size_t *bytes) {
  uintptr_t p = (uintptr_t)k->workspace, a = (p + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN;
  if (!k->workspace || k->workspace_bytes < a - p) {
    *bytes = 0;
    return NULL;
  }
  *bytes = k->workspace_bytes - (size_t)(a - p);
  return (void *)a;
}

static const mb_value *val(const mb_graph *g, int32_t id) { return mb_graph_value(g, (mb_var){id}); }

/* ---- selective scan ---- */

static mb_cuda_scan_in scan_in(const mb_kernel_call *k) {
  const mb_tensor *in = k->in;
  mb_cuda_scan_in s = {in[0].data, in[1].data, in[3].data, in[4].data, in[6].data, in[2].data, in[5].data, in[7].data};
  return s;
}

/* (u, delta, A_log, B, C, D, z, delta_bias [, cu]) -> y, states */
static int k_selective_scan(const mb_kernel_call *k) {
  mb_scan_desc d;
  mb_scan_desc_from_call(k, 8, &d);
  if (k->out[1].dtype != MB_F32)
    return MB_ERR(MB_EUNSUPPORTED, "cuda selective scan: states must be f32, got %s", mb_dtype_name(k->out[1].dtype));
  mb_cuda_scan_in in = scan_in(k);
  return mb_cuda_scan_fwd(&d, k->in[0].dtype, k->in[2].dtype, &in, k->out[0].data, k->out[1].data, stream_of(k));
}

/* (u, delta, A_log, B, C, D, z, delta_bias, states, dy [, cu]) -> 8 gradients */
static int k_selective_scan_grad(const mb_kernel_call *k) {
  mb_scan_desc d;
  mb_scan_desc_from_call(k, 10, &d);
  if (k->in[8].dtype != MB_F32)
    return MB_ERR(MB_EUNSUPPORTED, "cuda selective scan: states must be f32, got %s", mb_dtype_name(k->in[8].dtype));
  mb_cuda_scan_in in = scan_in(k);
  void *o[8];
  for (int j = 0; j < 8; j++)
    o[j] = k->out[j].data;
  /* outputs in input order (du, ddelta, dA_log, dB, dC, dD, dz, ddelta_bias) */
  mb_cuda_scan_grad gr = {o[0], o[1], o[3], o[4], o[6], o[2], o[5], o[7]};
  size_t wb;
  void *ws = aligned_ws(k, &wb);
  return mb_cuda_scan_bwd(&d, k->in[0].dtype, k->in[2].dtype, &in, k->in[8].data, k->in[9].data, &gr, ws, wb,
                          stream_of(k));
}

static size_t ws_selective_scan_grad(const mb_graph *g, const mb_node *n) {
  mb_scan_desc d;
  mb_scan_desc_from_shapes(&val(g, n->in[0])->shape, &val(g, n->in[2])->shape, &n->attr, &d); /* varlen: same size */
  const size_t need = mb_cuda_scan_bwd_workspace(&d);
  return need ? need + WS_ALIGN : 0;
}

/* ---- conv1d ---- */

/* (x, w, bias [, cu]) -> y */
static int k_conv1d(const mb_kernel_call *k) {
  mb_conv1d_desc d;
  mb_conv1d_desc_from_call(k, 3, &d);
  const mb_tensor *in = k->in;
  return mb_cuda_conv1d_fwd(&d, in[0].dtype, in[1].dtype, in[0].data, in[1].data, in[2].data, k->out[0].data,
                            stream_of(k));
}

/* (x, w, bias, dy [, cu]) -> dx, dw, dbias */
static int k_conv1d_grad(const mb_kernel_call *k) {
  mb_conv1d_desc d;
  mb_conv1d_desc_from_call(k, 4, &d);
  const mb_tensor *in = k->in, *out = k->out;
  size_t wb;
  void *ws = aligned_ws(k, &wb);
  return mb_cuda_conv1d_bwd(&d, in[0].dtype, in[1].dtype, in[0].data, in[1].data, in[2].data, in[3].data, out[0].data,
                            out[1].data, out[2].data, ws, wb, stream_of(k));
}

static size_t ws_conv1d_grad(const mb_graph *g, const mb_node *n) {
  mb_conv1d_desc d;
  mb_conv1d_desc_from_shapes(&val(g, n->in[0])->shape, &val(g, n->in[1])->shape, &n->attr, &d);
  const size_t need = mb_cuda_conv1d_bwd_workspace(&d);
  return need ? need + WS_ALIGN : 0;
}

void mb_cuda_scan_register_ops(void) {
  mb_op_set_kernel(MB_OP_SELECTIVE_SCAN, MB_BACKEND_CUDA, k_selective_scan, NULL);
  mb_op_set_kernel(MB_OP_SELECTIVE_SCAN_GRAD, MB_BACKEND_CUDA, k_selective_scan_grad, ws_selective_scan_grad);
  mb_op_set_kernel(MB_OP_CONV1D, MB_BACKEND_CUDA, k_conv1d, NULL);
  mb_op_set_kernel(MB_OP_CONV1D_GRAD, MB_BACKEND_CUDA, k_conv1d_grad, ws_conv1d_grad);
}
