/* test_token_errors.c: small self-made WordPiece and BPE tokenizers (no data
 * directory needed): the algorithms on hand-checked examples, and every kind
 * of bad input (missing/empty/malformed vocab.txt and tokenizer.json, invalid
 * UTF-8 text, ids out of range) giving a clear error that names the file and
 * line, the JSON field, or the byte offset.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "data/tokenizer.h"
#include "data/tokenizer_impl.h"

static char dir[64];

static const char *write_file(const char *name, const char *content, size_t n) {
  static char path[8][256];
  static int slot;
  char *p = path[slot++ % 8];
  snprintf(p, 256, "%s/%s", dir, name);
  FILE *f = fopen(p, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(content, 1, n, f), n);
  fclose(f);
  return p;
}
#define WRITE(name, lit) write_file(name, lit, sizeof(lit) - 1)

/* Load must fail with `code` and a message containing each of the strings. */
static void expect_load_error(const char *path, int code, const char *want1, const char *want2) {
  mb_tokenizer *t = (mb_tokenizer *)1;
  int rc = mb_tokenizer_load(path, NULL, &t);
  if (rc != code || !strstr(mb_error_message(), want1) || (want2 && !strstr(mb_error_message(), want2)))
    fprintf(stderr, "loading %s: rc %d, message \"%s\"; expected %d with \"%s\"%s%s\n", path, rc,
            mb_error_message(), code, want1, want2 ? " and " : "", want2 ? want2 : "");
  assert_int_equal(rc, code);
  assert_null(t);
  assert_non_null(strstr(mb_error_message(), want1));
  if (want2)
    assert_non_null(strstr(mb_error_message(), want2));
}

static const char small_vocab[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nun\n##aff\n##able\nhello\n,\n!\nworld\n"
                                  "a\n##a\ncafe\n##s\n";

static int32_t wp_ids(mb_tokenizer *t, const char *s, int32_t *out, int max_length) {
  mb_ids v = {0};
  assert_int_equal(mb_tokenizer_encode(t, s, strlen(s), 1, max_length, &v), MB_OK);
  for (size_t i = 0; i < v.n; i++)
    out[i] = v.ids[i];
  int32_t n = (int32_t)v.n;
  mb_ids_free(&v);
  return n;
}

static void test_small_wordpiece(void **state) {
  (void)state;
  const char *p = WRITE("small-uncased-vocab.txt", small_vocab);
  mb_tokenizer *t;
  assert_int_equal(mb_tokenizer_load(p, NULL, &t), MB_OK);
  assert_string_equal(mb_tokenizer_name(t), "wordpiece-uncased");
  assert_int_equal(mb_tokenizer_vocab_size(t), 16);
  int32_t ids[256];
  /* greedy longest match with ## pieces; lower-casing; punctuation isolated */
  int32_t n = wp_ids(t, "UnAffable, hello!", ids, 0);
  int32_t want1[] = {2, 5, 6, 7, 9, 8, 10, 3};
  assert_int_equal(n, 8);
  assert_memory_equal(ids, want1, sizeof(want1));
  /* accents stripped (NFD, Mn dropped); no full cover -> one [UNK] for the word */
  n = wp_ids(t, "Cafés unx", ids, 0);
  int32_t want2[] = {2, 14, 15, 1, 3};
  assert_int_equal(n, 5);
  assert_memory_equal(ids, want2, sizeof(want2));
  /* 100 characters is fine, 101 is [UNK] */
  char w[128];
  memset(w, 'a', 101);
  w[100] = 0;
  n = wp_ids(t, w, ids, 0);
  assert_int_equal(n, 102);
  assert_int_equal(ids[1], 12);
  assert_int_equal(ids[2], 13);
  w[100] = 'a';
  w[101] = 0;
  n = wp_ids(t, w, ids, 0);
  assert_int_equal(n, 3);
  assert_int_equal(ids[1], 1);
  /* special tokens in the raw text; truncation keeps [SEP] */
  n = wp_ids(t, "hello[SEP]world", ids, 0);
  int32_t want3[] = {2, 8, 3, 11, 3};
  assert_int_equal(n, 5);
  assert_memory_equal(ids, want3, sizeof(want3));
  n = wp_ids(t, "hello world hello world", ids, 4);
  int32_t want4[] = {2, 8, 11, 3};
  assert_int_equal(n, 4);
  assert_memory_equal(ids, want4, sizeof(want4));
  char *dec;
  int32_t d[] = {2, 5, 6, 7, 9, 8, 10, 3};
  assert_int_equal(mb_tokenizer_decode(t, d, 8, &dec), MB_OK);
  assert_string_equal(dec, "unaffable, hello!");
  free(dec);
  int32_t bad_id = 16;
  assert_int_equal(mb_tokenizer_decode(t, &bad_id, 1, &dec), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "id 16"));
  mb_tokenizer_free(t);
}

