/* shuffle.h: random permutations for the data loader, from runtime/philox.h.
 *
 * A stream is one Philox4x32-10 stream (philox.h) whose 64-bit seed is
 * derived from the user's seed and a few labels (epoch, purpose, rank...) by
 * splitmix64's mixing function; its 64-bit value number c is the stream's u32
 * elements 2c (low half) and 2c+1 (high half). Only integer arithmetic, so
 * the same seed gives the same permutations on every platform and compiler,
 * and any epoch's order is computed directly, without replaying earlier ones
 * (which is what makes resuming exact).
 */
#ifndef MB_DATA_SHUFFLE_H
#define MB_DATA_SHUFFLE_H

#include <stdint.h>

#include "runtime/philox.h"

#ifdef __cplusplus
extern "C" {
#endif

/* splitmix64's output function: a bijective 64-bit mix. */
static inline uint64_t mb_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* The Philox seed of the stream labelled (a, b, c) under seed. */
static inline uint64_t mb_shuffle_key(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
  uint64_t k = mb_mix64(seed + 0x9e3779b97f4a7c15ULL);
  k = mb_mix64(k ^ (a + 0x632be59bd9b4e019ULL));
  k = mb_mix64(k ^ (b + 0x8cb92ba72f3d8dd7ULL));
  return mb_mix64(k ^ (c + 0xd1b54a32d192ed03ULL));
}

/* The counter-th 64-bit value of stream key. */
static inline uint64_t mb_shuffle_u64(uint64_t key, uint64_t counter) {
  mb_u32x4 b = mb_philox_block(key, counter >> 1);
  unsigned lane = (unsigned)(counter & 1) * 2;
  return (uint64_t)b.w[lane] | ((uint64_t)b.w[lane + 1] << 32);
}

/* Uniform in [0, bound) (bound >= 1) without modulo bias: values below
 * 2^64 mod bound are rejected. *counter advances by the draws used. */
uint64_t mb_shuffle_below(uint64_t key, uint64_t *counter, uint64_t bound);

/* perm := a uniformly random permutation of 0..n-1 (Fisher-Yates). */
void mb_shuffle_permutation(uint64_t key, int64_t *perm, int64_t n);
/* Shuffle a[0..n) in place (Fisher-Yates). */
void mb_shuffle_array(uint64_t key, int64_t *a, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
