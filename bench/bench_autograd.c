/* bench_autograd.c: what the autograd costs on the CPU, each number next to
 * a peer measured in the same run.
 *
 *  1. GEMM GFLOP/s through the matmul op (a compiled one-node program) vs
 *     cblas_sgemm called directly on the same buffers' shapes.
 *  2. Executor overhead per op: a chain of tiny ops (one element each)
 *     replayed from the tape, per node; and the same ops run eagerly
 *     (recorded and run one by one) per node.
 *  3. The small MLP of SEED-STUDY.md section 1 (Linear 256->512, ReLU,
 *     512->512, ReLU, 512->10; batch 128; 10 warm-up then 100 timed forward
 *     passes): eager (each pass recorded and run op by op) vs the AOT tape
 *     replayed; plus one training step (forward + backward + AdamW).
 *
 * Usage: bench_autograd [--json PATH]   (default bench_autograd.json)
 * Prints a table and writes JSON. Timings are medians of repeats. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd/autograd.h"
#include "kernels/cpu/cpu.h"

#define CHECK(expr)                                                                   \
  do {                                                                                \
    int rc_ = (expr);                                                                 \
    if (rc_ != MB_OK) {                                                               \
      fprintf(stderr, "bench: %s failed: %s\n", #expr, mb_error_message());           \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_d);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void fill(float *x, int64_t n, unsigned seed) {
  for (int64_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    x[i] = (float)((seed >> 8) * (1.0 / 16777216.0) - 0.5);
  }
}

static FILE *json;
static int json_first = 1;
static void json_row(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void json_row(const char *fmt, ...) {
  va_list ap;
  fprintf(json, "%s\n  ", json_first ? "" : ",");
  json_first = 0;
  va_start(ap, fmt);
  vfprintf(json, fmt, ap);
  va_end(ap);
}

/* ---- 1. GEMM ---- */

static void bench_gemm(int64_t batch, int64_t M, int64_t K, int64_t N, int tb) {
  mb_params *p;
  mb_graph *g;
  mb_exec *ex;
  CHECK(mb_params_new(MB_F32, &p));
  CHECK(mb_graph_new(p, &g));
  mb_shape as = batch > 1 ? mb_shape3(batch, M, K) : mb_shape2(M, K);
  mb_shape bs = batch > 1 ? (tb ? mb_shape3(batch, N, K) : mb_shape3(batch, K, N)) : (tb ? mb_shape2(N, K) : mb_shape2(K, N));
  mb_var a = mb_input(g, "a", MB_F32, as), b = mb_input(g, "b", MB_F32, bs);
  mb_var c = mb_matmul(g, a, b, 0, tb);
  CHECK(mb_mark_output(g, c));
  mb_compile_opts o = {0};
  CHECK(mb_graph_compile(g, &o));
  CHECK(mb_exec_new(g, mb_cpu_backend(), &ex));
  float *A = malloc((size_t)(batch * M * K) * sizeof *A), *B = malloc((size_t)(batch * K * N) * sizeof *B);
  float *C = malloc((size_t)(batch * M * N) * sizeof *C);
  fill(A, batch * M * K, 1), fill(B, batch * K * N, 2);
  CHECK(mb_exec_set_input(ex, a, A));
  CHECK(mb_exec_set_input(ex, b, B));
  double flops = 2.0 * (double)batch * (double)M * (double)K * (double)N;
  int reps = (int)fmax(3, fmin(50, 2e9 / flops));
  double t_op[64], t_blas[64];
  for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
    double t0 = now();
    CHECK(mb_exec_forward(ex));
    double t1 = now();
    for (int64_t i = 0; i < batch; i++)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K, 1.0f,
                  A + i * M * K, (int)K, B + i * K * N, tb ? (int)K : (int)N, 0.0f, C + i * M * N, (int)N);
    double t2 = now();
    if (r >= 0)
      t_op[r] = t1 - t0, t_blas[r] = t2 - t1;
  }
  double op = median(t_op, reps), blas = median(t_blas, reps);
  printf("  %4lld x [%5lld x %5lld] @ [%5lld x %5lld]%s  op %7.2f GFLOP/s  cblas %7.2f GFLOP/s  op/cblas %.3f\n",
         (long long)batch, (long long)M, (long long)K, (long long)K, (long long)N, tb ? "^T" : "  ", flops / op / 1e9,
         flops / blas / 1e9, blas / op);
  json_row("{\"bench\": \"gemm\", \"batch\": %lld, \"M\": %lld, \"K\": %lld, \"N\": %lld, \"trans_b\": %d, "
           "\"op_gflops\": %.3f, \"cblas_gflops\": %.3f, \"op_over_cblas\": %.4f}",
           (long long)batch, (long long)M, (long long)K, (long long)N, tb, flops / op / 1e9, flops / blas / 1e9,
           blas / op);
  free(A), free(B), free(C);
  mb_exec_free(ex);
  mb_graph_free(g);
  mb_params_free(p);
}

/* ---- 2. executor overhead ---- */

