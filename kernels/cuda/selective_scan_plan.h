/* selective_scan_plan.h: the host-side arithmetic of the GPU selective scan
 * (argument checks, block geometry, shared-memory sizes, the backward's
 * workspace layout), as static inline C so that the launchers
 * (selective_scan.cu), the CPU-only plan test and the CPU emulation test
 * all use the same numbers. No CUDA in here.
 *
 * Geometry (SCAN.md has the why):
 *  - A thread block owns one batch row and a group of MB_SCAN_GROUP (32)
 *    consecutive channels, and walks the sequence in tiles of MB_SCAN_TILE
 *    (128) tokens: forwards in the forward kernel, backwards in the
 *    backward one. The state entering every tile is saved (forward) and
 *    reloaded (backward), so the GPU's chunk is the tile.
 *  - Within a tile, a channel's 128 tokens are split into `segs` segments
 *    of `items` consecutive tokens, one segment per thread; a warp holds
 *    32 / segs channels. Forward: 8 x 16 (256 threads); backward: 16 x 8
 *    (512 threads; fewer items per thread because it keeps more per item).
 */
#ifndef MB_KERNELS_CUDA_SELECTIVE_SCAN_PLAN_H
#define MB_KERNELS_CUDA_SELECTIVE_SCAN_PLAN_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/cpu/selective_scan.h"
#include "runtime/dtype.h"
#include "runtime/error.h"

#define MB_SCAN_TILE 128
#define MB_SCAN_GROUP 32
#define MB_SCAN_MAX_DSTATE 64
#define MB_SCAN_FWD_SEGS 8
#define MB_SCAN_FWD_ITEMS 16
#define MB_SCAN_FWD_THREADS 256 /* MB_SCAN_GROUP * MB_SCAN_FWD_SEGS */
#define MB_SCAN_BWD_SEGS 16
#define MB_SCAN_BWD_ITEMS 8
#define MB_SCAN_BWD_THREADS 512 /* MB_SCAN_GROUP * MB_SCAN_BWD_SEGS */
/* Row pitch (floats) of the backward's channel-share buffer: 4 floats of
 * padding move each channel's row by 4 banks, so the 16-byte stores of the
 * two channels in a quarter-warp land in different banks. */
#define MB_SCAN_RED_PITCH (MB_SCAN_TILE + 4)
/* Both kernels split rows into parts (a fold pass, a carry pass, then the
 * scan of every part at once) when too few (row, group) blocks would run,
 * with at least MB_SCAN_MIN_PART_TILES tiles per part and at most
 * MB_SCAN_MAX_PARTS parts (mb_scan_choose_parts). A function of the shape
 * only: the same split, hence the same bits, on every device; its model
 * counts the waves of an H100/H200 SXM (132 SMs): the forward runs two
 * blocks per SM (MB_SCAN_FWD_SLOTS), the backward one (MB_SCAN_BWD_SLOTS). */
#define MB_SCAN_MIN_PART_TILES 4
#define MB_SCAN_MAX_PARTS 64
#define MB_SCAN_FWD_SLOTS 264
#define MB_SCAN_BWD_SLOTS 132
/* Threads per block of the small reduction kernels. */
#define MB_SCAN_REDUCE_THREADS 256
/* Alignment of each region of the backward's workspace. */
#define MB_SCAN_WS_ALIGN 256

typedef struct {
  int batch, seqlen, dim, dstate;
  int ntiles;                /* ceil(L / 128): tiles per row = saved states per row */
  int ngroups;               /* ceil(D / 32): channel groups per row */
  long long blocks;          /* batch * ngroups: (row, channel group) pairs */
  int parts, part_tiles; /* each row split into parts of part_tiles tiles (SCAN.md, "Splitting rows") */
  size_t fwd_smem, bwd_smem; /* dynamic shared memory, bytes */
  /* Backward workspace, byte offsets of its regions (f32 each):
   * dB, dC partials [B, ngroups, L, N]; dA partials [B, parts, D, N];
   * dD, ddelta_bias partials [B, parts, D]; split rows only: the fold
   * pass's P and E (then the adjoint entering each part), [B, parts, D, N]
   * each. */
  size_t ws_dB, ws_dC, ws_dA, ws_dD, ws_dbias, ws_P, ws_E, ws_bytes;
} mb_scan_plan;

static inline size_t mb_scan_align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

/* Forward: B and C of the tile, transposed to [N][128]; A*log2(e), the
 * carried state and (fold pass) the product of the decays, [32][N] each;
 * the tile's token flags. The launch adds mb_scan_fwd_stage_bytes for the
 * element size. */
