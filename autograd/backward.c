/* backward.c: the ahead-of-time backward pass, activation recompute, dead
 * code elimination, and mb_graph_compile which runs them and the planner.
 *
 * Backward walks the forward tape once in reverse. For a node whose outputs
 * carry a gradient it calls the op's backward rule, which appends ordinary
 * ops to the backward tape; contributions to a value used several times are
 * summed with add ops. Only inputs that lead back to a trainable parameter
 * get gradients (frozen parameters and data inputs are pruned). Once the
 * walk has passed the first forward use of a parameter, its gradient is
 * final: it is bound to the parameter's slot in the flat gradient buffer
 * right there (so gradients finish in backward-tape order, which is what
 * bucketed all-reduce wants).
 *
 * Recompute: the first time the walk reaches a node of layer L, it
 * re-emits all of layer L's forward nodes into the backward tape and
 * points the backward rules of layer L at the re-emitted values; the
 * original activations then die in the forward. */
#include <stdlib.h>
#include <string.h>

#include "autograd/graph_internal.h"
#include "autograd/ops.h"
#include "autograd/ops_internal.h"

static int bind_grad(mb_graph *g, int32_t param_val, int32_t gv, int32_t seed, int accumulate) {
  int pidx = g->vals[param_val].param_index;
  mb_var out;
  if (gv < 0) {
    /* No path to the loss: the gradient is zero (written at the start). */
    if (accumulate)
      return MB_OK;
    out = mb_full_(g, MB_BW, g->vals[param_val].shape, g->vals[param_val].dtype, 0.0);
  } else if (accumulate) {
    out = mb_graph_op1(g, MB_BW, MB_OP_GRAD_ACCUMULATE, (mb_var[]){{gv}}, 1, NULL);
  } else {
    mb_value *v = &g->vals[gv];
    if (v->kind == MB_VAL_INTERMEDIATE && v->tape == 1 && v->alias_of < 0 && v->grad_slot < 0 && gv != seed &&
        !v->is_output && v->dtype == g->vals[param_val].dtype) {
      v->grad_slot = pidx;
      return MB_OK;
    }
    out = mb_graph_op1(g, MB_BW, MB_OP_COPY, (mb_var[]){{gv}}, 1, NULL);
  }
  if (!mb_var_ok(out))
    return g->status;
  g->vals[out.id].grad_slot = pidx;
  return MB_OK;
}

/* The backward-tape node that produced value id, or NULL. */
static const mb_node *bw_producer(const mb_graph *g, int32_t id) {
  const mb_value *val = &g->vals[id];
  return val->tape == 1 && val->producer >= 0 ? &g->tape[1][val->producer] : NULL;
}

/* Slices of one value (Mamba's in_proj output split into x and z, x_proj's
 * into dt, B and C) each give a gradient padded with zeros to the full
 * shape; summing those with adds costs two full passes per slice. Instead
 * the pieces are joined with one concat along the sliced axis, zero fills
 * standing for the parts no slice has reached yet; each further slice's
 * gradient replaces the zero fill it lands in and the concat is re-made
 * (the superseded nodes are dead code). Returns 1 when contrib (a
 * slice_grad) was joined this way into *out, 0 when the pair is not of
 * that form (then the caller adds). */
typedef struct {
  int64_t start, len;
  int32_t var; /* -1: a zero fill */
} grad_piece;

