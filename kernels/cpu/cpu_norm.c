/* cpu_norm.c: LayerNorm, RMSNorm and softmax kernels (f32 and f64 from
 * cpu_norm_body.h) and the workspaces of the norm gradients. */
#include <math.h>
#include <string.h>

#include "autograd/graph.h"
#include "kernels/cpu/cpu_internal.h"
#include "kernels/cpu/vecmath.h"

/* Row chunks for weight-gradient partial sums (fixed, so deterministic). */
#define MB_NORM_CHUNKS 64

#define T float
#define SFX f32
#define EXP mb_expf
#include "kernels/cpu/cpu_norm_body.h"
#undef T
#undef SFX
#undef EXP

#define T double
#define SFX f64
#define EXP exp
#include "kernels/cpu/cpu_norm_body.h"
#undef T
#undef SFX
#undef EXP

#define DISPATCH(k, which, fn)                     \
  switch ((k)->in[which].dtype) {                  \
  case MB_F32: return fn##_f32(k);                 \
  case MB_F64: return fn##_f64(k);                 \
  default: return mb_cpu_unsupported((k), which);  \
  }

static int layernorm_kernel(const mb_kernel_call *k) { DISPATCH(k, 0, layernorm) }
static int layernorm_grad_kernel(const mb_kernel_call *k) { DISPATCH(k, 1, layernorm_grad) }
static int rmsnorm_kernel(const mb_kernel_call *k) { DISPATCH(k, 0, rmsnorm) }
static int rmsnorm_grad_kernel(const mb_kernel_call *k) { DISPATCH(k, 1, rmsnorm_grad) }
static int softmax_kernel(const mb_kernel_call *k) { DISPATCH(k, 0, softmax) }
static int softmax_grad_kernel(const mb_kernel_call *k) { DISPATCH(k, 0, softmax_grad) }

/* Partials of the weight (and bias) gradient: [chunks][H] doubles each. */
static size_t norm_grad_workspace(const mb_graph *g, const mb_node *n, int nparts) {
  const mb_value *x = mb_graph_value(g, (mb_var){n->in[1]});
  int64_t H = x->shape.ndim ? x->shape.dim[x->shape.ndim - 1] : 1;
  int64_t rows = mb_shape_numel(&x->shape) / (H ? H : 1);
  int64_t nch = rows < MB_NORM_CHUNKS ? rows : MB_NORM_CHUNKS;
  return (size_t)(nch * nparts * H) * sizeof(double);
}
static size_t layernorm_grad_ws(const mb_graph *g, const mb_node *n) { return norm_grad_workspace(g, n, 2); }
static size_t rmsnorm_grad_ws(const mb_graph *g, const mb_node *n) { return norm_grad_workspace(g, n, 1); }

void mb_cpu_register_norm(void) {
  mb_op_set_kernel(MB_OP_LAYERNORM, MB_BACKEND_CPU, layernorm_kernel, NULL);
  mb_op_set_kernel(MB_OP_LAYERNORM_GRAD, MB_BACKEND_CPU, layernorm_grad_kernel, layernorm_grad_ws);
  mb_op_set_kernel(MB_OP_RMSNORM, MB_BACKEND_CPU, rmsnorm_kernel, NULL);
  mb_op_set_kernel(MB_OP_RMSNORM_GRAD, MB_BACKEND_CPU, rmsnorm_grad_kernel, rmsnorm_grad_ws);
  mb_op_set_kernel(MB_OP_SOFTMAX, MB_BACKEND_CPU, softmax_kernel, NULL);
  mb_op_set_kernel(MB_OP_SOFTMAX_GRAD, MB_BACKEND_CPU, softmax_grad_kernel, NULL);
}
