/* graph.c: recording the tapes. Values, nodes, the op builder core
 * (inference, error messages naming op/shapes/caller), scopes and layers,
 * eager execution, and the text dump of both tapes. */
#include "autograd/graph.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/exec.h"
#include "autograd/graph_internal.h"
#include "runtime/alloc.h"

/* ---- lifetime ---- */

int mb_graph_new(mb_params *params, mb_graph **out) {
  *out = NULL;
  if (!params)
    return MB_ERR(MB_EINVAL, "mb_graph_new: a parameter store is required (mb_params_new)");
  mb_graph *g = calloc(1, sizeof *g);
  if (!g)
    return MB_ERR(MB_ENOMEM, "allocating a graph");
  g->params = params;
  g->loss = -1;
  g->cur_layer = -1;
  *out = g;
  return MB_OK;
}

static void free_eager(mb_graph *g) {
  if (!g->eager)
    return;
  for (int i = 0; i < g->nvals; i++) {
    mb_value *v = &g->vals[i];
    if (v->eager_data && v->kind != MB_VAL_PARAM && v->alias_of < 0)
      g->eager->free(g->eager, v->eager_data);
    v->eager_data = NULL;
  }
}

void mb_graph_free(mb_graph *g) {
  if (!g)
    return;
  free_eager(g);
  for (int i = 0; i < g->nvals; i++)
    free(g->vals[i].name);
  free(g->vals);
  free(g->tape[0]);
  free(g->tape[1]);
  free(g->errmsg);
  for (int i = 0; i < g->nscopes; i++)
    free(g->scopes[i]);
  free(g->scopes);
  free(g->grad);
  if (g->plan)
    mb_plan_free(g->plan);
  free(g);
}

int mb_graph_status(const mb_graph *g) { return g->status; }
const char *mb_graph_error(const mb_graph *g) { return g->errmsg ? g->errmsg : ""; }

/* Keep the first error: its message is the one that explains. */
int mb_graph_set_error(mb_graph *g, int code) {
  if (g->status == MB_OK) {
    g->status = code;
    free(g->errmsg);
    g->errmsg = strdup(mb_error_message());
  }
  return code;
}

/* ---- values and nodes ---- */

int mb_graph_new_value(mb_graph *g, mb_dtype dt, mb_shape shape, int kind, const char *name, int32_t *out) {
  if (g->nvals == g->capvals) {
    int cap = g->capvals ? g->capvals * 2 : 256;
    mb_value *nv = realloc(g->vals, (size_t)cap * sizeof *nv);
    if (!nv)
      return MB_ERR(MB_ENOMEM, "growing the value table to %d", cap);
    g->vals = nv;
    if (g->grad) {
      int32_t *ng = realloc(g->grad, (size_t)cap * sizeof *ng);
      if (!ng)
        return MB_ERR(MB_ENOMEM, "growing the gradient table to %d", cap);
      for (int i = g->capvals; i < cap; i++)
        ng[i] = -1;
      g->grad = ng;
    }
    g->capvals = cap;
  }
  mb_value *v = &g->vals[g->nvals];
  memset(v, 0, sizeof *v);
  v->dtype = dt;
  v->shape = shape;
  v->kind = (uint8_t)kind;
  v->producer = -1;
  v->alias_of = -1;
  v->param_index = -1;
  v->grad_slot = -1;
  v->tape = (uint8_t)g->cur_tape;
  if (name) {
    v->name = strdup(name);
    if (!v->name)
      return MB_ERR(MB_ENOMEM, "copying a value name");
  }
  *out = g->nvals++;
  return MB_OK;
}

int mb_graph_append_node(mb_graph *g, int tape, const mb_node *n) {
  if (g->ntape[tape] == g->captape[tape]) {
    int cap = g->captape[tape] ? g->captape[tape] * 2 : 256;
    mb_node *nn = realloc(g->tape[tape], (size_t)cap * sizeof *nn);
    if (!nn)
      return MB_ERR(MB_ENOMEM, "growing a tape to %d nodes", cap);
    g->tape[tape] = nn;
    g->captape[tape] = cap;
  }
  g->tape[tape][g->ntape[tape]++] = *n;
  return MB_OK;
}

static void srcloc_str(mb_srcloc at, char *buf, size_t cap) {
  if (!at.file)
    snprintf(buf, cap, "an unknown caller");
  else
    snprintf(buf, cap, "%s:%d (%s)", at.file, at.line, at.func ? at.func : "?");
}

