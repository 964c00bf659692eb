/* optim.c: AdamW, SGD, gradient clipping and LR schedules (optim.h). The
 * per-element arithmetic is the backend's (backend.h); this file keeps the
 * state, the step count and the segment lists. */
#include "autograd/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/backend.h"

typedef enum { OPT_ADAMW, OPT_SGD } opt_kind;

struct mb_optimizer {
  opt_kind kind;
  mb_params *p;
  mb_backend *be;
  mb_adamw_cfg adamw;
  mb_sgd_cfg sgd;
  void *state[2];
  int64_t begin, end; /* flat elements the state covers */
  int64_t steps;
  /* scratch segment lists (trainable parameters only) */
  int64_t *seg_begin, *seg_end;
  uint8_t *seg_decay;
  int cap;
};

mb_adamw_cfg mb_adamw_defaults(void) {
  mb_adamw_cfg c = {1e-3, 0.9, 0.999, 1e-8, 1e-2};
  return c;
}

static int optimizer_new(mb_params *p, opt_kind kind, int nstate, int64_t begin, int64_t end, mb_optimizer **out) {
  *out = NULL;
  if (!mb_params_is_materialized(p))
    return MB_ERR(MB_EINVAL, "optimizer: materialise the parameter store first (compile/exec or mb_params_materialize)");
  if (begin < 0 || end < begin)
    return MB_ERR(MB_EINVAL, "optimizer: bad range [%lld, %lld)", (long long)begin, (long long)end);
  mb_optimizer *o = calloc(1, sizeof *o);
  if (!o)
    return MB_ERR(MB_ENOMEM, "allocating an optimizer");
  o->kind = kind;
  o->p = p;
  o->be = mb_params_backend(p);
  o->begin = begin;
  o->end = end;
  o->cap = mb_params_count(p) + 1;
  o->seg_begin = malloc((size_t)o->cap * sizeof *o->seg_begin);
  o->seg_end = malloc((size_t)o->cap * sizeof *o->seg_end);
  o->seg_decay = malloc((size_t)o->cap);
  if (!o->seg_begin || !o->seg_end || !o->seg_decay) {
    mb_optimizer_free(o);
    return MB_ERR(MB_ENOMEM, "optimizer segment lists");
  }
  size_t n = (size_t)(end > begin ? end - begin : 1);
  for (int s = 0; s < nstate; s++) {
    int rc = o->be->alloc(o->be, n * mb_dtype_size(mb_params_dtype(p)), &o->state[s]);
    if (rc == MB_OK)
      rc = o->be->fill(o->be, o->state[s], mb_params_dtype(p), n, 0.0);
    if (rc != MB_OK) {
      mb_optimizer_free(o);
      return mb_error_context(rc, "optimizer state (%zu elements)", n);
    }
  }
  *out = o;
  return MB_OK;
}

int mb_optimizer_adamw_shard(mb_params *p, const mb_adamw_cfg *cfg, int64_t begin, int64_t end,
                             mb_optimizer **out) {
  MB_TRY(optimizer_new(p, OPT_ADAMW, 2, begin, end, out));
  (*out)->adamw = cfg ? *cfg : mb_adamw_defaults();
  return MB_OK;
}

int mb_optimizer_sgd_shard(mb_params *p, const mb_sgd_cfg *cfg, int64_t begin, int64_t end, mb_optimizer **out) {
  if (!cfg)
    return MB_ERR(MB_EINVAL, "mb_optimizer_sgd: a config (at least lr) is required");
  MB_TRY(optimizer_new(p, OPT_SGD, cfg->momentum != 0.0 ? 1 : 0, begin, end, out));
  (*out)->sgd = *cfg;
  return MB_OK;
}

int mb_optimizer_adamw(mb_params *p, const mb_adamw_cfg *cfg, mb_optimizer **out) {
  return mb_optimizer_adamw_shard(p, cfg, 0, mb_params_total(p), out);
}

int mb_optimizer_sgd(mb_params *p, const mb_sgd_cfg *cfg, mb_optimizer **out) {
  return mb_optimizer_sgd_shard(p, cfg, 0, mb_params_total(p), out);
}

void mb_optimizer_range(const mb_optimizer *o, int64_t *begin, int64_t *end) {
  *begin = o->begin;
  *end = o->end;
}

double mb_clip_coef(double norm, double max_norm) {
  double coef = max_norm / (norm + 1e-6);
  return coef < 1.0 ? coef : 1.0;
}

void mb_optimizer_free(mb_optimizer *o) {
  if (!o)
    return;
  for (int s = 0; s < 2; s++)
    if (o->state[s])
      o->be->free(o->be, o->state[s]);
  free(o->seg_begin);
  free(o->seg_end);
  free(o->seg_decay);
  free(o);
}

int64_t mb_optimizer_steps(const mb_optimizer *o) { return o->steps; }
void mb_optimizer_set_steps(mb_optimizer *o, int64_t steps) { o->steps = steps; }
void *mb_optimizer_state(mb_optimizer *o, int which) { return (which == 0 || which == 1) ? o->state[which] : NULL; }

/* Trainable segments intersected with [begin, end), minus `origin`. */
static int segments(mb_params *p, int64_t begin, int64_t end, int64_t origin, int64_t *sb, int64_t *se, uint8_t *sd) {
  int n = 0;
  for (int i = 0; i < mb_params_count(p); i++) {
    const mb_param_info *pi = mb_params_info(p, i);
    if (!pi->trainable)
      continue;
    int64_t b = pi->offset > begin ? pi->offset : begin;
    int64_t e = pi->offset + pi->numel < end ? pi->offset + pi->numel : end;
    if (b >= e)
      continue;
    sb[n] = b - origin;
    se[n] = e - origin;
    if (sd)
      sd[n] = (uint8_t)pi->weight_decay;
    n++;
  }
  return n;
}

