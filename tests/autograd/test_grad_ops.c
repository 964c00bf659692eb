/* test_grad_ops.c: float64 finite-difference checks of every op's backward
 * (through the AOT backward, the planner with poisoning, and the CPU
 * kernels), on random shapes with odd sizes and length-1 dims, and of small
 * composed BERT- and Mamba-shaped networks (with and without recompute).
 *
 * One executable, five ctest entries: grad_ops_elementwise, grad_ops_nn,
 * grad_ops_shape, grad_ops_seq (attention, selective scan, conv1d) and
 * grad_net (argv[1] picks the group). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

/* ---- the case description shared by build and init ---- */

typedef struct {
  uint64_t seed;
  int64_t d[8];
  double f[4];
  int i[4];
  int recompute;
  /* inputs fed by init */
  mb_var in[4];
  int n_in;
  void *in_data[4];
} gc_case;

static int64_t rdim(uint64_t *s) {
  static const int64_t dims[] = {1, 2, 3, 4, 5, 7};
  return dims[tu_next(s) % 6];
}

static int gc_init(void *user, mb_graph *g, mb_exec *ex) {
  (void)g;
  gc_case *c = user;
  for (int j = 0; j < c->n_in; j++)
    MB_TRY(mb_exec_set_input(ex, c->in[j], c->in_data[j]));
  return MB_OK;
}

static void gc_free_inputs(gc_case *c) {
  for (int j = 0; j < c->n_in; j++)
    free(c->in_data[j]);
  c->n_in = 0;
}

static void run_check(const char *what, int (*build)(void *, mb_graph *, mb_var *), gc_case *c) {
  mb_gradcheck_fn fn = {build, gc_init, c};
  mb_gradcheck_opts o = {.seed = c->seed + 1, .recompute = c->recompute};
  mb_gradcheck_result r;
  int rc = mb_gradcheck(mb_cpu_backend(), &fn, &o, &r);
  printf("  %-40s params %d checked %4d max abs %.2e max rel %.2e%s\n", what, r.n_params, r.n_checked, r.max_abs_err,
         r.max_rel_err, rc == MB_OK ? "" : "  FAILED");
  if (rc != MB_OK)
    fail_msg("%s: %s", what, mb_error_message());
  assert_true(r.n_checked > 0);
  gc_free_inputs(c);
}

/* An input whose values init feeds (owned by the case). */
static mb_var case_input(gc_case *c, mb_graph *g, const char *name, mb_dtype dt, mb_shape shape, void *data) {
  mb_var v = mb_input(g, name, dt, shape);
  c->in[c->n_in] = v;
  c->in_data[c->n_in++] = data;
  return v;
}

/* ---- elementwise ---- */

static int build_add(void *u, mb_graph *g, mb_var *y) {
  gc_case *c = u;
  /* a [d0, d1, d2], b broadcast per mode */
  mb_shape as = mb_shape3(c->d[0], c->d[1], c->d[2]), bs;
  switch (c->i[0]) {
  case 0: bs = as; break;
  case 1: bs = mb_shape1(c->d[2]); break;
  case 2: bs = mb_shape3(c->d[0], 1, c->d[2]); break;
  default: bs = mb_shape2(c->d[1], 1); break;
  }
  mb_var a = mb_param(g, "a", as), b = mb_param(g, "b", bs);
  *y = c->i[1] == 0 ? mb_add(g, a, b) : (c->i[1] == 1 ? mb_mul(g, a, b) : mb_axpby(g, b, a, 0.5, -2.0));
  return mb_graph_status(g);
}

static void test_add_mul(void **state) {
  (void)state;
  uint64_t s = 11;
  const char *ops[] = {"add", "mul", "axpby"};
  for (int op = 0; op < 3; op++)
    for (int mode = 0; mode < 4; mode++) {
      gc_case c = {.seed = tu_next(&s), .d = {rdim(&s), rdim(&s), rdim(&s)}, .i = {mode, op}};
      char what[80];
      snprintf(what, sizeof what, "%s broadcast mode %d [%lld,%lld,%lld]", ops[op], mode, (long long)c.d[0],
               (long long)c.d[1], (long long)c.d[2]);
      run_check(what, build_add, &c);
    }
}

static int build_unary(void *u, mb_graph *g, mb_var *y) {
  gc_case *c = u;
  mb_var x = mb_param(g, "x", mb_shape2(c->d[0], c->d[1]));
  if (c->i[0] == MB_OP_AFFINE)
    *y = mb_affine(g, x, -1.5, 0.25);
  else if (c->i[0] == MB_OP_SOFTPLUS)
    *y = mb_softplus(g, mb_scale(g, x, 30.0)); /* reaches past the threshold 20 */
  else
    *y = mb_unary_(g, MB_HERE, c->i[0], x);
  return mb_graph_status(g);
}

static void test_activations(void **state) {
  (void)state;
  uint64_t s = 12;
  int ops[] = {MB_OP_RELU, MB_OP_GELU, MB_OP_TANH, MB_OP_SIGMOID, MB_OP_SILU, MB_OP_SOFTPLUS, MB_OP_EXP, MB_OP_AFFINE};
  for (size_t k = 0; k < sizeof ops / sizeof *ops; k++)
    for (int trial = 0; trial < 2; trial++) {
      gc_case c = {.seed = tu_next(&s), .d = {rdim(&s), rdim(&s) + 2}, .i = {ops[k]}};
      char what[80];
      snprintf(what, sizeof what, "%s [%lld,%lld]", mb_op_name(ops[k]), (long long)c.d[0], (long long)c.d[1]);
      run_check(what, build_unary, &c);
    }
}

