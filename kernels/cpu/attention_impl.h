/* attention_impl.h: the attention kernels for one element type. Included by
 * attention.c with ATT_T (float or double), ATT_SFX (f32, f64), ATT_GEMM
 * (cblas_sgemm, cblas_dgemm), ATT_EXP and ATT_LOG defined; nothing else
 * includes it. Notation: a sequence g has g->n tokens starting at token
 * g->start; ld = H*Dh is the distance between consecutive tokens' rows, so
 * head h of tokens i0.. is the matrix at X + (start+i0)*ld + h*Dh with
 * leading dimension ld, which CBLAS takes directly.
 */
#ifndef ATT_CAT
#define ATT_CAT_(a, b) a##_##b
#define ATT_CAT(a, b) ATT_CAT_(a, b)
#endif
#define ATT_FN(name) ATT_CAT(name, ATT_SFX)

/* Online softmax: fold one nq x nk tile of scores S into each row's running
 * max m and sum l of exp(s - m), and turn S into the tile's unnormalised
 * probabilities exp(s - m). When a row's max grows from m to m', its old sum
 * and its output accumulator acc (nq x Dh) were computed against m and are
 * rescaled by exp(m - m'). Hidden scores are -inf and give exp = 0 exactly. */
MB_VEC_CLONES
static void ATT_FN(attn_online_softmax)(ATT_T *S, int nq, int nk, ATT_T *m, ATT_T *l, ATT_T *acc, int Dh) {
  for (int r = 0; r < nq; r++) {
    ATT_T *sr = S + (size_t)r * nk;
    ATT_T mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int c = 0; c < nk; c++)
      mx = sr[c] > mx ? sr[c] : mx;
    const ATT_T mnew = m[r] > mx ? m[r] : mx;
    if (mnew == -INFINITY) { /* nothing visible to this row yet: it adds nothing */
      /* unless a score is NaN, which the max skips: then the row's out and
       * lse become NaN, as in PyTorch, not a silent 0 (NaN stays: later
       * tiles' corr = exp(NaN - m') is NaN) */
      int nan = 0;
      for (int c = 0; c < nk; c++)
        nan |= sr[c] != sr[c];
      if (nan)
        m[r] = l[r] = NAN;
      memset(sr, 0, (size_t)nk * sizeof(ATT_T));
      continue;
    }
    const ATT_T corr = ATT_EXP(m[r] - mnew); /* 0 on the row's first visible tile */
    ATT_T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int c = 0; c < nk; c++) {
      sr[c] = ATT_EXP(sr[c] - mnew);
      sum += sr[c];
    }
    l[r] = l[r] * corr + sum;
    if (corr != 1) {
      ATT_T *ar = acc + (size_t)r * Dh;
#pragma omp simd
      for (int e = 0; e < Dh; e++)
        ar[e] *= corr;
    }
    m[r] = mnew;
  }
}

/* Backward helpers. P = exp(S - lse) row by row (lse of row r at
 * lse[r * stride]); then dS = P * (dP - D) in place of dP. */
MB_VEC_CLONES
static void ATT_FN(attn_probs)(ATT_T *P, int nq, int nk, const ATT_T *lse, size_t stride) {
  for (int r = 0; r < nq; r++) {
    ATT_T *pr = P + (size_t)r * nk;
    const ATT_T lr = lse[(size_t)r * stride];
#pragma omp simd
    for (int c = 0; c < nk; c++)
      pr[c] = ATT_EXP(pr[c] - lr);
  }
}

MB_VEC_CLONES
static void ATT_FN(attn_dsoftmax)(const ATT_T *P, ATT_T *dS, int nq, int nk, const ATT_T *Dsum, size_t stride) {
  for (int r = 0; r < nq; r++) {
    const ATT_T *pr = P + (size_t)r * nk, Dr = Dsum[(size_t)r * stride];
    ATT_T *sr = dS + (size_t)r * nk;
#pragma omp simd
    for (int c = 0; c < nk; c++)
      sr[c] = pr[c] * (sr[c] - Dr);
  }
}

