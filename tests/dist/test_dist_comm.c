/* test_dist_comm.c: collectives against their definitions, on every rank
 * count the suite runs with (plain = LOCAL backend, mpirun = MPI backend):
 * all-reduce (sum, average; f32, f64; in and out of place; odd and large
 * counts; scattered segments), reduce-scatter, all-gather, broadcast,
 * barrier, non-blocking requests completed out of order, and argument errors.
 * Inputs are small integers so every expected sum is exact. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist_test_util.h"
#include "distributed/comm.h"
#include "distributed/watchdog.h"

static mb_comm *C(void) { return mb_dist_comm(g_test_dist); }
static int R(void) { return mb_comm_rank(C()); }
static int N(void) { return mb_comm_size(C()); }

/* Element i of rank r's input: exact in f32 for every sum we form. */
static double val(int r, size_t i) { return (double)((r + 1) * (int)(i % 97) - 40); }
/* Sum over ranks of val(r, i). */
static double sum_val(int n, size_t i) {
  double s = 0;
  for (int r = 0; r < n; r++)
    s += val(r, i);
  return s;
}

static void check_allreduce_f32(size_t count, int inplace, mb_reduce_op op) {
  float *in = malloc(count * sizeof *in), *out = malloc(count * sizeof *out);
  for (size_t i = 0; i < count; i++) {
    in[i] = (float)val(R(), i);
    out[i] = -999.0f;
  }
  float *dst = inplace ? in : out;
  assert_int_equal(mb_comm_allreduce(C(), in, dst, count, MB_F32, op), MB_OK);
  for (size_t i = 0; i < count; i++) {
    double want = sum_val(N(), i) / (op == MB_REDUCE_AVG ? N() : 1);
    if (fabs(dst[i] - want) > 1e-6 * fabs(want)) {
      fail_msg("rank %d: all-reduce of %zu (%s, %s): [%zu] = %g, want %g", R(), count,
               inplace ? "in place" : "out of place", op == MB_REDUCE_AVG ? "avg" : "sum", i, dst[i], want);
    }
  }
  if (!inplace)
    for (size_t i = 0; i < count; i++)
      assert_true(in[i] == (float)val(R(), i)); /* input untouched */
  free(in);
  free(out);
}

static void test_allreduce_f32(void **state) {
  (void)state;
  check_allreduce_f32(1, 1, MB_REDUCE_SUM);
  check_allreduce_f32(1001, 1, MB_REDUCE_SUM);
  check_allreduce_f32(1001, 0, MB_REDUCE_SUM);
  check_allreduce_f32(1001, 1, MB_REDUCE_AVG);
  check_allreduce_f32(0, 1, MB_REDUCE_SUM);
  /* 12 MB: MPI's large-message algorithms (segmented ring / rendezvous). */
  check_allreduce_f32(3u << 20, 1, MB_REDUCE_AVG);
}

static void test_allreduce_f64(void **state) {
  (void)state;
  size_t count = 777;
  double *x = malloc(count * sizeof *x);
  for (size_t i = 0; i < count; i++)
    x[i] = val(R(), i) + 1.0 / 3.0;
  assert_int_equal(mb_comm_allreduce(C(), x, x, count, MB_F64, MB_REDUCE_AVG), MB_OK);
  for (size_t i = 0; i < count; i++)
    assert_true(fabs(x[i] - (sum_val(N(), i) / N() + 1.0 / 3.0)) < 1e-12);
  free(x);
}

