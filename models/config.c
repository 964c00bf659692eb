/* config.c: model configurations: defaults, validation, and config.json in
 * the three forms the reference checkpoints use (HF BertConfig, mamba_ssm's
 * MambaConfig, HF MambaConfig), read and written with jansson. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/model_internal.h"
#include "runtime/fileio.h"

void mb_model_default_labels(mb_model_config *c, int from) {
  for (int i = from; i < MB_MODEL_MAX_LABELS; i++)
    snprintf(c->id2label[i], MB_MODEL_LABEL_CAP, "LABEL_%d", i);
}

void mb_mamba_config_derive(mb_mamba_config *mc, int64_t dt_rank_or_auto) {
  mc->d_inner = mc->expand * mc->d_model;
  mc->dt_rank = dt_rank_or_auto > 0 ? dt_rank_or_auto : (mc->d_model + 15) / 16;
  int64_t m = mc->pad_vocab_size_multiple > 0 ? mc->pad_vocab_size_multiple : 1;
  mc->vocab_size =
      mc->vocab_size_config % m ? mc->vocab_size_config + m - mc->vocab_size_config % m : mc->vocab_size_config;
}

mb_model_config mb_model_config_default(mb_arch arch) {
  mb_model_config c;
  memset(&c, 0, sizeof c);
  c.arch = arch;
  c.num_labels = 2;
  mb_model_default_labels(&c, 0);
  mb_bert_config *b = &c.bert;
  b->vocab_size = 30522;
  b->hidden_size = 768;
  b->num_layers = 12;
  b->num_heads = 12;
  b->intermediate_size = 3072;
  b->max_position = 512;
  b->type_vocab_size = 2;
  b->pad_token_id = 0;
  b->layer_norm_eps = 1e-12;
  b->hidden_dropout = 0.1;
  b->attention_dropout = 0.1;
  b->classifier_dropout = -1;
  b->initializer_range = 0.02;
  mb_mamba_config *m = &c.mamba;
  m->d_model = 768;
  m->n_layer = 24;
  m->vocab_size_config = 50277;
  m->pad_vocab_size_multiple = 8;
  m->d_state = 16;
  m->d_conv = 4;
  m->expand = 2;
  m->norm_eps = 1e-5;
  m->conv_bias = 1;
  m->proj_bias = 0;
  m->dt_min = 0.001;
  m->dt_max = 0.1;
  m->dt_scale = 1.0;
  m->dt_init_floor = 1e-4;
  m->dt_init_random = 1;
  m->initializer_range = 0.02;
  m->rescale_prenorm_residual = 1;
  m->pooling = MB_POOL_MEAN;
  m->pad_token_id = 0;
  mb_mamba_config_derive(m, 0);
  c.form = arch == MB_ARCH_BERT ? MB_FORM_HF_BERT : MB_FORM_MAMBA_SSM;
  return c;
}

#define BAD(...) MB_ERR(MB_EINVAL, __VA_ARGS__)

int mb_model_config_validate(const mb_model_config *c) {
  if (c->num_labels < 1 || c->num_labels > MB_MODEL_MAX_LABELS)
    return BAD("num_labels %d must be 1..%d", c->num_labels, MB_MODEL_MAX_LABELS);
  if (c->arch == MB_ARCH_BERT) {
    const mb_bert_config *b = &c->bert;
    if (b->vocab_size < 1)
      return BAD("vocab_size must be >= 1 (got %lld)", (long long)b->vocab_size);
    if (b->hidden_size < 1)
      return BAD("hidden_size must be >= 1 (got %lld)", (long long)b->hidden_size);
    if (b->num_layers < 1)
      return BAD("num_hidden_layers must be >= 1 (got %lld)", (long long)b->num_layers);
    if (b->num_heads < 1)
      return BAD("num_attention_heads must be >= 1 (got %lld)", (long long)b->num_heads);
    if (b->hidden_size % b->num_heads)
      return BAD("hidden_size %lld is not divisible by num_attention_heads %lld", (long long)b->hidden_size,
                 (long long)b->num_heads);
    if (b->intermediate_size < 1)
      return BAD("intermediate_size must be >= 1 (got %lld)", (long long)b->intermediate_size);
    if (b->max_position < 1)
      return BAD("max_position_embeddings must be >= 1 (got %lld)", (long long)b->max_position);
    if (b->type_vocab_size < 1)
      return BAD("type_vocab_size must be >= 1 (got %lld)", (long long)b->type_vocab_size);
    if (b->pad_token_id < 0 || b->pad_token_id >= b->vocab_size)
      return BAD("pad_token_id %lld is outside the vocabulary [0, %lld)", (long long)b->pad_token_id,
                 (long long)b->vocab_size);
    if (!(b->layer_norm_eps > 0))
      return BAD("layer_norm_eps must be > 0 (got %g)", b->layer_norm_eps);
    double drops[3] = {b->hidden_dropout, b->attention_dropout, b->classifier_dropout};
    const char *dn[3] = {"hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"};
    for (int i = 0; i < 3; i++)
      if (!(drops[i] < 1.0) || (i < 2 && !(drops[i] >= 0)))
        return BAD("%s must be in [0, 1) (got %g)", dn[i], drops[i]);
    if (!(b->initializer_range >= 0))
      return BAD("initializer_range must be >= 0 (got %g)", b->initializer_range);
    return MB_OK;
  }
  if (c->arch != MB_ARCH_MAMBA)
    return BAD("unknown architecture %d", (int)c->arch);
  const mb_mamba_config *m = &c->mamba;
  if (m->d_model < 1)
    return BAD("d_model must be >= 1 (got %lld)", (long long)m->d_model);
  if (m->n_layer < 1)
    return BAD("n_layer must be >= 1 (got %lld)", (long long)m->n_layer);
  if (m->vocab_size_config < 1 || m->vocab_size < m->vocab_size_config)
    return BAD("vocab_size must be >= 1 (got %lld)", (long long)m->vocab_size_config);
  if (m->d_state < 1)
    return BAD("d_state must be >= 1 (got %lld)", (long long)m->d_state);
  if (m->d_conv < 1 || m->d_conv > 4)
    return BAD("d_conv %lld is not supported (the causal conv1d kernels take widths 1..4)", (long long)m->d_conv);
  if (m->expand < 1)
    return BAD("expand must be >= 1 (got %lld)", (long long)m->expand);
  if (m->d_inner != m->expand * m->d_model)
    return BAD("intermediate size %lld must be expand %lld * d_model %lld", (long long)m->d_inner, (long long)m->expand,
               (long long)m->d_model);
  if (m->dt_rank < 1)
    return BAD("dt_rank must be >= 1 (got %lld)", (long long)m->dt_rank);
  if (!(m->norm_eps > 0))
    return BAD("norm epsilon must be > 0 (got %g)", m->norm_eps);
  if (!(m->dt_min > 0) || !(m->dt_max >= m->dt_min))
    return BAD("dt_min %g / dt_max %g: need 0 < dt_min <= dt_max", m->dt_min, m->dt_max);
  if (m->pad_token_id < 0 || m->pad_token_id >= m->vocab_size)
    return BAD("pad_token_id %lld is outside the vocabulary [0, %lld)", (long long)m->pad_token_id,
               (long long)m->vocab_size);
  if (m->pooling != MB_POOL_MEAN && m->pooling != MB_POOL_MASKED_MEAN)
    return BAD("unknown pooling %d", (int)m->pooling);
  return MB_OK;
}

int64_t mb_model_config_num_params(const mb_model_config *c) {
  mb_param_decl *d;
  int n;
  if (mb_model_param_decls(c, &d, &n) != MB_OK)
    return -1;
  int64_t total = 0;
  for (int i = 0; i < n; i++)
    total += mb_shape_numel(&d[i].shape);
  free(d);
  return total;
}

/* ---- reading ---------------------------------------------------------------- */

