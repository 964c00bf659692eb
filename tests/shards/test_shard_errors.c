/* test_shard_errors.c: bad shard files give clear errors naming the file
 * (and dataset or attribute), never a crash or a silent wrong read:
 * missing, empty, not HDF5, truncated anywhere, bytes damaged anywhere,
 * datasets missing or of the wrong type/size, attributes missing or wrong,
 * inconsistent contents, and shard sets that do not belong together. */
#include "tests/shards/test_util.h"

#include <hdf5.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "data/shard.h"
#include "tests/shards/shard_fixture.h"

static char *tmp;
static char good[4096]; /* a valid shard everyone copies */
static fx_examples ex;
static mb_shard_meta meta;

static int setup(void **state) {
  (void)state;
  tmp = tu_mkdtemp("shard-err");
  ex = fx_make(3000, 400, 30522, 5);
  meta = fx_meta("test", 30522, 400);
  meta.has_text = 1;
  snprintf(good, sizeof good, "%s/good.h5", tmp);
  return fx_write(good, &meta, &ex, 0, ex.n) == MB_OK ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  fx_free(&ex);
  tu_rm_rf(tmp);
  free(tmp);
  return 0;
}

static void expect_msg(const char *frag1, const char *frag2) {
  const char *m = mb_error_message();
  if (!strstr(m, frag1) || (frag2 && !strstr(m, frag2)))
    fail_msg("error message '%s' lacks '%s'%s%s", m, frag1, frag2 ? " or " : "", frag2 ? frag2 : "");
}

static unsigned char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc(*n);
  assert_int_equal(fread(b, 1, *n, f), *n);
  fclose(f);
  return b;
}

/* A copy of the good shard to modify. */
static const char *copy_good(const char *name) {
  static char p[4096];
  snprintf(p, sizeof p, "%s/%s", tmp, name);
  size_t n;
  unsigned char *b = slurp(good, &n);
  tu_write(p, b, n);
  free(b);
  return p;
}

/* Open must fail with MB_EFORMAT (or succeed with exactly the good data). */
static size_t damaged_at;

static int open_fails_cleanly(const char *p) {
  mb_shardset *s = NULL;
  int rc = mb_shardset_open_spec(p, NULL, &s);
  if (rc == MB_OK) {
    print_message("read fine with damage at byte %zu\n", damaged_at);
    /* damage in unused bytes is harmless; anything read must be right */
    assert_int_equal(s->n, ex.n);
    for (int64_t i = 0; i < s->n; i++) {
      assert_int_equal(s->lengths[i], ex.len[i]);
      assert_int_equal(s->labels[i], ex.label[i]);
      assert_int_equal(s->example_ids[i], ex.id[i]);
      if (ex.len[i])
        assert_memory_equal(mb_shardset_ids(s, i), ex.ids[i], (size_t)ex.len[i] * 4);
      assert_memory_equal(s->text + s->text_offsets[i], ex.text[i], strlen(ex.text[i]));
    }
    mb_shardset_free(s);
    return 0;
  }
  assert_int_equal(rc, MB_EFORMAT);
  assert_null(s);
  expect_msg(p, NULL);
  return 1;
}

static void test_not_a_shard(void **state) {
  (void)state;
  mb_shardset *s;
  char p[4096];
  snprintf(p, sizeof p, "%s/missing.h5", tmp);
  assert_int_equal(mb_shardset_open_spec(p, NULL, &s), MB_ENOTFOUND);
  expect_msg(p, "No such file");
  snprintf(p, sizeof p, "%s/empty.h5", tmp);
  tu_write(p, "", 0);
  assert_int_equal(mb_shardset_open_spec(p, NULL, &s), MB_EFORMAT);
  expect_msg(p, "not a readable HDF5 file");
  snprintf(p, sizeof p, "%s/text.h5", tmp);
  tu_write_str(p, "id\trating\tlabel\ttext\nthis is a TSV, not HDF5\n");
  assert_int_equal(mb_shardset_open_spec(p, NULL, &s), MB_EFORMAT);
  expect_msg(p, "not a readable HDF5 file: truncated, corrupt or another format (HDF5:");
  /* an HDF5 file that is not ours */
  snprintf(p, sizeof p, "%s/other.h5", tmp);
  hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  H5Fclose(f);
  assert_int_equal(mb_shardset_open_spec(p, NULL, &s), MB_EFORMAT);
  expect_msg(p, "not a mambert shard (no 'format' attribute)");
  /* a directory without shards */
  assert_int_equal(mb_shardset_open_spec(tmp, "train", &s), MB_ENOTFOUND);
  expect_msg("no shards of split 'train'", "run mambert prepare");
  snprintf(p, sizeof p, "%s/nothing-*.h5", tmp);
  assert_int_equal(mb_shardset_open_spec(p, NULL, &s), MB_ENOTFOUND);
  expect_msg(p, "no shard files match");
}

