/* test_export.c: export -> reload gives identical tensors, configuration
 * and logits; an export replaces an existing one whole, leaving no
 * temporaries; random initialisation is deterministic per seed and follows
 * the references' recipes (statistics checked on a model of realistic
 * width). Usage: models_export bert|mamba */
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/fileio.h"
#include "tests/models/model_test_util.h"

static char g_tmp[256];

static int setup(void **state) {
  (void)state;
  snprintf(g_tmp, sizeof g_tmp, "/tmp/mb_models_export_XXXXXX");
  return mkdtemp(g_tmp) ? 0 : -1;
}

static int rm_tree(const char *p) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
  return system(cmd);
}

static int teardown(void **state) {
  (void)state;
  return rm_tree(g_tmp) == 0 ? 0 : -1;
}

static void assert_same_model(mb_model *a, mb_model *b) {
  const mb_model_config *ca = mb_model_config_of(a), *cb = mb_model_config_of(b);
  assert_int_equal(ca->arch, cb->arch);
  assert_int_equal(ca->num_labels, cb->num_labels);
  for (int i = 0; i < ca->num_labels; i++)
    assert_string_equal(ca->id2label[i], cb->id2label[i]);
  if (ca->arch == MB_ARCH_BERT)
    assert_memory_equal(&ca->bert, &cb->bert, sizeof ca->bert);
  else {
    assert_int_equal(ca->mamba.d_model, cb->mamba.d_model);
    assert_int_equal(ca->mamba.n_layer, cb->mamba.n_layer);
    assert_int_equal(ca->mamba.vocab_size, cb->mamba.vocab_size);
    assert_int_equal(ca->mamba.d_inner, cb->mamba.d_inner);
    assert_int_equal(ca->mamba.dt_rank, cb->mamba.dt_rank);
    assert_int_equal(ca->mamba.d_state, cb->mamba.d_state);
    assert_int_equal(ca->mamba.d_conv, cb->mamba.d_conv);
    assert_int_equal(ca->mamba.proj_bias, cb->mamba.proj_bias);
    assert_int_equal(ca->mamba.conv_bias, cb->mamba.conv_bias);
    assert_int_equal(ca->mamba.pooling, cb->mamba.pooling);
    assert_true(ca->mamba.norm_eps == cb->mamba.norm_eps);
  }
  mb_params *pa = mb_model_params(a), *pb = mb_model_params(b);
  assert_int_equal(mb_params_count(pa), mb_params_count(pb));
  for (int i = 0; i < mb_params_count(pa); i++) {
    const mb_param_info *ia = mb_params_info(pa, i), *ib = mb_params_info(pb, i);
    assert_string_equal(ia->name, ib->name);
    assert_true(mb_shape_equal(&ia->shape, &ib->shape));
    assert_memory_equal((float *)mb_params_data(pa) + ia->offset, (float *)mb_params_data(pb) + ib->offset,
                        sizeof(float) * (size_t)ia->numel);
  }
}

static void assert_no_leftovers(const char *parent, const char *base) {
  DIR *d = opendir(parent);
  assert_non_null(d);
  struct dirent *e;
  size_t n = strlen(base);
  while ((e = readdir(d)))
    if (!strncmp(e->d_name, base, n) && e->d_name[n] == '.')
      fail_msg("leftover %s/%s after export", parent, e->d_name);
  closedir(d);
}

