/* cmd_config.c: `mambert config`: print every config key (--schema), or
 * check configs and print them resolved, as train would save them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/cli.h"
#include "experiments/config.h"
#include "runtime/error.h"
#include "runtime/fileio.h"

extern const mb_command mb_cmd_config;

static void print_schema(void) {
  int n;
  const mb_cfg_entry *e = mb_config_schema(&n);
  mb_config d;
  mb_config_defaults(&d);
  static const char *types[] = {"int", "float", "bool", "string", "enum", "[float, float]", "[int, ...]",
                                "[string, ...]"};
  /* columns as wide as their widest cell */
  int kw = 3, tw = 4, dw = 7;
  char(*def)[64] = calloc((size_t)n, sizeof *def), (*type)[96] = calloc((size_t)n, sizeof *type);
  if (!def || !type) {
    free(def);
    free(type);
    return;
  }
  for (int i = 0; i < n; i++) {
    mb_config_value_string(&d, &e[i], def[i], sizeof def[i]);
    if (!def[i][0])
      snprintf(def[i], sizeof def[i], "\"\"");
    snprintf(type[i], sizeof type[i], "%s", e[i].type == MB_CFG_ENUM ? e[i].words : types[e[i].type]);
    kw = (int)strlen(e[i].key) > kw ? (int)strlen(e[i].key) : kw;
    tw = (int)strlen(type[i]) > tw ? (int)strlen(type[i]) : tw;
    dw = (int)strlen(def[i]) > dw ? (int)strlen(def[i]) : dw;
  }
  printf("%-*s  %-*s  %-*s  %s\n", kw, "key", tw, "type", dw, "default", "meaning");
  for (int i = 0; i < n; i++)
    printf("%-*s  %-*s  %-*s  %s%s\n", kw, e[i].key, tw, type[i], dw, def[i], e[i].help,
           e[i].resume_may_change ? " [may change on --resume]" : "");
  free(def);
  free(type);
}

/* A path train or eval opens first thing: it must be there (globs are the
 * shard loader's to expand). */
static int check_path(const mb_config_doc *d, const char *key, const char *path, int dir) {
  if (!path[0] || strpbrk(path, "*?["))
    return MB_OK;
  if (dir ? mb_is_dir(path) : mb_file_exists(path))
    return MB_OK;
  char desc[MB_CFG_PATH + 128];
  mb_config_doc_describe(d, key, desc, sizeof desc);
  return MB_ERR(MB_ENOTFOUND, "%s: %s: no such %s", desc, path, dir ? "directory" : "file or directory");
}

/* What train (or eval) checks on opening the config's files. */
static int check_files(mb_config_doc *d, const char *purpose) {
  const mb_config *c = mb_config_doc_config(d);
  const int train = strcmp(purpose, "train") == 0;
  MB_TRY(check_path(d, "tokenizer", c->tokenizer, 0));
  MB_TRY(check_path(d, "model.checkpoint", c->model_checkpoint, 1));
  if (train || strcmp(c->eval_split, "train") == 0)
    MB_TRY(check_path(d, "data.train", c->train_data, 0));
  return check_path(d, "data.test", c->test_data, 0);
}

