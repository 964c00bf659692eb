/* attention_flash_fwd.cu: the FlashAttention-2 forward on tensor cores
 * (sm_80+; runs on Hopper too, through mma.sync), bf16 or f16 in, f32
 * accumulation, head_dim 64 or 128.
 *
 * One CTA per (BQ = 128 queries, head, sequence); warp w owns 16*MT
 * consecutive query rows of the tile (FlashFwdCfg: 4 warps x 32 rows or 8
 * warps x 16 rows). Per key tile of BK keys:
 *   S = Q K^T (f32 in registers) -> masking (only on tiles that need it) ->
 *   online softmax (running row max m and row sum l, rescale O by
 *   exp(m_old - m_new)) -> P (rounded to T, straight from S's registers) ->
 *   O += P V.
 * Shared memory: Q (BQ rows), one K and one V tile (BK rows), rows padded
 * by 16 bytes so ldmatrix's eight row addresses hit eight different bank
 * groups. Loads are cp.async, overlapped FlashAttention-2 style with one
 * buffer each: V_j is fetched while S_j = Q K_j^T is computed, K_{j+1}
 * while O += P_j V_j. Out-of-sequence rows are zero-filled by cp.async and
 * masked; the output is written once, divided by l, with
 * lse = scale * m + log(l).
 */
#include "kernels/cuda/attention_common.cuh"

