/* test_cuda_attention_dispatch.c (ctest: cuda_attention_dispatch): the CUDA
 * attention dispatcher's decisions (kernels/cuda/attention_plan.c), which
 * are plain C: no GPU and no CUDA toolkit needed, so this runs everywhere.
 * What kernel each request gets, the reason logged for every fallback
 * (SDPA's questions: fp32 inputs, head_dim, architecture, alignment, masks),
 * what is refused and why, the MAMBERT_ATTN_KERNEL override, the log key,
 * and descriptor checks that never touch (device) memory.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* cmocka needs setjmp.h, stdarg.h and stddef.h before it (own block: not re-sorted) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "kernels/cuda/attention.h"

/* A device pointer the host must never read: any dereference crashes. */
#define DEVICE_PTR ((const int32_t *)(uintptr_t)0x10)

static mb_attn_desc desc(int batch, int seqlen, int heads, int head_dim) {
  mb_attn_desc d;
  memset(&d, 0, sizeof d);
  d.batch = batch;
  d.seqlen = seqlen;
  d.heads = heads;
  d.head_dim = head_dim;
  return d;
}

static mb_cuda_attn_request req(mb_dtype dt, int cc) {
  mb_cuda_attn_request r;
  memset(&r, 0, sizeof r);
  r.dtype = dt;
  r.cc = cc;
  r.pass = MB_CUDA_ATTN_FWD;
  r.aligned16 = 1;
  r.force = MB_CUDA_ATTN_AUTO;
  return r;
}

/* choose() must succeed with `kernel`; the reason must contain `why`. */
static void expect(const mb_attn_desc *d, const mb_cuda_attn_request *r, mb_cuda_attn_kernel kernel, int fallback,
                   const char *why) {
  mb_cuda_attn_plan p;
  const int rc = mb_cuda_attn_choose(d, r, &p);
  if (rc != MB_OK)
    fail_msg("choose failed: %s", mb_error_message());
  print_message("%-9s %s\n", mb_cuda_attn_kernel_name(p.kernel), p.reason);
  assert_int_equal(p.kernel, kernel);
  assert_int_equal(p.fallback, fallback);
  if (why && !strstr(p.reason, why))
    fail_msg("reason \"%s\" does not mention \"%s\"", p.reason, why);
}

/* choose() must fail with `code`, naming `why` in the message and the reason. */
static void expect_refused(const mb_attn_desc *d, const mb_cuda_attn_request *r, int code, const char *why) {
  mb_cuda_attn_plan p;
  const int rc = mb_cuda_attn_choose(d, r, &p);
  print_message("refused (%d): %s\n", rc, mb_error_message());
  assert_int_equal(rc, code);
  if (!strstr(mb_error_message(), why))
    fail_msg("message \"%s\" does not mention \"%s\"", mb_error_message(), why);
}

static void test_fused_path(void **state) {
  (void)state;
  mb_attn_desc d = desc(4, 512, 12, 64);
  mb_cuda_attn_request r = req(MB_BF16, 90);
  expect(&d, &r, MB_CUDA_ATTN_FLASH, 0, "flash");
  r = req(MB_F16, 80);
  d.head_dim = 128;
  expect(&d, &r, MB_CUDA_ATTN_FLASH, 0, "f16");
  r.pass = MB_CUDA_ATTN_BWD;
  expect(&d, &r, MB_CUDA_ATTN_FLASH, 0, NULL);
  /* every mask mode the descriptor can express runs on the fused kernel:
   * key padding, varlen, causal (SDPA's "does a mask allow flash") */
  d.key_mask = DEVICE_PTR;
  d.causal = 1;
  expect(&d, &r, MB_CUDA_ATTN_FLASH, 0, "padded+key_mask+causal");
  mb_attn_desc v = desc(1, 4096, 12, 64);
  v.cu_seqlens = DEVICE_PTR;
  v.nseq = 9;
  r = req(MB_BF16, 86);
  expect(&v, &r, MB_CUDA_ATTN_FLASH, 0, "varlen(9 seqs)");
  /* fp8 on sm_89 and sm_90 */
  r = req(MB_F8E4M3, 89);
  expect(&d, &r, MB_CUDA_ATTN_FLASH_FP8, 0, "flash-fp8");
  r.cc = 90;
  expect(&d, &r, MB_CUDA_ATTN_FLASH_FP8, 0, "the wgmma form");
  /* bf16 on sm_90: the reason names the tiling switch */
  r = req(MB_BF16, 90);
  expect(&d, &r, MB_CUDA_ATTN_FLASH, 0, "MAMBERT_ATTN_TILING");
}

