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
 *     Q_{i+1} and dO_{i+1} are fetched (cp.async) during phase 3.
 *  3. attn_dq_convert: dq = scale * accumulator, rounded to T.
 * dK = scale * dS^T Q is scaled once at the end. Why atomics for dQ: every
 * key tile adds to every query row it sees; a separate dQ pass (a CTA per
 * query tile) would recompute S and dP, 7 tile products per (i, j) instead
 * of 5 (+40% FLOPs); FlashAttention-2 makes the same choice.
 * Two modes (mb_cuda_attn_set_deterministic):
 *  - deterministic (the default, like the rest of the CUDA backend): each
 *    dQ term is added as a 64-bit fixed-point integer in units of 2^-32
 *    (integer addition does not depend on the order, so dq is the same bits
 *    on every run; the rounding, 2^-33 per term, is far below bf16's and
 *    f16's). A term that is not finite or exceeds 2^30 in magnitude sets a
 *    flag instead, and dq comes out NaN, so a loss scaler still sees the
 *    overflow;
 *  - fast: f32 atomic adds (float2 adds on sm_90), FlashAttention-2's
 *    choice: dq's last bits then depend on the order of the adds.
 */
#include "kernels/cuda/attention_common.cuh"

namespace {

template <int D> struct FlashBwdCfg {
  static constexpr int NW = 4, NT = 128, BK = 64, BQ = 64;
  static constexpr int LDS = D + 8;  /* Q, dO, K, V rows: +16 bytes */
  static constexpr int LDP = BK + 8; /* P, dS rows */
  template <typename T> static constexpr size_t smem_bytes() {
    return (size_t)(2 * BK + 2 * BQ) * LDS * sizeof(T) + (size_t)2 * BQ * LDP * sizeof(T) + BK * sizeof(int);
  }
};

/* One dQ term into the accumulator (see the top of the file). */
#define ATTN_FIXED_ONE 4294967296.0f /* 2^32 */
#define ATTN_FIXED_MAX 1073741824.0f /* 2^30 */
template <bool DET>
__device__ __forceinline__ void dq_add2(unsigned long long *fixed, int *flag, float *accum, int64_t idx, float x0,
                                        float x1) {
  if (DET) {
    if (!(fabsf(x0) <= ATTN_FIXED_MAX && fabsf(x1) <= ATTN_FIXED_MAX)) { /* NaN too */
      atomicOr(flag, 1);
      return;
    }
    atomicAdd(fixed + idx, (unsigned long long)__float2ll_rn(x0 * ATTN_FIXED_ONE));
    atomicAdd(fixed + idx + 1, (unsigned long long)__float2ll_rn(x1 * ATTN_FIXED_ONE));
  } else {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    atomicAdd(reinterpret_cast<float2 *>(accum + idx), make_float2(x0, x1));
#else
    atomicAdd(accum + idx, x0);
    atomicAdd(accum + idx + 1, x1);
#endif
  }
}

template <typename T, int D, bool DET>
__global__ void __launch_bounds__(FlashBwdCfg<D>::NT) attn_flash_bwd_kernel(AttnArgs a) {
  typedef FlashBwdCfg<D> C;
  constexpr int NT = C::NT, BK = C::BK, BQ = C::BQ, LDS = C::LDS, LDP = C::LDP;
  static_assert(BQ == 16 * C::NW && BK == 16 * C::NW, "each warp owns 16 rows in every phase");
  constexpr int NS = BK / 8; /* n8 tiles of S and dP per warp (16 rows x BK keys) */
  constexpr int NO = D / 8;  /* n8 tiles of dK, dV per warp (16 keys x D) */
  ATTN_DYNAMIC_SMEM(T, sK);
  T *sV = sK + BK * LDS;
  T *sQ = sV + BK * LDS;
  T *sdO = sQ + BQ * LDS;
  T *sP = sdO + BQ * LDS;
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
  for (int c = tid; c < BK; c += NT) {
    const int keep = j0 + c < g.n && (!g.mask || g.mask[j0 + c] != 0);
    sKeep[c] = keep;
    hidden |= !keep;
    kept |= keep;
  }
  kept = __syncthreads_or(kept);
  hidden = __syncthreads_or(hidden);
  if (!kept) {
    for (int i = tid; i < BK * D; i += NT) {
      const int r = i / D, e = i % D;
      if (j0 + r < g.n) {
        AttnType<T>::store((T *)a.dk, base + (int64_t)(j0 + r) * a.ld + e, 0.0f);
        AttnType<T>::store((T *)a.dv, base + (int64_t)(j0 + r) * a.ld + e, 0.0f);
      }
    }
    return;
  }

  const int istart = a.causal ? j0 / BQ * BQ : 0; /* causal: queries before j0 see none of these keys */
  attn_load_rows<T, D, BK, NT>(sK, LDS, Kg, a.ld, j0, g.n);
  attn_load_rows<T, D, BK, NT>(sV, LDS, Vg, a.ld, j0, g.n);
  attn_load_rows<T, D, BQ, NT>(sQ, LDS, Qg, a.ld, istart, g.n);
  attn_load_rows<T, D, BQ, NT>(sdO, LDS, dOg, a.ld, istart, g.n);
  attn_cp_async_commit();

  float dk[NO][4], dv[NO][4];
#pragma unroll
  for (int j = 0; j < NO; j++)
#pragma unroll
    for (int e = 0; e < 4; e++)
      dk[j][e] = dv[j][e] = 0.0f;

  for (int i0 = istart; i0 < g.n; i0 += BQ) {
    /* This thread's two query rows in phases 1 and 3, their log-sum-exp
     * (log2 units) and D. Padded rows and rows past the end get lse = +inf,
     * so P = 0 there. */
    float lse2[2], dsum[2];
    bool live[2];
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
      const int r = i0 + w16 + gr + hr * 8;
      live[hr] = r < g.n && (!g.mask || g.mask[r] != 0);
      const int64_t lr = (int64_t)(g.start + r) * a.heads + h;
      lse2[hr] = live[hr] ? a.lse[lr] * ATTN_LOG2E : INFINITY;
      dsum[hr] = live[hr] ? a.dsum[lr] : 0.0f;
    }
    attn_cp_async_wait_all(); /* Q_i, dO_i (and K, V) */
    __syncthreads();

    /* ---- phase 1: S and dP for query rows w16.. x all BK keys ---- */
    float s[NS][4], dp[NS][4];
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
    const bool need_mask = hidden || (a.causal && j0 + BK - 1 > i0 + w16);
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
    __syncthreads(); /* every warp is done with Q_i and dO_i */
    if (i0 + BQ < g.n) {
      attn_load_rows<T, D, BQ, NT>(sQ, LDS, Qg, a.ld, i0 + BQ, g.n);
      attn_load_rows<T, D, BQ, NT>(sdO, LDS, dOg, a.ld, i0 + BQ, g.n);
      attn_cp_async_commit();
    }

    /* ---- phase 3: dQ_i += dS K_j for query rows w16.., 64 dims at a time ---- */
#pragma unroll
    for (int d0 = 0; d0 < D; d0 += 64) {
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
          dq_add2<DET>(a.dq_fixed, a.dq_flag, a.dq_accum, idx + j * 8, dq[j][2 * hr], dq[j][2 * hr + 1]);
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

/* dq = scale * accumulator, for every token (the accumulator of padded rows
 * and the varlen tail is 0); NaN everywhere if a fixed-point term overflowed. */
template <typename T, bool DET> __global__ void attn_dq_convert(T *dq, AttnArgs a, int64_t n) {
  const bool bad = DET && *a.dq_flag;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)blockDim.x * gridDim.x) {
    float x;
    if (DET)
      x = bad ? NAN : (float)((double)(long long)a.dq_fixed[i] * (1.0 / 4294967296.0) * a.scale);
    else
      x = a.scale * a.dq_accum[i];
    AttnType<T>::store(dq, i, x);
  }
}

template <typename T, int D, bool DET> int flash_bwd_launch(const mb_attn_desc *d, AttnArgs a, cudaStream_t s) {
  typedef FlashBwdCfg<D> C;
  if (DET)
    a.dq_accum = NULL; /* the workspace's first part holds the fixed-point sums */
  else
    a.dq_fixed = NULL, a.dq_flag = NULL;
  MB_TRY(attn_launch_bwd_prep<T>(a, s));
  const size_t smem = C::template smem_bytes<T>();
  /* per device, so on every launch (cheap; allowed during graph capture) */
  MB_CUDA_TRY(
      cudaFuncSetAttribute(attn_flash_bwd_kernel<T, D, DET>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  auto *kernel = attn_flash_bwd_kernel<T, D, DET>;
  ATTN_LAUNCH(kernel, attn_tile_grid(d, C::BK), C::NT, smem, s, a);
  ATTN_LAUNCH_CHECK("attn_flash_bwd_kernel");
  const int64_t n = (int64_t)attn_tokens(d) * a.ld;
  const unsigned blocks = (unsigned)((n + 255) / 256 < 65536 ? (n + 255) / 256 : 65536);
  auto *convert = attn_dq_convert<T, DET>;
  ATTN_LAUNCH(convert, blocks, 256, 0, s, (T *)a.dq, a, n);
  ATTN_LAUNCH_CHECK("attn_dq_convert");
  MB_TRY(attn_launch_fill_tail<T>((T *)a.dk, a.ld, a, 0.0f, s));
  MB_TRY(attn_launch_fill_tail<T>((T *)a.dv, a.ld, a, 0.0f, s));
  return MB_OK;
}

} // namespace

static bool flash_bwd_deterministic = true;

int mb_cuda_attn_set_deterministic(int on) {
  flash_bwd_deterministic = on != 0;
  return MB_OK;
}

int attn_flash_bwd(const mb_attn_desc *d, mb_dtype dt, const void *q, const void *k, const void *v, const void *out,
                   const float *lse, const void *dout, void *dq, void *dk, void *dv, void *ws, size_t ws_bytes,
                   cudaStream_t s) {
  if (attn_tokens(d) == 0)
    return MB_OK;
  AttnArgs a = attn_args_from_desc(d);
  a.q = q;
  a.k = k;
  a.v = v;
  a.out = out;
  a.lse = (float *)lse; /* read only in the backward */
  a.dout = dout;
  a.dq = dq;
  a.dk = dk;
  a.dv = dv;
  a.dq_accum = (float *)ws;
  a.dq_fixed = (unsigned long long *)ws;
  a.dsum = (float *)((unsigned char *)ws + attn_ws_dq_bytes(d));
  a.dq_flag = (int *)((unsigned char *)ws + attn_ws_dq_bytes(d) + attn_ws_dsum_bytes(d));
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
