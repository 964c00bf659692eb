/* cuda_attention.c (bench_cuda_attention): fused attention on the GPU.
 *
 *   bench_cuda_attention [--json PATH] [--tokens N] [--heads H] [--reps R] [--causal] [--quick]
 *                        [--skip-wgmma] [--pass first|tma|bwd-ws|fp8-ws]
 *
 * 1. The card's bf16 peak, measured in the same run: an 8192^3 bf16 GEMM
 *    through mambert's cuBLASLt path (kernels/cuda/gemm.h), f32 accumulation.
 * 2. TFLOP/s of the flash forward (tilings 0 and 1, and on sm_90 the
 *    wgmma tilings 2, 3 (head_dim 64), 4 and 5 to 8) and backward (both dQ
 *    modes of tiling 0: the deterministic dQ pass, the default, and f32
 *    atomics; on sm_90 the wgmma tilings 1 and 2, tiling 2 in both modes;
 *    --skip-wgmma leaves the wgmma tilings out), and the e4m3 forward
 *    (mma.sync, and on sm_90 its wgmma forms: tilings 2, 4, 7 and 8) at
 *    L = 512 .. 16384 and head_dim 64 and 128, with batch x heads filling
 *    the GPU: N = 16384 tokens in total (batch = N / L) and H = 16 heads.
 *    FLOPs as FlashAttention counts them: forward 4 B H L^2 D (halved when
 *    causal), backward 2.5 x forward (five L^2 D products instead of two).
 *    Inputs are random (never zeros), the same buffers for every L (N x H x
 *    D elements each: L changes only how they are split into sequences).
 * 3. Packed (varlen) against padded batches at the kernel level: 64
 *    sequences with lengths drawn like tokenised IMDB reviews (log-normal,
 *    median ~245, truncated to 512), BERT-base attention (H = 12, D = 64):
 *    padded to 512 with a key mask vs packed with cu_seqlens, through the
 *    default tilings. Both compute the same real tokens; the padded one
 *    also pays for the padding. On sm_90, in the last pass, the packed
 *    forward again under tilings 5, 7 and 8 (the persistent ones walk
 *    their tiles in a fixed order: mixed lengths are where that can
 *    balance worse than the hardware's scheduler).
 * In passes, the JSON written after each (--pass runs one, adding to the
 * JSON the earlier ones wrote): first, every kernel that has run on a GPU
 * before but forward tilings 5-6; then tma (forward tilings 5 to 10 and the
 * packed forward under 5, 7, 8), bwd-ws (backward tilings 2-4) and fp8-ws (the
 * e4m3 forward under tilings 7-8): TMA and mbarrier kernels whose first
 * hang or fault on a new GPU must not cost the numbers before it.
 * Every time is the median of R samples, each 5 back-to-back runs between
 * two events (per run), after 2 warm-ups. Prints a table; writes JSON
 * (default bench_cuda_attention.json; "rows", "packed_vs_padded";
 * tools/bench_torch_sdpa.py --ours PATH --merge adds "torch_sdpa" and
 * prints the ratios to torch SDPA on the same shapes).
 */
#include "mambert_build_config.h"

#include <stdio.h>

#if !MAMBERT_HAVE_CUDA
int main(void) {
  printf("bench_cuda_attention: built without CUDA: nothing to measure\n");
  return 77;
}
#else

#include <cuda_runtime_api.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bench_cuda_util.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/gemm.h"
#include "runtime/cuda_alloc.h"
#include "runtime/dtype.h"
#include "runtime/philox.h"

#define CHECK_CUDA(call)                                                                                               \
  do {                                                                                                                 \
    cudaError_t e_ = (call);                                                                                           \
    if (e_ != cudaSuccess) {                                                                                           \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));                           \
      exit(1);                                                                                                         \
    }                                                                                                                  \
  } while (0)
#define CHECK_MB(call) BCHECK(call)

static int reps = 10;
static uint64_t seed = 0x5eed;
static uint64_t draws;

static void *dev_alloc(size_t bytes) {
  void *p = NULL;
  CHECK_CUDA(cudaMalloc(&p, bytes ? bytes : 16));
  return p;
}

/* n random normal values as bf16 on the device */
static void *dev_randn_bf16(size_t n, float std) {
  float *h = malloc(n * sizeof(float));
  uint16_t *b = malloc(n * sizeof(uint16_t));
  if (!h || !b) {
    fprintf(stderr, "out of host memory\n");
    exit(1);
  }
  mb_philox_fill_normal(seed, (draws++) << 40, h, n, 0.0f, std);
  CHECK_MB(mb_convert(b, MB_BF16, h, MB_F32, n));
  void *d = dev_alloc(n * 2);
  CHECK_CUDA(cudaMemcpy(d, b, n * 2, cudaMemcpyHostToDevice));
  free(h);
  free(b);
  return d;
}

/* n random normal values as e4m3 on the device (saturating) */
static void *dev_randn_e4m3(size_t n, float std) {
  float *h = malloc(n * sizeof(float));
  uint8_t *b = malloc(n);
  if (!h || !b) {
    fprintf(stderr, "out of host memory\n");
    exit(1);
  }
  mb_philox_fill_normal(seed, (draws++) << 40, h, n, 0.0f, std);
  for (size_t i = 0; i < n; i++)
    b[i] = mb_f32_to_e4m3(h[i], MB_FP8_SATFINITE);
  void *d = dev_alloc(n);
  CHECK_CUDA(cudaMemcpy(d, b, n, cudaMemcpyHostToDevice));
  free(h);
  free(b);
  return d;
}