void mb_graph_value_label(const mb_graph *g, int32_t v, char *buf, size_t cap) {
  char sh[96];
  const mb_value *val = &g->vals[v];
  mb_shape_str(&val->shape, sh, sizeof sh);
  if (val->name)
    snprintf(buf, cap, "%s %s%s", val->name, mb_dtype_name(val->dtype), sh);
  else
    snprintf(buf, cap, "%%%d %s%s", (int)v, mb_dtype_name(val->dtype), sh);
}

/* "op 'x' at file:line (func) in scope 's': inputs f32[2, 3], i32[4]: " + the
 * current message. */
static int op_error(mb_graph *g, mb_srcloc at, int op, const mb_var *in, int n_in, int code) {
  char where[256], ins[1024] = "";
  srcloc_str(at, where, sizeof where);
  size_t used = 0;
  for (int j = 0; j < n_in && used < sizeof ins; j++) {
    char sh[96];
    if (in[j].id < 0 || in[j].id >= g->nvals) {
      used += (size_t)snprintf(ins + used, sizeof ins - used, "%s(none)", j ? ", " : "");
      continue;
    }
    const mb_value *v = &g->vals[in[j].id];
    mb_shape_str(&v->shape, sh, sizeof sh);
    used += (size_t)snprintf(ins + used, sizeof ins - used, "%s%s%s", j ? ", " : "", mb_dtype_name(v->dtype), sh);
  }
  const char *scope = g->scope_depth ? g->scopes[g->scope_stack[g->scope_depth - 1]] : NULL;
  if (scope)
    mb_error_context(code, "op '%s' at %s in scope '%s': inputs %s", mb_op_name(op), where, scope,
                     n_in ? ins : "(none)");
  else
    mb_error_context(code, "op '%s' at %s: inputs %s", mb_op_name(op), where, n_in ? ins : "(none)");
  return mb_graph_set_error(g, code);
}

mb_var mb_graph_fail(mb_graph *g, mb_srcloc at, int op, const mb_var *in, int n_in, int code, const char *fmt,
                     ...) {
  if (g->status != MB_OK)
    return MB_VAR_NONE;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  mb_error_set(code, at.file ? at.file : "?", at.line, "%s", msg);
  op_error(g, at, op, in, n_in, code);
  return MB_VAR_NONE;
}

