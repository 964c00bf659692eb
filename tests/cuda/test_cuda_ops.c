/* test_cuda_ops.c: every op of the op table with a CUDA kernel, run on the
 * CUDA backend and on the CPU backend (the reference) through the executor,
 * on fresh random inputs, outputs compared by ||gpu - cpu|| / ||cpu|| with
 * the per-dtype bounds (f32 1e-5, bf16 1e-2, f16 5e-3); casts bit for bit.
 *
 * Each case is one node built with mb_graph_op (forward and gradient ops
 * alike) in two graphs: the GPU graph in the dtype under test, the CPU graph
 * in f32 with the same values (inputs rounded to the dtype first). Programs
 * compile with poison on, so every output starts NaN and an unwritten
 * element fails. The GPU program runs three times (eager, captured into a
 * CUDA graph, replayed): each run must match the CPU, and the replays must
 * equal the eager run bit for bit. Needs a GPU; exits 77 without. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "autograd/autograd.h"
#include "cuda_test_util.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cuda/cuda.h"
#include "tests/cuda/cuda_op_prog.h"

static mb_backend *gpu;

typedef enum {
  IN_X,      /* float of the dtype under test, normal(0, std) */
  IN_POS,    /* same, uniform [lo, hi) */
  IN_STAT,   /* f32 in every variant (norm statistics), uniform [lo, hi) */
  IN_IDS,    /* integer ids in [0, bound) of dtype dt */
  IN_LABELS, /* integer labels in [0, bound), some -100 */
  IN_MASK,   /* 0/1 of dtype dt, row 0 all zero */
  IN_RNG,    /* u64[2] (seed, offset) */
  IN_FIXED   /* float of fixed dtype dt, normal(0, std) */
} in_kind;

typedef struct {
  in_kind kind;
  mb_dtype dt; /* ids, labels, mask, fixed */
  mb_shape shape;
  float a, b; /* std, or [lo, hi) */
  int64_t bound;
} in_spec;

typedef struct {
  const char *name;
  int op;
  int n_in;
  in_spec in[6];
  mb_attrs attr;
  int attr_dtype_is_main; /* attr.i[0] is the dtype under test (full) */
  int exact;              /* compare bytes, not values (casts) */
} op_case;

#define SH1(a) mb_shape1(a)
#define SH2(a, b) mb_shape2(a, b)
#define SH3(a, b, c) mb_shape3(a, b, c)
#define SH4(a, b, c, d) mb_shape4(a, b, c, d)
#define X(shape, std) {IN_X, MB_F32, shape, std, 0, 0}
#define POS(shape, lo, hi) {IN_POS, MB_F32, shape, lo, hi, 0}
#define STAT(shape, lo, hi) {IN_STAT, MB_F32, shape, lo, hi, 0}
#define IDS(dt, shape, bound) {IN_IDS, dt, shape, 0, 0, bound}
#define LABELS(dt, shape, bound) {IN_LABELS, dt, shape, 0, 0, bound}
#define MASK(dt, shape) {IN_MASK, dt, shape, 0, 0, 0}
#define RNG {IN_RNG, MB_U64, {1, {2}}, 0, 0, 0}
#define FIXED(dt, shape, std) {IN_FIXED, dt, shape, std, 0, 0}

static mb_attrs A_I(int64_t i0, int64_t i1, int64_t i2) {
  mb_attrs a = mb_attrs_none();
  a.i[0] = i0, a.i[1] = i1, a.i[2] = i2;
  return a;
}
static mb_attrs A_F(double f0, double f1) {
  mb_attrs a = mb_attrs_none();
  a.f[0] = f0, a.f[1] = f1;
  return a;
}
static mb_attrs A_S(mb_shape s, double f0) {
  mb_attrs a = mb_attrs_none();
  a.shape = s;
  a.f[0] = f0;
  return a;
}
static mb_attrs A_IS(int64_t i0, int64_t i1, mb_shape s) {
  mb_attrs a = mb_attrs_none();
  a.i[0] = i0, a.i[1] = i1;
  a.shape = s;
  return a;
}
static mb_attrs A_PERM(int a0, int a1, int a2, int a3) {
  mb_attrs a = mb_attrs_none();
  a.i[0] = a0, a.i[1] = a1, a.i[2] = a2, a.i[3] = a3;
  a.shape.ndim = 4; /* the permutation's length */
  return a;
}

