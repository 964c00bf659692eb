/* eval.c: selection, the timed evaluation protocol, its report, and the
 * weights a --model PATH names (eval.h). */
#include "experiments/eval.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/loader.h"
#include "experiments/checkpoint.h"
#include "experiments/program.h"
#include "models/model.h"
#include "runtime/alloc.h"
#include "runtime/fileio.h"
#include "runtime/log.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- selection ------------------------------------------------------------ */

size_t mb_shardset_bytes(const mb_shardset *s) {
  if (!s)
    return 0;
  return (size_t)s->n_tokens * sizeof(int32_t) + (size_t)(s->n + 1) * sizeof(int64_t) +
         (size_t)s->n * (2 * sizeof(int32_t) + sizeof(int64_t));
}

/* A new set of the examples idx[0..n) of `all`, in that order. */
static int subset_of(const mb_shardset *all, const int64_t *idx, int64_t n, mb_shardset **out) {
  mb_shardset *s = calloc(1, sizeof *s);
  if (!s)
    return MB_ERR(MB_ENOMEM, "out of memory");
  s->meta = all->meta;
  s->n = n;
  int64_t toks = 0;
  for (int64_t i = 0; i < n; i++)
    toks += all->lengths[idx[i]];
  s->n_tokens = toks;
  s->tokens = mb_host_malloc((size_t)(toks ? toks : 1) * sizeof *s->tokens);
  s->offsets = mb_host_malloc((size_t)(n + 1) * sizeof *s->offsets);
  s->lengths = mb_host_malloc((size_t)(n ? n : 1) * sizeof *s->lengths);
  s->labels = mb_host_malloc((size_t)(n ? n : 1) * sizeof *s->labels);
  s->example_ids = mb_host_malloc((size_t)(n ? n : 1) * sizeof *s->example_ids);
  if (!s->tokens || !s->offsets || !s->lengths || !s->labels || !s->example_ids) {
    mb_shardset_free(s);
    return MB_ERR(MB_ENOMEM, "out of memory selecting %lld examples", (long long)n);
  }
  s->meta.n_examples = n;
  s->meta.n_tokens = toks;
  s->meta.label_count[0] = s->meta.label_count[1] = 0;
  s->meta.has_text = 0;
  s->offsets[0] = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t j = idx[i];
    memcpy(s->tokens + s->offsets[i], mb_shardset_ids(all, j), (size_t)all->lengths[j] * sizeof(int32_t));
    s->offsets[i + 1] = s->offsets[i] + all->lengths[j];
    s->lengths[i] = all->lengths[j];
    s->labels[i] = all->labels[j];
    s->example_ids[i] = all->example_ids[j];
    s->meta.label_count[s->labels[i] ? 1 : 0]++;
  }
  *out = s;
  return MB_OK;
}

