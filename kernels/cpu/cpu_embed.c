/* cpu_embed.c: embedding lookup and its scatter-add gradient, mean pooling
 * (plain and masked) and its gradient. Lookups check every id first, so a
 * bad id is an error naming its position, never an out-of-bounds read. */
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

static int64_t id_at(const mb_tensor *t, int64_t i) {
  return t->dtype == MB_I32 ? ((const int32_t *)t->data)[i] : ((const int64_t *)t->data)[i];
}

static int check_ids(const mb_tensor *ids, int64_t V) {
  int64_t n = mb_tensor_numel(ids);
  for (int64_t i = 0; i < n; i++) {
    int64_t id = id_at(ids, i);
    if (id < 0 || id >= V)
      return MB_ERR(MB_EINVAL, "embedding: id %lld at flat position %lld is outside [0, %lld)", (long long)id,
                    (long long)i, (long long)V);
  }
  return MB_OK;
}

/* Mask value as a double (float or integer masks). */
static double mask_at(const mb_tensor *m, int64_t i) {
  switch (m->dtype) {
  case MB_F32: return ((const float *)m->data)[i];
  case MB_F64: return ((const double *)m->data)[i];
  case MB_I32: return ((const int32_t *)m->data)[i];
  case MB_I64: return (double)((const int64_t *)m->data)[i];
  default: return 1.0;
  }
}

#define FN(name) MB_CAT(name, SFX)
#define T float
#define SFX f32
#include "kernels/cpu/cpu_embed_body.h"
#undef T
#undef SFX
#define T double
#define SFX f64
#include "kernels/cpu/cpu_embed_body.h"
#undef T
#undef SFX

#define DISPATCH(k, which, fn)                     \
  switch ((k)->in[which].dtype) {                  \
  case MB_F32: return fn##_f32(k);                 \
  case MB_F64: return fn##_f64(k);                 \
  default: return mb_cpu_unsupported((k), which);  \
  }

static int embedding_kernel(const mb_kernel_call *k) { DISPATCH(k, 1, embedding) }
static int embedding_grad_kernel(const mb_kernel_call *k) { DISPATCH(k, 1, embedding_grad) }
static int mean_pool_kernel(const mb_kernel_call *k) { DISPATCH(k, 0, mean_pool) }
static int mean_pool_grad_kernel(const mb_kernel_call *k) { DISPATCH(k, 0, mean_pool_grad) }

void mb_cpu_register_embed(void) {
  mb_op_set_kernel(MB_OP_EMBEDDING, MB_BACKEND_CPU, embedding_kernel, NULL);
  mb_op_set_kernel(MB_OP_EMBEDDING_GRAD, MB_BACKEND_CPU, embedding_grad_kernel, NULL);
  mb_op_set_kernel(MB_OP_MEAN_POOL, MB_BACKEND_CPU, mean_pool_kernel, NULL);
  mb_op_set_kernel(MB_OP_MEAN_POOL_GRAD, MB_BACKEND_CPU, mean_pool_grad_kernel, NULL);
}
