/* cuda_kernels.h: the CUDA kernels as plain C functions over device
 * pointers (built with CUDA only). The CUDA backend (cuda_backend.c) calls
 * them from the op table; tests and benchmarks call them directly.
 *
 * Conventions for every launcher:
 *  - pointers are device memory, shapes row-major and contiguous (like
 *    mb_tensor), counts int64;
 *  - work is enqueued on `s` and nothing waits for it; the return value
 *    reports argument and launch errors only (MB_EINVAL, MB_EUNSUPPORTED for
 *    a dtype without a kernel, MB_EDEVICE with CUDA's message);
 *  - data errors found on the device (an id or label out of range) are
 *    written to an mb_cuda_err_rec in device memory (the first one wins) and
 *    read back by the backend at its next synchronisation;
 *  - float tensors may be f32, bf16 or f16 (f16 where mixed precision uses
 *    it); arithmetic and accumulation are f32 (double where noted), results
 *    rounded once to the output type;
 *  - results are deterministic: the same inputs give the same bits on every
 *    run (fixed reduction trees, no floating-point atomics).
 * A kernel that needs scratch takes (ws, ws_bytes) and has a *_workspace()
 * function giving the bytes; the executor plans it like any buffer.
 */
#ifndef MB_KERNELS_CUDA_KERNELS_H
#define MB_KERNELS_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/cuda_device.h"
#include "runtime/dtype.h"
#include "runtime/error.h"
#include "runtime/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A data error found by a kernel. code: MB_EINVAL; what: MB_CUDA_ERR_*. */
typedef struct {
  int code;
  int what;
  long long index, value, bound;
} mb_cuda_err_rec;

enum {
  MB_CUDA_ERR_NONE = 0,
  MB_CUDA_ERR_EMBEDDING_ID = 1,  /* index: flat position, value: id, bound: V */
  MB_CUDA_ERR_CE_LABEL = 2,      /* index: row, value: label, bound: C */
};

/* "embedding: id 70000 at flat position 12 is outside [0, 30522)" etc. */
void mb_cuda_err_describe(const mb_cuda_err_rec *e, char *buf, size_t cap);

/* ---- fills, casts, copies ---- */

/* n elements of dt set to value: float dtypes get value rounded to dt;
 * NaN gives the canonical NaN for f32/f64 and all-ones bytes for every
 * other dtype (NaN for f16/bf16/fp8, -1 for integers), like the CPU. */
int mb_cuda_fill(void *dst, mb_dtype dt, size_t n, double value, mb_cuda_stream s) MB_NODISCARD;
/* dst = src converted: float <-> float rounded once (RN; fp8 saturating,
 * bit-exact with runtime/dtype.h), integer <-> float and integer <->
 * integer through double / int64 like the CPU kernel. */
int mb_cuda_cast(void *dst, mb_dtype to, const void *src, mb_dtype from, int64_t n, mb_cuda_stream s) MB_NODISCARD;
/* rows x row_bytes from src (row pitch src_pitch bytes) to dst (dst_pitch). */
int mb_cuda_copy_rows(void *dst, int64_t dst_pitch, const void *src, int64_t src_pitch, int64_t row_bytes,
                      int64_t rows, mb_cuda_stream s) MB_NODISCARD;
/* y[r, :] = v[:] for r < rows (v has n elements of dt). */
int mb_cuda_broadcast_rows(void *y, const void *v, mb_dtype dt, int64_t rows, int64_t n, mb_cuda_stream s) MB_NODISCARD;

/* ---- elementwise ---- */

typedef enum {
  MB_CUDA_AFFINE = 0, /* scale*x + shift */
  MB_CUDA_RELU,
  MB_CUDA_GELU, /* exact erf form */
  MB_CUDA_TANH,
  MB_CUDA_SIGMOID,
  MB_CUDA_SILU,
  MB_CUDA_SOFTPLUS, /* threshold 20 like torch */
  MB_CUDA_EXP,
  MB_CUDA_ACT_COUNT
} mb_cuda_act;

int mb_cuda_unary(mb_cuda_act act, mb_dtype dt, const void *x, void *y, int64_t n, float scale, float shift,
                  mb_cuda_stream s) MB_NODISCARD;
