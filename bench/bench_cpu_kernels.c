/* bench_cpu_kernels.c: the fused CPU kernels against their naive peers, in
 * float32, in one run on one machine.
 *
 *  attention:  fused tiled FlashAttention-style forward/backward vs the naive
 *              version that materialises P = softmax(QK^T) (L x L per head)
 *              and keeps it for the backward. GFLOP/s use the same nominal
 *              count for both: forward 4*L^2*Dh per head (QK^T and PV),
 *              backward 8*L^2*Dh (dV, dP, dQ, dK); the fused backward's
 *              recompute of QK^T is not counted.
 *  scan:       chunked selective scan (D=1536, N=16) vs the per-step
 *              reference that keeps all L states, tokens/s forward and
 *              forward+backward.
 *  conv1d:     depthwise causal conv (W=4, SiLU) GB/s, vs the naive loop
 *              and vs memcpy of the same bytes (the streaming floor).
 * "extra" memory is the peak of tracked host memory (runtime/alloc.h) during
 * the call above what was held before it: for a forward, what it saves for
 * the backward (lse or P; chunk states or all states) plus its scratch; for
 * the attention backward, its scratch; for the scan forward+backward, both.
 *
 * Usage: bench_cpu_kernels [--json PATH] [--quick] [--reps N] [--only attn|scan|conv]
 * Times are the best of N runs after one warm-up.
 */
#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cpu/blas_env.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/conv1d.h"
#include "kernels/cpu/selective_scan.h"
#include "mambert_build_config.h"
#include "runtime/alloc.h"
#include "tests/cpukern/cpukern_ref.h"

static int reps = 3;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *xmalloc(size_t n) {
  void *p = mb_host_malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "bench: out of memory (%zu bytes)\n", n);
    exit(1);
  }
  return p;
}

static float *randn(size_t n, double scale, double shift, uint64_t seed) {
  float *p = xmalloc(n * sizeof(float));
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; i++) { /* sum of 4 uniforms: cheap, roughly normal */
    double acc = 0;
    for (int k = 0; k < 4; k++) {
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      acc += (double)(s >> 11) * 0x1.0p-53;
    }
    p[i] = (float)(shift + scale * (acc - 2) * 1.7320508);
  }
  return p;
}

static void check(int rc, const char *what) {
  if (rc != MB_OK) {
    fprintf(stderr, "bench: %s failed: %s\n", what, mb_error_message());
    exit(1);
  }
}

/* A timed call: fn(ctx) once to warm up, then the best of `reps`. */
typedef void (*bench_fn)(void *ctx);
static double best_seconds(bench_fn fn, void *ctx) {
  fn(ctx);
  double best = INFINITY;
  for (int r = 0; r < reps; r++) {
    const double t0 = now();
    fn(ctx);
    const double t = now() - t0;
    if (t < best)
      best = t;
  }
  return best;
}

/* Peak tracked bytes above the current level while fn runs once. */
static size_t extra_bytes(bench_fn fn, void *ctx) {
  mb_host_mem_reset_peak();
  const size_t before = mb_host_mem_stats().current;
  fn(ctx);
  return mb_host_mem_stats().peak - before;
}

static double max_reldiff(const float *a, const float *b, size_t n) {
  double md = 0, mb = 0;
  for (size_t i = 0; i < n; i++) {
    md = fmax(md, fabs((double)a[i] - b[i]));
    mb = fmax(mb, fabs((double)b[i]));
  }
  return mb > 0 ? md / mb : md;
}

/* ---- attention ------------------------------------------------------------ */

typedef struct {
  mb_attn_desc d;
  size_t n, tokens, pn;
  float *q, *k, *v, *dout, *o, *lse, *dq, *dk, *dv; /* fused */
  float *ro, *P, *rdq, *rdk, *rdv;                  /* naive */
} attn_bench;

/* The forward allocates what it saves for the backward (lse / P), so that
 * it counts in its extra memory; the previous one is released first. */
static void attn_fused_fwd(void *p) {
  attn_bench *a = p;
  mb_host_free(a->lse);
  a->lse = xmalloc(a->tokens * a->d.heads * sizeof(float));
  check(mb_cpu_attn_fwd_f32(&a->d, a->q, a->k, a->v, a->o, a->lse, NULL, 0), "fused attention forward");
}
static void attn_fused_bwd(void *p) {
  attn_bench *a = p;
  check(mb_cpu_attn_bwd_f32(&a->d, a->q, a->k, a->v, a->o, a->lse, a->dout, a->dq, a->dk, a->dv, NULL, 0),
        "fused attention backward");
}
static void attn_naive_fwd(void *p) {
  attn_bench *a = p;
  mb_host_free(a->P);
  a->P = xmalloc(a->pn * sizeof(float));
  check(ref_attn_fwd_f32(&a->d, a->q, a->k, a->v, a->ro, a->P), "naive attention forward");
}
static void attn_naive_bwd(void *p) {
  attn_bench *a = p;
  check(ref_attn_bwd_f32(&a->d, a->q, a->k, a->v, a->P, a->dout, a->rdq, a->rdk, a->rdv), "naive attention backward");
}

