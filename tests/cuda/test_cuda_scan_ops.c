/* test_cuda_scan_ops.c (ctest: cuda_scan_ops; cuda_scan_ops_emulated): the
 * selective-scan and conv1d ops of the op table (MB_OP_SELECTIVE_SCAN[_GRAD],
 * MB_OP_CONV1D[_GRAD]) on the CUDA backend, through the executor, against
 * the CPU backend: the glue of kernels/cuda/scan_ops.c (descriptors, the two
 * dtypes, f32 states, device cu_seqlens, the planned and re-aligned
 * backward workspaces) and CUDA-graph capture of the launchers.
 *
 * Each op is a one-node program (like test_cuda_ops.c) whose inputs are the
 * same rounded random values on both backends: activations in bf16, f16 or
 * f32 on the GPU with parameters in f32 (the mixed-precision layout: f32
 * master weights) or in the activations' dtype, and f32 on the CPU.
 * Padded (two rows, three 128-token tiles with a partial one), varlen (a
 * sequence of length 1, a sequence crossing a tile boundary, a budget
 * tail), L = 1, conv widths 4 and 2. Programs compile with poison on. The
 * GPU program runs three times (eager, captured into a CUDA graph,
 * replayed): every run within the bound of the CPU (bf16 1e-2, f16 5e-3,
 * f32 1e-4 as relative L2 errors), and the replays the same bits as the
 * eager run (the kernels are deterministic).
 *
 * Two builds of this file:
 *  - cuda_scan_ops: the CUDA backend on a GPU (exits 77 without one);
 *  - cuda_scan_ops_emulated (-DSCAN_OPS_EMULATED, every build, no GPU or
 *    CUDA toolkit): the same programs on a stand-in "cuda" backend (host
 *    memory, the CPU backend's copies and fills, backend id CUDA) whose
 *    kernels are kernels/cuda/scan_ops.c, compiled into the test, over the
 *    real kernels' source run by the fiber emulator
 *    (test_cuda_scan_ops_emu.cpp). It checks the glue and the planner's
 *    workspaces before a GPU session relies on them; it cannot check
 *    graph capture.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* cmocka needs setjmp.h, stdarg.h and stddef.h before it (own block: not re-sorted) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "autograd/autograd.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cuda/selective_scan.h"
#include "runtime/dtype.h"
#include "runtime/philox.h"

#ifdef SCAN_OPS_EMULATED
#define CUDA_OP_PROG_EMULATED
#else
#include "runtime/cuda_device.h"
#endif
#include "tests/cuda/cuda_op_prog.h"

static mb_backend *dev;
static const char *test_name = "cuda_scan_ops";

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "out of memory\n");
    exit(1);
  }
  return p;
}

/* ---- random inputs, rounded to a dtype ---- */

static uint64_t seed, draws;

static void randn(float *x, size_t n, float mean, float sd) {
  mb_philox_fill_normal(seed, (draws++) << 40, x, n, mean, sd);
}

/* x rounded to dt in place (so both backends see the same values) */
static void round_to(float *x, size_t n, mb_dtype dt) {
  if (dt == MB_F32)
    return;
  void *t = xmalloc(n * mb_dtype_size(dt));
  if (mb_convert(t, dt, x, MB_F32, n) != MB_OK || mb_convert(x, MB_F32, t, dt, n) != MB_OK)
    fail_msg("convert: %s", mb_error_message());
  free(t);
}

static void *as_dtype(const float *x, size_t n, mb_dtype dt) {
  void *b = xmalloc(n * mb_dtype_size(dt) + 8);
  if (mb_convert(b, dt, x, MB_F32, n) != MB_OK)
    fail_msg("convert: %s", mb_error_message());
  return b;
}

/* ||x - r|| / ||r|| with an absolute floor (an all-zero reference, e.g. a
 * gradient at L = 1); NaN propagates and fails. */
static double rel_err(const float *x, const float *r, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)x[i] - r[i];
    num += d * d;
    den += (double)r[i] * r[i];
  }
  return sqrt(num) / fmax(sqrt(den), 1e-6 * sqrt((double)n) + 1e-30);
}