/* ---- one case ---- */

typedef struct {
  mb_dtype dt[6];
  void *host[6];
  size_t bytes[6];
} inputs_t;

static void make_inputs(const op_case *c, mb_dtype main_dt, inputs_t *cpu, inputs_t *dev) {
  for (int j = 0; j < c->n_in; j++) {
    const in_spec *s = &c->in[j];
    size_t n = (size_t)mb_shape_numel(&s->shape);
    float *f = malloc(n * 4 + 4);
    int64_t *iv = malloc(n * 8 + 8);
    mb_dtype dcpu, dgpu;
    switch (s->kind) {
    case IN_X:
    case IN_POS:
    case IN_STAT:
    case IN_FIXED:
      if (s->kind == IN_X || s->kind == IN_FIXED)
        ct_randn(f, n, s->a);
      else
        ct_randu(f, n, s->a, s->b);
      dgpu = s->kind == IN_STAT ? MB_F32 : s->kind == IN_FIXED ? s->dt : main_dt;
      dcpu = s->kind == IN_FIXED ? s->dt : MB_F32;
      ct_round(f, n, dgpu);
      cpu->dt[j] = dcpu, dev->dt[j] = dgpu;
      cpu->bytes[j] = n * mb_dtype_size(dcpu), dev->bytes[j] = n * mb_dtype_size(dgpu);
      cpu->host[j] = malloc(cpu->bytes[j] + 8), dev->host[j] = malloc(dev->bytes[j] + 8);
      if (mb_convert(cpu->host[j], dcpu, f, MB_F32, n) != MB_OK || mb_convert(dev->host[j], dgpu, f, MB_F32, n))
        fail_msg("convert: %s", mb_error_message());
      break;
    case IN_IDS:
    case IN_LABELS:
    case IN_MASK:
      if (s->kind == IN_MASK) {
        ct_randint(iv, n, 2);
        int64_t L = s->shape.dim[s->shape.ndim - 1];
        for (int64_t l = 0; l < L && l < (int64_t)n; l++)
          iv[l] = 0; /* an empty row: the pooled mean is 0 */
      } else {
        ct_randint(iv, n, s->bound);
      }
      if (s->kind == IN_LABELS)
        for (size_t i = 0; i < n; i += 5)
          iv[i] = -100; /* ignored rows */
      cpu->dt[j] = dev->dt[j] = s->dt;
      cpu->bytes[j] = dev->bytes[j] = n * mb_dtype_size(s->dt);
      cpu->host[j] = malloc(cpu->bytes[j] + 8), dev->host[j] = malloc(dev->bytes[j] + 8);
      for (size_t i = 0; i < n; i++) {
        if (s->dt == MB_I32)
          ((int32_t *)cpu->host[j])[i] = (int32_t)iv[i];
        else if (s->dt == MB_I64)
          ((int64_t *)cpu->host[j])[i] = iv[i];
        else
          ((float *)cpu->host[j])[i] = (float)iv[i];
      }
      memcpy(dev->host[j], cpu->host[j], cpu->bytes[j]);
      break;
    case IN_RNG: {
      uint32_t w[4];
      mb_philox_fill_u32(ct_seed_base, (ct_draws++) << 40, w, 4);
      uint64_t r[2] = {((uint64_t)w[0] << 32) | w[1], (uint64_t)(w[2] % 100000) * 4 + 1}; /* an odd offset */
      cpu->dt[j] = dev->dt[j] = MB_U64;
      cpu->bytes[j] = dev->bytes[j] = sizeof r;
      cpu->host[j] = malloc(sizeof r), dev->host[j] = malloc(sizeof r);
      memcpy(cpu->host[j], r, sizeof r);
      memcpy(dev->host[j], r, sizeof r);
      break;
    }
    }
    free(f);
    free(iv);
  }
}

static void free_inputs(const op_case *c, inputs_t *a) {
  for (int j = 0; j < c->n_in; j++)
    free(a->host[j]);
}

