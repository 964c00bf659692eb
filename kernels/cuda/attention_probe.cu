/* attention_probe.cu: a self-test of the Hopper building blocks the wgmma
 * tilings (2-6, attention_hopper_*.cu, the fp8 wgmma forward) stand on,
 * each run alone on the current GPU: one warpgroup, one product, inputs
 * that make the product exact in f32 (multiples of 1/2 in [-2, 2], so bf16
 * and e4m3 hold them and every sum of up to 64 products is exact), the
 * result compared element by element with a plain dot product of the same
 * global inputs. A kernel that is wrong on hardware gives errors of order 1
 * and says nothing about why; a probe names the layout: the descriptor
 * fields, the fragment, the swizzle or the TMA box that was misread.
 *
 *   ss          D[64][128] = A[64][16] B[16][128], bf16, no swizzle, both
 *               operands K-major from shared memory (tilings 2-4's S = Q K^T)
 *   rs_mn       A from registers (the m16n8k16 A fragment), B MN-major, no
 *               swizzle (tilings 2-4's O += P V)
 *   tma_sw128   Q[64][64], K[64][64] loaded by TMA (128-byte swizzle,
 *               mbarrier), S = Q K^T with mode-1 K-major descriptors, k-steps
 *               along the 128-byte rows (tilings 5-6)
 *   tma_sw128_mn  P from registers times V[64][128] loaded by TMA as two
 *               64-column boxes, read MN-major with LBO between them
 *               (tilings 5-6's O += P V, head_dim 128)
 *   e4m3_ss     D[64][128] = A[64][32] B[32][128], e4m3, K-major (the fp8
 *               wgmma forward's S)
 *   e4m3_rs     the same with A from registers (the m16n8k32 8-bit A
 *               fragment: the fp8 forward's P V)
 *   tma_sw128_e4m3  Q[64][128], K[64][128] e4m3 loaded by TMA (128-byte
 *               swizzle), S = Q K^T over k = 128 in four k32 steps along the
 *               row (the e4m3 forward's tilings 7-8 at head_dim 128)
 *   tma_sw64_e4m3   the same with rows of 64 e4m3 (the 64-byte swizzle,
 *               mode-2 descriptors, two k-steps: tilings 7-8 at head_dim 64)
 *   sw128_mn_ab D[64][64] = A[64][64] B[64][64] with both operands
 *               MN-major in the 128-byte swizzle, written by ordinary
 *               stores row by row of k (the backward tiling 2 fast mode's
 *               dQ = dS K: dS^T's and K's rows are keys); the only
 *               transposed A the kernels use
 */
#include <stdio.h>

#include "kernels/cuda/attention_common.cuh"

