/* test_attention_grad.c (ctest: grad_attention): the fused attention
 * backward checked by float64 central differences of a random projection of
 * the output, for q, k and v, with padding, varlen (lengths 1 and 0, budget
 * padding) and causal masks and tiles smaller than the sequences; then
 * against the naive backward on larger shapes for several tile sizes, and f32
 * against f64. Padded rows must get exactly zero gradient. */
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

#define TOL_FD 1e-6   /* finite differences, per-entry relative (see tu_gradcheck) */
#define TOL_REF 1e-12 /* fused vs naive backward, float64, normwise */
#define TOL_F32 1e-5  /* f32 fused vs f64 naive, normwise */

static double worst_fd = 0, worst_ref = 0, worst_f32 = 0;

typedef struct {
  mb_attn_desc d;
  size_t n, tokens;
  double *q, *k, *v, *out, *lse;
} fwd_ctx;

static void run_forward(void *p) {
  fwd_ctx *c = p;
  if (mb_cpu_attn_fwd_f64(&c->d, c->q, c->k, c->v, c->out, c->lse, NULL, 0) != MB_OK)
    fail_msg("forward failed: %s", mb_error_message());
}

static int is_pad(const mb_attn_desc *d, size_t t) {
  if (d->cu_seqlens)
    return (int)t >= d->cu_seqlens[d->nseq];
  return d->key_mask && !d->key_mask[t];
}

static void gradcheck_case(const mb_attn_desc *d, uint64_t seed, const char *name) {
  fwd_ctx c = {.d = *d};
  c.tokens = (size_t)d->batch * d->seqlen;
  c.n = c.tokens * d->heads * d->head_dim;
  c.q = tu_alloc(c.n);
  c.k = tu_alloc(c.n);
  c.v = tu_alloc(c.n);
  c.out = tu_alloc(c.n);
  c.lse = tu_alloc(c.tokens * d->heads);
  double *proj = tu_alloc(c.n), *dq = tu_alloc(c.n), *dk = tu_alloc(c.n), *dv = tu_alloc(c.n);
  uint64_t s = seed;
  tu_fill(c.q, c.n, 1.0, &s);
  tu_fill(c.k, c.n, 1.0, &s);
  tu_fill(c.v, c.n, 1.0, &s);
  tu_fill(proj, c.n, 1.0, &s);
  run_forward(&c);
  assert_int_equal(mb_cpu_attn_bwd_f64(d, c.q, c.k, c.v, c.out, c.lse, proj, dq, dk, dv, NULL, 0), MB_OK);
  tu_gradfn f = {.forward = run_forward, .ctx = &c, .out = c.out, .proj = proj, .out_n = c.n};
  const double eq = tu_gradcheck(&f, c.q, dq, c.n, 400, &s);
  const double ek = tu_gradcheck(&f, c.k, dk, c.n, 400, &s);
  const double ev = tu_gradcheck(&f, c.v, dv, c.n, 400, &s);
  print_message("grad_attention %-28s dq %.2e dk %.2e dv %.2e\n", name, eq, ek, ev);
  const double e = fmax(eq, fmax(ek, ev));
  if (e > worst_fd)
    worst_fd = e;
  if (!(e <= TOL_FD))
    fail_msg("%s: finite-difference error %.3g > %.0g", name, e, TOL_FD);
  /* padded tokens: exactly zero gradient for all three */
  const size_t row = (size_t)d->heads * d->head_dim;
  for (size_t t = 0; t < c.tokens; t++)
    if (is_pad(d, t))
      for (size_t j = 0; j < row; j++)
        assert_true(dq[t * row + j] == 0 && dk[t * row + j] == 0 && dv[t * row + j] == 0);
  double *bufs[] = {c.q, c.k, c.v, c.out, c.lse, proj, dq, dk, dv};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    mb_host_free(bufs[i]);
}

static void test_fd_padded(void **state) {
  (void)state;
  mb_attn_desc d = {.batch = 2, .seqlen = 5, .heads = 2, .head_dim = 3};
  gradcheck_case(&d, 1, "padded");
  d.block_q = 2;
  d.block_k = 3;
  gradcheck_case(&d, 2, "padded tiles 2x3");
  d.causal = 1;
  gradcheck_case(&d, 3, "padded causal tiles 2x3");
  mb_attn_desc one = {.batch = 3, .seqlen = 1, .heads = 1, .head_dim = 4};
  gradcheck_case(&one, 4, "L=1");
}

