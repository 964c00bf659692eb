/* test_cuda_scan_case.h: what the GPU selective-scan tests share (the GPU
 * test in C, the CPU emulation test in C++): a random problem drawn fresh
 * for every run (seed printed; MAMBERT_TEST_SEED replays one), its
 * reference computed by the CPU kernel in float64 on the very values the
 * device sees (inputs rounded to their dtype), and the comparison: per
 * tensor ||out - ref|| / ||ref|| against the bound of its dtype (f32 1e-5,
 * bf16 1e-2, f16 5e-3), printed with the distribution of the elementwise
 * errors (|out - ref| / rms(ref) at the 50th, 90th, 99th percentile and the
 * maximum). dD and ddelta_bias, sums over tokens that can cancel, are
 * bounded relative to their terms' size (sct_check_terms). Outputs start as
 * NaN, so an unwritten element fails.
 *
 * Inputs are drawn like a Mamba layer's (as tests/cpukern/scan_case.h):
 * A_log = log(1..N) + noise (A = -1..-N, Mamba's init), delta before the
 * softplus around -1 (without the softplus: in [0.05, 0.55), and the bias
 * in [0, 0.2), so that dt stays positive), the rest standard normal.
 */
#ifndef MB_TESTS_CUDA_SCAN_CASE_H
#define MB_TESTS_CUDA_SCAN_CASE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/cpu/selective_scan.h"
#include "kernels/cuda/selective_scan_plan.h"
#include "runtime/dtype.h"
#include "runtime/error.h"

/* ---- fresh random numbers ---- */

static uint64_t sct_rng_state;

static inline uint64_t sct_next(void) {
  uint64_t z = (sct_rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static inline double sct_uniform(void) { return (double)(sct_next() >> 11) * 0x1.0p-53; }
static inline double sct_normal(void) {
  const double u1 = sct_uniform() + 1e-300, u2 = sct_uniform();
  return sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
}

/* A new seed per run unless MAMBERT_TEST_SEED is set; printed either way. */
static inline void sct_seed_init(const char *test) {
  const char *env = getenv("MAMBERT_TEST_SEED");
  uint64_t seed;
  if (env && *env) {
    seed = strtoull(env, NULL, 0);
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed = ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
  }
  sct_rng_state = seed;
  printf("%s: seed %llu (MAMBERT_TEST_SEED=%llu replays it)\n", test, (unsigned long long)seed,
         (unsigned long long)seed);
  fflush(stdout);
}

static inline void *sct_malloc(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) {
    fprintf(stderr, "test: out of memory (%zu bytes)\n", bytes);
    abort();
  }
  return p;
}
static inline float *sct_nanf(size_t n) {
  float *p = (float *)sct_malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++)
    p[i] = NAN;
  return p;
}
static inline double *sct_nand(size_t n) {
  double *p = (double *)sct_malloc(n * sizeof(double));
  for (size_t i = 0; i < n; i++)
    p[i] = NAN;
  return p;
}
/* n values mean + std * normal, rounded to dt (the device's values) */
static inline float *sct_draw(size_t n, double mean, double std, mb_dtype dt) {
  float *p = (float *)sct_malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++)
    p[i] = mb_round_to((float)(mean + std * sct_normal()), dt);
  return p;
}
static inline double *sct_tod(const float *x, size_t n) {
  double *p = (double *)sct_malloc(n * sizeof(double));
  for (size_t i = 0; i < n; i++)
    p[i] = x ? (double)x[i] : 0.0;
  return p;
}

/* ---- a problem and its reference ---- */

#define SCT_MAX_SEQ 64

typedef struct {
  mb_scan_desc d;
  int32_t cu[SCT_MAX_SEQ + 1];
  mb_dtype dt, pdt;
  int has_z, has_D, has_bias;
  size_t nx, nbc, ndn, nstates;
  /* inputs, already rounded to their dtype; absent ones are NULL */
  float *u, *delta, *z, *B, *C, *dy, *A_log, *D, *bias;
  /* float64 reference (CPU kernel on the same values) */
  double *y, *states, *du, *ddelta, *dz, *dB, *dC, *dA_log, *dD, *dbias;
} sct_case;

