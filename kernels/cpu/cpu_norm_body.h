/* cpu_norm_body.h: LayerNorm, RMSNorm and softmax over the last dimension,
 * forward and backward, for one element type (T, SFX and EXP set by
 * cpu_norm.c). Row statistics accumulate in double. Weight/bias gradients
 * are summed over rows in MB_NORM_CHUNKS fixed chunks (partials in the
 * planned workspace) and then in order, so results do not depend on the
 * thread count. The per-row work is in MB_VEC_CLONES functions whose loops
 * are `omp simd` (reductions included): the widest vectors the CPU has,
 * where -O2 alone would leave these loops scalar. */

#define FN(name) MB_CAT(name, SFX)

static void FN(row_shape)(const mb_tensor *x, int64_t *rows, int64_t *H) {
  *H = x->shape.ndim ? x->shape.dim[x->shape.ndim - 1] : 1;
  *rows = mb_tensor_numel(x) / (*H ? *H : 1);
}

/* out[i] = the sum over chunks c, in order, of part[c * stride + i]. */
static void FN(sum_partials)(const double *part, int64_t nch, int64_t stride, int64_t H, T *out) {
  for (int64_t i = 0; i < H; i++) {
    double acc = 0;
    for (int64_t c = 0; c < nch; c++)
      acc += part[c * stride + i];
    out[i] = (T)acc;
  }
}

MB_VEC_CLONES
static void FN(layernorm_row)(const T *xr, const T *w, const T *b, T *yr, T *mean, T *rstd, int64_t H, double eps) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < H; i++)
    s += (double)xr[i];
  const double mu = s / (double)H;
  double v = 0;
#pragma omp simd reduction(+ : v)
  for (int64_t i = 0; i < H; i++) {
    const double d = (double)xr[i] - mu;
    v += d * d;
  }
  const T m = (T)mu, rs = (T)(1.0 / sqrt(v / (double)H + eps));
#pragma omp simd
  for (int64_t i = 0; i < H; i++)
    yr[i] = (xr[i] - m) * rs * w[i] + b[i];
  *mean = m;
  *rstd = rs;
}

static int FN(layernorm)(const mb_kernel_call *k) {
  const T *x = k->in[0].data, *w = k->in[1].data, *b = k->in[2].data;
  T *y = k->out[0].data, *mean = k->out[1].data, *rstd = k->out[2].data;
  const double eps = k->node->attr.f[0];
  int64_t rows, H;
  FN(row_shape)(&k->in[0], &rows, &H);
  MB_PAR_FOR(rows > MB_CPU_PAR_ROWS && rows * H > MB_CPU_PAR_ELEMS,
    for (int64_t r = 0; r < rows; r++)
      FN(layernorm_row)(x + r * H, w, b, y + r * H, mean + r, rstd + r, H, eps););
  return MB_OK;
}

/* One row of LayerNorm's backward: dx, and the row's share of dw, db added
 * into the chunk's partials pw, pb. */
MB_VEC_CLONES
static void FN(layernorm_grad_row)(const T *xr, const T *gr, const T *w, T m, T rs, T *dr, double *pw, double *pb,
                                   int64_t H) {
  double c1 = 0, c2 = 0;
#pragma omp simd reduction(+ : c1, c2)
  for (int64_t i = 0; i < H; i++) {
    const T xhat = (xr[i] - m) * rs, dxhat = gr[i] * w[i];
    c1 += (double)dxhat * (double)xhat;
    c2 += (double)dxhat;
    pw[i] += (double)gr[i] * (double)xhat;
    pb[i] += (double)gr[i];
  }
  const T a1 = (T)(c1 / (double)H), a2 = (T)(c2 / (double)H);
#pragma omp simd
  for (int64_t i = 0; i < H; i++) {
    const T xhat = (xr[i] - m) * rs;
    dr[i] = rs * (gr[i] * w[i] - a2 - xhat * a1);
  }
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
      memset(pw, 0, (size_t)(2 * H) * sizeof(double));
      for (int64_t r = r0; r < r1; r++)
        FN(layernorm_grad_row)(x + r * H, gy + r * H, w, mean[r], rstd[r], dx + r * H, pw, pb, H);
    });
  FN(sum_partials)(part, nch, 2 * H, H, dw);
  FN(sum_partials)(part + H, nch, 2 * H, H, db);
  return MB_OK;
}

