/* test_optim.c: AdamW (with a warm-up/decay schedule and gradient clipping)
 * and SGD (momentum, Nesterov, weight decay) against trajectories recorded
 * from torch.optim by tools/make_adamw_fixture.py
 * (tests/fixtures/autograd/optim.json); LR schedules against transformers'
 * formulas; a ZeRO-style split update equal to the full update. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

#define FIXTURE "tests/fixtures/autograd/optim.json"
static const char *names[3] = {"w", "b", "k"};

static json_t *load_fixture(void) {
  json_error_t err;
  json_t *j = json_load_file(FIXTURE, 0, &err);
  if (!j)
    fail_msg("%s:%d: %s", FIXTURE, err.line, err.text);
  return j;
}

static double num(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  if (!json_is_number(v))
    fail_msg("fixture: '%s' missing or not a number", key);
  return json_number_value(v);
}

/* Copy a named float array into a parameter's slot of a flat buffer. */
static void load_into(json_t *obj, const char *name, mb_params *p, float *flat) {
  json_t *arr = json_object_get(obj, name);
  const mb_param_info *pi = mb_params_info(p, mb_params_find(p, name));
  assert_non_null(arr);
  assert_int_equal((int64_t)json_array_size(arr), pi->numel);
  for (int64_t i = 0; i < pi->numel; i++)
    flat[pi->offset + i] = (float)json_number_value(json_array_get(arr, (size_t)i));
}

/* max |ours - torch| / (|torch| + 1e-6) over every parameter */
static double compare(json_t *obj, mb_params *p) {
  double worst = 0;
  const float *data = mb_params_data(p);
  for (int n = 0; n < 3; n++) {
    json_t *arr = json_object_get(obj, names[n]);
    const mb_param_info *pi = mb_params_info(p, mb_params_find(p, names[n]));
    for (int64_t i = 0; i < pi->numel; i++) {
      double ref = json_number_value(json_array_get(arr, (size_t)i)), got = data[pi->offset + i];
      double e = fabs(got - ref) / (fabs(ref) + 1e-6);
      if (e > worst)
        worst = e;
    }
  }
  return worst;
}

static mb_params *make_store(json_t *fx, json_t *run) {
  mb_params *p;
  ASSERT_OK(mb_params_new(MB_F32, &p));
  json_t *shapes = json_object_get(fx, "shapes");
  for (int n = 0; n < 3; n++) {
    json_t *s = json_object_get(shapes, names[n]);
    int64_t d[MB_MAX_DIMS];
    for (size_t i = 0; i < json_array_size(s); i++)
      d[i] = json_integer_value(json_array_get(s, i));
    ASSERT_OK(mb_params_add(p, names[n], mb_shape_of((int)json_array_size(s), d), NULL));
  }
  ASSERT_OK(mb_params_materialize(p, mb_cpu_backend()));
  for (int n = 0; n < 3; n++)
    load_into(json_object_get(run, "init"), names[n], p, mb_params_data(p));
  return p;
}

static void test_adamw_matches_torch(void **state) {
  (void)state;
  json_t *fx = load_fixture(), *run = json_object_get(fx, "adamw"), *cfg = json_object_get(run, "config");
  mb_params *p = make_store(fx, run);
  ASSERT_OK(mb_params_set_weight_decay(p, mb_params_find(p, "b"), 0));
  mb_adamw_cfg c = {num(cfg, "lr"), num(cfg, "beta1"), num(cfg, "beta2"), num(cfg, "eps"), num(cfg, "weight_decay")};
  mb_optimizer *opt;
  ASSERT_OK(mb_optimizer_adamw(p, &c, &opt));
  mb_lr_schedule sched = {c.lr, (int64_t)num(cfg, "warmup"), (int64_t)num(cfg, "total"), MB_LR_LINEAR};
  int clip_from = (int)num(cfg, "clip_from");
  double max_norm = num(cfg, "max_norm"), worst_all = 0;
  json_t *steps = json_object_get(run, "steps");
  printf("  torch %s\n", json_string_value(json_object_get(fx, "torch_version")));
  for (size_t k = 0; k < json_array_size(steps); k++) {
    json_t *st = json_array_get(steps, k);
    for (int n = 0; n < 3; n++)
      load_into(json_object_get(st, "grads"), names[n], p, mb_params_grad(p));
    double lr = mb_lr_at(&sched, (int64_t)k);
    assert_true(fabs(lr - num(st, "lr")) <= 1e-15);
    double scale = 1.0, norm = 0;
    if ((int)k >= clip_from) {
      ASSERT_OK(mb_clip_grad_norm(p, max_norm, &norm, &scale));
      double ref = num(st, "clip_norm");
      assert_true(fabs(norm - ref) / ref < 1e-6);
      assert_true(scale < 1.0);
    }
    ASSERT_OK(mb_optimizer_step(opt, lr, scale));
    double worst = compare(json_object_get(st, "params_after"), p);
    printf("  adamw step %zu lr %.6f%s max rel err vs torch %.3g\n", k, lr, (int)k >= clip_from ? " clipped" : "        ",
           worst);
    if (worst > worst_all)
      worst_all = worst;
  }
  assert_true(worst_all < 2e-6);
  assert_int_equal(mb_optimizer_steps(opt), (int64_t)json_array_size(steps));
  mb_optimizer_free(opt);
  mb_params_free(p);
  json_decref(fx);
}

