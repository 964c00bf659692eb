/* cpu_elementwise_body.h: elementwise kernels for one element type. Included
 * by cpu_elementwise.c once per type with T (the element type), SFX (f32 or
 * f64) and the math functions EXP, SOFTPLUS, GELU, GELU_GRAD, TANH defined. */

#define FN(name) MB_CAT(name, SFX)

/* The loops below run through MB_VEC_CLONES functions with `omp simd`: at
 * -O2 GCC vectorises a loop only when no scalar remainder is left, and the
 * clones give it the CPU's widest vectors (AVX2 / AVX-512) in the portable
 * build. Operands may be the output itself (in place): each lane reads its
 * element before it writes it. */

/* One contiguous run of y = f(a, b): op 0: alpha*a + beta*b, 1: a*b,
 * 2: alpha*a; sa, sb are the operands' strides along it (0: broadcast). */
MB_VEC_CLONES
static void FN(binary_run)(int op, T alpha, T beta, const T *pa, int64_t sa, const T *pb, int64_t sb, T *py,
                           int64_t len) {
  if (op == 0) {
    if (sa == 1 && sb == 1) {
#pragma omp simd
      for (int64_t i = 0; i < len; i++)
        py[i] = alpha * pa[i] + beta * pb[i];
    } else if (sa == 1 && sb == 0) {
      const T cb = beta * pb[0];
#pragma omp simd
      for (int64_t i = 0; i < len; i++)
        py[i] = alpha * pa[i] + cb;
    } else {
      for (int64_t i = 0; i < len; i++)
        py[i] = alpha * pa[i * sa] + beta * pb[i * sb];
    }
  } else if (op == 1) {
    if (sa == 1 && sb == 1) {
#pragma omp simd
      for (int64_t i = 0; i < len; i++)
        py[i] = pa[i] * pb[i];
    } else if (sa == 1 && sb == 0) {
      const T cb = pb[0];
#pragma omp simd
      for (int64_t i = 0; i < len; i++)
        py[i] = pa[i] * cb;
    } else {
      for (int64_t i = 0; i < len; i++)
        py[i] = pa[i * sa] * pb[i * sb];
    }
  } else if (sa == 1) {
#pragma omp simd
    for (int64_t i = 0; i < len; i++)
      py[i] = alpha * pa[i];
  } else {
    for (int64_t i = 0; i < len; i++)
      py[i] = alpha * pa[i * sa];
  }
}

/* y = f(a, b) over broadcast operands; op as in binary_run (2 is
 * broadcast_to: b unused). */
static int FN(binary)(const mb_kernel_call *k, int op, double alpha_d, double beta_d) {
  const T *a = k->in[0].data;
  const T *b = op == 2 ? a : k->in[1].data;
  T *y = k->out[0].data;
  const T alpha = (T)alpha_d, beta = (T)beta_d;
  const mb_shape *ops[2] = {&k->in[0].shape, op == 2 ? &k->in[0].shape : &k->in[1].shape};
  mb_bcast bc;
  mb_bcast_init(&bc, &k->out[0].shape, ops, 2);
  int64_t inner = bc.dim[bc.nd - 1], rows = mb_tensor_numel(&k->out[0]) / (inner ? inner : 1);
  int64_t sa = bc.stride[0][bc.nd - 1], sb = bc.stride[1][bc.nd - 1];
  const int64_t chunk = 8192;
  int64_t per_row = (inner + chunk - 1) / chunk, tasks = rows * per_row;
  MB_PAR_FOR(rows * inner > MB_CPU_PAR_ELEMS,
    for (int64_t t = 0; t < tasks; t++) {
      int64_t row = t / per_row, c0 = (t % per_row) * chunk;
      int64_t len = inner - c0 < chunk ? inner - c0 : chunk;
      int64_t off[2];
      mb_bcast_row(&bc, row, off);
      FN(binary_run)(op, alpha, beta, a + off[0] + c0 * sa, sa, b + off[1] + c0 * sb, sb, y + row * inner + c0, len);
    });
  return MB_OK;
}

