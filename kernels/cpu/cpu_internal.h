/* cpu_internal.h: what the CPU kernel files share: the registration entry
 * points of each family, type-generic helpers, and the broadcast iterator. */
#ifndef MB_KERNELS_CPU_INTERNAL_H
#define MB_KERNELS_CPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "autograd/backend.h"
#include "autograd/graph.h"
#include "autograd/op.h"
#include "runtime/error.h"

/* Register each family's kernels (called once by mb_kernels_cpu_init). */
void mb_cpu_register_elementwise(void);
void mb_cpu_register_matmul(void);
void mb_cpu_register_norm(void);
void mb_cpu_register_loss(void);
void mb_cpu_register_shape(void);
void mb_cpu_register_embed(void);
void mb_cpu_register_seq(void);
void mb_cpu_register_dropout(void);

/* Fused optimizer updates and reductions over flat buffers. */
int mb_cpu_adamw(mb_backend *be, const mb_adamw_args *a);
int mb_cpu_sgd(mb_backend *be, const mb_sgd_args *a);
int mb_cpu_sumsq(mb_backend *be, const void *x, mb_dtype dt, const int64_t *sb, const int64_t *se, int n, double *out);

/* A kernel met a dtype it has no code for. */
int mb_cpu_unsupported(const mb_kernel_call *k, int which_in);

/* Broadcast iteration: the output's shape with per-operand element strides
 * (0 where an operand is broadcast), adjacent dims merged where possible. */
typedef struct {
  int nd;
  int64_t dim[MB_MAX_DIMS];
  int64_t stride[2][MB_MAX_DIMS];
  int nops;
} mb_bcast;

void mb_bcast_init(mb_bcast *b, const mb_shape *out, const mb_shape *const *ops, int nops);
/* Offsets of operand j at the start of row `row` (all dims but the last). */
static inline void mb_bcast_row(const mb_bcast *b, int64_t row, int64_t *off) {
  for (int j = 0; j < b->nops; j++)
    off[j] = 0;
  for (int d = b->nd - 2; d >= 0; d--) {
    int64_t i = row % b->dim[d];
    row /= b->dim[d];
    for (int j = 0; j < b->nops; j++)
      off[j] += i * b->stride[j][d];
  }
}

/* Work split thresholds: below these, OpenMP's fork/join costs more than
 * the loop (tiny ops dominate executor overhead). */
#define MB_CPU_PAR_ELEMS (1 << 17)
#define MB_CPU_PAR_ROWS 64

/* Run a for-loop statement with OpenMP when `big`, serially otherwise. An
 * `omp parallel for if (false)` still costs about a microsecond per region
 * in libgomp, which would dominate tiny ops; this never enters OpenMP for
 * small work. Usage: MB_PAR_FOR(n > MB_CPU_PAR_ELEMS, for (...) { ... }); */
#define MB_PAR_FOR(big, ...)                                   \
  do {                                                         \
    if (big) {                                                 \
      _Pragma("omp parallel for schedule(static)") __VA_ARGS__ \
    } else {                                                   \
      __VA_ARGS__                                              \
    }                                                          \
  } while (0)

#define MB_CAT_(a, b) a##_##b
#define MB_CAT(a, b) MB_CAT_(a, b)

#endif
