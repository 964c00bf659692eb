/* test_dtype.c: the f32 <-> f16 / bf16 / fp8 conversions (runtime/dtype.h).
 *
 * Checked against an independent reference written here with double
 * arithmetic (frexp / ldexp / nearbyint): every f16, bf16 and fp8 encoding
 * decoded and re-encoded, the midpoint between every pair of neighbouring
 * encodings (an exact tie) and its two f32 neighbours, the special values,
 * and random f32 bit patterns. The bit-exact comparison with CUDA's own
 * functions is test_dtype_cuda.cpp (built when the toolkit is present).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/dtype.h"
#include "runtime/error.h"

static uint32_t bits(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  return u;
}

static float from_bits(uint32_t u) {
  float x;
  memcpy(&x, &u, 4);
  return x;
}

/* ---- a format described by numbers, and the reference built on it ---- */

typedef struct {
  const char *name;
  int nbits;        /* 16 or 8 */
  int mbits;        /* fraction bits */
  int ebits;
  int bias;
  int ieee_specials; /* all-ones exponent is Inf/NaN (f16, bf16, e5m2); else only S.1111.111 is NaN */
  double maxfin;
} fmt;

static const fmt F16 = {"f16", 16, 10, 5, 15, 1, 65504.0};
static const fmt BF16 = {"bf16", 16, 7, 8, 127, 1, 0x1.fep127};
static const fmt E4M3 = {"e4m3", 8, 3, 4, 7, 0, 448.0};
static const fmt E5M2 = {"e5m2", 8, 2, 5, 15, 1, 57344.0};

/* Decode by the textbook formula, in double. */
static double ref_decode(const fmt *f, uint32_t v, int *is_nan) {
  uint32_t sign = v >> (f->nbits - 1);
  uint32_t e = (v >> f->mbits) & ((1u << f->ebits) - 1u);
  uint32_t m = v & ((1u << f->mbits) - 1u);
  uint32_t emax = (1u << f->ebits) - 1u;
  *is_nan = 0;
  double mag;
  if (f->ieee_specials && e == emax) {
    if (m) {
      *is_nan = 1;
      return NAN;
    }
    mag = INFINITY;
  } else if (!f->ieee_specials && e == emax && m == (1u << f->mbits) - 1u) {
    *is_nan = 1;
    return NAN;
  } else if (e == 0) {
    mag = ldexp((double)m, 1 - f->bias - f->mbits);
  } else {
    mag = ldexp(1.0 + ldexp((double)m, -f->mbits), (int)e - f->bias);
  }
  return sign ? -mag : mag;
}

/* Round x (finite, not NaN) to the format with an unbounded exponent range
 * above: round to nearest even at the spacing of x's binade (or the
 * subnormal spacing). Overflow is applied by the caller. */
static double ref_round(const fmt *f, double x) {
  if (x == 0)
    return x;
  int e;
  frexp(fabs(x), &e);
  int lead = e - 1, emin = 1 - f->bias;
  if (lead < emin)
    lead = emin;
  double ulp = ldexp(1.0, lead - f->mbits);
  return copysign(nearbyint(fabs(x) / ulp) * ulp, x);
}

typedef uint32_t (*encode_fn)(float x, int sat);
typedef float (*decode_fn)(uint32_t v);

static uint32_t enc_f16(float x, int sat) { (void)sat; return mb_f32_to_f16(x); }
static uint32_t enc_bf16(float x, int sat) { (void)sat; return mb_f32_to_bf16(x); }
static uint32_t enc_e4m3(float x, int sat) { return mb_f32_to_e4m3(x, (mb_fp8_saturation)sat); }
static uint32_t enc_e5m2(float x, int sat) { return mb_f32_to_e5m2(x, (mb_fp8_saturation)sat); }
static float dec_f16(uint32_t v) { return mb_f16_to_f32((uint16_t)v); }
static float dec_bf16(uint32_t v) { return mb_bf16_to_f32((uint16_t)v); }
static float dec_e4m3(uint32_t v) { return mb_e4m3_to_f32((uint8_t)v); }
static float dec_e5m2(uint32_t v) { return mb_e5m2_to_f32((uint8_t)v); }