static int build_dropout(void *u, mb_graph *g, mb_var *y) {
  gc_case *c = u;
  uint64_t *rng = malloc(2 * sizeof *rng);
  rng[0] = 1234, rng[1] = (uint64_t)c->i[0] * 1000;
  mb_var r = case_input(c, g, "rng", MB_U64, mb_shape1(2), rng);
  mb_var x = mb_param(g, "x", mb_shape2(c->d[0], c->d[1]));
  /* two sites: different streams, different masks */
  *y = mb_add(g, mb_dropout(g, x, 0.3, r, 1), mb_dropout(g, mb_tanh(g, x), 0.5, r, 2));
  return mb_graph_status(g);
}

static void test_dropout(void **state) {
  (void)state;
  uint64_t s = 13;
  for (int trial = 0; trial < 3; trial++) {
    gc_case c = {.seed = tu_next(&s), .d = {rdim(&s), rdim(&s) + 3}, .i = {trial}};
    char what[80];
    snprintf(what, sizeof what, "dropout p=0.3/0.5 [%lld,%lld]", (long long)c.d[0], (long long)c.d[1]);
    run_check(what, build_dropout, &c);
  }
}

/* The checker itself must be able to fail: swap in a wrong activation
 * gradient kernel (twice the right one) and expect a mismatch. */
static int wrong_act_grad(const mb_kernel_call *k) {
  const double *s = k->in[0].data, *gy = k->in[1].data;
  double *gx = k->out[0].data;
  for (int64_t i = 0; i < mb_tensor_numel(&k->out[0]); i++)
    gx[i] = 2.0 * gy[i] * (1.0 - s[i] * s[i]);
  return MB_OK;
}

static void test_gradcheck_detects_wrong_kernel(void **state) {
  (void)state;
  mb_backend *be = mb_cpu_backend();
  mb_kernel_fn right = mb_op_kernel(MB_OP_ACT_GRAD, MB_BACKEND_CPU);
  mb_op_set_kernel(MB_OP_ACT_GRAD, MB_BACKEND_CPU, wrong_act_grad, NULL);
  gc_case c = {.seed = 3, .d = {3, 4}, .i = {MB_OP_TANH}};
  mb_gradcheck_fn fn = {build_unary, gc_init, &c};
  mb_gradcheck_result r;
  int rc = mb_gradcheck(be, &fn, NULL, &r);
  mb_op_set_kernel(MB_OP_ACT_GRAD, MB_BACKEND_CPU, right, NULL);
  assert_int_equal(rc, MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "gradient mismatch at x["));
  printf("  wrong tanh gradient caught: %s\n", mb_error_message());
}

static int build_reuse(void *u, mb_graph *g, mb_var *y) {
  (void)u;
  /* x used four times: gradients must accumulate. */
  mb_var x = mb_param(g, "x", mb_shape2(3, 4));
  *y = mb_add(g, mb_mul(g, x, x), mb_mul(g, mb_tanh(g, x), x));
  return mb_graph_status(g);
}

static void test_reuse_accumulates(void **state) {
  (void)state;
  gc_case c = {.seed = 5};
  run_check("x*x + tanh(x)*x (reuse)", build_reuse, &c);
}

/* ---- linear algebra, norms, losses, lookups ---- */

static int build_matmul(void *u, mb_graph *g, mb_var *y) {
  gc_case *c = u;
  int64_t M = c->d[0], K = c->d[1], N = c->d[2], B1 = c->d[3], B2 = c->d[4];
  int ta = c->i[0], tb = c->i[1], mode = c->i[2], bias = c->i[3];
  mb_shape as, bs;
  if (mode == 0) { /* 2-D */
    as = ta ? mb_shape2(K, M) : mb_shape2(M, K);
    bs = tb ? mb_shape2(N, K) : mb_shape2(K, N);
  } else if (mode == 1) { /* batched */
    as = ta ? mb_shape4(B1, B2, K, M) : mb_shape4(B1, B2, M, K);
    bs = tb ? mb_shape4(B1, B2, N, K) : mb_shape4(B1, B2, K, N);
  } else { /* shared 2-D b (a Linear over [B1, B2, M, K]) */
    as = mb_shape4(B1, B2, M, K);
    bs = tb ? mb_shape2(N, K) : mb_shape2(K, N);
    ta = 0;
  }
  mb_var a = mb_param(g, "a", as), b = mb_param(g, "b", bs);
  mb_var bb = bias ? mb_param(g, "bias", mb_shape1(N)) : MB_VAR_NONE;
  *y = mb_matmul_bias(g, a, b, bb, ta, tb);
  return mb_graph_status(g);
}

static void test_matmul(void **state) {
  (void)state;
  uint64_t s = 21;
  for (int mode = 0; mode < 3; mode++)
    for (int t = 0; t < 4; t++) {
      gc_case c = {.seed = tu_next(&s),
                   .d = {rdim(&s), rdim(&s), rdim(&s), rdim(&s) % 3 + 1, rdim(&s) % 2 + 1},
                   .i = {t & 1, t >> 1, mode, (int)(tu_next(&s) & 1)}};
      char what[96];
      snprintf(what, sizeof what, "matmul %s ta=%d tb=%d bias=%d M%lld K%lld N%lld",
               mode == 0 ? "2d" : (mode == 1 ? "batched" : "shared-b"), c.i[0], c.i[1], c.i[3], (long long)c.d[0],
               (long long)c.d[1], (long long)c.d[2]);
      run_check(what, build_matmul, &c);
    }
}

