/* conv1d_impl.h: the depthwise causal conv1d kernels for one element type.
 * Included by conv1d.c with CV_T, CV_SFX and CV_SIGMOID defined; nothing else
 * includes it. Token r (flat over [B*L]), channel c lives at r*D + c.
 *
 * Both passes walk whole token rows: a row of D channels is contiguous, so
 * the inner loops stream across it (vectorised) and the hardware prefetcher
 * sees plain sequential reads. Threads take chunks of CONV_CHUNK tokens. */
#ifndef CV_CAT
#define CV_CAT_(a, b) a##_##b
#define CV_CAT(a, b) CV_CAT_(a, b)
#endif
#define CV_FN(name) CV_CAT(name, CV_SFX)

/* Weights transposed to wt[k][c] (once per call), so tap k is a row. */
static void CV_FN(conv_transpose_w)(const CV_T *w, int D, int W, CV_T *wt) {
  for (int c = 0; c < D; c++)
    for (int k = 0; k < W; k++)
      wt[(size_t)k * D + c] = w[(size_t)c * W + k];
}

/* pre-activation row of token r whose sequence starts at token `first`:
 * bias + the taps that fall inside the sequence (zero history before it). */
static inline void CV_FN(conv_pre_row)(const CV_T *x, const CV_T *bias, const CV_T *wt, int D, int W, long first,
                                       long r, CV_T *pre) {
  if (bias)
    memcpy(pre, bias, (size_t)D * sizeof(CV_T));
  else
    memset(pre, 0, (size_t)D * sizeof(CV_T));
  for (int k = 0; k < W; k++) {
    const long src = r - (W - 1) + k;
    if (src < first)
      continue;
    const CV_T *xr = x + (size_t)src * D, *wk = wt + (size_t)k * D;
#pragma omp simd
    for (int c = 0; c < D; c++)
      pre[c] += wk[c] * xr[c];
  }
}

