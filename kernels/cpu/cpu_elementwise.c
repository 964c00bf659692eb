/* cpu_elementwise.c: add/mul/affine with broadcasting, activations and their
 * gradients, broadcast_to/sum_to, casts, fills and copies on the CPU. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"
#include "kernels/cpu/vecmath.h"
#include "runtime/dtype.h"

/* f32: vecmath.h's vectorisable exp, softplus and GELU (libm's are opaque
 * calls that keep a loop scalar); tanh stays libm's (only BERT's pooler). */
#define T float
#define SFX f32
#define EXP mb_expf
#define SOFTPLUS mb_softplusf
#define GELU mb_geluf
#define GELU_GRAD mb_gelu_gradf
#define TANH tanhf
#include "kernels/cpu/cpu_elementwise_body.h"
#undef T
#undef SFX
#undef EXP
#undef SOFTPLUS
#undef GELU
#undef GELU_GRAD
#undef TANH

/* f64 (gradient checks): libm throughout. */
static inline double gelu_f64(double x) { return 0.5 * x * (1 + erf(x * M_SQRT1_2)); }
static inline double gelu_grad_f64(double x) {
  return 0.5 * (1 + erf(x * M_SQRT1_2)) + x * exp(-0.5 * x * x) * (0.5 * M_2_SQRTPI * M_SQRT1_2);
}
#define T double
#define SFX f64
#define EXP exp
#define SOFTPLUS mb_softplus
#define GELU gelu_f64
#define GELU_GRAD gelu_grad_f64
#define TANH tanh
#include "kernels/cpu/cpu_elementwise_body.h"
#undef T
#undef SFX
#undef EXP
#undef SOFTPLUS
#undef GELU
#undef GELU_GRAD
#undef TANH

/* Dispatch on the dtype of input `which` to the f32/f64 instance. */
#define DISPATCH(k, which, call32, call64)       \
  switch ((k)->in[which].dtype) {                \
  case MB_F32: return call32;                    \
  case MB_F64: return call64;                    \
  default: return mb_cpu_unsupported((k), which); \
  }

static int add_kernel(const mb_kernel_call *k) {
  DISPATCH(k, 0, binary_f32(k, 0, k->node->attr.f[0], k->node->attr.f[1]),
           binary_f64(k, 0, k->node->attr.f[0], k->node->attr.f[1]))
}
static int mul_kernel(const mb_kernel_call *k) { DISPATCH(k, 0, binary_f32(k, 1, 1, 1), binary_f64(k, 1, 1, 1)) }
static int broadcast_kernel(const mb_kernel_call *k) {
  DISPATCH(k, 0, binary_f32(k, 2, k->node->attr.f[0], 0), binary_f64(k, 2, k->node->attr.f[0], 0))
}
static int unary_kernel(const mb_kernel_call *k) { DISPATCH(k, 0, unary_f32(k), unary_f64(k)) }
static int act_grad_kernel(const mb_kernel_call *k) { DISPATCH(k, 0, act_grad_kernel_f32(k), act_grad_kernel_f64(k)) }
static int accumulate_kernel(const mb_kernel_call *k) { DISPATCH(k, 0, accumulate_f32(k), accumulate_f64(k)) }
static int sum_to_kernel(const mb_kernel_call *k) { DISPATCH(k, 0, sum_to_f32(k), sum_to_f64(k)) }

static int full_kernel(const mb_kernel_call *k) {
  mb_backend *be = k->backend;
  return be->fill(be, k->out[0].data, k->out[0].dtype, (size_t)mb_tensor_numel(&k->out[0]), k->node->attr.f[0]);
}

static int copy_kernel(const mb_kernel_call *k) {
  if (k->out[0].data != k->in[0].data)
    memcpy(k->out[0].data, k->in[0].data, mb_tensor_nbytes(&k->in[0]));
  return MB_OK;
}

/* Casts: between float formats with the runtime's converters (rounded once,
 * bit-exact with CUDA); integers go through int64 and double. */
static int load_i64(const void *p, mb_dtype dt, int64_t i, int64_t *out) {
  switch (dt) {
  case MB_I8: *out = ((const int8_t *)p)[i]; return 1;
  case MB_U8: case MB_BOOL: *out = ((const uint8_t *)p)[i]; return 1;
  case MB_I16: *out = ((const int16_t *)p)[i]; return 1;
  case MB_U16: *out = ((const uint16_t *)p)[i]; return 1;
  case MB_I32: *out = ((const int32_t *)p)[i]; return 1;
  case MB_U32: *out = ((const uint32_t *)p)[i]; return 1;
  case MB_I64: *out = ((const int64_t *)p)[i]; return 1;
  case MB_U64: *out = (int64_t)((const uint64_t *)p)[i]; return 1;
  default: return 0;
  }
}

