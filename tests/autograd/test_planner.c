/* test_planner.c: the memory planner and activation recompute on a 4-layer
 * BERT-shaped training graph (embeddings, attention with a padding mask and
 * dropout, post-LN, GELU MLP, pooler, classifier, cross-entropy).
 *
 * memplan: the arena is well under the sum of all buffers; a run
 *   with reuse and poisoning (every buffer NaN-filled when it dies) gives
 *   bit-identical loss and gradients to a run where nothing shares memory;
 *   and a planted planner bug (a lifetime cut short) is caught by poisoning.
 * memplan_recompute: recomputing each layer's forward in backward keeps
 *   fewer activations and gives bit-identical gradients. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

enum { B = 4, L = 64, H = 128, NH = 4, HD = 32, FF = 512, V = 1000, NL = 4, C = 2 };

typedef struct {
  mb_var ids, mask, labels, rng, loss, logits;
} bert_io;

static bert_io build_bert(mb_graph *g) {
  bert_io io;
  io.ids = mb_input(g, "input_ids", MB_I32, mb_shape2(B, L));
  io.mask = mb_input(g, "attn_bias", MB_F32, mb_shape4(B, 1, 1, L));
  io.labels = mb_input(g, "labels", MB_I32, mb_shape1(B));
  io.rng = mb_input(g, "rng", MB_U64, mb_shape1(2));
  mb_var x = mb_add(g, mb_embedding(g, io.ids, mb_param(g, "emb.word", mb_shape2(V, H))),
                    mb_param(g, "emb.pos", mb_shape2(L, H)));
  x = mb_layernorm(g, x, mb_param(g, "emb.ln.w", mb_shape1(H)), mb_param(g, "emb.ln.b", mb_shape1(H)), 1e-12);
  x = mb_dropout(g, x, 0.1, io.rng, 0);
  int perm[4] = {0, 2, 1, 3};
  for (int l = 0; l < NL; l++) {
    char n[64], lname[32];
#define P(name, shape) (snprintf(n, sizeof n, "layer.%d.%s", l, name), mb_param(g, n, shape))
    snprintf(lname, sizeof lname, "layer.%d", l);
    mb_graph_layer_begin(g, lname);
    mb_graph_scope_push(g, "attention");
    mb_var q = mb_linear(g, x, P("q.w", mb_shape2(H, H)), P("q.b", mb_shape1(H)));
    mb_var k = mb_linear(g, x, P("k.w", mb_shape2(H, H)), P("k.b", mb_shape1(H)));
    mb_var v = mb_linear(g, x, P("v.w", mb_shape2(H, H)), P("v.b", mb_shape1(H)));
    q = mb_permute(g, mb_reshape(g, q, mb_shape4(B, L, NH, HD)), 4, perm);
    k = mb_permute(g, mb_reshape(g, k, mb_shape4(B, L, NH, HD)), 4, perm);
    v = mb_permute(g, mb_reshape(g, v, mb_shape4(B, L, NH, HD)), 4, perm);
    mb_var s = mb_add(g, mb_scale(g, mb_matmul(g, q, k, 0, 1), 1.0 / sqrt((double)HD)), io.mask);
    mb_var pr = mb_dropout(g, mb_softmax(g, s), 0.1, io.rng, 1 + 3 * l);
    mb_var ctx = mb_reshape(g, mb_permute(g, mb_matmul(g, pr, v, 0, 0), 4, perm), mb_shape3(B, L, H));
    mb_var a = mb_dropout(g, mb_linear(g, ctx, P("o.w", mb_shape2(H, H)), P("o.b", mb_shape1(H))), 0.1, io.rng, 2 + 3 * l);
    a = mb_layernorm(g, mb_add(g, a, x), P("ln1.w", mb_shape1(H)), P("ln1.b", mb_shape1(H)), 1e-12);
    mb_graph_scope_pop(g);
    mb_graph_scope_push(g, "mlp");
    mb_var f = mb_gelu(g, mb_linear(g, a, P("ff1.w", mb_shape2(FF, H)), P("ff1.b", mb_shape1(FF))));
    f = mb_dropout(g, mb_linear(g, f, P("ff2.w", mb_shape2(H, FF)), P("ff2.b", mb_shape1(H))), 0.1, io.rng, 3 + 3 * l);
    x = mb_layernorm(g, mb_add(g, f, a), P("ln2.w", mb_shape1(H)), P("ln2.b", mb_shape1(H)), 1e-12);
    mb_graph_scope_pop(g);
    mb_graph_layer_end(g);
#undef P
  }
  mb_var pooled = mb_tanh(g, mb_linear(g, mb_select(g, x, 1, 0), mb_param(g, "pool.w", mb_shape2(H, H)),
                                       mb_param(g, "pool.b", mb_shape1(H))));
  io.logits = mb_linear(g, pooled, mb_param(g, "cls.w", mb_shape2(C, H)), mb_param(g, "cls.b", mb_shape1(C)));
  io.loss = mb_cross_entropy(g, io.logits, io.labels);
  mb_set_loss(g, io.loss);
  mb_mark_output(g, io.logits);
  return io;
}

typedef struct {
  float loss;
  float *grad; /* copy of the flat gradient buffer */
  int64_t n;
  mb_plan_stats st;
} run_result;

