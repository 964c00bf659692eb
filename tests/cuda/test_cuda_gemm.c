/* test_cuda_gemm.c: cuBLASLt GEMMs (kernels/cuda/gemm.h) against a float64
 * reference computed here from the very inputs the device sees (rounded to
 * bf16/f16/fp8 first): every transpose combination, f32 / tf32 / f64 /
 * bf16 / f16 (-> own type and -> f32), alpha/beta, padded leading
 * dimensions, strided batches, the bias/ReLU/GELU epilogues and their
 * backward forms, fp8 (e4m3 x e4m3, e4m3 x e5m2) with per-tensor scales,
 * fp8 quantisation with delayed scaling, and the heuristic cache. Outputs
 * are poisoned (NaN) before every product. Needs a GPU; exits 77 without. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cuda_test_util.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/gemm.h"
#include "runtime/cuda_alloc.h"

/* f32 results of tensor-core products of exact 16-bit inputs */
#define TOL_TC_F32 1e-4

static mb_device_allocator *alloc;
static mb_gemm_ctx *ctx;

static int setup(void **state) {
  (void)state;
  if (mb_cuda_allocator_create(0, &alloc) != MB_OK || mb_gemm_ctx_create(alloc, 0, &ctx) != MB_OK) {
    fprintf(stderr, "setup: %s\n", mb_error_message());
    return -1;
  }
  return 0;
}

static int teardown(void **state) {
  (void)state;
  mb_gemm_ctx_destroy(ctx);
  alloc->destroy(alloc);
  return 0;
}

/* ---- the reference ---- */

typedef struct {
  int ta, tb;
  int64_t m, n, k, batch, lda, ldb, ldc;
} shape_t;

static double at_a(const float *A, const shape_t *s, int64_t b, int64_t i, int64_t p, int64_t sa) {
  return s->ta ? A[b * sa + p * s->lda + i] : A[b * sa + i * s->lda + p];
}
static double at_b(const float *B, const shape_t *s, int64_t b, int64_t p, int64_t j, int64_t sb) {
  return s->tb ? B[b * sb + j * s->ldb + p] : B[b * sb + p * s->ldb + j];
}

/* ref[b][i][j] (packed m x n per batch) = alpha * sum_p A B + beta * C0 */
static void ref_gemm(const shape_t *s, const float *A, const float *B, const float *C0, double alpha, double beta,
                     int64_t sa, int64_t sb, int64_t sc, double *ref) {
  for (int64_t b = 0; b < s->batch; b++)
    for (int64_t i = 0; i < s->m; i++)
      for (int64_t j = 0; j < s->n; j++) {
        double acc = 0;
        for (int64_t p = 0; p < s->k; p++)
          acc += at_a(A, s, b, i, p, sa) * at_b(B, s, b, p, j, sb);
        double c0 = beta != 0.0 ? (double)C0[b * sc + i * s->ldc + j] : 0.0;
        ref[(b * s->m + i) * s->n + j] = alpha * acc + beta * c0;
      }
}

static double gelu_tanh(double x) { return 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }
static double gelu_erf(double x) { return 0.5 * x * (1 + erf(x * M_SQRT1_2)); }
static double dgelu_tanh(double x) {
  double u = 0.7978845608028654 * (x + 0.044715 * x * x * x), t = tanh(u);
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * 0.7978845608028654 * (1 + 3 * 0.044715 * x * x);
}
static double dgelu_erf(double x) { return 0.5 * (1 + erf(x * M_SQRT1_2)) + x * exp(-0.5 * x * x) * 0.3989422804014327; }

/* Gather the [batch][m][n] part of a padded C (pitch ldc, stride sc). */
static void gather_c(const float *c, const shape_t *s, int64_t sc, float *out) {
  for (int64_t b = 0; b < s->batch; b++)
    for (int64_t i = 0; i < s->m; i++)
      memcpy(out + (b * s->m + i) * s->n, c + b * sc + i * s->ldc, (size_t)s->n * sizeof(float));
}

/* ||C - ref|| / ||ref|| of an f64 C on the device (pitch ldc, stride sc),
 * read back as doubles; +Inf for an unwritten (NaN-poisoned) element. */
