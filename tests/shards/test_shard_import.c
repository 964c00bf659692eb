/* test_shard_import.c: the IMDB and NSMC importers on small files written
 * here and on the shipped samples: exact texts (NSMC quoting as pandas reads
 * it), the aclImdb tree giving the same records as the TSV, and clear errors
 * (file, line, field) for every kind of bad input. */
#include "tests/shards/test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "data/records.h"
#include "runtime/error.h"

static char *tmp;

static int setup(void **state) {
  (void)state;
  tmp = tu_mkdtemp("import");
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tu_rm_rf(tmp);
  free(tmp);
  return 0;
}

static char *path_in(const char *name) {
  char *p = malloc(strlen(tmp) + strlen(name) + 2);
  sprintf(p, "%s/%s", tmp, name);
  return p;
}

/* The message must contain every given fragment. */
static void expect_msg(const char *frag1, const char *frag2) {
  const char *m = mb_error_message();
  if (!strstr(m, frag1) || (frag2 && !strstr(m, frag2)))
    fail_msg("error message '%s' lacks '%s'%s%s", m, frag1, frag2 ? " or " : "", frag2 ? frag2 : "");
}

static void test_utf8_validator(void **state) {
  (void)state;
  size_t bad = 99;
  assert_true(mb_utf8_valid("plain ascii", 11, &bad));
  assert_true(mb_utf8_valid("\xec\x95\x84 \xeb\x8d\x94", 7, &bad));     /* Korean */
  assert_true(mb_utf8_valid("\xf0\x9f\x98\x80", 4, &bad));               /* U+1F600 */
  assert_true(mb_utf8_valid("\xf4\x8f\xbf\xbf", 4, &bad));               /* U+10FFFF */
  assert_true(mb_utf8_valid("", 0, &bad));
  struct {
    const char *s;
    size_t n, at;
  } badcases[] = {
      {"ab\xff", 3, 2},             /* never valid */
      {"\xc0\xaf", 2, 0},           /* overlong '/' */
      {"x\xe0\x80\x80", 4, 1},      /* overlong 3-byte */
      {"\xed\xa0\x80", 3, 0},       /* UTF-16 surrogate */
      {"\xf4\x90\x80\x80", 4, 0},   /* past U+10FFFF */
      {"ok\xe2\x82", 4, 2},         /* cut off at the end */
      {"\x80", 1, 0},               /* lone continuation */
      {"a\0b", 3, 1},               /* NUL */
      {"\xe2\x28\xa1", 3, 0},       /* bad continuation */
  };
  for (size_t i = 0; i < sizeof badcases / sizeof badcases[0]; i++) {
    bad = 99;
    assert_false(mb_utf8_valid(badcases[i].s, badcases[i].n, &bad));
    assert_int_equal(bad, badcases[i].at);
  }
}

static const char imdb_tsv[] =
    "id\trating\tlabel\ttext\n"
    "3\t1\t0\tBad. He said \"great\" <br /><br />but no.\n"
    "10\t4\t0\tMeh\n"
    "2\t10\t1\tGreat \xc3\xa9t\xc3\xa9 film!\n";

static void check_imdb_small(const mb_records *r) {
  assert_string_equal(r->dataset, "imdb");
  assert_string_equal(r->split, "train");
  assert_int_equal(r->n, 3);
  assert_int_equal(r->label_count[0], 2);
  assert_int_equal(r->label_count[1], 1);
  assert_int_equal(r->rec[0].id, 3);
  assert_int_equal(r->rec[0].rating, 1);
  assert_int_equal(r->rec[0].label, 0);
  assert_int_equal(r->rec[0].line, 2);
  assert_string_equal(mb_record_text(r, 0), "Bad. He said \"great\" <br /><br />but no.");
  assert_int_equal(r->rec[1].id, 10);
  assert_string_equal(mb_record_text(r, 1), "Meh");
  assert_int_equal(r->rec[2].id, 2);
  assert_int_equal(r->rec[2].rating, 10);
  assert_int_equal(r->rec[2].label, 1);
  assert_int_equal(r->rec[2].line, 4);
  assert_string_equal(mb_record_text(r, 2), "Great \xc3\xa9t\xc3\xa9 film!");
  assert_int_equal(r->rec[2].text_len, strlen("Great \xc3\xa9t\xc3\xa9 film!"));
}

