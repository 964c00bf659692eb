/* test_dist_buckets.c: gradient buckets. Formation (sizes, order, which are
 * contiguous and which staged), every bucket's all-reduce running and the
 * result equal, bit for bit, to one all-reduce of the whole buffer (inputs
 * are integers, so sums are exact in any order), for a layout in forward
 * order, one with alignment padding, a shuffled one and forced staging;
 * buckets starting before the last gradient (the timeline and its Chrome
 * trace); gradient accumulation; bad parameter lists and protocol misuse. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dist_test_util.h"
#include "distributed/buckets.h"
#include "distributed/timeline.h"

#define P 24

static mb_comm *C(void) { return mb_dist_comm(g_test_dist); }
static int R(void) { return mb_comm_rank(C()); }

enum { LAYOUT_FORWARD, LAYOUT_PADDED, LAYOUT_SHUFFLED };

/* Parameters in backward order (the reverse of the forward order), with
 * offsets laid out by `layout`; returns the buffer size in elements. */
static size_t make_params(int layout, mb_grad_param *p, char names[P][32]) {
  size_t sizes[P];
  for (int f = 0; f < P; f++)
    sizes[f] = 1000 + 3777 * (size_t)(f % 5) + (f == 3 ? 100000 : 0) + (size_t)f;
  /* forward index f has backward position P-1-f */
  size_t off = 0;
  int perm[P];
  for (int f = 0; f < P; f++)
    perm[f] = f;
  if (layout == LAYOUT_SHUFFLED) /* a fixed permutation: 7 is coprime to 24 */
    for (int f = 0; f < P; f++)
      perm[f] = (f * 7) % P;
  size_t offsets[P];
  for (int j = 0; j < P; j++) {
    int f = perm[j];
    offsets[f] = off;
    off += sizes[f];
    if (layout == LAYOUT_PADDED)
      off = (off + 15) / 16 * 16;
  }
  for (int f = 0; f < P; f++) {
    int j = P - 1 - f;
    snprintf(names[j], 32, "layer%d.weight", f);
    p[j].name = names[j];
    p[j].offset = offsets[f];
    p[j].count = sizes[f];
  }
  return off;
}

static void fill(float *g, size_t n, int rank, int step) {
  for (size_t i = 0; i < n; i++)
    g[i] = (float)((int)((i * 31 + (size_t)step * 7) % 201) - 100 + rank * 3);
}

static void sleep_us(long us) {
  struct timespec ts = {0, us * 1000};
  nanosleep(&ts, NULL);
}

/* One synchronised step through the buckets vs. one plain all-reduce. */
static void run_and_compare(mb_buckets *b, const mb_grad_param *p, float *g, size_t n, int step) {
  float *ref = malloc(n * sizeof *ref);
  fill(g, n, R(), step);
  memcpy(ref, g, n * sizeof *ref);
  assert_int_equal(mb_comm_allreduce(mb_dist_host_comm(g_test_dist), ref, ref, n, MB_F32, MB_REDUCE_AVG), MB_OK);
  for (int i = 0; i < P; i++) {
    sleep_us(1500); /* "computing" the next gradient */
    assert_int_equal(mb_buckets_grad_ready(b, i), MB_OK);
  }
  assert_int_equal(mb_buckets_wait_all(b), MB_OK);
  /* Elements owned by a parameter must match; padding is not compared. */
  for (int i = 0; i < P; i++)
    if (memcmp(g + p[i].offset, ref + p[i].offset, p[i].count * sizeof(float)) != 0) {
      for (size_t e = 0; e < p[i].count; e++)
        if (g[p[i].offset + e] != ref[p[i].offset + e])
          fail_msg("rank %d step %d: parameter %s element %zu: buckets %g, whole-buffer all-reduce %g", R(), step,
                   p[i].name, e, g[p[i].offset + e], ref[p[i].offset + e]);
    }
  free(ref);
}

