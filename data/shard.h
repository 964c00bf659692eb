/* shard.h: tokenised data sets in HDF5 files ("shards"), written once by
 * `mambert prepare` and read by training and evaluation.
 *
 * One split is one file <split>.h5, or several <split>-00000-of-00004.h5 for
 * big sets; a reader takes the files in any order and puts them back in
 * shard order. Layout of one file (format "mambert-shard", version 1):
 *
 *   /input_ids    int32 [T]    every example's token ids, concatenated
 *                              (chunked 64 Ki ids, shuffle + deflate + fletcher32)
 *   /offsets      int64 [n+1]  example i is input_ids[offsets[i] .. offsets[i+1])
 *   /lengths      int32 [n]    offsets[i+1] - offsets[i]
 *   /labels       int8  [n]    0 negative, 1 positive
 *   /example_ids  int64 [n]    the data set's ids, in the source's order
 *   /text, /text_offsets       uint8 [bytes], int64 [n+1]: the UTF-8 texts
 *                              (only with --store-text; off by default)
 *   root attributes: format, format_version, dataset, split, tokenizer,
 *     vocab_sha256, vocab_size, add_special, max_length, pad_id, source,
 *     created_by, shard_index, shard_count, n_examples, n_tokens,
 *     label_counts[2], n_truncated, has_text.
 *
 * Every dataset is chunked with a fletcher32 checksum, and all file metadata,
 * chunk indexes included, is checksummed (the HDF5 1.10 file format; readable
 * by HDF5 >= 1.10 and h5py), so damage is found, not read as data: the
 * tests damage a shard at ~20,000 places by hand (211 in ctest) and every
 * read either fails naming the file or returns exactly the right data.
 * Writers write <path>.tmp-<pid> and rename it on a successful close, so a
 * crashed prepare never leaves a half file under the real name. Readers check
 * every attribute and every dataset's presence, rank, type and size, and the
 * contents (offsets monotone and consistent, labels 0/1, ids < vocab_size);
 * HDF5's own error printing is silenced and its innermost message is quoted
 * in ours, which names the file and the dataset.
 */
#ifndef MB_DATA_SHARD_H
#define MB_DATA_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MB_SHARD_FORMAT "mambert-shard"
#define MB_SHARD_FORMAT_VERSION 1

typedef struct {
  /* Identity: set by the writer's caller. */
  char dataset[16];       /* "imdb" | "nsmc" */
  char split[16];         /* "train" | "test" */
  char tokenizer[64];     /* mb_tokenizer_name(): "wordpiece-uncased", "bpe", ... */
  char vocab_sha256[65];  /* mb_tokenizer_vocab_sha256() */
  int32_t vocab_size;     /* every id is < vocab_size */
  int32_t add_special;    /* 1: each example is [CLS] ... [SEP] */
  int32_t max_length;     /* truncation applied at prepare time; 0 = none */
  int32_t pad_id;         /* the tokenizer's padding id (the loader pads with it) */
  char source[256];       /* the input it was made from */
  int32_t shard_index, shard_count;
  int32_t has_text;       /* /text present */
  /* Set by the writer at close (and summed over a set by the reader). */
  char created_by[64];
  int32_t format_version;
  int64_t n_examples, n_tokens, label_count[2], n_truncated;
} mb_shard_meta;

/* ---- writing ------------------------------------------------------------- */

typedef struct mb_shard_writer mb_shard_writer;

/* Create the temporary <path>.tmp-<host>-<pid>; meta's identity fields are
 * recorded at close. */
int mb_shard_writer_open(const char *path, const mb_shard_meta *meta, mb_shard_writer **out) MB_NODISCARD;
/* The temporary's name the writer of path in this process uses. */
void mb_shard_temp_path(const char *path, char *out, size_t cap);
/* Remove the temporaries in dir left by writers killed on this host (the
 * process is gone; another host's are left alone: a shared cache may be
 * written from several). Returns how many were removed. */
int mb_shard_remove_dead_temps(const char *dir);
/* Append one example (ids[0..n)); truncated: 1 if the tokenizer's output
 * was cut to max_length. text is stored only when meta.has_text. */
int mb_shard_writer_add(mb_shard_writer *w, int64_t example_id, int32_t label, const int32_t *ids, int32_t n,
                        int truncated, const char *text, size_t text_len) MB_NODISCARD;
/* Write the per-example datasets and attributes, close, rename to path.
 * Frees w whatever happens; on failure the temporary file is removed. */
int mb_shard_writer_close(mb_shard_writer *w) MB_NODISCARD;
/* Drop everything written so far (removes the temporary file); frees w. */
void mb_shard_writer_abort(mb_shard_writer *w);

/* ---- reading ------------------------------------------------------------- */

/* One split in memory (all its shard files, in shard order). */
typedef struct {
  mb_shard_meta meta; /* the set's: counts summed over files; shard_index = -1 */
  int64_t n;          /* examples */
  int64_t n_tokens;
  int32_t *tokens;    /* [n_tokens] */
  int64_t *offsets;   /* [n + 1] into tokens */
  int32_t *lengths;   /* [n] */
  int32_t *labels;    /* [n] 0/1 */
  int64_t *example_ids; /* [n] */
  char *text;           /* [text_offsets[n]] bytes, or NULL when !meta.has_text */
  int64_t *text_offsets; /* [n + 1], or NULL */
  int n_files;
  char **files;       /* in shard order */
} mb_shardset;

/* Read one or more shard files of one split (any order). */
int mb_shardset_open(const char *const *paths, int n_paths, mb_shardset **out) MB_NODISCARD;
/* spec: a shard file, a glob pattern ("out/train-*.h5"), or a directory
 * written by prepare (then split picks <split>.h5 or <split>-*-of-*.h5). */
int mb_shardset_open_spec(const char *spec, const char *split, mb_shardset **out) MB_NODISCARD;
void mb_shardset_free(mb_shardset *s);

/* Only the attributes of one file, checked. */
int mb_shard_read_meta(const char *path, mb_shard_meta *out) MB_NODISCARD;

/* MB_EINVAL unless the shards were made with this tokenizer (name and
 * vocabulary sha256 both equal): a model must not read ids of another
 * vocabulary. The message names both tokenizers and the files. */
int mb_shardset_check_tokenizer(const mb_shardset *s, const char *tokenizer_name, const char *vocab_sha256) MB_NODISCARD;

/* Example i's token ids. */
static inline const int32_t *mb_shardset_ids(const mb_shardset *s, int64_t i) { return s->tokens + s->offsets[i]; }

#ifdef __cplusplus
}
#endif
#endif
