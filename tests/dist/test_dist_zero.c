/* test_dist_zero.c: ZeRO-1. Layouts (shard sizes, padding, valid counts),
 * parameter pieces per shard, re-partitioning sharded state for N ranks to
 * M ranks (equal to sharding the whole state for M directly, for many
 * N, M, sizes and alignments), and the sharded step on the running world:
 * reduce-scatter + shard update + all-gather gives bit-for-bit what an
 * all-reduce and an update of the whole buffer give, with optimizer state
 * (momentum) kept only for the rank's shard. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist_test_util.h"
#include "distributed/zero.h"

static mb_comm *C(void) { return mb_dist_comm(g_test_dist); }
static int R(void) { return mb_comm_rank(C()); }
static int N(void) { return mb_comm_size(C()); }

static void test_layout(void **state) {
  (void)state;
  mb_zero_layout L;
  assert_int_equal(mb_zero_layout_make(10, 4, 1, &L), MB_OK);
  assert_int_equal(L.shard, 3);
  assert_int_equal(L.padded, 12);
  size_t v1[4] = {3, 3, 3, 1};
  for (int r = 0; r < 4; r++)
    assert_int_equal(mb_zero_shard_valid(&L, r), v1[r]);
  assert_int_equal(mb_zero_layout_make(10, 4, 4, &L), MB_OK);
  assert_int_equal(L.shard, 4);
  assert_int_equal(L.padded, 16);
  size_t v2[4] = {4, 4, 2, 0};
  for (int r = 0; r < 4; r++)
    assert_int_equal(mb_zero_shard_valid(&L, r), v2[r]);
  assert_int_equal(mb_zero_layout_make(2, 4, 0, &L), MB_OK);
  assert_int_equal(L.shard, 1);
  assert_int_equal(mb_zero_shard_valid(&L, 3), 0);
  assert_int_equal(mb_zero_layout_make(0, 4, 1, &L), MB_EINVAL);
  assert_int_equal(mb_zero_layout_make(10, 0, 1, &L), MB_EINVAL);
  mb_error_clear();
}

static uint32_t lcg(uint32_t *s) {
  *s = *s * 1664525u + 1013904223u;
  return *s >> 8;
}

/* State sharded for N ranks -> gathered -> resharded for M ranks equals
 * sharding for M directly; so does resharding N -> M without gathering. */
static void test_reshard(void **state) {
  (void)state;
  size_t sizes[] = {1, 2, 7, 1000, 12345};
  int worlds_from[] = {1, 2, 3, 4, 8};
  int worlds_to[] = {1, 2, 3, 5, 8};
  size_t aligns[] = {1, 4, 16};
  uint32_t seed = 7;
  int combos = 0;
  for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
    size_t n = sizes[si];
    float *full = malloc(n * sizeof *full), *back = malloc(n * sizeof *back);
    for (size_t i = 0; i < n; i++)
      full[i] = (float)(lcg(&seed) % 100000) / 7.0f;
    for (size_t ai = 0; ai < 3; ai++)
      for (size_t fi = 0; fi < 5; fi++) {
        mb_zero_layout F;
        assert_int_equal(mb_zero_layout_make(n, worlds_from[fi], aligns[ai], &F), MB_OK);
        float **sh = malloc((size_t)F.world * sizeof *sh);
        for (int r = 0; r < F.world; r++) {
          sh[r] = malloc(F.shard * sizeof **sh);
          assert_int_equal(mb_zero_scatter(&F, r, full, sh[r]), MB_OK);
          for (size_t j = mb_zero_shard_valid(&F, r); j < F.shard; j++)
            assert_true(sh[r][j] == 0.0f); /* padding is zero */
        }
        assert_int_equal(mb_zero_gather(&F, (const float *const *)sh, back), MB_OK);
        assert_memory_equal(back, full, n * sizeof *full);
        for (size_t ti = 0; ti < 5; ti++)
          for (size_t aj = 0; aj < 3; aj++) {
            mb_zero_layout T;
            assert_int_equal(mb_zero_layout_make(n, worlds_to[ti], aligns[aj], &T), MB_OK);
            float *direct = malloc(T.shard * sizeof *direct), *via = malloc(T.shard * sizeof *via);
            for (int r = 0; r < T.world; r++) {
              assert_int_equal(mb_zero_scatter(&T, r, back, direct), MB_OK);
              memset(via, 0xff, T.shard * sizeof *via);
              assert_int_equal(mb_zero_reshard(&F, (const float *const *)sh, &T, r, via), MB_OK);
              assert_memory_equal(via, direct, T.shard * sizeof *via);
              /* The plan covers the valid part exactly once, in order. */
              mb_zero_slice sl[16];
              int ns = 0;
              assert_int_equal(mb_zero_reshard_plan(&F, &T, r, sl, 16, &ns), MB_OK);
              size_t at = 0;
              for (int k = 0; k < ns; k++) {
                assert_int_equal(sl[k].dst_offset, at);
                assert_true(sl[k].count > 0);
                assert_true(sl[k].src_offset + sl[k].count <= mb_zero_shard_valid(&F, sl[k].src_rank));
                at += sl[k].count;
              }
              assert_int_equal(at, mb_zero_shard_valid(&T, r));
              combos++;
            }
            free(direct);
            free(via);
          }
        for (int r = 0; r < F.world; r++)
          free(sh[r]);
        free(sh);
      }
    free(full);
    free(back);
  }
  assert_true(combos > 1000);
}