typedef struct {
  const fmt *f;
  encode_fn enc;
  decode_fn dec;
  int has_sat; /* fp8: test both modes */
  uint32_t canon_nan;
} codec;

static const codec CODECS[] = {
    {&F16, enc_f16, dec_f16, 0, 0x7fff},
    {&BF16, enc_bf16, dec_bf16, 0, 0x7fff},
    {&E4M3, enc_e4m3, dec_e4m3, 1, 0x7f},
    {&E5M2, enc_e5m2, dec_e5m2, 1, 0x7f},
};
#define NCODECS (sizeof CODECS / sizeof CODECS[0])

/* The encoding the reference expects for x under `sat`. */
static uint32_t ref_encode(const codec *c, float x, int sat) {
  const fmt *f = c->f;
  uint32_t signbit = 1u << (f->nbits - 1);
  uint32_t sign = (bits(x) >> 31) ? signbit : 0;
  if (isnan(x))
    return c->canon_nan;
  double r = isinf(x) ? (double)x : ref_round(f, (double)x);
  if (fabs(r) > f->maxfin) { /* overflow (Inf input included) */
    if (f->nbits == 16)
      return sign | (((1u << f->ebits) - 1u) << f->mbits); /* Inf */
    if (sat)
      return sign | (f == &E4M3 ? 0x7eu : 0x7bu);
    return sign | (f == &E4M3 ? 0x7fu : 0x7cu);
  }
  /* Find the encoding of r by searching the positive encodings (small formats). */
  double mag = fabs(r);
  uint32_t lo = 0, hi = (f->nbits == 16 ? (((1u << f->ebits) - 1u) << f->mbits) : 0x7fu);
  while (lo < hi) { /* encodings of finite positives are ordered like their values */
    uint32_t mid = (lo + hi) / 2;
    int nan;
    double v = ref_decode(f, mid, &nan);
    if (v < mag)
      lo = mid + 1;
    else
      hi = mid;
  }
  return sign | lo;
}

static void check_one(const codec *c, float x, int sat) {
  uint32_t got = c->enc(x, sat), want = ref_encode(c, x, sat);
  if (got != want) {
    fail_msg("%s(%s): x=%a (0x%08x): got 0x%x, want 0x%x", c->f->name,
             c->has_sat ? (sat ? "satfinite" : "nosat") : "rn", (double)x, bits(x), got, want);
  }
}

/* ---- every encoding: decode matches the formula; re-encoding returns it ---- */

static void exhaustive(const codec *c) {
  uint32_t n = 1u << c->f->nbits;
  for (uint32_t v = 0; v < n; v++) {
    int is_nan;
    double want = ref_decode(c->f, v, &is_nan);
    float got = c->dec(v);
    if (is_nan) {
      /* CUDA's NaN on the way up: f16/fp8 canonical 0x7fffffff, bf16 exact shift. */
      uint32_t want_bits = c->f == &BF16 ? v << 16 : 0x7fffffffu;
      if (bits(got) != want_bits)
        fail_msg("%s decode 0x%x: got 0x%08x, want 0x%08x", c->f->name, v, bits(got), want_bits);
      for (int sat = 0; sat <= c->has_sat; sat++)
        assert_int_equal(c->enc(got, sat), c->canon_nan);
      continue;
    }
    if ((double)got != want || !signbit(got) != !signbit(want))
      fail_msg("%s decode 0x%x: got %a, want %a", c->f->name, v, (double)got, want);
    for (int sat = 0; sat <= c->has_sat; sat++) {
      uint32_t back = c->enc(got, sat);
      uint32_t expect = v;
      if (isinf(got) && c->has_sat && sat) /* e5m2 Inf under SATFINITE -> max finite */
        expect = (v & 0x80u) | 0x7bu;
      if (back != expect)
        fail_msg("%s round trip 0x%x (%a) sat=%d: got 0x%x", c->f->name, v, (double)got, sat, back);
    }
  }
}

