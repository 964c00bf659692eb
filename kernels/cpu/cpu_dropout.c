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
#include "kernels/cpu/vecmath.h"
#include "runtime/philox.h"

/* Dropout runs over blocks of DROPOUT_BLOCK Philox counters (4 elements
 * each): first every counter's four words, in a vector loop (Philox is
 * 32x32->64-bit multiplies and xors, which vectorise), then the elements
 * the block covers, each reading its word at (e - 4 * first counter). The
 * first and last counters of the range may cover elements outside
 * [offset, offset + n): their words are made and not read. */
#define DROPOUT_BLOCK 512

MB_VEC_CLONES
static void dropout_words(uint64_t c0, int64_t ncnt, uint32_t stream, uint64_t seed, uint32_t *words) {
  const uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
#pragma omp simd
  for (int64_t g = 0; g < ncnt; g++) {
    const uint64_t c4 = c0 + (uint64_t)g;
    const mb_u32x4 c = {{(uint32_t)c4, (uint32_t)(c4 >> 32), stream, 0}};
    const mb_u32x4 w = mb_philox4x32_10(c, k0, k1);
    words[4 * g] = w.w[0];
    words[4 * g + 1] = w.w[1];
    words[4 * g + 2] = w.w[2];
    words[4 * g + 3] = w.w[3];
  }
}

#define DROPOUT_APPLY(T, SFX)                                                                       \
  MB_VEC_CLONES                                                                                     \
  static void dropout_apply_##SFX(const uint32_t *words, const T *x, T *y, int64_t len, float p, T scale) { \
    _Pragma("omp simd") for (int64_t j = 0; j < len; j++)                                           \
      y[j] = mb_philox_u01(words[j]) >= p ? x[j] * scale : (T)0;                                    \
  }
DROPOUT_APPLY(float, f32)
DROPOUT_APPLY(double, f64)

#define DROPOUT_BODY(T, SFX)                                                                         \
  do {                                                                                               \
    const T *x = k->in[0].data;                                                                      \
    T *y = k->out[0].data;                                                                           \
    const T scale = (T)(1.0 / (1.0 - p));                                                            \
    const uint64_t first = offset >> 2, end = offset + (uint64_t)n;                                  \
    const int64_t counters = (int64_t)(((end - 1) >> 2) - first + 1);                                \
    const int64_t blocks = (counters + DROPOUT_BLOCK - 1) / DROPOUT_BLOCK;                           \
    MB_PAR_FOR(n > MB_CPU_PAR_ELEMS / 4, for (int64_t b = 0; b < blocks; b++) {                      \
      uint32_t words[4 * DROPOUT_BLOCK];                                                             \
      const uint64_t c0 = first + (uint64_t)(b * DROPOUT_BLOCK);                                     \
      const int64_t ncnt = counters - b * DROPOUT_BLOCK < DROPOUT_BLOCK ? counters - b * DROPOUT_BLOCK \
                                                                        : DROPOUT_BLOCK;             \
      dropout_words(c0, ncnt, stream, seed, words);                                                  \
      /* elements [e0, e1) of this block that lie in [offset, end) */                               \
      const uint64_t e0 = 4 * c0 > offset ? 4 * c0 : offset;                                         \
      const uint64_t e1 = 4 * (c0 + (uint64_t)ncnt) < end ? 4 * (c0 + (uint64_t)ncnt) : end;         \
      dropout_apply_##SFX(words + (e0 - 4 * c0), x + (e0 - offset), y + (e0 - offset),               \
                          (int64_t)(e1 - e0), (float)p, scale);                                       \
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
  case MB_F32: DROPOUT_BODY(float, f32); return MB_OK;
  case MB_F64: DROPOUT_BODY(double, f64); return MB_OK;
  default: return mb_cpu_unsupported(k, 0);
  }
}

void mb_cpu_register_dropout(void) { mb_op_set_kernel(MB_OP_DROPOUT, MB_BACKEND_CPU, dropout_kernel, NULL); }
