/* tensor.c: shapes and host tensors (tensor.h). */
#include "runtime/tensor.h"

#include <stdio.h>
#include <string.h>

#include "runtime/alloc.h"

mb_shape mb_shape_of(int ndim, const int64_t *dims) {
  mb_shape s;
  memset(&s, 0, sizeof s);
  s.ndim = ndim;
  for (int i = 0; i < ndim && i < MB_MAX_DIMS; i++)
    s.dim[i] = dims[i];
  return s;
}

mb_shape mb_shape1(int64_t a) { return mb_shape_of(1, (int64_t[]){a}); }
mb_shape mb_shape2(int64_t a, int64_t b) { return mb_shape_of(2, (int64_t[]){a, b}); }
mb_shape mb_shape3(int64_t a, int64_t b, int64_t c) { return mb_shape_of(3, (int64_t[]){a, b, c}); }
mb_shape mb_shape4(int64_t a, int64_t b, int64_t c, int64_t d) {
  return mb_shape_of(4, (int64_t[]){a, b, c, d});
}

int64_t mb_shape_numel(const mb_shape *s) {
  int64_t n = 1;
  for (int i = 0; i < s->ndim; i++)
    n *= s->dim[i];
  return n;
}

int mb_shape_equal(const mb_shape *a, const mb_shape *b) {
  if (a->ndim != b->ndim)
    return 0;
  for (int i = 0; i < a->ndim; i++)
    if (a->dim[i] != b->dim[i])
      return 0;
  return 1;
}

char *mb_shape_str(const mb_shape *s, char *buf, size_t cap) {
  size_t n = 0;
  if (cap == 0)
    return buf;
  buf[0] = 0;
  n += (size_t)snprintf(buf + n, cap - n, "[");
  for (int i = 0; i < s->ndim && n < cap; i++)
    n += (size_t)snprintf(buf + n, cap - n, i ? ", %lld" : "%lld", (long long)s->dim[i]);
  if (n < cap)
    snprintf(buf + n, cap - n, "]");
  return buf;
}

int mb_shape_validate(const mb_shape *s) {
  if (s->ndim < 0 || s->ndim > MB_MAX_DIMS)
    return MB_ERR(MB_EINVAL, "shape has %d dimensions; at most %d are supported", s->ndim, MB_MAX_DIMS);
  for (int i = 0; i < s->ndim; i++)
    if (s->dim[i] < 0)
      return MB_ERR(MB_EINVAL, "shape dimension %d is negative (%lld)", i, (long long)s->dim[i]);
  return MB_OK;
}

int64_t mb_tensor_numel(const mb_tensor *t) { return mb_shape_numel(&t->shape); }

size_t mb_tensor_nbytes(const mb_tensor *t) {
  return (size_t)mb_tensor_numel(t) * mb_dtype_size(t->dtype);
}

int mb_tensor_alloc_host(mb_tensor *t, mb_dtype dt, mb_shape shape) {
  memset(t, 0, sizeof *t);
  MB_TRY(mb_shape_validate(&shape));
  t->dtype = dt;
  t->shape = shape;
  t->device = mb_cpu();
  size_t n = mb_tensor_nbytes(t);
  t->data = mb_host_calloc(n ? n : 1);
  if (!t->data)
    return MB_ERR(MB_ENOMEM, "allocating a host tensor of %zu bytes", n);
  t->owns = 1;
  return MB_OK;
}

void mb_tensor_wrap(mb_tensor *t, mb_dtype dt, mb_shape shape, mb_device dev, void *data) {
  memset(t, 0, sizeof *t);
  t->dtype = dt;
  t->shape = shape;
  t->device = dev;
  t->data = data;
  t->owns = 0;
}

void mb_tensor_free(mb_tensor *t) {
  if (t->owns && t->data && t->device.type == MB_DEVICE_CPU)
    mb_host_free(t->data);
  t->data = NULL;
  t->owns = 0;
}