static void test_truncated_everywhere(void **state) {
  (void)state;
  size_t n;
  unsigned char *b = slurp(good, &n);
  char p[4096];
  snprintf(p, sizeof p, "%s/trunc.h5", tmp);
  int cuts = 0;
  for (size_t cut = 0; cut < n; cut += n / 97 + 1, cuts++) {
    tu_write(p, b, cut);
    mb_shardset *s = NULL;
    int rc = mb_shardset_open_spec(p, NULL, &s);
    if (rc != MB_EFORMAT)
      fail_msg("cut at %zu of %zu: rc %d (%s)", cut, n, rc, mb_error_message());
    expect_msg(p, NULL);
  }
  tu_write(p, b, n - 1);
  assert_true(open_fails_cleanly(p));
  expect_msg("not a readable HDF5 file", "truncated");
  assert_true(cuts > 90);
  free(b);
}

/* Damage 16 bytes at many places, one place per copy: every read either
 * fails with a message naming the file or returns exactly the right data. */
static void test_damaged_everywhere(void **state) {
  (void)state;
  size_t n;
  unsigned char *b = slurp(good, &n);
  char p[4096];
  snprintf(p, sizeof p, "%s/damaged.h5", tmp);
  int failed = 0, places = 0;
  /* MAMBERT_SHARD_DAMAGE_PLACES=N for a denser sweep by hand (default 211) */
  const char *env = getenv("MAMBERT_SHARD_DAMAGE_PLACES");
  size_t want = env && atoi(env) > 0 ? (size_t)atoi(env) : 211;
  for (size_t at = 0; at + 16 <= n; at += n / want + 1, places++) {
    unsigned char *c = malloc(n);
    memcpy(c, b, n);
    for (int k = 0; k < 16; k++)
      c[at + k] ^= (unsigned char)(0x5a + 13 * k);
    tu_write(p, c, n);
    free(c);
    damaged_at = at;
    failed += open_fails_cleanly(p);
  }
  print_message("damage at %d places: %d refused, %d in unused bytes\n", places, failed, places - failed);
  assert_true(places > 200);
  assert_true(failed > places / 2); /* most of the file is checksummed data */
  free(b);
}

/* Modify a copy with the HDF5 API. */
static hid_t open_rw(const char *p) {
  hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
  assert_true(f >= 0);
  return f;
}

static void replace_dataset(hid_t f, const char *name, hid_t type, hsize_t n, const void *data) {
  H5Ldelete(f, name, H5P_DEFAULT);
  hid_t sp = H5Screate_simple(1, &n, NULL);
  hid_t ds = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(ds >= 0);
  if (n)
    assert_true(H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
  H5Dclose(ds);
  H5Sclose(sp);
}

static void set_attr_i64(hid_t f, const char *name, int64_t v) {
  H5Adelete(f, name);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_INT64, &v);
  H5Aclose(a);
  H5Sclose(sp);
}

static void set_attr_str(hid_t f, const char *name, const char *v) {
  H5Adelete(f, name);
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, strlen(v) + 1);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, t, v);
  H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
}

static void expect_open_error(const char *p, const char *frag1, const char *frag2) {
  mb_shardset *s = NULL;
  int rc = mb_shardset_open_spec(p, NULL, &s);
  if (rc != MB_EFORMAT)
    fail_msg("expected a format error ('%s'), got %d: %s", frag1, rc, mb_error_message());
  assert_null(s);
  expect_msg(p, NULL);
  expect_msg(frag1, frag2);
}

