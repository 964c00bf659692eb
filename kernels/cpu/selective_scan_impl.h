/* selective_scan_impl.h: the selective scan kernels for one element type.
 * Included by selective_scan.c with SC_T (float or double), SC_SFX (f32,
 * f64), SC_EXP and SC_LOG1P defined; nothing else includes it.
 *
 * Indexing: token t of batch row b is row = b*L + t; channel c of that token
 * is at row*D + c in u/delta/z/y and state n of channel c at c*N + n in a
 * block of states.
 */
#ifndef SC_CAT
#define SC_CAT_(a, b) a##_##b
#define SC_CAT(a, b) SC_CAT_(a, b)
#endif
#define SC_FN(name) SC_CAT(name, SC_SFX)
#define SC_IN SC_CAT(mb_scan_in, SC_SFX)
#define SC_GRAD SC_CAT(mb_scan_grad, SC_SFX)

/* softplus with PyTorch's threshold: linear above 20. */
static inline SC_T SC_FN(scan_softplus)(SC_T x) { return x > 20 ? x : SC_LOG1P(SC_EXP(x)); }
static inline SC_T SC_FN(scan_sigmoid)(SC_T x) { return 1 / (1 + SC_EXP(-x)); }

/* dt of one (token, channel): delta + bias, through softplus if asked. */
static inline SC_T SC_FN(scan_dt)(const mb_scan_desc *d, const SC_IN *in, size_t x, int ch) {
  SC_T v = in->delta[x] + (in->delta_bias ? in->delta_bias[ch] : 0);
  return d->delta_softplus ? SC_FN(scan_softplus)(v) : v;
}

/* A = -exp(A_log) for channels d0 .. d0+nc-1. */
static void SC_FN(scan_load_A)(const SC_IN *in, int N, int d0, int nc, SC_T *A) {
  for (int i = 0; i < nc * N; i++)
    A[i] = -SC_EXP(in->A_log[(size_t)d0 * N + i]);
}

