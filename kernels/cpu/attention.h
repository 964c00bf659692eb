/* attention.h: fused multi-head scaled dot-product attention on the CPU,
 * forward and backward, in f32 and f64 (the f64 twins exist for the float64
 * gradient checks of the autograd).
 *
 * Layout. q, k, v, out and their gradients are token-major [tokens, H, Dh]:
 * row t holds all heads of token t, head h at columns h*Dh .. h*Dh+Dh-1. That
 * is exactly the [B*L, H*Dh] output of the Q/K/V projections, so no transpose
 * op is needed before or after attention. Two ways to say where sequences are:
 *
 *  - padded:  batch = B rows of seqlen = L tokens, tokens = B*L, with an
 *             optional key-padding mask key_mask[B, L] (nonzero = real token).
 *             Masked keys get exactly zero weight. Masked (padded) query rows
 *             get out = 0, lse = +inf and zero gradients.
 *  - varlen:  cu_seqlens != NULL. batch must be 1 and seqlen = T, the packed
 *             token budget; sequence s is tokens cu_seqlens[s] ..
 *             cu_seqlens[s+1]-1 (FlashAttention's varlen convention; int32,
 *             cu_seqlens[0] = 0, non-decreasing, cu_seqlens[nseq] <= T).
 *             Attention never crosses a boundary. Tokens from cu_seqlens[nseq]
 *             to T-1 are the budget's padding: out = 0, zero gradients.
 *  causal:    key j may be seen by query i only if j <= i (positions within
 *             the sequence). BERT is non-causal; this is for completeness.
 * Values at masked positions are ignored but must be finite (they meet exact
 * zeros inside the tile products, and 0 * NaN is NaN); the varlen budget's
 * tail is never read at all.
 *
 * Algorithm (FlashAttention-2 on a CPU). The forward walks query tiles of
 * block_q rows and, for each, key tiles of block_k rows, keeping a running
 * row max m and row sum l of exp(s - m) (the online softmax), rescaling the
 * output accumulator when m grows. It never forms an L x L matrix: the only
 * scratch is one block_q x block_k score tile and one block_q x Dh accumulator
 * per thread. It saves out and lse = m + log(l) per (token, head). The
 * backward recomputes P = exp(S - lse) tile by tile and uses
 *   D  = rowsum(dO * O),  dV += P^T dO,  dP = dO V^T,  dS = P * (dP - D),
 *   dQ += scale * dS K,   dK += scale * dS^T Q.
 * Tile products go through CBLAS (OpenBLAS), sized so each call stays under
 * OpenBLAS's single-thread threshold (the threads are ours, from OpenMP); the
 * softmax loops use vecmath.h's vectorised exp (f32) and skip the masking
 * pass on tiles with nothing to hide.
 *
 * Threads: OpenMP over (sequence, head, query tile) in the forward and over
 * (sequence, head) in the backward, so every output element is written by one
 * thread: results do not depend on the number of threads.
 *
 * Workspace: pass a buffer of mb_cpu_attn_*_workspace() bytes (64-byte
 * aligned, e.g. from mb_host_malloc or the planner's arena), or NULL and the
 * kernel allocates (and frees) it with mb_host_malloc. The forward workspace
 * does not depend on the sequence length at all; the backward one is
 * tokens*H values (D) plus per-thread tiles: O(L), never O(L^2).
 *
 * All functions return MB_OK or MB_EINVAL/MB_ENOMEM with a message
 * (runtime/error.h); bad sizes or cu_seqlens are errors, never a crash.
 * Gradient outputs are overwritten (=), not accumulated into.
 * Outputs must not overlap inputs.
 */
#ifndef MB_KERNELS_CPU_ATTENTION_H
#define MB_KERNELS_CPU_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int batch;                 /* B padded rows; 1 in varlen mode */
  int seqlen;                /* L tokens per row; varlen: T, the packed token budget */
  int heads;                 /* H */
  int head_dim;              /* Dh */
  double scale;              /* softmax scale; 0 means 1/sqrt(Dh) */
  int causal;                /* 1: key j visible to query i only when j <= i */
  const int32_t *key_mask;   /* padded mode: [B, L], nonzero = real token; NULL = all real */
  const int32_t *cu_seqlens; /* varlen mode: [nseq + 1]; NULL = padded mode */
  int nseq;                  /* number of sequences in varlen mode */
  int block_q, block_k;      /* tile sizes; 0 = defaults (64, and block_k so that
                                block_q*block_k*Dh <= 262144) */
  int nthreads;              /* OpenMP threads; 0 = omp_get_max_threads() */
} mb_attn_desc;

/* Scratch bytes for the forward / backward, for elements of elem_size bytes
 * (4 for f32, 8 for f64). 0 if the descriptor is invalid. They grow with the
 * thread count: to size a workspace once for later calls, set d->nthreads. */
size_t mb_cpu_attn_fwd_workspace(const mb_attn_desc *d, size_t elem_size);
size_t mb_cpu_attn_bwd_workspace(const mb_attn_desc *d, size_t elem_size);

/* Check sizes and cu_seqlens; MB_EINVAL with a message naming the field. */
int mb_cpu_attn_check(const mb_attn_desc *d) MB_NODISCARD;

/* Forward. q, k, v, out: [tokens, H, Dh]; lse: [tokens, H] (saved for the
 * backward; +inf on rows that see no key). */
int mb_cpu_attn_fwd_f32(const mb_attn_desc *d, const float *q, const float *k, const float *v,
                        float *out, float *lse, void *workspace, size_t workspace_bytes) MB_NODISCARD;
int mb_cpu_attn_fwd_f64(const mb_attn_desc *d, const double *q, const double *k, const double *v,
                        double *out, double *lse, void *workspace, size_t workspace_bytes) MB_NODISCARD;

/* Backward. out and lse are the forward's; dout is dLoss/dout. Writes dq, dk,
 * dv ([tokens, H, Dh]); none may be NULL. */
int mb_cpu_attn_bwd_f32(const mb_attn_desc *d, const float *q, const float *k, const float *v,
                        const float *out, const float *lse, const float *dout, float *dq, float *dk,
                        float *dv, void *workspace, size_t workspace_bytes) MB_NODISCARD;
int mb_cpu_attn_bwd_f64(const mb_attn_desc *d, const double *q, const double *k, const double *v,
                        const double *out, const double *lse, const double *dout, double *dq,
                        double *dk, double *dv, void *workspace, size_t workspace_bytes) MB_NODISCARD;

#ifdef __cplusplus
}
#endif
#endif
