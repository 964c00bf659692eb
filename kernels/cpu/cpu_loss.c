/* cpu_loss.c: softmax cross-entropy over integer labels (mean over rows not
 * equal to ignore_index, like torch.nn.functional.cross_entropy) and its
 * gradient. A label outside [0, C) is a run-time error naming the row. */
#include <math.h>

#include "kernels/cpu/cpu_internal.h"

static int64_t label_at(const mb_tensor *t, int64_t i) {
  return t->dtype == MB_I32 ? ((const int32_t *)t->data)[i] : ((const int64_t *)t->data)[i];
}

static int check_labels(const mb_tensor *labels, int64_t N, int64_t C, int64_t ignore) {
  for (int64_t i = 0; i < N; i++) {
    int64_t y = label_at(labels, i);
    if (y != ignore && (y < 0 || y >= C))
      return MB_ERR(MB_EINVAL, "cross_entropy: label %lld in row %lld is outside [0, %lld) (ignore_index %lld)",
                    (long long)y, (long long)i, (long long)C, (long long)ignore);
  }
  return MB_OK;
}

#define FN(name) MB_CAT(name, SFX)

#define T float
#define SFX f32
#define EXP expf
#include "kernels/cpu/cpu_loss_body.h"
#undef T
#undef SFX
#undef EXP

#define T double
#define SFX f64
#define EXP exp
#include "kernels/cpu/cpu_loss_body.h"
#undef T
#undef SFX
#undef EXP

static int ce_kernel(const mb_kernel_call *k) {
  switch (k->in[0].dtype) {
  case MB_F32: return ce_fwd_f32(k);
  case MB_F64: return ce_fwd_f64(k);
  default: return mb_cpu_unsupported(k, 0);
  }
}

static int ce_grad_kernel(const mb_kernel_call *k) {
  switch (k->in[1].dtype) {
  case MB_F32: return ce_bwd_f32(k);
  case MB_F64: return ce_bwd_f64(k);
  default: return mb_cpu_unsupported(k, 1);
  }
}

void mb_cpu_register_loss(void) {
  mb_op_set_kernel(MB_OP_CROSS_ENTROPY, MB_BACKEND_CPU, ce_kernel, NULL);
  mb_op_set_kernel(MB_OP_CROSS_ENTROPY_GRAD, MB_BACKEND_CPU, ce_grad_kernel, NULL);
}
