/* model.c: the model object: creation (parameters declared from the
 * architecture's list), random initialisation with Philox, program shapes
 * and keys, the build function the program cache calls, feeding a batch
 * into a program, and reading its logits. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/model_internal.h"
#include "runtime/alloc.h"
#include "runtime/philox.h"

void mb_param_decl_add(mb_param_decl *d, int *n, int cap, mb_shape shape, mb_init_kind init, double a, int no_decay,
                       int head, const char *fmt, ...) {
  if (*n < cap) {
    mb_param_decl *p = &d[*n];
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    p->shape = shape;
    p->init = init;
    p->a = a;
    p->no_decay = no_decay;
    p->head = head;
  }
  (*n)++;
}

int mb_model_param_decls(const mb_model_config *c, mb_param_decl **out, int *n) {
  int (*list)(const mb_model_config *, mb_param_decl *, int) =
      c->arch == MB_ARCH_BERT ? mb_bert_param_decls : mb_mamba_param_decls;
  if (c->arch != MB_ARCH_BERT && c->arch != MB_ARCH_MAMBA)
    return MB_ERR(MB_EINVAL, "unknown architecture %d", (int)c->arch);
  int count = list(c, NULL, 0);
  mb_param_decl *d = calloc((size_t)count, sizeof *d);
  if (!d)
    return MB_ERR(MB_ENOMEM, "out of memory for %d parameter declarations", count);
  list(c, d, count);
  *out = d;
  *n = count;
  return MB_OK;
}

int mb_model_new(const mb_model_config *cfg, const char *tokenizer_path, mb_backend *be, mb_model **out) {
  *out = NULL;
  MB_TRY(mb_model_config_validate(cfg));
  mb_model *m = calloc(1, sizeof *m);
  if (!m)
    return MB_ERR(MB_ENOMEM, "out of memory");
  m->cfg = *cfg;
  m->prec.compute = MB_F32;
  m->loss_scale = 1.0;
  m->do_lower_case = -1;
  m->strip_accents = -1;
  m->tokenizer_path = strdup(tokenizer_path ? tokenizer_path : "");
  mb_param_decl *d = NULL;
  int n = 0, rc;
  if (!m->tokenizer_path) {
    rc = MB_ERR(MB_ENOMEM, "out of memory");
    goto fail;
  }
  rc = mb_model_param_decls(cfg, &d, &n);
  if (rc != MB_OK)
    goto fail;
  rc = mb_params_new(MB_F32, &m->params);
  for (int i = 0; rc == MB_OK && i < n; i++) {
    int idx;
    rc = mb_params_add(m->params, d[i].name, d[i].shape, &idx);
    if (rc == MB_OK && d[i].no_decay)
      rc = mb_params_set_weight_decay(m->params, idx, 0);
  }
  if (rc == MB_OK && be)
    rc = mb_params_materialize(m->params, be);
  free(d);
  if (rc != MB_OK)
    goto fail;
  *out = m;
  return MB_OK;
fail:
  mb_model_free(m);
  return rc;
}

void mb_model_free(mb_model *m) {
  if (!m)
    return;
  mb_params_free(m->params);
  free(m->tokenizer_path);
  free(m);
}

const mb_model_config *mb_model_config_of(const mb_model *m) { return &m->cfg; }
mb_params *mb_model_params(mb_model *m) { return m->params; }
const char *mb_model_tokenizer_path(const mb_model *m) { return m->tokenizer_path; }
int mb_model_add_special(const mb_model *m) { return m->cfg.arch == MB_ARCH_BERT; }

const char *mb_model_label(const mb_model *m, int i) {
  if (i < 0 || i >= m->cfg.num_labels)
    return "?";
  return m->cfg.id2label[i];
}

int mb_model_set_labels(mb_model *m, const char *const *names, int n) {
  if (n != m->cfg.num_labels)
    return MB_ERR(MB_EINVAL, "%d label names for a classifier of %d classes", n, m->cfg.num_labels);
  for (int i = 0; i < n; i++) {
    if (!*names[i] || strlen(names[i]) >= MB_MODEL_LABEL_CAP)
      return MB_ERR(MB_EINVAL, "label %d: expected a name of 1..%d bytes", i, MB_MODEL_LABEL_CAP - 1);
    for (int j = 0; j < i; j++)
      if (strcmp(names[i], names[j]) == 0)
        return MB_ERR(MB_EINVAL, "label '%s' given twice (classes %d and %d)", names[i], j, i);
  }
  for (int i = 0; i < n; i++)
    snprintf(m->cfg.id2label[i], MB_MODEL_LABEL_CAP, "%s", names[i]);
  return MB_OK;
}

int mb_model_load_tokenizer(const mb_model *m, mb_tokenizer **out) {
  if (!m->tokenizer_path[0])
    return MB_ERR(MB_ENOTFOUND, "the model has no tokenizer (no %s next to its config; give one)",
                  m->cfg.arch == MB_ARCH_BERT ? "vocab.txt" : "tokenizer.json");
  mb_tokenizer_options o = mb_tokenizer_default_options();
  if (m->do_lower_case >= 0)
    o.lowercase = m->do_lower_case;
  if (m->strip_accents >= 0)
    o.strip_accents = m->strip_accents;
  return mb_tokenizer_load(m->tokenizer_path, &o, out);
}

/* ---- random initialisation ------------------------------------------------- */

