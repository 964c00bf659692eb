/* test_dist_nccl.c: the NCCL backend on device buffers (one GPU per rank):
 * all-reduce sum/average, reduce-scatter in place, all-gather, broadcast,
 * barrier, a segment all-reduce, gradient buckets (in place and staged) and
 * a ZeRO step, each checked on the host against its definition. Skipped
 * (exit 77) without enough GPUs; built only when NCCL is. */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist_test_util.h"
#include "distributed/buckets.h"
#include "distributed/zero.h"

static mb_comm *C(void) { return mb_dist_comm(g_test_dist); }
static int R(void) { return mb_comm_rank(C()); }
static int N(void) { return mb_comm_size(C()); }

static float *dev_from(const float *h, size_t n) {
  float *d = NULL;
  assert_int_equal(cudaMalloc((void **)&d, (n ? n : 1) * sizeof *d), cudaSuccess);
  if (n)
    assert_int_equal(cudaMemcpy(d, h, n * sizeof *d, cudaMemcpyHostToDevice), cudaSuccess);
  return d;
}

static void to_host(float *h, const float *d, size_t n) {
  assert_int_equal(mb_comm_sync(C()), MB_OK);
  assert_int_equal(cudaMemcpy(h, d, n * sizeof *h, cudaMemcpyDeviceToHost), cudaSuccess);
}

static double val(int r, size_t i) { return (double)((r + 1) * (int)(i % 89) - 30); }

static void test_allreduce(void **state) {
  (void)state;
  size_t n = 1u << 20;
  float *h = malloc(n * sizeof *h);
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < n; i++)
      h[i] = (float)val(R(), i);
    float *d = dev_from(h, n);
    mb_reduce_op op = pass ? MB_REDUCE_AVG : MB_REDUCE_SUM;
    assert_int_equal(mb_comm_allreduce(C(), d, d, n, MB_F32, op), MB_OK);
    to_host(h, d, n);
    for (size_t i = 0; i < n; i++) {
      double want = 0;
      for (int r = 0; r < N(); r++)
        want += val(r, i);
      if (op == MB_REDUCE_AVG)
        want /= N();
      if (fabs(h[i] - want) > 1e-5 * (1 + fabs(want)))
        fail_msg("rank %d: NCCL all-reduce [%zu] = %g, want %g", R(), i, h[i], want);
    }
    cudaFree(d);
  }
  free(h);
}

static void test_scatter_gather_bcast(void **state) {
  (void)state;
  size_t count = 1001, total = count * (size_t)N();
  float *h = malloc(total * sizeof *h);
  for (size_t i = 0; i < total; i++)
    h[i] = (float)val(R(), i);
  float *d = dev_from(h, total);
  float *mine = d + (size_t)R() * count;
  assert_int_equal(mb_comm_reduce_scatter(C(), d, mine, count, MB_F32, MB_REDUCE_SUM), MB_OK);
  assert_int_equal(mb_comm_allgather(C(), mine, d, count, MB_F32), MB_OK);
  to_host(h, d, total);
  for (size_t i = 0; i < total; i++) {
    double want = 0;
    for (int r = 0; r < N(); r++)
      want += val(r, i);
    assert_true(h[i] == (float)want);
  }
  for (size_t i = 0; i < total; i++)
    h[i] = R() == 0 ? (float)i : -1.0f;
  assert_int_equal(cudaMemcpy(d, h, total * sizeof *h, cudaMemcpyHostToDevice), cudaSuccess);
  assert_int_equal(mb_comm_broadcast(C(), d, total, MB_F32, 0), MB_OK);
  assert_int_equal(mb_comm_barrier(C()), MB_OK);
  to_host(h, d, total);
  for (size_t i = 0; i < total; i++)
    assert_true(h[i] == (float)i);
  cudaFree(d);
  free(h);
}

