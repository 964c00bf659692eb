/* loader.c: per-epoch plans (which examples form which batch) and batch
 * filling for loader.h. A plan is a pure function of (configuration, data,
 * epoch), so seeking to any (epoch, step) just rebuilds that epoch's plan. */
#include "data/loader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/shuffle.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

enum { STREAM_ORDER = 1, STREAM_BATCHES = 2 };

typedef struct {
  int64_t *slots; /* example index, or -1 for an empty row */
  int64_t n_slots, cap_slots;
  int64_t *bstart; /* [nb + 1] into slots */
  int32_t *blen;   /* [nb]: L (padded) */
  int64_t nb, cap_b;
} plan_t;

struct mb_loader {
  const mb_shardset *set;
  mb_loader_config cfg;
  int64_t n_eff;    /* examples in play (limit applied) */
  int32_t *eff_len; /* [n_eff] lengths after truncation to max_length */
  int64_t per_rank;
  uint64_t fingerprint;
  mb_loader_position pos;
  int64_t plan_epoch; /* -1: none yet */
  plan_t plan, scratch_plan;
  int64_t *order; /* [n_eff] */
  int64_t *items; /* [per_rank] */
  struct sort_item *sort_buf;
  int32_t *bin_of; /* packed scratch [window] */
  int64_t *bin_tokens, *bin_seqs, *bin_fill;
  int64_t *bin_order;
  mb_batch batch;
};

typedef struct sort_item {
  int32_t len;
  int64_t pos; /* position in the rank's sequence: the tie-breaker, so the sort is deterministic */
  int64_t item;
} sort_item;

int32_t mb_bucket_length(int32_t len, int32_t m, int32_t cap) {
  int64_t L = ((int64_t)len + m - 1) / m * m;
  if (L < m)
    L = m;
  if (L > cap)
    L = cap;
  return (int32_t)L;
}

mb_loader_config mb_loader_train_config(int32_t batch_size, int32_t max_length, uint64_t seed) {
  mb_loader_config c;
  memset(&c, 0, sizeof c);
  c.mode = MB_BATCH_PADDED;
  c.batch_size = batch_size;
  c.max_length = max_length;
  c.shuffle = 1;
  c.seed = seed;
  c.world_size = 1;
  c.remainder = MB_REMAINDER_DROP;
  c.bucket_multiple = 64;
  c.window = 64 * batch_size;
  c.pad_id = -1;
  return c;
}

mb_loader_config mb_loader_eval_config(int32_t batch_size, int32_t max_length, int64_t limit) {
  mb_loader_config c;
  memset(&c, 0, sizeof c);
  c.mode = MB_BATCH_PADDED;
  c.batch_size = batch_size;
  c.max_length = max_length;
  c.world_size = 1;
  c.remainder = MB_REMAINDER_PAD;
  c.limit = limit;
  c.pad_id = -1;
  c.trim_last = 1;
  return c;
}

/* ---- plans --------------------------------------------------------------- */

static int plan_reserve(plan_t *p, int64_t slots, int64_t batches) {
  if (slots > p->cap_slots) {
    int64_t cap = p->cap_slots ? p->cap_slots : 1024;
    while (cap < slots)
      cap *= 2;
    int64_t *s = realloc(p->slots, (size_t)cap * sizeof *s);
    if (!s)
      return MB_ERR(MB_ENOMEM, "loader: out of memory for the epoch plan");
    p->slots = s;
    p->cap_slots = cap;
  }
  if (batches + 1 > p->cap_b) {
    int64_t cap = p->cap_b ? p->cap_b : 256;
    while (cap < batches + 1)
      cap *= 2;
    int64_t *b = realloc(p->bstart, (size_t)cap * sizeof *b);
    if (b)
      p->bstart = b;
    int32_t *l = realloc(p->blen, (size_t)cap * sizeof *l);
    if (l)
      p->blen = l;
    if (!b || !l)
      return MB_ERR(MB_ENOMEM, "loader: out of memory for the epoch plan");
    if (p->cap_b == 0)
      p->bstart[0] = 0;
    p->cap_b = cap;
  }
  return MB_OK;
}

static void plan_clear(plan_t *p) {
  p->n_slots = 0;
  p->nb = 0;
  if (p->bstart)
    p->bstart[0] = 0;
}

/* Close a batch made of the slots appended since the last one. */
static int plan_end_batch(plan_t *p, int32_t L) {
  MB_TRY(plan_reserve(p, p->n_slots, p->nb + 1));
  p->blen[p->nb] = L;
  p->bstart[++p->nb] = p->n_slots;
  return MB_OK;
}