/* Forward of tokens r0 .. r1-1 (all real: before the budget's tail). */
MB_VEC_CLONES
static void CV_FN(conv_fwd_chunk)(const mb_conv1d_desc *d, const CV_T *x, const CV_T *wt, const CV_T *bias, CV_T *y,
                                  long r0, long r1) {
  const int D = d->dim, W = d->width;
  conv_walk cw;
  conv_walk_init(&cw, d);
  for (long r = r0; r < r1; r++) {
    CV_T *yr = y + (size_t)r * D;
    CV_FN(conv_pre_row)(x, bias, wt, D, W, conv_walk_first(&cw, r), r, yr);
    if (d->silu) {
#pragma omp simd
      for (int c = 0; c < D; c++)
        yr[c] = yr[c] * CV_SIGMOID(yr[c]);
    }
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
  CV_T *wtp = mb_host_malloc((size_t)W * D * sizeof(CV_T));
  if (!wtp)
    return MB_ERR(MB_ENOMEM, "conv1d forward: no memory for %d x %d weights", W, D);
  CV_FN(conv_transpose_w)(w, D, W, wtp);
  const long nchunks = (tokens + CONV_CHUNK - 1) / CONV_CHUNK;
#pragma omp parallel for schedule(static) num_threads(nt)
  for (long ch = 0; ch < nchunks; ch++) {
    const long r0 = ch * CONV_CHUNK, r1 = r0 + CONV_CHUNK < tokens ? r0 + CONV_CHUNK : tokens;
    const long real_end = r1 < tail ? r1 : tail;
    if (r0 < real_end)
      CV_FN(conv_fwd_chunk)(d, x, wtp, bias, y, r0, real_end);
    for (long r = real_end > r0 ? real_end : r0; r < r1; r++) /* varlen budget padding */
      memset(y + (size_t)r * D, 0, (size_t)D * sizeof(CV_T));
  }
  mb_host_free(wtp);
  return MB_OK;
}

/* Backward of tokens r0 .. r1-1 (real ones). With dpre = dy * silu'(pre):
 *   dx[s]   = sum_k w[k] * dpre[s + W-1 - k]   (outputs of the same sequence)
 *   dw[k]  += dpre[t] * x[t - (W-1) + k],  dbias += dpre[t]   for t in the chunk.
 * dpre rows are kept in a ring of W rows (row of token t at t mod W): each
 * step adds the row W-1 tokens ahead, so the W rows dx[s] needs are there;
 * the chunk's first W-1 rows are computed before the loop. gw ([W][D]) and gb
 * ([D]) are this thread's partial sums. */
MB_VEC_CLONES
static void CV_FN(conv_bwd_chunk)(const mb_conv1d_desc *d, const CV_T *x, const CV_T *wt, const CV_T *bias,
                                  const CV_T *dy, CV_T *dx, long r0, long r1, CV_T *ring, CV_T *gw, CV_T *gb) {
  const int D = d->dim, W = d->width;
  conv_walk cw, ahead; /* the sequence of token s, and of the token whose dpre is being added */
  conv_walk_init(&cw, d);
  conv_walk_init(&ahead, d);
  long filled = r0; /* tokens r0 .. filled-1 have their dpre row in the ring */
  for (long s = r0; s < r1; s++) {
    const long first = conv_walk_first(&cw, s), end = conv_walk_end(&cw);
    /* make sure dpre rows s .. s+W-1 of this sequence are in the ring */
    const long need = s + W < end ? s + W : end;
    for (; filled < need; filled++) {
      CV_T *row = ring + (size_t)(filled % W) * D;
      const long f = conv_walk_first(&ahead, filled);
      const CV_T *g = dy + (size_t)filled * D;
      if (d->silu) {
        CV_FN(conv_pre_row)(x, bias, wt, D, W, f, filled, row);
#pragma omp simd
        for (int c = 0; c < D; c++) {
          const CV_T sg = CV_SIGMOID(row[c]);
          row[c] = g[c] * sg * (1 + row[c] * (1 - sg));
        }
      } else {
        memcpy(row, g, (size_t)D * sizeof(CV_T));
      }
    }
    /* this token's own output: dbias and dw */
    const CV_T *dps = ring + (size_t)(s % W) * D;
#pragma omp simd
    for (int c = 0; c < D; c++)
      gb[c] += dps[c];
    for (int k = 0; k < W; k++) {
      const long src = s - (W - 1) + k;
      if (src < first)
        continue;
      const CV_T *xr = x + (size_t)src * D;
      CV_T *gk = gw + (size_t)k * D;
#pragma omp simd
      for (int c = 0; c < D; c++)
        gk[c] += dps[c] * xr[c];
    }
    if (!dx)
      continue;
    /* dx[s]: the outputs s .. s+W-1 of the same sequence that read x[s] */
    CV_T *dxs = dx + (size_t)s * D;
    memset(dxs, 0, (size_t)D * sizeof(CV_T));
    for (int k = 0; k < W; k++) {
      const long dst = s + (W - 1) - k;
      if (dst >= end)
        continue;
      const CV_T *dp = ring + (size_t)(dst % W) * D, *wk = wt + (size_t)k * D;
#pragma omp simd
      for (int c = 0; c < D; c++)
        dxs[c] += wk[c] * dp[c];
    }
  }
}

int CV_FN(mb_cpu_conv1d_bwd)(const mb_conv1d_desc *d, const CV_T *x, const CV_T *w, const CV_T *bias,
                             const CV_T *dy, CV_T *dx, CV_T *dw, CV_T *dbias, void *workspace,
                             size_t workspace_bytes) {
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
  const size_t es = sizeof(CV_T), per_thread = conv_bwd_thread_bytes(d, es);
  void *owned;
  MB_TRY(conv_workspace((size_t)nt * per_thread + conv_bwd_shared_bytes(d, es), &workspace, workspace_bytes,
                        &owned));
  CV_T *wtp = (CV_T *)workspace;
  CV_FN(conv_transpose_w)(w, D, W, wtp);
  unsigned char *threads_base = (unsigned char *)workspace + conv_bwd_shared_bytes(d, es);
  const long nchunks = (tokens + CONV_CHUNK - 1) / CONV_CHUNK;
#pragma omp parallel num_threads(nt)
  {
    unsigned char *mine = threads_base + (size_t)omp_get_thread_num() * per_thread;
    CV_T *ring = (CV_T *)mine, *gw = (CV_T *)(mine + aligned((size_t)W * D * es));
    CV_T *gb = (CV_T *)(mine + 2 * aligned((size_t)W * D * es));
    memset(gw, 0, (size_t)W * D * es);
    memset(gb, 0, (size_t)D * es);
#pragma omp for schedule(static)
    for (long ch = 0; ch < nchunks; ch++) {
      const long r0 = ch * CONV_CHUNK, r1 = r0 + CONV_CHUNK < tokens ? r0 + CONV_CHUNK : tokens;
      const long real_end = r1 < tail ? r1 : tail;
      if (r0 < real_end)
        CV_FN(conv_bwd_chunk)(d, x, wtp, bias, dy, dx, r0, real_end, ring, gw, gb);
      if (dx)
        for (long r = real_end > r0 ? real_end : r0; r < r1; r++) /* varlen budget padding */
          memset(dx + (size_t)r * D, 0, (size_t)D * es);
    }
    /* (implicit barrier) sum the per-thread partials in thread order */
    const int team = omp_get_num_threads();
#pragma omp for schedule(static)
    for (int c = 0; c < D; c++) {
      CV_T sb = 0, sw[MB_CONV1D_MAX_WIDTH] = {0};
      for (int th = 0; th < team; th++) {
        const unsigned char *o = threads_base + (size_t)th * per_thread;
        const CV_T *ogw = (const CV_T *)(o + aligned((size_t)W * D * es));
        const CV_T *ogb = (const CV_T *)(o + 2 * aligned((size_t)W * D * es));
        sb += ogb[c];
        for (int k = 0; k < W; k++)
          sw[k] += ogw[(size_t)k * D + c];
      }
      if (dbias)
        dbias[c] = sb;
      if (dw)
        for (int k = 0; k < W; k++)
          dw[(size_t)c * W + k] = sw[k];
    }
  }
  mb_host_free(owned);
  return MB_OK;
}

#undef CV_FN
