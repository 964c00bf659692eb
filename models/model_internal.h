/* model_internal.h: what the files of models/ share and nobody else sees:
 * the model struct, the canonical parameter list of each architecture, and
 * the per-architecture forward builders and initialisers. */
#ifndef MB_MODELS_MODEL_INTERNAL_H
#define MB_MODELS_MODEL_INTERNAL_H

#include <jansson.h>
#include <stdint.h>

#include "models/model.h"

#define MB_PARAM_NAME_CAP 128

/* One parameter as the architecture declares it: canonical (HF/reference)
 * name, shape, and how it is initialised. */
typedef enum {
  MB_INIT_ZERO = 0,
  MB_INIT_ONE,
  MB_INIT_NORMAL,        /* normal(0, a) */
  MB_INIT_NORMAL_PADROW, /* normal(0, a), row b zero (BERT word embeddings) */
  MB_INIT_UNIFORM,       /* uniform(-a, a) */
  MB_INIT_CONST,         /* a */
  MB_INIT_ALOG,          /* A_log[c, n] = log(n + 1) */
  MB_INIT_DT_BIAS,       /* softplus^-1 of dt log-uniform in [dt_min, dt_max] */
  MB_INIT_SINUSOID       /* [P, H]: sin/cos of p 10000^(-2i/H), RMS a */
} mb_init_kind;

typedef struct {
  char name[MB_PARAM_NAME_CAP];
  mb_shape shape;
  mb_init_kind init;
  double a;
  int64_t b;
  int no_decay; /* biases, norms, A_log, D: no weight decay */
  int head;     /* part of the classification head */
} mb_param_decl;

struct mb_model {
  mb_model_config cfg;
  mb_model_precision prec;
  double loss_scale; /* fed as "loss_scale" when prec.loss_scale (default 1) */
  mb_params *params;
  char *tokenizer_path; /* "" if none */
  int do_lower_case;    /* from tokenizer_config.json; -1 unknown */
  int strip_accents;    /* -1 unknown / null */
};

/* Append one declaration to d (if *n < cap); *n counts them all. */
void mb_param_decl_add(mb_param_decl *d, int *n, int cap, mb_shape shape, mb_init_kind init, double a, int no_decay,
                       int head, const char *fmt, ...) MB_PRINTF(9, 10);

/* The canonical parameter list of a configuration (malloc'ed array). */
int mb_model_param_decls(const mb_model_config *c, mb_param_decl **out, int *n) MB_NODISCARD;
int mb_bert_param_decls(const mb_model_config *c, mb_param_decl *d, int cap);
int mb_mamba_param_decls(const mb_model_config *c, mb_param_decl *d, int cap);

int mb_bert_build(mb_model *m, mb_graph *g, const mb_model_shape *s) MB_NODISCARD;
/* x in dtype dt (a cast node unless it already is). */
mb_var mb_model_cast(mb_graph *g, mb_var x, mb_dtype dt);
/* The end of every program: logits (any float dtype) cast to f32 and marked
 * as the output, the mean cross-entropy, times the "loss_scale" input when
 * the model's precision asks for loss scaling (the unscaled loss is then
 * marked as an output too), set as the program's loss. */
int mb_model_finish(const mb_model *m, mb_graph *g, mb_var logits, mb_var labels) MB_NODISCARD;
int mb_mamba_build(mb_model *m, mb_graph *g, const mb_model_shape *s) MB_NODISCARD;

/* Default id2label ("LABEL_i") for labels [from, MB_MODEL_MAX_LABELS). */
void mb_model_default_labels(mb_model_config *c, int from);

/* The JSON texts export writes. */
char *mb_model_config_json(const mb_model_config *c);     /* config.json; free() */
char *mb_mamba_classifier_json(const mb_model_config *c); /* classifier.json; free() */
/* Read classifier.json (num_labels, id2label, pooling) into c. */
int mb_mamba_classifier_parse(const char *text, const char *path, mb_model_config *c, int *have_labels) MB_NODISCARD;

/* Parse the text of a Hugging Face JSON file (config.json,
 * tokenizer_config.json, classifier.json) with every number read as a
 * double: transformers writes integers no int64 holds (model_max_length
 * 1e30 = "no limit"). Read integer fields with mb_json_int. */
int mb_hf_json_parse(const char *text, const char *path, json_t **out) MB_NODISCARD;
/* 1 and *out when v is an integer (or an integral number below 1e15). */
int mb_json_int(const json_t *v, int64_t *out);

/* Sets *num_labels_given when config.json names num_labels / id2label. */
int mb_model_config_parse_ex(const char *text, const char *path, mb_model_config *out,
                             int *num_labels_given) MB_NODISCARD;

#endif
