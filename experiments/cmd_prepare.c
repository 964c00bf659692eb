/* cmd_prepare.c: `mambert prepare`: import one split of IMDB or NSMC,
 * tokenize every review once (in parallel, order kept) and write the HDF5
 * shards that training and evaluation read. The work is data/prepare.c's;
 * this file parses flags, plugs the tokenizer in, and reports. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "data/prepare.h"
#include "data/records.h"
#include "data/tokenizer.h"
#include "experiments/cli.h"
#include "experiments/datasets.h"
#include "runtime/fileio.h"

extern const mb_command mb_cmd_prepare;

/* ---- progress ------------------------------------------------------------ */

typedef struct {
  int tty, quiet;
  int last_decile;
  double last_line;
  const char *what;
} progress_state;

static void fmt_count(int64_t v, char *buf, size_t cap) {
  char tmp[32];
  int n = snprintf(tmp, sizeof tmp, "%lld", (long long)v), k = 0;
  for (int i = 0; i < n && k + 2 < (int)cap; i++) {
    if (i > 0 && (n - i) % 3 == 0 && tmp[i - 1] != '-')
      buf[k++] = ',';
    buf[k++] = tmp[i];
  }
  buf[k] = 0;
}

static void show_progress(void *ctx, int64_t done, int64_t total, int64_t tokens, double seconds) {
  progress_state *p = ctx;
  if (p->quiet)
    return;
  (void)tokens;
  double frac = total > 0 ? (double)done / (double)total : 1.0;
  double rate = seconds > 0 ? (double)done / seconds : 0;
  char d[32], t[32];
  fmt_count(done, d, sizeof d);
  fmt_count(total, t, sizeof t);
  if (p->tty) {
    char bar[31];
    int fill = (int)(frac * 30 + 0.5);
    for (int i = 0; i < 30; i++)
      bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    double eta = rate > 0 ? (double)(total - done) / rate : 0;
    fprintf(stderr, "\r%s [%s] %s/%s %3.0f%%  %.0f reviews/s  eta %.0fs ", p->what, bar, d, t, 100 * frac, rate,
            eta);
    if (done == total)
      fprintf(stderr, "\n");
    fflush(stderr);
    return;
  }
  /* not a terminal (a log file, a batch job): a line per 10% or per 10 s */
  int decile = (int)(frac * 10);
  if (decile > p->last_decile || seconds - p->last_line >= 10 || done == total) {
    if (done == total && p->last_decile == 10)
      return;
    p->last_decile = decile;
    p->last_line = seconds;
    fprintf(stderr, "%s: %s/%s reviews (%.0f%%), %.1f s, %.0f reviews/s\n", p->what, d, t, 100 * frac, seconds,
            rate);
  }
}

/* ---- flags --------------------------------------------------------------- */

