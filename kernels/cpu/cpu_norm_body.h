/* cpu_norm_body.h: LayerNorm, RMSNorm and softmax over the last dimension,
 * forward and backward, for one element type (T, SFX, SQRT, EXP, LOG set by
 * cpu_norm.c). Row statistics accumulate in double. Weight/bias gradients
 * are summed over rows in MB_NORM_CHUNKS fixed chunks (partials in the
 * planned workspace) and then in order, so results do not depend on the
 * thread count. */

#define FN(name) MB_CAT(name, SFX)

static void FN(row_shape)(const mb_tensor *x, int64_t *rows, int64_t *H) {
  *H = x->shape.ndim ? x->shape.dim[x->shape.ndim - 1] : 1;
  *rows = mb_tensor_numel(x) / (*H ? *H : 1);
}

static int FN(layernorm)(const mb_kernel_call *k) {
  const T *x = k->in[0].data, *w = k->in[1].data, *b = k->in[2].data;
  T *y = k->out[0].data, *mean = k->out[1].data, *rstd = k->out[2].data;
  const double eps = k->node->attr.f[0];
  int64_t rows, H;
  FN(row_shape)(&k->in[0], &rows, &H);
  MB_PAR_FOR(rows > MB_CPU_PAR_ROWS && rows * H > MB_CPU_PAR_ELEMS,
    for (int64_t r = 0; r < rows; r++) {
      const T *xr = x + r * H;
      T *yr = y + r * H;
      double s = 0;
      for (int64_t i = 0; i < H; i++)
        s += (double)xr[i];
      double mu = s / (double)H, v = 0;
      for (int64_t i = 0; i < H; i++) {
        double d = (double)xr[i] - mu;
        v += d * d;
      }
      T m = (T)mu, rs = (T)(1.0 / sqrt(v / (double)H + eps));
      for (int64_t i = 0; i < H; i++)
        yr[i] = (xr[i] - m) * rs * w[i] + b[i];
      mean[r] = m;
      rstd[r] = rs;
    });
  return MB_OK;
}

/* (gy, x, w, mean, rstd) -> dx, dw, db */
static int FN(layernorm_grad)(const mb_kernel_call *k) {
  const T *gy = k->in[0].data, *x = k->in[1].data, *w = k->in[2].data, *mean = k->in[3].data, *rstd = k->in[4].data;
  T *dx = k->out[0].data, *dw = k->out[1].data, *db = k->out[2].data;
  int64_t rows, H;
  FN(row_shape)(&k->in[1], &rows, &H);
  int64_t nch = rows < MB_NORM_CHUNKS ? rows : MB_NORM_CHUNKS;
  double *part = k->workspace; /* [nch][2][H] */
  if (!part || k->workspace_bytes < (size_t)(nch * 2 * H) * sizeof(double))
    return MB_ERR(MB_EINTERNAL, "layernorm_grad: workspace of %zu bytes too small", k->workspace_bytes);
  MB_PAR_FOR(rows * H > MB_CPU_PAR_ELEMS,
    for (int64_t c = 0; c < nch; c++) {
      int64_t r0 = rows * c / nch, r1 = rows * (c + 1) / nch;
      double *pw = part + c * 2 * H, *pb = pw + H;
      for (int64_t i = 0; i < H; i++)
        pw[i] = pb[i] = 0;
      for (int64_t r = r0; r < r1; r++) {
        const T *xr = x + r * H, *gr = gy + r * H;
        T *dr = dx + r * H;
        const T m = mean[r], rs = rstd[r];
        double c1 = 0, c2 = 0;
        for (int64_t i = 0; i < H; i++) {
          T xhat = (xr[i] - m) * rs, dxhat = gr[i] * w[i];
          c1 += (double)dxhat * (double)xhat;
          c2 += (double)dxhat;
          pw[i] += (double)gr[i] * (double)xhat;
          pb[i] += (double)gr[i];
        }
        T a1 = (T)(c1 / (double)H), a2 = (T)(c2 / (double)H);
        for (int64_t i = 0; i < H; i++) {
          T xhat = (xr[i] - m) * rs;
          dr[i] = rs * (gr[i] * w[i] - a2 - xhat * a1);
        }
      }
    });
  for (int64_t i = 0; i < H; i++) {
    double sw = 0, sb = 0;
    for (int64_t c = 0; c < nch; c++) {
      sw += part[c * 2 * H + i];
      sb += part[c * 2 * H + H + i];
    }
    dw[i] = (T)sw;
    db[i] = (T)sb;
  }
  return MB_OK;
}

