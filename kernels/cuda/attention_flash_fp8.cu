/* attention_flash_fp8.cu: the forward with e4m3 q, k, v on fp8 tensor cores
 * (mma.sync m16n8k32 e4m3, sm_89+), for evaluation; head_dim 64 or 128;
 * out is bf16, lse f32.
 *
 * Same structure as attention_flash_fwd.cu (one CTA per 128 queries, here
 * 8 warps of 16 rows, 64-key tiles, online softmax), with three differences:
 *  - scales: the real values are q8 * q_descale etc. (per-tensor, device
 *    scalars). S = (Q8 K8^T) * q_descale * k_descale * softmax scale, and
 *    O = (P8 V8) * v_descale / l.
 *  - P is quantised to e4m3 for the second product with a fixed scale of
 *    2^8, as FlashAttention-3 does: p = exp2(s' - m' + 8) lies in [0, 256]
 *    (e4m3's largest finite value is 448), so the largest weights keep their
 *    three mantissa bits and weights down to 2^-17 stay representable. The
 *    row sum l takes the same factor (summed in f32 before rounding), so
 *    O = P V / l is unchanged and lse = scale' * m + log(l) - 8 log(2).
 *  - the fp8 A fragment holds 4 consecutive k per register (k = 4t..4t+3),
 *    but S's C fragment gives each thread keys 2t, 2t+1 of each n8 tile.
 *    The k order of P V is free as long as P and V agree, so each thread
 *    packs the keys it has -- a0 = {keys 2t, 2t+1 of tile 0, keys 2t, 2t+1
 *    of tile 1} -- and V is stored transposed (V^T: rows = head dims, the
 *    k-major layout the fp8 B operand needs) with its keys permuted the
 *    same way (fp8_key_slot below). V comes in as it is (cp.async, with K)
 *    and is transposed in shared memory by fp8_vt_block: ldmatrix.trans
 *    moves byte pairs, byte permutes finish the job, and the permuted key
 *    order is exactly what that leaves in each lane.
 */
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/attention_fp8.cuh"

