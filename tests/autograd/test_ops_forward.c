/* test_ops_forward.c: every CPU kernel's forward against a naive reference
 * written here (in double), in f32 and f64, plus known values (exact GELU,
 * softplus threshold), dtype-agnostic shape ops on integers, casts, the
 * fp8 attention's quantisation, and bad run-time data (ids, labels)
 * reported as errors, not crashes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/dtype.h"
#include "runtime/philox.h"
#include "test_util.h"

/* A tiny harness: declare, compile (eval, poisoned), feed, run, read. */
typedef struct {
  mb_params *p;
  mb_graph *g;
  mb_exec *ex;
} harness;

static void h_begin(harness *h, mb_dtype pdt) {
  memset(h, 0, sizeof *h);
  ASSERT_OK(mb_params_new(pdt, &h->p));
  ASSERT_OK(mb_graph_new(h->p, &h->g));
}

static void h_compile(harness *h, mb_var out) {
  ASSERT_OK(mb_graph_status(h->g));
  ASSERT_OK(mb_mark_output(h->g, out));
  mb_compile_opts o = {.poison = 1};
  ASSERT_OK(mb_graph_compile(h->g, &o));
  ASSERT_OK(mb_exec_new(h->g, mb_cpu_backend(), &h->ex));
}

static void h_end(harness *h) {
  mb_exec_free(h->ex);
  mb_graph_free(h->g);
  mb_params_free(h->p);
}

/* Data in double, converted to the input's dtype when fed / read. */
static void feed(harness *h, mb_var v, const double *x) {
  const mb_value *val = mb_graph_value(h->g, v);
  int64_t n = mb_shape_numel(&val->shape);
  if (val->dtype == MB_F64) {
    ASSERT_OK(mb_exec_set_input(h->ex, v, x));
    return;
  }
  float *f = malloc((size_t)n * sizeof *f);
  for (int64_t i = 0; i < n; i++)
    f[i] = (float)x[i];
  ASSERT_OK(mb_exec_set_input(h->ex, v, f));
  free(f);
}

static double *read_out(harness *h, mb_var v) {
  const mb_value *val = mb_graph_value(h->g, v);
  int64_t n = mb_shape_numel(&val->shape);
  double *out = malloc((size_t)(n ? n : 1) * sizeof *out);
  if (val->dtype == MB_F64) {
    ASSERT_OK(mb_exec_get(h->ex, v, out));
  } else {
    float *f = malloc((size_t)(n ? n : 1) * sizeof *f);
    ASSERT_OK(mb_exec_get(h->ex, v, f));
    for (int64_t i = 0; i < n; i++)
      out[i] = f[i];
    free(f);
  }
  return out;
}

static double *rand_vec(int64_t n, uint64_t *s, double scale) {
  double *x = malloc((size_t)(n ? n : 1) * sizeof *x);
  for (int64_t i = 0; i < n; i++)
    x[i] = scale * tu_unif(s);
  return x;
}

static double tol_of(mb_dtype dt) { return dt == MB_F32 ? 2e-5 : 1e-12; }

static void expect_close(const char *what, const double *got, const double *ref, int64_t n, double tol) {
  double m = tu_max_rel(got, ref, n, 1e-3);
  if (!(m <= tol))
    fail_msg("%s: max relative error %.3g > %.3g", what, m, tol);
}

/* ---- matmul ---- */

