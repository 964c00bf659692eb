/* dist_check.c: the checker of the multi-rank trainer tests (no Python).
 * Three modes:
 *   dist_check weights A.safetensors B.safetensors RTOL [SKIP...]
 *     every tensor of A is in B with the same shape; per tensor the error is
 *     max|a - b| / max(max|a|, max|b|) (relative to the tensor's scale, so
 *     entries near zero do not blow it up); prints the worst tensor.
 *     Tensors whose name contains a SKIP string are judged absolutely instead,
 *     max|a - b| <= NOISE_ATOL: parameters whose gradient is zero by the
 *     model's maths hold nothing but rounding noise, which no relative
 *     bound fits (see train_equivalence_test.sh).
 *   dist_check metrics A.jsonl B.jsonl RTOL
 *     the "train" lines of both metrics files have the same steps and epoch
 *     fractions, and each
 *     step's loss agrees: |a - b| / max(|a|, |b|).
 * Exit 0 when every error is <= RTOL, 1 otherwise, 2 on bad input; the
 * last line printed is "max_rel_diff <value>".
 *   dist_check trace TIMELINE.json MIN_ALLREDUCES
 *     a Chrome trace written by `mambert train` with log.timeline: valid
 *     JSON, a traceEvents array of well-formed events, at least one
 *     backward op, at least MIN_ALLREDUCES all-reduce slices, and at least
 *     one of them starting before the backward's last op ends (overlap).
 *     Exit 0 when so, 1 otherwise. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"
#include "runtime/safetensors.h"

#define NOISE_ATOL 1e-6 /* skipped tensors: far below any trained weight, far above rounding noise */

static int skipped(const char *name, char **skip, int nskip) {
  for (int i = 0; i < nskip; i++)
    if (strstr(name, skip[i]))
      return 1;
  return 0;
}

static int compare_weights(const char *pa, const char *pb, double rtol, char **skip, int nskip) {
  mb_safetensors *a = NULL, *b = NULL;
  if (mb_safetensors_open(pa, &a) != MB_OK || mb_safetensors_open(pb, &b) != MB_OK) {
    fprintf(stderr, "dist_check: %s\n", mb_error_message());
    mb_safetensors_close(a);
    return 2;
  }
  int status = 0;
  double worst = 0;
  const char *worst_name = "";
  size_t n = mb_safetensors_count(a);
  if (n != mb_safetensors_count(b)) {
    fprintf(stderr, "dist_check: %s has %zu tensors, %s has %zu\n", pa, n, pb, mb_safetensors_count(b));
    status = 2;
  }
  for (size_t i = 0; i < n && status != 2; i++) {
    const mb_st_entry *ea = mb_safetensors_entry(a, i);
    const mb_st_entry *eb = mb_safetensors_find(b, ea->name);
    if (!eb || eb->numel != ea->numel || ea->dtype != MB_F32 || eb->dtype != MB_F32) {
      fprintf(stderr, "dist_check: tensor '%s': missing in %s, or not the same number of f32 elements\n", ea->name, pb);
      status = 2;
      break;
    }
    const float *x = ea->data, *y = eb->data;
    double diff = 0, scale = 0;
    for (int64_t k = 0; k < ea->numel; k++) {
      double d = fabs((double)x[k] - (double)y[k]);
      if (!(d <= diff)) /* NaN counts as the worst */
        diff = isnan(d) ? INFINITY : d;
      if (fabs((double)x[k]) > scale)
        scale = fabs((double)x[k]);
      if (fabs((double)y[k]) > scale)
        scale = fabs((double)y[k]);
    }
    double rel = scale > 0 ? diff / scale : diff;
    if (skipped(ea->name, skip, nskip)) {
      int ok = diff <= NOISE_ATOL;
      printf("absolute: %s: max abs diff %.3e (bound %.0e)%s\n", ea->name, diff, NOISE_ATOL, ok ? "" : " FAILED");
      if (!ok)
        status = 1;
      continue;
    }
    if (rel > worst || (i == 0 && rel == 0)) {
      worst = rel;
      worst_name = ea->name;
    }
  }
  if (status != 2) {
    printf("weights: %zu tensors, worst %s: max_rel_diff %.3e (tolerance %.1e)\n", n, worst_name, worst, rtol);
    status = worst <= rtol ? status : 1;
  }
  mb_safetensors_close(a);
  mb_safetensors_close(b);
  printf("max_rel_diff %.3e\n", worst);
  return status;
}

/* The train lines of a metrics file: steps[i], loss[i], epoch[i]; returns the count or -1. */
static int read_losses(const char *path, long long *steps, double *loss, double *epoch, int cap) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "dist_check: cannot open %s\n", path);
    return -1;
  }
  char line[8192];
  int n = 0, lineno = 0;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    json_error_t err;
    json_t *j = json_loads(line, 0, &err);
    if (!j) {
      fprintf(stderr, "dist_check: %s:%d: not JSON (%s)\n", path, lineno, err.text);
      fclose(f);
      return -1;
    }
    const char *kind = json_string_value(json_object_get(j, "kind"));
    json_t *l = json_object_get(j, "loss");
    if (kind && strcmp(kind, "train") == 0 && json_is_number(l) && n < cap) {
      steps[n] = (long long)json_integer_value(json_object_get(j, "step"));
      loss[n] = json_number_value(l);
      epoch[n] = json_number_value(json_object_get(j, "epoch"));
      n++;
    }
    json_decref(j);
  }
  fclose(f);
  return n;
}