/* Build, compile with opts, optionally plant a lifetime bug, run one step
 * with fixed parameters and data, and copy out loss and gradients. */
static run_result run_step(const mb_compile_opts *o, int plant_bug) {
  mb_params *p;
  mb_graph *g;
  ASSERT_OK(mb_params_new(MB_F32, &p));
  ASSERT_OK(mb_graph_new(p, &g));
  bert_io io = build_bert(g);
  ASSERT_OK(mb_graph_status(g));
  ASSERT_OK(mb_graph_compile(g, o));
  if (plant_bug) {
    /* The first softmax output (attention probabilities of layer 0) is read
     * by backward; pretend it dies right after the dropout that reads it. */
    for (int i = 0; i < mb_graph_num_nodes(g, 0); i++) {
      const mb_node *n = mb_graph_node(g, 0, i);
      if (n->op == MB_OP_SOFTMAX) {
        int first, last;
        mb_var probs = {n->out[0]};
        mb_graph_plan_offset(g, probs, &first, &last);
        assert_true(last >= mb_graph_num_nodes(g, 0)); /* really lives into backward */
        ASSERT_OK(mb_graph_plan_debug_truncate(g, probs, i + 1));
        break;
      }
    }
  }
  mb_exec *ex;
  ASSERT_OK(mb_exec_new(g, mb_cpu_backend(), &ex));
  uint64_t s = 2024;
  for (int i = 0; i < mb_params_count(p); i++) {
    mb_tensor t = mb_params_tensor(p, i);
    float *d = t.data;
    for (int64_t e = 0; e < mb_tensor_numel(&t); e++)
      d[e] = 0.05f * (float)tu_unif(&s);
  }
  int32_t ids[B * L], labels[B] = {0, 1, 1, 0};
  float bias[B * L];
  for (int i = 0; i < B * L; i++) {
    ids[i] = (int32_t)(tu_next(&s) % V);
    bias[i] = (i % L) < L - 9 * (i / L) ? 0.0f : -10000.0f; /* sequence b padded after L - 9b */
  }
  uint64_t rng[2] = {99, 0};
  ASSERT_OK(mb_exec_set_input(ex, io.ids, ids));
  ASSERT_OK(mb_exec_set_input(ex, io.mask, bias));
  ASSERT_OK(mb_exec_set_input(ex, io.labels, labels));
  ASSERT_OK(mb_exec_set_input(ex, io.rng, rng));
  ASSERT_OK(mb_exec_forward(ex));
  ASSERT_OK(mb_exec_backward(ex));
  run_result r;
  ASSERT_OK(mb_exec_get(ex, io.loss, &r.loss));
  r.n = mb_params_total(p);
  r.grad = malloc((size_t)r.n * sizeof *r.grad);
  memcpy(r.grad, mb_params_grad(p), (size_t)r.n * sizeof *r.grad);
  r.st = mb_graph_plan_stats(g);
  mb_exec_free(ex);
  mb_graph_free(g);
  mb_params_free(p);
  return r;
}

static int64_t count_nonfinite(const run_result *r) {
  int64_t bad = 0;
  for (int64_t i = 0; i < r->n; i++)
    bad += !isfinite(r->grad[i]);
  return bad;
}

