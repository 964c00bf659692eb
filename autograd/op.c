/* op.c: the op table (one entry per op: name, arity, flags, inference,
 * backward rule, attribute names) and the per-backend kernel slots. */
#include "autograd/op.h"

#include <stdatomic.h>
#include <string.h>

#include "autograd/ops_internal.h"

#define BIT(j) (1u << (j))

static const mb_op_def op_table[MB_OP_COUNT] = {
    [MB_OP_FULL] = {"full", 0, 0, 0, 0, mb_infer_full, NULL, {"dtype"}, {"value"}, 1},
    [MB_OP_COPY] = {"copy", 1, 1, 0, BIT(0), mb_infer_same, mb_backward_copy, {0}, {0}, 0},
    [MB_OP_GRAD_ACCUMULATE] = {"grad_accumulate", 1, 1, MB_OPF_READS_OUTPUT, 0, mb_infer_same, NULL, {0}, {0}, 0},
    [MB_OP_MATMUL] = {"matmul", 2, 3, 0, BIT(0) | BIT(1) | BIT(2), mb_infer_matmul, mb_backward_matmul,
                      {"trans_a", "trans_b"}, {0}, 0},
    [MB_OP_ADD] = {"add", 2, 2, 0, BIT(0) | BIT(1), mb_infer_binary, mb_backward_add, {0}, {"alpha", "beta"}, 0},
    [MB_OP_MUL] = {"mul", 2, 2, 0, BIT(0) | BIT(1), mb_infer_binary, mb_backward_mul, {0}, {0}, 0},
    [MB_OP_AFFINE] = {"affine", 1, 1, 0, BIT(0), mb_infer_float_same, mb_backward_affine, {0}, {"scale", "shift"}, 0},
    [MB_OP_RELU] = {"relu", 1, 1, 0, BIT(0), mb_infer_float_same, mb_backward_act, {0}, {0}, 0},
    [MB_OP_GELU] = {"gelu", 1, 1, 0, BIT(0), mb_infer_float_same, mb_backward_act, {0}, {0}, 0},
    [MB_OP_TANH] = {"tanh", 1, 1, 0, BIT(0), mb_infer_float_same, mb_backward_act, {0}, {0}, 0},
    [MB_OP_SIGMOID] = {"sigmoid", 1, 1, 0, BIT(0), mb_infer_float_same, mb_backward_act, {0}, {0}, 0},
    [MB_OP_SILU] = {"silu", 1, 1, 0, BIT(0), mb_infer_float_same, mb_backward_act, {0}, {0}, 0},
    [MB_OP_SOFTPLUS] = {"softplus", 1, 1, 0, BIT(0), mb_infer_float_same, mb_backward_act, {0}, {0}, 0},
    [MB_OP_EXP] = {"exp", 1, 1, 0, BIT(0), mb_infer_float_same, mb_backward_act, {0}, {0}, 0},
    [MB_OP_ACT_GRAD] = {"act_grad", 2, 2, 0, 0, mb_infer_act_grad, NULL, {"act"}, {0}, 0},
    [MB_OP_LAYERNORM] = {"layernorm", 3, 3, 0, BIT(0) | BIT(1) | BIT(2), mb_infer_layernorm, mb_backward_layernorm,
                         {0}, {"eps"}, 0},
    [MB_OP_LAYERNORM_GRAD] = {"layernorm_grad", 5, 5, 0, 0, mb_infer_layernorm_grad, NULL, {0}, {0}, 0},
    [MB_OP_RMSNORM] = {"rmsnorm", 2, 2, 0, BIT(0) | BIT(1), mb_infer_rmsnorm, mb_backward_rmsnorm, {0}, {"eps"}, 0},
    [MB_OP_RMSNORM_GRAD] = {"rmsnorm_grad", 4, 4, 0, 0, mb_infer_rmsnorm_grad, NULL, {0}, {0}, 0},
    [MB_OP_SOFTMAX] = {"softmax", 1, 1, 0, BIT(0), mb_infer_float_same, mb_backward_softmax, {0}, {0}, 0},
    [MB_OP_SOFTMAX_GRAD] = {"softmax_grad", 2, 2, 0, 0, mb_infer_softmax_grad, NULL, {0}, {0}, 0},
    [MB_OP_CROSS_ENTROPY] = {"cross_entropy", 2, 2, 0, BIT(0), mb_infer_cross_entropy, mb_backward_cross_entropy,
                             {"ignore_index"}, {0}, 0},
    [MB_OP_CROSS_ENTROPY_GRAD] = {"cross_entropy_grad", 4, 4, 0, 0, mb_infer_cross_entropy_grad, NULL,
                                  {"ignore_index"}, {0}, 0},
    [MB_OP_EMBEDDING] = {"embedding", 2, 2, 0, BIT(1), mb_infer_embedding, mb_backward_embedding, {0}, {0}, 0},
    [MB_OP_EMBEDDING_GRAD] = {"embedding_grad", 2, 2, 0, 0, mb_infer_embedding_grad, NULL, {0}, {0}, 1},
    [MB_OP_MEAN_POOL] = {"mean_pool", 1, 2, 0, BIT(0), mb_infer_mean_pool, mb_backward_mean_pool, {0}, {0}, 0},
    [MB_OP_MEAN_POOL_GRAD] = {"mean_pool_grad", 1, 2, 0, 0, mb_infer_mean_pool_grad, NULL, {0}, {0}, 1},
    [MB_OP_DROPOUT] = {"dropout", 2, 2, MB_OPF_RANDOM, BIT(0), mb_infer_dropout, mb_backward_dropout, {"stream"},
                       {"p"}, 0},
    [MB_OP_RESHAPE] = {"reshape", 1, 1, MB_OPF_VIEW, BIT(0), mb_infer_reshape, mb_backward_reshape, {0}, {0}, 1},
    [MB_OP_SLICE] = {"slice", 1, 1, 0, BIT(0), mb_infer_slice, mb_backward_slice, {"axis", "start", "length"}, {0}, 0},
    [MB_OP_SLICE_GRAD] = {"slice_grad", 1, 1, 0, 0, mb_infer_slice_grad, NULL, {"axis", "start"}, {0}, 1},
    [MB_OP_CONCAT] = {"concat", 1, MB_MAX_IN, 0, 0xfffu, mb_infer_concat, mb_backward_concat, {"axis"}, {0}, 0},
    [MB_OP_PERMUTE] = {"permute", 1, 1, 0, BIT(0), mb_infer_permute, mb_backward_permute, {"perm"}, {0}, 1},
    [MB_OP_BROADCAST_TO] = {"broadcast_to", 1, 1, 0, BIT(0), mb_infer_broadcast_to, mb_backward_broadcast_to, {0},
                            {"scale"}, 1},
    [MB_OP_SUM_TO] = {"sum_to", 1, 1, 0, BIT(0), mb_infer_sum_to, mb_backward_sum_to, {0}, {"scale"}, 1},
    [MB_OP_CAST] = {"cast", 1, 1, 0, BIT(0), mb_infer_cast, mb_backward_cast, {"dtype"}, {0}, 0},
    [MB_OP_ATTENTION] = {"attention", 3, 4, 0, BIT(0) | BIT(1) | BIT(2), mb_infer_attention, mb_backward_attention,
                         {"causal", "mask_mode", "fp8"}, {"scale"}, 0},
    [MB_OP_ATTENTION_GRAD] = {"attention_grad", 6, 7, 0, 0, mb_infer_attention_grad, NULL, {"causal", "mask_mode"},
                              {"scale"}, 0},
    [MB_OP_SELECTIVE_SCAN] = {"selective_scan", 8, 9, 0, 0xffu, mb_infer_selective_scan, mb_backward_selective_scan,
                              {"delta_softplus", "chunk"}, {0}, 0},
    [MB_OP_SELECTIVE_SCAN_GRAD] = {"selective_scan_grad", 10, 11, 0, 0, mb_infer_selective_scan_grad, NULL,
                                   {"delta_softplus", "chunk"}, {0}, 0},
    [MB_OP_CONV1D] = {"conv1d", 3, 4, 0, BIT(0) | BIT(1) | BIT(2), mb_infer_conv1d, mb_backward_conv1d, {"silu"}, {0},
                      0},
    [MB_OP_CONV1D_GRAD] = {"conv1d_grad", 4, 5, 0, 0, mb_infer_conv1d_grad, NULL, {"silu"}, {0}, 0},
};

