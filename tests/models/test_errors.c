/* test_errors.c: bad configurations and weights give clear errors, before
 * any compute: missing fields, impossible sizes, unsupported variants,
 * invalid JSON, weights of the other architecture (one message listing the
 * missing and unexpected names, folded by layer), wrong shapes, a
 * tokenizer larger than the embedding, a missing head (and the opt-in that
 * initialises one), only a pytorch_model.bin, sharded and f64 weights, a program
 * longer than BERT's positions, a batch that does not fit its program.
 * Usage: models_errors bert|mamba */
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/fileio.h"
#include "tests/models/model_test_util.h"

static char g_tmp[256];
static int g_n;

static int setup(void **state) {
  (void)state;
  snprintf(g_tmp, sizeof g_tmp, "/tmp/mb_models_errors_XXXXXX");
  return mkdtemp(g_tmp) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
  return system(cmd) == 0 ? 0 : -1;
}

static void write_str(const char *dir, const char *name, const char *text) {
  char p[600];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  ASSERT_OK(mb_write_file_atomic(p, text, strlen(text)));
}

/* A fresh directory with config.json = cfg and, when weights_from is set,
 * a link to that fixture's model.safetensors. */
static const char *mkdir_case(const char *cfg, const char *weights_from) {
  static char dir[512];
  snprintf(dir, sizeof dir, "%s/case%d", g_tmp, g_n++);
  ASSERT_OK(mb_mkdir_p(dir));
  if (cfg)
    write_str(dir, "config.json", cfg);
  if (weights_from) {
    char src[600], dst[600];
    char *cwd = getcwd(NULL, 0);
    snprintf(src, sizeof src, "%s/tests/fixtures/models/%s/model.safetensors", cwd, weights_from);
    free(cwd);
    snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
    assert_int_equal(symlink(src, dst), 0);
  }
  return dir;
}

static void expect_config_error(const char *text, const char *needle) {
  mb_model_config c;
  ASSERT_FAILS_WITH(mb_model_config_parse(text, "config.json", &c), needle);
}

/* not inlined: GCC 12 at -O3 then takes the returned text for a pointer to the local `text` (-Wdangling-pointer) */
__attribute__((noinline)) static char *fixture_config(const char *name) {
  char p[300], *text = NULL;
  size_t n;
  snprintf(p, sizeof p, "tests/fixtures/models/%s/config.json", name);
  const int rc = mb_read_file(p, 1 << 20, &text, &n);
  ASSERT_OK(rc);
  return text;
}

/* the fixture's config.json with one "key": value replaced */
static char *patched(const char *name, const char *key, const char *value) {
  char *t = fixture_config(name), pat[128];
  snprintf(pat, sizeof pat, "\"%s\": ", key);
  char *at = strstr(t, pat);
  if (!at)
    fail_msg("%s config has no %s", name, key);
  char *v = at + strlen(pat), *e = v;
  while (*e && *e != ',' && *e != '\n')
    e++;
  size_t n = strlen(t) + strlen(value) + 1;
  char *o = malloc(n);
  snprintf(o, n, "%.*s%s%s", (int)(v - t), t, value, e);
  free(t);
  return o;
}

