/* conv1d_impl.h: the depthwise causal conv1d kernels for one element type.
 * Included by conv1d.c with CV_T, CV_SFX and CV_EXP defined; nothing else
 * includes it. Token r, channel c lives at r*D + c. */
#ifndef CV_CAT
#define CV_CAT_(a, b) a##_##b
#define CV_CAT(a, b) CV_CAT_(a, b)
#endif
#define CV_FN(name) CV_CAT(name, CV_SFX)

/* Weights of channels c0 .. c0+nc-1 transposed to wt[k][c], so the inner
 * loops run over contiguous channels. */
static void CV_FN(conv_load_w)(const CV_T *w, int W, int c0, int nc, CV_T wt[][CONV_BLOCK]) {
  for (int c = 0; c < nc; c++)
    for (int k = 0; k < W; k++)
      wt[k][c] = w[(size_t)(c0 + c) * W + k];
}

/* pre-activations of token t of a sequence starting at token `start`, for
 * channels c0 .. c0+nc-1: bias + the W taps that fall inside the sequence. */
static inline void CV_FN(conv_pre)(const CV_T *x, const CV_T *bias, CV_T wt[][CONV_BLOCK], int D, int W, long start,
                                   int t, int c0, int nc, CV_T *pre) {
  for (int c = 0; c < nc; c++)
    pre[c] = bias ? bias[c0 + c] : 0;
  for (int k = 0; k < W; k++) {
    const int src = t - (W - 1) + k;
    if (src < 0) /* before the sequence start: zero history */
      continue;
    const CV_T *xr = x + (size_t)(start + src) * D + c0;
    for (int c = 0; c < nc; c++)
      pre[c] += wt[k][c] * xr[c];
  }
}

int CV_FN(mb_cpu_conv1d_fwd)(const mb_conv1d_desc *d, const CV_T *x, const CV_T *w, const CV_T *bias, CV_T *y) {
  MB_TRY(mb_cpu_conv1d_check(d));
  const int D = d->dim, W = d->width, nt = conv_threads(d);
  const long tokens = (long)d->batch * d->seqlen, tail = conv_tail(d);
  if (tokens == 0)
    return MB_OK;
  if (!x || !w || !y)
    return MB_ERR(MB_EINVAL, "conv1d forward: NULL x, w or y");
  const int nblocks = (D + CONV_BLOCK - 1) / CONV_BLOCK;
  const long nitems = (long)conv_nseg(d) * nblocks;
#pragma omp parallel num_threads(nt)
  {
#pragma omp for schedule(dynamic)
    for (long it = 0; it < nitems; it++) {
      const int s = (int)(it / nblocks), c0 = (int)(it % nblocks) * CONV_BLOCK;
      const int nc = D - c0 < CONV_BLOCK ? D - c0 : CONV_BLOCK;
      long start;
      int n;
      conv_segment(d, s, &start, &n);
      CV_T wt[MB_CONV1D_MAX_WIDTH][CONV_BLOCK];
      CV_FN(conv_load_w)(w, W, c0, nc, wt);
      for (int t = 0; t < n; t++) {
        CV_T *yr = y + (size_t)(start + t) * D + c0;
        CV_FN(conv_pre)(x, bias, wt, D, W, start, t, c0, nc, yr);
        if (d->silu)
          for (int c = 0; c < nc; c++)
            yr[c] = yr[c] / (1 + CV_EXP(-yr[c]));
      }
    }
#pragma omp for schedule(static)
    for (long r = tail; r < tokens; r++) /* varlen budget padding */
      memset(y + (size_t)r * D, 0, (size_t)D * sizeof(CV_T));
  }
  return MB_OK;
}

/* Backward of channels c0 .. c0+nc-1 over one sequence. Pass 1 forms
 * dpre = dy * silu'(pre) (recomputing pre), adds it into dbias and dw, and
 * parks it in dx. Pass 2 turns dx into the real dx in place, walking
 * forwards: dx[s] = sum_k w[k] * dpre[s+W-1-k] reads only dpre at s and
 * later, which are not overwritten yet. */
