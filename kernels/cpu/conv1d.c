/* conv1d.c: depthwise causal conv1d on the CPU (see conv1d.h). Checks and
 * sequence bookkeeping here; the kernels in conv1d_impl.h, included once for
 * float and once for double. */
#include "kernels/cpu/conv1d.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "kernels/cpu/vecmath.h"
#include "runtime/alloc.h"

/* Tokens per work item (a chunk of whole rows). */
#define CONV_CHUNK 32

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
static size_t aligned(size_t n) { return mb_align_up(n, MB_ALIGN); }

/* First token of the varlen budget's padding (everything from there is 0). */
static long conv_tail(const mb_conv1d_desc *d) {
  return d->cu_seqlens ? d->cu_seqlens[d->nseq] : (long)d->batch * d->seqlen;
}

/* Which sequence a (real) token belongs to: [first, end) of the flat token
 * axis. Tokens are asked in increasing order, so the answer is cached and a
 * new sequence is looked up (binary search in cu_seqlens) only on a change. */
typedef struct {
  const mb_conv1d_desc *d;
  long first, end;
} conv_walk;

static void conv_walk_init(conv_walk *w, const mb_conv1d_desc *d) {
  w->d = d;
  w->first = w->end = 0;
}

static long conv_walk_first(conv_walk *w, long r) {
  if (r >= w->first && r < w->end)
    return w->first;
  const mb_conv1d_desc *d = w->d;
  if (!d->cu_seqlens) {
    w->first = r / d->seqlen * d->seqlen;
    w->end = w->first + d->seqlen;
    return w->first;
  }
  int lo = 0, hi = d->nseq - 1; /* the last s < nseq with cu_seqlens[s] <= r */
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (d->cu_seqlens[mid] <= r)
      lo = mid;
    else
      hi = mid - 1;
  }
  w->first = d->cu_seqlens[lo];
  w->end = d->cu_seqlens[lo + 1];
  return w->first;
}

static long conv_walk_end(const conv_walk *w) { return w->end; }

/* Backward scratch: the transposed weights (shared), and per thread a ring
 * of W dpre rows, partial dw [W][D] and partial dbias [D]. */
static size_t conv_bwd_shared_bytes(const mb_conv1d_desc *d, size_t es) {
  return aligned((size_t)d->width * d->dim * es);
}
static size_t conv_bwd_thread_bytes(const mb_conv1d_desc *d, size_t es) {
  return 2 * aligned((size_t)d->width * d->dim * es) + aligned((size_t)d->dim * es);
}

size_t mb_cpu_conv1d_bwd_workspace(const mb_conv1d_desc *d, size_t elem_size) {
  if (!d || d->dim < 1 || d->width < 1 || d->width > MB_CONV1D_MAX_WIDTH)
    return 0;
  return conv_bwd_shared_bytes(d, elem_size) + (size_t)conv_threads(d) * conv_bwd_thread_bytes(d, elem_size);
}

static int conv_workspace(size_t need, void **ws, size_t ws_bytes, void **owned) {
  *owned = NULL;
  if (*ws) {
    if (ws_bytes < need)
      return MB_ERR(MB_EINVAL, "conv1d backward: workspace has %zu bytes, needs %zu", ws_bytes, need);
    if ((uintptr_t)*ws % MB_ALIGN)
      return MB_ERR(MB_EINVAL, "conv1d backward: workspace must be %d-byte aligned", MB_ALIGN);
    return MB_OK;
  }
  *owned = mb_host_malloc(need ? need : 1);
  if (!*owned)
    return MB_ERR(MB_ENOMEM, "conv1d backward: cannot allocate %zu bytes of workspace", need);
  *ws = *owned;
  return MB_OK;
}

#define CV_T float
#define CV_SFX f32
#define CV_SIGMOID mb_sigmoidf
#include "kernels/cpu/conv1d_impl.h"
#undef CV_T
#undef CV_SFX
#undef CV_SIGMOID

#define CV_T double
#define CV_SFX f64
#define CV_SIGMOID mb_sigmoid
#include "kernels/cpu/conv1d_impl.h"
#undef CV_T
#undef CV_SFX
#undef CV_SIGMOID
