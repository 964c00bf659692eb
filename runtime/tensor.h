/* tensor.h: the tensor descriptor shared by every layer.
 *
 * A tensor is a dtype, a shape of up to MB_MAX_DIMS dimensions, and one
 * contiguous row-major buffer on one device. There are no strides: views are
 * made by ops that copy, which keeps every kernel simple and every buffer's
 * size known to the memory planner.
 */
#ifndef MB_RUNTIME_TENSOR_H
#define MB_RUNTIME_TENSOR_H

#include <stdint.h>

#include "runtime/dtype.h"
#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MB_MAX_DIMS 8

typedef enum { MB_DEVICE_CPU = 0, MB_DEVICE_CUDA = 1 } mb_device_type;

typedef struct {
  mb_device_type type;
  int index; /* CUDA ordinal; 0 for the CPU */
} mb_device;

typedef struct {
  int ndim;
  int64_t dim[MB_MAX_DIMS];
} mb_shape;

typedef struct mb_tensor {
  mb_dtype dtype;
  mb_shape shape;
  mb_device device;
  void *data;   /* NULL until bound to storage */
  int owns;     /* 1 if mb_tensor_free must release data */
} mb_tensor;

static inline mb_device mb_cpu(void) {
  mb_device d = {MB_DEVICE_CPU, 0};
  return d;
}

/* Build a shape from a list: mb_shape_of(3, (int64_t[]){2, 3, 4}). */
mb_shape mb_shape_of(int ndim, const int64_t *dims);
mb_shape mb_shape1(int64_t a);
mb_shape mb_shape2(int64_t a, int64_t b);
mb_shape mb_shape3(int64_t a, int64_t b, int64_t c);
mb_shape mb_shape4(int64_t a, int64_t b, int64_t c, int64_t d);
int64_t mb_shape_numel(const mb_shape *s);
int mb_shape_equal(const mb_shape *a, const mb_shape *b);
/* "[2, 3, 4]" into buf (always terminated); returns buf. */
char *mb_shape_str(const mb_shape *s, char *buf, size_t cap);
/* MB_EINVAL unless 0 <= ndim <= MB_MAX_DIMS and every dim >= 0. */
int mb_shape_validate(const mb_shape *s);

int64_t mb_tensor_numel(const mb_tensor *t);
size_t mb_tensor_nbytes(const mb_tensor *t);

/* Allocate a zeroed host tensor (tracked by the host allocator). */
int mb_tensor_alloc_host(mb_tensor *t, mb_dtype dt, mb_shape shape) MB_NODISCARD;
/* Wrap caller-owned memory; mb_tensor_free leaves it alone. */
void mb_tensor_wrap(mb_tensor *t, mb_dtype dt, mb_shape shape, mb_device dev, void *data);
void mb_tensor_free(mb_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
