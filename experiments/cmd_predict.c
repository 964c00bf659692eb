/* cmd_predict.c: `mambert predict`: label texts with a classifier directory,
 * like a sentiment pipeline: the label and its probability per input.
 *
 * The model is what --model names, loaded as eval --model loads it (eval.h:
 * a Hugging Face style directory, a run directory, a training checkpoint).
 * Inputs are tokenized as the model was trained (BERT [CLS] ... [SEP]
 * truncated to max_position_embeddings; Mamba's byte-level BPE, no special
 * tokens, no truncation) and run in packed batches: each input is its own
 * sequence, unpadded (with padding, the reference Mamba classifier's mean
 * would include pad tokens), so the other inputs of a batch do not change
 * its label or printed probability; its logits agree with a batch of one to
 * float32 rounding (the matrix products block differently for other token
 * counts). An input with no tokens (an empty line to Mamba) gets a warning:
 * its logits are the classifier's bias alone. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/cli.h"
#include "experiments/config.h"
#include "experiments/device.h"
#include "experiments/eval.h"
#include "kernels/cpu/cpu.h"
#include "mambert_build_config.h"
#include "models/model.h"
#include "runtime/log.h"

extern const mb_command mb_cmd_predict;

/* The inputs not yet labelled: each with its length (a NUL byte is part of
 * a text, as in Python) and where it came from, for messages. */
typedef struct {
  char *s;
  size_t len;
  const char *from; /* "argument", or the file ("-": stdin) */
  int64_t line;     /* in that file, from 1; 0 for an argument */
} text;

typedef struct {
  text *v;
  size_t n, cap;
  size_t first; /* the index (--json "index") of v[0] */
} texts;

static int texts_add(texts *t, const char *s, size_t len, const char *from, int64_t line) {
  if (t->n == t->cap) {
    size_t cap = t->cap ? 2 * t->cap : 64;
    text *p = realloc(t->v, cap * sizeof *p);
    if (!p)
      return MB_ERR(MB_ENOMEM, "out of memory");
    t->v = p;
    t->cap = cap;
  }
  char *c = malloc(len + 1);
  if (!c)
    return MB_ERR(MB_ENOMEM, "out of memory");
  memcpy(c, s, len);
  c[len] = 0;
  t->v[t->n++] = (text){c, len, from, line};
  return MB_OK;
}

/* Drop the first k (labelled) inputs. */
static void texts_drop(texts *t, size_t k) {
  if (k == 0) /* (and no array at all before the first input) */
    return;
  for (size_t i = 0; i < k; i++)
    free(t->v[i].s);
  if (t->n > k)
    memmove(t->v, t->v + k, (t->n - k) * sizeof *t->v);
  t->n -= k;
  t->first += k;
}

static void texts_free(texts *t) {
  texts_drop(t, t->n);
  free(t->v);
}

/* "input 4 (x.txt line 5)": the index --json prints, and where it was. */
static void describe_input(const texts *t, size_t i, char *buf, size_t cap) {
  const text *x = &t->v[i];
  if (x->line > 0)
    snprintf(buf, cap, "input %zu (%s line %lld)", t->first + i, strcmp(x->from, "-") ? x->from : "stdin",
             (long long)x->line);
  else
    snprintf(buf, cap, "input %zu (argument)", t->first + i);
}

static int parse_int(const char *flag, const char *v, long lo, long hi, int *out) {
  char *end;
  long x = strtol(v, &end, 10);
  if (!*v || *end || x < lo || x > hi)
    return mb_cli_usage_error(&mb_cmd_predict, "%s '%s': expected an integer %ld..%ld", flag, v, lo, hi);
  *out = (int)x;
  return 0;
}

/* Plain output: the text on one line, at most cap - 1 bytes: control
 * characters become spaces, and a cut text ends at a whole UTF-8 character
 * followed by "...". */
static void preview(const char *s, size_t len, char *out, size_t cap) {
  size_t k = 0, i = 0;
  for (; i < len && k + 4 < cap; i++)
    out[k++] = (unsigned char)s[i] < 0x20 ? ' ' : s[i];
  if (i < len) {
    /* s[i] is the first byte left out: while it continues a character, the
     * character's earlier bytes are taken back out */
    while (k > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) {
      k--;
      i--;
    }
    out[k++] = '.', out[k++] = '.', out[k++] = '.';
  }
  out[k] = 0;
}

typedef struct {
  mb_model *m;
  mb_tokenizer *tok;
  mb_program_cache *cache;
  int json, max_length, add_special;
  char labels[MB_MODEL_MAX_LABELS][64]; /* for the tab-separated output: no tab or line break in them */
} predictor;

