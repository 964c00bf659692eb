/* test_cuda_attention_emu.h: a host emulation of the few CUDA features the
 * attention kernels use, so that their unmodified bodies and launchers run
 * on the CPU (kernels/cuda/attention_common.cuh includes this header when
 * ATTN_EMULATE names it; only test_cuda_attention_emu.cpp does that).
 *
 * Each CTA runs as blockDim.x fibers (one per CUDA thread) that switch only
 * where CUDA threads synchronise: __syncthreads[_or] and the warp-wide
 * operations (shuffles, ballot, ldmatrix, mma), which execute once all 32
 * lanes of the warp have arrived. The warp operations are written from the
 * PTX ISA's fragment tables (sections "Matrix Fragments for mma.m16n8k16
 * with floating point type", "... for mma.m16n8k32", "ldmatrix"), not from
 * the kernels. What it checks beyond the numbers:
 *  - cp.async copies land at cp.async.wait_all (the latest moment the
 *    hardware may deliver them), so a read before the wait sees stale data;
 *    in thread orders 1 and 3 they land at the issue as well (the earliest
 *    moment), so overwriting a tile that is still being read (by another
 *    warp, or by a wgmma not yet waited for) changes the result; shared
 *    memory starts every CTA as 0xff bytes (NaN);
 *  - between barriers, warps run in lockstep or one at a time up to the
 *    next barrier (ascending, descending, random), so a read of another
 *    warp's shared-memory writes without a barrier sees stale data in some
 *    order and the results differ;
 *  - wgmma (Hopper's warpgroup MMA, attention_wgmma.cuh) runs at
 *    wgmma.wait_group, the latest moment the hardware may: it reads the
 *    shared memory, the A registers and the accumulators then, so an
 *    overwrite before the wait changes the result; it is also an error when
 *    the accumulators or A registers differ at the wait from what they were
 *    at the issue, when an mma_async has no wgmma.fence since the thread's
 *    last wait, when a wgmma reads shared memory that cp.async wrote without
 *    the writing thread's fence.proxy.async since, when a thread exits with
 *    wgmma in flight, and when the warps of a warpgroup issued different
 *    numbers of them; descriptors are decoded from the PTX ISA's canonical
 *    layouts (no swizzle, the 128-byte swizzle, or K-major the 64-byte
 *    one; other modes are errors);
 *  - TMA box loads (cp.async.bulk.tensor) land at issue in orders 1 and 3,
 *    else when a thread waits on their mbarrier (the latest moment), zeros
 *    outside the tensor, 128- or 64-byte swizzled; mbarriers keep counts,
 *    transaction bytes and phases, a waiter sleeps until its phase has
 *    completed, an arrival lets the other warps run before the thread goes
 *    on (so a stage released too early is refilled under a reader); named
 *    barriers (bar.sync / bar.red.or with a thread count, bar.arrive
 *    without waiting) release when that many threads arrived, and a CTA
 *    exiting with arrivals still waiting for their phase is an error; a CTA exiting with TMA in flight, a wait
 *    nobody can satisfy (deadlock) and more arrivals than expected are
 *    errors;
 *  - a barrier or warp operation that not every thread / lane reaches, a
 *    thread that exits with copies in flight, misaligned ldmatrix or
 *    cp.async addresses outside shared memory, a launch with an empty grid
 *    or more shared memory than an H100 gives (227 KB) are reported as
 *    errors (the test fails).
 * Fibers: ucontext starts them, _setjmp/_longjmp switches (no syscall).
 */
#ifndef MB_TESTS_CUDA_ATTENTION_EMU_H
#define MB_TESTS_CUDA_ATTENTION_EMU_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <type_traits>
#include <vector>

#ifndef ATTN_EMULATE_SHIM /* with the toolkit's headers (the GPU tests on the emulator) */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#endif

#include "runtime/dtype.h"

#define __launch_bounds__(...)

static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }

