/* comm.c: the backend-independent half of the communicator (comm.h):
 * argument checks, requests, waits with deadlines, blocking forms; and the
 * LOCAL backend (world size 1, every collective a copy). */
#include "distributed/comm.h"

#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "distributed/comm_impl.h"
#include "distributed/dist.h"
#include "distributed/watchdog.h"
#include "mambert_build_config.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

#if MAMBERT_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

const char *mb_comm_backend_name(mb_comm_backend b) {
  switch (b) {
  case MB_COMM_AUTO: return "auto";
  case MB_COMM_LOCAL: return "local";
  case MB_COMM_MPI: return "mpi";
  case MB_COMM_NCCL: return "nccl";
  }
  return "?";
}

const char *mb_coll_name(mb_coll_kind k) {
  switch (k) {
  case MB_COLL_ALLREDUCE: return "all-reduce";
  case MB_COLL_REDUCE_SCATTER: return "reduce-scatter";
  case MB_COLL_ALLGATHER: return "all-gather";
  case MB_COLL_BROADCAST: return "broadcast";
  case MB_COLL_BARRIER: return "barrier";
  }
  return "?";
}

int mb_comm_rank(const mb_comm *c) { return c->rank; }
int mb_comm_size(const mb_comm *c) { return c->size; }
mb_comm_backend mb_comm_get_backend(const mb_comm *c) { return c->backend; }
int mb_comm_on_device(const mb_comm *c) { return c->on_device; }
double mb_comm_timeout(const mb_comm *c) { return c->timeout_s; }
void mb_comm_set_timeout(mb_comm *c, double seconds) {
  c->timeout_s = seconds > 0 ? seconds : MB_DIST_DEFAULT_TIMEOUT_S;
}
void mb_comm_set_stream(mb_comm *c, void *stream) { c->stream = stream; }
const char *mb_comm_request_label(const mb_comm_request *r) { return r ? r->label : ""; }

void mb_comm_init_common(mb_comm *c, const mb_comm_ops *ops, mb_comm_backend b, int rank, int size,
                         int on_device) {
  memset(c, 0, sizeof *c);
  c->ops = ops;
  c->backend = b;
  c->rank = rank;
  c->size = size;
  c->on_device = on_device;
  c->timeout_s = MB_DIST_DEFAULT_TIMEOUT_S;
}

/* ---- host helpers --------------------------------------------------------- */

void mb_comm_host_scale(void *buf, size_t count, mb_dtype dt, double factor) {
  if (dt == MB_F32) {
    float *p = buf, f = (float)factor;
    for (size_t i = 0; i < count; i++)
      p[i] *= f;
  } else if (dt == MB_F64) {
    double *p = buf;
    for (size_t i = 0; i < count; i++)
      p[i] *= factor;
  }
}

size_t mb_comm_segments_total(const mb_comm_request *r) {
  size_t n = 0;
  for (int i = 0; i < r->nsegs; i++)
    n += r->segs[i].count;
  return n;
}

void mb_comm_host_pack(const mb_comm_request *r, void *staging) {
  size_t es = mb_dtype_size(r->dt);
  unsigned char *dst = staging;
  for (int i = 0; i < r->nsegs; i++) {
    memcpy(dst, r->segs[i].ptr, r->segs[i].count * es);
    dst += r->segs[i].count * es;
  }
}

void mb_comm_host_unpack(const mb_comm_request *r, const void *staging) {
  size_t es = mb_dtype_size(r->dt);
  const unsigned char *src = staging;
  for (int i = 0; i < r->nsegs; i++) {
    memcpy(r->segs[i].ptr, src, r->segs[i].count * es);
    src += r->segs[i].count * es;
  }
}

/* ---- requests ------------------------------------------------------------- */

static void describe(const mb_comm_request *r, char *buf, size_t cap) {
  const mb_comm *c = r->comm;
  if (r->kind == MB_COLL_BARRIER)
    snprintf(buf, cap, "rank %d/%d: %s %s '%s' (#%lu)", c->rank, c->size, mb_comm_backend_name(c->backend),
             mb_coll_name(r->kind), r->label, r->seq);
  else
    snprintf(buf, cap, "rank %d/%d: %s %s '%s' (#%lu, %zu x %s)", c->rank, c->size,
             mb_comm_backend_name(c->backend), mb_coll_name(r->kind), r->label, r->seq,
             r->segs ? mb_comm_segments_total(r) : r->count, mb_dtype_name(r->dt));
}

