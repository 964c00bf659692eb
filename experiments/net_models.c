/* net_models.c: the BERT and Mamba classifiers of models/ (models/model.h)
 * behind mb_net (net.h): sizes from the config or a Hugging Face style
 * checkpoint directory, programs, feeding, export. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/net.h"
#include "models/model.h"
#include "runtime/fileio.h"
#include "runtime/hash.h"
#include "runtime/log.h"

int mb_net_models_create(const mb_config *cfg, int64_t vocab_size, int for_training, mb_backend *be, mb_net **out);

static mb_model *model_of(const mb_net *net) { return net->impl; }

static int models_build(mb_net *net, mb_graph *g, const mb_net_shape *s) {
  mb_model_shape ms = {s->packed, (int)s->rows, (int)s->seq_len, s->train};
  return mb_model_build_shape(model_of(net), g, &ms);
}

static mb_var models_logits(mb_net *net, const mb_graph *g) {
  (void)net;
  return mb_model_logits(g);
}

static mb_var models_loss(mb_net *net, const mb_graph *g) {
  (void)net;
  return mb_model_loss(g);
}

static int models_feed(mb_net *net, mb_exec *ex, const mb_batch *b, const uint64_t rng[2]) {
  return mb_model_feed(model_of(net), ex, b, rng);
}

static int models_init(mb_net *net, uint64_t seed) { return mb_model_init_random(model_of(net), seed); }

static int models_export(mb_net *net, const char *dir, const char *tokenizer_path) {
  (void)tokenizer_path; /* the model carries its tokenizer path */
  return mb_model_export(model_of(net), dir);
}

static void models_describe(const mb_net *net, char *buf, size_t cap) {
  const mb_model_config *c = mb_model_config_of(model_of(net));
  if (c->arch == MB_ARCH_BERT)
    snprintf(buf, cap, "bert: hidden %lld, %lld layers, %lld heads, intermediate %lld, vocab %lld, positions %lld",
             (long long)c->bert.hidden_size, (long long)c->bert.num_layers, (long long)c->bert.num_heads,
             (long long)c->bert.intermediate_size, (long long)c->bert.vocab_size, (long long)c->bert.max_position);
  else
    snprintf(buf, cap, "mamba: d_model %lld, %lld layers, d_state %lld, d_conv %lld, expand %lld, dt_rank %lld, "
                       "vocab %lld, %s pooling",
             (long long)c->mamba.d_model, (long long)c->mamba.n_layer, (long long)c->mamba.d_state,
             (long long)c->mamba.d_conv, (long long)c->mamba.expand, (long long)c->mamba.dt_rank,
             (long long)c->mamba.vocab_size, c->mamba.pooling == MB_POOL_MASKED_MEAN ? "masked mean" : "mean");
}

static void models_destroy(mb_net *net) {
  /* the store belongs to the model: detach it so mb_net_free does not free it twice */
  net->params = NULL;
  mb_model_free(model_of(net));
}

static const mb_net_ops MODELS_OPS = {models_build, models_logits, models_loss,     models_feed,
                                      models_init,  models_export, models_describe, models_destroy};

struct mb_model *mb_net_model(mb_net *net) { return net && net->ops == &MODELS_OPS ? model_of(net) : NULL; }

/* The config's sizes as a models/ configuration. */
static int config_from(const mb_config *cfg, int64_t vocab_size, mb_model_config *mc) {
  if (strcmp(cfg->model_arch, "bert") == 0) {
    *mc = mb_model_config_default(MB_ARCH_BERT);
    mb_bert_config *b = &mc->bert;
    b->vocab_size = vocab_size;
    b->hidden_size = cfg->hidden_size;
    b->num_layers = cfg->num_layers;
    b->num_heads = cfg->num_heads;
    b->intermediate_size = cfg->intermediate_size ? cfg->intermediate_size : 4 * cfg->hidden_size;
    b->max_position = cfg->max_position;
    b->hidden_dropout = cfg->dropout;
    b->attention_dropout = cfg->attention_dropout;
    b->attn_dropout_exact = cfg->attention_dropout_exact;
    b->position_init_sinusoidal = strcmp(cfg->position_init, "sinusoidal") == 0;
  } else if (strcmp(cfg->model_arch, "mamba") == 0) {
    *mc = mb_model_config_default(MB_ARCH_MAMBA);
    mb_mamba_config *m = &mc->mamba;
    m->d_model = cfg->d_model;
    m->n_layer = cfg->num_layers;
    m->vocab_size_config = vocab_size;
    m->d_state = cfg->d_state;
    m->d_conv = cfg->d_conv;
    m->expand = cfg->expand;
    m->pooling = strcmp(mb_net_pooling(cfg, "mamba"), "masked_mean") == 0 ? MB_POOL_MASKED_MEAN : MB_POOL_MEAN;
    mb_mamba_config_derive(m, cfg->dt_rank);
  } else {
    return MB_ERR(MB_EINVAL, "model.arch '%s': expected bert, mamba or bow", cfg->model_arch);
  }
  mc->num_labels = (int)cfg->num_labels;
  return mb_model_config_validate(mc);
}