namespace emu {

/* OP_BAR: a block barrier (in[1] = id, in[2] = thread count, 0: all);
 * OP_MBAR: waiting on an mbarrier (not a warp operation: resumed alone
 * once the phase it waits for has completed); OP_YIELD: an mbarrier
 * arrival, after which the thread lets the other warps run first (resumed
 * in the scheduler's next round), so whatever the arrival releases (a TMA
 * refill of the stage) can happen before the thread's next step. */
enum Op {
  OP_NONE = 0,
  OP_BAR,
  OP_SHFL,
  OP_BALLOT,
  OP_LDSM,
  OP_MMA_BF16,
  OP_MMA_F16,
  OP_MMA_E4M3,
  OP_WG_WAIT,
  OP_MBAR,
  OP_YIELD
};
enum Shfl { SHFL_XOR, SHFL_UP, SHFL_IDX };

struct Copy {
  void *dst;
  const void *src; /* NULL: 16 zero bytes */
};

/* One wgmma.mma_async as a thread issued it (executed at wait_group). */
struct Wgmma {
  bool rs;         /* A from registers (else from the descriptor da) */
  bool bf16;       /* else f16 (unless e4m3) */
  bool e4m3;       /* e4m3 x e4m3, K = 32, both operands K-major */
  bool trans_a;    /* A (from the descriptor) MN-major */
  bool trans_b;    /* B MN-major */
  bool accumulate; /* else D = A B */
  int n;           /* N of m64nNk16 */
  uint64_t da, db;
  const uint32_t *a; /* rs: the thread's 4 A registers */
  uint32_t a_issued[4];
  float *d;                   /* the thread's n/2 accumulators */
  std::vector<float> d_issued; /* for the first pending wgmma on d: its value at the issue */
  std::vector<uint16_t> smem_issued; /* lane 0: the shared-memory operands' bits at the issue (wgmma_smem_bits) */
};

/* One tensor bulk reduce (cp.reduce.async.bulk.tensor ... add, f32) as a
 * thread issued it: the box of `map` at (x, y, z) += the swizzled box at
 * src, done at the issue in thread orders 1 and 3 (`done`), else at the
 * issuing thread's wait_group (the latest the hardware may read the
 * source), so a source rewritten before that wait changes the result. */
struct BulkReduce {
  const AttnTmaMap *map;
  int x, y, z;
  const unsigned char *src;
  bool done;
};

/* One TMA box copy in flight (cp.async.bulk.tensor), delivered at the
 * latest when a thread waits on its mbarrier. */
struct TmaCopy {
  unsigned char *dst;
  const AttnTmaMap *map;
  int x, y, z;
};

/* An mbarrier: its phase completes when `pending` arrivals have come and
 * `tx` bytes of transactions have landed. */
struct Mbar {
  uint32_t count = 0, pending = 0, phase = 0;
  int64_t tx = 0;
  std::vector<TmaCopy> inflight;
};

/* What attn_tma_map_rows writes into an AttnTmaMap here. */
struct TmaDesc {
  uint64_t magic;
  const unsigned char *base;
  uint64_t dims[3], strides[2]; /* elements; bytes between consecutive indices of dims 1 and 2 */
  uint32_t box[3], esize;
  uint32_t swizzle; /* bytes: 128 (CU_TENSOR_MAP_SWIZZLE_128B) or 64 */
};
static_assert(sizeof(TmaDesc) <= sizeof(AttnTmaMap), "TmaDesc fits an AttnTmaMap");
static const uint64_t TMA_MAGIC = 0x746d61656d75ull;

/* Shared memory starting at a 1024-byte aligned address, as the hardware's
 * swizzle patterns are computed from address bits. */
struct SmemBuf {
  std::vector<unsigned char> raw;
  unsigned char *p = NULL;
  size_t n = 0;
  void assign(size_t bytes, unsigned char v) {
    raw.assign(bytes + 1024, v);
    p = (unsigned char *)(((uintptr_t)raw.data() + 1023) & ~(uintptr_t)1023);
    n = bytes;
  }
  unsigned char *data() { return p; }
  const unsigned char *data() const { return p; }
  size_t size() const { return n; }
};

struct Fiber {
  ucontext_t uc;
  jmp_buf jb;
  bool started, done;
  int op;
  uint32_t in[8], out[8];
  float fin[4], fout[4];
  const void *addr;
  bool trans;
  std::vector<Copy> copies;                   /* issued, not committed */
  std::vector<std::vector<Copy>> copy_groups; /* committed, oldest first */
  std::vector<char> stack;
  std::vector<size_t> unfenced;           /* 16-byte shared chunks this thread's cp.async wrote, not yet fenced */
  std::vector<Wgmma> wg_open;             /* issued, not committed */
  std::vector<std::vector<Wgmma>> wg_groups; /* committed, oldest first */
  bool wg_fenced;                         /* wgmma.fence since the last wait_group */
  long wg_issued;
  const void *mbar; /* OP_MBAR: the barrier and the parity waited for */
  uint32_t mbar_parity;
  std::vector<BulkReduce> bulk_open;                /* cp.reduce.async.bulk.tensor issued, not committed */
  std::vector<std::vector<BulkReduce>> bulk_groups; /* committed, oldest first */
};

struct State {
  std::vector<Fiber> fibers;
  int nthreads = 0, cur = 0;
  jmp_buf sched;
  ucontext_t sched_uc;
  dim3 grid, block, bidx;
  SmemBuf smem;
  std::vector<int> unfenced_by; /* per 16-byte chunk of smem: 1 + the thread whose cp.async wrote it, unfenced; 0 */
  std::vector<std::pair<size_t, Mbar>> mbars; /* by shared-memory offset */
  int bar_arrived[16] = {0};                  /* bar.arrive's (non-waiting) arrivals per named barrier */
  int bar_arrive_count[16] = {0};             /* the thread count they gave */
  std::function<void()> body;
  int order = 0; /* run_block's thread orders, 0..3 */
  int func_regs = 168; /* cudaFuncGetAttributes' numRegs: what ptxas gives the 384-thread kernels */
  std::mt19937 rng{12345};
  long long collectives = 0, launches = 0, errors = 0, wgmma_issued = 0, tma_issued = 0;
  char first_error[512] = {0};
};

inline State &S() {
  static State s;
  return s;
}

inline void error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
inline void error(const char *fmt, ...) {
  State &s = S();
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (!s.errors++)
    snprintf(s.first_error, sizeof s.first_error, "%s", buf);
  fprintf(stderr, "emulator: %s (block %u,%u,%u thread %d)\n", buf, s.bidx.x, s.bidx.y, s.bidx.z, s.cur);
}

inline Fiber &me() { return S().fibers[S().cur]; }

/* Fiber -> scheduler. */
inline void yield() {
  Fiber &f = me();
  if (!_setjmp(f.jb))
    _longjmp(S().sched, 1);
}

/* Deposit `op` and wait until the warp (or block) has executed it. */
inline void wait_op(int op) {
  me().op = op;
  yield();
}

inline bool in_smem(const void *p, size_t bytes) {
  const unsigned char *b = S().smem.data(), *q = (const unsigned char *)p;
  return q >= b && q + bytes <= b + S().smem.size();
}

inline size_t smem_off(const void *p) { return (size_t)((const unsigned char *)p - S().smem.data()); }

/* The 128-byte swizzle (TMA's CU_TENSOR_MAP_SWIZZLE_128B, wgmma's mode 1):
 * address bits 4-6 (the 16-byte chunk within a 128-byte row) XOR bits 7-9
 * (the row within a 1024-byte group of 8). */
inline size_t swizzle128(size_t off) { return off ^ (((off >> 7) & 7) << 4); }

/* The 64-byte swizzle (CU_TENSOR_MAP_SWIZZLE_64B, wgmma's mode 2): bits 4-5
 * (the 16-byte chunk within a 64-byte row) XOR bits 7-8. CUTLASS's
 * Swizzle<2,4,3>. */
inline size_t swizzle64(size_t off) { return off ^ (((off >> 7) & 3) << 4); }

/* ---- mbarriers and TMA ---- */

inline Mbar *find_mbar(const void *bar) {
  if (((uintptr_t)bar & 7) || !in_smem(bar, 8)) {
    error("mbarrier %p is misaligned or outside shared memory", bar);
    return NULL;
  }
  const size_t off = smem_off(bar);
  for (auto &e : S().mbars)
    if (e.first == off)
      return &e.second;
  error("mbarrier at shared byte %zu used before mbarrier.init", off);
  return NULL;
}

inline void mbar_complete(Mbar &b) {
  if (b.pending == 0 && b.tx == 0) {
    b.phase++;
    b.pending = b.count;
  }
}

inline void mbar_arrive(Mbar &b) {
  if (b.pending == 0)
    return error("mbarrier: more arrivals than its count in one phase");
  b.pending--;
  mbar_complete(b);
}

/* Deliver one box: element (x', y', z') of the box from the tensor (zeros
 * outside it) to dst + ((z' box1 + y') box0 + x') esize, swizzled; the
 * bytes count against the barrier's transactions. The async proxy writes
 * it, so no fence.proxy.async is needed before a wgmma reads it. */
inline void tma_land(const TmaCopy &c, Mbar &b) {
  State &s = S();
  TmaDesc d;
  memcpy(&d, c.map->opaque, sizeof d);
  const size_t off0 = smem_off(c.dst), es = d.esize;
  for (uint32_t z = 0; z < d.box[2]; z++)
    for (uint32_t y = 0; y < d.box[1]; y++)
      for (uint32_t x = 0; x < d.box[0]; x++) {
        const int64_t gx = (int64_t)c.x + x, gy = (int64_t)c.y + y, gz = (int64_t)c.z + z;
        const bool in = gx >= 0 && gx < (int64_t)d.dims[0] && gy >= 0 && gy < (int64_t)d.dims[1] && gz >= 0 &&
                        gz < (int64_t)d.dims[2];
        const size_t lin = off0 + (((size_t)z * d.box[1] + y) * d.box[0] + x) * es;
        const size_t off = d.swizzle == 64 ? swizzle64(lin) : swizzle128(lin);
        if (in)
          memcpy(s.smem.data() + off, d.base + gx * es + gy * d.strides[0] + gz * d.strides[1], es);
        else
          memset(s.smem.data() + off, 0, es);
        s.unfenced_by[off / 16] = 0;
      }
  b.tx -= (int64_t)d.box[0] * d.box[1] * d.box[2] * es;
}

/* Whether the phase of parity `parity` has completed; if not, the copies
 * in flight on the barrier land first (the latest the hardware may deliver
 * them: a thread waits for them). */
inline bool mbar_ready(const void *bar, uint32_t parity) {
  Mbar *b = find_mbar(bar);
  if (!b)
    return true; /* the error ends the launch */
  if ((b->phase & 1) != parity)
    return true;
  std::vector<TmaCopy> land;
  land.swap(b->inflight);
  for (const TmaCopy &c : land) {
    tma_land(c, *b);
    mbar_complete(*b);
  }
  return (b->phase & 1) != parity;
}

/* ---- the warp operations, executed once all 32 lanes arrived ---- */

inline float bf16_bits(uint32_t h) {
  const uint32_t u = h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
inline float f16_bits(uint32_t h) { return mb_f16_to_f32((uint16_t)h); }
inline float e4m3_bits(uint32_t b) { return mb_e4m3_to_f32((uint8_t)b); }

/* D = A B + C for an m16n8kK mma over the warp's 32 lanes, once A [16][K]
 * and B [K][8] are decoded: C from each lane's fin, D into its fout (C and
 * D fragments: c_i row g (i < 2) else g+8, col 2t + (i&1)). */
template <int K> inline void mma_accumulate(Fiber *L, const float (*A)[K], const float (*B)[8]) {
  float C[16][8];
  for (int l = 0; l < 32; l++) {
    const int g = l / 4, t = l % 4;
    for (int i = 0; i < 4; i++)
      C[i < 2 ? g : g + 8][2 * t + (i & 1)] = L[l].fin[i];
  }
  for (int l = 0; l < 32; l++) {
    const int g = l / 4, t = l % 4;
    for (int i = 0; i < 4; i++) {
      const int row = i < 2 ? g : g + 8, col = 2 * t + (i & 1);
      float acc = C[row][col];
      for (int k = 0; k < K; k++)
        acc += A[row][k] * B[k][col];
      L[l].fout[i] = acc;
    }
  }
}

/* The shared-memory address of element (mn, k) of a no-swizzle wgmma
 * operand (attention_wgmma.cuh, from the PTX ISA's canonical layouts);
 * NULL (with an error) for a descriptor the emulator does not model. */
inline const unsigned char *wgmma_elem(uint64_t desc, bool mn_major, int mn, int k, int esize) {
  const size_t start = (size_t)(desc & 0x3fff) << 4, lbo = (size_t)((desc >> 16) & 0x3fff) << 4,
               sbo = (size_t)((desc >> 32) & 0x3fff) << 4;
  const int mode = (int)(desc >> 62);
  if (mode > 2 || (mode == 2 && mn_major)) {
    error("wgmma descriptor with swizzle mode %d%s (the emulator models none (0), 128 bytes (1) and K-major 64 "
          "bytes (2))",
          mode, mn_major ? ", MN-major" : "");
    return NULL;
  }
  if ((desc >> 49) & 7) {
    error("wgmma descriptor with base offset %d (0: the emulator models pattern-aligned starts)",
          (int)((desc >> 49) & 7));
    return NULL;
  }
  const int per16 = 16 / esize; /* elements per 16 bytes: a core matrix row */
  size_t off = mn_major ? start + (mn % 8) * esize + (mn / 8) * sbo + (k % 8) * 16 + (k / 8) * lbo
                        : start + (mn % 8) * 16 + (mn / 8) * sbo + (k % per16) * esize + (k / per16) * lbo;
  if (mode == 1) {
    /* CUTLASS's canonical GMMA layouts (cute/atom/mma_traits_sm90_gmma.hpp),
     * in bytes; T = 16 bytes of elements:
     *   K-major:  Swizzle<3,4,3> o ((8,m),(T,2)):((8T,SBO),(1,T)) -- rows
     *             of 128 bytes, 8-row groups SBO apart, k contiguous
     *   MN-major: Swizzle<3,4,3> o ((T,8,m),(8,k)):((1,T,LBO),(8T,SBO)) --
     *             64 (16-bit) mn contiguous, the next 64 LBO on; k rows of
     *             128 bytes, 8-row groups SBO apart
     * The start may move within the first 128-byte row (a k-step of a
     * K-major operand) but not across pattern rows: that needs the base
     * offset, which we leave 0. */
    if ((start >> 7) & 7) {
      error("128-byte-swizzled wgmma operand starting at byte %zu, not in the first row of a 1024-byte pattern", start);
      return NULL;
    }
    const size_t per_row = 128 / esize;
    if (!mn_major && (start & 127) + (k + 1) * esize > 128) {
      error("128-byte-swizzled K-major wgmma operand: k %d from byte %zu crosses its 128-byte row", k, start);
      return NULL;
    }
    off = mn_major ? start + (mn % per_row) * esize + (mn / per_row) * lbo + (k % 8) * 128 + (k / 8) * sbo
                   : start + (mn % 8) * 128 + (mn / 8) * sbo + k * esize;
    off = swizzle128(off);
  }
  if (mode == 2) {
    /* K-major only: Swizzle<2,4,3> o ((8,m),(T,2)):((4T,SBO),(1,T)) -- rows
     * of 64 bytes, 8-row groups (512 bytes) SBO apart, k contiguous; the
     * start as for mode 1, within the first row of a 512-byte pattern */
    if ((start >> 6) & 7) {
      error("64-byte-swizzled wgmma operand starting at byte %zu, not in the first row of a 512-byte pattern", start);
      return NULL;
    }
    if ((start & 63) + (k + 1) * esize > 64) {
      error("64-byte-swizzled K-major wgmma operand: k %d from byte %zu crosses its 64-byte row", k, start);
      return NULL;
    }
    off = swizzle64(start + (mn % 8) * 64 + (mn / 8) * sbo + k * esize);
  }
  State &s = S();
  if (off + esize > s.smem.size()) {
    error("wgmma reads shared memory byte %zu of %zu (descriptor 0x%016llx)", off, s.smem.size(),
          (unsigned long long)desc);
    return NULL;
  }
  if (s.unfenced_by[off / 16]) {
    error("wgmma reads shared memory byte %zu, which thread %d wrote (cp.async or a store) and has not fenced "
          "(fence.proxy.async)",
          off, s.unfenced_by[off / 16] - 1);
    return NULL;
  }
  return s.smem.data() + off;
}

/* The bits of every shared-memory element warp w's share of wgmma o reads
 * (A's 16 rows unless from registers, then B), in a fixed order: taken at
 * the issue and again at the wait, where they must be equal -- a store
 * landing in between (another warp's, without a barrier) means the
 * hardware may have read either value; the wait then computes from those
 * bits. False after a descriptor error. */
inline bool wgmma_smem_bits(const Wgmma &o, int w, std::vector<uint16_t> &bits) {
  const int K = o.e4m3 ? 32 : 16, es = o.e4m3 ? 1 : 2;
  bits.clear();
  auto take = [&](const unsigned char *e) {
    if (!e)
      return false;
    bits.push_back((uint16_t)(es == 2 ? e[0] | (e[1] << 8) : e[0]));
    return true;
  };
  if (!o.rs)
    for (int r = 0; r < 16; r++)
      for (int k = 0; k < K; k++)
        if (!take(wgmma_elem(o.da, o.trans_a, 16 * (w % 4) + r, k, es)))
          return false;
  for (int k = 0; k < K; k++)
    for (int c = 0; c < o.n; c++)
      if (!take(wgmma_elem(o.db, o.trans_b, c, k, es)))
        return false;
  return true;
}

/* Execute one wgmma for warp w (rows 16 (w % 4) .. + 15 of the m64 tile):
 * op[l] is lane l's record of it. */
inline void exec_wgmma(const Wgmma *const *op, int w) {
  const Wgmma &o0 = *op[0];
  for (int l = 1; l < 32; l++) {
    const Wgmma &o = *op[l];
    if (o.rs != o0.rs || o.bf16 != o0.bf16 || o.e4m3 != o0.e4m3 || o.trans_b != o0.trans_b || o.trans_a != o0.trans_a ||
        o.accumulate != o0.accumulate ||
        o.n != o0.n || o.db != o0.db || (!o.rs && o.da != o0.da))
      return error("warp %d: lanes issued different wgmma (shape, type, descriptors or scale-d)", w);
  }
  if (o0.e4m3 && (o0.trans_b || o0.trans_a))
    return error("warp %d: e4m3 wgmma with a transposed (MN-major) operand: 8-bit operands are K-major only", w);
  if (o0.rs && o0.trans_a)
    return error("warp %d: wgmma with A from registers cannot transpose A", w);
  auto dec = [&](uint32_t h) { return o0.e4m3 ? e4m3_bits(h) : o0.bf16 ? bf16_bits(h) : f16_bits(h); };
  const int n = o0.n, K = o0.e4m3 ? 32 : 16;
  float A[16][32];
  std::vector<float> B(32 * (size_t)n);
  std::vector<uint16_t> now; /* the shared operands' bits: A's rows (unless rs), then B */
  if (!wgmma_smem_bits(o0, w, now))
    return;
  if (now != o0.smem_issued)
    return error("warp %d: shared memory that a wgmma reads changed between its mma_async and wait_group (a store "
                 "by another warp without a barrier before the issue, or a refill before the wait)",
                 w);
  size_t at = 0;
  for (int l = 0; l < 32; l++) {
    const Wgmma &o = *op[l];
    if (o.rs && memcmp(o.a, o.a_issued, sizeof o.a_issued))
      return error("warp %d lane %d: wgmma A registers changed between mma_async and wait_group", w, l);
    if (!o.d_issued.empty() && memcmp(o.d, o.d_issued.data(), o.d_issued.size() * sizeof(float)))
      return error("warp %d lane %d: wgmma accumulators changed between mma_async and wait_group", w, l);
  }
  if (o0.rs && !o0.e4m3) { /* the m16n8k16 A fragment of rows wr.. */
    for (int l = 0; l < 32; l++) {
      const int g = l / 4, t = l % 4;
      for (int i = 0; i < 8; i++) {
        const uint32_t h = (op[l]->a[i / 2] >> (16 * (i & 1))) & 0xffff;
        const int row = (i < 2 || (i >= 4 && i < 6)) ? g : g + 8, col = 2 * t + (i & 1) + (i >= 4 ? 8 : 0);
        A[row][col] = dec(h);
      }
    }
  } else if (o0.rs) { /* the m16n8k32 8-bit A fragment: a_i row g (i < 4, 8 <= i < 12) else g+8, col 4t + i%4 (+16) */
    for (int l = 0; l < 32; l++) {
      const int g = l / 4, t = l % 4;
      for (int i = 0; i < 16; i++) {
        const uint32_t b = (op[l]->a[i / 4] >> (8 * (i & 3))) & 0xff;
        const int row = (i < 4 || (i >= 8 && i < 12)) ? g : g + 8, col = 4 * t + (i & 3) + (i >= 8 ? 16 : 0);
        A[row][col] = dec(b);
      }
    }
  } else {
    for (int r = 0; r < 16; r++)
      for (int k = 0; k < K; k++)
        A[r][k] = dec(now[at++]);
  }
  for (int k = 0; k < K; k++)
    for (int c = 0; c < n; c++)
      B[(size_t)k * n + c] = dec(now[at++]);
  for (int l = 0; l < 32; l++) {
    const int g = l / 4, t = l % 4;
    float *d = op[l]->d;
    for (int i = 0; i < n / 2; i++) {
      const int row = g + 8 * ((i % 4) >> 1), col = 8 * (i / 4) + 2 * t + (i & 1);
      float acc = o0.accumulate ? d[i] : 0.0f;
      for (int k = 0; k < K; k++)
        acc += A[row][k] * B[(size_t)k * n + col];
      d[i] = acc;
    }
  }
}

/* wgmma.wait_group N for warp w: every lane's batches but the N newest run,
 * oldest first. */
inline void exec_wgmma_wait(Fiber *L, int w) {
  const size_t keep = L[0].in[0];
  for (int l = 0; l < 32; l++) {
    if (L[l].in[0] != keep)
      return error("warp %d: lanes wait for different wgmma group counts", w);
    if (L[l].wg_groups.size() != L[0].wg_groups.size())
      return error("warp %d: lanes have different numbers of wgmma groups in flight", w);
    if (!L[l].wg_open.empty())
      return error("warp %d lane %d: wgmma.wait_group with %zu mma_async not committed", w, l, L[l].wg_open.size());
  }
  while (L[0].wg_groups.size() > keep) {
    for (int l = 0; l < 32; l++)
      if (L[l].wg_groups.front().size() != L[0].wg_groups.front().size())
        return error("warp %d: lanes committed wgmma groups of different sizes", w);
    for (size_t i = 0; i < L[0].wg_groups.front().size(); i++) {
      const Wgmma *op[32];
      for (int l = 0; l < 32; l++)
        op[l] = &L[l].wg_groups.front()[i];
      exec_wgmma(op, w);
      if (S().errors)
        return;
    }
    for (int l = 0; l < 32; l++)
      L[l].wg_groups.erase(L[l].wg_groups.begin());
  }
  for (int l = 0; l < 32; l++)
    L[l].wg_fenced = false;
}

inline void exec_warp(Fiber *L, int op) {
  switch (op) {
  case OP_SHFL:
    for (int l = 0; l < 32; l++) {
      const int mode = (int)L[l].in[1], arg = (int)L[l].in[2];
      int src = mode == SHFL_XOR ? (l ^ arg) : mode == SHFL_UP ? (l - arg >= 0 ? l - arg : l) : arg;
      if (src < 0 || src > 31)
        error("shuffle source lane %d", src);
      L[l].out[0] = L[src & 31].in[0];
    }
    break;
  case OP_BALLOT: {
    uint32_t m = 0;
    for (int l = 0; l < 32; l++)
      m |= (L[l].in[0] ? 1u : 0u) << l;
    for (int l = 0; l < 32; l++)
      L[l].out[0] = m;
    break;
  }
  case OP_LDSM: {
    /* lane l gives the address of row l % 8 of matrix l / 8 (16 bytes) */
    const bool trans = L[0].trans;
    for (int l = 0; l < 32; l++) {
      if (L[l].trans != trans)
        error("ldmatrix .trans differs between lanes");
      if (((uintptr_t)L[l].addr & 15) || !in_smem(L[l].addr, 16))
        error("ldmatrix row address %p is misaligned or outside shared memory", L[l].addr);
    }
    if (S().errors)
      return;
    for (int l = 0; l < 32; l++)
      for (int j = 0; j < 4; j++) {
        uint16_t e0, e1;
        if (!trans) { /* row l/4 of matrix j, elements 2(l%4), 2(l%4)+1 */
          const uint16_t *row = (const uint16_t *)L[8 * j + l / 4].addr;
          e0 = row[2 * (l % 4)];
          e1 = row[2 * (l % 4) + 1];
        } else { /* column l/4 of matrix j, rows 2(l%4), 2(l%4)+1 */
          e0 = ((const uint16_t *)L[8 * j + 2 * (l % 4)].addr)[l / 4];
          e1 = ((const uint16_t *)L[8 * j + 2 * (l % 4) + 1].addr)[l / 4];
        }
        L[l].out[j] = (uint32_t)e0 | ((uint32_t)e1 << 16);
      }
    break;
  }
  case OP_MMA_BF16:
  case OP_MMA_F16: {
    /* m16n8k16, PTX ISA fragment tables; g = lane/4, t = lane%4:
     * A: a_i (i = 0..7, two per register) row g (i in 0,1,4,5) else g+8,
     *    col 2t + (i&1) (+8 for i >= 4); B: b_i row 2t + (i&1) (+8 for
     *    i >= 2), col g; C: c_i row g (i < 2) else g+8, col 2t + (i&1). */
    float A[16][16], B[16][8];
    auto dec = [op](uint32_t h) { return op == OP_MMA_BF16 ? bf16_bits(h) : f16_bits(h); };
    for (int l = 0; l < 32; l++) {
      const int g = l / 4, t = l % 4;
      for (int i = 0; i < 8; i++) {
        const uint32_t h = (L[l].in[i / 2] >> (16 * (i & 1))) & 0xffff;
        const int row = (i < 2 || (i >= 4 && i < 6)) ? g : g + 8, col = 2 * t + (i & 1) + (i >= 4 ? 8 : 0);
        A[row][col] = dec(h);
      }
      for (int i = 0; i < 4; i++) {
        const uint32_t h = (L[l].in[4 + i / 2] >> (16 * (i & 1))) & 0xffff;
        B[2 * t + (i & 1) + (i >= 2 ? 8 : 0)][g] = dec(h);
      }
    }
    mma_accumulate<16>(L, A, B);
    break;
  }
  case OP_MMA_E4M3: {
    /* m16n8k32 8-bit: A a_i (i = 0..15, four per register) row g for
     * i < 4 or 8 <= i < 12, else g+8; col 4t + (i&3) (+16 for i >= 8);
     * B b_i row 4t + (i&3) (+16 for i >= 4), col g; C as above. */
    float A[16][32], B[32][8];
    for (int l = 0; l < 32; l++) {
      const int g = l / 4, t = l % 4;
      for (int i = 0; i < 16; i++) {
        const uint32_t b = (L[l].in[i / 4] >> (8 * (i & 3))) & 0xff;
        const int row = (i < 4 || (i >= 8 && i < 12)) ? g : g + 8, col = 4 * t + (i & 3) + (i >= 8 ? 16 : 0);
        A[row][col] = e4m3_bits(b);
      }
      for (int i = 0; i < 8; i++) {
        const uint32_t b = (L[l].in[4 + i / 4] >> (8 * (i & 3))) & 0xff;
        B[4 * t + (i & 3) + (i >= 4 ? 16 : 0)][g] = e4m3_bits(b);
      }
    }
    mma_accumulate<32>(L, A, B);
    break;
  }
  case OP_WG_WAIT: exec_wgmma_wait(L, (int)((L - S().fibers.data()) / 32)); break;
  default: error("unknown warp operation %d", op);
  }
}

/* ---- running a CTA ---- */

inline void fiber_entry() {
  S().body();
  Fiber &f = me();
  if (!f.copies.empty() || !f.copy_groups.empty())
    error("thread exits with cp.async copies in flight");
  if (!f.wg_open.empty() || !f.wg_groups.empty())
    error("thread exits with wgmma in flight");
  if (!f.bulk_open.empty() || !f.bulk_groups.empty())
    error("thread exits with bulk reduces (cp.reduce.async.bulk.tensor) not waited for");
  f.done = true;
  _longjmp(S().sched, 1);
}

inline void resume(int t) {
  State &s = S();
  Fiber &f = s.fibers[t];
  s.cur = t;
  if (!_setjmp(s.sched)) {
    if (!f.started) {
      f.started = true;
      getcontext(&f.uc);
      f.uc.uc_stack.ss_sp = f.stack.data();
      f.uc.uc_stack.ss_size = f.stack.size();
      f.uc.uc_link = NULL;
      makecontext(&f.uc, fiber_entry, 0);
      swapcontext(&s.sched_uc, &f.uc);
    } else {
      _longjmp(f.jb, 1);
    }
  }
}

/* Let warp w run: resume its ready lanes (in `lane_rev` order) and execute
 * its warp operation whenever all 32 lanes wait at one; with `serial`,
 * until no lane can move (all at a block barrier or done), else one pass.
 * Returns whether anything moved. */
inline bool run_warp(int w, bool serial, bool lane_rev) {
  State &s = S();
  Fiber *L = &s.fibers[32 * w];
  bool moved = false;
  for (;;) {
    bool any = false;
    for (int i = 0; i < 32; i++) {
      const int l = lane_rev ? 31 - i : i;
      if (!L[l].done && L[l].op == OP_MBAR && mbar_ready(L[l].mbar, L[l].mbar_parity))
        L[l].op = OP_NONE;
      if (!L[l].done && L[l].op == OP_NONE) {
        resume(32 * w + l);
        any = true;
        if (s.errors)
          return true;
      }
    }
    int waiting = 0;
    for (int l = 0; l < 32; l++)
      waiting += !L[l].done && L[l].op != OP_NONE && L[l].op != OP_BAR && L[l].op != OP_MBAR && L[l].op != OP_YIELD;
    if (waiting == 32) {
      const int op = L[0].op;
      for (int l = 1; l < 32; l++)
        if (L[l].op != op)
          error("warp %d: lanes at different warp operations (%d, %d)", w, op, L[l].op);
      if (s.errors)
        return true;
      exec_warp(L, op);
      s.collectives++;
      for (int l = 0; l < 32; l++)
        L[l].op = OP_NONE;
      any = true;
    }
    moved |= any;
    if (!any || !serial)
      return moved;
  }
}

/* Release the block barriers every thread of which has arrived: for each
 * id, `count` threads (in[2]; 0: all the block's, __syncthreads), the OR
 * of their in[0] to each. Returns whether any was released. */
inline bool release_barriers(int n, int done) {
  State &s = S();
  bool released = false;
  for (int id = 0; id < 16; id++) {
    int waiting = 0, count = s.bar_arrived[id] ? s.bar_arrive_count[id] : -1;
    uint32_t any = 0;
    for (int i = 0; i < n; i++) {
      const Fiber &f = s.fibers[i];
      if (f.done || f.op != OP_BAR || (int)f.in[1] != id)
        continue;
      const int c = f.in[2] ? (int)f.in[2] : n;
      if (count >= 0 && c != count)
        error("barrier %d: threads wait for %d and for %d threads", id, count, c);
      count = c;
      waiting++;
      any |= f.in[0] != 0;
    }
    if (!waiting)
      continue;
    if (count % 32 || count > n)
      error("barrier %d for %d threads (whole warps, at most the block's %d)", id, count, n);
    const bool all = id == 0 && count == n; /* exited threads never arrive: report it, as a hang would */
    const int arrived = waiting + s.bar_arrived[id];
    if (arrived < (all ? n - done : count))
      continue;
    if (all && done)
      error("__syncthreads with %d of %d threads exited", done, n);
    if (arrived > count)
      error("barrier %d for %d threads reached by %d", id, count, arrived);
    s.bar_arrived[id] = 0;
    for (int i = 0; i < n; i++) {
      Fiber &f = s.fibers[i];
      if (!f.done && f.op == OP_BAR && (int)f.in[1] == id) {
        f.out[0] = any;
        f.op = OP_NONE;
      }
    }
    released = true;
  }
  return released;
}

/* One CTA. Between barriers the warps of a CTA run independently on a GPU,
 * so the order here varies: order 0 advances all warps in lockstep (one
 * warp operation at a time), 1 runs each warp alone up to the next barrier
 * in ascending warp order, 2 in descending order with lanes reversed, 3 in
 * a random warp order. A read of another warp's shared-memory writes
 * without a barrier in between sees stale data in some order. */
inline void run_block() {
  State &s = S();
  const int n = s.nthreads, nw = n / 32;
  for (int i = 0; i < n; i++) {
    Fiber &f = s.fibers[i];
    f.started = f.done = false;
    f.op = OP_NONE;
    f.copies.clear();
    f.copy_groups.clear();
    f.unfenced.clear();
    f.wg_open.clear();
    f.wg_groups.clear();
    f.wg_fenced = false;
    f.wg_issued = 0;
    f.mbar = NULL;
    f.bulk_open.clear();
    f.bulk_groups.clear();
  }
  s.mbars.clear();
  memset(s.bar_arrived, 0, sizeof s.bar_arrived);
  memset(s.smem.data(), 0xff, s.smem.size());
  s.unfenced_by.assign(s.smem.size() / 16 + 1, 0);
  std::vector<int> warps(nw);
  for (;;) {
    for (int i = 0; i < n; i++)
      if (s.fibers[i].op == OP_YIELD)
        s.fibers[i].op = OP_NONE;
    for (int i = 0; i < nw; i++)
      warps[i] = s.order == 2 ? nw - 1 - i : i;
    if (s.order == 3)
      std::shuffle(warps.begin(), warps.end(), s.rng);
    bool moved = false;
    for (int i = 0; i < nw; i++) {
      moved |= run_warp(warps[i], s.order != 0, s.order == 2);
      if (s.errors)
        return;
    }
    int done = 0, at_bar = 0, at_mbar = 0;
    for (int i = 0; i < n; i++) {
      done += s.fibers[i].done;
      at_bar += !s.fibers[i].done && s.fibers[i].op == OP_BAR;
      at_mbar += !s.fibers[i].done && s.fibers[i].op == OP_MBAR;
    }
    if (done == n) {
      for (int id = 0; id < 16; id++)
        if (s.bar_arrived[id])
          error("the CTA exits with %d arrivals on named barrier %d still waiting for their phase", s.bar_arrived[id],
                id);
      for (auto &e : s.mbars)
        if (!e.second.inflight.empty())
          error("the CTA exits with %zu TMA copies in flight on the mbarrier at shared byte %zu",
                e.second.inflight.size(), e.first);
      for (int w = 0; w + 3 < nw; w += 4) /* wgmma is warpgroup-wide: its 4 warps issue the same ones */
        for (int k = 1; k < 4; k++)
          if (s.fibers[32 * (w + k)].wg_issued != s.fibers[32 * w].wg_issued)
            error("warpgroup %d: warp %d issued %ld wgmma, warp %d %ld", w / 4, w + k,
                  s.fibers[32 * (w + k)].wg_issued, w, s.fibers[32 * w].wg_issued);
      return;
    }
    if (moved || release_barriers(n, done))
      continue;
    error("deadlock: %d threads at a barrier, %d waiting on mbarriers, %d done, the rest at warp operations some "
          "lanes never reach",
          at_bar, at_mbar, done);
    return;
  }
}

/* kernel<<<grid, block, smem>>>: every CTA in turn. */
inline void launch(std::function<void()> body, dim3 grid, dim3 block, size_t smem) {
  State &s = S();
  s.launches++;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535)
    return error("launch with grid (%u, %u, %u): invalid configuration", grid.x, grid.y, grid.z);
  if (block.y != 1 || block.z != 1 || block.x % 32 || block.x == 0 || block.x > 1024)
    return error("launch with block (%u, %u, %u)", block.x, block.y, block.z);
  if (smem > 227 * 1024)
    return error("launch with %zu bytes of shared memory (an H100 block gets at most 227 KB)", smem);
  s.body = body;
  s.grid = grid;
  s.block = block;
  s.nthreads = (int)block.x;
  if ((int)s.fibers.size() < s.nthreads)
    s.fibers.resize(s.nthreads);
  for (auto &f : s.fibers)
    if (f.stack.empty())
      f.stack.resize(256 * 1024);
  s.smem.assign(smem ? smem : 16, 0xff);
  for (unsigned z = 0; z < grid.z; z++)
    for (unsigned y = 0; y < grid.y; y++)
      for (unsigned x = 0; x < grid.x; x++) {
        s.bidx = dim3(x, y, z);
        run_block();
        if (s.errors)
          return;
      }
}

inline uint3 thread_idx() { return make_uint3((unsigned)S().cur, 0, 0); }

} // namespace emu

