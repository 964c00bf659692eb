/* trainer.h: `mambert train`: the run loop.
 *
 * One call does a whole run: resolve the config (files, --set, or the run
 * directory's saved config when resuming), claim the run directory
 * (rundir.h), set up the ranks (distributed/dist.h), the tokenizer and data
 * (datasets.h), the net (net.h), the optimizer and schedule, then step:
 *   for each optimizer step: grad_accum micro-batches (forward, backward;
 *   with several ranks the gradient buckets all-reduce during the backward),
 *   clip, update; log, evaluate and checkpoint on their schedules.
 * Rank 0 alone writes metrics, checkpoints and the export.
 *
 * Exactness: everything a step depends on is in the checkpoint (weights,
 * optimizer state and step, the loader's position, the seeds; dropout masks
 * are a pure function of (seed, micro-batch index)), so a resumed run
 * produces bit-identical weights to one that was never interrupted
 * (given the same thread count: CPU reductions are fixed per thread count).
 *
 * SIGINT/SIGTERM (Ctrl-C, SLURM preemption): the current step finishes, a
 * checkpoint is written, and train exits with status 3 saying how to resume.
 */
#ifndef MB_EXPERIMENTS_TRAINER_H
#define MB_EXPERIMENTS_TRAINER_H

#include <stdint.h>

#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  const char *const *configs; /* config files, applied in order */
  int nconfigs;
  const char *const *sets;    /* --set KEY=VALUE overrides */
  int nsets;
  const char *run_dir;        /* --run-dir (overrides run.dir) */
  int resume;                 /* --resume */
  int auto_resume;            /* --auto-resume: resume when the run directory holds a run, else start */
  const char *resume_dir;     /* --resume DIR */
  int force;                  /* --force */
} mb_train_args;

/* Exit status for an interrupted (checkpointed) run. */
#define MB_TRAIN_EXIT_INTERRUPTED 3

/* Run training; returns MB_OK or an error (message set). *interrupted is
 * set when a signal stopped the run after a checkpoint. */
int mb_train_run(const mb_train_args *a, int *interrupted) MB_NODISCARD;

#ifdef __cplusplus
}
#endif
#endif