int mb_eval_select(const mb_shardset *all, int64_t n, const char *selection, mb_shardset **out, char *desc,
                   size_t cap) {
  const int64_t total = all->n;
  if (n > total)
    mb_log_once(MB_LOG_INFO, "eval-samples-clamped", "%lld examples asked for, the set has %lld: all of them",
                (long long)n, (long long)total);
  if (n <= 0 || n > total)
    n = total;
  int64_t *idx = malloc((size_t)(n ? n : 1) * sizeof *idx);
  if (!idx)
    return MB_ERR(MB_ENOMEM, "out of memory");
  int64_t k = 0;
  if (strcmp(selection, "first") == 0) {
    for (; k < n; k++)
      idx[k] = k;
  } else if (strcmp(selection, "strided") == 0) {
    /* n evenly spaced examples: floor(i * total / n) */
    for (; k < n; k++)
      idx[k] = (int64_t)((__int128)k * total / n);
  } else if (strcmp(selection, "balanced") == 0) {
    int64_t want[2] = {n / 2, n - n / 2}, got[2] = {0, 0};
    if (all->meta.label_count[0] < want[0] || all->meta.label_count[1] < want[1]) {
      free(idx);
      return MB_ERR(MB_EINVAL, "eval.selection balanced: %lld examples need %lld negative and %lld positive, the "
                               "set has %lld and %lld",
                    (long long)n, (long long)want[0], (long long)want[1], (long long)all->meta.label_count[0],
                    (long long)all->meta.label_count[1]);
    }
    for (int64_t i = 0; i < total && k < n; i++) {
      int l = all->labels[i] ? 1 : 0;
      if (got[l] < want[l]) {
        got[l]++;
        idx[k++] = i;
      }
    }
  } else {
    free(idx);
    return MB_ERR(MB_EINVAL, "eval.selection '%s': expected first, balanced or strided", selection);
  }
  int rc = subset_of(all, idx, k, out);
  free(idx);
  if (rc != MB_OK)
    return rc;
  const mb_shardset *s = *out;
  if (strcmp(selection, "first") == 0)
    snprintf(desc, cap, "first %lld of %lld in file order (%lld negative, %lld positive)", (long long)k,
             (long long)total, (long long)s->meta.label_count[0], (long long)s->meta.label_count[1]);
  else if (strcmp(selection, "strided") == 0)
    snprintf(desc, cap, "%lld of %lld evenly strided (%lld negative, %lld positive)", (long long)k, (long long)total,
             (long long)s->meta.label_count[0], (long long)s->meta.label_count[1]);
  else if (s->meta.label_count[0] == s->meta.label_count[1])
    snprintf(desc, cap, "%lld of %lld balanced: the first %lld of each label in file order", (long long)k,
             (long long)total, (long long)s->meta.label_count[0]);
  else /* an odd count: the positive label takes the extra one */
    snprintf(desc, cap, "%lld of %lld balanced: the first %lld negative and %lld positive in file order",
             (long long)k, (long long)total, (long long)s->meta.label_count[0], (long long)s->meta.label_count[1]);
  char once[160]; /* once per selection of a set (not once per process: the next model's is another) */
  snprintf(once, sizeof once, "one-class|%s|%.16s|%lld|%lld", selection, all->meta.vocab_sha256, (long long)k,
           (long long)total);
  if (k > 1 && (s->meta.label_count[0] == 0 || s->meta.label_count[1] == 0))
    mb_log_once(MB_LOG_WARN, once,
                "the %lld examples evaluated (%s) are all %s: accuracy measures one class only (IMDB's test file "
                "is ordered by label; eval.selection: balanced or strided takes both)",
                (long long)k, selection, s->meta.label_count[0] ? "negative" : "positive");
  return MB_OK;
}

/* ---- the protocol ----------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* One pass over every batch; predictions into r when `record`. */
static int one_pass(mb_net_programs *progs, mb_loader *ld, int64_t nbatches, mb_backend *be, float *logits_buf,
                    int64_t C, mb_eval_result *r, int record, double *loss_sum, int64_t *loss_rows,
                    const mb_eval_opts *o) {
  volatile sig_atomic_t *stop = o->stop;
  MB_TRY(mb_loader_seek(ld, (mb_loader_position){0, 0}));
  for (int64_t bi = 0; bi < nbatches; bi++) {
    if (stop && *stop) {
      r->stopped = 1;
      break;
    }
    const mb_batch *b;
    MB_TRY(mb_loader_next(ld, &b));
    mb_exec *ex;
    mb_var logits, loss;
    MB_TRY(mb_net_programs_run_inputs(progs, b, NULL, &ex, &logits, &loss));
    MB_TRY(mb_exec_forward(ex));
    MB_TRY(mb_exec_get(ex, logits, logits_buf));
    /* argmax of every row: part of the timed work, as in the reference */
    int32_t pred_row[4096];
    for (int32_t i = 0; i < b->rows && i < 4096; i++) {
      const float *row = logits_buf + (int64_t)i * C;
      int32_t best = 0;
      for (int64_t c = 1; c < C; c++)
        if (row[c] > row[best])
          best = (int32_t)c;
      pred_row[i] = best;
    }
    if (record) {
      for (int32_t i = 0; i < b->rows && i < 4096; i++) {
        int32_t y = b->labels[i];
        if (y < 0)
          continue;
        r->n++;
        r->correct += pred_row[i] == y;
        if (y < 2 && pred_row[i] < 2)
          r->confusion[y][pred_row[i]]++;
      }
      r->real_tokens += b->n_tokens;
      /* positions the model computed on: every row's length, or the budget */
      r->padded_tokens += b->mode == MB_BATCH_PACKED ? (int64_t)b->seq_len : (int64_t)b->rows * b->seq_len;
      if (b->n_seqs > 0) {
        float l;
        MB_TRY(mb_exec_get(ex, loss, &l));
        *loss_sum += (double)l * b->n_seqs;
        *loss_rows += b->n_seqs;
      }
    }
    if (o->on_batch)
      o->on_batch(o->on_batch_arg);
  }
  if (be->sync)
    MB_TRY(be->sync(be));
  return MB_OK;
}

