/* shuffle.c: unbiased bounded draws and Fisher-Yates over the counter-based
 * stream of shuffle.h. */
#include "data/shuffle.h"

uint64_t mb_shuffle_below(uint64_t key, uint64_t *counter, uint64_t bound) {
  uint64_t threshold = (0 - bound) % bound; /* 2^64 mod bound */
  for (;;) {
    uint64_t r = mb_shuffle_u64(key, (*counter)++);
    if (r >= threshold)
      return r % bound;
  }
}

void mb_shuffle_array(uint64_t key, int64_t *a, int64_t n) {
  uint64_t ctr = 0;
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)mb_shuffle_below(key, &ctr, (uint64_t)i + 1);
    int64_t t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
}

void mb_shuffle_permutation(uint64_t key, int64_t *perm, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    perm[i] = i;
  mb_shuffle_array(key, perm, n);
}
