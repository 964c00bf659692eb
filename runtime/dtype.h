/* dtype.h: element types, their table (name, size, safetensors name), and
 * conversions between f32 and the reduced-precision formats.
 *
 * The conversions are bit-exact with CUDA's conversion functions
 * (__float2half_rn, __float2bfloat16_rn, __nv_cvt_float_to_fp8 with
 * __NV_SATFINITE / __NV_NOSAT, and the reverse ones), so reduced-precision
 * logic can be tested on the CPU and checked against the GPU element for
 * element. tests/runtime/test_dtype_cuda.cpp compares them with the host
 * implementations in the CUDA toolkit's headers over every encoding.
 */
#ifndef MB_RUNTIME_DTYPE_H
#define MB_RUNTIME_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  MB_F32 = 0,
  MB_F64,
  MB_F16,
  MB_BF16,
  MB_F8E4M3, /* OCP E4M3 "fn": bias 7, max 448, no infinities, NaN = S.1111.111 */
  MB_F8E5M2, /* OCP E5M2: bias 15, max 57344, IEEE-like infinities and NaNs */
  MB_I8,
  MB_U8,
  MB_I16,
  MB_U16,
  MB_I32,
  MB_U32,
  MB_I64,
  MB_U64,
  MB_BOOL,
  MB_DTYPE_COUNT
} mb_dtype;

typedef struct {
  const char *name;        /* "f32", "bf16", "f8e4m3", ... (configs, logs) */
  const char *safetensors; /* "F32", "BF16", "F8_E4M3", ... */
  size_t size;             /* bytes per element */
  int is_float;
} mb_dtype_info;

const mb_dtype_info *mb_dtype_info_of(mb_dtype dt);
const char *mb_dtype_name(mb_dtype dt);
size_t mb_dtype_size(mb_dtype dt);
/* Look up by our name or by safetensors name; MB_ENOTFOUND if neither. */
int mb_dtype_from_name(const char *name, mb_dtype *out);
int mb_dtype_from_safetensors(const char *name, mb_dtype *out);

/* ---- scalar conversions (bit-exact with CUDA's conversion functions) ----
 * Implemented in dtype_convert.c. All round to nearest, ties to even.
 * Where CUDA departs from plain IEEE, we do the same:
 *  - f32 -> f16/bf16/fp8: every NaN becomes the positive canonical NaN
 *    (0x7fff, 0x7fff, 0x7f); sign and payload are dropped.
 *  - f16/fp8 -> f32: every NaN becomes 0x7fffffff. bf16 -> f32 is exact
 *    (a shift), NaN payload and sign included.
 *  - f16/bf16 overflow rounds to +-Inf; Inf stays Inf.
 *  - fp8 overflow is judged before rounding: E4M3 overflows when
 *    |x| > 464 (448 + half an ulp; 464 itself ties down to 448), E5M2 when
 *    |x| >= 61440 (57344 + half an ulp). SATFINITE then gives +-max finite
 *    (+-Inf input too); NOSAT gives sign|0x7f (NaN, E4M3 has no Inf) or
 *    +-Inf (E5M2). Magnitudes <= half the smallest subnormal give +-0. */

typedef enum {
  MB_FP8_NOSAT = 0,   /* out-of-range -> NaN (e4m3) or Inf (e5m2), like __NV_NOSAT */
  MB_FP8_SATFINITE = 1 /* out-of-range -> +-max finite, like __NV_SATFINITE */
} mb_fp8_saturation;

uint16_t mb_f32_to_f16(float x);   /* like __float2half_rn */
float mb_f16_to_f32(uint16_t h);   /* like __half2float */
uint16_t mb_f32_to_bf16(float x);  /* like __float2bfloat16_rn */
float mb_bf16_to_f32(uint16_t h);  /* like __bfloat162float */
/* like __nv_cvt_float_to_fp8(x, sat, __NV_E4M3 / __NV_E5M2) */
uint8_t mb_f32_to_e4m3(float x, mb_fp8_saturation sat);
uint8_t mb_f32_to_e5m2(float x, mb_fp8_saturation sat);
/* like float(__nv_fp8_e4m3) / float(__nv_fp8_e5m2) */
float mb_e4m3_to_f32(uint8_t v);
float mb_e5m2_to_f32(uint8_t v);

/* x rounded to the nearest value representable in `dt` and back to f32
 * (fp8 saturating); identity for f32, f64 and the non-float dtypes.
 * Emulates reduced precision on CPU. */
float mb_round_to(float x, mb_dtype dt);

/* Convert n elements from src to dst (which must not overlap):
 *  - between any two float dtypes: decoded exactly, rounded once to the
 *    destination (fp8 saturating); f64 sources are narrowed with round-to-odd
 *    first, so f64 -> f16/bf16/fp8 is rounded once, not twice (equal to
 *    CUDA's __double2half, __double2bfloat16, __nv_cvt_double_to_fp8, except
 *    that a NaN becomes the canonical NaN where the fp8 one keeps its sign);
 *  - same dtype, or same-size integer dtypes (two's complement): a copy.
 * Anything else is MB_EUNSUPPORTED. Parallel (OpenMP) for n >= 65536. */
int mb_convert(void *dst, mb_dtype dst_dt, const void *src, mb_dtype src_dt, size_t n);

#ifdef __cplusplus
}
#endif
#endif
