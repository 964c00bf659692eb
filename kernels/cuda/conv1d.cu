/* conv1d.cu: the extern "C" launchers of conv1d.h. Kernels and drivers are
 * in conv1d_kernels.cuh (shared with the CPU emulation test); this file adds
 * only the CUDA launch. */
#include "kernels/cuda/conv1d_kernels.cuh"

#include "runtime/cuda_check.h"

namespace {

struct cuda_launch {
  cudaStream_t stream;
  template <class P>
  int operator()(void (*kernel)(P), long long blocks, int threads, size_t smem, const P &p, const char *what) {
    if (blocks < 1 || blocks > 0x7fffffffLL)
      return MB_ERR(MB_EINTERNAL, "cuda %s: grid of %lld blocks", what, blocks);
    kernel<<<(unsigned)blocks, (unsigned)threads, smem, stream>>>(p);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
      return MB_ERR(mb_cuda_status(e), "cuda %s: launch of %lld blocks x %d threads failed: %s (%s)", what, blocks,
                    threads, cudaGetErrorString(e), cudaGetErrorName(e));
    return MB_OK;
  }
};

} // namespace

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
  cuda_launch launch = {stream};
  return SC_NS::conv1d_fwd_run(launch, d, dt, param_dt, x, w, bias, y);
}

extern "C" int mb_cuda_conv1d_bwd(const mb_conv1d_desc *d, mb_dtype dt, mb_dtype param_dt, const void *x, const void *w,
                                  const void *bias, const void *dy, void *dx, void *dw, void *dbias, void *workspace,
                                  size_t workspace_bytes, struct CUstream_st *stream) {
  cuda_launch launch = {stream};
  return SC_NS::conv1d_bwd_run(launch, d, dt, param_dt, x, w, bias, dy, dx, dw, dbias, workspace, workspace_bytes);
}
