/* test_cuda_attention_emu_runtime.cpp: the emulated attention kernels (see
 * test_cuda_attention_emu.h) plus a host stand-in for the CUDA runtime
 * calls the GPU tests make (device memory is host memory). Linked with the
 * GPU tests' own sources it runs them, unmodified, on a machine without a
 * GPU: ctest cuda_attention_on_emulator (test_cuda_attention.c with
 * MAMBERT_ATTN_TEST_QUICK=1) and cuda_attention_fp8_on_emulator. That
 * checks the tests themselves -- their set-up, comparisons and the
 * dispatcher's run-time fallbacks -- before a GPU session relies on them.
 */
#ifdef _FORTIFY_SOURCE /* _longjmp between fiber stacks: no __longjmp_chk */
#undef _FORTIFY_SOURCE
#endif

#define ATTN_EMULATE "tests/cuda/test_cuda_attention_emu.h"
#include "kernels/cuda/attention.cu"
#include "kernels/cuda/attention_flash_bwd.cu"
#include "kernels/cuda/attention_flash_fp8.cu"
#include "kernels/cuda/attention_flash_fwd.cu"
#include "kernels/cuda/attention_hopper_bwd.cu"
#include "kernels/cuda/attention_hopper_fwd.cu"
#include "kernels/cuda/attention_probe.cu"
#include "kernels/cuda/attention_ref.cu"

#include <stdlib.h>

static cudaError_t emu_status() { return emu::S().errors ? cudaErrorLaunchFailure : cudaSuccess; }

extern "C" {
cudaError_t cudaGetDeviceCount(int *n) {
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int device) {
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "the host emulator of the attention kernels");
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = 1;
  return cudaSuccess;
}
cudaError_t cudaMalloc(void **ptr, size_t size) {
  *ptr = aligned_alloc(256, (size + 255) / 256 * 256 + 256);
  if (!*ptr)
    return cudaErrorMemoryAllocation;
  memset(*ptr, 0xa5, size); /* garbage, like fresh device memory */
  return cudaSuccess;
}
cudaError_t cudaFree(void *ptr) {
  free(ptr);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind) {
  memcpy(dst, src, n);
  return emu_status();
}
cudaError_t cudaMemset(void *dst, int value, size_t n) {
  memset(dst, value, n);
  return emu_status();
}
cudaError_t cudaDeviceSynchronize(void) { return emu_status(); }
}
