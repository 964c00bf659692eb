/* conv1d_kernels.cuh: the causal depthwise conv1d's kernels (forward,
 * backward, the reduction of dw and dbias) and the host-side drivers that
 * check a call and launch them through a `launch` functor (see
 * selective_scan_kernels.cuh). Included by conv1d.cu (nvcc) and by the CPU
 * emulation test. Math and layouts: conv1d.h; geometry: conv1d_plan.h.
 *
 * A thread slides through its run of tokens keeping the last W inputs (and,
 * backwards, the last W pre-activation gradients) in registers, so x and dy
 * are read once plus a halo of W-1 tokens per run. Sequence starts are
 * tracked as "tokens since the current sequence began": tap k of token t
 * reads x[t-(W-1)+k] only if W-1-k <= since(t).
 */
#ifndef MB_KERNELS_CUDA_CONV1D_KERNELS_CUH
#define MB_KERNELS_CUDA_CONV1D_KERNELS_CUH

#include "kernels/cuda/conv1d.h"
#include "kernels/cuda/conv1d_plan.h"
#include "kernels/cuda/selective_scan_dev.cuh"

namespace SC_NS {

struct conv_params {
  const void *x, *w, *bias; /* x: T; w, bias: pdt */
  int pdt;
  void *y;               /* T */
  const void *dy;        /* T */
  void *dx, *dw, *dbias; /* T, pdt, pdt; any may be NULL */
  float *part;           /* workspace: [B, runs, D, W+1] */
  const int32_t *cu;     /* device, [nseq + 1]; NULL in padded mode */
  int nseq;
  int batch, L, D, width, silu, dblocks, runs, run;
};

/* Walks a row's tokens forwards: the start of the current sequence and the
 * end of the real tokens. Padded mode: one sequence [0, L). Varlen: starts
 * at cu[0..nseq), real tokens end at cu[nseq]; cu is only compared with. */
struct conv_walk {
  int start, next, end; /* token indices fit int: the plan refuses seqlen > INT_MAX - 256 */
  int k;
};

template <bool VARLEN> SC_DEV void conv_walk_init(conv_walk &w, const conv_params &p, int t0) {
  if constexpr (VARLEN) {
    w.end = p.cu[p.nseq];
    w.k = sc_upper_bound(p.cu, p.nseq, t0); /* starts at or before t0 */
    w.start = w.k > 0 ? p.cu[w.k - 1] : 0;
    w.next = w.k < p.nseq ? p.cu[w.k] : INT_MAX;
  } else {
    w.start = 0, w.next = INT_MAX, w.end = p.L, w.k = 0;
  }
}

/* Call for t = t0, t0+1, ... in order. */
template <bool VARLEN> SC_DEV void conv_walk_to(conv_walk &w, const conv_params &p, int t) {
  if constexpr (VARLEN) {
    while (t >= w.next) { /* empty sequences share a start: skip them all */
      w.start = w.next;
      w.k++;
      w.next = w.k < p.nseq ? p.cu[w.k] : INT_MAX;
    }
  }
}

/* Tokens whose reads a thread issues together (forward: x; backward: x
 * and dy), so that a warp has 16 loads in flight instead of one: with one,
 * 32 warps per SM cover ~2 KB per memory latency, a tenth of what the
 * H200's bandwidth needs (SCAN.md). */
enum { CONV_FWD_CHUNK = 16, CONV_BWD_CHUNK = 8 };

/* Grid: batch * runs * dblocks blocks of 128 threads; no barriers, so
 * threads past D return at once. */
template <typename T, int W, bool VARLEN>
SC_KERNEL void SC_BOUNDS(MB_CONV1D_THREADS, 8) conv1d_fwd_kernel(const conv_params p) {
  const long long bid = sc_bid();
  const int dblk = (int)(bid % p.dblocks);
  const long long rest = bid / p.dblocks;
  const int run = (int)(rest % p.runs), b = (int)(rest / p.runs);
  const int d = dblk * MB_CONV1D_THREADS + sc_tid();
  if (d >= p.D)
    return;
  float w[W];
  SC_UNROLL
  for (int k = 0; k < W; k++)
    w[k] = sc_ld_dt(p.w, p.pdt, (size_t)d * W + k);
  const float bias = p.bias ? sc_ld_dt(p.bias, p.pdt, (size_t)d) : 0.0f;
  const int t0 = run * p.run, t1 = sc_imin(t0 + p.run, p.L);
  const size_t D = (size_t)p.D, row = (size_t)b * (size_t)p.L;
  const T *x = (const T *)p.x;
  T *y = (T *)p.y;

  float xw[W]; /* xw[k] = x[t - (W-1) + k] */
  SC_UNROLL
  for (int k = 0; k < W - 1; k++) {
    const int s = t0 - (W - 1) + k;
    xw[k] = s >= 0 ? sc_ld(x, (row + (size_t)s) * D + d) : 0.0f;
  }
  conv_walk wk;
  conv_walk_init<VARLEN>(wk, p, t0);
  const T *xp = x + (row + (size_t)t0) * D + d; /* token tc of the chunk below */
  T *yp = y + (row + (size_t)t0) * D + d;
  for (int tc = t0; tc < t1; tc += CONV_FWD_CHUNK) {
    /* the chunk's inputs, all in flight before the first is used (reads
     * past the run are clamped to its last token and dropped) */
    const int nin = sc_imin(CONV_FWD_CHUNK, t1 - tc);
    T xr[CONV_FWD_CHUNK];
    SC_UNROLL
    for (int j = 0; j < CONV_FWD_CHUNK; j++)
      xr[j] = xp[(size_t)sc_imin(j, nin - 1) * D];
    SC_UNROLL
    for (int j = 0; j < CONV_FWD_CHUNK; j++) {
      if (j < nin) { /* a guard, not a break: the loop stays unrolled and xr in registers */
        xw[W - 1] = sc_ld(xr, j);
        float out = 0.0f; /* budget padding */
        bool live = true;
        int since = 0;
        if (VARLEN) { /* padded mode needs no tap mask: the inputs before token 0 are zeros */
          conv_walk_to<VARLEN>(wk, p, tc + j);
          live = tc + j < wk.end;
          since = tc + j - wk.start;
        }
        if (live) {
          float pre = bias;
          SC_UNROLL
          for (int k = 0; k < W; k++)
            if (!VARLEN || W - 1 - k <= since)
              pre += w[k] * xw[k];
          out = p.silu ? pre * sc_sigmoid(pre) : pre;
        }
        sc_st(yp, (size_t)j * D, out);
        SC_UNROLL
        for (int k = 0; k < W - 1; k++)
          xw[k] = xw[k + 1];
      }
    }
    xp += CONV_FWD_CHUNK * D;
    yp += CONV_FWD_CHUNK * D;
  }
}

/* Backward over tokens [t0, t1) of a run: dpre[s] = dy[s] * act'(pre[s]) is
 * formed for s in [t0, t1 + W - 1) (pre recomputed, not saved), and dx[t]
 * is emitted once dpre[t .. t+W-1] are known:
 *   dx[t] = sum_j w[W-1-j] dpre[t+j]   over j with t+j in t's sequence
 * (since(t+j) >= j). dw, dbias sum over the run's own tokens into this
 * thread's partial; the reduction kernel adds the partials in order. */
template <typename T, int W, bool VARLEN>
SC_KERNEL void SC_BOUNDS(MB_CONV1D_THREADS, 8) conv1d_bwd_kernel(const conv_params p) {
  const long long bid = sc_bid();
  const int dblk = (int)(bid % p.dblocks);
  const long long rest = bid / p.dblocks;
  const int run = (int)(rest % p.runs), b = (int)(rest / p.runs);
  const int d = dblk * MB_CONV1D_THREADS + sc_tid();
  if (d >= p.D)
    return;
  float w[W];
  SC_UNROLL
  for (int k = 0; k < W; k++)
    w[k] = sc_ld_dt(p.w, p.pdt, (size_t)d * W + k);
  const float bias = p.bias ? sc_ld_dt(p.bias, p.pdt, (size_t)d) : 0.0f;
  const int t0 = run * p.run, t1 = sc_imin(t0 + p.run, p.L);
  const size_t D = (size_t)p.D, row = (size_t)b * (size_t)p.L;
  const T *x = (const T *)p.x, *dy = (const T *)p.dy;

  float xw[W], dpw[W], dwp[W], dbp = 0.0f; /* inputs, dpre and their `since` for s-(W-1) .. s */
  int sw[W];
  SC_UNROLL
  for (int k = 0; k < W; k++) {
    const int s = t0 - (W - 1) + k;
    xw[k] = k < W - 1 && s >= 0 ? sc_ld(x, (row + (size_t)s) * D + d) : 0.0f;
    dpw[k] = 0.0f, sw[k] = 0, dwp[k] = 0.0f;
  }
  conv_walk wk;
  conv_walk_init<VARLEN>(wk, p, t0);
  /* tokens s in [t0, s2) are visited; [t0, s1) of them exist and are read */
  const int s2 = t1 + (W - 1), s1 = sc_imin(s2, p.L);
  const T *xp = x + (row + (size_t)t0) * D + d, *gp = dy + (row + (size_t)t0) * D + d; /* token sc0 */
  T *dxp = p.dx ? (T *)p.dx + (row + (size_t)t0) * D + d : NULL;                       /* token t0 */
  for (int sc0 = t0; sc0 < s2; sc0 += CONV_BWD_CHUNK) {
    /* the chunk's x and dy, all in flight before the first is used (reads
     * past the row are clamped to its last token and dropped) */
    const int nin = sc_imin(CONV_BWD_CHUNK, s1 - sc0); /* >= 1 until the row ends */
    T xr[CONV_BWD_CHUNK], gr[CONV_BWD_CHUNK];
    if (nin > 0) {
      SC_UNROLL
      for (int j = 0; j < CONV_BWD_CHUNK; j++) {
        const size_t o = (size_t)sc_imin(j, nin - 1) * D;
        xr[j] = xp[o];
        gr[j] = gp[o];
      }
    }
    SC_UNROLL
    for (int j = 0; j < CONV_BWD_CHUNK; j++) {
      const int s = sc0 + j;
      if (s < s2) { /* a guard, not a break: the loop stays unrolled */
        float dp = 0.0f;
        int since = s; /* padded mode: one sequence from token 0 */
        if (j < nin) { /* s < L */
          xw[W - 1] = sc_ld(xr, j);
          bool live = true;
          if (VARLEN) {
            conv_walk_to<VARLEN>(wk, p, s);
            live = s < wk.end;
            since = s - wk.start;
          }
          if (live) {
            float g = sc_ld(gr, j);
            if (p.silu) {
              float pre = bias;
              SC_UNROLL
              for (int k = 0; k < W; k++)
                if (!VARLEN || W - 1 - k <= since)
                  pre += w[k] * xw[k];
              const float sg = sc_sigmoid(pre);
              g *= sg * (1.0f + pre * (1.0f - sg));
            }
            dp = g;
            if (s < t1) {
              dbp += dp;
              SC_UNROLL
              for (int k = 0; k < W; k++)
                if (!VARLEN || W - 1 - k <= since)
                  dwp[k] += dp * xw[k];
            }
          }
        }
        dpw[W - 1] = dp;
        sw[W - 1] = since;
        const int t = s - (W - 1);
        if (t >= t0 && dxp) {
          float acc = 0.0f;
          SC_UNROLL
          for (int jj = 0; jj < W; jj++)
            if (!VARLEN || sw[jj] >= jj) /* padded: since(t + jj) = t + jj >= jj */
              acc += w[W - 1 - jj] * dpw[jj];
          sc_st(dxp, (size_t)(t - t0) * D, acc);
        }
        SC_UNROLL
        for (int k = 0; k < W - 1; k++) {
          xw[k] = xw[k + 1];
          dpw[k] = dpw[k + 1];
          sw[k] = sw[k + 1];
        }
      }
    }
    xp += CONV_BWD_CHUNK * D;
    gp += CONV_BWD_CHUNK * D;
  }
  float *part = p.part + (((size_t)b * p.runs + run) * D + d) * (W + 1);
  SC_UNROLL
  for (int k = 0; k < W; k++)
    part[k] = dwp[k];
  part[W] = dbp;
}

/* dw [D, W] and dbias [D]: the partials summed over rows and runs in order.
 * With p.batch = 0 it writes zeros. */
SC_KERNEL void SC_BOUNDS(MB_CONV1D_REDUCE_THREADS, 1) conv1d_reduce_kernel(const conv_params p) {
  const int W = p.width;
  const long long total = (long long)p.D * (W + 1), parts = (long long)p.batch * p.runs;
  for (long long e = sc_bid() * MB_CONV1D_REDUCE_THREADS + sc_tid(); e < total;
       e += sc_nblocks() * MB_CONV1D_REDUCE_THREADS) {
    const long long d = e / (W + 1);
    const int k = (int)(e - d * (W + 1));
    float s = 0.0f;
    for (long long r = 0; r < parts; r++)
      s += p.part[((size_t)r * p.D + d) * (W + 1) + k];
    if (k < W) {
      if (p.dw)
        sc_st_dt(p.dw, p.pdt, (size_t)d * W + k, s);
    } else if (p.dbias) {
      sc_st_dt(p.dbias, p.pdt, (size_t)d, s);
    }
  }
}

/* ---- host-side drivers (launch functor as in selective_scan_kernels.cuh) ---- */

static inline conv_params conv_make_params(const mb_conv1d_desc *d, mb_dtype pdt, const mb_conv1d_plan &pl) {
  conv_params p;
  memset(&p, 0, sizeof p);
  p.pdt = (int)pdt;
  p.cu = d->cu_seqlens;
  p.nseq = d->cu_seqlens ? d->nseq : 0;
  p.batch = d->batch, p.L = d->seqlen, p.D = d->dim, p.width = d->width, p.silu = d->silu != 0;
  p.dblocks = pl.dblocks;
  return p;
}

template <typename T, int W, class Launch>
int conv_fwd_launch_w(Launch &launch, const conv_params &p, const mb_conv1d_plan &pl) {
  void (*k)(conv_params) = p.cu ? conv1d_fwd_kernel<T, W, true> : conv1d_fwd_kernel<T, W, false>;
  return launch(k, pl.fwd_blocks, MB_CONV1D_THREADS, 0, p, "conv1d forward");
}

template <typename T, class Launch>
int conv_fwd_launch(Launch &launch, const conv_params &p, const mb_conv1d_plan &pl) {
  switch (pl.width) {
  case 1: return conv_fwd_launch_w<T, 1>(launch, p, pl);
  case 2: return conv_fwd_launch_w<T, 2>(launch, p, pl);
  case 3: return conv_fwd_launch_w<T, 3>(launch, p, pl);
  default: return conv_fwd_launch_w<T, 4>(launch, p, pl);
  }
}

template <class Launch>
int conv1d_fwd_run(Launch &launch, const mb_conv1d_desc *d, mb_dtype dt, mb_dtype pdt, const void *x, const void *w,
                   const void *bias, void *y) {
  MB_TRY(mb_conv1d_plan_check(d, dt, pdt));
  mb_conv1d_plan pl;
  mb_conv1d_plan_make(d, &pl);
  if (pl.fwd_blocks == 0)
    return MB_OK;
  if (!x || !w || !y)
    return MB_ERR(MB_EINVAL, "cuda conv1d forward: NULL x, w or y");
  conv_params p = conv_make_params(d, pdt, pl);
  p.x = x, p.w = w, p.bias = bias, p.y = y;
  p.runs = pl.fwd_runs, p.run = MB_CONV1D_FWD_RUN;
  switch (dt) {
  case MB_F32: return conv_fwd_launch<float>(launch, p, pl);
  case MB_BF16: return conv_fwd_launch<sc_bf16>(launch, p, pl);
  default: return conv_fwd_launch<sc_f16>(launch, p, pl);
  }
}

template <typename T, int W, class Launch>
int conv_bwd_launch_w(Launch &launch, const conv_params &p, const mb_conv1d_plan &pl) {
  void (*k)(conv_params) = p.cu ? conv1d_bwd_kernel<T, W, true> : conv1d_bwd_kernel<T, W, false>;
  return launch(k, pl.bwd_blocks, MB_CONV1D_THREADS, 0, p, "conv1d backward");
}

template <typename T, class Launch>
int conv_bwd_launch(Launch &launch, const conv_params &p, const mb_conv1d_plan &pl) {
  switch (pl.width) {
  case 1: return conv_bwd_launch_w<T, 1>(launch, p, pl);
  case 2: return conv_bwd_launch_w<T, 2>(launch, p, pl);
  case 3: return conv_bwd_launch_w<T, 3>(launch, p, pl);
  default: return conv_bwd_launch_w<T, 4>(launch, p, pl);
  }
}

template <class Launch>
int conv1d_bwd_run(Launch &launch, const mb_conv1d_desc *d, mb_dtype dt, mb_dtype pdt, const void *x, const void *w,
                   const void *bias, const void *dy, void *dx, void *dw, void *dbias, void *ws, size_t ws_bytes) {
  MB_TRY(mb_conv1d_plan_check(d, dt, pdt));
  mb_conv1d_plan pl;
  mb_conv1d_plan_make(d, &pl);
  const bool empty = pl.bwd_blocks == 0;
  if (!empty) {
    if (!x || !w || !dy)
      return MB_ERR(MB_EINVAL, "cuda conv1d backward: NULL x, w or dy");
    if (!ws || ws_bytes < pl.ws_bytes)
      return MB_ERR(MB_EINVAL, "cuda conv1d backward: workspace has %zu bytes, needs %zu", ws ? ws_bytes : 0,
                    pl.ws_bytes);
    if ((uintptr_t)ws % MB_CONV1D_WS_ALIGN)
      return MB_ERR(MB_EINVAL, "cuda conv1d backward: workspace must be %d-byte aligned", MB_CONV1D_WS_ALIGN);
  }
  conv_params p = conv_make_params(d, pdt, pl);
  p.x = x, p.w = w, p.bias = bias, p.dy = dy, p.dx = dx, p.dw = dw, p.dbias = dbias;
  p.part = (float *)ws;
  p.runs = pl.bwd_runs, p.run = MB_CONV1D_BWD_RUN;
  if (!empty) {
    switch (dt) {
    case MB_F32: MB_TRY(conv_bwd_launch<float>(launch, p, pl)); break;
    case MB_BF16: MB_TRY(conv_bwd_launch<sc_bf16>(launch, p, pl)); break;
    default: MB_TRY(conv_bwd_launch<sc_f16>(launch, p, pl)); break;
    }
  } else {
    p.batch = 0; /* no tokens: dw and dbias are zero */
  }
  if (!dw && !dbias)
    return MB_OK;
  long long n = (long long)d->dim * (d->width + 1);
  long long blocks = (n + MB_CONV1D_REDUCE_THREADS - 1) / MB_CONV1D_REDUCE_THREADS;
  blocks = blocks < 1 ? 1 : blocks > 65536 ? 65536 : blocks;
  return launch(conv1d_reduce_kernel, blocks, MB_CONV1D_REDUCE_THREADS, 0, p, "conv1d backward (dw, dbias)");
}

} // namespace SC_NS

#endif
