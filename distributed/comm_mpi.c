/* comm_mpi.c: the MPI backend of the communicator (comm.h): host buffers,
 * MPI-3 non-blocking collectives on a private duplicate of the world, errors
 * returned (MPI_ERRORS_RETURN) and turned into MB_EDIST with rank and
 * operation. Averages are a sum scaled by 1/size when the request completes.
 * Built only when MPI is found. */
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distributed/comm_impl.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

_Static_assert(sizeof(MPI_Request) <= sizeof(uint64_t) * 2, "MPI_Request must fit the request's impl slot");

/* Scratch buffers for all-reduces: Open MPI's in-place all-reduce (blocking
 * or not) runs at about half the speed of its out-of-place one on shared
 * memory (bench/allreduce.c measures it), so an in-place request reduces
 * into a scratch buffer and copies back (fused with the averaging scale).
 * Buffers are kept for reuse: gradient buckets have the same sizes every
 * step. When all are busy, the request falls back to MPI_IN_PLACE. */
#define SCRATCH_SLOTS 16
typedef struct {
  void *p;
  size_t bytes;
  int busy;
} scratch_slot;

typedef struct {
  MPI_Comm comm;
  scratch_slot scratch[SCRATCH_SLOTS];
} mpi_impl;

/* The request's impl slot: [0..1] the MPI_Request, [2] flags and the
 * scratch slot (+1) in bits 8..15, [3] a saved error. */
enum { REQ_INPLACE_RS = 1, REQ_FAILED = 2 };
#define REQ_SCRATCH_SHIFT 8

static int scratch_get(mb_comm *c, size_t bytes) {
  mpi_impl *m = c->impl;
  int best = -1;
  for (int i = 0; i < SCRATCH_SLOTS; i++) /* the smallest free slot that fits */
    if (!m->scratch[i].busy && m->scratch[i].p && m->scratch[i].bytes >= bytes &&
        (best < 0 || m->scratch[i].bytes < m->scratch[best].bytes))
      best = i;
  if (best < 0)
    for (int i = 0; i < SCRATCH_SLOTS && best < 0; i++)
      if (!m->scratch[i].busy) { /* grow a free slot (empty ones first would be nicer; rare) */
        void *p = mb_host_malloc(bytes);
        if (!p)
          return -1;
        mb_host_free(m->scratch[i].p);
        m->scratch[i].p = p;
        m->scratch[i].bytes = bytes;
        best = i;
      }
  if (best >= 0)
    m->scratch[best].busy = 1;
  return best;
}

static int scratch_slot_of(const mb_comm_request *r) { return (int)((r->impl.u64[2] >> REQ_SCRATCH_SHIFT) & 0xff) - 1; }

static MPI_Request *req_handle(mb_comm_request *r) { return (MPI_Request *)(void *)&r->impl.u64[0]; }

static MPI_Comm comm_of(const mb_comm *c) { return ((const mpi_impl *)c->impl)->comm; }

static MPI_Datatype mpi_type(mb_dtype dt) {
  if (dt == MB_F32)
    return MPI_FLOAT;
  if (dt == MB_F64)
    return MPI_DOUBLE;
  /* Moving data only (gathers, broadcasts): any type of the same width. */
  switch (mb_dtype_size(dt)) {
  case 1: return MPI_UINT8_T;
  case 2: return MPI_UINT16_T;
  case 4: return MPI_UINT32_T;
  default: return MPI_UINT64_T;
  }
}

static int mpi_fail(const mb_comm *c, int mpirc, const char *call) {
  char s[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(mpirc, s, &len) != MPI_SUCCESS)
    snprintf(s, sizeof s, "MPI error code %d", mpirc);
  return MB_ERR(MB_EDIST, "rank %d/%d: %s failed: %s", c->rank, c->size, call, s);
}