int mb_graph_op(mb_graph *g, mb_srcloc at, int op, const mb_var *in, int n_in, const mb_attrs *attr, mb_var *out) {
  if (g->status != MB_OK)
    return g->status;
  if (g->compiled) {
    MB_ERR(MB_EINVAL, "the graph is compiled; no more ops can be recorded");
    return op_error(g, at, op, in, n_in, MB_EINVAL);
  }
  const mb_op_def *def = mb_op_get(op);
  if (!def || !def->infer) {
    MB_ERR(MB_EUNSUPPORTED, "op id %d is not in the op table", op);
    return op_error(g, at, op, in, 0, MB_EUNSUPPORTED);
  }
  if (n_in < def->min_in || n_in > def->max_in || n_in > MB_MAX_IN) {
    MB_ERR(MB_EINVAL, "takes %d to %d inputs, got %d", def->min_in, def->max_in, n_in);
    return op_error(g, at, op, in, n_in, MB_EINVAL);
  }
  mb_meta inm[MB_MAX_IN];
  for (int j = 0; j < n_in; j++) {
    if (in[j].id < 0 || in[j].id >= g->nvals) {
      /* An earlier builder failed (and recorded why), or a stray handle. */
      if (g->status != MB_OK)
        return g->status;
      MB_ERR(MB_EINVAL, "input %d is not a value of this graph (id %d)", j, (int)in[j].id);
      return op_error(g, at, op, in, n_in, MB_EINVAL);
    }
    inm[j].dtype = g->vals[in[j].id].dtype;
    inm[j].shape = g->vals[in[j].id].shape;
  }
  mb_attrs a = attr ? *attr : mb_attrs_none();
  mb_meta outm[MB_MAX_OUT];
  memset(outm, 0, sizeof outm);
  int n_out = 1;
  int rc = def->infer(inm, n_in, &a, outm, &n_out);
  if (rc != MB_OK)
    return op_error(g, at, op, in, n_in, rc);
  for (int k = 0; k < n_out; k++) {
    if (mb_shape_validate(&outm[k].shape) != MB_OK)
      return op_error(g, at, op, in, n_in, MB_ESHAPE);
  }

  mb_node n;
  memset(&n, 0, sizeof n);
  n.op = op;
  n.n_in = (int8_t)n_in;
  n.n_out = (int8_t)n_out;
  n.attr = a;
  n.layer = g->cur_tape == 0 ? g->cur_layer : -1;
  n.scope = g->scope_depth ? g->scope_stack[g->scope_depth - 1] : -1;
  n.origin = -1;
  n.where = at;
  int requires = 0;
  for (int j = 0; j < n_in; j++) {
    n.in[j] = in[j].id;
    if ((def->diff_inputs >> j) & 1u)
      requires |= g->vals[in[j].id].requires_grad;
  }
  for (int k = 0; k < MB_MAX_IN; k++)
    if (k >= n_in)
      n.in[k] = -1;
  for (int k = 0; k < MB_MAX_OUT; k++)
    n.out[k] = -1;
  for (int k = 0; k < n_out; k++) {
    int32_t id;
    rc = mb_graph_new_value(g, outm[k].dtype, outm[k].shape, MB_VAL_INTERMEDIATE, NULL, &id);
    if (rc != MB_OK)
      return mb_graph_set_error(g, rc);
    g->vals[id].producer = g->ntape[g->cur_tape];
    g->vals[id].requires_grad = (uint8_t)(requires && g->cur_tape == 0 && def->backward && k == 0);
    n.out[k] = id;
    out[k].id = id;
  }
  if (def->flags & MB_OPF_VIEW)
    g->vals[n.out[0]].alias_of = n.in[0];
  rc = mb_graph_append_node(g, g->cur_tape, &n);
  if (rc != MB_OK)
    return mb_graph_set_error(g, rc);
  if (g->eager) {
    rc = mb_graph_eager_run(g, &g->tape[g->cur_tape][g->ntape[g->cur_tape] - 1]);
    if (rc != MB_OK)
      return op_error(g, at, op, in, n_in, rc);
  }
  return n_out;
}

mb_var mb_graph_op1(mb_graph *g, mb_srcloc at, int op, const mb_var *in, int n_in, const mb_attrs *attr) {
  mb_var out[MB_MAX_OUT];
  int rc = mb_graph_op(g, at, op, in, n_in, attr, out);
  return rc > 0 ? out[0] : MB_VAR_NONE;
}

/* ---- params, inputs, loss, outputs ---- */

mb_var mb_param_(mb_graph *g, mb_srcloc at, const char *name, mb_shape shape) {
  if (g->status != MB_OK)
    return MB_VAR_NONE;
  char where[256], why[256] = "", sh[96];
  srcloc_str(at, where, sizeof where);
  mb_shape_str(&shape, sh, sizeof sh);
  if (g->compiled) {
    MB_ERR(MB_EINVAL, "param '%s' at %s: the graph is already compiled", name ? name : "?", where);
    mb_graph_set_error(g, MB_EINVAL);
    return MB_VAR_NONE;
  }
  if (!name || !*name || mb_shape_validate(&shape) != MB_OK) {
    MB_ERR(MB_EINVAL, "param at %s: needs a name and a valid shape (got '%s' %s)", where, name ? name : "", sh);
    mb_graph_set_error(g, MB_EINVAL);
    return MB_VAR_NONE;
  }
  /* The same parameter used twice in one graph is one value. */
  for (int i = 0; i < g->nvals; i++)
    if (g->vals[i].kind == MB_VAL_PARAM && strcmp(g->vals[i].name, name) == 0) {
      if (!mb_shape_equal(&g->vals[i].shape, &shape)) {
        char sh0[96];
        mb_shape_str(&g->vals[i].shape, sh0, sizeof sh0);
        MB_ERR(MB_ESHAPE, "param '%s' at %s: declared again with shape %s, first declared %s", name, where, sh,
               sh0);
        mb_graph_set_error(g, MB_ESHAPE);
        return MB_VAR_NONE;
      }
      return (mb_var){i};
    }
  int index;
  int rc = mb_params_lookup_or_add(g->params, name, shape, &index, why, sizeof why);
  if (rc != MB_OK) {
    MB_ERR(rc, "param '%s' %s at %s: %s", name, sh, where, why);
    mb_graph_set_error(g, rc);
    return MB_VAR_NONE;
  }
  int32_t id;
  rc = mb_graph_new_value(g, mb_params_dtype(g->params), shape, MB_VAL_PARAM, name, &id);
  if (rc != MB_OK) {
    mb_graph_set_error(g, rc);
    return MB_VAR_NONE;
  }
  g->vals[id].param_index = index;
  g->vals[id].requires_grad = (uint8_t)mb_params_info(g->params, index)->trainable;
  g->vals[id].tape = 0;
  if (g->eager) {
    rc = mb_params_materialize(g->params, g->eager);
    if (rc != MB_OK) {
      mb_graph_set_error(g, rc);
      return MB_VAR_NONE;
    }
    mb_tensor t = mb_params_tensor(g->params, index);
    g->vals[id].eager_data = t.data;
  }
  return (mb_var){id};
}

