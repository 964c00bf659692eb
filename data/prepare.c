/* prepare.c: the tokenise-and-write engine of `mambert prepare` (prepare.h).
 * Blocks of examples are encoded in parallel (OpenMP, each example into its
 * own buffer), then appended to the shard writers in order. */
#include "data/prepare.h"

#include <glob.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "data/shard.h"
#include "runtime/fileio.h"
#include "runtime/log.h"

#define BLOCK 4096 /* examples encoded between two rounds of writing */

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

size_t mb_truncate_ids(int32_t *ids, size_t n, int32_t max_length, int add_special) {
  if (max_length <= 0 || n <= (size_t)max_length)
    return n;
  if (add_special && max_length >= 2)
    ids[max_length - 1] = ids[n - 1];
  return (size_t)max_length;
}

void mb_shard_file_name(const char *split, int k, int count, char *buf, size_t cap) {
  if (count == 1)
    snprintf(buf, cap, "%s.h5", split);
  else
    snprintf(buf, cap, "%s-%05d-of-%05d.h5", split, k, count);
}

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

static void length_stats(const int32_t *full, int64_t n, mb_prepare_stats *st) {
  if (n == 0)
    return;
  int32_t *v = malloc((size_t)n * sizeof *v);
  if (!v)
    return; /* stats only */
  memcpy(v, full, (size_t)n * sizeof *v);
  qsort(v, (size_t)n, sizeof *v, cmp_i32);
  st->len_max = v[n - 1];
  st->len_p50 = v[(n - 1) * 50 / 100];
  st->len_p90 = v[(n - 1) * 90 / 100];
  st->len_p99 = v[(n - 1) * 99 / 100];
  static const int32_t lim[4] = {128, 256, 512, 1024};
  for (int64_t i = 0; i < n; i++)
    for (int k = 0; k < 4; k++)
      st->longer_than[k] += v[i] > lim[k];
  free(v);
}

/* Remove shards of this split from an earlier run that are not ours now. */
static void remove_stale(const char *dir, const char *split, char **written, int n_written) {
  static const char *const pats[2] = {"%s/%s.h5", "%s/%s-*-of-*.h5"};
  for (int k = 0; k < 2; k++) {
    char pat[1024];
    snprintf(pat, sizeof pat, pats[k], dir, split);
    glob_t g;
    if (glob(pat, 0, NULL, &g) != 0)
      continue;
    for (size_t i = 0; i < g.gl_pathc; i++) {
      int ours = 0;
      for (int j = 0; j < n_written; j++)
        ours |= strcmp(g.gl_pathv[i], written[j]) == 0;
      if (!ours && unlink(g.gl_pathv[i]) == 0)
        MB_INFO("removed %s (left by an earlier prepare with another shard count)", g.gl_pathv[i]);
    }
    globfree(&g);
  }
}

/* Shards of the other splits in dir made with another vocabulary: training
 * would refuse to pair them with this split's, so say it now. */
static void warn_other_vocabulary(const char *dir, const char *split, const mb_shard_meta *ours) {
  char pat[1024];
  snprintf(pat, sizeof pat, "%s/*.h5", dir);
  glob_t g;
  if (glob(pat, 0, NULL, &g) != 0)
    return;
  const size_t sl = strlen(split);
  for (size_t i = 0; i < g.gl_pathc; i++) {
    const char *base = strrchr(g.gl_pathv[i], '/');
    base = base ? base + 1 : g.gl_pathv[i];
    if (strncmp(base, split, sl) == 0 && (base[sl] == '.' || base[sl] == '-'))
      continue; /* this split's own */
    mb_shard_meta m;
    if (mb_shard_read_meta(g.gl_pathv[i], &m) != MB_OK) {
      mb_error_clear();
      continue;
    }
    if (strcmp(m.vocab_sha256, ours->vocab_sha256) != 0)
      MB_WARN("%s was made with tokenizer '%s' (vocabulary sha256 %.16s...), these %s shards with '%s' (%.16s...): "
              "train and eval refuse to pair them; prepare it again with this tokenizer or use another --out",
              g.gl_pathv[i], m.tokenizer, m.vocab_sha256, split, ours->tokenizer, ours->vocab_sha256);
  }
  globfree(&g);
}

