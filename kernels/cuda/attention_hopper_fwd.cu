/* attention_hopper_fwd.cu: the flash forward on Hopper's warpgroup MMA
 * (wgmma, sm_90a), bf16 or f16 in, f32 accumulation, head_dim 64 or 128:
 * the bf16/f16 forward's tiling 2 (mb_cuda_attn_set_flash_fwd_variant).
 *
 * Why: on an H100/H200, mma.sync (attention_flash_fwd.cu) reaches about a
 * third of the tensor cores' rate; only wgmma, which reads its B operand
 * (and optionally A) straight from shared memory and runs asynchronously,
 * reaches the rest (FlashAttention-3's point). Tilings 2-4 are the plain
 * form of that: every thread loads (cp.async) and computes; tiling 5 (below
 * tiling 4) splits the CTA into a TMA producer and two consumers, 6-8 vary
 * it, and the e4m3 forward under tilings 7-8 is the same kernel with fp8
 * consumers (ws_consume_tile_fp8).
 *
 * One CTA per (BQ = 128 queries, head, sequence): two warpgroups of 4 warps,
 * warpgroup wg owning query rows 64 wg .. 64 wg + 63 and warp w (0..7) rows
 * 16 w .. 16 w + 15 of them (the wgmma accumulator layout). Per key tile of
 * BK = 128 keys (tiling 3: 64):
 *   S = Q K^T: D/16 wgmma.m64nBKk16, Q and K both read from shared memory;
 *   masking and the online softmax on S's registers (the helpers of the
 *   mma.sync kernel: per warp the accumulators are the same m16n8 C
 *   fragments);
 *   O += P V: BK/16 wgmma.m64nDk16 with P from registers (S's accumulators
 *   rounded to T are P's A fragments) and V from shared memory, read
 *   transposed (MN-major), so V is stored as it comes, like K.
 * Shared memory: Q and a two-stage ring of K and V tiles, all in the
 * no-swizzle core-matrix layout (attention_wgmma.cuh): row r, 16-byte
 * chunk c of a tile of D columns at element (r / 8) 8 D + 64 c + 8 (r % 8).
 * Both operand kinds read it: K-major (Q, K: LBO 128 bytes between chunks,
 * SBO 16 D between 8-row groups) and MN-major (V: LBO 16 D between 8-key
 * groups, SBO 128 between 8-column chunks). Loads are cp.async, a whole
 * tile (K and V) ahead: tile j + 1 lands while tile j is computed, and
 * tile j + 2 is issued into tile j's stage once every warp is done with it
 * (so a load has a full iteration, ~1 us at the tensor cores' rate, to
 * arrive; one stage would leave it only the other GEMM's half). Each wait
 * is followed by fence.proxy.async (so wgmma sees the data) and a barrier:
 * two barriers per key tile.
 */
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/attention_fp8.cuh"

#include <type_traits>

namespace {

/* BK 128, one CTA per SM (tiling 2), or for head_dim 64 BK 64 with at most
 * 128 registers, so two CTAs share an SM (tiling 3): their barriers are
 * independent, so one CTA's softmax can overlap the other's wgmma -- what
 * FlashAttention-3 arranges within a CTA with named barriers. Which wins
 * is for a GPU to say; the benchmark times both. */
template <int D, int BKEYS> struct HopperFwdCfg {
  static constexpr int NT = 256, BQ = 128, BK = BKEYS, MIN_CTAS = BKEYS == 64 ? 2 : 1;
  template <typename T> static constexpr size_t smem_bytes() {
    return (size_t)(BQ + 4 * BK) * D * sizeof(T) + BK * sizeof(int); /* Q, two stages of K and V */
  }
};

template <typename T, int D, int BKEYS>
__global__ void __launch_bounds__(HopperFwdCfg<D, BKEYS>::NT, HopperFwdCfg<D, BKEYS>::MIN_CTAS)
    attn_hopper_fwd_kernel(AttnArgs a) {
#if ATTN_HAS_WGMMA
  typedef HopperFwdCfg<D, BKEYS> C;
  constexpr int NT = C::NT, BQ = C::BQ, BK = C::BK;
  constexpr int NS = BK / 8; /* n8 tiles of S per warp */
  constexpr int NO = D / 8;  /* n8 tiles of O per warp */
  ATTN_DYNAMIC_SMEM(T, sQ);
  T *sK = sQ + BQ * D;     /* two stages of BK rows */
  T *sV = sK + 2 * BK * D; /* two stages */
  int *sKeep = reinterpret_cast<int *>(sV + 2 * BK * D); /* padded mode: key kept? */

  AttnSeg g;
  int tile;
  if (!attn_find_tile(a, BQ, &g, &tile))
    return;
  const int h = blockIdx.y, tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int gr = lane >> 2, tq = lane & 3;
  const int q0 = tile * BQ, wrow = warp * 16; /* this warp's first row of the tile */
  const int64_t base = (int64_t)g.start * a.ld + (int64_t)h * D;
  const T *Qg = (const T *)a.q + base, *Kg = (const T *)a.k + base, *Vg = (const T *)a.v + base;

  /* Descriptors (attention_wgmma.cuh). A k-step of 16 advances Q and K by
   * two chunks (256 bytes: +16 in the descriptor's 16-byte units) and V by
   * two 8-key groups (32 D bytes: +2 D); the second stage is BK D elements
   * (2 BK D bytes: + BK D / 8) further. */
  const uint64_t qdesc = attn_wgmma_desc(sQ + (warp >> 2) * 64 * D, 128, 16 * D);
  const uint64_t kdesc = attn_wgmma_desc(sK, 128, 16 * D);
  const uint64_t vdesc = attn_wgmma_desc(sV, 16 * D, 128);
  constexpr uint64_t STAGE = BK * D / 8;

  const int kend = attn_key_end(a, g, q0, BQ);
  const int nkt = (kend + BK - 1) / BK;

  /* Prologue: Q with tile 0 (one group), tile 1 (the next; empty when
   * there is none). Every iteration commits one group, so at iteration kt
   * "all but the newest group" is exactly tile kt. */
  attn_load_rows_core<T, D, BQ, NT>(sQ, Qg, a.ld, q0, g.n);
  attn_load_rows_core<T, D, BK, NT>(sK, Kg, a.ld, 0, g.n);
  attn_load_rows_core<T, D, BK, NT>(sV, Vg, a.ld, 0, g.n);
  attn_cp_async_commit();
  if (nkt > 1) {
    attn_load_rows_core<T, D, BK, NT>(sK + BK * D, Kg, a.ld, BK, g.n);
    attn_load_rows_core<T, D, BK, NT>(sV + BK * D, Vg, a.ld, BK, g.n);
  }
  attn_cp_async_commit();

  float o[1][NO][4];
  float m[1][2], l[1][2];
  attn_fwd_init<1, NO>(o, m, l);

  for (int kt = 0; kt < nkt; kt++) {
    const int j0 = kt * BK, stage = kt & 1;
    attn_cp_async_wait_group<1>(); /* tile kt (and Q); tile kt + 1 may still be in flight */
    attn_fence_proxy_async();
    int hidden, kept;
    attn_scan_key_tile<BK, NT>(g, j0, sKeep, &hidden, &kept); /* its barrier: tile kt and sKeep visible to all */
    if (kept) {
      float s[1][NS][4];
      attn_wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < D / 16; kk++)
        AttnWgmma<T, BK>::ss(&s[0][0][0], qdesc + 16 * kk, kdesc + stage * STAGE + 16 * kk, kk > 0);
      attn_wgmma_commit();
      attn_wgmma_wait<0>();
      attn_wgmma_pin<NS * 4>(&s[0][0][0]);
      attn_mask_scores<1, NS, BK>(s, a, g, sKeep, hidden, q0 + wrow, j0, gr, tq);
      attn_online_softmax<1, NS, NO>(s, m, l, o, a.scale_log2, 0.0f);

      uint32_t pa[BK / 16][4];
#pragma unroll
      for (int kk = 0; kk < BK / 16; kk++)
        attn_c_to_a<T>(s[0][2 * kk], s[0][2 * kk + 1], pa[kk]);
      attn_wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < BK / 16; kk++)
        AttnWgmma<T, D>::rs_mn(&o[0][0][0], pa[kk], vdesc + stage * STAGE + 2 * D * kk, true);
      attn_wgmma_commit();
      attn_wgmma_wait<0>();
      attn_wgmma_pin<NO * 4>(&o[0][0][0]);
      attn_wgmma_pin<BK / 4>(&pa[0][0]);
    }
    __syncthreads(); /* every warp is done with this stage (each waited for its wgmma) */
    if (kt + 2 < nkt) {
      attn_load_rows_core<T, D, BK, NT>(sK + stage * BK * D, Kg, a.ld, j0 + 2 * BK, g.n);
      attn_load_rows_core<T, D, BK, NT>(sV + stage * BK * D, Vg, a.ld, j0 + 2 * BK, g.n);
    }
    attn_cp_async_commit();
  }
  attn_cp_async_wait_all(); /* nothing may land after the CTA is gone (nkt = 0) */

  /* out = O / l, lse = scale * m + log(l), as in the mma.sync kernel */
  attn_fwd_store<T, 1, NO>(a, g, h, base, q0 + wrow, o, m, l, 1.0f, a.scale, 0.0f);
