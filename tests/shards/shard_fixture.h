/* shard_fixture.h: synthetic examples and shard files for the shard tests. */
#ifndef MB_TESTS_SHARD_FIXTURE_H
#define MB_TESTS_SHARD_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/shard.h"
#include "data/shuffle.h"

typedef struct {
  int64_t n;
  int32_t **ids;
  int32_t *len, *label, *truncated;
  int64_t *id;
  char **text;
} fx_examples;

/* n examples, lengths 0..maxlen (a few longer), ids < vocab, from seed. */
static inline fx_examples fx_make(int64_t n, int32_t maxlen, int32_t vocab, uint64_t seed) {
  fx_examples e;
  e.n = n;
  e.ids = calloc((size_t)n + 1, sizeof *e.ids);
  e.len = calloc((size_t)n + 1, sizeof *e.len);
  e.label = calloc((size_t)n + 1, sizeof *e.label);
  e.truncated = calloc((size_t)n + 1, sizeof *e.truncated);
  e.id = calloc((size_t)n + 1, sizeof *e.id);
  e.text = calloc((size_t)n + 1, sizeof *e.text);
  uint64_t key = mb_shuffle_key(seed, 1, 2, 3), c = 0;
  for (int64_t i = 0; i < n; i++) {
    e.len[i] = (int32_t)mb_shuffle_below(key, &c, (uint64_t)maxlen + 1);
    e.ids[i] = malloc(((size_t)e.len[i] + 1) * sizeof(int32_t));
    for (int32_t t = 0; t < e.len[i]; t++)
      e.ids[i][t] = (int32_t)mb_shuffle_below(key, &c, (uint64_t)vocab);
    e.label[i] = (int32_t)mb_shuffle_below(key, &c, 2);
    e.truncated[i] = e.len[i] == maxlen;
    e.id[i] = 1000000 + 7 * i;
    e.text[i] = malloc(64);
    snprintf(e.text[i], 64, "review %lld \xea\xb5\xb3 %d", (long long)i, e.len[i]);
  }
  return e;
}

static inline void fx_free(fx_examples *e) {
  for (int64_t i = 0; i < e->n; i++) {
    free(e->ids[i]);
    free(e->text[i]);
  }
  free(e->ids);
  free(e->len);
  free(e->label);
  free(e->truncated);
  free(e->id);
  free(e->text);
}

static inline mb_shard_meta fx_meta(const char *split, int32_t vocab, int32_t max_length) {
  mb_shard_meta m;
  memset(&m, 0, sizeof m);
  snprintf(m.dataset, sizeof m.dataset, "imdb");
  snprintf(m.split, sizeof m.split, "%s", split);
  snprintf(m.tokenizer, sizeof m.tokenizer, "wordpiece-uncased");
  memset(m.vocab_sha256, 'a', 64);
  m.vocab_sha256[64] = 0;
  m.vocab_size = vocab;
  m.add_special = 1;
  m.max_length = max_length;
  m.pad_id = 0;
  snprintf(m.source, sizeof m.source, "synthetic");
  m.shard_count = 1;
  return m;
}

/* Write examples [a, b) of e as one shard file; returns MB_OK or the error. */
static inline int fx_write(const char *path, const mb_shard_meta *meta, const fx_examples *e, int64_t a, int64_t b) {
  mb_shard_writer *w;
  int rc = mb_shard_writer_open(path, meta, &w);
  if (rc != MB_OK)
    return rc;
  for (int64_t i = a; i < b; i++) {
    rc = mb_shard_writer_add(w, e->id[i], e->label[i], e->ids[i], e->len[i], e->truncated[i], e->text[i],
                             strlen(e->text[i]));
    if (rc != MB_OK) {
      mb_shard_writer_abort(w);
      return rc;
    }
  }
  return mb_shard_writer_close(w);
}

#endif
