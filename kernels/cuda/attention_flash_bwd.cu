/* attention_flash_bwd.cu: the FlashAttention-2 backward on tensor cores
 * (sm_80+), bf16 or f16, f32 accumulation, head_dim 64 or 128.
 *
 * Three launches:
 *  1. attn_bwd_prep: D = rowsum(dO * O) per (token, head), dQ accumulator = 0;
 *  2. attn_flash_bwd_kernel: one CTA of 4 warps per (BK = 64 keys, head,
 *     sequence). It keeps K_j, V_j in shared memory and dK_j, dV_j in
 *     registers, and sweeps the query tiles i (BQ = 64; causal: from the
 *     diagonal on). Per tile, with warp w:
 *       phase 1, query rows 16w..: S = Q_i K_j^T, dP = dO_i V_j^T,
 *                P = exp(scale S - lse), dS = P (dP - D); P and dS go to
 *                shared memory (rounded to T);
 *       phase 2, key rows 16w..:   dV_j += P^T dO_i, dK_j += dS^T Q_i
 *                (P^T and dS^T read with ldmatrix.trans);
 *       phase 3, query rows 16w..: dQ_i += dS K_j, added to the f32
 *                accumulator with atomics (float2 atomics on sm_90).
 *     Q_{i+1} and dO_{i+1} are fetched (cp.async) during phase 3; at
 *     D = 64 they go into a second stage and are fetched a tile ahead.
 *  3. attn_dq_convert: dq = scale * accumulator, rounded to T.
 * dK = scale * dS^T Q is scaled once at the end.
 * Two modes (mb_cuda_attn_set_deterministic):
 *  - fast: as above, FlashAttention-2's choice: 5 tile products per (i, j),
 *    dq's last bits depend on the order of the atomic adds;
 *  - deterministic (the default, like the rest of the CUDA backend): the
 *    main kernel skips phase 3, and attn_flash_bwd_dq_kernel, a CTA per
 *    query tile, recomputes S and dP and sums dQ_i over the key tiles in
 *    order in registers: 7 tile products per (i, j) (+40% FLOPs) but no
 *    atomics, the same bits on every run, f32 range. It replaced 64-bit
 *    fixed-point atomics, which on an H200 made the backward 1.8-1.9x
 *    slower than the fast mode (bench/results/h200-2026-11-28).
 */
#include "kernels/cuda/attention_common.cuh"

