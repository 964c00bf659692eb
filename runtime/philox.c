/* philox.c: bulk fills from the Philox4x32-10 stream (philox.h). Each block
 * of 4 elements is one Philox call; blocks are independent, so large fills
 * are split across OpenMP threads with results identical to a serial loop. */
#include "runtime/philox.h"

#define PHILOX_PARALLEL_MIN (1u << 15) /* elements: below this, threads cost more than they save */

/* Elements [offset, offset + n) touch blocks first..first + nblocks - 1; in
 * block blk they are lanes [lo, hi), and lane l goes to out[blk*4 + l - offset]. */
static inline void lanes_of(uint64_t blk, uint64_t offset, size_t n, unsigned *lo, unsigned *hi) {
  uint64_t e0 = blk << 2;
  *lo = e0 < offset ? (unsigned)(offset - e0) : 0u;
  *hi = e0 + 4 > offset + n ? (unsigned)(offset + n - e0) : 4u;
}

void mb_philox_fill_u32(uint64_t seed, uint64_t offset, uint32_t *out, size_t n) {
  if (n == 0)
    return;
  uint64_t first = offset >> 2;
  int64_t nblocks = (int64_t)(((offset + n - 1) >> 2) - first + 1);
#pragma omp parallel for schedule(static) if (n >= PHILOX_PARALLEL_MIN)
  for (int64_t b = 0; b < nblocks; b++) {
    uint64_t blk = first + (uint64_t)b;
    unsigned lo, hi;
    lanes_of(blk, offset, n, &lo, &hi);
    mb_u32x4 r = mb_philox_block(seed, blk);
    for (unsigned l = lo; l < hi; l++)
      out[(blk << 2) + l - offset] = r.w[l];
  }
}

void mb_philox_fill_uniform(uint64_t seed, uint64_t offset, float *out, size_t n, float lo_v, float hi_v) {
  if (n == 0)
    return;
  float span = hi_v - lo_v;
  uint64_t first = offset >> 2;
  int64_t nblocks = (int64_t)(((offset + n - 1) >> 2) - first + 1);
#pragma omp parallel for schedule(static) if (n >= PHILOX_PARALLEL_MIN)
  for (int64_t b = 0; b < nblocks; b++) {
    uint64_t blk = first + (uint64_t)b;
    unsigned lo, hi;
    lanes_of(blk, offset, n, &lo, &hi);
    mb_u32x4 r = mb_philox_block(seed, blk);
    for (unsigned l = lo; l < hi; l++)
      out[(blk << 2) + l - offset] = lo_v + span * mb_philox_u01(r.w[l]);
  }
}

void mb_philox_fill_normal(uint64_t seed, uint64_t offset, float *out, size_t n, float mean, float std) {
  if (n == 0)
    return;
  uint64_t first = offset >> 2;
  int64_t nblocks = (int64_t)(((offset + n - 1) >> 2) - first + 1);
#pragma omp parallel for schedule(static) if (n >= PHILOX_PARALLEL_MIN)
  for (int64_t b = 0; b < nblocks; b++) {
    uint64_t blk = first + (uint64_t)b;
    unsigned lo, hi;
    lanes_of(blk, offset, n, &lo, &hi);
    mb_u32x4 r = mb_philox_block(seed, blk);
    float z[4];
    mb_philox_box_muller(r.w[0], r.w[1], &z[0], &z[1]);
    mb_philox_box_muller(r.w[2], r.w[3], &z[2], &z[3]);
    for (unsigned l = lo; l < hi; l++)
      out[(blk << 2) + l - offset] = mean + std * z[l];
  }
}
