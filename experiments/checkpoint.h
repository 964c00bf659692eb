/* checkpoint.h: training checkpoints in a run directory, written so that a
 * crash or a full disk at any moment leaves the previous one intact.
 *
 * Layout: <run>/checkpoints/step-00000500/
 *   model.safetensors      every parameter by name (metadata: arch, step)
 *   optimizer.safetensors  AdamW "exp_avg.<name>" / "exp_avg_sq.<name>", or
 *                          SGD "momentum_buffer.<name>"; metadata: optimizer,
 *                          step (updates taken)
 *   optim/zero-RRRRR-of-WWWWW.safetensors  instead of optimizer.safetensors
 *                          with ZeRO-1: each rank's shard (distributed/zero.h)
 *   state.json             step, epoch, loader position blob, seeds, counters,
 *                          world size, model/tokenizer identity, config sha256
 *   config.yaml            the resolved config
 *   manifest.json          sha256 and size of every file above, written last
 *
 * Writing: everything goes into checkpoints/.tmp-step-00000500 (each file
 * written, fsync'ed and renamed within it by runtime/fileio.h), then the
 * directory is fsync'ed, renamed to step-00000500 and the parent fsync'ed.
 * Only then are checkpoints beyond the last K removed. A crash before the
 * rename leaves a .tmp-* directory, which the next writer removes; readers
 * never look at .tmp-* names.
 *
 * Reading: the newest step-* whose manifest is present and whose files all
 * have the recorded sha256 and size; a damaged newer one is skipped with a
 * warning naming what is wrong, so a resume falls back to the one before.
 */
#ifndef MB_EXPERIMENTS_CHECKPOINT_H
#define MB_EXPERIMENTS_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "autograd/autograd.h"
#include "data/loader.h"
#include "runtime/error.h"
#include "runtime/fileio.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What besides weights and optimizer state a resume needs. */
typedef struct {
  int64_t step;         /* optimizer steps taken */
  int64_t micro_step;   /* micro-batches consumed (= step x grad_accum) */
  int64_t epoch;        /* the loader's epoch at that point */
  uint8_t loader[MB_LOADER_STATE_BYTES]; /* rank 0's loader position */
  /* every rank's (world_size x MB_LOADER_STATE_BYTES, rank order; a rank's
   * loader blob names its rank). Written when set; read into a malloc'd
   * buffer the caller frees (NULL in single-rank checkpoints). */
  uint8_t *rank_loaders;
  uint64_t seed;        /* run.seed */
  uint64_t dropout_seed;
  int world_size;
  int zero1;
  double samples_seen, tokens_seen; /* real tokens */
  int counts_all_ranks;             /* read: the counts are every rank's (else rank 0's: older checkpoints) */
  double train_seconds;             /* wall time spent training so far */
  /* The metrics interval open at the checkpoint (steps since the last
   * "train" line, summed over ranks): loss sum, loss rows, tokens, padded
   * tokens, samples, grad-norm sum, steps, seconds; so that a resumed run
   * writes the lines an uninterrupted one would. Zeros when absent (older
   * checkpoints). */
  double log_window[8];
  /* train.loss_scale: the dynamic loss scaler, and the steps it skipped in
   * the open metrics interval (has_loss_scaler 0: none, as in runs without
   * loss scaling). */
  int has_loss_scaler;
  mb_loss_scaler loss_scaler;
  int64_t window_skipped;
  char arch[32];
  char tokenizer_name[64];
  char tokenizer_sha256[65];
  char config_sha256[65];
  char params_sha256[65];           /* of the parameter names and shapes */
} mb_ckpt_state;

/* A checkpoint being written: open (creates the temporary directory), add
 * files, commit. Ranks other than the writer may add their own files
 * (ZeRO shards) between open and commit when they share a file system. */
typedef struct mb_ckpt_writer mb_ckpt_writer;

/* ckpt_root = <run>/checkpoints. Removes a stale temporary of the same step. */
int mb_ckpt_begin(const char *ckpt_root, int64_t step, mb_ckpt_writer **out) MB_NODISCARD;
/* The temporary directory (to write extra files into). */
const char *mb_ckpt_temp_dir(const mb_ckpt_writer *w);
int mb_ckpt_write_weights(mb_ckpt_writer *w, mb_params *p, const char *arch) MB_NODISCARD;
int mb_ckpt_write_optimizer(mb_ckpt_writer *w, mb_params *p, mb_optimizer *o, const char *kind) MB_NODISCARD;
int mb_ckpt_write_state(mb_ckpt_writer *w, const mb_ckpt_state *s) MB_NODISCARD;
int mb_ckpt_write_text(mb_ckpt_writer *w, const char *name, const char *text, size_t len) MB_NODISCARD;
/* Manifest, fsync, rename into place, keep only the newest `keep`. On
 * failure the temporary is removed and older checkpoints are untouched.
 * Frees w in every case; *final_dir (may be NULL) gets the path. */
int mb_ckpt_commit(mb_ckpt_writer *w, int keep, char *final_dir, size_t cap) MB_NODISCARD;
void mb_ckpt_abort(mb_ckpt_writer *w);

/* The newest valid checkpoint under ckpt_root into dir (MB_ENOTFOUND when
 * there is none; damaged ones are skipped with a warning). */
int mb_ckpt_find_latest(const char *ckpt_root, char *dir, size_t cap) MB_NODISCARD;
/* Check one checkpoint directory against its manifest. */
int mb_ckpt_verify(const char *dir) MB_NODISCARD;

int mb_ckpt_read_state(const char *dir, mb_ckpt_state *s) MB_NODISCARD;
/* Optimizer state into o (same kind and parameter names; sets its step). */
int mb_ckpt_read_optimizer(const char *dir, mb_params *p, mb_optimizer *o, const char *kind) MB_NODISCARD;

/* sha256 of the store's parameter names, shapes and dtypes. */
void mb_params_layout_sha256(const mb_params *p, char hex[65]);

/* Tests: a hook asked before the directory-level steps ("ckpt_fsync",
 * "ckpt_rename"), with runtime/fileio.h's contract (nonzero = that errno). */
void mb_ckpt_set_fault_hook(mb_fileio_fault_hook hook);

/* Remove a directory tree (no symlinks followed). */
int mb_rm_rf(const char *path) MB_NODISCARD;
/* fsync a directory. */
int mb_fsync_dir(const char *path) MB_NODISCARD;

#ifdef __cplusplus
}
#endif
#endif
