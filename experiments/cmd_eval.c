/* cmd_eval.c: `mambert eval`: the study's evaluation protocol (eval.h) for
 * one or more models given by their configs, a comparison table, and
 * `--sweep max_length=...`: the sequence-length study with a table, JSON and
 * an SVG plot (plot.h). */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"
#include "distributed/dist.h"
#include "experiments/cli.h"
#include "experiments/config.h"
#include "experiments/datasets.h"
#include "experiments/device.h"
#include "experiments/eval.h"
#include "experiments/net.h"
#include "experiments/plot.h"
#include "kernels/cpu/blas_env.h"
#include "kernels/cpu/cpu.h"
#include "runtime/fileio.h"
#include "runtime/log.h"

extern const mb_command mb_cmd_eval;

#define MAX_MODELS 16

/* One model to evaluate: its config and where its weights came from. */
typedef struct {
  mb_config_doc *doc;
  mb_config *cfg;
  char source[1500];
  char device[320]; /* what it computed on (mb_cli_device's desc) */
} model_spec;

/* Where the models computed, for titles: the one device, or "CPU and GPU". */
static void compute_where(const model_spec *models, int nmodels, char *buf, size_t cap) {
  int same = 1;
  for (int m = 1; m < nmodels; m++)
    same &= strcmp(models[m].device, models[0].device) == 0;
  if (nmodels > 0 && same && strncmp(models[0].device, "cpu", 3) == 0)
    snprintf(buf, cap, "CPU, %d threads%s", omp_get_max_threads(),
             strstr(models[0].device, ", fp8 attention") ? ", fp8 attention (simulated)" : "");
  else if (nmodels > 0 && same)
    snprintf(buf, cap, "%s", models[0].device);
  else
    snprintf(buf, cap, "several devices: see each model; CPU threads %d", omp_get_max_threads());
}

static int open_test_set(const mb_config *cfg, const mb_tokenizer *tok, int add_special, mb_shardset **out) {
  const char *split = cfg->eval_split;
  const char *spec = strcmp(split, "train") == 0 ? cfg->train_data : cfg->test_data;
  char cache[1400];
  if (cfg->cache_dir[0])
    snprintf(cache, sizeof cache, "%s", cfg->cache_dir);
  else if (cfg->run_dir[0])
    snprintf(cache, sizeof cache, "%s/data", cfg->run_dir);
  else
    snprintf(cache, sizeof cache, "runs/data");
  return mb_data_open(spec, split, cfg->dataset, tok, add_special, cache, 1, out);
}

static void opts_from(const mb_config *c, mb_eval_opts *o) {
  memset(o, 0, sizeof *o);
  o->samples = c->eval_samples;
  snprintf(o->selection, sizeof o->selection, "%s", c->eval_selection);
  o->batch_size = c->eval_batch_size;
  o->max_length = c->eval_max_length ? c->eval_max_length : c->max_length;
  o->packed = strcmp(c->eval_batching, "packed") == 0;
  o->token_budget = c->token_budget;
  o->max_seqs = c->max_seqs;
  o->warmup = c->eval_warmup;
  o->repeats = c->eval_repeats;
}

/* ---- outputs -------------------------------------------------------------- */

static int write_text(const char *dir, const char *name, const char *text, size_t n) {
  char p[1400];
  MB_TRY(mb_path_join(p, sizeof p, dir, name));
  MB_TRY(mb_write_file_atomic(p, text, n));
  printf("wrote %s\n", p);
  return MB_OK;
}

typedef struct {
  char model[128];
  char describe[512]; /* the model's architecture line, as eval.json has it */
  int64_t max_length;
  int ok;
  char status[256];
  mb_eval_result r;
} sweep_point;

