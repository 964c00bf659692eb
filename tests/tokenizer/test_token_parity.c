/* test_token_parity.c: every review of a data set, through each of the three
 * tokenizers, against Hugging Face: the fixture holds a hash of each review's
 * ids (tools/make_tokenizer_fixtures.py) and full ids for ~200 sampled reviews
 * (untruncated and truncated to 128). Zero mismatches allowed; the first one
 * is printed with its text and ids. Encoding runs on all OpenMP threads on one
 * loaded tokenizer. Arguments: set names (imdb-test nsmc-test imdb-train
 * nsmc-train). Skips (77) when the data directory is absent.
 */
#include <omp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "data/tokenizer.h"
#include "tok_test_util.h"

typedef struct {
  const char *name, *file;
} tok_spec;
static const tok_spec specs[] = {
    {"bert-base-uncased", "bert-base-uncased-vocab.txt"},
    {"bert-base-multilingual-cased", "bert-base-multilingual-cased-vocab.txt"},
    {"gpt-neox-20b", "gpt-neox-20b-tokenizer.json"},
};
#define NSPEC 3

typedef struct {
  const char *name, *file;
  int nsmc;
} set_spec;
static const set_spec sets[] = {
    {"imdb-test", "imdb/test.tsv.gz", 0},
    {"nsmc-test", "nsmc/ratings_test.txt.gz", 1},
    {"imdb-train", "imdb/train.tsv.gz", 0},
    {"nsmc-train", "nsmc/ratings_train.txt.gz", 1},
};

static const char *wanted[8];
static int nwanted;
static mb_tokenizer *toks[NSPEC];
static long total_compared, total_mismatched;

static void print_ids(const char *what, const int32_t *ids, size_t n) {
  fprintf(stderr, "  %s (%zu ids):", what, n);
  for (size_t i = 0; i < n; i++)
    fprintf(stderr, " %d", (int)ids[i]);
  fprintf(stderr, "\n");
}

/* One (tokenizer, set) pair; returns the mismatches. */
static long check_pair(int s, const set_spec *set, const tok_texts *tx) {
  char path[1024];
  snprintf(path, sizeof(path), TOK_FIXTURES "/%s.%s.txt.gz", specs[s].name, set->name);
  size_t flen;
  char *fx = tok_read_file(path, &flen);
  if (!fx) {
    fprintf(stderr, "%s: missing fixture (run tools/make_tokenizer_fixtures.py)\n", path);
    return -1;
  }
  /* Parse: N count bits, then H lines, then S lines. */
  size_t count = 0;
  int bits = 0;
  uint64_t *hash = NULL;
  long *nids = NULL;
  size_t nh = 0;
  long mismatches = 0;
  char *p = fx;
  char **samples = NULL;
  size_t nsamples = 0;
  while (p && *p) {
    char *eol = strchr(p, '\n');
    if (eol)
      *eol = 0;
    if (p[0] == 'N') {
      sscanf(p, "N %zu %d", &count, &bits);
      hash = (uint64_t *)calloc(count, sizeof(uint64_t));
      nids = (long *)calloc(count, sizeof(long));
      samples = (char **)calloc(count * 2 + 2, sizeof(char *));
    } else if (p[0] == 'H' && hash && nh < count) {
      unsigned long long h = 0;
      long k = -1;
      sscanf(p, "H %llx %ld", &h, &k);
      hash[nh] = h;
      nids[nh] = k;
      nh++;
    } else if (p[0] == 'S' && samples) {
      samples[nsamples++] = p;
    }
    p = eol ? eol + 1 : NULL;
  }
  if (count != tx->n || nh != count) {
    fprintf(stderr, "%s: fixture has %zu reviews (%zu hashes), the data set %zu\n", path, count, nh, tx->n);
    free(fx);
    free(hash);
    free(nids);
    free(samples);
    return -1;
  }
  uint64_t mask = bits == 64 ? ~0ull : 0xFFFFFFFFull;
  long first_bad = -1;
  mb_tokenizer *t = toks[s];
#pragma omp parallel reduction(+ : mismatches)
  {
    mb_ids ids = {0};
#pragma omp for schedule(dynamic, 64)
    for (long i = 0; i < (long)count; i++) {
      int rc = mb_tokenizer_encode(t, tx->text[i], tx->len[i], 1, 0, &ids);
      if (rc != MB_OK || (tok_fnv_ids(ids.ids, ids.n) & mask) != hash[i]) {
        mismatches++;
#pragma omp critical
        if (first_bad < 0 || i < first_bad)
          first_bad = i;
      }
    }
    mb_ids_free(&ids);
  }
  mb_ids ids = {0};
  if (first_bad >= 0) {
    long i = first_bad;
    fprintf(stderr, "MISMATCH %s / %s review %ld (0-based, file order)\n  text: \"%.*s\"\n", specs[s].name, set->name,
            i, (int)tx->len[i], tx->text[i]);
    if (mb_tokenizer_encode(t, tx->text[i], tx->len[i], 1, 0, &ids) == MB_OK)
      print_ids("ours", ids.ids, ids.n);
    else
      fprintf(stderr, "  ours: error %s\n", mb_error_message());
    fprintf(stderr, "  hf: %ld ids, hash %016llx (full ids only for sampled reviews)\n", nids[i],
            (unsigned long long)hash[i]);
  }
  /* Samples: full ids, untruncated and truncated to 128. */
  long sample_bad = 0;
  for (size_t k = 0; k < nsamples; k++) {
    char *q = samples[k] + 1;
    long idx = strtol(q, &q, 10);
    int maxlen = (int)strtol(q, &q, 10);
    int32_t want[20000];
    size_t nw = 0;
    while (*q && nw < 20000) {
      char *e;
      long v = strtol(q, &e, 10);
      if (e == q)
        break;
      want[nw++] = (int32_t)v;
      q = e;
    }
    assert_true(idx >= 0 && (size_t)idx < count);
    assert_int_equal(mb_tokenizer_encode(t, tx->text[idx], tx->len[idx], 1, maxlen, &ids), MB_OK);
    int ok = ids.n == nw && memcmp(ids.ids, want, nw * sizeof(int32_t)) == 0;
    if (!ok && sample_bad++ == 0) {
      fprintf(stderr, "SAMPLE MISMATCH %s / %s review %ld max_length %d\n  text: \"%.*s\"\n", specs[s].name,
              set->name, idx, maxlen, (int)tx->len[idx], tx->text[idx]);
      print_ids("ours", ids.ids, ids.n);
      print_ids("hf  ", want, nw);
    }
  }
  mb_ids_free(&ids);
  fprintf(stderr, "%-29s %-11s %7zu reviews compared (%d-bit hashes), %ld mismatches; %zu samples, %ld mismatches\n",
          specs[s].name, set->name, count, bits, mismatches, nsamples, sample_bad);
  total_compared += (long)count;
  total_mismatched += mismatches;
  free(fx);
  free(hash);
  free(nids);
  free(samples);
  return mismatches + sample_bad;
}