static int build_norm(void *u, mb_graph *g, mb_var *y) {
  gc_case *c = u;
  mb_shape xs = mb_shape3(c->d[0], c->d[1], c->d[2]);
  mb_var x = mb_param(g, "x", xs), w = mb_param(g, "w", mb_shape1(c->d[2]));
  if (c->i[0] == 0)
    *y = mb_layernorm(g, x, w, mb_param(g, "b", mb_shape1(c->d[2])), 1e-5);
  else if (c->i[0] == 1)
    *y = mb_rmsnorm(g, x, w, 1e-5);
  else
    *y = mb_mul(g, mb_softmax(g, x), w); /* the weight makes the gradient non-trivial */
  return mb_graph_status(g);
}

static void test_norms_softmax(void **state) {
  (void)state;
  uint64_t s = 31;
  const char *names[] = {"layernorm", "rmsnorm", "softmax"};
  for (int k = 0; k < 3; k++)
    for (int trial = 0; trial < 3; trial++) {
      gc_case c = {.seed = tu_next(&s), .d = {rdim(&s), rdim(&s), trial == 0 ? 1 : rdim(&s) + 1}, .i = {k}};
      if (k == 0 && c.d[2] == 1)
        c.d[2] = 2; /* a single-element LayerNorm is constant: nothing to check */
      char what[80];
      snprintf(what, sizeof what, "%s [%lld,%lld,%lld]", names[k], (long long)c.d[0], (long long)c.d[1],
               (long long)c.d[2]);
      run_check(what, build_norm, &c);
    }
}

static int build_ce(void *u, mb_graph *g, mb_var *y) {
  gc_case *c = u;
  int64_t N = c->d[0], C = c->d[1];
  int32_t *lab = malloc((size_t)N * sizeof *lab);
  uint64_t s = c->seed;
  for (int64_t i = 0; i < N; i++)
    lab[i] = (i == 1 && c->i[0]) ? -100 : (int32_t)tu_int(&s, 0, C - 1);
  mb_var logits = mb_scale(g, mb_param(g, "logits", mb_shape2(N, C)), 3.0);
  mb_var labels = case_input(c, g, "labels", MB_I32, mb_shape1(N), lab);
  *y = mb_cross_entropy(g, logits, labels);
  return mb_graph_status(g);
}

static void test_cross_entropy(void **state) {
  (void)state;
  uint64_t s = 41;
  for (int trial = 0; trial < 4; trial++) {
    gc_case c = {.seed = tu_next(&s), .d = {rdim(&s) + 1, trial == 0 ? 1 : rdim(&s) + 1}, .i = {trial & 1}};
    char what[80];
    snprintf(what, sizeof what, "cross_entropy N%lld C%lld%s", (long long)c.d[0], (long long)c.d[1],
             c.i[0] ? " (one row ignored)" : "");
    run_check(what, build_ce, &c);
  }
}

static int build_embedding(void *u, mb_graph *g, mb_var *y) {
  gc_case *c = u;
  int64_t V = c->d[0], H = c->d[1], B = c->d[2], L = c->d[3];
  int64_t *ids = malloc((size_t)(B * L) * sizeof *ids);
  uint64_t s = c->seed;
  for (int64_t i = 0; i < B * L; i++)
    ids[i] = tu_int(&s, 0, V - 1); /* repeats: the scatter-add must accumulate */
  mb_var table = mb_param(g, "table", mb_shape2(V, H));
  mb_var idv = case_input(c, g, "ids", MB_I64, mb_shape2(B, L), ids);
  *y = mb_embedding(g, idv, table);
  return mb_graph_status(g);
}

static void test_embedding(void **state) {
  (void)state;
  uint64_t s = 51;
  for (int trial = 0; trial < 3; trial++) {
    gc_case c = {.seed = tu_next(&s), .d = {rdim(&s), rdim(&s), rdim(&s), rdim(&s) + 2}};
    char what[80];
    snprintf(what, sizeof what, "embedding V%lld H%lld ids[%lld,%lld]", (long long)c.d[0], (long long)c.d[1],
             (long long)c.d[2], (long long)c.d[3]);
    run_check(what, build_embedding, &c);
  }
}

static int build_pool(void *u, mb_graph *g, mb_var *y) {
  gc_case *c = u;
  int64_t B = c->d[0], L = c->d[1], H = c->d[2];
  mb_var x = mb_param(g, "x", mb_shape3(B, L, H)), mask = MB_VAR_NONE;
  uint64_t s = c->seed;
  if (c->i[0] == 1) {
    double *m = malloc((size_t)(B * L) * sizeof *m);
    for (int64_t i = 0; i < B * L; i++)
      m[i] = (i % L == 0 || (tu_next(&s) & 1)) ? 1.0 : 0.0;
    mask = case_input(c, g, "mask", MB_F64, mb_shape2(B, L), m);
  } else if (c->i[0] == 2) {
    int32_t *m = malloc((size_t)(B * L) * sizeof *m);
    for (int64_t i = 0; i < B * L; i++)
      m[i] = (i / L == 0) ? 0 : (int32_t)(tu_next(&s) & 1); /* row 0 empty: pools to 0 */
    mask = case_input(c, g, "mask", MB_I32, mb_shape2(B, L), m);
  }
  *y = mb_mean_pool(g, x, mask);
  return mb_graph_status(g);
}

static void test_mean_pool(void **state) {
  (void)state;
  uint64_t s = 61;
  const char *modes[] = {"plain", "masked f64", "masked i32"};
  for (int mode = 0; mode < 3; mode++)
    for (int trial = 0; trial < 2; trial++) {
      gc_case c = {.seed = tu_next(&s), .d = {rdim(&s) + (mode == 2), rdim(&s), rdim(&s)}, .i = {mode}};
      char what[80];
      snprintf(what, sizeof what, "mean_pool %s [%lld,%lld,%lld]", modes[mode], (long long)c.d[0], (long long)c.d[1],
               (long long)c.d[2]);
      run_check(what, build_pool, &c);
    }
}