static void test_dtype_f16_every_encoding(void **state) { (void)state; exhaustive(&CODECS[0]); }
static void test_dtype_bf16_every_encoding(void **state) { (void)state; exhaustive(&CODECS[1]); }
static void test_dtype_fp8_every_encoding(void **state) {
  (void)state;
  exhaustive(&CODECS[2]);
  exhaustive(&CODECS[3]);
}

/* ---- ties: the midpoint of every pair of neighbours, and just off it ---- */

static void ties(const codec *c) {
  const fmt *f = c->f;
  uint32_t top = f->nbits == 16 ? (((1u << f->ebits) - 1u) << f->mbits) - 1u : (f == &E4M3 ? 0x7eu : 0x7bu);
  uint32_t signbit = 1u << (f->nbits - 1);
  long checked = 0;
  for (uint32_t v = 0; v <= top; v++) {
    int nan;
    double a = ref_decode(f, v, &nan);
    /* the next value up; past max finite it is max + ulp (the overflow tie) */
    double b = v < top ? ref_decode(f, v + 1, &nan) : a + (a - ref_decode(f, v - 1, &nan));
    double mid = (a + b) / 2;
    float m = (float)mid;
    assert_true((double)m == mid); /* every midpoint is exact in f32 */
    float below = nextafterf(m, 0.0f), above = nextafterf(m, INFINITY);
    for (int sat = 0; sat <= c->has_sat; sat++) {
      for (int neg = 0; neg <= 1; neg++) {
        float s = neg ? -1.0f : 1.0f;
        check_one(c, s * m, sat);
        check_one(c, s * below, sat);
        check_one(c, s * above, sat);
        checked += 3;
      }
      /* spell out the rule at ties, independent of the reference */
      uint32_t even = (v & 1u) ? v + 1 : v;
      uint32_t got = c->enc(m, sat);
      if (v < top && got != even)
        fail_msg("%s tie %a between 0x%x and 0x%x: got 0x%x", f->name, mid, v, v + 1, got);
      if (v < top) {
        assert_int_equal(c->enc(below, sat), v);
        assert_int_equal(c->enc(above, sat), v + 1);
        assert_int_equal(c->enc(-m, sat), signbit | even);
      }
    }
  }
  assert_true(checked > 0);
}

static void test_dtype_ties_every_binade(void **state) {
  (void)state;
  for (size_t i = 0; i < NCODECS; i++)
    ties(&CODECS[i]);
}

/* ---- hand-picked f32 edge cases with spelled-out answers ---- */