static int plan_push(plan_t *p, int64_t item) {
  MB_TRY(plan_reserve(p, p->n_slots + 1, p->nb));
  p->slots[p->n_slots++] = item;
  return MB_OK;
}

static void plan_free(plan_t *p) {
  free(p->slots);
  free(p->bstart);
  free(p->blen);
  memset(p, 0, sizeof *p);
}

static int cmp_len_asc(const void *a, const void *b) {
  const sort_item *x = a, *y = b;
  /* empty rows (item -1) last, so they end up in the final batch */
  int xe = x->item < 0, ye = y->item < 0;
  if (xe != ye)
    return xe - ye;
  if (x->len != y->len)
    return x->len < y->len ? -1 : 1;
  return (x->pos > y->pos) - (x->pos < y->pos);
}

static int cmp_len_desc(const void *a, const void *b) {
  const sort_item *x = a, *y = b;
  if (x->len != y->len)
    return x->len > y->len ? -1 : 1;
  return (x->pos > y->pos) - (x->pos < y->pos);
}

static int32_t item_len(const mb_loader *l, int64_t item) { return item < 0 ? 0 : l->eff_len[item]; }

/* The epoch's global order (shared by all ranks). */
static void build_order(mb_loader *l, int64_t epoch) {
  if (l->cfg.shuffle)
    mb_shuffle_permutation(mb_shuffle_key(l->cfg.seed, (uint64_t)epoch, STREAM_ORDER, 0), l->order, l->n_eff);
  else
    for (int64_t i = 0; i < l->n_eff; i++)
      l->order[i] = i;
}

/* items := rank r's positions of the order (-1 past the end: empty rows). */
static void build_items(mb_loader *l, int32_t r) {
  const int64_t W = l->cfg.world_size;
  for (int64_t k = 0; k < l->per_rank; k++) {
    int64_t p = k * W + r;
    l->items[k] = p < l->n_eff ? l->order[p] : -1;
  }
}

static int plan_padded(mb_loader *l, int64_t epoch, int32_t r, plan_t *p) {
  const mb_loader_config *c = &l->cfg;
  const int64_t B = c->batch_size, n = l->per_rank;
  const int sorting = c->window > 1;
  int64_t w = sorting ? ((int64_t)c->window + B - 1) / B * B : (n > 0 ? n : 1);
  plan_clear(p);
  int64_t *border = NULL;
  int64_t max_nbw = (w + B - 1) / B;
  border = malloc((size_t)max_nbw * sizeof *border);
  if (!border)
    return MB_ERR(MB_ENOMEM, "loader: out of memory");
  int rc = MB_OK;
  for (int64_t s = 0, widx = 0; s < n && rc == MB_OK; s += w, widx++) {
    int64_t m = n - s < w ? n - s : w;
    sort_item *si = l->sort_buf;
    for (int64_t k = 0; k < m; k++) {
      si[k].item = l->items[s + k];
      si[k].len = item_len(l, si[k].item);
      si[k].pos = s + k;
    }
    if (sorting)
      qsort(si, (size_t)m, sizeof *si, cmp_len_asc);
    int64_t nbw = (m + B - 1) / B;
    for (int64_t b = 0; b < nbw; b++)
      border[b] = b;
    if (sorting && c->shuffle)
      mb_shuffle_array(mb_shuffle_key(c->seed, (uint64_t)epoch, STREAM_BATCHES, ((uint64_t)r << 40) | (uint64_t)widx),
                       border, nbw);
    for (int64_t bi = 0; bi < nbw && rc == MB_OK; bi++) {
      int64_t b = border[bi];
      int64_t b0 = b * B, b1 = b0 + B < m ? b0 + B : m;
      if (b1 - b0 < B && c->drop_last)
        continue;
      int32_t maxlen = 0;
      for (int64_t k = b0; k < b1 && rc == MB_OK; k++) {
        if (si[k].len > maxlen)
          maxlen = si[k].len;
        rc = plan_push(p, si[k].item);
      }
      for (int64_t k = b1; k < b0 + B && rc == MB_OK; k++)
        rc = plan_push(p, -1);
      int32_t L = c->bucket_multiple > 0 ? mb_bucket_length(maxlen, c->bucket_multiple, c->max_length) : c->max_length;
      if (rc == MB_OK)
        rc = plan_end_batch(p, L);
    }
  }
  free(border);
  return rc;
}