MB_ALWAYS_INLINE static inline T FN(act)(int op, T x) {
  switch (op) {
  case MB_OP_RELU: return x > 0 ? x : (T)0;
  case MB_OP_GELU: return GELU(x);
  case MB_OP_TANH: return TANH(x);
  case MB_OP_SIGMOID: return (T)1 / ((T)1 + EXP(-x));
  case MB_OP_SILU: return x / ((T)1 + EXP(-x));
  case MB_OP_SOFTPLUS: return SOFTPLUS(x);
  case MB_OP_EXP: return EXP(x);
  default: return x;
  }
}

/* Derivative times the incoming gradient; s is the input x, or the output y
 * for the ops that save it (tanh, sigmoid, exp). */
MB_ALWAYS_INLINE static inline T FN(act_grad)(int op, T s, T gy) {
  switch (op) {
  case MB_OP_RELU: return s > 0 ? gy : (T)0;
  case MB_OP_GELU: return gy * GELU_GRAD(s);
  case MB_OP_TANH: return gy * ((T)1 - s * s);
  case MB_OP_SIGMOID: return gy * s * ((T)1 - s);
  case MB_OP_SILU: {
    T sg = (T)1 / ((T)1 + EXP(-s));
    return gy * sg * ((T)1 + s * ((T)1 - sg));
  }
  case MB_OP_SOFTPLUS: return s > (T)20 ? gy : gy / ((T)1 + EXP(-s)); /* sigmoid(s) */
  case MB_OP_EXP: return gy * s;
  default: return gy;
  }
}

static int FN(act_supported)(int op) {
  return op == MB_OP_RELU || op == MB_OP_GELU || op == MB_OP_TANH || op == MB_OP_SIGMOID || op == MB_OP_SILU ||
         op == MB_OP_SOFTPLUS || op == MB_OP_EXP;
}

/* One run of an activation (gy == NULL) or of its gradient; one loop per
 * op, the switch outside, so that each loop vectorises. */
MB_VEC_CLONES
static void FN(act_run)(int op, const T *x, const T *gy, T *y, int64_t n) {
#define ACT_LOOP(OP)                            \
  case OP:                                      \
    if (gy) {                                   \
      _Pragma("omp simd")                       \
      for (int64_t i = 0; i < n; i++)           \
        y[i] = FN(act_grad)(OP, x[i], gy[i]);   \
    } else {                                    \
      _Pragma("omp simd")                       \
      for (int64_t i = 0; i < n; i++)           \
        y[i] = FN(act)(OP, x[i]);               \
    }                                           \
    break;
  switch (op) {
    ACT_LOOP(MB_OP_RELU)
    ACT_LOOP(MB_OP_GELU)
    ACT_LOOP(MB_OP_TANH)
    ACT_LOOP(MB_OP_SIGMOID)
    ACT_LOOP(MB_OP_SILU)
    ACT_LOOP(MB_OP_SOFTPLUS)
    ACT_LOOP(MB_OP_EXP)
  default:
    break;
  }
#undef ACT_LOOP
}

/* act_run over n elements in fixed runs, in parallel when large. */
static void FN(act_all)(int op, const T *x, const T *gy, T *y, int64_t n) {
  const int64_t run = 16384, nruns = (n + run - 1) / run;
  MB_PAR_FOR(n > MB_CPU_PAR_ELEMS / 4,
    for (int64_t r = 0; r < nruns; r++) {
      const int64_t i0 = r * run, len = n - i0 < run ? n - i0 : run;
      FN(act_run)(op, x + i0, gy ? gy + i0 : NULL, y + i0, len);
    });
}

static int FN(unary)(const mb_kernel_call *k) {
  const T *x = k->in[0].data;
  T *y = k->out[0].data;
  int64_t n = mb_tensor_numel(&k->out[0]);
  int op = k->node->op;
  if (op == MB_OP_AFFINE) {
    const T s = (T)k->node->attr.f[0], b = (T)k->node->attr.f[1];
    MB_PAR_FOR(n > MB_CPU_PAR_ELEMS,
      for (int64_t i = 0; i < n; i++)
        y[i] = s * x[i] + b;);
    return MB_OK;
  }
  if (!FN(act_supported)(op))
    return mb_cpu_unsupported(k, 0);
  FN(act_all)(op, x, NULL, y, n);
  return MB_OK;
}

