/* net.c: creating a net from a config, and its weights to and from
 * safetensors files by parameter name (net.h). */
#include "experiments/net.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/safetensors.h"

/* Provided by net_models.c when models/ is in the tree. */
int mb_net_models_create(const mb_config *cfg, int64_t vocab_size, int for_training, mb_backend *be, mb_net **out);

const char *mb_net_pooling(const mb_config *cfg, const char *arch) {
  if (strcmp(cfg->pooling, "auto") != 0)
    return cfg->pooling;
  if (strcmp(arch, "bert") == 0)
    return "cls";
  if (strcmp(arch, "mamba") == 0)
    return "mean";
  return "masked_mean";
}

int mb_net_create(const mb_config *cfg, int64_t tokenizer_vocab, int for_training, mb_backend *be, mb_net **out) {
  int64_t vocab = cfg->vocab_size ? cfg->vocab_size : tokenizer_vocab;
  mb_net *net = NULL;
  if (strcmp(cfg->model_arch, "bow") == 0 && !cfg->model_checkpoint[0]) {
    if (vocab <= 0)
      return MB_ERR(MB_EINVAL, "model.vocab_size: unknown (no tokenizer and no model.vocab_size)");
    MB_TRY(mb_net_bow_create(cfg, vocab, &net));
    int rc = mb_params_materialize(net->params, be);
    if (rc == MB_OK)
      rc = net->ops->init_weights(net, (uint64_t)cfg->seed);
    if (rc != MB_OK) {
      mb_net_free(net);
      return rc;
    }
    *out = net;
    return MB_OK;
  }
  return mb_net_models_create(cfg, vocab, for_training, be, out);
}

void mb_net_free(mb_net *net) {
  if (!net)
    return;
  if (net->ops && net->ops->destroy)
    net->ops->destroy(net);
  mb_params_free(net->params);
  free(net);
}

/* Up to `cap` names in a comma list. */
static void append_name(char *buf, size_t cap, int *count, const char *name) {
  (*count)++;
  size_t k = strlen(buf);
  if (*count <= 6)
    snprintf(buf + k, cap - k, "%s%s", *count > 1 ? ", " : "", name);
  else if (*count == 7)
    snprintf(buf + k, cap - k, ", ...");
}

void mb_net_set_weight_decay(mb_net *net, int decay_norms_biases) {
  for (int i = 0; i < mb_params_count(net->params); i++) {
    const mb_param_info *pi = mb_params_info(net->params, i);
    const int matrix = pi->shape.ndim > 1 && !strstr(pi->name, "A_log");
    (void)mb_params_set_weight_decay(net->params, i, decay_norms_biases || matrix);
  }
}

int mb_net_load_weights(mb_net *net, const char *path) {
  mb_safetensors *st;
  int rc = mb_safetensors_open(path, &st);
  if (rc != MB_OK)
    return mb_error_context(rc, "loading weights");
  mb_params *p = net->params;
  int n = mb_params_count(p);
  char missing[512] = "", unexpected[512] = "", shapes[768] = "";
  int n_missing = 0, n_unexpected = 0, n_shapes = 0;
  for (int i = 0; i < n; i++) {
    const mb_param_info *pi = mb_params_info(p, i);
    const mb_st_entry *e = mb_safetensors_find(st, pi->name);
    if (!e) {
      append_name(missing, sizeof missing, &n_missing, pi->name);
      continue;
    }
    int same = e->ndim == pi->shape.ndim && e->dtype == mb_params_dtype(p);
    for (int d = 0; same && d < e->ndim; d++)
      same = e->shape[d] == pi->shape.dim[d];
    if (!same) {
      char want[64], got[96];
      mb_shape_str(&pi->shape, want, sizeof want);
      size_t k = (size_t)snprintf(got, sizeof got, "%s[", e->dtype_name);
      for (int d = 0; d < e->ndim && k < sizeof got; d++)
        k += (size_t)snprintf(got + k, sizeof got - k, "%s%lld", d ? ", " : "", (long long)e->shape[d]);
      if (k < sizeof got)
        snprintf(got + k, sizeof got - k, "]");
      char item[256], dt[16];
      snprintf(dt, sizeof dt, "%s", mb_dtype_name(mb_params_dtype(p)));
      for (char *q = dt; *q; q++)
        *q = (char)toupper((unsigned char)*q);
      snprintf(item, sizeof item, "%s (file %s, model %s%s)", pi->name, got, dt, want);
      append_name(shapes, sizeof shapes, &n_shapes, item);
    }
  }
  for (size_t i = 0; i < mb_safetensors_count(st); i++) {
    const mb_st_entry *e = mb_safetensors_entry(st, i);
    if (mb_params_find(p, e->name) < 0)
      append_name(unexpected, sizeof unexpected, &n_unexpected, e->name);
  }
  if (n_missing || n_unexpected || n_shapes) {
    const char *arch = mb_safetensors_metadata(st, "arch");
    rc = MB_ERR(MB_EFORMAT,
                "%s: weights do not fit this %s model%s%s%s: %d missing%s%s%s, %d unexpected%s%s%s, %d of another "
                "shape%s%s",
                path, net->arch, arch ? " (the file is from a " : "", arch ? arch : "", arch ? " model)" : "",
                n_missing, n_missing ? " [" : "", missing, n_missing ? "]" : "", n_unexpected,
                n_unexpected ? " [" : "", unexpected, n_unexpected ? "]" : "", n_shapes, n_shapes ? ": " : "",
                shapes);
    mb_safetensors_close(st);
    return rc;
  }
  for (int i = 0; i < n && rc == MB_OK; i++) {
    const mb_st_entry *e = mb_safetensors_find(st, mb_params_info(p, i)->name);
    rc = mb_params_set(p, i, e->data);
  }
  mb_safetensors_close(st);
  return rc;
}

int mb_net_save_weights(mb_net *net, const char *path, const char *const *meta_kv, int n_meta) {
  mb_params *p = net->params;
  mb_safetensors_writer *w;
  MB_TRY(mb_safetensors_writer_new(&w));
  int rc = MB_OK;
  int n = mb_params_count(p);
  /* on the CPU the store is host memory: tensors view it without a copy */
  void **copies = calloc((size_t)n, sizeof *copies);
  if (!copies)
    rc = MB_ERR(MB_ENOMEM, "out of memory");
  for (int i = 0; rc == MB_OK && i < n; i++) {
    const mb_param_info *pi = mb_params_info(p, i);
    size_t bytes = (size_t)pi->numel * mb_dtype_size(mb_params_dtype(p));
    copies[i] = malloc(bytes ? bytes : 1);
    if (!copies[i]) {
      rc = MB_ERR(MB_ENOMEM, "out of memory copying %s", pi->name);
      break;
    }
    rc = mb_params_get(p, i, copies[i]);
    if (rc == MB_OK)
      rc = mb_safetensors_writer_add(w, pi->name, mb_params_dtype(p), &pi->shape, copies[i]);
  }
  for (int i = 0; rc == MB_OK && i + 1 < 2 * n_meta; i += 2)
    rc = mb_safetensors_writer_set_metadata(w, meta_kv[i], meta_kv[i + 1]);
  if (rc == MB_OK)
    rc = mb_safetensors_writer_write(w, path);
  for (int i = 0; copies && i < n; i++)
    free(copies[i]);
  free(copies);
  mb_safetensors_writer_free(w);
  return rc;
}
