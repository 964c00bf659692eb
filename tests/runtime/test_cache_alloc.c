/* test_cache_alloc.c: the caching allocator policy (runtime/cache_alloc.h)
 * over a fake block source built on malloc, with a capacity to provoke
 * out-of-memory, so the policy is tested without a GPU. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cache_alloc.h"
#include "runtime/error.h"

#define MiB ((size_t)1 << 20)

/* ---- a fake source: malloc with a capacity and counters ---- */

typedef struct {
  size_t capacity, in_use;
  long live, allocs, frees;
  int destroyed;
  pthread_mutex_t mu;
} fake_source;

#define HDR 64 /* the fake keeps each block's size in front of it */

static int fake_alloc(void *ctx, size_t n, void **out) {
  fake_source *f = ctx;
  pthread_mutex_lock(&f->mu);
  if (f->in_use + n > f->capacity) {
    pthread_mutex_unlock(&f->mu);
    return MB_ERR(MB_ENOMEM, "fake source: out of memory (%zu in use of %zu)", f->in_use, f->capacity);
  }
  f->in_use += n;
  f->live++;
  f->allocs++;
  pthread_mutex_unlock(&f->mu);
  unsigned char *p = malloc(n + HDR);
  assert_non_null(p);
  memcpy(p, &n, sizeof n);
  *out = p + HDR;
  return MB_OK;
}

static void fake_free(void *ctx, void *p) {
  fake_source *f = ctx;
  unsigned char *raw = (unsigned char *)p - HDR;
  size_t n;
  memcpy(&n, raw, sizeof n);
  free(raw);
  pthread_mutex_lock(&f->mu);
  f->in_use -= n;
  f->live--;
  f->frees++;
  pthread_mutex_unlock(&f->mu);
}

static void fake_destroy(void *ctx) { ((fake_source *)ctx)->destroyed = 1; }

static mb_block_source fake(fake_source *f, size_t capacity) {
  memset(f, 0, sizeof *f);
  f->capacity = capacity;
  pthread_mutex_init(&f->mu, NULL);
  mb_block_source s = {f, fake_alloc, fake_free, fake_destroy, "fake:0"};
  return s;
}

/* ---- tests ---- */

