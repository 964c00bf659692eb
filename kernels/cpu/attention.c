/* attention.c: fused multi-head attention on the CPU (see attention.h).
 *
 * This file holds what does not depend on the element type: checking the
 * descriptor, finding the sequences (segments) and sizing the workspace. The
 * kernels themselves live in attention_impl.h, included once for float and
 * once for double.
 */
#include "kernels/cpu/attention.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "kernels/cpu/blas_env.h"
#include "kernels/cpu/vecmath.h"
#include "runtime/alloc.h"

/* One sequence: tokens start .. start+n-1 of the [tokens, H, Dh] arrays.
 * Keys and queries at or past `valid` are all padding (skipped); mask, when
 * not NULL, marks the real tokens before that. */
typedef struct {
  int start, n, valid;
  const int32_t *mask;
} mb_attn_seg;

int mb_cpu_attn_check(const mb_attn_desc *d) {
  if (!d)
    return MB_ERR(MB_EINVAL, "attention: NULL descriptor");
  if (d->batch < 0 || d->seqlen < 0)
    return MB_ERR(MB_EINVAL, "attention: batch %d and seqlen %d must be >= 0", d->batch, d->seqlen);
  if (d->heads < 1 || d->head_dim < 1)
    return MB_ERR(MB_EINVAL, "attention: heads %d and head_dim %d must be >= 1", d->heads, d->head_dim);
  if (d->block_q < 0 || d->block_k < 0 || d->nthreads < 0)
    return MB_ERR(MB_EINVAL, "attention: block_q %d, block_k %d, nthreads %d must be >= 0", d->block_q,
                  d->block_k, d->nthreads);
  if (!(d->scale >= 0.0) || isinf(d->scale))
    return MB_ERR(MB_EINVAL, "attention: scale %g must be finite and >= 0 (0 = 1/sqrt(head_dim))", d->scale);
  if ((double)d->batch * d->seqlen * d->heads * d->head_dim > (double)PTRDIFF_MAX / 8)
    return MB_ERR(MB_EINVAL, "attention: [%d x %d, %d, %d] is too large to index", d->batch, d->seqlen,
                  d->heads, d->head_dim);
  if (d->cu_seqlens) {
    if (d->batch != 1)
      return MB_ERR(MB_EINVAL, "attention: varlen mode (cu_seqlens given) needs batch = 1, got %d", d->batch);
    if (d->key_mask)
      return MB_ERR(MB_EINVAL, "attention: give key_mask (padded) or cu_seqlens (varlen), not both");
    if (d->nseq < 0)
      return MB_ERR(MB_EINVAL, "attention: nseq %d must be >= 0", d->nseq);
    if (d->cu_seqlens[0] != 0)
      return MB_ERR(MB_EINVAL, "attention: cu_seqlens[0] = %d, expected 0", (int)d->cu_seqlens[0]);
    for (int s = 0; s < d->nseq; s++)
      if (d->cu_seqlens[s + 1] < d->cu_seqlens[s])
        return MB_ERR(MB_EINVAL, "attention: cu_seqlens[%d] = %d < cu_seqlens[%d] = %d (must not decrease)",
                      s + 1, (int)d->cu_seqlens[s + 1], s, (int)d->cu_seqlens[s]);
    if (d->cu_seqlens[d->nseq] > d->seqlen)
      return MB_ERR(MB_EINVAL, "attention: cu_seqlens[%d] = %d exceeds the token budget seqlen = %d", d->nseq,
                    (int)d->cu_seqlens[d->nseq], d->seqlen);
  }
  return MB_OK;
}

/* Tile sizes actually used. Every tile GEMM has m*n*k = bq*bk*Dh. With
 * OpenBLAS's pthreads build, keeping that at or under 4 * 65536 keeps it on
 * the calling thread (its GEMM_MULTITHREAD_THRESHOLD), so our OpenMP threads
 * do not each wake its thread pool. Its OpenMP build runs single-threaded
 * inside our parallel region anyway, and there the forward takes wider key
 * tiles (a 64 x 256 f32 score tile is 64 KB): half the small GEMM calls and
 * online-softmax rescales, 7-12% faster at Dh 64, L 256-512
 * (bench_cpu_kernels); the backward, which holds P and dS tiles and walks
 * every query tile per key tile, measured 7-9% slower so and keeps 64. */
static void mb_attn_tiles(const mb_attn_desc *d, int backward, int *bq, int *bk) {
  int q = d->block_q > 0 ? d->block_q : 64;
  int k = d->block_k;
  if (k <= 0) {
    const int wide = !backward && strcmp(mb_blas_threading(), "OpenMP") == 0;
    long fit = (wide ? 1048576L : 262144L) / ((long)q * d->head_dim);
    const int cap = wide ? 256 : 64;
    k = fit < 8 ? 8 : fit > cap ? cap : (int)fit;
  }
  *bq = q;
  *bk = k;
}

static int mb_attn_threads(const mb_attn_desc *d) { return d->nthreads > 0 ? d->nthreads : omp_get_max_threads(); }

static size_t aligned(size_t n) { return mb_align_up(n, MB_ALIGN); }

