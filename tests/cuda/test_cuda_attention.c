/* test_cuda_attention.c (ctest: cuda_attention): the CUDA attention kernels
 * against the CPU reference (kernels/cpu/attention.h, in float64 on the
 * same rounded inputs), forward and all three gradients, on fresh random
 * inputs: L = 1, 7, 129, 1000; key padding (right padding and holes);
 * varlen with several sequences (one of length 1, one empty) and a padded
 * budget tail; causal and not; head_dim 64 and 128; bf16 and f16 through
 * both flash forward tilings, the flash backward and the reference kernel;
 * f32 through the reference kernel. Every output is poisoned (NaN) before
 * every run; padded rows must come back exactly 0 (out, grads) and +inf
 * (lse). The flash forward and the (deterministic) backward must be
 * bitwise reproducible; the fast backward (f32 atomics) within bounds; dq
 * scales exactly with a 2^40 larger dO (no range limit); a query row of
 * NaN gives NaN (out, lse, dq), the other rows as before. Then the
 * dispatcher at run time: fallbacks (f32, head_dim 96, a misaligned
 * pointer) give the right numbers, forced flash requests it cannot serve
 * fail with the reason, bad arguments are errors.
 * With MAMBERT_ATTN_DUMP=PATH it also writes three bf16 cases (inputs and
 * the default kernels' outputs and gradients, as f32) to PATH as
 * safetensors, for `tools/check_torch_attention.py PATH`, which runs
 * torch's math backend in f32 on the same inputs and compares.
 * Exits 77 (skipped) without a GPU.
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

#include "kernels/cpu/attention.h"
#include "kernels/cuda/attention.h"
#include "runtime/log.h"
#include "runtime/safetensors.h"
#include "runtime/tensor.h"
#include "tests/cuda/test_cuda_attention_util.h"

/* Bounds on ||out - ref|| / ||ref|| (the 1e-2 for bf16, the CUDA
 * backend's 5e-3 for f16; f32 arithmetic everywhere else) and on |lse - ref|. */
static double tol_of(mb_dtype dt, int grad) {
  switch (dt) {
  case MB_BF16: return 1e-2;
  case MB_F16: return 5e-3;
  default: return grad ? 1e-3 : 5e-5; /* grad: the zero gradients of L = 1 rows sit at ~2e-4 of the floor */
  }
}
#define TOL_LSE 5e-4

static int g_cc;

typedef struct {
  const char *name;
  int batch, seqlen, heads, causal;
  int mask_kind; /* 0 none, 1 right padding per row, 2 random holes, 3 rows after the first: 128 keys left padding */
  int nseq;      /* > 0: varlen with lens[], seqlen = sum + tail */
  int lens[40], tail;
  float qstd;
} tcase;

static const tcase cases[] = {
    {"L1", 3, 1, 2, 0, 0, 0, {0}, 0, 1.0f},
    {"L7-causal", 2, 7, 3, 1, 0, 0, {0}, 0, 1.0f},
    {"L129-pad", 3, 129, 2, 0, 1, 0, {0}, 0, 2.5f},
    {"L129-holes", 2, 129, 2, 0, 2, 0, {0}, 0, 1.0f},
    {"L1000", 1, 1000, 2, 0, 0, 0, {0}, 0, 1.0f},
    {"L1000-causal-pad", 2, 1000, 1, 1, 1, 0, {0}, 0, 1.0f},
    {"varlen", 1, 0, 2, 0, 0, 7, {1, 129, 7, 0, 300, 64, 1000}, 37, 1.0f},
    {"varlen-causal", 1, 0, 3, 1, 0, 5, {5, 1, 257, 128, 64}, 3, 1.0f},
    /* 40 sequences: the kernels' tile search scans cu_seqlens 32 at a time,
     * so the last 8 take its second step (sequence 33 is empty) */
    {"varlen-40seq",
     1,
     0,
     2,
     0,
     0,
     40,
     {1,  38, 75, 15, 52, 89, 29, 66, 6,  43, 80, 20, 57, 94, 34, 71, 11, 48, 85, 25,
      62, 2,  39, 76, 16, 53, 90, 30, 67, 7,  44, 81, 21, 0,  95, 35, 72, 12, 49, 86},
     5,
     1.0f},
    /* a whole key tile of padding before real keys (tiling 3's ordered dQ
     * passes the skipped tile's turns) */
    {"L300-leftpad", 2, 300, 1, 0, 3, 0, {0}, 0, 1.0f},
};

/* One problem, on the host (CPU reference) and on the device. */
typedef struct {
  mb_attn_desc hd, dd; /* host pointers / device pointers */
  mb_dtype dt;
  size_t tokens, n, nl;
  float *q, *k, *v, *dout; /* rounded to dt */
  double *ref_out, *ref_lse, *ref_dq, *ref_dk, *ref_dv;
  int32_t *mask, *cu;
  unsigned char *pad; /* padded tokens */
  void *d_q, *d_k, *d_v, *d_dout, *d_out, *d_dq, *d_dk, *d_dv, *d_ws;
  float *d_lse;
  int32_t *d_mask, *d_cu;
  size_t ws_bytes;
} problem;

static double *to_double(const float *x, size_t n) {
  double *y = at_malloc(n * sizeof *y);
  for (size_t i = 0; i < n; i++)
    y[i] = x[i];
  return y;
}

