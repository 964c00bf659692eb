/* config.c: the experiment config schema, its YAML reader (libyaml
 * documents: each node carries its line and column), command-line
 * overrides, cross-key checks and the resolved YAML writer. See config.h. */
#include "experiments/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "mambert_build_config.h"
#include "runtime/fileio.h"
#include "runtime/hash.h"
#include "runtime/log.h"

#define OFF(f) offsetof(mb_config, f), sizeof(((mb_config *)0)->f)
#define BIG 9.0e15 /* integers are exact in a double up to 2^53 */

/* Keys that may change when resuming are marked 1 in the last column: they
 * do not change what training computes. */
static const mb_cfg_entry SCHEMA[] = {
    {"run.dir", MB_CFG_STR, OFF(run_dir), 0, 0, NULL, "run directory (metrics, checkpoints, export)", 1},
    {"run.name", MB_CFG_STR, OFF(run_name), 0, 0, NULL, "label in logs and tables (default: the config's file name)", 1},
    {"run.seed", MB_CFG_INT, OFF(seed), 0, BIG, NULL, "seed of initialisation, shuffling and dropout", 0},

    {"model.arch", MB_CFG_ENUM, OFF(model_arch), 0, 0, "bert|mamba|bow", "architecture trained from scratch", 0},
    {"model.checkpoint", MB_CFG_STR, OFF(model_checkpoint), 0, 0, NULL,
     "Hugging Face style directory (config.json + model.safetensors) to start from", 0},
    {"model.vocab_size", MB_CFG_INT, OFF(vocab_size), 0, 1 << 24, NULL, "0: the tokenizer's vocabulary size", 0},
    {"model.hidden_size", MB_CFG_INT, OFF(hidden_size), 1, 1 << 16, NULL, "bert: hidden size", 0},
    {"model.d_model", MB_CFG_INT, OFF(d_model), 1, 1 << 16, NULL, "mamba, bow: model width", 0},
    {"model.num_layers", MB_CFG_INT, OFF(num_layers), 0, 1024, NULL, "encoder layers / residual blocks", 0},
    {"model.num_heads", MB_CFG_INT, OFF(num_heads), 1, 1024, NULL, "bert: attention heads", 0},
    {"model.intermediate_size", MB_CFG_INT, OFF(intermediate_size), 0, 1 << 18, NULL,
     "bert: MLP width (0: 4 x hidden_size)", 0},
    {"model.max_position", MB_CFG_INT, OFF(max_position), 1, 1 << 20, NULL, "bert: position embeddings", 0},
    {"model.position_init", MB_CFG_ENUM, OFF(position_init), 0, 0, "normal|sinusoidal",
     "bert, from scratch: position embeddings start normal (HF) or as sinusoids", 0},
    {"model.d_state", MB_CFG_INT, OFF(d_state), 1, 1024, NULL, "mamba: SSM state size", 0},
    {"model.d_conv", MB_CFG_INT, OFF(d_conv), 1, 64, NULL, "mamba: causal conv width", 0},
    {"model.expand", MB_CFG_INT, OFF(expand), 1, 16, NULL, "mamba: inner width = expand x d_model", 0},
    {"model.dt_rank", MB_CFG_INT, OFF(dt_rank), 0, 1 << 16, NULL, "mamba: dt projection rank (0: ceil(d_model/16))", 0},
    {"model.pooling", MB_CFG_ENUM, OFF(pooling), 0, 0, "auto|cls|mean|masked_mean",
     "auto: cls for bert (pooler on [CLS]), mean for mamba (the reference), masked_mean for bow", 0},
    {"model.num_labels", MB_CFG_INT, OFF(num_labels), 2, 1 << 16, NULL, "classes", 0},
    {"model.labels", MB_CFG_STRLIST, OFF(labels), 0, 0, NULL,
     "the classes' names, id order ([negative, positive]): predict prints them, the export's id2label", 1},
    {"model.dropout", MB_CFG_FLOAT, OFF(dropout), 0, 0.95, NULL, "bert, bow: hidden dropout probability", 0},
    {"model.attention_dropout", MB_CFG_FLOAT, OFF(attention_dropout), 0, 0.95, NULL,
     "bert: attention-probability dropout (applied only with attention_dropout_exact)", 0},
    {"model.attention_dropout_exact", MB_CFG_BOOL, OFF(attention_dropout_exact), 0, 0, NULL,
     "bert: apply attention_dropout exactly as HF: the L x L probabilities are formed (slower, more memory; "
     "padded batches)",
     0},

    {"tokenizer", MB_CFG_STR, OFF(tokenizer), 0, 0, NULL,
     "vocab.txt (WordPiece) or tokenizer.json (BPE); default: the checkpoint's", 0},

    {"data.dataset", MB_CFG_ENUM, OFF(dataset), 0, 0, "auto|imdb|nsmc", "format of raw inputs (auto: from the file name)",
     0},
    {"data.train", MB_CFG_STR, OFF(train_data), 0, 0, NULL,
     "training set: shards (file, glob or prepare's directory) or a raw .tsv[.gz]/.txt[.gz]", 0},
    {"data.test", MB_CFG_STR, OFF(test_data), 0, 0, NULL, "evaluation set, the same forms", 1},
    {"data.cache_dir", MB_CFG_STR, OFF(cache_dir), 0, 0, NULL, "where raw inputs are prepared (default <run.dir>/data)",
     1},
    {"data.max_length", MB_CFG_INT, OFF(max_length), 1, 1 << 20, NULL, "tokens per sequence (truncating)", 0},
    {"data.batching", MB_CFG_ENUM, OFF(batching), 0, 0, "padded|packed", "padded rows or packed sequences", 0},
    {"data.batch_size", MB_CFG_INT, OFF(batch_size), 1, 1 << 20, NULL, "sequences per micro-batch and rank (padded)", 0},
    {"data.token_budget", MB_CFG_INT, OFF(token_budget), 0, 1 << 30, NULL,
     "packed: tokens per micro-batch (0: batch_size x max_length)", 0},
    {"data.max_seqs", MB_CFG_INT, OFF(max_seqs), 0, 1 << 20, NULL, "packed: most sequences per batch (0: budget/8)", 0},
    {"data.bucket_multiple", MB_CFG_INT, OFF(bucket_multiple), 0, 1 << 20, NULL,
     "padded: batch length rounded up to this (0: always max_length)", 0},
    {"data.train_limit", MB_CFG_INT, OFF(train_limit), 0, BIG, NULL, "use only the first N training examples (0: all)",
     0},
    {"data.shuffle", MB_CFG_BOOL, OFF(shuffle), 0, 0, NULL, "shuffle every epoch", 0},
    {"data.sort_window", MB_CFG_INT, OFF(sort_window), 0, 1 << 20, NULL,
     "sort by length within windows of this many batches (0: batches in the epoch's order, as N ranks x batch B "
     "= 1 rank x batch N*B needs)",
     0},

    {"optim.name", MB_CFG_ENUM, OFF(optimizer), 0, 0, "adamw|sgd", "optimizer", 0},
    {"optim.lr", MB_CFG_FLOAT, OFF(lr), 0, 10, NULL, "peak learning rate", 0},
    {"optim.betas", MB_CFG_FLOAT2, OFF(betas), 0, 0.999999, NULL, "adamw: [beta1, beta2]", 0},
    {"optim.eps", MB_CFG_FLOAT, OFF(eps), 0, 1, NULL, "adamw: epsilon", 0},
    {"optim.weight_decay", MB_CFG_FLOAT, OFF(weight_decay), 0, 10, NULL, "decoupled (adamw) / L2 (sgd) decay", 0},
    {"optim.momentum", MB_CFG_FLOAT, OFF(momentum), 0, 0.999999, NULL, "sgd: momentum", 0},
    {"optim.nesterov", MB_CFG_BOOL, OFF(nesterov), 0, 0, NULL, "sgd: Nesterov momentum", 0},
    {"optim.decay_norms_biases", MB_CFG_BOOL, OFF(decay_norms_biases), 0, 0, NULL,
     "also decay biases and norm weights (Hugging Face's Trainer does not)", 0},

    {"schedule.decay", MB_CFG_ENUM, OFF(decay), 0, 0, "constant|linear|cosine", "after warm-up", 0},
    {"schedule.warmup_steps", MB_CFG_INT, OFF(warmup_steps), 0, BIG, NULL, "linear warm-up from 0", 0},
    {"schedule.warmup_ratio", MB_CFG_FLOAT, OFF(warmup_ratio), 0, 1, NULL, "warm-up as a fraction of all steps", 0},

    {"train.epochs", MB_CFG_INT, OFF(epochs), 0, 1 << 20, NULL, "passes over the training set", 0},
    {"train.max_steps", MB_CFG_INT, OFF(max_steps), 0, BIG, NULL, "> 0: optimizer steps in all (overrides epochs)", 0},
    {"train.grad_accum", MB_CFG_INT, OFF(grad_accum), 1, 1 << 16, NULL, "micro-batches per optimizer step", 0},
    {"train.clip_grad_norm", MB_CFG_FLOAT, OFF(clip_grad_norm), 0, 1e9, NULL, "global gradient norm cap (0: off)", 0},
    {"train.precision", MB_CFG_ENUM, OFF(precision), 0, 0, "f32|bf16|fp16|fp8",
     "compute precision (f32 on CPU; the others need a GPU)", 0},
    {"train.loss_scale", MB_CFG_ENUM, OFF(loss_scale), 0, 0, "auto|dynamic|off",
     "dynamic loss scaling as torch's GradScaler: skip steps whose gradients overflow (auto: with fp16)", 0},
    {"train.loss_scale_init", MB_CFG_FLOAT, OFF(loss_scale_init), 1, 3.4028234663852886e38, NULL,
     "the first loss scale (at most the largest f32)", 0},
    {"train.loss_scale_interval", MB_CFG_INT, OFF(loss_scale_interval), 1, BIG, NULL,
     "steps without overflow before the loss scale doubles", 0},
    {"train.device", MB_CFG_ENUM, OFF(device), 0, 0, "auto|cpu|cuda", "where to run", 0},
    {"train.recompute", MB_CFG_BOOL, OFF(recompute), 0, 0, NULL, "recompute each layer in backward (less memory)", 0},
    {"train.zero1", MB_CFG_BOOL, OFF(zero1), 0, 0, NULL, "multi-rank: shard the optimizer state (ZeRO-1)", 0},
    {"train.bucket_mb", MB_CFG_FLOAT, OFF(bucket_mb), 0, 1 << 20, NULL,
     "multi-rank: gradient bucket size in MiB (0: MAMBERT_BUCKET_MB or 25)", 1},
    {"train.threads", MB_CFG_INT, OFF(threads), 0, 4096, NULL,
     "CPU threads (0: OMP_NUM_THREADS, else all CPUs, split among the ranks on one machine)", 1},

    {"eval.split", MB_CFG_ENUM, OFF(eval_split), 0, 0, "test|train", "which set eval reads", 1},
    {"eval.samples", MB_CFG_INT, OFF(eval_samples), 0, BIG, NULL, "examples evaluated (0: all)", 1},
    {"eval.selection", MB_CFG_ENUM, OFF(eval_selection), 0, 0, "first|balanced|strided",
     "first N in file order (the reference), N/2 of each label (odd N: one more positive), or every k-th",
     1},
    {"eval.batch_size", MB_CFG_INT, OFF(eval_batch_size), 1, 1 << 20, NULL, "rows per batch (the reference: 32)", 1},
    {"eval.max_length", MB_CFG_INT, OFF(eval_max_length), 0, 1 << 20, NULL, "0: data.max_length", 1},
    {"eval.batching", MB_CFG_ENUM, OFF(eval_batching), 0, 0, "padded|packed",
     "padded to max_length (the reference) or packed", 1},
    {"eval.attention", MB_CFG_ENUM, OFF(eval_attention), 0, 0, "auto|fp8",
     "bert, mambert eval: fp8 runs attention with q, k, v in e4m3 (per-tensor scales; GPU: needs bf16; CPU: "
     "simulated)",
     1},
    {"eval.warmup", MB_CFG_INT, OFF(eval_warmup), 0, 1000, NULL, "untimed passes first", 1},
    {"eval.repeats", MB_CFG_INT, OFF(eval_repeats), 1, 1000, NULL, "timed passes; the median is reported", 1},
    {"eval.every", MB_CFG_INT, OFF(eval_every), 0, BIG, NULL, "evaluate every N steps during training (0: never)", 1},
    {"eval.during_samples", MB_CFG_INT, OFF(eval_during_samples), 0, BIG, NULL,
     "examples for evaluations during training (0: eval.samples)", 1},
    {"eval.during_selection", MB_CFG_ENUM, OFF(eval_during_selection), 0, 0, "first|balanced|strided",
     "their selection (strided: both labels even in IMDB's label-ordered test file)", 1},
    {"eval.at_end", MB_CFG_BOOL, OFF(eval_at_end), 0, 0, NULL, "evaluate when training ends", 1},

    {"checkpoint.every", MB_CFG_INT, OFF(ckpt_every), 0, BIG, NULL, "steps between checkpoints (0: only at the end)", 1},
    {"checkpoint.keep", MB_CFG_INT, OFF(ckpt_keep), 1, 1 << 20, NULL, "keep the last K checkpoints", 1},
    {"checkpoint.at_end", MB_CFG_BOOL, OFF(ckpt_at_end), 0, 0, NULL, "checkpoint when training ends", 1},
    {"checkpoint.export", MB_CFG_BOOL, OFF(export_at_end), 0, 0, NULL,
     "write <run.dir>/model (Hugging Face layout) at the end", 1},

    {"log.every", MB_CFG_INT, OFF(log_every), 1, BIG, NULL, "steps between metric lines", 1},
    {"log.tensorboard", MB_CFG_BOOL, OFF(tensorboard), 0, 0, NULL, "also write a TensorBoard event file", 1},
    {"log.progress", MB_CFG_ENUM, OFF(progress), 0, 0, "auto|bar|lines|off",
     "auto: a bar on a terminal, lines otherwise", 1},
    {"log.profile", MB_CFG_BOOL, OFF(profile), 0, 0, NULL, "time every op of the training step; print a table at the end",
     1},

    {"log.timeline", MB_CFG_INT, OFF(timeline_step), 0, BIG, NULL,
     "record optimizer step N's backward ops and bucket all-reduces into timeline-rank-R.json (0: off)", 1},

    {"sweep.max_length", MB_CFG_INTLIST, OFF(sweep_lengths), 1, 1 << 24, NULL, "lengths to sweep", 1},
    {"sweep.configs", MB_CFG_STRLIST, OFF(sweep_configs), 0, 0, NULL, "configs of the models to compare", 1},
    {"sweep.samples", MB_CFG_INT, OFF(sweep_samples), 0, BIG, NULL, "examples per point (0: eval.samples)", 1},
    {"sweep.out", MB_CFG_STR, OFF(sweep_out), 0, 0, NULL, "output directory of the sweep", 1},
};
#define NSCHEMA ((int)(sizeof SCHEMA / sizeof SCHEMA[0]))