/* Free what a forward saved for the backward, so that the next forward's
 * memory measurement counts it. */
static attn_bench *release_saved(attn_bench *a) {
  mb_host_free(a->lse);
  mb_host_free(a->P);
  a->lse = a->P = NULL;
  return a;
}

static json_t *bench_attention(int L, int quick) {
  const int H = 4, Dh = 64;
  /* about 0.5 GFLOP of forward per call; at least one row */
  int B = (int)lround(0.5e9 / (4.0 * L * L * Dh * H));
  if (B < 1)
    B = 1;
  if (quick && B > 4)
    B = 4;
  attn_bench a = {.d = {.batch = B, .seqlen = L, .heads = H, .head_dim = Dh}};
  a.tokens = (size_t)B * L;
  a.n = a.tokens * H * Dh;
  a.pn = ref_attn_P_numel(&a.d);
  a.q = randn(a.n, 1, 0, 1);
  a.k = randn(a.n, 1, 0, 2);
  a.v = randn(a.n, 1, 0, 3);
  a.dout = randn(a.n, 1, 0, 4);
  float **outs[] = {&a.o, &a.dq, &a.dk, &a.dv, &a.ro, &a.rdq, &a.rdk, &a.rdv};
  for (size_t i = 0; i < 8; i++)
    *outs[i] = xmalloc(a.n * sizeof(float));

  const size_t ff_mem = extra_bytes(attn_fused_fwd, release_saved(&a));
  const double ff = best_seconds(attn_fused_fwd, &a);
  const size_t fb_mem = extra_bytes(attn_fused_bwd, &a);
  const double fb = best_seconds(attn_fused_bwd, &a);
  const size_t nf_mem = extra_bytes(attn_naive_fwd, release_saved(&a));
  const double nf = best_seconds(attn_naive_fwd, &a);
  const size_t nb_mem = extra_bytes(attn_naive_bwd, &a);
  const double nb = best_seconds(attn_naive_bwd, &a);
  const double diff = fmax(max_reldiff(a.o, a.ro, a.n), max_reldiff(a.dq, a.rdq, a.n));

  const double flops_f = 4.0 * B * H * (double)L * L * Dh, flops_b = 2 * flops_f;
  printf("attn  L=%5d B=%3d H=%d Dh=%d | fwd fused %8.2f ms %6.1f GF/s  naive %8.2f ms %6.1f GF/s  x%.2f | "
         "bwd fused %8.2f ms %6.1f GF/s  naive %8.2f ms %6.1f GF/s  x%.2f | extra MiB fwd %.2f vs %.2f, bwd %.2f vs "
         "%.2f | diff %.1e\n",
         L, B, H, Dh, 1e3 * ff, flops_f / ff * 1e-9, 1e3 * nf, flops_f / nf * 1e-9, nf / ff, 1e3 * fb,
         flops_b / fb * 1e-9, 1e3 * nb, flops_b / nb * 1e-9, nb / fb, ff_mem / 1048576.0, nf_mem / 1048576.0,
         fb_mem / 1048576.0, nb_mem / 1048576.0, diff);
  fflush(stdout);
  json_t *j = json_pack("{si si si si sf sf sf sf sf sf sf sf sI sI sI sI sf}", "L", L, "batch", B, "heads", H,
                        "head_dim", Dh, "fused_fwd_ms", 1e3 * ff, "fused_fwd_gflops", flops_f / ff * 1e-9,
                        "naive_fwd_ms", 1e3 * nf, "naive_fwd_gflops", flops_f / nf * 1e-9, "fused_bwd_ms", 1e3 * fb,
                        "fused_bwd_gflops", flops_b / fb * 1e-9, "naive_bwd_ms", 1e3 * nb, "naive_bwd_gflops",
                        flops_b / nb * 1e-9, "fused_fwd_extra_bytes", (json_int_t)ff_mem, "naive_fwd_extra_bytes",
                        (json_int_t)nf_mem, "fused_bwd_extra_bytes", (json_int_t)fb_mem, "naive_bwd_extra_bytes",
                        (json_int_t)nb_mem, "max_rel_diff_fused_vs_naive", diff);
  float *all[] = {a.q, a.k, a.v, a.dout, a.o, a.lse, a.dq, a.dk, a.dv, a.ro, a.P, a.rdq, a.rdk, a.rdv};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    mb_host_free(all[i]);
  return j;
}

