/* eval.h: the evaluation protocol of the BERT-vs-Mamba study
 * (SEED-STUDY.md section 4), done with repeats.
 *
 *  1. Select N examples of the split: "first" (the first N in file order, as
 *     the reference does; IMDB's test file is ordered by label, so the first
 *     1,000 are all negative), "balanced" (the first N/2 of each label, kept
 *     in file order; an odd N takes one more positive) or "strided" (every
 *     k-th example, k = total / N).
 *  2. Batches in order of batch_size rows (the last: the rest, as the
 *     reference slices), every row padded to max_length
 *     (the reference), or packed sequences in a fixed token budget.
 *  3. `warmup` untimed passes over all batches.
 *  4. Reset the peak-memory counter; then `repeats` timed passes, the clock
 *     started and stopped with the device synchronised, each pass computing
 *     logits and argmax of every batch. Accuracy comes from the first timed
 *     pass (all passes compute the same predictions).
 *  5. Report: accuracy, seconds (median of the repeats, and each), samples/s,
 *     tokens/s counting real tokens and counting padded positions (what the
 *     model computed on), and memory: the host peak during the timed passes
 *     minus the evaluation data held in memory (so: weights + activation
 *     arena + batch buffers, like torch.cuda.max_memory_allocated), with the
 *     planned arena and the weights given separately.
 *
 * Also here: the weights a `--model PATH` names, resolved and loaded the same
 * way by eval, predict and export (mb_eval_open_model, mb_open_model_path).
 */
#ifndef MB_EXPERIMENTS_EVAL_H
#define MB_EXPERIMENTS_EVAL_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "autograd/autograd.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "experiments/net.h"
#include "runtime/alloc.h"
#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MB_EVAL_MAX_REPEATS 64

typedef struct {
  int64_t samples;        /* 0 = all */
  char selection[MB_CFG_WORD]; /* first | balanced | strided */
  int64_t batch_size;
  int64_t max_length;
  int packed;             /* 0: padded to max_length */
  int64_t token_budget;   /* packed: 0 = batch_size x max_length */
  int64_t max_seqs;       /* packed: 0 = batch_size */
  int64_t warmup;
  int64_t repeats;
  int quiet;              /* no progress lines */
  size_t exclude_bytes;   /* other data the caller holds (e.g. the whole test set), not counted in peak_mb */
  int profile;            /* time every op of the timed passes; print a table per program to stderr */
  /* The net's backend allocates from this device allocator (a GPU): peak_mb
   * is its peak (like torch.cuda.max_memory_allocated). NULL: the host. */
  mb_device_allocator *device_mem;
  /* Checked between batches: non-zero (a signal's handler set it) ends the
   * evaluation early with r->stopped set and MB_OK. NULL: never. */
  volatile sig_atomic_t *stop;
  /* Called after every batch and every program compiled (NULL: nothing):
   * the trainer's liveness watch while other ranks wait for rank 0. */
  void (*on_batch)(void *arg);
  void *on_batch_arg;
} mb_eval_opts;

typedef struct {
  int64_t n, correct;
  int64_t label_count[2];   /* of the selected examples */
  int64_t confusion[2][2];  /* [true][predicted] */
  double accuracy, loss;
  int repeats;
  double seconds[MB_EVAL_MAX_REPEATS];
  double seconds_median, seconds_min;
  double samples_per_s;       /* n / median seconds */
  double tokens_per_s;        /* real tokens (after truncation) / median seconds */
  double padded_tokens_per_s; /* positions computed (rows x length of every batch) / median seconds */
  int64_t real_tokens, padded_tokens, batches;
  double peak_mb;             /* peak over the timed passes: the host's minus the data set, or the GPU's */
  int peak_on_gpu;            /* peak_mb is the device allocator's */
  int stopped;                /* opts.stop was set: the numbers are incomplete */
  double params_mb, arena_mb; /* weights; planned activation arena of the largest program */
  double data_mb;             /* the evaluation data in memory (excluded from peak_mb) */
  int64_t max_length, batch_size;
  int packed;
  char selection[160];        /* what was selected, in words */
  char attention[32];         /* eval.attention ("auto", "fp8"); "" = not recorded */
} mb_eval_result;