static int write_sweep(const char *out, const sweep_point *pts, int npts, model_spec *models, int nmodels,
                       const int64_t *lengths, int nlen) {
  MB_TRY(mb_mkdir_p(out));
  /* JSON */
  json_t *arr = json_array();
  for (int i = 0; i < npts; i++) {
    json_t *o;
    if (pts[i].ok) {
      char *s = mb_eval_result_json(&pts[i].r, pts[i].model, pts[i].describe);
      json_error_t err;
      o = s ? json_loads(s, 0, &err) : json_object();
      free(s);
    } else {
      o = json_pack("{s:s, s:I}", "model", pts[i].model, "max_length", (json_int_t)pts[i].max_length);
    }
    json_object_set_new(o, "status", json_string(pts[i].ok ? "ok" : pts[i].status));
    json_array_append_new(arr, o);
  }
  char where[400];
  compute_where(models, nmodels, where, sizeof where);
  json_t *root = json_pack("{s:s, s:s, s:i, s:o}", "study", "sequence-length sweep", "device", where, "threads",
                           omp_get_max_threads(), "points", arr);
  char *js = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8));
  json_decref(root);
  int rc = js ? write_text(out, "sweep.json", js, strlen(js)) : MB_ERR(MB_ENOMEM, "out of memory");
  free(js);
  MB_TRY(rc);
  /* markdown: one row per length, per model samples/s, tokens/s and peak MB */
  char *md = NULL;
  size_t mdlen = 0;
  FILE *f = open_memstream(&md, &mdlen);
  if (!f)
    return MB_ERR(MB_ENOMEM, "out of memory");
  fprintf(f, "| max_length |");
  for (int m = 0; m < nmodels; m++) {
    char cell[300];
    const char *name = mb_md_cell(models[m].cfg->run_name, cell, sizeof cell);
    fprintf(f, " %s samples/s | %s padded tokens/s | %s peak MB | %s x time vs previous |", name, name, name, name);
  }
  fprintf(f, "\n|---:|");
  for (int m = 0; m < nmodels; m++)
    fprintf(f, "---:|---:|---:|---:|");
  fprintf(f, "\n");
  for (int li = 0; li < nlen; li++) {
    fprintf(f, "| %lld |", (long long)lengths[li]);
    for (int m = 0; m < nmodels; m++) {
      const sweep_point *p = NULL, *prev = NULL;
      for (int i = 0; i < npts; i++) {
        if (strcmp(pts[i].model, models[m].cfg->run_name) != 0)
          continue;
        if (pts[i].max_length == lengths[li])
          p = &pts[i];
        if (li > 0 && pts[i].max_length == lengths[li - 1])
          prev = &pts[i];
      }
      if (!p || !p->ok) {
        fprintf(f, " %s | | | |", p ? p->status : "-");
        continue;
      }
      char growth[32] = "";
      if (prev && prev->ok && prev->r.seconds_median > 0)
        snprintf(growth, sizeof growth, "%.2f", p->r.seconds_median / prev->r.seconds_median);
      fprintf(f, " %.2f | %.0f | %.1f | %s |", p->r.samples_per_s, p->r.padded_tokens_per_s, p->r.peak_mb, growth);
    }
    fprintf(f, "\n");
  }
  fclose(f);
  rc = write_text(out, "sweep.md", md, mdlen);
  fputs(md, stdout);
  free(md);
  MB_TRY(rc);
  /* SVG: throughput and peak memory against length */
  mb_plot_series thr[MAX_MODELS], mem[MAX_MODELS];
  memset(thr, 0, sizeof thr);
  memset(mem, 0, sizeof mem);
  for (int m = 0; m < nmodels; m++) {
    thr[m].name = mem[m].name = models[m].cfg->run_name;
    for (int i = 0; i < npts; i++) {
      if (!pts[i].ok || strcmp(pts[i].model, models[m].cfg->run_name) != 0 || thr[m].n >= MB_PLOT_MAX_POINTS)
        continue;
      thr[m].x[thr[m].n] = mem[m].x[mem[m].n] = (double)pts[i].max_length;
      thr[m].y[thr[m].n++] = pts[i].r.samples_per_s;
      mem[m].y[mem[m].n++] = pts[i].r.peak_mb;
    }
  }
  mb_plot_panel panels[2] = {
      {"Throughput", "max_length (tokens, log2)", "samples/s (log10)", 1, nmodels, thr},
      {"Peak memory", "max_length (tokens, log2)", "MB (weights + activations, log10)", 1, nmodels, mem},
  };
  char *svg = NULL;
  size_t svglen = 0;
  f = open_memstream(&svg, &svglen);
  if (!f)
    return MB_ERR(MB_ENOMEM, "out of memory");
  char title[600];
  snprintf(title, sizeof title, "Evaluation vs sequence length (%s, batch %lld)", where,
           (long long)(npts ? pts[0].r.batch_size : 0));
  mb_plot_svg(f, title, panels, 2);
  fclose(f);
  rc = write_text(out, "sweep.svg", svg, svglen);
  free(svg);
  return rc;
}