static double f64_relerr(const void *dC, const shape_t *s, int64_t sc, size_t nc, const double *ref) {
  if (cudaDeviceSynchronize() != cudaSuccess)
    fail_msg("device fault after the f64 product");
  double *c = malloc(nc * sizeof *c + 8), num = 0, den = 0;
  if (cudaMemcpy(c, dC, nc * sizeof *c, cudaMemcpyDeviceToHost) != cudaSuccess)
    fail_msg("cudaMemcpy of the f64 result failed");
  for (int64_t b = 0; b < s->batch; b++)
    for (int64_t i = 0; i < s->m; i++)
      for (int64_t j = 0; j < s->n; j++) {
        double g = c[b * sc + i * s->ldc + j], r = ref[(b * s->m + i) * s->n + j];
        if (!isfinite(g)) {
          free(c);
          return INFINITY;
        }
        num += (g - r) * (g - r);
        den += r * r;
      }
  free(c);
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* One product on fresh random inputs; returns the relative error. */
static double run_case(shape_t s, mb_dtype ab, mb_dtype ct, mb_gemm_math math, double alpha, double beta) {
  int64_t arows = s.ta ? s.k : s.m, acols = s.ta ? s.m : s.k;
  int64_t brows = s.tb ? s.n : s.k, bcols = s.tb ? s.k : s.n;
  if (!s.lda)
    s.lda = acols;
  if (!s.ldb)
    s.ldb = bcols;
  if (!s.ldc)
    s.ldc = s.n;
  if (!s.batch)
    s.batch = 1;
  int64_t sa = arows * s.lda, sb = brows * s.ldb, sc = s.m * s.ldc;
  size_t na = (size_t)(sa * s.batch), nb = (size_t)(sb * s.batch), nc = (size_t)(sc * s.batch);
  float *A = malloc(na * 4), *B = malloc(nb * 4), *C0 = malloc(nc * 4), *C = malloc(nc * 4);
  float *Cg = malloc((size_t)(s.batch * s.m * s.n) * 4);
  double *ref = malloc((size_t)(s.batch * s.m * s.n) * 8);
  ct_randn(A, na, 1.0f);
  ct_randn(B, nb, 1.0f);
  ct_randn(C0, nc, 1.0f);
  ct_round(A, na, ab);
  ct_round(B, nb, ab);
  ct_round(C0, nc, ct);
  void *dA = ct_upload(A, na, ab), *dB = ct_upload(B, nb, ab), *dC;
  if (beta != 0.0) {
    dC = ct_upload(C0, nc, ct);
  } else {
    dC = ct_dev(nc * mb_dtype_size(ct));
    ct_poison(dC, nc * mb_dtype_size(ct));
  }
  mb_gemm_desc d = {0};
  d.trans_a = s.ta;
  d.trans_b = s.tb;
  d.m = s.m;
  d.n = s.n;
  d.k = s.k;
  d.batch = s.batch;
  d.stride_a = sa;
  d.stride_b = sb;
  d.stride_c = sc;
  d.lda = s.lda;
  d.ldb = s.ldb;
  d.ldc = s.ldc;
  d.a_type = d.b_type = ab;
  d.c_type = ct;
  d.math = math;
  d.a = dA;
  d.b = dB;
  d.c = dC;
  d.alpha = alpha;
  d.beta = beta;
  CT_OK(mb_gemm(ctx, &d, NULL));
  ref_gemm(&s, A, B, C0, alpha, beta, sa, sb, sc, ref);
  double err;
  if (ct == MB_F64) {
    /* compared in double: a download through f32 would round every
     * output to 6e-8 and hide an f32 computation */
    err = f64_relerr(dC, &s, sc, nc, ref);
  } else {
    ct_download(C, dC, nc, ct);
    gather_c(C, &s, sc, Cg);
    err = ct_relerr(Cg, ref, (size_t)(s.batch * s.m * s.n));
  }
  cudaFree(dA);
  cudaFree(dB);
  cudaFree(dC);
  free(A), free(B), free(C0), free(C), free(Cg), free(ref);
  return err;
}

static const int64_t sizes[][3] = {{37, 53, 29}, {128, 64, 96}, {1, 17, 5}, {64, 1, 33}, {256, 192, 160}};

static void check_all_transposes(mb_dtype ab, mb_dtype ct, mb_gemm_math math, double tol, const char *name) {
  for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++)
    for (int t = 0; t < 4; t++) {
      shape_t s = {t & 1, t >> 1, sizes[z][0], sizes[z][1], sizes[z][2], 1, 0, 0, 0};
      double e = run_case(s, ab, ct, math, 1.0, 0.0);
      if (!(e < tol))
        fail_msg("%s m=%lld n=%lld k=%lld ta=%d tb=%d: relative error %.3g >= %.1g", name, (long long)s.m,
                 (long long)s.n, (long long)s.k, s.ta, s.tb, e, tol);
    }
  printf("  %s: every transpose, %zu shapes: ok\n", name, sizeof sizes / sizeof sizes[0]);
}