/* ---- the CUDA names the kernels use ---- */

#define threadIdx (emu::thread_idx())
#define blockIdx (emu::S().bidx)
#define blockDim (emu::S().block)
#define gridDim (emu::S().grid)

#define ATTN_LAUNCH(kernel, grid, block, smem, stream, ...)                                                            \
  emu::launch([&] { kernel(__VA_ARGS__); }, dim3(grid), dim3(block), (size_t)(smem))
#define ATTN_DYNAMIC_SMEM(type, name) type *name = reinterpret_cast<type *>(emu::S().smem.data())

static inline int emu_bar(int id, int count, int p) {
  emu::Fiber &f = emu::me();
  f.in[0] = p != 0;
  f.in[1] = (uint32_t)id;
  f.in[2] = (uint32_t)count;
  emu::wait_op(emu::OP_BAR);
  return (int)emu::me().out[0];
}
static inline void __syncthreads() { emu_bar(0, 0, 0); }
static inline int __syncthreads_or(int p) { return emu_bar(0, 0, p); }
static inline void attn_named_bar_sync(int id, int count) {
  if (id < 1 || id > 15)
    emu::error("named barrier id %d (1..15)", id);
  emu_bar(id, count, 0);
}
/* bar.arrive: counts towards the barrier's next release, does not wait. */
static inline void attn_named_bar_arrive(int id, int count) {
  emu::State &s = emu::S();
  if (id < 1 || id > 15)
    return emu::error("named barrier id %d (1..15)", id);
  if (s.bar_arrived[id] && s.bar_arrive_count[id] != count)
    return emu::error("bar.arrive on barrier %d for %d threads, earlier arrivals for %d", id, count,
                      s.bar_arrive_count[id]);
  s.bar_arrive_count[id] = count;
  if (++s.bar_arrived[id] > count)
    return emu::error("bar.arrive: %d arrivals on barrier %d for %d threads", s.bar_arrived[id], id, count);
}
static inline int attn_named_bar_or(int id, int count, int p) {
  if (id < 1 || id > 15)
    emu::error("named barrier id %d (1..15)", id);
  return emu_bar(id, count, p);
}