/* ---- shapes ---- */

static int build_shape(void *u, mb_graph *g, mb_var *y) {
  gc_case *c = u;
  int64_t a = c->d[0], b = c->d[1], d = c->d[2], e = c->d[3];
  mb_var x = mb_param(g, "x", mb_shape4(a, b, d, e));
  switch (c->i[0]) {
  case 0: /* reshape, then something that cares about the layout */
    *y = mb_mul(g, mb_reshape(g, x, mb_shape2(a * b, d * e)), mb_param(g, "w", mb_shape1(d * e)));
    break;
  case 1: /* slice along each axis */
    *y = mb_slice(g, x, c->i[1], c->i[2], c->i[3]);
    break;
  case 2: { /* concat of three along axis 2, one of them x itself twice */
    mb_var z = mb_param(g, "z", mb_shape4(a, b, 3, e));
    *y = mb_concat(g, ((mb_var[]){x, z, x}), 3, 2);
    break;
  }
  case 3: /* permute (heads split-like) */
    *y = mb_permute(g, x, 4, ((int[]){0, 2, 1, 3}));
    break;
  case 4:
    *y = mb_permute(g, x, 4, ((int[]){3, 1, 0, 2}));
    break;
  case 5:
    *y = mb_transpose(g, x, -1, -2);
    break;
  case 6: /* sum_to patterns: [K1, R, K2], [R, K], [K, R], general */
    *y = mb_sum_to(g, x, c->i[1] == 0 ? mb_shape4(a, 1, 1, e)
                                    : c->i[1] == 1 ? mb_shape2(d, e)
                                                   : c->i[1] == 2 ? mb_shape4(a, b, 1, 1) : mb_shape4(1, b, 1, e));
    break;
  case 7:
    *y = mb_broadcast_to(g, mb_param(g, "v", mb_shape3(1, d, 1)), mb_shape4(a, b, d, e));
    break;
  case 8:
    *y = c->i[1] ? mb_mean(g, x) : mb_sum(g, x);
    break;
  case 9:
    *y = mb_select(g, x, 1, b - 1);
    break;
  default: /* cast f64 -> f64 exercises the rule; f32 would lose the digits */
    *y = mb_cast(g, mb_tanh(g, x), MB_F64);
    break;
  }
  return mb_graph_status(g);
}

static void test_shapes(void **state) {
  (void)state;
  uint64_t s = 71;
  for (int op = 0; op <= 10; op++) {
    int variants = (op == 1) ? 4 : (op == 6) ? 4 : (op == 8) ? 2 : 1;
    for (int v = 0; v < variants; v++) {
      gc_case c = {.seed = tu_next(&s), .d = {rdim(&s), rdim(&s) + 1, rdim(&s) + 1, rdim(&s)}, .i = {op, v}};
      if (op == 1) {
        int axis = v;
        int64_t dim = c.d[axis];
        c.i[1] = axis;
        c.i[2] = (int)(dim > 1 ? tu_int(&s, 0, dim - 1) : 0);
        c.i[3] = (int)tu_int(&s, 1, dim - c.i[2]);
      }
      char what[96];
      snprintf(what, sizeof what, "shape op %d variant %d [%lld,%lld,%lld,%lld]", op, v, (long long)c.d[0],
               (long long)c.d[1], (long long)c.d[2], (long long)c.d[3]);
      run_check(what, build_shape, &c);
    }
  }
}

/* ---- composed networks ---- */

/* A 2-layer BERT-shaped encoder: embeddings + LayerNorm, multi-head
 * self-attention written with batched matmuls and an additive padding mask,
 * post-LN residuals, a GELU MLP, a tanh pooler on [CLS], a classifier and
 * cross-entropy; each layer marked for recompute. */
