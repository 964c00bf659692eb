/* attention_hopper_bwd.cu: the flash backward's dK, dV on Hopper's
 * warpgroup MMA (wgmma, sm_90a), bf16 or f16, f32 accumulation, head_dim 64
 * or 128: the backward's tilings 1 to 4 (mb_cuda_attn_set_flash_bwd_variant;
 * tiling 2, below tiling 1, is the same loops warp-specialised: a TMA
 * producer warpgroup and mbarriers in place of the CTA barriers; tiling 3
 * is tiling 2's dK/dV kernel with FlashAttention-3's dQ and no dQ kernel:
 * one warpgroup sums a query tile's dQ over the CTA's keys, the TMA unit
 * adds it, in key-tile order unless in the fast mode; tiling 4 is tiling
 * 3 with 128-query tiles at head_dim 64, HopperBwdWsCfg).
 * Two kernels: dK, dV (a CTA per key tile), then dQ (a CTA per query tile,
 * recomputing S and dP, summing over the key tiles in order), both on
 * wgmma, so tiling 1 gives the same bits on every run in either mode
 * (mb_cuda_attn_set_deterministic does not apply to it; tilings 2-4 follow
 * it in their fast modes).
 *
 * One CTA of two warpgroups per (BKV = 128 keys, head, sequence); warpgroup
 * wg owns keys 64 wg .. 64 wg + 63 of the tile and warp w (0..3 in it) keys
 * 16 w .. of those: the wgmma M dimension runs over keys, so every product
 * is computed transposed and nothing goes through shared memory between
 * them. K, V and dK, dV stay (shared memory, registers) while the CTA
 * sweeps the query tiles i (BQ = 64, or 128 under tiling 4; causal: from
 * the key tile on):
 *   S^T = K Q_i^T and dP^T = V dO_i^T   (wgmma.m64n64k16, A and B from
 *                                        shared memory, both K-major)
 *   P^T = exp(scale S^T - lse), dS^T = P^T (dP^T - D)   (in registers; lse
 *         and D = rowsum(dO * O) are per query: per column here)
 *   dV += P^T dO_i and dK += dS^T Q_i   (wgmma.m64nDk16, A from registers,
 *                                        dO and Q read MN-major)
 * dK = scale dK at the end. At D = 64 the four products are issued as
 * soon as their inputs exist (P^T's exponentials under dP^T, dS^T under
 * dV); at D = 128 that costs ptxas a spill, and the products go in pairs.
 * Q, dO go through a two-stage ring a whole tile ahead
 * (cp.async.wait_group 1, fence.proxy.async, a barrier), the query tile's
 * lse and D (head-major in the workspace: one sector per 8 queries) through
 * registers loaded a tile ahead and stored into the stage's shared slots.
 * Layout: TMA's 128-byte swizzle (attn_load_rows_sw128; wgmma's mode 1)
 * for K, V, Q, dO, one copy of Q and dO serving as the K-major B of the
 * first products and the MN-major B of the second. The no-swizzle
 * core-matrix layout it replaced read every tile in half-used sectors
 * (the H200 profile: 2.0x the ideal L2 sectors in both kernels).
 */
#include <type_traits>

#include "kernels/cuda/attention_common.cuh"

namespace {

template <int D> struct HopperBwdCfg {
  static constexpr int NT = 256, BKV = 128, BQ = 64;
  template <typename T> static constexpr size_t smem_bytes() {
    /* alignment; K, V; two stages of Q and dO; two stages of lse (log2 units) and D; key flags */
    return 1024 + (size_t)(2 * BKV + 4 * BQ) * D * sizeof(T) + 4 * BQ * sizeof(float) + BKV * sizeof(int);
  }
};

#if ATTN_HAS_WGMMA
/* Query c of tile i0 for the softmax backward: lse in log2 units (+inf when
 * the query is not a real, unmasked token, so P = 0) or D (0 then). */
__device__ __forceinline__ float bwd_query_stat(const AttnArgs &a, const AttnSeg &g, int h, int q, bool want_lse) {
  const bool live = q < g.n && (!g.mask || g.mask[q] != 0);
  const int64_t idx = attn_stat_index(a, g.start + q, h); /* consecutive q: consecutive floats */
  if (want_lse)
    return live ? a.lse2t[idx] : INFINITY;
  return live ? a.dsum[idx] : 0.0f;
}

/* A query tile's statistics for the warp-specialised dK/dV kernels: lse
 * (log2 units) of queries i0.. into stat[0, BQ) and D into stat[BQ, 2 BQ),
 * as bwd_query_stat gives them, lane by lane (BQ = 128: four queries per
 * lane, every load issued before any result is used). */
template <int BQ>
__device__ __forceinline__ void bwd_ws_query_stats(const AttnArgs &a, const AttnSeg &g, int h, int i0, float *stat,
                                                   int lane) {
  if constexpr (BQ == 64) {
#pragma unroll
    for (int c = lane; c < BQ; c += 32) {
      stat[c] = bwd_query_stat(a, g, h, i0 + c, true);
      stat[BQ + c] = bwd_query_stat(a, g, h, i0 + c, false);
    }
  } else {
    /* every load from an index clamped into the sequence (the CTA has a
     * key tile, so g.n >= 1), then a select: no load waits for another's
     * result, so a step's loads are in flight together */
    const float *pl = a.lse2t + attn_stat_index(a, g.start, h); /* consecutive queries: consecutive floats */
    const int64_t dd = a.dsum - a.lse2t;                          /* D's plane from lse's */
    const int32_t *mask = g.mask;
#pragma unroll
    for (int c = lane; c < BQ; c += 32) {
      const int q = i0 + c, qc = min(q, g.n - 1);
      const float l = pl[qc], d = pl[qc + dd];
      const bool live = q < g.n && (!mask || mask[qc] != 0);
      stat[c] = live ? l : INFINITY;
      stat[BQ + c] = live ? d : 0.0f;
    }
  }
}
#endif

#if ATTN_HAS_WGMMA
/* The dK/dV kernels' descriptors (128-byte swizzle, 16-byte units; tiles
 * [D / 64][rows][64]): K, V as warpgroup wg's A (64 keys, K-major over D);
 * Q, dO as B, K-major (S^T, dP^T: k = head dim) and MN-major (dK, dV:
 * k = query, the 64-column pieces BQ x 128 bytes apart). Stage s of Q, dO
 * is s BQ D / 8 further. */
struct BwdDkdvDescs {
  uint64_t k, v, q_k, q_mn, do_k, do_mn;
};
template <typename T, int BQ>
__device__ __forceinline__ BwdDkdvDescs bwd_dkdv_descs(const T *sK, const T *sV, const T *sQ, const T *sdO, int wg) {
  return {attn_wgmma_desc_sw128(sK + wg * 64 * 64, 16, 1024), attn_wgmma_desc_sw128(sV + wg * 64 * 64, 16, 1024),
          attn_wgmma_desc_sw128(sQ, 16, 1024),                attn_wgmma_desc_sw128(sQ, BQ * 128, 1024),
          attn_wgmma_desc_sw128(sdO, 16, 1024),               attn_wgmma_desc_sw128(sdO, BQ * 128, 1024)};
}
/* The dQ kernels' descriptors: Q, dO warpgroup wg's 64 rows as A (K-major);
 * K, V as B: K-major for S and dP, K also MN-major for dS K (k = key;
 * pieces BK x 128 bytes apart). Stage s of K, V is s BK D / 8 further. */
struct BwdDqDescs {
  uint64_t q, dout, k_k, k_mn, v;
};
template <typename T, int BK>
__device__ __forceinline__ BwdDqDescs bwd_dq_descs(const T *sQ, const T *sdO, const T *sK, const T *sV, int wg) {
  return {attn_wgmma_desc_sw128(sQ + wg * 64 * 64, 16, 1024), attn_wgmma_desc_sw128(sdO + wg * 64 * 64, 16, 1024),
          attn_wgmma_desc_sw128(sK, 16, 1024), attn_wgmma_desc_sw128(sK, BK * 128, 1024),
          attn_wgmma_desc_sw128(sV, 16, 1024)};
}
#endif

#if ATTN_HAS_WGMMA
/* Both backward kernels' first step: c0 = A0 B0^T and c1 = A1 B1^T over the
 * head dimension (wgmma.m64nNk16, A and B from shared memory, K-major in
 * the 128-byte swizzle; A's tile has AROWS rows, B's BROWS), each product
 * its own batch, so the caller can wait for the first alone. */
template <typename T, int D, int N, int AROWS, int BROWS>
__device__ __forceinline__ void bwd_two_products(float *c0, uint64_t a0, uint64_t b0, float *c1, uint64_t a1,
                                                 uint64_t b1) {
  attn_wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++)
    AttnWgmma<T, N>::ss(c0, a0 + attn_sw128_kstep(kk, AROWS), b0 + attn_sw128_kstep(kk, BROWS), kk > 0);
  attn_wgmma_commit();
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++)
    AttnWgmma<T, N>::ss(c1, a1 + attn_sw128_kstep(kk, AROWS), b1 + attn_sw128_kstep(kk, BROWS), kk > 0);
  attn_wgmma_commit();
}
#endif

#if ATTN_HAS_WGMMA
/* dS^T's A fragments (rounded to T; rows = the thread's keys r0, r0 + 8 of
 * its warpgroup's 64, columns = queries) into the warpgroup's swizzled
 * [64 keys][64 queries] tile sds for the fast modes' dQ = dS K, or with
 * BQ = 128 into two such tiles, queries 64 c.. at sds + c * CHUNK: 4-byte
 * stores, one 16-byte chunk per row per instruction (conflict-free). */
template <typename T, int BQ, int CHUNK>
__device__ __forceinline__ void bwd_store_ds_t(T *sds, int r0, int tq, const uint32_t *dsa) {
  static_assert(BQ == 64 || BQ == 128, "one or two 128-byte rows of queries per key");
#pragma unroll
  for (int i = 0; i < BQ / 4; i++) { /* register i of k-block i / 4: rows +8 (i & 1), columns +8 (i & 2) */
    const int row = r0 + (i & 1) * 8, col = (i / 4) * 16 + 2 * tq + (i & 2) * 4;
    /* BQ = 64 as measured; the general form, equal in value there, makes ptxas emit other address arithmetic */
    if constexpr (BQ == 64) {
      attn_sts_u32_for_wgmma(sds + row * 64 + (((col / 8) ^ (row & 7)) * 8) + col % 8, dsa[i]);
    } else {
      const int cc = col - (i / 16) * 64; /* column % 64, in the chunk i / 16 */
      attn_sts_u32_for_wgmma(sds + (i / 16) * CHUNK + row * 64 + (((cc / 8) ^ (row & 7)) * 8) + cc % 8, dsa[i]);
    }
  }
}

