/* loader.h: batches from a shard set, for one rank of N, deterministic and
 * resumable.
 *
 * Each epoch, in this order:
 *  1. Order. shuffle=1: a permutation of the examples from (seed, epoch)
 *     (Philox via data/shuffle.h: counter-based, identical on every platform, any epoch
 *     computable directly). shuffle=0: the shard order. limit > 0 keeps only
 *     the first `limit` examples of the shard order (before shuffling).
 *  2. Ranks. Rank r takes positions r, r+W, r+2W, ... of that order
 *     (W = world_size), so ranks are disjoint. Every rank gets the same
 *     number of positions: with MB_REMAINDER_DROP, floor(N/W) each (the last
 *     N mod W positions of this epoch's order are skipped: other examples each
 *     epoch when shuffling); with MB_REMAINDER_PAD, ceil(N/W) each, the
 *     missing ones being empty rows (label -1) that count for nothing (in
 *     packed batches: simply no sequence). When W divides N both see every
 *     example exactly once per epoch.
 *  3. Bucketing (window > 1). The rank's sequence is cut into windows of
 *     `window` positions (padded mode: rounded up to a multiple of
 *     batch_size); within a window examples are sorted by length and cut
 *     into batches, and with shuffle=1 the batches of a window are shuffled,
 *     so batch lengths are homogeneous but their order stays random (a
 *     sort-within-chunks sampler).
 *  4. Batches.
 *     Padded: [batch_size, L] with L = the batch's longest sequence rounded
 *       up to bucket_multiple (64), at least bucket_multiple and at most
 *       max_length: a handful of shapes per run. bucket_multiple = 0: every
 *       batch is [batch_size, max_length] (fixed shape, as the reference
 *       protocol pads). A last partial batch is kept with empty rows
 *       (drop_last = 0; trim_last: without them) or dropped.
 *     Packed: sequences laid end to end in a fixed budget of token_budget
 *       tokens and at most max_seqs sequences (first fit, longest first,
 *       within a window); the unused tail is padding. Shapes never change, so
 *       one compiled program serves every batch. Ranks can pack into
 *       different numbers of batches; the shorter ones get empty batches
 *       (n_seqs = 0) at the end of the epoch so every rank takes the same
 *       number of steps (collectives stay matched).
 * Sequences longer than max_length are truncated as Hugging Face does with
 * truncation=True: with special tokens (shard attribute add_special), the
 * first max_length-1 ids and the final [SEP]; otherwise the first max_length.
 * So a shard prepared without truncation serves every max_length (a loader
 * asking for more than the shards' own max_length logs a warning: those
 * sequences were cut at prepare time).
 *
 * Position. The loader is at (epoch, step). mb_loader_next returns the batch
 * there and moves on; after an epoch's last step it is at (epoch+1, 0). The
 * position (with a fingerprint of the configuration and the data) saves into
 * MB_LOADER_STATE_BYTES bytes; restoring it into a loader built the same way
 * gives exactly the batches an uninterrupted run would have given.
 */
#ifndef MB_DATA_LOADER_H
#define MB_DATA_LOADER_H

#include <stdint.h>

#include "data/shard.h"
#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { MB_BATCH_PADDED = 0, MB_BATCH_PACKED = 1 } mb_batch_mode;
typedef enum { MB_REMAINDER_DROP = 0, MB_REMAINDER_PAD = 1 } mb_remainder;

typedef struct {
  mb_batch_mode mode;
  int32_t batch_size;     /* padded: rows per batch */
  int32_t max_length;     /* longest sequence given to the model (truncating); 0 = longest in the set */
  int64_t token_budget;   /* packed: tokens per batch T (>= max_length) */
  int32_t max_seqs;       /* packed: most sequences in a batch; 0 = T / 8 */
  int32_t shuffle;        /* 1: new order every epoch; 0: shard order */
  uint64_t seed;
  int32_t rank, world_size;
  mb_remainder remainder; /* N mod world_size: drop or pad (see above) */
  int32_t bucket_multiple; /* padded: L rounded up to this; 0 = fixed L = max_length */
  int32_t window;          /* bucketing window in examples; <= 1: no sorting */
  int32_t drop_last;       /* padded only: drop a last partial batch instead of padding it */
  int32_t trim_last;       /* padded only: a partial batch has only its rows (the reference's in-order slices) */
  int64_t limit;           /* only the first `limit` examples (0 = all) */
  int32_t pad_id;          /* id of padding tokens; -1 = the shards' pad_id */
} mb_loader_config;

/* Training: shuffled, bucketed by 64 within windows of 64 batches, drop the
 * remainder, keep a partial last batch; padded mode. Set mode, token_budget,
 * rank and world_size as needed. */
mb_loader_config mb_loader_train_config(int32_t batch_size, int32_t max_length, uint64_t seed);
/* The reference evaluation protocol (SEED-STUDY.md section 4): the first
 * `limit` examples (0 = all) in order, no shuffling, no bucketing, every batch
 * [batch_size, max_length] but a last partial one, which has only its rows
 * as the reference's in-order slices do (trim_last), nothing dropped
 * (MB_REMAINDER_PAD across ranks). */
