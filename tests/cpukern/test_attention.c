/* test_attention.c (ctest: attention_reference): the fused tiled attention
 * forward against the naive O(L^2) reference in float64 — odd shapes, L = 1,
 * key padding, varlen with several sequences (one of length 1, one empty,
 * budget padding), causal — for many tile sizes; padded == packed; f32
 * against f64; the workspace is O(1) in L (forward) and O(L) (backward) and
 * no L x L buffer is allocated; bad descriptors are errors; a NaN query
 * row gives NaN, not 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "kernels/cpu/attention.h"
#include "tests/cpukern/cpukern_ref.h"
#include "tests/cpukern/cpukern_util.h"

/* Bounds (normwise, relative to the reference's largest |value|). */
#define TOL_F64 1e-12
#define TOL_F32 2e-6

static double worst_f64 = 0, worst_f32 = 0;

/* One problem: a descriptor and random q, k, v. */
typedef struct {
  mb_attn_desc d;
  size_t tokens, n;
  double *q, *k, *v;
} attn_case;

static void case_init(attn_case *c, const mb_attn_desc *d, uint64_t seed) {
  c->d = *d;
  c->tokens = (size_t)d->batch * d->seqlen;
  c->n = c->tokens * d->heads * d->head_dim;
  c->q = tu_alloc(c->n);
  c->k = tu_alloc(c->n);
  c->v = tu_alloc(c->n);
  uint64_t s = seed;
  tu_fill(c->q, c->n, 1.0, &s);
  tu_fill(c->k, c->n, 1.0, &s);
  tu_fill(c->v, c->n, 1.0, &s);
}

static void case_free(attn_case *c) {
  mb_host_free(c->q);
  mb_host_free(c->k);
  mb_host_free(c->v);
}

/* Is token t (flat) a padded query? (masked row, or the varlen budget's tail) */
static int is_pad(const mb_attn_desc *d, size_t t) {
  if (d->cu_seqlens)
    return (int)t >= d->cu_seqlens[d->nseq];
  return d->key_mask && !d->key_mask[t];
}

/* Fused forward (f64, given tiles) vs the reference; also checks padded rows
 * read out = 0 and lse = +inf, and that lse is a real log-sum-exp. Returns
 * the normwise difference of out. */
static double check_forward(const attn_case *c, int bq, int bk) {
  mb_attn_desc d = c->d;
  d.block_q = bq;
  d.block_k = bk;
  const size_t H = (size_t)d.heads;
  double *out = tu_alloc(c->n), *lse = tu_alloc(c->tokens * H), *ref = tu_alloc(c->n);
  double *P = tu_alloc(ref_attn_P_numel(&d) + 1);
  assert_int_equal(mb_cpu_attn_fwd_f64(&d, c->q, c->k, c->v, out, lse, NULL, 0), MB_OK);
  assert_int_equal(ref_attn_fwd_f64(&d, c->q, c->k, c->v, ref, P), MB_OK);
  const double e = tu_normdiff(out, ref, c->n);
  const size_t row = H * d.head_dim;
  for (size_t t = 0; t < c->tokens; t++) {
    if (!is_pad(&d, t))
      continue;
    for (size_t j = 0; j < row; j++)
      assert_true(out[t * row + j] == 0.0);
    for (size_t h = 0; h < H; h++)
      assert_true(isinf(lse[t * H + h]) && lse[t * H + h] > 0);
  }
  mb_host_free(out);
  mb_host_free(lse);
  mb_host_free(ref);
  mb_host_free(P);
  if (e > worst_f64)
    worst_f64 = e;
  return e;
}

static const int tiles[][2] = {{0, 0}, {1, 1}, {3, 5}, {7, 2}, {16, 16}, {64, 64}, {1000, 1000}};
#define NTILES (sizeof tiles / sizeof tiles[0])

static void check_all_tiles(const attn_case *c) {
  for (size_t i = 0; i < NTILES; i++) {
    const double e = check_forward(c, tiles[i][0], tiles[i][1]);
    if (!(e <= TOL_F64))
      fail_msg("B=%d L=%d H=%d Dh=%d causal=%d tiles %dx%d: error %.3g > %.1g", c->d.batch, c->d.seqlen,
               c->d.heads, c->d.head_dim, c->d.causal, tiles[i][0], tiles[i][1], e, TOL_F64);
  }
}