static void check_formation(mb_buckets *b, const mb_grad_param *p, size_t cap, size_t first_cap) {
  int nb = mb_buckets_count(b);
  int expect_first = 0;
  for (int k = 0; k < nb; k++) {
    const mb_bucket_info *in = mb_buckets_info(b, k);
    assert_int_equal(in->first, expect_first); /* consecutive in backward order */
    expect_first += in->num_params;
    size_t cnt = 0;
    for (int i = in->first; i < in->first + in->num_params; i++) {
      assert_int_equal(mb_buckets_bucket_of(b, i), k);
      cnt += p[i].count;
    }
    assert_int_equal(in->count, cnt);
    assert_int_equal(in->bytes, cnt * sizeof(float));
    if (k < nb - 1) {
      /* closed as soon as it reached its cap, not before */
      size_t c = k == 0 ? first_cap : cap;
      assert_true(in->bytes >= c);
      assert_true(in->bytes - p[in->first + in->num_params - 1].count * sizeof(float) < c);
    }
  }
  assert_int_equal(expect_first, P);
}

static void test_forward_layout(void **state) {
  (void)state;
  mb_grad_param p[P];
  char names[P][32];
  size_t n = make_params(LAYOUT_FORWARD, p, names);
  float *g = malloc(n * sizeof *g);
  mb_timeline *tl;
  assert_int_equal(mb_timeline_create(R(), 0, &tl), MB_OK);
  mb_buckets_options o = {.bucket_bytes = 64 << 10, .first_bucket_bytes = 16 << 10, .timeline = tl};
  mb_buckets *b;
  assert_int_equal(mb_buckets_create(C(), g, n, p, P, &o, &b), MB_OK);
  int nb = mb_buckets_count(b);
  assert_true(nb >= 4);
  check_formation(b, p, 64 << 10, 16 << 10);
  for (int k = 0; k < nb; k++)
    assert_true(mb_buckets_info(b, k)->contiguous); /* forward layout, backward order: adjacent */
  assert_int_equal(mb_buckets_staging_bytes(b), 0);

  for (int step = 0; step < 3; step++)
    run_and_compare(b, p, g, n, step);

  /* Overlap evidence: every bucket but the last started before the last
   * gradient came in, and ran at least partly during the "backward". */
  mb_overlap_stats st;
  assert_int_equal(mb_buckets_overlap(b, &st), MB_OK);
  assert_int_equal(st.buckets, nb);
  assert_true(st.buckets_started_before_end >= nb - 1);
  assert_true(st.backward_end > st.backward_begin);
  for (int k = 0; k < nb; k++) {
    const mb_bucket_info *in = mb_buckets_info(b, k);
    assert_true(in->t_ready <= in->t_start + 1e-9);
    assert_true(in->t_start <= in->t_end);
    if (k < nb - 1)
      assert_true(in->t_start < st.backward_end);
  }
  if (R() == 0)
    print_message("dist_buckets: %d buckets, comm %.2f ms, hidden %.0f%%, exposed %.2f ms\n", nb,
                  st.comm_total * 1e3, st.hidden_fraction * 100, st.exposed * 1e3);

  /* The timeline: one all-reduce slice per bucket per step and one
   * readiness instant per parameter per step; the Chrome trace holds them. */
  size_t allreduce = 0, ready = 0;
  for (size_t i = 0; i < mb_timeline_count(tl); i++) {
    const mb_timeline_event *e = mb_timeline_get(tl, i);
    allreduce += !strcmp(e->cat, "allreduce");
    ready += !strcmp(e->cat, "grad_ready");
  }
  assert_int_equal(allreduce, (size_t)nb * 3);
  assert_int_equal(ready, (size_t)P * 3);
  char path[64];
  snprintf(path, sizeof path, "/tmp/mambert-dist-trace-%d-r%d.json", (int)getpid(), R());
  assert_int_equal(mb_timeline_write_chrome(tl, path), MB_OK);
  json_error_t err;
  json_t *root = json_load_file(path, 0, &err);
  assert_non_null(root);
  json_t *ev = json_object_get(root, "traceEvents");
  assert_true(json_is_array(ev));
  size_t slices = 0, idx;
  json_t *e;
  json_array_foreach(ev, idx, e) {
    const char *ph = json_string_value(json_object_get(e, "ph"));
    const char *cat = json_string_value(json_object_get(e, "cat"));
    if (ph && cat && !strcmp(ph, "X") && !strcmp(cat, "allreduce")) {
      slices++;
      assert_true(json_number_value(json_object_get(e, "dur")) >= 0);
      assert_int_equal(json_integer_value(json_object_get(e, "pid")), R());
    }
  }
  assert_int_equal(slices, allreduce);
  json_decref(root);
  unlink(path);

  /* Every rank's events in one trace, written by rank 0. */
  int nranks = mb_comm_size(C());
  /* rank 0's pid names the file on every rank */
  int32_t pid0 = (int32_t)getpid();
  assert_int_equal(mb_comm_broadcast(mb_dist_host_comm(g_test_dist), &pid0, 1, MB_I32, 0), MB_OK);
  snprintf(path, sizeof path, "/tmp/mambert-dist-trace-all-%d.json", (int)pid0);
  assert_int_equal(mb_timeline_write_chrome_all(tl, mb_dist_host_comm(g_test_dist), path), MB_OK);
  if (R() == 0) {
    root = json_load_file(path, 0, &err);
    assert_non_null(root);
    ev = json_object_get(root, "traceEvents");
    int *per_rank = calloc((size_t)nranks, sizeof *per_rank);
    json_array_foreach(ev, idx, e) {
      const char *cat = json_string_value(json_object_get(e, "cat"));
      int pid = (int)json_integer_value(json_object_get(e, "pid"));
      assert_true(pid >= 0 && pid < nranks);
      if (cat && !strcmp(cat, "allreduce"))
        per_rank[pid]++;
    }
    for (int r = 0; r < nranks; r++)
      assert_int_equal(per_rank[r], nb * 3);
    free(per_rank);
    json_decref(root);
    unlink(path);
  }

  mb_buckets_destroy(b);
  mb_timeline_destroy(tl);
  free(g);
}