namespace {

constexpr int PROBES = 9;
const char *const probe_names[PROBES] = {"ss",          "rs_mn",          "tma_sw128",    "tma_sw128_mn",
                                         "e4m3_ss",     "e4m3_rs",        "sw128_mn_ab",  "tma_sw128_e4m3",
                                         "tma_sw64_e4m3"};

/* What a probe leaves in the workspace. */
struct ProbeResult {
  unsigned long long bad; /* mismatching elements */
  int row, col;           /* the first one seen */
  float got, want;
};

/* Input element i of matrix `which`: a multiple of 1/2 in [-2, 2]. */
__device__ __forceinline__ float probe_value(int which, int i) {
  uint32_t h = (uint32_t)i * 2654435761u + (uint32_t)which * 40503u + 12345u;
  h ^= h >> 15;
  h *= 2246822519u;
  h ^= h >> 13;
  return (float)((int)(h % 9u) - 4) * 0.5f;
}

/* The inputs: four bf16 matrices of 64 x 128 and two of 8192 e4m3 (the
 * e4m3 products read them as 128 x 32, A its first 64 rows, or, the TMA
 * ones, as 64 x 128); the results zeroed. */
constexpr int PROBE_BF16 = 64 * 128, PROBE_E4M3 = 64 * 128;
__global__ void attn_probe_init_kernel(attn_bf16 *m16, uint8_t *m8, ProbeResult *res) {
  const int first = blockIdx.x * blockDim.x + threadIdx.x, step = blockDim.x * gridDim.x;
  for (int i = first; i < 4 * PROBE_BF16; i += step)
    m16[i] = __float2bfloat16_rn(probe_value(i / PROBE_BF16, i % PROBE_BF16));
  for (int i = first; i < 2 * PROBE_E4M3; i += step) /* exact: multiples of 1/2 up to 2 */
    m8[i] = (uint8_t)(__nv_cvt_float2_to_fp8x2(make_float2(probe_value(4 + i / PROBE_E4M3, i % PROBE_E4M3), 0.0f),
                                               __NV_SATFINITE, __NV_E4M3) &
                      0xff);
  for (int i = first; i < PROBES; i += step)
    memset(&res[i], 0, sizeof res[i]);
}

#if ATTN_HAS_WGMMA
/* Compare this thread's accumulators (warpgroup layout, attention_wgmma.cuh)
 * with want(row, col). */
template <int N, typename F>
__device__ __forceinline__ void probe_check(const float *d, ProbeResult *res, F want) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int i = 0; i < N / 2; i++) {
    const int row = 16 * warp + g + 8 * ((i % 4) >> 1), col = 8 * (i / 4) + 2 * t + (i & 1);
    const float w = want(row, col);
    if (d[i] != w && atomicAdd(&res->bad, 1ull) == 0) {
      res->row = row;
      res->col = col;
      res->got = d[i];
      res->want = w;
    }
  }
}

/* The m16n8k16 A fragment of rows 16 warp.. of a row-major [64][lda] bf16
 * matrix, columns k0..k0+15. */
__device__ __forceinline__ void probe_a_fragment(const attn_bf16 *a, int lda, int k0, uint32_t (&f)[4]) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, r = 16 * warp + g;
  auto at = [&](int row, int col) { return __bfloat162float(a[row * lda + col]); };
  f[0] = AttnType<attn_bf16>::pack2(at(r, k0 + 2 * t), at(r, k0 + 2 * t + 1));
  f[1] = AttnType<attn_bf16>::pack2(at(r + 8, k0 + 2 * t), at(r + 8, k0 + 2 * t + 1));
  f[2] = AttnType<attn_bf16>::pack2(at(r, k0 + 2 * t + 8), at(r, k0 + 2 * t + 9));
  f[3] = AttnType<attn_bf16>::pack2(at(r + 8, k0 + 2 * t + 8), at(r + 8, k0 + 2 * t + 9));
}

/* d[64][64] = A B over k = 64 from two swizzled shared-memory operands:
 * four k-steps of 16, each `step` further in both descriptors (16-byte
 * units); MN: both operands MN-major (ss_mn), else both K-major (ss). */
template <bool MN>
__device__ __forceinline__ void probe_ss64(float (&d)[32], uint64_t adesc, uint64_t bdesc, int step) {
  attn_wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < 4; kk++) {
    if (MN)
      AttnWgmma<attn_bf16, 64>::ss_mn(d, adesc + step * kk, bdesc + step * kk, kk > 0);
    else
      AttnWgmma<attn_bf16, 64>::ss(d, adesc + step * kk, bdesc + step * kk, kk > 0);
  }
  attn_wgmma_commit();
  attn_wgmma_wait<0>();
  attn_wgmma_pin<32>(d);
}

/* Two TMA boxes (map0 at column x0 into dst0, map1 at x1 into dst1, bytes
 * in all) on the mbarrier at bar, which this sets up: every thread returns
 * once both have landed. */
__device__ __forceinline__ void probe_tma_two(uint64_t *bar, uint32_t bytes, void *dst0, const AttnTmaMap *map0,
                                              int x0, void *dst1, const AttnTmaMap *map1, int x1) {
  if (threadIdx.x == 0) {
    attn_mbar_init(bar, 1);
    attn_mbar_init_fence();
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    attn_mbar_arrive_expect_tx(bar, bytes);
    attn_tma_load_3d(dst0, map0, x0, 0, 0, bar);
    attn_tma_load_3d(dst1, map1, x1, 0, 0, bar);
  }
  attn_mbar_wait(bar, 0);
}