static int compare_metrics(const char *pa, const char *pb, double rtol) {
  enum { CAP = 4096 };
  static long long sa[CAP], sb[CAP];
  static double la[CAP], lb[CAP], ea[CAP], eb[CAP];
  int na = read_losses(pa, sa, la, ea, CAP), nb = read_losses(pb, sb, lb, eb, CAP);
  if (na < 0 || nb < 0)
    return 2;
  if (na == 0 || na != nb) {
    fprintf(stderr, "dist_check: %s has %d train losses, %s has %d\n", pa, na, pb, nb);
    return 2;
  }
  double worst = 0;
  long long worst_step = sa[0];
  for (int i = 0; i < na; i++) {
    if (sa[i] != sb[i]) {
      fprintf(stderr, "dist_check: line %d: step %lld in %s, step %lld in %s\n", i + 1, sa[i], pa, sb[i], pb);
      return 2;
    }
    /* the data position: the same fraction of the epoch however many ranks */
    if (fabs(ea[i] - eb[i]) > 1e-9) {
      fprintf(stderr, "dist_check: step %lld: epoch %.10g in %s, %.10g in %s\n", sa[i], ea[i], pa, eb[i], pb);
      return 2;
    }
    double scale = fmax(fabs(la[i]), fabs(lb[i]));
    double d = fabs(la[i] - lb[i]);
    double rel = isnan(d) ? INFINITY : scale > 0 ? d / scale : d;
    if (rel > worst) {
      worst = rel;
      worst_step = sa[i];
    }
  }
  printf("losses: %d steps, worst at step %lld: max_rel_diff %.3e (tolerance %.1e)\n", na, worst_step, worst, rtol);
  printf("max_rel_diff %.3e\n", worst);
  return worst <= rtol ? 0 : 1;
}

static int check_trace(const char *path, int min_allreduces) {
  json_error_t err;
  json_t *root = json_load_file(path, 0, &err);
  if (!root) {
    fprintf(stderr, "dist_check: %s: not JSON: line %d: %s\n", path, err.line, err.text);
    return 1;
  }
  json_t *events = json_object_get(root, "traceEvents");
  int status = 0;
  if (!json_is_array(events)) {
    fprintf(stderr, "dist_check: %s: no traceEvents array\n", path);
    status = 1;
  }
  double bwd_end = -1, first_start = 1e300;
  int backward = 0, allreduces = 0, before = 0;
  for (size_t i = 0; status == 0 && i < json_array_size(events); i++) {
    json_t *e = json_array_get(events, i);
    const char *ph = json_string_value(json_object_get(e, "ph"));
    const char *cat = json_string_value(json_object_get(e, "cat"));
    json_t *ts = json_object_get(e, "ts"), *dur = json_object_get(e, "dur");
    const char *name = json_string_value(json_object_get(e, "name"));
    const int meta = ph && strcmp(ph, "M") == 0; /* process and thread names */
    if (!ph || !name || (!meta && (!cat || !json_is_number(ts))) || (strcmp(ph, "X") == 0 && !json_is_number(dur))) {
      fprintf(stderr, "dist_check: %s: event %zu lacks ph, name, cat, ts (or dur for a slice)\n", path, i);
      status = 1;
      break;
    }
    if (strcmp(ph, "X") != 0)
      continue;
    double t0 = json_number_value(ts), t1 = t0 + json_number_value(dur);
    if (strcmp(cat, "backward") == 0) {
      backward++;
      bwd_end = t1 > bwd_end ? t1 : bwd_end;
    }
  }
  for (size_t i = 0; status == 0 && i < json_array_size(events); i++) {
    json_t *e = json_array_get(events, i);
    const char *ph = json_string_value(json_object_get(e, "ph"));
    const char *cat = json_string_value(json_object_get(e, "cat"));
    if (strcmp(ph, "X") != 0 || !cat || strcmp(cat, "allreduce") != 0)
      continue;
    double t0 = json_number_value(json_object_get(e, "ts"));
    allreduces++;
    before += t0 < bwd_end;
    first_start = t0 < first_start ? t0 : first_start;
  }
  if (status == 0) {
    printf("trace %s: %d backward ops ending at %.1f us, %d all-reduces (first at %.1f us), %d started before the "
           "backward ended\n",
           path, backward, bwd_end, allreduces, first_start, before);
    if (backward == 0 || allreduces < min_allreduces || before < 1) {
      printf("expected backward ops, at least %d all-reduces, and one starting before the backward ends\n",
             min_allreduces);
      status = 1;
    }
  }
  json_decref(root);
  return status;
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "trace") == 0)
    return check_trace(argv[2], atoi(argv[3]));
  if (argc < 5 || (argc > 5 && strcmp(argv[1], "weights") != 0) ||
      (strcmp(argv[1], "weights") != 0 && strcmp(argv[1], "metrics") != 0)) {
    fprintf(stderr, "usage: dist_check weights A B RTOL [SKIP...] | metrics A B RTOL | trace FILE MIN_ALLREDUCES\n");
    return 2;
  }
  double rtol = strtod(argv[4], NULL);
  return strcmp(argv[1], "weights") == 0 ? compare_weights(argv[2], argv[3], rtol, argv + 5, argc - 5)
                                         : compare_metrics(argv[2], argv[3], rtol);
}