static void test_missing_and_wrong_datasets(void **state) {
  (void)state;
  static const char *const names[] = {"input_ids", "offsets", "lengths", "labels", "example_ids", "text",
                                      "text_offsets"};
  for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
    const char *p = copy_good("edit.h5");
    hid_t f = open_rw(p);
    assert_true(H5Ldelete(f, names[k], H5P_DEFAULT) >= 0);
    H5Fclose(f);
    char want[128];
    snprintf(want, sizeof want, "dataset '%s' missing", names[k]);
    expect_open_error(p, want, NULL);
  }
  const int64_t n = ex.n;
  float *fl = calloc((size_t)n, sizeof *fl);
  const char *p = copy_good("edit.h5");
  hid_t f = open_rw(p);
  replace_dataset(f, "labels", H5T_IEEE_F32LE, (hsize_t)n, fl);
  H5Fclose(f);
  expect_open_error(p, "dataset 'labels': expected signed 1-byte integers", NULL);
  p = copy_good("edit.h5");
  f = open_rw(p);
  replace_dataset(f, "lengths", H5T_STD_I32LE, (hsize_t)n - 1, fl);
  H5Fclose(f);
  expect_open_error(p, "dataset 'lengths': expected 3000 elements, found 2999", NULL);
  p = copy_good("edit.h5");
  f = open_rw(p);
  replace_dataset(f, "example_ids", H5T_STD_U64LE, (hsize_t)n, ex.id);
  H5Fclose(f);
  expect_open_error(p, "dataset 'example_ids': expected signed 8-byte integers", NULL);
  /* contents that contradict each other */
  int32_t *len = malloc((size_t)n * sizeof *len);
  memcpy(len, ex.len, (size_t)n * sizeof *len);
  len[17] += 1;
  p = copy_good("edit.h5");
  f = open_rw(p);
  replace_dataset(f, "lengths", H5T_STD_I32LE, (hsize_t)n, len);
  H5Fclose(f);
  expect_open_error(p, "dataset 'lengths': example 17 has length", "but offsets say");
  int8_t *lab = malloc((size_t)n);
  for (int64_t i = 0; i < n; i++)
    lab[i] = (int8_t)ex.label[i];
  lab[5] = 2;
  p = copy_good("edit.h5");
  f = open_rw(p);
  replace_dataset(f, "labels", H5T_STD_I8LE, (hsize_t)n, lab);
  H5Fclose(f);
  expect_open_error(p, "dataset 'labels': example 5 has label 2, expected 0 or 1", NULL);
  lab[5] = (int8_t)(1 - ex.label[5]); /* valid labels, counts off by one */
  p = copy_good("edit.h5");
  f = open_rw(p);
  replace_dataset(f, "labels", H5T_STD_I8LE, (hsize_t)n, lab);
  H5Fclose(f);
  expect_open_error(p, "dataset 'labels' counts", "but attribute 'label_counts' says");
  int64_t *off = malloc((size_t)(n + 1) * sizeof *off);
  off[0] = 0;
  for (int64_t i = 0; i < n; i++)
    off[i + 1] = off[i] + ex.len[i];
  int64_t t = off[10];
  off[10] = off[11] + 1;
  p = copy_good("edit.h5");
  f = open_rw(p);
  replace_dataset(f, "offsets", H5T_STD_I64LE, (hsize_t)n + 1, off);
  H5Fclose(f);
  expect_open_error(p, "dataset 'offsets': decreases at example 10", NULL);
  off[10] = t;
  free(off);
  free(lab);
  free(len);
  free(fl);
}

static void test_attributes(void **state) {
  (void)state;
  static const char *const names[] = {"format", "format_version", "dataset", "split", "tokenizer",
                                      "vocab_sha256", "vocab_size", "add_special", "max_length", "pad_id",
                                      "source", "created_by", "shard_index", "shard_count", "n_examples",
                                      "n_tokens", "label_counts", "n_truncated", "has_text"};
  for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
    const char *p = copy_good("attr.h5");
    hid_t f = open_rw(p);
    assert_true(H5Adelete(f, names[k]) >= 0);
    H5Fclose(f);
    char want[128];
    if (k == 0)
      snprintf(want, sizeof want, "not a mambert shard (no 'format' attribute)");
    else
      snprintf(want, sizeof want, "attribute '%s' missing", names[k]);
    expect_open_error(p, want, NULL);
  }
  const char *p = copy_good("attr.h5");
  hid_t f = open_rw(p);
  set_attr_i64(f, "format_version", 2);
  H5Fclose(f);
  expect_open_error(p, "shard format version 2; this build reads version 1", NULL);
  p = copy_good("attr.h5");
  f = open_rw(p);
  set_attr_str(f, "format", "some-other-format");
  H5Fclose(f);
  expect_open_error(p, "not a mambert shard (format 'some-other-format'", NULL);
  p = copy_good("attr.h5");
  f = open_rw(p);
  set_attr_i64(f, "vocab_size", 50);
  H5Fclose(f);
  expect_open_error(p, "dataset 'input_ids': id", "is outside the vocabulary [0, 50)");
  p = copy_good("attr.h5");
  f = open_rw(p);
  set_attr_i64(f, "n_examples", ex.n + 1);
  H5Fclose(f);
  expect_open_error(p, "inconsistent counts", NULL);
  p = copy_good("attr.h5");
  f = open_rw(p);
  set_attr_i64(f, "max_length", 100);
  H5Fclose(f);
  expect_open_error(p, "tokens, more than max_length 100", NULL);
  p = copy_good("attr.h5");
  f = open_rw(p);
  set_attr_str(f, "vocab_size", "big");
  H5Fclose(f);
  expect_open_error(p, "attribute 'vocab_size': expected an integer", NULL);
  p = copy_good("attr.h5");
  f = open_rw(p);
  set_attr_str(f, "vocab_sha256", "abc");
  H5Fclose(f);
  expect_open_error(p, "attribute 'vocab_sha256' is not a sha256 in hex ('abc')", NULL);
}