namespace {

/* 8 warps of 16 query rows: with two m-tiles per warp (as in the bf16
 * kernel) ptxas spills hundreds of bytes at head_dim 128 (ATTENTION.md). */
template <int D> struct FlashFp8Cfg {
  static constexpr int NW = 8, MT = 1, BK = 64;
  static constexpr int NT = 32 * NW, BQ = 16 * MT * NW;
  static constexpr int LDQ = D + 16;  /* Q, K, V rows in bytes: +16 bytes against bank conflicts */
  static constexpr int LDV = BK + 16; /* V^T rows (one per head dim) in bytes */
  static constexpr size_t smem_bytes() { return (size_t)(BQ + 2 * BK) * LDQ + (size_t)D * LDV + BK * sizeof(int); }
};


template <int D> __global__ void __launch_bounds__(FlashFp8Cfg<D>::NT) attn_flash_fp8_kernel(AttnArgs a) {
#if ATTN_HAS_E4M3_MMA
  typedef FlashFp8Cfg<D> C;
  constexpr int NT = C::NT, NW = C::NW, MT = C::MT, BQ = C::BQ, BK = C::BK, LDQ = C::LDQ, LDV = C::LDV;
  constexpr int NS = BK / 8, NO = D / 8;
  ATTN_DYNAMIC_SMEM(uint8_t, sQ);
  uint8_t *sK = sQ + BQ * LDQ;
  uint8_t *sV = sK + BK * LDQ; /* V as it comes, transposed into V^T after S */
  uint8_t *sVt = sV + BK * LDQ;
  int *sKeep = reinterpret_cast<int *>(sVt + D * LDV);

  AttnSeg g;
  int tile;
  if (!attn_find_tile(a, BQ, &g, &tile))
    return;
  const int h = blockIdx.y, tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int gr = lane >> 2, tq = lane & 3;
  const int q0 = tile * BQ, wrow = warp * 16 * MT;
  const int64_t base = (int64_t)g.start * a.ld + (int64_t)h * D;
  const uint8_t *Qg = (const uint8_t *)a.q + base, *Kg = (const uint8_t *)a.k + base;
  const uint8_t *Vg = (const uint8_t *)a.v + base;
  /* lane addresses in bytes: A fragments (row_a, 16 * col_a16), B fragments
   * with rows = n (row_b, 16 * col_b16); see attention_common.cuh with
   * 16-byte columns in place of 8 16-bit elements */
  const int row_a = (lane & 7) + ((lane >> 3) & 1) * 8, col_a = (lane >> 4) * 16;
  const int row_b = (lane & 7) + (lane >> 4) * 8, col_b = ((lane >> 3) & 1) * 16;
  const Fp8Scales sc = fp8_scales(a);

  const int kend = attn_key_end(a, g, q0, BQ);
  const int nkt = (kend + BK - 1) / BK;

  attn_load_rows<uint8_t, D, BQ, NT>(sQ, LDQ, Qg, a.ld, q0, g.n);
  attn_load_rows<uint8_t, D, BK, NT>(sK, LDQ, Kg, a.ld, 0, g.n);
  attn_load_rows<uint8_t, D, BK, NT>(sV, LDQ, Vg, a.ld, 0, g.n); /* rows past the end: zeros (not NaN) */
  attn_cp_async_commit();

  float o[MT][NO][4], m[MT][2], l[MT][2];
  attn_fwd_init<MT, NO>(o, m, l);

  for (int kt = 0; kt < nkt; kt++) {
    const int j0 = kt * BK;
    attn_cp_async_wait_all(); /* K_kt, V_kt */
    int hidden, kept;
    /* its barrier: K_kt, V_kt, sKeep visible; every warp is done with V^T_{kt-1} */
    attn_scan_key_tile<BK, NT>(g, j0, sKeep, &hidden, &kept);
    const bool skip = !kept;

    float s[MT][NS][4];
    if (!skip) {
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int j = 0; j < NS; j++)
#pragma unroll
          for (int e = 0; e < 4; e++)
            s[mt][j][e] = 0.0f;
#pragma unroll
      for (int kk = 0; kk < D / 32; kk++) {
        uint32_t qa[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
          attn_ldsm_x4(qa[mt], sQ + (wrow + mt * 16 + row_a) * LDQ + kk * 32 + col_a);
#pragma unroll
        for (int nj = 0; nj < BK / 16; nj++) {
          uint32_t kb[4];
          attn_ldsm_x4(kb, sK + (nj * 16 + row_b) * LDQ + kk * 32 + col_b);
#pragma unroll
          for (int mt = 0; mt < MT; mt++) {
            attn_mma16832_e4m3(s[mt][2 * nj], qa[mt], kb[0], kb[1]);
            attn_mma16832_e4m3(s[mt][2 * nj + 1], qa[mt], kb[2], kb[3]);
          }
        }
      }
      attn_mask_scores<MT, NS, BK>(s, a, g, sKeep, hidden, q0 + wrow, j0, gr, tq);
      attn_online_softmax<MT, NS, NO>(s, m, l, o, sc.qk_log2, 8.0f); /* P scaled by 2^8 */
    }

    /* V^T[dim][slot(key)] = V[key][dim], 4 slots per store (fp8_vt_block) */
    fp8_vt_tile<BK, D, NW>(sV, LDQ, warp, lane, [&](int dim, int slot, uint32_t w) {
      *reinterpret_cast<uint32_t *>(sVt + dim * LDV + slot) = w;
    });
    __syncthreads(); /* V^T visible; every warp is done with K_kt and V_kt */
    if (kt + 1 < nkt) {
      attn_load_rows<uint8_t, D, BK, NT>(sK, LDQ, Kg, a.ld, j0 + BK, g.n);
      attn_load_rows<uint8_t, D, BK, NT>(sV, LDQ, Vg, a.ld, j0 + BK, g.n);
      attn_cp_async_commit();
    }
    if (!skip) {
      /* O += P V: k-steps of 32 keys (S's n8 tiles 4kc .. 4kc+3) */
#pragma unroll
      for (int kc = 0; kc < BK / 32; kc++) {
        uint32_t pa[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
          fp8_c_to_a(&s[mt][4 * kc], pa[mt]);
#pragma unroll
        for (int dj = 0; dj < D / 16; dj++) {
          uint32_t vb[4];
          attn_ldsm_x4(vb, sVt + (dj * 16 + row_b) * LDV + kc * 32 + col_b);
#pragma unroll
          for (int mt = 0; mt < MT; mt++) {
            attn_mma16832_e4m3(o[mt][2 * dj], pa[mt], vb[0], vb[1]);
            attn_mma16832_e4m3(o[mt][2 * dj + 1], pa[mt], vb[2], vb[3]);
          }
        }
      }
    }
  }
  attn_cp_async_wait_all();

  attn_fwd_store<attn_bf16, MT, NO>(a, g, h, base, q0 + wrow, o, m, l, sc.vds, sc.qk, -8.0f * ATTN_LN2);
#else
  __trap(); /* no e4m3 mma before sm_89: the launcher never starts this */
#endif
}

template <int D> int flash_fp8_launch(const mb_attn_desc *d, const AttnArgs &a, cudaStream_t s) {
  typedef FlashFp8Cfg<D> C;
  /* The image the driver picked must have been compiled for sm_89+ (an sm_80
   * image also runs on an sm_89 GPU, and holds only the trap above). */
  cudaFuncAttributes attr;
  MB_CUDA_TRY(cudaFuncGetAttributes(&attr, attn_flash_fp8_kernel<D>));
  if (attr.ptxVersion < 89)
    return MB_ERR(MB_EUNSUPPORTED,
                  "cuda fp8 attention: this build has no sm_89+ code for this GPU (its kernel image "
                  "is sm_%d; add 89 or 90a to MAMBERT_CUDA_ARCHS)",
                  attr.ptxVersion);
  return attn_launch_fwd<attn_bf16>(attn_flash_fp8_kernel<D>, "attn_flash_fp8_kernel", d, a, C::BQ, C::NT,
                                    C::smem_bytes(), s);
}

/* ---- the same forward on Hopper's fp8 wgmma (sm_90a) ----
 * Taken when the forward tiling is 2 or 3 (mb_cuda_attn_set_flash_fwd_variant,
 * MAMBERT_ATTN_TILING=wgmma): on sm_90 the mma.sync kernel above runs its
 * e4m3 products as f16 HMMA, while wgmma reaches the fp8 tensor cores. One
 * CTA of two warpgroups per 128 queries (warp w: rows 16 w..), 128-key
 * tiles. S = Q K^T as D/32 wgmma.m64n128k32 with Q and K from shared memory
 * (core-matrix layout, 16 e4m3 per core-matrix row; K in a two-stage ring a
 * tile ahead); the 2^8-scaled P packed into the fp8 A fragment in the same
 * permuted key order as above; V (in a two-stage ring with K) transposed by
 * fp8_vt_block while the tensor cores compute S (8-bit wgmma operands are
 * K-major only), into the core-matrix layout with rows = head dims and
 * columns = key slots, then O += P V^T^T as BK/32 wgmma.m64nDk32 with P
 * from registers. Per tile: a barrier after K and V land, a barrier after
 * V^T is stored (both after fence.proxy.async). */
/* The Hopper fp8 kernels' shared pieces. Tile t of K (core-matrix layout,
 * the K-major B of S) and of V (as it comes, LDV bytes per key, for
 * fp8_vt_block) into stage sK, sV: keys row0.., zeros past the sequence
 * (not NaN). */
template <int D, int BK, int NT, int LDV>
__device__ __forceinline__ void fp8_load_kv(uint8_t *sK, uint8_t *sV, const uint8_t *Kg, const uint8_t *Vg,
                                            int64_t ld, int row0, int n) {
  attn_load_rows_core<uint8_t, D, BK, NT>(sK, Kg, ld, row0, n);
  attn_load_rows<uint8_t, D, BK, NT>(sV, LDV, Vg, ld, row0, n);
}

template <int D> struct HopperFp8Cfg {
  static constexpr int NT = 256, BQ = 128, BK = 128;
  static constexpr int LDV = D + 16; /* V rows as they come (two stages), bytes: +16 against bank conflicts */
  static constexpr size_t smem_bytes() {
    return (size_t)(BQ + 2 * BK) * D + (size_t)D * BK + (size_t)2 * BK * LDV + BK * sizeof(int);
  }
};

template <int D> __global__ void __launch_bounds__(HopperFp8Cfg<D>::NT, 1) attn_hopper_fp8_kernel(AttnArgs a) {
#if ATTN_HAS_WGMMA && ATTN_HAS_E4M3_MMA
  typedef HopperFp8Cfg<D> C;
  constexpr int NT = C::NT, NW = NT / 32, BQ = C::BQ, BK = C::BK, LDV = C::LDV;
  constexpr int NS = BK / 8, NO = D / 8;
  ATTN_DYNAMIC_SMEM(uint8_t, sQ);
  uint8_t *sK = sQ + BQ * D;      /* two stages */
  uint8_t *sVt = sK + 2 * BK * D; /* [D rows][BK key slots], core-matrix layout */
  uint8_t *sV = sVt + D * BK;     /* two stages of V as it comes, [BK keys][LDV] */
  int *sKeep = reinterpret_cast<int *>(sV + 2 * BK * LDV);

  AttnSeg g;
  int tile;
  if (!attn_find_tile(a, BQ, &g, &tile))
    return;
  const int h = blockIdx.y, tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int gr = lane >> 2, tq = lane & 3;
  const int q0 = tile * BQ, wrow = warp * 16;
  const int64_t base = (int64_t)g.start * a.ld + (int64_t)h * D;
  const uint8_t *Qg = (const uint8_t *)a.q + base, *Kg = (const uint8_t *)a.k + base;
  const uint8_t *Vg = (const uint8_t *)a.v + base;
  const Fp8Scales sc = fp8_scales(a);

  /* Descriptors, K-major, 8-bit: LBO 128 bytes between 16-byte chunks, SBO
   * 8 rows x row bytes; a k-step of 32 is two chunks (+16 in 16-byte
   * units), a K stage BK D bytes. */
  const uint64_t qdesc = attn_wgmma_desc(sQ + (warp >> 2) * 64 * D, 128, 8 * D);
  const uint64_t kdesc = attn_wgmma_desc(sK, 128, 8 * D);
  const uint64_t vdesc = attn_wgmma_desc(sVt, 128, 8 * BK);
  constexpr uint64_t STAGE = BK * D / 16;

  const int kend = attn_key_end(a, g, q0, BQ);
  const int nkt = (kend + BK - 1) / BK;

  attn_load_rows_core<uint8_t, D, BQ, NT>(sQ, Qg, a.ld, q0, g.n);
  fp8_load_kv<D, BK, NT, LDV>(sK, sV, Kg, Vg, a.ld, 0, g.n);
  attn_cp_async_commit();
  if (nkt > 1)
    fp8_load_kv<D, BK, NT, LDV>(sK + BK * D, sV + BK * LDV, Kg, Vg, a.ld, BK, g.n);
  attn_cp_async_commit();

  float o[1][NO][4], m[1][2], l[1][2];
  attn_fwd_init<1, NO>(o, m, l);

  for (int kt = 0; kt < nkt; kt++) {
    const int j0 = kt * BK, stage = kt & 1;
    attn_cp_async_wait_group<1>(); /* K_kt, V_kt (and Q) */
    attn_fence_proxy_async();
    int hidden, kept;
    /* its barrier: K_kt, V_kt, sKeep visible; every warp is done with V^T_{kt-1} */
    attn_scan_key_tile<BK, NT>(g, j0, sKeep, &hidden, &kept);

    float s[1][NS][4];
    if (kept) {
      attn_wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < D / 32; kk++)
        AttnWgmmaE4m3<BK>::ss(&s[0][0][0], qdesc + 16 * kk, kdesc + stage * STAGE + 16 * kk, kk > 0);
      attn_wgmma_commit();
      /* while the tensor cores compute S: V^T[dim][slot(key)] = V[key][dim],
       * four slots per store (fp8_vt_block) */
      fp8_vt_tile<BK, D, NW>(sV + stage * BK * LDV, LDV, warp, lane, [&](int dim, int slot, uint32_t w) {
        attn_sts_u32_for_wgmma(sVt + fp8_vt_core_at<BK>(dim, slot), w);
      });
      attn_wgmma_wait<0>();
      attn_wgmma_pin<NS * 4>(&s[0][0][0]);
      attn_mask_scores<1, NS, BK>(s, a, g, sKeep, hidden, q0 + wrow, j0, gr, tq);
      attn_online_softmax<1, NS, NO>(s, m, l, o, sc.qk_log2, 8.0f); /* P scaled by 2^8 */
    }

    attn_fence_proxy_async(); /* V^T's stores are read by wgmma */
    __syncthreads();          /* V^T visible; every warp is done with K_kt and V_kt */
    if (kt + 2 < nkt)
      fp8_load_kv<D, BK, NT, LDV>(sK + stage * BK * D, sV + stage * BK * LDV, Kg, Vg, a.ld, j0 + 2 * BK, g.n);
    attn_cp_async_commit();
    if (kept) {
      uint32_t pa[BK / 32][4];
#pragma unroll
      for (int kc = 0; kc < BK / 32; kc++)
        fp8_c_to_a(&s[0][4 * kc], pa[kc]);
      attn_wgmma_fence();
#pragma unroll
      for (int kc = 0; kc < BK / 32; kc++)
        AttnWgmmaE4m3<D>::rs(&o[0][0][0], pa[kc], vdesc + 16 * kc, true);
      attn_wgmma_commit();
      attn_wgmma_wait<0>();
      attn_wgmma_pin<NO * 4>(&o[0][0][0]);
      attn_wgmma_pin<BK / 8>(&pa[0][0]);
    }
  }
  attn_cp_async_wait_all();

  attn_fwd_store<attn_bf16, 1, NO>(a, g, h, base, q0 + wrow, o, m, l, sc.vds, sc.qk, -8.0f * ATTN_LN2);
#else
  (void)a; /* no wgmma in this image: attn_hopper_fwd_runs says so before any launch */
#endif
}

/* Tilings 4-6: the fp8 wgmma forward with tiling 4's overlap
 * (attention_hopper_fwd.cu): in iteration kt a warpgroup issues S_{kt+1}
 * and then O += P_kt V_kt, transposes V_{kt+1} while both run, waits for
 * S_{kt+1} only and runs its softmax while the product into O is still on
 * the tensor cores. Since P V reads V^T, which fp8_vt_block makes from the
 * staged V, V^T is double-buffered and made a tile ahead: iteration kt
 * writes V^T[(kt+1) % 2], whose last reader (P V of kt - 1) was waited for
 * in iteration kt - 1. K and V of tile t travel in one cp.async group into
 * stage t % 2; iteration kt reads tile kt + 1 (the group committed two
 * iterations earlier) and refills its stage with tile kt + 3. */
template <int D> struct HopperFp8PipeCfg {
  static constexpr int NT = 256, BQ = 128, BK = 128;
  static constexpr int LDV = D + 16; /* staged V rows, bytes */
  static constexpr size_t smem_bytes() { /* Q; K x 2; V^T x 2; staged V x 2; key flags */
    return (size_t)(BQ + 2 * BK) * D + (size_t)2 * D * BK + (size_t)2 * BK * LDV + BK * sizeof(int);
  }
};

template <int D> __global__ void __launch_bounds__(HopperFp8PipeCfg<D>::NT, 1) attn_hopper_fp8_pipe_kernel(AttnArgs a) {
#if ATTN_HAS_WGMMA && ATTN_HAS_E4M3_MMA
  typedef HopperFp8PipeCfg<D> C;
  constexpr int NT = C::NT, NW = NT / 32, BQ = C::BQ, BK = C::BK, LDV = C::LDV;
  constexpr int NS = BK / 8, NO = D / 8;
  ATTN_DYNAMIC_SMEM(uint8_t, sQ);
  uint8_t *sK = sQ + BQ * D;      /* K_t in stage t % 2, core-matrix layout */
  uint8_t *sVt = sK + 2 * BK * D; /* V^T_t in buffer t % 2: [D rows][BK key slots], core-matrix layout */
  uint8_t *sV = sVt + 2 * D * BK; /* V_t as it comes in stage t % 2, [BK keys][LDV] */
  int *sKeep = reinterpret_cast<int *>(sV + 2 * BK * LDV);

  AttnSeg g;
  int tile;
  if (!attn_find_tile(a, BQ, &g, &tile))
    return;
  const int h = blockIdx.y, tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int gr = lane >> 2, tq = lane & 3;
  const int q0 = tile * BQ, wrow = warp * 16;
  const int64_t base = (int64_t)g.start * a.ld + (int64_t)h * D;
  const uint8_t *Qg = (const uint8_t *)a.q + base, *Kg = (const uint8_t *)a.k + base;
  const uint8_t *Vg = (const uint8_t *)a.v + base;
  const Fp8Scales sc = fp8_scales(a);
  const uint64_t qdesc = attn_wgmma_desc(sQ + (warp >> 2) * 64 * D, 128, 8 * D);
  const uint64_t kdesc = attn_wgmma_desc(sK, 128, 8 * D);
  const uint64_t vdesc = attn_wgmma_desc(sVt, 128, 8 * BK);
  constexpr uint64_t STAGE = BK * D / 16; /* one K stage or V^T buffer, in 16-byte units */
  /* V^T[dim][slot] of buffer buf, four slots per store */
  auto vt_store = [&](int buf, int dim, int slot, uint32_t w) {
    attn_sts_u32_for_wgmma(sVt + buf * D * BK + fp8_vt_core_at<BK>(dim, slot), w);
  };

  const int kend = attn_key_end(a, g, q0, BQ);
  const int nkt = (kend + BK - 1) / BK;

  /* {Q, K_0, V_0, K_1, V_1} */
  attn_load_rows_core<uint8_t, D, BQ, NT>(sQ, Qg, a.ld, q0, g.n);
  fp8_load_kv<D, BK, NT, LDV>(sK, sV, Kg, Vg, a.ld, 0, g.n);
  if (nkt > 1)
    fp8_load_kv<D, BK, NT, LDV>(sK + BK * D, sV + BK * LDV, Kg, Vg, a.ld, BK, g.n);
  attn_cp_async_commit();

  float o[1][NO][4], m[1][2], l[1][2];
  attn_fwd_init<1, NO>(o, m, l);
  float s[1][NS][4];
  uint32_t pa[BK / 32][4]; /* P_kt as fp8 A fragments */

  /* S_0 and P_0; V^T_0. Every wgmma sequence is unconditional within its
   * block (tiles of padding only are computed and masked): see tiling 4. */
  attn_cp_async_wait_group<0>();
  attn_fence_proxy_async();
  if (nkt > 0) {
    int hidden, kept;
    attn_scan_key_tile<BK, NT>(g, 0, sKeep, &hidden, &kept);
    attn_wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < D / 32; kk++)
      AttnWgmmaE4m3<BK>::ss(&s[0][0][0], qdesc + 16 * kk, kdesc + 16 * kk, kk > 0);
    attn_wgmma_commit();
    fp8_vt_tile<BK, D, NW>(sV, LDV, warp, lane, [&](int dim, int slot, uint32_t w) { vt_store(0, dim, slot, w); });
    attn_wgmma_wait<0>();
    attn_wgmma_pin<NS * 4>(&s[0][0][0]);
    attn_mask_scores<1, NS, BK>(s, a, g, sKeep, hidden, q0 + wrow, 0, gr, tq);
    attn_online_softmax<1, NS, NO>(s, m, l, o, sc.qk_log2, 8.0f); /* O = 0: the rescale is moot */
#pragma unroll
    for (int kc = 0; kc < BK / 32; kc++)
      fp8_c_to_a(&s[0][4 * kc], pa[kc]);
  }
  attn_fence_proxy_async(); /* V^T_0's stores are read by wgmma */
  __syncthreads();          /* V^T_0 visible; every warp is done with K_0 and V_0: their stage takes tile 2 */
  if (nkt > 2)
    fp8_load_kv<D, BK, NT, LDV>(sK, sV, Kg, Vg, a.ld, 2 * BK, g.n);
  attn_cp_async_commit(); /* {K_2, V_2} */