static int mpi_start(mb_comm *c, mb_comm_request *r) {
  if (r->count > (size_t)INT_MAX)
    return MB_ERR(MB_EUNSUPPORTED,
                  "rank %d: %zu elements in one MPI collective: more than MPI's int count allows (%d); "
                  "split the buffer",
                  c->rank, r->count, INT_MAX);
  MPI_Comm comm = comm_of(c);
  MPI_Datatype ty = mpi_type(r->dt);
  int n = (int)r->count;
  size_t es = mb_dtype_size(r->dt);
  MPI_Request *h = req_handle(r);
  *h = MPI_REQUEST_NULL;
  r->impl.u64[2] = 0;
  int rc = MPI_SUCCESS;
  const char *call = "";
  switch (r->kind) {
  case MB_COLL_ALLREDUCE: {
    if (r->segs)
      mb_comm_host_pack(r, r->recv);
    call = "MPI_Iallreduce";
    int slot = r->send == r->recv && n > 0 ? scratch_get(c, r->count * es) : -1;
    if (slot >= 0) {
      r->impl.u64[2] |= (uint64_t)(slot + 1) << REQ_SCRATCH_SHIFT;
      rc = MPI_Iallreduce(r->send, ((mpi_impl *)c->impl)->scratch[slot].p, n, ty, MPI_SUM, comm, h);
    } else {
      rc = MPI_Iallreduce(r->send == r->recv ? MPI_IN_PLACE : r->send, r->recv, n, ty, MPI_SUM, comm, h);
    }
    break;
  }
  case MB_COLL_REDUCE_SCATTER:
    call = "MPI_Ireduce_scatter_block";
    if ((const unsigned char *)r->recv == (const unsigned char *)r->send + (size_t)c->rank * r->count * es) {
      /* In place: MPI reads the whole input from recvbuf and leaves this
       * rank's result at its start; it is moved to the rank's chunk after. */
      r->impl.u64[2] |= REQ_INPLACE_RS;
      rc = MPI_Ireduce_scatter_block(MPI_IN_PLACE, (void *)r->send, n, ty, MPI_SUM, comm, h);
    } else {
      rc = MPI_Ireduce_scatter_block(r->send, r->recv, n, ty, MPI_SUM, comm, h);
    }
    break;
  case MB_COLL_ALLGATHER: {
    call = "MPI_Iallgather";
    int inplace = (const unsigned char *)r->send == (unsigned char *)r->recv + (size_t)c->rank * r->count * es;
    rc = MPI_Iallgather(inplace ? MPI_IN_PLACE : r->send, n, ty, r->recv, n, ty, comm, h);
    break;
  }
  case MB_COLL_BROADCAST:
    call = "MPI_Ibcast";
    rc = MPI_Ibcast(r->recv, n, ty, r->root, comm, h);
    break;
  case MB_COLL_BARRIER:
    call = "MPI_Ibarrier";
    rc = MPI_Ibarrier(comm, h);
    break;
  }
  if (rc != MPI_SUCCESS)
    return mpi_fail(c, rc, call);
  return MB_OK;
}

static void copy_scaled(void *dst, const void *src, size_t count, mb_dtype dt, double f) {
  if (f == 1.0) {
    memcpy(dst, src, count * mb_dtype_size(dt));
  } else if (dt == MB_F32) {
    float *d = dst, ff = (float)f;
    const float *x = src;
    for (size_t i = 0; i < count; i++)
      d[i] = x[i] * ff;
  } else {
    double *d = dst;
    const double *x = src;
    for (size_t i = 0; i < count; i++)
      d[i] = x[i] * f;
  }
}

/* The request completed in MPI: finish our half (average, in-place move, unpack). */
static void finish_host(mb_comm *c, mb_comm_request *r) {
  size_t es = mb_dtype_size(r->dt);
  if (r->kind == MB_COLL_ALLREDUCE) {
    int slot = scratch_slot_of(r);
    double f = r->op == MB_REDUCE_AVG ? 1.0 / c->size : 1.0;
    if (slot >= 0) {
      /* The result is in scratch: copy it out scaled, in one pass (to the
       * segments directly for a staged request). */
      const unsigned char *res = ((mpi_impl *)c->impl)->scratch[slot].p;
      if (r->segs) {
        for (int i = 0; i < r->nsegs; i++) {
          copy_scaled(r->segs[i].ptr, res, r->segs[i].count, r->dt, f);
          res += r->segs[i].count * es;
        }
      } else {
        copy_scaled(r->recv, res, r->count, r->dt, f);
      }
    } else {
      if (f != 1.0)
        mb_comm_host_scale(r->recv, r->count, r->dt, f);
      if (r->segs)
        mb_comm_host_unpack(r, r->recv);
    }
  } else if (r->kind == MB_COLL_REDUCE_SCATTER) {
    if (r->impl.u64[2] & REQ_INPLACE_RS)
      memmove(r->recv, r->send, r->count * es);
    if (r->op == MB_REDUCE_AVG)
      mb_comm_host_scale(r->recv, r->count, r->dt, 1.0 / c->size);
  }
}