static void problem_init(problem *p, const tcase *c, mb_dtype dt, int D) {
  memset(p, 0, sizeof *p);
  p->dt = dt;
  mb_attn_desc *d = &p->hd;
  d->heads = c->heads;
  d->head_dim = D;
  d->causal = c->causal;
  if (c->nseq > 0) {
    p->cu = at_malloc((size_t)(c->nseq + 1) * sizeof *p->cu);
    p->cu[0] = 0;
    for (int s = 0; s < c->nseq; s++)
      p->cu[s + 1] = p->cu[s] + c->lens[s];
    d->batch = 1;
    d->seqlen = p->cu[c->nseq] + c->tail;
    d->cu_seqlens = p->cu;
    d->nseq = c->nseq;
  } else {
    d->batch = c->batch;
    d->seqlen = c->seqlen;
  }
  p->tokens = (size_t)d->batch * d->seqlen;
  p->n = p->tokens * d->heads * D;
  p->nl = p->tokens * d->heads;
  if (c->mask_kind) {
    p->mask = at_malloc(p->tokens * sizeof *p->mask);
    int *r = at_malloc(p->tokens * sizeof *r);
    at_randint(r, p->tokens, 100);
    for (int b = 0; b < d->batch; b++) {
      /* right padding: row b keeps a random prefix (row 0 keeps all) */
      const int keep = b == 0 ? d->seqlen : 1 + r[(size_t)b * d->seqlen] * (d->seqlen - 1) / 100;
      for (int i = 0; i < d->seqlen; i++) {
        const size_t t = (size_t)b * d->seqlen + i;
        p->mask[t] = c->mask_kind == 1 ? i < keep : c->mask_kind == 2 ? (i == 0 || r[t] >= 30) : (b == 0 || i >= 128);
      }
    }
    free(r);
    d->key_mask = p->mask;
  }
  p->q = at_malloc(p->n * sizeof(float));
  p->k = at_malloc(p->n * sizeof(float));
  p->v = at_malloc(p->n * sizeof(float));
  p->dout = at_malloc(p->n * sizeof(float));
  at_randn(p->q, p->n, c->qstd);
  at_randn(p->k, p->n, 1.0f);
  at_randn(p->v, p->n, 1.0f);
  at_randn(p->dout, p->n, 1.0f);
  at_round(p->q, p->n, dt);
  at_round(p->k, p->n, dt);
  at_round(p->v, p->n, dt);
  at_round(p->dout, p->n, dt);

  /* the CPU reference in float64 on exactly these values */
  double *qd = to_double(p->q, p->n), *kd = to_double(p->k, p->n), *vd = to_double(p->v, p->n);
  double *dod = to_double(p->dout, p->n);
  p->ref_out = at_malloc(p->n * sizeof(double));
  p->ref_lse = at_malloc(p->nl * sizeof(double));
  p->ref_dq = at_malloc(p->n * sizeof(double));
  p->ref_dk = at_malloc(p->n * sizeof(double));
  p->ref_dv = at_malloc(p->n * sizeof(double));
  if (mb_cpu_attn_fwd_f64(d, qd, kd, vd, p->ref_out, p->ref_lse, NULL, 0) != MB_OK ||
      mb_cpu_attn_bwd_f64(d, qd, kd, vd, p->ref_out, p->ref_lse, dod, p->ref_dq, p->ref_dk, p->ref_dv, NULL, 0) !=
          MB_OK)
    at_die(mb_error_message());
  free(qd);
  free(kd);
  free(vd);
  free(dod);

  /* the device side */
  const size_t es = mb_dtype_size(dt);
  p->dd = p->hd;
  if (p->mask) {
    p->d_mask = at_dev(p->tokens * sizeof(int32_t));
    AT_CUDA(cudaMemcpy(p->d_mask, p->mask, p->tokens * sizeof(int32_t), cudaMemcpyHostToDevice));
    p->dd.key_mask = p->d_mask;
  }
  if (p->cu) {
    p->d_cu = at_dev((size_t)(c->nseq + 1) * sizeof(int32_t));
    AT_CUDA(cudaMemcpy(p->d_cu, p->cu, (size_t)(c->nseq + 1) * sizeof(int32_t), cudaMemcpyHostToDevice));
    p->dd.cu_seqlens = p->d_cu;
  }
  p->d_q = at_dev(p->n * es);
  p->d_k = at_dev(p->n * es);
  p->d_v = at_dev(p->n * es);
  p->d_dout = at_dev(p->n * es);
  at_upload(p->d_q, p->q, p->n, dt);
  at_upload(p->d_k, p->k, p->n, dt);
  at_upload(p->d_v, p->v, p->n, dt);
  at_upload(p->d_dout, p->dout, p->n, dt);
  p->d_out = at_dev(p->n * es);
  p->d_lse = at_dev(p->nl * sizeof(float));
  p->d_dq = at_dev(p->n * es);
  p->d_dk = at_dev(p->n * es);
  p->d_dv = at_dev(p->n * es);
  p->ws_bytes = mb_cuda_attn_bwd_workspace(&p->dd);
  p->d_ws = at_dev(p->ws_bytes);
  p->pad = at_pad_tokens(p->tokens, p->mask, p->cu, p->hd.nseq);
}

static void problem_free(problem *p) {
  free(p->q);
  free(p->k);
  free(p->v);
  free(p->dout);
  free(p->ref_out);
  free(p->ref_lse);
  free(p->ref_dq);
  free(p->ref_dk);
  free(p->ref_dv);
  free(p->mask);
  free(p->cu);
  free(p->pad);
  void *dev[] = {p->d_q,  p->d_k,  p->d_v,  p->d_dout, p->d_out,  p->d_lse,
                 p->d_dq, p->d_dk, p->d_dv, p->d_ws,   p->d_mask, p->d_cu};
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
    if (dev[i])
      AT_CUDA(cudaFree(dev[i]));
}

/* worst errors seen, per dtype, for the summary */
static double worst[MB_DTYPE_COUNT][2];

static void note(mb_dtype dt, int grad, double e) {
  if (e > worst[dt][grad])
    worst[dt][grad] = e;
}

static void print_err(const char *what, at_err e) {
  printf(" %s %.2e (elem max %.1e p99 %.1e med %.1e)", what, e.norm, e.max, e.p99, e.median);
}

/* Check one forward result already in p->d_out / p->d_lse. */
static void check_forward(const problem *p, const char *label) {
  float *out = at_malloc(p->n * sizeof(float)), *lse = at_malloc(p->nl * sizeof(float));
  at_download(out, p->d_out, p->n, p->dt);
  at_download(lse, p->d_lse, p->nl, MB_F32);
  const at_err e = at_compare(out, p->ref_out, p->n);
  size_t inf_bad = 0;
  const double el = at_compare_lse(lse, p->ref_lse, p->nl, &inf_bad);
  printf("%s fwd", label);
  print_err("out", e);
  printf(" lse %.1e\n", el);
  fflush(stdout);
  note(p->dt, 0, e.norm);
  if (!(e.norm <= tol_of(p->dt, 0)))
    fail_msg("%s: forward error %.3e exceeds %.1e", label, e.norm, tol_of(p->dt, 0));
  const size_t width = (size_t)p->hd.heads * p->hd.head_dim, nz = at_nonzero_pad(out, p->pad, p->tokens, width);
  if (nz)
    fail_msg("%s: %zu outputs of padded rows are not 0", label, nz);
  if (inf_bad)
    fail_msg("%s: %zu lse entries of padded rows are not +inf", label, inf_bad);
  if (!(el <= TOL_LSE))
    fail_msg("%s: lse differs by %.3e (bound %.0e)", label, el, TOL_LSE);
  free(out);
  free(lse);
}

