/* test_tape.c: recording and compiling. The tape dump, build errors that
 * name op/shapes/caller, gradient pruning (frozen params, data inputs),
 * accumulation of reused values, DCE, gradient-ready hooks, gradient
 * accumulation across runs, the program cache, eager mode, and a backend
 * without kernels. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

/* A 2-layer MLP with cross-entropy, optionally inside a layer and scope. */
typedef struct {
  mb_var x, labels, logits, loss, w1, b1, w2, b2;
} mlp;

static mlp build_mlp(mb_graph *g, int64_t B, int64_t D, int64_t Hd, int64_t C) {
  mlp m;
  m.x = mb_input(g, "x", MB_F32, mb_shape2(B, D));
  m.labels = mb_input(g, "labels", MB_I32, mb_shape1(B));
  mb_graph_layer_begin(g, "layer0");
  mb_graph_scope_push(g, "mlp");
  m.w1 = mb_param(g, "w1", mb_shape2(Hd, D));
  m.b1 = mb_param(g, "b1", mb_shape1(Hd));
  mb_var h = mb_relu(g, mb_linear(g, m.x, m.w1, m.b1));
  mb_graph_scope_pop(g);
  mb_graph_layer_end(g);
  m.w2 = mb_param(g, "w2", mb_shape2(C, Hd));
  m.b2 = mb_param(g, "b2", mb_shape1(C));
  m.logits = mb_linear(g, h, m.w2, m.b2);
  m.loss = mb_cross_entropy(g, m.logits, m.labels);
  mb_set_loss(g, m.loss);
  mb_mark_output(g, m.logits);
  return m;
}

static void init_params(mb_params *p, uint64_t seed) {
  for (int i = 0; i < mb_params_count(p); i++) {
    mb_tensor t = mb_params_tensor(p, i);
    tu_fill_f32(t.data, mb_tensor_numel(&t), &seed);
  }
}

static void feed_mlp(mb_exec *ex, const mlp *m, int64_t B, int64_t D, int64_t C, uint64_t seed) {
  float *x = malloc((size_t)(B * D) * sizeof *x);
  int32_t *lab = malloc((size_t)B * sizeof *lab);
  tu_fill_f32(x, B * D, &seed);
  for (int64_t i = 0; i < B; i++)
    lab[i] = (int32_t)(i % C);
  ASSERT_OK(mb_exec_set_input(ex, m->x, x));
  ASSERT_OK(mb_exec_set_input(ex, m->labels, lab));
  free(x);
  free(lab);
}

static void test_dump(void **state) {
  (void)state;
  mb_params *p;
  mb_graph *g;
  ASSERT_OK(mb_params_new(MB_F32, &p));
  ASSERT_OK(mb_graph_new(p, &g));
  build_mlp(g, 3, 5, 4, 2);
  mb_compile_opts o = {.train = 1};
  ASSERT_OK(mb_graph_compile(g, &o));
  char *d = mb_graph_dump_string(g);
  printf("%s", d);
  const char *expect[] = {
      "forward tape: 4 nodes",
      "f0    %4 f32[3, 4] = matmul(x f32[3, 5], w1 f32[4, 5], b1 f32[4]) trans_a=0 trans_b=1  @layer0.mlp",
      "= relu(%4 f32[3, 4])",
      "%9 f32[], %10 f32[3] = cross_entropy(%8 f32[3, 2], labels i32[3]) ignore_index=-100",
      "backward tape: 8 nodes",
      "= full() dtype=f32 value=1 shape=[]",
      "cross_entropy_grad(",
      "->grad(w1) = matmul(",
      "->grad(b2) = sum_to(",
      "act_grad(%4 f32[3, 4], ",
      "act=relu",
      "plan: arena ",
      "test_tape.c:",
  };
  for (size_t i = 0; i < sizeof expect / sizeof *expect; i++)
    if (!strstr(d, expect[i]))
      fail_msg("dump lacks \"%s\"", expect[i]);
  free(d);
  mb_graph_free(g);
  mb_params_free(p);
}

