/* trainer.c: the run loop of `mambert train` (trainer.h). */
#include "experiments/trainer.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "autograd/autograd.h"
#include "data/loader.h"
#include "data/tokenizer.h"
#include "distributed/buckets.h"
#include "distributed/dist.h"
#include "distributed/timeline.h"
#include "distributed/watchdog.h"
#include "distributed/zero.h"
#include "experiments/checkpoint.h"
#include "experiments/config.h"
#include "experiments/datasets.h"
#include "experiments/device.h"
#include "experiments/eval.h"
#include "experiments/metrics.h"
#include "experiments/net.h"
#include "experiments/program.h"
#include "experiments/rundir.h"
#include "kernels/cpu/blas_env.h"
#include "kernels/cpu/cpu.h"
#include "mambert_build_config.h"
#include "models/model.h"
#include "runtime/alloc.h"
#include "runtime/fileio.h"
#include "runtime/hash.h"
#include "runtime/log.h"
#include "runtime/safetensors.h"

#define LONG_WAIT_S (7 * 24 * 3600.0) /* barriers around rank-0-only work (evaluation, export) */
/* Overflowed steps in a row after which loss scaling gives up: S has been
 * halved that many times (2^-64 of where it was), so the gradients are not
 * finite at any scale. */
#define MAX_BAD_STEPS 64

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) { stop_signal = sig; }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
  /* setup */
  mb_config_doc *doc;
  mb_config *cfg;
  char run_dir[1024], ckpt_root[1100];
  mb_dist *dist;
  const mb_dist_info *world;
  mb_comm *comm, *host;
  int rank, nranks;
  mb_rundir *rundir;
  int resuming;
  mb_tokenizer *tok;
  char tokenizer_path[1200];
  mb_shardset *train_set, *test_set;
  mb_net *net;
  mb_backend *be; /* dev.be */
  mb_cli_device dev;
  mb_optimizer *opt;
  mb_loader *loader;
  mb_net_programs *progs;
  mb_metrics *metrics;
  mb_lr_schedule sched;
  char config_sha[65], params_sha[65];
  double log_window[8]; /* the checkpoint's open metrics interval (mb_ckpt_state) */
  int64_t window_skipped; /* and the steps the loss scaler skipped in it */
  /* train.loss_scale: every step's loss times S; a step whose gradients
   * overflow is skipped and S halved (torch's GradScaler) */
  int scaling;
  mb_loss_scaler scaler;
  uint64_t dropout_seed;
  /* multi-rank */
  mb_buckets *buckets;
  int *bucket_pos;        /* param index -> position in the bucket order */
  int hook_rc;            /* first error inside the grad-ready hook */
  int zero;
  mb_zero_layout zl;
  float *zero_params, *zero_grads;
  double zero_lr, zero_clip_max, zero_accum, zero_norm;
  int zero_take;          /* the loss scaler let the ZeRO step update (0: skipped) */
  mb_timeline *timeline;  /* log.timeline: the recorded step's events */
  /* progress */
  int64_t step, micro, total_steps, steps_per_epoch;
  double samples_seen, tokens_seen, train_seconds;
  int bar;                /* progress bar on a terminal */
  int quiet_progress;
  double t_process_start;
  int64_t step_at_start;
  double last_bar;
} trainer;

/* ---- small helpers ---------------------------------------------------------- */

static int agree_status(trainer *t, int rc) {
  /* every rank learns whether any rank failed: the worst status wins */
  if (t->nranks <= 1)
    return rc;
  double v = rc == MB_OK ? 0.0 : 1.0, all;
  if (mb_comm_allreduce(t->host, &v, &all, 1, MB_F64, MB_REDUCE_SUM) != MB_OK)
    return mb_error_code();
  if (rc != MB_OK)
    return rc;
  if (all > 0)
    return MB_ERR(MB_EDIST, "another rank failed during setup (see its message)");
  return MB_OK;
}

/* samples_seen and tokens_seen are counted per rank; this sums them into
 * rank 0's (the others restart from 0), which the checkpoint, results.json
 * and the final line report. Every rank calls it. */
static int sum_counts_to_rank0(trainer *t) {
  if (t->nranks < 2)
    return MB_OK;
  double mine[2] = {t->samples_seen, t->tokens_seen}, tot[2];
  MB_TRY(mb_comm_allreduce(t->host, mine, tot, 2, MB_F64, MB_REDUCE_SUM));
  t->samples_seen = t->rank == 0 ? tot[0] : 0;
  t->tokens_seen = t->rank == 0 ? tot[1] : 0;
  return MB_OK;
}

static int barrier_long(trainer *t) {
  if (t->nranks <= 1)
    return MB_OK;
  return mb_comm_barrier_timeout(t->host, LONG_WAIT_S);
}

static void fmt_duration(double s, char *buf, size_t cap) {
  if (!isfinite(s) || s < 0) {
    snprintf(buf, cap, "?");
    return;
  }
  long v = (long)(s + 0.5);
  if (v >= 3600)
    snprintf(buf, cap, "%ldh%02ldm", v / 3600, (v % 3600) / 60);
  else if (v >= 60)
    snprintf(buf, cap, "%ldm%02lds", v / 60, v % 60);
  else
    snprintf(buf, cap, "%lds", v);
}

static void fmt_rate(double v, char *buf, size_t cap) {
  if (v >= 1e6)
    snprintf(buf, cap, "%.2fM", v / 1e6);
  else if (v >= 1e4)
    snprintf(buf, cap, "%.1fk", v / 1e3);
  else
    snprintf(buf, cap, "%.0f", v);
}

/* ---- config ---------------------------------------------------------------------- */

/* Keys of `now` that differ from `saved` and affect training, except the
 * per-rank batch and the micro-batches: those may change on resume with
 * another number of ranks as long as the global batch (ranks x batch x
 * micro-batches) stays, which restore_checkpoint checks. */
static int training_diff(const mb_config *saved, const mb_config *now, char *buf, size_t cap) {
  mb_config *tmp = malloc(sizeof *tmp);
  if (!tmp) {
    snprintf(buf, cap, "(out of memory comparing configs)");
    return 1;
  }
  *tmp = *now;
  tmp->batch_size = saved->batch_size;
  tmp->grad_accum = saved->grad_accum;
  int n = mb_config_diff(saved, tmp, 1, buf, cap);
  free(tmp);
  return n;
}

/* A run's saved config.yaml with its paths absolute (a run saved before they
 * were meant this directory's); *out is NULL on failure. */
static int load_saved_config(const char *path, const char *const *sets, int nsets, mb_config_doc **out) {
  mb_config_doc *d;
  *out = NULL;
  MB_TRY(mb_config_load((const char *[]){path}, 1, sets, nsets, NULL, &d));
  const int rc = mb_config_absolute_paths(mb_config_doc_config(d));
  if (rc != MB_OK) {
    mb_config_doc_free(d);
    return rc;
  }
  *out = d;
  return MB_OK;
}

static int load_config(trainer *t, const mb_train_args *a) {
  /* the run directory: --resume DIR, --run-dir, or the config's run.dir */
  mb_config_doc *given = NULL;
  if (a->nconfigs > 0) {
    MB_TRY(mb_config_load(a->configs, a->nconfigs, a->sets, a->nsets, NULL, &given));
    if (a->run_dir)
      snprintf(mb_config_doc_config(given)->run_dir, MB_CFG_PATH, "%s", a->run_dir);
    const int rc = mb_config_absolute_paths(mb_config_doc_config(given)); /* what config.yaml keeps */
    if (rc != MB_OK) {
      mb_config_doc_free(given);
      return rc;
    }
  }
  const char *dir = a->resume_dir ? a->resume_dir
                    : a->run_dir  ? a->run_dir
                    : given       ? mb_config_doc_config(given)->run_dir
                                  : NULL;
  if (!dir || !*dir) {
    mb_config_doc_free(given);
    return MB_ERR(MB_EINVAL, "no run directory: set run.dir in the config or pass --run-dir DIR");
  }
  /* absolute, as the saved config's paths: the hints to resume work from anywhere */
  int arc = mb_path_absolute(t->run_dir, sizeof t->run_dir, dir);
  if (arc != MB_OK) {
    mb_config_doc_free(given);
    return arc;
  }
  char saved_path[1100];
  snprintf(saved_path, sizeof saved_path, "%s/config.yaml", t->run_dir);
  if (a->resume && mb_file_exists(saved_path)) {
    /* the saved, resolved config rules; a config given again must agree */
    const char *flag = a->auto_resume ? "--auto-resume (the run directory holds a run)" : "--resume";
    const char *hint = a->auto_resume ? " (a new run needs another run.dir or --run-dir; or train without "
                                        "--auto-resume, with --force, to move the old run aside)"
                                      : "";
    mb_config_doc *saved;
    int rc = load_saved_config(saved_path, a->sets, a->nsets, &saved);
    if (rc != MB_OK) {
      mb_config_doc_free(given);
      return mb_error_context(rc, "resuming");
    }
    mb_config_doc *orig;
    rc = load_saved_config(saved_path, NULL, 0, &orig);
    char diff[2048];
    if (rc == MB_OK && training_diff(mb_config_doc_config(orig), mb_config_doc_config(saved), diff, sizeof diff))
      rc = MB_ERR(MB_EINVAL,
                  "%s: --set may only change keys that do not affect training (eval.*, log.*, "
                  "checkpoint.*, ...; on another number of ranks data.batch_size and train.grad_accum, keeping "
                  "the global batch); changed: %s%s",
                  flag, diff, hint);
    if (rc == MB_OK && given &&
        training_diff(mb_config_doc_config(orig), mb_config_doc_config(given), diff, sizeof diff))
      rc = MB_ERR(MB_EINVAL,
                  "%s: the config given differs from the run's saved config %s in keys that affect "
                  "training: %s%s",
                  flag, saved_path, diff,
                  a->auto_resume ? hint : " (resume without the config file to use the saved one)");
    mb_config_doc_free(orig);
    if (rc == MB_OK && given) { /* take the given file's changeable keys (eval, log, ...) */
      mb_config_doc_free(saved);
      saved = given;
      given = NULL;
    }
    mb_config_doc_free(given);
    if (rc != MB_OK) {
      mb_config_doc_free(saved);
      return rc;
    }
    t->doc = saved;
  } else {
    if (!given && a->resume && !mb_is_dir(t->run_dir))
      return MB_ERR(MB_ENOTFOUND, "--resume %s: no such run directory", t->run_dir);
    if (!given)
      return MB_ERR(MB_EINVAL, a->resume ? "--resume %s: no config.yaml there (not a run directory?); give the "
                                           "config file too"
                                         : "no config file given%s",
                    a->resume ? t->run_dir : "");
    t->doc = given;
  }
  t->cfg = mb_config_doc_config(t->doc);
  snprintf(t->cfg->run_dir, MB_CFG_PATH, "%s", t->run_dir);
  MB_TRY(mb_config_check(t->doc, "train"));
  mb_config_identity_sha256(t->cfg, t->config_sha);
  snprintf(t->ckpt_root, sizeof t->ckpt_root, "%s/checkpoints", t->run_dir);
  return MB_OK;
}

