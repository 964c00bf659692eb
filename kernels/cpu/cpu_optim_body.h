/* cpu_optim_body.h: AdamW and SGD for one element type (T, SFX, SQRT, FN set
 * by cpu_optim.c). Scalars are prepared in double and rounded to T once,
 * as torch does with Python floats. */

static int FN(adamw)(const mb_adamw_args *a) {
  T *p = a->param;
  const T *g = a->grad;
  T *m = a->m, *v = a->v;
  const double bc1 = 1.0 - pow(a->beta1, (double)a->step);
  const double bc2 = 1.0 - pow(a->beta2, (double)a->step);
  const T decay = (T)(1.0 - a->lr * a->weight_decay);
  const T w1 = (T)(1.0 - a->beta1); /* lerp weight */
  const T b2 = (T)a->beta2, w2 = (T)(1.0 - a->beta2);
  const T bc2_sqrt = (T)sqrt(bc2), eps = (T)a->eps, neg_step = (T)(-(a->lr / bc1));
  const T gs = (T)a->grad_scale;
  const int scaled = a->grad_scale != 1.0;
  for (int s = 0; s < a->n_seg; s++) {
    int64_t b = a->seg_begin[s], e = a->seg_end[s];
    int decayed = a->seg_decay[s] && a->weight_decay != 0.0;
    MB_PAR_FOR(e - b > MB_CPU_PAR_ELEMS,
      for (int64_t i = b; i < e; i++) {
        T gi = scaled ? g[i] * gs : g[i];
        T pi = decayed ? p[i] * decay : p[i];
        T mi = m[i];
        /* torch's vectorised lerp: fma(w, end - self, self) for w < 0.5,
         * else fma(w - 1, end - self, end). */
        mi = w1 < (T)0.5 ? FMA(w1, gi - mi, mi) : FMA(w1 - (T)1, gi - mi, gi);
        T vi = v[i] * b2 + w2 * gi * gi;
        T denom = SQRT(vi) / bc2_sqrt + eps;
        p[i] = pi + neg_step * mi / denom;
        m[i] = mi;
        v[i] = vi;
      });
  }
  return MB_OK;
}

static int FN(sgd)(const mb_sgd_args *a) {
  T *p = a->param;
  const T *g = a->grad;
  T *buf = a->momentum_buf;
  const T wd = (T)a->weight_decay, mom = (T)a->momentum, damp = (T)(1.0 - a->dampening);
  const T neg_lr = (T)(-a->lr), gs = (T)a->grad_scale;
  const int scaled = a->grad_scale != 1.0, first = a->step == 1;
  for (int s = 0; s < a->n_seg; s++) {
    int64_t b = a->seg_begin[s], e = a->seg_end[s];
    int decayed = a->seg_decay[s] && a->weight_decay != 0.0;
    MB_PAR_FOR(e - b > MB_CPU_PAR_ELEMS,
      for (int64_t i = b; i < e; i++) {
        /* torch's vectorised add(x, y, alpha) is fma(y, alpha, x) */
        T d = scaled ? g[i] * gs : g[i];
        if (decayed)
          d = FMA(p[i], wd, d);
        if (buf) {
          T bi = first ? d : FMA(d, damp, buf[i] * mom);
          buf[i] = bi;
          d = a->nesterov ? FMA(bi, mom, d) : bi;
        }
        p[i] = FMA(d, neg_lr, p[i]);
      });
  }
  return MB_OK;
}
