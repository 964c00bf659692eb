/* attention_common.cuh: what the attention kernels share: the argument
 * block, where a CTA's sequence and tile are (padded or varlen), and thin
 * wrappers over the PTX the tensor-core kernels use (mma.sync, ldmatrix,
 * cp.async), each with the fragment layout it produces written down.
 *
 * Fragment layouts (PTX ISA, "Matrix fragments for mma.m16n8k16"), lane =
 * threadIdx.x % 32, g = lane / 4 (the row group), t = lane % 4:
 *   A 16x16 (row-major), 4 x b32, each two 16-bit elements (lower column in
 *     the low half):  a0 = A[g][2t..2t+1]    a1 = A[g+8][2t..2t+1]
 *                     a2 = A[g][2t+8..+9]    a3 = A[g+8][2t+8..+9]
 *   B 16x8 ("col": element (k, n)), 2 x b32:
 *                     b0 = B[2t..2t+1][g]    b1 = B[2t+8..+9][g]
 *   C/D 16x8 f32, 4 floats:
 *                     c0,c1 = C[g][2t..2t+1] c2,c3 = C[g+8][2t..2t+1]
 * ldmatrix.x4 loads four 8x8 16-bit matrices; lane l gives the address of
 * row l % 8 of matrix l / 8. Without .trans, register j of lane l holds
 * matrix j's row l/4, columns 2(l%4)..+1 -- exactly an A or B fragment piece;
 * with .trans it holds the transposed pair (rows 2(l%4)..+1 of column l/4).
 * Hence (M = a matrix in shared memory, row-major, 16-bit):
 *   A fragment of M[r0.., c0..]:       lane row r0 + l%8 + 8*((l/8)%2), col c0 + 8*(l/16)
 *   A fragment of M^T (ldsm .trans):   lane row r0' + l%8 + 8*(l/16), col c0' + 8*((l/8)%2)
 *       where M^T[i][j] = M[j][i], the fragment covers M^T[c0'.., r0'..]
 *   two B fragments (n-tiles n0, n0+8) with B(k, n) = M[n][k] (M rows = n):
 *                                      lane row n0 + l%8 + 8*(l/16), col k0 + 8*((l/8)%2)
 *     registers: {b0, b1} of n-tile n0, then {b0, b1} of n-tile n0+8
 *   two B fragments with B(k, n) = M[k][n] (M rows = k; ldsm .trans):
 *                                      lane row k0 + l%8 + 8*((l/8)%2), col n0 + 8*(l/16)
 *     registers: same order.
 * The C fragment of S (16 x 16 keys, two n-tiles) is, element for element,
 * the A fragment of P for the next product P V (FlashAttention-2's trick):
 *   a0 = S[nt 2j](c0,c1), a1 = S[nt 2j](c2,c3), a2 = S[nt 2j+1](c0,c1), a3 = S[nt 2j+1](c2,c3).
 */
#ifndef MB_KERNELS_CUDA_ATTENTION_COMMON_CUH
#define MB_KERNELS_CUDA_ATTENTION_COMMON_CUH

#ifdef ATTN_EMULATE_SHIM
/* the host emulation on a machine without the CUDA toolkit: the emulator
 * provides the few types and calls these kernels take from it */
#include ATTN_EMULATE_SHIM
#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda.h> /* CUtensorMap's types (header only: the driver call goes through the runtime) */
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include "runtime/cuda_check.h"
#endif
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/cuda/attention.h"

/* A TMA tensor map (CUtensorMap's size and alignment; the driver fills it
 * on the GPU, the emulator with its own description), passed to a kernel
 * by value as a __grid_constant__ parameter so that its address is valid
 * for cp.async.bulk.tensor. */
struct alignas(128) AttnTmaMap {
  uint64_t opaque[16];
};
struct AttnTmaMaps {
  AttnTmaMap q, k, v;
};

/* ATTN_EMULATE, when defined, names a header that runs these kernels on the
 * host (tests/cuda/test_cuda_attention_emu.cpp): it provides the PTX
 * wrappers below, the launch and the dynamic shared memory, so the kernel
 * bodies and launchers stay exactly what the GPU runs. */
#ifdef ATTN_EMULATE
#include ATTN_EMULATE
#else
/* kernel<<<grid, block, smem, stream>>>(args); `kernel` is one token */
#define ATTN_LAUNCH(kernel, grid, block, smem, stream, ...) kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
/* the kernel's dynamic shared memory, 16-byte aligned */
#define ATTN_DYNAMIC_SMEM(type, name)                                                                                  \
  extern __shared__ __align__(16) unsigned char attn_dynamic_smem_[];                                                  \
  type *name = reinterpret_cast<type *>(attn_dynamic_smem_)
#endif

typedef __nv_bfloat16 attn_bf16;
typedef __half attn_f16;
typedef __nv_fp8_e4m3 attn_e4m3;

#define ATTN_LOG2E 1.4426950408889634f
#define ATTN_LN2 0.6931471805599453f

/* After a kernel launch: a bad configuration or a missing image for this GPU. */
#define ATTN_LAUNCH_CHECK(what)                                                                                        \
  do {                                                                                                                 \
    cudaError_t attn_e_ = cudaGetLastError();                                                                          \
    if (attn_e_ != cudaSuccess)                                                                                        \
      return MB_ERR(mb_cuda_status(attn_e_), "launching %s failed: %s (%s)", (what), cudaGetErrorString(attn_e_),      \
                    cudaGetErrorName(attn_e_));                                                                        \
  } while (0)

/* Everything a kernel needs, by value. Pointers are device memory. */
struct AttnArgs {
  const void *q, *k, *v;        /* [tokens, H, D] */
  const void *out;              /* forward output (backward: read for rowsum(dO * O)) */
  void *o;                      /* forward: output written */
  float *lse;                   /* [tokens, H] */
  const void *dout;             /* backward */
  void *dq, *dk, *dv;           /* backward */
  float *dq_accum;              /* backward, fast mode: f32 [tokens, H, D] */
  float *dsum;                  /* backward: f32 [H, tokens], rowsum(dO * O) (attn_stat_index) */
  float *lse2t;                 /* backward: f32 [H, tokens], lse in log2 units (attn_stat_index) */
  int32_t *dq_sem; /* backward: [H, tokens], per query tile (its first row's index) the key tiles whose dQ
                      is in the accumulator (backward tiling 3, deterministic; attn_stat_index) */
  const float *q_descale, *k_descale, *v_descale; /* fp8: device scalars or NULL (= 1) */
  const int32_t *key_mask;                        /* padded: [B, L] or NULL */
  const int32_t *cu_seqlens;                      /* varlen: [nseq + 1] or NULL */
  int batch, seqlen, heads, head_dim, nseq, causal;
  int64_t ld;       /* heads * head_dim: elements between consecutive tokens */
  float scale;      /* softmax scale */
  float scale_log2; /* scale * log2(e): exp(scale * s) = exp2(s * scale_log2) */
  int opaque_one;   /* 1, as a value the compiler cannot see (the wgmma forward's tiling 4) */
};

static inline AttnArgs attn_args_from_desc(const mb_attn_desc *d) {
  AttnArgs a;
  memset(&a, 0, sizeof a);
  a.key_mask = d->key_mask;
  a.cu_seqlens = d->cu_seqlens;
  a.batch = d->batch;
  a.seqlen = d->seqlen;
  a.heads = d->heads;
  a.head_dim = d->head_dim;
  a.nseq = d->cu_seqlens ? d->nseq : d->batch;
  a.causal = d->causal != 0;
  a.ld = (int64_t)d->heads * d->head_dim;
  a.scale = d->scale > 0 ? (float)d->scale : (float)(1.0 / sqrt((double)d->head_dim));
  a.scale_log2 = a.scale * ATTN_LOG2E;
  a.opaque_one = 1;
  return a;
}

static inline int attn_tokens(const mb_attn_desc *d) { return d->batch * d->seqlen; }

/* The backward's per-(token, head) statistics, dsum and lse2t, are stored
 * head-major, [H, tokens]: a tile's queries are then consecutive floats, so
 * a warp reads them in whole sectors (lse itself, the forward's output, is
 * [tokens, H]: 64 queries of one head there are 64 sectors). */
