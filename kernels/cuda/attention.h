/* attention.h: fused multi-head attention on CUDA GPUs, forward and
 * backward, and the dispatcher that picks a kernel and says why.
 *
 * Same problem, layout and semantics as the CPU kernels (kernels/cpu/attention.h),
 * described by the same mb_attn_desc, so the op table hands either backend
 * the same attributes. Differences, all about where things live:
 *  - every pointer here is DEVICE memory: q, k, v, out, lse, the gradients,
 *    and also the descriptor's key_mask ([B, L] int32) and cu_seqlens
 *    ([nseq + 1] int32). The host never reads them, so a call can be captured
 *    in a CUDA graph and cu_seqlens can change between replays;
 *  - block_q, block_k and nthreads are the CPU's tiling knobs and are ignored;
 *  - cu_seqlens is not validated on the host (it is device data). The kernels
 *    clamp every sequence to [0, seqlen], so a bad cu_seqlens gives wrong
 *    numbers, never an out-of-bounds access; mb_cpu_attn_check defines valid.
 * Semantics (as on the CPU): masked keys get exactly zero weight; padded
 * query rows and the varlen budget's tail (tokens cu_seqlens[nseq] .. T-1)
 * get out = 0, lse = +inf and zero gradients; lse is log(sum(exp(scale*s)))
 * per (token, head) in f32, +inf for rows that see no key.
 *
 * Kernels (ATTENTION.md has the details, resource usage and measurements):
 *  - FLASH: FlashAttention-2 on tensor cores (mma.sync m16n8k16, ldmatrix,
 *    cp.async), sm_80 and newer, bf16 or f16 with f32 accumulation, head_dim
 *    64 or 128. Forward: one CTA per (128-query tile, head, sequence), online
 *    softmax, saves only lse. Backward: one CTA per (64-key tile, head,
 *    sequence) owning dK and dV, and a second pass, one CTA per 64-query
 *    tile, that recomputes S and dP and sums dQ over the key tiles in order:
 *    every output is the same bits on every run (or,
 *    mb_cuda_attn_set_deterministic(0), one pass adding dQ with f32 atomics
 *    as FlashAttention-2 does: fewer FLOPs, dq's last bits vary).
 *  - FLASH_FP8: the forward with e4m3 q, k, v (per-tensor descales, P
 *    quantised to e4m3 with a fixed 2^8 scale as FlashAttention-3 does),
 *    mma.sync m16n8k32, sm_89 and newer, head_dim 64 or 128; out is bf16.
 *    On sm_90 the forward tiling (below) picks its Hopper forms: 2-3 the
 *    wgmma kernel, 4-6 the pipelined one (the default there), 7-8 the
 *    warp-specialised persistent one (TMA, as bf16 tiling 7; under 7 the
 *    consumers transpose V, under 8 the producer's warps do).
 *  - REFERENCE: one thread block per (query row, head), f32 arithmetic, no
 *    tensor cores, any head_dim, f32/bf16/f16 (and e4m3 forward): the
 *    universal fallback and the tests' second opinion. Deterministic.
 *
 * Every function returns MB_OK or MB_EINVAL (bad arguments), MB_EUNSUPPORTED
 * (no kernel for this request; the message says why) or MB_EDEVICE (a CUDA
 * error, with CUDA's message). Work is enqueued on `stream` and nothing
 * waits for it. Gradients are overwritten, not accumulated into.
 */
#ifndef MB_KERNELS_CUDA_ATTENTION_H
#define MB_KERNELS_CUDA_ATTENTION_H

#include <stddef.h>

#include "kernels/cpu/attention.h"
#include "runtime/dtype.h"
#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

struct CUstream_st; /* cudaStream_t is struct CUstream_st *; NULL = the default stream */

/* ---- the plan: which kernel, and why (pure C; no CUDA needed) ---------- */

