/* elementwise.cu: fills, casts, row copies, activations and their
 * gradients, broadcast add/mul, accumulation, sum_to reductions and the
 * non-finite check, on the GPU. The formulas are the CPU kernels'
 * (kernels/cpu/cpu_elementwise_body.h) evaluated in f32. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels/cuda/cuda_common.cuh"

extern "C" void mb_cuda_err_describe(const mb_cuda_err_rec *e, char *buf, size_t cap) {
  switch (e->what) {
  case MB_CUDA_ERR_EMBEDDING_ID:
    snprintf(buf, cap, "embedding: id %lld at flat position %lld is outside [0, %lld)", e->value, e->index, e->bound);
    break;
  case MB_CUDA_ERR_CE_LABEL:
    snprintf(buf, cap, "cross_entropy: label %lld in row %lld is outside [0, %lld) and is not ignore_index", e->value,
             e->index, e->bound);
    break;
  default:
    snprintf(buf, cap, "device error %d (index %lld, value %lld, bound %lld)", e->what, e->index, e->value, e->bound);
  }
}

/* ---- fill ---- */

template <typename U>
__global__ void fill_kernel(U *dst, U v, int64_t n) {
  MB_GRID_STRIDE_LOOP(i, n) dst[i] = v;
}

extern "C" int mb_cuda_fill(void *dst, mb_dtype dt, size_t n, double value, mb_cuda_stream s) {
  if (n == 0)
    return MB_OK;
  size_t es = mb_dtype_size(dt);
  if (es == 0)
    return MB_ERR(MB_EINVAL, "cuda fill: bad dtype %d", (int)dt);
  /* The CPU's rules (kernels/cpu/cpu_backend.c): NaN is all-ones bytes for
   * every dtype but f32/f64; +0 is all-zero bytes. */
  if (isnan(value) && dt != MB_F32 && dt != MB_F64)
    return mb_cuda_memset(dst, 0xff, n * es, s);
  if (value == 0.0 && !signbit(value))
    return mb_cuda_memset(dst, 0, n * es, s);
  uint64_t bits = 0;
  switch (dt) {
  case MB_F32: {
    float f = (float)value;
    uint32_t u;
    memcpy(&u, &f, 4);
    bits = u;
    break;
  }
  case MB_F64: memcpy(&bits, &value, 8); break;
  case MB_F16: bits = mb_f32_to_f16((float)value); break;
  case MB_BF16: bits = mb_f32_to_bf16((float)value); break;
  case MB_F8E4M3: bits = mb_f32_to_e4m3((float)value, MB_FP8_SATFINITE); break;
  case MB_F8E5M2: bits = mb_f32_to_e5m2((float)value, MB_FP8_SATFINITE); break;
  case MB_I8: bits = (uint8_t)(int8_t)value; break;
  case MB_U8: bits = (uint8_t)value; break;
  case MB_BOOL: bits = value != 0.0; break;
  case MB_I16: bits = (uint16_t)(int16_t)value; break;
  case MB_U16: bits = (uint16_t)value; break;
  case MB_I32: bits = (uint32_t)(int32_t)value; break;
  case MB_U32: bits = (uint32_t)value; break;
  case MB_I64: bits = (uint64_t)(int64_t)value; break;
  case MB_U64: bits = (uint64_t)value; break;
  default: return MB_ERR(MB_EUNSUPPORTED, "cuda fill: dtype %s", mb_dtype_name(dt));
  }
  unsigned blocks = mb_cuda_blocks((int64_t)n, MB_CUDA_THREADS);
  switch (es) {
  case 1: fill_kernel<uint8_t><<<blocks, MB_CUDA_THREADS, 0, s>>>((uint8_t *)dst, (uint8_t)bits, (int64_t)n); break;
  case 2: fill_kernel<uint16_t><<<blocks, MB_CUDA_THREADS, 0, s>>>((uint16_t *)dst, (uint16_t)bits, (int64_t)n); break;
  case 4: fill_kernel<uint32_t><<<blocks, MB_CUDA_THREADS, 0, s>>>((uint32_t *)dst, (uint32_t)bits, (int64_t)n); break;
  case 8: fill_kernel<uint64_t><<<blocks, MB_CUDA_THREADS, 0, s>>>((uint64_t *)dst, bits, (int64_t)n); break;
  default: return MB_ERR(MB_EINVAL, "cuda fill: element size %zu", es);
  }
  MB_CUDA_LAUNCH_CHECK("fill_kernel");
  return MB_OK;
}