__host__ __device__ __forceinline__ int64_t attn_stat_index(const AttnArgs &a, int64_t token, int h) {
  return (int64_t)h * a.batch * a.seqlen + token;
}

/* One sequence: tokens start .. start+n-1; mask (padded mode) marks the
 * real tokens of this sequence, NULL when all are real. */
struct AttnSeg {
  int start, n;
  const int32_t *mask;
};

/* Sequence s (padded: batch row s; varlen: s-th of cu_seqlens, clamped to
 * [0, seqlen] so a bad cu_seqlens cannot send a kernel out of bounds). */
__device__ __forceinline__ AttnSeg attn_segment(const AttnArgs &a, int s) {
  AttnSeg g;
  if (a.cu_seqlens) {
    int lo = min(max(a.cu_seqlens[s], 0), a.seqlen);
    int hi = min(max(a.cu_seqlens[s + 1], lo), a.seqlen);
    g.start = lo;
    g.n = hi - lo;
    g.mask = NULL;
  } else {
    g.start = s * a.seqlen;
    g.n = a.seqlen;
    g.mask = a.key_mask ? a.key_mask + (int64_t)s * a.seqlen : NULL;
  }
  return g;
}

/* The first token after the last sequence (the varlen budget's tail starts
 * here); batch * seqlen in padded mode. */
__device__ __forceinline__ int attn_used_tokens(const AttnArgs &a) {
  if (!a.cu_seqlens)
    return a.batch * a.seqlen;
  return min(max(a.cu_seqlens[a.nseq], 0), a.seqlen);
}

/* Which (sequence, tile of `rows` tokens) CTA (x, ., z) works on. Padded mode:
 * grid (ceil(L / rows), H, B), tile = x, sequence = z.
 * Varlen mode: grid (ceil(T / rows) + nseq + 1, H, 1) -- an upper bound on
 * the sum over sequences of ceil(n_s / rows) -- and CTA x takes the x-th
 * tile in sequence order; CTAs past the last tile return false. Every warp
 * computes the same answer (a warp-wide scan over cu_seqlens, 32 sequences
 * per step), so no shared memory or barrier is needed. */
__device__ __forceinline__ bool attn_find_tile_at(const AttnArgs &a, int rows, int x, int z, AttnSeg *seg,
                                                  int *tile) {
  if (!a.cu_seqlens) {
    *seg = attn_segment(a, z);
    *tile = x;
    return (int64_t)x * rows < seg->n;
  }
  const int lane = threadIdx.x & 31, want = x;
  int base = 0; /* tiles of the sequences before this step's 32 */
  for (int s0 = 0; s0 < a.nseq; s0 += 32) {
    const int s = s0 + lane;
    int ntiles = 0;
    if (s < a.nseq) {
      AttnSeg g = attn_segment(a, s);
      ntiles = (g.n + rows - 1) / rows;
    }
    int incl = ntiles; /* inclusive prefix sum over the warp */
    for (int o = 1; o < 32; o <<= 1) {
      int y = __shfl_up_sync(0xffffffffu, incl, o);
      if (lane >= o)
        incl += y;
    }
    const int excl = incl - ntiles;
    const unsigned hit = __ballot_sync(0xffffffffu, ntiles > 0 && want >= base + excl && want < base + incl);
    if (hit) {
      const int src = __ffs(hit) - 1;
      const int first = __shfl_sync(0xffffffffu, base + excl, src);
      *seg = attn_segment(a, s0 + src);
      *tile = want - first;
      return true;
    }
    base += __shfl_sync(0xffffffffu, incl, 31);
  }
  return false;
}

/* The CTA's own tile: grid coordinates x and z as above. */
__device__ __forceinline__ bool attn_find_tile(const AttnArgs &a, int rows, AttnSeg *seg, int *tile) {
  return attn_find_tile_at(a, rows, blockIdx.x, blockIdx.z, seg, tile);
}

/* The keys a tile of queries q0 .. q0 + rows - 1 sees: all of the
 * sequence's, or (causal) those up to its last query. */
__device__ __forceinline__ int attn_key_end(const AttnArgs &a, const AttnSeg &g, int q0, int rows) {
  return a.causal ? min(g.n, q0 + rows) : g.n;
}

/* The extents of that grid: x tiles (varlen: of every sequence, an upper
 * bound), y heads, z batch rows (varlen: 1). */
struct AttnTileExtent {
  int x, y, z;
};
__host__ __device__ __forceinline__ AttnTileExtent attn_tile_extent(int seqlen, int heads, int batch, int nseq,
                                                                    bool varlen, int rows) {
  AttnTileExtent e;
  e.x = (seqlen + rows - 1) / rows + (varlen ? nseq + 1 : 0);
  e.y = heads;
  e.z = varlen ? 1 : batch;
  return e;
}

/* Grid for attn_find_tile. */
static inline dim3 attn_tile_grid(const mb_attn_desc *d, int rows) {
  const AttnTileExtent e = attn_tile_extent(d->seqlen, d->heads, d->batch, d->nseq, d->cu_seqlens != NULL, rows);
  return dim3((unsigned)e.x, (unsigned)e.y, (unsigned)e.z);
}

/* Work tiles for kernels that loop over them (the persistent forward,
 * tiling 7): work item w is the CTA (x, y, z) of attn_tile_grid with x
 * fastest, so a grid of one CTA per tile gives every CTA exactly its own
 * tile (attn_work_first, attn_work_step), and a grid of one CTA per SM
 * walks the same tiles in the same order, gridDim.x apart. In int, which
 * a TMA producer's 24 registers can hold: the launch checks that the
 * tiles fit with room for the last step past them (attn_work_fits: w <
 * count and step <= count, so w + step < 2 count <= INT_MAX). */
static inline bool attn_work_fits(dim3 grid) { return (int64_t)grid.x * grid.y * grid.z <= INT_MAX / 2; }
__device__ __forceinline__ int attn_work_count(const AttnArgs &a, int rows) {
  const AttnTileExtent e = attn_tile_extent(a.seqlen, a.heads, a.batch, a.nseq, a.cu_seqlens != NULL, rows);
  return e.x * e.y * e.z;
}
__device__ __forceinline__ int attn_work_first() {
  return (int)(blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z));
}
__device__ __forceinline__ int attn_work_step() { return (int)(gridDim.x * gridDim.y * gridDim.z); }
/* Work item w's (sequence, tile, head); false for the varlen grid's spare
 * tiles. Warp-wide in varlen mode (attn_find_tile_at). */
__device__ __forceinline__ bool attn_find_work(const AttnArgs &a, int rows, int w, AttnSeg *seg, int *tile,
                                               int *head) {
  const AttnTileExtent e = attn_tile_extent(a.seqlen, a.heads, a.batch, a.nseq, a.cu_seqlens != NULL, rows);
  const int yz = w / e.x;
  *head = yz % e.y;
  return attn_find_tile_at(a, rows, w - yz * e.x, yz / e.y, seg, tile);
}

/* ---- element conversions ---- */

template <typename T> struct AttnType;
template <> struct AttnType<float> {
  static __device__ __forceinline__ float load(const float *p, int64_t i) { return p[i]; }
  static __device__ __forceinline__ void store(float *p, int64_t i, float v) { p[i] = v; }
};
template <> struct AttnType<attn_bf16> {
  static __device__ __forceinline__ float load(const attn_bf16 *p, int64_t i) { return __bfloat162float(p[i]); }
  static __device__ __forceinline__ void store(attn_bf16 *p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }
  /* two floats -> one b32 holding (lo, hi), lo in the low half */
  static __device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    uint32_t u;
    memcpy(&u, &h, 4);
    return u;
  }
};
template <> struct AttnType<attn_f16> {
  static __device__ __forceinline__ float load(const attn_f16 *p, int64_t i) { return __half2float(p[i]); }
  static __device__ __forceinline__ void store(attn_f16 *p, int64_t i, float v) { p[i] = __float2half_rn(v); }
  static __device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    const __half2 h = __floats2half2_rn(lo, hi);
    uint32_t u;
    memcpy(&u, &h, 4);
    return u;
  }
};
template <> struct AttnType<attn_e4m3> {
  static __device__ __forceinline__ float load(const attn_e4m3 *p, int64_t i) { return float(p[i]); }
};

