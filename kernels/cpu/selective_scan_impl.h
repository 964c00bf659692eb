/* selective_scan_impl.h: the selective scan kernels for one element type.
 * Included by selective_scan.c with SC_T (float or double), SC_SFX (f32,
 * f64), SC_EXP, SC_SOFTPLUS and SC_SIGMOID defined; nothing else includes it.
 *
 * Indexing: token t of batch row b is row = b*L + t; channel ch of it is at
 * row*D + ch in u/delta/z/y, and B_t/C_t are at row*N.
 *
 * Vector layout: a work item is a block of SCAN_BLOCK channels. Inside it,
 * per-channel values live in arrays of SCAN_BLOCK lanes and states as
 * h[n][lane], so every inner loop runs across the lanes of one state index
 * n: one vector of exps, multiplies and adds, with B_t[n] and C_t[n]
 * broadcast. A block with fewer channels (nc < SCAN_BLOCK, the last one)
 * computes its spare lanes on zeros and never stores them.
 */
#ifndef SC_CAT
#define SC_CAT_(a, b) a##_##b
#define SC_CAT(a, b) SC_CAT_(a, b)
#endif
#define SC_FN(name) SC_CAT(name, SC_SFX)
#define SC_IN SC_CAT(mb_scan_in, SC_SFX)
#define SC_GRAD SC_CAT(mb_scan_grad, SC_SFX)
#define SC_LANES SCAN_BLOCK

/* Copy nc values of one token into a lane array (spare lanes stay as they
 * are: zero from the start of the block), and back. A full block is one
 * fixed-size copy the compiler turns into a vector move. */
MB_ALWAYS_INLINE static inline void SC_FN(scan_lanes)(SC_T *dst, const SC_T *src, int nc) {
  if (nc == SC_LANES)
    memcpy(dst, src, SC_LANES * sizeof(SC_T));
  else
    for (int c = 0; c < nc; c++)
      dst[c] = src[c];
}

/* Per-block constants: A = -exp(A_log) as A[n][lane] (spare lanes 0), and
 * the per-channel D and delta_bias as lanes. */
static void SC_FN(scan_load_block)(const SC_IN *in, int N, int d0, int nc, SC_T *A, SC_T *Dl, SC_T *biasl) {
  memset(A, 0, (size_t)N * SC_LANES * sizeof(SC_T));
  for (int c = 0; c < SC_LANES; c++) {
    Dl[c] = in->D && c < nc ? in->D[d0 + c] : 0;
    biasl[c] = in->delta_bias && c < nc ? in->delta_bias[d0 + c] : 0;
  }
  for (int c = 0; c < nc; c++)
    for (int n = 0; n < N; n++)
      A[n * SC_LANES + c] = -SC_EXP(in->A_log[(size_t)(d0 + c) * N + n]);
}

/* dt for the lanes of one token: softplus(delta + bias), or delta + bias;
 * and, when dsp is not NULL, d dt / d(delta + bias) (sigmoid below the
 * threshold, 1 above). */
MB_ALWAYS_INLINE static inline void SC_FN(scan_dt_lanes)(const mb_scan_desc *d, const SC_T *raw_delta,
                                                         const SC_T *biasl, SC_T *dt, SC_T *dsp) {
  if (!d->delta_softplus) {
    for (int c = 0; c < SC_LANES; c++) {
      dt[c] = raw_delta[c] + biasl[c];
      if (dsp)
        dsp[c] = 1;
    }
    return;
  }
#pragma omp simd
  for (int c = 0; c < SC_LANES; c++)
    dt[c] = SC_SOFTPLUS(raw_delta[c] + biasl[c]);
  if (dsp) {
#pragma omp simd
    for (int c = 0; c < SC_LANES; c++) {
      const SC_T raw = raw_delta[c] + biasl[c];
      dsp[c] = raw <= 20 ? SC_SIGMOID(raw) : 1;
    }
  }
}

