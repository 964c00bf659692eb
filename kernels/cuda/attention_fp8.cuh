/* attention_fp8.cuh: the pieces every e4m3 attention forward shares
 * (attention_flash_fp8.cu's mma.sync and wgmma kernels, and the
 * warp-specialised one in attention_hopper_fwd.cu): the permuted key order
 * of P and V^T, P's A fragments, the descales, and V^T made in shared
 * memory from V as it comes (8-bit wgmma operands are K-major only, so P V
 * needs V transposed). The reasons are in attention_flash_fp8.cu's header.
 */
#ifndef MB_KERNELS_CUDA_ATTENTION_FP8_CUH
#define MB_KERNELS_CUDA_ATTENTION_FP8_CUH

#include "kernels/cuda/attention_common.cuh"

namespace {

#if ATTN_HAS_E4M3_MMA
/* Where physical key p (0..31 within a 32-key chunk) sits in P's and V^T's
 * k order: key 8*tile + 2t + e (tile 0..3, t 0..3, e 0..1) goes to
 * 16*(tile/2) + 4t + 2*(tile%2) + e. */
__device__ __forceinline__ int fp8_key_slot(int p) {
  const int tile = p >> 3, t = (p >> 1) & 3, e = p & 1;
  return ((tile >> 1) << 4) + 4 * t + ((tile & 1) << 1) + e;
}

/* four floats -> four e4m3 bytes (x0 in the lowest), saturating */
__device__ __forceinline__ uint32_t fp8_pack4(float x0, float x1, float x2, float x3) {
  const uint32_t lo = __nv_cvt_float2_to_fp8x2(make_float2(x0, x1), __NV_SATFINITE, __NV_E4M3);
  const uint32_t hi = __nv_cvt_float2_to_fp8x2(make_float2(x2, x3), __NV_SATFINITE, __NV_E4M3);
  return lo | (hi << 16);
}

/* P's fp8 A fragment for one k-step of 32 key slots from S's C fragments of
 * its four n8 tiles t[0..3] (keys in fp8_key_slot's order). */
__device__ __forceinline__ void fp8_c_to_a(const float (*t)[4], uint32_t (&a)[4]) {
  a[0] = fp8_pack4(t[0][0], t[0][1], t[1][0], t[1][1]); /* row g,   slots 4t..4t+3 */
  a[1] = fp8_pack4(t[0][2], t[0][3], t[1][2], t[1][3]); /* row g+8, slots 4t..4t+3 */
  a[2] = fp8_pack4(t[2][0], t[2][1], t[3][0], t[3][1]); /* row g,   slots 16+4t.. */
  a[3] = fp8_pack4(t[2][2], t[2][3], t[3][2], t[3][3]); /* row g+8, slots 16+4t.. */
}

/* The per-tensor descales folded into the softmax (qk: scale x q and k
 * descales; qk_log2 = qk log2(e)) and the output (vds: v's descale). */
struct Fp8Scales {
  float qk, qk_log2, vds;
};
__device__ __forceinline__ Fp8Scales fp8_scales(const AttnArgs &a) {
  const float qk = a.scale * (a.q_descale ? *a.q_descale : 1.0f) * (a.k_descale ? *a.k_descale : 1.0f);
  return {qk, qk * ATTN_LOG2E, a.v_descale ? *a.v_descale : 1.0f};
}

/* V^T from the V tile in shared memory (sV: row-major, ld bytes per key),
 * one block of 16 keys (k0.., k0 % 16 == 0) x 32 dims (d0.., d0 % 32 == 0)
 * per call, with one ldmatrix.x4.trans, four byte permutes and four 32-bit
 * stores per lane, in place of 32 single-byte stores (which met 8-way bank
 * conflicts: ATTENTION.md). ldmatrix.trans moves 16-bit pairs: lane 4 j + q
 * receives, from an 8x8 matrix of keys k.. and dims d.., dims d + 2j, d + 2j
 * + 1 of keys k + 2q and k + 2q + 1. With the matrices of keys k0.. and k0 +
 * 8.. that makes keys {2q, 2q + 1, 8 + 2q, 9 + 2q}, in the order
 * fp8_key_slot gives them slots k0 + 4q .. k0 + 4q + 3: one byte permute
 * per dim is a word of V^T. store(dim, slot, word) writes it; lanes with j
 * >= 4 store their odd dim first, so that each store instruction meets 8
 * residues of dim mod 8 x 4 slot words, which both V^T layouts spread over
 * the 32 banks. */
template <int SW = 0, typename Store>
__device__ __forceinline__ void fp8_vt_block(const uint8_t *sV, int ld, int k0, int d0, int lane, Store store) {
  uint32_t r[4]; /* matrices: keys k0.. dims d0..; k0+8.., d0..; k0.., d0+16..; k0+8.., d0+16.. */
  attn_ldsm_x4_trans(r, sV + attn_swizzle_off<SW>((k0 + (lane & 15)) * ld + d0 + 16 * (lane >> 4)));
  const int j = lane >> 2, odd_first = j >= 4;
  const int slot = (k0 & ~31) + fp8_key_slot((k0 & 31) + 2 * (lane & 3)); /* = k0 + 4 (lane % 4) */
#pragma unroll
  for (int h = 0; h < 2; h++) {
    const uint32_t even = attn_prmt(r[2 * h], r[2 * h + 1], 0x6420), odd = attn_prmt(r[2 * h], r[2 * h + 1], 0x7531);
    const int dim = d0 + 16 * h + 2 * j;
    store(dim + odd_first, slot, odd_first ? odd : even);
    store(dim + 1 - odd_first, slot, odd_first ? even : odd);
  }
}

/* The whole BK x D tile, its 16 x 32 blocks shared out over the NW warps.
 * SW: V's rows as TMA wrote them with a 64- or 128-byte swizzle (0: none;
 * attn_swizzle_off), which permutes whole 16-byte chunks, so each lane's
 * ldmatrix row stays one chunk. */
template <int BK, int D, int NW, int SW = 0, typename Store>
__device__ __forceinline__ void fp8_vt_tile(const uint8_t *sV, int ld, int warp, int lane, Store store) {
  constexpr int NB = (BK / 16) * (D / 32);
  static_assert(NB % NW == 0, "every warp transposes as many blocks");
#pragma unroll
  for (int i = 0; i < NB / NW; i++) {
    const int b = warp + i * NW;
    fp8_vt_block<SW>(sV, ld, (b % (BK / 16)) * 16, (b / (BK / 16)) * 32, lane, store);
  }
}

/* The bytes of the V^T word at key slots slot .. slot + 3 (slot % 4 == 0)
 * whose keys (fp8_key_slot's inverse: key 8 tile + 2 t + e of the slot's
 * 32-key chunk) are below `valid`: 0xff each, 0 for the others. Keys past
 * a sequence's end are whatever TMA read there (the next sequence, or
 * bytes nobody wrote: maybe NaN), and P = 0 does not hide NaN. */
__device__ __forceinline__ uint32_t fp8_vt_word_mask(int slot, int valid) {
  const int key0 = (slot & ~31) + 16 * ((slot >> 4) & 1) + 2 * ((slot >> 2) & 3); /* slot's tile pair, t */
  uint32_t m = 0;
#pragma unroll
  for (int b = 0; b < 4; b++) /* byte b: tile 2 (slot / 16 % 2) + b / 2, e = b % 2 */
    m |= key0 + 8 * (b >> 1) + (b & 1) < valid ? 0xffu << (8 * b) : 0u;
  return m;
}
#endif

/* Where V^T[dim][slot] lives in the core-matrix layout (rows = head dims,
 * BK key slots per row; the K-major B of P V): (dim / 8) 8 BK + (slot / 16)
 * 128 + (dim % 8) 16 + slot % 16. */
template <int BK> __device__ __forceinline__ int fp8_vt_core_at(int dim, int slot) {
  return (dim >> 3) * (8 * BK) + (slot >> 4) * 128 + (dim & 7) * 16 + (slot & 15);
}

} // namespace

#endif