static void check_backward(const problem *p, const char *label) {
  float *g = at_malloc(p->n * sizeof(float));
  const void *dev[3] = {p->d_dq, p->d_dk, p->d_dv};
  const double *ref[3] = {p->ref_dq, p->ref_dk, p->ref_dv};
  const char *names[3] = {"dq", "dk", "dv"};
  at_err e[3];
  size_t nz[3];
  const size_t width = (size_t)p->hd.heads * p->hd.head_dim;
  for (int i = 0; i < 3; i++) {
    at_download(g, dev[i], p->n, p->dt);
    e[i] = at_compare(g, ref[i], p->n);
    nz[i] = at_nonzero_pad(g, p->pad, p->tokens, width);
  }
  printf("%s bwd", label);
  for (int i = 0; i < 3; i++)
    print_err(names[i], e[i]);
  printf("\n");
  fflush(stdout);
  for (int i = 0; i < 3; i++) {
    note(p->dt, 1, e[i].norm);
    if (!(e[i].norm <= tol_of(p->dt, 1)))
      fail_msg("%s: %s error %.3e exceeds %.1e", label, names[i], e[i].norm, tol_of(p->dt, 1));
    if (nz[i])
      fail_msg("%s: %zu %s entries of padded tokens are not 0", label, nz[i], names[i]);
  }
  free(g);
}

/* kernel MB_CUDA_ATTN_AUTO: the dispatcher's choice (what a user gets) */
static void run_fwd(problem *p, mb_cuda_attn_kernel kernel) {
  at_poison(p->d_out, p->n * mb_dtype_size(p->dt));
  at_poison(p->d_lse, p->nl * sizeof(float));
  const int rc = kernel == MB_CUDA_ATTN_AUTO
                     ? mb_cuda_attn_fwd(&p->dd, p->dt, p->d_q, p->d_k, p->d_v, p->d_out, p->d_lse, NULL)
                     : mb_cuda_attn_fwd_with(kernel, &p->dd, p->dt, p->d_q, p->d_k, p->d_v, p->d_out, p->d_lse, NULL);
  if (rc != MB_OK)
    fail_msg("forward (%s) failed: %s", mb_cuda_attn_kernel_name(kernel), mb_error_message());
  AT_CUDA(cudaGetLastError());
}

static void run_bwd(problem *p, mb_cuda_attn_kernel kernel) {
  const size_t bytes = p->n * mb_dtype_size(p->dt);
  at_poison(p->d_dq, bytes);
  at_poison(p->d_dk, bytes);
  at_poison(p->d_dv, bytes);
  at_poison(p->d_ws, p->ws_bytes);
  const int rc = kernel == MB_CUDA_ATTN_AUTO
                     ? mb_cuda_attn_bwd(&p->dd, p->dt, p->d_q, p->d_k, p->d_v, p->d_out, p->d_lse, p->d_dout, p->d_dq,
                                        p->d_dk, p->d_dv, p->d_ws, p->ws_bytes, NULL)
                     : mb_cuda_attn_bwd_with(kernel, &p->dd, p->dt, p->d_q, p->d_k, p->d_v, p->d_out, p->d_lse,
                                             p->d_dout, p->d_dq, p->d_dk, p->d_dv, p->d_ws, p->ws_bytes, NULL);
  if (rc != MB_OK)
    fail_msg("backward (%s) failed: %s", mb_cuda_attn_kernel_name(kernel), mb_error_message());
  AT_CUDA(cudaGetLastError());
}

static void *download_raw(const void *dev, size_t bytes) {
  void *h = at_malloc(bytes);
  AT_CUDA(cudaDeviceSynchronize());
  AT_CUDA(cudaMemcpy(h, dev, bytes, cudaMemcpyDeviceToHost));
  return h;
}

/* Run the flash forward and the (deterministic) backward again: out, lse,
 * dq, dk, dv must be the same bits. */
static void check_reproducible(problem *p, const char *label) {
  const size_t bytes = p->n * mb_dtype_size(p->dt), lbytes = p->nl * sizeof(float);
  void *o1 = download_raw(p->d_out, bytes), *l1 = download_raw(p->d_lse, lbytes);
  void *q1 = download_raw(p->d_dq, bytes), *k1 = download_raw(p->d_dk, bytes), *v1 = download_raw(p->d_dv, bytes);
  run_fwd(p, MB_CUDA_ATTN_FLASH);
  run_bwd(p, MB_CUDA_ATTN_FLASH);
  void *o2 = download_raw(p->d_out, bytes), *l2 = download_raw(p->d_lse, lbytes);
  void *q2 = download_raw(p->d_dq, bytes), *k2 = download_raw(p->d_dk, bytes), *v2 = download_raw(p->d_dv, bytes);
  if (memcmp(o1, o2, bytes) || memcmp(l1, l2, lbytes))
    fail_msg("%s: the flash forward gave different bits on a second run (a race?)", label);
  if (memcmp(k1, k2, bytes) || memcmp(v1, v2, bytes))
    fail_msg("%s: the flash backward's dk/dv changed on a second run (a race?)", label);
  if (memcmp(q1, q2, bytes))
    fail_msg("%s: the deterministic flash backward's dq changed on a second run", label);
  free(o1), free(l1), free(q1), free(k1), free(v1), free(o2), free(l2), free(q2), free(k2), free(v2);
}

/* MAMBERT_ATTN_TEST_QUICK=1 skips the L = 1000 cases (for a run on the
 * emulator: tests/cuda/test_cuda_attention_emu_runtime.cpp). */
static int quick_skip(const tcase *c) {
  const char *q = getenv("MAMBERT_ATTN_TEST_QUICK");
  if (!(q && *q && *q != '0'))
    return 0;
  int longest = c->seqlen;
  for (int s = 0; s < c->nseq; s++)
    longest = c->lens[s] > longest ? c->lens[s] : longest;
  return longest > 400;
}