  for (int kt = 0; kt + 1 < nkt; kt++) {
    const int j1 = (kt + 1) * BK, nb = (kt + 1) & 1; /* tile kt + 1: its stage and V^T buffer */
    attn_cp_async_wait_group<1>(); /* {K_{kt+1}, V_{kt+1}}; the newest group may still be in flight */
    attn_fence_proxy_async();
    int hidden, kept;
    attn_scan_key_tile<BK, NT>(g, j1, sKeep, &hidden, &kept); /* its barrier publishes the tiles */
    attn_wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < D / 32; kk++)
      AttnWgmmaE4m3<BK>::ss(&s[0][0][0], qdesc + 16 * kk, kdesc + nb * STAGE + 16 * kk, kk > 0);
    attn_wgmma_commit(); /* S_{kt+1} */
#pragma unroll
    for (int kc = 0; kc < BK / 32; kc++)
      AttnWgmmaE4m3<D>::rs(&o[0][0][0], pa[kc], vdesc + (kt & 1) * STAGE + 16 * kc, true);
    attn_wgmma_commit(); /* O += P_kt V_kt */
    /* V^T_{kt+1} while both products run (its buffer's last reader, P V of kt - 1, is done) */
    fp8_vt_tile<BK, D, NW>(sV + nb * BK * LDV, LDV, warp, lane,
                           [&](int dim, int slot, uint32_t w) { vt_store(nb, dim, slot, w); });
    attn_wgmma_wait<1>(); /* S_{kt+1} done; the product into O runs on */
    attn_wgmma_pin<NS * 4>(&s[0][0][0]);
    float corr[1][2] = {{1.0f, 1.0f}};
    bool moved = false;
    for (int pass = 0; pass < a.opaque_one; pass++) { /* its own block, below the wait: see tiling 4 */
      attn_mask_scores<1, NS, BK>(s, a, g, sKeep, hidden, q0 + wrow, j1, gr, tq);
      moved = attn_softmax_stats<1, NS>(s, m, l, corr, sc.qk_log2, 8.0f); /* P scaled by 2^8 */
    }
    attn_wgmma_wait<0>();
    attn_wgmma_pin<NO * 4>(&o[0][0][0]);
    attn_wgmma_pin<BK / 8>(&pa[0][0]);
    if (moved)
      attn_rescale_o<1, NO>(o, corr);
#pragma unroll
    for (int kc = 0; kc < BK / 32; kc++)
      fp8_c_to_a(&s[0][4 * kc], pa[kc]);
    attn_fence_proxy_async(); /* V^T_{kt+1}'s stores are read by wgmma */
    __syncthreads(); /* V^T_{kt+1} visible; every warp is done with K_{kt+1}, V_{kt+1}: their stage takes tile kt+3 */
    if (kt + 3 < nkt)
      fp8_load_kv<D, BK, NT, LDV>(sK + nb * BK * D, sV + nb * BK * LDV, Kg, Vg, a.ld, (kt + 3) * BK, g.n);
    attn_cp_async_commit();
  }
  if (nkt > 0) { /* the last tile's O += P V (V^T published by the last barrier) */
    attn_wgmma_fence();
#pragma unroll
    for (int kc = 0; kc < BK / 32; kc++)
      AttnWgmmaE4m3<D>::rs(&o[0][0][0], pa[kc], vdesc + ((nkt - 1) & 1) * STAGE + 16 * kc, true);
    attn_wgmma_commit();
    attn_wgmma_wait<0>();
    attn_wgmma_pin<NO * 4>(&o[0][0][0]);
    attn_wgmma_pin<BK / 8>(&pa[0][0]);
  }
  attn_cp_async_wait_all();

  attn_fwd_store<attn_bf16, 1, NO>(a, g, h, base, q0 + wrow, o, m, l, sc.vds, sc.qk, -8.0f * ATTN_LN2);