/* ---- one-node programs ---- */

static size_t out_numel(op_prog *p, int k) { return (size_t)mb_shape_numel(&mb_graph_value(p->g, p->out[k])->shape); }

/* Output k as f32 (n values) and as raw bytes (*raw, caller frees). */
static float *get_out(op_prog *p, int k, void **raw, size_t *raw_bytes) {
  const mb_value *v = mb_graph_value(p->g, p->out[k]);
  size_t n = out_numel(p, k);
  *raw_bytes = n * mb_dtype_size(v->dtype);
  *raw = xmalloc(*raw_bytes);
  CHECK_OK(mb_exec_get(p->ex, p->out[k], *raw));
  float *f = xmalloc(n * sizeof(float));
  CHECK_OK(mb_convert(f, MB_F32, *raw, v->dtype, n));
  return f;
}

/* The CPU program's outputs as f32 (ref[k]). */
static void run_reference(op_prog *pc, float **ref) {
  CHECK_OK(mb_exec_forward(pc->ex));
  for (int k = 0; k < pc->n_out; k++) {
    void *raw;
    size_t b;
    ref[k] = get_out(pc, k, &raw, &b);
    free(raw);
  }
}

static double worst_seen[3]; /* per dtype index: bf16, f16, f32 */
static int dt_index(mb_dtype dt) { return dt == MB_BF16 ? 0 : dt == MB_F16 ? 1 : 2; }

/* Run the device program three times (eager, capture, replay) against the
 * CPU's outputs. Output dtypes are checked too: states f32, gradients of the
 * parameters in the parameters' dtype. */
static void run_and_compare(op_prog *pg, float *const *ref, const mb_dtype *want_dt, double tol, const char *label,
                            const char *const *names, mb_dtype dt) {
  void *first[8] = {0};
  for (int k = 0; k < pg->n_out; k++)
    if (mb_graph_value(pg->g, pg->out[k])->dtype != want_dt[k])
      fail_msg("%s %s: dtype %s, expected %s", label, names[k], mb_dtype_name(mb_graph_value(pg->g, pg->out[k])->dtype),
               mb_dtype_name(want_dt[k]));
  printf("%s", label);
  for (int run = 0; run < 3; run++) {
    CHECK_OK(mb_exec_forward(pg->ex));
    for (int k = 0; k < pg->n_out; k++) {
      void *raw;
      size_t bytes;
      float *x = get_out(pg, k, &raw, &bytes);
      const double e = rel_err(x, ref[k], out_numel(pg, k));
      if (run == 0) {
        printf(" %s %.1e", names[k], e);
        if (e > worst_seen[dt_index(dt)])
          worst_seen[dt_index(dt)] = e;
      }
      if (!(e <= tol))
        fail_msg("%s %s: error %.3g exceeds %.1g (run %d)", label, names[k], e, tol, run);
      if (run == 0) {
        first[k] = raw;
      } else {
        if (memcmp(first[k], raw, bytes) != 0)
          fail_msg("%s %s: run %d (CUDA graph) differs from the eager run", label, names[k], run);
        free(raw);
      }
      free(x);
    }
  }
  printf("\n");
  for (int k = 0; k < 8; k++)
    free(first[k]);
}

static double tol_of(mb_dtype dt) { return dt == MB_BF16 ? 1e-2 : dt == MB_F16 ? 5e-3 : 1e-4; }

/* ---- cases ---- */

typedef struct {
  const char *name;
  int batch, seqlen, dim, dstate, width;
  int nseq; /* > 0: varlen with cu (batch 1) */
  int32_t cu[5];
} scase;

static const scase cases[] = {
    {"padded", 2, 300, 72, 16, 4, 0, {0}},
    {"L=1", 2, 1, 40, 16, 4, 0, {0}},
    {"varlen", 1, 300, 64, 8, 4, 3, {0, 1, 140, 290}}, /* length 1, one across a tile, a 10-token tail */
    {"varlen-w2", 1, 70, 33, 16, 2, 2, {0, 30, 64}},
};

