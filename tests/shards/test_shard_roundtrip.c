/* test_shard_roundtrip.c: write HDF5 shards and read them back: every field
 * and attribute equal, multi-file sets put back in shard order from a glob
 * or a directory, the atomic temporary-then-rename write, empty shards, and
 * the tokenizer check. */
#include "tests/shards/test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/shard.h"
#include "tests/shards/shard_fixture.h"

static char *tmp;

static int setup(void **state) {
  (void)state;
  tmp = tu_mkdtemp("shard");
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

/* Set s holds examples [a, a + s->n) of e, in order. */
static void check_set_equals(const mb_shardset *s, const fx_examples *e, int64_t a) {
  int64_t tokens = 0, lc[2] = {0, 0}, trunc = 0;
  assert_int_equal(s->offsets[0], 0);
  for (int64_t i = 0; i < s->n; i++) {
    const int64_t k = a + i;
    assert_int_equal(s->lengths[i], e->len[k]);
    assert_int_equal(s->offsets[i + 1] - s->offsets[i], e->len[k]);
    assert_int_equal(s->labels[i], e->label[k]);
    assert_int_equal(s->example_ids[i], e->id[k]);
    if (e->len[k])
      assert_memory_equal(mb_shardset_ids(s, i), e->ids[k], (size_t)e->len[k] * sizeof(int32_t));
    if (s->meta.has_text) {
      size_t tl = strlen(e->text[k]);
      assert_int_equal(s->text_offsets[i + 1] - s->text_offsets[i], (int64_t)tl);
      assert_memory_equal(s->text + s->text_offsets[i], e->text[k], tl);
    }
    tokens += e->len[k];
    lc[e->label[k]]++;
    trunc += e->truncated[k];
  }
  assert_int_equal(s->n_tokens, tokens);
  assert_int_equal(s->offsets[s->n], tokens);
  assert_int_equal(s->meta.n_examples, s->n);
  assert_int_equal(s->meta.n_tokens, tokens);
  assert_int_equal(s->meta.label_count[0], lc[0]);
  assert_int_equal(s->meta.label_count[1], lc[1]);
  assert_int_equal(s->meta.n_truncated, trunc);
}

static void test_roundtrip_one_file(void **state) {
  (void)state;
  /* ~600k ids: several flushes of the writer's buffer and many chunks */
  fx_examples e = fx_make(2400, 512, 30522, 7);
  mb_shard_meta meta = fx_meta("test", 30522, 512);
  meta.has_text = 1;
  meta.pad_id = 0;
  char path[4096], tmpname[4200];
  snprintf(path, sizeof path, "%s/test.h5", tmp);
  assert_ok(fx_write(path, &meta, &e, 0, e.n));
  mb_shard_temp_path(path, tmpname, sizeof tmpname);
  assert_false(tu_exists(tmpname));
  assert_true(tu_exists(path));

  mb_shardset *s;
  assert_ok(mb_shardset_open_spec(path, NULL, &s));
  assert_int_equal(s->n, e.n);
  check_set_equals(s, &e, 0);
  assert_string_equal(s->meta.dataset, "imdb");
  assert_string_equal(s->meta.split, "test");
  assert_string_equal(s->meta.tokenizer, "wordpiece-uncased");
  assert_string_equal(s->meta.vocab_sha256, meta.vocab_sha256);
  assert_int_equal(s->meta.vocab_size, 30522);
  assert_int_equal(s->meta.add_special, 1);
  assert_int_equal(s->meta.max_length, 512);
  assert_int_equal(s->meta.pad_id, 0);
  assert_string_equal(s->meta.source, "synthetic");
  assert_string_equal(s->meta.created_by, "mambert 0.1.0");
  assert_int_equal(s->meta.format_version, MB_SHARD_FORMAT_VERSION);
  assert_int_equal(s->meta.shard_count, 1);
  assert_int_equal(s->meta.has_text, 1);
  assert_int_equal(s->n_files, 1);
  assert_string_equal(s->files[0], path);
  assert_true(s->n_tokens > 400000);

  /* the tokenizer check */
  assert_ok(mb_shardset_check_tokenizer(s, "wordpiece-uncased", meta.vocab_sha256));
  char other[65];
  memset(other, 'b', 64);
  other[64] = 0;
  assert_int_equal(mb_shardset_check_tokenizer(s, "wordpiece-uncased", other), MB_EINVAL);
  expect_msg(path, "made with tokenizer 'wordpiece-uncased' (vocabulary sha256 aaaaaaaaaaaa...) but the model uses "
                   "'wordpiece-uncased' (vocabulary sha256 bbbbbbbbbbbb...)");
  assert_int_equal(mb_shardset_check_tokenizer(s, "bpe", meta.vocab_sha256), MB_EINVAL);
  expect_msg("but the model uses 'bpe'", "run mambert prepare");
  mb_shardset_free(s);

  /* the same through a directory + split, and attributes alone */
  assert_ok(mb_shardset_open_spec(tmp, "test", &s));
  check_set_equals(s, &e, 0);
  mb_shardset_free(s);
  mb_shard_meta m2;
  assert_ok(mb_shard_read_meta(path, &m2));
  assert_int_equal(m2.n_examples, e.n);
  assert_int_equal(m2.shard_index, 0);
  fx_free(&e);
}

static void test_roundtrip_many_files(void **state) {
  (void)state;
  fx_examples e = fx_make(1000, 300, 50277, 11);
  mb_shard_meta meta = fx_meta("train", 50277, 0);
  snprintf(meta.tokenizer, sizeof meta.tokenizer, "bpe");
  meta.add_special = 0;
  meta.pad_id = 1;
  meta.shard_count = 4;
  char *dir = malloc(strlen(tmp) + 16);
  sprintf(dir, "%s/many", tmp);
  mkdir(dir, 0777);
  const int64_t bounds[5] = {0, 300, 301, 700, 1000}; /* uneven, one of a single example */
  char paths[4][4096];
  for (int k = 3; k >= 0; k--) { /* written out of order */
    meta.shard_index = k;
    snprintf(paths[k], sizeof paths[k], "%s/train-%05d-of-00004.h5", dir, k);
    assert_ok(fx_write(paths[k], &meta, &e, bounds[k], bounds[k + 1]));
  }
  mb_shardset *s;
  /* a list in scrambled order */
  const char *list[4] = {paths[2], paths[0], paths[3], paths[1]};
  assert_ok(mb_shardset_open(list, 4, &s));
  assert_int_equal(s->n, 1000);
  check_set_equals(s, &e, 0);
  assert_null(s->text);
  assert_int_equal(s->meta.pad_id, 1);
  for (int k = 0; k < 4; k++)
    assert_string_equal(s->files[k], paths[k]);
  mb_shardset_free(s);
  /* a glob, and the directory */
  char pat[4200];
  snprintf(pat, sizeof pat, "%s/train-*.h5", dir);
  assert_ok(mb_shardset_open_spec(pat, NULL, &s));
  check_set_equals(s, &e, 0);
  mb_shardset_free(s);
  assert_ok(mb_shardset_open_spec(dir, "train", &s));
  check_set_equals(s, &e, 0);
  mb_shardset_free(s);
  /* a single shard of the four reads as itself only when the set is complete */
  assert_int_equal(mb_shardset_open_spec(paths[1], NULL, &s), MB_EFORMAT);
  expect_msg("is shard 1 of 4, but 1 shard file(s) were given", NULL);
  free(dir);
  fx_free(&e);
}

static void test_empty_and_abort(void **state) {
  (void)state;
  fx_examples e = fx_make(1, 4, 100, 3);
  mb_shard_meta meta = fx_meta("test", 100, 16);
  char path[4096], tmpname[4200];
  snprintf(path, sizeof path, "%s/empty/test.h5", tmp);
  char d[4096];
  snprintf(d, sizeof d, "%s/empty", tmp);
  mkdir(d, 0777);
  assert_ok(fx_write(path, &meta, &e, 0, 0));
  mb_shardset *s;
  assert_ok(mb_shardset_open_spec(path, NULL, &s));
  assert_int_equal(s->n, 0);
  assert_int_equal(s->n_tokens, 0);
  assert_int_equal(s->offsets[0], 0);
  mb_shardset_free(s);
  /* abort: nothing under the real name, no temporary left */
  snprintf(path, sizeof path, "%s/empty/train.h5", tmp);
  mb_shard_temp_path(path, tmpname, sizeof tmpname);
  mb_shard_writer *w;
  assert_ok(mb_shard_writer_open(path, &meta, &w));
  assert_true(tu_exists(tmpname));
  assert_false(tu_exists(path));
  assert_ok(mb_shard_writer_add(w, 1, 1, e.ids[0], e.len[0], 0, NULL, 0));
  /* bad examples are refused with the example's id */
  int32_t bad_ids[2] = {5, 100};
  assert_int_equal(mb_shard_writer_add(w, 42, 1, bad_ids, 2, 0, NULL, 0), MB_EINVAL);
  expect_msg("example 42: token id 100 outside the vocabulary [0, 100)", NULL);
  assert_int_equal(mb_shard_writer_add(w, 43, 2, bad_ids, 1, 0, NULL, 0), MB_EINVAL);
  expect_msg("example 43: label 2 is not 0 or 1", NULL);
  mb_shard_writer_abort(w);
  assert_false(tu_exists(tmpname));
  assert_false(tu_exists(path));
  /* a writer into a missing directory fails with the path */
  snprintf(path, sizeof path, "%s/no/such/dir/test.h5", tmp);
  assert_int_equal(mb_shard_writer_open(path, &meta, &w), MB_EIO);
  expect_msg("no/such/dir/test.h5.tmp-", "cannot create");
  fx_free(&e);
}

/* a prepare killed on this host leaves its temporary: the next prepare into
 * that directory removes it; a live writer's and another host's stay */
static void test_dead_temps_removed(void **state) {
  (void)state;
  char dir[4000], mine[4300], dead[4300], live[4300], other[4300];
  snprintf(dir, sizeof dir, "%s/killed", tmp);
  mkdir(dir, 0777);
  pid_t child = fork();
  if (child == 0)
    _exit(0);
  assert_true(child > 0);
  waitpid(child, NULL, 0); /* its pid now names no process */
  char probe[4200];
  snprintf(probe, sizeof probe, "%s/train.h5", dir);
  mb_shard_temp_path(probe, mine, sizeof mine); /* .../train.h5.tmp-<host>-<our pid> */
  const char *pid_at = strrchr(mine, '-');
  snprintf(dead, sizeof dead, "%.*s-%ld", (int)(pid_at - mine), mine, (long)child);
  snprintf(live, sizeof live, "%.*s-%ld", (int)(pid_at - mine), mine, (long)getppid());
  snprintf(other, sizeof other, "%s/train.h5.tmp-another-host-%ld", dir, (long)child);
  char longer[4300]; /* a host whose name starts with ours and goes on */
  snprintf(longer, sizeof longer, "%.*s-2-%ld", (int)(pid_at - mine), mine, (long)child);
  tu_write_str(longer, "x");
  tu_write_str(mine, "x");
  tu_write_str(dead, "x");
  tu_write_str(live, "x");
  tu_write_str(other, "x");
  assert_int_equal(mb_shard_remove_dead_temps(dir), 1);
  assert_false(tu_exists(dead));
  assert_true(tu_exists(mine));
  assert_true(tu_exists(live));
  assert_true(tu_exists(other));
  assert_true(tu_exists(longer));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip_one_file),
      cmocka_unit_test(test_roundtrip_many_files),
      cmocka_unit_test(test_empty_and_abort),
      cmocka_unit_test(test_dead_temps_removed),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
