/* hf.c: Hugging Face style checkpoint directories: loading (config.json,
 * model.safetensors or its sharded index, the tokenizer files; the name
 * variants of MODELS.md mapped to one canonical name per parameter; every
 * missing, unexpected or misshapen tensor reported at once, before any
 * compute) and exporting (the same layout, written to a temporary sibling
 * directory and renamed into place). */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <ftw.h>
#include <glob.h>
#include <limits.h>
#include <signal.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/model_internal.h"
#include "runtime/alloc.h"
#include "runtime/fileio.h"
#include "runtime/log.h"
#include "runtime/safetensors.h"

#define PATH_CAP 4096
#define MAX_SHARDS 256

/* ---- name lists folded for messages ---------------------------------------- */

typedef struct {
  char **s;
  int n, cap;
} strlist;

static int strlist_add(strlist *l, const char *fmt, ...) MB_PRINTF(2, 3);
static int strlist_add(strlist *l, const char *fmt, ...) {
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 16;
    char **s = realloc(l->s, (size_t)cap * sizeof *s);
    if (!s)
      return MB_ERR(MB_ENOMEM, "out of memory");
    l->s = s;
    l->cap = cap;
  }
  va_list ap;
  va_start(ap, fmt);
  char buf[512];
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (!(l->s[l->n] = strdup(buf)))
    return MB_ERR(MB_ENOMEM, "out of memory");
  l->n++;
  return MB_OK;
}

static void strlist_free(strlist *l) {
  for (int i = 0; i < l->n; i++)
    free(l->s[i]);
  free(l->s);
  memset(l, 0, sizeof *l);
}

/* The layer index of a name ("...layer.7..." / "...layers.7..."): the name
 * with "{}" in its place goes to pat, the index to *idx; -1 if none. */
static void layer_pattern(const char *name, char *pat, size_t cap, long *idx) {
  *idx = -1;
  const char *keys[2] = {"layers.", "layer."};
  for (int k = 0; k < 2; k++) {
    const char *p = strstr(name, keys[k]);
    if (p && (p == name || p[-1] == '.')) {
      const char *d = p + strlen(keys[k]), *e = d;
      while (*e >= '0' && *e <= '9')
        e++;
      if (e > d && (*e == '.' || !*e)) {
        *idx = strtol(d, NULL, 10);
        snprintf(pat, cap, "%.*s{}%s", (int)(d - name), name, e);
        return;
      }
    }
  }
  snprintf(pat, cap, "%s", name);
}

/* Append "a, b, layer.{0..11}.c, ..." to out: names differing only in the
 * layer index are folded into one entry. */
static void fold_names(const strlist *l, char *out, size_t cap) {
  size_t len = strlen(out);
  char *used = calloc((size_t)l->n + 1, 1);
  long *idx = malloc(((size_t)l->n + 1) * sizeof *idx);
  if (!used || !idx) {
    free(used);
    free(idx);
    return;
  }
  int first = 1;
  for (int i = 0; i < l->n && len + 8 < cap; i++) {
    if (used[i])
      continue;
    char pat[512], p2[512];
    long k;
    layer_pattern(l->s[i], pat, sizeof pat, &k);
    int m = 0;
    if (k >= 0)
      for (int j = i; j < l->n; j++) {
        long kj;
        if (used[j])
          continue;
        layer_pattern(l->s[j], p2, sizeof p2, &kj);
        if (kj >= 0 && !strcmp(pat, p2)) {
          used[j] = 1;
          idx[m++] = kj;
        }
      }
    used[i] = 1;
    char item[700];
    if (m <= 1) {
      snprintf(item, sizeof item, "%s", l->s[i]);
    } else {
      /* sort the indices (few), then print a range or a list */
      for (int a = 1; a < m; a++)
        for (int b = a; b > 0 && idx[b - 1] > idx[b]; b--) {
          long t = idx[b];
          idx[b] = idx[b - 1];
          idx[b - 1] = t;
        }
      char set[160];
      int contiguous = idx[m - 1] - idx[0] == m - 1;
      if (contiguous)
        snprintf(set, sizeof set, "{%ld..%ld}", idx[0], idx[m - 1]);
      else {
        size_t sl = 0;
        set[sl++] = '{';
        for (int a = 0; a < m && sl + 24 < sizeof set; a++)
          sl += (size_t)snprintf(set + sl, sizeof set - sl, "%s%ld", a ? "," : "", idx[a]);
        snprintf(set + sl, sizeof set - sl, "}");
      }
      char *br = strstr(pat, "{}");
      snprintf(item, sizeof item, "%.*s%s%s", (int)(br - pat), pat, set, br + 2);
    }
    int w = snprintf(out + len, cap - len, "%s%s", first ? "" : ", ", item);
    if (w < 0 || (size_t)w >= cap - len) {
      if (cap > len + 4)
        snprintf(out + (cap - 5), 5, "...");
      len = cap - 1;
      break;
    }
    len += (size_t)w;
    first = 0;
  }
  free(used);
  free(idx);
}