/* One query tile (rows i0 .. i0+nq-1 of sequence g, head h) against all the
 * keys it can see, with the online softmax. S (nq x bk), acc (nq x Dh), m, l
 * (nq) are this thread's scratch. */
static void ATT_FN(attn_fwd_tile)(const mb_attn_desc *d, const mb_attn_seg *g, int h, int i0, int nq, int bk,
                                  ATT_T scale, const ATT_T *q, const ATT_T *k, const ATT_T *v, ATT_T *out,
                                  ATT_T *lse, ATT_T *S, ATT_T *acc, ATT_T *m, ATT_T *l) {
  const int H = d->heads, Dh = d->head_dim;
  const size_t ld = (size_t)H * Dh;
  const ATT_T *Qi = q + (size_t)(g->start + i0) * ld + (size_t)h * Dh;
  for (int r = 0; r < nq; r++) {
    m[r] = -INFINITY;
    l[r] = 0;
  }
  memset(acc, 0, (size_t)nq * Dh * sizeof(ATT_T));

  /* Causal: no query of this tile sees a key past its last query. */
  int kend = g->valid;
  if (d->causal && i0 + nq < kend)
    kend = i0 + nq;
  for (int j0 = 0; j0 < kend; j0 += bk) {
    const int nk = bk < kend - j0 ? bk : kend - j0;
    const ATT_T *Kj = k + (size_t)(g->start + j0) * ld + (size_t)h * Dh;
    const ATT_T *Vj = v + (size_t)(g->start + j0) * ld + (size_t)h * Dh;

    /* S = scale * Qi Kj^T, an nq x nk tile */
    ATT_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, Dh, scale, Qi, (int)ld, Kj, (int)ld, 0, S, nk);

    if (attn_tile_masked(d, g, i0, nq, j0, nk)) /* padding or the causal diagonal in this tile */
      for (int r = 0; r < nq; r++)
        for (int c = 0; c < nk; c++)
          if (attn_hidden(d, g, i0 + r, j0 + c))
            S[(size_t)r * nk + c] = -INFINITY;
    ATT_FN(attn_online_softmax)(S, nq, nk, m, l, acc, Dh);
    /* acc += P Vj */
    ATT_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, Dh, nk, 1, S, nk, Vj, (int)ld, 1, acc, Dh);
  }

  /* out = acc / l, lse = m + log(l). Rows that saw no key, and padded query
   * rows, keep the 0 / +inf written before. */
  for (int r = 0; r < nq; r++) {
    const int qpos = i0 + r;
    if (l[r] == 0 || (g->mask && !g->mask[qpos]))
      continue;
    const size_t tok = (size_t)(g->start + qpos);
    const ATT_T inv = 1 / l[r];
    ATT_T *orow = out + tok * ld + (size_t)h * Dh;
    const ATT_T *ar = acc + (size_t)r * Dh;
    for (int e = 0; e < Dh; e++)
      orow[e] = ar[e] * inv;
    lse[tok * H + h] = m[r] + ATT_LOG(l[r]);
  }
}

