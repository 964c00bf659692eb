/* test_cuda_attention_util.h: the device side of the CUDA attention GPU
 * tests: the skip when no GPU can be used (exit 77, "no CUDA device"),
 * device buffers poisoned (all bytes 0xff: NaN in every float format)
 * before every kernel run, uploads and downloads through any dtype; the
 * host side (random inputs, error measures) is test_cuda_attention_check.h.
 * Header-only; every function aborts the test with a message on failure.
 */
#ifndef MB_TESTS_CUDA_ATTENTION_UTIL_H
#define MB_TESTS_CUDA_ATTENTION_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#include "runtime/dtype.h"
#include "runtime/error.h"
#include "runtime/philox.h"
#include "tests/cuda/test_cuda_attention_check.h"

#define AT_CUDA(call)                                                                                                  \
  do {                                                                                                                 \
    cudaError_t at_e_ = (call);                                                                                        \
    if (at_e_ != cudaSuccess) {                                                                                        \
      fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(at_e_));                 \
      exit(1);                                                                                                         \
    }                                                                                                                  \
  } while (0)

/* Exit 77 (ctest: skipped) when no GPU can be used; else print the device
 * and return its compute capability x 10. */
static inline int at_require_gpu(const char *test) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    printf("%s: no CUDA device (%s): skipping\n", test, e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    fflush(stdout);
    exit(77);
  }
  struct cudaDeviceProp p;
  AT_CUDA(cudaGetDeviceProperties(&p, 0));
  printf("%s: on %s (sm_%d%d, %d SMs)\n", test, p.name, p.major, p.minor, p.multiProcessorCount);
  return p.major * 10 + p.minor;
}

/* ---- device buffers ---- */

static inline void *at_dev(size_t bytes) {
  void *p = NULL;
  AT_CUDA(cudaMalloc(&p, bytes ? bytes : 16));
  return p;
}

/* Every byte 0xff: NaN in f32/f16/bf16/e4m3, -1 in integers. */
static inline void at_poison(void *dev, size_t bytes) {
  if (bytes) { /* synchronised: see gt_alloc_poisoned */
    AT_CUDA(cudaMemset(dev, 0xff, bytes));
    AT_CUDA(cudaDeviceSynchronize());
  }
}

/* Upload n f32 values converted to dt into dev. */
static inline void at_upload(void *dev, const float *x, size_t n, mb_dtype dt) {
  const size_t es = mb_dtype_size(dt);
  void *tmp = at_malloc(n * es);
  if (mb_convert(tmp, dt, x, MB_F32, n) != MB_OK)
    at_die(mb_error_message());
  AT_CUDA(cudaMemcpy(dev, tmp, n * es, cudaMemcpyHostToDevice));
  free(tmp);
}

/* Download n elements of dt as f32, after synchronising (a kernel fault
 * surfaces here). */
static inline void at_download(float *out, const void *dev, size_t n, mb_dtype dt) {
  AT_CUDA(cudaDeviceSynchronize());
  const size_t es = mb_dtype_size(dt);
  void *tmp = at_malloc(n * es);
  AT_CUDA(cudaMemcpy(tmp, dev, n * es, cudaMemcpyDeviceToHost));
  if (mb_convert(out, MB_F32, tmp, dt, n) != MB_OK)
    at_die(mb_error_message());
  free(tmp);
}

/* MAMBERT_ATTN_TEST_PART: "base" runs every check but those of the TMA,
 * warp-specialised kernels (forward tilings 5 to 8, backward tiling 2, the
 * e4m3 forward under tilings 7-8), "ws" only those; unset or empty, all.
 * tools/gpu_check.sh runs the halves as processes of their own (steps NAME
 * and NAME+ws): a first hang or fault of a TMA kernel on a new GPU then
 * costs its own half only. Whether the half with (ws) or without them runs. */
static inline int at_test_part_runs(int ws) {
  const char *v = getenv("MAMBERT_ATTN_TEST_PART");
  if (!v || !*v)
    return 1;
  if (strcmp(v, "base") && strcmp(v, "ws")) {
    fprintf(stderr, "MAMBERT_ATTN_TEST_PART=%s: expected base or ws\n", v);
    exit(1);
  }
  return !strcmp(v, ws ? "ws" : "base");
}

#endif