static void CV_FN(conv_bwd_seq)(const mb_conv1d_desc *d, const CV_T *x, const CV_T *bias, CV_T wt[][CONV_BLOCK],
                                const CV_T *dy, CV_T *dx, long start, int n, int c0, int nc,
                                CV_T gw[][CONV_BLOCK], CV_T *gb) {
  const int D = d->dim, W = d->width;
  CV_T pre[CONV_BLOCK], dpre[CONV_BLOCK];
  for (int t = 0; t < n; t++) {
    const size_t r = (size_t)(start + t) * D + c0;
    if (d->silu) {
      CV_FN(conv_pre)(x, bias, wt, D, W, start, t, c0, nc, pre);
      for (int c = 0; c < nc; c++) {
        const CV_T sg = 1 / (1 + CV_EXP(-pre[c]));
        dpre[c] = dy[r + c] * sg * (1 + pre[c] * (1 - sg));
      }
    } else {
      for (int c = 0; c < nc; c++)
        dpre[c] = dy[r + c];
    }
    for (int c = 0; c < nc; c++)
      gb[c] += dpre[c];
    for (int k = 0; k < W; k++) {
      const int src = t - (W - 1) + k;
      if (src < 0)
        continue;
      const CV_T *xr = x + (size_t)(start + src) * D + c0;
      for (int c = 0; c < nc; c++)
        gw[k][c] += dpre[c] * xr[c];
    }
    if (dx)
      memcpy(dx + r, dpre, (size_t)nc * sizeof(CV_T));
  }
  if (!dx)
    return;
  CV_T acc[CONV_BLOCK];
  for (int s = 0; s < n; s++) {
    for (int c = 0; c < nc; c++)
      acc[c] = 0;
    for (int k = 0; k < W; k++) {
      const int dst = s + (W - 1) - k; /* the output token that read x[s] through tap k */
      if (dst >= n)
        continue;
      const CV_T *g = dx + (size_t)(start + dst) * D + c0;
      for (int c = 0; c < nc; c++)
        acc[c] += wt[k][c] * g[c];
    }
    memcpy(dx + (size_t)(start + s) * D + c0, acc, (size_t)nc * sizeof(CV_T));
  }
}

int CV_FN(mb_cpu_conv1d_bwd)(const mb_conv1d_desc *d, const CV_T *x, const CV_T *w, const CV_T *bias,
                             const CV_T *dy, CV_T *dx, CV_T *dw, CV_T *dbias) {
  MB_TRY(mb_cpu_conv1d_check(d));
  const int D = d->dim, W = d->width, nt = conv_threads(d);
  const long tokens = (long)d->batch * d->seqlen, tail = conv_tail(d);
  if (dw)
    memset(dw, 0, (size_t)D * W * sizeof(CV_T));
  if (dbias)
    memset(dbias, 0, (size_t)D * sizeof(CV_T));
  if (tokens == 0)
    return MB_OK;
  if (!x || !w || !dy)
    return MB_ERR(MB_EINVAL, "conv1d backward: NULL x, w or dy");
  const int nblocks = (D + CONV_BLOCK - 1) / CONV_BLOCK, nseg = conv_nseg(d);
#pragma omp parallel num_threads(nt)
  {
#pragma omp for schedule(dynamic)
    for (int blk = 0; blk < nblocks; blk++) {
      const int c0 = blk * CONV_BLOCK, nc = D - c0 < CONV_BLOCK ? D - c0 : CONV_BLOCK;
      CV_T wt[MB_CONV1D_MAX_WIDTH][CONV_BLOCK], gw[MB_CONV1D_MAX_WIDTH][CONV_BLOCK] = {{0}}, gb[CONV_BLOCK] = {0};
      CV_FN(conv_load_w)(w, W, c0, nc, wt);
      for (int s = 0; s < nseg; s++) {
        long start;
        int n;
        conv_segment(d, s, &start, &n);
        CV_FN(conv_bwd_seq)(d, x, bias, wt, dy, dx, start, n, c0, nc, gw, gb);
      }
      for (int c = 0; c < nc; c++) {
        if (dbias)
          dbias[c0 + c] = gb[c];
        if (dw)
          for (int k = 0; k < W; k++)
            dw[(size_t)(c0 + c) * W + k] = gw[k][c];
      }
    }
    if (dx) {
#pragma omp for schedule(static)
      for (long r = tail; r < tokens; r++)
        memset(dx + (size_t)r * D, 0, (size_t)D * sizeof(CV_T));
    }
  }
  return MB_OK;
}

#undef CV_FN
