/* cpukern_ref.c: naive references of attention, selective scan and conv1d
 * (see cpukern_ref.h). Sequence bookkeeping here, written independently of
 * the kernels; the math in cpukern_ref_impl.h, once per element type. */
#include "tests/cpukern/cpukern_ref.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/vecmath.h"
#include "runtime/alloc.h"

static int ref_threads(int n) { return n > 0 ? n : omp_get_max_threads(); }

static int ref_nseg(const mb_attn_desc *d) { return d->cu_seqlens ? d->nseq : d->batch; }

static void ref_segment(const mb_attn_desc *d, int s, int *start, int *n, const int32_t **mask) {
  if (d->cu_seqlens) {
    *start = d->cu_seqlens[s];
    *n = d->cu_seqlens[s + 1] - d->cu_seqlens[s];
    *mask = NULL;
  } else {
    *start = s * d->seqlen;
    *n = d->seqlen;
    *mask = d->key_mask ? d->key_mask + (size_t)s * d->seqlen : NULL;
  }
}

static size_t ref_P_offset(const mb_attn_desc *d, int s) {
  size_t off = 0;
  for (int i = 0; i < s; i++) {
    int start, n;
    const int32_t *mask;
    ref_segment(d, i, &start, &n, &mask);
    off += (size_t)d->heads * n * n;
  }
  return off;
}

size_t ref_attn_P_numel(const mb_attn_desc *d) { return ref_P_offset(d, ref_nseg(d)); }

static int ref_scan_is_pad(const mb_scan_desc *d, int t) {
  return d->cu_seqlens && t >= d->cu_seqlens[d->nseq];
}

static int ref_scan_starts(const mb_scan_desc *d, int t) {
  if (!d->cu_seqlens)
    return t == 0;
  for (int s = 0; s < d->nseq; s++)
    if (d->cu_seqlens[s] == t)
      return 1;
  return 0;
}

size_t ref_scan_states_numel(const mb_scan_desc *d) {
  return (size_t)d->batch * d->seqlen * d->dim * d->dstate;
}

/* First token of the sequence holding flat token r, or -1 for padding. */
static void ref_conv_seq(const mb_conv1d_desc *d, long r, long *first) {
  if (!d->cu_seqlens) {
    *first = r / d->seqlen * d->seqlen;
    return;
  }
  *first = -1;
  for (int s = 0; s < d->nseq; s++)
    if (d->cu_seqlens[s] <= r && r < d->cu_seqlens[s + 1])
      *first = d->cu_seqlens[s];
}

#define R_T float
#define R_SFX f32
#define R_GEMM cblas_sgemm
#define R_EXP mb_expf /* the kernels' vectorisable exp: the bench races algorithms, not exps */
#define R_LOG1P log1pf
#include "tests/cpukern/cpukern_ref_impl.h"
#undef R_T
#undef R_SFX
#undef R_GEMM
#undef R_EXP
#undef R_LOG1P

#define R_T double
#define R_SFX f64
#define R_GEMM cblas_dgemm
#define R_EXP exp
#define R_LOG1P log1p
#include "tests/cpukern/cpukern_ref_impl.h"
#undef R_T
#undef R_SFX
#undef R_GEMM
#undef R_EXP
#undef R_LOG1P

/* conv1d backward in scatter form (each output's gradient pushed back to the
 * inputs it read), unlike the kernel's gather form. */
int ref_conv1d_bwd_f64(const mb_conv1d_desc *d, const double *x, const double *w, const double *bias,
                       const double *dy, double *dx, double *dw, double *dbias) {
  MB_TRY(mb_cpu_conv1d_check(d));
  const int D = d->dim, W = d->width;
  const long tokens = (long)d->batch * d->seqlen;
  memset(dx, 0, (size_t)tokens * D * sizeof(double));
  memset(dw, 0, (size_t)D * W * sizeof(double));
  memset(dbias, 0, (size_t)D * sizeof(double));
  for (long r = 0; r < tokens; r++) {
    long first;
    ref_conv_seq(d, r, &first);
    if (first < 0)
      continue;
    for (int c = 0; c < D; c++) {
      double pre = bias ? bias[c] : 0;
      for (int k = 0; k < W; k++)
        if (r - (W - 1) + k >= first)
          pre += w[c * W + k] * x[(r - (W - 1) + k) * D + c];
      double g = dy[r * D + c];
      if (d->silu) {
        const double sg = 1 / (1 + exp(-pre));
        g *= sg + pre * sg * (1 - sg);
      }
      dbias[c] += g;
      for (int k = 0; k < W; k++) {
        const long src = r - (W - 1) + k;
        if (src < first)
          continue;
        dw[c * W + k] += g * x[src * D + c];
        dx[src * D + c] += g * w[c * W + k];
      }
    }
  }
  return MB_OK;
}
