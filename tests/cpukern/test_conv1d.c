/* test_conv1d.c (ctest: conv1d_reference): the depthwise causal conv1d
 * forward against the textbook reference in float64 for widths 1..4, with and
 * without bias and fused SiLU, odd channel counts (across the 64-channel
 * block), L = 1 and L < W; varlen resets (length-1 and empty sequences,
 * budget padding); padded == packed; a hand-computed case pinning the tap
 * order (w[c, W-1] multiplies the current token); f32 against f64; bad
 * descriptors are errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "kernels/cpu/conv1d.h"
#include "tests/cpukern/cpukern_ref.h"
#include "tests/cpukern/cpukern_util.h"

#define TOL_F64 1e-14
#define TOL_F32 1e-6

static double worst_f64 = 0, worst_f32 = 0;

static void check_case(const mb_conv1d_desc *d, int with_bias, uint64_t seed) {
  const size_t nx = (size_t)d->batch * d->seqlen * d->dim, nw = (size_t)d->dim * d->width;
  double *x = tu_alloc(nx), *w = tu_alloc(nw), *b = tu_alloc((size_t)d->dim), *y = tu_alloc(nx), *r = tu_alloc(nx);
  uint64_t s = seed;
  tu_fill(x, nx, 1.0, &s);
  tu_fill(w, nw, 0.5, &s);
  tu_fill(b, (size_t)d->dim, 0.5, &s);
  const double *bias = with_bias ? b : NULL;
  assert_int_equal(mb_cpu_conv1d_fwd_f64(d, x, w, bias, y), MB_OK);
  assert_int_equal(ref_conv1d_fwd_f64(d, x, w, bias, r), MB_OK);
  const double e = tu_normdiff(y, r, nx);
  if (e > worst_f64)
    worst_f64 = e;
  if (!(e <= TOL_F64))
    fail_msg("B=%d L=%d D=%d W=%d silu=%d bias=%d: error %.3g", d->batch, d->seqlen, d->dim, d->width, d->silu,
             with_bias, e);
  /* f32 */
  float *xf = tu_tof(x, nx), *wf = tu_tof(w, nw), *bf = tu_tof(b, (size_t)d->dim), *yf = tu_allocf(nx);
  assert_int_equal(mb_cpu_conv1d_fwd_f32(d, xf, wf, with_bias ? bf : NULL, yf), MB_OK);
  const double ef = tu_normdiff_f(yf, r, nx);
  if (ef > worst_f32)
    worst_f32 = ef;
  if (!(ef <= TOL_F32))
    fail_msg("f32 B=%d L=%d D=%d W=%d: error %.3g", d->batch, d->seqlen, d->dim, d->width, ef);
  void *bufs[] = {x, w, b, y, r, xf, wf, bf, yf};
  for (size_t i = 0; i < 9; i++)
    mb_host_free(bufs[i]);
}