static void test_imdb_tsv_plain_and_gz(void **state) {
  (void)state;
  char *plain = path_in("train.tsv"), *gz = path_in("train.tsv.gz");
  tu_write_str(plain, imdb_tsv);
  tu_write_gz(gz, imdb_tsv, strlen(imdb_tsv));
  mb_records r;
  assert_ok(mb_import_imdb_tsv(plain, NULL, &r));
  check_imdb_small(&r);
  mb_records_free(&r);
  assert_ok(mb_import_imdb_tsv(gz, NULL, &r));
  check_imdb_small(&r);
  assert_string_equal(r.source, gz);
  mb_records_free(&r);
  /* split given explicitly overrides the name; a bad split is refused */
  assert_ok(mb_import_imdb_tsv(gz, "test", &r));
  assert_string_equal(r.split, "test");
  mb_records_free(&r);
  assert_int_equal(mb_import_imdb_tsv(gz, "valid", &r), MB_EINVAL);
  expect_msg("split 'valid'", "train or test");
  char *noname = path_in("reviews.tsv");
  tu_write_str(noname, imdb_tsv);
  assert_int_equal(mb_import_imdb_tsv(noname, NULL, &r), MB_EINVAL);
  expect_msg(noname, "cannot tell the split");
  free(noname);
  free(plain);
  free(gz);
}

typedef struct {
  const char *content;
  const char *frag1, *frag2;
} bad_case;

static void run_bad_cases(int (*import)(const char *, const char *, mb_records *), const bad_case *cases, size_t n) {
  char *p = path_in("test.tsv");
  for (size_t i = 0; i < n; i++) {
    tu_write_str(p, cases[i].content);
    mb_records r;
    int rc = import(p, NULL, &r);
    if (rc != MB_EFORMAT)
      fail_msg("case %zu: expected MB_EFORMAT, got %d (%s)", i, rc, mb_error_message());
    assert_null(r.rec);
    expect_msg(p, NULL);
    expect_msg(cases[i].frag1, cases[i].frag2);
  }
  free(p);
}

static void test_imdb_tsv_errors(void **state) {
  (void)state;
  static const bad_case cases[] = {
      {"", "empty file", NULL},
      {"id\tlabel\ttext\n", "line 1: expected the header", "found 'id<TAB>label<TAB>text'"},
      {"id\tdocument\tlabel\n1\tok\t0\n", "expected the header", "(an NSMC file: data.dataset / --dataset nsmc)"},
      {"id\trating\tlabel\ttext\n1\t2\t0\n", "line 2: expected 4 tab-separated fields", "found 3"},
      {"id\trating\tlabel\ttext\n1\t2\t0\tok\n2\t3\t0\ta\tb\n", "line 3: expected 4 tab-separated fields",
       "found 5"},
      {"id\trating\tlabel\ttext\n12a\t2\t0\tx\n", "line 2: field 'id': expected a non-negative integer",
       "found '12a'"},
      {"id\trating\tlabel\ttext\n-3\t2\t0\tx\n", "field 'id'", "'-3'"},
      {"id\trating\tlabel\ttext\n1\t11\t1\tx\n", "line 2: field 'rating': expected an integer 1..10", "'11'"},
      {"id\trating\tlabel\ttext\n1\t0\t0\tx\n", "field 'rating'", "'0'"},
      {"id\trating\tlabel\ttext\n1\t2\t2\tx\n", "line 2: field 'label': expected 0 or 1", "found '2'"},
      {"id\trating\tlabel\ttext\n1\t2\t01\tx\n", "field 'label'", "'01'"},
      {"id\trating\tlabel\ttext\n1\t2\tpos\tx\n", "field 'label'", "'pos'"},
      {"id\trating\tlabel\ttext\n1\t2\t0\tok\n2\t2\t0\tbad \xff byte\n", "line 3: field 'text': invalid UTF-8",
       "byte 4 of the text (byte 0xff)"},
      {"id\trating\tlabel\ttext\n1\t2\t0\tok\n\n2\t2\t0\tok\n", "line 3: expected 4 tab-separated fields",
       "found 1"},
  };
  run_bad_cases(mb_import_imdb_tsv, cases, sizeof cases / sizeof cases[0]);
}

