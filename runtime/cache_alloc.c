/* cache_alloc.c: the caching allocator policy (cache_alloc.h): size classes,
 * a free list per class, a hash map of live blocks, statistics. */
#include "runtime/cache_alloc.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/log.h"

/* Classes: 2048 small ones (512 B .. 1 MiB), then 4 per power of two. */
#define N_SMALL (MB_CACHE_SMALL_MAX / MB_CACHE_SMALL_STEP)
#define N_CLASSES (N_SMALL + 4 * 64)

typedef struct block {
  void *ptr;
  size_t size;      /* class size */
  size_t requested; /* what the caller asked for (live blocks) */
  struct block *next;
} block;

struct mb_cache {
  mb_block_source src;
  pthread_mutex_t mu;
  block *free_list[N_CLASSES];
  /* live blocks: open addressing, linear probing, keyed by pointer */
  block **live;
  size_t live_cap, live_n;
  mb_cache_stats st;
};

static int floor_log2(size_t x) { return 63 - __builtin_clzll((unsigned long long)x); }

size_t mb_cache_round_size(size_t n) {
  if (n <= MB_CACHE_SMALL_MAX)
    return n == 0 ? MB_CACHE_SMALL_STEP : (n + MB_CACHE_SMALL_STEP - 1) / MB_CACHE_SMALL_STEP * MB_CACHE_SMALL_STEP;
  int k = floor_log2(n - 1); /* 2^k < n <= 2^(k+1) */
  size_t step = (size_t)1 << (k - 2);
  if (n > SIZE_MAX - step)
    return 0;
  return (n + step - 1) / step * step;
}

/* Index of the free list for a class size (the output of mb_cache_round_size). */
static size_t class_index(size_t size) {
  if (size <= MB_CACHE_SMALL_MAX)
    return size / MB_CACHE_SMALL_STEP - 1;
  int k = floor_log2(size - 1);
  size_t m = size >> (k - 2); /* 5..8 */
  return N_SMALL + 4 * (size_t)(k - 20) + (m - 5);
}

/* ---- the live-block map ---- */

static size_t hash_ptr(const void *p, size_t cap) {
  uint64_t x = (uint64_t)(uintptr_t)p;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return (size_t)x & (cap - 1);
}

static size_t live_find(const mb_cache *c, const void *p) {
  if (!c->live_cap)
    return SIZE_MAX;
  for (size_t i = hash_ptr(p, c->live_cap);; i = (i + 1) & (c->live_cap - 1)) {
    if (!c->live[i])
      return SIZE_MAX;
    if (c->live[i]->ptr == p)
      return i;
  }
}

static void live_put_nogrow(mb_cache *c, block *b) {
  size_t i = hash_ptr(b->ptr, c->live_cap);
  while (c->live[i])
    i = (i + 1) & (c->live_cap - 1);
  c->live[i] = b;
  c->live_n++;
}

static int live_put(mb_cache *c, block *b) {
  if ((c->live_n + 1) * 2 > c->live_cap) { /* keep the load under 1/2 */
    size_t ncap = c->live_cap ? 2 * c->live_cap : 256;
    block **old = c->live;
    size_t ocap = c->live_cap;
    c->live = calloc(ncap, sizeof *c->live);
    if (!c->live) {
      c->live = old;
      return MB_ERR(MB_ENOMEM, "caching allocator: out of host memory for its block table");
    }
    c->live_cap = ncap;
    c->live_n = 0;
    for (size_t i = 0; i < ocap; i++)
      if (old[i])
        live_put_nogrow(c, old[i]);
    free(old);
  }
  live_put_nogrow(c, b);
  return MB_OK;
}

/* Remove slot i, shifting later entries of the probe run back so lookups
 * never stop early (no tombstones). */
static void live_remove_at(mb_cache *c, size_t i) {
  size_t mask = c->live_cap - 1;
  c->live[i] = NULL;
  c->live_n--;
  for (size_t j = (i + 1) & mask; c->live[j]; j = (j + 1) & mask) {
    size_t home = hash_ptr(c->live[j]->ptr, c->live_cap);
    /* move j back into the hole at i if its home is not in (i, j] */
    int between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
    if (!between) {
      c->live[i] = c->live[j];
      c->live[j] = NULL;
      i = j;
    }
  }
}

/* ---- the policy ---- */