static void run_all_cases(mb_dtype dt) {
  const int dims[2] = {64, 128};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
    for (int di = 0; di < 2 && !quick_skip(&cases[ci]); di++) {
      problem p;
      problem_init(&p, &cases[ci], dt, dims[di]);
      char label[128];
      if (dt == MB_F32) {
        snprintf(label, sizeof label, "%-5s D=%-3d %-17s reference", mb_dtype_name(dt), dims[di], cases[ci].name);
        run_fwd(&p, MB_CUDA_ATTN_REFERENCE);
        check_forward(&p, label);
        run_bwd(&p, MB_CUDA_ATTN_REFERENCE);
        check_backward(&p, label);
        problem_free(&p);
        continue;
      }
      snprintf(label, sizeof label, "%-5s D=%-3d %-17s reference", mb_dtype_name(dt), dims[di], cases[ci].name);
      run_fwd(&p, MB_CUDA_ATTN_REFERENCE);
      check_forward(&p, label);
      run_bwd(&p, MB_CUDA_ATTN_REFERENCE);
      check_backward(&p, label);
      /* tilings 5-8 (TMA, mbarriers) run last, in test_tma_tilings: a
       * protocol error there hangs or poisons the context, and must not
       * take these lines with it */
      for (int variant = 4; variant >= 0; variant--) { /* end on the default tiling */
        int runs = 0;
        assert_int_equal(mb_cuda_attn_flash_fwd_variant_runs(variant, &runs), MB_OK);
        if (variant == 3 && dims[di] != 64)
          continue; /* tiling 3: head_dim 64 only */
        if (!runs) { /* tilings 2-4 (wgmma): sm_90 only */
          if (ci == 0 && di == 0)
            printf("%-5s flash-v%d: not on this device (sm_90 with an sm_90a build only)\n", mb_dtype_name(dt),
                   variant);
          continue;
        }
        assert_int_equal(mb_cuda_attn_set_flash_fwd_variant(variant), MB_OK);
        snprintf(label, sizeof label, "%-5s D=%-3d %-17s flash-v%d", mb_dtype_name(dt), dims[di], cases[ci].name,
                 variant);
        run_fwd(&p, MB_CUDA_ATTN_FLASH);
        check_forward(&p, label);
      }
      /* the flash backward on the flash forward's out and lse: the fast
       * mode (f32 atomics), then the deterministic one (the default) */
      assert_int_equal(mb_cuda_attn_set_flash_bwd_variant(0), MB_OK); /* sm_90's default is 1 at D = 128 */
      assert_int_equal(mb_cuda_attn_set_deterministic(0), MB_OK);
      snprintf(label, sizeof label, "%-5s D=%-3d %-17s flash-fast", mb_dtype_name(dt), dims[di], cases[ci].name);
      run_bwd(&p, MB_CUDA_ATTN_FLASH);
      check_backward(&p, label);
      int hopper_bwd = 0; /* the wgmma backward (tiling 1; tiling 2 in test_bwd_ws): sm_90 only */
      assert_int_equal(mb_cuda_attn_flash_bwd_variant_runs(1, &hopper_bwd), MB_OK);
      assert_int_equal(mb_cuda_attn_set_deterministic(1), MB_OK);
      if (hopper_bwd) {
        assert_int_equal(mb_cuda_attn_set_flash_bwd_variant(1), MB_OK);
        snprintf(label, sizeof label, "%-5s D=%-3d %-17s flash-b1", mb_dtype_name(dt), dims[di], cases[ci].name);
        run_bwd(&p, MB_CUDA_ATTN_FLASH);
        check_backward(&p, label);
        check_reproducible(&p, label);
        assert_int_equal(mb_cuda_attn_set_flash_bwd_variant(0), MB_OK);
      }
      assert_int_equal(mb_cuda_attn_set_deterministic(1), MB_OK);
      snprintf(label, sizeof label, "%-5s D=%-3d %-17s flash-det", mb_dtype_name(dt), dims[di], cases[ci].name);
      run_bwd(&p, MB_CUDA_ATTN_FLASH);
      check_backward(&p, label);
      check_reproducible(&p, label);
      assert_int_equal(mb_cuda_attn_set_flash_fwd_variant(-1), MB_OK); /* back to the defaults */
      assert_int_equal(mb_cuda_attn_set_flash_bwd_variant(-1), MB_OK);
      problem_free(&p);
    }
}

static void test_bf16(void **state) {
  (void)state;
  if (!at_test_part_runs(0))
    skip();
  run_all_cases(MB_BF16);
}

static void test_f16(void **state) {
  (void)state;
  if (!at_test_part_runs(0))
    skip();
  run_all_cases(MB_F16);
}

/* The warp-specialised tests' problems: bf16 and f16, every case (without
 * the L = 1000 ones under MAMBERT_ATTN_TEST_QUICK), both head dims; body
 * gets each problem and its label's prefix. */
static void each_ws_problem(void (*body)(problem *p, const char *prefix)) {
  const int dims[2] = {64, 128};
  const mb_dtype dts[2] = {MB_BF16, MB_F16};
  for (int ti = 0; ti < 2; ti++)
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
      for (int di = 0; di < 2 && !quick_skip(&cases[ci]); di++) {
        problem p;
        problem_init(&p, &cases[ci], dts[ti], dims[di]);
        char prefix[64];
        snprintf(prefix, sizeof prefix, "%-5s D=%-3d %-17s", mb_dtype_name(dts[ti]), dims[di], cases[ci].name);
        body(&p, prefix);
        problem_free(&p);
      }
}

/* The backward's gradients as they are on the device now: dq, dk, dv. */
static void download_grads(const problem *p, void *g[3]) {
  const size_t bytes = p->n * mb_dtype_size(p->dt);
  g[0] = download_raw(p->d_dq, bytes);
  g[1] = download_raw(p->d_dk, bytes);
  g[2] = download_raw(p->d_dv, bytes);
}

/* The gradients on the device against saved ones g, from first (0: dq,
 * 1: dk and dv only) on: tiling 4 is tiling 3 with 128-query tiles, the
 * same products summed in the same order, so the same bits. */
static void expect_same_grads(const problem *p, void *g[3], int first, const char *label) {
  const size_t bytes = p->n * mb_dtype_size(p->dt);
  void *now[3];
  download_grads(p, now);
  for (int i = first; i < 3; i++)
    if (memcmp(g[i], now[i], bytes))
      fail_msg("%s: %s differs from tiling 3's bits (if only this check fails, the error bound above having "
               "passed, the GPU's m64n128 and m64n64 wgmma sum a dot product differently: not a kernel bug)",
               label, i == 0 ? "dq" : i == 1 ? "dk" : "dv");
  for (int i = 0; i < 3; i++)
    free(now[i]);
}

