/* test_train.c: training programs. BERT's dropout is deterministic per
 * (seed, offset), differs across offsets, survives recompute bit for bit;
 * the unfused attention (attn_dropout_exact) equals the fused one without
 * dropout and applies dropout to the probabilities with it. Both models,
 * randomly initialised, learn a toy task (is token 7 in the sequence?) with
 * AdamW on padded (BERT) and packed (Mamba) batches through the program cache.
 * Usage: models_train bert|mamba */
#include "autograd/optim.h"
#include "tests/models/model_test_util.h"

/* B random sequences of lengths in [4, L], ids in [5, V), label = contains 7. */
static void toy_batch(uint64_t *s, int B, int L, int V, int32_t *ids, int32_t *mask, int32_t *labels, int bert) {
  for (int b = 0; b < B; b++) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    int n = 4 + (int)((*s >> 33) % (uint64_t)(L - 3));
    int has = 0;
    for (int l = 0; l < L; l++) {
      *s = *s * 6364136223846793005ull + 1442695040888963407ull;
      int32_t id = 5 + (int32_t)((*s >> 33) % (uint64_t)(V - 5));
      if (l < n && id == 8 && (*s >> 20) % 3 == 0)
        id = 7; /* make the positive class common enough */
      if (bert && l == 0)
        id = 2;
      ids[b * L + l] = l < n ? id : 0;
      mask[b * L + l] = l < n;
      has |= l < n && id == 7;
    }
    labels[b] = has;
  }
}

static float run_loss(mb_model *m, const tm_batch *tb, int train, uint64_t offset, int recompute, float **grads) {
  mb_graph *g;
  ASSERT_OK(mb_graph_new(mb_model_params(m), &g));
  mb_model_shape s = {0, tb->b.rows, tb->b.seq_len, train};
  ASSERT_OK(mb_model_build_shape(m, g, &s));
  mb_compile_opts o = {.train = 1, .recompute = recompute};
  ASSERT_OK(mb_graph_compile(g, &o));
  mb_exec *ex;
  ASSERT_OK(mb_exec_new(g, mb_cpu_backend(), &ex));
  uint64_t rng[2] = {42, offset};
  ASSERT_OK(mb_model_feed(m, ex, &tb->b, rng));
  ASSERT_OK(mb_exec_forward(ex));
  ASSERT_OK(mb_exec_backward(ex));
  float loss;
  ASSERT_OK(mb_exec_get(ex, mb_graph_loss(g), &loss));
  if (grads) {
    int64_t n;
    *grads = tm_grads(m, &n);
  }
  mb_exec_free(ex);
  mb_graph_free(g);
  return loss;
}

/* Train `steps` AdamW steps on fresh toy batches; returns the accuracy on
 * a held-out batch. */