/* ---- selective scan -------------------------------------------------------- */

typedef struct {
  mb_scan_desc d;
  mb_scan_in_f32 in;
  mb_scan_grad_f32 g;
  size_t nx;
  float *y, *states, *dy, *ry, *hall;
} scan_bench;

static void scan_fused_fwd(void *p) {
  scan_bench *s = p;
  mb_host_free(s->states);
  s->states = xmalloc(mb_cpu_scan_states_numel(&s->d) * sizeof(float));
  check(mb_cpu_scan_fwd_f32(&s->d, &s->in, s->y, s->states, NULL, 0), "fused scan forward");
}
static void scan_fused_fwdbwd(void *p) {
  scan_bench *s = p;
  scan_fused_fwd(s);
  check(mb_cpu_scan_bwd_f32(&s->d, &s->in, s->states, s->dy, &s->g, NULL, 0), "fused scan backward");
}
static void scan_naive_fwd(void *p) {
  scan_bench *s = p;
  mb_host_free(s->hall);
  s->hall = xmalloc(ref_scan_states_numel(&s->d) * sizeof(float));
  check(ref_scan_fwd_f32(&s->d, &s->in, s->ry, s->hall), "naive scan forward");
}
static void scan_naive_fwdbwd(void *p) {
  scan_bench *s = p;
  scan_naive_fwd(s);
  check(ref_scan_bwd_f32(&s->d, &s->in, s->hall, s->dy, &s->g), "naive scan backward");
}

static scan_bench *release_states(scan_bench *s) {
  mb_host_free(s->states);
  mb_host_free(s->hall);
  s->states = s->hall = NULL;
  return s;
}

static json_t *bench_scan(int L, int with_naive) {
  const int B = 1, D = 1536, N = 16;
  scan_bench s = {.d = {.batch = B, .seqlen = L, .dim = D, .dstate = N, .delta_softplus = 1}};
  s.nx = (size_t)B * L * D;
  const size_t nbc = (size_t)B * L * N;
  float *A_log = xmalloc((size_t)D * N * sizeof(float));
  for (int c = 0; c < D; c++)
    for (int n = 0; n < N; n++)
      A_log[(size_t)c * N + n] = logf(1.0f + n);
  s.in = (mb_scan_in_f32){.u = randn(s.nx, 1, 0, 5), .delta = randn(s.nx, 0.5, -1, 6), .A_log = A_log,
                          .B = randn(nbc, 1, 0, 7), .C = randn(nbc, 1, 0, 8), .D = randn(D, 1, 0, 9),
                          .z = randn(s.nx, 1, 0, 10), .delta_bias = randn(D, 0.5, 0, 11)};
  s.g = (mb_scan_grad_f32){.du = xmalloc(s.nx * 4), .ddelta = xmalloc(s.nx * 4), .dA_log = xmalloc((size_t)D * N * 4),
                           .dB = xmalloc(nbc * 4), .dC = xmalloc(nbc * 4), .dD = xmalloc((size_t)D * 4),
                           .dz = xmalloc(s.nx * 4), .ddelta_bias = xmalloc((size_t)D * 4)};
  s.y = xmalloc(s.nx * 4);
  s.ry = xmalloc(s.nx * 4);
  s.dy = randn(s.nx, 1, 0, 12);

  /* the saved states are released before each memory measurement, so that
   * what the forward keeps for the backward counts in its extra */
  const size_t ff_mem = extra_bytes(scan_fused_fwd, release_states(&s));
  const double ff = best_seconds(scan_fused_fwd, &s);
  const size_t fb_mem = extra_bytes(scan_fused_fwdbwd, release_states(&s));
  const double fb = best_seconds(scan_fused_fwdbwd, &s);
  double nf = NAN, nb = NAN, diff = NAN;
  size_t nf_mem = 0, nb_mem = 0;
  if (with_naive) {
    nf_mem = extra_bytes(scan_naive_fwd, release_states(&s));
    nf = best_seconds(scan_naive_fwd, &s);
    nb_mem = extra_bytes(scan_naive_fwdbwd, release_states(&s));
    nb = best_seconds(scan_naive_fwdbwd, &s);
    diff = max_reldiff(s.y, s.ry, s.nx);
  }
  const double tok = (double)B * L;
  printf("scan  L=%5d D=%d N=%d | fwd fused %8.2f ms %9.0f tok/s  naive %8.2f ms %9.0f tok/s  x%.2f | fwd+bwd "
         "fused %8.2f ms %9.0f tok/s  naive %8.2f ms %9.0f tok/s  x%.2f | extra MiB fwd %.2f vs %.2f, fwd+bwd %.2f "
         "vs %.2f | diff %.1e\n",
         L, D, N, 1e3 * ff, tok / ff, 1e3 * nf, tok / nf, nf / ff, 1e3 * fb, tok / fb, 1e3 * nb, tok / nb, nb / fb,
         ff_mem / 1048576.0, nf_mem / 1048576.0, fb_mem / 1048576.0, nb_mem / 1048576.0, diff);
  fflush(stdout);
  json_t *j = json_pack("{si si si si si sf sf sf sf sI sI}", "L", L, "batch", B, "dim", D, "dstate", N, "chunk",
                        128, "fused_fwd_tokens_per_s", tok / ff, "fused_fwdbwd_tokens_per_s", tok / fb,
                        "fused_fwd_ms", 1e3 * ff, "fused_fwdbwd_ms", 1e3 * fb, "fused_fwd_extra_bytes",
                        (json_int_t)ff_mem, "fused_fwdbwd_extra_bytes", (json_int_t)fb_mem);
  if (with_naive) {
    json_object_set_new(j, "naive_fwd_tokens_per_s", json_real(tok / nf));
    json_object_set_new(j, "naive_fwdbwd_tokens_per_s", json_real(tok / nb));
    json_object_set_new(j, "naive_fwd_extra_bytes", json_integer((json_int_t)nf_mem));
    json_object_set_new(j, "naive_fwdbwd_extra_bytes", json_integer((json_int_t)nb_mem));
    json_object_set_new(j, "max_rel_diff_fused_vs_naive", json_real(diff));
  }
  const void *all[] = {s.in.u, s.in.delta, s.in.A_log, s.in.B, s.in.C, s.in.D, s.in.z, s.in.delta_bias,
                       s.g.du, s.g.ddelta, s.g.dA_log, s.g.dB, s.g.dC, s.g.dD, s.g.dz, s.g.ddelta_bias,
                       s.y, s.ry, s.dy, s.states, s.hall};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    mb_host_free((void *)all[i]);
  return j;
}

