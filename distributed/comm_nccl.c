/* comm_nccl.c: the NCCL backend of the communicator (comm.h): device
 * buffers, collectives on a high-priority communication stream that first
 * waits (via an event) for the work already queued on the caller's stream,
 * completion seen through a CUDA event. The watchdog probes that event from
 * its own thread and polls ncclCommGetAsyncError; an abort calls
 * ncclCommAbort so kernels stuck on a dead peer let go of the GPU.
 * Built only when NCCL (and CUDA) are found. */
#include <cuda_runtime_api.h>
#include <nccl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "distributed/comm_impl.h"
#include "distributed/watchdog.h"
#include "runtime/log.h"

typedef struct {
  ncclComm_t nccl;
  cudaStream_t stream; /* the communication stream */
  int device;
  float *scratch;      /* one float: NCCL has no barrier, a tiny all-reduce stands in */
  cudaEvent_t *pool;   /* free events */
  int npool, cappool;
  atomic_int aborted;
} nccl_impl;

static nccl_impl *impl_of(const mb_comm *c) { return c->impl; }

static int cuda_fail(const mb_comm *c, cudaError_t e, const char *call) {
  return MB_ERR(MB_EDEVICE, "rank %d/%d: %s: %s", c->rank, c->size, call, cudaGetErrorString(e));
}

static int nccl_fail(const mb_comm *c, ncclResult_t r, const char *call) {
  const char *last = c->impl ? ncclGetLastError(impl_of(c)->nccl) : NULL;
  return MB_ERR(MB_EDIST, "rank %d/%d: %s failed: %s%s%s", c->rank, c->size, call, ncclGetErrorString(r),
                last && last[0] ? " — " : "", last ? last : "");
}

