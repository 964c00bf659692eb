/* dtype.h: element types, their table (name, size, safetensors name), and
 * conversions between f32 and the reduced-precision formats.
 *
 * The conversions are bit-exact with the CUDA intrinsics
 * (__float2half_rn, __float2bfloat16_rn, __nv_cvt_float_to_fp8 with
 * __NV_SATFINITE / __NV_NOSAT), so reduced-precision logic can be tested on
 * the CPU and checked against the GPU element for element.
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

/* ---- scalar conversions (bit-exact with CUDA's intrinsics) ---- */

typedef enum {
  MB_FP8_NOSAT = 0,   /* out-of-range -> NaN (e4m3) or Inf (e5m2), like __NV_NOSAT */
  MB_FP8_SATFINITE = 1 /* out-of-range -> +-max finite, like __NV_SATFINITE */
} mb_fp8_saturation;

uint16_t mb_f32_to_f16(float x);   /* round to nearest even */
float mb_f16_to_f32(uint16_t h);
uint16_t mb_f32_to_bf16(float x);  /* round to nearest even, NaN stays NaN */
float mb_bf16_to_f32(uint16_t h);
uint8_t mb_f32_to_e4m3(float x, mb_fp8_saturation sat);
float mb_e4m3_to_f32(uint8_t v);
uint8_t mb_f32_to_e5m2(float x, mb_fp8_saturation sat);
float mb_e5m2_to_f32(uint8_t v);

/* x rounded to the nearest value representable in `dt` and back to f32
 * (fp8 saturating); identity for f32. Emulates reduced precision on CPU. */
float mb_round_to(float x, mb_dtype dt);

/* Convert n elements between any two float dtypes (fp8 saturating) or
 * between same-size integer dtypes. MB_EUNSUPPORTED otherwise. */
int mb_convert(void *dst, mb_dtype dst_dt, const void *src, mb_dtype src_dt, size_t n);

#ifdef __cplusplus
}
#endif
#endif