typedef struct {
  mb_params *params;
  mb_graph *g;
  mb_exec *ex;
  mb_var in[6], out[MB_MAX_OUT];
  int n_out;
} prog_t;

static void build(const op_case *c, const inputs_t *in, mb_dtype main_dt, mb_backend *be, prog_t *p) {
  CT_OK(mb_params_new(MB_F32, &p->params));
  CT_OK(mb_graph_new(p->params, &p->g));
  for (int j = 0; j < c->n_in; j++) {
    char name[16];
    snprintf(name, sizeof name, "in%d", j);
    p->in[j] = mb_input(p->g, name, in->dt[j], c->in[j].shape);
  }
  mb_attrs a = c->attr;
  if (c->attr_dtype_is_main)
    a.i[0] = main_dt;
  p->n_out = mb_graph_op(p->g, MB_HERE, c->op, p->in, c->n_in, &a, p->out);
  if (p->n_out <= 0)
    fail_msg("%s: building: %s", c->name, mb_graph_error(p->g));
  for (int k = 0; k < p->n_out; k++)
    CT_OK(mb_mark_output(p->g, p->out[k]));
  mb_compile_opts o = {0};
  o.poison = 1;
  CT_OK(mb_graph_compile(p->g, &o));
  CT_OK(mb_exec_new(p->g, be, &p->ex));
  for (int j = 0; j < c->n_in; j++)
    CT_OK(mb_exec_set_input(p->ex, p->in[j], in->host[j]));
}

static void prog_free(prog_t *p) {
  if (mb_is_cuda_backend(mb_exec_backend(p->ex)))
    mb_cuda_backend_forget(mb_exec_backend(p->ex), p->ex);
  mb_exec_free(p->ex);
  mb_graph_free(p->g);
  mb_params_free(p->params);
}

/* Output k as raw bytes (caller frees) and its dtype and count. */
static void *get_out(prog_t *p, int k, mb_dtype *dt, size_t *n) {
  const mb_value *v = mb_graph_value(p->g, p->out[k]);
  *dt = v->dtype;
  *n = (size_t)mb_shape_numel(&v->shape);
  void *h = malloc(*n * mb_dtype_size(*dt) + 8);
  CT_OK(mb_exec_get(p->ex, p->out[k], h));
  return h;
}

static double tol_of(mb_dtype dt) { return ct_tol(dt); }

static void run_case(const op_case *c, mb_dtype main_dt) {
  inputs_t hin_cpu, hin_gpu;
  memset(&hin_cpu, 0, sizeof hin_cpu);
  memset(&hin_gpu, 0, sizeof hin_gpu);
  make_inputs(c, main_dt, &hin_cpu, &hin_gpu);
  prog_t pc, pg;
  build(c, &hin_cpu, MB_F32, mb_cpu_backend(), &pc);
  build(c, &hin_gpu, main_dt, gpu, &pg);
  CT_OK(mb_exec_forward(pc.ex));
  assert_int_equal(pc.n_out, pg.n_out);
  void *first[MB_MAX_OUT] = {0};
  for (int run = 0; run < 3; run++) { /* eager, captured, replayed */
    CT_OK(mb_exec_forward(pg.ex));
    for (int k = 0; k < pg.n_out; k++) {
      mb_dtype dc, dg;
      size_t nc, ng;
      void *hc = get_out(&pc, k, &dc, &nc), *hg = get_out(&pg, k, &dg, &ng);
      assert_int_equal(nc, ng);
      if (c->exact || !mb_dtype_info_of(dg)->is_float) {
        assert_int_equal(dc, dg);
        if (memcmp(hc, hg, nc * mb_dtype_size(dc)) != 0)
          fail_msg("%s [%s] output %d: differs from the CPU bit for bit (run %d)", c->name, mb_dtype_name(main_dt), k,
                   run);
      } else {
        float *fc = malloc(nc * 4 + 4), *fg = malloc(ng * 4 + 4);
        CT_OK(mb_convert(fc, MB_F32, hc, dc, nc));
        CT_OK(mb_convert(fg, MB_F32, hg, dg, ng));
        double err = ct_relerr_f(fg, fc, nc), tol = tol_of(dg);
        if (!(err < tol))
          fail_msg("%s [%s] output %d (%s, %zu elements): relative error %.3g >= %.1g (run %d)", c->name,
                   mb_dtype_name(main_dt), k, mb_dtype_name(dg), ng, err, tol, run);
        free(fc), free(fg);
      }
      if (run == 0) {
        first[k] = hg;
      } else {
        if (memcmp(first[k], hg, ng * mb_dtype_size(dg)) != 0)
          fail_msg("%s [%s] output %d: run %d (graph) differs from the eager run", c->name, mb_dtype_name(main_dt), k,
                   run);
        free(hg);
      }
      free(hc);
    }
  }
  for (int k = 0; k < pg.n_out; k++)
    free(first[k]);
  prog_free(&pc);
  prog_free(&pg);
  free_inputs(c, &hin_cpu);
  free_inputs(c, &hin_gpu);
}