static void fill_param(const mb_param_decl *d, const mb_mamba_config *mc, uint64_t seed, uint64_t off, float *w) {
  int64_t n = mb_shape_numel(&d->shape);
  switch (d->init) {
  case MB_INIT_ZERO:
    memset(w, 0, (size_t)n * sizeof *w);
    break;
  case MB_INIT_ONE:
    for (int64_t i = 0; i < n; i++)
      w[i] = 1.0f;
    break;
  case MB_INIT_CONST:
    for (int64_t i = 0; i < n; i++)
      w[i] = (float)d->a;
    break;
  case MB_INIT_NORMAL:
  case MB_INIT_NORMAL_PADROW:
    mb_philox_fill_normal(seed, off, w, (size_t)n, 0.0f, (float)d->a);
    if (d->init == MB_INIT_NORMAL_PADROW && d->b >= 0 && d->b < d->shape.dim[0]) {
      int64_t H = d->shape.dim[1];
      memset(w + d->b * H, 0, (size_t)H * sizeof *w);
    }
    break;
  case MB_INIT_UNIFORM:
    mb_philox_fill_uniform(seed, off, w, (size_t)n, (float)-d->a, (float)d->a);
    break;
  case MB_INIT_SINUSOID: {
    /* amplitude a sqrt(2): a sinusoid's RMS is its amplitude / sqrt(2) */
    const int64_t P = d->shape.dim[0], H = d->shape.dim[1];
    const double amp = d->a * sqrt(2.0);
    for (int64_t p = 0; p < P; p++)
      for (int64_t i = 0; i < H; i++) {
        const double freq = pow(10000.0, -(double)(i - (i & 1)) / (double)H);
        w[p * H + i] = (float)(amp * ((i & 1) ? cos((double)p * freq) : sin((double)p * freq)));
      }
    break;
  }
  case MB_INIT_ALOG: {
    int64_t N = d->shape.dim[1];
    for (int64_t i = 0; i < n; i++)
      w[i] = (float)log((double)(i % N + 1));
    break;
  }
  case MB_INIT_DT_BIAS: {
    /* mamba_ssm: dt = exp(u (log dt_max - log dt_min) + log dt_min), floored;
     * bias = dt + log(-expm1(-dt)), the inverse of softplus */
    mb_philox_fill_uniform(seed, off, w, (size_t)n, 0.0f, 1.0f);
    double lo = log(mc->dt_min), hi = log(mc->dt_max);
    for (int64_t i = 0; i < n; i++) {
      double dt = exp((double)w[i] * (hi - lo) + lo);
      if (dt < mc->dt_init_floor)
        dt = mc->dt_init_floor;
      w[i] = (float)(dt + log(-expm1(-dt)));
    }
    break;
  }
  }
}

