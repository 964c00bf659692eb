/* bert.c: BertForSequenceClassification (MODELS.md 3) on the op builders:
 * embeddings (word + token type, then + position; LayerNorm), post-LN
 * encoder layers (fused multi-head attention with a key-padding mask or
 * varlen cu_seqlens, exact-erf GELU MLP), tanh pooler on [CLS], classifier.
 * Dropout in training where HF has it: embeddings, attention output, MLP
 * output, pooled output; attention probabilities only with
 * attn_dropout_exact (config key model.attention_dropout_exact; the fused
 * kernel has no dropout on them). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "models/model_internal.h"
#include "runtime/log.h"

int mb_bert_param_decls(const mb_model_config *c, mb_param_decl *d, int cap) {
  const mb_bert_config *b = &c->bert;
  int64_t H = b->hidden_size, I = b->intermediate_size;
  double sd = b->initializer_range;
  int n = 0;
  mb_param_decl_add(d, &n, cap, mb_shape2(b->vocab_size, H), MB_INIT_NORMAL_PADROW, sd, 0, 0,
                    "bert.embeddings.word_embeddings.weight");
  if (n <= cap)
    d[n - 1].b = b->pad_token_id;
  mb_param_decl_add(d, &n, cap, mb_shape2(b->max_position, H),
                    b->position_init_sinusoidal ? MB_INIT_SINUSOID : MB_INIT_NORMAL, sd, 0, 0,
                    "bert.embeddings.position_embeddings.weight");
  mb_param_decl_add(d, &n, cap, mb_shape2(b->type_vocab_size, H), MB_INIT_NORMAL, sd, 0, 0,
                    "bert.embeddings.token_type_embeddings.weight");
  mb_param_decl_add(d, &n, cap, mb_shape1(H), MB_INIT_ONE, 0, 1, 0, "bert.embeddings.LayerNorm.weight");
  mb_param_decl_add(d, &n, cap, mb_shape1(H), MB_INIT_ZERO, 0, 1, 0, "bert.embeddings.LayerNorm.bias");
  for (int64_t l = 0; l < b->num_layers; l++) {
    const char *qkv[3] = {"query", "key", "value"};
    for (int k = 0; k < 3; k++) {
      mb_param_decl_add(d, &n, cap, mb_shape2(H, H), MB_INIT_NORMAL, sd, 0, 0,
                        "bert.encoder.layer.%lld.attention.self.%s.weight", (long long)l, qkv[k]);
      mb_param_decl_add(d, &n, cap, mb_shape1(H), MB_INIT_ZERO, 0, 1, 0,
                        "bert.encoder.layer.%lld.attention.self.%s.bias", (long long)l, qkv[k]);
    }
    mb_param_decl_add(d, &n, cap, mb_shape2(H, H), MB_INIT_NORMAL, sd, 0, 0,
                      "bert.encoder.layer.%lld.attention.output.dense.weight", (long long)l);
    mb_param_decl_add(d, &n, cap, mb_shape1(H), MB_INIT_ZERO, 0, 1, 0,
                      "bert.encoder.layer.%lld.attention.output.dense.bias", (long long)l);
    mb_param_decl_add(d, &n, cap, mb_shape1(H), MB_INIT_ONE, 0, 1, 0,
                      "bert.encoder.layer.%lld.attention.output.LayerNorm.weight", (long long)l);
    mb_param_decl_add(d, &n, cap, mb_shape1(H), MB_INIT_ZERO, 0, 1, 0,
                      "bert.encoder.layer.%lld.attention.output.LayerNorm.bias", (long long)l);
    mb_param_decl_add(d, &n, cap, mb_shape2(I, H), MB_INIT_NORMAL, sd, 0, 0,
                      "bert.encoder.layer.%lld.intermediate.dense.weight", (long long)l);
    mb_param_decl_add(d, &n, cap, mb_shape1(I), MB_INIT_ZERO, 0, 1, 0,
                      "bert.encoder.layer.%lld.intermediate.dense.bias", (long long)l);
    mb_param_decl_add(d, &n, cap, mb_shape2(H, I), MB_INIT_NORMAL, sd, 0, 0,
                      "bert.encoder.layer.%lld.output.dense.weight", (long long)l);
    mb_param_decl_add(d, &n, cap, mb_shape1(H), MB_INIT_ZERO, 0, 1, 0, "bert.encoder.layer.%lld.output.dense.bias",
                      (long long)l);
    mb_param_decl_add(d, &n, cap, mb_shape1(H), MB_INIT_ONE, 0, 1, 0, "bert.encoder.layer.%lld.output.LayerNorm.weight",
                      (long long)l);
    mb_param_decl_add(d, &n, cap, mb_shape1(H), MB_INIT_ZERO, 0, 1, 0, "bert.encoder.layer.%lld.output.LayerNorm.bias",
                      (long long)l);
  }
  mb_param_decl_add(d, &n, cap, mb_shape2(H, H), MB_INIT_NORMAL, sd, 0, 0, "bert.pooler.dense.weight");
  mb_param_decl_add(d, &n, cap, mb_shape1(H), MB_INIT_ZERO, 0, 1, 0, "bert.pooler.dense.bias");
  mb_param_decl_add(d, &n, cap, mb_shape2(c->num_labels, H), MB_INIT_NORMAL, sd, 0, 1, "classifier.weight");
  mb_param_decl_add(d, &n, cap, mb_shape1(c->num_labels), MB_INIT_ZERO, 0, 1, 1, "classifier.bias");
  return n;
}

typedef struct {
  mb_graph *g;
  mb_var rng;
  mb_dtype cd; /* compute dtype (model.h, precision) */
} bert_ctx;

