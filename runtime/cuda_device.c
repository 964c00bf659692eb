/* cuda_device.c: the CUDA device runtime (cuda_device.h): devices, streams,
 * events, pinned host memory and checked copies. Compiled only with CUDA. */
#include "runtime/cuda_device.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cuda_check.h"

/* ---- devices ---- */

int mb_cuda_device_count(int *n, char *why, size_t why_cap) {
  *n = 0;
  if (why && why_cap)
    why[0] = '\0';
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    if (why && why_cap)
      snprintf(why, why_cap, "%s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
    return MB_OK;
  }
  if (count == 0 && why && why_cap)
    snprintf(why, why_cap, "0 CUDA devices visible");
  *n = count;
  return MB_OK;
}

int mb_cuda_device_get_info(int device, mb_cuda_device_info *out) {
  memset(out, 0, sizeof *out);
  int count = 0;
  MB_CUDA_TRY(cudaGetDeviceCount(&count));
  if (device < 0 || device >= count)
    return MB_ERR(MB_EDEVICE, "CUDA device %d does not exist (%d visible)", device, count);
  struct cudaDeviceProp p;
  MB_CUDA_TRY(cudaGetDeviceProperties(&p, device));
  out->index = device;
  snprintf(out->name, sizeof out->name, "%s", p.name);
  out->cc_major = p.major;
  out->cc_minor = p.minor;
  out->sm_count = p.multiProcessorCount;
  out->total_mem = p.totalGlobalMem;
  out->l2_bytes = (size_t)p.l2CacheSize;
  out->smem_per_block_optin = p.sharedMemPerBlockOptin;
  /* clockRate and friends left cudaDeviceProp in CUDA 13: ask attributes. */
  MB_CUDA_TRY(cudaDeviceGetAttribute(&out->clock_khz, cudaDevAttrClockRate, device));
  MB_CUDA_TRY(cudaDeviceGetAttribute(&out->mem_clock_khz, cudaDevAttrMemoryClockRate, device));
  MB_CUDA_TRY(cudaDeviceGetAttribute(&out->mem_bus_bits, cudaDevAttrGlobalMemoryBusWidth, device));
  MB_CUDA_TRY(cudaDriverGetVersion(&out->driver_version));
  MB_CUDA_TRY(cudaRuntimeGetVersion(&out->runtime_version));
  return MB_OK;
}

void mb_cuda_device_describe(const mb_cuda_device_info *d, char *buf, size_t cap) {
  snprintf(buf, cap, "%s (sm_%d%d, %d SMs, %.1f GiB, %.0f MiB L2, driver %d.%d, runtime %d.%d)", d->name, d->cc_major,
           d->cc_minor, d->sm_count, (double)d->total_mem / (1 << 30), (double)d->l2_bytes / (1 << 20),
           d->driver_version / 1000, (d->driver_version % 1000) / 10, d->runtime_version / 1000,
           (d->runtime_version % 1000) / 10);
}

int mb_cuda_set_device(int device) {
  int count = 0;
  MB_CUDA_TRY(cudaGetDeviceCount(&count));
  if (device < 0 || device >= count)
    return MB_ERR(MB_EDEVICE, "CUDA device %d does not exist (%d visible)", device, count);
  MB_CUDA_TRY(cudaSetDevice(device));
  return MB_OK;
}

int mb_cuda_get_device(int *device) {
  MB_CUDA_TRY(cudaGetDevice(device));
  return MB_OK;
}

int mb_cuda_pick_device(int local_rank, int *device) {
  *device = -1;
  char why[256];
  int n = 0;
  MB_TRY(mb_cuda_device_count(&n, why, sizeof why));
  if (n == 0)
    return MB_ERR(MB_EUNSUPPORTED, "no CUDA device: %s", why);
  const char *env = getenv("MAMBERT_CUDA_DEVICE");
  if (env && *env) {
    char *end;
    long d = strtol(env, &end, 10);
    if (*end != '\0' || d < 0 || d >= n)
      return MB_ERR(MB_EINVAL, "MAMBERT_CUDA_DEVICE='%s': expected a device index in [0, %d)", env, n);
    *device = (int)d;
    return MB_OK;
  }
  if (local_rank < 0)
    return MB_ERR(MB_EINVAL, "local rank %d is negative", local_rank);
  *device = local_rank % n;
  return MB_OK;
}

int mb_cuda_device_sync(const char *what) {
  cudaError_t e = cudaDeviceSynchronize();
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return MB_ERR(mb_cuda_status(e), "%s: device work failed: %s (%s)", what ? what : "cudaDeviceSynchronize",
                  cudaGetErrorString(e), cudaGetErrorName(e));
  }
  return MB_OK;
}

/* ---- streams ---- */

int mb_cuda_stream_create(mb_cuda_stream *s, int high_priority) {
  *s = NULL;
  int least = 0, greatest = 0;
  MB_CUDA_TRY(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  cudaStream_t st;
  MB_CUDA_TRY(cudaStreamCreateWithPriority(&st, cudaStreamNonBlocking, high_priority ? greatest : least));
  *s = st;
  return MB_OK;
}

void mb_cuda_stream_destroy(mb_cuda_stream s) {
  if (s)
    MB_CUDA_WARN(cudaStreamDestroy(s));
}

int mb_cuda_stream_sync(mb_cuda_stream s, const char *what) {
  cudaError_t e = cudaStreamSynchronize(s);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return MB_ERR(mb_cuda_status(e), "%s: work on the stream failed: %s (%s)", what ? what : "cudaStreamSynchronize",
                  cudaGetErrorString(e), cudaGetErrorName(e));
  }
  return MB_OK;
}