static double learn(mb_model *m, int packed, int steps, int B, int L, int V, float *first_loss, float *last_loss) {
  mb_program_cache *train, *eval;
  mb_compile_opts to = {.train = 1}, eo = {.train = 0};
  ASSERT_OK(mb_program_cache_new(mb_model_params(m), mb_cpu_backend(), &to, mb_model_build, m, &train));
  ASSERT_OK(mb_program_cache_new(mb_model_params(m), mb_cpu_backend(), &eo, mb_model_build, m, &eval));
  mb_adamw_cfg ac = {.lr = 3e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01};
  mb_optimizer *opt;
  ASSERT_OK(mb_optimizer_adamw(mb_model_params(m), &ac, &opt));
  int bert = mb_model_config_of(m)->arch == MB_ARCH_BERT;
  int32_t *ids = malloc(sizeof(int32_t) * B * L), *mask = malloc(sizeof(int32_t) * B * L),
          *lab = malloc(sizeof(int32_t) * B);
  uint64_t seed = 99;
  float loss_sum = 0;
  for (int step = 0; step < steps; step++) {
    toy_batch(&seed, B, L, V, ids, mask, lab, bert);
    tm_batch pad, pk, *use = &pad;
    tm_padded(&pad, ids, mask, lab, B, L);
    if (packed) {
      tm_packed(&pk, &pad, B * L, B, 0);
      use = &pk;
    }
    int64_t key[MB_MODEL_KEY_LEN];
    mb_exec *ex;
    ASSERT_OK(mb_model_key_for_batch(&use->b, 1, key));
    ASSERT_OK(mb_program_cache_get(train, key, MB_MODEL_KEY_LEN, &ex));
    uint64_t rng[2] = {7, (uint64_t)step << 32};
    ASSERT_OK(mb_model_feed(m, ex, &use->b, rng));
    ASSERT_OK(mb_exec_forward(ex));
    ASSERT_OK(mb_exec_backward(ex));
    float loss;
    ASSERT_OK(mb_exec_get(ex, mb_graph_loss(mb_exec_graph(ex)), &loss));
    double norm, scale;
    ASSERT_OK(mb_clip_grad_norm(mb_model_params(m), 1.0, &norm, &scale));
    ASSERT_OK(mb_optimizer_step(opt, ac.lr, scale));
    /* averages over 10 steps */
    loss_sum += loss;
    if (step == 9)
      *first_loss = loss_sum / 10;
    if (step % 10 == 9)
      loss_sum = 0;
    if (step == steps - 1)
      *last_loss = loss;
    if (packed)
      tm_batch_free(&pk);
    tm_batch_free(&pad);
  }
  /* held-out accuracy */
  int correct = 0, total = 0;
  for (int r = 0; r < 4; r++) {
    toy_batch(&seed, B, L, V, ids, mask, lab, bert);
    tm_batch pad;
    tm_padded(&pad, ids, mask, lab, B, L);
    int64_t key[MB_MODEL_KEY_LEN];
    mb_exec *ex;
    ASSERT_OK(mb_model_key_for_batch(&pad.b, 0, key));
    ASSERT_OK(mb_program_cache_get(eval, key, MB_MODEL_KEY_LEN, &ex));
    ASSERT_OK(mb_model_feed(m, ex, &pad.b, NULL));
    ASSERT_OK(mb_exec_forward(ex));
    float *z = malloc(sizeof(float) * B * 2);
    ASSERT_OK(mb_model_read_logits(ex, z));
    for (int b = 0; b < B; b++, total++)
      correct += (z[2 * b + 1] > z[2 * b]) == lab[b];
    free(z);
    tm_batch_free(&pad);
  }
  free(ids);
  free(mask);
  free(lab);
  mb_optimizer_free(opt);
  mb_program_cache_free(train);
  mb_program_cache_free(eval);
  return (double)correct / total;
}

static mb_model_config small_bert(void) {
  mb_model_config c = mb_model_config_default(MB_ARCH_BERT);
  c.bert.vocab_size = 40;
  c.bert.hidden_size = 32;
  c.bert.num_layers = 2;
  c.bert.num_heads = 2;
  c.bert.intermediate_size = 64;
  c.bert.max_position = 32;
  return c;
}

