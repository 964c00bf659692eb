/* model.h: the BERT and Mamba sequence classifiers as the run loop sees them.
 *
 * A model is an architecture, its configuration, a parameter store (one flat
 * f32 buffer, autograd/params.h) and the path of its tokenizer. It comes from
 * a Hugging Face style directory (mb_model_load: config.json +
 * model.safetensors [+ vocab.txt | tokenizer.json]) or from a configuration
 * with random initialisation (mb_model_new + mb_model_init_random), and goes
 * back to such a directory (mb_model_export) that transformers loads.
 *
 * The math and the parameter names are those of ../shared/MODELS.md:
 *   BERT  = BertForSequenceClassification (HF names, "bert." prefix).
 *   Mamba = the reference classifier (MambaTextClassification on mamba_ssm):
 *           backbone.embedding / backbone.layers.{i}.{norm,mixer.*} /
 *           backbone.norm_f / classification_head.classification_head.
 *
 * Programs. The forward is written with the autograd's op builders; a program
 * is built for one static shape and cached by the run loop:
 *
 *   mb_program_cache_new(mb_model_params(m), be, &opts, mb_model_build, m, &cache);
 *   int64_t key[MB_MODEL_KEY_LEN];
 *   mb_model_key_for_batch(batch, train, key);       // or mb_model_key()
 *   mb_program_cache_get(cache, key, MB_MODEL_KEY_LEN, &ex);
 *   mb_model_feed(m, ex, batch, rng);                 // every input the program declares
 *   mb_exec_forward(ex); [mb_exec_backward(ex);]
 *   mb_exec_get(ex, mb_graph_loss(g), &loss);  mb_model_read_logits(ex, logits);
 *
 * The program's inputs (names, dtypes, shapes; mb_model_feed fills them all
 * from an mb_batch, so callers rarely need this list):
 *   input_ids       i32 [B, L] padded | [T] packed
 *   attention_mask  i32 [B, L]  padded BERT; padded Mamba with masked-mean pooling
 *   labels          i32 [B] | [S]   -100 = ignored row (mb_batch's -1 rows)
 *   cu_seqlens      i32 [S + 1]  packed
 *   position_ids    i32 [T]      packed BERT (positions restart per sequence)
 *   cls_index       i32 [S]      packed BERT: the first token of each sequence
 *   pool_weights    f32 [S, T]   packed Mamba: row s averages sequence s's tokens
 *   dropout_rng     u64 [2]      training programs with dropout > 0 (seed, offset)
 *   loss_scale      f32 []       precision.loss_scale = 1 (fp16 loss scaling)
 * Outputs: the loss (mean cross-entropy over rows not labelled -100;
 * mb_graph_loss, or mb_model_loss when it is scaled) and the logits
 * [B | S, num_labels] f32 (mb_model_logits).
 * Each encoder layer / Mamba block is one recompute unit
 * (mb_graph_layer_begin/end).
 */
#ifndef MB_MODELS_MODEL_H
#define MB_MODELS_MODEL_H

#include <stdint.h>

#include "autograd/autograd.h"
#include "data/loader.h"
#include "data/tokenizer.h"
#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { MB_ARCH_BERT = 1, MB_ARCH_MAMBA = 2 } mb_arch;

/* Mamba pooling before the head: the reference averages ALL positions
 * (padding included, MODELS.md 4.4); masked mean averages real tokens only. */
typedef enum { MB_POOL_MEAN = 0, MB_POOL_MASKED_MEAN = 1 } mb_pooling;

/* Which config.json form a Mamba configuration came from (export writes the
 * mamba_ssm form, which the reference classifier's class loads). */
typedef enum { MB_FORM_HF_BERT = 0, MB_FORM_MAMBA_SSM = 1, MB_FORM_HF_MAMBA = 2 } mb_config_form;

typedef struct {
  int64_t vocab_size, hidden_size, num_layers, num_heads, intermediate_size;
  int64_t max_position, type_vocab_size, pad_token_id;
  double layer_norm_eps;
  double hidden_dropout, attention_dropout;
  double classifier_dropout; /* < 0: null in config.json, i.e. hidden_dropout */
  double initializer_range;
  /* mambert's own switch (not an HF field): 1 = training programs compute
   * attention with the L x L probabilities formed (matmul, additive mask,
   * softmax, dropout, matmul) so attention-probability dropout is applied
   * exactly as HF does; padded batches only. 0 (default) = the fused kernel,
   * which has no dropout on the probabilities (attention_dropout is then
   * not applied; logged once). Evaluation always uses the fused kernel. */
  int attn_dropout_exact;
  /* mambert's own (not an HF field, not in config.json: it only changes the
   * random initialisation): 1 = position embeddings start as the
   * Transformer's sinusoids, pe[p][2i] = sin(p w_i), pe[p][2i+1] = cos(p w_i),
   * w_i = 10000^(-2i/H), scaled to RMS initializer_range like the other
   * embeddings; they are trained as usual. Relative offsets are then linear
   * maps of the embeddings from the first step, which a small model trained
   * from scratch on short texts otherwise learns slowly. 0 (default) =
   * normal(0, initializer_range), as HF. */
  int position_init_sinusoidal;
} mb_bert_config;

