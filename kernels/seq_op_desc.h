/* seq_op_desc.h: the selective scan's and conv1d's kernel descriptors
 * (kernels/cpu/selective_scan.h, conv1d.h) built from an op-table node, shared
 * by the CPU glue (cpu/cpu_seq.c) and the CUDA glue (cuda/scan_ops.c) so both
 * backends read a node's shapes, attributes and cu_seqlens the same way. */
#ifndef MB_KERNELS_SEQ_OP_DESC_H
#define MB_KERNELS_SEQ_OP_DESC_H

#include <string.h>

#include "autograd/op.h"
#include "kernels/cpu/conv1d.h"
#include "kernels/cpu/selective_scan.h"

/* u [B, L, D], A_log [D, N]; attrs: i[0] delta_softplus, i[1] chunk. */
static inline void mb_scan_desc_from_shapes(const mb_shape *u, const mb_shape *A_log, const mb_attrs *a,
                                            mb_scan_desc *d) {
  memset(d, 0, sizeof *d);
  d->batch = (int)u->dim[0];
  d->seqlen = (int)u->dim[1];
  d->dim = (int)u->dim[2];
  d->dstate = (int)A_log->dim[1];
  d->chunk = (int)a->i[1];
  d->delta_softplus = (int)a->i[0];
}

/* cu_at: index of the optional cu_seqlens input (8 forward, 10 backward). */
static inline void mb_scan_desc_from_call(const mb_kernel_call *k, int cu_at, mb_scan_desc *d) {
  mb_scan_desc_from_shapes(&k->in[0].shape, &k->in[2].shape, &k->node->attr, d);
  if (k->n_in > cu_at) {
    d->cu_seqlens = k->in[cu_at].data;
    d->nseq = (int)k->in[cu_at].shape.dim[0] - 1;
  }
}

/* x [B, L, D], w [D, W]; attrs: i[0] silu. */
static inline void mb_conv1d_desc_from_shapes(const mb_shape *x, const mb_shape *w, const mb_attrs *a,
                                              mb_conv1d_desc *d) {
  memset(d, 0, sizeof *d);
  d->batch = (int)x->dim[0];
  d->seqlen = (int)x->dim[1];
  d->dim = (int)x->dim[2];
  d->width = (int)w->dim[1];
  d->silu = (int)a->i[0];
}

/* cu_at: index of the optional cu_seqlens input (3 forward, 4 backward). */
static inline void mb_conv1d_desc_from_call(const mb_kernel_call *k, int cu_at, mb_conv1d_desc *d) {
  mb_conv1d_desc_from_shapes(&k->in[0].shape, &k->in[1].shape, &k->node->attr, d);
  if (k->n_in > cu_at) {
    d->cu_seqlens = k->in[cu_at].data;
    d->nseq = (int)k->in[cu_at].shape.dim[0] - 1;
  }
}

#endif
