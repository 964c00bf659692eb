/* cuda_alloc.h: the caching CUDA device allocator (built with CUDA only).
 *
 * The policy of cache_alloc.h over cudaMalloc/cudaFree on one device:
 * size classes, per-class free lists, one flush-and-retry on out-of-memory,
 * current/peak bytes. Peak is what `mambert eval` reports as peak GPU memory
 * (the counterpart of torch.cuda.max_memory_allocated). Blocks are not tied
 * to streams: free a block only after the work using it is done or is
 * ordered before its next use (see cache_alloc.h).
 */
#ifndef MB_RUNTIME_CUDA_ALLOC_H
#define MB_RUNTIME_CUDA_ALLOC_H

#include "runtime/alloc.h"
#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A caching allocator for CUDA device `device`. Fails with MB_EDEVICE (and
 * CUDA's message) when the device does not exist or cannot be used. */
int mb_cuda_allocator_create(int device, mb_device_allocator **out) MB_NODISCARD;

#ifdef __cplusplus
}
#endif
#endif
