/* test_cuda_attention_emu_shim.h: what the attention kernels take from the
 * CUDA toolkit's headers, for the host emulation on a machine without the
 * toolkit (kernels/cuda/attention_common.cuh includes this instead of
 * cuda_runtime.h, cuda_bf16.h, cuda_fp16.h, cuda_fp8.h and
 * runtime/cuda_check.h when ATTN_EMULATE_SHIM names it). The 16- and 8-bit
 * float types are storage plus conversions from runtime/dtype.h, which are
 * bit-exact with CUDA's (tests/runtime checks them against the toolkit's own
 * host code where it is installed). Only what the kernels use.
 */
#ifndef MB_TESTS_CUDA_ATTENTION_EMU_SHIM_H
#define MB_TESTS_CUDA_ATTENTION_EMU_SHIM_H

#include <stdint.h>
#include <string.h>

#include "runtime/dtype.h"
#include "runtime/error.h"
#include "runtime/log.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __align__(n) __attribute__((aligned(n)))

/* ---- vector types ---- */
struct dim3 {
  unsigned x, y, z;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct uint3 {
  unsigned x, y, z;
};
struct float2 {
  float x, y;
};
struct uint4 {
  unsigned x, y, z, w;
};
static inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return uint3{x, y, z}; }
static inline float2 make_float2(float x, float y) { return float2{x, y}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }

/* ---- 16- and 8-bit floats ---- */
struct __nv_bfloat16 {
  unsigned short __x;
};
struct __nv_bfloat162 {
  __nv_bfloat16 x, y;
};
struct __half {
  unsigned short __x;
};
struct __half2 {
  __half x, y;
};
static inline float __bfloat162float(__nv_bfloat16 h) { return mb_bf16_to_f32(h.__x); }
static inline __nv_bfloat16 __float2bfloat16_rn(float x) { return __nv_bfloat16{mb_f32_to_bf16(x)}; }
static inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
  return __nv_bfloat162{__float2bfloat16_rn(lo), __float2bfloat16_rn(hi)};
}
static inline float __half2float(__half h) { return mb_f16_to_f32(h.__x); }
static inline __half __float2half_rn(float x) { return __half{mb_f32_to_f16(x)}; }
static inline __half2 __floats2half2_rn(float lo, float hi) {
  return __half2{__float2half_rn(lo), __float2half_rn(hi)};
}

typedef unsigned short __nv_fp8x2_storage_t;
typedef unsigned char __nv_fp8_storage_t;
enum __nv_saturation_t { __NV_NOSAT = 0, __NV_SATFINITE = 1 };
enum __nv_fp8_interpretation_t { __NV_E4M3 = 0, __NV_E5M2 = 1 };
struct __nv_fp8_e4m3 {
  __nv_fp8_storage_t __x;
  explicit operator float() const { return mb_e4m3_to_f32(__x); }
};
/* x.x in the low byte, like CUDA's */
static inline __nv_fp8x2_storage_t __nv_cvt_float2_to_fp8x2(float2 v, __nv_saturation_t sat,
                                                            __nv_fp8_interpretation_t interp) {
  const mb_fp8_saturation s = sat == __NV_SATFINITE ? MB_FP8_SATFINITE : MB_FP8_NOSAT;
  const unsigned lo = interp == __NV_E4M3 ? mb_f32_to_e4m3(v.x, s) : mb_f32_to_e5m2(v.x, s);
  const unsigned hi = interp == __NV_E4M3 ? mb_f32_to_e4m3(v.y, s) : mb_f32_to_e5m2(v.y, s);
  return (__nv_fp8x2_storage_t)(lo | (hi << 8));
}

/* ---- the runtime API the launchers call (defined by the emulator) ---- */
typedef struct CUstream_st *cudaStream_t;
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorLaunchFailure = 719
};
enum cudaDeviceAttr {
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76
};
enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9
};
enum cudaSharedCarveout { cudaSharedmemCarveoutMaxShared = 100 };
struct cudaFuncAttributes {
  int binaryVersion, ptxVersion, numRegs;
};
cudaError_t cudaGetLastError(void);
const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);
cudaError_t cudaGetDevice(int *d);
cudaError_t cudaDeviceGetAttribute(int *v, enum cudaDeviceAttr attr, int dev);
cudaError_t cudaFuncSetAttribute(const void *func, enum cudaFuncAttribute attr, int value);
cudaError_t cudaFuncGetAttributes(struct cudaFuncAttributes *attr, const void *func);

/* runtime/cuda_check.h's checked call, without the toolkit's headers */
static inline int mb_cuda_status(cudaError_t e) { return e == cudaErrorMemoryAllocation ? MB_ENOMEM : MB_EDEVICE; }
#define MB_CUDA_TRY(call)                                                                                              \
  do {                                                                                                                 \
    cudaError_t mb_cuda_e_ = (call);                                                                                   \
    if (mb_cuda_e_ != cudaSuccess) {                                                                                   \
      (void)cudaGetLastError();                                                                                        \
      return MB_ERR(mb_cuda_status(mb_cuda_e_), "%s failed: %s (%s)", #call, cudaGetErrorString(mb_cuda_e_),           \
                    cudaGetErrorName(mb_cuda_e_));                                                                     \
    }                                                                                                                  \
  } while (0)

#endif