template <typename V> static inline V emu_shfl(unsigned mask, V v, int mode, int arg) {
  static_assert(sizeof(V) == 4, "32-bit shuffles only");
  if (mask != 0xffffffffu)
    emu::error("shuffle with a partial mask");
  emu::Fiber &f = emu::me();
  memcpy(&f.in[0], &v, 4);
  f.in[1] = (uint32_t)mode;
  f.in[2] = (uint32_t)arg;
  emu::wait_op(emu::OP_SHFL);
  V r;
  memcpy(&r, &emu::me().out[0], 4);
  return r;
}
template <typename V> static inline V __shfl_xor_sync(unsigned m, V v, int lm) {
  return emu_shfl(m, v, emu::SHFL_XOR, lm);
}
template <typename V> static inline V __shfl_up_sync(unsigned m, V v, unsigned d) {
  return emu_shfl(m, v, emu::SHFL_UP, (int)d);
}
template <typename V> static inline V __shfl_sync(unsigned m, V v, int src) {
  return emu_shfl(m, v, emu::SHFL_IDX, src);
}
static inline unsigned __ballot_sync(unsigned mask, int p) {
  if (mask != 0xffffffffu)
    emu::error("ballot with a partial mask");
  emu::me().in[0] = p != 0;
  emu::wait_op(emu::OP_BALLOT);
  return emu::me().out[0];
}
/* a warp operation that moves nothing: every lane waits for the others */
static inline void __syncwarp(unsigned mask = 0xffffffffu) { (void)__ballot_sync(mask, 0); }
static inline int __ffs(unsigned x) { return __builtin_ffs((int)x); }
static inline float atomicAdd(float *p, float v) { /* fibers switch only at synchronisation: this is atomic */
  const float old = *p;
  *p = old + v;
  return old;
}
static inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v) {
  const unsigned long long old = *p;
  *p = old + v;
  return old;
}
static inline int atomicOr(int *p, int v) {
  const int old = *p;
  *p = old | v;
  return old;
}
static inline long long __float2ll_rn(float x) { return llrintf(x); } /* the default rounding: to nearest even */
static inline void __trap() { emu::error("__trap()"); }

