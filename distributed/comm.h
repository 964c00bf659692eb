/* comm.h: collectives over a group of ranks, behind one interface with
 * three backends:
 *   MB_COMM_LOCAL  world size 1, no library: every collective is a copy;
 *   MB_COMM_MPI    host memory, MPI non-blocking collectives (CPU training);
 *   MB_COMM_NCCL   device memory, NCCL on a communication stream (GPU training).
 *
 * Every collective is non-blocking underneath: the blocking calls are the
 * non-blocking ones followed by mb_comm_wait with the communicator's deadline,
 * so no collective of ours can wait forever. When a wait passes its deadline
 * the rank logs which operation (and label, e.g. "bucket 3") timed out and
 * aborts the whole job (dist.h, mb_dist_abort) unless the communicator was
 * made with return_on_timeout, in which case the wait returns MB_EDIST.
 *
 * Buffers: MPI and LOCAL take host pointers, NCCL takes device pointers. For
 * NCCL, the data is read after the work already queued on the caller's stream
 * (mb_comm_set_stream) and the collective runs on the communicator's own
 * stream, so it overlaps later compute.
 *
 * Progress: MPI's non-blocking collectives only advance inside MPI calls (Open
 * MPI has no progress thread by default). Callers that overlap communication
 * with compute call mb_comm_progress (or mb_comm_test) between pieces of work;
 * the gradient buckets do it on every grad_ready.
 */
#ifndef MB_DISTRIBUTED_COMM_H
#define MB_DISTRIBUTED_COMM_H

#include <stddef.h>

#include "runtime/dtype.h"
#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { MB_COMM_AUTO = 0, MB_COMM_LOCAL, MB_COMM_MPI, MB_COMM_NCCL } mb_comm_backend;

typedef enum { MB_REDUCE_SUM = 0, MB_REDUCE_AVG } mb_reduce_op;

typedef enum {
  MB_COLL_ALLREDUCE = 0,
  MB_COLL_REDUCE_SCATTER,
  MB_COLL_ALLGATHER,
  MB_COLL_BROADCAST,
  MB_COLL_BARRIER
} mb_coll_kind;

typedef struct mb_comm mb_comm;
typedef struct mb_comm_request mb_comm_request;

/* A piece of a larger buffer, for the gathered all-reduce below. */
typedef struct {
  void *ptr;
  size_t count; /* elements */
} mb_comm_segment;

const char *mb_comm_backend_name(mb_comm_backend b);
const char *mb_coll_name(mb_coll_kind k); /* "all-reduce", ... */

int mb_comm_rank(const mb_comm *c);
int mb_comm_size(const mb_comm *c);
mb_comm_backend mb_comm_get_backend(const mb_comm *c);
/* 1 when buffers are device memory (NCCL). */
int mb_comm_on_device(const mb_comm *c);
double mb_comm_timeout(const mb_comm *c);
void mb_comm_set_timeout(mb_comm *c, double seconds);
/* NCCL: the stream whose queued work produces / consumes collective buffers
 * (a cudaStream_t; NULL is the legacy default stream). Ignored elsewhere. */
void mb_comm_set_stream(mb_comm *c, void *stream);

/* ---- non-blocking collectives ------------------------------------------
 * `label` names the call in logs and timeout messages ("bucket 3"); may be
 * NULL. On success *req is a live request to test or wait; on failure *req is
 * NULL and the error names the rank and the operation.
 * Supported dtypes: SUM/AVG reductions on f32 and f64 (NCCL also f16, bf16);
 * all-gather and broadcast move any dtype. */

/* recv[i] = op over ranks of send[i], count elements; send == recv is in place. */
int mb_comm_iallreduce(mb_comm *c, const void *send, void *recv, size_t count, mb_dtype dt,
                       mb_reduce_op op, const char *label, mb_comm_request **req) MB_NODISCARD;

