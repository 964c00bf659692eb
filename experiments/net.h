/* net.h: a classifier as the run loop sees it, whatever its architecture.
 *
 * The trainer and the evaluator never call a model's own API: they hold an
 * mb_net, whose ops build the forward of one batch shape on a graph, fill
 * fresh weights, and export a directory. The adapters (net_models.c for BERT
 * and Mamba from models/, net_bow.c for the bag-of-embeddings baseline) are
 * the only files that know a model's API.
 *
 * A net's program for one batch shape is complete: inputs (input_ids,
 * attention_mask, labels, and for packed batches cu_seqlens, position_ids
 * or whatever else the net needs; dropout_rng u64[2] = (seed, offset) in
 * training programs), the loss (mean cross-entropy over rows not labelled
 * -100) set with mb_set_loss, and the logits [rows, num_labels] marked as an
 * output. The net feeds a loader batch into its own program.
 */
#ifndef MB_EXPERIMENTS_NET_H
#define MB_EXPERIMENTS_NET_H

#include <stdint.h>

#include "autograd/autograd.h"
#include "data/loader.h"
#include "experiments/config.h"
#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int packed;       /* 0 padded, 1 packed */
  int64_t rows;     /* padded: R; packed: S (max sequences) */
  int64_t seq_len;  /* padded: L; packed: T (token budget) */
  int train;        /* dropout on; the rng input is declared */
} mb_net_shape;

typedef struct mb_net mb_net;

typedef struct {
  /* Record the program of one shape on g (loss set, logits marked). */
  int (*build)(mb_net *net, mb_graph *g, const mb_net_shape *shape);
  /* The logits value of a program built by build. */
  mb_var (*logits)(mb_net *net, const mb_graph *g);
  /* The loss to report: the mean cross-entropy without a loss scale (the
   * graph's loss, which backward starts from, may be that times S). */
  mb_var (*loss)(mb_net *net, const mb_graph *g);
  /* Fill every input the executor's program declares from a batch (labels
   * -1 become -100); rng = (seed, offset) for dropout, NULL in evaluation. */
  int (*feed)(mb_net *net, mb_exec *ex, const mb_batch *b, const uint64_t rng[2]);
  /* Fill every parameter with its initial values from seed (materialised store). */
  int (*init_weights)(mb_net *net, uint64_t seed);
  /* Write a Hugging Face style directory (config.json + model.safetensors
   * [+ the tokenizer file]) that `from_pretrained` or mambert load. */
  int (*export_dir)(mb_net *net, const char *dir, const char *tokenizer_path);
  /* A line describing the architecture and sizes. */
  void (*describe)(const mb_net *net, char *buf, size_t cap);
  void (*destroy)(mb_net *net);
} mb_net_ops;

struct mb_net {
  const mb_net_ops *ops;
  char arch[32];        /* "bert", "mamba", "bow" */
  mb_params *params;    /* owned */
  int supports_packed;
  int wants_special;    /* expects [CLS] ... [SEP] in its inputs */
  int64_t vocab_size, num_labels, max_position; /* max_position 0 = unlimited */
  /* The tokenizer the weights belong to (from a checkpoint directory), or "". */
  char tokenizer_name[64], tokenizer_sha256[65];
  char tokenizer_path[1024];
  void *impl;
};

/* Build a net from the config: model.arch with its sizes (vocab_size from
 * the tokenizer when 0), or model.checkpoint (a directory: arch, sizes and
 * weights from it). The store is created on `be` and materialised; weights
 * are initialised from the seed or loaded from the checkpoint. For training,
 * a checkpoint without a classification head (a pretrained backbone) gets a
 * fresh head from the seed; for evaluation that is an error. */
int mb_net_create(const mb_config *cfg, int64_t tokenizer_vocab, int for_training, mb_backend *be,
                  mb_net **out) MB_NODISCARD;
void mb_net_free(mb_net *net);

/* Which parameters get weight decay: matrices and embeddings only, as
 * Hugging Face's Trainer (no biases, no norm weights) and mamba_ssm (no
 * A_log, no D) do; every parameter when decay_norms_biases
 * (optim.decay_norms_biases). */
void mb_net_set_weight_decay(mb_net *net, int decay_norms_biases);

/* Load weights from a safetensors file with the store's names and shapes
 * (a mambert checkpoint). Missing, unexpected or mis-shaped tensors are an
 * error that names them (up to a few of each). */
int mb_net_load_weights(mb_net *net, const char *path) MB_NODISCARD;
/* Save the weights (every parameter by name) with metadata. */
int mb_net_save_weights(mb_net *net, const char *path, const char *const *meta_kv, int n_meta) MB_NODISCARD;

/* The bag-of-embeddings baseline (net_bow.c): mean of token embeddings
 * (padding masked), tanh layer, linear head. Cheap; a baseline and the test
 * model of the run loop. */
int mb_net_bow_create(const mb_config *cfg, int64_t vocab_size, mb_net **out) MB_NODISCARD;

/* The pooling the config asks for, "auto" resolved for the architecture. */
const char *mb_net_pooling(const mb_config *cfg, const char *arch);

/* The BERT or Mamba model of models/ behind a net (net_models.c); NULL for
 * the bow baseline. */
struct mb_model *mb_net_model(mb_net *net);

#ifdef __cplusplus
}
#endif
#endif
