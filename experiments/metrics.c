/* metrics.c: metrics.jsonl and TensorBoard scalars (metrics.h). */
#include "experiments/metrics.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "experiments/tfevents.h"
#include "runtime/fileio.h"
#include "runtime/log.h"

struct mb_metrics {
  FILE *f;
  char path[1100];
  mb_tfevents *tb;
};

/* Keep only lines whose "step" is <= step (rewritten atomically); with
 * drop_eval_at_step, not the "eval" lines of that step either. */
static int truncate_after(const char *path, int64_t step, int drop_eval_at_step) {
  char *text;
  size_t n;
  int rc = mb_read_file(path, (size_t)1 << 32, &text, &n);
  if (rc == MB_ENOTFOUND) {
    mb_error_clear();
    return MB_OK;
  }
  MB_TRY(rc);
  char *out = malloc(n + 1);
  if (!out) {
    free(text);
    return MB_ERR(MB_ENOMEM, "out of memory");
  }
  size_t k = 0, dropped = 0;
  for (char *line = text; *line;) {
    char *nl = strchr(line, '\n');
    size_t len = nl ? (size_t)(nl - line) : strlen(line);
    json_error_t err;
    json_t *j = json_loadb(line, len, 0, &err);
    json_t *s = j ? json_object_get(j, "step") : NULL;
    const char *kind = j ? json_string_value(json_object_get(j, "kind")) : NULL;
    const int redone = drop_eval_at_step && s && json_integer_value(s) == step && kind && strcmp(kind, "eval") == 0;
    if (nl && s && json_is_integer(s) && json_integer_value(s) <= step && !redone) {
      memcpy(out + k, line, len + 1);
      k += len + 1;
    } else {
      dropped++; /* later steps, or a line cut short by the crash */
    }
    json_decref(j);
    line += len + (nl ? 1 : 0);
  }
  rc = mb_write_file_atomic(path, out, k);
  if (rc == MB_OK && dropped)
    MB_INFO("metrics.jsonl: dropped %zu lines logged after step %lld%s (the resumed run logs them again)", dropped,
            (long long)step, drop_eval_at_step ? " or by its final evaluation" : "");
  free(out);
  free(text);
  return rc;
}

int mb_metrics_open(const char *run_dir, int tensorboard, int64_t resume_step, int redo_final_eval,
                    mb_metrics **out) {
  mb_metrics *m = calloc(1, sizeof *m);
  if (!m)
    return MB_ERR(MB_ENOMEM, "out of memory");
  int rc = mb_path_join(m->path, sizeof m->path, run_dir, "metrics.jsonl");
  if (rc == MB_OK && resume_step >= 0)
    rc = truncate_after(m->path, resume_step, redo_final_eval);
  if (rc == MB_OK) {
    m->f = fopen(m->path, resume_step >= 0 ? "ab" : "wb");
    if (!m->f)
      rc = MB_ERR(MB_EIO, "%s: cannot open: %s", m->path, strerror(errno));
  }
  if (rc == MB_OK && tensorboard) {
    rc = mb_tfevents_open(run_dir, &m->tb, NULL, 0);
    if (rc == MB_OK && resume_step >= 0)
      rc = mb_tfevents_session_start(m->tb, resume_step + 1);
  }
  if (rc != MB_OK) {
    if (m->f)
      fclose(m->f);
    if (m->tb && mb_tfevents_close(m->tb) != MB_OK)
      mb_error_clear();
    free(m);
    return rc;
  }
  *out = m;
  return MB_OK;
}

int mb_metrics_log(mb_metrics *m, const char *kind, int64_t step, const char *const *keys, const double *values,
                   int n) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  json_t *j = json_object();
  json_object_set_new(j, "kind", json_string(kind));
  json_object_set_new(j, "step", json_integer(step));
  json_object_set_new(j, "time", json_real((double)tv.tv_sec + 1e-6 * (double)tv.tv_usec));
  for (int i = 0; i < n; i++)
    json_object_set_new(j, keys[i], isfinite(values[i]) ? json_real(values[i]) : json_null());
  char *line = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(13));
  json_decref(j);
  if (!line)
    return MB_ERR(MB_ENOMEM, "out of memory");
  int ok = fprintf(m->f, "%s\n", line) > 0 && fflush(m->f) == 0;
  free(line);
  if (!ok)
    return MB_ERR(MB_EIO, "%s: write failed: %s", m->path, strerror(errno));
  if (m->tb && n > 0) {
    char(*tags)[96] = malloc((size_t)n * sizeof *tags);
    const char **tp = malloc((size_t)n * sizeof *tp);
    if (!tags || !tp) {
      free(tags);
      free(tp);
      return MB_ERR(MB_ENOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
      snprintf(tags[i], sizeof tags[i], "%s/%s", kind, keys[i]);
      tp[i] = tags[i];
    }
    int rc = mb_tfevents_scalars(m->tb, step, tp, values, n);
    free(tags);
    free(tp);
    MB_TRY(rc);
  }
  return MB_OK;
}

int mb_metrics_close(mb_metrics *m) {
  if (!m)
    return MB_OK;
  int rc = MB_OK;
  if (m->f && fclose(m->f) != 0)
    rc = MB_ERR(MB_EIO, "%s: close failed", m->path);
  if (m->tb) {
    int r2 = mb_tfevents_close(m->tb);
    if (rc == MB_OK)
      rc = r2;
  }
  free(m);
  return rc;
}
