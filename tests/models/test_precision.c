/* test_precision.c: the models' precision option (model.h, "precision"),
 * on the CPU. Mixed-precision programs (bf16, f16) are recorded and
 * compiled here and checked node by node: matmuls, attention, conv1d and
 * the scan's activations in the compute dtype, the scan's and conv1d's own
 * parameters, its states, Mamba's residual stream, the logits and the loss
 * in f32, every parameter still receiving a gradient (through the casts),
 * padded and packed, training and evaluation programs. Running one on the
 * CPU fails with a clear error (its kernels are f32/f64; the GPU test
 * cuda_models runs them). f32 set explicitly equals the default bit for
 * bit. Loss scaling: the "loss_scale" input multiplies the loss and, by a
 * power of two, every gradient exactly; mb_model_loss is the unscaled loss.
 * Usage: models_precision bert|mamba */
#include "tests/models/model_test_util.h"

static int arch_bert;

static mb_model_config small_config(void) {
  mb_model_config c;
  if (arch_bert) {
    c = mb_model_config_default(MB_ARCH_BERT);
    c.bert.vocab_size = 40;
    c.bert.hidden_size = 32;
    c.bert.num_layers = 2;
    c.bert.num_heads = 2;
    c.bert.intermediate_size = 64;
    c.bert.max_position = 32;
  } else {
    c = mb_model_config_default(MB_ARCH_MAMBA);
    c.mamba.d_model = 32;
    c.mamba.n_layer = 2;
    c.mamba.d_state = 8;
    c.mamba.vocab_size_config = 40;
    c.mamba.pad_vocab_size_multiple = 8;
    mb_mamba_config_derive(&c.mamba, 0);
  }
  return c;
}

static mb_model *new_model(mb_dtype compute, int loss_scale) {
  mb_model_config c = small_config();
  mb_model *m;
  ASSERT_OK(mb_model_new(&c, NULL, mb_cpu_backend(), &m));
  ASSERT_OK(mb_model_init_random(m, 3));
  mb_model_precision p = {.compute = compute, .loss_scale = loss_scale};
  ASSERT_OK(mb_model_set_precision(m, &p));
  return m;
}

/* 3 sequences of lengths 10, 4, 7 in a padded [3, 10] batch */
static void make_batch(tm_batch *tb) {
  int32_t ids[30], mask[30], lab[3] = {1, 0, 1};
  const int len[3] = {10, 4, 7};
  for (int b = 0; b < 3; b++)
    for (int l = 0; l < 10; l++) {
      ids[b * 10 + l] = l < len[b] ? 5 + (b * 7 + l * 3) % 30 : 0;
      mask[b * 10 + l] = l < len[b];
    }
  if (arch_bert)
    for (int b = 0; b < 3; b++)
      ids[b * 10] = 2;
  tm_padded(tb, ids, mask, lab, 3, 10);
}

static mb_graph *build(mb_model *m, const mb_batch *b, int train_key, int grads) {
  mb_graph *g;
  ASSERT_OK(mb_graph_new(mb_model_params(m), &g));
  mb_model_shape s = {b->mode == MB_BATCH_PACKED, b->rows, b->seq_len, train_key};
  ASSERT_OK(mb_model_build_shape(m, g, &s));
  mb_compile_opts o = {.train = grads};
  ASSERT_OK(mb_graph_compile(g, &o));
  return g;
}

static mb_dtype dt_of(const mb_graph *g, int32_t id) { return mb_graph_value(g, (mb_var){id})->dtype; }