/* the PTX wrappers of attention_common.cuh */
static inline void attn_cp_async16(void *smem, const void *gmem, bool valid) {
  if (((uintptr_t)smem & 15) || !emu::in_smem(smem, 16))
    emu::error("cp.async destination %p is misaligned or outside shared memory", smem);
  if (valid && ((uintptr_t)gmem & 15))
    emu::error("cp.async source %p is not 16-byte aligned", gmem);
  emu::me().copies.push_back(emu::Copy{smem, valid ? gmem : NULL});
  if (emu::S().order & 1) { /* early delivery (and again at the wait: the source does not change) */
    if (valid)
      memcpy(smem, gmem, 16);
    else
      memset(smem, 0, 16);
  }
}
static inline void attn_cp_async_commit() {
  emu::Fiber &f = emu::me();
  f.copy_groups.push_back(std::move(f.copies));
  f.copies.clear();
}
/* Deliver copies (the data is then this thread's unfenced write). */
static inline void emu_land_copies(const std::vector<emu::Copy> &copies) {
  emu::State &s = emu::S();
  for (const emu::Copy &c : copies) {
    if (c.src)
      memcpy(c.dst, c.src, 16);
    else
      memset(c.dst, 0, 16);
    const size_t chunk = (size_t)((unsigned char *)c.dst - s.smem.data()) / 16;
    s.unfenced_by[chunk] = s.cur + 1;
    emu::me().unfenced.push_back(chunk);
  }
}
/* cp.async.wait_group N: all but the N newest committed groups delivered. */
template <int N> static inline void attn_cp_async_wait_group() {
  emu::Fiber &f = emu::me();
  while (f.copy_groups.size() > (size_t)N) {
    emu_land_copies(f.copy_groups.front());
    f.copy_groups.erase(f.copy_groups.begin());
  }
}
/* cp.async.wait_all: every copy, committed or not. */
static inline void attn_cp_async_wait_all() {
  emu::Fiber &f = emu::me();
  attn_cp_async_wait_group<0>();
  emu_land_copies(f.copies);
  f.copies.clear();
}