static int build_bert(void *u, mb_graph *g, mb_var *y) {
  gc_case *c = u;
  const int64_t B = 2, L = 5, H = 6, NH = 2, HD = 3, FF = 7, V = 11, NL = 2, C = 3;
  int64_t *ids = malloc(B * L * sizeof *ids);
  double *maskadd = malloc(B * L * sizeof *maskadd);
  int32_t *lab = malloc(B * sizeof *lab);
  uint64_t s = c->seed;
  for (int64_t i = 0; i < B * L; i++) {
    ids[i] = tu_int(&s, 0, V - 1);
    maskadd[i] = (i / L == 1 && i % L >= 3) ? -10000.0 : 0.0; /* sequence 1 padded after 3 */
  }
  lab[0] = 2, lab[1] = 0;
  mb_var idv = case_input(c, g, "input_ids", MB_I64, mb_shape2(B, L), ids);
  mb_var mask = case_input(c, g, "mask", MB_F64, mb_shape4(B, 1, 1, L), maskadd);
  mb_var labels = case_input(c, g, "labels", MB_I32, mb_shape1(B), lab);
  mb_var x = mb_add(g, mb_embedding(g, idv, mb_param(g, "emb.word", mb_shape2(V, H))),
                    mb_param(g, "emb.pos", mb_shape2(L, H)));
  x = mb_layernorm(g, x, mb_param(g, "emb.ln.w", mb_shape1(H)), mb_param(g, "emb.ln.b", mb_shape1(H)), 1e-12);
  for (int l = 0; l < NL; l++) {
    char n[64];
#define P(name, shape) (snprintf(n, sizeof n, "layer%d.%s", l, name), mb_param(g, n, shape))
    mb_graph_layer_begin(g, l == 0 ? "layer0" : "layer1");
    mb_var q = mb_linear(g, x, P("q.w", mb_shape2(H, H)), P("q.b", mb_shape1(H)));
    mb_var k = mb_linear(g, x, P("k.w", mb_shape2(H, H)), P("k.b", mb_shape1(H)));
    mb_var v = mb_linear(g, x, P("v.w", mb_shape2(H, H)), P("v.b", mb_shape1(H)));
    int perm[4] = {0, 2, 1, 3};
    q = mb_permute(g, mb_reshape(g, q, mb_shape4(B, L, NH, HD)), 4, perm);
    k = mb_permute(g, mb_reshape(g, k, mb_shape4(B, L, NH, HD)), 4, perm);
    v = mb_permute(g, mb_reshape(g, v, mb_shape4(B, L, NH, HD)), 4, perm);
    mb_var sc = mb_add(g, mb_scale(g, mb_matmul(g, q, k, 0, 1), 1.0 / sqrt((double)HD)), mask);
    mb_var ctx = mb_matmul(g, mb_softmax(g, sc), v, 0, 0);
    ctx = mb_reshape(g, mb_permute(g, ctx, 4, perm), mb_shape3(B, L, H));
    mb_var a = mb_add(g, mb_linear(g, ctx, P("o.w", mb_shape2(H, H)), P("o.b", mb_shape1(H))), x);
    a = mb_layernorm(g, a, P("ln1.w", mb_shape1(H)), P("ln1.b", mb_shape1(H)), 1e-12);
    mb_var f = mb_gelu(g, mb_linear(g, a, P("ff1.w", mb_shape2(FF, H)), P("ff1.b", mb_shape1(FF))));
    f = mb_linear(g, f, P("ff2.w", mb_shape2(H, FF)), P("ff2.b", mb_shape1(H)));
    x = mb_layernorm(g, mb_add(g, f, a), P("ln2.w", mb_shape1(H)), P("ln2.b", mb_shape1(H)), 1e-12);
    mb_graph_layer_end(g);
#undef P
  }
  mb_var cls = mb_select(g, x, 1, 0);
  mb_var pooled = mb_tanh(g, mb_linear(g, cls, mb_param(g, "pool.w", mb_shape2(H, H)), mb_param(g, "pool.b", mb_shape1(H))));
  mb_var logits = mb_linear(g, pooled, mb_param(g, "cls.w", mb_shape2(C, H)), mb_param(g, "cls.b", mb_shape1(C)));
  *y = mb_cross_entropy(g, logits, labels);
  return mb_graph_status(g);
}

/* A 2-block Mamba-shaped network without the scan and conv kernels:
 * RMSNorm, in_proj split into x and z, SiLU, a softplus "dt" path, gating by
 * SiLU(z), out_proj, residuals, final RMSNorm, mean pooling, a head. */
static int build_mamba_like(void *u, mb_graph *g, mb_var *y) {
  gc_case *c = u;
  const int64_t B = 2, L = 4, D = 5, E = 6, V = 9, NL = 2, C = 2;
  int64_t *ids = malloc(B * L * sizeof *ids);
  int32_t *lab = malloc(B * sizeof *lab);
  uint64_t s = c->seed;
  for (int64_t i = 0; i < B * L; i++)
    ids[i] = tu_int(&s, 0, V - 1);
  lab[0] = 1, lab[1] = 0;
  mb_var idv = case_input(c, g, "input_ids", MB_I64, mb_shape2(B, L), ids);
  mb_var labels = case_input(c, g, "labels", MB_I32, mb_shape1(B), lab);
  mb_var r = mb_embedding(g, idv, mb_param(g, "embedding", mb_shape2(V, D)));
  for (int l = 0; l < NL; l++) {
    char n[64];
#define P(name, shape) (snprintf(n, sizeof n, "layers.%d.%s", l, name), mb_param(g, n, shape))
    mb_graph_layer_begin(g, l == 0 ? "layers.0" : "layers.1");
    mb_var h = mb_rmsnorm(g, r, P("norm.w", mb_shape1(D)), 1e-5);
    mb_var xz = mb_linear(g, h, P("in_proj.w", mb_shape2(2 * E, D)), MB_VAR_NONE);
    mb_var xp = mb_silu(g, mb_slice(g, xz, -1, 0, E));
    mb_var z = mb_slice(g, xz, -1, E, E);
    mb_var dt = mb_softplus(g, mb_linear(g, xp, P("dt.w", mb_shape2(E, E)), P("dt.b", mb_shape1(E))));
    mb_var yv = mb_mul(g, mb_add(g, mb_mul(g, dt, xp), mb_mul(g, xp, P("D", mb_shape1(E)))), mb_silu(g, z));
    r = mb_add(g, r, mb_linear(g, yv, P("out_proj.w", mb_shape2(D, E)), MB_VAR_NONE));
    mb_graph_layer_end(g);
#undef P
  }
  mb_var out = mb_rmsnorm(g, r, mb_param(g, "norm_f.w", mb_shape1(D)), 1e-5);
  mb_var pooled = mb_mean_pool(g, out, MB_VAR_NONE);
  mb_var logits = mb_linear(g, pooled, mb_param(g, "head.w", mb_shape2(C, D)), mb_param(g, "head.b", mb_shape1(C)));
  *y = mb_cross_entropy(g, logits, labels);
  return mb_graph_status(g);
}

static void test_composed(void **state) {
  (void)state;
  for (int rec = 0; rec < 2; rec++) {
    gc_case c = {.seed = 81, .recompute = rec};
    run_check(rec ? "bert-shaped 2 layers (recompute)" : "bert-shaped 2 layers", build_bert, &c);
    gc_case m = {.seed = 82, .recompute = rec};
    run_check(rec ? "mamba-shaped 2 blocks (recompute)" : "mamba-shaped 2 blocks", build_mamba_like, &m);
  }
}