/* Shard file b (examples lo..hi, meta m) beside the set's other shard in
 * dir: the set is refused as not belonging together, saying frag1 (and frag2). */
static void expect_set_refused(const char *dir, const char *b, const mb_shard_meta *m, int64_t lo, int64_t hi,
                               const char *frag1, const char *frag2) {
  assert_ok(fx_write(b, m, &ex, lo, hi));
  mb_shardset *s = NULL;
  assert_int_equal(mb_shardset_open_spec(dir, "train", &s), MB_EFORMAT);
  expect_msg(frag1, frag2);
}

static void test_sets_that_do_not_belong_together(void **state) {
  (void)state;
  char d[4096], a[4200], b[4200];
  snprintf(d, sizeof d, "%s/set", tmp);
  mkdir(d, 0777);
  snprintf(a, sizeof a, "%s/train-00000-of-00002.h5", d);
  snprintf(b, sizeof b, "%s/train-00001-of-00002.h5", d);
  mb_shard_meta m = fx_meta("train", 30522, 400);
  m.shard_count = 2;
  m.shard_index = 0;
  assert_ok(fx_write(a, &m, &ex, 0, 10));
  m.shard_index = 1;
  snprintf(m.tokenizer, sizeof m.tokenizer, "wordpiece-cased");
  expect_set_refused(d, b, &m, 10, 20, "shards do not belong together", "has tokenizer 'wordpiece-cased' but");
  snprintf(m.tokenizer, sizeof m.tokenizer, "wordpiece-uncased");
  m.shard_index = 0; /* two shard 0s */
  expect_set_refused(d, b, &m, 10, 20, "are both shard 0 of 2", NULL);
  m.shard_index = 1;
  m.max_length = 128;
  expect_set_refused(d, b, &m, 10, 11, "has max_length 128 but", NULL);
  m.max_length = 400;
  /* the same tokenizer name with another vocabulary, size, padding id or specials */
  char sha[sizeof m.vocab_sha256];
  memcpy(sha, m.vocab_sha256, sizeof sha);
  m.vocab_sha256[0] = m.vocab_sha256[0] == 'a' ? 'b' : 'a';
  expect_set_refused(d, b, &m, 10, 20, "has vocabulary sha256", NULL);
  memcpy(m.vocab_sha256, sha, sizeof sha);
  m.vocab_size = 31000;
  expect_set_refused(d, b, &m, 10, 20, "has vocab_size 31000 but", NULL);
  m.vocab_size = 30522;
  m.pad_id = 7;
  expect_set_refused(d, b, &m, 10, 20, "has pad_id 7 but", NULL);
  m.pad_id = fx_meta("train", 30522, 400).pad_id;
  m.add_special = !m.add_special;
  expect_set_refused(d, b, &m, 10, 20, "has add_special", NULL);
  m.add_special = !m.add_special;
  assert_ok(fx_write(b, &m, &ex, 10, 20));
  mb_shardset *s = NULL;
  assert_ok(mb_shardset_open_spec(d, "train", &s));
  assert_int_equal(s->n, 20);
  mb_shardset_free(s);
  unlink(a);
  assert_int_equal(mb_shardset_open_spec(d, "train", &s), MB_EFORMAT);
  expect_msg("is shard 1 of 2, but 1 shard file(s) were given", NULL);
}

/* HDF5 1.10 loses a metadata cache entry when it fails to load a damaged
 * object header (on H5O_protect's error path): HDF5's leak, not ours, and
 * only with damaged files. Named narrowly so our own leaks still show. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:H5O_protect\n"; }
/* libhdf5 has no frame pointers: unwind slowly so the stack reaches H5O_protect. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "fast_unwind_on_malloc=0"; }

int main(void) {
  /* No HDF5 free lists: memory goes back to malloc at once, so a leak is
   * reported where it was allocated, not where a recycled block came from. */
  H5set_free_list_limits(0, 0, 0, 0, 0, 0);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_not_a_shard),
      cmocka_unit_test(test_truncated_everywhere),
      cmocka_unit_test(test_damaged_everywhere),
      cmocka_unit_test(test_missing_and_wrong_datasets),
      cmocka_unit_test(test_attributes),
      cmocka_unit_test(test_sets_that_do_not_belong_together),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