int mb_eval_run(mb_net *net, mb_backend *be, const mb_shardset *set, const mb_eval_opts *o, mb_eval_result *r) {
  memset(r, 0, sizeof *r);
  if (o->repeats < 1 || o->repeats > MB_EVAL_MAX_REPEATS)
    return MB_ERR(MB_EINVAL, "eval.repeats %lld: expected 1..%d", (long long)o->repeats, MB_EVAL_MAX_REPEATS);
  if (o->batch_size > 4096)
    return MB_ERR(MB_EINVAL, "eval.batch_size %lld: at most 4096", (long long)o->batch_size);
  if (net->max_position > 0 && o->max_length > net->max_position)
    return MB_ERR(MB_EINVAL, "max_length %lld is longer than the model's %lld position embeddings",
                  (long long)o->max_length, (long long)net->max_position);
  mb_loader_config lc = mb_loader_eval_config((int32_t)o->batch_size, (int32_t)o->max_length, 0);
  if (o->packed) {
    lc.mode = MB_BATCH_PACKED;
    lc.token_budget = o->token_budget ? o->token_budget : o->batch_size * o->max_length;
    lc.max_seqs = (int32_t)(o->max_seqs ? o->max_seqs : o->batch_size);
  }
  mb_loader *ld;
  MB_TRY(mb_loader_create(set, &lc, &ld));
  int64_t nbatches = 0;
  int rc = mb_loader_steps_in_epoch(ld, 0, &nbatches);
  mb_net_programs *progs = NULL;
  if (rc == MB_OK)
    rc = mb_net_programs_new(net, be, &(mb_compile_opts){.train = 0}, &progs);
  const int64_t C = net->num_labels;
  const int64_t rows_max = o->packed ? lc.max_seqs : o->batch_size;
  float *logits_buf = malloc((size_t)(rows_max * C) * sizeof(float));
  if (rc == MB_OK && !logits_buf)
    rc = MB_ERR(MB_ENOMEM, "out of memory");
  double loss_sum = 0, t0;
  int64_t loss_rows = 0;
  /* compile (and run once) the programs of the first batch and of the last
   * (a partial batch has its own shape), untimed */
  for (int64_t bi = 0; rc == MB_OK && bi < nbatches; bi += nbatches > 1 ? nbatches - 1 : 1) {
    const mb_batch *b;
    mb_exec *ex;
    mb_var lg, ls;
    rc = mb_loader_seek(ld, (mb_loader_position){0, bi});
    if (rc == MB_OK)
      rc = mb_loader_next(ld, &b);
    if (rc == MB_OK)
      rc = mb_net_programs_run_inputs(progs, b, NULL, &ex, &lg, &ls);
    if (rc == MB_OK)
      rc = mb_exec_forward(ex);
    if (rc == MB_OK && o->on_batch) /* each compiled program is progress too */
      o->on_batch(o->on_batch_arg);
  }
  for (int64_t w = 0; rc == MB_OK && !r->stopped && w < o->warmup; w++) {
    t0 = now_s();
    rc = one_pass(progs, ld, nbatches, be, logits_buf, C, r, 0, &loss_sum, &loss_rows, o);
    if (rc == MB_OK && !o->quiet)
      MB_INFO("eval warm-up pass %lld/%lld: %.2f s", (long long)w + 1, (long long)o->warmup, now_s() - t0);
  }
  mb_host_mem_reset_peak();
  if (o->device_mem)
    o->device_mem->reset_peak(o->device_mem);
  if (rc == MB_OK && o->profile)
    mb_net_programs_set_profiling(progs, 1);
  for (int64_t k = 0; rc == MB_OK && !r->stopped && k < o->repeats; k++) {
    t0 = now_s();
    rc = one_pass(progs, ld, nbatches, be, logits_buf, C, r, k == 0, &loss_sum, &loss_rows, o);
    r->seconds[k] = now_s() - t0;
    if (rc == MB_OK && !o->quiet)
      MB_INFO("eval timed pass %lld/%lld: %.3f s", (long long)k + 1, (long long)o->repeats, r->seconds[k]);
  }
  if (rc == MB_OK && !r->stopped) {
    mb_mem_stats ms = mb_host_mem_stats();
    r->repeats = (int)o->repeats;
    double sorted[MB_EVAL_MAX_REPEATS];
    memcpy(sorted, r->seconds, sizeof(double) * (size_t)r->repeats);
    qsort(sorted, (size_t)r->repeats, sizeof(double), cmp_double);
    r->seconds_min = sorted[0];
    r->seconds_median = r->repeats % 2 ? sorted[r->repeats / 2]
                                       : 0.5 * (sorted[r->repeats / 2 - 1] + sorted[r->repeats / 2]);
    r->batches = nbatches;
    r->accuracy = r->n ? (double)r->correct / (double)r->n : 0;
    r->loss = loss_rows ? loss_sum / (double)loss_rows : NAN;
    r->samples_per_s = r->n / r->seconds_median;
    r->tokens_per_s = (double)r->real_tokens / r->seconds_median;
    r->padded_tokens_per_s = (double)r->padded_tokens / r->seconds_median;
    r->data_mb = (double)(mb_shardset_bytes(set) + o->exclude_bytes) / (1 << 20);
    r->peak_mb = (double)ms.peak / (1 << 20) - r->data_mb;
    if (o->device_mem) { /* the data stays on the host: nothing to subtract */
      r->peak_mb = (double)o->device_mem->stats(o->device_mem).peak / (1 << 20);
      r->peak_on_gpu = 1;
    }
    r->params_mb = (double)mb_params_total(net->params) * mb_dtype_size(mb_params_dtype(net->params)) / (1 << 20);
    r->arena_mb = (double)mb_net_programs_arena_bytes(progs) / (1 << 20);
    r->label_count[0] = set->meta.label_count[0];
    r->label_count[1] = set->meta.label_count[1];
    r->max_length = o->max_length;
    r->batch_size = o->batch_size;
    r->packed = o->packed;
  }
  if (rc == MB_OK && o->profile)
    mb_net_programs_profile_print(progs, stderr);
  free(logits_buf);
  mb_net_programs_free(progs);
  mb_loader_free(ld);
  return rc;
}

