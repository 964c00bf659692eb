/* tools/fp8_probe.c: which cuBLASLt fp8 (e4m3 x e4m3 -> bf16, "TN")
 * configurations run on this GPU: scale pointers 16-byte aligned or not,
 * C = D in place or C = NULL. A diagnostic for kernels/cuda/cuda_gemm.c,
 * built by tools/gpu_check.sh bundle; prints one line per variant. */
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>

static const char *run(cublasLtHandle_t lt, int m, int n, int k, int scale_off_a, int scale_off_b, int c_null,
                       void *ws, size_t wsb) {
  void *A, *B, *D;
  float *sc;
  cudaMalloc(&A, (size_t)m * k);
  cudaMalloc(&B, (size_t)n * k);
  cudaMalloc(&D, (size_t)m * n * 2);
  cudaMalloc((void **)&sc, 1024);
  cudaMemset(A, 0x38, (size_t)m * k); /* 1.0 in e4m3 */
  cudaMemset(B, 0x38, (size_t)n * k);
  float ones[256];
  for (int i = 0; i < 256; i++)
    ones[i] = 1.0f;
  cudaMemcpy(sc, ones, sizeof ones, cudaMemcpyHostToDevice);
  const float *sa = sc + scale_off_a, *sb = sc + 64 + scale_off_b;
  cublasLtMatmulDesc_t op;
  cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  cublasOperation_t t = CUBLAS_OP_T, nn = CUBLAS_OP_N;
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t);
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &nn, sizeof nn);
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sa, sizeof sa);
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sb, sizeof sb);
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatrixLayoutCreate(&la, CUDA_R_8F_E4M3, k, m, k);
  cublasLtMatrixLayoutCreate(&lb, CUDA_R_8F_E4M3, k, n, k);
  cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, m, n, m);
  cublasLtMatmulPreference_t pref;
  cublasLtMatmulPreferenceCreate(&pref);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb);
  cublasLtMatmulHeuristicResult_t h[8];
  int found = 0;
  cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 8, h, &found);
  static char buf[256];
  if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
    snprintf(buf, sizeof buf, "heuristic: status %d, %d found", (int)st, found);
  } else {
    float alpha = 1.0f, beta = 0.0f;
    int ok = 0, first = -1;
    for (int i = 0; i < found; i++) {
      cublasStatus_t s2 = cublasLtMatmul(lt, op, &alpha, A, la, B, lb, &beta, c_null ? NULL : D, lc, D, lc,
                                         &h[i].algo, ws, wsb, 0);
      if (s2 == CUBLAS_STATUS_SUCCESS) {
        ok++;
        if (first < 0)
          first = i;
      } else if (i == 0) {
        first = -(int)s2 - 100;
      }
    }
    cudaError_t e = cudaDeviceSynchronize();
    uint16_t out = 0;
    cudaMemcpy(&out, D, 2, cudaMemcpyDeviceToHost);
    uint32_t bits = (uint32_t)out << 16;
    float v;
    __builtin_memcpy(&v, &bits, 4);
    snprintf(buf, sizeof buf, "%d of %d candidates ran (first: %d), D[0] = %g (want %d), %s", ok, found, first, v, k,
             cudaGetErrorString(e));
  }
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(la), cublasLtMatrixLayoutDestroy(lb), cublasLtMatrixLayoutDestroy(lc);
  cublasLtMatmulDescDestroy(op);
  cudaFree(A), cudaFree(B), cudaFree(D), cudaFree(sc);
  return buf;
}

int main(void) {
  cublasLtHandle_t lt;
  if (cublasLtCreate(&lt) != CUBLAS_STATUS_SUCCESS) {
    printf("fp8_probe: no cuBLASLt handle (no GPU?)\n");
    return 77;
  }
  void *ws;
  size_t wsb = 32u << 20;
  cudaMalloc(&ws, wsb);
  const int shapes[2][3] = {{64, 48, 96}, {4096, 768, 768}};
  for (int s = 0; s < 2; s++) {
    int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
    /* our y[m, n] = x[m, k] w[n, k]^T is cuBLASLt's D[n, m] = W^T X: pass (n, m, k) */
    printf("[%d x %d x %d] scales aligned, C = D:     %s\n", m, n, k, run(lt, n, m, k, 0, 0, 0, ws, wsb));
    printf("[%d x %d x %d] scales aligned, C = NULL:  %s\n", m, n, k, run(lt, n, m, k, 0, 0, 1, ws, wsb));
    printf("[%d x %d x %d] A scale +4 B, C = NULL:    %s\n", m, n, k, run(lt, n, m, k, 1, 0, 1, ws, wsb));
    printf("[%d x %d x %d] B scale +4 B, C = NULL:    %s\n", m, n, k, run(lt, n, m, k, 0, 1, 1, ws, wsb));
    printf("[%d x %d x %d] A scale +8 B, C = D:       %s\n", m, n, k, run(lt, n, m, k, 2, 0, 0, ws, wsb));
  }
  cudaFree(ws);
  cublasLtDestroy(lt);
  return 0;
}