int mb_model_init_random_prefix(mb_model *m, uint64_t seed, const char *prefix) {
  mb_param_decl *d;
  int n;
  MB_TRY(mb_model_param_decls(&m->cfg, &d, &n));
  int64_t maxn = 0;
  for (int i = 0; i < n; i++)
    if (mb_shape_numel(&d[i].shape) > maxn)
      maxn = mb_shape_numel(&d[i].shape);
  float *w = mb_host_malloc((size_t)(maxn > 0 ? maxn : 1) * sizeof *w);
  if (!w) {
    free(d);
    return MB_ERR(MB_ENOMEM, "out of memory initialising the model");
  }
  /* every parameter takes its own range of the stream, in declaration
   * order, whether or not it is initialised now: a fresh head gets the same
   * values as in a full initialisation with this seed */
  mb_philox_state st = mb_philox_init(seed);
  int rc = MB_OK;
  size_t plen = prefix ? strlen(prefix) : 0;
  for (int i = 0; i < n && rc == MB_OK; i++) {
    uint64_t off = mb_philox_take(&st, (uint64_t)mb_shape_numel(&d[i].shape));
    if (plen && strncmp(d[i].name, prefix, plen) != 0)
      continue;
    int idx = mb_params_find(m->params, d[i].name);
    if (idx < 0) {
      rc = MB_ERR(MB_EINTERNAL, "parameter %s is not in the store", d[i].name);
      break;
    }
    fill_param(&d[i], &m->cfg.mamba, seed, off, w);
    rc = mb_params_set(m->params, idx, w);
  }
  mb_host_free(w);
  free(d);
  return rc;
}

int mb_model_init_random(mb_model *m, uint64_t seed) { return mb_model_init_random_prefix(m, seed, NULL); }

/* ---- programs ----------------------------------------------------------------- */

void mb_model_key(const mb_model_shape *s, int64_t key[MB_MODEL_KEY_LEN]) {
  key[0] = s->packed;
  key[1] = s->rows;
  key[2] = s->seq_len;
  key[3] = s->train;
}

int mb_model_shape_of_key(const int64_t *key, int nkey, mb_model_shape *s) {
  if (nkey != MB_MODEL_KEY_LEN)
    return MB_ERR(MB_EINVAL, "model program key has %d entries; expected %d (mb_model_key)", nkey, MB_MODEL_KEY_LEN);
  if ((key[0] != 0 && key[0] != 1) || key[1] < 1 || key[2] < 1 || key[1] > INT32_MAX || key[2] > INT32_MAX ||
      (key[3] != 0 && key[3] != 1))
    return MB_ERR(MB_EINVAL,
                  "bad model program key {%lld, %lld, %lld, %lld}: expected {packed 0/1, rows >= 1, "
                  "seq_len >= 1, train 0/1}",
                  (long long)key[0], (long long)key[1], (long long)key[2], (long long)key[3]);
  s->packed = (int)key[0];
  s->rows = (int)key[1];
  s->seq_len = (int)key[2];
  s->train = (int)key[3];
  return MB_OK;
}

int mb_model_key_for_batch(const mb_batch *b, int train, int64_t key[MB_MODEL_KEY_LEN]) {
  if (b->rows < 1 || b->seq_len < 1)
    return MB_ERR(MB_EINVAL, "batch has %d rows of %d tokens", b->rows, b->seq_len);
  mb_model_shape s = {b->mode == MB_BATCH_PACKED, b->rows, b->seq_len, !!train};
  mb_model_key(&s, key);
  return MB_OK;
}

int mb_model_build_shape(mb_model *m, mb_graph *g, const mb_model_shape *s) {
  if (s->rows < 1 || s->seq_len < 1)
    return MB_ERR(MB_EINVAL, "model program shape: rows %d, seq_len %d must be >= 1", s->rows, s->seq_len);
  if (s->packed && s->rows > s->seq_len)
    return MB_ERR(MB_EINVAL, "packed program: %d sequences cannot fit %d tokens", s->rows, s->seq_len);
  return m->cfg.arch == MB_ARCH_BERT ? mb_bert_build(m, g, s) : mb_mamba_build(m, g, s);
}

int mb_model_build(void *model, mb_graph *g, const int64_t *key, int nkey) {
  mb_model_shape s;
  MB_TRY(mb_model_shape_of_key(key, nkey, &s));
  return mb_model_build_shape(model, g, &s);
}

mb_var mb_model_logits(const mb_graph *g) {
  mb_var loss = mb_graph_loss(g);
  int n = mb_graph_num_values(g);
  for (int i = 0; i < n; i++) {
    const mb_value *v = mb_graph_value(g, (mb_var){i});
    if (v->is_output && i != loss.id && v->shape.ndim == 2)
      return (mb_var){i};
  }
  return MB_VAR_NONE;
}