/* Walk the forward tape and check where each dtype is. */
static void check_dtypes(mb_graph *g, mb_dtype cd, const char *what) {
  int n_mm_cd = 0, n_mm_f32 = 0, n_scan = 0, n_conv = 0, n_attn = 0, n_cast = 0;
  const int nn = mb_graph_num_nodes(g, 0);
  for (int i = 0; i < nn; i++) {
    const mb_node *n = mb_graph_node(g, 0, i);
    switch (n->op) {
    case MB_OP_MATMUL:
      if (dt_of(g, n->out[0]) == cd)
        n_mm_cd++;
      else
        n_mm_f32++;
      break;
    case MB_OP_ATTENTION:
      assert_int_equal(dt_of(g, n->in[0]), cd);
      assert_int_equal(dt_of(g, n->out[1]), MB_F32); /* lse */
      n_attn++;
      break;
    case MB_OP_SELECTIVE_SCAN:
      assert_int_equal(dt_of(g, n->in[0]), cd);     /* u */
      assert_int_equal(dt_of(g, n->in[1]), cd);     /* delta */
      assert_int_equal(dt_of(g, n->in[2]), MB_F32); /* A_log */
      assert_int_equal(dt_of(g, n->in[5]), MB_F32); /* D */
      assert_int_equal(dt_of(g, n->in[7]), MB_F32); /* delta_bias */
      assert_int_equal(dt_of(g, n->out[0]), cd);
      assert_int_equal(dt_of(g, n->out[1]), MB_F32); /* states */
      n_scan++;
      break;
    case MB_OP_CONV1D:
      assert_int_equal(dt_of(g, n->in[0]), cd);
      assert_int_equal(dt_of(g, n->in[1]), MB_F32);
      n_conv++;
      break;
    case MB_OP_RMSNORM: /* Mamba: the residual stream stays f32 */ assert_int_equal(dt_of(g, n->in[0]), MB_F32); break;
    case MB_OP_CAST: n_cast++; break;
    case MB_OP_CROSS_ENTROPY: assert_int_equal(dt_of(g, n->in[0]), MB_F32); break;
    default: break;
    }
  }
  mb_var logits = mb_model_logits(g), loss = mb_model_loss(g);
  assert_true(mb_var_ok(logits) && mb_var_ok(loss));
  assert_int_equal(mb_graph_value(g, logits)->dtype, MB_F32);
  assert_int_equal(mb_graph_value(g, loss)->dtype, MB_F32);
  printf("  %s %s: %d matmuls in %s, %d in f32, %d casts, %d attention, %d conv1d, %d scans\n", what, mb_dtype_name(cd),
         n_mm_cd, mb_dtype_name(cd), n_mm_f32, n_cast, n_attn, n_conv, n_scan);
  if (arch_bert) {
    assert_int_equal(n_attn, 2);
    assert_true(n_mm_cd >= 2 * 6 + 2); /* q k v o ffn1 ffn2 per layer, pooler, classifier */
  } else {
    assert_int_equal(n_scan, 2);
    assert_int_equal(n_conv, 2);
    assert_true(n_mm_cd >= 2 * 4); /* in_proj, x_proj, dt_proj, out_proj per block */
  }
  assert_true(n_cast > 0);
}

static void test_mixed_programs(void **state) {
  (void)state;
  tm_batch pad, pk;
  make_batch(&pad);
  tm_packed(&pk, &pad, 32, 4, 0);
  const mb_dtype cds[2] = {MB_BF16, MB_F16};
  for (int k = 0; k < 2; k++) {
    mb_model *m = new_model(cds[k], 0);
    const mb_batch *bs[2] = {&pad.b, &pk.b};
    for (int p = 0; p < 2; p++)
      for (int train = 0; train < 2; train++) {
        mb_graph *g = build(m, bs[p], train, train);
        char what[64];
        snprintf(what, sizeof what, "%s %s %s", arch_bert ? "bert" : "mamba", p ? "packed" : "padded",
                 train ? "train" : "eval");
        check_dtypes(g, cds[k], what);
        if (train) {
          /* every parameter still gets a gradient, through the casts */
          mb_exec *ex;
          ASSERT_OK(mb_exec_new(g, mb_cpu_backend(), &ex));
          int n;
          (void)mb_exec_grad_order(ex, &n);
          assert_int_equal(n, mb_params_count(mb_model_params(m)));
          /* the CPU's kernels are f32/f64: running says so, no crash */
          ASSERT_OK(mb_model_feed(m, ex, bs[p], (uint64_t[2]){1, 2}));
          ASSERT_FAILS_WITH(mb_exec_forward(ex), mb_dtype_name(cds[k]));
          mb_exec_free(ex);
        }
        mb_graph_free(g);
      }
    mb_model_free(m);
  }
  tm_batch_free(&pk);
  tm_batch_free(&pad);
}

