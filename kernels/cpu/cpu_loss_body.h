/* cpu_loss_body.h: cross-entropy forward/backward for one element type
 * (T, SFX, EXP and FN set by cpu_loss.c). */

/* (logits[N, C], labels[N]) -> loss[], lse[N] */
static int FN(ce_fwd)(const mb_kernel_call *k) {
  const T *x = k->in[0].data;
  T *loss = k->out[0].data, *lse = k->out[1].data;
  int64_t N = k->in[0].shape.dim[0], C = k->in[0].shape.dim[1], ignore = k->node->attr.i[0];
  MB_TRY(check_labels(&k->in[1], N, C, ignore));
  MB_PAR_FOR(N > MB_CPU_PAR_ROWS && N * C > MB_CPU_PAR_ELEMS,
    for (int64_t i = 0; i < N; i++) {
      const T *r = x + i * C;
      T mx = r[0];
      for (int64_t c = 1; c < C; c++)
        mx = r[c] > mx ? r[c] : mx;
      double s = 0;
      for (int64_t c = 0; c < C; c++)
        s += (double)EXP(r[c] - mx);
      lse[i] = mx + (T)log(s);
    });
  double total = 0;
  int64_t count = 0;
  for (int64_t i = 0; i < N; i++) {
    int64_t y = label_at(&k->in[1], i);
    if (y == ignore)
      continue;
    total += (double)(lse[i] - x[i * C + y]);
    count++;
  }
  /* Every row ignored: 0/0 = NaN, as torch returns. */
  loss[0] = (T)(count ? total / (double)count : NAN);
  return MB_OK;
}

/* (gloss[], logits, labels, lse) -> dlogits = gloss/count * (softmax - onehot) */
static int FN(ce_bwd)(const mb_kernel_call *k) {
  const T *gl = k->in[0].data, *x = k->in[1].data, *lse = k->in[3].data;
  T *dx = k->out[0].data;
  int64_t N = k->in[1].shape.dim[0], C = k->in[1].shape.dim[1], ignore = k->node->attr.i[0];
  MB_TRY(check_labels(&k->in[2], N, C, ignore));
  int64_t count = 0;
  for (int64_t i = 0; i < N; i++)
    count += label_at(&k->in[2], i) != ignore;
  const T scale = count ? gl[0] / (T)count : (T)0;
  MB_PAR_FOR(N > MB_CPU_PAR_ROWS && N * C > MB_CPU_PAR_ELEMS,
    for (int64_t i = 0; i < N; i++) {
      int64_t y = label_at(&k->in[2], i);
      T *d = dx + i * C;
      const T *r = x + i * C;
      if (y == ignore) {
        for (int64_t c = 0; c < C; c++)
          d[c] = 0;
        continue;
      }
      for (int64_t c = 0; c < C; c++)
        d[c] = scale * (EXP(r[c] - lse[i]) - (c == y ? (T)1 : (T)0));
    });
  return MB_OK;
}
