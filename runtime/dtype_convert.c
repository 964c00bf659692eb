/* dtype_convert.c: f32 <-> f16 / bf16 / fp8 (E4M3, E5M2) scalar conversions,
 * mb_round_to, and the bulk mb_convert (dtype.h).
 *
 * Every conversion reproduces CUDA's conversion functions bit for bit
 * (tests/runtime/test_dtype_cuda.cpp compares them with the toolkit's host
 * implementations), including the corners where CUDA is not plain IEEE:
 *  - f32 -> f16 / bf16 / fp8: any NaN becomes the positive canonical NaN
 *    (f16/bf16 0x7fff, fp8 0x7f); its sign and payload are dropped.
 *  - f16 / fp8 -> f32: any NaN becomes 0x7fffffff; bf16 -> f32 is a plain
 *    shift (sign and payload kept), as in cuda_bf16.hpp.
 *  - fp8 overflow is decided on the unrounded magnitude: E4M3 overflows above
 *    464 (= 448 + half an ulp; 464 itself ties to 448), E5M2 at or above
 *    61440 (= 57344 + half an ulp; that tie would round to Inf anyway).
 *    SATFINITE gives +-max finite, also for +-Inf input; NOSAT gives
 *    sign|0x7f (a NaN: E4M3 has no Inf) for E4M3 and +-Inf for E5M2.
 * The code works on the f32 bit pattern with integer arithmetic, so it does
 * not depend on the FPU rounding mode or on flush-to-zero settings.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "runtime/dtype.h"
#include "runtime/error.h"

static inline uint32_t f32_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}

static inline float f32_from_bits(uint32_t u) {
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}

/* Shift `mant` right by `shift` (1..31) rounding to nearest, ties to even. */
static inline uint32_t shift_rne(uint32_t mant, unsigned shift) {
  uint32_t q = mant >> shift;
  uint32_t rem = mant & ((1u << shift) - 1u);
  uint32_t half = 1u << (shift - 1u);
  return q + (rem > half || (rem == half && (q & 1u)));
}

/* ---- f16: 1 sign, 5 exponent (bias 15), 10 fraction bits ---- */

uint16_t mb_f32_to_f16(float x) {
  uint32_t u = f32_bits(x);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u)
    return 0x7fffu; /* NaN */
  if (a >= 0x38800000u) { /* |x| >= 2^-14: normal in f16, or overflow */
    /* Rebias the exponent (127 -> 15) in place, then drop 13 fraction bits;
     * a carry out of the fraction correctly bumps the exponent. */
    uint32_t h = shift_rne(a - 0x38000000u, 13);
    return (uint16_t)(sign | (h >= 0x7c00u ? 0x7c00u : h)); /* Inf stays Inf */
  }
  if (a <= 0x33000000u) /* |x| <= 2^-25, half the smallest subnormal: ties to 0 */
    return (uint16_t)sign;
  /* Subnormal result, counted in units of 2^-24: mant * 2^(e-150) / 2^-24. */
  uint32_t e = a >> 23;
  uint32_t mant = (a & 0x7fffffu) | 0x800000u;
  return (uint16_t)(sign | shift_rne(mant, 126u - e));
}

float mb_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1fu;
  uint32_t m = h & 0x3ffu;
  if (e == 0x1fu)
    return f32_from_bits(m ? 0x7fffffffu : (sign | 0x7f800000u));
  if (e == 0) { /* zero or subnormal: m * 2^-24, exact in f32 */
    float v = (float)m * 0x1p-24f;
    return sign ? -v : v;
  }
  return f32_from_bits(sign | ((e + 112u) << 23) | (m << 13));
}

/* ---- bf16: the top half of an f32 ---- */