static void test_fd_key_mask(void **state) {
  (void)state;
  const int32_t mask[3 * 7] = {1, 1, 1, 1, 1, 0, 0, /**/ 1, 0, 0, 0, 0, 0, 0, /**/ 0, 1, 1, 0, 1, 1, 1};
  mb_attn_desc d = {.batch = 3, .seqlen = 7, .heads = 2, .head_dim = 3, .key_mask = mask, .block_q = 3,
                    .block_k = 2};
  gradcheck_case(&d, 5, "key mask");
  d.causal = 1;
  gradcheck_case(&d, 6, "key mask causal");
}

static void test_fd_varlen(void **state) {
  (void)state;
  const int32_t cu[] = {0, 4, 5, 5, 12};
  mb_attn_desc d = {.batch = 1, .seqlen = 14, .heads = 2, .head_dim = 3, .cu_seqlens = cu, .nseq = 4,
                    .block_q = 3, .block_k = 2};
  gradcheck_case(&d, 7, "varlen");
  d.causal = 1;
  gradcheck_case(&d, 8, "varlen causal");
}

/* Fused backward == naive backward (float64) on larger shapes, whatever the
 * tiles; f32 fused backward close to it. */
static void test_vs_naive(void **state) {
  (void)state;
  const int32_t cu[] = {0, 70, 71, 150};
  int32_t mask[2 * 90];
  for (int i = 0; i < 180; i++)
    mask[i] = i < 90 ? 1 : (i - 90) < 53;
  const mb_attn_desc ds[] = {
      {.batch = 2, .seqlen = 90, .heads = 2, .head_dim = 16, .key_mask = mask},
      {.batch = 2, .seqlen = 90, .heads = 2, .head_dim = 16, .key_mask = mask, .causal = 1},
      {.batch = 1, .seqlen = 155, .heads = 3, .head_dim = 8, .cu_seqlens = cu, .nseq = 3},
      {.batch = 1, .seqlen = 155, .heads = 3, .head_dim = 8, .cu_seqlens = cu, .nseq = 3, .causal = 1},
  };
  static const int tiles[][2] = {{0, 0}, {5, 9}, {1, 1}, {64, 16}, {512, 512}};
  for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++) {
    const size_t tokens = (size_t)ds[i].batch * ds[i].seqlen, n = tokens * ds[i].heads * ds[i].head_dim;
    double *q = tu_alloc(n), *k = tu_alloc(n), *v = tu_alloc(n), *dout = tu_alloc(n);
    uint64_t s = 50 + i;
    tu_fill(q, n, 1.0, &s);
    tu_fill(k, n, 1.0, &s);
    tu_fill(v, n, 1.0, &s);
    tu_fill(dout, n, 1.0, &s);
    double *rout = tu_alloc(n), *P = tu_alloc(ref_attn_P_numel(&ds[i]) + 1);
    double *rdq = tu_alloc(n), *rdk = tu_alloc(n), *rdv = tu_alloc(n);
    assert_int_equal(ref_attn_fwd_f64(&ds[i], q, k, v, rout, P), MB_OK);
    assert_int_equal(ref_attn_bwd_f64(&ds[i], q, k, v, P, dout, rdq, rdk, rdv), MB_OK);
    for (size_t tI = 0; tI < sizeof tiles / sizeof tiles[0]; tI++) {
      mb_attn_desc d = ds[i];
      d.block_q = tiles[tI][0];
      d.block_k = tiles[tI][1];
      double *out = tu_alloc(n), *lse = tu_alloc(tokens * d.heads);
      double *dq = tu_alloc(n), *dk = tu_alloc(n), *dv = tu_alloc(n);
      assert_int_equal(mb_cpu_attn_fwd_f64(&d, q, k, v, out, lse, NULL, 0), MB_OK);
      assert_int_equal(mb_cpu_attn_bwd_f64(&d, q, k, v, out, lse, dout, dq, dk, dv, NULL, 0), MB_OK);
      const double e = fmax(tu_normdiff(dq, rdq, n), fmax(tu_normdiff(dk, rdk, n), tu_normdiff(dv, rdv, n)));
      if (e > worst_ref)
        worst_ref = e;
      if (!(e <= TOL_REF))
        fail_msg("case %zu tiles %dx%d: backward differs from naive by %.3g", i, tiles[tI][0], tiles[tI][1], e);
      double *bufs[] = {out, lse, dq, dk, dv};
      for (size_t j = 0; j < 5; j++)
        mb_host_free(bufs[j]);
    }
    /* f32 */
    float *qf = tu_tof(q, n), *kf = tu_tof(k, n), *vf = tu_tof(v, n), *gf = tu_tof(dout, n);
    float *of = tu_allocf(n), *lf = tu_allocf(tokens * ds[i].heads);
    float *dqf = tu_allocf(n), *dkf = tu_allocf(n), *dvf = tu_allocf(n);
    assert_int_equal(mb_cpu_attn_fwd_f32(&ds[i], qf, kf, vf, of, lf, NULL, 0), MB_OK);
    assert_int_equal(mb_cpu_attn_bwd_f32(&ds[i], qf, kf, vf, of, lf, gf, dqf, dkf, dvf, NULL, 0), MB_OK);
    const double ef =
        fmax(tu_normdiff_f(dqf, rdq, n), fmax(tu_normdiff_f(dkf, rdk, n), tu_normdiff_f(dvf, rdv, n)));
    if (ef > worst_f32)
      worst_f32 = ef;
    if (!(ef <= TOL_F32))
      fail_msg("case %zu: f32 backward differs from f64 naive by %.3g", i, ef);
    float *fb[] = {qf, kf, vf, gf, of, lf, dqf, dkf, dvf};
    for (size_t j = 0; j < 9; j++)
      mb_host_free(fb[j]);
    double *bufs[] = {q, k, v, dout, rout, P, rdq, rdk, rdv};
    for (size_t j = 0; j < 9; j++)
      mb_host_free(bufs[j]);
  }
}