/* Selective scan forward and backward for one case and dtype pair. */
static void scan_case(const scase *c, mb_dtype dt, mb_dtype pdt) {
  const size_t nx = (size_t)c->batch * c->seqlen * c->dim, nbc = (size_t)c->batch * c->seqlen * c->dstate;
  const size_t nA = (size_t)c->dim * c->dstate, nd = (size_t)c->dim;
  float *u = xmalloc(nx * 4), *delta = xmalloc(nx * 4), *z = xmalloc(nx * 4), *dy = xmalloc(nx * 4);
  float *B = xmalloc(nbc * 4), *C = xmalloc(nbc * 4), *A_log = xmalloc(nA * 4), *D = xmalloc(nd * 4);
  float *bias = xmalloc(nd * 4);
  randn(u, nx, 0, 1);
  randn(delta, nx, -0.5f, 0.5f);
  randn(z, nx, 0, 1);
  randn(dy, nx, 0, 1);
  randn(B, nbc, 0, 1);
  randn(C, nbc, 0, 1);
  randn(A_log, nA, 0, 0.1f);
  for (size_t i = 0; i < nA; i++)
    A_log[i] += logf((float)(i % (size_t)c->dstate + 1));
  randn(D, nd, 1, 0.1f);
  randn(bias, nd, -1, 0.3f);
  float *acts[6] = {u, delta, z, dy, B, C};
  size_t nacts[6] = {nx, nx, nx, nx, nbc, nbc};
  for (int i = 0; i < 6; i++)
    round_to(acts[i], nacts[i], dt);
  round_to(A_log, nA, pdt);
  round_to(D, nd, pdt);
  round_to(bias, nd, pdt);

  const int varlen = c->nseq > 0;
  mb_attrs a = mb_attrs_none();
  a.i[0] = 1; /* delta_softplus */
  const mb_shape bld = mb_shape3(c->batch, c->seqlen, c->dim), bln = mb_shape3(c->batch, c->seqlen, c->dstate);
  const mb_shape dn = mb_shape2(c->dim, c->dstate), d1 = mb_shape1(c->dim), cus = mb_shape1(c->nseq + 1);
  const int nin = varlen ? 9 : 8;
  mb_shape sh[9] = {bld, bld, dn, bln, bln, d1, bld, d1, cus};
  mb_dtype dc[9] = {MB_F32, MB_F32, MB_F32, MB_F32, MB_F32, MB_F32, MB_F32, MB_F32, MB_I32};
  mb_dtype dg[9] = {dt, dt, pdt, dt, dt, pdt, dt, pdt, MB_I32};
  float *host_f[8] = {u, delta, A_log, B, C, D, z, bias};
  size_t host_n[8] = {nx, nx, nA, nbc, nbc, nd, nx, nd};
  void *hc[9], *hg[9];
  for (int j = 0; j < 8; j++) {
    hc[j] = host_f[j];
    hg[j] = as_dtype(host_f[j], host_n[j], dg[j]);
  }
  hc[8] = hg[8] = (void *)c->cu;

  char label[128];
  op_prog pc, pg;
  op_prog_build(&pc, mb_cpu_backend(), MB_OP_SELECTIVE_SCAN, &a, nin, dc, sh, hc);
  op_prog_build(&pg, dev, MB_OP_SELECTIVE_SCAN, &a, nin, dg, sh, hg);
  float *ref[8] = {0};
  run_reference(&pc, ref);
  snprintf(label, sizeof label, "%-4s/%-4s %-9s scan     ", mb_dtype_name(dt), mb_dtype_name(pdt), c->name);
  const char *fnames[2] = {"y", "states"};
  const mb_dtype fdt[2] = {dt, MB_F32};
  run_and_compare(&pg, ref, fdt, tol_of(dt), label, fnames, dt);
  /* the backward reads the CPU's states (f32 on both backends) */
  const size_t nst = out_numel(&pc, 1);
  float *states = ref[1];
  const mb_shape sts = mb_graph_value(pc.g, pc.out[1])->shape;
  free(ref[0]);
  op_prog_free(&pg);
  op_prog_free(&pc);

  /* (u, delta, A_log, B, C, D, z, delta_bias, states, dy [, cu]) -> 8 gradients */
  const int nbin = varlen ? 11 : 10;
  mb_shape bsh[11];
  mb_dtype bdc[11], bdg[11];
  void *bhc[11], *bhg[11];
  for (int j = 0; j < 8; j++) {
    bsh[j] = sh[j];
    bdc[j] = dc[j];
    bdg[j] = dg[j];
    bhc[j] = hc[j];
    bhg[j] = hg[j];
  }
  bsh[8] = sts, bdc[8] = bdg[8] = MB_F32, bhc[8] = bhg[8] = states;
  void *dy_g = as_dtype(dy, nx, dt);
  bsh[9] = bld, bdc[9] = MB_F32, bdg[9] = dt, bhc[9] = dy, bhg[9] = dy_g;
  bsh[10] = cus, bdc[10] = bdg[10] = MB_I32, bhc[10] = bhg[10] = (void *)c->cu;
  (void)nst;
  op_prog_build(&pc, mb_cpu_backend(), MB_OP_SELECTIVE_SCAN_GRAD, &a, nbin, bdc, bsh, bhc);
  op_prog_build(&pg, dev, MB_OP_SELECTIVE_SCAN_GRAD, &a, nbin, bdg, bsh, bhg);
  float *gref[8] = {0};
  run_reference(&pc, gref);
  snprintf(label, sizeof label, "%-4s/%-4s %-9s scan_grad", mb_dtype_name(dt), mb_dtype_name(pdt), c->name);
  const char *gnames[8] = {"du", "ddelta", "dA_log", "dB", "dC", "dD", "dz", "dbias"};
  const mb_dtype gdt[8] = {dt, dt, pdt, dt, dt, pdt, dt, pdt};
  run_and_compare(&pg, gref, gdt, tol_of(dt), label, gnames, dt);
  op_prog_free(&pg);
  op_prog_free(&pc);

  for (int k = 0; k < 8; k++)
    free(gref[k]);
  free(states);
  free(dy_g);
  for (int j = 0; j < 8; j++)
    free(hg[j]);
  free(u), free(delta), free(z), free(dy), free(B), free(C), free(A_log), free(D), free(bias);
}