static void test_dtype_edge_cases(void **state) {
  (void)state;
  /* zeros keep their sign */
  assert_int_equal(mb_f32_to_f16(0.0f), 0x0000);
  assert_int_equal(mb_f32_to_f16(-0.0f), 0x8000);
  assert_int_equal(mb_f32_to_bf16(-0.0f), 0x8000);
  assert_int_equal(mb_f32_to_e4m3(-0.0f, MB_FP8_NOSAT), 0x80);
  assert_int_equal(mb_f32_to_e5m2(-0.0f, MB_FP8_SATFINITE), 0x80);
  /* f32 subnormals underflow to signed zero in f16 and fp8, stay in bf16 */
  assert_int_equal(mb_f32_to_f16(0x1p-149f), 0x0000);
  assert_int_equal(mb_f32_to_f16(-0x1p-149f), 0x8000);
  assert_int_equal(mb_f32_to_bf16(0x1p-149f), 0x0000); /* 2^-149 < half of bf16's 2^-133 */
  assert_int_equal(mb_f32_to_bf16(0x1p-133f), 0x0001);  /* smallest bf16 subnormal */
  assert_int_equal(mb_f32_to_bf16(0x1p-134f), 0x0000);  /* its half: tie to even */
  assert_int_equal(mb_f32_to_bf16(0x1.8p-134f), 0x0001);
  assert_int_equal(mb_f32_to_e4m3(0x1p-149f, MB_FP8_SATFINITE), 0x00);
  /* f16 subnormals: smallest 2^-24, half of it ties to 0, a hair above rounds up */
  assert_int_equal(mb_f32_to_f16(0x1p-24f), 0x0001);
  assert_int_equal(mb_f32_to_f16(0x1p-25f), 0x0000);
  assert_int_equal(mb_f32_to_f16(0x1.000002p-25f), 0x0001);
  assert_int_equal(mb_f32_to_f16(0x1.8p-24f), 0x0002); /* 1.5 ulp: tie to even (2) */
  assert_int_equal(mb_f32_to_f16(0x1p-14f), 0x0400);   /* smallest normal */
  assert_int_equal(mb_f32_to_f16(0x1.ff8p-15f), 0x03ff); /* largest subnormal */
  assert_int_equal(mb_f32_to_f16(0x1.ffcp-15f), 0x0400); /* tie rounds up into the normals (even) */
  /* fp8 subnormals */
  assert_int_equal(mb_f32_to_e4m3(0x1p-9f, MB_FP8_NOSAT), 0x01);
  assert_int_equal(mb_f32_to_e4m3(0x1p-10f, MB_FP8_NOSAT), 0x00);
  assert_int_equal(mb_f32_to_e4m3(0x1.000002p-10f, MB_FP8_NOSAT), 0x01);
  assert_int_equal(mb_f32_to_e4m3(0x1p-6f, MB_FP8_NOSAT), 0x08);
  assert_int_equal(mb_f32_to_e5m2(0x1p-16f, MB_FP8_NOSAT), 0x01);
  assert_int_equal(mb_f32_to_e5m2(0x1p-17f, MB_FP8_NOSAT), 0x00);
  assert_int_equal(mb_f32_to_e5m2(0x1p-14f, MB_FP8_NOSAT), 0x04);
  /* max finite and the overflow thresholds */
  assert_int_equal(mb_f32_to_f16(65504.0f), 0x7bff);
  assert_int_equal(mb_f32_to_f16(65519.996f), 0x7bff);
  assert_int_equal(mb_f32_to_f16(65520.0f), 0x7c00); /* tie at max + ulp/2 goes to Inf (even) */
  assert_int_equal(mb_f32_to_f16(-65520.0f), 0xfc00);
  assert_int_equal(mb_f32_to_f16(1e30f), 0x7c00);
  assert_int_equal(mb_f32_to_bf16(from_bits(0x7f7fffffu)), 0x7f80); /* FLT_MAX rounds to Inf */
  assert_int_equal(mb_f32_to_bf16(from_bits(0x7f7f7fffu)), 0x7f7f);
  assert_int_equal(mb_f32_to_bf16(from_bits(0x7f7f8000u)), 0x7f80); /* tie, odd below: up to Inf */
  assert_int_equal(mb_f32_to_e4m3(448.0f, MB_FP8_NOSAT), 0x7e);
  assert_int_equal(mb_f32_to_e4m3(464.0f, MB_FP8_NOSAT), 0x7e); /* tie: down to 448 (even) */
  assert_int_equal(mb_f32_to_e4m3(464.0f, MB_FP8_SATFINITE), 0x7e);
  assert_int_equal(mb_f32_to_e4m3(nextafterf(464.0f, 1e9f), MB_FP8_NOSAT), 0x7f);
  assert_int_equal(mb_f32_to_e4m3(nextafterf(464.0f, 1e9f), MB_FP8_SATFINITE), 0x7e);
  assert_int_equal(mb_f32_to_e4m3(-1e6f, MB_FP8_NOSAT), 0xff);
  assert_int_equal(mb_f32_to_e4m3(-1e6f, MB_FP8_SATFINITE), 0xfe);
  assert_int_equal(mb_f32_to_e5m2(57344.0f, MB_FP8_NOSAT), 0x7b);
  assert_int_equal(mb_f32_to_e5m2(nextafterf(61440.0f, 0), MB_FP8_NOSAT), 0x7b);
  assert_int_equal(mb_f32_to_e5m2(61440.0f, MB_FP8_NOSAT), 0x7c);
  assert_int_equal(mb_f32_to_e5m2(61440.0f, MB_FP8_SATFINITE), 0x7b);
  assert_int_equal(mb_f32_to_e5m2(-61440.0f, MB_FP8_NOSAT), 0xfc);
  /* Inf */
  assert_int_equal(mb_f32_to_f16(INFINITY), 0x7c00);
  assert_int_equal(mb_f32_to_f16(-INFINITY), 0xfc00);
  assert_int_equal(mb_f32_to_bf16(-INFINITY), 0xff80);
  assert_int_equal(mb_f32_to_e4m3(INFINITY, MB_FP8_NOSAT), 0x7f);   /* no Inf in E4M3: NaN */
  assert_int_equal(mb_f32_to_e4m3(-INFINITY, MB_FP8_NOSAT), 0xff);  /* sign kept, like CUDA */
  assert_int_equal(mb_f32_to_e4m3(INFINITY, MB_FP8_SATFINITE), 0x7e);
  assert_int_equal(mb_f32_to_e4m3(-INFINITY, MB_FP8_SATFINITE), 0xfe);
  assert_int_equal(mb_f32_to_e5m2(-INFINITY, MB_FP8_NOSAT), 0xfc);
  assert_int_equal(mb_f32_to_e5m2(-INFINITY, MB_FP8_SATFINITE), 0xfb);
  assert_true(isinf(mb_e5m2_to_f32(0xfc)) && mb_e5m2_to_f32(0xfc) < 0);
  /* NaN payloads and signs: all become the positive canonical NaN */
  const uint32_t nans[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u, 0x7fbfffffu, 0x7fffffffu, 0xffffffffu, 0x7fa5a5a5u};
  for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
    float x = from_bits(nans[i]);
    assert_int_equal(mb_f32_to_f16(x), 0x7fff);
    assert_int_equal(mb_f32_to_bf16(x), 0x7fff);
    assert_int_equal(mb_f32_to_e4m3(x, MB_FP8_NOSAT), 0x7f);
    assert_int_equal(mb_f32_to_e4m3(x, MB_FP8_SATFINITE), 0x7f);
    assert_int_equal(mb_f32_to_e5m2(x, MB_FP8_NOSAT), 0x7f);
    assert_int_equal(mb_f32_to_e5m2(x, MB_FP8_SATFINITE), 0x7f);
  }
  assert_int_equal(bits(mb_f16_to_f32(0xfe01)), 0x7fffffffu);
  assert_int_equal(bits(mb_bf16_to_f32(0xffc1)), 0xffc10000u);
  assert_int_equal(bits(mb_e4m3_to_f32(0xff)), 0x7fffffffu);
  assert_int_equal(bits(mb_e5m2_to_f32(0xfd)), 0x7fffffffu);
  /* ordinary values */
  assert_int_equal(mb_f32_to_f16(1.0f), 0x3c00);
  assert_int_equal(mb_f32_to_f16(-2.0f), 0xc000);
  assert_int_equal(mb_f32_to_f16(1.0f / 3.0f), 0x3555);
  assert_int_equal(mb_f32_to_bf16(1.0f / 3.0f), 0x3eab);
  assert_int_equal(mb_f32_to_e4m3(1.0f / 3.0f, MB_FP8_SATFINITE), 0x2b);
  assert_int_equal(mb_f32_to_e5m2(1.0f / 3.0f, MB_FP8_NOSAT), 0x35);
  assert_true(mb_e4m3_to_f32(0x7e) == 448.0f);
  assert_true(mb_e4m3_to_f32(0x01) == 0x1p-9f);
  assert_true(mb_e5m2_to_f32(0x7b) == 57344.0f);
}