uint16_t mb_f32_to_bf16(float x) {
  uint32_t u = f32_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return 0x7fffu; /* NaN */
  /* Adding 0x7fff plus the kept lsb rounds half to even; max finite carries
   * into Inf as it should, and Inf itself is unchanged. */
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

float mb_bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

/* ---- fp8 ---- */

typedef struct {
  unsigned mbits;          /* fraction bits */
  int bias;
  uint32_t underflow_max;  /* f32 bits of half the smallest subnormal: |x| <= this -> 0 */
  uint32_t overflow_from;  /* f32 bits: |x| >= this overflows */
  uint8_t max_finite;      /* encoding of the largest finite magnitude */
  uint8_t nosat_overflow;  /* encoding (without sign) when NOSAT overflows */
} fp8_format;

static const fp8_format E4M3 = {3, 7, 0x3a800000u /* 2^-10 */, 0x43e80001u /* just above 464 */,
                                0x7eu /* 448 */, 0x7fu /* NaN */};
static const fp8_format E5M2 = {2, 15, 0x37000000u /* 2^-17 */, 0x47700000u /* 61440 */,
                                0x7bu /* 57344 */, 0x7cu /* Inf */};

static inline uint8_t f32_to_fp8(float x, mb_fp8_saturation sat, const fp8_format *f) {
  uint32_t u = f32_bits(x);
  uint32_t sign = (u >> 24) & 0x80u;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u)
    return 0x7fu; /* NaN, both formats */
  if (a >= f->overflow_from) /* includes Inf */
    return (uint8_t)(sign | (sat == MB_FP8_SATFINITE ? f->max_finite : f->nosat_overflow));
  if (a <= f->underflow_max)
    return (uint8_t)sign;
  int e = (int)(a >> 23) - 127; /* unbiased exponent of x (x is normal in f32 here) */
  uint32_t mant = (a & 0x7fffffu) | 0x800000u;
  uint32_t q;
  if (e >= 1 - f->bias) {
    /* Normal: exponent field and fraction side by side, rounded as one integer
     * so a fraction carry bumps the exponent. Ties at the overflow thresholds
     * were settled above, so q never reaches the NaN/Inf encodings here. */
    uint32_t biased = (uint32_t)(e + f->bias);
    uint32_t shift = 23u - f->mbits;
    q = shift_rne((biased << 23) | (a & 0x7fffffu), shift);
  } else {
    /* Subnormal: count units of 2^(1 - bias - mbits). */
    unsigned shift = (unsigned)(23 + 1 - f->bias - (int)f->mbits - e);
    q = shift_rne(mant, shift);
  }
  return (uint8_t)(sign | q);
}

static inline float fp8_to_f32(uint8_t v, const fp8_format *f, int has_inf) {
  uint32_t sign = (uint32_t)(v & 0x80u) << 24;
  uint32_t emax = (1u << (7u - f->mbits)) - 1u;
  uint32_t e = (v >> f->mbits) & emax;
  uint32_t m = v & ((1u << f->mbits) - 1u);
  if (e == emax) {
    if (has_inf) { /* E5M2: IEEE-style specials */
      if (m == 0)
        return f32_from_bits(sign | 0x7f800000u);
      return f32_from_bits(0x7fffffffu);
    }
    if (m == (1u << f->mbits) - 1u) /* E4M3: only S.1111.111 is NaN */
      return f32_from_bits(0x7fffffffu);
  }
  if (e == 0) { /* subnormal: m * 2^(1 - bias - mbits), exact */
    float v32 = ldexpf((float)m, 1 - f->bias - (int)f->mbits);
    return sign ? -v32 : v32;
  }
  return f32_from_bits(sign | ((e - (uint32_t)f->bias + 127u) << 23) | (m << (23u - f->mbits)));
}

uint8_t mb_f32_to_e4m3(float x, mb_fp8_saturation sat) { return f32_to_fp8(x, sat, &E4M3); }
uint8_t mb_f32_to_e5m2(float x, mb_fp8_saturation sat) { return f32_to_fp8(x, sat, &E5M2); }
float mb_e4m3_to_f32(uint8_t v) { return fp8_to_f32(v, &E4M3, 0); }
float mb_e5m2_to_f32(uint8_t v) { return fp8_to_f32(v, &E5M2, 1); }

float mb_round_to(float x, mb_dtype dt) {
  switch (dt) {
  case MB_F16: return mb_f16_to_f32(mb_f32_to_f16(x));
  case MB_BF16: return mb_bf16_to_f32(mb_f32_to_bf16(x));
  case MB_F8E4M3: return mb_e4m3_to_f32(mb_f32_to_e4m3(x, MB_FP8_SATFINITE));
  case MB_F8E5M2: return mb_e5m2_to_f32(mb_f32_to_e5m2(x, MB_FP8_SATFINITE));
  default: return x;
  }
}

/* ---- bulk conversion ---- */

/* f64 -> f32 rounding to odd: truncate toward zero and set the lsb if the
 * value was inexact. Rounding that result once more to a format with at
 * least two fewer significand bits (f16, bf16, fp8) equals rounding the
 * double directly, so f64 sources see a single rounding, not two. */
static inline float f64_to_f32_round_odd(double d) {
  float f = (float)d;
  if (isnan(d) || (double)f == d)
    return f;
  uint32_t u = f32_bits(f);
  if (fabs((double)f) > fabs(d))
    u--; /* rounded away from zero (or to Inf): step back toward zero */
  return f32_from_bits(u | 1u);
}

static int is_float_dtype(mb_dtype dt) {
  const mb_dtype_info *i = mb_dtype_info_of(dt);
  return i && i->is_float;
}

#define CONVERT_CHUNK 4096
#define CONVERT_PARALLEL_MIN (1u << 16)

/* Source element i as f32. `narrow` asks f64 sources for round-to-odd (the
 * destination will round again). */
