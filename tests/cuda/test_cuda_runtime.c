/* test_cuda_runtime.c: the CUDA device runtime (runtime/cuda_device.h):
 * device count and description, device selection (MAMBERT_CUDA_DEVICE and
 * local ranks, clear errors for bad indices), streams and events (ordering
 * across streams, timing), pinned buffers (statistics, async copies that
 * round-trip), capture detection, and the error text of a failing call.
 * Needs a GPU; exits 77 without. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cuda_test_util.h"
#include "kernels/cuda/cuda_kernels.h"
#include "runtime/cuda_check.h"
#include "runtime/cuda_device.h"

static void test_devices(void **state) {
  (void)state;
  int n = 0;
  char why[128];
  CT_OK(mb_cuda_device_count(&n, why, sizeof why));
  assert_true(n >= 1);
  mb_cuda_device_info info;
  CT_OK(mb_cuda_device_get_info(0, &info));
  assert_true(info.sm_count > 0 && info.total_mem > 0 && info.cc_major >= 7);
  assert_true(info.runtime_version >= 13000);
  char d[512];
  mb_cuda_device_describe(&info, d, sizeof d);
  assert_non_null(strstr(d, info.name));
  assert_int_equal(mb_cuda_device_get_info(n + 5, &info), MB_EDEVICE);
  assert_non_null(strstr(mb_error_message(), "does not exist"));
  assert_int_equal(mb_cuda_set_device(-1), MB_EDEVICE);
  CT_OK(mb_cuda_set_device(0));
  int dev = -1;
  CT_OK(mb_cuda_get_device(&dev));
  assert_int_equal(dev, 0);
  /* local rank r uses device r mod n; the environment overrides */
  CT_OK(mb_cuda_pick_device(n, &dev));
  assert_int_equal(dev, 0);
  setenv("MAMBERT_CUDA_DEVICE", "0", 1);
  CT_OK(mb_cuda_pick_device(3, &dev));
  assert_int_equal(dev, 0);
  setenv("MAMBERT_CUDA_DEVICE", "99", 1);
  assert_int_equal(mb_cuda_pick_device(0, &dev), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "MAMBERT_CUDA_DEVICE='99'"));
  unsetenv("MAMBERT_CUDA_DEVICE");
}

