/* cuda_gemm.c: row-major GEMMs through cuBLASLt (gemm.h): argument
 * checks, the row-major to column-major mapping, the per-shape cache of
 * descriptors and heuristic algorithms, and the call. */
#include "kernels/cuda/gemm.h"

#include <cublasLt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_kernels.h"
#include "runtime/cuda_check.h"

#define GEMM_DEFAULT_WS ((size_t)32 << 20)
#define GEMM_ALGOS 8 /* heuristic candidates kept per configuration */

/* Everything the heuristic's choice depends on. Zeroed before filling, so
 * it can be compared and hashed as bytes. */
typedef struct {
  int32_t ta, tb, at, bt, ct, math, epi, beta_nz;
  int32_t align_a, align_b, align_c, align_bias, align_aux, pad;
  int64_t m, n, k, batch, sa, sb, sc, lda, ldb, ldc, ldaux;
} gemm_key;

typedef struct {
  int used;
  gemm_key key;
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t la, lb, lc; /* cuBLASLt's A (our B), B (our A), C = D */
  /* The heuristic's candidates, best first. cuBLASLt can accept a
   * configuration in the heuristic and still refuse the first candidate at
   * run time (NOT_SUPPORTED); the first run then moves down the list, and
   * the one that ran is kept (`proven`). */
  cublasLtMatmulAlgo_t algo[GEMM_ALGOS]; /* each within the context's workspace */
  int n_algo, cur, proven;
} gemm_entry;

struct mb_gemm_ctx {
  cublasLtHandle_t lt;
  mb_device_allocator *alloc;
  void *ws;
  size_t ws_bytes;
  gemm_entry *tab;
  int cap, n;
  pthread_mutex_t mu;
  mb_gemm_cache_stats st;
};

const char *mb_gemm_epilogue_name(mb_gemm_epilogue e) {
  static const char *names[MB_EPI_COUNT] = {"none",     "bias",     "relu",        "relu+bias",
                                            "gelu",     "gelu+bias", "gelu+aux",   "gelu+aux+bias",
                                            "dgelu",    "dgelu+bgrad", "bgrad(A)", "bgrad(B)"};
  return (int)e >= 0 && e < MB_EPI_COUNT ? names[e] : "?";
}

static int cuda_type(mb_dtype dt, cudaDataType_t *out) {
  switch (dt) {
  case MB_F32: *out = CUDA_R_32F; return 1;
  case MB_F64: *out = CUDA_R_64F; return 1;
  case MB_F16: *out = CUDA_R_16F; return 1;
  case MB_BF16: *out = CUDA_R_16BF; return 1;
  case MB_F8E4M3: *out = CUDA_R_8F_E4M3; return 1;
  case MB_F8E5M2: *out = CUDA_R_8F_E5M2; return 1;
  default: return 0;
  }
}

static int is_fp8(mb_dtype dt) { return dt == MB_F8E4M3 || dt == MB_F8E5M2; }

/* The largest power of two (at most 256) dividing the address and, for
 * batched operands, the byte stride between members. */
static int32_t align_of(const void *p, int64_t stride_bytes) {
  uint64_t v = (uint64_t)(uintptr_t)p | (uint64_t)stride_bytes | 256u;
  return (int32_t)(v & (~v + 1));
}

static void describe(const mb_gemm_desc *d, char *buf, size_t cap) {
  snprintf(buf, cap, "gemm m=%lld n=%lld k=%lld trans_a=%d trans_b=%d %s x %s -> %s batch=%lld epilogue=%s%s",
           (long long)d->m, (long long)d->n, (long long)d->k, d->trans_a, d->trans_b, mb_dtype_name(d->a_type),
           mb_dtype_name(d->b_type), mb_dtype_name(d->c_type), (long long)(d->batch > 1 ? d->batch : 1),
           mb_gemm_epilogue_name(d->epilogue), d->math == MB_GEMM_TF32 ? " (tf32)" : "");
}