int ATT_FN(mb_cpu_attn_fwd)(const mb_attn_desc *d, const ATT_T *q, const ATT_T *k, const ATT_T *v, ATT_T *out,
                            ATT_T *lse, void *workspace, size_t workspace_bytes) {
  MB_TRY(mb_cpu_attn_check(d));
  const int H = d->heads, Dh = d->head_dim;
  const size_t ld = (size_t)H * Dh, tokens = (size_t)d->batch * d->seqlen, es = sizeof(ATT_T);
  if (tokens == 0)
    return MB_OK;
  if (!q || !k || !v || !out || !lse)
    return MB_ERR(MB_EINVAL, "attention forward: NULL q, k, v, out or lse");
  const ATT_T scale = d->scale > 0 ? (ATT_T)d->scale : (ATT_T)(1.0 / sqrt((double)Dh));
  int bq, bk;
  mb_attn_tiles(d, 0, &bq, &bk);
  const int nt = mb_attn_threads(d);
  const size_t per_thread = mb_attn_fwd_thread_bytes(d, es);
  void *owned;
  MB_TRY(attn_workspace("forward", (size_t)nt * per_thread, &workspace, workspace_bytes, &owned));

  /* Padding (masked rows, the varlen budget's tail) reads out = 0, lse = +inf. */
#pragma omp parallel for num_threads(nt) schedule(static)
  for (size_t t = 0; t < tokens; t++) {
    memset(out + t * ld, 0, ld * es);
    for (int h = 0; h < H; h++)
      lse[t * H + h] = INFINITY;
  }

  /* Work items are (sequence, head, query tile), flattened so sequences of
   * different lengths share one dynamic schedule. */
  const long nseg = mb_attn_nseg(d), ntiles = (mb_attn_max_len(d) + bq - 1) / bq;
  const long nitems = nseg * H * ntiles;
#pragma omp parallel num_threads(nt)
  {
    unsigned char *mine = (unsigned char *)workspace + (size_t)omp_get_thread_num() * per_thread;
    ATT_T *S = (ATT_T *)mine;
    ATT_T *acc = (ATT_T *)(mine + aligned((size_t)bq * bk * es));
    ATT_T *m = (ATT_T *)((unsigned char *)acc + aligned((size_t)bq * Dh * es));
    ATT_T *l = (ATT_T *)((unsigned char *)m + aligned((size_t)bq * es));
#pragma omp for schedule(dynamic)
    for (long it = 0; it < nitems; it++) {
      const int s = (int)(it / (H * ntiles)), h = (int)(it / ntiles % H), i0 = (int)(it % ntiles) * bq;
      mb_attn_seg g;
      mb_attn_segment(d, s, &g);
      if (i0 >= g.valid)
        continue;
      const int nq = bq < g.valid - i0 ? bq : g.valid - i0;
      ATT_FN(attn_fwd_tile)(d, &g, h, i0, nq, bk, scale, q, k, v, out, lse, S, acc, m, l);
    }
  }
  mb_host_free(owned);
  return MB_OK;
}

/* The backward of one (sequence, head): key tiles outer, so this thread owns
 * dK_j and dV_j while it sweeps the query tiles; dQ of this head is only ever
 * touched by this thread too, so nothing needs atomics. */
static void ATT_FN(attn_bwd_head)(const mb_attn_desc *d, const mb_attn_seg *g, int h, int bq, int bk, ATT_T scale,
                                  const ATT_T *q, const ATT_T *k, const ATT_T *v, const ATT_T *lse,
                                  const ATT_T *Dsum, const ATT_T *dout, ATT_T *dq, ATT_T *dk, ATT_T *dv, ATT_T *P,
                                  ATT_T *dS) {
  const int H = d->heads, Dh = d->head_dim;
  const size_t ld = (size_t)H * Dh, off = (size_t)g->start * ld + (size_t)h * Dh;
  for (int j0 = 0; j0 < g->valid; j0 += bk) {
    const int nk = bk < g->valid - j0 ? bk : g->valid - j0;
    const size_t koff = off + (size_t)j0 * ld;
    /* Causal: query tiles entirely before key j0 see none of these keys. */
    const int istart = d->causal ? j0 / bq * bq : 0;
    for (int i0 = istart; i0 < g->valid; i0 += bq) {
      const int nq = bq < g->valid - i0 ? bq : g->valid - i0;
      const size_t qoff = off + (size_t)i0 * ld;

      /* P = exp(scale * Qi Kj^T - lse): the forward's probabilities, exactly
       * as normalised there, recomputed instead of stored. */
      ATT_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, Dh, scale, q + qoff, (int)ld, k + koff, (int)ld, 0,
               P, nk);
      ATT_FN(attn_probs)(P, nq, nk, lse + (size_t)(g->start + i0) * H + h, (size_t)H);
      if (attn_tile_masked(d, g, i0, nq, j0, nk))
        for (int r = 0; r < nq; r++) {
          const int qpos = i0 + r;
          ATT_T *pr = P + (size_t)r * nk;
          for (int c = 0; c < nk; c++) /* padded query rows and hidden keys: no gradient flows */
            if ((g->mask && !g->mask[qpos]) || attn_hidden(d, g, qpos, j0 + c))
              pr[c] = 0;
        }
      /* dVj += P^T dOi */
      ATT_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, nk, Dh, nq, 1, P, nk, dout + qoff, (int)ld, 1, dv + koff,
               (int)ld);
      /* dP = dOi Vj^T, then dS = P * (dP - D) in place (softmax backward
       * with D = rowsum(dO * O) = rowsum(P * dP)) */
      ATT_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, Dh, 1, dout + qoff, (int)ld, v + koff, (int)ld, 0,
               dS, nk);
      ATT_FN(attn_dsoftmax)(P, dS, nq, nk, Dsum + (size_t)(g->start + i0) * H + h, (size_t)H);
      /* S = scale * Q K^T, so dQi += scale * dS Kj and dKj += scale * dS^T Qi */
      ATT_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, Dh, nk, scale, dS, nk, k + koff, (int)ld, 1, dq + qoff,
               (int)ld);
      ATT_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, nk, Dh, nq, scale, dS, nk, q + qoff, (int)ld, 1, dk + koff,
               (int)ld);
    }
  }
}

