/* cpu_backend.c: the CPU backend object (host memory, copies, fills), the
 * one-time registration of every CPU kernel, and shared kernel helpers. */
#include "kernels/cpu/cpu.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"
#include "runtime/alloc.h"

static int cpu_alloc(mb_backend *be, size_t bytes, void **out) {
  (void)be;
  *out = mb_host_malloc(bytes ? bytes : 1);
  if (!*out)
    return MB_ERR(MB_ENOMEM, "cpu: allocating %zu bytes", bytes);
  return MB_OK;
}

static void cpu_free(mb_backend *be, void *p) {
  (void)be;
  mb_host_free(p);
}

static int cpu_copy(mb_backend *be, void *dst, const void *src, size_t bytes) {
  (void)be;
  if (bytes && dst != src)
    memmove(dst, src, bytes);
  return MB_OK;
}

#define FILL_LOOP(T, val)                                           \
  do {                                                              \
    T *p_ = (T *)dst;                                               \
    T v_ = (val);                                                   \
    MB_PAR_FOR(n > (1u << 20), for (size_t i = 0; i < n; i++) p_[i] = v_;); \
  } while (0)

static int cpu_fill(mb_backend *be, void *dst, mb_dtype dt, size_t n, double value) {
  (void)be;
  size_t es = mb_dtype_size(dt);
  /* All-ones bytes: NaN for every float format, -1 for integers. */
  if (isnan(value) && (dt != MB_F32 && dt != MB_F64)) {
    memset(dst, 0xff, n * es);
    return MB_OK;
  }
  if (value == 0.0 && !signbit(value)) {
    memset(dst, 0, n * es);
    return MB_OK;
  }
  switch (dt) {
  case MB_F32: FILL_LOOP(float, (float)value); break;
  case MB_F64: FILL_LOOP(double, value); break;
  case MB_I32: FILL_LOOP(int32_t, (int32_t)value); break;
  case MB_I64: FILL_LOOP(int64_t, (int64_t)value); break;
  case MB_U64: FILL_LOOP(uint64_t, (uint64_t)value); break;
  case MB_U8: FILL_LOOP(uint8_t, (uint8_t)value); break;
  case MB_F16: FILL_LOOP(uint16_t, mb_f32_to_f16((float)value)); break;
  case MB_BF16: FILL_LOOP(uint16_t, mb_f32_to_bf16((float)value)); break;
  default:
    return MB_ERR(MB_EUNSUPPORTED, "cpu fill: dtype %s", mb_dtype_name(dt));
  }
  return MB_OK;
}

static int cpu_sync(mb_backend *be) {
  (void)be;
  return MB_OK;
}

static mb_backend cpu_backend = {
    .id = MB_BACKEND_CPU,
    .name = "cpu",
    .device = {MB_DEVICE_CPU, 0},
    .alloc = cpu_alloc,
    .free = cpu_free,
    .copy_in = cpu_copy,
    .copy_out = cpu_copy,
    .fill = cpu_fill,
    .sync = cpu_sync,
    .run_tape = NULL,
    .adamw = mb_cpu_adamw,
    .sgd = mb_cpu_sgd,
    .sumsq = mb_cpu_sumsq,
};

static pthread_once_t register_once = PTHREAD_ONCE_INIT;

static void register_all(void) {
  mb_cpu_register_elementwise();
  mb_cpu_register_matmul();
  mb_cpu_register_norm();
  mb_cpu_register_loss();
  mb_cpu_register_shape();
  mb_cpu_register_embed();
  mb_cpu_register_seq();
  mb_cpu_register_dropout();
}

void mb_kernels_cpu_init(void) { pthread_once(&register_once, register_all); }

mb_backend *mb_cpu_backend(void) {
  mb_kernels_cpu_init();
  return &cpu_backend;
}

int mb_cpu_unsupported(const mb_kernel_call *k, int which) {
  return MB_ERR(MB_EUNSUPPORTED, "cpu kernel for '%s' has no code for dtype %s (input %d)", mb_op_name(k->node->op),
                mb_dtype_name(which < k->n_in ? k->in[which].dtype : k->out[0].dtype), which);
}

void mb_bcast_init(mb_bcast *b, const mb_shape *out, const mb_shape *const *ops, int nops) {
  memset(b, 0, sizeof *b);
  b->nops = nops;
  int nd = out->ndim;
  int64_t dim[MB_MAX_DIMS], st[2][MB_MAX_DIMS];
  for (int j = 0; j < nops; j++) {
    int64_t s = 1;
    for (int d = nd - 1; d >= 0; d--) {
      int od = ops[j]->ndim - nd + d;
      int64_t size = od >= 0 ? ops[j]->dim[od] : 1;
      st[j][d] = (size == 1 && out->dim[d] != 1) ? 0 : s; /* broadcast dims do not advance */
      s *= size;
    }
  }
  for (int d = 0; d < nd; d++)
    dim[d] = out->dim[d];
  /* Drop size-1 dims, then merge a dim into the next when every operand is
   * contiguous across the pair. */
  int m = 0;
  for (int d = 0; d < nd; d++) {
    if (dim[d] == 1)
      continue;
    if (m > 0) {
      int mergeable = 1;
      for (int j = 0; j < nops; j++)
        if (b->stride[j][m - 1] != st[j][d] * dim[d])
          mergeable = 0;
      if (mergeable) {
        b->dim[m - 1] *= dim[d];
        for (int j = 0; j < nops; j++)
          b->stride[j][m - 1] = st[j][d];
        continue;
      }
    }
    b->dim[m] = dim[d];
    for (int j = 0; j < nops; j++)
      b->stride[j][m] = st[j][d];
    m++;
  }
  if (m == 0) {
    b->dim[0] = 1;
    for (int j = 0; j < nops; j++)
      b->stride[j][0] = 0;
    m = 1;
  }
  b->nd = m;
}
