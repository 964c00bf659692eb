/* ops.h: the op builders model code calls. Each appends one node (or a few)
 * to the graph's current tape and returns the symbolic result; shapes and
 * dtypes are checked here, while building, never in a kernel.
 *
 * Every builder is a macro passing the caller's file/line, so a mismatch
 * reads: "op 'matmul' at models/bert.c:88 (bert_self_attention) in scope
 * 'encoder.layer.0': inputs f32[2, 16, 64], f32[32, 64]: ...".
 *
 * Conventions: "last dimension" ops (norms, softmax) work on rows of the
 * last dim; broadcasting follows numpy (right-aligned, size-1 dims expand);
 * Linear weights are stored [out, in] as in PyTorch.
 */
#ifndef MB_AUTOGRAD_OPS_H
#define MB_AUTOGRAD_OPS_H

#include "autograd/graph.h"
#include "autograd/op.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- linear algebra ---- */
/* op(a) @ op(b) (+ bias[N]); op = transpose of the last two dims when t*.
 * a [..., M, K], b [..., K, N] with equal batch dims, or b 2-D (shared by
 * every batch; then trans_a must be 0). */
#define mb_matmul(g, a, b, trans_a, trans_b) mb_matmul_((g), MB_HERE, (a), (b), MB_VAR_NONE, (trans_a), (trans_b))
#define mb_matmul_bias(g, a, b, bias, trans_a, trans_b) mb_matmul_((g), MB_HERE, (a), (b), (bias), (trans_a), (trans_b))
/* PyTorch Linear: x [..., in] @ w[out, in]^T + b[out] (b may be MB_VAR_NONE). */
#define mb_linear(g, x, w, b) mb_matmul_((g), MB_HERE, (x), (w), (b), 0, 1)
mb_var mb_matmul_(mb_graph *g, mb_srcloc at, mb_var a, mb_var b, mb_var bias, int trans_a, int trans_b);

/* ---- elementwise (numpy broadcasting) ---- */
#define mb_add(g, a, b) mb_axpby_((g), MB_HERE, (a), (b), 1.0, 1.0)
#define mb_sub(g, a, b) mb_axpby_((g), MB_HERE, (a), (b), 1.0, -1.0)
#define mb_axpby(g, a, b, alpha, beta) mb_axpby_((g), MB_HERE, (a), (b), (alpha), (beta))
mb_var mb_axpby_(mb_graph *g, mb_srcloc at, mb_var a, mb_var b, double alpha, double beta);
#define mb_mul(g, a, b) mb_mul_((g), MB_HERE, (a), (b))
mb_var mb_mul_(mb_graph *g, mb_srcloc at, mb_var a, mb_var b);
/* scale*x + shift */
#define mb_scale(g, x, s) mb_affine_((g), MB_HERE, (x), (s), 0.0)
#define mb_affine(g, x, s, shift) mb_affine_((g), MB_HERE, (x), (s), (shift))
mb_var mb_affine_(mb_graph *g, mb_srcloc at, mb_var x, double scale, double shift);

/* ---- activations ---- */
#define mb_relu(g, x) mb_unary_((g), MB_HERE, MB_OP_RELU, (x))
#define mb_gelu(g, x) mb_unary_((g), MB_HERE, MB_OP_GELU, (x))
#define mb_tanh(g, x) mb_unary_((g), MB_HERE, MB_OP_TANH, (x))
#define mb_sigmoid(g, x) mb_unary_((g), MB_HERE, MB_OP_SIGMOID, (x))
#define mb_silu(g, x) mb_unary_((g), MB_HERE, MB_OP_SILU, (x))
#define mb_softplus(g, x) mb_unary_((g), MB_HERE, MB_OP_SOFTPLUS, (x))
#define mb_exp(g, x) mb_unary_((g), MB_HERE, MB_OP_EXP, (x))
mb_var mb_unary_(mb_graph *g, mb_srcloc at, int op, mb_var x);

/* ---- normalisation, softmax (last dimension) ---- */
#define mb_layernorm(g, x, w, b, eps) mb_layernorm_((g), MB_HERE, (x), (w), (b), (eps))
mb_var mb_layernorm_(mb_graph *g, mb_srcloc at, mb_var x, mb_var w, mb_var b, double eps);
#define mb_rmsnorm(g, x, w, eps) mb_rmsnorm_((g), MB_HERE, (x), (w), (eps))
mb_var mb_rmsnorm_(mb_graph *g, mb_srcloc at, mb_var x, mb_var w, double eps);
#define mb_softmax(g, x) mb_softmax_((g), MB_HERE, (x))
mb_var mb_softmax_(mb_graph *g, mb_srcloc at, mb_var x);