static void test_gemm_f32(void **state) {
  (void)state;
  check_all_transposes(MB_F32, MB_F32, MB_GEMM_DEFAULT, TOL_F32, "f32");
}
static void test_gemm_tf32(void **state) {
  (void)state;
  check_all_transposes(MB_F32, MB_F32, MB_GEMM_TF32, TOL_TF32, "tf32");
}
static void test_gemm_f64(void **state) {
  (void)state;
  check_all_transposes(MB_F64, MB_F64, MB_GEMM_DEFAULT, 1e-12, "f64");
}
static void test_gemm_bf16(void **state) {
  (void)state;
  check_all_transposes(MB_BF16, MB_BF16, MB_GEMM_DEFAULT, TOL_BF16, "bf16 -> bf16");
  /* exact bf16 inputs, f32 output: the products are exact, the tensor
   * cores' f32 accumulation aligns with truncation (a few ulps per step
   * over k <= 160): 1e-4, still 4 orders below any layout or scale bug */
  check_all_transposes(MB_BF16, MB_F32, MB_GEMM_DEFAULT, TOL_TC_F32, "bf16 -> f32");
}
static void test_gemm_f16(void **state) {
  (void)state;
  check_all_transposes(MB_F16, MB_F16, MB_GEMM_DEFAULT, TOL_F16, "f16 -> f16");
  check_all_transposes(MB_F16, MB_F32, MB_GEMM_DEFAULT, TOL_TC_F32, "f16 -> f32");
}

static void test_gemm_alpha_beta_ld_batched(void **state) {
  (void)state;
  for (int t = 0; t < 4; t++) {
    shape_t s = {t & 1, t >> 1, 45, 38, 27, 1, 0, 0, 0};
    double e = run_case(s, MB_F32, MB_F32, MB_GEMM_DEFAULT, 0.75, 0.5);
    if (!(e < TOL_F32))
      fail_msg("alpha/beta ta=%d tb=%d: %.3g", s.ta, s.tb, e);
    /* padded rows: lda/ldb/ldc beyond the packed widths */
    shape_t p = {t & 1, t >> 1, 45, 38, 27, 1, (t & 1 ? 45 : 27) + 5, (t >> 1 ? 27 : 38) + 3, 38 + 7};
    e = run_case(p, MB_F32, MB_F32, MB_GEMM_DEFAULT, 1.0, 0.0);
    if (!(e < TOL_F32))
      fail_msg("padded ld ta=%d tb=%d: %.3g", s.ta, s.tb, e);
    shape_t b = {t & 1, t >> 1, 33, 20, 48, 5, 0, 0, 0};
    e = run_case(b, MB_F32, MB_F32, MB_GEMM_DEFAULT, 1.0, 0.0);
    if (!(e < TOL_F32))
      fail_msg("batched f32 ta=%d tb=%d: %.3g", s.ta, s.tb, e);
    e = run_case(b, MB_BF16, MB_BF16, MB_GEMM_DEFAULT, 1.0, 0.0);
    if (!(e < TOL_BF16))
      fail_msg("batched bf16 ta=%d tb=%d: %.3g", s.ta, s.tb, e);
  }
  printf("  alpha/beta, padded leading dims, batches of 5 (f32, bf16): ok\n");
}

/* ---- epilogues (Linear layout: x[m, k] @ w[n, k]^T) ---- */

typedef struct {
  int64_t m, n, k;
  float *x, *w, *bias, *aux_in;
  double *prod; /* x @ w^T in double, [m, n] */
} epi_data;

static void epi_make(epi_data *e, int64_t m, int64_t n, int64_t k, mb_dtype dt) {
  e->m = m, e->n = n, e->k = k;
  e->x = malloc((size_t)(m * k) * 4);
  e->w = malloc((size_t)(n * k) * 4);
  e->bias = malloc((size_t)n * 4);
  e->aux_in = malloc((size_t)(m * n) * 4);
  e->prod = malloc((size_t)(m * n) * 8);
  ct_randn(e->x, (size_t)(m * k), 1.0f);
  ct_randn(e->w, (size_t)(n * k), 0.3f);
  ct_randn(e->bias, (size_t)n, 1.0f);
  ct_randn(e->aux_in, (size_t)(m * n), 1.5f);
  ct_round(e->x, (size_t)(m * k), dt);
  ct_round(e->w, (size_t)(n * k), dt);
  ct_round(e->bias, (size_t)n, dt);
  ct_round(e->aux_in, (size_t)(m * n), dt);
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      double a = 0;
      for (int64_t p = 0; p < k; p++)
        a += (double)e->x[i * k + p] * e->w[j * k + p];
      e->prod[i * n + j] = a;
    }
}

