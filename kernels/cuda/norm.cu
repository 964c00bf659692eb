/* norm.cu: LayerNorm, RMSNorm and softmax over the last dimension, forward
 * and backward, on the GPU, with the CPU kernels' formulas
 * (kernels/cpu/cpu_norm_body.h).
 *
 * Forward: one block per row (a grid-stride loop over rows), two passes
 * over the row (statistics, then output), f32 block reductions.
 * Backward: the rows are split into NORM_CHUNKS fixed chunks, one block per
 * chunk; each block walks its rows in order, writes dx, and accumulates
 * its chunk's weight/bias gradient partials in the workspace (each column
 * owned by one thread); a second kernel adds the partials in chunk order in
 * double. The chunking depends only on the shape, so results are the same
 * on every run and every GPU. */
#include "kernels/cuda/cuda_common.cuh"

#define NORM_CHUNKS 512

static int64_t norm_chunks(int64_t rows) { return rows < NORM_CHUNKS ? rows : NORM_CHUNKS; }

extern "C" size_t mb_cuda_norm_bwd_workspace(int64_t rows, int64_t H) {
  return (size_t)(norm_chunks(rows) * 2 * H) * sizeof(float);
}

static unsigned row_blocks(int64_t rows) { return (unsigned)(rows < 65536 ? (rows > 0 ? rows : 1) : 65536); }

/* ---- LayerNorm ---- */

template <typename T>
__global__ void layernorm_fwd_kernel(const T *x, const T *w, const T *b, T *y, float *mean, float *rstd, int64_t rows,
                                     int64_t H, float eps) {
  __shared__ float scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T *xr = x + r * H;
    T *yr = y + r * H;
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x)
      s += mb_ld(xr, i);
    float mu = mb_block_sum(s, scratch) / (float)H;
    float v = 0.0f;
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
      float d = mb_ld(xr, i) - mu;
      v += d * d;
    }
    float rs = 1.0f / sqrtf(mb_block_sum(v, scratch) / (float)H + eps);
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x)
      mb_st(yr, i, (mb_ld(xr, i) - mu) * rs * mb_ld(w, i) + mb_ld(b, i));
    if (threadIdx.x == 0) {
      mean[r] = mu;
      rstd[r] = rs;
    }
  }
}

/* part: [nch][2][H] (weight partials, then bias partials). */
template <typename T>
__global__ void layernorm_bwd_kernel(const T *gy, const T *x, const T *w, const float *mean, const float *rstd, T *dx,
                                     float *part, int64_t rows, int64_t H, int64_t nch) {
  __shared__ float scratch[32];
  int64_t c = blockIdx.x;
  int64_t r0 = rows * c / nch, r1 = rows * (c + 1) / nch;
  float *pw = part + c * 2 * H, *pb = pw + H;
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x)
    pw[i] = pb[i] = 0.0f;
  for (int64_t r = r0; r < r1; r++) {
    const T *xr = x + r * H, *gr = gy + r * H;
    T *dr = dx + r * H;
    const float m = mean[r], rs = rstd[r];
    float c1 = 0.0f, c2 = 0.0f;
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
      float g = mb_ld(gr, i), xhat = (mb_ld(xr, i) - m) * rs, dxhat = g * mb_ld(w, i);
      c1 += dxhat * xhat;
      c2 += dxhat;
      pw[i] += g * xhat;
      pb[i] += g;
    }
    float a1 = mb_block_sum(c1, scratch) / (float)H;
    float a2 = mb_block_sum(c2, scratch) / (float)H;
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
      float xhat = (mb_ld(xr, i) - m) * rs;
      mb_st(dr, i, rs * (mb_ld(gr, i) * mb_ld(w, i) - a2 - xhat * a1));
    }
  }
}

/* out_k[i] = sum over chunks of part[c][k][i] (k < nparts), in chunk order. */
template <typename T>
__global__ void norm_partials_kernel(const float *part, T *out0, T *out1, int64_t H, int64_t nch, int nparts) {
  MB_GRID_STRIDE_LOOP(i, H) {
    double s0 = 0.0, s1 = 0.0;
    for (int64_t c = 0; c < nch; c++) {
      s0 += (double)part[(c * nparts) * H + i];
      if (nparts == 2)
        s1 += (double)part[(c * nparts + 1) * H + i];
    }
    mb_st(out0, i, (float)s0);
    if (nparts == 2)
      mb_st(out1, i, (float)s1);
  }
}