/* ---- reports ------------------------------------------------------------------- */

char *mb_eval_result_json(const mb_eval_result *r, const char *name, const char *describe) {
  json_t *secs = json_array();
  for (int i = 0; i < r->repeats; i++)
    json_array_append_new(secs, json_real(r->seconds[i]));
  json_t *j = json_object();
  json_object_set_new(j, "model", json_string(name));
  json_object_set_new(j, "describe", json_string(describe ? describe : ""));
  json_object_set_new(j, "selection", json_string(r->selection));
  json_object_set_new(j, "samples", json_integer(r->n));
  json_object_set_new(j, "correct", json_integer(r->correct));
  json_object_set_new(j, "accuracy", json_real(r->accuracy));
  json_object_set_new(j, "loss", isfinite(r->loss) ? json_real(r->loss) : json_null());
  json_object_set_new(j, "confusion", json_pack("[[I,I],[I,I]]", (json_int_t)r->confusion[0][0],
                                                (json_int_t)r->confusion[0][1], (json_int_t)r->confusion[1][0],
                                                (json_int_t)r->confusion[1][1]));
  json_object_set_new(j, "max_length", json_integer(r->max_length));
  json_object_set_new(j, "batch_size", json_integer(r->batch_size));
  json_object_set_new(j, "batching", json_string(r->packed ? "packed" : "padded"));
  if (r->attention[0]) /* fp8: q, k, v in e4m3 (eval.attention) */
    json_object_set_new(j, "attention", json_string(r->attention));
  json_object_set_new(j, "batches", json_integer(r->batches));
  json_object_set_new(j, "seconds", secs);
  json_object_set_new(j, "seconds_median", json_real(r->seconds_median));
  json_object_set_new(j, "samples_per_s", json_real(r->samples_per_s));
  json_object_set_new(j, "real_tokens", json_integer(r->real_tokens));
  json_object_set_new(j, "padded_tokens", json_integer(r->padded_tokens));
  json_object_set_new(j, "real_tokens_per_s", json_real(r->tokens_per_s));
  json_object_set_new(j, "padded_tokens_per_s", json_real(r->padded_tokens_per_s));
  json_object_set_new(j, "peak_mb", json_real(r->peak_mb));
  json_object_set_new(j, "peak_of", json_string(r->peak_on_gpu ? "gpu allocator" : "host, less the data"));
  json_object_set_new(j, "params_mb", json_real(r->params_mb));
  json_object_set_new(j, "arena_mb", json_real(r->arena_mb));
  json_object_set_new(j, "data_mb_excluded", json_real(r->data_mb));
  char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8));
  json_decref(j);
  return s;
}

