/* cuda_common.cuh: what the .cu files of kernels/cuda share: element-type
 * loads and stores (f32, bf16, f16 in memory, f32 in registers), block
 * reductions, grid sizing, the device-side error report, and the dtype
 * switch that instantiates a kernel template for each supported type.
 *
 * Style: kernels are plain CUDA C. The only C++ used is a function template
 * per kernel over the element type T (float, bf16, f16), instantiated by
 * MB_CUDA_DISPATCH_FLOAT; this keeps one readable body per kernel instead
 * of a macro per type. Launchers are extern "C" and return MB_OK or an
 * MB_E* status (launch failures name the kernel).
 */
#ifndef MB_KERNELS_CUDA_COMMON_CUH
#define MB_KERNELS_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/cuda/cuda_kernels.h"
#include "runtime/cuda_check.h"
#include "runtime/dtype.h"

typedef __nv_bfloat16 mb_bf16;
typedef __half mb_f16;

/* ---- element access: compute in f32, store rounded once (RN) ---- */

__device__ __forceinline__ float mb_ld(const float *p, int64_t i) { return p[i]; }
__device__ __forceinline__ float mb_ld(const mb_bf16 *p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ float mb_ld(const mb_f16 *p, int64_t i) { return __half2float(p[i]); }

__device__ __forceinline__ void mb_st(float *p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void mb_st(mb_bf16 *p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }
__device__ __forceinline__ void mb_st(mb_f16 *p, int64_t i, float v) { p[i] = __float2half_rn(v); }

/* Integer ids / labels stored as i32 or i64. */
__device__ __forceinline__ int64_t mb_ld_index(const void *p, int is64, int64_t i) {
  return is64 ? ((const int64_t *)p)[i] : (int64_t)((const int32_t *)p)[i];
}

/* A mask or weight of any supported dtype as a float (mean pooling). */
__device__ __forceinline__ float mb_ld_any(const void *p, mb_dtype dt, int64_t i) {
  switch (dt) {
  case MB_F32: return ((const float *)p)[i];
  case MB_F64: return (float)((const double *)p)[i];
  case MB_BF16: return __bfloat162float(((const mb_bf16 *)p)[i]);
  case MB_F16: return __half2float(((const mb_f16 *)p)[i]);
  case MB_I32: return (float)((const int32_t *)p)[i];
  case MB_I64: return (float)((const int64_t *)p)[i];
  case MB_U8:
  case MB_BOOL: return (float)((const uint8_t *)p)[i];
  default: return 1.0f;
  }
}

/* ---- grid sizing ---- */

#define MB_CUDA_THREADS 256
/* Blocks for a grid-stride loop over n items: enough to fill any GPU,
 * capped so the grid stays well inside CUDA's limits. */
static inline unsigned mb_cuda_blocks(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1)
    b = 1;
  if (b > 65536)
    b = 65536;
  return (unsigned)b;
}

#define MB_GRID_STRIDE_LOOP(i, n)                                                              \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                    \
       i += (int64_t)blockDim.x * gridDim.x)

/* ---- reductions (fixed trees: the same result on every run) ---- */

__device__ __forceinline__ float mb_warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float mb_warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ double mb_warp_sum_d(double v) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/* Sum / max over the whole block (blockDim.x a multiple of 32, at most
 * 1024); every thread gets the result. `scratch` holds 32 values and may be
 * reused right after the call returns. */
__device__ __forceinline__ float mb_block_sum(float v, float *scratch) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = mb_warp_sum(v);
  __syncthreads(); /* scratch may still be read by a previous call */
  if (lane == 0)
    scratch[warp] = v;
  __syncthreads();
  v = lane < nwarps ? scratch[lane] : 0.0f;
  return mb_warp_sum(v);
}

__device__ __forceinline__ float mb_block_max(float v, float *scratch) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = mb_warp_max(v);
  __syncthreads();
  if (lane == 0)
    scratch[warp] = v;
  __syncthreads();
  v = lane < nwarps ? scratch[lane] : -INFINITY;
  return mb_warp_max(v);
}

__device__ __forceinline__ double mb_block_sum_d(double v, double *scratch) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = mb_warp_sum_d(v);
  __syncthreads();
  if (lane == 0)
    scratch[warp] = v;
  __syncthreads();
  v = lane < nwarps ? scratch[lane] : 0.0;
  return mb_warp_sum_d(v);
}

/* ---- device-side errors (bad ids, labels): the first one wins ---- */

__device__ __forceinline__ void mb_cuda_report(mb_cuda_err_rec *e, int code, int what, long long index,
                                               long long value, long long bound) {
  if (e && atomicCAS(&e->code, 0, code) == 0) {
    e->what = what;
    e->index = index;
    e->value = value;
    e->bound = bound;
  }
}

/* ---- dtype switch over the float storage types ---- */

/* Expands `call` with T bound to the element type of dt (f32, bf16, f16);
 * anything else returns MB_EUNSUPPORTED naming `what` and the dtype. */
#define MB_CUDA_DISPATCH_FLOAT(dt, what, ...)                                                    \
  switch (dt) {                                                                                  \
  case MB_F32: {                                                                                 \
    typedef float T;                                                                             \
    __VA_ARGS__;                                                                                 \
    break;                                                                                       \
  }                                                                                              \
  case MB_BF16: {                                                                                \
    typedef mb_bf16 T;                                                                           \
    __VA_ARGS__;                                                                                 \
    break;                                                                                       \
  }                                                                                              \
  case MB_F16: {                                                                                 \
    typedef mb_f16 T;                                                                            \
    __VA_ARGS__;                                                                                 \
    break;                                                                                       \
  }                                                                                              \
  default:                                                                                       \
    return MB_ERR(MB_EUNSUPPORTED, "cuda %s: no kernel for dtype %s (f32, bf16, f16 only)", (what), \
                  mb_dtype_name(dt));                                                            \
  }

#endif