int ATT_FN(mb_cpu_attn_bwd)(const mb_attn_desc *d, const ATT_T *q, const ATT_T *k, const ATT_T *v,
                            const ATT_T *out, const ATT_T *lse, const ATT_T *dout, ATT_T *dq, ATT_T *dk, ATT_T *dv,
                            void *workspace, size_t workspace_bytes) {
  MB_TRY(mb_cpu_attn_check(d));
  const int H = d->heads, Dh = d->head_dim;
  const size_t ld = (size_t)H * Dh, tokens = (size_t)d->batch * d->seqlen, es = sizeof(ATT_T);
  if (tokens == 0)
    return MB_OK;
  if (!q || !k || !v || !out || !lse || !dout || !dq || !dk || !dv)
    return MB_ERR(MB_EINVAL, "attention backward: NULL input or gradient pointer");
  const ATT_T scale = d->scale > 0 ? (ATT_T)d->scale : (ATT_T)(1.0 / sqrt((double)Dh));
  int bq, bk;
  mb_attn_tiles(d, 1, &bq, &bk);
  const int nt = mb_attn_threads(d);
  const size_t per_thread = mb_attn_bwd_thread_bytes(d, es), dbytes = aligned(tokens * H * es);
  void *owned;
  MB_TRY(attn_workspace("backward", dbytes + (size_t)nt * per_thread, &workspace, workspace_bytes, &owned));
  ATT_T *Dsum = (ATT_T *)workspace;

  /* Zero the gradients (padding keeps the zeros) and form D = rowsum(dO * O)
   * per (token, head): O(L) memory, read by every key tile. */
#pragma omp parallel for num_threads(nt) schedule(static)
  for (size_t t = 0; t < tokens; t++) {
    memset(dq + t * ld, 0, ld * es);
    memset(dk + t * ld, 0, ld * es);
    memset(dv + t * ld, 0, ld * es);
    for (int h = 0; h < H; h++) {
      const ATT_T *o = out + t * ld + (size_t)h * Dh, *dO = dout + t * ld + (size_t)h * Dh;
      ATT_T s = 0;
      for (int e = 0; e < Dh; e++)
        s += o[e] * dO[e];
      Dsum[t * H + h] = s;
    }
  }

  const long nitems = (long)mb_attn_nseg(d) * H;
#pragma omp parallel num_threads(nt)
  {
    unsigned char *mine = (unsigned char *)workspace + dbytes + (size_t)omp_get_thread_num() * per_thread;
    ATT_T *P = (ATT_T *)mine;
    ATT_T *dS = (ATT_T *)(mine + aligned((size_t)bq * bk * es));
#pragma omp for schedule(dynamic)
    for (long it = 0; it < nitems; it++) {
      mb_attn_seg g;
      mb_attn_segment(d, (int)(it / H), &g);
      ATT_FN(attn_bwd_head)(d, &g, (int)(it % H), bq, bk, scale, q, k, v, lse, Dsum, dout, dq, dk, dv, P, dS);
    }
  }
  mb_host_free(owned);
  return MB_OK;
}

#undef ATT_FN
