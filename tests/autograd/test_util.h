/* test_util.h: helpers shared by the autograd tests: a seeded generator,
 * status assertions that print the error message, and small builders. */
#ifndef MB_TESTS_AUTOGRAD_UTIL_H
#define MB_TESTS_AUTOGRAD_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "autograd/autograd.h"
#include "autograd/gradcheck.h"
#include "kernels/cpu/cpu.h"

/* Assert MB_OK, printing the error message otherwise. */
#define ASSERT_OK(expr)                                                              \
  do {                                                                               \
    int rc_ = (expr);                                                                \
    if (rc_ != MB_OK)                                                                \
      fail_msg("%s -> %d (%s): %s", #expr, rc_, mb_status_name(rc_), mb_error_message()); \
  } while (0)

static inline uint64_t tu_next(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
/* Uniform in [-1, 1). */
static inline double tu_unif(uint64_t *s) { return (double)(tu_next(s) >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0; }
static inline int64_t tu_int(uint64_t *s, int64_t lo, int64_t hi) { return lo + (int64_t)(tu_next(s) % (uint64_t)(hi - lo + 1)); }

static inline void tu_fill_f32(float *x, int64_t n, uint64_t *s) {
  for (int64_t i = 0; i < n; i++)
    x[i] = (float)tu_unif(s);
}
static inline void tu_fill_f64(double *x, int64_t n, uint64_t *s) {
  for (int64_t i = 0; i < n; i++)
    x[i] = tu_unif(s);
}

/* Max |a - b| / (|b| + floor). */
static inline double tu_max_rel(const double *a, const double *b, int64_t n, double floor_) {
  double m = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = a[i] - b[i];
    d = d < 0 ? -d : d;
    double r = d / ((b[i] < 0 ? -b[i] : b[i]) + floor_);
    if (r > m || r != r)
      m = r;
  }
  return m;
}

#endif
