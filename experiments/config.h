/* config.h: the experiment configuration: a typed struct, read from YAML
 * (libyaml's document API), overridden from the command line, checked, and
 * written back out fully resolved.
 *
 * One table (config.c, mb_config_schema) lists every key: its dotted path
 * ("optim.lr"), type, range or allowed words, default and a line of help.
 * Reading walks the YAML mappings and finds each key in the table, so
 *   - an unknown key is an error naming it, where it is (file:line:column,
 *     libyaml's marks, 1-based) and the nearest known key;
 *   - a value of the wrong type ("lr: fast", a quoted "3" for an integer,
 *     a list for a number) or out of range is an error naming the key, the
 *     position and what was expected;
 *   - a key given twice in one mapping is an error (YAML allows it silently).
 * Overrides `--set optim.lr=3e-5` parse the value as YAML too (so lists and
 * quoting work the same) and name "--set optim.lr" in their errors.
 * mb_config_check then checks what single keys cannot (a model given either
 * as an architecture or as a checkpoint, heads dividing the hidden size,
 * packed batches fitting max_length, ...), naming the key and where it was
 * set (or "default").
 *
 * A resolved config (every key, defaults included) is written to the run
 * directory as config.yaml; resuming reads it back and gets the same struct,
 * floats included (written with the shortest exact decimal form).
 *
 * A sweep file (experiments/sweep.yaml) uses the same reader: its `sweep`
 * section lists the configs to compare and the lengths to sweep.
 */
#ifndef MB_EXPERIMENTS_CONFIG_H
#define MB_EXPERIMENTS_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MB_CFG_PATH 1024
#define MB_CFG_WORD 32
#define MB_CFG_MAX_LIST 32
#define MB_CFG_MAX_CONFIGS 8
#define MB_CFG_MAX_LABELS 64 /* = MB_MODEL_MAX_LABELS */
#define MB_CFG_LABEL 64      /* bytes of a label name with its NUL (= MB_MODEL_LABEL_CAP) */

