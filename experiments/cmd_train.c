/* cmd_train.c: `mambert train`: flags to mb_train_args (trainer.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/cli.h"
#include "experiments/trainer.h"
#include "runtime/fileio.h"

extern const mb_command mb_cmd_train;

static int is_yaml(const char *s) {
  size_t n = strlen(s);
  return (n > 5 && strcmp(s + n - 5, ".yaml") == 0) || (n > 4 && strcmp(s + n - 4, ".yml") == 0);
}

static int run_train(int argc, char **argv) {
  const char **configs = calloc((size_t)argc, sizeof *configs);
  const char **sets = calloc((size_t)argc, sizeof *sets);
  if (!configs || !sets) {
    free(configs);
    free(sets);
    return MB_EXIT_FAIL;
  }
  mb_train_args a;
  memset(&a, 0, sizeof a);
  int rc = MB_EXIT_OK;
  for (int i = 1; i < argc && rc == MB_EXIT_OK; i++) {
    const char *s = argv[i];
    if (strcmp(s, "--set") == 0 || strcmp(s, "-s") == 0) {
      if (i + 1 >= argc)
        rc = mb_cli_usage_error(&mb_cmd_train, "%s needs KEY=VALUE", s);
      else
        sets[a.nsets++] = argv[++i];
    } else if (strncmp(s, "--set=", 6) == 0) {
      sets[a.nsets++] = s + 6;
    } else if (strcmp(s, "--run-dir") == 0) {
      if (i + 1 >= argc)
        rc = mb_cli_usage_error(&mb_cmd_train, "--run-dir needs a directory");
      else
        a.run_dir = argv[++i];
    } else if (strcmp(s, "--resume") == 0) {
      a.resume = 1;
      /* an optional directory: the next word when it is not a flag or a config */
      if (i + 1 < argc && argv[i + 1][0] != '-' && !is_yaml(argv[i + 1]))
        a.resume_dir = argv[++i];
    } else if (strcmp(s, "--auto-resume") == 0) {
      a.auto_resume = 1;
    } else if (strcmp(s, "--force") == 0) {
      a.force = 1;
    } else if (s[0] == '-' && s[1]) {
      rc = mb_cli_usage_error(&mb_cmd_train, "unknown option '%s'", s);
    } else {
      configs[a.nconfigs++] = s;
    }
  }
  if (rc == MB_EXIT_OK && a.nconfigs == 0 && !a.resume)
    rc = mb_cli_usage_error(&mb_cmd_train, "give a config file (e.g. experiments/demo-bert.yaml)");
  if (rc == MB_EXIT_OK && a.auto_resume && (a.resume || a.force))
    rc = mb_cli_usage_error(&mb_cmd_train, "--auto-resume and --%s contradict each other", a.resume ? "resume" : "force");
  if (rc == MB_EXIT_OK && a.resume && a.force)
    rc = mb_cli_usage_error(&mb_cmd_train, "--resume and --force contradict each other");
  if (rc == MB_EXIT_OK && a.resume_dir && a.run_dir && strcmp(a.resume_dir, a.run_dir) != 0)
    rc = mb_cli_usage_error(&mb_cmd_train, "--resume %s and --run-dir %s name different directories", a.resume_dir,
                            a.run_dir);
  if (rc == MB_EXIT_OK) {
    a.configs = configs;
    a.sets = sets;
    int interrupted = 0;
    if (mb_train_run(&a, &interrupted) != MB_OK)
      rc = mb_cli_fail("train", NULL);
    else if (interrupted)
      rc = MB_TRAIN_EXIT_INTERRUPTED;
  }
  free(configs);
  free(sets);
  return rc;
}

const mb_command mb_cmd_train = {
    "train",
    "train a classifier from a YAML experiment config",
    "Usage: mambert train CONFIG.yaml [CONFIG2.yaml ...] [--set KEY=VALUE]... [--run-dir DIR]\n"
    "       mambert train --resume [DIR] [CONFIG.yaml] [--set KEY=VALUE]...\n"
    "       mambert train --auto-resume CONFIG.yaml [--set KEY=VALUE]... [--run-dir DIR]\n"
    "\n"
    "Trains the model the config describes (experiments/*.yaml; every key is listed by\n"
    "'mambert config --schema'). Later configs and --set override earlier values.\n"
    "\n"
    "Options:\n"
    "  --set KEY=VALUE   override one key, typed as in YAML: --set optim.lr=3e-5,\n"
    "                    --set optim.betas=[0.9,0.98], --set data.shuffle=false (repeatable)\n"
    "  --run-dir DIR     the run directory (overrides run.dir)\n"
    "  --resume [DIR]    continue the run in DIR (default: the config's run.dir) from its\n"
    "                    newest complete checkpoint, with its saved config; the result is\n"
    "                    bit-identical to an uninterrupted run. --set may change only keys\n"
    "                    that do not affect training (eval.*, log.*, checkpoint.*, ...).\n"
    "                    On another number of ranks, --set data.batch_size (and\n"
    "                    train.grad_accum) so ranks x batch x micro-batches stays the same:\n"
    "                    the data position and ZeRO-1 shards are mapped (not for packed or\n"
    "                    length-sorted batches mid-epoch: data.sort_window: 0 allows it).\n"
    "                    A completed run is left as it is (mambert eval evaluates it again)\n"
    "  --auto-resume     --resume when the run directory already holds a run (its config\n"
    "                    must then agree in every key that affects training), else start\n"
    "                    it: one command for a job that may be requeued (slurm/*.sbatch)\n"
    "  --force           the run directory holds another run: move it aside to\n"
    "                    DIR.replaced-<time> (nothing is deleted) and start over\n"
    "\n"
    "A run directory that already holds a run is never overwritten: train refuses\n"
    "unless --resume, --auto-resume or --force is given. It receives:\n"
    "  config.yaml       the resolved config (every key that applies; paths absolute, so\n"
    "                    --resume and eval read the same files from any directory)\n"
    "  run.json          identity and status (running, interrupted, failed, completed)\n"
    "  metrics.jsonl     one JSON line per log step (train) and per evaluation (eval)\n"
    "  events.out.tfevents.*  the same scalars for TensorBoard (tensorboard --logdir DIR)\n"
    "  checkpoints/step-NNNNNNNN/  weights, optimizer state, RNG and data position, the\n"
    "                    loss scaler (fp16), config, manifest with sha256 (the last\n"
    "                    checkpoint.keep are kept)\n"
    "  model/            the final weights as a Hugging Face style directory\n"
    "  results.json, eval.md  final evaluation (eval.* settings)\n"
    "\n"
    "Progress: a bar on a terminal (step, epoch, loss, lr, tokens/s, samples/s, ETA),\n"
    "plain lines otherwise (log.progress). Ctrl-C, SIGTERM or SIGHUP: the step finishes,\n"
    "a checkpoint is written, and train exits with status 3; --resume continues. During\n"
    "the final evaluation: it stops at its next batch (status 3, run.json interrupted);\n"
    "--resume evaluates and exports. A signal ignored when train starts (nohup's SIGHUP)\n"
    "stays ignored.\n"
    "Several ranks: mpirun -np N mambert train CONFIG (rank 0 writes everything);\n"
    "log.timeline: N writes step N's ops and all-reduces as timeline-rank-R.json.\n",
    run_train,
};