static void test_bert(void **state) {
  (void)state;
  mb_model *m = NULL;
  mb_backend *be = mb_cpu_backend();
  expect_config_error("{\"model_type\": \"bert\", \"vocab_size\": 10}", "missing field 'hidden_size'");
  expect_config_error("{\"model_type\": \"bert\", \"vocab_size\": 10, \"hidden_size\": 48, \"num_hidden_layers\": 2,"
                      " \"num_attention_heads\": 5, \"intermediate_size\": 8}",
                      "hidden_size 48 is not divisible by num_attention_heads 5");
  expect_config_error("{\"model_type\": \"bert\", \"vocab_size\": 10, \"hidden_size\": 48, \"num_hidden_layers\": 0,"
                      " \"num_attention_heads\": 4, \"intermediate_size\": 8}",
                      "num_hidden_layers must be >= 1");
  expect_config_error("{\"model_type\": \"bert\", \"vocab_size\": \"big\"}", "field 'vocab_size' must be an integer");
  expect_config_error("{\"model_type\": \"bert\", \"vocab_size\": 10, \"hidden_size\": 8, \"num_hidden_layers\": 1,"
                      " \"num_attention_heads\": 2, \"intermediate_size\": 8, \"hidden_act\": \"relu\"}",
                      "hidden_act 'relu' is not supported");
  expect_config_error("{\"model_type\": \"gpt2\"}", "model_type 'gpt2' is not supported");
  expect_config_error("{\"model_type\": \"bert\",\n \"vocab_size\": 10,,}", "line 2");
  expect_config_error("[1, 2]", "expected a JSON object");
  /* label names are keys: each once, not empty */
  char *labels = fixture_config("bert_tiny"), *at = strstr(labels, "\"LABEL_1\"");
  assert_non_null(at);
  memcpy(at, "\"LABEL_0\"", 9);
  expect_config_error(labels, "id2label names 'LABEL_0' twice (ids 0 and 1)");
  at = strstr(labels, "\"LABEL_0\"");
  memcpy(at, "\"\"       ", 9); /* "" and spaces */
  expect_config_error(labels, "id2label[\"0\"]: expected a name of 1..63 bytes");
  free(labels);

  /* weights of the other architecture: every name listed, folded by layer */
  char *cfg = fixture_config("bert_tiny");
  const char *d = mkdir_case(cfg, "mamba_tiny");
  ASSERT_FAILS_WITH(mb_model_load(d, NULL, be, &m), "missing 41");
  assert_non_null(strstr(mb_error_message(), "bert.encoder.layer.{0..1}.attention.self.query.weight"));
  assert_non_null(strstr(mb_error_message(), "unexpected 24"));
  assert_non_null(strstr(mb_error_message(), "backbone.layers.{0..1}.mixer.A_log"));
  free(cfg);

  /* a config that disagrees with the weights' shapes */
  cfg = patched("bert_tiny", "intermediate_size", "100");
  d = mkdir_case(cfg, "bert_tiny");
  ASSERT_FAILS_WITH(mb_model_load(d, NULL, be, &m), "wrong shape 6");
  assert_non_null(
      strstr(mb_error_message(), "bert.encoder.layer.{0..1}.intermediate.dense.weight [128, 64], expected [100, 64]"));
  free(cfg);

  /* vocabulary: the tokenizer has more ids than the embedding rows */
  mb_model_load_opts o = {.tokenizer_path = "tests/fixtures/models/bert_tiny/vocab.txt", .pooling = -1};
  ASSERT_FAILS_WITH(mb_model_load("tests/fixtures/models/bert_odd", &o, be, &m),
                    "has 100 ids but the model's embedding has 97 rows");

  /* a checkpoint without the classifier (a pretrained BertModel + MLM head) */
  mb_model *src;
  ASSERT_OK(mb_model_load("tests/fixtures/models/bert_tiny", NULL, be, &src));
  mb_safetensors_writer *w;
  ASSERT_OK(mb_safetensors_writer_new(&w));
  mb_params *p = mb_model_params(src);
  for (int i = 0; i < mb_params_count(p); i++) {
    const mb_param_info *info = mb_params_info(p, i);
    if (strncmp(info->name, "classifier.", 11))
      ASSERT_OK(
          mb_safetensors_writer_add(w, info->name, MB_F32, &info->shape, (float *)mb_params_data(p) + info->offset));
  }
  mb_shape s1 = mb_shape1(100);
  float zeros[100] = {0};
  ASSERT_OK(mb_safetensors_writer_add(w, "cls.predictions.bias", MB_F32, &s1, zeros));
  cfg = fixture_config("bert_tiny");
  d = mkdir_case(cfg, NULL);
  char path[700];
  snprintf(path, sizeof path, "%s/model.safetensors", d);
  ASSERT_OK(mb_safetensors_writer_write(w, path));
  ASSERT_FAILS_WITH(mb_model_load(d, NULL, be, &m), "missing 2: classifier.weight, classifier.bias");
  assert_non_null(strstr(mb_error_message(), "unexpected 1: cls.predictions.bias"));
  mb_model_load_opts fresh = {.init_missing_head = 1, .seed = 5, .num_labels = 4, .pooling = -1};
  ASSERT_OK(mb_model_load(d, &fresh, be, &m));
  assert_int_equal(mb_model_config_of(m)->num_labels, 4);
  mb_model_free(m);

  /* sharded weights through model.safetensors.index.json */
  mb_safetensors_writer_free(w);
  mb_safetensors_writer *w1, *w2;
  ASSERT_OK(mb_safetensors_writer_new(&w1));
  ASSERT_OK(mb_safetensors_writer_new(&w2));
  d = mkdir_case(cfg, NULL);
  char index[16384];
  size_t il = (size_t)snprintf(index, sizeof index, "{\"metadata\": {}, \"weight_map\": {");
  for (int i = 0; i < mb_params_count(p); i++) {
    const mb_param_info *info = mb_params_info(p, i);
    ASSERT_OK(mb_safetensors_writer_add(i % 2 ? w1 : w2, info->name, MB_F32, &info->shape,
                                        (float *)mb_params_data(p) + info->offset));
    il += (size_t)snprintf(index + il, sizeof index - il, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"",
                           i ? ", " : "", info->name, i % 2 ? 1 : 2);
  }
  snprintf(index + il, sizeof index - il, "}}");
  write_str(d, "model.safetensors.index.json", index);
  snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", d);
  ASSERT_OK(mb_safetensors_writer_write(w1, path));
  snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", d);
  ASSERT_OK(mb_safetensors_writer_write(w2, path));
  mb_safetensors_writer_free(w1);
  mb_safetensors_writer_free(w2);
  ASSERT_OK(mb_model_load(d, NULL, be, &m));
  assert_memory_equal(mb_params_data(mb_model_params(m)), mb_params_data(p),
                      sizeof(float) * (size_t)mb_params_total(p));
  mb_model_free(m);

  /* an f64 checkpoint converts to exactly the f32 values */
  d = mkdir_case(cfg, NULL);
  ASSERT_OK(mb_safetensors_writer_new(&w1));
  double **d64 = calloc((size_t)mb_params_count(p), sizeof *d64);
  for (int i = 0; i < mb_params_count(p); i++) {
    const mb_param_info *info = mb_params_info(p, i);
    d64[i] = malloc(sizeof(double) * (size_t)info->numel);
    ASSERT_OK(mb_convert(d64[i], MB_F64, (float *)mb_params_data(p) + info->offset, MB_F32, (size_t)info->numel));
    ASSERT_OK(mb_safetensors_writer_add(w1, info->name, MB_F64, &info->shape, d64[i]));
  }
  snprintf(path, sizeof path, "%s/model.safetensors", d);
  ASSERT_OK(mb_safetensors_writer_write(w1, path));
  mb_safetensors_writer_free(w1);
  for (int i = 0; i < mb_params_count(p); i++)
    free(d64[i]);
  free(d64);
  ASSERT_OK(mb_model_load(d, NULL, be, &m));
  assert_memory_equal(mb_params_data(mb_model_params(m)), mb_params_data(p),
                      sizeof(float) * (size_t)mb_params_total(p));
  mb_model_free(m);

  /* only a pytorch_model.bin */
  d = mkdir_case(cfg, NULL);
  write_str(d, "pytorch_model.bin", "not really");
  ASSERT_FAILS_WITH(mb_model_load(d, NULL, be, &m), "convert_bin_to_safetensors.py");
  free(cfg);
  ASSERT_FAILS_WITH(mb_model_load("/nonexistent/model", NULL, be, &m), "does not exist");

  /* programs: longer than the position table; a batch of another shape */
  mb_graph *g;
  ASSERT_OK(mb_graph_new(mb_model_params(src), &g));
  mb_model_shape sh = {0, 2, 33, 0};
  ASSERT_FAILS_WITH(mb_model_build_shape(src, g, &sh), "sequence length 33 exceeds max_position_embeddings 32");
  mb_graph_free(g);
  ASSERT_OK(mb_graph_new(mb_model_params(src), &g));
  sh.seq_len = 8;
  ASSERT_OK(mb_model_build_shape(src, g, &sh));
  mb_compile_opts co = {0};
  ASSERT_OK(mb_graph_compile(g, &co));
  mb_exec *ex;
  ASSERT_OK(mb_exec_new(g, be, &ex));
  int32_t ids[3 * 9] = {0}, mask[3 * 9] = {0}, lab[3] = {0};
  tm_batch tb;
  tm_padded(&tb, ids, mask, lab, 3, 9);
  ASSERT_FAILS_WITH(mb_model_feed(src, ex, &tb.b, NULL), "into a padded program [2 rows, 8 tokens]");
  tm_batch_free(&tb);
  ids[8 + 5] = 100; /* row 1, position 5 of a [2, 8] batch */
  tm_padded(&tb, ids, mask, lab, 2, 8);
  ASSERT_FAILS_WITH(mb_model_feed(src, ex, &tb.b, NULL), "token id 100 at row 1, position 5 is outside the model's "
                                                         "vocabulary [0, 100)");
  tm_batch_free(&tb);
  mb_exec_free(ex);
  mb_graph_free(g);
  /* a packed sequence longer than the position table */
  int32_t lids[40], lmask[40], one = 1;
  for (int i = 0; i < 40; i++)
    lids[i] = 5, lmask[i] = i < 35;
  tm_batch lp, pk;
  tm_padded(&lp, lids, lmask, &one, 1, 40);
  tm_packed(&pk, &lp, 40, 2, 0);
  ASSERT_OK(mb_graph_new(mb_model_params(src), &g));
  mb_model_shape ps = {1, 2, 40, 0};
  ASSERT_OK(mb_model_build_shape(src, g, &ps));
  ASSERT_OK(mb_graph_compile(g, &co));
  ASSERT_OK(mb_exec_new(g, be, &ex));
  ASSERT_FAILS_WITH(mb_model_feed(src, ex, &pk.b, NULL), "position id 32 at token 32");
  tm_batch_free(&lp);
  tm_batch_free(&pk);
  mb_exec_free(ex);
  mb_graph_free(g);
  mb_model_free(src);
}