mb_var mb_input_(mb_graph *g, mb_srcloc at, const char *name, mb_dtype dtype, mb_shape shape) {
  if (g->status != MB_OK)
    return MB_VAR_NONE;
  char where[256], sh[96];
  srcloc_str(at, where, sizeof where);
  mb_shape_str(&shape, sh, sizeof sh);
  if (g->compiled || !name || !*name || mb_shape_validate(&shape) != MB_OK || dtype >= MB_DTYPE_COUNT) {
    MB_ERR(MB_EINVAL, "input '%s' %s at %s: needs a name, a valid dtype and shape, and an uncompiled graph",
           name ? name : "", sh, where);
    mb_graph_set_error(g, MB_EINVAL);
    return MB_VAR_NONE;
  }
  if (mb_var_ok(mb_graph_find_input(g, name))) {
    MB_ERR(MB_EINVAL, "input '%s' at %s: declared twice", name, where);
    mb_graph_set_error(g, MB_EINVAL);
    return MB_VAR_NONE;
  }
  int32_t id;
  int rc = mb_graph_new_value(g, dtype, shape, MB_VAL_INPUT, name, &id);
  if (rc != MB_OK) {
    mb_graph_set_error(g, rc);
    return MB_VAR_NONE;
  }
  g->vals[id].tape = 0;
  if (g->eager) {
    size_t bytes = mb_value_bytes(&g->vals[id]);
    rc = g->eager->alloc(g->eager, bytes ? bytes : 1, &g->vals[id].eager_data);
    if (rc == MB_OK)
      rc = g->eager->fill(g->eager, g->vals[id].eager_data, dtype, (size_t)mb_shape_numel(&shape), 0.0);
    if (rc != MB_OK) {
      mb_graph_set_error(g, rc);
      return MB_VAR_NONE;
    }
  }
  return (mb_var){id};
}

mb_var mb_graph_find_input(const mb_graph *g, const char *name) {
  for (int i = 0; i < g->nvals; i++)
    if (g->vals[i].kind == MB_VAL_INPUT && strcmp(g->vals[i].name, name) == 0)
      return (mb_var){i};
  return MB_VAR_NONE;
}

static int check_var(const mb_graph *g, mb_var v, const char *what) {
  if (g->status != MB_OK)
    return g->status;
  if (v.id < 0 || v.id >= g->nvals)
    return MB_ERR(MB_EINVAL, "%s: not a value of this graph (id %d)", what, (int)v.id);
  return MB_OK;
}

int mb_set_loss(mb_graph *g, mb_var loss) {
  MB_TRY(check_var(g, loss, "mb_set_loss"));
  const mb_value *v = &g->vals[loss.id];
  if (mb_shape_numel(&v->shape) != 1 || !mb_dtype_info_of(v->dtype)->is_float) {
    char sh[96];
    mb_shape_str(&v->shape, sh, sizeof sh);
    return mb_graph_set_error(
        g, MB_ERR(MB_ESHAPE, "mb_set_loss: the loss must be one float element, got %s%s", mb_dtype_name(v->dtype), sh));
  }
  g->loss = loss.id;
  g->vals[loss.id].is_output = 1;
  return MB_OK;
}

int mb_mark_output(mb_graph *g, mb_var v) {
  MB_TRY(check_var(g, v, "mb_mark_output"));
  g->vals[v.id].is_output = 1;
  return MB_OK;
}

/* ---- scopes and layers ---- */