/* ---- setup -------------------------------------------------------------------- */

static int setup_tokenizer(trainer *t) {
  const mb_config *c = t->cfg;
  if (c->tokenizer[0]) {
    snprintf(t->tokenizer_path, sizeof t->tokenizer_path, "%s", c->tokenizer);
  } else { /* the checkpoint directory's */
    int rc = mb_model_dir_tokenizer(c->model_checkpoint, t->tokenizer_path, sizeof t->tokenizer_path);
    if (rc != MB_OK)
      return mb_error_context(rc, "model.checkpoint");
    if (!mb_file_exists(t->tokenizer_path))
      return MB_ERR(MB_ENOTFOUND, "model.checkpoint: %s does not exist; set tokenizer:", t->tokenizer_path);
  }
  mb_tokenizer_options to = mb_tokenizer_default_options();
  int rc = mb_tokenizer_load(t->tokenizer_path, &to, &t->tok);
  if (rc != MB_OK)
    return mb_error_context(rc, "tokenizer");
  return MB_OK;
}

static int setup_data(trainer *t) {
  const mb_config *c = t->cfg;
  int rc;
  const int add_special = mb_tokenizer_kind_of(t->tok) == MB_TOKENIZER_WORDPIECE;
  char cache[1100];
  if (c->cache_dir[0])
    snprintf(cache, sizeof cache, "%s", c->cache_dir);
  else
    snprintf(cache, sizeof cache, "%s/data", t->run_dir);
  /* rank 0 prepares raw inputs once; the others wait and open */
  rc = MB_OK;
  if (t->rank == 0) {
    rc = mb_data_open(c->train_data, "train", c->dataset, t->tok, add_special, cache, 1, &t->train_set);
    if (rc == MB_OK && c->test_data[0])
      rc = mb_data_open(c->test_data, "test", c->dataset, t->tok, add_special, cache, 1, &t->test_set);
  }
  /* tokenizing a large set can outlast the collective timeout: the others
   * wait at a long barrier first */
  if (barrier_long(t) != MB_OK)
    return mb_error_code();
  rc = agree_status(t, rc);
  if (rc == MB_OK && t->rank != 0) {
    rc = mb_data_open(c->train_data, "train", c->dataset, t->tok, add_special, cache, 0, &t->train_set);
    if (rc == MB_OK && c->test_data[0])
      rc = mb_data_open(c->test_data, "test", c->dataset, t->tok, add_special, cache, 0, &t->test_set);
  }
  if (rc == MB_OK && t->train_set->meta.vocab_size > t->net->vocab_size)
    rc = MB_ERR(MB_EINVAL, "data.train: token ids go up to %d but the model's vocabulary has %lld entries",
                t->train_set->meta.vocab_size, (long long)t->net->vocab_size);
  return rc;
}

static int setup_net(trainer *t) {
  const mb_config *c = t->cfg;
  t->be = t->dev.be;
  MB_TRY(mb_net_create(c, mb_tokenizer_vocab_size(t->tok), 1, t->be, &t->net));
  t->scaling = mb_config_loss_scaling(c);
  MB_TRY(mb_cli_device_apply(&t->dev, t->net, t->scaling));
  if (t->scaling) {
    mb_loss_scaler_init(&t->scaler, c->loss_scale_init);
    t->scaler.growth_interval = c->loss_scale_interval;
  }
  mb_net *net = t->net;
  /* the weights' tokenizer (a checkpoint's) must be the data's */
  if (net->tokenizer_sha256[0] && strcmp(net->tokenizer_sha256, mb_tokenizer_vocab_sha256(t->tok)) != 0)
    return MB_ERR(MB_EINVAL,
                  "model.checkpoint %s was trained with another vocabulary (tokenizer %s, sha256 %.16s...) than "
                  "%s (%s, sha256 %.16s...)",
                  c->model_checkpoint, net->tokenizer_name, net->tokenizer_sha256, t->tokenizer_path,
                  mb_tokenizer_name(t->tok), mb_tokenizer_vocab_sha256(t->tok));
  if (net->max_position > 0 && c->max_length > net->max_position)
    return MB_ERR(MB_EINVAL, "data.max_length %lld is longer than the model's %lld position embeddings",
                  (long long)c->max_length, (long long)net->max_position);
  mb_net_set_weight_decay(net, c->decay_norms_biases);
  mb_params_layout_sha256(net->params, t->params_sha);
  return MB_OK;
}

static int new_optimizer(trainer *t, int64_t begin, int64_t end, int sharded, mb_optimizer **out) {
  const mb_config *c = t->cfg;
  if (strcmp(c->optimizer, "adamw") == 0) {
    mb_adamw_cfg a = {c->lr, c->betas[0], c->betas[1], c->eps, c->weight_decay};
    return sharded ? mb_optimizer_adamw_shard(t->net->params, &a, begin, end, out)
                   : mb_optimizer_adamw(t->net->params, &a, out);
  }
  mb_sgd_cfg s = {c->lr, c->momentum, 0.0, c->weight_decay, c->nesterov};
  return sharded ? mb_optimizer_sgd_shard(t->net->params, &s, begin, end, out)
                 : mb_optimizer_sgd(t->net->params, &s, out);
}

static int make_optimizer(trainer *t, int64_t begin, int64_t end, int sharded) {
  return new_optimizer(t, begin, end, sharded, &t->opt);
}

static int setup_loader(trainer *t) {
  const mb_config *c = t->cfg;
  mb_loader_config lc = mb_loader_train_config((int32_t)c->batch_size, (int32_t)c->max_length, (uint64_t)c->seed);
  if (strcmp(c->batching, "packed") == 0) {
    lc.mode = MB_BATCH_PACKED;
    lc.token_budget = c->token_budget ? c->token_budget : c->batch_size * c->max_length;
    lc.max_seqs = (int32_t)c->max_seqs;
  }
  lc.shuffle = c->shuffle;
  /* 0: no sorting, batches follow the epoch's order (what makes N ranks x B = 1 rank x N*B) */
  const int64_t window = c->sort_window * c->batch_size;
  lc.window = window > INT32_MAX ? INT32_MAX : (int32_t)window;
  lc.rank = t->rank;
  lc.world_size = t->nranks;
  lc.bucket_multiple = (int32_t)c->bucket_multiple;
  lc.limit = c->train_limit;
  int rc = mb_loader_create(t->train_set, &lc, &t->loader);
  if (rc != MB_OK)
    return mb_error_context(rc, "training batches");
  MB_TRY(mb_loader_steps_in_epoch(t->loader, 0, &t->steps_per_epoch));
  /* batches are padded with empty rows to their full size (one program
   * shape): a batch larger than the data computes mostly nothing */
  const int64_t n = c->train_limit > 0 && c->train_limit < t->train_set->n ? c->train_limit : t->train_set->n;
  const int64_t per_rank = n / t->nranks;
  if (t->rank == 0 && t->nranks > 1 && n % t->nranks)
    MB_INFO("data: %lld of the %lld training examples are left out of each epoch so that %d ranks get equal shares "
            "(with a multiple of the rank count, N ranks x batch B train exactly as 1 rank x N*B)",
            (long long)(n % t->nranks), (long long)n, t->nranks);
  if (t->rank == 0 && lc.mode == MB_BATCH_PADDED && per_rank < c->batch_size)
    MB_WARN("data.batch_size %lld is more than the %lld training examples each rank has: every step computes %lld "
            "rows of which %lld hold data (data.batch_size: %lld gives the same result for less)",
            (long long)c->batch_size, (long long)per_rank, (long long)c->batch_size, (long long)per_rank,
            (long long)per_rank);
  /* optimizer steps in all */
  const int64_t A = c->grad_accum;
  if (c->max_steps > 0) {
    t->total_steps = c->max_steps;
  } else {
    int64_t micro = 0;
    for (int64_t e = 0; e < c->epochs; e++) {
      int64_t s;
      MB_TRY(mb_loader_steps_in_epoch(t->loader, e, &s));
      micro += s;
    }
    t->total_steps = micro / A;
    if (t->total_steps == 0)
      return MB_ERR(MB_EINVAL, "train.grad_accum %lld: more than the %lld micro-batches of %lld epoch(s)",
                    (long long)A, (long long)micro, (long long)c->epochs);
    if (micro % A)
      MB_INFO("the last %lld micro-batches do not fill an optimizer step and are skipped", (long long)(micro % A));
  }
  int64_t warm = c->warmup_ratio > 0 ? (int64_t)ceil(c->warmup_ratio * (double)t->total_steps) : c->warmup_steps;
  mb_lr_decay d = strcmp(c->decay, "linear") == 0   ? MB_LR_LINEAR
                  : strcmp(c->decay, "cosine") == 0 ? MB_LR_COSINE
                                                    : MB_LR_CONSTANT;
  t->sched = (mb_lr_schedule){c->lr, warm, t->total_steps, d};
  return MB_OK;
}

/* ---- multi-rank: buckets (all-reduce during backward) or ZeRO-1 ------------- */

static void grad_ready_hook(void *user, const mb_grad_ready *info) {
  trainer *t = user;
  if (t->hook_rc != MB_OK || !t->buckets)
    return;
  int pos = t->bucket_pos[info->param_index];
  if (pos < 0)
    return;
  int rc = mb_buckets_grad_ready(t->buckets, pos);
  if (rc != MB_OK)
    t->hook_rc = rc;
}

static int ensure_buckets(trainer *t, mb_exec *ex) {
  if (t->nranks <= 1 || t->zero)
    return MB_OK;
  if (!t->buckets) {
    int n;
    const mb_grad_ready *order = mb_exec_grad_order(ex, &n);
    mb_grad_param *gp = calloc((size_t)(n ? n : 1), sizeof *gp);
    t->bucket_pos = malloc((size_t)mb_params_count(t->net->params) * sizeof(int));
    if (!gp || !t->bucket_pos) {
      free(gp);
      return MB_ERR(MB_ENOMEM, "out of memory");
    }
    for (int i = 0; i < mb_params_count(t->net->params); i++)
      t->bucket_pos[i] = -1;
    for (int i = 0; i < n; i++) {
      gp[i].name = order[i].name;
      gp[i].offset = (size_t)order[i].offset;
      gp[i].count = (size_t)order[i].numel;
      t->bucket_pos[order[i].param_index] = i;
    }
    mb_buckets_options bo;
    memset(&bo, 0, sizeof bo);
    bo.dtype = MB_F32;
    if (t->cfg->bucket_mb > 0)
      bo.bucket_bytes = (size_t)(t->cfg->bucket_mb * 1048576.0);
    bo.timeline = t->timeline; /* records every step; cleared before the one written out */
    int rc = mb_buckets_create(t->comm, mb_params_grad(t->net->params), (size_t)mb_params_total(t->net->params), gp,
                               n, &bo, &t->buckets);
    free(gp);
    MB_TRY(rc);
    MB_INFO("gradient all-reduce: %d buckets over %d ranks", mb_buckets_count(t->buckets), t->nranks);
  }
  mb_exec_on_grad_ready(ex, grad_ready_hook, t);
  return MB_OK;
}