static void test_shapes(void **state) {
  (void)state;
  static const int shapes[][4] = {{1, 1, 1, 1}, {2, 1, 3, 4}, {3, 13, 3, 7}, {2, 64, 2, 16},
                                  {1, 100, 1, 5}, {2, 37, 4, 8}, {1, 129, 2, 64}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    for (int causal = 0; causal <= 1; causal++) {
      mb_attn_desc d = {.batch = shapes[i][0], .seqlen = shapes[i][1], .heads = shapes[i][2],
                        .head_dim = shapes[i][3], .causal = causal};
      attn_case c;
      case_init(&c, &d, 100 + i);
      check_all_tiles(&c);
      case_free(&c);
    }
  }
  /* an explicit scale */
  mb_attn_desc d = {.batch = 2, .seqlen = 9, .heads = 2, .head_dim = 3, .scale = 0.7};
  attn_case c;
  case_init(&c, &d, 7);
  check_all_tiles(&c);
  case_free(&c);
}

static void test_key_padding(void **state) {
  (void)state;
  enum { B = 5, L = 23 };
  int32_t mask[B * L];
  const int lens[B] = {23, 1, 0, 17, 9}; /* full, one token, all padding, ... */
  for (int b = 0; b < B; b++)
    for (int t = 0; t < L; t++)
      mask[b * L + t] = t < lens[b];
  for (int t = 0; t < L; t++) /* and one row with holes (left and inner padding) */
    mask[4 * L + t] = (t % 3 != 0) && t > 2;
  for (int causal = 0; causal <= 1; causal++) {
    mb_attn_desc d = {.batch = B, .seqlen = L, .heads = 3, .head_dim = 6, .key_mask = mask, .causal = causal};
    attn_case c;
    case_init(&c, &d, 11);
    check_all_tiles(&c);
    /* padded keys contribute exactly nothing: changing them changes no output */
    double *out1 = tu_alloc(c.n), *out2 = tu_alloc(c.n), *lse = tu_alloc(c.tokens * 3);
    assert_int_equal(mb_cpu_attn_fwd_f64(&d, c.q, c.k, c.v, out1, lse, NULL, 0), MB_OK);
    const size_t row = 3 * 6;
    for (size_t t = 0; t < c.tokens; t++)
      if (!mask[t])
        for (size_t j = 0; j < row; j++) {
          c.k[t * row + j] += 1e3;
          c.v[t * row + j] -= 1e3;
        }
    assert_int_equal(mb_cpu_attn_fwd_f64(&d, c.q, c.k, c.v, out2, lse, NULL, 0), MB_OK);
    assert_memory_equal(out1, out2, c.n * sizeof(double));
    /* the same in f32 (its exp must give exactly 0 for masked scores) */
    float *qf = tu_tof(c.q, c.n), *kf = tu_tof(c.k, c.n), *vf = tu_tof(c.v, c.n);
    float *o1 = tu_allocf(c.n), *o2 = tu_allocf(c.n), *lf = tu_allocf(c.tokens * 3);
    assert_int_equal(mb_cpu_attn_fwd_f32(&d, qf, kf, vf, o1, lf, NULL, 0), MB_OK);
    for (size_t t = 0; t < c.tokens; t++)
      if (!mask[t])
        for (size_t j = 0; j < row; j++) { /* a weight of even 1e-30 on these would show */
          kf[t * row + j] *= 3;
          vf[t * row + j] *= 1e30f;
        }
    assert_int_equal(mb_cpu_attn_fwd_f32(&d, qf, kf, vf, o2, lf, NULL, 0), MB_OK);
    assert_memory_equal(o1, o2, c.n * sizeof(float));
    float *fb[] = {qf, kf, vf, o1, o2, lf};
    for (size_t i = 0; i < 6; i++)
      mb_host_free(fb[i]);
    mb_host_free(out1);
    mb_host_free(out2);
    mb_host_free(lse);
    case_free(&c);
  }
}

