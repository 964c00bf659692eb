/* test_tok.h: a tiny deterministic tokenizer for the shard and loader tests
 * only (never in data/): split on ASCII whitespace, hash each word (FNV-1a)
 * into ids 5..TEST_TOK_VOCAB-1; [PAD]=0, [CLS]=2, [SEP]=3. A text holding
 * the word "FAILME" makes encode fail, to test error reporting. */
#ifndef MB_TESTS_TEST_TOK_H
#define MB_TESTS_TEST_TOK_H

#include <stddef.h>
#include <stdint.h>

#include "data/prepare.h"

#define TEST_TOK_VOCAB 1000
#define TEST_TOK_SHA "0000000000000000000000000000000000000000000000000000000000001234"

/* Encode into a malloc'd array (caller frees); returns the count. */
size_t test_tok_encode_alloc(const char *text, size_t len, int add_special, int32_t **out);
/* An mb_encoder over it (per-thread buffers); free with test_tok_encoder_free. */
mb_encoder test_tok_encoder(void);
void test_tok_encoder_free(mb_encoder *e);

#endif
