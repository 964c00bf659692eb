/* model_test_util.h: helpers shared by the model tests: status assertions
 * that print the error, the parity fixtures (tests/fixtures/models, made by
 * tools/make_model_fixtures.py), padded/packed batches built from them, and
 * running a model program on one batch. */
#ifndef MB_TESTS_MODEL_TEST_UTIL_H
#define MB_TESTS_MODEL_TEST_UTIL_H

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cmocka needs the headers above first */
#include <cmocka.h>

#include "kernels/cpu/cpu.h"
#include "models/model.h"
#include "runtime/safetensors.h"

#define ASSERT_OK(expr)                                                                                                \
  do {                                                                                                                 \
    int rc_ = (expr);                                                                                                  \
    if (rc_ != MB_OK)                                                                                                  \
      fail_msg("%s -> %d (%s): %s", #expr, rc_, mb_status_name(rc_), mb_error_message());                              \
  } while (0)

/* Expect a failure whose message contains `needle`. */
#define ASSERT_FAILS_WITH(expr, needle)                                                                                \
  do {                                                                                                                 \
    int rc_ = (expr);                                                                                                  \
    if (rc_ == MB_OK)                                                                                                  \
      fail_msg("%s succeeded; expected an error containing '%s'", #expr, (needle));                                    \
    if (!strstr(mb_error_message(), (needle)))                                                                         \
      fail_msg("%s: error '%s' lacks '%s'", #expr, mb_error_message(), (needle));                                      \
    printf("  ok: %s\n", mb_error_message());                                                                          \
  } while (0)

/* The fixture's inputs as an mb_batch. */
typedef struct {
  mb_batch b;
  int32_t *ids, *mask, *labels, *lengths, *pos, *cu;
  int64_t *ex;
} tm_batch;

static inline void tm_batch_free(tm_batch *t) {
  free(t->ids);
  free(t->mask);
  free(t->labels);
  free(t->lengths);
  free(t->pos);
  free(t->cu);
  free(t->ex);
  memset(t, 0, sizeof *t);
}

/* A padded batch [B, L] from row-major ids and mask (lengths from the mask). */
static inline void tm_padded(tm_batch *t, const int32_t *ids, const int32_t *mask, const int32_t *labels, int B,
                             int L) {
  memset(t, 0, sizeof *t);
  t->ids = malloc(sizeof(int32_t) * B * L);
  t->mask = malloc(sizeof(int32_t) * B * L);
  t->labels = malloc(sizeof(int32_t) * B);
  t->lengths = malloc(sizeof(int32_t) * B);
  t->ex = malloc(sizeof(int64_t) * B);
  memcpy(t->ids, ids, sizeof(int32_t) * B * L);
  memcpy(t->mask, mask, sizeof(int32_t) * B * L);
  memcpy(t->labels, labels, sizeof(int32_t) * B);
  int64_t tok = 0;
  for (int b = 0; b < B; b++) {
    int n = 0;
    for (int l = 0; l < L; l++)
      n += mask[b * L + l] != 0;
    t->lengths[b] = n;
    tok += n;
    t->ex[b] = b;
  }
  t->b.mode = MB_BATCH_PADDED;
  t->b.rows = B;
  t->b.seq_len = L;
  t->b.n_seqs = B;
  t->b.n_tokens = tok;
  t->b.input_ids = t->ids;
  t->b.attention_mask = t->mask;
  t->b.labels = t->labels;
  t->b.lengths = t->lengths;
  t->b.example_ids = t->ex;
  t->b.indices = t->ex;
}

/* The same sequences packed into T tokens and S >= B slots (the tail padded
 * with pad_id, empty slots labelled -1). */
static inline void tm_packed(tm_batch *t, const tm_batch *p, int T, int S, int32_t pad_id) {
  int B = p->b.rows, L = p->b.seq_len;
  memset(t, 0, sizeof *t);
  t->ids = malloc(sizeof(int32_t) * T);
  t->mask = calloc((size_t)T, sizeof(int32_t));
  t->pos = calloc((size_t)T, sizeof(int32_t));
  t->cu = malloc(sizeof(int32_t) * (S + 1));
  t->labels = malloc(sizeof(int32_t) * S);
  t->lengths = calloc((size_t)S, sizeof(int32_t));
  t->ex = malloc(sizeof(int64_t) * S);
  int at = 0;
  t->cu[0] = 0;
  for (int s = 0; s < S; s++) {
    if (s < B) {
      int n = p->lengths[s];
      for (int i = 0; i < n; i++) {
        t->ids[at + i] = p->ids[s * L + i];
        t->mask[at + i] = 1;
        t->pos[at + i] = i;
      }
      at += n;
      t->labels[s] = p->labels[s];
      t->lengths[s] = n;
      t->ex[s] = s;
    } else {
      t->labels[s] = -1;
      t->ex[s] = -1;
    }
    t->cu[s + 1] = at;
  }
  for (int i = at; i < T; i++)
    t->ids[i] = pad_id;
  t->b.mode = MB_BATCH_PACKED;
  t->b.rows = S;
  t->b.seq_len = T;
  t->b.n_seqs = B;
  t->b.n_tokens = at;
  t->b.input_ids = t->ids;
  t->b.attention_mask = t->mask;
  t->b.position_ids = t->pos;
  t->b.cu_seqlens = t->cu;
  t->b.labels = t->labels;
  t->b.lengths = t->lengths;
  t->b.example_ids = t->ex;
  t->b.indices = t->ex;
}

/* Build, compile (with backward when grads), feed, run. *ex_out and *g_out
 * are the caller's to free. */
static inline void tm_run(mb_model *m, const mb_batch *b, int grads, int recompute, mb_graph **g_out,
                          mb_exec **ex_out) {
  mb_graph *g;
  ASSERT_OK(mb_graph_new(mb_model_params(m), &g));
  mb_model_shape s = {b->mode == MB_BATCH_PACKED, b->rows, b->seq_len, 0};
  ASSERT_OK(mb_model_build_shape(m, g, &s));
  mb_compile_opts o = {.train = grads, .recompute = recompute};
  ASSERT_OK(mb_graph_compile(g, &o));
  mb_exec *ex;
  ASSERT_OK(mb_exec_new(g, mb_cpu_backend(), &ex));
  ASSERT_OK(mb_model_feed(m, ex, b, NULL));
  ASSERT_OK(mb_exec_forward(ex));
  if (grads)
    ASSERT_OK(mb_exec_backward(ex));
  *g_out = g;
  *ex_out = ex;
}

/* max |a - b| / max |b|: the error relative to the tensor's scale. */
static inline double tm_rel(const float *a, const float *b, int64_t n) {
  double d = 0, s = 0;
  for (int64_t i = 0; i < n; i++) {
    double e = fabs((double)a[i] - (double)b[i]);
    if (e > d || e != e)
      d = e;
    if (fabs((double)b[i]) > s)
      s = fabs((double)b[i]);
  }
  return d / (s > 0 ? s : 1e-30);
}

/* Copy all gradients out of the store (malloc'ed, in store order). */
static inline float *tm_grads(mb_model *m, int64_t *total) {
  mb_params *p = mb_model_params(m);
  int64_t n = mb_params_total(p);
  float *g = malloc(sizeof(float) * (size_t)n);
  memcpy(g, mb_params_grad(p), sizeof(float) * (size_t)n);
  *total = n;
  return g;
}

#endif
