/* test_cuda_scan_emu.cpp: the GPU selective scan's kernels and drivers
 * (kernels/cuda/selective_scan_kernels.cuh), compiled for the host and run
 * on the CPU by the fiber emulator (test_cuda_scan_emu.h), against the CPU
 * kernel in float64: forward and every gradient, padded and varlen, odd
 * shapes, L = 1 and 4097, N = 5 / 16 / 64, f32 / bf16 / f16, optional inputs absent,
 * and the drivers' argument errors. Needs no GPU and no CUDA toolkit: it
 * checks the kernels' logic in every CI run; tests/cuda/test_cuda_scan.c
 * runs the same comparisons on a real GPU. ctest: cuda_selective_scan_emu.
 */
#include "tests/cuda/test_cuda_scan_emu.h"

#include <algorithm>
#include <vector>

#include "kernels/cuda/selective_scan_kernels.cuh"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

extern "C" { /* this cmocka.h declares print_error without C linkage */
#include <cmocka.h>
}

#include "tests/cuda/test_cuda_scan_case.h"

using namespace mb_scan_emu_impl;

/* Host buffers standing in for device memory, every byte 0xff (NaN), like
 * the GPU test's poisoned allocations. Exactly `bytes` long, so that under
 * AddressSanitizer any access the kernels make past an output is caught;
 * the workspace gets the 256-byte alignment the drivers require. */
static void *poisoned(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p)
    abort();
  memset(p, 0xff, bytes);
  return p;
}

static void *poisoned_ws(size_t bytes) {
  const size_t rounded = (bytes + 255) / 256 * 256;
  void *p = aligned_alloc(256, rounded ? rounded : 256);
  if (!p)
    abort();
  memset(p, 0xff, rounded);
  return p;
}

static void unpack_into(float *out, void *x, size_t n, mb_dtype dt) {
  if (x)
    sct_unpack(out, x, n, dt);
}

/* Runs the case's forward (and backward) through the drivers on the
 * emulator; fills o. Returns the drivers' status. */
static int emu_run(const sct_case *c, sct_out *o, int bwd, sc_emu_launch &L) {
  const size_t es = mb_dtype_size(c->dt), ps = mb_dtype_size(c->pdt), Dn = (size_t)c->d.dim;
  void *u = sct_pack(c->u, c->nx, c->dt), *delta = sct_pack(c->delta, c->nx, c->dt);
  void *z = sct_pack(c->z, c->nx, c->dt), *B = sct_pack(c->B, c->nbc, c->dt), *C = sct_pack(c->C, c->nbc, c->dt);
  void *dy = sct_pack(c->dy, c->nx, c->dt), *A_log = sct_pack(c->A_log, c->ndn, c->pdt);
  void *D = sct_pack(c->D, Dn, c->pdt), *bias = sct_pack(c->bias, Dn, c->pdt);
  mb_cuda_scan_in in = {u, delta, B, C, z, A_log, D, bias};
  void *y = poisoned(c->nx * es);
  float *states = (float *)poisoned(c->nstates * sizeof(float));
  int rc = scan_fwd_run(L, &c->d, c->dt, c->pdt, &in, y, states);
  if (rc == MB_OK) {
    unpack_into(o->y, y, c->nx, c->dt);
    memcpy(o->states, states, c->nstates * sizeof(float));
  }
  if (rc == MB_OK && bwd) {
    mb_scan_plan pl;
    mb_scan_plan_make(&c->d, &pl);
    void *ws = poisoned_ws(pl.ws_bytes);
    mb_cuda_scan_grad g = {poisoned(c->nx * es),
                           poisoned(c->nx * es),
                           poisoned(c->nbc * es),
                           poisoned(c->nbc * es),
                           c->z ? poisoned(c->nx * es) : NULL,
                           poisoned(c->ndn * ps),
                           c->D ? poisoned(Dn * ps) : NULL,
                           c->bias ? poisoned(Dn * ps) : NULL};
    rc = scan_bwd_run(L, &c->d, c->dt, c->pdt, &in, states, dy, &g, ws, pl.ws_bytes);
    if (rc == MB_OK) {
      unpack_into(o->du, g.du, c->nx, c->dt);
      unpack_into(o->ddelta, g.ddelta, c->nx, c->dt);
      unpack_into(o->dB, g.dB, c->nbc, c->dt);
      unpack_into(o->dC, g.dC, c->nbc, c->dt);
      unpack_into(o->dz, g.dz, c->nx, c->dt);
      unpack_into(o->dA_log, g.dA_log, c->ndn, c->pdt);
      unpack_into(o->dD, g.dD, Dn, c->pdt);
      unpack_into(o->dbias, g.ddelta_bias, Dn, c->pdt);
    }
    void *gs[] = {g.du, g.ddelta, g.dB, g.dC, g.dz, g.dA_log, g.dD, g.ddelta_bias, ws};
    for (size_t i = 0; i < sizeof gs / sizeof gs[0]; i++)
      free(gs[i]);
  }
  void *bufs[] = {u, delta, z, B, C, dy, A_log, D, bias, y, states};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    free(bufs[i]);
  return rc;
}

