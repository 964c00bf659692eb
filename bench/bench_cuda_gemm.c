/* bench_cuda_gemm.c: GEMM throughput through mambert's cuBLASLt path
 * (kernels/cuda/gemm.h) at BERT-base Linear shapes, bf16 and fp8:
 *   y[M, N] = x[M, K] @ w[N, K]^T, M = batch x tokens in 4096, 8192, 16384,
 *   (K, N) in (768, 768) attention projections, (768, 3072) FFN up,
 *   (3072, 768) FFN down;
 * bf16 x bf16 -> bf16 and e4m3 x e4m3 -> bf16 (per-tensor scales), f32
 * accumulation. Each: 10 warm-up products, then 3 repeats of 20 timed with
 * CUDA events, median; TFLOP/s = 2MNK / time. An 8192^3 bf16 product gives
 * the card's measured bf16 ceiling (reported beside). torch.matmul and
 * torch._scaled_mm at the same shapes run in tools/bench_torch_peers.py.
 * Inputs are random (never zeros: zeros run faster than data).
 *
 * Usage: bench_cuda_gemm [--json PATH]   (default bench_cuda_gemm.json) */
#include "mambert_build_config.h"

#include <stdio.h>

#if !MAMBERT_HAVE_CUDA
int main(void) {
  printf("bench_cuda_gemm: built without CUDA: nothing to measure\n");
  return 77;
}
#else

#include <cuda_runtime_api.h>

#include "bench_cuda_util.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/gemm.h"
#include "runtime/cuda_alloc.h"
#include "runtime/philox.h"