/* conv1d forward and backward (SiLU on, and off for the f32 pair). */
static void conv_case(const scase *c, mb_dtype dt, mb_dtype pdt, int silu) {
  const size_t nx = (size_t)c->batch * c->seqlen * c->dim, nw = (size_t)c->dim * c->width, nd = (size_t)c->dim;
  float *x = xmalloc(nx * 4), *dy = xmalloc(nx * 4), *w = xmalloc(nw * 4), *bias = xmalloc(nd * 4);
  randn(x, nx, 0, 1);
  randn(dy, nx, 0, 1);
  randn(w, nw, 0, 0.5f);
  randn(bias, nd, 0, 0.3f);
  round_to(x, nx, dt);
  round_to(dy, nx, dt);
  round_to(w, nw, pdt);
  round_to(bias, nd, pdt);
  const int varlen = c->nseq > 0;
  mb_attrs a = mb_attrs_none();
  a.i[0] = silu;
  const mb_shape bld = mb_shape3(c->batch, c->seqlen, c->dim), ws = mb_shape2(c->dim, c->width);
  const mb_shape d1 = mb_shape1(c->dim), cus = mb_shape1(c->nseq + 1);
  mb_shape sh[5] = {bld, ws, d1, cus};
  mb_dtype dc[5] = {MB_F32, MB_F32, MB_F32, MB_I32}, dg[5] = {dt, pdt, pdt, MB_I32};
  void *xg = as_dtype(x, nx, dt), *wg = as_dtype(w, nw, pdt), *bg = as_dtype(bias, nd, pdt);
  void *hc[5] = {x, w, bias, (void *)c->cu}, *hg[5] = {xg, wg, bg, (void *)c->cu};
  char label[128];
  op_prog pc, pg;
  op_prog_build(&pc, mb_cpu_backend(), MB_OP_CONV1D, &a, varlen ? 4 : 3, dc, sh, hc);
  op_prog_build(&pg, dev, MB_OP_CONV1D, &a, varlen ? 4 : 3, dg, sh, hg);
  float *ref[1];
  run_reference(&pc, ref);
  snprintf(label, sizeof label, "%-4s/%-4s %-9s conv1d%s     ", mb_dtype_name(dt), mb_dtype_name(pdt), c->name,
           silu ? "+silu" : "     ");
  const char *fnames[1] = {"y"};
  const mb_dtype fdt[1] = {dt};
  run_and_compare(&pg, ref, fdt, tol_of(dt), label, fnames, dt);
  free(ref[0]);
  op_prog_free(&pg);
  op_prog_free(&pc);

  /* (x, w, bias, dy [, cu]) -> dx, dw, dbias */
  void *dyg = as_dtype(dy, nx, dt);
  mb_shape bsh[5] = {bld, ws, d1, bld, cus};
  mb_dtype bdc[5] = {MB_F32, MB_F32, MB_F32, MB_F32, MB_I32}, bdg[5] = {dt, pdt, pdt, dt, MB_I32};
  void *bhc[5] = {x, w, bias, dy, (void *)c->cu}, *bhg[5] = {xg, wg, bg, dyg, (void *)c->cu};
  op_prog_build(&pc, mb_cpu_backend(), MB_OP_CONV1D_GRAD, &a, varlen ? 5 : 4, bdc, bsh, bhc);
  op_prog_build(&pg, dev, MB_OP_CONV1D_GRAD, &a, varlen ? 5 : 4, bdg, bsh, bhg);
  float *gref[3];
  run_reference(&pc, gref);
  snprintf(label, sizeof label, "%-4s/%-4s %-9s conv1d%s_grad", mb_dtype_name(dt), mb_dtype_name(pdt), c->name,
           silu ? "+silu" : "     ");
  const char *gnames[3] = {"dx", "dw", "dbias"};
  const mb_dtype gdt[3] = {dt, pdt, pdt};
  run_and_compare(&pg, gref, gdt, tol_of(dt), label, gnames, dt);
  op_prog_free(&pg);
  op_prog_free(&pc);
  for (int k = 0; k < 3; k++)
    free(gref[k]);
  free(xg), free(wg), free(bg), free(dyg);
  free(x), free(dy), free(w), free(bias);
}