static void test_cache_size_classes(void **state) {
  (void)state;
  const size_t table[][2] = {
      {0, 512},
      {1, 512},
      {512, 512},
      {513, 1024},
      {4000, 4096},
      {MiB - 1, MiB},
      {MiB, MiB},
      {MiB + 1, MiB + MiB / 4},
      {MiB + MiB / 4, MiB + MiB / 4},
      {MiB + MiB / 4 + 1, MiB + MiB / 2},
      {2 * MiB - 1, 2 * MiB},
      {2 * MiB, 2 * MiB},
      {2 * MiB + 1, 2 * MiB + MiB / 2},
      {3 * 1024 * MiB + 1, 3 * 1024 * MiB + 512 * MiB},
      {SIZE_MAX, 0},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (mb_cache_round_size(table[i][0]) != table[i][1])
      fail_msg("round(%zu) = %zu, want %zu", table[i][0], mb_cache_round_size(table[i][0]), table[i][1]);
  /* properties over many sizes: covers n, wastes < max(512, 25%), idempotent */
  uint64_t s = 12345;
  for (int i = 0; i < 200000; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    size_t n = (size_t)(s >> (20 + (s & 31))); /* log-spread sizes */
    size_t r = mb_cache_round_size(n);
    assert_true(r >= n && r > 0);
    assert_true(n <= MiB ? r - n <= 512 : r - n < n / 4);
    assert_int_equal(mb_cache_round_size(r), r);
    assert_int_equal(r % 512, 0);
  }
}

static void test_cache_reuse_and_stats(void **state) {
  (void)state;
  fake_source f;
  mb_cache *c;
  assert_int_equal(mb_cache_create(fake(&f, 1 << 30), &c), MB_OK);
  void *a, *b, *a2;
  assert_int_equal(mb_cache_alloc(c, 1000, &a), MB_OK);
  memset(a, 1, 1024); /* the whole class is usable */
  assert_int_equal(mb_cache_block_size(c, a), 1024);
  mb_cache_stats st = mb_cache_get_stats(c);
  assert_int_equal(st.allocated, 1024);
  assert_int_equal(st.requested, 1000);
  assert_int_equal(st.reserved, 1024);
  assert_int_equal(st.cached, 0);
  assert_int_equal(st.n_source_allocs, 1);
  assert_int_equal(mb_cache_free(c, a), MB_OK);
  st = mb_cache_get_stats(c);
  assert_int_equal(st.allocated, 0);
  assert_int_equal(st.requested, 0);
  assert_int_equal(st.cached, 1024);
  assert_int_equal(st.reserved, 1024);
  assert_int_equal(st.peak_allocated, 1024);
  assert_int_equal(f.live, 1); /* kept, not returned */
  /* same class: the same block, no source call */
  assert_int_equal(mb_cache_alloc(c, 900, &a2), MB_OK);
  assert_ptr_equal(a2, a);
  st = mb_cache_get_stats(c);
  assert_int_equal(st.n_cache_hits, 1);
  assert_int_equal(st.n_source_allocs, 1);
  assert_int_equal(st.cached, 0);
  /* another class: a new block */
  assert_int_equal(mb_cache_alloc(c, 3 * MiB, &b), MB_OK);
  assert_int_equal(mb_cache_block_size(c, b), 3 * MiB);
  st = mb_cache_get_stats(c);
  assert_int_equal(st.allocated, 1024 + 3 * MiB);
  assert_int_equal(st.peak_allocated, 1024 + 3 * MiB);
  assert_int_equal(st.n_source_allocs, 2);
  assert_int_equal(mb_cache_free(c, b), MB_OK);
  assert_int_equal(mb_cache_free(c, a2), MB_OK);
  /* peaks stay until reset */
  st = mb_cache_get_stats(c);
  assert_int_equal(st.peak_allocated, 1024 + 3 * MiB);
  assert_int_equal(st.peak_requested, 900 + 3 * MiB);
  assert_int_equal(st.peak_reserved, 1024 + 3 * MiB);
  mb_cache_reset_peak(c);
  st = mb_cache_get_stats(c);
  assert_int_equal(st.peak_allocated, 0);
  assert_int_equal(st.peak_reserved, 1024 + 3 * MiB); /* still held as cache */
  /* empty_cache gives everything back */
  mb_cache_empty(c);
  st = mb_cache_get_stats(c);
  assert_int_equal(st.cached, 0);
  assert_int_equal(st.reserved, 0);
  assert_int_equal(f.live, 0);
  assert_int_equal(st.n_source_frees, 2);
  assert_int_equal(st.n_allocs, 3);
  assert_int_equal(st.n_frees, 3);
  mb_cache_destroy(c);
  assert_true(f.destroyed);
}

/* A training loop allocates the same sizes every step: after the first
 * step, the source is never called again. */
static void test_cache_steady_state(void **state) {
  (void)state;
  fake_source f;
  mb_cache *c;
  assert_int_equal(mb_cache_create(fake(&f, 1 << 30), &c), MB_OK);
  const size_t sizes[] = {4, 3000, 3000, 70000, MiB + 7, 5 * MiB, 100, 0};
  enum { K = sizeof sizes / sizeof sizes[0] };
  void *p[K];
  for (int step = 0; step < 10; step++) {
    for (int i = 0; i < K; i++)
      assert_int_equal(mb_cache_alloc(c, sizes[i], &p[i]), MB_OK);
    for (int i = 0; i < K; i++)
      for (int j = 0; j < i; j++)
        assert_ptr_not_equal(p[i], p[j]); /* zero-size requests get their own block too */
    for (int i = K - 1; i >= 0; i--)
      assert_int_equal(mb_cache_free(c, p[i]), MB_OK);
    if (step == 0)
      assert_int_equal(f.allocs, K);
  }
  mb_cache_stats st = mb_cache_get_stats(c);
  assert_int_equal(f.allocs, K);
  assert_int_equal(st.n_source_allocs, K);
  assert_int_equal(st.n_cache_hits, 9 * K);
  mb_cache_destroy(c);
  assert_int_equal(f.live, 0);
}

static void test_cache_out_of_memory(void **state) {
  (void)state;
  fake_source f;
  mb_cache *c;
  assert_int_equal(mb_cache_create(fake(&f, 3 * MiB), &c), MB_OK);
  void *a, *b, *x;
  assert_int_equal(mb_cache_alloc(c, 2 * MiB, &a), MB_OK);
  assert_int_equal(mb_cache_free(c, a), MB_OK); /* 2 MiB cached */
  /* 1.5 MiB does not fit next to the cached 2 MiB: the cache is flushed and the retry succeeds */
  assert_int_equal(mb_cache_alloc(c, MiB + MiB / 2, &b), MB_OK);
  mb_cache_stats st = mb_cache_get_stats(c);
  assert_int_equal(st.n_oom_flushes, 1);
  assert_int_equal(st.cached, 0);
  assert_int_equal(st.reserved, MiB + MiB / 2);
  assert_int_equal(f.in_use, MiB + MiB / 2);
  /* really out of memory: a clear error, nothing changed */
  assert_int_equal(mb_cache_alloc(c, 2 * MiB, &x), MB_ENOMEM);
  assert_null(x);
  const char *msg = mb_error_message();
  assert_non_null(strstr(msg, "fake:0: allocating 2097152 bytes"));
  assert_non_null(strstr(msg, "nothing cached"));
  assert_non_null(strstr(msg, "fake source: out of memory"));
  st = mb_cache_get_stats(c);
  assert_int_equal(st.allocated, MiB + MiB / 2);
  assert_int_equal(mb_cache_free(c, b), MB_OK);
  /* after a flush that did not help, the message says so */
  assert_int_equal(mb_cache_alloc(c, 4 * MiB, &x), MB_ENOMEM);
  assert_non_null(strstr(mb_error_message(), "even after releasing 1572864 cached bytes"));
  assert_int_equal(mb_cache_alloc(c, SIZE_MAX - 5, &x), MB_ENOMEM);
  assert_non_null(strstr(mb_error_message(), "too large"));
  mb_cache_destroy(c);
  assert_int_equal(f.live, 0);
}

static void test_cache_bad_frees(void **state) {
  (void)state;
  fake_source f;
  mb_cache *c;
  assert_int_equal(mb_cache_create(fake(&f, 1 << 30), &c), MB_OK);
  void *a;
  assert_int_equal(mb_cache_alloc(c, 64, &a), MB_OK);
  int local;
  assert_int_equal(mb_cache_free(c, &local), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "did not hand out"));
  assert_int_equal(mb_cache_free(c, NULL), MB_OK);
  assert_int_equal(mb_cache_free(c, a), MB_OK);
  assert_int_equal(mb_cache_free(c, a), MB_EINVAL); /* twice */
  mb_cache_stats st = mb_cache_get_stats(c);
  assert_int_equal(st.n_frees, 1);
  assert_int_equal(st.cached, 512);
  mb_cache_destroy(c);
  mb_block_source incomplete = {NULL, NULL, NULL, NULL, NULL};
  assert_int_equal(mb_cache_create(incomplete, &c), MB_EINVAL);
}