/* All-reduce of scattered pieces: the segments are packed into `staging`
 * (total elements = sum of counts), reduced there, and unpacked back into the
 * segments when the request completes. Used for gradient buckets whose
 * parameters are not adjacent in the flat buffer. `staging` must live as long
 * as the request (mb_comm_alloc for the right kind of memory). */
int mb_comm_iallreduce_segments(mb_comm *c, const mb_comm_segment *segs, int nsegs, void *staging,
                                mb_dtype dt, mb_reduce_op op, const char *label,
                                mb_comm_request **req) MB_NODISCARD;

/* send holds size*count elements (rank r's chunk at r*count); recv gets the
 * reduced chunk of this rank (count elements). In place when
 * recv == send + rank*count (only that chunk of send is defined afterwards). */
int mb_comm_ireduce_scatter(mb_comm *c, const void *send, void *recv, size_t count, mb_dtype dt,
                            mb_reduce_op op, const char *label, mb_comm_request **req) MB_NODISCARD;

/* recv (size*count elements) gets every rank's send chunk at rank*count.
 * In place when send == recv + rank*count. */
int mb_comm_iallgather(mb_comm *c, const void *send, void *recv, size_t count, mb_dtype dt,
                       const char *label, mb_comm_request **req) MB_NODISCARD;

int mb_comm_ibroadcast(mb_comm *c, void *buf, size_t count, mb_dtype dt, int root, const char *label,
                       mb_comm_request **req) MB_NODISCARD;

int mb_comm_ibarrier(mb_comm *c, const char *label, mb_comm_request **req) MB_NODISCARD;

/* *done = 1 when the request has completed; then the request is released
 * and *req set to NULL. An error also releases it. */
int mb_comm_test(mb_comm_request **req, int *done) MB_NODISCARD;

/* Wait for completion, at most timeout_s seconds (<= 0: the communicator's
 * timeout). Releases the request and sets *req = NULL. On timeout: logs and
 * aborts the job, or returns MB_EDIST with return_on_timeout. */
int mb_comm_wait(mb_comm_request **req, double timeout_s) MB_NODISCARD;

/* Give in-flight MPI requests a chance to progress (cheap; no-op elsewhere). */
void mb_comm_progress(mb_comm *c);

/* Label, kind and element count of a live request (for timelines, logs). */
const char *mb_comm_request_label(const mb_comm_request *r);

/* ---- blocking forms (non-blocking + wait with the default deadline) ---- */
int mb_comm_allreduce(mb_comm *c, const void *send, void *recv, size_t count, mb_dtype dt,
                      mb_reduce_op op) MB_NODISCARD;
int mb_comm_reduce_scatter(mb_comm *c, const void *send, void *recv, size_t count, mb_dtype dt,
                           mb_reduce_op op) MB_NODISCARD;
int mb_comm_allgather(mb_comm *c, const void *send, void *recv, size_t count, mb_dtype dt) MB_NODISCARD;
int mb_comm_broadcast(mb_comm *c, void *buf, size_t count, mb_dtype dt, int root) MB_NODISCARD;
int mb_comm_barrier(mb_comm *c) MB_NODISCARD;
/* A barrier with its own deadline (e.g. after rank 0 writes a checkpoint). */
int mb_comm_barrier_timeout(mb_comm *c, double timeout_s) MB_NODISCARD;

/* ---- memory of the kind the backend works on --------------------------- */
int mb_comm_alloc(mb_comm *c, size_t bytes, void **out) MB_NODISCARD;
void mb_comm_free(mb_comm *c, void *p);
/* Copy between buffers of the backend's kind, ordered with its collectives. */
int mb_comm_copy(mb_comm *c, void *dst, const void *src, size_t bytes) MB_NODISCARD;
/* Make buffers written by the communication stream visible to the host
 * (NCCL: synchronises the stream; elsewhere a no-op). */
int mb_comm_sync(mb_comm *c) MB_NODISCARD;

void mb_comm_destroy(mb_comm *c);

#ifdef __cplusplus
}
#endif
#endif
