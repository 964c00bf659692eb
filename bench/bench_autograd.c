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
 *  4. Planned memory (arena vs the sum of all buffers, activations kept
 *     into backward) and compile time of BERT-base- and Mamba-130m-shaped
 *     training programs, with and without per-layer recompute.
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

#include "kernels/cpu/blas_env.h"
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

/* ---- 4. planned memory of real-sized training programs ---- */

/* BERT-base-shaped classifier (12 layers, hidden 768, 12 heads, FF 3072,
 * vocab 30522): fused attention with a key mask, or (naive) the O(L^2)
 * attention written with batched matmuls and softmax. */
static void build_bert_base(mb_graph *g, int64_t B, int64_t L, int naive) {
  const int64_t H = 768, NH = 12, HD = 64, FF = 3072, V = 30522, NL = 12;
  mb_var ids = mb_input(g, "input_ids", MB_I32, mb_shape2(B, L));
  mb_var mask = mb_input(g, "attention_mask", MB_I32, mb_shape2(B, L));
  mb_var bias = mb_input(g, "attn_bias", MB_F32, mb_shape4(B, 1, 1, L));
  mb_var labels = mb_input(g, "labels", MB_I32, mb_shape1(B));
  mb_var x = mb_add(g, mb_embedding(g, ids, mb_param(g, "word", mb_shape2(V, H))), mb_param(g, "pos", mb_shape2(L, H)));
  x = mb_layernorm(g, x, mb_param(g, "eln.w", mb_shape1(H)), mb_param(g, "eln.b", mb_shape1(H)), 1e-12);
  int perm[4] = {0, 2, 1, 3};
  for (int l = 0; l < NL; l++) {
    char n[64], ln[32];
#define P(name, shape) (snprintf(n, sizeof n, "l%d.%s", l, name), mb_param(g, n, shape))
    snprintf(ln, sizeof ln, "layer.%d", l);
    mb_graph_layer_begin(g, ln);
    mb_shape heads = mb_shape4(B, L, NH, HD);
    mb_var q = mb_reshape(g, mb_linear(g, x, P("q.w", mb_shape2(H, H)), P("q.b", mb_shape1(H))), heads);
    mb_var k = mb_reshape(g, mb_linear(g, x, P("k.w", mb_shape2(H, H)), P("k.b", mb_shape1(H))), heads);
    mb_var v = mb_reshape(g, mb_linear(g, x, P("v.w", mb_shape2(H, H)), P("v.b", mb_shape1(H))), heads);
    mb_var ctx;
    if (naive) {
      q = mb_permute(g, q, 4, perm), k = mb_permute(g, k, 4, perm), v = mb_permute(g, v, 4, perm);
      mb_var sc = mb_add(g, mb_scale(g, mb_matmul(g, q, k, 0, 1), 0.125), bias);
      ctx = mb_permute(g, mb_matmul(g, mb_softmax(g, sc), v, 0, 0), 4, perm);
    } else {
      ctx = mb_attention(g, q, k, v, mask);
    }
    ctx = mb_reshape(g, ctx, mb_shape3(B, L, H));
    mb_var a = mb_add(g, mb_linear(g, ctx, P("o.w", mb_shape2(H, H)), P("o.b", mb_shape1(H))), x);
    a = mb_layernorm(g, a, P("ln1.w", mb_shape1(H)), P("ln1.b", mb_shape1(H)), 1e-12);
    mb_var f = mb_linear(g, mb_gelu(g, mb_linear(g, a, P("f1.w", mb_shape2(FF, H)), P("f1.b", mb_shape1(FF)))),
                         P("f2.w", mb_shape2(H, FF)), P("f2.b", mb_shape1(H)));
    x = mb_layernorm(g, mb_add(g, f, a), P("ln2.w", mb_shape1(H)), P("ln2.b", mb_shape1(H)), 1e-12);
    mb_graph_layer_end(g);
#undef P
  }
  mb_var pooled = mb_tanh(g, mb_linear(g, mb_select(g, x, 1, 0), mb_param(g, "pw", mb_shape2(H, H)), mb_param(g, "pb", mb_shape1(H))));
  mb_set_loss(g, mb_cross_entropy(g, mb_linear(g, pooled, mb_param(g, "cw", mb_shape2(2, H)), mb_param(g, "cb", mb_shape1(2))), labels));
}

/* Mamba-130m-shaped classifier (24 blocks, d_model 768, d_inner 1536,
 * d_state 16, dt_rank 48, conv 4, vocab 50280). */
