/* alloc.h: memory with accounting.
 *
 * Three things live here:
 *  - tracked host allocations (mb_host_malloc/free), counting current and
 *    peak bytes process-wide, so evaluation can report peak memory on CPU the
 *    way torch.cuda.max_memory_allocated does on a GPU;
 *  - mb_arena, one aligned block carved by offsets: the memory planner lays
 *    every activation of a compiled program into one arena;
 *  - mb_device_allocator, the interface of a caching device allocator
 *    (the policy is runtime/cache_alloc.h; the CUDA allocator built on it
 *    is runtime/cuda_alloc.h, compiled when CUDA is found).
 */
#ifndef MB_RUNTIME_ALLOC_H
#define MB_RUNTIME_ALLOC_H

#include <stddef.h>

#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MB_ALIGN 64 /* every buffer starts on a cache line (and AVX-512 vector) */

typedef struct {
  size_t current;      /* bytes held now */
  size_t peak;         /* most bytes held at once since the last reset */
  size_t total_allocs; /* number of allocations since start */
} mb_mem_stats;

/* Tracked, MB_ALIGN-aligned host memory. NULL on failure (no message set:
 * callers know what they were allocating and say so). */
void *mb_host_malloc(size_t n);
void *mb_host_calloc(size_t n);
void mb_host_free(void *p);
mb_mem_stats mb_host_mem_stats(void);
/* Peak := current; used before a timed evaluation pass. */
void mb_host_mem_reset_peak(void);

/* One block carved at planned offsets. */
typedef struct {
  unsigned char *base;
  size_t capacity;
} mb_arena;

int mb_arena_init(mb_arena *a, size_t capacity) MB_NODISCARD;
void mb_arena_free(mb_arena *a);
/* Pointer at a planned offset; the caller's plan guarantees it fits. */
static inline void *mb_arena_at(const mb_arena *a, size_t offset) { return a->base + offset; }

static inline size_t mb_align_up(size_t n, size_t align) { return (n + align - 1) / align * align; }

/* A caching device allocator: freed blocks are kept for reuse, so steady
 * state does no cudaMalloc/cudaFree; stats count bytes handed out to callers. */
typedef struct mb_device_allocator mb_device_allocator;
struct mb_device_allocator {
  int (*alloc)(mb_device_allocator *self, size_t n, void **out);
  void (*free)(mb_device_allocator *self, void *p);
  void (*empty_cache)(mb_device_allocator *self); /* return cached blocks to the driver */
  mb_mem_stats (*stats)(mb_device_allocator *self);
  void (*reset_peak)(mb_device_allocator *self);
  void (*destroy)(mb_device_allocator *self);
};

#ifdef __cplusplus
}
#endif
#endif