static void test_bert(void **state) {
  (void)state;
  mb_model_config c = small_bert();
  mb_model *m;
  ASSERT_OK(mb_model_new(&c, NULL, mb_cpu_backend(), &m));
  ASSERT_OK(mb_model_init_random(m, 1));
  int32_t ids[4 * 12], mask[4 * 12], lab[4];
  uint64_t seed = 5;
  toy_batch(&seed, 4, 12, 40, ids, mask, lab, 1);
  tm_batch tb;
  tm_padded(&tb, ids, mask, lab, 4, 12);

  float *g0, *g1;
  float eval = run_loss(m, &tb, 0, 0, 0, NULL);
  float a = run_loss(m, &tb, 1, 0, 0, &g0), a2 = run_loss(m, &tb, 1, 0, 1, &g1);
  float b = run_loss(m, &tb, 1, 1ull << 32, 0, NULL);
  printf("bert dropout: eval loss %.6f, train loss %.6f (offset 0, again with recompute %.6f), %.6f (offset 2^32)\n",
         eval, a, a2, b);
  assert_true(a == a2 && a != b && a != eval);
  int64_t n = mb_params_total(mb_model_params(m));
  assert_memory_equal(g0, g1, sizeof(float) * (size_t)n);
  free(g0);
  free(g1);
  mb_model_free(m);

  /* unfused attention: equal to the fused one without dropout */
  c.bert.hidden_dropout = c.bert.attention_dropout = 0;
  c.bert.classifier_dropout = 0;
  mb_model *f, *x;
  ASSERT_OK(mb_model_new(&c, NULL, mb_cpu_backend(), &f));
  ASSERT_OK(mb_model_init_random(f, 2));
  c.bert.attn_dropout_exact = 1;
  ASSERT_OK(mb_model_new(&c, NULL, mb_cpu_backend(), &x));
  ASSERT_OK(mb_model_init_random(x, 2));
  float lf = run_loss(f, &tb, 1, 0, 0, &g0), lx = run_loss(x, &tb, 1, 0, 0, &g1);
  double worst = 0;
  for (int64_t i = 0; i < n; i++)
    worst = fmax(worst, fabs((double)g0[i] - g1[i]));
  printf("bert unfused attention vs fused, no dropout: loss %.7f vs %.7f, max |grad diff| %.2e\n", lx, lf, worst);
  assert_true(fabs(lf - lx) <= 1e-6 * fabs(lf) && worst <= 1e-5);
  free(g0);
  free(g1);
  mb_model_free(x);
  c.bert.attention_dropout = 0.3;
  ASSERT_OK(mb_model_new(&c, NULL, mb_cpu_backend(), &x));
  ASSERT_OK(mb_model_init_random(x, 2));
  float d1 = run_loss(x, &tb, 1, 0, 0, NULL), d2 = run_loss(x, &tb, 1, 0, 1, NULL),
        d3 = run_loss(x, &tb, 1, 4, 0, NULL);
  printf("bert unfused attention, probability dropout 0.3: loss %.6f (recompute %.6f), other offset %.6f\n", d1, d2,
         d3);
  assert_true(d1 == d2 && d1 != lf && d1 != d3);
  mb_model_free(x);
  mb_model_free(f);
  tm_batch_free(&tb);

  /* learning */
  c = small_bert();
  ASSERT_OK(mb_model_new(&c, NULL, mb_cpu_backend(), &m));
  ASSERT_OK(mb_model_init_random(m, 3));
  float l0 = 0, l1 = 0;
  double acc = learn(m, 0, 150, 16, 12, 40, &l0, &l1);
  printf("bert learns the toy task: loss %.3f (first 10 steps) -> %.3f, held-out accuracy %.3f\n", l0, l1, acc);
  assert_true(acc >= 0.9);
  mb_model_free(m);
}

static void test_mamba(void **state) {
  (void)state;
  mb_model_config c = mb_model_config_default(MB_ARCH_MAMBA);
  c.mamba.d_model = 32;
  c.mamba.n_layer = 2;
  c.mamba.vocab_size_config = 40;
  c.mamba.d_state = 8;
  c.mamba.pooling = MB_POOL_MASKED_MEAN;
  mb_mamba_config_derive(&c.mamba, 0);
  mb_model *m;
  ASSERT_OK(mb_model_new(&c, NULL, mb_cpu_backend(), &m));
  ASSERT_OK(mb_model_init_random(m, 4));
  float l0 = 0, l1 = 0;
  double acc = learn(m, 1, 150, 16, 12, 40, &l0, &l1);
  printf("mamba learns the toy task on packed batches: loss %.3f (first 10 steps) -> %.3f, held-out accuracy %.3f\n",
         l0, l1, acc);
  assert_true(acc >= 0.9);
  mb_model_free(m);
}

int main(int argc, char **argv) {
  const char *which = argc > 1 ? argv[1] : "all";
  const struct CMUnitTest bert[] = {cmocka_unit_test(test_bert)};
  const struct CMUnitTest mamba[] = {cmocka_unit_test(test_mamba)};
  int rc = 0;
  if (!strcmp(which, "bert") || !strcmp(which, "all"))
    rc |= cmocka_run_group_tests_name("train_bert", bert, NULL, NULL);
  if (!strcmp(which, "mamba") || !strcmp(which, "all"))
    rc |= cmocka_run_group_tests_name("train_mamba", mamba, NULL, NULL);
  return rc;
}