int mb_net_models_create(const mb_config *cfg, int64_t vocab_size, int for_training, mb_backend *be, mb_net **out) {
  mb_model *m = NULL;
  int rc;
  if (cfg->model_checkpoint[0]) {
    mb_model_load_opts lo;
    memset(&lo, 0, sizeof lo);
    lo.init_missing_head = for_training; /* a pretrained backbone gets a fresh head (logged) to train */
    lo.seed = (uint64_t)cfg->seed;
    lo.tokenizer_path = cfg->tokenizer[0] ? cfg->tokenizer : NULL;
    lo.num_labels = (int)cfg->num_labels;
    lo.attn_dropout_exact = cfg->attention_dropout_exact;
    lo.pooling = strcmp(cfg->pooling, "auto") == 0 ? -1
                 : strcmp(cfg->pooling, "masked_mean") == 0 ? MB_POOL_MASKED_MEAN
                                                            : MB_POOL_MEAN;
    rc = mb_model_load(cfg->model_checkpoint, &lo, be, &m);
    if (rc != MB_OK)
      return mb_error_context(rc, "model.checkpoint");
    const mb_model_config *mc = mb_model_config_of(m);
    const char *arch = mc->arch == MB_ARCH_BERT ? "bert" : "mamba";
    if (cfg->model_arch[0] && strcmp(cfg->model_arch, arch) != 0) {
      mb_model_free(m);
      return MB_ERR(MB_EINVAL, "model.arch is %s but model.checkpoint %s holds a %s model", cfg->model_arch,
                    cfg->model_checkpoint, arch);
    }
    if (cfg->attention_dropout_exact && mc->arch != MB_ARCH_BERT) { /* config.c cannot tell without model.arch */
      mb_model_free(m);
      return MB_ERR(MB_EINVAL, "model.attention_dropout_exact applies to bert models; model.checkpoint %s holds a %s "
                               "model",
                    cfg->model_checkpoint, arch);
    }
  } else {
    mb_model_config mc;
    rc = config_from(cfg, vocab_size, &mc);
    if (rc != MB_OK)
      return mb_error_context(rc, "model");
    rc = mb_model_new(&mc, cfg->tokenizer[0] ? cfg->tokenizer : NULL, be, &m);
    if (rc == MB_OK)
      rc = mb_model_init_random(m, (uint64_t)cfg->seed);
    if (rc != MB_OK) {
      mb_model_free(m);
      return rc;
    }
  }
  if (cfg->n_labels > 0) { /* model.labels: the classes' names, over a checkpoint's own */
    const char *names[MB_CFG_MAX_LABELS];
    for (int i = 0; i < cfg->n_labels; i++)
      names[i] = cfg->labels[i];
    rc = mb_model_set_labels(m, names, cfg->n_labels);
    if (rc != MB_OK) {
      mb_model_free(m);
      return mb_error_context(rc, "model.labels");
    }
  }
  mb_net *net = calloc(1, sizeof *net);
  if (!net) {
    mb_model_free(m);
    return MB_ERR(MB_ENOMEM, "out of memory");
  }
  const mb_model_config *mc = mb_model_config_of(m);
  net->ops = &MODELS_OPS;
  net->impl = m;
  net->params = mb_model_params(m);
  net->supports_packed = 1;
  net->wants_special = mb_model_add_special(m);
  net->num_labels = mc->num_labels;
  if (mc->arch == MB_ARCH_BERT) {
    snprintf(net->arch, sizeof net->arch, "bert");
    net->vocab_size = mc->bert.vocab_size;
    net->max_position = mc->bert.max_position;
  } else {
    snprintf(net->arch, sizeof net->arch, "mamba");
    net->vocab_size = mc->mamba.vocab_size;
    net->max_position = 0;
  }
  /* the weights' own tokenizer (the checkpoint directory's file, whatever
   * the config overrides it with), to check the config's and the data's against */
  if (cfg->model_checkpoint[0]) {
    char p[sizeof net->tokenizer_path];
    if (mb_model_dir_tokenizer(cfg->model_checkpoint, p, sizeof p) == MB_OK && mb_file_exists(p) &&
        mb_sha256_file_hex(p, net->tokenizer_sha256) == MB_OK)
      memcpy(net->tokenizer_path, p, sizeof p);
    else
      net->tokenizer_sha256[0] = 0; /* none to check against */
    mb_error_clear();
  }
  *out = net;
  return MB_OK;
}
