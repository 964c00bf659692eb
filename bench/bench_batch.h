/* bench_batch.h: the model benchmarks' input, CPU or GPU: a padded batch
 * of random ids, every row full length (the same work as the padded PyTorch
 * peers), labels 0/1; BERT rows start with [CLS]. */
#ifndef MB_BENCH_BATCH_H
#define MB_BENCH_BATCH_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/loader.h"
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

static inline void bench_batch_free(bench_batch *t) {
  free(t->ids), free(t->mask), free(t->labels), free(t->lengths), free(t->ex);
  memset(t, 0, sizeof *t);
}

#endif
