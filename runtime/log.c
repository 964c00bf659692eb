/* log.c: levelled, rank-prefixed logging (log.h). */
#include "runtime/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int log_level = -1; /* -1: not yet read from the environment */
static int log_rank = 0, log_world = 1;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *level_names[] = {"error", "warn", "info", "debug"};

int mb_log_parse_level(const char *s, mb_log_level *out) {
  for (int i = 0; i < 4; i++)
    if (s && strcmp(s, level_names[i]) == 0) {
      *out = (mb_log_level)i;
      return MB_OK;
    }
  return MB_ERR(MB_EINVAL, "log level '%s': expected one of error, warn, info, debug", s ? s : "(null)");
}

mb_log_level mb_log_get_level(void) {
  if (log_level < 0) {
    mb_log_level lv = MB_LOG_INFO;
    const char *env = getenv("MAMBERT_LOG");
    if (env && mb_log_parse_level(env, &lv) != MB_OK) {
      fprintf(stderr, "[mambert warn] MAMBERT_LOG=%s is not a level (error|warn|info|debug); using info\n", env);
      mb_error_clear();
    }
    log_level = (int)lv;
  }
  return (mb_log_level)log_level;
}

void mb_log_set_level(mb_log_level level) { log_level = (int)level; }

void mb_log_set_rank(int rank, int world_size) {
  log_rank = rank;
  log_world = world_size;
}

int mb_log_enabled(mb_log_level level) {
  if ((int)level > (int)mb_log_get_level())
    return 0;
  if (log_rank != 0 && level > MB_LOG_WARN) {
    const char *all = getenv("MAMBERT_LOG_ALL_RANKS");
    if (!all || strcmp(all, "1") != 0)
      return 0;
  }
  return 1;
}

static void vlog(mb_log_level level, const char *fmt, va_list ap) {
  char line[4096];
  int n;
  if (log_world > 1)
    n = snprintf(line, sizeof line, "[mambert r%d/%d %s] ", log_rank, log_world, level_names[level]);
  else
    n = snprintf(line, sizeof line, "[mambert %s] ", level_names[level]);
  vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
  pthread_mutex_lock(&log_lock);
  fputs(line, stderr);
  fputc('\n', stderr);
  fflush(stderr);
  pthread_mutex_unlock(&log_lock);
}

void mb_log(mb_log_level level, const char *fmt, ...) {
  if (!mb_log_enabled(level))
    return;
  va_list ap;
  va_start(ap, fmt);
  vlog(level, fmt, ap);
  va_end(ap);
}

/* A small set of keys already logged; linear search is fine for the few
 * dozen distinct fallbacks a run can produce. */
#define ONCE_CAP 256
static char *once_keys[ONCE_CAP];
static int once_count;

void mb_log_once(mb_log_level level, const char *key, const char *fmt, ...) {
  pthread_mutex_lock(&log_lock);
  for (int i = 0; i < once_count; i++)
    if (strcmp(once_keys[i], key) == 0) {
      pthread_mutex_unlock(&log_lock);
      return;
    }
  if (once_count < ONCE_CAP) {
    once_keys[once_count] = strdup(key);
    if (once_keys[once_count])
      once_count++;
  }
  pthread_mutex_unlock(&log_lock);
  if (!mb_log_enabled(level))
    return;
  va_list ap;
  va_start(ap, fmt);
  vlog(level, fmt, ap);
  va_end(ap);
}

void mb_log_error_status(int code, const char *what) {
  const char *msg = mb_error_message();
  if (mb_log_get_level() >= MB_LOG_DEBUG && mb_error_where()[0])
    mb_log(MB_LOG_ERROR, "%s: %s (%s; raised at %s)", what, msg[0] ? msg : mb_status_name(code),
           mb_status_name(code), mb_error_where());
  else
    mb_log(MB_LOG_ERROR, "%s: %s", what, msg[0] ? msg : mb_status_name(code));
}