/* A 16-bit element into shared memory at byte offset off, as two tracked
 * byte stores (the emulator checks the fence before the wgmma). */
__device__ __forceinline__ void probe_sts16(uint8_t *smem, size_t off, attn_bf16 v) {
  uint16_t u;
  memcpy(&u, &v, 2);
  attn_sts_u8_for_wgmma(smem + off, (uint8_t)(u & 0xff));
  attn_sts_u8_for_wgmma(smem + off + 1, (uint8_t)(u >> 8));
}
#endif

/* ss and rs_mn: A = m16[0] as [64][16] (row stride 128), B(k, n) for n <
 * 128 = m16[1] as [n][k] (ss, K-major; rows of 128: [128][16] uses two
 * matrices' worth, m16[1] and m16[2]) or [k][n] (rs_mn, MN-major). */
__global__ void __launch_bounds__(128) attn_probe_nosw_kernel(const attn_bf16 *m16, ProbeResult *res, int rs) {
#if ATTN_HAS_WGMMA
  ATTN_DYNAMIC_SMEM(uint8_t, smem);
  uint8_t *sA = smem, *sB = smem + 64 * 16 * 2;
  const attn_bf16 *A = m16, *B = m16 + PROBE_BF16;
  for (int i = threadIdx.x; i < 128 * 16; i += 128) { /* A (m, k): 64 x 16; B (n, k): 128 x 16 */
    const int r = i / 16, k = i % 16;
    /* K-major no swizzle: (r % 8) 16 + (r / 8) SBO 256 + (k % 8) 2 + (k / 8) LBO 128 */
    if (r < 64)
      probe_sts16(sA, (r % 8) * 16 + (r / 8) * 256 + (k % 8) * 2 + (k / 8) * 128, A[r * 128 + k]);
    if (rs) /* MN-major: element (n = r, k) at (n % 8) 2 + (n / 8) SBO 128 + (k % 8) 16 + (k / 8) LBO 2048 */
      probe_sts16(sB, (r % 8) * 2 + (r / 8) * 128 + (k % 8) * 16 + (k / 8) * 2048, B[k * 128 + r]);
    else
      probe_sts16(sB, (r % 8) * 16 + (r / 8) * 256 + (k % 8) * 2 + (k / 8) * 128, B[r * 128 + k]);
  }
  attn_fence_proxy_async();
  __syncthreads();
  float d[64];
  uint32_t a[4];
  probe_a_fragment(A, 128, 0, a);
  attn_wgmma_fence();
  if (rs)
    AttnWgmma<attn_bf16, 128>::rs_mn(d, a, attn_wgmma_desc(sB, 2048, 128), false);
  else
    AttnWgmma<attn_bf16, 128>::ss(d, attn_wgmma_desc(sA, 128, 256), attn_wgmma_desc(sB, 128, 256), false);
  attn_wgmma_commit();
  attn_wgmma_wait<0>();
  attn_wgmma_pin<64>(d);
  attn_wgmma_pin<4>(a);
  probe_check<128>(d, res, [&](int row, int col) {
    float s = 0.0f;
    for (int k = 0; k < 16; k++)
      s += __bfloat162float(A[row * 128 + k]) *
           __bfloat162float(rs ? B[k * 128 + col] : B[col * 128 + k]);
    return s;
  });
#else
  (void)m16, (void)res, (void)rs;
#endif
}

/* tma_sw128 (mn = 0): S[64][64] = Q K^T, Q = m16[2] and K = m16[3] as
 * [64][64] (row stride 128: the tensor maps' ld); tma_sw128_mn (mn = 1):
 * O[64][128] = P V with P = m16[0] [64][64] (registers) and V = m16[1]
 * [64 keys][128]. */
