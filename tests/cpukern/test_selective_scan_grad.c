/* test_selective_scan_grad.c (ctest: grad_selective_scan): the chunked scan
 * backward checked by float64 central differences of a random projection of
 * y for every input (u, delta, A_log, B, C, D, z, delta_bias), padded and
 * varlen, several chunk sizes, with and without the optional inputs; then
 * against the all-states reference backward on larger shapes for chunk 1, 7,
 * L, > L and the default (the chunk size must not change the gradients), and
 * f32 against f64. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "kernels/cpu/selective_scan.h"
#include "tests/cpukern/cpukern_ref.h"
#include "tests/cpukern/scan_case.h"

#define TOL_FD 1e-6
#define TOL_REF 1e-12
#define TOL_F32 1e-5

static double worst_fd = 0, worst_ref = 0, worst_f32 = 0;

typedef struct {
  scan_case *c;
  mb_scan_in_f64 in;
  double *y, *states;
} fwd_ctx;

static void run_forward(void *p) {
  fwd_ctx *f = p;
  if (mb_cpu_scan_fwd_f64(&f->c->d, &f->in, f->y, f->states, NULL, 0) != MB_OK)
    fail_msg("forward failed: %s", mb_error_message());
}

/* Set delta so that raw = delta + bias spans -2 .. 25 (both branches of the
 * softplus threshold), keeping clear of the kink at 20 where a central
 * difference would straddle it. */
static void wide_deltas(scan_case *c, uint64_t *s) {
  const int D = c->d.dim;
  for (size_t i = 0; i < c->nx; i++) {
    double raw;
    do
      raw = -2 + 27 * tu_uniform(s);
    while (fabs(raw - 20) < 0.2);
    c->delta[i] = raw - c->bias[i % D];
  }
}

/* drop: bit 1 drops D, bit 2 drops z, bit 4 drops delta_bias; bit 8 draws
 * deltas across the softplus threshold */
static void gradcheck_case(const mb_scan_desc *d, int drop, uint64_t seed, const char *name) {
  scan_case c;
  scan_case_init(&c, d, seed);
  uint64_t s = seed * 7 + 1;
  if (drop & 8)
    wide_deltas(&c, &s);
  if (!d->delta_softplus) /* dt is used as given: keep it a positive step, as softplus would */
    for (size_t i = 0; i < c.nx; i++)
      c.delta[i] = 0.1 + 0.3 * fabs(c.delta[i]);
  fwd_ctx f = {.c = &c, .in = scan_case_in(&c)};
  if (drop & 1)
    f.in.D = NULL;
  if (drop & 2)
    f.in.z = NULL;
  if (drop & 4)
    f.in.delta_bias = NULL;
  f.y = tu_alloc(c.nx);
  f.states = tu_alloc(mb_cpu_scan_states_numel(d) + 1);
  double *proj = tu_alloc(c.nx);
  tu_fill(proj, c.nx, 1.0, &s);
  run_forward(&f);
  scan_grads g;
  scan_grads_init(&g, &c);
  mb_scan_grad_f64 out = scan_grads_out(&g);
  if (!f.in.D)
    out.dD = NULL;
  if (!f.in.z)
    out.dz = NULL;
  if (!f.in.delta_bias)
    out.ddelta_bias = NULL;
  assert_int_equal(mb_cpu_scan_bwd_f64(d, &f.in, f.states, proj, &out, NULL, 0), MB_OK);
  tu_gradfn fn = {.forward = run_forward, .ctx = &f, .out = f.y, .proj = proj, .out_n = c.nx};
  const size_t DN = (size_t)d->dim * d->dstate, D = (size_t)d->dim;
  double e[8] = {0};
  e[0] = tu_gradcheck(&fn, c.u, g.du, c.nx, 300, &s);
  e[1] = tu_gradcheck(&fn, c.delta, g.ddelta, c.nx, 300, &s);
  e[2] = tu_gradcheck(&fn, c.A_log, g.dA_log, DN, 300, &s);
  e[3] = tu_gradcheck(&fn, c.B, g.dB, c.nbc, 300, &s);
  e[4] = tu_gradcheck(&fn, c.C, g.dC, c.nbc, 300, &s);
  if (f.in.D)
    e[5] = tu_gradcheck(&fn, c.D, g.dD, D, 300, &s);
  if (f.in.z)
    e[6] = tu_gradcheck(&fn, c.z, g.dz, c.nx, 300, &s);
  if (f.in.delta_bias)
    e[7] = tu_gradcheck(&fn, c.bias, g.dbias, D, 300, &s);
  print_message("grad_selective_scan %-26s du %.1e ddelta %.1e dA_log %.1e dB %.1e dC %.1e dD %.1e dz %.1e "
                "dbias %.1e\n",
                name, e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]);
  double w = 0;
  for (int i = 0; i < 8; i++)
    w = fmax(w, e[i]);
  if (w > worst_fd)
    worst_fd = w;
  if (!(w <= TOL_FD))
    fail_msg("%s: finite-difference error %.3g > %.0g", name, w, TOL_FD);
  scan_grads_free(&g);
  mb_host_free(f.y);
  mb_host_free(f.states);
  mb_host_free(proj);
  scan_case_free(&c);
}

