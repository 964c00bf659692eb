/* watchdog.c: the hang-to-abort thread (watchdog.h). */
#include "distributed/watchdog.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "runtime/log.h"

typedef struct {
  int active;
  double deadline;
  char what[200];
  mb_watch_probe probe;
  void *arg;
} watch_slot;

#define CHECK_MAX 16

static pthread_mutex_t wd_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wd_cond = PTHREAD_COND_INITIALIZER;
static watch_slot slots[MB_WATCH_MAX];
static int slots_used; /* high-water mark of slot ids, to keep scans short */
static struct {
  mb_watch_check fn;
  void *arg;
} checks[CHECK_MAX];
static pthread_t wd_thread;
static int wd_running, wd_stop;
static double wd_period = 0.2;
static mb_watch_abort_fn wd_abort;

double mb_time_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void mb_watchdog_set_abort(mb_watch_abort_fn fn) {
  pthread_mutex_lock(&wd_lock);
  wd_abort = fn;
  pthread_mutex_unlock(&wd_lock);
}

static void fire(int code, const char *msg) {
  mb_watch_abort_fn fn = wd_abort;
  if (fn)
    fn(code, msg); /* does not return */
  /* No handler installed (a bare test of the watchdog): there is nothing
   * better to do with a hang than to report it and end the process. */
  mb_log(MB_LOG_ERROR, "%s", msg);
  fflush(NULL);
  _Exit(70);
}

static void *wd_main(void *unused) {
  (void)unused;
  pthread_mutex_lock(&wd_lock);
  while (!wd_stop) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    long ns = until.tv_nsec + (long)(wd_period * 1e9);
    until.tv_sec += ns / 1000000000L;
    until.tv_nsec = ns % 1000000000L;
    int rc = 0;
    while (!wd_stop && rc != ETIMEDOUT)
      rc = pthread_cond_timedwait(&wd_cond, &wd_lock, &until);
    if (wd_stop)
      break;
    double now = mb_time_now();
    char msg[512];
    for (int i = 0; i < slots_used; i++) {
      watch_slot *s = &slots[i];
      if (!s->active)
        continue;
      if (s->probe && s->probe(s->arg)) {
        s->active = 0;
        continue;
      }
      if (now > s->deadline) {
        snprintf(msg, sizeof msg, "watchdog: %s did not finish in time (%.1f s past its deadline); aborting the job",
                 s->what, now - s->deadline);
        pthread_mutex_unlock(&wd_lock);
        fire(MB_EDIST, msg);
        return NULL;
      }
    }
    for (int i = 0; i < CHECK_MAX; i++) {
      if (!checks[i].fn)
        continue;
      msg[0] = 0;
      if (checks[i].fn(checks[i].arg, msg, sizeof msg) != MB_OK) {
        pthread_mutex_unlock(&wd_lock);
        fire(MB_EDIST, msg);
        return NULL;
      }
    }
  }
  pthread_mutex_unlock(&wd_lock);
  return NULL;
}

int mb_watchdog_start(double period_s) {
  pthread_mutex_lock(&wd_lock);
  if (wd_running) {
    pthread_mutex_unlock(&wd_lock);
    return MB_OK;
  }
  wd_period = period_s > 0 ? period_s : 0.2;
  wd_stop = 0;
  int rc = pthread_create(&wd_thread, NULL, wd_main, NULL);
  if (rc == 0)
    wd_running = 1;
  pthread_mutex_unlock(&wd_lock);
  if (rc != 0)
    return MB_ERR(MB_EDIST, "watchdog: cannot start its thread: %s", strerror(rc));
  return MB_OK;
}

void mb_watchdog_stop(void) {
  pthread_mutex_lock(&wd_lock);
  if (!wd_running) {
    pthread_mutex_unlock(&wd_lock);
    return;
  }
  wd_stop = 1;
  pthread_cond_signal(&wd_cond);
  pthread_mutex_unlock(&wd_lock);
  pthread_join(wd_thread, NULL);
  pthread_mutex_lock(&wd_lock);
  wd_running = 0;
  for (int i = 0; i < slots_used; i++)
    slots[i].active = 0;
  slots_used = 0;
  pthread_mutex_unlock(&wd_lock);
}

int mb_watchdog_running(void) {
  pthread_mutex_lock(&wd_lock);
  int r = wd_running;
  pthread_mutex_unlock(&wd_lock);
  return r;
}

int mb_watch_begin(const char *what, double timeout_s, mb_watch_probe probe, void *arg) {
  int id = -1;
  pthread_mutex_lock(&wd_lock);
  for (int i = 0; i < MB_WATCH_MAX; i++)
    if (!slots[i].active) {
      id = i;
      break;
    }
  if (id >= 0) {
    watch_slot *s = &slots[id];
    s->active = 1;
    s->deadline = mb_time_now() + timeout_s;
    snprintf(s->what, sizeof s->what, "%s", what ? what : "(unnamed)");
    s->probe = probe;
    s->arg = arg;
    if (id + 1 > slots_used)
      slots_used = id + 1;
  }
  pthread_mutex_unlock(&wd_lock);
  if (id < 0)
    mb_log_once(MB_LOG_WARN, "watchdog-full", "watchdog: more than %d open watches; %s is not watched",
                MB_WATCH_MAX, what ? what : "(unnamed)");
  return id;
}

void mb_watch_end(int id) {
  if (id < 0 || id >= MB_WATCH_MAX)
    return;
  pthread_mutex_lock(&wd_lock);
  slots[id].active = 0;
  slots[id].probe = NULL;
  slots[id].arg = NULL;
  while (slots_used > 0 && !slots[slots_used - 1].active)
    slots_used--;
  pthread_mutex_unlock(&wd_lock);
}

void mb_watch_extend(int id, double timeout_s) {
  if (id < 0 || id >= MB_WATCH_MAX)
    return;
  pthread_mutex_lock(&wd_lock);
  if (slots[id].active)
    slots[id].deadline = mb_time_now() + timeout_s;
  pthread_mutex_unlock(&wd_lock);
}

int mb_watch_count(void) {
  int n = 0;
  pthread_mutex_lock(&wd_lock);
  for (int i = 0; i < slots_used; i++)
    n += slots[i].active;
  pthread_mutex_unlock(&wd_lock);
  return n;
}

int mb_watchdog_add_check(mb_watch_check fn, void *arg) {
  pthread_mutex_lock(&wd_lock);
  for (int i = 0; i < CHECK_MAX; i++)
    if (!checks[i].fn) {
      checks[i].fn = fn;
      checks[i].arg = arg;
      pthread_mutex_unlock(&wd_lock);
      return MB_OK;
    }
  pthread_mutex_unlock(&wd_lock);
  return MB_ERR(MB_ENOMEM, "watchdog: more than %d periodic checks", CHECK_MAX);
}

void mb_watchdog_remove_check(mb_watch_check fn, void *arg) {
  pthread_mutex_lock(&wd_lock);
  for (int i = 0; i < CHECK_MAX; i++)
    if (checks[i].fn == fn && checks[i].arg == arg) {
      checks[i].fn = NULL;
      checks[i].arg = NULL;
    }
  pthread_mutex_unlock(&wd_lock);
}