/* Backward tilings 2 to 4 on one problem, deterministic and in their
 * fast modes (tiling 3: dQ by bulk reduces, in key-tile order when
 * deterministic, which the reproducibility check tests on the GPU;
 * tiling 4 must give tiling 3's bits, in the fast mode its dk and dv). */
static void bwd_ws_problem(problem *p, const char *prefix) {
  char label[128];
  assert_int_equal(mb_cuda_attn_set_flash_fwd_variant(-1), MB_OK);
  run_fwd(p, MB_CUDA_ATTN_FLASH);
  assert_int_equal(mb_cuda_attn_set_flash_bwd_variant(2), MB_OK);
  assert_int_equal(mb_cuda_attn_set_deterministic(1), MB_OK);
  snprintf(label, sizeof label, "%s flash-b2", prefix);
  run_bwd(p, MB_CUDA_ATTN_FLASH);
  check_backward(p, label);
  check_reproducible(p, label);
  assert_int_equal(mb_cuda_attn_set_deterministic(0), MB_OK);
  snprintf(label, sizeof label, "%s flash-b2f", prefix);
  run_bwd(p, MB_CUDA_ATTN_FLASH);
  check_backward(p, label);
  void *b3f[3], *b3[3];
  assert_int_equal(mb_cuda_attn_set_flash_bwd_variant(3), MB_OK);
  snprintf(label, sizeof label, "%s flash-b3f", prefix);
  run_bwd(p, MB_CUDA_ATTN_FLASH);
  check_backward(p, label);
  download_grads(p, b3f);
  assert_int_equal(mb_cuda_attn_set_deterministic(1), MB_OK);
  snprintf(label, sizeof label, "%s flash-b3", prefix);
  run_bwd(p, MB_CUDA_ATTN_FLASH);
  check_backward(p, label);
  check_reproducible(p, label);
  download_grads(p, b3);
  if (p->dd.head_dim == 64) { /* tiling 4's own kernel (at 128 it runs tiling 3's) */
    assert_int_equal(mb_cuda_attn_set_flash_bwd_variant(4), MB_OK);
    snprintf(label, sizeof label, "%s flash-b4", prefix);
    run_bwd(p, MB_CUDA_ATTN_FLASH);
    check_backward(p, label);
    expect_same_grads(p, b3, 0, label);
    check_reproducible(p, label);
    assert_int_equal(mb_cuda_attn_set_deterministic(0), MB_OK);
    snprintf(label, sizeof label, "%s flash-b4f", prefix);
    run_bwd(p, MB_CUDA_ATTN_FLASH);
    check_backward(p, label);
    expect_same_grads(p, b3f, 1, label);
    assert_int_equal(mb_cuda_attn_set_deterministic(1), MB_OK);
  }
  for (int i = 0; i < 3; i++)
    free(b3f[i]), free(b3[i]);
  assert_int_equal(mb_cuda_attn_set_flash_bwd_variant(-1), MB_OK);
}

/* Backward tiling 2 (both kernels warp-specialised: TMA loads handed over
 * by mbarriers), deterministic and with its fast mode (dQ by f32 atomics in
 * the dK/dV kernel), bf16 and f16, every case, on the default forward's out
 * and lse: after test_tma_tilings, the last tests of the program. */
static void test_bwd_ws(void **state) {
  (void)state;
  if (!at_test_part_runs(1))
    skip();
  int runs = 0;
  assert_int_equal(mb_cuda_attn_flash_bwd_variant_runs(2, &runs), MB_OK);
  if (!runs) {
    printf("flash-b2: not on this device (sm_90 with an sm_90a build only)\n");
    return;
  }
  each_ws_problem(bwd_ws_problem);
}

/* Forward tilings 5 to 10 on one problem; 7 and 8 must give 5's bits, 9
 * not 6's and 10 not 5's (the same bits would mean their polynomial
 * exponentials never ran) where rows have more than one key. */
static void tma_tilings_problem(problem *p, const char *prefix) {
  const size_t bytes = p->n * mb_dtype_size(p->dt), lbytes = p->nl * sizeof(float);
  void *o5 = NULL, *l5 = NULL, *o6 = NULL;
  for (int variant = 5; variant <= 10; variant++) {
    char label[128];
    assert_int_equal(mb_cuda_attn_set_flash_fwd_variant(variant), MB_OK);
    snprintf(label, sizeof label, "%s flash-v%d", prefix, variant);
    run_fwd(p, MB_CUDA_ATTN_FLASH);
    check_forward(p, label);
    if (variant == 5) {
      o5 = download_raw(p->d_out, bytes);
      l5 = download_raw(p->d_lse, lbytes);
    } else if (variant == 6) {
      o6 = download_raw(p->d_out, bytes);
    } else if (variant >= 9) {
      void *o9 = download_raw(p->d_out, bytes);
      if (p->hd.seqlen > 1 && !memcmp(variant == 9 ? o6 : o5, o9, bytes))
        fail_msg("%s: the same bits as tiling %d (were any exponentials taken on the FMA pipe?)", label,
                 variant == 9 ? 6 : 5);
      free(o9);
    } else {
      void *o7 = download_raw(p->d_out, bytes), *l7 = download_raw(p->d_lse, lbytes);
      if (memcmp(o5, o7, bytes) || memcmp(l5, l7, lbytes))
        fail_msg("%s: the persistent forward's bits differ from tiling 5's", label);
      free(o7), free(l7);
    }
  }
  free(o5), free(l5), free(o6);
  assert_int_equal(mb_cuda_attn_set_flash_fwd_variant(-1), MB_OK);
}

/* Forward tilings 5 to 10 (warp-specialised: TMA loads handed over by
 * mbarriers; 6 with ping-pong, 7 persistent, 8 persistent with 192-row
 * tiles at D = 64, 9 and 10 as 6 and 5 with some exponentials on the FMA
 * pipe), bf16
 * and f16, every case: the last test of the program
 * (see run_all_cases). Tilings 7 and 8 give each query row tiling 5's
 * products in tiling 5's order, so they must give tiling 5's bits. */
