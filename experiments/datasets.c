/* datasets.c: shard sets from config specs, preparing raw inputs once into a
 * cache, and the tokenizer check (datasets.h). */
#include "experiments/datasets.h"

#include <glob.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/records.h"
#include "runtime/fileio.h"
#include "runtime/hash.h"
#include "runtime/log.h"

struct mb_tok_encoder {
  const mb_tokenizer *tok;
  mb_ids *bufs; /* one per thread */
  int n;
  mb_encoder enc;
};

static int tok_encode(void *ctx, int thread, const char *text, size_t len, int add_special, const int32_t **ids,
                      size_t *n) {
  mb_tok_encoder *a = ctx;
  if (thread < 0 || thread >= a->n)
    return MB_ERR(MB_EINTERNAL, "encoder thread %d of %d", thread, a->n);
  mb_ids *v = &a->bufs[thread];
  MB_TRY(mb_tokenizer_encode(a->tok, text, len, add_special, 0, v));
  *ids = v->ids;
  *n = v->n;
  return MB_OK;
}

int mb_tok_encoder_new(const mb_tokenizer *tok, int threads, mb_tok_encoder **out) {
  mb_tok_encoder *e = calloc(1, sizeof *e);
  if (!e)
    return MB_ERR(MB_ENOMEM, "out of memory");
  e->tok = tok;
  e->n = threads > 0 ? threads : omp_get_max_threads();
  e->bufs = calloc((size_t)e->n, sizeof *e->bufs);
  if (!e->bufs) {
    free(e);
    return MB_ERR(MB_ENOMEM, "out of memory");
  }
  mb_special_ids sp = mb_tokenizer_special_ids(tok);
  e->enc.encode = tok_encode;
  e->enc.ctx = e;
  e->enc.max_threads = e->n;
  e->enc.name = mb_tokenizer_name(tok);
  e->enc.vocab_sha256 = mb_tokenizer_vocab_sha256(tok);
  e->enc.vocab_size = mb_tokenizer_vocab_size(tok);
  e->enc.pad_id = sp.pad >= 0 ? sp.pad : 0;
  /* WordPiece maps a word it cannot spell to [UNK]; byte-level BPE never does */
  e->enc.has_unk = mb_tokenizer_kind_of(tok) == MB_TOKENIZER_WORDPIECE && sp.unk >= 0;
  e->enc.unk_id = sp.unk;
  *out = e;
  return MB_OK;
}

const mb_encoder *mb_tok_encoder_get(const mb_tok_encoder *e) { return &e->enc; }

void mb_tok_encoder_free(mb_tok_encoder *e) {
  if (!e)
    return;
  for (int i = 0; i < e->n; i++)
    mb_ids_free(&e->bufs[i]);
  free(e->bufs);
  free(e);
}

void mb_warn_unknown_tokens(const mb_prepare_stats *st, const char *tokenizer, const char *split) {
  if (!st->tokens || !st->unk_tokens)
    return;
  const double pt = 100.0 * (double)st->unk_tokens / (double)st->tokens;
  const double pe = st->examples ? 100.0 * (double)st->unk_examples / (double)st->examples : 0.0;
  /* a few rare words are normal; this much means the vocabulary does not fit the language or domain */
  if (pt >= 0.5 || pe >= 10.0)
    MB_WARN("%s data: %.2f%% of the tokens are [UNK], in %.1f%% of the reviews: the %s vocabulary covers this text "
            "badly (WordPiece maps a whole word to [UNK] when one piece is missing); a vocabulary learned from the "
            "training split usually fits better: python tools/train_wordpiece_vocab.py TRAIN --out VOCAB-cased.txt",
            split, pt, pe, tokenizer);
}

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int dir_has_h5(const char *dir) {
  char pat[1500]; /* dir: up to 1400 bytes */
  if (snprintf(pat, sizeof pat, "%s/*.h5", dir) >= (int)sizeof pat)
    return 0;
  glob_t g;
  int found = glob(pat, 0, NULL, &g) == 0 && g.gl_pathc > 0;
  globfree(&g);
  return found;
}

int mb_data_spec_is_shards(const char *spec) {
  if (ends_with(spec, ".h5") || strpbrk(spec, "*?["))
    return 1;
  if (mb_is_dir(spec))
    return dir_has_h5(spec);
  return 0;
}

/* data.dataset: auto: what the file's header says; else the old rule of
 * thumb on its name (the importer then names what is wrong) */
static const char *guess_dataset(const char *spec) {
  const char *by_content = mb_dataset_from_content(spec);
  if (by_content)
    return by_content;
  const char *base = strrchr(spec, '/');
  base = base ? base + 1 : spec;
  return strstr(base, "ratings") ? "nsmc" : "imdb";
}