/* ---- name variants ---------------------------------------------------------- */

typedef enum { NAME_PARAM = 0, NAME_IGNORED, NAME_PRETRAIN_HEAD, NAME_UNKNOWN } name_kind;

static int starts(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }
static int ends(const char *s, const char *p) {
  size_t a = strlen(s), b = strlen(p);
  return a >= b && !strcmp(s + a - b, p);
}

/* The canonical name of a checkpoint tensor (into out). */
static name_kind canonical_name(mb_arch arch, const char *name, char *out, size_t cap) {
  if (arch == MB_ARCH_BERT) {
    const char *body = starts(name, "bert.") ? name + 5 : name;
    if (ends(body, "embeddings.position_ids") || ends(body, "embeddings.token_type_ids"))
      return NAME_IGNORED; /* buffers of BertEmbeddings */
    if (starts(name, "cls.") || starts(name, "bert.cls."))
      return NAME_PRETRAIN_HEAD;
    if (starts(name, "classifier.")) {
      snprintf(out, cap, "%s", name);
      return NAME_PARAM;
    }
    if (!starts(body, "embeddings.") && !starts(body, "encoder.") && !starts(body, "pooler."))
      return NAME_UNKNOWN;
    /* old TF conversions name LayerNorm's parameters gamma / beta */
    size_t n = strlen(body);
    if (ends(body, "LayerNorm.gamma"))
      snprintf(out, cap, "bert.%.*sweight", (int)(n - 5), body);
    else if (ends(body, "LayerNorm.beta"))
      snprintf(out, cap, "bert.%.*sbias", (int)(n - 4), body);
    else
      snprintf(out, cap, "bert.%s", body);
    return NAME_PARAM;
  }
  const char *body = starts(name, "backbone.") ? name + 9 : name;
  if (starts(name, "lm_head."))
    return NAME_PRETRAIN_HEAD;
  const char *heads[4] = {"classification_head.classification_head.", "classification_head.", "classifier.", "score."};
  for (int i = 0; i < 4; i++)
    if (starts(name, heads[i])) {
      snprintf(out, cap, "classification_head.classification_head.%s", name + strlen(heads[i]));
      return NAME_PARAM;
    }
  if (starts(body, "embeddings.")) /* HF MambaModel's name */
    snprintf(out, cap, "backbone.embedding.%s", body + 11);
  else if (starts(body, "embedding.") || starts(body, "layers.") || starts(body, "norm_f."))
    snprintf(out, cap, "backbone.%s", body);
  else
    return NAME_UNKNOWN;
  return NAME_PARAM;
}

/* ---- the weight files ------------------------------------------------------------ */

typedef struct {
  mb_safetensors *files[MAX_SHARDS];
  int nfiles;
} weight_set;

static void weight_set_close(weight_set *w) {
  for (int i = 0; i < w->nfiles; i++)
    mb_safetensors_close(w->files[i]);
  w->nfiles = 0;
}

static int open_shards(const char *dir, const char *index_path, weight_set *w) {
  char *text;
  size_t n;
  MB_TRY(mb_read_file(index_path, 64u << 20, &text, &n));
  json_error_t jerr;
  json_t *root = json_loads(text, 0, &jerr);
  free(text);
  if (!root)
    return MB_ERR(MB_EFORMAT, "%s: line %d: invalid JSON: %s", index_path, jerr.line, jerr.text);
  json_t *map = json_object_get(root, "weight_map");
  int rc = MB_OK;
  if (!json_is_object(map)) {
    rc = MB_ERR(MB_EFORMAT, "%s: missing object \"weight_map\" {tensor name: file}", index_path);
    goto done;
  }
  const char *key;
  json_t *val;
  char files[MAX_SHARDS][256];
  int nf = 0;
  json_object_foreach(map, key, val) {
    const char *f = json_is_string(val) ? json_string_value(val) : NULL;
    if (!f || !*f || strchr(f, '/') || strlen(f) >= 256) {
      rc = MB_ERR(MB_EFORMAT, "%s: weight_map[\"%s\"]: expected a file name in the same directory", index_path, key);
      goto done;
    }
    int seen = 0;
    for (int i = 0; i < nf && !seen; i++)
      seen = !strcmp(files[i], f);
    if (!seen) {
      if (nf == MAX_SHARDS) {
        rc = MB_ERR(MB_EUNSUPPORTED, "%s: more than %d shard files", index_path, MAX_SHARDS);
        goto done;
      }
      snprintf(files[nf++], 256, "%s", f);
    }
  }
  for (int i = 0; i < nf && rc == MB_OK; i++) {
    char p[PATH_CAP];
    rc = mb_path_join(p, sizeof p, dir, files[i]);
    if (rc == MB_OK)
      rc = mb_safetensors_open(p, &w->files[w->nfiles]);
    if (rc == MB_OK)
      w->nfiles++;
  }
  /* every name the index lists must be in its shard */
  json_object_foreach(map, key, val) {
    if (rc != MB_OK)
      break;
    int found = 0;
    for (int i = 0; i < w->nfiles && !found; i++)
      found = mb_safetensors_find(w->files[i], key) != NULL;
    if (!found)
      rc = MB_ERR(MB_EFORMAT, "%s: weight_map names '%s' but no shard holds it", index_path, key);
  }
done:
  json_decref(root);
  return rc;
}