static void test_tma_tilings(void **state) {
  (void)state;
  if (!at_test_part_runs(1))
    skip();
  int runs = 0;
  assert_int_equal(mb_cuda_attn_flash_fwd_variant_runs(5, &runs), MB_OK);
  if (!runs) {
    printf("flash-v5 to flash-v10: not on this device (sm_90 with an sm_90a build only)\n");
    return;
  }
  each_ws_problem(tma_tilings_problem);
}

/* A query row of NaN (token 5, head 1: a real row of L129-pad, bf16, D =
 * 64): every score of the row is NaN, which the row max skips, so the row
 * used to read as one that saw no key (out 0, lse +inf: silently wrong).
 * Its out and lse must be NaN (PyTorch's answer), every other row as the
 * reference (computed without the NaN: rows do not mix in the forward). */
enum { NAN_TOK = 5, NAN_HEAD = 1 };

static void nan_query_init(problem *p) {
  problem_init(p, &cases[2], MB_BF16, 64);
  const size_t off = ((size_t)NAN_TOK * p->hd.heads + NAN_HEAD) * 64;
  for (size_t e = 0; e < 64; e++)
    p->q[off + e] = NAN;
  at_upload(p->d_q, p->q, p->n, MB_BF16);
}

/* The row's D values of x (on the device, p->dt) that are NaN. */
static size_t nan_row_count(const problem *p, const void *dev, float *host) {
  const size_t off = ((size_t)NAN_TOK * p->hd.heads + NAN_HEAD) * p->hd.head_dim;
  at_download(host, dev, p->n, p->dt);
  size_t nan = 0;
  for (int e = 0; e < p->hd.head_dim; e++)
    nan += isnan(host[off + e]);
  return nan;
}

static void check_nan_forward(const problem *p, const char *label) {
  float *out = at_malloc(p->n * sizeof(float)), *lse = at_malloc(p->nl * sizeof(float));
  const size_t nan = nan_row_count(p, p->d_out, out);
  at_download(lse, p->d_lse, p->nl, MB_F32);
  const size_t off = ((size_t)NAN_TOK * p->hd.heads + NAN_HEAD) * p->hd.head_dim;
  const size_t loff = (size_t)NAN_TOK * p->hd.heads + NAN_HEAD;
  const int lse_nan = isnan(lse[loff]);
  for (int e = 0; e < p->hd.head_dim; e++) /* the rest compares as usual */
    out[off + e] = (float)p->ref_out[off + e];
  lse[loff] = (float)p->ref_lse[loff];
  const at_err e = at_compare(out, p->ref_out, p->n);
  size_t inf_bad = 0;
  const double el = at_compare_lse(lse, p->ref_lse, p->nl, &inf_bad);
  printf("%s fwd: NaN row %zu of %d out NaN, lse %s; other rows out %.2e lse %.1e\n", label, nan, p->hd.head_dim,
         lse_nan ? "NaN" : "not NaN", e.norm, el);
  fflush(stdout);
  if (nan != (size_t)p->hd.head_dim || !lse_nan)
    fail_msg("%s: a query row of NaN gave %zu NaN outputs of %d, lse %s", label, nan, p->hd.head_dim,
             lse_nan ? "NaN" : "not NaN");
  if (!(e.norm <= tol_of(p->dt, 0)) || !(el <= TOL_LSE) || inf_bad)
    fail_msg("%s: the other rows' error %.3e, lse %.3e, %zu padded lse not +inf", label, e.norm, el, inf_bad);
  free(out);
  free(lse);
}

/* Forward tilings lo..hi that run here (the reference kernel first when lo
 * is 0), then the default backward on the default forward: the NaN row's
 * dq is NaN, not 0. */
static void nan_query_run(int lo, int hi) {
  problem p;
  nan_query_init(&p);
  char label[96];
  if (lo == 0) {
    run_fwd(&p, MB_CUDA_ATTN_REFERENCE);
    check_nan_forward(&p, "bf16  D=64  L129-pad-nan-query reference");
  }
  for (int variant = lo; variant <= hi; variant++) {
    int runs = 0;
    assert_int_equal(mb_cuda_attn_flash_fwd_variant_runs(variant, &runs), MB_OK);
    if (!runs)
      continue;
    assert_int_equal(mb_cuda_attn_set_flash_fwd_variant(variant), MB_OK);
    snprintf(label, sizeof label, "bf16  D=64  L129-pad-nan-query flash-v%d", variant);
    run_fwd(&p, MB_CUDA_ATTN_FLASH);
    check_nan_forward(&p, label);
  }
  assert_int_equal(mb_cuda_attn_set_flash_fwd_variant(-1), MB_OK);
  if (lo == 0) {
    run_fwd(&p, MB_CUDA_ATTN_FLASH);
    run_bwd(&p, MB_CUDA_ATTN_FLASH);
    float *dq = at_malloc(p.n * sizeof(float));
    const size_t nan = nan_row_count(&p, p.d_dq, dq);
    printf("bf16  D=64  L129-pad-nan-query default bwd: NaN row %zu of 64 dq NaN\n", nan);
    if (nan != 64)
      fail_msg("the backward gave the NaN query row %zu NaN dq values of 64", nan);
    free(dq);
  }
  problem_free(&p);
}

static void test_nan_query(void **state) {
  (void)state;
  if (!at_test_part_runs(0))
    skip();
  nan_query_run(0, 4);
}

/* The same through tilings 5 to 10 (TMA: in the ws half). */
static void test_nan_query_ws(void **state) {
  (void)state;
  if (!at_test_part_runs(1))
    skip();
  nan_query_run(5, 10);
}

static void test_f32_reference(void **state) {
  (void)state;
  if (!at_test_part_runs(0))
    skip();
  run_all_cases(MB_F32);
}

/* Large gradients: dq is linear in dO (dS = P (dO V^T - rowsum(dO O))), so
 * dO scaled by 2^40 must give dq scaled by 2^40 (a power of two: exact in
 * bf16, same relative rounding), finite, with no range limit in the
 * deterministic dQ pass (the earlier fixed-point sums could not hold terms
 * beyond 2^30). */