/* gx = f'(.) * gy, with `saved` the input x, or the output y for TANH,
 * SIGMOID and EXP (as the CPU backward saves them). */
int mb_cuda_act_grad(mb_cuda_act act, mb_dtype dt, const void *saved, const void *gy, void *gx, int64_t n,
                     mb_cuda_stream s) MB_NODISCARD;
/* y += g */
int mb_cuda_accumulate(mb_dtype dt, void *y, const void *g, int64_t n, mb_cuda_stream s) MB_NODISCARD;

typedef enum {
  MB_CUDA_AXPBY = 0, /* alpha*a + beta*b */
  MB_CUDA_MUL = 1,   /* a*b */
  MB_CUDA_SCALE = 2  /* alpha*a (broadcast_to; b unused) */
} mb_cuda_binop;

/* y = op(a, b) with numpy broadcasting of a and b to y's shape. */
int mb_cuda_binary(mb_cuda_binop op, mb_dtype dt, const void *a, const mb_shape *as, const void *b,
                   const mb_shape *bs, void *y, const mb_shape *ys, float alpha, float beta,
                   mb_cuda_stream s) MB_NODISCARD;

/* y[yshape] = scale * (x summed over the dimensions in which yshape
 * broadcasts to xshape). */
size_t mb_cuda_sum_to_workspace(const mb_shape *xs, const mb_shape *ys);
int mb_cuda_sum_to(mb_dtype dt, const void *x, const mb_shape *xs, void *y, const mb_shape *ys, float scale,
                   void *ws, size_t ws_bytes, mb_cuda_stream s) MB_NODISCARD;

/* ---- normalisation and softmax over rows of H ---- */

int mb_cuda_layernorm_fwd(mb_dtype dt, const void *x, const void *w, const void *b, void *y, float *mean,
                          float *rstd, int64_t rows, int64_t H, float eps, mb_cuda_stream s) MB_NODISCARD;
size_t mb_cuda_norm_bwd_workspace(int64_t rows, int64_t H);
int mb_cuda_layernorm_bwd(mb_dtype dt, const void *gy, const void *x, const void *w, const float *mean,
                          const float *rstd, void *dx, void *dw, void *db, int64_t rows, int64_t H, void *ws,
                          size_t ws_bytes, mb_cuda_stream s) MB_NODISCARD;
int mb_cuda_rmsnorm_fwd(mb_dtype dt, const void *x, const void *w, void *y, float *rstd, int64_t rows, int64_t H,
                        float eps, mb_cuda_stream s) MB_NODISCARD;
int mb_cuda_rmsnorm_bwd(mb_dtype dt, const void *gy, const void *x, const void *w, const float *rstd, void *dx,
                        void *dw, int64_t rows, int64_t H, void *ws, size_t ws_bytes, mb_cuda_stream s) MB_NODISCARD;
int mb_cuda_softmax_fwd(mb_dtype dt, const void *x, void *y, int64_t rows, int64_t H, mb_cuda_stream s) MB_NODISCARD;
int mb_cuda_softmax_bwd(mb_dtype dt, const void *y, const void *gy, void *dx, int64_t rows, int64_t H,
                        mb_cuda_stream s) MB_NODISCARD;

/* ---- cross-entropy (mean over rows whose label != ignore) ----
 * labels are i32 (labels_i64 = 0) or i64; lse is f32 [N]; loss is one
 * element of dt (NaN when every row is ignored, like torch). */
size_t mb_cuda_cross_entropy_workspace(int64_t N);
int mb_cuda_cross_entropy_fwd(mb_dtype dt, const void *logits, const void *labels, int labels_i64, void *loss,
                              float *lse, int64_t N, int64_t C, int64_t ignore, void *ws, size_t ws_bytes,
                              mb_cuda_err_rec *err, mb_cuda_stream s) MB_NODISCARD;
int mb_cuda_cross_entropy_bwd(mb_dtype dt, const void *gloss, const void *logits, const void *labels,
                              int labels_i64, const float *lse, void *dlogits, int64_t N, int64_t C, int64_t ignore,
                              void *ws, size_t ws_bytes, mb_cuda_err_rec *err, mb_cuda_stream s) MB_NODISCARD;

