/* vecmath.h: float exp, softplus, sigmoid and the normal CDF (GELU) written so the compiler can
 * vectorise the loops that call them (libm's expf is an opaque call that
 * keeps a loop scalar). The attention softmax and the selective scan are
 * mostly exps; this is what makes them run at vector speed.
 *
 * Used by the f32 kernels of attention, selective scan and conv1d; the f64
 * kernels (gradient checks) call libm. Accuracy (tests/cpukern
 * vecmath_accuracy): mb_expf within 2 ulp of exp on [-86.9, 88.7];
 * results below ~2e-38 (x < -86.9) are flushed to 0 instead of going
 * subnormal; x > 88.72 gives +inf; NaN stays NaN.
 *
 * MB_VEC_CLONES on a function compiles it three times (baseline x86-64,
 * AVX2+FMA, AVX-512) and picks one at load time from the CPU it runs on, so
 * the portable build still uses wide vectors (GCC target_clones).
 */
#ifndef MB_KERNELS_CPU_VECMATH_H
#define MB_KERNELS_CPU_VECMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define MB_VEC_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define MB_VEC_CLONES
#endif
/* Helpers called from a cloned function must be inlined into it to get its
 * vector width (an out-of-line copy is compiled for the baseline). */
#if defined(__GNUC__)
#define MB_ALWAYS_INLINE __attribute__((always_inline))
#else
#define MB_ALWAYS_INLINE
#endif

/* exp(x) = 2^n * e^r with n = round(x / ln 2) and |r| <= ln2 / 2; e^r by
 * Cephes' degree-7 polynomial. n is read from the low mantissa bits of
 * x/ln2 + 1.5*2^23 (all integer work is unsigned: no undefined behaviour for
 * any input), and 2^n is built as 2^(n-1) * 2 so that n = 128 still fits. */
MB_ALWAYS_INLINE static inline float mb_expf(float x) {
  const float magic = 12582912.0f; /* 1.5 * 2^23; its bit pattern is 0x4B400000 */
  const float t = x * 1.44269504088896341f + magic;
  const float n = t - magic;
  float r = x - n * 0.693359375f; /* ln 2 in two parts (Cody-Waite) */
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  uint32_t tb;
  memcpy(&tb, &t, sizeof tb);
  const uint32_t eb = (tb - 0x4B400000u + 126u) << 23; /* exponent field of 2^(n-1) */
  float s;
  memcpy(&s, &eb, sizeof s);
  float y = p * s * 2.0f;
  y = x > 88.72283f ? INFINITY : y;
  y = x < -86.9f ? 0.0f : y;
  return y;
}

/* log(1 + z) for z in [0, 1]: 2 atanh(s) with s = z / (2 + z) in [0, 1/3],
 * whose odd series converges to float precision by s^13; no 1 + z is ever
 * rounded, so tiny z keep all their digits. */
MB_ALWAYS_INLINE static inline float mb_log1pf_unit(float z) {
  const float s = z / (2.0f + z), s2 = s * s;
  float q = 1.0f / 13;
  q = q * s2 + 1.0f / 11;
  q = q * s2 + 1.0f / 9;
  q = q * s2 + 1.0f / 7;
  q = q * s2 + 1.0f / 5;
  q = q * s2 + 1.0f / 3;
  q = q * s2 + 1.0f;
  return 2.0f * s * q;
}

/* softplus with PyTorch's threshold: x above 20 passes through; below, the
 * stable form max(x, 0) + log1p(exp(-|x|)) (= log1p(exp(x)) exactly in
 * real arithmetic). */
MB_ALWAYS_INLINE static inline float mb_softplusf(float x) {
  const float pos = x > 0.0f ? x : 0.0f; /* not fmaxf: that is a libm call */
  const float sp = pos + mb_log1pf_unit(mb_expf(-fabsf(x)));
  return x > 20.0f ? x : sp;
}

MB_ALWAYS_INLINE static inline float mb_sigmoidf(float x) { return 1.0f / (1.0f + mb_expf(-x)); }

/* x with the low 12 bits of its significand cleared: 12 significant bits,
 * so its square is exact in float. */
MB_ALWAYS_INLINE static inline float mb_top12f(float x) {
  uint32_t b;
  memcpy(&b, &x, sizeof b);
  b &= 0xFFFFF000u;
  float r;
  memcpy(&r, &b, sizeof r);
  return r;
}

/* The standard normal CDF Phi(x) = (1 + erf(x / sqrt 2)) / 2 (GELU's gate),
 * and through *pdf its density phi(x) = e^(-x^2/2) / sqrt(2 pi), within 7
 * ulps relative for every x (tests/cpukern vecmath_accuracy): the tail
 * x << 0 too, where 1 + erff(x) cancels. With a = |x| / sqrt 2 and t = 1 / (1 + a/2),
 * erfc(a) = t e^(-a^2 + P(t)) with P a degree-9 fit on t in [1/6, 1]
 * (a <= 10; tools/fit_normcdf.py; |error| 1.9e-7 evaluated in float).
 * e^(-a^2) must be right to ~1e-7 relative where a^2 is ~80, so a^2 is not
 * rounded: a^2 = xh^2/2 + (x - xh)(x + xh)/2 with xh = mb_top12f(x), whose
 * square is exact; the small second part joins P's exponent. |x| is capped
 * at 14 (Phi(-14) is below float's range; NaN passes the cap). */
MB_ALWAYS_INLINE static inline float mb_normcdf_pdff(float x, float *pdf) {
  float ax = fabsf(x);
  ax = ax > 14.0f ? 14.0f : ax;
  const float xh = mb_top12f(ax);
  const float e_big = mb_expf(-0.5f * xh * xh); /* exact argument */
  const float e_small_arg = -0.5f * (ax - xh) * (ax + xh);
  const float t = 1.0f / (1.0f + 0.35355339059327377f * ax); /* 1 / (1 + a/2) */
  const float s = 2.4f * t - 1.4f;                              /* t in [1/6, 1] -> s in [-1, 1] */
  float p = 5.603968020e-05f;
  p = p * s + 7.240968989e-05f;
  p = p * s + -5.369681749e-04f;
  p = p * s + -2.253227867e-04f;
  p = p * s + 3.709455952e-03f;
  p = p * s + -1.063811593e-03f;
  p = p * s + -2.947088331e-02f;
  p = p * s + 1.574738696e-02f;
  p = p * s + 5.703071356e-01f;
  p = p * s + -5.585954189e-01f;
  const float half_erfc = 0.5f * t * e_big * mb_expf(e_small_arg + p);
  *pdf = 0.39894228040143268f * e_big * mb_expf(e_small_arg);
  return x < 0.0f ? half_erfc : 1.0f - half_erfc;
}

/* GELU (the exact erf form) and its derivative Phi(x) + x phi(x). */
MB_ALWAYS_INLINE static inline float mb_geluf(float x) {
  float pdf;
  return x * mb_normcdf_pdff(x, &pdf);
}
MB_ALWAYS_INLINE static inline float mb_gelu_gradf(float x) {
  float pdf;
  const float cdf = mb_normcdf_pdff(x, &pdf);
  return cdf + x * pdf;
}

/* double versions (gradient checks): libm, same thresholds. */
static inline double mb_softplus(double x) { return x > 20.0 ? x : log1p(exp(x)); }
static inline double mb_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

#endif
