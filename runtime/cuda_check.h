/* cuda_check.h: checking every CUDA runtime, cuBLAS(Lt) and NCCL call
 * (include only from code built with CUDA: cuda_*.c in runtime/, kernels/cuda).
 *
 * MB_CUDA_TRY(cudaMalloc(&p, n)) returns MB_EDEVICE (MB_ENOMEM for an
 * out-of-memory error) from the enclosing function with a message naming
 * the call and CUDA's error name and text; MB_ERR stamps our file and line
 * (mb_error_where). MB_CUDA_WARN is for calls in functions that cannot
 * return an error (frees, destructors): it logs the same text with the
 * file and line.
 *
 * MB_CUBLAS_TRY / MB_CUBLAS_WARN do the same for cublasStatus_t (cuBLAS and
 * cuBLASLt share it); the status names come from a switch here, so using
 * them needs only the headers. MB_CUDA_LAUNCH_CHECK("kernel") after a
 * kernel launch turns a launch error (bad configuration, missing image for
 * this GPU) into an error naming the kernel. MB_NCCL_TRY is defined when
 * <nccl.h> was included before this header.
 */
#ifndef MB_RUNTIME_CUDA_CHECK_H
#define MB_RUNTIME_CUDA_CHECK_H

#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include "runtime/error.h"
#include "runtime/log.h"

static inline int mb_cuda_status(cudaError_t e) {
  return e == cudaErrorMemoryAllocation ? MB_ENOMEM : MB_EDEVICE;
}

#define MB_CUDA_TRY(call)                                                                        \
  do {                                                                                           \
    cudaError_t mb_cuda_e_ = (call);                                                             \
    if (mb_cuda_e_ != cudaSuccess) {                                                             \
      (void)cudaGetLastError(); /* clear a non-sticky error so later calls do not see it */      \
      return MB_ERR(mb_cuda_status(mb_cuda_e_), "%s failed: %s (%s)", #call,                     \
                    cudaGetErrorString(mb_cuda_e_), cudaGetErrorName(mb_cuda_e_));               \
    }                                                                                            \
  } while (0)

#define MB_CUDA_WARN(call)                                                                       \
  do {                                                                                           \
    cudaError_t mb_cuda_e_ = (call);                                                             \
    if (mb_cuda_e_ != cudaSuccess) {                                                             \
      (void)cudaGetLastError();                                                                  \
      mb_log(MB_LOG_ERROR, "%s:%d: %s failed: %s (%s)", __FILE__, __LINE__, #call,               \
             cudaGetErrorString(mb_cuda_e_), cudaGetErrorName(mb_cuda_e_));                      \
    }                                                                                            \
  } while (0)

/* After a kernel launch: the launch itself failed (bad grid, no kernel
 * image for this GPU, a sticky error from earlier work). */
#define MB_CUDA_LAUNCH_CHECK(what)                                                               \
  do {                                                                                           \
    cudaError_t mb_cuda_e_ = cudaGetLastError();                                                 \
    if (mb_cuda_e_ != cudaSuccess)                                                               \
      return MB_ERR(mb_cuda_status(mb_cuda_e_), "launching %s failed: %s (%s)", (what),          \
                    cudaGetErrorString(mb_cuda_e_), cudaGetErrorName(mb_cuda_e_));               \
  } while (0)

static inline const char *mb_cublas_status_name(cublasStatus_t s) {
  switch (s) {
  case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
  case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED (no handle, or no driver/GPU)";
  case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED (out of memory)";
  case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE (unsupported argument or combination)";
  case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH (not supported on this GPU)";
  case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
  case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED (a kernel failed to run)";
  case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
  case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED (no algorithm for this configuration)";
  case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  default: return "unknown cuBLAS status";
  }
}

static inline int mb_cublas_code(cublasStatus_t s) {
  return s == CUBLAS_STATUS_ALLOC_FAILED ? MB_ENOMEM
         : (s == CUBLAS_STATUS_NOT_SUPPORTED || s == CUBLAS_STATUS_ARCH_MISMATCH) ? MB_EUNSUPPORTED
                                                                                 : MB_EDEVICE;
}

#define MB_CUBLAS_TRY(call)                                                                      \
  do {                                                                                           \
    cublasStatus_t mb_cublas_s_ = (call);                                                        \
    if (mb_cublas_s_ != CUBLAS_STATUS_SUCCESS)                                                   \
      return MB_ERR(mb_cublas_code(mb_cublas_s_), "%s failed: %s (status %d)", #call,            \
                    mb_cublas_status_name(mb_cublas_s_), (int)mb_cublas_s_);                     \
  } while (0)

#define MB_CUBLAS_WARN(call)                                                                     \
  do {                                                                                           \
    cublasStatus_t mb_cublas_s_ = (call);                                                        \
    if (mb_cublas_s_ != CUBLAS_STATUS_SUCCESS)                                                   \
      mb_log(MB_LOG_ERROR, "%s:%d: %s failed: %s", __FILE__, __LINE__, #call,                    \
             mb_cublas_status_name(mb_cublas_s_));                                               \
  } while (0)

#ifdef NCCL_MAJOR
#define MB_NCCL_TRY(call)                                                                        \
  do {                                                                                           \
    ncclResult_t mb_nccl_r_ = (call);                                                            \
    if (mb_nccl_r_ != ncclSuccess)                                                               \
      return MB_ERR(MB_EDIST, "%s failed: %s", #call, ncclGetErrorString(mb_nccl_r_));           \
  } while (0)
#endif

#endif
