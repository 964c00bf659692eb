/* selective_scan_dev.cuh: the few device primitives the scan and conv1d
 * kernels use (thread and block index, barrier, warp shuffles, dynamic
 * shared memory, element loads and stores), spelled so that the same kernel
 * source compiles two ways:
 *  - with nvcc (__CUDACC__): CUDA's own builtins, nothing added;
 *  - as plain host C++ with SC_EMULATION defined: the kernels run on the
 *    CPU under the fiber emulator of tests/cuda/test_cuda_scan_emu.h, which
 *    defines the sc_* primitives and the element types before including
 *    this file. That lets the CPU-only test suite run the real kernel code
 *    (indexing, scans, reductions, barriers) against the CPU reference.
 * Everything is inside namespace SC_NS (different per mode), so the two
 * builds of the same templates never share a symbol.
 */
#ifndef MB_KERNELS_CUDA_SELECTIVE_SCAN_DEV_CUH
#define MB_KERNELS_CUDA_SELECTIVE_SCAN_DEV_CUH

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "runtime/dtype.h"

#if defined(__CUDACC__)

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#define SC_NS mb_scan_cuda_impl
#define SC_DEV __device__ __forceinline__
#define SC_KERNEL __global__
#define SC_BOUNDS(threads, min_blocks) __launch_bounds__(threads, min_blocks)
/* before a loop with a constant trip count: unroll it, so register arrays
 * indexed by its variable stay in registers */
#define SC_UNROLL _Pragma("unroll")
/* The block's dynamic shared memory as bytes, 16-byte aligned. */
#define SC_SMEM(name) extern __shared__ __align__(16) unsigned char name[]

namespace SC_NS {
typedef __nv_bfloat16 sc_bf16;
typedef __half sc_f16;
typedef float4 sc_float4;

SC_DEV int sc_tid() { return (int)threadIdx.x; }
SC_DEV long long sc_bid() { return (long long)blockIdx.x; }
SC_DEV long long sc_nblocks() { return (long long)gridDim.x; }
SC_DEV void sc_sync() { __syncthreads(); }
/* Full-warp shuffles: every lane of the warp must execute them. */
SC_DEV float sc_shfl(float v, int src_lane) { return __shfl_sync(0xffffffffu, v, src_lane); }
SC_DEV float sc_shfl_up(float v, int delta) { return __shfl_up_sync(0xffffffffu, v, (unsigned)delta); }
SC_DEV float sc_shfl_down(float v, int delta) { return __shfl_down_sync(0xffffffffu, v, (unsigned)delta); }
SC_DEV float sc_shfl_xor(float v, int mask) { return __shfl_xor_sync(0xffffffffu, v, mask); }

SC_DEV float sc_bf16_to_f32(sc_bf16 x) { return __bfloat162float(x); }
SC_DEV sc_bf16 sc_f32_to_bf16(float x) { return __float2bfloat16_rn(x); }
SC_DEV float sc_f16_to_f32(sc_f16 x) { return __half2float(x); }
SC_DEV sc_f16 sc_f32_to_f16(float x) { return __float2half_rn(x); }

/* 2^x on the special-function unit, results below 2^-126 flushed to zero
 * (like the CPU's mb_expf); plain exp2f adds denormal handling around
 * every MUFU.EX2, and the decays are the scan's hottest instruction. */
SC_DEV float sc_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

/* 16-byte shared-memory accesses (p 16-byte aligned). */
SC_DEV sc_float4 sc_ld4(const float *p) { return *reinterpret_cast<const float4 *>(p); }
SC_DEV void sc_st4(float *p, sc_float4 v) { *reinterpret_cast<float4 *>(p) = v; }
} // namespace SC_NS

#elif defined(SC_EMULATION)
/* tests/cuda/test_cuda_scan_emu.h has defined SC_NS, SC_DEV, SC_KERNEL,
 * SC_BOUNDS, SC_UNROLL, SC_SMEM and, inside SC_NS: sc_bf16, sc_f16, sc_float4, sc_tid,
 * sc_bid, sc_nblocks, sc_sync, the four shuffles, the conversions, sc_exp2,
 * sc_ld4 and sc_st4. */
#else
#error "selective_scan_dev.cuh: compile with nvcc, or define SC_EMULATION (tests only)"
#endif

namespace SC_NS {

/* ---- element loads and stores: f32 in registers, rounded once (RN) ---- */

SC_DEV float sc_ld(const float *p, size_t i) { return p[i]; }
SC_DEV float sc_ld(const sc_bf16 *p, size_t i) { return sc_bf16_to_f32(p[i]); }
SC_DEV float sc_ld(const sc_f16 *p, size_t i) { return sc_f16_to_f32(p[i]); }
SC_DEV void sc_st(float *p, size_t i, float v) { p[i] = v; }
SC_DEV void sc_st(sc_bf16 *p, size_t i, float v) { p[i] = sc_f32_to_bf16(v); }
SC_DEV void sc_st(sc_f16 *p, size_t i, float v) { p[i] = sc_f32_to_f16(v); }

/* Parameters (A_log, D, biases and their gradients) come in a dtype chosen
 * at run time; they are read once per block, so a switch costs nothing. */
SC_DEV float sc_ld_dt(const void *p, int dt, size_t i) {
  switch (dt) {
  case MB_BF16: return sc_bf16_to_f32(((const sc_bf16 *)p)[i]);
  case MB_F16: return sc_f16_to_f32(((const sc_f16 *)p)[i]);
  default: return ((const float *)p)[i];
  }
}
SC_DEV void sc_st_dt(void *p, int dt, size_t i, float v) {
  switch (dt) {
  case MB_BF16: ((sc_bf16 *)p)[i] = sc_f32_to_bf16(v); break;
  case MB_F16: ((sc_f16 *)p)[i] = sc_f32_to_f16(v); break;
  default: ((float *)p)[i] = v; break;
  }
}

/* ---- math, as the CPU reference writes it (kernels/cpu/vecmath.h) ---- */

SC_DEV float sc_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
/* softplus with PyTorch's threshold 20, in the stable form */
SC_DEV float sc_softplus(float x) { return x > 20.0f ? x : fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x))); }
/* d softplus / dx */
SC_DEV float sc_softplus_grad(float x) { return x <= 20.0f ? sc_sigmoid(x) : 1.0f; }

SC_DEV int sc_imin(int a, int b) { return a < b ? a : b; }

/* ---- sequence boundaries (varlen mode) ---- */

/* Index of the first s in [0, nseq) with cu[s] >= t (nseq if none). Only
 * cu[0 .. nseq-1] is read; a malformed (unsorted) array gives a wrong
 * answer, never an out-of-range read. */
SC_DEV int sc_lower_bound(const int32_t *cu, int nseq, long long t) {
  int lo = 0, hi = nseq;
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if ((long long)cu[mid] < t)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* Index of the first s in [0, nseq) with cu[s] > t (nseq if none). */
SC_DEV int sc_upper_bound(const int32_t *cu, int nseq, long long t) {
  int lo = 0, hi = nseq;
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if ((long long)cu[mid] <= t)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

} // namespace SC_NS

#endif