static int plan_packed(mb_loader *l, int64_t epoch, int32_t r, plan_t *p) {
  const mb_loader_config *c = &l->cfg;
  const int64_t n = l->per_rank, T = c->token_budget, S = c->max_seqs;
  const int sorting = c->window > 1;
  int64_t w = sorting ? c->window : (n > 0 ? n : 1);
  plan_clear(p);
  int rc = MB_OK;
  for (int64_t s = 0, widx = 0; s < n && rc == MB_OK; s += w, widx++) {
    int64_t m = n - s < w ? n - s : w, mm = 0;
    sort_item *si = l->sort_buf;
    for (int64_t k = 0; k < m; k++) {
      int64_t it = l->items[s + k];
      if (it < 0)
        continue; /* an empty row is simply no sequence here */
      si[mm].item = it;
      si[mm].len = l->eff_len[it];
      si[mm].pos = s + k;
      mm++;
    }
    if (sorting)
      qsort(si, (size_t)mm, sizeof *si, cmp_len_desc);
    /* Bins: first fit (sorted windows) or next fit (in order). */
    int64_t nbins = 0;
    for (int64_t k = 0; k < mm; k++) {
      int64_t b = -1;
      if (sorting) {
        for (int64_t j = 0; j < nbins; j++)
          if (l->bin_tokens[j] + si[k].len <= T && l->bin_seqs[j] < S) {
            b = j;
            break;
          }
      } else if (nbins > 0 && l->bin_tokens[nbins - 1] + si[k].len <= T && l->bin_seqs[nbins - 1] < S) {
        b = nbins - 1;
      }
      if (b < 0) {
        b = nbins++;
        l->bin_tokens[b] = 0;
        l->bin_seqs[b] = 0;
      }
      l->bin_tokens[b] += si[k].len;
      l->bin_seqs[b]++;
      l->bin_of[k] = (int32_t)b;
    }
    /* Lay bins out in slot order: a counting sort by bin, stable in k. */
    int64_t base = p->n_slots;
    MB_TRY(plan_reserve(p, base + mm, p->nb + nbins));
    int64_t acc = 0;
    for (int64_t j = 0; j < nbins; j++) {
      l->bin_fill[j] = acc;
      acc += l->bin_seqs[j];
    }
    for (int64_t k = 0; k < mm; k++)
      p->slots[base + l->bin_fill[l->bin_of[k]]++] = si[k].item;
    /* Bin j now occupies [bin_fill[j] - bin_seqs[j], bin_fill[j]). Emit them
     * in a shuffled order by moving through a temporary copy. */
    for (int64_t j = 0; j < nbins; j++)
      l->bin_order[j] = j;
    if (sorting && c->shuffle)
      mb_shuffle_array(mb_shuffle_key(c->seed, (uint64_t)epoch, STREAM_BATCHES, ((uint64_t)r << 40) | (uint64_t)widx),
                       l->bin_order, nbins);
    int64_t *tmp = malloc((size_t)(mm > 0 ? mm : 1) * sizeof *tmp);
    if (!tmp)
      return MB_ERR(MB_ENOMEM, "loader: out of memory");
    memcpy(tmp, p->slots + base, (size_t)mm * sizeof *tmp);
    int64_t out = base;
    for (int64_t jj = 0; jj < nbins && rc == MB_OK; jj++) {
      int64_t j = l->bin_order[jj];
      int64_t end = l->bin_fill[j], start = end - l->bin_seqs[j];
      memcpy(p->slots + out, tmp + start, (size_t)(end - start) * sizeof *tmp);
      out += end - start;
      p->n_slots = out;
      rc = plan_end_batch(p, (int32_t)T);
    }
    free(tmp);
  }
  return rc;
}

static int build_plan_for_rank(mb_loader *l, int64_t epoch, int32_t r, plan_t *p) {
  build_items(l, r);
  return l->cfg.mode == MB_BATCH_PADDED ? plan_padded(l, epoch, r, p) : plan_packed(l, epoch, r, p);
}

static int ensure_plan(mb_loader *l, int64_t epoch) {
  if (l->plan_epoch == epoch)
    return MB_OK;
  l->plan_epoch = -1;
  build_order(l, epoch);
  MB_TRY(build_plan_for_rank(l, epoch, l->cfg.rank, &l->plan));
  if (l->cfg.mode == MB_BATCH_PACKED && l->cfg.world_size > 1) {
    /* Every rank must take as many steps: pad ours with empty batches up to
     * the most any rank packs this epoch. */
    int64_t most = l->plan.nb;
    for (int32_t r = 0; r < l->cfg.world_size; r++) {
      if (r == l->cfg.rank)
        continue;
      MB_TRY(build_plan_for_rank(l, epoch, r, &l->scratch_plan));
      if (l->scratch_plan.nb > most)
        most = l->scratch_plan.nb;
    }
    while (l->plan.nb < most)
      MB_TRY(plan_end_batch(&l->plan, (int32_t)l->cfg.token_budget));
  }
  l->plan_epoch = epoch;
  return MB_OK;
}