const mb_cfg_entry *mb_config_schema(int *n) {
  *n = NSCHEMA;
  return SCHEMA;
}

static int entry_index(const char *key) {
  for (int i = 0; i < NSCHEMA; i++)
    if (strcmp(SCHEMA[i].key, key) == 0)
      return i;
  return -1;
}

const mb_cfg_entry *mb_config_find_entry(const char *key) {
  int i = entry_index(key);
  return i < 0 ? NULL : &SCHEMA[i];
}

void mb_config_defaults(mb_config *c) {
  memset(c, 0, sizeof *c);
  c->seed = 42;
  c->hidden_size = 256;
  c->d_model = 256;
  c->num_layers = 4;
  c->num_heads = 4;
  c->intermediate_size = 0;
  c->max_position = 512;
  c->d_state = 16;
  c->d_conv = 4;
  c->expand = 2;
  strcpy(c->pooling, "auto");
  strcpy(c->position_init, "normal");
  c->num_labels = 2;
  c->dropout = 0.1;
  c->attention_dropout = 0.1;
  strcpy(c->dataset, "auto");
  c->max_length = 256;
  strcpy(c->batching, "padded");
  c->batch_size = 32;
  c->bucket_multiple = 64;
  c->shuffle = 1;
  c->sort_window = 64;
  strcpy(c->optimizer, "adamw");
  c->lr = 1e-3;
  c->betas[0] = 0.9;
  c->betas[1] = 0.999;
  c->eps = 1e-8;
  c->weight_decay = 0.01;
  strcpy(c->decay, "linear");
  c->epochs = 1;
  c->grad_accum = 1;
  c->clip_grad_norm = 1.0;
  strcpy(c->precision, "f32");
  strcpy(c->loss_scale, "auto");
  c->loss_scale_init = 65536;
  c->loss_scale_interval = 2000;
  strcpy(c->device, "auto");
  strcpy(c->eval_split, "test");
  c->eval_samples = 1000;
  strcpy(c->eval_selection, "first");
  strcpy(c->eval_during_selection, "strided");
  c->eval_batch_size = 32;
  strcpy(c->eval_batching, "padded");
  strcpy(c->eval_attention, "auto");
  c->eval_warmup = 1;
  c->eval_repeats = 3;
  c->eval_at_end = 1;
  c->ckpt_keep = 3;
  c->ckpt_at_end = 1;
  c->export_at_end = 1;
  c->log_every = 10;
  c->tensorboard = 1;
  strcpy(c->progress, "auto");
}