/* The loss scaler's decision on one step from the norm of its scaled
 * gradients (summed in f64, so finite exactly when every gradient is; the
 * same on every rank): 1 to take the step, with *norm unscaled and *inv = 1/S
 * to multiply the gradients by (exact: S is a power of two). Without loss
 * scaling: 1 and 1. */
static int scaler_take(trainer *t, double *norm, double *inv) {
  *inv = 1.0;
  const int take = t->scaling ? mb_loss_scaler_update(&t->scaler, !isfinite(*norm), inv) : 1;
  *norm *= *inv;
  return take;
}

/* ZeRO-1's update: the global norm from every shard, then this shard's step. */
static int zero_update(void *ctx, float *params, const float *grads, size_t global_offset, size_t count) {
  trainer *t = ctx;
  (void)count;
  int64_t begin, end;
  mb_optimizer_range(t->opt, &begin, &end);
  if ((int64_t)global_offset != begin)
    return MB_ERR(MB_EINTERNAL, "ZeRO shard at %zu, optimizer range at %lld", global_offset, (long long)begin);
  double ss, norm;
  MB_TRY(mb_optimizer_shard_sumsq(t->opt, grads, &ss));
  MB_TRY(mb_zero_global_norm(t->host, ss, &norm));
  norm /= t->zero_accum;
  double inv;
  t->zero_take = scaler_take(t, &norm, &inv); /* the global norm: the same decision on every rank */
  t->zero_norm = norm;
  if (!t->zero_take) /* the shard stays as it was, and so does what the all-gather returns */
    return MB_OK;
  double coef = mb_clip_coef(norm, t->zero_clip_max);
  return mb_optimizer_step_shard(t->opt, t->zero_lr, coef * inv / t->zero_accum, params, grads);
}

static int setup_zero(trainer *t) {
  size_t numel = (size_t)mb_params_total(t->net->params);
  MB_TRY(mb_zero_layout_make(numel, t->nranks, 16, &t->zl));
  t->zero_params = mb_host_calloc(t->zl.padded * sizeof(float));
  t->zero_grads = mb_host_calloc(t->zl.padded * sizeof(float));
  if (!t->zero_params || !t->zero_grads)
    return MB_ERR(MB_ENOMEM, "out of memory for ZeRO buffers");
  int64_t begin = (int64_t)mb_zero_shard_offset(&t->zl, t->rank);
  return make_optimizer(t, begin, begin + (int64_t)t->zl.shard, 1);
}

/* ---- checkpoints ------------------------------------------------------------------- */

typedef struct {
  double loss_sum, loss_rows, tokens, padded, samples, grad_norm_sum, steps;
  double seconds; /* training time of these steps (not evaluation or checkpoints) */
  int64_t skipped; /* steps the loss scaler skipped (the same on every rank; not in grad_norm_sum) */
} interval;

static int save_checkpoint(trainer *t, const interval *iv) {
  mb_ckpt_writer *w = NULL;
  MB_TRY(sum_counts_to_rank0(t));
  int rc = MB_OK;
  /* every rank's data position goes into rank 0's state.json */
  uint8_t *loaders = NULL;
  if (t->nranks > 1) {
    uint8_t mine[MB_LOADER_STATE_BYTES];
    mb_loader_save_state(t->loader, mine);
    loaders = malloc((size_t)t->nranks * MB_LOADER_STATE_BYTES);
    if (!loaders)
      return MB_ERR(MB_ENOMEM, "out of memory");
    rc = mb_comm_allgather(t->host, mine, loaders, MB_LOADER_STATE_BYTES, MB_U8);
    if (rc != MB_OK) {
      free(loaders);
      return rc;
    }
  }
  /* the open metrics interval, every rank's sums (log_interval's order) */
  double window[8] = {iv->loss_sum, iv->loss_rows, iv->tokens, iv->padded, iv->samples, iv->grad_norm_sum,
                      iv->steps,    iv->seconds};
  if (t->nranks > 1) {
    double tot[5];
    rc = mb_comm_allreduce(t->host, window, tot, 5, MB_F64, MB_REDUCE_SUM);
    if (rc != MB_OK) {
      free(loaders);
      return rc;
    }
    memcpy(window, tot, sizeof tot);
  }
  char tmp[1200] = "";
  if (t->rank == 0) {
    rc = mb_ckpt_begin(t->ckpt_root, t->step, &w);
    if (rc == MB_OK)
      snprintf(tmp, sizeof tmp, "%s", mb_ckpt_temp_dir(w));
  }
  if (t->zero) {
    /* every rank writes its optimizer shard into the temporary directory */
    rc = agree_status(t, rc);
    if (rc == MB_OK) {
      char path[1400], name[64], tmpdir[1200];
      snprintf(tmpdir, sizeof tmpdir, "%s/.tmp-step-%08lld", t->ckpt_root, (long long)t->step);
      snprintf(name, sizeof name, "zero-%05d-of-%05d.safetensors", t->rank, t->nranks);
      snprintf(path, sizeof path, "%s/optim", tmpdir);
      rc = mb_mkdir_p(path);
      snprintf(path, sizeof path, "%s/optim/%s", tmpdir, name);
      size_t valid = mb_zero_shard_valid(&t->zl, t->rank);
      mb_safetensors_writer *sw = NULL;
      if (rc == MB_OK)
        rc = mb_safetensors_writer_new(&sw);
      const char *names[2] = {"exp_avg", "exp_avg_sq"};
      int nst = strcmp(t->cfg->optimizer, "adamw") == 0 ? 2 : 1;
      if (nst == 1)
        names[0] = "momentum_buffer";
      for (int k = 0; rc == MB_OK && k < nst; k++) {
        void *buf = mb_optimizer_state(t->opt, k);
        if (buf)
          rc = mb_safetensors_writer_add(sw, names[k], MB_F32, &(mb_shape){1, {(int64_t)valid}}, buf);
      }
      char v[5][32];
      snprintf(v[0], 32, "%zu", t->zl.numel);
      snprintf(v[1], 32, "%d", t->zl.world);
      snprintf(v[2], 32, "%d", t->rank);
      snprintf(v[3], 32, "%zu", t->zl.shard);
      snprintf(v[4], 32, "%lld", (long long)mb_optimizer_steps(t->opt));
      const char *keys[5] = {"zero.numel", "zero.world", "zero.rank", "zero.shard", "step"};
      for (int k = 0; rc == MB_OK && k < 5; k++)
        rc = mb_safetensors_writer_set_metadata(sw, keys[k], v[k]);
      if (rc == MB_OK)
        rc = mb_safetensors_writer_set_metadata(sw, "zero.align", "16");
      if (rc == MB_OK)
        rc = mb_safetensors_writer_write(sw, path);
      mb_safetensors_writer_free(sw);
    }
    rc = agree_status(t, rc);
  }
  if (t->rank == 0) {
    if (rc == MB_OK)
      rc = mb_ckpt_write_weights(w, t->net->params, t->net->arch);
    if (rc == MB_OK && !t->zero)
      rc = mb_ckpt_write_optimizer(w, t->net->params, t->opt, t->cfg->optimizer);
    if (rc == MB_OK) {
      mb_ckpt_state s;
      memset(&s, 0, sizeof s);
      s.step = t->step;
      s.micro_step = t->micro;
      s.epoch = mb_loader_tell(t->loader).epoch;
      mb_loader_save_state(t->loader, s.loader);
      s.rank_loaders = loaders;
      s.seed = (uint64_t)t->cfg->seed;
      s.dropout_seed = t->dropout_seed;
      s.world_size = t->nranks;
      s.zero1 = t->zero;
      s.samples_seen = t->samples_seen;
      s.tokens_seen = t->tokens_seen;
      s.train_seconds = t->train_seconds;
      memcpy(s.log_window, window, sizeof window);
      s.has_loss_scaler = t->scaling;
      s.loss_scaler = t->scaler;
      s.window_skipped = iv->skipped;
      snprintf(s.arch, sizeof s.arch, "%s", t->net->arch);
      snprintf(s.tokenizer_name, sizeof s.tokenizer_name, "%s", mb_tokenizer_name(t->tok));
      snprintf(s.tokenizer_sha256, sizeof s.tokenizer_sha256, "%s", mb_tokenizer_vocab_sha256(t->tok));
      memcpy(s.config_sha256, t->config_sha, 65);
      memcpy(s.params_sha256, t->params_sha, 65);
      rc = mb_ckpt_write_state(w, &s);
    }
    if (rc == MB_OK) {
      char *yaml;
      size_t n;
      rc = mb_config_to_yaml(t->cfg, "resolved config of this checkpoint", &yaml, &n);
      if (rc == MB_OK) {
        rc = mb_ckpt_write_text(w, "config.yaml", yaml, n);
        free(yaml);
      }
    }
    char final[1200];
    if (rc == MB_OK)
      rc = mb_ckpt_commit(w, (int)t->cfg->ckpt_keep, final, sizeof final);
    else if (w)
      mb_ckpt_abort(w);
    if (rc == MB_OK)
      MB_INFO("checkpoint %s", final);
  }
  (void)tmp;
  free(loaders);
  return agree_status(t, rc);
}

/* Optimizer state names in checkpoints, by optim.name. */
static int optimizer_state_names(const trainer *t, const char *names[2]) {
  if (strcmp(t->cfg->optimizer, "adamw") == 0) {
    names[0] = "exp_avg";
    names[1] = "exp_avg_sq";
    return 2;
  }
  names[0] = "momentum_buffer";
  names[1] = NULL;
  return 1;
}

/* Reads slices of the old ZeRO shards optim/zero-R-of-W.safetensors (opened
 * on first use) for mb_zero_reshard_read. */
typedef struct {
  const char *dir;
  const mb_zero_layout *from;
  const char *name; /* the state tensor */
  mb_safetensors **files;
} shard_reader;

static int open_old_shard(shard_reader *r, int rank) {
  if (r->files[rank])
    return MB_OK;
  char path[1200];
  snprintf(path, sizeof path, "%s/optim/zero-%05d-of-%05d.safetensors", r->dir, rank, r->from->world);
  MB_TRY(mb_safetensors_open(path, &r->files[rank]));
  const char *world = mb_safetensors_metadata(r->files[rank], "zero.world");
  const char *numel = mb_safetensors_metadata(r->files[rank], "zero.numel");
  if (!world || !numel || atoi(world) != r->from->world || strtoull(numel, NULL, 10) != r->from->numel)
    return MB_ERR(MB_EFORMAT, "%s: metadata zero.world / zero.numel missing or not %d / %zu like shard 0's", path,
                  r->from->world, r->from->numel);
  return MB_OK;
}