/* One query tile of the dK/dV kernels (tiling 1 and its warp-specialised
 * form): this warpgroup's 64 keys against queries i0 .. i0 + BQ - 1, whose
 * Q and dO the descriptors qk, dok (K-major) and qmn, domn (MN-major)
 * point at, lse (log2 units) and D at lse2[c], dsum[c]; dV += P^T dO and
 * dK += dS^T Q into dk, dv. The products are done when it returns. With
 * KEEP_DS, dS^T is stored into the warpgroup's tile sds too at the end
 * (bwd_store_ds_t, queries 64 c.. at sds + c * DS_CHUNK; not under the dK
 * product, whose A registers it reads), not yet fenced for the async proxy. */
/* How much of bwd_dkdv_tile's softmax runs under its products (below). */
enum BwdOverlap { BWD_OVERLAP_NONE = 0, BWD_OVERLAP_P = 1, BWD_OVERLAP_FULL = 2 };

template <typename T, int D, int BKV, int BQ, int OVERLAP, bool KEEP_DS = false, int DS_CHUNK = 0>
__device__ __forceinline__ void bwd_dkdv_tile(const AttnArgs &a, uint64_t kdesc, uint64_t vdesc, uint64_t qk,
                                              uint64_t qmn, uint64_t dok, uint64_t domn, const float *lse2,
                                              const float *dsum, int j0, int i0, int krow, int tq, bool hidden,
                                              bool keep0, bool keep1, float (&dk)[1][D / 8][4],
                                              float (&dv)[1][D / 8][4], T *sds = nullptr) {
  constexpr int NS = BQ / 8, NO = D / 8;
  /* BWD_OVERLAP_FULL (D = 64, 64-query tiles): four batches, each started
   * as soon as its inputs exist, so the softmax's arithmetic runs under a
   * product: S^T (batch 1) and dP^T (2) issued together; P^T once S^T is
   * in (wait 1), and dV += P^T dO (3) issued; dS^T once dP^T is in (wait 1
   * again: batches complete in order), and dK += dS^T Q (4) issued; then
   * wait for all. In tiling 1's kernel at D = 128 the in-flight dV and P^T
   * fragment leave ptxas too few of the 255 registers (it spills): there
   * (BWD_OVERLAP_NONE) P^T and dS^T are computed with nothing in flight,
   * then both products issued together. (Tiling 2's consumers, with less
   * else to keep, overlap at both head dims within setmaxnreg's 240.)
   * BWD_OVERLAP_P (128-query tiles, where FULL spills): P^T's exponentials
   * under dP^T only (FlashAttention-3's order), then as NONE. */
  float st[1][NS][4], dpt[1][NS][4]; /* S^T, dP^T: rows = keys, columns = queries */
  bwd_two_products<T, D, BQ, BKV, BQ>(&st[0][0][0], kdesc, qk, &dpt[0][0][0], vdesc, dok);
  attn_wgmma_wait<OVERLAP != BWD_OVERLAP_NONE ? 1 : 0>(); /* S^T (and dP^T with no overlap) */
  attn_wgmma_pin<NS * 4>(&st[0][0][0]);
  if constexpr (OVERLAP == BWD_OVERLAP_NONE)
    attn_wgmma_pin<NS * 4>(&dpt[0][0][0]);

  /* P^T in place; masked keys (padding, past the end) and, causal, keys
   * after the query get P = 0. Three forms, chosen per tile (warp-uniform):
   * with one, the compiler computed the 32 causal conditions on every tile,
   * before the products were issued (about 200 instructions per warp and
   * tile in the SASS, into packed predicate bits), causal or not. */
  const bool causal_tile = a.causal && i0 < j0 + BKV - 1; /* some key of the tile is after some query */
  auto probs = [&](auto form) {
    constexpr int F = decltype(form)::value; /* 0: no mask, 1: padded keys, 2: and causal */
#pragma unroll
    for (int nj = 0; nj < NS; nj++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int c = nj * 8 + 2 * tq + (e & 1), kr = j0 + krow + (e >> 1) * 8;
        float p = attn_exp2(fmaf(st[0][nj][e], a.scale_log2, -lse2[c]));
        if ((F >= 1 && hidden && !((e >> 1) ? keep1 : keep0)) || (F == 2 && kr > i0 + c))
          p = 0.0f;
        st[0][nj][e] = p;
      }
  };
  if (causal_tile)
    probs(std::integral_constant<int, 2>());
  else if (hidden)
    probs(std::integral_constant<int, 1>());
  else
    probs(std::integral_constant<int, 0>());
  uint32_t pa[BQ / 16][4], dsa[BQ / 16][4]; /* P^T and dS^T as A fragments (rounded to T) */
#pragma unroll
  for (int kk = 0; kk < BQ / 16; kk++)
    attn_c_to_a<T>(st[0][2 * kk], st[0][2 * kk + 1], pa[kk]);
  if constexpr (OVERLAP == BWD_OVERLAP_FULL) {
    attn_wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < BQ / 16; kk++)
      AttnWgmma<T, D>::rs_mn(&dv[0][0][0], pa[kk], domn + 128 * kk, true);
    attn_wgmma_commit();
    attn_wgmma_wait<1>(); /* dP^T (dV += P^T dO may still run) */
    attn_wgmma_pin<NS * 4>(&dpt[0][0][0]);
  } else if constexpr (OVERLAP == BWD_OVERLAP_P) {
    attn_wgmma_wait<0>(); /* dP^T */
    attn_wgmma_pin<NS * 4>(&dpt[0][0][0]);
  }

  /* dS^T = P^T (dP^T - D) in place */
#pragma unroll
  for (int nj = 0; nj < NS; nj++)
#pragma unroll
    for (int e = 0; e < 4; e++)
      dpt[0][nj][e] = st[0][nj][e] * (dpt[0][nj][e] - dsum[nj * 8 + 2 * tq + (e & 1)]);
#pragma unroll
  for (int kk = 0; kk < BQ / 16; kk++)
    attn_c_to_a<T>(dpt[0][2 * kk], dpt[0][2 * kk + 1], dsa[kk]);
  attn_wgmma_fence();
  if constexpr (OVERLAP != BWD_OVERLAP_FULL) {
#pragma unroll
    for (int kk = 0; kk < BQ / 16; kk++)
      AttnWgmma<T, D>::rs_mn(&dv[0][0][0], pa[kk], domn + 128 * kk, true);
  }
#pragma unroll
  for (int kk = 0; kk < BQ / 16; kk++)
    AttnWgmma<T, D>::rs_mn(&dk[0][0][0], dsa[kk], qmn + 128 * kk, true);
  attn_wgmma_commit();
  attn_wgmma_wait<0>();
  attn_wgmma_pin<NO * 4>(&dv[0][0][0]);
  attn_wgmma_pin<NO * 4>(&dk[0][0][0]);
  attn_wgmma_pin<BQ / 4>(&pa[0][0]);
  attn_wgmma_pin<BQ / 4>(&dsa[0][0]);
  if constexpr (KEEP_DS) /* after the wait: dsa is dK's A, which may not be read before it (PTX ISA) */
    bwd_store_ds_t<T, BQ, DS_CHUNK>(sds, krow & 63, tq, &dsa[0][0]);
}
#endif

#if ATTN_HAS_WGMMA
/* dK = scale dS^T Q and dV of a thread's keys r0 and r0 + 8 (the dK/dV
 * kernels' accumulators), rows past the sequence left alone. */
template <typename T, int D>
__device__ __forceinline__ void bwd_store_dkdv(const AttnArgs &a, const AttnSeg &g, int64_t base, int r0, int tq,
                                               const float (&dk)[1][D / 8][4], const float (&dv)[1][D / 8][4]) {
#pragma unroll
  for (int hr = 0; hr < 2; hr++) {
    const int r = r0 + hr * 8;
    if (r >= g.n)
      continue;
    T *dkrow = (T *)a.dk + base + (int64_t)r * a.ld, *dvrow = (T *)a.dv + base + (int64_t)r * a.ld;
#pragma unroll
    for (int j = 0; j < D / 8; j++) {
      *reinterpret_cast<uint32_t *>(dkrow + j * 8 + 2 * tq) =
          AttnType<T>::pack2(a.scale * dk[0][j][2 * hr], a.scale * dk[0][j][2 * hr + 1]);
      *reinterpret_cast<uint32_t *>(dvrow + j * 8 + 2 * tq) =
          AttnType<T>::pack2(dv[0][j][2 * hr], dv[0][j][2 * hr + 1]);
    }
  }
}
#endif