/* ---- the command ------------------------------------------------------------- */

static int parse_lengths(const char *s, int64_t *out, int cap, int *n) {
  const char *v = strncmp(s, "max_length=", 11) == 0 ? s + 11 : s;
  *n = 0;
  while (*v) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || x <= 0 || errno || (*end && *end != ','))
      return -1;
    if (*n >= cap)
      return -1;
    out[(*n)++] = x;
    v = *end ? end + 1 : end;
  }
  return *n > 0 ? 0 : -1;
}

/* Shortest first, each once: a model is dropped for good at the first
 * length too long for it or over the time budget, and the table's "x time
 * vs previous" compares with the next shorter length. */
static void sort_lengths(int64_t *v, int *n) {
  for (int i = 1; i < *n; i++)
    for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
      const int64_t x = v[j];
      v[j] = v[j - 1];
      v[j - 1] = x;
    }
  int k = 0;
  for (int i = 0; i < *n; i++)
    if (k == 0 || v[i] != v[k - 1])
      v[k++] = v[i];
  *n = k;
}

static int run_eval(int argc, char **argv) {
  /* one process: ranks would each evaluate everything and time it against
   * each other on the same cores (and write the same files) */
  int one = mb_cli_one_process(&mb_cmd_eval, "its timings would compete with each other");
  if (one)
    return one;
  const char *configs[MAX_MODELS];
  int nconfigs = 0;
  const char **sets = calloc((size_t)argc, sizeof *sets);
  int nsets = 0;
  const char *model_override = NULL, *out = NULL, *sweep_arg = NULL;
  double max_seconds = 600;
  int profile = 0;
  if (!sets)
    return MB_EXIT_FAIL;
  int urc = 0;
  for (int i = 1; i < argc && !urc; i++) {
    const char *s = argv[i];
    if (strcmp(s, "--set") == 0 || strcmp(s, "-s") == 0) {
      if (i + 1 >= argc)
        urc = mb_cli_usage_error(&mb_cmd_eval, "%s needs KEY=VALUE", s);
      else
        sets[nsets++] = argv[++i];
    } else if (strncmp(s, "--set=", 6) == 0) { /* as train takes it */
      sets[nsets++] = s + 6;
    } else if (strcmp(s, "--model") == 0 || strcmp(s, "--out") == 0 || strcmp(s, "--sweep") == 0 ||
               strcmp(s, "--max-seconds") == 0) {
      if (i + 1 >= argc) {
        urc = mb_cli_usage_error(&mb_cmd_eval, "%s needs a value", s);
        break;
      }
      const char *v = argv[++i];
      if (s[2] == 'm' && s[3] == 'o')
        model_override = v;
      else if (s[2] == 'o')
        out = v;
      else if (s[2] == 's')
        sweep_arg = v;
      else {
        char *end;
        max_seconds = strtod(v, &end);
        if (*end || !(max_seconds > 0))
          urc = mb_cli_usage_error(&mb_cmd_eval, "--max-seconds '%s': expected a positive number", v);
      }
    } else if (strcmp(s, "--profile") == 0) {
      profile = 1;
    } else if (s[0] == '-' && s[1]) {
      urc = mb_cli_usage_error(&mb_cmd_eval, "unknown option '%s'", s);
    } else if (nconfigs >= MAX_MODELS) {
      urc = mb_cli_usage_error(&mb_cmd_eval, "at most %d configs", MAX_MODELS);
    } else {
      configs[nconfigs++] = s;
    }
  }
  /* a run directory stands for its saved config */
  static char run_configs[MAX_MODELS][MB_CFG_PATH + 16];
  for (int i = 0; !urc && i < nconfigs; i++) {
    if (!mb_is_dir(configs[i]))
      continue;
    snprintf(run_configs[i], sizeof run_configs[i], "%s/config.yaml", configs[i]);
    if (!mb_file_exists(run_configs[i]))
      urc = mb_cli_usage_error(&mb_cmd_eval, "%s is a directory without a config.yaml (a run directory has one); "
                                             "give a config file",
                               configs[i]);
    configs[i] = run_configs[i];
  }
  if (!urc && nconfigs == 0 && !model_override)
    urc = mb_cli_usage_error(&mb_cmd_eval, "give a config (or --model DIR with --set data.test=...)");
  if (!urc && model_override && nconfigs > 1)
    urc = mb_cli_usage_error(&mb_cmd_eval, "--model goes with at most one config");
  if (urc) {
    free(sets);
    return urc;
  }

  /* expand sweep files (a top-level sweep: section listing configs) */
  model_spec models[MAX_MODELS];
  memset(models, 0, sizeof models);
  int nmodels = 0;
  int64_t lengths[MB_CFG_MAX_LIST];
  int nlen = 0;
  int64_t sweep_samples = 0;
  char sweep_out[MB_CFG_PATH] = "";
  int rc = MB_OK;
  const char *expanded[MAX_MODELS];
  int nexp = 0;
  for (int i = 0; i < nconfigs && rc == MB_OK; i++) {
    mb_config_doc *d; /* with the overrides: --set sweep.max_length=... must reach the sweep */
    rc = mb_config_load(&configs[i], 1, sets, nsets, NULL, &d);
    if (rc != MB_OK)
      break;
    mb_config *c = mb_config_doc_config(d);
    if (c->n_sweep_configs > 0) {
      for (int k = 0; k < c->n_sweep_configs && nexp < MAX_MODELS; k++) {
        char *copy = strdup(c->sweep_configs[k]);
        expanded[nexp++] = copy;
      }
      if (c->n_sweep_lengths) {
        nlen = c->n_sweep_lengths;
        memcpy(lengths, c->sweep_lengths, sizeof(int64_t) * (size_t)nlen);
      }
      sweep_samples = c->sweep_samples;
      snprintf(sweep_out, sizeof sweep_out, "%s", c->sweep_out);
    } else if (nexp < MAX_MODELS) {
      expanded[nexp++] = strdup(configs[i]);
    }
    mb_config_doc_free(d);
  }
  if (rc == MB_OK && nexp == 0 && model_override) {
    /* --model alone: a run's or a checkpoint's saved config (the data, the
     * length it was trained at), else the defaults; and the overrides */
    char saved[MB_CFG_PATH + 16];
    snprintf(saved, sizeof saved, "%s/config.yaml", model_override);
    const char *base = saved;
    const int has_saved = mb_file_exists(saved);
    rc = mb_config_load(has_saved ? &base : NULL, has_saved ? 1 : 0, sets, nsets, NULL, &models[0].doc);
    if (rc == MB_OK) {
      models[0].cfg = mb_config_doc_config(models[0].doc);
      if (has_saved) {
        MB_INFO("--model %s: its saved config.yaml gives the data, tokenizer and lengths", model_override);
      } else {
        snprintf(models[0].cfg->run_name, sizeof models[0].cfg->run_name, "model");
        models[0].cfg->model_arch[0] = 0; /* the weights' directory says */
      }
      nmodels = 1;
    }
  }
  for (int i = 0; rc == MB_OK && i < nexp; i++) {
    rc = mb_config_load(&expanded[i], 1, sets, nsets, NULL, &models[nmodels].doc);
    if (rc == MB_OK) {
      models[nmodels].cfg = mb_config_doc_config(models[nmodels].doc);
      nmodels++;
    }
  }
  for (int i = 0; i < nexp; i++)
    free((void *)expanded[i]);
  if (rc == MB_OK && sweep_arg && parse_lengths(sweep_arg, lengths, MB_CFG_MAX_LIST, &nlen) != 0) {
    free(sets);
    for (int m = 0; m < nmodels; m++)
      mb_config_doc_free(models[m].doc);
    return mb_cli_usage_error(&mb_cmd_eval, "--sweep '%s': expected max_length=256,512,1024,...", sweep_arg);
  }
  const int sweeping = nlen > 0;
  if (sweeping) {
    int64_t given[MB_CFG_MAX_LIST];
    const int ngiven = nlen;
    memcpy(given, lengths, sizeof(int64_t) * (size_t)nlen);
    sort_lengths(lengths, &nlen);
    if (nlen != ngiven || memcmp(given, lengths, sizeof(int64_t) * (size_t)nlen) != 0)
      MB_INFO("sweep: max_length taken shortest first, each once (%d lengths from %lld to %lld)", nlen,
              (long long)lengths[0], (long long)lengths[nlen - 1]);
  }
  if (!out && sweeping)
    out = sweep_out[0] ? sweep_out : "sweep-out";
  if (rc == MB_OK && out) /* before the evaluation, not after it */
    rc = mb_dir_writable(out, "--out");
  for (int m = 0; rc == MB_OK && m < nmodels; m++) {
    if (models[m].cfg->threads > 0)
      mb_cpu_set_threads((int)models[m].cfg->threads);
    if (!(model_override && !models[m].cfg->model_arch[0]))
      rc = mb_config_check(models[m].doc, "eval");
  }

  sweep_point *pts = calloc((size_t)(nmodels * (nlen ? nlen : 1)), sizeof *pts);
  int npts = 0;
  mb_eval_result results[MAX_MODELS];
  char describes[MAX_MODELS][512];
  if (!pts && rc == MB_OK)
    rc = MB_ERR(MB_ENOMEM, "out of memory");
  for (int m = 0; rc == MB_OK && m < nmodels; m++) {
    mb_config *c = models[m].cfg;
    mb_tokenizer *tok = NULL;
    mb_net *net = NULL;
    mb_shardset *all = NULL, *sel = NULL;
    char desc[160];
    /* train.device and train.precision: the GPU when asked for (or auto and
     * one is there), its allocator's peak as the peak memory */
    mb_cli_device dev;
    rc = mb_cli_device_open(c, 1, profile, "mambert eval", &dev);
    mb_backend *be = dev.be;
    if (rc == MB_OK)
      rc = mb_eval_open_model(c, model_override, NULL, be, &tok, &net, models[m].source, sizeof models[m].source);
    if (rc == MB_OK)
      rc = mb_cli_device_apply(&dev, net, 0);
    if (rc == MB_OK && strcmp(c->eval_attention, "fp8") == 0)
      rc = mb_cli_device_fp8_attention(&dev, net, "eval.attention");
    snprintf(models[m].device, sizeof models[m].device, "%s", dev.desc);
    if (rc == MB_OK)
      rc = open_test_set(c, tok, net->wants_special, &all);
    if (rc == MB_OK) {
      int64_t n = sweeping && sweep_samples ? sweep_samples : c->eval_samples;
      rc = mb_eval_select(all, n, c->eval_selection, &sel, desc, sizeof desc);
    }
    mb_shardset_free(all); /* only the selection stays in memory */
    all = NULL;
    if (rc == MB_OK) {
      net->ops->describe(net, describes[m], sizeof describes[m]);
      MB_INFO("%s: %s; weights from %s; %s; on %s", c->run_name, describes[m], models[m].source, desc, dev.desc);
    }
    mb_eval_opts o;
    opts_from(c, &o);
    o.profile = profile;
    o.device_mem = dev.mem;
    if (rc == MB_OK && !sweeping) {
      rc = mb_eval_run(net, be, sel, &o, &results[m]);
      if (rc == MB_OK) {
        snprintf(results[m].selection, sizeof results[m].selection, "%s", desc);
        snprintf(results[m].attention, sizeof results[m].attention, "%s", c->eval_attention);
      }
    }
    for (int li = 0; rc == MB_OK && sweeping && li < nlen; li++) {
      sweep_point *p = &pts[npts++];
      snprintf(p->model, sizeof p->model, "%s", c->run_name);
      _Static_assert(sizeof p->describe == sizeof describes[0], "a describe line fits");
      memcpy(p->describe, describes[m], sizeof p->describe);
      p->max_length = lengths[li];
      o.max_length = lengths[li];
      if (net->max_position > 0 && lengths[li] > net->max_position) {
        snprintf(p->status, sizeof p->status, "beyond %lld positions", (long long)net->max_position);
        continue;
      }
      if (li > 0 && !pts[npts - 2].ok) { /* a shorter length already failed or ran too long */
        snprintf(p->status, sizeof p->status, "skipped");
        continue;
      }
      int prc = mb_eval_run(net, be, sel, &o, &p->r);
      if (prc == MB_OK) {
        p->ok = 1;
        snprintf(p->r.selection, sizeof p->r.selection, "%s", desc);
        snprintf(p->r.attention, sizeof p->r.attention, "%s", c->eval_attention);
        MB_INFO("%s max_length %lld: %.2f samples/s, %.0f padded tokens/s, peak %.1f MB, %.2f s", c->run_name,
                (long long)lengths[li], p->r.samples_per_s, p->r.padded_tokens_per_s, p->r.peak_mb,
                p->r.seconds_median);
        if (p->r.seconds_median > max_seconds) {
          MB_INFO("%s: %.3g s per pass at %lld is over --max-seconds %g; longer lengths skipped", c->run_name,
                  p->r.seconds_median, (long long)lengths[li], max_seconds);
          if (li + 1 < nlen) {
            sweep_point *q = &pts[npts++];
            snprintf(q->model, sizeof q->model, "%s", c->run_name);
            q->max_length = lengths[li + 1];
            snprintf(q->status, sizeof q->status, "over time budget");
            li++;
          }
        }
      } else if (prc == MB_ENOMEM) {
        snprintf(p->status, sizeof p->status, "out of memory");
        MB_WARN("%s max_length %lld: %s", c->run_name, (long long)lengths[li], mb_error_message());
        mb_error_clear();
      } else {
        rc = prc;
      }
    }
    mb_shardset_free(sel);
    mb_shardset_free(all);
    mb_net_free(net);
    mb_tokenizer_free(tok);
    mb_cli_device_close(&dev); /* after the net: it owns the GPU memory */
    if (rc != MB_OK)
      rc = mb_error_context(rc, "evaluating %s", c->run_name);
  }
  if (rc == MB_OK && !sweeping) {
    /* the comparison table, then JSON */
    char *md = NULL;
    size_t mdlen = 0;
    FILE *f = open_memstream(&md, &mdlen);
    for (int m = 0; m < nmodels; m++)
      fprintf(f, "- %s: %s; weights: %s; %s\n", models[m].cfg->run_name, describes[m], models[m].source,
              results[m].selection);
    char where[400];
    compute_where(models, nmodels, where, sizeof where);
    fprintf(f, "- %s; tokens/s: real = tokens after truncation, padded = positions computed; peak MB: %s\n\n", where,
            results[0].peak_on_gpu ? "the GPU allocator's peak" : "host memory, less the data");
    mb_eval_table_header(f);
    for (int m = 0; m < nmodels; m++)
      mb_eval_table_row(f, models[m].cfg->run_name, &results[m]);
    fclose(f);
    fputs(md, stdout);
    json_t *arr = json_array();
    for (int m = 0; m < nmodels; m++) {
      char *s = mb_eval_result_json(&results[m], models[m].cfg->run_name, describes[m]);
      json_error_t err;
      json_t *o = s ? json_loads(s, 0, &err) : NULL;
      free(s);
      if (o) {
        json_object_set_new(o, "weights", json_string(models[m].source));
        json_array_append_new(arr, o);
      }
    }
    char *js = json_dumps(arr, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8));
    json_decref(arr);
    if (out) {
      rc = mb_mkdir_p(out);
      if (rc == MB_OK)
        rc = write_text(out, "eval.md", md, mdlen);
      if (rc == MB_OK && js)
        rc = write_text(out, "eval.json", js, strlen(js));
    }
    free(js);
    free(md);
  }
  if (rc == MB_OK && sweeping)
    rc = write_sweep(out, pts, npts, models, nmodels, lengths, nlen);
  free(pts);
  for (int m = 0; m < nmodels; m++)
    mb_config_doc_free(models[m].doc);
  free(sets);
  return rc == MB_OK ? MB_EXIT_OK : mb_cli_fail("eval", NULL);
}