static void test_padded_layout(void **state) {
  (void)state;
  mb_grad_param p[P];
  char names[P][32];
  size_t n = make_params(LAYOUT_PADDED, p, names);
  float *g = malloc(n * sizeof *g);
  mb_buckets_options o = {.bucket_bytes = 48 << 10};
  mb_buckets *b;
  assert_int_equal(mb_buckets_create(C(), g, n, p, P, &o, &b), MB_OK);
  check_formation(b, p, 48 << 10, 48 << 10);
  for (int k = 0; k < mb_buckets_count(b); k++) {
    const mb_bucket_info *in = mb_buckets_info(b, k);
    assert_true(in->contiguous); /* 16-element alignment gaps are tolerated */
    assert_true(in->span >= in->count);
  }
  run_and_compare(b, p, g, n, 5);
  mb_buckets_destroy(b);
  free(g);
}

static void test_shuffled_and_forced_staging(void **state) {
  (void)state;
  mb_grad_param p[P];
  char names[P][32];
  size_t n = make_params(LAYOUT_SHUFFLED, p, names);
  float *g = malloc(n * sizeof *g);
  mb_buckets_options o = {.bucket_bytes = 64 << 10};
  mb_buckets *b;
  assert_int_equal(mb_buckets_create(C(), g, n, p, P, &o, &b), MB_OK);
  check_formation(b, p, 64 << 10, 64 << 10);
  int staged = 0;
  for (int k = 0; k < mb_buckets_count(b); k++)
    staged += !mb_buckets_info(b, k)->contiguous;
  assert_true(staged >= 1);
  assert_true(mb_buckets_staging_bytes(b) > 0);
  run_and_compare(b, p, g, n, 1);
  run_and_compare(b, p, g, n, 2);
  mb_buckets_destroy(b);

  /* Forward layout, but every bucket staged: adjacent pieces merge. */
  n = make_params(LAYOUT_FORWARD, p, names);
  free(g);
  g = malloc(n * sizeof *g);
  mb_buckets_options o2 = {.bucket_bytes = 64 << 10, .force_staging = 1};
  assert_int_equal(mb_buckets_create(C(), g, n, p, P, &o2, &b), MB_OK);
  for (int k = 0; k < mb_buckets_count(b); k++) {
    const mb_bucket_info *in = mb_buckets_info(b, k);
    assert_false(in->contiguous);
    assert_true(in->num_segments >= 1 && in->num_segments <= in->num_params);
  }
  run_and_compare(b, p, g, n, 3);
  mb_buckets_destroy(b);
  free(g);
}