typedef struct {
  int64_t d_model, n_layer;
  int64_t vocab_size;        /* rows of the embedding (padded to the multiple) */
  int64_t vocab_size_config; /* as the config states it (mamba_ssm: before padding) */
  int64_t pad_vocab_size_multiple;
  int64_t d_state, d_conv, expand, d_inner, dt_rank;
  double norm_eps;
  int conv_bias, proj_bias; /* conv1d.bias; in_proj/out_proj biases (ssm_cfg.bias / use_bias) */
  double dt_min, dt_max, dt_scale, dt_init_floor;
  int dt_init_random; /* 1: dt_proj.weight uniform(+-dt_rank^-0.5*dt_scale); 0: constant */
  double initializer_range;
  int rescale_prenorm_residual;
  mb_pooling pooling;
  int64_t pad_token_id;
} mb_mamba_config;

#define MB_MODEL_MAX_LABELS 64
#define MB_MODEL_LABEL_CAP 64

typedef struct {
  mb_arch arch;
  mb_config_form form;
  int num_labels;
  char id2label[MB_MODEL_MAX_LABELS][MB_MODEL_LABEL_CAP]; /* "LABEL_0", ... by default */
  mb_bert_config bert;
  mb_mamba_config mamba;
} mb_model_config;

/* Defaults: BERT-base (bert-base-uncased sizes, HF BertConfig defaults) and
 * Mamba-130m (mamba_ssm defaults), num_labels 2. */
mb_model_config mb_model_config_default(mb_arch arch);
/* After setting d_model, expand, vocab_size_config, pad_vocab_size_multiple:
 * fill d_inner = expand * d_model, dt_rank (0 = "auto" = ceil(d_model / 16))
 * and the padded vocabulary. */
void mb_mamba_config_derive(mb_mamba_config *mc, int64_t dt_rank_or_auto);
/* Sizes that cannot work (heads not dividing hidden, zero layers, ...): a
 * clear MB_EINVAL naming the field. Derived sizes (d_inner, dt_rank "auto",
 * the padded vocabulary) must already be filled in. */
int mb_model_config_validate(const mb_model_config *c) MB_NODISCARD;
/* Parse a config.json (HF BertConfig, mamba_ssm MambaConfig or HF
 * MambaConfig form). The fields that fix the architecture's sizes must be
 * present; the rest take the defaults of that form's class. */
int mb_model_config_load(const char *path, mb_model_config *out) MB_NODISCARD;
/* The same from a JSON text (path only names it in messages). */
int mb_model_config_parse(const char *text, const char *path, mb_model_config *out) MB_NODISCARD;
/* Total parameter count of a configuration. */
int64_t mb_model_config_num_params(const mb_model_config *c);

typedef struct mb_model mb_model;

/* A model with every parameter declared (zeros) and the store materialised
 * on `be`. tokenizer_path may be NULL (predict then needs one). */
int mb_model_new(const mb_model_config *cfg, const char *tokenizer_path, mb_backend *be, mb_model **out) MB_NODISCARD;
void mb_model_free(mb_model *m);

/* Random initialisation as the references do (Philox, seed):
 * BERT: Linear/Embedding weights normal(0, initializer_range), the
 *   word-embedding row pad_token_id zero, biases 0, LayerNorm 1/0 (position
 *   embeddings sinusoidal with position_init_sinusoidal).
 * Mamba (mamba_ssm): embedding normal(0, 0.02); in_proj, x_proj and the head
 *   PyTorch's Linear default (uniform +-1/sqrt(fan_in)); out_proj the same
 *   divided by sqrt(n_layer); conv1d default (uniform +-1/sqrt(d_conv), bias
 *   too); dt_proj weight uniform +-dt_rank^-0.5*dt_scale (or constant), bias
 *   softplus^-1(dt) with dt log-uniform in [dt_min, dt_max] floored at
 *   dt_init_floor; A_log[c, n] = log(n + 1); D = 1; norms 1; biases 0.
 * Each parameter draws from its own Philox offset range, so the result does
 * not depend on thread counts. */
