/* test_selective_scan.c (ctest: selective_scan_reference): the chunked scan
 * forward against the all-states reference (a transcription of mamba_ssm's
 * selective_scan_ref) in float64 on odd shapes and L = 1; the chunk size
 * (1, 7, L, > L, default) changes nothing, and the saved chunk states are
 * the reference's states; varlen resets (a length-1 and an empty sequence,
 * budget padding); padded == packed, forward and backward; optional inputs
 * absent; the softplus threshold; f32 against f64; saved memory is
 * B*ceil(L/chunk)*D*N, not B*L*D*N; bad descriptors are errors. */
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

#define TOL_F64 1e-12
#define TOL_F32 1e-5

static double worst_f64 = 0, worst_f32 = 0;

/* Fused forward with the given chunk vs the reference; also checks the saved
 * states against the reference's state before each chunk. */
static void check_forward(const scan_case *c, const mb_scan_in_f64 *in, int chunk) {
  mb_scan_desc d = c->d;
  d.chunk = chunk;
  const int L = d.seqlen, D = d.dim, N = d.dstate, nch = mb_cpu_scan_nchunks(&d);
  const int K = chunk > 0 ? chunk : 128;
  assert_int_equal(nch, (L + K - 1) / K);
  assert_int_equal(mb_cpu_scan_states_numel(&d), (size_t)d.batch * nch * D * N);
  double *y = tu_alloc(c->nx), *st = tu_alloc(mb_cpu_scan_states_numel(&d) + 1);
  double *ry = tu_alloc(c->nx), *hall = tu_alloc(ref_scan_states_numel(&d) + 1);
  assert_int_equal(mb_cpu_scan_fwd_f64(&d, in, y, st, NULL, 0), MB_OK);
  assert_int_equal(ref_scan_fwd_f64(&d, in, ry, hall), MB_OK);
  const double e = tu_normdiff(y, ry, c->nx);
  if (e > worst_f64)
    worst_f64 = e;
  if (!(e <= TOL_F64))
    fail_msg("B=%d L=%d D=%d N=%d chunk %d: y differs by %.3g", d.batch, L, D, N, chunk, e);
  /* states[b, k] is the state after token k*K-1 (zero for k = 0); after
   * the varlen budget's end it is meaningless */
  const int end = d.cu_seqlens ? d.cu_seqlens[d.nseq] : L;
  for (int b = 0; b < d.batch; b++)
    for (int k = 0; k < nch && k * K <= end; k++)
      for (int i = 0; i < D * N; i++) {
        const double s = st[((size_t)b * nch + k) * D * N + i];
        const double r = k == 0 ? 0 : hall[((size_t)b * L + (size_t)k * K - 1) * D * N + i];
        if (!(fabs(s - r) <= 1e-12 * (1 + fabs(r))))
          fail_msg("chunk %d: saved state b=%d k=%d i=%d is %.17g, reference %.17g", chunk, b, k, i, s, r);
      }
  mb_host_free(y);
  mb_host_free(st);
  mb_host_free(ry);
  mb_host_free(hall);
}

static void check_chunks(const scan_case *c, const mb_scan_in_f64 *in) {
  const int L = c->d.seqlen;
  const int chunks[] = {0, 1, 7, L, L + 5, 3}; /* 0: the default, 128 */
  for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++)
    check_forward(c, in, chunks[i]);
}

static void test_shapes(void **state) {
  (void)state;
  static const int shapes[][4] = {{1, 1, 1, 1}, {2, 37, 5, 3}, {3, 20, 17, 16}, {1, 300, 9, 4}, {2, 1, 4, 2}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    mb_scan_desc d = {.batch = shapes[i][0], .seqlen = shapes[i][1], .dim = shapes[i][2], .dstate = shapes[i][3],
                      .delta_softplus = 1};
    scan_case c;
    scan_case_init(&c, &d, 10 + i);
    mb_scan_in_f64 in = scan_case_in(&c);
    check_chunks(&c, &in);
    scan_case_free(&c);
  }
}