#else
  (void)a; /* no wgmma in this image: attn_hopper_fwd_runs says so before any launch */
#endif
}

/* Tiling 4: the same CTA with FlashAttention-3's intra-warpgroup
 * pipelining. In iteration j a warpgroup issues S_{j+1} = Q K_{j+1}^T and
 * then O += P_j V_j back to back, waits for S_{j+1} only, and runs the
 * softmax of tile j + 1 while O += P_j V_j is still on the tensor cores;
 * O's rescale by exp(m_j - m_{j+1}) waits for that product. In tilings 2
 * and 3 both warpgroups meet at every barrier and then run their softmax
 * at the same time, leaving the tensor cores idle; here the softmax hides
 * under a product. Costs: P_j's registers stay live through the softmax
 * of j + 1, and K runs a tile ahead of V: iteration j reads K_{j+1} and
 * V_j, the group committed two iterations earlier ({K_{j+1}, V_j}), and
 * refills their stages with K_{j+3} and V_{j+2} (two-stage rings). */
template <int D> struct HopperPipeCfg {
  static constexpr int NT = 256, BQ = 128, BK = 128;
  template <typename T> static constexpr size_t smem_bytes() {
    return (size_t)(BQ + 4 * BK) * D * sizeof(T) + BK * sizeof(int); /* Q, two stages of K and of V */
  }
};

template <typename T, int D>
__global__ void __launch_bounds__(HopperPipeCfg<D>::NT, 1) attn_hopper_fwd_pipe_kernel(AttnArgs a) {
#if ATTN_HAS_WGMMA
  typedef HopperPipeCfg<D> C;
  constexpr int NT = C::NT, BQ = C::BQ, BK = C::BK;
  constexpr int NS = BK / 8, NO = D / 8;
  ATTN_DYNAMIC_SMEM(T, sQ);
  T *sK = sQ + BQ * D;     /* K_j in stage j % 2 */
  T *sV = sK + 2 * BK * D; /* V_j in stage j % 2 */
  int *sKeep = reinterpret_cast<int *>(sV + 2 * BK * D);

  AttnSeg g;
  int tile;
  if (!attn_find_tile(a, BQ, &g, &tile))
    return;
  const int h = blockIdx.y, tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int gr = lane >> 2, tq = lane & 3;
  const int q0 = tile * BQ, wrow = warp * 16;
  const int64_t base = (int64_t)g.start * a.ld + (int64_t)h * D;
  const T *Qg = (const T *)a.q + base, *Kg = (const T *)a.k + base, *Vg = (const T *)a.v + base;
  const uint64_t qdesc = attn_wgmma_desc(sQ + (warp >> 2) * 64 * D, 128, 16 * D);
  const uint64_t kdesc = attn_wgmma_desc(sK, 128, 16 * D);
  const uint64_t vdesc = attn_wgmma_desc(sV, 16 * D, 128);
  constexpr uint64_t STAGE = BK * D / 8;

  const int kend = attn_key_end(a, g, q0, BQ);
  const int nkt = (kend + BK - 1) / BK;

  /* Q, K_0, V_0, K_1 (one group); S_0 once they land */
  attn_load_rows_core<T, D, BQ, NT>(sQ, Qg, a.ld, q0, g.n);
  attn_load_rows_core<T, D, BK, NT>(sK, Kg, a.ld, 0, g.n);
  attn_load_rows_core<T, D, BK, NT>(sV, Vg, a.ld, 0, g.n);
  if (nkt > 1)
    attn_load_rows_core<T, D, BK, NT>(sK + BK * D, Kg, a.ld, BK, g.n);
  attn_cp_async_commit();

  float o[1][NO][4], m[1][2], l[1][2];
  attn_fwd_init<1, NO>(o, m, l);
  float s[1][NS][4];
  uint32_t pa[BK / 16][4]; /* P_j as A fragments */

  /* Every wgmma sequence (fence, issue, commit, wait) is unconditional
   * within its block: a tile of padding only is computed and masked rather
   * than skipped, since ptxas serialises every wgmma of a kernel whose
   * issues sit on paths it cannot prove uniform. */
  attn_cp_async_wait_group<0>();
  attn_fence_proxy_async();
  if (nkt > 0) {
    int hidden, kept;
    attn_scan_key_tile<BK, NT>(g, 0, sKeep, &hidden, &kept);
    attn_wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
      AttnWgmma<T, BK>::ss(&s[0][0][0], qdesc + 16 * kk, kdesc + 16 * kk, kk > 0);
    attn_wgmma_commit();
    attn_wgmma_wait<0>();
    attn_wgmma_pin<NS * 4>(&s[0][0][0]);
    attn_mask_scores<1, NS, BK>(s, a, g, sKeep, hidden, q0 + wrow, 0, gr, tq);
    attn_online_softmax<1, NS, NO>(s, m, l, o, a.scale_log2, 0.0f); /* O = 0: the rescale is moot */
#pragma unroll
    for (int kk = 0; kk < BK / 16; kk++)
      attn_c_to_a<T>(s[0][2 * kk], s[0][2 * kk + 1], pa[kk]);
  }
  __syncthreads(); /* every warp is done with K_0: its stage takes K_2 */
  if (nkt > 2)
    attn_load_rows_core<T, D, BK, NT>(sK, Kg, a.ld, 2 * BK, g.n);
  if (nkt > 1)
    attn_load_rows_core<T, D, BK, NT>(sV + BK * D, Vg, a.ld, BK, g.n);
  attn_cp_async_commit(); /* {K_2, V_1} */

  for (int kt = 0; kt + 1 < nkt; kt++) {
    const int j1 = (kt + 1) * BK;
    attn_cp_async_wait_group<1>(); /* {K_{kt+1}, V_kt}; the newest group may still be in flight */
    attn_fence_proxy_async();
    int hidden, kept;
    attn_scan_key_tile<BK, NT>(g, j1, sKeep, &hidden, &kept); /* its barrier publishes the tiles */
    attn_wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
      AttnWgmma<T, BK>::ss(&s[0][0][0], qdesc + 16 * kk, kdesc + ((kt + 1) & 1) * STAGE + 16 * kk, kk > 0);
    attn_wgmma_commit(); /* S_{kt+1} */
#pragma unroll
    for (int kk = 0; kk < BK / 16; kk++)
      AttnWgmma<T, D>::rs_mn(&o[0][0][0], pa[kk], vdesc + (kt & 1) * STAGE + 2 * D * kk, true);
    attn_wgmma_commit(); /* O += P_kt V_kt */
    attn_wgmma_wait<1>();  /* S_{kt+1} done; the product into O runs on */
    attn_wgmma_pin<NS * 4>(&s[0][0][0]);
    float corr[1][2] = {{1.0f, 1.0f}};
    bool moved = false;
    /* One pass of a loop whose count ptxas cannot see: the softmax becomes
     * a block of its own, and the wait below stays below it. Without it
     * ptxas schedules the wait at the top of the softmax's block, so the
     * product finishes before any exponential runs (read off the SASS:
     * WARPGROUP.DEPBAR.LE gsb0, 0x0 before every MUFU.EX2; with it, all 66
     * per tile sit between the two waits). */
    for (int pass = 0; pass < a.opaque_one; pass++) {
      attn_mask_scores<1, NS, BK>(s, a, g, sKeep, hidden, q0 + wrow, j1, gr, tq);
      moved = attn_softmax_stats<1, NS>(s, m, l, corr, a.scale_log2, 0.0f);
    }
    attn_wgmma_wait<0>();
    attn_wgmma_pin<NO * 4>(&o[0][0][0]);
    attn_wgmma_pin<BK / 4>(&pa[0][0]);
    if (moved)
      attn_rescale_o<1, NO>(o, corr);
#pragma unroll
    for (int kk = 0; kk < BK / 16; kk++)
      attn_c_to_a<T>(s[0][2 * kk], s[0][2 * kk + 1], pa[kk]);
    __syncthreads(); /* every warp is done with K_{kt+1} and V_kt: their stages take K_{kt+3}, V_{kt+2} */
    if (kt + 3 < nkt)
      attn_load_rows_core<T, D, BK, NT>(sK + ((kt + 1) & 1) * BK * D, Kg, a.ld, (kt + 3) * BK, g.n);
    if (kt + 2 < nkt)
      attn_load_rows_core<T, D, BK, NT>(sV + (kt & 1) * BK * D, Vg, a.ld, (kt + 2) * BK, g.n);
    attn_cp_async_commit();
  }
  if (nkt > 0) { /* the last tile's O += P V */
    attn_cp_async_wait_group<1>(); /* V_{nkt-1} */
    attn_fence_proxy_async();
    __syncthreads();
    attn_wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < BK / 16; kk++)
      AttnWgmma<T, D>::rs_mn(&o[0][0][0], pa[kk], vdesc + ((nkt - 1) & 1) * STAGE + 2 * D * kk, true);
    attn_wgmma_commit();
    attn_wgmma_wait<0>();
    attn_wgmma_pin<NO * 4>(&o[0][0][0]);
    attn_wgmma_pin<BK / 4>(&pa[0][0]);
  }
  attn_cp_async_wait_all();

  attn_fwd_store<T, 1, NO>(a, g, h, base, q0 + wrow, o, m, l, 1.0f, a.scale, 0.0f);
