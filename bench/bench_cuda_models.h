/* bench_cuda_models.h: what the model-level GPU benchmarks share
 * (bench_cuda_train, bench_cuda_sweep, bench_cuda_packed): the study's two
 * models from models/ (BERT-base: bert-base-uncased sizes; Mamba-130m:
 * mamba_ssm's defaults) randomly initialised on the CUDA backend in a
 * compute precision (f32 master weights), one program per batch shape,
 * timed training steps (forward, backward, clip_grad_norm 1.0, AdamW) and
 * evaluation passes (forward, logits read back), with the caching
 * allocator's peak and the planned arena. A point that does not fit the
 * card is reported as "oom" with the bytes it asked for, never a crash.
 * Header-only; benchmark code, so checked calls exit on the first error
 * except where an out-of-memory is an expected outcome. */
#ifndef MB_BENCH_CUDA_MODELS_H
#define MB_BENCH_CUDA_MODELS_H

#include <cuda_runtime_api.h>

#include "autograd/autograd.h"
#include "autograd/optim.h"
#include "bench_batch.h"
#include "bench_cuda_util.h"
#include "kernels/cuda/cuda.h"
#include "models/model.h"
#include "runtime/philox.h"

typedef struct {
  int bert;
  int fp8_attention; /* bert: evaluation programs' attention in e4m3 (bm_model_set_fp8_attention) */
  mb_model *m;
  mb_backend *be;
  mb_optimizer *opt; /* made on the first training step */
  int64_t nparams;
} bm_model;

/* BERT-base or Mamba-130m on be; max_pos > 0 overrides BERT's 512 position
 * embeddings (the sweep's long sequences; random weights either way). */
static inline void bm_model_new(bm_model *bm, mb_backend *be, int bert, int64_t max_pos, mb_dtype compute) {
  memset(bm, 0, sizeof *bm);
  bm->bert = bert;
  bm->be = be;
  mb_model_config c = mb_model_config_default(bert ? MB_ARCH_BERT : MB_ARCH_MAMBA);
  if (bert && max_pos > c.bert.max_position)
    c.bert.max_position = max_pos;
  BCHECK(mb_model_new(&c, NULL, be, &bm->m));
  BCHECK(mb_model_init_random(bm->m, 42));
  mb_model_precision p = {.compute = compute};
  BCHECK(mb_model_set_precision(bm->m, &p));
  bm->nparams = mb_params_total(mb_model_params(bm->m));
}

static inline void bm_model_free(bm_model *bm) {
  mb_optimizer_free(bm->opt);
  mb_model_free(bm->m);
  memset(bm, 0, sizeof *bm);
}

static inline const char *bm_name(const bm_model *bm) {
  return bm->bert ? (bm->fp8_attention ? "bert-fp8att" : "bert-base") : "mamba-130m";
}

/* BERT's evaluation programs with q, k, v in e4m3 (eval.attention: fp8). */
static inline void bm_model_set_fp8_attention(bm_model *bm) {
  mb_model_precision p = mb_model_precision_of(bm->m);
  p.fp8_attention = 1;
  BCHECK(mb_model_set_precision(bm->m, &p));
  bm->fp8_attention = 1;
}

static inline int64_t bm_vocab(const bm_model *bm) {
  const mb_model_config *c = mb_model_config_of(bm->m);
  return bm->bert ? c->bert.vocab_size : c->mamba.vocab_size_config;
}

/* The batch of bench_batch.h with this model's vocabulary. */
typedef bench_batch bm_batch;

static inline void bm_batch_random(bm_batch *t, const bm_model *bm, int B, int L, uint64_t seed) {
  bench_batch_random(t, bm_vocab(bm), bm->bert, B, L, seed);
}

static inline void bm_batch_free(bm_batch *t) { bench_batch_free(t); }

typedef struct {
  char status[16]; /* ok | oom | failed */
  char why[256];
  int runs;  /* timed runs */
  double ms; /* median per step / pass */
  double ms_min;
  size_t peak_bytes;  /* the caching allocator's peak over the timed runs (weights, gradients, optimizer
                         state, the arena, inputs: what torch.cuda.max_memory_allocated counts) */
  size_t arena_bytes; /* the planned activation arena of the program */
  double build_s;     /* recording + compiling the program */
  float loss;
} bm_result;