static void roundtrip(const char *fixture, const char *const *files) {
  char src[256], out[512], p[700];
  snprintf(src, sizeof src, "tests/fixtures/models/%s", fixture);
  snprintf(out, sizeof out, "%s/%s", g_tmp, fixture);
  mb_model *a, *b;
  ASSERT_OK(mb_model_load(src, NULL, mb_cpu_backend(), &a));
  ASSERT_OK(mb_model_export(a, out));
  for (int i = 0; files[i]; i++) {
    snprintf(p, sizeof p, "%s/%s", out, files[i]);
    if (!mb_file_exists(p))
      fail_msg("export of %s lacks %s", fixture, files[i]);
  }
  ASSERT_OK(mb_model_load(out, NULL, mb_cpu_backend(), &b));
  assert_same_model(a, b);
  if (mb_model_tokenizer_path(a)[0])
    assert_true(mb_model_tokenizer_path(b)[0] != 0);
  /* the same logits, bit for bit */
  snprintf(p, sizeof p, "%s/reference.safetensors", src);
  mb_safetensors *st;
  ASSERT_OK(mb_safetensors_open(p, &st));
  mb_tensor ids, mask, labels;
  ASSERT_OK(mb_safetensors_get(st, "input_ids", &ids));
  ASSERT_OK(mb_safetensors_get(st, "attention_mask", &mask));
  ASSERT_OK(mb_safetensors_get(st, "labels", &labels));
  tm_batch tb;
  int B = (int)ids.shape.dim[0], C = mb_model_config_of(a)->num_labels;
  tm_padded(&tb, ids.data, mask.data, labels.data, B, (int)ids.shape.dim[1]);
  float *la = malloc(sizeof(float) * B * C), *lb = malloc(sizeof(float) * B * C);
  mb_graph *g;
  mb_exec *ex;
  tm_run(a, &tb.b, 0, 0, &g, &ex);
  ASSERT_OK(mb_model_read_logits(ex, la));
  mb_exec_free(ex);
  mb_graph_free(g);
  tm_run(b, &tb.b, 0, 0, &g, &ex);
  ASSERT_OK(mb_model_read_logits(ex, lb));
  mb_exec_free(ex);
  mb_graph_free(g);
  assert_memory_equal(la, lb, sizeof(float) * B * C);

  /* export over the existing directory: replaced whole, no temporaries */
  float *w0 = mb_params_data(mb_model_params(b));
  w0[0] += 1.0f;
  ASSERT_OK(mb_model_export(b, out));
  mb_model *c;
  ASSERT_OK(mb_model_load(out, NULL, mb_cpu_backend(), &c));
  assert_same_model(b, c);
  assert_no_leftovers(g_tmp, fixture);

  /* a directory holding anything an export does not write is never replaced */
  char notes[1024];
  snprintf(notes, sizeof notes, "%s/notes.txt", out);
  FILE *f = fopen(notes, "w");
  assert_non_null(f);
  fputs("mine\n", f);
  fclose(f);
  assert_int_equal(mb_model_export(b, out), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "notes.txt"));
  mb_error_clear();
  assert_true(mb_file_exists(notes));
  char model_file[1024];
  snprintf(model_file, sizeof model_file, "%s/model.safetensors", out);
  assert_true(mb_file_exists(model_file));
  assert_int_equal(remove(notes), 0);
  printf("%s: export -> reload identical (%d tensors), logits identical, re-export replaces\n", fixture,
         mb_params_count(mb_model_params(a)));
  free(la);
  free(lb);
  tm_batch_free(&tb);
  mb_tensor_free(&ids);
  mb_tensor_free(&mask);
  mb_tensor_free(&labels);
  mb_safetensors_close(st);
  mb_model_free(a);
  mb_model_free(b);
  mb_model_free(c);
}

/* mean and standard deviation of a parameter */
static void stats(mb_model *m, const char *name, double *mean, double *sd, double *mn, double *mx) {
  mb_params *p = mb_model_params(m);
  int i = mb_params_find(p, name);
  if (i < 0)
    fail_msg("no parameter %s", name);
  const mb_param_info *info = mb_params_info(p, i);
  const float *w = (const float *)mb_params_data(p) + info->offset;
  double s = 0, s2 = 0;
  *mn = INFINITY;
  *mx = -INFINITY;
  for (int64_t k = 0; k < info->numel; k++) {
    s += w[k];
    s2 += (double)w[k] * w[k];
    *mn = fmin(*mn, w[k]);
    *mx = fmax(*mx, w[k]);
  }
  *mean = s / (double)info->numel;
  *sd = sqrt(fmax(s2 / (double)info->numel - *mean * *mean, 0));
}