/* ---- random f32 bit patterns against the reference ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t next_u32(void) { /* xorshift64*: only needs to be varied, not good */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}

static void test_dtype_random_f32_patterns(void **state) {
  (void)state;
  const int n = 1 << 20;
  for (int i = 0; i < n; i++) {
    /* half uniform over all bit patterns, half with exponents near the formats' ranges */
    uint32_t u = next_u32();
    if (i & 1) {
      int e = (int)(next_u32() % 60) - 30; /* 2^-30 .. 2^29 */
      u = (u & 0x807fffffu) | ((uint32_t)(e + 127) << 23);
    }
    float x = from_bits(u);
    for (size_t c = 0; c < NCODECS; c++)
      for (int sat = 0; sat <= CODECS[c].has_sat; sat++)
        check_one(&CODECS[c], x, sat);
  }
}

/* ---- mb_round_to and the bulk mb_convert ---- */

static void test_dtype_round_to(void **state) {
  (void)state;
  assert_true(mb_round_to(1.0f / 3.0f, MB_F32) == 1.0f / 3.0f);
  assert_true(mb_round_to(1.0f / 3.0f, MB_F16) == mb_f16_to_f32(0x3555));
  assert_true(mb_round_to(1.0f / 3.0f, MB_BF16) == mb_bf16_to_f32(0x3eab));
  assert_true(mb_round_to(1000.0f, MB_F8E4M3) == 448.0f); /* saturating */
  assert_true(mb_round_to(1e6f, MB_F8E5M2) == 57344.0f);
  assert_true(mb_round_to(1e6f, MB_F16) == INFINITY);
  assert_true(mb_round_to(7.0f, MB_I32) == 7.0f);
}

