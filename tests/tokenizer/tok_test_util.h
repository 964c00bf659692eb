/* tok_test_util.h: helpers for the tokenizer tests: where the data and
 * fixtures are, reading (gzipped) files whole, the fixture hash, and the
 * IMDB/NSMC readers that feed the same text as tools/make_tokenizer_fixtures.py.
 */
#ifndef MB_TESTS_TOK_TEST_UTIL_H
#define MB_TESTS_TOK_TEST_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define TOK_FIXTURES "tests/tokenizer/fixtures"

/* The shared data folder: $MAMBERT_DATA_DIR or ../shared/data (tests run in
 * the repository root). */
static inline const char *tok_data_dir(void) {
  const char *d = getenv("MAMBERT_DATA_DIR");
  return d && *d ? d : "../shared/data";
}

static inline int tok_file_exists(const char *p) {
  FILE *f = fopen(p, "rb");
  if (f)
    fclose(f);
  return f != NULL;
}

/* The vocabularies ship in the repository (data/vocab); the shared data
 * folder's copies are the fallback. */
static inline const char *tok_vocab_dir(void) {
  static char shared[512];
  if (tok_file_exists("data/vocab/bert-base-uncased-vocab.txt"))
    return "data/vocab";
  snprintf(shared, sizeof shared, "%s/vocab", tok_data_dir());
  return shared;
}

/* Whole file (gunzipped when gzipped) into a NUL-terminated buffer. */
static inline char *tok_read_file(const char *path, size_t *n_out) {
  gzFile g = gzopen(path, "rb");
  if (!g)
    return NULL;
  size_t cap = 1 << 20, n = 0;
  char *buf = (char *)malloc(cap + 1);
  for (;;) {
    if (n == cap) {
      cap *= 2;
      buf = (char *)realloc(buf, cap + 1);
    }
    int r = gzread(g, buf + n, (unsigned)(cap - n > (1u << 30) ? (1u << 30) : cap - n));
    if (r <= 0)
      break;
    n += (size_t)r;
  }
  gzclose(g);
  buf[n] = 0;
  if (n_out)
    *n_out = n;
  return buf;
}

static inline uint64_t tok_fnv_ids(const int32_t *ids, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++) {
    uint32_t v = (uint32_t)ids[i];
    for (int k = 0; k < 4; k++) {
      h ^= (v >> (8 * k)) & 0xFF;
      h *= 0x100000001b3ull;
    }
  }
  return h;
}

typedef struct {
  char *buf; /* owns the texts */
  char **text;
  size_t *len;
  size_t n;
} tok_texts;

static inline void tok_texts_free(tok_texts *t) {
  free(t->buf);
  free(t->text);
  free(t->len);
  memset(t, 0, sizeof(*t));
}

/* IMDB TSV (id rating label text, no quoting) or NSMC (id document label,
 * CSV-quoted documents: outer quotes dropped, "" -> "). Returns 0 on success. */
static inline int tok_read_reviews(const char *path, int nsmc, tok_texts *out) {
  memset(out, 0, sizeof(*out));
  size_t n;
  char *buf = tok_read_file(path, &n);
  if (!buf)
    return -1;
  size_t lines = 0;
  for (size_t i = 0; i < n; i++)
    lines += buf[i] == '\n';
  out->buf = buf;
  out->text = (char **)malloc((lines + 1) * sizeof(char *));
  out->len = (size_t *)malloc((lines + 1) * sizeof(size_t));
  char *p = strchr(buf, '\n'); /* skip the header */
  if (!p)
    return -1;
  p++;
  while (p < buf + n) {
    char *eol = memchr(p, '\n', (size_t)(buf + n - p));
    if (!eol)
      eol = buf + n;
    *eol = 0;
    if (eol > p) {
      /* the text field: the 4th (IMDB) or the 2nd (NSMC) */
      int want = nsmc ? 1 : 3;
      char *f = p;
      for (int k = 0; k < want && f; k++) {
        f = strchr(f, '\t');
        if (f)
          f++;
      }
      if (!f)
        return -1;
      char *end = nsmc ? strchr(f, '\t') : eol;
      if (!end)
        return -1;
      size_t len = (size_t)(end - f);
      if (nsmc && len >= 2 && f[0] == '"' && f[len - 1] == '"') {
        size_t w = 0;
        for (size_t i = 1; i + 1 < len; i++) {
          f[w++] = f[i];
          if (f[i] == '"' && f[i + 1] == '"')
            i++;
        }
        len = w;
      }
      out->text[out->n] = f;
      out->len[out->n] = len;
      out->n++;
    }
    p = eol + 1;
  }
  return 0;
}

#endif