/* Many blocks, random sizes, freed in random order: the live-block table
 * (with backward-shift deletion) and the statistics stay exact. */
static void test_cache_many_blocks(void **state) {
  (void)state;
  fake_source f;
  mb_cache *c;
  assert_int_equal(mb_cache_create(fake(&f, (size_t)1 << 40), &c), MB_OK);
  enum { N = 20000 };
  void **p = calloc(N, sizeof *p);
  size_t *sz = calloc(N, sizeof *sz);
  uint64_t s = 7;
  size_t live_alloc = 0, live_req = 0;
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < N; i++) {
      if (p[i])
        continue;
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      sz[i] = (size_t)(s >> 52); /* 0 .. 4095 */
      assert_int_equal(mb_cache_alloc(c, sz[i], &p[i]), MB_OK);
      live_alloc += mb_cache_round_size(sz[i]);
      live_req += sz[i];
    }
    for (int i = 0; i < N; i++) { /* free about half, scattered */
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      if ((s >> 33) & 1) {
        assert_int_equal(mb_cache_free(c, p[i]), MB_OK);
        live_alloc -= mb_cache_round_size(sz[i]);
        live_req -= sz[i];
        p[i] = NULL;
      }
    }
    for (int i = 0; i < N; i++)
      assert_int_equal(mb_cache_block_size(c, p[i]), p[i] ? mb_cache_round_size(sz[i]) : 0);
    mb_cache_stats st = mb_cache_get_stats(c);
    assert_int_equal(st.allocated, live_alloc);
    assert_int_equal(st.requested, live_req);
    assert_int_equal(st.reserved, st.allocated + st.cached);
    assert_int_equal((size_t)f.in_use, st.reserved);
  }
  for (int i = 0; i < N; i++)
    assert_int_equal(mb_cache_free(c, p[i]), MB_OK);
  assert_int_equal(mb_cache_get_stats(c).allocated, 0);
  mb_cache_destroy(c);
  assert_int_equal(f.live, 0);
  free(p);
  free(sz);
}