#else
  (void)a; /* no wgmma in this image: attn_hopper_fwd_runs says so before any launch */
#endif
}

/* Tiling 5: tiling 4's loop in FlashAttention-3's warp-specialised form.
 * A third warpgroup produces: one of its threads moves Q and the K and V
 * tiles with TMA (cp.async.bulk.tensor, 128-byte swizzle), each tile
 * signalling a "full" mbarrier when its bytes have landed, and refills a
 * stage once the consumers' 8 warps have arrived on its "empty" mbarrier.
 * The two consumer warpgroups run tiling 4's pipelined loop (S_{j+1} and
 * O += P_j V_j issued together, the softmax of j + 1 under the product)
 * and never wait for a load they did not need, never issue one, and never
 * meet the other warpgroup at a barrier (padded masks aside): in tilings
 * 2-4 every thread also issued the loads, and both warpgroups met at two
 * barriers per tile. setmaxnreg moves registers from the producer (24) to
 * the consumers (240), which tiling 4 at 195 registers needs once a CTA has
 * 384 threads.
 *
 * Shared memory: Q [D/64][BQ][64], K and V two stages each of [D/64][BK][64]
 * (rows of 128 bytes, as TMA writes them; descriptors in mode 1), the
 * padded-mode key flags for two tiles (a warpgroup may run a tile ahead of
 * the other), the mbarriers. Loads past the tensor's end are zeros; rows
 * past a sequence's end inside it are another sequence's (or the varlen
 * budget's unwritten tail): their scores are masked, and the last V tile's
 * rows past the end are zeroed before O += P V, since 0 x NaN would be
 * NaN.
 *
 * Tiling 7: the same kernel, persistent: one CTA per SM walks the tiles
 * (attn_find_work), and the rings run on from one tile to the next. With a
 * CTA per tile, each CTA paid its start (barriers, setmaxnreg, Q and the
 * first K tile's latency before the first product) and its end (the last
 * P V and the output with nothing loading) in full: the H200's short-L
 * rates (L = 512: 0.62-0.64x its L = 16k rate, ATTENTION.md) fit a fixed
 * 1.7-3.2 us per CTA. Here the producer loads the next tile's Q and keys
 * while the consumers finish.
 *
 * Tiling 8: tiling 7 with three consumer warpgroups at D = 64, 192 query
 * rows per tile, as FlashAttention-3 runs head dim 64: there the
 * exponentials (16 per clock and SM) take about as long as the products,
 * and a third warpgroup's softmax gives the tensor cores more to overlap.
 * The consumers get 160 registers each (tiling 5's need 157 at D = 64;
 * 128 x 24 + 384 x 160 fit the SM's 64K). At D = 128 (183 needed) tiling 8
 * is tiling 7.
 *
 * Tiling 9: tiling 6 (ping-pong) with ATTN_FWD_EXP_FMA of the 16 column
 * pairs of each thread's scores exponentiated by a polynomial on the FMA
 * pipe (attn_exp2_fma), FlashAttention-4's way past the exponential unit's
 * 16 lanes per clock: per 32 scores a warp's softmax needs about 5 issue
 * cycles and 8 of MUFU, so moving 3/16 of them (9 instructions each) to
 * the FMA pipe gives about 6.5 of each (ATTENTION.md, "Forward tilings 9 and 10").
 * Not the same bits as tiling 6: within 7.5e-5 of each of those P.
 * Tiling 10: the same exponentials in tiling 5 (no ping-pong), where the
 * two warpgroups' softmaxes may run at once and share the MUFU. */
/* setmaxnreg (AttnRegSplit): the producer warpgroup keeps 24 registers per
 * thread (40 when its warps 1-3 transpose e4m3 V), the consumers get 240 (224
 * beside the transposers; 160 for three consumer warpgroups). */
template <int CWG, bool VTP>
using HopperWsRegs = AttnRegSplit<VTP ? 40 : 24, VTP ? 224 : CWG == 3 ? 160 : 240, 128 * CWG>;

/* Tiling 9: of a thread's 16 score column pairs per key tile, how many take
 * their exponentials on the FMA pipe. */
constexpr int ATTN_FWD_EXP_FMA = 3;

template <int D, int CWG = 2> struct HopperWsCfg {
  static_assert(CWG == 2 || (CWG == 3 && D == 64), "three consumer warpgroups at D = 64 only");
  static constexpr int CONSUMERS = 128 * CWG, NT = 128 + CONSUMERS, BQ = 64 * CWG, BK = 128, NSTAGE = 2;
  /* e4m3 (1-byte T): each consumer warpgroup's two V^T buffers */
  template <typename T> __host__ __device__ static constexpr size_t vt_bytes() {
    return sizeof(T) == 1 ? (size_t)2 * CWG * D * BK : 0;
  }
  /* QB Q buffers: 2 in the persistent kernels (WsSmem) */
  template <typename T, int QB = 1> static constexpr size_t smem_bytes() {
    return 1024 /* alignment */ + (size_t)(QB * BQ + 2 * NSTAGE * BK) * D * sizeof(T) + vt_bytes<T>() +
           2 * BK * sizeof(int) + (2 * QB + 6 * NSTAGE) * sizeof(uint64_t);
  }
};

/* Padded mode: the flags of keys j0.. (sKeep) and whether any is hidden,
 * among the consumer threads only (ct: 0 .. CONSUMERS-1). */
template <int BK, int CONSUMERS, int BAR>
__device__ __forceinline__ int attn_ws_scan_keys(const AttnSeg &g, int j0, int ct, int *sKeep) {
  if (!g.mask)
    return 0;
  int hid = 0, kept = 0;
  attn_bwd_mark_keys<BK, CONSUMERS>(g, j0, ct, sKeep, &hid, &kept);
  return attn_named_bar_or(BAR, CONSUMERS, hid);
}

/* Tiling 6: tiling 5 with FlashAttention-3's ping-pong between the two
 * consumer warpgroups. Each round of products (S_0; then S_{j+1} with
 * O += P_j V_j; then the last O += P V) is issued by warpgroup 0, then by
 * warpgroup 1, then by 0 again: before issuing, a warpgroup waits on its
 * named barrier, after issuing it arrives on the other's (bar.arrive does
 * not wait). So while one warpgroup's products run on the tensor cores, the
 * other runs its softmax, on top of tiling 4's overlap within a warpgroup.
 * Warpgroup 1 opens with an arrival on warpgroup 0's barrier and leaves out
 * its last one, so every barrier phase is complete when the CTA exits. */
#if ATTN_HAS_WGMMA
template <bool PINGPONG> struct AttnPingPong {
  int me, other; /* named barrier ids: this warpgroup's and the other's */
  __device__ __forceinline__ AttnPingPong(int cw) : me(3 + cw), other(4 - cw) {
    if (PINGPONG && cw == 1)
      attn_named_bar_arrive(other, 256); /* warpgroup 0 issues first */
  }
  __device__ __forceinline__ void before_issue() const {
    if (PINGPONG)
      attn_named_bar_sync(me, 256);
  }
  __device__ __forceinline__ void after_issue(bool last_round) const {
    if (PINGPONG && !(last_round && me == 4))
      attn_named_bar_arrive(other, 256);
  }
};
#endif

#if ATTN_HAS_WGMMA /* the kernel's parts: sm_90a code only */
/* Tiling 5's shared memory: QB buffers of Q [D/COLS][BQ][COLS], K and V
 * NSTAGE stages each of [D/COLS][BK][COLS] (rows of 128 bytes, or in e4m3
 * at D = 64 of 64, as TMA writes them), in e4m3 each consumer warpgroup's
 * two V^T buffers, the key flags of two key tiles, the mbarriers. A CTA per
 * tile needs one Q; the persistent kernels (tilings 7, 8) have two, query
 * tile it in buffer it % 2, so the producer loads the next tile's Q while
 * the consumers still read this one's (with one, it could start only after
 * the tile's last S, and the next tile's first S waited for the load). */