static void epi_free(epi_data *e) { free(e->x), free(e->w), free(e->bias), free(e->aux_in), free(e->prod); }

/* Runs one epilogue; returns MB_OK, or MB_EUNSUPPORTED when cuBLASLt has no
 * algorithm for it (the caller decides whether that is allowed). Outputs:
 * C [m, n], aux [m, n], bias vector (m or n) as f32. */
static int epi_run(const epi_data *e, mb_dtype dt, mb_gemm_epilogue epi, float *C, float *aux, float *bvec,
                   int64_t bias_len) {
  int64_t m = e->m, n = e->n, k = e->k;
  size_t es = mb_dtype_size(dt);
  void *dx = ct_upload(e->x, (size_t)(m * k), dt), *dw = ct_upload(e->w, (size_t)(n * k), dt);
  void *dC = ct_dev((size_t)(m * n) * es), *daux, *dbias;
  ct_poison(dC, (size_t)(m * n) * es);
  int aux_in = epi == MB_EPI_DGELU || epi == MB_EPI_DGELU_BGRAD;
  int bias_out = epi == MB_EPI_DGELU_BGRAD || epi == MB_EPI_BGRAD_A || epi == MB_EPI_BGRAD_B;
  if (aux_in) {
    daux = ct_upload(e->aux_in, (size_t)(m * n), dt);
  } else {
    daux = ct_dev((size_t)(m * n) * es);
    ct_poison(daux, (size_t)(m * n) * es);
  }
  if (bias_out) {
    dbias = ct_dev((size_t)bias_len * es);
    ct_poison(dbias, (size_t)bias_len * es);
  } else {
    dbias = ct_upload(e->bias, (size_t)n, dt);
  }
  mb_gemm_desc d = {0};
  d.trans_a = 0;
  d.trans_b = 1;
  d.m = m, d.n = n, d.k = k;
  d.a_type = d.b_type = d.c_type = dt;
  d.a = dx, d.b = dw, d.c = dC;
  d.alpha = 1.0;
  d.epilogue = epi;
  d.bias = dbias;
  d.aux = daux;
  d.ld_aux = n;
  int rc = mb_gemm(ctx, &d, NULL);
  if (rc == MB_OK) {
    ct_download(C, dC, (size_t)(m * n), dt);
    ct_download(aux, daux, (size_t)(m * n), dt);
    if (bias_out)
      ct_download(bvec, dbias, (size_t)bias_len, dt);
  }
  cudaFree(dx), cudaFree(dw), cudaFree(dC), cudaFree(daux), cudaFree(dbias);
  return rc;
}

