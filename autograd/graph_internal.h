/* graph_internal.h: the graph and plan structures shared by the autograd's
 * own files (graph.c, backward.c, plan.c, exec.c). Not for model code. */
#ifndef MB_AUTOGRAD_GRAPH_INTERNAL_H
#define MB_AUTOGRAD_GRAPH_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "autograd/backend.h"
#include "autograd/graph.h"
#include "autograd/op.h"
#include "autograd/params.h"

#define MB_SCOPE_DEPTH 32

struct mb_plan {
  int n_pos;           /* forward nodes + backward nodes */
  int64_t *offset;     /* per value: arena byte offset, -1 if not in the arena */
  int32_t *first;      /* per value: position defined (-1: before the first node) */
  int32_t *last;       /* per value: position of last use */
  int64_t *ws_offset;  /* per position: workspace offset (-1 none) */
  size_t *ws_bytes;    /* per position */
  int32_t *die_begin;  /* per position + 1: CSR into die_list */
  int32_t *die_list;   /* storage roots whose lifetime ends at that position */
  size_t arena_bytes, sum_bytes, activation_bytes;
  int n_buffers;
  int n_recomputed;
};

struct mb_graph {
  mb_params *params;
  uint64_t params_generation; /* store generation seen at compile */

  mb_value *vals;
  int nvals, capvals;

  mb_node *tape[2];
  int ntape[2], captape[2];
  int cur_tape; /* where builders append: 0 forward, 1 backward */

  int status;
  char *errmsg;

  char **scopes; /* full dotted names */
  int nscopes, capscopes;
  int scope_stack[MB_SCOPE_DEPTH];
  int scope_depth;
  int cur_layer; /* -1 outside a layer */
  int layer_depth_at_begin;
  int nlayers;

  int32_t loss;
  int32_t *grad; /* per value after backward (capvals long), -1 none */
  int has_backward;
  int compiled;
  mb_compile_opts opts;

  mb_backend *eager;
  struct mb_plan *plan;
};

/* Storage root of a value (follows alias_of). */
static inline int32_t mb_graph_root(const mb_graph *g, int32_t v) {
  while (g->vals[v].alias_of >= 0)
    v = g->vals[v].alias_of;
  return v;
}

static inline size_t mb_value_bytes(const mb_value *v) {
  return (size_t)mb_shape_numel(&v->shape) * mb_dtype_size(v->dtype);
}

/* graph.c */
int mb_graph_new_value(mb_graph *g, mb_dtype dt, mb_shape shape, int kind, const char *name, int32_t *out);
int mb_graph_append_node(mb_graph *g, int tape, const mb_node *n);
/* Run one node eagerly (allocating its outputs). */
int mb_graph_eager_run(mb_graph *g, const mb_node *n);
int mb_graph_set_error(mb_graph *g, int code);
void mb_graph_value_label(const mb_graph *g, int32_t v, char *buf, size_t cap);

/* backward.c */
int mb_graph_dce(mb_graph *g);

/* plan.c */
int mb_plan_build(mb_graph *g);
void mb_plan_free(struct mb_plan *p);

/* params.c (internal) */
int mb_params_lookup_or_add(mb_params *p, const char *name, mb_shape shape, int *index, char *why, size_t cap);

#endif