int mb_gemm_ctx_create(mb_device_allocator *alloc, size_t ws_bytes, mb_gemm_ctx **out) {
  *out = NULL;
  if (!alloc)
    return MB_ERR(MB_EINVAL, "mb_gemm_ctx_create: no device allocator");
  mb_gemm_ctx *c = calloc(1, sizeof *c);
  if (!c)
    return MB_ERR(MB_ENOMEM, "gemm context");
  pthread_mutex_init(&c->mu, NULL);
  c->alloc = alloc;
  c->ws_bytes = ws_bytes ? ws_bytes : GEMM_DEFAULT_WS;
  cublasStatus_t st = cublasLtCreate(&c->lt);
  if (st != CUBLAS_STATUS_SUCCESS) {
    pthread_mutex_destroy(&c->mu);
    free(c);
    return MB_ERR(mb_cublas_code(st), "cublasLtCreate failed: %s", mb_cublas_status_name(st));
  }
  int rc = alloc->alloc(alloc, c->ws_bytes, &c->ws);
  if (rc != MB_OK) {
    MB_CUBLAS_WARN(cublasLtDestroy(c->lt));
    pthread_mutex_destroy(&c->mu);
    free(c);
    return mb_error_context(rc, "cuBLASLt workspace");
  }
  *out = c;
  return MB_OK;
}

static void entry_release(gemm_entry *e) {
  if (e->op)
    MB_CUBLAS_WARN(cublasLtMatmulDescDestroy(e->op));
  if (e->la)
    MB_CUBLAS_WARN(cublasLtMatrixLayoutDestroy(e->la));
  if (e->lb)
    MB_CUBLAS_WARN(cublasLtMatrixLayoutDestroy(e->lb));
  if (e->lc)
    MB_CUBLAS_WARN(cublasLtMatrixLayoutDestroy(e->lc));
  memset(e, 0, sizeof *e);
}

void mb_gemm_ctx_destroy(mb_gemm_ctx *c) {
  if (!c)
    return;
  for (int i = 0; i < c->cap; i++)
    if (c->tab[i].used)
      entry_release(&c->tab[i]);
  free(c->tab);
  if (c->ws)
    c->alloc->free(c->alloc, c->ws);
  MB_CUBLAS_WARN(cublasLtDestroy(c->lt));
  pthread_mutex_destroy(&c->mu);
  free(c);
}

mb_gemm_cache_stats mb_gemm_ctx_stats(mb_gemm_ctx *c) {
  pthread_mutex_lock(&c->mu);
  mb_gemm_cache_stats s = c->st;
  s.entries = c->n;
  pthread_mutex_unlock(&c->mu);
  return s;
}

static uint64_t key_hash(const gemm_key *k) {
  const unsigned char *p = (const unsigned char *)k;
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < sizeof *k; i++)
    h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

/* The slot holding key, or the empty slot where it belongs. */
static gemm_entry *cache_slot(mb_gemm_ctx *c, const gemm_key *k) {
  size_t mask = (size_t)c->cap - 1;
  for (size_t i = key_hash(k) & mask;; i = (i + 1) & mask)
    if (!c->tab[i].used || memcmp(&c->tab[i].key, k, sizeof *k) == 0)
      return &c->tab[i];
}

static int cache_grow(mb_gemm_ctx *c) {
  int ncap = c->cap ? 2 * c->cap : 64;
  gemm_entry *old = c->tab;
  int ocap = c->cap;
  c->tab = calloc((size_t)ncap, sizeof *c->tab);
  if (!c->tab) {
    c->tab = old;
    return MB_ERR(MB_ENOMEM, "gemm cache");
  }
  c->cap = ncap;
  for (int i = 0; i < ocap; i++)
    if (old[i].used)
      *cache_slot(c, &old[i].key) = old[i];
  free(old);
  return MB_OK;
}

static cublasLtEpilogue_t lt_epilogue(mb_gemm_epilogue e) {
  switch (e) {
  case MB_EPI_BIAS: return CUBLASLT_EPILOGUE_BIAS;
  case MB_EPI_RELU: return CUBLASLT_EPILOGUE_RELU;
  case MB_EPI_RELU_BIAS: return CUBLASLT_EPILOGUE_RELU_BIAS;
  case MB_EPI_GELU: return CUBLASLT_EPILOGUE_GELU;
  case MB_EPI_GELU_BIAS: return CUBLASLT_EPILOGUE_GELU_BIAS;
  case MB_EPI_GELU_AUX: return CUBLASLT_EPILOGUE_GELU_AUX;
  case MB_EPI_GELU_AUX_BIAS: return CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
  case MB_EPI_DGELU: return CUBLASLT_EPILOGUE_DGELU;
  case MB_EPI_DGELU_BGRAD: return CUBLASLT_EPILOGUE_DGELU_BGRAD;
  /* cuBLASLt's B is our A and its A our B (C^T = op(B)^T op(A)^T) */
  case MB_EPI_BGRAD_A: return CUBLASLT_EPILOGUE_BGRADB;
  case MB_EPI_BGRAD_B: return CUBLASLT_EPILOGUE_BGRADA;
  default: return CUBLASLT_EPILOGUE_DEFAULT;
  }
}

