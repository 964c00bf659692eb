/* plan.c: the memory planner. Every buffer a compiled program needs (inputs,
 * intermediates of both tapes, outputs, kernel workspaces) gets a lifetime
 * in node positions (forward tape first, then backward) and an offset in one
 * arena. Placement is greedy by size with best fit among the gaps left by
 * buffers whose lifetimes overlap (the "greedy by size" offset planner known
 * from TFLite); buffers that never coexist share bytes.
 *
 * Not in the arena: parameters and gradients (the store's flat buffers) and
 * views (reshape), which live in their root's storage and extend its
 * lifetime. */
#include <stdlib.h>
#include <string.h>

#include "autograd/exec.h"
#include "autograd/graph_internal.h"
#include "runtime/alloc.h"

typedef struct {
  size_t size;
  int32_t first, last;
  int32_t value; /* value id, or -(pos+1) for a workspace */
  int64_t offset;
} plan_buf;

static int cmp_size_desc(const void *pa, const void *pb) {
  const plan_buf *a = pa, *b = pb;
  if (a->size != b->size)
    return a->size > b->size ? -1 : 1;
  if (a->first != b->first)
    return a->first < b->first ? -1 : 1;
  return a->value < b->value ? -1 : (a->value > b->value);
}

static int cmp_offset(const void *pa, const void *pb) {
  const plan_buf *const *a = pa, *const *b = pb;
  if ((*a)->offset != (*b)->offset)
    return (*a)->offset < (*b)->offset ? -1 : 1;
  return 0;
}

/* Place bufs; returns the arena size. */
static int place(plan_buf *bufs, int n, int no_reuse, size_t *arena) {
  qsort(bufs, (size_t)n, sizeof *bufs, cmp_size_desc);
  size_t top = 0;
  if (no_reuse) {
    for (int i = 0; i < n; i++) {
      bufs[i].offset = (int64_t)top;
      top += bufs[i].size;
    }
    *arena = top;
    return MB_OK;
  }
  plan_buf **overlap = malloc((size_t)(n ? n : 1) * sizeof *overlap);
  if (!overlap)
    return MB_ERR(MB_ENOMEM, "planner scratch for %d buffers", n);
  for (int i = 0; i < n; i++) {
    plan_buf *b = &bufs[i];
    int m = 0;
    for (int k = 0; k < i; k++)
      if (bufs[k].first <= b->last && b->first <= bufs[k].last)
        overlap[m++] = &bufs[k];
    qsort(overlap, (size_t)m, sizeof *overlap, cmp_offset);
    size_t prev_end = 0, best_gap = SIZE_MAX;
    int64_t best = -1;
    for (int k = 0; k < m; k++) {
      size_t off = (size_t)overlap[k]->offset;
      if (off > prev_end) {
        size_t gap = off - prev_end;
        if (gap >= b->size && gap < best_gap) {
          best_gap = gap;
          best = (int64_t)prev_end;
        }
      }
      size_t end = off + overlap[k]->size;
      if (end > prev_end)
        prev_end = end;
    }
    b->offset = best >= 0 ? best : (int64_t)prev_end;
    if ((size_t)b->offset + b->size > top)
      top = (size_t)b->offset + b->size;
  }
  free(overlap);
  *arena = top;
  return MB_OK;
}

void mb_plan_free(struct mb_plan *p) {
  if (!p)
    return;
  free(p->offset);
  free(p->first);
  free(p->last);
  free(p->ws_offset);
  free(p->ws_bytes);
  free(p->die_begin);
  free(p->die_list);
  free(p);
}

static const mb_node *node_at(const mb_graph *g, int pos) {
  return pos < g->ntape[0] ? &g->tape[0][pos] : &g->tape[1][pos - g->ntape[0]];
}

/* Whether a value's storage is planned in the arena. */
static int in_arena(const mb_graph *g, int32_t v) {
  const mb_value *val = &g->vals[v];
  if (val->alias_of >= 0 || val->kind == MB_VAL_PARAM || val->grad_slot >= 0)
    return 0;
  if (val->kind == MB_VAL_INPUT)
    return 1;
  return val->producer >= 0;
}