static void test_gemm_epilogues(void **state) {
  (void)state;
  const mb_dtype dts[2] = {MB_F32, MB_BF16};
  for (int di = 0; di < 2; di++) {
    mb_dtype dt = dts[di];
    double tol = ct_tol(dt);
    int64_t m = 96, n = 80, k = 64;
    epi_data e;
    epi_make(&e, m, n, k, dt);
    float *C = malloc((size_t)(m * n) * 4), *aux = malloc((size_t)(m * n) * 4), *bv = malloc((size_t)(m + n) * 4);
    double *ref = malloc((size_t)(m * n) * 8), *ref2 = malloc((size_t)(m * n) * 8);
    /* bias, relu+bias: required */
    CT_OK(epi_run(&e, dt, MB_EPI_BIAS, C, aux, bv, 0));
    for (int64_t i = 0; i < m * n; i++)
      ref[i] = e.prod[i] + e.bias[i % n];
    double err = ct_relerr(C, ref, (size_t)(m * n));
    if (!(err < tol))
      fail_msg("%s bias epilogue: %.3g", mb_dtype_name(dt), err);
    CT_OK(epi_run(&e, dt, MB_EPI_RELU_BIAS, C, aux, bv, 0));
    for (int64_t i = 0; i < m * n; i++)
      ref[i] = fmax(0.0, e.prod[i] + e.bias[i % n]);
    err = ct_relerr(C, ref, (size_t)(m * n));
    if (!(err < tol))
      fail_msg("%s relu+bias epilogue: %.3g", mb_dtype_name(dt), err);
    /* gelu+bias: the form (tanh or erf) is cuBLASLt's; say which matched */
    CT_OK(epi_run(&e, dt, MB_EPI_GELU_BIAS, C, aux, bv, 0));
    for (int64_t i = 0; i < m * n; i++) {
      ref[i] = gelu_tanh(e.prod[i] + e.bias[i % n]);
      ref2[i] = gelu_erf(e.prod[i] + e.bias[i % n]);
    }
    double et = ct_relerr(C, ref, (size_t)(m * n)), ee = ct_relerr(C, ref2, (size_t)(m * n));
    printf("  %s gelu+bias: error vs tanh form %.3g, vs erf form %.3g\n", mb_dtype_name(dt), et, ee);
    if (!(et < tol || ee < tol))
      fail_msg("%s gelu+bias matches neither GELU form (%.3g, %.3g)", mb_dtype_name(dt), et, ee);
    int tanh_form = et <= ee;
    /* the training forms: optional in cuBLASLt, exact when present */
    int rc = epi_run(&e, dt, MB_EPI_GELU_AUX_BIAS, C, aux, bv, 0);
    if (rc == MB_OK) {
      for (int64_t i = 0; i < m * n; i++) {
        ref[i] = e.prod[i] + e.bias[i % n];
        ref2[i] = tanh_form ? gelu_tanh(ref[i]) : gelu_erf(ref[i]);
      }
      double ea = ct_relerr(aux, ref, (size_t)(m * n)), ec = ct_relerr(C, ref2, (size_t)(m * n));
      if (!(ea < tol && ec < tol))
        fail_msg("%s gelu+aux+bias: aux %.3g, out %.3g", mb_dtype_name(dt), ea, ec);
      printf("  %s gelu+aux+bias: ok\n", mb_dtype_name(dt));
    } else {
      assert_int_equal(rc, MB_EUNSUPPORTED);
      printf("  %s gelu+aux+bias: not offered by cuBLASLt here (%s)\n", mb_dtype_name(dt), mb_error_message());
    }
    rc = epi_run(&e, dt, MB_EPI_DGELU_BGRAD, C, aux, bv, n);
    if (rc == MB_OK) {
      double *rb = malloc((size_t)n * 8);
      for (int64_t j = 0; j < n; j++)
        rb[j] = 0;
      for (int64_t i = 0; i < m * n; i++) {
        double g = tanh_form ? dgelu_tanh(e.aux_in[i]) : dgelu_erf(e.aux_in[i]);
        ref[i] = e.prod[i] * g;
        rb[i % n] += ref[i];
      }
      double ec = ct_relerr(C, ref, (size_t)(m * n)), eb = ct_relerr(bv, rb, (size_t)n);
      free(rb);
      if (!(ec < tol && eb < tol))
        fail_msg("%s dgelu+bgrad: out %.3g, bias grad %.3g", mb_dtype_name(dt), ec, eb);
      printf("  %s dgelu+bgrad: ok\n", mb_dtype_name(dt));
    } else {
      assert_int_equal(rc, MB_EUNSUPPORTED);
      printf("  %s dgelu+bgrad: not offered by cuBLASLt here (%s)\n", mb_dtype_name(dt), mb_error_message());
    }
    epi_free(&e);
    free(C), free(aux), free(bv), free(ref), free(ref2);
  }
}

/* dW = dY^T X with the bias gradient db = column sums of dY (BGRAD_A):
 * A = dY [tokens, out] with trans_a, B = X [tokens, in]. */
static void test_gemm_bgrad(void **state) {
  (void)state;
  int64_t T = 128, O = 48, I = 64;
  float *dy = malloc((size_t)(T * O) * 4), *x = malloc((size_t)(T * I) * 4), *C = malloc((size_t)(O * I) * 4);
  float *db = malloc((size_t)O * 4);
  double *ref = malloc((size_t)(O * I) * 8), *rdb = malloc((size_t)O * 8);
  ct_randn(dy, (size_t)(T * O), 1.0f);
  ct_randn(x, (size_t)(T * I), 1.0f);
  for (int64_t o = 0; o < O; o++) {
    rdb[o] = 0;
    for (int64_t t = 0; t < T; t++)
      rdb[o] += dy[t * O + o];
    for (int64_t i = 0; i < I; i++) {
      double a = 0;
      for (int64_t t = 0; t < T; t++)
        a += (double)dy[t * O + o] * x[t * I + i];
      ref[o * I + i] = a;
    }
  }
  void *ddy = ct_upload(dy, (size_t)(T * O), MB_F32), *dx = ct_upload(x, (size_t)(T * I), MB_F32);
  void *dC = ct_dev((size_t)(O * I) * 4), *ddb = ct_dev((size_t)O * 4);
  ct_poison(dC, (size_t)(O * I) * 4);
  ct_poison(ddb, (size_t)O * 4);
  mb_gemm_desc d = {0};
  d.trans_a = 1;
  d.m = O, d.n = I, d.k = T;
  d.a_type = d.b_type = d.c_type = MB_F32;
  d.a = ddy, d.b = dx, d.c = dC;
  d.alpha = 1.0;
  d.epilogue = MB_EPI_BGRAD_A;
  d.bias = ddb;
  int rc = mb_gemm(ctx, &d, NULL);
  if (rc == MB_OK) {
    ct_download(C, dC, (size_t)(O * I), MB_F32);
    ct_download(db, ddb, (size_t)O, MB_F32);
    double e1 = ct_relerr(C, ref, (size_t)(O * I)), e2 = ct_relerr(db, rdb, (size_t)O);
    if (!(e1 < TOL_F32 && e2 < TOL_F32))
      fail_msg("bgrad(A): product %.3g, bias grad %.3g", e1, e2);
    printf("  bgrad(A) (dW and db in one product): ok\n");
  } else {
    assert_int_equal(rc, MB_EUNSUPPORTED);
    printf("  bgrad(A): not offered by cuBLASLt here (%s)\n", mb_error_message());
  }
  cudaFree(ddy), cudaFree(dx), cudaFree(dC), cudaFree(ddb);
  free(dy), free(x), free(C), free(db), free(ref), free(rdb);
}

