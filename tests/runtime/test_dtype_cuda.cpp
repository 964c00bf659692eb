/* test_dtype_cuda.cpp: our conversions (runtime/dtype.h) against CUDA's own,
 * bit for bit, on the host.
 *
 * cuda_fp16.h, cuda_bf16.h and cuda_fp8.h give host implementations of
 * __float2half_rn, __half2float, __float2bfloat16_rn, __bfloat162float,
 * __nv_cvt_float_to_fp8, __nv_cvt_fp8_to_halfraw (and the double versions);
 * compiled as ordinary C++ they run without a GPU and without linking cudart.
 * On sm_89+ devices the fp8 SATFINITE conversions use a PTX instruction
 * instead; that path cannot be compared here.
 *
 * f64 NaNs are only checked to stay NaN (see test_dtype_cuda_f64).
 * Compared: every f16 / bf16 / fp8 encoding (decode, then re-encode the
 * result in every mode), every tie between neighbouring encodings and its f32
 * neighbours, 2^24 f32 bit patterns spread over the whole space, and 2^20
 * doubles (f64 -> f16 / bf16 / fp8 through mb_convert). With
 * MAMBERT_DTYPE_EXHAUSTIVE=1 in the environment it also runs all 2^32 f32
 * patterns (minutes; not part of ctest).
 * Built only when the CUDA toolkit is found (MAMBERT_HAVE_CUDA).
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

extern "C" {
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
}

#include "runtime/dtype.h"
#include "runtime/error.h"

static uint32_t bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}

static float from_bits(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

/* ---- CUDA's side, through the raw storage types ---- */

static uint16_t cuda_f32_to_f16(float x) { return static_cast<__half_raw>(__float2half_rn(x)).x; }
static float cuda_f16_to_f32(uint16_t h) {
  __half_raw r;
  r.x = h;
  return __half2float(__half(r));
}
static uint16_t cuda_f32_to_bf16(float x) {
  return static_cast<__nv_bfloat16_raw>(__float2bfloat16_rn(x)).x;
}
static float cuda_bf16_to_f32(uint16_t h) {
  __nv_bfloat16_raw r;
  r.x = h;
  return __bfloat162float(__nv_bfloat16(r));
}
static uint8_t cuda_f32_to_fp8(float x, int sat, int e4m3) {
  return __nv_cvt_float_to_fp8(x, sat ? __NV_SATFINITE : __NV_NOSAT, e4m3 ? __NV_E4M3 : __NV_E5M2);
}
/* what float(__nv_fp8_e4m3) / float(__nv_fp8_e5m2) do */
static float cuda_fp8_to_f32(uint8_t v, int e4m3) {
  __half_raw h = __nv_cvt_fp8_to_halfraw(v, e4m3 ? __NV_E4M3 : __NV_E5M2);
  return __half2float(__half(h));
}

/* ---- counting comparisons ---- */

struct tally {
  std::atomic<uint64_t> compared{0}, mismatched{0};
};

static tally T;

static void report_mismatch(const char *what, uint64_t input, uint32_t ours, uint32_t cuda) {
  if (T.mismatched.fetch_add(1) < 20)
    std::fprintf(stderr, "MISMATCH %s input 0x%llx: ours 0x%x, cuda 0x%x\n", what,
                 (unsigned long long)input, ours, cuda);
}

/* All encoders on one f32 input; adds to *compared (per thread) so the
 * shared counter is not touched per call. */
static void compare_f32_count(float x, uint64_t *compared) {
  uint32_t u = bits(x), a, b;
  if ((a = mb_f32_to_f16(x)) != (b = cuda_f32_to_f16(x)))
    report_mismatch("f32->f16", u, a, b);
  if ((a = mb_f32_to_bf16(x)) != (b = cuda_f32_to_bf16(x)))
    report_mismatch("f32->bf16", u, a, b);
  for (int sat = 0; sat <= 1; sat++) {
    if ((a = mb_f32_to_e4m3(x, (mb_fp8_saturation)sat)) != (b = cuda_f32_to_fp8(x, sat, 1)))
      report_mismatch(sat ? "f32->e4m3 satfinite" : "f32->e4m3 nosat", u, a, b);
    if ((a = mb_f32_to_e5m2(x, (mb_fp8_saturation)sat)) != (b = cuda_f32_to_fp8(x, sat, 0)))
      report_mismatch(sat ? "f32->e5m2 satfinite" : "f32->e5m2 nosat", u, a, b);
  }
  *compared += 6;
}

