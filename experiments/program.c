/* program.c: per-shape programs of a net plus labels and loss (program.h). */
#include "experiments/program.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/alloc.h"

#define MAX_PROGRAMS 256

typedef struct {
  mb_graph *g;
  mb_var logits, loss;
} program_vars;

struct mb_net_programs {
  mb_net *net;
  mb_program_cache *cache;
  int train;
  int profiling;
  int n;
  program_vars vars[MAX_PROGRAMS];
};

/* key = {packed, rows, seq_len}; the train flag is the cache's */
static int build_program(void *user, mb_graph *g, const int64_t *key, int nkey) {
  mb_net_programs *p = user;
  if (nkey != 3)
    return MB_ERR(MB_EINTERNAL, "program key of %d values", nkey);
  if (p->n >= MAX_PROGRAMS)
    return MB_ERR(MB_EUNSUPPORTED, "more than %d batch shapes; use data.bucket_multiple to bucket lengths",
                  MAX_PROGRAMS);
  mb_net_shape s = {(int)key[0], key[1], key[2], p->train};
  MB_TRY(p->net->ops->build(p->net, g, &s));
  MB_TRY(mb_graph_status(g));
  p->vars[p->n].g = g;
  p->vars[p->n].logits = p->net->ops->logits(p->net, g);
  p->vars[p->n].loss = p->net->ops->loss(p->net, g);
  if (!mb_var_ok(p->vars[p->n].logits) || !mb_var_ok(p->vars[p->n].loss))
    return MB_ERR(MB_EINTERNAL, "the %s program has no logits or loss", p->net->arch);
  p->n++;
  return MB_OK;
}

int mb_net_programs_new(mb_net *net, mb_backend *be, const mb_compile_opts *opts, mb_net_programs **out) {
  mb_net_programs *p = calloc(1, sizeof *p);
  if (!p)
    return MB_ERR(MB_ENOMEM, "out of memory");
  p->net = net;
  p->train = opts->train;
  int rc = mb_program_cache_new(net->params, be, opts, build_program, p, &p->cache);
  if (rc != MB_OK) {
    free(p);
    return rc;
  }
  *out = p;
  return MB_OK;
}

void mb_net_programs_free(mb_net_programs *p) {
  if (!p)
    return;
  mb_program_cache_free(p->cache);
  free(p);
}

int mb_net_programs_run_inputs(mb_net_programs *p, const mb_batch *b, const uint64_t rng[2], mb_exec **ex_out,
                               mb_var *logits, mb_var *loss) {
  const int packed = b->mode == MB_BATCH_PACKED;
  if (packed && !p->net->supports_packed)
    return MB_ERR(MB_EUNSUPPORTED, "the %s model takes padded batches only (data.batching: padded)", p->net->arch);
  int64_t key[3] = {packed, b->rows, b->seq_len};
  mb_exec *ex;
  MB_TRY(mb_program_cache_get(p->cache, key, 3, &ex));
  mb_graph *g = mb_exec_graph(ex);
  const program_vars *v = NULL;
  for (int i = 0; i < p->n; i++)
    if (p->vars[i].g == g)
      v = &p->vars[i];
  MB_CHECK(v != NULL);
  if (p->profiling)
    mb_exec_set_profiling(ex, 1);
  MB_TRY(p->net->ops->feed(p->net, ex, b, rng));
  *ex_out = ex;
  *logits = v->logits;
  *loss = v->loss;
  return MB_OK;
}

size_t mb_net_programs_arena_bytes(const mb_net_programs *p) {
  size_t m = 0;
  for (int i = 0; i < p->n; i++) {
    mb_plan_stats s = mb_graph_plan_stats(p->vars[i].g);
    if (s.arena_bytes > m)
      m = s.arena_bytes;
  }
  return m;
}

int mb_net_programs_count(const mb_net_programs *p) { return p->n; }

void mb_net_programs_set_profiling(mb_net_programs *p, int on) { p->profiling = on; }

void mb_net_programs_profile_print(mb_net_programs *p, FILE *f) {
  for (int i = 0; i < p->n; i++) {
    mb_exec *ex;
    const mb_value *ids = NULL;
    mb_var in = mb_graph_find_input(p->vars[i].g, "input_ids");
    if (mb_var_ok(in))
      ids = mb_graph_value(p->vars[i].g, in);
    char shape[64] = "?";
    if (ids)
      mb_shape_str(&ids->shape, shape, sizeof shape);
    /* the cache hands out the executor of a graph by its key: look it up again */
    int64_t key[3] = {ids && ids->shape.ndim == 1, ids ? (ids->shape.ndim == 1 ? 0 : ids->shape.dim[0]) : 0,
                      ids ? ids->shape.dim[ids->shape.ndim - 1] : 0};
    if (key[0]) { /* packed: rows are the labels' */
      mb_var lab = mb_graph_find_input(p->vars[i].g, "labels");
      key[1] = mb_var_ok(lab) ? mb_graph_value(p->vars[i].g, lab)->shape.dim[0] : 0;
    }
    if (mb_program_cache_get(p->cache, key, 3, &ex) != MB_OK || mb_exec_graph(ex) != p->vars[i].g) {
      mb_error_clear();
      continue;
    }
    fprintf(f, "profile of the program for input_ids %s:\n", shape);
    mb_exec_profile_print(ex, f);
  }
}
