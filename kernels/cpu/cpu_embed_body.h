/* cpu_embed_body.h: embedding and mean pooling for one element type (T, SFX
 * and FN set by cpu_embed.c). */

/* (ids[...], table[V, H]) -> [..., H] */
static int FN(embedding)(const mb_kernel_call *k) {
  const T *table = k->in[1].data;
  T *y = k->out[0].data;
  int64_t V = k->in[1].shape.dim[0], H = k->in[1].shape.dim[1], n = mb_tensor_numel(&k->in[0]);
  MB_TRY(check_ids(&k->in[0], V));
  MB_PAR_FOR(n * H > MB_CPU_PAR_ELEMS,
    for (int64_t t = 0; t < n; t++)
      memcpy(y + t * H, table + id_at(&k->in[0], t) * H, (size_t)H * sizeof(T)););
  return MB_OK;
}

/* (ids, gy) -> dtable[V, H]: zero, then scatter-add rows. Threads split the
 * columns, each walking all tokens in order: no races, same result for any
 * thread count. */
static int FN(embedding_grad)(const mb_kernel_call *k) {
  const T *gy = k->in[1].data;
  T *dt = k->out[0].data;
  int64_t V = k->out[0].shape.dim[0], H = k->out[0].shape.dim[1], n = mb_tensor_numel(&k->in[0]);
  MB_TRY(check_ids(&k->in[0], V));
  memset(dt, 0, (size_t)(V * H) * sizeof(T));
  const int64_t cb = 64;
  int64_t nblk = (H + cb - 1) / cb;
  MB_PAR_FOR(n * H > MB_CPU_PAR_ELEMS && nblk > 1,
    for (int64_t b = 0; b < nblk; b++) {
      int64_t c0 = b * cb, c1 = c0 + cb < H ? c0 + cb : H;
      for (int64_t t = 0; t < n; t++) {
        T *row = dt + id_at(&k->in[0], t) * H;
        const T *g = gy + t * H;
        for (int64_t c = c0; c < c1; c++)
          row[c] += g[c];
      }
    });
  return MB_OK;
}

/* (x[B, L, H][, mask[B, L]]) -> [B, H] */
static int FN(mean_pool)(const mb_kernel_call *k) {
  const T *x = k->in[0].data;
  T *y = k->out[0].data;
  int64_t B = k->in[0].shape.dim[0], L = k->in[0].shape.dim[1], H = k->in[0].shape.dim[2];
  const mb_tensor *m = k->n_in == 2 ? &k->in[1] : NULL;
  MB_PAR_FOR(B * L * H > MB_CPU_PAR_ELEMS && B > 1,
    for (int64_t b = 0; b < B; b++) {
      T *yb = y + b * H;
      double cnt = 0;
      for (int64_t h = 0; h < H; h++)
        yb[h] = 0;
      for (int64_t l = 0; l < L; l++) {
        double w = m ? mask_at(m, b * L + l) : 1.0;
        if (w == 0.0)
          continue;
        cnt += w;
        const T *xr = x + (b * L + l) * H;
        for (int64_t h = 0; h < H; h++)
          yb[h] += (T)w * xr[h];
      }
      T inv = cnt != 0.0 ? (T)(1.0 / cnt) : (T)0;
      for (int64_t h = 0; h < H; h++)
        yb[h] *= inv;
    });
  return MB_OK;
}

/* (gy[B, H][, mask]) -> dx[B, L, H] = gy * mask / count */
static int FN(mean_pool_grad)(const mb_kernel_call *k) {
  const T *gy = k->in[0].data;
  T *dx = k->out[0].data;
  int64_t B = k->out[0].shape.dim[0], L = k->out[0].shape.dim[1], H = k->out[0].shape.dim[2];
  const mb_tensor *m = k->n_in == 2 ? &k->in[1] : NULL;
  MB_PAR_FOR(B * L * H > MB_CPU_PAR_ELEMS && B > 1,
    for (int64_t b = 0; b < B; b++) {
      double cnt = 0;
      for (int64_t l = 0; l < L; l++)
        cnt += m ? mask_at(m, b * L + l) : 1.0;
      T inv = cnt != 0.0 ? (T)(1.0 / cnt) : (T)0;
      for (int64_t l = 0; l < L; l++) {
        T w = (T)(m ? mask_at(m, b * L + l) : 1.0) * inv;
        T *dr = dx + (b * L + l) * H;
        const T *g = gy + b * H;
        for (int64_t h = 0; h < H; h++)
          dr[h] = w * g[h];
      }
    });
  return MB_OK;
}
