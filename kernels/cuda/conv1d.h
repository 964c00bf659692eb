/* conv1d.h: Mamba's depthwise causal conv1d on the GPU, forward and
 * backward with the SiLU fused, as extern "C" launchers over device
 * pointers (built with CUDA only; kernels in conv1d_kernels.cuh, notes in
 * SCAN.md).
 *
 * The math, layouts and descriptor are the CPU kernel's
 * (kernels/cpu/conv1d.h):
 *   pre[t,c] = bias[c] + sum_{k=0..W-1} w[c,k] * x[t-(W-1)+k, c]
 *   y[t,c]   = silu ? pre * sigmoid(pre) : pre
 * with x = 0 before each sequence's first token; x, y [B, L, D]
 * (channels-last), w [D, W] (HF's [D, 1, W]), bias [D] (may be NULL),
 * W = 1..4. Varlen mode (desc->cu_seqlens != NULL, batch 1): the history is
 * zero again at every cu_seqlens[s]; tokens from cu_seqlens[nseq] on are
 * budget padding (y = 0, zero gradients).
 *
 * As for the scan (selective_scan.h): desc->cu_seqlens points to DEVICE
 * memory and is only compared with, never indexed by; desc->nthreads is
 * ignored; x, y, dy, dx share dtype `dt` (f32, bf16, f16), w, bias, dw,
 * dbias share `param_dt`; f32 arithmetic, each output rounded once; calls
 * enqueue on `stream` and return argument/launch errors; results are
 * deterministic (dw, dbias: per-thread partial sums over 256-token runs,
 * added in a fixed order by a second kernel). Gradients are overwritten;
 * dx, dw, dbias may each be NULL; dbias (the sum of the pre-activation
 * gradients) is defined even when bias is NULL, as on the CPU.
 */
#ifndef MB_KERNELS_CUDA_CONV1D_H
#define MB_KERNELS_CUDA_CONV1D_H

#include <stddef.h>

#include "kernels/cpu/conv1d.h"
#include "runtime/dtype.h"
#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

struct CUstream_st; /* cudaStream_t is struct CUstream_st * */

int mb_cuda_conv1d_check(const mb_conv1d_desc *d, mb_dtype dt, mb_dtype param_dt) MB_NODISCARD;

/* y [B, L, D] = act(conv(x) + bias). */
int mb_cuda_conv1d_fwd(const mb_conv1d_desc *d, mb_dtype dt, mb_dtype param_dt, const void *x, const void *w,
                       const void *bias, void *y, struct CUstream_st *stream) MB_NODISCARD;

/* Device scratch of the backward in bytes (256-byte aligned pointer): the
 * per-run partial sums of dw and dbias, B * ceil(L/256) * D * (W+1) floats. */
size_t mb_cuda_conv1d_bwd_workspace(const mb_conv1d_desc *d);

/* dy = dLoss/dy [B, L, D]; writes dx [B, L, D], dw [D, W], dbias [D]. */
int mb_cuda_conv1d_bwd(const mb_conv1d_desc *d, mb_dtype dt, mb_dtype param_dt, const void *x, const void *w,
                       const void *bias, const void *dy, void *dx, void *dw, void *dbias, void *workspace,
                       size_t workspace_bytes, struct CUstream_st *stream) MB_NODISCARD;

#ifdef __cplusplus
}
#endif
#endif