/* Kernel slots: filled by backends at init. Written once per (op, backend)
 * under the backend's own once-guard; read by executors afterwards. */
static _Atomic(mb_kernel_fn) kernels[MB_OP_COUNT][MB_BACKEND_COUNT];
static _Atomic(mb_workspace_fn) workspaces[MB_OP_COUNT][MB_BACKEND_COUNT];

const mb_op_def *mb_op_get(int op) {
  if (op <= MB_OP_INVALID || op >= MB_OP_COUNT)
    return NULL;
  return op_table[op].name ? &op_table[op] : NULL;
}

const char *mb_op_name(int op) {
  const mb_op_def *d = mb_op_get(op);
  return d ? d->name : "?";
}

int mb_op_find(const char *name) {
  for (int op = 1; op < MB_OP_COUNT; op++) {
    const mb_op_def *d = mb_op_get(op);
    if (d && strcmp(d->name, name) == 0)
      return op;
  }
  return MB_OP_INVALID;
}

void mb_op_set_kernel(int op, mb_backend_id be, mb_kernel_fn fn, mb_workspace_fn ws) {
  if (op <= MB_OP_INVALID || op >= MB_OP_COUNT || be < 0 || be >= MB_BACKEND_COUNT)
    return;
  atomic_store(&kernels[op][be], fn);
  atomic_store(&workspaces[op][be], ws);
}