/* The A fragment of one k-step of 16 from the C fragments of its two n8
 * tiles, rounded to T: the layouts coincide (FlashAttention-2's trick; for
 * wgmma too, per warp), so S's accumulators become P's A operand. */
template <typename T>
__device__ __forceinline__ void attn_c_to_a(const float (&c0)[4], const float (&c1)[4], uint32_t (&a)[4]) {
  a[0] = AttnType<T>::pack2(c0[0], c0[1]);
  a[1] = AttnType<T>::pack2(c0[2], c0[3]);
  a[2] = AttnType<T>::pack2(c1[0], c1[1]);
  a[3] = AttnType<T>::pack2(c1[2], c1[3]);
}

#ifndef ATTN_EMULATE
/* ---- PTX wrappers (sm_80+) ---- */

__device__ __forceinline__ uint32_t attn_smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* 16 bytes global -> shared, asynchronously; valid = 0 writes 16 zero bytes
 * and reads nothing (src-size 0), so rows past a sequence's end are zeros. */
__device__ __forceinline__ void attn_cp_async16(void *smem, const void *gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(attn_smem_addr(smem)), "l"(gmem),
               "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void attn_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
/* Wait for all of this thread's cp.async groups (a barrier must follow
 * before other threads read what they wrote). */
__device__ __forceinline__ void attn_cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }
/* Wait until at most the N newest committed groups are still in flight. */
template <int N> __device__ __forceinline__ void attn_cp_async_wait_group() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void attn_ldsm_x4(uint32_t r[4], const void *smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(attn_smem_addr(smem)));
}
__device__ __forceinline__ void attn_ldsm_x4_trans(uint32_t r[4], const void *smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(attn_smem_addr(smem)));
}

