/* net_bow.c: the bag-of-embeddings baseline (fastText-like):
 *   h = masked mean over tokens of E[ids]   (E: [vocab, d_model])
 *   h = dropout(tanh(h W1^T + b1))          (W1: [d_model, d_model])
 *   logits = h W2^T + b2                    (W2: [num_labels, d_model])
 * Seconds per epoch on a CPU, no attention and no scan: the runner's own test
 * model and a floor that BERT and Mamba should beat. Padded batches only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/net.h"
#include "runtime/alloc.h"
#include "runtime/fileio.h"
#include "runtime/philox.h"

typedef struct {
  int64_t d_model;
  double dropout;
} bow_impl;

static int bow_build(mb_net *net, mb_graph *g, const mb_net_shape *s) {
  bow_impl *b = net->impl;
  if (s->packed)
    return MB_ERR(MB_EUNSUPPORTED, "the bow model takes padded batches only (data.batching: padded)");
  const int64_t R = s->rows, L = s->seq_len, D = b->d_model;
  mb_var ids = mb_input(g, "input_ids", MB_I32, mb_shape2(R, L));
  mb_var mask = mb_input(g, "attention_mask", MB_I32, mb_shape2(R, L));
  mb_var emb = mb_embedding(g, ids, mb_param(g, "embedding.weight", mb_shape2(net->vocab_size, D)));
  mb_var h = mb_mean_pool(g, emb, mask);
  h = mb_tanh(g, mb_linear(g, h, mb_param(g, "pre_classifier.weight", mb_shape2(D, D)),
                           mb_param(g, "pre_classifier.bias", mb_shape1(D))));
  if (s->train && b->dropout > 0) {
    mb_var rng = mb_input(g, "dropout_rng", MB_U64, mb_shape1(2));
    h = mb_dropout(g, h, b->dropout, rng, 0);
  }
  mb_var logits = mb_linear(g, h, mb_param(g, "classifier.weight", mb_shape2(net->num_labels, D)),
                            mb_param(g, "classifier.bias", mb_shape1(net->num_labels)));
  mb_var labels = mb_input(g, "labels", MB_I32, mb_shape1(R));
  mb_mark_output(g, logits);
  mb_set_loss(g, mb_cross_entropy(g, logits, labels));
  return mb_graph_status(g);
}

/* The marked output of rank 2 (the loss is a scalar). */
static mb_var bow_logits(mb_net *net, const mb_graph *g) {
  (void)net;
  for (int i = 0; i < mb_graph_num_values(g); i++) {
    const mb_value *v = mb_graph_value(g, (mb_var){i});
    if (v->is_output && v->shape.ndim == 2)
      return (mb_var){i};
  }
  return MB_VAR_NONE;
}

static int feed_if_declared(mb_exec *ex, const char *name, const void *data) {
  mb_var v = mb_graph_find_input(mb_exec_graph(ex), name);
  return mb_var_ok(v) ? mb_exec_set_input(ex, v, data) : MB_OK;
}

static int bow_feed(mb_net *net, mb_exec *ex, const mb_batch *b, const uint64_t rng[2]) {
  (void)net;
  if (b->mode != MB_BATCH_PACKED && mb_var_ok(mb_graph_find_input(mb_exec_graph(ex), "dropout_rng")) && !rng)
    return MB_ERR(MB_EINVAL, "a training program needs the dropout rng");
  int32_t *labels = malloc((size_t)b->rows * sizeof *labels);
  if (!labels)
    return MB_ERR(MB_ENOMEM, "out of memory");
  for (int32_t i = 0; i < b->rows; i++)
    labels[i] = b->labels[i] < 0 ? -100 : b->labels[i];
  int rc = feed_if_declared(ex, "input_ids", b->input_ids);
  if (rc == MB_OK)
    rc = feed_if_declared(ex, "attention_mask", b->attention_mask);
  if (rc == MB_OK)
    rc = feed_if_declared(ex, "labels", labels);
  if (rc == MB_OK && rng)
    rc = feed_if_declared(ex, "dropout_rng", rng);
  free(labels);
  return rc;
}