static void test_sets(void **state) {
  (void)state;
  long bad = 0;
  for (int w = 0; w < nwanted; w++) {
    const set_spec *set = NULL;
    for (size_t k = 0; k < sizeof(sets) / sizeof(sets[0]); k++)
      if (strcmp(sets[k].name, wanted[w]) == 0)
        set = &sets[k];
    assert_non_null(set);
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", tok_data_dir(), set->file);
    tok_texts tx;
    assert_int_equal(tok_read_reviews(path, set->nsmc, &tx), 0);
    for (int s = 0; s < NSPEC; s++) {
      long r = check_pair(s, set, &tx);
      assert_true(r >= 0);
      bad += r;
    }
    tok_texts_free(&tx);
  }
  fprintf(stderr, "total: %ld reviews x tokenizers compared, %ld mismatches\n", total_compared, total_mismatched);
  assert_int_equal(bad, 0);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc && nwanted < 8; i++)
    wanted[nwanted++] = argv[i];
  if (nwanted == 0) {
    wanted[nwanted++] = "imdb-test";
    wanted[nwanted++] = "nsmc-test";
  }
  char path[1024];
  for (int w = 0; w < nwanted; w++) {
    for (size_t k = 0; k < sizeof(sets) / sizeof(sets[0]); k++) {
      if (strcmp(sets[k].name, wanted[w]) != 0)
        continue;
      snprintf(path, sizeof(path), "%s/%s", tok_data_dir(), sets[k].file);
      if (!tok_file_exists(path)) {
        printf("skipped: %s not found (set MAMBERT_DATA_DIR)\n", path);
        return 77;
      }
    }
  }
  for (int s = 0; s < NSPEC; s++) {
    snprintf(path, sizeof(path), "%s/%s", tok_vocab_dir(), specs[s].file);
    if (!tok_file_exists(path)) {
      printf("skipped: %s not found (set MAMBERT_DATA_DIR)\n", path);
      return 77;
    }
    if (mb_tokenizer_load(path, NULL, &toks[s]) != MB_OK) {
      fprintf(stderr, "%s\n", mb_error_message());
      return 1;
    }
  }
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_sets)};
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  for (int s = 0; s < NSPEC; s++)
    mb_tokenizer_free(toks[s]);
  return rc;
}