static void test_reshard_mismatch(void **state) {
  (void)state;
  mb_zero_layout F, T;
  assert_int_equal(mb_zero_layout_make(100, 2, 1, &F), MB_OK);
  assert_int_equal(mb_zero_layout_make(101, 4, 1, &T), MB_OK);
  int n;
  assert_int_equal(mb_zero_reshard_plan(&F, &T, 0, NULL, 0, &n), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "saved state has 100 elements, the model has 101"));
  assert_int_equal(mb_zero_layout_make(100, 4, 1, &T), MB_OK);
  assert_int_equal(mb_zero_reshard_plan(&F, &T, 4, NULL, 0, &n), MB_EINVAL);
  /* too little room for the slices: says how many are needed */
  mb_zero_layout F8;
  assert_int_equal(mb_zero_layout_make(100, 8, 1, &F8), MB_OK);
  mb_zero_slice one[1];
  assert_int_equal(mb_zero_reshard_plan(&F8, &T, 0, one, 1, &n), MB_EINVAL);
  assert_int_equal(n, 2); /* new [0, 25) = old shard 0 [0, 13) + old shard 1 [13, 25) */
  mb_error_clear();
}

static void test_pieces(void **state) {
  (void)state;
  mb_grad_param p[3] = {{"c", 70, 30}, {"b", 20, 50}, {"a", 0, 20}};
  mb_zero_layout L;
  assert_int_equal(mb_zero_layout_make(100, 3, 1, &L), MB_OK); /* shards of 34 */
  int covered[100] = {0};
  for (int r = 0; r < 3; r++) {
    mb_zero_piece pc[8];
    int n = 0;
    assert_int_equal(mb_zero_shard_pieces(&L, r, p, 3, pc, 8, &n), MB_OK);
    size_t at = 0;
    for (int k = 0; k < n; k++) {
      assert_int_equal(pc[k].shard_offset, at); /* in shard order, no holes */
      size_t g = mb_zero_shard_offset(&L, r) + pc[k].shard_offset;
      assert_int_equal(p[pc[k].param].offset + pc[k].param_offset, g);
      for (size_t e = 0; e < pc[k].count; e++)
        covered[g + e]++;
      at += pc[k].count;
    }
    assert_int_equal(at, mb_zero_shard_valid(&L, r));
  }
  for (int i = 0; i < 100; i++)
    assert_int_equal(covered[i], 1);
  int n = 0;
  assert_int_equal(mb_zero_shard_pieces(&L, 1, p, 3, NULL, 0, &n), MB_OK);
  assert_int_equal(n, 1); /* shard 1 = [34, 68) lies inside 'b' = [20, 70) */
  assert_int_equal(mb_zero_shard_pieces(&L, 2, p, 3, NULL, 0, &n), MB_OK);
  assert_int_equal(n, 2); /* shard 2 = [68, 100): the end of 'b', all of 'c' */
  mb_zero_piece small[1];
  assert_int_equal(mb_zero_shard_pieces(&L, 2, p, 3, small, 1, &n), MB_EINVAL);
  mb_error_clear();
}

/* Momentum SGD on a shard: m = 0.9 m + g; p -= 0.125 m. */
typedef struct {
  float *m; /* state for this rank's shard only */
  size_t offset, count;
  int calls;
} momentum;

static int momentum_update(void *ctx, float *params, const float *grads, size_t off, size_t count) {
  momentum *s = ctx;
  if (off != s->offset || count != s->count)
    return MB_ERR(MB_EINTERNAL, "update got [%zu, +%zu), expected [%zu, +%zu)", off, count, s->offset, s->count);
  for (size_t i = 0; i < count; i++) {
    s->m[i] = 0.9f * s->m[i] + grads[i];
    params[i] -= 0.125f * s->m[i];
  }
  s->calls++;
  return MB_OK;
}

static void grads_of(float *g, size_t n, size_t padded, int rank, int step) {
  for (size_t i = 0; i < n; i++)
    g[i] = (float)((int)((i * 13 + (size_t)step * 5) % 61) - 30 + 2 * rank);
  for (size_t i = n; i < padded; i++)
    g[i] = 0;
}