static void compare_f32(float x) {
  uint64_t n = 0;
  compare_f32_count(x, &n);
  T.compared += n;
}

static void check_clean(const char *what) {
  std::printf("%-40s %12llu conversions compared, %llu mismatches\n", what,
              (unsigned long long)T.compared.load(), (unsigned long long)T.mismatched.load());
  assert_true(T.compared.load() > 0);
  assert_int_equal(T.mismatched.load(), 0);
  T.compared = 0;
  T.mismatched = 0;
}

/* ---- every encoding ---- */

static void test_dtype_cuda_f16_bf16_every_encoding(void **state) {
  (void)state;
  for (uint32_t v = 0; v < 65536; v++) {
    float ours = mb_f16_to_f32((uint16_t)v), cuda = cuda_f16_to_f32((uint16_t)v);
    if (bits(ours) != bits(cuda))
      report_mismatch("f16->f32", v, bits(ours), bits(cuda));
    ours = mb_bf16_to_f32((uint16_t)v), cuda = cuda_bf16_to_f32((uint16_t)v);
    if (bits(ours) != bits(cuda))
      report_mismatch("bf16->f32", v, bits(ours), bits(cuda));
    T.compared.fetch_add(2);
    compare_f32(mb_f16_to_f32((uint16_t)v)); /* and back, in every format */
    compare_f32(mb_bf16_to_f32((uint16_t)v));
  }
  check_clean("f16/bf16: all 65536 encodings");
}

static void test_dtype_cuda_fp8_every_encoding(void **state) {
  (void)state;
  for (uint32_t v = 0; v < 256; v++) {
    float ours = mb_e4m3_to_f32((uint8_t)v), cuda = cuda_fp8_to_f32((uint8_t)v, 1);
    if (bits(ours) != bits(cuda))
      report_mismatch("e4m3->f32", v, bits(ours), bits(cuda));
    ours = mb_e5m2_to_f32((uint8_t)v), cuda = cuda_fp8_to_f32((uint8_t)v, 0);
    if (bits(ours) != bits(cuda))
      report_mismatch("e5m2->f32", v, bits(ours), bits(cuda));
    T.compared.fetch_add(2);
    compare_f32(mb_e4m3_to_f32((uint8_t)v));
    compare_f32(mb_e5m2_to_f32((uint8_t)v));
  }
  check_clean("fp8: all 256 encodings of each format");
}

/* ---- ties: between every pair of neighbouring values of every format ---- */

static void ties_of(float (*dec)(uint32_t), uint32_t top) {
  for (uint32_t v = 0; v <= top; v++) {
    double a = dec(v);
    double b = v < top ? (double)dec(v + 1) : a + (a - (double)dec(v - 1));
    float m = (float)((a + b) / 2);
    float probe[] = {m, nextafterf(m, 0.0f), nextafterf(m, INFINITY),
                     nextafterf(nextafterf(m, 0.0f), 0.0f), nextafterf(nextafterf(m, INFINITY), INFINITY)};
    for (float p : probe) {
      compare_f32(p);
      compare_f32(-p);
    }
  }
}

static float dec16(uint32_t v) { return mb_f16_to_f32((uint16_t)v); }
static float decb16(uint32_t v) { return mb_bf16_to_f32((uint16_t)v); }
static float dec43(uint32_t v) { return mb_e4m3_to_f32((uint8_t)v); }
static float dec52(uint32_t v) { return mb_e5m2_to_f32((uint8_t)v); }

static void test_dtype_cuda_ties(void **state) {
  (void)state;
  ties_of(dec16, 0x7bff);
  ties_of(decb16, 0x7f7f);
  ties_of(dec43, 0x7e);
  ties_of(dec52, 0x7b);
  /* specials and NaN payloads */
  const uint32_t specials[] = {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u,
                               0xffc00000u, 0x7f800001u, 0xff800001u, 0x7fbfffffu, 0xffffffffu,
                               0x00000001u, 0x807fffffu, 0x7f7fffffu, 0xff7fffffu};
  for (uint32_t u : specials)
    compare_f32(from_bits(u));
  check_clean("ties +-1,2 ulp in every binade, specials");
}

/* ---- f32 bit patterns ---- */

/* Patterns i * K mod 2^32 for an odd K visit distinct values spread over
 * every exponent and mantissa bit. */