/* Label the first n inputs of t as one packed batch; print them. */
static int predict_chunk(predictor *p, const texts *t, int n) {
  const mb_model_config *c = mb_model_config_of(p->m);
  const int C = c->num_labels;
  mb_ids *enc = calloc((size_t)n, sizeof *enc);
  if (!enc)
    return MB_ERR(MB_ENOMEM, "out of memory");
  int rc = MB_OK;
  int64_t total = 0;
  for (int i = 0; i < n && rc == MB_OK; i++) {
    char where[1200];
    describe_input(t, (size_t)i, where, sizeof where);
    rc = mb_tokenizer_encode(p->tok, t->v[i].s, t->v[i].len, p->add_special, p->max_length, &enc[i]);
    if (rc != MB_OK)
      rc = mb_error_context(rc, "%s", where);
    else if (enc[i].n == 0)
      MB_WARN("%s has no tokens: its prediction is the classifier's bias alone", where);
    total += (int64_t)enc[i].n;
  }
  /* a budget rounded up to 64 tokens: a few program shapes serve all chunks */
  int64_t T = ((total > n ? total : n) + 63) / 64 * 64;
  if (rc == MB_OK && T > INT32_MAX)
    rc = MB_ERR(MB_EINVAL, "inputs too long together (%lld tokens); lower --batch-size", (long long)total);
  int32_t *ids = NULL, *mask = NULL, *pos = NULL, *cu = NULL, *labels = NULL, *lengths = NULL;
  float *logits = NULL;
  if (rc == MB_OK) {
    ids = calloc((size_t)T, sizeof *ids);
    mask = calloc((size_t)T, sizeof *mask);
    pos = calloc((size_t)T, sizeof *pos);
    cu = calloc((size_t)n + 1, sizeof *cu);
    labels = calloc((size_t)n, sizeof *labels);
    lengths = calloc((size_t)n, sizeof *lengths);
    logits = calloc((size_t)n * (size_t)C, sizeof *logits);
    if (!ids || !mask || !pos || !cu || !labels || !lengths || !logits)
      rc = MB_ERR(MB_ENOMEM, "out of memory");
  }
  if (rc == MB_OK) {
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
      for (size_t k = 0; k < enc[i].n; k++) {
        ids[at + (int64_t)k] = enc[i].ids[k];
        mask[at + (int64_t)k] = 1;
        pos[at + (int64_t)k] = (int32_t)k;
      }
      at += (int64_t)enc[i].n;
      cu[i + 1] = (int32_t)at;
      labels[i] = -1;
      lengths[i] = (int32_t)enc[i].n;
    }
    mb_batch b;
    memset(&b, 0, sizeof b);
    b.mode = MB_BATCH_PACKED;
    b.rows = n;
    b.seq_len = (int32_t)T;
    b.n_seqs = n;
    b.n_tokens = at;
    b.input_ids = ids;
    b.attention_mask = mask;
    b.position_ids = pos;
    b.cu_seqlens = cu;
    b.labels = labels;
    b.lengths = lengths;
    int64_t key[MB_MODEL_KEY_LEN];
    mb_exec *ex;
    rc = mb_model_key_for_batch(&b, 0, key);
    if (rc == MB_OK)
      rc = mb_program_cache_get(p->cache, key, MB_MODEL_KEY_LEN, &ex);
    if (rc == MB_OK)
      rc = mb_model_feed(p->m, ex, &b, NULL);
    if (rc == MB_OK)
      rc = mb_exec_forward(ex);
    if (rc == MB_OK)
      rc = mb_model_read_logits(ex, logits);
  }
  for (int i = 0; i < n && rc == MB_OK; i++) {
    const float *z = logits + (size_t)i * (size_t)C;
    double mx = z[0], sum = 0, prob[MB_MODEL_MAX_LABELS];
    int best = 0;
    for (int k = 1; k < C; k++)
      if (z[k] > mx)
        mx = z[k], best = k;
    for (int k = 0; k < C; k++)
      sum += prob[k] = exp((double)z[k] - mx);
    for (int k = 0; k < C; k++)
      prob[k] /= sum;
    const text *x = &t->v[i];
    if (p->json) {
      json_t *o = json_object(), *pr = json_object(), *lg = json_array();
      for (int k = 0; k < C; k++) {
        json_object_set_new(pr, mb_model_label(p->m, k), json_real(prob[k]));
        json_array_append_new(lg, json_real(z[k]));
      }
      json_object_set_new(o, "index", json_integer((json_int_t)(t->first + (size_t)i)));
      json_object_set_new(o, "label", json_string(mb_model_label(p->m, best)));
      json_object_set_new(o, "label_id", json_integer(best));
      json_object_set_new(o, "score", json_real(prob[best]));
      json_object_set_new(o, "probabilities", pr);
      json_object_set_new(o, "logits", lg);
      json_object_set_new(o, "tokens", json_integer((json_int_t)enc[i].n));
      json_object_set_new(o, "text", json_stringn(x->s, x->len));
      char *line = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9) | JSON_PRESERVE_ORDER);
      json_decref(o);
      if (!line) {
        rc = MB_ERR(MB_ENOMEM, "out of memory");
        break;
      }
      printf("%s\n", line);
      free(line);
    } else {
      char pv[72];
      preview(x->s, x->len, pv, sizeof pv);
      printf("%s\t%.4f\t%s\n", p->labels[best], prob[best], pv);
    }
  }
  fflush(stdout);
  for (int i = 0; i < n; i++)
    mb_ids_free(&enc[i]);
  free(enc);
  free(ids);
  free(mask);
  free(pos);
  free(cu);
  free(labels);
  free(lengths);
  free(logits);
  return rc;
}

