/* selective_scan_kernels.cuh: the selective scan's kernels (forward,
 * backward, and the two small reductions that finish the backward's
 * gradients) and the host-side drivers that check a call and launch them.
 * Included by selective_scan.cu (nvcc) and by the CPU emulation test; the
 * drivers take a `launch` functor, so both run the same sequence of
 * launches. The math and the layouts are selective_scan.h's; SCAN.md
 * explains the design and gives the resource usage.
 *
 * The recurrence h_t = a_t h_{t-1} + b_t (a_t = exp(dt_t A), b_t = dt_t B_t
 * u_t) is a linear recurrence: the pairs (a, b) compose associatively,
 * (a1, b1) then (a2, b2) = (a2 a1, a2 b1 + b2). A reset (varlen sequence
 * start) is a_t = 0, which drops everything before t: a segmented scan
 * without a flag. Budget padding is dt = 0: a = 1, b = 0, the identity.
 *
 * Per tile (128 tokens) and state index n, a thread first folds its
 * segment of `items` tokens into one pair, the lanes of a channel then scan
 * those pairs with warp shuffles (log2(segs) steps), and each thread
 * replays its items from the state entering its segment. The backward does
 * the same forwards (recomputing the states from the saved one) and then
 * backwards for the adjoint e_{t-1} = a_t (e_t + g_t C_t), where e_t is the
 * gradient reaching h_t from later tokens and g the gated output gradient.
 */
#ifndef MB_KERNELS_CUDA_SELECTIVE_SCAN_KERNELS_CUH
#define MB_KERNELS_CUDA_SELECTIVE_SCAN_KERNELS_CUH

#include "kernels/cuda/selective_scan.h"
#include "kernels/cuda/selective_scan_dev.cuh"
#include "kernels/cuda/selective_scan_plan.h"