static void test_build_errors(void **state) {
  (void)state;
  mb_params *p;
  mb_graph *g;
  ASSERT_OK(mb_params_new(MB_F32, &p));
  ASSERT_OK(mb_graph_new(p, &g));
  mb_var a = mb_input(g, "a", MB_F32, mb_shape2(2, 3)), b = mb_input(g, "b", MB_F32, mb_shape2(4, 5));
  ASSERT_OK(mb_graph_scope_push(g, "encoder"));
  ASSERT_OK(mb_graph_scope_push(g, "attention"));
  int line = __LINE__ + 1;
  mb_var c = mb_matmul(g, a, b, 0, 0);
  assert_false(mb_var_ok(c));
  /* Later builders fed the failed value stay quiet; the first error stays. */
  mb_var d = mb_gelu(g, c);
  assert_false(mb_var_ok(d));
  assert_int_equal(mb_graph_status(g), MB_ESHAPE);
  char want[160];
  snprintf(want, sizeof want, "op 'matmul' at tests/autograd/test_tape.c:%d (test_build_errors) in scope 'encoder.attention'", line);
  const char *msg = mb_graph_error(g);
  printf("  %s\n", msg);
  assert_non_null(strstr(msg, want));
  assert_non_null(strstr(msg, "inputs f32[2, 3], f32[4, 5]"));
  assert_non_null(strstr(msg, "inner dimensions differ"));
  mb_compile_opts o = {.train = 0};
  assert_int_equal(mb_graph_compile(g, &o), MB_ESHAPE);
  assert_non_null(strstr(mb_error_message(), want));
  mb_graph_free(g);

  /* dtype mismatch, non-float activation, bad broadcast, param reshaped */
  struct {
    int kind;
    const char *needle;
  } cases[] = {{0, "dtypes differ (f32 vs f64)"},
               {1, "must be a float tensor, got i32"},
               {2, "shapes do not broadcast"},
               {3, "declared again with shape [3]"},
               {4, "the loss must be one float element, got f32[2, 3]"},
               {5, "cannot reshape 6 elements to [4]"},
               {6, "slice [2, 5) outside dim 1 of size 3"}};
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    ASSERT_OK(mb_graph_new(p, &g));
    mb_var f32 = mb_input(g, "f", MB_F32, mb_shape2(2, 3));
    mb_var f64 = mb_input(g, "d", MB_F64, mb_shape2(2, 3));
    mb_var i32 = mb_input(g, "i", MB_I32, mb_shape2(2, 3));
    mb_var r = MB_VAR_NONE;
    int rc = MB_OK;
    switch (cases[k].kind) {
    case 0: r = mb_add(g, f32, f64); break;
    case 1: r = mb_gelu(g, i32); break;
    case 2: r = mb_mul(g, f32, mb_input(g, "e", MB_F32, mb_shape1(4))); break;
    case 3:
      mb_param(g, "w", mb_shape1(4));
      r = mb_param(g, "w", mb_shape1(3));
      break;
    case 4: rc = mb_set_loss(g, f32); break;
    case 5: r = mb_reshape(g, f32, mb_shape1(4)); break;
    default: r = mb_slice(g, f32, 1, 2, 3); break;
    }
    assert_false(mb_var_ok(r));
    (void)rc;
    assert_int_not_equal(mb_graph_status(g), MB_OK);
    if (!strstr(mb_graph_error(g), cases[k].needle))
      fail_msg("case %d: \"%s\" lacks \"%s\"", cases[k].kind, mb_graph_error(g), cases[k].needle);
    mb_graph_free(g);
  }
  mb_params_free(p);
}

/* Count backward nodes that read a value. */
static int bwd_readers(const mb_graph *g, mb_var v) {
  int n = 0;
  for (int i = 0; i < mb_graph_num_nodes(g, 1); i++) {
    const mb_node *nd = mb_graph_node(g, 1, i);
    for (int j = 0; j < nd->n_in; j++)
      n += nd->in[j] == v.id;
  }
  return n;
}