static void test_matmul(void **state) {
  (void)state;
  uint64_t s = 1;
  for (int dti = 0; dti < 2; dti++) {
    mb_dtype dt = dti ? MB_F64 : MB_F32;
    for (int t = 0; t < 8; t++) {
      int ta = t & 1, tb = (t >> 1) & 1, batched = t >> 2;
      int64_t Bt = batched ? 3 : 1, M = tu_int(&s, 1, 9), K = tu_int(&s, 1, 9), N = tu_int(&s, 1, 9);
      harness h;
      h_begin(&h, dt);
      mb_shape as = batched ? (ta ? mb_shape3(Bt, K, M) : mb_shape3(Bt, M, K)) : (ta ? mb_shape2(K, M) : mb_shape2(M, K));
      mb_shape bs = batched ? (tb ? mb_shape3(Bt, N, K) : mb_shape3(Bt, K, N)) : (tb ? mb_shape2(N, K) : mb_shape2(K, N));
      mb_var a = mb_input(h.g, "a", dt, as), b = mb_input(h.g, "b", dt, bs), bias = mb_input(h.g, "bias", dt, mb_shape1(N));
      mb_var c = mb_matmul_bias(h.g, a, b, bias, ta, tb);
      h_compile(&h, c);
      double *A = rand_vec(Bt * M * K, &s, 1), *B = rand_vec(Bt * K * N, &s, 1), *bi = rand_vec(N, &s, 1);
      feed(&h, a, A), feed(&h, b, B), feed(&h, bias, bi);
      ASSERT_OK(mb_exec_forward(h.ex));
      double *C = read_out(&h, c), *R = malloc((size_t)(Bt * M * N) * sizeof *R);
      for (int64_t bb = 0; bb < Bt; bb++)
        for (int64_t i = 0; i < M; i++)
          for (int64_t j = 0; j < N; j++) {
            double acc = bi[j];
            for (int64_t kk = 0; kk < K; kk++) {
              double av = ta ? A[bb * M * K + kk * M + i] : A[bb * M * K + i * K + kk];
              double bv = tb ? B[bb * K * N + j * K + kk] : B[bb * K * N + kk * N + j];
              acc += av * bv;
            }
            R[bb * M * N + i * N + j] = acc;
          }
      char what[64];
      snprintf(what, sizeof what, "matmul %s ta=%d tb=%d batched=%d", mb_dtype_name(dt), ta, tb, batched);
      expect_close(what, C, R, Bt * M * N, tol_of(dt) * 10);
      free(A), free(B), free(bi), free(C), free(R);
      h_end(&h);
    }
  }
}

/* ---- activations at known points ---- */

static double ref_act(int op, double x) {
  switch (op) {
  case MB_OP_RELU: return x > 0 ? x : 0;
  case MB_OP_GELU: return 0.5 * x * (1 + erf(x / sqrt(2.0)));
  case MB_OP_TANH: return tanh(x);
  case MB_OP_SIGMOID: return 1 / (1 + exp(-x));
  case MB_OP_SILU: return x / (1 + exp(-x));
  case MB_OP_SOFTPLUS: return x > 20 ? x : log1p(exp(x));
  default: return exp(x);
  }
}

static void test_activations(void **state) {
  (void)state;
  const double pts[] = {-30, -5, -1, -0.25, 0, 0.5, 1, 3, 19.5, 20.5, 25};
  const int n = sizeof pts / sizeof *pts;
  for (int dti = 0; dti < 2; dti++) {
    mb_dtype dt = dti ? MB_F64 : MB_F32;
    for (int op = MB_OP_RELU; op <= MB_OP_EXP; op++) {
      harness h;
      h_begin(&h, dt);
      mb_var x = mb_input(h.g, "x", dt, mb_shape1(n));
      mb_var y = mb_unary_(h.g, MB_HERE, op, x);
      h_compile(&h, y);
      feed(&h, x, pts);
      ASSERT_OK(mb_exec_forward(h.ex));
      double *got = read_out(&h, y), ref[32];
      for (int i = 0; i < n; i++)
        ref[i] = ref_act(op, pts[i]);
      char what[64];
      snprintf(what, sizeof what, "%s %s", mb_op_name(op), mb_dtype_name(dt));
      expect_close(what, got, ref, n, dt == MB_F32 ? 1e-4 : 1e-14); /* f32: 1+erf(x) cancels for x << 0 */
      if (op == MB_OP_GELU) { /* the exact erf form, not the tanh approximation */
        assert_true(fabs(got[6] - 0.8413447460685429) < 1e-6);
        assert_true(fabs(got[2] + 0.15865525393145707) < 1e-6);
      }
      if (op == MB_OP_SOFTPLUS) {
        assert_true(got[10] == 25.0); /* past the threshold: identity */
        assert_true(fabs(got[4] - log(2.0)) < 1e-7);
      }
      free(got);
      h_end(&h);
    }
  }
}

/* ---- norms, softmax, cross-entropy ---- */