/* Offsets from the lifetimes already in p (first/last/ws_bytes). */
static int layout(mb_graph *g, struct mb_plan *p) {
  int N = p->n_pos, nb = 0;
  for (int v = 0; v < g->nvals; v++)
    nb += in_arena(g, v);
  for (int pos = 0; pos < N; pos++)
    nb += p->ws_bytes[pos] > 0;
  plan_buf *bufs = malloc((size_t)(nb ? nb : 1) * sizeof *bufs);
  if (!bufs)
    return MB_ERR(MB_ENOMEM, "planner buffers");
  int k = 0;
  size_t sum = 0, act = 0;
  for (int v = 0; v < g->nvals; v++) {
    if (!in_arena(g, v))
      continue;
    size_t sz = mb_align_up(mb_value_bytes(&g->vals[v]), MB_ALIGN);
    if (sz == 0)
      sz = MB_ALIGN;
    bufs[k++] = (plan_buf){sz, p->first[v], p->last[v], v, -1};
    sum += sz;
    if (g->vals[v].kind == MB_VAL_INTERMEDIATE && g->vals[v].tape == 0 && p->last[v] >= g->ntape[0] &&
        !g->vals[v].is_output)
      act += sz;
  }
  for (int pos = 0; pos < N; pos++)
    if (p->ws_bytes[pos] > 0) {
      size_t sz = mb_align_up(p->ws_bytes[pos], MB_ALIGN);
      bufs[k++] = (plan_buf){sz, pos, pos, -(pos + 1), -1};
      sum += sz;
    }
  size_t arena = 0;
  int rc = place(bufs, nb, g->opts.no_reuse, &arena);
  if (rc != MB_OK) {
    free(bufs);
    return rc;
  }
  for (int v = 0; v < g->nvals; v++)
    p->offset[v] = -1;
  for (int pos = 0; pos < N; pos++)
    p->ws_offset[pos] = -1;
  for (int i = 0; i < nb; i++) {
    if (bufs[i].value >= 0)
      p->offset[bufs[i].value] = bufs[i].offset;
    else
      p->ws_offset[-bufs[i].value - 1] = bufs[i].offset;
  }
  free(bufs);
  p->arena_bytes = arena;
  p->sum_bytes = sum;
  p->activation_bytes = act;
  p->n_buffers = nb;

  /* Which arena buffers die at each position (for poisoning). */
  free(p->die_begin);
  free(p->die_list);
  p->die_begin = calloc((size_t)N + 2, sizeof *p->die_begin);
  p->die_list = malloc((size_t)(g->nvals ? g->nvals : 1) * sizeof *p->die_list);
  if (!p->die_begin || !p->die_list)
    return MB_ERR(MB_ENOMEM, "planner death lists");
  for (int v = 0; v < g->nvals; v++)
    if (p->offset[v] >= 0 && g->vals[v].kind == MB_VAL_INTERMEDIATE && !g->vals[v].is_output && p->last[v] < N)
      p->die_begin[p->last[v] + 1]++;
  for (int pos = 0; pos < N + 1; pos++)
    p->die_begin[pos + 1] += p->die_begin[pos];
  int32_t *fill = calloc((size_t)N + 1, sizeof *fill);
  if (!fill)
    return MB_ERR(MB_ENOMEM, "planner death lists");
  for (int v = 0; v < g->nvals; v++)
    if (p->offset[v] >= 0 && g->vals[v].kind == MB_VAL_INTERMEDIATE && !g->vals[v].is_output && p->last[v] < N) {
      int pos = p->last[v];
      p->die_list[p->die_begin[pos] + fill[pos]++] = v;
    }
  free(fill);
  return MB_OK;
}

