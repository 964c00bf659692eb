/* alloc.c: tracked host allocations and arenas (alloc.h). */
#include "runtime/alloc.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Each block carries its size in a MB_ALIGN-sized header in front of the
 * pointer handed out, so free() knows what to subtract. */
static _Atomic size_t host_current, host_peak, host_allocs;

static void note_alloc(size_t n) {
  size_t cur = atomic_fetch_add(&host_current, n) + n;
  size_t peak = atomic_load(&host_peak);
  while (cur > peak && !atomic_compare_exchange_weak(&host_peak, &peak, cur)) {
  }
  atomic_fetch_add(&host_allocs, 1);
}

void *mb_host_malloc(size_t n) {
  if (n > SIZE_MAX - 2 * MB_ALIGN)
    return NULL;
  unsigned char *raw = aligned_alloc(MB_ALIGN, mb_align_up(n + MB_ALIGN, MB_ALIGN));
  if (!raw)
    return NULL;
  memcpy(raw, &n, sizeof n);
  note_alloc(n);
  return raw + MB_ALIGN;
}

void *mb_host_calloc(size_t n) {
  void *p = mb_host_malloc(n);
  if (p)
    memset(p, 0, n);
  return p;
}

void mb_host_free(void *p) {
  if (!p)
    return;
  unsigned char *raw = (unsigned char *)p - MB_ALIGN;
  size_t n;
  memcpy(&n, raw, sizeof n);
  atomic_fetch_sub(&host_current, n);
  free(raw);
}

mb_mem_stats mb_host_mem_stats(void) {
  mb_mem_stats s = {atomic_load(&host_current), atomic_load(&host_peak), atomic_load(&host_allocs)};
  return s;
}

void mb_host_mem_reset_peak(void) { atomic_store(&host_peak, atomic_load(&host_current)); }

int mb_arena_init(mb_arena *a, size_t capacity) {
  a->capacity = capacity;
  a->base = mb_host_malloc(capacity ? capacity : 1);
  if (!a->base)
    return MB_ERR(MB_ENOMEM, "allocating an activation arena of %zu bytes", capacity);
  return MB_OK;
}

void mb_arena_free(mb_arena *a) {
  mb_host_free(a->base);
  a->base = NULL;
  a->capacity = 0;
}