/* c += A B for one m16n8k16 tile, f32 accumulators. */
template <typename T>
__device__ __forceinline__ void attn_mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void attn_mma16816<attn_bf16>(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
               "{%0, %1, %2, %3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void attn_mma16816<attn_f16>(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
               "{%0, %1, %2, %3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* 2^x with the hardware approximation (relative error ~2^-22; 2^-inf = 0). */
__device__ __forceinline__ float attn_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

/* max(x, lo), but NaN when x is NaN (max.NaN; fmaxf would give lo) */
__device__ __forceinline__ float attn_max_nan(float x, float lo) {
  float y;
  asm("max.NaN.f32 %0, %1, %2;\n" : "=f"(y) : "f"(x), "f"(lo));
  return y;
}

__device__ __forceinline__ uint32_t attn_f32_bits(float x) { return __float_as_uint(x); }
__device__ __forceinline__ float attn_bits_f32(uint32_t u) { return __uint_as_float(u); }

/* c += A B for one m16n8k32 tile of e4m3 (sm_89+; ptxas lowers it to f16
 * HMMA on sm_90, whose fp8 tensor cores only wgmma reaches). Fragments: A
 * a0 = A[g][4t..4t+3], a1 = A[g+8][4t..], a2 = A[g][16+4t..], a3 =
 * A[g+8][16+4t..] (four bytes, lowest k in the lowest byte); B b0 =
 * B[4t..4t+3][g], b1 = B[16+4t..][g]; C as for m16n8k16. */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
__device__ __forceinline__ void attn_mma16832_e4m3(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
               "{%0, %1, %2, %3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#endif

#include "kernels/cuda/attention_wgmma.cuh"
#endif /* ATTN_EMULATE */

/* 2^x without the MUFU unit, for a share of the softmax's exponentials
 * (forward tilings 9, 10): MUFU.EX2 runs 16 lanes per clock and SM, the
 * FMA pipe 128, and at head_dim 64 the exponentials take as long as the
 * products (ATTENTION.md, "Forward tilings 9 and 10"). x = j + f with j =
 * rint(x): adding 1.5 x 2^23 leaves j in the sum's low mantissa bits (|x|
 * < 2^22) and f = x - j in [-1/2, 1/2]; 2^f by the degree-3 polynomial of least
 * maximum relative error there (Remez: 7.48e-5, below half an f16 ulp of
 * P), times 2^j made by shifting j into an exponent field (the shift drops
 * the 1.5 x 2^23 bits). A multiply rather than adding j to 2^f's exponent
 * bits, so that NaN stays NaN (the integer add turns the GPU's NaN into
 * FLT_MAX). x is clamped at -125 so that 2^j stays normal: a masked score
 * (-inf) gives 2^-125 where MUFU.EX2 gives 0 -- nothing next to the row's
 * largest P of about 1, and a row that saw no key at all is told by its
 * max (attn_fwd_store). 9 instructions on the FMA and integer pipes for one
 * MUFU's 8-cycle slot; the same bits on any IEEE machine with a fused
 * multiply-add (the emulator's test checks them on the host). */
__device__ __forceinline__ float attn_exp2_fma(float x) {
  x = attn_max_nan(x, -125.0f);
  const float t = x + 12582912.0f; /* 1.5 x 2^23 */
  const float f = x - (t - 12582912.0f);
  const float p = fmaf(fmaf(fmaf(0x1.c3f76p-5f, f, 0x1.f0de1ap-3f), f, 0x1.62f31ap-1f), f, 0x1.fff692p-1f);
  return p * attn_bits_f32((attn_f32_bits(t) << 23) + 0x3f800000u); /* 2^f 2^j */
}

/* Whether column pair nj (of NS) of a thread's scores takes its
 * exponentials on the FMA pipe when NFMA of the NS do: spread out (NS = 16,
 * NFMA = 3: 0, 6, 11), so that the MUFU queue never runs dry while the
 * polynomials run. A constant once the softmax's loops are unrolled. */
template <int NS, int NFMA> __host__ __device__ constexpr bool attn_exp_on_fma(int nj) {
  return (nj * NFMA) % NS < NFMA;
}

/* The descriptor of a wgmma operand in the 128-byte-swizzled layout that
 * TMA writes with CU_TENSOR_MAP_SWIZZLE_128B (attention_wgmma.cuh): rows of
 * 64 16-bit elements, 16-byte chunk c of row r stored at chunk c ^ (r % 8)
 * of its 1024-byte group of 8 rows. Mode 1 in bits 62-63. */
#if (defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)) || defined(ATTN_EMULATE)
__device__ __forceinline__ uint64_t attn_wgmma_desc_sw128(const void *smem, uint32_t lbo_bytes, uint32_t sbo_bytes) {
  return attn_wgmma_desc(smem, lbo_bytes, sbo_bytes) | (1ull << 62);
}
#endif
/* The same in the 64-byte-swizzled layout (CU_TENSOR_MAP_SWIZZLE_64B,
 * mode 2): K-major rows of 64 bytes (head_dim 64 in e4m3), 8-row groups of
 * 512 bytes. */
#if (defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)) || defined(ATTN_EMULATE)
__device__ __forceinline__ uint64_t attn_wgmma_desc_sw64(const void *smem, uint32_t lbo_bytes, uint32_t sbo_bytes) {
  return attn_wgmma_desc(smem, lbo_bytes, sbo_bytes) | (2ull << 62);
}
#endif

/* Where byte `off` of a tile that TMA wrote with a SW-byte swizzle lies
 * (the tile 1024-byte aligned; SW 0: no swizzle). The swizzles are
 * functions of the address: the 16-byte chunk bits 4-6 (128) or 4-5 (64)
 * are XORed with bits 7-9 or 7-8. */
template <int SW> __host__ __device__ __forceinline__ int attn_swizzle_off(int off) {
  static_assert(SW == 0 || SW == 64 || SW == 128, "TMA's 64- and 128-byte swizzles");
  return SW == 128 ? off ^ (((off >> 7) & 7) << 4) : SW == 64 ? off ^ (((off >> 7) & 3) << 4) : off;
}

/* K-major, 16-bit, swizzled: what to add to the descriptor's start (16-byte
 * units) for k-step kk (16 columns) of a tile of `rows` rows stored as
 * [D / 64][rows][64]: 32 bytes along the 128-byte row, and every fourth
 * step the next 64-column piece (rows x 128 bytes). */
__host__ __device__ __forceinline__ uint64_t attn_sw128_kstep(int kk, int rows) {
  return (uint64_t)((kk & 3) * 2 + (kk >> 2) * rows * 8);
}

/* PTX prmt (__byte_perm): byte i of the result is byte (sel >> 4 i) & 7 of
 * the eight bytes b:a (a's bytes 0-3, b's 4-7). Written out for the host
 * emulation, one PRMT on the GPU. */
__device__ __forceinline__ uint32_t attn_prmt(uint32_t a, uint32_t b, uint32_t sel) {
#ifdef __CUDA_ARCH__
  return __byte_perm(a, b, sel);
#else
  const uint64_t ab = (uint64_t)b << 32 | a;
  uint32_t r = 0;
  for (int i = 0; i < 4; i++)
    r |= (uint32_t)((ab >> (8 * ((sel >> (4 * i)) & 7))) & 0xff) << (8 * i);
  return r;
#endif
}

/* The first byte at or after p whose shared-memory address is a multiple
 * of 1024 (the 128-byte swizzle repeats every 8 rows of 128 bytes: TMA
 * and wgmma both compute it from the address bits). */
__device__ __forceinline__ unsigned char *attn_align_smem_1024(unsigned char *p) {
  return p + ((1024u - (attn_smem_addr(p) & 1023u)) & 1023u);
}

#ifndef ATTN_EMULATE
/* bytes from device memory (synchronous; the emulator's device memory is
 * host memory). */
static inline int attn_copy_to_host(void *dst, const void *src, size_t bytes) {
  MB_CUDA_TRY(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
  return MB_OK;
}

/* A tensor map over rows of a [tokens, heads, head_dim] tensor of esize-byte
 * elements (2: bf16/f16, 1: e4m3, 4: f32, for the bulk reduces of dQ;
 * `base`, consecutive tokens `ld` elements apart): boxes of 128 bytes of
 * columns (64 16-bit, 128 8-bit or 32 f32 elements) with the 128-byte
 * swizzle, or, where a row is 64 bytes (head_dim 64 in e4m3), of the whole
 * row with the 64-byte swizzle; x 1 head x box_rows tokens, zeros outside
 * the tensor (loads) or nothing written there (reduces). cuTensorMapEncodeTiled is a driver
 * call: fetched through the runtime, so nothing links libcuda. */
static inline int attn_tma_map_rows(AttnTmaMap *map, const void *base, int esize, int64_t tokens, int heads,
                                    int head_dim, int64_t ld, int box_rows, const char *what) {
  static_assert(sizeof(AttnTmaMap) == sizeof(CUtensorMap) && alignof(AttnTmaMap) == alignof(CUtensorMap),
                "AttnTmaMap stands for CUtensorMap");
  static PFN_cuTensorMapEncodeTiled_v12000 encode = NULL;
  if (!encode) {
    cudaDriverEntryPointQueryResult found;
    void *fn = NULL;
    MB_CUDA_TRY(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found));
    if (found != cudaDriverEntryPointSuccess || !fn)
      return MB_ERR(MB_EUNSUPPORTED, "cuda attention: the driver has no cuTensorMapEncodeTiled (TMA needs CUDA 12)");
    encode = (PFN_cuTensorMapEncodeTiled_v12000)fn;
  }
  const int row_bytes = head_dim * esize, box_bytes = row_bytes < 128 ? row_bytes : 128;
  if ((esize != 1 && esize != 2 && esize != 4) || (box_bytes != 64 && box_bytes != 128) || row_bytes % box_bytes)
    return MB_ERR(MB_EINVAL, "cuda attention: the TMA map of %s: %d-byte elements x head_dim %d are not whole 64- "
                             "or 128-byte boxes",
                  what, esize, head_dim);
  const cuuint64_t dims[3] = {(cuuint64_t)head_dim, (cuuint64_t)heads, (cuuint64_t)tokens};
  const cuuint64_t strides[2] = {(cuuint64_t)row_bytes, (cuuint64_t)ld * esize}; /* bytes, of dims 1 and 2 */
  const cuuint32_t box[3] = {(cuuint32_t)(box_bytes / esize), 1, (cuuint32_t)box_rows}, unit[3] = {1, 1, 1};
  const CUresult r = encode(reinterpret_cast<CUtensorMap *>(map),
                            esize == 4   ? CU_TENSOR_MAP_DATA_TYPE_FLOAT32
                            : esize == 2 ? CU_TENSOR_MAP_DATA_TYPE_UINT16
                                         : CU_TENSOR_MAP_DATA_TYPE_UINT8,
                            3,
                            const_cast<void *>(base), dims, strides, box, unit, CU_TENSOR_MAP_INTERLEAVE_NONE,
                            box_bytes == 128 ? CU_TENSOR_MAP_SWIZZLE_128B : CU_TENSOR_MAP_SWIZZLE_64B,
                            CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    return MB_ERR(MB_EINVAL, "cuda attention: the TMA map of %s failed (CUresult %d): the tensor must be 16-byte "
                             "aligned, %lld tokens x %d heads x %d",
                  what, (int)r, (long long)tokens, heads, head_dim);
  return MB_OK;
}
#endif

/* Whether this compilation has Hopper's wgmma (sm_90a device code, or the
 * host emulation). */
#if (defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)) || defined(ATTN_EMULATE)
#define ATTN_HAS_WGMMA 1
#else
#define ATTN_HAS_WGMMA 0
#endif

/* Whether this compilation has e4m3 mma (sm_89+ device code, or the host
 * emulation). */
#if (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890) || defined(ATTN_EMULATE)
#define ATTN_HAS_E4M3_MMA 1
#else
#define ATTN_HAS_E4M3_MMA 0
#endif

/* Copy `rows` rows of D elements of T (rows row0.. of a sequence whose row
 * r is at src + r * ld) into shared memory with row stride lds elements,
 * 16 bytes per cp.async; rows at or past nvalid become zeros. All NT
 * threads of the CTA take part.
 *
 * NT is a multiple of the chunks per row, so a thread copies the same
 * column c of rows r0, r0 + RS, r0 + 2 RS, ... (RS = NT / chunks per row):
 * its global pointer advances by RS * ld and its shared offset by a
 * compile-time constant. Per chunk that is a 64-bit add, one compare and
 * the copy, where computing (row0 + r) * ld afresh cost ~25 instructions
 * (read off the machine code; the tile loads were a third of the forward's
 * non-mma instructions). */
template <typename T, int D, int ROWS, int NT>
__device__ __forceinline__ void attn_load_rows(T *dst, int lds, const T *src, int64_t ld, int row0, int nvalid) {
  constexpr int CHUNK = 16 / sizeof(T); /* elements per 16 bytes */
  constexpr int PER_ROW = D / CHUNK;
  static_assert(D % CHUNK == 0, "rows must be whole 16-byte chunks");
  static_assert(NT % PER_ROW == 0, "a thread keeps one column: NT must be a multiple of the chunks per row");
  constexpr int RS = NT / PER_ROW; /* rows between a thread's chunks */
  constexpr int ITERS = (ROWS + RS - 1) / RS;
  const int r0 = (int)threadIdx.x / PER_ROW, c = ((int)threadIdx.x % PER_ROW) * CHUNK;
  const int left = nvalid - row0 - r0; /* chunk k is real iff k RS < left */
  const T *g = src + (int64_t)(row0 + r0) * ld + c;
  const int64_t step = (int64_t)RS * ld;
  T *s = dst + r0 * lds + c;
#pragma unroll
  for (int k = 0; k < ITERS; k++) {
    if (ROWS % RS == 0 || r0 + k * RS < ROWS) {
      const bool ok = k * RS < left;
      attn_cp_async16(s + k * RS * lds, ok ? g : src, ok); /* src: any valid address (not read) */
    }
    g += step;
  }
}

/* Copy ROWS rows of D elements (rows row0.. of a sequence whose row r is at
 * src + r * ld) into shared memory in wgmma's no-swizzle core-matrix layout
 * (attention_wgmma.cuh): with C elements per 16 bytes (8 for 16-bit, 16
 * for e4m3), row r, 16-byte chunk c of a tile of D columns at element
 * (r / 8) 8 D + 8 C c + C (r % 8); rows at or past nvalid become zeros.
 * All NT threads take part: thread i copies chunk (i / 8) % (D / C) of row
 * 8 ((i / 8) / (D / C)) + i % 8 and of every RS-th row after it, so 8
 * consecutive threads fill one 128-byte core matrix (no bank conflict) and
 * a warp reads 64 contiguous bytes of each of 8 rows (whole 32-byte
 * sectors). */
template <typename T, int D, int ROWS, int NT>
__device__ __forceinline__ void attn_load_rows_core(T *dst, const T *src, int64_t ld, int row0, int nvalid) {
  constexpr int CHUNK = 16 / sizeof(T), PER_ROW = D / CHUNK;
  static_assert(CHUNK == 8 || CHUNK == 16, "16-bit or 8-bit elements");
  static_assert(NT % (8 * PER_ROW) == 0, "a pass covers whole 8-row groups");
  constexpr int RS = NT / PER_ROW; /* rows per pass, a multiple of 8 */
  static_assert(ROWS % RS == 0, "whole passes");
  const int i = (int)threadIdx.x, c = (i >> 3) % PER_ROW, r0 = ((i >> 3) / PER_ROW) * 8 + (i & 7);
  const int left = nvalid - row0 - r0; /* pass k is real iff k RS < left */
  const T *g = src + (int64_t)(row0 + r0) * ld + c * CHUNK;
  const int64_t step = (int64_t)RS * ld;
  T *s = dst + (r0 >> 3) * (8 * D) + c * 8 * CHUNK + (r0 & 7) * CHUNK; /* core matrix (r0 / 8, c), its row r0 % 8 */
#pragma unroll
  for (int k = 0; k < ROWS / RS; k++) {
    const bool ok = k * RS < left;
    attn_cp_async16(s + k * RS * D, ok ? g : src, ok); /* src: any valid address (not read) */
    g += step;
  }
}

/* Copy ROWS rows of D elements (rows row0.. of a sequence whose row r is at
 * src + r * ld) into shared memory in the 128-byte-swizzled layout TMA
 * writes and wgmma's mode 1 reads (attention_wgmma.cuh, the Hopper
 * backward): pieces of 128 bytes per row, [D / P][ROWS][P] with P = 128 /
 * sizeof(T) elements, 16-byte chunk c of row r stored at chunk c ^ (r % 8);
 * rows at or past nvalid become zeros. dst is 1024-byte aligned. All NT
 * threads take part: 8 consecutive threads copy the 8 chunks of one row's
 * piece, so each quarter warp (a 16-byte access is served 8 threads at a
 * time) reads 128 contiguous bytes -- 4 whole sectors -- and writes 8
 * distinct 16-byte bank groups. The core-matrix order of attn_load_rows_core
 * (8 rows' chunk c per quarter warp) reads 8 half-used sectors per quarter
 * warp instead: the H200 profile of the backward counted twice the ideal
 * sectors, every load of Q, dO, K and V (bench/results/h200-2026-11-28-b). */
template <typename T, int D, int ROWS, int NT>
__device__ __forceinline__ void attn_load_rows_sw128(T *dst, const T *src, int64_t ld, int row0, int nvalid) {
  constexpr int CHUNK = 16 / sizeof(T), P = 128 / sizeof(T), PIECES = D / P;
  static_assert(D % P == 0, "rows of whole 128-byte pieces");
  static_assert(NT % (8 * PIECES) == 0, "a thread keeps one chunk of one piece");
  constexpr int RS = NT / (8 * PIECES); /* rows per pass */
  static_assert(RS % 8 == 0 && ROWS % RS == 0, "whole passes of whole 8-row swizzle groups");
  const int i = (int)threadIdx.x, c = i & 7, piece = (i >> 3) % PIECES, r0 = (i >> 3) / PIECES;
  const int left = nvalid - row0 - r0; /* pass k is real iff k RS < left */
  const T *g = src + (int64_t)(row0 + r0) * ld + piece * P + c * CHUNK;
  const int64_t step = (int64_t)RS * ld;
  T *s = dst + piece * ROWS * P + r0 * P + (c ^ (r0 & 7)) * CHUNK; /* RS % 8 == 0: the same XOR every pass */
#pragma unroll
  for (int k = 0; k < ROWS / RS; k++) {
    const bool ok = k * RS < left;
    attn_cp_async16(s + k * RS * P, ok ? g : src, ok); /* src: any valid address (not read) */
    g += step;
  }
}

/* ---- the flash forward's per-tile steps (bf16/f16 and fp8 kernels) ----
 * A warp holds S for MT m16 tiles of queries x NS n8 tiles of keys in mma C
 * fragments: element e of s[mt][nj] is query row qrow0 + 16 mt + gr +
 * 8 (e >> 1), key j0 + 8 nj + 2 tq + (e & 1). */

/* O = 0, row max m = -inf, row sum l = 0. */
template <int MT, int NO>
__device__ __forceinline__ void attn_fwd_init(float (&o)[MT][NO][4], float (&m)[MT][2], float (&l)[MT][2]) {
#pragma unroll
  for (int mt = 0; mt < MT; mt++) {
#pragma unroll
    for (int j = 0; j < NO; j++)
#pragma unroll
      for (int e = 0; e < 4; e++)
        o[mt][j][e] = 0.0f;
    m[mt][0] = m[mt][1] = -INFINITY;
    l[mt][0] = l[mt][1] = 0.0f;
  }
}

/* Padded mode: which keys of the tile j0 .. j0 + BK - 1 are kept (sKeep;
 * keys past the sequence are not), and over the whole CTA whether any key
 * is hidden (*hidden) and whether any is kept (*kept: 0 lets the tile be
 * skipped). Its last barrier also publishes the K tile each thread waited
 * for, and sKeep. Every thread of the CTA calls it. */
template <int BK, int NT>
__device__ __forceinline__ void attn_scan_key_tile(const AttnSeg &g, int j0, int *sKeep, int *hidden, int *kept) {
  int hid = 0, kep = 1;
  if (g.mask) {
    kep = 0;
    for (int c = threadIdx.x; c < BK; c += NT) {
      const int keep = j0 + c < g.n && g.mask[j0 + c] != 0;
      sKeep[c] = keep;
      hid |= !keep;
      kep |= keep;
    }
    kep = __syncthreads_or(kep);
  }
  *hidden = __syncthreads_or(hid);
  *kept = kep;
}

/* x, as a value the compiler must take as new wherever this runs: nothing
 * computed from it is moved out of the loop it sits in (no instruction) */
__device__ __forceinline__ int attn_opaque(int x) {
  asm volatile("" : "+r"(x));
  return x;
}

/* x as lane 0 holds it, for a value that is the same across the warp but
 * that the compiler cannot prove so (a warp index from threadIdx.x):
 * what derives from it, wgmma descriptors above all, then stays in
 * uniform registers instead of being built in vector registers and moved
 * over (R2UR) before every wgmma (CUTLASS's warpgroup-index idiom;
 * ATTENTION.md, "Warp-uniform consumer index"). All 32 lanes call it. */
__device__ __forceinline__ int attn_warp_uniform(int x) { return __shfl_sync(0xffffffffu, x, 0); }

/* S = -inf for keys past the sequence, padded keys, and (causal) keys after
 * the query. Most tiles have none of these and skip the pass. j0 goes
 * through attn_opaque: inside the wgmma kernels' once-run pass loop
 * (a.opaque_one) the compiler otherwise computed the 64 keys' conditions
 * before the loop, into packed predicate bits, on every key tile's path
 * whether the tile needed a mask or not -- about 330 instructions per warp
 * and key tile in the persistent forward (tilings 7, 8; ATTENTION.md,
 * "Forward tilings 9 and 10"). */
template <int MT, int NS, int BK>
__device__ __forceinline__ void attn_mask_scores(float (&s)[MT][NS][4], const AttnArgs &a, const AttnSeg &g,
                                                 const int *sKeep, int hidden, int qrow0, int j0, int gr, int tq) {
  j0 = attn_opaque(j0);
  if (!(hidden || j0 + BK > g.n || (a.causal && j0 + BK - 1 > qrow0)))
    return;
  /* Branch-free: each column's flag loaded once (its two rows share it),
   * the three conditions combined with | rather than ||, whose short
   * circuit made three branches and a load per element (~10 instructions
   * each in the SASS, 64 per tile) */
  const bool padded = g.mask != nullptr, causal = a.causal;
#pragma unroll
  for (int nj = 0; nj < NS; nj++)
#pragma unroll
    for (int x = 0; x < 2; x++) {
      const int c = j0 + nj * 8 + 2 * tq + x;
      const bool drop = c >= g.n || (padded && !sKeep[c - j0]);
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int hr = 0; hr < 2; hr++) {
          const int r = qrow0 + mt * 16 + gr + hr * 8;
          if (drop | (causal & (c > r)))
            s[mt][nj][2 * hr + x] = -INFINITY;
        }
    }
}

/* The online softmax's statistics step, per row: rows gr (hr = 0) and
 * gr + 8 (hr = 1) of each m-tile; the four threads of a quad share a row.
 * S (raw scores) becomes P = 2^(S scale_log2 - m scale_log2 + p_log2) in
 * place (p_log2: a fixed power-of-two scale of P, 0 or the fp8 kernel's
 * 8); m and the thread's part of l are updated, and corr = exp(m_old -
 * m_new) per row is returned for O. The result says whether any row of the
 * warp moved its max (warp-uniform); if none did, corr is exactly 1 and
 * the rescale can be skipped exactly -- on long rows the maxima settle
 * after a few tiles, so most tiles save the O multiplies (128 per thread at
 * D = 128) for one ballot. NFMA of the NS column pairs take their
 * exponentials on the FMA pipe (attn_exp2_fma), the rest on MUFU. */
template <int MT, int NS, int NFMA = 0>
__device__ __forceinline__ bool attn_softmax_stats(float (&s)[MT][NS][4], float (&m)[MT][2], float (&l)[MT][2],
                                                   float (&corr)[MT][2], float scale_log2, float p_log2) {
  bool moved = false;
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
      float mx = -INFINITY;
#pragma unroll
      for (int nj = 0; nj < NS; nj++)
        mx = fmaxf(mx, fmaxf(s[mt][nj][2 * hr], s[mt][nj][2 * hr + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float mnew = fmaxf(m[mt][hr], mx);
      /* a row that has seen nothing yet keeps m = -inf; use 0 so that
       * exp2(-inf - 0) = 0 rather than exp2(-inf + inf) = NaN */
      const float muse = mnew == -INFINITY ? 0.0f : mnew;
      corr[mt][hr] = attn_exp2((m[mt][hr] - muse) * scale_log2);
      moved |= corr[mt][hr] != 1.0f;
      const float moff = muse * scale_log2 - p_log2;
      m[mt][hr] = mnew;
      float sum = 0.0f;
#pragma unroll
      for (int nj = 0; nj < NS; nj++)
#pragma unroll
        for (int e = 2 * hr; e < 2 * hr + 2; e++) {
          const float x = fmaf(s[mt][nj][e], scale_log2, -moff);
          const float p = attn_exp_on_fma<NS, NFMA>(nj) ? attn_exp2_fma(x) : attn_exp2(x);
          s[mt][nj][e] = p;
          sum += p;
        }
      l[mt][hr] = l[mt][hr] * corr[mt][hr] + sum;
    }
  return __ballot_sync(0xffffffffu, moved) != 0;
}

/* O *= corr, per row. */
template <int MT, int NO>
__device__ __forceinline__ void attn_rescale_o(float (&o)[MT][NO][4], const float (&corr)[MT][2]) {
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int hr = 0; hr < 2; hr++)
#pragma unroll
      for (int j = 0; j < NO; j++) {
        o[mt][j][2 * hr] *= corr[mt][hr];
        o[mt][j][2 * hr + 1] *= corr[mt][hr];
      }
}

/* The online softmax step: the statistics, then O rescaled at once (a
 * kernel with a product into O still in flight rescales after waiting). */
template <int MT, int NS, int NO, int NFMA = 0>
__device__ __forceinline__ void attn_online_softmax(float (&s)[MT][NS][4], float (&m)[MT][2], float (&l)[MT][2],
                                                    float (&o)[MT][NO][4], float scale_log2, float p_log2) {
  float corr[MT][2];
  if (attn_softmax_stats<MT, NS, NFMA>(s, m, l, corr, scale_log2, p_log2))
    attn_rescale_o<MT, NO>(o, corr);
}

/* The forward's end for this warp's rows row0 + 16 mt + gr (+ 8): out = O
 * out_scale / l rounded to TO, lse = m lse_scale + log(l) + lse_offset (m
 * in raw score units, l this thread's part of the row sum: the quad adds
 * its four); padded query rows and rows that saw no key (m = -inf; their l
 * is 0, or under attn_exp2_fma 2^-125 per masked key) get 0 and +inf; a
 * row whose scores were all NaN (m = -inf too) gets NaN. */
template <typename TO, int MT, int NO>
__device__ __forceinline__ void attn_fwd_store(const AttnArgs &a, const AttnSeg &g, int h, int64_t base, int row0,
                                               const float (&o)[MT][NO][4], const float (&m)[MT][2],
                                               const float (&l)[MT][2], float out_scale, float lse_scale,
                                               float lse_offset) {
  const int lane = threadIdx.x & 31, gr = lane >> 2, tq = lane & 3;
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
      float sum = l[mt][hr];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      const int r = row0 + mt * 16 + gr + hr * 8;
      if (r >= g.n)
        continue;
      /* m = -inf: no key seen, unless l is NaN (fmaxf skipped the row's
       * NaN scores): then out and lse are NaN, as in PyTorch */
      const bool ok = (!g.mask || g.mask[r] != 0) && (m[mt][hr] > -INFINITY || sum != sum);
      const float inv = ok ? out_scale / sum : 0.0f;
      TO *orow = (TO *)a.o + base + (int64_t)r * a.ld;
#pragma unroll
      for (int j = 0; j < NO; j++)
        *reinterpret_cast<uint32_t *>(orow + j * 8 + 2 * tq) =
            AttnType<TO>::pack2(o[mt][j][2 * hr] * inv, o[mt][j][2 * hr + 1] * inv);
      if (tq == 0)
        a.lse[(int64_t)(g.start + r) * a.heads + h] = ok ? m[mt][hr] * lse_scale + logf(sum) + lse_offset : INFINITY;
    }
}

/* A backward key tile of padding only: dK = dV = 0 for its BK keys that lie
 * inside the sequence (all NT threads). */
template <typename T, int D, int BK, int NT>
__device__ __forceinline__ void attn_bwd_zero_dkdv(const AttnArgs &a, const AttnSeg &g, int64_t base, int j0) {
  for (int i = threadIdx.x; i < BK * D; i += NT) {
    const int r = i / D, e = i % D;
    if (j0 + r < g.n) {
      AttnType<T>::store((T *)a.dk, base + (int64_t)(j0 + r) * a.ld + e, 0.0f);
      AttnType<T>::store((T *)a.dv, base + (int64_t)(j0 + r) * a.ld + e, 0.0f);
    }
  }
}

/* This thread's two query rows r0 and r0 + 8: live (a real, unmasked
 * token), lse in log2 units (+inf when not live, so P = 0) and
 * D = rowsum(dO * O) (0 when not live). */
__device__ __forceinline__ void attn_bwd_row_stats(const AttnArgs &a, const AttnSeg &g, int h, int r0, bool (&live)[2],
                                                   float (&lse2)[2], float (&dsum)[2]) {
#pragma unroll
  for (int hr = 0; hr < 2; hr++) {
    const int r = r0 + hr * 8;
    live[hr] = r < g.n && (!g.mask || g.mask[r] != 0);
    const int64_t lr = attn_stat_index(a, g.start + r, h);
    lse2[hr] = live[hr] ? a.lse2t[lr] : INFINITY;
    dsum[hr] = live[hr] ? a.dsum[lr] : 0.0f;
  }
}

/* Backward: sKeep[c] = key j0 + c is real and unmasked, for a tile of BK keys; this
 * thread's share of "some key is hidden" and "some key is kept" (the
 * caller ORs them over the block with __syncthreads_or). */
template <int BK, int NT>
__device__ __forceinline__ void attn_bwd_mark_keys(const AttnSeg &g, int j0, int tid, int *sKeep, int *hidden,
                                                   int *kept) {
  for (int c = tid; c < BK; c += NT) {
    const int keep = j0 + c < g.n && (!g.mask || g.mask[j0 + c] != 0);
    sKeep[c] = keep;
    *hidden |= !keep;
    *kept |= keep;
  }
}

/* Zero the varlen budget's tail, tokens cu_seqlens[nseq] .. seqlen-1, of an
 * [tokens, width] array (out and the gradients: 0; lse: +inf). */
template <typename T> __global__ void attn_fill_tail(T *x, int64_t width, AttnArgs a, float value) {
  const int64_t first = (int64_t)attn_used_tokens(a) * width, total = (int64_t)a.seqlen * width;
  for (int64_t i = first + (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (int64_t)blockDim.x * gridDim.x)
    AttnType<T>::store(x, i, value);
}

template <typename T>
static inline int attn_launch_fill_tail(T *x, int64_t width, const AttnArgs &a, float value, cudaStream_t s) {
  if (!a.cu_seqlens)
    return MB_OK;
  /* The tail's length is device data: cover the whole budget, threads before
   * the tail exit at once. */
  const int64_t total = (int64_t)a.seqlen * width;
  const unsigned blocks = (unsigned)((total + 255) / 256 < 4096 ? (total + 255) / 256 : 4096);
  if (blocks == 0)
    return MB_OK;
  auto *kernel = attn_fill_tail<T>;
  ATTN_LAUNCH(kernel, blocks, 256, 0, s, x, width, a, value);
  ATTN_LAUNCH_CHECK("attn_fill_tail");
  return MB_OK;
}

/* A forward kernel (one CTA of nt threads per `rows` queries; arguments a
 * and then `more`): its shared memory, the launch, and the varlen tail of
 * out (TO) and lse. */
template <typename TO, typename K, typename... More>
static inline int attn_launch_fwd_grid(K *kernel, const char *name, const AttnArgs &a, dim3 grid, int nt,
                                       size_t smem, cudaStream_t s, const More &...more) {
  /* per device, so on every launch (cheap; allowed during graph capture) */
  MB_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  ATTN_LAUNCH(kernel, grid, nt, smem, s, a, more...);
  ATTN_LAUNCH_CHECK(name);
  MB_TRY(attn_launch_fill_tail<TO>((TO *)a.o, a.ld, a, 0.0f, s));
  return attn_launch_fill_tail<float>(a.lse, a.heads, a, INFINITY, s);
}
template <typename TO, typename K, typename... More>
static inline int attn_launch_fwd(K *kernel, const char *name, const mb_attn_desc *d, const AttnArgs &a, int rows,
                                  int nt, size_t smem, cudaStream_t s, const More &...more) {
  return attn_launch_fwd_grid<TO>(kernel, name, a, attn_tile_grid(d, rows), nt, smem, s, more...);
}

/* setmaxnreg's split of a warp-specialised CTA: a producer warpgroup (128
 * threads) gives registers back down to PRODUCER each and CONSUMERS threads
 * take them up to CONSUMER each. The hardware moves them through the CTA's
 * own pool, which holds only what the producer gave back: the consumers'
 * setmaxnreg.inc waits until 128 (launch - PRODUCER) >= CONSUMERS (CONSUMER
 * - launch), so a kernel that starts with fewer registers per thread than
 * that would wait for ever. ptxas 13.0 gives these kernels all that
 * __launch_bounds__(NT, 1) allows (168 at 384 threads: exactly what 24 /
 * 240 needs), even under -maxrregcount=160; tests/cuda/check_wgmma_ptxas.sh
 * checks that it still does, and the launchers check the loaded image
 * (attn_reg_split_check), so another compiler's choice is an error, not a
 * hang. */
template <int PRODUCER, int CONSUMER, int CONSUMERS> struct AttnRegSplit {
  static constexpr int producer = PRODUCER, consumer = CONSUMER, consumers = CONSUMERS, nt = 128 + CONSUMERS;
  /* per thread at launch: the least that lets the consumers' .inc through */
  static constexpr int launch_min = (128 * PRODUCER + CONSUMERS * CONSUMER + nt - 1) / nt;
  /* the most a thread of an nt-thread CTA can get (8-register steps, 255 at most) */
  static constexpr int launch_max = (65536 / nt) / 8 * 8 < 255 ? (65536 / nt) / 8 * 8 : 255;
  static_assert(PRODUCER % 8 == 0 && CONSUMER % 8 == 0 && PRODUCER >= 24 && CONSUMER <= 256, "setmaxnreg's range");
  static_assert(128 * PRODUCER + CONSUMERS * CONSUMER <= 65536, "the split fits the register file");
  static_assert(launch_min <= launch_max, "the consumers' registers can come from the producer's at full launch");
};
template <class Split, class K> static inline int attn_reg_split_check(K *kernel, const char *name) {
  /* on every launch, like cudaFuncSetAttribute beside it (host-side, cheap,
   * allowed during graph capture) */
  struct cudaFuncAttributes fa;
  MB_CUDA_TRY(cudaFuncGetAttributes(&fa, kernel));
  if (fa.numRegs < Split::launch_min)
    return MB_ERR(MB_EUNSUPPORTED,
                  "cuda attention: %s was built with %d registers per thread, and its setmaxnreg split (%d for the "
                  "producer warpgroup, %d for %d consumer threads) needs at least %d at launch: the consumers would "
                  "wait for ever (built by another compiler?)",
                  name, fa.numRegs, Split::producer, Split::consumer, Split::consumers, Split::launch_min);
  return MB_OK;
}

/* A persistent grid for a kernel that loops over the work tiles
 * (attn_find_work): ctas_per_sm CTAs on each SM of the current device, or
 * one per tile when there are fewer tiles. */
static inline int attn_persistent_grid(const mb_attn_desc *d, int rows, int ctas_per_sm, dim3 *grid) {
  int dev = 0, sms = 0;
  MB_CUDA_TRY(cudaGetDevice(&dev));
  MB_CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const dim3 g = attn_tile_grid(d, rows);
  const int64_t tiles = (int64_t)g.x * g.y * g.z, most = (int64_t)(sms > 0 ? sms : 1) * ctas_per_sm;
  *grid = dim3((unsigned)(tiles < most ? tiles : most), 1, 1);
  return MB_OK;
}

/* ---- reductions (fixed trees: the same bits on every run) ---- */

__device__ __forceinline__ float attn_warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float attn_warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
/* Over the whole block (blockDim.x a multiple of 32); every thread gets the
 * result. scratch: 32 floats, free again when the call returns. */
__device__ __forceinline__ float attn_block_sum(float v, float *scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = attn_warp_sum(v);
  __syncthreads(); /* a previous call may still be reading scratch */
  if (lane == 0)
    scratch[warp] = v;
  __syncthreads();
  return attn_warp_sum(lane < nw ? scratch[lane] : 0.0f);
}
__device__ __forceinline__ float attn_block_max(float v, float *scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = attn_warp_max(v);
  __syncthreads();
  if (lane == 0)
    scratch[warp] = v;
  __syncthreads();
  return attn_warp_max(lane < nw ? scratch[lane] : -INFINITY);
}

/* Backward preparation, one warp per (token, head) row: dsum = rowsum(dO * O)
 * in f32 (the softmax backward's D) and lse2t = lse log2(e), both stored
 * head-major (attn_stat_index), the dQ semaphores and the dQ accumulator
 * (when there is one) zeroed. Padded rows have O = 0, so their D is 0. */
template <typename T> __global__ void attn_bwd_prep(AttnArgs a) {
  const int64_t rows = (int64_t)a.batch * a.seqlen * a.heads;
  const int lane = threadIdx.x & 31;
  const int64_t step = (int64_t)gridDim.x * (blockDim.x >> 5);
  for (int64_t row = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); row < rows; row += step) {
    const T *o = (const T *)a.out + row * a.head_dim, *dout = (const T *)a.dout + row * a.head_dim;
    float s = 0.0f;
    for (int e = lane; e < a.head_dim; e += 32)
      s += AttnType<T>::load(o, e) * AttnType<T>::load(dout, e);
    s = attn_warp_sum(s);
    const int64_t st = attn_stat_index(a, row / a.heads, (int)(row % a.heads));
    if (lane == 0)
      a.dsum[st] = s;
    else if (lane == 1)
      a.lse2t[st] = a.lse[row] * ATTN_LOG2E;
    else if (lane == 2)
      a.dq_sem[st] = 0;
    if (a.dq_accum)
      for (int e = lane; e < a.head_dim; e += 32)
        a.dq_accum[row * a.head_dim + e] = 0.0f;
  }
}

/* Two adjacent dQ terms into the f32 accumulator (the fast modes). */
__device__ __forceinline__ void attn_dq_add2(float *accum, int64_t idx, float x0, float x1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  atomicAdd(reinterpret_cast<float2 *>(accum + idx), make_float2(x0, x1));
#else
  atomicAdd(accum + idx, x0);
  atomicAdd(accum + idx + 1, x1);
#endif
}

/* The fast modes' dq = scale * accumulator, for every token (the
 * accumulator of padded rows and the varlen tail is 0). */
template <typename T> __global__ void attn_dq_convert(T *dq, AttnArgs a, int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)blockDim.x * gridDim.x)
    AttnType<T>::store(dq, i, a.scale * a.dq_accum[i]);
}