/* ---- batches ------------------------------------------------------------- */

/* Copy example idx's ids, truncated to its effective length, to dst. */
static void copy_truncated(const mb_loader *l, int64_t idx, int32_t *dst) {
  const int32_t *src = mb_shardset_ids(l->set, idx);
  int32_t full = l->set->lengths[idx], L = l->eff_len[idx];
  if (L < full && l->set->meta.add_special && L >= 2) {
    memcpy(dst, src, (size_t)(L - 1) * sizeof *dst);
    dst[L - 1] = src[full - 1]; /* keep [SEP], as HF truncation does */
  } else {
    memcpy(dst, src, (size_t)L * sizeof *dst);
  }
}

static void mark_empty_row(mb_batch *b, int32_t j) {
  b->labels[j] = -1;
  b->lengths[j] = 0;
  b->example_ids[j] = -1;
  b->indices[j] = -1;
}

static void fill_padded(mb_loader *l, int64_t bi) {
  mb_batch *b = &l->batch;
  const plan_t *p = &l->plan;
  const int32_t B = l->cfg.batch_size, L = p->blen[bi];
  b->rows = B;
  b->seq_len = L;
  b->n_seqs = 0;
  b->n_tokens = 0;
  for (int64_t i = 0; i < (int64_t)B * L; i++) {
    b->input_ids[i] = l->cfg.pad_id;
    b->attention_mask[i] = 0;
  }
  for (int64_t s = p->bstart[bi]; s < p->bstart[bi + 1]; s++) {
    int64_t idx = p->slots[s];
    if (idx < 0)
      continue;
    int32_t j = b->n_seqs++; /* real rows first */
    int32_t n = l->eff_len[idx];
    copy_truncated(l, idx, b->input_ids + (int64_t)j * L);
    for (int32_t t = 0; t < n; t++)
      b->attention_mask[(int64_t)j * L + t] = 1;
    b->labels[j] = l->set->labels[idx];
    b->lengths[j] = n;
    b->example_ids[j] = l->set->example_ids[idx];
    b->indices[j] = idx;
    b->n_tokens += n;
  }
  for (int32_t j = b->n_seqs; j < B; j++)
    mark_empty_row(b, j);
  if (l->cfg.trim_last && b->n_seqs > 0) /* real rows come first: the batch is its first n_seqs rows */
    b->rows = b->n_seqs;
}

static void fill_packed(mb_loader *l, int64_t bi) {
  mb_batch *b = &l->batch;
  const plan_t *p = &l->plan;
  const int32_t T = (int32_t)l->cfg.token_budget, S = l->cfg.max_seqs;
  b->rows = S;
  b->seq_len = T;
  b->n_seqs = 0;
  int32_t at = 0;
  b->cu_seqlens[0] = 0;
  for (int64_t s = p->bstart[bi]; s < p->bstart[bi + 1]; s++) {
    int64_t idx = p->slots[s];
    int32_t j = b->n_seqs++, n = l->eff_len[idx];
    copy_truncated(l, idx, b->input_ids + at);
    for (int32_t t = 0; t < n; t++) {
      b->attention_mask[at + t] = 1;
      b->position_ids[at + t] = t;
    }
    at += n;
    b->cu_seqlens[j + 1] = at;
    b->labels[j] = l->set->labels[idx];
    b->lengths[j] = n;
    b->example_ids[j] = l->set->example_ids[idx];
    b->indices[j] = idx;
  }
  b->n_tokens = at;
  for (int32_t t = at; t < T; t++) {
    b->input_ids[t] = l->cfg.pad_id;
    b->attention_mask[t] = 0;
    b->position_ids[t] = 0;
  }
  for (int32_t j = b->n_seqs; j < S; j++) {
    b->cu_seqlens[j + 1] = at;
    mark_empty_row(b, j);
  }
}

int mb_loader_next(mb_loader *l, const mb_batch **out) {
  *out = NULL;
  MB_TRY(ensure_plan(l, l->pos.epoch));
  if (l->plan.nb == 0)
    return MB_ERR(MB_EINVAL, "loader: epoch %lld has no batches on rank %d", (long long)l->pos.epoch, l->cfg.rank);
  int64_t bi = l->pos.step;
  if (l->cfg.mode == MB_BATCH_PADDED)
    fill_padded(l, bi);
  else
    fill_packed(l, bi);
  l->batch.epoch = l->pos.epoch;
  l->batch.step = l->pos.step;
  if (++l->pos.step == l->plan.nb) {
    l->pos.epoch++;
    l->pos.step = 0;
  }
  *out = &l->batch;
  return MB_OK;
}