int mb_cuda_stream_is_capturing(mb_cuda_stream s) {
  enum cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(s, &st) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return st == cudaStreamCaptureStatusActive;
}

/* ---- events ---- */

int mb_cuda_event_create(mb_cuda_event *e, int timing) {
  *e = NULL;
  cudaEvent_t ev;
  MB_CUDA_TRY(cudaEventCreateWithFlags(&ev, timing ? cudaEventDefault : cudaEventDisableTiming));
  *e = ev;
  return MB_OK;
}

void mb_cuda_event_destroy(mb_cuda_event e) {
  if (e)
    MB_CUDA_WARN(cudaEventDestroy(e));
}

int mb_cuda_event_record(mb_cuda_event e, mb_cuda_stream s) {
  MB_CUDA_TRY(cudaEventRecord(e, s));
  return MB_OK;
}

int mb_cuda_stream_wait_event(mb_cuda_stream s, mb_cuda_event e) {
  MB_CUDA_TRY(cudaStreamWaitEvent(s, e, 0));
  return MB_OK;
}

int mb_cuda_event_sync(mb_cuda_event e) {
  MB_CUDA_TRY(cudaEventSynchronize(e));
  return MB_OK;
}

int mb_cuda_event_elapsed_ms(mb_cuda_event start, mb_cuda_event end, float *ms) {
  *ms = 0.0f;
  MB_CUDA_TRY(cudaEventElapsedTime(ms, start, end));
  return MB_OK;
}

/* ---- pinned host memory ---- */

static pthread_mutex_t pinned_mu = PTHREAD_MUTEX_INITIALIZER;
static mb_cuda_pinned_stats_t pinned_st;

/* Sizes of live pinned blocks, so frees can be counted (few, large blocks:
 * a small linear table is enough). */
typedef struct {
  void *p;
  size_t n;
} pinned_rec;
static pinned_rec *pinned_tab;
static size_t pinned_n, pinned_cap;

int mb_cuda_pinned_alloc(size_t n, void **out) {
  *out = NULL;
  void *p = NULL;
  cudaError_t e = cudaHostAlloc(&p, n ? n : 1, cudaHostAllocPortable);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return MB_ERR(e == cudaErrorMemoryAllocation ? MB_ENOMEM : MB_EDEVICE,
                  "cudaHostAlloc(%zu bytes of pinned memory) failed: %s (%s)", n, cudaGetErrorString(e),
                  cudaGetErrorName(e));
  }
  pthread_mutex_lock(&pinned_mu);
  if (pinned_n == pinned_cap) {
    size_t cap = pinned_cap ? 2 * pinned_cap : 16;
    pinned_rec *t = realloc(pinned_tab, cap * sizeof *t);
    if (!t) {
      pthread_mutex_unlock(&pinned_mu);
      MB_CUDA_WARN(cudaFreeHost(p));
      return MB_ERR(MB_ENOMEM, "pinned memory bookkeeping");
    }
    pinned_tab = t;
    pinned_cap = cap;
  }
  pinned_tab[pinned_n++] = (pinned_rec){p, n};
  pinned_st.current += n;
  pinned_st.n_allocs++;
  if (pinned_st.current > pinned_st.peak)
    pinned_st.peak = pinned_st.current;
  pthread_mutex_unlock(&pinned_mu);
  *out = p;
  return MB_OK;
}

void mb_cuda_pinned_free(void *p) {
  if (!p)
    return;
  pthread_mutex_lock(&pinned_mu);
  for (size_t i = 0; i < pinned_n; i++)
    if (pinned_tab[i].p == p) {
      pinned_st.current -= pinned_tab[i].n;
      pinned_tab[i] = pinned_tab[--pinned_n];
      break;
    }
  if (pinned_n == 0) {
    free(pinned_tab);
    pinned_tab = NULL;
    pinned_cap = 0;
  }
  pthread_mutex_unlock(&pinned_mu);
  MB_CUDA_WARN(cudaFreeHost(p));
}

mb_cuda_pinned_stats_t mb_cuda_pinned_stats(void) {
  pthread_mutex_lock(&pinned_mu);
  mb_cuda_pinned_stats_t s = pinned_st;
  pthread_mutex_unlock(&pinned_mu);
  return s;
}

/* ---- copies ---- */

int mb_cuda_copy_h2d(void *dst, const void *src, size_t n, mb_cuda_stream s) {
  if (n)
    MB_CUDA_TRY(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, s));
  return MB_OK;
}

int mb_cuda_copy_d2h(void *dst, const void *src, size_t n, mb_cuda_stream s) {
  if (n)
    MB_CUDA_TRY(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, s));
  return MB_OK;
}

int mb_cuda_copy_d2d(void *dst, const void *src, size_t n, mb_cuda_stream s) {
  if (n && dst != src)
    MB_CUDA_TRY(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, s));
  return MB_OK;
}

int mb_cuda_memset(void *dst, int byte, size_t n, mb_cuda_stream s) {
  if (n)
    MB_CUDA_TRY(cudaMemsetAsync(dst, byte, n, s));
  return MB_OK;
}