#define CU(call)                                                                                 \
  do {                                                                                           \
    cudaError_t e_ = (call);                                                                     \
    if (e_ != cudaSuccess) {                                                                     \
      fprintf(stderr, "bench: %s failed: %s\n", #call, cudaGetErrorString(e_));                  \
      exit(1);                                                                                   \
    }                                                                                            \
  } while (0)

static mb_gemm_ctx *ctx;
static cudaStream_t stream;

/* Median milliseconds of one product. */
static double time_gemm(const mb_gemm_desc *d) {
  cudaEvent_t a, b;
  CU(cudaEventCreate(&a));
  CU(cudaEventCreate(&b));
  for (int i = 0; i < 10; i++)
    BCHECK(mb_gemm(ctx, d, stream));
  double t[3];
  for (int r = 0; r < 3; r++) {
    CU(cudaEventRecord(a, stream));
    for (int i = 0; i < 20; i++)
      BCHECK(mb_gemm(ctx, d, stream));
    CU(cudaEventRecord(b, stream));
    CU(cudaEventSynchronize(b));
    float ms;
    CU(cudaEventElapsedTime(&ms, a, b));
    t[r] = ms / 20.0;
  }
  CU(cudaEventDestroy(a));
  CU(cudaEventDestroy(b));
  return bench_median(t, 3);
}

/* n random bf16 values (std s) in a new device buffer. */
static void *random_bf16(size_t n, float s, uint64_t seed) {
  float *h = malloc(n * sizeof *h);
  uint16_t *b = malloc(n * sizeof *b);
  mb_philox_fill_normal(seed, 0, h, n, 0.0f, s);
  BCHECK(mb_convert(b, MB_BF16, h, MB_F32, n));
  void *d;
  CU(cudaMalloc(&d, n * 2));
  CU(cudaMemcpy(d, b, n * 2, cudaMemcpyHostToDevice));
  free(h), free(b);
  return d;
}

int main(int argc, char **argv) {
  const char *json_path = bench_arg(argc, argv, "--json", "bench_cuda_gemm.json");
  char desc[512];
  mb_cuda_device_info info;
  bench_require_gpu("bench_cuda_gemm", desc, sizeof desc, &info);
  BCHECK(mb_cuda_set_device(0));
  mb_device_allocator *alloc;
  BCHECK(mb_cuda_allocator_create(0, &alloc));
  BCHECK(mb_gemm_ctx_create(alloc, 0, &ctx));
  CU(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  int fp8_ok = info.cc_major * 10 + info.cc_minor >= 89;

  const int64_t Ms[3] = {4096, 8192, 16384};
  const int64_t KN[3][2] = {{768, 768}, {768, 3072}, {3072, 768}};
  const size_t max_a = 16384 * 3072, max_b = 3072 * 768, max_c = 16384 * 3072;
  void *x = random_bf16(max_a, 1.0f, 1), *w = random_bf16(max_b, 0.03f, 2), *y;
  CU(cudaMalloc(&y, max_c * 2));
  uint8_t *xq, *wq;
  mb_fp8_meta *meta;
  CU(cudaMalloc((void **)&xq, max_a));
  CU(cudaMalloc((void **)&wq, max_b));
  CU(cudaMalloc((void **)&meta, 2 * sizeof *meta));
  BCHECK(mb_cuda_fp8_meta_init(meta, 2, stream));
  /* scales from the data (one quantise + update), as delayed scaling would settle */
  BCHECK(mb_cuda_fp8_quantize(xq, MB_F8E4M3, x, MB_BF16, 16384, 3072, 0, &meta[0], stream));
  BCHECK(mb_cuda_fp8_quantize(wq, MB_F8E4M3, w, MB_BF16, 3072, 768, 0, &meta[1], stream));
  BCHECK(mb_cuda_fp8_update(meta, 2, MB_F8E4M3, 0, stream));
  BCHECK(mb_cuda_fp8_quantize(xq, MB_F8E4M3, x, MB_BF16, 16384, 3072, 0, &meta[0], stream));
  BCHECK(mb_cuda_fp8_quantize(wq, MB_F8E4M3, w, MB_BF16, 3072, 768, 0, &meta[1], stream));
  CU(cudaStreamSynchronize(stream));

  bench_json j;
  int have_json = bench_json_open(&j, json_path, "cuda_gemm", desc) == 0;
  printf("\nGEMM y = x @ w^T (BERT-base Linear shapes), f32 accumulation, on %s\n", desc);
  printf("%6s %6s %6s %-6s %10s %10s\n", "M", "K", "N", "type", "ms", "TFLOP/s");

  /* the measured ceiling: 8192^3 bf16 (x and w reused as 8192 x 8192 views) */
  void *big_a = random_bf16((size_t)8192 * 8192, 1.0f, 3), *big_b = random_bf16((size_t)8192 * 8192, 0.03f, 4), *big_c;
  CU(cudaMalloc(&big_c, (size_t)8192 * 8192 * 2));
  mb_gemm_desc d;
  memset(&d, 0, sizeof d);
  d.trans_b = 1;
  d.m = d.n = d.k = 8192;
  d.a_type = d.b_type = d.c_type = MB_BF16;
  d.a = big_a, d.b = big_b, d.c = big_c;
  d.alpha = 1.0;
  double ms_peak = time_gemm(&d), tf_peak = 2.0 * 8192.0 * 8192.0 * 8192.0 / (ms_peak * 1e-3) / 1e12;
  printf("%6d %6d %6d %-6s %10.4f %10.1f  (the measured bf16 ceiling)\n", 8192, 8192, 8192, "bf16", ms_peak, tf_peak);
  if (have_json)
    bench_json_row(&j,
                   "{\"impl\": \"mambert\", \"M\": 8192, \"K\": 8192, \"N\": 8192, \"type\": \"bf16\", \"ms\": %.5f, "
                   "\"tflops\": %.2f, \"ceiling\": true}",
                   ms_peak, tf_peak);
  CU(cudaFree(big_a));
  CU(cudaFree(big_b));
  CU(cudaFree(big_c));

  for (int mi = 0; mi < 3; mi++)
    for (int s = 0; s < 3; s++)
      for (int t = 0; t < 2; t++) {
        if (t == 1 && !fp8_ok)
          continue;
        int64_t M = Ms[mi], K = KN[s][0], N = KN[s][1];
        memset(&d, 0, sizeof d);
        d.trans_b = 1;
        d.m = M, d.n = N, d.k = K;
        d.c_type = MB_BF16;
        d.c = y;
        d.alpha = 1.0;
        if (t == 0) {
          d.a_type = d.b_type = MB_BF16;
          d.a = x, d.b = w;
        } else {
          d.a_type = d.b_type = MB_F8E4M3;
          d.a = xq, d.b = wq;
          d.a_scale = &meta[0].scale_inv;
          d.b_scale = &meta[1].scale_inv;
        }
        double ms = time_gemm(&d), tf = 2.0 * (double)M * (double)N * (double)K / (ms * 1e-3) / 1e12;
        const char *tn = t ? "fp8" : "bf16";
        printf("%6lld %6lld %6lld %-6s %10.4f %10.1f\n", (long long)M, (long long)K, (long long)N, tn, ms, tf);
        if (have_json)
          bench_json_row(&j,
                         "{\"impl\": \"mambert\", \"M\": %lld, \"K\": %lld, \"N\": %lld, \"type\": \"%s\", "
                         "\"ms\": %.5f, \"tflops\": %.2f}",
                         (long long)M, (long long)K, (long long)N, tn, ms, tf);
      }
  if (!fp8_ok)
    printf("fp8: needs sm_89 or later (this is sm_%d%d)\n", info.cc_major, info.cc_minor);
  if (have_json)
    bench_json_close(&j);
  CU(cudaFree(x));
  CU(cudaFree(w));
  CU(cudaFree(y));
  CU(cudaFree(xq));
  CU(cudaFree(wq));
  CU(cudaFree(meta));
  mb_gemm_ctx_destroy(ctx);
  alloc->destroy(alloc);
  CU(cudaStreamDestroy(stream));
  return 0;
}
#endif