/* Device results downloaded as f32 (NaN where nothing was written). */
typedef struct {
  float *y, *states, *du, *ddelta, *dz, *dB, *dC, *dA_log, *dD, *dbias;
} sct_out;

/* d: the shape (cu_seqlens, if any, copied into c->cu). */
static inline void sct_case_make(sct_case *c, const mb_scan_desc *d, mb_dtype dt, mb_dtype pdt, int has_z, int has_D,
                                 int has_bias) {
  memset(c, 0, sizeof *c);
  c->d = *d;
  if (d->cu_seqlens) {
    if (d->nseq > SCT_MAX_SEQ)
      abort();
    memcpy(c->cu, d->cu_seqlens, (size_t)(d->nseq + 1) * sizeof(int32_t));
    c->d.cu_seqlens = c->cu;
  }
  c->dt = dt, c->pdt = pdt, c->has_z = has_z, c->has_D = has_D, c->has_bias = has_bias;
  const size_t tokens = (size_t)d->batch * d->seqlen, Dn = (size_t)d->dim, N = (size_t)d->dstate;
  c->nx = tokens * Dn;
  c->nbc = tokens * N;
  c->ndn = Dn * N;
  c->nstates = (size_t)d->batch * (size_t)((d->seqlen + MB_SCAN_TILE - 1) / MB_SCAN_TILE) * Dn * N;
  c->u = sct_draw(c->nx, 0, 1, dt);
  if (d->delta_softplus) {
    c->delta = sct_draw(c->nx, -1, 0.5, dt);
  } else { /* dt = delta + bias is used as is: keep it positive, like a softplus output */
    c->delta = (float *)sct_malloc(c->nx * sizeof(float));
    for (size_t i = 0; i < c->nx; i++)
      c->delta[i] = mb_round_to((float)(0.05 + 0.5 * sct_uniform()), dt);
  }
  c->z = has_z ? sct_draw(c->nx, 0, 1, dt) : NULL;
  c->B = sct_draw(c->nbc, 0, 1, dt);
  c->C = sct_draw(c->nbc, 0, 1, dt);
  c->dy = sct_draw(c->nx, 0, 1, dt);
  c->A_log = (float *)sct_malloc(c->ndn * sizeof(float));
  for (size_t ch = 0; ch < Dn; ch++)
    for (size_t n = 0; n < N; n++)
      c->A_log[ch * N + n] = mb_round_to((float)(log(1.0 + (double)n) + 0.1 * sct_normal()), pdt);
  c->D = has_D ? sct_draw(Dn, 0, 1, pdt) : NULL;
  c->bias = has_bias ? sct_draw(Dn, 0, 0.5, pdt) : NULL;
  if (c->bias && !d->delta_softplus)
    for (size_t i = 0; i < Dn; i++)
      c->bias[i] = mb_round_to((float)(0.2 * sct_uniform()), pdt);
}

/* The float64 CPU kernel on the case's values; chunk 128 like the GPU. */
static inline void sct_case_reference(sct_case *c) {
  mb_scan_desc d = c->d;
  d.chunk = MB_SCAN_TILE;
  d.nthreads = 0;
  double *u = sct_tod(c->u, c->nx), *delta = sct_tod(c->delta, c->nx), *B = sct_tod(c->B, c->nbc),
         *C = sct_tod(c->C, c->nbc), *A_log = sct_tod(c->A_log, c->ndn), *dy = sct_tod(c->dy, c->nx);
  double *z = c->z ? sct_tod(c->z, c->nx) : NULL, *D = c->D ? sct_tod(c->D, (size_t)d.dim) : NULL,
         *bias = c->bias ? sct_tod(c->bias, (size_t)d.dim) : NULL;
  mb_scan_in_f64 in = {u, delta, A_log, B, C, D, z, bias};
  c->y = sct_nand(c->nx);
  c->states = sct_nand(c->nstates);
  if (mb_cpu_scan_fwd_f64(&d, &in, c->y, c->states, NULL, 0) != MB_OK) {
    fprintf(stderr, "reference forward: %s\n", mb_error_message());
    abort();
  }
  c->du = sct_nand(c->nx), c->ddelta = sct_nand(c->nx), c->dB = sct_nand(c->nbc), c->dC = sct_nand(c->nbc);
  c->dA_log = sct_nand(c->ndn);
  c->dz = z ? sct_nand(c->nx) : NULL;
  c->dD = D ? sct_nand((size_t)d.dim) : NULL;
  c->dbias = bias ? sct_nand((size_t)d.dim) : NULL;
  mb_scan_grad_f64 g = {c->du, c->ddelta, c->dA_log, c->dB, c->dC, c->dD, c->dz, c->dbias};
  if (mb_cpu_scan_bwd_f64(&d, &in, c->states, dy, &g, NULL, 0) != MB_OK) {
    fprintf(stderr, "reference backward: %s\n", mb_error_message());
    abort();
  }
  double *tmp[] = {u, delta, B, C, A_log, dy, z, D, bias};
  for (size_t i = 0; i < sizeof tmp / sizeof tmp[0]; i++)
    free(tmp[i]);
}