template <typename T, int D, int CWG, int QB = 1> struct WsSmem {
  typedef HopperWsCfg<D, CWG> C;
  /* columns per TMA box: 128 bytes, or the whole row where it is shorter
   * (attn_tma_map_rows); the box's swizzle in bytes */
  static constexpr int COLS = D * (int)sizeof(T) < 128 ? D : 128 / (int)sizeof(T), SWIZZLE = COLS * (int)sizeof(T);
  static_assert(SWIZZLE == 64 || SWIZZLE == 128, "TMA boxes of 64 or 128 bytes");
  /* one pointer, everything else at fixed offsets from it: a persistent
   * producer keeps its tiles' state in 24 registers */
  T *q;
  __device__ __forceinline__ explicit WsSmem(unsigned char *raw)
      : q(reinterpret_cast<T *>(attn_align_smem_1024(raw))) {}
  /* query tile it (counted over the CTA's work) in Q buffer it % QB; the
   * phase of its full / empty barriers */
  __device__ __forceinline__ T *qbuf(uint32_t it) const { return q + (it % QB) * C::BQ * D; }
  static __device__ __forceinline__ uint32_t q_phase(uint32_t it) { return (it / QB) & 1; }
  /* key tile n (counted over the CTA's work) in stage n % NSTAGE */
  __device__ __forceinline__ T *k(uint32_t st) const { return q + (QB * C::BQ + st * C::BK) * D; }
  __device__ __forceinline__ T *v(uint32_t st) const { return q + (QB * C::BQ + (C::NSTAGE + st) * C::BK) * D; }
  /* e4m3: consumer warpgroup cw's V^T buffer b ([D][BK], core-matrix layout) */
  __device__ __forceinline__ uint8_t *vt(int cw, uint32_t b) const {
    return reinterpret_cast<uint8_t *>(q + (QB * C::BQ + 2 * C::NSTAGE * C::BK) * D) + (2 * cw + b) * D * C::BK;
  }
  /* [2][BK]: key tile n's flags in slot n % 2 */
  __device__ __forceinline__ int *keep(uint32_t slot) const {
    return reinterpret_cast<int *>(reinterpret_cast<unsigned char *>(q + (QB * C::BQ + 2 * C::NSTAGE * C::BK) * D) +
                                   C::template vt_bytes<T>()) +
           slot * C::BK;
  }
  __device__ __forceinline__ uint64_t *bar(int i) const { return reinterpret_cast<uint64_t *>(keep(2)) + i; }
  __device__ __forceinline__ uint64_t *full_q(uint32_t it) const { return bar(it % QB); }
  __device__ __forceinline__ uint64_t *empty_q(uint32_t it) const { return bar(QB + it % QB); }
  __device__ __forceinline__ uint64_t *full_k(uint32_t st) const { return bar(2 * QB + st); }
  __device__ __forceinline__ uint64_t *full_v(uint32_t st) const { return bar(2 * QB + C::NSTAGE + st); }
  __device__ __forceinline__ uint64_t *empty_k(uint32_t st) const { return bar(2 * QB + 2 * C::NSTAGE + st); }
  __device__ __forceinline__ uint64_t *empty_v(uint32_t st) const { return bar(2 * QB + 3 * C::NSTAGE + st); }
  /* e4m3 with the producer's warps transposing V (VTP): V^T stage st (in
   * vt(0, st)) made, and read by the consumers */
  __device__ __forceinline__ uint64_t *full_vt(uint32_t st) const { return bar(2 * QB + 4 * C::NSTAGE + st); }
  __device__ __forceinline__ uint64_t *empty_vt(uint32_t st) const { return bar(2 * QB + 5 * C::NSTAGE + st); }
  /* a consumer warp's lane 0, once S of the key tile in stage st is in: K
   * read, and query tile it's Q too after its last S */
  __device__ __forceinline__ void release_after_s(uint32_t st, bool last_s, uint32_t it) const {
    attn_mbar_arrive(empty_k(st));
    if (last_s)
      attn_mbar_arrive(empty_q(it));
  }
};

/* The producer's loads for one query tile (rows q0.. of the sequence at
 * token `start`, head h, nkt key tiles; it: the CTA's tile count so far):
 * Q into its buffer once the consumers have released the tile's before it
 * there (the previous tile's with one buffer), then K and V of each key
 * tile into the stage the ring gives key tile kbase + j, once the consumers
 * have released what it held. One thread. */
template <typename T, int D, int CWG, int QB>
__device__ __forceinline__ void ws_produce_tile(const AttnTmaMaps &maps, const WsSmem<T, D, CWG, QB> &sm, int start,
                                                int q0, int h, int nkt, uint32_t it, uint32_t kbase) {
  typedef HopperWsCfg<D, CWG> C;
  constexpr int BQ = C::BQ, BK = C::BK, NSTAGE = C::NSTAGE, COLS = WsSmem<T, D, CWG, QB>::COLS, CH = D / COLS;
  constexpr uint32_t QBYTES = BQ * D * sizeof(T), KBYTES = BK * D * sizeof(T);
  if (it >= QB) /* the consumers' last S of tile it - QB has read this buffer */
    attn_mbar_wait(sm.empty_q(it), WsSmem<T, D, CWG, QB>::q_phase(it - QB));
  attn_mbar_arrive_expect_tx(sm.full_q(it), QBYTES);
  T *const q = sm.qbuf(it);
#pragma unroll
  for (int c = 0; c < CH; c++)
    attn_tma_load_3d(q + c * BQ * COLS, &maps.q, COLS * c, h, start + q0, sm.full_q(it));
#pragma unroll 1 /* unrolled, the stages' addresses would not fit the producer's 24 registers */
  for (int j = 0; j < nkt; j++) {
    const uint32_t n = kbase + j, st = n % NSTAGE;
    const uint32_t parity = ((n / NSTAGE) - 1) & 1; /* the consumers' previous release of this stage */
    if (n >= NSTAGE)
      attn_mbar_wait(sm.empty_k(st), parity);
    attn_mbar_arrive_expect_tx(sm.full_k(st), KBYTES);
#pragma unroll
    for (int c = 0; c < CH; c++)
      attn_tma_load_3d(sm.k(st) + c * BK * COLS, &maps.k, COLS * c, h, start + j * BK, sm.full_k(st));
    if (n >= NSTAGE)
      attn_mbar_wait(sm.empty_v(st), parity);
    attn_mbar_arrive_expect_tx(sm.full_v(st), KBYTES);
#pragma unroll
    for (int c = 0; c < CH; c++)
      attn_tma_load_3d(sm.v(st) + c * BK * COLS, &maps.v, COLS * c, h, start + j * BK, sm.full_v(st));
  }
}

/* The consumers' work on one query tile of nkt key tiles (tiling 4's
 * pipelined loop): the stages and key-flag slots of key tile kbase + j,
 * Q's phase `it`; each
 * consumer warp's lane 0 releases K_j after S_j, V_j after O += P_j V_j,
 * and Q after the tile's last S. Ends with the tile's output. */