static int push_scope(mb_graph *g, const char *name) {
  if (g->scope_depth == MB_SCOPE_DEPTH)
    return mb_graph_set_error(g, MB_ERR(MB_EINVAL, "scopes nested deeper than %d at '%s'", MB_SCOPE_DEPTH, name));
  const char *parent = g->scope_depth ? g->scopes[g->scope_stack[g->scope_depth - 1]] : NULL;
  size_t len = strlen(name) + (parent ? strlen(parent) + 1 : 0) + 1;
  char *full = malloc(len);
  if (!full)
    return mb_graph_set_error(g, MB_ERR(MB_ENOMEM, "scope name"));
  if (parent)
    snprintf(full, len, "%s.%s", parent, name);
  else
    snprintf(full, len, "%s", name);
  if (g->nscopes == g->capscopes) {
    int cap = g->capscopes ? g->capscopes * 2 : 64;
    char **ns = realloc(g->scopes, (size_t)cap * sizeof *ns);
    if (!ns) {
      free(full);
      return mb_graph_set_error(g, MB_ERR(MB_ENOMEM, "scope table"));
    }
    g->scopes = ns;
    g->capscopes = cap;
  }
  g->scopes[g->nscopes] = full;
  g->scope_stack[g->scope_depth++] = g->nscopes++;
  return MB_OK;
}

int mb_graph_scope_push(mb_graph *g, const char *name) {
  if (g->status != MB_OK)
    return g->status;
  return push_scope(g, name ? name : "?");
}

int mb_graph_scope_pop(mb_graph *g) {
  if (g->status != MB_OK)
    return g->status;
  if (g->scope_depth == 0 || (g->cur_layer >= 0 && g->scope_depth == g->layer_depth_at_begin))
    return mb_graph_set_error(g, MB_ERR(MB_EINVAL, "mb_graph_scope_pop without a matching push"));
  g->scope_depth--;
  return MB_OK;
}

int mb_graph_layer_begin(mb_graph *g, const char *name) {
  if (g->status != MB_OK)
    return g->status;
  if (g->cur_layer >= 0)
    return mb_graph_set_error(
        g, MB_ERR(MB_EINVAL, "layer '%s' begins inside layer %d: layers do not nest", name ? name : "?", g->cur_layer));
  MB_TRY(push_scope(g, name ? name : "layer"));
  g->cur_layer = g->nlayers++;
  g->layer_depth_at_begin = g->scope_depth;
  return MB_OK;
}

int mb_graph_layer_end(mb_graph *g) {
  if (g->status != MB_OK)
    return g->status;
  if (g->cur_layer < 0)
    return mb_graph_set_error(g, MB_ERR(MB_EINVAL, "mb_graph_layer_end without mb_graph_layer_begin"));
  if (g->scope_depth != g->layer_depth_at_begin)
    return mb_graph_set_error(g, MB_ERR(MB_EINVAL, "mb_graph_layer_end with %d scopes still open",
                                        g->scope_depth - g->layer_depth_at_begin));
  g->scope_depth--;
  g->cur_layer = -1;
  return MB_OK;
}

/* ---- eager ---- */

int mb_graph_set_eager(mb_graph *g, mb_backend *be) {
  if (g->nvals > 0 || g->compiled)
    return MB_ERR(MB_EINVAL, "mb_graph_set_eager: switch eager mode on before recording anything");
  if (!be)
    return MB_ERR(MB_EINVAL, "mb_graph_set_eager: no backend");
  g->eager = be;
  return MB_OK;
}

int mb_graph_feed(mb_graph *g, mb_var input, const void *host) {
  MB_TRY(check_var(g, input, "mb_graph_feed"));
  mb_value *v = &g->vals[input.id];
  if (!g->eager || v->kind != MB_VAL_INPUT)
    return MB_ERR(MB_EINVAL, "mb_graph_feed: only inputs of an eager graph can be fed");
  return g->eager->copy_in(g->eager, v->eager_data, host, mb_value_bytes(v));
}

const void *mb_graph_eager_data(const mb_graph *g, mb_var v) {
  if (v.id < 0 || v.id >= g->nvals)
    return NULL;
  return g->vals[v.id].eager_data;
}