/* ---- creation, position -------------------------------------------------- */

static uint64_t fnv_add(uint64_t h, uint64_t v) {
  for (int i = 0; i < 8; i++) {
    h ^= (v >> (8 * i)) & 0xff;
    h *= 0x100000001b3ULL;
  }
  return h;
}

static uint64_t fnv_str(uint64_t h, const char *s) {
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 0x100000001b3ULL;
  }
  return fnv_add(h, 0);
}

static uint64_t fingerprint(const mb_loader *l) {
  const mb_loader_config *c = &l->cfg;
  const mb_shard_meta *m = &l->set->meta;
  uint64_t h = 0xcbf29ce484222325ULL;
  const int64_t v[] = {1 /* plan algorithm version */, l->n_eff, l->set->n, l->set->n_tokens, c->mode,
                       c->batch_size, c->max_length, c->token_budget, c->max_seqs, c->shuffle, (int64_t)c->seed,
                       c->rank, c->world_size, c->remainder, c->bucket_multiple, c->window, c->drop_last, c->limit,
                       c->pad_id};
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
    h = fnv_add(h, (uint64_t)v[i]);
  if (c->trim_last) /* only when set: the states saved before it existed keep their fingerprint */
    h = fnv_add(h, 0x7472696dULL);
  h = fnv_str(h, m->dataset);
  h = fnv_str(h, m->split);
  h = fnv_str(h, m->vocab_sha256);
  return h;
}

/* Batches take the epoch's global order in sequence (padded, no sorting
 * window): step s of every rank together has taken positions
 * [0, s x batch_size x world_size) of it. */
static int sequential(const mb_loader_config *c) { return c->mode == MB_BATCH_PADDED && c->window <= 1; }

/* What fixes the epoch's global order and how batches walk it, whatever the
 * rank count and the size of a rank's batch (rows, or a packed batch's token
 * budget and sequences: the fingerprint above includes those). */
static uint32_t order_fingerprint(const mb_loader *l) {
  const mb_loader_config *c = &l->cfg;
  const mb_shard_meta *m = &l->set->meta;
  uint64_t h = 0xcbf29ce484222325ULL;
  const int64_t v[] = {2 /* version */, l->n_eff, l->set->n, l->set->n_tokens, c->mode, c->max_length,
                       c->shuffle, (int64_t)c->seed, c->remainder, c->bucket_multiple, sequential(c),
                       c->drop_last, c->limit, c->pad_id};
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
    h = fnv_add(h, (uint64_t)v[i]);
  h = fnv_str(h, m->dataset);
  h = fnv_str(h, m->split);
  h = fnv_str(h, m->vocab_sha256);
  return (uint32_t)(h ^ (h >> 32));
}

void mb_loader_free(mb_loader *l) {
  if (!l)
    return;
  plan_free(&l->plan);
  plan_free(&l->scratch_plan);
  free(l->eff_len);
  free(l->order);
  free(l->items);
  free(l->sort_buf);
  free(l->bin_of);
  free(l->bin_tokens);
  free(l->bin_seqs);
  free(l->bin_fill);
  free(l->bin_order);
  mb_batch *b = &l->batch;
  mb_host_free(b->input_ids);
  mb_host_free(b->attention_mask);
  mb_host_free(b->position_ids);
  mb_host_free(b->cu_seqlens);
  mb_host_free(b->labels);
  mb_host_free(b->lengths);
  mb_host_free(b->example_ids);
  mb_host_free(b->indices);
  free(l);
}

