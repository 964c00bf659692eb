/* philox.h: the Philox4x32-10 counter-based random number generator
 * (Salmon, Moraes, Dror, Shaw, "Parallel Random Numbers: As Easy as 1, 2, 3",
 * SC'11), and the one way mambert turns its output into numbers.
 *
 * Counter-based means element i of a stream is a pure function of
 * (seed, offset + i): no state to carry, so a CPU loop, an OpenMP loop and a
 * CUDA kernel produce the same numbers for the same (seed, offset). The core
 * below is static inline and marked __host__ __device__ under nvcc, so CUDA
 * kernels include this header and call the very same code.
 *
 * The stream for a 64-bit seed:
 *   key     = (seed & 0xffffffff, seed >> 32)
 *   element e (a 64-bit index) lives in block b = e / 4, lane e % 4;
 *   block b = Philox4x32-10(counter = (b & 0xffffffff, b >> 32, 0, 0), key).
 *   (Counter words 2 and 3 are zero: reserved for independent sub-streams.)
 * Element e as a number:
 *   u32:     the word itself.
 *   uniform: (word >> 8) * 2^-24, a float in [0, 1) on a grid of 2^-24;
 *            exact in f32 (no rounding), so bit-identical on CPU and GPU.
 *   normal:  Box-Muller over the lane pairs (0,1) and (2,3) of a block:
 *            u1 = ((w_even >> 8) + 1) * 2^-24 in (0, 1], u2 = uniform(w_odd),
 *            r = sqrt(-2 ln u1); even lane = r cos(2 pi u2), odd = r sin(2 pi u2).
 *            |normal| <= 5.77 (tails beyond are cut at probability ~1e-8).
 *            Computed in f32 with the platform's logf/sinf/cosf, so CPU and
 *            GPU agree to a few ulps, not bit for bit.
 * A uniform and a normal draw at the same (seed, offset) come from the same
 * bits: consumers take disjoint offsets (mb_philox_take).
 */
#ifndef MB_RUNTIME_PHILOX_H
#define MB_RUNTIME_PHILOX_H

#include <stddef.h>
#include <stdint.h>

#ifndef MB_HOST_DEVICE
#if defined(__CUDACC__)
#define MB_HOST_DEVICE __host__ __device__
#else
#define MB_HOST_DEVICE
#endif
#endif

#include <math.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  uint32_t w[4];
} mb_u32x4;

/* Philox4x32 with an explicit round count (the tests check 7 and 10 against
 * the Random123 known-answer vectors). Constants from the paper. */
MB_HOST_DEVICE static inline mb_u32x4 mb_philox4x32_rounds(mb_u32x4 ctr, uint32_t k0, uint32_t k1,
                                                           int rounds) {
  for (int r = 0; r < rounds; r++) {
    if (r > 0) { /* bump the key (Weyl sequence) before every round but the first */
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    uint32_t hi0, lo0, hi1, lo1;
#if defined(__CUDA_ARCH__)
    hi0 = __umulhi(0xD2511F53u, ctr.w[0]);
    lo0 = 0xD2511F53u * ctr.w[0];
    hi1 = __umulhi(0xCD9E8D57u, ctr.w[2]);
    lo1 = 0xCD9E8D57u * ctr.w[2];
#else
    uint64_t p0 = (uint64_t)0xD2511F53u * ctr.w[0];
    uint64_t p1 = (uint64_t)0xCD9E8D57u * ctr.w[2];
    hi0 = (uint32_t)(p0 >> 32);
    lo0 = (uint32_t)p0;
    hi1 = (uint32_t)(p1 >> 32);
    lo1 = (uint32_t)p1;
#endif
    mb_u32x4 next;
    next.w[0] = hi1 ^ ctr.w[1] ^ k0;
    next.w[1] = lo1;
    next.w[2] = hi0 ^ ctr.w[3] ^ k1;
    next.w[3] = lo0;
    ctr = next;
  }
  return ctr;
}

MB_HOST_DEVICE static inline mb_u32x4 mb_philox4x32_10(mb_u32x4 ctr, uint32_t k0, uint32_t k1) {
  return mb_philox4x32_rounds(ctr, k0, k1, 10);
}

/* Block b of the stream for `seed` (see the layout above). */
MB_HOST_DEVICE static inline mb_u32x4 mb_philox_block(uint64_t seed, uint64_t block) {
  mb_u32x4 c;
  c.w[0] = (uint32_t)block;
  c.w[1] = (uint32_t)(block >> 32);
  c.w[2] = 0;
  c.w[3] = 0;
  return mb_philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32));
}

/* 32 random bits -> float in [0, 1): the top 24 bits times 2^-24 (exact). */
MB_HOST_DEVICE static inline float mb_philox_u01(uint32_t x) {
  return (float)(x >> 8) * 0x1p-24f;
}

/* 32 random bits -> float in (0, 1]: for logarithms. */
MB_HOST_DEVICE static inline float mb_philox_u01_open0(uint32_t x) {
  return (float)((x >> 8) + 1u) * 0x1p-24f;
}

/* Two standard normals from two words (Box-Muller). */
MB_HOST_DEVICE static inline void mb_philox_box_muller(uint32_t a, uint32_t b, float *n0, float *n1) {
  float r = sqrtf(-2.0f * logf(mb_philox_u01_open0(a)));
  float theta = 6.2831853071795864769f * mb_philox_u01(b);
  *n0 = r * cosf(theta);
  *n1 = r * sinf(theta);
}

/* Element `e` of the stream as a uniform / a standard normal. */
MB_HOST_DEVICE static inline float mb_philox_uniform_at(uint64_t seed, uint64_t e) {
  return mb_philox_u01(mb_philox_block(seed, e >> 2).w[e & 3]);
}

MB_HOST_DEVICE static inline float mb_philox_normal_at(uint64_t seed, uint64_t e) {
  mb_u32x4 r = mb_philox_block(seed, e >> 2);
  unsigned pair = (unsigned)(e & 2);
  float n0, n1;
  mb_philox_box_muller(r.w[pair], r.w[pair + 1], &n0, &n1);
  return (e & 1) ? n1 : n0;
}

/* ---- host side (philox.c): bulk fills, OpenMP-parallel when large ---- */

/* out[i] = element offset + i of the stream, for i < n. */
void mb_philox_fill_u32(uint64_t seed, uint64_t offset, uint32_t *out, size_t n);
/* lo + (hi - lo) * uniform; in [lo, hi) up to the rounding of that expression. */
void mb_philox_fill_uniform(uint64_t seed, uint64_t offset, float *out, size_t n, float lo, float hi);
/* mean + std * normal */
void mb_philox_fill_normal(uint64_t seed, uint64_t offset, float *out, size_t n, float mean, float std);

/* A seed and the next unused offset: each consumer takes a disjoint range. */
typedef struct {
  uint64_t seed;
  uint64_t offset;
} mb_philox_state;

static inline mb_philox_state mb_philox_init(uint64_t seed) {
  mb_philox_state s = {seed, 0};
  return s;
}

/* Reserve n elements: returns the offset to draw them at and advances the
 * state by n rounded up to a whole block (4), so every draw starts on a
 * block boundary (one Philox call per GPU thread of 4 elements). */
static inline uint64_t mb_philox_take(mb_philox_state *s, uint64_t n) {
  uint64_t at = s->offset;
  s->offset += (n + 3) & ~(uint64_t)3;
  return at;
}

#ifdef __cplusplus
}
#endif
#endif