/* One case end to end; fails the test on any out-of-bound tensor. */
static void run_case(const char *label, const mb_scan_desc *d, mb_dtype dt, int has_z, int has_D, int has_bias,
                     float delta_shift = 0.0f) {
  sct_case c;
  sct_case_make(&c, d, dt, MB_F32, has_z, has_D, has_bias);
  if (delta_shift != 0.0f) /* slower decays: the state outlives tiles and parts */
    for (size_t i = 0; i < c.nx; i++)
      c.delta[i] = mb_round_to(c.delta[i] + delta_shift, dt);
  sct_case_reference(&c);
  sct_out o;
  sct_out_alloc(&c, &o);
  sc_emu_launch L;
  const long long sw0 = sc_emu::rt().switches;
  const int rc = emu_run(&c, &o, 1, L);
  if (rc != MB_OK)
    fail_msg("%s: driver failed: %s", label, mb_error_message());
  printf("%s: B=%d L=%d D=%d N=%d %s%s (%lld launches, %lld fiber switches)\n", label, d->batch, d->seqlen, d->dim,
         d->dstate, mb_dtype_name(dt), d->cu_seqlens ? " varlen" : "", L.launches, sc_emu::rt().switches - sw0);
  const int bad = sct_compare(&c, &o, label, 1);
  sct_out_free(&o);
  sct_case_free(&c);
  if (bad)
    fail_msg("%s: %d tensors out of bounds", label, bad);
}

static void test_padded_f32(void **state) {
  (void)state;
  /* 3 tiles (the last one partial), 2 channel groups (the second with 8 of 32) */
  mb_scan_desc d = {.batch = 2, .seqlen = 300, .dim = 40, .dstate = 16, .delta_softplus = 1};
  run_case("padded f32", &d, MB_F32, 1, 1, 1);
}

static void test_tiny_f32(void **state) {
  (void)state;
  mb_scan_desc d1 = {.batch = 3, .seqlen = 1, .dim = 7, .dstate = 5, .delta_softplus = 1};
  run_case("L=1 N=5 f32", &d1, MB_F32, 1, 1, 1);
  mb_scan_desc d2 = {.batch = 1, .seqlen = 129, .dim = 1, .dstate = 3, .delta_softplus = 1};
  run_case("L=129 D=1 N=3 f32", &d2, MB_F32, 1, 1, 1);
}

static void test_varlen_f32(void **state) {
  (void)state;
  /* sequences: empty, [0,37), [37,128), [128,129) (one token, at a tile
   * start), [129,250), [250,300), empty; budget padding [300,420) */
  const int32_t cu[] = {0, 0, 37, 128, 129, 250, 300, 300};
  mb_scan_desc d = {
      .batch = 1, .seqlen = 420, .dim = 33, .dstate = 8, .delta_softplus = 1, .cu_seqlens = cu, .nseq = 7};
  run_case("varlen f32", &d, MB_F32, 1, 1, 1);
}