MB_VEC_CLONES
static void FN(rmsnorm_row)(const T *xr, const T *w, T *yr, T *rstd, int64_t H, double eps) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < H; i++)
    s += (double)xr[i] * (double)xr[i];
  const T rs = (T)(1.0 / sqrt(s / (double)H + eps));
  /* x * rstd first, then the weight, as HF and mamba_ssm do. */
#pragma omp simd
  for (int64_t i = 0; i < H; i++)
    yr[i] = (xr[i] * rs) * w[i];
  *rstd = rs;
}

static int FN(rmsnorm)(const mb_kernel_call *k) {
  const T *x = k->in[0].data, *w = k->in[1].data;
  T *y = k->out[0].data, *rstd = k->out[1].data;
  const double eps = k->node->attr.f[0];
  int64_t rows, H;
  FN(row_shape)(&k->in[0], &rows, &H);
  MB_PAR_FOR(rows > MB_CPU_PAR_ROWS && rows * H > MB_CPU_PAR_ELEMS,
    for (int64_t r = 0; r < rows; r++)
      FN(rmsnorm_row)(x + r * H, w, y + r * H, rstd + r, H, eps););
  return MB_OK;
}

MB_VEC_CLONES
static void FN(rmsnorm_grad_row)(const T *xr, const T *gr, const T *w, T rs, T *dr, double *pw, int64_t H) {
  double c1 = 0;
#pragma omp simd reduction(+ : c1)
  for (int64_t i = 0; i < H; i++) {
    const T xhat = xr[i] * rs;
    c1 += (double)(gr[i] * w[i]) * (double)xhat;
    pw[i] += (double)gr[i] * (double)xhat;
  }
  const T a1 = (T)(c1 / (double)H);
#pragma omp simd
  for (int64_t i = 0; i < H; i++)
    dr[i] = rs * (gr[i] * w[i] - xr[i] * rs * a1);
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
      memset(pw, 0, (size_t)H * sizeof(double));
      for (int64_t r = r0; r < r1; r++)
        FN(rmsnorm_grad_row)(x + r * H, gy + r * H, w, rstd[r], dx + r * H, pw, H);
    });
  FN(sum_partials)(part, nch, H, H, dw);
  return MB_OK;
}

MB_VEC_CLONES
static void FN(softmax_row)(const T *xr, T *yr, int64_t H) {
  T mx = xr[0];
#pragma omp simd reduction(max : mx)
  for (int64_t i = 0; i < H; i++)
    mx = xr[i] > mx ? xr[i] : mx;
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < H; i++) {
    yr[i] = EXP(xr[i] - mx);
    s += (double)yr[i];
  }
  const T inv = (T)(1.0 / s);
#pragma omp simd
  for (int64_t i = 0; i < H; i++)
    yr[i] *= inv;
}

static int FN(softmax)(const mb_kernel_call *k) {
  const T *x = k->in[0].data;
  T *y = k->out[0].data;
  int64_t rows, H;
  FN(row_shape)(&k->in[0], &rows, &H);
  MB_PAR_FOR(rows > MB_CPU_PAR_ROWS && rows * H > MB_CPU_PAR_ELEMS,
    for (int64_t r = 0; r < rows; r++)
      FN(softmax_row)(x + r * H, y + r * H, H););
  return MB_OK;
}

MB_VEC_CLONES
static void FN(softmax_grad_row)(const T *yr, const T *gr, T *dr, int64_t H) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < H; i++)
    s += (double)gr[i] * (double)yr[i];
  const T st = (T)s;
#pragma omp simd
  for (int64_t i = 0; i < H; i++)
    dr[i] = yr[i] * (gr[i] - st);
}

/* (y, gy) -> dx = y * (gy - sum(gy * y)) */
static int FN(softmax_grad)(const mb_kernel_call *k) {
  const T *y = k->in[0].data, *gy = k->in[1].data;
  T *dx = k->out[0].data;
  int64_t rows, H;
  FN(row_shape)(&k->in[0], &rows, &H);
  MB_PAR_FOR(rows > MB_CPU_PAR_ROWS && rows * H > MB_CPU_PAR_ELEMS,
    for (int64_t r = 0; r < rows; r++)
      FN(softmax_grad_row)(y + r * H, gy + r * H, dx + r * H, H););
  return MB_OK;
}

#undef FN