static int read_old_shard(void *ctx, int src_rank, size_t src_offset, size_t count, float *dst) {
  shard_reader *r = ctx;
  MB_TRY(open_old_shard(r, src_rank));
  const mb_st_entry *e = mb_safetensors_find(r->files[src_rank], r->name);
  const size_t valid = mb_zero_shard_valid(r->from, src_rank);
  if (!e || e->dtype != MB_F32 || e->numel != (int64_t)valid)
    return MB_ERR(MB_EFORMAT, "%s: tensor '%s' missing or not %zu f32 elements",
                  mb_safetensors_path(r->files[src_rank]), r->name, valid);
  if (src_offset + count > valid)
    return MB_ERR(MB_EINTERNAL, "reading %zu elements at %zu of a %zu-element shard", count, src_offset, valid);
  memcpy(dst, (const float *)e->data + src_offset, count * sizeof(float));
  return MB_OK;
}

/* The optimizer state of a checkpoint written by another number of ranks:
 * from ZeRO shards or a whole optimizer.safetensors, into this rank's shard
 * (ZeRO-1 here) or the whole state (one rank, or ZeRO-1 off). */
static int restore_optimizer_resharded(trainer *t, const char *dir, int saved_sharded, int saved_world) {
  const char *names[2];
  const int nst = optimizer_state_names(t, names);
  const size_t numel = (size_t)mb_params_total(t->net->params);
  mb_zero_layout whole; /* this rank's state when it is not sharded: everything */
  MB_TRY(mb_zero_layout_make(numel, 1, 1, &whole));
  const mb_zero_layout *to = t->zero ? &t->zl : &whole;
  const int to_rank = t->zero ? t->rank : 0;
  if (!saved_sharded) {
    /* a whole state: read it into a full optimizer, then take this rank's shard */
    mb_optimizer *full;
    MB_TRY(new_optimizer(t, 0, 0, 0, &full));
    int rc = mb_ckpt_read_optimizer(dir, t->net->params, full, t->cfg->optimizer);
    for (int k = 0; rc == MB_OK && k < nst; k++) {
      float *dst = mb_optimizer_state(t->opt, k);
      const float *src = mb_optimizer_state(full, k);
      if (dst && src)
        rc = mb_zero_scatter(to, to_rank, src, dst);
    }
    if (rc == MB_OK)
      mb_optimizer_set_steps(t->opt, mb_optimizer_steps(full));
    mb_optimizer_free(full);
    return rc;
  }
  /* ZeRO shards: the old layout from shard 0's metadata */
  char path[1200];
  snprintf(path, sizeof path, "%s/optim/zero-%05d-of-%05d.safetensors", dir, 0, saved_world);
  mb_safetensors *first;
  MB_TRY(mb_safetensors_open(path, &first));
  const char *v_numel = mb_safetensors_metadata(first, "zero.numel");
  const char *v_world = mb_safetensors_metadata(first, "zero.world");
  const char *v_align = mb_safetensors_metadata(first, "zero.align");
  const char *v_step = mb_safetensors_metadata(first, "step");
  int rc = MB_OK;
  mb_zero_layout from;
  if (!v_numel || !v_world || !v_align || !v_step)
    rc = MB_ERR(MB_EFORMAT, "%s: metadata zero.numel, zero.world, zero.align and step expected", path);
  else if (strtoull(v_numel, NULL, 10) != numel || atoi(v_world) != saved_world)
    rc = MB_ERR(MB_EFORMAT, "%s: shards of %s elements over %s ranks; expected %zu over %d", path, v_numel, v_world,
                numel, saved_world);
  else
    rc = mb_zero_layout_make(numel, saved_world, (size_t)strtoull(v_align, NULL, 10), &from);
  const int64_t steps = v_step ? strtoll(v_step, NULL, 10) : 0;
  mb_safetensors_close(first);
  MB_TRY(rc);
  mb_safetensors **files = calloc((size_t)saved_world, sizeof *files);
  if (!files)
    return MB_ERR(MB_ENOMEM, "out of memory");
  for (int k = 0; rc == MB_OK && k < nst; k++) {
    float *dst = mb_optimizer_state(t->opt, k);
    if (!dst)
      continue;
    shard_reader r = {dir, &from, names[k], files};
    rc = mb_zero_reshard_read(&from, to, to_rank, read_old_shard, &r, dst);
  }
  for (int i = 0; i < saved_world; i++)
    mb_safetensors_close(files[i]);
  free(files);
  MB_TRY(rc);
  mb_optimizer_set_steps(t->opt, steps);
  return MB_OK;
}

static int restore_checkpoint(trainer *t, const char *dir) {
  const mb_config *c = t->cfg;
  mb_ckpt_state s;
  MB_TRY(mb_ckpt_read_state(dir, &s));
  /* this rank's data position (each rank's blob names its rank) */
  uint8_t blob[MB_LOADER_STATE_BYTES];
  memcpy(blob, s.loader, sizeof blob);
  const int have_rank_blob = s.rank_loaders && t->rank < s.world_size;
  if (have_rank_blob)
    memcpy(blob, s.rank_loaders + (size_t)t->rank * MB_LOADER_STATE_BYTES, sizeof blob);
  free(s.rank_loaders);
  s.rank_loaders = NULL;
  if (strcmp(s.arch, t->net->arch) != 0)
    return MB_ERR(MB_EINVAL, "%s: a checkpoint of a %s model; this config builds a %s model", dir, s.arch,
                  t->net->arch);
  if (strcmp(s.tokenizer_sha256, mb_tokenizer_vocab_sha256(t->tok)) != 0)
    return MB_ERR(MB_EINVAL, "%s: made with tokenizer %s (vocabulary sha256 %.16s...), this run uses %s (%.16s...)",
                  dir, s.tokenizer_name, s.tokenizer_sha256, mb_tokenizer_name(t->tok),
                  mb_tokenizer_vocab_sha256(t->tok));
  if (strcmp(s.params_sha256, t->params_sha) != 0)
    return MB_ERR(MB_EINVAL, "%s: its parameters (names and shapes) differ from this model's", dir);
  /* the checkpoint's batch per rank and micro-batches: its own config's
   * (they may change with the rank count, the global batch may not) */
  int64_t ck_batch = c->batch_size, ck_accum = c->grad_accum;
  if (strcmp(s.config_sha256, t->config_sha) != 0) {
    char path[1200], diff[2048];
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    mb_config_doc *ck;
    int rc = load_saved_config(path, NULL, 0, &ck);
    if (rc != MB_OK)
      return mb_error_context(rc, "%s: written under another config, and its config.yaml cannot be read", dir);
    const mb_config *kc = mb_config_doc_config(ck);
    ck_batch = kc->batch_size;
    ck_accum = kc->grad_accum;
    rc = training_diff(kc, c, diff, sizeof diff)
             ? MB_ERR(MB_EINVAL, "%s: written under another config; changed: %s", dir, diff)
             : MB_OK;
    mb_config_doc_free(ck);
    MB_TRY(rc);
  }
  const int64_t old_global = (int64_t)s.world_size * ck_batch * ck_accum;
  const int64_t new_global = (int64_t)t->nranks * c->batch_size * c->grad_accum;
  if (old_global != new_global)
    return MB_ERR(MB_EINVAL,
                  "%s: written with a global batch of %d rank(s) x data.batch_size %lld x train.grad_accum %lld = "
                  "%lld; this job has %d x %lld x %lld = %lld. Set data.batch_size and train.grad_accum (--set) "
                  "so that ranks x batch x micro-batches stays %lld",
                  dir, s.world_size, (long long)ck_batch, (long long)ck_accum, (long long)old_global, t->nranks,
                  (long long)c->batch_size, (long long)c->grad_accum, (long long)new_global, (long long)old_global);
  /* another rank count or batch per rank: positions and state are mapped */
  const int remap = s.world_size != t->nranks || ck_batch != c->batch_size;
  const int saved_sharded = s.zero1 && s.world_size > 1;
  if (!remap && s.zero1 != t->zero)
    return MB_ERR(MB_EINVAL, "%s: train.zero1 was %s when it was written", dir, s.zero1 ? "on" : "off");
  char path[1200];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  MB_TRY(mb_net_load_weights(t->net, path));
  if (saved_sharded != t->zero || s.world_size != t->nranks) {
    int rc = restore_optimizer_resharded(t, dir, saved_sharded, s.world_size);
    if (rc != MB_OK)
      return mb_error_context(rc, "%s: optimizer state of %d rank(s)%s onto %d%s", dir, s.world_size,
                              saved_sharded ? " (ZeRO-1)" : "", t->nranks, t->zero ? " (ZeRO-1)" : "");
  } else if (t->zero) {
    snprintf(path, sizeof path, "%s/optim/zero-%05d-of-%05d.safetensors", dir, t->rank, t->nranks);
    mb_safetensors *st;
    MB_TRY(mb_safetensors_open(path, &st));
    size_t valid = mb_zero_shard_valid(&t->zl, t->rank);
    const char *names[2];
    int nst = optimizer_state_names(t, names);
    int rc = MB_OK;
    for (int k = 0; rc == MB_OK && k < nst; k++) {
      float *buf = mb_optimizer_state(t->opt, k);
      const mb_st_entry *e = mb_safetensors_find(st, names[k]);
      if (!buf)
        continue;
      if (!e || e->numel != (int64_t)valid || e->dtype != MB_F32)
        rc = MB_ERR(MB_EFORMAT, "%s: tensor '%s' missing or not %zu f32 elements", path, names[k], valid);
      else
        memcpy(buf, e->data, valid * sizeof(float));
    }
    const char *steps = mb_safetensors_metadata(st, "step");
    if (rc == MB_OK)
      mb_optimizer_set_steps(t->opt, steps ? strtoll(steps, NULL, 10) : s.step);
    mb_safetensors_close(st);
    MB_TRY(rc);
  } else {
    MB_TRY(mb_ckpt_read_optimizer(dir, t->net->params, t->opt, c->optimizer));
  }
  int64_t micro = s.micro_step;
  if (remap) {
    /* where all ranks together were in the epoch's order (rank 0's blob
     * tells; every rank is at the same step) */
    mb_loader_global_position g;
    int rc = mb_loader_state_global_position(t->loader, s.loader, &g);
    if (rc == MB_OK)
      rc = mb_loader_seek_global(t->loader, g);
    if (rc != MB_OK)
      return mb_error_context(rc, "%s: the data position of %d rank(s) x batch %lld cannot be mapped onto %d x %lld",
                              dir, s.world_size, (long long)ck_batch, t->nranks, (long long)c->batch_size);
    /* micro-batches per rank, counted in this job's size */
    micro = s.micro_step * s.world_size * ck_batch / ((int64_t)t->nranks * c->batch_size);
    MB_INFO("resuming a checkpoint of %d rank(s) x batch %lld x %lld micro-batches on %d x %lld x %lld: epoch %lld, "
            "%lld examples in",
            s.world_size, (long long)ck_batch, (long long)ck_accum, t->nranks, (long long)c->batch_size,
            (long long)c->grad_accum, (long long)g.epoch, (long long)g.consumed);
  } else {
    if (t->nranks > 1 && !have_rank_blob)
      return MB_ERR(MB_EFORMAT, "%s: no data position for rank %d of %d", dir, t->rank, t->nranks);
    int rc = mb_loader_restore_state(t->loader, blob);
    if (rc != MB_OK)
      return mb_error_context(rc, "%s: the data position does not fit this run's data", dir);
  }
  t->step = s.step;
  t->micro = micro;
  /* all ranks' (sum_counts_to_rank0); an older multi-rank checkpoint holds
   * rank 0's, about 1/world_size of them (equal shares of every epoch) */
  const double count_scale = s.counts_all_ranks ? 1.0 : (double)s.world_size;
  t->samples_seen = t->rank == 0 ? s.samples_seen * count_scale : 0;
  t->tokens_seen = t->rank == 0 ? s.tokens_seen * count_scale : 0;
  t->train_seconds = s.train_seconds;
  t->dropout_seed = s.dropout_seed;
  memcpy(t->log_window, s.log_window, sizeof t->log_window);
  if (t->scaling && s.has_loss_scaler) {
    t->scaler = s.loss_scaler;
    t->scaler.growth_interval = c->loss_scale_interval; /* an identity key: the checkpoint's too */
    t->window_skipped = s.window_skipped;
  } else if (t->scaling) {
    return MB_ERR(MB_EFORMAT, "%s: state.json holds no loss scaler state, which this run (train.loss_scale) needs to "
                              "resume exactly",
                  dir);
  }
  MB_INFO("resumed from %s: step %lld, epoch %lld", dir, (long long)s.step, (long long)s.epoch);
  return MB_OK;
}