static int open_weights(const char *dir, weight_set *w) {
  char p[PATH_CAP];
  MB_TRY(mb_path_join(p, sizeof p, dir, "model.safetensors"));
  if (mb_file_exists(p)) {
    MB_TRY(mb_safetensors_open(p, &w->files[0]));
    w->nfiles = 1;
    return MB_OK;
  }
  MB_TRY(mb_path_join(p, sizeof p, dir, "model.safetensors.index.json"));
  if (mb_file_exists(p))
    return open_shards(dir, p, w);
  MB_TRY(mb_path_join(p, sizeof p, dir, "pytorch_model.bin"));
  if (mb_file_exists(p))
    return MB_ERR(MB_ENOTFOUND,
                  "%s: only pytorch_model.bin is there; mambert reads safetensors. Convert once with "
                  "python tools/convert_bin_to_safetensors.py %s OUT_DIR",
                  dir, dir);
  return MB_ERR(MB_ENOTFOUND, "%s: no model.safetensors or model.safetensors.index.json", dir);
}

/* ---- tokenizer files --------------------------------------------------------------- */

/* HF BERT folders also ship a tokenizer.json (fast tokenizer) that the BPE
 * reader cannot read: the architecture decides, not what is there. */
/* The tokenizer file of a model directory: BERT's vocab.txt, or the
 * tokenizer.json transformers 5 saves alone; Mamba's tokenizer.json. */
static const char *arch_tokenizer_file(mb_arch arch, const char *dir) {
  if (arch != MB_ARCH_BERT)
    return "tokenizer.json";
  char p[PATH_CAP];
  if (mb_path_join(p, sizeof p, dir, "vocab.txt") == MB_OK && !mb_file_exists(p) &&
      mb_path_join(p, sizeof p, dir, "tokenizer.json") == MB_OK && mb_file_exists(p))
    return "tokenizer.json";
  return "vocab.txt";
}

int mb_model_check_tokenizer(const mb_model *m, const char *where) {
  if (!m->tokenizer_path[0])
    return MB_OK;
  mb_tokenizer *t;
  MB_TRY(mb_model_load_tokenizer(m, &t));
  const mb_model_config *c = &m->cfg;
  const int64_t tv = mb_tokenizer_vocab_size(t);
  const int64_t mv = c->arch == MB_ARCH_BERT ? c->bert.vocab_size : c->mamba.vocab_size;
  mb_tokenizer_free(t);
  if (tv > mv)
    return MB_ERR(MB_EFORMAT,
                  "%s: the tokenizer %s has %lld ids but the model's embedding has %lld rows (vocab_size): a tokenizer "
                  "of another model?",
                  where, m->tokenizer_path, (long long)tv, (long long)mv);
  if (tv < mv && c->arch == MB_ARCH_BERT)
    MB_WARN("%s: the tokenizer %s has %lld ids, the embedding %lld rows", where, m->tokenizer_path, (long long)tv,
            (long long)mv);
  return MB_OK;
}

int mb_model_dir_tokenizer(const char *dir, char *path, size_t cap) {
  char p[PATH_CAP];
  mb_model_config cfg;
  MB_TRY(mb_path_join(p, sizeof p, dir, "config.json"));
  MB_TRY(mb_model_config_load(p, &cfg));
  return mb_path_join(path, cap, dir, arch_tokenizer_file(cfg.arch, dir));
}

/* do_lower_case / strip_accents of a tokenizer_config.json, if present
 * (model_max_length, 1e30 for "no limit", is not read: data.max_length rules). */
static int read_tokenizer_config(const char *dir, mb_model *m) {
  char p[PATH_CAP];
  MB_TRY(mb_path_join(p, sizeof p, dir, "tokenizer_config.json"));
  if (!mb_file_exists(p))
    return MB_OK;
  char *text;
  size_t n;
  MB_TRY(mb_read_file(p, 64u << 20, &text, &n));
  json_t *root;
  int rc = mb_hf_json_parse(text, p, &root);
  free(text);
  MB_TRY(rc);
  json_t *v = json_object_get(root, "do_lower_case");
  if (json_is_boolean(v))
    m->do_lower_case = json_is_true(v);
  v = json_object_get(root, "strip_accents");
  if (json_is_boolean(v))
    m->strip_accents = json_is_true(v);
  json_decref(root);
  return MB_OK;
}

/* ---- loading ------------------------------------------------------------------------ */

typedef struct {
  const mb_st_entry *e;
  char canon[MB_PARAM_NAME_CAP];
  name_kind kind;
  int used;
} ckpt_tensor;

static int is_head(const mb_model_config *c, const char *canon) {
  return starts(canon, c->arch == MB_ARCH_BERT ? "classifier." : "classification_head.");
}