static inline float load_f32(const void *src, mb_dtype dt, size_t i, int narrow) {
  switch (dt) {
  case MB_F32: return ((const float *)src)[i];
  case MB_F64: {
    double d = ((const double *)src)[i];
    return narrow ? f64_to_f32_round_odd(d) : (float)d;
  }
  case MB_F16: return mb_f16_to_f32(((const uint16_t *)src)[i]);
  case MB_BF16: return mb_bf16_to_f32(((const uint16_t *)src)[i]);
  case MB_F8E4M3: return mb_e4m3_to_f32(((const uint8_t *)src)[i]);
  case MB_F8E5M2: return mb_e5m2_to_f32(((const uint8_t *)src)[i]);
  default: return 0.0f; /* unreachable: callers check float dtypes */
  }
}

static inline void store_f32(void *dst, mb_dtype dt, size_t i, float x) {
  switch (dt) {
  case MB_F32: ((float *)dst)[i] = x; break;
  case MB_F64: ((double *)dst)[i] = (double)x; break;
  case MB_F16: ((uint16_t *)dst)[i] = mb_f32_to_f16(x); break;
  case MB_BF16: ((uint16_t *)dst)[i] = mb_f32_to_bf16(x); break;
  case MB_F8E4M3: ((uint8_t *)dst)[i] = mb_f32_to_e4m3(x, MB_FP8_SATFINITE); break;
  case MB_F8E5M2: ((uint8_t *)dst)[i] = mb_f32_to_e5m2(x, MB_FP8_SATFINITE); break;
  default: break;
  }
}

/* One chunk [lo, hi). The switch is hoisted out of the element loop for the
 * conversions training uses every step; the rest goes through load/store. */
static void convert_range(void *dst, mb_dtype dd, const void *src, mb_dtype sd, size_t lo,
                          size_t hi) {
  if (sd == MB_F32) {
    const float *s = src;
    switch (dd) {
    case MB_F16:
      for (size_t i = lo; i < hi; i++) ((uint16_t *)dst)[i] = mb_f32_to_f16(s[i]);
      return;
    case MB_BF16:
      for (size_t i = lo; i < hi; i++) ((uint16_t *)dst)[i] = mb_f32_to_bf16(s[i]);
      return;
    case MB_F8E4M3:
      for (size_t i = lo; i < hi; i++) ((uint8_t *)dst)[i] = mb_f32_to_e4m3(s[i], MB_FP8_SATFINITE);
      return;
    case MB_F8E5M2:
      for (size_t i = lo; i < hi; i++) ((uint8_t *)dst)[i] = mb_f32_to_e5m2(s[i], MB_FP8_SATFINITE);
      return;
    default: break;
    }
  } else if (dd == MB_F32) {
    float *d = dst;
    switch (sd) {
    case MB_F16:
      for (size_t i = lo; i < hi; i++) d[i] = mb_f16_to_f32(((const uint16_t *)src)[i]);
      return;
    case MB_BF16:
      for (size_t i = lo; i < hi; i++) d[i] = mb_bf16_to_f32(((const uint16_t *)src)[i]);
      return;
    default: break;
    }
  }
  int narrow = sd == MB_F64 && dd != MB_F32 && dd != MB_F64;
  if (sd == MB_F64 && dd == MB_F64) {
    memcpy((double *)dst + lo, (const double *)src + lo, (hi - lo) * sizeof(double));
    return;
  }
  for (size_t i = lo; i < hi; i++)
    store_f32(dst, dd, i, load_f32(src, sd, i, narrow));
}

int mb_convert(void *dst, mb_dtype dst_dt, const void *src, mb_dtype src_dt, size_t n) {
  const mb_dtype_info *di = mb_dtype_info_of(dst_dt), *si = mb_dtype_info_of(src_dt);
  if (!di || !si)
    return MB_ERR(MB_EINVAL, "mb_convert: invalid dtype (%d -> %d)", (int)src_dt, (int)dst_dt);
  if (n == 0)
    return MB_OK;
  if (!dst || !src)
    return MB_ERR(MB_EINVAL, "mb_convert: NULL buffer for %zu elements", n);
  if (src_dt == dst_dt || (!si->is_float && !di->is_float && src_dt != MB_BOOL &&
                           dst_dt != MB_BOOL && si->size == di->size)) {
    /* Same type, or same-size integers (two's complement reinterpretation). */
    memcpy(dst, src, n * si->size);
    return MB_OK;
  }
  if (!is_float_dtype(src_dt) || !is_float_dtype(dst_dt))
    return MB_ERR(MB_EUNSUPPORTED, "mb_convert: no conversion from %s to %s", si->name, di->name);
  size_t nchunks = (n + CONVERT_CHUNK - 1) / CONVERT_CHUNK;
#pragma omp parallel for schedule(static) if (n >= CONVERT_PARALLEL_MIN)
  for (size_t c = 0; c < nchunks; c++) {
    size_t lo = c * CONVERT_CHUNK, hi = lo + CONVERT_CHUNK < n ? lo + CONVERT_CHUNK : n;
    convert_range(dst, dst_dt, src, src_dt, lo, hi);
  }
  return MB_OK;
}