/* Save a block's states h[n][lane] into states[..., d0+c, n] (layout [D, N]). */
static void SC_FN(scan_save)(SC_T *dst, const SC_T *h, int N, int nc) {
  for (int c = 0; c < nc; c++)
    for (int n = 0; n < N; n++)
      dst[(size_t)c * N + n] = h[n * SC_LANES + c];
}
static void SC_FN(scan_load)(SC_T *h, const SC_T *src, int N, int nc) {
  memset(h, 0, (size_t)N * SC_LANES * sizeof(SC_T));
  for (int c = 0; c < nc; c++)
    for (int n = 0; n < N; n++)
      h[n * SC_LANES + c] = src[(size_t)c * N + n];
}

/* Forward of channels d0 .. d0+nc-1 of batch row b, all L tokens. h and A
 * are this thread's [N][SC_LANES] scratch. */
MB_VEC_CLONES
static void SC_FN(scan_fwd_block)(const mb_scan_desc *d, const SC_IN *in, int b, int d0, int nc, SC_T *y,
                                  SC_T *states, SC_T *h, SC_T *A) {
  const int L = d->seqlen, D = d->dim, N = d->dstate, K = scan_chunk(d), nchunks = mb_cpu_scan_nchunks(d);
  SC_T Dl[SC_LANES], biasl[SC_LANES];
  SC_T u[SC_LANES] = {0}, raw[SC_LANES] = {0}, z[SC_LANES] = {0}, dt[SC_LANES], dtu[SC_LANES], acc[SC_LANES];
  SC_FN(scan_load_block)(in, N, d0, nc, A, Dl, biasl);
  memset(h, 0, (size_t)N * SC_LANES * sizeof(SC_T));
  scan_walk w;
  scan_walk_init(&w, d, 0);
  for (int t = 0; t < L; t++) {
    const size_t row = (size_t)b * L + t, x0 = row * D + d0;
    if (t % K == 0) /* the state entering this chunk, for the backward */
      SC_FN(scan_save)(states + (((size_t)b * nchunks + t / K) * D + d0) * N, h, N, nc);
    if (t >= w.end) { /* varlen budget padding */
      memset(y + x0, 0, (size_t)nc * sizeof(SC_T));
      continue;
    }
    if (scan_walk_starts(&w, t))
      memset(h, 0, (size_t)N * SC_LANES * sizeof(SC_T));
    SC_FN(scan_lanes)(u, in->u + x0, nc);
    SC_FN(scan_lanes)(raw, in->delta + x0, nc);
    SC_FN(scan_dt_lanes)(d, raw, biasl, dt, NULL);
#pragma omp simd
    for (int c = 0; c < SC_LANES; c++) {
      dtu[c] = dt[c] * u[c];
      acc[c] = 0;
    }
    const SC_T *Bt = in->B + row * N, *Ct = in->C + row * N;
    for (int n = 0; n < N; n++) {
      SC_T *hn = h + n * SC_LANES;
      const SC_T *An = A + n * SC_LANES, Bn = Bt[n], Cn = Ct[n];
#pragma omp simd
      for (int c = 0; c < SC_LANES; c++) { /* h = exp(dt*A) * h + dt*u*B;  y += h * C */
        hn[c] = SC_EXP(dt[c] * An[c]) * hn[c] + dtu[c] * Bn;
        acc[c] += hn[c] * Cn;
      }
    }
    if (in->z) {
      SC_FN(scan_lanes)(z, in->z + x0, nc);
#pragma omp simd
      for (int c = 0; c < SC_LANES; c++) /* D skip, then the SiLU(z) gate */
        acc[c] = (acc[c] + Dl[c] * u[c]) * (z[c] * SC_SIGMOID(z[c]));
    } else {
#pragma omp simd
      for (int c = 0; c < SC_LANES; c++)
        acc[c] += Dl[c] * u[c];
    }
    SC_FN(scan_lanes)(y + x0, acc, nc);
  }
}