/* ---- sequence kernels (kernels/cpu/attention.c, selective_scan.c, conv1d.c) ---- */

/* Getting the CPU backend registers every kernel; a missing one is a failure. */
static int have_kernel(int op) {
  (void)mb_cpu_backend();
  if (!mb_op_kernel(op, MB_BACKEND_CPU))
    fail_msg("%s has no CPU kernel registered", mb_op_name(op));
  return 1;
}

/* Sequence boundaries for a packed row of `total` tokens: nseq sequences,
 * the last token left over as budget padding. */
static int32_t *cu_of(int64_t total, int nseq, uint64_t *s) {
  int32_t *cu = malloc((size_t)(nseq + 1) * sizeof *cu);
  int32_t last = (int32_t)(total > 2 ? total - 1 : total);
  cu[0] = 0;
  for (int i = 1; i < nseq; i++)
    cu[i] = (int32_t)tu_int(s, cu[i - 1], last);
  cu[nseq] = last;
  return cu;
}

static int build_attention(void *u, mb_graph *g, mb_var *y) {
  gc_case *c = u;
  int64_t B = c->d[0], L = c->d[1], H = c->d[2], Dh = c->d[3];
  int mode = c->i[0];
  uint64_t s = c->seed;
  if (mode == 2)
    B = 1;
  mb_shape sh = mb_shape4(B, L, H, Dh);
  mb_var q = mb_param(g, "q", sh), k = mb_param(g, "k", sh), v = mb_param(g, "v", sh);
  mb_var mask = MB_VAR_NONE, cu = MB_VAR_NONE;
  if (mode == 1) {
    int32_t *m = malloc((size_t)(B * L) * sizeof *m);
    for (int64_t b = 0; b < B; b++)
      for (int64_t l = 0; l < L; l++)
        m[b * L + l] = l < L - b; /* row b padded after L - b */
    mask = case_input(c, g, "key_mask", MB_I32, mb_shape2(B, L), m);
  } else if (mode == 2) {
    cu = case_input(c, g, "cu_seqlens", MB_I32, mb_shape1(3), cu_of(L, 2, &s));
  }
  *y = mb_attention_ex(g, mb_scale(g, q, 2.0), k, v, mask, cu, c->i[1], 0.0);
  return mb_graph_status(g);
}

static void test_attention(void **state) {
  (void)state;
  if (!have_kernel(MB_OP_ATTENTION))
    skip();
  uint64_t s = 91;
  const char *modes[] = {"no mask", "key mask", "varlen"};
  for (int mode = 0; mode < 3; mode++)
    for (int causal = 0; causal < 2; causal++) {
      gc_case c = {.seed = tu_next(&s), .d = {rdim(&s) % 3 + 1, rdim(&s) + 2, rdim(&s) % 3 + 1, rdim(&s)}, .i = {mode, causal}};
      char what[96];
      snprintf(what, sizeof what, "attention %s%s B%lld L%lld H%lld Dh%lld", modes[mode], causal ? " causal" : "",
               (long long)(mode == 2 ? 1 : c.d[0]), (long long)c.d[1], (long long)c.d[2], (long long)c.d[3]);
      run_check(what, build_attention, &c);
    }
}

static int build_scan(void *u, mb_graph *g, mb_var *y) {
  gc_case *c = u;
  int64_t Bt = c->i[0] ? 1 : c->d[0], L = c->d[1], D = c->d[2], N = c->d[3];
  uint64_t s = c->seed;
  mb_shape bld = mb_shape3(Bt, L, D), bln = mb_shape3(Bt, L, N);
  mb_var uu = mb_param(g, "u", bld), delta = mb_param(g, "delta", bld), A_log = mb_param(g, "A_log", mb_shape2(D, N));
  mb_var Bm = mb_param(g, "B", bln), Cm = mb_param(g, "C", bln), Dv = mb_param(g, "D", mb_shape1(D));
  mb_var z = mb_param(g, "z", bld), bias = mb_param(g, "delta_bias", mb_shape1(D));
  mb_var ins[9] = {uu, delta, A_log, Bm, Cm, Dv, z, bias, MB_VAR_NONE};
  mb_attrs a = mb_attrs_none();
  a.i[0] = 1;
  a.i[1] = c->i[1]; /* chunk: small, so the backward recomputes across chunks */
  int nin = 8;
  if (c->i[0])
    ins[nin++] = case_input(c, g, "cu_seqlens", MB_I32, mb_shape1(3), cu_of(L, 2, &s));
  *y = mb_graph_op1(g, MB_HERE, MB_OP_SELECTIVE_SCAN, ins, nin, &a);
  return mb_graph_status(g);
}

static void test_selective_scan(void **state) {
  (void)state;
  if (!have_kernel(MB_OP_SELECTIVE_SCAN))
    skip();
  uint64_t s = 92;
  for (int varlen = 0; varlen < 2; varlen++)
    for (int trial = 0; trial < 2; trial++) {
      gc_case c = {.seed = tu_next(&s), .d = {rdim(&s) % 3 + 1, rdim(&s) + 3, rdim(&s), rdim(&s)},
                   .i = {varlen, trial == 0 ? 2 : 0}};
      char what[96];
      snprintf(what, sizeof what, "selective_scan%s chunk %d B%lld L%lld D%lld N%lld", varlen ? " varlen" : "", c.i[1],
               (long long)(varlen ? 1 : c.d[0]), (long long)c.d[1], (long long)c.d[2], (long long)c.d[3]);
      run_check(what, build_scan, &c);
    }
}