int mb_cache_create(mb_block_source source, mb_cache **out) {
  *out = NULL;
  if (!source.alloc || !source.free)
    return MB_ERR(MB_EINVAL, "caching allocator: the block source needs alloc and free");
  mb_cache *c = calloc(1, sizeof *c);
  if (!c)
    return MB_ERR(MB_ENOMEM, "caching allocator: out of host memory");
  c->src = source;
  if (!c->src.name)
    c->src.name = "memory";
  pthread_mutex_init(&c->mu, NULL);
  *out = c;
  return MB_OK;
}

static void release_cached_locked(mb_cache *c) {
  for (size_t k = 0; k < N_CLASSES; k++) {
    block *b = c->free_list[k];
    while (b) {
      block *next = b->next;
      c->src.free(c->src.ctx, b->ptr);
      c->st.n_source_frees++;
      c->st.cached -= b->size;
      c->st.reserved -= b->size;
      free(b);
      b = next;
    }
    c->free_list[k] = NULL;
  }
}

static void note_peaks(mb_cache_stats *s) {
  if (s->allocated > s->peak_allocated)
    s->peak_allocated = s->allocated;
  if (s->requested > s->peak_requested)
    s->peak_requested = s->requested;
  if (s->reserved > s->peak_reserved)
    s->peak_reserved = s->reserved;
}

int mb_cache_alloc(mb_cache *c, size_t n, void **out) {
  *out = NULL;
  size_t size = mb_cache_round_size(n);
  if (!size)
    return MB_ERR(MB_ENOMEM, "%s: cannot allocate %zu bytes (too large)", c->src.name, n);
  size_t k = class_index(size);
  pthread_mutex_lock(&c->mu);
  block *b = c->free_list[k];
  int rc = MB_OK;
  if (b) {
    c->free_list[k] = b->next;
    c->st.cached -= size;
    c->st.n_cache_hits++;
  } else {
    b = malloc(sizeof *b);
    if (!b) {
      pthread_mutex_unlock(&c->mu);
      return MB_ERR(MB_ENOMEM, "%s: out of host memory for block records", c->src.name);
    }
    b->size = size;
    rc = c->src.alloc(c->src.ctx, size, &b->ptr);
    if (rc == MB_ENOMEM && c->st.cached > 0) {
      /* Memory is short but we hold free blocks of other sizes: give them
       * all back and try once more. */
      size_t released = c->st.cached;
      release_cached_locked(c);
      c->st.n_oom_flushes++;
      rc = c->src.alloc(c->src.ctx, size, &b->ptr);
      if (rc != MB_OK)
        mb_error_context(rc, "%s: allocating %zu bytes (class %zu) even after releasing %zu cached bytes "
                         "(%zu in use)", c->src.name, n, size, released, c->st.allocated);
    } else if (rc != MB_OK) {
      mb_error_context(rc, "%s: allocating %zu bytes (class %zu; %zu in use, nothing cached)", c->src.name, n,
                       size, c->st.allocated);
    }
    if (rc != MB_OK) {
      free(b);
      pthread_mutex_unlock(&c->mu);
      return rc;
    }
    c->st.n_source_allocs++;
    c->st.reserved += size;
  }
  b->requested = n;
  b->next = NULL;
  rc = live_put(c, b);
  if (rc != MB_OK) { /* cannot track it: put it back on its free list */
    b->next = c->free_list[k];
    c->free_list[k] = b;
    c->st.cached += size;
    pthread_mutex_unlock(&c->mu);
    return rc;
  }
  c->st.allocated += size;
  c->st.requested += n;
  c->st.n_allocs++;
  note_peaks(&c->st);
  *out = b->ptr;
  pthread_mutex_unlock(&c->mu);
  return MB_OK;
}

int mb_cache_free(mb_cache *c, void *p) {
  if (!p)
    return MB_OK;
  pthread_mutex_lock(&c->mu);
  size_t i = live_find(c, p);
  if (i == SIZE_MAX) {
    pthread_mutex_unlock(&c->mu);
    return MB_ERR(MB_EINVAL, "%s: freeing %p, which this allocator did not hand out or already took back",
                  c->src.name, p);
  }
  block *b = c->live[i];
  live_remove_at(c, i);
  size_t k = class_index(b->size);
  b->next = c->free_list[k];
  c->free_list[k] = b;
  c->st.allocated -= b->size;
  c->st.requested -= b->requested;
  c->st.cached += b->size;
  c->st.n_frees++;
  pthread_mutex_unlock(&c->mu);
  return MB_OK;
}