namespace {

/* Two tilings (mb_cuda_attn_set_flash_fwd_variant picks one; the benchmark
 * times both). Variant 0: 4 warps of 32 query rows (two m16 tiles, so each
 * K/V fragment feeds two MMAs: half the shared-memory reads per FLOP);
 * 64-key tiles at head_dim 64, 32-key tiles at 128 (64 spills registers).
 * Variant 1: 8 warps of 16 rows, 64-key tiles (fewer registers, twice the
 * K/V shared-memory reads per FLOP). Both: 128 queries per CTA. */
template <int D, int VARIANT> struct FlashFwdCfg {
  static constexpr int NW = VARIANT == 0 ? 4 : 8, MT = VARIANT == 0 ? 2 : 1;
  static constexpr int BK = VARIANT == 0 && D == 128 ? 32 : 64;
  static constexpr int NT = 32 * NW, BQ = 16 * MT * NW;
  static constexpr int LDS = D + 8; /* shared row stride in elements: +16 bytes */
  template <typename T> static constexpr size_t smem_bytes() {
    return (size_t)(BQ + 2 * BK) * LDS * sizeof(T) + BK * sizeof(int);
  }
};

template <typename T, int D, int VARIANT>
__global__ void __launch_bounds__(FlashFwdCfg<D, VARIANT>::NT) attn_flash_fwd_kernel(AttnArgs a) {
  typedef FlashFwdCfg<D, VARIANT> C;
  constexpr int NT = C::NT, MT = C::MT, BQ = C::BQ, BK = C::BK, LDS = C::LDS;
  constexpr int NS = BK / 8; /* n8 tiles of S per m-tile */
  constexpr int NO = D / 8;  /* n8 tiles of O per m-tile */
  ATTN_DYNAMIC_SMEM(T, sQ);
  T *sK = sQ + BQ * LDS;
  T *sV = sK + BK * LDS;
  int *sKeep = reinterpret_cast<int *>(sV + BK * LDS); /* padded mode: key kept? */

  AttnSeg g;
  int tile;
  if (!attn_find_tile(a, BQ, &g, &tile))
    return;
  const int h = blockIdx.y, tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int gr = lane >> 2, tq = lane & 3; /* g and t of the fragment layouts */
  const int q0 = tile * BQ, wrow = warp * 16 * MT;
  const int64_t base = (int64_t)g.start * a.ld + (int64_t)h * D;
  const T *Qg = (const T *)a.q + base, *Kg = (const T *)a.k + base, *Vg = (const T *)a.v + base;
  /* ldmatrix lane addresses (attention_common.cuh): A fragments and
   * "B with rows = k" (.trans) use (row_a, col_a); "B with rows = n" uses
   * (row_b, col_b). */
  const int row_a = (lane & 7) + ((lane >> 3) & 1) * 8, col_a = (lane >> 4) * 8;
  const int row_b = (lane & 7) + (lane >> 4) * 8, col_b = ((lane >> 3) & 1) * 8;

  /* Causal: no query of this tile sees a key at or past q0 + BQ. */
  const int kend = attn_key_end(a, g, q0, BQ);
  const int nkt = (kend + BK - 1) / BK;

  attn_load_rows<T, D, BQ, NT>(sQ, LDS, Qg, a.ld, q0, g.n);
  attn_load_rows<T, D, BK, NT>(sK, LDS, Kg, a.ld, 0, g.n);
  attn_cp_async_commit();

  float o[MT][NO][4];
  float m[MT][2], l[MT][2]; /* row max (raw score units) and this thread's part of the row sum */
  attn_fwd_init<MT, NO>(o, m, l);

  for (int kt = 0; kt < nkt; kt++) {
    const int j0 = kt * BK;
    attn_cp_async_wait_all(); /* K_kt (and Q) */
    int hidden, kept;
    attn_scan_key_tile<BK, NT>(g, j0, sKeep, &hidden, &kept); /* its barrier: K_kt and sKeep visible to all */
    const bool skip = !kept;                                  /* every key of the tile is padding */

    attn_load_rows<T, D, BK, NT>(sV, LDS, Vg, a.ld, j0, g.n);
    attn_cp_async_commit();

    float s[MT][NS][4];
    if (!skip) {
#pragma unroll
      for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int j = 0; j < NS; j++)
#pragma unroll
          for (int e = 0; e < 4; e++)
            s[mt][j][e] = 0.0f;
      }
      /* S = Q K^T: k-steps of 16 over the head dimension */
#pragma unroll
      for (int kk = 0; kk < D / 16; kk++) {
        uint32_t qa[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
          attn_ldsm_x4(qa[mt], sQ + (wrow + mt * 16 + row_a) * LDS + kk * 16 + col_a);
#pragma unroll
        for (int nj = 0; nj < BK / 16; nj++) {
          uint32_t kb[4];
          attn_ldsm_x4(kb, sK + (nj * 16 + row_b) * LDS + kk * 16 + col_b);
#pragma unroll
          for (int mt = 0; mt < MT; mt++) {
            attn_mma16816<T>(s[mt][2 * nj], qa[mt], kb[0], kb[1]);
            attn_mma16816<T>(s[mt][2 * nj + 1], qa[mt], kb[2], kb[3]);
          }
        }
      }
      attn_mask_scores<MT, NS, BK>(s, a, g, sKeep, hidden, q0 + wrow, j0, gr, tq);
      attn_online_softmax<MT, NS, NO>(s, m, l, o, a.scale_log2, 0.0f);
    }

    attn_cp_async_wait_all(); /* V_kt */
    __syncthreads();          /* V_kt visible; every warp is done with K_kt */
    if (kt + 1 < nkt) {
      attn_load_rows<T, D, BK, NT>(sK, LDS, Kg, a.ld, j0 + BK, g.n);
      attn_cp_async_commit();
    }
    if (!skip) {
      /* O += P V: k-steps of 16 keys; P's A fragment is S's C fragment */
#pragma unroll
      for (int kk = 0; kk < BK / 16; kk++) {
        uint32_t pa[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
          attn_c_to_a<T>(s[mt][2 * kk], s[mt][2 * kk + 1], pa[mt]);
#pragma unroll
        for (int dj = 0; dj < D / 16; dj++) {
          uint32_t vb[4];
          attn_ldsm_x4_trans(vb, sV + (kk * 16 + row_a) * LDS + dj * 16 + col_a);
#pragma unroll
          for (int mt = 0; mt < MT; mt++) {
            attn_mma16816<T>(o[mt][2 * dj], pa[mt], vb[0], vb[1]);
            attn_mma16816<T>(o[mt][2 * dj + 1], pa[mt], vb[2], vb[3]);
          }
        }
      }
    }
    /* the next iteration's first barrier orders these reads of sV before
     * V_{kt+1} overwrites it */
  }
  attn_cp_async_wait_all(); /* nothing may land after the CTA is gone (nkt = 0) */

  /* out = O / l, lse = scale * m + log(l); padded query rows and rows that
   * saw no key get 0 and +inf. */
  attn_fwd_store<T, MT, NO>(a, g, h, base, q0 + wrow, o, m, l, 1.0f, a.scale, 0.0f);
}

template <typename T, int D, int VARIANT>
int flash_fwd_launch(const mb_attn_desc *d, const AttnArgs &a, cudaStream_t s) {
  typedef FlashFwdCfg<D, VARIANT> C;
  return attn_launch_fwd<T>(attn_flash_fwd_kernel<T, D, VARIANT>, "attn_flash_fwd_kernel", d, a, C::BQ, C::NT,
                            C::template smem_bytes<T>(), s);
}

} // namespace

