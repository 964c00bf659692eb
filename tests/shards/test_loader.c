/* test_loader.c: the loader on synthetic shard sets: coverage and
 * disjointness for 1..8 ranks, determinism, bucketed shapes, the truncation
 * rule, packed batches (cu_seqlens, budget, positions), the evaluation
 * protocol, resuming from a saved position (also on another number of ranks
 * with the same global batch), and configuration errors. */
#include "tests/shards/test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "data/loader.h"
#include "data/shuffle.h"
#include "runtime/alloc.h"
#include "runtime/hash.h"

static void expect_msg(const char *frag1, const char *frag2) {
  const char *m = mb_error_message();
  if (!strstr(m, frag1) || (frag2 && !strstr(m, frag2)))
    fail_msg("error message '%s' lacks '%s'%s%s", m, frag1, frag2 ? " or " : "", frag2 ? frag2 : "");
}

/* Token t of example i (not special): recognisable in batches. */
static int32_t tok(int64_t i, int64_t t) { return (int32_t)(5 + (i * 131 + t * 7) % 990); }

/* n examples with lengths lo..hi; with specials: [2] ... [3]. */
static mb_shardset *mem_set(int64_t n, int32_t lo, int32_t hi, int add_special, uint64_t seed) {
  mb_shardset *s = calloc(1, sizeof *s);
  s->n = n;
  s->lengths = mb_host_malloc((size_t)n * sizeof(int32_t));
  s->labels = mb_host_malloc((size_t)n * sizeof(int32_t));
  s->example_ids = mb_host_malloc((size_t)n * sizeof(int64_t));
  s->offsets = mb_host_malloc((size_t)(n + 1) * sizeof(int64_t));
  uint64_t key = mb_shuffle_key(seed, 9, 9, 9), c = 0;
  s->offsets[0] = 0;
  for (int64_t i = 0; i < n; i++) {
    s->lengths[i] = lo + (int32_t)mb_shuffle_below(key, &c, (uint64_t)(hi - lo + 1));
    s->labels[i] = (int32_t)(i % 3 == 0);
    s->example_ids[i] = 5000 + i;
    s->offsets[i + 1] = s->offsets[i] + s->lengths[i];
  }
  s->n_tokens = s->offsets[n];
  s->tokens = mb_host_malloc((size_t)(s->n_tokens + 1) * sizeof(int32_t));
  for (int64_t i = 0; i < n; i++) {
    int32_t *d = s->tokens + s->offsets[i];
    for (int32_t t = 0; t < s->lengths[i]; t++)
      d[t] = tok(i, t);
    if (add_special && s->lengths[i] >= 2) {
      d[0] = 2;
      d[s->lengths[i] - 1] = 3;
    }
  }
  s->meta.n_examples = n;
  s->meta.n_tokens = s->n_tokens;
  s->meta.add_special = add_special;
  s->meta.pad_id = 0;
  s->meta.vocab_size = 1000;
  snprintf(s->meta.dataset, sizeof s->meta.dataset, "imdb");
  snprintf(s->meta.split, sizeof s->meta.split, "train");
  memset(s->meta.vocab_sha256, 'c', 64);
  return s;
}

/* The ids the loader must give for example i at max_length L (HF rule). */
static int32_t expected_id(const mb_shardset *s, int64_t i, int32_t L, int32_t t) {
  int32_t full = s->lengths[i];
  const int32_t *src = mb_shardset_ids(s, i);
  if (full > L && s->meta.add_special && t == L - 1)
    return src[full - 1];
  return src[t];
}

