/* test_vecmath.c (ctest: vecmath_accuracy): the vectorisable float exp,
 * log1p, softplus, sigmoid, normal CDF / density and GELU (with its
 * derivative) of kernels/cpu/vecmath.h against libm in
 * double, over a dense sweep of their input ranges, in ulps of the float
 * result; and the special values (-inf -> 0, +inf, NaN, the flush below
 * -86.9, the softplus threshold). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <float.h>
#include <math.h>

#include "kernels/cpu/vecmath.h"

/* |got - want| in units of the float spacing at want. */
static double ulps(float got, double want) {
  const double spacing = (double)nextafterf((float)fabs(want), INFINITY) - (double)(float)fabs(want);
  return fabs((double)got - want) / (spacing > 0 ? spacing : FLT_MIN);
}

static double sweep(float lo, float hi, int steps, double (*err)(float)) {
  double worst = 0;
  for (int i = 0; i <= steps; i++) {
    const float x = lo + (hi - lo) * (float)i / (float)steps;
    const double e = err(x);
    if (!(e <= worst))
      worst = e;
  }
  return worst;
}

static double err_exp(float x) { return ulps(mb_expf(x), exp((double)x)); }
static double err_log1p(float x) { return ulps(mb_log1pf_unit(x), log1p((double)x)); }
static double err_softplus(float x) {
  const double want = x > 20 ? (double)x : log1p(exp((double)x));
  return ulps(mb_softplusf(x), want);
}
static double err_sigmoid(float x) { return ulps(mb_sigmoidf(x), 1 / (1 + exp(-(double)x))); }
static double normcdf(double x) { return 0.5 * erfc(-x / sqrt(2.0)); }
static double normpdf(double x) { return exp(-0.5 * x * x) / sqrt(2 * M_PI); }
static double err_normcdf(float x) {
  float pdf;
  return ulps(mb_normcdf_pdff(x, &pdf), normcdf(x));
}
static double err_normpdf(float x) {
  float pdf;
  (void)mb_normcdf_pdff(x, &pdf);
  return ulps(pdf, normpdf(x));
}
static double err_gelu(float x) { return ulps(mb_geluf(x), (double)x * normcdf(x)); }
/* GELU's derivative crosses 0 near x = -0.75: its error is counted in ulps
 * of the larger of its two terms, Phi(x) and |x| phi(x). */
static double err_gelu_grad(float x) {
  const double cdf = normcdf(x), xpdf = (double)x * normpdf(x);
  const float scale = (float)(cdf > fabs(xpdf) ? cdf : fabs(xpdf));
  const double spacing = (double)nextafterf(scale, INFINITY) - (double)scale;
  return fabs((double)mb_gelu_gradf(x) - (cdf + xpdf)) / (spacing > 0 ? spacing : FLT_MIN);
}

static void test_accuracy(void **state) {
  (void)state;
  const double e_exp = sweep(-86.9f, 88.72f, 2000000, err_exp);
  const double e_exp_small = sweep(-1e-3f, 1e-3f, 200000, err_exp);
  const double e_log = sweep(0.0f, 1.0f, 1000000, err_log1p);
  const double e_log_tiny = sweep(0.0f, 1e-6f, 100000, err_log1p);
  const double e_sp = sweep(-80.0f, 30.0f, 1000000, err_softplus);
  const double e_sig = sweep(-80.0f, 80.0f, 1000000, err_sigmoid);
  /* Phi and GELU down to x = -12.5 (Phi = 3.7e-36; below ~-13 the result leaves float's normal range) */
  const double e_cdf = sweep(-12.5f, 9.0f, 1000000, err_normcdf);
  const double e_pdf = sweep(-12.5f, 12.5f, 1000000, err_normpdf);
  const double e_gelu = sweep(-12.5f, 9.0f, 1000000, err_gelu);
  const double e_ggrad = sweep(-12.5f, 9.0f, 1000000, err_gelu_grad);
  print_message("vecmath max error in ulps: exp %.2f (near 0: %.2f), log1p %.2f (tiny: %.2f), softplus %.2f, "
                "sigmoid %.2f, normcdf %.2f, normpdf %.2f, gelu %.2f, gelu' %.2f\n",
                e_exp, e_exp_small, e_log, e_log_tiny, e_sp, e_sig, e_cdf, e_pdf, e_gelu, e_ggrad);
  assert_true(e_exp <= 2.0);
  assert_true(e_exp_small <= 2.0);
  assert_true(e_log <= 3.0);
  assert_true(e_log_tiny <= 3.0);
  assert_true(e_sp <= 4.0);
  assert_true(e_sig <= 4.0);
  assert_true(e_cdf <= 8.0);
  assert_true(e_pdf <= 4.0);
  assert_true(e_gelu <= 8.0);
  assert_true(e_ggrad <= 8.0);
}

static void test_special(void **state) {
  (void)state;
  assert_true(mb_expf(-INFINITY) == 0.0f);
  assert_true(mb_expf(0.0f) == 1.0f);
  assert_true(mb_expf(-87.0f) == 0.0f); /* flushed, documented */
  assert_true(mb_expf(-86.8f) > 0.0f);
  assert_true(isinf(mb_expf(89.0f)) && mb_expf(89.0f) > 0);
  assert_true(isinf(mb_expf(INFINITY)));
  assert_true(isfinite(mb_expf(88.7f)) && mb_expf(88.7f) > 3e38f);
  assert_true(isnan(mb_expf(NAN)));
  assert_true(mb_expf(-1e30f) == 0.0f);
  assert_true(mb_softplusf(25.0f) == 25.0f);
  assert_true(mb_softplusf(20.5f) == 20.5f);
  assert_true(fabsf(mb_softplusf(19.5f) - 19.5f) < 1e-6f);
  assert_true(mb_softplusf(-100.0f) == 0.0f);
  assert_true(mb_sigmoidf(-100.0f) == 0.0f && mb_sigmoidf(100.0f) == 1.0f);
  assert_true(mb_softplus(21.0) == 21.0);
  float pdf;
  assert_true(mb_normcdf_pdff(0.0f, &pdf) == 0.5f && fabsf(pdf - 0.39894228f) < 1e-7f);
  assert_true(mb_normcdf_pdff(-20.0f, &pdf) == 0.0f && pdf == 0.0f);
  assert_true(mb_normcdf_pdff(20.0f, &pdf) == 1.0f && pdf == 0.0f);
  assert_true(mb_normcdf_pdff(INFINITY, &pdf) == 1.0f);
  assert_true(mb_normcdf_pdff(-INFINITY, &pdf) == 0.0f);
  assert_true(isnan(mb_normcdf_pdff(NAN, &pdf)) && isnan(pdf));
  assert_true(mb_geluf(30.0f) == 30.0f && mb_geluf(-30.0f) == 0.0f && mb_geluf(0.0f) == 0.0f);
  assert_true(isnan(mb_geluf(NAN)) && isnan(mb_gelu_gradf(NAN)));
  assert_true(mb_gelu_gradf(30.0f) == 1.0f && mb_gelu_gradf(-30.0f) == 0.0f && mb_gelu_gradf(0.0f) == 0.5f);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_accuracy), cmocka_unit_test(test_special)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
