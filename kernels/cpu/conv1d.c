/* conv1d.c: depthwise causal conv1d on the CPU (see conv1d.h). Checks and
 * sequence bookkeeping here; the kernels in conv1d_impl.h, included once for
 * float and once for double. */
#include "kernels/cpu/conv1d.h"

#include <math.h>
#include <omp.h>
#include <string.h>

/* Channels per work item: one token's block is a contiguous run of memory
 * and the inner loops run across it (vectorisable). */
#define CONV_BLOCK 64

int mb_cpu_conv1d_check(const mb_conv1d_desc *d) {
  if (!d)
    return MB_ERR(MB_EINVAL, "conv1d: NULL descriptor");
  if (d->batch < 0 || d->seqlen < 0)
    return MB_ERR(MB_EINVAL, "conv1d: batch %d and seqlen %d must be >= 0", d->batch, d->seqlen);
  if (d->dim < 1)
    return MB_ERR(MB_EINVAL, "conv1d: dim %d must be >= 1", d->dim);
  if (d->width < 1 || d->width > MB_CONV1D_MAX_WIDTH)
    return MB_ERR(MB_EINVAL, "conv1d: width %d must be 1 .. %d", d->width, MB_CONV1D_MAX_WIDTH);
  if (d->nthreads < 0)
    return MB_ERR(MB_EINVAL, "conv1d: nthreads %d must be >= 0", d->nthreads);
  if ((double)d->batch * d->seqlen * d->dim > (double)PTRDIFF_MAX / 8)
    return MB_ERR(MB_EINVAL, "conv1d: [%d, %d, %d] is too large to index", d->batch, d->seqlen, d->dim);
  if (d->cu_seqlens) {
    if (d->batch != 1)
      return MB_ERR(MB_EINVAL, "conv1d: varlen mode (cu_seqlens given) needs batch = 1, got %d", d->batch);
    if (d->nseq < 0)
      return MB_ERR(MB_EINVAL, "conv1d: nseq %d must be >= 0", d->nseq);
    if (d->cu_seqlens[0] != 0)
      return MB_ERR(MB_EINVAL, "conv1d: cu_seqlens[0] = %d, expected 0", (int)d->cu_seqlens[0]);
    for (int s = 0; s < d->nseq; s++)
      if (d->cu_seqlens[s + 1] < d->cu_seqlens[s])
        return MB_ERR(MB_EINVAL, "conv1d: cu_seqlens[%d] = %d < cu_seqlens[%d] = %d (must not decrease)", s + 1,
                      (int)d->cu_seqlens[s + 1], s, (int)d->cu_seqlens[s]);
    if (d->cu_seqlens[d->nseq] > d->seqlen)
      return MB_ERR(MB_EINVAL, "conv1d: cu_seqlens[%d] = %d exceeds the token budget seqlen = %d", d->nseq,
                    (int)d->cu_seqlens[d->nseq], d->seqlen);
  }
  return MB_OK;
}

static int conv_threads(const mb_conv1d_desc *d) { return d->nthreads > 0 ? d->nthreads : omp_get_max_threads(); }

/* Sequence s: tokens start .. start+n-1 of the flat [B*L] token axis. */
static int conv_nseg(const mb_conv1d_desc *d) { return d->cu_seqlens ? d->nseq : d->batch; }
static void conv_segment(const mb_conv1d_desc *d, int s, long *start, int *n) {
  if (d->cu_seqlens) {
    *start = d->cu_seqlens[s];
    *n = d->cu_seqlens[s + 1] - d->cu_seqlens[s];
  } else {
    *start = (long)s * d->seqlen;
    *n = d->seqlen;
  }
}
/* First token of the varlen budget's padding (everything from there is 0). */
static long conv_tail(const mb_conv1d_desc *d) {
  return d->cu_seqlens ? d->cu_seqlens[d->nseq] : (long)d->batch * d->seqlen;
}

#define CV_T float
#define CV_SFX f32
#define CV_EXP expf
#include "kernels/cpu/conv1d_impl.h"
#undef CV_T
#undef CV_SFX
#undef CV_EXP

#define CV_T double
#define CV_SFX f64
#define CV_EXP exp
#include "kernels/cpu/conv1d_impl.h"
#undef CV_T
#undef CV_SFX
#undef CV_EXP
