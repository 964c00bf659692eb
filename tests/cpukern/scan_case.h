/* scan_case.h: a random selective-scan problem for the tests, in float64
 * with a float32 copy on demand. Values are drawn like a Mamba layer's: A_log
 * = log(1..N) (A = -1..-N, Mamba's init), delta before softplus around -1,
 * u, B, C, D, z standard normal. */
#ifndef MB_TESTS_CPUKERN_SCAN_CASE_H
#define MB_TESTS_CPUKERN_SCAN_CASE_H

#include "kernels/cpu/selective_scan.h"
#include "tests/cpukern/cpukern_util.h"

typedef struct {
  mb_scan_desc d;
  size_t nx, nbc; /* elements of [B, L, D] and [B, L, N] */
  double *u, *delta, *A_log, *B, *C, *D, *z, *bias;
} scan_case;

static inline void scan_case_init(scan_case *c, const mb_scan_desc *d, uint64_t seed) {
  c->d = *d;
  const size_t tokens = (size_t)d->batch * d->seqlen;
  c->nx = tokens * d->dim;
  c->nbc = tokens * d->dstate;
  uint64_t s = seed;
  c->u = tu_alloc(c->nx);
  c->delta = tu_alloc(c->nx);
  c->z = tu_alloc(c->nx);
  c->B = tu_alloc(c->nbc);
  c->C = tu_alloc(c->nbc);
  c->A_log = tu_alloc((size_t)d->dim * d->dstate);
  c->D = tu_alloc((size_t)d->dim);
  c->bias = tu_alloc((size_t)d->dim);
  tu_fill(c->u, c->nx, 1.0, &s);
  tu_fill(c->delta, c->nx, 0.5, &s);
  for (size_t i = 0; i < c->nx; i++)
    c->delta[i] -= 1.0;
  tu_fill(c->z, c->nx, 1.0, &s);
  tu_fill(c->B, c->nbc, 1.0, &s);
  tu_fill(c->C, c->nbc, 1.0, &s);
  for (int ch = 0; ch < d->dim; ch++)
    for (int n = 0; n < d->dstate; n++)
      c->A_log[(size_t)ch * d->dstate + n] = log(1.0 + n) + 0.1 * tu_normal(&s);
  tu_fill(c->D, (size_t)d->dim, 1.0, &s);
  tu_fill(c->bias, (size_t)d->dim, 0.5, &s);
}

static inline void scan_case_free(scan_case *c) {
  double *b[] = {c->u, c->delta, c->z, c->B, c->C, c->A_log, c->D, c->bias};
  for (size_t i = 0; i < 8; i++)
    mb_host_free(b[i]);
}

static inline mb_scan_in_f64 scan_case_in(const scan_case *c) {
  mb_scan_in_f64 in = {.u = c->u, .delta = c->delta, .A_log = c->A_log, .B = c->B, .C = c->C, .D = c->D,
                       .z = c->z, .delta_bias = c->bias};
  return in;
}

/* Gradient buffers matching a case (all eight). */
typedef struct {
  double *du, *ddelta, *dA_log, *dB, *dC, *dD, *dz, *dbias;
} scan_grads;

static inline void scan_grads_init(scan_grads *g, const scan_case *c) {
  const size_t DN = (size_t)c->d.dim * c->d.dstate, D = (size_t)c->d.dim;
  g->du = tu_alloc(c->nx);
  g->ddelta = tu_alloc(c->nx);
  g->dz = tu_alloc(c->nx);
  g->dB = tu_alloc(c->nbc);
  g->dC = tu_alloc(c->nbc);
  g->dA_log = tu_alloc(DN);
  g->dD = tu_alloc(D);
  g->dbias = tu_alloc(D);
}

static inline void scan_grads_free(scan_grads *g) {
  double *b[] = {g->du, g->ddelta, g->dz, g->dB, g->dC, g->dA_log, g->dD, g->dbias};
  for (size_t i = 0; i < 8; i++)
    mb_host_free(b[i]);
}

static inline mb_scan_grad_f64 scan_grads_out(const scan_grads *g) {
  mb_scan_grad_f64 o = {.du = g->du, .ddelta = g->ddelta, .dA_log = g->dA_log, .dB = g->dB, .dC = g->dC,
                        .dD = g->dD, .dz = g->dz, .ddelta_bias = g->dbias};
  return o;
}

/* Normwise difference over all eight gradients (the worst one). */
static inline double scan_grads_diff(const scan_grads *a, const scan_grads *b, const scan_case *c) {
  const size_t DN = (size_t)c->d.dim * c->d.dstate, D = (size_t)c->d.dim;
  double e = tu_normdiff(a->du, b->du, c->nx);
  e = fmax(e, tu_normdiff(a->ddelta, b->ddelta, c->nx));
  e = fmax(e, tu_normdiff(a->dz, b->dz, c->nx));
  e = fmax(e, tu_normdiff(a->dB, b->dB, c->nbc));
  e = fmax(e, tu_normdiff(a->dC, b->dC, c->nbc));
  e = fmax(e, tu_normdiff(a->dA_log, b->dA_log, DN));
  e = fmax(e, tu_normdiff(a->dD, b->dD, D));
  e = fmax(e, tu_normdiff(a->dbias, b->dbias, D));
  return e;
}

#endif