/* ---- the doc: config + origins ------------------------------------------- */

struct mb_config_doc {
  mb_config cfg;
  mb_config_origin origin[NSCHEMA];
  int layers; /* sources read so far (files, then each --set) */
};

int mb_config_doc_new(mb_config_doc **out) {
  mb_config_doc *d = calloc(1, sizeof *d);
  if (!d)
    return MB_ERR(MB_ENOMEM, "out of memory for a config");
  mb_config_defaults(&d->cfg);
  for (int i = 0; i < NSCHEMA; i++)
    strcpy(d->origin[i].where, "default");
  *out = d;
  return MB_OK;
}

void mb_config_doc_free(mb_config_doc *d) { free(d); }
mb_config *mb_config_doc_config(mb_config_doc *d) { return &d->cfg; }

const mb_config_origin *mb_config_doc_origin(const mb_config_doc *d, const char *key) {
  int i = entry_index(key);
  return i < 0 ? NULL : &d->origin[i];
}

const char *mb_config_doc_describe(const mb_config_doc *d, const char *key, char *buf, size_t cap) {
  const mb_config_origin *o = mb_config_doc_origin(d, key);
  if (!o)
    snprintf(buf, cap, "%s", key);
  else if (!o->set)
    snprintf(buf, cap, "%s (default)", key);
  else
    snprintf(buf, cap, "%s (set at %s)", key, o->where);
  return buf;
}

/* ---- scalars --------------------------------------------------------------- */

static int is_null_word(const char *s) {
  return !*s || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

static int parse_bool_word(const char *s, int *out) {
  static const char *yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
  static const char *no[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
  for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
    if (strcmp(s, yes[i]) == 0) {
      *out = 1;
      return 1;
    }
    if (strcmp(s, no[i]) == 0) {
      *out = 0;
      return 1;
    }
  }
  return 0;
}

/* A decimal number (YAML's int or float forms, digits separated by '_'
 * allowed); no hex, inf or nan. */
static int parse_number(const char *s, double *out) {
  char buf[128];
  size_t k = 0;
  for (const char *p = s; *p; p++) {
    if (*p == '_')
      continue;
    if (!(isdigit((unsigned char)*p) || *p == '.' || *p == 'e' || *p == 'E' || *p == '+' || *p == '-'))
      return 0;
    if (k + 1 >= sizeof buf)
      return 0;
    buf[k++] = *p;
  }
  buf[k] = 0;
  if (!k)
    return 0;
  char *end;
  errno = 0;
  double v = strtod(buf, &end);
  if (*end || errno == ERANGE || !isfinite(v))
    return 0;
  *out = v;
  return 1;
}

/* The shortest decimal that reads back as exactly v. */
static void format_double(double v, char *buf, size_t cap) {
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, cap, "%.*g", prec, v);
    if (strtod(buf, NULL) == v)
      break;
  }
  if (!strpbrk(buf, ".eEn"))
    strncat(buf, ".0", cap - strlen(buf) - 1);
}

/* ---- reading one YAML document ---------------------------------------- */

typedef struct {
  mb_config_doc *doc;
  yaml_document_t *ydoc;
  const char *name;    /* file name, or "--set" */
  const char *set_key; /* for --set: the key being set */
} reader;

static void where_of(const reader *r, const yaml_node_t *n, char *buf, size_t cap) {
  if (r->set_key)
    snprintf(buf, cap, "--set %s", r->set_key);
  else
    snprintf(buf, cap, "%s:%zu:%zu", r->name, n->start_mark.line + 1, n->start_mark.column + 1);
}

/* The item count of a list key, and how many items it may hold. */
static int *list_count(mb_config *c, const mb_cfg_entry *e) {
  if (e->offset == offsetof(mb_config, sweep_lengths))
    return &c->n_sweep_lengths;
  if (e->offset == offsetof(mb_config, labels))
    return &c->n_labels;
  return &c->n_sweep_configs;
}
static int list_cap(const mb_cfg_entry *e) {
  if (e->type == MB_CFG_FLOAT2)
    return 2;
  if (e->type == MB_CFG_INTLIST)
    return MB_CFG_MAX_LIST;
  return e->offset == offsetof(mb_config, labels) ? MB_CFG_MAX_LABELS : MB_CFG_MAX_CONFIGS;
}
/* Bytes of one item of a list of strings (e->size is the whole array's). */
static size_t item_size(const mb_cfg_entry *e) { return e->size / (size_t)list_cap(e); }

static int levenshtein(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 63 || lb > 63)
    return 99;
  int prev[64], cur[64];
  for (size_t j = 0; j <= lb; j++)
    prev[j] = (int)j;
  for (size_t i = 1; i <= la; i++) {
    cur[0] = (int)i;
    for (size_t j = 1; j <= lb; j++) {
      int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
      int del = prev[j] + 1, ins = cur[j - 1] + 1;
      cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
    }
    memcpy(prev, cur, sizeof(int) * (lb + 1));
  }
  return prev[lb];
}

/* Names from other tools (Hugging Face TrainingArguments and configs,
 * common shorthands) and the key that means the same here. */
static const struct {
  const char *name, *key;
} KEY_ALIASES[] = {
    {"wd", "optim.weight_decay"},
    {"learning_rate", "optim.lr"},
    {"adam_epsilon", "optim.eps"},
    {"lr_scheduler_type", "schedule.decay"},
    {"warmup", "schedule.warmup_steps"},
    {"num_train_epochs", "train.epochs"},
    {"max_grad_norm", "train.clip_grad_norm"},
    {"gradient_accumulation_steps", "train.grad_accum"},
    {"per_device_train_batch_size", "data.batch_size"},
    {"train_batch_size", "data.batch_size"},
    {"per_device_eval_batch_size", "eval.batch_size"},
    {"max_seq_length", "data.max_length"},
    {"output_dir", "run.dir"},
    {"seed", "run.seed"},
    {"layers", "model.num_layers"},
    {"num_hidden_layers", "model.num_layers"},
    {"n_layer", "model.num_layers"},
    {"heads", "model.num_heads"},
    {"num_attention_heads", "model.num_heads"},
    {"hidden", "model.hidden_size"},
    {"hidden_dropout_prob", "model.dropout"},
    {"attention_probs_dropout_prob", "model.attention_dropout"},
    {"max_position_embeddings", "model.max_position"},
    {"state_size", "model.d_state"},
    {"conv_kernel", "model.d_conv"},
    {"time_step_rank", "model.dt_rank"},
    {"logging_steps", "log.every"},
    {"save_steps", "checkpoint.every"},
    {"save_total_limit", "checkpoint.keep"},
    {"eval_steps", "eval.every"},
};

/* Nearest known key to `key` (full dotted path), for "did you mean". */
static const char *nearest_key(const char *key) {
  const char *best = NULL;
  int bestd = 99;
  const char *leaf = strrchr(key, '.');
  leaf = leaf ? leaf + 1 : key;
  for (size_t i = 0; i < sizeof KEY_ALIASES / sizeof KEY_ALIASES[0]; i++)
    if (strcmp(leaf, KEY_ALIASES[i].name) == 0)
      return KEY_ALIASES[i].key;
  for (int i = 0; i < NSCHEMA; i++) {
    int d = levenshtein(key, SCHEMA[i].key);
    /* the same leaf in another section is a likely mix-up too */
    const char *l2 = strrchr(SCHEMA[i].key, '.');
    l2 = l2 ? l2 + 1 : SCHEMA[i].key;
    if (strcmp(l2, leaf) == 0 && d > 1)
      d = 2;
    /* a leaf spelled out or cut short in the same section (optim.lrate for
     * optim.lr, schedule.warmup for schedule.warmup_steps) */
    const size_t ll = strlen(leaf), ll2 = strlen(l2);
    const size_t common = ll < ll2 ? ll : ll2;
    if (common >= 2 && leaf - key == l2 - SCHEMA[i].key && strncmp(key, SCHEMA[i].key, (size_t)(leaf - key)) == 0 &&
        strncmp(leaf, l2, common) == 0 && d > 2)
      d = 2;
    if (d < bestd) {
      bestd = d;
      best = SCHEMA[i].key;
    }
  }
  size_t len = strlen(key);
  return bestd <= (len > 8 ? 3 : 2) ? best : NULL;
}