/* ---- loss ---- */
/* Mean softmax cross-entropy of logits [N, C] against integer labels [N]
 * (i32 or i64); rows labelled -100 are ignored (torch's ignore_index). */
#define mb_cross_entropy(g, logits, labels) mb_cross_entropy_((g), MB_HERE, (logits), (labels), -100)
mb_var mb_cross_entropy_(mb_graph *g, mb_srcloc at, mb_var logits, mb_var labels, int64_t ignore_index);

/* ---- lookups, pooling, dropout ---- */
/* table[V, H] rows gathered by integer ids [...] -> [..., H]; an id outside
 * [0, V) is a run-time error naming the position. */
#define mb_embedding(g, ids, table) mb_embedding_((g), MB_HERE, (ids), (table))
mb_var mb_embedding_(mb_graph *g, mb_srcloc at, mb_var ids, mb_var table);
/* Mean over dim 1 of x [B, L, H]; with mask [B, L] (float or int, 1 = keep)
 * the masked mean (a row with an empty mask gives 0). */
#define mb_mean_pool(g, x, mask) mb_mean_pool_((g), MB_HERE, (x), (mask))
mb_var mb_mean_pool_(mb_graph *g, mb_srcloc at, mb_var x, mb_var mask);
/* Inverted dropout with probability p; rng is a u64[2] input (seed, offset)
 * the trainer advances each step; `stream` must differ between dropout
 * sites. Same seed/offset/stream = same mask (backward and recompute). */
#define mb_dropout(g, x, p, rng, stream) mb_dropout_((g), MB_HERE, (x), (p), (rng), (stream))
mb_var mb_dropout_(mb_graph *g, mb_srcloc at, mb_var x, double p, mb_var rng, int64_t stream);

/* ---- shapes ---- */
/* Same elements, new shape (a view: no copy). One dim may be -1. */
#define mb_reshape(g, x, shape) mb_reshape_((g), MB_HERE, (x), (shape))
mb_var mb_reshape_(mb_graph *g, mb_srcloc at, mb_var x, mb_shape shape);
/* x[..., start:start+length, ...] along axis (negative axis counts from the end). */
#define mb_slice(g, x, axis, start, length) mb_slice_((g), MB_HERE, (x), (axis), (start), (length))
mb_var mb_slice_(mb_graph *g, mb_srcloc at, mb_var x, int axis, int64_t start, int64_t length);
/* x[..., index, ...]: slice of length 1 with the axis dropped. */
#define mb_select(g, x, axis, index) mb_select_((g), MB_HERE, (x), (axis), (index))
mb_var mb_select_(mb_graph *g, mb_srcloc at, mb_var x, int axis, int64_t index);
#define mb_concat(g, xs, n, axis) mb_concat_((g), MB_HERE, (xs), (n), (axis))
mb_var mb_concat_(mb_graph *g, mb_srcloc at, const mb_var *xs, int n, int axis);
/* out.dim[d] = x.dim[perm[d]] */
#define mb_permute(g, x, ndim, perm) mb_permute_((g), MB_HERE, (x), (ndim), (perm))
mb_var mb_permute_(mb_graph *g, mb_srcloc at, mb_var x, int ndim, const int *perm);
#define mb_transpose(g, x, d0, d1) mb_transpose_((g), MB_HERE, (x), (d0), (d1))
mb_var mb_transpose_(mb_graph *g, mb_srcloc at, mb_var x, int d0, int d1);
#define mb_broadcast_to(g, x, shape) mb_broadcast_to_((g), MB_HERE, (x), (shape), 1.0)
mb_var mb_broadcast_to_(mb_graph *g, mb_srcloc at, mb_var x, mb_shape shape, double scale);
/* Sum over the dimensions in which x is broadcast from `shape`. */
#define mb_sum_to(g, x, shape) mb_sum_to_((g), MB_HERE, (x), (shape), 1.0)
mb_var mb_sum_to_(mb_graph *g, mb_srcloc at, mb_var x, mb_shape shape, double scale);
/* Sum / mean of all elements -> scalar [] */
#define mb_sum(g, x) mb_sum_((g), MB_HERE, (x), 0)
#define mb_mean(g, x) mb_sum_((g), MB_HERE, (x), 1)
mb_var mb_sum_(mb_graph *g, mb_srcloc at, mb_var x, int mean);
#define mb_cast(g, x, dtype) mb_cast_((g), MB_HERE, (x), (dtype))
mb_var mb_cast_(mb_graph *g, mb_srcloc at, mb_var x, mb_dtype dtype);
#define mb_full(g, shape, dtype, value) mb_full_((g), MB_HERE, (shape), (dtype), (value))
mb_var mb_full_(mb_graph *g, mb_srcloc at, mb_shape shape, mb_dtype dtype, double value);

