/* datasets.h: the data a run reads: shard sets named in a config, raw
 * inputs prepared on the fly into a cache directory, and the tokenizer
 * check (shards made with another vocabulary are refused).
 *
 * A data spec is either shards (a .h5 file, a glob, or a directory that
 * holds .h5 files, as `mambert prepare` writes) or a raw input (an IMDB
 * .tsv[.gz] or aclImdb tree, an NSMC .txt[.gz]). Raw inputs are imported,
 * tokenized and written as shards into
 *   <cache_dir>/<dataset>-<split>-<tokenizer>-<sha256(input, tokenizer)[:12]>/
 * once; later runs reuse them (the key covers the input's path, size and
 * modification time and the vocabulary's sha256).
 */
#ifndef MB_EXPERIMENTS_DATASETS_H
#define MB_EXPERIMENTS_DATASETS_H

#include "data/prepare.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An mb_encoder over a tokenizer, `threads` parallel callers (prepare). */
typedef struct mb_tok_encoder mb_tok_encoder;
int mb_tok_encoder_new(const mb_tokenizer *tok, int threads, mb_tok_encoder **out) MB_NODISCARD;
const mb_encoder *mb_tok_encoder_get(const mb_tok_encoder *e);
void mb_tok_encoder_free(mb_tok_encoder *e);

/* Warn (once per call, naming the split and the tokenizer) when prepared data
 * has many [UNK] tokens: >= 0.5% of the tokens or in >= 10% of the reviews. */
void mb_warn_unknown_tokens(const mb_prepare_stats *st, const char *tokenizer, const char *split);

/* 1 if spec names shards, 0 if a raw input. */
int mb_data_spec_is_shards(const char *spec);

/* Open split `split` ("train"/"test") from spec. Raw inputs are prepared
 * with tok (add_special: [CLS]...[SEP]) into cache_dir when may_prepare,
 * else MB_ENOTFOUND if not yet prepared. dataset: "imdb", "nsmc" or "auto"
 * (from the file name). The shards' tokenizer must be tok's. */
int mb_data_open(const char *spec, const char *split, const char *dataset, const mb_tokenizer *tok, int add_special,
                 const char *cache_dir, int may_prepare, mb_shardset **out) MB_NODISCARD;

#ifdef __cplusplus
}
#endif
#endif