mb_loader_config mb_loader_eval_config(int32_t batch_size, int32_t max_length, int64_t limit);

/* One batch. Buffers belong to the loader and stay valid until the next
 * mb_loader_next / seek / restore / free. Padding rows and unused slots have
 * label -1, length 0, example id and index -1, and contribute nothing. */
typedef struct {
  mb_batch_mode mode;
  int64_t epoch, step;      /* the position this batch was taken at */
  int32_t rows;             /* padded: batch_size; packed: max_seqs (static) */
  int32_t seq_len;          /* padded: L of this batch (bucketed); packed: token_budget (static) */
  int32_t n_seqs;           /* real sequences (padded: the first n_seqs rows are real) */
  int64_t n_tokens;         /* real tokens (padded: sum of lengths; packed: cu_seqlens[n_seqs]) */
  int32_t *input_ids;       /* padded [rows * seq_len] row-major; packed [seq_len]; pad_id where padding */
  int32_t *attention_mask;  /* same shape as input_ids: 1 on real tokens, 0 on padding */
  int32_t *position_ids;    /* packed [seq_len]: 0,1,.. restarting at each sequence, 0 on padding;
                               NULL for padded batches (positions are 0..L-1 in every row) */
  int32_t *cu_seqlens;      /* packed [rows + 1]: sequence i is tokens [cu[i], cu[i+1]); entries past
                               n_seqs equal n_tokens; tokens n_tokens..seq_len-1 belong to no sequence.
                               NULL for padded batches */
  int32_t *labels;          /* [rows]: 0/1, -1 on padding */
  int32_t *lengths;         /* [rows]: tokens after truncation (may be 0: an empty document with BPE) */
  int64_t *example_ids;     /* [rows]: the data set's ids, -1 on padding */
  int64_t *indices;         /* [rows]: index in the shard set, -1 on padding */
} mb_batch;

typedef struct mb_loader mb_loader;

/* The shard set must outlive the loader. Errors: a bad configuration
 * (MB_EINVAL naming the field), or an empty rank (no batches). */
int mb_loader_create(const mb_shardset *set, const mb_loader_config *cfg, mb_loader **out) MB_NODISCARD;
void mb_loader_free(mb_loader *l);

/* The batch at the current position; then the position advances. */
int mb_loader_next(mb_loader *l, const mb_batch **out) MB_NODISCARD;

typedef struct {
  int64_t epoch, step;
} mb_loader_position;
mb_loader_position mb_loader_tell(const mb_loader *l);
/* Go to (epoch, step); step must be < the epoch's step count. */
int mb_loader_seek(mb_loader *l, mb_loader_position pos) MB_NODISCARD;
/* Steps in the given epoch (the same on every rank). Constant for padded
 * batches; packed epochs can differ by a step or two. */
int mb_loader_steps_in_epoch(mb_loader *l, int64_t epoch, int64_t *steps) MB_NODISCARD;
/* The configuration in effect (max_length, pad_id, max_seqs resolved). */
const mb_loader_config *mb_loader_config_of(const mb_loader *l);

/* Save / restore the position. The blob holds magic, version, epoch, step
 * and a fingerprint of the configuration (seed, ranks, batching, data
 * counts); restoring into a loader with another fingerprint is MB_EINVAL. */
#define MB_LOADER_STATE_BYTES 64
void mb_loader_save_state(const mb_loader *l, uint8_t out[MB_LOADER_STATE_BYTES]);
int mb_loader_restore_state(mb_loader *l, const uint8_t in[MB_LOADER_STATE_BYTES]) MB_NODISCARD;

/* Resuming on another number of ranks or with another batch size per rank
 * (the same global batch). A position is also a point of the epoch's global
 * order: when batches take that order in sequence (padded, window <= 1),
 * step s of every rank together has taken its positions
 * [0, s x batch_size x world_size). Blobs of version 2 carry the batch size
 * and a fingerprint of the order (data, limit, seed, shuffling, max_length,
 * batching) without the rank count and batch size. */
typedef struct {
  int64_t epoch;
  int64_t consumed;       /* positions of the epoch's order taken by all ranks together */
  int32_t world_size;     /* of the loader that saved it */
  int32_t batch_size;
} mb_loader_global_position;
/* The global position of a state saved by any rank of any world size.
 * MB_EINVAL when the order differs from this loader's (seed, data, ...);
 * MB_EUNSUPPORTED for a version-1 blob, or a position inside an epoch whose
 * batches are packed or sorted within windows (only an epoch's start maps). */
int mb_loader_state_global_position(const mb_loader *l, const uint8_t in[MB_LOADER_STATE_BYTES],
                                    mb_loader_global_position *out) MB_NODISCARD;
/* Go to that global position: MB_EUNSUPPORTED, saying why, when it is not
 * the start of one of this loader's steps (consumed not a multiple of
 * world_size x batch_size, or batches that do not follow the order). */
int mb_loader_seek_global(mb_loader *l, mb_loader_global_position g) MB_NODISCARD;

/* Round len up to a multiple of m (m > 0), at least m, at most cap: the
 * padded length of a bucketed batch. */
int32_t mb_bucket_length(int32_t len, int32_t m, int32_t cap);

#ifdef __cplusplus
}
#endif
#endif