/* Check one batch's internal consistency against the set; mark seen[]. */
static void check_batch(const mb_shardset *s, const mb_loader_config *c, const mb_batch *b, int32_t *seen) {
  int64_t tokens = 0;
  if (b->mode == MB_BATCH_PADDED) {
    /* trim_last (evaluation): a partial batch has only its rows */
    assert_int_equal(b->rows, c->trim_last && b->n_seqs > 0 ? b->n_seqs : c->batch_size);
    assert_null(b->cu_seqlens);
    assert_true(b->seq_len >= 1 && b->seq_len <= c->max_length);
    for (int32_t j = 0; j < b->rows; j++) {
      const int32_t *ids = b->input_ids + (int64_t)j * b->seq_len;
      const int32_t *m = b->attention_mask + (int64_t)j * b->seq_len;
      if (j >= b->n_seqs) {
        assert_int_equal(b->labels[j], -1);
        assert_int_equal(b->indices[j], -1);
        assert_int_equal(b->example_ids[j], -1);
        assert_int_equal(b->lengths[j], 0);
        for (int32_t t = 0; t < b->seq_len; t++) {
          assert_int_equal(m[t], 0);
          assert_int_equal(ids[t], c->pad_id);
        }
        continue;
      }
      int64_t i = b->indices[j];
      assert_true(i >= 0 && i < s->n);
      seen[i]++;
      int32_t L = s->lengths[i] < c->max_length ? s->lengths[i] : c->max_length;
      assert_int_equal(b->lengths[j], L);
      assert_true(L <= b->seq_len);
      assert_int_equal(b->labels[j], s->labels[i]);
      assert_int_equal(b->example_ids[j], s->example_ids[i]);
      for (int32_t t = 0; t < b->seq_len; t++) {
        assert_int_equal(m[t], t < L);
        assert_int_equal(ids[t], t < L ? expected_id(s, i, c->max_length, t) : c->pad_id);
      }
      tokens += L;
    }
  } else {
    assert_int_equal(b->rows, c->max_seqs);
    assert_int_equal(b->seq_len, c->token_budget);
    assert_true(b->n_seqs <= c->max_seqs);
    assert_int_equal(b->cu_seqlens[0], 0);
    for (int32_t j = 0; j < b->rows; j++) {
      int32_t a = b->cu_seqlens[j], e = b->cu_seqlens[j + 1];
      assert_true(e >= a);
      if (j >= b->n_seqs) {
        assert_int_equal(a, b->n_tokens);
        assert_int_equal(e, b->n_tokens);
        assert_int_equal(b->labels[j], -1);
        assert_int_equal(b->indices[j], -1);
        continue;
      }
      int64_t i = b->indices[j];
      assert_true(i >= 0 && i < s->n);
      seen[i]++;
      int32_t L = s->lengths[i] < c->max_length ? s->lengths[i] : c->max_length;
      assert_int_equal(e - a, L);
      assert_int_equal(b->lengths[j], L);
      assert_int_equal(b->labels[j], s->labels[i]);
      for (int32_t t = 0; t < L; t++) {
        assert_int_equal(b->input_ids[a + t], expected_id(s, i, c->max_length, t));
        assert_int_equal(b->position_ids[a + t], t);
        assert_int_equal(b->attention_mask[a + t], 1);
      }
      tokens += L;
    }
    assert_true(b->n_tokens <= b->seq_len); /* the budget */
    for (int32_t t = (int32_t)b->n_tokens; t < b->seq_len; t++) {
      assert_int_equal(b->attention_mask[t], 0);
      assert_int_equal(b->input_ids[t], c->pad_id);
      assert_int_equal(b->position_ids[t], 0);
    }
  }
  assert_int_equal(b->n_tokens, tokens);
}

/* Run one epoch on every rank; return per-example counts and steps. */
static void run_epoch_all_ranks(const mb_shardset *s, mb_loader_config c, int64_t epoch, int32_t *seen,
                                int64_t *steps_out) {
  int64_t steps0 = -1;
  memset(seen, 0, (size_t)s->n * sizeof *seen);
  for (int32_t r = 0; r < c.world_size; r++) {
    c.rank = r;
    mb_loader *l;
    assert_ok(mb_loader_create(s, &c, &l));
    mb_loader_position pos = {epoch, 0};
    assert_ok(mb_loader_seek(l, pos));
    int64_t steps;
    assert_ok(mb_loader_steps_in_epoch(l, epoch, &steps));
    if (steps0 < 0)
      steps0 = steps;
    assert_int_equal(steps, steps0); /* every rank takes as many steps */
    for (int64_t k = 0; k < steps; k++) {
      const mb_batch *b;
      assert_ok(mb_loader_next(l, &b));
      assert_int_equal(b->epoch, epoch);
      assert_int_equal(b->step, k);
      check_batch(s, mb_loader_config_of(l), b, seen);
    }
    assert_int_equal(mb_loader_tell(l).epoch, epoch + 1);
    assert_int_equal(mb_loader_tell(l).step, 0);
    mb_loader_free(l);
  }
  *steps_out = steps0;
}

static void test_coverage_and_disjointness(void **state) {
  (void)state;
  const int64_t sizes[2] = {840, 1001}; /* 840 = 8*7*5*3: divisible by 1..8 */
  for (int si = 0; si < 2; si++) {
    mb_shardset *s = mem_set(sizes[si], 0, 700, 1, 3);
    int32_t *seen = calloc((size_t)s->n, sizeof *seen);
    for (int mode = 0; mode < 2; mode++)
      for (int rem = 0; rem < 2; rem++)
        for (int shuffle = 0; shuffle < 2; shuffle++)
          for (int32_t W = 1; W <= 8; W++) {
            mb_loader_config c = mb_loader_train_config(16, 512, 77);
            c.mode = mode ? MB_BATCH_PACKED : MB_BATCH_PADDED;
            c.token_budget = 2048;
            c.window = mode ? 200 : 64 * 16;
            c.shuffle = shuffle;
            c.remainder = rem ? MB_REMAINDER_PAD : MB_REMAINDER_DROP;
            c.world_size = W;
            int64_t steps;
            run_epoch_all_ranks(s, c, 1, seen, &steps);
            int64_t once = 0;
            for (int64_t i = 0; i < s->n; i++) {
              assert_true(seen[i] <= 1); /* disjoint across ranks and steps */
              once += seen[i];
            }
            const int64_t per_rank = rem ? (s->n + W - 1) / W : s->n / W;
            if (rem || s->n % W == 0)
              assert_int_equal(once, s->n); /* every example exactly once */
            else
              assert_int_equal(once, per_rank * W); /* only the remainder is dropped */
            if (!mode)
              assert_int_equal(steps, (per_rank + 15) / 16);
          }
    free(seen);
    mb_shardset_free(s);
  }
}