static int FN(act_grad_kernel)(const mb_kernel_call *k) {
  const T *s = k->in[0].data, *gy = k->in[1].data;
  T *gx = k->out[0].data;
  int64_t n = mb_tensor_numel(&k->out[0]);
  int op = (int)k->node->attr.i[0];
  if (!FN(act_supported)(op))
    return mb_cpu_unsupported(k, 0);
  FN(act_all)(op, s, gy, gx, n);
  return MB_OK;
}

MB_VEC_CLONES
static void FN(accumulate_run)(const T *g, T *y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++)
    y[i] += g[i];
}

static int FN(accumulate)(const mb_kernel_call *k) {
  const T *g = k->in[0].data;
  T *y = k->out[0].data;
  const int64_t n = mb_tensor_numel(&k->out[0]), run = 16384, nruns = (n + run - 1) / run;
  MB_PAR_FOR(n > MB_CPU_PAR_ELEMS,
    for (int64_t r = 0; r < nruns; r++) {
      const int64_t i0 = r * run;
      FN(accumulate_run)(g + i0, y + i0, n - i0 < run ? n - i0 : run);
    });
  return MB_OK;
}

/* acc[c] = sum over rows r0..r1-1 of x[r, c], for columns c0..c1-1 of a
 * [rows, K2] matrix, in double. */
MB_VEC_CLONES
static void FN(colsum_run)(const T *x, int64_t r0, int64_t r1, int64_t K2, int64_t c0, int64_t c1, double *acc) {
  for (int64_t c = c0; c < c1; c++)
    acc[c] = 0;
  for (int64_t r = r0; r < r1; r++) {
    const T *row = x + r * K2;
#pragma omp simd
    for (int64_t c = c0; c < c1; c++)
      acc[c] += (double)row[c];
  }
}

/* Sum over the dims in which out is broadcast to the input, times scale.
 * After merging, the input is a sequence of kept (K) and reduced (R) dims;
 * the common patterns [R], [R, K], [K, R], [K, R, K] get cache-friendly
 * loops, accumulating in double, deterministic for a given shape. */