static void test_dq_large(void **state) {
  (void)state;
  if (!at_test_part_runs(0))
    skip();
  const tcase c = {"L129-pad", 2, 129, 2, 0, 1, 0, {0}, 0, 1.0f};
  problem p;
  problem_init(&p, &c, MB_BF16, 64);
  run_fwd(&p, MB_CUDA_ATTN_FLASH);
  run_bwd(&p, MB_CUDA_ATTN_FLASH);
  float *dq1 = at_malloc(p.n * sizeof(float)), *dq2 = at_malloc(p.n * sizeof(float));
  at_download(dq1, p.d_dq, p.n, MB_BF16);
  const float big = 1099511627776.0f; /* 2^40 */
  for (size_t i = 0; i < p.n; i++)
    p.dout[i] *= big;
  at_upload(p.d_dout, p.dout, p.n, MB_BF16);
  run_bwd(&p, MB_CUDA_ATTN_FLASH);
  at_download(dq2, p.d_dq, p.n, MB_BF16);
  double num = 0, den = 0;
  size_t bad = 0;
  for (size_t i = 0; i < p.n; i++) {
    bad += !isfinite(dq2[i]);
    const double d = (double)dq2[i] / big - dq1[i];
    num += d * d;
    den += (double)dq1[i] * dq1[i];
  }
  const double rel = den > 0 ? sqrt(num / den) : sqrt(num);
  printf("dq with dO x 2^40: %zu of %zu not finite, relative difference from 2^40 dq %.2e\n", bad, p.n, rel);
  if (bad || !(rel < 1e-2))
    fail_msg("large dO: %zu non-finite dq values, relative difference %.3g", bad, rel);
  free(dq1);
  free(dq2);
  problem_free(&p);
}

/* The dispatcher at run time: what it falls back to still computes the
 * right thing; what it refuses, it refuses with the reason. */
static void test_dispatch_runtime(void **state) {
  (void)state;
  if (!at_test_part_runs(0))
    skip();
  const tcase c96 = {"L129-pad", 2, 129, 2, 0, 1, 0, {0}, 0, 1.0f};
  problem p;

  /* head_dim 96 in bf16: the reference kernel, forward and backward */
  problem_init(&p, &c96, MB_BF16, 96);
  at_poison(p.d_out, p.n * 2);
  at_poison(p.d_lse, p.nl * 4);
  assert_int_equal(mb_cuda_attn_fwd(&p.dd, MB_BF16, p.d_q, p.d_k, p.d_v, p.d_out, p.d_lse, NULL), MB_OK);
  check_forward(&p, "bf16  D=96  dispatch(auto)      ");
  at_poison(p.d_dq, p.n * 2);
  at_poison(p.d_dk, p.n * 2);
  at_poison(p.d_dv, p.n * 2);
  assert_int_equal(mb_cuda_attn_bwd(&p.dd, MB_BF16, p.d_q, p.d_k, p.d_v, p.d_out, p.d_lse, p.d_dout, p.d_dq, p.d_dk,
                                    p.d_dv, p.d_ws, p.ws_bytes, NULL),
                   MB_OK);
  check_backward(&p, "bf16  D=96  dispatch(auto)      ");
  assert_int_equal(
      mb_cuda_attn_fwd_with(MB_CUDA_ATTN_FLASH, &p.dd, MB_BF16, p.d_q, p.d_k, p.d_v, p.d_out, p.d_lse, NULL),
      MB_EUNSUPPORTED);
  printf("forced flash at head_dim 96: %s\n", mb_error_message());
  assert_non_null(strstr(mb_error_message(), "head_dim 96"));
  /* too small a workspace is an error, not a crash */
  assert_int_equal(mb_cuda_attn_bwd(&p.dd, MB_BF16, p.d_q, p.d_k, p.d_v, p.d_out, p.d_lse, p.d_dout, p.d_dq, p.d_dk,
                                    p.d_dv, p.d_ws, p.ws_bytes - 1, NULL),
                   MB_EINVAL);
  /* a bad MAMBERT_ATTN_KERNEL is an error naming the variable */
  setenv("MAMBERT_ATTN_KERNEL", "fastest", 1);
  assert_int_equal(mb_cuda_attn_fwd(&p.dd, MB_BF16, p.d_q, p.d_k, p.d_v, p.d_out, p.d_lse, NULL), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "MAMBERT_ATTN_KERNEL"));
  unsetenv("MAMBERT_ATTN_KERNEL");
  /* f64 has no kernel */
  assert_int_equal(mb_cuda_attn_fwd(&p.dd, MB_F64, p.d_q, p.d_k, p.d_v, p.d_out, p.d_lse, NULL), MB_EUNSUPPORTED);
  problem_free(&p);

  /* f32 at head_dim 64: the reference kernel */
  problem_init(&p, &c96, MB_F32, 64);
  at_poison(p.d_out, p.n * 4);
  at_poison(p.d_lse, p.nl * 4);
  assert_int_equal(mb_cuda_attn_fwd(&p.dd, MB_F32, p.d_q, p.d_k, p.d_v, p.d_out, p.d_lse, NULL), MB_OK);
  check_forward(&p, "f32   D=64  dispatch(auto)      ");
  assert_int_equal(
      mb_cuda_attn_fwd_with(MB_CUDA_ATTN_FLASH, &p.dd, MB_F32, p.d_q, p.d_k, p.d_v, p.d_out, p.d_lse, NULL),
      MB_EUNSUPPORTED);
  assert_non_null(strstr(mb_error_message(), "f32"));
  problem_free(&p);

  /* a q that is 2-byte but not 16-byte aligned: the reference kernel */
  problem_init(&p, &c96, MB_BF16, 64);
  char *shifted = at_dev(p.n * 2 + 16);
  at_upload(shifted + 2, p.q, p.n, MB_BF16);
  at_poison(p.d_out, p.n * 2);
  at_poison(p.d_lse, p.nl * 4);
  assert_int_equal(mb_cuda_attn_fwd(&p.dd, MB_BF16, shifted + 2, p.d_k, p.d_v, p.d_out, p.d_lse, NULL), MB_OK);
  check_forward(&p, "bf16  D=64  dispatch(misaligned)");
  assert_int_equal(
      mb_cuda_attn_fwd_with(MB_CUDA_ATTN_FLASH, &p.dd, MB_BF16, shifted + 2, p.d_k, p.d_v, p.d_out, p.d_lse, NULL),
      MB_EUNSUPPORTED);
  assert_non_null(strstr(mb_error_message(), "16-byte"));
  AT_CUDA(cudaFree(shifted));
  /* an empty batch is a no-op */
  mb_attn_desc empty = p.dd;
  empty.batch = 0;
  assert_int_equal(mb_cuda_attn_fwd(&empty, MB_BF16, NULL, NULL, NULL, NULL, NULL, NULL), MB_OK);
  problem_free(&p);
}