/* dtype pairs (activations, parameters): the mixed-precision layout first */
static const mb_dtype pairs[][2] = {{MB_BF16, MB_F32}, {MB_F16, MB_F32}, {MB_F32, MB_F32}, {MB_BF16, MB_BF16}};

static void test_scan_ops(void **state) {
  (void)state;
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
    for (size_t pi = 0; pi < sizeof pairs / sizeof pairs[0]; pi++)
      scan_case(&cases[ci], pairs[pi][0], pairs[pi][1]);
}

static void test_conv1d_ops(void **state) {
  (void)state;
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
    for (size_t pi = 0; pi < sizeof pairs / sizeof pairs[0]; pi++)
      conv_case(&cases[ci], pairs[pi][0], pairs[pi][1], !(pairs[pi][0] == MB_F32 && ci % 2));
}

/* What the glue refuses, as errors naming why: a chunk other than 128, a
 * state size past 64. */
static void test_refusals(void **state) {
  (void)state;
  const size_t n = 2 * 8 * 32;
  float *zeros = calloc(n * 80, sizeof(float));
  mb_attrs a = mb_attrs_none();
  a.i[0] = 1;
  a.i[1] = 64; /* chunk */
  for (int which = 0; which < 2; which++) {
    const int N = which ? 80 : 16;
    const mb_shape bld = mb_shape3(2, 8, 32), bln = mb_shape3(2, 8, N), dn = mb_shape2(32, N), d1 = mb_shape1(32);
    mb_shape sh[8] = {bld, bld, dn, bln, bln, d1, bld, d1};
    mb_dtype dg[8] = {MB_F32, MB_F32, MB_F32, MB_F32, MB_F32, MB_F32, MB_F32, MB_F32};
    op_prog p;
    memset(&p, 0, sizeof p);
    CHECK_OK(mb_params_new(MB_F32, &p.params));
    CHECK_OK(mb_graph_new(p.params, &p.g));
    for (int j = 0; j < 8; j++) {
      char name[16];
      snprintf(name, sizeof name, "in%d", j);
      p.in[j] = mb_input(p.g, name, dg[j], sh[j]);
    }
    mb_attrs aa = a;
    if (which)
      aa.i[1] = 0;
    p.n_out = mb_graph_op(p.g, MB_HERE, MB_OP_SELECTIVE_SCAN, p.in, 8, &aa, p.out);
    assert_true(p.n_out == 2);
    CHECK_OK(mb_mark_output(p.g, p.out[0]));
    mb_compile_opts o;
    memset(&o, 0, sizeof o);
    CHECK_OK(mb_graph_compile(p.g, &o));
    CHECK_OK(mb_exec_new(p.g, dev, &p.ex));
    for (int j = 0; j < 8; j++)
      CHECK_OK(mb_exec_set_input(p.ex, p.in[j], zeros));
    int rc = mb_exec_forward(p.ex);
    printf("  refused (%s): %s\n", which ? "N = 80" : "chunk 64", mb_error_message());
    assert_int_not_equal(rc, MB_OK);
    assert_non_null(strstr(mb_error_message(), which ? "dstate 80" : "chunk"));
    op_prog_free(&p);
  }
  free(zeros);
}

