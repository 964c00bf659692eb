/* test_shard_prepare.c: the prepare engine (data/prepare.h) with the test
 * tokenizer on the shipped samples: shards hold exactly the encoded and
 * HF-truncated ids in source order, whatever the thread and shard counts;
 * stale shards are replaced; an encoder error names the line and leaves no
 * shard behind. */
#include "tests/shards/test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "data/loader.h"
#include "data/prepare.h"
#include "data/records.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "tests/shards/test_tok.h"

static char *tmp;

static int setup(void **state) {
  (void)state;
  tmp = tu_mkdtemp("prepare");
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tu_rm_rf(tmp);
  free(tmp);
  return 0;
}

static void expect_msg(const char *frag1, const char *frag2) {
  const char *m = mb_error_message();
  if (!strstr(m, frag1) || (frag2 && !strstr(m, frag2)))
    fail_msg("error message '%s' lacks '%s'%s%s", m, frag1, frag2 ? " or " : "", frag2 ? frag2 : "");
}

static void test_truncate_ids(void **state) {
  (void)state;
  int32_t a[6] = {2, 10, 11, 12, 13, 3};
  assert_int_equal(mb_truncate_ids(a, 6, 4, 1), 4);
  const int32_t want_a[4] = {2, 10, 11, 3}; /* [CLS] w w [SEP] */
  assert_memory_equal(a, want_a, sizeof want_a);
  int32_t b[5] = {10, 11, 12, 13, 14};
  assert_int_equal(mb_truncate_ids(b, 5, 3, 0), 3);
  const int32_t want_b[3] = {10, 11, 12};
  assert_memory_equal(b, want_b, sizeof want_b);
  assert_int_equal(mb_truncate_ids(b, 5, 0, 0), 5); /* no limit */
  assert_int_equal(mb_truncate_ids(b, 5, 5, 1), 5); /* fits */
}

/* The shard set equals the records encoded one by one. */
static void check_shards_match(const mb_shardset *s, const mb_records *r, int32_t max_length, int add_special,
                               int64_t *truncated) {
  assert_int_equal(s->n, (int64_t)r->n);
  *truncated = 0;
  for (size_t i = 0; i < r->n; i++) {
    int32_t *ids;
    size_t n = test_tok_encode_alloc(mb_record_text(r, i), r->rec[i].text_len, add_special, &ids);
    size_t m = mb_truncate_ids(ids, n, max_length, add_special);
    *truncated += m < n;
    assert_int_equal(s->lengths[i], (int32_t)m);
    if (m)
      assert_memory_equal(mb_shardset_ids(s, (int64_t)i), ids, m * sizeof *ids);
    assert_int_equal(s->labels[i], r->rec[i].label);
    assert_int_equal(s->example_ids[i], r->rec[i].id);
    free(ids);
  }
}

static int count_files(const char *dir, const char *prefix) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL)
    n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
  if (d)
    closedir(d);
  return n;
}

static void test_prepare_nsmc_sample(void **state) {
  (void)state;
  mb_records r;
  assert_ok(mb_import_nsmc_tsv("data/samples/nsmc/ratings_train.txt.gz", NULL, &r));
  mb_encoder enc = test_tok_encoder();
  char out[4096];
  snprintf(out, sizeof out, "%s/nsmc-out/deeper", tmp); /* created with its parents */
  const int shard_counts[3] = {1, 3, 1};
  const int thread_counts[3] = {1, 2, 2};
  for (int k = 0; k < 3; k++) {
    mb_prepare_options opt = {0};
    opt.out_dir = out;
    opt.max_length = 8;
    opt.add_special = 1;
    opt.shards = shard_counts[k];
    opt.threads = thread_counts[k];
    mb_prepare_stats st;
    assert_ok(mb_prepare_records(&r, &enc, &opt, &st));
    assert_int_equal(st.examples, 2000);
    assert_int_equal(st.label_count[0], 1000);
    assert_int_equal(st.n_files, shard_counts[k]);
    assert_int_equal(st.threads, thread_counts[k]);
    /* stale files of the other shard count were removed */
    assert_int_equal(count_files(out, "train"), shard_counts[k]);
    mb_shardset *s;
    assert_ok(mb_shardset_open_spec(out, "train", &s));
    int64_t trunc;
    check_shards_match(s, &r, 8, 1, &trunc);
    assert_int_equal(st.truncated, trunc);
    print_message("truncated %lld of 2000\n", (long long)trunc);
    assert_true(trunc > 500 && trunc < 1500);
    assert_int_equal(s->meta.n_truncated, trunc);
    assert_int_equal(st.tokens, s->n_tokens);
    assert_true(st.full_tokens > st.tokens);
    assert_true(st.len_max >= st.len_p99 && st.len_p99 >= st.len_p90 && st.len_p90 >= st.len_p50);
    assert_string_equal(s->meta.dataset, "nsmc");
    assert_string_equal(s->meta.split, "train");
    assert_string_equal(s->meta.tokenizer, "test-whitespace");
    assert_string_equal(s->meta.vocab_sha256, TEST_TOK_SHA);
    assert_int_equal(s->meta.max_length, 8);
    assert_int_equal(s->meta.add_special, 1);
    assert_int_equal(s->meta.shard_count, shard_counts[k]);
    assert_string_equal(s->meta.source, "data/samples/nsmc/ratings_train.txt.gz");
    assert_null(s->text);
    /* and the loader reads them */
    mb_loader_config c = mb_loader_eval_config(32, 8, 100);
    mb_loader *l;
    assert_ok(mb_loader_create(s, &c, &l));
    const mb_batch *b;
    assert_ok(mb_loader_next(l, &b));
    assert_int_equal(b->example_ids[0], r.rec[0].id);
    assert_int_equal(b->input_ids[0], 2); /* [CLS] */
    mb_loader_free(l);
    mb_shardset_free(s);
  }
  test_tok_encoder_free(&enc);
  mb_records_free(&r);
}