/* ---- fp8 ---- */

static uint8_t q8(float v, mb_dtype fmt) {
  return fmt == MB_F8E4M3 ? mb_f32_to_e4m3(v, MB_FP8_SATFINITE) : mb_f32_to_e5m2(v, MB_FP8_SATFINITE);
}
static float dq8(uint8_t v, mb_dtype fmt) { return fmt == MB_F8E4M3 ? mb_e4m3_to_f32(v) : mb_e5m2_to_f32(v); }

static void fp8_case(mb_dtype fa, mb_dtype fb, mb_dtype ct, int64_t m, int64_t n, int64_t k) {
  float *x = malloc((size_t)(m * k) * 4), *w = malloc((size_t)(n * k) * 4), *C = malloc((size_t)(m * n) * 4);
  uint8_t *qx = malloc((size_t)(m * k)), *qw = malloc((size_t)(n * k));
  double *ref = malloc((size_t)(m * n) * 8);
  ct_randn(x, (size_t)(m * k), 2.0f);
  ct_randn(w, (size_t)(n * k), 0.05f);
  /* scales that use the formats' range; the device gets their inverses */
  const float sx = 32.0f, sw = 1024.0f;
  float inv[8] = {1.0f / sx, 0, 0, 0, 1.0f / sw}; /* a's at 0, b's at 16 bytes: cuBLASLt wants them aligned */
  for (int64_t i = 0; i < m * k; i++)
    qx[i] = q8(x[i] * sx, fa);
  for (int64_t i = 0; i < n * k; i++)
    qw[i] = q8(w[i] * sw, fb);
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      double a = 0;
      for (int64_t p = 0; p < k; p++)
        a += (double)dq8(qx[i * k + p], fa) * inv[0] * (double)dq8(qw[j * k + p], fb) * inv[4];
      ref[i * n + j] = a;
    }
  void *dqx = ct_upload_raw(qx, (size_t)(m * k)), *dqw = ct_upload_raw(qw, (size_t)(n * k));
  float *dinv = ct_upload_raw(inv, sizeof inv);
  size_t es = mb_dtype_size(ct);
  void *dC = ct_dev((size_t)(m * n) * es);
  ct_poison(dC, (size_t)(m * n) * es);
  mb_gemm_desc d = {0};
  d.trans_b = 1;
  d.m = m, d.n = n, d.k = k;
  d.a_type = fa, d.b_type = fb, d.c_type = ct;
  d.a = dqx, d.b = dqw, d.c = dC;
  d.alpha = 1.0;
  d.a_scale = dinv;
  d.b_scale = dinv + 4;
  CT_OK(mb_gemm(ctx, &d, NULL));
  ct_download(C, dC, (size_t)(m * n), ct);
  double err = ct_relerr(C, ref, (size_t)(m * n));
  /* inputs are exact; the bound covers the output rounding (bf16) or the
   * fp8 tensor cores' reduced-precision accumulation between cuBLASLt's
   * promotions to f32 (f32 out); a wrong layout or scale gives O(1) */
  double tol = ct == MB_F32 ? 5e-3 : TOL_BF16;
  printf("  fp8 %s x %s -> %s [%lld x %lld x %lld]: relative error %.3g\n", mb_dtype_name(fa), mb_dtype_name(fb),
         mb_dtype_name(ct), (long long)m, (long long)n, (long long)k, err);
  if (!(err < tol))
    fail_msg("fp8 %s x %s -> %s: relative error %.3g >= %.1g", mb_dtype_name(fa), mb_dtype_name(fb),
             mb_dtype_name(ct), err, tol);
  cudaFree(dqx), cudaFree(dqw), cudaFree(dinv), cudaFree(dC);
  free(x), free(w), free(C), free(qx), free(qw), free(ref);
}