/* Forward of channels d0 .. d0+nc-1 of batch row b, all L tokens. */
static void SC_FN(scan_fwd_block)(const mb_scan_desc *d, const SC_IN *in, int b, int d0, int nc, SC_T *y,
                                  SC_T *states, SC_T *h, SC_T *A) {
  const int L = d->seqlen, D = d->dim, N = d->dstate, K = scan_chunk(d), nchunks = mb_cpu_scan_nchunks(d);
  SC_FN(scan_load_A)(in, N, d0, nc, A);
  memset(h, 0, (size_t)nc * N * sizeof(SC_T));
  scan_walk w;
  scan_walk_init(&w, d, 0);
  for (int t = 0; t < L; t++) {
    const size_t row = (size_t)b * L + t;
    if (t % K == 0) { /* save the state entering this chunk, for the backward */
      SC_T *save = states + (((size_t)b * nchunks + t / K) * D + d0) * N;
      memcpy(save, h, (size_t)nc * N * sizeof(SC_T));
    }
    if (t >= w.end) { /* varlen budget padding */
      memset(y + row * D + d0, 0, (size_t)nc * sizeof(SC_T));
      continue;
    }
    if (scan_walk_starts(&w, t))
      memset(h, 0, (size_t)nc * N * sizeof(SC_T));
    const SC_T *Bt = in->B + row * N, *Ct = in->C + row * N;
    for (int c = 0; c < nc; c++) {
      const size_t x = row * D + d0 + c;
      const SC_T dt = SC_FN(scan_dt)(d, in, x, d0 + c), u = in->u[x], dtu = dt * u;
      SC_T *hc = h + (size_t)c * N;
      const SC_T *Ac = A + (size_t)c * N;
      SC_T acc = 0;
      for (int n = 0; n < N; n++) {
        hc[n] = SC_EXP(dt * Ac[n]) * hc[n] + dtu * Bt[n];
        acc += hc[n] * Ct[n];
      }
      SC_T out = acc + (in->D ? in->D[d0 + c] * u : 0);
      if (in->z) {
        const SC_T z = in->z[x];
        out *= z * SC_FN(scan_sigmoid)(z);
      }
      y[x] = out;
    }
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
  SC_T *H;   /* [chunk+1][nc*N]: H[i] = state entering token t0+i (before a reset) */
  SC_T *dA;  /* [chunk][nc*N]: exp(dt*A) at each token of the chunk */
  SC_T *dh;  /* [nc*N]: dLoss/dh carried backwards across tokens */
  SC_T *A;   /* [nc*N] */
  SC_T *gA;  /* [nc*N]: dLoss/dA summed over tokens */
  unsigned char *flag; /* [chunk]: 0 continues, 1 starts a sequence, 2 is padding */
  SC_T *dBp, *dCp;     /* [L][N]: this thread's share of dB and dC for the row */
} SC_FN(scan_bwd_scratch);

static void SC_FN(scan_bwd_carve)(const mb_scan_desc *d, unsigned char *p, SC_FN(scan_bwd_scratch) * s) {
  const size_t es = sizeof(SC_T), blk = (size_t)SCAN_BLOCK * d->dstate, k = (size_t)scan_chunk(d);
  s->H = (SC_T *)p;
  p += aligned((k + 1) * blk * es);
  s->dA = (SC_T *)p;
  p += aligned(k * blk * es);
  s->dh = (SC_T *)p;
  p += aligned(blk * es);
  s->A = (SC_T *)p;
  p += aligned(blk * es);
  s->gA = (SC_T *)p;
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
static void SC_FN(scan_bwd_block)(const mb_scan_desc *d, const SC_IN *in, const SC_T *states, const SC_T *dy,
                                  const SC_GRAD *gr, int b, int d0, int nc, SC_FN(scan_bwd_scratch) * s) {
  const int L = d->seqlen, D = d->dim, N = d->dstate, K = scan_chunk(d), nchunks = mb_cpu_scan_nchunks(d);
  const size_t blk = (size_t)nc * N;
  SC_FN(scan_load_A)(in, N, d0, nc, s->A);
  memset(s->dh, 0, blk * sizeof(SC_T));
  memset(s->gA, 0, blk * sizeof(SC_T));
  SC_T gD[SCAN_BLOCK] = {0}, gbias[SCAN_BLOCK] = {0};

  for (int ck = nchunks - 1; ck >= 0; ck--) {
    const int t0 = ck * K, t1 = t0 + K < L ? t0 + K : L;

    /* 1. Recompute the states of this chunk from the saved one. */
    memcpy(s->H, states + (((size_t)b * nchunks + ck) * D + d0) * N, blk * sizeof(SC_T));
    scan_walk w;
    scan_walk_init(&w, d, t0);
    for (int t = t0; t < t1; t++) {
      const int i = t - t0;
      const SC_T *hin = s->H + (size_t)i * blk;
      SC_T *hout = s->H + (size_t)(i + 1) * blk, *a = s->dA + (size_t)i * blk;
      const size_t row = (size_t)b * L + t;
      if (t >= w.end) {
        s->flag[i] = 2;
        continue; /* nothing after the budget's end is ever read */
      }
      const int reset = scan_walk_starts(&w, t);
      s->flag[i] = (unsigned char)reset;
      const SC_T *Bt = in->B + row * N;
      for (int c = 0; c < nc; c++) {
        const size_t x = row * D + d0 + c;
        const SC_T dt = SC_FN(scan_dt)(d, in, x, d0 + c), dtu = dt * in->u[x];
        for (int n = 0; n < N; n++) {
          const size_t j = (size_t)c * N + n;
          a[j] = SC_EXP(dt * s->A[j]);
          hout[j] = a[j] * (reset ? 0 : hin[j]) + dtu * Bt[n];
        }
      }
    }

    /* 2. Walk the chunk backwards. */
    for (int t = t1 - 1; t >= t0; t--) {
      const int i = t - t0;
      const size_t row = (size_t)b * L + t;
      if (s->flag[i] == 2) { /* padding: zero gradients (dB, dC partials stay 0) */
        for (int c = 0; c < nc; c++) {
          const size_t x = row * D + d0 + c;
          if (gr->du)
            gr->du[x] = 0;
          if (gr->ddelta)
            gr->ddelta[x] = 0;
          if (gr->dz)
            gr->dz[x] = 0;
        }
        continue;
      }
      const int reset = s->flag[i];
      const SC_T *hin = s->H + (size_t)i * blk, *ht = s->H + (size_t)(i + 1) * blk, *a = s->dA + (size_t)i * blk;
      const SC_T *Bt = in->B + row * N, *Ct = in->C + row * N;
      SC_T *dBt = s->dBp + (size_t)t * N, *dCt = s->dCp + (size_t)t * N;
      for (int c = 0; c < nc; c++) {
        const size_t x = row * D + d0 + c;
        const int ch = d0 + c;
        const SC_T raw = in->delta[x] + (in->delta_bias ? in->delta_bias[ch] : 0);
        const SC_T dt = d->delta_softplus ? SC_FN(scan_softplus)(raw) : raw;
        const SC_T u = in->u[x], Dc = in->D ? in->D[ch] : 0;
        const SC_T *hc = ht + (size_t)c * N, *hp = hin + (size_t)c * N, *ac = a + (size_t)c * N;
        const SC_T *Ac = s->A + (size_t)c * N;
        SC_T *dhc = s->dh + (size_t)c * N, *gAc = s->gA + (size_t)c * N;

        /* through the gate: y = ypre * silu(z) */
        SC_T g = dy[x];
        if (in->z) {
          SC_T ypre = Dc * u;
          for (int n = 0; n < N; n++)
            ypre += hc[n] * Ct[n];
          const SC_T z = in->z[x], sg = SC_FN(scan_sigmoid)(z);
          if (gr->dz)
            gr->dz[x] = g * ypre * sg * (1 + z * (1 - sg));
          g *= z * sg;
        }
        gD[c] += g * u;
        SC_T du = g * Dc, ddt = 0;
        for (int n = 0; n < N; n++) {
          const SC_T hprev = reset ? 0 : hp[n];
          const SC_T dh = dhc[n] + g * Ct[n];
          dCt[n] += g * hc[n];
          dBt[n] += dh * dt * u;
          ddt += dh * (Ac[n] * ac[n] * hprev + Bt[n] * u);
          gAc[n] += dh * dt * ac[n] * hprev;
          du += dh * dt * Bt[n];
          dhc[n] = reset ? 0 : dh * ac[n];
        }
        /* through dt = softplus(raw): d softplus = sigmoid(raw), 1 past 20 */
        if (d->delta_softplus && raw <= 20)
          ddt *= SC_FN(scan_sigmoid)(raw);
        gbias[c] += ddt;
        if (gr->ddelta)
          gr->ddelta[x] = ddt;
        if (gr->du)
          gr->du[x] = du;
      }
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
        gr->dA_log[(size_t)(d0 + c) * N + n] += s->gA[(size_t)c * N + n] * s->A[(size_t)c * N + n];
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