int mb_data_open(const char *spec, const char *split, const char *dataset, const mb_tokenizer *tok, int add_special,
                 const char *cache_dir, int may_prepare, mb_shardset **out) {
  if (!spec || !*spec)
    return MB_ERR(MB_EINVAL, "no %s data given", split);
  mb_shardset *s = NULL;
  if (mb_data_spec_is_shards(spec)) {
    int rc = mb_shardset_open_spec(spec, split, &s);
    if (rc != MB_OK)
      return mb_error_context(rc, "opening the %s shards", split);
  } else {
    struct stat st;
    if (stat(spec, &st) != 0)
      return MB_ERR(MB_ENOTFOUND, "%s data %s: no such file or directory", split, spec);
    if (!dataset || !*dataset || strcmp(dataset, "auto") == 0)
      dataset = guess_dataset(spec);
    /* the cache key: the input and the vocabulary. A file by its content
     * (a copy that kept size and time, cp -p or rsync -t of a fixed file,
     * is still another input); an aclImdb tree by its size and time. */
    char ident[1200];
    if (S_ISREG(st.st_mode)) { /* the content alone: the same file by any path is one entry */
      char sha[65];
      int rc = mb_sha256_file_hex(spec, sha);
      if (rc != MB_OK)
        return mb_error_context(rc, "%s data %s", split, spec);
      snprintf(ident, sizeof ident, "sha256:%s", sha);
    } else {
      char *abs = realpath(spec, NULL); /* malloc'd: no PATH_MAX buffer to get wrong */
      snprintf(ident, sizeof ident, "%s|%lld|%lld.%09ld", abs ? abs : spec, (long long)st.st_size,
               (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec);
      free(abs);
    }
    char key[2048], hex[65];
    snprintf(key, sizeof key, "%s|%s|%s|%d|%s", ident, mb_tokenizer_name(tok), mb_tokenizer_vocab_sha256(tok),
             add_special, split);
    uint8_t d[32];
    mb_sha256_bytes(key, strlen(key), d);
    mb_sha256_hex(d, hex);
    char dir[1400];
    snprintf(dir, sizeof dir, "%s/%s-%s-%s-%.12s", cache_dir, dataset, split, mb_tokenizer_name(tok), hex);
    if (!dir_has_h5(dir)) {
      if (!may_prepare)
        return MB_ERR(MB_ENOTFOUND, "%s: not prepared yet", dir);
      MB_INFO("preparing %s (%s, %s) into %s", spec, dataset, split, dir);
      mb_records recs;
      /* a file says its split by its name; one whose name does not is the
       * split of the key that named it (data.train or data.test) */
      const int named = !mb_is_dir(spec) && mb_split_from_name(spec) != NULL;
      int rc = mb_import(dataset, spec, named ? NULL : split, &recs);
      if (rc != MB_OK)
        return mb_error_context(rc, "importing %s data %s", split, spec);
      if (strcmp(recs.split, split) != 0)
        MB_WARN("%s data %s holds the %s split", split, spec, recs.split);
      mb_tok_encoder *enc;
      rc = mb_tok_encoder_new(tok, 0, &enc);
      if (rc == MB_OK) {
        mb_prepare_options opt;
        memset(&opt, 0, sizeof opt);
        opt.out_dir = dir;
        opt.add_special = add_special;
        opt.shards = 1;
        opt.threads = mb_tok_encoder_get(enc)->max_threads;
        mb_prepare_stats pst;
        /* prepare names its file after the records' split; that is the one we open */
        snprintf(recs.split, sizeof recs.split, "%s", split);
        rc = mb_prepare_records(&recs, mb_tok_encoder_get(enc), &opt, &pst);
        if (rc == MB_OK) {
          MB_INFO("prepared %lld %s examples (%lld tokens) in %.1f s", (long long)pst.examples, split,
                  (long long)pst.tokens, pst.seconds);
        }
        mb_tok_encoder_free(enc);
      }
      mb_records_free(&recs);
      if (rc != MB_OK)
        return mb_error_context(rc, "preparing %s", spec);
    }
    int rc = mb_shardset_open_spec(dir, split, &s);
    if (rc != MB_OK)
      return mb_error_context(rc, "opening the prepared %s data", split);
  }
  int rc = mb_shardset_check_tokenizer(s, mb_tokenizer_name(tok), mb_tokenizer_vocab_sha256(tok));
  if (rc == MB_OK && s->meta.add_special != add_special)
    MB_WARN("%s data %s was prepared %s special tokens, but this model expects %s", split, spec,
            s->meta.add_special ? "with" : "without", add_special ? "[CLS] ... [SEP]" : "none");
  if (rc != MB_OK) {
    mb_shardset_free(s);
    return rc;
  }
  /* how much of it the vocabulary misses, counted on what was opened: every
   * run that reads it hears it, the first (which prepared it) and the cached
   * ones alike; once per process (the rank that may prepare) */
  const mb_special_ids sp = mb_tokenizer_special_ids(tok);
  if (may_prepare && mb_tokenizer_kind_of(tok) == MB_TOKENIZER_WORDPIECE && sp.unk >= 0) {
    mb_prepare_stats st;
    memset(&st, 0, sizeof st);
    st.examples = s->n;
    st.tokens = s->n_tokens;
    for (int64_t i = 0; i < s->n; i++) {
      int64_t u = 0;
      for (int64_t t = s->offsets[i]; t < s->offsets[i + 1]; t++)
        u += s->tokens[t] == sp.unk;
      st.unk_tokens += u;
      st.unk_examples += u > 0;
    }
    mb_warn_unknown_tokens(&st, mb_tokenizer_name(tok), split);
  }
  *out = s;
  return MB_OK;
}