static int validate(const mb_shardset *set, mb_loader_config *c) {
  if (c->mode != MB_BATCH_PADDED && c->mode != MB_BATCH_PACKED)
    return MB_ERR(MB_EINVAL, "loader: mode %d is neither padded nor packed", (int)c->mode);
  if (c->world_size < 1 || c->rank < 0 || c->rank >= c->world_size)
    return MB_ERR(MB_EINVAL, "loader: rank %d of world size %d", c->rank, c->world_size);
  if (c->max_length < 0)
    return MB_ERR(MB_EINVAL, "loader: max_length %d is negative", c->max_length);
  if (c->limit < 0)
    return MB_ERR(MB_EINVAL, "loader: limit %lld is negative", (long long)c->limit);
  if (c->remainder != MB_REMAINDER_DROP && c->remainder != MB_REMAINDER_PAD)
    return MB_ERR(MB_EINVAL, "loader: remainder %d is neither drop nor pad", (int)c->remainder);
  if (c->bucket_multiple < 0)
    return MB_ERR(MB_EINVAL, "loader: bucket_multiple %d is negative", c->bucket_multiple);
  if (c->pad_id < 0)
    c->pad_id = set->meta.pad_id;
  if (c->max_length == 0) {
    int64_t n = c->limit > 0 && c->limit < set->n ? c->limit : set->n;
    for (int64_t i = 0; i < n; i++)
      if (set->lengths[i] > c->max_length)
        c->max_length = set->lengths[i];
    if (c->max_length == 0)
      c->max_length = 1;
  }
  if (set->meta.max_length > 0 && c->max_length > set->meta.max_length)
    mb_log_once(MB_LOG_WARN, "loader-max-length",
                "loader: max_length %d, but the shards were truncated to %d tokens when prepared; "
                "no sequence is longer than %d (run mambert prepare with --max-length 0 to keep all)",
                c->max_length, set->meta.max_length, set->meta.max_length);
  if (c->mode == MB_BATCH_PADDED) {
    if (c->batch_size < 1)
      return MB_ERR(MB_EINVAL, "loader: batch_size %d; expected at least 1", c->batch_size);
    if ((int64_t)c->batch_size * c->max_length > ((int64_t)1 << 31) - 1)
      return MB_ERR(MB_EINVAL, "loader: batch_size %d x max_length %d is too many tokens", c->batch_size,
                    c->max_length);
  } else {
    if (c->token_budget < c->max_length)
      return MB_ERR(MB_EINVAL, "loader: token_budget %lld is smaller than max_length %d (a sequence must fit)",
                    (long long)c->token_budget, c->max_length);
    if (c->token_budget > ((int64_t)1 << 31) - 1)
      return MB_ERR(MB_EINVAL, "loader: token_budget %lld is too large", (long long)c->token_budget);
    if (c->max_seqs == 0)
      c->max_seqs = (int32_t)(c->token_budget / 8 > 0 ? c->token_budget / 8 : 1);
    if (c->max_seqs < 1)
      return MB_ERR(MB_EINVAL, "loader: max_seqs %d; expected at least 1", c->max_seqs);
  }
  return MB_OK;
}

int mb_loader_create(const mb_shardset *set, const mb_loader_config *cfg, mb_loader **out) {
  *out = NULL;
  mb_loader *l = calloc(1, sizeof *l);
  if (!l)
    return MB_ERR(MB_ENOMEM, "loader: out of memory");
  l->set = set;
  l->cfg = *cfg;
  l->plan_epoch = -1;
  int rc = validate(set, &l->cfg);
  if (rc != MB_OK) {
    free(l);
    return rc;
  }
  const mb_loader_config *c = &l->cfg;
  l->n_eff = c->limit > 0 && c->limit < set->n ? c->limit : set->n;
  const int64_t W = c->world_size;
  l->per_rank = c->remainder == MB_REMAINDER_DROP ? l->n_eff / W : (l->n_eff + W - 1) / W;
  if (l->per_rank == 0) {
    rc = MB_ERR(MB_EINVAL, "loader: %lld example(s) cannot give each of %d ranks one (remainder dropped)",
                (long long)l->n_eff, c->world_size);
    mb_loader_free(l);
    return rc;
  }
  int64_t window = c->window > 1 ? c->window : l->per_rank;
  if (c->mode == MB_BATCH_PADDED && c->window > 1)
    window = ((int64_t)c->window + c->batch_size - 1) / c->batch_size * c->batch_size;
  if (window > l->per_rank)
    window = l->per_rank;
  int64_t rows = c->mode == MB_BATCH_PADDED ? c->batch_size : c->max_seqs;
  int64_t toks = c->mode == MB_BATCH_PADDED ? (int64_t)c->batch_size * c->max_length : c->token_budget;
  l->eff_len = malloc((size_t)(l->n_eff > 0 ? l->n_eff : 1) * sizeof *l->eff_len);
  l->order = malloc((size_t)(l->n_eff > 0 ? l->n_eff : 1) * sizeof *l->order);
  l->items = malloc((size_t)l->per_rank * sizeof *l->items);
  l->sort_buf = malloc((size_t)window * sizeof *l->sort_buf);
  l->bin_of = malloc((size_t)window * sizeof *l->bin_of);
  l->bin_tokens = malloc((size_t)window * sizeof *l->bin_tokens);
  l->bin_seqs = malloc((size_t)window * sizeof *l->bin_seqs);
  l->bin_fill = malloc((size_t)window * sizeof *l->bin_fill);
  l->bin_order = malloc((size_t)window * sizeof *l->bin_order);
  mb_batch *b = &l->batch;
  b->mode = c->mode;
  b->input_ids = mb_host_malloc((size_t)toks * sizeof(int32_t));
  b->attention_mask = mb_host_malloc((size_t)toks * sizeof(int32_t));
  if (c->mode == MB_BATCH_PACKED) {
    b->position_ids = mb_host_malloc((size_t)toks * sizeof(int32_t));
    b->cu_seqlens = mb_host_malloc((size_t)(rows + 1) * sizeof(int32_t));
  }
  b->labels = mb_host_malloc((size_t)rows * sizeof(int32_t));
  b->lengths = mb_host_malloc((size_t)rows * sizeof(int32_t));
  b->example_ids = mb_host_malloc((size_t)rows * sizeof(int64_t));
  b->indices = mb_host_malloc((size_t)rows * sizeof(int64_t));
  if (!l->eff_len || !l->order || !l->items || !l->sort_buf || !l->bin_of || !l->bin_tokens || !l->bin_seqs ||
      !l->bin_fill || !l->bin_order || !b->input_ids || !b->attention_mask || !b->labels || !b->lengths ||
      !b->example_ids || !b->indices || (c->mode == MB_BATCH_PACKED && (!b->position_ids || !b->cu_seqlens))) {
    mb_loader_free(l);
    return MB_ERR(MB_ENOMEM, "loader: out of memory for batches of %lld tokens", (long long)toks);
  }
  for (int64_t i = 0; i < l->n_eff; i++)
    l->eff_len[i] = set->lengths[i] < c->max_length ? set->lengths[i] : c->max_length;
  l->fingerprint = fingerprint(l);
  rc = ensure_plan(l, 0);
  if (rc == MB_OK && l->plan.nb == 0)
    rc = MB_ERR(MB_EINVAL,
                "loader: rank %d has %lld example(s), fewer than batch_size %d, and drop_last is set: no batches",
                c->rank, (long long)l->per_rank, c->batch_size);
  if (rc != MB_OK) {
    mb_loader_free(l);
    return rc;
  }
  *out = l;
  return MB_OK;
}