/* A tokenizer.json with the 256 byte-level tokens, a few merges and added
 * tokens; pieces after the byte tokens are appended with the next ids. */
static char *small_bpe_json(const char *merges, const char *extra_vocab, const char *added) {
  size_t cap = 1 << 16;
  char *s = (char *)malloc(cap);
  size_t n = (size_t)snprintf(s, cap, "{\"version\":\"1.0\",\"added_tokens\":[%s],\"normalizer\":{\"type\":\"NFC\"},"
                                      "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false},"
                                      "\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{",
                              added);
  int id = 0;
  for (int b = 0; b < 256; b++) {
    int c = b;
    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) {
      int k = 0;
      for (int x = 0; x < b; x++)
        k += !((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255));
      c = 256 + k;
    }
    n += (size_t)snprintf(s + n, cap - n, "%s\"\\u%04x\":%d", b ? "," : "", c, id++);
  }
  n += (size_t)snprintf(s + n, cap - n, "%s%s},\"merges\":[%s]}}", *extra_vocab ? "," : "", extra_vocab, merges);
  return s;
}

static void test_small_bpe(void **state) {
  (void)state;
  /* ids: bytes 0..255 in byte order ('h' = 104 ...), then he=256 ll=257 hell=258 hello=259 Ġw=260 */
  char *js = small_bpe_json("\"h e\",\"l l\",\"he ll\",\"hell o\",\"\\u0120 w\"",
                            "\"he\":256,\"ll\":257,\"hell\":258,\"hello\":259,\"\\u0120w\":260",
                            "{\"id\":261,\"content\":\"  \",\"special\":false,\"normalized\":true},"
                            "{\"id\":262,\"content\":\"   \",\"special\":false,\"normalized\":true},"
                            "{\"id\":263,\"content\":\"<|end|>\",\"special\":true,\"normalized\":false}");
  const char *p = write_file("small.json", js, strlen(js));
  free(js);
  mb_tokenizer *t;
  assert_int_equal(mb_tokenizer_load(p, NULL, &t), MB_OK);
  assert_string_equal(mb_tokenizer_name(t), "bpe");
  assert_int_equal(mb_tokenizer_vocab_size(t), 264);
  mb_ids v = {0};
  /* "hello w": hello by rank order, then " w" is Ġw */
  assert_int_equal(mb_tokenizer_encode(t, "hello w", 7, 1, 0, &v), MB_OK);
  assert_int_equal(v.n, 2);
  assert_int_equal(v.ids[0], 259);
  assert_int_equal(v.ids[1], 260);
  /* runs of spaces: longest added token first, leftmost; the text after an
   * added token starts a new pre-token without its space */
  assert_int_equal(mb_tokenizer_encode(t, "h     w<|end|>", 14, 1, 0, &v), MB_OK);
  int32_t want[] = {'h', 262, 261, 'w', 263};
  assert_int_equal(v.n, 5);
  assert_memory_equal(v.ids, want, sizeof(want));
  /* NFC: e + combining acute is the same as precomposed é (bytes c3 a9) */
  assert_int_equal(mb_tokenizer_encode(t, "e\xcc\x81", 3, 1, 0, &v), MB_OK);
  assert_int_equal(v.n, 2);
  assert_int_equal(v.ids[0], 0xc3);
  assert_int_equal(v.ids[1], 0xa9);
  char *dec;
  int32_t d[] = {259, 262, 260, 263, 0xc3};
  assert_int_equal(mb_tokenizer_decode(t, d, 5, &dec), MB_OK);
  /* special skipped; a lone lead byte becomes U+FFFD as from_utf8_lossy */
  assert_string_equal(dec, "hello    w\xef\xbf\xbd");
  free(dec);
  /* truncation */
  assert_int_equal(mb_tokenizer_encode(t, "hello w hello", 13, 1, 2, &v), MB_OK);
  assert_int_equal(v.n, 2);
  mb_ids_free(&v);
  mb_tokenizer_free(t);
}