/* Micro-batches without communication, then the synchronising one. */
static void test_accumulation(void **state) {
  (void)state;
  mb_grad_param p[P];
  char names[P][32];
  size_t n = make_params(LAYOUT_FORWARD, p, names);
  float *g = malloc(n * sizeof *g), *before = malloc(n * sizeof *g);
  mb_buckets_options o = {.bucket_bytes = 64 << 10};
  mb_buckets *b;
  assert_int_equal(mb_buckets_create(C(), g, n, p, P, &o, &b), MB_OK);
  fill(g, n, R(), 9);
  memcpy(before, g, n * sizeof *g);
  for (int micro = 0; micro < 2; micro++) {
    assert_int_equal(mb_buckets_begin_step(b, 0), MB_OK);
    for (int i = 0; i < P; i++)
      assert_int_equal(mb_buckets_grad_ready(b, i), MB_OK);
    assert_int_equal(mb_buckets_wait_all(b), MB_OK);
    assert_memory_equal(g, before, n * sizeof *g); /* nothing was sent */
  }
  assert_int_equal(mb_buckets_begin_step(b, 1), MB_OK);
  run_and_compare(b, p, g, n, 9);
  mb_buckets_destroy(b);
  free(g);
  free(before);
}

static void test_bad_params(void **state) {
  (void)state;
  float g[100];
  mb_buckets *b = NULL;
  mb_grad_param out_of_range[2] = {{"a", 0, 50}, {"b", 60, 50}};
  assert_int_equal(mb_buckets_create(C(), g, 100, out_of_range, 2, NULL, &b), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "'b' spans elements [60, 110) of a 100-element"));
  mb_grad_param overlap[3] = {{"a", 0, 30}, {"b", 50, 20}, {"c", 25, 10}};
  assert_int_equal(mb_buckets_create(C(), g, 100, overlap, 3, NULL, &b), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "'a' [0, 30) and 'c' [25, 35) overlap"));
  mb_grad_param empty[1] = {{"e", 0, 0}};
  assert_int_equal(mb_buckets_create(C(), g, 100, empty, 1, NULL, &b), MB_EINVAL);
  assert_null(b);
  mb_error_clear();
}

static void test_misuse(void **state) {
  (void)state;
  float g[300];
  for (int i = 0; i < 300; i++)
    g[i] = 1;
  /* 3 buckets of one parameter each */
  mb_grad_param p[3] = {{"c", 200, 100}, {"b", 100, 100}, {"a", 0, 100}};
  mb_buckets_options o = {.bucket_bytes = 1};
  mb_buckets *b;
  assert_int_equal(mb_buckets_create(C(), g, 300, p, 3, &o, &b), MB_OK);
  assert_int_equal(mb_buckets_count(b), 3);
  assert_int_equal(mb_buckets_grad_ready(b, 3), MB_EINVAL);
  assert_int_equal(mb_buckets_grad_ready(b, -1), MB_EINVAL);
  /* Parameter 0 ('c', bucket 0) missing: nothing may start (buckets go in
   * order), and the wait names it. */
  assert_int_equal(mb_buckets_grad_ready(b, 1), MB_OK);
  assert_int_equal(mb_buckets_grad_ready(b, 2), MB_OK);
  assert_int_equal(mb_buckets_wait_all(b), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "'c'"));
  assert_int_equal(mb_buckets_grad_ready(b, 1), MB_EINVAL); /* twice in one step */
  assert_non_null(strstr(mb_error_message(), "'b' reported twice"));
  assert_int_equal(mb_buckets_grad_ready(b, 0), MB_OK); /* now all three start */
  /* Beginning a new step while buckets may be in flight is refused (when
   * they already finished it is allowed, so only the message is checked). */
  if (mb_buckets_begin_step(b, 1) != MB_OK) {
    assert_non_null(strstr(mb_error_message(), "still in flight"));
    assert_int_equal(mb_buckets_wait_all(b), MB_OK);
  }
  for (int i = 0; i < 300; i++)
    assert_true(g[i] == 1.0f); /* average of ones */
  mb_buckets_destroy(b);
  mb_error_clear();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_forward_layout), cmocka_unit_test(test_padded_layout),
      cmocka_unit_test(test_shuffled_and_forced_staging), cmocka_unit_test(test_accumulation),
      cmocka_unit_test(test_bad_params), cmocka_unit_test(test_misuse),
  };
  return DIST_TEST_MAIN("dist_buckets", tests, NULL);
}