static const mb_dtype float_variants[] = {MB_F32, MB_BF16, MB_F16};

static void run_cases(const op_case *cs, size_t n, int nvariants) {
  for (size_t i = 0; i < n; i++) {
    for (int v = 0; v < nvariants; v++)
      run_case(&cs[i], float_variants[v]);
    printf("  %-28s ok (%s)\n", cs[i].name, nvariants == 3 ? "f32, bf16, f16" : nvariants == 2 ? "f32, bf16" : "f32");
  }
}

/* ---- the cases ---- */

static void test_elementwise(void **state) {
  (void)state;
  const op_case cs[] = {
      {"full", MB_OP_FULL, 0, {X(SH1(1), 1)}, A_S(SH2(5, 7), 1.5), 1, 0},
      {"copy", MB_OP_COPY, 1, {X(SH2(13, 17), 1)}, A_I(0, 0, 0), 0, 0},
      {"add (both broadcast)", MB_OP_ADD, 2, {X(SH3(7, 1, 13), 1), X(SH2(5, 13), 1)}, A_F(0.7, -1.3), 0, 0},
      {"add (same shape)", MB_OP_ADD, 2, {X(SH2(31, 33), 1), X(SH2(31, 33), 1)}, A_F(1, 1), 0, 0},
      {"mul (row vector)", MB_OP_MUL, 2, {X(SH3(4, 5, 6), 1), X(SH1(6), 1)}, A_I(0, 0, 0), 0, 0},
      {"mul (both broadcast)", MB_OP_MUL, 2, {X(SH3(1, 5, 1), 1), X(SH3(4, 1, 6), 1)}, A_I(0, 0, 0), 0, 0},
      {"affine", MB_OP_AFFINE, 1, {X(SH1(1000), 1)}, A_F(2.5, -0.5), 0, 0},
      {"broadcast_to", MB_OP_BROADCAST_TO, 1, {X(SH2(1, 5), 1)}, A_S(SH3(4, 3, 5), 0.5), 0, 0},
      {"sum_to [R, K2]", MB_OP_SUM_TO, 1, {X(SH3(4, 3, 5), 1)}, A_S(SH1(5), 1.0), 0, 0},
      {"sum_to [K1, R]", MB_OP_SUM_TO, 1, {X(SH3(4, 3, 5), 1)}, A_S(SH3(4, 1, 1), 2.0), 0, 0},
      {"sum_to [R] (scalar)", MB_OP_SUM_TO, 1, {X(SH3(4, 3, 5), 1)}, A_S(mb_shape_of(0, NULL), 1.0), 0, 0},
      {"sum_to [K1, R, K2]", MB_OP_SUM_TO, 1, {X(SH3(4, 3, 5), 1)}, A_S(SH3(4, 1, 5), 1.0), 0, 0},
      {"sum_to [R, K, R]", MB_OP_SUM_TO, 1, {X(SH3(4, 3, 5), 1)}, A_S(SH2(3, 1), 1.0), 0, 0},
      {"sum_to long columns", MB_OP_SUM_TO, 1, {X(SH2(20000, 7), 1)}, A_S(SH1(7), 1.0), 0, 0},
      {"sum_to long rows", MB_OP_SUM_TO, 1, {X(SH2(3, 40000), 1)}, A_S(SH2(3, 1), 0.5), 0, 0},
      {"sum_to nothing reduced", MB_OP_SUM_TO, 1, {X(SH2(3, 4), 1)}, A_S(SH2(3, 4), 3.0), 0, 0},
  };
  run_cases(cs, sizeof cs / sizeof cs[0], 3);
}