/* Work on stream a, an event, stream b waits for it: b sees a's result. */
static void test_streams_events_pinned(void **state) {
  (void)state;
  mb_cuda_stream a, b;
  mb_cuda_event e, t0, t1;
  CT_OK(mb_cuda_stream_create(&a, 0));
  CT_OK(mb_cuda_stream_create(&b, 1));
  CT_OK(mb_cuda_event_create(&e, 0));
  CT_OK(mb_cuda_event_create(&t0, 1));
  CT_OK(mb_cuda_event_create(&t1, 1));
  const size_t n = 1 << 22;
  mb_cuda_pinned_stats_t s0 = mb_cuda_pinned_stats();
  float *h_in, *h_out;
  CT_OK(mb_cuda_pinned_alloc(n * 4, (void **)&h_in));
  CT_OK(mb_cuda_pinned_alloc(n * 4, (void **)&h_out));
  mb_cuda_pinned_stats_t s1 = mb_cuda_pinned_stats();
  assert_true(s1.current == s0.current + 2 * n * 4);
  assert_true(s1.peak >= s1.current);
  ct_randn(h_in, n, 1.0f);
  memset(h_out, 0, n * 4);
  float *d1 = ct_dev(n * 4), *d2 = ct_dev(n * 4);
  CT_OK(mb_cuda_event_record(t0, a));
  CT_OK(mb_cuda_copy_h2d(d1, h_in, n * 4, a));
  CT_OK(mb_cuda_unary(MB_CUDA_AFFINE, MB_F32, d1, d1, (int64_t)n, 2.0f, 1.0f, a)); /* d1 = 2x + 1 */
  CT_OK(mb_cuda_event_record(e, a));
  CT_OK(mb_cuda_stream_wait_event(b, e));
  CT_OK(mb_cuda_copy_d2d(d2, d1, n * 4, b));
  CT_OK(mb_cuda_copy_d2h(h_out, d2, n * 4, b));
  CT_OK(mb_cuda_event_record(t1, b));
  CT_OK(mb_cuda_event_sync(t1));
  CT_OK(mb_cuda_stream_sync(a, "stream a"));
  for (size_t i = 0; i < n; i += 997)
    if (h_out[i] != 2.0f * h_in[i] + 1.0f)
      fail_msg("element %zu: %g, want %g", i, h_out[i], 2.0f * h_in[i] + 1.0f);
  float ms = -1;
  CT_OK(mb_cuda_event_elapsed_ms(t0, t1, &ms));
  printf("  16 MiB up, affine, device copy, 16 MiB down across two streams: %.3f ms\n", ms);
  assert_true(ms > 0.0f);
  /* a timing query on a non-timing event is a clear error */
  assert_int_equal(mb_cuda_event_elapsed_ms(e, t1, &ms), MB_EDEVICE);
  assert_non_null(strstr(mb_error_message(), "cudaEventElapsedTime"));
  /* memset */
  CT_OK(mb_cuda_memset(d2, 0, n * 4, a));
  CT_OK(mb_cuda_copy_d2h(h_out, d2, n * 4, a));
  CT_OK(mb_cuda_stream_sync(a, NULL));
  assert_true(h_out[0] == 0.0f && h_out[n - 1] == 0.0f);
  mb_cuda_pinned_free(h_in);
  mb_cuda_pinned_free(h_out);
  assert_true(mb_cuda_pinned_stats().current == s0.current);
  cudaFree(d1);
  cudaFree(d2);
  mb_cuda_event_destroy(e);
  mb_cuda_event_destroy(t0);
  mb_cuda_event_destroy(t1);
  mb_cuda_stream_destroy(a);
  mb_cuda_stream_destroy(b);
}

static void test_capture_detection(void **state) {
  (void)state;
  mb_cuda_stream s;
  CT_OK(mb_cuda_stream_create(&s, 0));
  assert_int_equal(mb_cuda_stream_is_capturing(s), 0);
  CT_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  assert_int_equal(mb_cuda_stream_is_capturing(s), 1);
  /* a synchronisation inside a capture fails with CUDA's reason */
  int rc = mb_cuda_stream_sync(s, "inside a capture");
  assert_int_not_equal(rc, MB_OK);
  printf("  stream sync during capture: %s\n", mb_error_message());
  cudaGraph_t g = NULL;
  (void)cudaStreamEndCapture(s, &g);
  (void)cudaGetLastError();
  if (g)
    cudaGraphDestroy(g);
  assert_int_equal(mb_cuda_stream_is_capturing(s), 0);
  mb_cuda_stream_destroy(s);
}

/* MB_CUDA_TRY: the call, CUDA's name for the error, our file and line. */
static int failing_call(void) {
  void *p;
  MB_CUDA_TRY(cudaMalloc(&p, (size_t)1 << 60));
  return MB_OK;
}

static void test_error_text(void **state) {
  (void)state;
  assert_int_equal(failing_call(), MB_ENOMEM);
  assert_non_null(strstr(mb_error_message(), "cudaMalloc(&p, (size_t)1 << 60) failed"));
  assert_non_null(strstr(mb_error_message(), "cudaErrorMemoryAllocation"));
  assert_non_null(strstr(mb_error_where(), "test_cuda_runtime.c"));
  /* not sticky */
  void *p;
  CT_CUDA(cudaMalloc(&p, 256));
  cudaFree(p);
}

int main(void) {
  ct_require_gpu("cuda_runtime");
  ct_seed_init("cuda_runtime");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_devices),
      cmocka_unit_test(test_streams_events_pinned),
      cmocka_unit_test(test_capture_detection),
      cmocka_unit_test(test_error_text),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
