/* selective_scan.h: Mamba's selective scan on the GPU, forward and backward,
 * as extern "C" launchers over device pointers (built with CUDA only; the
 * kernels are in selective_scan_kernels.cuh, the notes in SCAN.md).
 *
 * The math, layouts and descriptor are the CPU kernel's
 * (kernels/cpu/selective_scan.h), so the op table can hand the same
 * attributes to either backend:
 *   dt      = softplus(delta[t,d] + delta_bias[d])   (threshold 20), or
 *             delta + delta_bias when desc->delta_softplus is 0
 *   A[d,n]  = -exp(A_log[d,n])
 *   h[d,n] <- exp(dt * A[d,n]) * h[d,n] + dt * B[t,n] * u[t,d]
 *   y[t,d]  = (sum_n h[d,n] C[t,n] + D[d] u[t,d]) * silu(z[t,d])
 * channels-last: u, delta, z, y [B, L, D]; B, C [B, L, N]; A_log [D, N];
 * D, delta_bias [D]. Padded mode: each of the B rows is one sequence.
 * Varlen mode (desc->cu_seqlens != NULL, batch 1, seqlen T): the state is
 * zero again at every cu_seqlens[s] (s < nseq); tokens from
 * cu_seqlens[nseq] on are budget padding: y = 0 and zero gradients.
 *
 * What differs from the CPU call:
 *  - desc->cu_seqlens points to DEVICE memory (int32 [nseq + 1]). Its
 *    contents cannot be checked on the host without a copy; the kernels
 *    only ever compare token positions with its values (never index with
 *    them), so a malformed array gives wrong results but no fault. The
 *    loader's arrays are checked on the CPU side (mb_cpu_scan_check).
 *  - desc->nthreads is ignored; desc->chunk must be 0 or 128
 *    (MB_CUDA_SCAN_CHUNK): the GPU saves one state per 128-token tile, the
 *    CPU's default, so states has the same shape [B, ceil(L/128), D, N].
 *  - dstate (N) is at most 64 (MB_CUDA_SCAN_MAX_DSTATE).
 *  - dtypes: u, delta, B, C, z, y, dy and their gradients share one dtype
 *    `dt` (f32, bf16 or f16); A_log, D, delta_bias and their gradients
 *    share `param_dt` (f32, bf16 or f16; the master weights are f32).
 *    states is always f32 (the recurrence runs in f32). Arithmetic is f32;
 *    each output is rounded once to its dtype.
 *
 * Calls enqueue work on `stream` (a cudaStream_t; NULL is the legacy
 * default stream) and do not wait. The return value reports argument and
 * launch errors (MB_EINVAL, MB_EUNSUPPORTED, MB_EDEVICE with CUDA's text).
 * Results are deterministic: the same inputs give the same bits on every run
 * (fixed reduction orders, no floating-point atomics).
 *
 * Gradients are overwritten (=). Any gradient pointer may be NULL; asking
 * for dD, dz or ddelta_bias when D, z or delta_bias is NULL is MB_EINVAL.
 * Outputs must not overlap inputs.
 */
#ifndef MB_KERNELS_CUDA_SELECTIVE_SCAN_H
#define MB_KERNELS_CUDA_SELECTIVE_SCAN_H

#include <stddef.h>

#include "kernels/cpu/selective_scan.h"
#include "runtime/dtype.h"
#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

struct CUstream_st; /* cudaStream_t is struct CUstream_st * */

#define MB_CUDA_SCAN_CHUNK 128
#define MB_CUDA_SCAN_MAX_DSTATE 64

/* Inputs. u, delta, B, C, z: dtype dt; A_log, D, delta_bias: param_dt.
 * z, D and delta_bias may be NULL (no gate, no skip, no bias). */
typedef struct {
  const void *u, *delta, *B, *C, *z;
  const void *A_log, *D, *delta_bias;
} mb_cuda_scan_in;

/* Gradients, same shapes and dtypes as the inputs; any may be NULL. */
typedef struct {
  void *du, *ddelta, *dB, *dC, *dz;
  void *dA_log, *dD, *ddelta_bias;
} mb_cuda_scan_grad;

/* Checks the descriptor and dtypes (everything the host can see). */
int mb_cuda_scan_check(const mb_scan_desc *d, mb_dtype dt, mb_dtype param_dt) MB_NODISCARD;

/* Elements of the saved states: B * ceil(L / 128) * D * N (f32). */
size_t mb_cuda_scan_states_numel(const mb_scan_desc *d);

/* Forward: writes y [B, L, D] (dtype dt) and states [B, nchunks, D, N]. */
int mb_cuda_scan_fwd(const mb_scan_desc *d, mb_dtype dt, mb_dtype param_dt, const mb_cuda_scan_in *in, void *y,
                     float *states, struct CUstream_st *stream) MB_NODISCARD;

/* Device scratch the backward needs, in bytes (256-byte aligned pointer):
 * per-channel-group partial sums of dB and dC (2 * B * ceil(D/32) * L * N
 * floats) and per-batch-row partials of dA_log, dD and ddelta_bias. */
size_t mb_cuda_scan_bwd_workspace(const mb_scan_desc *d);

/* Backward: states from the forward, dy = dLoss/dy [B, L, D] (dtype dt). */
int mb_cuda_scan_bwd(const mb_scan_desc *d, mb_dtype dt, mb_dtype param_dt, const mb_cuda_scan_in *in,
                     const float *states, const void *dy, const mb_cuda_scan_grad *grad, void *workspace,
                     size_t workspace_bytes, struct CUstream_st *stream) MB_NODISCARD;

/* Register MB_OP_SELECTIVE_SCAN[_GRAD] and MB_OP_CONV1D[_GRAD] on the CUDA
 * backend (kernels/cuda/scan_ops.c; called by mb_cuda_register_ops). */
void mb_cuda_scan_register_ops(void);

#ifdef __cplusplus
}
#endif
#endif
