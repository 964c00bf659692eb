/* backend.h: what a backend provides to the executor and the optimizers.
 *
 * A backend is memory (alloc/free of the activation arena and parameter
 * buffers, copies in and out, fills), a kernel per op (registered in the op
 * table, op.h, under the backend's id), and a few fused updates over flat
 * buffers (AdamW, SGD, sum of squares, scaling) for the optimizers.
 *
 * The executor (exec.h) replays a compiled graph by calling, for each node,
 * the op's kernel for the backend's id. A backend that wants to run a whole
 * tape differently (CUDA: capture it once into a CUDA graph and replay) sets
 * run_tape; it can call mb_exec_run_node() in a loop while capturing.
 *
 * The CPU backend lives in kernels/cpu (mb_cpu_backend(), kernels/cpu/cpu.h);
 * getting it registers its kernels, so a program cannot run on a backend
 * whose kernels were never registered.
 */
#ifndef MB_AUTOGRAD_BACKEND_H
#define MB_AUTOGRAD_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "autograd/op.h"
#include "runtime/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mb_exec mb_exec;

/* One run of fused AdamW over segments of flat buffers (torch.optim.AdamW
 * semantics, see optim.h). Segment s covers elements
 * [seg_begin[s], seg_end[s]) and decays weights when seg_decay[s]. */
typedef struct {
  void *param, *grad, *m, *v; /* flat buffers, all of dtype `dtype` */
  mb_dtype dtype;
  const int64_t *seg_begin, *seg_end;
  const uint8_t *seg_decay;
  int n_seg;
  double lr, beta1, beta2, eps, weight_decay;
  int64_t step; /* 1 on the first update */
  double grad_scale; /* gradients are multiplied by this first (clipping); 1 = none */
} mb_adamw_args;

typedef struct {
  void *param, *grad, *momentum_buf; /* momentum_buf NULL when momentum == 0 */
  mb_dtype dtype;
  const int64_t *seg_begin, *seg_end;
  const uint8_t *seg_decay;
  int n_seg;
  double lr, momentum, dampening, weight_decay;
  int nesterov;
  int64_t step;
  double grad_scale;
} mb_sgd_args;

struct mb_backend {
  mb_backend_id id;
  const char *name;
  mb_device device;
  void *ctx;

  /* memory */
  int (*alloc)(mb_backend *be, size_t bytes, void **out);
  void (*free)(mb_backend *be, void *p);
  int (*copy_in)(mb_backend *be, void *dst, const void *host_src, size_t bytes);
  int (*copy_out)(mb_backend *be, void *host_dst, const void *src, size_t bytes);
  /* n elements of dtype dt set to value (NaN for poisoning; integer dtypes
   * get an all-ones bit pattern when value is NaN) */
  int (*fill)(mb_backend *be, void *dst, mb_dtype dt, size_t n, double value);
  int (*sync)(mb_backend *be);

  /* optional whole-tape runner (CUDA graph capture/replay); NULL: the
   * executor loops over nodes calling the op table's kernels */
  int (*run_tape)(mb_backend *be, mb_exec *ex, int tape);

  /* fused updates over flat parameter buffers (optim.h) */
  int (*adamw)(mb_backend *be, const mb_adamw_args *a);
  int (*sgd)(mb_backend *be, const mb_sgd_args *a);
  /* sum of squares of segments of x (accumulated in double) */
  int (*sumsq)(mb_backend *be, const void *x, mb_dtype dt, const int64_t *seg_begin,
               const int64_t *seg_end, int n_seg, double *out);
};

#ifdef __cplusplus
}
#endif
#endif
