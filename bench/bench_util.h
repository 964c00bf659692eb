/* bench_util.h: what every benchmark program shares, CPU or GPU: a
 * checked-call macro, wall-clock and median helpers, the argument readers,
 * and a tiny JSON writer (one object of results). bench_cuda_util.h adds
 * the GPU's. */
#ifndef MB_BENCH_UTIL_H
#define MB_BENCH_UTIL_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/error.h"

#define BCHECK(expr)                                                                             \
  do {                                                                                           \
    int bc_rc_ = (expr);                                                                         \
    if (bc_rc_ != MB_OK) {                                                                       \
      fprintf(stderr, "bench: %s failed: %s [%s]\n", #expr, mb_error_message(), mb_error_where()); \
      exit(1);                                                                                   \
    }                                                                                            \
  } while (0)

static inline double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int bench_cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static inline double bench_median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, bench_cmp_d);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* --json PATH (default given); other arguments as name value pairs. */
static inline const char *bench_arg(int argc, char **argv, const char *flag, const char *dflt) {
  for (int i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], flag) == 0)
      return argv[i + 1];
  return dflt;
}

/* 1 if the flag (without a value) is among the arguments. */
static inline int bench_flag(int argc, char **argv, const char *flag) {
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], flag) == 0)
      return 1;
  return 0;
}

/* JSON: bench_json_open writes {"bench": name, "device": ..., "results": [
 * then rows are objects written with bench_json_row("...", ...), then close. */
typedef struct {
  FILE *f;
  int first;
} bench_json;

static inline void bench_json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\')
      fputc('\\', f);
    if ((unsigned char)*s >= 0x20)
      fputc(*s, f);
  }
  fputc('"', f);
}

static inline int bench_json_open(bench_json *j, const char *path, const char *bench, const char *device) {
  j->f = fopen(path, "w");
  j->first = 1;
  if (!j->f) {
    fprintf(stderr, "bench: cannot write %s\n", path);
    return -1;
  }
  fprintf(j->f, "{\"bench\": ");
  bench_json_str(j->f, bench);
  fprintf(j->f, ", \"device\": ");
  bench_json_str(j->f, device);
  fprintf(j->f, ", \"results\": [");
  return 0;
}

static inline void bench_json_row(bench_json *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void bench_json_row(bench_json *j, const char *fmt, ...) {
  if (!j->f)
    return;
  fprintf(j->f, "%s\n  ", j->first ? "" : ",");
  j->first = 0;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(j->f, fmt, ap);
  va_end(ap);
}

static inline void bench_json_close(bench_json *j) {
  if (!j->f)
    return;
  fprintf(j->f, "\n]}\n");
  fclose(j->f);
  j->f = NULL;
}

#endif
