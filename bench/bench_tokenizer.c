/* bench_tokenizer.c: single-thread tokenizer throughput (MB/s of UTF-8 text,
 * tokens/s) of our WordPiece and byte-level BPE against Hugging Face
 * `tokenizers` on the same texts: the IMDB and NSMC test sets, each review
 * encoded one by one with special tokens and no truncation.
 *
 * The HF numbers come from tools/bench_hf_tokenizer.py (run it first, on the
 * same machine, single thread: it sets RAYON_NUM_THREADS=1), passed with --hf;
 * this program merges them into its table and JSON.
 *   build/bench_tokenizer [--data DIR] [--hf hf.json] [--json out.json] [--reps N]
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/tokenizer.h"
#include "tests/tokenizer/tok_test_util.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const struct {
  const char *name, *file;
} toks[] = {
    {"bert-base-uncased", "bert-base-uncased-vocab.txt"},
    {"bert-base-multilingual-cased", "bert-base-multilingual-cased-vocab.txt"},
    {"gpt-neox-20b", "gpt-neox-20b-tokenizer.json"},
};
static const struct {
  const char *name, *file;
  int nsmc;
} sets[] = {{"imdb-test", "imdb/test.tsv.gz", 0}, {"nsmc-test", "nsmc/ratings_test.txt.gz", 1}};

/* HF seconds for (tokenizer, set) from the python JSON, or -1. */
static double hf_lookup(json_t *hf, const char *tok, const char *set, const char *key) {
  size_t i;
  json_t *r;
  json_array_foreach(json_object_get(hf, "results"), i, r) {
    if (strcmp(json_string_value(json_object_get(r, "tokenizer")), tok) == 0 &&
        strcmp(json_string_value(json_object_get(r, "set")), set) == 0)
      return json_number_value(json_object_get(r, key));
  }
  return -1;
}

int main(int argc, char **argv) {
  const char *data = tok_data_dir(), *hf_path = NULL, *json_path = "bench_tokenizer.json";
  int reps = 3;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--data") && i + 1 < argc)
      data = argv[++i];
    else if (!strcmp(argv[i], "--hf") && i + 1 < argc)
      hf_path = argv[++i];
    else if (!strcmp(argv[i], "--json") && i + 1 < argc)
      json_path = argv[++i];
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
      reps = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: %s [--data DIR] [--hf hf.json] [--json out.json] [--reps N]\n", argv[0]);
      return 2;
    }
  }
  json_t *hf = NULL;
  if (hf_path) {
    json_error_t err;
    hf = json_load_file(hf_path, 0, &err);
    if (!hf) {
      fprintf(stderr, "%s: %s\n", hf_path, err.text);
      return 1;
    }
  }
  json_t *out = json_object(), *rows = json_array();
  json_object_set_new(out, "benchmark", json_string("tokenizer single-thread encode, one review at a time"));
  json_object_set_new(out, "reps_best_of", json_integer(reps));
  if (hf)
    json_object_set(out, "hf", hf);
  printf("%-29s %-10s %7s %9s %9s | %9s %9s %9s | %7s %7s\n", "tokenizer", "set", "MB", "ours MB/s", "ours Mt/s",
         "HF 1x1", "HF batch", "HF Mt/s", "x 1x1", "x batch");
  char path[1024];
  for (size_t si = 0; si < sizeof(sets) / sizeof(sets[0]); si++) {
    snprintf(path, sizeof(path), "%s/%s", data, sets[si].file);
    tok_texts tx;
    if (tok_read_reviews(path, sets[si].nsmc, &tx) != 0) {
      fprintf(stderr, "%s: cannot read the data set\n", path);
      return 1;
    }
    size_t bytes = 0;
    for (size_t i = 0; i < tx.n; i++)
      bytes += tx.len[i];
    for (size_t ti = 0; ti < sizeof(toks) / sizeof(toks[0]); ti++) {
      snprintf(path, sizeof(path), "%s/vocab/%s", data, toks[ti].file);
      mb_tokenizer *t;
      if (mb_tokenizer_load(path, NULL, &t) != MB_OK) {
        fprintf(stderr, "%s\n", mb_error_message());
        return 1;
      }
      mb_ids ids = {0};
      double best = 1e30;
      size_t ntok = 0;
      for (int r = 0; r < reps; r++) {
        size_t n = 0;
        double t0 = now_s();
        for (size_t i = 0; i < tx.n; i++) {
          if (mb_tokenizer_encode(t, tx.text[i], tx.len[i], 1, 0, &ids) != MB_OK) {
            fprintf(stderr, "%s\n", mb_error_message());
            return 1;
          }
          n += ids.n;
        }
        double dt = now_s() - t0;
        if (dt < best)
          best = dt;
        ntok = n;
      }
      mb_ids_free(&ids);
      mb_tokenizer_free(t);
      double mb = (double)bytes / 1e6;
      double hf1 = hf ? hf_lookup(hf, toks[ti].name, sets[si].name, "one_by_one_s") : -1;
      double hfb = hf ? hf_lookup(hf, toks[ti].name, sets[si].name, "batch_s") : -1;
      printf("%-29s %-10s %7.1f %9.1f %9.2f | %9.1f %9.1f %9.2f | %7.2f %7.2f\n", toks[ti].name, sets[si].name, mb,
             mb / best, (double)ntok / best / 1e6, hf1 > 0 ? mb / hf1 : 0, hfb > 0 ? mb / hfb : 0,
             hf1 > 0 ? (double)ntok / hf1 / 1e6 : 0, hf1 > 0 ? hf1 / best : 0, hfb > 0 ? hfb / best : 0);
      json_t *row = json_object();
      json_object_set_new(row, "tokenizer", json_string(toks[ti].name));
      json_object_set_new(row, "set", json_string(sets[si].name));
      json_object_set_new(row, "reviews", json_integer((json_int_t)tx.n));
      json_object_set_new(row, "bytes", json_integer((json_int_t)bytes));
      json_object_set_new(row, "tokens", json_integer((json_int_t)ntok));
      json_object_set_new(row, "ours_s", json_real(best));
      json_object_set_new(row, "ours_mb_per_s", json_real(mb / best));
      json_object_set_new(row, "ours_tokens_per_s", json_real((double)ntok / best));
      if (hf1 > 0) {
        json_object_set_new(row, "hf_one_by_one_mb_per_s", json_real(mb / hf1));
        json_object_set_new(row, "hf_one_by_one_tokens_per_s", json_real((double)ntok / hf1));
        json_object_set_new(row, "speedup_vs_hf_one_by_one", json_real(hf1 / best));
      }
      if (hfb > 0) {
        json_object_set_new(row, "hf_batch_mb_per_s", json_real(mb / hfb));
        json_object_set_new(row, "speedup_vs_hf_batch", json_real(hfb / best));
      }
      json_array_append_new(rows, row);
    }
    tok_texts_free(&tx);
  }
  if (!hf)
    printf("(no --hf file: run tools/bench_hf_tokenizer.py for the Hugging Face columns)\n");
  json_object_set_new(out, "results", rows);
  if (json_dump_file(out, json_path, JSON_INDENT(2)) != 0) {
    fprintf(stderr, "%s: cannot write\n", json_path);
    return 1;
  }
  printf("wrote %s\n", json_path);
  json_decref(out);
  json_decref(hf);
  return 0;
}