static void test_norms(void **state) {
  (void)state;
  uint64_t s = 2;
  for (int dti = 0; dti < 2; dti++) {
    mb_dtype dt = dti ? MB_F64 : MB_F32;
    int64_t R = 7, H = 13;
    harness h;
    h_begin(&h, dt);
    mb_var x = mb_input(h.g, "x", dt, mb_shape2(R, H)), w = mb_input(h.g, "w", dt, mb_shape1(H)),
           b = mb_input(h.g, "b", dt, mb_shape1(H));
    mb_var ln = mb_layernorm(h.g, x, w, b, 1e-5), rms = mb_rmsnorm(h.g, x, w, 1e-5), sm = mb_softmax(h.g, x);
    ASSERT_OK(mb_mark_output(h.g, ln));
    ASSERT_OK(mb_mark_output(h.g, rms));
    h_compile(&h, sm);
    double *X = rand_vec(R * H, &s, 3), *W = rand_vec(H, &s, 1), *B = rand_vec(H, &s, 1);
    feed(&h, x, X), feed(&h, w, W), feed(&h, b, B);
    ASSERT_OK(mb_exec_forward(h.ex));
    double *gl = read_out(&h, ln), *gr = read_out(&h, rms), *gs = read_out(&h, sm);
    double rl[7 * 13], rr[7 * 13], rs[7 * 13];
    for (int64_t r = 0; r < R; r++) {
      double mu = 0, var = 0, ms = 0, mx = -1e300, z = 0;
      for (int64_t i = 0; i < H; i++)
        mu += X[r * H + i] / H, ms += X[r * H + i] * X[r * H + i] / H, mx = fmax(mx, X[r * H + i]);
      for (int64_t i = 0; i < H; i++)
        var += (X[r * H + i] - mu) * (X[r * H + i] - mu) / H, z += exp(X[r * H + i] - mx);
      for (int64_t i = 0; i < H; i++) {
        rl[r * H + i] = (X[r * H + i] - mu) / sqrt(var + 1e-5) * W[i] + B[i];
        rr[r * H + i] = X[r * H + i] / sqrt(ms + 1e-5) * W[i];
        rs[r * H + i] = exp(X[r * H + i] - mx) / z;
      }
    }
    expect_close("layernorm", gl, rl, R * H, tol_of(dt));
    expect_close("rmsnorm", gr, rr, R * H, tol_of(dt));
    expect_close("softmax", gs, rs, R * H, tol_of(dt));
    free(X), free(W), free(B), free(gl), free(gr), free(gs);
    h_end(&h);
  }
}

static void test_cross_entropy(void **state) {
  (void)state;
  uint64_t s = 3;
  for (int dti = 0; dti < 2; dti++) {
    mb_dtype dt = dti ? MB_F64 : MB_F32;
    int64_t N = 6, C = 5;
    harness h;
    h_begin(&h, dt);
    mb_var x = mb_input(h.g, "logits", dt, mb_shape2(N, C)), lab = mb_input(h.g, "labels", MB_I64, mb_shape1(N));
    mb_var loss = mb_cross_entropy(h.g, x, lab);
    h_compile(&h, loss);
    double *X = rand_vec(N * C, &s, 4);
    int64_t L[6] = {0, 4, -100, 2, 2, 1};
    feed(&h, x, X);
    ASSERT_OK(mb_exec_set_input(h.ex, lab, L));
    ASSERT_OK(mb_exec_forward(h.ex));
    double *got = read_out(&h, loss), ref = 0;
    for (int64_t i = 0; i < N; i++) {
      if (L[i] == -100)
        continue;
      double z = 0;
      for (int64_t c = 0; c < C; c++)
        z += exp(X[i * C + c]);
      ref += log(z) - X[i * C + L[i]];
    }
    ref /= 5;
    expect_close("cross_entropy", got, &ref, 1, tol_of(dt));
    /* A label outside [0, C) is an error with the row, not a read out of bounds. */
    L[3] = 7;
    ASSERT_OK(mb_exec_set_input(h.ex, lab, L));
    assert_int_equal(mb_exec_forward(h.ex), MB_EINVAL);
    assert_non_null(strstr(mb_error_message(), "label 7 in row 3 is outside [0, 5)"));
    assert_non_null(strstr(mb_error_message(), "'cross_entropy'"));
    free(X), free(got);
    h_end(&h);
  }
}

/* ---- embedding, pooling ---- */

