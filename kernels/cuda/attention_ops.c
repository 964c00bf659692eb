/* attention_ops.c: the op-table glue of the CUDA attention kernels:
 * MB_OP_ATTENTION and MB_OP_ATTENTION_GRAD on the CUDA backend, through the
 * dispatcher of attention.h (so a model in f32, or with a head_dim the
 * flash kernels lack, still runs, on the reference kernel, with the reason
 * logged once). The CPU side is kernels/cpu/cpu_seq.c: same descriptor from
 * the same shapes and attributes (q, k, v [B, L, H, Dh]; attr i0 causal, i1
 * mask mode 0 none / 1 key_mask i32[B, L] / 2 cu_seqlens i32[nseq + 1],
 * f0 scale; i2 fp8: the e4m3 forward for evaluation), lse f32 [B, L, H].
 * Registered by mb_cuda_register_ops.
 */
#include <string.h>

#include "autograd/graph.h"
#include "autograd/op.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/cuda_backend_internal.h"
#include "kernels/cuda/cuda_kernels.h"

static void attn_desc_shape(const mb_shape *q, const mb_attrs *a, mb_attn_desc *d) {
  memset(d, 0, sizeof *d);
  d->batch = (int)q->dim[0];
  d->seqlen = (int)q->dim[1];
  d->heads = (int)q->dim[2];
  d->head_dim = (int)q->dim[3];
  d->scale = a->f[0];
  d->causal = (int)a->i[0];
}

/* mask_at: index of the key_mask / cu_seqlens input (3 forward, 6 backward). */
static void attn_desc(const mb_kernel_call *k, int mask_at, mb_attn_desc *d) {
  attn_desc_shape(&k->in[0].shape, &k->node->attr, d);
  if (k->node->attr.i[1] == 1) {
    d->key_mask = k->in[mask_at].data;
  } else if (k->node->attr.i[1] == 2) {
    d->cu_seqlens = k->in[mask_at].data;
    d->nseq = (int)k->in[mask_at].shape.dim[0] - 1;
  }
}

/* The fp8 forward's workspace: three quantisation states, then e4m3 q, k
 * and v, each 256-byte aligned (TMA and the metas' 16-byte scale_inv). */
#define FP8_ALIGN 256
static size_t fp8_part(size_t bytes) { return (bytes + FP8_ALIGN - 1) / FP8_ALIGN * FP8_ALIGN; }

/* (q, k, v [, mask]) -> out, lse; attr i2 (fp8): q, k, v quantised to e4m3
 * with current per-tensor scaling (mb_cuda_fp8_quantize_current: each
 * tensor's own amax, no history to calibrate), then the e4m3 forward with
 * the three descales; out stays bf16. */
static int k_attention(const mb_kernel_call *k) {
  mb_attn_desc d;
  attn_desc(k, 3, &d);
  cuda_backend *c = cuda_of(k->backend);
  if (!k->node->attr.i[2])
    return mb_cuda_attn_fwd(&d, k->in[0].dtype, k->in[0].data, k->in[1].data, k->in[2].data, k->out[0].data,
                            k->out[1].data, c->stream);
  if (k->in[0].dtype != MB_BF16)
    return MB_ERR(MB_EUNSUPPORTED, "cuda fp8 attention: q, k, v must be bf16 (its output's dtype), got %s",
                  mb_dtype_name(k->in[0].dtype));
  const int64_t n = (int64_t)d.batch * d.seqlen * d.heads * d.head_dim;
  const size_t metas = fp8_part(3 * sizeof(mb_fp8_meta)), part = fp8_part((size_t)n);
  if (!k->workspace || k->workspace_bytes < metas + 3 * part)
    return MB_ERR(MB_EINTERNAL, "cuda fp8 attention: workspace of %zu bytes, needs %zu", k->workspace_bytes,
                  metas + 3 * part);
  mb_fp8_meta *meta = k->workspace;
  unsigned char *q8 = (unsigned char *)k->workspace + metas;
  for (int j = 0; j < 3; j++)
    MB_TRY(mb_cuda_fp8_quantize_current(q8 + j * part, MB_F8E4M3, k->in[j].data, MB_BF16, n, &meta[j], c->stream));
  c->fp8_attentions++;
  return mb_cuda_attn_fwd_fp8(&d, q8, q8 + part, q8 + 2 * part, &meta[0].scale_inv, &meta[1].scale_inv,
                              &meta[2].scale_inv, k->out[0].data, k->out[1].data, c->stream);
}

static size_t ws_attention(const mb_graph *g, const mb_node *n) {
  if (!n->attr.i[2])
    return 0;
  const mb_value *q = mb_graph_value(g, (mb_var){n->in[0]});
  return fp8_part(3 * sizeof(mb_fp8_meta)) + 3 * fp8_part((size_t)mb_shape_numel(&q->shape));
}

/* (q, k, v, out, lse, dout [, mask]) -> dq, dk, dv */
static int k_attention_grad(const mb_kernel_call *k) {
  mb_attn_desc d;
  attn_desc(k, 6, &d);
  const mb_tensor *in = k->in, *out = k->out;
  return mb_cuda_attn_bwd(&d, in[0].dtype, in[0].data, in[1].data, in[2].data, in[3].data, in[4].data, in[5].data,
                          out[0].data, out[1].data, out[2].data, k->workspace, k->workspace_bytes,
                          cuda_of(k->backend)->stream);
}

/* The backward's workspace depends only on tokens, heads and head_dim. */
static size_t ws_attention_grad(const mb_graph *g, const mb_node *n) {
  const mb_value *q = mb_graph_value(g, (mb_var){n->in[0]});
  mb_attn_desc d;
  attn_desc_shape(&q->shape, &n->attr, &d);
  return mb_cuda_attn_bwd_workspace(&d);
}

void mb_cuda_attn_register_ops(void) {
  mb_op_set_kernel(MB_OP_ATTENTION, MB_BACKEND_CUDA, k_attention, ws_attention);
  mb_op_set_kernel(MB_OP_ATTENTION_GRAD, MB_BACKEND_CUDA, k_attention_grad, ws_attention_grad);
}