static size_t mb_attn_fwd_thread_bytes(const mb_attn_desc *d, size_t es) {
  int bq, bk;
  mb_attn_tiles(d, 0, &bq, &bk);
  /* scores/probabilities tile, output accumulator, running max, running sum */
  return aligned((size_t)bq * bk * es) + aligned((size_t)bq * d->head_dim * es) + 2 * aligned((size_t)bq * es);
}

static size_t mb_attn_bwd_thread_bytes(const mb_attn_desc *d, size_t es) {
  int bq, bk;
  mb_attn_tiles(d, 1, &bq, &bk);
  return 2 * aligned((size_t)bq * bk * es); /* P tile and dP/dS tile */
}

size_t mb_cpu_attn_fwd_workspace(const mb_attn_desc *d, size_t elem_size) {
  if (!d || d->heads < 1 || d->head_dim < 1)
    return 0;
  return (size_t)mb_attn_threads(d) * mb_attn_fwd_thread_bytes(d, elem_size);
}

size_t mb_cpu_attn_bwd_workspace(const mb_attn_desc *d, size_t elem_size) {
  if (!d || d->heads < 1 || d->head_dim < 1 || d->batch < 0 || d->seqlen < 0)
    return 0;
  size_t tokens = (size_t)d->batch * d->seqlen;
  return aligned(tokens * d->heads * elem_size) + (size_t)mb_attn_threads(d) * mb_attn_bwd_thread_bytes(d, elem_size);
}

static int mb_attn_nseg(const mb_attn_desc *d) { return d->cu_seqlens ? d->nseq : d->batch; }

static void mb_attn_segment(const mb_attn_desc *d, int s, mb_attn_seg *g) {
  if (d->cu_seqlens) {
    g->start = d->cu_seqlens[s];
    g->n = d->cu_seqlens[s + 1] - d->cu_seqlens[s];
    g->mask = NULL;
    g->valid = g->n;
    return;
  }
  g->start = s * d->seqlen;
  g->n = d->seqlen;
  g->mask = d->key_mask ? d->key_mask + (size_t)s * d->seqlen : NULL;
  g->valid = g->n;
  if (g->mask) /* right padding is the common case: stop at the last real token */
    while (g->valid > 0 && !g->mask[g->valid - 1])
      g->valid--;
}

static int mb_attn_max_len(const mb_attn_desc *d) {
  if (!d->cu_seqlens)
    return d->seqlen;
  int mx = 0;
  for (int s = 0; s < d->nseq; s++)
    if (d->cu_seqlens[s + 1] - d->cu_seqlens[s] > mx)
      mx = d->cu_seqlens[s + 1] - d->cu_seqlens[s];
  return mx;
}

/* Is key kpos invisible to query qpos? (padding or the causal rule) */
static inline int attn_hidden(const mb_attn_desc *d, const mb_attn_seg *g, int qpos, int kpos) {
  return (g->mask && !g->mask[kpos]) || (d->causal && kpos > qpos);
}

/* Does the tile of queries i0.. (nq) x keys j0.. (nk) hide anything: a
 * padded key or query, or keys past a query under the causal rule? Most
 * tiles do not, and skip the per-element masking pass. */
static int attn_tile_masked(const mb_attn_desc *d, const mb_attn_seg *g, int i0, int nq, int j0, int nk) {
  if (d->causal && j0 + nk - 1 > i0)
    return 1;
  if (g->mask) {
    for (int c = 0; c < nk; c++)
      if (!g->mask[j0 + c])
        return 1;
    for (int r = 0; r < nq; r++)
      if (!g->mask[i0 + r])
        return 1;
  }
  return 0;
}

/* Take the caller's workspace or allocate one; *owned is what to free. */
static int attn_workspace(const char *what, size_t need, void **ws, size_t ws_bytes, void **owned) {
  *owned = NULL;
  if (*ws) {
    if (ws_bytes < need)
      return MB_ERR(MB_EINVAL, "attention %s: workspace has %zu bytes, needs %zu", what, ws_bytes, need);
    if ((uintptr_t)*ws % MB_ALIGN)
      return MB_ERR(MB_EINVAL, "attention %s: workspace must be %d-byte aligned", what, MB_ALIGN);
    return MB_OK;
  }
  *owned = mb_host_malloc(need ? need : 1);
  if (!*owned)
    return MB_ERR(MB_ENOMEM, "attention %s: cannot allocate %zu bytes of workspace", what, need);
  *ws = *owned;
  return MB_OK;
}

/* ---- the kernels, once per element type ---------------------------------- */

#define ATT_T float
#define ATT_SFX f32
#define ATT_GEMM cblas_sgemm
#define ATT_EXP mb_expf
#define ATT_LOG logf
#include "kernels/cpu/attention_impl.h"
#undef ATT_T
#undef ATT_SFX
#undef ATT_GEMM
#undef ATT_EXP
#undef ATT_LOG

#define ATT_T double
#define ATT_SFX f64
#define ATT_GEMM cblas_dgemm
#define ATT_EXP exp
#define ATT_LOG log
#include "kernels/cpu/attention_impl.h"
#undef ATT_T
#undef ATT_SFX
#undef ATT_GEMM
#undef ATT_EXP
#undef ATT_LOG