static void test_varlen(void **state) {
  (void)state;
  /* sequences of 1, 8, 0, 21, 1 tokens and 4 tokens of budget padding */
  const int32_t cu[] = {0, 1, 9, 9, 30, 31};
  mb_scan_desc d = {.batch = 1, .seqlen = 35, .dim = 6, .dstate = 5, .delta_softplus = 1, .cu_seqlens = cu,
                    .nseq = 5};
  scan_case c;
  scan_case_init(&c, &d, 3);
  mb_scan_in_f64 in = scan_case_in(&c);
  const int chunks[] = {1, 4, 7, 9, 35, 50};
  for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++)
    check_forward(&c, &in, chunks[i]);
  /* the state really resets: sequence 3 (tokens 9..29) alone gives the same y */
  double *y = tu_alloc(c.nx), *st = tu_alloc(c.nx * 5);
  assert_int_equal(mb_cpu_scan_fwd_f64(&d, &in, y, st, NULL, 0), MB_OK);
  for (int t = 31; t < 35; t++)
    for (int ch = 0; ch < 6; ch++)
      assert_true(y[t * 6 + ch] == 0.0);
  const int32_t cu1[] = {0, 21};
  mb_scan_desc d1 = d;
  d1.cu_seqlens = cu1;
  d1.nseq = 1;
  d1.seqlen = 21;
  mb_scan_in_f64 in1 = in;
  in1.u += 9 * 6;
  in1.delta += 9 * 6;
  in1.z += 9 * 6;
  in1.B += 9 * 5;
  in1.C += 9 * 5;
  double *y1 = tu_alloc(21 * 6);
  assert_int_equal(mb_cpu_scan_fwd_f64(&d1, &in1, y1, st, NULL, 0), MB_OK);
  for (int i = 0; i < 21 * 6; i++)
    assert_true(fabs(y1[i] - y[9 * 6 + i]) <= 1e-14 * (1 + fabs(y1[i])));
  mb_host_free(y);
  mb_host_free(y1);
  mb_host_free(st);
  scan_case_free(&c);
}

/* The same sequences padded (right padding) and packed give the same y on
 * real tokens and, with dy = 0 on padding, the same gradients. */
static void test_padded_equals_packed(void **state) {
  (void)state;
  enum { B = 4, L = 13, D = 5, N = 4 };
  const int lens[B] = {6, 1, 13, 9};
  int32_t cu[B + 1] = {0};
  for (int b = 0; b < B; b++)
    cu[b + 1] = cu[b] + lens[b];
  mb_scan_desc dp = {.batch = B, .seqlen = L, .dim = D, .dstate = N, .delta_softplus = 1, .chunk = 4};
  mb_scan_desc dv = {.batch = 1, .seqlen = cu[B] + 2, .dim = D, .dstate = N, .delta_softplus = 1, .chunk = 5,
                     .cu_seqlens = cu, .nseq = B};
  scan_case p, v;
  scan_case_init(&p, &dp, 77);
  scan_case_init(&v, &dv, 78);
  memcpy(v.A_log, p.A_log, sizeof(double) * D * N);
  memcpy(v.D, p.D, sizeof(double) * D);
  memcpy(v.bias, p.bias, sizeof(double) * D);
  double *dyp = tu_alloc(p.nx), *dyv = tu_alloc(v.nx);
  uint64_t s = 9;
  tu_fill(dyp, p.nx, 1.0, &s);
  for (int b = 0; b < B; b++) {
    for (int t = lens[b]; t < L; t++) /* no gradient arrives at padding */
      for (int ch = 0; ch < D; ch++)
        dyp[((size_t)b * L + t) * D + ch] = 0;
    const size_t from = (size_t)b * L, to = (size_t)cu[b], n = (size_t)lens[b];
    memcpy(v.u + to * D, p.u + from * D, n * D * sizeof(double));
    memcpy(v.delta + to * D, p.delta + from * D, n * D * sizeof(double));
    memcpy(v.z + to * D, p.z + from * D, n * D * sizeof(double));
    memcpy(v.B + to * N, p.B + from * N, n * N * sizeof(double));
    memcpy(v.C + to * N, p.C + from * N, n * N * sizeof(double));
    memcpy(dyv + to * D, dyp + from * D, n * D * sizeof(double));
  }
  mb_scan_in_f64 inp = scan_case_in(&p), inv = scan_case_in(&v);
  double *yp = tu_alloc(p.nx), *yv = tu_alloc(v.nx);
  double *sp = tu_alloc(mb_cpu_scan_states_numel(&dp)), *sv = tu_alloc(mb_cpu_scan_states_numel(&dv));
  assert_int_equal(mb_cpu_scan_fwd_f64(&dp, &inp, yp, sp, NULL, 0), MB_OK);
  assert_int_equal(mb_cpu_scan_fwd_f64(&dv, &inv, yv, sv, NULL, 0), MB_OK);
  scan_grads gp, gv;
  scan_grads_init(&gp, &p);
  scan_grads_init(&gv, &v);
  mb_scan_grad_f64 op = scan_grads_out(&gp), ov = scan_grads_out(&gv);
  assert_int_equal(mb_cpu_scan_bwd_f64(&dp, &inp, sp, dyp, &op, NULL, 0), MB_OK);
  assert_int_equal(mb_cpu_scan_bwd_f64(&dv, &inv, sv, dyv, &ov, NULL, 0), MB_OK);
#define CLOSE(a, b) assert_true(fabs((a) - (b)) <= 1e-13 * (1 + fabs(b)))
  for (int b = 0; b < B; b++)
    for (int t = 0; t < lens[b]; t++) {
      const size_t ip = (size_t)b * L + t, iv = (size_t)cu[b] + t;
      for (int ch = 0; ch < D; ch++) {
        CLOSE(yp[ip * D + ch], yv[iv * D + ch]);
        CLOSE(gp.du[ip * D + ch], gv.du[iv * D + ch]);
        CLOSE(gp.ddelta[ip * D + ch], gv.ddelta[iv * D + ch]);
        CLOSE(gp.dz[ip * D + ch], gv.dz[iv * D + ch]);
      }
      for (int n = 0; n < N; n++) {
        CLOSE(gp.dB[ip * N + n], gv.dB[iv * N + n]);
        CLOSE(gp.dC[ip * N + n], gv.dC[iv * N + n]);
      }
    }
  for (int i = 0; i < D * N; i++)
    CLOSE(gp.dA_log[i], gv.dA_log[i]);
  for (int i = 0; i < D; i++) {
    CLOSE(gp.dD[i], gv.dD[i]);
    CLOSE(gp.dbias[i], gv.dbias[i]);
  }
#undef CLOSE
  /* budget padding gets zero gradients */
  for (size_t t = (size_t)cu[B]; t < (size_t)dv.seqlen; t++)
    for (int ch = 0; ch < D; ch++)
      assert_true(gv.du[t * D + ch] == 0 && gv.ddelta[t * D + ch] == 0 && gv.dz[t * D + ch] == 0);
  scan_grads_free(&gp);
  scan_grads_free(&gv);
  double *bufs[] = {dyp, dyv, yp, yv, sp, sv};
  for (size_t i = 0; i < 6; i++)
    mb_host_free(bufs[i]);
  scan_case_free(&p);
  scan_case_free(&v);
}