static int check_common(mb_comm *c, mb_comm_request **req) {
  if (!req)
    return MB_ERR(MB_EINVAL, "collective: request pointer is NULL");
  *req = NULL;
  if (!c)
    return MB_ERR(MB_EINVAL, "collective: communicator is NULL");
  return MB_OK;
}

static int check_reduce(mb_comm *c, const char *what, mb_dtype dt, mb_reduce_op op) {
  if (op != MB_REDUCE_SUM && op != MB_REDUCE_AVG)
    return MB_ERR(MB_EINVAL, "rank %d: %s: unknown reduction %d", c->rank, what, (int)op);
  if (dt == MB_F32 || dt == MB_F64)
    return MB_OK;
  if (c->backend == MB_COMM_NCCL && (dt == MB_F16 || dt == MB_BF16))
    return MB_OK;
  return MB_ERR(MB_EUNSUPPORTED, "rank %d: %s of %s on the %s backend: supported are f32 and f64%s", c->rank,
                what, mb_dtype_name(dt), mb_comm_backend_name(c->backend),
                c->backend == MB_COMM_NCCL ? " (and f16, bf16)" : "");
}

static mb_comm_request *req_new(mb_comm *c, mb_coll_kind kind, const char *label) {
  mb_comm_request *r = calloc(1, sizeof *r);
  if (!r)
    return NULL;
  r->comm = c;
  r->kind = kind;
  r->watch = -1;
  snprintf(r->label, sizeof r->label, "%s", label && label[0] ? label : mb_coll_name(kind));
  return r;
}

static void req_unlink(mb_comm_request *r) {
  mb_comm *c = r->comm;
  if (r->prev)
    r->prev->next = r->next;
  else if (c->inflight == r)
    c->inflight = r->next;
  if (r->next)
    r->next->prev = r->prev;
  r->prev = r->next = NULL;
}

static void req_free(mb_comm_request *r) {
  free(r->segs);
  free(r);
}

/* Completed or failed: release everything. */
static void req_finish(mb_comm_request *r) {
  req_unlink(r);
  mb_watch_end(r->watch);
  r->watch = -1;
  r->comm->ops->release(r->comm, r);
  req_free(r);
}

static int req_launch(mb_comm *c, mb_comm_request *r, mb_comm_request **out) {
  r->seq = ++c->seq;
  r->t_start = mb_time_now();
  int rc = c->ops->start(c, r);
  if (rc != MB_OK) {
    char d[256];
    describe(r, d, sizeof d);
    req_free(r);
    return mb_error_context(rc, "%s", d);
  }
  r->next = c->inflight;
  if (c->inflight)
    c->inflight->prev = r;
  c->inflight = r;
  if (c->ops->probe && mb_watchdog_running()) {
    char d[256];
    describe(r, d, sizeof d);
    r->watch = mb_watch_begin(d, c->timeout_s, c->ops->probe, r);
  }
  *out = r;
  return MB_OK;
}

/* A collective on one send and one receive buffer (the same for broadcast),
 * after the checks particular to it: the buffers, then the request. */
static int buffer_request(mb_comm *c, mb_coll_kind kind, const void *send, void *recv, size_t count, mb_dtype dt,
                          mb_reduce_op op, int root, const char *label, mb_comm_request **req) {
  const char *what = mb_coll_name(kind);
  if (count && (!send || !recv))
    return MB_ERR(MB_EINVAL, "rank %d: %s '%s': NULL buffer", c->rank, what, label ? label : "");
  mb_comm_request *r = req_new(c, kind, label);
  if (!r)
    return MB_ERR(MB_ENOMEM, "%s: no memory for a request", what);
  r->send = send;
  r->recv = recv;
  r->count = count;
  r->dt = dt;
  r->op = op;
  r->root = root;
  return req_launch(c, r, req);
}

int mb_comm_iallreduce(mb_comm *c, const void *send, void *recv, size_t count, mb_dtype dt, mb_reduce_op op,
                       const char *label, mb_comm_request **req) {
  MB_TRY(check_common(c, req));
  MB_TRY(check_reduce(c, "all-reduce", dt, op));
  return buffer_request(c, MB_COLL_ALLREDUCE, send, recv, count, dt, op, 0, label, req);
}