extern "C" int mb_cuda_layernorm_fwd(mb_dtype dt, const void *x, const void *w, const void *b, void *y, float *mean,
                                     float *rstd, int64_t rows, int64_t H, float eps, mb_cuda_stream s) {
  if (rows <= 0)
    return MB_OK;
  if (H <= 0)
    return MB_ERR(MB_EINVAL, "cuda layernorm: rows of %lld elements", (long long)H);
  MB_CUDA_DISPATCH_FLOAT(dt, "layernorm",
                         layernorm_fwd_kernel<T><<<row_blocks(rows), MB_CUDA_THREADS, 0, s>>>(
                             (const T *)x, (const T *)w, (const T *)b, (T *)y, mean, rstd, rows, H, eps));
  MB_CUDA_LAUNCH_CHECK("layernorm_fwd_kernel");
  return MB_OK;
}

extern "C" int mb_cuda_layernorm_bwd(mb_dtype dt, const void *gy, const void *x, const void *w, const float *mean,
                                     const float *rstd, void *dx, void *dw, void *db, int64_t rows, int64_t H,
                                     void *ws, size_t ws_bytes, mb_cuda_stream s) {
  if (H <= 0)
    return MB_ERR(MB_EINVAL, "cuda layernorm_grad: rows of %lld elements", (long long)H);
  if (rows <= 0) { /* no rows: zero weight and bias gradients */
    MB_TRY(mb_cuda_fill(dw, dt, (size_t)H, 0.0, s));
    return mb_cuda_fill(db, dt, (size_t)H, 0.0, s);
  }
  int64_t nch = norm_chunks(rows);
  if (!ws || ws_bytes < mb_cuda_norm_bwd_workspace(rows, H))
    return MB_ERR(MB_EINTERNAL, "cuda layernorm_grad: workspace of %zu bytes, %zu needed", ws_bytes,
                  mb_cuda_norm_bwd_workspace(rows, H));
  float *part = (float *)ws;
  MB_CUDA_DISPATCH_FLOAT(dt, "layernorm_grad", {
    layernorm_bwd_kernel<T><<<(unsigned)nch, MB_CUDA_THREADS, 0, s>>>(
        (const T *)gy, (const T *)x, (const T *)w, mean, rstd, (T *)dx, part, rows, H, nch);
    MB_CUDA_LAUNCH_CHECK("layernorm_bwd_kernel");
    norm_partials_kernel<T><<<mb_cuda_blocks(H, MB_CUDA_THREADS), MB_CUDA_THREADS, 0, s>>>(part, (T *)dw, (T *)db, H,
                                                                                         nch, 2);
    MB_CUDA_LAUNCH_CHECK("norm_partials_kernel");
  });
  return MB_OK;
}

/* ---- RMSNorm ---- */

template <typename T>
__global__ void rmsnorm_fwd_kernel(const T *x, const T *w, T *y, float *rstd, int64_t rows, int64_t H, float eps) {
  __shared__ float scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T *xr = x + r * H;
    T *yr = y + r * H;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
      float v = mb_ld(xr, i);
      ss += v * v;
    }
    float rs = 1.0f / sqrtf(mb_block_sum(ss, scratch) / (float)H + eps);
    /* x * rstd first, then the weight, as HF and mamba_ssm do */
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x)
      mb_st(yr, i, (mb_ld(xr, i) * rs) * mb_ld(w, i));
    if (threadIdx.x == 0)
      rstd[r] = rs;
  }
}

/* part: [nch][H] (weight partials; the stride keeps the [nch][2][H] layout
 * of the shared workspace size, using the first half of each chunk). */
template <typename T>
__global__ void rmsnorm_bwd_kernel(const T *gy, const T *x, const T *w, const float *rstd, T *dx, float *part,
                                   int64_t rows, int64_t H, int64_t nch) {
  __shared__ float scratch[32];
  int64_t c = blockIdx.x;
  int64_t r0 = rows * c / nch, r1 = rows * (c + 1) / nch;
  float *pw = part + c * H;
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x)
    pw[i] = 0.0f;
  for (int64_t r = r0; r < r1; r++) {
    const T *xr = x + r * H, *gr = gy + r * H;
    T *dr = dx + r * H;
    const float rs = rstd[r];
    float c1 = 0.0f;
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
      float g = mb_ld(gr, i), xhat = mb_ld(xr, i) * rs;
      c1 += (g * mb_ld(w, i)) * xhat;
      pw[i] += g * xhat;
    }
    float a1 = mb_block_sum(c1, scratch) / (float)H;
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
      float xv = mb_ld(xr, i);
      mb_st(dr, i, rs * (mb_ld(gr, i) * mb_ld(w, i) - xv * rs * a1));
    }
  }
}