static void test_gemm_fp8(void **state) {
  (void)state;
  int major = 0, minor = 0;
  CT_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0));
  CT_CUDA(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0));
  if (major * 10 + minor < 89) {
    printf("  fp8: needs sm_89 or later (this is sm_%d%d): not tested\n", major, minor);
    return;
  }
  fp8_case(MB_F8E4M3, MB_F8E4M3, MB_BF16, 64, 48, 96);
  fp8_case(MB_F8E4M3, MB_F8E4M3, MB_F32, 128, 96, 256);
  fp8_case(MB_F8E5M2, MB_F8E4M3, MB_BF16, 64, 80, 128); /* a gradient (e5m2) times a weight */
  fp8_case(MB_F8E4M3, MB_F8E5M2, MB_F32, 32, 64, 64);
  /* the layout rule is enforced with a clear error */
  mb_gemm_desc d = {0};
  d.m = d.n = d.k = 16;
  d.a_type = d.b_type = MB_F8E4M3;
  d.c_type = MB_BF16;
  assert_int_equal(mb_gemm(ctx, &d, NULL), MB_EUNSUPPORTED);
  assert_non_null(strstr(mb_error_message(), "trans_b = 1"));
}

/* Quantisation with delayed scaling: bytes equal the host conversion with
 * the scale in force, amax recorded, the scale updated from the history. */
/* Current scaling (the fp8 attention's q, k, v): each call's scale is
 * 448 / amax of that tensor alone, whatever came before; the codes are the
 * host conversion's; bf16 input; an all-zero tensor keeps scale 1. */
static void test_fp8_quantize_current(void **state) {
  (void)state;
  const size_t n = 1000;
  float *x = malloc(n * 4);
  uint8_t *q = malloc(n);
  mb_fp8_meta *meta = ct_dev(sizeof(mb_fp8_meta));
  uint8_t *dq = ct_dev(n);
  for (int call = 0; call < 3; call++) { /* 100, then 0.01 (a history would keep 100's scale), then zeros */
    ct_randn(x, n, call == 0 ? 100.0f : 0.01f);
    for (size_t i = 0; call == 2 && i < n; i++)
      x[i] = 0.0f;
    uint16_t *xb = malloc(n * 2); /* x rounded to bf16, as the device holds it */
    assert_int_equal(mb_convert(xb, MB_BF16, x, MB_F32, n), MB_OK);
    assert_int_equal(mb_convert(x, MB_F32, xb, MB_BF16, n), MB_OK);
    free(xb);
    void *dx = ct_upload(x, n, MB_BF16);
    ct_poison(dq, n);
    CT_OK(mb_cuda_fp8_quantize_current(dq, MB_F8E4M3, dx, MB_BF16, (int64_t)n, meta, NULL));
    CT_CUDA(cudaDeviceSynchronize());
    CT_CUDA(cudaMemcpy(q, dq, n, cudaMemcpyDeviceToHost));
    mb_fp8_meta h;
    CT_CUDA(cudaMemcpy(&h, meta, sizeof h, cudaMemcpyDeviceToHost));
    float amax = 0;
    for (size_t i = 0; i < n; i++)
      amax = fmaxf(amax, fabsf(x[i]));
    const float scale = amax > 0 ? 448.0f / amax : 1.0f;
    if (h.scale != scale || h.scale_inv != 1.0f / scale)
      fail_msg("call %d: scale %g (inverse %g), want %g", call, h.scale, h.scale_inv, scale);
    for (size_t i = 0; i < n; i++)
      if (q[i] != mb_f32_to_e4m3(x[i] * scale, MB_FP8_SATFINITE))
        fail_msg("call %d: element %zu's code %#x differs from the host conversion", call, i, q[i]);
    cudaFree(dx);
  }
  assert_int_equal(mb_cuda_fp8_quantize_current(NULL, MB_F8E4M3, dq, MB_BF16, 1, meta, NULL), MB_EINVAL);
  mb_error_clear();
  cudaFree(meta), cudaFree(dq);
  free(x), free(q);
}