static void test_bad_vocab_txt(void **state) {
  (void)state;
  expect_load_error("/nonexistent-dir/vocab.txt", MB_EIO, "/nonexistent-dir/vocab.txt", "cannot open");
  const char *p = WRITE("empty-vocab.txt", "");
  expect_load_error(p, MB_EFORMAT, p, "empty vocabulary");
  p = WRITE("dup-vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\nworld\nhello\n");
  expect_load_error(p, MB_EFORMAT, "line 7: duplicate token 'hello' (first on line 5)", p);
  p = WRITE("nounk-vocab.txt", "[PAD]\n[CLS]\n[SEP]\nhello\n");
  expect_load_error(p, MB_EFORMAT, "no [UNK] token", p);
  p = WRITE("nocls-vocab.txt", "[PAD]\n[UNK]\n[SEP]\nhello\n");
  expect_load_error(p, MB_EFORMAT, "no [CLS] token", p);
  p = WRITE("utf8-vocab.txt", "[UNK]\n[CLS]\n[SEP]\nab\xff" "cd\n");
  expect_load_error(p, MB_EFORMAT, "line 4: invalid UTF-8", p);
  /* a folder given for its tokenizer: said so, naming the file it holds */
  char folder[128];
  snprintf(folder, sizeof folder, "%s/model-folder", dir);
  assert_int_equal(mkdir(folder, 0777), 0);
  expect_load_error(folder, MB_EINVAL, "is a directory; the tokenizer is a file", NULL);
  WRITE("model-folder/vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n");
  expect_load_error(folder, MB_EINVAL, "(this one holds ", "model-folder/vocab.txt)");
}