static void test_varlen(void **state) {
  (void)state;
  /* sequences of 5, 1, 0, 11, 3 tokens, then 3 tokens of budget padding */
  const int32_t cu[] = {0, 5, 6, 6, 17, 20};
  for (int causal = 0; causal <= 1; causal++) {
    mb_attn_desc d = {.batch = 1, .seqlen = 23, .heads = 2, .head_dim = 5, .cu_seqlens = cu, .nseq = 5,
                      .causal = causal};
    attn_case c;
    case_init(&c, &d, 21);
    check_all_tiles(&c);
    /* attention never crosses a boundary: perturbing sequence 3 (tokens
     * 6..16) leaves every other token's output unchanged */
    double *out1 = tu_alloc(c.n), *out2 = tu_alloc(c.n), *lse = tu_alloc(c.tokens * 2);
    assert_int_equal(mb_cpu_attn_fwd_f64(&d, c.q, c.k, c.v, out1, lse, NULL, 0), MB_OK);
    for (size_t i = 6 * 10; i < 17 * 10; i++) {
      c.k[i] += 1;
      c.v[i] += 1;
    }
    assert_int_equal(mb_cpu_attn_fwd_f64(&d, c.q, c.k, c.v, out2, lse, NULL, 0), MB_OK);
    assert_memory_equal(out1, out2, 6 * 10 * sizeof(double));
    assert_memory_equal(out1 + 17 * 10, out2 + 17 * 10, 6 * 10 * sizeof(double));
    mb_host_free(out1);
    mb_host_free(out2);
    mb_host_free(lse);
    case_free(&c);
  }
  /* no sequences at all: everything is padding */
  const int32_t cu0[] = {0};
  mb_attn_desc d = {.batch = 1, .seqlen = 4, .heads = 1, .head_dim = 2, .cu_seqlens = cu0, .nseq = 0};
  attn_case c;
  case_init(&c, &d, 5);
  check_all_tiles(&c);
  case_free(&c);
}

/* The same sequences, padded (right padding + key mask) and packed (varlen),
 * give the same outputs and lse for every real token. */
static void test_padded_equals_packed(void **state) {
  (void)state;
  enum { B = 4, L = 11, H = 2, Dh = 4, ROW = H * Dh };
  const int lens[B] = {5, 1, 11, 7};
  int32_t mask[B * L], cu[B + 1] = {0};
  for (int b = 0; b < B; b++) {
    cu[b + 1] = cu[b] + lens[b];
    for (int t = 0; t < L; t++)
      mask[b * L + t] = t < lens[b];
  }
  for (int causal = 0; causal <= 1; causal++) {
    mb_attn_desc dp = {.batch = B, .seqlen = L, .heads = H, .head_dim = Dh, .key_mask = mask, .causal = causal,
                       .block_q = 4, .block_k = 3};
    mb_attn_desc dv = {.batch = 1, .seqlen = cu[B] + 3, .heads = H, .head_dim = Dh, .cu_seqlens = cu, .nseq = B,
                       .causal = causal, .block_q = 4, .block_k = 3};
    attn_case cp;
    case_init(&cp, &dp, 31);
    const size_t T = (size_t)dv.seqlen;
    double *q = tu_alloc(T * ROW), *k = tu_alloc(T * ROW), *v = tu_alloc(T * ROW);
    for (int b = 0; b < B; b++) { /* pack the real tokens */
      memcpy(q + (size_t)cu[b] * ROW, cp.q + (size_t)b * L * ROW, (size_t)lens[b] * ROW * sizeof(double));
      memcpy(k + (size_t)cu[b] * ROW, cp.k + (size_t)b * L * ROW, (size_t)lens[b] * ROW * sizeof(double));
      memcpy(v + (size_t)cu[b] * ROW, cp.v + (size_t)b * L * ROW, (size_t)lens[b] * ROW * sizeof(double));
    }
    double *op = tu_alloc(cp.n), *lp = tu_alloc(cp.tokens * H), *ov = tu_alloc(T * ROW), *lv = tu_alloc(T * H);
    assert_int_equal(mb_cpu_attn_fwd_f64(&dp, cp.q, cp.k, cp.v, op, lp, NULL, 0), MB_OK);
    assert_int_equal(mb_cpu_attn_fwd_f64(&dv, q, k, v, ov, lv, NULL, 0), MB_OK);
    for (int b = 0; b < B; b++)
      for (int t = 0; t < lens[b]; t++) {
        for (int j = 0; j < ROW; j++)
          assert_true(fabs(op[((size_t)b * L + t) * ROW + j] - ov[((size_t)cu[b] + t) * ROW + j]) <= 1e-14);
        for (int h = 0; h < H; h++)
          assert_true(fabs(lp[((size_t)b * L + t) * H + h] - lv[((size_t)cu[b] + t) * H + h]) <= 1e-14);
      }
    mb_host_free(q);
    mb_host_free(k);
    mb_host_free(v);
    mb_host_free(op);
    mb_host_free(lp);
    mb_host_free(ov);
    mb_host_free(lv);
    case_free(&cp);
  }
}

