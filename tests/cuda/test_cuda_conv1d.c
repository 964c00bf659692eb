/* test_cuda_conv1d.c: the GPU causal depthwise conv1d (kernels/cuda/
 * conv1d.h) against the CPU kernel in float64, on a GPU: y, dx, dw, dbias
 * on fresh random inputs (seed printed), outputs poisoned, widths 1..4, SiLU
 * on and off, padded and varlen, f32 / bf16 / f16, the Mamba-130m shape;
 * bitwise-identical results across two runs. Exits 77 without a GPU.
 * ctest: cuda_conv1d. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kernels/cuda/conv1d.h"
#include "tests/cuda/test_cuda_conv1d_case.h"
#include "tests/cuda/test_cuda_gpu_util.h"

typedef struct {
  void *y, *dx, *dw, *dbias, *ws;
  size_t ws_bytes;
} conv_out;

static void run_once(const cct_case *c, const mb_conv1d_desc *d, const void *x, const void *w, const void *bias,
                     const void *dy, conv_out *o, cudaStream_t s) {
  const size_t es = mb_dtype_size(c->dt), ps = mb_dtype_size(c->pdt);
  o->y = gt_alloc_poisoned(c->nx * es);
  o->dx = gt_alloc_poisoned(c->nx * es);
  o->dw = gt_alloc_poisoned(c->nw * ps);
  o->dbias = gt_alloc_poisoned((size_t)d->dim * ps);
  o->ws_bytes = mb_cuda_conv1d_bwd_workspace(d);
  o->ws = gt_alloc_poisoned(o->ws_bytes);
  GT_OK(mb_cuda_conv1d_fwd(d, c->dt, c->pdt, x, w, bias, o->y, s));
  GT_OK(mb_cuda_conv1d_bwd(d, c->dt, c->pdt, x, w, bias, dy, o->dx, o->dw, o->dbias, o->ws, o->ws_bytes, s));
  GT_CUDA(cudaStreamSynchronize(s));
  GT_CUDA(cudaGetLastError());
}

static void free_out(conv_out *o) {
  void *p[] = {o->y, o->dx, o->dw, o->dbias, o->ws};
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
    cudaFree(p[i]);
}

static void run_case(const char *label, const mb_conv1d_desc *desc, mb_dtype dt, int has_bias, int twice) {
  cct_case c;
  cct_case_make(&c, desc, dt, MB_F32, has_bias);
  cct_case_reference(&c);
  mb_conv1d_desc d = c.d;
  int32_t *cu = NULL;
  if (d.cu_seqlens) {
    cu = (int32_t *)gt_upload_raw(c.cu, (size_t)(d.nseq + 1) * sizeof(int32_t));
    d.cu_seqlens = cu;
  }
  void *x = gt_upload(c.x, c.nx, dt), *dy = gt_upload(c.dy, c.nx, dt);
  void *w = gt_upload(c.w, c.nw, c.pdt), *bias = gt_upload(c.bias, (size_t)d.dim, c.pdt);
  cudaStream_t s;
  GT_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  conv_out o;
  run_once(&c, &d, x, w, bias, dy, &o, s);
  cct_out h;
  cct_out_alloc(&c, &h);
  gt_download(h.y, o.y, c.nx, dt);
  gt_download(h.dx, o.dx, c.nx, dt);
  gt_download(h.dw, o.dw, c.nw, c.pdt);
  gt_download(h.dbias, o.dbias, (size_t)d.dim, c.pdt);
  printf("%s: B=%d L=%d D=%d W=%d silu=%d %s%s%s\n", label, d.batch, d.seqlen, d.dim, d.width, d.silu,
         mb_dtype_name(dt), d.cu_seqlens ? " varlen" : "", has_bias ? "" : " no-bias");
  int bad = cct_compare(&c, &h, label);
  if (twice) {
    conv_out o2;
    run_once(&c, &d, x, w, bias, dy, &o2, s);
    const size_t es = mb_dtype_size(dt), ps = mb_dtype_size(c.pdt);
    const int same = gt_same_bytes(o.y, o2.y, c.nx * es) && gt_same_bytes(o.dx, o2.dx, c.nx * es) &&
                     gt_same_bytes(o.dw, o2.dw, c.nw * ps) && gt_same_bytes(o.dbias, o2.dbias, (size_t)d.dim * ps);
    printf("  %-26s second run bitwise identical: %s\n", label, same ? "yes" : "NO");
    bad += !same;
    free_out(&o2);
  }
  cct_out_free(&h);
  free_out(&o);
  GT_CUDA(cudaStreamDestroy(s));
  void *p[] = {x, dy, w, bias, cu};
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
    cudaFree(p[i]);
  cct_case_free(&c);
  if (bad)
    fail_msg("%s: %d checks failed", label, bad);
}

static void test_padded(void **state) {
  (void)state;
  mb_conv1d_desc a = {.batch = 2, .seqlen = 300, .dim = 200, .width = 4, .silu = 1};
  run_case("W=4 silu f32", &a, MB_F32, 1, 0);
  mb_conv1d_desc b = {.batch = 3, .seqlen = 1, .dim = 5, .width = 3, .silu = 0};
  run_case("L=1 W=3 f16 no bias", &b, MB_F16, 0, 0);
  mb_conv1d_desc e = {.batch = 1, .seqlen = 777, .dim = 130, .width = 2, .silu = 1};
  run_case("W=2 silu bf16", &e, MB_BF16, 1, 0);
  mb_conv1d_desc f = {.batch = 1, .seqlen = 65, .dim = 7, .width = 1, .silu = 1};
  run_case("W=1 f32", &f, MB_F32, 1, 0);
}

static void test_varlen(void **state) {
  (void)state;
  const int32_t cu[] = {0, 0, 3, 64, 65, 300, 301, 301};
  mb_conv1d_desc d = {.batch = 1, .seqlen = 333, .dim = 130, .width = 4, .silu = 1, .cu_seqlens = cu, .nseq = 7};
  run_case("varlen W=4 silu f32", &d, MB_F32, 1, 0);
  run_case("varlen W=4 silu bf16", &d, MB_BF16, 1, 0);
}

static void test_mamba_shape(void **state) {
  (void)state;
  mb_conv1d_desc d = {.batch = 2, .seqlen = 2048, .dim = 1536, .width = 4, .silu = 1};
  run_case("mamba-130m bf16", &d, MB_BF16, 1, 1);
}

static int report(void **state) {
  (void)state;
  printf("cuda_conv1d: worst relative error f32 %.2e (bound 1e-5), bf16 %.2e (bound 1e-2), f16 %.2e (bound 5e-3)\n",
         sct_worst[0], sct_worst[1], sct_worst[2]);
  return 0;
}

int main(void) {
  gt_require_gpu("cuda_conv1d");
  sct_seed_init("cuda_conv1d");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_padded),
      cmocka_unit_test(test_varlen),
      cmocka_unit_test(test_mamba_shape),
  };
  return cmocka_run_group_tests(tests, NULL, report);
}