static int build_conv(void *u, mb_graph *g, mb_var *y) {
  gc_case *c = u;
  int64_t Bt = c->i[1] ? 1 : c->d[0], L = c->d[1], D = c->d[2], W = c->d[3];
  uint64_t s = c->seed;
  mb_var x = mb_param(g, "x", mb_shape3(Bt, L, D)), w = mb_param(g, "w", mb_shape2(D, W)),
         b = mb_param(g, "b", mb_shape1(D));
  mb_var cu = c->i[1] ? case_input(c, g, "cu_seqlens", MB_I32, mb_shape1(3), cu_of(L, 2, &s)) : MB_VAR_NONE;
  *y = mb_conv1d_varlen(g, x, w, b, cu, c->i[0]);
  return mb_graph_status(g);
}

static void test_conv1d(void **state) {
  (void)state;
  if (!have_kernel(MB_OP_CONV1D))
    skip();
  uint64_t s = 93;
  for (int W = 1; W <= 4; W++)
    for (int v = 0; v < 2; v++) {
      gc_case c = {.seed = tu_next(&s), .d = {rdim(&s) % 3 + 1, rdim(&s) + 2, rdim(&s), W}, .i = {v, W % 2}};
      char what[96];
      snprintf(what, sizeof what, "conv1d W%d%s%s L%lld D%lld", W, v ? " silu" : "", c.i[1] ? " varlen" : "",
               (long long)c.d[1], (long long)c.d[2]);
      run_check(what, build_conv, &c);
    }
}

/* A 2-layer BERT-shaped encoder on the fused attention op with a key mask. */
static int build_bert_fused(void *u, mb_graph *g, mb_var *y) {
  gc_case *c = u;
  const int64_t B = 2, L = 5, H = 6, NH = 2, HD = 3, FF = 7, V = 11, C = 3;
  int64_t *ids = malloc(B * L * sizeof *ids);
  int32_t *mask = malloc(B * L * sizeof *mask), *lab = malloc(B * sizeof *lab);
  uint64_t s = c->seed;
  for (int64_t i = 0; i < B * L; i++) {
    ids[i] = tu_int(&s, 0, V - 1);
    mask[i] = !(i / L == 1 && i % L >= 3);
  }
  lab[0] = 2, lab[1] = 0;
  mb_var idv = case_input(c, g, "input_ids", MB_I64, mb_shape2(B, L), ids);
  mb_var km = case_input(c, g, "attention_mask", MB_I32, mb_shape2(B, L), mask);
  mb_var labels = case_input(c, g, "labels", MB_I32, mb_shape1(B), lab);
  mb_var x = mb_add(g, mb_embedding(g, idv, mb_param(g, "word", mb_shape2(V, H))), mb_param(g, "pos", mb_shape2(L, H)));
  x = mb_layernorm(g, x, mb_param(g, "eln.w", mb_shape1(H)), mb_param(g, "eln.b", mb_shape1(H)), 1e-12);
  for (int l = 0; l < 2; l++) {
    char n[64];
#define P(name, shape) (snprintf(n, sizeof n, "l%d.%s", l, name), mb_param(g, n, shape))
    mb_graph_layer_begin(g, l ? "l1" : "l0");
    mb_shape heads = mb_shape4(B, L, NH, HD);
    mb_var q = mb_reshape(g, mb_linear(g, x, P("q.w", mb_shape2(H, H)), P("q.b", mb_shape1(H))), heads);
    mb_var k = mb_reshape(g, mb_linear(g, x, P("k.w", mb_shape2(H, H)), P("k.b", mb_shape1(H))), heads);
    mb_var v = mb_reshape(g, mb_linear(g, x, P("v.w", mb_shape2(H, H)), P("v.b", mb_shape1(H))), heads);
    mb_var ctx = mb_reshape(g, mb_attention(g, q, k, v, km), mb_shape3(B, L, H));
    mb_var a = mb_add(g, mb_linear(g, ctx, P("o.w", mb_shape2(H, H)), P("o.b", mb_shape1(H))), x);
    a = mb_layernorm(g, a, P("ln1.w", mb_shape1(H)), P("ln1.b", mb_shape1(H)), 1e-12);
    mb_var f = mb_linear(g, mb_gelu(g, mb_linear(g, a, P("f1.w", mb_shape2(FF, H)), P("f1.b", mb_shape1(FF)))),
                         P("f2.w", mb_shape2(H, FF)), P("f2.b", mb_shape1(H)));
    x = mb_layernorm(g, mb_add(g, f, a), P("ln2.w", mb_shape1(H)), P("ln2.b", mb_shape1(H)), 1e-12);
    mb_graph_layer_end(g);
#undef P
  }
  mb_var pooled = mb_tanh(g, mb_linear(g, mb_select(g, x, 1, 0), mb_param(g, "pw", mb_shape2(H, H)), mb_param(g, "pb", mb_shape1(H))));
  *y = mb_cross_entropy(g, mb_linear(g, pooled, mb_param(g, "cw", mb_shape2(C, H)), mb_param(g, "cb", mb_shape1(C))), labels);
  return mb_graph_status(g);
}

/* A 2-block Mamba classifier exactly as MODELS.md 4: RMSNorm, in_proj to x
 * and z, causal conv1d + SiLU, x_proj to dt/B/C, dt_proj, the selective
 * scan with A = -exp(A_log), D skip and SiLU(z) gate, out_proj, residual;
 * final RMSNorm, mean pooling, a linear head, cross-entropy. */