static void test_embedding_pool(void **state) {
  (void)state;
  uint64_t s = 4;
  for (int dti = 0; dti < 2; dti++) {
    mb_dtype dt = dti ? MB_F64 : MB_F32;
    int64_t V = 10, H = 3, B = 2, L = 4;
    harness h;
    h_begin(&h, dt);
    mb_var ids = mb_input(h.g, "ids", MB_I32, mb_shape2(B, L)), table = mb_input(h.g, "table", dt, mb_shape2(V, H));
    mb_var mask = mb_input(h.g, "mask", MB_I32, mb_shape2(B, L));
    mb_var e = mb_embedding(h.g, ids, table);
    mb_var pm = mb_mean_pool(h.g, e, mask), pp = mb_mean_pool(h.g, e, MB_VAR_NONE);
    ASSERT_OK(mb_mark_output(h.g, e));
    ASSERT_OK(mb_mark_output(h.g, pm));
    h_compile(&h, pp);
    double *T = rand_vec(V * H, &s, 1);
    int32_t I[8] = {1, 9, 1, 0, 5, 5, 2, 3}, M[8] = {1, 1, 0, 0, 1, 1, 1, 1};
    feed(&h, table, T);
    ASSERT_OK(mb_exec_set_input(h.ex, ids, I));
    ASSERT_OK(mb_exec_set_input(h.ex, mask, M));
    ASSERT_OK(mb_exec_forward(h.ex));
    double *ge = read_out(&h, e), *gm = read_out(&h, pm), *gp = read_out(&h, pp);
    double re[24], rm[6] = {0}, rp[6] = {0};
    for (int64_t t = 0; t < B * L; t++)
      for (int64_t c = 0; c < H; c++) {
        re[t * H + c] = T[I[t] * H + c];
        rp[(t / L) * H + c] += T[I[t] * H + c] / L;
        rm[(t / L) * H + c] += M[t] * T[I[t] * H + c] / (t / L == 0 ? 2.0 : 4.0);
      }
    expect_close("embedding", ge, re, 24, tol_of(dt));
    expect_close("mean_pool masked", gm, rm, 6, tol_of(dt));
    expect_close("mean_pool", gp, rp, 6, tol_of(dt));
    I[5] = 10;
    ASSERT_OK(mb_exec_set_input(h.ex, ids, I));
    assert_int_equal(mb_exec_forward(h.ex), MB_EINVAL);
    assert_non_null(strstr(mb_error_message(), "id 10 at flat position 5 is outside [0, 10)"));
    free(T), free(ge), free(gm), free(gp);
    h_end(&h);
  }
}

/* ---- shape ops, on integers too (they only move bytes) ---- */

static void test_shape_ops_int(void **state) {
  (void)state;
  harness h;
  h_begin(&h, MB_F32);
  mb_var x = mb_input(h.g, "x", MB_I32, mb_shape4(2, 3, 4, 5)), z = mb_input(h.g, "z", MB_I32, mb_shape4(2, 3, 1, 5));
  mb_var p = mb_permute(h.g, x, 4, ((int[]){2, 0, 3, 1}));
  mb_var sl = mb_slice(h.g, x, 2, 1, 2);
  mb_var cc = mb_concat(h.g, ((mb_var[]){z, x}), 2, 2);
  ASSERT_OK(mb_mark_output(h.g, p));
  ASSERT_OK(mb_mark_output(h.g, sl));
  h_compile(&h, cc);
  int32_t X[120], Z[30];
  for (int i = 0; i < 120; i++)
    X[i] = i;
  for (int i = 0; i < 30; i++)
    Z[i] = 1000 + i;
  ASSERT_OK(mb_exec_set_input(h.ex, x, X));
  ASSERT_OK(mb_exec_set_input(h.ex, z, Z));
  ASSERT_OK(mb_exec_forward(h.ex));
  int32_t P[120], S[60], C[150];
  ASSERT_OK(mb_exec_get(h.ex, p, P));
  ASSERT_OK(mb_exec_get(h.ex, sl, S));
  ASSERT_OK(mb_exec_get(h.ex, cc, C));
  /* p[i2][i0][i3][i1] = x[i0][i1][i2][i3] */
  for (int i0 = 0; i0 < 2; i0++)
    for (int i1 = 0; i1 < 3; i1++)
      for (int i2 = 0; i2 < 4; i2++)
        for (int i3 = 0; i3 < 5; i3++) {
          int xv = ((i0 * 3 + i1) * 4 + i2) * 5 + i3;
          assert_int_equal(P[((i2 * 2 + i0) * 5 + i3) * 3 + i1], xv);
          if (i2 >= 1 && i2 < 3)
            assert_int_equal(S[((i0 * 3 + i1) * 2 + (i2 - 1)) * 5 + i3], xv);
          assert_int_equal(C[((i0 * 3 + i1) * 5 + (i2 + 1)) * 5 + i3], xv);
          if (i2 == 0)
            assert_int_equal(C[((i0 * 3 + i1) * 5) * 5 + i3], 1000 + (i0 * 3 + i1) * 5 + i3);
        }
  h_end(&h);
}