template <typename T, int D, int CWG, bool PINGPONG, int QB, int NFMA>
__device__ __forceinline__ void ws_consume_tile(const AttnArgs &a, const WsSmem<T, D, CWG, QB> &sm, const AttnSeg &g,
                                                int h, int tile, int nkt, uint32_t it, uint32_t kbase) {
  typedef HopperWsCfg<D, CWG> C;
  constexpr int BQ = C::BQ, BK = C::BK, NSTAGE = C::NSTAGE, NS = BK / 8, NO = D / 8, CH = D / 64;
  constexpr int CONSUMERS = C::CONSUMERS, BAR_KEYS = 1, BAR_VTAIL = 2; /* named barriers among the consumers */
  /* cwarp warp-uniform: 28-52 fewer instructions per key tile */
  const int tid = threadIdx.x, lane = tid & 31, ct = tid - 128, cwarp = attn_warp_uniform((tid >> 5) - 4);
  const int gr = lane >> 2, tq = lane & 3, wrow = cwarp * 16;
  const int q0 = tile * BQ;
  const int64_t base = (int64_t)g.start * a.ld + (int64_t)h * D;
  /* Descriptors in 16-byte units (attention_common.cuh, attn_wgmma_desc_sw128).
   * Q, K (K-major): a k-step of 16 columns is 32 bytes along the 128-byte
   * row (+2), every fourth one moves to the next 64-column chunk (rows x
   * 128 bytes: attn_sw128_kstep); 8-row groups 1024 bytes apart. V (MN-major): a
   * k-step of 16 keys is 16 rows (+128); its 64-column chunks are LBO =
   * BK x 128 bytes apart. A stage is BK D elements (+BK D / 8). */
  const AttnPingPong<PINGPONG> turn(cwarp >> 2);
  const uint64_t qdesc = attn_wgmma_desc_sw128(sm.qbuf(it) + (cwarp >> 2) * 64 * 64, 16, 1024);
  const uint64_t kdesc = attn_wgmma_desc_sw128(sm.k(0), 16, 1024);
  const uint64_t vdesc = attn_wgmma_desc_sw128(sm.v(0), BK * 128, 1024);
  constexpr uint64_t STAGE = BK * D / 8;

  float o[1][NO][4], m[1][2], l[1][2];
  attn_fwd_init<1, NO>(o, m, l);
  float s[1][NS][4];
  uint32_t pa[BK / 16][4]; /* P_j as A fragments */

  attn_mbar_wait(sm.full_q(it), sm.q_phase(it));
  {
    const uint32_t sk = kbase % NSTAGE;
    int *keep = sm.keep(kbase & 1);
    attn_mbar_wait(sm.full_k(sk), (kbase / NSTAGE) & 1);
    const int hidden = attn_ws_scan_keys<BK, CONSUMERS, BAR_KEYS>(g, 0, ct, keep);
    turn.before_issue();
    attn_wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
      AttnWgmma<T, BK>::ss(&s[0][0][0], qdesc + attn_sw128_kstep(kk, BQ), kdesc + sk * STAGE + attn_sw128_kstep(kk, BK),
                           kk > 0);
    attn_wgmma_commit();
    turn.after_issue(false);
    attn_wgmma_wait<0>();
    attn_wgmma_pin<NS * 4>(&s[0][0][0]);
    if (lane == 0)
      sm.release_after_s(sk, nkt == 1, it); /* K read; Q after the tile's last S */
    attn_mask_scores<1, NS, BK>(s, a, g, keep, hidden, q0 + wrow, 0, gr, tq);
    attn_online_softmax<1, NS, NO, NFMA>(s, m, l, o, a.scale_log2, 0.0f); /* O = 0: the rescale is moot */
#pragma unroll
    for (int kk = 0; kk < BK / 16; kk++)
      attn_c_to_a<T>(s[0][2 * kk], s[0][2 * kk + 1], pa[kk]);
  }

  for (int kt = 0; kt + 1 < nkt; kt++) {
    const uint32_t n1 = kbase + kt + 1, n0 = kbase + kt; /* key tiles kt + 1 (S) and kt (P V) */
    const uint32_t sk = n1 % NSTAGE, sv = n0 % NSTAGE;
    const int j1 = (kt + 1) * BK;
    int *keep = sm.keep(n1 & 1);
    attn_mbar_wait(sm.full_k(sk), (n1 / NSTAGE) & 1);
    attn_mbar_wait(sm.full_v(sv), (n0 / NSTAGE) & 1);
    const int hidden = attn_ws_scan_keys<BK, CONSUMERS, BAR_KEYS>(g, j1, ct, keep);
    turn.before_issue();
    attn_wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
      AttnWgmma<T, BK>::ss(&s[0][0][0], qdesc + attn_sw128_kstep(kk, BQ), kdesc + sk * STAGE + attn_sw128_kstep(kk, BK),
                           kk > 0);
    attn_wgmma_commit(); /* S_{kt+1} */
#pragma unroll
    for (int kk = 0; kk < BK / 16; kk++)
      AttnWgmma<T, D>::rs_mn(&o[0][0][0], pa[kk], vdesc + sv * STAGE + 128 * kk, true);
    attn_wgmma_commit(); /* O += P_kt V_kt */
    turn.after_issue(false);
    attn_wgmma_wait<1>(); /* S_{kt+1} done; the product into O runs on */
    attn_wgmma_pin<NS * 4>(&s[0][0][0]);
    if (lane == 0)
      sm.release_after_s(sk, kt + 2 == nkt, it); /* K read; Q after the tile's last S */
    float corr[1][2] = {{1.0f, 1.0f}};
    bool moved = false;
    for (int pass = 0; pass < a.opaque_one; pass++) { /* the softmax between the waits: see tiling 4 */
      attn_mask_scores<1, NS, BK>(s, a, g, keep, hidden, q0 + wrow, j1, gr, tq);
      moved = attn_softmax_stats<1, NS, NFMA>(s, m, l, corr, a.scale_log2, 0.0f);
    }
    attn_wgmma_wait<0>();
    attn_wgmma_pin<NO * 4>(&o[0][0][0]);
    attn_wgmma_pin<BK / 4>(&pa[0][0]);
    if (lane == 0)
      attn_mbar_arrive(sm.empty_v(sv)); /* V_kt read */
    if (moved)
      attn_rescale_o<1, NO>(o, corr);
#pragma unroll
    for (int kk = 0; kk < BK / 16; kk++)
      attn_c_to_a<T>(s[0][2 * kk], s[0][2 * kk + 1], pa[kk]);
  }

  { /* the last key tile's O += P V */
    const int last = nkt - 1;
    const uint32_t n = kbase + last, sv = n % NSTAGE;
    attn_mbar_wait(sm.full_v(sv), (n / NSTAGE) & 1);
    const int valid = g.n - last * BK; /* its rows at or past this are not the sequence's */
    if (valid < BK) {
      T *vt = sm.v(sv);
#pragma unroll 1 /* once per query tile: unrolled, its hoisted offsets spilled in the persistent loop */
      for (int i = ct; i < CH * (BK - valid) * 8; i += CONSUMERS) { /* 16-byte chunks of whole rows */
        const int c = i / ((BK - valid) * 8), r = valid + (i / 8) % (BK - valid);
        /* whole rows: the swizzle only permutes chunks within a row */
        attn_sts_zero16_for_wgmma(vt + c * BK * 64 + r * 64 + (i % 8) * 8);
      }
      attn_fence_proxy_async(); /* before the wgmma reads them, and before TMA refills the stage */
      attn_named_bar_sync(BAR_VTAIL, CONSUMERS);
    }
    turn.before_issue();
    attn_wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < BK / 16; kk++)
      AttnWgmma<T, D>::rs_mn(&o[0][0][0], pa[kk], vdesc + sv * STAGE + 128 * kk, true);
    attn_wgmma_commit();
    turn.after_issue(true);
    attn_wgmma_wait<0>();
    attn_wgmma_pin<NO * 4>(&o[0][0][0]);
    attn_wgmma_pin<BK / 4>(&pa[0][0]);
    if (lane == 0)
      attn_mbar_arrive(sm.empty_v(sv)); /* V_last read: the stage may take the next tile's keys */
  }

  attn_fwd_store<T, 1, NO>(a, g, h, base, q0 + wrow, o, m, l, 1.0f, a.scale, 0.0f);
}

/* V^T of a 128-key tile (V as TMA wrote it, rows swizzled by SW bytes) into
 * vt, core-matrix layout, by the NW warps `warp` (0 .. NW-1) of whoever
 * transposes; keys at or past `valid` (the sequence's end) as zeros: they
 * are whatever TMA read there (the next sequence, or bytes nobody wrote:
 * maybe NaN), and P = 0 does not hide NaN. */
template <int BK, int D, int NW, int SW, typename Store>
__device__ __forceinline__ void ws_fp8_vt_blocks(const uint8_t *sv, int warp, int lane, Store store) {
  constexpr int NB = (BK / 16) * (D / 32); /* 16-key x 32-dim blocks */
  if constexpr (NB % NW == 0) {
    fp8_vt_tile<BK, D, NW, SW>(sv, D, warp, lane, store);
  } else { /* three warps: a rolled loop, in the producer's 40 registers */
#pragma unroll 1
    for (int b = warp; b < NB; b += NW)
      fp8_vt_block<SW>(sv, D, (b % (BK / 16)) * 16, (b / (BK / 16)) * 32, lane, store);
  }
}
template <int BK, int D, int NW, int SW>
__device__ __forceinline__ void ws_fp8_transpose(const uint8_t *sv, uint8_t *vt, int valid, int warp, int lane) {
  if (valid >= BK)
    ws_fp8_vt_blocks<BK, D, NW, SW>(sv, warp, lane, [&](int dim, int slot, uint32_t w) {
      attn_sts_u32_for_wgmma(vt + fp8_vt_core_at<BK>(dim, slot), w);
    });
  else
    ws_fp8_vt_blocks<BK, D, NW, SW>(sv, warp, lane, [&](int dim, int slot, uint32_t w) {
      attn_sts_u32_for_wgmma(vt + fp8_vt_core_at<BK>(dim, slot), w & fp8_vt_word_mask(slot, valid));
    });
}

/* Tiling 8's e4m3 form: warps 1-3 of the producer warpgroup make V^T
 * (FlashAttention-3's arrangement), once per key tile for both consumer
 * warpgroups, into the V^T stage of key tile n (n % NSTAGE): they wait for
 * V (TMA) and for the consumers' release of the V^T stage, transpose,
 * fence.proxy.async, and each warp's lane 0 arrives on the V^T stage's
 * full barrier and on V's empty one (TMA may refill it). Key tiles
 * kbase .. kbase + nkt - 1 of a query tile whose sequence has n_seq keys. */
template <int D, int CWG, int QB>
__device__ __forceinline__ void ws_transpose_tile(const WsSmem<uint8_t, D, CWG, QB> &sm, int n_seq, int nkt,
                                                  uint32_t kbase, int warp, int lane) {
  typedef HopperWsCfg<D, CWG> C;
  constexpr int BK = C::BK, NSTAGE = C::NSTAGE;
#pragma unroll 1 /* the producer's 40 registers */
  for (int j = 0; j < nkt; j++) {
    const uint32_t n = kbase + j, st = n % NSTAGE;
    attn_mbar_wait(sm.full_v(st), (n / NSTAGE) & 1);
    if (n >= NSTAGE)
      attn_mbar_wait(sm.empty_vt(st), ((n / NSTAGE) - 1) & 1); /* the consumers' P V of key tile n - NSTAGE */
    ws_fp8_transpose<BK, D, 3, WsSmem<uint8_t, D, CWG, QB>::SWIZZLE>(sm.v(st), sm.vt(0, st), n_seq - j * BK,
                                                                     warp - 1, lane);
    attn_fence_proxy_async(); /* the stores are read by wgmma */
    __syncwarp();
    if (lane == 0) {
      attn_mbar_arrive(sm.full_vt(st));
      attn_mbar_arrive(sm.empty_v(st));
    }
  }
}