static void test_missing_and_truncated_gz(void **state) {
  (void)state;
  mb_records r;
  char *missing = path_in("nope/train.tsv.gz");
  assert_int_equal(mb_import_imdb_tsv(missing, NULL, &r), MB_ENOTFOUND);
  expect_msg(missing, "No such file");
  free(missing);
  /* A gzip file cut in the middle: zlib knows the stream did not end. */
  size_t big = 200000;
  char *content = malloc(big + 64);
  size_t n = (size_t)sprintf(content, "id\trating\tlabel\ttext\n");
  for (int i = 0; n + 64 < big; i++)
    n += (size_t)sprintf(content + n, "%d\t1\t0\treview number %d with some words %x\n", i, i * 7, i * 31);
  char *gz = path_in("train.tsv.gz");
  tu_write_gz(gz, content, n);
  struct stat st;
  assert_int_equal(stat(gz, &st), 0);
  assert_int_equal(truncate(gz, st.st_size / 2), 0);
  assert_int_equal(mb_import_imdb_tsv(gz, NULL, &r), MB_EFORMAT);
  expect_msg(gz, "truncated or corrupt gzip");
  /* Garbage in the middle of the compressed stream. */
  tu_write_gz(gz, content, n);
  FILE *f = fopen(gz, "r+b");
  fseek(f, st.st_size / 3, SEEK_SET);
  const char junk[64] = "this is not deflate data at all, not at all, not at all......";
  fwrite(junk, 1, sizeof junk, f);
  fclose(f);
  assert_int_equal(mb_import_imdb_tsv(gz, NULL, &r), MB_EFORMAT);
  expect_msg(gz, "gzip");
  free(gz);
  free(content);
}

/* Texts checked against what pandas.read_csv(sep='\t') gives for the same
 * file (NaN -> ""), printed by pandas 3.1.1 for exactly these lines. */
static void test_nsmc_quirks(void **state) {
  (void)state;
  static const char tsv[] =
      "id\tdocument\tlabel\n"
      "1\t\xec\x95\x84 \xeb\x8d\x94\xeb\xb9\x99.. \xec\xa7\x84\xec\xa7\x9c\t0\n"
      "2\t\t1\n"
      "3\t\"\"\"a \"\"b\"\".\"\"\"\t1\n"
      "4\tsay \"hi\" ok\t0\n"
      "5\t\"a\tb\"\t1\n"
      "6\tcrlf\t1\r\n"
      "7\t\"\"\t0\n"
      "8\t\"x\"\t1\n";
  static const char *const want[] = {"\xec\x95\x84 \xeb\x8d\x94\xeb\xb9\x99.. \xec\xa7\x84\xec\xa7\x9c",
                                     "",
                                     "\"a \"b\".\"",
                                     "say \"hi\" ok",
                                     "a\tb",
                                     "crlf",
                                     "",
                                     "x"};
  static const int want_label[] = {0, 1, 1, 0, 1, 1, 0, 1};
  char *p = path_in("ratings_test.txt");
  tu_write_str(p, tsv);
  mb_records r;
  assert_ok(mb_import_nsmc_tsv(p, NULL, &r));
  assert_string_equal(r.dataset, "nsmc");
  assert_string_equal(r.split, "test");
  assert_int_equal(r.n, 8);
  for (size_t i = 0; i < 8; i++) {
    assert_int_equal(r.rec[i].id, (int64_t)i + 1);
    assert_int_equal(r.rec[i].label, want_label[i]);
    assert_int_equal(r.rec[i].rating, -1);
    assert_int_equal(r.rec[i].line, (int64_t)i + 2);
    assert_string_equal(mb_record_text(&r, i), want[i]);
    assert_int_equal(r.rec[i].text_len, strlen(want[i]));
  }
  assert_int_equal(r.label_count[0], 3);
  assert_int_equal(r.label_count[1], 5);
  mb_records_free(&r);
  free(p);
}