/* ---- casts ---- */

static __device__ __forceinline__ int is_small_float(mb_dtype dt) {
  return dt == MB_F32 || dt == MB_F16 || dt == MB_BF16 || dt == MB_F8E4M3 || dt == MB_F8E5M2;
}

/* Exact decode of a float format of at most 32 bits. */
static __device__ __forceinline__ float ld_small_float(const void *p, mb_dtype dt, int64_t i) {
  switch (dt) {
  case MB_F32: return ((const float *)p)[i];
  case MB_F16: return __half2float(((const mb_f16 *)p)[i]);
  case MB_BF16: return __bfloat162float(((const mb_bf16 *)p)[i]);
  case MB_F8E4M3: {
    __nv_fp8_e4m3 v;
    v.__x = ((const uint8_t *)p)[i];
    return (float)v;
  }
  default: { /* MB_F8E5M2 */
    __nv_fp8_e5m2 v;
    v.__x = ((const uint8_t *)p)[i];
    return (float)v;
  }
  }
}

/* Round an f32 once to a float format of at most 32 bits (fp8 saturating):
 * CUDA's own conversions, which runtime/dtype.h matches bit for bit. */
static __device__ __forceinline__ void st_small_float(void *p, mb_dtype dt, int64_t i, float v) {
  switch (dt) {
  case MB_F32: ((float *)p)[i] = v; break;
  case MB_F16: ((mb_f16 *)p)[i] = __float2half_rn(v); break;
  case MB_BF16: ((mb_bf16 *)p)[i] = __float2bfloat16_rn(v); break;
  case MB_F8E4M3: ((uint8_t *)p)[i] = __nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3); break;
  default: ((uint8_t *)p)[i] = __nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E5M2); break;
  }
}

/* f64 rounded once to a narrower float format (CUDA's double conversions;
 * a NaN becomes the canonical NaN, as runtime/dtype.h's mb_convert does). */
static __device__ __forceinline__ void st_from_double(void *p, mb_dtype dt, int64_t i, double v) {
  switch (dt) {
  case MB_F32: ((float *)p)[i] = (float)v; break;
  case MB_F16: ((mb_f16 *)p)[i] = __double2half(v); break;
  case MB_BF16: ((mb_bf16 *)p)[i] = __double2bfloat16(v); break;
  case MB_F8E4M3:
    ((uint8_t *)p)[i] = isnan(v) ? (uint8_t)0x7f : (uint8_t)__nv_cvt_double_to_fp8(v, __NV_SATFINITE, __NV_E4M3);
    break;
  default:
    ((uint8_t *)p)[i] = isnan(v) ? (uint8_t)0x7f : (uint8_t)__nv_cvt_double_to_fp8(v, __NV_SATFINITE, __NV_E5M2);
    break;
  }
}

/* Any supported dtype as a double: what the CPU cast does for integers
 * (through int64) and wide floats. */
static __device__ __forceinline__ double ld_num(const void *p, mb_dtype dt, int64_t i) {
  switch (dt) {
  case MB_F64: return ((const double *)p)[i];
  case MB_I8: return (double)((const int8_t *)p)[i];
  case MB_U8:
  case MB_BOOL: return (double)((const uint8_t *)p)[i];
  case MB_I16: return (double)((const int16_t *)p)[i];
  case MB_U16: return (double)((const uint16_t *)p)[i];
  case MB_I32: return (double)((const int32_t *)p)[i];
  case MB_U32: return (double)((const uint32_t *)p)[i];
  case MB_I64: return (double)((const int64_t *)p)[i];
  case MB_U64: return (double)(int64_t)((const uint64_t *)p)[i];
  default: return (double)ld_small_float(p, dt, i);
  }
}

static __device__ __forceinline__ void st_int(void *p, mb_dtype dt, int64_t i, double v) {
  switch (dt) {
  case MB_I8: ((int8_t *)p)[i] = (int8_t)v; break;
  case MB_U8: ((uint8_t *)p)[i] = (uint8_t)v; break;
  case MB_I16: ((int16_t *)p)[i] = (int16_t)v; break;
  case MB_U16: ((uint16_t *)p)[i] = (uint16_t)v; break;
  case MB_I32: ((int32_t *)p)[i] = (int32_t)v; break;
  case MB_U32: ((uint32_t *)p)[i] = (uint32_t)v; break;
  case MB_I64: ((int64_t *)p)[i] = (int64_t)v; break;
  default: ((uint64_t *)p)[i] = (uint64_t)v; break; /* MB_U64 */
  }
}