int SC_FN(mb_cpu_scan_fwd)(const mb_scan_desc *d, const SC_IN *in, SC_T *y, SC_T *states, void *workspace,
                           size_t workspace_bytes) {
  MB_TRY(mb_cpu_scan_check(d));
  if ((size_t)d->batch * d->seqlen == 0)
    return MB_OK;
  if (!in || !in->u || !in->delta || !in->A_log || !in->B || !in->C || !y || !states)
    return MB_ERR(MB_EINVAL, "selective scan forward: NULL u, delta, A_log, B, C, y or states");
  const int D = d->dim, nt = scan_threads(d);
  const size_t es = sizeof(SC_T), per_thread = scan_fwd_thread_bytes(d, es);
  void *owned;
  MB_TRY(scan_workspace("forward", (size_t)nt * per_thread, &workspace, workspace_bytes, &owned));
  const int nblocks = (D + SCAN_BLOCK - 1) / SCAN_BLOCK;
  const long nitems = (long)d->batch * nblocks;
#pragma omp parallel num_threads(nt)
  {
    unsigned char *mine = (unsigned char *)workspace + (size_t)omp_get_thread_num() * per_thread;
    SC_T *h = (SC_T *)mine;
    SC_T *A = (SC_T *)(mine + aligned((size_t)SCAN_BLOCK * d->dstate * es));
#pragma omp for schedule(static)
    for (long it = 0; it < nitems; it++) {
      const int b = (int)(it / nblocks), d0 = (int)(it % nblocks) * SCAN_BLOCK;
      const int nc = D - d0 < SCAN_BLOCK ? D - d0 : SCAN_BLOCK;
      SC_FN(scan_fwd_block)(d, in, b, d0, nc, y, states, h, A);
    }
  }
  mb_host_free(owned);
  return MB_OK;
}

/* This thread's scratch, carved from its slice of the workspace. */
typedef struct {
  SC_T *H, *dA, *dt, *dsp, *A, *zero, *wB, *wC, *dh, *part, *gA, *gD, *gbias;
  unsigned char *flag;
} SC_FN(scan_bwd_scratch);

static void SC_FN(scan_bwd_carve)(const scan_bwd_layout *p, unsigned char *base, SC_FN(scan_bwd_scratch) * s) {
  s->H = (SC_T *)(base + p->H);
  s->dA = (SC_T *)(base + p->dA);
  s->dt = (SC_T *)(base + p->dt);
  s->dsp = (SC_T *)(base + p->dsp);
  s->A = (SC_T *)(base + p->A);
  s->zero = (SC_T *)(base + p->zero);
  s->wB = (SC_T *)(base + p->wB);
  s->wC = (SC_T *)(base + p->wC);
  s->flag = base + p->flag;
  s->dh = (SC_T *)(base + p->dh);
  s->part = (SC_T *)(base + p->part);
  s->gA = (SC_T *)(base + p->gA);
  s->gD = (SC_T *)(base + p->gD);
  s->gbias = (SC_T *)(base + p->gbias);
}

/* Backward of one chunk [t0, t1) of channels d0 .. d0+nc-1 of batch row b.
 * First the chunk's states are recomputed forwards from the saved one, then
 * its tokens are walked backwards. dhs [N][lanes] is the block's dh from the
 * chunk after; gA [N][lanes], gD and gbias [lanes] its running sums.
 * Per token and channel, with g = dLoss/d(pre-gate y) and dh the gradient
 * flowing into h_t:
 *   dh_t   = dh (from t+1) + g * C_t            (total gradient on h_t)
 *   h_t    = a_t * h_{t-1} + dt * B_t * u,   a_t = exp(dt * A)
 *   d dt  += dh_t * (A * a_t * h_{t-1} + B_t * u)
 *   dA    += dh_t * dt * a_t * h_{t-1}
 *   dB_t  += dh_t * dt * u,   dC_t += g * h_t,   du += dh_t * dt * B_t + g * D
 *   dh (to t-1) = dh_t * a_t, or 0 when t starts a sequence.
 * dB_t and dC_t sum over channels: each lane's share is added into s->wB and
 * s->wC at the token's row, and the caller sums the lanes once for all the
 * blocks it walks (a cross-lane sum per token and block cost a third of the
 * backward). */
