/* gemm.h: matrix products through cuBLASLt with row-major semantics (built
 * with CUDA only).
 *
 *   C[m, n] = alpha * op(A)[m, k] @ op(B)[k, n] + beta * C   (+ epilogue)
 *
 * with every matrix row-major as our tensors are (A is [m, k], or [k, m]
 * when trans_a; B is [k, n], or [n, k] when trans_b: a PyTorch Linear
 * weight [out, in] is B with trans_b = 1). cuBLASLt is column-major; the
 * product is computed as C^T = op(B)^T op(A)^T, which reads the same
 * memory, so no copy or transpose is ever made.
 *
 * Types (A, B -> C), all accumulating in f32 (f64 for f64):
 *   f32 x f32 -> f32          math MB_GEMM_DEFAULT: full f32; MB_GEMM_TF32: tf32 tensor cores
 *   f64 x f64 -> f64
 *   bf16 x bf16 -> bf16 or f32
 *   f16 x f16 -> f16 or f32
 *   e4m3 x e4m3, e4m3 x e5m2, e5m2 x e4m3 -> bf16, f16 or f32 (sm_89+), with
 *     per-tensor dequantisation factors a_scale, b_scale (device floats,
 *     typically mb_fp8_meta.scale_inv); cuBLASLt requires trans_a = 0 and
 *     trans_b = 1 (the Linear forward layout) and k, lda, ldb multiples of 16.
 * Batched: batch > 1 with element strides between the matrices.
 * Epilogues where cuBLASLt has them (bias[n] added to every row; GELU is
 * cuBLASLt's, see the tests for which form the device computes; the AUX
 * forms also store the pre-activation in aux, which the DGELU forms read
 * back to multiply the product by GELU'(aux); the BGRAD forms write a bias
 * gradient into `bias`).
 *
 * The heuristic's algorithm (and the descriptors) are cached per shape,
 * types, epilogue and pointer alignments; the workspace (32 MiB, Hopper's
 * recommendation) is taken once from the device allocator when the context
 * is made, so mb_gemm never allocates and can be captured in a CUDA graph.
 */
#ifndef MB_KERNELS_CUDA_GEMM_H
#define MB_KERNELS_CUDA_GEMM_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/alloc.h"
#include "runtime/cuda_device.h"
#include "runtime/dtype.h"
#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { MB_GEMM_DEFAULT = 0, MB_GEMM_TF32 = 1 } mb_gemm_math;

typedef enum {
  MB_EPI_NONE = 0,
  MB_EPI_BIAS,          /* + bias[n] */
  MB_EPI_RELU,
  MB_EPI_RELU_BIAS,
  MB_EPI_GELU,
  MB_EPI_GELU_BIAS,
  MB_EPI_GELU_AUX,      /* aux = pre-activation, C = gelu(aux) */
  MB_EPI_GELU_AUX_BIAS, /* aux = product + bias, C = gelu(aux) */
  MB_EPI_DGELU,         /* C = product * gelu'(aux) */
  MB_EPI_DGELU_BGRAD,   /* and bias[n] = sum over rows of C */
  MB_EPI_BGRAD_A,       /* bias[m] = sum over k of op(A)[m, :] (e.g. db of dW = dY^T X) */
  MB_EPI_BGRAD_B,       /* bias[n] = sum over k of op(B)[:, n] */
  MB_EPI_COUNT
} mb_gemm_epilogue;

typedef struct {
  int trans_a, trans_b;
  int64_t m, n, k;
  int64_t batch;                        /* 0 or 1: one product */
  int64_t stride_a, stride_b, stride_c; /* elements between batch members */
  int64_t lda, ldb, ldc;                /* row pitch in elements; 0 = packed */
  mb_dtype a_type, b_type, c_type;
  mb_gemm_math math;
  const void *a, *b;
  void *c;
  double alpha, beta; /* beta != 0 reads C */
  mb_gemm_epilogue epilogue;
  void *bias;   /* epilogue vector: read (BIAS forms) or written (BGRAD forms), of c_type */
  void *aux;    /* GELU aux [m, n] of c_type with row pitch ld_aux (multiple of 8) */
  int64_t ld_aux;
  const float *a_scale, *b_scale; /* fp8 only: device pointers to dequantisation factors */
} mb_gemm_desc;

typedef struct mb_gemm_ctx mb_gemm_ctx;

/* A context for the current device: a cuBLASLt handle, a workspace of
 * ws_bytes (0 = 32 MiB) from `alloc` (kept until destroy), the cache. */
int mb_gemm_ctx_create(mb_device_allocator *alloc, size_t ws_bytes, mb_gemm_ctx **out) MB_NODISCARD;
void mb_gemm_ctx_destroy(mb_gemm_ctx *ctx);

/* Enqueue the product on stream s. MB_EUNSUPPORTED (with the shape, types
 * and epilogue in the message) when cuBLASLt has no algorithm for it. */
int mb_gemm(mb_gemm_ctx *ctx, const mb_gemm_desc *d, mb_cuda_stream s) MB_NODISCARD;

/* Heuristic cache statistics (tests). */
typedef struct {
  uint64_t lookups, misses;
  int entries;
} mb_gemm_cache_stats;
mb_gemm_cache_stats mb_gemm_ctx_stats(mb_gemm_ctx *ctx);

const char *mb_gemm_epilogue_name(mb_gemm_epilogue e);

#ifdef __cplusplus
}
#endif
#endif