__global__ void cast_kernel(void *dst, mb_dtype to, const void *src, mb_dtype from, int64_t n) {
  MB_GRID_STRIDE_LOOP(i, n) {
    if (is_small_float(from) && is_small_float(to))
      st_small_float(dst, to, i, ld_small_float(src, from, i));
    else if (to == MB_F64)
      ((double *)dst)[i] = ld_num(src, from, i);
    else if (is_small_float(to))
      st_from_double(dst, to, i, ld_num(src, from, i));
    else
      st_int(dst, to, i, ld_num(src, from, i));
  }
}

static int cast_supported(mb_dtype dt) { return dt >= MB_F32 && dt < MB_DTYPE_COUNT && dt != MB_BOOL; }

extern "C" int mb_cuda_cast(void *dst, mb_dtype to, const void *src, mb_dtype from, int64_t n, mb_cuda_stream s) {
  if (n <= 0)
    return MB_OK;
  if (from == to)
    return mb_cuda_copy_d2d(dst, src, (size_t)n * mb_dtype_size(to), s);
  if (!(cast_supported(from) || from == MB_BOOL) || !cast_supported(to))
    return MB_ERR(MB_EUNSUPPORTED, "cuda cast: %s to %s", mb_dtype_name(from), mb_dtype_name(to));
  cast_kernel<<<mb_cuda_blocks(n, MB_CUDA_THREADS), MB_CUDA_THREADS, 0, s>>>(dst, to, src, from, n);
  MB_CUDA_LAUNCH_CHECK("cast_kernel");
  return MB_OK;
}

/* ---- row copies (slice, concat) ---- */

/* Copies in units of U (the widest of 16/8/4/2/1 bytes that divides every
 * pitch, the row size and both base addresses). */
template <typename U>
__global__ void copy_rows_kernel(char *dst, int64_t dp, const char *src, int64_t sp, int64_t row_units,
                                 int64_t rows) {
  int64_t n = row_units * rows;
  MB_GRID_STRIDE_LOOP(i, n) {
    int64_t r = i / row_units, c = i - r * row_units;
    ((U *)(dst + r * dp))[c] = ((const U *)(src + r * sp))[c];
  }
}

extern "C" int mb_cuda_copy_rows(void *dst, int64_t dp, const void *src, int64_t sp, int64_t row_bytes, int64_t rows,
                                 mb_cuda_stream s) {
  if (rows <= 0 || row_bytes <= 0)
    return MB_OK;
  if (dp < row_bytes || sp < row_bytes)
    return MB_ERR(MB_EINVAL, "cuda copy_rows: pitch smaller than the row (%lld, %lld < %lld)", (long long)dp,
                  (long long)sp, (long long)row_bytes);
  uint64_t all = (uint64_t)dp | (uint64_t)sp | (uint64_t)row_bytes | (uint64_t)(uintptr_t)dst |
                 (uint64_t)(uintptr_t)src;
  int unit = (all % 16 == 0) ? 16 : (all % 8 == 0) ? 8 : (all % 4 == 0) ? 4 : (all % 2 == 0) ? 2 : 1;
  int64_t ru = row_bytes / unit;
  unsigned blocks = mb_cuda_blocks(ru * rows, MB_CUDA_THREADS);
  char *d = (char *)dst;
  const char *sr = (const char *)src;
  switch (unit) {
  case 16: copy_rows_kernel<uint4><<<blocks, MB_CUDA_THREADS, 0, s>>>(d, dp, sr, sp, ru, rows); break;
  case 8: copy_rows_kernel<uint2><<<blocks, MB_CUDA_THREADS, 0, s>>>(d, dp, sr, sp, ru, rows); break;
  case 4: copy_rows_kernel<uint32_t><<<blocks, MB_CUDA_THREADS, 0, s>>>(d, dp, sr, sp, ru, rows); break;
  case 2: copy_rows_kernel<uint16_t><<<blocks, MB_CUDA_THREADS, 0, s>>>(d, dp, sr, sp, ru, rows); break;
  default: copy_rows_kernel<uint8_t><<<blocks, MB_CUDA_THREADS, 0, s>>>(d, dp, sr, sp, ru, rows); break;
  }
  MB_CUDA_LAUNCH_CHECK("copy_rows_kernel");
  return MB_OK;
}