int mb_model_load(const char *dir, const mb_model_load_opts *opts_in, mb_backend *be, mb_model **out) {
  *out = NULL;
  mb_model_load_opts opts = {0};
  opts.pooling = -1;
  if (opts_in)
    opts = *opts_in;
  char path[PATH_CAP];
  if (!be)
    return MB_ERR(MB_EINVAL, "loading %s: no backend to hold the parameters", dir);
  if (!mb_is_dir(dir))
    return MB_ERR(MB_ENOTFOUND, "model directory %s does not exist", dir);

  /* 1. configuration */
  mb_model_config cfg;
  int labels_given = 0;
  MB_TRY(mb_path_join(path, sizeof path, dir, "config.json"));
  {
    char *text;
    size_t n;
    int rc = mb_read_file(path, 16u << 20, &text, &n);
    if (rc != MB_OK)
      return mb_error_context(rc, "loading model %s", dir);
    rc = mb_model_config_parse_ex(text, path, &cfg, &labels_given);
    free(text);
    MB_TRY(rc);
  }
  if (cfg.arch == MB_ARCH_MAMBA) {
    MB_TRY(mb_path_join(path, sizeof path, dir, "classifier.json"));
    if (mb_file_exists(path)) {
      char *text;
      size_t n;
      MB_TRY(mb_read_file(path, 1u << 20, &text, &n));
      int rc = mb_mamba_classifier_parse(text, path, &cfg, &labels_given);
      free(text);
      MB_TRY(rc);
    }
    if (opts.pooling == MB_POOL_MEAN || opts.pooling == MB_POOL_MASKED_MEAN)
      cfg.mamba.pooling = (mb_pooling)opts.pooling;
  } else {
    cfg.bert.attn_dropout_exact = opts.attn_dropout_exact;
  }

  /* 2. the weights: map every tensor to a canonical name */
  weight_set ws = {0};
  ckpt_tensor *ts = NULL;
  mb_param_decl *decl = NULL;
  mb_model *m = NULL;
  strlist missing = {0}, unexpected = {0}, shapes = {0}, ignored = {0};
  char *msg = NULL;
  int ndecl = 0, nts = 0, rc = open_weights(dir, &ws);
  if (rc != MB_OK)
    goto done;
  for (int f = 0; f < ws.nfiles; f++)
    nts += (int)mb_safetensors_count(ws.files[f]);
  ts = calloc((size_t)nts + 1, sizeof *ts);
  if (!ts) {
    rc = MB_ERR(MB_ENOMEM, "out of memory");
    goto done;
  }
  nts = 0;
  for (int f = 0; f < ws.nfiles; f++)
    for (size_t i = 0; i < mb_safetensors_count(ws.files[f]); i++) {
      ckpt_tensor *t = &ts[nts++];
      t->e = mb_safetensors_entry(ws.files[f], i);
      t->kind = canonical_name(cfg.arch, t->e->name, t->canon, sizeof t->canon);
    }

  /* the number of labels: config, else the head in the checkpoint */
  const ckpt_tensor *head_w = NULL;
  for (int i = 0; i < nts; i++)
    if (ts[i].kind == NAME_PARAM && is_head(&cfg, ts[i].canon) && ends(ts[i].canon, ".weight"))
      head_w = &ts[i];
  if (!labels_given && head_w && head_w->e->ndim == 2 && head_w->e->shape[0] >= 1 &&
      head_w->e->shape[0] <= MB_MODEL_MAX_LABELS)
    cfg.num_labels = (int)head_w->e->shape[0];
  if (opts.num_labels > 0 && opts.num_labels != cfg.num_labels) {
    if (head_w) {
      rc = MB_ERR(MB_EINVAL, "%s: the checkpoint's head has %d labels; %d were asked for", dir, cfg.num_labels,
                  opts.num_labels);
      goto done;
    }
    if (opts.num_labels > MB_MODEL_MAX_LABELS) {
      rc = MB_ERR(MB_EINVAL, "num_labels %d: at most %d", opts.num_labels, MB_MODEL_MAX_LABELS);
      goto done;
    }
    cfg.num_labels = opts.num_labels;
  }

  if ((rc = mb_model_param_decls(&cfg, &decl, &ndecl)) != MB_OK)
    goto done;
  int head_missing = 0;
  const ckpt_tensor **src = calloc((size_t)ndecl + 1, sizeof *src);
  if (!src) {
    rc = MB_ERR(MB_ENOMEM, "out of memory");
    goto done;
  }
  for (int d = 0; d < ndecl && rc == MB_OK; d++) {
    for (int i = 0; i < nts; i++) {
      if (ts[i].kind != NAME_PARAM || strcmp(ts[i].canon, decl[d].name))
        continue;
      if (src[d]) {
        rc = strlist_add(&unexpected, "%s (a second source of %s after %s)", ts[i].e->name, decl[d].name,
                         src[d]->e->name);
        ts[i].used = 1;
        continue;
      }
      src[d] = &ts[i];
      ts[i].used = 1;
      const mb_st_entry *e = ts[i].e;
      int ok = e->ndim == decl[d].shape.ndim;
      for (int k = 0; ok && k < e->ndim; k++)
        ok = e->shape[k] == decl[d].shape.dim[k];
      if (!ok) {
        char got[128] = "", want[128] = "";
        size_t gl = 0, wl = 0;
        for (int k = 0; k < e->ndim && gl < 100; k++)
          gl += (size_t)snprintf(got + gl, sizeof got - gl, "%s%lld", k ? ", " : "", (long long)e->shape[k]);
        for (int k = 0; k < decl[d].shape.ndim && wl < 100; k++)
          wl += (size_t)snprintf(want + wl, sizeof want - wl, "%s%lld", k ? ", " : "", (long long)decl[d].shape.dim[k]);
        rc = strlist_add(&shapes, "%s [%s], expected [%s]", e->name, got, want);
      } else if (e->dtype != MB_F32 && e->dtype != MB_F16 && e->dtype != MB_BF16 && e->dtype != MB_F64) {
        rc = strlist_add(&shapes, "%s has dtype %s, expected a float type (F32, F16, BF16, F64)", e->name,
                         e->dtype_name);
      }
    }
    if (!src[d]) {
      if (decl[d].head && opts.init_missing_head)
        head_missing = 1;
      else if (rc == MB_OK)
        rc = strlist_add(&missing, "%s", decl[d].name);
    }
  }
  for (int i = 0; i < nts && rc == MB_OK; i++) {
    if (ts[i].used || ts[i].kind == NAME_IGNORED)
      continue;
    if (ts[i].kind == NAME_PRETRAIN_HEAD && opts.init_missing_head)
      rc = strlist_add(&ignored, "%s", ts[i].e->name);
    else
      rc = strlist_add(&unexpected, "%s", ts[i].e->name);
  }
  if (rc == MB_OK && (missing.n || unexpected.n || shapes.n)) {
    size_t cap = 1900;
    msg = calloc(cap, 1);
    if (!msg) {
      rc = MB_ERR(MB_ENOMEM, "out of memory");
      goto done_src;
    }
    snprintf(msg, cap, "%s: the weights do not fit this %s configuration (config.json)", dir,
             cfg.arch == MB_ARCH_BERT ? "BERT" : "Mamba");
    if (missing.n) {
      snprintf(msg + strlen(msg), cap - strlen(msg), "; missing %d: ", missing.n);
      fold_names(&missing, msg, cap);
    }
    if (shapes.n) {
      snprintf(msg + strlen(msg), cap - strlen(msg), "; wrong shape %d: ", shapes.n);
      fold_names(&shapes, msg, cap);
    }
    if (unexpected.n) {
      snprintf(msg + strlen(msg), cap - strlen(msg), "; unexpected %d: ", unexpected.n);
      fold_names(&unexpected, msg, cap);
    }
    if (!opts.init_missing_head && missing.n)
      snprintf(msg + strlen(msg), cap - strlen(msg), "%s",
               strlen(msg) + 110 < cap ? " (a pretrained backbone without a head? training, or mambert export "
                                         "--init-head, gives it a fresh one)"
                                       : "");
    rc = MB_ERR(MB_EFORMAT, "%s", msg);
  }
  if (rc != MB_OK)
    goto done_src;

  /* 3. the tokenizer, checked against the embedding */
  char tok[PATH_CAP] = "";
  if (opts.tokenizer_path)
    snprintf(tok, sizeof tok, "%s", opts.tokenizer_path);
  else {
    if ((rc = mb_path_join(tok, sizeof tok, dir, arch_tokenizer_file(cfg.arch, dir))) != MB_OK) /* cfg: read above */
      goto done_src;
    if (!mb_file_exists(tok))
      tok[0] = 0;
  }
  if ((rc = mb_model_new(&cfg, tok, NULL, &m)) != MB_OK)
    goto done_src;
  if ((rc = read_tokenizer_config(dir, m)) != MB_OK)
    goto done_src;
  if (tok[0]) {
    if ((rc = mb_model_check_tokenizer(m, dir)) != MB_OK)
      goto done_src;
  } else {
    mb_log_once(MB_LOG_INFO, dir, "%s: no tokenizer file found (%s); token ids must come from elsewhere", dir,
                cfg.arch == MB_ARCH_BERT ? "vocab.txt" : "tokenizer.json");
  }

  /* 4. copy the values in (converting non-f32 checkpoints) */
  if ((rc = mb_params_materialize(m->params, be)) != MB_OK)
    goto done_src;
  for (int d = 0; d < ndecl && rc == MB_OK; d++) {
    if (!src[d])
      continue;
    const mb_st_entry *e = src[d]->e;
    int idx = mb_params_find(m->params, decl[d].name);
    if (e->dtype == MB_F32 && ((uintptr_t)e->data % sizeof(float)) == 0) {
      rc = mb_params_set(m->params, idx, e->data);
    } else {
      float *tmp = mb_host_malloc((size_t)e->numel * sizeof *tmp);
      if (!tmp) {
        rc = MB_ERR(MB_ENOMEM, "out of memory converting %s", e->name);
        break;
      }
      /* the mapping may be unaligned for the source type: go through a copy */
      size_t es = mb_dtype_size(e->dtype);
      void *al = mb_host_malloc((size_t)e->numel * es + 1);
      if (!al) {
        mb_host_free(tmp);
        rc = MB_ERR(MB_ENOMEM, "out of memory converting %s", e->name);
        break;
      }
      memcpy(al, e->data, (size_t)e->numel * es);
      rc = mb_convert(tmp, MB_F32, al, e->dtype, (size_t)e->numel);
      if (rc == MB_OK)
        rc = mb_params_set(m->params, idx, tmp);
      mb_host_free(al);
      mb_host_free(tmp);
    }
  }
  if (rc == MB_OK && head_missing) {
    const char *prefix = cfg.arch == MB_ARCH_BERT ? "classifier." : "classification_head.";
    rc = mb_model_init_random_prefix(m, opts.seed, prefix);
    if (rc == MB_OK)
      MB_INFO("%s: no classification head in the checkpoint: %s* initialised (%d labels, seed %llu)", dir, prefix,
              cfg.num_labels, (unsigned long long)opts.seed);
  } else if (rc == MB_OK && opts.init_missing_head) {
    MB_INFO("%s: the checkpoint has its classification head: kept (a fresh one is made only where it is missing)",
            dir);
  }
  if (rc == MB_OK && ignored.n) {
    char ig[600] = "";
    fold_names(&ignored, ig, sizeof ig);
    MB_INFO("%s: pretraining head tensors ignored: %s", dir, ig);
  }
done_src:
  free(src);
done:
  weight_set_close(&ws);
  free(ts);
  free(decl);
  free(msg);
  strlist_free(&missing);
  strlist_free(&unexpected);
  strlist_free(&shapes);
  strlist_free(&ignored);
  if (rc != MB_OK) {
    mb_model_free(m);
    return rc;
  }
  *out = m;
  return MB_OK;
}