static void test_zero_step(void **state) {
  (void)state;
  size_t n = 10007;
  mb_zero_layout L;
  assert_int_equal(mb_zero_layout_make(n, N(), 4, &L), MB_OK);
  float *p = calloc(L.padded, sizeof *p), *g = calloc(L.padded, sizeof *g), *gs = calloc(L.shard, sizeof *gs);
  float *ref_p = calloc(n, sizeof *ref_p), *ref_g = calloc(n, sizeof *ref_g), *ref_m = calloc(n, sizeof *ref_m);
  for (size_t i = 0; i < n; i++)
    p[i] = ref_p[i] = (float)(i % 17) * 0.5f;
  momentum st = {calloc(L.shard, sizeof(float)), mb_zero_shard_offset(&L, R()), mb_zero_shard_valid(&L, R()), 0};
  for (int step = 0; step < 3; step++) {
    grads_of(g, n, L.padded, R(), step);
    memcpy(ref_g, g, n * sizeof *g);
    /* reference: all-reduce of everything, update of everything */
    assert_int_equal(mb_comm_allreduce(mb_dist_host_comm(g_test_dist), ref_g, ref_g, n, MB_F32, MB_REDUCE_AVG),
                     MB_OK);
    for (size_t i = 0; i < n; i++) {
      ref_m[i] = 0.9f * ref_m[i] + ref_g[i];
      ref_p[i] -= 0.125f * ref_m[i];
    }
    /* in place on odd steps: the gradient shard inside the gradient buffer */
    float *shard = step % 2 ? g + mb_zero_shard_offset(&L, R()) : gs;
    assert_int_equal(mb_zero_step(C(), &L, p, g, shard, momentum_update, &st), MB_OK);
    assert_memory_equal(p, ref_p, n * sizeof *p);
  }
  assert_int_equal(st.calls, st.count > 0 ? 3 : 0);
  /* This rank's momentum is exactly the reference's slice of it. */
  assert_memory_equal(st.m, ref_m + st.offset, st.count * sizeof(float));

  /* "Save" every rank's state shard, as the checkpoint files would hold
   * them, and re-partition for other rank counts. */
  float *all = calloc(L.padded, sizeof *all);
  assert_int_equal(mb_comm_allgather(mb_dist_host_comm(g_test_dist), st.m, all, L.shard, MB_F32), MB_OK);
  const float **old = malloc((size_t)N() * sizeof *old);
  for (int r = 0; r < N(); r++)
    old[r] = all + mb_zero_shard_offset(&L, r);
  for (int M = 1; M <= 5; M++) {
    mb_zero_layout T;
    assert_int_equal(mb_zero_layout_make(n, M, 8, &T), MB_OK);
    float *mine = malloc(T.shard * sizeof *mine), *want = malloc(T.shard * sizeof *want);
    for (int r = 0; r < M; r++) {
      assert_int_equal(mb_zero_reshard(&L, old, &T, r, mine), MB_OK);
      assert_int_equal(mb_zero_scatter(&T, r, ref_m, want), MB_OK);
      assert_memory_equal(mine, want, T.shard * sizeof *mine);
    }
    free(mine);
    free(want);
  }
  double norm = 0;
  assert_int_equal(mb_zero_global_norm(mb_dist_host_comm(g_test_dist), 3.0, &norm), MB_OK);
  assert_true(norm > 0 && (norm * norm - 3.0 * N()) < 1e-9 && (norm * norm - 3.0 * N()) > -1e-9);
  free(old);
  free(all);
  free(st.m);
  free(p);
  free(g);
  free(gs);
  free(ref_p);
  free(ref_g);
  free(ref_m);
}

static int failing_update(void *ctx, float *params, const float *grads, size_t off, size_t count) {
  (void)ctx;
  (void)params;
  (void)grads;
  (void)off;
  (void)count;
  return MB_ERR(MB_EINVAL, "optimizer says no");
}

static void test_zero_errors(void **state) {
  (void)state;
  mb_zero_layout L;
  assert_int_equal(mb_zero_layout_make(100, N() + 1, 1, &L), MB_OK);
  float buf[256] = {0}, gs[256];
  assert_int_equal(mb_zero_step(C(), &L, buf, buf, gs, momentum_update, NULL), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "layout for"));
  /* An update failure is reported with the shard (every rank fails alike,
   * so no rank is left in the all-gather). */
  assert_int_equal(mb_zero_layout_make(100, N(), 1, &L), MB_OK);
  assert_int_equal(mb_zero_step(C(), &L, buf, buf, gs, failing_update, NULL), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "optimizer says no"));
  assert_non_null(strstr(mb_error_message(), "shard"));
  mb_error_clear();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_layout), cmocka_unit_test(test_reshard), cmocka_unit_test(test_reshard_mismatch),
      cmocka_unit_test(test_pieces), cmocka_unit_test(test_zero_step), cmocka_unit_test(test_zero_errors),
  };
  return DIST_TEST_MAIN("dist_zero", tests, NULL);
}