static int join_slice_grads(mb_graph *g, int32_t cur, mb_var contrib, mb_var *out) {
  const mb_node *cn = bw_producer(g, contrib.id), *en = bw_producer(g, cur);
  if (!cn || cn->op != MB_OP_SLICE_GRAD || !en)
    return 0;
  const int axis = (int)cn->attr.i[0];
  const mb_shape full = g->vals[cur].shape;
  const mb_dtype dt = g->vals[cur].dtype;
  const int64_t cstart = cn->attr.i[1], clen = g->vals[cn->in[0]].shape.dim[axis];
  grad_piece pc[MB_MAX_IN + 2];
  int np = 0;
  if (en->op == MB_OP_SLICE_GRAD && en->attr.i[0] == axis) {
    const int64_t s = en->attr.i[1], l = g->vals[en->in[0]].shape.dim[axis];
    if (s > 0)
      pc[np++] = (grad_piece){0, s, -1};
    pc[np++] = (grad_piece){s, l, en->in[0]};
    if (s + l < full.dim[axis])
      pc[np++] = (grad_piece){s + l, full.dim[axis] - s - l, -1};
  } else if (en->op == MB_OP_CONCAT && en->attr.i[0] == axis) {
    int64_t at = 0;
    for (int j = 0; j < en->n_in; j++) {
      const mb_node *pn = bw_producer(g, en->in[j]);
      const int zero = pn && pn->op == MB_OP_FULL && pn->attr.f[0] == 0.0;
      const int64_t l = g->vals[en->in[j]].shape.dim[axis];
      pc[np++] = (grad_piece){at, l, zero ? -1 : en->in[j]};
      at += l;
    }
  } else {
    return 0;
  }
  /* the new slice must lie inside one zero fill */
  int hit = -1;
  for (int j = 0; j < np; j++)
    if (pc[j].var < 0 && cstart >= pc[j].start && cstart + clen <= pc[j].start + pc[j].len)
      hit = j;
  if (hit < 0)
    return 0;
  const grad_piece gap = pc[hit];
  grad_piece split[3];
  int ns = 0;
  if (cstart > gap.start)
    split[ns++] = (grad_piece){gap.start, cstart - gap.start, -1};
  split[ns++] = (grad_piece){cstart, clen, cn->in[0]};
  if (cstart + clen < gap.start + gap.len)
    split[ns++] = (grad_piece){cstart + clen, gap.start + gap.len - cstart - clen, -1};
  if (np - 1 + ns > MB_MAX_IN)
    return 0;
  memmove(&pc[hit + ns], &pc[hit + 1], (size_t)(np - hit - 1) * sizeof pc[0]);
  memcpy(&pc[hit], split, (size_t)ns * sizeof split[0]);
  np += ns - 1;
  mb_var xs[MB_MAX_IN];
  for (int j = 0; j < np; j++) {
    if (pc[j].var >= 0) {
      xs[j] = (mb_var){pc[j].var};
      continue;
    }
    mb_shape sh = full;
    sh.dim[axis] = pc[j].len;
    xs[j] = mb_full_(g, MB_BW, sh, dt, 0.0);
  }
  *out = np == 1 ? xs[0] : mb_concat_(g, MB_BW, xs, np, axis);
  return 1;
}

static int accumulate_grad(mb_graph *g, int32_t v, mb_var contrib) {
  if (!mb_var_ok(contrib))
    return MB_OK;
  if (!mb_shape_equal(&g->vals[contrib.id].shape, &g->vals[v].shape) ||
      g->vals[contrib.id].dtype != g->vals[v].dtype) {
    char a[96], b[96];
    return MB_ERR(MB_EINTERNAL, "backward rule produced a gradient %s%s for a value %s%s",
                  mb_dtype_name(g->vals[contrib.id].dtype), mb_shape_str(&g->vals[contrib.id].shape, a, sizeof a),
                  mb_dtype_name(g->vals[v].dtype), mb_shape_str(&g->vals[v].shape, b, sizeof b));
  }
  mb_var joined;
  if (g->grad[v] < 0) {
    g->grad[v] = contrib.id;
  } else if (join_slice_grads(g, g->grad[v], contrib, &joined)) {
    if (!mb_var_ok(joined))
      return g->status;
    g->grad[v] = joined.id;
  } else {
    mb_var sum = mb_axpby_(g, MB_BW, (mb_var){g->grad[v]}, contrib, 1.0, 1.0);
    if (!mb_var_ok(sum))
      return g->status;
    g->grad[v] = sum.id;
  }
  return MB_OK;
}

/* Re-emit every forward node of `layer` into the backward tape; remap maps
 * each original output to its re-emitted twin. */
static int emit_recompute(mb_graph *g, int layer, int32_t *remap) {
  int nf = g->ntape[0];
  for (int i = 0; i < nf; i++) {
    mb_node n = g->tape[0][i];
    if (n.layer != layer)
      continue;
    mb_var ins[MB_MAX_IN], outs[MB_MAX_OUT];
    for (int j = 0; j < n.n_in; j++)
      ins[j].id = remap[n.in[j]] >= 0 ? remap[n.in[j]] : n.in[j];
    int rc = mb_graph_op(g, n.where, n.op, ins, n.n_in, &n.attr, outs);
    if (rc < 0)
      return rc;
    mb_node *c = &g->tape[1][g->ntape[1] - 1];
    c->recomputed = 1;
    c->origin = i;
    c->scope = n.scope;
    for (int k = 0; k < n.n_out; k++)
      remap[n.out[k]] = outs[k].id;
  }
  return MB_OK;
}

