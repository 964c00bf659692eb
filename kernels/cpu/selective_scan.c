/* selective_scan.c: Mamba's selective scan on the CPU (see selective_scan.h).
 *
 * Type-independent parts here (checks, chunk and workspace arithmetic, the
 * varlen boundary walk); the kernels are in selective_scan_impl.h, included
 * once for float and once for double.
 */
#include "kernels/cpu/selective_scan.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "kernels/cpu/vecmath.h"
#include "runtime/alloc.h"

/* Channels per work item: a thread owns SCAN_BLOCK channels of one batch row
 * and walks its tokens; the block's SCAN_BLOCK * N states stay in L1 and its
 * inner loops are SCAN_BLOCK lanes wide (16 floats: a 64-byte cache line of
 * each row, one AVX-512 or two AVX2 vectors). */
#define SCAN_BLOCK 16

int mb_cpu_scan_check(const mb_scan_desc *d) {
  if (!d)
    return MB_ERR(MB_EINVAL, "selective scan: NULL descriptor");
  if (d->batch < 0 || d->seqlen < 0)
    return MB_ERR(MB_EINVAL, "selective scan: batch %d and seqlen %d must be >= 0", d->batch, d->seqlen);
  if (d->dim < 1 || d->dstate < 1)
    return MB_ERR(MB_EINVAL, "selective scan: dim %d and dstate %d must be >= 1", d->dim, d->dstate);
  if (d->chunk < 0 || d->nthreads < 0)
    return MB_ERR(MB_EINVAL, "selective scan: chunk %d and nthreads %d must be >= 0", d->chunk, d->nthreads);
  if ((double)d->batch * d->seqlen * d->dim * (d->dstate + 4.0) > (double)PTRDIFF_MAX / 8)
    return MB_ERR(MB_EINVAL, "selective scan: [%d, %d, %d] x N=%d is too large to index", d->batch, d->seqlen,
                  d->dim, d->dstate);
  if (d->cu_seqlens) {
    if (d->batch != 1)
      return MB_ERR(MB_EINVAL, "selective scan: varlen mode (cu_seqlens given) needs batch = 1, got %d", d->batch);
    if (d->nseq < 0)
      return MB_ERR(MB_EINVAL, "selective scan: nseq %d must be >= 0", d->nseq);
    if (d->cu_seqlens[0] != 0)
      return MB_ERR(MB_EINVAL, "selective scan: cu_seqlens[0] = %d, expected 0", (int)d->cu_seqlens[0]);
    for (int s = 0; s < d->nseq; s++)
      if (d->cu_seqlens[s + 1] < d->cu_seqlens[s])
        return MB_ERR(MB_EINVAL, "selective scan: cu_seqlens[%d] = %d < cu_seqlens[%d] = %d (must not decrease)",
                      s + 1, (int)d->cu_seqlens[s + 1], s, (int)d->cu_seqlens[s]);
    if (d->cu_seqlens[d->nseq] > d->seqlen)
      return MB_ERR(MB_EINVAL, "selective scan: cu_seqlens[%d] = %d exceeds the token budget seqlen = %d", d->nseq,
                    (int)d->cu_seqlens[d->nseq], d->seqlen);
  }
  return MB_OK;
}

static int scan_chunk(const mb_scan_desc *d) { return d->chunk > 0 ? d->chunk : 128; }
static int scan_threads(const mb_scan_desc *d) { return d->nthreads > 0 ? d->nthreads : omp_get_max_threads(); }
static size_t aligned(size_t n) { return mb_align_up(n, MB_ALIGN); }

int mb_cpu_scan_nchunks(const mb_scan_desc *d) {
  if (!d || d->seqlen <= 0)
    return 0;
  const int k = scan_chunk(d);
  return (int)(((long)d->seqlen + k - 1) / k);
}

size_t mb_cpu_scan_states_numel(const mb_scan_desc *d) {
  if (!d || d->batch < 0 || d->dim < 1 || d->dstate < 1)
    return 0;
  return (size_t)d->batch * mb_cpu_scan_nchunks(d) * d->dim * d->dstate;
}

/* Per-thread scratch of the forward: the block's states h and its A. */
static size_t scan_fwd_thread_bytes(const mb_scan_desc *d, size_t es) {
  return 2 * aligned((size_t)SCAN_BLOCK * d->dstate * es);
}

/* Per-thread scratch of the backward, as byte offsets from the thread's
 * slice (type-independent: elements of es bytes). A thread walks a run of
 * channel blocks of one batch row chunk by chunk (last to first), keeping
 * each block's dh between chunks, and sums the blocks' shares of dB_t and
 * dC_t lane-wise, folding the lanes once per chunk. */
typedef struct {
  size_t H;     /* [chunk+1][N][lanes]: recomputed states of the block's chunk */
  size_t dA;    /* [chunk][N][lanes]: exp(dt*A) */
  size_t dt;    /* [chunk][lanes] */
  size_t dsp;   /* [chunk][lanes]: d dt / d(delta + bias) */
  size_t A;     /* [N][lanes] of the block being walked */
  size_t zero;  /* [N][lanes] of zeros: the state entering a sequence's first token */
  size_t wB;    /* [chunk][N][lanes]: dB_t shares summed over the run's blocks, lanes not yet summed */
  size_t wC;    /* [chunk][N][lanes]: the same for dC_t */
  size_t flag;  /* [chunk] bytes: 0 continues a sequence, 1 starts one, 2 is padding */
  size_t dh;    /* [blocks][N][lanes]: each block's dh carried from chunk to chunk */
  size_t part;  /* [2][L][N]: dB, dC of a row whose first blocks another thread walks */
  size_t gA;    /* [blocks][N][lanes]: this thread's sum of dLoss/dA */
  size_t gD;    /* [blocks][lanes]: of dD */
  size_t gbias; /* [blocks][lanes]: of d delta_bias */
  size_t total;
} scan_bwd_layout;