static int parse_int(const char *flag, const char *v, long lo, long hi, int32_t *out) {
  char *end;
  long x = strtol(v, &end, 10);
  if (!*v || *end || x < lo || x > hi)
    return mb_cli_usage_error(&mb_cmd_prepare, "%s '%s': expected an integer %ld..%ld", flag, v, lo, hi);
  *out = (int32_t)x;
  return 0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int run_prepare(int argc, char **argv) {
  int one = mb_cli_one_process(&mb_cmd_prepare, "every rank would write the same shards; use --threads");
  if (one)
    return one;
  const char *dataset = NULL, *input = NULL, *tokfile = NULL, *out = NULL, *split = NULL;
  int32_t max_length = 0, shards = 1, threads = 0, special = -1;
  int store_text = 0, quiet = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char **str_dst = NULL;
    if (strcmp(a, "--dataset") == 0)
      str_dst = &dataset;
    else if (strcmp(a, "--input") == 0)
      str_dst = &input;
    else if (strcmp(a, "--tokenizer") == 0)
      str_dst = &tokfile;
    else if (strcmp(a, "--out") == 0)
      str_dst = &out;
    else if (strcmp(a, "--split") == 0)
      str_dst = &split;
    if (str_dst) {
      if (i + 1 >= argc)
        return mb_cli_usage_error(&mb_cmd_prepare, "%s needs a value", a);
      *str_dst = argv[++i];
      continue;
    }
    if (strcmp(a, "--max-length") == 0 || strcmp(a, "--shards") == 0 || strcmp(a, "--threads") == 0) {
      if (i + 1 >= argc)
        return mb_cli_usage_error(&mb_cmd_prepare, "%s needs a value", a);
      const char *v = argv[++i];
      int rc = a[2] == 'm'   ? parse_int(a, v, 0, 1 << 24, &max_length)
               : a[2] == 's' ? parse_int(a, v, 1, 100000, &shards)
                             : parse_int(a, v, 1, 4096, &threads);
      if (rc)
        return rc;
    } else if (strcmp(a, "--special") == 0) {
      special = 1;
    } else if (strcmp(a, "--no-special") == 0) {
      special = 0;
    } else if (strcmp(a, "--store-text") == 0) {
      store_text = 1;
    } else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
      quiet = 1;
    } else {
      return mb_cli_usage_error(&mb_cmd_prepare, "unknown option '%s'", a);
    }
  }
  if (!dataset || !input || !tokfile || !out)
    return mb_cli_usage_error(&mb_cmd_prepare, "--dataset, --input, --tokenizer and --out are required");
  if (strcmp(dataset, "imdb") != 0 && strcmp(dataset, "nsmc") != 0)
    return mb_cli_usage_error(&mb_cmd_prepare, "--dataset '%s': expected imdb or nsmc", dataset);
  if (split && strcmp(split, "train") != 0 && strcmp(split, "test") != 0)
    return mb_cli_usage_error(&mb_cmd_prepare, "--split '%s': expected train or test", split);

  if (mb_dir_writable(out, "--out") != MB_OK) /* before the tokenizing, not after it */
    return mb_cli_fail("prepare", NULL);
  const double t0 = now_s();
  mb_records recs;
  if (mb_import(dataset, input, split, &recs) != MB_OK)
    return mb_cli_fail("prepare", "import");
  const double t_import = now_s() - t0;

  mb_tokenizer *tok = NULL;
  mb_tokenizer_options topt = mb_tokenizer_default_options();
  if (mb_tokenizer_load(tokfile, &topt, &tok) != MB_OK) {
    mb_records_free(&recs);
    return mb_cli_fail("prepare", "tokenizer");
  }
  const double t_load = now_s() - t0 - t_import;
  if (special < 0) /* BERT wants [CLS] ... [SEP]; the Mamba classifier no special tokens */
    special = mb_tokenizer_kind_of(tok) == MB_TOKENIZER_WORDPIECE;
  else if (special && mb_tokenizer_kind_of(tok) != MB_TOKENIZER_WORDPIECE) {
    mb_tokenizer_free(tok);
    mb_records_free(&recs);
    return mb_cli_usage_error(&mb_cmd_prepare, "--special: %s is a byte-level BPE tokenizer, which adds no "
                                               "[CLS]/[SEP] (the Mamba classifier uses none); leave --special out",
                              tokfile);
  }
  mb_tok_encoder *tenc = NULL;
  if (mb_tok_encoder_new(tok, threads, &tenc) != MB_OK) {
    mb_tokenizer_free(tok);
    mb_records_free(&recs);
    return mb_cli_fail("prepare", NULL);
  }
  const mb_encoder *encp = mb_tok_encoder_get(tenc);
  mb_encoder enc = *encp;
  char what[64];
  snprintf(what, sizeof what, "prepare %s/%s", recs.dataset, recs.split);
  progress_state ps = {isatty(2), quiet, -1, 0, what};
  mb_prepare_options opt;
  memset(&opt, 0, sizeof opt);
  opt.out_dir = out;
  opt.max_length = max_length;
  opt.add_special = special;
  opt.shards = shards;
  opt.store_text = store_text;
  opt.threads = enc.max_threads;
  opt.progress = show_progress;
  opt.progress_ctx = &ps;
  mb_prepare_stats st;
  int rc = mb_prepare_records(&recs, &enc, &opt, &st);
  const double total = now_s() - t0;
  mb_tok_encoder_free(tenc);
  if (rc != MB_OK) {
    mb_tokenizer_free(tok);
    mb_records_free(&recs);
    return mb_cli_fail("prepare", NULL);
  }

  char a[32], b[32], c[32], d[32];
  fmt_count(st.examples, a, sizeof a);
  fmt_count(st.label_count[0], b, sizeof b);
  fmt_count(st.label_count[1], c, sizeof c);
  printf("prepared %s/%s: %s reviews (%s negative, %s positive) from %s\n", recs.dataset, recs.split, a, b, c,
         recs.source);
  for (int k = 0; k < st.n_files && k < 8; k++)
    printf("  wrote       %s\n", st.files[k]);
  if (st.n_files > 8)
    printf("  wrote       ... %d files in all\n", st.n_files);
  printf("  tokenizer   %s, vocabulary %d ids, sha256 %.16s..., special tokens %s\n", enc.name, enc.vocab_size,
         enc.vocab_sha256, special ? "[CLS] ... [SEP]" : "none");
  fmt_count(st.tokens, a, sizeof a);
  fmt_count(st.full_tokens, b, sizeof b);
  fmt_count(st.truncated, c, sizeof c);
  if (max_length > 0)
    printf("  tokens      %s kept of %s; %s reviews truncated to %d (%.1f%%)\n", a, b, c, max_length,
           st.examples ? 100.0 * (double)st.truncated / (double)st.examples : 0.0);
  else
    printf("  tokens      %s (no truncation: the loader truncates at batch time)\n", a);
  if (enc.has_unk) {
    fmt_count(st.unk_tokens, a, sizeof a);
    fmt_count(st.unk_examples, b, sizeof b);
    printf("  unknown     %s tokens are [UNK] (%.2f%%), in %s reviews (%.1f%%)\n", a,
           st.tokens ? 100.0 * (double)st.unk_tokens / (double)st.tokens : 0.0, b,
           st.examples ? 100.0 * (double)st.unk_examples / (double)st.examples : 0.0);
  }
  printf("  lengths     median %d, p90 %d, p99 %d, max %d; longer than 128/256/512/1024: %lld/%lld/%lld/%lld\n",
         st.len_p50, st.len_p90, st.len_p99, st.len_max, (long long)st.longer_than[0], (long long)st.longer_than[1],
         (long long)st.longer_than[2], (long long)st.longer_than[3]);
  fmt_count((int64_t)(st.seconds_tokenize > 0 ? (double)st.full_tokens / st.seconds_tokenize : 0), d, sizeof d);
  printf("  time        %.2f s: import %.2f s, tokenizer load %.2f s, tokenize %.2f s on %d threads (%s tokens/s), "
         "write %.2f s\n",
         total, t_import, t_load, st.seconds_tokenize, st.threads, d, st.seconds_write);
  mb_warn_unknown_tokens(&st, enc.name, recs.split);
  mb_tokenizer_free(tok);
  mb_records_free(&recs);
  return MB_EXIT_OK;
}

