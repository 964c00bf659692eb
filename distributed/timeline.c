/* timeline.c: step timelines and their Chrome-trace JSON (timeline.h).
 * JSON is built with jansson. */
#include "distributed/timeline.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distributed/comm.h"
#include "distributed/watchdog.h"

struct mb_timeline {
  int rank;
  int step;
  double origin;
  size_t count, cap, max_events, dropped;
  mb_timeline_event *ev;
};

static const char *track_names[MB_TRACK_COUNT] = {"compute", "communication", "host waits"};

int mb_timeline_create(int rank, size_t max_events, mb_timeline **out) {
  *out = NULL;
  mb_timeline *tl = calloc(1, sizeof *tl);
  if (!tl)
    return MB_ERR(MB_ENOMEM, "timeline: no memory");
  tl->rank = rank;
  tl->origin = mb_time_now();
  tl->max_events = max_events ? max_events : 1u << 20;
  *out = tl;
  return MB_OK;
}

void mb_timeline_destroy(mb_timeline *tl) {
  if (!tl)
    return;
  free(tl->ev);
  free(tl);
}

void mb_timeline_set_origin(mb_timeline *tl, double t) { tl->origin = t; }
void mb_timeline_set_step(mb_timeline *tl, int step) { tl->step = step; }
int mb_timeline_step(const mb_timeline *tl) { return tl->step; }
size_t mb_timeline_count(const mb_timeline *tl) { return tl->count; }
size_t mb_timeline_dropped(const mb_timeline *tl) { return tl->dropped; }

const mb_timeline_event *mb_timeline_get(const mb_timeline *tl, size_t i) {
  return i < tl->count ? &tl->ev[i] : NULL;
}

void mb_timeline_clear(mb_timeline *tl) {
  tl->count = 0;
  tl->dropped = 0;
}

void mb_timeline_add(mb_timeline *tl, mb_timeline_track track, const char *cat, const char *name, double t0,
                     double t1, int64_t arg) {
  if (!tl)
    return;
  if (tl->count == tl->cap) {
    if (tl->cap >= tl->max_events) {
      tl->dropped++;
      return;
    }
    size_t ncap = tl->cap ? tl->cap * 2 : 256;
    if (ncap > tl->max_events)
      ncap = tl->max_events;
    mb_timeline_event *n = realloc(tl->ev, ncap * sizeof *n);
    if (!n) {
      tl->dropped++;
      return;
    }
    tl->ev = n;
    tl->cap = ncap;
  }
  mb_timeline_event *e = &tl->ev[tl->count++];
  memset(e, 0, sizeof *e);
  snprintf(e->name, sizeof e->name, "%s", name ? name : "");
  snprintf(e->cat, sizeof e->cat, "%s", cat ? cat : "");
  e->track = (int32_t)track;
  e->step = tl->step;
  e->arg = arg;
  e->t0 = t0;
  e->t1 = t1 > t0 ? t1 : t0;
}

/* Metadata and events of one rank into a traceEvents array. */
static int append_rank(json_t *events, int rank, const mb_timeline_event *ev, size_t n, double origin) {
  char pname[32];
  snprintf(pname, sizeof pname, "rank %d", rank);
  if (json_array_append_new(events, json_pack("{s:s, s:s, s:i, s:i, s:{s:s}}", "name", "process_name", "ph", "M",
                                              "pid", rank, "tid", 0, "args", "name", pname)) != 0)
    return MB_ERR(MB_ENOMEM, "timeline: no memory for JSON");
  for (int t = 0; t < MB_TRACK_COUNT; t++)
    if (json_array_append_new(events, json_pack("{s:s, s:s, s:i, s:i, s:{s:s}}", "name", "thread_name", "ph", "M",
                                                "pid", rank, "tid", t, "args", "name", track_names[t])) != 0)
      return MB_ERR(MB_ENOMEM, "timeline: no memory for JSON");
  for (size_t i = 0; i < n; i++) {
    const mb_timeline_event *e = &ev[i];
    double ts = (e->t0 - origin) * 1e6;
    json_t *j;
    if (e->t1 > e->t0)
      j = json_pack("{s:s, s:s, s:s, s:f, s:f, s:i, s:i, s:{s:I, s:i}}", "name", e->name, "cat", e->cat, "ph",
                    "X", "ts", ts, "dur", (e->t1 - e->t0) * 1e6, "pid", rank, "tid", e->track, "args", "arg",
                    (json_int_t)e->arg, "step", e->step);
    else
      j = json_pack("{s:s, s:s, s:s, s:s, s:f, s:i, s:i, s:{s:I, s:i}}", "name", e->name, "cat", e->cat, "ph",
                    "i", "s", "t", "ts", ts, "pid", rank, "tid", e->track, "args", "arg", (json_int_t)e->arg,
                    "step", e->step);
    if (!j || json_array_append_new(events, j) != 0)
      return MB_ERR(MB_ENOMEM, "timeline: no memory for JSON event %zu of rank %d", i, rank);
  }
  return MB_OK;
}