template <typename T>
static inline int attn_launch_dq_convert(const mb_attn_desc *d, const AttnArgs &a, cudaStream_t s) {
  const int64_t n = (int64_t)attn_tokens(d) * a.ld;
  const unsigned blocks = (unsigned)((n + 255) / 256 < 65536 ? (n + 255) / 256 : 65536);
  auto *convert = attn_dq_convert<T>;
  ATTN_LAUNCH(convert, blocks, 256, 0, s, (T *)a.dq, a, n);
  ATTN_LAUNCH_CHECK("attn_dq_convert");
  return MB_OK;
}

template <typename T> static inline int attn_launch_bwd_prep(const AttnArgs &a, cudaStream_t s) {
  const int64_t rows = (int64_t)a.batch * a.seqlen * a.heads;
  if (rows == 0)
    return MB_OK;
  const int64_t blocks = (rows + 7) / 8; /* 8 warps of 256 threads, a row each */
  auto *kernel = attn_bwd_prep<T>;
  ATTN_LAUNCH(kernel, (unsigned)(blocks < 65536 ? blocks : 65536), 256, 0, s, a);
  ATTN_LAUNCH_CHECK("attn_bwd_prep");
  return MB_OK;
}

/* Internal launchers (attention.cu dispatches to them; they assume the
 * descriptor was checked and the kernel can run the request). */
