/* params.c: the flat parameter/gradient store (params.h). */
#include "autograd/params.h"

#include <stdlib.h>
#include <string.h>

#include "autograd/backend.h"
#include "autograd/graph_internal.h"

/* 64 bytes: every parameter starts on a cache line / vector boundary. */
#define PARAM_ALIGN_BYTES 64

typedef struct {
  mb_param_info info;
  char *name;
} param_entry;

struct mb_params {
  mb_dtype dtype;
  param_entry *p;
  int n, cap;
  int64_t total;
  uint64_t generation;
  mb_backend *be;
  void *data, *grad;
};

int mb_params_new(mb_dtype dtype, mb_params **out) {
  *out = NULL;
  if (dtype != MB_F32 && dtype != MB_F64)
    return MB_ERR(MB_EUNSUPPORTED, "parameter store dtype %s: master weights are f32 (or f64 for gradchecks)",
                  mb_dtype_name(dtype));
  mb_params *p = calloc(1, sizeof *p);
  if (!p)
    return MB_ERR(MB_ENOMEM, "allocating a parameter store");
  p->dtype = dtype;
  *out = p;
  return MB_OK;
}

void mb_params_free(mb_params *p) {
  if (!p)
    return;
  if (p->be) {
    p->be->free(p->be, p->data);
    p->be->free(p->be, p->grad);
  }
  for (int i = 0; i < p->n; i++)
    free(p->p[i].name);
  free(p->p);
  free(p);
}

mb_dtype mb_params_dtype(const mb_params *p) { return p->dtype; }
int mb_params_count(const mb_params *p) { return p->n; }
const mb_param_info *mb_params_info(const mb_params *p, int i) {
  return (i >= 0 && i < p->n) ? &p->p[i].info : NULL;
}
int64_t mb_params_total(const mb_params *p) { return p->total; }
uint64_t mb_params_generation(const mb_params *p) { return p->generation; }
int mb_params_is_materialized(const mb_params *p) { return p->be != NULL; }
mb_backend *mb_params_backend(const mb_params *p) { return p->be; }
void *mb_params_data(mb_params *p) { return p->data; }
void *mb_params_grad(mb_params *p) { return p->grad; }

int mb_params_find(const mb_params *p, const char *name) {
  for (int i = 0; i < p->n; i++)
    if (strcmp(p->p[i].name, name) == 0)
      return i;
  return -1;
}

int mb_params_lookup_or_add(mb_params *p, const char *name, mb_shape shape, int *index, char *why, size_t cap) {
  int i = mb_params_find(p, name);
  if (i >= 0) {
    if (!mb_shape_equal(&p->p[i].info.shape, &shape)) {
      char sh[96];
      mb_shape_str(&p->p[i].info.shape, sh, sizeof sh);
      snprintf(why, cap, "the store holds it with shape %s", sh);
      return MB_ESHAPE;
    }
    *index = i;
    return MB_OK;
  }
  if (p->be) {
    snprintf(why, cap, "not in the parameter store, whose layout is fixed (materialised)");
    return MB_ENOTFOUND;
  }
  if (p->n == p->cap) {
    int ncap = p->cap ? p->cap * 2 : 64;
    param_entry *np = realloc(p->p, (size_t)ncap * sizeof *np);
    if (!np) {
      snprintf(why, cap, "out of memory");
      return MB_ENOMEM;
    }
    p->p = np;
    p->cap = ncap;
  }
  param_entry *e = &p->p[p->n];
  memset(e, 0, sizeof *e);
  e->name = strdup(name);
  if (!e->name) {
    snprintf(why, cap, "out of memory");
    return MB_ENOMEM;
  }
  int64_t align = PARAM_ALIGN_BYTES / (int64_t)mb_dtype_size(p->dtype);
  e->info.name = e->name;
  e->info.shape = shape;
  e->info.numel = mb_shape_numel(&shape);
  e->info.offset = (p->total + align - 1) / align * align;
  e->info.trainable = 1;
  e->info.weight_decay = 1;
  p->total = e->info.offset + e->info.numel;
  *index = p->n++;
  return MB_OK;
}

