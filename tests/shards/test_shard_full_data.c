/* test_shard_full_data.c: the importers on the full IMDB and NSMC files
 * (../shared/data or $MAMBERT_DATA_DIR; skipped with 77 when absent):
 * counts from SOURCES.md, and every row's (id, label, text) equal to what
 * pandas reads (hashes in tests/shards/fixtures/pandas_text.json, made by
 * tools/pandas_text_reference.py). */
#include "tests/shards/test_util.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "data/records.h"
#include "runtime/hash.h"

static json_t *fixture;

static const char *fixture_str(const char *split, const char *key) {
  json_t *s = json_object_get(json_object_get(fixture, "splits"), split);
  return json_string_value(json_object_get(s, key));
}

static json_int_t fixture_int(const char *split, const char *key) {
  json_t *s = json_object_get(json_object_get(fixture, "splits"), split);
  return json_integer_value(json_object_get(s, key));
}

/* sha256 over "id\tlabel\ttext\n" per row, and per block of block_rows rows. */
static void check_against_pandas(const mb_records *r, const char *split) {
  json_t *s = json_object_get(json_object_get(fixture, "splits"), split);
  assert_non_null(s);
  const size_t block = (size_t)json_integer_value(json_object_get(s, "block_rows"));
  json_t *blocks = json_object_get(s, "block_sha256");
  mb_sha256 *all = mb_sha256_new(), *blk = mb_sha256_new();
  char line[64], hex[65];
  uint8_t d[32];
  int bad_blocks = 0;
  for (size_t i = 0; i < r->n; i++) {
    int n = snprintf(line, sizeof line, "%lld\t%d\t", (long long)r->rec[i].id, r->rec[i].label);
    mb_sha256_update(all, line, (size_t)n);
    mb_sha256_update(blk, line, (size_t)n);
    mb_sha256_update(all, mb_record_text(r, i), r->rec[i].text_len);
    mb_sha256_update(blk, mb_record_text(r, i), r->rec[i].text_len);
    mb_sha256_update(all, "\n", 1);
    mb_sha256_update(blk, "\n", 1);
    if ((i + 1) % block == 0 || i + 1 == r->n) {
      mb_sha256_final(blk, d);
      mb_sha256_hex(d, hex);
      size_t b = i / block;
      const char *want = json_string_value(json_array_get(blocks, b));
      if (!want || strcmp(want, hex) != 0) {
        print_error("%s: rows %zu..%zu differ from pandas\n", split, b * block, i);
        bad_blocks++;
      }
      blk = mb_sha256_new();
    }
  }
  mb_sha256_final(blk, d);
  mb_sha256_final(all, d);
  mb_sha256_hex(d, hex);
  assert_int_equal(bad_blocks, 0);
  assert_string_equal(hex, fixture_str(split, "sha256"));
}

static void import_split(const char *dataset, const char *file, mb_records *r) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", tu_data_dir(), file);
  int rc = mb_import(dataset, path, NULL, r);
  if (rc != MB_OK)
    fail_msg("%s: %s", path, mb_error_message());
}

static void count_quirks(const mb_records *r, int64_t *empty, int64_t *quoted) {
  *empty = *quoted = 0;
  for (size_t i = 0; i < r->n; i++) {
    *empty += r->rec[i].text_len == 0;
    *quoted += memchr(mb_record_text(r, i), '"', r->rec[i].text_len) != NULL;
  }
}

static void test_imdb(void **state) {
  (void)state;
  /* SOURCES.md: ratings per split, 12,500 per label */
  static const int64_t ratings[2][11] = {{0, 5100, 2284, 2420, 2696, 0, 0, 2496, 3009, 2263, 4732},
                                         {0, 5022, 2302, 2541, 2635, 0, 0, 2307, 2850, 2344, 4999}};
  const char *files[2] = {"imdb/train.tsv.gz", "imdb/test.tsv.gz"};
  const char *splits[2] = {"imdb/train", "imdb/test"};
  for (int k = 0; k < 2; k++) {
    mb_records r;
    import_split("imdb", files[k], &r);
    assert_int_equal(r.n, 25000);
    assert_int_equal(r.label_count[0], 12500);
    assert_int_equal(r.label_count[1], 12500);
    int64_t hist[11] = {0};
    for (size_t i = 0; i < r.n; i++) {
      hist[r.rec[i].rating]++;
      assert_true(r.rec[i].label ? r.rec[i].rating >= 7 : r.rec[i].rating <= 4);
      if (i > 0) /* sorted by (label, id), unique */
        assert_true(r.rec[i - 1].label < r.rec[i].label ||
                    (r.rec[i - 1].label == r.rec[i].label && r.rec[i - 1].id < r.rec[i].id));
    }
    for (int s = 1; s <= 10; s++)
      assert_int_equal(hist[s], ratings[k][s]);
    assert_int_equal((json_int_t)r.n, fixture_int(splits[k], "rows"));
    check_against_pandas(&r, splits[k]);
    mb_records_free(&r);
  }
}

static void test_nsmc(void **state) {
  (void)state;
  const char *files[2] = {"nsmc/ratings_train.txt.gz", "nsmc/ratings_test.txt.gz"};
  const char *splits[2] = {"nsmc/train", "nsmc/test"};
  const size_t n[2] = {150000, 50000};
  const int64_t neg[2] = {75173, 24827}, pos[2] = {74827, 25173}, empty[2] = {5, 3}, quoted[2] = {623, 233};
  for (int k = 0; k < 2; k++) {
    mb_records r;
    import_split("nsmc", files[k], &r);
    assert_int_equal(r.n, n[k]);
    assert_int_equal(r.label_count[0], neg[k]);
    assert_int_equal(r.label_count[1], pos[k]);
    int64_t e, q;
    count_quirks(&r, &e, &q);
    assert_int_equal(e, empty[k]);
    assert_int_equal(q, quoted[k]); /* every quoted row keeps a '"' after unquoting */
    check_against_pandas(&r, splits[k]);
    mb_records_free(&r);
  }
  /* the first data lines, as SOURCES.md quotes them */
  mb_records r;
  import_split("nsmc", files[0], &r);
  assert_int_equal(r.rec[0].id, 9976970);
  assert_string_equal(mb_record_text(&r, 0), "\xec\x95\x84 \xeb\x8d\x94\xeb\xb9\x99.. \xec\xa7\x84\xec\xa7\x9c "
                                             "\xec\xa7\x9c\xec\xa6\x9d\xeb\x82\x98\xeb\x84\xa4\xec\x9a\x94 "
                                             "\xeb\xaa\xa9\xec\x86\x8c\xeb\xa6\xac");
  assert_int_equal(r.rec[0].label, 0);
  mb_records_free(&r);
}

int main(void) {
  char probe[4096];
  snprintf(probe, sizeof probe, "%s/nsmc/ratings_test.txt.gz", tu_data_dir());
  if (!tu_exists(probe)) {
    printf("skipped: full data not found at %s (set MAMBERT_DATA_DIR)\n", tu_data_dir());
    return 77;
  }
  json_error_t err;
  fixture = json_load_file("tests/shards/fixtures/pandas_text.json", 0, &err);
  if (!fixture) {
    printf("cannot read tests/shards/fixtures/pandas_text.json: %s (line %d)\n", err.text, err.line);
    return 1;
  }
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_imdb), cmocka_unit_test(test_nsmc)};
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  json_decref(fixture);
  return rc;
}