static scan_bwd_layout scan_bwd_plan(const mb_scan_desc *d, size_t es) {
  const size_t N = (size_t)d->dstate, blk = SCAN_BLOCK * N, k = (size_t)scan_chunk(d), L = (size_t)d->seqlen;
  const size_t nblocks = ((size_t)d->dim + SCAN_BLOCK - 1) / SCAN_BLOCK;
  scan_bwd_layout p;
  size_t at = 0;
#define SCAN_TAKE(field, bytes) (p.field = at, at += aligned(bytes))
  SCAN_TAKE(H, (k + 1) * blk * es);
  SCAN_TAKE(dA, k * blk * es);
  SCAN_TAKE(dt, k * SCAN_BLOCK * es);
  SCAN_TAKE(dsp, k * SCAN_BLOCK * es);
  SCAN_TAKE(A, blk * es);
  SCAN_TAKE(zero, blk * es);
  SCAN_TAKE(wB, k * blk * es);
  SCAN_TAKE(wC, k * blk * es);
  SCAN_TAKE(flag, k);
  SCAN_TAKE(dh, nblocks * blk * es);
  SCAN_TAKE(part, 2 * L * N * es);
  SCAN_TAKE(gA, nblocks * blk * es);
  SCAN_TAKE(gD, nblocks * SCAN_BLOCK * es);
  SCAN_TAKE(gbias, nblocks * SCAN_BLOCK * es);
#undef SCAN_TAKE
  p.total = at;
  return p;
}

/* Work items are (batch row, channel block) pairs in row-major order; thread
 * th of team takes the contiguous run [lo, hi). */
static void scan_bwd_run(long nitems, int th, int team, long *lo, long *hi) {
  *lo = nitems * th / team;
  *hi = nitems * (th + 1) / team;
}

size_t mb_cpu_scan_fwd_workspace(const mb_scan_desc *d, size_t elem_size) {
  if (!d || d->dim < 1 || d->dstate < 1)
    return 0;
  return (size_t)scan_threads(d) * scan_fwd_thread_bytes(d, elem_size);
}

size_t mb_cpu_scan_bwd_workspace(const mb_scan_desc *d, size_t elem_size) {
  if (!d || d->dim < 1 || d->dstate < 1 || d->seqlen < 0 || d->chunk < 0)
    return 0;
  return (size_t)scan_threads(d) * scan_bwd_plan(d, elem_size).total;
}

static int scan_workspace(const char *what, size_t need, void **ws, size_t ws_bytes, void **owned) {
  *owned = NULL;
  if (*ws) {
    if (ws_bytes < need)
      return MB_ERR(MB_EINVAL, "selective scan %s: workspace has %zu bytes, needs %zu", what, ws_bytes, need);
    if ((uintptr_t)*ws % MB_ALIGN)
      return MB_ERR(MB_EINVAL, "selective scan %s: workspace must be %d-byte aligned", what, MB_ALIGN);
    return MB_OK;
  }
  *owned = mb_host_malloc(need ? need : 1);
  if (!*owned)
    return MB_ERR(MB_ENOMEM, "selective scan %s: cannot allocate %zu bytes of workspace", what, need);
  *ws = *owned;
  return MB_OK;
}

/* Where sequences start, walked forward one token at a time. In padded mode
 * only token 0 of a row starts one and every token is real; in varlen mode a
 * token t starts a sequence when t == cu_seqlens[s] for some s < nseq, and
 * tokens from cu_seqlens[nseq] on are padding. */
typedef struct {
  const int32_t *cu;
  int nseq, next, end;
} scan_walk;

static void scan_walk_init(scan_walk *w, const mb_scan_desc *d, int t0) {
  w->cu = d->cu_seqlens;
  w->nseq = d->nseq;
  w->end = w->cu ? w->cu[w->nseq] : d->seqlen;
  w->next = 0;
  if (w->cu) /* skip the boundaries before t0 */
    while (w->next < w->nseq && w->cu[w->next] < t0)
      w->next++;
}

/* Call for t = t0, t0+1, ... in order. 1: t starts a sequence (reset the
 * state before it), 0: it continues one. */
static int scan_walk_starts(scan_walk *w, int t) {
  if (!w->cu)
    return t == 0;
  int starts = 0;
  while (w->next < w->nseq && w->cu[w->next] <= t)
    starts |= w->cu[w->next++] == t;
  return starts;
}

/* ---- the kernels, once per element type ---------------------------------- */

#define SC_T float
#define SC_SFX f32
#define SC_EXP mb_expf
#define SC_SOFTPLUS mb_softplusf
#define SC_SIGMOID mb_sigmoidf
#include "kernels/cpu/selective_scan_impl.h"
#undef SC_T
#undef SC_SFX
#undef SC_EXP
#undef SC_SOFTPLUS
#undef SC_SIGMOID

#define SC_T double
#define SC_SFX f64
#define SC_EXP exp
#define SC_SOFTPLUS mb_softplus
#define SC_SIGMOID mb_sigmoid
#include "kernels/cpu/selective_scan_impl.h"
#undef SC_T
#undef SC_SFX
#undef SC_EXP
#undef SC_SOFTPLUS
#undef SC_SIGMOID