static void build_mamba_130m(mb_graph *g, int64_t B, int64_t L) {
  const int64_t Dm = 768, E = 1536, N = 16, R = 48, W = 4, V = 50280, NL = 24;
  mb_var ids = mb_input(g, "input_ids", MB_I32, mb_shape2(B, L));
  mb_var labels = mb_input(g, "labels", MB_I32, mb_shape1(B));
  mb_var r = mb_embedding(g, ids, mb_param(g, "embedding", mb_shape2(V, Dm)));
  for (int l = 0; l < NL; l++) {
    char n[64], ln[32];
#define P(name, shape) (snprintf(n, sizeof n, "layers.%d.%s", l, name), mb_param(g, n, shape))
    snprintf(ln, sizeof ln, "layers.%d", l);
    mb_graph_layer_begin(g, ln);
    mb_var h = mb_rmsnorm(g, r, P("norm", mb_shape1(Dm)), 1e-5);
    mb_var xz = mb_linear(g, h, P("in_proj", mb_shape2(2 * E, Dm)), MB_VAR_NONE);
    mb_var x = mb_conv1d(g, mb_slice(g, xz, -1, 0, E), P("conv.w", mb_shape2(E, W)), P("conv.b", mb_shape1(E)), 1);
    mb_var z = mb_slice(g, xz, -1, E, E);
    mb_var dbl = mb_linear(g, x, P("x_proj", mb_shape2(R + 2 * N, E)), MB_VAR_NONE);
    mb_var delta = mb_linear(g, mb_slice(g, dbl, -1, 0, R), P("dt_proj.w", mb_shape2(E, R)), MB_VAR_NONE);
    mb_var y = mb_selective_scan(g, x, delta, P("A_log", mb_shape2(E, N)), mb_slice(g, dbl, -1, R, N),
                                 mb_slice(g, dbl, -1, R + N, N), P("D", mb_shape1(E)), z, P("dt_proj.b", mb_shape1(E)));
    r = mb_add(g, r, mb_linear(g, y, P("out_proj", mb_shape2(Dm, E)), MB_VAR_NONE));
    mb_graph_layer_end(g);
#undef P
  }
  mb_var out = mb_rmsnorm(g, r, mb_param(g, "norm_f", mb_shape1(Dm)), 1e-5);
  mb_set_loss(g, mb_cross_entropy(g, mb_linear(g, mb_mean_pool(g, out, MB_VAR_NONE), mb_param(g, "head.w", mb_shape2(2, Dm)),
                                                mb_param(g, "head.b", mb_shape1(2))), labels));
}

static void bench_plan(const char *name, int model, int64_t B, int64_t L) {
  for (int rec = 0; rec < 2; rec++) {
    mb_params *p;
    mb_graph *g;
    CHECK(mb_params_new(MB_F32, &p));
    CHECK(mb_graph_new(p, &g));
    double t0 = now();
    if (model == 2)
      build_mamba_130m(g, B, L);
    else
      build_bert_base(g, B, L, model == 1);
    mb_compile_opts o = {.train = 1, .recompute = rec};
    CHECK(mb_graph_compile(g, &o));
    double ms = (now() - t0) * 1e3;
    mb_plan_stats st = mb_graph_plan_stats(g);
    printf("  %-26s B%lld L%-5lld %-10s arena %8.1f MiB  sum of buffers %8.1f MiB  activations %8.1f MiB  "
           "nodes %4d+%4d  build+compile %6.1f ms  params %.1fM\n",
           name, (long long)B, (long long)L, rec ? "recompute" : "keep", st.arena_bytes / 1048576.0,
           st.sum_bytes / 1048576.0, st.activation_bytes / 1048576.0, st.n_nodes_fwd, st.n_nodes_bwd, ms,
           mb_params_total(p) / 1e6);
    json_row("{\"bench\": \"plan\", \"model\": \"%s\", \"batch\": %lld, \"seq\": %lld, \"recompute\": %d, "
             "\"arena_bytes\": %zu, \"sum_bytes\": %zu, \"activation_bytes\": %zu, \"compile_ms\": %.2f}",
             name, (long long)B, (long long)L, rec, st.arena_bytes, st.sum_bytes, st.activation_bytes, ms);
    mb_graph_free(g);
    mb_params_free(p);
  }
}

int main(int argc, char **argv) {
  mb_blas_env_fix(argc, argv);
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
  printf("4. planned training memory (f32; fused-kernel workspaces counted only when their kernels are built in)\n");
  bench_plan("bert-base fused attention", 0, 8, 128);
  bench_plan("bert-base naive attention", 1, 8, 128);
  bench_plan("bert-base fused attention", 0, 8, 512);
  bench_plan("bert-base naive attention", 1, 8, 512);
  bench_plan("mamba-130m", 2, 8, 512);
  fprintf(json, "\n]}\n");
  fclose(json);
  printf("wrote %s\n", path);
  return 0;
}
