/* test_cuda_conv1d_case.h: a random conv1d problem for the GPU conv1d tests
 * (the GPU test in C, the emulation test in C++), its float64 reference by
 * the CPU kernel on the values the device sees, and the comparison; the
 * random numbers, seed and checks are test_cuda_scan_case.h's. */
#ifndef MB_TESTS_CUDA_CONV1D_CASE_H
#define MB_TESTS_CUDA_CONV1D_CASE_H

#include "kernels/cpu/conv1d.h"
#include "tests/cuda/test_cuda_scan_case.h"

typedef struct {
  mb_conv1d_desc d;
  int32_t cu[SCT_MAX_SEQ + 1];
  mb_dtype dt, pdt;
  size_t nx, nw;
  float *x, *w, *bias, *dy;    /* rounded to their dtypes; bias may be NULL */
  double *y, *dx, *dw, *dbias; /* float64 reference */
} cct_case;

typedef struct {
  float *y, *dx, *dw, *dbias;
} cct_out;

static inline void cct_case_make(cct_case *c, const mb_conv1d_desc *d, mb_dtype dt, mb_dtype pdt, int has_bias) {
  memset(c, 0, sizeof *c);
  c->d = *d;
  if (d->cu_seqlens) {
    if (d->nseq > SCT_MAX_SEQ)
      abort();
    memcpy(c->cu, d->cu_seqlens, (size_t)(d->nseq + 1) * sizeof(int32_t));
    c->d.cu_seqlens = c->cu;
  }
  c->dt = dt, c->pdt = pdt;
  c->nx = (size_t)d->batch * d->seqlen * d->dim;
  c->nw = (size_t)d->dim * d->width;
  c->x = sct_draw(c->nx, 0, 1, dt);
  c->dy = sct_draw(c->nx, 0, 1, dt);
  c->w = sct_draw(c->nw, 0, 0.5, pdt);
  c->bias = has_bias ? sct_draw((size_t)d->dim, 0, 0.5, pdt) : NULL;
}

static inline void cct_case_reference(cct_case *c) {
  mb_conv1d_desc d = c->d;
  d.nthreads = 0;
  double *x = sct_tod(c->x, c->nx), *w = sct_tod(c->w, c->nw), *dy = sct_tod(c->dy, c->nx);
  double *bias = c->bias ? sct_tod(c->bias, (size_t)d.dim) : NULL;
  c->y = sct_nand(c->nx), c->dx = sct_nand(c->nx), c->dw = sct_nand(c->nw), c->dbias = sct_nand((size_t)d.dim);
  if (mb_cpu_conv1d_fwd_f64(&d, x, w, bias, c->y) != MB_OK ||
      mb_cpu_conv1d_bwd_f64(&d, x, w, bias, dy, c->dx, c->dw, c->dbias, NULL, 0) != MB_OK) {
    fprintf(stderr, "conv1d reference: %s\n", mb_error_message());
    abort();
  }
  free(x), free(w), free(dy), free(bias);
}

static inline void cct_case_free(cct_case *c) {
  free(c->x), free(c->w), free(c->bias), free(c->dy);
  free(c->y), free(c->dx), free(c->dw), free(c->dbias);
}

static inline void cct_out_alloc(const cct_case *c, cct_out *o) {
  o->y = sct_nanf(c->nx), o->dx = sct_nanf(c->nx), o->dw = sct_nanf(c->nw), o->dbias = sct_nanf((size_t)c->d.dim);
}
static inline void cct_out_free(cct_out *o) { free(o->y), free(o->dx), free(o->dw), free(o->dbias); }

static inline int cct_compare(const cct_case *c, const cct_out *o, const char *label) {
  int bad = 0;
  bad += sct_check(label, "y", o->y, c->y, c->nx, c->dt);
  bad += sct_check(label, "dx", o->dx, c->dx, c->nx, c->dt);
  bad += sct_check(label, "dw", o->dw, c->dw, c->nw, c->pdt);
  bad += sct_check(label, "dbias", o->dbias, c->dbias, (size_t)c->d.dim, c->pdt);
  fflush(stdout);
  return bad;
}

#endif