static void test_fd_padded(void **state) {
  (void)state;
  mb_scan_desc d = {.batch = 2, .seqlen = 9, .dim = 3, .dstate = 2, .chunk = 4, .delta_softplus = 1};
  gradcheck_case(&d, 0, 1, "padded chunk 4");
  d.chunk = 1;
  gradcheck_case(&d, 0, 2, "padded chunk 1");
  d.chunk = 0;
  gradcheck_case(&d, 0, 3, "padded chunk default");
  mb_scan_desc one = {.batch = 3, .seqlen = 1, .dim = 2, .dstate = 3, .delta_softplus = 1};
  gradcheck_case(&one, 0, 4, "L=1");
  mb_scan_desc wide = {.batch = 1, .seqlen = 6, .dim = 11, .dstate = 16, .chunk = 5, .delta_softplus = 1};
  gradcheck_case(&wide, 0, 5, "D=11 N=16 (two blocks)");
}

static void test_fd_varlen(void **state) {
  (void)state;
  const int32_t cu[] = {0, 3, 4, 4, 9};
  mb_scan_desc d = {.batch = 1, .seqlen = 11, .dim = 3, .dstate = 2, .chunk = 3, .delta_softplus = 1,
                    .cu_seqlens = cu, .nseq = 4};
  gradcheck_case(&d, 0, 6, "varlen chunk 3");
  d.chunk = 2;
  gradcheck_case(&d, 0, 7, "varlen chunk 2");
}

static void test_fd_options(void **state) {
  (void)state;
  mb_scan_desc d = {.batch = 2, .seqlen = 7, .dim = 3, .dstate = 2, .chunk = 3, .delta_softplus = 1};
  gradcheck_case(&d, 7, 8, "no D, z, bias");
  gradcheck_case(&d, 2, 9, "no z");
  gradcheck_case(&d, 8, 11, "deltas -2..25 (threshold)");
  d.delta_softplus = 0;
  gradcheck_case(&d, 0, 10, "no softplus");
}

