/* test_tok.c: the whitespace-and-hash test tokenizer (test_tok.h). */
#include "tests/shards/test_tok.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

size_t test_tok_encode_alloc(const char *text, size_t len, int add_special, int32_t **out) {
  int32_t *ids = malloc((len + 3) * sizeof *ids);
  size_t n = 0;
  if (add_special)
    ids[n++] = 2;
  for (size_t i = 0; i < len;) {
    while (i < len && is_space(text[i]))
      i++;
    if (i == len)
      break;
    uint64_t h = 0xcbf29ce484222325ULL;
    while (i < len && !is_space(text[i])) {
      h ^= (unsigned char)text[i++];
      h *= 0x100000001b3ULL;
    }
    ids[n++] = 5 + (int32_t)(h % (TEST_TOK_VOCAB - 5));
  }
  if (add_special)
    ids[n++] = 3;
  *out = ids;
  return n;
}

typedef struct {
  int32_t *buf[64];
} tok_ctx;

static int encode(void *ctx, int thread, const char *text, size_t len, int add_special, const int32_t **ids,
                  size_t *n) {
  tok_ctx *c = ctx;
  if (thread < 0 || thread >= 64)
    return MB_ERR(MB_EINTERNAL, "thread %d out of range", thread);
  for (size_t i = 0; i + 6 <= len; i++)
    if (memcmp(text + i, "FAILME", 6) == 0)
      return MB_ERR(MB_EINVAL, "test tokenizer refuses FAILME at byte %zu", i);
  free(c->buf[thread]);
  *n = test_tok_encode_alloc(text, len, add_special, &c->buf[thread]);
  *ids = c->buf[thread];
  return MB_OK;
}

mb_encoder test_tok_encoder(void) {
  mb_encoder e;
  memset(&e, 0, sizeof e);
  e.encode = encode;
  e.ctx = calloc(1, sizeof(tok_ctx));
  e.max_threads = 64;
  e.name = "test-whitespace";
  e.vocab_sha256 = TEST_TOK_SHA;
  e.vocab_size = TEST_TOK_VOCAB;
  e.pad_id = 0;
  return e;
}

void test_tok_encoder_free(mb_encoder *e) {
  tok_ctx *c = e->ctx;
  if (c)
    for (int i = 0; i < 64; i++)
      free(c->buf[i]);
  free(c);
  e->ctx = NULL;
}