/* 1 if some schema key starts with "prefix." */
static int is_section(const char *prefix) {
  size_t n = strlen(prefix);
  for (int i = 0; i < NSCHEMA; i++)
    if (strncmp(SCHEMA[i].key, prefix, n) == 0 && SCHEMA[i].key[n] == '.')
      return 1;
  return 0;
}

static const char *type_words(const mb_cfg_entry *e) {
  switch (e->type) {
  case MB_CFG_INT: return "an integer";
  case MB_CFG_FLOAT: return "a number";
  case MB_CFG_BOOL: return "true or false";
  case MB_CFG_STR: return "a string";
  case MB_CFG_ENUM: return "one of";
  case MB_CFG_FLOAT2: return "a list of two numbers";
  case MB_CFG_INTLIST: return "a list of integers";
  case MB_CFG_STRLIST: return "a list of strings";
  }
  return "?";
}

static void describe_node(const yaml_node_t *n, char *buf, size_t cap) {
  if (n->type == YAML_SCALAR_NODE) {
    const char *v = (const char *)n->data.scalar.value;
    if (n->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
        n->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE)
      snprintf(buf, cap, "the quoted string \"%.60s\"", v);
    else if (!*v)
      snprintf(buf, cap, "nothing");
    else
      snprintf(buf, cap, "'%.60s'", v);
  } else if (n->type == YAML_SEQUENCE_NODE) {
    snprintf(buf, cap, "a list");
  } else if (n->type == YAML_MAPPING_NODE) {
    snprintf(buf, cap, "a mapping");
  } else {
    snprintf(buf, cap, "an empty node");
  }
}

static int type_error(const reader *r, const yaml_node_t *n, const mb_cfg_entry *e, const char *detail) {
  char where[MB_CFG_PATH + 64], got[128];
  where_of(r, n, where, sizeof where);
  describe_node(n, got, sizeof got);
  if (e->type == MB_CFG_ENUM)
    return MB_ERR(MB_EINVAL, "%s: %s: expected one of %s, got %s%s%s", where, e->key, e->words, got,
                  detail ? "; " : "", detail ? detail : "");
  return MB_ERR(MB_EINVAL, "%s: %s: expected %s, got %s%s%s", where, e->key, type_words(e), got,
                detail ? "; " : "", detail ? detail : "");
}

static int range_error(const reader *r, const yaml_node_t *n, const mb_cfg_entry *e, double v) {
  char where[MB_CFG_PATH + 64], lo[32], hi[32], vs[32];
  where_of(r, n, where, sizeof where);
  snprintf(lo, sizeof lo, "%g", e->lo);
  snprintf(hi, sizeof hi, "%g", e->hi);
  snprintf(vs, sizeof vs, "%g", v);
  if (e->type == MB_CFG_INT || e->type == MB_CFG_INTLIST) {
    snprintf(lo, sizeof lo, "%.0f", e->lo);
    snprintf(hi, sizeof hi, "%.0f", e->hi);
    snprintf(vs, sizeof vs, "%.0f", v);
  }
  return MB_ERR(MB_EINVAL, "%s: %s: %s is out of range [%s, %s]", where, e->key, vs, lo, hi);
}

static int plain_scalar(const yaml_node_t *n) {
  return n->type == YAML_SCALAR_NODE && n->data.scalar.style != YAML_SINGLE_QUOTED_SCALAR_STYLE &&
         n->data.scalar.style != YAML_DOUBLE_QUOTED_SCALAR_STYLE;
}

/* A number from a plain scalar, integral for integer types, in range. */
static int read_number(const reader *r, const yaml_node_t *n, const mb_cfg_entry *e, int integral, double *out) {
  double v;
  if (!plain_scalar(n) || !parse_number((const char *)n->data.scalar.value, &v))
    return type_error(r, n, e, NULL);
  if (integral && (v != floor(v) || fabs(v) > BIG))
    return type_error(r, n, e, NULL);
  if (v < e->lo || v > e->hi)
    return range_error(r, n, e, v);
  *out = v;
  return MB_OK;
}

static int set_leaf(reader *r, const mb_cfg_entry *e, const yaml_node_t *n) {
  char *field = (char *)&r->doc->cfg + e->offset;
  const char *s = n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
  double v;
  if (s && plain_scalar(n) && (strcmp(s, "null") == 0 || strcmp(s, "~") == 0)) {
    /* null unsets a key an earlier config set: back to its default, as if
     * never given (so a key of another model.arch no longer counts) */
    mb_config def;
    mb_config_defaults(&def);
    memcpy(field, (const char *)&def + e->offset, e->size);
    if (e->type == MB_CFG_INTLIST || e->type == MB_CFG_STRLIST)
      *list_count(&r->doc->cfg, e) = *list_count(&def, e);
    const int idx = entry_index(e->key);
    snprintf(r->doc->origin[idx].where, sizeof r->doc->origin[idx].where, "default");
    r->doc->origin[idx].set = 0;
    r->doc->origin[idx].layer = r->doc->layers;
    return MB_OK;
  }
  switch (e->type) {
  case MB_CFG_INT:
    if (n->type != YAML_SCALAR_NODE)
      return type_error(r, n, e, NULL);
    MB_TRY(read_number(r, n, e, 1, &v));
    *(int64_t *)field = (int64_t)v;
    break;
  case MB_CFG_FLOAT:
    if (n->type != YAML_SCALAR_NODE)
      return type_error(r, n, e, NULL);
    MB_TRY(read_number(r, n, e, 0, &v));
    *(double *)field = v;
    break;
  case MB_CFG_BOOL: {
    int b;
    if (!plain_scalar(n) || !parse_bool_word(s, &b))
      return type_error(r, n, e, NULL);
    *(int *)field = b;
    break;
  }
  case MB_CFG_STR:
    if (n->type != YAML_SCALAR_NODE)
      return type_error(r, n, e, NULL);
    if (plain_scalar(n) && is_null_word(s)) {
      field[0] = 0;
      break;
    }
    if (strlen(s) >= e->size) {
      char where[MB_CFG_PATH + 64];
      where_of(r, n, where, sizeof where);
      return MB_ERR(MB_EINVAL, "%s: %s: longer than %zu bytes", where, e->key, e->size - 1);
    }
    strcpy(field, s);
    break;
  case MB_CFG_ENUM: {
    if (n->type != YAML_SCALAR_NODE)
      return type_error(r, n, e, NULL);
    mb_config defaults;
    mb_config_defaults(&defaults);
    if (plain_scalar(n) && is_null_word(s) && !((const char *)&defaults + e->offset)[0]) {
      field[0] = 0; /* an optional word (model.arch): null means "not given" */
      break;
    }
    size_t len = strlen(s);
    int ok = 0;
    for (const char *w = e->words; *w;) {
      const char *bar = strchr(w, '|');
      size_t wl = bar ? (size_t)(bar - w) : strlen(w);
      if (wl == len && strncmp(w, s, len) == 0)
        ok = 1;
      w += wl + (bar ? 1 : 0);
    }
    if (!ok || len >= e->size)
      return type_error(r, n, e, NULL);
    strcpy(field, s);
    break;
  }
  case MB_CFG_FLOAT2:
  case MB_CFG_INTLIST:
  case MB_CFG_STRLIST: {
    if (n->type != YAML_SEQUENCE_NODE)
      return type_error(r, n, e, NULL);
    int count = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
    int cap = list_cap(e);
    if ((e->type == MB_CFG_FLOAT2 && count != 2) || count > cap) {
      char detail[64];
      if (e->type == MB_CFG_FLOAT2)
        snprintf(detail, sizeof detail, "%d item%s, expected exactly 2", count, count == 1 ? "" : "s");
      else
        snprintf(detail, sizeof detail, "%d items, at most %d", count, cap);
      return type_error(r, n, e, detail);
    }
    for (int i = 0; i < count; i++) {
      yaml_node_t *it = yaml_document_get_node(r->ydoc, n->data.sequence.items.start[i]);
      if (!it || it->type != YAML_SCALAR_NODE)
        return type_error(r, it ? it : n, e, "items must be scalars");
      if (e->type == MB_CFG_STRLIST) {
        const char *is = (const char *)it->data.scalar.value;
        if (!*is || strlen(is) >= item_size(e))
          return type_error(r, it, e, "an item is empty or too long");
        strcpy(field + (size_t)i * item_size(e), is);
      } else {
        MB_TRY(read_number(r, it, e, e->type == MB_CFG_INTLIST, &v));
        if (e->type == MB_CFG_FLOAT2)
          ((double *)field)[i] = v;
        else
          ((int64_t *)field)[i] = (int64_t)v;
      }
    }
    if (e->type != MB_CFG_FLOAT2)
      *list_count(&r->doc->cfg, e) = count;
    break;
  }
  }
  int idx = entry_index(e->key);
  where_of(r, n, r->doc->origin[idx].where, sizeof r->doc->origin[idx].where);
  r->doc->origin[idx].set = 1;
  r->doc->origin[idx].layer = r->doc->layers;
  return MB_OK;
}