static void test_prepare_imdb_text_no_truncation(void **state) {
  (void)state;
  mb_records r;
  assert_ok(mb_import("imdb", "data/samples/imdb/test.tsv.gz", NULL, &r));
  mb_encoder enc = test_tok_encoder();
  char out[4096];
  snprintf(out, sizeof out, "%s/imdb-out", tmp);
  mb_prepare_options opt = {0};
  opt.out_dir = out;
  opt.shards = 1;
  opt.store_text = 1;
  mb_prepare_stats st;
  assert_ok(mb_prepare_records(&r, &enc, &opt, &st));
  assert_int_equal(st.truncated, 0);
  assert_int_equal(st.tokens, st.full_tokens);
  mb_shardset *s;
  assert_ok(mb_shardset_open_spec(out, "test", &s));
  int64_t trunc;
  check_shards_match(s, &r, 0, 0, &trunc);
  assert_int_equal(trunc, 0);
  assert_int_equal(s->meta.max_length, 0);
  assert_int_equal(s->meta.add_special, 0);
  assert_non_null(s->text);
  for (size_t i = 0; i < r.n; i++) {
    assert_int_equal(s->text_offsets[i + 1] - s->text_offsets[i], (int64_t)r.rec[i].text_len);
    assert_memory_equal(s->text + s->text_offsets[i], mb_record_text(&r, i), r.rec[i].text_len);
  }
  mb_shardset_free(s);
  test_tok_encoder_free(&enc);
  mb_records_free(&r);
}

static void test_prepare_errors(void **state) {
  (void)state;
  char p[4096], out[4096];
  snprintf(p, sizeof p, "%s/ratings_test.txt", tmp);
  snprintf(out, sizeof out, "%s/err-out", tmp);
  /* the bad example is in the second block of 4096, on line 5002 */
  FILE *f = fopen(p, "w");
  fprintf(f, "id\tdocument\tlabel\n");
  for (int i = 0; i < 6000; i++)
    fprintf(f, "%d\t%s %d\t%d\n", 100 + i, i == 5000 ? "FAILME here" : "fine words", i, i % 2);
  fclose(f);
  mb_records r;
  assert_ok(mb_import_nsmc_tsv(p, NULL, &r));
  mb_encoder enc = test_tok_encoder();
  mb_prepare_options opt = {0};
  opt.out_dir = out;
  opt.shards = 2; /* the first shard is complete when the error comes */
  opt.threads = 2;
  mb_prepare_stats st;
  assert_int_equal(mb_prepare_records(&r, &enc, &opt, &st), MB_EINVAL);
  expect_msg(p, "line 5002 (id 5100): test tokenizer refuses FAILME at byte 0");
  assert_int_equal(count_files(out, "test"), 0); /* no partial set left */
  opt.shards = 6001;
  assert_int_equal(mb_prepare_records(&r, &enc, &opt, &st), MB_EINVAL);
  expect_msg("6001 shards for 6000 examples", NULL);
  opt.shards = 1;
  snprintf(out, sizeof out, "%s/ratings_test.txt/sub", tmp); /* under a file */
  opt.out_dir = out;
  assert_int_equal(mb_prepare_records(&r, &enc, &opt, &st), MB_EIO);
  expect_msg("ratings_test.txt exists and is not a directory", NULL);
  test_tok_encoder_free(&enc);
  mb_records_free(&r);
}

