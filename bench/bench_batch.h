/* bench_batch.h: the model benchmarks' input, CPU or GPU: a padded batch
 * of random ids, every row full length (the same work as the padded PyTorch
 * peers), labels 0/1; BERT rows start with [CLS]. And the one timed unit
 * both benchmarks run on it (bench_model_step). */
#ifndef MB_BENCH_BATCH_H
#define MB_BENCH_BATCH_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "autograd/optim.h"
#include "data/loader.h"
#include "models/model.h"
#include "runtime/philox.h"

typedef struct {
  mb_batch b;
  int32_t *ids, *mask, *labels, *lengths;
  int64_t *ex;
} bench_batch;

static inline void bench_batch_random(bench_batch *t, int64_t vocab, int bert, int B, int L, uint64_t seed) {
  memset(t, 0, sizeof *t);
  size_t n = (size_t)B * L;
  t->ids = malloc(n * sizeof *t->ids);
  t->mask = malloc(n * sizeof *t->mask);
  t->labels = malloc((size_t)B * sizeof *t->labels);
  t->lengths = malloc((size_t)B * sizeof *t->lengths);
  t->ex = malloc((size_t)B * sizeof *t->ex);
  uint32_t *w = malloc(n * sizeof *w);
  if (!t->ids || !t->mask || !t->labels || !t->lengths || !t->ex || !w) {
    fprintf(stderr, "bench: out of host memory for a [%d, %d] batch\n", B, L);
    exit(1);
  }
  mb_philox_fill_u32(seed, 0, w, n);
  const uint32_t V = (uint32_t)vocab;
  for (size_t i = 0; i < n; i++) {
    t->ids[i] = 1000 + (int32_t)(w[i] % (V - 1000)); /* ordinary tokens, no specials */
    t->mask[i] = 1;
  }
  for (int b = 0; b < B; b++) {
    if (bert)
      t->ids[(size_t)b * L] = 101; /* [CLS] */
    t->labels[b] = (int32_t)(w[b] & 1);
    t->lengths[b] = L;
    t->ex[b] = b;
  }
  free(w);
  t->b.mode = MB_BATCH_PADDED;
  t->b.rows = B;
  t->b.seq_len = L;
  t->b.n_seqs = B;
  t->b.n_tokens = (int64_t)n;
  t->b.input_ids = t->ids;
  t->b.attention_mask = t->mask;
  t->b.labels = t->labels;
  t->b.lengths = t->lengths;
  t->b.example_ids = t->ex;
  t->b.indices = t->ex;
}

/* One timed unit: train, a step as the trainer takes it (this run's
 * dropout masks, forward, backward, clip_grad_norm 1.0, which syncs with
 * the host as torch's clip_grad_norm_ does, AdamW at lr 2e-5); else an
 * evaluation pass whose predictions come back, as in the study. run counts
 * from -3 (the warm-up runs). */
static inline int bench_model_step(mb_exec *ex, mb_model *m, mb_optimizer *opt, mb_var drop_rng, int run, int train,
                                   float *logits) {
  if (!train) {
    MB_TRY(mb_exec_forward(ex));
    return mb_model_read_logits(ex, logits);
  }
  uint64_t rng[2] = {1234, (uint64_t)(run + 3) << 32};
  if (mb_var_ok(drop_rng))
    MB_TRY(mb_exec_set_input(ex, drop_rng, rng));
  MB_TRY(mb_exec_forward(ex));
  MB_TRY(mb_exec_backward(ex));
  double norm, scale;
  MB_TRY(mb_clip_grad_norm(mb_model_params(m), 1.0, &norm, &scale));
  return mb_optimizer_step(opt, 2e-5, scale);
}

static inline void bench_batch_free(bench_batch *t) {
  free(t->ids), free(t->mask), free(t->labels), free(t->lengths), free(t->ex);
  memset(t, 0, sizeof *t);
}

#endif