/* Walk a mapping whose keys live under `prefix` ("" at the top). */
static int read_mapping(reader *r, const yaml_node_t *map, const char *prefix) {
  char where[MB_CFG_PATH + 64];
  int npairs = (int)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
  for (int i = 0; i < npairs; i++) {
    yaml_node_pair_t *p = map->data.mapping.pairs.start + i;
    yaml_node_t *k = yaml_document_get_node(r->ydoc, p->key);
    yaml_node_t *v = yaml_document_get_node(r->ydoc, p->value);
    if (!k || !v)
      return MB_ERR(MB_EINTERNAL, "%s: broken YAML document", r->name);
    if (k->type != YAML_SCALAR_NODE) {
      where_of(r, k, where, sizeof where);
      return MB_ERR(MB_EINVAL, "%s: keys must be plain words, not a list or mapping", where);
    }
    const char *kname = (const char *)k->data.scalar.value;
    if (strcmp(kname, "<<") == 0 && plain_scalar(k)) {
      where_of(r, k, where, sizeof where);
      return MB_ERR(MB_EINVAL,
                    "%s: YAML merge keys (<<) are not supported: layer whole configs instead (mambert train "
                    "base.yaml changes.yaml: later files override earlier ones) or use --set KEY=VALUE",
                    where);
    }
    /* duplicates within this mapping */
    for (int j = 0; j < i; j++) {
      yaml_node_t *k2 = yaml_document_get_node(r->ydoc, map->data.mapping.pairs.start[j].key);
      if (k2 && k2->type == YAML_SCALAR_NODE && strcmp((const char *)k2->data.scalar.value, kname) == 0) {
        where_of(r, k, where, sizeof where);
        return MB_ERR(MB_EINVAL, "%s: key '%s%s%s' given twice (first at line %zu)", where, prefix,
                      *prefix ? "." : "", kname, k2->start_mark.line + 1);
      }
    }
    char full[256];
    if (snprintf(full, sizeof full, "%s%s%s", prefix, *prefix ? "." : "", kname) >= (int)sizeof full) {
      where_of(r, k, where, sizeof where);
      return MB_ERR(MB_EINVAL, "%s: key too long", where);
    }
    int idx = entry_index(full);
    if (idx >= 0) {
      MB_TRY(set_leaf(r, &SCHEMA[idx], v));
      continue;
    }
    if (is_section(full)) {
      if (v->type == YAML_MAPPING_NODE) {
        MB_TRY(read_mapping(r, v, full));
        continue;
      }
      if (v->type == YAML_SCALAR_NODE && plain_scalar(v) && is_null_word((const char *)v->data.scalar.value))
        continue; /* "eval:" with nothing under it */
      where_of(r, v, where, sizeof where);
      return MB_ERR(MB_EINVAL, "%s: '%s' is a section: expected a mapping of its keys", where, full);
    }
    where_of(r, k, where, sizeof where);
    const char *near = nearest_key(full);
    if (near)
      return MB_ERR(MB_EINVAL, "%s: unknown key '%s' (did you mean '%s'?)", where, full, near);
    return MB_ERR(MB_EINVAL, "%s: unknown key '%s'%s%s%s", where, full, *prefix ? " (section '" : "",
                  prefix, *prefix ? "' has no such key)" : "");
  }
  return MB_OK;
}

static int yaml_problem(const yaml_parser_t *p, const char *name) {
  const yaml_mark_t *m = p->problem_mark.line || p->problem_mark.column ? &p->problem_mark : &p->context_mark;
  return MB_ERR(MB_EINVAL, "%s:%zu:%zu: YAML syntax: %s%s%s", name, m->line + 1, m->column + 1,
                p->problem ? p->problem : "error", p->context ? " " : "", p->context ? p->context : "");
}

int mb_config_doc_load_string(mb_config_doc *d, const char *text, size_t len, const char *name) {
  d->layers++; /* a source of its own */
  yaml_parser_t parser;
  yaml_document_t ydoc;
  if (!yaml_parser_initialize(&parser))
    return MB_ERR(MB_ENOMEM, "libyaml: cannot initialise a parser");
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  if (!yaml_parser_load(&parser, &ydoc)) {
    int rc = yaml_problem(&parser, name);
    yaml_parser_delete(&parser);
    return rc;
  }
  int rc = MB_OK;
  yaml_node_t *root = yaml_document_get_root_node(&ydoc);
  if (root) {
    /* a second document in the same file is almost surely a mistake */
    yaml_document_t extra;
    if (yaml_parser_load(&parser, &extra)) {
      if (yaml_document_get_root_node(&extra))
        rc = MB_ERR(MB_EINVAL, "%s: holds more than one YAML document (---); expected one", name);
      yaml_document_delete(&extra);
    } else {
      rc = yaml_problem(&parser, name);
    }
  }
  if (rc == MB_OK && root) {
    reader r = {d, &ydoc, name, NULL};
    if (root->type != YAML_MAPPING_NODE) {
      char where[MB_CFG_PATH + 64];
      where_of(&r, root, where, sizeof where);
      rc = MB_ERR(MB_EINVAL, "%s: expected a mapping of sections (model:, data:, optim:, ...)", where);
    } else {
      rc = read_mapping(&r, root, "");
    }
  }
  yaml_document_delete(&ydoc);
  yaml_parser_delete(&parser);
  return rc;
}

int mb_config_doc_load_file(mb_config_doc *d, const char *path) {
  char *text;
  size_t n;
  int rc = mb_read_file(path, 1 << 20, &text, &n);
  if (rc != MB_OK)
    return mb_error_context(rc, "reading the config");
  rc = mb_config_doc_load_string(d, text, n, path);
  free(text);
  if (rc == MB_OK && !d->cfg.run_name[0]) {
    /* the config's file name, without directory and extension */
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(d->cfg.run_name, sizeof d->cfg.run_name, "%s", base);
    char *dot = strrchr(d->cfg.run_name, '.');
    if (dot && (strcmp(dot, ".yaml") == 0 || strcmp(dot, ".yml") == 0))
      *dot = 0;
  }
  return rc;
}

int mb_config_doc_set(mb_config_doc *d, const char *assignment) {
  d->layers++; /* each --set is a source of its own, after the files */
  const char *eq = strchr(assignment, '=');
  if (!eq || eq == assignment)
    return MB_ERR(MB_EINVAL, "--set '%s': expected KEY=VALUE, e.g. --set optim.lr=3e-5", assignment);
  char key[256];
  size_t kl = (size_t)(eq - assignment);
  if (kl >= sizeof key)
    return MB_ERR(MB_EINVAL, "--set: key too long");
  memcpy(key, assignment, kl);
  key[kl] = 0;
  int idx = entry_index(key);
  if (idx < 0) {
    const char *near = nearest_key(key);
    if (is_section(key)) {
      const char *example = "";
      for (int i = 0; i < NSCHEMA && !*example; i++)
        if (strncmp(SCHEMA[i].key, key, kl) == 0 && SCHEMA[i].key[kl] == '.')
          example = SCHEMA[i].key;
      return MB_ERR(MB_EINVAL, "--set %s: '%s' is a section; set one of its keys (e.g. %s=...)", key, key, example);
    }
    if (near)
      return MB_ERR(MB_EINVAL, "--set %s: unknown key '%s' (did you mean '%s'?)", key, key, near);
    return MB_ERR(MB_EINVAL, "--set %s: unknown key '%s'", key, key);
  }
  const char *value = eq + 1;
  yaml_parser_t parser;
  yaml_document_t ydoc;
  if (!yaml_parser_initialize(&parser))
    return MB_ERR(MB_ENOMEM, "libyaml: cannot initialise a parser");
  yaml_parser_set_input_string(&parser, (const unsigned char *)value, strlen(value));
  char name[300];
  snprintf(name, sizeof name, "--set %s", key);
  if (!yaml_parser_load(&parser, &ydoc)) {
    int rc = MB_ERR(MB_EINVAL, "%s: value '%s' is not valid YAML: %s", name, value,
                    parser.problem ? parser.problem : "error");
    yaml_parser_delete(&parser);
    return rc;
  }
  yaml_node_t *root = yaml_document_get_root_node(&ydoc);
  int rc;
  yaml_node_t empty;
  if (!root) { /* "--set data.cache_dir=" : an empty plain scalar */
    memset(&empty, 0, sizeof empty);
    empty.type = YAML_SCALAR_NODE;
    empty.data.scalar.value = (yaml_char_t *)"";
    empty.data.scalar.style = YAML_PLAIN_SCALAR_STYLE;
    root = &empty;
  }
  reader r = {d, &ydoc, name, key};
  rc = set_leaf(&r, &SCHEMA[idx], root);
  yaml_document_delete(&ydoc);
  yaml_parser_delete(&parser);
  return rc;
}