/* Inverted dropout when training with p > 0; `stream` tells sites apart. */
static mb_var drop(const bert_ctx *c, mb_var x, double p, int64_t stream) {
  if (!mb_var_ok(c->rng) || !(p > 0))
    return x;
  return mb_dropout(c->g, x, p, c->rng, stream);
}

/* Dropout streams: 1 embeddings, 2 pooled output, 16 + 4 l + {0 attention
 * output, 1 attention probabilities, 2 MLP output} for layer l. */
#define STREAM_LAYER(l, k) (16 + 4 * (int64_t)(l) + (k))

/* The attention with the probabilities formed, as HF's eager path:
 * softmax(q k^T * scale + (1 - mask) * finfo(dtype).min), dropout, times v. */
static mb_var attention_exact(const bert_ctx *c, mb_var q, mb_var k, mb_var v, mb_var mask, int64_t B, int64_t L,
                              int64_t NH, int64_t DH, double p, int64_t stream) {
  mb_graph *g = c->g;
  const int perm[4] = {0, 2, 1, 3};
  mb_var qh = mb_permute(g, q, 4, perm), kh = mb_permute(g, k, 4, perm), vh = mb_permute(g, v, 4, perm);
  mb_var s = mb_scale(g, mb_matmul(g, qh, kh, 0, 1), 1.0 / sqrt((double)DH));
  /* mask 1 -> 0, mask 0 -> the most negative finite value of the compute
   * dtype, like HF's extended mask (formed in f32, then cast exactly) */
  const double fmin = c->cd == MB_BF16 ? -3.3895313892515355e38 : c->cd == MB_F16 ? -65504.0 : -3.4028234663852886e38;
  mb_var bias = mb_affine(g, mb_cast(g, mask, MB_F32), -fmin, fmin);
  s = mb_add(g, s, mb_model_cast(g, mb_reshape(g, bias, mb_shape4(B, 1, 1, L)), c->cd));
  mb_var pr = drop(c, mb_softmax(g, s), p, stream);
  mb_var ctx = mb_matmul(g, pr, vh, 0, 0); /* [B, NH, L, DH] */
  return mb_permute(g, ctx, 4, perm);      /* [B, L, NH, DH] */
}

