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
MB_ALWAYS_INLINE static inline void SC_FN(scan_dt_lanes)(const mb_scan_desc *d, const SC_T *raw_delta, const SC_T *biasl, SC_T *dt,
                                        SC_T *dsp) {
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

/* Per-thread scratch of the backward, carved from its slice of workspace. */
typedef struct {
  SC_T *H;   /* [chunk+1][N][lanes]: H[i] = state entering token t0+i (0 if it starts a sequence) */
  SC_T *dA;  /* [chunk][N][lanes]: exp(dt*A) at each token of the chunk */
  SC_T *dt;  /* [chunk][lanes]: dt at each token */
  SC_T *dsp; /* [chunk][lanes]: d dt / d(delta + bias) */
  SC_T *dh;  /* [N][lanes]: dLoss/dh carried backwards across tokens */
  SC_T *A;   /* [N][lanes] */
  SC_T *gA;  /* [N][lanes]: dLoss/dA summed over tokens */
  SC_T *zero; /* [N][lanes] of zeros: the state entering a sequence's first token */
  SC_T *cB, *cC; /* [N][lanes]: each channel's share of dB_t, dC_t at one token */
  unsigned char *flag; /* [chunk]: 0 continues a sequence, 1 starts one, 2 is padding */
  SC_T *dBp, *dCp;     /* [L][N]: this thread's share of dB and dC for the row */
} SC_FN(scan_bwd_scratch);

static void SC_FN(scan_bwd_carve)(const mb_scan_desc *d, unsigned char *p, SC_FN(scan_bwd_scratch) * s) {
  const size_t es = sizeof(SC_T), blk = (size_t)SCAN_BLOCK * d->dstate, k = (size_t)scan_chunk(d);
  s->H = (SC_T *)p;
  p += aligned((k + 1) * blk * es);
  s->dA = (SC_T *)p;
  p += aligned(k * blk * es);
  s->dt = (SC_T *)p;
  p += aligned(k * SCAN_BLOCK * es);
  s->dsp = (SC_T *)p;
  p += aligned(k * SCAN_BLOCK * es);
  s->dh = (SC_T *)p;
  p += aligned(blk * es);
  s->A = (SC_T *)p;
  p += aligned(blk * es);
  s->gA = (SC_T *)p;
  p += aligned(blk * es);
  s->zero = (SC_T *)p;
  p += aligned(blk * es);
  s->cB = (SC_T *)p;
  p += aligned(blk * es);
  s->cC = (SC_T *)p;
  p += aligned(blk * es);
  s->flag = p;
  p += aligned(k);
  s->dBp = (SC_T *)p;
  p += aligned((size_t)d->seqlen * d->dstate * es);
  s->dCp = (SC_T *)p;
}

/* Backward of channels d0 .. d0+nc-1 of batch row b. Chunks are walked last
 * to first; within a chunk the states are first recomputed forwards from the
 * saved one, then the tokens are walked backwards. Per token and channel,
 * with g = dLoss/d(pre-gate y) and dh the gradient flowing into h_t:
 *   dh_t   = dh (from t+1) + g * C_t            (total gradient on h_t)
 *   h_t    = a_t * h_{t-1} + dt * B_t * u,   a_t = exp(dt * A)
 *   d dt  += dh_t * (A * a_t * h_{t-1} + B_t * u)
 *   dA    += dh_t * dt * a_t * h_{t-1}
 *   dB_t  += dh_t * dt * u,   dC_t += g * h_t,   du += dh_t * dt * B_t + g * D
 *   dh (to t-1) = dh_t * a_t, or 0 when t starts a sequence. */
MB_VEC_CLONES
static void SC_FN(scan_bwd_block)(const mb_scan_desc *d, const SC_IN *in, const SC_T *states, const SC_T *dy,
                                  const SC_GRAD *gr, int b, int d0, int nc, SC_FN(scan_bwd_scratch) * s) {
  const int L = d->seqlen, D = d->dim, N = d->dstate, K = scan_chunk(d), nchunks = mb_cpu_scan_nchunks(d);
  const size_t blk = (size_t)N * SC_LANES;
  SC_T Dl[SC_LANES], biasl[SC_LANES], gD[SC_LANES] = {0}, gbias[SC_LANES] = {0};
  SC_T u[SC_LANES] = {0}, raw[SC_LANES] = {0}, z[SC_LANES] = {0}, g[SC_LANES] = {0};
  SC_T du[SC_LANES], ddt[SC_LANES], gz[SC_LANES], ypre[SC_LANES];
  SC_FN(scan_load_block)(in, N, d0, nc, s->A, Dl, biasl);
  memset(s->dh, 0, blk * sizeof(SC_T));
  memset(s->gA, 0, blk * sizeof(SC_T));
  memset(s->zero, 0, blk * sizeof(SC_T));

  for (int ck = nchunks - 1; ck >= 0; ck--) {
    const int t0 = ck * K, t1 = t0 + K < L ? t0 + K : L;

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
      if (s->flag[i] == 2) { /* padding: zero gradients (dB, dC partials stay 0) */
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
      SC_T *dBt = s->dBp + (size_t)t * N, *dCt = s->dCp + (size_t)t * N;
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
        SC_T *dhn = s->dh + n * SC_LANES, *gAn = s->gA + n * SC_LANES;
        SC_T *cBn = s->cB + n * SC_LANES, *cCn = s->cC + n * SC_LANES;
#pragma omp simd
        for (int c = 0; c < SC_LANES; c++) {
          const SC_T dh = dhn[c] + g[c] * Cn;
          cCn[c] = g[c] * htn[c]; /* this channel's share of dC_t[n] and dB_t[n] */
          cBn[c] = dh * dt[c] * u[c];
          ddt[c] += dh * (An[c] * an[c] * hpn[c] + Bn * u[c]);
          gAn[c] += dh * dt[c] * an[c] * hpn[c];
          du[c] += dh * dt[c] * Bn;
          dhn[c] = dh * an[c];
        }
      }
      /* dB_t[n], dC_t[n] sum the shares over the block's channels: fold the
       * upper half of every row of cB/cC into its lower half until one lane
       * is left (short, independent vector adds instead of a serial chain). */
      for (int half = SC_LANES / 2; half >= 1; half /= 2)
        for (int n = 0; n < N; n++) {
          SC_T *cBn = s->cB + n * SC_LANES, *cCn = s->cC + n * SC_LANES;
#pragma omp simd
          for (int c = 0; c < half; c++) {
            cBn[c] += cBn[c + half];
            cCn[c] += cCn[c + half];
          }
        }
      for (int n = 0; n < N; n++) {
        dBt[n] += s->cB[n * SC_LANES];
        dCt[n] += s->cC[n * SC_LANES];
      }
      if (s->flag[i] == 1) /* the sequence started here: nothing flows further back */
        memset(s->dh, 0, blk * sizeof(SC_T));
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

  /* This block's channels belong to this call alone (within a batch row), and
   * batch rows run one after another: plain adds are race-free and ordered. */
  for (int c = 0; c < nc; c++) {
    if (gr->dD)
      gr->dD[d0 + c] += gD[c];
    if (gr->ddelta_bias)
      gr->ddelta_bias[d0 + c] += gbias[c];
    if (gr->dA_log) /* A = -exp(A_log): dA_log = dA * A */
      for (int n = 0; n < N; n++)
        gr->dA_log[(size_t)(d0 + c) * N + n] += s->gA[n * SC_LANES + c] * s->A[n * SC_LANES + c];
  }
}

int SC_FN(mb_cpu_scan_bwd)(const mb_scan_desc *d, const SC_IN *in, const SC_T *states, const SC_T *dy,
                           const SC_GRAD *gr, void *workspace, size_t workspace_bytes) {
  MB_TRY(mb_cpu_scan_check(d));
  if (!in || !gr)
    return MB_ERR(MB_EINVAL, "selective scan backward: NULL inputs or gradients");
  const int L = d->seqlen, D = d->dim, N = d->dstate, nt = scan_threads(d);
  if (gr->dA_log)
    memset(gr->dA_log, 0, (size_t)D * N * sizeof(SC_T));
  if (gr->dD)
    memset(gr->dD, 0, (size_t)D * sizeof(SC_T));
  if (gr->ddelta_bias)
    memset(gr->ddelta_bias, 0, (size_t)D * sizeof(SC_T));
  if ((size_t)d->batch * L == 0)
    return MB_OK;
  if (!in->u || !in->delta || !in->A_log || !in->B || !in->C || !states || !dy)
    return MB_ERR(MB_EINVAL, "selective scan backward: NULL u, delta, A_log, B, C, states or dy");
  if ((gr->dD && !in->D) || (gr->dz && !in->z) || (gr->ddelta_bias && !in->delta_bias))
    return MB_ERR(MB_EINVAL, "selective scan backward: gradient asked for an input that was not given (D, z or "
                             "delta_bias is NULL)");
  const size_t es = sizeof(SC_T), per_thread = scan_bwd_thread_bytes(d, es);
  void *owned;
  MB_TRY(scan_workspace("backward", (size_t)nt * per_thread, &workspace, workspace_bytes, &owned));
  const int nblocks = (D + SCAN_BLOCK - 1) / SCAN_BLOCK;

  /* One batch row at a time: threads split its channels, each keeps its own
   * partial dB/dC for the row, and the partials are summed in thread order. */
  for (int b = 0; b < d->batch; b++) {
#pragma omp parallel num_threads(nt)
    {
      SC_FN(scan_bwd_scratch) s;
      SC_FN(scan_bwd_carve)(d, (unsigned char *)workspace + (size_t)omp_get_thread_num() * per_thread, &s);
      memset(s.dBp, 0, (size_t)L * N * es);
      memset(s.dCp, 0, (size_t)L * N * es);
#pragma omp for schedule(static)
      for (int blk = 0; blk < nblocks; blk++) {
        const int d0 = blk * SCAN_BLOCK, nc = D - d0 < SCAN_BLOCK ? D - d0 : SCAN_BLOCK;
        SC_FN(scan_bwd_block)(d, in, states, dy, gr, b, d0, nc, &s);
      }
      /* (implicit barrier: every partial is complete) */
      const int team = omp_get_num_threads();
      const unsigned char *base = (const unsigned char *)workspace;
      const size_t offB = (size_t)((unsigned char *)s.dBp - (unsigned char *)s.H);
      const size_t offC = (size_t)((unsigned char *)s.dCp - (unsigned char *)s.H);
#pragma omp for schedule(static)
      for (int t = 0; t < L; t++) {
        for (int n = 0; n < N; n++) {
          const size_t e = (size_t)t * N + n;
          SC_T sb = 0, sc = 0;
          for (int th = 0; th < team; th++) {
            sb += ((const SC_T *)(base + (size_t)th * per_thread + offB))[e];
            sc += ((const SC_T *)(base + (size_t)th * per_thread + offC))[e];
          }
          const size_t j = ((size_t)b * L + t) * N + n;
          if (gr->dB)
            gr->dB[j] = sb;
          if (gr->dC)
            gr->dC[j] = sc;
        }
      }
    }
  }
  mb_host_free(owned);
  return MB_OK;
}

#undef SC_FN
#undef SC_IN
#undef SC_GRAD
#undef SC_LANES
