/* test_cuda_scan.c: the GPU selective scan (kernels/cuda/selective_scan.h)
 * against the CPU kernel in float64, on a GPU: forward (y and the saved
 * states) and every gradient, on fresh random inputs (seed printed;
 * MAMBERT_TEST_SEED replays it), with outputs poisoned (NaN) before each
 * run: odd lengths and channel counts, L = 1, N = 5 / 16 / 64, padded and
 * varlen (empty sequences, boundaries at and inside tiles, budget
 * padding), f32 / bf16 / f16 activations, bf16 parameters, optional inputs
 * absent, the Mamba-130m layer shape; and bitwise-identical results across
 * two runs. Bounds: ||out - ref|| / ||ref|| below 1e-5 (f32), 1e-2 (bf16),
 * 5e-3 (f16), with the error distribution printed per tensor. Exits 77
 * without a GPU. ctest: cuda_selective_scan.
 *
 * With MAMBERT_SCAN_DUMP=PATH it also writes one f32 case (inputs and this
 * kernel's outputs, channels-last) to PATH as safetensors, for
 * `tools/bench_torch_scan.py --check-dump PATH`, which runs transformers'
 * slow path on the same inputs on the GPU and compares.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kernels/cuda/selective_scan.h"
#include "runtime/safetensors.h"
#include "runtime/tensor.h"
#include "tests/cuda/test_cuda_gpu_util.h"
#include "tests/cuda/test_cuda_scan_case.h"

typedef struct {
  mb_scan_desc d; /* the case's, with cu_seqlens on the device */
  mb_cuda_scan_in in;
  int32_t *cu;
  void *dy;
} dev_case;

typedef struct {
  void *y;
  float *states;
  mb_cuda_scan_grad g;
  void *ws;
  size_t ws_bytes;
} dev_out;

static void dev_case_make(const sct_case *c, dev_case *dc) {
  memset(dc, 0, sizeof *dc);
  dc->d = c->d;
  if (c->d.cu_seqlens) {
    dc->cu = (int32_t *)gt_upload_raw(c->cu, (size_t)(c->d.nseq + 1) * sizeof(int32_t));
    dc->d.cu_seqlens = dc->cu;
  }
  const size_t Dn = (size_t)c->d.dim;
  mb_cuda_scan_in in = {gt_upload(c->u, c->nx, c->dt),  gt_upload(c->delta, c->nx, c->dt),
                        gt_upload(c->B, c->nbc, c->dt), gt_upload(c->C, c->nbc, c->dt),
                        gt_upload(c->z, c->nx, c->dt),  gt_upload(c->A_log, c->ndn, c->pdt),
                        gt_upload(c->D, Dn, c->pdt),    gt_upload(c->bias, Dn, c->pdt)};
  dc->in = in;
  dc->dy = gt_upload(c->dy, c->nx, c->dt);
}

static void dev_case_free(dev_case *dc) {
  const void *p[] = {dc->in.u,     dc->in.delta, dc->in.B,          dc->in.C, dc->in.z,
                     dc->in.A_log, dc->in.D,     dc->in.delta_bias, dc->dy,   dc->cu};
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
    cudaFree((void *)p[i]);
}

static void dev_out_alloc(const sct_case *c, const dev_case *dc, dev_out *o) {
  const size_t es = mb_dtype_size(c->dt), ps = mb_dtype_size(c->pdt), Dn = (size_t)c->d.dim;
  o->y = gt_alloc_poisoned(c->nx * es);
  o->states = (float *)gt_alloc_poisoned(c->nstates * sizeof(float));
  mb_cuda_scan_grad g = {gt_alloc_poisoned(c->nx * es),
                         gt_alloc_poisoned(c->nx * es),
                         gt_alloc_poisoned(c->nbc * es),
                         gt_alloc_poisoned(c->nbc * es),
                         c->z ? gt_alloc_poisoned(c->nx * es) : NULL,
                         gt_alloc_poisoned(c->ndn * ps),
                         c->D ? gt_alloc_poisoned(Dn * ps) : NULL,
                         c->bias ? gt_alloc_poisoned(Dn * ps) : NULL};
  o->g = g;
  o->ws_bytes = mb_cuda_scan_bwd_workspace(&dc->d);
  o->ws = gt_alloc_poisoned(o->ws_bytes);
}