/* ---- embedding, pooling, dropout ---- */

/* y[t, :] = table[ids[t], :] for t < n; a bad id gives a NaN row and an
 * error record. */
int mb_cuda_embedding_fwd(mb_dtype dt, const void *ids, int ids_i64, const void *table, void *y, int64_t n,
                          int64_t V, int64_t H, mb_cuda_err_rec *err, mb_cuda_stream s) MB_NODISCARD;
/* dtable = scatter-add of gy rows by id. Deterministic and bitwise
 * reproducible: every term is converted to a 64-bit fixed-point integer
 * (a power-of-two scale chosen on the device from max|gy| and n so the sum
 * cannot overflow) and added with integer atomics, whose order does not
 * matter; then converted back. Rounding: at most n * max|gy| * 2^-62 per
 * element. A non-finite gy makes the whole dtable NaN (so an fp16 overflow
 * check sees it). Workspace: 256 + V*H*8 bytes. */
size_t mb_cuda_embedding_bwd_workspace(int64_t V, int64_t H);
int mb_cuda_embedding_bwd(mb_dtype dt, const void *ids, int ids_i64, const void *gy, void *dtable, int64_t n,
                          int64_t V, int64_t H, void *ws, size_t ws_bytes, mb_cuda_err_rec *err,
                          mb_cuda_stream s) MB_NODISCARD;

/* y[b, :] = mean over l of x[b, l, :], weighted by mask[b, l] when mask is
 * not NULL (any dtype; a row with zero total weight gives 0). */
int mb_cuda_mean_pool_fwd(mb_dtype dt, const void *x, const void *mask, mb_dtype mask_dt, void *y, int64_t B,
                          int64_t L, int64_t H, mb_cuda_stream s) MB_NODISCARD;
size_t mb_cuda_mean_pool_bwd_workspace(int64_t B);
int mb_cuda_mean_pool_bwd(mb_dtype dt, const void *gy, const void *mask, mb_dtype mask_dt, void *dx, int64_t B,
                          int64_t L, int64_t H, void *ws, size_t ws_bytes, mb_cuda_stream s) MB_NODISCARD;

/* Inverted dropout on the Philox stream of kernels/cpu/cpu_dropout.c:
 * element i keeps iff u01(Philox(counter = ((off+i)/4 lo, hi, stream, 0),
 * key = seed).lane[(off+i)%4]) >= p. rng is a device u64[2] = (seed, offset)
 * read by the kernel (so a captured graph follows the trainer's updates). */
int mb_cuda_dropout(mb_dtype dt, const void *x, void *y, int64_t n, double p, const uint64_t *rng, uint32_t stream,
                    mb_cuda_stream s) MB_NODISCARD;

/* ---- shapes (bytes only: any dtype) ---- */

/* out dim d = x dim perm[d]; x has shape xs. */
int mb_cuda_permute(const void *x, const mb_shape *xs, void *y, const int *perm, size_t elem_size,
                    mb_cuda_stream s) MB_NODISCARD;

/* ---- optimizers and gradient statistics over flat buffers ---- */

/* One segment of a flat buffer: [begin, end), weight decay on or off. */
typedef struct {
  int64_t begin, end;
  int decay;
} mb_cuda_segment;

/* A segment table in device memory, reused while unchanged. */
typedef struct mb_cuda_segtab mb_cuda_segtab;
int mb_cuda_segtab_new(mb_cuda_segtab **out) MB_NODISCARD;
void mb_cuda_segtab_free(mb_cuda_segtab *t);
/* Upload (only if different from the last upload) n segments. */
int mb_cuda_segtab_set(mb_cuda_segtab *t, const int64_t *begin, const int64_t *end, const uint8_t *decay, int n,
                       mb_cuda_stream s) MB_NODISCARD;

/* Hyper-parameters as the optimizer holds them (doubles); the derived f32
 * scalars are rounded from double as kernels/cpu/cpu_optim_body.h does. */
typedef struct {
  double lr, beta1, beta2, eps, weight_decay;
  int64_t step; /* 1 on the first update */
  double grad_scale;
} mb_cuda_adamw_hparams;

