/* eval.c: selection, the timed evaluation protocol, and its report (eval.h). */
#include "experiments/eval.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/loader.h"
#include "experiments/program.h"
#include "runtime/alloc.h"
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
  else
    snprintf(desc, cap, "%lld of %lld balanced: the first %lld of each label in file order", (long long)k,
             (long long)total, (long long)(k / 2));
  return MB_OK;
}

/* ---- the protocol ----------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* One pass over every batch; predictions into r when `record`. */
static int one_pass(mb_net_programs *progs, mb_loader *ld, int64_t nbatches, mb_backend *be, float *logits_buf,
                    int64_t C, mb_eval_result *r, int record, double *loss_sum, int64_t *loss_rows) {
  MB_TRY(mb_loader_seek(ld, (mb_loader_position){0, 0}));
  for (int64_t bi = 0; bi < nbatches; bi++) {
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
  if (rc == MB_OK && nbatches > 0) { /* compile (and run once) the first batch's program, untimed */
    const mb_batch *b;
    mb_exec *ex;
    mb_var lg, ls;
    rc = mb_loader_next(ld, &b);
    if (rc == MB_OK)
      rc = mb_net_programs_run_inputs(progs, b, NULL, &ex, &lg, &ls);
    if (rc == MB_OK)
      rc = mb_exec_forward(ex);
  }
  for (int64_t w = 0; rc == MB_OK && w < o->warmup; w++) {
    t0 = now_s();
    rc = one_pass(progs, ld, nbatches, be, logits_buf, C, r, 0, &loss_sum, &loss_rows);
    if (rc == MB_OK && !o->quiet)
      MB_INFO("eval warm-up pass %lld/%lld: %.2f s", (long long)w + 1, (long long)o->warmup, now_s() - t0);
  }
  mb_host_mem_reset_peak();
  if (rc == MB_OK && o->profile)
    mb_net_programs_set_profiling(progs, 1);
  for (int64_t k = 0; rc == MB_OK && k < o->repeats; k++) {
    t0 = now_s();
    rc = one_pass(progs, ld, nbatches, be, logits_buf, C, r, k == 0, &loss_sum, &loss_rows);
    r->seconds[k] = now_s() - t0;
    if (rc == MB_OK && !o->quiet)
      MB_INFO("eval timed pass %lld/%lld: %.3f s", (long long)k + 1, (long long)o->repeats, r->seconds[k]);
  }
  if (rc == MB_OK) {
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
  json_object_set_new(j, "batches", json_integer(r->batches));
  json_object_set_new(j, "seconds", secs);
  json_object_set_new(j, "seconds_median", json_real(r->seconds_median));
  json_object_set_new(j, "samples_per_s", json_real(r->samples_per_s));
  json_object_set_new(j, "real_tokens", json_integer(r->real_tokens));
  json_object_set_new(j, "padded_tokens", json_integer(r->padded_tokens));
  json_object_set_new(j, "real_tokens_per_s", json_real(r->tokens_per_s));
  json_object_set_new(j, "padded_tokens_per_s", json_real(r->padded_tokens_per_s));
  json_object_set_new(j, "peak_mb", json_real(r->peak_mb));
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

void mb_eval_table_row(FILE *f, const char *name, const mb_eval_result *r) {
  fprintf(f, "| %s | %lld | %.4f | %lld | %lld%s | %.3f (R=%d) | %.1f | %.0f | %.0f | %.1f | %.1f | %.1f |\n", name,
          (long long)r->n, r->accuracy, (long long)r->max_length, (long long)r->batch_size,
          r->packed ? " packed" : "", r->seconds_median, r->repeats, r->samples_per_s, r->tokens_per_s,
          r->padded_tokens_per_s, r->peak_mb, r->params_mb, r->arena_mb);
}