namespace {

template <int D> struct FlashBwdCfg {
  static constexpr int NW = 4, NT = 128, BK = 64, BQ = 64;
  static constexpr int LDS = D + 8;  /* Q, dO, K, V rows: +16 bytes */
  static constexpr int LDP = BK + 8; /* P, dS rows */
  /* Stages of Q and dO in the main kernel: at D = 64 two, so tile i + 1
   * arrives while tile i is computed (73 KB: the two CTAs per SM that the
   * registers allow still fit); at D = 128 a second stage (+35 KB) would
   * leave one CTA per SM, and the kernel keeps one. */
  static constexpr int QSTAGES = D == 64 ? 2 : 1;
  /* Stages of K and V in the dQ pass, likewise: at D = 64 two (65 KB:
   * three CTAs per SM on Hopper, as the registers allow; two on an A100,
   * which fitted three of the one-stage 47 KB); at D = 128 one (a second
   * would exceed the 99 KB a CTA may have on sm_86 / sm_89). */
  static constexpr int KSTAGES = D == 64 ? 2 : 1;
  template <typename T> static constexpr size_t smem_bytes() {
    return (size_t)(2 * BK + 2 * QSTAGES * BQ) * LDS * sizeof(T) + (size_t)2 * BQ * LDP * sizeof(T) +
           BK * sizeof(int);
  }
  /* the dQ pass: Q, dO, KSTAGES stages of K and V, and dS (no P) */
  template <typename T> static constexpr size_t dq_smem_bytes() {
    return (size_t)(2 * KSTAGES * BK + 2 * BQ) * LDS * sizeof(T) + (size_t)BQ * LDP * sizeof(T) + BK * sizeof(int);
  }
};

/* Both backward kernels' first step, for warp rows w16.. of query tile i0
 * and all BK keys of key tile j0 (Q, dO, K, V in shared memory): S = Q K^T
 * and dP = dO V^T on tensor cores, then P = exp(scale S - lse) (masked keys
 * and, causal, keys after the row: 0) into s and dS = P (dP - D) into dp.
 * One copy, so the dQ pass recomputes the main kernel's dS bit for bit. */
template <typename T, int D, int BK, int LDS>
__device__ __forceinline__ void bwd_p_ds(const AttnArgs &a, const T *sQ, const T *sdO, const T *sK, const T *sV,
                                         const int *sKeep, int i0, int j0, int w16, int lane, bool need_mask,
                                         const float (&lse2)[2], const float (&dsum)[2], float (&s)[BK / 8][4],
                                         float (&dp)[BK / 8][4]) {
  constexpr int NS = BK / 8;
  const int gr = lane >> 2, tq = lane & 3;
  const int row_a = (lane & 7) + ((lane >> 3) & 1) * 8, col_a = (lane >> 4) * 8;
  const int row_b = (lane & 7) + (lane >> 4) * 8, col_b = ((lane >> 3) & 1) * 8;
#pragma unroll
  for (int j = 0; j < NS; j++)
#pragma unroll
    for (int e = 0; e < 4; e++)
      s[j][e] = dp[j][e] = 0.0f;
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++) {
    uint32_t qa[4], doa[4];
    attn_ldsm_x4(qa, sQ + (w16 + row_a) * LDS + kk * 16 + col_a);
    attn_ldsm_x4(doa, sdO + (w16 + row_a) * LDS + kk * 16 + col_a);
#pragma unroll
    for (int nj = 0; nj < BK / 16; nj++) {
      uint32_t kb[4], vb[4];
      attn_ldsm_x4(kb, sK + (nj * 16 + row_b) * LDS + kk * 16 + col_b);
      attn_ldsm_x4(vb, sV + (nj * 16 + row_b) * LDS + kk * 16 + col_b);
      attn_mma16816<T>(s[2 * nj], qa, kb[0], kb[1]);
      attn_mma16816<T>(s[2 * nj + 1], qa, kb[2], kb[3]);
      attn_mma16816<T>(dp[2 * nj], doa, vb[0], vb[1]);
      attn_mma16816<T>(dp[2 * nj + 1], doa, vb[2], vb[3]);
    }
  }
#pragma unroll
  for (int nj = 0; nj < NS; nj++)
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int hr = e >> 1;
      float p = attn_exp2(fmaf(s[nj][e], a.scale_log2, -lse2[hr]));
      if (need_mask) {
        const int c = j0 + nj * 8 + 2 * tq + (e & 1), r = i0 + w16 + gr + hr * 8;
        if (!sKeep[c - j0] || (a.causal && c > r))
          p = 0.0f;
      }
      s[nj][e] = p;                           /* P */
      dp[nj][e] = p * (dp[nj][e] - dsum[hr]); /* dS */
    }
}