int mb_model_init_random(mb_model *m, uint64_t seed) MB_NODISCARD;
/* Initialise only parameters whose name starts with prefix (a fresh head). */
int mb_model_init_random_prefix(mb_model *m, uint64_t seed, const char *prefix) MB_NODISCARD;

typedef struct {
  /* Allow a checkpoint without the classification head (a pretrained
   * backbone such as bert-base-uncased or state-spaces/mamba-130m): the head
   * is initialised from `seed` and pretraining heads (cls.*, lm_head.*) are
   * ignored; both are logged. 0: such a checkpoint is an error. */
  int init_missing_head;
  uint64_t seed;
  /* Override the tokenizer file (vocab.txt / tokenizer.json); NULL: the one
   * in the directory, if any. */
  const char *tokenizer_path;
  /* > 0: the number of labels (a new head may have any; a loaded one must
   * agree). */
  int num_labels;
  /* Override the Mamba pooling: -1 keep (config or the reference's mean). */
  int pooling;
  /* BERT: mb_bert_config.attn_dropout_exact (mambert's switch, not in config.json). */
  int attn_dropout_exact;
} mb_model_load_opts;

/* Load dir/config.json, the weights (model.safetensors, or the shards of
 * model.safetensors.index.json) and find the tokenizer (vocab.txt for BERT,
 * tokenizer.json for Mamba). Name variants accepted: LayerNorm gamma/beta,
 * "bert." prefix present or absent, backbone.embedding vs embeddings,
 * "backbone." present or absent, the head as classification_head.
 * classification_head / classification_head / classifier; buffers
 * (*.position_ids, *.token_type_ids) are ignored. Missing or unexpected
 * tensors and wrong shapes: one MB_EFORMAT listing all the names (layer
 * indices folded: "bert.encoder.layer.{0..11}.output.dense.weight"). A
 * tokenizer whose vocabulary is larger than the embedding is an error too.
 * All of it before any compute. opts may be NULL (strict). */
int mb_model_load(const char *dir, const mb_model_load_opts *opts, mb_backend *be, mb_model **out) MB_NODISCARD;

/* The tokenizer file a model directory's architecture reads, by its
 * config.json (any of the three forms): dir/vocab.txt for BERT,
 * dir/tokenizer.json for Mamba, whichever else the directory holds (HF BERT
 * folders ship both). Only the name: the file may not exist. */
int mb_model_dir_tokenizer(const char *dir, char *path, size_t cap) MB_NODISCARD;
/* The model's tokenizer (if it has one) against its embedding: more ids than
 * rows is an error naming `where` (a tokenizer of another model); fewer, for
 * BERT, a warning. */
int mb_model_check_tokenizer(const mb_model *m, const char *where) MB_NODISCARD;

/* Write an HF-style directory, atomically (a temporary sibling directory,
 * renamed into place; an existing dir is replaced only after the new one is
 * complete): config.json, model.safetensors, the tokenizer files.
 * BERT: loads with BertForSequenceClassification.from_pretrained and
 *   AutoTokenizer (vocab.txt, tokenizer_config.json, special_tokens_map.json).
 * Mamba: the reference classifier's names, config.json in mamba_ssm's
 *   MambaConfig form (what MambaTextClassification.from_pretrained reads),
 *   classifier.json with num_labels/id2label/pooling, tokenizer.json; see
 *   tools/mamba_classifier.py for a transformers-only loader. */
int mb_model_export(const mb_model *m, const char *dir) MB_NODISCARD;

/* ---- accessors ---- */
const mb_model_config *mb_model_config_of(const mb_model *m);
mb_params *mb_model_params(mb_model *m);
const char *mb_model_tokenizer_path(const mb_model *m); /* "" if none */
/* Load the model's tokenizer with the options its tokenizer_config.json
 * asks for (do_lower_case, strip_accents). */
int mb_model_load_tokenizer(const mb_model *m, mb_tokenizer **out) MB_NODISCARD;
/* Special tokens the model expects: BERT [CLS] ... [SEP]; Mamba none. */
int mb_model_add_special(const mb_model *m);
/* Label name of class i ("LABEL_i" by default). */
const char *mb_model_label(const mb_model *m, int i);
/* Name the classes (id2label): n must be the classifier's class count, the
 * names distinct and 1..MB_MODEL_LABEL_CAP-1 bytes. */
int mb_model_set_labels(mb_model *m, const char *const *names, int n) MB_NODISCARD;

