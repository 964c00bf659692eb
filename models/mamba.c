/* mamba.c: the Mamba sequence classifier of MODELS.md 4 on the op builders:
 * embedding, n_layer residual blocks r = r + Mixer(RMSNorm(r)) (in_proj to
 * x and z; causal depthwise conv1d + SiLU; x_proj to dt, B, C; dt_proj, with
 * its bias and the softplus inside the scan; selective scan with
 * A = -exp(A_log), D skip and SiLU(z) gate; out_proj), final RMSNorm, pooling
 * (mean over all positions as the reference classifier, or masked mean),
 * a linear head. Packed batches: conv1d and scan restart at each sequence,
 * pooling averages each sequence's own tokens. The residual stream is f32
 * (residual_in_fp32) also in mixed precision, where the mixers' matmuls,
 * conv1d and scan activations run in the compute dtype (model.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "models/model_internal.h"

int mb_mamba_param_decls(const mb_model_config *c, mb_param_decl *d, int cap) {
  const mb_mamba_config *m = &c->mamba;
  const int64_t Dm = m->d_model, E = m->d_inner, N = m->d_state, R = m->dt_rank, K = m->d_conv;
  int n = 0;
  /* PyTorch's Linear / Conv1d default: kaiming_uniform(a=sqrt(5)), i.e.
   * uniform(+-1/sqrt(fan_in)), the same bound for the bias. */
  const double lin_in = 1.0 / sqrt((double)Dm), lin_e = 1.0 / sqrt((double)E), conv = 1.0 / sqrt((double)K);
  const double out_scale = m->rescale_prenorm_residual ? 1.0 / sqrt((double)m->n_layer) : 1.0;
  const double dt_std = pow((double)R, -0.5) * m->dt_scale;
  mb_param_decl_add(d, &n, cap, mb_shape2(m->vocab_size, Dm), MB_INIT_NORMAL, m->initializer_range, 0, 0,
                    "backbone.embedding.weight");
  for (int64_t l = 0; l < m->n_layer; l++) {
#define LD(shape, init, a, nd, what)                                                                                   \
  mb_param_decl_add(d, &n, cap, shape, init, a, nd, 0, "backbone.layers.%lld.%s", (long long)l, what)
    LD(mb_shape1(Dm), MB_INIT_ONE, 0, 1, "norm.weight");
    LD(mb_shape2(2 * E, Dm), MB_INIT_UNIFORM, lin_in, 0, "mixer.in_proj.weight");
    if (m->proj_bias)
      LD(mb_shape1(2 * E), MB_INIT_ZERO, 0, 1, "mixer.in_proj.bias");
    LD(mb_shape3(E, 1, K), MB_INIT_UNIFORM, conv, 0, "mixer.conv1d.weight");
    if (m->conv_bias)
      LD(mb_shape1(E), MB_INIT_UNIFORM, conv, 1, "mixer.conv1d.bias");
    LD(mb_shape2(R + 2 * N, E), MB_INIT_UNIFORM, lin_e, 0, "mixer.x_proj.weight");
    LD(mb_shape2(E, R), m->dt_init_random ? MB_INIT_UNIFORM : MB_INIT_CONST, dt_std, 0, "mixer.dt_proj.weight");
    LD(mb_shape1(E), MB_INIT_DT_BIAS, 0, 1, "mixer.dt_proj.bias");
    LD(mb_shape2(E, N), MB_INIT_ALOG, 0, 1, "mixer.A_log");
    LD(mb_shape1(E), MB_INIT_ONE, 0, 1, "mixer.D");
    LD(mb_shape2(Dm, E), MB_INIT_UNIFORM, lin_e * out_scale, 0, "mixer.out_proj.weight");
    if (m->proj_bias)
      LD(mb_shape1(Dm), MB_INIT_ZERO, 0, 1, "mixer.out_proj.bias");
#undef LD
  }
  mb_param_decl_add(d, &n, cap, mb_shape1(Dm), MB_INIT_ONE, 0, 1, 0, "backbone.norm_f.weight");
  mb_param_decl_add(d, &n, cap, mb_shape2(c->num_labels, Dm), MB_INIT_UNIFORM, lin_in, 0, 1,
                    "classification_head.classification_head.weight");
  mb_param_decl_add(d, &n, cap, mb_shape1(c->num_labels), MB_INIT_UNIFORM, lin_in, 1, 1,
                    "classification_head.classification_head.bias");
  return n;
}