void mb_eval_table_header(FILE *f) {
  fprintf(f, "| model | samples | accuracy | max_length | batch | seconds (median of R) | samples/s | real tokens/s | "
             "padded tokens/s | peak MB | weights MB | arena MB |\n");
  fprintf(f, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
}

const char *mb_md_cell(const char *s, char *out, size_t cap) {
  size_t k = 0;
  for (; *s && k + 3 < cap; s++) {
    if (*s == '|')
      out[k++] = '\\'; /* \| is a literal bar in a markdown table */
    out[k++] = (unsigned char)*s < 0x20 ? ' ' : *s;
  }
  out[k] = 0;
  return out;
}

void mb_eval_table_row(FILE *f, const char *name, const mb_eval_result *r) {
  char cell[300];
  fprintf(f, "| %s | %lld | %.4f | %lld | %lld%s | %.3f (R=%d) | %.1f | %.0f | %.0f | %.1f | %.1f | %.1f |\n",
          mb_md_cell(name, cell, sizeof cell),
          (long long)r->n, r->accuracy, (long long)r->max_length, (long long)r->batch_size,
          r->packed ? " packed" : "", r->seconds_median, r->repeats, r->samples_per_s, r->tokens_per_s,
          r->padded_tokens_per_s, r->peak_mb, r->params_mb, r->arena_mb);
}

/* ---- the weights --model names ------------------------------------------------- */

static int has_file(const char *dir, const char *name) {
  char p[MB_CFG_PATH + 64];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return mb_file_exists(p);
}

static int is_bow_export(const char *dir) {
  char p[MB_CFG_PATH + 64], *text;
  size_t n;
  snprintf(p, sizeof p, "%s/config.json", dir);
  if (mb_read_file(p, 1 << 20, &text, &n) != MB_OK) {
    mb_error_clear();
    return 0;
  }
  int bow = strstr(text, "\"mambert-bow\"") != NULL;
  free(text);
  return bow;
}

/* A run directory's weights: its final model, else its newest valid checkpoint. */
static int run_weights(const char *run, mb_model_source *src) {
  char p[MB_CFG_PATH];
  MB_TRY(mb_path_join(p, sizeof p, run, "model"));
  if (has_file(p, "config.json")) {
    memcpy(src->dir, p, sizeof p);
    return MB_OK;
  }
  MB_TRY(mb_path_join(p, sizeof p, run, "checkpoints"));
  if (!mb_is_dir(p))
    return MB_ERR(MB_ENOTFOUND, "run directory %s has neither a final model (model/config.json) nor checkpoints/",
                  run);
  return mb_ckpt_find_latest(p, src->ckpt, sizeof src->ckpt);
}

int mb_model_source_resolve(const char *path, mb_model_source *out) {
  memset(out, 0, sizeof *out);
  if (mb_file_exists(path) && !mb_is_dir(path))
    return MB_ERR(MB_EINVAL, "--model %s: a file; give the directory that holds the model (its config.json, a "
                             "checkpoint's manifest.json, or a run's run.json)",
                  path);
  if (!mb_is_dir(path))
    return MB_ERR(MB_ENOTFOUND, "--model %s: no such directory", path);
  if (has_file(path, "manifest.json")) {
    if (strlen(path) >= sizeof out->ckpt)
      return MB_ERR(MB_EINVAL, "--model %s: path too long", path);
    /* named directly, checked as a run's newest is: damaged weights are not used */
    int rc = mb_ckpt_verify(path);
    if (rc != MB_OK)
      return mb_error_context(rc, "--model %s", path);
    snprintf(out->ckpt, sizeof out->ckpt, "%s", path);
  } else if (has_file(path, "run.json")) {
    int rc = run_weights(path, out);
    if (rc != MB_OK)
      return mb_error_context(rc, "--model %s", path);
  } else if (has_file(path, "config.json")) {
    if (strlen(path) >= sizeof out->dir)
      return MB_ERR(MB_EINVAL, "--model %s: path too long", path);
    snprintf(out->dir, sizeof out->dir, "%s", path);
  } else {
    return MB_ERR(MB_ENOTFOUND, "--model %s: not a model directory (config.json), a checkpoint (manifest.json) or a "
                                "run directory (run.json)",
                  path);
  }
  return MB_OK;
}

static int open_model(mb_config *cfg, const char *model_path, const mb_open_model_opts *opts, mb_backend *be,
                      mb_tokenizer **tok, mb_net **out, char *source, size_t cap) {
  const char *set_tok = opts->set_tokenizer ? opts->set_tokenizer : "tokenizer: in the config";
  mb_model_source src;
  memset(&src, 0, sizeof src);
  const char *run = cfg->run_dir;
  if (model_path) {
    MB_TRY(mb_model_source_resolve(model_path, &src));
  } else if (*run && run_weights(run, &src) != MB_OK) {
    mb_error_clear(); /* no weights of its own yet: model.checkpoint or random */
    memset(&src, 0, sizeof src);
  }
  if (src.dir[0] && !is_bow_export(src.dir)) { /* a Hugging Face style directory */
    snprintf(cfg->model_checkpoint, sizeof cfg->model_checkpoint, "%s", src.dir);
    cfg->model_arch[0] = 0;
    snprintf(source, cap, "%s", src.dir);
  }
  /* said first: without the directory, its tokenizer is missing too */
  if (cfg->model_checkpoint[0] && !mb_is_dir(cfg->model_checkpoint))
    return MB_ERR(MB_ENOTFOUND, "model.checkpoint: model directory %s does not exist", cfg->model_checkpoint);
  /* tokenizer: the config's, else the checkpoint directory's */
  char tp[MB_CFG_PATH + 64] = "";
  if (cfg->tokenizer[0])
    snprintf(tp, sizeof tp, "%s", cfg->tokenizer);
  else if (cfg->model_checkpoint[0]) {
    int rc = mb_model_dir_tokenizer(cfg->model_checkpoint, tp, sizeof tp);
    if (rc != MB_OK)
      return mb_error_context(rc, "model.checkpoint");
    if (!mb_file_exists(tp)) {
      if (!opts->optional_tokenizer)
        return MB_ERR(MB_EINVAL, "no tokenizer: %s does not exist; set %s", tp, set_tok);
      tp[0] = 0;
    }
  }
  if (!tp[0] && !(opts->optional_tokenizer && cfg->model_checkpoint[0]))
    return MB_ERR(MB_EINVAL, "no tokenizer: set %s", set_tok);
  if (tp[0]) {
    mb_tokenizer_options to = mb_tokenizer_default_options();
    int rc = mb_tokenizer_load(tp, &to, tok);
    if (rc != MB_OK)
      return mb_error_context(rc, "tokenizer");
  }
  MB_TRY(mb_net_create(cfg, *tok ? mb_tokenizer_vocab_size(*tok) : 0, opts->init_missing_head, be, out));
  mb_net *net = *out;
  if (*tok && net->tokenizer_sha256[0] && strcmp(net->tokenizer_sha256, mb_tokenizer_vocab_sha256(*tok)) != 0)
    return MB_ERR(MB_EINVAL, "%s was trained with another vocabulary (%s) than the tokenizer %s", source,
                  net->tokenizer_path, tp);
  if (src.dir[0] && is_bow_export(src.dir)) {
    char p[MB_CFG_PATH + 64];
    snprintf(p, sizeof p, "%s/model.safetensors", src.dir);
    MB_TRY(mb_net_load_weights(net, p));
    snprintf(source, cap, "%s", src.dir);
  } else if (src.ckpt[0]) {
    mb_ckpt_state st;
    MB_TRY(mb_ckpt_read_state(src.ckpt, &st));
    free(st.rank_loaders);
    if (strcmp(st.arch, net->arch) != 0)
      return MB_ERR(MB_EINVAL, "%s: a checkpoint of a %s model; the config builds a %s model", src.ckpt, st.arch,
                    net->arch);
    if (!*tok)
      return MB_ERR(MB_EINVAL, "%s: no tokenizer: set %s", src.ckpt, set_tok);
    if (strcmp(st.tokenizer_sha256, mb_tokenizer_vocab_sha256(*tok)) != 0)
      return MB_ERR(MB_EINVAL, "%s: made with tokenizer %s (sha256 %.16s...), %s %s (%.16s..., %s)", src.ckpt,
                    st.tokenizer_name, st.tokenizer_sha256, opts->set_tokenizer ? "not" : "the config's is",
                    mb_tokenizer_name(*tok), mb_tokenizer_vocab_sha256(*tok), tp);
    char p[MB_CFG_PATH + 64];
    snprintf(p, sizeof p, "%s/model.safetensors", src.ckpt);
    MB_TRY(mb_net_load_weights(net, p));
    snprintf(source, cap, "%s", src.ckpt);
  } else if (!src.dir[0] && !cfg->model_checkpoint[0]) {
    snprintf(source, cap, "random init (seed %lld)", (long long)cfg->seed);
    MB_WARN("%s: no trained weights found (no --model, no %s/model or checkpoint, no model.checkpoint): random "
            "weights, accuracy is meaningless; throughput and memory are not",
            cfg->run_name, *run ? run : "run.dir");
  } else if (!source[0]) {
    snprintf(source, cap, "%s", cfg->model_checkpoint);
  }
  return MB_OK;
}

int mb_eval_open_model(mb_config *cfg, const char *model_path, const mb_open_model_opts *opts, mb_backend *be,
                       mb_tokenizer **tok, mb_net **out, char *source, size_t cap) {
  const mb_open_model_opts none = {0};
  *tok = NULL;
  *out = NULL;
  if (cap)
    source[0] = 0;
  int rc = open_model(cfg, model_path, opts ? opts : &none, be, tok, out, source, cap);
  if (rc != MB_OK && model_path) {
    /* the directory came from --model: say so, not the config key it was put in */
    static const char key[] = "model.checkpoint: ";
    char msg[2048];
    snprintf(msg, sizeof msg, "%s", mb_error_message());
    if (strncmp(msg, key, sizeof key - 1) == 0)
      mb_error_set(rc, __FILE__, __LINE__, "--model %s: %s", model_path, msg + sizeof key - 1);
  }
  if (rc != MB_OK) {
    mb_net_free(*out);
    mb_tokenizer_free(*tok);
    *out = NULL;
    *tok = NULL;
  }
  return rc;
}

int mb_open_model_path(const char *path, const mb_open_path_opts *o, mb_backend *be, mb_tokenizer **tok,
                       mb_net **out, char *source, size_t cap) {
  *out = NULL;
  if (tok)
    *tok = NULL;
  mb_model_source src;
  MB_TRY(mb_model_source_resolve(path, &src));
  const char *kind = "only BERT and Mamba classifiers load here";
  if (src.dir[0] && is_bow_export(src.dir))
    return MB_ERR(MB_EUNSUPPORTED, "--model %s: a bag-of-embeddings (bow) model; %s", path, kind);
  /* a checkpoint holds weights by name only: its config.yaml says what they are */
  mb_config_doc *doc;
  if (src.ckpt[0]) {
    char p[MB_CFG_PATH + 64];
    snprintf(p, sizeof p, "%s/config.yaml", src.ckpt);
    const char *files[] = {p};
    MB_TRY(mb_config_load(files, 1, NULL, 0, NULL, &doc));
  } else {
    MB_TRY(mb_config_load(NULL, 0, NULL, 0, NULL, &doc));
  }
  mb_config *cfg = mb_config_doc_config(doc);
  cfg->run_dir[0] = 0;
  if (src.dir[0]) { /* architecture and head from the directory's config.json and weights */
    cfg->model_arch[0] = 0;
    cfg->num_labels = 0;
    cfg->seed = (int64_t)o->seed;
  }
  if (o->num_labels > 0)
    cfg->num_labels = o->num_labels;
  if (o->tokenizer)
    snprintf(cfg->tokenizer, sizeof cfg->tokenizer, "%s", o->tokenizer);
  else if (src.ckpt[0] && cfg->tokenizer[0] && !mb_file_exists(cfg->tokenizer)) {
    int rc = MB_ERR(MB_ENOTFOUND, "%s/config.yaml: tokenizer %s: no such file (a relative path is from where the "
                                  "training ran); give --tokenizer FILE",
                    src.ckpt, cfg->tokenizer);
    mb_config_doc_free(doc);
    return rc;
  }
  if (o->pooling)
    snprintf(cfg->pooling, sizeof cfg->pooling, "%s", o->pooling);
  mb_open_model_opts oo = {"--tokenizer FILE", o->optional_tokenizer, o->init_missing_head};
  mb_tokenizer *t = NULL;
  int rc = mb_eval_open_model(cfg, src.ckpt[0] ? src.ckpt : src.dir, &oo, be, &t, out, source, cap);
  mb_config_doc_free(doc);
  if (rc == MB_OK && !mb_net_model(*out)) {
    rc = MB_ERR(MB_EUNSUPPORTED, "--model %s: a bag-of-embeddings (bow) model; %s", path, kind);
    mb_net_free(*out);
    *out = NULL;
  }
  if (rc == MB_OK && tok)
    *tok = t;
  else
    mb_tokenizer_free(t);
  return rc;
}