mb_var mb_model_loss(const mb_graph *g) {
  mb_var loss = mb_graph_loss(g);
  if (!mb_var_ok(mb_graph_find_input(g, "loss_scale")))
    return loss;
  /* the unscaled loss: the other scalar output (mb_model_finish marks it) */
  int n = mb_graph_num_values(g);
  for (int i = 0; i < n; i++) {
    const mb_value *v = mb_graph_value(g, (mb_var){i});
    if (v->is_output && i != loss.id && v->shape.ndim == 0)
      return (mb_var){i};
  }
  return MB_VAR_NONE;
}

/* ---- precision ----------------------------------------------------------------- */

int mb_model_set_precision(mb_model *m, const mb_model_precision *p) {
  if (p->compute != MB_F32 && p->compute != MB_BF16 && p->compute != MB_F16)
    return MB_ERR(MB_EINVAL, "model compute dtype %s: expected f32, bf16 or f16 (parameters stay f32)",
                  mb_dtype_name(p->compute));
  if (p->fp8_attention && m->cfg.arch != MB_ARCH_BERT)
    return MB_ERR(MB_EUNSUPPORTED, "fp8 attention: the mamba model has no attention");
  m->prec = *p;
  m->prec.loss_scale = !!p->loss_scale;
  m->prec.fp8_attention = !!p->fp8_attention;
  return MB_OK;
}

mb_model_precision mb_model_precision_of(const mb_model *m) { return m->prec; }

void mb_model_set_loss_scale(mb_model *m, double scale) { m->loss_scale = scale; }

mb_var mb_model_cast(mb_graph *g, mb_var x, mb_dtype dt) {
  if (!mb_var_ok(x) || mb_graph_value(g, x)->dtype == dt)
    return x;
  return mb_cast(g, x, dt);
}

int mb_model_finish(const mb_model *m, mb_graph *g, mb_var logits, mb_var labels) {
  logits = mb_model_cast(g, logits, MB_F32);
  mb_mark_output(g, logits);
  mb_var loss = mb_cross_entropy(g, logits, labels);
  if (m->prec.loss_scale) {
    mb_var scale = mb_input(g, "loss_scale", MB_F32, mb_shape_of(0, NULL));
    mb_mark_output(g, loss);
    loss = mb_mul(g, loss, scale);
  }
  MB_TRY(mb_graph_status(g));
  return mb_set_loss(g, loss);
}

int mb_model_read_logits(mb_exec *ex, float *out) {
  mb_var lv = mb_model_logits(mb_exec_graph(ex));
  if (!mb_var_ok(lv))
    return MB_ERR(MB_EINVAL, "this program has no logits output (not built by mb_model_build)");
  return mb_exec_get(ex, lv, out);
}

/* ---- feeding a batch --------------------------------------------------------- */

static int input_shape(mb_graph *g, const char *name, mb_var *v, const mb_value **val) {
  *v = mb_graph_find_input(g, name);
  *val = mb_var_ok(*v) ? mb_graph_value(g, *v) : NULL;
  return mb_var_ok(*v);
}

