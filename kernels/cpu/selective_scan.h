/* selective_scan.h: Mamba's selective scan on the CPU, forward and backward,
 * in f32 and f64 (MODELS.md 4.3 steps 5-7; mamba_ssm's selective_scan_ref with
 * delta_bias and delta_softplus), with the D skip and SiLU(z) gate fused.
 *
 * For every channel d, state index n and token t of a sequence:
 *   dt      = softplus(delta[t,d] + delta_bias[d])   (threshold 20, as PyTorch)
 *   A[d,n]  = -exp(A_log[d,n])
 *   h[d,n] <- exp(dt * A[d,n]) * h[d,n] + dt * B[t,n] * u[t,d]   (h = 0 before
 *                                                     each sequence's first token)
 *   y[t,d]  = (sum_n h[d,n] * C[t,n] + D[d] * u[t,d]) * silu(z[t,d])
 *
 * Layout: channels-last. u, delta, z, y and their gradients are [B, L, D];
 * B and C are [B, L, N]. That is the token-major layout every matmul of the
 * mixer reads and writes (in_proj gives [B*L, 2*D], x_proj gives [B*L, R+2N],
 * dt_proj gives [B*L, D]), so the scan needs no transposes around it, only
 * column slices (x/z, dt/B/C) made contiguous. A thread owns a block of
 * channels and walks the tokens; each token's block of channels is one
 * contiguous run of memory.
 *
 * A: the kernel takes A_log ([D, N], the parameter as stored in checkpoints)
 * and computes A = -exp(A_log) itself; its gradient comes back as dA_log
 * (= dA * A). That keeps the parameter's own exp/neg out of the op graph and
 * is computed in the compute type, as mamba_ssm does in fp32.
 *
 * Sequences: padded mode is B rows of L tokens, each row one sequence (right
 * padding needs no mask: the scan is causal, so padding never reaches a real
 * token; padded positions get defined but meaningless outputs). Varlen mode
 * (cu_seqlens != NULL): batch = 1, seqlen = T (the packed token budget), the
 * state resets to zero at every cu_seqlens[s]; tokens from cu_seqlens[nseq]
 * on are budget padding: y = 0 and they get zero gradients.
 *
 * Memory: the forward does not keep the L states. It saves the state entering
 * every chunk of `chunk` tokens (before any reset at that token): states is
 * [B, nchunks, D, N], nchunks = ceil(L / chunk), in the compute type. The
 * backward walks the chunks in reverse; for each it recomputes the chunk's
 * states from the saved one (chunk*block*N values per thread), then runs the
 * reverse recurrence dh <- exp(dt*A) * dh + dy*silu(z)*C through it.
 *
 * Optional inputs: delta_bias, D and z may be NULL (no bias, no skip, no
 * gate). Any gradient pointer may be NULL if that gradient is not wanted.
 * Gradients are overwritten (=), not accumulated into.
 * Outputs must not overlap inputs.
 *
 * Threads: OpenMP over (batch row, channel block) items, each thread a
 * contiguous run of them (in the backward, a run's blocks are walked chunk by
 * chunk so that dB_t and dC_t are summed over its channels lane-wise and
 * folded once per chunk). A row whole to one thread gets its dB and dC
 * directly; a row split between threads gets the later threads' [L, N]
 * partials added in thread order, and dA_log, dD and d delta_bias sum
 * per-thread parts in thread order: results are reproducible for a given
 * thread count (and differ across thread counts only by rounding).
 */
#ifndef MB_KERNELS_CPU_SELECTIVE_SCAN_H
#define MB_KERNELS_CPU_SELECTIVE_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int batch;                 /* B rows; 1 in varlen mode */
  int seqlen;                /* L tokens per row; varlen: T, the packed token budget */
  int dim;                   /* D channels (Mamba's d_inner) */
  int dstate;                /* N state size */
  int chunk;                 /* tokens per saved state; 0 = 128 */
  int delta_softplus;        /* 1: dt = softplus(delta + bias) (Mamba); 0: dt = delta + bias */
  const int32_t *cu_seqlens; /* varlen mode: [nseq + 1]; NULL = padded mode */
  int nseq;
  int nthreads;              /* OpenMP threads; 0 = omp_get_max_threads() */
} mb_scan_desc;

/* The scan's inputs. Sizes: u, delta, z [B, L, D]; A_log [D, N]; B, C [B, L, N];
 * D, delta_bias [D]. D, z, delta_bias may be NULL. */
typedef struct {
  const float *u, *delta, *A_log, *B, *C, *D, *z, *delta_bias;
} mb_scan_in_f32;
typedef struct {
  const double *u, *delta, *A_log, *B, *C, *D, *z, *delta_bias;
} mb_scan_in_f64;

/* Gradients, same shapes as the inputs; any may be NULL. */
typedef struct {
  float *du, *ddelta, *dA_log, *dB, *dC, *dD, *dz, *ddelta_bias;
} mb_scan_grad_f32;
typedef struct {
  double *du, *ddelta, *dA_log, *dB, *dC, *dD, *dz, *ddelta_bias;
} mb_scan_grad_f64;

int mb_cpu_scan_check(const mb_scan_desc *d) MB_NODISCARD;
/* ceil(L / chunk): the saved states are [B, nchunks, D, N]. */
int mb_cpu_scan_nchunks(const mb_scan_desc *d);
size_t mb_cpu_scan_states_numel(const mb_scan_desc *d);
/* Scratch bytes (elem_size 4 or 8); pass NULL workspace to let the kernel
 * allocate it. Forward: per thread one block of states. Backward: per thread
 * one chunk of states and of dB/dC shares, each channel block's dh and
 * parameter gradients, and [L, N] partials of dB and dC. Per thread: to size a
 * workspace once for later calls, set d->nthreads. */
size_t mb_cpu_scan_fwd_workspace(const mb_scan_desc *d, size_t elem_size);
size_t mb_cpu_scan_bwd_workspace(const mb_scan_desc *d, size_t elem_size);

/* Forward: writes y [B, L, D] and states [B, nchunks, D, N]. */
int mb_cpu_scan_fwd_f32(const mb_scan_desc *d, const mb_scan_in_f32 *in, float *y, float *states, void *workspace,
                        size_t workspace_bytes) MB_NODISCARD;
int mb_cpu_scan_fwd_f64(const mb_scan_desc *d, const mb_scan_in_f64 *in, double *y, double *states,
                        void *workspace, size_t workspace_bytes) MB_NODISCARD;

/* Backward: states from the forward, dy = dLoss/dy [B, L, D]. */
int mb_cpu_scan_bwd_f32(const mb_scan_desc *d, const mb_scan_in_f32 *in, const float *states, const float *dy,
                        const mb_scan_grad_f32 *grad, void *workspace, size_t workspace_bytes) MB_NODISCARD;
int mb_cpu_scan_bwd_f64(const mb_scan_desc *d, const mb_scan_in_f64 *in, const double *states, const double *dy,
                        const mb_scan_grad_f64 *grad, void *workspace, size_t workspace_bytes) MB_NODISCARD;

#ifdef __cplusplus
}
#endif
#endif
