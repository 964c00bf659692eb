/* watchdog.h: a per-process thread that turns hangs into aborts.
 *
 * Code about to do something that could block forever (a collective, the MPI
 * or NCCL bootstrap, a whole training step) opens a watch with a deadline and
 * closes it when done. A watch may carry a thread-safe completion probe (a
 * CUDA event query): the watchdog then closes it itself when the probe says
 * done, so GPU work that finished while the host was busy is never blamed.
 * Checks (NCCL's asynchronous error query) run on every tick.
 *
 * When a watch passes its deadline or a check fails, the watchdog logs what
 * was being waited for and calls the abort handler (dist.c installs one that
 * aborts the communicators and then the MPI job), which does not return.
 *
 * The main thread's own waits also have deadlines (comm.c); the watchdog is
 * the backstop for when the main thread is stuck somewhere it cannot notice:
 * inside MPI, inside a CUDA synchronisation, inside a library call.
 */
#ifndef MB_DISTRIBUTED_WATCHDOG_H
#define MB_DISTRIBUTED_WATCHDOG_H

#include <stddef.h>

#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MB_WATCH_MAX 512

/* Returns 1 when the watched thing has finished; called from the watchdog
 * thread with the watchdog's lock held (must be quick and thread-safe). */
typedef int (*mb_watch_probe)(void *arg);
/* Returns MB_OK or fills msg and returns an error; from the watchdog thread. */
typedef int (*mb_watch_check)(void *arg, char *msg, size_t cap);
/* Never returns (aborts the process or the job). */
typedef void (*mb_watch_abort_fn)(int code, const char *msg);

/* Start the thread (idempotent); period_s is how often it looks (e.g. 0.2). */
int mb_watchdog_start(double period_s) MB_NODISCARD;
/* Stop and join the thread; open watches are dropped. */
void mb_watchdog_stop(void);
int mb_watchdog_running(void);
void mb_watchdog_set_abort(mb_watch_abort_fn fn);

/* Open a watch: `what` describes it for the log ("rank 2: all-reduce 'bucket 3'").
 * Returns a slot id >= 0, or -1 when the table is full (logged once; the
 * caller's own deadline still applies). */
int mb_watch_begin(const char *what, double timeout_s, mb_watch_probe probe, void *arg);
void mb_watch_end(int id);
/* Push an open watch's deadline to now + timeout_s. */
void mb_watch_extend(int id, double timeout_s);
int mb_watch_count(void); /* open watches (tests) */

/* Register a periodic check; returns MB_OK or MB_ENOMEM when full. */
int mb_watchdog_add_check(mb_watch_check fn, void *arg) MB_NODISCARD;
void mb_watchdog_remove_check(mb_watch_check fn, void *arg);

/* Monotonic seconds. */
double mb_time_now(void);

#ifdef __cplusplus
}
#endif
#endif