/* ---- TMA, mbarriers, registers (attention_wgmma.cuh) ---- */

#undef __grid_constant__ /* the toolkit's header makes it an attribute g++ does not know */
#define __grid_constant__
static inline uint32_t attn_smem_addr(const void *p) { return (uint32_t)emu::smem_off(p); }
static inline void attn_mbar_init(uint64_t *bar, uint32_t count) {
  emu::State &s = emu::S();
  if (((uintptr_t)bar & 7) || !emu::in_smem(bar, 8))
    return emu::error("mbarrier.init at %p: misaligned or outside shared memory", (void *)bar);
  if (count == 0)
    return emu::error("mbarrier.init with count 0");
  const size_t off = emu::smem_off(bar);
  for (auto &e : s.mbars)
    if (e.first == off) {
      e.second = emu::Mbar();
      e.second.count = e.second.pending = count;
      return;
    }
  emu::Mbar b;
  b.count = b.pending = count;
  s.mbars.push_back(std::make_pair(off, b));
}
static inline void attn_mbar_init_fence() {}
static inline void attn_mbar_arrive(uint64_t *bar) {
  if (emu::Mbar *b = emu::find_mbar(bar))
    emu::mbar_arrive(*b);
  emu::wait_op(emu::OP_YIELD);
}
static inline void attn_mbar_arrive_expect_tx(uint64_t *bar, uint32_t bytes) {
  if (emu::Mbar *b = emu::find_mbar(bar)) {
    b->tx += bytes;
    emu::mbar_arrive(*b);
  }
}
static inline void attn_mbar_wait(uint64_t *bar, uint32_t parity) {
  if (parity > 1)
    return emu::error("mbarrier wait for parity %u", parity);
  if (emu::mbar_ready(bar, parity))
    return;
  emu::Fiber &f = emu::me();
  f.mbar = bar;
  f.mbar_parity = parity;
  emu::wait_op(emu::OP_MBAR); /* resumed once the phase completed */
}
/* cp.async.bulk.tensor: delivered now in thread orders 1 and 3 (the
 * earliest: a stage still being read is overwritten), else when a thread
 * waits on the barrier (the latest). */
static inline void attn_tma_load_3d(void *dst, const AttnTmaMap *map, int x, int y, int z, uint64_t *bar) {
  emu::TmaDesc d;
  memcpy(&d, map->opaque, sizeof d);
  if (d.magic != emu::TMA_MAGIC)
    return emu::error("cp.async.bulk.tensor with a tensor map attn_tma_map_rows did not write");
  const size_t bytes = (size_t)d.box[0] * d.box[1] * d.box[2] * d.esize;
  const size_t pattern = 8 * (size_t)d.swizzle; /* 8 rows of the swizzle: where its pattern repeats */
  if (!emu::in_smem(dst, bytes) || (emu::smem_off(dst) & (pattern - 1)))
    return emu::error("TMA destination %p (%zu bytes) outside shared memory or not %zu-byte aligned (the %u-byte "
                      "swizzle)",
                      dst, bytes, pattern, d.swizzle);
  emu::Mbar *b = emu::find_mbar(bar);
  if (!b)
    return;
  const emu::TmaCopy c{(unsigned char *)dst, map, x, y, z};
  emu::S().tma_issued++;
  if (emu::S().order & 1) {
    emu::tma_land(c, *b);
    emu::mbar_complete(*b);
  } else {
    b->inflight.push_back(c);
  }
}
template <int N> static inline void attn_setmaxnreg_dec() {}
template <int N> static inline void attn_setmaxnreg_inc() {}
/* A store by this thread into shared memory a wgmma may read: unfenced
 * until its fence.proxy.async. */