/* 33 tiles: the f32 error must not grow with the number of tiles */
static void test_long_f32(void **state) {
  (void)state;
  mb_scan_desc d = {.batch = 1, .seqlen = 4097, .dim = 32, .dstate = 16, .delta_softplus = 1};
  run_case("long f32", &d, MB_F32, 1, 1, 1);
}

/* Rows split into parts (fold, carry, scan; selective_scan_plan.h): the
 * parts' boundaries fall inside sequences, one sequence spans a whole part,
 * one starts exactly at a part's first token, and the carry crosses a part
 * with a reset in it (its P is 0). */
static void test_split(void **state) {
  (void)state;
  mb_scan_desc d = {.batch = 2, .seqlen = 1500, .dim = 40, .dstate = 16, .delta_softplus = 1};
  mb_scan_plan pl;
  mb_scan_plan_make(&d, &pl);
  assert_int_equal(pl.parts, 3); /* 12 tiles, 4 blocks: parts of 4 tiles */
  assert_int_equal(pl.part_tiles, 4);
  run_case("split padded f32", &d, MB_F32, 1, 1, 1);
  /* parts of 5 tiles = 640 tokens: part 0 has a reset (600), [600, 1280)
   * crosses into part 1 and covers it whole, [1280, 1300) starts exactly at
   * part 2, [1300, 2000) crosses into part 3; budget padding after 2000 */
  const int32_t cu[] = {0, 600, 1280, 1300, 2000};
  mb_scan_desc v = {
      .batch = 1, .seqlen = 2100, .dim = 33, .dstate = 8, .delta_softplus = 1, .cu_seqlens = cu, .nseq = 4};
  mb_scan_plan_make(&v, &pl);
  assert_int_equal(pl.parts, 4); /* 17 tiles, 2 blocks: parts of 5 tiles */
  assert_int_equal(pl.part_tiles, 5);
  run_case("split varlen bf16", &v, MB_BF16, 1, 1, 1);
  /* Mamba's slow channels: dt = softplus(delta - 5) ~ 0.003, so a part of
   * 512 tokens keeps e^-1.5 .. e^-25 of the state it was given: the carry's
   * P h term matters (with the default dt ~ 0.3, P underflows to 0) */
  run_case("split padded f32, slow decay", &d, MB_F32, 1, 1, 1, -5.0f);
}

static void test_bf16_n64(void **state) {
  (void)state;
  mb_scan_desc d = {.batch = 1, .seqlen = 257, .dim = 32, .dstate = 64, .delta_softplus = 1};
  run_case("padded bf16 N=64", &d, MB_BF16, 1, 1, 1);
}

static void test_f16_options_off(void **state) {
  (void)state;
  /* no gate, no skip, no bias, no softplus */
  mb_scan_desc d = {.batch = 2, .seqlen = 130, .dim = 36, .dstate = 16, .delta_softplus = 0};
  run_case("f16 no z/D/bias/softplus", &d, MB_F16, 0, 0, 0);
  const int32_t cu[] = {0, 100, 200};
  mb_scan_desc v = {
      .batch = 1, .seqlen = 200, .dim = 32, .dstate = 16, .delta_softplus = 1, .cu_seqlens = cu, .nseq = 2};
  run_case("varlen bf16 no padding", &v, MB_BF16, 1, 0, 1);
}

