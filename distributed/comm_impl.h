/* comm_impl.h: what a communicator backend implements (comm.c dispatches).
 * Private to distributed/. */
#ifndef MB_DISTRIBUTED_COMM_IMPL_H
#define MB_DISTRIBUTED_COMM_IMPL_H

#include <stdint.h>

#include "distributed/comm.h"
#include "mambert_build_config.h"

#define MB_REQ_LABEL 64

struct mb_comm_request {
  mb_comm *comm;
  mb_coll_kind kind;
  const void *send;
  void *recv;
  size_t count; /* elements: per rank chunk for reduce-scatter / all-gather */
  mb_dtype dt;
  mb_reduce_op op;
  int root;
  mb_comm_segment *segs; /* owned copy; NULL unless a segment all-reduce */
  int nsegs;
  char label[MB_REQ_LABEL];
  unsigned long seq;
  double t_start;
  int watch;        /* watchdog slot or -1 */
  int backend_done; /* the backend saw completion (and finished unpacking) */
  mb_comm_request *prev, *next; /* the communicator's in-flight list */
  /* backend state (an MPI_Request, CUDA events, ...) */
  union {
    void *ptr[4];
    uint64_t u64[4];
  } impl;
};

typedef struct {
  const char *name;
  /* Launch r (fields above filled and validated). */
  int (*start)(mb_comm *c, mb_comm_request *r);
  /* Non-blocking: *done = 1 once the operation (and any unpack/scale) is
   * complete and its result visible to the caller's next use. */
  int (*test)(mb_comm *c, mb_comm_request *r, int *done);
  /* Release backend resources of r (after done or error). */
  void (*release)(mb_comm *c, mb_comm_request *r);
  /* Thread-safe completion probe for the watchdog, or NULL: with a probe the
   * request is watched from launch (the device progresses on its own);
   * without, only while the host waits for it. */
  int (*probe)(void *request);
  void (*progress)(mb_comm *c);
  int (*alloc)(mb_comm *c, size_t bytes, void **out);
  void (*free)(mb_comm *c, void *p);
  int (*copy)(mb_comm *c, void *dst, const void *src, size_t bytes);
  int (*sync)(mb_comm *c);
  /* From any thread, possibly while another thread is inside the backend. */
  void (*abort)(mb_comm *c);
  void (*destroy)(mb_comm *c);
} mb_comm_ops;

struct mb_comm {
  const mb_comm_ops *ops;
  mb_comm_backend backend;
  int rank, size;
  int on_device;
  double timeout_s;
  int return_on_timeout;
  void *stream;
  unsigned long seq;
  mb_comm_request *inflight; /* head of the in-flight list */
  void *impl;
};

/* Common helpers for host backends. */
void mb_comm_host_scale(void *buf, size_t count, mb_dtype dt, double factor);
void mb_comm_host_pack(const mb_comm_request *r, void *staging);
void mb_comm_host_unpack(const mb_comm_request *r, const void *staging);
size_t mb_comm_segments_total(const mb_comm_request *r);
/* Fill the fields every backend shares. */
void mb_comm_init_common(mb_comm *c, const mb_comm_ops *ops, mb_comm_backend b, int rank, int size,
                         int on_device);

/* Constructors (used by dist.c). */
int mb_comm_local_create(int on_device, mb_comm **out);
#if MAMBERT_HAVE_MPI
/* Duplicates *mpi_comm (an MPI_Comm*), sets MPI_ERRORS_RETURN on it. */
int mb_comm_mpi_create(const void *mpi_comm, mb_comm **out);
#endif
#if MAMBERT_HAVE_NCCL
/* Creates an NCCL communicator over the ranks of `host` (whose rank 0 makes
 * the unique id and broadcasts it) on CUDA device `device`. */
int mb_comm_nccl_create(mb_comm *host, int device, double timeout_s, mb_comm **out);
#endif

#endif