static int mpi_test(mb_comm *c, mb_comm_request *r, int *done) {
  if (r->impl.u64[2] & REQ_FAILED)
    return mpi_fail(c, (int)r->impl.u64[3], "MPI_Test");
  int flag = 0;
  int rc = MPI_Test(req_handle(r), &flag, MPI_STATUS_IGNORE);
  if (rc != MPI_SUCCESS)
    return mpi_fail(c, rc, "MPI_Test");
  if (flag)
    finish_host(c, r);
  *done = flag;
  return MB_OK;
}

static void mpi_progress(mb_comm *c) {
  for (mb_comm_request *r = c->inflight; r; r = r->next) {
    if (r->backend_done || (r->impl.u64[2] & REQ_FAILED))
      continue;
    int flag = 0;
    int rc = MPI_Test(req_handle(r), &flag, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
      r->impl.u64[2] |= REQ_FAILED;
      r->impl.u64[3] = (uint64_t)rc;
    } else if (flag) {
      finish_host(c, r);
      r->backend_done = 1;
    }
  }
}

static void mpi_release(mb_comm *c, mb_comm_request *r) {
  /* Completed requests are MPI_REQUEST_NULL; failed ones cannot be freed,
   * and their scratch stays busy (MPI may still write it). */
  int slot = scratch_slot_of(r);
  if (slot >= 0 && !(r->impl.u64[2] & REQ_FAILED) && r->backend_done)
    ((mpi_impl *)c->impl)->scratch[slot].busy = 0;
}

static int mpi_alloc(mb_comm *c, size_t bytes, void **out) {
  /* Plain host memory; the tracked allocator keeps peak accounting honest. */
  *out = mb_host_malloc(bytes ? bytes : 1);
  if (!*out)
    return MB_ERR(MB_ENOMEM, "rank %d: cannot allocate %zu bytes of staging memory", c->rank, bytes);
  return MB_OK;
}

static void mpi_free(mb_comm *c, void *p) {
  (void)c;
  mb_host_free(p);
}

static int mpi_copy(mb_comm *c, void *dst, const void *src, size_t bytes) {
  (void)c;
  memmove(dst, src, bytes);
  return MB_OK;
}

static void mpi_destroy(mb_comm *c) {
  mpi_impl *m = c->impl;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (m && !finalized && m->comm != MPI_COMM_NULL)
    MPI_Comm_free(&m->comm);
  if (m)
    for (int i = 0; i < SCRATCH_SLOTS; i++)
      if (!m->scratch[i].busy)
        mb_host_free(m->scratch[i].p);
  free(m);
  free(c);
}

static const mb_comm_ops mpi_ops = {
    .name = "mpi",
    .start = mpi_start,
    .test = mpi_test,
    .release = mpi_release,
    .progress = mpi_progress,
    .alloc = mpi_alloc,
    .free = mpi_free,
    .copy = mpi_copy,
    .destroy = mpi_destroy,
};

int mb_comm_mpi_create(const void *mpi_comm, mb_comm **out) {
  *out = NULL;
  MPI_Comm base = *(const MPI_Comm *)mpi_comm;
  mb_comm *c = calloc(1, sizeof *c);
  mpi_impl *m = calloc(1, sizeof *m);
  if (!c || !m) {
    free(c);
    free(m);
    return MB_ERR(MB_ENOMEM, "no memory for an MPI communicator");
  }
  int rank = 0, size = 1;
  MPI_Comm_rank(base, &rank);
  MPI_Comm_size(base, &size);
  mb_comm_init_common(c, &mpi_ops, MB_COMM_MPI, rank, size, 0);
  int rc = MPI_Comm_dup(base, &m->comm);
  if (rc != MPI_SUCCESS) {
    int e = mpi_fail(c, rc, "MPI_Comm_dup");
    free(m);
    free(c);
    return e;
  }
  MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN);
  c->impl = m;
  *out = c;
  return MB_OK;
}