/* ---- export ---------------------------------------------------------------------------- */

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(p);
}

static int rm_rf(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0)
    return MB_OK;
  if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
    return MB_ERR(MB_EIO, "cannot remove %s: %s", path, strerror(errno));
  return MB_OK;
}

/* Write text (malloc'ed; freed here) to dir/name. */
static int write_text(const char *dir, const char *name, char *text) {
  char p[PATH_CAP];
  int rc = mb_path_join(p, sizeof p, dir, name);
  if (rc == MB_OK && !text)
    rc = MB_ERR(MB_ENOMEM, "out of memory writing %s", p);
  if (rc == MB_OK)
    rc = mb_write_file_atomic(p, text, strlen(text));
  free(text);
  return rc;
}

static int copy_file(const char *from, const char *dir, const char *name) {
  char *data;
  size_t n;
  MB_TRY(mb_read_file(from, 256u << 20, &data, &n));
  char p[PATH_CAP];
  int rc = mb_path_join(p, sizeof p, dir, name);
  if (rc == MB_OK)
    rc = mb_write_file_atomic(p, data, n);
  free(data);
  return rc;
}

static char *json_text(json_t *o) {
  char *s = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
  json_decref(o);
  if (!s)
    return NULL;
  size_t n = strlen(s);
  char *t = realloc(s, n + 2);
  if (!t) {
    free(s);
    return NULL;
  }
  memcpy(t + n, "\n", 2);
  return t;
}