static void random_init_roundtrip(mb_model_config *cfg, const char *tok, const char *name) {
  mb_model *a, *b, *c;
  ASSERT_OK(mb_model_new(cfg, tok, mb_cpu_backend(), &a));
  ASSERT_OK(mb_model_init_random(a, 1234));
  ASSERT_OK(mb_model_new(cfg, tok, mb_cpu_backend(), &c));
  ASSERT_OK(mb_model_init_random(c, 1234));
  assert_same_model(a, c); /* deterministic */
  ASSERT_OK(mb_model_init_random(c, 1235));
  assert_true(memcmp(mb_params_data(mb_model_params(a)), mb_params_data(mb_model_params(c)),
                     sizeof(float) * (size_t)mb_params_total(mb_model_params(a))) != 0);
  /* a fresh head equals the head of a full initialisation with that seed */
  const char *head = cfg->arch == MB_ARCH_BERT ? "classifier." : "classification_head.";
  ASSERT_OK(mb_model_init_random_prefix(c, 1234, head));
  mb_params *pa = mb_model_params(a), *pc = mb_model_params(c);
  for (int i = 0; i < mb_params_count(pa); i++) {
    const mb_param_info *ia = mb_params_info(pa, i);
    int same = !memcmp((float *)mb_params_data(pa) + ia->offset, (float *)mb_params_data(pc) + ia->offset,
                       sizeof(float) * (size_t)ia->numel);
    if (!strncmp(ia->name, head, strlen(head)))
      assert_true(same);
  }
  char out[512];
  snprintf(out, sizeof out, "%s/%s", g_tmp, name);
  ASSERT_OK(mb_model_export(a, out));
  ASSERT_OK(mb_model_load(out, NULL, mb_cpu_backend(), &b));
  assert_same_model(a, b);
  mb_model_free(b);
  mb_model_free(c);

  double mean, sd, mn, mx;
  if (cfg->arch == MB_ARCH_BERT) {
    stats(a, "bert.encoder.layer.1.intermediate.dense.weight", &mean, &sd, &mn, &mx);
    printf("bert init: intermediate.dense.weight mean %.4f sd %.4f (normal(0, 0.02))\n", mean, sd);
    assert_true(fabs(mean) < 1e-3 && fabs(sd - 0.02) < 1e-3);
    stats(a, "bert.embeddings.word_embeddings.weight", &mean, &sd, &mn, &mx);
    assert_true(fabs(sd - 0.02) < 1e-3);
    mb_params *p = mb_model_params(a);
    const mb_param_info *we = mb_params_info(p, mb_params_find(p, "bert.embeddings.word_embeddings.weight"));
    const float *row0 = (const float *)mb_params_data(p) + we->offset; /* pad_token_id 0 */
    for (int k = 0; k < we->shape.dim[1]; k++)
      assert_true(row0[k] == 0.0f);
    stats(a, "bert.encoder.layer.0.output.LayerNorm.weight", &mean, &sd, &mn, &mx);
    assert_true(mn == 1.0 && mx == 1.0);
    stats(a, "bert.encoder.layer.0.attention.self.query.bias", &mean, &sd, &mn, &mx);
    assert_true(mn == 0.0 && mx == 0.0);
  } else {
    const mb_mamba_config *mc = &cfg->mamba;
    stats(a, "backbone.embedding.weight", &mean, &sd, &mn, &mx);
    printf("mamba init: embedding sd %.4f (0.02)", sd);
    assert_true(fabs(sd - 0.02) < 1e-3);
    stats(a, "backbone.layers.0.mixer.in_proj.weight", &mean, &sd, &mn, &mx);
    double bound = 1 / sqrt((double)mc->d_model);
    printf(", in_proj in [%.4f, %.4f] (+-%.4f)", mn, mx, bound);
    assert_true(mn >= -bound && mx <= bound && mx > 0.98 * bound);
    stats(a, "backbone.layers.0.mixer.out_proj.weight", &mean, &sd, &mn, &mx);
    bound = 1 / sqrt((double)mc->d_inner) / sqrt((double)mc->n_layer);
    printf(", out_proj max %.5f (%.5f)", mx, bound);
    assert_true(mn >= -bound && mx <= bound && mx > 0.98 * bound);
    stats(a, "backbone.layers.1.mixer.dt_proj.weight", &mean, &sd, &mn, &mx);
    bound = pow((double)mc->dt_rank, -0.5) * mc->dt_scale;
    assert_true(mn >= -bound && mx <= bound && mx > 0.95 * bound);
    /* softplus(dt bias) is dt, log-uniform in [dt_min, dt_max] */
    mb_params *p = mb_model_params(a);
    const mb_param_info *bi = mb_params_info(p, mb_params_find(p, "backbone.layers.1.mixer.dt_proj.bias"));
    const float *bv = (const float *)mb_params_data(p) + bi->offset;
    double lo = 1e9, hi = 0, lmean = 0;
    for (int64_t k = 0; k < bi->numel; k++) {
      double dt = log1p(exp((double)bv[k]));
      lo = fmin(lo, dt);
      hi = fmax(hi, dt);
      lmean += log(dt) / (double)bi->numel;
    }
    printf(", softplus(dt_proj.bias) in [%.5f, %.5f], mean log %.3f (%.3f)\n", lo, hi, lmean,
           0.5 * (log(mc->dt_min) + log(mc->dt_max)));
    assert_true(lo >= mc->dt_min * 0.999 && hi <= mc->dt_max * 1.001);
    assert_true(fabs(lmean - 0.5 * (log(mc->dt_min) + log(mc->dt_max))) < 0.15);
    const mb_param_info *al = mb_params_info(p, mb_params_find(p, "backbone.layers.0.mixer.A_log"));
    const float *av = (const float *)mb_params_data(p) + al->offset;
    for (int64_t k = 0; k < al->numel; k++)
      assert_true(av[k] == (float)log((double)(k % mc->d_state + 1)));
    stats(a, "backbone.layers.0.mixer.D", &mean, &sd, &mn, &mx);
    assert_true(mn == 1.0 && mx == 1.0);
  }
  mb_model_free(a);
}