/* ---- evaluation ------------------------------------------------------------------ */

/* Rank 0's evaluations and export run while the other ranks wait at a long
 * barrier (these may take longer than a collective's deadline), so rank 0
 * watches itself: the watchdog aborts the job when no evaluation batch (or
 * program compile) finished within the collective timeout, or the export
 * within max(30 min, 4 x that), as a hung collective would. A no-op on one
 * rank. */
typedef struct {
  int id; /* -1: none */
  double timeout_s;
} rank0_watch;

static rank0_watch rank0_watch_begin(const trainer *t, const char *what, double timeout_s) {
  rank0_watch w = {-1, timeout_s};
  if (t->nranks < 2 || !mb_watchdog_running())
    return w;
  char desc[160];
  snprintf(desc, sizeof desc, "rank 0: %s (the other ranks wait for it)", what);
  w.id = mb_watch_begin(desc, w.timeout_s, NULL, NULL);
  return w;
}

static void rank0_watch_extend(void *arg) {
  const rank0_watch *w = arg;
  if (w->id >= 0)
    mb_watch_extend(w->id, w->timeout_s);
}

static void rank0_watch_end(rank0_watch *w) {
  if (w->id >= 0)
    mb_watch_end(w->id);
  w->id = -1;
}

static int evaluate(trainer *t, int final, mb_eval_result *out) {
  const mb_config *c = t->cfg;
  const mb_shardset *all = strcmp(c->eval_split, "train") == 0 ? t->train_set : t->test_set;
  if (!all)
    return MB_ERR(MB_EINVAL, "eval: no %s set (data.%s)", c->eval_split, c->eval_split);
  int64_t n = final ? c->eval_samples : (c->eval_during_samples ? c->eval_during_samples : c->eval_samples);
  mb_shardset *sel;
  char desc[160];
  const char *selection = final ? c->eval_selection : c->eval_during_selection;
  MB_TRY(mb_eval_select(all, n, selection, &sel, desc, sizeof desc));
  mb_eval_opts o;
  memset(&o, 0, sizeof o);
  o.samples = n;
  snprintf(o.selection, sizeof o.selection, "%s", selection);
  o.batch_size = c->eval_batch_size;
  o.max_length = c->eval_max_length ? c->eval_max_length : c->max_length;
  o.packed = strcmp(c->eval_batching, "packed") == 0;
  o.warmup = final ? c->eval_warmup : 0;
  o.repeats = final ? c->eval_repeats : 1;
  o.quiet = !final;
  o.exclude_bytes = mb_shardset_bytes(t->train_set) + mb_shardset_bytes(t->test_set);
  o.device_mem = t->dev.mem;
  o.stop = &stop_signal; /* a signal ends it at the next batch (incomplete: not logged) */
  rank0_watch watch =
      rank0_watch_begin(t, "evaluation, no batch finished within the collective timeout", t->world->timeout_s);
  o.on_batch = rank0_watch_extend;
  o.on_batch_arg = &watch;
  int rc = mb_eval_run(t->net, t->be, sel, &o, out);
  rank0_watch_end(&watch);
  if (rc == MB_OK)
    snprintf(out->selection, sizeof out->selection, "%s", desc);
  mb_shardset_free(sel);
  return rc;
}

/* ---- the loop ---------------------------------------------------------------------- */


static void progress_bar(trainer *t, double loss, double lr, double tok_s, double smp_s, int force) {
  double now = now_s();
  if (!force && now - t->last_bar < 0.25)
    return;
  t->last_bar = now;
  int64_t done_here = t->step - t->step_at_start;
  double per = done_here > 0 ? (now - t->t_process_start) / (double)done_here : NAN;
  char eta[32], tk[32], sm[32];
  fmt_duration(per * (double)(t->total_steps - t->step), eta, sizeof eta);
  fmt_rate(tok_s, tk, sizeof tk);
  fmt_rate(smp_s, sm, sizeof sm);
  double frac = (double)t->step / (double)t->total_steps;
  char bar[21];
  int fill = (int)(frac * 20 + 0.5);
  for (int i = 0; i < 20; i++)
    bar[i] = i < fill ? '#' : '.';
  bar[20] = 0;
  double epoch = t->steps_per_epoch ? (double)t->micro / (double)t->steps_per_epoch : 0;
  char scale[48] = "";
  if (t->scaling)
    snprintf(scale, sizeof scale, " scale %g (%lld skipped)", mb_loss_scaler_scale(&t->scaler),
             (long long)t->scaler.skipped);
  fprintf(stderr, "\r[%s] step %lld/%lld ep %.2f loss %.4f lr %.2e%s %s tok/s %s smp/s eta %s \033[K", bar,
          (long long)t->step, (long long)t->total_steps, epoch, loss, lr, scale, tk, sm, eta);
  fflush(stderr);
}

static int log_interval(trainer *t, interval *iv, double lr) {
  double sums[6] = {iv->loss_sum, iv->loss_rows, iv->tokens, iv->padded, iv->samples, iv->grad_norm_sum};
  if (t->nranks > 1) {
    double tot[6];
    MB_TRY(mb_comm_allreduce(t->host, sums, tot, 5, MB_F64, MB_REDUCE_SUM));
    memcpy(sums, tot, 5 * sizeof(double));
  }
  double dt = iv->seconds > 0 ? iv->seconds : 1e-9;
  double loss = sums[1] > 0 ? sums[0] / sums[1] : NAN;
  double tok_s = sums[2] / dt, pad_s = sums[3] / dt, smp_s = sums[4] / dt;
  const double taken = iv->steps - (double)iv->skipped;
  double gnorm = taken > 0 ? sums[5] / taken : NAN;
  double epoch = t->steps_per_epoch ? (double)t->micro / (double)t->steps_per_epoch : 0;
  if (t->rank == 0) {
    const char *keys[] = {"loss",          "lr",        "grad_norm",  "epoch",        "tokens_per_s", "padded_tokens_per_s",
                          "samples_per_s", "elapsed_s", "loss_scale", "skipped_steps"};
    double vals[] = {loss,  lr, gnorm, epoch, tok_s, pad_s, smp_s, t->train_seconds, mb_loss_scaler_scale(&t->scaler),
                     (double)iv->skipped};
    MB_TRY(mb_metrics_log(t->metrics, "train", t->step, keys, vals, t->scaling ? 10 : 8));
    if (t->bar) {
      progress_bar(t, loss, lr, tok_s, smp_s, 1);
    } else if (!t->quiet_progress) {
      char eta[32];
      int64_t done_here = t->step - t->step_at_start;
      double per = done_here > 0 ? (now_s() - t->t_process_start) / (double)done_here : NAN;
      fmt_duration(per * (double)(t->total_steps - t->step), eta, sizeof eta);
      char scaling[64] = "";
      if (t->scaling)
        snprintf(scaling, sizeof scaling, " loss_scale %g skipped %lld", mb_loss_scaler_scale(&t->scaler),
                 (long long)iv->skipped);
      fprintf(stderr,
              "step %lld/%lld epoch %.2f loss %.4f lr %.3e grad_norm %.3f%s tokens/s %.0f samples/s %.1f eta %s\n",
              (long long)t->step, (long long)t->total_steps, epoch, loss, lr, gnorm, scaling, tok_s, smp_s, eta);
    }
  }
  memset(iv, 0, sizeof *iv);
  return MB_OK;
}

/* ---- log.timeline: one step's backward ops and all-reduces ------------------------ */

static void timeline_node_hook(void *user, int tape, int index, const char *op, double t0, double t1) {
  trainer *t = user;
  mb_timeline_add(t->timeline, MB_TRACK_COMPUTE, tape ? "backward" : "forward", op, t0, t1, index);
}

static int timeline_begin(trainer *t) {
  if (t->nranks > 1) /* ranks start the step together, so one origin fits all */
    MB_TRY(mb_comm_barrier_timeout(t->host, LONG_WAIT_S));
  mb_timeline_clear(t->timeline);
  mb_timeline_set_origin(t->timeline, mb_time_now());
  mb_timeline_set_step(t->timeline, (int)(t->step + 1));
  return MB_OK;
}

/* Writes timeline-rank-R.json (and timeline.json with every rank, from rank
 * 0) and logs how much of the communication the backward hid: all-reduce
 * time after the backward's last op is exposed, the rest hidden. */