typedef enum {
  MB_CUDA_ATTN_AUTO = 0,      /* (request) let the dispatcher choose */
  MB_CUDA_ATTN_REFERENCE = 1, /* f32 arithmetic, one block per query row */
  MB_CUDA_ATTN_FLASH = 2,     /* bf16/f16 tensor cores (request: also means FLASH_FP8 for e4m3) */
  MB_CUDA_ATTN_FLASH_FP8 = 3  /* e4m3 tensor cores, forward only */
} mb_cuda_attn_kernel;

typedef enum { MB_CUDA_ATTN_FWD = 0, MB_CUDA_ATTN_BWD = 1 } mb_cuda_attn_pass;

typedef struct {
  mb_dtype dtype; /* of q, k, v (f32, bf16, f16; f8e4m3 forward only) */
  int cc;         /* compute capability x 10: 80 (A100), 89 (L4), 90 (H100) */
  mb_cuda_attn_pass pass;
  int aligned16;             /* 1 if every tensor pointer is 16-byte aligned */
  mb_cuda_attn_kernel force; /* MB_CUDA_ATTN_AUTO, or a kernel the caller insists on */
} mb_cuda_attn_request;

typedef struct {
  mb_cuda_attn_kernel kernel;
  int fallback;     /* 1: a slower kernel than this dtype's fused one (reason says why) */
  char reason[512]; /* one sentence for the log, like SDPA's warnings */
} mb_cuda_attn_plan;

/* Check the descriptor without reading device memory (sizes, modes, limits
 * of the CUDA grid); MB_EINVAL naming the field. */
int mb_cuda_attn_check(const mb_attn_desc *d) MB_NODISCARD;

/* Choose a kernel. MB_OK with *plan filled; MB_EUNSUPPORTED when nothing
 * can run the request (f64, fp8 backward, a forced kernel that cannot run
 * it: the message says why, and plan->reason too); MB_EINVAL for a bad
 * descriptor or request. */
int mb_cuda_attn_choose(const mb_attn_desc *d, const mb_cuda_attn_request *req, mb_cuda_attn_plan *plan) MB_NODISCARD;

const char *mb_cuda_attn_kernel_name(mb_cuda_attn_kernel k); /* "flash", "reference", ... */

/* "auto" | "reference" | "flash" (the MAMBERT_ATTN_KERNEL environment
 * variable, read by the launchers) -> force; NULL or "" is auto. */
int mb_cuda_attn_parse_force(const char *s, mb_cuda_attn_kernel *force) MB_NODISCARD;

/* The once-per-shape key the launchers log under ("attn fwd bf16 B=4 L=512
 * H=12 D=64 padded sm90 -> flash"). */
void mb_cuda_attn_plan_key(const mb_attn_desc *d, const mb_cuda_attn_request *req, const mb_cuda_attn_plan *plan,
                           char *buf, size_t cap);

/* ---- the dispatcher (built with CUDA only) ------------------------------ */

/* Forward. q, k, v, out: [tokens, H, Dh] of dtype dt (f32, bf16, f16);
 * lse: [tokens, H] f32. Picks a kernel for the current device (honouring
 * MAMBERT_ATTN_KERNEL), logs the choice once per shape (a fallback at warn
 * level with the reason, the fused path at debug level), runs it. */
int mb_cuda_attn_fwd(const mb_attn_desc *d, mb_dtype dt, const void *q, const void *k, const void *v, void *out,
                     float *lse, struct CUstream_st *stream) MB_NODISCARD;

/* Backward. out and lse are the forward's, dout = dLoss/dout; writes dq, dk,
 * dv (same dtype as q). Needs a device workspace of
 * mb_cuda_attn_bwd_workspace() bytes, 16-byte aligned (the dQ accumulator,
 * 4 bytes an element, then rowsum(dO * O), lse and a dQ semaphore per token
 * and head: O(tokens), never O(L^2)). */