const mb_loader_config *mb_loader_config_of(const mb_loader *l) { return &l->cfg; }

mb_loader_position mb_loader_tell(const mb_loader *l) { return l->pos; }

int mb_loader_steps_in_epoch(mb_loader *l, int64_t epoch, int64_t *steps) {
  if (epoch < 0)
    return MB_ERR(MB_EINVAL, "loader: epoch %lld is negative", (long long)epoch);
  MB_TRY(ensure_plan(l, epoch));
  *steps = l->plan.nb;
  return MB_OK;
}

int mb_loader_seek(mb_loader *l, mb_loader_position pos) {
  int64_t steps = 0;
  MB_TRY(mb_loader_steps_in_epoch(l, pos.epoch, &steps));
  if (pos.step < 0 || pos.step >= steps)
    return MB_ERR(MB_EINVAL, "loader: step %lld is outside epoch %lld's %lld steps", (long long)pos.step,
                  (long long)pos.epoch, (long long)steps);
  l->pos = pos;
  return MB_OK;
}

static void put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static const char state_magic[8] = {'M', 'B', 'L', 'O', 'A', 'D', 'E', 'R'};

void mb_loader_save_state(const mb_loader *l, uint8_t out[MB_LOADER_STATE_BYTES]) {
  memset(out, 0, MB_LOADER_STATE_BYTES);
  memcpy(out, state_magic, 8);
  put_u64(out + 8, 2); /* blob version: 2 adds the batch size and the order's fingerprint */
  put_u64(out + 16, (uint64_t)l->pos.epoch);
  put_u64(out + 24, (uint64_t)l->pos.step);
  put_u64(out + 32, l->fingerprint);
  put_u64(out + 40, l->cfg.seed);
  put_u64(out + 48, (uint64_t)(uint32_t)l->cfg.rank | ((uint64_t)(uint32_t)l->cfg.world_size << 32));
  put_u64(out + 56, (uint64_t)(uint32_t)l->cfg.batch_size | ((uint64_t)order_fingerprint(l) << 32));
}

