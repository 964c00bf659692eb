/* cuda_backend_internal.h: the CUDA backend's state, shared by the backend
 * object (cuda_backend.c) and the op-table glue (cuda_backend_ops.c). */
#ifndef MB_KERNELS_CUDA_BACKEND_INTERNAL_H
#define MB_KERNELS_CUDA_BACKEND_INTERNAL_H

#include <cuda_runtime_api.h>
#include <pthread.h>

#include "kernels/cuda/cuda.h"
#include "kernels/cuda/cuda_kernels.h"

/* One tape of one executor: warmed (ran eagerly once), captured, or
 * eager-only after a failed capture. */
typedef enum { GRAPH_WARM = 0, GRAPH_CAPTURED = 1, GRAPH_EAGER_ONLY = 2 } graph_state;

typedef struct {
  const void *ex;
  int tape;
  int used;
  graph_state state;
  uint64_t fingerprint;
  uint64_t stamp; /* last use, for eviction */
  cudaGraphExec_t exec;
} graph_entry;

#define MB_CUDA_GRAPH_CACHE 64

/* What the fp8 path keeps per matmul node: the two operands' scaling state
 * and their quantised copies (A as [M, K], B as [N, K]). */
typedef struct {
  const void *node;
  int64_t M, N, K;
  mb_fp8_meta *meta; /* [2] device: A, B */
  uint8_t *qa, *qb;
  int disabled;      /* cuBLASLt had no fp8 algorithm: plain matmul */
} fp8_state;

typedef struct {
  mb_backend be; /* first: the backend handed out */
  mb_cuda_backend_opts opts;
  mb_cuda_stream stream;
  mb_device_allocator *alloc;
  mb_gemm_ctx *gemm;
  mb_cuda_err_rec *err;  /* device: the first data error of kernels */
  int *flag;             /* device: the non-finite check's flag */
  double *sumsq_out;     /* device */
  void *scratch;         /* device: sumsq partials (grown outside captures) */
  size_t scratch_bytes;
  mb_cuda_segtab *seg_update, *seg_sumsq;
  pthread_mutex_t mu;
  graph_entry graphs[MB_CUDA_GRAPH_CACHE];
  uint64_t clock;
  mb_cuda_graph_stats gstats;
  fp8_state *fp8;
  int n_fp8, cap_fp8;
  int64_t fp8_attentions; /* attention forwards run in e4m3 (eagerly or into a capture) */
} cuda_backend;

static inline cuda_backend *cuda_of(mb_backend *be) { return (cuda_backend *)be->ctx; }

/* Op glue (cuda_backend_ops.c). */
void mb_cuda_register_ops(void);
void mb_cuda_fp8_states_free(cuda_backend *c);

#endif