#define CUDA_TRY(c, call)                \
  do {                                   \
    cudaError_t e_ = (call);             \
    if (e_ != cudaSuccess)               \
      return cuda_fail((c), e_, #call);  \
  } while (0)

#define NCCL_TRY(c, call)                \
  do {                                   \
    ncclResult_t r_ = (call);            \
    if (r_ != ncclSuccess)               \
      return nccl_fail((c), r_, #call);  \
  } while (0)

static int event_get(mb_comm *c, cudaEvent_t *ev) {
  nccl_impl *m = impl_of(c);
  if (m->npool > 0) {
    *ev = m->pool[--m->npool];
    return MB_OK;
  }
  CUDA_TRY(c, cudaEventCreateWithFlags(ev, cudaEventDisableTiming));
  return MB_OK;
}

static void event_put(mb_comm *c, cudaEvent_t ev) {
  nccl_impl *m = impl_of(c);
  if (!ev)
    return;
  if (m->npool == m->cappool) {
    int ncap = m->cappool ? m->cappool * 2 : 16;
    cudaEvent_t *n = realloc(m->pool, (size_t)ncap * sizeof *n);
    if (!n) {
      cudaEventDestroy(ev);
      return;
    }
    m->pool = n;
    m->cappool = ncap;
  }
  m->pool[m->npool++] = ev;
}

static int nccl_type(mb_dtype dt, ncclDataType_t *t, size_t *scale) {
  *scale = 1;
  switch (dt) {
  case MB_F32: *t = ncclFloat32; return MB_OK;
  case MB_F64: *t = ncclFloat64; return MB_OK;
  case MB_F16: *t = ncclFloat16; return MB_OK;
  case MB_BF16: *t = ncclBfloat16; return MB_OK;
  case MB_I32: *t = ncclInt32; return MB_OK;
  case MB_I64: *t = ncclInt64; return MB_OK;
  case MB_U32: *t = ncclUint32; return MB_OK;
  case MB_U64: *t = ncclUint64; return MB_OK;
  case MB_I8: *t = ncclInt8; return MB_OK;
  case MB_U8: *t = ncclUint8; return MB_OK;
  default:
    /* Moved, never reduced: as bytes. */
    *t = ncclUint8;
    *scale = mb_dtype_size(dt);
    return MB_OK;
  }
}

static int nccl_start(mb_comm *c, mb_comm_request *r) {
  nccl_impl *m = impl_of(c);
  if (atomic_load(&m->aborted))
    return MB_ERR(MB_EDIST, "rank %d: the NCCL communicator was aborted", c->rank);
  cudaEvent_t ready = NULL, done = NULL;
  MB_TRY(event_get(c, &ready));
  int rc = event_get(c, &done);
  if (rc != MB_OK) {
    event_put(c, ready);
    return rc;
  }
  r->impl.ptr[0] = done;
  r->impl.ptr[1] = ready;
  /* The collective reads what the caller's stream has produced so far. */
  CUDA_TRY(c, cudaEventRecord(ready, (cudaStream_t)c->stream));
  CUDA_TRY(c, cudaStreamWaitEvent(m->stream, ready, 0));
  ncclDataType_t ty;
  size_t scale;
  MB_TRY(nccl_type(r->dt, &ty, &scale));
  size_t n = r->count * scale, es = mb_dtype_size(r->dt);
  ncclRedOp_t op = r->op == MB_REDUCE_AVG ? ncclAvg : ncclSum;
  switch (r->kind) {
  case MB_COLL_ALLREDUCE:
    if (r->segs) {
      unsigned char *dst = r->recv;
      for (int i = 0; i < r->nsegs; i++) {
        CUDA_TRY(c, cudaMemcpyAsync(dst, r->segs[i].ptr, r->segs[i].count * es, cudaMemcpyDeviceToDevice, m->stream));
        dst += r->segs[i].count * es;
      }
    }
    NCCL_TRY(c, ncclAllReduce(r->send, r->recv, n, ty, op, m->nccl, m->stream));
    if (r->segs) {
      const unsigned char *src = r->recv;
      for (int i = 0; i < r->nsegs; i++) {
        CUDA_TRY(c, cudaMemcpyAsync(r->segs[i].ptr, src, r->segs[i].count * es, cudaMemcpyDeviceToDevice, m->stream));
        src += r->segs[i].count * es;
      }
    }
    break;
  case MB_COLL_REDUCE_SCATTER:
    /* NCCL's in-place rule is ours: recv == send + rank * count. */
    NCCL_TRY(c, ncclReduceScatter(r->send, r->recv, n, ty, op, m->nccl, m->stream));
    break;
  case MB_COLL_ALLGATHER:
    NCCL_TRY(c, ncclAllGather(r->send, r->recv, n, ty, m->nccl, m->stream));
    break;
  case MB_COLL_BROADCAST:
    NCCL_TRY(c, ncclBroadcast(r->send, r->recv, n, ty, r->root, m->nccl, m->stream));
    break;
  case MB_COLL_BARRIER:
    NCCL_TRY(c, ncclAllReduce(m->scratch, m->scratch, 1, ncclFloat32, ncclSum, m->nccl, m->stream));
    break;
  }
  CUDA_TRY(c, cudaEventRecord(done, m->stream));
  return MB_OK;
}

static int async_error(const mb_comm *c) {
  nccl_impl *m = impl_of(c);
  ncclResult_t ae = ncclSuccess;
  ncclResult_t r = ncclCommGetAsyncError(m->nccl, &ae);
  if (r != ncclSuccess)
    return nccl_fail(c, r, "ncclCommGetAsyncError");
  if (ae != ncclSuccess && ae != ncclInProgress)
    return nccl_fail(c, ae, "NCCL (asynchronous error)");
  return MB_OK;
}

static int nccl_test(mb_comm *c, mb_comm_request *r, int *done) {
  *done = 0;
  cudaError_t e = cudaEventQuery((cudaEvent_t)r->impl.ptr[0]);
  if (e == cudaSuccess) {
    *done = 1;
    return MB_OK;
  }
  if (e != cudaErrorNotReady)
    return cuda_fail(c, e, "cudaEventQuery (collective completion)");
  return async_error(c);
}

/* The watchdog's probe: called from its thread, request alive (lock held). */
static int nccl_probe(void *arg) {
  mb_comm_request *r = arg;
  nccl_impl *m = impl_of(r->comm);
  cudaSetDevice(m->device); /* the watchdog thread's current device */
  return cudaEventQuery((cudaEvent_t)r->impl.ptr[0]) == cudaSuccess;
}

static void nccl_release(mb_comm *c, mb_comm_request *r) {
  event_put(c, (cudaEvent_t)r->impl.ptr[0]);
  event_put(c, (cudaEvent_t)r->impl.ptr[1]);
  r->impl.ptr[0] = r->impl.ptr[1] = NULL;
}

static int nccl_alloc(mb_comm *c, size_t bytes, void **out) {
  CUDA_TRY(c, cudaMalloc(out, bytes ? bytes : 1));
  return MB_OK;
}

static void nccl_free(mb_comm *c, void *p) {
  (void)c;
  cudaFree(p);
}

static int nccl_copy(mb_comm *c, void *dst, const void *src, size_t bytes) {
  nccl_impl *m = impl_of(c);
  cudaEvent_t ready;
  MB_TRY(event_get(c, &ready));
  cudaError_t e = cudaEventRecord(ready, (cudaStream_t)c->stream);
  if (e == cudaSuccess)
    e = cudaStreamWaitEvent(m->stream, ready, 0);
  if (e == cudaSuccess)
    e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, m->stream);
  event_put(c, ready);
  if (e != cudaSuccess)
    return cuda_fail(c, e, "device copy on the communication stream");
  return MB_OK;
}

/* Wait for the communication stream, polling, with the deadline. */
static int nccl_sync(mb_comm *c) {
  nccl_impl *m = impl_of(c);
  double deadline = mb_time_now() + c->timeout_s;
  for (int iter = 0;; iter++) {
    cudaError_t e = cudaStreamQuery(m->stream);
    if (e == cudaSuccess)
      return MB_OK;
    if (e != cudaErrorNotReady)
      return cuda_fail(c, e, "cudaStreamQuery (communication stream)");
    MB_TRY(async_error(c));
    if (mb_time_now() > deadline)
      return MB_ERR(MB_EDIST, "rank %d/%d: the NCCL communication stream did not drain within %.1f s", c->rank,
                    c->size, c->timeout_s);
    struct timespec ts = {0, iter < 100 ? 10000L : 500000L};
    nanosleep(&ts, NULL);
  }
}

static void nccl_abort(mb_comm *c) {
  nccl_impl *m = impl_of(c);
  if (!m || atomic_exchange(&m->aborted, 1))
    return;
  ncclCommAbort(m->nccl);
}

static int nccl_check(void *arg, char *msg, size_t cap) {
  mb_comm *c = arg;
  nccl_impl *m = impl_of(c);
  if (atomic_load(&m->aborted))
    return MB_OK;
  ncclResult_t ae = ncclSuccess;
  if (ncclCommGetAsyncError(m->nccl, &ae) == ncclSuccess && (ae == ncclSuccess || ae == ncclInProgress))
    return MB_OK;
  snprintf(msg, cap, "rank %d/%d: NCCL reported an asynchronous error: %s (%s)", c->rank, c->size,
           ncclGetErrorString(ae), ncclGetLastError(m->nccl));
  return MB_EDIST;
}

static void nccl_destroy(mb_comm *c) {
  nccl_impl *m = impl_of(c);
  if (m) {
    mb_watchdog_remove_check(nccl_check, c);
    if (!atomic_load(&m->aborted)) {
      if (nccl_sync(c) == MB_OK) {
        ncclCommFinalize(m->nccl);
        ncclCommDestroy(m->nccl);
      } else {
        mb_log_error_status(mb_error_code(), "NCCL teardown");
        ncclCommAbort(m->nccl);
      }
    }
    for (int i = 0; i < m->npool; i++)
      cudaEventDestroy(m->pool[i]);
    free(m->pool);
    cudaFree(m->scratch);
    cudaStreamDestroy(m->stream);
    free(m);
  }
  free(c);
}

static const mb_comm_ops nccl_ops = {
    .name = "nccl",
    .start = nccl_start,
    .test = nccl_test,
    .release = nccl_release,
    .probe = nccl_probe,
    .alloc = nccl_alloc,
    .free = nccl_free,
    .copy = nccl_copy,
    .sync = nccl_sync,
    .abort = nccl_abort,
    .destroy = nccl_destroy,
};

int mb_comm_nccl_create(mb_comm *host, int device, double timeout_s, mb_comm **out) {
  *out = NULL;
  int rank = mb_comm_rank(host), size = mb_comm_size(host);
  mb_comm *c = calloc(1, sizeof *c);
  nccl_impl *m = calloc(1, sizeof *m);
  if (!c || !m) {
    free(c);
    free(m);
    return MB_ERR(MB_ENOMEM, "no memory for an NCCL communicator");
  }
  mb_comm_init_common(c, &nccl_ops, MB_COMM_NCCL, rank, size, 1);
  c->timeout_s = timeout_s;
  m->device = device;
  int rc = MB_OK;

  /* Rank 0 makes the unique id; everyone gets it over the host communicator. */
  ncclUniqueId id;
  memset(&id, 0, sizeof id);
  if (rank == 0) {
    ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess)
      rc = MB_ERR(MB_EDIST, "rank 0: ncclGetUniqueId: %s", ncclGetErrorString(r));
  }
  /* Every rank joins the broadcast even if rank 0 failed (it sends zeros);
   * the others then fail in ncclCommInitRank rather than hang here. */
  int brc = mb_comm_broadcast(host, &id, sizeof id, MB_U8, 0);
  if (rc == MB_OK && brc != MB_OK)
    rc = mb_error_context(brc, "broadcasting the NCCL unique id");
  if (rc != MB_OK)
    goto fail;

  cudaError_t e = cudaSetDevice(device);
  int least = 0, greatest = 0;
  if (e == cudaSuccess)
    e = cudaDeviceGetStreamPriorityRange(&least, &greatest);
  if (e == cudaSuccess)
    e = cudaStreamCreateWithPriority(&m->stream, cudaStreamNonBlocking, greatest);
  if (e == cudaSuccess)
    e = cudaMalloc((void **)&m->scratch, sizeof(float));
  if (e != cudaSuccess) {
    rc = MB_ERR(MB_EDEVICE, "rank %d: setting up device %d for NCCL: %s", rank, device, cudaGetErrorString(e));
    goto fail;
  }
  c->impl = m;
  {
    char what[128];
    snprintf(what, sizeof what, "rank %d/%d: ncclCommInitRank on device %d", rank, size, device);
    int w = mb_watch_begin(what, timeout_s, NULL, NULL);
    ncclResult_t r = ncclCommInitRank(&m->nccl, size, id, rank);
    mb_watch_end(w);
    if (r != ncclSuccess) {
      c->impl = NULL;
      rc = MB_ERR(MB_EDIST, "rank %d/%d: ncclCommInitRank on device %d: %s", rank, size, device,
                  ncclGetErrorString(r));
      goto fail;
    }
  }
  rc = mb_watchdog_add_check(nccl_check, c);
  if (rc != MB_OK) {
    ncclCommDestroy(m->nccl);
    c->impl = NULL;
    goto fail;
  }
  *out = c;
  return MB_OK;
fail:
  if (m->scratch)
    cudaFree(m->scratch);
  if (m->stream)
    cudaStreamDestroy(m->stream);
  free(m);
  free(c);
  return rc;
}
