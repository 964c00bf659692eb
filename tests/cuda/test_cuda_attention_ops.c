/* test_cuda_attention_ops.c (ctest: cuda_attention_ops): the attention ops
 * of the op table (MB_OP_ATTENTION, MB_OP_ATTENTION_GRAD) on the CUDA
 * backend, through the executor, against the CPU backend: the glue of
 * kernels/cuda/attention_ops.c, the planner's workspace, and CUDA-graph
 * capture of the launchers. Each op is a one-node program (like
 * test_cuda_ops.c) in bf16, f16 and f32 on the GPU and f32 on the CPU, on
 * the same rounded random inputs; key padding (a row with holes and right
 * padding), varlen (a sequence of length 1, a budget tail), causal;
 * head_dim 64 and 128. Programs compile with poison on. The GPU program
 * runs three times (eager, captured into a CUDA graph, replayed): every run
 * within the bound of the CPU (bf16 1e-2, f16 5e-3, f32 5e-5 forward and
 * 1e-3 gradients), lse +inf on exactly the padded rows, and the replays
 * the same bits as the eager run (the backward's dQ is deterministic).
 * Needs a GPU; exits 77 without.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka needs setjmp.h, stdarg.h and stddef.h before it (own block: not re-sorted) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "autograd/autograd.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cuda/cuda.h"
#include "tests/cuda/cuda_op_prog.h"
#include "tests/cuda/test_cuda_attention_util.h"

static mb_backend *gpu;

typedef struct {
  const char *name;
  int batch, seqlen, heads, causal, mode; /* mode: 0 none, 1 key mask, 2 cu_seqlens */
} ocase;

static const ocase cases[] = {
    {"padded", 2, 77, 3, 0, 0},  {"key_mask", 2, 77, 3, 0, 1},       {"key_mask-causal", 2, 77, 3, 1, 1},
    {"varlen", 1, 140, 2, 0, 2}, {"varlen-causal", 1, 140, 2, 1, 2},
};
static const int32_t cu_seqlens[4] = {0, 1, 70, 133}; /* the varlen cases: budget 140, tail 7 */

/* Output k as f32 (n values) and as raw bytes (*raw, caller frees). */
static float *get_out(op_prog *p, int k, size_t *n, void **raw, size_t *raw_bytes) {
  const mb_value *v = mb_graph_value(p->g, p->out[k]);
  *n = (size_t)mb_shape_numel(&v->shape);
  *raw_bytes = *n * mb_dtype_size(v->dtype);
  *raw = at_malloc(*raw_bytes);
  CHECK_OK(mb_exec_get(p->ex, p->out[k], *raw));
  float *f = at_malloc(*n * sizeof(float));
  CHECK_OK(mb_convert(f, MB_F32, *raw, v->dtype, *n));
  return f;
}

/* host copy of x (n floats) in dtype dt */
static void *as_dtype(const float *x, size_t n, mb_dtype dt) {
  void *b = at_malloc(n * mb_dtype_size(dt) + 8);
  if (mb_convert(b, dt, x, MB_F32, n) != MB_OK)
    at_die(mb_error_message());
  return b;
}

/* Run the GPU program three times against the CPU's outputs (ref[k], f32). */
static void run_and_compare(op_prog *pg, float *const *ref, const int *is_lse, double tol, const char *label) {
  void *first[3] = {0};
  for (int run = 0; run < 3; run++) {
    CHECK_OK(mb_exec_forward(pg->ex));
    for (int k = 0; k < pg->n_out; k++) {
      size_t n, bytes;
      void *raw;
      float *x = get_out(pg, k, &n, &raw, &bytes);
      double *r = at_malloc(n * sizeof(double));
      for (size_t i = 0; i < n; i++)
        r[i] = ref[k][i];
      if (is_lse[k]) {
        size_t inf_bad = 0;
        const double e = at_compare_lse(x, r, n, &inf_bad);
        if (run == 0)
          printf(" lse %.1e", e);
        if (inf_bad || !(e <= 5e-4))
          fail_msg("%s output %d (lse): differs by %.3g, %zu +inf mismatches (run %d)", label, k, e, inf_bad, run);
      } else {
        const at_err e = at_compare(x, r, n);
        if (run == 0)
          printf(" out%d %.2e", k, e.norm);
        if (!(e.norm <= tol))
          fail_msg("%s output %d: error %.3g exceeds %.1g (run %d)", label, k, e.norm, tol, run);
      }
      if (run == 0) {
        first[k] = raw;
      } else {
        if (memcmp(first[k], raw, bytes) != 0)
          fail_msg("%s output %d: run %d (CUDA graph) differs from the eager run", label, k, run);
        free(raw);
      }
      free(x);
      free(r);
    }
  }
  printf("\n");
  for (int k = 0; k < 3; k++)
    free(first[k]);
}