static void test_activations(void **state) {
  (void)state;
  const int acts[] = {MB_OP_RELU, MB_OP_GELU, MB_OP_TANH, MB_OP_SIGMOID, MB_OP_SILU, MB_OP_SOFTPLUS, MB_OP_EXP};
  for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) {
    float std = acts[i] == MB_OP_SOFTPLUS ? 12.0f : acts[i] == MB_OP_EXP ? 2.0f : 3.0f;
    op_case f = {mb_op_name(acts[i]), acts[i], 1, {X(SH2(37, 101), std)}, A_I(0, 0, 0), 0, 0};
    /* the saved operand: x, or the output y for tanh / sigmoid / exp */
    int saves_y = acts[i] == MB_OP_TANH || acts[i] == MB_OP_SIGMOID || acts[i] == MB_OP_EXP;
    op_case b = {"act_grad", MB_OP_ACT_GRAD, 2,
                 {saves_y ? (in_spec)POS(SH2(37, 101), 0.05f, 0.95f) : (in_spec)X(SH2(37, 101), std),
                  X(SH2(37, 101), 1)},
                 A_I(acts[i], 0, 0), 0, 0};
    for (int v = 0; v < 3; v++) {
      run_case(&f, float_variants[v]);
      run_case(&b, float_variants[v]);
    }
    printf("  %-28s ok (forward and gradient; f32, bf16, f16)\n", mb_op_name(acts[i]));
  }
}

static void test_matmul(void **state) {
  (void)state;
  const op_case cs[] = {
      {"matmul nn", MB_OP_MATMUL, 2, {X(SH2(37, 29), 1), X(SH2(29, 41), 1)}, A_I(0, 0, 0), 0, 0},
      {"matmul nt (Linear)", MB_OP_MATMUL, 2, {X(SH2(37, 29), 1), X(SH2(41, 29), 1)}, A_I(0, 1, 0), 0, 0},
      {"matmul tn", MB_OP_MATMUL, 2, {X(SH2(29, 37), 1), X(SH2(29, 41), 1)}, A_I(1, 0, 0), 0, 0},
      {"matmul tt", MB_OP_MATMUL, 2, {X(SH2(29, 37), 1), X(SH2(41, 29), 1)}, A_I(1, 1, 0), 0, 0},
      {"matmul Linear + bias", MB_OP_MATMUL, 3, {X(SH2(64, 96), 1), X(SH2(80, 96), 0.2f), X(SH1(80), 1)},
       A_I(0, 1, 0), 0, 0},
      {"matmul shared b + bias", MB_OP_MATMUL, 3, {X(SH3(4, 16, 29), 1), X(SH2(40, 29), 1), X(SH1(40), 1)},
       A_I(0, 1, 0), 0, 0},
      {"matmul batched", MB_OP_MATMUL, 2, {X(SH4(2, 3, 17, 29), 1), X(SH4(2, 3, 29, 23), 1)}, A_I(0, 0, 0), 0, 0},
      {"matmul batched tt", MB_OP_MATMUL, 2, {X(SH3(3, 29, 17), 1), X(SH3(3, 23, 29), 1)}, A_I(1, 1, 0), 0, 0},
      {"matmul batched + bias", MB_OP_MATMUL, 3, {X(SH3(3, 17, 29), 1), X(SH3(3, 29, 23), 1), X(SH1(23), 1)},
       A_I(0, 0, 0), 0, 0},
  };
  run_cases(cs, sizeof cs / sizeof cs[0], 3);
}