static void test_pruning(void **state) {
  (void)state;
  mb_params *p;
  mb_graph *g;
  ASSERT_OK(mb_params_new(MB_F32, &p));
  ASSERT_OK(mb_graph_new(p, &g));
  mlp m = build_mlp(g, 3, 5, 4, 2);
  mb_compile_opts o = {.train = 1};
  ASSERT_OK(mb_graph_compile(g, &o));
  int full_bwd = mb_graph_num_nodes(g, 1);
  /* x is an input: nothing computes its gradient, so w1 is never read by
   * backward (that would be dx = dh @ w1). */
  assert_int_equal(bwd_readers(g, m.w1), 0);
  assert_false(mb_var_ok(mb_graph_grad(g, m.x)));
  mb_graph_free(g);

  ASSERT_OK(mb_params_set_trainable(p, mb_params_find(p, "w1"), 0));
  ASSERT_OK(mb_params_set_trainable(p, mb_params_find(p, "b1"), 0));
  ASSERT_OK(mb_graph_new(p, &g));
  m = build_mlp(g, 3, 5, 4, 2);
  ASSERT_OK(mb_graph_compile(g, &o));
  int frozen_bwd = mb_graph_num_nodes(g, 1);
  printf("  backward nodes: %d all trainable, %d with layer 1 frozen\n", full_bwd, frozen_bwd);
  assert_true(frozen_bwd <= full_bwd - 4); /* dh, act_grad, dw1, db1 gone */
  assert_int_equal(bwd_readers(g, m.w2), 0); /* dh = dlogits @ w2 pruned too */
  for (int i = 0; i < mb_graph_num_nodes(g, 1); i++) {
    const mb_node *nd = mb_graph_node(g, 1, i);
    assert_int_not_equal(nd->op, MB_OP_ACT_GRAD);
  }
  /* The frozen gradients are never written. */
  mb_exec *ex;
  ASSERT_OK(mb_exec_new(g, mb_cpu_backend(), &ex));
  init_params(p, 1);
  float *gw1 = mb_params_grad_tensor(p, mb_params_find(p, "w1")).data;
  for (int i = 0; i < 20; i++)
    gw1[i] = 123.0f;
  feed_mlp(ex, &m, 3, 5, 2, 2);
  ASSERT_OK(mb_exec_forward(ex));
  ASSERT_OK(mb_exec_backward(ex));
  for (int i = 0; i < 20; i++)
    assert_true(gw1[i] == 123.0f);
  /* Changing trainability after compile: the program refuses to run. */
  ASSERT_OK(mb_params_set_trainable(p, mb_params_find(p, "w1"), 1));
  assert_int_equal(mb_exec_forward(ex), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "trainability changed"));
  mb_exec_free(ex);
  mb_graph_free(g);
  mb_params_free(p);
}

static void test_reuse_and_dce(void **state) {
  (void)state;
  mb_params *p;
  mb_graph *g;
  ASSERT_OK(mb_params_new(MB_F64, &p));
  ASSERT_OK(mb_graph_new(p, &g));
  mb_var x = mb_param(g, "x", mb_shape1(4));
  mb_var unused = mb_tanh(g, mb_exp(g, x)); /* dead: nobody reads it */
  (void)unused;
  mb_var loss = mb_sum(g, mb_mul(g, x, x));
  ASSERT_OK(mb_set_loss(g, loss));
  mb_compile_opts o = {.train = 1};
  ASSERT_OK(mb_graph_compile(g, &o));
  assert_int_equal(mb_graph_num_nodes(g, 0), 2); /* mul, sum_to */
  int adds = 0;
  for (int i = 0; i < mb_graph_num_nodes(g, 1); i++)
    adds += mb_graph_node(g, 1, i)->op == MB_OP_ADD;
  assert_int_equal(adds, 1); /* the two contributions of x*x summed once */
  mb_exec *ex;
  ASSERT_OK(mb_exec_new(g, mb_cpu_backend(), &ex));
  double xv[4] = {1.5, -2, 0.25, 3};
  ASSERT_OK(mb_params_set(p, 0, xv));
  ASSERT_OK(mb_exec_forward(ex));
  ASSERT_OK(mb_exec_backward(ex));
  const double *gx = mb_params_grad(p);
  for (int i = 0; i < 4; i++)
    assert_true(gx[i] == 2 * xv[i]);
  mb_exec_free(ex);
  mb_graph_free(g);
  mb_params_free(p);
}