namespace SC_NS {

enum { SC_TOK_PAD = 1, SC_TOK_RESET = 2 };
static const float SC_LOG2E = 1.4426950408889634f;

struct scan_params {
  const void *u, *delta, *B, *C, *z; /* dtype T */
  const void *A_log, *Dp, *bias;     /* dtype pdt */
  int pdt;
  void *y;                          /* T */
  float *states;                    /* [B, ntiles, D, N] */
  const void *dy;                   /* T */
  void *du, *ddelta, *dz, *dB, *dC; /* T; any may be NULL */
  void *dA_log, *dD, *dbias;        /* pdt; any may be NULL */
  float *dBp, *dCp;                 /* workspace: [B, ngroups, L, N] */
  float *dAp, *dDp, *dbp;           /* workspace: [B, parts, D, N], [B, parts, D] x 2 */
  float *wsP, *wsE;                 /* workspace, split rows: [B, parts, D, N] each */
  const int32_t *cu;                /* device, [nseq + 1]; NULL in padded mode */
  int nseq;
  int batch, L, D, N, ntiles, ngroups, softplus;
  int parts, part_tiles; /* rows split into parts of part_tiles tiles (1 and ntiles: no split) */
};

/* Flags of token t of a row: padding (past the row or, in varlen mode,
 * past cu[nseq]) or the first token of a sequence (varlen mode; in padded
 * mode the state entering token 0 is zero anyway). */
template <bool VARLEN> SC_DEV unsigned sc_token_flags(const scan_params &p, long long t) {
  if (t >= p.L)
    return SC_TOK_PAD;
  if (!VARLEN)
    return 0;
  if (t >= (long long)p.cu[p.nseq])
    return SC_TOK_PAD;
  const int s = sc_lower_bound(p.cu, p.nseq, t);
  return s < p.nseq && (long long)p.cu[s] == t ? SC_TOK_RESET : 0;
}

/* B and C of a tile share one array, [N][2][TILE]: row n of B, then row n
 * of C, so that C's element is B's plus a constant (an immediate offset in
 * the load instruction, not an address computation of its own). Where
 * token tt of row n lives, counted from B's or C's start: the row's 16-byte
 * chunks are permuted (chunk j stored at j ^ (n mod 32)). The tile load has
 * consecutive threads write one token of consecutive rows, which
 * unpermuted would all hit one bank (rows are a multiple of 32 floats
 * apart; an N-way conflict, up to 32-way): swizzled, 2-way for N <= 32 and
 * 4-way at 64. A thread's 4-token chunks stay contiguous (16-byte reads),
 * and the chunks a quarter-warp reads stay in distinct banks
 * (conflict-free). */
/* a compile-time count passed to a generic lambda (the forward's states) */
template <int V> struct sc_int {
  static constexpr int value = V;
};
SC_DEV int sc_bc_row(int n) { return n * (2 * MB_SCAN_TILE); }
/* the 16-byte chunk of row n that holds token t */
SC_DEV int sc_bc_key(int n, int t) { return ((t >> 2) ^ n) & 31; }
SC_DEV int sc_bc_at(int n, int tt) { return sc_bc_row(n) + (sc_bc_key(n, tt) << 2) + (tt & 3); }
/* The n loops read a thread's tokens t0 .. t0 + K - 1 (t0 = seg K) of row n
 * as K / 4 chunks: sc_bc_at(n, t0 + 4 ii) = sc_bc_row(n) + 4 (key ^ ii) with
 * key = sc_bc_key(n, t0), because (t0 / 4 + ii) ^ n = (t0 / 4 ^ n) ^ ii when
 * t0 / 4 is a multiple of the power of two K / 4 > ii: one XOR per row and
 * one per chunk, where the compiler made 2-4 integer instructions of each
 * chunk's sc_bc_at. */

/* Block prologue of both kernels: B and C of tile t0 transposed into
 * Bs, Cs (sc_bc_at; zeros past the row), and the token flags.
 * The loads go in batches of SC_LOAD_BATCH per thread, all issued before
 * any is used (reads past the row are clamped into it and their values
 * dropped), so a tile waits about one memory latency per batch rather than
 * one per element: the compiler does not move a load across the branch of
 * a guarded element, and a thread with one load in flight at a time is
 * what made the first GPU version ~10x slower than its bounds (SCAN.md). */
enum { SC_LOAD_BATCH = 8 };
template <typename T, bool VARLEN, int NT>
SC_DEV void sc_load_tile(const scan_params &p, size_t row, int t0, float *Bs, float *Cs, unsigned char *flags) {
  const int N = p.N, tid = sc_tid(), total = MB_SCAN_TILE * N;
  /* the tile's B (and C) is one contiguous [TILE][N] block; its last
   * element inside the row is `lim` (reads past it are clamped to it) */
  const int lim = sc_imin(MB_SCAN_TILE, p.L - t0) * N - 1;
  const T *Bg = (const T *)p.B + (row + (size_t)t0) * (size_t)N, *Cg = (const T *)p.C + (row + (size_t)t0) * (size_t)N;
  /* element e = tt N + n; a thread's elements are NT apart, i.e.
   * (q, r) = divmod(NT, N) apart in (tt, n): no division per element */
  const int q = NT / N, r = NT - q * N;
  int tt = tid / N, n = tid - tt * N;
  for (int base = 0; base < total; base += SC_LOAD_BATCH * NT) {
    T bv[SC_LOAD_BATCH], cv[SC_LOAD_BATCH];
    SC_UNROLL
    for (int j = 0; j < SC_LOAD_BATCH; j++) { /* consecutive threads read consecutive elements: coalesced */
      const int e = sc_imin(base + j * NT + tid, lim);
      bv[j] = Bg[e];
      cv[j] = Cg[e];
    }
    SC_UNROLL
    for (int j = 0; j < SC_LOAD_BATCH; j++) {
      const int e = base + j * NT + tid;
      if (e < total) {
        const int s = sc_bc_at(n, tt);
        Bs[s] = e <= lim ? sc_ld(bv, j) : 0.0f; /* zeros past the row */
        Cs[s] = e <= lim ? sc_ld(cv, j) : 0.0f;
      }
      tt += q, n += r;
      if (n >= N)
        tt++, n -= N;
    }
  }
  for (int e = tid; e < MB_SCAN_TILE; e += NT)
    flags[e] = (unsigned char)sc_token_flags<VARLEN>(p, (long long)t0 + e);
}

/* ---- per-token tensors through shared memory ----------------------------
 * A thread owns K consecutive tokens of one channel, and the lanes of a
 * warp are S segments x CH channels (forward 8 x 4, backward 16 x 2), so
 * reading a token-major [B, L, D] tensor directly made each load
 * instruction touch 8 or 16 tokens 2 D bytes apart, 8 or 4 useful bytes
 * per 32-byte sector: the H200 profile counted 71% (forward) and 84%
 * (backward) of the L2 sectors as excess (SCAN.md). So a tile of each
 * per-token tensor (128 tokens x 32 channels) moves between global and
 * shared memory in 16-byte chunks, a warp covering 8 (16-bit) or 4 (f32)
 * whole 64- or 128-byte token rows, and lives in shared memory transposed,
 * [channel][token], where a thread reads or writes its K tokens as whole
 * chunks. Rows are 256 or 512 bytes, multiples of the bank period, so the
 * 16-byte chunk index is XOR-swizzled by the channel (sc_stage_swz): the
 * transposing element accesses of a warp (channel j + 8 g of 8 consecutive
 * tokens, g = 0..3; in f32 j + 4 g of 4, g = 0..7) and the chunk accesses
 * of a quarter-warp (its 8 lanes: 2 segments x 4 channels forward, 4 x 2
 * backward) each land in distinct banks (test_stage_layout). */
struct alignas(16) sc_chunk {
  uint32_t w[4];
};
template <typename T> struct sc_stage_geo {
  static constexpr int EPC = 16 / (int)sizeof(T);          /* elements per 16-byte chunk */
  static constexpr int CPT = MB_SCAN_GROUP / EPC;          /* chunks per token */
  static constexpr int CHUNKS = MB_SCAN_TILE * CPT;        /* chunks per tensor tile */
  static constexpr int BYTES = MB_SCAN_TILE * MB_SCAN_GROUP * (int)sizeof(T); /* one staged tensor */
};
/* The swizzle of channel c's row for a kernel whose warps hold CH channels.
 * Its low 3 bits decide the bank group. The transposing accesses need them
 * to differ across the channels a warp writes at once (c >> 3 in 16-bit,
 * c >> 2 in f32); the chunk accesses across a quarter-warp's (segment,
 * channel) pairs, where the segment already sets the chunk index's other
 * bits (backward 16-bit: bits 0-1, so the channel sets bit 2; forward
 * 16-bit: bit 1 of two chunks per thread; f32: bit 2 forward, 1-2 backward). */
template <typename T, int CH> SC_DEV int sc_stage_swz(int c) {
  static_assert(CH == 2 || CH == 4, "the forward's and the backward's geometry");
  if (sizeof(T) == 2)
    return CH == 2 ? ((c & 1) << 2) ^ ((c >> 3) & 3) : ((c & 1) | ((c & 2) << 1)) ^ ((c >> 2) & 6);
  return CH == 2 ? (c & 1) ^ ((c >> 2) & 7) : (c & 3) ^ ((c >> 2) & 7);
}
/* where (channel c, token tt) of a staged tile lives, in elements */
template <typename T, int CH> SC_DEV int sc_stage_at(int c, int tt) {
  constexpr int EPC = sc_stage_geo<T>::EPC;
  return c * MB_SCAN_TILE + ((tt / EPC) ^ sc_stage_swz<T, CH>(c)) * EPC + tt % EPC;
}
/* Whether a tensor's tile may move as 16-byte chunks: all 32 channels of the
 * group inside D, every token row's segment 16-byte aligned. Otherwise
 * element by element, with the same layout in shared memory. */
template <typename T> SC_DEV bool sc_stage_vec(const void *ptr, int D, int nvalid) {
  return nvalid == MB_SCAN_GROUP && D % sc_stage_geo<T>::EPC == 0 && ((uintptr_t)ptr & 15) == 0;
}

/* The global reads of one tensor's tile into registers (issued early; a
 * token past the row reads the row's last one, a channel past D channel
 * D - 1: the values are dropped) ... */
template <typename T, int NT, int PER>
SC_DEV void sc_stage_fetch(const T *src, size_t row, int t0, int tlast, int D, int d0, bool vec, sc_chunk (&v)[PER]) {
  typedef sc_stage_geo<T> geo;
  static_assert(PER * NT == geo::CHUNKS, "whole chunks per thread");
  SC_UNROLL
  for (int k = 0; k < PER; k++) {
    const int q = sc_tid() + k * NT, tt = q / geo::CPT, ch = (q % geo::CPT) * geo::EPC;
    const size_t at = (row + (size_t)sc_imin(t0 + tt, tlast)) * (size_t)D;
    if (vec) {
      v[k] = *reinterpret_cast<const sc_chunk *>(src + at + (size_t)(d0 + ch));
    } else {
      T e[geo::EPC];
      SC_UNROLL
      for (int j = 0; j < geo::EPC; j++)
        e[j] = src[at + (size_t)sc_imin(d0 + ch + j, D - 1)];
      memcpy(&v[k], e, 16);
    }
  }
}
/* ... then into shared memory, transposed */
template <typename T, int CH, int NT, int PER> SC_DEV void sc_stage_put(T *stage, const sc_chunk (&v)[PER]) {
  typedef sc_stage_geo<T> geo;
  SC_UNROLL
  for (int k = 0; k < PER; k++) {
    const int q = sc_tid() + k * NT, tt = q / geo::CPT, ch = (q % geo::CPT) * geo::EPC;
    T e[geo::EPC];
    memcpy(e, &v[k], 16);
    SC_UNROLL
    for (int j = 0; j < geo::EPC; j++)
      stage[sc_stage_at<T, CH>(ch + j, tt)] = e[j];
  }
}
/* a thread's K tokens tt0 .. tt0 + K - 1 of channel c, as whole chunks */
template <typename T, int CH, int K> SC_DEV void sc_stage_get(const T *stage, int c, int tt0, T (&out)[K]) {
  constexpr int EPC = sc_stage_geo<T>::EPC;
  static_assert(K % EPC == 0, "whole chunks");
  SC_UNROLL
  for (int kc = 0; kc < K / EPC; kc++) {
    const sc_chunk ch = *reinterpret_cast<const sc_chunk *>(stage + sc_stage_at<T, CH>(c, tt0 + kc * EPC));
    memcpy(out + kc * EPC, &ch, 16);
  }
}
template <typename T, int CH, int K> SC_DEV void sc_stage_set(T *stage, int c, int tt0, const float (&val)[K]) {
  constexpr int EPC = sc_stage_geo<T>::EPC;
  static_assert(K % EPC == 0, "whole chunks");
  SC_UNROLL
  for (int kc = 0; kc < K / EPC; kc++) {
    T e[EPC];
    SC_UNROLL
    for (int j = 0; j < EPC; j++)
      sc_st(e, j, val[kc * EPC + j]);
    sc_chunk ch;
    memcpy(&ch, e, 16); /* between registers; the shared access below is one 16-byte store */
    *reinterpret_cast<sc_chunk *>(stage + sc_stage_at<T, CH>(c, tt0 + kc * EPC)) = ch;
  }
}
/* A staged tile out to global memory: tokens t0 .. min(t0 + TILE, L) - 1,
 * channels d0 .. d0 + nvalid - 1. */
template <typename T, int CH, int NT>
SC_DEV void sc_stage_store(T *dst, const T *stage, size_t row, int t0, int L, int D, int d0, int nvalid, bool vec) {
  typedef sc_stage_geo<T> geo;
  SC_UNROLL
  for (int k = 0; k < geo::CHUNKS / NT; k++) {
    const int q = sc_tid() + k * NT, tt = q / geo::CPT, ch = (q % geo::CPT) * geo::EPC;
    if (t0 + tt >= L)
      continue;
    T e[geo::EPC];
    SC_UNROLL
    for (int j = 0; j < geo::EPC; j++)
      e[j] = stage[sc_stage_at<T, CH>(ch + j, tt)];
    T *at = dst + (row + (size_t)(t0 + tt)) * (size_t)D + (size_t)(d0 + ch);
    if (vec) {
      sc_chunk c16;
      memcpy(&c16, e, 16);
      *reinterpret_cast<sc_chunk *>(at) = c16;
    } else {
      SC_UNROLL
      for (int j = 0; j < geo::EPC; j++)
        if (ch + j < nvalid)
          at[j] = e[j];
    }
  }
}

/* ---- forward ------------------------------------------------------------ */

/* Grid: batch * ngroups * parts blocks of 256 threads; block (b, group,
 * part) owns channels [32 group, 32 group + 32) of row b and the part's
 * tiles [part * part_tiles, ...). Thread: lane = seg * 4 + cl (segment of
 * 16 tokens, channel within the warp); channel c = warp * 4 + cl.
 * Registers per thread: dt, dt*u and the output of its 16 tokens, and per
 * state index the 16 decays and inputs.
 *
 * FOLD (rows split into parts, SCAN.md): the first pass over parts
 * 0 .. parts-2 computes only what a part does to the state, h_end =
 * P h_start + H (P: the product of its decays, 0 after a reset; H: its end
 * state from zero), and leaves P and H in the `states` slots of the part's
 * first two tiles; scan_carry_kernel turns them into the state entering
 * each part, in the slot of its first tile, where the full pass (FOLD =
 * false) starts from. Every slot is then overwritten by the full pass with
 * the state entering its tile. */
template <typename T, bool VARLEN, bool FOLD>
SC_KERNEL void SC_BOUNDS(MB_SCAN_FWD_THREADS, 2) scan_fwd_kernel(const scan_params p) {
  constexpr int S = MB_SCAN_FWD_SEGS, K = MB_SCAN_FWD_ITEMS, CH = 32 / S, G = MB_SCAN_GROUP;
  constexpr int TILE = MB_SCAN_TILE, NT = MB_SCAN_FWD_THREADS;
  static_assert(S * K == TILE && CH * (NT / 32) == G && K % 4 == 0, "forward geometry");
  static_assert(((K / 4) & (K / 4 - 1)) == 0, "K / 4 a power of two (sc_bc_key)");
  SC_SMEM(smem);
  const int N = p.N;
  float *Bs = (float *)smem;      /* [N][2][TILE]: B's rows (sc_bc_at) */
  float *Cs = Bs + TILE;          /* C's rows, interleaved with B's */
  float *A2s = Bs + 2 * N * TILE; /* [G][N]: A * log2(e) */
  float *hs = A2s + G * N;        /* [G][N]: the state entering the current tile */
  float *Ps = hs + G * N;         /* [G][N]: FOLD: the product of the decays so far */
  /* two staged per-token tiles (sc_stage_fetch and friends): delta and u;
   * then z in delta's place, then y; 16-byte aligned (the 352 N floats before it) */
  constexpr int PER = sc_stage_geo<T>::CHUNKS / NT, SZ = TILE * G;
  T *stage = (T *)(Ps + G * N);
  unsigned char *flags = (unsigned char *)(stage + 2 * SZ);

  const int tid = sc_tid(), lane = tid & 31, warp = tid >> 5;
  const int seg = lane / CH, cl = lane % CH, c = warp * CH + cl;
  const int nparts = FOLD ? p.parts - 1 : p.parts; /* the fold pass skips the last part */
  const long long bg = sc_bid() / nparts;
  const int part = (int)(sc_bid() % nparts), b = (int)(bg / p.ngroups), grp = (int)(bg % p.ngroups);
  const int tile0 = part * p.part_tiles, tile1 = sc_imin(p.ntiles, tile0 + p.part_tiles);
  const int d0 = grp * G, d = d0 + c, nvalid = sc_imin(G, p.D - d0);
  const bool chan = c < nvalid; /* threads of channels past D compute on zeros, store nothing */
  const int tlast = p.L - 1; /* the row's last token */
  const T *u = (const T *)p.u, *delta = (const T *)p.delta, *z = (const T *)p.z;
  const T *zr = z ? z : u; /* what the output step reads as z (ignored without z): no branch around the loads */
  T *y = (T *)p.y;
  const size_t row = (size_t)b * (size_t)p.L; /* token 0 of this row */
  const bool vec_d = sc_stage_vec<T>(delta, p.D, nvalid), vec_u = sc_stage_vec<T>(u, p.D, nvalid);
  const bool vec_z = sc_stage_vec<T>(zr, p.D, nvalid), vec_y = sc_stage_vec<T>(y, p.D, nvalid);

  /* the state entering the part: zero for the first (and in the fold
   * pass), else what scan_carry_kernel left in the slot of its first tile */
  const float *h_in =
      !FOLD && part > 0 ? p.states + (((size_t)b * p.ntiles + tile0) * (size_t)p.D + (size_t)d0) * (size_t)N : NULL;
  for (int e = tid; e < G * N; e += NT) {
    A2s[e] = e < nvalid * N ? -expf(sc_ld_dt(p.A_log, p.pdt, (size_t)d0 * N + e)) * SC_LOG2E : 0.0f;
    hs[e] = h_in && e < nvalid * N ? h_in[e] : 0.0f;
    Ps[e] = 1.0f;
  }
  const float Dd = chan && p.Dp ? sc_ld_dt(p.Dp, p.pdt, (size_t)d) : 0.0f;
  const float bias = chan && p.bias ? sc_ld_dt(p.bias, p.pdt, (size_t)d) : 0.0f;

  for (int tile = tile0; tile < tile1; tile++) {
    const int t0 = tile * TILE;
    sc_sync(); /* the last tile's readers of Bs, Cs, flags, stage are done; hs holds its final states */
    if (!FOLD) { /* save the state entering this tile (before any reset at t0): [d0..d0+nvalid) x N is contiguous */
      float *st = p.states + (((size_t)b * p.ntiles + tile) * (size_t)p.D + (size_t)d0) * (size_t)N;
      for (int e = tid; e < nvalid * N; e += NT)
        st[e] = hs[e];
    }
    /* the tile's delta and u, coalesced, in flight together with the B, C tile */
    sc_chunk xd[PER], xu[PER];
    sc_stage_fetch<T, NT, PER>(delta, row, t0, tlast, p.D, d0, vec_d, xd);
    sc_stage_fetch<T, NT, PER>(u, row, t0, tlast, p.D, d0, vec_u, xu);
    sc_load_tile<T, VARLEN, NT>(p, row, t0, Bs, Cs, flags);
    sc_stage_put<T, CH, NT, PER>(stage, xd);
    sc_stage_put<T, CH, NT, PER>(stage + SZ, xu);
    sc_sync(); /* tile loaded and staged; the state copy above has read hs */
    T rd[K], ru[K];
    sc_stage_get<T, CH, K>(stage, c, seg * K, rd);
    sc_stage_get<T, CH, K>(stage + SZ, c, seg * K, ru);

    float dt[K], dtu[K];
    unsigned reset = 0;
    SC_UNROLL
    for (int i = 0; i < K; i++) {
      const unsigned f = flags[seg * K + i];
      float dv = 0.0f, duv = 0.0f; /* padding: dt = 0 makes the token the identity */
      if (chan && !(f & SC_TOK_PAD)) {
        const float raw = sc_ld(rd, i) + bias;
        dv = p.softplus ? sc_softplus(raw) : raw;
        duv = dv * sc_ld(ru, i);
      }
      dt[i] = dv;
      dtu[i] = duv;
      if (VARLEN && (f & SC_TOK_RESET))
        reset |= 1u << i;
    }

    float acc[K];
    SC_UNROLL
    for (int i = 0; i < K; i++)
      acc[i] = 0.0f;
    /* State indices n .. n + NP - 1 at once: each index's work is a chain
     * of dependent steps (the fold, the shuffle scan, the replay), and two
     * independent chains give the schedulers twice the instructions to
     * issue per warp (the H200 profile: 0.84 eligible warps per scheduler,
     * half the issue slots used). The decays a are kept per index, dt u B is
     * recomputed in the replay (one FMUL; the registers go to the second
     * chain). Every output is summed in the same order as one index at a
     * time: acc over n, then n + 1. */
    auto states = [&](auto np, int n) {
      constexpr int NP = decltype(np)::value;
      const float *brow[NP], *crow[NP];
      int key[NP]; /* chunk i / 4 of this thread's tokens is at 4 (key ^ i / 4) */
      float a[NP][K];
      SC_UNROLL
      for (int q = 0; q < NP; q++) {
        const float A2 = A2s[c * N + n + q];
        brow[q] = Bs + sc_bc_row(n + q);
        crow[q] = Cs + sc_bc_row(n + q);
        key[q] = sc_bc_key(n + q, seg * K);
        SC_UNROLL
        for (int i = 0; i < K; i++) {
          const float ai = sc_exp2(dt[i] * A2);
          a[q][i] = VARLEN && ((reset >> i) & 1u) ? 0.0f : ai;
        }
      }
      /* each index's segment of tokens as one pair (Ag, Bg); the first
       * segment starts from the carried state, so after the scan every Bg
       * is the absolute state at the end of its segment */
      float Ag[NP], Bg[NP], carry[NP];
      SC_UNROLL
      for (int q = 0; q < NP; q++) {
        Ag[q] = a[q][0];
        Bg[q] = 0.0f; /* token 0's dt u B, below */
        SC_UNROLL
        for (int i = 0; i < K; i += 4) {
          const sc_float4 b4 = sc_ld4(brow[q] + ((key[q] ^ (i >> 2)) << 2));
          const float bx[4] = {dtu[i] * b4.x, dtu[i + 1] * b4.y, dtu[i + 2] * b4.z, dtu[i + 3] * b4.w};
          SC_UNROLL
          for (int j = 0; j < 4; j++) {
            if (i + j == 0) {
              Bg[q] = bx[0];
            } else {
              Bg[q] = a[q][i + j] * Bg[q] + bx[j];
              Ag[q] *= a[q][i + j];
            }
          }
        }
        carry[q] = 0.0f;
        if (seg == 0) {
          carry[q] = hs[c * N + n + q];
          Bg[q] = Ag[q] * carry[q] + Bg[q];
        }
      }
      SC_UNROLL
      for (int off = 1; off < S; off *= 2) {
        SC_UNROLL
        for (int q = 0; q < NP; q++) {
          const float Au = sc_shfl_up(Ag[q], off * CH), Bu = sc_shfl_up(Bg[q], off * CH);
          if (seg >= off) {
            Bg[q] = Ag[q] * Bu + Bg[q];
            Ag[q] = Ag[q] * Au;
          }
        }
      }
      if constexpr (FOLD) { /* the tile's effect on the state only: its end state and its product of decays */
        SC_UNROLL
        for (int q = 0; q < NP; q++) {
          const float last = sc_shfl(Bg[q], (S - 1) * CH + cl), prod = sc_shfl(Ag[q], (S - 1) * CH + cl);
          if (seg == 0) {
            hs[c * N + n + q] = last;
            Ps[c * N + n + q] *= prod;
          }
        }
      } else {
        float h[NP]; /* the state entering this segment */
        SC_UNROLL
        for (int q = 0; q < NP; q++) {
          h[q] = sc_shfl_up(Bg[q], CH);
          if (seg == 0)
            h[q] = carry[q];
        }
        SC_UNROLL
        for (int q = 0; q < NP; q++) {
          SC_UNROLL
          for (int i = 0; i < K; i += 4) {
            const sc_float4 b4 = sc_ld4(brow[q] + ((key[q] ^ (i >> 2)) << 2));
            const sc_float4 c4 = sc_ld4(crow[q] + ((key[q] ^ (i >> 2)) << 2));
            const float bx[4] = {dtu[i] * b4.x, dtu[i + 1] * b4.y, dtu[i + 2] * b4.z, dtu[i + 3] * b4.w};
            const float cx[4] = {c4.x, c4.y, c4.z, c4.w};
            SC_UNROLL
            for (int j = 0; j < 4; j++) {
              h[q] = a[q][i + j] * h[q] + bx[j];
              acc[i + j] += h[q] * cx[j];
            }
          }
        }
        SC_UNROLL
        for (int q = 0; q < NP; q++) {
          const float last = sc_shfl(Bg[q], (S - 1) * CH + cl); /* the state leaving the tile */
          if (seg == 0) /* the lane that read the carry writes it: no other lane touches hs[c][n] */
            hs[c * N + n + q] = last;
        }
      }
    };
    int n = 0;
    for (; n + 2 <= N; n += 2)
      states(sc_int<2>(), n);
    if (n < N)
      states(sc_int<1>(), n);
    if (!FOLD) { /* the fold pass has no output */
      /* z, coalesced, into delta's tile; u (for the D skip) is still staged:
       * the n loop does not touch stage */
      sc_chunk xz[PER];
      sc_stage_fetch<T, NT, PER>(zr, row, t0, tlast, p.D, d0, vec_z, xz);
      sc_sync(); /* every thread has read its delta out of stage */
      sc_stage_put<T, CH, NT, PER>(stage, xz);
      sc_sync();
      T ru2[K], rz[K];
      sc_stage_get<T, CH, K>(stage + SZ, c, seg * K, ru2);
      sc_stage_get<T, CH, K>(stage, c, seg * K, rz);
      float out[K]; /* budget padding (and channels past D): y = 0 */
      SC_UNROLL
      for (int i = 0; i < K; i++) {
        out[i] = 0.0f;
        if (chan && !(flags[seg * K + i] & SC_TOK_PAD)) {
          out[i] = acc[i] + Dd * sc_ld(ru2, i);
          if (z) {
            const float zz = sc_ld(rz, i);
            out[i] *= zz * sc_sigmoid(zz);
          }
        }
      }
      sc_stage_set<T, CH, K>(stage, c, seg * K, out); /* where this thread's z was: no barrier needed */
      sc_sync();
      sc_stage_store<T, CH, NT>(y, stage, row, t0, p.L, p.D, d0, nvalid, vec_y);
    }
  }
  if (FOLD) { /* P and H of this part into the slots of its first two tiles (part_tiles >= 2) */
    sc_sync(); /* the last step's hs, Ps writes are visible */
    float *st = p.states + (((size_t)b * p.ntiles + tile0) * (size_t)p.D + (size_t)d0) * (size_t)N;
    const size_t next = (size_t)p.D * (size_t)N; /* one tile further */
    for (int e = tid; e < nvalid * N; e += NT) {
      st[e] = Ps[e];
      st[next + e] = hs[e];
    }
  }
}

/* Rows split into parts: the state entering each part from the fold pass's
 * P, H (slots of each part's first two tiles), in part order, written to
 * the slot of each part's first tile. One thread per (row, channel, state
 * index). */
SC_KERNEL void SC_BOUNDS(MB_SCAN_REDUCE_THREADS, 1) scan_carry_kernel(const scan_params p) {
  const long long DN = (long long)p.D * p.N, total = (long long)p.batch * DN;
  for (long long e = sc_bid() * MB_SCAN_REDUCE_THREADS + sc_tid(); e < total;
       e += sc_nblocks() * MB_SCAN_REDUCE_THREADS) {
    const long long b = e / DN, r = e - b * DN;
    float *row = p.states + (size_t)(b * p.ntiles) * (size_t)DN + (size_t)r; /* slot of tile 0 */
    float h = 0.0f, P = row[0], H = row[(size_t)DN];
    for (int part = 1; part < p.parts; part++) {
      h = P * h + H; /* the state entering this part */
      float *slot = row + (size_t)part * (size_t)p.part_tiles * (size_t)DN;
      if (part + 1 < p.parts) { /* read this part's P, H before the slot is overwritten */
        P = slot[0];
        H = slot[(size_t)DN];
      }
      slot[0] = h;
    }
  }
}

/* ---- backward ----------------------------------------------------------- */

/* The backward's reverse scan over a channel's S segments (lanes seg * CH
 * + cl): each segment's (P, Q) -- e leaving it to the left is P e_in + Q --
 * becomes the composite of itself and every segment to its right. (The
 * forward scan, the same from the left, stays written out in both kernels:
 * as a helper it changed ptxas's register allocation and spilled more on
 * sm_80.) */
template <int S, int CH> SC_DEV void sc_scan_down(float &P, float &Q, int seg) {
  SC_UNROLL
  for (int off = 1; off < S; off *= 2) {
    const float Pd = sc_shfl_down(P, off * CH), Qd = sc_shfl_down(Q, off * CH);
    if (seg + off < S) {
      Q = P * Qd + Q;
      P = P * Pd;
    }
  }
}

/* Grid: batch * ngroups * parts blocks of 512 threads; block (b, group,
 * part) walks the part's tiles of row b from last to first. Thread: lane =
 * seg * 2 + cl (segment of 8 tokens, one of 2 channels of the warp);
 * channel c = warp * 2 + cl.
 *
 * Per tile and state index n: recompute the tile's states from the saved
 * one (forward scan), run the adjoint backwards (reverse scan, carrying e
 * from the next tile), and per token form
 *   dh = e + g C           (gradient on h_t)      w = a h_{t-1}
 *   dA    += dh w dt       ddt += A dh w + u dh B      du += dt dh B
 *   dB_t  += dh dt u       dC_t += g h_t               (summed over channels)
 * dB_t and dC_t sum over the block's 32 channels through shared memory in
 * channel order (one barrier per n); the sums overwrite row n of Bs and
 * Cs, which step n no longer needs, and are copied out once per tile as
 * this group's partial. A second kernel adds the groups' partials in group
 * order; another adds dA, dD and ddelta_bias over (row, part) in order.
 * So every sum has a fixed order: the result is deterministic.
 *
 * Split rows (the forward's parts): the adjoint flows right to left, so a
 * FOLD pass over parts 1 .. parts-1 computes what each part does to it,
 * e_leaving = P e_in + E (P: the part's product of decays, as forwards; E:
 * the adjoint leaving its first token from zero), into wsP, wsE;
 * scan_carry_rev_kernel turns them into the adjoint entering each part
 * (in wsE), and the full pass (FOLD = false) starts each part from it. The
 * parameter gradients are kept per (row, part) and added in that order. */
template <typename T, bool VARLEN, bool FOLD>
SC_KERNEL void SC_BOUNDS(MB_SCAN_BWD_THREADS, 1) scan_bwd_kernel(const scan_params p) {
  constexpr int S = MB_SCAN_BWD_SEGS, K = MB_SCAN_BWD_ITEMS, CH = 32 / S, G = MB_SCAN_GROUP;
  constexpr int TILE = MB_SCAN_TILE, NT = MB_SCAN_BWD_THREADS, RP = MB_SCAN_RED_PITCH;
  static_assert(S * K == TILE && CH * (NT / 32) == G && K % 4 == 0 && 2 * TILE <= NT, "backward geometry");
  static_assert(((K / 4) & (K / 4 - 1)) == 0, "K / 4 a power of two (sc_bc_key)");
  SC_SMEM(smem);
  const int N = p.N;
  float *Bs = (float *)smem;       /* [N][2][TILE]: B's rows (sc_bc_at); row n: the tile's dB partial after step n */
  float *Cs = Bs + TILE;           /* C's rows, interleaved with B's; likewise dC */
  float *red = Bs + 2 * N * TILE;  /* [2 buffers][2: dB, dC shares][G][RP]; outside the n loop: `stage` */
  float *As = red + 4 * G * RP;    /* [G][N]: A = -exp(A_log) */
  float *hs = As + G * N;          /* [G][N]: the saved state entering this tile */
  float *es = hs + G * N;          /* [G][N]: e flowing into this tile from the next one */
  float *dAs = es + G * N;         /* [G][N]: dA summed over this part's tokens so far; FOLD: the product of decays */
  unsigned char *flags = (unsigned char *)(dAs + G * N);

  const int tid = sc_tid(), lane = tid & 31, warp = tid >> 5;
  const int seg = lane / CH, cl = lane % CH, c = warp * CH + cl;
  const int nparts = FOLD ? p.parts - 1 : p.parts; /* the fold pass skips the first part */
  const long long bg = sc_bid() / nparts;
  const int part = (int)(sc_bid() % nparts) + (FOLD ? 1 : 0), b = (int)(bg / p.ngroups), grp = (int)(bg % p.ngroups);
  const int tile0 = part * p.part_tiles, tile1 = sc_imin(p.ntiles, tile0 + p.part_tiles);
  const size_t prow = (size_t)b * p.parts + part; /* this (row, part)'s index in the per-part workspaces */
  const int d0 = grp * G, d = d0 + c, nvalid = sc_imin(G, p.D - d0);
  const bool chan = c < nvalid;
  const int tlast = p.L - 1; /* the row's last token */
  const T *u = (const T *)p.u, *delta = (const T *)p.delta, *z = (const T *)p.z, *dy = (const T *)p.dy;
  const T *zr = z ? z : u; /* what is read as z (ignored without z): no branch around the loads */
  const size_t row = (size_t)b * (size_t)p.L;
  /* the per-token tensors' tiles pass through `red` when the n loop is not
   * using it (sc_stage_fetch and friends): 4 x 8 KB (16-bit) or 4 x 16 KB */
  constexpr int PER = sc_stage_geo<T>::CHUNKS / NT, SZ = TILE * G;
  static_assert(4 * sc_stage_geo<T>::BYTES <= 4 * G * RP * (int)sizeof(float), "four staged tiles fit in red");
  T *stage = (T *)red;
  const bool vec_d = sc_stage_vec<T>(delta, p.D, nvalid), vec_u = sc_stage_vec<T>(u, p.D, nvalid);
  const bool vec_g = sc_stage_vec<T>(dy, p.D, nvalid), vec_z = sc_stage_vec<T>(zr, p.D, nvalid);
  const bool vec_du = sc_stage_vec<T>(p.du, p.D, nvalid), vec_dd = sc_stage_vec<T>(p.ddelta, p.D, nvalid);
  const bool vec_dz = sc_stage_vec<T>(p.dz, p.D, nvalid);

  /* the adjoint entering the part's last token: zero for the last part
   * (and in the fold pass), else what scan_carry_rev_kernel left */
  const float *e_in = !FOLD && part < p.parts - 1 ? p.wsE + (prow * (size_t)p.D + (size_t)d0) * (size_t)N : NULL;
  for (int e = tid; e < G * N; e += NT) {
    As[e] = e < nvalid * N ? -expf(sc_ld_dt(p.A_log, p.pdt, (size_t)d0 * N + e)) : 0.0f;
    es[e] = e_in && e < nvalid * N ? e_in[e] : 0.0f;
    dAs[e] = FOLD ? 1.0f : 0.0f;
  }
  const float Dd = chan && p.Dp ? sc_ld_dt(p.Dp, p.pdt, (size_t)d) : 0.0f;
  const float bias = chan && p.bias ? sc_ld_dt(p.bias, p.pdt, (size_t)d) : 0.0f;
  float dD_acc = 0.0f, dbias_acc = 0.0f;

  constexpr int HS_PER_THREAD = (G * MB_SCAN_MAX_DSTATE + NT - 1) / NT;
  for (int tile = tile1 - 1; tile >= tile0; tile--) {
    const int t0 = tile * TILE;
    /* this tile's saved state and this thread's inputs, all in flight
     * together with the B, C tile (sc_load_tile) */
    float hv[HS_PER_THREAD];
    {
      const float *st = p.states + (((size_t)b * p.ntiles + tile) * (size_t)p.D + (size_t)d0) * (size_t)N;
      const int nst = nvalid * N;
      SC_UNROLL
      for (int j = 0; j < HS_PER_THREAD; j++)
        hv[j] = st[sc_imin(tid + j * NT, nst - 1)];
    }
    sc_chunk xd[PER], xu[PER], xg[PER], xz[PER]; /* delta, u, dy, z of the tile, coalesced */
    sc_stage_fetch<T, NT, PER>(delta, row, t0, tlast, p.D, d0, vec_d, xd);
    sc_stage_fetch<T, NT, PER>(u, row, t0, tlast, p.D, d0, vec_u, xu);
    sc_stage_fetch<T, NT, PER>(dy, row, t0, tlast, p.D, d0, vec_g, xg);
    sc_stage_fetch<T, NT, PER>(zr, row, t0, tlast, p.D, d0, vec_z, xz);
    sc_sync(); /* the last tile's partials are copied out of Bs, Cs and its outputs out of stage; hs, flags free */
    sc_stage_put<T, CH, NT, PER>(stage, xd);
    sc_stage_put<T, CH, NT, PER>(stage + SZ, xu);
    sc_stage_put<T, CH, NT, PER>(stage + 2 * SZ, xg);
    sc_stage_put<T, CH, NT, PER>(stage + 3 * SZ, xz);
    SC_UNROLL
    for (int j = 0; j < HS_PER_THREAD; j++) {
      const int e = tid + j * NT;
      if (!FOLD && e < G * N) /* the fold needs no forward states */
        hs[e] = e < nvalid * N ? hv[j] : 0.0f;
    }
    sc_load_tile<T, VARLEN, NT>(p, row, t0, Bs, Cs, flags);
    sc_sync();
    T rd[K], ru[K], rg[K], rz[K];
    sc_stage_get<T, CH, K>(stage, c, seg * K, rd);
    sc_stage_get<T, CH, K>(stage + SZ, c, seg * K, ru);
    sc_stage_get<T, CH, K>(stage + 2 * SZ, c, seg * K, rg);
    sc_stage_get<T, CH, K>(stage + 3 * SZ, c, seg * K, rz);
    sc_sync(); /* every thread has its items: the n loop's channel shares overwrite stage */

    float dt[K], dtu[K], g[K];
    unsigned reset = 0;
    SC_UNROLL
    for (int i = 0; i < K; i++) {
      const unsigned f = flags[seg * K + i];
      float dv = 0.0f, duv = 0.0f, gv = 0.0f; /* padding: identity token, no gradient */
      if (chan && !(f & SC_TOK_PAD)) {
        const float raw = sc_ld(rd, i) + bias;
        dv = p.softplus ? sc_softplus(raw) : raw;
        duv = dv * sc_ld(ru, i);
        gv = sc_ld(rg, i);
        if (z) {
          const float zz = sc_ld(rz, i);
          gv *= zz * sc_sigmoid(zz); /* g = dLoss/d(pre-gate y) */
        }
      }
      dt[i] = dv;
      dtu[i] = duv;
      g[i] = gv;
      if (VARLEN && (f & SC_TOK_RESET))
        reset |= 1u << i;
    }

    float acc[K], dAw[K], q[K]; /* sum over n of h C (pre-gate y), A dh w, dh B */
    SC_UNROLL
    for (int i = 0; i < K; i++)
      acc[i] = dAw[i] = q[i] = 0.0f;

    /* dA of step n over the channel's segments: a butterfly (every lane gets
     * the same bits: each step adds the same two numbers on both sides), run
     * among step n + 1's scan shuffles so that its four rounds add no wait */
    float dA_pend = 0.0f;
    for (int n = 0; n < N; n++) {
      const int buf = n & 1;
      const float A = As[c * N + n], A2 = A * SC_LOG2E;
      const float *brow = Bs + sc_bc_row(n), *crow = Cs + sc_bc_row(n);
      const int key = sc_bc_key(n, seg * K); /* chunk i / 4 of this thread's tokens is at 4 (key ^ i / 4) */
      float Bv[K], Cv[K], a[K], hp[K];
      SC_UNROLL
      for (int i = 0; i < K; i += 4) {
        const int at = (key ^ (i >> 2)) << 2;
        const sc_float4 b4 = sc_ld4(brow + at), c4 = sc_ld4(crow + at);
        Bv[i] = b4.x, Bv[i + 1] = b4.y, Bv[i + 2] = b4.z, Bv[i + 3] = b4.w;
        Cv[i] = c4.x, Cv[i + 1] = c4.y, Cv[i + 2] = c4.z, Cv[i + 3] = c4.w;
      }
      SC_UNROLL
      for (int i = 0; i < K; i++) {
        const float ai = sc_exp2(dt[i] * A2);
        a[i] = VARLEN && ((reset >> i) & 1u) ? 0.0f : ai;
      }
      if (FOLD) { /* the tile's effect on the adjoint only, and its product of decays */
        float P = 1.0f, Q = 0.0f;
        SC_UNROLL
        for (int i = K - 1; i >= 0; i--) {
          Q = a[i] * (Q + g[i] * Cv[i]);
          P *= a[i];
        }
        if (seg == S - 1)
          Q = P * es[c * N + n] + Q;
        sc_scan_down<S, CH>(P, Q, seg);
        const float leaving = sc_shfl(Q, cl), prod = sc_shfl(P, cl); /* segment 0: the whole tile */
        if (seg == S - 1) { /* the lane that read es writes it (and the product) */
          es[c * N + n] = leaving;
          dAs[c * N + n] *= prod;
        }
        continue;
      }

      /* forwards: segment (Ag, Bg) -- the state leaving it is Ag h_in + Bg;
       * backwards: (P, Q) -- e leaving it to the left is P e_in + Q, where
       * e_in enters its last token from the right. The two folds and the two
       * scans over the channel's segments do not depend on each other, so
       * they run side by side: each shuffle round waits once for four
       * shuffles instead of twice for two (the same sums as one after the
       * other, so the same bits) */
      float Ag = a[0], Bg = dtu[0] * Bv[0];
      SC_UNROLL
      for (int i = 1; i < K; i++) {
        Bg = a[i] * Bg + dtu[i] * Bv[i];
        Ag *= a[i];
      }
      float P = Ag, Q = 0.0f;
      SC_UNROLL
      for (int i = K - 1; i >= 0; i--)
        Q = a[i] * (Q + g[i] * Cv[i]);
      float carry = 0.0f, ecarry = 0.0f;
      if (seg == 0) {
        carry = hs[c * N + n];
        Bg = Ag * carry + Bg;
      }
      if (seg == S - 1) {
        ecarry = es[c * N + n];
        Q = P * ecarry + Q;
      }
      SC_UNROLL
      for (int off = 1; off < S; off *= 2) {
        const float Au = sc_shfl_up(Ag, off * CH), Bu = sc_shfl_up(Bg, off * CH);
        const float Pd = sc_shfl_down(P, off * CH), Qd = sc_shfl_down(Q, off * CH);
        dA_pend += sc_shfl_xor(dA_pend, off * CH);
        if (seg >= off) {
          Bg = Ag * Bu + Bg;
          Ag = Ag * Au;
        }
        if (seg + off < S) {
          Q = P * Qd + Q;
          P = P * Pd;
        }
      }
      if (seg == 0 && n > 0)
        dAs[c * N + n - 1] += dA_pend;
      float h = sc_shfl_up(Bg, CH);
      if (seg == 0)
        h = carry;
      float e = sc_shfl_down(Q, CH); /* e entering this segment's last token */
      if (seg == S - 1)
        e = ecarry;
      const float leaving = sc_shfl(Q, cl); /* e leaving the tile's first token (segment 0) */
      if (seg == S - 1)                     /* the lane that read the reverse carry writes it */
        es[c * N + n] = leaving;
      SC_UNROLL
      for (int i = 0; i < K; i++) {
        hp[i] = h;
        h = a[i] * h + dtu[i] * Bv[i];
      }

      float dA_part = 0.0f, sB[K], sC[K];
      SC_UNROLL
      for (int i = K - 1; i >= 0; i--) {
        const float dh = e + g[i] * Cv[i];
        const float w = a[i] * hp[i];
        const float hi = w + dtu[i] * Bv[i];
        const float sw = dh * w;
        dA_part += sw * dt[i];
        dAw[i] += A * sw;
        q[i] += dh * Bv[i];
        sB[i] = dh * dtu[i];
        sC[i] = g[i] * hi;
        acc[i] += hi * Cv[i];
        e = a[i] * dh;
      }
      float *rB = red + ((size_t)(buf * 2 + 0) * G + c) * RP + seg * K;
      float *rC = red + ((size_t)(buf * 2 + 1) * G + c) * RP + seg * K;
      SC_UNROLL
      for (int i = 0; i < K; i += 4) {
        sc_float4 vb, vc;
        vb.x = sB[i], vb.y = sB[i + 1], vb.z = sB[i + 2], vb.w = sB[i + 3];
        vc.x = sC[i], vc.y = sC[i + 1], vc.z = sC[i + 2], vc.w = sC[i + 3];
        sc_st4(rB + i, vb);
        sc_st4(rC + i, vc);
      }
      dA_pend = dA_part; /* summed over the segments in step n + 1's shuffle rounds */
      sc_sync(); /* shares of step n written; everyone has read row n of Bs, Cs */
      if (tid < 2 * TILE) {
        const int share = tid / TILE, tt = tid % TILE;
        const float *r = red + (size_t)(buf * 2 + share) * G * RP + tt;
        float s = 0.0f;
        for (int cc = 0; cc < G; cc++)
          s += r[cc * RP];
        (share ? Cs : Bs)[sc_bc_at(n, tt)] = s;
      }
      /* the other buffer is written next; this one again only after the
       * next step's barrier, which every reader of it has passed */
    }
    if (!FOLD) { /* the last step's dA */
      SC_UNROLL
      for (int off = 1; off < S; off *= 2)
        dA_pend += sc_shfl_xor(dA_pend, off * CH);
      if (seg == 0)
        dAs[c * N + N - 1] += dA_pend;
    }

    if (!FOLD) { /* the fold pass has no gradients */
      /* u, delta, z and dy again (the n loop used their space), coalesced as before */
      sc_stage_fetch<T, NT, PER>(delta, row, t0, tlast, p.D, d0, vec_d, xd);
      sc_stage_fetch<T, NT, PER>(u, row, t0, tlast, p.D, d0, vec_u, xu);
      sc_stage_fetch<T, NT, PER>(dy, row, t0, tlast, p.D, d0, vec_g, xg);
      sc_stage_fetch<T, NT, PER>(zr, row, t0, tlast, p.D, d0, vec_z, xz);
      sc_sync(); /* the last step's sums are in Bs, Cs, and its shares are read: stage is free */
      sc_stage_put<T, CH, NT, PER>(stage, xd);
      sc_stage_put<T, CH, NT, PER>(stage + SZ, xu);
      sc_stage_put<T, CH, NT, PER>(stage + 2 * SZ, xg);
      sc_stage_put<T, CH, NT, PER>(stage + 3 * SZ, xz);
      sc_sync();
      T eu[K], ed[K], ez[K], eg[K];
      sc_stage_get<T, CH, K>(stage, c, seg * K, ed);
      sc_stage_get<T, CH, K>(stage + SZ, c, seg * K, eu);
      sc_stage_get<T, CH, K>(stage + 2 * SZ, c, seg * K, eg);
      sc_stage_get<T, CH, K>(stage + 3 * SZ, c, seg * K, ez);
      float du_o[K], dd_o[K], dz_o[K]; /* 0 where nothing is stored (channels past D, tokens past L) */
      SC_UNROLL
      for (int i = 0; i < K; i++) {
        const int tt = seg * K + i;
        const long long t = (long long)t0 + tt;
        du_o[i] = dd_o[i] = dz_o[i] = 0.0f;
        if (chan && t < p.L) {
          float du_v = 0.0f, dd_v = 0.0f, dz_v = 0.0f;
          if (!(flags[tt] & SC_TOK_PAD)) {
            const float uu = sc_ld(eu, i), raw = sc_ld(ed, i) + bias;
            du_v = dt[i] * q[i] + g[i] * Dd;
            const float ddt = dAw[i] + uu * q[i];
            dd_v = p.softplus ? ddt * sc_softplus_grad(raw) : ddt;
            dD_acc += g[i] * uu;
            dbias_acc += dd_v;
            if (z) {
              const float zz = sc_ld(ez, i), sg = sc_sigmoid(zz);
              const float ypre = acc[i] + Dd * uu;
              dz_v = sc_ld(eg, i) * ypre * sg * (1.0f + zz * (1.0f - sg));
            }
          }
          du_o[i] = du_v;
          dd_o[i] = dd_v;
          dz_o[i] = dz_v;
        }
      }
      /* no barrier: a thread's outputs go where its own inputs were */
      if (p.du)
        sc_stage_set<T, CH, K>(stage, c, seg * K, du_o);
      if (p.ddelta)
        sc_stage_set<T, CH, K>(stage + SZ, c, seg * K, dd_o);
      if (p.dz)
        sc_stage_set<T, CH, K>(stage + 2 * SZ, c, seg * K, dz_o);
      sc_sync();
      if (p.du)
        sc_stage_store<T, CH, NT>((T *)p.du, stage, row, t0, p.L, p.D, d0, nvalid, vec_du);
      if (p.ddelta)
        sc_stage_store<T, CH, NT>((T *)p.ddelta, stage + SZ, row, t0, p.L, p.D, d0, nvalid, vec_dd);
      if (p.dz)
        sc_stage_store<T, CH, NT>((T *)p.dz, stage + 2 * SZ, row, t0, p.L, p.D, d0, nvalid, vec_dz);
      {
        const size_t base = ((size_t)b * p.ngroups + grp) * (size_t)p.L;
        for (int e = tid; e < TILE * N; e += NT) {
          const int tt = e / N, n = e - tt * N;
          const long long t = (long long)t0 + tt;
          if (t < p.L) {
            const size_t o = (base + (size_t)t) * (size_t)N + (size_t)n;
            p.dBp[o] = Bs[sc_bc_at(n, tt)];
            p.dCp[o] = Cs[sc_bc_at(n, tt)];
          }
        }
      }
    }
  }

  if (FOLD) { /* P and E of this part, for scan_carry_rev_kernel */
    sc_sync(); /* the last step's es, dAs writes are visible */
    const size_t at = (prow * (size_t)p.D + (size_t)d0) * (size_t)N;
    for (int e = tid; e < nvalid * N; e += NT) {
      p.wsP[at + e] = dAs[e];
      p.wsE[at + e] = es[e];
    }
  } else { /* this (row, part)'s dD, ddelta_bias and dA */
    SC_UNROLL
    for (int off = 1; off < S; off *= 2) {
      dD_acc += sc_shfl_xor(dD_acc, off * CH);
      dbias_acc += sc_shfl_xor(dbias_acc, off * CH);
    }
    if (seg == 0 && chan) {
      p.dDp[prow * p.D + d] = dD_acc;
      p.dbp[prow * p.D + d] = dbias_acc;
    }
    sc_sync(); /* dAs is complete */
    for (int e = tid; e < nvalid * N; e += NT)
      p.dAp[(prow * p.D + d0) * (size_t)N + e] = dAs[e];
  }
}

/* Split rows, backward: the adjoint entering each part's last token, from
 * the fold pass's P, E of the parts to its right, last part first; written
 * over wsE (part p's E is read before its slot takes e_in). One thread per
 * (row, channel, state index). */
SC_KERNEL void SC_BOUNDS(MB_SCAN_REDUCE_THREADS, 1) scan_carry_rev_kernel(const scan_params p) {
  const long long DN = (long long)p.D * p.N, total = (long long)p.batch * DN;
  for (long long e = sc_bid() * MB_SCAN_REDUCE_THREADS + sc_tid(); e < total;
       e += sc_nblocks() * MB_SCAN_REDUCE_THREADS) {
    const long long b = e / DN, r = e - b * DN;
    float ein = 0.0f; /* entering the last part */
    for (int part = p.parts - 1; part >= 0; part--) {
      const size_t at = ((size_t)b * p.parts + part) * (size_t)DN + (size_t)r;
      const float P = part > 0 ? p.wsP[at] : 0.0f, E = part > 0 ? p.wsE[at] : 0.0f; /* part 0 was not folded */
      p.wsE[at] = ein;
      ein = P * ein + E; /* entering the part to the left */
    }
  }
}

/* dB, dC [B, L, N] = the channel groups' partials added in group order. */
template <typename T> SC_KERNEL void SC_BOUNDS(MB_SCAN_REDUCE_THREADS, 1) scan_reduce_bc_kernel(const scan_params p) {
  const long long LN = (long long)p.L * p.N, total = (long long)p.batch * LN;
  for (long long e = sc_bid() * MB_SCAN_REDUCE_THREADS + sc_tid(); e < total;
       e += sc_nblocks() * MB_SCAN_REDUCE_THREADS) {
    const long long b = e / LN, r = e - b * LN;
    const float *pb = p.dBp + (size_t)(b * p.ngroups * LN + r), *pc = p.dCp + (size_t)(b * p.ngroups * LN + r);
    float sb = 0.0f, sc = 0.0f;
    for (int grp = 0; grp < p.ngroups; grp++) {
      sb += pb[(size_t)grp * LN];
      sc += pc[(size_t)grp * LN];
    }
    if (p.dB)
      sc_st((T *)p.dB, (size_t)e, sb);
    if (p.dC)
      sc_st((T *)p.dC, (size_t)e, sc);
  }
}

/* dA_log [D, N] = A * (dA summed over rows), dD and ddelta_bias [D] summed
 * over rows, in row order. With p.batch = 0 it writes zeros. */
SC_KERNEL void SC_BOUNDS(MB_SCAN_REDUCE_THREADS, 1) scan_reduce_params_kernel(const scan_params p) {
  const long long DN = (long long)p.D * p.N, total = DN + p.D;
  for (long long e = sc_bid() * MB_SCAN_REDUCE_THREADS + sc_tid(); e < total;
       e += sc_nblocks() * MB_SCAN_REDUCE_THREADS) {
    if (e < DN) {
      if (!p.dA_log)
        continue;
      float s = 0.0f;
      for (long long r = 0; r < (long long)p.batch * p.parts; r++) /* (row, part) in order */
        s += p.dAp[(size_t)(r * DN + e)];
      const float A = -expf(sc_ld_dt(p.A_log, p.pdt, (size_t)e));
      sc_st_dt(p.dA_log, p.pdt, (size_t)e, s * A);
    } else {
      const long long d = e - DN;
      float sD = 0.0f, sb = 0.0f;
      for (long long r = 0; r < (long long)p.batch * p.parts; r++) {
        sD += p.dDp[(size_t)(r * p.D + d)];
        sb += p.dbp[(size_t)(r * p.D + d)];
      }
      if (p.dD)
        sc_st_dt(p.dD, p.pdt, (size_t)d, sD);
      if (p.dbias)
        sc_st_dt(p.dbias, p.pdt, (size_t)d, sb);
    }
  }
}

/* ---- host-side drivers -------------------------------------------------- */

/* The drivers check a call and launch its kernels through `launch`:
 *   int launch(void (*kernel)(scan_params), long long blocks, int threads,
 *              size_t smem_bytes, const scan_params &p, const char *what)
 * (selective_scan.cu launches on a stream; the emulation test runs the
 * blocks on fibers). */

static inline long long sc_grid_stride_blocks(long long n) {
  long long blocks = (n + MB_SCAN_REDUCE_THREADS - 1) / MB_SCAN_REDUCE_THREADS;
  if (blocks < 1)
    blocks = 1;
  return blocks < 65536 ? blocks : 65536;
}

static inline scan_params sc_params(const mb_scan_desc *d, mb_dtype pdt, const mb_cuda_scan_in *in,
                                    const mb_scan_plan &pl) {
  scan_params p;
  memset(&p, 0, sizeof p);
  p.u = in->u, p.delta = in->delta, p.B = in->B, p.C = in->C, p.z = in->z;
  p.A_log = in->A_log, p.Dp = in->D, p.bias = in->delta_bias;
  p.pdt = (int)pdt;
  p.cu = d->cu_seqlens;
  p.nseq = d->cu_seqlens ? d->nseq : 0;
  p.batch = d->batch, p.L = d->seqlen, p.D = d->dim, p.N = d->dstate;
  p.ntiles = pl.ntiles, p.ngroups = pl.ngroups;
  p.softplus = d->delta_softplus != 0;
  p.parts = pl.parts, p.part_tiles = pl.part_tiles;
  return p;
}

template <typename T, class Launch> int sc_fwd_launch(Launch &launch, const scan_params &p, const mb_scan_plan &pl) {
  const size_t smem = pl.fwd_smem + mb_scan_fwd_stage_bytes(sizeof(T));
  if (p.parts > 1) { /* fold the first parts, carry their states across, then scan every part at once */
    void (*fold)(scan_params) = p.cu ? scan_fwd_kernel<T, true, true> : scan_fwd_kernel<T, false, true>;
    MB_TRY(launch(fold, pl.blocks * (p.parts - 1), MB_SCAN_FWD_THREADS, smem, p,
                  "selective scan forward (fold pass)"));
    MB_TRY(launch(scan_carry_kernel, sc_grid_stride_blocks((long long)p.batch * p.D * p.N), MB_SCAN_REDUCE_THREADS, 0,
                  p, "selective scan forward (carry pass)"));
  }
  void (*k)(scan_params) = p.cu ? scan_fwd_kernel<T, true, false> : scan_fwd_kernel<T, false, false>;
  return launch(k, pl.blocks * p.parts, MB_SCAN_FWD_THREADS, smem, p, "selective scan forward");
}

template <class Launch>
int scan_fwd_run(Launch &launch, const mb_scan_desc *d, mb_dtype dt, mb_dtype pdt, const mb_cuda_scan_in *in, void *y,
                 float *states) {
  MB_TRY(mb_scan_plan_check(d, dt, pdt));
  if (!in)
    return MB_ERR(MB_EINVAL, "cuda selective scan forward: NULL inputs");
  mb_scan_plan pl;
  mb_scan_plan_make(d, &pl);
  if (pl.blocks == 0 || d->seqlen == 0)
    return MB_OK;
  if (!in->u || !in->delta || !in->A_log || !in->B || !in->C || !y || !states)
    return MB_ERR(MB_EINVAL, "cuda selective scan forward: NULL u, delta, A_log, B, C, y or states");
  scan_params p = sc_params(d, pdt, in, pl);
  p.y = y;
  p.states = states;
  switch (dt) {
  case MB_F32: return sc_fwd_launch<float>(launch, p, pl);
  case MB_BF16: return sc_fwd_launch<sc_bf16>(launch, p, pl);
  default: return sc_fwd_launch<sc_f16>(launch, p, pl); /* MB_F16: checked above */
  }
}

template <typename T, class Launch>
int sc_bwd_launch(Launch &launch, const scan_params &p, const mb_scan_plan &pl, bool any_bc) {
  if (p.parts > 1) { /* fold the last parts' adjoints, carry them leftwards, then every part at once */
    void (*fold)(scan_params) = p.cu ? scan_bwd_kernel<T, true, true> : scan_bwd_kernel<T, false, true>;
    MB_TRY(launch(fold, pl.blocks * (p.parts - 1), MB_SCAN_BWD_THREADS, pl.bwd_smem, p,
                  "selective scan backward (fold pass)"));
    MB_TRY(launch(scan_carry_rev_kernel, sc_grid_stride_blocks((long long)p.batch * p.D * p.N),
                  MB_SCAN_REDUCE_THREADS, 0, p, "selective scan backward (carry pass)"));
  }
  void (*k)(scan_params) = p.cu ? scan_bwd_kernel<T, true, false> : scan_bwd_kernel<T, false, false>;
  MB_TRY(launch(k, pl.blocks * p.parts, MB_SCAN_BWD_THREADS, pl.bwd_smem, p, "selective scan backward"));
  if (!any_bc)
    return MB_OK;
  const long long n = (long long)p.batch * p.L * p.N;
  return launch(scan_reduce_bc_kernel<T>, sc_grid_stride_blocks(n), MB_SCAN_REDUCE_THREADS, 0, p,
                "selective scan backward (dB, dC)");
}

template <class Launch>
int scan_bwd_run(Launch &launch, const mb_scan_desc *d, mb_dtype dt, mb_dtype pdt, const mb_cuda_scan_in *in,
                 const float *states, const void *dy, const mb_cuda_scan_grad *gr, void *ws, size_t ws_bytes) {
  MB_TRY(mb_scan_plan_check(d, dt, pdt));
  if (!in || !gr)
    return MB_ERR(MB_EINVAL, "cuda selective scan backward: NULL inputs or gradients");
  if ((gr->dD && !in->D) || (gr->dz && !in->z) || (gr->ddelta_bias && !in->delta_bias))
    return MB_ERR(MB_EINVAL, "cuda selective scan backward: gradient asked for an input that was not given (D, z "
                             "or delta_bias is NULL)");
  if (!in->A_log)
    return MB_ERR(MB_EINVAL, "cuda selective scan backward: NULL A_log");
  mb_scan_plan pl;
  mb_scan_plan_make(d, &pl);
  const bool empty = pl.blocks == 0 || d->seqlen == 0;
  if (!empty) {
    if (!in->u || !in->delta || !in->B || !in->C || !states || !dy)
      return MB_ERR(MB_EINVAL, "cuda selective scan backward: NULL u, delta, B, C, states or dy");
    if (!ws || ws_bytes < pl.ws_bytes)
      return MB_ERR(MB_EINVAL, "cuda selective scan backward: workspace has %zu bytes, needs %zu", ws ? ws_bytes : 0,
                    pl.ws_bytes);
    if ((uintptr_t)ws % MB_SCAN_WS_ALIGN)
      return MB_ERR(MB_EINVAL, "cuda selective scan backward: workspace must be %d-byte aligned", MB_SCAN_WS_ALIGN);
  }
  scan_params p = sc_params(d, pdt, in, pl);
  p.states = (float *)states;
  p.dy = dy;
  p.du = gr->du, p.ddelta = gr->ddelta, p.dz = gr->dz, p.dB = gr->dB, p.dC = gr->dC;
  p.dA_log = gr->dA_log, p.dD = gr->dD, p.dbias = gr->ddelta_bias;
  if (!empty) {
    unsigned char *w = (unsigned char *)ws;
    p.dBp = (float *)(w + pl.ws_dB), p.dCp = (float *)(w + pl.ws_dC), p.dAp = (float *)(w + pl.ws_dA);
    p.dDp = (float *)(w + pl.ws_dD), p.dbp = (float *)(w + pl.ws_dbias);
    p.wsP = (float *)(w + pl.ws_P), p.wsE = (float *)(w + pl.ws_E);
    const bool any_bc = p.dB || p.dC;
    switch (dt) {
    case MB_F32: MB_TRY(sc_bwd_launch<float>(launch, p, pl, any_bc)); break;
    case MB_BF16: MB_TRY(sc_bwd_launch<sc_bf16>(launch, p, pl, any_bc)); break;
    default: MB_TRY(sc_bwd_launch<sc_f16>(launch, p, pl, any_bc)); break;
    }
  } else {
    p.batch = 0; /* no tokens: the parameter gradients are zero */
  }
  if (!p.dA_log && !p.dD && !p.dbias)
    return MB_OK;
  return launch(scan_reduce_params_kernel, sc_grid_stride_blocks((long long)d->dim * d->dstate + d->dim),
                MB_SCAN_REDUCE_THREADS, 0, p, "selective scan backward (dA_log, dD, ddelta_bias)");
}

} // namespace SC_NS

#endif
