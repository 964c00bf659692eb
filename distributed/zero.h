/* zero.h: ZeRO stage 1 — optimizer state sharded across ranks.
 *
 * The flat parameter and gradient buffers (numel elements) are viewed as
 * `world` equal shards of `shard` elements (numel rounded up to world x align;
 * allocate both buffers with `padded` elements and keep the padding zero).
 * Rank r owns [r*shard, (r+1)*shard): it keeps the optimizer state (AdamW's
 * exp_avg and exp_avg_sq, fp32) only for that range. One step:
 *   1. reduce-scatter (average) the gradients: rank r gets its shard;
 *   2. the update callback (from the autograd's optimizer) updates rank r's
 *      shard of the parameters from that gradient shard and its state;
 *   3. all-gather the parameters, so every rank has them all again.
 * Optimizer memory per rank drops from 2 x numel to 2 x shard floats; the
 * traffic equals one all-reduce (reduce-scatter + all-gather).
 *
 * Sharded checkpoints (the trainer writes them; this file does the maths):
 *   <ckpt>/optim/zero-<rank>-of-<world>.safetensors, rank and world as five
 *   digits, holding tensors "exp_avg" and "exp_avg_sq" of the rank's valid
 *   elements (mb_zero_shard_valid: padding is not stored), and metadata
 *   "zero.numel", "zero.world", "zero.rank", "zero.shard", "zero.align",
 *   "step". The parameters themselves are saved once, whole, by rank 0.
 * Resuming on M ranks from a checkpoint of N: each new rank asks
 * mb_zero_reshard_plan which slices of which old shards make up its new
 * shard, and reads just those (mb_zero_reshard_read with a reader callback),
 * so no rank ever needs the whole state in memory.
 */
#ifndef MB_DISTRIBUTED_ZERO_H
#define MB_DISTRIBUTED_ZERO_H

#include <stddef.h>

#include "distributed/buckets.h"
#include "distributed/comm.h"
#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  size_t numel;  /* real elements of the flat buffer */
  int world;     /* ranks sharing it */
  size_t align;  /* shard is a multiple of this many elements */
  size_t shard;  /* elements per rank */
  size_t padded; /* shard * world >= numel */
} mb_zero_layout;

/* align 0 means 1. Errors on world < 1 or numel 0. */
int mb_zero_layout_make(size_t numel, int world, size_t align, mb_zero_layout *out) MB_NODISCARD;
size_t mb_zero_shard_offset(const mb_zero_layout *L, int rank);
/* Real (non-padding) elements in rank's shard: shard, fewer for the last
 * ranks, possibly 0 when numel is small. */
size_t mb_zero_shard_valid(const mb_zero_layout *L, int rank);

/* A parameter's part inside one shard (weight-decay masks and the like are
 * per parameter, so the update needs to know whose elements it holds). */
typedef struct {
  int param;           /* index into the parameter list */
  size_t param_offset; /* first element of the parameter in this piece */
  size_t shard_offset; /* where it sits in the shard */
  size_t count;
} mb_zero_piece;

/* Pieces of rank's shard, in shard order. out may be NULL to count; MB_EINVAL
 * if cap is too small (*n says how many are needed). */
int mb_zero_shard_pieces(const mb_zero_layout *L, int rank, const mb_grad_param *params, int nparams,
                         mb_zero_piece *out, int cap, int *n) MB_NODISCARD;

/* Update one shard in place: params[0..count) from grads[0..count), which
 * are elements [global_offset, global_offset + count) of the flat buffers.
 * Buffers are of the communicator's kind (device memory for NCCL). */
typedef int (*mb_zero_update_fn)(void *ctx, float *params, const float *grads, size_t global_offset,
                                 size_t count);

/* One ZeRO-1 step (steps 1-3 above). params and grads hold L->padded f32
 * elements; grad_shard holds L->shard (it may be grads + rank*shard, in
 * place). Gradients are averaged over ranks. */
int mb_zero_step(mb_comm *c, const mb_zero_layout *L, float *params, float *grads, float *grad_shard,
                 mb_zero_update_fn update, void *ctx) MB_NODISCARD;

/* Global L2 norm for clipping: every rank passes the sum of squares of its
 * own gradient shard; all ranks get sqrt of the total (host communicator). */
int mb_zero_global_norm(mb_comm *host, double local_sum_sq, double *norm) MB_NODISCARD;

/* ---- re-partitioning sharded state (pure; no communication) ---------------- */

/* A run of a new shard that comes from one old shard. */
typedef struct {
  int src_rank;      /* old rank whose shard holds it */
  size_t src_offset; /* within that old shard */
  size_t dst_offset; /* within the new shard */
  size_t count;
} mb_zero_slice;

/* The slices making up `to_rank`'s shard under `to` from shards under
 * `from` (same numel required: names both sizes otherwise), in order,
 * covering its valid elements exactly once. out may be NULL to count. */
int mb_zero_reshard_plan(const mb_zero_layout *from, const mb_zero_layout *to, int to_rank, mb_zero_slice *out,
                         int cap, int *n) MB_NODISCARD;

/* Reads count elements at src_offset of old rank src_rank's shard into dst. */
typedef int (*mb_zero_read_fn)(void *ctx, int src_rank, size_t src_offset, size_t count, float *dst);

/* Build to_rank's new shard (to->shard elements, padding zeroed) by reading
 * the slices of the plan. */
int mb_zero_reshard_read(const mb_zero_layout *from, const mb_zero_layout *to, int to_rank, mb_zero_read_fn read,
                         void *ctx, float *dst) MB_NODISCARD;
/* The same from shards in memory (src_shards[r] has from->shard or at least
 * mb_zero_shard_valid(from, r) elements). */
int mb_zero_reshard(const mb_zero_layout *from, const float *const *src_shards, const mb_zero_layout *to,
                    int to_rank, float *dst) MB_NODISCARD;
/* All shards -> the whole numel-element vector. */
int mb_zero_gather(const mb_zero_layout *from, const float *const *src_shards, float *full) MB_NODISCARD;
/* The whole vector -> rank's shard (padding zeroed). */
int mb_zero_scatter(const mb_zero_layout *to, int rank, const float *full, float *dst) MB_NODISCARD;

#ifdef __cplusplus
}
#endif
#endif
