/* zero.c: ZeRO-1 partitioning, the sharded step, and re-partitioning of
 * sharded optimizer state across rank counts (zero.h). */
#include "distributed/zero.h"

#include <math.h>
#include <string.h>

int mb_zero_layout_make(size_t numel, int world, size_t align, mb_zero_layout *out) {
  memset(out, 0, sizeof *out);
  if (world < 1)
    return MB_ERR(MB_EINVAL, "ZeRO layout: %d ranks; expected at least 1", world);
  if (numel == 0)
    return MB_ERR(MB_EINVAL, "ZeRO layout: an empty buffer");
  if (align == 0)
    align = 1;
  size_t per = (numel + (size_t)world - 1) / (size_t)world;
  out->numel = numel;
  out->world = world;
  out->align = align;
  out->shard = (per + align - 1) / align * align;
  out->padded = out->shard * (size_t)world;
  return MB_OK;
}

size_t mb_zero_shard_offset(const mb_zero_layout *L, int rank) { return (size_t)rank * L->shard; }

size_t mb_zero_shard_valid(const mb_zero_layout *L, int rank) {
  size_t off = mb_zero_shard_offset(L, rank);
  if (rank < 0 || rank >= L->world || off >= L->numel)
    return 0;
  size_t left = L->numel - off;
  return left < L->shard ? left : L->shard;
}

int mb_zero_shard_pieces(const mb_zero_layout *L, int rank, const mb_grad_param *params, int nparams,
                         mb_zero_piece *out, int cap, int *n) {
  *n = 0;
  if (rank < 0 || rank >= L->world)
    return MB_ERR(MB_EINVAL, "ZeRO: rank %d is not in [0, %d)", rank, L->world);
  size_t lo = mb_zero_shard_offset(L, rank), hi = lo + mb_zero_shard_valid(L, rank);
  int count = 0;
  /* Parameters are few (hundreds): a scan per shard, then an insertion sort
   * by position, is plenty. */
  for (int i = 0; i < nparams; i++) {
    size_t a = params[i].offset, b = params[i].offset + params[i].count;
    if (b > L->numel)
      return MB_ERR(MB_EINVAL, "ZeRO: parameter '%s' ends at element %zu, past the %zu-element buffer",
                    params[i].name ? params[i].name : "?", b, L->numel);
    size_t s = a > lo ? a : lo, e = b < hi ? b : hi;
    if (s >= e)
      continue;
    if (out && count < cap) {
      mb_zero_piece pc = {i, s - a, s - lo, e - s};
      int j = count;
      while (j > 0 && out[j - 1].shard_offset > pc.shard_offset) {
        out[j] = out[j - 1];
        j--;
      }
      out[j] = pc;
    }
    count++;
  }
  *n = count;
  if (out && count > cap)
    return MB_ERR(MB_EINVAL, "ZeRO: rank %d's shard has %d parameter pieces, room for %d", rank, count, cap);
  return MB_OK;
}

int mb_zero_step(mb_comm *c, const mb_zero_layout *L, float *params, float *grads, float *grad_shard,
                 mb_zero_update_fn update, void *ctx) {
  int rank = mb_comm_rank(c);
  if (L->world != mb_comm_size(c))
    return MB_ERR(MB_EINVAL, "ZeRO step: layout for %d ranks on a %d-rank communicator", L->world, mb_comm_size(c));
  if (!params || !grads || !grad_shard || !update)
    return MB_ERR(MB_EINVAL, "ZeRO step: NULL buffer or update");
  size_t off = mb_zero_shard_offset(L, rank);
  mb_comm_request *r;
  int rc = mb_comm_ireduce_scatter(c, grads, grad_shard, L->shard, MB_F32, MB_REDUCE_AVG, "zero grads", &r);
  if (rc == MB_OK)
    rc = mb_comm_wait(&r, 0);
  if (rc != MB_OK)
    return mb_error_context(rc, "ZeRO step: reduce-scatter of gradients");
  size_t valid = mb_zero_shard_valid(L, rank);
  if (valid > 0) {
    rc = update(ctx, params + off, grad_shard, off, valid);
    if (rc != MB_OK)
      return mb_error_context(rc, "ZeRO step: update of rank %d's shard [%zu, %zu)", rank, off, off + valid);
  }
  rc = mb_comm_iallgather(c, params + off, params, L->shard, MB_F32, "zero params", &r);
  if (rc == MB_OK)
    rc = mb_comm_wait(&r, 0);
  if (rc != MB_OK)
    return mb_error_context(rc, "ZeRO step: all-gather of parameters");
  return MB_OK;
}