static void test_sgd_matches_torch(void **state) {
  (void)state;
  json_t *fx = load_fixture(), *run = json_object_get(fx, "sgd"), *cfg = json_object_get(run, "config");
  mb_params *p = make_store(fx, run);
  mb_sgd_cfg c = {num(cfg, "lr"), num(cfg, "momentum"), num(cfg, "dampening"), num(cfg, "weight_decay"),
                  json_is_true(json_object_get(cfg, "nesterov"))};
  mb_optimizer *opt;
  ASSERT_OK(mb_optimizer_sgd(p, &c, &opt));
  json_t *steps = json_object_get(run, "steps");
  double worst_all = 0;
  for (size_t k = 0; k < json_array_size(steps); k++) {
    json_t *st = json_array_get(steps, k);
    for (int n = 0; n < 3; n++)
      load_into(json_object_get(st, "grads"), names[n], p, mb_params_grad(p));
    ASSERT_OK(mb_optimizer_step(opt, -1, 1.0));
    double worst = compare(json_object_get(st, "params_after"), p);
    printf("  sgd step %zu max rel err vs torch %.3g\n", k, worst);
    if (worst > worst_all)
      worst_all = worst;
  }
  assert_true(worst_all < 2e-6);
  mb_optimizer_free(opt);
  mb_params_free(p);
  json_decref(fx);
}

static void test_schedules(void **state) {
  (void)state;
  mb_lr_schedule lin = {1.0, 10, 100, MB_LR_LINEAR}, cosd = {2.0, 10, 100, MB_LR_COSINE}, cst = {3.0, 4, 0, MB_LR_CONSTANT};
  assert_true(mb_lr_at(&lin, 0) == 0.0);
  assert_true(fabs(mb_lr_at(&lin, 5) - 0.5) < 1e-15);
  assert_true(mb_lr_at(&lin, 10) == 1.0);
  assert_true(fabs(mb_lr_at(&lin, 55) - 0.5) < 1e-15);
  assert_true(mb_lr_at(&lin, 100) == 0.0);
  assert_true(mb_lr_at(&lin, 150) == 0.0);
  assert_true(fabs(mb_lr_at(&cosd, 55) - 1.0) < 1e-12); /* half way: 0.5 * (1 + cos(pi/2)) */
  assert_true(fabs(mb_lr_at(&cosd, 10) - 2.0) < 1e-15);
  assert_true(fabs(mb_lr_at(&cosd, 100)) < 1e-15);
  assert_true(fabs(mb_lr_at(&cosd, 32.5 > 0 ? 32 : 0) - 2.0 * 0.5 * (1 + cos(M_PI * 22.0 / 90.0))) < 1e-12);
  assert_true(fabs(mb_lr_at(&cst, 2) - 1.5) < 1e-15 && mb_lr_at(&cst, 1000) == 3.0);
}

/* Two ranges updated by two optimizers (as two ZeRO-1 ranks would) equal
 * one full update. */
/* torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped
 * to 1, so gradients below the cap are never scaled up */
static void test_clip_coef(void **state) {
  (void)state;
  assert_true(mb_clip_coef(0.5, 1.0) == 1.0);
  assert_true(mb_clip_coef(0.0, 1.0) == 1.0);
  assert_true(fabs(mb_clip_coef(2.0, 1.0) - 1.0 / (2.0 + 1e-6)) < 1e-15);
  assert_true(mb_clip_coef(1e300, 1.0) < 1e-299);
}