/* A message made safe to print inside a JSON string (quotes, backslashes
 * and control characters replaced), in place. */
static inline const char *bm_json_safe(char *s) {
  for (char *p = s; *p; p++)
    if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
      *p = '\'';
  return s;
}

static inline mb_device_allocator *bm_alloc(bm_model *bm) { return mb_cuda_backend_allocator(bm->be); }

static inline size_t bm_free_device_bytes(void) {
  size_t free_b = 0, total = 0;
  if (cudaMemGetInfo(&free_b, &total) != cudaSuccess)
    return 0;
  return free_b;
}

/* Time a program on one batch: train = 1 forward + backward + clip + AdamW
 * (dropout on for BERT, as HF's train mode), 0 forward + logits read back.
 * Warm-up: eager run, CUDA-graph capture, one replay; then at least
 * min_runs timed runs and at least min_s seconds (at most max_runs), each
 * timed alone between device synchronisations; the median. An allocation
 * that fails (the arena or the optimizer's state) gives status "oom". */
static inline void bm_time(bm_model *bm, const mb_batch *b, int train, int min_runs, int max_runs, double min_s,
                           bm_result *r) {
  memset(r, 0, sizeof *r);
  snprintf(r->status, sizeof r->status, "ok");
  mb_device_allocator *al = bm_alloc(bm);
  al->empty_cache(al);
  double t0 = bench_now();
  mb_graph *g;
  BCHECK(mb_graph_new(mb_model_params(bm->m), &g));
  mb_model_shape s = {b->mode == MB_BATCH_PACKED, b->rows, b->seq_len, train};
  BCHECK(mb_model_build_shape(bm->m, g, &s));
  mb_compile_opts o;
  memset(&o, 0, sizeof o);
  o.train = train;
  BCHECK(mb_graph_compile(g, &o));
  r->arena_bytes = mb_graph_plan_stats(g).arena_bytes;
  mb_exec *ex = NULL;
  int rc = mb_exec_new(g, bm->be, &ex);
  if (rc == MB_OK && train && !bm->opt) {
    mb_adamw_cfg ac = mb_adamw_defaults();
    ac.lr = 2e-5;
    rc = mb_optimizer_adamw(mb_model_params(bm->m), &ac, &bm->opt);
  }
  r->build_s = bench_now() - t0;
  if (rc != MB_OK) {
    snprintf(r->status, sizeof r->status, rc == MB_ENOMEM ? "oom" : "failed");
    snprintf(r->why, sizeof r->why, "%s (arena %.2f GiB planned, %.2f GiB free)", mb_error_message(),
             (double)r->arena_bytes / (1 << 30), (double)bm_free_device_bytes() / (1 << 30));
    mb_exec_free(ex);
    mb_graph_free(g);
    al->empty_cache(al);
    return;
  }
  BCHECK(mb_model_feed(bm->m, ex, b, (uint64_t[2]){1234, 0}));
  const mb_var drop_rng = mb_graph_find_input(g, "dropout_rng");
  float *logits = malloc(sizeof(float) * (size_t)b->rows * 64);
  double times[256];
  int n = 0;
  double t_all = 0;
  for (int run = -3; run < max_runs && run < 256; run++) {
    if (run == 0) {
      BCHECK(bm->be->sync(bm->be));
      al->reset_peak(al);
    }
    BCHECK(bm->be->sync(bm->be));
    double t = bench_now();
    BCHECK(bench_model_step(ex, bm->m, bm->opt, drop_rng, run, train, logits));
    BCHECK(bm->be->sync(bm->be));
    t = bench_now() - t;
    if (run >= 0) {
      times[n++] = t;
      t_all += t;
      if (n >= min_runs && t_all >= min_s)
        break;
    }
  }
  BCHECK(mb_exec_get(ex, mb_model_loss(g), &r->loss));
  r->runs = n;
  r->peak_bytes = al->stats(al).peak;
  double mn = times[0];
  for (int i = 1; i < n; i++)
    mn = times[i] < mn ? times[i] : mn;
  r->ms_min = 1e3 * mn;
  r->ms = 1e3 * bench_median(times, n);
  free(logits);
  mb_cuda_backend_forget(bm->be, ex);
  mb_exec_free(ex);
  mb_graph_free(g);
  al->empty_cache(al);
}

#endif