static void test_norms(void **state) {
  (void)state;
  const op_case cs[] = {
      {"layernorm", MB_OP_LAYERNORM, 3, {X(SH2(37, 97), 2), X(SH1(97), 1), X(SH1(97), 1)}, A_F(1e-5, 0), 0, 0},
      {"layernorm wide rows", MB_OP_LAYERNORM, 3, {X(SH3(2, 3, 1000), 2), X(SH1(1000), 1), X(SH1(1000), 1)},
       A_F(1e-12, 0), 0, 0},
      {"layernorm_grad", MB_OP_LAYERNORM_GRAD, 5,
       {X(SH2(37, 97), 1), X(SH2(37, 97), 2), X(SH1(97), 1), STAT(SH1(37), -0.5f, 0.5f), STAT(SH1(37), 0.5f, 2.0f)},
       A_I(0, 0, 0), 0, 0},
      {"layernorm_grad many rows", MB_OP_LAYERNORM_GRAD, 5,
       {X(SH2(1500, 64), 1), X(SH2(1500, 64), 2), X(SH1(64), 1), STAT(SH1(1500), -0.5f, 0.5f),
        STAT(SH1(1500), 0.5f, 2.0f)},
       A_I(0, 0, 0), 0, 0},
      {"rmsnorm", MB_OP_RMSNORM, 2, {X(SH2(37, 97), 2), X(SH1(97), 1)}, A_F(1e-5, 0), 0, 0},
      {"rmsnorm_grad", MB_OP_RMSNORM_GRAD, 4,
       {X(SH2(600, 97), 1), X(SH2(600, 97), 2), X(SH1(97), 1), STAT(SH1(600), 0.5f, 2.0f)}, A_I(0, 0, 0), 0, 0},
      {"softmax", MB_OP_SOFTMAX, 1, {X(SH2(37, 97), 3)}, A_I(0, 0, 0), 0, 0},
      {"softmax wide rows", MB_OP_SOFTMAX, 1, {X(SH2(2, 3000), 3)}, A_I(0, 0, 0), 0, 0},
      {"softmax_grad", MB_OP_SOFTMAX_GRAD, 2, {POS(SH2(37, 97), 0.0f, 0.05f), X(SH2(37, 97), 1)}, A_I(0, 0, 0), 0, 0},
  };
  run_cases(cs, sizeof cs / sizeof cs[0], 3);
}

static void test_loss(void **state) {
  (void)state;
  const op_case cs[] = {
      {"cross_entropy i64", MB_OP_CROSS_ENTROPY, 2, {X(SH2(37, 11), 2), LABELS(MB_I64, SH1(37), 11)},
       A_I(-100, 0, 0), 0, 0},
      {"cross_entropy i32 wide", MB_OP_CROSS_ENTROPY, 2, {X(SH2(6, 5000), 2), LABELS(MB_I32, SH1(6), 5000)},
       A_I(-100, 0, 0), 0, 0},
      {"cross_entropy_grad", MB_OP_CROSS_ENTROPY_GRAD, 4,
       {X(mb_shape_of(0, NULL), 1), X(SH2(37, 11), 2), LABELS(MB_I64, SH1(37), 11), STAT(SH1(37), 2.0f, 3.0f)},
       A_I(-100, 0, 0), 0, 0},
  };
  /* f32 and bf16 (mixed precision computes the loss from f32 logits) */
  run_cases(cs, sizeof cs / sizeof cs[0], 2);
}