static inline void sct_case_free(sct_case *c) {
  float *f[] = {c->u, c->delta, c->z, c->B, c->C, c->dy, c->A_log, c->D, c->bias};
  double *r[] = {c->y, c->states, c->du, c->ddelta, c->dz, c->dB, c->dC, c->dA_log, c->dD, c->dbias};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
    free(f[i]);
  for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
    free(r[i]);
}

static inline void sct_out_alloc(const sct_case *c, sct_out *o) {
  const size_t Dn = (size_t)c->d.dim;
  o->y = sct_nanf(c->nx), o->states = sct_nanf(c->nstates);
  o->du = sct_nanf(c->nx), o->ddelta = sct_nanf(c->nx), o->dz = sct_nanf(c->nx);
  o->dB = sct_nanf(c->nbc), o->dC = sct_nanf(c->nbc);
  o->dA_log = sct_nanf(c->ndn), o->dD = sct_nanf(Dn), o->dbias = sct_nanf(Dn);
}

static inline void sct_out_free(sct_out *o) {
  float *f[] = {o->y, o->states, o->du, o->ddelta, o->dz, o->dB, o->dC, o->dA_log, o->dD, o->dbias};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
    free(f[i]);
}

/* ---- comparison ---- */

static inline double sct_tol(mb_dtype dt) {
  switch (dt) {
  case MB_BF16: return 1e-2;
  case MB_F16: return 5e-3;
  default: return 1e-5;
  }
}

static int sct_cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Worst relative error seen per dtype (0 f32/other, 1 bf16, 2 f16), for the
 * summary line. */
static double sct_worst[3];

/* Compares n values; prints one line; returns 1 if out of bounds.
 * terms, if not NULL: for an output that is a sum over tokens, the l2 norm
 * of the terms summed into each element. Such a sum may cancel to far below
 * its terms (a D = 1 problem's one bias gradient did, to 1/470 of them), and
 * its rounding error scales with the terms, not with the sum: the bound is
 * then relative to max(|ref|, terms) element by element, which is ||ref||
 * for a sum that does not cancel. */
static inline int sct_check_terms(const char *label, const char *what, const float *out, const double *ref, size_t n,
                                  mb_dtype dt, const double *terms) {
  if (!ref)
    return 0;
  double num = 0, den = 0;
  int bad = 0;
  size_t nonfinite = 0;
  double *e = (double *)sct_malloc(n * sizeof(double));
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(out[i]) && isfinite(ref[i]))
      nonfinite++;
    const double d = (double)out[i] - ref[i];
    num += d * d;
    den += terms ? fmax(ref[i] * ref[i], terms[i] * terms[i]) : ref[i] * ref[i];
    e[i] = fabs(d);
  }
  const double rel = nonfinite ? INFINITY : den > 0 ? sqrt(num / den) : sqrt(num);
  const double rms = n ? sqrt(den / (double)n) : 0, scale = rms > 0 ? rms : 1;
  qsort(e, n, sizeof(double), sct_cmp_double);
#define SCT_Q(q) (n ? e[(size_t)((double)(n - 1) * (q))] / scale : 0.0)
  const double tol = sct_tol(dt);
  bad = !(rel <= tol);
  printf("  %-26s %-8s %-5s n=%-9zu rel %.2e (bound %.0e) |err|/rms p50 %.1e p90 %.1e p99 %.1e max %.1e%s", label, what,
         mb_dtype_name(dt), n, rel, tol, SCT_Q(0.5), SCT_Q(0.9), SCT_Q(0.99), SCT_Q(1.0), bad ? "  FAIL" : "");
  if (nonfinite)
    printf(" (%zu non-finite: unwritten or overflow)", nonfinite);
  printf("\n");