const mb_command mb_cmd_prepare = {
    "prepare",
    "import IMDB or NSMC, tokenize once, write HDF5 shards",
    "Usage: mambert prepare --dataset imdb|nsmc --input PATH --tokenizer FILE --out DIR [options]\n"
    "\n"
    "Reads one split of a data set, tokenizes every review once (in parallel, in order)\n"
    "and writes the HDF5 shards that train and eval read: DIR/SPLIT.h5, or\n"
    "DIR/SPLIT-00000-of-0000N.h5 with --shards N. Shards record the tokenizer and its\n"
    "vocabulary sha256; a model refuses shards made with another tokenizer.\n"
    "\n"
    "Required:\n"
    "  --dataset imdb|nsmc   which data set\n"
    "  --input PATH          IMDB: train.tsv[.gz] / test.tsv[.gz] (id rating label text), or an\n"
    "                        aclImdb directory (with --split); NSMC: ratings_train.txt[.gz] /\n"
    "                        ratings_test.txt[.gz]. The small samples in data/samples/ work too.\n"
    "  --tokenizer FILE      a vocab.txt (BERT WordPiece) or a tokenizer.json (byte-level BPE)\n"
    "  --out DIR             output directory (created if missing)\n"
    "\n"
    "Options:\n"
    "  --split train|test    the split (default: from the file name; required for aclImdb)\n"
    "  --max-length N        keep at most N tokens per review, special tokens included,\n"
    "                        truncating as Hugging Face does (default 0: keep all; the loader\n"
    "                        truncates at batch time, so one shard serves every max_length)\n"
    "  --special             add [CLS] ... [SEP] (default for WordPiece)\n"
    "  --no-special          add no special tokens (default for BPE: the Mamba classifier)\n"
    "  --shards N            write N files of consecutive reviews (default 1)\n"
    "  --threads N           tokenizer threads (default: OpenMP's, see OMP_NUM_THREADS)\n"
    "  --store-text          also store each review's text in the shards\n"
    "  -q, --quiet           no progress display\n"
    "\n"
    "Progress goes to stderr (a bar on a terminal, a line per 10% otherwise); the\n"
    "summary (counts, truncation, length percentiles, time, tokens/s) to stdout.\n"
    "\n"
    "Example:\n"
    "  mambert prepare --dataset imdb --input ../shared/data/imdb/test.tsv.gz \\\n"
    "      --tokenizer ../shared/data/vocab/bert-base-uncased-vocab.txt --out shards/imdb-bert\n",
    run_prepare,
};