static int build_mamba(void *u, mb_graph *g, mb_var *y) {
  gc_case *c = u;
  const int64_t B = 2, L = 6, Dm = 4, E = 6, N = 3, R = 2, W = 4, V = 9, NC = 2;
  int64_t *ids = malloc(B * L * sizeof *ids);
  int32_t *lab = malloc(B * sizeof *lab);
  uint64_t s = c->seed;
  for (int64_t i = 0; i < B * L; i++)
    ids[i] = tu_int(&s, 0, V - 1);
  lab[0] = 1, lab[1] = 0;
  mb_var idv = case_input(c, g, "input_ids", MB_I64, mb_shape2(B, L), ids);
  mb_var labels = case_input(c, g, "labels", MB_I32, mb_shape1(B), lab);
  mb_var r = mb_embedding(g, idv, mb_param(g, "embedding", mb_shape2(V, Dm)));
  for (int l = 0; l < 2; l++) {
    char n[64];
#define P(name, shape) (snprintf(n, sizeof n, "layers.%d.%s", l, name), mb_param(g, n, shape))
    mb_graph_layer_begin(g, l ? "layers.1" : "layers.0");
    mb_var h = mb_rmsnorm(g, r, P("norm.weight", mb_shape1(Dm)), 1e-5);
    mb_var xz = mb_linear(g, h, P("mixer.in_proj.weight", mb_shape2(2 * E, Dm)), MB_VAR_NONE);
    mb_var x = mb_slice(g, xz, -1, 0, E), z = mb_slice(g, xz, -1, E, E);
    x = mb_conv1d(g, x, P("mixer.conv1d.weight", mb_shape2(E, W)), P("mixer.conv1d.bias", mb_shape1(E)), 1);
    mb_var dbl = mb_linear(g, x, P("mixer.x_proj.weight", mb_shape2(R + 2 * N, E)), MB_VAR_NONE);
    mb_var dt = mb_slice(g, dbl, -1, 0, R), Bm = mb_slice(g, dbl, -1, R, N), Cm = mb_slice(g, dbl, -1, R + N, N);
    mb_var delta = mb_linear(g, dt, P("mixer.dt_proj.weight", mb_shape2(E, R)), MB_VAR_NONE);
    mb_var yv = mb_selective_scan(g, x, delta, P("mixer.A_log", mb_shape2(E, N)), Bm, Cm, P("mixer.D", mb_shape1(E)), z,
                                  P("mixer.dt_proj.bias", mb_shape1(E)));
    r = mb_add(g, r, mb_linear(g, yv, P("mixer.out_proj.weight", mb_shape2(Dm, E)), MB_VAR_NONE));
    mb_graph_layer_end(g);
#undef P
  }
  mb_var out = mb_rmsnorm(g, r, mb_param(g, "norm_f.weight", mb_shape1(Dm)), 1e-5);
  mb_var logits = mb_linear(g, mb_mean_pool(g, out, MB_VAR_NONE), mb_param(g, "head.weight", mb_shape2(NC, Dm)),
                            mb_param(g, "head.bias", mb_shape1(NC)));
  *y = mb_cross_entropy(g, logits, labels);
  return mb_graph_status(g);
}

static void test_composed_fused(void **state) {
  (void)state;
  int att = have_kernel(MB_OP_ATTENTION), mam = have_kernel(MB_OP_SELECTIVE_SCAN) && have_kernel(MB_OP_CONV1D);
  if (!att && !mam)
    skip();
  for (int rec = 0; rec < 2; rec++) {
    if (att) {
      gc_case c = {.seed = 83, .recompute = rec};
      run_check(rec ? "bert fused attention (recompute)" : "bert fused attention", build_bert_fused, &c);
    }
    if (mam) {
      gc_case m = {.seed = 84, .recompute = rec};
      run_check(rec ? "mamba conv1d + scan (recompute)" : "mamba conv1d + scan", build_mamba, &m);
    }
  }
}

int main(int argc, char **argv) {
  const char *group = argc > 1 ? argv[1] : "all";
  (void)mb_cpu_backend(); /* registers the kernels */
  const struct CMUnitTest elementwise[] = {
      cmocka_unit_test(test_add_mul),
      cmocka_unit_test(test_activations),
      cmocka_unit_test(test_reuse_accumulates),
      cmocka_unit_test(test_dropout),
      cmocka_unit_test(test_gradcheck_detects_wrong_kernel),
  };
  const struct CMUnitTest nn[] = {
      cmocka_unit_test(test_matmul),
      cmocka_unit_test(test_norms_softmax),
      cmocka_unit_test(test_cross_entropy),
      cmocka_unit_test(test_embedding),
      cmocka_unit_test(test_mean_pool),
  };
  const struct CMUnitTest shape[] = {cmocka_unit_test(test_shapes)};
  const struct CMUnitTest net[] = {cmocka_unit_test(test_composed), cmocka_unit_test(test_composed_fused)};
  const struct CMUnitTest seq[] = {cmocka_unit_test(test_attention), cmocka_unit_test(test_selective_scan),
                                   cmocka_unit_test(test_conv1d)};
  int fails = 0, all = strcmp(group, "all") == 0;
  if (all || strcmp(group, "elementwise") == 0)
    fails += cmocka_run_group_tests_name("grad_elementwise", elementwise, NULL, NULL);
  if (all || strcmp(group, "nn") == 0)
    fails += cmocka_run_group_tests_name("grad_nn", nn, NULL, NULL);
  if (all || strcmp(group, "shape") == 0)
    fails += cmocka_run_group_tests_name("grad_shape", shape, NULL, NULL);
  if (all || strcmp(group, "seq") == 0)
    fails += cmocka_run_group_tests_name("grad_seq", seq, NULL, NULL);
  if (all || strcmp(group, "net") == 0)
    fails += cmocka_run_group_tests_name("grad_net", net, NULL, NULL);
  return fails ? 1 : 0;
}
