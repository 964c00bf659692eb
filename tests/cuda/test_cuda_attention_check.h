/* test_cuda_attention_check.h: the host side of the CUDA attention tests
 * (no CUDA headers, so the emulated test builds without the toolkit): fresh
 * random inputs (a new seed per run, printed; MAMBERT_TEST_SEED replays
 * one), rounding to a dtype, and the error measures:
 * ||out - ref|| / max(||ref||, AT_FLOOR_RMS * sqrt(n)) over all elements (a
 * non-finite output where the reference is finite counts as +inf; the floor
 * keeps gradients that are exactly 0 in exact arithmetic -- dq of a row that
 * sees one key -- from dividing rounding noise by ~0), the distribution of
 * per-element relative errors |out - ref| / max(|ref|, 0.1 * rms(ref)), the
 * padded tokens' exact zeros and +inf lse. Header-only.
 */
#ifndef MB_TESTS_CUDA_ATTENTION_CHECK_H
#define MB_TESTS_CUDA_ATTENTION_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/dtype.h"
#include "runtime/error.h"
#include "runtime/philox.h"

static inline void at_die(const char *what) {
  fprintf(stderr, "FATAL: %s\n", what);
  fflush(stderr);
  exit(1);
}

/* ---- random inputs ---- */

static uint64_t at_seed;
static uint64_t at_draws;

static inline void at_seed_init(const char *test) {
  const char *env = getenv("MAMBERT_TEST_SEED");
  if (env && *env) {
    at_seed = strtoull(env, NULL, 0);
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    at_seed = ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
  }
  printf("%s: seed %llu (MAMBERT_TEST_SEED=%llu replays it)\n", test, (unsigned long long)at_seed,
         (unsigned long long)at_seed);
}

/* n normal(0, std) floats; every call draws a fresh stream. */
static inline void at_randn(float *x, size_t n, float std) {
  mb_philox_fill_normal(at_seed, (at_draws++) << 40, x, n, 0.0f, std);
}

/* n integers uniform in [0, bound) */
static inline void at_randint(int *x, size_t n, int bound) {
  uint32_t *w = (uint32_t *)malloc(n * sizeof *w + 4);
  if (!w)
    at_die("out of host memory");
  mb_philox_fill_u32(at_seed, (at_draws++) << 40, w, n);
  for (size_t i = 0; i < n; i++)
    x[i] = (int)(w[i] % (uint32_t)bound);
  free(w);
}

static inline void *at_malloc(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p)
    at_die("out of host memory");
  return p;
}

/* x rounded to dt (the CPU reference then sees exactly the device's inputs) */
static inline void at_round(float *x, size_t n, mb_dtype dt) {
  for (size_t i = 0; i < n; i++)
    x[i] = mb_round_to(x[i], dt);
}

/* ---- errors ---- */

/* Well under the RMS of any output or gradient in these tests (dq at L =
 * 1000 is about 4e-3), well over f32 rounding noise (about 1e-7). */
#define AT_FLOOR_RMS 1e-3

typedef struct {
  double norm;             /* ||out - ref|| / ||ref|| (+inf: a non-finite output) */
  double max, p99, median; /* per-element relative errors */
} at_err;

static int at_cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static inline at_err at_compare(const float *out, const double *ref, size_t n) {
  at_err r = {0, 0, 0, 0};
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(out[i]) && isfinite(ref[i])) {
      r.norm = r.max = r.p99 = r.median = INFINITY;
      return r;
    }
    const double d = (double)out[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  const double floor2 = AT_FLOOR_RMS * AT_FLOOR_RMS * (double)n;
  r.norm = sqrt(num / (den > floor2 ? den : floor2 > 0 ? floor2 : 1));
  const double floor = 0.1 * sqrt(den / (n ? n : 1));
  double *e = (double *)at_malloc(n * sizeof *e);
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (ref[i] != 0.0) {
      const double a = fabs(ref[i]) > floor ? fabs(ref[i]) : floor;
      e[m++] = fabs((double)out[i] - ref[i]) / (a > 0 ? a : 1);
    }
  if (m) {
    qsort(e, m, sizeof *e, at_cmp_double);
    r.max = e[m - 1];
    r.p99 = e[(size_t)(0.99 * (double)(m - 1))];
    r.median = e[(m - 1) / 2];
  }
  free(e);
  return r;
}

/* Padded tokens (a masked row, the varlen budget's tail): pad[t] = 1. */
static inline unsigned char *at_pad_tokens(size_t tokens, const int32_t *key_mask, const int32_t *cu, int nseq) {
  unsigned char *pad = (unsigned char *)at_malloc(tokens);
  for (size_t t = 0; t < tokens; t++)
    pad[t] = cu ? (t >= (size_t)cu[nseq]) : (key_mask && !key_mask[t]);
  return pad;
}

/* Values of padded tokens' rows (width values per token) that are not
 * exactly 0: padded queries get out = 0 and dq = 0, padded keys dk = dv = 0. */
static inline size_t at_nonzero_pad(const float *x, const unsigned char *pad, size_t tokens, size_t width) {
  size_t bad = 0;
  for (size_t t = 0; t < tokens; t++)
    if (pad[t])
      for (size_t j = 0; j < width; j++)
        bad += x[t * width + j] != 0.0f;
  return bad;
}

/* lse: +inf exactly where the reference has +inf (padded rows, counted in
 * *inf_mismatch when not), and elsewhere the largest |lse - ref| over its
 * bound tol + slack[i] (slack NULL: tol alone), +inf if a finite reference
 * got a non-finite value; *abs_worst the largest |lse - ref|. */
static inline double at_compare_lse_bound(const float *lse, const double *ref, const double *slack, double tol,
                                          size_t n, double *abs_worst, size_t *inf_mismatch) {
  double worst = 0;
  *abs_worst = 0;
  *inf_mismatch = 0;
  for (size_t i = 0; i < n; i++) {
    if (isinf(ref[i])) {
      if (!(isinf(lse[i]) && lse[i] > 0))
        (*inf_mismatch)++;
      continue;
    }
    if (!isfinite(lse[i]))
      return INFINITY;
    const double d = fabs((double)lse[i] - ref[i]), r = d / (tol + (slack ? slack[i] : 0.0));
    *abs_worst = d > *abs_worst ? d : *abs_worst;
    worst = r > worst ? r : worst;
  }
  return worst;
}

/* The largest absolute difference (at_compare_lse_bound with bound 1). */
static inline double at_compare_lse(const float *lse, const double *ref, size_t n, size_t *inf_mismatch) {
  double abs_worst = 0;
  return at_compare_lse_bound(lse, ref, NULL, 1.0, n, &abs_worst, inf_mismatch);
}

#endif
