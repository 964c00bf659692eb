/* test_cuda_conv1d_emu.cpp: the GPU conv1d's kernels and drivers
 * (kernels/cuda/conv1d_kernels.cuh) compiled for the host and run by the
 * fiber emulator against the CPU kernel in float64: widths 1..4, SiLU on
 * and off, with and without bias, padded and varlen (empty sequences,
 * boundaries inside a run, budget padding), runs of tokens split across
 * threads, L = 1, f32 / bf16 / f16, and the drivers' errors. No GPU needed;
 * tests/cuda/test_cuda_conv1d.c runs the same on a GPU. ctest:
 * cuda_conv1d_emu. */
#include "tests/cuda/test_cuda_scan_emu.h"

#include "kernels/cuda/conv1d_kernels.cuh"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

extern "C" { /* this cmocka.h declares print_error without C linkage */
#include <cmocka.h>
}

#include "tests/cuda/test_cuda_conv1d_case.h"

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

static void run_case(const char *label, const mb_conv1d_desc *d, mb_dtype dt, int has_bias) {
  cct_case c;
  cct_case_make(&c, d, dt, MB_F32, has_bias);
  cct_case_reference(&c);
  cct_out o;
  cct_out_alloc(&c, &o);
  const size_t es = mb_dtype_size(dt), Dn = (size_t)d->dim;
  void *x = sct_pack(c.x, c.nx, dt), *dy = sct_pack(c.dy, c.nx, dt);
  void *w = sct_pack(c.w, c.nw, MB_F32), *bias = sct_pack(c.bias, Dn, MB_F32);
  void *y = poisoned(c.nx * es), *dx = poisoned(c.nx * es), *dw = poisoned(c.nw * 4), *db = poisoned(Dn * 4);
  mb_conv1d_plan pl;
  mb_conv1d_plan_make(&c.d, &pl);
  void *ws = poisoned_ws(pl.ws_bytes);
  sc_emu_launch L;
  if (conv1d_fwd_run(L, &c.d, dt, MB_F32, x, w, bias, y) != MB_OK ||
      conv1d_bwd_run(L, &c.d, dt, MB_F32, x, w, bias, dy, dx, dw, db, ws, pl.ws_bytes) != MB_OK)
    fail_msg("%s: driver failed: %s", label, mb_error_message());
  sct_unpack(o.y, y, c.nx, dt);
  sct_unpack(o.dx, dx, c.nx, dt);
  memcpy(o.dw, dw, c.nw * 4);
  memcpy(o.dbias, db, Dn * 4);
  printf("%s: B=%d L=%d D=%d W=%d silu=%d %s%s (%lld launches)\n", label, d->batch, d->seqlen, d->dim, d->width,
         d->silu, mb_dtype_name(dt), d->cu_seqlens ? " varlen" : "", L.launches);
  const int bad = cct_compare(&c, &o, label);
  void *bufs[] = {x, dy, w, bias, y, dx, dw, db, ws};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    free(bufs[i]);
  cct_out_free(&o);
  cct_case_free(&c);
  if (bad)
    fail_msg("%s: %d tensors out of bounds", label, bad);
}

static void test_padded(void **state) {
  (void)state;
  /* 2 channel blocks (the second partial), forward runs of 64 and a
   * backward run of 256 split the 300 tokens */
  mb_conv1d_desc d = {.batch = 2, .seqlen = 300, .dim = 200, .width = 4, .silu = 1};
  run_case("padded W=4 silu f32", &d, MB_F32, 1);
  mb_conv1d_desc d3 = {.batch = 1, .seqlen = 70, .dim = 33, .width = 3, .silu = 1};
  run_case("padded W=3 silu bf16", &d3, MB_BF16, 1);
  mb_conv1d_desc d1 = {.batch = 3, .seqlen = 1, .dim = 5, .width = 4, .silu = 0};
  run_case("L=1 W=4 f16 no bias", &d1, MB_F16, 0);
  mb_conv1d_desc w1 = {.batch = 1, .seqlen = 65, .dim = 7, .width = 1, .silu = 1};
  run_case("W=1 f32", &w1, MB_F32, 1);
}

static void test_varlen(void **state) {
  (void)state;
  /* sequences: empty, [0,3), [3,64) (ends at a forward run boundary),
   * [64,65) (one token), [65,300) (crosses the 256-token backward run),
   * [300,301), empty; padding [301,333) */
  const int32_t cu[] = {0, 0, 3, 64, 65, 300, 301, 301};
  mb_conv1d_desc d = {.batch = 1, .seqlen = 333, .dim = 130, .width = 4, .silu = 1, .cu_seqlens = cu, .nseq = 7};
  run_case("varlen W=4 silu f32", &d, MB_F32, 1);
  mb_conv1d_desc d2 = {.batch = 1, .seqlen = 333, .dim = 40, .width = 2, .silu = 0, .cu_seqlens = cu, .nseq = 7};
  run_case("varlen W=2 bf16 no bias", &d2, MB_BF16, 0);
}

static void test_errors(void **state) {
  (void)state;
  sc_emu_launch L;
  float x[16] = {0};
  mb_conv1d_desc d = {.batch = 1, .seqlen = 4, .dim = 2, .width = 5};
  assert_int_equal(conv1d_fwd_run(L, &d, MB_F32, MB_F32, x, x, NULL, x), MB_EUNSUPPORTED);
  d.width = 2;
  assert_int_equal(conv1d_fwd_run(L, &d, MB_F32, MB_F32, NULL, x, NULL, x), MB_EINVAL);
  assert_int_equal(conv1d_bwd_run(L, &d, MB_F32, MB_F32, x, x, NULL, x, x, x, x, NULL, 0), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "workspace"));
  assert_int_equal(L.launches, 0);
  /* no tokens: dw and dbias are zero */
  mb_conv1d_desc e = {.batch = 2, .seqlen = 0, .dim = 2, .width = 2};
  float dw[4], db[2];
  memset(dw, 0xff, sizeof dw), memset(db, 0xff, sizeof db);
  assert_int_equal(conv1d_bwd_run(L, &e, MB_F32, MB_F32, NULL, x, NULL, NULL, NULL, dw, db, NULL, 0), MB_OK);
  for (int i = 0; i < 4; i++)
    assert_true(dw[i] == 0.0f);
  assert_true(db[0] == 0.0f && db[1] == 0.0f);
}

static int report(void **state) {
  (void)state;
  printf("cuda_conv1d_emu: worst relative error f32 %.2e (bound 1e-5), bf16 %.2e (bound 1e-2), f16 %.2e "
         "(bound 5e-3)\n",
         sct_worst[0], sct_worst[1], sct_worst[2]);
  sc_emu::release_stacks();
  return 0;
}

int main(void) {
  sct_seed_init("cuda_conv1d_emu");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_padded),
      cmocka_unit_test(test_varlen),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, report);
}