static int write_tokenizer_files(const mb_model *m, const char *tmp) {
  if (!m->tokenizer_path[0]) {
    MB_WARN("export: the model has no tokenizer file; the directory will hold only weights and config");
    return MB_OK;
  }
  if (m->cfg.arch == MB_ARCH_BERT) {
    int lower = m->do_lower_case;
    if (lower < 0) {
      mb_tokenizer *t;
      MB_TRY(mb_model_load_tokenizer(m, &t));
      lower = starts(mb_tokenizer_name(t), "wordpiece-uncased");
      mb_tokenizer_free(t);
    }
    const size_t tl = strlen(m->tokenizer_path); /* a WordPiece tokenizer.json travels as itself */
    const int json = tl >= 5 && strcmp(m->tokenizer_path + tl - 5, ".json") == 0;
    MB_TRY(copy_file(m->tokenizer_path, tmp, json ? "tokenizer.json" : "vocab.txt"));
    json_t *tc = json_pack("{s:s, s:b, s:I, s:s, s:s, s:s, s:s, s:s, s:b}", "tokenizer_class", "BertTokenizer",
                           "do_lower_case", lower, "model_max_length", (json_int_t)m->cfg.bert.max_position,
                           "unk_token", "[UNK]", "sep_token", "[SEP]", "pad_token", "[PAD]", "cls_token", "[CLS]",
                           "mask_token", "[MASK]", "tokenize_chinese_chars", 1);
    if (tc && m->strip_accents >= 0)
      json_object_set_new(tc, "strip_accents", json_boolean(m->strip_accents));
    else if (tc)
      json_object_set_new(tc, "strip_accents", json_null());
    MB_TRY(write_text(tmp, "tokenizer_config.json", json_text(tc)));
    json_t *sm = json_pack("{s:s, s:s, s:s, s:s, s:s}", "unk_token", "[UNK]", "sep_token", "[SEP]", "pad_token",
                           "[PAD]", "cls_token", "[CLS]", "mask_token", "[MASK]");
    return write_text(tmp, "special_tokens_map.json", json_text(sm));
  }
  MB_TRY(copy_file(m->tokenizer_path, tmp, "tokenizer.json"));
  /* GPT-NeoX's tokenizer as the reference uses it: <|endoftext|> is bos, eos,
   * unk and (set by the tutorial) pad; nothing is added around the text */
  char *text;
  size_t n;
  MB_TRY(mb_read_file(m->tokenizer_path, 256u << 20, &text, &n));
  int has_eot = strstr(text, "\"<|endoftext|>\"") != NULL;
  free(text);
  json_t *tc = json_pack("{s:s, s:b}", "tokenizer_class", "PreTrainedTokenizerFast", "add_prefix_space", 0);
  json_t *sm = json_object();
  if (has_eot && tc && sm) {
    const char *keys[4] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    for (int i = 0; i < 4; i++) {
      json_object_set_new(tc, keys[i], json_string("<|endoftext|>"));
      json_object_set_new(sm, keys[i], json_string("<|endoftext|>"));
    }
  }
  MB_TRY(write_text(tmp, "tokenizer_config.json", json_text(tc)));
  return write_text(tmp, "special_tokens_map.json", json_text(sm));
}