/* Argument errors come back from the drivers before anything runs. */
static void test_errors(void **state) {
  (void)state;
  sc_emu_launch L;
  float x[64] = {0};
  float st[64];
  mb_cuda_scan_in in = {x, x, x, x, NULL, x, NULL, NULL};
  mb_scan_desc d = {.batch = 1, .seqlen = 4, .dim = 2, .dstate = 2, .chunk = 64};
  assert_int_equal(scan_fwd_run(L, &d, MB_F32, MB_F32, &in, x, st), MB_EUNSUPPORTED);
  assert_non_null(strstr(mb_error_message(), "chunk 64"));
  d.chunk = 0;
  d.dstate = 65;
  assert_int_equal(scan_fwd_run(L, &d, MB_F32, MB_F32, &in, x, st), MB_EUNSUPPORTED);
  d.dstate = 2;
  assert_int_equal(scan_fwd_run(L, &d, MB_F64, MB_F32, &in, x, st), MB_EUNSUPPORTED);
  const int32_t cu[] = {0, 4};
  mb_scan_desc v = {.batch = 2, .seqlen = 4, .dim = 2, .dstate = 2, .cu_seqlens = cu, .nseq = 1};
  assert_int_equal(scan_fwd_run(L, &v, MB_F32, MB_F32, &in, x, st), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "batch = 1"));
  in.B = NULL;
  assert_int_equal(scan_fwd_run(L, &d, MB_F32, MB_F32, &in, x, st), MB_EINVAL);
  in.B = x;
  mb_cuda_scan_grad g = {};
  g.dz = x; /* z not given */
  assert_int_equal(scan_bwd_run(L, &d, MB_F32, MB_F32, &in, st, x, &g, NULL, 0), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "not given"));
  g.dz = NULL;
  g.du = x;
  assert_int_equal(scan_bwd_run(L, &d, MB_F32, MB_F32, &in, st, x, &g, NULL, 0), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "workspace"));
  assert_int_equal(L.launches, 0);
}

/* No tokens: nothing runs but the parameter gradients, which are zero. */
static void test_empty(void **state) {
  (void)state;
  sc_emu_launch L;
  float x[8] = {1, 1, 1, 1, 1, 1, 1, 1}, dA[4], dD[2], db[2];
  mb_cuda_scan_in in = {NULL, NULL, NULL, NULL, NULL, x, x, x};
  mb_scan_desc d = {.batch = 3, .seqlen = 0, .dim = 2, .dstate = 2};
  assert_int_equal(scan_fwd_run(L, &d, MB_F32, MB_F32, &in, NULL, NULL), MB_OK);
  assert_int_equal(L.launches, 0);
  memset(dA, 0xff, sizeof dA), memset(dD, 0xff, sizeof dD), memset(db, 0xff, sizeof db);
  mb_cuda_scan_grad g = {};
  g.dA_log = dA, g.dD = dD, g.ddelta_bias = db;
  assert_int_equal(scan_bwd_run(L, &d, MB_F32, MB_F32, &in, NULL, NULL, &g, NULL, 0), MB_OK);
  for (int i = 0; i < 4; i++)
    assert_true(dA[i] == 0.0f);
  for (int i = 0; i < 2; i++)
    assert_true(dD[i] == 0.0f && db[i] == 0.0f);
}

/* The staged tiles (sc_stage_at), in both kernels' geometries: every
 * (channel, token) has its own slot; 16-byte chunks stay whole and aligned;
 * and, by a model of shared memory's 32 banks of 4 bytes, the two access
 * patterns are conflict-free: a warp's transposing element accesses
 * (sc_stage_put and sc_stage_store: thread q holds the 16-byte chunk q % CPT
 * of token q / CPT) and a quarter-warp's chunk accesses (sc_stage_get /
 * sc_stage_set: lane = segment x CH + channel, K tokens each). The degree
 * of a set of 4-byte words is the most distinct words sharing a bank. */
static int bank_degree(const std::vector<int> &words) {
  int worst = 0;
  for (int bank = 0; bank < 32; bank++) {
    std::vector<int> in;
    for (int w : words)
      if (w % 32 == bank && std::find(in.begin(), in.end(), w) == in.end())
        in.push_back(w);
    worst = std::max(worst, (int)in.size());
  }
  return worst;
}

