/* cache_alloc.h: the caching allocator policy, in plain C, independent of
 * where the memory comes from.
 *
 * A block source (cudaMalloc/cudaFree for the GPU; malloc/free in tests)
 * is slow and may synchronise; the cache sits in front of it. Requests are
 * rounded up to a size class, freed blocks go on the free list of their
 * class, and the next request of that class takes one from there, so a
 * training loop that allocates the same sizes every step stops calling the
 * source after the first step.
 *
 * Size classes (mb_cache_round_size):
 *   n <= 1 MiB:  the next multiple of 512 bytes (0 counts as 1: every live
 *                block has its own address);
 *   n >  1 MiB:  four classes per power of two: for 2^k < n <= 2^(k+1) the
 *                next multiple of 2^(k-2) (1.25, 1.5, 1.75, 2 MiB, 2.5, ...),
 *                so rounding wastes under 25% and sizes recur.
 * A block is only reused for its own class (no splitting). When the source
 * fails with MB_ENOMEM, the cache returns every cached block to it and
 * tries once more before giving up.
 *
 * Statistics count what callers hold (allocated: class sizes, like
 * torch.cuda.memory_allocated; requested: the sizes asked for), what is kept
 * for reuse (cached), and their sum (reserved: what the source has handed
 * out, like torch.cuda.memory_reserved), each with its peak.
 *
 * Blocks carry no stream: a freed block may be handed out again at once,
 * so free a block only when the work using it is done or is ordered before
 * any later use (the same stream). Thread-safe (one mutex per cache).
 */
#ifndef MB_RUNTIME_CACHE_ALLOC_H
#define MB_RUNTIME_CACHE_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/alloc.h"
#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MB_CACHE_SMALL_MAX (1u << 20) /* up to here: 512-byte steps */
#define MB_CACHE_SMALL_STEP 512u

/* Where blocks come from. alloc returns MB_OK, MB_ENOMEM when the memory is
 * exhausted (the cache then releases what it holds and retries), or another
 * error; it sets the error message. destroy (may be NULL) releases ctx. */
typedef struct {
  void *ctx;
  int (*alloc)(void *ctx, size_t n, void **out);
  void (*free)(void *ctx, void *p);
  void (*destroy)(void *ctx);
  const char *name; /* for messages: "cuda:0", "host" */
} mb_block_source;

typedef struct {
  size_t allocated, peak_allocated; /* bytes in blocks callers hold (class sizes) */
  size_t requested, peak_requested; /* bytes callers asked for */
  size_t cached;                    /* bytes in free blocks kept for reuse */
  size_t reserved, peak_reserved;   /* allocated + cached: held from the source */
  uint64_t n_allocs, n_frees;       /* calls that succeeded */
  uint64_t n_cache_hits;            /* allocations served from a free list */
  uint64_t n_source_allocs, n_source_frees;
  uint64_t n_oom_flushes;           /* times the cache was emptied to retry a failed source alloc */
} mb_cache_stats;

typedef struct mb_cache mb_cache;

/* The size class of an n-byte request; 0 if n is too large to round. */
size_t mb_cache_round_size(size_t n);

int mb_cache_create(mb_block_source source, mb_cache **out) MB_NODISCARD;
/* Frees every cached block; live blocks (a leak by the caller) are freed
 * too, with a warning. Then calls source.destroy. */
void mb_cache_destroy(mb_cache *c);
int mb_cache_alloc(mb_cache *c, size_t n, void **out) MB_NODISCARD;
/* NULL is ignored; a pointer this cache did not hand out (or already took
 * back) is MB_EINVAL and changes nothing. */
int mb_cache_free(mb_cache *c, void *p);
/* Return every cached (free) block to the source. */
void mb_cache_empty(mb_cache *c);
mb_cache_stats mb_cache_get_stats(mb_cache *c);
/* Every peak := its current value. */
void mb_cache_reset_peak(mb_cache *c);
/* The class size of a live block (0 if p is not one). */
size_t mb_cache_block_size(mb_cache *c, const void *p);

/* An mb_device_allocator (alloc.h) running this policy over `source`; its
 * stats report allocated bytes as current/peak. cuda_alloc.c builds the CUDA
 * allocator with it; tests use a host source. */
int mb_caching_allocator_create(mb_block_source source, mb_device_allocator **out) MB_NODISCARD;
/* The cache behind an allocator made by mb_caching_allocator_create (for the
 * detailed statistics); NULL for any other allocator. */
mb_cache *mb_caching_allocator_cache(mb_device_allocator *a);

#ifdef __cplusplus
}
#endif
#endif