extern "C" int mb_cuda_broadcast_rows(void *y, const void *v, mb_dtype dt, int64_t rows, int64_t n, mb_cuda_stream s) {
  size_t es = mb_dtype_size(dt);
  /* a source pitch of 0 repeats the same row */
  if (rows <= 0 || n <= 0)
    return MB_OK;
  int64_t rb = n * (int64_t)es;
  uint64_t all = (uint64_t)rb | (uint64_t)(uintptr_t)y | (uint64_t)(uintptr_t)v;
  int unit = (all % 16 == 0) ? 16 : (all % 8 == 0) ? 8 : (all % 4 == 0) ? 4 : (all % 2 == 0) ? 2 : 1;
  int64_t ru = rb / unit;
  unsigned blocks = mb_cuda_blocks(ru * rows, MB_CUDA_THREADS);
  char *d = (char *)y;
  const char *sr = (const char *)v;
  switch (unit) {
  case 16: copy_rows_kernel<uint4><<<blocks, MB_CUDA_THREADS, 0, s>>>(d, rb, sr, 0, ru, rows); break;
  case 8: copy_rows_kernel<uint2><<<blocks, MB_CUDA_THREADS, 0, s>>>(d, rb, sr, 0, ru, rows); break;
  case 4: copy_rows_kernel<uint32_t><<<blocks, MB_CUDA_THREADS, 0, s>>>(d, rb, sr, 0, ru, rows); break;
  case 2: copy_rows_kernel<uint16_t><<<blocks, MB_CUDA_THREADS, 0, s>>>(d, rb, sr, 0, ru, rows); break;
  default: copy_rows_kernel<uint8_t><<<blocks, MB_CUDA_THREADS, 0, s>>>(d, rb, sr, 0, ru, rows); break;
  }
  MB_CUDA_LAUNCH_CHECK("copy_rows_kernel (broadcast rows)");
  return MB_OK;
}

/* ---- activations ---- */

#define MB_SQRT1_2 0.70710678118654752440f
#define MB_INV_SQRT_2PI 0.39894228040143267794f /* 0.5 * M_2_SQRTPI * M_SQRT1_2 */

static __device__ __forceinline__ float act_f(int act, float x, float scale, float shift) {
  switch (act) {
  case MB_CUDA_AFFINE: return scale * x + shift;
  case MB_CUDA_RELU: return x > 0.0f ? x : 0.0f;
  case MB_CUDA_GELU: return 0.5f * x * (1.0f + erff(x * MB_SQRT1_2));
  case MB_CUDA_TANH: return tanhf(x);
  case MB_CUDA_SIGMOID: return 1.0f / (1.0f + expf(-x));
  case MB_CUDA_SILU: return x / (1.0f + expf(-x));
  case MB_CUDA_SOFTPLUS: return x > 20.0f ? x : log1pf(expf(x));
  case MB_CUDA_EXP: return expf(x);
  default: return x;
  }
}

/* f'(.) * gy; s is x, or y for tanh / sigmoid / exp (see the header). */
static __device__ __forceinline__ float act_grad_f(int act, float s, float gy) {
  switch (act) {
  case MB_CUDA_RELU: return s > 0.0f ? gy : 0.0f;
  case MB_CUDA_GELU: {
    float cdf = 0.5f * (1.0f + erff(s * MB_SQRT1_2));
    float pdf = expf(-0.5f * s * s) * MB_INV_SQRT_2PI;
    return gy * (cdf + s * pdf);
  }
  case MB_CUDA_TANH: return gy * (1.0f - s * s);
  case MB_CUDA_SIGMOID: return gy * s * (1.0f - s);
  case MB_CUDA_SILU: {
    float sg = 1.0f / (1.0f + expf(-s));
    return gy * sg * (1.0f + s * (1.0f - sg));
  }
  case MB_CUDA_SOFTPLUS: {
    if (s > 20.0f)
      return gy;
    float z = expf(s);
    return gy * z / (z + 1.0f);
  }
  case MB_CUDA_EXP: return gy * s;
  default: return gy;
  }
}

template <typename T>
__global__ void unary_kernel(int act, const T *x, T *y, int64_t n, float scale, float shift) {
  MB_GRID_STRIDE_LOOP(i, n) mb_st(y, i, act_f(act, mb_ld(x, i), scale, shift));
}

template <typename T>
__global__ void act_grad_kernel(int act, const T *saved, const T *gy, T *gx, int64_t n) {
  MB_GRID_STRIDE_LOOP(i, n) mb_st(gx, i, act_grad_f(act, mb_ld(saved, i), mb_ld(gy, i)));
}