static void dev_out_free(dev_out *o) {
  void *p[] = {o->y,    o->states,   o->g.du, o->g.ddelta,      o->g.dB, o->g.dC,
               o->g.dz, o->g.dA_log, o->g.dD, o->g.ddelta_bias, o->ws};
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
    cudaFree(p[i]);
}

static void dev_run(const sct_case *c, const dev_case *dc, dev_out *o, cudaStream_t s) {
  GT_OK(mb_cuda_scan_fwd(&dc->d, c->dt, c->pdt, &dc->in, o->y, o->states, s));
  GT_OK(mb_cuda_scan_bwd(&dc->d, c->dt, c->pdt, &dc->in, o->states, dc->dy, &o->g, o->ws, o->ws_bytes, s));
  GT_CUDA(cudaStreamSynchronize(s));
  GT_CUDA(cudaGetLastError());
}

static void dev_download(const sct_case *c, const dev_out *o, sct_out *h) {
  const size_t Dn = (size_t)c->d.dim;
  gt_download(h->y, o->y, c->nx, c->dt);
  gt_download(h->states, o->states, c->nstates, MB_F32);
  gt_download(h->du, o->g.du, c->nx, c->dt);
  gt_download(h->ddelta, o->g.ddelta, c->nx, c->dt);
  gt_download(h->dz, o->g.dz, c->nx, c->dt);
  gt_download(h->dB, o->g.dB, c->nbc, c->dt);
  gt_download(h->dC, o->g.dC, c->nbc, c->dt);
  gt_download(h->dA_log, o->g.dA_log, c->ndn, c->pdt);
  gt_download(h->dD, o->g.dD, Dn, c->pdt);
  gt_download(h->dbias, o->g.ddelta_bias, Dn, c->pdt);
}

/* Bitwise equality of two runs' outputs. */
static int dev_same(const sct_case *c, const dev_out *a, const dev_out *b) {
  const size_t es = mb_dtype_size(c->dt), ps = mb_dtype_size(c->pdt), Dn = (size_t)c->d.dim;
  return gt_same_bytes(a->y, b->y, c->nx * es) && gt_same_bytes(a->states, b->states, c->nstates * 4) &&
         gt_same_bytes(a->g.du, b->g.du, c->nx * es) && gt_same_bytes(a->g.ddelta, b->g.ddelta, c->nx * es) &&
         gt_same_bytes(a->g.dz, b->g.dz, c->nx * es) && gt_same_bytes(a->g.dB, b->g.dB, c->nbc * es) &&
         gt_same_bytes(a->g.dC, b->g.dC, c->nbc * es) && gt_same_bytes(a->g.dA_log, b->g.dA_log, c->ndn * ps) &&
         gt_same_bytes(a->g.dD, b->g.dD, Dn * ps) && gt_same_bytes(a->g.ddelta_bias, b->g.ddelta_bias, Dn * ps);
}

/* One case: reference on the CPU, forward + backward on the GPU, compare;
 * with `twice`, a second run into fresh poisoned buffers must give the same
 * bits. */