static int dump(json_t *events, int ranks, size_t count, size_t dropped, const char *path) {
  json_t *root = json_object();
  if (!root) {
    json_decref(events);
    return MB_ERR(MB_ENOMEM, "timeline: no memory for JSON");
  }
  json_object_set_new(root, "traceEvents", events);
  json_object_set_new(root, "displayTimeUnit", json_string("ms"));
  json_object_set_new(root, "otherData", json_pack("{s:i, s:I, s:I}", "ranks", ranks, "events", (json_int_t)count,
                                                   "dropped", (json_int_t)dropped));
  int rc = json_dump_file(root, path, JSON_COMPACT);
  json_decref(root);
  if (rc != 0)
    return MB_ERR(MB_EIO, "timeline: cannot write %s: %s", path, strerror(errno));
  return MB_OK;
}

int mb_timeline_write_chrome(const mb_timeline *tl, const char *path) {
  json_t *events = json_array();
  if (!events)
    return MB_ERR(MB_ENOMEM, "timeline: no memory for JSON");
  int rc = append_rank(events, tl->rank, tl->ev, tl->count, tl->origin);
  if (rc != MB_OK) {
    json_decref(events);
    return rc;
  }
  return dump(events, 1, tl->count, tl->dropped, path);
}

int mb_timeline_write_chrome_all(const mb_timeline *tl, mb_comm *host, const char *path) {
  int n = mb_comm_size(host), rank = mb_comm_rank(host);
  int64_t mine[2] = {(int64_t)tl->count, (int64_t)tl->dropped};
  double origin = tl->origin;
  int64_t *counts = calloc((size_t)n * 2, sizeof *counts);
  double *origins = calloc((size_t)n, sizeof *origins);
  unsigned char *send = NULL, *all = NULL;
  json_t *events = NULL;
  int rc = MB_OK;
  if (!counts || !origins) {
    rc = MB_ERR(MB_ENOMEM, "timeline: no memory");
    goto done; /* (a rank without memory here leaves the others to their deadline) */
  }
  rc = mb_comm_allgather(host, mine, counts, 2, MB_I64);
  if (rc == MB_OK)
    rc = mb_comm_allgather(host, &origin, origins, 1, MB_F64);
  if (rc != MB_OK)
    goto done;
  size_t maxc = 0, total = 0, dropped = 0;
  double common = origins[0];
  for (int r = 0; r < n; r++) {
    size_t c = (size_t)counts[2 * r];
    maxc = c > maxc ? c : maxc;
    total += c;
    dropped += (size_t)counts[2 * r + 1];
    common = origins[r] < common ? origins[r] : common;
  }
  size_t chunk = (maxc ? maxc : 1) * sizeof(mb_timeline_event);
  send = calloc(1, chunk);
  all = calloc((size_t)n, chunk);
  if (!send || !all) {
    rc = MB_ERR(MB_ENOMEM, "timeline: no memory to gather %zu events", total);
    goto done;
  }
  if (tl->count)
    memcpy(send, tl->ev, tl->count * sizeof(mb_timeline_event));
  rc = mb_comm_allgather(host, send, all, chunk, MB_U8);
  if (rc != MB_OK || rank != 0)
    goto done;
  events = json_array();
  if (!events) {
    rc = MB_ERR(MB_ENOMEM, "timeline: no memory for JSON");
    goto done;
  }
  for (int r = 0; r < n && rc == MB_OK; r++)
    rc = append_rank(events, r, (const mb_timeline_event *)(const void *)(all + (size_t)r * chunk),
                     (size_t)counts[2 * r], common);
  if (rc == MB_OK) {
    rc = dump(events, n, total, dropped, path);
    events = NULL;
  }
done:
  json_decref(events);
  free(counts);
  free(origins);
  free(send);
  free(all);
  return rc;
}