template <typename T>
__global__ void accumulate_kernel(T *y, const T *g, int64_t n) {
  MB_GRID_STRIDE_LOOP(i, n) mb_st(y, i, mb_ld(y, i) + mb_ld(g, i));
}

extern "C" int mb_cuda_unary(mb_cuda_act act, mb_dtype dt, const void *x, void *y, int64_t n, float scale, float shift,
                             mb_cuda_stream s) {
  if (n <= 0)
    return MB_OK;
  if ((int)act < 0 || act >= MB_CUDA_ACT_COUNT)
    return MB_ERR(MB_EINVAL, "cuda unary: activation %d", (int)act);
  unsigned blocks = mb_cuda_blocks(n, MB_CUDA_THREADS);
  MB_CUDA_DISPATCH_FLOAT(dt, "unary",
                         unary_kernel<T><<<blocks, MB_CUDA_THREADS, 0, s>>>((int)act, (const T *)x, (T *)y, n, scale,
                                                                          shift));
  MB_CUDA_LAUNCH_CHECK("unary_kernel");
  return MB_OK;
}

extern "C" int mb_cuda_act_grad(mb_cuda_act act, mb_dtype dt, const void *saved, const void *gy, void *gx, int64_t n,
                                mb_cuda_stream s) {
  if (n <= 0)
    return MB_OK;
  if ((int)act <= 0 || act >= MB_CUDA_ACT_COUNT)
    return MB_ERR(MB_EINVAL, "cuda act_grad: activation %d", (int)act);
  unsigned blocks = mb_cuda_blocks(n, MB_CUDA_THREADS);
  MB_CUDA_DISPATCH_FLOAT(dt, "act_grad",
                         act_grad_kernel<T><<<blocks, MB_CUDA_THREADS, 0, s>>>((int)act, (const T *)saved,
                                                                             (const T *)gy, (T *)gx, n));
  MB_CUDA_LAUNCH_CHECK("act_grad_kernel");
  return MB_OK;
}

extern "C" int mb_cuda_accumulate(mb_dtype dt, void *y, const void *g, int64_t n, mb_cuda_stream s) {
  if (n <= 0)
    return MB_OK;
  unsigned blocks = mb_cuda_blocks(n, MB_CUDA_THREADS);
  MB_CUDA_DISPATCH_FLOAT(dt, "accumulate",
                         accumulate_kernel<T><<<blocks, MB_CUDA_THREADS, 0, s>>>((T *)y, (const T *)g, n));
  MB_CUDA_LAUNCH_CHECK("accumulate_kernel");
  return MB_OK;
}

/* ---- broadcast binary ops ---- */

/* The output's dims with each operand's element stride (0 where it is
 * broadcast); size-1 dims dropped and contiguous runs merged, as the CPU's
 * mb_bcast_init does. */
typedef struct {
  int nd;
  int64_t dim[MB_MAX_DIMS];
  int64_t st[2][MB_MAX_DIMS];
} bcast_t;

static void bcast_build(bcast_t *b, const mb_shape *out, const mb_shape *const *ops, int nops) {
  memset(b, 0, sizeof *b);
  int nd = out->ndim;
  int64_t st[2][MB_MAX_DIMS];
  for (int j = 0; j < nops; j++) {
    int64_t s = 1;
    for (int d = nd - 1; d >= 0; d--) {
      int od = ops[j]->ndim - nd + d;
      int64_t size = od >= 0 ? ops[j]->dim[od] : 1;
      st[j][d] = (size == 1 && out->dim[d] != 1) ? 0 : s;
      s *= size;
    }
  }
  int m = 0;
  for (int d = 0; d < nd; d++) {
    if (out->dim[d] == 1)
      continue;
    if (m > 0) {
      int mergeable = 1;
      for (int j = 0; j < nops; j++)
        if (b->st[j][m - 1] != st[j][d] * out->dim[d])
          mergeable = 0;
      if (mergeable) {
        b->dim[m - 1] *= out->dim[d];
        for (int j = 0; j < nops; j++)
          b->st[j][m - 1] = st[j][d];
        continue;
      }
    }
    b->dim[m] = out->dim[d];
    for (int j = 0; j < nops; j++)
      b->st[j][m] = st[j][d];
    m++;
  }
  if (m == 0) {
    b->dim[0] = 1;
    m = 1;
  }
  b->nd = m;
}