static int flash_fwd_variant = -1; /* -1: not chosen yet (attn_env_tiling) */

int mb_cuda_attn_set_flash_fwd_variant(int variant) {
  if (variant < -1 || variant > 10)
    return MB_ERR(MB_EINVAL, "cuda flash attention: forward variant %d (0 to 10; -1 the default)", variant);
  flash_fwd_variant = variant; /* -1: chosen again at the next call */
  return MB_OK;
}

/* The tiling, from MAMBERT_ATTN_TILING when no program has set one. */
static int choose_fwd_variant(void) {
  if (flash_fwd_variant < 0) {
    int fwd = 0, bwd = 0;
    MB_TRY(attn_env_tiling(&fwd, &bwd));
    flash_fwd_variant = fwd;
  }
  return MB_OK;
}

int attn_flash_fwd_wgmma_tiling(int *tiling) {
  *tiling = 0;
  MB_TRY(choose_fwd_variant());
  int runs = 0;
  if (flash_fwd_variant >= 2)
    MB_TRY(attn_hopper_fwd_runs(&runs));
  if (runs)
    *tiling = flash_fwd_variant;
  return MB_OK;
}

int mb_cuda_attn_flash_fwd_variant_runs(int variant, int *ok) {
  if (!ok)
    return MB_ERR(MB_EINVAL, "cuda flash attention: NULL result pointer");
  *ok = 0;
  if (variant < 0 || variant > 10)
    return MB_ERR(MB_EINVAL, "cuda flash attention: forward variant %d (0 to 10)", variant);
  if (variant >= 2)
    return attn_hopper_fwd_runs(ok);
  *ok = 1;
  return MB_OK;
}

int attn_flash_fwd(const mb_attn_desc *d, mb_dtype dt, const void *q, const void *k, const void *v, void *out,
                   float *lse, cudaStream_t s) {
  if (attn_tokens(d) == 0)
    return MB_OK;
  AttnArgs a = attn_args_from_desc(d);
  a.q = q;
  a.k = k;
  a.v = v;
  a.o = out;
  a.lse = lse;
  MB_TRY(choose_fwd_variant());
  const int var = flash_fwd_variant;
  if (var >= 2)
    return attn_hopper_fwd(d, dt, var, q, k, v, out, lse, s);
  if (dt == MB_BF16 && d->head_dim == 64)
    return var ? flash_fwd_launch<attn_bf16, 64, 1>(d, a, s) : flash_fwd_launch<attn_bf16, 64, 0>(d, a, s);
  if (dt == MB_BF16 && d->head_dim == 128)
    return var ? flash_fwd_launch<attn_bf16, 128, 1>(d, a, s) : flash_fwd_launch<attn_bf16, 128, 0>(d, a, s);
  if (dt == MB_F16 && d->head_dim == 64)
    return var ? flash_fwd_launch<attn_f16, 64, 1>(d, a, s) : flash_fwd_launch<attn_f16, 64, 0>(d, a, s);
  if (dt == MB_F16 && d->head_dim == 128)
    return var ? flash_fwd_launch<attn_f16, 128, 1>(d, a, s) : flash_fwd_launch<attn_f16, 128, 0>(d, a, s);
  return MB_ERR(MB_EUNSUPPORTED, "cuda flash attention forward: no kernel for %s with head_dim %d (bf16/f16, 64/128)",
                mb_dtype_name(dt), d->head_dim);
}