/* ---- checks across keys ------------------------------------------------- */

static const char *bert_only[] = {"model.hidden_size",   "model.num_heads",         "model.intermediate_size",
                                  "model.max_position",  "model.position_init",     "model.attention_dropout",
                                  "model.attention_dropout_exact"};
static const char *mamba_only[] = {"model.d_state", "model.d_conv", "model.expand", "model.dt_rank"};

/* What a model.checkpoint fixes: its config.json's sizes and dropouts
 * (not attention_dropout_exact: how the checkpoint's dropout is applied). */
static const char *checkpoint_fixed[] = {"model.vocab_size", "model.hidden_size", "model.d_model",
                                         "model.num_layers", "model.num_heads", "model.intermediate_size",
                                         "model.max_position", "model.position_init", "model.d_state",
                                         "model.d_conv", "model.expand", "model.dt_rank", "model.dropout",
                                         "model.attention_dropout"};

static int is_checkpoint_fixed(const char *key) {
  for (size_t i = 0; i < sizeof checkpoint_fixed / sizeof checkpoint_fixed[0]; i++)
    if (strcmp(key, checkpoint_fixed[i]) == 0)
      return 1;
  return 0;
}

/* 0 for keys of another architecture than c's, and for what a checkpoint
 * fixes when c starts from one: left out of the resolved YAML (which must
 * read back as it was written: a run's config.yaml is what --resume
 * loads) and of the config's identity. */
int mb_config_loss_scaling(const mb_config *c) {
  if (strcmp(c->loss_scale, "auto") == 0)
    return strcmp(c->precision, "fp16") == 0;
  return strcmp(c->loss_scale, "dynamic") == 0;
}

static int entry_applies(const mb_config *c, const char *key) {
  if (c->model_checkpoint[0] && is_checkpoint_fixed(key))
    return 0;
  if (!mb_config_loss_scaling(c) && strncmp(key, "train.loss_scale_", 17) == 0)
    return 0;
  if (!c->model_arch[0])
    return 1;
  if (strcmp(c->model_arch, "bert") != 0)
    for (size_t i = 0; i < sizeof bert_only / sizeof bert_only[0]; i++)
      if (strcmp(key, bert_only[i]) == 0)
        return 0;
  if (strcmp(c->model_arch, "mamba") != 0)
    for (size_t i = 0; i < sizeof mamba_only / sizeof mamba_only[0]; i++)
      if (strcmp(key, mamba_only[i]) == 0)
        return 0;
  if (strcmp(c->model_arch, "bert") == 0 && strcmp(key, "model.d_model") == 0)
    return 0;
  if (strcmp(c->model_arch, "mamba") == 0 && strcmp(key, "model.dropout") == 0)
    return 0;
  return 1;
}

/* 0 for keys of the optimizer not chosen. */
static int optim_entry_applies(const mb_config *c, const char *key) {
  const int sgd = strcmp(c->optimizer, "sgd") == 0;
  if (!sgd && (strcmp(key, "optim.momentum") == 0 || strcmp(key, "optim.nesterov") == 0))
    return 0;
  if (sgd && (strcmp(key, "optim.betas") == 0 || strcmp(key, "optim.eps") == 0))
    return 0;
  return 1;
}

static int is_set(const mb_config_doc *d, const char *key) {
  const mb_config_origin *o = mb_config_doc_origin(d, key);
  return o && o->set;
}

#define CHECK_FAIL(key, ...)                                                                              \
  do {                                                                                                    \
    char desc_[MB_CFG_PATH + 128];                                                                        \
    mb_config_doc_describe(d, (key), desc_, sizeof desc_);                                                \
    char msg_[1024];                                                                                      \
    snprintf(msg_, sizeof msg_, __VA_ARGS__);                                                             \
    return MB_ERR(MB_EINVAL, "%s: %s", desc_, msg_);                                                      \
  } while (0)

/* 1 (and said, when checking for a purpose) when `key`, set for another
 * architecture, came from an earlier source than the one that set
 * model.arch: a later config or --set switched the model, and the key
 * belongs to the one it replaced. */
static int switched_away(const mb_config_doc *d, const char *key, const char *purpose) {
  const mb_config_origin *k = mb_config_doc_origin(d, key), *a = mb_config_doc_origin(d, "model.arch");
  if (!a->set || k->layer >= a->layer)
    return 0;
  if (purpose) {
    char desc[MB_CFG_PATH + 128];
    mb_config_doc_describe(d, key, desc, sizeof desc);
    MB_WARN("%s: ignored: model.arch is %s (set at %s, later)", desc, d->cfg.model_arch, a->where);
  }
  return 1;
}

