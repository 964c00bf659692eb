/* embed.cu: embedding lookup and its deterministic scatter-add gradient,
 * mean pooling and its gradient, dropout on the CPU's Philox stream, and
 * permute, on the GPU (references: kernels/cpu/cpu_embed_body.h,
 * cpu_dropout.c, cpu_shape.c). */
#include <math.h>
#include <string.h>

#include "kernels/cuda/cuda_common.cuh"
#include "runtime/philox.h"

/* ---- embedding ---- */

template <typename T>
__global__ void embedding_fwd_kernel(const void *ids, int ids_i64, const T *table, T *y, int64_t n, int64_t V,
                                     int64_t H, mb_cuda_err_rec *err) {
  int64_t total = n * H;
  MB_GRID_STRIDE_LOOP(i, total) {
    int64_t t = i / H, h = i - t * H;
    int64_t id = mb_ld_index(ids, ids_i64, t);
    if (id < 0 || id >= V) {
      if (h == 0)
        mb_cuda_report(err, MB_EINVAL, MB_CUDA_ERR_EMBEDDING_ID, t, id, V);
      mb_st(y, i, NAN);
    } else {
      y[i] = table[id * H + h];
    }
  }
}

extern "C" int mb_cuda_embedding_fwd(mb_dtype dt, const void *ids, int ids_i64, const void *table, void *y, int64_t n,
                                     int64_t V, int64_t H, mb_cuda_err_rec *err, mb_cuda_stream s) {
  if (n <= 0 || H <= 0)
    return MB_OK;
  unsigned blocks = mb_cuda_blocks(n * H, MB_CUDA_THREADS);
  MB_CUDA_DISPATCH_FLOAT(dt, "embedding",
                         embedding_fwd_kernel<T><<<blocks, MB_CUDA_THREADS, 0, s>>>(ids, ids_i64, (const T *)table,
                                                                                   (T *)y, n, V, H, err));
  MB_CUDA_LAUNCH_CHECK("embedding_fwd_kernel");
  return MB_OK;
}

/* Workspace layout: [0, 256): the amax of |gy| as f32 bits (an unsigned
 * int, so atomicMax orders non-negative floats correctly; a NaN's bits are
 * above +Inf's); [256, ...): V*H int64 fixed-point accumulators. */
#define EMB_WS_HEADER 256

extern "C" size_t mb_cuda_embedding_bwd_workspace(int64_t V, int64_t H) {
  return EMB_WS_HEADER + (size_t)(V * H) * sizeof(long long);
}

template <typename T>
__global__ void amax_kernel(const T *x, int64_t n, unsigned int *amax_bits) {
  float m = 0.0f;
  MB_GRID_STRIDE_LOOP(i, n) {
    float a = fabsf(mb_ld(x, i));
    /* NaN must win: fmaxf would drop it */
    m = (a > m || isnan(a)) ? a : m;
  }
  /* block max over bits (a NaN's bits exceed every finite value's and Inf's) */
  unsigned int b = __float_as_uint(m);
  for (int o = 16; o > 0; o >>= 1)
    b = max(b, __shfl_xor_sync(0xffffffffu, b, o));
  if ((threadIdx.x & 31) == 0)
    atomicMax(amax_bits, b);
}

/* The fixed-point scale 2^e: every |term| * 2^e < 2^(62 - ceil(log2 n)), so
 * the sum of up to n terms stays below 2^62 in magnitude. */
static __device__ __forceinline__ double emb_scale(float amax, int64_t n) {
  int ea;
  frexpf(amax, &ea); /* amax < 2^ea (amax = 0 gives ea = 0) */
  int en = 0;
  while (((int64_t)1 << en) < n)
    en++;
  return ldexp(1.0, 62 - ea - en);
}