static void test_nsmc_errors(void **state) {
  (void)state;
  static const bad_case cases[] = {
      {"id\tdocument\n", "line 1: expected the header 'id<TAB>document<TAB>label'", NULL},
      {"id\tdocument\tlabel\n1\t\"abc\t1\n", "line 2: field 'document': quoted text does not end", NULL},
      {"id\tdocument\tlabel\n1\t\"ab\"c\t1\n", "line 2: field 'document': text after the closing quote", NULL},
      {"id\tdocument\tlabel\n1\tok\t0\n2\tonly two\n", "line 3: expected 3 tab-separated fields", "found 2"},
      {"id\tdocument\tlabel\n1\ta\tb\t0\n", "line 2: expected 3 tab-separated fields", "found 4"},
      {"id\tdocument\tlabel\n1\tok\t0\nxyz\tok\t1\n", "line 3: field 'id': expected a non-negative integer",
       "'xyz'"},
      {"id\tdocument\tlabel\n1\tok\t5\n", "line 2: field 'label': expected 0 or 1", "found '5'"},
      {"id\tdocument\tlabel\n1\tok\t\n", "field 'label'", "found ''"},
      {"id\tdocument\tlabel\n1\t\"bad \xc3\x28 \"\"q\"\"\"\t1\n", "line 2: field 'document': invalid UTF-8",
       "byte 4 of the text"},
      {"id\tdocument\tlabel\n1\tok\t1\n\n2\tok\t0\n", "line 3: expected 3 tab-separated fields", "found 1"},
      {"id\trating\tlabel\ttext\n1\t2\t0\tok\n", "expected the header 'id<TAB>document<TAB>label'",
       "(an IMDB file: data.dataset / --dataset imdb)"},
  };
  run_bad_cases(mb_import_nsmc_tsv, cases, sizeof cases / sizeof cases[0]);
}

static void write_review(const char *root, const char *split, int label, int64_t id, int rating, const char *text,
                         size_t len) {
  char dir[4096], file[4200];
  snprintf(dir, sizeof dir, "%s/%s", root, split);
  mkdir(dir, 0777);
  snprintf(dir, sizeof dir, "%s/%s/%s", root, split, label ? "pos" : "neg");
  mkdir(dir, 0777);
  snprintf(file, sizeof file, "%s/%lld_%d.txt", dir, (long long)id, rating);
  tu_write(file, text, len);
}

/* A tree made from the shipped sample's rows (a few with line breaks and
 * tabs put back where the TSV has spaces) imports to the same records. */
static void test_tree_equals_tsv(void **state) {
  (void)state;
  mb_records tsv, tree;
  assert_ok(mb_import_imdb_tsv("data/samples/imdb/test.tsv.gz", NULL, &tsv));
  assert_int_equal(tsv.n, 1000);
  char *root = path_in("aclImdb");
  mkdir(root, 0777);
  int with_breaks = 0;
  /* written in reverse, so directory order is not the answer's order */
  for (size_t k = tsv.n; k-- > 0;) {
    const mb_record *r = &tsv.rec[k];
    char *t = strdup(mb_record_text(&tsv, k));
    char *sp = strstr(t, "  ");
    if (k % 7 == 0 && sp) { /* two spaces: CR LF in the original */
      sp[0] = '\r';
      sp[1] = '\n';
      with_breaks++;
    } else if (k % 5 == 0 && (sp = strchr(t, ' ')) != NULL) {
      *sp = k % 2 ? '\t' : '\n';
      with_breaks++;
    } else if (k % 3 == 0 && (sp = strchr(t, ' ')) != NULL) { /* a lone CR (old Mac line end) */
      *sp = '\r';
      with_breaks++;
    }
    write_review(root, "test", r->label, r->id, r->rating, t, r->text_len);
    free(t);
  }
  assert_true(with_breaks > 100);
  write_review(root, "test", 0, 999999, 1, "x", 1); /* one more, removed below */
  char extra[4200];
  snprintf(extra, sizeof extra, "%s/test/neg/999999_1.txt", root);
  unlink(extra);
  snprintf(extra, sizeof extra, "%s/test/neg/.DS_Store", root);
  tu_write_str(extra, "hidden files are skipped");
  assert_ok(mb_import("imdb", root, "test", &tree));
  assert_string_equal(tree.dataset, "imdb");
  assert_string_equal(tree.split, "test");
  assert_int_equal(tree.n, tsv.n);
  assert_int_equal(tree.label_count[0], tsv.label_count[0]);
  assert_int_equal(tree.label_count[1], tsv.label_count[1]);
  for (size_t i = 0; i < tsv.n; i++) {
    assert_int_equal(tree.rec[i].id, tsv.rec[i].id);
    assert_int_equal(tree.rec[i].label, tsv.rec[i].label);
    assert_int_equal(tree.rec[i].rating, tsv.rec[i].rating);
    assert_int_equal(tree.rec[i].text_len, tsv.rec[i].text_len);
    assert_memory_equal(mb_record_text(&tree, i), mb_record_text(&tsv, i), tsv.rec[i].text_len);
  }
  mb_records_free(&tree);
  /* the tree needs the split named */
  assert_int_equal(mb_import("imdb", root, NULL, &tree), MB_EINVAL);
  expect_msg(root, "give the split");
  mb_records_free(&tsv);
  free(root);
}