static int run_config(int argc, char **argv) {
  const char **files = calloc((size_t)argc, sizeof *files), **sets = calloc((size_t)argc, sizeof *sets);
  int nf = 0, ns = 0, schema = 0, rc = MB_EXIT_OK;
  const char *purpose = "train", *run_dir = NULL;
  for (int i = 1; i < argc && rc == MB_EXIT_OK; i++) {
    if (strcmp(argv[i], "--schema") == 0)
      schema = 1;
    else if (strcmp(argv[i], "--set") == 0 && i + 1 < argc)
      sets[ns++] = argv[++i];
    else if (strncmp(argv[i], "--set=", 6) == 0) /* as train takes it */
      sets[ns++] = argv[i] + 6;
    else if (strcmp(argv[i], "--for") == 0 && i + 1 < argc)
      purpose = argv[++i];
    else if (strcmp(argv[i], "--run-dir") == 0 && i + 1 < argc) /* as train takes it: verbatim, not YAML */
      run_dir = argv[++i];
    else if (argv[i][0] == '-')
      rc = mb_cli_usage_error(&mb_cmd_config, "unknown option '%s'", argv[i]);
    else
      files[nf++] = argv[i];
  }
  if (rc == MB_EXIT_OK && strcmp(purpose, "train") != 0 && strcmp(purpose, "eval") != 0 &&
      strcmp(purpose, "none") != 0)
    rc = mb_cli_usage_error(&mb_cmd_config, "--for '%s': expected train, eval or none", purpose);
  if (rc == MB_EXIT_OK && schema && (nf > 0 || ns > 0))
    rc = mb_cli_usage_error(&mb_cmd_config, "--schema takes no config file or --set (it lists the keys)");
  if (rc == MB_EXIT_OK && schema) {
    print_schema();
  } else if (rc == MB_EXIT_OK) {
    if (nf == 0) {
      rc = mb_cli_usage_error(&mb_cmd_config, "give a config file, or --schema");
    } else {
      mb_config_doc *d = NULL;
      char *yaml;
      size_t len;
      const int none = strcmp(purpose, "none") == 0;
      int lrc = mb_config_load(files, nf, sets, ns, NULL, &d);
      if (lrc == MB_OK && run_dir) {
        mb_config *c = mb_config_doc_config(d);
        if (strlen(run_dir) >= sizeof c->run_dir)
          lrc = MB_ERR(MB_EINVAL, "--run-dir %s: path too long", run_dir);
        else
          snprintf(c->run_dir, sizeof c->run_dir, "%s", run_dir);
      }
      if (lrc == MB_OK && !none && mb_config_doc_config(d)->n_sweep_configs > 0)
        purpose = "sweep"; /* a sweep file: eval reads the configs it lists */
      if (lrc == MB_OK && !none)
        lrc = mb_config_check(d, purpose);
      if (lrc == MB_OK && !none && strcmp(purpose, "sweep") != 0)
        lrc = check_files(d, purpose);
      for (int k = 0; lrc == MB_OK && strcmp(purpose, "sweep") == 0 && k < mb_config_doc_config(d)->n_sweep_configs;
           k++) /* the configs a sweep lists, where eval will open them (from the working directory) */
        lrc = check_path(d, "sweep.configs", mb_config_doc_config(d)->sweep_configs[k], 0);
      if (lrc != MB_OK) {
        mb_config_doc_free(d);
        rc = mb_cli_fail("config", NULL);
      } else if (mb_config_to_yaml(mb_config_doc_config(d), "resolved by mambert config", &yaml, &len) != MB_OK) {
        rc = mb_cli_fail("config", NULL);
        mb_config_doc_free(d);
      } else {
        fwrite(yaml, 1, len, stdout);
        free(yaml);
        mb_config_doc_free(d);
      }
    }
  }
  free(files);
  free(sets);
  return rc;
}

const mb_command mb_cmd_config = {
    "config",
    "list every config key, or check a config and print it resolved",
    "Usage: mambert config --schema\n"
    "       mambert config CONFIG.yaml [CONFIG2.yaml ...] [--set KEY=VALUE]... [--run-dir DIR]\n"
    "                      [--for train|eval|none]\n"
    "\n"
    "--schema prints every key with its type, default and meaning. Otherwise the configs\n"
    "are read (later ones and --set override earlier values; null puts a key back to its\n"
    "default, as if never given), checked as train (or eval)\n"
    "would check them (the keys, and that the tokenizer, checkpoint and data they name\n"
    "exist; a sweep file's own keys and the configs it lists, whose files eval checks\n"
    "when it opens them), and printed resolved: every key that applies, as train saves\n"
    "it in the run directory (which also makes the paths absolute). Errors name the\n"
    "key and file:line:column.\n",
    run_config,
};