int attn_reference_fwd(const mb_attn_desc *d, mb_dtype in_dt, const void *q, const void *k, const void *v,
                       const float *qds, const float *kds, const float *vds, void *out, mb_dtype out_dt, float *lse,
                       cudaStream_t s);
int attn_reference_bwd(const mb_attn_desc *d, mb_dtype dt, const void *q, const void *k, const void *v, const void *out,
                       const float *lse, const void *dout, void *dq, void *dk, void *dv, void *ws, size_t ws_bytes,
                       cudaStream_t s);
int attn_flash_fwd(const mb_attn_desc *d, mb_dtype dt, const void *q, const void *k, const void *v, void *out,
                   float *lse, cudaStream_t s);
int attn_flash_bwd(const mb_attn_desc *d, mb_dtype dt, const void *q, const void *k, const void *v, const void *out,
                   const float *lse, const void *dout, void *dq, void *dk, void *dv, void *ws, size_t ws_bytes,
                   cudaStream_t s);
int attn_hopper_fwd(const mb_attn_desc *d, mb_dtype dt, int tiling, const void *q, const void *k, const void *v,
                    void *out, float *lse, cudaStream_t s);
int attn_hopper_fwd_runs(int *ok);
/* MAMBERT_ATTN_TILING (attention.cu): the forward and backward tilings it
 * asks for -- "wgmma": 2 and 1; "F" or "F,B": those (forward 0-8, backward
 * 0-4; B 0 when left out); unset or "default": where the wgmma tilings run
 * (sm_90, sm_90a image) 5 and 3, else 0 and 0 -- with
 * the wgmma ones replaced by 0 where they cannot run (a warning, once);
 * anything else is an error naming the variable. */