int mb_hf_json_parse(const char *text, const char *path, json_t **out) {
  json_error_t jerr;
  /* numbers as doubles: transformers writes "no limit" as model_max_length
   * 1000000000000000019884624838656, beyond jansson's 64-bit integers */
  *out = json_loads(text, JSON_DECODE_INT_AS_REAL, &jerr);
  if (!*out)
    return MB_ERR(MB_EFORMAT, "%s: line %d, column %d: invalid JSON: %s", path, jerr.line, jerr.column, jerr.text);
  return MB_OK;
}

int mb_json_int(const json_t *v, int64_t *out) {
  if (json_is_integer(v)) {
    *out = (int64_t)json_integer_value(v);
    return 1;
  }
  if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) && fabs(json_real_value(v)) < 1e15) {
    *out = (int64_t)json_real_value(v);
    return 1;
  }
  return 0;
}

typedef struct {
  json_t *root;
  const char *path;
} jcfg;

/* An integer field: required (absent is an error) or defaulted. */
static int get_int(const jcfg *j, const char *key, int required, int64_t *out) {
  json_t *v = json_object_get(j->root, key);
  if (!v || json_is_null(v)) {
    if (required)
      return MB_ERR(MB_EFORMAT, "%s: missing field '%s'", j->path, key);
    return MB_OK;
  }
  if (mb_json_int(v, out))
    return MB_OK;
  return MB_ERR(MB_EFORMAT, "%s: field '%s' must be an integer", j->path, key);
}

