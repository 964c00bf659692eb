/* metrics.h: a run's metrics, as JSON lines in <run>/metrics.jsonl and as
 * scalars in a TensorBoard event file (tfevents.h).
 *
 * Every record is one line: {"kind": "train", "step": 120, "time": unix
 * seconds, "<key>": value, ...}; in TensorBoard the same values appear as
 * "<kind>/<key>" at that step. Non-finite values are written as null.
 * Resuming from a checkpoint at step S first drops the lines of steps > S
 * (what the killed run logged after its checkpoint; they are logged again),
 * and the new event file starts with a SessionLog START at S + 1 so
 * TensorBoard drops its old points past S too.
 */
#ifndef MB_EXPERIMENTS_METRICS_H
#define MB_EXPERIMENTS_METRICS_H

#include <stdint.h>

#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mb_metrics mb_metrics;

/* resume_step < 0: a new run (metrics.jsonl must not exist or is replaced).
 * redo_final_eval: the resumed run's checkpoint is its last step (it was
 * stopped during its final evaluation or export, which it does again): the
 * "eval" lines of resume_step are dropped too. */
int mb_metrics_open(const char *run_dir, int tensorboard, int64_t resume_step, int redo_final_eval,
                    mb_metrics **out) MB_NODISCARD;
int mb_metrics_log(mb_metrics *m, const char *kind, int64_t step, const char *const *keys, const double *values,
                   int n) MB_NODISCARD;
int mb_metrics_close(mb_metrics *m) MB_NODISCARD;

#ifdef __cplusplus
}
#endif
#endif