/* ---- conv1d ---------------------------------------------------------------- */

typedef struct {
  mb_conv1d_desc d;
  size_t n;
  float *x, *w, *b, *y, *dy, *dx, *dw, *db, *ry;
} conv_bench;

static void conv_fused_fwd(void *p) {
  conv_bench *c = p;
  check(mb_cpu_conv1d_fwd_f32(&c->d, c->x, c->w, c->b, c->y), "conv1d forward");
}
static void conv_fused_bwd(void *p) {
  conv_bench *c = p;
  check(mb_cpu_conv1d_bwd_f32(&c->d, c->x, c->w, c->b, c->dy, c->dx, c->dw, c->db, NULL, 0), "conv1d backward");
}
static void conv_naive_fwd(void *p) {
  conv_bench *c = p;
  check(ref_conv1d_fwd_f32(&c->d, c->x, c->w, c->b, c->ry), "naive conv1d forward");
}
static void conv_memcpy(void *p) { /* the same bytes as the forward: read n, write n */
  conv_bench *c = p;
#pragma omp parallel for schedule(static)
  for (long i = 0; i < 64; i++) {
    const size_t lo = c->n * i / 64, hi = c->n * (i + 1) / 64;
    memcpy(c->ry + lo, c->x + lo, (hi - lo) * sizeof(float));
  }
}

