/* cpukern_ref_impl.h: the naive references for one element type (R_T, R_SFX,
 * R_GEMM, R_EXP, R_LOG1P), included twice by cpukern_ref.c. */
#define R_CAT_(a, b) a##_##b
#define R_CAT(a, b) R_CAT_(a, b)
#define R_FN(name) R_CAT(name, R_SFX)

/* ---- attention ---------------------------------------------------------- */

int R_FN(ref_attn_fwd)(const mb_attn_desc *d, const R_T *q, const R_T *k, const R_T *v, R_T *out, R_T *P) {
  MB_TRY(mb_cpu_attn_check(d));
  const int H = d->heads, Dh = d->head_dim, nseg = ref_nseg(d);
  const size_t ld = (size_t)H * Dh, tokens = (size_t)d->batch * d->seqlen;
  const R_T scale = d->scale > 0 ? (R_T)d->scale : (R_T)(1.0 / sqrt((double)Dh));
  memset(out, 0, tokens * ld * sizeof(R_T));
  /* One (sequence, head) after another, as an unfused framework would run it:
   * each GEMM is one big BLAS call (threaded by the BLAS itself), the softmax
   * is an OpenMP loop over rows. */
  for (int s = 0; s < nseg; s++) {
    for (int h = 0; h < H; h++) {
      int start, n;
      const int32_t *mask;
      ref_segment(d, s, &start, &n, &mask);
      if (n == 0)
        continue;
      R_T *Ph = P + ref_P_offset(d, s) + (size_t)h * n * n;
      const size_t off = (size_t)start * ld + (size_t)h * Dh;
      /* S = scale * Q K^T, the full n x n matrix */
      R_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, Dh, scale, q + off, (int)ld, k + off, (int)ld, 0, Ph, n);
#pragma omp parallel for schedule(static) num_threads(ref_threads(d->nthreads))
      for (int i = 0; i < n; i++) {
        R_T *row = Ph + (size_t)i * n;
        if (mask && !mask[i]) { /* padded query: no output */
          memset(row, 0, (size_t)n * sizeof(R_T));
          continue;
        }
        R_T mx = -INFINITY;
        for (int j = 0; j < n; j++) {
          if ((mask && !mask[j]) || (d->causal && j > i))
            row[j] = -INFINITY;
          if (row[j] > mx)
            mx = row[j];
        }
        if (mx == -INFINITY) {
          memset(row, 0, (size_t)n * sizeof(R_T));
          continue;
        }
        R_T sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < n; j++) {
          row[j] = R_EXP(row[j] - mx);
          sum += row[j];
        }
        for (int j = 0; j < n; j++)
          row[j] /= sum;
      }
      /* O = P V */
      R_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, Dh, n, 1, Ph, n, v + off, (int)ld, 0, out + off, (int)ld);
    }
  }
  return MB_OK;
}

int R_FN(ref_attn_bwd)(const mb_attn_desc *d, const R_T *q, const R_T *k, const R_T *v, const R_T *P,
                       const R_T *dout, R_T *dq, R_T *dk, R_T *dv) {
  MB_TRY(mb_cpu_attn_check(d));
  const int H = d->heads, Dh = d->head_dim, nseg = ref_nseg(d), nt = ref_threads(d->nthreads);
  const size_t ld = (size_t)H * Dh, tokens = (size_t)d->batch * d->seqlen;
  const R_T scale = d->scale > 0 ? (R_T)d->scale : (R_T)(1.0 / sqrt((double)Dh));
  memset(dq, 0, tokens * ld * sizeof(R_T));
  memset(dk, 0, tokens * ld * sizeof(R_T));
  memset(dv, 0, tokens * ld * sizeof(R_T));
  int maxn = 0;
  for (int s = 0; s < nseg; s++) {
    int start, n;
    const int32_t *mask;
    ref_segment(d, s, &start, &n, &mask);
    if (n > maxn)
      maxn = n;
  }
  /* one n x n dP matrix, reused by every (sequence, head) in turn */
  R_T *dP = mb_host_malloc((size_t)maxn * maxn * sizeof(R_T) + 1);
  if (!dP)
    return MB_ERR(MB_ENOMEM, "reference attention backward: no memory for dP");
  for (int s = 0; s < nseg; s++) {
    for (int h = 0; h < H; h++) {
      int start, n;
      const int32_t *mask;
      ref_segment(d, s, &start, &n, &mask);
      if (n == 0)
        continue;
      const R_T *Ph = P + ref_P_offset(d, s) + (size_t)h * n * n;
      const size_t off = (size_t)start * ld + (size_t)h * Dh;
      /* dV = P^T dO, dP = dO V^T */
      R_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, n, Dh, n, 1, Ph, n, dout + off, (int)ld, 0, dv + off, (int)ld);
      R_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, Dh, 1, dout + off, (int)ld, v + off, (int)ld, 0, dP, n);
      /* softmax backward, textbook form: dS = P * (dP - sum_j P dP) */
#pragma omp parallel for schedule(static) num_threads(nt)
      for (int i = 0; i < n; i++) {
        const R_T *pr = Ph + (size_t)i * n;
        R_T *gr = dP + (size_t)i * n, dot = 0;
        for (int j = 0; j < n; j++)
          dot += pr[j] * gr[j];
        for (int j = 0; j < n; j++)
          gr[j] = pr[j] * (gr[j] - dot);
      }
      R_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, Dh, n, scale, dP, n, k + off, (int)ld, 0, dq + off,
             (int)ld);
      R_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, n, Dh, n, scale, dP, n, q + off, (int)ld, 0, dk + off,
             (int)ld);
    }
  }
  mb_host_free(dP);
  return MB_OK;
}

