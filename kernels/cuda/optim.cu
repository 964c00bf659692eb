/* optim.cu: the fused optimizer updates over the flat parameter buffers
 * (AdamW and SGD over every trainable segment in one launch), the
 * deterministic sum of squares for gradient clipping, and fp8 quantisation
 * with delayed scaling (amax history).
 *
 * Multi-tensor layout: a segment table in device memory lists the trainable
 * ranges [begin, end) of the flat buffer; each range is cut into chunks of
 * OPT_CHUNK elements and numbered consecutively, one block per chunk. A
 * block finds its segment by binary search over the first-chunk numbers. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_common.cuh"

#define OPT_CHUNK 4096

typedef struct {
  int64_t begin, end;
  int64_t first_chunk;
  int decay;
  int pad;
} seg_dev;

struct mb_cuda_segtab {
  seg_dev *dev;     /* device copy */
  int dev_cap;
  seg_dev *host;    /* what was uploaded last */
  int n;
  int64_t nchunks;
};

extern "C" int mb_cuda_segtab_new(mb_cuda_segtab **out) {
  *out = (mb_cuda_segtab *)calloc(1, sizeof(mb_cuda_segtab));
  if (!*out)
    return MB_ERR(MB_ENOMEM, "cuda segment table");
  return MB_OK;
}

extern "C" void mb_cuda_segtab_free(mb_cuda_segtab *t) {
  if (!t)
    return;
  if (t->dev)
    MB_CUDA_WARN(cudaFree(t->dev));
  free(t->host);
  free(t);
}

extern "C" int mb_cuda_segtab_set(mb_cuda_segtab *t, const int64_t *begin, const int64_t *end, const uint8_t *decay,
                                  int n, mb_cuda_stream s) {
  if (n < 0)
    return MB_ERR(MB_EINVAL, "cuda segment table: %d segments", n);
  seg_dev *h = (seg_dev *)calloc((size_t)(n > 0 ? n : 1), sizeof(seg_dev));
  if (!h)
    return MB_ERR(MB_ENOMEM, "cuda segment table");
  int64_t chunks = 0;
  for (int i = 0; i < n; i++) {
    if (begin[i] < 0 || end[i] < begin[i]) {
      free(h);
      return MB_ERR(MB_EINVAL, "cuda segment table: segment %d is [%lld, %lld)", i, (long long)begin[i],
                    (long long)end[i]);
    }
    h[i].begin = begin[i];
    h[i].end = end[i];
    h[i].decay = decay ? decay[i] : 0;
    h[i].first_chunk = chunks;
    chunks += (end[i] - begin[i] + OPT_CHUNK - 1) / OPT_CHUNK;
  }
  if (t->host && t->n == n && memcmp(t->host, h, (size_t)n * sizeof(seg_dev)) == 0) {
    free(h);
    return MB_OK; /* unchanged: the device copy is current */
  }
  if (n > t->dev_cap) {
    if (t->dev)
      MB_CUDA_TRY(cudaFree(t->dev));
    t->dev = NULL;
    t->dev_cap = 0;
    cudaError_t e = cudaMalloc((void **)&t->dev, (size_t)n * sizeof(seg_dev));
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      free(h);
      return MB_ERR(mb_cuda_status(e), "cuda segment table: cudaMalloc: %s", cudaGetErrorString(e));
    }
    t->dev_cap = n;
  }
  /* h is pageable: the copy has consumed it when cudaMemcpyAsync returns,
   * and it stays as the record of what the device holds */
  if (n > 0) {
    cudaError_t e = cudaMemcpyAsync(t->dev, h, (size_t)n * sizeof(seg_dev), cudaMemcpyHostToDevice, s);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      free(h);
      return MB_ERR(mb_cuda_status(e), "cuda segment table upload: %s", cudaGetErrorString(e));
    }
  }
  free(t->host);
  t->host = h;
  t->n = n;
  t->nchunks = chunks;
  return MB_OK;
}