/* No D, no z, no bias; no softplus; and deltas past the softplus threshold. */
static void test_options(void **state) {
  (void)state;
  mb_scan_desc d = {.batch = 2, .seqlen = 19, .dim = 7, .dstate = 3, .delta_softplus = 1};
  scan_case c;
  scan_case_init(&c, &d, 5);
  mb_scan_in_f64 in = scan_case_in(&c);
  in.D = NULL;
  in.z = NULL;
  in.delta_bias = NULL;
  check_chunks(&c, &in);
  c.d.delta_softplus = 0;
  for (size_t i = 0; i < c.nx; i++)
    c.delta[i] = fabs(c.delta[i]) * 0.3;
  in = scan_case_in(&c);
  check_chunks(&c, &in);
  c.d.delta_softplus = 1;
  for (size_t i = 0; i < c.nx; i += 3)
    c.delta[i] = 19 + 3 * tu_uniform(&(uint64_t){i}); /* both sides of 20 */
  check_chunks(&c, &in);
  scan_case_free(&c);
}

static void test_f32(void **state) {
  (void)state;
  const int32_t cu[] = {0, 100, 101, 230};
  mb_scan_desc ds[] = {
      {.batch = 2, .seqlen = 150, .dim = 40, .dstate = 16, .delta_softplus = 1, .chunk = 32},
      {.batch = 1, .seqlen = 240, .dim = 24, .dstate = 16, .delta_softplus = 1, .cu_seqlens = cu, .nseq = 3},
  };
  for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++) {
    scan_case c;
    scan_case_init(&c, &ds[i], 60 + i);
    mb_scan_in_f64 in = scan_case_in(&c);
    const size_t DN = (size_t)ds[i].dim * ds[i].dstate, Dd = (size_t)ds[i].dim;
    mb_scan_in_f32 inf = {.u = tu_tof(c.u, c.nx), .delta = tu_tof(c.delta, c.nx), .A_log = tu_tof(c.A_log, DN),
                          .B = tu_tof(c.B, c.nbc), .C = tu_tof(c.C, c.nbc), .D = tu_tof(c.D, Dd),
                          .z = tu_tof(c.z, c.nx), .delta_bias = tu_tof(c.bias, Dd)};
    float *y = tu_allocf(c.nx), *st = tu_allocf(mb_cpu_scan_states_numel(&ds[i]));
    double *ry = tu_alloc(c.nx), *hall = tu_alloc(ref_scan_states_numel(&ds[i]));
    assert_int_equal(mb_cpu_scan_fwd_f32(&ds[i], &inf, y, st, NULL, 0), MB_OK);
    assert_int_equal(ref_scan_fwd_f64(&ds[i], &in, ry, hall), MB_OK);
    const double e = tu_normdiff_f(y, ry, c.nx);
    if (e > worst_f32)
      worst_f32 = e;
    if (!(e <= TOL_F32))
      fail_msg("f32 case %zu: y differs from f64 by %.3g", i, e);
    const float *fb[] = {inf.u, inf.delta, inf.A_log, inf.B, inf.C, inf.D, inf.z, inf.delta_bias, y, st};
    for (size_t j = 0; j < 10; j++)
      mb_host_free((void *)fb[j]);
    mb_host_free(ry);
    mb_host_free(hall);
    scan_case_free(&c);
  }
}