/* normal(0, 0.02) for matrices, zero biases, as BERT initialises. */
static int bow_init(mb_net *net, uint64_t seed) {
  mb_params *p = net->params;
  mb_philox_state st = mb_philox_init(seed);
  for (int i = 0; i < mb_params_count(p); i++) {
    const mb_param_info *pi = mb_params_info(p, i);
    float *buf = mb_host_malloc((size_t)pi->numel * sizeof(float));
    if (!buf)
      return MB_ERR(MB_ENOMEM, "out of memory initialising %s", pi->name);
    if (pi->shape.ndim == 1)
      memset(buf, 0, (size_t)pi->numel * sizeof(float));
    else
      mb_philox_fill_normal(st.seed, mb_philox_take(&st, (uint64_t)pi->numel), buf, (size_t)pi->numel, 0.0f, 0.02f);
    int rc = mb_params_set(p, i, buf);
    mb_host_free(buf);
    MB_TRY(rc);
  }
  return MB_OK;
}

static int bow_export(mb_net *net, const char *dir, const char *tokenizer_path) {
  bow_impl *b = net->impl;
  MB_TRY(mb_mkdir_p(dir));
  char path[1200], json[512];
  int n = snprintf(json, sizeof json,
                   "{\n  \"model_type\": \"mambert-bow\",\n  \"architectures\": [\"BagOfEmbeddingsClassifier\"],\n"
                   "  \"vocab_size\": %lld,\n  \"d_model\": %lld,\n  \"num_labels\": %lld,\n  \"dropout\": %g\n}\n",
                   (long long)net->vocab_size, (long long)b->d_model, (long long)net->num_labels, b->dropout);
  MB_TRY(mb_path_join(path, sizeof path, dir, "config.json"));
  MB_TRY(mb_write_file_atomic(path, json, (size_t)n));
  MB_TRY(mb_path_join(path, sizeof path, dir, "model.safetensors"));
  const char *meta[] = {"format", "pt", "arch", "bow"};
  MB_TRY(mb_net_save_weights(net, path, meta, 2));
  (void)tokenizer_path;
  return MB_OK;
}

static void bow_describe(const mb_net *net, char *buf, size_t cap) {
  const bow_impl *b = net->impl;
  snprintf(buf, cap, "bow: d_model %lld, vocab %lld, %lld labels, dropout %g", (long long)b->d_model,
           (long long)net->vocab_size, (long long)net->num_labels, b->dropout);
}

static void bow_destroy(mb_net *net) { free(net->impl); }

static mb_var bow_loss(mb_net *net, const mb_graph *g) {
  (void)net;
  return mb_graph_loss(g);
}

static const mb_net_ops BOW_OPS = {bow_build,  bow_logits,   bow_loss,    bow_feed,
                                   bow_init,   bow_export,   bow_describe, bow_destroy};

int mb_net_bow_create(const mb_config *cfg, int64_t vocab_size, mb_net **out) {
  mb_net *net = calloc(1, sizeof *net);
  bow_impl *b = calloc(1, sizeof *b);
  if (!net || !b) {
    free(net);
    free(b);
    return MB_ERR(MB_ENOMEM, "out of memory");
  }
  b->d_model = cfg->d_model;
  b->dropout = cfg->dropout;
  net->ops = &BOW_OPS;
  net->impl = b;
  snprintf(net->arch, sizeof net->arch, "bow");
  net->vocab_size = vocab_size;
  net->num_labels = cfg->num_labels;
  int rc = mb_params_new(MB_F32, &net->params);
  int idx;
  if (rc == MB_OK)
    rc = mb_params_add(net->params, "embedding.weight", mb_shape2(vocab_size, b->d_model), &idx);
  if (rc == MB_OK)
    rc = mb_params_add(net->params, "pre_classifier.weight", mb_shape2(b->d_model, b->d_model), &idx);
  if (rc == MB_OK)
    rc = mb_params_add(net->params, "pre_classifier.bias", mb_shape1(b->d_model), &idx);
  if (rc == MB_OK)
    rc = mb_params_add(net->params, "classifier.weight", mb_shape2(cfg->num_labels, b->d_model), &idx);
  if (rc == MB_OK)
    rc = mb_params_add(net->params, "classifier.bias", mb_shape1(cfg->num_labels), &idx);
  if (rc != MB_OK) {
    mb_net_free(net);
    return rc;
  }
  *out = net;
  return MB_OK;
}