/* The f32 kernel agrees with the f64 reference to float rounding. */
static void test_f32(void **state) {
  (void)state;
  const int32_t cu[] = {0, 40, 41, 90};
  int32_t mask[3 * 50];
  for (int i = 0; i < 150; i++)
    mask[i] = i % 50 < 50 - 7 * (i / 50);
  mb_attn_desc ds[] = {
      {.batch = 3, .seqlen = 50, .heads = 2, .head_dim = 16, .key_mask = mask},
      {.batch = 1, .seqlen = 95, .heads = 3, .head_dim = 8, .cu_seqlens = cu, .nseq = 3, .causal = 1},
      {.batch = 2, .seqlen = 200, .heads = 1, .head_dim = 64},
  };
  for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++) {
    attn_case c;
    case_init(&c, &ds[i], 41 + i);
    float *q = tu_tof(c.q, c.n), *k = tu_tof(c.k, c.n), *v = tu_tof(c.v, c.n);
    float *out = tu_allocf(c.n), *lse = tu_allocf(c.tokens * ds[i].heads);
    double *ref = tu_alloc(c.n), *P = tu_alloc(ref_attn_P_numel(&ds[i]) + 1);
    assert_int_equal(mb_cpu_attn_fwd_f32(&ds[i], q, k, v, out, lse, NULL, 0), MB_OK);
    assert_int_equal(ref_attn_fwd_f64(&ds[i], c.q, c.k, c.v, ref, P), MB_OK);
    const double e = tu_normdiff_f(out, ref, c.n);
    if (e > worst_f32)
      worst_f32 = e;
    if (!(e <= TOL_F32))
      fail_msg("f32 case %zu: error %.3g > %.1g", i, e, TOL_F32);
    mb_host_free(q);
    mb_host_free(k);
    mb_host_free(v);
    mb_host_free(out);
    mb_host_free(lse);
    mb_host_free(ref);
    mb_host_free(P);
    case_free(&c);
  }
}

/* Memory: the forward's workspace does not grow with L at all, the
 * backward's grows by exactly tokens * H values (D = rowsum(dO * O)); and a
 * forward at L = 2048 that allocates its own workspace raises the tracked
 * peak by that workspace only — far below one L x L matrix. */
