/* test_cuda_scan_ops_emu.cpp: the extern "C" launchers of
 * kernels/cuda/selective_scan.h and conv1d.h for the emulated op test
 * (cuda_scan_ops_emulated, test_cuda_scan_ops.c built with
 * -DSCAN_OPS_EMULATED): the same drivers and kernels as selective_scan.cu
 * and conv1d.cu, with the fiber emulator's launch (test_cuda_scan_emu.h)
 * instead of a CUDA launch, over host memory. The stream is ignored. */
#include "tests/cuda/test_cuda_scan_emu.h"

#include "kernels/cuda/conv1d_kernels.cuh"
#include "kernels/cuda/selective_scan_kernels.cuh"

extern "C" int mb_cuda_scan_check(const mb_scan_desc *d, mb_dtype dt, mb_dtype param_dt) {
  return mb_scan_plan_check(d, dt, param_dt);
}

extern "C" size_t mb_cuda_scan_bwd_workspace(const mb_scan_desc *d) {
  if (mb_scan_plan_check(d, MB_F32, MB_F32) != MB_OK)
    return 0;
  mb_scan_plan pl;
  mb_scan_plan_make(d, &pl);
  return pl.ws_bytes;
}

extern "C" int mb_cuda_scan_fwd(const mb_scan_desc *d, mb_dtype dt, mb_dtype param_dt, const mb_cuda_scan_in *in,
                                void *y, float *states, struct CUstream_st *stream) {
  (void)stream;
  sc_emu_launch launch;
  return SC_NS::scan_fwd_run(launch, d, dt, param_dt, in, y, states);
}

extern "C" int mb_cuda_scan_bwd(const mb_scan_desc *d, mb_dtype dt, mb_dtype param_dt, const mb_cuda_scan_in *in,
                                const float *states, const void *dy, const mb_cuda_scan_grad *grad, void *workspace,
                                size_t workspace_bytes, struct CUstream_st *stream) {
  (void)stream;
  sc_emu_launch launch;
  return SC_NS::scan_bwd_run(launch, d, dt, param_dt, in, states, dy, grad, workspace, workspace_bytes);
}

extern "C" int mb_cuda_conv1d_check(const mb_conv1d_desc *d, mb_dtype dt, mb_dtype param_dt) {
  return mb_conv1d_plan_check(d, dt, param_dt);
}

extern "C" size_t mb_cuda_conv1d_bwd_workspace(const mb_conv1d_desc *d) {
  if (mb_conv1d_plan_check(d, MB_F32, MB_F32) != MB_OK)
    return 0;
  mb_conv1d_plan pl;
  mb_conv1d_plan_make(d, &pl);
  return pl.ws_bytes;
}

extern "C" int mb_cuda_conv1d_fwd(const mb_conv1d_desc *d, mb_dtype dt, mb_dtype param_dt, const void *x, const void *w,
                                  const void *bias, void *y, struct CUstream_st *stream) {
  (void)stream;
  sc_emu_launch launch;
  return SC_NS::conv1d_fwd_run(launch, d, dt, param_dt, x, w, bias, y);
}

extern "C" int mb_cuda_conv1d_bwd(const mb_conv1d_desc *d, mb_dtype dt, mb_dtype param_dt, const void *x, const void *w,
                                  const void *bias, const void *dy, void *dx, void *dw, void *dbias, void *workspace,
                                  size_t workspace_bytes, struct CUstream_st *stream) {
  (void)stream;
  sc_emu_launch launch;
  return SC_NS::conv1d_bwd_run(launch, d, dt, param_dt, x, w, bias, dy, dx, dw, dbias, workspace, workspace_bytes);
}
