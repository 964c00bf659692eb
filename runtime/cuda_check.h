/* cuda_check.h: checking every CUDA runtime call (include only from code
 * built with CUDA: cuda_*.c in runtime/, kernels/cuda).
 *
 * MB_CUDA_TRY(cudaMalloc(&p, n)) returns MB_EDEVICE (MB_ENOMEM for an
 * out-of-memory error) from the enclosing function with a message naming
 * the call and CUDA's error name and text; MB_ERR stamps our file and line
 * (mb_error_where). MB_CUDA_WARN is for calls in functions that cannot
 * return an error (frees, destructors): it logs the same text with the
 * file and line.
 */
#ifndef MB_RUNTIME_CUDA_CHECK_H
#define MB_RUNTIME_CUDA_CHECK_H

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

#endif