int mb_graph_eager_run(mb_graph *g, const mb_node *n) {
  mb_backend *be = g->eager;
  mb_kernel_call k;
  memset(&k, 0, sizeof k);
  k.node = n;
  k.backend = be;
  k.n_in = n->n_in;
  k.n_out = n->n_out;
  for (int j = 0; j < n->n_in; j++) {
    const mb_value *v = &g->vals[n->in[j]];
    mb_tensor_wrap(&k.in[j], v->dtype, v->shape, be->device, v->eager_data);
  }
  const mb_op_def *def = mb_op_get(n->op);
  for (int j = 0; j < n->n_out; j++) {
    mb_value *v = &g->vals[n->out[j]];
    if (v->alias_of >= 0) {
      v->eager_data = g->vals[v->alias_of].eager_data;
    } else {
      size_t bytes = mb_value_bytes(v);
      MB_TRY(be->alloc(be, bytes ? bytes : 1, &v->eager_data));
      MB_TRY(be->fill(be, v->eager_data, v->dtype, (size_t)mb_shape_numel(&v->shape), 0.0));
    }
    mb_tensor_wrap(&k.out[j], v->dtype, v->shape, be->device, v->eager_data);
  }
  if (def->flags & MB_OPF_VIEW)
    return MB_OK;
  mb_kernel_fn fn = mb_op_kernel(n->op, be->id);
  if (!fn)
    return MB_ERR(MB_EUNSUPPORTED, "no %s kernel registered for op '%s'", be->name, def->name);
  mb_workspace_fn wsf = mb_op_workspace(n->op, be->id);
  size_t ws = wsf ? wsf(g, n) : 0;
  if (ws) {
    MB_TRY(be->alloc(be, ws, &k.workspace));
    k.workspace_bytes = ws;
  }
  int rc = fn(&k);
  if (k.workspace)
    be->free(be, k.workspace);
  return rc;
}

/* ---- reading ---- */

int mb_graph_num_values(const mb_graph *g) { return g->nvals; }
const mb_value *mb_graph_value(const mb_graph *g, mb_var v) {
  return (v.id >= 0 && v.id < g->nvals) ? &g->vals[v.id] : NULL;
}
int mb_graph_num_nodes(const mb_graph *g, int tape) { return (tape == 0 || tape == 1) ? g->ntape[tape] : 0; }
const mb_node *mb_graph_node(const mb_graph *g, int tape, int index) {
  if ((tape != 0 && tape != 1) || index < 0 || index >= g->ntape[tape])
    return NULL;
  return &g->tape[tape][index];
}
mb_var mb_graph_loss(const mb_graph *g) { return (mb_var){g->loss}; }
mb_params *mb_graph_params(const mb_graph *g) { return g->params; }
const mb_plan *mb_graph_plan(const mb_graph *g) { return g->plan; }
const char *mb_graph_scope_name(const mb_graph *g, int scope) {
  return (scope >= 0 && scope < g->nscopes) ? g->scopes[scope] : "";
}
int mb_graph_num_layers(const mb_graph *g) { return g->nlayers; }
const mb_compile_opts *mb_graph_opts(const mb_graph *g) { return &g->opts; }
int mb_graph_is_compiled(const mb_graph *g) { return g->compiled; }

mb_var mb_graph_grad(const mb_graph *g, mb_var v) {
  if (!g->grad || v.id < 0 || v.id >= g->nvals)
    return MB_VAR_NONE;
  return (mb_var){g->grad[v.id]};
}

/* ---- dump ---- */

typedef struct {
  char *buf;
  size_t len, cap;
} strbuf;

static void sb_printf(strbuf *s, const char *fmt, ...) MB_PRINTF(2, 3);
static void sb_printf(strbuf *s, const char *fmt, ...) {
  va_list ap;
  for (;;) {
    size_t room = s->cap - s->len;
    va_start(ap, fmt);
    int n = vsnprintf(s->buf ? s->buf + s->len : NULL, s->buf ? room : 0, fmt, ap);
    va_end(ap);
    if (n < 0)
      return;
    if (s->buf && (size_t)n < room) {
      s->len += (size_t)n;
      return;
    }
    size_t cap = s->cap ? s->cap * 2 : 4096;
    while (cap < s->len + (size_t)n + 1)
      cap *= 2;
    char *nb = realloc(s->buf, cap);
    if (!nb)
      return;
    s->buf = nb;
    s->cap = cap;
  }
}