static void run_case(const ocase *c, mb_dtype dt, int D) {
  const size_t tokens = (size_t)c->batch * c->seqlen, n = tokens * c->heads * D, nl = tokens * c->heads;
  const mb_shape qs = mb_shape4(c->batch, c->seqlen, c->heads, D);
  float *x[4]; /* q, k, v, dout */
  for (int i = 0; i < 4; i++) {
    x[i] = at_malloc(n * sizeof(float));
    at_randn(x[i], n, 1.0f);
    at_round(x[i], n, dt);
  }
  int32_t *mask = NULL;
  mb_shape ms = mb_shape1(4);
  if (c->mode == 1) {
    mask = at_malloc(tokens * sizeof *mask);
    for (size_t t = 0; t < tokens; t++)
      mask[t] = 1;
    for (int i = 40; i < c->seqlen; i++) /* row 1: right padding after 40 real tokens, and a hole */
      mask[c->seqlen + i] = 0;
    mask[c->seqlen + 5] = 0;
    ms = mb_shape2(c->batch, c->seqlen);
  }
  void *mask_host = c->mode == 1 ? (void *)mask : (void *)cu_seqlens;
  mb_attrs a = mb_attrs_none();
  a.i[0] = c->causal;
  a.i[1] = c->mode;
  a.f[0] = 0.0;

  /* forward: CPU f32 vs GPU dt */
  const int nin_f = c->mode ? 4 : 3;
  mb_dtype dtc[7] = {MB_F32, MB_F32, MB_F32, MB_I32}, dtg[7] = {dt, dt, dt, MB_I32};
  mb_shape sh[7] = {qs, qs, qs, ms};
  void *hc[7] = {x[0], x[1], x[2], mask_host};
  void *hg[7] = {as_dtype(x[0], n, dt), as_dtype(x[1], n, dt), as_dtype(x[2], n, dt), mask_host};
  op_prog pc, pg;
  op_prog_build(&pc, mb_cpu_backend(), MB_OP_ATTENTION, &a, nin_f, dtc, sh, hc);
  op_prog_build(&pg, gpu, MB_OP_ATTENTION, &a, nin_f, dtg, sh, hg);
  CHECK_OK(mb_exec_forward(pc.ex));
  size_t no, nlse, b1, b2;
  void *r1, *r2;
  float *ref_out = get_out(&pc, 0, &no, &r1, &b1), *ref_lse = get_out(&pc, 1, &nlse, &r2, &b2);
  free(r1);
  free(r2);
  assert_int_equal(no, n);
  assert_int_equal(nlse, nl);
  const double tol_f = dt == MB_BF16 ? 1e-2 : dt == MB_F16 ? 5e-3 : 5e-5;
  const double tol_b = dt == MB_BF16 ? 1e-2 : dt == MB_F16 ? 5e-3 : 1e-3;
  char label[96];
  snprintf(label, sizeof label, "%-4s D=%-3d %-15s attention     ", mb_dtype_name(dt), D, c->name);
  printf("%s", label);
  float *ref_f[2] = {ref_out, ref_lse};
  const int lse_f[2] = {0, 1};
  run_and_compare(&pg, ref_f, lse_f, tol_f, label);
  op_prog_free(&pg);
  op_prog_free(&pc);

  /* backward: (q, k, v, out, lse, dout [, mask]) -> dq, dk, dv, on the CPU's out and lse */
  at_round(ref_out, n, dt);
  const int nin_b = c->mode ? 7 : 6;
  mb_dtype bdc[7] = {MB_F32, MB_F32, MB_F32, MB_F32, MB_F32, MB_F32, MB_I32};
  mb_dtype bdg[7] = {dt, dt, dt, dt, MB_F32, dt, MB_I32};
  const mb_shape ls = mb_shape3(c->batch, c->seqlen, c->heads);
  mb_shape bsh[7] = {qs, qs, qs, qs, ls, qs, ms};
  void *bhc[7] = {x[0], x[1], x[2], ref_out, ref_lse, x[3], mask_host};
  void *out_g = as_dtype(ref_out, n, dt), *dout_g = as_dtype(x[3], n, dt);
  void *bhg[7] = {hg[0], hg[1], hg[2], out_g, ref_lse, dout_g, mask_host};
  op_prog_build(&pc, mb_cpu_backend(), MB_OP_ATTENTION_GRAD, &a, nin_b, bdc, bsh, bhc);
  op_prog_build(&pg, gpu, MB_OP_ATTENTION_GRAD, &a, nin_b, bdg, bsh, bhg);
  CHECK_OK(mb_exec_forward(pc.ex));
  float *ref_g[3];
  for (int k = 0; k < 3; k++) {
    ref_g[k] = get_out(&pc, k, &no, &r1, &b1);
    free(r1);
  }
  snprintf(label, sizeof label, "%-4s D=%-3d %-15s attention_grad", mb_dtype_name(dt), D, c->name);
  printf("%s", label);
  const int lse_b[3] = {0, 0, 0};
  run_and_compare(&pg, ref_g, lse_b, tol_b, label);
  op_prog_free(&pg);
  op_prog_free(&pc);

  for (int k = 0; k < 3; k++)
    free(ref_g[k]);
  free(ref_out);
  free(ref_lse);
  free(out_g);
  free(dout_g);
  for (int i = 0; i < 3; i++)
    free(hg[i]);
  for (int i = 0; i < 4; i++)
    free(x[i]);
  free(mask);
}

static void test_attention_ops(void **state) {
  (void)state;
  const mb_dtype dts[3] = {MB_BF16, MB_F16, MB_F32};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
    for (int di = 0; di < 3; di++)
      for (int D = 64; D <= 128; D += 64)
        run_case(&cases[ci], dts[di], D);
}

static int setup(void **state) {
  (void)state;
  return cuda_test_backend_open(&gpu);
}

static int teardown(void **state) {
  (void)state;
  const unsigned long long fallbacks = cuda_test_graph_report(gpu, "cuda_attention_ops");
  mb_cuda_backend_destroy(gpu);
  return fallbacks ? -1 : 0;
}

int main(void) {
  at_require_gpu("cuda_attention_ops");
  at_seed_init("cuda_attention_ops");
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_attention_ops)};
  return cmocka_run_group_tests(tests, setup, teardown);
}
