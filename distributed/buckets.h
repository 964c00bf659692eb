/* buckets.h: gradient buckets, all-reduced while the backward still runs.
 *
 * The trainer lists its parameters in the order the AOT backward produces
 * their final gradients (name, offset and element count in the flat gradient
 * buffer). Consecutive parameters in that order are grouped into buckets of
 * about bucket_bytes (25 MiB by default; MAMBERT_BUCKET_MB overrides). The
 * executor's hook calls mb_buckets_grad_ready(i) when parameter i's gradient
 * is final; when the last gradient of a bucket is in, the bucket's
 * non-blocking all-reduce (average over ranks) starts. Buckets start in
 * bucket order, the same on every rank, as MPI and NCCL require; a bucket
 * that fills early waits for the ones before it. Before the optimizer reads
 * gradients, mb_buckets_wait_all (or mb_buckets_wait_bucket per bucket).
 *
 * Where a bucket lives:
 *   - contiguous: its parameters are adjacent in the flat buffer (in either
 *     direction: a layout in forward order and a backward in reverse order
 *     is the usual case). It is all-reduced in place over its element range;
 *     gaps of unowned padding up to 1/8 of the bucket are reduced with it.
 *   - staged: otherwise (the layout does not follow the backward order, or
 *     force_staging). Its pieces are packed into a per-bucket staging buffer
 *     when it starts, reduced there, and copied back when it completes. This
 *     costs one extra copy each way and the staging memory.
 * mb_buckets_info says which each bucket is.
 *
 * Gradient accumulation: mb_buckets_begin_step(b, 0) before the backward of
 * each micro-batch but the last: readiness is tracked, nothing is sent;
 * mb_buckets_begin_step(b, 1) before the last one.
 *
 * Progress: each grad_ready call also tests the buckets in flight, which is
 * what drives MPI's non-blocking collectives on CPU, and timestamps their
 * completion for the timeline.
 */
#ifndef MB_DISTRIBUTED_BUCKETS_H
#define MB_DISTRIBUTED_BUCKETS_H

#include <stddef.h>

#include "distributed/comm.h"
#include "distributed/timeline.h"
#include "runtime/dtype.h"
#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MB_BUCKET_DEFAULT_BYTES ((size_t)25 << 20)

/* One trainable parameter's gradient inside the flat gradient buffer. */
typedef struct {
  const char *name; /* copied */
  size_t offset;    /* elements from the start of the buffer */
  size_t count;     /* elements */
} mb_grad_param;

typedef struct {
  size_t bucket_bytes;       /* 0: MAMBERT_BUCKET_MB (MiB) or 25 MiB */
  size_t first_bucket_bytes; /* 0: bucket_bytes. A small first bucket starts communication sooner */
  mb_dtype dtype;            /* of the gradients; MB_F32 (0) by default */
  int force_staging;         /* stage every bucket (tests, or to reduce a subset of a buffer) */
  int sum;                   /* 1: sum over ranks instead of the average */
  mb_timeline *timeline;     /* borrowed; NULL records nothing */
} mb_buckets_options;

typedef struct {
  int first;        /* position of its first parameter in the backward order */
  int num_params;   /* parameters [first, first + num_params) of that order */
  size_t count;     /* gradient elements */
  size_t bytes;
  int contiguous;   /* 1: reduced in place over [offset, offset + span) */
  size_t offset, span;
  int num_segments; /* staged: pieces packed (adjacent parameters merged) */
  /* the latest step: last gradient in, all-reduce started, seen complete */
  double t_ready, t_start, t_end;
} mb_bucket_info;

typedef struct {
  double backward_begin, backward_end; /* first and last grad_ready of the step */
  double comm_total;                   /* sum over buckets of (end - start) */
  double comm_hidden;                  /* the part of that inside [backward_begin, backward_end] */
  double hidden_fraction;              /* comm_hidden / comm_total */
  double exposed;                      /* last bucket end - backward_end (what the optimizer waits), >= 0 */
  int buckets_started_before_end;      /* buckets whose all-reduce began before the last gradient */
  int buckets;
} mb_overlap_stats;

typedef struct mb_buckets mb_buckets;

/* params: in backward order; grads: the flat buffer (device memory for an
 * NCCL communicator) of grad_numel elements. Checks that every parameter
 * lies inside the buffer and that none overlap (names both). */
int mb_buckets_create(mb_comm *comm, void *grads, size_t grad_numel, const mb_grad_param *params, int nparams,
                      const mb_buckets_options *opt, mb_buckets **out) MB_NODISCARD;
void mb_buckets_destroy(mb_buckets *b);

int mb_buckets_count(const mb_buckets *b);
const mb_bucket_info *mb_buckets_info(const mb_buckets *b, int k);
int mb_buckets_bucket_of(const mb_buckets *b, int param_index);
size_t mb_buckets_staging_bytes(const mb_buckets *b);

/* Start a step (or a micro-batch): sync = 1 communicates, 0 only tracks. A
 * step needs every bucket of the previous one finished (waited). */
int mb_buckets_begin_step(mb_buckets *b, int sync) MB_NODISCARD;

/* The executor's hook: gradient of params[param_index] is final. */
int mb_buckets_grad_ready(mb_buckets *b, int param_index) MB_NODISCARD;

/* Wait for one bucket (its gradients are then averaged). An error if the
 * bucket never started: names the parameters that were never reported. */
int mb_buckets_wait_bucket(mb_buckets *b, int k) MB_NODISCARD;
/* Wait for every bucket; then the next step may begin. */
int mb_buckets_wait_all(mb_buckets *b) MB_NODISCARD;

/* Overlap of the latest synchronised step (from bucket times). */
int mb_buckets_overlap(const mb_buckets *b, mb_overlap_stats *out) MB_NODISCARD;

#ifdef __cplusplus
}
#endif
#endif