static void test_bad_tokenizer_json(void **state) {
  (void)state;
  expect_load_error("/nonexistent-dir/tokenizer.json", MB_EIO, "/nonexistent-dir/tokenizer.json", NULL);
  const char *p = WRITE("empty.json", "");
  expect_load_error(p, MB_EFORMAT, p, "invalid JSON");
  p = WRITE("array.json", "[1, 2, 3]\n");
  expect_load_error(p, MB_EFORMAT, p, "not a JSON object");
  p = WRITE("broken.json", "{\"model\": {\"vocab\": {\"a\": 1,}}}\n");
  expect_load_error(p, MB_EFORMAT, "line 1, column", "invalid JSON");
  p = WRITE("novocab.json", "{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"merges\":[]}}");
  expect_load_error(p, MB_EFORMAT, "missing object model.vocab", p);
  p = WRITE("nomerges.json", "{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{}}}");
  expect_load_error(p, MB_EFORMAT, "missing array model.merges", p);
  p = WRITE("nomodel.json", "{\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}");
  expect_load_error(p, MB_EFORMAT, "missing object \"model\"", p);
  p = WRITE("nfkc.json", "{\"normalizer\":{\"type\":\"NFKC\"},\"pre_tokenizer\":{\"type\":\"ByteLevel\"},"
                         "\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}");
  expect_load_error(p, MB_EUNSUPPORTED, "normalizer NFKC is not supported", p);
  p = WRITE("wp.json", "{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"WordPiece\",\"vocab\":{},"
                       "\"merges\":[]}}");
  expect_load_error(p, MB_EUNSUPPORTED, "a WordPiece tokenizer with normalizer none (supported: BertNormalizer)", p);
  p = WRITE("wp2.json", "{\"normalizer\":{\"type\":\"BertNormalizer\"},\"pre_tokenizer\":{\"type\":\"ByteLevel\"},"
                        "\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}");
  expect_load_error(p, MB_EUNSUPPORTED, "pre_tokenizer ByteLevel (supported: BertPreTokenizer)", p);
  p = WRITE("wp3.json", "{\"normalizer\":{\"type\":\"BertNormalizer\"},\"pre_tokenizer\":{\"type\":"
                        "\"BertPreTokenizer\"},\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"[UNK]\":0,\"a\":5}}}");
  expect_load_error(p, MB_EFORMAT, "model.vocab['a']: expected the ids 0..1, each once", p);
  p = WRITE("wp4.json", "{\"added_tokens\":[{\"id\":1,\"content\":\"[NEW]\"}],\"normalizer\":{\"type\":"
                        "\"BertNormalizer\"},\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"},\"model\":{\"type\":"
                        "\"WordPiece\",\"vocab\":{\"[UNK]\":0,\"[NEW]\":1}}}");
  expect_load_error(p, MB_EUNSUPPORTED, "added token '[NEW]' besides BERT's five", p);
  p = WRITE("wp5.json", "{\"normalizer\":{\"type\":\"BertNormalizer\",\"clean_text\":false},\"pre_tokenizer\":"
                        "{\"type\":\"BertPreTokenizer\"},\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"[UNK]\":0}}}");
  expect_load_error(p, MB_EUNSUPPORTED, "clean_text false", p);

  char *js = small_bpe_json("\"h e\",\"x zz\"", "\"he\":256", "");
  p = write_file("unknown-merge.json", js, strlen(js));
  free(js);
  expect_load_error(p, MB_EFORMAT, "model.merges[1]: token 'zz' is not in model.vocab", p);
  js = small_bpe_json("\"h e\",\"e l\"", "\"he\":256", "");
  p = write_file("unmerged.json", js, strlen(js));
  free(js);
  expect_load_error(p, MB_EFORMAT, "model.merges[1]: the merged token 'el' is not in model.vocab", p);
  js = small_bpe_json("\"h e x\"", "\"he\":256", "");
  p = write_file("threeparts.json", js, strlen(js));
  free(js);
  expect_load_error(p, MB_EFORMAT, "model.merges[0]", "two tokens");
  js = small_bpe_json("", "\"he\":\"x\"", "");
  p = write_file("badid.json", js, strlen(js));
  free(js);
  expect_load_error(p, MB_EFORMAT, "model.vocab[\"he\"]", "integer id");
  js = small_bpe_json("", "\"he\":5", "");
  p = write_file("twoids.json", js, strlen(js));
  free(js);
  expect_load_error(p, MB_EFORMAT, "id 5 is given to two tokens", p);
}

static void test_invalid_utf8_text(void **state) {
  (void)state;
  const char *p = WRITE("small2-uncased-vocab.txt", small_vocab);
  char *js = small_bpe_json("", "", "");
  const char *pj = write_file("small2.json", js, strlen(js));
  free(js);
  mb_tokenizer *t[2];
  assert_int_equal(mb_tokenizer_load(p, NULL, &t[0]), MB_OK);
  assert_int_equal(mb_tokenizer_load(pj, NULL, &t[1]), MB_OK);
  static const struct {
    const char *s;
    size_t n, at;
  } bad[] = {
      {"abc\xc3(", 5, 3},          /* lead byte without continuation */
      {"\xc0\x80", 2, 0},          /* overlong NUL */
      {"ok \xed\xa0\x80", 6, 3},   /* UTF-16 surrogate */
      {"ab\xe2\x82", 4, 2},        /* cut off at the end */
      {"\xf4\x90\x80\x80", 4, 0},  /* past U+10FFFF */
      {"hello \xff world", 13, 6}, /* never valid */
  };
  mb_ids v = {0};
  char want[64];
  for (int k = 0; k < 2; k++)
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
      assert_int_equal(mb_tokenizer_encode(t[k], bad[i].s, bad[i].n, 1, 0, &v), MB_EINVAL);
      snprintf(want, sizeof(want), "invalid UTF-8 at byte offset %zu", bad[i].at);
      assert_non_null(strstr(mb_error_message(), want));
      assert_int_equal(v.n, 0);
    }
  mb_ids_free(&v);
  mb_tokenizer_free(t[0]);
  mb_tokenizer_free(t[1]);
}