static void test_tree_errors(void **state) {
  (void)state;
  mb_records r;
  char *root = path_in("badtree");
  mkdir(root, 0777);
  assert_int_equal(mb_import_imdb_tree(root, "train", &r), MB_ENOTFOUND);
  expect_msg("badtree/train/neg", NULL);
  write_review(root, "train", 0, 1, 2, "fine", 4);
  write_review(root, "train", 1, 5, 8, "fine", 4);
  char f[4200];
  snprintf(f, sizeof f, "%s/train/pos/notes.txt", root);
  tu_write_str(f, "x");
  assert_int_equal(mb_import_imdb_tree(root, "train", &r), MB_EFORMAT);
  expect_msg("train/pos/notes.txt", "<id>_<rating>.txt");
  unlink(f);
  write_review(root, "train", 1, 5, 9, "same id", 7);
  assert_int_equal(mb_import_imdb_tree(root, "train", &r), MB_EFORMAT);
  expect_msg("two reviews with id 5", NULL);
  snprintf(f, sizeof f, "%s/train/pos/5_9.txt", root);
  unlink(f);
  write_review(root, "train", 0, 7, 3, "bad \xfe", 5);
  assert_int_equal(mb_import_imdb_tree(root, "train", &r), MB_EFORMAT);
  expect_msg("train/neg/7_3.txt: invalid UTF-8 at byte 4", NULL);
  snprintf(f, sizeof f, "%s/train/neg/7_3.txt", root);
  unlink(f);
  assert_ok(mb_import_imdb_tree(root, "train", &r));
  assert_int_equal(r.n, 2);
  mb_records_free(&r);
  assert_int_equal(mb_import("squad", root, "train", &r), MB_EINVAL);
  expect_msg("unknown data set 'squad'", NULL);
  free(root);
}

/* what editors add: a UTF-8 byte order mark before the header, CRLF line
 * ends, blank lines at the end; the split from a file name is a word of its
 * own; the data set from a file's header */
static void test_editor_quirks_and_names(void **state) {
  (void)state;
  mb_records r;
  char *p = path_in("bom_train.tsv");
  tu_write_str(p, "\xEF\xBB\xBFid\trating\tlabel\ttext\r\n7\t9\t1\tgood\r\n\r\n\n");
  assert_ok(mb_import_imdb_tsv(p, NULL, &r));
  assert_int_equal(r.n, 1);
  assert_string_equal(mb_record_text(&r, 0), "good");
  mb_records_free(&r);
  assert_string_equal(mb_dataset_from_content(p), "imdb");
  char *q = path_in("reviews.txt");
  tu_write_str(q, "id\tdocument\tlabel\n1\tok\t0\n");
  assert_string_equal(mb_dataset_from_content(q), "nsmc");
  tu_write_str(q, "something else\n");
  assert_null(mb_dataset_from_content(q));
  /* a header of any bytes (here 400 UTF-8 continuation bytes) is quoted
   * within the message's buffer (ASan watched it overrun once) */
  char junk[402];
  memset(junk, 0x80, 400);
  junk[400] = '\n';
  junk[401] = 0;
  tu_write_str(p, junk);
  assert_int_equal(mb_import_imdb_tsv(p, NULL, &r), MB_EFORMAT);
  expect_msg("line 1: expected the header", NULL);
  const char *names[][2] = {{"ratings_test.txt", "test"}, {"/a/train.tsv.gz", "train"}, {"imdb-TRAIN.tsv", "train"},
                            {"train2.tsv", "train"},     {"latest.tsv", NULL},       {"contest.txt", NULL},
                            {"training.tsv", NULL},      {"train-test.tsv", NULL},   {"/x/test/data.tsv", NULL}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    const char *got = mb_split_from_name(names[i][0]);
    if (!names[i][1])
      assert_null(got);
    else
      assert_string_equal(got, names[i][1]);
  }
  free(p);
  free(q);
}

