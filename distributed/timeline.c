/* timeline.c: step timelines and their Chrome-trace JSON (timeline.h).
 * JSON is built with jansson. */
#include "distributed/timeline.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int mb_timeline_write_chrome(const mb_timeline *tl, const char *path) {
  json_t *events = json_array();
  json_t *root = json_object();
  if (!events || !root) {
    json_decref(events);
    json_decref(root);
    return MB_ERR(MB_ENOMEM, "timeline: no memory for JSON");
  }
  /* Name the process and its tracks. */
  char pname[32];
  snprintf(pname, sizeof pname, "rank %d", tl->rank);
  json_array_append_new(events, json_pack("{s:s, s:s, s:i, s:i, s:{s:s}}", "name", "process_name", "ph", "M",
                                          "pid", tl->rank, "tid", 0, "args", "name", pname));
  for (int t = 0; t < MB_TRACK_COUNT; t++)
    json_array_append_new(events, json_pack("{s:s, s:s, s:i, s:i, s:{s:s}}", "name", "thread_name", "ph", "M",
                                            "pid", tl->rank, "tid", t, "args", "name", track_names[t]));
  for (size_t i = 0; i < tl->count; i++) {
    const mb_timeline_event *e = &tl->ev[i];
    double ts = (e->t0 - tl->origin) * 1e6;
    json_t *j;
    if (e->t1 > e->t0)
      j = json_pack("{s:s, s:s, s:s, s:f, s:f, s:i, s:i, s:{s:I, s:i}}", "name", e->name, "cat", e->cat, "ph",
                    "X", "ts", ts, "dur", (e->t1 - e->t0) * 1e6, "pid", tl->rank, "tid", e->track, "args", "arg",
                    (json_int_t)e->arg, "step", e->step);
    else
      j = json_pack("{s:s, s:s, s:s, s:s, s:f, s:i, s:i, s:{s:I, s:i}}", "name", e->name, "cat", e->cat, "ph",
                    "i", "s", "t", "ts", ts, "pid", tl->rank, "tid", e->track, "args", "arg", (json_int_t)e->arg,
                    "step", e->step);
    if (!j || json_array_append_new(events, j) != 0) {
      json_decref(events);
      json_decref(root);
      return MB_ERR(MB_ENOMEM, "timeline: no memory for JSON event %zu", i);
    }
  }
  json_object_set_new(root, "traceEvents", events);
  json_object_set_new(root, "displayTimeUnit", json_string("ms"));
  json_object_set_new(root, "otherData", json_pack("{s:i, s:I, s:I}", "rank", tl->rank, "events",
                                                   (json_int_t)tl->count, "dropped", (json_int_t)tl->dropped));
  int rc = json_dump_file(root, path, JSON_COMPACT);
  json_decref(root);
  if (rc != 0)
    return MB_ERR(MB_EIO, "timeline: cannot write %s: %s", path, strerror(errno));
  return MB_OK;
}