static int timeline_end(trainer *t) {
  char path[1200];
  snprintf(path, sizeof path, "%s/timeline-rank-%d.json", t->run_dir, t->rank);
  MB_TRY(mb_timeline_write_chrome(t->timeline, path));
  if (t->nranks > 1) {
    snprintf(path, sizeof path, "%s/timeline.json", t->run_dir);
    MB_TRY(mb_timeline_write_chrome_all(t->timeline, t->host, path));
  }
  double bwd_end = -1e300;
  for (size_t i = 0; i < mb_timeline_count(t->timeline); i++) {
    const mb_timeline_event *e = mb_timeline_get(t->timeline, i);
    if (strcmp(e->cat, "backward") == 0 && e->t1 > bwd_end)
      bwd_end = e->t1;
  }
  /* sums over ranks: all-reduces, started before the backward ended, time, exposed time, backward time */
  double mine[5] = {0, 0, 0, 0, 0}, all[5];
  double bwd_begin = 1e300;
  for (size_t i = 0; i < mb_timeline_count(t->timeline); i++) {
    const mb_timeline_event *e = mb_timeline_get(t->timeline, i);
    if (strcmp(e->cat, "backward") == 0 && e->t0 < bwd_begin)
      bwd_begin = e->t0;
    if (strcmp(e->cat, "allreduce") != 0 && strcmp(e->cat, "zero") != 0)
      continue;
    mine[0] += 1;
    mine[1] += e->t0 < bwd_end;
    mine[2] += e->t1 - e->t0;
    mine[3] += e->t1 > bwd_end ? e->t1 - (e->t0 > bwd_end ? e->t0 : bwd_end) : 0;
  }
  mine[4] = bwd_end > bwd_begin ? bwd_end - bwd_begin : 0;
  memcpy(all, mine, sizeof all);
  if (t->nranks > 1)
    MB_TRY(mb_comm_allreduce(t->host, mine, all, 5, MB_F64, MB_REDUCE_SUM));
  const double R = (double)t->nranks;
  const double hidden = all[2] > 0 ? 1.0 - all[3] / all[2] : 0;
  if (t->rank == 0) {
    MB_INFO("timeline of step %lld (%s/timeline-rank-*.json): %.0f %s per rank, %.0f started before the backward's "
            "last op; communication %.2f ms, exposed after the backward %.2f ms, hidden %.1f%%; backward %.2f ms "
            "(means over %d rank(s))",
            (long long)t->step, t->run_dir, all[0] / R, t->zero ? "ZeRO-1 steps" : "bucket all-reduces", all[1] / R,
            1e3 * all[2] / R, 1e3 * all[3] / R, 100 * hidden, 1e3 * all[4] / R, t->nranks);
    const char *keys[] = {"allreduces", "started_before_backward_end", "comm_ms", "exposed_ms", "hidden_fraction",
                          "backward_ms"};
    double vals[] = {all[0] / R, all[1] / R, 1e3 * all[2] / R, 1e3 * all[3] / R, hidden, 1e3 * all[4] / R};
    MB_TRY(mb_metrics_log(t->metrics, "timeline", t->step, keys, vals, 6));
  }
  return MB_OK;
}

static int train_step(trainer *t, interval *iv, double *lr_out) {
  const mb_config *c = t->cfg;
  const int64_t A = c->grad_accum;
  mb_params *p = t->net->params;
  if (A > 1)
    MB_TRY(mb_params_zero_grad(p));
  const int record = t->timeline && t->step + 1 == c->timeline_step;
  if (record)
    MB_TRY(timeline_begin(t));
  if (t->scaling)
    MB_TRY(mb_cli_device_set_loss_scale(t->net, mb_loss_scaler_scale(&t->scaler)));
  for (int64_t m = 0; m < A; m++) {
    const mb_batch *b;
    MB_TRY(mb_loader_next(t->loader, &b));
    uint64_t rng[2] = {t->dropout_seed, (uint64_t)(t->micro * t->nranks + t->rank) << 36};
    mb_exec *ex;
    mb_var logits, loss;
    int prc = mb_net_programs_run_inputs(t->progs, b, rng, &ex, &logits, &loss);
    if (prc == MB_ENOMEM) /* the activations of one batch do not fit: say what sizes them */
      return mb_error_context(prc, "a batch of %d rows x %d positions (lower data.batch_size or data.max_length, "
                                   "or set train.recompute: true)",
                              b->rows, b->seq_len);
    MB_TRY(prc);
    MB_TRY(ensure_buckets(t, ex));
    if (t->buckets)
      MB_TRY(mb_buckets_begin_step(t->buckets, m == A - 1));
    if (record)
      mb_exec_on_node(ex, timeline_node_hook, t);
    int rc = mb_exec_forward(ex);
    if (rc == MB_OK)
      rc = mb_exec_backward(ex);
    mb_exec_on_node(ex, NULL, NULL);
    MB_TRY(rc);
    if (t->hook_rc != MB_OK)
      return t->hook_rc;
    if (b->n_seqs > 0) {
      float l;
      MB_TRY(mb_exec_get(ex, loss, &l));
      if (!isfinite(l))
        return MB_ERR(MB_EINVAL, "step %lld: the loss is %f (diverged); lower optim.lr or set train.clip_grad_norm%s",
                      (long long)t->step + 1, (double)l,
                      strcmp(c->precision, "fp16") == 0 ? " (fp16 activations overflow more easily than bf16's)" : "");
      iv->loss_sum += (double)l * b->n_seqs;
      iv->loss_rows += b->n_seqs;
    }
    iv->tokens += (double)b->n_tokens;
    iv->padded += b->mode == MB_BATCH_PACKED ? (double)b->seq_len : (double)b->rows * b->seq_len;
    iv->samples += b->n_seqs;
    t->samples_seen += b->n_seqs;
    t->tokens_seen += (double)b->n_tokens;
    t->micro++;
  }
  const double lr = mb_lr_at(&t->sched, t->step);
  const double max_norm = c->clip_grad_norm > 0 ? c->clip_grad_norm : 1e300;
  double norm;
  int take = 1;
  if (t->zero) {
    float *grads = mb_params_grad(p), *params = mb_params_data(p);
    const size_t numel = (size_t)mb_params_total(p);
    memcpy(t->zero_grads, grads, numel * sizeof(float));
    memcpy(t->zero_params, params, numel * sizeof(float));
    t->zero_lr = lr;
    t->zero_clip_max = max_norm;
    t->zero_accum = (double)A;
    const double z0 = mb_time_now();
    MB_TRY(mb_zero_step(t->comm, &t->zl, t->zero_params, t->zero_grads,
                        t->zero_grads + mb_zero_shard_offset(&t->zl, t->rank), zero_update, t));
    if (record) /* after the backward by design: reduce-scatter, update, all-gather */
      mb_timeline_add(t->timeline, MB_TRACK_COMM, "zero", "ZeRO-1 step", z0, mb_time_now(), -1);
    memcpy(params, t->zero_params, numel * sizeof(float));
    norm = t->zero_norm;
    take = t->zero_take;
  } else {
    if (t->buckets)
      MB_TRY(mb_buckets_wait_all(t->buckets));
    double scale, inv;
    MB_TRY(mb_clip_grad_norm(p, 1e300, &norm, &scale));
    norm /= (double)A; /* the gradient of the mean over micro-batches */
    take = scaler_take(t, &norm, &inv);
    if (take) {
      scale = mb_clip_coef(norm, max_norm);
      MB_TRY(mb_optimizer_step(t->opt, lr, scale * inv / (double)A));
    }
  }
  if (!take) {
    iv->skipped++;
    if (t->scaler.bad_steps >= MAX_BAD_STEPS)
      return MB_ERR(MB_EINVAL,
                    "step %lld: the gradients overflowed (Inf or NaN) %d steps in a row, down to a loss scale of "
                    "%g: they are not finite at any scale (diverged); lower optim.lr%s",
                    (long long)t->step + 1, MAX_BAD_STEPS, mb_loss_scaler_scale(&t->scaler),
                    strcmp(c->precision, "fp16") == 0 ? " or use train.precision: bf16" : "");
  }
  if (take) /* a skipped step's norm is Inf or NaN */
    iv->grad_norm_sum += norm;
  iv->steps += 1;
  t->step++;
  if (record)
    MB_TRY(timeline_end(t));
  *lr_out = lr;
  return MB_OK;
}

static int write_final_files(trainer *t, const mb_eval_result *ev, int have_eval, double wall) {
  json_t *r = json_object();
  json_object_set_new(r, "name", json_string(t->cfg->run_name));
  json_object_set_new(r, "arch", json_string(t->net->arch));
  char desc[512];
  t->net->ops->describe(t->net, desc, sizeof desc);
  json_object_set_new(r, "model", json_string(desc));
  json_object_set_new(r, "params", json_integer(mb_params_total(t->net->params)));
  json_object_set_new(r, "steps", json_integer(t->step));
  json_object_set_new(r, "epochs", json_real(t->steps_per_epoch ? (double)t->micro / (double)t->steps_per_epoch : 0));
  json_object_set_new(r, "ranks", json_integer(t->nranks));
  json_object_set_new(r, "threads", json_integer(omp_get_max_threads()));
  json_object_set_new(r, "train_seconds", json_real(t->train_seconds));
  json_object_set_new(r, "wall_seconds_this_process", json_real(wall));
  json_object_set_new(r, "samples_seen", json_real(t->samples_seen));
  json_object_set_new(r, "tokens_seen", json_real(t->tokens_seen));
  if (t->scaling) { /* the run's totals (metrics.jsonl has them per log interval) */
    json_object_set_new(r, "loss_scale", json_real(mb_loss_scaler_scale(&t->scaler)));
    json_object_set_new(r, "skipped_steps", json_integer((json_int_t)t->scaler.skipped));
  }
  json_object_set_new(r, "train_tokens_per_s", json_real(t->train_seconds > 0 ? t->tokens_seen / t->train_seconds : 0));
  json_object_set_new(r, "train_samples_per_s",
                      json_real(t->train_seconds > 0 ? t->samples_seen / t->train_seconds : 0));
  if (have_eval) {
    char *ej = mb_eval_result_json(ev, t->cfg->run_name, desc);
    json_error_t err;
    json_t *e = ej ? json_loads(ej, 0, &err) : NULL;
    free(ej);
    if (e)
      json_object_set_new(r, "eval", e);
  }
  char *text = json_dumps(r, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8));
  json_decref(r);
  char path[1200];
  snprintf(path, sizeof path, "%s/results.json", t->run_dir);
  int rc = text ? mb_write_file_atomic(path, text, strlen(text)) : MB_ERR(MB_ENOMEM, "out of memory");
  free(text);
  if (rc == MB_OK && have_eval) {
    char *md = NULL;
    size_t mdlen = 0;
    FILE *f = open_memstream(&md, &mdlen);
    if (f) {
      fprintf(f, "Evaluation of %s (%s): %s\n\n", t->cfg->run_name, desc, ev->selection);
      mb_eval_table_header(f);
      mb_eval_table_row(f, t->cfg->run_name, ev);
      fclose(f);
      snprintf(path, sizeof path, "%s/eval.md", t->run_dir);
      rc = mb_write_file_atomic(path, md, mdlen);
      if (rc == MB_OK)
        fputs(md, stdout);
      free(md);
    }
  }
  return rc;
}

static int copy_file(const char *from, const char *to) {
  char *data;
  size_t n;
  MB_TRY(mb_read_file(from, (size_t)1 << 30, &data, &n));
  int rc = mb_write_file_atomic(to, data, n);
  free(data);
  return rc;
}

static int export_model(trainer *t) {
  char dir[1100];
  snprintf(dir, sizeof dir, "%s/model", t->run_dir);
  /* one call that writes the whole model: a generous deadline (slow file systems) */
  const double export_s = fmax(1800.0, 4 * t->world->timeout_s);
  rank0_watch watch = rank0_watch_begin(t, "export, not done within max(30 min, 4 x the collective timeout)", export_s);
  const int rc = t->net->ops->export_dir(t->net, dir, t->tokenizer_path);
  rank0_watch_end(&watch);
  MB_TRY(rc);
  /* the tokenizer travels with the weights: the BERT and Mamba exports
   * write it themselves; otherwise (bow) it is copied under its format's name */
  const size_t tl = strlen(t->tokenizer_path);
  const int json = tl >= 5 && strcmp(t->tokenizer_path + tl - 5, ".json") == 0;
  char vocab[1200], tj[1200];
  snprintf(vocab, sizeof vocab, "%s/vocab.txt", dir);
  snprintf(tj, sizeof tj, "%s/tokenizer.json", dir);
  if (!mb_file_exists(vocab) && !mb_file_exists(tj))
    MB_TRY(copy_file(t->tokenizer_path, json ? tj : vocab));
  MB_INFO("exported %s", dir);
  return MB_OK;
}

