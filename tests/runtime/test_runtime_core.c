/* test_runtime_core.c: the error convention, shapes, host tensors and the
 * host allocator's current/peak accounting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "runtime/alloc.h"
#include "runtime/error.h"
#include "runtime/hash.h"
#include "runtime/tensor.h"

static int fails_with_context(void) {
  int rc = MB_ERR(MB_EFORMAT, "tensor '%s': offsets past end", "w");
  return mb_error_context(rc, "reading %s", "model.safetensors");
}

static void test_error_message_and_context(void **state) {
  (void)state;
  mb_error_clear();
  assert_int_equal(fails_with_context(), MB_EFORMAT);
  assert_string_equal(mb_error_message(), "reading model.safetensors: tensor 'w': offsets past end");
  assert_int_equal(mb_error_code(), MB_EFORMAT);
  assert_non_null(strstr(mb_error_where(), "tests/runtime/test_runtime_core.c:"));
  mb_error_clear();
  assert_string_equal(mb_error_message(), "");
}

static void test_shape(void **state) {
  (void)state;
  mb_shape s = mb_shape3(2, 3, 5);
  char buf[64];
  assert_int_equal(mb_shape_numel(&s), 30);
  assert_string_equal(mb_shape_str(&s, buf, sizeof buf), "[2, 3, 5]");
  mb_shape s0 = mb_shape_of(0, NULL);
  assert_int_equal(mb_shape_numel(&s0), 1);
  assert_string_equal(mb_shape_str(&s0, buf, sizeof buf), "[]");
  mb_shape bad = mb_shape2(4, -1);
  assert_int_equal(mb_shape_validate(&bad), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "negative"));
  bad.ndim = 9;
  assert_int_equal(mb_shape_validate(&bad), MB_EINVAL);
  mb_shape t = mb_shape3(2, 3, 5);
  assert_true(mb_shape_equal(&s, &t));
  t.dim[2] = 4;
  assert_false(mb_shape_equal(&s, &t));
}

static void test_host_alloc_peak(void **state) {
  (void)state;
  mb_mem_stats before = mb_host_mem_stats();
  mb_host_mem_reset_peak();
  void *a = mb_host_malloc(1000);
  void *b = mb_host_malloc(3000);
  assert_non_null(a);
  assert_non_null(b);
  assert_int_equal((uintptr_t)a % MB_ALIGN, 0);
  assert_int_equal((uintptr_t)b % MB_ALIGN, 0);
  mb_mem_stats mid = mb_host_mem_stats();
  assert_int_equal(mid.current, before.current + 4000);
  mb_host_free(b);
  mb_mem_stats after = mb_host_mem_stats();
  assert_int_equal(after.current, before.current + 1000);
  assert_int_equal(after.peak, before.current + 4000);
  mb_host_mem_reset_peak();
  assert_int_equal(mb_host_mem_stats().peak, before.current + 1000);
  mb_host_free(a);
  assert_int_equal(mb_host_mem_stats().current, before.current);
}

static void test_tensor_alloc(void **state) {
  (void)state;
  mb_tensor t;
  assert_int_equal(mb_tensor_alloc_host(&t, MB_BF16, mb_shape2(7, 3)), MB_OK);
  assert_int_equal(mb_tensor_nbytes(&t), 42);
  const unsigned char *p = t.data;
  for (int i = 0; i < 42; i++)
    assert_int_equal(p[i], 0);
  mb_tensor_free(&t);
  assert_null(t.data);
  assert_int_equal(mb_tensor_alloc_host(&t, MB_F32, mb_shape1(-3)), MB_EINVAL);
}

static void test_dtype_table(void **state) {
  (void)state;
  mb_dtype dt;
  assert_int_equal(mb_dtype_from_safetensors("BF16", &dt), MB_OK);
  assert_int_equal(dt, MB_BF16);
  assert_int_equal(mb_dtype_from_name("f8e4m3", &dt), MB_OK);
  assert_int_equal(dt, MB_F8E4M3);
  assert_int_equal(mb_dtype_size(MB_F8E5M2), 1);
  assert_int_equal(mb_dtype_from_name("float128", &dt), MB_ENOTFOUND);
  assert_non_null(strstr(mb_error_message(), "float128"));
}

static void test_sha256(void **state) {
  (void)state;
  /* FIPS 180-2 example vectors */
  uint8_t d[32];
  char hex[65];
  mb_sha256_bytes("abc", 3, d);
  mb_sha256_hex(d, hex);
  assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  mb_sha256 *h = mb_sha256_new();
  const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  mb_sha256_update(h, m, 20);
  mb_sha256_update(h, m + 20, strlen(m) - 20);
  mb_sha256_final(h, d);
  mb_sha256_hex(d, hex);
  assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  assert_int_equal(mb_sha256_file_hex("/nonexistent/vocab.txt", hex), MB_EIO);
  assert_non_null(strstr(mb_error_message(), "/nonexistent/vocab.txt"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_error_message_and_context), cmocka_unit_test(test_shape),
      cmocka_unit_test(test_host_alloc_peak),           cmocka_unit_test(test_tensor_alloc),
      cmocka_unit_test(test_dtype_table), cmocka_unit_test(test_sha256),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