/* ---- selective scan ------------------------------------------------------ */

static R_T R_FN(ref_softplus)(R_T x) { return x > 20 ? x : R_LOG1P(R_EXP(x)); }
static R_T R_FN(ref_sigmoid)(R_T x) { return 1 / (1 + R_EXP(-x)); }

int R_FN(ref_scan_fwd)(const mb_scan_desc *d, const R_CAT(mb_scan_in, R_SFX) * in, R_T *y, R_T *hall) {
  MB_TRY(mb_cpu_scan_check(d));
  const int B = d->batch, L = d->seqlen, D = d->dim, N = d->dstate;
#pragma omp parallel for collapse(2) schedule(static) num_threads(ref_threads(d->nthreads))
  for (int b = 0; b < B; b++) {
    for (int c = 0; c < D; c++) {
      for (int t = 0; t < L; t++) {
        const size_t x = ((size_t)b * L + t) * D + c;
        R_T *h = hall + x * N;
        if (ref_scan_is_pad(d, t)) {
          y[x] = 0;
          memset(h, 0, (size_t)N * sizeof(R_T));
          continue;
        }
        const R_T *hprev = ref_scan_starts(d, t) ? NULL : h - (size_t)D * N;
        R_T dt = in->delta[x] + (in->delta_bias ? in->delta_bias[c] : 0);
        if (d->delta_softplus)
          dt = R_FN(ref_softplus)(dt);
        const R_T *Bt = in->B + ((size_t)b * L + t) * N, *Ct = in->C + ((size_t)b * L + t) * N;
        R_T acc = 0;
        for (int n = 0; n < N; n++) {
          const R_T A = -R_EXP(in->A_log[(size_t)c * N + n]);
          const R_T deltaA = R_EXP(dt * A), deltaB_u = dt * Bt[n] * in->u[x];
          h[n] = deltaA * (hprev ? hprev[n] : 0) + deltaB_u;
          acc += h[n] * Ct[n];
        }
        R_T out = acc + (in->D ? in->u[x] * in->D[c] : 0);
        if (in->z)
          out *= in->z[x] * R_FN(ref_sigmoid)(in->z[x]);
        y[x] = out;
      }
    }
  }
  return MB_OK;
}

