/* cuda_selective_scan.c: the GPU selective scan (and the causal conv1d in
 * front of it) at the Mamba-130m layer shape, batch 8, d_inner 1536,
 * d_state 16, for L = 256, 512, ... up to --max-len (65536) or until memory
 * or the time budget runs out: forward and backward time (median of
 * repeats timed with CUDA events, after a warm-up), the effective bandwidth
 * over the bytes that must move once (every input read once, every output
 * written once), against the card's copy bandwidth measured in the same run
 * (a large device-to-device cudaMemcpy, read + write counted), and the
 * floor set by the exponentials (one MUFU.EX2 per token, channel and state
 * in each direction, 16 per clock per SM). Inputs are random (never zeros).
 * The PyTorch peers are tools/bench_torch_scan.py; its --merge prints the
 * speed-ups from both JSON files.
 *
 *   bench_cuda_selective_scan [--json PATH] [--batch 8] [--dim 1536]
 *       [--dstate 16] [--dtype bf16|f16|f32] [--min-len 256]
 *       [--max-len 65536] [--budget SECONDS]
 *
 * Exits 77 when the build has no CUDA or there is no GPU.
 */
#include "mambert_build_config.h"

#include <stdio.h>

#if !MAMBERT_HAVE_CUDA

int main(void) {
  printf("bench_cuda_selective_scan: this build has no CUDA backend: skipping\n");
  return 77;
}

#else

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime_api.h>
#include <jansson.h>

#include "kernels/cuda/conv1d.h"
#include "kernels/cuda/selective_scan.h"
#include "kernels/cuda/selective_scan_plan.h"
#include "runtime/dtype.h"
#include "runtime/error.h"