/* Every output element is written by one thread in a fixed order: 1 and 3
 * threads give bit-identical results. */
static void test_threads_bitwise(void **state) {
  (void)state;
  const int32_t cu[] = {0, 70, 71, 150};
  mb_attn_desc d = {.batch = 1, .seqlen = 150, .heads = 3, .head_dim = 16, .cu_seqlens = cu, .nseq = 3,
                    .causal = 1, .block_q = 16, .block_k = 16};
  const size_t n = 150 * 3 * 16;
  double *q = tu_alloc(n), *k = tu_alloc(n), *v = tu_alloc(n), *g = tu_alloc(n);
  uint64_t s = 8;
  tu_fill(q, n, 1, &s);
  tu_fill(k, n, 1, &s);
  tu_fill(v, n, 1, &s);
  tu_fill(g, n, 1, &s);
  double *r[2][5];
  for (int run = 0; run < 2; run++) {
    d.nthreads = run ? 3 : 1;
    for (int j = 0; j < 5; j++)
      r[run][j] = tu_alloc(n);
    assert_int_equal(mb_cpu_attn_fwd_f64(&d, q, k, v, r[run][0], r[run][1], NULL, 0), MB_OK);
    assert_int_equal(mb_cpu_attn_bwd_f64(&d, q, k, v, r[run][0], r[run][1], g, r[run][2], r[run][3], r[run][4], NULL, 0),
                     MB_OK);
  }
  assert_memory_equal(r[0][0], r[1][0], n * sizeof(double));
  assert_memory_equal(r[0][1], r[1][1], 150 * 3 * sizeof(double));
  for (int j = 2; j < 5; j++)
    assert_memory_equal(r[0][j], r[1][j], n * sizeof(double));
  for (int run = 0; run < 2; run++)
    for (int j = 0; j < 5; j++)
      mb_host_free(r[run][j]);
  mb_host_free(q);
  mb_host_free(k);
  mb_host_free(v);
  mb_host_free(g);
}

static int report(void **state) {
  (void)state;
  print_message("grad_attention: max finite-difference error %.3g (bound %.0g); fused vs naive backward f64 %.3g "
                "(bound %.0g); f32 %.3g (bound %.0g)\n",
                worst_fd, TOL_FD, worst_ref, TOL_REF, worst_f32, TOL_F32);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fd_padded),
      cmocka_unit_test(test_fd_key_mask),
      cmocka_unit_test(test_fd_varlen),
      cmocka_unit_test(test_vs_naive),
      cmocka_unit_test(test_threads_bitwise),
  };
  return cmocka_run_group_tests(tests, NULL, report);
}