int mb_config_check(const mb_config_doc *d, const char *purpose) {
  const mb_config *c = &d->cfg;
  int train = purpose && strcmp(purpose, "train") == 0;
  int sweep = purpose && strcmp(purpose, "sweep") == 0;
  if (sweep) {
    if (c->n_sweep_lengths == 0)
      CHECK_FAIL("sweep.max_length", "a sweep needs a list of lengths, e.g. [256, 512, 1024]");
    return MB_OK;
  }
  const int bert = strcmp(c->model_arch, "bert") == 0, mamba = strcmp(c->model_arch, "mamba") == 0,
            bow = strcmp(c->model_arch, "bow") == 0;
  if (!c->model_arch[0] && !c->model_checkpoint[0])
    CHECK_FAIL("model.arch", "give the model as model.arch (bert, mamba, bow) with its sizes, or as "
                             "model.checkpoint (a Hugging Face style directory)");
  /* keys of the other architecture are mistakes, not silently ignored;
   * except where a later config (or --set) switched model.arch: keys of an
   * earlier layer then belong to the model it replaced (said, ignored) */
  for (int pass = 0; pass < 2 && c->model_arch[0]; pass++) {
    if (pass == 0 ? bert : mamba)
      continue;
    const char *const *keys = pass == 0 ? bert_only : mamba_only;
    const size_t nkeys = pass == 0 ? sizeof bert_only / sizeof bert_only[0] : sizeof mamba_only / sizeof mamba_only[0];
    for (size_t i = 0; i < nkeys; i++)
      if (is_set(d, keys[i]) && !switched_away(d, keys[i], purpose))
        CHECK_FAIL(keys[i], "applies to %s models, not %s", pass == 0 ? "bert" : "mamba", c->model_arch);
  }
  if (mamba && is_set(d, "model.dropout") && !switched_away(d, "model.dropout", purpose))
    CHECK_FAIL("model.dropout", "the mamba classifier has no dropout (as mamba_ssm's); remove the key");
  if (bert && is_set(d, "model.d_model") && !switched_away(d, "model.d_model", purpose))
    CHECK_FAIL("model.d_model", "bert's width is model.hidden_size");
  /* the checkpoint's position embeddings win: an init choice would do nothing */
  if (c->model_checkpoint[0] && is_set(d, "model.position_init"))
    CHECK_FAIL("model.position_init", "initialises a model trained from scratch; with model.checkpoint the position "
                                      "embeddings are the checkpoint's (remove the key)");
  /* sizes and dropouts beside a checkpoint (a from-scratch config reused
   * with --set model.checkpoint=...): the checkpoint's config.json rules */
  if (c->model_checkpoint[0] && purpose)
    for (size_t i = 0; i < sizeof checkpoint_fixed / sizeof checkpoint_fixed[0]; i++)
      if (is_set(d, checkpoint_fixed[i])) {
        char desc[MB_CFG_PATH + 128];
        mb_config_doc_describe(d, checkpoint_fixed[i], desc, sizeof desc);
        MB_WARN("%s: ignored, model.checkpoint %s sets it (its config.json)", desc, c->model_checkpoint);
      }
  if ((bert || mamba) && !c->model_checkpoint[0] && c->num_layers < 1)
    CHECK_FAIL("model.num_layers", "a %s model needs at least one layer", c->model_arch);
  if (bert && c->hidden_size % c->num_heads != 0)
    CHECK_FAIL("model.num_heads", "%lld heads do not divide hidden_size %lld", (long long)c->num_heads,
               (long long)c->hidden_size);
  if (bert && c->max_length > c->max_position)
    CHECK_FAIL("data.max_length", "%lld is longer than model.max_position %lld (position embeddings)",
               (long long)c->max_length, (long long)c->max_position);
  if (c->n_labels > 0 && (c->model_arch[0] || is_set(d, "model.num_labels")) && c->n_labels != c->num_labels)
    CHECK_FAIL("model.labels", "%d names for model.num_labels %lld classes", c->n_labels, (long long)c->num_labels);
  if (c->n_labels > 0 && bow)
    CHECK_FAIL("model.labels", "names the classes of bert and mamba classifiers (their export and predict); the bow "
                               "baseline has none");
  for (int i = 0; i < c->n_labels; i++)
    for (int j = 0; j < i; j++)
      if (strcmp(c->labels[i], c->labels[j]) == 0)
        CHECK_FAIL("model.labels", "'%s' is given twice (classes %d and %d)", c->labels[i], j, i);
  if (bert && c->eval_max_length > c->max_position)
    CHECK_FAIL("eval.max_length", "%lld is longer than model.max_position %lld (position embeddings)",
               (long long)c->eval_max_length, (long long)c->max_position);
  if (strcmp(c->pooling, "cls") == 0 && (mamba || bow))
    CHECK_FAIL("model.pooling", "cls pooling is bert's (mamba has no [CLS]); use mean or masked_mean");
  if (bert && (strcmp(c->pooling, "mean") == 0 || strcmp(c->pooling, "masked_mean") == 0))
    CHECK_FAIL("model.pooling", "bert pools [CLS] through its pooler (cls)");
  if (!c->tokenizer[0] && !c->model_checkpoint[0])
    CHECK_FAIL("tokenizer", "a model built from scratch needs a tokenizer (vocab.txt or tokenizer.json)");
  if (strcmp(c->batching, "packed") == 0 && c->token_budget && c->token_budget < c->max_length)
    CHECK_FAIL("data.token_budget", "%lld is less than data.max_length %lld: a sequence must fit a batch",
               (long long)c->token_budget, (long long)c->max_length);
  if (strcmp(c->batching, "packed") == 0 && c->max_seqs > 0) {
    const int64_t budget = c->token_budget ? c->token_budget : c->batch_size * c->max_length;
    if (c->max_seqs > budget)
      CHECK_FAIL("data.max_seqs", "%lld sequences cannot fit a batch of %lld tokens (each has one at least); at most "
                                  "%lld",
                 (long long)c->max_seqs, (long long)budget, (long long)budget);
  }
  if (c->warmup_ratio > 0 && c->warmup_steps > 0)
    CHECK_FAIL("schedule.warmup_ratio", "give either warmup_steps or warmup_ratio, not both");
  if (strcmp(c->optimizer, "sgd") == 0 && (is_set(d, "optim.betas") || is_set(d, "optim.eps")))
    CHECK_FAIL(is_set(d, "optim.betas") ? "optim.betas" : "optim.eps", "applies to adamw, not sgd");
  if (strcmp(c->optimizer, "adamw") == 0 && (is_set(d, "optim.momentum") || is_set(d, "optim.nesterov")))
    CHECK_FAIL(is_set(d, "optim.momentum") ? "optim.momentum" : "optim.nesterov", "applies to sgd, not adamw");
  if (c->nesterov && c->momentum <= 0)
    CHECK_FAIL("optim.nesterov", "Nesterov needs optim.momentum > 0");
  /* precision and device: reduced precision exists only on a GPU */
  int want_cuda = strcmp(c->device, "cuda") == 0;
  if (want_cuda && !MAMBERT_HAVE_CUDA)
    CHECK_FAIL("train.device", "cuda: this build has no CUDA backend (rebuild with a CUDA toolkit), use cpu");
  int on_cpu = !want_cuda && !(strcmp(c->device, "auto") == 0 && MAMBERT_HAVE_CUDA);
  if (strcmp(c->precision, "f32") != 0 && on_cpu)
    CHECK_FAIL("train.precision", "%s needs a GPU; on the CPU mambert computes in f32 (set train.precision: f32)",
               c->precision);
  if (!MAMBERT_HAVE_CUDA && strcmp(c->precision, "f32") != 0)
    CHECK_FAIL("train.precision", "%s needs a GPU and this build has no CUDA backend", c->precision);
  if (!mb_config_loss_scaling(c) && (is_set(d, "train.loss_scale_init") || is_set(d, "train.loss_scale_interval")))
    CHECK_FAIL(is_set(d, "train.loss_scale_init") ? "train.loss_scale_init" : "train.loss_scale_interval",
               "applies with dynamic loss scaling (train.loss_scale: dynamic, or auto with train.precision: fp16)");
  if (train && strcmp(c->loss_scale, "dynamic") == 0 && strcmp(c->model_arch, "bow") == 0)
    CHECK_FAIL("train.loss_scale", "the bow model computes in f32 and has no loss scale input (set it off)");
  if (train) {
    if (!c->train_data[0])
      CHECK_FAIL("data.train", "training needs a training set (shards or a raw .tsv[.gz])");
    if (c->epochs == 0 && c->max_steps == 0)
      CHECK_FAIL("train.epochs", "nothing to do: train.epochs and train.max_steps are both 0");
    if (!c->run_dir[0])
      CHECK_FAIL("run.dir", "training needs a run directory");
    if (strcmp(c->batching, "packed") == 0 && strcmp(c->model_arch, "bow") == 0)
      CHECK_FAIL("data.batching", "the bow model takes padded batches only");
  } else if (purpose && strcmp(purpose, "eval") == 0) {
    if (strcmp(c->eval_split, "test") == 0 && !c->test_data[0])
      CHECK_FAIL("data.test", "evaluation needs a test set (shards or a raw .tsv[.gz]/.txt[.gz])");
    if (strcmp(c->eval_split, "train") == 0 && !c->train_data[0])
      CHECK_FAIL("data.train", "eval.split is train but there is no training set");
  }
  if (c->eval_every > 0 && !c->test_data[0])
    CHECK_FAIL("eval.every", "periodic evaluation needs data.test");
  return MB_OK;
}

/* ---- values as text, YAML out, identity --------------------------------- */

void mb_config_value_string(const mb_config *c, const mb_cfg_entry *e, char *buf, size_t cap) {
  const char *field = (const char *)c + e->offset;
  char a[40], b[40];
  switch (e->type) {
  case MB_CFG_INT: snprintf(buf, cap, "%lld", (long long)*(const int64_t *)field); break;
  case MB_CFG_FLOAT: format_double(*(const double *)field, buf, cap); break;
  case MB_CFG_BOOL: snprintf(buf, cap, "%s", *(const int *)field ? "true" : "false"); break;
  case MB_CFG_STR:
  case MB_CFG_ENUM: snprintf(buf, cap, "%s", field); break;
  case MB_CFG_FLOAT2:
    format_double(((const double *)field)[0], a, sizeof a);
    format_double(((const double *)field)[1], b, sizeof b);
    snprintf(buf, cap, "[%s, %s]", a, b);
    break;
  case MB_CFG_INTLIST: {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < c->n_sweep_lengths && k < cap; i++)
      k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)((const int64_t *)field)[i]);
    if (k < cap)
      snprintf(buf + k, cap - k, "]");
    break;
  }
  case MB_CFG_STRLIST: {
    size_t k = (size_t)snprintf(buf, cap, "[");
    const int n = *list_count((mb_config *)c, e);
    for (int i = 0; i < n && k < cap; i++)
      k += (size_t)snprintf(buf + k, cap - k, "%s%s", i ? ", " : "", field + (size_t)i * item_size(e));
    if (k < cap)
      snprintf(buf + k, cap - k, "]");
    break;
  }
  }
}

typedef struct {
  char *buf;
  size_t len, cap;
} growbuf;