__global__ void __launch_bounds__(128)
    attn_probe_tma_kernel(const attn_bf16 *m16, ProbeResult *res, int mn, const __grid_constant__ AttnTmaMaps maps) {
#if ATTN_HAS_WGMMA
  ATTN_DYNAMIC_SMEM(unsigned char, raw);
  attn_bf16 *sX = reinterpret_cast<attn_bf16 *>(attn_align_smem_1024(raw)); /* Q, or V's two column chunks */
  attn_bf16 *sK = sX + 2 * 64 * 64;
  uint64_t *bar = reinterpret_cast<uint64_t *>(sK + 64 * 64);
  if (mn) /* V: columns 0-63 and 64-127 */
    probe_tma_two(bar, 2 * 64 * 64 * 2, sX, &maps.v, 0, sX + 64 * 64, &maps.v, 64);
  else
    probe_tma_two(bar, 2 * 64 * 64 * 2, sX, &maps.q, 0, sK, &maps.k, 0);
  if (mn) {
    const attn_bf16 *P = m16, *V = m16 + PROBE_BF16;
    float d[64];
    uint32_t a[4][4];
    for (int kk = 0; kk < 4; kk++)
      probe_a_fragment(P, 128, 16 * kk, a[kk]);
    const uint64_t vdesc = attn_wgmma_desc_sw128(sX, 64 * 128, 1024);
    attn_wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; kk++) /* 16 keys: 16 rows of 128 bytes, +128 in 16-byte units */
      AttnWgmma<attn_bf16, 128>::rs_mn(d, a[kk], vdesc + 128 * kk, kk > 0);
    attn_wgmma_commit();
    attn_wgmma_wait<0>();
    attn_wgmma_pin<64>(d);
    attn_wgmma_pin<16>(&a[0][0]);
    probe_check<128>(d, res, [&](int row, int col) {
      float s = 0.0f;
      for (int k = 0; k < 64; k++)
        s += __bfloat162float(P[row * 128 + k]) * __bfloat162float(V[k * 128 + col]);
      return s;
    });
  } else {
    const attn_bf16 *Q = m16 + 2 * PROBE_BF16, *K = m16 + 3 * PROBE_BF16;
    float d[32];
    /* 16 columns a k-step: 32 bytes along the 128-byte row, +2 */
    probe_ss64<false>(d, attn_wgmma_desc_sw128(sX, 16, 1024), attn_wgmma_desc_sw128(sK, 16, 1024), 2);
    probe_check<64>(d, res, [&](int row, int col) {
      float s = 0.0f;
      for (int k = 0; k < 64; k++)
        s += __bfloat162float(Q[row * 128 + k]) * __bfloat162float(K[col * 128 + k]);
      return s;
    });
  }
#else
  (void)m16, (void)res, (void)mn, (void)maps;
#endif
}

/* sw128_mn_ab: A(m, k) = m16[2][k][m] and B(k, n) = m16[3][k][n] (rows of
 * 128), each stored as 64 rows of k x 128 bytes, 16-byte chunk c of row k
 * at chunk c ^ (k % 8); descriptors in mode 1, MN-major, a k-step of 16
 * rows = +128 in 16-byte units. */
__global__ void __launch_bounds__(128) attn_probe_sw128_mn_kernel(const attn_bf16 *m16, ProbeResult *res) {
#if ATTN_HAS_WGMMA
  ATTN_DYNAMIC_SMEM(unsigned char, raw);
  uint8_t *sA = attn_align_smem_1024(raw), *sB = sA + 64 * 128;
  const attn_bf16 *X = m16 + 2 * PROBE_BF16, *Y = m16 + 3 * PROBE_BF16;
  for (int i = threadIdx.x; i < 64 * 64; i += 128) { /* row k, element m (or n) */
    const int k = i / 64, e = i % 64;
    const size_t off = (size_t)k * 128 + (((e / 8) ^ (k % 8)) * 16) + (e % 8) * 2;
    probe_sts16(sA, off, X[k * 128 + e]);
    probe_sts16(sB, off, Y[k * 128 + e]);
  }
  attn_fence_proxy_async();
  __syncthreads();
  float d[32];
  probe_ss64<true>(d, attn_wgmma_desc_sw128(sA, 64 * 128, 1024), attn_wgmma_desc_sw128(sB, 64 * 128, 1024), 128);
  probe_check<64>(d, res, [&](int row, int col) {
    float s = 0.0f;
    for (int k = 0; k < 64; k++)
      s += __bfloat162float(X[k * 128 + row]) * __bfloat162float(Y[k * 128 + col]);
    return s;
  });
#else
  (void)m16, (void)res;
#endif
}