/* Update local elements of the given buffers (indexed from the optimizer's
 * `begin`) over global [begin, end). */
static int step_local(mb_optimizer *o, double lr, double grad_scale, int64_t begin, int64_t end, void *param,
                      const void *grad) {
  if (!(grad_scale > 0.0) || !isfinite(grad_scale))
    return MB_ERR(MB_EINVAL, "optimizer: gradient scale %g must be positive and finite", grad_scale);
  int n = segments(o->p, begin, end, o->begin, o->seg_begin, o->seg_end, o->seg_decay);
  o->steps++;
  if (o->kind == OPT_ADAMW) {
    if (!o->be->adamw)
      return MB_ERR(MB_EUNSUPPORTED, "backend %s has no fused AdamW", o->be->name);
    mb_adamw_args a = {param, (void *)grad, o->state[0], o->state[1], mb_params_dtype(o->p), o->seg_begin,
                       o->seg_end, o->seg_decay, n, lr >= 0 ? lr : o->adamw.lr, o->adamw.beta1, o->adamw.beta2,
                       o->adamw.eps, o->adamw.weight_decay, o->steps, grad_scale};
    return o->be->adamw(o->be, &a);
  }
  if (!o->be->sgd)
    return MB_ERR(MB_EUNSUPPORTED, "backend %s has no fused SGD", o->be->name);
  mb_sgd_args a = {param, (void *)grad, o->state[0], mb_params_dtype(o->p), o->seg_begin, o->seg_end, o->seg_decay,
                   n, lr >= 0 ? lr : o->sgd.lr, o->sgd.momentum, o->sgd.dampening, o->sgd.weight_decay,
                   o->sgd.nesterov, o->steps, grad_scale};
  return o->be->sgd(o->be, &a);
}

int mb_optimizer_step_range(mb_optimizer *o, double lr, double grad_scale, int64_t begin, int64_t end) {
  if (begin < o->begin || end > o->end || begin > end || end > mb_params_total(o->p))
    return MB_ERR(MB_EINVAL, "optimizer range [%lld, %lld) outside its state's [%lld, %lld) or the store's %lld elements",
                  (long long)begin, (long long)end, (long long)o->begin, (long long)o->end,
                  (long long)mb_params_total(o->p));
  size_t es = mb_dtype_size(mb_params_dtype(o->p));
  return step_local(o, lr, grad_scale, begin, end, (char *)mb_params_data(o->p) + (size_t)o->begin * es,
                    (const char *)mb_params_grad(o->p) + (size_t)o->begin * es);
}

int mb_optimizer_step(mb_optimizer *o, double lr, double grad_scale) {
  return mb_optimizer_step_range(o, lr, grad_scale, o->begin, o->end < mb_params_total(o->p) ? o->end : mb_params_total(o->p));
}

int mb_optimizer_step_shard(mb_optimizer *o, double lr, double grad_scale, void *params, const void *grads) {
  if (!params || !grads)
    return MB_ERR(MB_EINVAL, "mb_optimizer_step_shard: parameter and gradient shards are required");
  return step_local(o, lr, grad_scale, o->begin, o->end, params, grads);
}

int mb_optimizer_shard_sumsq(mb_optimizer *o, const void *grads, double *sumsq) {
  if (!o->be->sumsq)
    return MB_ERR(MB_EUNSUPPORTED, "backend %s has no sum of squares", o->be->name);
  int n = segments(o->p, o->begin, o->end, o->begin, o->seg_begin, o->seg_end, NULL);
  return o->be->sumsq(o->be, grads, mb_params_dtype(o->p), o->seg_begin, o->seg_end, n, sumsq);
}

int mb_clip_grad_norm(mb_params *p, double max_norm, double *norm, double *scale) {
  mb_backend *be = mb_params_backend(p);
  if (!be)
    return MB_ERR(MB_EINVAL, "mb_clip_grad_norm: the parameter store is not materialised");
  if (!be->sumsq)
    return MB_ERR(MB_EUNSUPPORTED, "backend %s has no sum of squares", be->name);
  int cap = mb_params_count(p) + 1;
  int64_t *sb = malloc((size_t)cap * sizeof *sb), *se = malloc((size_t)cap * sizeof *se);
  if (!sb || !se) {
    free(sb), free(se);
    return MB_ERR(MB_ENOMEM, "clip segments");
  }
  int n = segments(p, 0, mb_params_total(p), 0, sb, se, NULL);
  double ss = 0;
  int rc = be->sumsq(be, mb_params_grad(p), mb_params_dtype(p), sb, se, n, &ss);
  free(sb), free(se);
  MB_TRY(rc);
  double total = sqrt(ss);
  if (norm)
    *norm = total;
  if (scale)
    *scale = mb_clip_coef(total, max_norm);
  return MB_OK;
}

double mb_lr_at(const mb_lr_schedule *s, int64_t step) {
  double base = s->base_lr;
  if (step < s->warmup_steps)
    return base * (double)step / (double)(s->warmup_steps > 1 ? s->warmup_steps : 1);
  if (s->decay == MB_LR_CONSTANT)
    return base;
  int64_t span = s->total_steps - s->warmup_steps;
  if (s->decay == MB_LR_LINEAR) {
    double f = (double)(s->total_steps - step) / (double)(span > 1 ? span : 1);
    return base * (f > 0.0 ? f : 0.0);
  }
  double progress = (double)(step - s->warmup_steps) / (double)(span > 1 ? span : 1);
  double f = 0.5 * (1.0 + cos(M_PI * progress));
  return base * (f > 0.0 ? f : 0.0);
}