/* The cases for torch's math backend (MAMBERT_ATTN_DUMP): bf16 through the
 * default kernels (what a user gets), checked here against the float64
 * reference first. Case i's tensors are "c<i>.<name>", [tokens, heads,
 * head_dim] (lse [tokens, heads]), with its key mask or cu_seqlens (int32),
 * and its shape in the metadata entry "c<i>". */
static void test_dump_for_torch(void **state) {
  (void)state;
  if (!at_test_part_runs(0))
    skip();
  const char *path = getenv("MAMBERT_ATTN_DUMP");
  if (!path || !*path) {
    printf("dump for torch: MAMBERT_ATTN_DUMP not set: not written\n");
    return;
  }
  const struct {
    int ci, D;
  } runs[] = {{3, 64}, {6, 128}, {5, 64}}; /* L129-holes, varlen, L1000-causal-pad */
  const int nruns = (int)(sizeof runs / sizeof runs[0]);
  mb_safetensors_writer *w = NULL;
  assert_int_equal(mb_safetensors_writer_new(&w), MB_OK);
  problem ps[3];
  float *keep[3][5];
  for (int r = 0; r < nruns; r++) {
    const tcase *c = &cases[runs[r].ci];
    problem *p = &ps[r];
    problem_init(p, c, MB_BF16, runs[r].D);
    char label[96], name[64], meta[160];
    snprintf(label, sizeof label, "bf16  D=%-3d %-17s dump(default)", runs[r].D, c->name);
    run_fwd(p, MB_CUDA_ATTN_AUTO);
    check_forward(p, label);
    run_bwd(p, MB_CUDA_ATTN_AUTO);
    check_backward(p, label);
    const mb_shape x = mb_shape3((int64_t)p->tokens, p->hd.heads, p->hd.head_dim);
    const mb_shape xl = mb_shape2((int64_t)p->tokens, p->hd.heads);
    const void *dev[5] = {p->d_out, p->d_lse, p->d_dq, p->d_dk, p->d_dv};
    const char *outs[5] = {"out", "lse", "dq", "dk", "dv"};
    for (int i = 0; i < 5; i++) {
      keep[r][i] = at_malloc((i == 1 ? p->nl : p->n) * sizeof(float));
      at_download(keep[r][i], dev[i], i == 1 ? p->nl : p->n, i == 1 ? MB_F32 : MB_BF16);
      snprintf(name, sizeof name, "c%d.%s", r, outs[i]);
      assert_int_equal(mb_safetensors_writer_add(w, name, MB_F32, i == 1 ? &xl : &x, keep[r][i]), MB_OK);
    }
    const float *ins[4] = {p->q, p->k, p->v, p->dout};
    const char *inames[4] = {"q", "k", "v", "dout"};
    for (int i = 0; i < 4; i++) {
      snprintf(name, sizeof name, "c%d.%s", r, inames[i]);
      assert_int_equal(mb_safetensors_writer_add(w, name, MB_F32, &x, ins[i]), MB_OK);
    }
    if (p->mask) {
      const mb_shape m = mb_shape1((int64_t)p->tokens);
      snprintf(name, sizeof name, "c%d.key_mask", r);
      assert_int_equal(mb_safetensors_writer_add(w, name, MB_I32, &m, p->mask), MB_OK);
    }
    if (p->cu) {
      const mb_shape m = mb_shape1(p->hd.nseq + 1);
      snprintf(name, sizeof name, "c%d.cu_seqlens", r);
      assert_int_equal(mb_safetensors_writer_add(w, name, MB_I32, &m, p->cu), MB_OK);
    }
    snprintf(name, sizeof name, "c%d", r);
    snprintf(meta, sizeof meta, "name=%s batch=%d seqlen=%d heads=%d head_dim=%d causal=%d nseq=%d", c->name,
             p->hd.batch, p->hd.seqlen, p->hd.heads, p->hd.head_dim, p->hd.causal, p->hd.nseq);
    assert_int_equal(mb_safetensors_writer_set_metadata(w, name, meta), MB_OK);
  }
  assert_int_equal(mb_safetensors_writer_set_metadata(w, "layout",
                                                      "[tokens, heads, head_dim] (padded: tokens = batch x seqlen); "
                                                      "scale 1/sqrt(head_dim); padded rows: out 0, lse +inf"),
                   MB_OK);
  const int rc = mb_safetensors_writer_write(w, path);
  mb_safetensors_writer_free(w);
  for (int r = 0; r < nruns; r++) {
    for (int i = 0; i < 5; i++)
      free(keep[r][i]);
    problem_free(&ps[r]);
  }
  if (rc != MB_OK)
    fail_msg("dump for torch: %s", mb_error_message());
  printf("dump for torch: wrote %s\n", path);
}

int main(void) {
  g_cc = at_require_gpu("cuda_attention");
  at_seed_init("cuda_attention");
  mb_log_set_level(MB_LOG_INFO);
  if (g_cc < 80) {
    printf("cuda_attention: sm_%d has no bf16 tensor cores (the flash kernels need sm_80): skipping\n", g_cc);
    return 77;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bf16),
      cmocka_unit_test(test_f16),
      cmocka_unit_test(test_f32_reference),
      cmocka_unit_test(test_dq_large),
      cmocka_unit_test(test_dispatch_runtime),
      cmocka_unit_test(test_dump_for_torch),
      cmocka_unit_test(test_nan_query),
      cmocka_unit_test(test_tma_tilings), /* last: see run_all_cases */
      cmocka_unit_test(test_bwd_ws),
      cmocka_unit_test(test_nan_query_ws),
  };
  const int failed = cmocka_run_group_tests(tests, NULL, NULL);
  printf("cuda_attention: worst normwise error: bf16 fwd %.2e bwd %.2e (bound 1e-2); f16 fwd %.2e bwd %.2e (bound "
         "5e-3); f32 reference fwd %.2e bwd %.2e\n",
         worst[MB_BF16][0], worst[MB_BF16][1], worst[MB_F16][0], worst[MB_F16][1], worst[MB_F32][0], worst[MB_F32][1]);
  return failed;
}