static void print_stats(const char *what, const run_result *r) {
  printf("  %-22s arena %8.2f MiB  sum of buffers %8.2f MiB  (%.1f%%)  activations kept %7.2f MiB  nodes %d fwd + %d "
         "bwd (%d recomputed)  loss %.6f\n",
         what, r->st.arena_bytes / 1048576.0, r->st.sum_bytes / 1048576.0,
         100.0 * (double)r->st.arena_bytes / (double)r->st.sum_bytes, r->st.activation_bytes / 1048576.0,
         r->st.n_nodes_fwd, r->st.n_nodes_bwd, r->st.n_recomputed, r->loss);
}

static void test_planner(void **state) {
  (void)state;
  mb_compile_opts planned = {.train = 1, .poison = 1};
  mb_compile_opts reference = {.train = 1, .no_reuse = 1};
  run_result a = run_step(&planned, 0), ref = run_step(&reference, 0);
  print_stats("planned + poison", &a);
  print_stats("no reuse (reference)", &ref);
  assert_true(a.st.arena_bytes * 3 < a.st.sum_bytes); /* well under: less than a third */
  assert_int_equal(ref.st.arena_bytes, ref.st.sum_bytes);
  assert_int_equal(count_nonfinite(&a), 0);
  assert_true(isfinite(a.loss));
  assert_true(a.loss == ref.loss);
  assert_memory_equal(a.grad, ref.grad, (size_t)a.n * sizeof(float));
  free(a.grad), free(ref.grad);
}

static void test_poison_catches_planted_bug(void **state) {
  (void)state;
  /* Without reuse nothing overwrites the dead buffer: the read sees NaN. */
  mb_compile_opts alone = {.train = 1, .poison = 1, .no_reuse = 1};
  run_result bug = run_step(&alone, 1);
  int64_t bad = count_nonfinite(&bug);
  printf("  layer 0's attention probabilities cut short, no reuse: %lld of %lld gradient elements NaN\n",
         (long long)bad, (long long)bug.n);
  assert_true(bad > 0);
  /* With reuse another buffer may have taken the bytes: the gradients are
   * wrong (or NaN) either way, and the comparison with a correct run shows it. */
  mb_compile_opts planned = {.train = 1, .poison = 1}, good = {.train = 1};
  run_result bug2 = run_step(&planned, 1), ok = run_step(&good, 0);
  int64_t differ = 0;
  for (int64_t i = 0; i < ok.n; i++)
    differ += !(bug2.grad[i] == ok.grad[i]);
  printf("  same bug with reuse: %lld gradient elements differ from a correct run\n", (long long)differ);
  assert_true(differ > 0);
  free(bug.grad), free(bug2.grad), free(ok.grad);
}

static void test_recompute(void **state) {
  (void)state;
  mb_compile_opts plain = {.train = 1}, rec = {.train = 1, .recompute = 1, .poison = 1};
  run_result a = run_step(&plain, 0), b = run_step(&rec, 0);
  print_stats("keep activations", &a);
  print_stats("recompute per layer", &b);
  assert_true(b.st.n_recomputed > 0);
  assert_true(b.st.activation_bytes * 2 < a.st.activation_bytes);
  assert_true(b.st.arena_bytes < a.st.arena_bytes);
  assert_true(a.loss == b.loss);
  assert_memory_equal(a.grad, b.grad, (size_t)a.n * sizeof(float));
  free(a.grad), free(b.grad);
}

int main(int argc, char **argv) {
  const char *group = argc > 1 ? argv[1] : "all";
  const struct CMUnitTest planner[] = {cmocka_unit_test(test_planner), cmocka_unit_test(test_poison_catches_planted_bug)};
  const struct CMUnitTest recompute[] = {cmocka_unit_test(test_recompute)};
  int fails = 0, all = strcmp(group, "all") == 0;
  if (all || strcmp(group, "planner") == 0)
    fails += cmocka_run_group_tests_name("planner", planner, NULL, NULL);
  if (all || strcmp(group, "recompute") == 0)
    fails += cmocka_run_group_tests_name("recompute", recompute, NULL, NULL);
  return fails ? 1 : 0;
}
