/* shuffle.h: counter-based random numbers for the data loader.
 *
 * Every value is a pure function of (key, counter): splitmix64's finaliser
 * applied to key + counter * golden ratio. Only 64-bit integer arithmetic, so
 * the same seed gives the same permutations on every platform and compiler,
 * and any epoch's order can be recomputed without replaying earlier ones
 * (which is what makes resuming exact).
 *
 * runtime/philox.h (Philox4x32) is being written on another branch; when it
 * lands the loader may switch to it, which changes the permutations (but not
 * their properties). Until then this is self-contained in data/.
 */
#ifndef MB_DATA_SHUFFLE_H
#define MB_DATA_SHUFFLE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* splitmix64's output function: a bijective 64-bit mix. */
static inline uint64_t mb_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* A stream key from a seed and up to three labels (epoch, purpose, rank...). */
static inline uint64_t mb_shuffle_key(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
  uint64_t k = mb_mix64(seed + 0x9e3779b97f4a7c15ULL);
  k = mb_mix64(k ^ (a + 0x632be59bd9b4e019ULL));
  k = mb_mix64(k ^ (b + 0x8cb92ba72f3d8dd7ULL));
  return mb_mix64(k ^ (c + 0xd1b54a32d192ed03ULL));
}

/* The counter-th 64-bit value of stream key. */
static inline uint64_t mb_shuffle_u64(uint64_t key, uint64_t counter) {
  return mb_mix64(key + counter * 0x9e3779b97f4a7c15ULL);
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