static inline void emu_mark_unfenced(const void *smem) {
  emu::State &s = emu::S();
  const size_t chunk = emu::smem_off(smem) / 16;
  if (s.unfenced_by[chunk] != s.cur + 1) {
    s.unfenced_by[chunk] = s.cur + 1;
    emu::me().unfenced.push_back(chunk);
  }
}
static inline void attn_sts_zero16_for_wgmma(void *smem) {
  if (((uintptr_t)smem & 15) || !emu::in_smem(smem, 16))
    return emu::error("16-byte shared store to %p: misaligned or outside shared memory", smem);
  memset(smem, 0, 16);
  emu_mark_unfenced(smem);
}

/* ---- bulk reduces (attention_wgmma.cuh) ---- */

static inline void attn_sts_f32x2_for_async(float *smem, float x, float y) {
  if (((uintptr_t)smem & 7) || !emu::in_smem(smem, 8))
    return emu::error("8-byte shared store to %p: misaligned or outside shared memory", (void *)smem);
  smem[0] = x;
  smem[1] = y;
  emu_mark_unfenced(smem);
}
/* The f32 add of cp.reduce.async.bulk.tensor: subnormal inputs and results
 * flush to signed zero (PTX ISA). */
static inline float emu_ftz(float x) { return std::fpclassify(x) == FP_SUBNORMAL ? std::copysign(0.0f, x) : x; }
static inline void emu_bulk_do(const emu::BulkReduce &r) {
  if (r.done)
    return;
  emu::TmaDesc d;
  memcpy(&d, r.map->opaque, sizeof d);
  const size_t off0 = emu::smem_off(r.src);
  for (uint32_t z = 0; z < d.box[2]; z++)
    for (uint32_t y = 0; y < d.box[1]; y++)
      for (uint32_t x = 0; x < d.box[0]; x++) {
        const int64_t gx = (int64_t)r.x + x, gy = (int64_t)r.y + y, gz = (int64_t)r.z + z;
        if (gx < 0 || gx >= (int64_t)d.dims[0] || gy < 0 || gy >= (int64_t)d.dims[1] || gz < 0 ||
            gz >= (int64_t)d.dims[2])
          continue; /* outside the tensor: not written */
        const size_t lin = off0 + (((size_t)z * d.box[1] + y) * d.box[0] + x) * 4;
        float v, *dst = (float *)(d.base + gx * 4 + gy * d.strides[0] + gz * d.strides[1]);
        memcpy(&v, emu::S().smem.data() + emu::swizzle128(lin), 4);
        *dst = emu_ftz(emu_ftz(*dst) + emu_ftz(v));
      }
}
static inline void attn_tma_reduce_add_3d(const AttnTmaMap *map, int x, int y, int z, const void *src) {
  emu::State &s = emu::S();
  emu::TmaDesc d;
  memcpy(&d, map->opaque, sizeof d);
  if (d.magic != emu::TMA_MAGIC)
    return emu::error("cp.reduce.async.bulk.tensor with a tensor map attn_tma_map_rows did not write");
  if (d.esize != 4 || d.swizzle != 128)
    return emu::error("cp.reduce.async.bulk.tensor add: the tensor map is not f32 with the 128-byte swizzle");
  const size_t bytes = (size_t)d.box[0] * d.box[1] * d.box[2] * 4;
  if (!emu::in_smem(src, bytes) || (emu::smem_off(src) & 1023))
    return emu::error("cp.reduce.async.bulk.tensor source %p (%zu bytes) outside shared memory or not 1024-byte "
                      "aligned (the 128-byte swizzle)",
                      src, bytes);
  const size_t off = emu::smem_off(src);
  for (size_t c = off / 16; c < (off + bytes) / 16; c++)
    if (s.unfenced_by[c])
      return emu::error("cp.reduce.async.bulk.tensor reads shared byte %zu that thread %d stored without "
                        "fence.proxy.async since",
                        c * 16, s.unfenced_by[c] - 1);
  emu::BulkReduce r{map, x, y, z, (const unsigned char *)src, false};
  if (s.order & 1) { /* done at the earliest moment; the record still has to be waited for */
    emu_bulk_do(r);
    r.done = true;
  }
  emu::me().bulk_open.push_back(r);
}
static inline void attn_bulk_commit() {
  emu::Fiber &f = emu::me();
  f.bulk_groups.push_back(std::move(f.bulk_open));
  f.bulk_open.clear();
}
/* Everything but the N newest groups done (the uncommitted ones too are
 * not covered: a thread must commit before it waits). */
static inline void emu_bulk_wait(size_t n) {
  emu::Fiber &f = emu::me();
  while (f.bulk_groups.size() > n) {
    for (const emu::BulkReduce &r : f.bulk_groups.front())
      emu_bulk_do(r);
    f.bulk_groups.erase(f.bulk_groups.begin());
  }
}
template <int N> static inline void attn_bulk_wait_read() { emu_bulk_wait(N); }
template <int N> static inline void attn_bulk_wait() { emu_bulk_wait(N); }
static inline void attn_fence_proxy_async_global() {}
/* CTAs run one after another in launch order here, as the hardware starts
 * them: a semaphore that does not read v already never will (on a GPU the
 * CTA would spin for ever, or one that should wait would not). */
static inline void attn_sem_wait_ge(const int32_t *sem, int32_t v) {
  if (*sem < v)
    emu::error("semaphore at %p reads %d, the CTA waits for %d: the earlier CTAs have all finished, so it never "
               "will (a missed increment, or a wait for the wrong turn)",
               (const void *)sem, *sem, v);
}
static inline void attn_sem_inc_release(int32_t *sem) { ++*sem; }

/* ---- wgmma (attention_wgmma.cuh) ---- */

static inline uint64_t attn_wgmma_desc(const void *smem, uint32_t lbo_bytes, uint32_t sbo_bytes) {
  const size_t off = (size_t)((const unsigned char *)smem - emu::S().smem.data());
  if (((uintptr_t)smem & 15) || !emu::in_smem(smem, 16))
    emu::error("wgmma descriptor start %p is misaligned or outside shared memory", smem);
  if ((lbo_bytes & 15) || (sbo_bytes & 15) || lbo_bytes >= (1u << 18) || sbo_bytes >= (1u << 18))
    emu::error("wgmma descriptor offsets %u, %u: multiples of 16 below 2^18", lbo_bytes, sbo_bytes);
  return (uint64_t)((off & 0x3FFFF) >> 4) | ((uint64_t)((lbo_bytes & 0x3FFFF) >> 4) << 16) |
         ((uint64_t)((sbo_bytes & 0x3FFFF) >> 4) << 32);
}
static inline void attn_wgmma_fence() { emu::me().wg_fenced = true; }
static inline void attn_wgmma_commit() {
  emu::Fiber &f = emu::me();
  f.wg_groups.push_back(std::move(f.wg_open));
  f.wg_open.clear();
}
template <int N> static inline void attn_wgmma_wait() {
  emu::me().in[0] = (uint32_t)N;
  emu::wait_op(emu::OP_WG_WAIT);
}
static inline void attn_fence_proxy_async() {
  emu::State &s = emu::S();
  emu::Fiber &f = emu::me();
  for (size_t chunk : f.unfenced)
    if (s.unfenced_by[chunk] == s.cur + 1)
      s.unfenced_by[chunk] = 0;
  f.unfenced.clear();
}
static inline void attn_sts_u8_for_wgmma(uint8_t *smem, uint8_t v) {
  if (!emu::in_smem(smem, 1))
    return emu::error("shared store to %p outside shared memory", (void *)smem);
  *smem = v;
  emu_mark_unfenced(smem);
}
static inline void attn_sts_u32_for_wgmma(void *smem, uint32_t v) {
  if (((uintptr_t)smem & 3) || !emu::in_smem(smem, 4))
    return emu::error("32-bit shared store to %p: misaligned or outside shared memory", smem);
  memcpy(smem, &v, 4);
  emu_mark_unfenced(smem);
}
template <int N> static inline void attn_wgmma_pin(float *) {}
template <int N> static inline void attn_wgmma_pin(uint32_t *) {}

static inline void emu_wgmma_issue(emu::Wgmma op) {
  emu::Fiber &f = emu::me();
  if (!f.wg_fenced)
    emu::error("wgmma.mma_async without a wgmma.fence since the thread's last wait_group");
  bool first = true; /* the first pending wgmma on these accumulators keeps their value */
  for (const emu::Wgmma &o : f.wg_open)
    first &= o.d != op.d;
  for (const auto &grp : f.wg_groups)
    for (const emu::Wgmma &o : grp)
      first &= o.d != op.d;
  if (first)
    op.d_issued.assign(op.d, op.d + op.n / 2);
  if (op.rs)
    memcpy(op.a_issued, op.a, sizeof op.a_issued);
  if (emu::S().cur % 32 == 0) /* once per warp: the lanes' descriptors are compared at the wait */
    emu::wgmma_smem_bits(op, emu::S().cur / 32, op.smem_issued);
  f.wg_open.push_back(std::move(op));
  f.wg_issued++;
  emu::S().wgmma_issued++;
}

