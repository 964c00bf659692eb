/* test_cuda_gpu_util.h: the little the GPU scan and conv1d tests need from
 * the CUDA runtime: the skip without a GPU (exit 77, "no CUDA device"),
 * checked calls, poisoned allocations (every byte 0xff: NaN in every float
 * format) and uploads/downloads through any float dtype. (The CUDA backend's
 * tests/cuda/cuda_test_util.h does the same for its tests; this one keeps
 * the scan tests independent of it.) */
#ifndef MB_TESTS_CUDA_GPU_UTIL_H
#define MB_TESTS_CUDA_GPU_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "runtime/dtype.h"
#include "runtime/error.h"

/* a failed CUDA call fails the current cmocka test with CUDA's message */
#define GT_CUDA(call)                                                                                                  \
  do {                                                                                                                 \
    cudaError_t gt_e_ = (call);                                                                                        \
    if (gt_e_ != cudaSuccess)                                                                                          \
      fail_msg("%s failed: %s (%s)", #call, cudaGetErrorString(gt_e_), cudaGetErrorName(gt_e_));                       \
  } while (0)

#define GT_OK(expr)                                                                                                    \
  do {                                                                                                                 \
    int gt_rc_ = (expr);                                                                                               \
    if (gt_rc_ != MB_OK)                                                                                               \
      fail_msg("%s failed (%d): %s [%s]", #expr, gt_rc_, mb_error_message(), mb_error_where());                        \
  } while (0)

static inline void gt_require_gpu(const char *test) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    printf("%s: no CUDA device (%s): skipping\n", test, e != cudaSuccess ? cudaGetErrorString(e) : "none found");
    fflush(stdout);
    exit(77);
  }
  struct cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
    printf("%s: on %s (sm_%d%d, %d SMs, %.1f GiB)\n", test, prop.name, prop.major, prop.minor, prop.multiProcessorCount,
           (double)prop.totalGlobalMem / (1024.0 * 1024 * 1024));
  fflush(stdout);
}

static inline void *gt_alloc_poisoned(size_t bytes) {
  void *p = NULL;
  /* the memset runs on the legacy default stream, which a non-blocking
   * stream does not wait for: synchronise, or the poison can land after
   * the kernel under test has written (seen on an H200 at L = 1) */
  if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess || cudaMemset(p, 0xff, bytes ? bytes : 1) != cudaSuccess ||
      cudaDeviceSynchronize() != cudaSuccess) {
    fprintf(stderr, "cudaMalloc/cudaMemset of %zu bytes failed\n", bytes);
    exit(1);
  }
  return p;
}

/* n f32 values converted to dt, in a fresh device buffer (NULL for NULL) */
static inline void *gt_upload(const float *x, size_t n, mb_dtype dt) {
  if (!x)
    return NULL;
  const size_t bytes = n * mb_dtype_size(dt);
  void *tmp = malloc(bytes + 1), *dev = NULL;
  if (!tmp || mb_convert(tmp, dt, x, MB_F32, n) != MB_OK || cudaMalloc(&dev, bytes ? bytes : 1) != cudaSuccess ||
      cudaMemcpy(dev, tmp, bytes, cudaMemcpyHostToDevice) != cudaSuccess) {
    fprintf(stderr, "upload of %zu values failed\n", n);
    exit(1);
  }
  free(tmp);
  return dev;
}

static inline void *gt_upload_raw(const void *x, size_t bytes) {
  void *dev = NULL;
  if (cudaMalloc(&dev, bytes ? bytes : 1) != cudaSuccess ||
      (bytes && cudaMemcpy(dev, x, bytes, cudaMemcpyHostToDevice) != cudaSuccess)) {
    fprintf(stderr, "upload of %zu bytes failed\n", bytes);
    exit(1);
  }
  return dev;
}

/* Waits for the device (a kernel fault shows here), then n values of dt as
 * f32. Nothing for a NULL device pointer. */
static inline void gt_download(float *out, const void *dev, size_t n, mb_dtype dt) {
  const cudaError_t e = cudaDeviceSynchronize();
  if (e != cudaSuccess) {
    fprintf(stderr, "device fault: %s (%s)\n", cudaGetErrorString(e), cudaGetErrorName(e));
    exit(1);
  }
  if (!dev)
    return;
  const size_t bytes = n * mb_dtype_size(dt);
  void *tmp = malloc(bytes + 1);
  if (!tmp || cudaMemcpy(tmp, dev, bytes, cudaMemcpyDeviceToHost) != cudaSuccess ||
      mb_convert(out, MB_F32, tmp, dt, n) != MB_OK) {
    fprintf(stderr, "download of %zu values failed\n", n);
    exit(1);
  }
  free(tmp);
}

/* 1 if the two device buffers hold the same bytes */
static inline int gt_same_bytes(const void *a, const void *b, size_t bytes) {
  if (!a || !b)
    return a == b;
  unsigned char *x = (unsigned char *)malloc(bytes + 1), *y = (unsigned char *)malloc(bytes + 1);
  if (!x || !y || cudaMemcpy(x, a, bytes, cudaMemcpyDeviceToHost) != cudaSuccess ||
      cudaMemcpy(y, b, bytes, cudaMemcpyDeviceToHost) != cudaSuccess) {
    fprintf(stderr, "download of %zu bytes failed\n", bytes);
    exit(1);
  }
  const int same = memcmp(x, y, bytes) == 0;
  free(x);
  free(y);
  return same;
}

#endif