/* a file with only its header, or a tree with empty folders, is refused by
 * mb_import naming the input (not found later as an empty loader) */
static void test_import_no_examples(void **state) {
  (void)state;
  mb_records r;
  char *imdb = path_in("train.tsv"), *nsmc = path_in("ratings_test.txt"), *root = path_in("emptytree");
  tu_write_str(imdb, "id\trating\tlabel\ttext\n");
  assert_int_equal(mb_import_imdb_tsv(imdb, NULL, &r), MB_OK); /* the parser itself accepts it */
  assert_int_equal(r.n, 0);
  mb_records_free(&r);
  assert_int_equal(mb_import("imdb", imdb, NULL, &r), MB_EFORMAT);
  expect_msg(imdb, "no examples (the file holds only its header)");
  assert_null(r.rec);
  tu_write_str(nsmc, "id\tdocument\tlabel\n");
  assert_int_equal(mb_import("nsmc", nsmc, NULL, &r), MB_EFORMAT);
  expect_msg(nsmc, "no examples");
  mkdir(root, 0777);
  char d[4200];
  snprintf(d, sizeof d, "%s/test", root);
  mkdir(d, 0777);
  snprintf(d, sizeof d, "%s/test/neg", root);
  mkdir(d, 0777);
  snprintf(d, sizeof d, "%s/test/pos", root);
  mkdir(d, 0777);
  assert_int_equal(mb_import("imdb", root, "test", &r), MB_EFORMAT);
  expect_msg(root, "no reviews in test/neg and test/pos");
  free(imdb);
  free(nsmc);
  free(root);
}

static void test_shipped_samples(void **state) {
  (void)state;
  struct {
    const char *dataset, *path, *split;
    size_t n;
    int empty;
  } s[] = {
      {"imdb", "data/samples/imdb/train.tsv.gz", "train", 2000, 0},
      {"imdb", "data/samples/imdb/test.tsv.gz", "test", 1000, 0},
      {"nsmc", "data/samples/nsmc/ratings_train.txt.gz", "train", 2000, 1},
      {"nsmc", "data/samples/nsmc/ratings_test.txt.gz", "test", 1000, 1},
  };
  for (size_t k = 0; k < 4; k++) {
    mb_records r;
    assert_ok(mb_import(s[k].dataset, s[k].path, NULL, &r));
    assert_string_equal(r.split, s[k].split);
    assert_int_equal(r.n, s[k].n);
    assert_int_equal(r.label_count[0], s[k].n / 2);
    assert_int_equal(r.label_count[1], s[k].n / 2);
    int empty = 0, quoted = 0;
    for (size_t i = 0; i < r.n; i++) {
      empty += r.rec[i].text_len == 0;
      quoted += strchr(mb_record_text(&r, i), '"') != NULL;
      if (r.rec[i].rating > 0) /* IMDB: neg is rated 1..4, pos 7..10 */
        assert_true(r.rec[i].label ? r.rec[i].rating >= 7 : r.rec[i].rating <= 4);
    }
    assert_int_equal(empty, s[k].empty);
    assert_true(quoted > 0);
    mb_records_free(&r);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_utf8_validator),          cmocka_unit_test(test_imdb_tsv_plain_and_gz),
      cmocka_unit_test(test_imdb_tsv_errors),         cmocka_unit_test(test_missing_and_truncated_gz),
      cmocka_unit_test(test_nsmc_quirks),             cmocka_unit_test(test_nsmc_errors),
      cmocka_unit_test(test_tree_equals_tsv),         cmocka_unit_test(test_tree_errors),
      cmocka_unit_test(test_shipped_samples),         cmocka_unit_test(test_import_no_examples),
      cmocka_unit_test(test_editor_quirks_and_names),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