int mb_comm_iallreduce_segments(mb_comm *c, const mb_comm_segment *segs, int nsegs, void *staging, mb_dtype dt,
                                mb_reduce_op op, const char *label, mb_comm_request **req) {
  MB_TRY(check_common(c, req));
  MB_TRY(check_reduce(c, "all-reduce", dt, op));
  if (nsegs <= 0 || !segs)
    return MB_ERR(MB_EINVAL, "rank %d: segment all-reduce '%s': no segments", c->rank, label ? label : "");
  size_t total = 0;
  for (int i = 0; i < nsegs; i++) {
    if (segs[i].count && !segs[i].ptr)
      return MB_ERR(MB_EINVAL, "rank %d: segment all-reduce '%s': segment %d is NULL", c->rank,
                    label ? label : "", i);
    total += segs[i].count;
  }
  if (total && !staging)
    return MB_ERR(MB_EINVAL, "rank %d: segment all-reduce '%s': no staging buffer", c->rank, label ? label : "");
  mb_comm_request *r = req_new(c, MB_COLL_ALLREDUCE, label);
  if (!r)
    return MB_ERR(MB_ENOMEM, "all-reduce: no memory for a request");
  r->segs = malloc((size_t)nsegs * sizeof *segs);
  if (!r->segs) {
    req_free(r);
    return MB_ERR(MB_ENOMEM, "all-reduce: no memory for %d segments", nsegs);
  }
  memcpy(r->segs, segs, (size_t)nsegs * sizeof *segs);
  r->nsegs = nsegs;
  r->send = staging;
  r->recv = staging;
  r->count = total;
  r->dt = dt;
  r->op = op;
  return req_launch(c, r, req);
}

int mb_comm_ireduce_scatter(mb_comm *c, const void *send, void *recv, size_t count, mb_dtype dt, mb_reduce_op op,
                            const char *label, mb_comm_request **req) {
  MB_TRY(check_common(c, req));
  MB_TRY(check_reduce(c, "reduce-scatter", dt, op));
  return buffer_request(c, MB_COLL_REDUCE_SCATTER, send, recv, count, dt, op, 0, label, req);
}

int mb_comm_iallgather(mb_comm *c, const void *send, void *recv, size_t count, mb_dtype dt, const char *label,
                       mb_comm_request **req) {
  MB_TRY(check_common(c, req));
  if ((unsigned)dt >= MB_DTYPE_COUNT)
    return MB_ERR(MB_EINVAL, "rank %d: all-gather: bad dtype %d", c->rank, (int)dt);
  return buffer_request(c, MB_COLL_ALLGATHER, send, recv, count, dt, MB_REDUCE_SUM, 0, label, req);
}

int mb_comm_ibroadcast(mb_comm *c, void *buf, size_t count, mb_dtype dt, int root, const char *label,
                       mb_comm_request **req) {
  MB_TRY(check_common(c, req));
  if ((unsigned)dt >= MB_DTYPE_COUNT)
    return MB_ERR(MB_EINVAL, "rank %d: broadcast: bad dtype %d", c->rank, (int)dt);
  if (root < 0 || root >= c->size)
    return MB_ERR(MB_EINVAL, "rank %d: broadcast '%s': root %d is not a rank of this %d-rank communicator",
                  c->rank, label ? label : "", root, c->size);
  return buffer_request(c, MB_COLL_BROADCAST, buf, buf, count, dt, MB_REDUCE_SUM, root, label, req);
}

int mb_comm_ibarrier(mb_comm *c, const char *label, mb_comm_request **req) {
  MB_TRY(check_common(c, req));
  mb_comm_request *r = req_new(c, MB_COLL_BARRIER, label);
  if (!r)
    return MB_ERR(MB_ENOMEM, "barrier: no memory for a request");
  r->dt = MB_U8;
  return req_launch(c, r, req);
}

int mb_comm_test(mb_comm_request **req, int *done) {
  *done = 0;
  mb_comm_request *r = req ? *req : NULL;
  if (!r) {
    *done = 1;
    return MB_OK;
  }
  mb_comm *c = r->comm;
  if (!r->backend_done) {
    int d = 0;
    int rc = c->ops->test(c, r, &d);
    if (rc != MB_OK) {
      char desc[256];
      describe(r, desc, sizeof desc);
      req_finish(r);
      *req = NULL;
      return mb_error_context(rc, "%s", desc);
    }
    r->backend_done = d;
  }
  if (r->backend_done) {
    req_finish(r);
    *req = NULL;
    *done = 1;
  }
  return MB_OK;
}

void mb_comm_progress(mb_comm *c) {
  if (c && c->ops->progress)
    c->ops->progress(c);
}

/* How a waiting rank spends the time between tests. MPI's non-blocking
 * collectives advance only inside MPI calls, so a wait first tests back to
 * back (10 ms: what MPI's own blocking calls do), then yields the core
 * between tests (an oversubscribed peer may need it), and past 100 ms, when
 * it is most likely waiting for a slow or dead peer, sleeps 1 ms between
 * tests. */