int mb_params_add(mb_params *p, const char *name, mb_shape shape, int *index_out) {
  char why[160];
  int idx;
  if (!name || !*name || mb_shape_validate(&shape) != MB_OK)
    return MB_ERR(MB_EINVAL, "mb_params_add: needs a name and a valid shape");
  int rc = mb_params_lookup_or_add(p, name, shape, &idx, why, sizeof why);
  if (rc != MB_OK)
    return MB_ERR(rc, "adding parameter '%s': %s", name, why);
  if (index_out)
    *index_out = idx;
  return MB_OK;
}

int mb_params_set_trainable(mb_params *p, int i, int trainable) {
  if (i < 0 || i >= p->n)
    return MB_ERR(MB_EINVAL, "mb_params_set_trainable: no parameter %d (store has %d)", i, p->n);
  if (p->p[i].info.trainable != !!trainable) {
    p->p[i].info.trainable = !!trainable;
    p->generation++;
  }
  return MB_OK;
}

int mb_params_set_trainable_prefix(mb_params *p, const char *prefix, int trainable) {
  int count = 0;
  size_t len = strlen(prefix);
  for (int i = 0; i < p->n; i++)
    if (strncmp(p->p[i].name, prefix, len) == 0) {
      (void)mb_params_set_trainable(p, i, trainable);
      count++;
    }
  return count;
}

int mb_params_set_weight_decay(mb_params *p, int i, int decay) {
  if (i < 0 || i >= p->n)
    return MB_ERR(MB_EINVAL, "mb_params_set_weight_decay: no parameter %d (store has %d)", i, p->n);
  p->p[i].info.weight_decay = !!decay;
  return MB_OK;
}

int mb_params_materialize(mb_params *p, mb_backend *be) {
  if (p->be) {
    if (p->be != be)
      return MB_ERR(MB_EUNSUPPORTED, "parameter store already lives on backend %s, not %s", p->be->name, be->name);
    return MB_OK;
  }
  size_t bytes = (size_t)(p->total ? p->total : 1) * mb_dtype_size(p->dtype);
  MB_TRY(be->alloc(be, bytes, &p->data));
  int rc = be->alloc(be, bytes, &p->grad);
  if (rc != MB_OK) {
    be->free(be, p->data);
    p->data = NULL;
    return rc;
  }
  p->be = be;
  MB_TRY(be->fill(be, p->data, p->dtype, (size_t)(p->total ? p->total : 1), 0.0));
  MB_TRY(be->fill(be, p->grad, p->dtype, (size_t)(p->total ? p->total : 1), 0.0));
  return MB_OK;
}

static mb_tensor view(mb_params *p, int i, void *base) {
  mb_tensor t;
  memset(&t, 0, sizeof t);
  if (i < 0 || i >= p->n)
    return t;
  void *data = base ? (char *)base + (size_t)p->p[i].info.offset * mb_dtype_size(p->dtype) : NULL;
  mb_tensor_wrap(&t, p->dtype, p->p[i].info.shape, p->be ? p->be->device : mb_cpu(), data);
  return t;
}

mb_tensor mb_params_tensor(mb_params *p, int i) { return view(p, i, p->data); }
mb_tensor mb_params_grad_tensor(mb_params *p, int i) { return view(p, i, p->grad); }

int mb_params_set(mb_params *p, int i, const void *host) {
  if (!p->be)
    return MB_ERR(MB_EINVAL, "mb_params_set: materialise the store first (mb_params_materialize)");
  if (i < 0 || i >= p->n)
    return MB_ERR(MB_EINVAL, "mb_params_set: no parameter %d (store has %d)", i, p->n);
  mb_tensor t = mb_params_tensor(p, i);
  return p->be->copy_in(p->be, t.data, host, mb_tensor_nbytes(&t));
}

int mb_params_get(mb_params *p, int i, void *host) {
  if (!p->be)
    return MB_ERR(MB_EINVAL, "mb_params_get: materialise the store first (mb_params_materialize)");
  if (i < 0 || i >= p->n)
    return MB_ERR(MB_EINVAL, "mb_params_get: no parameter %d (store has %d)", i, p->n);
  mb_tensor t = mb_params_tensor(p, i);
  return p->be->copy_out(p->be, host, t.data, mb_tensor_nbytes(&t));
}

int mb_params_zero_grad(mb_params *p) {
  if (!p->be)
    return MB_ERR(MB_EINVAL, "mb_params_zero_grad: materialise the store first");
  return p->be->fill(p->be, p->grad, p->dtype, (size_t)(p->total ? p->total : 1), 0.0);
}
