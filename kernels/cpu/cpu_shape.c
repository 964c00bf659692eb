/* cpu_shape.c: slice, its zero-padding gradient, concat and permute. They
 * only move bytes, so one implementation serves every dtype. */
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

/* outer x [dim] x inner view of a shape around `axis`. */
static void around(const mb_shape *s, int axis, int64_t *outer, int64_t *inner) {
  *outer = 1;
  *inner = 1;
  for (int d = 0; d < axis; d++)
    *outer *= s->dim[d];
  for (int d = axis + 1; d < s->ndim; d++)
    *inner *= s->dim[d];
}

static int slice_kernel(const mb_kernel_call *k) {
  int axis = (int)k->node->attr.i[0];
  int64_t start = k->node->attr.i[1], len = k->node->attr.i[2], outer, inner;
  around(&k->in[0].shape, axis, &outer, &inner);
  size_t es = mb_dtype_size(k->in[0].dtype);
  int64_t dim = k->in[0].shape.dim[axis];
  const char *x = k->in[0].data;
  char *y = k->out[0].data;
  MB_PAR_FOR(outer * len * inner > MB_CPU_PAR_ELEMS && outer > 1,
    for (int64_t o = 0; o < outer; o++)
      memcpy(y + (size_t)(o * len * inner) * es, x + (size_t)((o * dim + start) * inner) * es, (size_t)(len * inner) * es););
  return MB_OK;
}

static int slice_grad_kernel(const mb_kernel_call *k) {
  int axis = (int)k->node->attr.i[0];
  int64_t start = k->node->attr.i[1], len = k->in[0].shape.dim[axis], outer, inner;
  around(&k->out[0].shape, axis, &outer, &inner);
  size_t es = mb_dtype_size(k->out[0].dtype);
  int64_t dim = k->out[0].shape.dim[axis];
  const char *g = k->in[0].data;
  char *y = k->out[0].data;
  MB_PAR_FOR(outer * dim * inner > MB_CPU_PAR_ELEMS && outer > 1,
    for (int64_t o = 0; o < outer; o++) {
      char *row = y + (size_t)(o * dim * inner) * es;
      memset(row, 0, (size_t)(start * inner) * es);
      memcpy(row + (size_t)(start * inner) * es, g + (size_t)(o * len * inner) * es, (size_t)(len * inner) * es);
      memset(row + (size_t)((start + len) * inner) * es, 0, (size_t)((dim - start - len) * inner) * es);
    });
  return MB_OK;
}

static int concat_kernel(const mb_kernel_call *k) {
  int axis = (int)k->node->attr.i[0];
  int64_t outer, inner;
  around(&k->out[0].shape, axis, &outer, &inner);
  size_t es = mb_dtype_size(k->out[0].dtype);
  int64_t dim = k->out[0].shape.dim[axis];
  char *y = k->out[0].data;
  int64_t off = 0;
  /* The rows of one input interleave with the others' in the output: by
   * rows, in parallel when large (the backward joins slice gradients so). */
  for (int j = 0; j < k->n_in; j++) {
    int64_t len = k->in[j].shape.dim[axis];
    const char *x = k->in[j].data;
    MB_PAR_FOR(outer > MB_CPU_PAR_ROWS && outer * len * inner > MB_CPU_PAR_ELEMS,
      for (int64_t o = 0; o < outer; o++)
        memcpy(y + (size_t)((o * dim + off) * inner) * es, x + (size_t)(o * len * inner) * es,
               (size_t)(len * inner) * es););
    off += len;
  }
  return MB_OK;
}

/* out[i0..in-1] = x[...] with out dim d = x dim perm[d]. Rows of the last
 * output dim are copied with the input stride of that dim (a memcpy when
 * the last dim stays last). */
static int permute_kernel(const mb_kernel_call *k) {
  const mb_shape *xs = &k->in[0].shape, *ys = &k->out[0].shape;
  int nd = ys->ndim;
  size_t es = mb_dtype_size(k->out[0].dtype);
  if (nd == 0)
    return memcpy(k->out[0].data, k->in[0].data, es), MB_OK;
  int64_t xstride[MB_MAX_DIMS], st[MB_MAX_DIMS];
  int64_t s = 1;
  for (int d = xs->ndim - 1; d >= 0; d--) {
    xstride[d] = s;
    s *= xs->dim[d];
  }
  for (int d = 0; d < nd; d++)
    st[d] = xstride[k->node->attr.i[d]];
  int64_t inner = ys->dim[nd - 1], rows = mb_tensor_numel(&k->out[0]) / (inner ? inner : 1);
  int64_t istr = st[nd - 1];
  const char *x = k->in[0].data;
  char *y = k->out[0].data;
  MB_PAR_FOR(rows * inner > MB_CPU_PAR_ELEMS && rows > 1,
    for (int64_t r = 0; r < rows; r++) {
      int64_t rem = r, off = 0;
      for (int d = nd - 2; d >= 0; d--) {
        off += (rem % ys->dim[d]) * st[d];
        rem /= ys->dim[d];
      }
      char *dst = y + (size_t)(r * inner) * es;
      const char *src = x + (size_t)off * es;
      if (istr == 1) {
        memcpy(dst, src, (size_t)inner * es);
      } else if (es == 4) {
        for (int64_t i = 0; i < inner; i++)
          ((uint32_t *)dst)[i] = ((const uint32_t *)src)[i * istr];
      } else if (es == 8) {
        for (int64_t i = 0; i < inner; i++)
          ((uint64_t *)dst)[i] = ((const uint64_t *)src)[i * istr];
      } else {
        for (int64_t i = 0; i < inner; i++)
          memcpy(dst + (size_t)i * es, src + (size_t)(i * istr) * es, es);
      }
    });
  return MB_OK;
}

void mb_cpu_register_shape(void) {
  mb_op_set_kernel(MB_OP_SLICE, MB_BACKEND_CPU, slice_kernel, NULL);
  mb_op_set_kernel(MB_OP_SLICE_GRAD, MB_BACKEND_CPU, slice_grad_kernel, NULL);
  mb_op_set_kernel(MB_OP_CONCAT, MB_BACKEND_CPU, concat_kernel, NULL);
  mb_op_set_kernel(MB_OP_PERMUTE, MB_BACKEND_CPU, permute_kernel, NULL);
}