static void run_case(const char *label, const mb_scan_desc *d, mb_dtype dt, mb_dtype pdt, int has_z, int has_D,
                     int has_bias, int twice) {
  sct_case c;
  sct_case_make(&c, d, dt, pdt, has_z, has_D, has_bias);
  sct_case_reference(&c);
  dev_case dc;
  dev_case_make(&c, &dc);
  cudaStream_t s;
  GT_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  dev_out o;
  dev_out_alloc(&c, &dc, &o);
  dev_run(&c, &dc, &o, s);
  sct_out h;
  sct_out_alloc(&c, &h);
  dev_download(&c, &o, &h);
  printf("%s: B=%d L=%d D=%d N=%d %s (params %s)%s%s%s%s%s\n", label, d->batch, d->seqlen, d->dim, d->dstate,
         mb_dtype_name(dt), mb_dtype_name(pdt), d->cu_seqlens ? " varlen" : "", has_z ? "" : " no-z",
         has_D ? "" : " no-D", has_bias ? "" : " no-bias", d->delta_softplus ? "" : " no-softplus");
  int bad = sct_compare(&c, &h, label, 1);
  if (twice) {
    dev_out o2;
    dev_out_alloc(&c, &dc, &o2);
    dev_run(&c, &dc, &o2, s);
    const int same = dev_same(&c, &o, &o2);
    printf("  %-26s second run bitwise identical: %s\n", label, same ? "yes" : "NO");
    bad += !same;
    dev_out_free(&o2);
  }
  sct_out_free(&h);
  dev_out_free(&o);
  GT_CUDA(cudaStreamDestroy(s));
  dev_case_free(&dc);
  sct_case_free(&c);
  if (bad)
    fail_msg("%s: %d checks failed", label, bad);
}

static void test_odd_shapes(void **state) {
  (void)state;
  mb_scan_desc a = {.batch = 2, .seqlen = 300, .dim = 40, .dstate = 16, .delta_softplus = 1};
  run_case("odd f32", &a, MB_F32, MB_F32, 1, 1, 1, 0);
  mb_scan_desc b = {.batch = 3, .seqlen = 1, .dim = 7, .dstate = 5, .delta_softplus = 1};
  run_case("L=1 N=5 f32", &b, MB_F32, MB_F32, 1, 1, 1, 0);
  mb_scan_desc e = {.batch = 1, .seqlen = 4097, .dim = 64, .dstate = 16, .delta_softplus = 1};
  run_case("long f32", &e, MB_F32, MB_F32, 1, 1, 1, 0);
}

static void test_dstate64(void **state) {
  (void)state;
  mb_scan_desc d = {.batch = 2, .seqlen = 1000, .dim = 64, .dstate = 64, .delta_softplus = 1};
  run_case("N=64 f32", &d, MB_F32, MB_F32, 1, 1, 1, 0);
  run_case("N=64 bf16", &d, MB_BF16, MB_F32, 1, 1, 1, 0);
}

static void test_varlen(void **state) {
  (void)state;
  /* empty, [0,37), [37,128), [128,129), [129,250), [250,300), [300,511),
   * [511,600); budget padding [600,700) */
  const int32_t cu[] = {0, 0, 37, 128, 129, 250, 300, 511, 600};
  mb_scan_desc d = {
      .batch = 1, .seqlen = 700, .dim = 72, .dstate = 16, .delta_softplus = 1, .cu_seqlens = cu, .nseq = 8};
  run_case("varlen f32", &d, MB_F32, MB_F32, 1, 1, 1, 0);
  const int32_t cu2[] = {0, 300, 301, 900, 1400};
  mb_scan_desc e = {
      .batch = 1, .seqlen = 1500, .dim = 64, .dstate = 64, .delta_softplus = 1, .cu_seqlens = cu2, .nseq = 4};
  run_case("varlen bf16 N=64", &e, MB_BF16, MB_F32, 1, 1, 1, 0);
}

static void test_dtypes_options(void **state) {
  (void)state;
  mb_scan_desc a = {.batch = 2, .seqlen = 1024, .dim = 96, .dstate = 16, .delta_softplus = 1};
  run_case("bf16", &a, MB_BF16, MB_F32, 1, 1, 1, 0);
  mb_scan_desc b = {.batch = 2, .seqlen = 513, .dim = 40, .dstate = 16, .delta_softplus = 0};
  run_case("f16 options off", &b, MB_F16, MB_F32, 0, 0, 0, 0);
  mb_scan_desc c = {.batch = 1, .seqlen = 256, .dim = 64, .dstate = 16, .delta_softplus = 1};
  run_case("bf16 params", &c, MB_BF16, MB_BF16, 1, 1, 1, 0);
}