static void test_reductions_broadcast(void **state) {
  (void)state;
  uint64_t s = 5;
  for (int dti = 0; dti < 2; dti++) {
    mb_dtype dt = dti ? MB_F64 : MB_F32;
    harness h;
    h_begin(&h, dt);
    mb_var x = mb_input(h.g, "x", dt, mb_shape3(4, 3, 5)), v = mb_input(h.g, "v", dt, mb_shape2(3, 1));
    mb_var s1 = mb_sum_to(h.g, x, mb_shape3(1, 3, 1)), s2 = mb_mean(h.g, x), s3 = mb_sum_to(h.g, x, mb_shape1(5));
    mb_var bc = mb_add(h.g, x, v), bt = mb_broadcast_to(h.g, v, mb_shape3(2, 3, 4));
    mb_var all[] = {s1, s2, s3, bc};
    for (int i = 0; i < 4; i++)
      ASSERT_OK(mb_mark_output(h.g, all[i]));
    h_compile(&h, bt);
    double *X = rand_vec(60, &s, 1), *Vv = rand_vec(3, &s, 1);
    feed(&h, x, X), feed(&h, v, Vv);
    ASSERT_OK(mb_exec_forward(h.ex));
    double r1[3] = {0}, r2 = 0, r3[5] = {0}, r4[60], r5[24];
    for (int a = 0; a < 4; a++)
      for (int b = 0; b < 3; b++)
        for (int c = 0; c < 5; c++) {
          double xv = X[(a * 3 + b) * 5 + c];
          r1[b] += xv, r2 += xv / 60, r3[c] += xv;
          r4[(a * 3 + b) * 5 + c] = xv + Vv[b];
        }
    for (int i = 0; i < 24; i++)
      r5[i] = Vv[(i / 4) % 3];
    double *g1 = read_out(&h, s1), *g2 = read_out(&h, s2), *g3 = read_out(&h, s3), *g4 = read_out(&h, bc),
           *g5 = read_out(&h, bt);
    expect_close("sum_to [1,3,1]", g1, r1, 3, tol_of(dt));
    expect_close("mean", g2, &r2, 1, tol_of(dt));
    expect_close("sum_to [5]", g3, r3, 5, tol_of(dt));
    expect_close("add broadcast", g4, r4, 60, tol_of(dt));
    expect_close("broadcast_to", g5, r5, 24, tol_of(dt));
    free(X), free(Vv), free(g1), free(g2), free(g3), free(g4), free(g5);
    h_end(&h);
  }
}

/* Column sums big enough to run in row chunks (a bias gradient: [rows, K]
 * -> [K], and [K1, R, K2] with K1 = 2), over more than one 256-column
 * block; in f64 the chunked double partials must match the plain sum. */
static void test_sum_to_columns(void **state) {
  (void)state;
  uint64_t s = 9;
  for (int dti = 0; dti < 2; dti++) {
    mb_dtype dt = dti ? MB_F64 : MB_F32;
    const int64_t R = 3001, K = 300, K1 = 2, R2 = 1500, K2 = 40;
    harness h;
    h_begin(&h, dt);
    mb_var x = mb_input(h.g, "x", dt, mb_shape2(R, K)), z = mb_input(h.g, "z", dt, mb_shape3(K1, R2, K2));
    mb_var sx = mb_sum_to(h.g, x, mb_shape1(K)), sz = mb_sum_to(h.g, z, mb_shape3(K1, 1, K2));
    ASSERT_OK(mb_mark_output(h.g, sx));
    h_compile(&h, sz);
    double *X = rand_vec(R * K, &s, 1), *Z = rand_vec(K1 * R2 * K2, &s, 1);
    feed(&h, x, X), feed(&h, z, Z);
    ASSERT_OK(mb_exec_forward(h.ex));
    /* The reference sums the values the kernel saw (f32: rounded) in double;
     * the kernel accumulates in double too, so only its last rounding is left. */
    double *rx = calloc((size_t)K, sizeof *rx), *rz = calloc((size_t)(K1 * K2), sizeof *rz);
#define SEEN(v) (dt == MB_F32 ? (double)(float)(v) : (v))
    for (int64_t r = 0; r < R; r++)
      for (int64_t c = 0; c < K; c++)
        rx[c] += SEEN(X[r * K + c]);
    for (int64_t i = 0; i < K1; i++)
      for (int64_t r = 0; r < R2; r++)
        for (int64_t c = 0; c < K2; c++)
          rz[i * K2 + c] += SEEN(Z[(i * R2 + r) * K2 + c]);
#undef SEEN
    double *gx = read_out(&h, sx), *gz = read_out(&h, sz);
    expect_close("sum_to [3001,300] -> [300]", gx, rx, K, dt == MB_F32 ? 1e-6 : 1e-12);
    expect_close("sum_to [2,1500,40] -> [2,1,40]", gz, rz, K1 * K2, dt == MB_F32 ? 1e-6 : 1e-12);
    free(X), free(Z), free(rx), free(rz), free(gx), free(gz);
    h_end(&h);
  }
}