/* ---- sequence kernels (token-major layouts; see ops_seq.c) ---- */
/* Fused multi-head attention, softmax(q k^T * scale) v per head, never
 * forming the L x L matrix. q, k, v [B, L, H, Dh] (a Linear's [B, L, H*Dh]
 * output reshaped). key_mask: i32 [B, L], nonzero = real token (padded keys
 * get zero weight; padded query rows give 0). Varlen: B = 1 and an i32
 * cu_seqlens [nseq + 1]. scale 0 = 1/sqrt(Dh). -> [B, L, H, Dh] */
#define mb_attention(g, q, k, v, key_mask) \
  mb_attention_((g), MB_HERE, (q), (k), (v), (key_mask), MB_VAR_NONE, 0, 0.0, 0)
#define mb_attention_varlen(g, q, k, v, cu_seqlens) \
  mb_attention_((g), MB_HERE, (q), (k), (v), MB_VAR_NONE, (cu_seqlens), 0, 0.0, 0)
#define mb_attention_ex(g, q, k, v, key_mask, cu_seqlens, causal, scale) \
  mb_attention_((g), MB_HERE, (q), (k), (v), (key_mask), (cu_seqlens), (causal), (scale), 0)
/* fp8 = 1 (evaluation): q, k and v each quantised to e4m3 with its own
 * amax as scale (448 / amax: current per-tensor scaling) before the
 * product; the CPU computes on the dequantised values, a GPU runs the e4m3
 * kernel (bf16 inputs). Forward only: asking for its gradient is an error. */
mb_var mb_attention_(mb_graph *g, mb_srcloc at, mb_var q, mb_var k, mb_var v, mb_var key_mask, mb_var cu_seqlens,
                     int causal, double scale, int fp8);
/* Mamba's selective scan with D skip and SiLU(z) gate fused (MODELS.md 4.3):
 * u, delta, z [B, L, D]; A_log [D, N] (A = -exp(A_log) inside); B, C
 * [B, L, N]; D, delta_bias [D]; dt = softplus(delta + delta_bias). The
 * forward keeps one state per chunk of 128 tokens (f32, f64 for f64
 * inputs), the backward recomputes. A_log, D and delta_bias may have their
 * own float dtype (f32 master parameters beside bf16 activations on the GPU;
 * the CPU kernels want one dtype, f32 or f64, for all). -> y [B, L, D] */
#define mb_selective_scan(g, u, delta, A_log, B, C, D, z, delta_bias) \
  mb_selective_scan_((g), MB_HERE, (u), (delta), (A_log), (B), (C), (D), (z), (delta_bias), MB_VAR_NONE, 1)
#define mb_selective_scan_varlen(g, u, delta, A_log, B, C, D, z, delta_bias, cu_seqlens) \
  mb_selective_scan_((g), MB_HERE, (u), (delta), (A_log), (B), (C), (D), (z), (delta_bias), (cu_seqlens), 1)
mb_var mb_selective_scan_(mb_graph *g, mb_srcloc at, mb_var u, mb_var delta, mb_var A_log, mb_var B, mb_var C,
                          mb_var D, mb_var z, mb_var delta_bias, mb_var cu_seqlens, int delta_softplus);
/* Causal depthwise conv1d over time: x [B, L, D], w [D, W] (W <= 4; HF's
 * conv1d.weight [D, 1, W] reshaped), bias [D]; silu = 1 fuses SiLU. w and
 * bias share a float dtype that may differ from x's (GPU; the CPU kernels
 * want one). */
#define mb_conv1d(g, x, w, bias, silu) mb_conv1d_((g), MB_HERE, (x), (w), (bias), MB_VAR_NONE, (silu))
#define mb_conv1d_varlen(g, x, w, bias, cu_seqlens, silu) \
  mb_conv1d_((g), MB_HERE, (x), (w), (bias), (cu_seqlens), (silu))
mb_var mb_conv1d_(mb_graph *g, mb_srcloc at, mb_var x, mb_var w, mb_var bias, mb_var cu_seqlens, int silu);

#ifdef __cplusplus
}
#endif
#endif