/* Label and print the inputs held while at least `batch` are (all of them
 * with flush): output follows input as it is read. */
static int drain(predictor *p, texts *in, int batch, int flush) {
  while (in->n >= (size_t)batch || (flush && in->n > 0)) {
    const int n = in->n < (size_t)batch ? (int)in->n : batch;
    MB_TRY(predict_chunk(p, in, n));
    texts_drop(in, (size_t)n);
  }
  return MB_OK;
}

/* One input per line of path ("-": stdin; a trailing \r is dropped),
 * labelled in batches as they come. */
static int read_lines(predictor *p, const char *path, texts *in, int batch, int64_t *count) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  if (!f)
    return MB_ERR(MB_EIO, "%s: cannot open: %s", path, strerror(errno));
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  int64_t lineno = 0;
  int rc = MB_OK;
  while (rc == MB_OK && (n = getline(&line, &cap, f)) >= 0) {
    lineno++;
    if (lineno == 1 && n >= 2 && (unsigned char)line[0] == 0x1f && (unsigned char)line[1] == 0x8b) {
      rc = MB_ERR(MB_EINVAL, "%s: a gzip file; predict reads plain text, one input per line (zcat it into -)",
                  strcmp(path, "-") ? path : "stdin");
      break;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
      n--;
    rc = texts_add(in, line, (size_t)n, path, lineno);
    if (rc == MB_OK)
      rc = drain(p, in, batch, 0);
  }
  if (rc == MB_OK && ferror(f))
    rc = MB_ERR(MB_EIO, "%s: read error: %s", strcmp(path, "-") ? path : "stdin", strerror(errno));
  free(line);
  if (f != stdin)
    fclose(f);
  *count += lineno;
  return rc;
}

/* Label names for the tab-separated output: a tab or line break in one
 * would shift the columns. */
static void plain_labels(predictor *p, int C) {
  for (int k = 0; k < C; k++) {
    snprintf(p->labels[k], sizeof p->labels[k], "%s", mb_model_label(p->m, k));
    for (char *c = p->labels[k]; *c; c++)
      if ((unsigned char)*c < 0x20)
        *c = ' ';
  }
}

