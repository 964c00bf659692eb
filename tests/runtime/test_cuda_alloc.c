/* test_cuda_alloc.c: the caching CUDA allocator (runtime/cuda_alloc.h) on a
 * real GPU: reuse without cudaMalloc, usable memory, statistics, a clean
 * out-of-memory error, a clear error for a missing device. Built with CUDA
 * only; without a visible GPU it exits 77 (ctest: skipped). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "runtime/cache_alloc.h"
#include "runtime/cuda_alloc.h"
#include "runtime/error.h"

static void test_cuda_alloc_reuse_and_stats(void **state) {
  (void)state;
  mb_device_allocator *a;
  if (mb_cuda_allocator_create(0, &a) != MB_OK)
    fail_msg("%s", mb_error_message());
  mb_cache *c = mb_caching_allocator_cache(a);
  assert_non_null(c);
  void *p, *q;
  assert_int_equal(a->alloc(a, 3 << 20, &p), MB_OK);
  assert_int_equal((uintptr_t)p % 256, 0);
  /* the memory works: write it on the device and read it back */
  assert_int_equal(cudaMemset(p, 0x5a, 3 << 20), cudaSuccess);
  unsigned char host[64];
  assert_int_equal(cudaMemcpy(host, (char *)p + (3 << 20) - 64, 64, cudaMemcpyDeviceToHost), cudaSuccess);
  for (int i = 0; i < 64; i++)
    assert_int_equal(host[i], 0x5a);
  mb_mem_stats m = a->stats(a);
  assert_int_equal(m.current, 3 << 20);
  a->free(a, p);
  assert_int_equal(a->alloc(a, (3 << 20) - 100, &q), MB_OK);
  assert_ptr_equal(q, p); /* reused: no second cudaMalloc */
  mb_cache_stats st = mb_cache_get_stats(c);
  assert_int_equal(st.n_source_allocs, 1);
  assert_int_equal(st.n_cache_hits, 1);
  a->free(a, q);
  /* far more than any GPU has: a clean MB_ENOMEM naming the device */
  void *huge;
  assert_int_equal(a->alloc(a, (size_t)1 << 50, &huge), MB_ENOMEM);
  assert_non_null(strstr(mb_error_message(), "cuda:0"));
  assert_non_null(strstr(mb_error_message(), "cudaMalloc"));
  /* the error is not sticky: the allocator still works */
  assert_int_equal(a->alloc(a, 1000, &p), MB_OK);
  a->free(a, p);
  a->empty_cache(a);
  assert_int_equal(mb_cache_get_stats(c).reserved, 0);
  a->destroy(a);
}

static void test_cuda_alloc_bad_device(void **state) {
  (void)state;
  mb_device_allocator *a;
  assert_int_equal(mb_cuda_allocator_create(1000, &a), MB_EDEVICE);
  assert_null(a);
  assert_non_null(strstr(mb_error_message(), "CUDA device 1000 does not exist"));
}

int main(void) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    printf("no CUDA device (%s): skipping\n", e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    return 77;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cuda_alloc_reuse_and_stats),
      cmocka_unit_test(test_cuda_alloc_bad_device),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