static int epi_uses_bias(mb_gemm_epilogue e) {
  return e == MB_EPI_BIAS || e == MB_EPI_RELU_BIAS || e == MB_EPI_GELU_BIAS || e == MB_EPI_GELU_AUX_BIAS ||
         e == MB_EPI_DGELU_BGRAD || e == MB_EPI_BGRAD_A || e == MB_EPI_BGRAD_B;
}

static int epi_uses_aux(mb_gemm_epilogue e) {
  return e == MB_EPI_GELU_AUX || e == MB_EPI_GELU_AUX_BIAS || e == MB_EPI_DGELU || e == MB_EPI_DGELU_BGRAD;
}

/* The descriptors of one configuration and the heuristic's first choice. */
static int entry_build(mb_gemm_ctx *c, const mb_gemm_desc *d, const gemm_key *k, gemm_entry *e, const char *what) {
  cudaDataType_t ta_ = CUDA_R_32F, tb_ = CUDA_R_32F, tc_ = CUDA_R_32F;
  if (!cuda_type(d->a_type, &ta_) || !cuda_type(d->b_type, &tb_) || !cuda_type(d->c_type, &tc_))
    return MB_ERR(MB_EINTERNAL, "%s: no cuBLASLt type", what);
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  cudaDataType_t scale_type = CUDA_R_32F;
  if (d->a_type == MB_F64) {
    compute = CUBLAS_COMPUTE_64F;
    scale_type = CUDA_R_64F;
  } else if (d->a_type == MB_F32 && d->math == MB_GEMM_TF32) {
    compute = CUBLAS_COMPUTE_32F_FAST_TF32;
  }
  memset(e, 0, sizeof *e);
  e->key = *k;
  MB_CUBLAS_TRY(cublasLtMatmulDescCreate(&e->op, compute, scale_type));
  /* from here on, a failure releases what was made */
  int rc = MB_OK;
#define LT(call)                                                                                   \
  do {                                                                                             \
    cublasStatus_t st_ = (call);                                                                   \
    if (st_ != CUBLAS_STATUS_SUCCESS) {                                                            \
      rc = MB_ERR(mb_cublas_code(st_), "%s: %s failed: %s", what, #call, mb_cublas_status_name(st_)); \
      goto fail;                                                                                   \
    }                                                                                              \
  } while (0)
  cublasOperation_t op_a = d->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N; /* cuBLASLt's A = our B */
  cublasOperation_t op_b = d->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N; /* cuBLASLt's B = our A */
  LT(cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a));
  LT(cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b));
  uint32_t epi = (uint32_t)lt_epilogue(d->epilogue);
  LT(cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
  /* The heuristic reads the epilogue pointers for their alignment. */
  if (epi_uses_bias(d->epilogue))
    LT(cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &d->bias, sizeof d->bias));
  if (epi_uses_aux(d->epilogue)) {
    LT(cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &d->aux, sizeof d->aux));
    int64_t ld = k->ldaux;
    LT(cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld, sizeof ld));
    if (k->batch > 1) {
      int64_t bs = k->ldaux * k->m;
      LT(cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE, &bs, sizeof bs));
    }
  }
  if (is_fp8(d->a_type)) {
    LT(cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &d->b_scale, sizeof d->b_scale));
    LT(cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &d->a_scale, sizeof d->a_scale));
  }
  /* Column-major views of the row-major operands (see gemm.h). */
  uint64_t a_rows = d->trans_b ? (uint64_t)k->k : (uint64_t)k->n, a_cols = d->trans_b ? (uint64_t)k->n : (uint64_t)k->k;
  uint64_t b_rows = d->trans_a ? (uint64_t)k->m : (uint64_t)k->k, b_cols = d->trans_a ? (uint64_t)k->k : (uint64_t)k->m;
  LT(cublasLtMatrixLayoutCreate(&e->la, tb_, a_rows, a_cols, k->ldb));
  LT(cublasLtMatrixLayoutCreate(&e->lb, ta_, b_rows, b_cols, k->lda));
  LT(cublasLtMatrixLayoutCreate(&e->lc, tc_, (uint64_t)k->n, (uint64_t)k->m, k->ldc));
  if (k->batch > 1) {
    int32_t bc = (int32_t)k->batch;
    LT(cublasLtMatrixLayoutSetAttribute(e->la, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
    LT(cublasLtMatrixLayoutSetAttribute(e->lb, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
    LT(cublasLtMatrixLayoutSetAttribute(e->lc, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
    int64_t sa = k->sb, sb = k->sa, sc = k->sc; /* swapped with the operands */
    LT(cublasLtMatrixLayoutSetAttribute(e->la, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sa, sizeof sa));
    LT(cublasLtMatrixLayoutSetAttribute(e->lb, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sb, sizeof sb));
    LT(cublasLtMatrixLayoutSetAttribute(e->lc, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sc, sizeof sc));
  }
  cublasLtMatmulPreference_t pref = NULL;
  LT(cublasLtMatmulPreferenceCreate(&pref));
  uint64_t ws = c->ws_bytes;
  uint32_t al_a = (uint32_t)k->align_b, al_b = (uint32_t)k->align_a, al_c = (uint32_t)k->align_c;
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a);
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b);
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c);
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c);
  cublasLtMatmulHeuristicResult_t heur[GEMM_ALGOS];
  int found = 0;
  memset(heur, 0, sizeof heur);
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulAlgoGetHeuristic(c->lt, e->op, e->la, e->lb, e->lc, e->lc, pref, GEMM_ALGOS, heur, &found);
  MB_CUBLAS_WARN(cublasLtMatmulPreferenceDestroy(pref));
  /* Our arguments were checked above, so cuBLASLt refusing the
   * configuration here (NOT_SUPPORTED, or INVALID_VALUE for a combination
   * of types, layouts and epilogue it does not offer) means "no algorithm". */
  if (st == CUBLAS_STATUS_ALLOC_FAILED || st == CUBLAS_STATUS_NOT_INITIALIZED || st == CUBLAS_STATUS_INTERNAL_ERROR) {
    rc = MB_ERR(mb_cublas_code(st), "%s: cuBLASLt heuristic failed: %s", what, mb_cublas_status_name(st));
    goto fail;
  }
  /* keep the usable candidates, in the heuristic's order */
  for (int i = 0; st == CUBLAS_STATUS_SUCCESS && i < found && i < GEMM_ALGOS; i++)
    if (heur[i].state == CUBLAS_STATUS_SUCCESS && heur[i].workspaceSize <= c->ws_bytes)
      e->algo[e->n_algo++] = heur[i].algo;
  if (e->n_algo == 0) {
    rc = MB_ERR(MB_EUNSUPPORTED,
                "%s: cuBLASLt has no algorithm for this configuration (%s; alignments A %d B %d C %d bytes;"
                " %d candidates, none within the %zu-byte workspace)",
                what, mb_cublas_status_name(st != CUBLAS_STATUS_SUCCESS ? st : heur[0].state), k->align_a,
                k->align_b, k->align_c, found, c->ws_bytes);
    goto fail;
  }
  e->used = 1;
  return MB_OK;
#undef LT
fail:
  entry_release(e);
  return rc;
}

static int check_types(const mb_gemm_desc *d, const char *what) {
  mb_dtype a = d->a_type, b = d->b_type, c = d->c_type;
  int ok = 0;
  if (a == MB_F32 && b == MB_F32)
    ok = c == MB_F32;
  else if (a == MB_F64 && b == MB_F64)
    ok = c == MB_F64;
  else if ((a == MB_BF16 && b == MB_BF16) || (a == MB_F16 && b == MB_F16))
    ok = c == a || c == MB_F32;
  else if (is_fp8(a) && is_fp8(b))
    ok = !(a == MB_F8E5M2 && b == MB_F8E5M2) && (c == MB_BF16 || c == MB_F16 || c == MB_F32);
  if (!ok)
    return MB_ERR(MB_EUNSUPPORTED, "%s: unsupported type combination", what);
  if (d->math == MB_GEMM_TF32 && a != MB_F32)
    return MB_ERR(MB_EINVAL, "%s: tf32 math is for f32 operands", what);
  if (is_fp8(a)) {
    if (d->trans_a || !d->trans_b)
      return MB_ERR(MB_EUNSUPPORTED,
                    "%s: cuBLASLt fp8 needs trans_a = 0 and trans_b = 1 (quantise with a transpose to get there)",
                    what);
    if (!d->a_scale || !d->b_scale)
      return MB_ERR(MB_EINVAL, "%s: fp8 needs a_scale and b_scale (device pointers)", what);
    /* cuBLASLt accepts misaligned scale pointers in its heuristic and then
     * refuses every candidate at run time (NOT_SUPPORTED; seen on an H200,
     * CUDA 13.0, with scales at 4 bytes past a 16-byte boundary) */
    if ((uintptr_t)d->a_scale % 16 || (uintptr_t)d->b_scale % 16)
      return MB_ERR(MB_EINVAL, "%s: fp8 scale pointers must be 16-byte aligned (a_scale %p, b_scale %p)", what,
                    d->a_scale, d->b_scale);
  }
  return MB_OK;
}

int mb_gemm(mb_gemm_ctx *c, const mb_gemm_desc *d, mb_cuda_stream s) {
  char what[256];
  describe(d, what, sizeof what);
  if (d->m < 0 || d->n < 0 || d->k < 0 || d->batch < 0)
    return MB_ERR(MB_EINVAL, "%s: negative size", what);
  if ((int)d->epilogue < 0 || d->epilogue >= MB_EPI_COUNT)
    return MB_ERR(MB_EINVAL, "%s: bad epilogue %d", what, (int)d->epilogue);
  MB_TRY(check_types(d, what));
  int64_t batch = d->batch > 1 ? d->batch : 1;
  if (d->m == 0 || d->n == 0)
    return MB_OK;
  int64_t lda = d->lda ? d->lda : (d->trans_a ? d->m : d->k);
  int64_t ldb = d->ldb ? d->ldb : (d->trans_b ? d->k : d->n);
  int64_t ldc = d->ldc ? d->ldc : d->n;
  if (lda < (d->trans_a ? d->m : d->k) || ldb < (d->trans_b ? d->k : d->n) || ldc < d->n)
    return MB_ERR(MB_EINVAL, "%s: leading dimension smaller than a row (lda %lld ldb %lld ldc %lld)", what,
                  (long long)lda, (long long)ldb, (long long)ldc);
  if (batch > 1 && (d->stride_a <= 0 || d->stride_b <= 0 || d->stride_c <= 0))
    return MB_ERR(MB_EINVAL, "%s: batched product needs positive strides", what);
  if (epi_uses_bias(d->epilogue) && !d->bias)
    return MB_ERR(MB_EINVAL, "%s: the epilogue needs a bias pointer", what);
  int64_t ldaux = d->ld_aux ? d->ld_aux : d->n;
  if (epi_uses_aux(d->epilogue) && (!d->aux || ldaux < d->n || ldaux % 8 != 0))
    return MB_ERR(MB_EINVAL, "%s: the epilogue needs aux with a row pitch >= n and a multiple of 8 (got %lld)", what,
                  (long long)ldaux);
  if (is_fp8(d->a_type) && (d->k % 16 || lda % 16 || ldb % 16))
    return MB_ERR(MB_EUNSUPPORTED, "%s: fp8 needs k, lda, ldb multiples of 16", what);
  if (d->k == 0) {
    /* an empty sum: C = beta*C is all we could do; only the plain case */
    if (d->beta != 0.0 || ldc != d->n || (d->epilogue != MB_EPI_NONE && d->epilogue != MB_EPI_BIAS))
      return MB_ERR(MB_EUNSUPPORTED, "%s: k = 0 only with beta = 0, packed C and no epilogue but bias", what);
    if (d->epilogue == MB_EPI_BIAS)
      return mb_cuda_broadcast_rows(d->c, d->bias, d->c_type, batch * d->m, d->n, s);
    return mb_cuda_fill(d->c, d->c_type, (size_t)(batch * d->m * d->n), 0.0, s);
  }
  size_t esa = mb_dtype_size(d->a_type), esb = mb_dtype_size(d->b_type), esc = mb_dtype_size(d->c_type);
  gemm_key k;
  memset(&k, 0, sizeof k);
  k.ta = d->trans_a;
  k.tb = d->trans_b;
  k.at = d->a_type;
  k.bt = d->b_type;
  k.ct = d->c_type;
  k.math = d->math;
  k.epi = d->epilogue;
  k.beta_nz = d->beta != 0.0;
  k.m = d->m;
  k.n = d->n;
  k.k = d->k;
  k.batch = batch;
  k.sa = batch > 1 ? d->stride_a : 0;
  k.sb = batch > 1 ? d->stride_b : 0;
  k.sc = batch > 1 ? d->stride_c : 0;
  k.lda = lda;
  k.ldb = ldb;
  k.ldc = ldc;
  k.ldaux = epi_uses_aux(d->epilogue) ? ldaux : 0;
  k.align_a = align_of(d->a, (int64_t)(k.sa * (int64_t)esa));
  k.align_b = align_of(d->b, (int64_t)(k.sb * (int64_t)esb));
  k.align_c = align_of(d->c, (int64_t)(k.sc * (int64_t)esc));
  k.align_bias = epi_uses_bias(d->epilogue) ? align_of(d->bias, 0) : 0;
  k.align_aux = epi_uses_aux(d->epilogue) ? align_of(d->aux, 0) : 0;

  pthread_mutex_lock(&c->mu);
  c->st.lookups++;
  int rc = MB_OK;
  if (c->n + 1 > c->cap / 2)
    rc = cache_grow(c);
  gemm_entry *e = rc == MB_OK ? cache_slot(c, &k) : NULL;
  if (rc == MB_OK && !e->used) {
    c->st.misses++;
    rc = entry_build(c, d, &k, e, what);
    if (rc == MB_OK)
      c->n++;
  }
  if (rc == MB_OK) {
    /* this call's pointers (the cached descriptor holds the last ones) */
    cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
    if (epi_uses_bias(d->epilogue))
      st = cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &d->bias, sizeof d->bias);
    if (st == CUBLAS_STATUS_SUCCESS && epi_uses_aux(d->epilogue))
      st = cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &d->aux, sizeof d->aux);
    if (st == CUBLAS_STATUS_SUCCESS && is_fp8(d->a_type)) {
      st = cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &d->b_scale, sizeof d->b_scale);
      if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &d->a_scale,
                                            sizeof d->a_scale);
    }
    if (st == CUBLAS_STATUS_SUCCESS) {
      float alpha_f = (float)d->alpha, beta_f = (float)d->beta;
      const void *alpha = &alpha_f, *beta = &beta_f;
      if (d->a_type == MB_F64) {
        alpha = &d->alpha;
        beta = &d->beta;
      }
      /* fp8 with beta = 0 reads no C: pass none, as torch._scaled_mm does
       * (the configuration the H200 runs verified; C = D works too) */
      const void *cin = is_fp8(d->a_type) && d->beta == 0.0 ? NULL : d->c;
      for (;;) {
        st = cublasLtMatmul(c->lt, e->op, alpha, d->b, e->la, d->a, e->lb, beta, cin, e->lc, d->c, e->lc,
                            &e->algo[e->cur], c->ws, c->ws_bytes, s);
        if (st == CUBLAS_STATUS_SUCCESS) {
          e->proven = 1;
          break;
        }
        /* refused at run time before any run of this configuration: the
         * next candidate (a launch that was accepted once stays) */
        if (st != CUBLAS_STATUS_NOT_SUPPORTED || e->proven || e->cur + 1 >= e->n_algo)
          break;
        e->cur++;
      }
    }
    if (st != CUBLAS_STATUS_SUCCESS)
      rc = MB_ERR(mb_cublas_code(st), "%s: cublasLtMatmul failed: %s (candidate %d of %d)", what,
                  mb_cublas_status_name(st), e->cur + 1, e->n_algo);
  }
  pthread_mutex_unlock(&c->mu);
  return rc;
}
