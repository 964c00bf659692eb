/* ops_seq.c: the sequence ops (fused attention, selective scan, causal
 * depthwise conv1d). Their kernels are written in kernels/cpu/attention.c,
 * selective_scan.c and conv1d.c; the op definitions join the table here once
 * those land. */
#include <stddef.h>

#include "autograd/op.h"

const mb_op_def *mb_op_seq_def(int op);

const mb_op_def *mb_op_seq_def(int op) {
  (void)op;
  return NULL;
}
