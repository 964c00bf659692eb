/* loss.cu: softmax cross-entropy over integer labels on the GPU, as
 * kernels/cpu/cpu_loss_body.h: mean over the rows whose label is not
 * ignore_index (NaN when there are none), and its gradient.
 *
 * Forward: one block per row computes the row's log-sum-exp and its term
 * lse - x[label] (into the workspace, in double); one block then adds the
 * terms in a fixed order and divides by the count. Backward: one block
 * counts the rows that count, then one block per row writes
 * gloss / count * (softmax - onehot). A label outside [0, C) is reported
 * through the error record and gives NaN. */
#include "kernels/cuda/cuda_common.cuh"

extern "C" size_t mb_cuda_cross_entropy_workspace(int64_t N) { return (size_t)(N + 1) * sizeof(double) + 64; }

static unsigned row_blocks(int64_t rows) { return (unsigned)(rows < 65536 ? (rows > 0 ? rows : 1) : 65536); }

template <typename T>
__global__ void ce_rows_kernel(const T *x, const void *labels, int labels_i64, float *lse, double *term, int64_t N,
                               int64_t C, int64_t ignore, mb_cuda_err_rec *err) {
  __shared__ float scratch[32];
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const T *xr = x + r * C;
    float mx = -INFINITY;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
      mx = fmaxf(mx, mb_ld(xr, c));
    mx = mb_block_max(mx, scratch);
    float s = 0.0f;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
      s += expf(mb_ld(xr, c) - mx);
    s = mb_block_sum(s, scratch);
    if (threadIdx.x == 0) {
      float l = mx + logf(s);
      lse[r] = l;
      int64_t y = mb_ld_index(labels, labels_i64, r);
      if (y == ignore) {
        term[r] = 0.0;
      } else if (y < 0 || y >= C) {
        mb_cuda_report(err, MB_EINVAL, MB_CUDA_ERR_CE_LABEL, r, y, C);
        term[r] = (double)NAN;
      } else {
        term[r] = (double)(l - mb_ld(xr, y));
      }
    }
  }
}

/* One block: loss = sum of counted terms / count, in a fixed order. */
template <typename T>
__global__ void ce_mean_kernel(const double *term, const void *labels, int labels_i64, T *loss, int64_t N,
                               int64_t ignore) {
  __shared__ double scratch[32];
  double total = 0.0, count = 0.0;
  for (int64_t r = threadIdx.x; r < N; r += blockDim.x)
    if (mb_ld_index(labels, labels_i64, r) != ignore) {
      total += term[r];
      count += 1.0;
    }
  total = mb_block_sum_d(total, scratch);
  count = mb_block_sum_d(count, scratch);
  if (threadIdx.x == 0)
    mb_st(loss, 0, count > 0.0 ? (float)(total / count) : NAN);
}

/* One block: *count = number of rows whose label is not ignore_index. */
__global__ void ce_count_kernel(const void *labels, int labels_i64, double *count, int64_t N, int64_t ignore) {
  __shared__ double scratch[32];
  double c = 0.0;
  for (int64_t r = threadIdx.x; r < N; r += blockDim.x)
    c += mb_ld_index(labels, labels_i64, r) != ignore ? 1.0 : 0.0;
  c = mb_block_sum_d(c, scratch);
  if (threadIdx.x == 0)
    *count = c;
}

template <typename T>
__global__ void ce_bwd_kernel(const T *gloss, const T *x, const void *labels, int labels_i64, const float *lse,
                              const double *count, T *dx, int64_t N, int64_t C, int64_t ignore, mb_cuda_err_rec *err) {
  const double cnt = *count;
  const float scale = cnt > 0.0 ? mb_ld(gloss, 0) / (float)cnt : 0.0f;
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const T *xr = x + r * C;
    T *dr = dx + r * C;
    int64_t y = mb_ld_index(labels, labels_i64, r);
    if (y == ignore) {
      for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
        mb_st(dr, c, 0.0f);
      continue;
    }
    if (y < 0 || y >= C) {
      if (threadIdx.x == 0)
        mb_cuda_report(err, MB_EINVAL, MB_CUDA_ERR_CE_LABEL, r, y, C);
      for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
        mb_st(dr, c, NAN);
      continue;
    }
    const float l = lse[r];
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
      mb_st(dr, c, scale * (expf(mb_ld(xr, c) - l) - (c == y ? 1.0f : 0.0f)));
  }
}

extern "C" int mb_cuda_cross_entropy_fwd(mb_dtype dt, const void *logits, const void *labels, int labels_i64,
                                         void *loss, float *lse, int64_t N, int64_t C, int64_t ignore, void *ws,
                                         size_t ws_bytes, mb_cuda_err_rec *err, mb_cuda_stream s) {
  if (C <= 0)
    return MB_ERR(MB_EINVAL, "cuda cross_entropy: %lld classes", (long long)C);
  if (!ws || ws_bytes < mb_cuda_cross_entropy_workspace(N))
    return MB_ERR(MB_EINTERNAL, "cuda cross_entropy: workspace of %zu bytes, %zu needed", ws_bytes,
                  mb_cuda_cross_entropy_workspace(N));
  double *term = (double *)ws;
  MB_CUDA_DISPATCH_FLOAT(dt, "cross_entropy", {
    if (N > 0) {
      ce_rows_kernel<T><<<row_blocks(N), MB_CUDA_THREADS, 0, s>>>((const T *)logits, labels, labels_i64, lse, term, N,
                                                                  C, ignore, err);
      MB_CUDA_LAUNCH_CHECK("ce_rows_kernel");
    }
    ce_mean_kernel<T><<<1, MB_CUDA_THREADS, 0, s>>>(term, labels, labels_i64, (T *)loss, N, ignore);
    MB_CUDA_LAUNCH_CHECK("ce_mean_kernel");
  });
  return MB_OK;
}

extern "C" int mb_cuda_cross_entropy_bwd(mb_dtype dt, const void *gloss, const void *logits, const void *labels,
                                         int labels_i64, const float *lse, void *dlogits, int64_t N, int64_t C,
                                         int64_t ignore, void *ws, size_t ws_bytes, mb_cuda_err_rec *err,
                                         mb_cuda_stream s) {
  if (N <= 0)
    return MB_OK;
  if (C <= 0)
    return MB_ERR(MB_EINVAL, "cuda cross_entropy_grad: %lld classes", (long long)C);
  if (!ws || ws_bytes < mb_cuda_cross_entropy_workspace(N))
    return MB_ERR(MB_EINTERNAL, "cuda cross_entropy_grad: workspace of %zu bytes, %zu needed", ws_bytes,
                  mb_cuda_cross_entropy_workspace(N));
  double *count = (double *)ws;
  ce_count_kernel<<<1, MB_CUDA_THREADS, 0, s>>>(labels, labels_i64, count, N, ignore);
  MB_CUDA_LAUNCH_CHECK("ce_count_kernel");
  MB_CUDA_DISPATCH_FLOAT(dt, "cross_entropy_grad",
                         ce_bwd_kernel<T><<<row_blocks(N), MB_CUDA_THREADS, 0, s>>>(
                             (const T *)gloss, (const T *)logits, labels, labels_i64, lse, count, (T *)dlogits, N, C,
                             ignore, err));
  MB_CUDA_LAUNCH_CHECK("ce_bwd_kernel");
  return MB_OK;
}