static void test_embedding_pool_dropout(void **state) {
  (void)state;
  const op_case cs[] = {
      {"embedding i32", MB_OP_EMBEDDING, 2, {IDS(MB_I32, SH2(4, 9), 50), X(SH2(50, 33), 1)}, A_I(0, 0, 0), 0, 0},
      {"embedding i64", MB_OP_EMBEDDING, 2, {IDS(MB_I64, SH1(70), 7), X(SH2(7, 130), 1)}, A_I(0, 0, 0), 0, 0},
      {"embedding_grad", MB_OP_EMBEDDING_GRAD, 2, {IDS(MB_I32, SH2(4, 9), 50), X(SH3(4, 9, 33), 1)},
       A_S(SH2(50, 33), 0), 0, 0},
      {"embedding_grad hot rows", MB_OP_EMBEDDING_GRAD, 2, {IDS(MB_I64, SH2(64, 32), 3), X(SH3(64, 32, 48), 1)},
       A_S(SH2(5, 48), 0), 0, 0},
      {"mean_pool", MB_OP_MEAN_POOL, 1, {X(SH3(3, 7, 5), 1)}, A_I(0, 0, 0), 0, 0},
      {"mean_pool f32 mask", MB_OP_MEAN_POOL, 2, {X(SH3(3, 7, 5), 1), MASK(MB_F32, SH2(3, 7))}, A_I(0, 0, 0), 0, 0},
      {"mean_pool i64 mask", MB_OP_MEAN_POOL, 2, {X(SH3(4, 33, 40), 1), MASK(MB_I64, SH2(4, 33))}, A_I(0, 0, 0), 0, 0},
      {"mean_pool_grad", MB_OP_MEAN_POOL_GRAD, 1, {X(SH2(3, 5), 1)}, A_S(SH3(3, 7, 5), 0), 0, 0},
      {"mean_pool_grad i32 mask", MB_OP_MEAN_POOL_GRAD, 2, {X(SH2(4, 40), 1), MASK(MB_I32, SH2(4, 33))},
       A_S(SH3(4, 33, 40), 0), 0, 0},
      {"dropout p=0.1", MB_OP_DROPOUT, 2, {X(SH2(37, 101), 1), RNG}, A_I(3, 0, 0), 0, 0},
  };
  op_case dr = cs[9];
  dr.attr.f[0] = 0.1;
  run_cases(cs, sizeof cs / sizeof cs[0] - 1, 3);
  run_cases(&dr, 1, 3);
  op_case d5 = dr;
  d5.name = "dropout p=0.5";
  d5.attr.f[0] = 0.5;
  d5.attr.i[0] = 7;
  run_cases(&d5, 1, 2);
}

static void test_shapes(void **state) {
  (void)state;
  const op_case cs[] = {
      {"slice axis 1", MB_OP_SLICE, 1, {X(SH3(5, 12, 7), 1)}, A_I(1, 3, 6), 0, 0},
      {"slice axis 0", MB_OP_SLICE, 1, {X(SH3(5, 12, 7), 1)}, A_I(0, 1, 3), 0, 0},
      {"slice axis 2", MB_OP_SLICE, 1, {X(SH3(5, 12, 7), 1)}, A_I(2, 2, 3), 0, 0},
      {"slice_grad", MB_OP_SLICE_GRAD, 1, {X(SH3(5, 6, 7), 1)}, A_IS(1, 3, SH3(5, 12, 7)), 0, 0},
      {"concat", MB_OP_CONCAT, 3, {X(SH3(5, 3, 7), 1), X(SH3(5, 4, 7), 1), X(SH3(5, 1, 7), 1)}, A_I(1, 0, 0), 0, 0},
      {"concat axis 0", MB_OP_CONCAT, 2, {X(SH2(3, 9), 1), X(SH2(2, 9), 1)}, A_I(0, 0, 0), 0, 0},
      {"permute", MB_OP_PERMUTE, 1, {X(SH4(2, 3, 4, 5), 1)}, A_PERM(2, 0, 3, 1), 0, 0},
      {"permute i32", MB_OP_PERMUTE, 1, {IDS(MB_I32, SH4(2, 3, 4, 5), 1000)}, A_PERM(3, 2, 1, 0), 0, 1},
  };
  run_cases(cs, sizeof cs / sizeof cs[0], 3);
}

