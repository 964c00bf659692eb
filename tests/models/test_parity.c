/* test_parity.c: a model loaded from a fixture directory (tests/fixtures/
 * models/NAME, written by tools/make_model_fixtures.py from transformers)
 * against the fixture's float64 reference: logits and loss within 1e-4,
 * every parameter's gradient within 1e-3 (max |ours - ref| / max |ref| per
 * tensor), all in f32. Also: with recompute the gradients are bit-identical,
 * and the program cache path gives the same logits.
 * Usage: models_parity FIXTURE_DIR */
#include "tests/models/model_test_util.h"

static const char *g_dir;

static void get_ref(mb_safetensors *st, const char *name, mb_tensor *t) {
  int rc = mb_safetensors_get(st, name, t);
  if (rc != MB_OK)
    fail_msg("reference.safetensors: %s: %s", name, mb_error_message());
}

static void test_parity(void **state) {
  (void)state;
  char path[1024];
  snprintf(path, sizeof path, "%s/reference.safetensors", g_dir);
  mb_safetensors *st;
  ASSERT_OK(mb_safetensors_open(path, &st));
  mb_model *m;
  ASSERT_OK(mb_model_load(g_dir, NULL, mb_cpu_backend(), &m));
  const mb_model_config *c = mb_model_config_of(m);

  mb_tensor ids, mask, labels, logits_ref, loss_ref, l32, loss32;
  get_ref(st, "input_ids", &ids);
  get_ref(st, "attention_mask", &mask);
  get_ref(st, "labels", &labels);
  get_ref(st, "logits", &logits_ref);
  get_ref(st, "loss", &loss_ref);
  get_ref(st, "logits_torch_f32", &l32);
  get_ref(st, "loss_torch_f32", &loss32);
  int B = (int)ids.shape.dim[0], L = (int)ids.shape.dim[1], C = c->num_labels;
  assert_int_equal(logits_ref.shape.dim[1], C);
  tm_batch tb;
  tm_padded(&tb, ids.data, mask.data, labels.data, B, L);

  mb_graph *g;
  mb_exec *ex;
  tm_run(m, &tb.b, 1, 0, &g, &ex);
  float *logits = malloc(sizeof(float) * B * C), loss;
  ASSERT_OK(mb_model_read_logits(ex, logits));
  ASSERT_OK(mb_exec_get(ex, mb_graph_loss(g), &loss));
  double e_logits = tm_rel(logits, logits_ref.data, (int64_t)B * C);
  double e_loss = fabs(loss - *(float *)loss_ref.data) / fabs(*(float *)loss_ref.data);
  double t_logits = tm_rel(l32.data, logits_ref.data, (int64_t)B * C);
  double t_loss = fabs(*(float *)loss32.data - *(float *)loss_ref.data) / fabs(*(float *)loss_ref.data);
  printf("%s: %s, %d parameters, batch [%d, %d], %d labels\n", g_dir, c->arch == MB_ARCH_BERT ? "BERT" : "Mamba",
         mb_params_count(mb_model_params(m)), B, L, C);
  printf("  logits rel err %.3e (torch f32: %.3e)   loss rel err %.3e (torch f32: %.3e)\n", e_logits, t_logits, e_loss,
         t_loss);

  /* every parameter's gradient: max |ours - ref| / max |ref| per tensor.
   * Gradients that are zero in exact arithmetic (BERT's key biases: softmax
   * ignores a constant added to a row of scores) hold only rounding noise
   * on both sides (the f64 reference ~1e-17): a tensor whose reference is
   * below 1e-10 G (G the largest reference gradient of the model) is
   * measured as max |ours - ref| / G instead. */
  mb_params *p = mb_model_params(m);
  int np = mb_params_count(p);
  mb_tensor *gref = calloc((size_t)np, sizeof *gref);
  double G = 0;
  for (int i = 0; i < np; i++) {
    const mb_param_info *info = mb_params_info(p, i);
    char gname[256];
    snprintf(gname, sizeof gname, "grad.%s", info->name);
    get_ref(st, gname, &gref[i]);
    assert_int_equal(mb_tensor_numel(&gref[i]), info->numel);
    for (int64_t k = 0; k < info->numel; k++)
      G = fmax(G, fabs(((const float *)gref[i].data)[k]));
  }
  double worst = 0, worst_plain = 0;
  const char *worst_name = "", *worst_plain_name = "";
  int floored = 0;
  for (int i = 0; i < np; i++) {
    const mb_param_info *info = mb_params_info(p, i);
    const float *ours = (const float *)mb_params_grad(p) + info->offset, *ref = gref[i].data;
    double d = 0, sc = 0;
    for (int64_t k = 0; k < info->numel; k++) {
      double e = fabs((double)ours[k] - (double)ref[k]);
      d = e > d || e != e ? e : d;
      sc = fmax(sc, fabs((double)ref[k]));
    }
    if (sc >= 1e-10 * G && (d / sc > worst_plain || d != d)) {
      worst_plain = d / sc;
      worst_plain_name = info->name;
    }
    if (sc < 1e-10 * G) {
      floored++;
      printf("    %s: reference gradient max %.1e (zero in exact arithmetic), ours differ by %.1e = %.1e G\n",
             info->name, sc, d, d / G);
      sc = G;
    }
    double e = d / sc;
    if (e > worst || e != e) {
      worst = e;
      worst_name = info->name;
    }
    mb_tensor_free(&gref[i]);
  }
  free(gref);
  printf("  gradients: max rel err %.3e (%s); %d tensors zero in exact arithmetic\n", worst, worst_name, floored);
  (void)worst_plain_name;
  assert_true(e_logits <= 1e-4);
  assert_true(e_loss <= 1e-4);
  assert_true(worst <= 1e-3);

  /* recompute: the same gradients, bit for bit */
  int64_t n;
  float *g0 = tm_grads(m, &n);
  mb_exec_free(ex);
  mb_graph_free(g);
  tm_run(m, &tb.b, 1, 1, &g, &ex);
  float *g1 = tm_grads(m, &n);
  assert_memory_equal(g0, g1, sizeof(float) * (size_t)n);
  assert_true(mb_graph_num_layers(g) == (c->arch == MB_ARCH_BERT ? c->bert.num_layers : c->mamba.n_layer));
  mb_exec_free(ex);
  mb_graph_free(g);

  /* the program cache path (what the run loop uses), evaluation only */
  mb_program_cache *cache;
  mb_compile_opts o = {.train = 0};
  ASSERT_OK(mb_program_cache_new(mb_model_params(m), mb_cpu_backend(), &o, mb_model_build, m, &cache));
  int64_t key[MB_MODEL_KEY_LEN];
  ASSERT_OK(mb_model_key_for_batch(&tb.b, 0, key));
  ASSERT_OK(mb_program_cache_get(cache, key, MB_MODEL_KEY_LEN, &ex));
  ASSERT_OK(mb_model_feed(m, ex, &tb.b, NULL));
  ASSERT_OK(mb_exec_forward(ex));
  float *logits2 = malloc(sizeof(float) * B * C);
  ASSERT_OK(mb_model_read_logits(ex, logits2));
  assert_memory_equal(logits, logits2, sizeof(float) * B * C);
  mb_program_cache_free(cache);

  free(g0);
  free(g1);
  free(logits);
  free(logits2);
  tm_batch_free(&tb);
  mb_tensor_free(&ids);
  mb_tensor_free(&mask);
  mb_tensor_free(&labels);
  mb_tensor_free(&logits_ref);
  mb_tensor_free(&loss_ref);
  mb_tensor_free(&l32);
  mb_tensor_free(&loss32);
  mb_model_free(m);
  mb_safetensors_close(st);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
    return 2;
  }
  g_dir = argv[1];
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_parity)};
  return cmocka_run_group_tests_name(g_dir, tests, NULL, NULL);
}