/* Slices of one value: their gradients are joined by one concat (zero
 * fills where no slice reaches; slices in any order), not padded and
 * added; overlapping slices fall back to adds. Values checked exactly
 * (f64, simple functions). */
static void test_slice_grads_joined(void **state) {
  (void)state;
  for (int overlap = 0; overlap < 2; overlap++) {
    mb_params *p;
    mb_graph *g;
    ASSERT_OK(mb_params_new(MB_F64, &p));
    ASSERT_OK(mb_graph_new(p, &g));
    mb_var x = mb_param(g, "x", mb_shape2(2, 8));
    /* columns [5, 7) first, then [0, 2), then [2, 4) (or [1, 3), overlapping [0, 2)); 4 and 7 unused */
    mb_var a = mb_slice(g, x, 1, 5, 2), b = mb_slice(g, x, 1, 0, 2), c = mb_slice(g, x, 1, overlap ? 1 : 2, 2);
    mb_var loss = mb_add(g, mb_add(g, mb_sum(g, mb_mul(g, a, a)), mb_sum(g, mb_affine(g, b, 3.0, 0.0))),
                         mb_sum(g, mb_affine(g, c, -2.0, 0.0)));
    ASSERT_OK(mb_set_loss(g, loss));
    mb_compile_opts o = {.train = 1};
    ASSERT_OK(mb_graph_compile(g, &o));
    int concats = 0, slice_grads = 0, adds = 0;
    for (int i = 0; i < mb_graph_num_nodes(g, 1); i++) {
      const int op = mb_graph_node(g, 1, i)->op;
      concats += op == MB_OP_CONCAT, slice_grads += op == MB_OP_SLICE_GRAD, adds += op == MB_OP_ADD;
    }
    if (!overlap) {
      assert_int_equal(concats, 1);
      assert_int_equal(slice_grads, 0);
    } else { /* c's gradient comes first (reverse order) and b's overlaps it: padded and added, and a's after */
      assert_int_equal(concats, 0);
      assert_int_equal(slice_grads, 3);
      assert_true(adds >= 2);
    }
    mb_exec *ex;
    ASSERT_OK(mb_exec_new(g, mb_cpu_backend(), &ex));
    double xv[16];
    for (int i = 0; i < 16; i++)
      xv[i] = 0.5 * i - 3;
    ASSERT_OK(mb_params_set(p, 0, xv));
    ASSERT_OK(mb_exec_forward(ex));
    ASSERT_OK(mb_exec_backward(ex));
    const double *gx = mb_params_grad(p);
    for (int r = 0; r < 2; r++)
      for (int col = 0; col < 8; col++) {
        double want = 0;
        want += col >= 5 && col < 7 ? 2 * xv[r * 8 + col] : 0;
        want += col < 2 ? 3 : 0;
        const int c0 = overlap ? 1 : 2;
        want += col >= c0 && col < c0 + 2 ? -2 : 0;
        if (gx[r * 8 + col] != want)
          fail_msg("overlap %d: d loss / d x[%d][%d] = %g, want %g", overlap, r, col, gx[r * 8 + col], want);
      }
    mb_exec_free(ex);
    mb_graph_free(g);
    mb_params_free(p);
  }
}

/* ---- gradient-ready hooks ---- */

typedef struct {
  int n;
  int order[16];
  float snapshot[16][64];
  mb_params *p;
} hook_log;

static void on_ready(void *user, const mb_grad_ready *info) {
  hook_log *h = user;
  const float *gbuf = mb_params_grad(h->p);
  h->order[h->n] = info->param_index;
  memcpy(h->snapshot[h->n], gbuf + info->offset, (size_t)info->numel * sizeof(float));
  h->n++;
}