static void test_casts(void **state) {
  (void)state;
  const op_case cs[] = {
      {"cast f32 -> bf16", MB_OP_CAST, 1, {FIXED(MB_F32, SH1(3000), 100)}, A_I(MB_BF16, 0, 0), 0, 1},
      {"cast f32 -> f16", MB_OP_CAST, 1, {FIXED(MB_F32, SH1(3000), 100)}, A_I(MB_F16, 0, 0), 0, 1},
      {"cast bf16 -> f32", MB_OP_CAST, 1, {FIXED(MB_BF16, SH1(3000), 100)}, A_I(MB_F32, 0, 0), 0, 1},
      {"cast f16 -> bf16", MB_OP_CAST, 1, {FIXED(MB_F16, SH1(3000), 100)}, A_I(MB_BF16, 0, 0), 0, 1},
      {"cast f32 -> e4m3", MB_OP_CAST, 1, {FIXED(MB_F32, SH1(3000), 300)}, A_I(MB_F8E4M3, 0, 0), 0, 1},
      {"cast f32 -> e5m2", MB_OP_CAST, 1, {FIXED(MB_F32, SH1(3000), 3000)}, A_I(MB_F8E5M2, 0, 0), 0, 1},
      {"cast f32 -> f64", MB_OP_CAST, 1, {FIXED(MB_F32, SH1(3000), 100)}, A_I(MB_F64, 0, 0), 0, 1},
      {"cast f64 -> f32", MB_OP_CAST, 1, {FIXED(MB_F64, SH1(3000), 100)}, A_I(MB_F32, 0, 0), 0, 1},
      {"cast f32 -> i64", MB_OP_CAST, 1, {FIXED(MB_F32, SH1(3000), 100)}, A_I(MB_I64, 0, 0), 0, 1},
      {"cast i32 -> f32", MB_OP_CAST, 1, {IDS(MB_I32, SH1(3000), 1 << 30)}, A_I(MB_F32, 0, 0), 0, 1},
      {"cast i64 -> i32", MB_OP_CAST, 1, {IDS(MB_I64, SH1(3000), 1 << 30)}, A_I(MB_I32, 0, 0), 0, 1},
  };
  run_cases(cs, sizeof cs / sizeof cs[0], 1);
}

/* A bad id or label is an error naming it at the next synchronisation;
 * the backend stays usable. */
static void test_device_errors(void **state) {
  (void)state;
  mb_params *params;
  mb_graph *g;
  mb_exec *ex;
  CT_OK(mb_params_new(MB_F32, &params));
  CT_OK(mb_graph_new(params, &g));
  mb_var ids = mb_input(g, "ids", MB_I32, SH1(6)), table = mb_input(g, "table", MB_F32, SH2(10, 4));
  mb_var y = mb_embedding(g, ids, table);
  CT_OK(mb_mark_output(g, y));
  mb_compile_opts o = {0};
  CT_OK(mb_graph_compile(g, &o));
  CT_OK(mb_exec_new(g, gpu, &ex));
  int32_t bad[6] = {1, 2, 3, 12, 4, 5};
  float t[40], out[24];
  for (int i = 0; i < 40; i++)
    t[i] = (float)i;
  CT_OK(mb_exec_set_input(ex, ids, bad));
  CT_OK(mb_exec_set_input(ex, table, t));
  CT_OK(mb_exec_forward(ex));
  assert_int_equal(mb_exec_get(ex, y, out), MB_EINVAL);
  printf("  bad id reported as: %s\n", mb_error_message());
  assert_non_null(strstr(mb_error_message(), "id 12 at flat position 3 is outside [0, 10)"));
  int32_t good[6] = {1, 2, 3, 9, 4, 5};
  CT_OK(mb_exec_set_input(ex, ids, good));
  CT_OK(mb_exec_forward(ex));
  CT_OK(mb_exec_get(ex, y, out));
  assert_true(out[3 * 4 + 2] == 38.0f);
  mb_cuda_backend_forget(gpu, ex);
  mb_exec_free(ex);
  mb_graph_free(g);
  mb_params_free(params);
}

static int setup(void **state) {
  (void)state;
  return cuda_test_backend_open(&gpu);
}

static int teardown(void **state) {
  (void)state;
  cuda_test_graph_report(gpu, "cuda_ops");
  mb_cuda_backend_destroy(gpu);
  return 0;
}

int main(void) {
  ct_require_gpu("cuda_ops");
  ct_seed_init("cuda_ops");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_elementwise),   cmocka_unit_test(test_activations),
      cmocka_unit_test(test_matmul),        cmocka_unit_test(test_norms),
      cmocka_unit_test(test_loss),          cmocka_unit_test(test_embedding_pool_dropout),
      cmocka_unit_test(test_shapes),        cmocka_unit_test(test_casts),
      cmocka_unit_test(test_device_errors),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
