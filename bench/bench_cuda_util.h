/* bench_cuda_util.h: what the GPU benchmarks share beyond bench_util.h:
 * the no-GPU exit and the device line. */
#ifndef MB_BENCH_CUDA_UTIL_H
#define MB_BENCH_CUDA_UTIL_H

#include "bench_util.h"
#include "runtime/cuda_device.h"

/* Exit 77 with the reason when no GPU can be used; else fill the device
 * description (for the table and the JSON). */
static inline void bench_require_gpu(const char *name, char *desc, size_t cap, mb_cuda_device_info *info) {
  int n = 0;
  char why[256];
  if (mb_cuda_device_count(&n, why, sizeof why) != MB_OK || n == 0) {
    printf("%s: no CUDA device (%s): nothing to measure\n", name, why);
    exit(77);
  }
  BCHECK(mb_cuda_device_get_info(0, info));
  mb_cuda_device_describe(info, desc, cap);
}

#endif