template <typename T, int D>
__global__ void __launch_bounds__(HopperBwdCfg<D>::NT, 1) attn_hopper_bwd_kernel(AttnArgs a) {
#if ATTN_HAS_WGMMA
  typedef HopperBwdCfg<D> C;
  constexpr int NT = C::NT, BKV = C::BKV, BQ = C::BQ;
  constexpr int NO = D / 8; /* n8 tiles of dK, dV per warp */
  constexpr int OVERLAP = D == 64 ? BWD_OVERLAP_FULL : BWD_OVERLAP_NONE; /* products under the softmax (below) */
  ATTN_DYNAMIC_SMEM(unsigned char, raw);
  T *sK = reinterpret_cast<T *>(attn_align_smem_1024(raw)); /* the swizzle's 1024-byte groups */
  T *sV = sK + BKV * D;
  T *sQ = sV + BKV * D;  /* two stages */
  T *sdO = sQ + 2 * BQ * D; /* two stages */
  float *sStat = reinterpret_cast<float *>(sdO + 2 * BQ * D); /* [stage][lse2 | D][BQ] */
  int *sKeep = reinterpret_cast<int *>(sStat + 4 * BQ);

  AttnSeg g;
  int tile;
  if (!attn_find_tile(a, BKV, &g, &tile))
    return;
  const int h = blockIdx.y, tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int gr = lane >> 2, tq = lane & 3;
  const int j0 = tile * BKV, krow = warp * 16 + gr; /* this thread's keys: j0 + krow and j0 + krow + 8 */
  const int64_t base = (int64_t)g.start * a.ld + (int64_t)h * D;
  const T *Qg = (const T *)a.q + base, *Kg = (const T *)a.k + base, *Vg = (const T *)a.v + base;
  const T *dOg = (const T *)a.dout + base;

  int hidden = 0, kept = 0;
  attn_bwd_mark_keys<BKV, NT>(g, j0, tid, sKeep, &hidden, &kept);
  kept = __syncthreads_or(kept);
  hidden = __syncthreads_or(hidden);
  if (!kept) { /* padding only: dK = dV = 0 */
    attn_bwd_zero_dkdv<T, D, BKV, NT>(a, g, base, j0);
    return;
  }
  const bool keep0 = sKeep[krow] != 0, keep1 = sKeep[krow + 8] != 0;

  /* A k-step of 16 head-dim columns is attn_sw128_kstep; of 16 queries,
   * 16 rows (+128); a stage is BQ D / 8. */
  const BwdDkdvDescs dd = bwd_dkdv_descs<T, BQ>(sK, sV, sQ, sdO, warp >> 2);
  constexpr uint64_t STAGE = BQ * D / 8;

  const int istart = a.causal ? j0 : 0; /* causal: queries before j0 see none of these keys */
  const int nqt = (g.n - istart + BQ - 1) / BQ;

  /* Prologue: K, V and query tile 0 (one group), tile 1 (the next; empty
   * when there is none); tile 0's statistics straight to shared memory,
   * tile 1's into a register (thread c < BQ: lse of query c, BQ <= c < 2 BQ:
   * D of query c - BQ). */
  attn_load_rows_sw128<T, D, BKV, NT>(sK, Kg, a.ld, j0, g.n);
  attn_load_rows_sw128<T, D, BKV, NT>(sV, Vg, a.ld, j0, g.n);
  attn_load_rows_sw128<T, D, BQ, NT>(sQ, Qg, a.ld, istart, g.n);
  attn_load_rows_sw128<T, D, BQ, NT>(sdO, dOg, a.ld, istart, g.n);
  attn_cp_async_commit();
  if (nqt > 1) {
    attn_load_rows_sw128<T, D, BQ, NT>(sQ + BQ * D, Qg, a.ld, istart + BQ, g.n);
    attn_load_rows_sw128<T, D, BQ, NT>(sdO + BQ * D, dOg, a.ld, istart + BQ, g.n);
  }
  attn_cp_async_commit();
  const bool stat_thread = tid < 2 * BQ, stat_lse = tid < BQ;
  const int stat_c = tid % BQ;
  if (stat_thread)
    sStat[tid] = bwd_query_stat(a, g, h, istart + stat_c, stat_lse);
  float next_stat = stat_thread && nqt > 1 ? bwd_query_stat(a, g, h, istart + BQ + stat_c, stat_lse) : 0.0f;

  float dk[1][NO][4], dv[1][NO][4];
#pragma unroll
  for (int j = 0; j < NO; j++)
#pragma unroll
    for (int e = 0; e < 4; e++)
      dk[0][j][e] = dv[0][j][e] = 0.0f;

  for (int it = 0; it < nqt; it++) {
    const int i0 = istart + it * BQ, stage = it & 1;
    attn_cp_async_wait_group<1>(); /* query tile it (and K, V) */
    attn_fence_proxy_async();
    __syncthreads(); /* tile it and its statistics visible to all */
    const float *lse2 = sStat + stage * 2 * BQ, *dsum = lse2 + BQ;

    bwd_dkdv_tile<T, D, BKV, BQ, OVERLAP>(a, dd.k, dd.v, dd.q_k + stage * STAGE, dd.q_mn + stage * STAGE,
                                          dd.do_k + stage * STAGE, dd.do_mn + stage * STAGE, lse2, dsum, j0, i0,
                                          krow, tq, hidden, keep0, keep1, dk, dv);

    /* tile it + 1's statistics into the other stage (its last reader,
     * tile it - 1, finished before this iteration's barrier); fetch tile
     * it + 2's */
    if (stat_thread && it + 1 < nqt)
      sStat[(stage ^ 1) * 2 * BQ + tid] = next_stat;
    if (stat_thread && it + 2 < nqt)
      next_stat = bwd_query_stat(a, g, h, i0 + 2 * BQ + stat_c, stat_lse);
    __syncthreads(); /* every warp is done with this stage */
    if (it + 2 < nqt) {
      attn_load_rows_sw128<T, D, BQ, NT>(sQ + stage * BQ * D, Qg, a.ld, i0 + 2 * BQ, g.n);
      attn_load_rows_sw128<T, D, BQ, NT>(sdO + stage * BQ * D, dOg, a.ld, i0 + 2 * BQ, g.n);
    }
    attn_cp_async_commit();
  }
  attn_cp_async_wait_all(); /* nothing may land after the CTA is gone */

  bwd_store_dkdv<T, D>(a, g, base, j0 + krow, tq, dk, dv);
#else
  (void)a; /* no wgmma in this image: attn_hopper_fwd_runs says so before any launch */
#endif
}

#if ATTN_HAS_WGMMA
/* The warp-specialised kernels' mbarriers, set by thread 0 and published
 * by a CTA barrier (every thread calls this; the kernels' last CTA-wide
 * barrier): `once` for the tiles loaded once (one arrival with their
 * bytes), and per stage `full` (FULL arrivals: the loading warp's 32
 * lanes, lane 0's with the bytes, and at 128-query tiles the statistics
 * warp's 32) and `empty` (lane 0 of each of the 8 consumer warps). */
template <int NSTAGE, int FULL = 32>
__device__ __forceinline__ void bwd_ws_init_barriers(uint64_t *once, uint64_t *full, uint64_t *empty) {
  if (threadIdx.x == 0) {
    attn_mbar_init(once, 1);
    for (int st = 0; st < NSTAGE; st++) {
      attn_mbar_init(&full[st], FULL);
      attn_mbar_init(&empty[st], 8);
    }
    attn_mbar_init_fence();
  }
  __syncthreads(); /* the barriers exist before anyone waits on them */
}

/* The consumers (ct 0..255) zero rows valid .. ROWS - 1 of two tiles in the
 * swizzled [D / 64][ROWS][64] layout (whole rows: the swizzle only
 * permutes the 16-byte chunks within a row) and make the zeros visible to
 * wgmma among themselves (named barrier `bar`). */
template <typename T, int D, int ROWS>
__device__ __forceinline__ void bwd_ws_zero_rows(T *t0, T *t1, int valid, int ct, int bar) {
  constexpr int CH = D / 64;
  const int nrows = ROWS - valid;
  for (int i = ct; i < 2 * CH * nrows * 8; i += 256) {
    const int r = valid + (i / 8) % nrows, c = (i / (8 * nrows)) % CH, t = i / (8 * nrows * CH);
    attn_sts_zero16_for_wgmma((t ? t1 : t0) + c * ROWS * 64 + r * 64 + (i % 8) * 8);
  }
  attn_fence_proxy_async();
  attn_named_bar_sync(bar, 256);
}

/* The loading warp's share of a stage: lane 0 expects two tiles' bytes on
 * `bar` and issues their TMA boxes (rows row.. of all D columns, landing as
 * [D / 64][ROWS][64]); the other lanes arrive. Whatever a lane stores into
 * the stage itself comes before its call: the phase may complete at once. */
template <typename T, int D, int ROWS>
__device__ __forceinline__ void bwd_ws_load_pair(int lane, uint64_t *bar, T *dst0, const AttnTmaMap *map0, T *dst1,
                                                 const AttnTmaMap *map1, int h, int row) {
  if (lane == 0) {
    attn_mbar_arrive_expect_tx(bar, 2 * ROWS * D * sizeof(T));
#pragma unroll
    for (int c = 0; c < D / 64; c++) {
      attn_tma_load_3d(dst0 + c * ROWS * 64, map0, 64 * c, h, row, bar);
      attn_tma_load_3d(dst1 + c * ROWS * 64, map1, 64 * c, h, row, bar);
    }
  } else {
    attn_mbar_arrive(bar);
  }
}
#endif

/* How the warp-specialised dK/dV kernel's dQ is made: by the separate dQ
 * kernel (tiling 2, deterministic), by f32 atomics from each consumer
 * warpgroup (tiling 2's fast mode), or by the TMA unit's bulk reduce from
 * shared memory (tiling 3, FlashAttention-3's way): in any order (its fast
 * mode), or in key-tile order (deterministic: BWD_DQ_BULK_ORDERED). */
enum BwdDq { BWD_DQ_KERNEL = 0, BWD_DQ_ATOMIC = 1, BWD_DQ_BULK = 2, BWD_DQ_BULK_ORDERED = 3 };

/* Tiling 3's dQ tile in shared memory (bwd_ws_dq_bulk_owner), laid out as
 * D / 32 TMA boxes of the f32 accumulator's tensor map: [box][BQ rows][32
 * floats], each 128-byte row's 16-byte chunks swizzled by the row (chunk ^
 * row % 8; the tile 1024-byte aligned). One tensor bulk reduce per box adds
 * it (D / 32 instructions per tile, where rows of the [tokens, heads, D]
 * accumulator would need one per row: 64, issued lane by lane), and a
 * warp's float2 stores of its accumulator fragments (8 rows x 4 pairs)
 * still take 2 wavefronts, the least for 256 bytes. */
template <int D, int BQ> struct BwdDqTile {
  static constexpr int BOXES = D / 32, BOX_FLOATS = BQ * 32, FLOATS = BOXES * BOX_FLOATS;
  /* the float of row r, column c */
  static __device__ __forceinline__ int at(int r, int c) {
    return (c >> 5) * BOX_FLOATS + r * 32 + ((((c >> 2) & 7) ^ (r & 7)) << 2) + (c & 3);
  }
};

#if ATTN_HAS_WGMMA
/* Tiling 2's fast mode (mb_cuda_attn_set_deterministic(0), FlashAttention-2's
 * way): dQ_i += dS_i K summed by f32 atomics from the dK/dV kernel, which
 * has dS^T at hand already, in place of the dQ kernel's recomputation
 * (5 tile products per (i, j) instead of 7). Warpgroup wg (warp cwarp)
 * has stored its dS^T (keys 64 wg.., queries i0..) into its own swizzled
 * [64 keys][BQ] tile sds (bwd_dkdv_tile); per 64 columns c of the head
 * dimension, dQ_part = dS K_wg with both operands read MN-major from
 * shared memory (ss_mn: A = dS^T's rows are keys, B = K's rows are keys),
 * and its rows added to the accumulator with float2 atomics (the two
 * warpgroups' partial sums meet there). Every warp's product reads all
 * four warps' rows, and a wait covers only the waiting warp's own: so the
 * tiles alternate between two buffers, and the barrier after tile i + 1's
 * stores (each warp stores after its wait for tile i) frees tile i's buffer
 * for tile i + 2. (One buffer fails the emulator test: a warp rewrote its
 * rows while another's product had yet to read them.) */