int mb_graph_backward(mb_graph *g, int accumulate) {
  if (g->status != MB_OK)
    return mb_error_set(g->status, __FILE__, __LINE__, "%s", g->errmsg ? g->errmsg : "graph build failed");
  if (g->has_backward)
    return MB_ERR(MB_EINVAL, "the backward tape was already generated");
  if (g->loss < 0)
    return MB_ERR(MB_EINVAL, "no loss to differentiate: call mb_set_loss() before compiling with train = 1");
  if (g->cur_layer >= 0)
    return MB_ERR(MB_EINVAL, "layer '%s' was begun and never ended (mb_graph_layer_end)",
                  g->scopes[g->scope_stack[g->layer_depth_at_begin - 1]]);
  if (g->scope_depth > 0)
    return MB_ERR(MB_EINVAL, "%d scope(s) still open (mb_graph_scope_pop) when generating backward", g->scope_depth);
  int recompute = g->opts.recompute;
  int nf = g->ntape[0];
  int nv0 = g->nvals;

  /* Which values need a gradient: trainable params and what they reach. */
  for (int i = 0; i < nv0; i++) {
    mb_value *v = &g->vals[i];
    v->requires_grad = v->kind == MB_VAL_PARAM ? (uint8_t)mb_params_info(g->params, v->param_index)->trainable : 0;
  }
  for (int i = 0; i < nf; i++) {
    const mb_node *n = &g->tape[0][i];
    const mb_op_def *def = mb_op_get(n->op);
    int req = 0;
    for (int j = 0; j < n->n_in; j++)
      if ((def->diff_inputs >> j) & 1u)
        req |= g->vals[n->in[j]].requires_grad;
    g->vals[n->out[0]].requires_grad = (uint8_t)(req && def->backward);
  }
  /* Which params reach the loss (the others get a zero gradient). */
  uint8_t *reaches = calloc((size_t)nv0, 1);
  int32_t *first_use = malloc((size_t)nv0 * sizeof *first_use);
  int32_t *remap = malloc((size_t)nv0 * sizeof *remap);
  uint8_t *cloned = calloc((size_t)g->nlayers + 1, 1);
  free(g->grad);
  g->grad = malloc((size_t)g->capvals * sizeof *g->grad);
  if (!reaches || !first_use || !remap || !cloned || !g->grad) {
    free(reaches), free(first_use), free(remap), free(cloned);
    return MB_ERR(MB_ENOMEM, "backward bookkeeping for %d values", nv0);
  }
  for (int i = 0; i < g->capvals; i++)
    g->grad[i] = -1;
  for (int i = 0; i < nv0; i++)
    first_use[i] = -1, remap[i] = -1;
  reaches[g->loss] = 1;
  for (int i = nf - 1; i >= 0; i--) {
    const mb_node *n = &g->tape[0][i];
    const mb_op_def *def = mb_op_get(n->op);
    if (!reaches[n->out[0]] || !def->backward)
      continue;
    for (int j = 0; j < n->n_in; j++)
      if ((def->diff_inputs >> j) & 1u)
        reaches[n->in[j]] = 1;
  }
  for (int i = 0; i < nf; i++) {
    const mb_node *n = &g->tape[0][i];
    for (int j = 0; j < n->n_in; j++)
      if (g->vals[n->in[j]].kind == MB_VAL_PARAM && first_use[n->in[j]] < 0)
        first_use[n->in[j]] = i;
  }

  int rc = MB_OK;
  g->cur_tape = 1;
  /* Zero gradients first: they are "ready" before anything runs. */
  for (int i = 0; i < nv0 && rc == MB_OK; i++)
    if (g->vals[i].kind == MB_VAL_PARAM && g->vals[i].requires_grad && !reaches[i])
      rc = bind_grad(g, i, -1, -1, accumulate);

  mb_var seed = mb_full_(g, MB_BW, g->vals[g->loss].shape, g->vals[g->loss].dtype, 1.0);
  if (!mb_var_ok(seed))
    rc = g->status;
  else
    g->grad[g->loss] = seed.id;

  for (int i = nf - 1; i >= 0 && rc == MB_OK; i--) {
    mb_node n = g->tape[0][i]; /* a copy: the tapes grow below */
    const mb_op_def *def = mb_op_get(n.op);
    mb_var gout[MB_MAX_OUT];
    int any = 0;
    for (int k = 0; k < n.n_out; k++) {
      gout[k].id = g->grad[n.out[k]];
      any |= gout[k].id >= 0;
    }
    uint8_t need[MB_MAX_IN] = {0};
    int any_need = 0;
    if (any && def->backward)
      for (int j = 0; j < n.n_in; j++) {
        need[j] = (uint8_t)(((def->diff_inputs >> j) & 1u) && g->vals[n.in[j]].requires_grad);
        any_need |= need[j];
      }
    if (any_need) {
      if (recompute && n.layer >= 0 && !cloned[n.layer]) {
        cloned[n.layer] = 1;
        rc = emit_recompute(g, n.layer, remap);
        if (rc != MB_OK)
          break;
      }
      mb_node rn = n;
      if (recompute && n.layer >= 0) {
        for (int j = 0; j < n.n_in; j++)
          if (remap[n.in[j]] >= 0)
            rn.in[j] = remap[n.in[j]];
        for (int k = 0; k < n.n_out; k++)
          if (remap[n.out[k]] >= 0)
            rn.out[k] = remap[n.out[k]];
      }
      mb_var gin[MB_MAX_IN];
      for (int j = 0; j < MB_MAX_IN; j++)
        gin[j] = MB_VAR_NONE;
      /* Backward nodes carry their forward node's scope and index, so dumps
       * and profiles read per layer in both tapes. */
      int first_new = g->ntape[1];
      g->scope_depth = n.scope >= 0 ? 1 : 0;
      g->scope_stack[0] = n.scope;
      rc = def->backward(g, &rn, gout, need, gin);
      g->scope_depth = 0;
      for (int b = first_new; b < g->ntape[1]; b++)
        g->tape[1][b].origin = i;
      if (rc == MB_OK && g->status != MB_OK)
        rc = g->status;
      if (rc != MB_OK) {
        rc = mb_error_context(rc, "backward of '%s' (forward node f%d at %s:%d)", def->name, i,
                              n.where.file ? n.where.file : "?", n.where.line);
        break;
      }
      for (int j = 0; j < n.n_in && rc == MB_OK; j++)
        if (need[j])
          rc = accumulate_grad(g, n.in[j], gin[j]);
    }
    /* Parameters first used here have received every contribution. */
    for (int j = 0; j < n.n_in && rc == MB_OK; j++) {
      int32_t p = n.in[j];
      int dup = 0;
      for (int jj = 0; jj < j; jj++)
        dup |= n.in[jj] == p;
      if (!dup && first_use[p] == i && g->vals[p].kind == MB_VAL_PARAM && g->vals[p].requires_grad && reaches[p])
        rc = bind_grad(g, p, g->grad[p], seed.id, accumulate);
    }
  }
  g->cur_tape = 0;
  free(reaches), free(first_use), free(remap), free(cloned);
  if (rc != MB_OK) {
    mb_graph_set_error(g, rc);
    return rc;
  }
  g->has_backward = 1;
  return MB_OK;
}