template <typename T, int D, bool DET>
__global__ void __launch_bounds__(FlashBwdCfg<D>::NT) attn_flash_bwd_kernel(AttnArgs a) {
  typedef FlashBwdCfg<D> C;
  constexpr int NT = C::NT, BK = C::BK, BQ = C::BQ, LDS = C::LDS, LDP = C::LDP, QSTAGES = C::QSTAGES;
  static_assert(BQ == 16 * C::NW && BK == 16 * C::NW, "each warp owns 16 rows in every phase");
  constexpr int NS = BK / 8; /* n8 tiles of S and dP per warp (16 rows x BK keys) */
  constexpr int NO = D / 8;  /* n8 tiles of dK, dV per warp (16 keys x D) */
  ATTN_DYNAMIC_SMEM(T, sK);
  T *sV = sK + BK * LDS;
  T *sQ0 = sV + BK * LDS;           /* QSTAGES stages of Q_i ... */
  T *sdO0 = sQ0 + QSTAGES * BQ * LDS; /* ... and of dO_i: query tile number it in stage it % QSTAGES */
  T *sP = sdO0 + QSTAGES * BQ * LDS;
  T *sdS = sP + BQ * LDP;
  int *sKeep = reinterpret_cast<int *>(sdS + BQ * LDP);

  AttnSeg g;
  int tile;
  if (!attn_find_tile(a, BK, &g, &tile))
    return;
  const int h = blockIdx.y, tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int gr = lane >> 2, tq = lane & 3;
  const int j0 = tile * BK, w16 = warp * 16;
  const int64_t base = (int64_t)g.start * a.ld + (int64_t)h * D;
  const T *Qg = (const T *)a.q + base, *Kg = (const T *)a.k + base, *Vg = (const T *)a.v + base;
  const T *dOg = (const T *)a.dout + base;
  /* ldmatrix lane addresses (attention_common.cuh): (row_a, col_a) for A
   * fragments and .trans B fragments; (row_b, col_b) for non-trans B
   * fragments and .trans A fragments (A = M^T). */
  const int row_a = (lane & 7) + ((lane >> 3) & 1) * 8, col_a = (lane >> 4) * 8;
  const int row_b = (lane & 7) + (lane >> 4) * 8, col_b = ((lane >> 3) & 1) * 8;

  /* Which keys of the tile are real. A tile of padding only (right-padded
   * batches) has dK = dV = 0 and nothing else to do. */
  int hidden = 0, kept = 0;
  attn_bwd_mark_keys<BK, NT>(g, j0, tid, sKeep, &hidden, &kept);
  kept = __syncthreads_or(kept);
  hidden = __syncthreads_or(hidden);
  if (!kept) {
    attn_bwd_zero_dkdv<T, D, BK, NT>(a, g, base, j0);
    return;
  }

  const int istart = a.causal ? j0 / BQ * BQ : 0; /* causal: queries before j0 see none of these keys */
  attn_load_rows<T, D, BK, NT>(sK, LDS, Kg, a.ld, j0, g.n);
  attn_load_rows<T, D, BK, NT>(sV, LDS, Vg, a.ld, j0, g.n);
  attn_load_rows<T, D, BQ, NT>(sQ0, LDS, Qg, a.ld, istart, g.n);
  attn_load_rows<T, D, BQ, NT>(sdO0, LDS, dOg, a.ld, istart, g.n);
  attn_cp_async_commit();
  if (QSTAGES == 2) { /* query tile 1 in the other stage (an empty group when there is none) */
    if (istart + BQ < g.n) {
      attn_load_rows<T, D, BQ, NT>(sQ0 + BQ * LDS, LDS, Qg, a.ld, istart + BQ, g.n);
      attn_load_rows<T, D, BQ, NT>(sdO0 + BQ * LDS, LDS, dOg, a.ld, istart + BQ, g.n);
    }
    attn_cp_async_commit();
  }

  float dk[NO][4], dv[NO][4];
#pragma unroll
  for (int j = 0; j < NO; j++)
#pragma unroll
    for (int e = 0; e < 4; e++)
      dk[j][e] = dv[j][e] = 0.0f;

  for (int i0 = istart, it = 0; i0 < g.n; i0 += BQ, it++) {
    T *sQ = sQ0 + (it % QSTAGES) * BQ * LDS, *sdO = sdO0 + (it % QSTAGES) * BQ * LDS;
    /* This thread's two query rows in phases 1 and 3, their log-sum-exp
     * (log2 units) and D. Padded rows and rows past the end get lse = +inf,
     * so P = 0 there. */
    float lse2[2], dsum[2];
    bool live[2];
    attn_bwd_row_stats(a, g, h, i0 + w16 + gr, live, lse2, dsum);
    if (QSTAGES == 2)
      attn_cp_async_wait_group<1>(); /* Q_i, dO_i (and K, V); tile i + 1 may still be in flight */
    else
      attn_cp_async_wait_all(); /* Q_i, dO_i (and K, V) */
    __syncthreads();

    /* ---- phase 1: P and dS for query rows w16.. x all BK keys ---- */
    float s[NS][4], dp[NS][4];
    const bool need_mask = hidden || (a.causal && j0 + BK - 1 > i0 + w16);
    bwd_p_ds<T, D, BK, LDS>(a, sQ, sdO, sK, sV, sKeep, i0, j0, w16, lane, need_mask, lse2, dsum, s, dp);
#pragma unroll
    for (int nj = 0; nj < NS; nj++)
#pragma unroll
      for (int hr = 0; hr < 2; hr++) {
        const int off = (w16 + gr + hr * 8) * LDP + nj * 8 + 2 * tq;
        *reinterpret_cast<uint32_t *>(sP + off) = AttnType<T>::pack2(s[nj][2 * hr], s[nj][2 * hr + 1]);
        *reinterpret_cast<uint32_t *>(sdS + off) = AttnType<T>::pack2(dp[nj][2 * hr], dp[nj][2 * hr + 1]);
      }
    __syncthreads(); /* P, dS visible */

    /* ---- phase 2: dV += P^T dO, dK += dS^T Q for key rows w16.. ---- */
#pragma unroll
    for (int kk = 0; kk < BQ / 16; kk++) {
      uint32_t pa[4], dsa[4];
      attn_ldsm_x4_trans(pa, sP + (kk * 16 + row_b) * LDP + w16 + col_b);
      attn_ldsm_x4_trans(dsa, sdS + (kk * 16 + row_b) * LDP + w16 + col_b);
#pragma unroll
      for (int dj = 0; dj < D / 16; dj++) {
        uint32_t dob[4], qb[4];
        attn_ldsm_x4_trans(dob, sdO + (kk * 16 + row_a) * LDS + dj * 16 + col_a);
        attn_ldsm_x4_trans(qb, sQ + (kk * 16 + row_a) * LDS + dj * 16 + col_a);
        attn_mma16816<T>(dv[2 * dj], pa, dob[0], dob[1]);
        attn_mma16816<T>(dv[2 * dj + 1], pa, dob[2], dob[3]);
        attn_mma16816<T>(dk[2 * dj], dsa, qb[0], qb[1]);
        attn_mma16816<T>(dk[2 * dj + 1], dsa, qb[2], qb[3]);
      }
    }
    __syncthreads(); /* every warp is done with Q_i and dO_i: their stage takes tile i + QSTAGES */
    const int inext = i0 + QSTAGES * BQ;
    if (inext < g.n) {
      attn_load_rows<T, D, BQ, NT>(sQ, LDS, Qg, a.ld, inext, g.n);
      attn_load_rows<T, D, BQ, NT>(sdO, LDS, dOg, a.ld, inext, g.n);
    }
    attn_cp_async_commit(); /* one group per iteration (wait_group 1 counts on it) */

    /* ---- phase 3: dQ_i += dS K_j for query rows w16.., 64 dims at a time
     * (the fast mode's atomics; the deterministic mode has its own pass) ---- */
#pragma unroll
    for (int d0 = 0; d0 < (DET ? 0 : D); d0 += 64) {
      float dq[8][4];
#pragma unroll
      for (int j = 0; j < 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++)
          dq[j][e] = 0.0f;
#pragma unroll
      for (int kk = 0; kk < BK / 16; kk++) {
        uint32_t dsa[4];
        attn_ldsm_x4(dsa, sdS + (w16 + row_a) * LDP + kk * 16 + col_a);
#pragma unroll
        for (int dj = 0; dj < 4; dj++) {
          uint32_t kb[4];
          attn_ldsm_x4_trans(kb, sK + (kk * 16 + row_a) * LDS + d0 + dj * 16 + col_a);
          attn_mma16816<T>(dq[2 * dj], dsa, kb[0], kb[1]);
          attn_mma16816<T>(dq[2 * dj + 1], dsa, kb[2], kb[3]);
        }
      }
#pragma unroll
      for (int hr = 0; hr < 2; hr++) {
        if (!live[hr]) /* padded rows: dS = 0, nothing to add */
          continue;
        const int64_t idx = base + (int64_t)(i0 + w16 + gr + hr * 8) * a.ld + d0 + 2 * tq;
#pragma unroll
        for (int j = 0; j < 8; j++)
          attn_dq_add2(a.dq_accum, idx + j * 8, dq[j][2 * hr], dq[j][2 * hr + 1]);
      }
    }
    /* the next iteration's barrier orders these reads of sdS and sK before
     * phase 1 rewrites sdS */
  }

  attn_cp_async_wait_all(); /* nothing may land after the CTA is gone */

  /* dK = scale * dS^T Q, dV = P^T dO, for the keys of this tile */
#pragma unroll
  for (int hr = 0; hr < 2; hr++) {
    const int r = j0 + w16 + gr + hr * 8;
    if (r >= g.n)
      continue;
    T *dkrow = (T *)a.dk + base + (int64_t)r * a.ld, *dvrow = (T *)a.dv + base + (int64_t)r * a.ld;
#pragma unroll
    for (int j = 0; j < NO; j++) {
      *reinterpret_cast<uint32_t *>(dkrow + j * 8 + 2 * tq) =
          AttnType<T>::pack2(a.scale * dk[j][2 * hr], a.scale * dk[j][2 * hr + 1]);
      *reinterpret_cast<uint32_t *>(dvrow + j * 8 + 2 * tq) = AttnType<T>::pack2(dv[j][2 * hr], dv[j][2 * hr + 1]);
    }
  }
}