static int run_loop(trainer *t, int *interrupted) {
  const mb_config *c = t->cfg;
  interval iv;
  memset(&iv, 0, sizeof iv);
  if (t->rank == 0) { /* a resumed run's open interval (summed over ranks: rank 0 holds it all) */
    const double *w = t->log_window;
    iv = (interval){w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], t->window_skipped};
  }
  t->t_process_start = now_s();
  t->step_at_start = t->step;
  int64_t last_ckpt = t->step;
  double lr = mb_lr_at(&t->sched, t->step);
  while (t->step < t->total_steps) {
    double t0 = now_s();
    MB_TRY(train_step(t, &iv, &lr));
    const double dt_step = now_s() - t0;
    t->train_seconds += dt_step;
    iv.seconds += dt_step;
    if (t->rank == 0 && t->bar && iv.steps > 0)
      progress_bar(t, iv.loss_rows > 0 ? iv.loss_sum / iv.loss_rows : NAN, lr, iv.tokens * t->nranks / iv.seconds,
                   iv.samples * t->nranks / iv.seconds, 0);
    const int last = t->step == t->total_steps;
    if (t->step % c->log_every == 0 || last)
      MB_TRY(log_interval(t, &iv, lr));
    if (c->eval_every > 0 && t->step % c->eval_every == 0 && !last) {
      if (t->rank == 0) {
        mb_eval_result ev;
        MB_TRY(evaluate(t, 0, &ev));
        if (!ev.stopped) { /* else the step's checkpoint below, then the stop */
          const char *keys[] = {"accuracy", "loss", "samples_per_s", "samples"};
          double vals[] = {ev.accuracy, ev.loss, ev.samples_per_s, (double)ev.n};
          MB_TRY(mb_metrics_log(t->metrics, "eval", t->step, keys, vals, 4));
          if (t->bar)
            fprintf(stderr, "\n");
          MB_INFO("step %lld: eval accuracy %.4f loss %.4f on %lld examples", (long long)t->step, ev.accuracy,
                  ev.loss, (long long)ev.n);
        }
      }
      MB_TRY(barrier_long(t));
    }
    int stop = stop_signal != 0, sig = (int)stop_signal;
    if (t->nranks > 1) { /* any rank's signal stops all; the number for the message (one kind, or 0) */
      double v[2] = {stop, sig}, tot[2];
      MB_TRY(mb_comm_allreduce(t->host, v, tot, 2, MB_F64, MB_REDUCE_SUM));
      stop = tot[0] > 0;
      sig = stop && fmod(tot[1], tot[0]) == 0 ? (int)(tot[1] / tot[0]) : 0;
    }
    if ((c->ckpt_every > 0 && t->step % c->ckpt_every == 0) || (last && c->ckpt_at_end) || stop) {
      if (t->bar)
        fprintf(stderr, "\n");
      MB_TRY(save_checkpoint(t, &iv));
      last_ckpt = t->step;
    }
    if (stop) {
      *interrupted = 1;
      if (t->rank == 0) {
        char by[48] = "signals of different kinds on several ranks";
        if (sig)
          snprintf(by, sizeof by, "signal %d", sig);
        char launch[96] = "";
        if (t->nranks > 1)
          snprintf(launch, sizeof launch, "%s -np %d ",
                   t->world->launcher == MB_LAUNCH_SRUN ? "srun" : "mpirun", t->nranks);
        MB_WARN("stopped by %s after step %lld; checkpoint written. Continue with: %smambert train --resume %s%s", by,
                (long long)t->step, launch, t->run_dir,
                t->world->launcher == MB_LAUNCH_SRUN ? " (or submit the job again: slurm/*.sbatch continue it)" : "");
      }
      return MB_OK;
    }
  }
  (void)last_ckpt;
  if (t->bar && t->rank == 0)
    fprintf(stderr, "\n");
  if (c->profile && t->rank == 0)
    mb_net_programs_profile_print(t->progs, stderr);
  return MB_OK;
}

static void trainer_free(trainer *t) {
  mb_buckets_destroy(t->buckets);
  mb_timeline_destroy(t->timeline);
  free(t->bucket_pos);
  mb_host_free(t->zero_params);
  mb_host_free(t->zero_grads);
  mb_net_programs_free(t->progs);
  mb_loader_free(t->loader);
  mb_optimizer_free(t->opt);
  mb_net_free(t->net);
  mb_shardset_free(t->train_set);
  mb_shardset_free(t->test_set);
  mb_tokenizer_free(t->tok);
  if (t->metrics && mb_metrics_close(t->metrics) != MB_OK)
    mb_log_error_status(mb_error_code(), "closing metrics");
  mb_rundir_release(t->rundir);
  mb_config_doc_free(t->doc);
  mb_cli_device_close(&t->dev); /* last: it owns the GPU memory of everything above */
}

/* mb_dist's abort hook (rank 0, the run loop): the job is ending under
 * another thread's feet, so only run.json, atomically, with the reason. */
static void mark_failed(void *arg, const char *reason) {
  trainer *t = arg;
  json_t *extra = json_pack("{s:s}", "error", reason);
  char *text = extra ? json_dumps(extra, JSON_COMPACT) : NULL;
  if (mb_rundir_write_info(t->rundir, t->cfg->run_name, t->config_sha, t->net->arch, "failed", text) != MB_OK)
    mb_error_clear();
  free(text);
  json_decref(extra);
}

static int finish(trainer *t, double t_start, int *interrupted);

/* --auto-resume: whether the run directory the config names already holds a
 * run (run.json), as rank 0 sees it before anyone writes there; every rank
 * takes rank 0's answer. */
static int auto_resume_decision(trainer *t, const mb_train_args *a, int *resume) {
  mb_config_doc *d = NULL;
  double mine = 0, any = 0;
  int rc = mb_config_load(a->configs, a->nconfigs, a->sets, a->nsets, NULL, &d);
  if (rc == MB_OK) {
    const char *dir = a->run_dir ? a->run_dir : mb_config_doc_config(d)->run_dir;
    char runjson[1200];
    snprintf(runjson, sizeof runjson, "%s/run.json", dir);
    mine = any = t->rank == 0 && dir[0] && mb_file_exists(runjson);
    mb_config_doc_free(d);
  }
  MB_TRY(agree_status(t, rc)); /* every rank reaches the decision's all-reduce, or none does */
  if (t->nranks > 1)
    MB_TRY(mb_comm_allreduce(t->host, &mine, &any, 1, MB_F64, MB_REDUCE_SUM));
  *resume = any > 0;
  if (t->rank == 0)
    MB_INFO("--auto-resume: %s", *resume ? "the run directory holds a run: resuming it" : "no run there yet: starting");
  return MB_OK;
}