static int FN(sum_to)(const mb_kernel_call *k) {
  const T *x = k->in[0].data;
  T *y = k->out[0].data;
  const T scale = (T)k->node->attr.f[0];
  const mb_shape *xs = &k->in[0].shape, *ys = &k->out[0].shape;
  int nd = xs->ndim;
  /* Group dims: kind 1 = reduced, 0 = kept; merge runs of the same kind. */
  int64_t gsize[MB_MAX_DIMS];
  int gkind[MB_MAX_DIMS], ng = 0;
  for (int d = 0; d < nd; d++) {
    int od = ys->ndim - nd + d;
    int64_t osz = od >= 0 ? ys->dim[od] : 1;
    if (xs->dim[d] == 1)
      continue;
    int kind = osz == 1 ? 1 : 0;
    if (ng > 0 && gkind[ng - 1] == kind)
      gsize[ng - 1] *= xs->dim[d];
    else {
      gsize[ng] = xs->dim[d];
      gkind[ng++] = kind;
    }
  }
  int64_t ny = mb_tensor_numel(&k->out[0]);
  if (ng == 0 || (ng == 1 && gkind[0] == 0)) { /* nothing reduced */
    for (int64_t i = 0; i < ny; i++)
      y[i] = scale * x[i];
    return MB_OK;
  }
  /* Shape the problem as [K1, R, K2] with K1 or K2 possibly 1. */
  int64_t K1 = 1, R = 1, K2 = 1;
  if (ng == 1) {
    R = gsize[0];
  } else if (ng == 2) {
    if (gkind[0] == 1)
      R = gsize[0], K2 = gsize[1];
    else
      K1 = gsize[0], R = gsize[1];
  } else if (ng == 3 && gkind[0] == 0) {
    K1 = gsize[0], R = gsize[1], K2 = gsize[2];
  } else {
    /* General fallback: accumulate each input element into its output. */
    double *acc = calloc((size_t)ny, sizeof *acc);
    if (!acc)
      return MB_ERR(MB_ENOMEM, "sum_to scratch");
    int64_t nx = mb_tensor_numel(&k->in[0]);
    for (int64_t i = 0; i < nx; i++) {
      int64_t rem = i, oi = 0, ostride = 1;
      for (int d = nd - 1; d >= 0; d--) {
        int64_t idx = rem % xs->dim[d];
        rem /= xs->dim[d];
        int od = ys->ndim - nd + d;
        if (od >= 0 && ys->dim[od] != 1) {
          oi += idx * ostride;
          ostride *= ys->dim[od];
        }
      }
      acc[oi] += (double)x[i];
    }
    for (int64_t i = 0; i < ny; i++)
      y[i] = (T)((double)scale * acc[i]);
    free(acc);
    return MB_OK;
  }
  if (K2 == 1 && K1 == 1 && R > MB_CPU_PAR_ELEMS) {
    /* One long row: fixed-size blocks, partial sums added in order (the
     * result does not depend on the thread count). */
    const int64_t bs = 16384;
    int64_t nb = (R + bs - 1) / bs;
    double *part = malloc((size_t)nb * sizeof *part);
    if (!part)
      return MB_ERR(MB_ENOMEM, "sum_to scratch");
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nb; b++) {
      int64_t e = (b + 1) * bs < R ? (b + 1) * bs : R;
      double s = 0;
      for (int64_t r = b * bs; r < e; r++)
        s += (double)x[r];
      part[b] = s;
    }
    double s = 0;
    for (int64_t b = 0; b < nb; b++)
      s += part[b];
    y[0] = (T)((double)scale * s);
    free(part);
    return MB_OK;
  }
  if (K2 == 1) {
    /* Row sums: y[k1] = sum_r x[k1, r]. */
    MB_PAR_FOR(K1 * R > MB_CPU_PAR_ELEMS && K1 > 1,
      for (int64_t i = 0; i < K1; i++) {
        const T *row = x + i * R;
        double s = 0;
        for (int64_t r = 0; r < R; r++)
          s += (double)row[r];
        y[i] = (T)((double)scale * s);
      });
    return MB_OK;
  }
  /* Column sums per k1: y[k1, k2] = sum_r x[k1, r, k2], in blocks of k2.
   * With few (k1, block) tasks (a bias gradient: K1 = 1, K2 <= 256 is one),
   * the rows are split into SUM_CHUNKS fixed chunks as well, whose partial
   * sums are added in chunk order: the split depends on the shape only, so
   * the result does not depend on the thread count. */
  const int64_t cb = 256, nblk = (K2 + cb - 1) / cb;
  enum { SUM_CHUNKS = 16 };
  const int64_t nch = K1 * nblk < SUM_CHUNKS && R >= 64 * SUM_CHUNKS ? SUM_CHUNKS : 1;
  double *part = malloc((size_t)(K1 * nch * K2) * sizeof *part); /* [K1][nch][K2] */
  if (!part)
    return MB_ERR(MB_ENOMEM, "sum_to scratch");
  MB_PAR_FOR(K1 * R * K2 > MB_CPU_PAR_ELEMS,
    for (int64_t t = 0; t < K1 * nblk * nch; t++) {
      const int64_t i = t / (nblk * nch), c0 = t / nch % nblk * cb, ch = t % nch;
      const int64_t c1 = c0 + cb < K2 ? c0 + cb : K2;
      FN(colsum_run)(x + i * R * K2, R * ch / nch, R * (ch + 1) / nch, K2, c0, c1, part + (i * nch + ch) * K2);
    });
  for (int64_t i = 0; i < K1; i++)
    for (int64_t c = 0; c < K2; c++) {
      double acc = 0;
      for (int64_t ch = 0; ch < nch; ch++)
        acc += part[(i * nch + ch) * K2 + c];
      y[i * K2 + c] = (T)((double)scale * acc);
    }
  free(part);
  return MB_OK;
}

#undef FN