/* The hand-written ASCII pre-tokenizer must cut exactly where the PCRE2
 * GPT-2 regex does: random strings over an alphabet rich in the tricky
 * parts (contractions, runs of mixed whitespace, digits next to letters). */
static void test_ascii_pretokenizer_matches_regex(void **state) {
  (void)state;
  char *js = small_bpe_json("", "", "");
  const char *p = write_file("split.json", js, strlen(js));
  free(js);
  mb_tokenizer *t;
  assert_int_equal(mb_tokenizer_load(p, NULL, &t), MB_OK);
  static const char *const atoms[] = {"a", "Z", "q", "7", "0", " ", " ", "  ", "\n", "\t", "\r\n", "\x0b", "\x0c",
                                      "'", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "!", "?!", ".",
                                      "\x01", "\x7f", "_", "-", "<br />", "it", "won", "\"", "''"};
  const size_t natoms = sizeof(atoms) / sizeof(atoms[0]);
  uint64_t rng = 0x9e3779b97f4a7c15ull;
  char text[256];
  size_t ea[256], eb[256], na, nb;
  for (int iter = 0; iter < 20000; iter++) {
    size_t len = 0;
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    int natom = 1 + (int)((rng >> 33) % 24);
    for (int k = 0; k < natom; k++) {
      rng = rng * 6364136223846793005ull + 1442695040888963407ull;
      const char *a = atoms[(rng >> 33) % natoms];
      size_t al = strlen(a);
      if (len + al >= sizeof(text))
        break;
      memcpy(text + len, a, al);
      len += al;
    }
    assert_int_equal(mb_bpe_debug_split(t->bpe, text, len, 1, ea, 256, &na), MB_OK);
    assert_int_equal(mb_bpe_debug_split(t->bpe, text, len, 0, eb, 256, &nb), MB_OK);
    if (na != nb || memcmp(ea, eb, na * sizeof(size_t)) != 0) {
      fprintf(stderr, "split differs on \"%.*s\" (%zu vs %zu pieces)\n", (int)len, text, na, nb);
      for (size_t k = 0; k < na || k < nb; k++)
        fprintf(stderr, "  %zu: ascii %zu  regex %zu\n", k, k < na ? ea[k] : 0, k < nb ? eb[k] : 0);
    }
    assert_int_equal(na, nb);
    assert_memory_equal(ea, eb, na * sizeof(size_t));
  }
  mb_tokenizer_free(t);
}

/* Megabyte-sized words, runs of spaces and of punctuation, in ASCII and not:
 * each finishes (no quadratic blow-up, no regex stack overflow) with a
 * sensible count. */