int R_FN(ref_scan_bwd)(const mb_scan_desc *d, const R_CAT(mb_scan_in, R_SFX) * in, const R_T *hall, const R_T *dy,
                       const R_CAT(mb_scan_grad, R_SFX) * g) {
  MB_TRY(mb_cpu_scan_check(d));
  const int B = d->batch, L = d->seqlen, D = d->dim, N = d->dstate, nt = ref_threads(d->nthreads);
  if (N > 64)
    return MB_ERR(MB_EINVAL, "reference scan backward: dstate %d > 64", N);
  /* per-channel contributions to dB/dC, summed over channels afterwards */
  R_T *gB = mb_host_calloc((size_t)B * L * D * N * sizeof(R_T) + 1);
  R_T *gC = mb_host_calloc((size_t)B * L * D * N * sizeof(R_T) + 1);
  if (!gB || !gC) {
    mb_host_free(gB);
    mb_host_free(gC);
    return MB_ERR(MB_ENOMEM, "reference scan backward: no memory");
  }
  if (g->dA_log)
    memset(g->dA_log, 0, (size_t)D * N * sizeof(R_T));
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int c = 0; c < D; c++) {
    R_T gD = 0, gbias = 0;
    for (int b = 0; b < B; b++) {
      R_T dh[64] = {0}; /* tests and bench use N <= 64 */
      for (int t = L - 1; t >= 0; t--) {
        const size_t x = ((size_t)b * L + t) * D + c, tok = (size_t)b * L + t;
        if (ref_scan_is_pad(d, t)) {
          if (g->du)
            g->du[x] = 0;
          if (g->ddelta)
            g->ddelta[x] = 0;
          if (g->dz)
            g->dz[x] = 0;
          continue;
        }
        const R_T *h = hall + x * N;
        const R_T *hprev = ref_scan_starts(d, t) ? NULL : h - (size_t)D * N;
        const R_T raw = in->delta[x] + (in->delta_bias ? in->delta_bias[c] : 0);
        const R_T dt = d->delta_softplus ? R_FN(ref_softplus)(raw) : raw;
        const R_T *Bt = in->B + tok * N, *Ct = in->C + tok * N;
        R_T gy = dy[x];
        if (in->z) {
          R_T ypre = in->D ? in->u[x] * in->D[c] : 0;
          for (int n = 0; n < N; n++)
            ypre += h[n] * Ct[n];
          const R_T sg = R_FN(ref_sigmoid)(in->z[x]);
          if (g->dz)
            g->dz[x] = gy * ypre * (sg + in->z[x] * sg * (1 - sg));
          gy *= in->z[x] * sg;
        }
        R_T gu = in->D ? gy * in->D[c] : 0, gdt = 0;
        gD += gy * in->u[x];
        for (int n = 0; n < N; n++) {
          const R_T A = -R_EXP(in->A_log[(size_t)c * N + n]), a = R_EXP(dt * A);
          const R_T hp = hprev ? hprev[n] : 0;
          const R_T gh = dh[n] + gy * Ct[n];
          gC[x * N + n] = gy * h[n];
          gB[x * N + n] = gh * dt * in->u[x];
          gu += gh * dt * Bt[n];
          gdt += gh * (a * A * hp + Bt[n] * in->u[x]);
          if (g->dA_log)
            g->dA_log[(size_t)c * N + n] += gh * a * dt * hp * A;
          dh[n] = hprev ? gh * a : 0;
        }
        if (d->delta_softplus && raw <= 20)
          gdt *= R_FN(ref_sigmoid)(raw);
        gbias += gdt;
        if (g->du)
          g->du[x] = gu;
        if (g->ddelta)
          g->ddelta[x] = gdt;
      }
    }
    if (g->dD)
      g->dD[c] = gD;
    if (g->ddelta_bias)
      g->ddelta_bias[c] = gbias;
  }
#pragma omp parallel for schedule(static) num_threads(nt)
  for (long tok = 0; tok < (long)B * L; tok++) {
    for (int n = 0; n < N; n++) {
      R_T sb = 0, sc = 0;
      for (int c = 0; c < D; c++) {
        sb += gB[((size_t)tok * D + c) * N + n];
        sc += gC[((size_t)tok * D + c) * N + n];
      }
      if (g->dB)
        g->dB[(size_t)tok * N + n] = sb;
      if (g->dC)
        g->dC[(size_t)tok * N + n] = sc;
    }
  }
  mb_host_free(gB);
  mb_host_free(gC);
  return MB_OK;
}

/* ---- conv1d ---------------------------------------------------------------- */

int R_FN(ref_conv1d_fwd)(const mb_conv1d_desc *d, const R_T *x, const R_T *w, const R_T *bias, R_T *y) {
  MB_TRY(mb_cpu_conv1d_check(d));
  const int D = d->dim, W = d->width;
  const long tokens = (long)d->batch * d->seqlen;
#pragma omp parallel for schedule(static) num_threads(ref_threads(d->nthreads))
  for (long r = 0; r < tokens; r++) {
    long first; /* first token of r's sequence, -1 for padding */
    ref_conv_seq(d, r, &first);
    for (int c = 0; c < D; c++) {
      if (first < 0) {
        y[r * D + c] = 0;
        continue;
      }
      R_T acc = bias ? bias[c] : 0;
      for (int k = 0; k < W; k++) {
        const long src = r - (W - 1) + k;
        if (src >= first)
          acc += w[(size_t)c * W + k] * x[src * D + c];
      }
      y[r * D + c] = d->silu ? acc * R_FN(ref_sigmoid)(acc) : acc;
    }
  }
  return MB_OK;
}

#undef R_CAT_
#undef R_CAT
#undef R_FN