/* e4m3_ss (rs = 0) and e4m3_rs (rs = 1): A = m8[0] [64][32], B(k, n) =
 * m8[1] [n][k] for n < 128, K-major 8-bit. */
__global__ void __launch_bounds__(128) attn_probe_e4m3_kernel(const uint8_t *m8, ProbeResult *res, int rs) {
#if ATTN_HAS_WGMMA && ATTN_HAS_E4M3_MMA
  ATTN_DYNAMIC_SMEM(uint8_t, smem);
  uint8_t *sA = smem, *sB = smem + 64 * 32;
  for (int i = threadIdx.x; i < 128 * 32; i += 128) {
    const int r = i / 32, k = i % 32;
    /* (r % 8) 16 + (r / 8) SBO 256 + (k % 16) + (k / 16) LBO 128 */
    const size_t off = (r % 8) * 16 + (r / 8) * 256 + (k % 16) + (k / 16) * 128;
    if (r < 64)
      attn_sts_u8_for_wgmma(sA + off, m8[i]);
    attn_sts_u8_for_wgmma(sB + off, m8[PROBE_E4M3 + i]);
  }
  attn_fence_proxy_async();
  __syncthreads();
  /* the m16n8k32 8-bit A fragment of rows 16 warp..: register j holds
   * row g (j even) or g + 8 (j odd), columns 4t.. (j < 2) or 16 + 4t..,
   * lowest column in the lowest byte */
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  uint32_t a[4];
  for (int j = 0; j < 4; j++) {
    const int row = 16 * warp + g + 8 * (j & 1), col = 4 * t + 16 * (j >> 1);
    a[j] = (uint32_t)m8[row * 32 + col] | (uint32_t)m8[row * 32 + col + 1] << 8 |
           (uint32_t)m8[row * 32 + col + 2] << 16 | (uint32_t)m8[row * 32 + col + 3] << 24;
  }
  float d[64];
  attn_wgmma_fence();
  if (rs)
    AttnWgmmaE4m3<128>::rs(d, a, attn_wgmma_desc(sB, 128, 256), false);
  else
    AttnWgmmaE4m3<128>::ss(d, attn_wgmma_desc(sA, 128, 256), attn_wgmma_desc(sB, 128, 256), false);
  attn_wgmma_commit();
  attn_wgmma_wait<0>();
  attn_wgmma_pin<64>(d);
  attn_wgmma_pin<4>(a);
  const attn_e4m3 *A = reinterpret_cast<const attn_e4m3 *>(m8), *B = A + PROBE_E4M3;
  probe_check<128>(d, res, [&](int row, int col) {
    float s = 0.0f;
    for (int k = 0; k < 32; k++)
      s += float(A[row * 32 + k]) * float(B[col * 32 + k]);
    return s;
  });
#else
  (void)m8, (void)res, (void)rs;
#endif
}

/* tma_sw128_e4m3 (k = 128) and tma_sw64_e4m3 (k = 64): S[64][64] = Q K^T
 * with Q = m8[0] and K = m8[1] as [64 tokens][k] (row stride 128 bytes:
 * the tensor maps' ld), each one TMA box of k bytes a row, swizzled by k
 * bytes; K-major descriptors in mode 1 or 2 (SBO 8 rows), k-steps of 32
 * bytes along the row (+2). */