template <typename T>
__global__ void binary_kernel(int op, const T *a, const T *b, T *y, bcast_t bc, int64_t n, float alpha, float beta) {
  MB_GRID_STRIDE_LOOP(i, n) {
    int64_t rem = i, oa = 0, ob = 0;
    for (int d = bc.nd - 1; d >= 0; d--) {
      int64_t idx = rem % bc.dim[d];
      rem /= bc.dim[d];
      oa += idx * bc.st[0][d];
      ob += idx * bc.st[1][d];
    }
    float va = mb_ld(a, oa);
    float r;
    if (op == MB_CUDA_AXPBY)
      r = alpha * va + beta * mb_ld(b, ob);
    else if (op == MB_CUDA_MUL)
      r = va * mb_ld(b, ob);
    else
      r = alpha * va;
    mb_st(y, i, r);
  }
}

extern "C" int mb_cuda_binary(mb_cuda_binop op, mb_dtype dt, const void *a, const mb_shape *as, const void *b,
                              const mb_shape *bs, void *y, const mb_shape *ys, float alpha, float beta,
                              mb_cuda_stream s) {
  int64_t n = mb_shape_numel(ys);
  if (n <= 0)
    return MB_OK;
  if (op == MB_CUDA_SCALE) {
    b = a;
    bs = as;
  }
  const mb_shape *ops[2] = {as, bs};
  bcast_t bc;
  bcast_build(&bc, ys, ops, 2);
  unsigned blocks = mb_cuda_blocks(n, MB_CUDA_THREADS);
  MB_CUDA_DISPATCH_FLOAT(dt, "binary",
                         binary_kernel<T><<<blocks, MB_CUDA_THREADS, 0, s>>>((int)op, (const T *)a, (const T *)b,
                                                                           (T *)y, bc, n, alpha, beta));
  MB_CUDA_LAUNCH_CHECK("binary_kernel");
  return MB_OK;
}

/* ---- sum_to ----
 * After dropping size-1 dims of x and merging runs, x is a sequence of kept
 * (K) and reduced (R) groups. The common shape [K1, R, K2] (any of K1, K2
 * may be 1: the bias gradient [R, K2], row sums [K1, R], a full sum [R]) is
 * reduced in two fixed stages: chunks of R into f32 partials (in the
 * workspace when there is more than one chunk), then the partials summed in
 * chunk order in double. Other patterns use one thread per output element
 * walking its reduced elements in order. */

typedef struct {
  int kind; /* 0: scale copy, 1: [K1, R, K2], 2: general */
  int64_t K1, R, K2;
  int64_t chunk, nchunk;
  /* general: per x dim (after dropping size-1 dims) its size, x stride,
   * and whether it is reduced; output elements enumerate kept dims. */
  int nd;
  int64_t size[MB_MAX_DIMS], xstride[MB_MAX_DIMS];
  int reduced[MB_MAX_DIMS];
} sumto_plan;

static void sumto_make_plan(const mb_shape *xs, const mb_shape *ys, sumto_plan *p) {
  memset(p, 0, sizeof *p);
  int nd = xs->ndim;
  int64_t gsize[MB_MAX_DIMS];
  int gkind[MB_MAX_DIMS], ng = 0;
  int64_t xstride[MB_MAX_DIMS], s = 1;
  for (int d = nd - 1; d >= 0; d--) {
    xstride[d] = s;
    s *= xs->dim[d];
  }
  for (int d = 0; d < nd; d++) {
    int od = ys->ndim - nd + d;
    int64_t osz = od >= 0 ? ys->dim[od] : 1;
    if (xs->dim[d] == 1)
      continue;
    int kind = osz == 1 ? 1 : 0;
    p->size[p->nd] = xs->dim[d];
    p->xstride[p->nd] = xstride[d];
    p->reduced[p->nd] = kind;
    p->nd++;
    if (ng > 0 && gkind[ng - 1] == kind)
      gsize[ng - 1] *= xs->dim[d];
    else {
      gsize[ng] = xs->dim[d];
      gkind[ng++] = kind;
    }
  }
  p->K1 = p->R = p->K2 = 1;
  if (ng == 0 || (ng == 1 && gkind[0] == 0)) {
    p->kind = 0;
    return;
  }
  p->kind = 1;
  if (ng == 1)
    p->R = gsize[0];
  else if (ng == 2 && gkind[0] == 1)
    p->R = gsize[0], p->K2 = gsize[1];
  else if (ng == 2)
    p->K1 = gsize[0], p->R = gsize[1];
  else if (ng == 3 && gkind[0] == 0)
    p->K1 = gsize[0], p->R = gsize[1], p->K2 = gsize[2];
  else
    p->kind = 2;
  if (p->kind == 1) {
    p->chunk = p->K2 == 1 ? 8192 : 512;
    p->nchunk = (p->R + p->chunk - 1) / p->chunk;
  }
}