static void test_grad_ready_hook(void **state) {
  (void)state;
  mb_params *p;
  mb_graph *g;
  ASSERT_OK(mb_params_new(MB_F32, &p));
  ASSERT_OK(mb_graph_new(p, &g));
  mlp m = build_mlp(g, 3, 5, 4, 2);
  mb_var unused = mb_param(g, "unused", mb_shape1(3)); /* not reached by the loss */
  (void)unused;
  mb_compile_opts o = {.train = 1};
  ASSERT_OK(mb_graph_compile(g, &o));
  mb_exec *ex;
  ASSERT_OK(mb_exec_new(g, mb_cpu_backend(), &ex));
  init_params(p, 3);
  float *gbuf = mb_params_grad(p);
  for (int64_t i = 0; i < mb_params_total(p); i++)
    gbuf[i] = NAN;
  hook_log log = {.p = p};
  mb_exec_on_grad_ready(ex, on_ready, &log);
  feed_mlp(ex, &m, 3, 5, 2, 4);
  ASSERT_OK(mb_exec_forward(ex));
  ASSERT_OK(mb_exec_backward(ex));
  int n;
  const mb_grad_ready *order = mb_exec_grad_order(ex, &n);
  assert_int_equal(n, 5);
  assert_int_equal(log.n, 5);
  printf("  gradient-ready order:");
  for (int i = 0; i < n; i++) {
    printf(" %s(b%d)", order[i].name, order[i].bwd_node);
    assert_int_equal(log.order[i], order[i].param_index);
    /* What the hook saw is the final gradient. */
    assert_memory_equal(log.snapshot[i], gbuf + order[i].offset, (size_t)order[i].numel * sizeof(float));
  }
  printf("\n");
  /* The unused parameter first (zero), then layer 2 before layer 1. */
  assert_string_equal(order[0].name, "unused");
  for (int i = 0; i < 3; i++)
    assert_true(gbuf[order[0].offset + i] == 0.0f);
  int pos_w2 = -1, pos_w1 = -1;
  for (int i = 0; i < n; i++) {
    if (strcmp(order[i].name, "w2") == 0)
      pos_w2 = i;
    if (strcmp(order[i].name, "w1") == 0)
      pos_w1 = i;
  }
  assert_true(pos_w2 < pos_w1);
  mb_exec_free(ex);
  mb_graph_free(g);
  mb_params_free(p);
}

static void test_accumulate_grads(void **state) {
  (void)state;
  float once[256], twice[256];
  int64_t total = 0;
  for (int acc = 0; acc < 2; acc++) {
    mb_params *p;
    mb_graph *g;
    ASSERT_OK(mb_params_new(MB_F32, &p));
    ASSERT_OK(mb_graph_new(p, &g));
    mlp m = build_mlp(g, 3, 5, 4, 2);
    mb_compile_opts o = {.train = 1, .accumulate_grads = acc};
    ASSERT_OK(mb_graph_compile(g, &o));
    mb_exec *ex;
    ASSERT_OK(mb_exec_new(g, mb_cpu_backend(), &ex));
    init_params(p, 5);
    ASSERT_OK(mb_params_zero_grad(p));
    feed_mlp(ex, &m, 3, 5, 2, 6);
    for (int r = 0; r < 1 + acc; r++) {
      ASSERT_OK(mb_exec_forward(ex));
      ASSERT_OK(mb_exec_backward(ex));
    }
    total = mb_params_total(p);
    assert_true(total <= 256);
    memcpy(acc ? twice : once, mb_params_grad(p), (size_t)total * sizeof(float));
    mb_exec_free(ex);
    mb_graph_free(g);
    mb_params_free(p);
  }
  for (int64_t i = 0; i < total; i++)
    assert_true(twice[i] == 2.0f * once[i]);
}

/* ---- program cache ---- */

typedef struct {
  int builds;
} cache_user;