#define CK(call)                                                                                                       \
  do {                                                                                                                 \
    cudaError_t ck_e_ = (call);                                                                                        \
    if (ck_e_ != cudaSuccess) {                                                                                        \
      fprintf(stderr, "bench: %s failed: %s (%s)\n", #call, cudaGetErrorString(ck_e_), cudaGetErrorName(ck_e_));       \
      exit(1);                                                                                                         \
    }                                                                                                                  \
  } while (0)

#define OK(expr)                                                                                                       \
  do {                                                                                                                 \
    int ok_rc_ = (expr);                                                                                               \
    if (ok_rc_ != MB_OK) {                                                                                             \
      fprintf(stderr, "bench: %s failed (%d): %s\n", #expr, ok_rc_, mb_error_message());                               \
      exit(1);                                                                                                         \
    }                                                                                                                  \
  } while (0)

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static double normal(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  const double u1 = ((double)(rng >> 11) + 0.5) * 0x1.0p-53;
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  const double u2 = (double)(rng >> 11) * 0x1.0p-53;
  return sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
}

/* n elements of dt on the device: a random block of up to 4M values
 * (mean + std * normal) uploaded once and replicated by doubling copies. */
static void *dev_random(size_t n, mb_dtype dt, double mean, double std) {
  const size_t es = mb_dtype_size(dt), blk = n < ((size_t)1 << 22) ? n : ((size_t)1 << 22);
  void *dev = NULL;
  CK(cudaMalloc(&dev, n * es + 16));
  float *h = malloc(blk * sizeof(float) + 4);
  void *hc = malloc(blk * es + 4);
  if (!h || !hc) {
    fprintf(stderr, "bench: out of host memory\n");
    exit(1);
  }
  for (size_t i = 0; i < blk; i++)
    h[i] = (float)(mean + std * normal());
  OK(mb_convert(hc, dt, h, MB_F32, blk));
  CK(cudaMemcpy(dev, hc, blk * es, cudaMemcpyHostToDevice));
  for (size_t have = blk; have < n;) {
    const size_t c = have < n - have ? have : n - have;
    CK(cudaMemcpy((char *)dev + have * es, dev, c * es, cudaMemcpyDeviceToDevice));
    have += c;
  }
  free(h);
  free(hc);
  return dev;
}

static int cmp_float(const void *a, const void *b) {
  const float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

/* ---- what one timed call does ---- */

typedef struct {
  mb_scan_desc sd;
  mb_conv1d_desc cd;
  mb_dtype dt;
  mb_cuda_scan_in in;
  void *y, *dy, *ws, *cws, *cw, *cb, *cdx, *cdw, *cdb;
  float *states;
  mb_cuda_scan_grad g;
  size_t ws_bytes, cws_bytes;
  cudaStream_t s;
} problem;

enum { RUN_SCAN_FWD, RUN_SCAN_BWD, RUN_CONV_FWD, RUN_CONV_BWD };

static void run(problem *p, int what) {
  switch (what) {
  case RUN_SCAN_FWD: OK(mb_cuda_scan_fwd(&p->sd, p->dt, MB_F32, &p->in, p->y, p->states, p->s)); break;
  case RUN_SCAN_BWD:
    OK(mb_cuda_scan_bwd(&p->sd, p->dt, MB_F32, &p->in, p->states, p->dy, &p->g, p->ws, p->ws_bytes, p->s));
    break;
  case RUN_CONV_FWD: OK(mb_cuda_conv1d_fwd(&p->cd, p->dt, MB_F32, p->in.u, p->cw, p->cb, p->y, p->s)); break;
  default:
    OK(mb_cuda_conv1d_bwd(&p->cd, p->dt, MB_F32, p->in.u, p->cw, p->cb, p->dy, p->cdx, p->cdw, p->cdb, p->cws,
                          p->cws_bytes, p->s));
    break;
  }
}

/* Median milliseconds of `reps` calls, each between two events. */
static double time_ms(problem *p, int what, int reps) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  float *t = malloc((size_t)reps * sizeof(float));
  for (int r = 0; r < reps; r++) {
    CK(cudaEventRecord(a, p->s));
    run(p, what);
    CK(cudaEventRecord(b, p->s));
    CK(cudaEventSynchronize(b));
    CK(cudaEventElapsedTime(&t[r], a, b));
  }
  qsort(t, (size_t)reps, sizeof(float), cmp_float);
  const double med = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
  free(t);
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  return med;
}

/* Device-to-device copy bandwidth (bytes read + written per second). */
static double copy_gbps(size_t bytes, cudaStream_t s) {
  void *a = NULL, *b = NULL;
  CK(cudaMalloc(&a, bytes));
  CK(cudaMalloc(&b, bytes));
  CK(cudaMemset(a, 0x3c, bytes));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  float t[10];
  for (int r = -2; r < 10; r++) {
    CK(cudaEventRecord(e0, s));
    CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s));
    CK(cudaEventRecord(e1, s));
    CK(cudaEventSynchronize(e1));
    if (r >= 0)
      CK(cudaEventElapsedTime(&t[r], e0, e1));
  }
  qsort(t, 10, sizeof(float), cmp_float);
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  CK(cudaFree(a));
  CK(cudaFree(b));
  return 2.0 * (double)bytes / (0.5 * (t[4] + t[5]) * 1e-3) / 1e9;
}