static json_t *bench_conv(int B, int L) {
  const int D = 1536, W = 4;
  conv_bench c = {.d = {.batch = B, .seqlen = L, .dim = D, .width = W, .silu = 1}};
  c.n = (size_t)B * L * D;
  c.x = randn(c.n, 1, 0, 20);
  c.dy = randn(c.n, 1, 0, 21);
  c.w = randn((size_t)D * W, 0.5, 0, 22);
  c.b = randn(D, 0.5, 0, 23);
  c.y = xmalloc(c.n * 4);
  c.dx = xmalloc(c.n * 4);
  c.ry = xmalloc(c.n * 4);
  c.dw = xmalloc((size_t)D * W * 4);
  c.db = xmalloc((size_t)D * 4);
  const double ff = best_seconds(conv_fused_fwd, &c), fb = best_seconds(conv_fused_bwd, &c);
  const double nf = best_seconds(conv_naive_fwd, &c);
  const double diff = max_reldiff(c.y, c.ry, c.n);
  const double mc = best_seconds(conv_memcpy, &c);
  /* nominal bytes: forward reads x, writes y; backward reads x and dy, writes dx */
  const double bf = 2.0 * c.n * 4, bb = 3.0 * c.n * 4;
  printf("conv  B=%d L=%d D=%d W=%d silu | fwd fused %7.2f ms %6.1f GB/s  naive %7.2f ms %6.1f GB/s  memcpy %7.2f "
         "ms %6.1f GB/s | bwd fused %7.2f ms %6.1f GB/s | diff %.1e\n",
         B, L, D, W, 1e3 * ff, bf / ff * 1e-9, 1e3 * nf, bf / nf * 1e-9, 1e3 * mc, bf / mc * 1e-9, 1e3 * fb,
         bb / fb * 1e-9, diff);
  fflush(stdout);
  json_t *j = json_pack("{si si si si sf sf sf sf sf sf sf sf sf}", "batch", B, "L", L, "dim", D, "width", W,
                        "fused_fwd_ms", 1e3 * ff, "fused_fwd_gbps", bf / ff * 1e-9, "naive_fwd_ms", 1e3 * nf,
                        "naive_fwd_gbps", bf / nf * 1e-9, "memcpy_ms", 1e3 * mc, "memcpy_gbps", bf / mc * 1e-9,
                        "fused_bwd_ms", 1e3 * fb, "fused_bwd_gbps", bb / fb * 1e-9, "max_rel_diff_fused_vs_naive",
                        diff);
  float *all[] = {c.x, c.dy, c.w, c.b, c.y, c.dx, c.ry, c.dw, c.db};
  for (size_t i = 0; i < 9; i++)
    mb_host_free(all[i]);
  return j;
}

static void cpu_name(char *buf, size_t n) {
  snprintf(buf, n, "unknown");
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f)
    return;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "model name", 10) == 0) {
      const char *p = strchr(line, ':');
      if (p) {
        snprintf(buf, n, "%s", p + 2);
        buf[strcspn(buf, "\n")] = 0;
      }
      break;
    }
  }
  fclose(f);
}

int main(int argc, char **argv) {
  mb_blas_env_fix(argc, argv);
  const char *json_path = NULL;
  int quick = 0;
  const char *only = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--json") && i + 1 < argc)
      json_path = argv[++i];
    else if (!strcmp(argv[i], "--quick"))
      quick = 1;
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
      reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--only") && i + 1 < argc)
      only = argv[++i];
    else {
      fprintf(stderr, "usage: %s [--json PATH] [--quick] [--reps N] [--only attn|scan|conv]\n", argv[0]);
      return 2;
    }
  }
  if (reps < 1)
    reps = 1;
  char cpu[256];
  cpu_name(cpu, sizeof cpu);
  /* OpenBLAS picks its kernels by CPU model; an unknown model falls back to
   * old SSE kernels (override with OPENBLAS_CORETYPE), so say which it uses.
   * The load average says how busy the machine was. */
  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) < 0)
    load[0] = NAN;
  printf("bench_cpu_kernels: %d OpenMP threads, %s, OpenBLAS %s (%s kernels), f32, best of %d, load %.2f\n",
         omp_get_max_threads(), cpu, MAMBERT_OPENBLAS_VERSION, openblas_get_corename(), reps, load[0]);
  json_t *root = json_pack("{si ss ss ss si sf}", "threads", omp_get_max_threads(), "cpu", cpu, "openblas",
                           MAMBERT_OPENBLAS_VERSION, "openblas_core", openblas_get_corename(), "reps", reps,
                           "load_average_1min", load[0]);
  json_t *attn = json_array(), *scan = json_array(), *conv = json_array();
  const int maxL = quick ? 512 : 2048;
  for (int L = 128; L <= maxL && (!only || !strcmp(only, "attn")); L *= 2)
    json_array_append_new(attn, bench_attention(L, quick));
  const int maxS = quick ? 512 : 4096;
  for (int L = 256; L <= maxS && (!only || !strcmp(only, "scan")); L *= 2)
    json_array_append_new(scan, bench_scan(L, 1));
  if (!only || !strcmp(only, "conv"))
    json_array_append_new(conv, bench_conv(quick ? 1 : 4, quick ? 512 : 2048));
  json_object_set_new(root, "attention", attn);
  json_object_set_new(root, "selective_scan", scan);
  json_object_set_new(root, "conv1d", conv);
  if (json_path && json_dump_file(root, json_path, JSON_INDENT(2)) != 0) {
    fprintf(stderr, "bench: cannot write %s\n", json_path);
    json_decref(root);
    return 1;
  }
  json_decref(root);
  return 0;
}