static void test_bert(void **state) {
  (void)state;
  static const char *const files[] = {"config.json",           "model.safetensors",       "vocab.txt",
                                      "tokenizer_config.json", "special_tokens_map.json", NULL};
  roundtrip("bert_tiny", files);
  static const char *const files_odd[] = {"config.json", "model.safetensors", NULL};
  roundtrip("bert_odd", files_odd);
  mb_model_config cfg = mb_model_config_default(MB_ARCH_BERT);
  cfg.bert.hidden_size = 256;
  cfg.bert.num_layers = 2;
  cfg.bert.num_heads = 4;
  cfg.bert.intermediate_size = 512;
  cfg.bert.max_position = 128;
  random_init_roundtrip(&cfg, "data/vocab/bert-base-uncased-vocab.txt", "bert_random");

  /* position_init_sinusoidal: the position embeddings are the sinusoids at
   * RMS initializer_range (nothing else changes), and they export and reload
   * as ordinary weights */
  mb_model *n, *s, *back;
  ASSERT_OK(mb_model_new(&cfg, NULL, mb_cpu_backend(), &n));
  ASSERT_OK(mb_model_init_random(n, 99));
  cfg.bert.position_init_sinusoidal = 1;
  ASSERT_OK(mb_model_new(&cfg, NULL, mb_cpu_backend(), &s));
  ASSERT_OK(mb_model_init_random(s, 99));
  mb_params *pn = mb_model_params(n), *ps = mb_model_params(s);
  const int pos = mb_params_find(ps, "bert.embeddings.position_embeddings.weight");
  assert_true(pos >= 0);
  for (int i = 0; i < mb_params_count(ps); i++) {
    const mb_param_info *in = mb_params_info(pn, i);
    const int same = !memcmp((float *)mb_params_data(pn) + in->offset, (float *)mb_params_data(ps) + in->offset,
                             sizeof(float) * (size_t)in->numel);
    assert_int_equal(same, i != pos);
  }
  const mb_param_info *pi = mb_params_info(ps, pos);
  const float *pe = (const float *)mb_params_data(ps) + pi->offset;
  const int64_t P = pi->shape.dim[0], H = pi->shape.dim[1];
  double worst = 0, ss = 0;
  for (int64_t q = 0; q < P; q++)
    for (int64_t i = 0; i < H; i++) {
      const double ang = (double)q / pow(10000.0, (double)(2 * (i / 2)) / (double)H);
      const double want = 0.02 * sqrt(2.0) * (i % 2 ? cos(ang) : sin(ang));
      worst = fmax(worst, fabs(pe[q * H + i] - want));
      ss += (double)pe[q * H + i] * pe[q * H + i];
    }
  const double rms = sqrt(ss / (double)(P * H));
  printf("bert sinusoidal positions: max |pe - formula| %.2e, RMS %.4f (0.02)\n", worst, rms);
  assert_true(worst < 1e-8 && fabs(rms - 0.02) < 1e-3);
  assert_true(pe[0] == 0.0f && pe[1] == (float)(0.02 * sqrt(2.0))); /* position 0: sin 0, cos 0 */
  char out[512];
  snprintf(out, sizeof out, "%s/bert_sinusoidal", g_tmp);
  ASSERT_OK(mb_model_export(s, out));
  ASSERT_OK(mb_model_load(out, NULL, mb_cpu_backend(), &back));
  /* the weights, bit for bit (the switch is not a config.json field: the
   * reloaded config has it off, as any HF checkpoint) */
  assert_int_equal(mb_model_config_of(back)->bert.position_init_sinusoidal, 0);
  assert_int_equal(mb_params_total(mb_model_params(back)), mb_params_total(ps));
  assert_memory_equal(mb_params_data(mb_model_params(back)), mb_params_data(ps),
                      sizeof(float) * (size_t)mb_params_total(ps));
  mb_model_free(back);
  mb_model_free(s);
  mb_model_free(n);
}

