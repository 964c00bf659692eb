/* cpukern_ref.h: naive reference versions of the fused CPU kernels, used by
 * the tests (as the thing to agree with) and by bench/ (as the peer to beat).
 *
 * They take the same descriptors and layouts as the kernels and say the math
 * the obvious way:
 *  - attention materialises P = softmax(scale * Q K^T + mask) for every
 *    (sequence, head) — an L x L matrix each — and keeps it for the backward,
 *    as an unfused autograd would;
 *  - the scan keeps every state h_t ([B, L, D, N]), a transcription of
 *    mamba_ssm's selective_scan_ref, and its backward reads them back;
 *  - conv1d is the textbook double loop.
 * Big buffers come from mb_host_malloc, so the benchmark can read their peak.
 */
#ifndef MB_TESTS_CPUKERN_REF_H
#define MB_TESTS_CPUKERN_REF_H

#include <stddef.h>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/conv1d.h"
#include "kernels/cpu/selective_scan.h"

/* Elements of the saved P: sum over sequences of H * n^2. */
size_t ref_attn_P_numel(const mb_attn_desc *d);

int ref_attn_fwd_f32(const mb_attn_desc *d, const float *q, const float *k, const float *v, float *out, float *P);
int ref_attn_fwd_f64(const mb_attn_desc *d, const double *q, const double *k, const double *v, double *out,
                     double *P);
int ref_attn_bwd_f32(const mb_attn_desc *d, const float *q, const float *k, const float *v, const float *P,
                     const float *dout, float *dq, float *dk, float *dv);
int ref_attn_bwd_f64(const mb_attn_desc *d, const double *q, const double *k, const double *v, const double *P,
                     const double *dout, double *dq, double *dk, double *dv);

/* All states: [B, L, D, N] (the state after each token). */
size_t ref_scan_states_numel(const mb_scan_desc *d);
int ref_scan_fwd_f32(const mb_scan_desc *d, const mb_scan_in_f32 *in, float *y, float *hall);
int ref_scan_fwd_f64(const mb_scan_desc *d, const mb_scan_in_f64 *in, double *y, double *hall);
int ref_scan_bwd_f32(const mb_scan_desc *d, const mb_scan_in_f32 *in, const float *hall, const float *dy,
                     const mb_scan_grad_f32 *g);
int ref_scan_bwd_f64(const mb_scan_desc *d, const mb_scan_in_f64 *in, const double *hall, const double *dy,
                     const mb_scan_grad_f64 *g);

int ref_conv1d_fwd_f32(const mb_conv1d_desc *d, const float *x, const float *w, const float *bias, float *y);
int ref_conv1d_fwd_f64(const mb_conv1d_desc *d, const double *x, const double *w, const double *bias, double *y);
int ref_conv1d_bwd_f64(const mb_conv1d_desc *d, const double *x, const double *w, const double *bias,
                       const double *dy, double *dx, double *dw, double *dbias);

#endif