size_t mb_cuda_attn_bwd_workspace(const mb_attn_desc *d);
int mb_cuda_attn_bwd(const mb_attn_desc *d, mb_dtype dt, const void *q, const void *k, const void *v, const void *out,
                     const float *lse, const void *dout, void *dq, void *dk, void *dv, void *workspace,
                     size_t workspace_bytes, struct CUstream_st *stream) MB_NODISCARD;

/* FP8 forward for evaluation: q8, k8, v8 e4m3 [tokens, H, Dh]; the real
 * values are q8 * (*q_descale) etc. (descales are device f32 scalars, so
 * delayed scaling can update them without a host round trip; NULL = 1);
 * out is bf16 [tokens, H, Dh], lse f32. */
int mb_cuda_attn_fwd_fp8(const mb_attn_desc *d, const void *q8, const void *k8, const void *v8, const float *q_descale,
                         const float *k_descale, const float *v_descale, void *out_bf16, float *lse,
                         struct CUstream_st *stream) MB_NODISCARD;

/* ---- one kernel, no dispatch (tests, benchmarks) ------------------------ */

/* MB_EUNSUPPORTED (with the plan's reason) when `kernel` cannot run the
 * request on the current device. */
int mb_cuda_attn_fwd_with(mb_cuda_attn_kernel kernel, const mb_attn_desc *d, mb_dtype dt, const void *q, const void *k,
                          const void *v, void *out, float *lse, struct CUstream_st *stream) MB_NODISCARD;
int mb_cuda_attn_bwd_with(mb_cuda_attn_kernel kernel, const mb_attn_desc *d, mb_dtype dt, const void *q, const void *k,
                          const void *v, const void *out, const float *lse, const void *dout, void *dq, void *dk,
                          void *dv, void *workspace, size_t workspace_bytes, struct CUstream_st *stream) MB_NODISCARD;
int mb_cuda_attn_fwd_fp8_with(mb_cuda_attn_kernel kernel, const mb_attn_desc *d, const void *q8, const void *k8,
                              const void *v8, const float *q_descale, const float *k_descale, const float *v_descale,
                              void *out_bf16, float *lse, struct CUstream_st *stream) MB_NODISCARD;

/* A self-test of the Hopper building blocks under the wgmma tilings
 * (kernels/cuda/attention_probe.cu): each wgmma operand layout (no swizzle
 * K-major and MN-major, the register A fragment, the 128-byte swizzle
 * after a TMA load, K-major and MN-major, e4m3, and e4m3 after a TMA load
 * with the 128- and the 64-byte swizzle), run alone on the current
 * device on inputs whose products are exact, compared element by element.
 * *failed = the number of probes that were not exact; `report` gets a line
 * per probe ("ss: exact", or how many elements were wrong and the first).
 * workspace: device memory of mb_cuda_attn_hopper_probe_workspace() bytes.
 * MB_EUNSUPPORTED where the wgmma tilings cannot run (not sm_90, no sm_90a
 * image). */
size_t mb_cuda_attn_hopper_probe_workspace(void);
int mb_cuda_attn_hopper_probe(void *workspace, size_t bytes, char *report, size_t report_len,
                              int *failed) MB_NODISCARD;

/* The tiling of the bf16/f16 flash forward, process-wide: 0 (4 warps x 32
 * query rows, mma.sync; the default off Hopper), 1 (8 warps x 16 rows,
 * mma.sync), 2
 * (two warpgroups x 64 rows on Hopper's wgmma, 128-key tiles), 3 (as 2
 * with 64-key tiles and two CTAs per SM; head_dim 64 only), 4 (as 2 with
 * the softmax of tile j + 1 under the product of tile j) or 5 (as 4,
 * warp-specialised: a producer warpgroup loads Q, K and V with TMA into
 * 128-byte-swizzled tiles and mbarriers hand them over) or 6 (as 5, the
 * two consumer warpgroups taking turns to issue their products: ping-pong)
 * or 7 (as 5, persistent: a CTA per SM walks the query tiles, loading the
 * next tile's Q and keys while it finishes one) or 8 (as 7, with three
 * consumer warpgroups and 192-row tiles at head_dim 64; 7 at 128) or 9 (as
 * 6, with 3/16 of the softmax's exponentials computed by a polynomial on
 * the FMA pipe instead of the exponential unit: within 7.5e-5 of each P;
 * e4m3 runs 8's kernel with the same) or 10 (as 5 with the same; e4m3 as
 * under 9). 2-10 run
 * on sm_90 GPUs with an sm_90a build only, else the forward fails with
 * MB_EUNSUPPORTED; 5 is the default there. -1: the default again (chosen at
 * the next call). For the benchmark and the tests, which run them all. Not
 * thread-safe against running kernels. */