static void test_mamba(void **state) {
  (void)state;
  static const char *const files[] = {"config.json",    "classifier.json",       "model.safetensors",
                                      "tokenizer.json", "tokenizer_config.json", NULL};
  roundtrip("mamba_tiny", files);
  static const char *const files_odd[] = {"config.json", "classifier.json", "model.safetensors", NULL};
  roundtrip("mamba_odd", files_odd);
  mb_model_config cfg = mb_model_config_default(MB_ARCH_MAMBA);
  cfg.mamba.d_model = 128;
  cfg.mamba.n_layer = 4;
  cfg.mamba.vocab_size_config = 1000;
  mb_mamba_config_derive(&cfg.mamba, 0);
  random_init_roundtrip(&cfg, NULL, "mamba_random");
}

int main(int argc, char **argv) {
  const char *which = argc > 1 ? argv[1] : "all";
  const struct CMUnitTest bert[] = {cmocka_unit_test(test_bert)};
  const struct CMUnitTest mamba[] = {cmocka_unit_test(test_mamba)};
  int rc = 0;
  if (!strcmp(which, "bert") || !strcmp(which, "all"))
    rc |= cmocka_run_group_tests_name("export_bert", bert, setup, teardown);
  if (!strcmp(which, "mamba") || !strcmp(which, "all"))
    rc |= cmocka_run_group_tests_name("export_mamba", mamba, setup, teardown);
  return rc;
}