static int run_predict(int argc, char **argv) {
  int one = mb_cli_one_process(&mb_cmd_predict, "every rank would print every prediction");
  if (one)
    return one;
  const char *model_dir = NULL, *tokenizer = NULL, *device = "cpu", *precision = "f32";
  int json = 0, batch = 32, max_length = -1;
  /* the inputs in order: texts (argv entries) and files ("-": stdin) */
  const char **src = calloc((size_t)argc, sizeof *src);
  int *is_file = calloc((size_t)argc, sizeof *is_file);
  int nsrc = 0, rc = 0, after_dashes = 0;
  if (!src || !is_file)
    rc = mb_cli_usage_error(&mb_cmd_predict, "out of memory");
  for (int i = 1; !rc && i < argc; i++) {
    const char *a = argv[i];
    if (after_dashes || a[0] != '-' || !strcmp(a, "-")) {
      is_file[nsrc] = !strcmp(a, "-") && !after_dashes;
      src[nsrc++] = a;
    } else if (!strcmp(a, "--")) {
      after_dashes = 1;
    } else if (!strcmp(a, "--json")) {
      json = 1;
    } else if (!strcmp(a, "--model") || !strcmp(a, "--file") || !strcmp(a, "--tokenizer") ||
               !strcmp(a, "--batch-size") || !strcmp(a, "--max-length") || !strcmp(a, "--device") ||
               !strcmp(a, "--precision")) {
      if (i + 1 >= argc) {
        rc = mb_cli_usage_error(&mb_cmd_predict, "%s needs a value", a);
        break;
      }
      const char *v = argv[++i];
      if (!strncmp(v, "--", 2) && strcmp(a, "--file") != 0) { /* an option, not this one's value */
        rc = mb_cli_usage_error(&mb_cmd_predict, "%s needs a value (got the option %s)", a, v);
        break;
      }
      if (!strcmp(a, "--model") && model_dir)
        rc = mb_cli_usage_error(&mb_cmd_predict, "--model given twice (%s and %s)", model_dir, v);
      else if (!strcmp(a, "--model"))
        model_dir = v;
      else if (!strcmp(a, "--tokenizer"))
        tokenizer = v;
      else if (!strcmp(a, "--file"))
        is_file[nsrc] = 1, src[nsrc++] = v;
      else if (!strcmp(a, "--batch-size"))
        rc = parse_int(a, v, 1, 1 << 16, &batch);
      else if (!strcmp(a, "--device") && strcmp(v, "cpu") && strcmp(v, "cuda") && strcmp(v, "auto"))
        rc = mb_cli_usage_error(&mb_cmd_predict, "--device '%s': expected cpu, cuda or auto", v);
      else if (!strcmp(a, "--device"))
        device = v;
      else if (!strcmp(a, "--precision") && strcmp(v, "f32") && strcmp(v, "bf16") && strcmp(v, "fp16"))
        rc = mb_cli_usage_error(&mb_cmd_predict, "--precision '%s': expected f32, bf16 or fp16", v);
      else if (!strcmp(a, "--precision"))
        precision = v;
      else
        rc = parse_int(a, v, 0, 1 << 30, &max_length);
    } else if (!strncmp(a, "--", 2) && strchr(a, '=')) {
      rc = mb_cli_usage_error(&mb_cmd_predict, "unknown option '%s' (give the value as its own argument: '%.*s VALUE')",
                              a, (int)(strchr(a, '=') - a), a);
    } else {
      rc = mb_cli_usage_error(&mb_cmd_predict, "unknown option '%s'", a);
    }
  }
  if (!rc && !model_dir)
    rc = mb_cli_usage_error(&mb_cmd_predict, "--model DIR is required");
  if (!rc && strcmp(precision, "f32") != 0 && (strcmp(device, "cpu") == 0 || !MAMBERT_HAVE_CUDA))
    rc = mb_cli_usage_error(&mb_cmd_predict, "--precision %s needs a GPU: %s", precision,
                            MAMBERT_HAVE_CUDA ? "add --device cuda (or auto)"
                                              : "this build has no CUDA backend; use --precision f32");
  if (!rc && strcmp(device, "cuda") == 0 && !MAMBERT_HAVE_CUDA)
    rc = mb_cli_usage_error(&mb_cmd_predict, "--device cuda: this build has no CUDA backend; use --device cpu");
  if (!rc && nsrc == 0)
    rc = mb_cli_usage_error(&mb_cmd_predict, "no inputs: give texts, --file PATH or - (stdin)");
  if (rc) {
    free(src);
    free(is_file);
    return rc;
  }

  predictor p = {0};
  /* where to compute: the device code train and eval share, from --device
   * and --precision in place of train.device and train.precision */
  mb_config dc;
  mb_config_defaults(&dc);
  snprintf(dc.device, sizeof dc.device, "%s", device);
  snprintf(dc.precision, sizeof dc.precision, "%s", precision);
  mb_cli_device dev;
  if (mb_cli_device_open_as(&dc, 1, 0, "mambert predict", "--device", "--precision", &dev) != MB_OK) {
    free(src);
    free(is_file);
    return mb_cli_fail("predict", NULL);
  }
  mb_backend *be = dev.be;
  mb_net *net;
  char source[MB_CFG_PATH + 64];
  mb_open_path_opts lo = {.tokenizer = tokenizer};
  if (mb_open_model_path(model_dir, &lo, be, NULL, &net, source, sizeof source) != MB_OK ||
      mb_cli_device_apply(&dev, net, 0) != MB_OK) {
    free(src);
    free(is_file);
    const int code = mb_cli_fail("predict", "loading the model");
    mb_cli_device_close(&dev);
    return code;
  }
  if (dev.gpu)
    MB_INFO("predict on %s", dev.desc);
  p.m = mb_net_model(net);
  const mb_model_config *c = mb_model_config_of(p.m);
  p.json = json;
  p.add_special = mb_model_add_special(p.m);
  plain_labels(&p, c->num_labels);
  p.max_length = max_length > 0 ? max_length : c->arch == MB_ARCH_BERT ? (int)c->bert.max_position : 0;
  if (c->arch == MB_ARCH_BERT && p.max_length > c->bert.max_position) {
    MB_WARN("--max-length %d: the model has %lld position embeddings; inputs are cut to %lld tokens", p.max_length,
            (long long)c->bert.max_position, (long long)c->bert.max_position);
    p.max_length = (int)c->bert.max_position;
  }
  mb_compile_opts co = {.train = 0};
  int err = mb_model_load_tokenizer(p.m, &p.tok);
  if (err == MB_OK)
    err = mb_program_cache_new(mb_model_params(p.m), be, &co, mb_model_build, p.m, &p.cache);
  texts in = {0};
  int64_t lines = 0;
  for (int k = 0; err == MB_OK && k < nsrc; k++) {
    if (is_file[k]) {
      err = read_lines(&p, src[k], &in, batch, &lines);
    } else {
      err = texts_add(&in, src[k], strlen(src[k]), "argument", 0);
      if (err == MB_OK)
        err = drain(&p, &in, batch, 0);
    }
  }
  if (err == MB_OK)
    err = drain(&p, &in, batch, 1);
  if (err == MB_OK && in.first == 0) /* files and stdin that held no line: nothing to label, no error */
    MB_INFO("no inputs: the files given hold no lines");
  int code = err == MB_OK ? MB_EXIT_OK : mb_cli_fail("predict", NULL);
  mb_program_cache_free(p.cache);
  mb_tokenizer_free(p.tok);
  mb_net_free(net);
  mb_cli_device_close(&dev);
  texts_free(&in);
  free(src);
  free(is_file);
  return code;
}