static void dump_attrs(strbuf *s, const mb_node *n) {
  const mb_op_def *def = mb_op_get(n->op);
  for (int i = 0; i < MB_MAX_IATTR; i++) {
    const char *name = def->iattr[i];
    if (!name)
      continue;
    if (strcmp(name, "act") == 0)
      sb_printf(s, " act=%s", mb_op_name((int)n->attr.i[i]));
    else if (strcmp(name, "dtype") == 0)
      sb_printf(s, " dtype=%s", mb_dtype_name((mb_dtype)n->attr.i[i]));
    else if (strcmp(name, "perm") == 0) {
      sb_printf(s, " perm=(");
      for (int d = 0; d < MB_MAX_IATTR && n->attr.i[d] >= 0 && d < n->attr.shape.ndim; d++)
        sb_printf(s, d ? ",%lld" : "%lld", (long long)n->attr.i[d]);
      sb_printf(s, ")");
      break;
    } else
      sb_printf(s, " %s=%lld", name, (long long)n->attr.i[i]);
  }
  for (int i = 0; i < MB_MAX_FATTR; i++)
    if (def->fattr[i])
      sb_printf(s, " %s=%g", def->fattr[i], n->attr.f[i]);
  if (def->shape_attr && n->op != MB_OP_PERMUTE) {
    char sh[96];
    mb_shape_str(&n->attr.shape, sh, sizeof sh);
    sb_printf(s, " shape=%s", sh);
  }
}

static void dump_tape(const mb_graph *g, strbuf *s, int tape) {
  sb_printf(s, "%s tape: %d nodes\n", tape ? "backward" : "forward", g->ntape[tape]);
  for (int i = 0; i < g->ntape[tape]; i++) {
    const mb_node *n = &g->tape[tape][i];
    char lab[256];
    sb_printf(s, "  %c%-4d ", tape ? 'b' : 'f', i);
    for (int k = 0; k < n->n_out; k++) {
      mb_graph_value_label(g, n->out[k], lab, sizeof lab);
      sb_printf(s, "%s%s", k ? ", " : "", lab);
      if (g->vals[n->out[k]].grad_slot >= 0)
        sb_printf(s, " ->grad(%s)", mb_params_info(g->params, g->vals[n->out[k]].grad_slot)->name);
    }
    sb_printf(s, " = %s(", mb_op_name(n->op));
    for (int j = 0; j < n->n_in; j++) {
      mb_graph_value_label(g, n->in[j], lab, sizeof lab);
      sb_printf(s, "%s%s", j ? ", " : "", lab);
    }
    sb_printf(s, ")");
    dump_attrs(s, n);
    if (n->recomputed)
      sb_printf(s, " [recompute]");
    if (n->scope >= 0)
      sb_printf(s, "  @%s", g->scopes[n->scope]);
    if (n->where.file)
      sb_printf(s, "  (%s:%d)", n->where.file, n->where.line);
    sb_printf(s, "\n");
  }
}

char *mb_graph_dump_string(const mb_graph *g) {
  strbuf s = {0};
  int nparam = 0, ninput = 0;
  for (int i = 0; i < g->nvals; i++) {
    nparam += g->vals[i].kind == MB_VAL_PARAM;
    ninput += g->vals[i].kind == MB_VAL_INPUT;
  }
  sb_printf(&s, "graph: %d values, %d params, %d inputs", g->nvals, nparam, ninput);
  if (g->loss >= 0)
    sb_printf(&s, ", loss %%%d", (int)g->loss);
  sb_printf(&s, "\n");
  for (int i = 0; i < g->nvals; i++) {
    if (g->vals[i].kind == MB_VAL_INTERMEDIATE)
      continue;
    char lab[256];
    mb_graph_value_label(g, i, lab, sizeof lab);
    const char *what = g->vals[i].kind == MB_VAL_INPUT ? "input" : (g->vals[i].requires_grad ? "param" : "param (frozen)");
    sb_printf(&s, "  %-6s %s\n", what, lab);
  }
  dump_tape(g, &s, 0);
  if (g->has_backward)
    dump_tape(g, &s, 1);
  if (g->plan) {
    mb_plan_stats st = mb_graph_plan_stats(g);
    sb_printf(&s, "plan: arena %zu bytes for %d buffers (%zu bytes if laid end to end), activations kept %zu bytes%s\n",
              st.arena_bytes, st.n_buffers, st.sum_bytes, st.activation_bytes,
              g->opts.recompute ? ", recompute on" : "");
  }
  if (!s.buf)
    return strdup("");
  return s.buf;
}

void mb_graph_dump(const mb_graph *g, FILE *f) {
  char *s = mb_graph_dump_string(g);
  if (s) {
    fputs(s, f);
    free(s);
  }
}