static void bench_overhead(int nops) {
  mb_params *p;
  mb_graph *g;
  mb_exec *ex;
  CHECK(mb_params_new(MB_F32, &p));
  CHECK(mb_graph_new(p, &g));
  mb_var x = mb_input(g, "x", MB_F32, mb_shape1(1)), y = x;
  for (int i = 0; i < nops; i++)
    y = (i % 2) ? mb_affine(g, y, 0.5, 1.0) : mb_add(g, y, x);
  CHECK(mb_mark_output(g, y));
  mb_compile_opts o = {0};
  CHECK(mb_graph_compile(g, &o));
  CHECK(mb_exec_new(g, mb_cpu_backend(), &ex));
  float one = 1.0f, out;
  CHECK(mb_exec_set_input(ex, x, &one));
  double t_replay[21];
  for (int r = -1; r < 21; r++) {
    double t0 = now();
    CHECK(mb_exec_forward(ex));
    if (r >= 0)
      t_replay[r] = now() - t0;
  }
  CHECK(mb_exec_get(ex, y, &out));
  /* The same chain as plain C (what the ops compute, no executor). */
  double t_c[21];
  volatile float sink = 0;
  for (int r = 0; r < 21; r++) {
    double t0 = now();
    float v = one;
    for (int i = 0; i < nops; i++)
      v = (i % 2) ? 0.5f * v + 1.0f : v + one;
    sink = v;
    t_c[r] = now() - t0;
  }
  (void)sink;
  mb_exec_free(ex);
  mb_graph_free(g);

  /* Eager: record and run each op as it is built. */
  double t_eager[7];
  for (int r = 0; r < 7; r++) {
    double t0 = now();
    CHECK(mb_graph_new(p, &g));
    CHECK(mb_graph_set_eager(g, mb_cpu_backend()));
    x = mb_input(g, "x", MB_F32, mb_shape1(1));
    CHECK(mb_graph_feed(g, x, &one));
    y = x;
    for (int i = 0; i < nops; i++)
      y = (i % 2) ? mb_affine(g, y, 0.5, 1.0) : mb_add(g, y, x);
    CHECK(mb_graph_status(g));
    mb_graph_free(g);
    t_eager[r] = now() - t0;
  }
  double rep = median(t_replay, 21) / nops * 1e9, c = median(t_c, 21) / nops * 1e9, eag = median(t_eager, 7) / nops * 1e9;
  printf("  chain of %d one-element ops: tape replay %.1f ns/op, eager %.1f ns/op, plain C loop %.2f ns/op\n", nops, rep,
         eag, c);
  json_row("{\"bench\": \"executor_overhead\", \"nops\": %d, \"replay_ns_per_op\": %.2f, \"eager_ns_per_op\": %.2f, "
           "\"plain_c_ns_per_op\": %.3f}",
           nops, rep, eag, c);
  mb_params_free(p);
}

/* ---- 3. the study's small MLP ---- */

static mb_var mlp_forward(mb_graph *g, mb_var x) {
  mb_var h = mb_relu(g, mb_linear(g, x, mb_param(g, "fc1.weight", mb_shape2(512, 256)), mb_param(g, "fc1.bias", mb_shape1(512))));
  h = mb_relu(g, mb_linear(g, h, mb_param(g, "fc2.weight", mb_shape2(512, 512)), mb_param(g, "fc2.bias", mb_shape1(512))));
  return mb_linear(g, h, mb_param(g, "fc3.weight", mb_shape2(10, 512)), mb_param(g, "fc3.bias", mb_shape1(10)));
}