static void test_reduce_scatter(void **state) {
  (void)state;
  size_t count = 1003; /* per rank */
  size_t total = count * (size_t)N();
  float *in = malloc(total * sizeof *in), *out = malloc(count * sizeof *out);
  for (int pass = 0; pass < 3; pass++) {
    mb_reduce_op op = pass == 1 ? MB_REDUCE_AVG : MB_REDUCE_SUM;
    int inplace = pass == 2;
    for (size_t i = 0; i < total; i++)
      in[i] = (float)val(R(), i);
    float *dst = inplace ? in + (size_t)R() * count : out;
    assert_int_equal(mb_comm_reduce_scatter(C(), in, dst, count, MB_F32, op), MB_OK);
    for (size_t j = 0; j < count; j++) {
      size_t i = (size_t)R() * count + j;
      double want = sum_val(N(), i) / (op == MB_REDUCE_AVG ? N() : 1);
      if (fabs(dst[j] - want) > 1e-6 * fabs(want))
        fail_msg("rank %d: reduce-scatter pass %d: [%zu] = %g, want %g", R(), pass, j, dst[j], want);
    }
  }
  free(in);
  free(out);
}

static void test_allgather(void **state) {
  (void)state;
  size_t count = 517;
  size_t total = count * (size_t)N();
  /* f32 out of place */
  float *mine = malloc(count * sizeof *mine), *all = malloc(total * sizeof *all);
  for (size_t j = 0; j < count; j++)
    mine[j] = (float)(R() * 10000 + (int)j);
  assert_int_equal(mb_comm_allgather(C(), mine, all, count, MB_F32), MB_OK);
  for (int r = 0; r < N(); r++)
    for (size_t j = 0; j < count; j++)
      assert_true(all[(size_t)r * count + j] == (float)(r * 10000 + (int)j));
  /* f32 in place: own chunk already in position */
  for (size_t i = 0; i < total; i++)
    all[i] = -1;
  for (size_t j = 0; j < count; j++)
    all[(size_t)R() * count + j] = (float)(R() * 10000 + (int)j);
  assert_int_equal(mb_comm_allgather(C(), all + (size_t)R() * count, all, count, MB_F32), MB_OK);
  for (int r = 0; r < N(); r++)
    for (size_t j = 0; j < count; j++)
      assert_true(all[(size_t)r * count + j] == (float)(r * 10000 + (int)j));
  /* bf16 and i64 move bit patterns */
  uint16_t h = (uint16_t)(0x3f80 + R());
  uint16_t *hs = malloc((size_t)N() * sizeof *hs);
  assert_int_equal(mb_comm_allgather(C(), &h, hs, 1, MB_BF16), MB_OK);
  for (int r = 0; r < N(); r++)
    assert_int_equal(hs[r], 0x3f80 + r);
  int64_t big = ((int64_t)1 << 40) + R();
  int64_t *bigs = malloc((size_t)N() * sizeof *bigs);
  assert_int_equal(mb_comm_allgather(C(), &big, bigs, 1, MB_I64), MB_OK);
  for (int r = 0; r < N(); r++)
    assert_true(bigs[r] == ((int64_t)1 << 40) + r);
  free(mine);
  free(all);
  free(hs);
  free(bigs);
}

static void test_broadcast_barrier(void **state) {
  (void)state;
  int root = N() - 1;
  double x[5];
  for (int i = 0; i < 5; i++)
    x[i] = R() == root ? 0.5 * i + 7 : -1;
  assert_int_equal(mb_comm_broadcast(C(), x, 5, MB_F64, root), MB_OK);
  for (int i = 0; i < 5; i++)
    assert_true(x[i] == 0.5 * i + 7);
  assert_int_equal(mb_comm_barrier(C()), MB_OK);
  assert_int_equal(mb_comm_barrier(mb_dist_host_comm(g_test_dist)), MB_OK);
}

/* Three requests in flight, waited for in reverse order, with progress
 * calls in between: the way buckets use them. */