int mb_zero_global_norm(mb_comm *host, double local_sum_sq, double *norm) {
  double s = local_sum_sq;
  MB_TRY(mb_comm_allreduce(host, &s, &s, 1, MB_F64, MB_REDUCE_SUM));
  *norm = sqrt(s);
  return MB_OK;
}

/* ---- re-partitioning -------------------------------------------------------- */

static int check_pair(const mb_zero_layout *from, const mb_zero_layout *to, int to_rank) {
  if (from->numel != to->numel)
    return MB_ERR(MB_EINVAL,
                  "ZeRO re-partition: the saved state has %zu elements, the model has %zu (a different model?)",
                  from->numel, to->numel);
  if (to_rank < 0 || to_rank >= to->world)
    return MB_ERR(MB_EINVAL, "ZeRO re-partition: rank %d is not in [0, %d)", to_rank, to->world);
  if (from->world < 1 || from->shard == 0)
    return MB_ERR(MB_EINVAL, "ZeRO re-partition: the saved layout is empty");
  return MB_OK;
}

int mb_zero_reshard_plan(const mb_zero_layout *from, const mb_zero_layout *to, int to_rank, mb_zero_slice *out,
                         int cap, int *n) {
  *n = 0;
  MB_TRY(check_pair(from, to, to_rank));
  size_t lo = mb_zero_shard_offset(to, to_rank), hi = lo + mb_zero_shard_valid(to, to_rank);
  int count = 0;
  size_t g = lo;
  while (g < hi) {
    int src = (int)(g / from->shard);
    size_t src_lo = mb_zero_shard_offset(from, src);
    size_t src_hi = src_lo + mb_zero_shard_valid(from, src);
    size_t e = src_hi < hi ? src_hi : hi;
    if (e <= g)
      return MB_ERR(MB_EINTERNAL, "ZeRO re-partition: no progress at element %zu", g);
    if (out && count < cap) {
      mb_zero_slice s = {src, g - src_lo, g - lo, e - g};
      out[count] = s;
    }
    count++;
    g = e;
  }
  *n = count;
  if (out && count > cap)
    return MB_ERR(MB_EINVAL, "ZeRO re-partition: rank %d needs %d slices, room for %d", to_rank, count, cap);
  return MB_OK;
}

int mb_zero_reshard_read(const mb_zero_layout *from, const mb_zero_layout *to, int to_rank, mb_zero_read_fn read,
                         void *ctx, float *dst) {
  MB_TRY(check_pair(from, to, to_rank));
  size_t lo = mb_zero_shard_offset(to, to_rank), hi = lo + mb_zero_shard_valid(to, to_rank);
  size_t g = lo;
  while (g < hi) {
    int src = (int)(g / from->shard);
    size_t src_lo = mb_zero_shard_offset(from, src);
    size_t src_hi = src_lo + mb_zero_shard_valid(from, src);
    size_t e = src_hi < hi ? src_hi : hi;
    int rc = read(ctx, src, g - src_lo, e - g, dst + (g - lo));
    if (rc != MB_OK)
      return mb_error_context(rc, "ZeRO re-partition: reading %zu elements at %zu of old shard %d of %d", e - g,
                              g - src_lo, src, from->world);
    g = e;
  }
  memset(dst + (hi - lo), 0, (to->shard - (hi - lo)) * sizeof *dst);
  return MB_OK;
}

typedef struct {
  const mb_zero_layout *from;
  const float *const *shards;
} mem_reader;

static int read_memory(void *ctx, int src_rank, size_t src_offset, size_t count, float *dst) {
  const mem_reader *m = ctx;
  if (src_rank < 0 || src_rank >= m->from->world || !m->shards[src_rank])
    return MB_ERR(MB_EINVAL, "old shard %d is missing", src_rank);
  memcpy(dst, m->shards[src_rank] + src_offset, count * sizeof *dst);
  return MB_OK;
}

int mb_zero_reshard(const mb_zero_layout *from, const float *const *src_shards, const mb_zero_layout *to,
                    int to_rank, float *dst) {
  mem_reader m = {from, src_shards};
  return mb_zero_reshard_read(from, to, to_rank, read_memory, &m, dst);
}

int mb_zero_gather(const mb_zero_layout *from, const float *const *src_shards, float *full) {
  /* The whole vector is the single shard of a one-rank layout. */
  mb_zero_layout one;
  MB_TRY(mb_zero_layout_make(from->numel, 1, 1, &one));
  return mb_zero_reshard(from, src_shards, &one, 0, full);
}

int mb_zero_scatter(const mb_zero_layout *to, int rank, const float *full, float *dst) {
  mb_zero_layout one;
  MB_TRY(mb_zero_layout_make(to->numel, 1, 1, &one));
  const float *shards[1] = {full};
  return mb_zero_reshard(&one, shards, to, rank, dst);
}