static void bench_mlp(void) {
  const int B = 128, warm = 10, timed = 100;
  mb_params *p;
  CHECK(mb_params_new(MB_F32, &p));
  float *X = malloc((size_t)B * 256 * sizeof *X), out_replay[1280], out_eager[1280];
  fill(X, B * 256, 7);

  /* replay: compile once, run 100 forwards */
  mb_graph *g;
  mb_exec *ex;
  CHECK(mb_graph_new(p, &g));
  mb_var x = mb_input(g, "x", MB_F32, mb_shape2(B, 256));
  mb_var y = mlp_forward(g, x);
  CHECK(mb_mark_output(g, y));
  mb_compile_opts o = {0};
  CHECK(mb_graph_compile(g, &o));
  CHECK(mb_exec_new(g, mb_cpu_backend(), &ex));
  float *params = mb_params_data(p);
  fill(params, mb_params_total(p), 3);
  for (int i = 0; i < mb_params_total(p); i++)
    params[i] *= 0.1f;
  CHECK(mb_exec_set_input(ex, x, X));
  double rep_runs[5], eag_runs[5];
  for (int run = 0; run < 5; run++) {
    for (int i = 0; i < warm; i++)
      CHECK(mb_exec_forward(ex));
    double t0 = now();
    for (int i = 0; i < timed; i++)
      CHECK(mb_exec_forward(ex));
    rep_runs[run] = now() - t0;
  }
  CHECK(mb_exec_get(ex, y, out_replay));
  mb_exec_set_profiling(ex, 1);
  for (int i = 0; i < timed; i++)
    CHECK(mb_exec_forward(ex));
  printf("  per-op profile of 100 replayed forwards:\n");
  mb_exec_profile_print(ex, stdout);
  mb_exec_free(ex);
  mb_graph_free(g);

  /* eager: every pass records and runs op by op */
  for (int run = 0; run < 5; run++) {
    double t0 = 0;
    for (int i = 0; i < warm + timed; i++) {
      if (i == warm)
        t0 = now();
      CHECK(mb_graph_new(p, &g));
      CHECK(mb_graph_set_eager(g, mb_cpu_backend()));
      x = mb_input(g, "x", MB_F32, mb_shape2(B, 256));
      CHECK(mb_graph_feed(g, x, X));
      y = mlp_forward(g, x);
      CHECK(mb_graph_status(g));
      if (i == warm + timed - 1)
        memcpy(out_eager, mb_graph_eager_data(g, y), sizeof out_eager);
      mb_graph_free(g);
    }
    eag_runs[run] = now() - t0;
  }
  double rep = median(rep_runs, 5), eag = median(eag_runs, 5);
  int same = memcmp(out_replay, out_eager, sizeof out_eager) == 0;
  printf("  small MLP, batch 128, 100 forward passes: eager %.4f s, tape replay %.4f s, speed-up %.2fx (outputs %s)\n",
         eag, rep, eag / rep, same ? "identical" : "DIFFER");
  json_row("{\"bench\": \"mlp_forward\", \"batch\": 128, \"passes\": 100, \"eager_s\": %.5f, \"replay_s\": %.5f, "
           "\"speedup\": %.3f, \"outputs_identical\": %s}",
           eag, rep, eag / rep, same ? "true" : "false");

  /* one training step: forward + backward + AdamW */
  CHECK(mb_graph_new(p, &g));
  x = mb_input(g, "x", MB_F32, mb_shape2(B, 256));
  mb_var labels = mb_input(g, "labels", MB_I32, mb_shape1(B));
  mb_var loss = mb_cross_entropy(g, mlp_forward(g, x), labels);
  CHECK(mb_set_loss(g, loss));
  mb_compile_opts t = {.train = 1};
  CHECK(mb_graph_compile(g, &t));
  CHECK(mb_exec_new(g, mb_cpu_backend(), &ex));
  int32_t lab[128];
  for (int i = 0; i < B; i++)
    lab[i] = i % 10;
  CHECK(mb_exec_set_input(ex, x, X));
  CHECK(mb_exec_set_input(ex, labels, lab));
  mb_optimizer *opt;
  mb_adamw_cfg ac = mb_adamw_defaults();
  CHECK(mb_optimizer_adamw(p, &ac, &opt));
  double steps[30];
  float l0 = 0, l1 = 0;
  for (int i = -3; i < 30; i++) {
    double t0 = now();
    CHECK(mb_exec_forward(ex));
    CHECK(mb_exec_backward(ex));
    CHECK(mb_optimizer_step(opt, -1, 1.0));
    if (i >= 0)
      steps[i] = now() - t0;
    if (i == -3)
      CHECK(mb_exec_get(ex, loss, &l0));
  }
  CHECK(mb_exec_get(ex, loss, &l1));
  mb_plan_stats st = mb_graph_plan_stats(g);
  double step = median(steps, 30);
  printf("  small MLP training step (fwd+bwd+AdamW): %.3f ms; loss %.4f -> %.4f over 33 steps; arena %.1f KiB\n",
         step * 1e3, l0, l1, st.arena_bytes / 1024.0);
  json_row("{\"bench\": \"mlp_train_step\", \"batch\": 128, \"step_ms\": %.4f, \"arena_bytes\": %zu}", step * 1e3,
           st.arena_bytes);
  mb_optimizer_free(opt);
  mb_exec_free(ex);
  mb_graph_free(g);
  mb_params_free(p);
  free(X);
}

int main(int argc, char **argv) {
  const char *path = "bench_autograd.json";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0 && i + 1 < argc)
      path = argv[++i];
    else {
      fprintf(stderr, "usage: %s [--json PATH]\n", argv[0]);
      return 2;
    }
  }
  json = fopen(path, "w");
  if (!json) {
    fprintf(stderr, "bench: cannot write %s\n", path);
    return 1;
  }
  mb_backend *be = mb_cpu_backend();
  (void)be;
  fprintf(json, "{\"threads\": %d, \"results\": [", omp_get_max_threads());
  printf("mambert autograd benchmark (CPU, %d OpenMP threads)\n", omp_get_max_threads());
  printf("1. GEMM through the matmul op vs cblas_sgemm directly\n");
  bench_gemm(1, 512, 768, 768, 1);
  bench_gemm(1, 512, 768, 3072, 1);
  bench_gemm(1, 512, 3072, 768, 1);
  bench_gemm(1, 128, 256, 512, 1);
  bench_gemm(48, 128, 64, 128, 1);
  printf("2. executor overhead\n");
  bench_overhead(1000);
  printf("3. SEED-STUDY small MLP\n");
  bench_mlp();
  fprintf(json, "\n]}\n");
  fclose(json);
  printf("wrote %s\n", path);
  return 0;
}
