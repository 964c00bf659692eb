/* cuda_test_util.h: what the CUDA tests share: the skip when there is no
 * GPU (exit 77, "no CUDA device"), fresh random inputs (a new seed per run,
 * printed, MAMBERT_TEST_SEED to replay one), device buffers poisoned before
 * every run, uploads/downloads through any dtype, and the relative error
 * ||out - ref|| / ||ref|| that every comparison uses (NaN never passes).
 * Header-only: each test is one executable. */
#ifndef MB_TESTS_CUDA_TEST_UTIL_H
#define MB_TESTS_CUDA_TEST_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#include "runtime/cuda_device.h"
#include "runtime/dtype.h"
#include "runtime/error.h"
#include "runtime/philox.h"

/* Relative-error bounds per dtype (issue 8). */
#define TOL_F32 1e-5
#define TOL_TF32 5e-4
#define TOL_BF16 1e-2
#define TOL_F16 5e-3

/* Exit 77 (ctest: skipped) when no GPU can be used; print the device. */
static inline void ct_require_gpu(const char *test) {
  int n = 0;
  char why[256];
  if (mb_cuda_device_count(&n, why, sizeof why) != MB_OK || n == 0) {
    printf("%s: no CUDA device (%s): skipping\n", test, why);
    fflush(stdout);
    exit(77);
  }
  mb_cuda_device_info info;
  if (mb_cuda_device_get_info(0, &info) == MB_OK) {
    char d[512];
    mb_cuda_device_describe(&info, d, sizeof d);
    printf("%s: on %s\n", test, d);
  }
}

#define CT_OK(expr)                                                                                  \
  do {                                                                                               \
    int ct_rc_ = (expr);                                                                             \
    if (ct_rc_ != MB_OK)                                                                             \
      fail_msg("%s failed (%d): %s [%s]", #expr, ct_rc_, mb_error_message(), mb_error_where());      \
  } while (0)

#define CT_CUDA(call)                                                                                \
  do {                                                                                               \
    cudaError_t ct_e_ = (call);                                                                      \
    if (ct_e_ != cudaSuccess)                                                                        \
      fail_msg("%s failed: %s", #call, cudaGetErrorString(ct_e_));                                   \
  } while (0)

/* ---- random inputs ---- */

static uint64_t ct_seed_base;
static uint64_t ct_draws;

static inline void ct_seed_init(const char *test) {
  const char *env = getenv("MAMBERT_TEST_SEED");
  if (env && *env) {
    ct_seed_base = strtoull(env, NULL, 0);
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ct_seed_base = ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
  }
  printf("%s: seed %llu (MAMBERT_TEST_SEED=%llu replays it)\n", test, (unsigned long long)ct_seed_base,
         (unsigned long long)ct_seed_base);
}

/* n normal(0, std) floats, each call a fresh stream. */
static inline void ct_randn(float *x, size_t n, float std) {
  mb_philox_fill_normal(ct_seed_base, (ct_draws++) << 40, x, n, 0.0f, std);
}

/* n uniform [lo, hi) floats. */
static inline void ct_randu(float *x, size_t n, float lo, float hi) {
  mb_philox_fill_uniform(ct_seed_base, (ct_draws++) << 40, x, n, lo, hi);
}

/* integers in [0, bound) */
static inline void ct_randint(int64_t *x, size_t n, int64_t bound) {
  uint32_t *w = malloc(n * sizeof *w + 4);
  mb_philox_fill_u32(ct_seed_base, (ct_draws++) << 40, w, n);
  for (size_t i = 0; i < n; i++)
    x[i] = (int64_t)(w[i] % (uint32_t)bound);
  free(w);
}

/* x rounded to dt and back (the reference then sees the device's inputs). */
static inline void ct_round(float *x, size_t n, mb_dtype dt) {
  for (size_t i = 0; i < n; i++)
    x[i] = mb_round_to(x[i], dt);
}

/* ---- device buffers ---- */

static inline void *ct_dev(size_t bytes) {
  void *p = NULL;
  if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
    fprintf(stderr, "cudaMalloc(%zu) failed\n", bytes);
    exit(1);
  }
  return p;
}

/* Every byte 0xff: NaN in every float format, -1 in every integer one. */
static inline void ct_poison(void *dev, size_t bytes) {
  /* synchronised: the legacy-stream memset must not race the non-blocking
   * streams the code under test may run on */
  if (bytes && (cudaMemset(dev, 0xff, bytes) != cudaSuccess || cudaDeviceSynchronize() != cudaSuccess)) {
    fprintf(stderr, "cudaMemset failed\n");
    exit(1);
  }
}

/* Upload n f32 values converted to dt (a fresh device buffer). */
static inline void *ct_upload(const float *x, size_t n, mb_dtype dt) {
  size_t es = mb_dtype_size(dt);
  void *tmp = malloc(n * es + 1), *dev = ct_dev(n * es);
  if (mb_convert(tmp, dt, x, MB_F32, n) != MB_OK) {
    fprintf(stderr, "convert: %s\n", mb_error_message());
    exit(1);
  }
  if (cudaMemcpy(dev, tmp, n * es, cudaMemcpyHostToDevice) != cudaSuccess)
    exit(1);
  free(tmp);
  return dev;
}

static inline void *ct_upload_raw(const void *x, size_t bytes) {
  void *dev = ct_dev(bytes);
  if (bytes && cudaMemcpy(dev, x, bytes, cudaMemcpyHostToDevice) != cudaSuccess)
    exit(1);
  return dev;
}

/* Download n elements of dt as f32 (after synchronising the device, so a
 * kernel fault shows here). */
static inline void ct_download(float *out, const void *dev, size_t n, mb_dtype dt) {
  cudaError_t e = cudaDeviceSynchronize();
  if (e != cudaSuccess) {
    fprintf(stderr, "device fault: %s\n", cudaGetErrorString(e));
    exit(1);
  }
  size_t es = mb_dtype_size(dt);
  void *tmp = malloc(n * es + 1);
  if (cudaMemcpy(tmp, dev, n * es, cudaMemcpyDeviceToHost) != cudaSuccess)
    exit(1);
  if (mb_convert(out, MB_F32, tmp, dt, n) != MB_OK)
    exit(1);
  free(tmp);
}

/* ||out - ref|| / ||ref|| in double; +Inf if any output is not finite while
 * the reference is (unwritten poisoned elements are NaN). */
static inline double ct_relerr(const float *out, const double *ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(out[i]) && isfinite(ref[i]))
      return INFINITY;
    double d = (double)out[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

static inline double ct_relerr_f(const float *out, const float *ref, size_t n) {
  double *r = malloc(n * sizeof *r + 8);
  for (size_t i = 0; i < n; i++)
    r[i] = ref[i];
  double e = ct_relerr(out, r, n);
  free(r);
  return e;
}

static inline double ct_tol(mb_dtype dt) {
  switch (dt) {
  case MB_BF16: return TOL_BF16;
  case MB_F16: return TOL_F16;
  case MB_F64: return 1e-12;
  default: return TOL_F32;
  }
}

#endif
