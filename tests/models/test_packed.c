/* test_packed.c: a packed varlen batch gives the same logits, loss and
 * gradients as the padded batch of the same sequences: attention never
 * crosses a sequence and BERT's positions restart (bert), conv1d and the
 * scan restart and pooling averages each sequence's own tokens (mamba; with
 * masked-mean pooling for ragged rows, and with the reference's mean over
 * all positions for rows without padding). The packed batch has spare
 * slots and a padded tail, as the loader makes them.
 * Usage: models_packed bert|mamba */
#include "tests/models/model_test_util.h"

static void compare(mb_model *m, const tm_batch *pad, const tm_batch *pk, const char *what) {
  const mb_model_config *c = mb_model_config_of(m);
  int B = pad->b.rows, C = c->num_labels;
  mb_graph *g;
  mb_exec *ex;
  tm_run(m, &pad->b, 1, 0, &g, &ex);
  float *la = malloc(sizeof(float) * B * C), lossa, lossb;
  ASSERT_OK(mb_model_read_logits(ex, la));
  ASSERT_OK(mb_exec_get(ex, mb_graph_loss(g), &lossa));
  int64_t n;
  float *ga = tm_grads(m, &n);
  mb_exec_free(ex);
  mb_graph_free(g);

  tm_run(m, &pk->b, 1, 0, &g, &ex);
  float *lb = malloc(sizeof(float) * pk->b.rows * C);
  ASSERT_OK(mb_model_read_logits(ex, lb));
  ASSERT_OK(mb_exec_get(ex, mb_graph_loss(g), &lossb));
  float *gb = tm_grads(m, &n);
  mb_exec_free(ex);
  mb_graph_free(g);

  double el = tm_rel(lb, la, (int64_t)B * C), eloss = fabs(lossa - lossb) / fabs(lossa);
  mb_params *p = mb_model_params(m);
  double G = 0, worst = 0;
  const char *wn = "";
  for (int i = 0; i < mb_params_count(p); i++) {
    const mb_param_info *info = mb_params_info(p, i);
    for (int64_t k = 0; k < info->numel; k++)
      G = fmax(G, fabs(ga[info->offset + k]));
  }
  for (int i = 0; i < mb_params_count(p); i++) {
    const mb_param_info *info = mb_params_info(p, i);
    double d = 0, sc = 0;
    for (int64_t k = 0; k < info->numel; k++) {
      d = fmax(d, fabs((double)ga[info->offset + k] - gb[info->offset + k]));
      sc = fmax(sc, fabs(ga[info->offset + k]));
    }
    double e = d / (sc > 1e-6 * G ? sc : G); /* zero-in-theory gradients (key biases): against G */
    if (e > worst || e != e) {
      worst = e;
      wn = info->name;
    }
  }
  printf("%s: packed [%d tokens, %d slots] vs padded [%d, %d]: logits %.2e, loss %.2e, gradients %.2e (%s)\n", what,
         pk->b.seq_len, pk->b.rows, B, pad->b.seq_len, el, eloss, worst, wn);
  assert_true(el <= 1e-5);
  assert_true(eloss <= 1e-5);
  assert_true(worst <= 1e-4);
  free(la);
  free(lb);
  free(ga);
  free(gb);
}

static void load_fixture(const char *name, int pooling, mb_model **m, tm_batch *pad) {
  char dir[256], path[512];
  snprintf(dir, sizeof dir, "tests/fixtures/models/%s", name);
  mb_model_load_opts o = {.pooling = pooling};
  ASSERT_OK(mb_model_load(dir, &o, mb_cpu_backend(), m));
  snprintf(path, sizeof path, "%s/reference.safetensors", dir);
  mb_safetensors *st;
  ASSERT_OK(mb_safetensors_open(path, &st));
  mb_tensor ids, mask, labels;
  ASSERT_OK(mb_safetensors_get(st, "input_ids", &ids));
  ASSERT_OK(mb_safetensors_get(st, "attention_mask", &mask));
  ASSERT_OK(mb_safetensors_get(st, "labels", &labels));
  tm_padded(pad, ids.data, mask.data, labels.data, (int)ids.shape.dim[0], (int)ids.shape.dim[1]);
  mb_tensor_free(&ids);
  mb_tensor_free(&mask);
  mb_tensor_free(&labels);
  mb_safetensors_close(st);
}

static void test_bert(void **state) {
  (void)state;
  mb_model *m;
  tm_batch pad, pk;
  load_fixture("bert_tiny", -1, &m, &pad);
  tm_packed(&pk, &pad, 32, pad.b.rows + 2, 0);
  compare(m, &pad, &pk, "bert_tiny");
  tm_batch_free(&pk);
  tm_batch_free(&pad);
  mb_model_free(m);
}

static void test_mamba(void **state) {
  (void)state;
  mb_model *m;
  tm_batch pad, pk;
  load_fixture("mamba_tiny", MB_POOL_MASKED_MEAN, &m, &pad);
  tm_packed(&pk, &pad, 40, pad.b.rows + 2, 0);
  compare(m, &pad, &pk, "mamba_tiny, masked mean");
  tm_batch_free(&pk);
  mb_model_free(m);

  /* the reference's mean over all positions: equal to packed when no row
   * has padding */
  load_fixture("mamba_tiny", -1, &m, &pk);
  assert_int_equal(mb_model_config_of(m)->mamba.pooling, MB_POOL_MEAN);
  tm_batch full;
  int B = pad.b.rows, L = pad.b.seq_len;
  int32_t *ones = malloc(sizeof(int32_t) * B * L), *ids = malloc(sizeof(int32_t) * B * L);
  for (int i = 0; i < B * L; i++) {
    ones[i] = 1;
    ids[i] = 1 + (int32_t)((i * 37) % 250); /* no padding tokens anywhere */
  }
  tm_padded(&full, ids, ones, pad.labels, B, L);
  tm_batch_free(&pk);
  tm_packed(&pk, &full, B * L + 5, B + 1, 0);
  compare(m, &full, &pk, "mamba_tiny, mean over all positions, no padding");
  free(ones);
  free(ids);
  tm_batch_free(&pk);
  tm_batch_free(&full);
  tm_batch_free(&pad);
  mb_model_free(m);
}

int main(int argc, char **argv) {
  const char *which = argc > 1 ? argv[1] : "all";
  const struct CMUnitTest bert[] = {cmocka_unit_test(test_bert)};
  const struct CMUnitTest mamba[] = {cmocka_unit_test(test_mamba)};
  int rc = 0;
  if (!strcmp(which, "bert") || !strcmp(which, "all"))
    rc |= cmocka_run_group_tests_name("packed_bert", bert, NULL, NULL);
  if (!strcmp(which, "mamba") || !strcmp(which, "all"))
    rc |= cmocka_run_group_tests_name("packed_mamba", mamba, NULL, NULL);
  return rc;
}
