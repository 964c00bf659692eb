/* log.h: levelled logging to stderr with a rank prefix for multi-rank runs.
 *
 * Lines look like "[mambert r3/8 warn] message". The level comes from
 * mb_log_set_level() or the MAMBERT_LOG environment variable
 * (error|warn|info|debug). Ranks other than 0 log only warnings and errors
 * unless MAMBERT_LOG_ALL_RANKS=1, so an 8-rank job does not print 8 copies.
 */
#ifndef MB_RUNTIME_LOG_H
#define MB_RUNTIME_LOG_H

#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { MB_LOG_ERROR = 0, MB_LOG_WARN = 1, MB_LOG_INFO = 2, MB_LOG_DEBUG = 3 } mb_log_level;

void mb_log_set_level(mb_log_level level);
mb_log_level mb_log_get_level(void);
/* Parse "error|warn|info|debug"; returns MB_EINVAL on anything else. */
int mb_log_parse_level(const char *s, mb_log_level *out);
void mb_log_set_rank(int rank, int world_size);
int mb_log_enabled(mb_log_level level);

void mb_log(mb_log_level level, const char *fmt, ...) MB_PRINTF(2, 3);

/* Log a warning only the first time `key` is seen in this process (e.g. the
 * attention dispatcher explaining a fallback once per shape). */
void mb_log_once(mb_log_level level, const char *key, const char *fmt, ...) MB_PRINTF(3, 4);

/* Print the current error (mb_error_message) at error level with a prefix. */
void mb_log_error_status(int code, const char *what);

#define MB_LOG_ERRORF(...) mb_log(MB_LOG_ERROR, __VA_ARGS__)
#define MB_WARN(...) mb_log(MB_LOG_WARN, __VA_ARGS__)
#define MB_INFO(...) mb_log(MB_LOG_INFO, __VA_ARGS__)
#define MB_DEBUG(...) mb_log(MB_LOG_DEBUG, __VA_ARGS__)

#ifdef __cplusplus
}
#endif
#endif