static void sweep(uint64_t begin, uint64_t end, uint32_t mult, uint64_t *compared) {
  for (uint64_t i = begin; i < end; i++)
    compare_f32_count(from_bits((uint32_t)i * mult), compared);
}

static void parallel_sweep(uint64_t n, uint32_t mult) {
  unsigned nt = std::thread::hardware_concurrency();
  if (nt == 0)
    nt = 2;
  std::vector<std::thread> threads;
  std::vector<uint64_t> counts(nt, 0);
  for (unsigned t = 0; t < nt; t++)
    threads.emplace_back(sweep, n * t / nt, n * (t + 1) / nt, mult, &counts[t]);
  for (auto &th : threads)
    th.join();
  for (uint64_t c : counts)
    T.compared += c;
}

static void test_dtype_cuda_f32_patterns(void **state) {
  (void)state;
  parallel_sweep(1ull << 24, 0x9e3779b1u);
  check_clean("2^24 f32 patterns (i * 0x9e3779b1)");
  const char *ex = std::getenv("MAMBERT_DTYPE_EXHAUSTIVE");
  if (ex && ex[0] == '1') {
    parallel_sweep(1ull << 32, 1u);
    check_clean("all 2^32 f32 patterns");
  }
}

/* ---- f64 sources: mb_convert against __double2half & co ---- */

static void test_dtype_cuda_f64(void **state) {
  (void)state;
  const size_t n = 1u << 20;
  std::vector<double> x(n);
  uint64_t s = 0x243f6a8885a308d3ull;
  for (size_t i = 0; i < n; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    uint64_t u = s;
    if (i & 1) { /* exponents around the small formats' ranges */
      int e = (int)((s >> 40) % 80) - 40;
      u = (u & 0x800fffffffffffffull) | ((uint64_t)(e + 1023) << 52);
    }
    std::memcpy(&x[i], &u, 8);
  }
  std::vector<uint16_t> h(n), b(n);
  std::vector<uint8_t> e4(n), e5(n);
  assert_int_equal(mb_convert(h.data(), MB_F16, x.data(), MB_F64, n), MB_OK);
  assert_int_equal(mb_convert(b.data(), MB_BF16, x.data(), MB_F64, n), MB_OK);
  assert_int_equal(mb_convert(e4.data(), MB_F8E4M3, x.data(), MB_F64, n), MB_OK);
  assert_int_equal(mb_convert(e5.data(), MB_F8E5M2, x.data(), MB_F64, n), MB_OK);
  size_t nan_inputs = 0;
  for (size_t i = 0; i < n; i++) {
    uint64_t u;
    std::memcpy(&u, &x[i], 8);
    uint32_t c = static_cast<__half_raw>(__double2half(x[i])).x;
    if (h[i] != c)
      report_mismatch("f64->f16", u, h[i], c);
    c = static_cast<__nv_bfloat16_raw>(__double2bfloat16(x[i])).x;
    if (b[i] != c)
      report_mismatch("f64->bf16", u, b[i], c);
    T.compared += 2;
    if (std::isnan(x[i])) {
      /* __nv_cvt_double_to_fp8 keeps a NaN's sign (and for E5M2 its top
       * payload bits); mb_convert gives the canonical 0x7f, as the f32 path
       * of both does. Both must still be NaN. */
      assert_true(std::isnan(mb_e4m3_to_f32(e4[i])) && std::isnan(mb_e5m2_to_f32(e5[i])));
      nan_inputs++;
      continue;
    }
    c = __nv_cvt_double_to_fp8(x[i], __NV_SATFINITE, __NV_E4M3);
    if (e4[i] != c)
      report_mismatch("f64->e4m3 satfinite", u, e4[i], c);
    c = __nv_cvt_double_to_fp8(x[i], __NV_SATFINITE, __NV_E5M2);
    if (e5[i] != c)
      report_mismatch("f64->e5m2 satfinite", u, e5[i], c);
    T.compared += 2;
  }
  std::printf("(%zu of the f64 inputs are NaN: compared for f16/bf16 only)\n", nan_inputs);
  check_clean("2^20 f64 values via mb_convert");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dtype_cuda_f16_bf16_every_encoding),
      cmocka_unit_test(test_dtype_cuda_fp8_every_encoding),
      cmocka_unit_test(test_dtype_cuda_ties),
      cmocka_unit_test(test_dtype_cuda_f32_patterns),
      cmocka_unit_test(test_dtype_cuda_f64),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
