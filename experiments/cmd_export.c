/* cmd_export.c: `mambert export`: write a classifier directory that Hugging
 * Face transformers loads (BERT) or the reference Mamba classifier's loader
 * reads, from a loadable model directory or from a configuration with
 * random initialisation. The run loop calls mb_model_export directly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/cli.h"
#include "kernels/cpu/cpu.h"
#include "models/model.h"

extern const mb_command mb_cmd_export;

static int run_export(int argc, char **argv) {
  const char *model_dir = NULL, *config = NULL, *tokenizer = NULL, *out = NULL, *pooling = NULL;
  unsigned long long seed = 0;
  int num_labels = 0, init_head = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--init-head")) {
      init_head = 1;
      continue;
    }
    if (strcmp(a, "--model") && strcmp(a, "--config") && strcmp(a, "--tokenizer") && strcmp(a, "--out") &&
        strcmp(a, "--seed") && strcmp(a, "--num-labels") && strcmp(a, "--pooling"))
      return mb_cli_usage_error(&mb_cmd_export, "unknown option '%s'", a);
    if (i + 1 >= argc)
      return mb_cli_usage_error(&mb_cmd_export, "%s needs a value", a);
    const char *v = argv[++i];
    char *end;
    if (!strcmp(a, "--model"))
      model_dir = v;
    else if (!strcmp(a, "--config"))
      config = v;
    else if (!strcmp(a, "--tokenizer"))
      tokenizer = v;
    else if (!strcmp(a, "--out"))
      out = v;
    else if (!strcmp(a, "--pooling"))
      pooling = v;
    else if (!strcmp(a, "--seed")) {
      seed = strtoull(v, &end, 10);
      if (!*v || *end)
        return mb_cli_usage_error(&mb_cmd_export, "--seed '%s': expected a non-negative integer", v);
    } else {
      long n = strtol(v, &end, 10);
      if (!*v || *end || n < 1 || n > MB_MODEL_MAX_LABELS)
        return mb_cli_usage_error(&mb_cmd_export, "--num-labels '%s': expected 1..%d", v, MB_MODEL_MAX_LABELS);
      num_labels = (int)n;
    }
  }
  if (!out)
    return mb_cli_usage_error(&mb_cmd_export, "--out DIR is required");
  if (!model_dir == !config)
    return mb_cli_usage_error(&mb_cmd_export, "give exactly one of --model DIR and --config FILE");
  int pool = -1;
  if (pooling) {
    if (!strcmp(pooling, "mean"))
      pool = MB_POOL_MEAN;
    else if (!strcmp(pooling, "masked_mean"))
      pool = MB_POOL_MASKED_MEAN;
    else
      return mb_cli_usage_error(&mb_cmd_export, "--pooling '%s': expected mean or masked_mean", pooling);
  }

  mb_model *m = NULL;
  mb_backend *be = mb_cpu_backend();
  if (model_dir) {
    mb_model_load_opts o = {.init_missing_head = init_head,
                            .seed = seed,
                            .tokenizer_path = tokenizer,
                            .num_labels = num_labels,
                            .pooling = pool};
    if (mb_model_load(model_dir, &o, be, &m) != MB_OK)
      return mb_cli_fail("export", NULL);
  } else {
    mb_model_config cfg;
    if (mb_model_config_load(config, &cfg) != MB_OK)
      return mb_cli_fail("export", NULL);
    if (num_labels)
      cfg.num_labels = num_labels;
    if (pool >= 0)
      cfg.mamba.pooling = (mb_pooling)pool;
    if (mb_model_new(&cfg, tokenizer, be, &m) != MB_OK || mb_model_init_random(m, seed) != MB_OK) {
      mb_model_free(m);
      return mb_cli_fail("export", "random initialisation");
    }
  }
  if (mb_model_export(m, out) != MB_OK) {
    mb_model_free(m);
    return mb_cli_fail("export", NULL);
  }
  const mb_model_config *c = mb_model_config_of(m);
  printf("exported %s (%s, %lld parameters, %d labels) to %s\n",
         c->arch == MB_ARCH_BERT ? "BertForSequenceClassification" : "Mamba classifier",
         model_dir ? model_dir : "random initialisation", (long long)mb_model_config_num_params(c), c->num_labels, out);
  mb_model_free(m);
  return MB_EXIT_OK;
}

const mb_command mb_cmd_export = {
    "export",
    "write a classifier directory that Hugging Face loads",
    "Usage: mambert export (--model DIR | --config FILE) --out DIR [options]\n"
    "\n"
    "Writes config.json, model.safetensors and the tokenizer files into --out,\n"
    "atomically (a temporary directory renamed into place; an existing --out is\n"
    "replaced only once the new one is complete).\n"
    "  BERT:  loads with BertForSequenceClassification.from_pretrained(DIR) and\n"
    "         AutoTokenizer.from_pretrained(DIR).\n"
    "  Mamba: the reference classifier's tensor names (backbone.*,\n"
    "         classification_head.classification_head.*), config.json in mamba_ssm's\n"
    "         MambaConfig form, classifier.json (labels, pooling), tokenizer.json;\n"
    "         tools/mamba_classifier.py loads it with transformers' MambaModel.\n"
    "\n"
    "Sources:\n"
    "  --model DIR        a model directory (HF BERT / Mamba checkpoint, an export)\n"
    "  --config FILE      a config.json (any supported form): random initialisation\n"
    "                     as the references do it, from --seed\n"
    "Options:\n"
    "  --out DIR          where to write (required)\n"
    "  --tokenizer FILE   vocab.txt / tokenizer.json to ship with it\n"
    "  --seed N           random initialisation seed (default 0)\n"
    "  --num-labels N     number of classes for a new head\n"
    "  --init-head        --model without a classification head (a pretrained\n"
    "                     backbone): initialise one from --seed\n"
    "  --pooling P        Mamba: mean (all positions, the reference) or masked_mean\n",
    run_export,
};
