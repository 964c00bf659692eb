/* cpukern_util.h: small helpers shared by the CPU kernel tests: a seeded
 * random generator, array comparisons, and a float64 central-difference
 * gradient check of a random projection of an op's output. */
#ifndef MB_TESTS_CPUKERN_UTIL_H
#define MB_TESTS_CPUKERN_UTIL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "runtime/alloc.h"

/* splitmix64: reproducible across platforms. */
static inline uint64_t tu_next(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static inline double tu_uniform(uint64_t *s) { return (double)(tu_next(s) >> 11) * 0x1.0p-53; }
static inline double tu_normal(uint64_t *s) {
  const double u1 = tu_uniform(s) + 1e-300, u2 = tu_uniform(s);
  return sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
}
static inline void tu_fill(double *x, size_t n, double scale, uint64_t *s) {
  for (size_t i = 0; i < n; i++)
    x[i] = scale * tu_normal(s);
}
/* Buffers start as NaN, so a kernel that leaves an output element unwritten
 * (or reads an input it should not, like budget padding) shows up. */
static inline double *tu_alloc(size_t n) {
  double *p = (double *)mb_host_malloc(n * sizeof(double) + 8);
  if (!p) {
    fprintf(stderr, "test: out of memory (%zu doubles)\n", n);
    abort();
  }
  for (size_t i = 0; i < n; i++)
    p[i] = NAN;
  return p;
}
static inline float *tu_allocf(size_t n) {
  float *p = (float *)mb_host_malloc(n * sizeof(float) + 8);
  if (!p) {
    fprintf(stderr, "test: out of memory (%zu floats)\n", n);
    abort();
  }
  for (size_t i = 0; i < n; i++)
    p[i] = NAN;
  return p;
}
static inline double *tu_copy(const double *x, size_t n) {
  double *p = tu_alloc(n);
  for (size_t i = 0; i < n; i++)
    p[i] = x[i];
  return p;
}
static inline float *tu_tof(const double *x, size_t n) {
  float *p = tu_allocf(n);
  for (size_t i = 0; i < n; i++)
    p[i] = (float)x[i];
  return p;
}

/* Normwise difference: max|a - b| / max|b| (max|a - b| when b is all 0).
 * Infinities in the same places count as equal. */
static inline double tu_normdiff(const double *a, const double *b, size_t n) {
  double md = 0, mb = 0;
  for (size_t i = 0; i < n; i++) {
    if (isinf(a[i]) && a[i] == b[i])
      continue;
    const double e = fabs(a[i] - b[i]);
    if (!(e <= md)) /* also catches NaN */
      md = isnan(e) ? INFINITY : e;
    if (fabs(b[i]) > mb)
      mb = fabs(b[i]);
  }
  return mb > 0 ? md / mb : md;
}
static inline double tu_normdiff_f(const float *a, const double *b, size_t n) {
  double md = 0, mb = 0;
  for (size_t i = 0; i < n; i++) {
    if (isinf(a[i]) && (double)a[i] == b[i])
      continue;
    const double e = fabs((double)a[i] - b[i]);
    if (!(e <= md))
      md = isnan(e) ? INFINITY : e;
    if (fabs(b[i]) > mb)
      mb = fabs(b[i]);
  }
  return mb > 0 ? md / mb : md;
}

/* Gradient check. forward(ctx) recomputes the op's output into `out`
 * (out_n values); the loss is sum(proj * out). For input x (n values) with
 * analytic gradient g, up to max_checks entries (all when n <= max_checks,
 * otherwise a random sample) are compared with the central difference
 * (loss(x+h) - loss(x-h)) / 2h, h = 1e-5 * max(1, |x_i|). The error of an
 * entry is |fd - g| / max(|fd|, |g|, 1e-3 * max_i |g_i|, 1e-8): relative,
 * with floors so that entries whose gradient is ~0 are judged against the
 * input's gradient scale rather than against rounding noise. The absolute
 * 1e-8 (losses and inputs here are O(1)) is for gradients that are exactly
 * zero analytically, as attention's dq and dk with one key: they come out
 * as ~1e-16 of rounding (dP from an FMA GEMM minus D from a plain loop;
 * OpenBLAS's AVX-512 kernels round differently from its AVX2 ones), and
 * noise against noise is a relative error of 1. Returns the max error. */
typedef struct {
  void (*forward)(void *ctx);
  void *ctx;
  const double *out;
  const double *proj;
  size_t out_n;
} tu_gradfn;

static inline double tu_loss(const tu_gradfn *f) {
  f->forward(f->ctx);
  double s = 0;
  for (size_t i = 0; i < f->out_n; i++)
    s += f->proj[i] * f->out[i];
  return s;
}

static inline double tu_gradcheck(const tu_gradfn *f, double *x, const double *g, size_t n, size_t max_checks,
                                  uint64_t *rng) {
  double gmax = 0, worst = 0;
  for (size_t i = 0; i < n; i++)
    if (fabs(g[i]) > gmax)
      gmax = fabs(g[i]);
  const size_t checks = n <= max_checks ? n : max_checks;
  for (size_t c = 0; c < checks; c++) {
    const size_t i = n <= max_checks ? c : (size_t)(tu_next(rng) % n);
    const double x0 = x[i], h = 1e-5 * (fabs(x0) > 1 ? fabs(x0) : 1);
    x[i] = x0 + h;
    const double lp = tu_loss(f);
    x[i] = x0 - h;
    const double lm = tu_loss(f);
    x[i] = x0;
    const double fd = (lp - lm) / (2 * h);
    double den = fabs(fd) > fabs(g[i]) ? fabs(fd) : fabs(g[i]);
    if (den < 1e-3 * gmax)
      den = 1e-3 * gmax;
    if (den < 1e-8)
      den = 1e-8;
    const double err = den > 0 ? fabs(fd - g[i]) / den : fabs(fd - g[i]);
    if (!(err <= worst))
      worst = isnan(err) ? INFINITY : err;
  }
  tu_loss(f); /* leave out as computed at the unperturbed x */
  return worst;
}

#endif