template <typename T, int D, int BKV, int BQ>
__device__ __forceinline__ void bwd_ws_dq_atomic(const AttnArgs &a, const AttnSeg &g, int h, int i0, const T *sds,
                                                 const T *sk_wg, int cwarp, int lane) {
  static_assert(BQ == 64, "tiling 2's fast mode: 64-query tiles");
  const int gr = lane >> 2, tq = lane & 3, wg = cwarp >> 2;
  attn_fence_proxy_async();
  attn_named_bar_sync(2 + wg, 128); /* the warpgroup's 64 rows written */
  const uint64_t adesc = attn_wgmma_desc_sw128(sds, 64 * 128, 1024);  /* A (m = query, k = key), MN-major */
  const uint64_t bdesc = attn_wgmma_desc_sw128(sk_wg, BKV * 128, 1024); /* B (k = key, n = d), MN-major */
#pragma unroll
  for (int c = 0; c < D / 64; c++) {
    float part[32];
    attn_wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; kk++) /* 16 keys a step: 16 rows, +128 */
      AttnWgmma<T, 64>::ss_mn(part, adesc + 128 * kk, bdesc + c * (BKV * 8) + 128 * kk, kk > 0);
    attn_wgmma_commit();
    attn_wgmma_wait<0>();
    attn_wgmma_pin<32>(part);
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
      const int q = i0 + (cwarp & 3) * 16 + gr + hr * 8;
      if (q >= g.n) /* another sequence's row */
        continue;
      const int64_t idx = (int64_t)(g.start + q) * a.ld + (int64_t)h * D + c * 64 + 2 * tq;
#pragma unroll
      for (int j = 0; j < 8; j++)
        attn_dq_add2(a.dq_accum, idx + 8 * j, part[4 * j + 2 * hr], part[4 * j + 2 * hr + 1]);
    }
  }
}

/* Tiling 3's fast mode (FlashAttention-3's way): each query tile's dQ is
 * summed over all 128 keys of the CTA by one consumer warpgroup, the
 * tile's "owner" (query tile it: warpgroup it % 2, so the two take turns),
 * written to a shared f32 tile, and added to the accumulator by the TMA
 * unit (cp.reduce.async.bulk.tensor, one per 32 columns: BwdDqTile) that
 * the producer warpgroup's second warp issues. Against tiling 2's fast mode: half the
 * adds (the two warpgroups' partial sums meet in registers, not in L2),
 * bulk reduces in place of 2 x 16 float2 atomics per thread, and the
 * consumers never wait for them. The handovers (named barriers; counts
 * in whole warps):
 *   BAR_DS (256): both warpgroups have stored and fenced their dS^T of the
 *     tile (bwd_dkdv_tile), so the owner's product may read both; passing
 *     it at tile it + 1 also means the owner of tile it - 1 has finished
 *     reading, so each of the two dS^T buffers is free for its next tile;
 *   BAR_DQ_EMPTY (160; 288 at BQ = 128, both warpgroups owning a half):
 *     the writer warp has read the dQ tile out (its bulk group's
 *     wait_group.read), the owner may overwrite it; the writer arrives
 *     once at the start and after every tile but the last;
 *   BAR_DQ_FULL (160; 288): the owner has stored and fenced the tile; the
 *     writer issues the reduces.
 * A box covers all BQ rows, so in a sequence's last query tile the rows
 * past its end are added too, to the next sequence's rows (or to the
 * padding of a padded row; rows past the tensor are not written): the
 * owner stores +0 there, which leaves any sum as it was, also in the
 * ordered mode, whose turns those rows are not part of (the accumulator is
 * never -0: it starts at +0 and the TMA unit rounds to nearest). Their dS
 * is 0 anyway (Q, dO zeroed, lse +inf), but a NaN in this sequence's K
 * must not reach another's dQ. sdq: BwdDqTile. */
template <int BQ> struct BwdDqBars {
  /* the handover counts: the writer warp and the owner (BQ = 64) or both
   * warpgroups (BQ = 128) */
  static constexpr int BAR_DS = 2, BAR_DQ_FULL = 3, BAR_DQ_EMPTY = 4, HANDOVER = (BQ == 128 ? 256 : 128) + 32;
};

/* The dS^T tiles of one query tile (bwd_store_ds_t): [64-query chunk][warpgroup][64 keys][64 queries], so the
 * two warpgroups' tiles of a chunk lie one after the other (keys 0..127) */
constexpr int BWD_DS_CHUNK = 2 * 64 * 64;

/* With BQ = 128 (tiling 4, FlashAttention-3's tile shape at head_dim 64)
 * there is no turn-taking: each warpgroup sums its half of the query tile
 * (queries 64 wg..) over all 128 keys, every tile, and both hand the
 * tile to the writer together. */
template <typename T, int D, int BKV, int BQ>
__device__ __forceinline__ void bwd_ws_dq_bulk_owner(int it, int valid, const T *sds_pair, const T *sK, float *sdq,
                                                     int cwarp, int lane) {
  typedef BwdDqBars<BQ> B;
  typedef BwdDqTile<D, BQ> Tile;
  static_assert(BQ == 64 || BQ == 128, "an owner per tile, or a half per warpgroup");
  attn_fence_proxy_async(); /* this thread's dS^T stores, for the owner's product */
  attn_named_bar_sync(B::BAR_DS, 256);
  const int wg = cwarp >> 2;
  if (BQ == 64 && wg != (it & 1))
    return;
  const int gr = lane >> 2, tq = lane & 3;
  /* A = dS (m = query, k = key) over both warpgroups' tiles of this
   * warpgroup's 64-query chunk, which lie one after the other: keys
   * 16 kk.. at +128 kk (16-byte units); B = K (k = key, n = d), MN-major,
   * 64 columns c at +c BKV 8 */
  const uint64_t adesc = attn_wgmma_desc_sw128(sds_pair + (BQ == 128 ? wg * BWD_DS_CHUNK : 0), 64 * 128, 1024);
  const uint64_t bdesc = attn_wgmma_desc_sw128(sK, BKV * 128, 1024);
  constexpr int NC = D / 64;
  float part[NC][32];
  attn_wgmma_fence();
#pragma unroll
  for (int c = 0; c < NC; c++) {
#pragma unroll
    for (int kk = 0; kk < BKV / 16; kk++)
      AttnWgmma<T, 64>::ss_mn(part[c], adesc + 128 * kk, bdesc + c * (BKV * 8) + 128 * kk, kk > 0);
    attn_wgmma_commit();
  }
  attn_named_bar_sync(B::BAR_DQ_EMPTY, B::HANDOVER); /* under the products: the writer is done with sdq */
  const int r0 = (BQ == 128 ? 64 * wg : 0) + (cwarp & 3) * 16 + gr; /* the tile's rows r0, r0 + 8 */
#pragma unroll
  for (int c = 0; c < NC; c++) {
    if (c + 1 < NC)
      attn_wgmma_wait<1>(); /* NC is 1 or 2: all but the last batch */
    else
      attn_wgmma_wait<0>();
    attn_wgmma_pin<32>(part[c]);
    if (valid < BQ) /* the sequence's last tile: +0 in the rows past its end (BwdDqBars) */
#pragma unroll
      for (int hr = 0; hr < 2; hr++)
#pragma unroll
        for (int j = 0; j < 8; j++)
          if (r0 + 8 * hr >= valid)
            part[c][4 * j + 2 * hr] = part[c][4 * j + 2 * hr + 1] = 0.0f;
#pragma unroll
    for (int hr = 0; hr < 2; hr++)
#pragma unroll
      for (int j = 0; j < 8; j++)
        attn_sts_f32x2_for_async(sdq + Tile::at(r0 + 8 * hr, c * 64 + 8 * j + 2 * tq), part[c][4 * j + 2 * hr],
                                 part[c][4 * j + 2 * hr + 1]);
  }
  attn_fence_proxy_async(); /* the stores, for the bulk reduces */
  attn_named_bar_arrive(B::BAR_DQ_FULL, B::HANDOVER);
}

/* The writer warp of tiling 3 (the producer warpgroup's second): per
 * query tile, once the owner has filled sdq, lane 0 adds it to the
 * accumulator (dqmap: its tensor map) box by box. ORDERED (deterministic):
 * key tile j adds to query tile i0 only after key tiles 0 .. j - 1 have
 * (FlashAttention-3's deterministic mode): lane 0 waits for the tile's
 * semaphore to read j (or more: a cu_seqlens whose sequences overlap
 * shares words between them, which must give wrong sums, not a GPU that
 * spins for ever), the adds complete, and lane 0 adds 1 to it. Key
 * tile j's CTA starts after theirs (the grid's x runs over a sequence's
 * key tiles, and CTAs start in order), and each CTA walks the query tiles
 * in the same order, so the waits end; every dQ element then sums its key
 * tiles' parts in order, the same bits every run. (Causal: a key tile's
 * first query tile is its own start, and every earlier key tile covers
 * it, so the count before j is still j.) */