int attn_env_tiling(int *fwd, int *bwd);
/* *tiling = the forward's tiling if it is a wgmma one (2-6) and it runs
 * here, else 0: the fp8 forward then takes a wgmma kernel too
 * (attention_flash_fwd.cu). */
int attn_flash_fwd_wgmma_tiling(int *tiling);
/* Backward tilings 1 and 2 (attention_hopper_bwd.cu; 2: both kernels
 * warp-specialised, and with det false dQ by f32 atomics in the dK/dV
 * kernel; tiling 1 is deterministic in either mode). */
int attn_hopper_bwd(const mb_attn_desc *d, mb_dtype dt, int tiling, bool det, const void *q, const void *k,
                    const void *v, const void *out, const float *lse, const void *dout, void *dq, void *dk, void *dv,
                    void *ws, size_t ws_bytes, cudaStream_t s);
/* attention_hopper_fwd.cu: e4m3 under forward tilings 7-8 (sm_90a) */
int attn_hopper_fwd_fp8_ws(const mb_attn_desc *d, const AttnArgs &a, int tiling, cudaStream_t s);
int attn_flash_fwd_fp8(const mb_attn_desc *d, const void *q, const void *k, const void *v, const float *qds,
                       const float *kds, const float *vds, void *out, float *lse, cudaStream_t s);