template <int k>
__global__ void __launch_bounds__(128)
    attn_probe_tma_e4m3_kernel(const uint8_t *m8, ProbeResult *res, const __grid_constant__ AttnTmaMaps maps) {
#if ATTN_HAS_WGMMA && ATTN_HAS_E4M3_MMA
  ATTN_DYNAMIC_SMEM(unsigned char, raw);
  uint8_t *sQ = attn_align_smem_1024(raw), *sK = sQ + 64 * 128;
  uint64_t *bar = reinterpret_cast<uint64_t *>(sK + 64 * 128);
  probe_tma_two(bar, 2 * 64 * k, sQ, &maps.q, 0, sK, &maps.k, 0);
  const uint64_t qdesc = k == 128 ? attn_wgmma_desc_sw128(sQ, 16, 1024) : attn_wgmma_desc_sw64(sQ, 16, 512);
  const uint64_t kdesc = k == 128 ? attn_wgmma_desc_sw128(sK, 16, 1024) : attn_wgmma_desc_sw64(sK, 16, 512);
  float d[32];
  attn_wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < k / 32; kk++)
    AttnWgmmaE4m3<64>::ss(d, qdesc + 2 * kk, kdesc + 2 * kk, kk > 0);
  attn_wgmma_commit();
  attn_wgmma_wait<0>();
  attn_wgmma_pin<32>(d);
  const attn_e4m3 *Q = reinterpret_cast<const attn_e4m3 *>(m8), *K = Q + PROBE_E4M3;
  probe_check<64>(d, res, [&](int row, int col) {
    float s = 0.0f;
    for (int i = 0; i < k; i++)
      s += float(Q[row * 128 + i]) * float(K[col * 128 + i]);
    return s;
  });
#else
  (void)m8, (void)res, (void)maps;
#endif
}

/* One of the two: its tensor maps (rows of k bytes, a row stride of 128),
 * its shared memory, the launch; the result into *res. */
template <int k> int probe_tma_e4m3_launch(const uint8_t *m8, ProbeResult *res, const char *what) {
  const size_t smem = 1024 + 2 * 64 * 128 + 16;
  AttnTmaMaps maps;
  MB_TRY(attn_tma_map_rows(&maps.q, m8, 1, 64, 1, k, 128, 64, "the probe's e4m3 Q"));
  MB_TRY(attn_tma_map_rows(&maps.k, m8 + PROBE_E4M3, 1, 64, 1, k, 128, 64, "the probe's e4m3 K"));
  auto *kernel = attn_probe_tma_e4m3_kernel<k>;
  MB_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  ATTN_LAUNCH(kernel, 1, 128, smem, 0, m8, res, maps);
  ATTN_LAUNCH_CHECK(what);
  return MB_OK;
}

} // namespace

size_t mb_cuda_attn_hopper_probe_workspace(void) {
  return 4 * PROBE_BF16 * sizeof(attn_bf16) + 2 * PROBE_E4M3 + PROBES * sizeof(ProbeResult) + 256;
}