/* Remove nodes whose outputs nobody needs (loss, marked outputs, gradient
 * slots are the roots), in both tapes. */
int mb_graph_dce(mb_graph *g) {
  uint8_t *live = calloc((size_t)g->nvals, 1);
  if (!live)
    return MB_ERR(MB_ENOMEM, "DCE marks for %d values", g->nvals);
  for (int i = 0; i < g->nvals; i++)
    if (g->vals[i].is_output || g->vals[i].grad_slot >= 0)
      live[i] = 1;
  for (int t = 1; t >= 0; t--) {
    int n = g->ntape[t], kept = 0;
    uint8_t *keep = calloc((size_t)n + 1, 1);
    if (!keep) {
      free(live);
      return MB_ERR(MB_ENOMEM, "DCE");
    }
    for (int i = n - 1; i >= 0; i--) {
      const mb_node *nd = &g->tape[t][i];
      for (int k = 0; k < nd->n_out; k++)
        keep[i] |= live[nd->out[k]];
      if (keep[i])
        for (int j = 0; j < nd->n_in; j++)
          live[nd->in[j]] = 1;
    }
    for (int i = 0; i < n; i++) {
      if (!keep[i]) {
        for (int k = 0; k < g->tape[t][i].n_out; k++)
          g->vals[g->tape[t][i].out[k]].producer = -1;
        continue;
      }
      g->tape[t][kept] = g->tape[t][i];
      for (int k = 0; k < g->tape[t][kept].n_out; k++)
        g->vals[g->tape[t][kept].out[k]].producer = kept;
      kept++;
    }
    g->ntape[t] = kept;
    free(keep);
  }
  free(live);
  return MB_OK;
}

int mb_graph_compile(mb_graph *g, const mb_compile_opts *opts) {
  if (g->status != MB_OK)
    return mb_error_set(g->status, __FILE__, __LINE__, "%s", g->errmsg ? g->errmsg : "graph build failed");
  if (g->compiled)
    return MB_ERR(MB_EINVAL, "the graph is already compiled");
  if (g->cur_layer >= 0 || g->scope_depth > 0)
    return MB_ERR(MB_EINVAL, "a layer or scope is still open at compile (%d scopes)", g->scope_depth);
  mb_compile_opts o = {0};
  if (opts)
    o = *opts;
  g->opts = o;
  int has_out = g->loss >= 0;
  for (int i = 0; i < g->nvals && !has_out; i++)
    has_out = g->vals[i].is_output;
  if (!has_out)
    return MB_ERR(MB_EINVAL, "nothing to compute: mark a loss (mb_set_loss) or outputs (mb_mark_output)");
  if (o.train && !g->has_backward)
    MB_TRY(mb_graph_backward(g, o.accumulate_grads));
  MB_TRY(mb_graph_dce(g));
  int rc = mb_plan_build(g);
  if (rc != MB_OK)
    return mb_error_context(rc, "planning memory");
  g->params_generation = mb_params_generation(g->params);
  g->compiled = 1;
  return MB_OK;
}