typedef struct {
  /* run */
  char run_dir[MB_CFG_PATH];     /* run.dir: where metrics, checkpoints and the export go */
  char run_name[128];            /* run.name: a label in logs and tables */
  int64_t seed;                  /* run.seed */

  /* model */
  char model_arch[MB_CFG_WORD];  /* bert | mamba | bow ("" with a checkpoint: from its config.json) */
  char model_checkpoint[MB_CFG_PATH]; /* a Hugging Face style directory to start from */
  int64_t vocab_size;            /* 0: the tokenizer's */
  int64_t hidden_size;           /* bert */
  int64_t d_model;               /* mamba (and bow) */
  int64_t num_layers;
  int64_t num_heads;             /* bert */
  int64_t intermediate_size;     /* bert; 0 = 4 x hidden_size */
  int64_t max_position;          /* bert: position embeddings */
  char position_init[MB_CFG_WORD]; /* bert: normal | sinusoidal (random initialisation only) */
  int64_t d_state, d_conv, expand, dt_rank; /* mamba; dt_rank 0 = ceil(d_model / 16) */
  char pooling[MB_CFG_WORD];     /* cls (bert) | mean | masked_mean */
  int64_t num_labels;
  int n_labels;                   /* model.labels: the classes' names (0: the model's own, or LABEL_i) */
  char labels[MB_CFG_MAX_LABELS][MB_CFG_LABEL];
  double dropout;                /* hidden dropout (bert; mamba before the head) */
  double attention_dropout;      /* bert */
  int attention_dropout_exact;   /* bert: the unfused attention, so attention_dropout applies (mb_bert_config) */

  char tokenizer[MB_CFG_PATH];   /* vocab.txt or tokenizer.json; "" = the checkpoint's */

  /* data */
  char dataset[MB_CFG_WORD];     /* imdb | nsmc: for raw inputs */
  char train_data[MB_CFG_PATH];  /* shard spec (file, glob, dir) or a raw .tsv[.gz]/.txt[.gz] */
  char test_data[MB_CFG_PATH];
  char cache_dir[MB_CFG_PATH];   /* prepared shards of raw inputs; "" = <run.dir>/data */
  int64_t max_length;
  char batching[MB_CFG_WORD];    /* padded | packed */
  int64_t batch_size;            /* padded rows per micro-batch (per rank) */
  int64_t token_budget;          /* packed: tokens per micro-batch; 0 = batch_size x max_length */
  int64_t max_seqs;              /* packed: 0 = token_budget / 8 */
  int64_t bucket_multiple;       /* padded: batch length rounded to this; 0 = always max_length */
  int64_t train_limit;           /* only the first N training examples (0 = all) */
  int shuffle;
  int64_t sort_window;           /* sort by length within windows of this many batches; 0 = in epoch order */

  /* optim */
  char optimizer[MB_CFG_WORD];   /* adamw | sgd */
  double lr;
  double betas[2];
  double eps;
  double weight_decay;
  double momentum;
  int nesterov;
  int decay_norms_biases;        /* 0 (default): biases and norm weights get no weight decay */

  /* schedule */
  char decay[MB_CFG_WORD];       /* constant | linear | cosine */
  int64_t warmup_steps;
  double warmup_ratio;           /* > 0: warmup = ratio x total steps */

  /* train */
  int64_t epochs;
  int64_t max_steps;             /* > 0: stop after this many optimizer steps */
  int64_t grad_accum;
  double clip_grad_norm;         /* 0: off */
  char precision[MB_CFG_WORD];   /* f32 | bf16 | fp16 | fp8 */
  char loss_scale[MB_CFG_WORD];  /* auto (dynamic for fp16) | dynamic | off */
  double loss_scale_init;        /* the first scale (torch's GradScaler: 65536) */
  int64_t loss_scale_interval;   /* good steps before the scale doubles (2000) */
  char device[MB_CFG_WORD];      /* auto | cpu | cuda */
  int recompute;
  int zero1;
  double bucket_mb;              /* multi-rank: gradient bucket size in MiB; 0 = MAMBERT_BUCKET_MB or 25 */
  int64_t threads;               /* OpenMP threads; 0 = OMP_NUM_THREADS or all */

  /* eval */
  char eval_split[MB_CFG_WORD];  /* test | train */
  int64_t eval_samples;          /* 0 = all */
  char eval_selection[MB_CFG_WORD]; /* first | balanced | strided */
  int64_t eval_batch_size;
  int64_t eval_max_length;       /* 0 = data.max_length */
  char eval_batching[MB_CFG_WORD]; /* padded | packed */
  char eval_attention[MB_CFG_WORD]; /* auto | fp8 (bert: e4m3 q, k, v) */
  int64_t eval_warmup;           /* untimed passes */
  int64_t eval_repeats;          /* timed passes (the median is reported) */
  int64_t eval_every;            /* steps; 0 = only at the end */
  int64_t eval_during_samples;   /* samples for periodic evaluation (0 = eval.samples) */
  char eval_during_selection[MB_CFG_WORD]; /* their selection (default strided: both labels) */
  int eval_at_end;

  /* checkpoint */
  int64_t ckpt_every;            /* steps; 0 = only at the end */
  int64_t ckpt_keep;             /* keep the last K */
  int ckpt_at_end;
  int export_at_end;             /* write <run.dir>/model as a Hugging Face directory */

  /* log */
  int64_t log_every;
  int tensorboard;
  char progress[MB_CFG_WORD];    /* auto | bar | lines | off */
  int profile;                   /* time every op; print a table at the end */
  int64_t timeline_step;         /* record this optimizer step's backward and all-reduces; 0 = off */

  /* sweep */
  int n_sweep_lengths;
  int64_t sweep_lengths[MB_CFG_MAX_LIST];
  int n_sweep_configs;
  char sweep_configs[MB_CFG_MAX_CONFIGS][MB_CFG_PATH];
  int64_t sweep_samples;
  char sweep_out[MB_CFG_PATH];
} mb_config;

/* Where a key's value came from: "file.yaml:3:7", "--set", or "default". */
typedef struct {
  char where[MB_CFG_PATH + 32];
  int set;   /* 1 if given (file or --set) */
  int layer; /* which source gave it: 1 for the first file, counting on through the files and each --set */
} mb_config_origin;

