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
  int n;
  program_vars vars[MAX_PROGRAMS];
  int32_t *labels; /* scratch: loader labels with -1 -> -100 */
  int64_t labels_cap;
};

/* key = {packed, rows, seq_len} */
static int build_program(void *user, mb_graph *g, const int64_t *key, int nkey) {
  mb_net_programs *p = user;
  if (nkey != 3)
    return MB_ERR(MB_EINTERNAL, "program key of %d values", nkey);
  if (p->n >= MAX_PROGRAMS)
    return MB_ERR(MB_EUNSUPPORTED, "more than %d batch shapes; use data.bucket_multiple to bucket lengths",
                  MAX_PROGRAMS);
  mb_net_shape s = {(int)key[0], key[1], key[2], p->train};
  mb_var logits = MB_VAR_NONE;
  MB_TRY(p->net->ops->build(p->net, g, &s, &logits));
  mb_var labels = mb_input(g, "labels", MB_I32, mb_shape1(s.rows));
  mb_var loss = mb_cross_entropy(g, logits, labels);
  mb_mark_output(g, logits);
  mb_set_loss(g, loss);
  MB_TRY(mb_graph_status(g));
  p->vars[p->n].g = g;
  p->vars[p->n].logits = logits;
  p->vars[p->n].loss = loss;
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
  mb_host_free(p->labels);
  free(p);
}

static int feed_if_declared(mb_exec *ex, mb_graph *g, const char *name, const void *data) {
  mb_var v = mb_graph_find_input(g, name);
  if (!mb_var_ok(v))
    return MB_OK;
  if (!data)
    return MB_ERR(MB_EINTERNAL, "the model reads input '%s', which this batch does not have", name);
  return mb_exec_set_input(ex, v, data);
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
  if (b->rows > p->labels_cap) {
    mb_host_free(p->labels);
    p->labels = mb_host_malloc((size_t)b->rows * sizeof(int32_t));
    if (!p->labels) {
      p->labels_cap = 0;
      return MB_ERR(MB_ENOMEM, "out of memory");
    }
    p->labels_cap = b->rows;
  }
  for (int32_t i = 0; i < b->rows; i++)
    p->labels[i] = b->labels[i] < 0 ? -100 : b->labels[i];
  MB_TRY(feed_if_declared(ex, g, "input_ids", b->input_ids));
  MB_TRY(feed_if_declared(ex, g, "attention_mask", b->attention_mask));
  MB_TRY(feed_if_declared(ex, g, "position_ids", b->position_ids));
  MB_TRY(feed_if_declared(ex, g, "cu_seqlens", b->cu_seqlens));
  MB_TRY(feed_if_declared(ex, g, "labels", p->labels));
  MB_TRY(feed_if_declared(ex, g, "dropout_rng", rng));
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