mb_kernel_fn mb_op_kernel(int op, mb_backend_id be) {
  if (op <= MB_OP_INVALID || op >= MB_OP_COUNT || be < 0 || be >= MB_BACKEND_COUNT)
    return NULL;
  return atomic_load(&kernels[op][be]);
}

mb_workspace_fn mb_op_workspace(int op, mb_backend_id be) {
  if (op <= MB_OP_INVALID || op >= MB_OP_COUNT || be < 0 || be >= MB_BACKEND_COUNT)
    return NULL;
  return atomic_load(&workspaces[op][be]);
}

/* ---- helpers ---- */

int mb_meta_broadcast(const mb_shape *a, const mb_shape *b, mb_shape *out) {
  int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
  mb_shape s;
  memset(&s, 0, sizeof s);
  s.ndim = nd;
  for (int i = 0; i < nd; i++) {
    int ia = a->ndim - nd + i, ib = b->ndim - nd + i;
    int64_t da = ia >= 0 ? a->dim[ia] : 1, db = ib >= 0 ? b->dim[ib] : 1;
    if (da != db && da != 1 && db != 1)
      return MB_ERR(MB_ESHAPE, "shapes do not broadcast (dim %d: %lld vs %lld)", i, (long long)da, (long long)db);
    s.dim[i] = da == 1 ? db : da;
  }
  *out = s;
  return MB_OK;
}

int mb_shape_broadcasts_to(const mb_shape *from, const mb_shape *to) {
  if (from->ndim > to->ndim)
    return 0;
  for (int i = 0; i < from->ndim; i++) {
    int64_t f = from->dim[from->ndim - 1 - i], t = to->dim[to->ndim - 1 - i];
    if (f != t && f != 1)
      return 0;
  }
  return 1;
}

int mb_dtype_is_int(mb_dtype dt) {
  switch (dt) {
  case MB_I8: case MB_U8: case MB_I16: case MB_U16: case MB_I32: case MB_U32: case MB_I64: case MB_U64:
    return 1;
  default:
    return 0;
  }
}