static void usage(void) {
  fprintf(stderr, "usage: bench_cuda_selective_scan [--json PATH] [--batch B] [--dim D] [--dstate N] "
                  "[--dtype bf16|f16|f32] [--min-len L] [--max-len L] [--budget SECONDS]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *json_path = NULL, *dtname = "bf16";
  int batch = 8, dim = 1536, dstate = 16;
  long min_len = 256, max_len = 65536;
  double budget = 60;
  for (int i = 1; i < argc; i++) {
    if (i + 1 >= argc)
      usage();
    if (!strcmp(argv[i], "--json"))
      json_path = argv[++i];
    else if (!strcmp(argv[i], "--batch"))
      batch = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--dim"))
      dim = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--dstate"))
      dstate = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--dtype"))
      dtname = argv[++i];
    else if (!strcmp(argv[i], "--min-len"))
      min_len = atol(argv[++i]);
    else if (!strcmp(argv[i], "--max-len"))
      max_len = atol(argv[++i]);
    else if (!strcmp(argv[i], "--budget"))
      budget = atof(argv[++i]);
    else
      usage();
  }
  mb_dtype dt;
  if (mb_dtype_from_name(dtname, &dt) != MB_OK || (dt != MB_BF16 && dt != MB_F16 && dt != MB_F32)) {
    fprintf(stderr, "bench: --dtype must be bf16, f16 or f32\n");
    return 2;
  }
  if (batch < 1 || dim < 1 || dstate < 1 || min_len < 1 || max_len < min_len)
    usage();

  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
    printf("bench_cuda_selective_scan: no CUDA device: skipping\n");
    return 77;
  }
  struct cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  int clock_khz = 0;
  CK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0));
  size_t free_b = 0, total_b = 0;
  CK(cudaMemGetInfo(&free_b, &total_b));
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  const double t_start = now_s();
  size_t cbytes = free_b / 8 < ((size_t)2 << 30) ? free_b / 8 : ((size_t)2 << 30);
  const double copy = copy_gbps(cbytes, s);
  /* the exponentials' floor: 16 MUFU.EX2 per clock per SM at the boost clock */
  const double ex2_per_s = (double)prop.multiProcessorCount * 16.0 * (double)clock_khz * 1e3;
  printf("bench_cuda_selective_scan: %s, %d SMs, %.0f MHz, %.1f GiB; copy bandwidth %.0f GB/s (%.2f GB copied, "
         "read + write); exp floor %.2f Tex2/s\n",
         prop.name, prop.multiProcessorCount, clock_khz / 1e3, (double)total_b / (1 << 30), copy, 2.0 * cbytes / 1e9,
         ex2_per_s / 1e12);
  printf("shape: batch %d, d_inner %d, d_state %d, %s activations, f32 parameters and states; conv1d width 4\n", batch,
         dim, dstate, mb_dtype_name(dt));
  fflush(stdout);

  json_t *results = json_array();
  const char *stopped = "max-len reached";
  const size_t es = mb_dtype_size(dt);
  for (long L = min_len; L <= max_len; L *= 2) {
    problem p;
    memset(&p, 0, sizeof p);
    p.dt = dt;
    p.s = s;
    p.sd = (mb_scan_desc){.batch = batch, .seqlen = (int)L, .dim = dim, .dstate = dstate, .delta_softplus = 1};
    p.cd = (mb_conv1d_desc){.batch = batch, .seqlen = (int)L, .dim = dim, .width = 4, .silu = 1};
    const size_t nx = (size_t)batch * L * dim, nbc = (size_t)batch * L * dstate, dn = (size_t)dim * dstate;
    const size_t nst = mb_cuda_scan_states_numel(&p.sd);
    p.ws_bytes = mb_cuda_scan_bwd_workspace(&p.sd);
    p.cws_bytes = mb_cuda_conv1d_bwd_workspace(&p.cd);
    /* u delta z dy y du ddelta dz, B C dB dC, states, both workspaces, slack */
    const size_t need = 8 * nx * es + 4 * nbc * es + nst * 4 + p.ws_bytes + p.cws_bytes + ((size_t)64 << 20);
    CK(cudaMemGetInfo(&free_b, &total_b));
    if (need > free_b / 100 * 90) {
      printf("L = %ld needs %.1f GB, %.1f GB free: stopping\n", L, need / 1e9, free_b / 1e9);
      stopped = "memory";
      break;
    }
    p.in.u = dev_random(nx, dt, 0, 1);
    p.in.delta = dev_random(nx, dt, -1, 0.5);
    p.in.z = dev_random(nx, dt, 0, 1);
    p.in.B = dev_random(nbc, dt, 0, 1);
    p.in.C = dev_random(nbc, dt, 0, 1);
    p.dy = dev_random(nx, dt, 0, 1);
    {
      float *al = malloc(dn * sizeof(float));
      for (size_t i = 0; i < dn; i++)
        al[i] = (float)log(1.0 + (double)(i % (size_t)dstate));
      void *d = NULL;
      CK(cudaMalloc(&d, dn * sizeof(float)));
      CK(cudaMemcpy(d, al, dn * sizeof(float), cudaMemcpyHostToDevice));
      p.in.A_log = d;
      free(al);
    }
    p.in.D = dev_random((size_t)dim, MB_F32, 0, 1);
    p.in.delta_bias = dev_random((size_t)dim, MB_F32, 0, 0.5);
    p.cw = dev_random((size_t)dim * 4, MB_F32, 0, 0.5);
    p.cb = dev_random((size_t)dim, MB_F32, 0, 0.5);
    CK(cudaMalloc(&p.y, nx * es));
    CK(cudaMalloc((void **)&p.states, nst * 4 + 16));
    CK(cudaMalloc(&p.g.du, nx * es));
    CK(cudaMalloc(&p.g.ddelta, nx * es));
    CK(cudaMalloc(&p.g.dz, nx * es));
    CK(cudaMalloc(&p.g.dB, nbc * es));
    CK(cudaMalloc(&p.g.dC, nbc * es));
    CK(cudaMalloc(&p.g.dA_log, dn * 4));
    CK(cudaMalloc(&p.g.dD, (size_t)dim * 4));
    CK(cudaMalloc(&p.g.ddelta_bias, (size_t)dim * 4));
    CK(cudaMalloc(&p.ws, p.ws_bytes + 16));
    p.cdx = p.g.du; /* conv1d's dx may reuse a scan gradient buffer: timed separately */
    CK(cudaMalloc(&p.cdw, (size_t)dim * 4 * 4));
    CK(cudaMalloc(&p.cdb, (size_t)dim * 4));
    CK(cudaMalloc(&p.cws, p.cws_bytes + 16));

    /* warm-up (module load, smem attributes) and the repeat count */
    const double w0 = now_s();
    for (int k = 0; k < 4; k++)
      run(&p, k);
    CK(cudaStreamSynchronize(s));
    CK(cudaGetLastError());
    const double once = now_s() - w0;
    int reps = once > 0 ? (int)(0.4 / once) : 20;
    reps = reps < 3 ? 3 : reps > 20 ? 20 : reps;
    if (now_s() - t_start + 2 * reps * once > budget) {
      printf("L = %ld would exceed the %.0f s budget: stopping\n", L, budget);
      stopped = "time budget";
      reps = 0;
    }
    if (reps) {
      const double fwd = time_ms(&p, RUN_SCAN_FWD, reps), bwd = time_ms(&p, RUN_SCAN_BWD, reps);
      const double cfwd = time_ms(&p, RUN_CONV_FWD, reps), cbwd = time_ms(&p, RUN_CONV_BWD, reps);
      CK(cudaGetLastError());
      const double params = (double)(dn + 2 * (size_t)dim) * 4;
      const double fwd_bytes = 4.0 * nx * es + 2.0 * nbc * es + nst * 4.0 + params;
      const double bwd_bytes = 7.0 * nx * es + 4.0 * nbc * es + nst * 4.0 + 2 * params;
      const double cfwd_bytes = 2.0 * nx * es, cbwd_bytes = 3.0 * nx * es;
      const double ex2_ms = (double)nx * dstate / ex2_per_s * 1e3;
      mb_scan_plan pl; /* rows split into parts when the grid would be small (batch 1, say) */
      mb_scan_plan_make(&p.sd, &pl);
      json_t *r =
          json_pack("{s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "L", (int)L,
                    "parts", pl.parts, "reps", reps,
                    "fwd_ms", fwd, "bwd_ms", bwd, "fwd_bytes", fwd_bytes, "bwd_bytes", bwd_bytes, "fwd_gbps",
                    fwd_bytes / fwd / 1e6, "bwd_gbps", bwd_bytes / bwd / 1e6, "exp_floor_ms", ex2_ms, "tokens_per_s",
                    (double)batch * L / ((fwd + bwd) * 1e-3), "conv_fwd_ms", cfwd, "conv_bwd_ms", cbwd, "conv_fwd_gbps",
                    cfwd_bytes / cfwd / 1e6, "conv_bwd_gbps", cbwd_bytes / cbwd / 1e6);
      json_array_append_new(results, r);
      printf("L %6ld: scan fwd %9.3f ms (%5.0f GB/s, %3.0f%% of copy; exp floor %7.3f ms)  bwd %9.3f ms (%5.0f GB/s, "
             "%3.0f%%; exp floor %7.3f ms)  conv fwd %7.3f ms (%4.0f%%) bwd %7.3f ms (%4.0f%%)  [%d reps, %d part%s]\n",
             L, fwd, fwd_bytes / fwd / 1e6, 100 * fwd_bytes / fwd / 1e6 / copy, ex2_ms, bwd, bwd_bytes / bwd / 1e6,
             100 * bwd_bytes / bwd / 1e6 / copy, ex2_ms, cfwd, 100 * cfwd_bytes / cfwd / 1e6 / copy, cbwd,
             100 * cbwd_bytes / cbwd / 1e6 / copy, reps, pl.parts, pl.parts > 1 ? "s" : "");
      fflush(stdout);
    }
    void *bufs[] = {(void *)p.in.u,
                    (void *)p.in.delta,
                    (void *)p.in.z,
                    (void *)p.in.B,
                    (void *)p.in.C,
                    p.dy,
                    (void *)p.in.A_log,
                    (void *)p.in.D,
                    (void *)p.in.delta_bias,
                    p.cw,
                    p.cb,
                    p.y,
                    p.states,
                    p.g.du,
                    p.g.ddelta,
                    p.g.dz,
                    p.g.dB,
                    p.g.dC,
                    p.g.dA_log,
                    p.g.dD,
                    p.g.ddelta_bias,
                    p.ws,
                    p.cdw,
                    p.cdb,
                    p.cws};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
      CK(cudaFree(bufs[i]));
    if (!reps)
      break;
  }

  /* the table again, last, so the end of the output has it */
  printf("\n%-8s %10s %10s %8s %8s %10s %10s %10s\n", "L", "fwd ms", "bwd ms", "fwd %cp", "bwd %cp", "exp ms",
         "conv f ms", "conv b ms");
  size_t i;
  json_t *r;
  json_array_foreach(results, i, r) {
    const double fwd = json_real_value(json_object_get(r, "fwd_ms")),
                 bwd = json_real_value(json_object_get(r, "bwd_ms"));
    printf("%-8d %10.3f %10.3f %7.0f%% %7.0f%% %10.3f %10.3f %10.3f\n",
           (int)json_integer_value(json_object_get(r, "L")), fwd, bwd,
           100 * json_real_value(json_object_get(r, "fwd_gbps")) / copy,
           100 * json_real_value(json_object_get(r, "bwd_gbps")) / copy,
           json_real_value(json_object_get(r, "exp_floor_ms")), json_real_value(json_object_get(r, "conv_fwd_ms")),
           json_real_value(json_object_get(r, "conv_bwd_ms")));
  }
  printf("stopped: %s; %.1f s\n", stopped, now_s() - t_start);
  if (json_path) {
    json_t *root =
        json_pack("{s:s, s:{s:s, s:i, s:i, s:i, s:f}, s:f, s:f, s:{s:i, s:i, s:i, s:s, s:i}, s:o, s:s}", "bench",
                  "cuda_selective_scan", "device", "name", prop.name, "sm_count", prop.multiProcessorCount, "cc",
                  prop.major * 10 + prop.minor, "clock_khz", clock_khz, "total_gib", (double)total_b / (1 << 30),
                  "copy_gbps", copy, "ex2_per_s", ex2_per_s, "config", "batch", batch, "dim", dim, "dstate", dstate,
                  "dtype", mb_dtype_name(dt), "conv_width", 4, "results", results, "stopped", stopped);
    if (!root || json_dump_file(root, json_path, JSON_INDENT(2)) != 0) {
      fprintf(stderr, "bench: cannot write %s\n", json_path);
      return 1;
    }
    json_decref(root);
    printf("wrote %s\n", json_path);
  } else {
    json_decref(results);
  }
  CK(cudaStreamDestroy(s));
  return 0;
}

#endif
