/* prepare.h: records -> tokenised HDF5 shards, in parallel, order preserved.
 *
 * The engine behind `mambert prepare`. It sees the tokenizer only through
 * mb_encoder (a function pointer and identity strings), so it can be tested
 * with any encoder; experiments/cmd_prepare.c plugs in data/tokenizer.h.
 * Texts are encoded without a length limit and then truncated here with
 * Hugging Face's rule (special tokens kept: first max_length-1 ids + the
 * final [SEP]; without specials: the first max_length), so the truncation
 * count is exact and the full length distribution can be reported.
 */
#ifndef MB_DATA_PREPARE_H
#define MB_DATA_PREPARE_H

#include <stdint.h>

#include "data/records.h"
#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  /* Encode text (no truncation) into ids, with [CLS]/[SEP] when add_special.
   * Called concurrently from threads 0..max_threads-1, each with its own
   * `thread` index; *ids stays valid until that thread's next call. */
  int (*encode)(void *ctx, int thread, const char *text, size_t len, int add_special, const int32_t **ids,
                size_t *n);
  void *ctx;
  int max_threads;
  const char *name;         /* recorded as the shards' tokenizer */
  const char *vocab_sha256; /* hex */
  int32_t vocab_size;
  int32_t pad_id;
  /* The unknown token, counted in the stats: has_unk 0 for tokenizers that
   * cannot produce one (byte-level BPE) or when not known. */
  int32_t has_unk, unk_id;
} mb_encoder;

typedef struct {
  const char *out_dir;  /* created if missing */
  int32_t max_length;   /* truncate to this many ids; 0 = keep everything */
  int32_t add_special;  /* [CLS] ... [SEP] (WordPiece for BERT); 0 for the Mamba BPE */
  int32_t shards;       /* files to write (>= 1) */
  int32_t store_text;   /* also store the texts */
  int32_t threads;      /* 0 = OpenMP's default */
  /* Called from one thread every ~100 ms and once at the end. */
  void (*progress)(void *ctx, int64_t done, int64_t total, int64_t tokens, double seconds);
  void *progress_ctx;
} mb_prepare_options;

typedef struct {
  int64_t examples, tokens, truncated, label_count[2];
  int64_t full_tokens;            /* before truncation */
  int32_t len_max, len_p50, len_p90, len_p99; /* full lengths, ids */
  int64_t longer_than[4];         /* full length > 128, 256, 512, 1024 */
  int64_t unk_tokens, unk_examples; /* kept ids that are the unknown token, examples with one (has_unk) */
  double seconds_tokenize, seconds_write, seconds;
  int threads;
  int n_files;
  char files[8][512]; /* the first 8 files written */
} mb_prepare_stats;

/* Write recs as shards into opt->out_dir: <split>.h5 (one shard) or
 * <split>-00000-of-0000N.h5. Shard files of the same split left from an
 * earlier run under the other naming are removed once the new ones are
 * complete. Encoder errors name the source line (or id) of the example. */
int mb_prepare_records(const mb_records *recs, const mb_encoder *enc, const mb_prepare_options *opt,
                       mb_prepare_stats *stats) MB_NODISCARD;

/* HF truncation of a full encoding to max_length (> 0): returns the new
 * length; ids is edited in place (the last id moved into place when
 * add_special). */
size_t mb_truncate_ids(int32_t *ids, size_t n, int32_t max_length, int add_special);

/* The file name of shard k of `count` for a split, into buf. */
void mb_shard_file_name(const char *split, int k, int count, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