/* sha256 of every field of a run of batches. */
static void digest_batches(mb_loader *l, int64_t count, uint8_t out[32]) {
  mb_sha256 *h = mb_sha256_new();
  for (int64_t k = 0; k < count; k++) {
    const mb_batch *b;
    assert_ok(mb_loader_next(l, &b));
    int64_t tok = b->mode == MB_BATCH_PADDED ? (int64_t)b->rows * b->seq_len : b->seq_len;
    mb_sha256_update(h, &b->epoch, sizeof b->epoch);
    mb_sha256_update(h, &b->step, sizeof b->step);
    mb_sha256_update(h, &b->seq_len, sizeof b->seq_len);
    mb_sha256_update(h, &b->n_seqs, sizeof b->n_seqs);
    mb_sha256_update(h, b->input_ids, (size_t)tok * 4);
    mb_sha256_update(h, b->attention_mask, (size_t)tok * 4);
    if (b->cu_seqlens) {
      mb_sha256_update(h, b->cu_seqlens, (size_t)(b->rows + 1) * 4);
      mb_sha256_update(h, b->position_ids, (size_t)tok * 4);
    }
    mb_sha256_update(h, b->labels, (size_t)b->rows * 4);
    mb_sha256_update(h, b->indices, (size_t)b->rows * 8);
  }
  mb_sha256_final(h, out);
}

