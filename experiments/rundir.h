/* rundir.h: a run directory: claiming it, refusing to overwrite another
 * run, and its identity file.
 *
 * <run>/run.json says which run lives there (format, name, created, host,
 * config sha256, status). <run>/.lock is held (flock) by the process that
 * trains in it, so two trainers never share a directory.
 *
 * Policy of mb_rundir_claim:
 *   - missing or empty directory: a new run;
 *   - holds a run (run.json): with resume, continue it; with force, move it
 *     aside to <run>.replaced-YYYYmmdd-HHMMSS (never deleted) and start a new
 *     one; otherwise an error naming the run and the three ways out;
 *   - not empty and not a run: refused (force moves it aside too);
 *   - locked by a live trainer: an error naming its pid.
 */
#ifndef MB_EXPERIMENTS_RUNDIR_H
#define MB_EXPERIMENTS_RUNDIR_H

#include <stdint.h>

#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mb_rundir mb_rundir;

/* *is_resume: 1 when continuing a run found there. */
int mb_rundir_claim(const char *dir, int resume, int force, mb_rundir **out, int *is_resume) MB_NODISCARD;
/* Write run.json (atomically) with these fields; status e.g. "running". */
int mb_rundir_write_info(mb_rundir *r, const char *name, const char *config_sha256, const char *arch,
                         const char *status, const char *extra_json) MB_NODISCARD;
const char *mb_rundir_path(const mb_rundir *r);
/* The run's step count when run.json says "completed" (with its "steps")
 * and results.json is there: training, evaluation and export all finished
 * (a run killed during its evaluation or export is not complete); else -1. */
int64_t mb_rundir_completed_steps(const mb_rundir *r);
/* Release the lock. */
void mb_rundir_release(mb_rundir *r);

#ifdef __cplusplus
}
#endif
#endif
