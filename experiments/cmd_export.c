/* cmd_export.c: `mambert export`: write a classifier directory that Hugging
 * Face transformers loads (BERT) or the reference Mamba classifier's loader
 * reads, from what --model names (loaded as eval --model loads it, eval.h:
 * a model directory, a run directory, a training checkpoint) or from a
 * configuration with random initialisation. The run loop calls
 * mb_model_export directly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/cli.h"
#include "experiments/eval.h"
#include "kernels/cpu/cpu.h"
#include "models/model.h"

extern const mb_command mb_cmd_export;

static int run_export(int argc, char **argv) {
  int one = mb_cli_one_process(&mb_cmd_export, "every rank would write the same directory");
  if (one)
    return one;
  const char *model_dir = NULL, *config = NULL, *tokenizer = NULL, *out = NULL, *pooling = NULL;
  unsigned long long seed = 0;
  int num_labels = 0, init_head = 0, seed_given = 0;
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
      seed_given = 1;
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
  const size_t cl = config ? strlen(config) : 0;
  if (cl >= 5 && (!strcmp(config + cl - 5, ".yaml") || !strcmp(config + cl - 4, ".yml")))
    return mb_cli_usage_error(&mb_cmd_export, "--config %s: a mambert YAML config; --config takes a model's "
                                              "config.json (HF BertConfig / MambaConfig). A YAML config is trained: "
                                              "mambert train %s, then export --model its run directory",
                              config, config);
  int pool = -1;
  if (pooling) {
    if (!strcmp(pooling, "mean"))
      pool = MB_POOL_MEAN;
    else if (!strcmp(pooling, "masked_mean"))
      pool = MB_POOL_MASKED_MEAN;
    else
      return mb_cli_usage_error(&mb_cmd_export, "--pooling '%s': expected mean or masked_mean", pooling);
  }

  /* options that would do nothing are said, not ignored */
  if (model_dir && seed_given && !init_head)
    return mb_cli_usage_error(&mb_cmd_export, "--seed initialises --config's random weights or --init-head's "
                                              "head; with --model alone it would do nothing");
  mb_model *m = NULL;
  mb_net *net = NULL; /* --model: owns m */
  mb_backend *be = mb_cpu_backend();
  char source[MB_CFG_PATH + 64] = "random initialisation";
  if (model_dir) {
    mb_open_path_opts o = {.tokenizer = tokenizer,
                           .optional_tokenizer = 1,
                           .init_missing_head = init_head,
                           .seed = seed,
                           .num_labels = num_labels,
                           .pooling = pooling};
    if (mb_open_model_path(model_dir, &o, be, NULL, &net, source, sizeof source) != MB_OK)
      return mb_cli_fail("export", "loading the model");
    m = mb_net_model(net);
  } else {
    mb_model_config cfg;
    if (mb_model_config_load(config, &cfg) != MB_OK)
      return mb_cli_fail("export", NULL);
    if (num_labels)
      cfg.num_labels = num_labels;
    if (pool >= 0)
      cfg.mamba.pooling = (mb_pooling)pool;
    if (mb_model_new(&cfg, tokenizer, be, &m) != MB_OK || mb_model_check_tokenizer(m, config) != MB_OK ||
        mb_model_init_random(m, seed) != MB_OK) {
      mb_model_free(m);
      return mb_cli_fail("export", "random initialisation");
    }
  }
  const mb_model_config *c = mb_model_config_of(m);
  int code = MB_EXIT_OK;
  if (pool >= 0 && c->arch != MB_ARCH_MAMBA) /* BERT has no pooling to choose: never ignore the option silently */
    code = mb_cli_usage_error(&mb_cmd_export, "--pooling applies to Mamba models only; %s is a BERT model (it "
                                              "classifies from [CLS] through its pooler)",
                              model_dir ? source : config);
  else if (mb_model_export(m, out) != MB_OK)
    code = mb_cli_fail("export", NULL);
  else
    printf("exported %s (%s, %lld parameters, %d labels) to %s\n",
           c->arch == MB_ARCH_BERT ? "BertForSequenceClassification" : "Mamba classifier", source,
           (long long)mb_model_config_num_params(c), c->num_labels, out);
  if (net)
    mb_net_free(net);
  else
    mb_model_free(m);
  return code;
}

const mb_command mb_cmd_export = {
    "export",
    "write a classifier directory that Hugging Face loads",
    "Usage: mambert export (--model DIR | --config FILE) --out DIR [options]\n"
    "\n"
    "Writes config.json, model.safetensors and the tokenizer files into --out,\n"
    "atomically (a temporary directory renamed into place; an existing --out is\n"
    "replaced only once the new one is complete, and only if it holds nothing but\n"
    "a previous export's files: a run directory or your own files are refused).\n"
    "  BERT:  loads with BertForSequenceClassification.from_pretrained(DIR) and\n"
    "         AutoTokenizer.from_pretrained(DIR).\n"
    "  Mamba: the reference classifier's tensor names (backbone.*,\n"
    "         classification_head.classification_head.*), config.json in mamba_ssm's\n"
    "         MambaConfig form, classifier.json (labels, pooling), tokenizer.json;\n"
    "         tools/mamba_classifier.py loads it with transformers' MambaModel.\n"
    "\n"
    "Sources:\n"
    "  --model DIR        what eval --model takes: a model directory (HF BERT / Mamba\n"
    "                     checkpoint, an export), a run directory (its final model,\n"
    "                     else its newest valid checkpoint) or a training checkpoint\n"
    "                     (RUN/checkpoints/step-N: an intermediate model; its\n"
    "                     config.yaml names the tokenizer, --tokenizer another)\n"
    "  --config FILE      a config.json (any supported form): random initialisation\n"
    "                     as the references do it, from --seed\n"
    "Options:\n"
    "  --out DIR          where to write (required)\n"
    "  --tokenizer FILE   vocab.txt / tokenizer.json to ship with it\n"
    "  --seed N           random initialisation seed (default 0)\n"
    "  --num-labels N     number of classes for a new head\n"
    "  --init-head        --model without a classification head (a pretrained\n"
    "                     backbone): initialise one from --seed\n"
    "  --pooling P        Mamba models only (BERT pools [CLS]): mean (all positions,\n"
    "                     the reference) or masked_mean\n",
    run_export,
};