/* The deterministic mode's dQ pass: one CTA of 4 warps per (BQ = 64 query
 * rows, head, sequence) keeps Q_i, dO_i in shared memory and dQ_i in
 * registers, and sweeps the key tiles j (causal: up to the diagonal). Per
 * tile, warp w recomputes for its query rows 16w..: S = Q_i K_j^T,
 * dP = dO_i V_j^T, P = exp(scale S - lse), dS = P (dP - D), exactly as the
 * main kernel's phase 1 (the same products, so the same dS bits), then
 * dQ_i += dS K_j. No atomics: the sum runs over j in order, so dq is the
 * same bits on every run, in f32 without a range limit. 3 tile products
 * per (i, j) on top of the main kernel's 4 (it skips its phase 3). At
 * D = 64, K_j and V_j come through a two-stage ring a tile ahead (they were
 * loaded and waited for at the top of each tile, so every tile paid a
 * load's latency that only the SM's other CTAs could hide). */
template <typename T, int D>
__global__ void __launch_bounds__(FlashBwdCfg<D>::NT) attn_flash_bwd_dq_kernel(AttnArgs a) {
  typedef FlashBwdCfg<D> C;
  constexpr int NT = C::NT, BK = C::BK, BQ = C::BQ, LDS = C::LDS, LDP = C::LDP, KSTAGES = C::KSTAGES;
  constexpr int NS = BK / 8; /* n8 tiles of S and dP per warp (16 rows x BK keys) */
  constexpr int NQ = D / 8;  /* n8 tiles of dQ per warp (16 rows x D) */
  ATTN_DYNAMIC_SMEM(T, sQ);
  T *sdO = sQ + BQ * LDS;
  T *sK0 = sdO + BQ * LDS;           /* KSTAGES stages of K_j ... */
  T *sV0 = sK0 + KSTAGES * BK * LDS; /* ... and of V_j: key tile number kt in stage kt % KSTAGES */
  T *sdS = sV0 + KSTAGES * BK * LDS;
  int *sKeep = reinterpret_cast<int *>(sdS + BQ * LDP);

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
  const int row_a = (lane & 7) + ((lane >> 3) & 1) * 8, col_a = (lane >> 4) * 8;

  float lse2[2], dsum[2];
  bool live[2];
  attn_bwd_row_stats(a, g, h, i0 + w16 + gr, live, lse2, dsum);
  /* causal: keys past this tile's last query row are masked for all of it */
  const int jend = a.causal ? (i0 + BQ < g.n ? i0 + BQ : g.n) : g.n;
  attn_load_rows<T, D, BQ, NT>(sQ, LDS, Qg, a.ld, i0, g.n);
  attn_load_rows<T, D, BQ, NT>(sdO, LDS, dOg, a.ld, i0, g.n);
  attn_load_rows<T, D, BK, NT>(sK0, LDS, Kg, a.ld, 0, g.n);
  attn_load_rows<T, D, BK, NT>(sV0, LDS, Vg, a.ld, 0, g.n);
  attn_cp_async_commit();
  if (KSTAGES == 2) { /* key tile 1 (an empty group when there is none) */
    if (BK < jend) {
      attn_load_rows<T, D, BK, NT>(sK0 + BK * LDS, LDS, Kg, a.ld, BK, g.n);
      attn_load_rows<T, D, BK, NT>(sV0 + BK * LDS, LDS, Vg, a.ld, BK, g.n);
    }
    attn_cp_async_commit();
  }

  float dq[NQ][4];
#pragma unroll
  for (int j = 0; j < NQ; j++)
#pragma unroll
    for (int e = 0; e < 4; e++)
      dq[j][e] = 0.0f;

  for (int j0 = 0, kt = 0; j0 < jend; j0 += BK, kt++) {
    T *sK = sK0 + (kt % KSTAGES) * BK * LDS, *sV = sV0 + (kt % KSTAGES) * BK * LDS;
    int hidden = 0, kept = 0;
    attn_bwd_mark_keys<BK, NT>(g, j0, tid, sKeep, &hidden, &kept);
    attn_cp_async_wait_group<KSTAGES - 1>(); /* K_j, V_j (and Q_i, dO_i); tile j + 1 may still be in flight */
    kept = __syncthreads_or(kept); /* also publishes sKeep and every thread's copies */
    hidden = __syncthreads_or(hidden);
    if (kept) { /* a tile of padding keys only adds nothing */
      float s[NS][4], dp[NS][4];
      const bool need_mask = hidden || (a.causal && j0 + BK - 1 > i0 + w16);
      bwd_p_ds<T, D, BK, LDS>(a, sQ, sdO, sK, sV, sKeep, i0, j0, w16, lane, need_mask, lse2, dsum, s, dp);
      /* dS (rounded to T, as the main kernel's) through this warp's own rows
       * of shared memory, from the C-fragment layout to the A-fragment one */
#pragma unroll
      for (int nj = 0; nj < NS; nj++)
#pragma unroll
        for (int hr = 0; hr < 2; hr++) {
          const int off = (w16 + gr + hr * 8) * LDP + nj * 8 + 2 * tq;
          *reinterpret_cast<uint32_t *>(sdS + off) = AttnType<T>::pack2(dp[nj][2 * hr], dp[nj][2 * hr + 1]);
        }
      __syncthreads(); /* (a warp's own rows only, but `kept` is the same for the block) */
#pragma unroll
      for (int kk = 0; kk < BK / 16; kk++) {
        uint32_t dsa[4];
        attn_ldsm_x4(dsa, sdS + (w16 + row_a) * LDP + kk * 16 + col_a);
#pragma unroll
        for (int dj = 0; dj < D / 16; dj++) {
          uint32_t kb[4];
          attn_ldsm_x4_trans(kb, sK + (kk * 16 + row_a) * LDS + dj * 16 + col_a);
          attn_mma16816<T>(dq[2 * dj], dsa, kb[0], kb[1]);
          attn_mma16816<T>(dq[2 * dj + 1], dsa, kb[2], kb[3]);
        }
      }
    }
    __syncthreads(); /* every warp is done with K_j, V_j, sKeep and its sdS rows */
    if (j0 + KSTAGES * BK < jend) { /* their stage takes key tile j + KSTAGES */
      attn_load_rows<T, D, BK, NT>(sK, LDS, Kg, a.ld, j0 + KSTAGES * BK, g.n);
      attn_load_rows<T, D, BK, NT>(sV, LDS, Vg, a.ld, j0 + KSTAGES * BK, g.n);
    }
    attn_cp_async_commit(); /* one group per iteration (wait_group KSTAGES - 1 counts on it) */
  }
  attn_cp_async_wait_all(); /* nothing may land after the CTA is gone */

  /* dq = scale * dS K for this tile's rows (padded rows: 0) */
#pragma unroll
  for (int hr = 0; hr < 2; hr++) {
    const int r = i0 + w16 + gr + hr * 8;
    if (r >= g.n)
      continue;
    const float f = live[hr] ? a.scale : 0.0f;
    T *dqrow = (T *)a.dq + base + (int64_t)r * a.ld;
#pragma unroll
    for (int j = 0; j < NQ; j++)
      *reinterpret_cast<uint32_t *>(dqrow + j * 8 + 2 * tq) =
          AttnType<T>::pack2(f * dq[j][2 * hr], f * dq[j][2 * hr + 1]);
  }
}