int mb_loader_restore_state(mb_loader *l, const uint8_t in[MB_LOADER_STATE_BYTES]) {
  if (memcmp(in, state_magic, 8) != 0)
    return MB_ERR(MB_EFORMAT, "loader state: not a saved loader position (bad magic)");
  if (get_u64(in + 8) != 1 && get_u64(in + 8) != 2)
    return MB_ERR(MB_EFORMAT, "loader state: version %llu; this build reads versions 1 and 2",
                  (unsigned long long)get_u64(in + 8));
  uint64_t fp = get_u64(in + 32), seed = get_u64(in + 40), rw = get_u64(in + 48);
  int32_t rank = (int32_t)(uint32_t)rw, world = (int32_t)(uint32_t)(rw >> 32);
  if (fp != l->fingerprint) {
    if (seed != l->cfg.seed)
      return MB_ERR(MB_EINVAL, "loader state: saved with seed %llu, this loader has seed %llu",
                    (unsigned long long)seed, (unsigned long long)l->cfg.seed);
    if (world != l->cfg.world_size || rank != l->cfg.rank)
      return MB_ERR(MB_EINVAL, "loader state: saved by rank %d of %d, this loader is rank %d of %d", rank, world,
                    l->cfg.rank, l->cfg.world_size);
    return MB_ERR(MB_EINVAL,
                  "loader state: saved with another batching configuration or data set (batch size, max_length, "
                  "token budget, bucketing, limit, or the shards differ)");
  }
  mb_loader_position pos = {(int64_t)get_u64(in + 16), (int64_t)get_u64(in + 24)};
  if (pos.epoch < 0)
    return MB_ERR(MB_EFORMAT, "loader state: negative epoch");
  return mb_loader_seek(l, pos);
}

int mb_loader_state_global_position(const mb_loader *l, const uint8_t in[MB_LOADER_STATE_BYTES],
                                    mb_loader_global_position *out) {
  memset(out, 0, sizeof *out);
  if (memcmp(in, state_magic, 8) != 0)
    return MB_ERR(MB_EFORMAT, "loader state: not a saved loader position (bad magic)");
  uint64_t version = get_u64(in + 8);
  if (version == 1)
    return MB_ERR(MB_EUNSUPPORTED, "loader state: saved by an older mambert (version 1 has no batch size); it "
                                   "resumes only with the same number of ranks and batch size");
  if (version != 2)
    return MB_ERR(MB_EFORMAT, "loader state: version %llu; this build reads versions 1 and 2",
                  (unsigned long long)version);
  uint64_t seed = get_u64(in + 40), rw = get_u64(in + 48), bo = get_u64(in + 56);
  int32_t world = (int32_t)(uint32_t)(rw >> 32), batch = (int32_t)(uint32_t)bo;
  if (seed != l->cfg.seed)
    return MB_ERR(MB_EINVAL, "loader state: saved with seed %llu, this loader has seed %llu",
                  (unsigned long long)seed, (unsigned long long)l->cfg.seed);
  if ((uint32_t)(bo >> 32) != order_fingerprint(l))
    return MB_ERR(MB_EINVAL, "loader state: saved over another data order (the data set, limit, shuffling, "
                             "max_length or batching mode differ)");
  if (world < 1 || batch < 1)
    return MB_ERR(MB_EFORMAT, "loader state: world size %d, batch size %d", world, batch);
  int64_t epoch = (int64_t)get_u64(in + 16), step = (int64_t)get_u64(in + 24);
  if (epoch < 0 || step < 0)
    return MB_ERR(MB_EFORMAT, "loader state: negative epoch or step");
  if (step > 0 && !sequential(&l->cfg))
    return MB_ERR(MB_EUNSUPPORTED,
                  "loader state: step %lld of epoch %lld in batches that are %s; such a position maps onto another "
                  "number of ranks or batch size only at the start of an epoch",
                  (long long)step, (long long)epoch,
                  l->cfg.mode == MB_BATCH_PACKED ? "packed" : "sorted by length within windows");
  out->epoch = epoch;
  out->consumed = step * (int64_t)batch * world;
  out->world_size = world;
  out->batch_size = batch;
  return MB_OK;
}

int mb_loader_seek_global(mb_loader *l, mb_loader_global_position g) {
  const int64_t per_step = (int64_t)l->cfg.batch_size * l->cfg.world_size;
  if (g.consumed == 0)
    return mb_loader_seek(l, (mb_loader_position){g.epoch, 0});
  if (!sequential(&l->cfg))
    return MB_ERR(MB_EUNSUPPORTED,
                  "loader: %lld examples into epoch %lld, but this loader's batches are %s (only an epoch's start "
                  "maps onto them)",
                  (long long)g.consumed, (long long)g.epoch,
                  l->cfg.mode == MB_BATCH_PACKED ? "packed" : "sorted by length within windows");
  if (g.consumed < 0 || g.consumed % per_step != 0)
    return MB_ERR(MB_EUNSUPPORTED,
                  "loader: %lld examples into epoch %lld is not a multiple of %d rank(s) x batch size %d = %lld",
                  (long long)g.consumed, (long long)g.epoch, l->cfg.world_size, l->cfg.batch_size,
                  (long long)per_step);
  return mb_loader_seek(l, (mb_loader_position){g.epoch, g.consumed / per_step});
}