#undef SCT_Q
  free(e);
  const int k = dt == MB_BF16 ? 1 : dt == MB_F16 ? 2 : 0;
  if (isfinite(rel) && rel > sct_worst[k])
    sct_worst[k] = rel;
  else if (!isfinite(rel))
    sct_worst[k] = INFINITY;
  return bad;
}

static inline int sct_check(const char *label, const char *what, const float *out, const double *ref, size_t n,
                            mb_dtype dt) {
  return sct_check_terms(label, what, out, ref, n, dt, NULL);
}

/* The l2 norms of the terms of dD[d] = sum_t dy*silu(z)*u and of
 * ddelta_bias[d] = sum_t ddelta, over the tokens the scan reads (a varlen
 * budget's tail is not read). NULL where the gradient is absent. */
static inline double *sct_sum_terms(const sct_case *c, int which_bias) {
  if (which_bias ? !c->dbias : !c->dD)
    return NULL;
  const size_t Dn = (size_t)c->d.dim;
  const size_t tokens = c->d.cu_seqlens ? (size_t)c->d.cu_seqlens[c->d.nseq] : c->nx / Dn;
  double *t2 = (double *)calloc(Dn, sizeof(double));
  if (!t2)
    abort();
  for (size_t t = 0; t < tokens; t++)
    for (size_t ch = 0; ch < Dn; ch++) {
      const size_t i = t * Dn + ch;
      double v;
      if (which_bias) {
        v = c->ddelta[i];
      } else {
        const double z = c->z ? (double)c->z[i] : 0, gate = c->z ? z / (1 + exp(-z)) : 1;
        v = (double)c->dy[i] * gate * (double)c->u[i];
      }
      t2[ch] += v * v;
    }
  for (size_t ch = 0; ch < Dn; ch++)
    t2[ch] = sqrt(t2[ch]);
  return t2;
}

/* Forward (y, states) and, if bwd, every gradient. Returns the failures. */
static inline int sct_compare(const sct_case *c, const sct_out *o, const char *label, int bwd) {
  const size_t Dn = (size_t)c->d.dim;
  int bad = 0;
  bad += sct_check(label, "y", o->y, c->y, c->nx, c->dt);
  bad += sct_check(label, "states", o->states, c->states, c->nstates, MB_F32);
  if (!bwd)
    return bad;
  bad += sct_check(label, "du", o->du, c->du, c->nx, c->dt);
  bad += sct_check(label, "ddelta", o->ddelta, c->ddelta, c->nx, c->dt);
  bad += sct_check(label, "dz", o->dz, c->dz, c->nx, c->dt);
  bad += sct_check(label, "dB", o->dB, c->dB, c->nbc, c->dt);
  bad += sct_check(label, "dC", o->dC, c->dC, c->nbc, c->dt);
  bad += sct_check(label, "dA_log", o->dA_log, c->dA_log, c->ndn, c->pdt);
  double *dD_terms = sct_sum_terms(c, 0), *dbias_terms = sct_sum_terms(c, 1);
  bad += sct_check_terms(label, "dD", o->dD, c->dD, Dn, c->pdt, dD_terms);
  bad += sct_check_terms(label, "ddelta_bias", o->dbias, c->dbias, Dn, c->pdt, dbias_terms);
  free(dD_terms), free(dbias_terms);
  fflush(stdout);
  return bad;
}

/* Values of dt as raw bytes (for uploads) and back. */
static inline void *sct_pack(const float *x, size_t n, mb_dtype dt) {
  if (!x)
    return NULL;
  const size_t es = mb_dtype_size(dt);
  void *p = sct_malloc(n * es);
  if (mb_convert(p, dt, x, MB_F32, n) != MB_OK)
    abort();
  return p;
}
static inline void sct_unpack(float *out, const void *x, size_t n, mb_dtype dt) {
  if (mb_convert(out, MB_F32, x, dt, n) != MB_OK)
    abort();
}

#endif
