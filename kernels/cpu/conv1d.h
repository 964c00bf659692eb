/* conv1d.h: Mamba's depthwise causal conv1d on the CPU, forward and backward,
 * in f32 and f64, with an optional fused SiLU (MODELS.md 4.3 steps 2-3).
 *
 *   pre[t,c] = bias[c] + sum_{k=0..W-1} w[c,k] * x[t-(W-1)+k, c]
 *   y[t,c]   = silu ? pre * sigmoid(pre) : pre
 * with x = 0 before the first token of each sequence, so w[c, W-1] multiplies
 * the current token: nn.Conv1d(groups=D, padding=W-1) cut to the first L
 * outputs, the same as causal_conv1d_fn.
 *
 * Layout: channels-last like the scan, x and y [B, L, D] (the x half of the
 * in_proj output, made contiguous); w [D, W] (HF's conv1d.weight [D, 1, W] has
 * the same bytes); bias [D] (may be NULL). W is 1..4.
 *
 * Sequences: padded mode, each of the B rows is one sequence; varlen mode
 * (cu_seqlens != NULL, batch = 1, seqlen = T), the history is zero again at
 * each cu_seqlens[s], and tokens from cu_seqlens[nseq] on are budget
 * padding: y = 0 and zero gradients.
 *
 * The backward recomputes pre (for SiLU's derivative) instead of saving it.
 * Threads: OpenMP over chunks of whole token rows (a row's D channels are
 * contiguous, so every pass streams through memory). dw and dbias sum over
 * tokens: each thread keeps partial sums, added in thread order, so results
 * are reproducible for a given thread count. Gradients are overwritten; dx,
 * dw and dbias may each be NULL.
 * Outputs must not overlap inputs.
 *
 * Workspace: the forward allocates only its W*D transposed weights. The
 * backward takes
 * mb_cpu_conv1d_bwd_workspace() bytes, 64-byte aligned, or NULL to allocate
 * them itself: (2W+1)*D values per thread plus W*D, independent of L.
 */
#ifndef MB_KERNELS_CPU_CONV1D_H
#define MB_KERNELS_CPU_CONV1D_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MB_CONV1D_MAX_WIDTH 4

typedef struct {
  int batch;                 /* B rows; 1 in varlen mode */
  int seqlen;                /* L tokens per row; varlen: T, the packed token budget */
  int dim;                   /* D channels */
  int width;                 /* W, 1 .. MB_CONV1D_MAX_WIDTH */
  int silu;                  /* 1: apply SiLU to the output (fused) */
  const int32_t *cu_seqlens; /* varlen mode: [nseq + 1]; NULL = padded mode */
  int nseq;
  int nthreads;              /* OpenMP threads; 0 = omp_get_max_threads() */
} mb_conv1d_desc;

int mb_cpu_conv1d_check(const mb_conv1d_desc *d) MB_NODISCARD;

int mb_cpu_conv1d_fwd_f32(const mb_conv1d_desc *d, const float *x, const float *w, const float *bias,
                          float *y) MB_NODISCARD;
int mb_cpu_conv1d_fwd_f64(const mb_conv1d_desc *d, const double *x, const double *w, const double *bias,
                          double *y) MB_NODISCARD;

/* Backward scratch bytes (elem_size 4 or 8); per thread, so set d->nthreads
 * to size a workspace once for later calls. */
size_t mb_cpu_conv1d_bwd_workspace(const mb_conv1d_desc *d, size_t elem_size);

/* dy = dLoss/dy [B, L, D]; writes dx [B, L, D], dw [D, W], dbias [D]. */
int mb_cpu_conv1d_bwd_f32(const mb_conv1d_desc *d, const float *x, const float *w, const float *bias,
                          const float *dy, float *dx, float *dw, float *dbias, void *workspace,
                          size_t workspace_bytes) MB_NODISCARD;
int mb_cpu_conv1d_bwd_f64(const mb_conv1d_desc *d, const double *x, const double *w, const double *bias,
                          const double *dy, double *dx, double *dw, double *dbias, void *workspace,
                          size_t workspace_bytes) MB_NODISCARD;

#ifdef __cplusplus
}
#endif
#endif