template <typename T, int NT, int S, int K> static void check_stage_layout(const char *name) {
  typedef sc_stage_geo<T> geo;
  constexpr int CH = 32 / S, ES = (int)sizeof(T);
  std::vector<int> seen(MB_SCAN_GROUP * MB_SCAN_TILE, 0);
  for (int c = 0; c < MB_SCAN_GROUP; c++)
    for (int tt = 0; tt < MB_SCAN_TILE; tt++) {
      const int at = sc_stage_at<T, CH>(c, tt);
      assert_true(at >= 0 && at < MB_SCAN_GROUP * MB_SCAN_TILE);
      seen[at]++;
      if (tt % geo::EPC == 0) /* a chunk's first element: 16-byte aligned, the rest follow it */
        assert_int_equal(at * ES % 16, 0);
      else
        assert_int_equal(at, (sc_stage_at<T, CH>(c, tt - 1) + 1));
    }
  for (int v : seen)
    assert_int_equal(v, 1);
  int worst_elem = 0, worst_chunk = 0;
  for (int k = 0; k < geo::CHUNKS / NT; k++)
    for (int warp = 0; warp < NT / 32; warp++)
      for (int j = 0; j < geo::EPC; j++) {
        std::vector<int> words;
        for (int lane = 0; lane < 32; lane++) {
          const int q = warp * 32 + lane + k * NT, tt = q / geo::CPT, ch = (q % geo::CPT) * geo::EPC;
          words.push_back(sc_stage_at<T, CH>(ch + j, tt) * ES / 4);
        }
        worst_elem = std::max(worst_elem, bank_degree(words));
      }
  for (int warp = 0; warp < NT / 32; warp++)
    for (int quarter = 0; quarter < 4; quarter++)
      for (int kc = 0; kc < K / geo::EPC; kc++) {
        std::vector<int> words;
        for (int lane = 8 * quarter; lane < 8 * quarter + 8; lane++) {
          const int seg = lane / CH, c = warp * CH + lane % CH;
          const int w0 = sc_stage_at<T, CH>(c, seg * K + kc * geo::EPC) * ES / 4;
          for (int i = 0; i < 4; i++)
            words.push_back(w0 + i);
        }
        worst_chunk = std::max(worst_chunk, bank_degree(words));
      }
  printf("staged %s tiles: transposing accesses %d-way, chunk accesses %d-way (1: conflict-free)\n", name,
         worst_elem, worst_chunk);
  assert_int_equal(worst_elem, 1);
  assert_int_equal(worst_chunk, 1);
}

static void test_stage_layout(void **state) {
  (void)state;
  check_stage_layout<sc_bf16, MB_SCAN_FWD_THREADS, MB_SCAN_FWD_SEGS, MB_SCAN_FWD_ITEMS>("forward 16-bit");
  check_stage_layout<float, MB_SCAN_FWD_THREADS, MB_SCAN_FWD_SEGS, MB_SCAN_FWD_ITEMS>("forward f32");
  check_stage_layout<sc_bf16, MB_SCAN_BWD_THREADS, MB_SCAN_BWD_SEGS, MB_SCAN_BWD_ITEMS>("backward 16-bit");
  check_stage_layout<float, MB_SCAN_BWD_THREADS, MB_SCAN_BWD_SEGS, MB_SCAN_BWD_ITEMS>("backward f32");
}

static int report(void **state) {
  (void)state;
  printf("cuda_selective_scan_emu: worst relative error f32 %.2e (bound 1e-5), bf16 %.2e (bound 1e-2), f16 %.2e "
         "(bound 5e-3)\n",
         sct_worst[0], sct_worst[1], sct_worst[2]);
  sc_emu::release_stacks();
  return 0;
}

int main(void) {
  sct_seed_init("cuda_selective_scan_emu");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_padded_f32), cmocka_unit_test(test_tiny_f32), cmocka_unit_test(test_varlen_f32),
      cmocka_unit_test(test_long_f32),   cmocka_unit_test(test_split),    cmocka_unit_test(test_bf16_n64),
      cmocka_unit_test(test_f16_options_off),
      cmocka_unit_test(test_errors),     cmocka_unit_test(test_empty),    cmocka_unit_test(test_stage_layout),
  };
  return cmocka_run_group_tests(tests, NULL, report);
}