static void pause_briefly(double waited_s) {
  if (waited_s < 0.01)
    return;
  if (waited_s < 0.1) {
    sched_yield();
    return;
  }
  struct timespec ts = {0, 1000000L};
  nanosleep(&ts, NULL);
}

int mb_comm_wait(mb_comm_request **req, double timeout_s) {
  mb_comm_request *r = req ? *req : NULL;
  if (!r)
    return MB_OK;
  mb_comm *c = r->comm;
  if (timeout_s <= 0)
    timeout_s = c->timeout_s;
  double t0 = mb_time_now(), deadline = t0 + timeout_s;
  char desc[256];
  describe(r, desc, sizeof desc);
  /* The watchdog backstop, in case we get stuck inside the backend itself;
   * it fires later than our own deadline so our message comes first. */
  int own_watch = -1;
  if (r->watch < 0 && mb_watchdog_running())
    own_watch = mb_watch_begin(desc, timeout_s * 1.1 + 5.0, NULL, NULL);
  for (;;) {
    int done = 0;
    int rc = mb_comm_test(req, &done);
    if (rc != MB_OK || done) {
      mb_watch_end(own_watch);
      return rc;
    }
    double now = mb_time_now();
    if (now > deadline)
      break;
    pause_briefly(now - t0);
  }
  mb_watch_end(own_watch);
  /* Timed out. A started collective cannot be cancelled (MPI forbids
   * freeing it), so the request is abandoned and the job has to end. */
  req_unlink(r);
  mb_watch_end(r->watch);
  req_free(r);
  *req = NULL;
  if (c->return_on_timeout)
    return MB_ERR(MB_EDIST,
                  "%s did not complete within %.1f s (a peer rank died, hangs, or is not in the same collective)",
                  desc, timeout_s);
  mb_dist_abort(MB_EDIST,
                "%s did not complete within %.1f s (a peer rank died, hangs, or is not in the same collective); "
                "aborting the job",
                desc, timeout_s);
}

/* ---- blocking forms -------------------------------------------------------- */

int mb_comm_allreduce(mb_comm *c, const void *send, void *recv, size_t count, mb_dtype dt, mb_reduce_op op) {
  mb_comm_request *r;
  MB_TRY(mb_comm_iallreduce(c, send, recv, count, dt, op, NULL, &r));
  return mb_comm_wait(&r, 0);
}

int mb_comm_reduce_scatter(mb_comm *c, const void *send, void *recv, size_t count, mb_dtype dt, mb_reduce_op op) {
  mb_comm_request *r;
  MB_TRY(mb_comm_ireduce_scatter(c, send, recv, count, dt, op, NULL, &r));
  return mb_comm_wait(&r, 0);
}

int mb_comm_allgather(mb_comm *c, const void *send, void *recv, size_t count, mb_dtype dt) {
  mb_comm_request *r;
  MB_TRY(mb_comm_iallgather(c, send, recv, count, dt, NULL, &r));
  return mb_comm_wait(&r, 0);
}

int mb_comm_broadcast(mb_comm *c, void *buf, size_t count, mb_dtype dt, int root) {
  mb_comm_request *r;
  MB_TRY(mb_comm_ibroadcast(c, buf, count, dt, root, NULL, &r));
  return mb_comm_wait(&r, 0);
}

int mb_comm_barrier(mb_comm *c) { return mb_comm_barrier_timeout(c, 0); }

int mb_comm_barrier_timeout(mb_comm *c, double timeout_s) {
  mb_comm_request *r;
  MB_TRY(mb_comm_ibarrier(c, NULL, &r));
  return mb_comm_wait(&r, timeout_s);
}

int mb_comm_alloc(mb_comm *c, size_t bytes, void **out) { return c->ops->alloc(c, bytes, out); }
void mb_comm_free(mb_comm *c, void *p) {
  if (p)
    c->ops->free(c, p);
}
int mb_comm_copy(mb_comm *c, void *dst, const void *src, size_t bytes) {
  if (!bytes || dst == src)
    return MB_OK;
  return c->ops->copy(c, dst, src, bytes);
}
int mb_comm_sync(mb_comm *c) { return c->ops->sync ? c->ops->sync(c) : MB_OK; }

void mb_comm_destroy(mb_comm *c) {
  if (!c)
    return;
  /* Requests still in flight are abandoned (their owner forgot to wait). */
  while (c->inflight) {
    mb_comm_request *r = c->inflight;
    MB_WARN("rank %d: %s '%s' was never waited for", c->rank, mb_coll_name(r->kind), r->label);
    req_unlink(r);
    mb_watch_end(r->watch);
    req_free(r);
  }
  c->ops->destroy(c);
}