/* ---- precision (mixed precision on the GPU) ----
 *
 * The parameters are always f32 (the master weights the optimizer updates).
 * compute = MB_F32 (the default, and the CPU backend's only choice: its
 * kernels are f32/f64) builds every program in f32. MB_BF16 / MB_F16 build
 * mixed-precision programs for the CUDA backend, with casts recorded in the
 * program (kernels/cuda/cuda.h, "Mixed precision"):
 *   BERT:  the embeddings' sum and LayerNorm in f32, then the encoder in the
 *          compute dtype: Linear weights cast at use, activations, fused
 *          attention, LayerNorm (f32 statistics) and residuals; pooler and
 *          classifier too; the logits cast to f32.
 *   Mamba: the residual stream in f32 (mamba_ssm's residual_in_fp32); per
 *          block RMSNorm in f32, then in_proj, conv1d, x_proj, dt_proj, the
 *          scan's activations and out_proj in the compute dtype, with
 *          conv1d's and the scan's own parameters (conv weight and bias,
 *          A_log, D, dt bias) kept in f32 (the kernels take them so, as
 *          mamba_ssm under autocast); the final RMSNorm, pooling and head in f32.
 * The cross-entropy always sees f32 logits; the scan's saved states are f32.
 * Gradients flow back through the casts into the f32 gradient buffer.
 * loss_scale = 1 (fp16 training): every program multiplies its loss by an
 * f32 scalar input "loss_scale" (mb_model_feed feeds the value set by
 * mb_model_set_loss_scale, default 1), so gradients come out scaled; the
 * unscaled loss is mb_model_loss(). Pair with mb_loss_scaler
 * (autograd/loss_scaler.h), which also gives the 1/S to step with.
 * fp8 matmuls are a backend option on top of bf16 (mb_cuda_backend_opts.fp8_matmul).
 *
 * Set the precision before building programs: the program cache keys on
 * the shape only, so programs built earlier keep theirs. */
typedef struct {
  mb_dtype compute;  /* MB_F32 (default), MB_BF16 or MB_F16 */
  int loss_scale;    /* 1: the loss is multiplied by the "loss_scale" input */
  int fp8_attention; /* 1 (bert): evaluation programs (shape.train 0) run attention with q, k, v in e4m3
                        (per-tensor current scaling: mb_attention_'s fp8); training programs do not */
} mb_model_precision;

/* MB_EINVAL for a compute dtype other than f32, bf16, f16;
 * MB_EUNSUPPORTED for fp8_attention on a model without attention. */
int mb_model_set_precision(mb_model *m, const mb_model_precision *p) MB_NODISCARD;
mb_model_precision mb_model_precision_of(const mb_model *m);
/* The loss scale S mb_model_feed gives programs built with loss_scale = 1. */
void mb_model_set_loss_scale(mb_model *m, double scale);

/* ---- programs ---- */

typedef struct {
  int packed;  /* 0: padded [rows, seq_len]; 1: packed, seq_len tokens in at most rows sequences */
  int rows;    /* padded: B; packed: max_seqs S */
  int seq_len; /* padded: L; packed: the token budget T */
  int train;   /* 1: dropout on (a training program); 0: evaluation */
} mb_model_shape;

#define MB_MODEL_KEY_LEN 4
void mb_model_key(const mb_model_shape *s, int64_t key[MB_MODEL_KEY_LEN]);
int mb_model_key_for_batch(const mb_batch *b, int train, int64_t key[MB_MODEL_KEY_LEN]) MB_NODISCARD;
int mb_model_shape_of_key(const int64_t *key, int nkey, mb_model_shape *s) MB_NODISCARD;

/* An mb_build_fn: records the classifier's forward for the shape `key`
 * (mb_model_key) into g, with the loss set and the logits marked. */
int mb_model_build(void *model, mb_graph *g, const int64_t *key, int nkey) MB_NODISCARD;
/* The same with the shape spelled out. */
int mb_model_build_shape(mb_model *m, mb_graph *g, const mb_model_shape *s) MB_NODISCARD;

/* Fill every input the executor's program declares from the batch; rng =
 * (seed, offset) for dropout (may be NULL for programs without dropout).
 * The batch must have the program's shape (MB_ESHAPE naming both). */
int mb_model_feed(const mb_model *m, mb_exec *ex, const mb_batch *b, const uint64_t rng[2]) MB_NODISCARD;

/* The logits value of a program built by mb_model_build (MB_VAR_NONE if none);
 * always f32. */
mb_var mb_model_logits(const mb_graph *g);
/* The mean cross-entropy without the loss scale: mb_graph_loss(g) unless the
 * program was built with loss_scale = 1 (then that is loss * S). */
mb_var mb_model_loss(const mb_graph *g);
/* Copy the logits ([rows, num_labels] f32) to host memory. */
int mb_model_read_logits(mb_exec *ex, float *out) MB_NODISCARD;

#ifdef __cplusplus
}
#endif
#endif