void mb_cache_empty(mb_cache *c) {
  pthread_mutex_lock(&c->mu);
  release_cached_locked(c);
  pthread_mutex_unlock(&c->mu);
}

mb_cache_stats mb_cache_get_stats(mb_cache *c) {
  pthread_mutex_lock(&c->mu);
  mb_cache_stats s = c->st;
  pthread_mutex_unlock(&c->mu);
  return s;
}

void mb_cache_reset_peak(mb_cache *c) {
  pthread_mutex_lock(&c->mu);
  c->st.peak_allocated = c->st.allocated;
  c->st.peak_requested = c->st.requested;
  c->st.peak_reserved = c->st.reserved;
  pthread_mutex_unlock(&c->mu);
}

size_t mb_cache_block_size(mb_cache *c, const void *p) {
  pthread_mutex_lock(&c->mu);
  size_t i = live_find(c, p);
  size_t size = i == SIZE_MAX ? 0 : c->live[i]->size;
  pthread_mutex_unlock(&c->mu);
  return size;
}

void mb_cache_destroy(mb_cache *c) {
  if (!c)
    return;
  pthread_mutex_lock(&c->mu);
  release_cached_locked(c);
  if (c->live_n)
    MB_WARN("%s: %zu blocks (%zu bytes) still in use when the allocator was destroyed; freeing them", c->src.name,
            c->live_n, c->st.allocated);
  for (size_t i = 0; i < c->live_cap; i++)
    if (c->live[i]) {
      c->src.free(c->src.ctx, c->live[i]->ptr);
      free(c->live[i]);
    }
  free(c->live);
  pthread_mutex_unlock(&c->mu);
  pthread_mutex_destroy(&c->mu);
  if (c->src.destroy)
    c->src.destroy(c->src.ctx);
  free(c);
}

/* ---- as an mb_device_allocator ---- */

typedef struct {
  mb_device_allocator base; /* first: the interface pointer is this struct */
  mb_cache *cache;
} caching_allocator;

static int ca_alloc(mb_device_allocator *self, size_t n, void **out) {
  return mb_cache_alloc(((caching_allocator *)self)->cache, n, out);
}

static void ca_free(mb_device_allocator *self, void *p) {
  mb_cache *c = ((caching_allocator *)self)->cache;
  if (mb_cache_free(c, p) != MB_OK)
    mb_log(MB_LOG_ERROR, "%s", mb_error_message()); /* free cannot report: say it loudly */
}

static void ca_empty(mb_device_allocator *self) { mb_cache_empty(((caching_allocator *)self)->cache); }

static mb_mem_stats ca_stats(mb_device_allocator *self) {
  mb_cache_stats s = mb_cache_get_stats(((caching_allocator *)self)->cache);
  mb_mem_stats m = {s.allocated, s.peak_allocated, (size_t)s.n_allocs};
  return m;
}

static void ca_reset_peak(mb_device_allocator *self) { mb_cache_reset_peak(((caching_allocator *)self)->cache); }

static void ca_destroy(mb_device_allocator *self) {
  if (!self)
    return;
  mb_cache_destroy(((caching_allocator *)self)->cache);
  free(self);
}

int mb_caching_allocator_create(mb_block_source source, mb_device_allocator **out) {
  *out = NULL;
  caching_allocator *a = calloc(1, sizeof *a);
  if (!a) {
    if (source.destroy)
      source.destroy(source.ctx);
    return MB_ERR(MB_ENOMEM, "caching allocator: out of host memory");
  }
  int rc = mb_cache_create(source, &a->cache);
  if (rc != MB_OK) {
    if (source.destroy)
      source.destroy(source.ctx);
    free(a);
    return rc;
  }
  a->base.alloc = ca_alloc;
  a->base.free = ca_free;
  a->base.empty_cache = ca_empty;
  a->base.stats = ca_stats;
  a->base.reset_peak = ca_reset_peak;
  a->base.destroy = ca_destroy;
  *out = &a->base;
  return MB_OK;
}

mb_cache *mb_caching_allocator_cache(mb_device_allocator *a) {
  return a && a->alloc == ca_alloc ? ((caching_allocator *)a)->cache : NULL;
}