template <int D, int BQ, bool ORDERED>
__device__ __forceinline__ void bwd_ws_dq_bulk_writer(const AttnArgs &a, const AttnTmaMap *dqmap, const AttnSeg &g,
                                                      int h, int j, int istart, int nqt, bool kept, const float *sdq,
                                                      int lane) {
  typedef BwdDqTile<D, BQ> Tile;
  typedef BwdDqBars<BQ> B;
  /* kept false (ORDERED only): the key tile is padding, nothing to add
   * and no owner to meet, but later key tiles wait for its turns */
  if (kept)
    attn_named_bar_arrive(B::BAR_DQ_EMPTY, B::HANDOVER); /* sdq starts free */
#pragma unroll 1 /* within the producer's 24 registers */
  for (int it = 0; it < nqt; it++) {
    if (kept)
      attn_named_bar_sync(B::BAR_DQ_FULL, B::HANDOVER);
    const int i0 = istart + it * BQ;
    int32_t *sem = a.dq_sem + attn_stat_index(a, g.start + i0, h);
    if constexpr (ORDERED) {
      if (lane == 0)
        attn_sem_wait_ge(sem, j);
      __syncwarp();
      attn_fence_proxy_async_global(); /* the reduces after what the acquire saw */
    }
    if (lane == 0) { /* the bulk group is lane 0's alone */
      if (kept)
#pragma unroll
        for (int b = 0; b < Tile::BOXES; b++)
          attn_tma_reduce_add_3d(dqmap, 32 * b, h, g.start + i0, sdq + b * Tile::BOX_FLOATS);
      attn_bulk_commit();
      if (ORDERED || it + 1 < nqt)
        attn_bulk_wait_read<0>();
    }
    __syncwarp(); /* the reads done, for the whole warp's arrival */
    if (kept && it + 1 < nqt) /* sdq read: free (nobody waits for a release after the last tile) */
      attn_named_bar_arrive(B::BAR_DQ_EMPTY, B::HANDOVER);
    if constexpr (ORDERED) { /* the adds done, then published (the owner goes on meanwhile) */
      if (lane == 0) {
        attn_bulk_wait<0>();
        attn_fence_proxy_async_global();
        attn_sem_inc_release(sem);
      }
    }
  }
  if (lane == 0)
    attn_bulk_wait<0>(); /* the adds done before the CTA's shared memory goes */
}
#endif

/* The dK/dV kernel warp-specialised (backward tilings 2 to 4): the
 * forward's tiling 5 applied to tiling 1's loop. A CTA of three warpgroups
 * per (BKV = 128 keys, head, sequence): warpgroup 0 gives its registers
 * back (setmaxnreg 24) and its first warp loads -- K and V once, then each
 * query tile's Q and dO as TMA boxes into an NSTAGE ring, with the tile's
 * lse and D (bwd_query_stat: +inf / 0 for queries that are not live)
 * stored by its 32 lanes, all completing the stage's "full" mbarrier;
 * it refills a stage once the 8 consumer warps have arrived on its
 * "empty" one. Warpgroups 1 and 2 (setmaxnreg 240) each own 64 keys and run
 * bwd_dkdv_tile per query tile, with no CTA-wide barrier: in tiling 1 both
 * warpgroups met at two __syncthreads per tile, and the forward measured
 * what removing them is worth (tiling 5 = 2.3x tiling 4 on the H200).
 * TMA reads past a sequence's end read the next sequence or the varlen
 * budget's unwritten tail: the consumers zero the last tile's Q and dO rows
 * past the end before using them (0 x NaN would reach dK and dV). DQ
 * (BwdDq): in the fast modes the kernel adds dQ too (bwd_ws_dq_atomic,
 * or bwd_ws_dq_bulk_owner with the producer warpgroup's second warp as
 * bwd_ws_dq_bulk_writer). */
/* setmaxnreg in both of tilings 2-4's kernels (AttnRegSplit): 24 registers per
 * thread for the producer warpgroup, 240 for the two consumer warpgroups */
typedef AttnRegSplit<24, 240, 256> BwdWsRegs;

/* BQ_: the query tile, 64 (tilings 2-3) or 128 (tiling 4 at head_dim 64:
 * FlashAttention-3's 128 x 128 tile there, so S^T and dP^T run as
 * m64n128k16, dK and dV get 8 k-steps per tile, and half as many tiles
 * pass the stages, barriers and dQ semaphores). */
template <int D, int BQ_ = 64> struct HopperBwdWsCfg {
  static constexpr int NT = 384, BKV = 128, BQ = BQ_;
  static_assert(NT == BwdWsRegs::nt, "the split covers the CTA");
  static_assert(BQ == 64 || (BQ == 128 && D == 64), "128-query tiles at head_dim 64 only (registers)");
  /* the stages of the Q, dO ring: 3, but 2 where the bulk mode's dQ tile
   * would not fit beside them (D = 128, or 128-query tiles) */
  template <int DQ> __host__ __device__ static constexpr int nstage() {
    return DQ >= BWD_DQ_BULK && (D == 128 || BQ == 128) ? 2 : 3;
  }
  /* alignment; K, V; the stages of Q and dO; in the fast modes two buffers
   * of the two warpgroups' dS^T tiles; in the bulk mode the dQ tile; the
   * stages of lse2 and D; key flags; mbarriers */
  template <typename T, int DQ> static constexpr size_t smem_bytes() {
    return 1024 + (size_t)(2 * BKV + 2 * nstage<DQ>() * BQ) * D * sizeof(T) +
           (DQ != BWD_DQ_KERNEL ? 4 * 64 * BQ * sizeof(T) : 0) +
           (DQ >= BWD_DQ_BULK ? BwdDqTile<D, BQ>::FLOATS * sizeof(float) : 0) + nstage<DQ>() * 2 * BQ * sizeof(float) +
           BKV * sizeof(int) + (1 + 2 * nstage<DQ>()) * sizeof(uint64_t);
  }
};

/* The tensor maps of the backward's TMA loads, and of tiling 3's reduces
 * into the f32 dQ accumulator (dq: boxes of BQ rows). */
struct AttnBwdTmaMaps {
  AttnTmaMap q, k, v, dout, dq;
};

template <typename T, int D, int DQ, int BQ_ = 64>
__global__ void __launch_bounds__(HopperBwdWsCfg<D, BQ_>::NT, 1)
    attn_hopper_bwd_ws_kernel(AttnArgs a, const __grid_constant__ AttnBwdTmaMaps maps) {
#if ATTN_HAS_WGMMA
  typedef HopperBwdWsCfg<D, BQ_> C;
  constexpr int NT = C::NT, BKV = C::BKV, BQ = C::BQ, NSTAGE = C::template nstage<DQ>(), NO = D / 8;
  constexpr bool FASTDQ = DQ != BWD_DQ_KERNEL, BULK = DQ >= BWD_DQ_BULK; /* FASTDQ: dQ made here */
  constexpr int BAR_QTAIL = 1; /* a named barrier among the 256 consumers (the tails' zeros) */
  ATTN_DYNAMIC_SMEM(unsigned char, raw);
  T *sK = reinterpret_cast<T *>(attn_align_smem_1024(raw)); /* the swizzle's 1024-byte groups */
  T *sV = sK + BKV * D;
  T *sQ = sV + BKV * D;             /* query tile it in stage it % NSTAGE */
  T *sdO = sQ + NSTAGE * BQ * D;    /* likewise */
  T *sdS = sdO + NSTAGE * BQ * D;   /* FASTDQ: [query tile % 2][BQ / 64][warpgroup][64 keys][64], swizzled */
  float *sdq = reinterpret_cast<float *>(sdS + (FASTDQ ? 4 * 64 * BQ : 0)); /* bulk: BwdDqTile (1024-aligned) */
  float *sStat = sdq + (BULK ? BwdDqTile<D, BQ>::FLOATS : 0);             /* [stage][lse2 | D][BQ] */
  int *sKeep = reinterpret_cast<int *>(sStat + NSTAGE * 2 * BQ);
  uint64_t *full_kv = reinterpret_cast<uint64_t *>(sKeep + BKV);
  uint64_t *full = full_kv + 1, *empty = full + NSTAGE;

  AttnSeg g;
  int tile;
  if (!attn_find_tile(a, BKV, &g, &tile))
    return;
  const int h = blockIdx.y, tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int j0 = tile * BKV;
  const int64_t base = (int64_t)g.start * a.ld + (int64_t)h * D;

  int hidden = 0, kept = 0;
  attn_bwd_mark_keys<BKV, NT>(g, j0, tid, sKeep, &hidden, &kept);
  kept = __syncthreads_or(kept);
  hidden = __syncthreads_or(hidden);
  const int istart = a.causal ? j0 : 0; /* causal: queries before j0 see none of these keys */
  const int nqt = (g.n - istart + BQ - 1) / BQ;
  if (!kept) { /* padding only: dK = dV = 0 (the whole CTA leaves before any barrier or load) */
    attn_bwd_zero_dkdv<T, D, BKV, NT>(a, g, base, j0);
    if constexpr (DQ == BWD_DQ_BULK_ORDERED)
      if (warp == 1) /* but the later key tiles wait for this one's turns on the dQ semaphores */
        bwd_ws_dq_bulk_writer<D, BQ, true>(a, &maps.dq, g, h, j0 / BKV, istart, nqt, false, sdq, lane);
    return;
  }
  /* STATW: the warp that stores a stage's statistics -- the loading warp
   * itself, or at BQ = 128 the producer's third warp, whose 32 lanes then
   * arrive on the stage's full barrier too: 128 queries' loads would not
   * fit the loader's 24 registers, and one after another they would hold
   * up its TMA issue by several load latencies per tile */
  constexpr int STATW = BQ == 128 ? 2 : 0;
  bwd_ws_init_barriers<NSTAGE, STATW ? 64 : 32>(full_kv, full, empty);

  if (warp < 4) { /* the producer warpgroup; its first warp loads */
    attn_setmaxnreg_dec<BwdWsRegs::producer>();
    if (warp == 0) {
      if (lane == 0) /* K, V: full_kv counts one arrival */
        bwd_ws_load_pair<T, D, BKV>(0, full_kv, sK, &maps.k, sV, &maps.v, h, g.start + j0);
#pragma unroll 1 /* within the producer's 24 registers */
      for (int it = 0; it < nqt; it++) {
        const int st = it % NSTAGE, i0 = istart + it * BQ;
        if (it >= NSTAGE) /* the consumers' release of this stage's previous tile */
          attn_mbar_wait(&empty[st], ((it / NSTAGE) - 1) & 1);
        if constexpr (STATW == 0)
          bwd_ws_query_stats<BQ>(a, g, h, i0, sStat + st * 2 * BQ, lane);
        bwd_ws_load_pair<T, D, BQ>(lane, &full[st], sQ + st * BQ * D, &maps.q, sdO + st * BQ * D, &maps.dout, h,
                                   g.start + i0);
      }
    } else if (STATW && warp == STATW) {
#pragma unroll 1
      for (int it = 0; it < nqt; it++) {
        const int st = it % NSTAGE;
        if (it >= NSTAGE)
          attn_mbar_wait(&empty[st], ((it / NSTAGE) - 1) & 1);
        bwd_ws_query_stats<BQ>(a, g, h, istart + it * BQ, sStat + st * 2 * BQ, lane);
        attn_mbar_arrive(&full[st]); /* after this lane's stores */
      }
    } else if (BULK && warp == 1) {
      bwd_ws_dq_bulk_writer<D, BQ, DQ == BWD_DQ_BULK_ORDERED>(a, &maps.dq, g, h, j0 / BKV, istart, nqt, true, sdq,
                                                              lane);
    }
    return;
  }

  attn_setmaxnreg_inc<BwdWsRegs::consumer>();
  /* The consumer warp's index, warp-uniform (attn_warp_uniform): 74 R2UR
   * in tiling 3's loop at D = 64, 11 after, and 128 fewer instructions per
   * query tile. At D = 128 the whole of it spills in tilings 2-3 (40-byte
   * frames), so there only the descriptors take it (83 fewer). */
  const int cwarp_u = attn_warp_uniform(warp - 4);
  const int ct = tid - 128, cwarp = D == 64 ? cwarp_u : warp - 4, gr = lane >> 2, tq = lane & 3;
  const int krow = cwarp * 16 + gr; /* this thread's keys: j0 + krow and j0 + krow + 8 */
  const bool keep0 = sKeep[krow] != 0, keep1 = sKeep[krow + 8] != 0;
  const BwdDkdvDescs dd = bwd_dkdv_descs<T, BQ>(sK, sV, sQ, sdO, cwarp_u >> 2); /* a stage: BQ D / 8 */
  constexpr uint64_t STAGE = BQ * D / 8;

  float dk[1][NO][4], dv[1][NO][4];
#pragma unroll
  for (int j = 0; j < NO; j++)
#pragma unroll
    for (int e = 0; e < 4; e++)
      dk[0][j][e] = dv[0][j][e] = 0.0f;

  attn_mbar_wait(full_kv, 0);
  if (FASTDQ && g.n - j0 < BKV) /* keys past the end: dS there must be 0 exactly and K finite, as dQ sums over keys */
    bwd_ws_zero_rows<T, D, BKV>(sK, sV, g.n - j0, ct, BAR_QTAIL);
  for (int it = 0; it < nqt; it++) {
    const int st = it % NSTAGE, i0 = istart + it * BQ;
    attn_mbar_wait(&full[st], (it / NSTAGE) & 1);
    const int valid = g.n - i0; /* rows of the tile at or past this are not the sequence's */
    if (valid < BQ) /* the last tile, once per CTA */
      bwd_ws_zero_rows<T, D, BQ>(sQ + st * BQ * D, sdO + st * BQ * D, valid, ct, BAR_QTAIL);
    const float *lse2 = sStat + st * 2 * BQ, *dsum = lse2 + BQ;
    T *sds_pair = sdS + (it & 1) * 2 * 64 * BQ; /* FASTDQ: this tile's dS^T tiles (BWD_DS_CHUNK) */
    /* the products overlap the softmax at 64-query tiles; at 128 the
     * in-flight dV with P^T, S^T and dP^T live spill: P^T under dP^T only */
    constexpr int OVERLAP = BQ == 64 ? BWD_OVERLAP_FULL : BWD_OVERLAP_P;
    bwd_dkdv_tile<T, D, BKV, BQ, OVERLAP, FASTDQ, BWD_DS_CHUNK>(
        a, dd.k, dd.v, dd.q_k + st * STAGE, dd.q_mn + st * STAGE, dd.do_k + st * STAGE, dd.do_mn + st * STAGE, lse2,
        dsum, j0, i0, krow, tq, hidden, keep0, keep1, dk, dv, sds_pair + (cwarp >> 2) * 64 * 64);
    if (lane == 0) /* after the tile's last wgmma wait (warp-wide): the warp is done with the stage */
      attn_mbar_arrive(&empty[st]);
    if constexpr (DQ == BWD_DQ_ATOMIC)
      bwd_ws_dq_atomic<T, D, BKV, BQ>(a, g, h, i0, sds_pair + (cwarp >> 2) * 64 * 64, sK + (cwarp >> 2) * 64 * 64,
                                      cwarp, lane);
    else if constexpr (BULK)
      bwd_ws_dq_bulk_owner<T, D, BKV, BQ>(it, valid, sds_pair, sK, sdq, cwarp, lane);
  }

  bwd_store_dkdv<T, D>(a, g, base, j0 + krow, tq, dk, dv);
#else
  (void)a;
  (void)maps; /* no wgmma in this image: attn_hopper_fwd_runs says so before any launch */
#endif
}

