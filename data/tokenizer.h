/* tokenizer.h: the tokenizer interface the rest of mambert sees.
 *
 * Two implementations sit behind it, each with exact Hugging Face parity:
 * BERT WordPiece from a vocab.txt (data/wordpiece.c) and byte-level BPE from
 * a tokenizer.json (data/bpe.c). A loaded tokenizer is immutable, so
 * mb_tokenizer_encode may be called from many threads at once. Each thread
 * that encodes keeps a little scratch (about 2 MiB with the BPE word cache),
 * freed when the thread exits. Where Hugging Face's Unicode tables differ
 * from utf8proc/PCRE2, data/unicode_hf_tables.h mirrors Hugging Face.
 */
#ifndef MB_DATA_TOKENIZER_H
#define MB_DATA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mb_tokenizer mb_tokenizer;

typedef enum { MB_TOKENIZER_WORDPIECE = 0, MB_TOKENIZER_BPE = 1 } mb_tokenizer_kind;

typedef struct {
  /* WordPiece only. lowercase: -1 = infer from the vocabulary's name/content
   * (bert-base-uncased: lower-case and strip accents; *-cased: neither). */
  int lowercase;
  int strip_accents; /* -1 = follow lowercase, as BertTokenizer does */
  int tokenize_chinese_chars; /* 1 as in HF (default) */
} mb_tokenizer_options;

/* Options meaning "as Hugging Face would load this file". */
mb_tokenizer_options mb_tokenizer_default_options(void);

/* Load a vocab.txt (WordPiece) or a tokenizer.json (byte-level BPE); the
 * kind is chosen from the file name/content. Errors name the file and line. */
int mb_tokenizer_load(const char *path, const mb_tokenizer_options *opt, mb_tokenizer **out) MB_NODISCARD;
void mb_tokenizer_free(mb_tokenizer *t);

mb_tokenizer_kind mb_tokenizer_kind_of(const mb_tokenizer *t);
/* A short name recorded in shard attributes and checkpoints, e.g.
 * "wordpiece-uncased" / "wordpiece-cased" / "bpe". */
const char *mb_tokenizer_name(const mb_tokenizer *t);
/* sha256 (hex) of the vocabulary file's bytes: ties shards to a tokenizer. */
const char *mb_tokenizer_vocab_sha256(const mb_tokenizer *t);
int32_t mb_tokenizer_vocab_size(const mb_tokenizer *t);

/* Special ids; -1 where the tokenizer has none (BPE has no [CLS]). */
typedef struct {
  int32_t pad, unk, cls, sep, mask, bos, eos;
} mb_special_ids;
mb_special_ids mb_tokenizer_special_ids(const mb_tokenizer *t);

/* A growable id buffer owned by the caller; reuse it across calls. */
typedef struct {
  int32_t *ids;
  size_t n, cap;
} mb_ids;
void mb_ids_free(mb_ids *v);

/* Encode UTF-8 text (len bytes) into out (replacing its contents).
 * add_special: [CLS] ... [SEP] for WordPiece, nothing for BPE (the Mamba
 * classifier uses none). max_length > 0 truncates to that many ids in total,
 * special tokens included, exactly as HF truncation=True does; 0 = no limit.
 * Invalid UTF-8 is MB_EINVAL naming the byte offset. */
int mb_tokenizer_encode(const mb_tokenizer *t, const char *text, size_t len, int add_special, int max_length,
                        mb_ids *out) MB_NODISCARD;

/* Decode ids back to text as HF's decode(skip_special_tokens=True) would;
 * *out is malloc'd, free() it. */
int mb_tokenizer_decode(const mb_tokenizer *t, const int32_t *ids, size_t n, char **out) MB_NODISCARD;

#ifdef __cplusplus
}
#endif
#endif
