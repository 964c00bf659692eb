/* ops_internal.h: shape inference and backward rules of every op, defined in
 * ops_basic.c, ops_nn.c and ops_seq.c and collected into the table in op.c. */
#ifndef MB_AUTOGRAD_OPS_INTERNAL_H
#define MB_AUTOGRAD_OPS_INTERNAL_H

#include "autograd/graph.h"
#include "autograd/op.h"

#define MB_INFER(name) int mb_infer_##name(const mb_meta *in, int n_in, const mb_attrs *a, mb_meta *out, int *n_out)
#define MB_BACKWARD(name) \
  int mb_backward_##name(mb_graph *g, const mb_node *n, const mb_var *gout, const uint8_t *need, mb_var *gin)

/* ops_basic.c */
MB_INFER(full);
MB_INFER(same);
MB_INFER(binary);
MB_INFER(float_same);
MB_INFER(act_grad);
MB_INFER(broadcast_to);
MB_INFER(sum_to);
MB_INFER(cast);
MB_INFER(reshape);
MB_INFER(slice);
MB_INFER(slice_grad);
MB_INFER(concat);
MB_INFER(permute);
MB_BACKWARD(copy);
MB_BACKWARD(add);
MB_BACKWARD(mul);
MB_BACKWARD(affine);
MB_BACKWARD(act);
MB_BACKWARD(broadcast_to);
MB_BACKWARD(sum_to);
MB_BACKWARD(cast);
MB_BACKWARD(reshape);
MB_BACKWARD(slice);
MB_BACKWARD(concat);
MB_BACKWARD(permute);

/* ops_nn.c */
MB_INFER(matmul);
MB_INFER(layernorm);
MB_INFER(layernorm_grad);
MB_INFER(rmsnorm);
MB_INFER(rmsnorm_grad);
MB_INFER(softmax_grad);
MB_INFER(cross_entropy);
MB_INFER(cross_entropy_grad);
MB_INFER(embedding);
MB_INFER(embedding_grad);
MB_INFER(mean_pool);
MB_INFER(mean_pool_grad);
MB_INFER(dropout);
MB_BACKWARD(matmul);
MB_BACKWARD(layernorm);
MB_BACKWARD(rmsnorm);
MB_BACKWARD(softmax);
MB_BACKWARD(cross_entropy);
MB_BACKWARD(embedding);
MB_BACKWARD(mean_pool);
MB_BACKWARD(dropout);

/* ops_seq.c */
MB_INFER(attention);
MB_INFER(attention_grad);
MB_INFER(selective_scan);
MB_INFER(selective_scan_grad);
MB_INFER(conv1d);
MB_INFER(conv1d_grad);
MB_BACKWARD(attention);
MB_BACKWARD(selective_scan);
MB_BACKWARD(conv1d);

/* Whether an activation's gradient is computed from its output (tanh,
 * sigmoid, exp) rather than its input. */
int mb_act_saves_output(int op);

/* Tiny builders for backward rules (no caller location to report). */
#define MB_BW MB_HERE

#endif
