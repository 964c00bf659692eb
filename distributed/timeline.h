/* timeline.h: timestamped events of a training step (backward ops, gradient
 * readiness, bucket all-reduces, waits), written as a Chrome trace
 * (chrome://tracing, https://ui.perfetto.dev) to show how communication
 * overlaps the backward.
 *
 * Times are mb_time_now() seconds (CLOCK_MONOTONIC). In the trace they are
 * microseconds since the timeline's origin (its creation, or
 * mb_timeline_set_origin, e.g. right after a barrier so ranks line up).
 * Tracks become Chrome "threads": compute (backward ops and gradient
 * readiness), communication (one slice per bucket), host waits.
 */
#ifndef MB_DISTRIBUTED_TIMELINE_H
#define MB_DISTRIBUTED_TIMELINE_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { MB_TRACK_COMPUTE = 0, MB_TRACK_COMM = 1, MB_TRACK_WAIT = 2, MB_TRACK_COUNT } mb_timeline_track;

typedef struct {
  char name[48]; /* "bucket 3", "matmul_bwd", a parameter name (truncated) */
  char cat[16];  /* "backward", "grad_ready", "allreduce", "wait", ... */
  int32_t track; /* mb_timeline_track */
  int32_t step;
  int64_t arg;   /* bucket / parameter / op index, or bytes; -1 if none */
  double t0, t1; /* seconds; t1 == t0 is an instant */
} mb_timeline_event;

typedef struct mb_timeline mb_timeline;

/* max_events bounds memory; events past it are counted as dropped. */
int mb_timeline_create(int rank, size_t max_events, mb_timeline **out) MB_NODISCARD;
void mb_timeline_destroy(mb_timeline *tl);
void mb_timeline_set_origin(mb_timeline *tl, double t);
void mb_timeline_set_step(mb_timeline *tl, int step);
int mb_timeline_step(const mb_timeline *tl);

/* A slice [t0, t1] (or an instant when t1 <= t0). Never fails; a full
 * timeline drops the event and counts it. */
void mb_timeline_add(mb_timeline *tl, mb_timeline_track track, const char *cat, const char *name, double t0,
                     double t1, int64_t arg);

size_t mb_timeline_count(const mb_timeline *tl);
size_t mb_timeline_dropped(const mb_timeline *tl);
const mb_timeline_event *mb_timeline_get(const mb_timeline *tl, size_t i);
void mb_timeline_clear(mb_timeline *tl);

/* Write {"traceEvents": [...], "otherData": {...}} for this rank (pid = rank). */
int mb_timeline_write_chrome(const mb_timeline *tl, const char *path) MB_NODISCARD;

/* Collective over `host` (a host-memory communicator): rank 0 writes every
 * rank's events into one trace, one Chrome process per rank, on a common
 * origin (the earliest). CLOCK_MONOTONIC is shared by the ranks of one
 * machine only; across nodes align origins first (mb_timeline_set_origin
 * right after a barrier). */
typedef struct mb_comm mb_comm;
int mb_timeline_write_chrome_all(const mb_timeline *tl, mb_comm *host, const char *path) MB_NODISCARD;

#ifdef __cplusplus
}
#endif
#endif
