/* selective_scan.cu: the extern "C" launchers of selective_scan.h. The
 * kernels and the drivers that check a call and sequence its launches are
 * in selective_scan_kernels.cuh (shared with the CPU emulation test); this
 * file adds only the CUDA launch itself. */
#include "kernels/cuda/selective_scan_kernels.cuh"

#include "runtime/cuda_check.h"

namespace {

/* Launches on one stream; kernels above 48 KB of dynamic shared memory
 * get their limit raised first (a host-side attribute, allowed while a
 * stream is being captured into a graph). */
struct cuda_launch {
  cudaStream_t stream;
  template <class P>
  int operator()(void (*kernel)(P), long long blocks, int threads, size_t smem, const P &p, const char *what) {
    if (blocks < 1 || blocks > 0x7fffffffLL)
      return MB_ERR(MB_EINTERNAL, "cuda %s: grid of %lld blocks", what, blocks);
    if (smem > 48 * 1024) {
      const cudaError_t e =
          cudaFuncSetAttribute((const void *)kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
      if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return MB_ERR(MB_EUNSUPPORTED, "cuda %s: this device cannot give a block %zu bytes of shared memory: %s (%s)",
                      what, smem, cudaGetErrorString(e), cudaGetErrorName(e));
      }
    }
    kernel<<<(unsigned)blocks, (unsigned)threads, smem, stream>>>(p);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
      return MB_ERR(mb_cuda_status(e), "cuda %s: launch of %lld blocks x %d threads (%zu bytes shared) failed: %s (%s)",
                    what, blocks, threads, smem, cudaGetErrorString(e), cudaGetErrorName(e));
    return MB_OK;
  }
};

} // namespace

extern "C" int mb_cuda_scan_check(const mb_scan_desc *d, mb_dtype dt, mb_dtype param_dt) {
  return mb_scan_plan_check(d, dt, param_dt);
}

extern "C" size_t mb_cuda_scan_states_numel(const mb_scan_desc *d) {
  if (!d || d->batch < 0 || d->seqlen < 0 || d->dim < 1 || d->dstate < 1)
    return 0;
  const size_t ntiles = ((size_t)d->seqlen + MB_SCAN_TILE - 1) / MB_SCAN_TILE;
  return (size_t)d->batch * ntiles * (size_t)d->dim * (size_t)d->dstate;
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
  cuda_launch launch = {stream};
  return SC_NS::scan_fwd_run(launch, d, dt, param_dt, in, y, states);
}

extern "C" int mb_cuda_scan_bwd(const mb_scan_desc *d, mb_dtype dt, mb_dtype param_dt, const mb_cuda_scan_in *in,
                                const float *states, const void *dy, const mb_cuda_scan_grad *grad, void *workspace,
                                size_t workspace_bytes, struct CUstream_st *stream) {
  cuda_launch launch = {stream};
  return SC_NS::scan_bwd_run(launch, d, dt, param_dt, in, states, dy, grad, workspace, workspace_bytes);
}