#else
  (void)a; /* no wgmma in this image: attn_hopper_fwd_runs says so before any launch */
#endif
}

template <int D> int hopper_fp8_pipe_launch(const mb_attn_desc *d, const AttnArgs &a, cudaStream_t s) {
  typedef HopperFp8PipeCfg<D> C;
  return attn_launch_fwd<attn_bf16>(attn_hopper_fp8_pipe_kernel<D>, "attn_hopper_fp8_pipe_kernel", d, a, C::BQ, C::NT,
                                    C::smem_bytes(), s);
}

template <int D> int hopper_fp8_launch(const mb_attn_desc *d, const AttnArgs &a, cudaStream_t s) {
  typedef HopperFp8Cfg<D> C;
  return attn_launch_fwd<attn_bf16>(attn_hopper_fp8_kernel<D>, "attn_hopper_fp8_kernel", d, a, C::BQ, C::NT,
                                    C::smem_bytes(), s);
}

} // namespace

/* The fp8 kernel's code version on this device (ptxVersion x 1: 80, 90);
 * the dispatcher plans with min(device cc, this). */
int attn_flash_fp8_code_version(int head_dim, int *version) {
  cudaFuncAttributes attr;
  if (head_dim == 128)
    MB_CUDA_TRY(cudaFuncGetAttributes(&attr, attn_flash_fp8_kernel<128>));
  else
    MB_CUDA_TRY(cudaFuncGetAttributes(&attr, attn_flash_fp8_kernel<64>));
  *version = attr.ptxVersion;
  return MB_OK;
}