/* torch.optim.AdamW (as kernels/cpu/cpu_optim_body.h) over every segment in
 * one launch. f32 only (master weights). grad_scale_dev (may be NULL): a
 * device float multiplied into grad_scale (the loss scaler's 1/S). */
int mb_cuda_adamw(float *param, const float *grad, float *m, float *v, const mb_cuda_segtab *t,
                  const mb_cuda_adamw_hparams *h, const float *grad_scale_dev, mb_cuda_stream s) MB_NODISCARD;
int mb_cuda_sgd(float *param, const float *grad, float *momentum_buf, const mb_cuda_segtab *t, double lr,
                double momentum, double dampening, double weight_decay, int nesterov, int64_t step, double grad_scale,
                mb_cuda_stream s) MB_NODISCARD;
/* *out_dev (a device double) = sum of squares over the segments (f32, bf16
 * or f16 data), accumulated in double in a fixed order. */
size_t mb_cuda_sumsq_workspace(const mb_cuda_segtab *t);
int mb_cuda_sumsq(const void *x, mb_dtype dt, const mb_cuda_segtab *t, double *out_dev, void *ws, size_t ws_bytes,
                  mb_cuda_stream s) MB_NODISCARD;
/* *flag_dev (an int) = 1 if any of the n elements is NaN or +-Inf (left
 * unchanged otherwise: zero it first). The fp16 loss scaler's check. */
int mb_cuda_nonfinite_check(const void *x, mb_dtype dt, int64_t n, int *flag_dev, mb_cuda_stream s) MB_NODISCARD;

/* ---- fp8 with delayed scaling ----
 * Per-tensor state in device memory (TransformerEngine's recipe): a
 * quantisation uses the scale computed from the amax history of earlier
 * steps and records this tensor's amax; mb_cuda_fp8_update() then pushes
 * that amax into the history and sets scale = fp8_max / max(history) /
 * 2^margin (kept when the history is all zero or not finite). */
#define MB_FP8_HISTORY 16
typedef struct {
  float scale_inv; /* the GEMM's dequantisation factor (a_scale/b_scale); first, so that it
                      sits 16-byte aligned in an array of metas, as cuBLASLt's fp8 kernels need */
  float scale;     /* x * scale is quantised */
  float amax;      /* max |x| since the last update (as float bits, atomicMax) */
  int pos;         /* next history slot */
  float history[MB_FP8_HISTORY];
} mb_fp8_meta;
#ifdef __cplusplus
static_assert(sizeof(mb_fp8_meta) % 16 == 0, "mb_fp8_meta arrays keep scale_inv 16-byte aligned");
#else
_Static_assert(sizeof(mb_fp8_meta) % 16 == 0, "mb_fp8_meta arrays keep scale_inv 16-byte aligned");
#endif

/* meta->scale = scale_inv = 1, history zero. */
int mb_cuda_fp8_meta_init(mb_fp8_meta *meta_dev, int n, mb_cuda_stream s) MB_NODISCARD;
/* dst (e4m3 or e5m2) = saturate(src * meta->scale); records amax. With
 * transpose, src is [rows, cols] and dst [cols, rows]. dst NULL: only the
 * amax is recorded. */
int mb_cuda_fp8_quantize(void *dst, mb_dtype fp8, const void *src, mb_dtype src_dt, int64_t rows, int64_t cols,
                         int transpose, mb_fp8_meta *meta_dev, mb_cuda_stream s) MB_NODISCARD;
int mb_cuda_fp8_update(mb_fp8_meta *meta_dev, int n, mb_dtype fp8, int margin, mb_cuda_stream s) MB_NODISCARD;
/* Current (just-in-time) scaling: dst = saturate(src * fp8_max / amax(src))
 * over n elements, meta (one, device) reset and left holding that scale
 * and its inverse (meta->scale_inv: the dequantisation factor). All zero:
 * scale 1; a non-finite amax keeps scale 1 (values saturate, NaN stays). */
int mb_cuda_fp8_quantize_current(void *dst, mb_dtype fp8, const void *src, mb_dtype src_dt, int64_t n,
                                 mb_fp8_meta *meta_dev, mb_cuda_stream s) MB_NODISCARD;

#ifdef __cplusplus
}
#endif
#endif