/* The e4m3 consumers (fp8 under tilings 7 and 8): the loop above with the
 * fp8 forward's pieces (attention_fp8.cuh; S = Q K^T and O += P V^T^T as
 * QGMMA k32 steps, P scaled by 2^8 and packed in the permuted key order,
 * the descales in the store). 8-bit wgmma operands are K-major only, so P V
 * needs V^T, which the consumers make from the V that TMA delivered (its
 * rows swizzled, read with ldmatrix.trans: fp8_vt_tile). Each warpgroup
 * transposes the whole tile into its own two V^T buffers (a tile's V^T is
 * made while S of that tile and P V of the one before run on the tensor
 * cores), so the two warpgroups still meet only at the key-flag scan: a
 * named barrier of the warpgroup's 128 threads publishes its V^T (after
 * fence.proxy.async) and also tells its warps that every warp has waited
 * for the P V that read the buffer being refilled next (a warp's wait
 * covers only its own share of a wgmma). A warp releases the V stage as
 * soon as it has transposed its share. Keys past the sequence's end
 * (whatever TMA read there, maybe NaN) become zeros in V^T. */
template <int D, int CWG, bool VTP, int NFMA, int QB>
__device__ __forceinline__ void ws_consume_tile_fp8(const AttnArgs &a, const WsSmem<uint8_t, D, CWG, QB> &sm,
                                                    const AttnSeg &g, int h, int tile, int nkt, uint32_t it,
                                                    uint32_t kbase) {
  typedef HopperWsCfg<D, CWG> C;
  typedef WsSmem<uint8_t, D, CWG, QB> Sm;
  constexpr int BQ = C::BQ, BK = C::BK, NSTAGE = C::NSTAGE, NS = BK / 8, NO = D / 8;
  /* named barriers: 1 among all consumers, 3 + cw within warpgroup cw */
  constexpr int CONSUMERS = C::CONSUMERS, BAR_KEYS = 1;
  static_assert(Sm::COLS == D, "e4m3 rows are one TMA box (64 or 128 bytes)");
  static_assert(NSTAGE == 2, "V^T buffer n % 2 is also V^T stage n % NSTAGE (VTP)");
  const int tid = threadIdx.x, lane = tid & 31, ct = tid - 128, cwarp = (tid >> 5) - 4, cw = cwarp >> 2;
  const int gr = lane >> 2, tq = lane & 3, wrow = cwarp * 16;
  const int q0 = tile * BQ, bar_vt = 3 + cw;
  const int64_t base = (int64_t)g.start * a.ld + (int64_t)h * D;
  const Fp8Scales sc = fp8_scales(a);
  /* Q, K: K-major rows of D bytes as TMA swizzled them (128- or 64-byte
   * swizzle), 8-row groups 8 D bytes apart; a k-step of 32 is 32 bytes
   * along the row (+2). V^T: the no-swizzle core-matrix layout
   * (fp8_vt_core_at), a k-step of 32 key slots two core matrices (+16). */
  auto desc_rows = [](const uint8_t *p) {
    return D == 128 ? attn_wgmma_desc_sw128(p, 16, 8 * D) : attn_wgmma_desc_sw64(p, 16, 8 * D);
  };
  const uint64_t qdesc = desc_rows(sm.qbuf(it) + cw * 64 * D), kdesc = desc_rows(sm.k(0));
  const uint64_t vdesc = attn_wgmma_desc(sm.vt(VTP ? 0 : cw, 0), 128, 8 * BK); /* VTP: one V^T per stage */
  constexpr uint64_t STAGE = BK * D / 16; /* a K stage or a V^T buffer, 16-byte units */

  /* V^T of key tile j (the CTA's key tile n) into this warpgroup's buffer
   * n % 2; with VTP the producer's warps made it (ws_transpose_tile) */
  auto transpose_v = [&](uint32_t n, int j) {
    if (VTP)
      return;
    ws_fp8_transpose<BK, D, 4, Sm::SWIZZLE>(sm.v(n % NSTAGE), sm.vt(cw, n & 1), g.n - j * BK, cwarp & 3, lane);
    __syncwarp();
    if (lane == 0)
      attn_mbar_arrive(sm.empty_v(n % NSTAGE)); /* this warp's share of V read */
  };
  /* VTP: V^T of key tile n made (before the P V that reads it), and read */
  auto wait_vt = [&](uint32_t n) {
    if (VTP)
      attn_mbar_wait(sm.full_vt(n % NSTAGE), (n / NSTAGE) & 1);
  };
  auto release_vt = [&](uint32_t n) {
    if (VTP && lane == 0)
      attn_mbar_arrive(sm.empty_vt(n % NSTAGE));
  };
  /* without VTP: this warpgroup's V^T published (its stores fenced for
   * wgmma), and every warp past the P V that read the other buffer */
  auto publish_vt = [&]() {
    if (!VTP) {
      attn_fence_proxy_async();
      attn_named_bar_sync(bar_vt, 128);
    }
  };

  float o[1][NO][4], m[1][2], l[1][2];
  attn_fwd_init<1, NO>(o, m, l);
  float s[1][NS][4];
  uint32_t pa[BK / 32][4]; /* P_j as fp8 A fragments */

  attn_mbar_wait(sm.full_q(it), sm.q_phase(it));
  { /* S_0 and P_0; V^T_0 */
    const uint32_t st = kbase % NSTAGE;
    int *keep = sm.keep(kbase & 1);
    attn_mbar_wait(sm.full_k(st), (kbase / NSTAGE) & 1);
    if (!VTP)
      attn_mbar_wait(sm.full_v(st), (kbase / NSTAGE) & 1);
    const int hidden = attn_ws_scan_keys<BK, CONSUMERS, BAR_KEYS>(g, 0, ct, keep);
    attn_wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < D / 32; kk++)
      AttnWgmmaE4m3<BK>::ss(&s[0][0][0], qdesc + 2 * kk, kdesc + st * STAGE + 2 * kk, kk > 0);
    attn_wgmma_commit();
    transpose_v(kbase, 0); /* under S_0 */
    attn_wgmma_wait<0>();
    attn_wgmma_pin<NS * 4>(&s[0][0][0]);
    if (lane == 0)
      sm.release_after_s(st, nkt == 1, it); /* K read; Q after the tile's last S */
    attn_mask_scores<1, NS, BK>(s, a, g, keep, hidden, q0 + wrow, 0, gr, tq);
    attn_online_softmax<1, NS, NO, NFMA>(s, m, l, o, sc.qk_log2, 8.0f); /* P scaled by 2^8; O = 0: no rescale */
#pragma unroll
    for (int kc = 0; kc < BK / 32; kc++)
      fp8_c_to_a(&s[0][4 * kc], pa[kc]);
    publish_vt(); /* V^T_0 */
  }

  for (int kt = 0; kt + 1 < nkt; kt++) {
    const uint32_t n1 = kbase + kt + 1, n0 = kbase + kt; /* key tiles kt + 1 (S, V^T) and kt (P V) */
    const uint32_t st = n1 % NSTAGE;
    const int j1 = (kt + 1) * BK;
    int *keep = sm.keep(n1 & 1);
    attn_mbar_wait(sm.full_k(st), (n1 / NSTAGE) & 1);
    if (!VTP)
      attn_mbar_wait(sm.full_v(st), (n1 / NSTAGE) & 1);
    const int hidden = attn_ws_scan_keys<BK, CONSUMERS, BAR_KEYS>(g, j1, ct, keep);
    wait_vt(n0);
    attn_wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < D / 32; kk++)
      AttnWgmmaE4m3<BK>::ss(&s[0][0][0], qdesc + 2 * kk, kdesc + st * STAGE + 2 * kk, kk > 0);
    attn_wgmma_commit(); /* S_{kt+1} */
#pragma unroll
    for (int kc = 0; kc < BK / 32; kc++)
      AttnWgmmaE4m3<D>::rs(&o[0][0][0], pa[kc], vdesc + (n0 & 1) * STAGE + 16 * kc, true);
    attn_wgmma_commit(); /* O += P_kt V_kt */
    /* V^T_{kt+1} while both run: its buffer's last reader, P V of kt - 1,
     * was waited for by every warp before the last barrier */
    transpose_v(n1, kt + 1);
    attn_wgmma_wait<1>(); /* S_{kt+1} done; the product into O runs on */
    attn_wgmma_pin<NS * 4>(&s[0][0][0]);
    if (lane == 0)
      sm.release_after_s(st, kt + 2 == nkt, it); /* K read; Q after the tile's last S */
    float corr[1][2] = {{1.0f, 1.0f}};
    bool moved = false;
    for (int pass = 0; pass < a.opaque_one; pass++) { /* the softmax between the waits: see tiling 4 */
      attn_mask_scores<1, NS, BK>(s, a, g, keep, hidden, q0 + wrow, j1, gr, tq);
      moved = attn_softmax_stats<1, NS, NFMA>(s, m, l, corr, sc.qk_log2, 8.0f); /* P scaled by 2^8 */
    }
    attn_wgmma_wait<0>();
    attn_wgmma_pin<NO * 4>(&o[0][0][0]);
    attn_wgmma_pin<BK / 8>(&pa[0][0]);
    release_vt(n0);
    if (moved)
      attn_rescale_o<1, NO>(o, corr);