static int store_num(void *p, mb_dtype dt, int64_t i, double v) {
  switch (dt) {
  case MB_F32: ((float *)p)[i] = (float)v; return 1;
  case MB_F64: ((double *)p)[i] = v; return 1;
  case MB_I8: ((int8_t *)p)[i] = (int8_t)v; return 1;
  case MB_U8: ((uint8_t *)p)[i] = (uint8_t)v; return 1;
  case MB_I16: ((int16_t *)p)[i] = (int16_t)v; return 1;
  case MB_U16: ((uint16_t *)p)[i] = (uint16_t)v; return 1;
  case MB_I32: ((int32_t *)p)[i] = (int32_t)v; return 1;
  case MB_U32: ((uint32_t *)p)[i] = (uint32_t)v; return 1;
  case MB_I64: ((int64_t *)p)[i] = (int64_t)v; return 1;
  case MB_U64: ((uint64_t *)p)[i] = (uint64_t)v; return 1;
  default: return 0;
  }
}

static int cast_kernel(const mb_kernel_call *k) {
  mb_dtype from = k->in[0].dtype, to = k->out[0].dtype;
  const void *x = k->in[0].data;
  void *y = k->out[0].data;
  int64_t n = mb_tensor_numel(&k->in[0]);
  if (from == to)
    return copy_kernel(k);
  int f32_f64 = (from == MB_F32 && to == MB_F64) || (from == MB_F64 && to == MB_F32);
  if (mb_dtype_info_of(from)->is_float && mb_dtype_info_of(to)->is_float && !f32_f64)
    return mb_convert(y, to, x, from, (size_t)n);
  if (from == MB_F32 && to == MB_F64) {
    for (int64_t i = 0; i < n; i++)
      ((double *)y)[i] = ((const float *)x)[i];
    return MB_OK;
  }
  if (from == MB_F64 && to == MB_F32) {
    for (int64_t i = 0; i < n; i++)
      ((float *)y)[i] = (float)((const double *)x)[i];
    return MB_OK;
  }
  for (int64_t i = 0; i < n; i++) {
    double v;
    int64_t iv;
    if (load_i64(x, from, i, &iv))
      v = (double)iv;
    else if (from == MB_F64)
      v = ((const double *)x)[i];
    else if (from == MB_F32)
      v = ((const float *)x)[i];
    else
      return mb_cpu_unsupported(k, 0);
    if (!store_num(y, to, i, v))
      return mb_cpu_unsupported(k, 0);
  }
  return MB_OK;
}

void mb_cpu_register_elementwise(void) {
  mb_op_set_kernel(MB_OP_FULL, MB_BACKEND_CPU, full_kernel, NULL);
  mb_op_set_kernel(MB_OP_COPY, MB_BACKEND_CPU, copy_kernel, NULL);
  mb_op_set_kernel(MB_OP_GRAD_ACCUMULATE, MB_BACKEND_CPU, accumulate_kernel, NULL);
  mb_op_set_kernel(MB_OP_ADD, MB_BACKEND_CPU, add_kernel, NULL);
  mb_op_set_kernel(MB_OP_MUL, MB_BACKEND_CPU, mul_kernel, NULL);
  mb_op_set_kernel(MB_OP_AFFINE, MB_BACKEND_CPU, unary_kernel, NULL);
  for (int op = MB_OP_RELU; op <= MB_OP_EXP; op++)
    mb_op_set_kernel(op, MB_BACKEND_CPU, unary_kernel, NULL);
  mb_op_set_kernel(MB_OP_ACT_GRAD, MB_BACKEND_CPU, act_grad_kernel, NULL);
  mb_op_set_kernel(MB_OP_BROADCAST_TO, MB_BACKEND_CPU, broadcast_kernel, NULL);
  mb_op_set_kernel(MB_OP_SUM_TO, MB_BACKEND_CPU, sum_to_kernel, NULL);
  mb_op_set_kernel(MB_OP_CAST, MB_BACKEND_CPU, cast_kernel, NULL);
}