static int fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd < 0)
    return MB_ERR(MB_EIO, "cannot open %s: %s", dir, strerror(errno));
  int r = fsync(fd);
  close(fd);
  return r == 0 ? MB_OK : MB_ERR(MB_EIO, "fsync %s: %s", dir, strerror(errno));
}

static int export_into(const mb_model *m, const char *tmp) {
  mb_params *p = m->params;
  int n = mb_params_count(p);
  float **bufs = calloc((size_t)n + 1, sizeof *bufs);
  mb_safetensors_writer *w = NULL;
  if (!bufs)
    return MB_ERR(MB_ENOMEM, "out of memory");
  int rc = mb_safetensors_writer_new(&w);
  for (int i = 0; i < n && rc == MB_OK; i++) {
    const mb_param_info *info = mb_params_info(p, i);
    bufs[i] = mb_host_malloc((size_t)(info->numel > 0 ? info->numel : 1) * sizeof(float));
    if (!bufs[i]) {
      rc = MB_ERR(MB_ENOMEM, "out of memory reading %s", info->name);
      break;
    }
    rc = mb_params_get(p, i, bufs[i]);
    if (rc == MB_OK)
      rc = mb_safetensors_writer_add(w, info->name, MB_F32, &info->shape, bufs[i]);
  }
  if (rc == MB_OK)
    rc = mb_safetensors_writer_set_metadata(w, "format", "pt");
  char path[PATH_CAP];
  if (rc == MB_OK)
    rc = mb_path_join(path, sizeof path, tmp, "model.safetensors");
  if (rc == MB_OK)
    rc = mb_safetensors_writer_write(w, path);
  mb_safetensors_writer_free(w);
  for (int i = 0; i < n; i++)
    mb_host_free(bufs[i]);
  free(bufs);
  MB_TRY(rc);
  MB_TRY(write_text(tmp, "config.json", mb_model_config_json(&m->cfg)));
  if (m->cfg.arch == MB_ARCH_MAMBA)
    MB_TRY(write_text(tmp, "classifier.json", mb_mamba_classifier_json(&m->cfg)));
  return write_tokenizer_files(m, tmp);
}

/* An existing output directory is replaced only when it holds nothing but
 * what an export writes (a previous export): anything else in it (a run
 * directory, a user's files, another tool's model) would be lost. */