/* The Mamba-130m layer (d_inner 1536, N 16) in bf16, twice. */
static void test_mamba_shape(void **state) {
  (void)state;
  mb_scan_desc d = {.batch = 2, .seqlen = 2048, .dim = 1536, .dstate = 16, .delta_softplus = 1};
  run_case("mamba-130m bf16", &d, MB_BF16, MB_F32, 1, 1, 1, 1);
}

/* The f32 case for the comparison with transformers (MAMBERT_SCAN_DUMP). */
static void test_dump_for_transformers(void **state) {
  (void)state;
  const char *path = getenv("MAMBERT_SCAN_DUMP");
  if (!path || !*path) {
    printf("dump for transformers: MAMBERT_SCAN_DUMP not set: not written\n");
    return;
  }
  mb_scan_desc d = {.batch = 2, .seqlen = 300, .dim = 64, .dstate = 16, .delta_softplus = 1};
  sct_case c;
  sct_case_make(&c, &d, MB_F32, MB_F32, 1, 1, 1);
  sct_case_reference(&c);
  dev_case dc;
  dev_case_make(&c, &dc);
  dev_out o;
  dev_out_alloc(&c, &dc, &o);
  dev_run(&c, &dc, &o, 0);
  sct_out h;
  sct_out_alloc(&c, &h);
  dev_download(&c, &o, &h);
  int bad = sct_compare(&c, &h, "dump f32", 1);
  const mb_shape x = mb_shape3(d.batch, d.seqlen, d.dim), bc = mb_shape3(d.batch, d.seqlen, d.dstate);
  const mb_shape dn = mb_shape2(d.dim, d.dstate), d1 = mb_shape1(d.dim);
  struct {
    const char *name;
    const float *data;
    mb_shape shape;
  } t[] = {{"u", c.u, x},
           {"delta", c.delta, x},
           {"z", c.z, x},
           {"B", c.B, bc},
           {"C", c.C, bc},
           {"dy", c.dy, x},
           {"A_log", c.A_log, dn},
           {"D", c.D, d1},
           {"delta_bias", c.bias, d1},
           {"y", h.y, x},
           {"du", h.du, x},
           {"ddelta", h.ddelta, x},
           {"dz", h.dz, x},
           {"dB", h.dB, bc},
           {"dC", h.dC, bc},
           {"dA_log", h.dA_log, dn},
           {"dD", h.dD, d1},
           {"ddelta_bias", h.dbias, d1}};
  mb_safetensors_writer *w = NULL;
  GT_OK(mb_safetensors_writer_new(&w));
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
    GT_OK(mb_safetensors_writer_add(w, t[i].name, MB_F32, &t[i].shape, t[i].data));
  GT_OK(mb_safetensors_writer_set_metadata(w, "layout", "channels-last: u, delta, z, y [B, L, D]; B, C [B, L, N]"));
  GT_OK(mb_safetensors_writer_write(w, path));
  mb_safetensors_writer_free(w);
  printf("dump for transformers: wrote %s\n", path);
  sct_out_free(&h);
  dev_out_free(&o);
  dev_case_free(&dc);
  sct_case_free(&c);
  if (bad)
    fail_msg("dump f32: %d checks failed", bad);
}

static int report(void **state) {
  (void)state;
  printf("cuda_selective_scan: worst relative error f32 %.2e (bound 1e-5), bf16 %.2e (bound 1e-2), f16 %.2e "
         "(bound 5e-3)\n",
         sct_worst[0], sct_worst[1], sct_worst[2]);
  return 0;
}

int main(void) {
  gt_require_gpu("cuda_selective_scan");
  sct_seed_init("cuda_selective_scan");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_odd_shapes),  cmocka_unit_test(test_dstate64),
      cmocka_unit_test(test_varlen),      cmocka_unit_test(test_dtypes_options),
      cmocka_unit_test(test_mamba_shape), cmocka_unit_test(test_dump_for_transformers),
  };
  return cmocka_run_group_tests(tests, NULL, report);
}