typedef struct mb_config_doc mb_config_doc; /* the struct plus each key's origin */

/* Types of the schema's entries. */
typedef enum {
  MB_CFG_INT = 0,
  MB_CFG_FLOAT,
  MB_CFG_BOOL,
  MB_CFG_STR,    /* a path or free text */
  MB_CFG_ENUM,   /* one of a list of words */
  MB_CFG_FLOAT2, /* a list of exactly two numbers */
  MB_CFG_INTLIST,
  MB_CFG_STRLIST
} mb_cfg_type;

typedef struct {
  const char *key; /* "optim.lr" */
  mb_cfg_type type;
  size_t offset;   /* into mb_config */
  size_t size;     /* bytes (strings: capacity) */
  double lo, hi;   /* numbers: inclusive range */
  const char *words; /* enums: "adamw|sgd" */
  const char *help;
  int resume_may_change; /* may differ from the saved config when resuming */
} mb_cfg_entry;

const mb_cfg_entry *mb_config_schema(int *n);
const mb_cfg_entry *mb_config_find_entry(const char *key);

/* Defaults for every key. */
void mb_config_defaults(mb_config *c);

/* A config being assembled: defaults, then files and overrides. */
int mb_config_doc_new(mb_config_doc **out) MB_NODISCARD;
void mb_config_doc_free(mb_config_doc *d);
mb_config *mb_config_doc_config(mb_config_doc *d);
const mb_config_origin *mb_config_doc_origin(const mb_config_doc *d, const char *key);
/* "optim.lr (set at cfg.yaml:4:7)" or "optim.lr (default)" into buf. */
const char *mb_config_doc_describe(const mb_config_doc *d, const char *key, char *buf, size_t cap);

/* Read a YAML file on top of what the doc holds. `path` names it in errors. */
int mb_config_doc_load_file(mb_config_doc *d, const char *path) MB_NODISCARD;
/* The same from text in memory (`name` stands for the file in messages). */
int mb_config_doc_load_string(mb_config_doc *d, const char *text, size_t len, const char *name) MB_NODISCARD;
/* One override "section.key=value" (the value is YAML: 3e-5, true, [0.9, 0.98], "text"). */
int mb_config_doc_set(mb_config_doc *d, const char *assignment) MB_NODISCARD;

/* Cross-key checks for `purpose` ("train", "eval", "sweep"); messages name
 * the key and where it was set. */
int mb_config_check(const mb_config_doc *d, const char *purpose) MB_NODISCARD;

/* 1 when training scales the loss dynamically: train.loss_scale dynamic, or
 * auto with train.precision fp16. */
int mb_config_loss_scaling(const mb_config *c);

/* The resolved config as YAML (every key, schema order); *out is malloc'd.
 * `comment` (may be NULL) becomes a leading "# ..." line. */
int mb_config_to_yaml(const mb_config *c, const char *comment, char **out, size_t *len) MB_NODISCARD;
/* sha256 hex of the keys that must not change on resume. */
void mb_config_identity_sha256(const mb_config *c, char hex[65]);
/* The relative paths of c (run.dir, model.checkpoint, tokenizer,
 * data.train / test / cache_dir) made absolute against the working
 * directory, which is what they meant: a run's saved config.yaml must mean
 * the same files to --resume and eval run from elsewhere. */
int mb_config_absolute_paths(mb_config *c) MB_NODISCARD;
/* Keys whose values differ between a and b (ignoring resume_may_change
 * ones when `identity_only`), comma-separated into buf; returns the count. */
int mb_config_diff(const mb_config *a, const mb_config *b, int identity_only, char *buf, size_t cap);
/* A key's value as text ("3e-05", "[0.9, 0.999]", "adamw"). */
void mb_config_value_string(const mb_config *c, const mb_cfg_entry *e, char *buf, size_t cap);

/* Convenience: defaults, each file in turn, then each override, then the
 * checks for `purpose` (NULL: none). */
int mb_config_load(const char *const *files, int nfiles, const char *const *sets, int nsets, const char *purpose,
                   mb_config_doc **out) MB_NODISCARD;

#ifdef __cplusplus
}
#endif
#endif