extern "C" size_t mb_cuda_sum_to_workspace(const mb_shape *xs, const mb_shape *ys) {
  sumto_plan p;
  sumto_make_plan(xs, ys, &p);
  if (p.kind != 1 || p.nchunk <= 1)
    return 0;
  return (size_t)(p.nchunk * p.K1 * p.K2) * sizeof(float);
}

template <typename T>
__global__ void scale_copy_kernel(const T *x, T *y, int64_t n, float scale) {
  MB_GRID_STRIDE_LOOP(i, n) mb_st(y, i, scale * mb_ld(x, i));
}

/* K2 == 1: one block per (k1, chunk), a block-wide sum over the chunk.
 * Writes scale*sum to y (one chunk) or the plain sum to part[c][k1]. */
template <typename T>
__global__ void sumto_rows_kernel(const T *x, T *y, float *part, int64_t K1, int64_t R, int64_t chunk, int64_t nchunk,
                                  float scale) {
  __shared__ float scratch[32];
  for (int64_t t = blockIdx.x; t < K1 * nchunk; t += gridDim.x) {
    int64_t k1 = t / nchunk, c = t - k1 * nchunk;
    int64_t r0 = c * chunk, r1 = r0 + chunk < R ? r0 + chunk : R;
    const T *row = x + k1 * R;
    float acc = 0.0f;
    for (int64_t r = r0 + threadIdx.x; r < r1; r += blockDim.x)
      acc += mb_ld(row, r);
    acc = mb_block_sum(acc, scratch);
    if (threadIdx.x == 0) {
      if (nchunk == 1)
        mb_st(y, k1, scale * acc);
      else
        part[c * K1 + k1] = acc;
    }
  }
}

/* K2 > 1: one thread per (k1, k2, chunk) walking the chunk's rows in order. */
template <typename T>
__global__ void sumto_cols_kernel(const T *x, T *y, float *part, int64_t K1, int64_t R, int64_t K2, int64_t chunk,
                                  int64_t nchunk, float scale) {
  int64_t n = nchunk * K1 * K2;
  MB_GRID_STRIDE_LOOP(i, n) {
    int64_t c = i / (K1 * K2), o = i - c * (K1 * K2);
    int64_t k1 = o / K2, k2 = o - k1 * K2;
    int64_t r0 = c * chunk, r1 = r0 + chunk < R ? r0 + chunk : R;
    const T *base = x + k1 * R * K2 + k2;
    float acc = 0.0f;
    for (int64_t r = r0; r < r1; r++)
      acc += mb_ld(base, r * K2);
    if (nchunk == 1)
      mb_st(y, o, scale * acc);
    else
      part[c * K1 * K2 + o] = acc;
  }
}

/* y[o] = scale * sum over chunks of part[c][o], in chunk order, in double. */
template <typename T>
__global__ void sumto_finish_kernel(const float *part, T *y, int64_t nout, int64_t nchunk, float scale) {
  MB_GRID_STRIDE_LOOP(o, nout) {
    double acc = 0.0;
    for (int64_t c = 0; c < nchunk; c++)
      acc += (double)part[c * nout + o];
    mb_st(y, o, (float)((double)scale * acc));
  }
}

/* Any pattern: thread per output element (kept dims in order), looping over
 * the reduced dims' elements in row-major order. */
template <typename T>
__global__ void sumto_general_kernel(const T *x, T *y, sumto_plan p, int64_t nout, int64_t nred, float scale) {
  MB_GRID_STRIDE_LOOP(o, nout) {
    int64_t rem = o, base = 0;
    for (int d = p.nd - 1; d >= 0; d--)
      if (!p.reduced[d]) {
        base += (rem % p.size[d]) * p.xstride[d];
        rem /= p.size[d];
      }
    double acc = 0.0;
    for (int64_t r = 0; r < nred; r++) {
      int64_t rr = r, off = base;
      for (int d = p.nd - 1; d >= 0; d--)
        if (p.reduced[d]) {
          off += (rr % p.size[d]) * p.xstride[d];
          rr /= p.size[d];
        }
      acc += (double)mb_ld(x, off);
    }
    mb_st(y, o, (float)((double)scale * acc));
  }
}