/* Fused backward == reference backward for any chunk size; f32 close. */
static void test_vs_reference(void **state) {
  (void)state;
  const int32_t cu[] = {0, 60, 61, 61, 140};
  const mb_scan_desc ds[] = {
      {.batch = 2, .seqlen = 75, .dim = 19, .dstate = 16, .delta_softplus = 1},
      {.batch = 1, .seqlen = 150, .dim = 13, .dstate = 8, .delta_softplus = 1, .cu_seqlens = cu, .nseq = 4},
  };
  for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++) {
    scan_case c;
    scan_case_init(&c, &ds[i], 20 + i);
    if (i == 1) { /* raw deltas across the threshold, some in (19, 20] */
      uint64_t w = 3;
      wide_deltas(&c, &w);
      for (size_t j = 0; j < c.nx; j += 5)
        c.delta[j] = 19.5 - c.bias[j % ds[i].dim];
    }
    const mb_scan_in_f64 in = scan_case_in(&c);
    double *dy = tu_alloc(c.nx), *ry = tu_alloc(c.nx), *hall = tu_alloc(ref_scan_states_numel(&ds[i]));
    uint64_t s = 99 + i;
    tu_fill(dy, c.nx, 1.0, &s);
    scan_grads rg;
    scan_grads_init(&rg, &c);
    mb_scan_grad_f64 rout = scan_grads_out(&rg);
    assert_int_equal(ref_scan_fwd_f64(&ds[i], &in, ry, hall), MB_OK);
    assert_int_equal(ref_scan_bwd_f64(&ds[i], &in, hall, dy, &rout), MB_OK);
    const int L = ds[i].seqlen, chunks[] = {1, 7, L, L + 3, 0, 64};
    for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
      mb_scan_desc d = ds[i];
      d.chunk = chunks[k];
      double *y = tu_alloc(c.nx), *st = tu_alloc(mb_cpu_scan_states_numel(&d));
      scan_grads g;
      scan_grads_init(&g, &c);
      mb_scan_grad_f64 out = scan_grads_out(&g);
      assert_int_equal(mb_cpu_scan_fwd_f64(&d, &in, y, st, NULL, 0), MB_OK);
      assert_int_equal(mb_cpu_scan_bwd_f64(&d, &in, st, dy, &out, NULL, 0), MB_OK);
      const double e = scan_grads_diff(&g, &rg, &c);
      if (e > worst_ref)
        worst_ref = e;
      if (!(e <= TOL_REF))
        fail_msg("case %zu chunk %d: backward differs from reference by %.3g", i, chunks[k], e);
      scan_grads_free(&g);
      mb_host_free(y);
      mb_host_free(st);
    }
    /* f32 */
    const size_t DN = (size_t)ds[i].dim * ds[i].dstate, Dd = (size_t)ds[i].dim;
    mb_scan_in_f32 inf = {.u = tu_tof(c.u, c.nx), .delta = tu_tof(c.delta, c.nx), .A_log = tu_tof(c.A_log, DN),
                          .B = tu_tof(c.B, c.nbc), .C = tu_tof(c.C, c.nbc), .D = tu_tof(c.D, Dd),
                          .z = tu_tof(c.z, c.nx), .delta_bias = tu_tof(c.bias, Dd)};
    float *dyf = tu_tof(dy, c.nx), *yf = tu_allocf(c.nx), *stf = tu_allocf(mb_cpu_scan_states_numel(&ds[i]));
    mb_scan_grad_f32 gf = {.du = tu_allocf(c.nx), .ddelta = tu_allocf(c.nx), .dA_log = tu_allocf(DN),
                           .dB = tu_allocf(c.nbc), .dC = tu_allocf(c.nbc), .dD = tu_allocf(Dd),
                           .dz = tu_allocf(c.nx), .ddelta_bias = tu_allocf(Dd)};
    assert_int_equal(mb_cpu_scan_fwd_f32(&ds[i], &inf, yf, stf, NULL, 0), MB_OK);
    assert_int_equal(mb_cpu_scan_bwd_f32(&ds[i], &inf, stf, dyf, &gf, NULL, 0), MB_OK);
    double ef = tu_normdiff_f(gf.du, rg.du, c.nx);
    ef = fmax(ef, tu_normdiff_f(gf.ddelta, rg.ddelta, c.nx));
    ef = fmax(ef, tu_normdiff_f(gf.dz, rg.dz, c.nx));
    ef = fmax(ef, tu_normdiff_f(gf.dB, rg.dB, c.nbc));
    ef = fmax(ef, tu_normdiff_f(gf.dC, rg.dC, c.nbc));
    ef = fmax(ef, tu_normdiff_f(gf.dA_log, rg.dA_log, DN));
    ef = fmax(ef, tu_normdiff_f(gf.dD, rg.dD, Dd));
    ef = fmax(ef, tu_normdiff_f(gf.ddelta_bias, rg.dbias, Dd));
    if (ef > worst_f32)
      worst_f32 = ef;
    if (!(ef <= TOL_F32))
      fail_msg("case %zu: f32 backward differs from f64 by %.3g", i, ef);
    const void *fb[] = {inf.u, inf.delta, inf.A_log, inf.B, inf.C, inf.D, inf.z, inf.delta_bias, dyf, yf, stf,
                        gf.du, gf.ddelta, gf.dA_log, gf.dB, gf.dC, gf.dD, gf.dz, gf.ddelta_bias};
    for (size_t j = 0; j < sizeof fb / sizeof fb[0]; j++)
      mb_host_free((void *)fb[j]);
    scan_grads_free(&rg);
    mb_host_free(dy);
    mb_host_free(ry);
    mb_host_free(hall);
    scan_case_free(&c);
  }
}