const mb_command mb_cmd_predict = {
    "predict",
    "label texts with a classifier: the label and its probability",
    "Usage: mambert predict --model DIR [options] TEXT... | --file PATH | -\n"
    "\n"
    "Labels each input with a BERT or Mamba classifier and prints, per input, the\n"
    "label (LABEL_0, LABEL_1, or the config's id2label), its probability and the text:\n"
    "    LABEL_1<TAB>0.9871<TAB>a wonderful film\n"
    "Each input is run as its own sequence (packed batches, no padding), so the\n"
    "other inputs do not change its label or probability as printed; its logits\n"
    "(--json) agree with those of a batch of one to float32 rounding. An input with\n"
    "no tokens (empty, to Mamba) is labelled from the classifier's bias alone, with\n"
    "a warning. The plain output shows the first ~68 bytes of the text (control\n"
    "characters as spaces, cut at a whole UTF-8 character, then \"...\"); --json has\n"
    "all of it. Inputs are labelled in batches as they are read, so output follows\n"
    "a stream; an input the tokenizer refuses (invalid UTF-8) ends the run with an\n"
    "error naming its index (as --json's) and its file and line. Files or stdin\n"
    "with no lines are no error: nothing is printed.\n"
    "\n"
    "Inputs (in this order, any mix):\n"
    "  TEXT...            texts on the command line (after -- they may start with -)\n"
    "  --file PATH        one input per line (PATH - reads stdin)\n"
    "  -                  read stdin, one input per line\n"
    "\n"
    "Options:\n"
    "  --model DIR        the classifier (required), as eval --model takes it: a\n"
    "                     Hugging Face style directory (config.json, model.safetensors,\n"
    "                     vocab.txt or tokenizer.json: a mambert export, an HF\n"
    "                     checkpoint), a run directory (its final model, else its\n"
    "                     newest valid checkpoint) or a training checkpoint\n"
    "                     (RUN/checkpoints/step-N; its config.yaml names the tokenizer)\n"
    "  --json             one JSON object per line: index, label, label_id, score,\n"
    "                     probabilities, logits, tokens, text\n"
    "  --batch-size N     inputs per forward pass (default 32)\n"
    "  --max-length N     truncate to N tokens (0 or absent: BERT's max_position_embeddings,\n"
    "                     special tokens included, also the most N can be; Mamba: no\n"
    "                     truncation, as the reference)\n"
    "  --device D         cpu (default), cuda (the first GPU) or auto (a GPU when this\n"
    "                     build has CUDA and one is visible)\n"
    "  --precision P      f32 (default), or on a GPU bf16 or fp16 compute\n"
    "  --tokenizer FILE   use this vocab.txt / tokenizer.json instead of the model's own;\n"
    "                     refused when the model records another vocabulary\n",
    run_predict,
};