static void test_fallbacks(void **state) {
  (void)state;
  mb_attn_desc d = desc(1, 1024, 8, 64);
  mb_cuda_attn_request r = req(MB_F32, 90);
  /* f32: never flash, like SDPA */
  expect(&d, &r, MB_CUDA_ATTN_REFERENCE, 1, "f32 inputs");
  r.pass = MB_CUDA_ATTN_BWD;
  expect(&d, &r, MB_CUDA_ATTN_REFERENCE, 1, "f32 inputs");
  /* the first reason wins: dtype before head_dim */
  d.head_dim = 96;
  expect(&d, &r, MB_CUDA_ATTN_REFERENCE, 1, "f32 inputs");
  r = req(MB_BF16, 90);
  expect(&d, &r, MB_CUDA_ATTN_REFERENCE, 1, "head_dim 96");
  d.head_dim = 256;
  expect(&d, &r, MB_CUDA_ATTN_REFERENCE, 1, "head_dim 256");
  d.head_dim = 1;
  expect(&d, &r, MB_CUDA_ATTN_REFERENCE, 1, "head_dim 1");
  /* old GPUs */
  d.head_dim = 64;
  r.cc = 75;
  expect(&d, &r, MB_CUDA_ATTN_REFERENCE, 1, "compute capability 7.5");
  /* alignment */
  r.cc = 80;
  r.aligned16 = 0;
  expect(&d, &r, MB_CUDA_ATTN_REFERENCE, 1, "16-byte aligned");
  /* fp8 before sm_89 (or with only sm_80 code for this GPU) */
  r = req(MB_F8E4M3, 80);
  expect(&d, &r, MB_CUDA_ATTN_REFERENCE, 1, "sm_89");
  r.cc = 90;
  d.head_dim = 80;
  expect(&d, &r, MB_CUDA_ATTN_REFERENCE, 1, "head_dim 80");
}

static void test_refusals(void **state) {
  (void)state;
  mb_attn_desc d = desc(2, 128, 4, 64);
  mb_cuda_attn_request r = req(MB_F64, 90);
  expect_refused(&d, &r, MB_EUNSUPPORTED, "f64");
  r = req(MB_I32, 90);
  expect_refused(&d, &r, MB_EUNSUPPORTED, "i32");
  r = req(MB_F8E4M3, 90);
  r.pass = MB_CUDA_ATTN_BWD;
  expect_refused(&d, &r, MB_EUNSUPPORTED, "forward only");
  /* a forced flash kernel that cannot run is refused with the reason */
  r = req(MB_F32, 90);
  r.force = MB_CUDA_ATTN_FLASH;
  expect_refused(&d, &r, MB_EUNSUPPORTED, "f32 inputs");
  r = req(MB_BF16, 90);
  r.force = MB_CUDA_ATTN_FLASH_FP8;
  expect_refused(&d, &r, MB_EUNSUPPORTED, "e4m3 inputs only");
  r = req(MB_F16, 70);
  r.force = MB_CUDA_ATTN_FLASH;
  expect_refused(&d, &r, MB_EUNSUPPORTED, "sm_80");
  /* the reference kernel's own limit */
  d.head_dim = 2048;
  r = req(MB_BF16, 90);
  expect_refused(&d, &r, MB_EUNSUPPORTED, "head_dim 2048 exceeds the reference kernel");
  /* bad requests */
  d.head_dim = 64;
  r = req(MB_BF16, 90);
  r.pass = (mb_cuda_attn_pass)7;
  expect_refused(&d, &r, MB_EINVAL, "pass 7");
  r = req(MB_BF16, 90);
  r.force = (mb_cuda_attn_kernel)42;
  expect_refused(&d, &r, MB_EINVAL, "kernel 42");
  mb_cuda_attn_plan p;
  assert_int_equal(mb_cuda_attn_choose(&d, NULL, &p), MB_EINVAL);
}

static void test_forcing(void **state) {
  (void)state;
  mb_attn_desc d = desc(2, 128, 4, 128);
  mb_cuda_attn_request r = req(MB_BF16, 90);
  r.force = MB_CUDA_ATTN_REFERENCE;
  expect(&d, &r, MB_CUDA_ATTN_REFERENCE, 1, "as requested");
  r.force = MB_CUDA_ATTN_FLASH;
  expect(&d, &r, MB_CUDA_ATTN_FLASH, 0, "as requested");
  r = req(MB_F8E4M3, 90);
  r.force = MB_CUDA_ATTN_FLASH; /* "flash" means this dtype's fused kernel */
  expect(&d, &r, MB_CUDA_ATTN_FLASH_FP8, 0, NULL);
  r.force = MB_CUDA_ATTN_REFERENCE;
  expect(&d, &r, MB_CUDA_ATTN_REFERENCE, 1, NULL);

  mb_cuda_attn_kernel k = MB_CUDA_ATTN_FLASH;
  assert_int_equal(mb_cuda_attn_parse_force(NULL, &k), MB_OK);
  assert_int_equal(k, MB_CUDA_ATTN_AUTO);
  assert_int_equal(mb_cuda_attn_parse_force("", &k), MB_OK);
  assert_int_equal(k, MB_CUDA_ATTN_AUTO);
  assert_int_equal(mb_cuda_attn_parse_force("reference", &k), MB_OK);
  assert_int_equal(k, MB_CUDA_ATTN_REFERENCE);
  assert_int_equal(mb_cuda_attn_parse_force("flash", &k), MB_OK);
  assert_int_equal(k, MB_CUDA_ATTN_FLASH);
  assert_int_equal(mb_cuda_attn_parse_force("auto", &k), MB_OK);
  assert_int_equal(k, MB_CUDA_ATTN_AUTO);
  assert_int_equal(mb_cuda_attn_parse_force("FLASH", &k), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "MAMBERT_ATTN_KERNEL=FLASH"));
}