/* The real tokenizers (data/vocab, shipped): prepare's own truncation of a
 * full encoding equals the tokenizer's HF-parity truncation, for every
 * review of the NSMC and IMDB test samples. */
typedef struct {
  const mb_tokenizer *t;
  mb_ids v[64];
} real_ctx;

static int real_encode(void *ctx, int thread, const char *text, size_t len, int add_special, const int32_t **ids,
                       size_t *n) {
  real_ctx *c = ctx;
  MB_TRY(mb_tokenizer_encode(c->t, text, len, add_special, 0, &c->v[thread]));
  *ids = c->v[thread].ids;
  *n = c->v[thread].n;
  return MB_OK;
}

static void test_prepare_real_tokenizers(void **state) {
  (void)state;
  static const char *const vocab[3] = {"data/vocab/bert-base-uncased-vocab.txt",
                                       "data/vocab/bert-base-multilingual-cased-vocab.txt",
                                       "data/vocab/gpt-neox-20b-tokenizer.json"};
  static const char *const input[2][2] = {{"nsmc", "data/samples/nsmc/ratings_test.txt.gz"},
                                          {"imdb", "data/samples/imdb/test.tsv.gz"}};
  for (int v = 0; v < 3; v++) {
    mb_tokenizer_options o = mb_tokenizer_default_options();
    mb_tokenizer *t;
    assert_ok(mb_tokenizer_load(vocab[v], &o, &t));
    const int special = mb_tokenizer_kind_of(t) == MB_TOKENIZER_WORDPIECE;
    real_ctx *c = calloc(1, sizeof *c);
    c->t = t;
    mb_encoder enc = {real_encode,
                      c,
                      64,
                      mb_tokenizer_name(t),
                      mb_tokenizer_vocab_sha256(t),
                      mb_tokenizer_vocab_size(t),
                      mb_tokenizer_special_ids(t).pad,
                      special, /* WordPiece: count [UNK] */
                      mb_tokenizer_special_ids(t).unk};
    if (enc.pad_id < 0)
      enc.pad_id = 0;
    for (int d = 0; d < 2; d++) {
      mb_records r;
      assert_ok(mb_import(input[d][0], input[d][1], NULL, &r));
      char out[4096];
      snprintf(out, sizeof out, "%s/real-%d-%d", tmp, v, d);
      mb_prepare_options opt = {0};
      opt.out_dir = out;
      opt.max_length = d ? 128 : 24;
      opt.add_special = special;
      opt.shards = 1;
      opt.threads = 2;
      mb_prepare_stats st;
      assert_ok(mb_prepare_records(&r, &enc, &opt, &st));
      mb_shardset *s;
      assert_ok(mb_shardset_open_spec(out, "test", &s));
      assert_ok(mb_shardset_check_tokenizer(s, mb_tokenizer_name(t), mb_tokenizer_vocab_sha256(t)));
      assert_true(st.truncated > 50);
      mb_ids want = {0};
      int64_t unk = 0, unk_rows = 0;
      for (size_t i = 0; i < r.n; i++) {
        assert_ok(mb_tokenizer_encode(t, mb_record_text(&r, i), r.rec[i].text_len, special, opt.max_length, &want));
        assert_int_equal(s->lengths[i], (int32_t)want.n);
        if (want.n)
          assert_memory_equal(mb_shardset_ids(s, (int64_t)i), want.ids, want.n * sizeof(int32_t));
        int64_t u = 0;
        for (size_t k = 0; k < want.n && special; k++)
          u += want.ids[k] == enc.unk_id;
        unk += u;
        unk_rows += u > 0;
      }
      mb_ids_free(&want);
      /* the [UNK] count (only WordPiece has one: byte-level BPE spells anything) */
      assert_int_equal(st.unk_tokens, unk);
      assert_int_equal(st.unk_examples, unk_rows);
      if (v == 1 && d == 0) /* mBERT on Korean reviews: some words it cannot spell */
        assert_true(unk > 0);
      if (v == 2)
        assert_int_equal(st.unk_tokens, 0);
      mb_shardset_free(s);
      mb_records_free(&r);
    }
    for (int k = 0; k < 64; k++)
      mb_ids_free(&c->v[k]);
    free(c);
    mb_tokenizer_free(t);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_truncate_ids),
      cmocka_unit_test(test_prepare_nsmc_sample),
      cmocka_unit_test(test_prepare_imdb_text_no_truncation),
      cmocka_unit_test(test_prepare_errors),
      cmocka_unit_test(test_prepare_real_tokenizers),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