typedef struct {
  mb_cache *c;
  int seed;
} worker_arg;

static void *worker(void *argp) {
  worker_arg *arg = argp;
  void *held[16] = {0};
  uint64_t s = (uint64_t)arg->seed;
  for (int i = 0; i < 20000; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    int k = (int)((s >> 40) % 16);
    if (held[k]) {
      if (mb_cache_free(arg->c, held[k]) != MB_OK)
        return (void *)1;
      held[k] = NULL;
    } else {
      if (mb_cache_alloc(arg->c, (size_t)(s >> 50), &held[k]) != MB_OK)
        return (void *)1;
      *(volatile char *)held[k] = 1;
    }
  }
  for (int k = 0; k < 16; k++)
    if (held[k] && mb_cache_free(arg->c, held[k]) != MB_OK)
      return (void *)1;
  return NULL;
}

static void test_cache_threads(void **state) {
  (void)state;
  fake_source f;
  mb_cache *c;
  assert_int_equal(mb_cache_create(fake(&f, (size_t)1 << 40), &c), MB_OK);
  pthread_t t[4];
  worker_arg args[4];
  for (int i = 0; i < 4; i++) {
    args[i] = (worker_arg){c, i + 1};
    assert_int_equal(pthread_create(&t[i], NULL, worker, &args[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    void *r;
    pthread_join(t[i], &r);
    assert_null(r);
  }
  mb_cache_stats st = mb_cache_get_stats(c);
  assert_int_equal(st.allocated, 0);
  assert_int_equal(st.requested, 0);
  assert_int_equal(st.n_allocs, st.n_frees);
  assert_int_equal(st.reserved, st.cached);
  mb_cache_destroy(c);
  assert_int_equal(f.live, 0);
}

/* The same policy behind the mb_device_allocator interface. */
static void test_cache_as_device_allocator(void **state) {
  (void)state;
  fake_source f;
  mb_device_allocator *a;
  assert_int_equal(mb_caching_allocator_create(fake(&f, 1 << 30), &a), MB_OK);
  assert_non_null(mb_caching_allocator_cache(a));
  void *x, *y;
  assert_int_equal(a->alloc(a, 10000, &x), MB_OK);
  assert_int_equal(a->alloc(a, 20000, &y), MB_OK);
  mb_mem_stats m = a->stats(a);
  assert_int_equal(m.current, 10240 + 20480);
  assert_int_equal(m.peak, 10240 + 20480);
  assert_int_equal(m.total_allocs, 2);
  a->free(a, y);
  a->reset_peak(a);
  m = a->stats(a);
  assert_int_equal(m.current, 10240);
  assert_int_equal(m.peak, 10240);
  a->empty_cache(a);
  assert_int_equal(f.live, 1);
  int local;
  a->free(a, &local); /* logged, not fatal */
  /* destroy with x still live: freed with a warning */
  a->destroy(a);
  assert_int_equal(f.live, 0);
  assert_true(f.destroyed);
  mb_device_allocator other = {0};
  assert_null(mb_caching_allocator_cache(&other));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cache_size_classes),  cmocka_unit_test(test_cache_reuse_and_stats),
      cmocka_unit_test(test_cache_steady_state),  cmocka_unit_test(test_cache_out_of_memory),
      cmocka_unit_test(test_cache_bad_frees),     cmocka_unit_test(test_cache_many_blocks),
      cmocka_unit_test(test_cache_threads),       cmocka_unit_test(test_cache_as_device_allocator),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