extern "C" int mb_cuda_sum_to(mb_dtype dt, const void *x, const mb_shape *xs, void *y, const mb_shape *ys, float scale,
                              void *ws, size_t ws_bytes, mb_cuda_stream s) {
  int64_t nx = mb_shape_numel(xs), ny = mb_shape_numel(ys);
  if (ny <= 0)
    return MB_OK;
  if (nx <= 0) /* nothing to sum: zeros */
    return mb_cuda_fill(y, dt, (size_t)ny, 0.0, s);
  sumto_plan p;
  sumto_make_plan(xs, ys, &p);
  size_t need = mb_cuda_sum_to_workspace(xs, ys);
  if (ws_bytes < need || (need && !ws))
    return MB_ERR(MB_EINTERNAL, "cuda sum_to: workspace of %zu bytes, %zu needed", ws_bytes, need);
  float *part = (float *)ws;
  if (p.kind == 0) {
    MB_CUDA_DISPATCH_FLOAT(dt, "sum_to",
                           scale_copy_kernel<T><<<mb_cuda_blocks(ny, MB_CUDA_THREADS), MB_CUDA_THREADS, 0, s>>>(
                               (const T *)x, (T *)y, ny, scale));
    MB_CUDA_LAUNCH_CHECK("scale_copy_kernel");
    return MB_OK;
  }
  if (p.kind == 2) {
    int64_t nred = nx / ny;
    MB_CUDA_DISPATCH_FLOAT(dt, "sum_to",
                           sumto_general_kernel<T><<<mb_cuda_blocks(ny, 128), 128, 0, s>>>((const T *)x, (T *)y, p, ny,
                                                                                            nred, scale));
    MB_CUDA_LAUNCH_CHECK("sumto_general_kernel");
    return MB_OK;
  }
  if (p.K2 == 1) {
    int64_t tasks = p.K1 * p.nchunk;
    unsigned blocks = (unsigned)(tasks < 65536 ? tasks : 65536);
    MB_CUDA_DISPATCH_FLOAT(dt, "sum_to",
                           sumto_rows_kernel<T><<<blocks, MB_CUDA_THREADS, 0, s>>>((const T *)x, (T *)y, part, p.K1,
                                                                                  p.R, p.chunk, p.nchunk, scale));
    MB_CUDA_LAUNCH_CHECK("sumto_rows_kernel");
  } else {
    int64_t n = p.nchunk * p.K1 * p.K2;
    MB_CUDA_DISPATCH_FLOAT(dt, "sum_to",
                           sumto_cols_kernel<T><<<mb_cuda_blocks(n, MB_CUDA_THREADS), MB_CUDA_THREADS, 0, s>>>(
                               (const T *)x, (T *)y, part, p.K1, p.R, p.K2, p.chunk, p.nchunk, scale));
    MB_CUDA_LAUNCH_CHECK("sumto_cols_kernel");
  }
  if (p.nchunk > 1) {
    MB_CUDA_DISPATCH_FLOAT(dt, "sum_to",
                           sumto_finish_kernel<T><<<mb_cuda_blocks(ny, MB_CUDA_THREADS), MB_CUDA_THREADS, 0, s>>>(
                               part, (T *)y, ny, p.nchunk, scale));
    MB_CUDA_LAUNCH_CHECK("sumto_finish_kernel");
  }
  return MB_OK;
}

/* ---- non-finite check (loss scaling) ---- */

template <typename T>
__global__ void nonfinite_kernel(const T *x, int64_t n, int *flag) {
  int found = 0;
  MB_GRID_STRIDE_LOOP(i, n) found |= !isfinite(mb_ld(x, i));
  if (__syncthreads_or(found) && threadIdx.x == 0)
    *flag = 1; /* every writer writes the same value */
}

extern "C" int mb_cuda_nonfinite_check(const void *x, mb_dtype dt, int64_t n, int *flag, mb_cuda_stream s) {
  if (n <= 0)
    return MB_OK;
  unsigned blocks = mb_cuda_blocks(n, MB_CUDA_THREADS);
  if (blocks > 4096)
    blocks = 4096;
  MB_CUDA_DISPATCH_FLOAT(dt, "nonfinite_check",
                         nonfinite_kernel<T><<<blocks, MB_CUDA_THREADS, 0, s>>>((const T *)x, n, flag));
  MB_CUDA_LAUNCH_CHECK("nonfinite_kernel");
  return MB_OK;
}