const mb_command mb_cmd_eval = {
    "eval",
    "evaluate models with the study's protocol; --sweep over max_length",
    "Usage: mambert eval CONFIG.yaml|RUN_DIR [CONFIG2.yaml ...] [--set KEY=VALUE]... [--model DIR] [--out DIR]\n"
    "       mambert eval CONFIG.yaml ... --sweep max_length=256,512,1024,... [--out DIR] [--max-seconds S]\n"
    "       mambert eval experiments/sweep.yaml\n"
    "\n"
    "Evaluates each config's model on its test set with the protocol of the BERT-vs-Mamba\n"
    "study: the first eval.samples examples in file order (eval.selection: first, as the\n"
    "reference; balanced or strided otherwise; IMDB's test file is ordered by label, so the\n"
    "first N are all negative), every batch of eval.batch_size rows padded to max_length,\n"
    "eval.warmup untimed passes, then eval.repeats timed passes; the median is reported.\n"
    "Prints a markdown table: accuracy, seconds, samples/s, tokens/s (real tokens and\n"
    "padded positions), peak memory in MB (host peak over the timed passes, excluding the\n"
    "evaluation data: weights + activations + batches; on a GPU the peak of its allocator),\n"
    "weights and planned arena. It computes where train.device and train.precision say:\n"
    "auto takes the GPU when this build has CUDA and one is visible.\n"
    "\n"
    "Weights come from (first found): --model DIR (a Hugging Face style directory, a\n"
    "checkpoint directory, or a run directory), the run's export <run.dir>/model, its\n"
    "newest checkpoint, model.checkpoint; otherwise random weights (a warning says so).\n"
    "\n"
    "Options:\n"
    "  --set KEY=VALUE     override a key in every config and sweep file (eval.samples=25000,\n"
    "                      sweep.max_length=[256,512], ...; in a sweep, sweep.samples, when\n"
    "                      set, is the count and eval.samples is not used)\n"
    "  --model DIR         weights to evaluate, with one config or none: a run directory or\n"
    "                      checkpoint then brings its saved config.yaml; others need\n"
    "                      --set data.test=... (a run directory as CONFIG: its config.yaml)\n"
    "  --out DIR           also write eval.md and eval.json (sweep: sweep.md/json/svg)\n"
    "  --sweep max_length=L1,L2,...  the sequence-length study: each model at each length;\n"
    "                      table, JSON and an SVG plot of throughput and peak memory\n"
    "  --max-seconds S     sweep: stop lengthening a model once a pass takes over S s (600)\n"
    "  --profile           time every op of the timed passes; a table per program (stderr)\n"
    "\n"
    "A sweep file (experiments/sweep.yaml) lists configs and lengths under sweep:.\n",
    run_eval,
};