static void test_shapes(void **state) {
  (void)state;
  static const int shapes[][3] = {{1, 1, 1}, {2, 3, 5}, {3, 17, 70}, {1, 40, 130}, {2, 2, 64}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    for (int W = 1; W <= 4; W++)
      for (int silu = 0; silu <= 1; silu++)
        for (int bias = 0; bias <= 1; bias++) {
          mb_conv1d_desc d = {.batch = shapes[i][0], .seqlen = shapes[i][1], .dim = shapes[i][2], .width = W,
                              .silu = silu};
          check_case(&d, bias, 100 * i + 10 * W + 2 * silu + bias);
        }
}

static void test_varlen(void **state) {
  (void)state;
  const int32_t cu[] = {0, 1, 6, 6, 15, 17};
  for (int W = 1; W <= 4; W++)
    for (int silu = 0; silu <= 1; silu++) {
      mb_conv1d_desc d = {.batch = 1, .seqlen = 20, .dim = 67, .width = W, .silu = silu, .cu_seqlens = cu,
                          .nseq = 5};
      check_case(&d, 1, 7 * W + silu);
    }
}

/* y[t] = b + w0*x[t-3] + w1*x[t-2] + w2*x[t-1] + w3*x[t], history zero. */
static void test_tap_order(void **state) {
  (void)state;
  const double x[5] = {1, 10, 100, 1000, 10000}, w[4] = {4, 3, 2, 1}, b = 0.5;
  const double expect[5] = {0.5 + 1, 0.5 + 10 + 2, 0.5 + 100 + 20 + 3, 0.5 + 1000 + 200 + 30 + 4,
                            0.5 + 10000 + 2000 + 300 + 40};
  double y[5];
  mb_conv1d_desc d = {.batch = 1, .seqlen = 5, .dim = 1, .width = 4};
  assert_int_equal(mb_cpu_conv1d_fwd_f64(&d, x, w, &b, y), MB_OK);
  for (int t = 0; t < 5; t++)
    assert_true(y[t] == expect[t]);
  /* packed: a boundary at token 2 restarts the history */
  const int32_t cu[] = {0, 2, 5};
  mb_conv1d_desc dv = {.batch = 1, .seqlen = 5, .dim = 1, .width = 4, .cu_seqlens = cu, .nseq = 2};
  assert_int_equal(mb_cpu_conv1d_fwd_f64(&dv, x, w, &b, y), MB_OK);
  assert_true(y[0] == expect[0] && y[1] == expect[1]);
  assert_true(y[2] == 0.5 + 100 && y[3] == 0.5 + 1000 + 200 && y[4] == 0.5 + 10000 + 2000 + 300);
}

static void test_padded_equals_packed(void **state) {
  (void)state;
  enum { B = 3, L = 9, D = 70, W = 4 };
  const int lens[B] = {9, 1, 5};
  const int32_t cu[] = {0, 9, 10, 15};
  const size_t np = (size_t)B * L * D, T = 17, nv = T * D;
  double *xp = tu_alloc(np), *xv = tu_alloc(nv), *w = tu_alloc(D * W), *b = tu_alloc(D);
  double *yp = tu_alloc(np), *yv = tu_alloc(nv), *dyp = tu_alloc(np), *dyv = tu_alloc(nv);
  double *dxp = tu_alloc(np), *dxv = tu_alloc(nv), *dwp = tu_alloc(D * W), *dwv = tu_alloc(D * W);
  double *dbp = tu_alloc(D), *dbv = tu_alloc(D);
  uint64_t s = 4;
  tu_fill(xp, np, 1, &s);
  tu_fill(dyp, np, 1, &s);
  tu_fill(w, D * W, 1, &s);
  tu_fill(b, D, 1, &s);
  for (int bb = 0; bb < B; bb++) {
    for (int t = lens[bb]; t < L; t++)
      memset(dyp + ((size_t)bb * L + t) * D, 0, D * sizeof(double));
    memcpy(xv + (size_t)cu[bb] * D, xp + (size_t)bb * L * D, (size_t)lens[bb] * D * sizeof(double));
    memcpy(dyv + (size_t)cu[bb] * D, dyp + (size_t)bb * L * D, (size_t)lens[bb] * D * sizeof(double));
  }
  mb_conv1d_desc dp = {.batch = B, .seqlen = L, .dim = D, .width = W, .silu = 1};
  mb_conv1d_desc dv = {.batch = 1, .seqlen = (int)T, .dim = D, .width = W, .silu = 1, .cu_seqlens = cu, .nseq = B};
  assert_int_equal(mb_cpu_conv1d_fwd_f64(&dp, xp, w, b, yp), MB_OK);
  assert_int_equal(mb_cpu_conv1d_fwd_f64(&dv, xv, w, b, yv), MB_OK);
  assert_int_equal(mb_cpu_conv1d_bwd_f64(&dp, xp, w, b, dyp, dxp, dwp, dbp, NULL, 0), MB_OK);
  assert_int_equal(mb_cpu_conv1d_bwd_f64(&dv, xv, w, b, dyv, dxv, dwv, dbv, NULL, 0), MB_OK);
  for (int bb = 0; bb < B; bb++)
    for (int t = 0; t < lens[bb]; t++)
      for (int c = 0; c < D; c++) {
        const size_t ip = ((size_t)bb * L + t) * D + c, iv = ((size_t)cu[bb] + t) * D + c;
        assert_true(yp[ip] == yv[iv]);
        assert_true(fabs(dxp[ip] - dxv[iv]) <= 1e-14 * (1 + fabs(dxp[ip])));
      }
  for (int i = 0; i < D * W; i++)
    assert_true(fabs(dwp[i] - dwv[i]) <= 1e-13 * (1 + fabs(dwp[i])));
  for (int i = 0; i < D; i++)
    assert_true(fabs(dbp[i] - dbv[i]) <= 1e-13 * (1 + fabs(dbp[i])));
  for (size_t i = 15 * D; i < nv; i++) /* budget padding */
    assert_true(yv[i] == 0 && dxv[i] == 0);
  void *bufs[] = {xp, xv, w, b, yp, yv, dyp, dyv, dxp, dxv, dwp, dwv, dbp, dbv};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    mb_host_free(bufs[i]);
}

static void test_bad_input(void **state) {
  (void)state;
  double x[8] = {0}, y[8];
  mb_conv1d_desc d = {.batch = 1, .seqlen = 4, .dim = 2, .width = 5};
  assert_int_equal(mb_cpu_conv1d_fwd_f64(&d, x, x, NULL, y), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "width 5"));
  d.width = 0;
  assert_int_equal(mb_cpu_conv1d_fwd_f64(&d, x, x, NULL, y), MB_EINVAL);
  d.width = 2;
  const int32_t cu[] = {1, 4};
  d.cu_seqlens = cu;
  d.nseq = 1;
  assert_int_equal(mb_cpu_conv1d_fwd_f64(&d, x, x, NULL, y), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "cu_seqlens[0]"));
  d.cu_seqlens = NULL;
  assert_int_equal(mb_cpu_conv1d_fwd_f64(&d, NULL, x, NULL, y), MB_EINVAL);
}

static int report(void **state) {
  (void)state;
  print_message("conv1d_reference: max normwise error f64 %.3g (bound %.0g), f32 %.3g (bound %.0g)\n", worst_f64,
                TOL_F64, worst_f32, TOL_F32);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shapes), cmocka_unit_test(test_varlen), cmocka_unit_test(test_tap_order),
      cmocka_unit_test(test_padded_equals_packed), cmocka_unit_test(test_bad_input),
  };
  return cmocka_run_group_tests(tests, NULL, report);
}