extern "C" int mb_cuda_rmsnorm_fwd(mb_dtype dt, const void *x, const void *w, void *y, float *rstd, int64_t rows,
                                   int64_t H, float eps, mb_cuda_stream s) {
  if (rows <= 0)
    return MB_OK;
  if (H <= 0)
    return MB_ERR(MB_EINVAL, "cuda rmsnorm: rows of %lld elements", (long long)H);
  MB_CUDA_DISPATCH_FLOAT(dt, "rmsnorm",
                         rmsnorm_fwd_kernel<T><<<row_blocks(rows), MB_CUDA_THREADS, 0, s>>>(
                             (const T *)x, (const T *)w, (T *)y, rstd, rows, H, eps));
  MB_CUDA_LAUNCH_CHECK("rmsnorm_fwd_kernel");
  return MB_OK;
}

extern "C" int mb_cuda_rmsnorm_bwd(mb_dtype dt, const void *gy, const void *x, const void *w, const float *rstd,
                                   void *dx, void *dw, int64_t rows, int64_t H, void *ws, size_t ws_bytes,
                                   mb_cuda_stream s) {
  if (H <= 0)
    return MB_ERR(MB_EINVAL, "cuda rmsnorm_grad: rows of %lld elements", (long long)H);
  if (rows <= 0)
    return mb_cuda_fill(dw, dt, (size_t)H, 0.0, s);
  int64_t nch = norm_chunks(rows);
  if (!ws || ws_bytes < mb_cuda_norm_bwd_workspace(rows, H))
    return MB_ERR(MB_EINTERNAL, "cuda rmsnorm_grad: workspace of %zu bytes, %zu needed", ws_bytes,
                  mb_cuda_norm_bwd_workspace(rows, H));
  float *part = (float *)ws;
  MB_CUDA_DISPATCH_FLOAT(dt, "rmsnorm_grad", {
    rmsnorm_bwd_kernel<T><<<(unsigned)nch, MB_CUDA_THREADS, 0, s>>>((const T *)gy, (const T *)x, (const T *)w, rstd,
                                                                    (T *)dx, part, rows, H, nch);
    MB_CUDA_LAUNCH_CHECK("rmsnorm_bwd_kernel");
    norm_partials_kernel<T><<<mb_cuda_blocks(H, MB_CUDA_THREADS), MB_CUDA_THREADS, 0, s>>>(part, (T *)dw, (T *)dw, H,
                                                                                         nch, 1);
    MB_CUDA_LAUNCH_CHECK("norm_partials_kernel");
  });
  return MB_OK;
}

/* ---- softmax ---- */

template <typename T>
__global__ void softmax_fwd_kernel(const T *x, T *y, int64_t rows, int64_t H) {
  __shared__ float scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T *xr = x + r * H;
    T *yr = y + r * H;
    float mx = -INFINITY;
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x)
      mx = fmaxf(mx, mb_ld(xr, i));
    mx = mb_block_max(mx, scratch);
    float sum = 0.0f;
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x)
      sum += expf(mb_ld(xr, i) - mx);
    float inv = 1.0f / mb_block_sum(sum, scratch);
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x)
      mb_st(yr, i, expf(mb_ld(xr, i) - mx) * inv);
  }
}

/* dx = y * (gy - sum(gy * y)) */
template <typename T>
__global__ void softmax_bwd_kernel(const T *y, const T *gy, T *dx, int64_t rows, int64_t H) {
  __shared__ float scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T *yr = y + r * H, *gr = gy + r * H;
    T *dr = dx + r * H;
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x)
      s += mb_ld(gr, i) * mb_ld(yr, i);
    s = mb_block_sum(s, scratch);
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x)
      mb_st(dr, i, mb_ld(yr, i) * (mb_ld(gr, i) - s));
  }
}

extern "C" int mb_cuda_softmax_fwd(mb_dtype dt, const void *x, void *y, int64_t rows, int64_t H, mb_cuda_stream s) {
  if (rows <= 0 || H <= 0)
    return MB_OK;
  MB_CUDA_DISPATCH_FLOAT(dt, "softmax",
                         softmax_fwd_kernel<T><<<row_blocks(rows), MB_CUDA_THREADS, 0, s>>>((const T *)x, (T *)y, rows,
                                                                                          H));
  MB_CUDA_LAUNCH_CHECK("softmax_fwd_kernel");
  return MB_OK;
}

extern "C" int mb_cuda_softmax_bwd(mb_dtype dt, const void *y, const void *gy, void *dx, int64_t rows, int64_t H,
                                   mb_cuda_stream s) {
  if (rows <= 0 || H <= 0)
    return MB_OK;
  MB_CUDA_DISPATCH_FLOAT(dt, "softmax_grad",
                         softmax_bwd_kernel<T><<<row_blocks(rows), MB_CUDA_THREADS, 0, s>>>(
                             (const T *)y, (const T *)gy, (T *)dx, rows, H));
  MB_CUDA_LAUNCH_CHECK("softmax_bwd_kernel");
  return MB_OK;
}