static void test_buckets_and_zero(void **state) {
  (void)state;
  enum { P = 6 };
  mb_grad_param p[P];
  char names[P][16];
  size_t n = 0;
  for (int f = 0; f < P; f++) { /* forward layout; backward order reversed */
    int j = P - 1 - f;
    snprintf(names[j], sizeof names[j], "w%d", f);
    p[j].name = names[j];
    p[j].offset = n;
    p[j].count = 5000 + 1000 * (size_t)f;
    n += p[j].count;
  }
  float *h = malloc(n * sizeof *h), *ref = malloc(n * sizeof *ref);
  for (int staged = 0; staged < 2; staged++) {
    for (size_t i = 0; i < n; i++)
      h[i] = (float)val(R(), i);
    float *d = dev_from(h, n);
    mb_buckets_options o = {.bucket_bytes = 40000, .force_staging = staged};
    mb_buckets *b;
    assert_int_equal(mb_buckets_create(C(), d, n, p, P, &o, &b), MB_OK);
    assert_true(mb_buckets_count(b) >= 2);
    for (int i = 0; i < P; i++)
      assert_int_equal(mb_buckets_grad_ready(b, i), MB_OK);
    assert_int_equal(mb_buckets_wait_all(b), MB_OK);
    to_host(ref, d, n);
    for (size_t i = 0; i < n; i++) {
      double want = 0;
      for (int r = 0; r < N(); r++)
        want += val(r, i);
      want /= N();
      if (fabs(ref[i] - want) > 1e-5 * (1 + fabs(want)))
        fail_msg("rank %d: NCCL buckets (staged %d) [%zu] = %g, want %g", R(), staged, i, ref[i], want);
    }
    mb_buckets_destroy(b);
    cudaFree(d);
  }
  free(h);
  free(ref);
}

/* The ZeRO update on device memory, done on the host for the test. */
static int sgd_update(void *ctx, float *params, const float *grads, size_t off, size_t count) {
  (void)ctx;
  (void)off;
  float *hp = malloc(count * sizeof *hp), *hg = malloc(count * sizeof *hg);
  cudaDeviceSynchronize();
  cudaMemcpy(hp, params, count * sizeof *hp, cudaMemcpyDeviceToHost);
  cudaMemcpy(hg, grads, count * sizeof *hg, cudaMemcpyDeviceToHost);
  for (size_t i = 0; i < count; i++)
    hp[i] -= 0.5f * hg[i];
  cudaMemcpy(params, hp, count * sizeof *hp, cudaMemcpyHostToDevice);
  free(hp);
  free(hg);
  return MB_OK;
}

static void test_zero_step(void **state) {
  (void)state;
  mb_zero_layout L;
  assert_int_equal(mb_zero_layout_make(7777, N(), 4, &L), MB_OK);
  float *hp = calloc(L.padded, sizeof *hp), *hg = calloc(L.padded, sizeof *hg);
  for (size_t i = 0; i < L.numel; i++) {
    hp[i] = 1.0f;
    hg[i] = (float)val(R(), i);
  }
  float *dp = dev_from(hp, L.padded), *dg = dev_from(hg, L.padded), *ds = dev_from(NULL, L.shard);
  assert_int_equal(mb_zero_step(C(), &L, dp, dg, ds, sgd_update, NULL), MB_OK);
  to_host(hp, dp, L.padded);
  for (size_t i = 0; i < L.numel; i++) {
    double g = 0;
    for (int r = 0; r < N(); r++)
      g += val(r, i);
    g /= N();
    assert_true(fabs(hp[i] - (1.0 - 0.5 * g)) < 1e-5 * (1 + fabs(g)));
  }
  cudaFree(dp);
  cudaFree(dg);
  cudaFree(ds);
  free(hp);
  free(hg);
}

int main(void) {
  int devices = 0;
  const char *ws = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  int need = ws ? atoi(ws) : 1;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices < need) {
    fprintf(stderr, "dist_nccl: skipped: %d CUDA device(s), %d needed\n", devices, need);
    return 77;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_allreduce),
      cmocka_unit_test(test_scatter_gather_bcast),
      cmocka_unit_test(test_buckets_and_zero),
      cmocka_unit_test(test_zero_step),
  };
  mb_dist_options o = {.backend = MB_COMM_NCCL, .use_cuda = 1};
  return DIST_TEST_MAIN("dist_nccl", tests, &o);
}