MB_VEC_CLONES
static void SC_FN(scan_bwd_chunk)(const mb_scan_desc *d, const SC_IN *in, const SC_T *states, const SC_T *dy,
                                  const SC_GRAD *gr, int b, int d0, int nc, int ck, SC_T *dhs, SC_T *gA,
                                  SC_T *gD, SC_T *gbias, SC_FN(scan_bwd_scratch) * s) {
  const int L = d->seqlen, D = d->dim, N = d->dstate, K = scan_chunk(d), nchunks = mb_cpu_scan_nchunks(d);
  const int t0 = ck * K, t1 = t0 + K < L ? t0 + K : L;
  const size_t blk = (size_t)N * SC_LANES;
  SC_T Dl[SC_LANES], biasl[SC_LANES];
  SC_T u[SC_LANES] = {0}, raw[SC_LANES] = {0}, z[SC_LANES] = {0}, g[SC_LANES] = {0};
  SC_T du[SC_LANES], ddt[SC_LANES], gz[SC_LANES], ypre[SC_LANES];
  SC_FN(scan_load_block)(in, N, d0, nc, s->A, Dl, biasl);

  /* 1. Recompute the states of this chunk from the saved one. */
  SC_FN(scan_load)(s->H, states + (((size_t)b * nchunks + ck) * D + d0) * N, N, nc);
  scan_walk w;
  scan_walk_init(&w, d, t0);
  for (int t = t0; t < t1; t++) {
    const int i = t - t0;
    const size_t row = (size_t)b * L + t, x0 = row * D + d0;
    const SC_T *hin = s->H + (size_t)i * blk;
    SC_T *hout = s->H + (size_t)(i + 1) * blk, *a = s->dA + (size_t)i * blk;
    SC_T *dt = s->dt + (size_t)i * SC_LANES;
    if (t >= w.end) {
      s->flag[i] = 2;
      continue; /* nothing after the budget's end is ever read */
    }
    s->flag[i] = (unsigned char)scan_walk_starts(&w, t);
    if (s->flag[i]) /* a sequence starts here: the state entering it is zero */
      hin = s->zero;
    SC_FN(scan_lanes)(u, in->u + x0, nc);
    SC_FN(scan_lanes)(raw, in->delta + x0, nc);
    SC_FN(scan_dt_lanes)(d, raw, biasl, dt, s->dsp + (size_t)i * SC_LANES);
    const SC_T *Bt = in->B + row * N;
    for (int n = 0; n < N; n++) {
      const SC_T *An = s->A + n * SC_LANES, *hi = hin + n * SC_LANES, Bn = Bt[n];
      SC_T *an = a + n * SC_LANES, *ho = hout + n * SC_LANES;
#pragma omp simd
      for (int c = 0; c < SC_LANES; c++) {
        an[c] = SC_EXP(dt[c] * An[c]);
        ho[c] = an[c] * hi[c] + dt[c] * u[c] * Bn;
      }
    }
  }

  /* 2. Walk the chunk backwards. */
  for (int t = t1 - 1; t >= t0; t--) {
    const int i = t - t0;
    const size_t row = (size_t)b * L + t, x0 = row * D + d0;
    if (s->flag[i] == 2) { /* padding: zero gradients (no dB, dC shares) */
      if (gr->du)
        memset(gr->du + x0, 0, (size_t)nc * sizeof(SC_T));
      if (gr->ddelta)
        memset(gr->ddelta + x0, 0, (size_t)nc * sizeof(SC_T));
      if (gr->dz)
        memset(gr->dz + x0, 0, (size_t)nc * sizeof(SC_T));
      continue;
    }
    const SC_T *hp = s->flag[i] == 1 ? s->zero : s->H + (size_t)i * blk;
    const SC_T *ht = s->H + (size_t)(i + 1) * blk, *a = s->dA + (size_t)i * blk;
    const SC_T *dt = s->dt + (size_t)i * SC_LANES, *dsp = s->dsp + (size_t)i * SC_LANES;
    const SC_T *Bt = in->B + row * N, *Ct = in->C + row * N;
    SC_T *wBt = s->wB + (size_t)i * blk, *wCt = s->wC + (size_t)i * blk;
    SC_FN(scan_lanes)(u, in->u + x0, nc);
    SC_FN(scan_lanes)(g, dy + x0, nc);

    /* through the gate y = ypre * silu(z): needs ypre = sum_n h C + D u */
    if (in->z) {
      SC_FN(scan_lanes)(z, in->z + x0, nc);
#pragma omp simd
      for (int c = 0; c < SC_LANES; c++)
        ypre[c] = Dl[c] * u[c];
      for (int n = 0; n < N; n++) {
        const SC_T *hn = ht + n * SC_LANES, Cn = Ct[n];
#pragma omp simd
        for (int c = 0; c < SC_LANES; c++)
          ypre[c] += hn[c] * Cn;
      }
#pragma omp simd
      for (int c = 0; c < SC_LANES; c++) {
        const SC_T sg = SC_SIGMOID(z[c]);
        gz[c] = g[c] * ypre[c] * sg * (1 + z[c] * (1 - sg));
        g[c] *= z[c] * sg;
      }
      if (gr->dz)
        SC_FN(scan_lanes)(gr->dz + x0, gz, nc);
    }
#pragma omp simd
    for (int c = 0; c < SC_LANES; c++) {
      gD[c] += g[c] * u[c];
      du[c] = g[c] * Dl[c];
      ddt[c] = 0;
    }
    for (int n = 0; n < N; n++) {
      const SC_T *hpn = hp + n * SC_LANES, *htn = ht + n * SC_LANES, *an = a + n * SC_LANES;
      const SC_T *An = s->A + n * SC_LANES, Bn = Bt[n], Cn = Ct[n];
      SC_T *dhn = dhs + n * SC_LANES, *gAn = gA + n * SC_LANES;
      SC_T *wBn = wBt + n * SC_LANES, *wCn = wCt + n * SC_LANES;
#pragma omp simd
      for (int c = 0; c < SC_LANES; c++) {
        const SC_T dh = dhn[c] + g[c] * Cn;
        wCn[c] += g[c] * htn[c]; /* this channel's shares of dC_t[n] and dB_t[n] */
        wBn[c] += dh * dt[c] * u[c];
        ddt[c] += dh * (An[c] * an[c] * hpn[c] + Bn * u[c]);
        gAn[c] += dh * dt[c] * an[c] * hpn[c];
        du[c] += dh * dt[c] * Bn;
        dhn[c] = dh * an[c];
      }
    }
    if (s->flag[i] == 1) /* the sequence started here: nothing flows further back */
      memset(dhs, 0, blk * sizeof(SC_T));
#pragma omp simd
    for (int c = 0; c < SC_LANES; c++) { /* through dt = softplus(delta + bias) */
      ddt[c] *= dsp[c];
      gbias[c] += ddt[c];
    }
    if (gr->ddelta)
      SC_FN(scan_lanes)(gr->ddelta + x0, ddt, nc);
    if (gr->du)
      SC_FN(scan_lanes)(gr->du + x0, du, nc);
  }
}