/* Element i of a buffer as f32, through the scalar decoders. */
static float load_one(const void *p, mb_dtype dt, size_t i) {
  switch (dt) {
  case MB_F32: return ((const float *)p)[i];
  case MB_F64: return (float)((const double *)p)[i];
  case MB_F16: return mb_f16_to_f32(((const uint16_t *)p)[i]);
  case MB_BF16: return mb_bf16_to_f32(((const uint16_t *)p)[i]);
  case MB_F8E4M3: return mb_e4m3_to_f32(((const uint8_t *)p)[i]);
  case MB_F8E5M2: return mb_e5m2_to_f32(((const uint8_t *)p)[i]);
  default: fail_msg("not a float dtype"); return 0;
  }
}

static void test_dtype_convert_bulk(void **state) {
  (void)state;
  const mb_dtype fl[] = {MB_F32, MB_F64, MB_F16, MB_BF16, MB_F8E4M3, MB_F8E5M2};
  const size_t n = 200000; /* above the OpenMP threshold */
  float *x = malloc(n * sizeof(float));
  double *xd = malloc(n * sizeof(double));
  unsigned char *a = malloc(n * 8), *b = malloc(n * 8);
  float *back = malloc(n * sizeof(float));
  assert_non_null(x);
  assert_non_null(xd);
  assert_non_null(a);
  assert_non_null(b);
  assert_non_null(back);
  for (size_t i = 0; i < n; i++) {
    uint32_t u = next_u32();
    int e = (int)(next_u32() % 50) - 25;
    x[i] = from_bits((u & 0x807fffffu) | ((uint32_t)(e + 127) << 23));
  }
  x[0] = NAN;
  x[1] = -INFINITY;
  x[2] = -0.0f;
  /* f32 -> every float dtype -> every float dtype, checked element-wise against the scalars */
  for (size_t s = 0; s < 6; s++) {
    assert_int_equal(mb_convert(a, fl[s], x, MB_F32, n), MB_OK);
    for (size_t d = 0; d < 6; d++) {
      assert_int_equal(mb_convert(b, fl[d], a, fl[s], n), MB_OK);
      assert_int_equal(mb_convert(back, MB_F32, b, fl[d], n), MB_OK);
      for (size_t i = 0; i < n; i++) {
        float src = load_one(a, fl[s], i);
        float want = mb_round_to(src, fl[d]);
        if (!(bits(back[i]) == bits(want) || (isnan(back[i]) && isnan(want))))
          fail_msg("convert %s -> %s element %zu: %a, want %a", mb_dtype_name(fl[s]),
                   mb_dtype_name(fl[d]), i, (double)back[i], (double)want);
      }
    }
  }
  /* f64 -> f16 rounds once: 1 + 2^-11 + 2^-40 is just above an f16 tie, but a
   * naive f64 -> f32 -> f16 lands exactly on the tie and rounds down. */
  double d1 = 1.0 + 0x1p-11 + 0x1p-40;
  uint16_t h;
  assert_int_equal(mb_convert(&h, MB_F16, &d1, MB_F64, 1), MB_OK);
  assert_int_equal(h, 0x3c01);
  assert_int_equal(mb_f32_to_f16((float)d1), 0x3c00);
  double d2 = 1.0 + 0x1p-11 - 0x1p-40; /* just below: down */
  assert_int_equal(mb_convert(&h, MB_F16, &d2, MB_F64, 1), MB_OK);
  assert_int_equal(h, 0x3c00);
  double d3 = 1e300; /* beyond f32: Inf in f16, max finite in saturating fp8 */
  uint8_t q;
  assert_int_equal(mb_convert(&h, MB_F16, &d3, MB_F64, 1), MB_OK);
  assert_int_equal(h, 0x7c00);
  assert_int_equal(mb_convert(&q, MB_F8E4M3, &d3, MB_F64, 1), MB_OK);
  assert_int_equal(q, 0x7e);
  for (size_t i = 0; i < n; i++)
    xd[i] = (double)x[i] * (1.0 + 0x1p-30);
  assert_int_equal(mb_convert(a, MB_BF16, xd, MB_F64, n), MB_OK);
  for (size_t i = 3; i < n; i++) {
    /* reference: the exact double rounded straight to bf16 */
    double r = ref_round(&BF16, xd[i]);
    float got = mb_bf16_to_f32(((uint16_t *)a)[i]);
    if (fabs(r) > BF16.maxfin ? !isinf(got) : (double)got != r)
      fail_msg("f64 -> bf16 element %zu: %a -> %a, want %a", i, xd[i], (double)got, r);
  }
  /* integers: same-size copies, the rest unsupported with a message */
  int32_t iv[3] = {-1, 7, INT32_MIN};
  uint32_t uv[3];
  assert_int_equal(mb_convert(uv, MB_U32, iv, MB_I32, 3), MB_OK);
  assert_int_equal(uv[0], 0xffffffffu);
  assert_int_equal(uv[2], 0x80000000u);
  assert_int_equal(mb_convert(back, MB_F32, iv, MB_I32, 3), MB_EUNSUPPORTED);
  assert_non_null(strstr(mb_error_message(), "i32 to f32"));
  assert_int_equal(mb_convert(uv, MB_I64, iv, MB_I32, 3), MB_EUNSUPPORTED);
  assert_int_equal(mb_convert(NULL, MB_F16, x, MB_F32, 3), MB_EINVAL);
  assert_int_equal(mb_convert(NULL, MB_F16, NULL, MB_F32, 0), MB_OK);
  free(x);
  free(xd);
  free(a);
  free(b);
  free(back);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dtype_f16_every_encoding),
      cmocka_unit_test(test_dtype_bf16_every_encoding),
      cmocka_unit_test(test_dtype_fp8_every_encoding),
      cmocka_unit_test(test_dtype_ties_every_binade),
      cmocka_unit_test(test_dtype_edge_cases),
      cmocka_unit_test(test_dtype_random_f32_patterns),
      cmocka_unit_test(test_dtype_round_to),
      cmocka_unit_test(test_dtype_convert_bulk),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