static void test_casts(void **state) {
  (void)state;
  harness h;
  h_begin(&h, MB_F32);
  mb_var i = mb_input(h.g, "i", MB_I32, mb_shape1(4)), d = mb_input(h.g, "d", MB_F64, mb_shape1(4));
  mb_var a = mb_cast(h.g, i, MB_F32), b = mb_cast(h.g, d, MB_F32), c = mb_cast(h.g, d, MB_I64);
  ASSERT_OK(mb_mark_output(h.g, a));
  ASSERT_OK(mb_mark_output(h.g, b));
  h_compile(&h, c);
  int32_t I[4] = {-3, 0, 7, 1 << 24};
  double D[4] = {0.1, -2.75, 1e10, 3.999};
  ASSERT_OK(mb_exec_set_input(h.ex, i, I));
  ASSERT_OK(mb_exec_set_input(h.ex, d, D));
  ASSERT_OK(mb_exec_forward(h.ex));
  float A[4], B[4];
  int64_t C[4];
  ASSERT_OK(mb_exec_get(h.ex, a, A));
  ASSERT_OK(mb_exec_get(h.ex, b, B));
  ASSERT_OK(mb_exec_get(h.ex, c, C));
  for (int k = 0; k < 4; k++) {
    assert_true(A[k] == (float)I[k]);
    assert_true(B[k] == (float)D[k]);
    assert_int_equal(C[k], (int64_t)D[k]);
  }
  h_end(&h);
}

static void test_dropout(void **state) {
  (void)state;
  const int64_t n = 20000;
  harness h;
  h_begin(&h, MB_F32);
  mb_var x = mb_input(h.g, "x", MB_F32, mb_shape1(n)), rng = mb_input(h.g, "rng", MB_U64, mb_shape1(2));
  mb_var a = mb_dropout(h.g, x, 0.25, rng, 7), b = mb_dropout(h.g, x, 0.25, rng, 8);
  ASSERT_OK(mb_mark_output(h.g, a));
  h_compile(&h, b);
  float *X = malloc(n * sizeof *X), *A = malloc(n * sizeof *A), *A2 = malloc(n * sizeof *A2), *B = malloc(n * sizeof *B);
  for (int64_t i = 0; i < n; i++)
    X[i] = 1.0f + (float)(i % 5);
  uint64_t r[2] = {42, 0};
  ASSERT_OK(mb_exec_set_input(h.ex, x, X));
  ASSERT_OK(mb_exec_set_input(h.ex, rng, r));
  ASSERT_OK(mb_exec_forward(h.ex));
  ASSERT_OK(mb_exec_get(h.ex, a, A));
  ASSERT_OK(mb_exec_get(h.ex, b, B));
  int64_t kept = 0, same_ab = 0;
  for (int64_t i = 0; i < n; i++) {
    assert_true(A[i] == 0.0f || A[i] == X[i] * (float)(1.0 / 0.75));
    kept += A[i] != 0.0f;
    same_ab += (A[i] != 0.0f) == (B[i] != 0.0f);
  }
  double frac = (double)kept / n;
  printf("  dropout p=0.25: kept %.4f; sites agree on %.3f of elements\n", frac, (double)same_ab / n);
  assert_true(fabs(frac - 0.75) < 0.015);
  assert_true(same_ab < n * 0.7); /* independent sites: about 0.625 agree */
  /* Same (seed, offset): the same mask; a new offset: another mask. */
  ASSERT_OK(mb_exec_forward(h.ex));
  ASSERT_OK(mb_exec_get(h.ex, a, A2));
  assert_memory_equal(A, A2, n * sizeof *A);
  r[1] = 20000;
  ASSERT_OK(mb_exec_set_input(h.ex, rng, r));
  ASSERT_OK(mb_exec_forward(h.ex));
  ASSERT_OK(mb_exec_get(h.ex, a, A2));
  assert_true(memcmp(A, A2, n * sizeof *A) != 0);
  /* The mask is the documented function of (seed, offset + i, site): element
   * e = offset + i keeps iff u01(Philox4x32-10((e/4, e>>34, site, 0), seed)
   * lane e%4) >= p; offsets that are not multiples of 4 included. */
  static const uint64_t offsets[] = {3, 4099, (1ull << 34) + 2};
  for (size_t t = 0; t < sizeof offsets / sizeof offsets[0]; t++) {
    r[1] = offsets[t];
    ASSERT_OK(mb_exec_set_input(h.ex, rng, r));
    ASSERT_OK(mb_exec_forward(h.ex));
    ASSERT_OK(mb_exec_get(h.ex, a, A2));
    for (int64_t i = 0; i < n; i++) {
      const uint64_t e = offsets[t] + (uint64_t)i;
      mb_u32x4 c = {{(uint32_t)(e >> 2), (uint32_t)(e >> 34), 7, 0}};
      const float u = mb_philox_u01(mb_philox4x32_10(c, 42, 0).w[e & 3]);
      const float want = u >= 0.25f ? X[i] * (float)(1.0 / 0.75) : 0.0f;
      if (A2[i] != want)
        fail_msg("dropout offset %llu element %lld: %g, the formula gives %g", (unsigned long long)offsets[t],
                 (long long)i, A2[i], want);
    }
  }
  free(X), free(A), free(A2), free(B);
  h_end(&h);
}