static void test_memory_is_linear(void **state) {
  (void)state;
  mb_attn_desc d = {.batch = 1, .seqlen = 16, .heads = 2, .head_dim = 32, .nthreads = 2};
  const size_t f16 = mb_cpu_attn_fwd_workspace(&d, 4), b16 = mb_cpu_attn_bwd_workspace(&d, 4);
  d.seqlen = 4096;
  const size_t f4k = mb_cpu_attn_fwd_workspace(&d, 4), b4k = mb_cpu_attn_bwd_workspace(&d, 4);
  assert_true(f16 > 0);
  assert_int_equal(f16, f4k);
  assert_int_equal(b4k - b16, mb_align_up(4096 * 2 * 4, MB_ALIGN) - mb_align_up(16 * 2 * 4, MB_ALIGN));
  assert_true(f4k < (size_t)4096 * 4096 * 4 / 64); /* both far below one L x L matrix */
  assert_true(b4k < (size_t)4096 * 4096 * 4 / 64);

  enum { L = 2048, H = 1, Dh = 16 };
  mb_attn_desc dl = {.batch = 1, .seqlen = L, .heads = H, .head_dim = Dh, .nthreads = 2};
  float *q = tu_allocf(L * Dh), *k = tu_allocf(L * Dh), *v = tu_allocf(L * Dh), *o = tu_allocf(L * Dh);
  float *lse = tu_allocf(L * H), *dq = tu_allocf(L * Dh), *dk = tu_allocf(L * Dh), *dv = tu_allocf(L * Dh);
  uint64_t s = 3;
  for (int i = 0; i < L * Dh; i++) {
    q[i] = (float)tu_normal(&s);
    k[i] = (float)tu_normal(&s);
    v[i] = (float)tu_normal(&s);
  }
  mb_host_mem_reset_peak();
  const size_t before = mb_host_mem_stats().current;
  assert_int_equal(mb_cpu_attn_fwd_f32(&dl, q, k, v, o, lse, NULL, 0), MB_OK);
  const size_t fwd_extra = mb_host_mem_stats().peak - before;
  mb_host_mem_reset_peak();
  assert_int_equal(mb_cpu_attn_bwd_f32(&dl, q, k, v, o, lse, o, dq, dk, dv, NULL, 0), MB_OK);
  const size_t bwd_extra = mb_host_mem_stats().peak - before;
  print_message("attention memory at L=%d: forward extra %zu bytes, backward extra %zu bytes (one L x L f32 "
                "matrix: %zu)\n",
                L, fwd_extra, bwd_extra, (size_t)L * L * 4);
  assert_true(fwd_extra <= mb_cpu_attn_fwd_workspace(&dl, 4));
  assert_true(bwd_extra <= mb_cpu_attn_bwd_workspace(&dl, 4));
  assert_true(fwd_extra < (size_t)L * L * 4 / 64);
  assert_true(bwd_extra < (size_t)L * L * 4 / 64);
  /* a caller's workspace is used as given: nothing is allocated */
  void *ws = mb_host_malloc(mb_cpu_attn_fwd_workspace(&dl, 4));
  mb_host_mem_reset_peak();
  const size_t before2 = mb_host_mem_stats().current;
  assert_int_equal(mb_cpu_attn_fwd_f32(&dl, q, k, v, o, lse, ws, mb_cpu_attn_fwd_workspace(&dl, 4)), MB_OK);
  assert_int_equal(mb_host_mem_stats().peak, before2);
  mb_host_free(ws);
  float *bufs[] = {q, k, v, o, lse, dq, dk, dv};
  for (size_t i = 0; i < 8; i++)
    mb_host_free(bufs[i]);
}

static void test_bad_input(void **state) {
  (void)state;
  double x[64] = {0}, o[64], l[16];
  const int32_t bad_cu[] = {0, 5, 3};
  mb_attn_desc d = {.batch = 1, .seqlen = 8, .heads = 1, .head_dim = 2, .cu_seqlens = bad_cu, .nseq = 2};
  assert_int_equal(mb_cpu_attn_fwd_f64(&d, x, x, x, o, l, NULL, 0), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "cu_seqlens[2]"));
  const int32_t long_cu[] = {0, 9};
  d.cu_seqlens = long_cu;
  d.nseq = 1;
  assert_int_equal(mb_cpu_attn_fwd_f64(&d, x, x, x, o, l, NULL, 0), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "token budget"));
  d.batch = 2;
  assert_int_equal(mb_cpu_attn_fwd_f64(&d, x, x, x, o, l, NULL, 0), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "batch = 1"));
  mb_attn_desc e = {.batch = 1, .seqlen = 8, .heads = 0, .head_dim = 2};
  assert_int_equal(mb_cpu_attn_fwd_f64(&e, x, x, x, o, l, NULL, 0), MB_EINVAL);
  e.heads = 1;
  char small[64] __attribute__((aligned(64)));
  assert_int_equal(mb_cpu_attn_fwd_f64(&e, x, x, x, o, l, small, sizeof small), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "workspace"));
  assert_int_equal(mb_cpu_attn_fwd_f64(&e, x, x, x, NULL, l, NULL, 0), MB_EINVAL);
}

/* A query row of NaN: every score of that row is NaN, which the row max
 * skips, so the row used to read as one that saw no key (out 0, lse +inf:
 * a silently wrong result). Its out, lse and dq are NaN, as in PyTorch;
 * every other row's out and lse keep the bits they have without the NaN.
 * Padded, several tiles of 16, with and without causal; f64 and f32. */