static void test_mamba(void **state) {
  (void)state;
  mb_model *m = NULL;
  mb_backend *be = mb_cpu_backend();
  expect_config_error("{\"d_model\": 64, \"vocab_size\": 100}", "missing field 'n_layer'");
  expect_config_error("{\"d_model\": 64, \"n_layer\": 0, \"vocab_size\": 100}", "n_layer must be >= 1");
  expect_config_error("{\"d_model\": 64, \"n_layer\": 2, \"vocab_size\": 100, \"ssm_cfg\": {\"d_conv\": 5}}",
                      "d_conv 5 is not supported");
  expect_config_error("{\"d_model\": 64, \"n_layer\": 2, \"vocab_size\": 100, \"rms_norm\": false}", "rms_norm=false");
  expect_config_error("{\"d_model\": 64, \"n_layer\": 2, \"vocab_size\": 100, \"ssm_cfg\": {\"layer\": \"Mamba2\"}}",
                      "Mamba2");
  expect_config_error("{\"model_type\": \"mamba\", \"hidden_size\": 64, \"num_hidden_layers\": 2, \"vocab_size\": 50,"
                      " \"expand\": 2, \"intermediate_size\": 100}",
                      "intermediate_size 100 is not expand 2 * hidden_size 64");
  expect_config_error("{\"model_type\": \"mamba\", \"hidden_size\": 64, \"num_hidden_layers\": 2}",
                      "missing field 'vocab_size'");

  /* BERT weights under a Mamba config */
  char *cfg = fixture_config("mamba_tiny");
  const char *d = mkdir_case(cfg, "bert_tiny");
  ASSERT_FAILS_WITH(mb_model_load(d, NULL, be, &m), "missing 22");
  assert_non_null(strstr(mb_error_message(), "backbone.layers.{0..1}.mixer.in_proj.weight"));
  assert_non_null(strstr(mb_error_message(), "unexpected 39"));
  free(cfg);

  /* a state size the weights do not have */
  d = mkdir_case("{\"d_model\": 64, \"n_layer\": 2, \"vocab_size\": 300, \"ssm_cfg\": {\"d_state\": 8},"
                 " \"pad_vocab_size_multiple\": 8}",
                 "mamba_tiny");
  ASSERT_FAILS_WITH(mb_model_load(d, NULL, be, &m), "wrong shape");
  assert_non_null(strstr(mb_error_message(), "backbone.layers.{0..1}.mixer.A_log [128, 16], expected [128, 8]"));

  /* a vocabulary that does not fit the tokenizer: 300 ids, 104 rows */
  d = mkdir_case("{\"d_model\": 64, \"n_layer\": 2, \"vocab_size\": 100, \"pad_vocab_size_multiple\": 8}", NULL);
  mb_model_load_opts o = {
      .tokenizer_path = "tests/fixtures/models/mamba_tiny/tokenizer.json", .init_missing_head = 1, .pooling = -1};
  ASSERT_FAILS_WITH(mb_model_load(d, &o, be, &m), "no model.safetensors");
  mb_model *src;
  ASSERT_OK(mb_model_load("tests/fixtures/models/mamba_tiny", NULL, be, &src));
  mb_safetensors_writer *w;
  ASSERT_OK(mb_safetensors_writer_new(&w));
  mb_params *p = mb_model_params(src);
  float *small_emb = calloc(104 * 64, sizeof(float));
  mb_shape es = mb_shape2(104, 64);
  for (int i = 0; i < mb_params_count(p); i++) {
    const mb_param_info *info = mb_params_info(p, i);
    if (!strcmp(info->name, "backbone.embedding.weight"))
      ASSERT_OK(mb_safetensors_writer_add(w, info->name, MB_F32, &es, small_emb));
    else if (strncmp(info->name, "classification_head", 19))
      ASSERT_OK(
          mb_safetensors_writer_add(w, info->name, MB_F32, &info->shape, (float *)mb_params_data(p) + info->offset));
  }
  mb_shape ls = mb_shape1(50280); /* state-spaces/mamba-130m's tied LM head, cloned by the converter */
  float *lm = calloc(50280, sizeof(float));
  ASSERT_OK(mb_safetensors_writer_add(w, "lm_head.weight", MB_F32, &ls, lm));
  char path[700];
  snprintf(path, sizeof path, "%s/model.safetensors", d);
  ASSERT_OK(mb_safetensors_writer_write(w, path));
  mb_safetensors_writer_free(w);
  ASSERT_FAILS_WITH(mb_model_load(d, &o, be, &m), "the tokenizer tests/fixtures/models/mamba_tiny/tokenizer.json has "
                                                  "300 ids but the model's embedding has 104 rows");
  /* the same backbone with its own vocabulary and a fresh head: loads */
  mb_model_load_opts fresh = {.init_missing_head = 1, .seed = 3, .pooling = MB_POOL_MASKED_MEAN};
  ASSERT_FAILS_WITH(mb_model_load(d, NULL, be, &m), "missing 2: classification_head.classification_head.weight");
  ASSERT_OK(mb_model_load(d, &fresh, be, &m));
  assert_int_equal(mb_model_config_of(m)->mamba.pooling, MB_POOL_MASKED_MEAN);
  mb_model_free(m);
  free(small_emb);
  free(lm);
  mb_model_free(src);
}

int main(int argc, char **argv) {
  const char *which = argc > 1 ? argv[1] : "all";
  const struct CMUnitTest bert[] = {cmocka_unit_test(test_bert)};
  const struct CMUnitTest mamba[] = {cmocka_unit_test(test_mamba)};
  int rc = 0;
  if (!strcmp(which, "bert") || !strcmp(which, "all"))
    rc |= cmocka_run_group_tests_name("bad_model_bert", bert, setup, teardown);
  if (!strcmp(which, "mamba") || !strcmp(which, "all"))
    rc |= cmocka_run_group_tests_name("bad_model_mamba", mamba, setup, teardown);
  return rc;
}