#ifdef SCAN_OPS_EMULATED
/* The stand-in device: the CPU backend's memory functions under the CUDA id,
 * so the executor runs the CUDA glue (host memory, emulated launchers). */
static mb_backend emu_backend;

struct CUstream_st *mb_cuda_backend_stream(mb_backend *be) {
  (void)be;
  return NULL;
}

static int setup(void **state) {
  (void)state;
  emu_backend = *mb_cpu_backend(); /* registers the CPU kernels too */
  emu_backend.id = MB_BACKEND_CUDA;
  emu_backend.name = "cuda (emulated)";
  mb_cuda_scan_register_ops();
  dev = &emu_backend;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  printf("worst relative errors: bf16 %.2e, f16 %.2e, f32 %.2e\n", worst_seen[0], worst_seen[1], worst_seen[2]);
  return 0;
}
#else
static int setup(void **state) {
  (void)state;
  return cuda_test_backend_open(&dev);
}

static int teardown(void **state) {
  (void)state;
  printf("worst relative errors: bf16 %.2e, f16 %.2e, f32 %.2e\n", worst_seen[0], worst_seen[1], worst_seen[2]);
  const unsigned long long fallbacks = cuda_test_graph_report(dev, test_name);
  mb_cuda_backend_destroy(dev);
  return fallbacks ? -1 : 0;
}
#endif

int main(void) {
#ifdef SCAN_OPS_EMULATED
  test_name = "cuda_scan_ops_emulated";
#else
  int ndev = 0;
  char why[256];
  if (mb_cuda_device_count(&ndev, why, sizeof why) != MB_OK || ndev == 0) {
    printf("%s: no CUDA device (%s): skipping\n", test_name, why);
    return 77;
  }
#endif
  /* fresh inputs every run; MAMBERT_TEST_SEED replays one */
  const char *s = getenv("MAMBERT_TEST_SEED");
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  seed = s && *s ? strtoull(s, NULL, 0) : ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec;
  printf("%s: seed %llu (MAMBERT_TEST_SEED=%llu replays it)\n", test_name, (unsigned long long)seed,
         (unsigned long long)seed);
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_scan_ops), cmocka_unit_test(test_conv1d_ops),
                                     cmocka_unit_test(test_refusals)};
  return cmocka_run_group_tests(tests, setup, teardown);
}
