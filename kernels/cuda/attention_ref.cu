/* attention_ref.cu: the reference CUDA attention kernels: one thread block
 * per (row, head), f32 arithmetic, no tensor cores, any head_dim up to 1024.
 * The universal fallback of the dispatcher (f32 inputs, head_dims the flash
 * kernels lack, old GPUs) and, in the tests, a second GPU opinion next to the
 * CPU reference. Deterministic: fixed reduction trees, no atomics.
 *
 * Forward, block (query token i, head h): the query row in shared memory
 * (f32), then the sequence's visible keys in chunks of NT = 128, one key per
 * thread: s = scale * q.k (the thread reads the key row), a chunk-wise
 * online softmax (block max, rescale, block sum) and acc[e] += p_j v_j[e]
 * with thread e owning dimensions e, e + NT, ...
 * Backward: rowsum(dO * O) first (attn_bwd_prep), then one kernel with a
 * block per query row for dq = scale * sum_j dS_ij k_j and one with a block
 * per key row for dv = sum_i P_ij dO_i and dk = scale * sum_i dS_ij q_i,
 * where P_ij = exp(scale q_i.k_j - lse_i) and dS_ij = P_ij (dO_i.v_j - D_i).
 * Every (i, j) dot product is recomputed in both kernels: O(L^2 D) work,
 * O(1) extra memory per row.
 */
#include "kernels/cuda/attention_common.cuh"

#define REF_NT 128
#define REF_MAX_PER_THREAD 8 /* head_dim <= REF_NT * 8 = 1024 */

/* Row position `t` (a flat token) -> its sequence and position there.
 * Returns false for the varlen budget's tail. */
__device__ __forceinline__ bool ref_locate(const AttnArgs &a, int t, AttnSeg *g, int *pos) {
  if (!a.cu_seqlens) {
    *g = attn_segment(a, t / a.seqlen);
    *pos = t % a.seqlen;
    return true;
  }
  if (a.nseq == 0 || t >= attn_used_tokens(a))
    return false;
  /* the last sequence s with start(s) <= t (starts are clamped, non-decreasing
   * when cu_seqlens is valid); binary search over [0, nseq) */
  int lo = 0, hi = a.nseq - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (min(max(a.cu_seqlens[mid], 0), a.seqlen) <= t)
      lo = mid;
    else
      hi = mid - 1;
  }
  *g = attn_segment(a, lo);
  *pos = t - g->start;
  return *pos >= 0 && *pos < g->n;
}

__device__ __forceinline__ bool ref_real(const AttnSeg &g, int pos) { return !g.mask || g.mask[pos] != 0; }

__device__ __forceinline__ float ref_descale(const float *p) { return p ? *p : 1.0f; }