/* Saved states are B*ceil(L/chunk)*D*N; the workspaces do not hold L states;
 * a forward that allocates its own workspace raises the peak by that only. */
static void test_memory(void **state) {
  (void)state;
  mb_scan_desc d = {.batch = 2, .seqlen = 4096, .dim = 1536, .dstate = 16, .chunk = 128, .nthreads = 2};
  const size_t all_states = (size_t)2 * 4096 * 1536 * 16;
  assert_int_equal(mb_cpu_scan_states_numel(&d), (size_t)2 * 32 * 1536 * 16);
  assert_true(mb_cpu_scan_states_numel(&d) * 128 == all_states);
  const size_t saved = mb_cpu_scan_states_numel(&d) * 4;
  const size_t fws = mb_cpu_scan_fwd_workspace(&d, 4), bws = mb_cpu_scan_bwd_workspace(&d, 4);
  d.seqlen = 16;
  assert_int_equal(mb_cpu_scan_fwd_workspace(&d, 4), fws); /* independent of L */
  assert_true(fws < 65536); /* a block of states per thread */
  assert_true(bws < all_states * 4 / 256);
  print_message("scan memory at B=2 L=4096 D=1536 N=16 chunk=128, 2 threads: saved states %zu bytes (all states "
                "%zu), workspace fwd %zu bwd %zu bytes\n",
                saved, all_states * 4, fws, bws);

  /* measured: the forward allocates its workspace and nothing else */
  mb_scan_desc m = {.batch = 1, .seqlen = 2048, .dim = 16, .dstate = 16, .chunk = 64, .nthreads = 2,
                    .delta_softplus = 1};
  scan_case c;
  scan_case_init(&c, &m, 1);
  mb_scan_in_f64 in = scan_case_in(&c);
  double *y = tu_alloc(c.nx), *st = tu_alloc(mb_cpu_scan_states_numel(&m));
  mb_host_mem_reset_peak();
  const size_t before = mb_host_mem_stats().current;
  assert_int_equal(mb_cpu_scan_fwd_f64(&m, &in, y, st, NULL, 0), MB_OK);
  const size_t extra = mb_host_mem_stats().peak - before;
  assert_true(extra <= mb_cpu_scan_fwd_workspace(&m, 8));
  assert_true(extra < (size_t)2048 * 16 * 16 * 8 / 64);
  mb_host_free(y);
  mb_host_free(st);
  scan_case_free(&c);
}

static void test_bad_input(void **state) {
  (void)state;
  double x[64] = {0};
  mb_scan_in_f64 in = {.u = x, .delta = x, .A_log = x, .B = x, .C = x};
  const int32_t cu[] = {0, 4, 2};
  mb_scan_desc d = {.batch = 1, .seqlen = 4, .dim = 2, .dstate = 2, .cu_seqlens = cu, .nseq = 2};
  double y[8], st[16];
  assert_int_equal(mb_cpu_scan_fwd_f64(&d, &in, y, st, NULL, 0), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "cu_seqlens[2]"));
  mb_scan_desc e = {.batch = 1, .seqlen = 4, .dim = 2, .dstate = 0};
  assert_int_equal(mb_cpu_scan_fwd_f64(&e, &in, y, st, NULL, 0), MB_EINVAL);
  e.dstate = 2;
  in.B = NULL;
  assert_int_equal(mb_cpu_scan_fwd_f64(&e, &in, y, st, NULL, 0), MB_EINVAL);
  in.B = x;
  double g[8];
  mb_scan_grad_f64 gr = {.dz = g}; /* gradient of z asked, z not given */
  assert_int_equal(mb_cpu_scan_bwd_f64(&e, &in, st, y, &gr, NULL, 0), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "not given"));
}

static int report(void **state) {
  (void)state;
  print_message("selective_scan_reference: max normwise error f64 %.3g (bound %.0g), f32 %.3g (bound %.0g)\n",
                worst_f64, TOL_F64, worst_f32, TOL_F32);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shapes), cmocka_unit_test(test_varlen), cmocka_unit_test(test_padded_equals_packed),
      cmocka_unit_test(test_options), cmocka_unit_test(test_f32), cmocka_unit_test(test_memory),
      cmocka_unit_test(test_bad_input),
  };
  return cmocka_run_group_tests(tests, NULL, report);
}