/* Sum the lanes of w ([n tokens][N][lanes]) into dst[t][n] (row stride N). */
MB_VEC_CLONES
static void SC_FN(scan_fold_lanes)(const SC_T *w, int ntok, int N, SC_T *dst) {
  for (size_t r = 0; r < (size_t)ntok * N; r++) {
    const SC_T *wr = w + r * SC_LANES;
    SC_T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int c = 0; c < SC_LANES; c++)
      sum += wr[c];
    dst[r] = sum;
  }
}

/* One thread's run of work items: for each batch row it touches, its blocks
 * [bl0, bl1) of that row, walked chunk by chunk from the last. A run that
 * holds a row's first block writes the row's dB and dC straight to the
 * gradients (every row has exactly one); a run that starts inside a row (at
 * most its first) puts them in its partial, added after the barrier. dA_log,
 * dD and d bias go to this thread's lane-layout sums gA, gD, gbias. */
static void SC_FN(scan_bwd_thread)(const mb_scan_desc *d, const SC_IN *in, const SC_T *states, const SC_T *dy,
                                   const SC_GRAD *gr, long lo, long hi, SC_FN(scan_bwd_scratch) * s) {
  const int L = d->seqlen, D = d->dim, N = d->dstate, K = scan_chunk(d), nchunks = mb_cpu_scan_nchunks(d);
  const int nblocks = (D + SCAN_BLOCK - 1) / SCAN_BLOCK;
  const size_t blk = (size_t)N * SC_LANES, LN = (size_t)L * N;
  memset(s->zero, 0, blk * sizeof(SC_T));
  memset(s->gA, 0, (size_t)nblocks * blk * sizeof(SC_T));
  memset(s->gD, 0, (size_t)nblocks * SC_LANES * sizeof(SC_T));
  memset(s->gbias, 0, (size_t)nblocks * SC_LANES * sizeof(SC_T));
  for (long it = lo; it < hi;) {
    const int b = (int)(it / nblocks), bl0 = (int)(it % nblocks);
    const int bl1 = hi - it < nblocks - bl0 ? bl0 + (int)(hi - it) : nblocks;
    SC_T *dB = s->part, *dC = s->part + LN;
    if (bl0 == 0) {
      dB = gr->dB ? gr->dB + (size_t)b * LN : NULL;
      dC = gr->dC ? gr->dC + (size_t)b * LN : NULL;
    }
    memset(s->dh + (size_t)bl0 * blk, 0, (size_t)(bl1 - bl0) * blk * sizeof(SC_T));
    for (int ck = nchunks - 1; ck >= 0; ck--) {
      const int t0 = ck * K, ntok = (t0 + K < L ? K : L - t0);
      memset(s->wB, 0, (size_t)ntok * blk * sizeof(SC_T));
      memset(s->wC, 0, (size_t)ntok * blk * sizeof(SC_T));
      for (int bl = bl0; bl < bl1; bl++) {
        const int d0 = bl * SCAN_BLOCK, nc = D - d0 < SCAN_BLOCK ? D - d0 : SCAN_BLOCK;
        SC_FN(scan_bwd_chunk)(d, in, states, dy, gr, b, d0, nc, ck, s->dh + (size_t)bl * blk,
                              s->gA + (size_t)bl * blk, s->gD + (size_t)bl * SC_LANES,
                              s->gbias + (size_t)bl * SC_LANES, s);
      }
      if (dB)
        SC_FN(scan_fold_lanes)(s->wB, ntok, N, dB + (size_t)t0 * N);
      if (dC)
        SC_FN(scan_fold_lanes)(s->wC, ntok, N, dC + (size_t)t0 * N);
    }
    it += bl1 - bl0;
  }
}