template <typename Tin, typename Tout> __global__ void __launch_bounds__(REF_NT) attn_ref_fwd_kernel(AttnArgs a) {
  ATTN_DYNAMIC_SMEM(float, sq); /* [D] the query row */
  float *sp = sq + a.head_dim;  /* [NT] this chunk's probabilities */
  float *scratch = sp + REF_NT; /* [32] reductions */
  const int t = blockIdx.x, h = blockIdx.y, tid = threadIdx.x, D = a.head_dim;
  const int64_t row = (int64_t)t * a.ld + (int64_t)h * D;
  Tout *out = (Tout *)a.o;

  AttnSeg g;
  int i;
  if (!ref_locate(a, t, &g, &i) || !ref_real(g, i)) { /* tail or padded query */
    for (int e = tid; e < D; e += REF_NT)
      AttnType<Tout>::store(out, row + e, 0.0f);
    if (tid == 0)
      a.lse[(int64_t)t * a.heads + h] = INFINITY;
    return;
  }
  const Tin *q = (const Tin *)a.q, *k = (const Tin *)a.k, *v = (const Tin *)a.v;
  const float qk_scale = a.scale * ref_descale(a.q_descale) * ref_descale(a.k_descale);
  const float vds = ref_descale(a.v_descale);
  for (int e = tid; e < D; e += REF_NT)
    sq[e] = AttnType<Tin>::load(q, row + e);
  __syncthreads();

  float acc[REF_MAX_PER_THREAD];
#pragma unroll
  for (int r = 0; r < REF_MAX_PER_THREAD; r++)
    acc[r] = 0.0f;
  float m = -INFINITY, l = 0.0f; /* running max of the scaled scores, running sum */
  bool nan_score = false;        /* the max skips NaN scores: a row of NaN only would read as no key */
  const int kend = a.causal ? i + 1 : g.n;
  for (int j0 = 0; j0 < kend; j0 += REF_NT) {
    const int j = j0 + tid;
    float s = -INFINITY;
    if (j < kend && ref_real(g, j)) {
      const int64_t krow = (int64_t)(g.start + j) * a.ld + (int64_t)h * D;
      float dot = 0.0f;
      for (int e = 0; e < D; e++)
        dot += sq[e] * AttnType<Tin>::load(k, krow + e);
      s = qk_scale * dot;
      nan_score |= s != s;
    }
    const float mnew = fmaxf(m, attn_block_max(s, scratch));
    if (mnew == -INFINITY) /* nothing visible yet (block-uniform) */
      continue;
    const float corr = expf(m - mnew); /* 0 on the first visible chunk */
    const float p = s == -INFINITY ? 0.0f : expf(s - mnew);
    sp[tid] = p;
    l = l * corr + attn_block_sum(p, scratch); /* its barriers also publish sp */
    const int nc = min(REF_NT, kend - j0);
#pragma unroll
    for (int r = 0; r < REF_MAX_PER_THREAD; r++) {
      const int e = tid + r * REF_NT;
      if (e < D) {
        float x = acc[r] * corr;
        for (int c = 0; c < nc; c++)
          x += sp[c] * AttnType<Tin>::load(v, (int64_t)(g.start + j0 + c) * a.ld + (int64_t)h * D + e);
        acc[r] = x;
      }
    }
    m = mnew;
    __syncthreads(); /* everyone is done with sp before the next chunk */
  }
  if (l == 0.0f && attn_block_sum(nan_score ? 1.0f : 0.0f, scratch) > 0.0f) /* l is block-uniform */
    l = NAN; /* out and lse NaN, as in PyTorch */
  const float inv = l > 0.0f || l != l ? vds / l : 0.0f;
#pragma unroll
  for (int r = 0; r < REF_MAX_PER_THREAD; r++) {
    const int e = tid + r * REF_NT;
    if (e < D)
      AttnType<Tout>::store(out, row + e, acc[r] * inv);
  }
  if (tid == 0)
    a.lse[(int64_t)t * a.heads + h] = l > 0.0f || l != l ? m + logf(l) : INFINITY;
}

