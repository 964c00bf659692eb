/* net_models.c: the BERT and Mamba classifiers of models/ behind mb_net
 * (net.h). Until models/ is in the tree, asking for them is a clear error. */
#include <stdio.h>

#include "experiments/net.h"

int mb_net_models_create(const mb_config *cfg, int64_t vocab_size, mb_backend *be, mb_net **out);

int mb_net_models_create(const mb_config *cfg, int64_t vocab_size, mb_backend *be, mb_net **out) {
  (void)vocab_size;
  (void)be;
  (void)out;
  if (cfg->model_checkpoint[0])
    return MB_ERR(MB_EUNSUPPORTED, "model.checkpoint %s: loading Hugging Face checkpoints needs models/, "
                                   "which this build does not have yet",
                  cfg->model_checkpoint);
  return MB_ERR(MB_EUNSUPPORTED, "model.arch %s: this build does not have models/ yet (bow works)", cfg->model_arch);
}