/* f32 and f64 agree on a composed expression (the same code, two types). */
static void test_f32_matches_f64(void **state) {
  (void)state;
  double out[2][12];
  uint64_t s0 = 6;
  double *X = rand_vec(12, &s0, 2), *W = rand_vec(16, &s0, 1);
  for (int dti = 0; dti < 2; dti++) {
    mb_dtype dt = dti ? MB_F64 : MB_F32;
    harness h;
    h_begin(&h, dt);
    mb_var x = mb_input(h.g, "x", dt, mb_shape2(3, 4)), w = mb_input(h.g, "w", dt, mb_shape2(4, 4));
    mb_var y = mb_silu(h.g, mb_gelu(h.g, mb_softmax(h.g, mb_matmul(h.g, x, w, 0, 1))));
    h_compile(&h, y);
    feed(&h, x, X), feed(&h, w, W);
    ASSERT_OK(mb_exec_forward(h.ex));
    double *g = read_out(&h, y);
    memcpy(out[dti], g, sizeof out[dti]);
    free(g);
    h_end(&h);
  }
  expect_close("f32 vs f64", out[0], out[1], 12, 1e-6);
  free(X), free(W);
}

/* ---- fp8 attention (evaluation) ---- */

/* The spec the op follows (the GPU's current scaling, kernels/cuda/optim.cu):
 * x -> e4m3(x * s) / s with s = 448 / amax(x) in f32. */
static void e4m3_roundtrip(double *x, int64_t n) {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; i++)
    amax = fabsf((float)x[i]) > amax ? fabsf((float)x[i]) : amax;
  const float sc = amax > 0.0f ? 448.0f / amax : 1.0f, inv = 1.0f / sc;
  for (int64_t i = 0; i < n; i++)
    x[i] = mb_e4m3_to_f32(mb_f32_to_e4m3((float)x[i] * sc, MB_FP8_SATFINITE)) * inv;
}

/* out of attention (fp8 flag as given) over q, k, v, with a key mask */
static double *run_attention(mb_dtype dt, int fp8, double *const qkv[3], int64_t B, int64_t L, int64_t H, int64_t D) {
  harness h;
  h_begin(&h, dt);
  mb_var in[3];
  const char *names[3] = {"q", "k", "v"};
  for (int j = 0; j < 3; j++)
    in[j] = mb_input(h.g, names[j], dt, mb_shape4(B, L, H, D));
  mb_var km = mb_input(h.g, "key_mask", MB_I32, mb_shape2(B, L));
  mb_var y = mb_attention_(h.g, MB_HERE, in[0], in[1], in[2], km, MB_VAR_NONE, 0, 0.0, fp8);
  h_compile(&h, y);
  for (int j = 0; j < 3; j++)
    feed(&h, in[j], qkv[j]);
  int32_t *m = malloc((size_t)(B * L) * sizeof *m);
  for (int64_t i = 0; i < B * L; i++)
    m[i] = i % L < L - 3 * (i / L); /* row b: 3b padded keys */
  ASSERT_OK(mb_exec_set_input(h.ex, km, m));
  free(m);
  ASSERT_OK(mb_exec_forward(h.ex));
  double *out = read_out(&h, y);
  h_end(&h);
  return out;
}