int SC_FN(mb_cpu_scan_bwd)(const mb_scan_desc *d, const SC_IN *in, const SC_T *states, const SC_T *dy,
                           const SC_GRAD *gr, void *workspace, size_t workspace_bytes) {
  MB_TRY(mb_cpu_scan_check(d));
  if (!in || !gr)
    return MB_ERR(MB_EINVAL, "selective scan backward: NULL inputs or gradients");
  const int L = d->seqlen, D = d->dim, N = d->dstate, nt = scan_threads(d);
  if ((size_t)d->batch * L == 0) {
    if (gr->dA_log)
      memset(gr->dA_log, 0, (size_t)D * N * sizeof(SC_T));
    if (gr->dD)
      memset(gr->dD, 0, (size_t)D * sizeof(SC_T));
    if (gr->ddelta_bias)
      memset(gr->ddelta_bias, 0, (size_t)D * sizeof(SC_T));
    return MB_OK;
  }
  if (!in->u || !in->delta || !in->A_log || !in->B || !in->C || !states || !dy)
    return MB_ERR(MB_EINVAL, "selective scan backward: NULL u, delta, A_log, B, C, states or dy");
  if ((gr->dD && !in->D) || (gr->dz && !in->z) || (gr->ddelta_bias && !in->delta_bias))
    return MB_ERR(MB_EINVAL, "selective scan backward: gradient asked for an input that was not given (D, z or "
                             "delta_bias is NULL)");
  const scan_bwd_layout plan = scan_bwd_plan(d, sizeof(SC_T));
  void *owned;
  MB_TRY(scan_workspace("backward", (size_t)nt * plan.total, &workspace, workspace_bytes, &owned));
  const int nblocks = (D + SCAN_BLOCK - 1) / SCAN_BLOCK;
  const long nitems = (long)d->batch * nblocks;
  const size_t LN = (size_t)L * N;
  unsigned char *base = (unsigned char *)workspace;

  /* Threads take contiguous runs of (row, block) items, so with more rows
   * than threads most rows are one thread's and need no reduction; the sums
   * that do cross threads (shared rows' dB and dC, dA_log, dD, d bias) are
   * added in thread order after the barrier. */
#pragma omp parallel num_threads(nt)
  {
    const int th = omp_get_thread_num(), team = omp_get_num_threads();
    SC_FN(scan_bwd_scratch) s;
    SC_FN(scan_bwd_carve)(&plan, base + (size_t)th * plan.total, &s);
    long lo, hi;
    scan_bwd_run(nitems, th, team, &lo, &hi);
    SC_FN(scan_bwd_thread)(d, in, states, dy, gr, lo, hi, &s);
#pragma omp barrier
    /* Rows split between threads: their first thread wrote dB and dC; add
     * the others' partials, in thread order, a tile of tokens at a time. */
    enum { TILE = 256 };
    const long ntiles = (L + TILE - 1) / TILE;
#pragma omp for schedule(static)
    for (long e = 0; e < (long)d->batch * ntiles; e++) {
      const long b = e / ntiles, rlo = b * nblocks, rhi = rlo + nblocks;
      const size_t x0 = (size_t)(e % ntiles) * TILE * N, x1 = x0 + (size_t)TILE * N, xe = x1 < LN ? x1 : LN;
      for (int t = 0; t < team; t++) {
        long tlo, thi;
        scan_bwd_run(nitems, t, team, &tlo, &thi);
        if (!(tlo < thi && tlo > rlo && tlo < rhi)) /* a run that starts inside row b */
          continue;
        const SC_T *part = (const SC_T *)(base + (size_t)t * plan.total + plan.part);
        if (gr->dB)
          for (size_t x = x0; x < xe; x++)
            gr->dB[(size_t)b * LN + x] += part[x];
        if (gr->dC)
          for (size_t x = x0; x < xe; x++)
            gr->dC[(size_t)b * LN + x] += part[LN + x];
      }
    }
    /* dA_log, dD, d bias: every thread's lane-layout sums, in thread order. */
#pragma omp for schedule(static)
    for (int c = 0; c < D; c++) {
      const size_t bl = (size_t)c / SCAN_BLOCK, lane = (size_t)c % SCAN_BLOCK;
      for (int n = 0; n < N && gr->dA_log; n++) {
        SC_T sum = 0;
        for (int t = 0; t < team; t++)
          sum += ((const SC_T *)(base + (size_t)t * plan.total + plan.gA))[(bl * N + n) * SCAN_BLOCK + lane];
        const size_t j = (size_t)c * N + n; /* A = -exp(A_log): dA_log = dA * A */
        gr->dA_log[j] = -sum * SC_EXP(in->A_log[j]);
      }
      SC_T sD = 0, sb = 0;
      for (int t = 0; t < team; t++) {
        sD += ((const SC_T *)(base + (size_t)t * plan.total + plan.gD))[bl * SCAN_BLOCK + lane];
        sb += ((const SC_T *)(base + (size_t)t * plan.total + plan.gbias))[bl * SCAN_BLOCK + lane];
      }
      if (gr->dD)
        gr->dD[c] = sD;
      if (gr->ddelta_bias)
        gr->ddelta_bias[c] = sb;
    }
  }
  mb_host_free(owned);
  return MB_OK;
}

#undef SC_FN
#undef SC_IN
#undef SC_GRAD
#undef SC_LANES
