/* conv1d_plan.h: the host-side arithmetic of the GPU conv1d (argument
 * checks, grid, the backward's workspace), static inline C shared by the
 * launchers (conv1d.cu), the plan test and the CPU emulation test.
 *
 * Geometry: a thread owns one channel of one batch row and a run of
 * consecutive tokens, sliding a window of the last W inputs through it;
 * a block is 128 consecutive channels of the same run (a warp reads 32
 * consecutive channels of a token: coalesced). The forward's runs are 64
 * tokens; the backward's 256, since each thread also writes one partial
 * sum of dw and dbias per run.
 */
#ifndef MB_KERNELS_CUDA_CONV1D_PLAN_H
#define MB_KERNELS_CUDA_CONV1D_PLAN_H

#include <limits.h>
#include <stddef.h>

#include "kernels/cpu/conv1d.h"
#include "runtime/dtype.h"
#include "runtime/error.h"

#define MB_CONV1D_THREADS 128
#define MB_CONV1D_FWD_RUN 64
#define MB_CONV1D_BWD_RUN 256
#define MB_CONV1D_REDUCE_THREADS 256
#define MB_CONV1D_WS_ALIGN 256

typedef struct {
  int batch, seqlen, dim, width;
  int dblocks;                      /* ceil(D / 128) */
  int fwd_runs, bwd_runs;           /* ceil(L / 64), ceil(L / 256) */
  long long fwd_blocks, bwd_blocks; /* batch * runs * dblocks */
  size_t ws_bytes;                  /* backward: partials of dw (W) and dbias (1) per (row, run, channel), f32 */
} mb_conv1d_plan;

static inline int mb_conv1d_dtype_ok(mb_dtype dt) { return dt == MB_F32 || dt == MB_BF16 || dt == MB_F16; }

static inline int mb_conv1d_plan_check(const mb_conv1d_desc *d, mb_dtype dt, mb_dtype param_dt) {
  if (!d)
    return MB_ERR(MB_EINVAL, "cuda conv1d: NULL descriptor");
  if (d->batch < 0 || d->seqlen < 0)
    return MB_ERR(MB_EINVAL, "cuda conv1d: batch %d and seqlen %d must be >= 0", d->batch, d->seqlen);
  if (d->seqlen > INT_MAX - MB_CONV1D_BWD_RUN) /* the kernels index tokens with int, a run past the end included */
    return MB_ERR(MB_EINVAL, "cuda conv1d: seqlen %d is above the limit %d", d->seqlen, INT_MAX - MB_CONV1D_BWD_RUN);
  if (d->dim < 1)
    return MB_ERR(MB_EINVAL, "cuda conv1d: dim %d must be >= 1", d->dim);
  if (d->width < 1)
    return MB_ERR(MB_EINVAL, "cuda conv1d: width %d must be >= 1", d->width);
  if (d->width > MB_CONV1D_MAX_WIDTH)
    return MB_ERR(MB_EUNSUPPORTED, "cuda conv1d: width %d; kernels exist for 1 .. %d", d->width, MB_CONV1D_MAX_WIDTH);
  if (!mb_conv1d_dtype_ok(dt) || !mb_conv1d_dtype_ok(param_dt))
    return MB_ERR(MB_EUNSUPPORTED, "cuda conv1d: dtypes %s (activations) and %s (parameters); f32, bf16 or f16 only",
                  mb_dtype_name(dt), mb_dtype_name(param_dt));
  if (d->cu_seqlens) {
    if (d->batch != 1)
      return MB_ERR(MB_EINVAL, "cuda conv1d: varlen mode (cu_seqlens given) needs batch = 1, got %d", d->batch);
    if (d->nseq < 0)
      return MB_ERR(MB_EINVAL, "cuda conv1d: nseq %d must be >= 0", d->nseq);
  }
  const long long dblocks = (d->dim + MB_CONV1D_THREADS - 1) / MB_CONV1D_THREADS;
  const long long runs = ((long long)d->seqlen + MB_CONV1D_FWD_RUN - 1) / MB_CONV1D_FWD_RUN;
  if ((long long)d->batch * runs * dblocks > INT_MAX)
    return MB_ERR(MB_EINVAL, "cuda conv1d: [%d, %d, %d] needs more blocks than a grid holds", d->batch, d->seqlen,
                  d->dim);
  return MB_OK;
}

static inline void mb_conv1d_plan_make(const mb_conv1d_desc *d, mb_conv1d_plan *p) {
  p->batch = d->batch;
  p->seqlen = d->seqlen;
  p->dim = d->dim;
  p->width = d->width;
  p->dblocks = (d->dim + MB_CONV1D_THREADS - 1) / MB_CONV1D_THREADS;
  p->fwd_runs = (int)(((long long)d->seqlen + MB_CONV1D_FWD_RUN - 1) / MB_CONV1D_FWD_RUN);
  p->bwd_runs = (int)(((long long)d->seqlen + MB_CONV1D_BWD_RUN - 1) / MB_CONV1D_BWD_RUN);
  p->fwd_blocks = (long long)d->batch * p->fwd_runs * p->dblocks;
  p->bwd_blocks = (long long)d->batch * p->bwd_runs * p->dblocks;
  p->ws_bytes = (size_t)d->batch * p->bwd_runs * d->dim * (d->width + 1) * sizeof(float);
  p->ws_bytes = (p->ws_bytes + MB_CONV1D_WS_ALIGN - 1) / MB_CONV1D_WS_ALIGN * MB_CONV1D_WS_ALIGN;
}

#endif
