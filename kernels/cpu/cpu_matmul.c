/* cpu_matmul.c: matmul through CBLAS (OpenBLAS threads the GEMM itself).
 * A 2-D b shared by every batch of a becomes one GEMM over the flattened
 * rows; otherwise one GEMM per batch. A bias is copied into each row of C
 * first and the GEMM accumulates onto it (beta = 1). */
#include <cblas.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

static int matmul_kernel(const mb_kernel_call *k) {
  const mb_tensor *A = &k->in[0], *B = &k->in[1], *C = &k->out[0];
  int ta = (int)k->node->attr.i[0], tb = (int)k->node->attr.i[1];
  int na = A->shape.ndim, nb = B->shape.ndim;
  int64_t M = C->shape.dim[na - 2], N = C->shape.dim[na - 1];
  int64_t K = ta ? A->shape.dim[na - 2] : A->shape.dim[na - 1];
  int64_t batch = 1;
  for (int d = 0; d < na - 2; d++)
    batch *= A->shape.dim[d];
  if (nb == 2 && !ta) { /* shared b: fold the batch into M */
    M *= batch;
    batch = 1;
  }
  int64_t sa = (nb == 2 && !ta) ? 0 : M * K, sb = nb == 2 ? 0 : K * N, sc = M * N;
  int has_bias = k->n_in == 3;
  int64_t lda = ta ? M : K, ldb = tb ? K : N;
  enum CBLAS_TRANSPOSE opa = ta ? CblasTrans : CblasNoTrans, opb = tb ? CblasTrans : CblasNoTrans;
  size_t es = mb_dtype_size(C->dtype);
  if (has_bias) /* a full pass over C: on every thread (a 4096 x 256 f32 C is 4 MB, K may be only 64) */
    MB_PAR_FOR(batch * M > MB_CPU_PAR_ROWS && batch * M * N > MB_CPU_PAR_ELEMS,
      for (int64_t r = 0; r < batch * M; r++)
        memcpy((char *)C->data + (size_t)(r * N) * es, k->in[2].data, (size_t)N * es););
  if (K == 0) {
    if (!has_bias)
      memset(C->data, 0, (size_t)(batch * M * N) * es);
    return MB_OK;
  }
  switch (C->dtype) {
  case MB_F32:
    for (int64_t b = 0; b < batch; b++)
      cblas_sgemm(CblasRowMajor, opa, opb, (int)M, (int)N, (int)K, 1.0f, (const float *)A->data + b * sa, (int)lda,
                  (const float *)B->data + b * sb, (int)ldb, has_bias ? 1.0f : 0.0f, (float *)C->data + b * sc,
                  (int)N);
    return MB_OK;
  case MB_F64:
    for (int64_t b = 0; b < batch; b++)
      cblas_dgemm(CblasRowMajor, opa, opb, (int)M, (int)N, (int)K, 1.0, (const double *)A->data + b * sa, (int)lda,
                  (const double *)B->data + b * sb, (int)ldb, has_bias ? 1.0 : 0.0, (double *)C->data + b * sc,
                  (int)N);
    return MB_OK;
  default:
    return mb_cpu_unsupported(k, 0);
  }
}

void mb_cpu_register_matmul(void) { mb_op_set_kernel(MB_OP_MATMUL, MB_BACKEND_CPU, matmul_kernel, NULL); }