template <typename T, int D, bool DET> int flash_bwd_launch(const mb_attn_desc *d, AttnArgs a, cudaStream_t s) {
  typedef FlashBwdCfg<D> C;
  if (DET)
    a.dq_accum = NULL; /* no accumulator: the dQ pass writes dq */
  MB_TRY(attn_launch_bwd_prep<T>(a, s));
  const size_t smem = C::template smem_bytes<T>();
  /* per device, so on every launch (cheap; allowed during graph capture) */
  MB_CUDA_TRY(
      cudaFuncSetAttribute(attn_flash_bwd_kernel<T, D, DET>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  auto *kernel = attn_flash_bwd_kernel<T, D, DET>;
  ATTN_LAUNCH(kernel, attn_tile_grid(d, C::BK), C::NT, smem, s, a);
  ATTN_LAUNCH_CHECK("attn_flash_bwd_kernel");
  if (DET) {
    MB_CUDA_TRY(cudaFuncSetAttribute(attn_flash_bwd_dq_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     (int)C::template dq_smem_bytes<T>()));
    auto *dq_kernel = attn_flash_bwd_dq_kernel<T, D>;
    ATTN_LAUNCH(dq_kernel, attn_tile_grid(d, C::BQ), C::NT, C::template dq_smem_bytes<T>(), s, a);
    ATTN_LAUNCH_CHECK("attn_flash_bwd_dq_kernel");
    MB_TRY(attn_launch_fill_tail<T>((T *)a.dq, a.ld, a, 0.0f, s));
  } else {
    MB_TRY(attn_launch_dq_convert<T>(d, a, s));
  }
  MB_TRY(attn_launch_fill_tail<T>((T *)a.dk, a.ld, a, 0.0f, s));
  MB_TRY(attn_launch_fill_tail<T>((T *)a.dv, a.ld, a, 0.0f, s));
  return MB_OK;
}

} // namespace

static bool flash_bwd_deterministic = true;
static int flash_bwd_variant = -1; /* -1: not chosen yet (attn_env_tiling); 0-4 */

int mb_cuda_attn_set_deterministic(int on) {
  flash_bwd_deterministic = on != 0;
  return MB_OK;
}

int mb_cuda_attn_set_flash_bwd_variant(int variant) {
  if (variant < -1 || variant > 4)
    return MB_ERR(MB_EINVAL, "cuda flash attention: backward variant %d (0-4; -1 the default)", variant);
  flash_bwd_variant = variant; /* -1: chosen again at the next call */
  return MB_OK;
}

int mb_cuda_attn_flash_bwd_variant_runs(int variant, int *ok) {
  if (!ok)
    return MB_ERR(MB_EINVAL, "cuda flash attention: NULL result pointer");
  *ok = 0;
  if (variant < 0 || variant > 4)
    return MB_ERR(MB_EINVAL, "cuda flash attention: backward variant %d (0-4)", variant);
  if (variant >= 1)
    return attn_hopper_fwd_runs(ok); /* the same condition: sm_90 and an sm_90a image */
  *ok = 1;
  return MB_OK;
}

int attn_flash_bwd(const mb_attn_desc *d, mb_dtype dt, const void *q, const void *k, const void *v, const void *out,
                   const float *lse, const void *dout, void *dq, void *dk, void *dv, void *ws, size_t ws_bytes,
                   cudaStream_t s) {
  if (flash_bwd_variant < 0) {
    int fwd = 0, bwd = 0;
    MB_TRY(attn_env_tiling(&fwd, &bwd));
    flash_bwd_variant = bwd;
  }
  if (flash_bwd_variant >= 1)
    return attn_hopper_bwd(d, dt, flash_bwd_variant, flash_bwd_deterministic, q, k, v, out, lse, dout, dq, dk, dv, ws,
                           ws_bytes, s);
  if (attn_tokens(d) == 0)
    return MB_OK;
  AttnArgs a = attn_bwd_args(d, q, k, v, out, lse, dout, dq, dk, dv, ws);
  (void)ws_bytes; /* checked by the dispatcher */
  const bool det = flash_bwd_deterministic;
#define ATTN_BWD_CASE(TT, DD)                                                                                          \
  return det ? flash_bwd_launch<TT, DD, true>(d, a, s) : flash_bwd_launch<TT, DD, false>(d, a, s)
  if (dt == MB_BF16 && d->head_dim == 64)
    ATTN_BWD_CASE(attn_bf16, 64);
  if (dt == MB_BF16 && d->head_dim == 128)
    ATTN_BWD_CASE(attn_bf16, 128);
  if (dt == MB_F16 && d->head_dim == 64)
    ATTN_BWD_CASE(attn_f16, 64);
  if (dt == MB_F16 && d->head_dim == 128)
    ATTN_BWD_CASE(attn_f16, 128);
#undef ATTN_BWD_CASE
  return MB_ERR(MB_EUNSUPPORTED, "cuda flash attention backward: no kernel for %s with head_dim %d (bf16/f16, 64/128)",
                mb_dtype_name(dt), d->head_dim);
}