int mb_cuda_attn_set_flash_fwd_variant(int variant) MB_NODISCARD;
/* *ok = whether tiling `variant` runs on the current device with this
 * build. */
int mb_cuda_attn_flash_fwd_variant_runs(int variant, int *ok) MB_NODISCARD;

/* The tiling of the bf16/f16 flash backward, process-wide: 0 (mma.sync, dQ
 * by the mode below), 1 (dK, dV on Hopper's wgmma, two warpgroups x 64
 * keys; dQ always from the deterministic dQ pass; sm_90 GPUs with an sm_90a
 * build only, else MB_EUNSUPPORTED) or 2 (1 with both kernels
 * warp-specialised: a TMA producer warpgroup, no CTA barrier per tile;
 * same conditions; it has the fast mode below: dQ by atomics from the
 * dK/dV kernel) or 3 (2's dK/dV kernel with FlashAttention-3's dQ and
 * no dQ kernel: one warpgroup sums a query tile's dQ over the CTA's 128
 * keys into shared memory, the TMA unit adds it to the accumulator, in
 * key-tile order -- the same bits every run -- or in the fast mode in any
 * order) or 4 (3 with 128-query tiles at head_dim 64, FlashAttention-3's
 * tile shape there, both warpgroups summing half of each tile's dQ; the
 * same sums in the same order as 3, so the same bits; at head_dim 128 it
 * runs 3); -1 the default again (on sm_90 with sm_90a code: 3; elsewhere
 * 0). For the benchmark and the tests. Not thread-safe against running
 * kernels. */
int mb_cuda_attn_set_flash_bwd_variant(int variant) MB_NODISCARD;
/* Until a program sets the tilings, the environment chooses them, once:
 * MAMBERT_ATTN_TILING=wgmma gives forward tiling 2 and backward tiling 1,
 * MAMBERT_ATTN_TILING=F or F,B forward tiling F (0-10) and backward B (0-4,
 * 0 when left out), each with a warning and tiling 0 where the wgmma
 * tilings cannot run; unset or "default": what an H200 measured fastest
 * (kernels/cuda/ATTENTION.md) -- with sm_90a code on sm_90 forward 5 and
 * backward 3, else 0 and 0. */
int mb_cuda_attn_flash_bwd_variant_runs(int variant, int *ok) MB_NODISCARD;

/* The flash backward's dQ, process-wide: 1 (default) a separate dQ pass
 * summing in a fixed order (the same bits every run), 0 f32 atomics in the
 * main kernel (dq's last bits depend on the order of the adds; backward
 * tilings 0 and 2; tilings 3-4 add dQ in the main kernel in either mode,
 * ordered when deterministic; tiling 1 is deterministic either way). Not thread-safe
 * against running kernels. */
int mb_cuda_attn_set_deterministic(int on) MB_NODISCARD;

/* Registers the kernels of MB_OP_ATTENTION and MB_OP_ATTENTION_GRAD for
 * the CUDA backend (attention_ops.c; called by mb_cuda_register_ops). */
void mb_cuda_attn_register_ops(void);

/* The compute capability (x 10) of the current device. */
int mb_cuda_attn_device_cc(int *cc) MB_NODISCARD;

#ifdef __cplusplus
}
#endif
#endif
