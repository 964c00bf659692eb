/* test_loss_scaler.c: the dynamic loss scaler's decisions
 * (autograd/loss_scaler.h), step by step against torch.cuda.amp.GradScaler's
 * rules: an overflow skips the step and halves the scale, growth_interval
 * good steps in a row double it, an overflow resets the count. Host logic:
 * the kernel side is in cuda_train, the trainer's use in kill_resume_test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "autograd/loss_scaler.h"

static void test_scaler_sequence(void **state) {
  (void)state;
  mb_loss_scaler s;
  mb_loss_scaler_init(&s, 0);
  assert_true(mb_loss_scaler_scale(&s) == 65536.0);
  s.growth_interval = 3;
  double inv;
  /* overflow: skip, halve */
  assert_int_equal(mb_loss_scaler_update(&s, 1, &inv), 0);
  assert_true(inv == 1.0 / 65536.0);
  assert_true(mb_loss_scaler_scale(&s) == 32768.0);
  /* two good steps: taken with 1/S, scale unchanged */
  for (int i = 0; i < 2; i++) {
    assert_int_equal(mb_loss_scaler_update(&s, 0, &inv), 1);
    assert_true(inv == 1.0 / 32768.0);
    assert_true(mb_loss_scaler_scale(&s) == 32768.0);
  }
  /* an overflow resets the run of good steps */
  assert_int_equal(mb_loss_scaler_update(&s, 1, &inv), 0);
  assert_true(mb_loss_scaler_scale(&s) == 16384.0);
  assert_int_equal(s.bad_steps, 1);
  for (int i = 0; i < 2; i++)
    assert_int_equal(mb_loss_scaler_update(&s, 0, &inv), 1);
  assert_true(mb_loss_scaler_scale(&s) == 16384.0);
  /* the third good step in a row grows the scale after stepping with the old one */
  assert_int_equal(mb_loss_scaler_update(&s, 0, &inv), 1);
  assert_true(inv == 1.0 / 16384.0);
  assert_true(mb_loss_scaler_scale(&s) == 32768.0);
  assert_int_equal(s.steps, 7);
  assert_int_equal(s.skipped, 2);
  assert_int_equal(s.bad_steps, 0);
  /* repeated overflows keep halving */
  for (int i = 0; i < 20; i++)
    assert_int_equal(mb_loss_scaler_update(&s, 1, &inv), 0);
  assert_true(mb_loss_scaler_scale(&s) == 32768.0 / 1048576.0);
  assert_int_equal(s.bad_steps, 20);
}

/* S stays an f32 value: the initial one is rounded, growth stops below the
 * largest f32 (torch keeps S in an f32 tensor and takes only a finite growth) */
static void test_scaler_f32_bounds(void **state) {
  (void)state;
  mb_loss_scaler s;
  mb_loss_scaler_init(&s, 0.1);
  assert_true(s.scale == (double)0.1f && s.scale != 0.1);
  mb_loss_scaler_init(&s, 0x1p126);
  s.growth_interval = 1;
  double inv;
  assert_int_equal(mb_loss_scaler_update(&s, 0, &inv), 1);
  assert_true(mb_loss_scaler_scale(&s) == 0x1p127);
  for (int i = 0; i < 3; i++) /* 2^128 is not an f32: S stays at 2^127 */
    assert_int_equal(mb_loss_scaler_update(&s, 0, &inv), 1);
  assert_true(mb_loss_scaler_scale(&s) == 0x1p127);
  assert_true(inv == 0x1p-127);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_scaler_sequence), cmocka_unit_test(test_scaler_f32_bounds)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