/* ---- host memory for the host backends -------------------------------------- */

static int host_alloc(mb_comm *c, size_t bytes, void **out) {
  *out = mb_host_malloc(bytes ? bytes : 1);
  if (!*out)
    return MB_ERR(MB_ENOMEM, "rank %d: cannot allocate %zu bytes of staging memory", c->rank, bytes);
  return MB_OK;
}

static void host_free(mb_comm *c, void *p) {
  (void)c;
  mb_host_free(p);
}

static int host_copy(mb_comm *c, void *dst, const void *src, size_t bytes) {
  (void)c;
  memmove(dst, src, bytes);
  return MB_OK;
}

/* ---- LOCAL backend: one rank ----------------------------------------------- */

#if MAMBERT_HAVE_CUDA
static int local_device_copy(mb_comm *c, void *dst, const void *src, size_t bytes) {
  cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, (cudaStream_t)c->stream);
  if (e != cudaSuccess)
    return MB_ERR(MB_EDEVICE, "rank 0: device copy of %zu bytes: %s", bytes, cudaGetErrorString(e));
  return MB_OK;
}
static int local_device_alloc(mb_comm *c, size_t bytes, void **out) {
  cudaError_t e = cudaMalloc(out, bytes ? bytes : 1);
  if (e != cudaSuccess)
    return MB_ERR(MB_ENOMEM, "rank %d: cudaMalloc(%zu): %s", c->rank, bytes, cudaGetErrorString(e));
  return MB_OK;
}
static void local_device_free(mb_comm *c, void *p) {
  (void)c;
  cudaFree(p);
}
static int local_device_sync(mb_comm *c) {
  cudaError_t e = cudaStreamSynchronize((cudaStream_t)c->stream);
  if (e != cudaSuccess)
    return MB_ERR(MB_EDEVICE, "rank 0: stream synchronize: %s", cudaGetErrorString(e));
  return MB_OK;
}
#endif

static int local_copy(mb_comm *c, void *dst, const void *src, size_t bytes) {
  if (!bytes || dst == src)
    return MB_OK;
#if MAMBERT_HAVE_CUDA
  if (c->on_device)
    return local_device_copy(c, dst, src, bytes);
#endif
  return host_copy(c, dst, src, bytes);
}

static int local_start(mb_comm *c, mb_comm_request *r) {
  size_t bytes = r->count * mb_dtype_size(r->dt);
  /* Over one rank, sum and average are the identity, a segment all-reduce
   * leaves its segments as they are, and gathers/scatters are copies. */
  switch (r->kind) {
  case MB_COLL_ALLREDUCE:
    if (!r->segs)
      MB_TRY(local_copy(c, r->recv, r->send, bytes));
    break;
  case MB_COLL_REDUCE_SCATTER:
  case MB_COLL_ALLGATHER:
    MB_TRY(local_copy(c, r->recv, r->send, bytes));
    break;
  case MB_COLL_BROADCAST:
  case MB_COLL_BARRIER:
    break;
  }
  return MB_OK;
}

static int local_test(mb_comm *c, mb_comm_request *r, int *done) {
  (void)c;
  (void)r;
  *done = 1;
  return MB_OK;
}

static void local_release(mb_comm *c, mb_comm_request *r) {
  (void)c;
  (void)r;
}

static void local_destroy(mb_comm *c) { free(c); }

static const mb_comm_ops local_host_ops = {
    .name = "local",
    .start = local_start,
    .test = local_test,
    .release = local_release,
    .alloc = host_alloc,
    .free = host_free,
    .copy = local_copy,
    .destroy = local_destroy,
};

#if MAMBERT_HAVE_CUDA
static const mb_comm_ops local_device_ops = {
    .name = "local",
    .start = local_start,
    .test = local_test,
    .release = local_release,
    .alloc = local_device_alloc,
    .free = local_device_free,
    .copy = local_copy,
    .sync = local_device_sync,
    .destroy = local_destroy,
};
#endif

int mb_comm_local_create(int on_device, mb_comm **out) {
  *out = NULL;
  const mb_comm_ops *ops = &local_host_ops;
  if (on_device) {
#if MAMBERT_HAVE_CUDA
    ops = &local_device_ops;
#else
    return MB_ERR(MB_EUNSUPPORTED, "a device communicator needs a build with CUDA");
#endif
  }
  mb_comm *c = calloc(1, sizeof *c);
  if (!c)
    return MB_ERR(MB_ENOMEM, "no memory for a communicator");
  mb_comm_init_common(c, ops, MB_COMM_LOCAL, 0, 1, on_device);
  *out = c;
  return MB_OK;
}