int attn_flash_fwd_fp8(const mb_attn_desc *d, const void *q, const void *k, const void *v, const float *qds,
                       const float *kds, const float *vds, void *out, float *lse, cudaStream_t s) {
  if (attn_tokens(d) == 0)
    return MB_OK;
  AttnArgs a = attn_args_from_desc(d);
  a.q = q;
  a.k = k;
  a.v = v;
  a.o = out;
  a.lse = lse;
  a.q_descale = qds;
  a.k_descale = kds;
  a.v_descale = vds;
  /* the forward's wgmma tilings switch the fp8 forward to a wgmma kernel too: 2-3 / 4-6 / 7-8, and 9-10
   * (tiling 8's with some exponentials on the FMA pipe) */
  int wgmma = 0;
  MB_TRY(attn_flash_fwd_wgmma_tiling(&wgmma));
  if (wgmma >= 7)
    return attn_hopper_fwd_fp8_ws(d, a, wgmma, s);
  if (wgmma >= 4 && d->head_dim == 64)
    return hopper_fp8_pipe_launch<64>(d, a, s);
  if (wgmma >= 4 && d->head_dim == 128)
    return hopper_fp8_pipe_launch<128>(d, a, s);
  if (wgmma && d->head_dim == 64)
    return hopper_fp8_launch<64>(d, a, s);
  if (wgmma && d->head_dim == 128)
    return hopper_fp8_launch<128>(d, a, s);
  if (d->head_dim == 64)
    return flash_fp8_launch<64>(d, a, s);
  if (d->head_dim == 128)
    return flash_fp8_launch<128>(d, a, s);
  return MB_ERR(MB_EUNSUPPORTED, "cuda fp8 attention: head_dim %d (64 or 128 only)", d->head_dim);
}