/* Workspace layout of the backward (every kernel uses the same): the dQ
 * accumulator [tokens, H, D] f32 (the flash kernel's fast mode only), then
 * the statistics, f32 [H, tokens] each: rowsum(dO * O) and lse log2(e). */
static inline size_t attn_align256(size_t n) { return (n + 255) & ~(size_t)255; }
static inline size_t attn_ws_dq_bytes(const mb_attn_desc *d) {
  return attn_align256((size_t)attn_tokens(d) * d->heads * d->head_dim * sizeof(float));
}
static inline size_t attn_ws_stat_plane_bytes(const mb_attn_desc *d) {
  return attn_align256((size_t)attn_tokens(d) * d->heads * sizeof(float));
}
/* dsum, lse2t and dq_sem: three [H, tokens] planes of 4-byte words */
static inline size_t attn_ws_stats_bytes(const mb_attn_desc *d) { return 3 * attn_ws_stat_plane_bytes(d); }

/* The backward's argument block: inputs, gradients and the workspace (the
 * f32 dQ accumulator, then the statistics). */
static inline AttnArgs attn_bwd_args(const mb_attn_desc *d, const void *q, const void *k, const void *v,
                                     const void *out, const float *lse, const void *dout, void *dq, void *dk, void *dv,
                                     void *ws) {
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
  a.dsum = (float *)((unsigned char *)ws + attn_ws_dq_bytes(d));
  a.lse2t = (float *)((unsigned char *)a.dsum + attn_ws_stat_plane_bytes(d));
  a.dq_sem = (int32_t *)((unsigned char *)a.lse2t + attn_ws_stat_plane_bytes(d));
  return a;
}

#endif