int mb_model_feed(const mb_model *m, mb_exec *ex, const mb_batch *b, const uint64_t rng[2]) {
  mb_graph *g = mb_exec_graph(ex);
  mb_var v;
  const mb_value *val;
  if (!input_shape(g, "input_ids", &v, &val) || !input_shape(g, "labels", &v, &val))
    return MB_ERR(MB_EINVAL, "feeding a batch: the program has no input_ids/labels (not built by mb_model_build)");
  int packed = mb_var_ok(mb_graph_find_input(g, "cu_seqlens"));
  input_shape(g, "input_ids", &v, &val);
  int64_t rows = packed ? mb_graph_value(g, mb_graph_find_input(g, "labels"))->shape.dim[0] : val->shape.dim[0];
  int64_t len = packed ? val->shape.dim[0] : val->shape.dim[1];
  if (packed != (b->mode == MB_BATCH_PACKED) || rows != b->rows || len != b->seq_len)
    return MB_ERR(MB_ESHAPE, "feeding a %s batch [%d rows, %d tokens] into a %s program [%lld rows, %lld tokens]",
                  b->mode == MB_BATCH_PACKED ? "packed" : "padded", b->rows, b->seq_len, packed ? "packed" : "padded",
                  (long long)rows, (long long)len);
  /* ids and positions the embeddings can hold: a clear error here rather
   * than a kernel's (shards of another tokenizer, an untruncated sequence) */
  int64_t V = m->cfg.arch == MB_ARCH_BERT ? m->cfg.bert.vocab_size : m->cfg.mamba.vocab_size;
  int64_t ntok = packed ? len : rows * len;
  for (int64_t i = 0; i < ntok; i++)
    if (b->input_ids[i] < 0 || b->input_ids[i] >= V)
      return MB_ERR(MB_EINVAL,
                    "batch token id %d at %s %lld, position %lld is outside the model's vocabulary [0, %lld) "
                    "(data prepared with another tokenizer?)",
                    b->input_ids[i], packed ? "token" : "row", (long long)(packed ? i : i / len),
                    (long long)(packed ? i : i % len), (long long)V);
  if (packed && m->cfg.arch == MB_ARCH_BERT)
    for (int64_t i = 0; i < len; i++)
      if (b->position_ids[i] < 0 || b->position_ids[i] >= m->cfg.bert.max_position)
        return MB_ERR(MB_EINVAL,
                      "batch position id %d at token %lld: sequences must be at most "
                      "max_position_embeddings %lld tokens long (truncate with max_length)",
                      b->position_ids[i], (long long)i, (long long)m->cfg.bert.max_position);
  MB_TRY(mb_exec_set_input(ex, v, b->input_ids));
  if (input_shape(g, "attention_mask", &v, &val))
    MB_TRY(mb_exec_set_input(ex, v, b->attention_mask));
  if (input_shape(g, "cu_seqlens", &v, &val))
    MB_TRY(mb_exec_set_input(ex, v, b->cu_seqlens));
  if (input_shape(g, "position_ids", &v, &val))
    MB_TRY(mb_exec_set_input(ex, v, b->position_ids));
  if (input_shape(g, "loss_scale", &v, &val)) {
    float scale = (float)m->loss_scale;
    MB_TRY(mb_exec_set_input(ex, v, &scale));
  }
  if (input_shape(g, "dropout_rng", &v, &val)) {
    if (!rng)
      return MB_ERR(MB_EINVAL, "this training program has dropout: give the dropout rng (seed, offset)");
    MB_TRY(mb_exec_set_input(ex, v, rng));
  }
  /* labels: the loader's -1 rows become cross-entropy's ignore index */
  int32_t *lab = malloc((size_t)rows * sizeof *lab);
  if (!lab)
    return MB_ERR(MB_ENOMEM, "out of memory");
  for (int64_t i = 0; i < rows; i++)
    lab[i] = b->labels[i] < 0 ? -100 : b->labels[i];
  int rc = mb_exec_set_input(ex, mb_graph_find_input(g, "labels"), lab);
  free(lab);
  MB_TRY(rc);
  if (input_shape(g, "cls_index", &v, &val) || input_shape(g, "pool_weights", &v, &val)) {
    for (int64_t s = 0; s < rows; s++) {
      int32_t a = b->cu_seqlens[s], e = b->cu_seqlens[s + 1];
      if (a < 0 || e < a || e > len)
        return MB_ERR(MB_EINVAL, "batch cu_seqlens[%lld..%lld] = %d, %d is not within [0, %lld]", (long long)s,
                      (long long)s + 1, a, e, (long long)len);
    }
  }
  if (input_shape(g, "cls_index", &v, &val)) {
    /* BERT: the first token of each sequence; empty slots (ignored rows)
     * point at token 0 */
    int32_t *ci = malloc((size_t)rows * sizeof *ci);
    if (!ci)
      return MB_ERR(MB_ENOMEM, "out of memory");
    for (int64_t s = 0; s < rows; s++)
      ci[s] = b->cu_seqlens[s + 1] > b->cu_seqlens[s] ? b->cu_seqlens[s] : 0;
    rc = mb_exec_set_input(ex, v, ci);
    free(ci);
    MB_TRY(rc);
  }
  if (input_shape(g, "pool_weights", &v, &val)) {
    /* Mamba: row s averages sequence s's tokens (1/len each); zero for
     * empty slots */
    float *w = mb_host_calloc((size_t)(rows * len) * sizeof *w);
    if (!w)
      return MB_ERR(MB_ENOMEM, "out of memory for pool weights [%lld, %lld]", (long long)rows, (long long)len);
    for (int64_t s = 0; s < rows; s++) {
      int32_t a = b->cu_seqlens[s], e = b->cu_seqlens[s + 1];
      for (int32_t t = a; t < e; t++)
        w[s * len + t] = 1.0f / (float)(e - a);
    }
    rc = mb_exec_set_input(ex, v, w);
    mb_host_free(w);
    MB_TRY(rc);
  }
  return MB_OK;
}