static inline size_t mb_scan_fwd_smem_bytes(int N) {
  return (size_t)2 * N * MB_SCAN_TILE * sizeof(float) + (size_t)3 * MB_SCAN_GROUP * N * sizeof(float) + MB_SCAN_TILE;
}
/* The forward's two staged [32][128] per-token tiles (delta and u; then z
 * in delta's place, then y), elements of elem_size bytes. */
static inline size_t mb_scan_fwd_stage_bytes(size_t elem_size) {
  return (size_t)2 * MB_SCAN_GROUP * MB_SCAN_TILE * elem_size;
}

/* Backward: B and C of the tile ([N][128] each; row n is overwritten by the
 * tile's dB, dC partial once step n is done with it); the channel shares of
 * dB and dC, double-buffered [2][2][32][132]; A, the state entering the
 * tile, the reverse carry and dA, [32][N] each; the token flags. */
static inline size_t mb_scan_bwd_smem_bytes(int N) {
  return (size_t)2 * N * MB_SCAN_TILE * sizeof(float) +
         (size_t)2 * 2 * MB_SCAN_GROUP * MB_SCAN_RED_PITCH * sizeof(float) +
         (size_t)4 * MB_SCAN_GROUP * N * sizeof(float) + MB_SCAN_TILE;
}

static inline int mb_scan_dtype_ok(mb_dtype dt) { return dt == MB_F32 || dt == MB_BF16 || dt == MB_F16; }

/* Everything about a call that the host can check. */
static inline int mb_scan_plan_check(const mb_scan_desc *d, mb_dtype dt, mb_dtype param_dt) {
  if (!d)
    return MB_ERR(MB_EINVAL, "cuda selective scan: NULL descriptor");
  if (d->batch < 0 || d->seqlen < 0)
    return MB_ERR(MB_EINVAL, "cuda selective scan: batch %d and seqlen %d must be >= 0", d->batch, d->seqlen);
  if (d->seqlen > INT_MAX - MB_SCAN_TILE) /* the kernels index tokens with int, the last tile's end included */
    return MB_ERR(MB_EINVAL, "cuda selective scan: seqlen %d is above the limit %d", d->seqlen, INT_MAX - MB_SCAN_TILE);
  if (d->dim < 1)
    return MB_ERR(MB_EINVAL, "cuda selective scan: dim %d must be >= 1", d->dim);
  if (d->dstate < 1 || d->dstate > MB_SCAN_MAX_DSTATE)
    return MB_ERR(MB_EUNSUPPORTED, "cuda selective scan: dstate %d is outside 1..%d", d->dstate, MB_SCAN_MAX_DSTATE);
  if (d->chunk != 0 && d->chunk != MB_SCAN_TILE)
    return MB_ERR(MB_EUNSUPPORTED,
                  "cuda selective scan: chunk %d; the GPU saves one state every %d tokens (chunk 0 or %d)", d->chunk,
                  MB_SCAN_TILE, MB_SCAN_TILE);
  if (!mb_scan_dtype_ok(dt) || !mb_scan_dtype_ok(param_dt))
    return MB_ERR(MB_EUNSUPPORTED,
                  "cuda selective scan: dtypes %s (activations) and %s (parameters); f32, bf16 "
                  "or f16 only",
                  mb_dtype_name(dt), mb_dtype_name(param_dt));
  if (d->cu_seqlens) {
    if (d->batch != 1)
      return MB_ERR(MB_EINVAL, "cuda selective scan: varlen mode (cu_seqlens given) needs batch = 1, got %d", d->batch);
    if (d->nseq < 0)
      return MB_ERR(MB_EINVAL, "cuda selective scan: nseq %d must be >= 0", d->nseq);
  }
  const long long ngroups = (d->dim + MB_SCAN_GROUP - 1) / MB_SCAN_GROUP;
  if ((long long)d->batch * ngroups > INT_MAX)
    return MB_ERR(MB_EINVAL, "cuda selective scan: batch %d x %lld channel groups exceeds the grid limit", d->batch,
                  ngroups);
  /* element counts of u (B*L*D) and of the dB/dC partials (B*ngroups*L*N)
   * must fit 64-bit offsets with room to spare */
  const double big = (double)d->batch * d->seqlen * ((double)d->dim + (double)ngroups * d->dstate);
  if (big > 4e18 / 8)
    return MB_ERR(MB_EINVAL, "cuda selective scan: [%d, %d, %d] x N=%d is too large to index", d->batch, d->seqlen,
                  d->dim, d->dstate);
  return MB_OK;
}