template <typename T>
__global__ void embedding_scatter_kernel(const void *ids, int ids_i64, const T *gy, long long *acc, int64_t n,
                                         int64_t V, int64_t H, const unsigned int *amax_bits, mb_cuda_err_rec *err) {
  const float amax = __uint_as_float(*amax_bits);
  if (!isfinite(amax))
    return; /* the finish kernel writes NaN everywhere */
  const double scale = emb_scale(amax, n);
  int64_t total = n * H;
  MB_GRID_STRIDE_LOOP(i, total) {
    int64_t t = i / H, h = i - t * H;
    int64_t id = mb_ld_index(ids, ids_i64, t);
    if (id < 0 || id >= V) {
      if (h == 0)
        mb_cuda_report(err, MB_EINVAL, MB_CUDA_ERR_EMBEDDING_ID, t, id, V);
      continue;
    }
    long long q = llrint((double)mb_ld(gy, i) * scale);
    /* two's complement: unsigned addition is signed addition */
    atomicAdd((unsigned long long *)&acc[id * H + h], (unsigned long long)q);
  }
}

template <typename T>
__global__ void embedding_finish_kernel(const long long *acc, T *dtable, int64_t total, int64_t n,
                                        const unsigned int *amax_bits) {
  const float amax = __uint_as_float(*amax_bits);
  const int finite = isfinite(amax);
  const double inv = finite ? 1.0 / emb_scale(amax, n) : 0.0;
  MB_GRID_STRIDE_LOOP(i, total) mb_st(dtable, i, finite ? (float)((double)acc[i] * inv) : NAN);
}

extern "C" int mb_cuda_embedding_bwd(mb_dtype dt, const void *ids, int ids_i64, const void *gy, void *dtable, int64_t n,
                                     int64_t V, int64_t H, void *ws, size_t ws_bytes, mb_cuda_err_rec *err,
                                     mb_cuda_stream s) {
  if (V <= 0 || H <= 0)
    return MB_OK;
  size_t need = mb_cuda_embedding_bwd_workspace(V, H);
  if (!ws || ws_bytes < need)
    return MB_ERR(MB_EINTERNAL, "cuda embedding_grad: workspace of %zu bytes, %zu needed", ws_bytes, need);
  unsigned int *amax_bits = (unsigned int *)ws;
  long long *acc = (long long *)((char *)ws + EMB_WS_HEADER);
  MB_TRY(mb_cuda_memset(ws, 0, need, s));
  MB_CUDA_DISPATCH_FLOAT(dt, "embedding_grad", {
    if (n > 0) {
      unsigned blocks = mb_cuda_blocks(n * H, MB_CUDA_THREADS);
      amax_kernel<T><<<blocks < 1024 ? blocks : 1024, MB_CUDA_THREADS, 0, s>>>((const T *)gy, n * H, amax_bits);
      MB_CUDA_LAUNCH_CHECK("amax_kernel");
      embedding_scatter_kernel<T><<<blocks, MB_CUDA_THREADS, 0, s>>>(ids, ids_i64, (const T *)gy, acc, n, V, H,
                                                                     amax_bits, err);
      MB_CUDA_LAUNCH_CHECK("embedding_scatter_kernel");
    }
    embedding_finish_kernel<T><<<mb_cuda_blocks(V * H, MB_CUDA_THREADS), MB_CUDA_THREADS, 0, s>>>(
        acc, (T *)dtable, V * H, n > 0 ? n : 1, amax_bits);
    MB_CUDA_LAUNCH_CHECK("embedding_finish_kernel");
  });
  return MB_OK;
}

/* ---- mean pooling ---- */

template <typename T>
__global__ void mean_pool_fwd_kernel(const T *x, const void *mask, mb_dtype mask_dt, T *y, int64_t B, int64_t L,
                                     int64_t H) {
  int64_t total = B * H;
  MB_GRID_STRIDE_LOOP(i, total) {
    int64_t b = i / H, h = i - b * H;
    float acc = 0.0f, cnt = 0.0f;
    for (int64_t l = 0; l < L; l++) {
      float w = mask ? mb_ld_any(mask, mask_dt, b * L + l) : 1.0f;
      if (w == 0.0f)
        continue;
      cnt += w;
      acc += w * mb_ld(x, (b * L + l) * H + h);
    }
    mb_st(y, i, cnt != 0.0f ? acc * (1.0f / cnt) : 0.0f);
  }
}