static void test_log_key(void **state) {
  (void)state;
  mb_attn_desc d = desc(1, 4096, 12, 64);
  d.cu_seqlens = DEVICE_PTR;
  d.nseq = 3;
  mb_cuda_attn_request r = req(MB_BF16, 90);
  r.pass = MB_CUDA_ATTN_BWD;
  mb_cuda_attn_plan p;
  assert_int_equal(mb_cuda_attn_choose(&d, &r, &p), MB_OK);
  char k1[256], k2[256];
  mb_cuda_attn_plan_key(&d, &r, &p, k1, sizeof k1);
  print_message("key: %s\n", k1);
  assert_string_equal(k1, "attn bwd bf16 B=1 L=4096 H=12 D=64 varlen(3 seqs) sm90 -> flash");
  /* another shape is another key (logged once each) */
  d.seqlen = 2048;
  mb_cuda_attn_plan_key(&d, &r, &p, k2, sizeof k2);
  assert_string_not_equal(k1, k2);
  /* a tiny buffer is truncated, not overrun */
  char small[8];
  mb_cuda_attn_plan_key(&d, &r, &p, small, sizeof small);
  assert_int_equal(strlen(small), 7);
}

static void test_descriptor_checks(void **state) {
  (void)state;
  assert_int_equal(mb_cuda_attn_check(NULL), MB_EINVAL);
  mb_attn_desc d = desc(2, 16, 4, 64);
  assert_int_equal(mb_cuda_attn_check(&d), MB_OK);
  d.batch = -1;
  assert_int_equal(mb_cuda_attn_check(&d), MB_EINVAL);
  d = desc(2, 16, 0, 64);
  assert_int_equal(mb_cuda_attn_check(&d), MB_EINVAL);
  d = desc(2, 16, 4, 0);
  assert_int_equal(mb_cuda_attn_check(&d), MB_EINVAL);
  d = desc(2, 16, 4, 64);
  d.scale = -1;
  assert_int_equal(mb_cuda_attn_check(&d), MB_EINVAL);
  d.scale = INFINITY;
  assert_int_equal(mb_cuda_attn_check(&d), MB_EINVAL);
  d = desc(2, 16, 70000, 64);
  assert_int_equal(mb_cuda_attn_check(&d), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "heads 70000"));
  d = desc(70000, 16, 4, 64);
  assert_int_equal(mb_cuda_attn_check(&d), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "varlen"));
  d = desc(65536, 65536, 1, 64);
  assert_int_equal(mb_cuda_attn_check(&d), MB_EINVAL);
  /* varlen: never reads cu_seqlens (device memory) */
  d = desc(1, 1000, 4, 64);
  d.cu_seqlens = DEVICE_PTR;
  d.nseq = 5;
  assert_int_equal(mb_cuda_attn_check(&d), MB_OK);
  d.batch = 2;
  assert_int_equal(mb_cuda_attn_check(&d), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "batch = 1"));
  d.batch = 1;
  d.key_mask = DEVICE_PTR;
  assert_int_equal(mb_cuda_attn_check(&d), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "not both"));
  d.key_mask = NULL;
  d.nseq = -1;
  assert_int_equal(mb_cuda_attn_check(&d), MB_EINVAL);
  d.nseq = (1 << 24) + 1;
  assert_int_equal(mb_cuda_attn_check(&d), MB_EINVAL);
  /* the workspace of an invalid descriptor is 0, never garbage */
  d = desc(-1, 16, 4, 64);
  /* (mb_cuda_attn_bwd_workspace lives in the CUDA library; the check it uses is this one) */
  assert_int_equal(mb_cuda_attn_check(&d), MB_EINVAL);
  /* the plan passes descriptor errors through */
  mb_cuda_attn_request r = req(MB_BF16, 90);
  mb_cuda_attn_plan p;
  assert_int_equal(mb_cuda_attn_choose(&d, &r, &p), MB_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fused_path), cmocka_unit_test(test_fallbacks), cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_forcing),    cmocka_unit_test(test_log_key),   cmocka_unit_test(test_descriptor_checks),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