/* The segment holding chunk c (first_chunk ascending). */
static __device__ __forceinline__ int seg_of_chunk(const seg_dev *seg, int n, int64_t c) {
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (seg[mid].first_chunk <= c)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

static unsigned chunk_blocks(int64_t nchunks) { return (unsigned)(nchunks < 65536 ? nchunks : 65536); }

/* ---- AdamW ---- */

typedef struct {
  float decay, w1, b2, w2, bc2_sqrt, eps, neg_step, gs;
  int scaled, decay_on;
} adamw_k;

__global__ void adamw_kernel(float *p, const float *g, float *m, float *v, const seg_dev *seg, int nseg,
                             int64_t nchunks, adamw_k k, const float *gs_dev) {
  const float gs = gs_dev ? k.gs * *gs_dev : k.gs;
  const int scaled = k.scaled || gs_dev != NULL;
  for (int64_t c = blockIdx.x; c < nchunks; c += gridDim.x) {
    const seg_dev sg = seg[seg_of_chunk(seg, nseg, c)];
    int64_t b = sg.begin + (c - sg.first_chunk) * OPT_CHUNK;
    int64_t e = b + OPT_CHUNK < sg.end ? b + OPT_CHUNK : sg.end;
    const int decayed = sg.decay && k.decay_on;
    for (int64_t i = b + threadIdx.x; i < e; i += blockDim.x) {
      float gi = scaled ? g[i] * gs : g[i];
      float pi = decayed ? p[i] * k.decay : p[i];
      float mi = m[i];
      /* torch's lerp: fma(w, end - self, self) for w < 0.5, else
       * fma(w - 1, end - self, end) */
      mi = k.w1 < 0.5f ? fmaf(k.w1, gi - mi, mi) : fmaf(k.w1 - 1.0f, gi - mi, gi);
      float vi = v[i] * k.b2 + k.w2 * gi * gi;
      float denom = sqrtf(vi) / k.bc2_sqrt + k.eps;
      p[i] = pi + k.neg_step * mi / denom;
      m[i] = mi;
      v[i] = vi;
    }
  }
}

extern "C" int mb_cuda_adamw(float *param, const float *grad, float *m, float *v, const mb_cuda_segtab *t,
                             const mb_cuda_adamw_hparams *h, const float *grad_scale_dev, mb_cuda_stream s) {
  if (h->step < 1)
    return MB_ERR(MB_EINVAL, "cuda adamw: step %lld (the first update is step 1)", (long long)h->step);
  if (t->nchunks == 0)
    return MB_OK;
  const double bc1 = 1.0 - pow(h->beta1, (double)h->step);
  const double bc2 = 1.0 - pow(h->beta2, (double)h->step);
  adamw_k k;
  k.decay = (float)(1.0 - h->lr * h->weight_decay);
  k.w1 = (float)(1.0 - h->beta1);
  k.b2 = (float)h->beta2;
  k.w2 = (float)(1.0 - h->beta2);
  k.bc2_sqrt = (float)sqrt(bc2);
  k.eps = (float)h->eps;
  k.neg_step = (float)(-(h->lr / bc1));
  k.gs = (float)h->grad_scale;
  k.scaled = h->grad_scale != 1.0;
  k.decay_on = h->weight_decay != 0.0;
  adamw_kernel<<<chunk_blocks(t->nchunks), MB_CUDA_THREADS, 0, s>>>(param, grad, m, v, t->dev, t->n, t->nchunks, k,
                                                                    grad_scale_dev);
  MB_CUDA_LAUNCH_CHECK("adamw_kernel");
  return MB_OK;
}

/* ---- SGD ---- */

typedef struct {
  float wd, mom, damp, neg_lr, gs;
  int scaled, first, nesterov, decay_on;
} sgd_k;

__global__ void sgd_kernel(float *p, const float *g, float *buf, const seg_dev *seg, int nseg, int64_t nchunks,
                           sgd_k k) {
  for (int64_t c = blockIdx.x; c < nchunks; c += gridDim.x) {
    const seg_dev sg = seg[seg_of_chunk(seg, nseg, c)];
    int64_t b = sg.begin + (c - sg.first_chunk) * OPT_CHUNK;
    int64_t e = b + OPT_CHUNK < sg.end ? b + OPT_CHUNK : sg.end;
    const int decayed = sg.decay && k.decay_on;
    for (int64_t i = b + threadIdx.x; i < e; i += blockDim.x) {
      float d = k.scaled ? g[i] * k.gs : g[i];
      if (decayed)
        d = d + k.wd * p[i];
      if (buf) {
        float bi = k.first ? d : buf[i] * k.mom + k.damp * d;
        buf[i] = bi;
        d = k.nesterov ? d + k.mom * bi : bi;
      }
      p[i] = p[i] + k.neg_lr * d;
    }
  }
}

extern "C" int mb_cuda_sgd(float *param, const float *grad, float *momentum_buf, const mb_cuda_segtab *t, double lr,
                           double momentum, double dampening, double weight_decay, int nesterov, int64_t step,
                           double grad_scale, mb_cuda_stream s) {
  if (t->nchunks == 0)
    return MB_OK;
  sgd_k k;
  k.wd = (float)weight_decay;
  k.mom = (float)momentum;
  k.damp = (float)(1.0 - dampening);
  k.neg_lr = (float)(-lr);
  k.gs = (float)grad_scale;
  k.scaled = grad_scale != 1.0;
  k.first = step == 1;
  k.nesterov = nesterov;
  k.decay_on = weight_decay != 0.0;
  sgd_kernel<<<chunk_blocks(t->nchunks), MB_CUDA_THREADS, 0, s>>>(param, grad, momentum_buf, t->dev, t->n, t->nchunks,
                                                                  k);
  MB_CUDA_LAUNCH_CHECK("sgd_kernel");
  return MB_OK;
}

/* ---- sum of squares ---- */

extern "C" size_t mb_cuda_sumsq_workspace(const mb_cuda_segtab *t) {
  return (size_t)(t->nchunks > 0 ? t->nchunks : 1) * sizeof(double);
}

template <typename T>
__global__ void sumsq_chunks_kernel(const T *x, const seg_dev *seg, int nseg, int64_t nchunks, double *part) {
  __shared__ double scratch[32];
  for (int64_t c = blockIdx.x; c < nchunks; c += gridDim.x) {
    const seg_dev sg = seg[seg_of_chunk(seg, nseg, c)];
    int64_t b = sg.begin + (c - sg.first_chunk) * OPT_CHUNK;
    int64_t e = b + OPT_CHUNK < sg.end ? b + OPT_CHUNK : sg.end;
    double acc = 0.0;
    for (int64_t i = b + threadIdx.x; i < e; i += blockDim.x) {
      double v = (double)mb_ld(x, i);
      acc += v * v;
    }
    acc = mb_block_sum_d(acc, scratch);
    if (threadIdx.x == 0)
      part[c] = acc;
  }
}

__global__ void sum_doubles_kernel(const double *part, int64_t n, double *out) {
  __shared__ double scratch[32];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    acc += part[i];
  acc = mb_block_sum_d(acc, scratch);
  if (threadIdx.x == 0)
    *out = acc;
}

extern "C" int mb_cuda_sumsq(const void *x, mb_dtype dt, const mb_cuda_segtab *t, double *out, void *ws,
                             size_t ws_bytes, mb_cuda_stream s) {
  if (t->nchunks == 0)
    return mb_cuda_memset(out, 0, sizeof(double), s);
  if (!ws || ws_bytes < mb_cuda_sumsq_workspace(t))
    return MB_ERR(MB_EINTERNAL, "cuda sumsq: workspace of %zu bytes, %zu needed", ws_bytes,
                  mb_cuda_sumsq_workspace(t));
  double *part = (double *)ws;
  MB_CUDA_DISPATCH_FLOAT(dt, "sumsq",
                         sumsq_chunks_kernel<T><<<chunk_blocks(t->nchunks), MB_CUDA_THREADS, 0, s>>>(
                             (const T *)x, t->dev, t->n, t->nchunks, part));
  MB_CUDA_LAUNCH_CHECK("sumsq_chunks_kernel");
  sum_doubles_kernel<<<1, MB_CUDA_THREADS, 0, s>>>(part, t->nchunks, out);
  MB_CUDA_LAUNCH_CHECK("sum_doubles_kernel");
  return MB_OK;
}

/* ---- fp8 with delayed scaling ---- */

__global__ void fp8_meta_init_kernel(mb_fp8_meta *meta, int n) {
  MB_GRID_STRIDE_LOOP(i, n) {
    mb_fp8_meta m;
    m.scale = 1.0f;
    m.scale_inv = 1.0f;
    m.amax = 0.0f;
    m.pos = 0;
    for (int j = 0; j < MB_FP8_HISTORY; j++)
      m.history[j] = 0.0f;
    meta[i] = m;
  }
}

extern "C" int mb_cuda_fp8_meta_init(mb_fp8_meta *meta, int n, mb_cuda_stream s) {
  if (n <= 0)
    return MB_OK;
  fp8_meta_init_kernel<<<mb_cuda_blocks(n, 128), 128, 0, s>>>(meta, n);
  MB_CUDA_LAUNCH_CHECK("fp8_meta_init_kernel");
  return MB_OK;
}

/* dst[j] = fp8(src[i] * scale) (dst NULL: nothing stored) where j = i, or for a transpose of
 * [rows, cols] j = c * rows + r for i = r * cols + c (one thread per
 * output element: reads strided, writes coalesced). */
template <typename T>
__global__ void fp8_quantize_kernel(uint8_t *dst, int e5m2, const T *src, int64_t rows, int64_t cols, int transpose,
                                    mb_fp8_meta *meta) {
  const float scale = meta->scale;
  float m = 0.0f;
  int64_t n = rows * cols;
  MB_GRID_STRIDE_LOOP(j, n) {
    int64_t i = j;
    if (transpose) {
      int64_t c = j / rows, r = j - c * rows;
      i = r * cols + c;
    }
    float x = mb_ld(src, i);
    float a = fabsf(x);
    m = (a > m || isnan(a)) ? a : m;
    if (dst) /* NULL: the amax only (current scaling's first pass) */
      dst[j] = __nv_cvt_float_to_fp8(x * scale, __NV_SATFINITE, e5m2 ? __NV_E5M2 : __NV_E4M3);
  }
  unsigned int b = __float_as_uint(m);
  for (int o = 16; o > 0; o >>= 1)
    b = max(b, __shfl_xor_sync(0xffffffffu, b, o));
  if ((threadIdx.x & 31) == 0)
    atomicMax((unsigned int *)&meta->amax, b);
}

extern "C" int mb_cuda_fp8_quantize(void *dst, mb_dtype fp8, const void *src, mb_dtype src_dt, int64_t rows,
                                    int64_t cols, int transpose, mb_fp8_meta *meta, mb_cuda_stream s) {
  if (fp8 != MB_F8E4M3 && fp8 != MB_F8E5M2)
    return MB_ERR(MB_EINVAL, "cuda fp8 quantize: target %s is not an fp8 dtype", mb_dtype_name(fp8));
  int64_t n = rows * cols;
  if (n <= 0)
    return MB_OK;
  unsigned blocks = mb_cuda_blocks(n, MB_CUDA_THREADS);
  MB_CUDA_DISPATCH_FLOAT(src_dt, "fp8 quantize",
                         fp8_quantize_kernel<T><<<blocks, MB_CUDA_THREADS, 0, s>>>(
                             (uint8_t *)dst, fp8 == MB_F8E5M2, (const T *)src, rows, cols, transpose, meta));
  MB_CUDA_LAUNCH_CHECK("fp8_quantize_kernel");
  return MB_OK;
}

/* Current scaling: the tensor's own amax sets its scale (a fresh history
 * holding only this amax), then it is quantised with it: three passes and
 * a tiny kernel, no calibration, no state carried between calls. */
extern "C" int mb_cuda_fp8_quantize_current(void *dst, mb_dtype fp8, const void *src, mb_dtype src_dt, int64_t n,
                                            mb_fp8_meta *meta, mb_cuda_stream s) {
  if (!dst)
    return MB_ERR(MB_EINVAL, "cuda fp8 quantize (current scaling): NULL destination");
  MB_TRY(mb_cuda_fp8_meta_init(meta, 1, s));
  MB_TRY(mb_cuda_fp8_quantize(NULL, fp8, src, src_dt, 1, n, 0, meta, s));
  MB_TRY(mb_cuda_fp8_update(meta, 1, fp8, 0, s));
  return mb_cuda_fp8_quantize(dst, fp8, src, src_dt, 1, n, 0, meta, s);
}

__global__ void fp8_update_kernel(mb_fp8_meta *meta, int n, float fp8_max, int margin) {
  MB_GRID_STRIDE_LOOP(i, n) {
    mb_fp8_meta *m = &meta[i];
    m->history[m->pos] = m->amax;
    m->pos = (m->pos + 1) % MB_FP8_HISTORY;
    m->amax = 0.0f;
    float amax = 0.0f;
    int finite = 1;
    for (int j = 0; j < MB_FP8_HISTORY; j++) {
      finite &= isfinite(m->history[j]);
      amax = fmaxf(amax, m->history[j]);
    }
    float sc = finite && amax > 0.0f ? ldexpf(fp8_max / amax, -margin) : 0.0f;
    if (isfinite(sc) && sc > 0.0f) { /* else keep the last scale */
      m->scale = sc;
      m->scale_inv = 1.0f / sc;
    }
  }
}

extern "C" int mb_cuda_fp8_update(mb_fp8_meta *meta, int n, mb_dtype fp8, int margin, mb_cuda_stream s) {
  if (fp8 != MB_F8E4M3 && fp8 != MB_F8E5M2)
    return MB_ERR(MB_EINVAL, "cuda fp8 update: %s is not an fp8 dtype", mb_dtype_name(fp8));
  if (n <= 0)
    return MB_OK;
  fp8_update_kernel<<<mb_cuda_blocks(n, 128), 128, 0, s>>>(meta, n, fp8 == MB_F8E4M3 ? 448.0f : 57344.0f, margin);
  MB_CUDA_LAUNCH_CHECK("fp8_update_kernel");
  return MB_OK;
}