static int get_num_in(json_t *obj, const char *path, const char *key, double *out) {
  json_t *v = json_object_get(obj, key);
  if (!v || json_is_null(v))
    return MB_OK;
  if (!json_is_number(v))
    return MB_ERR(MB_EFORMAT, "%s: field '%s' must be a number", path, key);
  *out = json_number_value(v);
  return MB_OK;
}

static int get_num(const jcfg *j, const char *key, double *out) { return get_num_in(j->root, j->path, key, out); }

static int get_bool_in(json_t *obj, const char *path, const char *key, int *out) {
  json_t *v = json_object_get(obj, key);
  if (!v || json_is_null(v))
    return MB_OK;
  if (!json_is_boolean(v))
    return MB_ERR(MB_EFORMAT, "%s: field '%s' must be true or false", path, key);
  *out = json_is_true(v);
  return MB_OK;
}

static const char *get_str(const jcfg *j, const char *key) {
  json_t *v = json_object_get(j->root, key);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

/* num_labels / id2label (HF PretrainedConfig); *given when either is there. */
static int parse_labels(json_t *root, const char *path, mb_model_config *c, int *given) {
  json_t *nl = json_object_get(root, "num_labels");
  json_t *id2 = json_object_get(root, "id2label");
  int n = -1;
  if (nl && !json_is_null(nl)) {
    int64_t v;
    if (!mb_json_int(nl, &v))
      return MB_ERR(MB_EFORMAT, "%s: field 'num_labels' must be an integer", path);
    if (v < 1 || v > MB_MODEL_MAX_LABELS)
      return MB_ERR(MB_EFORMAT, "%s: num_labels %lld: expected 1..%d", path, (long long)v, MB_MODEL_MAX_LABELS);
    n = (int)v;
  }
  if (id2 && !json_is_null(id2)) {
    if (!json_is_object(id2))
      return MB_ERR(MB_EFORMAT, "%s: field 'id2label' must be an object {\"0\": \"NEGATIVE\", ...}", path);
    int k = (int)json_object_size(id2);
    if (n >= 0 && n != k)
      return MB_ERR(MB_EFORMAT, "%s: num_labels %d disagrees with id2label's %d entries", path, n, k);
    n = k;
    if (n < 1 || n > MB_MODEL_MAX_LABELS)
      return MB_ERR(MB_EFORMAT, "%s: id2label has %d entries; expected 1..%d", path, n, MB_MODEL_MAX_LABELS);
    const char *key;
    json_t *val;
    int seen[MB_MODEL_MAX_LABELS] = {0};
    json_object_foreach(id2, key, val) {
      char *end;
      long id = strtol(key, &end, 10);
      if (!*key || *end || id < 0 || id >= n || seen[id])
        return MB_ERR(MB_EFORMAT, "%s: id2label key '%s': expected the ids 0..%d, each once", path, key, n - 1);
      if (!json_is_string(val))
        return MB_ERR(MB_EFORMAT, "%s: id2label[\"%s\"] must be a string", path, key);
      seen[id] = 1;
      const char *name = json_string_value(val);
      if (!*name || strlen(name) >= MB_MODEL_LABEL_CAP)
        return MB_ERR(MB_EFORMAT, "%s: id2label[\"%s\"]: expected a name of 1..%d bytes", path, key,
                      MB_MODEL_LABEL_CAP - 1);
      snprintf(c->id2label[id], MB_MODEL_LABEL_CAP, "%s", name);
    }
    /* names are keys (label2id, predict's probabilities): each once */
    for (int i = 0; i < n; i++)
      for (int j = 0; j < i; j++)
        if (strcmp(c->id2label[i], c->id2label[j]) == 0)
          return MB_ERR(MB_EFORMAT, "%s: id2label names '%s' twice (ids %d and %d); each label needs its own name",
                        path, c->id2label[i], j, i);
  }
  if (n >= 0) {
    if (n < 1 || n > MB_MODEL_MAX_LABELS)
      return MB_ERR(MB_EFORMAT, "%s: num_labels %d: expected 1..%d", path, n, MB_MODEL_MAX_LABELS);
    c->num_labels = n;
    *given = 1;
  }
  return MB_OK;
}

static int parse_bert(const jcfg *j, mb_model_config *c) {
  mb_bert_config *b = &c->bert;
  MB_TRY(get_int(j, "vocab_size", 1, &b->vocab_size));
  MB_TRY(get_int(j, "hidden_size", 1, &b->hidden_size));
  MB_TRY(get_int(j, "num_hidden_layers", 1, &b->num_layers));
  MB_TRY(get_int(j, "num_attention_heads", 1, &b->num_heads));
  MB_TRY(get_int(j, "intermediate_size", 1, &b->intermediate_size));
  MB_TRY(get_int(j, "max_position_embeddings", 0, &b->max_position));
  MB_TRY(get_int(j, "type_vocab_size", 0, &b->type_vocab_size));
  MB_TRY(get_int(j, "pad_token_id", 0, &b->pad_token_id));
  MB_TRY(get_num(j, "layer_norm_eps", &b->layer_norm_eps));
  MB_TRY(get_num(j, "hidden_dropout_prob", &b->hidden_dropout));
  MB_TRY(get_num(j, "attention_probs_dropout_prob", &b->attention_dropout));
  MB_TRY(get_num(j, "classifier_dropout", &b->classifier_dropout));
  MB_TRY(get_num(j, "initializer_range", &b->initializer_range));
  const char *act = get_str(j, "hidden_act");
  if (act && strcmp(act, "gelu") != 0)
    return MB_ERR(MB_EUNSUPPORTED, "%s: hidden_act '%s' is not supported (only \"gelu\", the exact erf form)", j->path,
                  act);
  const char *pe = get_str(j, "position_embedding_type");
  if (pe && strcmp(pe, "absolute") != 0)
    return MB_ERR(MB_EUNSUPPORTED, "%s: position_embedding_type '%s' is not supported (only \"absolute\")", j->path,
                  pe);
  int dec = 0;
  MB_TRY(get_bool_in(j->root, j->path, "is_decoder", &dec));
  if (dec)
    return MB_ERR(MB_EUNSUPPORTED, "%s: is_decoder=true is not supported (an encoder classifier)", j->path);
  return MB_OK;
}

/* ssm_cfg of mamba_ssm (the Mamba block's keyword arguments). */
static int parse_ssm_cfg(json_t *s, const char *path, mb_mamba_config *m, int64_t *dt_rank) {
  if (!s || json_is_null(s))
    return MB_OK;
  if (!json_is_object(s))
    return MB_ERR(MB_EFORMAT, "%s: field 'ssm_cfg' must be an object", path);
  const char *key;
  json_t *v;
  json_object_foreach(s, key, v) {
    if (!strcmp(key, "layer")) {
      if (!json_is_string(v) || strcmp(json_string_value(v), "Mamba1") != 0)
        return MB_ERR(MB_EUNSUPPORTED, "%s: ssm_cfg.layer %s is not supported (only Mamba1)", path,
                      json_is_string(v) ? json_string_value(v) : "?");
      continue;
    }
    int64_t *iv = !strcmp(key, "d_state")  ? &m->d_state
                  : !strcmp(key, "d_conv") ? &m->d_conv
                  : !strcmp(key, "expand") ? &m->expand
                                           : NULL;
    double *dv = !strcmp(key, "dt_min")          ? &m->dt_min
                 : !strcmp(key, "dt_max")        ? &m->dt_max
                 : !strcmp(key, "dt_scale")      ? &m->dt_scale
                 : !strcmp(key, "dt_init_floor") ? &m->dt_init_floor
                                                 : NULL;
    if (iv) {
      if (!mb_json_int(v, iv))
        return MB_ERR(MB_EFORMAT, "%s: ssm_cfg.%s must be an integer", path, key);
    } else if (dv) {
      if (!json_is_number(v))
        return MB_ERR(MB_EFORMAT, "%s: ssm_cfg.%s must be a number", path, key);
      *dv = json_number_value(v);
    } else if (!strcmp(key, "dt_rank")) {
      if (json_is_string(v) && !strcmp(json_string_value(v), "auto"))
        *dt_rank = 0;
      else if (!mb_json_int(v, dt_rank) || *dt_rank < 1)
        return MB_ERR(MB_EFORMAT, "%s: ssm_cfg.dt_rank must be \"auto\" or a positive integer", path);
    } else if (!strcmp(key, "dt_init")) {
      const char *s2 = json_is_string(v) ? json_string_value(v) : "";
      if (strcmp(s2, "random") && strcmp(s2, "constant"))
        return MB_ERR(MB_EFORMAT, "%s: ssm_cfg.dt_init must be \"random\" or \"constant\"", path);
      m->dt_init_random = !strcmp(s2, "random");
    } else if (!strcmp(key, "conv_bias")) {
      MB_TRY(get_bool_in(s, path, key, &m->conv_bias));
    } else if (!strcmp(key, "bias")) {
      MB_TRY(get_bool_in(s, path, key, &m->proj_bias));
    } else if (!strcmp(key, "use_fast_path") || !strcmp(key, "layer_idx")) {
      /* execution switches of mamba_ssm: no effect on the math */
    } else {
      return MB_ERR(MB_EUNSUPPORTED, "%s: ssm_cfg.%s is not supported", path, key);
    }
  }
  return MB_OK;
}

/* mamba_ssm's MambaConfig: d_model, n_layer, vocab_size, ssm_cfg, rms_norm,
 * residual_in_fp32, fused_add_norm, pad_vocab_size_multiple. */
static int parse_mamba_ssm(const jcfg *j, mb_model_config *c) {
  mb_mamba_config *m = &c->mamba;
  MB_TRY(get_int(j, "d_model", 1, &m->d_model));
  MB_TRY(get_int(j, "n_layer", 1, &m->n_layer));
  MB_TRY(get_int(j, "vocab_size", 1, &m->vocab_size_config));
  MB_TRY(get_int(j, "pad_vocab_size_multiple", 0, &m->pad_vocab_size_multiple));
  int64_t dt_rank = 0, d_int = 0;
  MB_TRY(parse_ssm_cfg(json_object_get(j->root, "ssm_cfg"), j->path, m, &dt_rank));
  int rms = 1, tie = 0;
  MB_TRY(get_bool_in(j->root, j->path, "rms_norm", &rms));
  if (!rms)
    return MB_ERR(MB_EUNSUPPORTED, "%s: rms_norm=false (LayerNorm blocks) is not supported", j->path);
  MB_TRY(get_bool_in(j->root, j->path, "tie_embeddings", &tie));
  (void)tie; /* only ties the LM head, which a classifier does not have */
  MB_TRY(get_int(j, "d_intermediate", 0, &d_int));
  if (d_int != 0)
    return MB_ERR(MB_EUNSUPPORTED, "%s: d_intermediate %lld (MLP blocks) is not supported", j->path, (long long)d_int);
  json_t *attn = json_object_get(j->root, "attn_layer_idx");
  if (attn && json_is_array(attn) && json_array_size(attn) > 0)
    return MB_ERR(MB_EUNSUPPORTED, "%s: attn_layer_idx (hybrid attention layers) is not supported", j->path);
  MB_TRY(get_num(j, "norm_epsilon", &m->norm_eps));
  mb_mamba_config_derive(m, dt_rank);
  c->form = MB_FORM_MAMBA_SSM;
  return MB_OK;
}

/* HF transformers' MambaConfig (model_type "mamba"). */
static int parse_hf_mamba(const jcfg *j, mb_model_config *c) {
  mb_mamba_config *m = &c->mamba;
  MB_TRY(get_int(j, "hidden_size", 1, &m->d_model));
  MB_TRY(get_int(j, "num_hidden_layers", 1, &m->n_layer));
  MB_TRY(get_int(j, "vocab_size", 1, &m->vocab_size_config));
  MB_TRY(get_int(j, "state_size", 0, &m->d_state));
  MB_TRY(get_int(j, "conv_kernel", 0, &m->d_conv));
  MB_TRY(get_int(j, "expand", 0, &m->expand));
  MB_TRY(get_int(j, "pad_token_id", 0, &m->pad_token_id));
  MB_TRY(get_num(j, "layer_norm_epsilon", &m->norm_eps));
  MB_TRY(get_bool_in(j->root, j->path, "use_bias", &m->proj_bias));
  MB_TRY(get_bool_in(j->root, j->path, "use_conv_bias", &m->conv_bias));
  MB_TRY(get_num(j, "time_step_min", &m->dt_min));
  MB_TRY(get_num(j, "time_step_max", &m->dt_max));
  MB_TRY(get_num(j, "time_step_scale", &m->dt_scale));
  MB_TRY(get_num(j, "time_step_floor", &m->dt_init_floor));
  MB_TRY(get_num(j, "initializer_range", &m->initializer_range));
  MB_TRY(get_bool_in(j->root, j->path, "rescale_prenorm_residual", &m->rescale_prenorm_residual));
  const char *scheme = get_str(j, "time_step_init_scheme");
  if (scheme)
    m->dt_init_random = strcmp(scheme, "constant") != 0;
  const char *act = get_str(j, "hidden_act");
  if (act && strcmp(act, "silu") != 0)
    return MB_ERR(MB_EUNSUPPORTED, "%s: hidden_act '%s' is not supported (only \"silu\")", j->path, act);
  int64_t dt_rank = 0;
  json_t *r = json_object_get(j->root, "time_step_rank");
  if (r && !json_is_null(r) && !(json_is_string(r) && !strcmp(json_string_value(r), "auto"))) {
    if (!mb_json_int(r, &dt_rank) || dt_rank < 1)
      return MB_ERR(MB_EFORMAT, "%s: time_step_rank must be \"auto\" or a positive integer", j->path);
  }
  /* HF's vocab_size is the embedding's row count: no padding on top. */
  m->pad_vocab_size_multiple = m->vocab_size_config % 8 == 0 ? 8 : 1;
  mb_mamba_config_derive(m, dt_rank);
  int64_t inter = m->d_inner;
  MB_TRY(get_int(j, "intermediate_size", 0, &inter));
  if (inter != m->d_inner)
    return MB_ERR(MB_EFORMAT, "%s: intermediate_size %lld is not expand %lld * hidden_size %lld", j->path,
                  (long long)inter, (long long)m->expand, (long long)m->d_model);
  c->form = MB_FORM_HF_MAMBA;
  return MB_OK;
}

int mb_model_config_parse_ex(const char *text, const char *path, mb_model_config *out, int *num_labels_given) {
  json_t *root;
  MB_TRY(mb_hf_json_parse(text, path, &root));
  int rc = MB_OK, given = 0;
  jcfg j = {root, path};
  if (!json_is_object(root)) {
    rc = MB_ERR(MB_EFORMAT, "%s: expected a JSON object", path);
    goto done;
  }
  const char *mt = get_str(&j, "model_type");
  int is_bert = mt && !strcmp(mt, "bert");
  int is_hf_mamba = mt && !strcmp(mt, "mamba");
  int is_ssm = !mt && json_object_get(root, "d_model") != NULL;
  if (!mt && !is_ssm && json_object_get(root, "num_attention_heads"))
    is_bert = 1; /* very old BERT configs have no model_type */
  if (!is_bert && !is_hf_mamba && !is_ssm) {
    if (mt)
      rc = MB_ERR(MB_EUNSUPPORTED, "%s: model_type '%s' is not supported (bert or mamba)", path, mt);
    else
      rc = MB_ERR(MB_EFORMAT,
                  "%s: not a BERT or Mamba config (no model_type, no d_model): expected an HF BertConfig, "
                  "an HF MambaConfig or mamba_ssm's MambaConfig",
                  path);
    goto done;
  }
  *out = mb_model_config_default(is_bert ? MB_ARCH_BERT : MB_ARCH_MAMBA);
  if (is_bert)
    rc = parse_bert(&j, out);
  else if (is_hf_mamba)
    rc = parse_hf_mamba(&j, out);
  else
    rc = parse_mamba_ssm(&j, out);
  if (rc == MB_OK)
    rc = parse_labels(root, path, out, &given);
  if (rc == MB_OK) {
    rc = mb_model_config_validate(out);
    if (rc != MB_OK)
      rc = mb_error_context(rc, "%s", path);
  }
done:
  json_decref(root);
  if (num_labels_given)
    *num_labels_given = given;
  return rc;
}

int mb_model_config_parse(const char *text, const char *path, mb_model_config *out) {
  return mb_model_config_parse_ex(text, path, out, NULL);
}

int mb_model_config_load(const char *path, mb_model_config *out) {
  char *text;
  size_t n;
  MB_TRY(mb_read_file(path, 16u << 20, &text, &n));
  int rc = mb_model_config_parse(text, path, out);
  free(text);
  return rc;
}

/* classifier.json next to a mamba_ssm config: what MambaConfig cannot hold. */
int mb_mamba_classifier_parse(const char *text, const char *path, mb_model_config *c, int *have_labels) {
  json_t *root;
  MB_TRY(mb_hf_json_parse(text, path, &root));
  int rc = MB_OK;
  if (!json_is_object(root)) {
    rc = MB_ERR(MB_EFORMAT, "%s: expected a JSON object", path);
    goto done;
  }
  rc = parse_labels(root, path, c, have_labels);
  if (rc != MB_OK)
    goto done;
  json_t *p = json_object_get(root, "pooling");
  if (p) {
    const char *s = json_is_string(p) ? json_string_value(p) : "";
    if (!strcmp(s, "mean"))
      c->mamba.pooling = MB_POOL_MEAN;
    else if (!strcmp(s, "masked_mean"))
      c->mamba.pooling = MB_POOL_MASKED_MEAN;
    else {
      rc = MB_ERR(MB_EFORMAT, "%s: pooling must be \"mean\" or \"masked_mean\"", path);
      goto done;
    }
  }
  rc = get_num_in(root, path, "norm_epsilon", &c->mamba.norm_eps);
done:
  json_decref(root);
  return rc;
}

/* ---- writing ---------------------------------------------------------------- */

static json_t *labels_json(const mb_model_config *c, int inverse) {
  json_t *o = json_object();
  for (int i = 0; i < c->num_labels; i++) {
    if (inverse)
      json_object_set_new(o, c->id2label[i], json_integer(i));
    else {
      char k[16];
      snprintf(k, sizeof k, "%d", i);
      json_object_set_new(o, k, json_string(c->id2label[i]));
    }
  }
  return o;
}

static char *dump(json_t *o) {
  char *s = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
  json_decref(o);
  if (!s)
    return NULL;
  size_t n = strlen(s);
  char *t = realloc(s, n + 2);
  if (!t) {
    free(s);
    return NULL;
  }
  t[n] = '\n';
  t[n + 1] = 0;
  return t;
}

/* A double as JSON: integers-valued reals stay reals (0.1, 1e-12). */
static json_t *jreal(double v) { return json_real(v); }

char *mb_model_config_json(const mb_model_config *c) {
  json_t *o = json_object();
  if (c->arch == MB_ARCH_BERT) {
    const mb_bert_config *b = &c->bert;
    json_object_set_new(o, "architectures", json_pack("[s]", "BertForSequenceClassification"));
    json_object_set_new(o, "model_type", json_string("bert"));
    json_object_set_new(o, "attention_probs_dropout_prob", jreal(b->attention_dropout));
    json_object_set_new(o, "classifier_dropout",
                        b->classifier_dropout < 0 ? json_null() : jreal(b->classifier_dropout));
    json_object_set_new(o, "hidden_act", json_string("gelu"));
    json_object_set_new(o, "hidden_dropout_prob", jreal(b->hidden_dropout));
    json_object_set_new(o, "hidden_size", json_integer(b->hidden_size));
    json_object_set_new(o, "initializer_range", jreal(b->initializer_range));
    json_object_set_new(o, "intermediate_size", json_integer(b->intermediate_size));
    json_object_set_new(o, "layer_norm_eps", jreal(b->layer_norm_eps));
    json_object_set_new(o, "max_position_embeddings", json_integer(b->max_position));
    json_object_set_new(o, "num_attention_heads", json_integer(b->num_heads));
    json_object_set_new(o, "num_hidden_layers", json_integer(b->num_layers));
    json_object_set_new(o, "pad_token_id", json_integer(b->pad_token_id));
    json_object_set_new(o, "position_embedding_type", json_string("absolute"));
    json_object_set_new(o, "type_vocab_size", json_integer(b->type_vocab_size));
    json_object_set_new(o, "vocab_size", json_integer(b->vocab_size));
    json_object_set_new(o, "problem_type", json_string("single_label_classification"));
    json_object_set_new(o, "dtype", json_string("float32"));
    json_object_set_new(o, "id2label", labels_json(c, 0));
    json_object_set_new(o, "label2id", labels_json(c, 1));
    return dump(o);
  }
  /* mamba_ssm's MambaConfig: exactly its fields (the reference class builds
   * MambaConfig(**config) and rejects unknown keys); the classifier's own
   * settings go to classifier.json. ssm_cfg holds only what differs from
   * mamba_ssm's Mamba defaults, so a Mamba-130m export reads "ssm_cfg": {}. */
  const mb_mamba_config *m = &c->mamba;
  mb_mamba_config d = mb_model_config_default(MB_ARCH_MAMBA).mamba;
  json_t *ssm = json_object();
  if (m->d_state != d.d_state)
    json_object_set_new(ssm, "d_state", json_integer(m->d_state));
  if (m->d_conv != d.d_conv)
    json_object_set_new(ssm, "d_conv", json_integer(m->d_conv));
  if (m->expand != d.expand)
    json_object_set_new(ssm, "expand", json_integer(m->expand));
  if (m->dt_rank != (m->d_model + 15) / 16)
    json_object_set_new(ssm, "dt_rank", json_integer(m->dt_rank));
  if (m->dt_min != d.dt_min)
    json_object_set_new(ssm, "dt_min", jreal(m->dt_min));
  if (m->dt_max != d.dt_max)
    json_object_set_new(ssm, "dt_max", jreal(m->dt_max));
  if (m->dt_scale != d.dt_scale)
    json_object_set_new(ssm, "dt_scale", jreal(m->dt_scale));
  if (m->dt_init_floor != d.dt_init_floor)
    json_object_set_new(ssm, "dt_init_floor", jreal(m->dt_init_floor));
  if (m->dt_init_random != d.dt_init_random)
    json_object_set_new(ssm, "dt_init", json_string(m->dt_init_random ? "random" : "constant"));
  if (m->conv_bias != d.conv_bias)
    json_object_set_new(ssm, "conv_bias", json_boolean(m->conv_bias));
  if (m->proj_bias != d.proj_bias)
    json_object_set_new(ssm, "bias", json_boolean(m->proj_bias));
  json_object_set_new(o, "d_model", json_integer(m->d_model));
  json_object_set_new(o, "n_layer", json_integer(m->n_layer));
  json_object_set_new(o, "vocab_size", json_integer(m->vocab_size_config));
  json_object_set_new(o, "ssm_cfg", ssm);
  json_object_set_new(o, "rms_norm", json_true());
  json_object_set_new(o, "residual_in_fp32", json_true());
  json_object_set_new(o, "fused_add_norm", json_true());
  json_object_set_new(o, "pad_vocab_size_multiple", json_integer(m->pad_vocab_size_multiple));
  return dump(o);
}

char *mb_mamba_classifier_json(const mb_model_config *c) {
  json_t *o = json_object();
  json_object_set_new(o, "architectures", json_pack("[s]", "MambaTextClassification"));
  json_object_set_new(o, "num_labels", json_integer(c->num_labels));
  json_object_set_new(o, "id2label", labels_json(c, 0));
  json_object_set_new(o, "label2id", labels_json(c, 1));
  json_object_set_new(o, "pooling", json_string(c->mamba.pooling == MB_POOL_MASKED_MEAN ? "masked_mean" : "mean"));
  json_object_set_new(o, "norm_epsilon", jreal(c->mamba.norm_eps));
  json_object_set_new(o, "pad_token_id", json_integer(c->mamba.pad_token_id));
  return dump(o);
}
