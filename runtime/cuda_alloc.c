/* cuda_alloc.c: the caching CUDA device allocator (cuda_alloc.h): a block
 * source over cudaMalloc/cudaFree for one device, run by the policy in
 * cache_alloc.c. Compiled only when CUDA is found. */
#include "runtime/cuda_alloc.h"

#include <stdio.h>
#include <stdlib.h>

#include "runtime/cache_alloc.h"
#include "runtime/cuda_check.h"

typedef struct {
  int device;
  char name[32]; /* "cuda:N", for messages */
} cuda_source;

/* Run on `device`, restoring the caller's current device afterwards. */
static int cuda_block_alloc(void *ctx, size_t n, void **out) {
  cuda_source *s = ctx;
  int prev;
  *out = NULL;
  MB_CUDA_TRY(cudaGetDevice(&prev));
  if (prev != s->device)
    MB_CUDA_TRY(cudaSetDevice(s->device));
  cudaError_t e = cudaMalloc(out, n);
  if (prev != s->device)
    MB_CUDA_WARN(cudaSetDevice(prev));
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    *out = NULL;
    return MB_ERR(mb_cuda_status(e), "%s: cudaMalloc(%zu bytes) failed: %s (%s)", s->name, n, cudaGetErrorString(e),
                  cudaGetErrorName(e));
  }
  return MB_OK;
}

static void cuda_block_free(void *ctx, void *p) {
  cuda_source *s = ctx;
  int prev = s->device;
  MB_CUDA_WARN(cudaGetDevice(&prev));
  if (prev != s->device)
    MB_CUDA_WARN(cudaSetDevice(s->device));
  MB_CUDA_WARN(cudaFree(p));
  if (prev != s->device)
    MB_CUDA_WARN(cudaSetDevice(prev));
}

static void cuda_source_destroy(void *ctx) { free(ctx); }

int mb_cuda_allocator_create(int device, mb_device_allocator **out) {
  *out = NULL;
  int count = 0;
  MB_CUDA_TRY(cudaGetDeviceCount(&count));
  if (device < 0 || device >= count)
    return MB_ERR(MB_EDEVICE, "CUDA device %d does not exist (%d visible)", device, count);
  cuda_source *s = calloc(1, sizeof *s);
  if (!s)
    return MB_ERR(MB_ENOMEM, "out of host memory creating the allocator for cuda:%d", device);
  s->device = device;
  snprintf(s->name, sizeof s->name, "cuda:%d", device);
  mb_block_source src = {s, cuda_block_alloc, cuda_block_free, cuda_source_destroy, s->name};
  return mb_caching_allocator_create(src, out); /* takes s, also on failure */
}