/* The selected examples as a new shard set (freed with mb_shardset_free).
 * *desc gets a description of what was selected ("first 1000 of 25000 in
 * file order (1000 negative, 0 positive)", "5 of 1000 balanced: the first 2
 * negative and 3 positive in file order"). */
int mb_eval_select(const mb_shardset *all, int64_t n, const char *selection, mb_shardset **out, char *desc,
                   size_t cap) MB_NODISCARD;

/* Bytes a shard set holds in tracked host memory. */
size_t mb_shardset_bytes(const mb_shardset *s);

/* Run the protocol on an already selected set. Before any timed pass the
 * program of the first batch's shape is compiled and run once, so no timed
 * pass includes compilation (even with warmup 0). */
int mb_eval_run(mb_net *net, mb_backend *be, const mb_shardset *set, const mb_eval_opts *o,
                mb_eval_result *r) MB_NODISCARD;

/* One result as a JSON object string (malloc'd) with the model's name. */
char *mb_eval_result_json(const mb_eval_result *r, const char *name, const char *describe);
/* The markdown header and one row of the comparison table. */
void mb_eval_table_header(FILE *f);
/* s as a markdown table cell (a '|' escaped, control characters as spaces) in out; returns out. */
const char *mb_md_cell(const char *s, char *out, size_t cap);
void mb_eval_table_row(FILE *f, const char *name, const mb_eval_result *r);

/* ---- the weights --model names (eval, predict, export) ---- */

/* What --model PATH names; exactly one of dir and ckpt is set. */
typedef struct {
  char dir[MB_CFG_PATH];  /* a Hugging Face style directory (config.json) */
  char ckpt[MB_CFG_PATH]; /* a mambert checkpoint directory (manifest.json) */
} mb_model_source;

/* A checkpoint (manifest.json: run_dir/checkpoints/step-N); a run directory
 * (run.json): its final model <run>/model, else its newest valid checkpoint;
 * a Hugging Face style directory (config.json: an export, an HF checkpoint).
 * Errors name PATH and what was expected. */
int mb_model_source_resolve(const char *path, mb_model_source *out) MB_NODISCARD;

typedef struct {
  const char *set_tokenizer; /* how the user gives a tokenizer, for messages (NULL: "tokenizer: in the config") */
  int optional_tokenizer;    /* a directory without a tokenizer file loads anyway (*tok = NULL) */
  int init_missing_head;     /* a directory without a classification head gets one from cfg->seed */
} mb_open_model_opts;

/* Build the net of cfg and put weights into it, from (first that exists):
 * model_path (resolved as above), the run's export <run.dir>/model, its
 * newest checkpoint, or model.checkpoint; else random weights (said loudly).
 * A missing model.checkpoint directory is reported before anything else.
 * The tokenizer is cfg's, else the weights' directory's; when the weights
 * record the vocabulary they were trained with (a checkpoint's state.json, a
 * directory's tokenizer file) another one is an error. *source names where
 * the weights came from. On failure *tok and *out are NULL. opts may be NULL. */
int mb_eval_open_model(mb_config *cfg, const char *model_path, const mb_open_model_opts *opts, mb_backend *be,
                       mb_tokenizer **tok, mb_net **out, char *source, size_t cap) MB_NODISCARD;

/* predict and export: a BERT or Mamba classifier from --model PATH alone (no
 * experiment config): a checkpoint's own config.yaml gives its architecture
 * and tokenizer, a directory its config.json. */
typedef struct {
  const char *tokenizer;  /* vocab.txt / tokenizer.json instead of the model's own, or NULL */
  int optional_tokenizer; /* as mb_open_model_opts */
  int init_missing_head;  /* a new head from seed, for a backbone without one */
  uint64_t seed;
  int num_labels;         /* > 0: the head's classes (a new head may have any; a loaded one must agree) */
  const char *pooling;    /* Mamba: "mean" or "masked_mean"; NULL keeps the model's */
} mb_open_path_opts;

/* tok may be NULL (not wanted). A bow model is an error. */
int mb_open_model_path(const char *path, const mb_open_path_opts *o, mb_backend *be, mb_tokenizer **tok,
                       mb_net **out, char *source, size_t cap) MB_NODISCARD;

#ifdef __cplusplus
}
#endif
#endif