static int build_seq(void *user, mb_graph *g, const int64_t *key, int nkey) {
  cache_user *u = user;
  u->builds++;
  assert_int_equal(nkey, 2);
  int64_t B = key[0], L = key[1], H = 8;
  mb_var ids = mb_input(g, "ids", MB_I32, mb_shape2(B, L));
  mb_var labels = mb_input(g, "labels", MB_I32, mb_shape1(B));
  mb_var e = mb_embedding(g, ids, mb_param(g, "emb", mb_shape2(16, H)));
  mb_var h = mb_gelu(g, mb_linear(g, e, mb_param(g, "w", mb_shape2(H, H)), mb_param(g, "b", mb_shape1(H))));
  mb_var logits = mb_linear(g, mb_mean_pool(g, h, MB_VAR_NONE), mb_param(g, "head", mb_shape2(2, H)), MB_VAR_NONE);
  return mb_set_loss(g, mb_cross_entropy(g, logits, labels));
}

static float run_key(mb_exec *ex, int64_t B, int64_t L) {
  int32_t *ids = malloc((size_t)(B * L) * sizeof *ids), lab[4] = {0, 1, 1, 0};
  for (int64_t i = 0; i < B * L; i++)
    ids[i] = (int32_t)((i * 7 + i / 3) % 16);
  ASSERT_OK(mb_exec_set_input_by_name(ex, "ids", ids));
  ASSERT_OK(mb_exec_set_input_by_name(ex, "labels", lab));
  ASSERT_OK(mb_exec_forward(ex));
  ASSERT_OK(mb_exec_backward(ex));
  float loss;
  ASSERT_OK(mb_exec_get(ex, mb_graph_loss(mb_exec_graph(ex)), &loss));
  free(ids);
  return loss;
}

static void test_program_cache(void **state) {
  (void)state;
  mb_params *p;
  ASSERT_OK(mb_params_new(MB_F32, &p));
  cache_user u = {0};
  mb_compile_opts o = {.train = 1};
  mb_program_cache *c;
  ASSERT_OK(mb_program_cache_new(p, mb_cpu_backend(), &o, build_seq, &u, &c));
  mb_exec *e64, *e128, *again;
  int64_t k64[2] = {4, 64}, k128[2] = {4, 128};
  ASSERT_OK(mb_program_cache_get(c, k64, 2, &e64));
  init_params(p, 9);
  float l64 = run_key(e64, 4, 64);
  ASSERT_OK(mb_program_cache_get(c, k128, 2, &e128)); /* grows the shared arena */
  float l128 = run_key(e128, 4, 128);
  ASSERT_OK(mb_program_cache_get(c, k64, 2, &again));
  assert_ptr_equal(again, e64);
  assert_int_equal(u.builds, 2);
  assert_int_equal(mb_program_cache_size(c), 2);
  /* The first program still runs right after the arena moved. */
  assert_true(run_key(e64, 4, 64) == l64);
  assert_true(isfinite(l128));
  printf("  cached programs: 2 builds for 3 lookups; losses %.6f (L=64) %.6f (L=128)\n", l64, l128);
  mb_program_cache_free(c);
  mb_params_free(p);
}

/* ---- eager ---- */