static int grow_write(void *data, unsigned char *buffer, size_t size) {
  growbuf *g = data;
  if (g->len + size + 1 > g->cap) {
    size_t nc = (g->len + size + 1) * 2;
    char *nb = realloc(g->buf, nc);
    if (!nb)
      return 0;
    g->buf = nb;
    g->cap = nc;
  }
  memcpy(g->buf + g->len, buffer, size);
  g->len += size;
  g->buf[g->len] = 0;
  return 1;
}

static int emit_scalar(yaml_emitter_t *em, const char *v, int quoted) {
  yaml_event_t ev;
  yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)v, (int)strlen(v), 1, 1,
                               quoted ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_PLAIN_SCALAR_STYLE);
  return yaml_emitter_emit(em, &ev);
}

static int emit_value(yaml_emitter_t *em, const mb_config *c, const mb_cfg_entry *e) {
  const char *field = (const char *)c + e->offset;
  yaml_event_t ev;
  char buf[MB_CFG_PATH + 64];
  if (e->type == MB_CFG_FLOAT2 || e->type == MB_CFG_INTLIST || e->type == MB_CFG_STRLIST) {
    yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_FLOW_SEQUENCE_STYLE);
    if (!yaml_emitter_emit(em, &ev))
      return 0;
    int n = e->type == MB_CFG_FLOAT2 ? 2 : *list_count((mb_config *)c, e);
    for (int i = 0; i < n; i++) {
      if (e->type == MB_CFG_FLOAT2)
        format_double(((const double *)field)[i], buf, sizeof buf);
      else if (e->type == MB_CFG_INTLIST)
        snprintf(buf, sizeof buf, "%lld", (long long)((const int64_t *)field)[i]);
      else
        snprintf(buf, sizeof buf, "%s", field + (size_t)i * item_size(e));
      if (!emit_scalar(em, buf, e->type == MB_CFG_STRLIST))
        return 0;
    }
    yaml_sequence_end_event_initialize(&ev);
    return yaml_emitter_emit(em, &ev);
  }
  mb_config_value_string(c, e, buf, sizeof buf);
  /* enum words YAML 1.1 reads as booleans (off, on, yes, no) are quoted, so
   * that PyYAML reads the saved config as mambert does */
  const int yaml11_bool = e->type == MB_CFG_ENUM && (!strcasecmp(buf, "off") || !strcasecmp(buf, "on") ||
                                                      !strcasecmp(buf, "yes") || !strcasecmp(buf, "no"));
  return emit_scalar(em, buf, e->type == MB_CFG_STR || yaml11_bool);
}

int mb_config_to_yaml(const mb_config *c, const char *comment, char **out, size_t *len) {
  growbuf g = {NULL, 0, 0};
  if (comment) {
    size_t n = strlen(comment) + 4;
    g.buf = malloc(n + 1);
    if (!g.buf)
      return MB_ERR(MB_ENOMEM, "out of memory");
    g.len = (size_t)snprintf(g.buf, n + 1, "# %s\n", comment);
    g.cap = n + 1;
  }
  yaml_emitter_t em;
  yaml_event_t ev;
  if (!yaml_emitter_initialize(&em)) {
    free(g.buf);
    return MB_ERR(MB_ENOMEM, "libyaml: cannot initialise an emitter");
  }
  yaml_emitter_set_output(&em, grow_write, &g);
  yaml_emitter_set_unicode(&em, 1);
  yaml_emitter_set_width(&em, 200);
  int ok = 1;
  yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
  ok = ok && yaml_emitter_emit(&em, &ev);
  yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
  ok = ok && yaml_emitter_emit(&em, &ev);
  yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
  ok = ok && yaml_emitter_emit(&em, &ev);
  char section[64] = "";
  for (int i = 0; ok && i < NSCHEMA; i++) {
    const mb_cfg_entry *e = &SCHEMA[i];
    if (!entry_applies(c, e->key) || !optim_entry_applies(c, e->key))
      continue;
    const char *dot = strchr(e->key, '.');
    char sec[64] = "";
    if (dot)
      snprintf(sec, sizeof sec, "%.*s", (int)(dot - e->key), e->key);
    if (strcmp(sec, section) != 0) {
      if (section[0]) {
        yaml_mapping_end_event_initialize(&ev);
        ok = ok && yaml_emitter_emit(&em, &ev);
      }
      if (sec[0]) {
        ok = ok && emit_scalar(&em, sec, 0);
        yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
        ok = ok && yaml_emitter_emit(&em, &ev);
      }
      snprintf(section, sizeof section, "%s", sec);
    }
    ok = ok && emit_scalar(&em, dot ? dot + 1 : e->key, 0);
    ok = ok && emit_value(&em, c, e);
  }
  if (ok && section[0]) {
    yaml_mapping_end_event_initialize(&ev);
    ok = yaml_emitter_emit(&em, &ev);
  }
  yaml_mapping_end_event_initialize(&ev);
  ok = ok && yaml_emitter_emit(&em, &ev);
  yaml_document_end_event_initialize(&ev, 1);
  ok = ok && yaml_emitter_emit(&em, &ev);
  yaml_stream_end_event_initialize(&ev);
  ok = ok && yaml_emitter_emit(&em, &ev);
  const char *problem = em.problem;
  yaml_emitter_delete(&em);
  if (!ok) {
    free(g.buf);
    return MB_ERR(MB_EINTERNAL, "libyaml emitter: %s", problem ? problem : "error");
  }
  *out = g.buf;
  *len = g.len;
  return MB_OK;
}

void mb_config_identity_sha256(const mb_config *c, char hex[65]) {
  mb_sha256 *h = mb_sha256_new();
  char buf[MB_CFG_PATH * 2];
  for (int i = 0; i < NSCHEMA; i++) {
    if (SCHEMA[i].resume_may_change || !entry_applies(c, SCHEMA[i].key))
      continue;
    mb_config_value_string(c, &SCHEMA[i], buf, sizeof buf);
    mb_sha256_update(h, SCHEMA[i].key, strlen(SCHEMA[i].key) + 1);
    mb_sha256_update(h, buf, strlen(buf) + 1);
  }
  uint8_t dig[32];
  mb_sha256_final(h, dig);
  mb_sha256_hex(dig, hex);
}

int mb_config_absolute_paths(mb_config *c) {
  struct {
    const char *key;
    char *v;
  } paths[] = {{"run.dir", c->run_dir},         {"model.checkpoint", c->model_checkpoint},
               {"tokenizer", c->tokenizer},     {"data.train", c->train_data},
               {"data.test", c->test_data},     {"data.cache_dir", c->cache_dir}};
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
    const int rc = paths[i].v[0] ? mb_path_absolute(paths[i].v, MB_CFG_PATH, paths[i].v) : MB_OK;
    if (rc != MB_OK)
      return mb_error_context(rc, "%s", paths[i].key);
  }
  return MB_OK;
}

int mb_config_diff(const mb_config *a, const mb_config *b, int identity_only, char *buf, size_t cap) {
  int n = 0;
  size_t k = 0;
  if (cap)
    buf[0] = 0;
  char va[MB_CFG_PATH * 2], vb[MB_CFG_PATH * 2];
  for (int i = 0; i < NSCHEMA; i++) {
    if (identity_only && SCHEMA[i].resume_may_change)
      continue;
    if (!entry_applies(a, SCHEMA[i].key) && !entry_applies(b, SCHEMA[i].key))
      continue; /* e.g. the sizes in two configs that both start from a checkpoint */
    mb_config_value_string(a, &SCHEMA[i], va, sizeof va);
    mb_config_value_string(b, &SCHEMA[i], vb, sizeof vb);
    if (strcmp(va, vb) == 0)
      continue;
    if (k < cap)
      k += (size_t)snprintf(buf + k, cap - k, "%s%s: %s -> %s", n ? ", " : "", SCHEMA[i].key, va, vb);
    n++;
  }
  return n;
}

int mb_config_load(const char *const *files, int nfiles, const char *const *sets, int nsets, const char *purpose,
                   mb_config_doc **out) {
  mb_config_doc *d = NULL;
  MB_TRY(mb_config_doc_new(&d));
  int rc = MB_OK;
  for (int i = 0; rc == MB_OK && i < nfiles; i++)
    rc = mb_config_doc_load_file(d, files[i]);
  for (int i = 0; rc == MB_OK && i < nsets; i++)
    rc = mb_config_doc_set(d, sets[i]);
  if (rc == MB_OK && purpose)
    rc = mb_config_check(d, purpose);
  if (rc != MB_OK) {
    mb_config_doc_free(d);
    return rc;
  }
  *out = d;
  return MB_OK;
}