int mb_bert_build(mb_model *m, mb_graph *g, const mb_model_shape *s) {
  const mb_bert_config *b = &m->cfg.bert;
  const int64_t H = b->hidden_size, NH = b->num_heads, DH = H / NH, I = b->intermediate_size;
  const int64_t C = m->cfg.num_labels;
  const int packed = s->packed;
  const int64_t L = s->seq_len, S = s->rows, B = packed ? 1 : s->rows;
  if (!packed && L > b->max_position)
    return MB_ERR(MB_ESHAPE, "bert: sequence length %lld exceeds max_position_embeddings %lld", (long long)L,
                  (long long)b->max_position);
  double cls_drop = b->classifier_dropout >= 0 ? b->classifier_dropout : b->hidden_dropout;
  int exact = s->train && b->attn_dropout_exact;
  if (exact && packed) {
    mb_log_once(MB_LOG_WARN, "bert-exact-attn-packed",
                "bert: attention-probability dropout (model.attention_dropout_exact) needs padded batches; packed "
                "batches use the fused attention without it");
    exact = 0;
  }
  if (s->train && !exact && b->attention_dropout > 0)
    mb_log_once(MB_LOG_INFO, "bert-no-attn-dropout",
                "bert: the fused attention applies no dropout to attention probabilities "
                "(attention_probs_dropout_prob %g ignored; set model.attention_dropout_exact: true for HF's "
                "unfused path)",
                b->attention_dropout);
  int any_drop = s->train && (b->hidden_dropout > 0 || cls_drop > 0 || exact);

  mb_var ids = mb_input(g, "input_ids", MB_I32, packed ? mb_shape1(L) : mb_shape2(B, L));
  mb_var mask = packed ? MB_VAR_NONE : mb_input(g, "attention_mask", MB_I32, mb_shape2(B, L));
  mb_var cu = packed ? mb_input(g, "cu_seqlens", MB_I32, mb_shape1(S + 1)) : MB_VAR_NONE;
  mb_var pos = packed ? mb_input(g, "position_ids", MB_I32, mb_shape1(L)) : MB_VAR_NONE;
  mb_var cls_index = packed ? mb_input(g, "cls_index", MB_I32, mb_shape1(S)) : MB_VAR_NONE;
  mb_var labels = mb_input(g, "labels", MB_I32, mb_shape1(S));
  const mb_dtype cd = m->prec.compute;
  bert_ctx c = {g, any_drop ? mb_input(g, "dropout_rng", MB_U64, mb_shape1(2)) : MB_VAR_NONE, cd};

#define P(shape, ...) (snprintf(nm, sizeof nm, __VA_ARGS__), mb_param(g, nm, shape))
/* a parameter in the compute dtype (a cast of the f32 master, or itself) */
#define CP(shape, ...) mb_model_cast(g, P(shape, __VA_ARGS__), cd)
  char nm[MB_PARAM_NAME_CAP];
  mb_graph_scope_push(g, "bert.embeddings");
  /* (word + token type) + position, as HF sums them; token types are all 0 */
  mb_var x = mb_embedding(g, ids, P(mb_shape2(b->vocab_size, H), "bert.embeddings.word_embeddings.weight"));
  x = mb_add(g, x,
             mb_select(g, P(mb_shape2(b->type_vocab_size, H), "bert.embeddings.token_type_embeddings.weight"), 0, 0));
  mb_var ptab = P(mb_shape2(b->max_position, H), "bert.embeddings.position_embeddings.weight");
  x = mb_add(g, x, packed ? mb_embedding(g, pos, ptab) : mb_slice(g, ptab, 0, 0, L));
  x = mb_layernorm(g, x, P(mb_shape1(H), "bert.embeddings.LayerNorm.weight"),
                   P(mb_shape1(H), "bert.embeddings.LayerNorm.bias"), b->layer_norm_eps);
  x = drop(&c, x, b->hidden_dropout, 1);
  x = mb_model_cast(g, x, cd); /* the embeddings in f32, the encoder in cd */
  if (packed)
    x = mb_reshape(g, x, mb_shape3(1, L, H));
  mb_graph_scope_pop(g);

  const mb_shape heads = mb_shape4(B, L, NH, DH), flat = mb_shape3(B, L, H);
  for (int64_t l = 0; l < b->num_layers; l++) {
    char unit[64];
    snprintf(unit, sizeof unit, "bert.encoder.layer.%lld", (long long)l);
    mb_graph_layer_begin(g, unit);
#define LP(shape, what) CP(shape, "bert.encoder.layer.%lld.%s", (long long)l, what)
    mb_var q = mb_reshape(g,
                          mb_linear(g, x, LP(mb_shape2(H, H), "attention.self.query.weight"),
                                    LP(mb_shape1(H), "attention.self.query.bias")),
                          heads);
    mb_var k = mb_reshape(
        g,
        mb_linear(g, x, LP(mb_shape2(H, H), "attention.self.key.weight"), LP(mb_shape1(H), "attention.self.key.bias")),
        heads);
    mb_var v = mb_reshape(g,
                          mb_linear(g, x, LP(mb_shape2(H, H), "attention.self.value.weight"),
                                    LP(mb_shape1(H), "attention.self.value.bias")),
                          heads);
    mb_var ctx;
    if (exact)
      ctx = attention_exact(&c, q, k, v, mask, B, L, NH, DH, b->attention_dropout, STREAM_LAYER(l, 1));
    else /* the e4m3 forward only in evaluation programs: it has no backward */
      ctx = mb_attention_(g, MB_HERE, q, k, v, packed ? MB_VAR_NONE : mask, packed ? cu : MB_VAR_NONE, 0, 0.0,
                          m->prec.fp8_attention && !s->train);
    ctx = mb_reshape(g, ctx, flat);
    mb_var a = mb_linear(g, ctx, LP(mb_shape2(H, H), "attention.output.dense.weight"),
                         LP(mb_shape1(H), "attention.output.dense.bias"));
    a = drop(&c, a, b->hidden_dropout, STREAM_LAYER(l, 0));
    a = mb_layernorm(g, mb_add(g, a, x), LP(mb_shape1(H), "attention.output.LayerNorm.weight"),
                     LP(mb_shape1(H), "attention.output.LayerNorm.bias"), b->layer_norm_eps);
    mb_var f = mb_gelu(g, mb_linear(g, a, LP(mb_shape2(I, H), "intermediate.dense.weight"),
                                    LP(mb_shape1(I), "intermediate.dense.bias")));
    f = mb_linear(g, f, LP(mb_shape2(H, I), "output.dense.weight"), LP(mb_shape1(H), "output.dense.bias"));
    f = drop(&c, f, b->hidden_dropout, STREAM_LAYER(l, 2));
    x = mb_layernorm(g, mb_add(g, f, a), LP(mb_shape1(H), "output.LayerNorm.weight"),
                     LP(mb_shape1(H), "output.LayerNorm.bias"), b->layer_norm_eps);
#undef LP
    mb_graph_layer_end(g);
  }

  mb_graph_scope_push(g, "bert.pooler");
  /* [CLS] of each sequence: token 0 of each padded row, or the first token
   * of each packed sequence, gathered by cls_index (its backward scatters) */
  mb_var cls = packed ? mb_embedding(g, cls_index, mb_reshape(g, x, mb_shape2(L, H))) : mb_select(g, x, 1, 0);
  mb_var pooled = mb_tanh(g, mb_linear(g, cls, CP(mb_shape2(H, H), "bert.pooler.dense.weight"),
                                       CP(mb_shape1(H), "bert.pooler.dense.bias")));
  mb_graph_scope_pop(g);
  pooled = drop(&c, pooled, cls_drop, 2);
  mb_var logits = mb_linear(g, pooled, CP(mb_shape2(C, H), "classifier.weight"), CP(mb_shape1(C), "classifier.bias"));
#undef CP
#undef P
  return mb_model_finish(m, g, logits, labels);
}