/* Fill every gradient with NaN: whatever the backward leaves unwritten shows. */
static void poison_grads(scan_grads *g, const scan_case *c) {
  const size_t DN = (size_t)c->d.dim * c->d.dstate, D = (size_t)c->d.dim;
  double *bufs[] = {g->du, g->ddelta, g->dz, g->dB, g->dC, g->dA_log, g->dD, g->dbias};
  const size_t lens[] = {c->nx, c->nx, c->nx, c->nbc, c->nbc, DN, D, D};
  for (int i = 0; i < 8; i++)
    for (size_t j = 0; j < lens[i]; j++)
      bufs[i][j] = NAN;
}

/* The backward result must not depend on how many threads ran it beyond
 * rounding. Threads take contiguous runs of (row, channel block) items, so
 * rows are whole to one thread or split between several (dB/dC then summed
 * from partials): batch sizes and thread counts that give both, 1 to 5
 * threads per row, and a team larger than the work. */
static void test_threads(void **state) {
  (void)state;
  const int shapes[][3] = {{2, 33, 16}, {1, 64, 16}, {3, 40, 7}, {5, 33, 40}, {4, 100, 13}};
  const int teams[] = {2, 3, 4, 5, 7, 16};
  double worst = 0;
  for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
    mb_scan_desc d = {.batch = shapes[k][0], .seqlen = 40, .dim = shapes[k][1], .dstate = 4, .chunk = shapes[k][2],
                      .delta_softplus = 1};
    scan_case c;
    scan_case_init(&c, &d, 123 + k);
    const mb_scan_in_f64 in = scan_case_in(&c);
    double *dy = tu_alloc(c.nx), *y = tu_alloc(c.nx), *st = tu_alloc(mb_cpu_scan_states_numel(&d));
    uint64_t s = 5 + k;
    tu_fill(dy, c.nx, 1.0, &s);
    scan_grads g1, gn;
    scan_grads_init(&g1, &c);
    scan_grads_init(&gn, &c);
    mb_scan_grad_f64 o1 = scan_grads_out(&g1), on = scan_grads_out(&gn);
    d.nthreads = 1;
    assert_int_equal(mb_cpu_scan_fwd_f64(&d, &in, y, st, NULL, 0), MB_OK);
    poison_grads(&g1, &c);
    assert_int_equal(mb_cpu_scan_bwd_f64(&d, &in, st, dy, &o1, NULL, 0), MB_OK);
    for (size_t t = 0; t < sizeof teams / sizeof teams[0]; t++) {
      d.nthreads = teams[t];
      poison_grads(&gn, &c);
      assert_int_equal(mb_cpu_scan_bwd_f64(&d, &in, st, dy, &on, NULL, 0), MB_OK);
      const double e = scan_grads_diff(&gn, &g1, &c);
      if (!(e <= 1e-14))
        fail_msg("B=%d D=%d chunk %d, %d threads: differs from 1 thread by %.3g", d.batch, d.dim, d.chunk,
                 teams[t], e);
      worst = fmax(worst, e);
      /* dB and dC not asked for: the rest unchanged, nothing written there */
      mb_scan_grad_f64 part = on;
      part.dB = part.dC = NULL;
      poison_grads(&gn, &c);
      assert_int_equal(mb_cpu_scan_bwd_f64(&d, &in, st, dy, &part, NULL, 0), MB_OK);
      assert_true(tu_normdiff(gn.du, g1.du, c.nx) <= 1e-14);
      assert_true(tu_normdiff(gn.dA_log, g1.dA_log, (size_t)d.dim * d.dstate) <= 1e-14);
      assert_true(isnan(gn.dB[0]) && isnan(gn.dC[c.nbc - 1]));
    }
    scan_grads_free(&g1);
    scan_grads_free(&gn);
    mb_host_free(dy);
    mb_host_free(y);
    mb_host_free(st);
    scan_case_free(&c);
  }
  print_message("grad_selective_scan: 2..16 threads against 1, worst difference %.3g (bound 1e-14)\n", worst);
}

static int report(void **state) {
  (void)state;
  print_message("grad_selective_scan: max finite-difference error %.3g (bound %.0g); fused vs reference backward "
                "f64 %.3g (bound %.0g); f32 %.3g (bound %.0g)\n",
                worst_fd, TOL_FD, worst_ref, TOL_REF, worst_f32, TOL_F32);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fd_padded), cmocka_unit_test(test_fd_varlen), cmocka_unit_test(test_fd_options),
      cmocka_unit_test(test_vs_reference), cmocka_unit_test(test_threads),
  };
  return cmocka_run_group_tests(tests, NULL, report);
}