#pragma unroll
    for (int kc = 0; kc < BK / 32; kc++)
      fp8_c_to_a(&s[0][4 * kc], pa[kc]);
    publish_vt(); /* V^T_{kt+1} */
  }

  { /* the last key tile's O += P V */
    const uint32_t n = kbase + nkt - 1;
    wait_vt(n);
    attn_wgmma_fence();
#pragma unroll
    for (int kc = 0; kc < BK / 32; kc++)
      AttnWgmmaE4m3<D>::rs(&o[0][0][0], pa[kc], vdesc + (n & 1) * STAGE + 16 * kc, true);
    attn_wgmma_commit();
    attn_wgmma_wait<0>();
    attn_wgmma_pin<NO * 4>(&o[0][0][0]);
    attn_wgmma_pin<BK / 8>(&pa[0][0]);
    release_vt(n);
  }

  attn_fwd_store<attn_bf16, 1, NO>(a, g, h, base, q0 + wrow, o, m, l, sc.vds, sc.qk, -8.0f * ATTN_LN2);
}
#endif

/* Tilings 5 and 6 (PERSIST false: a CTA per query tile), 7 and 8 (PERSIST:
 * a CTA per SM, walking the tiles attn_find_work gives it, every
 * gridDim.x-th from blockIdx.x; 8: CWG = 3 consumer warpgroups at D = 64).
 * Both sides count the CTA's tiles (`it`, Q's phase) and
 * key tiles (`kbase`, the stages' and key-flag slots) so far, so the rings
 * run on from one tile to the next: while the consumers finish a tile
 * (its last O += P V, the output), the producer loads the next tile's Q
 * (once they have released it, after their last S) and keys. */
template <typename T, int D, int CWG, bool PINGPONG, bool PERSIST, bool VTP, int NFMA>
__global__ void __launch_bounds__(HopperWsCfg<D, CWG>::NT, 1)
    attn_hopper_fwd_ws_kernel(AttnArgs a, const __grid_constant__ AttnTmaMaps maps) {
  static_assert(!(PINGPONG && (PERSIST || CWG != 2)), "the ping-pong turns: two warpgroups, one tile per CTA");
  static_assert(!VTP || (sizeof(T) == 1 && CWG == 2 && PERSIST), "the producer's warps transpose V: e4m3, tiling 8");
  static_assert(NFMA == 0 || sizeof(T) == 2 || VTP, "exponentials on the FMA pipe: bf16/f16 (tilings 9, 10), e4m3 "
                                                    "in tiling 8's form");
#if ATTN_HAS_WGMMA
  typedef HopperWsCfg<D, CWG> C;
  constexpr int BQ = C::BQ, BK = C::BK, NSTAGE = C::NSTAGE, CONSUMERS = C::CONSUMERS;
  typedef HopperWsRegs<CWG, VTP> R; /* setmaxnreg's split */
  static_assert(R::nt == C::NT, "the split covers the CTA");
  ATTN_DYNAMIC_SMEM(unsigned char, raw);
  const WsSmem<T, D, CWG, PERSIST ? 2 : 1> sm(raw); /* two Q buffers when persistent */
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;

  /* a CTA per tile: its own, found before anything else, as every kernel does */
  AttnSeg g;
  int tile = 0, h = blockIdx.y;
  if (!PERSIST && !attn_find_tile(a, BQ, &g, &tile))
    return;
  /* key tiles of a query tile */
  auto key_tiles = [&a, &g, &tile]() { return (attn_key_end(a, g, tile * BQ, BQ) + BK - 1) / BK; };

  if (tid == 0) {
    for (uint32_t b = 0; b < (PERSIST ? 2 : 1); b++) {
      attn_mbar_init(sm.full_q(b), 1);
      attn_mbar_init(sm.empty_q(b), CONSUMERS / 32); /* lane 0 of each consumer warp */
    }
    for (int st = 0; st < NSTAGE; st++) {
      attn_mbar_init(sm.full_k(st), 1);
      attn_mbar_init(sm.full_v(st), 1);
      attn_mbar_init(sm.empty_k(st), CONSUMERS / 32);
      attn_mbar_init(sm.empty_v(st), VTP ? 3 : CONSUMERS / 32); /* VTP: the 3 transposing warps read V */
      if (VTP) {
        attn_mbar_init(sm.full_vt(st), 3);
        attn_mbar_init(sm.empty_vt(st), CONSUMERS / 32);
      }
    }
    attn_mbar_init_fence();
  }
  __syncthreads(); /* the barriers exist before anyone waits on them; the last CTA-wide barrier */

  if (warp < 4) { /* the producer warpgroup */
    attn_setmaxnreg_dec<R::producer>();
    if constexpr (VTP) { /* warps 1-3 make V^T for every key tile */
      if (warp > 0) {
        uint32_t kbase = 0;
        for (int w = attn_work_first(); w < attn_work_count(a, BQ); w += attn_work_step()) {
          if (!attn_find_work(a, BQ, w, &g, &tile, &h))
            continue;
          const int nkt = key_tiles();
          ws_transpose_tile<D, CWG>(sm, g.n, nkt, kbase, warp, lane);
          kbase += nkt;
        }
        return;
      }
    }
    if (!PERSIST) {
      if (tid == 0)
        ws_produce_tile<T, D, CWG>(maps, sm, g.start, tile * BQ, h, key_tiles(), 0, 0);
      return;
    }
    if (warp == 0) { /* the whole warp searches (varlen: a warp-wide scan), lane 0 loads */
      uint32_t it = 0, kbase = 0;
      for (int w = attn_work_first(); w < attn_work_count(a, BQ); w += attn_work_step()) {
        if (!attn_find_work(a, BQ, w, &g, &tile, &h))
          continue;
        const int nkt = key_tiles();
        if (lane == 0)
          ws_produce_tile<T, D, CWG>(maps, sm, g.start, tile * BQ, h, nkt, it, kbase);
        __syncwarp(); /* lane 0 rejoins before the next search */
        it++;
        kbase += nkt;
      }
    }
    return;
  }

  attn_setmaxnreg_inc<R::consumer>();
  /* one query tile's work: bf16/f16, or e4m3 (1-byte T) */
  auto consume = [&](int nkt, uint32_t it, uint32_t kbase) {
    if constexpr (sizeof(T) == 1)
      ws_consume_tile_fp8<D, CWG, VTP, NFMA>(a, sm, g, h, tile, nkt, it, kbase);
    else
      ws_consume_tile<T, D, CWG, PINGPONG, PERSIST ? 2 : 1, NFMA>(a, sm, g, h, tile, nkt, it, kbase);
  };
  if (!PERSIST) {
    consume(key_tiles(), 0, 0);
    return;
  }
  uint32_t it = 0, kbase = 0;
  for (int w = attn_work_first(); w < attn_work_count(a, BQ); w += attn_work_step()) {
    if (!attn_find_work(a, BQ, w, &g, &tile, &h))
      continue;
    const int nkt = key_tiles();
    consume(nkt, it, kbase);
    it++;
    kbase += nkt;
  }
#else
  (void)a;
  (void)maps; /* no wgmma in this image: attn_hopper_fwd_runs says so before any launch */
#endif
}

/* A CTA per tile, or (PERSIST) a CTA per SM walking the tiles (one CTA
 * fills an SM's registers: attn_hopper_fwd_ws_kernel's setmaxnreg). */
template <typename T, int D, int CWG, bool PINGPONG, bool PERSIST, bool VTP = false, int NFMA = 0>
int hopper_ws_launch(const mb_attn_desc *d, const AttnArgs &a, cudaStream_t s) {
  typedef HopperWsCfg<D, CWG> C;
  const int64_t tokens = (int64_t)d->batch * d->seqlen;
  AttnTmaMaps maps;
  MB_TRY(attn_tma_map_rows(&maps.q, a.q, sizeof(T), tokens, d->heads, D, a.ld, C::BQ, "q"));
  MB_TRY(attn_tma_map_rows(&maps.k, a.k, sizeof(T), tokens, d->heads, D, a.ld, C::BK, "k"));
  MB_TRY(attn_tma_map_rows(&maps.v, a.v, sizeof(T), tokens, d->heads, D, a.ld, C::BK, "v"));
  dim3 grid = attn_tile_grid(d, C::BQ);
  if (!attn_work_fits(grid))
    return MB_ERR(MB_EUNSUPPORTED,
                  "cuda flash attention forward: %u x %u x %u query tiles, more than tilings 5-8 can count (2^30)",
                  grid.x, grid.y, grid.z);
  if (PERSIST)
    MB_TRY(attn_persistent_grid(d, C::BQ, 1, &grid));
  typedef typename std::conditional<sizeof(T) == 1, attn_bf16, T>::type TO; /* e4m3 in, bf16 out */
  auto *kernel = attn_hopper_fwd_ws_kernel<T, D, CWG, PINGPONG, PERSIST, VTP, NFMA>;
  MB_TRY((attn_reg_split_check<HopperWsRegs<CWG, VTP>>(kernel, "attn_hopper_fwd_ws_kernel")));
  return attn_launch_fwd_grid<TO>(kernel, "attn_hopper_fwd_ws_kernel", a, grid, C::NT,
                                  C::template smem_bytes<T, PERSIST ? 2 : 1>(), s, maps);
}