static void test_range_update(void **state) {
  (void)state;
  json_t *fx = load_fixture(), *run = json_object_get(fx, "adamw");
  mb_params *full = make_store(fx, run), *split = make_store(fx, run);
  mb_optimizer *o_full, *o_lo, *o_hi;
  mb_adamw_cfg c = mb_adamw_defaults();
  ASSERT_OK(mb_optimizer_adamw(full, &c, &o_full));
  ASSERT_OK(mb_optimizer_adamw(split, &c, &o_lo));
  ASSERT_OK(mb_optimizer_adamw(split, &c, &o_hi));
  int64_t total = mb_params_total(full), mid = 7; /* splits a parameter */
  uint64_t s = 3;
  for (int step = 0; step < 3; step++) {
    tu_fill_f32(mb_params_grad(full), total, &s);
    memcpy(mb_params_grad(split), mb_params_grad(full), (size_t)total * sizeof(float));
    ASSERT_OK(mb_optimizer_step(o_full, 1e-2, 1.0));
    ASSERT_OK(mb_optimizer_step_range(o_lo, 1e-2, 1.0, 0, mid));
    ASSERT_OK(mb_optimizer_step_range(o_hi, 1e-2, 1.0, mid, total));
  }
  assert_memory_equal(mb_params_data(full), mb_params_data(split), (size_t)total * sizeof(float));
  assert_int_equal(mb_optimizer_step_range(o_lo, 1e-2, 1.0, 0, total + 1), MB_EINVAL);
  mb_optimizer_free(o_full), mb_optimizer_free(o_lo), mb_optimizer_free(o_hi);
  mb_params_free(full), mb_params_free(split);
  json_decref(fx);
}

/* ZeRO-1 shards: two optimizers with state for half the flat buffer each,
 * stepped on separate shard buffers (as after a reduce-scatter), equal the
 * full update; shard sums of squares add up to the full one. */
static void test_shard_update(void **state) {
  (void)state;
  json_t *fx = load_fixture(), *run = json_object_get(fx, "adamw");
  mb_params *full = make_store(fx, run);
  ASSERT_OK(mb_params_set_weight_decay(full, mb_params_find(full, "b"), 0));
  int64_t total = mb_params_total(full), shard = (total + 1) / 2 + 3; /* the second shard runs into padding */
  mb_adamw_cfg c = {1e-2, 0.9, 0.999, 1e-8, 0.1};
  mb_optimizer *o_full, *o_sh[2];
  ASSERT_OK(mb_optimizer_adamw(full, &c, &o_full));
  ASSERT_OK(mb_optimizer_adamw_shard(full, &c, 0, shard, &o_sh[0]));
  ASSERT_OK(mb_optimizer_adamw_shard(full, &c, shard, 2 * shard, &o_sh[1]));
  float *pbuf = calloc((size_t)(2 * shard), sizeof *pbuf), *gbuf = calloc((size_t)(2 * shard), sizeof *gbuf);
  memcpy(pbuf, mb_params_data(full), (size_t)total * sizeof(float));
  uint64_t s = 5;
  for (int step = 0; step < 3; step++) {
    tu_fill_f32(mb_params_grad(full), total, &s);
    memcpy(gbuf, mb_params_grad(full), (size_t)total * sizeof(float));
    double ss_full, ss0, ss1, norm;
    ASSERT_OK(mb_clip_grad_norm(full, 1.0, &norm, NULL));
    ss_full = norm * norm;
    ASSERT_OK(mb_optimizer_shard_sumsq(o_sh[0], gbuf, &ss0));
    ASSERT_OK(mb_optimizer_shard_sumsq(o_sh[1], gbuf + shard, &ss1));
    assert_true(fabs(ss0 + ss1 - ss_full) <= 1e-9 * ss_full);
    double scale = mb_clip_coef(sqrt(ss0 + ss1), 1.0);
    ASSERT_OK(mb_optimizer_step(o_full, 1e-2, scale));
    ASSERT_OK(mb_optimizer_step_shard(o_sh[0], 1e-2, scale, pbuf, gbuf));
    ASSERT_OK(mb_optimizer_step_shard(o_sh[1], 1e-2, scale, pbuf + shard, gbuf + shard));
  }
  assert_memory_equal(mb_params_data(full), pbuf, (size_t)total * sizeof(float));
  for (int64_t i = total; i < 2 * shard; i++)
    assert_true(pbuf[i] == 0.0f); /* padding untouched */
  free(pbuf), free(gbuf);
  mb_optimizer_free(o_full), mb_optimizer_free(o_sh[0]), mb_optimizer_free(o_sh[1]);
  mb_params_free(full);
  json_decref(fx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_adamw_matches_torch),
      cmocka_unit_test(test_sgd_matches_torch),
      cmocka_unit_test(test_schedules),
      cmocka_unit_test(test_clip_coef),
      cmocka_unit_test(test_range_update),
      cmocka_unit_test(test_shard_update),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