/* inv[b] = 1 / (total mask weight of row b), 0 for an empty row */
__global__ void pool_inv_kernel(const void *mask, mb_dtype mask_dt, float *inv, int64_t B, int64_t L) {
  MB_GRID_STRIDE_LOOP(b, B) {
    float cnt = 0.0f;
    for (int64_t l = 0; l < L; l++)
      cnt += mask ? mb_ld_any(mask, mask_dt, b * L + l) : 1.0f;
    inv[b] = cnt != 0.0f ? 1.0f / cnt : 0.0f;
  }
}

template <typename T>
__global__ void mean_pool_bwd_kernel(const T *gy, const void *mask, mb_dtype mask_dt, const float *inv, T *dx,
                                     int64_t B, int64_t L, int64_t H) {
  int64_t total = B * L * H;
  MB_GRID_STRIDE_LOOP(i, total) {
    int64_t bl = i / H, h = i - bl * H, b = bl / L;
    float w = (mask ? mb_ld_any(mask, mask_dt, bl) : 1.0f) * inv[b];
    mb_st(dx, i, w * mb_ld(gy, b * H + h));
  }
}

extern "C" int mb_cuda_mean_pool_fwd(mb_dtype dt, const void *x, const void *mask, mb_dtype mask_dt, void *y, int64_t B,
                                     int64_t L, int64_t H, mb_cuda_stream s) {
  if (B <= 0 || H <= 0)
    return MB_OK;
  MB_CUDA_DISPATCH_FLOAT(dt, "mean_pool",
                         mean_pool_fwd_kernel<T><<<mb_cuda_blocks(B * H, MB_CUDA_THREADS), MB_CUDA_THREADS, 0, s>>>(
                             (const T *)x, mask, mask_dt, (T *)y, B, L, H));
  MB_CUDA_LAUNCH_CHECK("mean_pool_fwd_kernel");
  return MB_OK;
}

extern "C" size_t mb_cuda_mean_pool_bwd_workspace(int64_t B) { return (size_t)(B > 0 ? B : 1) * sizeof(float); }

extern "C" int mb_cuda_mean_pool_bwd(mb_dtype dt, const void *gy, const void *mask, mb_dtype mask_dt, void *dx,
                                     int64_t B, int64_t L, int64_t H, void *ws, size_t ws_bytes, mb_cuda_stream s) {
  if (B <= 0 || L <= 0 || H <= 0)
    return MB_OK;
  if (!ws || ws_bytes < mb_cuda_mean_pool_bwd_workspace(B))
    return MB_ERR(MB_EINTERNAL, "cuda mean_pool_grad: workspace of %zu bytes, %zu needed", ws_bytes,
                  mb_cuda_mean_pool_bwd_workspace(B));
  float *inv = (float *)ws;
  pool_inv_kernel<<<mb_cuda_blocks(B, 128), 128, 0, s>>>(mask, mask_dt, inv, B, L);
  MB_CUDA_LAUNCH_CHECK("pool_inv_kernel");
  MB_CUDA_DISPATCH_FLOAT(dt, "mean_pool_grad",
                         mean_pool_bwd_kernel<T><<<mb_cuda_blocks(B * L * H, MB_CUDA_THREADS), MB_CUDA_THREADS, 0, s>>>(
                             (const T *)gy, mask, mask_dt, inv, (T *)dx, B, L, H));
  MB_CUDA_LAUNCH_CHECK("mean_pool_bwd_kernel");
  return MB_OK;
}

/* ---- dropout ---- */

/* Word e of site `stream` under `seed`: kernels/cpu/cpu_dropout.c's layout. */
static __device__ __forceinline__ uint32_t dropout_word(uint64_t seed, uint64_t e, uint32_t stream) {
  mb_u32x4 c;
  c.w[0] = (uint32_t)(e >> 2);
  c.w[1] = (uint32_t)(e >> 34);
  c.w[2] = stream;
  c.w[3] = 0;
  return mb_philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32)).w[e & 3];
}

template <typename T>
__global__ void dropout_kernel(const T *x, T *y, int64_t n, float p, float scale, const uint64_t *rng,
                               uint32_t stream) {
  const uint64_t seed = rng[0], offset = rng[1];
  MB_GRID_STRIDE_LOOP(i, n) {
    float u = mb_philox_u01(dropout_word(seed, offset + (uint64_t)i, stream));
    mb_st(y, i, u >= p ? mb_ld(x, i) * scale : 0.0f);
  }
}