int mb_cuda_attn_hopper_probe(void *workspace, size_t bytes, char *report, size_t report_len, int *failed) {
  if (!workspace || !failed || (report_len && !report))
    return MB_ERR(MB_EINVAL, "cuda attention probe: NULL workspace, report or result pointer");
  if (bytes < mb_cuda_attn_hopper_probe_workspace())
    return MB_ERR(MB_EINVAL, "cuda attention probe: workspace of %zu bytes, need %zu", bytes,
                  mb_cuda_attn_hopper_probe_workspace());
  int ok = 0;
  MB_TRY(attn_hopper_fwd_runs(&ok));
  if (!ok)
    return MB_ERR(MB_EUNSUPPORTED, "cuda attention probe: the wgmma building blocks need an sm_90 GPU and a build "
                                   "for sm_90a (MAMBERT_CUDA_ARCHS)");
  /* workspace: the bf16 inputs, the e4m3 inputs, the results (16-byte aligned pieces) */
  attn_bf16 *m16 = (attn_bf16 *)(((uintptr_t)workspace + 255) & ~(uintptr_t)255);
  uint8_t *m8 = (uint8_t *)(m16 + 4 * PROBE_BF16);
  ProbeResult *res = (ProbeResult *)(m8 + 2 * PROBE_E4M3);
  ATTN_LAUNCH(attn_probe_init_kernel, 16, 256, 0, 0, m16, m8, res);
  ATTN_LAUNCH_CHECK("attn_probe_init_kernel");
  const size_t nosw_smem = (64 + 128) * 16 * 2;
  ATTN_LAUNCH(attn_probe_nosw_kernel, 1, 128, nosw_smem, 0, m16, &res[0], 0);
  ATTN_LAUNCH_CHECK("attn_probe_nosw_kernel (ss)");
  ATTN_LAUNCH(attn_probe_nosw_kernel, 1, 128, nosw_smem, 0, m16, &res[1], 1);
  ATTN_LAUNCH_CHECK("attn_probe_nosw_kernel (rs_mn)");
  AttnTmaMaps maps;
  /* Q, K: [64 tokens][1 head][64] (row stride 128); V: [64][1][128] */
  MB_TRY(attn_tma_map_rows(&maps.q, m16 + 2 * PROBE_BF16, 2, 64, 1, 64, 128, 64, "the probe's Q"));
  MB_TRY(attn_tma_map_rows(&maps.k, m16 + 3 * PROBE_BF16, 2, 64, 1, 64, 128, 64, "the probe's K"));
  MB_TRY(attn_tma_map_rows(&maps.v, m16 + PROBE_BF16, 2, 64, 1, 128, 128, 64, "the probe's V"));
  const size_t tma_smem = 1024 + 3 * 64 * 64 * 2 + 16;
  auto *tma_kernel = attn_probe_tma_kernel;
  MB_CUDA_TRY(cudaFuncSetAttribute(tma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)tma_smem));
  ATTN_LAUNCH(tma_kernel, 1, 128, tma_smem, 0, m16, &res[2], 0, maps);
  ATTN_LAUNCH_CHECK("attn_probe_tma_kernel (tma_sw128)");
  ATTN_LAUNCH(tma_kernel, 1, 128, tma_smem, 0, m16, &res[3], 1, maps);
  ATTN_LAUNCH_CHECK("attn_probe_tma_kernel (tma_sw128_mn)");
  ATTN_LAUNCH(attn_probe_e4m3_kernel, 1, 128, (64 + 128) * 32, 0, m8, &res[4], 0);
  ATTN_LAUNCH_CHECK("attn_probe_e4m3_kernel (ss)");
  ATTN_LAUNCH(attn_probe_e4m3_kernel, 1, 128, (64 + 128) * 32, 0, m8, &res[5], 1);
  ATTN_LAUNCH_CHECK("attn_probe_e4m3_kernel (rs)");
  const size_t mn_smem = 1024 + 2 * 64 * 128;
  auto *mn_kernel = attn_probe_sw128_mn_kernel;
  MB_CUDA_TRY(cudaFuncSetAttribute(mn_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)mn_smem));
  ATTN_LAUNCH(mn_kernel, 1, 128, mn_smem, 0, m16, &res[6]);
  ATTN_LAUNCH_CHECK("attn_probe_sw128_mn_kernel (sw128_mn_ab)");
  /* e4m3 Q, K: [64 tokens][1 head][128 or 64] (row stride 128 bytes) */
  MB_TRY(probe_tma_e4m3_launch<128>(m8, &res[7], "attn_probe_tma_e4m3_kernel (tma_sw128_e4m3)"));
  MB_TRY(probe_tma_e4m3_launch<64>(m8, &res[8], "attn_probe_tma_e4m3_kernel (tma_sw64_e4m3)"));
  ProbeResult host[PROBES];
  MB_TRY(attn_copy_to_host(host, res, sizeof host));
  *failed = 0;
  size_t used = 0;
  for (int p = 0; p < PROBES; p++) {
    char *dst = report_len > used ? report + used : NULL;
    const size_t cap = report_len > used ? report_len - used : 0;
    int w;
    if (host[p].bad) {
      ++*failed;
      w = snprintf(dst, cap, "%s: %llu of the product's elements wrong, first (%d, %d): %g, want %g\n",
                   probe_names[p], host[p].bad, host[p].row, host[p].col, (double)host[p].got,
                   (double)host[p].want);
    } else {
      w = snprintf(dst, cap, "%s: exact\n", probe_names[p]);
    }
    if (w > 0)
      used += (size_t)w;
  }
  return MB_OK;
}