#if ATTN_HAS_WGMMA
/* One key tile of the dQ kernels (tiling 1's and its warp-specialised
 * form): this warpgroup's 64 query rows (qdesc, dodesc; lse2, dsum of rows
 * i0 + w16 + gr (+8)) against keys j0 .. j0 + BK - 1 (kk_desc, kmn: K
 * K-major and MN-major, vd: V; keep[c]: key j0 + c is real and unmasked,
 * read when hidden or causal), dQ += dS K into dq. The products are done
 * when it returns. S and dP are separate batches, so P's exponentials run
 * under dP. */
template <typename T, int D, int BQ, int BK>
__device__ __forceinline__ void bwd_dq_tile(const AttnArgs &a, uint64_t qdesc, uint64_t dodesc, uint64_t kk_desc,
                                            uint64_t kmn, uint64_t vd, const int *keep, const float (&lse2)[2],
                                            const float (&dsum)[2], int i0, int j0, int w16, int gr, int tq,
                                            bool hidden, float (&dq)[1][D / 8][4]) {
  constexpr int NS = BK / 8, NQ = D / 8;
  float s[1][NS][4], dp[1][NS][4];
  bwd_two_products<T, D, BK, BQ, BK>(&s[0][0][0], qdesc, kk_desc, &dp[0][0][0], dodesc, vd);
  attn_wgmma_wait<1>(); /* S; P's exponentials run under dP = dO V^T */
  attn_wgmma_pin<NS * 4>(&s[0][0][0]);
  const bool need_mask = hidden || (a.causal && j0 + BK - 1 > i0 + w16);
#pragma unroll
  for (int nj = 0; nj < NS; nj++)
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int hr = e >> 1;
      float p = attn_exp2(fmaf(s[0][nj][e], a.scale_log2, -lse2[hr]));
      if (need_mask) {
        const int c = j0 + nj * 8 + 2 * tq + (e & 1), r = i0 + w16 + gr + hr * 8;
        if (!keep[c - j0] || (a.causal && c > r))
          p = 0.0f;
      }
      s[0][nj][e] = p;
    }
  attn_wgmma_wait<0>(); /* dP */
  attn_wgmma_pin<NS * 4>(&dp[0][0][0]);
  uint32_t dsa[BK / 16][4]; /* dS as A fragments (rounded to T) */
#pragma unroll
  for (int nj = 0; nj < NS; nj++)
#pragma unroll
    for (int e = 0; e < 4; e++)
      dp[0][nj][e] = s[0][nj][e] * (dp[0][nj][e] - dsum[e >> 1]);
#pragma unroll
  for (int kk = 0; kk < BK / 16; kk++)
    attn_c_to_a<T>(dp[0][2 * kk], dp[0][2 * kk + 1], dsa[kk]);
  attn_wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < BK / 16; kk++)
    AttnWgmma<T, D>::rs_mn(&dq[0][0][0], dsa[kk], kmn + 128 * kk, true);
  attn_wgmma_commit();
  attn_wgmma_wait<0>();
  attn_wgmma_pin<NQ * 4>(&dq[0][0][0]);
  attn_wgmma_pin<BK / 4>(&dsa[0][0]);
}
#endif

#if ATTN_HAS_WGMMA
/* dq = scale dS K of a thread's query rows r0 and r0 + 8 (the dQ kernels'
 * accumulators; rows that are not live: 0), rows past the sequence left
 * alone. */
template <typename T, int D>
__device__ __forceinline__ void bwd_store_dq(const AttnArgs &a, const AttnSeg &g, int64_t base, int r0, int tq,
                                             const bool (&live)[2], const float (&dq)[1][D / 8][4]) {
#pragma unroll
  for (int hr = 0; hr < 2; hr++) {
    const int r = r0 + hr * 8;
    if (r >= g.n)
      continue;
    const float f = live[hr] ? a.scale : 0.0f;
    T *dqrow = (T *)a.dq + base + (int64_t)r * a.ld;
#pragma unroll
    for (int j = 0; j < D / 8; j++)
      *reinterpret_cast<uint32_t *>(dqrow + j * 8 + 2 * tq) =
          AttnType<T>::pack2(f * dq[0][j][2 * hr], f * dq[0][j][2 * hr + 1]);
  }
}
#endif

/* dQ on wgmma: one CTA of two warpgroups per (BQ = 128 queries, head,
 * sequence), warp w owning query rows 16 w.. (as the forward). It sums dQ
 * over the key tiles in order in registers -- no atomics, the same bits on
 * every run -- recomputing per tile of BK = 64 keys
 *   S = Q K^T, dP = dO V^T   (wgmma.m64n64k16, A and B from shared memory)
 *   dS = P (dP - D), P = exp(scale S - lse)   (per row: as the forward)
 *   dQ += dS K   (wgmma.m64nDk16, dS from registers, K read MN-major).
 * S and dP are separate batches, so P's exponentials run under dP. K and
 * V go through a two-stage ring a tile ahead, as in the forward, in the
 * 128-byte-swizzled layout. */
template <int D> struct HopperDqCfg {
  static constexpr int NT = 256, BQ = 128, BK = 64;
  /* CTAs per SM the kernel is built for: at D = 64 two fit (<= 128
   * registers, 2 x 67 KB of shared memory), so one CTA's loads and barriers
   * hide under the other's products; at D = 128 one (162 registers). */
  static constexpr int MIN_CTAS = D == 64 ? 2 : 1;
  template <typename T> static constexpr size_t smem_bytes() {
    /* alignment; Q, dO; two stages of K, V; key flags */
    return 1024 + (size_t)(2 * BQ + 4 * BK) * D * sizeof(T) + BK * sizeof(int);
  }
};