/* The number of parts to split each row of ntiles tiles into, for `blocks`
 * (row, group) blocks: the p in 1 .. min(ntiles / MB_SCAN_MIN_PART_TILES,
 * MB_SCAN_MAX_PARTS) that minimises a model of forward + backward time per
 * row, in units of one block's pass over a whole row:
 *   forward  ceil(blocks p / 264) / p + 0.7 ceil(blocks (p - 1) / 264) / p
 *   backward ceil(blocks p / 132) / p + 0.5 ceil(blocks (p - 1) / 132) / p
 * each wave of the full pass costs 1 / p of a row, the fold pass (parts
 * 0 .. p-2 forwards, 1 .. p-1 backwards) 0.7 (its n loop is 134
 * instructions to the full pass's 196) or 0.5 (no recompute, no gradient
 * terms) of that, and the backward's pass 2.26 forward ones (H200: 55.2
 * ms in 3 waves against 16.3 ms in 2 at L = 64k, kernels/cuda/SCAN.md).
 * It reproduces the H200's batch-1 measurement (six parts: 0.56 of batch
 * 8's tokens/s predicted, 0.60 measured) and picks eleven parts for a
 * packed Mamba-130m row (528 blocks: whole waves both ways; predicted 1.27x
 * six). In integers, so every host computes the same split; ties: fewer
 * parts. */
static inline int mb_scan_choose_parts(long long blocks, int ntiles) {
  if (blocks <= 0 || blocks >= MB_SCAN_FWD_SLOTS) /* a full forward wave already: the model keeps whole rows */
    return 1;
  long long most = ntiles / MB_SCAN_MIN_PART_TILES;
  most = most < MB_SCAN_MAX_PARTS ? most : MB_SCAN_MAX_PARTS;
  long long best = 1, best_num = 0;
  for (long long parts = 1; parts <= most || parts == 1; parts++) {
    const long long f = (blocks * parts + MB_SCAN_FWD_SLOTS - 1) / MB_SCAN_FWD_SLOTS;
    const long long ff = (blocks * (parts - 1) + MB_SCAN_FWD_SLOTS - 1) / MB_SCAN_FWD_SLOTS;
    const long long b = (blocks * parts + MB_SCAN_BWD_SLOTS - 1) / MB_SCAN_BWD_SLOTS;
    const long long bf = (blocks * (parts - 1) + MB_SCAN_BWD_SLOTS - 1) / MB_SCAN_BWD_SLOTS;
    const long long num = 100 * (100 * f + 70 * ff) + 226 * (100 * b + 50 * bf); /* the cost is num / parts */
    if (parts == 1 || num * best < best_num * parts) {
      best = parts;
      best_num = num;
    }
  }
  return (int)best;
}

/* Fills *p for a checked descriptor. */
static inline void mb_scan_plan_make(const mb_scan_desc *d, mb_scan_plan *p) {
  p->batch = d->batch;
  p->seqlen = d->seqlen;
  p->dim = d->dim;
  p->dstate = d->dstate;
  p->ntiles = (int)(((long long)d->seqlen + MB_SCAN_TILE - 1) / MB_SCAN_TILE);
  p->ngroups = (d->dim + MB_SCAN_GROUP - 1) / MB_SCAN_GROUP;
  p->blocks = (long long)d->batch * p->ngroups;
  const int parts = mb_scan_choose_parts(p->blocks, p->ntiles);
  if (parts < 2) {
    p->parts = 1;
    p->part_tiles = p->ntiles;
  } else { /* equal parts, the last one possibly shorter, none empty */
    p->part_tiles = (int)((p->ntiles + parts - 1) / parts);
    p->parts = (p->ntiles + p->part_tiles - 1) / p->part_tiles;
  }
  p->fwd_smem = mb_scan_fwd_smem_bytes(d->dstate);
  p->bwd_smem = mb_scan_bwd_smem_bytes(d->dstate);
  const size_t f = sizeof(float), a = MB_SCAN_WS_ALIGN;
  const size_t bc = (size_t)d->batch * p->ngroups * d->seqlen * d->dstate * f;
  /* per (row, part): dA, dD, ddelta_bias partials; the fold's P and E */
  const size_t rows = (size_t)d->batch * p->parts;
  const size_t da = rows * d->dim * d->dstate * f, dd = rows * d->dim * f;
  size_t off = 0;
  p->ws_dB = off;
  off += mb_scan_align_up(bc, a);
  p->ws_dC = off;
  off += mb_scan_align_up(bc, a);
  p->ws_dA = off;
  off += mb_scan_align_up(da, a);
  p->ws_dD = off;
  off += mb_scan_align_up(dd, a);
  p->ws_dbias = off;
  off += mb_scan_align_up(dd, a);
  p->ws_P = off;
  off += p->parts > 1 ? mb_scan_align_up(da, a) : 0;
  p->ws_E = off;
  off += p->parts > 1 ? mb_scan_align_up(da, a) : 0;
  p->ws_bytes = off;
}

#endif