int mb_plan_build(mb_graph *g) {
  struct mb_plan *p = calloc(1, sizeof *p);
  if (!p)
    return MB_ERR(MB_ENOMEM, "allocating a plan");
  int N = g->ntape[0] + g->ntape[1];
  p->n_pos = N;
  size_t nv = (size_t)(g->nvals ? g->nvals : 1);
  p->offset = malloc(nv * sizeof *p->offset);
  p->first = malloc(nv * sizeof *p->first);
  p->last = malloc(nv * sizeof *p->last);
  p->ws_offset = malloc((size_t)(N ? N : 1) * sizeof *p->ws_offset);
  p->ws_bytes = calloc((size_t)(N ? N : 1), sizeof *p->ws_bytes);
  if (!p->offset || !p->first || !p->last || !p->ws_offset || !p->ws_bytes) {
    mb_plan_free(p);
    return MB_ERR(MB_ENOMEM, "plan tables for %d values", g->nvals);
  }
  for (int v = 0; v < g->nvals; v++) {
    const mb_value *val = &g->vals[v];
    int def = -1;
    if (val->kind == MB_VAL_INTERMEDIATE && val->producer >= 0)
      def = val->tape == 0 ? val->producer : g->ntape[0] + val->producer;
    p->first[v] = val->kind == MB_VAL_INPUT ? 0 : def;
    p->last[v] = val->kind == MB_VAL_INPUT ? N - 1 : def;
  }
  for (int pos = 0; pos < N; pos++) {
    const mb_node *n = node_at(g, pos);
    for (int j = 0; j < n->n_in; j++) {
      int32_t r = mb_graph_root(g, n->in[j]);
      if (p->last[r] < pos)
        p->last[r] = pos;
    }
    /* A view is written where its root is: the root lives while the view is read. */
    for (int k = 0; k < n->n_out; k++) {
      int32_t r = mb_graph_root(g, n->out[k]);
      if (p->last[r] < pos)
        p->last[r] = pos;
    }
    size_t ws = 0;
    for (int be = 0; be < MB_BACKEND_COUNT; be++) {
      mb_workspace_fn f = mb_op_workspace(n->op, (mb_backend_id)be);
      size_t w = f ? f(g, n) : 0;
      if (w > ws)
        ws = w;
    }
    p->ws_bytes[pos] = ws;
  }
  for (int v = 0; v < g->nvals; v++)
    if (g->vals[v].is_output) {
      int32_t r = mb_graph_root(g, v);
      p->last[r] = N > 0 ? N - 1 : 0;
      if (p->first[r] < 0)
        p->first[r] = 0;
    }
  for (int i = 0; i < g->ntape[1]; i++)
    p->n_recomputed += g->tape[1][i].recomputed;
  int rc = layout(g, p);
  if (rc != MB_OK) {
    mb_plan_free(p);
    return rc;
  }
  if (g->plan)
    mb_plan_free(g->plan);
  g->plan = p;
  return MB_OK;
}

mb_plan_stats mb_graph_plan_stats(const mb_graph *g) {
  mb_plan_stats s;
  memset(&s, 0, sizeof s);
  if (!g->plan)
    return s;
  s.arena_bytes = g->plan->arena_bytes;
  s.sum_bytes = g->plan->sum_bytes;
  s.activation_bytes = g->plan->activation_bytes;
  s.n_buffers = g->plan->n_buffers;
  s.n_nodes_fwd = g->ntape[0];
  s.n_nodes_bwd = g->ntape[1];
  s.n_recomputed = g->plan->n_recomputed;
  return s;
}

int64_t mb_graph_plan_offset(const mb_graph *g, mb_var v, int *first, int *last) {
  if (!g->plan || v.id < 0 || v.id >= g->nvals)
    return -1;
  int32_t r = mb_graph_root(g, v.id);
  if (first)
    *first = g->plan->first[r];
  if (last)
    *last = g->plan->last[r];
  return g->plan->offset[r];
}

int mb_graph_plan_debug_truncate(mb_graph *g, mb_var v, int last) {
  if (!g->plan || v.id < 0 || v.id >= g->nvals)
    return MB_ERR(MB_EINVAL, "mb_graph_plan_debug_truncate: no plan or bad value");
  int32_t r = mb_graph_root(g, v.id);
  if (last < g->plan->first[r])
    last = g->plan->first[r];
  g->plan->last[r] = last;
  return layout(g, g->plan);
}