static void test_fp8_quantize_delayed(void **state) {
  (void)state;
  int64_t rows = 37, cols = 48;
  size_t n = (size_t)(rows * cols);
  float *x = malloc(n * 4);
  uint8_t *q = malloc(n), *ref = malloc(n);
  mb_fp8_meta *meta = ct_dev(sizeof(mb_fp8_meta));
  CT_OK(mb_cuda_fp8_meta_init(meta, 1, NULL));
  float scale = 1.0f, amax_hist_max = 0.0f;
  for (int step = 0; step < 3; step++) {
    ct_randn(x, n, 3.0f + 50.0f * (float)step);
    for (int tr = 0; tr < 2; tr++) {
      uint8_t *dq = ct_dev(n);
      ct_poison(dq, n);
      void *dx = ct_upload(x, n, MB_F32);
      CT_OK(mb_cuda_fp8_quantize(dq, MB_F8E4M3, dx, MB_F32, rows, cols, tr, meta, NULL));
      CT_CUDA(cudaDeviceSynchronize());
      CT_CUDA(cudaMemcpy(q, dq, n, cudaMemcpyDeviceToHost));
      for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
          int64_t j = tr ? c * rows + r : r * cols + c;
          ref[j] = mb_f32_to_e4m3(x[r * cols + c] * scale, MB_FP8_SATFINITE);
        }
      if (memcmp(q, ref, n) != 0)
        fail_msg("fp8 quantize (step %d, transpose %d) differs from the host conversion", step, tr);
      cudaFree(dq), cudaFree(dx);
    }
    mb_fp8_meta h;
    CT_CUDA(cudaMemcpy(&h, meta, sizeof h, cudaMemcpyDeviceToHost));
    float amax = 0;
    for (size_t i = 0; i < n; i++)
      amax = fmaxf(amax, fabsf(x[i]));
    assert_true(h.amax == amax);
    assert_true(h.scale == scale);
    CT_OK(mb_cuda_fp8_update(meta, 1, MB_F8E4M3, 1, NULL));
    CT_CUDA(cudaMemcpy(&h, meta, sizeof h, cudaMemcpyDeviceToHost));
    amax_hist_max = fmaxf(amax_hist_max, amax);
    scale = ldexpf(448.0f / amax_hist_max, -1);
    assert_true(h.scale == scale);
    assert_true(h.scale_inv == 1.0f / scale);
    assert_true(h.amax == 0.0f);
    assert_int_equal(h.pos, step + 1);
  }
  cudaFree(meta);
  free(x), free(q), free(ref);
}

static void test_gemm_cache_and_errors(void **state) {
  (void)state;
  mb_gemm_cache_stats s0 = mb_gemm_ctx_stats(ctx);
  shape_t s = {0, 1, 64, 64, 64, 1, 0, 0, 0};
  (void)run_case(s, MB_F32, MB_F32, MB_GEMM_DEFAULT, 1.0, 0.0);
  mb_gemm_cache_stats s1 = mb_gemm_ctx_stats(ctx);
  for (int i = 0; i < 3; i++)
    (void)run_case(s, MB_F32, MB_F32, MB_GEMM_DEFAULT, 1.0, 0.0);
  mb_gemm_cache_stats s2 = mb_gemm_ctx_stats(ctx);
  assert_true(s1.lookups == s0.lookups + 1);
  assert_true(s2.lookups == s1.lookups + 3);
  assert_true(s2.misses == s1.misses); /* same shape, same alignment: no new heuristic query */
  /* bad arguments: clear errors, no launch */
  mb_gemm_desc d = {0};
  d.m = 4, d.n = 4, d.k = 4;
  d.a_type = MB_F32, d.b_type = MB_BF16, d.c_type = MB_F32;
  assert_int_equal(mb_gemm(ctx, &d, NULL), MB_EUNSUPPORTED);
  assert_non_null(strstr(mb_error_message(), "f32 x bf16"));
  d.b_type = MB_F32;
  d.lda = 2;
  assert_int_equal(mb_gemm(ctx, &d, NULL), MB_EINVAL);
  d.lda = 0;
  d.epilogue = MB_EPI_BIAS;
  assert_int_equal(mb_gemm(ctx, &d, NULL), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "bias"));
}

int main(void) {
  ct_require_gpu("cuda_gemm");
  ct_seed_init("cuda_gemm");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gemm_f32),
      cmocka_unit_test(test_gemm_tf32),
      cmocka_unit_test(test_gemm_f64),
      cmocka_unit_test(test_gemm_bf16),
      cmocka_unit_test(test_gemm_f16),
      cmocka_unit_test(test_gemm_alpha_beta_ld_batched),
      cmocka_unit_test(test_gemm_epilogues),
      cmocka_unit_test(test_gemm_bgrad),
      cmocka_unit_test(test_gemm_fp8),
      cmocka_unit_test(test_fp8_quantize_delayed),
      cmocka_unit_test(test_fp8_quantize_current),
      cmocka_unit_test(test_gemm_cache_and_errors),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
