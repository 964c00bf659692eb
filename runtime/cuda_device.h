/* cuda_device.h: the CUDA device runtime (built with CUDA only): finding and
 * selecting devices, streams and events, pinned host buffers for the data
 * loader, and checked asynchronous copies.
 *
 * Every function returns MB_OK or a negative MB_E* status with CUDA's own
 * error name and text in the message (runtime/cuda_check.h). Streams and
 * events are CUDA's own handles (mb_cuda_stream is cudaStream_t,
 * mb_cuda_event is cudaEvent_t), declared here without CUDA's headers so
 * plain C code can hold them.
 *
 * Device selection: one process drives one device (the usual one rank per
 * GPU). mb_cuda_pick_device(local_rank) chooses local_rank modulo the number
 * of visible devices, or MAMBERT_CUDA_DEVICE when set; CUDA_VISIBLE_DEVICES
 * works as usual underneath.
 */
#ifndef MB_RUNTIME_CUDA_DEVICE_H
#define MB_RUNTIME_CUDA_DEVICE_H

#include <stddef.h>

#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CUstream_st *mb_cuda_stream; /* == cudaStream_t; NULL is the legacy default stream */
typedef struct CUevent_st *mb_cuda_event;   /* == cudaEvent_t */

/* ---- devices ---- */

/* Number of usable devices. With no driver or no GPU this is not an error:
 * *n = 0 and `why` (if not NULL) receives CUDA's reason ("no CUDA-capable
 * device is detected", "CUDA driver version is insufficient", ...). */
int mb_cuda_device_count(int *n, char *why, size_t why_cap);

typedef struct {
  int index;
  char name[256];
  int cc_major, cc_minor;      /* compute capability: 9.0 for H100/H200 */
  int sm_count;
  size_t total_mem;            /* bytes */
  size_t l2_bytes;
  size_t smem_per_block_optin; /* the most dynamic shared memory a block can opt into */
  int clock_khz, mem_clock_khz, mem_bus_bits;
  int driver_version, runtime_version; /* 13000 = 13.0 */
} mb_cuda_device_info;

int mb_cuda_device_get_info(int device, mb_cuda_device_info *out) MB_NODISCARD;
/* One line: "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB, driver 13.0, runtime 13.0)". */
void mb_cuda_device_describe(const mb_cuda_device_info *info, char *buf, size_t cap);

/* Make `device` current for this thread (MB_EDEVICE naming the device and
 * the count when it does not exist). */
int mb_cuda_set_device(int device) MB_NODISCARD;
int mb_cuda_get_device(int *device) MB_NODISCARD;
/* The device this process should use: MAMBERT_CUDA_DEVICE if set (must be
 * a valid index), else local_rank % count. MB_EUNSUPPORTED if no device. */
int mb_cuda_pick_device(int local_rank, int *device) MB_NODISCARD;

/* Wait for all work on the current device; reports an asynchronous kernel
 * fault (illegal address, ...) with `what` as context. */
int mb_cuda_device_sync(const char *what) MB_NODISCARD;

/* ---- streams ---- */

/* A stream that does not synchronise with the legacy default stream.
 * priority: 0 normal, 1 high (e.g. the communication stream). */
int mb_cuda_stream_create(mb_cuda_stream *s, int high_priority) MB_NODISCARD;
void mb_cuda_stream_destroy(mb_cuda_stream s);
int mb_cuda_stream_sync(mb_cuda_stream s, const char *what) MB_NODISCARD;
/* 1 while s is being captured into a CUDA graph, else 0. */
int mb_cuda_stream_is_capturing(mb_cuda_stream s);

/* ---- events ---- */

/* timing: 1 for an event that records time (for elapsed_ms), 0 for a
 * lighter one used only to order streams. */
int mb_cuda_event_create(mb_cuda_event *e, int timing) MB_NODISCARD;
void mb_cuda_event_destroy(mb_cuda_event e);
int mb_cuda_event_record(mb_cuda_event e, mb_cuda_stream s) MB_NODISCARD;
/* Later work on `s` waits for `e` (no host wait). */
int mb_cuda_stream_wait_event(mb_cuda_stream s, mb_cuda_event e) MB_NODISCARD;
int mb_cuda_event_sync(mb_cuda_event e) MB_NODISCARD;
/* Milliseconds between two recorded, completed timing events. */
int mb_cuda_event_elapsed_ms(mb_cuda_event start, mb_cuda_event end, float *ms) MB_NODISCARD;

/* ---- pinned host memory (page-locked: async copies really overlap) ---- */

/* Portable pinned memory of n bytes (n = 0 gives a valid 1-byte block).
 * Counted in mb_cuda_pinned_stats. */
int mb_cuda_pinned_alloc(size_t n, void **out) MB_NODISCARD;
void mb_cuda_pinned_free(void *p);
typedef struct {
  size_t current, peak;
  size_t n_allocs;
} mb_cuda_pinned_stats_t;
mb_cuda_pinned_stats_t mb_cuda_pinned_stats(void);

/* ---- copies (ordered on stream s) ----
 * Host memory may be pageable (then CUDA stages it and the call returns once
 * the source may be reused) or pinned (truly asynchronous: keep the source
 * alive until the stream has passed the copy). */
int mb_cuda_copy_h2d(void *dst_dev, const void *src_host, size_t n, mb_cuda_stream s) MB_NODISCARD;
int mb_cuda_copy_d2h(void *dst_host, const void *src_dev, size_t n, mb_cuda_stream s) MB_NODISCARD;
int mb_cuda_copy_d2d(void *dst_dev, const void *src_dev, size_t n, mb_cuda_stream s) MB_NODISCARD;
/* Every byte of dst set to `byte`. */
int mb_cuda_memset(void *dst_dev, int byte, size_t n, mb_cuda_stream s) MB_NODISCARD;

#ifdef __cplusplus
}
#endif
#endif