int mb_mamba_build(mb_model *m, mb_graph *g, const mb_model_shape *s) {
  const mb_mamba_config *mc = &m->cfg.mamba;
  const int64_t Dm = mc->d_model, E = mc->d_inner, N = mc->d_state, R = mc->dt_rank, K = mc->d_conv;
  const int64_t C = m->cfg.num_labels;
  const int packed = s->packed;
  const int64_t L = s->seq_len, S = s->rows, B = packed ? 1 : s->rows;
  const int masked = !packed && mc->pooling == MB_POOL_MASKED_MEAN;

  mb_var ids = mb_input(g, "input_ids", MB_I32, packed ? mb_shape1(L) : mb_shape2(B, L));
  mb_var mask = masked ? mb_input(g, "attention_mask", MB_I32, mb_shape2(B, L)) : MB_VAR_NONE;
  mb_var cu = packed ? mb_input(g, "cu_seqlens", MB_I32, mb_shape1(S + 1)) : MB_VAR_NONE;
  mb_var poolw = packed ? mb_input(g, "pool_weights", MB_F32, mb_shape2(S, L)) : MB_VAR_NONE;
  mb_var labels = mb_input(g, "labels", MB_I32, mb_shape1(S));

  const mb_dtype cd = m->prec.compute;
  char nm[MB_PARAM_NAME_CAP];
#define P(shape, ...) (snprintf(nm, sizeof nm, __VA_ARGS__), mb_param(g, nm, shape))
/* a parameter in the compute dtype (a cast of the f32 master, or itself) */
#define CP(shape, ...) mb_model_cast(g, P(shape, __VA_ARGS__), cd)
  mb_var r = mb_embedding(g, ids, P(mb_shape2(mc->vocab_size, Dm), "backbone.embedding.weight"));
  if (packed)
    r = mb_reshape(g, r, mb_shape3(1, L, Dm));
  for (int64_t l = 0; l < mc->n_layer; l++) {
    char unit[64];
    snprintf(unit, sizeof unit, "backbone.layers.%lld", (long long)l);
    mb_graph_layer_begin(g, unit);
#define LP(shape, what) P(shape, "backbone.layers.%lld.%s", (long long)l, what)
#define CLP(shape, what) CP(shape, "backbone.layers.%lld.%s", (long long)l, what)
    mb_var h = mb_model_cast(g, mb_rmsnorm(g, r, LP(mb_shape1(Dm), "norm.weight"), mc->norm_eps), cd);
    mb_var xz = mb_linear(g, h, CLP(mb_shape2(2 * E, Dm), "mixer.in_proj.weight"),
                          mc->proj_bias ? CLP(mb_shape1(2 * E), "mixer.in_proj.bias") : MB_VAR_NONE);
    mb_var x = mb_slice(g, xz, -1, 0, E), z = mb_slice(g, xz, -1, E, E);
    /* conv1d.weight is stored [E, 1, K] as in PyTorch; the kernel reads [E, K];
     * conv1d's and the scan's own parameters stay f32 (the kernels take a
     * parameter dtype of their own) */
    mb_var cw = mb_reshape(g, LP(mb_shape3(E, 1, K), "mixer.conv1d.weight"), mb_shape2(E, K));
    mb_var cb = mc->conv_bias ? LP(mb_shape1(E), "mixer.conv1d.bias") : mb_full(g, mb_shape1(E), MB_F32, 0.0);
    x = packed ? mb_conv1d_varlen(g, x, cw, cb, cu, 1) : mb_conv1d(g, x, cw, cb, 1);
    mb_var dbl = mb_linear(g, x, CLP(mb_shape2(R + 2 * N, E), "mixer.x_proj.weight"), MB_VAR_NONE);
    mb_var dt = mb_slice(g, dbl, -1, 0, R), Bm = mb_slice(g, dbl, -1, R, N), Cm = mb_slice(g, dbl, -1, R + N, N);
    mb_var delta = mb_linear(g, dt, CLP(mb_shape2(E, R), "mixer.dt_proj.weight"), MB_VAR_NONE);
    mb_var A_log = LP(mb_shape2(E, N), "mixer.A_log"), Dp = LP(mb_shape1(E), "mixer.D");
    mb_var dtb = LP(mb_shape1(E), "mixer.dt_proj.bias");
    mb_var y = packed ? mb_selective_scan_varlen(g, x, delta, A_log, Bm, Cm, Dp, z, dtb, cu)
                      : mb_selective_scan(g, x, delta, A_log, Bm, Cm, Dp, z, dtb);
    mb_var o = mb_linear(g, y, CLP(mb_shape2(Dm, E), "mixer.out_proj.weight"),
                         mc->proj_bias ? CLP(mb_shape1(Dm), "mixer.out_proj.bias") : MB_VAR_NONE);
    r = mb_add(g, r, mb_model_cast(g, o, MB_F32));
#undef CLP
#undef LP
    mb_graph_layer_end(g);
  }
  mb_var out = mb_rmsnorm(g, r, P(mb_shape1(Dm), "backbone.norm_f.weight"), mc->norm_eps);
  mb_var pooled = packed ? mb_matmul(g, poolw, mb_reshape(g, out, mb_shape2(L, Dm)), 0, 0) : mb_mean_pool(g, out, mask);
  mb_var logits = mb_linear(g, pooled, P(mb_shape2(C, Dm), "classification_head.classification_head.weight"),
                            P(mb_shape1(C), "classification_head.classification_head.bias"));
#undef CP
#undef P
  return mb_model_finish(m, g, logits, labels);
}