extern "C" int mb_cuda_dropout(mb_dtype dt, const void *x, void *y, int64_t n, double p, const uint64_t *rng,
                               uint32_t stream, mb_cuda_stream s) {
  if (n <= 0)
    return MB_OK;
  if (!(p >= 0.0 && p < 1.0))
    return MB_ERR(MB_EINVAL, "cuda dropout: p = %g outside [0, 1)", p);
  if (p == 0.0)
    return mb_cuda_copy_d2d(y, x, (size_t)n * mb_dtype_size(dt), s);
  /* the CPU's threshold (float)p and scale (T)(1.0 / (1.0 - p)) */
  float scale = (float)(1.0 / (1.0 - p));
  MB_CUDA_DISPATCH_FLOAT(dt, "dropout",
                         dropout_kernel<T><<<mb_cuda_blocks(n, MB_CUDA_THREADS), MB_CUDA_THREADS, 0, s>>>(
                             (const T *)x, (T *)y, n, (float)p, scale, rng, stream));
  MB_CUDA_LAUNCH_CHECK("dropout_kernel");
  return MB_OK;
}

/* ---- permute ---- */

typedef struct {
  int nd;
  int64_t ydim[MB_MAX_DIMS];
  int64_t xstride[MB_MAX_DIMS]; /* x's stride of the dim that becomes y's dim d */
} permute_t;

template <typename U>
__global__ void permute_kernel(const U *x, U *y, permute_t p, int64_t n) {
  MB_GRID_STRIDE_LOOP(i, n) {
    int64_t rem = i, off = 0;
    for (int d = p.nd - 1; d >= 0; d--) {
      off += (rem % p.ydim[d]) * p.xstride[d];
      rem /= p.ydim[d];
    }
    y[i] = x[off];
  }
}

extern "C" int mb_cuda_permute(const void *x, const mb_shape *xs, void *y, const int *perm, size_t es,
                               mb_cuda_stream s) {
  int nd = xs->ndim;
  int64_t n = mb_shape_numel(xs);
  if (n <= 0)
    return MB_OK;
  permute_t p;
  memset(&p, 0, sizeof p);
  p.nd = nd > 0 ? nd : 1;
  int64_t xstride[MB_MAX_DIMS], st = 1;
  for (int d = nd - 1; d >= 0; d--) {
    xstride[d] = st;
    st *= xs->dim[d];
  }
  int seen = 0;
  for (int d = 0; d < nd; d++) {
    if (perm[d] < 0 || perm[d] >= nd || (seen >> perm[d]) & 1)
      return MB_ERR(MB_EINVAL, "cuda permute: bad permutation entry %d at %d", perm[d], d);
    seen |= 1 << perm[d];
    p.ydim[d] = xs->dim[perm[d]];
    p.xstride[d] = xstride[perm[d]];
  }
  if (nd == 0) {
    p.ydim[0] = 1;
    p.xstride[0] = 0;
  }
  unsigned blocks = mb_cuda_blocks(n, MB_CUDA_THREADS);
  switch (es) {
  case 1: permute_kernel<uint8_t><<<blocks, MB_CUDA_THREADS, 0, s>>>((const uint8_t *)x, (uint8_t *)y, p, n); break;
  case 2: permute_kernel<uint16_t><<<blocks, MB_CUDA_THREADS, 0, s>>>((const uint16_t *)x, (uint16_t *)y, p, n); break;
  case 4: permute_kernel<uint32_t><<<blocks, MB_CUDA_THREADS, 0, s>>>((const uint32_t *)x, (uint32_t *)y, p, n); break;
  case 8: permute_kernel<uint64_t><<<blocks, MB_CUDA_THREADS, 0, s>>>((const uint64_t *)x, (uint64_t *)y, p, n); break;
  default: return MB_ERR(MB_EUNSUPPORTED, "cuda permute: element size %zu", es);
  }
  MB_CUDA_LAUNCH_CHECK("permute_kernel");
  return MB_OK;
}