/* Tiling 5, 6 (ping-pong), 7 (persistent), 8 (7 with three consumer
 * warpgroups at D = 64; 7 at D = 128), 9 (6 with 3 of every thread's 16
 * score column pairs exponentiated on the FMA pipe) or 10 (5 with them). */
template <typename T, int D>
int hopper_ws_launch_tiling(const mb_attn_desc *d, const AttnArgs &a, int tiling, cudaStream_t s) {
  if (tiling == 6)
    return hopper_ws_launch<T, D, 2, true, false>(d, a, s);
  if (tiling == 9)
    return hopper_ws_launch<T, D, 2, true, false, false, ATTN_FWD_EXP_FMA>(d, a, s);
  if (tiling == 10)
    return hopper_ws_launch<T, D, 2, false, false, false, ATTN_FWD_EXP_FMA>(d, a, s);
  if (tiling == 8)
    return hopper_ws_launch<T, D, D == 64 ? 3 : 2, false, true>(d, a, s);
  return tiling == 7 ? hopper_ws_launch<T, D, 2, false, true>(d, a, s)
                     : hopper_ws_launch<T, D, 2, false, false>(d, a, s);
}

template <typename T, int D> int hopper_pipe_launch(const mb_attn_desc *d, const AttnArgs &a, cudaStream_t s) {
  typedef HopperPipeCfg<D> C;
  return attn_launch_fwd<T>(attn_hopper_fwd_pipe_kernel<T, D>, "attn_hopper_fwd_pipe_kernel", d, a, C::BQ, C::NT,
                            C::template smem_bytes<T>(), s);
}

template <typename T, int D, int BKEYS>
int hopper_fwd_launch(const mb_attn_desc *d, const AttnArgs &a, cudaStream_t s) {
  typedef HopperFwdCfg<D, BKEYS> C;
  return attn_launch_fwd<T>(attn_hopper_fwd_kernel<T, D, BKEYS>, "attn_hopper_fwd_kernel", d, a, C::BQ, C::NT,
                            C::template smem_bytes<T>(), s);
}

} // namespace

/* Whether the wgmma kernel runs here: an sm_90 device (sm_90a code runs on
 * compute capability 9.0 only) and an sm_90a image of the kernel in this
 * build (MAMBERT_CUDA_ARCHS has 90a; the driver picked it). */
int attn_hopper_fwd_runs(int *ok) {
  *ok = 0;
  int cc = 0;
  MB_TRY(mb_cuda_attn_device_cc(&cc));
  if (cc != 90)
    return MB_OK;
  cudaFuncAttributes attr;
  MB_CUDA_TRY(cudaFuncGetAttributes(&attr, attn_hopper_fwd_kernel<attn_bf16, 64, 128>));
  *ok = attr.binaryVersion == 90;
  return MB_OK;
}

/* The e4m3 forward under tilings 7 to 10: the warp-specialised persistent
 * kernel with the fp8 consumers (ws_consume_tile_fp8); under 7 each
 * consumer warpgroup makes its own V^T, under 8 the producer's warps 1-3
 * make one for both (ws_transpose_tile, FlashAttention-3's way), under 9
 * and 10 tiling 8's form with ATTN_FWD_EXP_FMA of every 16 column pairs'
 * exponentials on the FMA pipe (attn_exp2_fma): with QGMMA at twice
 * HGMMA's rate, the MUFU's 16 exponentials per clock are what bounds e4m3
 * at D = 64 (a 128 x 128 tile: ~620 clocks of products, 1,024 of MUFU).
 * (bf16's tiling 8 form, three consumer warpgroups at head_dim 64, spills
 * in e4m3: 32 bytes at setmaxnreg's 160 registers, the key mask's pointer
 * across the tile search.) a: attn_flash_fwd_fp8's arguments. */
template <int D> int hopper_fp8_ws_launch(const mb_attn_desc *d, const AttnArgs &a, int tiling, cudaStream_t s) {
  if (tiling >= 9)
    return hopper_ws_launch<uint8_t, D, 2, false, true, true, ATTN_FWD_EXP_FMA>(d, a, s);
  if (tiling == 8)
    return hopper_ws_launch<uint8_t, D, 2, false, true, true>(d, a, s);
  return hopper_ws_launch<uint8_t, D, 2, false, true>(d, a, s);
}

int attn_hopper_fwd_fp8_ws(const mb_attn_desc *d, const AttnArgs &a, int tiling, cudaStream_t s) {
  int ok = 0;
  MB_TRY(attn_hopper_fwd_runs(&ok));
  if (!ok)
    return MB_ERR(MB_EUNSUPPORTED, "cuda fp8 attention: tilings 7-10 (wgmma) need an sm_90 GPU and a build for "
                                   "sm_90a (MAMBERT_CUDA_ARCHS)");
  if (d->head_dim == 64)
    return hopper_fp8_ws_launch<64>(d, a, tiling, s);
  if (d->head_dim == 128)
    return hopper_fp8_ws_launch<128>(d, a, tiling, s);
  return MB_ERR(MB_EUNSUPPORTED, "cuda fp8 attention: head_dim %d (64 or 128 only)", d->head_dim);
}

int attn_hopper_fwd(const mb_attn_desc *d, mb_dtype dt, int tiling, const void *q, const void *k, const void *v,
                    void *out, float *lse, cudaStream_t s) {
  int ok = 0;
  MB_TRY(attn_hopper_fwd_runs(&ok));
  if (!ok)
    return MB_ERR(MB_EUNSUPPORTED, "cuda flash attention forward: tilings 2-10 (wgmma) need an sm_90 GPU and a build "
                                   "for sm_90a (MAMBERT_CUDA_ARCHS)");
  if (attn_tokens(d) == 0)
    return MB_OK;
  AttnArgs a = attn_args_from_desc(d);
  a.q = q;
  a.k = k;
  a.v = v;
  a.o = out;
  a.lse = lse;
  const bool two_ctas = tiling == 3;
  if (two_ctas && d->head_dim != 64)
    return MB_ERR(MB_EUNSUPPORTED, "cuda flash attention forward: tiling 3 (wgmma, two CTAs per SM) is built for "
                                   "head_dim 64 only, got %d",
                  d->head_dim);
  if (tiling >= 5) {
    if (dt == MB_BF16 && d->head_dim == 64)
      return hopper_ws_launch_tiling<attn_bf16, 64>(d, a, tiling, s);
    if (dt == MB_BF16 && d->head_dim == 128)
      return hopper_ws_launch_tiling<attn_bf16, 128>(d, a, tiling, s);
    if (dt == MB_F16 && d->head_dim == 64)
      return hopper_ws_launch_tiling<attn_f16, 64>(d, a, tiling, s);
    if (dt == MB_F16 && d->head_dim == 128)
      return hopper_ws_launch_tiling<attn_f16, 128>(d, a, tiling, s);
  }
  if (tiling == 4) {
    if (dt == MB_BF16 && d->head_dim == 64)
      return hopper_pipe_launch<attn_bf16, 64>(d, a, s);
    if (dt == MB_BF16 && d->head_dim == 128)
      return hopper_pipe_launch<attn_bf16, 128>(d, a, s);
    if (dt == MB_F16 && d->head_dim == 64)
      return hopper_pipe_launch<attn_f16, 64>(d, a, s);
    if (dt == MB_F16 && d->head_dim == 128)
      return hopper_pipe_launch<attn_f16, 128>(d, a, s);
  }
  if (dt == MB_BF16 && d->head_dim == 64)
    return two_ctas ? hopper_fwd_launch<attn_bf16, 64, 64>(d, a, s) : hopper_fwd_launch<attn_bf16, 64, 128>(d, a, s);
  if (dt == MB_BF16 && d->head_dim == 128)
    return hopper_fwd_launch<attn_bf16, 128, 128>(d, a, s);
  if (dt == MB_F16 && d->head_dim == 64)
    return two_ctas ? hopper_fwd_launch<attn_f16, 64, 64>(d, a, s) : hopper_fwd_launch<attn_f16, 64, 128>(d, a, s);
  if (dt == MB_F16 && d->head_dim == 128)
    return hopper_fwd_launch<attn_f16, 128, 128>(d, a, s);
  return MB_ERR(MB_EUNSUPPORTED, "cuda flash attention forward (wgmma): no kernel for %s with head_dim %d",
                mb_dtype_name(dt), d->head_dim);
}