/* f32 set explicitly: the same program and numbers as the default. */
static void test_f32_unchanged(void **state) {
  (void)state;
  tm_batch tb;
  make_batch(&tb);
  mb_model_config c = small_config();
  mb_model *a, *b;
  ASSERT_OK(mb_model_new(&c, NULL, mb_cpu_backend(), &a));
  ASSERT_OK(mb_model_init_random(a, 3));
  b = new_model(MB_F32, 0);
  assert_int_equal(mb_model_precision_of(a).compute, MB_F32);
  float la, lb;
  int64_t n;
  mb_graph *ga, *gb;
  mb_exec *ea, *eb;
  tm_run(a, &tb.b, 1, 0, &ga, &ea);
  float *gra = tm_grads(a, &n);
  tm_run(b, &tb.b, 1, 0, &gb, &eb);
  float *grb = tm_grads(b, &n);
  ASSERT_OK(mb_exec_get(ea, mb_graph_loss(ga), &la));
  ASSERT_OK(mb_exec_get(eb, mb_model_loss(gb), &lb));
  assert_int_equal(mb_graph_num_nodes(ga, 0), mb_graph_num_nodes(gb, 0));
  assert_true(la == lb);
  assert_memory_equal(gra, grb, sizeof(float) * (size_t)n);
  printf("  f32 explicit == default: loss %.7f, %lld gradients equal\n", la, (long long)n);
  free(gra);
  free(grb);
  mb_exec_free(ea);
  mb_exec_free(eb);
  mb_graph_free(ga);
  mb_graph_free(gb);
  mb_model_free(a);
  mb_model_free(b);
  tm_batch_free(&tb);
}

/* Loss scaling (f32 here, so it runs): loss * S, gradients * S exactly. */
static void test_loss_scale(void **state) {
  (void)state;
  tm_batch pad, pk;
  make_batch(&pad);
  tm_packed(&pk, &pad, 32, 4, 0);
  const mb_batch *bs[2] = {&pad.b, &pk.b};
  for (int p = 0; p < 2; p++) {
    mb_model *ref = new_model(MB_F32, 0), *sc = new_model(MB_F32, 1);
    mb_graph *g0, *g1;
    mb_exec *e0, *e1;
    int64_t n;
    tm_run(ref, bs[p], 1, 0, &g0, &e0);
    float *gr0 = tm_grads(ref, &n);
    mb_model_set_loss_scale(sc, 1024.0);
    tm_run(sc, bs[p], 1, 0, &g1, &e1);
    float *gr1 = tm_grads(sc, &n);
    assert_true(mb_var_ok(mb_graph_find_input(g1, "loss_scale")));
    assert_false(mb_var_ok(mb_graph_find_input(g0, "loss_scale")));
    float l0, l1, l1s;
    ASSERT_OK(mb_exec_get(e0, mb_model_loss(g0), &l0));
    ASSERT_OK(mb_exec_get(e1, mb_model_loss(g1), &l1));
    ASSERT_OK(mb_exec_get(e1, mb_graph_loss(g1), &l1s));
    printf("  %s: loss %.7f, unscaled %.7f, scaled %.3f\n", p ? "packed" : "padded", l0, l1, l1s);
    assert_true(l0 == l1);
    assert_true(l1s == 1024.0f * l0);
    for (int64_t i = 0; i < n; i++)
      if (gr1[i] != 1024.0f * gr0[i])
        fail_msg("gradient %lld: %g scaled vs %g * 1024", (long long)i, gr1[i], gr0[i]);
    /* the logits are the loss-independent output */
    assert_int_equal(mb_graph_value(g1, mb_model_logits(g1))->shape.ndim, 2);
    free(gr0);
    free(gr1);
    mb_exec_free(e0);
    mb_exec_free(e1);
    mb_graph_free(g0);
    mb_graph_free(g1);
    mb_model_free(ref);
    mb_model_free(sc);
  }
  tm_batch_free(&pk);
  tm_batch_free(&pad);
}

static void test_bad_precision(void **state) {
  (void)state;
  mb_model *m = new_model(MB_F32, 0);
  mb_model_precision p = {.compute = MB_F64};
  ASSERT_FAILS_WITH(mb_model_set_precision(m, &p), "compute dtype f64");
  p.compute = MB_I32;
  ASSERT_FAILS_WITH(mb_model_set_precision(m, &p), "expected f32, bf16 or f16");
  assert_int_equal(mb_model_precision_of(m).compute, MB_F32);
  mb_model_free(m);
}

int main(int argc, char **argv) {
  if (argc != 2 || (strcmp(argv[1], "bert") != 0 && strcmp(argv[1], "mamba") != 0)) {
    fprintf(stderr, "usage: %s bert|mamba\n", argv[0]);
    return 2;
  }
  arch_bert = strcmp(argv[1], "bert") == 0;
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_mixed_programs), cmocka_unit_test(test_f32_unchanged),
                                     cmocka_unit_test(test_loss_scale), cmocka_unit_test(test_bad_precision)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