static void test_nonblocking(void **state) {
  (void)state;
  enum { K = 3 };
  size_t counts[K] = {100, 200000, 7};
  float *bufs[K];
  mb_comm_request *req[K];
  char label[32];
  for (int k = 0; k < K; k++) {
    bufs[k] = malloc(counts[k] * sizeof(float));
    for (size_t i = 0; i < counts[k]; i++)
      bufs[k][i] = (float)val(R(), i + (size_t)k);
    snprintf(label, sizeof label, "bucket %d", k);
    assert_int_equal(mb_comm_iallreduce(C(), bufs[k], bufs[k], counts[k], MB_F32, MB_REDUCE_SUM, label, &req[k]),
                     MB_OK);
    assert_non_null(req[k]);
    assert_string_equal(mb_comm_request_label(req[k]), label);
    mb_comm_progress(C());
  }
  int done = 0;
  assert_int_equal(mb_comm_test(&req[1], &done), MB_OK);
  if (done)
    assert_null(req[1]);
  for (int k = K - 1; k >= 0; k--) {
    assert_int_equal(mb_comm_wait(&req[k], 0), MB_OK);
    assert_null(req[k]);
  }
  for (int k = 0; k < K; k++) {
    for (size_t i = 0; i < counts[k]; i++)
      assert_true(bufs[k][i] == (float)sum_val(N(), i + (size_t)k));
    free(bufs[k]);
  }
  /* Waiting on an already-finished (NULL) request is fine. */
  assert_int_equal(mb_comm_wait(&req[0], 0), MB_OK);
  /* No watch is left open by finished requests. */
  assert_int_equal(mb_watch_count(), 0);
}

/* All-reduce of pieces that are not adjacent: packed, reduced, unpacked. */
static void test_segments(void **state) {
  (void)state;
  float buf[100];
  for (int i = 0; i < 100; i++)
    buf[i] = (float)val(R(), (size_t)i);
  mb_comm_segment segs[3] = {{buf + 90, 10}, {buf + 5, 20}, {buf + 50, 1}};
  void *staging = NULL;
  assert_int_equal(mb_comm_alloc(C(), 31 * sizeof(float), &staging), MB_OK);
  mb_comm_request *r = NULL;
  assert_int_equal(mb_comm_iallreduce_segments(C(), segs, 3, staging, MB_F32, MB_REDUCE_AVG, "scattered", &r),
                   MB_OK);
  assert_int_equal(mb_comm_wait(&r, 0), MB_OK);
  for (int i = 0; i < 100; i++) {
    int in_seg = (i >= 90) || (i >= 5 && i < 25) || i == 50;
    double want = in_seg ? sum_val(N(), (size_t)i) / N() : val(R(), (size_t)i);
    if (fabs(buf[i] - want) > 1e-6 * fabs(want))
      fail_msg("rank %d: segment all-reduce: [%d] = %g, want %g", R(), i, buf[i], want);
  }
  mb_comm_free(C(), staging);
}

static void test_argument_errors(void **state) {
  (void)state;
  mb_comm_request *r = (mb_comm_request *)0x1;
  float x = 1;
  assert_int_equal(mb_comm_ibroadcast(C(), &x, 1, MB_F32, N(), "params", &r), MB_EINVAL);
  assert_null(r);
  assert_non_null(strstr(mb_error_message(), "root"));
  assert_int_equal(mb_comm_iallreduce(C(), &x, &x, 1, MB_BF16, MB_REDUCE_SUM, "grads", &r), MB_EUNSUPPORTED);
  assert_non_null(strstr(mb_error_message(), "bf16"));
  assert_int_equal(mb_comm_iallreduce(C(), NULL, &x, 1, MB_F32, MB_REDUCE_SUM, "grads", &r), MB_EINVAL);
  assert_int_equal(mb_comm_iallreduce(C(), &x, &x, 1, MB_F32, (mb_reduce_op)9, "grads", &r), MB_EINVAL);
  mb_error_clear();
  /* The communicator still works after refused calls (nothing was started). */
  assert_int_equal(mb_comm_allreduce(C(), &x, &x, 1, MB_F32, MB_REDUCE_SUM), MB_OK);
  assert_true(x == (float)N());
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_allreduce_f32),   cmocka_unit_test(test_allreduce_f64),
      cmocka_unit_test(test_reduce_scatter),  cmocka_unit_test(test_allgather),
      cmocka_unit_test(test_broadcast_barrier), cmocka_unit_test(test_nonblocking),
      cmocka_unit_test(test_segments),        cmocka_unit_test(test_argument_errors),
  };
  return DIST_TEST_MAIN("dist_comm", tests, NULL);
}