static int export_replaceable(const char *dir) {
  static const char *const ours[] = {"config.json",           "model.safetensors",      "classifier.json",
                                     "vocab.txt",             "tokenizer.json",         "tokenizer_config.json",
                                     "special_tokens_map.json"};
  DIR *dp = opendir(dir);
  if (!dp)
    return MB_ERR(MB_EIO, "export: cannot read %s: %s", dir, strerror(errno));
  char foreign[256] = "";
  int nforeign = 0;
  struct dirent *e;
  while ((e = readdir(dp)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    int known = 0;
    for (size_t i = 0; i < sizeof ours / sizeof ours[0] && !known; i++)
      known = strcmp(e->d_name, ours[i]) == 0;
    if (!known && nforeign++ < 3) {
      size_t k = strlen(foreign);
      snprintf(foreign + k, sizeof foreign - k, "%s%.60s", k ? ", " : "", e->d_name);
    }
  }
  closedir(dp);
  if (nforeign)
    return MB_ERR(MB_EINVAL,
                  "export: %s already exists and holds %d file(s) an export does not write (%s%s); an export "
                  "replaces only a previous export. Choose another output directory, or remove it first",
                  dir, nforeign, foreign, nforeign > 3 ? ", ..." : "");
  return MB_OK;
}

/* What an export killed part-way left beside `clean` (its temporary
 * <clean>.tmp-<host>-<pid>, or the previous export moved aside to
 * <clean>.old-<host>-<pid>), by a process of this machine that is gone: the
 * temporary is removed; a previous export goes back in place if nothing
 * replaced it, else away. Names are compared exactly (no glob). */
static void export_recover(const char *clean) {
  char parent[PATH_CAP];
  snprintf(parent, sizeof parent, "%s", clean);
  char *slash = strrchr(parent, '/');
  const char *base = slash ? slash + 1 : clean;
  if (slash)
    *(slash == parent ? slash + 1 : slash) = 0;
  else
    snprintf(parent, sizeof parent, ".");
  DIR *d = opendir(parent);
  if (!d)
    return;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    for (int k = 0; k < 2; k++) {
      char prefix[PATH_CAP];
      snprintf(prefix, sizeof prefix, "%s.%s-", base, k ? "old" : "tmp");
      if (!mb_writer_temp_is_dead(prefix, e->d_name))
        continue;
      char p[2 * PATH_CAP];
      snprintf(p, sizeof p, "%s/%s", parent, e->d_name);
      if (k == 1 && !mb_file_exists(clean) && rename(p, clean) == 0) {
        MB_WARN("export: put back the previous export %s moved aside by an export that was killed", clean);
        continue;
      }
      if (rm_rf(p) == MB_OK)
        MB_INFO("export: removed %s (left by an export that was killed)", p);
      else
        mb_error_clear();
    }
  }
  closedir(d);
}

int mb_model_export(const mb_model *m, const char *dir) {
  if (!dir || !*dir)
    return MB_ERR(MB_EINVAL, "export: no output directory");
  char clean[PATH_CAP];
  snprintf(clean, sizeof clean, "%s", dir);
  size_t len = strlen(clean);
  while (len > 1 && clean[len - 1] == '/')
    clean[--len] = 0;
  struct stat lst;
  if (lstat(clean, &lst) == 0 && S_ISLNK(lst.st_mode)) { /* write through a link, not over it */
    char *target = realpath(clean, NULL);
    if (!target)
      return MB_ERR(MB_EINVAL, "export: %s is a link to %s", clean, errno == ENOENT ? "nothing" : strerror(errno));
    const int fits = strlen(target) < sizeof clean;
    if (fits)
      snprintf(clean, sizeof clean, "%s", target);
    free(target);
    if (!fits)
      return MB_ERR(MB_EINVAL, "export: the path %s points to is too long", dir);
  }
  export_recover(clean);
  if (mb_file_exists(clean) && !mb_is_dir(clean))
    return MB_ERR(MB_EINVAL, "export: %s exists and is not a directory", clean);
  if (mb_is_dir(clean))
    MB_TRY(export_replaceable(clean));
  char parent[PATH_CAP], tmp[PATH_CAP + 160], old[PATH_CAP + 160];
  snprintf(parent, sizeof parent, "%s", clean);
  char *slash = strrchr(parent, '/');
  if (slash)
    *(slash == parent ? slash + 1 : slash) = 0;
  else
    snprintf(parent, sizeof parent, ".");
  MB_TRY(mb_mkdir_p(parent));
  char prefix[PATH_CAP + 8];
  snprintf(prefix, sizeof prefix, "%s.tmp-", clean);
  mb_writer_temp_name(prefix, tmp, sizeof tmp);
  snprintf(prefix, sizeof prefix, "%s.old-", clean);
  mb_writer_temp_name(prefix, old, sizeof old);
  MB_TRY(rm_rf(tmp));
  if (mkdir(tmp, 0777) != 0)
    return MB_ERR(MB_EIO, "export: cannot create %s: %s", tmp, strerror(errno));
  int rc = export_into(m, tmp);
  if (rc != MB_OK) {
    (void)rm_rf(tmp);
    return mb_error_context(rc, "exporting to %s", clean);
  }
  int had = mb_is_dir(clean);
  if (had && rename(clean, old) != 0) {
    rc = MB_ERR(MB_EIO, "export: cannot move the previous %s aside: %s", clean, strerror(errno));
    (void)rm_rf(tmp);
    return rc;
  }
  if (rename(tmp, clean) != 0) {
    rc = MB_ERR(MB_EIO, "export: cannot rename %s to %s: %s", tmp, clean, strerror(errno));
    if (had && rename(old, clean) != 0)
      MB_WARN("export: the previous export is left at %s", old);
    (void)rm_rf(tmp);
    return rc;
  }
  MB_TRY(fsync_dir(parent));
  if (had)
    MB_TRY(rm_rf(old));
  return MB_OK;
}