/* dq for query row i: a block per (query token, head). */
template <typename T> __global__ void __launch_bounds__(REF_NT) attn_ref_bwd_dq_kernel(AttnArgs a) {
  ATTN_DYNAMIC_SMEM(float, sq);
  float *sdo = sq + a.head_dim, *sds = sdo + a.head_dim;
  const int t = blockIdx.x, h = blockIdx.y, tid = threadIdx.x, D = a.head_dim;
  const int64_t row = (int64_t)t * a.ld + (int64_t)h * D;
  T *dq = (T *)a.dq;
  AttnSeg g;
  int i;
  if (!ref_locate(a, t, &g, &i) || !ref_real(g, i)) {
    for (int e = tid; e < D; e += REF_NT)
      AttnType<T>::store(dq, row + e, 0.0f);
    return;
  }
  const T *q = (const T *)a.q, *k = (const T *)a.k, *v = (const T *)a.v, *dout = (const T *)a.dout;
  for (int e = tid; e < D; e += REF_NT) {
    sq[e] = AttnType<T>::load(q, row + e);
    sdo[e] = AttnType<T>::load(dout, row + e);
  }
  const float lse = a.lse[(int64_t)t * a.heads + h], Di = a.dsum[attn_stat_index(a, t, h)];
  __syncthreads();
  float acc[REF_MAX_PER_THREAD];
#pragma unroll
  for (int r = 0; r < REF_MAX_PER_THREAD; r++)
    acc[r] = 0.0f;
  const int kend = a.causal ? i + 1 : g.n;
  for (int j0 = 0; j0 < kend; j0 += REF_NT) {
    const int j = j0 + tid;
    float ds = 0.0f;
    if (j < kend && ref_real(g, j)) {
      const int64_t krow = (int64_t)(g.start + j) * a.ld + (int64_t)h * D;
      float s = 0.0f, dp = 0.0f;
      for (int e = 0; e < D; e++) {
        s += sq[e] * AttnType<T>::load(k, krow + e);
        dp += sdo[e] * AttnType<T>::load(v, krow + e);
      }
      const float p = expf(a.scale * s - lse);
      ds = p * (dp - Di);
    }
    sds[tid] = ds;
    __syncthreads();
    const int nc = min(REF_NT, kend - j0);
#pragma unroll
    for (int r = 0; r < REF_MAX_PER_THREAD; r++) {
      const int e = tid + r * REF_NT;
      if (e < D) {
        float x = acc[r];
        for (int c = 0; c < nc; c++)
          x += sds[c] * AttnType<T>::load(k, (int64_t)(g.start + j0 + c) * a.ld + (int64_t)h * D + e);
        acc[r] = x;
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int r = 0; r < REF_MAX_PER_THREAD; r++) {
    const int e = tid + r * REF_NT;
    if (e < D)
      AttnType<T>::store(dq, row + e, a.scale * acc[r]);
  }
}

/* dk, dv for key row j: a block per (key token, head). */
template <typename T> __global__ void __launch_bounds__(REF_NT) attn_ref_bwd_dkdv_kernel(AttnArgs a) {
  ATTN_DYNAMIC_SMEM(float, sk);
  float *sv = sk + a.head_dim, *sp = sv + a.head_dim, *sds = sp + REF_NT;
  const int t = blockIdx.x, h = blockIdx.y, tid = threadIdx.x, D = a.head_dim;
  const int64_t row = (int64_t)t * a.ld + (int64_t)h * D;
  T *dk = (T *)a.dk, *dv = (T *)a.dv;
  AttnSeg g;
  int j;
  if (!ref_locate(a, t, &g, &j) || !ref_real(g, j)) { /* tail or masked key: no query sees it */
    for (int e = tid; e < D; e += REF_NT) {
      AttnType<T>::store(dk, row + e, 0.0f);
      AttnType<T>::store(dv, row + e, 0.0f);
    }
    return;
  }
  const T *q = (const T *)a.q, *k = (const T *)a.k, *v = (const T *)a.v, *dout = (const T *)a.dout;
  for (int e = tid; e < D; e += REF_NT) {
    sk[e] = AttnType<T>::load(k, row + e);
    sv[e] = AttnType<T>::load(v, row + e);
  }
  __syncthreads();
  float acc_k[REF_MAX_PER_THREAD], acc_v[REF_MAX_PER_THREAD];
#pragma unroll
  for (int r = 0; r < REF_MAX_PER_THREAD; r++)
    acc_k[r] = acc_v[r] = 0.0f;
  const int istart = a.causal ? j : 0; /* causal: only queries i >= j see key j */
  for (int i0 = istart; i0 < g.n; i0 += REF_NT) {
    const int i = i0 + tid;
    float p = 0.0f, ds = 0.0f;
    if (i < g.n && ref_real(g, i)) {
      const int64_t qrow = (int64_t)(g.start + i) * a.ld + (int64_t)h * D;
      const int64_t lrow = (int64_t)(g.start + i) * a.heads + h, srow = attn_stat_index(a, g.start + i, h);
      float s = 0.0f, dp = 0.0f;
      for (int e = 0; e < D; e++) {
        s += AttnType<T>::load(q, qrow + e) * sk[e];
        dp += AttnType<T>::load(dout, qrow + e) * sv[e];
      }
      p = expf(a.scale * s - a.lse[lrow]);
      ds = p * (dp - a.dsum[srow]);
    }
    sp[tid] = p;
    sds[tid] = ds;
    __syncthreads();
    const int nc = min(REF_NT, g.n - i0);
#pragma unroll
    for (int r = 0; r < REF_MAX_PER_THREAD; r++) {
      const int e = tid + r * REF_NT;
      if (e < D) {
        float xk = acc_k[r], xv = acc_v[r];
        for (int c = 0; c < nc; c++) {
          const int64_t qrow = (int64_t)(g.start + i0 + c) * a.ld + (int64_t)h * D + e;
          xv += sp[c] * AttnType<T>::load(dout, qrow);
          xk += sds[c] * AttnType<T>::load(q, qrow);
        }
        acc_k[r] = xk;
        acc_v[r] = xv;
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int r = 0; r < REF_MAX_PER_THREAD; r++) {
    const int e = tid + r * REF_NT;
    if (e < D) {
      AttnType<T>::store(dk, row + e, a.scale * acc_k[r]);
      AttnType<T>::store(dv, row + e, acc_v[r]);
    }
  }
}

template <typename Tin, typename Tout> static int ref_fwd_launch(const AttnArgs &a, int tokens, cudaStream_t s) {
  const size_t smem = (size_t)(a.head_dim + REF_NT + 32) * sizeof(float);
  auto *kernel = attn_ref_fwd_kernel<Tin, Tout>;
  ATTN_LAUNCH(kernel, dim3((unsigned)tokens, (unsigned)a.heads), REF_NT, smem, s, a);
  ATTN_LAUNCH_CHECK("attn_ref_fwd_kernel");
  return MB_OK;
}

int attn_reference_fwd(const mb_attn_desc *d, mb_dtype in_dt, const void *q, const void *k, const void *v,
                       const float *qds, const float *kds, const float *vds, void *out, mb_dtype out_dt, float *lse,
                       cudaStream_t s) {
  const int tokens = attn_tokens(d);
  if (tokens == 0)
    return MB_OK;
  if (d->head_dim > REF_NT * REF_MAX_PER_THREAD)
    return MB_ERR(MB_EUNSUPPORTED, "cuda attention reference: head_dim %d exceeds %d", d->head_dim,
                  REF_NT * REF_MAX_PER_THREAD);
  AttnArgs a = attn_args_from_desc(d);
  a.q = q;
  a.k = k;
  a.v = v;
  a.o = out;
  a.lse = lse;
  a.q_descale = qds;
  a.k_descale = kds;
  a.v_descale = vds;
  if (in_dt == MB_F32 && out_dt == MB_F32)
    return ref_fwd_launch<float, float>(a, tokens, s);
  if (in_dt == MB_BF16 && out_dt == MB_BF16)
    return ref_fwd_launch<attn_bf16, attn_bf16>(a, tokens, s);
  if (in_dt == MB_F16 && out_dt == MB_F16)
    return ref_fwd_launch<attn_f16, attn_f16>(a, tokens, s);
  if (in_dt == MB_F8E4M3 && out_dt == MB_BF16)
    return ref_fwd_launch<attn_e4m3, attn_bf16>(a, tokens, s);
  return MB_ERR(MB_EUNSUPPORTED, "cuda attention reference: no forward kernel for %s inputs with %s output",
                mb_dtype_name(in_dt), mb_dtype_name(out_dt));
}

template <typename T> static int ref_bwd_launch(const AttnArgs &a, int tokens, cudaStream_t s) {
  MB_TRY(attn_launch_bwd_prep<T>(a, s));
  const dim3 grid((unsigned)tokens, (unsigned)a.heads);
  auto *dq_kernel = attn_ref_bwd_dq_kernel<T>;
  ATTN_LAUNCH(dq_kernel, grid, REF_NT, (size_t)(2 * a.head_dim + REF_NT) * sizeof(float), s, a);
  ATTN_LAUNCH_CHECK("attn_ref_bwd_dq_kernel");
  auto *dkdv_kernel = attn_ref_bwd_dkdv_kernel<T>;
  ATTN_LAUNCH(dkdv_kernel, grid, REF_NT, (size_t)(2 * a.head_dim + 2 * REF_NT) * sizeof(float), s, a);
  ATTN_LAUNCH_CHECK("attn_ref_bwd_dkdv_kernel");
  return MB_OK;
}

int attn_reference_bwd(const mb_attn_desc *d, mb_dtype dt, const void *q, const void *k, const void *v, const void *out,
                       const float *lse, const void *dout, void *dq, void *dk, void *dv, void *ws, size_t ws_bytes,
                       cudaStream_t s) {
  const int tokens = attn_tokens(d);
  if (tokens == 0)
    return MB_OK;
  if (d->head_dim > REF_NT * REF_MAX_PER_THREAD)
    return MB_ERR(MB_EUNSUPPORTED, "cuda attention reference: head_dim %d exceeds %d", d->head_dim,
                  REF_NT * REF_MAX_PER_THREAD);
  AttnArgs a = attn_bwd_args(d, q, k, v, out, lse, dout, dq, dk, dv, ws);
  a.dq_accum = NULL; /* the reference sums dq in registers */
  (void)ws_bytes; /* checked by the dispatcher */
  switch (dt) {
  case MB_F32: return ref_bwd_launch<float>(a, tokens, s);
  case MB_BF16: return ref_bwd_launch<attn_bf16>(a, tokens, s);
  case MB_F16: return ref_bwd_launch<attn_f16>(a, tokens, s);
  default: return MB_ERR(MB_EUNSUPPORTED, "cuda attention reference: no backward kernel for %s", mb_dtype_name(dt));
  }
}