static int cmp_float(const void *a, const void *b) {
  const float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* What a timed region runs. */
typedef struct {
  int kind; /* 0 forward, 1 backward, 2 GEMM, 3 e4m3 forward */
  const mb_attn_desc *d;
  void *q, *k, *v, *out, *dout, *dq, *dk, *dv, *ws;
  void *q8, *k8, *v8;
  float *scales; /* e4m3 descales (device, 3) */
  float *lse;
  size_t ws_bytes;
  mb_gemm_ctx *gemm;
  const mb_gemm_desc *gemm_desc;
} work;

static void run_once(const work *w) {
  if (w->kind == 0) {
    CHECK_MB(mb_cuda_attn_fwd_with(MB_CUDA_ATTN_FLASH, w->d, MB_BF16, w->q, w->k, w->v, w->out, w->lse, NULL));
  } else if (w->kind == 3) {
    CHECK_MB(mb_cuda_attn_fwd_fp8_with(MB_CUDA_ATTN_FLASH_FP8, w->d, w->q8, w->k8, w->v8, w->scales, w->scales + 1,
                                       w->scales + 2, w->out, w->lse, NULL));
  } else if (w->kind == 1) {
    CHECK_MB(mb_cuda_attn_bwd_with(MB_CUDA_ATTN_FLASH, w->d, MB_BF16, w->q, w->k, w->v, w->out, w->lse, w->dout, w->dq,
                                   w->dk, w->dv, w->ws, w->ws_bytes, NULL));
  } else {
    CHECK_MB(mb_gemm(w->gemm, w->gemm_desc, NULL));
  }
}

/* Median over `reps` samples of the milliseconds per run, each sample 5
 * back-to-back runs between two events (the GPU queue stays full, so the
 * host's dispatch work between runs is hidden, not timed), after 2
 * warm-ups. */
#define RUNS_PER_SAMPLE 5
static float time_ms(const work *w) {
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  for (int i = 0; i < 2; i++)
    run_once(w);
  CHECK_CUDA(cudaDeviceSynchronize());
  float *t = malloc((size_t)reps * sizeof(float));
  for (int i = 0; i < reps; i++) {
    CHECK_CUDA(cudaEventRecord(a, NULL));
    for (int r = 0; r < RUNS_PER_SAMPLE; r++)
      run_once(w);
    CHECK_CUDA(cudaEventRecord(b, NULL));
    CHECK_CUDA(cudaEventSynchronize(b));
    CHECK_CUDA(cudaEventElapsedTime(&t[i], a, b));
    t[i] /= RUNS_PER_SAMPLE;
  }
  CHECK_CUDA(cudaGetLastError());
  qsort(t, (size_t)reps, sizeof(float), cmp_float);
  const float med = t[reps / 2];
  free(t);
  CHECK_CUDA(cudaEventDestroy(a));
  CHECK_CUDA(cudaEventDestroy(b));
  return med;
}

static double measure_peak(json_t *root) {
  const int n = 8192;
  mb_device_allocator *alloc;
  CHECK_MB(mb_cuda_allocator_create(0, &alloc));
  mb_gemm_ctx *ctx;
  CHECK_MB(mb_gemm_ctx_create(alloc, 0, &ctx));
  mb_gemm_desc g;
  memset(&g, 0, sizeof g);
  g.trans_b = 1;
  g.m = g.n = g.k = n;
  g.a_type = g.b_type = g.c_type = MB_BF16;
  g.a = dev_randn_bf16((size_t)n * n, 1.0f);
  g.b = dev_randn_bf16((size_t)n * n, 1.0f);
  g.c = dev_alloc((size_t)n * n * 2);
  g.alpha = 1.0;
  work w;
  memset(&w, 0, sizeof w);
  w.kind = 2;
  w.gemm = ctx;
  w.gemm_desc = &g;
  const float ms = time_ms(&w);
  const double tflops = 2.0 * n * (double)n * n / (ms * 1e-3) / 1e12;
  printf("bf16 GEMM peak (mambert cuBLASLt %dx%dx%d, f32 accumulation): %.3f ms, %.1f TFLOP/s\n", n, n, n, ms, tflops);
  json_object_set_new(root, "peak_bf16_gemm_tflops", json_real(tflops));
  json_object_set_new(root, "peak_gemm_ms", json_real(ms));
  CHECK_CUDA(cudaFree((void *)g.a));
  CHECK_CUDA(cudaFree((void *)g.b));
  CHECK_CUDA(cudaFree(g.c));
  mb_gemm_ctx_destroy(ctx);
  return tflops;
}

/* r[name_ms] = ms and r[name_tflops] for `flop` floating-point operations;
 * returns the TFLOP/s. */
static double record_time(json_t *r, const char *name, float ms, double flop) {
  const double tflops = flop / (ms * 1e-3) / 1e12;
  char key[48];
  snprintf(key, sizeof key, "%s_ms", name);
  json_object_set_new(r, key, json_real(ms));
  snprintf(key, sizeof key, "%s_tflops", name);
  json_object_set_new(r, key, json_real(tflops));
  return tflops;
}

/* The e4m3 forward's rows of the sweep, after it: TFLOP/s and the ratio to
 * the bf16 forward of the same tiling family on the same shape; after the
 * TMA pass also the warp-specialised e4m3 kernel (tiling 7) against bf16
 * tiling 5, the bf16 default on sm_90. */
static void print_fp8(json_t *rows) {
  printf("\ne4m3 forward (descales 1, P quantised with 2^8, out bf16): TFLOP/s; x: over the bf16 forward "
         "(mma.sync: tiling 0; wgmma: tiling 2; pipe: the wgmma kernel with S_{j+1} before softmax_j, over "
         "tiling 4; ws / wsp: warp-specialised, TMA, persistent (tilings 7 / 8: V^T by the consumers / by the "
         "producer's warps), over bf16 tiling 5; wspf: wsp with 3 of 16 exponentials on the FMA pipe (tiling 9), "
         "over wsp)\n");
  printf("%-6s %-4s | %-10s %-6s | %-10s %-6s | %-10s %-6s | %-10s %-6s | %-10s %-6s | %-10s %-6s\n", "L", "D",
         "mma.sync", "x bf16", "wgmma", "x bf16", "pipe", "x bf16", "ws", "x bf16 5", "wsp", "x bf16 5", "wspf",
         "x wsp");
  size_t i;
  json_t *r;
  json_array_foreach(rows, i, r) {
    const double t0 = json_real_value(json_object_get(r, "fp8_fwd_tflops"));
    const double b0 = json_real_value(json_object_get(r, "fwd_tflops"));
    const char *keys[5][2] = {{"fp8_wgmma_fwd_tflops", "fwd_v2_tflops"},
                              {"fp8_pipe_fwd_tflops", "fwd_v4_tflops"},
                              {"fp8_ws_fwd_tflops", "fwd_v5_tflops"},
                              {"fp8_wsp_fwd_tflops", "fwd_v5_tflops"},
                              {"fp8_wspf_fwd_tflops", "fp8_wsp_fwd_tflops"}};
    char cell[5][2][16];
    for (int k = 0; k < 5; k++) {
      const double t = json_real_value(json_object_get(r, keys[k][0]));
      const double b = json_real_value(json_object_get(r, keys[k][1]));
      snprintf(cell[k][0], sizeof cell[k][0], "-");
      snprintf(cell[k][1], sizeof cell[k][1], "-");
      if (t > 0 && b > 0) {
        snprintf(cell[k][0], sizeof cell[k][0], "%.1f", t);
        snprintf(cell[k][1], sizeof cell[k][1], "%.2f", t / b);
      }
    }
    printf("%-6d %-4d | %-10.1f %-6.2f | %-10s %-6s | %-10s %-6s | %-10s %-6s | %-10s %-6s | %-10s %-6s\n",
           (int)json_integer_value(json_object_get(r, "L")), (int)json_integer_value(json_object_get(r, "D")), t0,
           b0 > 0 ? t0 / b0 : 0.0, cell[0][0], cell[0][1], cell[1][0], cell[1][1], cell[2][0], cell[2][1], cell[3][0],
           cell[3][1], cell[4][0], cell[4][1]);
  }
}

/* The wgmma forward tilings side by side (sm_90 runs only). */
static void print_wgmma_fwd(json_t *rows) {
  size_t i;
  json_t *r;
  int any = 0;
  json_array_foreach(rows, i, r) any |= json_object_get(r, "fwd_v2_tflops") != NULL;
  if (!any)
    return;
  printf("\nwgmma forward tilings, TFLOP/s (v2: 128-key tiles; v3: 64-key tiles, two CTAs per SM, D=64 only; v4: "
         "v2 with the softmax under the product; v5: v4 warp-specialised, a TMA producer warpgroup; v6: v5 with "
         "ping-pong; v7: v5 persistent, a CTA per SM; v8: v7 with three consumer warpgroups, 192-row tiles, at "
         "D=64, v7 at D=128; v9, v10: v6, v5 with 3/16 of the exponentials on the FMA pipe)\n");
  printf("%-6s %-4s | %-8s %-8s %-8s %-8s %-8s %-8s %-8s %-8s %-8s | %-8s\n", "L", "D", "v2", "v3", "v4", "v5", "v6",
         "v7", "v8", "v9", "v10", "v0");
  json_array_foreach(rows, i, r) {
    char v3[16] = "-", v5[16] = "-", v6[16] = "-", v7[16] = "-", v8[16] = "-", v9[16] = "-", v10[16] = "-";
    if (json_object_get(r, "fwd_v3_tflops"))
      snprintf(v3, sizeof v3, "%.1f", json_real_value(json_object_get(r, "fwd_v3_tflops")));
    if (json_object_get(r, "fwd_v5_tflops"))
      snprintf(v5, sizeof v5, "%.1f", json_real_value(json_object_get(r, "fwd_v5_tflops")));
    if (json_object_get(r, "fwd_v6_tflops"))
      snprintf(v6, sizeof v6, "%.1f", json_real_value(json_object_get(r, "fwd_v6_tflops")));
    if (json_object_get(r, "fwd_v7_tflops"))
      snprintf(v7, sizeof v7, "%.1f", json_real_value(json_object_get(r, "fwd_v7_tflops")));
    if (json_object_get(r, "fwd_v8_tflops"))
      snprintf(v8, sizeof v8, "%.1f", json_real_value(json_object_get(r, "fwd_v8_tflops")));
    if (json_object_get(r, "fwd_v9_tflops"))
      snprintf(v9, sizeof v9, "%.1f", json_real_value(json_object_get(r, "fwd_v9_tflops")));
    if (json_object_get(r, "fwd_v10_tflops"))
      snprintf(v10, sizeof v10, "%.1f", json_real_value(json_object_get(r, "fwd_v10_tflops")));
    printf("%-6d %-4d | %-8.1f %-8s %-8.1f %-8s %-8s %-8s %-8s %-8s %-8s | %-8.1f\n",
           (int)json_integer_value(json_object_get(r, "L")), (int)json_integer_value(json_object_get(r, "D")),
           json_real_value(json_object_get(r, "fwd_v2_tflops")), v3,
           json_real_value(json_object_get(r, "fwd_v4_tflops")),
           v5, v6, v7, v8, v9, v10, json_real_value(json_object_get(r, "fwd_tflops")));
  }
}

/* Backward tiling t timed in both dQ modes, deterministic first when
 * det_first, into r's "bwd_v<t>" and "bwd_v<t>_fast". */
static void time_bwd_modes(const work *w, json_t *r, int L, int D, int t, int det_first, double bwd_flop) {
  CHECK_MB(mb_cuda_attn_set_flash_bwd_variant(t));
  for (int k = 0; k < 2; k++) {
    const int det = det_first ? k == 0 : k == 1;
    char name[32];
    snprintf(name, sizeof name, det ? "bwd_v%d" : "bwd_v%d_fast", t);
    CHECK_MB(mb_cuda_attn_set_deterministic(det));
    const float ms = time_ms(w);
    const double tf = record_time(r, name, ms, bwd_flop);
    printf("L %-6d D %-4d bwd-b%d%s %.3f ms %.1f TFLOP/s\n", L, D, t, det ? "" : " (fast)", ms, tf);
  }
}

/* The sweep's passes. PASS_FIRST: every kernel already run on a GPU but
 * forward tilings 5-6, one row per (D, L). The others add to those rows,
 * each after the JSON has been written, and each can run as a process of
 * its own (--pass): kernels on TMA and mbarriers that no GPU has run yet
 * may hang or fault, and that must not cost the numbers before them.
 * PASS_TMA: forward tilings 5 to 10 (5-8 measured; 9, 10 new); PASS_BWD_WS:
 * backward tilings 2 to 4 in both dQ modes (4 at head_dim 64); PASS_FP8_WS:
 * the e4m3 forward under tilings 7 and 8. */
enum { PASS_FIRST, PASS_TMA, PASS_BWD_WS, PASS_FP8_WS, NPASS };
static const char *const pass_names[NPASS] = {"first", "tma", "bwd-ws", "fp8-ws"};

/* The row of (L, D) in rows, appended when the pass that makes rows did not
 * run in this process (its JSON was not there). */
static json_t *row_for(json_t *rows, int L, int D, int B, int H, int causal) {
  size_t i;
  json_t *r;
  json_array_foreach(rows, i, r) {
    if (json_integer_value(json_object_get(r, "L")) == L && json_integer_value(json_object_get(r, "D")) == D)
      return r;
  }
  r = json_object();
  json_object_set_new(r, "L", json_integer(L));
  json_object_set_new(r, "D", json_integer(D));
  json_object_set_new(r, "B", json_integer(B));
  json_object_set_new(r, "H", json_integer(H));
  json_object_set_new(r, "causal", json_boolean(causal));
  json_array_append_new(rows, r);
  return r;
}

static void sweep(json_t *rows, double peak, int tokens, int H, int causal, int quick, int skip_wgmma, int pass) {
  const int lens[] = {512, 1024, 2048, 4096, 8192, 16384};
  const int dims[] = {64, 128};
  int v2 = 0; /* the wgmma tiling runs here (sm_90) */
  CHECK_MB(mb_cuda_attn_flash_fwd_variant_runs(2, &v2));
  v2 = v2 && !skip_wgmma;
  if (pass != PASS_FIRST && !v2)
    return;
  if (pass == PASS_TMA)
    printf("\ntiming forward tilings 5 to 8 (TMA, warp-specialised)\n");
  else if (pass == PASS_BWD_WS)
    printf("\ntiming backward tilings 2 and 3 (TMA, warp-specialised; 3: dQ by bulk reduces), both dQ modes\n");
  else if (pass == PASS_FP8_WS)
    printf("\ntiming the e4m3 forward under tilings 7 to 9 (TMA, warp-specialised)\n");
  else
    printf("\n(fwd: tiling v0, the default; fwd-v1: 8 warps x 16 rows; fwd-v2: wgmma, sm_90 only, at D=64 "
         "/ tiling 3's (two CTAs per SM);\n bwd: deterministic dQ, the default; bwd-fast: f32 atomics; bwd-b1: dK, dV "
         "and dQ on wgmma, sm_90 only)\n");
  printf("%-6s %-4s %-5s %-4s | %-9s %-8s %-6s | %-9s %-8s | %-9s %-8s | %-9s %-8s %-6s | %-9s %-8s | %-9s %-8s\n",
         "L", "D", "B", "H", "fwd ms", "TFLOP/s", "%peak", "fwd-v1 ms", "TFLOP/s", "fwd-v2 ms", "TFLOP/s", "bwd ms",
         "TFLOP/s", "%peak", "fast ms", "TFLOP/s", "b1 ms", "TFLOP/s");
  for (int di = 0; di < 2; di++) {
    const int D = dims[di];
    const size_t n = (size_t)tokens * H * D;
    work w;
    memset(&w, 0, sizeof w);
    w.q = dev_randn_bf16(n, 1.0f);
    w.k = dev_randn_bf16(n, 1.0f);
    w.v = dev_randn_bf16(n, 1.0f);
    w.dout = dev_randn_bf16(n, 1.0f);
    w.out = dev_alloc(n * 2);
    w.dq = dev_alloc(n * 2);
    w.dk = dev_alloc(n * 2);
    w.dv = dev_alloc(n * 2);
    w.lse = dev_alloc((size_t)tokens * H * sizeof(float));
    w.q8 = dev_randn_e4m3(n, 1.0f);
    w.k8 = dev_randn_e4m3(n, 1.0f);
    w.v8 = dev_randn_e4m3(n, 1.0f);
    const float ones[3] = {1.0f, 1.0f, 1.0f};
    w.scales = dev_alloc(sizeof ones);
    CHECK_CUDA(cudaMemcpy(w.scales, ones, sizeof ones, cudaMemcpyHostToDevice));
    for (int li = 0; li < 6; li++) {
      const int L = lens[li];
      if (L > tokens || (quick && L != 1024 && L != 4096))
        continue;
      mb_attn_desc d;
      memset(&d, 0, sizeof d);
      d.batch = tokens / L;
      d.seqlen = L;
      d.heads = H;
      d.head_dim = D;
      d.causal = causal;
      w.d = &d;
      w.ws_bytes = mb_cuda_attn_bwd_workspace(&d);
      w.ws = dev_alloc(w.ws_bytes);
      const double fwd_flop = 4.0 * d.batch * H * (double)L * L * D / (causal ? 2 : 1), bwd_flop = 2.5 * fwd_flop;
      w.kind = 0;
      if (pass != PASS_FIRST) {
        json_t *r = row_for(rows, L, D, d.batch, H, causal);
        if (pass == PASS_TMA) {
          for (int t = 5; t <= 10; t++) {
            CHECK_MB(mb_cuda_attn_set_flash_fwd_variant(t));
            const float ms = time_ms(&w);
            char name[16];
            snprintf(name, sizeof name, "fwd_v%d", t);
            printf("L %-6d D %-4d fwd-v%d %.3f ms %.1f TFLOP/s\n", L, D, t, ms, record_time(r, name, ms, fwd_flop));
          }
        } else if (pass == PASS_FP8_WS) {
          /* tilings 7 (each consumer warpgroup transposes V), 8 (the
           * producer's warps do) and 9 (8 with some exponentials on the
           * FMA pipe) */
          w.kind = 3;
          for (int t = 7; t <= 9; t++) {
            CHECK_MB(mb_cuda_attn_set_flash_fwd_variant(t));
            const float ms = time_ms(&w);
            const double tf = record_time(r, t == 7 ? "fp8_ws_fwd" : t == 8 ? "fp8_wsp_fwd" : "fp8_wspf_fwd", ms,
                                          fwd_flop);
            printf("L %-6d D %-4d e4m3 fwd-v%d %.3f ms %.1f TFLOP/s\n", L, D, t, ms, tf);
          }
        } else {
          /* on out and lse of the bf16 forward (the default tiling), as in
           * the first pass; deterministic, then the fast mode (dQ by atomics
           * in the dK/dV kernel) */
          run_once(&w);
          w.kind = 1;
          time_bwd_modes(&w, r, L, D, 2, 1, bwd_flop);
          /* tiling 3: dQ by TMA bulk reduces, in any order (fast), then in
           * key-tile order (deterministic) */
          time_bwd_modes(&w, r, L, D, 3, 0, bwd_flop);
          /* tiling 4: tiling 3 with 128-query tiles (its own kernel at
           * head_dim 64 only; at 128 it runs tiling 3's) */
          if (D == 64)
            time_bwd_modes(&w, r, L, D, 4, 0, bwd_flop);
          CHECK_MB(mb_cuda_attn_set_deterministic(1));
          CHECK_MB(mb_cuda_attn_set_flash_bwd_variant(0));
        }
        CHECK_MB(mb_cuda_attn_set_flash_fwd_variant(0));
        fflush(stdout);
        CHECK_CUDA(cudaFree(w.ws));
        continue;
      }
      CHECK_MB(mb_cuda_attn_set_flash_fwd_variant(1));
      const float f1 = time_ms(&w);
      float f2 = 0.0f, f3 = 0.0f, f4 = 0.0f;
      if (v2) {
        CHECK_MB(mb_cuda_attn_set_flash_fwd_variant(2));
        f2 = time_ms(&w);
        CHECK_MB(mb_cuda_attn_set_flash_fwd_variant(4)); /* tiling 4: softmax under the product */
        f4 = time_ms(&w);
        if (D == 64) { /* tiling 3: 64-key tiles, two CTAs per SM */
          CHECK_MB(mb_cuda_attn_set_flash_fwd_variant(3));
          f3 = time_ms(&w);
        }
      }
      CHECK_MB(mb_cuda_attn_set_flash_fwd_variant(0));
      const float f0 = time_ms(&w);
      w.kind = 1;
      CHECK_MB(mb_cuda_attn_set_deterministic(0));
      const float bf = time_ms(&w);
      CHECK_MB(mb_cuda_attn_set_deterministic(1));
      const float b0 = time_ms(&w);
      float b1 = 0.0f;
      if (v2) {
        CHECK_MB(mb_cuda_attn_set_flash_bwd_variant(1));
        b1 = time_ms(&w);
        CHECK_MB(mb_cuda_attn_set_flash_bwd_variant(0));
      }
      const double tf0 = fwd_flop / (f0 * 1e-3) / 1e12, tf1 = fwd_flop / (f1 * 1e-3) / 1e12;
      const double tb = bwd_flop / (b0 * 1e-3) / 1e12, tbf = bwd_flop / (bf * 1e-3) / 1e12;
      const double tf2 = v2 ? fwd_flop / (f2 * 1e-3) / 1e12 : 0.0, tf3 = f3 > 0 ? fwd_flop / (f3 * 1e-3) / 1e12 : 0.0;
      const double tb1 = v2 ? bwd_flop / (b1 * 1e-3) / 1e12 : 0.0;
      char v2ms[16] = "-", v2tf[16] = "-", b1ms[16] = "-", b1tf[16] = "-";
      if (v2) {
        snprintf(v2ms, sizeof v2ms, "%.3f", f2);
        if (f3 > 0) /* tiling 3 after the slash */
          snprintf(v2tf, sizeof v2tf, "%.1f/%.0f", tf2, tf3);
        else
          snprintf(v2tf, sizeof v2tf, "%.1f", tf2);
        snprintf(b1ms, sizeof b1ms, "%.3f", b1);
        snprintf(b1tf, sizeof b1tf, "%.1f", tb1);
      }
      printf("%-6d %-4d %-5d %-4d | %-9.3f %-8.1f %-6.1f | %-9.3f %-8.1f | %-9s %-8s | %-9.3f %-8.1f %-6.1f | %-9.3f "
             "%-8.1f | %-9s %-8s\n",
             L, D, d.batch, H, f0, tf0, 100 * tf0 / peak, f1, tf1, v2ms, v2tf, b0, tb, 100 * tb / peak, bf, tbf, b1ms,
             b1tf);
      fflush(stdout);
      json_t *r = json_object();
      json_object_set_new(r, "L", json_integer(L));
      json_object_set_new(r, "D", json_integer(D));
      json_object_set_new(r, "B", json_integer(d.batch));
      json_object_set_new(r, "H", json_integer(H));
      json_object_set_new(r, "causal", json_boolean(causal));
      json_object_set_new(r, "fwd_ms", json_real(f0));
      json_object_set_new(r, "fwd_tflops", json_real(tf0));
      json_object_set_new(r, "fwd_v1_ms", json_real(f1));
      json_object_set_new(r, "fwd_v1_tflops", json_real(tf1));
      if (v2) {
        json_object_set_new(r, "fwd_v2_ms", json_real(f2));
        json_object_set_new(r, "fwd_v2_tflops", json_real(tf2));
        if (f3 > 0) {
          json_object_set_new(r, "fwd_v3_ms", json_real(f3));
          json_object_set_new(r, "fwd_v3_tflops", json_real(tf3));
        }
        json_object_set_new(r, "fwd_v4_ms", json_real(f4));
        json_object_set_new(r, "fwd_v4_tflops", json_real(fwd_flop / (f4 * 1e-3) / 1e12));
        json_object_set_new(r, "bwd_v1_ms", json_real(b1));
        json_object_set_new(r, "bwd_v1_tflops", json_real(tb1));
      }
      json_object_set_new(r, "bwd_ms", json_real(b0));
      json_object_set_new(r, "bwd_tflops", json_real(tb));
      json_object_set_new(r, "bwd_fast_ms", json_real(bf));
      json_object_set_new(r, "bwd_fast_tflops", json_real(tbf));
      json_object_set_new(r, "fwd_share_of_peak", json_real(tf0 / peak));
      json_object_set_new(r, "bwd_share_of_peak", json_real(tb / peak));
      /* e4m3 forward (evaluation): the mma.sync kernel, and on sm_90 its wgmma form */
      w.kind = 3;
      const float e0 = time_ms(&w);
      record_time(r, "fp8_fwd", e0, fwd_flop);
      if (v2) {
        CHECK_MB(mb_cuda_attn_set_flash_fwd_variant(2));
        const float e2 = time_ms(&w);
        CHECK_MB(mb_cuda_attn_set_flash_fwd_variant(0));
        record_time(r, "fp8_wgmma_fwd", e2, fwd_flop);
        CHECK_MB(mb_cuda_attn_set_flash_fwd_variant(4)); /* the pipelined fp8 kernel */
        const float e4 = time_ms(&w);
        CHECK_MB(mb_cuda_attn_set_flash_fwd_variant(0));
        record_time(r, "fp8_pipe_fwd", e4, fwd_flop);
      }
      json_array_append_new(rows, r);
      CHECK_CUDA(cudaFree(w.ws));
    }
    void *bufs[] = {w.q, w.k, w.v, w.dout, w.out, w.dq, w.dk, w.dv, w.lse, w.q8, w.k8, w.v8, w.scales};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
      CHECK_CUDA(cudaFree(bufs[i]));
  }
}

/* Packed vs padded: the same 64 sequences both ways, with the tilings a
 * user gets (on sm_90: forward 5, backward 0 at D = 64). tma_pass (the tma
 * pass, sm_90 only): the packed forward again under forward tilings
 * 5, 7 and 8 -- a persistent CTA walks its tiles in a fixed order, and
 * packed sequences of mixed lengths are where that can balance worse than
 * the hardware's block scheduler. */
static void packed_vs_padded(json_t *root, int tma_pass) {
  const int nseq = 64, L = 512, H = 12, D = 64;
  CHECK_MB(mb_cuda_attn_set_flash_fwd_variant(-1));
  CHECK_MB(mb_cuda_attn_set_flash_bwd_variant(-1));
  int lens[64], total = 0;
  float z[64];
  /* the same lengths in both passes, also when they run as two processes:
   * a Philox stream of their own, far from the inputs' (draws << 40) */
  mb_philox_fill_normal(seed ^ 0x1e115, 0, z, nseq, 0.0f, 1.0f);
  for (int s = 0; s < nseq; s++) {
    int len = (int)lrintf(expf(5.5f + 0.6f * z[s])); /* median e^5.5 ~ 245 tokens */
    lens[s] = len < 16 ? 16 : len > L ? L : len;
    total += lens[s];
  }
  int32_t *mask = calloc((size_t)nseq * L, sizeof *mask), cu[65];
  cu[0] = 0;
  for (int s = 0; s < nseq; s++) {
    for (int i = 0; i < lens[s]; i++)
      mask[(size_t)s * L + i] = 1;
    cu[s + 1] = cu[s] + lens[s];
  }
  int32_t *d_mask = dev_alloc((size_t)nseq * L * sizeof(int32_t)), *d_cu = dev_alloc(sizeof cu);
  CHECK_CUDA(cudaMemcpy(d_mask, mask, (size_t)nseq * L * sizeof(int32_t), cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(d_cu, cu, sizeof cu, cudaMemcpyHostToDevice));
  mb_attn_desc pad, var;
  memset(&pad, 0, sizeof pad);
  pad.batch = nseq;
  pad.seqlen = L;
  pad.heads = H;
  pad.head_dim = D;
  pad.key_mask = d_mask;
  var = pad;
  var.key_mask = NULL;
  var.batch = 1;
  var.seqlen = total;
  var.cu_seqlens = d_cu;
  var.nseq = nseq;

  const size_t n = (size_t)nseq * L * H * D; /* the padded size; the packed batch uses the first `total` tokens */
  work w;
  memset(&w, 0, sizeof w);
  w.q = dev_randn_bf16(n, 1.0f);
  w.k = dev_randn_bf16(n, 1.0f);
  w.v = dev_randn_bf16(n, 1.0f);
  w.dout = dev_randn_bf16(n, 1.0f);
  w.out = dev_alloc(n * 2);
  w.dq = dev_alloc(n * 2);
  w.dk = dev_alloc(n * 2);
  w.dv = dev_alloc(n * 2);
  w.lse = dev_alloc((size_t)nseq * L * H * sizeof(float));
  json_t *o = json_object_get(root, "packed_vs_padded");
  if (tma_pass) {
    if (o) {
      printf("\npacked forward by tiling (%d sequences, %d tokens):", nseq, total);
      w.d = &var;
      w.ws_bytes = mb_cuda_attn_bwd_workspace(&var);
      w.ws = dev_alloc(w.ws_bytes);
      w.kind = 0;
      for (int t = 5; t <= 8; t++) {
        if (t == 6)
          continue; /* ping-pong: no gain measured beyond L = 1k */
        CHECK_MB(mb_cuda_attn_set_flash_fwd_variant(t));
        const float ms = time_ms(&w);
        char key[32];
        snprintf(key, sizeof key, "packed_fwd_v%d_ms", t);
        json_object_set_new(o, key, json_real(ms));
        printf("  v%d %.3f ms", t, ms);
      }
      printf("\n");
      CHECK_MB(mb_cuda_attn_set_flash_fwd_variant(-1));
      CHECK_CUDA(cudaFree(w.ws));
    }
  } else {
    float t[2][2];
    const mb_attn_desc *ds[2] = {&pad, &var};
    for (int i = 0; i < 2; i++) {
      w.d = ds[i];
      w.ws_bytes = mb_cuda_attn_bwd_workspace(ds[i]);
      w.ws = dev_alloc(w.ws_bytes);
      w.kind = 0;
      t[i][0] = time_ms(&w);
      w.kind = 1;
      t[i][1] = time_ms(&w);
      CHECK_CUDA(cudaFree(w.ws));
    }
    double real_flop = 0; /* attention FLOPs of the real tokens */
    for (int s = 0; s < nseq; s++)
      real_flop += 4.0 * H * (double)lens[s] * lens[s] * D;
    printf("\npacked vs padded (%d sequences, %d real tokens of %d padded, H=%d D=%d):\n", nseq, total, nseq * L, H,
           D);
    printf("  padded+mask: fwd %.3f ms  bwd %.3f ms  (%.1f / %.1f useful TFLOP/s)\n", t[0][0], t[0][1],
           real_flop / (t[0][0] * 1e-3) / 1e12, 2.5 * real_flop / (t[0][1] * 1e-3) / 1e12);
    printf("  packed     : fwd %.3f ms  bwd %.3f ms  (%.1f / %.1f useful TFLOP/s)\n", t[1][0], t[1][1],
           real_flop / (t[1][0] * 1e-3) / 1e12, 2.5 * real_flop / (t[1][1] * 1e-3) / 1e12);
    printf("  packed speed-up: fwd %.2fx  bwd %.2fx\n", t[0][0] / t[1][0], t[0][1] / t[1][1]);
    o = json_object();
    json_object_set_new(o, "nseq", json_integer(nseq));
    json_object_set_new(o, "real_tokens", json_integer(total));
    json_object_set_new(o, "padded_tokens", json_integer(nseq * L));
    json_object_set_new(o, "padded_fwd_ms", json_real(t[0][0]));
    json_object_set_new(o, "padded_bwd_ms", json_real(t[0][1]));
    json_object_set_new(o, "packed_fwd_ms", json_real(t[1][0]));
    json_object_set_new(o, "packed_bwd_ms", json_real(t[1][1]));
    json_object_set_new(root, "packed_vs_padded", o);
  }
  void *bufs[] = {w.q, w.k, w.v, w.dout, w.out, w.dq, w.dk, w.dv, w.lse, d_mask, d_cu};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    CHECK_CUDA(cudaFree(bufs[i]));
  free(mask);
}

int main(int argc, char **argv) {
  const char *json_path = "bench_cuda_attention.json";
  int tokens = 16384, H = 16, causal = 0, quick = 0, skip_wgmma = 0, pass = -1;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--json") && i + 1 < argc)
      json_path = argv[++i];
    else if (!strcmp(argv[i], "--tokens") && i + 1 < argc)
      tokens = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--heads") && i + 1 < argc)
      H = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
      reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--causal"))
      causal = 1;
    else if (!strcmp(argv[i], "--quick"))
      quick = 1;
    else if (!strcmp(argv[i], "--skip-wgmma"))
      skip_wgmma = 1;
    else if (!strcmp(argv[i], "--pass") && i + 1 < argc) {
      const char *v = argv[++i];
      for (int k = 0; k < NPASS; k++)
        if (!strcmp(v, pass_names[k]))
          pass = k;
      if (pass < 0) {
        fprintf(stderr, "bench_cuda_attention: --pass %s: expected first, tma, bwd-ws or fp8-ws\n", v);
        return 2;
      }
    } else {
      fprintf(stderr,
              "usage: %s [--json PATH] [--tokens N] [--heads H] [--reps R] [--causal] [--quick] [--skip-wgmma] "
              "[--pass first|tma|bwd-ws|fp8-ws]\n",
              argv[0]);
      return 2;
    }
  }
  if (tokens < 512 || H < 1 || reps < 1) {
    fprintf(stderr, "bench_cuda_attention: need --tokens >= 512, --heads >= 1, --reps >= 1\n");
    return 2;
  }
  char desc[512];
  mb_cuda_device_info info;
  bench_require_gpu("bench_cuda_attention", desc, sizeof desc, &info);
  CHECK_MB(mb_cuda_set_device(0));
  printf("bench_cuda_attention on %s: %d tokens x %d heads, bf16, %s, median of %d samples\n", desc, tokens, H,
         causal ? "causal" : "non-causal", reps);
  if (info.cc_major < 8) {
    printf("bench_cuda_attention: the flash kernels need sm_80\n");
    return 77;
  }
  /* the passes this process runs: all of them, or one (--pass) that adds
   * to the JSON the earlier ones wrote */
  const int p0 = pass < 0 ? PASS_FIRST : pass, p1 = pass < 0 ? NPASS - 1 : pass;
  json_t *root = NULL;
  if (p0 != PASS_FIRST) {
    json_error_t err;
    root = json_load_file(json_path, 0, &err);
    if (root && (json_integer_value(json_object_get(root, "tokens")) != tokens ||
                 json_integer_value(json_object_get(root, "heads")) != H)) {
      fprintf(stderr, "bench_cuda_attention: %s was written for other --tokens / --heads: its rows do not match\n",
              json_path);
      return 2;
    }
  }
  if (!root) {
    root = json_object();
    json_object_set_new(root, "bench", json_string("cuda_attention"));
    json_object_set_new(root, "device", json_string(desc));
    json_object_set_new(root, "cc", json_integer(info.cc_major * 10 + info.cc_minor));
    json_object_set_new(root, "sm_count", json_integer(info.sm_count));
    json_object_set_new(root, "tokens", json_integer(tokens));
    json_object_set_new(root, "heads", json_integer(H));
    json_object_set_new(root, "reps", json_integer(reps));
    json_object_set_new(root, "flop_convention", json_string("fwd 4*B*H*L^2*D (/2 causal); bwd 2.5 x fwd"));
  }
  json_t *rows = json_object_get(root, "rows");
  if (!json_is_array(rows)) {
    rows = json_array();
    json_object_set_new(root, "rows", rows);
  }
  int tma = 0;
  CHECK_MB(mb_cuda_attn_flash_fwd_variant_runs(5, &tma));
  for (int p = p0; p <= p1; p++) {
    if (p == PASS_FIRST) {
      const double peak = measure_peak(root);
      sweep(rows, peak, tokens, H, causal, quick, skip_wgmma, p);
      print_fp8(rows);
      packed_vs_padded(root, 0);
    } else {
      sweep(rows, 0.0, tokens, H, causal, quick, skip_wgmma, p);
      if (p == PASS_TMA) {
        print_wgmma_fwd(rows);
        if (tma && !skip_wgmma)
          packed_vs_padded(root, 1);
      }
      if (p == PASS_FP8_WS)
        print_fp8(rows);
    }
    /* through a temporary file and a rename: a later pass killed while
     * writing (a hang's time limit) leaves the earlier passes' file whole */
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", json_path) >= (int)sizeof tmp) {
      fprintf(stderr, "bench_cuda_attention: --json path too long\n");
      return 2;
    }
    if (json_dump_file(root, tmp, JSON_INDENT(2)) != 0 || rename(tmp, json_path) != 0) {
      fprintf(stderr, "bench_cuda_attention: cannot write %s\n", json_path);
      return 1;
    }
    printf("wrote %s (pass %s)\n", json_path, pass_names[p]);
    fflush(stdout);
  }
  json_decref(root);
  return 0;
}

#endif