static int cmp_u64(const void *a, const void *b) {
  const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void test_determinism(void **state) {
  (void)state;
  /* the stream is Philox's (u32 elements 2c, 2c+1 make value c) and pinned:
   * the same numbers on every platform */
  uint32_t w[8];
  mb_philox_fill_u32(mb_shuffle_key(1, 2, 3, 4), 0, w, 8);
  for (uint64_t c = 0; c < 4; c++)
    assert_true(mb_shuffle_u64(mb_shuffle_key(1, 2, 3, 4), c) == ((uint64_t)w[2 * c] | (uint64_t)w[2 * c + 1] << 32));
  assert_true(mb_shuffle_u64(mb_shuffle_key(1, 2, 3, 4), 5) == 2995240828906603730ULL);
  int64_t p[10];
  mb_shuffle_permutation(mb_shuffle_key(42, 0, 1, 0), p, 10);
  const int64_t want[10] = {7, 2, 8, 6, 4, 3, 1, 0, 9, 5};
  assert_memory_equal(p, want, sizeof want);

  mb_shardset *s = mem_set(3000, 1, 900, 1, 8);
  for (int mode = 0; mode < 2; mode++) {
    mb_loader_config c = mb_loader_train_config(8, 512, 1234);
    c.mode = mode ? MB_BATCH_PACKED : MB_BATCH_PADDED;
    c.token_budget = 4096;
    c.world_size = 2;
    c.rank = 1;
    uint8_t d1[32], d2[32], d3[32];
    mb_loader *a, *b;
    assert_ok(mb_loader_create(s, &c, &a));
    assert_ok(mb_loader_create(s, &c, &b));
    int64_t steps;
    assert_ok(mb_loader_steps_in_epoch(a, 0, &steps));
    digest_batches(a, 2 * steps + 5, d1); /* two epochs and a bit */
    digest_batches(b, 2 * steps + 5, d2);
    assert_memory_equal(d1, d2, 32);
    mb_loader_free(a);
    mb_loader_free(b);
    c.seed = 1235;
    assert_ok(mb_loader_create(s, &c, &a));
    digest_batches(a, 2 * steps + 5, d3);
    assert_memory_not_equal(d1, d3, 32);
    mb_loader_free(a);
  }
  /* epochs differ in order */
  mb_loader_config c = mb_loader_train_config(8, 512, 1234);
  mb_loader *l;
  assert_ok(mb_loader_create(s, &c, &l));
  int64_t first[2];
  for (int e = 0; e < 2; e++) {
    mb_loader_position pos = {e, 0};
    assert_ok(mb_loader_seek(l, pos));
    const mb_batch *b;
    assert_ok(mb_loader_next(l, &b));
    first[e] = b->indices[0] * 100000 + b->indices[1];
  }
  assert_true(first[0] != first[1]);
  mb_loader_free(l);
  /* and in what goes together: each epoch's batches, as sets of examples,
   * differ (a new order of the same batches would not do), with length-sorted
   * windows and without */
  for (int window = 0; window < 2; window++) {
    c = mb_loader_train_config(8, 512, 1234);
    if (!window)
      c.window = 0;
    assert_ok(mb_loader_create(s, &c, &l));
    int64_t steps;
    assert_ok(mb_loader_steps_in_epoch(l, 0, &steps));
    uint64_t *sig[2];
    for (int e = 0; e < 2; e++) {
      sig[e] = calloc((size_t)steps, sizeof(uint64_t));
      assert_non_null(sig[e]);
      assert_ok(mb_loader_seek(l, (mb_loader_position){e, 0}));
      for (int64_t k = 0; k < steps; k++) {
        const mb_batch *b;
        assert_ok(mb_loader_next(l, &b));
        uint64_t h = 0; /* order-free: a sum of mixed indices */
        for (int32_t r = 0; r < b->n_seqs; r++)
          h += (uint64_t)(b->indices[r] + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t)b->indices[r] << 17;
        sig[e][k] = h;
      }
      qsort(sig[e], (size_t)steps, sizeof(uint64_t), cmp_u64);
    }
    assert_memory_not_equal(sig[0], sig[1], (size_t)steps * sizeof(uint64_t));
    free(sig[0]);
    free(sig[1]);
    mb_loader_free(l);
  }
  mb_shardset_free(s);
}

static void test_bucketed_shapes(void **state) {
  (void)state;
  mb_shardset *s = mem_set(4000, 0, 1500, 1, 5);
  const int32_t caps[2] = {512, 100};
  for (int k = 0; k < 2; k++) {
    double pad_frac[2];
    for (int bucketing = 1; bucketing >= 0; bucketing--) {
      mb_loader_config c = mb_loader_train_config(32, caps[k], 9);
      if (!bucketing)
        c.window = 0;
      mb_loader *l;
      assert_ok(mb_loader_create(s, &c, &l));
      int64_t steps, real = 0, total = 0, decreases = 0;
      int shapes[2048] = {0}, n_shapes = 0;
      int32_t prev = 0;
      assert_ok(mb_loader_steps_in_epoch(l, 0, &steps));
      int32_t *seen = calloc((size_t)s->n, sizeof *seen);
      for (int64_t i = 0; i < steps; i++) {
        const mb_batch *b;
        assert_ok(mb_loader_next(l, &b));
        check_batch(s, mb_loader_config_of(l), b, seen);
        int32_t maxlen = 0;
        for (int32_t j = 0; j < b->n_seqs; j++)
          maxlen = b->lengths[j] > maxlen ? b->lengths[j] : maxlen;
        /* a multiple of 64 (or the cap), the smallest that holds the batch */
        assert_true(b->seq_len % 64 == 0 || b->seq_len == caps[k]);
        assert_true(b->seq_len >= maxlen);
        assert_true(b->seq_len == 64 || b->seq_len - 64 < maxlen);
        assert_int_equal(b->seq_len, mb_bucket_length(maxlen, 64, caps[k]));
        if (!shapes[b->seq_len]++)
          n_shapes++;
        real += b->n_tokens;
        total += (int64_t)b->rows * b->seq_len;
        decreases += b->seq_len < prev;
        prev = b->seq_len;
      }
      assert_true(n_shapes <= 8);
      if (bucketing && caps[k] == 512)
        assert_true(decreases > steps / 10); /* bucketed, yet the batch order stays random */
      pad_frac[bucketing] = 1.0 - (double)real / (double)total;
      free(seen);
      mb_loader_free(l);
    }
    print_message("max_length %d: padding %.1f%% bucketed, %.1f%% not\n", caps[k], 100 * pad_frac[1],
                  100 * pad_frac[0]);
    if (caps[k] == 512)
      assert_true(pad_frac[1] < pad_frac[0] / 3);
  }
  assert_int_equal(mb_bucket_length(0, 64, 512), 64);
  assert_int_equal(mb_bucket_length(64, 64, 512), 64);
  assert_int_equal(mb_bucket_length(65, 64, 512), 128);
  assert_int_equal(mb_bucket_length(500, 64, 512), 512);
  assert_int_equal(mb_bucket_length(90, 64, 100), 100);
  mb_shardset_free(s);
}

static void test_truncation_rule(void **state) {
  (void)state;
  for (int special = 0; special < 2; special++) {
    mb_shardset *s = mem_set(40, 600, 700, special, 2);
    mb_loader_config c = mb_loader_eval_config(4, 512, 0);
    mb_loader *l;
    assert_ok(mb_loader_create(s, &c, &l));
    const mb_batch *b;
    assert_ok(mb_loader_next(l, &b));
    for (int32_t j = 0; j < 4; j++) {
      const int32_t *row = b->input_ids + (int64_t)j * 512, *src = mb_shardset_ids(s, j);
      assert_int_equal(b->lengths[j], 512);
      assert_memory_equal(row, src, 511 * 4);
      /* [CLS] w1 .. w510 [SEP] with specials; the first 512 ids without */
      assert_int_equal(row[511], special ? 3 : src[511]);
      if (special)
        assert_int_equal(row[0], 2);
    }
    mb_loader_free(l);
    mb_shardset_free(s);
  }
}

static void test_packed_batches(void **state) {
  (void)state;
  mb_shardset *s = mem_set(5000, 0, 700, 1, 4);
  int32_t *seen = calloc((size_t)s->n, sizeof *seen);
  for (int windowed = 0; windowed < 2; windowed++) {
    mb_loader_config c = mb_loader_train_config(0, 512, 21);
    c.mode = MB_BATCH_PACKED;
    c.token_budget = 4096;
    c.window = windowed ? 1024 : 0;
    mb_loader *l;
    assert_ok(mb_loader_create(s, &c, &l));
    c = *mb_loader_config_of(l);
    assert_int_equal(c.max_seqs, 512); /* T / 8 */
    int64_t steps, used = 0;
    assert_ok(mb_loader_steps_in_epoch(l, 0, &steps));
    memset(seen, 0, (size_t)s->n * sizeof *seen);
    for (int64_t k = 0; k < steps; k++) {
      const mb_batch *b;
      assert_ok(mb_loader_next(l, &b));
      check_batch(s, mb_loader_config_of(l), b, seen);
      used += b->n_tokens;
    }
    for (int64_t i = 0; i < s->n; i++)
      assert_int_equal(seen[i], 1);
    double fill = (double)used / (double)(steps * c.token_budget);
    print_message("packed, %s: %lld batches, %.1f%% of the budget used\n", windowed ? "first fit in windows" : "in order",
                  (long long)steps, 100 * fill);
    assert_true(fill > (windowed ? 0.97 : 0.85));
    mb_loader_free(l);
  }
  /* many short sequences: max_seqs closes batches before the budget, in
   * order (next fit) and in sorted windows (first fit), every batch */
  mb_shardset *t = mem_set(1000, 2, 10, 1, 6);
  int32_t *seen2 = calloc(1000, sizeof *seen2);
  for (int windowed = 0; windowed < 2; windowed++) {
    mb_loader_config c = mb_loader_train_config(0, 64, 1);
    c.mode = MB_BATCH_PACKED;
    c.token_budget = 1024;
    c.max_seqs = 16;
    c.window = windowed ? 200 : 0;
    mb_loader *l;
    assert_ok(mb_loader_create(t, &c, &l));
    int64_t steps, full = 0;
    assert_ok(mb_loader_steps_in_epoch(l, 0, &steps));
    memset(seen2, 0, 1000 * sizeof *seen2);
    for (int64_t k = 0; k < steps; k++) {
      const mb_batch *b;
      assert_ok(mb_loader_next(l, &b));
      assert_int_equal(b->rows, 16);
      assert_true(b->n_seqs <= 16 && b->n_tokens <= 160);
      full += b->n_seqs == 16;
      check_batch(t, mb_loader_config_of(l), b, seen2);
    }
    for (int i = 0; i < 1000; i++)
      assert_int_equal(seen2[i], 1);
    /* 62 full batches and the rest in order; in 5 windows of 200 each leaves a part-filled one */
    assert_int_equal(full, windowed ? 5 * (200 / 16) : 1000 / 16);
    mb_loader_free(l);
  }
  mb_shardset_free(t);
  /* sequences that fill the budget exactly: 16 of 64 tokens in 1024, every batch full */
  t = mem_set(320, 64, 64, 0, 7);
  for (int windowed = 0; windowed < 2; windowed++) {
    mb_loader_config c = mb_loader_train_config(0, 64, 1);
    c.mode = MB_BATCH_PACKED;
    c.token_budget = 1024;
    c.window = windowed ? 160 : 0; /* windows of 10 full batches */
    mb_loader *l;
    assert_ok(mb_loader_create(t, &c, &l));
    int64_t steps;
    assert_ok(mb_loader_steps_in_epoch(l, 0, &steps));
    assert_int_equal(steps, 20); /* 320 x 64 = 20 x 1024 */
    memset(seen2, 0, 1000 * sizeof *seen2);
    for (int64_t k = 0; k < steps; k++) {
      const mb_batch *b;
      assert_ok(mb_loader_next(l, &b));
      assert_int_equal(b->n_seqs, 16);
      assert_int_equal(b->n_tokens, 1024);
      check_batch(t, mb_loader_config_of(l), b, seen2);
    }
    mb_loader_free(l);
  }
  free(seen2);
  mb_shardset_free(t);
  free(seen);
  mb_shardset_free(s);
}

static void test_eval_protocol(void **state) {
  (void)state;
  mb_shardset *s = mem_set(1500, 1, 900, 1, 12);
  mb_loader_config c = mb_loader_eval_config(32, 256, 1000);
  mb_loader *l;
  assert_ok(mb_loader_create(s, &c, &l));
  int64_t steps;
  assert_ok(mb_loader_steps_in_epoch(l, 0, &steps));
  assert_int_equal(steps, 32); /* 31 full batches and one of 8 */
  int32_t *seen = calloc((size_t)s->n, sizeof *seen);
  for (int64_t k = 0; k < steps; k++) {
    const mb_batch *b;
    assert_ok(mb_loader_next(l, &b));
    check_batch(s, mb_loader_config_of(l), b, seen);
    assert_int_equal(b->rows, k < 31 ? 32 : 8); /* the last: its 8 rows, as the reference slices */
    assert_int_equal(b->seq_len, 256);          /* fixed length, as the reference pads */
    assert_int_equal(b->n_seqs, k < 31 ? 32 : 8);
    for (int32_t j = 0; j < b->n_seqs; j++)
      assert_int_equal(b->indices[j], k * 32 + j); /* in order */
  }
  for (int64_t i = 0; i < s->n; i++)
    assert_int_equal(seen[i], i < 1000);
  mb_loader_free(l);
  /* three ranks evaluate the same 1000 exactly once between them */
  c.world_size = 3;
  int64_t st;
  run_epoch_all_ranks(s, c, 0, seen, &st);
  for (int64_t i = 0; i < s->n; i++)
    assert_int_equal(seen[i], i < 1000);
  assert_int_equal(st, (334 + 31) / 32);
  free(seen);
  mb_shardset_free(s);
}

/* Stop after k batches, save, rebuild, restore: the rest must equal an
 * uninterrupted run. */
static void test_resume(void **state) {
  (void)state;
  mb_shardset *s = mem_set(2000, 0, 800, 1, 13);
  for (int mode = 0; mode < 2; mode++) {
    mb_loader_config c = mb_loader_train_config(8, 512, 99);
    c.mode = mode ? MB_BATCH_PACKED : MB_BATCH_PADDED;
    c.token_budget = 2048;
    c.world_size = 3;
    c.rank = 1;
    mb_loader *l;
    assert_ok(mb_loader_create(s, &c, &l));
    int64_t steps;
    assert_ok(mb_loader_steps_in_epoch(l, 0, &steps));
    const int64_t total = 3 * steps;
    const int64_t stops[4] = {1, steps - 1, steps, steps + steps / 2}; /* incl. an epoch boundary */
    uint8_t whole[32];
    /* the uninterrupted tail after each stop, by digest */
    for (int k = 0; k < 4; k++) {
      mb_loader *u;
      assert_ok(mb_loader_create(s, &c, &u));
      uint8_t skip[32];
      digest_batches(u, stops[k], skip);
      digest_batches(u, total - stops[k], whole);
      mb_loader_free(u);

      mb_loader *a;
      assert_ok(mb_loader_create(s, &c, &a));
      digest_batches(a, stops[k], skip);
      uint8_t blob[MB_LOADER_STATE_BYTES];
      mb_loader_save_state(a, blob);
      mb_loader_free(a);
      mb_loader *b;
      assert_ok(mb_loader_create(s, &c, &b));
      assert_ok(mb_loader_restore_state(b, blob));
      assert_int_equal(mb_loader_tell(b).epoch, stops[k] / steps);
      assert_int_equal(mb_loader_tell(b).step, stops[k] % steps);
      uint8_t rest[32];
      digest_batches(b, total - stops[k], rest);
      assert_memory_equal(rest, whole, 32);
      /* a different configuration refuses the blob */
      mb_loader_config c2 = c;
      c2.seed = 100;
      mb_loader *o;
      assert_ok(mb_loader_create(s, &c2, &o));
      assert_int_equal(mb_loader_restore_state(o, blob), MB_EINVAL);
      expect_msg("saved with seed 99, this loader has seed 100", NULL);
      mb_loader_free(o);
      c2 = c;
      c2.rank = 2;
      assert_ok(mb_loader_create(s, &c2, &o));
      assert_int_equal(mb_loader_restore_state(o, blob), MB_EINVAL);
      expect_msg("saved by rank 1 of 3, this loader is rank 2 of 3", NULL);
      mb_loader_free(o);
      c2 = c;
      c2.max_length = 256;
      assert_ok(mb_loader_create(s, &c2, &o));
      assert_int_equal(mb_loader_restore_state(o, blob), MB_EINVAL);
      expect_msg("another batching configuration or data set", NULL);
      mb_loader_free(o);
      blob[0] ^= 1;
      assert_int_equal(mb_loader_restore_state(b, blob), MB_EFORMAT);
      expect_msg("bad magic", NULL);
      mb_loader_free(b);
    }
    (void)l;
    mb_loader_free(l);
  }
  mb_shardset_free(s);
}

/* Indices (sorted) of the next batch of every loader in ls[0..n), together. */
static int64_t next_union(mb_loader **ls, int n, int64_t *out) {
  int64_t k = 0;
  for (int i = 0; i < n; i++) {
    const mb_batch *b;
    assert_ok(mb_loader_next(ls[i], &b));
    for (int32_t j = 0; j < b->n_seqs; j++)
      out[k++] = b->indices[j];
  }
  for (int64_t i = 1; i < k; i++) /* insertion sort: a few dozen entries */
    for (int64_t j = i; j > 0 && out[j - 1] > out[j]; j--) {
      int64_t t = out[j];
      out[j] = out[j - 1];
      out[j - 1] = t;
    }
  return k;
}

/* A position saved by 2 ranks x batch 8 maps onto 1 rank x 16 and 4 ranks x
 * 4 (the same global batch): from there, each step takes exactly the
 * examples the 2 ranks would have taken, across an epoch boundary too. What
 * cannot be mapped is refused, saying why. */
static void test_resume_other_world(void **state) {
  (void)state;
  mb_shardset *s = mem_set(96, 1, 60, 1, 21);
  mb_loader_config c = mb_loader_train_config(8, 64, 7);
  c.window = 0; /* batches in the order's sequence */
  c.world_size = 2;
  mb_loader *old[2];
  for (int r = 0; r < 2; r++) {
    c.rank = r;
    assert_ok(mb_loader_create(s, &c, &old[r]));
  }
  const mb_batch *b;
  for (int k = 0; k < 4; k++) /* 4 of the epoch's 6 steps */
    for (int r = 0; r < 2; r++)
      assert_ok(mb_loader_next(old[r], &b));
  uint8_t blob[MB_LOADER_STATE_BYTES];
  mb_loader_save_state(old[1], blob);
  const int worlds[2] = {1, 4};
  for (int w = 0; w < 2; w++) {
    mb_loader_config c2 = c;
    c2.world_size = worlds[w];
    c2.batch_size = 16 / worlds[w];
    mb_loader *neu[4];
    for (int r = 0; r < worlds[w]; r++) {
      c2.rank = r;
      assert_ok(mb_loader_create(s, &c2, &neu[r]));
      mb_loader_global_position g;
      assert_ok(mb_loader_state_global_position(neu[r], blob, &g));
      assert_int_equal(g.epoch, 0);
      assert_int_equal(g.consumed, 4 * 16);
      assert_int_equal(g.world_size, 2);
      assert_int_equal(g.batch_size, 8);
      assert_ok(mb_loader_seek_global(neu[r], g));
      assert_int_equal(mb_loader_tell(neu[r]).step, 4);
    }
    /* steps 5, 6 of epoch 0 and the first two of epoch 1 */
    mb_loader *ref[2];
    for (int r = 0; r < 2; r++) {
      c.rank = r;
      assert_ok(mb_loader_create(s, &c, &ref[r]));
      assert_ok(mb_loader_seek(ref[r], (mb_loader_position){0, 4}));
    }
    for (int k = 0; k < 4; k++) {
      int64_t want[16], got[16];
      int64_t nw = next_union(ref, 2, want), ng = next_union(neu, worlds[w], got);
      assert_int_equal(nw, 16);
      assert_int_equal(ng, 16);
      assert_memory_equal(want, got, sizeof want);
    }
    for (int r = 0; r < 2; r++)
      mb_loader_free(ref[r]);
    for (int r = 0; r < worlds[w]; r++)
      mb_loader_free(neu[r]);
  }
  /* 4 x 16 examples are not a whole number of 3 ranks x 5 */
  mb_loader_config c3 = c;
  c3.world_size = 3;
  c3.batch_size = 5;
  c3.rank = 0;
  mb_loader *l;
  assert_ok(mb_loader_create(s, &c3, &l));
  mb_loader_global_position g;
  assert_ok(mb_loader_state_global_position(l, blob, &g));
  assert_int_equal(mb_loader_seek_global(l, g), MB_EUNSUPPORTED);
  expect_msg("64 examples into epoch 0 is not a multiple of 3 rank(s) x batch size 5", NULL);
  mb_loader_free(l);
  /* another seed, another order */
  c3 = c;
  c3.seed = 8;
  c3.rank = 0;
  assert_ok(mb_loader_create(s, &c3, &l));
  assert_int_equal(mb_loader_state_global_position(l, blob, &g), MB_EINVAL);
  expect_msg("saved with seed 7", NULL);
  mb_loader_free(l);
  /* a version-1 blob has no batch size */
  uint8_t v1[MB_LOADER_STATE_BYTES];
  memcpy(v1, blob, sizeof v1);
  v1[8] = 1;
  c3 = c;
  c3.rank = 0;
  assert_ok(mb_loader_create(s, &c3, &l));
  assert_int_equal(mb_loader_state_global_position(l, v1, &g), MB_EUNSUPPORTED);
  expect_msg("version 1 has no batch size", NULL);
  mb_loader_free(l);
  /* length-sorted windows and packed batches: only an epoch's start maps */
  for (int mode = 0; mode < 2; mode++) {
    mb_loader_config cs = c;
    cs.window = 32;
    cs.rank = 0;
    if (mode) {
      cs.mode = MB_BATCH_PACKED;
      cs.token_budget = 128;
    }
    mb_loader *a;
    assert_ok(mb_loader_create(s, &cs, &a));
    assert_ok(mb_loader_next(a, &b));
    mb_loader_save_state(a, v1);
    cs.world_size = 1;
    cs.batch_size = 16;
    assert_ok(mb_loader_create(s, &cs, &l));
    assert_int_equal(mb_loader_state_global_position(l, v1, &g), MB_EUNSUPPORTED);
    expect_msg(mode ? "packed" : "sorted by length within windows", "only at the start of an epoch");
    int64_t steps;
    assert_ok(mb_loader_steps_in_epoch(a, 0, &steps));
    assert_ok(mb_loader_seek(a, (mb_loader_position){1, 0}));
    mb_loader_save_state(a, v1);
    assert_ok(mb_loader_state_global_position(l, v1, &g));
    assert_ok(mb_loader_seek_global(l, g));
    assert_int_equal(mb_loader_tell(l).epoch, 1);
    assert_int_equal(mb_loader_tell(l).step, 0);
    mb_loader_free(a);
    mb_loader_free(l);
  }
  for (int r = 0; r < 2; r++)
    mb_loader_free(old[r]);
  mb_shardset_free(s);
}

static void test_config_errors(void **state) {
  (void)state;
  mb_shardset *s = mem_set(10, 1, 50, 1, 1);
  mb_loader *l;
  mb_loader_config c = mb_loader_train_config(0, 64, 1);
  assert_int_equal(mb_loader_create(s, &c, &l), MB_EINVAL);
  expect_msg("batch_size 0", NULL);
  c = mb_loader_train_config(4, 64, 1);
  c.rank = 3;
  c.world_size = 3;
  assert_int_equal(mb_loader_create(s, &c, &l), MB_EINVAL);
  expect_msg("rank 3 of world size 3", NULL);
  c = mb_loader_train_config(4, 64, 1);
  c.mode = MB_BATCH_PACKED;
  c.token_budget = 32;
  assert_int_equal(mb_loader_create(s, &c, &l), MB_EINVAL);
  expect_msg("token_budget 32 is smaller than max_length 64", NULL);
  c = mb_loader_train_config(8, 64, 1);
  c.world_size = 4;
  c.drop_last = 1; /* 2 examples per rank, batches of 8 */
  assert_int_equal(mb_loader_create(s, &c, &l), MB_EINVAL);
  expect_msg("fewer than batch_size 8", "drop_last");
  c = mb_loader_train_config(8, 64, 1);
  c.world_size = 11;
  assert_int_equal(mb_loader_create(s, &c, &l), MB_EINVAL);
  expect_msg("10 example(s) cannot give each of 11 ranks one", NULL);
  c = mb_loader_train_config(4, 0, 1); /* 0: the longest example */
  assert_ok(mb_loader_create(s, &c, &l));
  int32_t longest = 0;
  for (int i = 0; i < 10; i++)
    longest = s->lengths[i] > longest ? s->lengths[i] : longest;
  assert_int_equal(mb_loader_config_of(l)->max_length, longest);
  mb_loader_position bad = {0, 99};
  assert_int_equal(mb_loader_seek(l, bad), MB_EINVAL);
  expect_msg("step 99 is outside epoch 0's 3 steps", NULL);
  mb_loader_free(l);
  mb_shardset_free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_coverage_and_disjointness),
      cmocka_unit_test(test_determinism),
      cmocka_unit_test(test_bucketed_shapes),
      cmocka_unit_test(test_truncation_rule),
      cmocka_unit_test(test_packed_batches),
      cmocka_unit_test(test_eval_protocol),
      cmocka_unit_test(test_resume),
      cmocka_unit_test(test_resume_other_world),
      cmocka_unit_test(test_config_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
