/* cuda.h: the CUDA backend (built with CUDA only): an mb_backend whose
 * memory is device memory from the caching allocator, whose kernels are
 * kernels/cuda's, and whose run_tape replays each compiled tape as one
 * CUDA graph.
 *
 *   mb_backend *gpu;
 *   MB_TRY(mb_cuda_backend_create(NULL, &gpu));   // device 0, graphs on
 *   MB_TRY(mb_exec_new(g, gpu, &ex));              // same graphs as on the CPU
 *   ... mb_exec_set_input / forward / backward / optimizer steps ...
 *   mb_exec_free(ex); mb_optimizer_free(o); mb_params_free(p);
 *   mb_cuda_backend_destroy(gpu);                  // last: it owns the memory
 *
 * Execution. Everything is enqueued on the backend's one stream, in tape
 * order; nothing waits until a copy_out, a sync, or an optimizer step that
 * needs a number on the host (sumsq). copy_in returns once the host buffer
 * may be reused (a pinned source is waited for). Errors found on the device
 * (an embedding id or a label out of range) are reported by the next sync or
 * copy_out, naming the position and the value.
 *
 * CUDA graphs (opts.graphs, default on; the counterpart of
 * torch.compile(mode="reduce-overhead")): the first run of a tape of an
 * executor runs eagerly (it loads kernels, picks the GEMM algorithms and
 * allocates what the fp8 path keeps); the second is captured into a CUDA
 * graph and launched; later runs launch the graph. A capture is keyed by
 * the executor and tape and fingerprinted by every value's pointer, dtype
 * and shape and every node's op and attributes: when the arena is re-bound
 * (the program cache grew it) or anything else changes, the tape runs
 * eagerly once and is captured again. Inputs live at fixed addresses in the
 * arena, so mb_exec_set_input before each replay is all a step needs.
 * What a capture cannot hold makes that tape run eagerly from then on, with
 * one warning: a backend sync inside the tape (per-node profiling: turn
 * graphs off for it), or host code in a gradient-ready hook — a hook runs
 * once, while its tape is captured; work it enqueues on CUDA streams
 * (events, NCCL) is captured and replayed, host work is not.
 *
 * Mixed precision (model-level casts): parameters and their gradients stay
 * f32 (the master weights, updated by AdamW in f32); model code casts what
 * should run in reduced precision (mb_cast(g, w, MB_BF16) before a matmul,
 * activations into bf16) and casts the logits back to f32 for the loss.
 * The casts' backward casts gradients back, so the f32 gradients arrive in
 * the store. Matmuls accumulate in f32 (bf16 x bf16 -> bf16 rounds once);
 * norms keep f32 statistics. For fp16, scale the loss by an input S
 * (loss_scaled = mb_mul(g, loss, s_input)), check the gradients with
 * mb_cuda_grads_nonfinite, and let mb_loss_scaler decide (autograd/loss_scaler.h).
 * fp8 (opts.fp8_matmul): forward-tape matmuls (Linear layers in
 * training and evaluation) quantise both operands to e4m3 with delayed
 * per-tensor scaling (amax history of 16, TransformerEngine's recipe) and
 * run cuBLASLt's fp8 GEMM; backward matmuls stay in the operands' dtype. A
 * matmul cuBLASLt cannot run in fp8 (shape, alignment) falls back, logged
 * once.
 */
#ifndef MB_KERNELS_CUDA_CUDA_H
#define MB_KERNELS_CUDA_CUDA_H

#include <stdint.h>

#include "autograd/backend.h"
#include "kernels/cuda/gemm.h"
#include "runtime/alloc.h"
#include "runtime/cuda_device.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int device;            /* CUDA ordinal (default 0) */
  int graphs;            /* replay tapes as CUDA graphs (default 1) */
  int tf32;              /* f32 matmuls on tf32 tensor cores (default 0: full f32) */
  int fp8_matmul;        /* forward matmuls in fp8 e4m3 (default 0) */
  size_t gemm_workspace; /* bytes for cuBLASLt (0: 32 MiB) */
} mb_cuda_backend_opts;

mb_cuda_backend_opts mb_cuda_backend_defaults(void);

/* A backend on opts->device (NULL: defaults); registers the CUDA kernels.
 * MB_EUNSUPPORTED naming the reason when there is no usable GPU. */
int mb_cuda_backend_create(const mb_cuda_backend_opts *opts, mb_backend **out) MB_NODISCARD;
/* Waits for the device, then frees everything (the parameter stores and
 * executors made on it must be freed first). */
void mb_cuda_backend_destroy(mb_backend *be);
/* Register the CUDA kernels into the op table (idempotent). */
void mb_kernels_cuda_init(void);

/* 1 if be is a CUDA backend made by mb_cuda_backend_create. */
int mb_is_cuda_backend(const mb_backend *be);
mb_cuda_stream mb_cuda_backend_stream(mb_backend *be);
mb_device_allocator *mb_cuda_backend_allocator(mb_backend *be);
mb_gemm_ctx *mb_cuda_backend_gemm(mb_backend *be);
/* Graphs on or off from now on (captured graphs are kept). */
void mb_cuda_backend_set_graphs(mb_backend *be, int on);
void mb_cuda_backend_set_fp8(mb_backend *be, int on);
void mb_cuda_backend_set_tf32(mb_backend *be, int on);

typedef struct {
  uint64_t eager_runs;  /* tapes run node by node */
  uint64_t captures;    /* tapes captured into a graph */
  uint64_t replays;     /* graph launches (a capture's first launch included) */
  uint64_t fallbacks;   /* captures that failed: that tape runs eagerly */
  int graphs_held;
} mb_cuda_graph_stats;
mb_cuda_graph_stats mb_cuda_backend_graph_stats(mb_backend *be);
/* The fp8 paths: forward matmul nodes that run in fp8 (opts.fp8_matmul),
 * those that fell back to their own dtype (cuBLASLt refused; logged once),
 * and the e4m3 attention forwards run. */
typedef struct {
  int matmuls;   /* nodes with fp8 state */
  int fallbacks; /* of which run in their own dtype */
  int64_t attentions; /* attention forwards (fp8 nodes: mb_attention_ with fp8) run in e4m3, eagerly or into a
                         graph capture (a graph's replays are not counted) */
} mb_cuda_fp8_stats;
mb_cuda_fp8_stats mb_cuda_backend_fp8_stats(mb_backend *be);
/* Destroy the graphs captured for ex (e.g. before freeing it, to release
 * their memory early; they are released with the backend otherwise). */
void mb_cuda_backend_forget(mb_backend *be, const void *ex);

/* Wait for the stream and report a device-side data error, if any. */
int mb_cuda_backend_check(mb_backend *be) MB_NODISCARD;

/* *found = 1 if any of the n elements of the gradient buffer is NaN or
 * +-Inf (waits for the stream). The fp16 loss scaler's check. */
int mb_cuda_grads_nonfinite(mb_backend *be, const void *grad, mb_dtype dt, int64_t n, int *found) MB_NODISCARD;

#ifdef __cplusplus
}
#endif
#endif