template <typename T, int D>
__global__ void __launch_bounds__(HopperDqCfg<D>::NT, HopperDqCfg<D>::MIN_CTAS) attn_hopper_dq_kernel(AttnArgs a) {
#if ATTN_HAS_WGMMA
  typedef HopperDqCfg<D> C;
  constexpr int NT = C::NT, BQ = C::BQ, BK = C::BK;
  constexpr int NQ = D / 8; /* n8 tiles of dQ per warp */
  ATTN_DYNAMIC_SMEM(unsigned char, raw);
  T *sQ = reinterpret_cast<T *>(attn_align_smem_1024(raw)); /* the swizzle's 1024-byte groups */
  T *sdO = sQ + BQ * D;
  T *sK = sdO + BQ * D;     /* two stages */
  T *sV = sK + 2 * BK * D; /* two stages */
  int *sKeep = reinterpret_cast<int *>(sV + 2 * BK * D);

  AttnSeg g;
  int tile;
  if (!attn_find_tile(a, BQ, &g, &tile))
    return;
  const int h = blockIdx.y, tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int gr = lane >> 2, tq = lane & 3;
  const int i0 = tile * BQ, w16 = warp * 16;
  const int64_t base = (int64_t)g.start * a.ld + (int64_t)h * D;
  const T *Qg = (const T *)a.q + base, *Kg = (const T *)a.k + base, *Vg = (const T *)a.v + base;
  const T *dOg = (const T *)a.dout + base;

  float lse2[2], dsum[2];
  bool live[2];
  attn_bwd_row_stats(a, g, h, i0 + w16 + gr, live, lse2, dsum);

  const BwdDqDescs dd = bwd_dq_descs<T, BK>(sQ, sdO, sK, sV, warp >> 2); /* a stage: BK D / 8 */
  constexpr uint64_t STAGE = BK * D / 8;

  /* causal: keys past this tile's last query are masked for all of it */
  const int jend = attn_key_end(a, g, i0, BQ);
  const int nkt = (jend + BK - 1) / BK;

  attn_load_rows_sw128<T, D, BQ, NT>(sQ, Qg, a.ld, i0, g.n);
  attn_load_rows_sw128<T, D, BQ, NT>(sdO, dOg, a.ld, i0, g.n);
  attn_load_rows_sw128<T, D, BK, NT>(sK, Kg, a.ld, 0, g.n);
  attn_load_rows_sw128<T, D, BK, NT>(sV, Vg, a.ld, 0, g.n);
  attn_cp_async_commit();
  if (nkt > 1) {
    attn_load_rows_sw128<T, D, BK, NT>(sK + BK * D, Kg, a.ld, BK, g.n);
    attn_load_rows_sw128<T, D, BK, NT>(sV + BK * D, Vg, a.ld, BK, g.n);
  }
  attn_cp_async_commit();

  float dq[1][NQ][4];
#pragma unroll
  for (int j = 0; j < NQ; j++)
#pragma unroll
    for (int e = 0; e < 4; e++)
      dq[0][j][e] = 0.0f;

  for (int kt = 0; kt < nkt; kt++) {
    const int j0 = kt * BK, stage = kt & 1;
    attn_cp_async_wait_group<1>(); /* tile kt (and Q, dO) */
    attn_fence_proxy_async();
    int hidden = 0, kept = 0;
    attn_bwd_mark_keys<BK, NT>(g, j0, tid, sKeep, &hidden, &kept);
    kept = __syncthreads_or(kept); /* also publishes sKeep and every thread's copies */
    hidden = __syncthreads_or(hidden);
    if (kept) { /* a tile of padding keys only adds nothing */
      bwd_dq_tile<T, D, BQ, BK>(a, dd.q, dd.dout, dd.k_k + stage * STAGE, dd.k_mn + stage * STAGE,
                                dd.v + stage * STAGE, sKeep, lse2, dsum, i0, j0, w16, gr, tq, hidden, dq);
    }
    __syncthreads(); /* every warp is done with this stage and sKeep */
    if (kt + 2 < nkt) {
      attn_load_rows_sw128<T, D, BK, NT>(sK + stage * BK * D, Kg, a.ld, j0 + 2 * BK, g.n);
      attn_load_rows_sw128<T, D, BK, NT>(sV + stage * BK * D, Vg, a.ld, j0 + 2 * BK, g.n);
    }
    attn_cp_async_commit();
  }
  attn_cp_async_wait_all(); /* nothing may land after the CTA is gone */

  bwd_store_dq<T, D>(a, g, base, i0 + w16 + gr, tq, live, dq);
#else
  (void)a; /* no wgmma in this image: attn_hopper_fwd_runs says so before any launch */
#endif
}

/* The dQ kernel warp-specialised (backward tiling 2, deterministic): as the
 * dK/dV kernel above, tiling 1's dQ loop behind a producer warpgroup. A
 * CTA of three warpgroups per (BQ = 128 queries, head, sequence):
 * warpgroup 0's first warp loads Q and dO once and each key tile's K and V
 * (TMA) into an NSTAGE ring, its lanes storing the tile's key flags (and
 * whether any key is hidden) before arriving on the stage's full mbarrier;
 * warpgroups 1 and 2 own 64 query rows each and run bwd_dq_tile per key
 * tile, releasing the stage per warp. Tiles of padding keys only are
 * computed (their P is 0) rather than skipped: a wgmma under a condition
 * read from shared memory may make ptxas serialise every wgmma (C7520).
 * The last key tile's K and V rows past the sequence are zeroed by the
 * consumers (0 x NaN from the next sequence or the varlen tail). */
template <int D> struct HopperDqWsCfg {
  static constexpr int NT = 384, BQ = 128, BK = 64, NSTAGE = 3;
  static_assert(NT == BwdWsRegs::nt, "the split covers the CTA");
  template <typename T> static constexpr size_t smem_bytes() {
    /* alignment; Q, dO; NSTAGE stages of K, V; mbarriers; NSTAGE stages of key flags and the hidden flag */
    return 1024 + (size_t)(2 * BQ + 2 * NSTAGE * BK) * D * sizeof(T) + NSTAGE * (BK + 1) * sizeof(int) +
           (1 + 2 * NSTAGE) * sizeof(uint64_t);
  }
};

template <typename T, int D>
__global__ void __launch_bounds__(HopperDqWsCfg<D>::NT, 1)
    attn_hopper_dq_ws_kernel(AttnArgs a, const __grid_constant__ AttnBwdTmaMaps maps) {
#if ATTN_HAS_WGMMA
  typedef HopperDqWsCfg<D> C;
  constexpr int BQ = C::BQ, BK = C::BK, NSTAGE = C::NSTAGE, NQ = D / 8;
  constexpr int BAR_KTAIL = 1; /* a named barrier among the 256 consumers */
  ATTN_DYNAMIC_SMEM(unsigned char, raw);
  T *sQ = reinterpret_cast<T *>(attn_align_smem_1024(raw)); /* the swizzle's 1024-byte groups */
  T *sdO = sQ + BQ * D;
  T *sK = sdO + BQ * D;          /* key tile kt in stage kt % NSTAGE */
  T *sV = sK + NSTAGE * BK * D;  /* likewise */
  uint64_t *full_q = reinterpret_cast<uint64_t *>(sV + NSTAGE * BK * D); /* mbarriers: 8-byte aligned */
  uint64_t *full = full_q + 1, *empty = full + NSTAGE;
  int *sKeep = reinterpret_cast<int *>(empty + NSTAGE); /* [stage][BK] */
  int *sHidden = sKeep + NSTAGE * BK;                   /* [stage] */

  AttnSeg g;
  int tile;
  if (!attn_find_tile(a, BQ, &g, &tile))
    return;
  const int h = blockIdx.y, tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int i0 = tile * BQ;
  const int64_t base = (int64_t)g.start * a.ld + (int64_t)h * D;
  /* causal: keys past this tile's last query are masked for all of it */
  const int jend = attn_key_end(a, g, i0, BQ);
  const int nkt = (jend + BK - 1) / BK;

  bwd_ws_init_barriers<NSTAGE>(full_q, full, empty);

  if (warp < 4) { /* the producer warpgroup; its first warp loads */
    attn_setmaxnreg_dec<BwdWsRegs::producer>();
    if (warp == 0) {
      if (lane == 0) /* Q, dO: full_q counts one arrival */
        bwd_ws_load_pair<T, D, BQ>(0, full_q, sQ, &maps.q, sdO, &maps.dout, h, g.start + i0);
      for (int kt = 0; kt < nkt; kt++) {
        const int st = kt % NSTAGE, j0 = kt * BK;
        if (kt >= NSTAGE) /* the consumers' release of this stage's previous tile */
          attn_mbar_wait(&empty[st], ((kt / NSTAGE) - 1) & 1);
        int hid = 0, kept = 0;
        attn_bwd_mark_keys<BK, 32>(g, j0, lane, sKeep + st * BK, &hid, &kept);
        for (int o = 16; o > 0; o >>= 1)
          hid |= __shfl_xor_sync(0xffffffffu, hid, o);
        if (lane == 0)
          sHidden[st] = hid;
        bwd_ws_load_pair<T, D, BK>(lane, &full[st], sK + st * BK * D, &maps.k, sV + st * BK * D, &maps.v, h,
                                   g.start + j0);
      }
    }
    return;
  }

  attn_setmaxnreg_inc<BwdWsRegs::consumer>();
  const int ct = tid - 128, cwarp = warp - 4, gr = lane >> 2, tq = lane & 3, w16 = cwarp * 16;
  float lse2[2], dsum[2];
  bool live[2];
  attn_bwd_row_stats(a, g, h, i0 + w16 + gr, live, lse2, dsum);
  const BwdDqDescs dd = bwd_dq_descs<T, BK>(sQ, sdO, sK, sV, cwarp >> 2); /* a stage: BK D / 8 */
  constexpr uint64_t STAGE = BK * D / 8;

  float dq[1][NQ][4];
#pragma unroll
  for (int j = 0; j < NQ; j++)
#pragma unroll
    for (int e = 0; e < 4; e++)
      dq[0][j][e] = 0.0f;

  attn_mbar_wait(full_q, 0);
  for (int kt = 0; kt < nkt; kt++) {
    const int st = kt % NSTAGE, j0 = kt * BK;
    attn_mbar_wait(&full[st], (kt / NSTAGE) & 1);
    const int valid = g.n - j0; /* rows of the tile at or past this are not the sequence's */
    if (valid < BK) /* the last tile, once per CTA */
      bwd_ws_zero_rows<T, D, BK>(sK + st * BK * D, sV + st * BK * D, valid, ct, BAR_KTAIL);
    bwd_dq_tile<T, D, BQ, BK>(a, dd.q, dd.dout, dd.k_k + st * STAGE, dd.k_mn + st * STAGE, dd.v + st * STAGE,
                              sKeep + st * BK, lse2, dsum, i0, j0, w16, gr, tq, sHidden[st] != 0, dq);
    if (lane == 0) /* after the tile's last wgmma wait (warp-wide): the warp is done with the stage */
      attn_mbar_arrive(&empty[st]);
  }
  bwd_store_dq<T, D>(a, g, base, i0 + w16 + gr, tq, live, dq);
#else
  (void)a;
  (void)maps; /* no wgmma in this image: attn_hopper_fwd_runs says so before any launch */
#endif
}