static int FN(rmsnorm)(const mb_kernel_call *k) {
  const T *x = k->in[0].data, *w = k->in[1].data;
  T *y = k->out[0].data, *rstd = k->out[1].data;
  const double eps = k->node->attr.f[0];
  int64_t rows, H;
  FN(row_shape)(&k->in[0], &rows, &H);
  MB_PAR_FOR(rows > MB_CPU_PAR_ROWS && rows * H > MB_CPU_PAR_ELEMS,
    for (int64_t r = 0; r < rows; r++) {
      const T *xr = x + r * H;
      T *yr = y + r * H;
      double s = 0;
      for (int64_t i = 0; i < H; i++)
        s += (double)xr[i] * (double)xr[i];
      T rs = (T)(1.0 / sqrt(s / (double)H + eps));
      /* x * rstd first, then the weight, as HF and mamba_ssm do. */
      for (int64_t i = 0; i < H; i++)
        yr[i] = (xr[i] * rs) * w[i];
      rstd[r] = rs;
    });
  return MB_OK;
}

/* (gy, x, w, rstd) -> dx, dw */
static int FN(rmsnorm_grad)(const mb_kernel_call *k) {
  const T *gy = k->in[0].data, *x = k->in[1].data, *w = k->in[2].data, *rstd = k->in[3].data;
  T *dx = k->out[0].data, *dw = k->out[1].data;
  int64_t rows, H;
  FN(row_shape)(&k->in[1], &rows, &H);
  int64_t nch = rows < MB_NORM_CHUNKS ? rows : MB_NORM_CHUNKS;
  double *part = k->workspace; /* [nch][H] */
  if (!part || k->workspace_bytes < (size_t)(nch * H) * sizeof(double))
    return MB_ERR(MB_EINTERNAL, "rmsnorm_grad: workspace of %zu bytes too small", k->workspace_bytes);
  MB_PAR_FOR(rows * H > MB_CPU_PAR_ELEMS,
    for (int64_t c = 0; c < nch; c++) {
      int64_t r0 = rows * c / nch, r1 = rows * (c + 1) / nch;
      double *pw = part + c * H;
      for (int64_t i = 0; i < H; i++)
        pw[i] = 0;
      for (int64_t r = r0; r < r1; r++) {
        const T *xr = x + r * H, *gr = gy + r * H;
        T *dr = dx + r * H;
        const T rs = rstd[r];
        double c1 = 0;
        for (int64_t i = 0; i < H; i++) {
          T xhat = xr[i] * rs;
          c1 += (double)(gr[i] * w[i]) * (double)xhat;
          pw[i] += (double)gr[i] * (double)xhat;
        }
        T a1 = (T)(c1 / (double)H);
        for (int64_t i = 0; i < H; i++)
          dr[i] = rs * (gr[i] * w[i] - xr[i] * rs * a1);
      }
    });
  for (int64_t i = 0; i < H; i++) {
    double sw = 0;
    for (int64_t c = 0; c < nch; c++)
      sw += part[c * H + i];
    dw[i] = (T)sw;
  }
  return MB_OK;
}

static int FN(softmax)(const mb_kernel_call *k) {
  const T *x = k->in[0].data;
  T *y = k->out[0].data;
  int64_t rows, H;
  FN(row_shape)(&k->in[0], &rows, &H);
  MB_PAR_FOR(rows > MB_CPU_PAR_ROWS && rows * H > MB_CPU_PAR_ELEMS,
    for (int64_t r = 0; r < rows; r++) {
      const T *xr = x + r * H;
      T *yr = y + r * H;
      T mx = xr[0];
      for (int64_t i = 1; i < H; i++)
        mx = xr[i] > mx ? xr[i] : mx;
      double s = 0;
      for (int64_t i = 0; i < H; i++) {
        yr[i] = EXP(xr[i] - mx);
        s += (double)yr[i];
      }
      T inv = (T)(1.0 / s);
      for (int64_t i = 0; i < H; i++)
        yr[i] *= inv;
    });
  return MB_OK;
}

/* (y, gy) -> dx = y * (gy - sum(gy * y)) */
static int FN(softmax_grad)(const mb_kernel_call *k) {
  const T *y = k->in[0].data, *gy = k->in[1].data;
  T *dx = k->out[0].data;
  int64_t rows, H;
  FN(row_shape)(&k->in[0], &rows, &H);
  MB_PAR_FOR(rows > MB_CPU_PAR_ROWS && rows * H > MB_CPU_PAR_ELEMS,
    for (int64_t r = 0; r < rows; r++) {
      const T *yr = y + r * H, *gr = gy + r * H;
      T *dr = dx + r * H;
      double s = 0;
      for (int64_t i = 0; i < H; i++)
        s += (double)gr[i] * (double)yr[i];
      T st = (T)s;
      for (int64_t i = 0; i < H; i++)
        dr[i] = yr[i] * (gr[i] - st);
    });
  return MB_OK;
}

#undef FN