/* The op with fp8 set quantises q, k and v, each with its own scale,
 * before the product: on inputs already on that grid (e4m3 values with
 * +-448 among them: scale 1) it gives the plain op's bits; on random ones
 * the plain op's bits on the inputs quantised as above, and not its bits
 * on the raw ones. A program that needs its gradient is refused. */
static void test_fp8_attention(void **state) {
  (void)state;
  const int64_t B = 2, L = 9, H = 2, D = 8, n = B * L * H * D;
  uint64_t s = 17;
  for (int dti = 0; dti < 2; dti++)
    for (int grid = 0; grid < 2; grid++) {
      const mb_dtype dt = dti ? MB_F64 : MB_F32;
      double *raw[3], *rounded[3];
      for (int j = 0; j < 3; j++) {
        raw[j] = rand_vec(n, &s, 1.0);
        if (grid) {
          for (int64_t i = 0; i < n; i++)
            raw[j][i] = mb_e4m3_to_f32(mb_f32_to_e4m3((float)(raw[j][i] * 100.0), MB_FP8_SATFINITE));
          raw[j][5 + j] = j == 1 ? -448.0 : 448.0;
        }
        rounded[j] = malloc((size_t)n * sizeof(double));
        memcpy(rounded[j], raw[j], (size_t)n * sizeof(double));
        e4m3_roundtrip(rounded[j], n);
        if (grid && memcmp(rounded[j], raw[j], (size_t)n * sizeof(double)))
          fail_msg("the e4m3 grid's values moved under the round trip");
      }
      double *fp8 = run_attention(dt, 1, raw, B, L, H, D), *want = run_attention(dt, 0, rounded, B, L, H, D);
      double *plain = run_attention(dt, 0, raw, B, L, H, D);
      if (memcmp(fp8, want, (size_t)n * sizeof(double)))
        fail_msg("%s %s: fp8 attention differs from attention on the e4m3-rounded inputs", mb_dtype_name(dt),
                 grid ? "grid" : "random");
      if (!grid && !memcmp(fp8, plain, (size_t)n * sizeof(double)))
        fail_msg("%s: fp8 attention gave the unquantised bits (did it quantise?)", mb_dtype_name(dt));
      double num = 0, den = 0;
      for (int64_t i = 0; i < n; i++)
        num += (fp8[i] - plain[i]) * (fp8[i] - plain[i]), den += plain[i] * plain[i];
      const double rel = sqrt(num / den);
      print_message("fp8 attention %s %s: normwise difference from the unquantised op %.3g\n", mb_dtype_name(dt),
                    grid ? "grid" : "random", rel);
      if (!(rel <= 0.1)) /* e4m3 carries 3 mantissa bits: a few percent */
        fail_msg("fp8 attention is %.3g away from the unquantised op", rel);
      for (int j = 0; j < 3; j++)
        free(raw[j]), free(rounded[j]);
      free(fp8), free(want), free(plain);
    }

  /* training through it: refused when the backward is generated */
  harness h;
  h_begin(&h, MB_F32);
  mb_var q = mb_param(h.g, "q", mb_shape4(1, 4, 1, 8));
  mb_var y = mb_attention_(h.g, MB_HERE, q, q, q, MB_VAR_NONE, MB_VAR_NONE, 0, 0.0, 1);
  mb_var loss = mb_sum(h.g, y);
  ASSERT_OK(mb_set_loss(h.g, loss));
  mb_compile_opts o = {.train = 1};
  assert_int_not_equal(mb_graph_compile(h.g, &o), MB_OK);
  assert_non_null(strstr(mb_error_message(), "fp8 attention is forward only"));
  mb_error_clear();
  h_end(&h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_matmul),          cmocka_unit_test(test_activations),
      cmocka_unit_test(test_norms),           cmocka_unit_test(test_cross_entropy),
      cmocka_unit_test(test_embedding_pool),  cmocka_unit_test(test_shape_ops_int),
      cmocka_unit_test(test_reductions_broadcast), cmocka_unit_test(test_sum_to_columns),
      cmocka_unit_test(test_casts),
      cmocka_unit_test(test_f32_matches_f64), cmocka_unit_test(test_dropout),
      cmocka_unit_test(test_fp8_attention),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
