/* cpu_dropout.c: inverted dropout on the runtime's Philox stream.
 *
 * The mask is a pure function of (seed, offset, stream, element), so the
 * backward (the same op applied to the gradient), a recomputed forward and
 * the CUDA kernel all see the same mask. Element i of dropout site `stream`
 * under rng = (seed, offset):
 *   e = offset + i,  w = Philox4x32-10(counter = (e/4 low, e/4 high, stream, 0),
 *                                      key = (seed low, seed high)).lane[e % 4]
 *   keep iff mb_philox_u01(w) >= p;  y = keep ? x / (1 - p) : 0.
 * Counter word 2 carries the site, so sites never share numbers; the trainer
 * advances `offset` each step by at least the largest site's element count. */
#include <string.h>

#include "kernels/cpu/cpu_internal.h"
#include "runtime/philox.h"

/* One Philox call gives the words of four consecutive elements (lanes 0..3
 * of counter e/4): the loop runs over counters, so each call is used for
 * every element it covers, not one (the first and last counters may cover
 * elements outside [offset, offset + n)). */
#define DROPOUT_BODY(T)                                                                              \
  do {                                                                                               \
    const T *x = k->in[0].data;                                                                      \
    T *y = k->out[0].data;                                                                           \
    const T scale = (T)(1.0 / (1.0 - p));                                                            \
    const uint64_t first = offset >> 2, end = offset + (uint64_t)n;                                  \
    const int64_t groups = (int64_t)(((end - 1) >> 2) - first + 1);                                  \
    MB_PAR_FOR(n > MB_CPU_PAR_ELEMS / 4, for (int64_t g = 0; g < groups; g++) {                      \
      const uint64_t c4 = first + (uint64_t)g;                                                       \
      mb_u32x4 c = {{(uint32_t)c4, (uint32_t)(c4 >> 32), stream, 0}};                                \
      const mb_u32x4 w = mb_philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32));                \
      for (int lane = 0; lane < 4; lane++) {                                                         \
        const uint64_t e = 4 * c4 + (uint64_t)lane;                                                  \
        if (e < offset || e >= end)                                                                  \
          continue;                                                                                  \
        const int64_t i = (int64_t)(e - offset);                                                     \
        y[i] = mb_philox_u01(w.w[lane]) >= (float)p ? x[i] * scale : (T)0;                           \
      }                                                                                              \
    });                                                                                              \
  } while (0)

static int dropout_kernel(const mb_kernel_call *k) {
  const uint64_t *rng = k->in[1].data;
  uint64_t seed = rng[0], offset = rng[1];
  uint32_t stream = (uint32_t)k->node->attr.i[0];
  double p = k->node->attr.f[0];
  int64_t n = mb_tensor_numel(&k->out[0]);
  if (n == 0)
    return MB_OK;
  if (p == 0.0) {
    memcpy(k->out[0].data, k->in[0].data, mb_tensor_nbytes(&k->in[0]));
    return MB_OK;
  }
  switch (k->in[0].dtype) {
  case MB_F32: DROPOUT_BODY(float); return MB_OK;
  case MB_F64: DROPOUT_BODY(double); return MB_OK;
  default: return mb_cpu_unsupported(k, 0);
  }
}

void mb_cpu_register_dropout(void) { mb_op_set_kernel(MB_OP_DROPOUT, MB_BACKEND_CPU, dropout_kernel, NULL); }