static int train_body(trainer *t, const mb_train_args *given_args, int *interrupted) {
  const double t_start = now_s();
  mb_train_args args = *given_args;
  const mb_train_args *a = &args;
  if (args.auto_resume)
    MB_TRY(auto_resume_decision(t, given_args, &args.resume));
  MB_TRY(load_config(t, a));
  const mb_config *c = t->cfg;
  if (c->threads > 0) {
    mb_cpu_set_threads((int)c->threads);
  } else if (t->world->local_size > 1 && !getenv("OMP_NUM_THREADS")) {
    /* Several ranks on this machine, each with every CPU's worth of threads,
     * would oversubscribe it (4 ranks on 2 cores: 5x slower). */
    const int n =
        mb_cpu_threads_per_rank(t->world->local_size, omp_get_num_procs(), (int)sysconf(_SC_NPROCESSORS_ONLN));
    mb_cpu_set_threads(n);
    if (t->rank == 0)
      MB_INFO("%d ranks share this machine: %d CPU thread%s each (OMP_NUM_THREADS or train.threads to choose)",
              t->world->local_size, n, n == 1 ? "" : "s");
  }
  t->zero = c->zero1 && t->nranks > 1;
  if (c->zero1 && t->nranks == 1)
    MB_INFO("train.zero1 with one rank: nothing to shard, plain optimizer");
  /* rank 0 claims the run directory */
  int rc = MB_OK;
  if (t->rank == 0) {
    rc = mb_rundir_claim(t->run_dir, a->resume, a->force, &t->rundir, &t->resuming);
    if (rc == MB_OK && a->resume && !t->resuming)
      rc = MB_ERR(MB_EINTERNAL, "resume without a run");
  }
  MB_TRY(agree_status(t, rc));
  t->resuming = a->resume;
  /* a finished run whose last checkpoint is its last step (or that keeps no
   * checkpoint at its end): nothing to train, and its evaluation and export
   * are not redone. (With the later checkpoints removed, it resumes from the
   * newest one left.) */
  double done = 0;
  if (t->rank == 0 && t->resuming) {
    const int64_t steps = mb_rundir_completed_steps(t->rundir);
    char latest[1200];
    rc = steps >= 0 ? mb_ckpt_find_latest(t->ckpt_root, latest, sizeof latest) : MB_OK;
    if (rc == MB_ENOTFOUND) { /* no checkpoint to resume from: complete as it is */
      mb_error_clear();
      rc = MB_OK;
      done = 1;
    } else if (rc == MB_OK && steps >= 0) {
      const char *base = strrchr(latest, '/');
      long long at = -1;
      /* without checkpoint.at_end the last step has none: complete as it is */
      done = !t->cfg->ckpt_at_end || (sscanf(base ? base + 1 : latest, "step-%lld", &at) == 1 && at >= steps);
    }
  }
  MB_TRY(agree_status(t, rc));
  if (t->nranks > 1) {
    double any;
    MB_TRY(mb_comm_allreduce(t->host, &done, &any, 1, MB_F64, MB_REDUCE_SUM));
    done = any;
  }
  if (done > 0) {
    if (t->rank == 0)
      MB_INFO("%s is a completed run (run.json, results.json): nothing to resume. Evaluate it again with: mambert "
              "eval %s; train it further in a new run with model.checkpoint: %s/model",
              t->run_dir, t->run_dir, t->run_dir);
    return MB_OK;
  }
  /* the device before the data: a GPU that is not there is said at once */
  MB_TRY(agree_status(t, mb_cli_device_open(c, t->nranks, c->profile, "mambert train", &t->dev)));
  if (strcmp(c->eval_attention, "fp8") == 0 && t->rank == 0)
    MB_WARN("eval.attention: fp8 applies to mambert eval; training's own evaluations run in train.precision");
  /* the model before the data: a checkpoint that does not fit the config is
   * said before minutes of tokenizing, not after */
  MB_TRY(agree_status(t, setup_tokenizer(t)));
  MB_TRY(agree_status(t, setup_net(t)));
  MB_TRY(agree_status(t, setup_data(t)));
  if (t->nranks > 1) /* one starting point everywhere */
    MB_TRY(mb_comm_broadcast(t->comm, mb_params_data(t->net->params), (size_t)mb_params_total(t->net->params), MB_F32,
                             0));
  MB_TRY(agree_status(t, t->zero ? setup_zero(t) : make_optimizer(t, 0, 0, 0)));
  MB_TRY(agree_status(t, setup_loader(t)));
  if (c->timeline_step > 0)
    MB_TRY(mb_timeline_create(t->rank, (size_t)1 << 15, &t->timeline));
  t->dropout_seed = (uint64_t)c->seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
  char ckpt_dir[1200] = "";
  int64_t resume_step = -1;
  if (t->resuming) {
    rc = mb_ckpt_find_latest(t->ckpt_root, ckpt_dir, sizeof ckpt_dir);
    if (rc == MB_ENOTFOUND) { /* killed before its first checkpoint: start from the beginning */
      mb_error_clear();
      rc = MB_OK;
      MB_WARN("%s has no complete checkpoint yet; starting the run from step 0", t->run_dir);
      ckpt_dir[0] = 0;
    }
    if (rc == MB_OK && ckpt_dir[0])
      rc = restore_checkpoint(t, ckpt_dir);
    MB_TRY(agree_status(t, rc));
    resume_step = t->step;
  }
  mb_compile_opts co = {.train = 1, .recompute = c->recompute, .accumulate_grads = c->grad_accum > 1};
  MB_TRY(mb_net_programs_new(t->net, t->be, &co, &t->progs));
  mb_net_programs_set_profiling(t->progs, c->profile);
  /* rank 0: the resolved config, run.json, metrics */
  char desc[512];
  t->net->ops->describe(t->net, desc, sizeof desc);
  if (t->rank == 0) {
    char *yaml;
    size_t n;
    char comment[1400], path[1200];
    snprintf(comment, sizeof comment, "resolved by mambert %s; resume with: mambert train --resume %s",
             MAMBERT_VERSION, t->run_dir);
    rc = mb_config_to_yaml(c, comment, &yaml, &n);
    snprintf(path, sizeof path, "%s/config.yaml", t->run_dir);
    if (rc == MB_OK) {
      rc = mb_write_file_atomic(path, yaml, n);
      free(yaml);
    }
    if (rc == MB_OK)
      rc = mb_rundir_write_info(t->rundir, c->run_name, t->config_sha, t->net->arch, "running", NULL);
    if (rc == MB_OK)
      rc = mb_metrics_open(t->run_dir, c->tensorboard, resume_step, resume_step >= t->total_steps, &t->metrics);
    if (rc == MB_OK) {
      MB_INFO("%s: %s, %lld parameters; on %s", c->run_name, desc, (long long)mb_params_total(t->net->params),
              t->dev.desc);
      const mb_shardset *ts = t->train_set;
      const int64_t used = c->train_limit > 0 && c->train_limit < ts->n ? c->train_limit : ts->n;
      char of[96] = "";
      if (used < ts->n)
        snprintf(of, sizeof of, " (the first of %lld: data.train_limit)", (long long)ts->n);
      MB_INFO("data: %lld training examples%s, %lld micro-batches per epoch per rank; %lld optimizer steps, %d "
              "rank(s), %d thread(s)",
              (long long)used, of, (long long)t->steps_per_epoch, (long long)t->total_steps, t->nranks,
              omp_get_max_threads());
      int64_t per_label[2] = {0, 0};
      for (int64_t i = 0; i < used; i++)
        per_label[ts->labels[i] != 0]++;
      if (used < ts->n && (per_label[0] == 0 || per_label[1] == 0)) /* a file sorted by label, cut */
        MB_WARN("data.train_limit %lld: the first %lld training examples are all %s (the file is ordered by "
                "label?): the model sees one class. Shuffle the file, or prepare a subset with both labels",
                (long long)c->train_limit, (long long)used, per_label[0] ? "negative" : "positive");
      else if (per_label[0] == 0 || per_label[1] == 0)
        MB_WARN("data.train: all %lld training examples are %s: the model sees one class", (long long)used,
                per_label[0] ? "negative" : "positive");
      if (c->train_limit > ts->n)
        MB_INFO("data.train_limit %lld: the training set has %lld examples, all used", (long long)c->train_limit,
                (long long)ts->n);
    }
  }
  MB_TRY(agree_status(t, rc));
  /* progress display */
  if (t->rank == 0) {
    if (strcmp(c->progress, "bar") == 0)
      t->bar = 1;
    else if (strcmp(c->progress, "auto") == 0)
      t->bar = isatty(2);
    t->quiet_progress = strcmp(c->progress, "off") == 0;
  }
  /* Ctrl-C, SIGTERM (SLURM's end of time, scancel) and SIGHUP (a closed
   * terminal) stop the run cleanly from here to the end: in training, after
   * the step with a checkpoint; in the final evaluation, at its next batch */
  struct sigaction sa, old_sig[3];
  const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  int installed[3] = {0, 0, 0};
  for (int k = 0; k < 3; k++) { /* an ignored signal stays ignored (nohup's SIGHUP) */
    sigaction(sigs[k], NULL, &old_sig[k]);
    if (old_sig[k].sa_handler != SIG_IGN)
      installed[k] = sigaction(sigs[k], &sa, NULL) == 0;
  }
  if (t->rank == 0 && t->rundir) /* a job ended by a dead peer or a hang: run.json says failed, not running */
    mb_dist_set_abort_hook(mark_failed, t);
  rc = run_loop(t, interrupted);
  if (rc == MB_OK && !*interrupted)
    rc = finish(t, t_start, interrupted);
  mb_dist_set_abort_hook(NULL, NULL);
  for (int k = 0; k < 3; k++)
    if (installed[k])
      sigaction(sigs[k], &old_sig[k], NULL);
  if ((rc != MB_OK || *interrupted) && t->rank == 0 && t->rundir)
    if (mb_rundir_write_info(t->rundir, c->run_name, t->config_sha, t->net->arch,
                             rc != MB_OK ? "failed" : "interrupted", NULL) != MB_OK)
      mb_error_clear();
  return rc;
}

/* The end of a run: evaluation, export, results (rank 0). A signal during
 * the evaluation stops it at its next batch: run.json says interrupted and
 * --resume (from the last step's checkpoint) evaluates and exports again. */
static int finish(trainer *t, double t_start, int *interrupted) {
  const mb_config *c = t->cfg;
  int rc = MB_OK;
  /* what only training needed goes first, so the evaluation's peak memory
   * is the model's */
  mb_net_programs_free(t->progs);
  t->progs = NULL;
  mb_optimizer_free(t->opt);
  t->opt = NULL;
  mb_buckets_destroy(t->buckets);
  t->buckets = NULL;
  mb_host_free(t->zero_params);
  mb_host_free(t->zero_grads);
  t->zero_params = t->zero_grads = NULL;
  MB_TRY(sum_counts_to_rank0(t));
  double stopped = 0;
  if (t->rank == 0) {
    mb_eval_result ev;
    int have_eval = 0;
    if (c->eval_at_end && (t->test_set || strcmp(c->eval_split, "train") == 0)) {
      rc = evaluate(t, 1, &ev);
      stopped = rc == MB_OK && ev.stopped;
      if (rc == MB_OK && !stopped) {
        have_eval = 1;
        const char *keys[] = {"accuracy", "loss", "samples_per_s", "real_tokens_per_s", "peak_mb", "samples"};
        double vals[] = {ev.accuracy, ev.loss, ev.samples_per_s, ev.tokens_per_s, ev.peak_mb, (double)ev.n};
        rc = mb_metrics_log(t->metrics, "eval", t->step, keys, vals, 6);
      }
    } else if (c->eval_at_end) {
      MB_WARN("eval.at_end: no test set (data.test is empty): no final evaluation");
    }
    stopped = stopped || stop_signal;
    if (rc == MB_OK && !stopped && c->export_at_end)
      rc = export_model(t);
    if (rc == MB_OK && !stopped)
      rc = write_final_files(t, &ev, have_eval, now_s() - t_start);
    if (rc == MB_OK && !stopped) {
      char extra[256];
      snprintf(extra, sizeof extra, "{\"steps\": %lld, \"train_seconds\": %.3f}", (long long)t->step,
               t->train_seconds);
      rc = mb_rundir_write_info(t->rundir, c->run_name, t->config_sha, t->net->arch, "completed", extra);
    }
    char skipped[64] = "";
    if (t->scaling)
      snprintf(skipped, sizeof skipped, " (%lld skipped by the loss scaler)", (long long)t->scaler.skipped);
    if (rc == MB_OK && !stopped)
      MB_INFO("done: %lld steps%s in %.1f s of training (%.0f tokens/s); %s", (long long)t->step, skipped,
              t->train_seconds, t->train_seconds > 0 ? t->tokens_seen / t->train_seconds : 0.0, t->run_dir);
    if (rc == MB_OK && stopped)
      MB_WARN("stopped by signal %d during the final evaluation (training is complete, step %lld checkpointed%s). "
              "Evaluate and export with: mambert train --resume %s",
              (int)stop_signal, (long long)t->step, c->ckpt_at_end ? "" : " only if checkpoint.at_end", t->run_dir);
  }
  /* the other ranks wait out rank 0's evaluation and export (which may take
   * longer than the collective timeout) at a long barrier, before any
   * collective with the usual timeout */
  MB_TRY(barrier_long(t));
  MB_TRY(agree_status(t, rc));
  if (t->nranks > 1) { /* every rank's exit status says it */
    double any;
    MB_TRY(mb_comm_allreduce(t->host, &stopped, &any, 1, MB_F64, MB_REDUCE_SUM));
    stopped = any;
  }
  *interrupted = stopped > 0;
  return MB_OK;
}

int mb_train_run(const mb_train_args *a, int *interrupted) {
  *interrupted = 0;
  stop_signal = 0;
  trainer t;
  memset(&t, 0, sizeof t);
  mb_dist *d;
  MB_TRY(mb_dist_init(NULL, &d));
  t.dist = d;
  t.world = mb_dist_get_info(d);
  t.rank = t.world->rank;
  t.nranks = t.world->world_size;
  t.comm = mb_dist_comm(d);
  t.host = mb_dist_host_comm(d);
  int rc = train_body(&t, a, interrupted);
  char msg[4096] = "";
  if (rc != MB_OK)
    snprintf(msg, sizeof msg, "%s", mb_error_message());
  trainer_free(&t);
  if (rc != MB_OK && t.nranks > 1)
    mb_dist_abort(MB_DIST_EXIT_ABORT, "train: %s", msg); /* the other ranks may be inside a collective */
  int frc = mb_dist_finalize(d);
  if (rc != MB_OK)
    return mb_error_set(rc, __FILE__, __LINE__, "%s", msg);
  return frc;
}