static void test_nan_query(void **state) {
  (void)state;
  enum { B = 2, L = 70, H = 2, Dh = 8, ROW = H * Dh };
  int32_t mask[B * L];
  for (int i = 0; i < B * L; i++)
    mask[i] = i % L < L - 11 * (i / L);
  const size_t nan_tok = 20, nan_head = 1; /* batch 0, position 20 */
  for (int causal = 0; causal <= 1; causal++)
    for (int f32 = 0; f32 <= 1; f32++) {
      mb_attn_desc d = {.batch = B, .seqlen = L, .heads = H, .head_dim = Dh, .key_mask = mask, .causal = causal,
                        .block_q = 16, .block_k = 16};
      attn_case c;
      case_init(&c, &d, 77 + causal);
      double *out[2], *lse[2], *dq = tu_alloc(c.n), *dk = tu_alloc(c.n), *dv = tu_alloc(c.n);
      for (int run = 0; run < 2; run++) { /* run 1 with the NaN row */
        if (run)
          for (int e = 0; e < Dh; e++)
            c.q[nan_tok * ROW + nan_head * Dh + e] = NAN;
        out[run] = tu_alloc(c.n);
        lse[run] = tu_alloc(c.tokens * H);
        if (f32) {
          float *q = tu_tof(c.q, c.n), *k = tu_tof(c.k, c.n), *v = tu_tof(c.v, c.n);
          float *o = tu_allocf(c.n), *l = tu_allocf(c.tokens * H);
          assert_int_equal(mb_cpu_attn_fwd_f32(&d, q, k, v, o, l, NULL, 0), MB_OK);
          for (size_t i = 0; i < c.n; i++)
            out[run][i] = o[i];
          for (size_t i = 0; i < c.tokens * H; i++)
            lse[run][i] = l[i];
          float *g[3] = {tu_allocf(c.n), tu_allocf(c.n), tu_allocf(c.n)};
          assert_int_equal(mb_cpu_attn_bwd_f32(&d, q, k, v, o, l, v, g[0], g[1], g[2], NULL, 0), MB_OK);
          for (size_t i = 0; i < c.n; i++)
            dq[i] = g[0][i];
          float *bufs[] = {q, k, v, o, l, g[0], g[1], g[2]};
          for (size_t i = 0; i < 8; i++)
            mb_host_free(bufs[i]);
        } else {
          assert_int_equal(mb_cpu_attn_fwd_f64(&d, c.q, c.k, c.v, out[run], lse[run], NULL, 0), MB_OK);
          assert_int_equal(
              mb_cpu_attn_bwd_f64(&d, c.q, c.k, c.v, out[run], lse[run], c.v, dq, dk, dv, NULL, 0), MB_OK);
        }
      }
      size_t nan_out = 0, changed = 0;
      for (size_t t = 0; t < c.tokens; t++)
        for (size_t h = 0; h < H; h++) {
          const int is_nan_row = t == nan_tok && h == nan_head;
          for (size_t e = 0; e < Dh; e++) {
            const double x = out[1][t * ROW + h * Dh + e];
            if (is_nan_row)
              nan_out += isnan(x);
            else
              changed += memcmp(&x, &out[0][t * ROW + h * Dh + e], sizeof x) != 0;
          }
          if (is_nan_row) {
            assert_true(isnan(lse[1][t * H + h]));
            assert_true(isnan(dq[t * ROW + h * Dh]));
          } else {
            changed += memcmp(&lse[1][t * H + h], &lse[0][t * H + h], sizeof(double)) != 0;
          }
        }
      if (nan_out != Dh || changed)
        fail_msg("causal %d %s: %zu of %d values of the NaN row are NaN, %zu other values changed", causal,
                 f32 ? "f32" : "f64", nan_out, Dh, changed);
      double *bufs[] = {out[0], out[1], lse[0], lse[1], dq, dk, dv};
      for (size_t i = 0; i < 7; i++)
        mb_host_free(bufs[i]);
      case_free(&c);
    }
}

static int report(void **state) {
  (void)state;
  print_message("attention_reference: max normwise error f64 %.3g (bound %.0g), f32 %.3g (bound %.0g)\n", worst_f64,
                TOL_F64, worst_f32, TOL_F32);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shapes),           cmocka_unit_test(test_key_padding),
      cmocka_unit_test(test_varlen),           cmocka_unit_test(test_padded_equals_packed),
      cmocka_unit_test(test_f32),              cmocka_unit_test(test_memory_is_linear),
      cmocka_unit_test(test_bad_input),        cmocka_unit_test(test_nan_query),
  };
  return cmocka_run_group_tests(tests, NULL, report);
}