static void test_pathological_inputs(void **state) {
  (void)state;
  const char *pw = WRITE("big-uncased-vocab.txt", small_vocab);
  char *js = small_bpe_json("\"a b\",\"ab ab\"", "\"ab\":256,\"abab\":257",
                            "{\"id\":258,\"content\":\"  \",\"special\":false,\"normalized\":true}");
  const char *pb = write_file("big.json", js, strlen(js));
  free(js);
  mb_tokenizer *wp, *bpe;
  assert_int_equal(mb_tokenizer_load(pw, NULL, &wp), MB_OK);
  assert_int_equal(mb_tokenizer_load(pb, NULL, &bpe), MB_OK);
  const size_t n = 1 << 20;
  char *s = (char *)malloc(n + 1);
  mb_ids v = {0};
  /* one 1 MiB word "abab...": WordPiece [UNK]; BPE merges it to "abab" tokens */
  for (size_t i = 0; i < n; i++)
    s[i] = "ab"[i & 1];
  assert_int_equal(mb_tokenizer_encode(wp, s, n, 1, 0, &v), MB_OK);
  assert_int_equal(v.n, 3);
  assert_int_equal(v.ids[1], 1);
  assert_int_equal(mb_tokenizer_encode(bpe, s, n, 1, 0, &v), MB_OK);
  assert_int_equal(v.n, n / 4);
  assert_int_equal(v.ids[0], 257);
  /* 1 MiB of spaces: 2-space added tokens */
  memset(s, ' ', n);
  assert_int_equal(mb_tokenizer_encode(bpe, s, n, 1, 0, &v), MB_OK);
  assert_int_equal(v.n, n / 2);
  assert_int_equal(mb_tokenizer_encode(wp, s, n, 1, 0, &v), MB_OK);
  assert_int_equal(v.n, 2);
  /* 1 MiB of newlines and of '!' (one regex piece each) */
  memset(s, '\n', n);
  assert_int_equal(mb_tokenizer_encode(bpe, s, n, 1, 0, &v), MB_OK);
  assert_int_equal(v.n, n);
  memset(s, '!', n);
  assert_int_equal(mb_tokenizer_encode(bpe, s, n, 1, 0, &v), MB_OK);
  assert_int_equal(v.n, n);
  assert_int_equal(mb_tokenizer_encode(wp, s, n, 1, 0, &v), MB_OK);
  assert_int_equal(v.n, n + 2);
  /* the same through the PCRE2 path: non-ASCII first (é then letters/spaces) */
  size_t k = 0;
  while (k + 2 <= n) {
    s[k++] = (char)0xC3;
    s[k++] = (char)0xA9;
  }
  assert_int_equal(mb_tokenizer_encode(bpe, s, k, 1, 0, &v), MB_OK);
  assert_int_equal(v.n, k); /* no merges for é: one id per byte */
  s[0] = (char)0xC3;
  s[1] = (char)0xA9;
  memset(s + 2, '\n', n - 2);
  assert_int_equal(mb_tokenizer_encode(bpe, s, n, 1, 0, &v), MB_OK);
  assert_int_equal(v.n, n);
  free(s);
  mb_ids_free(&v);
  mb_tokenizer_free(wp);
  mb_tokenizer_free(bpe);
}

/* Two BPE tokenizers in one thread share its word cache: each must get its own
 * answer for the same word. */
static void test_two_bpe_tokenizers_one_thread(void **state) {
  (void)state;
  char *js = small_bpe_json("\"h e\"", "\"he\":256", "");
  const char *p1 = write_file("one.json", js, strlen(js));
  free(js);
  js = small_bpe_json("", "", "");
  const char *p2 = write_file("two.json", js, strlen(js));
  free(js);
  mb_tokenizer *a, *b;
  assert_int_equal(mb_tokenizer_load(p1, NULL, &a), MB_OK);
  assert_int_equal(mb_tokenizer_load(p2, NULL, &b), MB_OK);
  mb_ids v = {0};
  for (int r = 0; r < 3; r++) {
    assert_int_equal(mb_tokenizer_encode(a, "he", 2, 1, 0, &v), MB_OK);
    assert_int_equal(v.n, 1);
    assert_int_equal(v.ids[0], 256);
    assert_int_equal(mb_tokenizer_encode(b, "he", 2, 1, 0, &v), MB_OK);
    assert_int_equal(v.n, 2);
    assert_int_equal(v.ids[0], 'h');
  }
  mb_ids_free(&v);
  mb_tokenizer_free(a);
  mb_tokenizer_free(b);
}

int main(void) {
  snprintf(dir, sizeof(dir), "/tmp/mb_tok_test_XXXXXX");
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_small_wordpiece),   cmocka_unit_test(test_small_bpe),
      cmocka_unit_test(test_bad_vocab_txt),     cmocka_unit_test(test_bad_tokenizer_json),
      cmocka_unit_test(test_invalid_utf8_text), cmocka_unit_test(test_ascii_pretokenizer_matches_regex),
      cmocka_unit_test(test_pathological_inputs), cmocka_unit_test(test_two_bpe_tokenizers_one_thread),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", dir);
  return rc;
}