/* The backward's four tensor maps: Q and dO in boxes of qrows rows, K and
 * V in boxes of krows (64 columns each). */
static inline int bwd_tma_maps(AttnBwdTmaMaps *m, const mb_attn_desc *d, const AttnArgs &a, int qrows, int krows) {
  const int64_t tokens = (int64_t)d->batch * d->seqlen;
  const int D = d->head_dim;
  MB_TRY(attn_tma_map_rows(&m->q, a.q, 2, tokens, d->heads, D, a.ld, qrows, "q"));
  MB_TRY(attn_tma_map_rows(&m->dout, a.dout, 2, tokens, d->heads, D, a.ld, qrows, "dout"));
  MB_TRY(attn_tma_map_rows(&m->k, a.k, 2, tokens, d->heads, D, a.ld, krows, "k"));
  return attn_tma_map_rows(&m->v, a.v, 2, tokens, d->heads, D, a.ld, krows, "v");
}

/* A warp-specialised kernel's launch: its shared memory, one CTA per
 * `rows` tokens of each sequence and head. */
template <typename K>
static inline int bwd_ws_launch_one(K *kernel, const char *name, const mb_attn_desc *d, const AttnArgs &a, int rows,
                                    int nt, size_t smem, const AttnBwdTmaMaps &maps, cudaStream_t s) {
  MB_TRY((attn_reg_split_check<BwdWsRegs>(kernel, name)));
  MB_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  ATTN_LAUNCH(kernel, attn_tile_grid(d, rows), nt, smem, s, a, maps);
  ATTN_LAUNCH_CHECK(name);
  return MB_OK;
}

/* A dK/dV kernel that makes dQ itself (DQ: atomics or bulk reduces), then
 * dq from the accumulator. */
template <typename T, int D, int DQ, int BQ = 64>
static inline int bwd_ws_launch_fused(const mb_attn_desc *d, const AttnArgs &a, const AttnBwdTmaMaps &maps,
                                      const char *name, cudaStream_t s) {
  typedef HopperBwdWsCfg<D, BQ> C;
  MB_TRY(bwd_ws_launch_one(attn_hopper_bwd_ws_kernel<T, D, DQ, BQ>, name, d, a, C::BKV, C::NT,
                           C::template smem_bytes<T, DQ>(), maps, s));
  return attn_launch_dq_convert<T>(d, a, s);
}

/* Tilings 3 and 4 (dQ by bulk reduces, in key-tile order when det), query
 * tiles of BQ rows: the tensor maps with their boxes, then the kernel. */
template <typename T, int D, int BQ>
static inline int bwd_ws_launch_bulk(const mb_attn_desc *d, const AttnArgs &a, bool det, cudaStream_t s) {
  typedef HopperBwdWsCfg<D, BQ> C;
  AttnBwdTmaMaps maps;
  MB_TRY(bwd_tma_maps(&maps, d, a, C::BQ, C::BKV));
  MB_TRY(attn_tma_map_rows(&maps.dq, a.dq_accum, 4, attn_tokens(d), d->heads, D, a.ld, C::BQ, "dq_accum"));
  if (det)
    return bwd_ws_launch_fused<T, D, BWD_DQ_BULK_ORDERED, BQ>(
        d, a, maps, BQ == 128 ? "attn_hopper_bwd_ws_kernel (128-query tiles, ordered bulk dQ)"
                              : "attn_hopper_bwd_ws_kernel (ordered bulk dQ)", s);
  return bwd_ws_launch_fused<T, D, BWD_DQ_BULK, BQ>(
      d, a, maps, BQ == 128 ? "attn_hopper_bwd_ws_kernel (128-query tiles, bulk dQ)"
                            : "attn_hopper_bwd_ws_kernel (bulk dQ)", s);
}

/* Tilings 2 to 4: tiling 2's dK/dV kernel, then its dQ kernel, each with
 * its boxes, or in the fast mode (det false) the dK/dV kernel adding dQ
 * into the accumulator itself by atomics; tiling 3's dK/dV kernel adds
 * dQ by bulk reduces, in key-tile order when det; tiling 4 is tiling 3
 * with 128-query tiles at head_dim 64 (tiling 3 at 128, where the
 * accumulators of 128 queries do not fit the consumers' registers). */
template <typename T, int D>
int hopper_bwd_ws_launch(const mb_attn_desc *d, const AttnArgs &a, int tiling, bool det, cudaStream_t s) {
  typedef HopperBwdWsCfg<D> C;
  typedef HopperDqWsCfg<D> Q;
  if constexpr (D == 64)
    if (tiling == 4)
      return bwd_ws_launch_bulk<T, D, 128>(d, a, det, s);
  if (tiling >= 3)
    return bwd_ws_launch_bulk<T, D, 64>(d, a, det, s);
  AttnBwdTmaMaps maps;
  MB_TRY(bwd_tma_maps(&maps, d, a, C::BQ, C::BKV));
  if (!det)
    return bwd_ws_launch_fused<T, D, BWD_DQ_ATOMIC>(d, a, maps, "attn_hopper_bwd_ws_kernel (fast dQ)", s);
  MB_TRY(bwd_ws_launch_one(attn_hopper_bwd_ws_kernel<T, D, BWD_DQ_KERNEL>, "attn_hopper_bwd_ws_kernel", d, a, C::BKV,
                           C::NT, C::template smem_bytes<T, BWD_DQ_KERNEL>(), maps, s));
  MB_TRY(bwd_tma_maps(&maps, d, a, Q::BQ, Q::BK));
  return bwd_ws_launch_one(attn_hopper_dq_ws_kernel<T, D>, "attn_hopper_dq_ws_kernel", d, a, Q::BQ, Q::NT,
                           Q::template smem_bytes<T>(), maps, s);
}

template <typename T, int D>
int hopper_bwd_launch(const mb_attn_desc *d, AttnArgs a, int tiling, bool det, cudaStream_t s) {
  typedef HopperBwdCfg<D> C;
  det = det || tiling < 2; /* tiling 1: dq from the dQ kernel, summed in order, in either mode */
  if (det && tiling < 3)
    a.dq_accum = NULL; /* no accumulator to zero: dq from a dQ kernel */
  MB_TRY(attn_launch_bwd_prep<T>(a, s));
  if (tiling >= 2) {
    MB_TRY((hopper_bwd_ws_launch<T, D>(d, a, tiling, det, s)));
  } else {
    const size_t smem = C::template smem_bytes<T>();
    MB_CUDA_TRY(cudaFuncSetAttribute(attn_hopper_bwd_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     (int)smem));
    auto *kernel = attn_hopper_bwd_kernel<T, D>;
    ATTN_LAUNCH(kernel, attn_tile_grid(d, C::BKV), C::NT, smem, s, a);
    ATTN_LAUNCH_CHECK("attn_hopper_bwd_kernel");
    typedef HopperDqCfg<D> Q;
    MB_CUDA_TRY(cudaFuncSetAttribute(attn_hopper_dq_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     (int)Q::template smem_bytes<T>()));
    if (Q::MIN_CTAS > 1) /* the carveout that fits them (a hint the driver may otherwise size for one) */
      MB_CUDA_TRY(cudaFuncSetAttribute(attn_hopper_dq_kernel<T, D>, cudaFuncAttributePreferredSharedMemoryCarveout,
                                       (int)cudaSharedmemCarveoutMaxShared));
    auto *dq_kernel = attn_hopper_dq_kernel<T, D>;
    ATTN_LAUNCH(dq_kernel, attn_tile_grid(d, Q::BQ), Q::NT, Q::template smem_bytes<T>(), s, a);
    ATTN_LAUNCH_CHECK("attn_hopper_dq_kernel");
  }
  MB_TRY(attn_launch_fill_tail<T>((T *)a.dq, a.ld, a, 0.0f, s));
  MB_TRY(attn_launch_fill_tail<T>((T *)a.dk, a.ld, a, 0.0f, s));
  MB_TRY(attn_launch_fill_tail<T>((T *)a.dv, a.ld, a, 0.0f, s));
  return MB_OK;
}

} // namespace

int attn_hopper_bwd(const mb_attn_desc *d, mb_dtype dt, int tiling, bool det, const void *q, const void *k,
                    const void *v, const void *out, const float *lse, const void *dout, void *dq, void *dk, void *dv,
                    void *ws, size_t ws_bytes, cudaStream_t s) {
  int ok = 0;
  MB_TRY(attn_hopper_fwd_runs(&ok)); /* the same condition: sm_90 and an sm_90a image */
  if (!ok)
    return MB_ERR(MB_EUNSUPPORTED, "cuda flash attention backward: tilings 1-4 (wgmma) need an sm_90 GPU and a build "
                                   "for sm_90a (MAMBERT_CUDA_ARCHS)");
  if (attn_tokens(d) == 0)
    return MB_OK;
  AttnArgs a = attn_bwd_args(d, q, k, v, out, lse, dout, dq, dk, dv, ws);
  (void)ws_bytes; /* checked by the dispatcher */
  if (dt == MB_BF16 && d->head_dim == 64)
    return hopper_bwd_launch<attn_bf16, 64>(d, a, tiling, det, s);
  if (dt == MB_BF16 && d->head_dim == 128)
    return hopper_bwd_launch<attn_bf16, 128>(d, a, tiling, det, s);
  if (dt == MB_F16 && d->head_dim == 64)
    return hopper_bwd_launch<attn_f16, 64>(d, a, tiling, det, s);
  if (dt == MB_F16 && d->head_dim == 128)
    return hopper_bwd_launch<attn_f16, 128>(d, a, tiling, det, s);
  return MB_ERR(MB_EUNSUPPORTED, "cuda flash attention backward (wgmma): no kernel for %s with head_dim %d",
                mb_dtype_name(dt), d->head_dim);
}