static void test_eager_matches_compiled(void **state) {
  (void)state;
  mb_params *p;
  ASSERT_OK(mb_params_new(MB_F64, &p));
  double xv[12], out_eager[4], loss_eager, grad_eager[64];
  uint64_t s = 7;
  tu_fill_f64(xv, 12, &s);
  int32_t lab[3] = {1, 0, 1};
  /* eager: every op runs while recorded */
  mb_graph *g;
  ASSERT_OK(mb_graph_new(p, &g));
  ASSERT_OK(mb_graph_set_eager(g, mb_cpu_backend()));
  mb_var x = mb_input(g, "x", MB_F64, mb_shape2(3, 4));
  ASSERT_OK(mb_graph_feed(g, x, xv));
  mb_var labels = mb_input(g, "labels", MB_I32, mb_shape1(3));
  ASSERT_OK(mb_graph_feed(g, labels, lab));
  mb_var w = mb_param(g, "w", mb_shape2(2, 4)); /* materialises the store */
  uint64_t ps = 8;
  tu_fill_f64(mb_params_data(p), mb_params_total(p), &ps);
  mb_var logits = mb_linear(g, mb_tanh(g, x), w, MB_VAR_NONE);
  /* Values are there as soon as the builder returns. */
  const double *lv = mb_graph_eager_data(g, logits);
  assert_non_null(lv);
  memcpy(out_eager, lv, 4 * sizeof(double));
  mb_var loss = mb_cross_entropy(g, logits, labels);
  ASSERT_OK(mb_set_loss(g, loss));
  loss_eager = *(const double *)mb_graph_eager_data(g, loss);
  ASSERT_OK(mb_graph_backward(g, 0));
  mb_var gw = mb_graph_grad(g, w);
  assert_true(mb_var_ok(gw));
  memcpy(grad_eager, mb_graph_eager_data(g, gw), 8 * sizeof(double));
  mb_graph_free(g);

  /* compiled */
  ASSERT_OK(mb_graph_new(p, &g));
  x = mb_input(g, "x", MB_F64, mb_shape2(3, 4));
  labels = mb_input(g, "labels", MB_I32, mb_shape1(3));
  w = mb_param(g, "w", mb_shape2(2, 4));
  logits = mb_linear(g, mb_tanh(g, x), w, MB_VAR_NONE);
  loss = mb_cross_entropy(g, logits, labels);
  ASSERT_OK(mb_set_loss(g, loss));
  ASSERT_OK(mb_mark_output(g, logits));
  mb_compile_opts o = {.train = 1};
  ASSERT_OK(mb_graph_compile(g, &o));
  mb_exec *ex;
  ASSERT_OK(mb_exec_new(g, mb_cpu_backend(), &ex));
  ASSERT_OK(mb_exec_set_input(ex, x, xv));
  ASSERT_OK(mb_exec_set_input(ex, labels, lab));
  ASSERT_OK(mb_exec_forward(ex));
  ASSERT_OK(mb_exec_backward(ex));
  double out_c[6], loss_c;
  ASSERT_OK(mb_exec_get(ex, logits, out_c));
  ASSERT_OK(mb_exec_get(ex, loss, &loss_c));
  assert_memory_equal(out_c, out_eager, 4 * sizeof(double));
  assert_true(loss_c == loss_eager);
  assert_memory_equal(mb_params_grad(p), grad_eager, 8 * sizeof(double));
  mb_exec_free(ex);
  mb_graph_free(g);
  mb_params_free(p);
}

/* ---- a backend that never registered kernels ---- */

static int fake_alloc(mb_backend *be, size_t n, void **out) { return mb_cpu_backend()->alloc(be, n, out); }
static void fake_free(mb_backend *be, void *ptr) { mb_cpu_backend()->free(be, ptr); }
static int fake_fill(mb_backend *be, void *d, mb_dtype dt, size_t n, double v) {
  return mb_cpu_backend()->fill(be, d, dt, n, v);
}

static void test_backend_without_kernels(void **state) {
  (void)state;
  mb_backend fake = {.id = MB_BACKEND_CUDA, .name = "cuda", .alloc = fake_alloc, .free = fake_free, .fill = fake_fill};
  mb_params *p;
  mb_graph *g;
  ASSERT_OK(mb_params_new(MB_F32, &p));
  ASSERT_OK(mb_graph_new(p, &g));
  build_mlp(g, 2, 3, 4, 2);
  mb_compile_opts o = {.train = 1};
  ASSERT_OK(mb_graph_compile(g, &o));
  mb_exec *ex = NULL;
  assert_int_equal(mb_exec_new(g, &fake, &ex), MB_EUNSUPPORTED);
  assert_null(ex);
  printf("  %s\n", mb_error_message());
  assert_non_null(strstr(mb_error_message(), "op 'matmul' (node f0) has no cuda kernel registered"));
  mb_graph_free(g);
  mb_params_free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dump),
      cmocka_unit_test(test_build_errors),
      cmocka_unit_test(test_pruning),
      cmocka_unit_test(test_reuse_and_dce),
      cmocka_unit_test(test_slice_grads_joined),
      cmocka_unit_test(test_grad_ready_hook),
      cmocka_unit_test(test_accumulate_grads),
      cmocka_unit_test(test_program_cache),
      cmocka_unit_test(test_eager_matches_compiled),
      cmocka_unit_test(test_backend_without_kernels),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
