/* exec.c: the executor (bind a compiled graph to a backend's memory and
 * replay its tapes), gradient-ready hooks, per-node timing, poisoning of
 * dead buffers, and the cache of compiled programs keyed by shape. */
#include "autograd/exec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd/graph_internal.h"
#include "autograd/params.h"
#include "runtime/alloc.h"

struct mb_exec {
  mb_graph *g;
  mb_backend *be;
  void *arena;
  size_t arena_bytes;
  int owns_arena;
  void **ptr;                /* per value */
  mb_kernel_call *calls[2];  /* per node, pointers bound */
  mb_kernel_fn *fns[2];
  mb_grad_ready *ready;      /* in backward order */
  int nready;
  int *ready_begin;          /* per backward node + 1: CSR into ready */
  mb_grad_ready_fn hook;
  void *hook_user;
  mb_node_hook_fn node_hook; /* timelines: every node's start and end */
  void *node_hook_user;
  int profiling;
  mb_node_time *times;       /* forward nodes then backward nodes */
  int forward_done;
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Pointers of every value and the kernel calls of every node. */
static void bind_pointers(mb_exec *ex) {
  mb_graph *g = ex->g;
  const struct mb_plan *p = g->plan;
  mb_params *params = g->params;
  size_t es = mb_dtype_size(mb_params_dtype(params));
  for (int v = 0; v < g->nvals; v++) {
    int32_t r = mb_graph_root(g, v);
    const mb_value *rv = &g->vals[r];
    void *ptr = NULL;
    if (rv->kind == MB_VAL_PARAM)
      ptr = (char *)mb_params_data(params) + (size_t)mb_params_info(params, rv->param_index)->offset * es;
    else if (rv->grad_slot >= 0)
      ptr = (char *)mb_params_grad(params) + (size_t)mb_params_info(params, rv->grad_slot)->offset * es;
    else if (p->offset[r] >= 0 && ex->arena)
      ptr = (char *)ex->arena + p->offset[r];
    ex->ptr[v] = ptr;
  }
  for (int t = 0; t < 2; t++)
    for (int i = 0; i < g->ntape[t]; i++) {
      const mb_node *n = &g->tape[t][i];
      mb_kernel_call *k = &ex->calls[t][i];
      memset(k, 0, sizeof *k);
      k->node = n;
      k->backend = ex->be;
      k->n_in = n->n_in;
      k->n_out = n->n_out;
      for (int j = 0; j < n->n_in; j++) {
        const mb_value *v = &g->vals[n->in[j]];
        mb_tensor_wrap(&k->in[j], v->dtype, v->shape, ex->be->device, ex->ptr[n->in[j]]);
      }
      for (int j = 0; j < n->n_out; j++) {
        const mb_value *v = &g->vals[n->out[j]];
        mb_tensor_wrap(&k->out[j], v->dtype, v->shape, ex->be->device, ex->ptr[n->out[j]]);
      }
      int pos = t ? g->ntape[0] + i : i;
      if (p->ws_offset[pos] >= 0 && ex->arena) {
        k->workspace = (char *)ex->arena + p->ws_offset[pos];
        k->workspace_bytes = p->ws_bytes[pos];
      }
    }
}

static int build_ready(mb_exec *ex) {
  mb_graph *g = ex->g;
  int nb = g->ntape[1];
  ex->ready_begin = calloc((size_t)nb + 2, sizeof *ex->ready_begin);
  ex->ready = malloc((size_t)(mb_params_count(g->params) + 1) * sizeof *ex->ready);
  if (!ex->ready_begin || !ex->ready)
    return MB_ERR(MB_ENOMEM, "gradient-ready table");
  int n = 0;
  for (int i = 0; i < nb; i++) {
    ex->ready_begin[i] = n;
    const mb_node *nd = &g->tape[1][i];
    for (int k = 0; k < nd->n_out; k++) {
      int slot = g->vals[nd->out[k]].grad_slot;
      if (slot < 0)
        continue;
      const mb_param_info *pi = mb_params_info(g->params, slot);
      ex->ready[n++] = (mb_grad_ready){slot, pi->name, pi->offset, pi->numel, i};
    }
  }
  ex->ready_begin[nb] = n;
  ex->nready = n;
  return MB_OK;
}

static int exec_create(mb_graph *g, mb_backend *be, int own_arena, mb_exec **out) {
  *out = NULL;
  if (!g->compiled)
    return MB_ERR(MB_EINVAL, "mb_exec_new: compile the graph first (mb_graph_compile)");
  if (!be)
    return MB_ERR(MB_EINVAL, "mb_exec_new: no backend");
  /* Every op must have a kernel on this backend: say which is missing now,
   * not mid-step. */
  for (int t = 0; t < 2; t++)
    for (int i = 0; i < g->ntape[t]; i++) {
      const mb_node *n = &g->tape[t][i];
      const mb_op_def *def = mb_op_get(n->op);
      if (!(def->flags & MB_OPF_VIEW) && !mb_op_kernel(n->op, be->id))
        return MB_ERR(MB_EUNSUPPORTED,
                      "op '%s' (node %c%d) has no %s kernel registered; backends register their kernels when "
                      "they are created (mb_cpu_backend() for the CPU)",
                      def->name, t ? 'b' : 'f', i, be->name);
    }
  /* Workspaces were sized at compile with the kernels registered then; a
   * backend created later may need more: plan again. */
  for (int t = 0, replan = 0; t < 2 && !replan; t++)
    for (int i = 0; i < g->ntape[t] && !replan; i++) {
      mb_workspace_fn f = mb_op_workspace(g->tape[t][i].op, be->id);
      if (f && f(g, &g->tape[t][i]) > g->plan->ws_bytes[t ? g->ntape[0] + i : i]) {
        replan = 1;
        MB_TRY(mb_plan_build(g));
      }
    }
  MB_TRY(mb_params_materialize(g->params, be));
  mb_exec *ex = calloc(1, sizeof *ex);
  if (!ex)
    return MB_ERR(MB_ENOMEM, "allocating an executor");
  ex->g = g;
  ex->be = be;
  size_t nv = (size_t)(g->nvals ? g->nvals : 1);
  ex->ptr = calloc(nv, sizeof *ex->ptr);
  for (int t = 0; t < 2; t++) {
    ex->calls[t] = calloc((size_t)g->ntape[t] + 1, sizeof *ex->calls[t]);
    ex->fns[t] = calloc((size_t)g->ntape[t] + 1, sizeof *ex->fns[t]);
  }
  ex->times = calloc((size_t)(g->ntape[0] + g->ntape[1]) + 1, sizeof *ex->times);
  if (!ex->ptr || !ex->calls[0] || !ex->calls[1] || !ex->fns[0] || !ex->fns[1] || !ex->times) {
    mb_exec_free(ex);
    return MB_ERR(MB_ENOMEM, "executor tables");
  }
  for (int t = 0; t < 2; t++)
    for (int i = 0; i < g->ntape[t]; i++) {
      const mb_node *n = &g->tape[t][i];
      ex->fns[t][i] = (mb_op_get(n->op)->flags & MB_OPF_VIEW) ? NULL : mb_op_kernel(n->op, be->id);
      ex->times[t ? g->ntape[0] + i : i] = (mb_node_time){t, i, n->op, 0.0, 0};
    }
  int rc = build_ready(ex);
  if (rc == MB_OK && own_arena)
    rc = mb_exec_bind_arena(ex, NULL, 0);
  if (rc != MB_OK) {
    mb_exec_free(ex);
    return rc;
  }
  *out = ex;
  return MB_OK;
}

int mb_exec_new(mb_graph *g, mb_backend *be, mb_exec **out) { return exec_create(g, be, 1, out); }

void mb_exec_free(mb_exec *ex) {
  if (!ex)
    return;
  if (ex->owns_arena && ex->arena)
    ex->be->free(ex->be, ex->arena);
  free(ex->ptr);
  free(ex->calls[0]);
  free(ex->calls[1]);
  free(ex->fns[0]);
  free(ex->fns[1]);
  free(ex->ready);
  free(ex->ready_begin);
  free(ex->times);
  free(ex);
}

mb_graph *mb_exec_graph(mb_exec *ex) { return ex->g; }
mb_backend *mb_exec_backend(mb_exec *ex) { return ex->be; }

int mb_exec_bind_arena(mb_exec *ex, void *base, size_t bytes) {
  size_t need = ex->g->plan->arena_bytes;
  if (ex->owns_arena && ex->arena)
    ex->be->free(ex->be, ex->arena);
  ex->arena = NULL;
  ex->owns_arena = 0;
  if (base) {
    if (bytes < need)
      return MB_ERR(MB_EINVAL, "arena of %zu bytes is smaller than the plan's %zu", bytes, need);
    ex->arena = base;
    ex->arena_bytes = bytes;
  } else {
    int rc = ex->be->alloc(ex->be, need ? need : MB_ALIGN, &ex->arena);
    if (rc != MB_OK)
      return mb_error_context(rc, "activation arena of %zu bytes", need);
    ex->arena_bytes = need;
    ex->owns_arena = 1;
  }
  bind_pointers(ex);
  if (ex->g->opts.poison)
    MB_TRY(ex->be->fill(ex->be, ex->arena, MB_U8, ex->arena_bytes, NAN));
  ex->forward_done = 0;
  return MB_OK;
}

void *mb_exec_ptr(mb_exec *ex, mb_var v) {
  if (v.id < 0 || v.id >= ex->g->nvals)
    return NULL;
  return ex->ptr[v.id];
}

int mb_exec_set_input(mb_exec *ex, mb_var input, const void *host) {
  mb_graph *g = ex->g;
  if (input.id < 0 || input.id >= g->nvals || g->vals[input.id].kind != MB_VAL_INPUT)
    return MB_ERR(MB_EINVAL, "mb_exec_set_input: value %d is not an input of this graph", (int)input.id);
  if (!ex->ptr[input.id])
    return MB_ERR(MB_EINTERNAL, "input '%s' has no planned storage", g->vals[input.id].name);
  return ex->be->copy_in(ex->be, ex->ptr[input.id], host, mb_value_bytes(&g->vals[input.id]));
}

int mb_exec_set_input_by_name(mb_exec *ex, const char *name, const void *host) {
  mb_var v = mb_graph_find_input(ex->g, name);
  if (!mb_var_ok(v))
    return MB_ERR(MB_ENOTFOUND, "mb_exec_set_input: no input named '%s'", name);
  return mb_exec_set_input(ex, v, host);
}

int mb_exec_get(mb_exec *ex, mb_var v, void *host) {
  mb_graph *g = ex->g;
  if (v.id < 0 || v.id >= g->nvals)
    return MB_ERR(MB_EINVAL, "mb_exec_get: value %d is not in this graph", (int)v.id);
  if (!ex->ptr[v.id])
    return MB_ERR(MB_EINVAL, "mb_exec_get: value %%%d has no storage (removed as dead code? mark it with "
                             "mb_mark_output before compiling)", (int)v.id);
  return ex->be->copy_out(ex->be, host, ex->ptr[v.id], mb_value_bytes(&g->vals[v.id]));
}

static int poison_values(mb_exec *ex, const int32_t *vals, int n) {
  for (int i = 0; i < n; i++) {
    const mb_value *v = &ex->g->vals[vals[i]];
    MB_TRY(ex->be->fill(ex->be, ex->ptr[vals[i]], v->dtype, (size_t)mb_shape_numel(&v->shape), NAN));
  }
  return MB_OK;
}

int mb_exec_run_node(mb_exec *ex, int tape, int i) {
  mb_graph *g = ex->g;
  const mb_kernel_call *k = &ex->calls[tape][i];
  const mb_node *n = k->node;
  int pos = tape ? g->ntape[0] + i : i;
  int poison = g->opts.poison;
  mb_kernel_fn fn = ex->fns[tape][i];
  if (fn) {
    if (poison && !(mb_op_get(n->op)->flags & MB_OPF_READS_OUTPUT))
      for (int j = 0; j < k->n_out; j++)
        MB_TRY(ex->be->fill(ex->be, k->out[j].data, k->out[j].dtype, (size_t)mb_tensor_numel(&k->out[j]), NAN));
    double t0 = ex->profiling || ex->node_hook ? now_s() : 0.0;
    int rc = fn(k);
    if (rc != MB_OK)
      return mb_error_context(rc, "running %s node %c%d '%s' (recorded at %s:%d)", ex->be->name, tape ? 'b' : 'f', i,
                              mb_op_name(n->op), n->where.file ? n->where.file : "?", n->where.line);
    if (ex->profiling) {
      if (ex->be->sync)
        MB_TRY(ex->be->sync(ex->be));
      ex->times[pos].seconds += now_s() - t0;
      ex->times[pos].calls++;
    }
    if (ex->node_hook)
      ex->node_hook(ex->node_hook_user, tape, i, mb_op_name(n->op), t0, now_s());
  }
  if (poison) {
    const struct mb_plan *p = g->plan;
    MB_TRY(poison_values(ex, p->die_list + p->die_begin[pos], p->die_begin[pos + 1] - p->die_begin[pos]));
  }
  if (tape == 1 && ex->hook)
    for (int r = ex->ready_begin[i]; r < ex->ready_begin[i + 1]; r++)
      ex->hook(ex->hook_user, &ex->ready[r]);
  return MB_OK;
}

static int check_runnable(mb_exec *ex) {
  if (!ex->arena)
    return MB_ERR(MB_EINVAL, "executor has no arena bound");
  if (mb_params_generation(ex->g->params) != ex->g->params_generation)
    return MB_ERR(MB_EINVAL, "parameter trainability changed after this program was compiled: build and compile "
                             "it again");
  return MB_OK;
}

static int run_tape(mb_exec *ex, int tape) {
  MB_TRY(check_runnable(ex));
  if (ex->be->run_tape)
    return ex->be->run_tape(ex->be, ex, tape);
  int n = ex->g->ntape[tape];
  for (int i = 0; i < n; i++)
    MB_TRY(mb_exec_run_node(ex, tape, i));
  return MB_OK;
}

int mb_exec_forward(mb_exec *ex) {
  ex->forward_done = 0;
  MB_TRY(run_tape(ex, 0));
  ex->forward_done = 1;
  return MB_OK;
}

int mb_exec_backward(mb_exec *ex) {
  if (!ex->g->has_backward)
    return MB_ERR(MB_EINVAL, "mb_exec_backward: compiled without train = 1, there is no backward tape");
  if (!ex->forward_done)
    return MB_ERR(MB_EINVAL, "mb_exec_backward: run mb_exec_forward first");
  return run_tape(ex, 1);
}

int mb_exec_grad_ready_after(mb_exec *ex, int index, const mb_grad_ready **infos) {
  if (index < 0 || index >= ex->g->ntape[1]) {
    *infos = NULL;
    return 0;
  }
  *infos = ex->ready + ex->ready_begin[index];
  return ex->ready_begin[index + 1] - ex->ready_begin[index];
}

void mb_exec_on_grad_ready(mb_exec *ex, mb_grad_ready_fn fn, void *user) {
  ex->hook = fn;
  ex->hook_user = user;
}

void mb_exec_on_node(mb_exec *ex, mb_node_hook_fn fn, void *user) {
  ex->node_hook = fn;
  ex->node_hook_user = user;
}

const mb_grad_ready *mb_exec_grad_order(mb_exec *ex, int *n) {
  *n = ex->nready;
  return ex->ready;
}

/* ---- profiling ---- */

void mb_exec_set_profiling(mb_exec *ex, int on) { ex->profiling = on; }

const mb_node_time *mb_exec_profile(mb_exec *ex, int *n) {
  *n = ex->g->ntape[0] + ex->g->ntape[1];
  return ex->times;
}

void mb_exec_profile_reset(mb_exec *ex) {
  int n = ex->g->ntape[0] + ex->g->ntape[1];
  for (int i = 0; i < n; i++) {
    ex->times[i].seconds = 0;
    ex->times[i].calls = 0;
  }
}

void mb_exec_profile_print(mb_exec *ex, FILE *f) {
  double per_op[MB_OP_COUNT][2] = {{0}};
  int64_t calls[MB_OP_COUNT][2] = {{0}};
  double total = 0;
  int n = ex->g->ntape[0] + ex->g->ntape[1];
  for (int i = 0; i < n; i++) {
    const mb_node_time *t = &ex->times[i];
    per_op[t->op][t->tape] += t->seconds;
    calls[t->op][t->tape] += t->calls;
    total += t->seconds;
  }
  fprintf(f, "%-20s %-4s %10s %8s %7s\n", "op", "tape", "ms", "calls", "share");
  for (;;) {
    int best = -1, bt = 0;
    for (int op = 0; op < MB_OP_COUNT; op++)
      for (int t = 0; t < 2; t++)
        if (calls[op][t] > 0 && (best < 0 || per_op[op][t] > per_op[best][bt]))
          best = op, bt = t;
    if (best < 0)
      break;
    fprintf(f, "%-20s %-4s %10.3f %8lld %6.1f%%\n", mb_op_name(best), bt ? "bwd" : "fwd", 1e3 * per_op[best][bt],
            (long long)calls[best][bt], total > 0 ? 100.0 * per_op[best][bt] / total : 0.0);
    calls[best][bt] = 0;
  }
  fprintf(f, "%-20s %-4s %10.3f\n", "total", "", 1e3 * total);
}

/* ---- program cache ---- */

#define MB_CACHE_KEY_MAX 8

typedef struct {
  int64_t key[MB_CACHE_KEY_MAX];
  int nkey;
  mb_graph *g;
  mb_exec *ex;
} cache_entry;

struct mb_program_cache {
  mb_params *params;
  mb_backend *be;
  mb_compile_opts opts;
  mb_build_fn build;
  void *user;
  cache_entry *e;
  int n, cap;
  void *arena;
  size_t arena_bytes;
};

int mb_program_cache_new(mb_params *params, mb_backend *be, const mb_compile_opts *opts, mb_build_fn build,
                         void *user, mb_program_cache **out) {
  *out = NULL;
  if (!params || !be || !build)
    return MB_ERR(MB_EINVAL, "mb_program_cache_new: params, backend and build function are required");
  mb_program_cache *c = calloc(1, sizeof *c);
  if (!c)
    return MB_ERR(MB_ENOMEM, "allocating a program cache");
  c->params = params;
  c->be = be;
  if (opts)
    c->opts = *opts;
  c->build = build;
  c->user = user;
  *out = c;
  return MB_OK;
}

void mb_program_cache_free(mb_program_cache *c) {
  if (!c)
    return;
  for (int i = 0; i < c->n; i++) {
    mb_exec_free(c->e[i].ex);
    mb_graph_free(c->e[i].g);
  }
  free(c->e);
  if (c->arena)
    c->be->free(c->be, c->arena);
  free(c);
}

int mb_program_cache_size(const mb_program_cache *c) { return c->n; }

int mb_program_cache_get(mb_program_cache *c, const int64_t *key, int nkey, mb_exec **out) {
  *out = NULL;
  if (nkey < 1 || nkey > MB_CACHE_KEY_MAX)
    return MB_ERR(MB_EINVAL, "program cache keys have 1 to %d entries, got %d", MB_CACHE_KEY_MAX, nkey);
  for (int i = 0; i < c->n; i++)
    if (c->e[i].nkey == nkey && memcmp(c->e[i].key, key, (size_t)nkey * sizeof *key) == 0) {
      *out = c->e[i].ex;
      return MB_OK;
    }
  if (c->n == c->cap) {
    int cap = c->cap ? c->cap * 2 : 8;
    cache_entry *ne = realloc(c->e, (size_t)cap * sizeof *ne);
    if (!ne)
      return MB_ERR(MB_ENOMEM, "growing the program cache");
    c->e = ne;
    c->cap = cap;
  }
  char keystr[160];
  size_t used = 0;
  for (int i = 0; i < nkey; i++)
    used += (size_t)snprintf(keystr + used, sizeof keystr - used, i ? ",%lld" : "%lld", (long long)key[i]);
  mb_graph *g;
  MB_TRY(mb_graph_new(c->params, &g));
  int rc = c->build(c->user, g, key, nkey);
  if (rc == MB_OK)
    rc = mb_graph_status(g);
  if (rc == MB_OK)
    rc = mb_graph_compile(g, &c->opts);
  mb_exec *ex = NULL;
  if (rc == MB_OK)
    rc = exec_create(g, c->be, 0, &ex);
  if (rc != MB_OK) {
    mb_graph_free(g);
    return mb_error_context(rc, "building the program for shape key (%s)", keystr);
  }
  size_t need = g->plan->arena_bytes ? g->plan->arena_bytes : MB_ALIGN;
  if (need > c->arena_bytes) {
    void *na;
    rc = c->be->alloc(c->be, need, &na);
    if (rc != MB_OK) {
      mb_exec_free(ex);
      mb_graph_free(g);
      return mb_error_context(rc, "growing the shared arena to %zu bytes", need);
    }
    if (c->arena)
      c->be->free(c->be, c->arena);
    c->arena = na;
    c->arena_bytes = need;
    for (int i = 0; i < c->n; i++)
      MB_TRY(mb_exec_bind_arena(c->e[i].ex, c->arena, c->arena_bytes));
  }
  rc = mb_exec_bind_arena(ex, c->arena, c->arena_bytes);
  if (rc != MB_OK) {
    mb_exec_free(ex);
    mb_graph_free(g);
    return rc;
  }
  cache_entry *e = &c->e[c->n++];
  memset(e, 0, sizeof *e);
  memcpy(e->key, key, (size_t)nkey * sizeof *key);
  e->nkey = nkey;
  e->g = g;
  e->ex = ex;
  *out = ex;
  return MB_OK;
}