int mb_prepare_records(const mb_records *recs, const mb_encoder *enc, const mb_prepare_options *opt,
                       mb_prepare_stats *st) {
  memset(st, 0, sizeof *st);
  const int64_t n = (int64_t)recs->n;
  if (!opt->out_dir)
    return MB_ERR(MB_EINVAL, "prepare: no output directory");
  if (opt->max_length < 0)
    return MB_ERR(MB_EINVAL, "prepare: max_length %d is negative", opt->max_length);
  if (opt->shards < 1 || (int64_t)opt->shards > (n > 0 ? n : 1))
    return MB_ERR(MB_EINVAL, "prepare: %d shards for %lld examples; expected 1..%lld", opt->shards, (long long)n,
                  (long long)(n > 0 ? n : 1));
  if (enc->max_threads < 1)
    return MB_ERR(MB_EINVAL, "prepare: the encoder allows no threads");
  MB_TRY(mb_mkdir_p(opt->out_dir));
  mb_shard_remove_dead_temps(opt->out_dir); /* a killed prepare's half-written shards */
  int threads = opt->threads > 0 ? opt->threads : omp_get_max_threads();
  if (threads > enc->max_threads)
    threads = enc->max_threads;
  st->threads = threads;

  const int nsh = opt->shards;
  const int64_t per = (n + nsh - 1) / nsh;
  int32_t *full = malloc((size_t)(n > 0 ? n : 1) * sizeof *full);
  int32_t **bids = calloc(BLOCK, sizeof *bids);
  int32_t *blen = malloc(BLOCK * sizeof *blen);
  char **written = calloc((size_t)nsh, sizeof *written);
  if (!full || !bids || !blen || !written) {
    free(full);
    free(bids);
    free(blen);
    free(written);
    return MB_ERR(MB_ENOMEM, "prepare: out of memory");
  }
  mb_shard_meta meta;
  memset(&meta, 0, sizeof meta);
  snprintf(meta.dataset, sizeof meta.dataset, "%s", recs->dataset);
  snprintf(meta.split, sizeof meta.split, "%s", recs->split);
  snprintf(meta.tokenizer, sizeof meta.tokenizer, "%s", enc->name);
  snprintf(meta.vocab_sha256, sizeof meta.vocab_sha256, "%s", enc->vocab_sha256);
  meta.vocab_size = enc->vocab_size;
  meta.add_special = opt->add_special ? 1 : 0;
  meta.max_length = opt->max_length;
  meta.pad_id = enc->pad_id;
  snprintf(meta.source, sizeof meta.source, "%s", recs->source ? recs->source : "");
  meta.shard_count = nsh;
  meta.has_text = opt->store_text ? 1 : 0;

  const double t0 = now_s();
  double last_report = t0;
  int64_t done = 0, tokens = 0;
  int rc = MB_OK, n_written = 0, cur_shard = -1;
  mb_shard_writer *w = NULL;
  char path[1024], name[64];

  for (int64_t b0 = 0; b0 < n && rc == MB_OK; b0 += BLOCK) {
    const int64_t b1 = b0 + BLOCK < n ? b0 + BLOCK : n;
    const double tb = now_s();
    int err_rc = MB_OK;
    int64_t err_i = INT64_MAX;
    char err_msg[768] = "";
#pragma omp parallel for schedule(dynamic, 16) num_threads(threads)
    for (int64_t i = b0; i < b1; i++) {
      int failed;
#pragma omp atomic read
      failed = err_rc;
      if (failed)
        continue;
      const int32_t *ids = NULL;
      size_t cnt = 0;
      int erc = enc->encode(enc->ctx, omp_get_thread_num(), mb_record_text(recs, (size_t)i),
                            recs->rec[i].text_len, opt->add_special, &ids, &cnt);
      int32_t *copy = NULL;
      if (erc == MB_OK && cnt > (size_t)INT32_MAX)
        erc = MB_ERR(MB_EINVAL, "%zu tokens do not fit a shard's 32-bit lengths", cnt);
      if (erc == MB_OK) {
        copy = malloc((cnt ? cnt : 1) * sizeof *copy);
        if (!copy)
          erc = MB_ERR(MB_ENOMEM, "out of memory");
      }
      if (erc != MB_OK) {
#pragma omp critical(mb_prepare_err)
        {
          if (i < err_i) {
            err_i = i;
            snprintf(err_msg, sizeof err_msg, "%s", mb_error_message());
            err_rc = erc;
          }
        }
        continue;
      }
      memcpy(copy, ids, cnt * sizeof *copy);
      full[i] = (int32_t)cnt;
      blen[i - b0] = (int32_t)mb_truncate_ids(copy, cnt, opt->max_length, opt->add_special);
      bids[i - b0] = copy;
#pragma omp atomic update
      done++;
      if (omp_get_thread_num() == 0 && opt->progress) {
        double t = now_s();
        if (t - last_report >= 0.1) {
          int64_t d;
#pragma omp atomic read
          d = done;
          last_report = t;
          opt->progress(opt->progress_ctx, d, n, tokens, t - t0);
        }
      }
    }
    const double tw = now_s();
    st->seconds_tokenize += tw - tb;
    if (err_rc != MB_OK) {
      const mb_record *r = &recs->rec[err_i];
      if (r->line > 0)
        rc = mb_error_set(err_rc, __FILE__, __LINE__, "%s: line %lld (id %lld): %s", recs->source, (long long)r->line,
                          (long long)r->id, err_msg);
      else
        rc = mb_error_set(err_rc, __FILE__, __LINE__, "%s: example id %lld: %s", recs->source, (long long)r->id,
                          err_msg);
    }
    for (int64_t i = b0; i < b1 && rc == MB_OK; i++) {
      int k = (int)(i / per);
      if (k != cur_shard) {
        if (w) {
          rc = mb_shard_writer_close(w);
          w = NULL;
          if (rc != MB_OK)
            break;
          n_written++;
        }
        cur_shard = k;
        meta.shard_index = k;
        mb_shard_file_name(recs->split, k, nsh, name, sizeof name);
        snprintf(path, sizeof path, "%s/%s", opt->out_dir, name);
        written[k] = strdup(path);
        if (!written[k]) {
          rc = MB_ERR(MB_ENOMEM, "out of memory");
          break;
        }
        rc = mb_shard_writer_open(path, &meta, &w);
        if (rc != MB_OK)
          break;
      }
      const mb_record *r = &recs->rec[i];
      int truncated = blen[i - b0] < full[i];
      rc = mb_shard_writer_add(w, r->id, r->label, bids[i - b0], blen[i - b0], truncated, mb_record_text(recs, (size_t)i),
                               r->text_len);
      if (rc == MB_OK) {
        if (enc->has_unk) { /* what the model will not see: words the vocabulary lacks */
          int64_t u = 0;
          for (int32_t t = 0; t < blen[i - b0]; t++)
            u += bids[i - b0][t] == enc->unk_id;
          st->unk_tokens += u;
          st->unk_examples += u > 0;
        }
        st->tokens += blen[i - b0];
        st->full_tokens += full[i];
        st->truncated += truncated;
        st->label_count[r->label]++;
        st->examples++;
        tokens += blen[i - b0];
      }
    }
    for (int64_t i = b0; i < b1; i++) {
      free(bids[i - b0]);
      bids[i - b0] = NULL;
    }
    st->seconds_write += now_s() - tw;
  }
  if (rc == MB_OK && n == 0) {
    /* An empty split still gets its (empty) shard. */
    meta.shard_index = 0;
    mb_shard_file_name(recs->split, 0, 1, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", opt->out_dir, name);
    written[0] = strdup(path);
    rc = written[0] ? mb_shard_writer_open(path, &meta, &w) : MB_ERR(MB_ENOMEM, "out of memory");
  }
  if (w) {
    if (rc == MB_OK) {
      const double tw = now_s();
      rc = mb_shard_writer_close(w);
      st->seconds_write += now_s() - tw;
      if (rc == MB_OK)
        n_written++;
    } else {
      mb_shard_writer_abort(w);
    }
  }
  st->seconds = now_s() - t0;
  if (rc == MB_OK) {
    if (opt->progress)
      opt->progress(opt->progress_ctx, n, n, st->tokens, st->seconds);
    length_stats(full, n, st);
    remove_stale(opt->out_dir, recs->split, written, n_written);
    warn_other_vocabulary(opt->out_dir, recs->split, &meta);
    st->n_files = n_written;
    for (int k = 0; k < n_written && k < 8; k++)
      snprintf(st->files[k], sizeof st->files[k], "%s", written[k]);
  } else {
    /* No partial set under the real names: drop the files this run finished. */
    for (int k = 0; k < n_written; k++)
      if (written[k])
        unlink(written[k]);
  }
  for (int k = 0; k < nsh; k++)
    free(written[k]);
  free(written);
  free(full);
  free(bids);
  free(blen);
  return rc;
}