/* One wgmma.mma_async as the wrappers below describe it: A from the
 * descriptor da, or (rs) from the registers a. */
static inline void emu_wgmma(bool rs, bool e4m3, bool bf16, bool trans_b, int n, float *d, const uint32_t *a,
                             uint64_t da, uint64_t db, bool accumulate, bool trans_a = false) {
  emu::Wgmma op{};
  op.rs = rs;
  op.e4m3 = e4m3;
  op.bf16 = bf16;
  op.trans_a = trans_a;
  op.trans_b = trans_b;
  op.accumulate = accumulate;
  op.n = n;
  op.da = da;
  op.db = db;
  op.a = a;
  op.d = d;
  emu_wgmma_issue(std::move(op));
}

template <int N> struct AttnWgmmaE4m3 {
  static_assert(N % 8 == 0 && N >= 8 && N <= 256, "wgmma N");
  static void ss(float *d, uint64_t da, uint64_t db, bool accumulate) {
    emu_wgmma(false, true, false, false, N, d, NULL, da, db, accumulate);
  }
  static void rs(float *d, const uint32_t *a, uint64_t db, bool accumulate) {
    emu_wgmma(true, true, false, false, N, d, a, 0, db, accumulate);
  }
};

template <typename T, int N> struct AttnWgmma {
  static_assert(N % 8 == 0 && N >= 8 && N <= 256, "wgmma N");
  static constexpr bool BF16 = std::is_same<T, __nv_bfloat16>::value;
  static void ss(float *d, uint64_t da, uint64_t db, bool accumulate) {
    emu_wgmma(false, false, BF16, false, N, d, NULL, da, db, accumulate);
  }
  static void rs_mn(float *d, const uint32_t *a, uint64_t db, bool accumulate) {
    emu_wgmma(true, false, BF16, true, N, d, a, 0, db, accumulate);
  }
  static void ss_mn(float *d, uint64_t da, uint64_t db, bool accumulate) {
    static_assert(N == 64, "the device wrappers have ss_mn at N = 64 only");
    emu_wgmma(false, false, BF16, true, N, d, NULL, da, db, accumulate, true);
  }
};
static inline void attn_ldsm_x4(uint32_t r[4], const void *smem) {
  emu::me().addr = smem;
  emu::me().trans = false;
  emu::wait_op(emu::OP_LDSM);
  memcpy(r, emu::me().out, 16);
}
static inline void attn_ldsm_x4_trans(uint32_t r[4], const void *smem) {
  emu::me().addr = smem;
  emu::me().trans = true;
  emu::wait_op(emu::OP_LDSM);
  memcpy(r, emu::me().out, 16);
}
static inline void emu_mma(int op, float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  emu::Fiber &f = emu::me();
  memcpy(f.in, a, 16);
  f.in[4] = b0;
  f.in[5] = b1;
  memcpy(f.fin, c, 16);
  emu::wait_op(op);
  memcpy(c, emu::me().fout, 16);
}
template <typename T> static inline void attn_mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1);
template <> inline void attn_mma16816<__nv_bfloat16>(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  emu_mma(emu::OP_MMA_BF16, c, a, b0, b1);
}
template <> inline void attn_mma16816<__half>(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  emu_mma(emu::OP_MMA_F16, c, a, b0, b1);
}
static inline void attn_mma16832_e4m3(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  emu_mma(emu::OP_MMA_E4M3, c, a, b0, b1);
}
static inline float attn_exp2(float x) { return exp2f(x); }
/* max.NaN, and the bit casts, for attn_exp2_fma (which runs as written) */
static inline float attn_max_nan(float x, float lo) { return std::isnan(x) ? x : std::max(x, lo); }
static inline uint32_t attn_f32_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}
static inline float attn_bits_f32(uint32_t u) {
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}

/* ---- the CUDA runtime calls the launchers make ---- */

/* (nvcc's cuda_runtime.h has these for kernel pointers; the host compiler's does not) */
#ifdef ATTN_EMULATE_SHIM
#define ATTN_EMU_EXTERN_C
#else
#define ATTN_EMU_EXTERN_C extern "C"
#endif
template <class F> static inline cudaError_t cudaFuncSetAttribute(F *f, enum cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttribute((const void *)f, attr, value);
}
template <class F> static inline cudaError_t cudaFuncGetAttributes(struct cudaFuncAttributes *attr, F *f) {
  return cudaFuncGetAttributes(attr, (const void *)f);
}

/* Device memory is host memory here. */
static inline int attn_copy_to_host(void *dst, const void *src, size_t bytes) {
  memcpy(dst, src, bytes);
  return MB_OK;
}

/* The host side of a tensor map (attention_common.cuh): the emulator's own
 * description. */
static inline int attn_tma_map_rows(AttnTmaMap *map, const void *base, int esize, int64_t tokens, int heads,
                                    int head_dim, int64_t ld, int box_rows, const char *what) {
  const int row_bytes = head_dim * esize, box_bytes = row_bytes < 128 ? row_bytes : 128;
  if ((esize != 1 && esize != 2 && esize != 4) || (box_bytes != 64 && box_bytes != 128) || row_bytes % box_bytes)
    return MB_ERR(MB_EINVAL, "cuda attention: the TMA map of %s: %d-byte elements x head_dim %d are not whole 64- "
                             "or 128-byte boxes",
                  what, esize, head_dim);
  if (((uintptr_t)base & 15) || (ld * esize) % 16 || box_rows < 1 || box_rows > 256)
    return MB_ERR(MB_EINVAL, "cuda attention: the TMA map of %s: unaligned tensor or bad box", what);
  emu::TmaDesc d;
  memset(&d, 0, sizeof d);
  d.magic = emu::TMA_MAGIC;
  d.base = (const unsigned char *)base;
  d.dims[0] = (uint64_t)head_dim;
  d.dims[1] = (uint64_t)heads;
  d.dims[2] = (uint64_t)tokens;
  d.strides[0] = (uint64_t)row_bytes;
  d.strides[1] = (uint64_t)ld * esize;
  d.box[0] = (uint32_t)(box_bytes / esize);
  d.box[1] = 1;
  d.box[2] = (uint32_t)box_rows;
  d.esize = (uint32_t)esize;
  d.swizzle = (uint32_t)box_bytes;
  memset(map, 0, sizeof *map);
  memcpy(map->opaque, &d, sizeof d);
  return MB_OK;
}

ATTN_EMU_EXTERN_C cudaError_t cudaGetLastError(void) { return emu::S().errors ? cudaErrorLaunchFailure : cudaSuccess; }
ATTN_EMU_EXTERN_C const char *cudaGetErrorString(cudaError_t e) {
  return e == cudaSuccess ? "no error" : emu::S().first_error;
}
ATTN_EMU_EXTERN_C const char *cudaGetErrorName(cudaError_t e) {
  return e == cudaSuccess ? "cudaSuccess" : "emulated error";
}
ATTN_EMU_EXTERN_C cudaError_t cudaGetDevice(int *d) {
  *d = 0;
  return cudaSuccess;
}
ATTN_EMU_EXTERN_C cudaError_t cudaDeviceGetAttribute(int *v, enum cudaDeviceAttr attr, int dev) {
  /* three SMs: a persistent grid (attn_persistent_grid) is then a few CTAs,
   * each walking several tiles, so the hand-over between tiles is tested */
  *v = attr == cudaDevAttrComputeCapabilityMajor    ? 9
       : attr == cudaDevAttrComputeCapabilityMinor ? 0
       : attr == cudaDevAttrMultiProcessorCount    ? 3
                                                    : 0;
  return cudaSuccess;
}
ATTN_EMU_EXTERN_C cudaError_t cudaFuncSetAttribute(const void *func, enum cudaFuncAttribute attr, int value) {
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize && value > 227 * 1024)
    return cudaErrorInvalidValue;
  if (attr == cudaFuncAttributePreferredSharedMemoryCarveout && (value < -1 || value > 100))
    return cudaErrorInvalidValue;
  return cudaSuccess;
}
ATTN_EMU_EXTERN_C cudaError_t cudaFuncGetAttributes(struct cudaFuncAttributes *attr, const void *func) {
  memset(attr, 0, sizeof *attr);
  attr->ptxVersion = 90;
  attr->binaryVersion = 90;
  attr->numRegs = emu::S().func_regs;
  return cudaSuccess;
}

#endif
