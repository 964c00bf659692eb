/* test_conv1d_grad.c (ctest: grad_conv1d): the conv1d backward checked by
 * float64 central differences of a random projection of y for x, w and bias
 * (widths 1..4, with and without SiLU, padded and varlen), and against the
 * scatter-form reference backward on larger shapes; f32 against f64. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "kernels/cpu/conv1d.h"
#include "tests/cpukern/cpukern_ref.h"
#include "tests/cpukern/cpukern_util.h"

#define TOL_FD 1e-6
#define TOL_REF 1e-13
#define TOL_F32 1e-5

static double worst_fd = 0, worst_ref = 0, worst_f32 = 0;

typedef struct {
  mb_conv1d_desc d;
  double *x, *w, *b, *y;
} fwd_ctx;

static void run_forward(void *p) {
  fwd_ctx *f = p;
  if (mb_cpu_conv1d_fwd_f64(&f->d, f->x, f->w, f->b, f->y) != MB_OK)
    fail_msg("forward failed: %s", mb_error_message());
}

static void gradcheck_case(const mb_conv1d_desc *d, uint64_t seed) {
  const size_t nx = (size_t)d->batch * d->seqlen * d->dim, nw = (size_t)d->dim * d->width, D = (size_t)d->dim;
  fwd_ctx f = {.d = *d, .x = tu_alloc(nx), .w = tu_alloc(nw), .b = tu_alloc(D), .y = tu_alloc(nx)};
  double *proj = tu_alloc(nx), *dx = tu_alloc(nx), *dw = tu_alloc(nw), *db = tu_alloc(D);
  double *rdx = tu_alloc(nx), *rdw = tu_alloc(nw), *rdb = tu_alloc(D);
  uint64_t s = seed;
  tu_fill(f.x, nx, 1, &s);
  tu_fill(f.w, nw, 0.5, &s);
  tu_fill(f.b, D, 0.5, &s);
  tu_fill(proj, nx, 1, &s);
  run_forward(&f);
  assert_int_equal(mb_cpu_conv1d_bwd_f64(d, f.x, f.w, f.b, proj, dx, dw, db, NULL, 0), MB_OK);
  tu_gradfn fn = {.forward = run_forward, .ctx = &f, .out = f.y, .proj = proj, .out_n = nx};
  const double ex = tu_gradcheck(&fn, f.x, dx, nx, 300, &s);
  const double ew = tu_gradcheck(&fn, f.w, dw, nw, 300, &s);
  const double eb = tu_gradcheck(&fn, f.b, db, D, 300, &s);
  const double e = fmax(ex, fmax(ew, eb));
  if (e > worst_fd)
    worst_fd = e;
  if (!(e <= TOL_FD))
    fail_msg("B=%d L=%d D=%d W=%d silu=%d varlen=%d: dx %.3g dw %.3g dbias %.3g", d->batch, d->seqlen, d->dim,
             d->width, d->silu, d->cu_seqlens != NULL, ex, ew, eb);
  /* and the reference (scatter form) agrees */
  assert_int_equal(ref_conv1d_bwd_f64(d, f.x, f.w, f.b, proj, rdx, rdw, rdb), MB_OK);
  const double er = fmax(tu_normdiff(dx, rdx, nx), fmax(tu_normdiff(dw, rdw, nw), tu_normdiff(db, rdb, D)));
  if (er > worst_ref)
    worst_ref = er;
  if (!(er <= TOL_REF))
    fail_msg("B=%d L=%d D=%d W=%d silu=%d: differs from reference by %.3g", d->batch, d->seqlen, d->dim, d->width,
             d->silu, er);
  /* f32 */
  float *xf = tu_tof(f.x, nx), *wf = tu_tof(f.w, nw), *bf = tu_tof(f.b, D), *gf = tu_tof(proj, nx);
  float *dxf = tu_allocf(nx), *dwf = tu_allocf(nw), *dbf = tu_allocf(D);
  assert_int_equal(mb_cpu_conv1d_bwd_f32(d, xf, wf, bf, gf, dxf, dwf, dbf, NULL, 0), MB_OK);
  const double ef = fmax(tu_normdiff_f(dxf, rdx, nx), fmax(tu_normdiff_f(dwf, rdw, nw), tu_normdiff_f(dbf, rdb, D)));
  if (ef > worst_f32)
    worst_f32 = ef;
  if (!(ef <= TOL_F32))
    fail_msg("f32 B=%d L=%d D=%d W=%d: differs by %.3g", d->batch, d->seqlen, d->dim, d->width, ef);
  void *bufs[] = {f.x, f.w, f.b, f.y, proj, dx, dw, db, rdx, rdw, rdb, xf, wf, bf, gf, dxf, dwf, dbf};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    mb_host_free(bufs[i]);
}

static void test_fd(void **state) {
  (void)state;
  const int32_t cu[] = {0, 1, 5, 5, 9};
  for (int W = 1; W <= 4; W++)
    for (int silu = 0; silu <= 1; silu++) {
      mb_conv1d_desc p = {.batch = 2, .seqlen = 6, .dim = 3, .width = W, .silu = silu};
      gradcheck_case(&p, 10 * W + silu);
      mb_conv1d_desc one = {.batch = 2, .seqlen = 1, .dim = 2, .width = W, .silu = silu};
      gradcheck_case(&one, 20 * W + silu);
      mb_conv1d_desc v = {.batch = 1, .seqlen = 11, .dim = 3, .width = W, .silu = silu, .cu_seqlens = cu, .nseq = 4};
      gradcheck_case(&v, 30 * W + silu);
      mb_conv1d_desc wide = {.batch = 2, .seqlen = 5, .dim = 67, .width = W, .silu = silu};
      gradcheck_case(&wide, 40 * W + silu);
    }
}

/* dx, dw, dbias may be left out. */
static void test_optional_grads(void **state) {
  (void)state;
  mb_conv1d_desc d = {.batch = 2, .seqlen = 7, .dim = 5, .width = 4, .silu = 1};
  double x[70], w[20], b[5], dy[70], dx[70], dx2[70], dw[20], db[5];
  uint64_t s = 1;
  tu_fill(x, 70, 1, &s);
  tu_fill(w, 20, 1, &s);
  tu_fill(b, 5, 1, &s);
  tu_fill(dy, 70, 1, &s);
  assert_int_equal(mb_cpu_conv1d_bwd_f64(&d, x, w, b, dy, dx, dw, db, NULL, 0), MB_OK);
  assert_int_equal(mb_cpu_conv1d_bwd_f64(&d, x, w, b, dy, dx2, NULL, NULL, NULL, 0), MB_OK);
  assert_memory_equal(dx, dx2, sizeof dx);
  double dw2[20], db2[5];
  assert_int_equal(mb_cpu_conv1d_bwd_f64(&d, x, w, b, dy, NULL, dw2, db2, NULL, 0), MB_OK);
  assert_memory_equal(dw, dw2, sizeof dw);
  assert_memory_equal(db, db2, sizeof db);
}

/* The backward's workspace does not grow with L; a caller's buffer is used
 * as given and a short one is an error. */
static void test_workspace(void **state) {
  (void)state;
  mb_conv1d_desc d = {.batch = 1, .seqlen = 16, .dim = 1536, .width = 4, .silu = 1, .nthreads = 2};
  const size_t w16 = mb_cpu_conv1d_bwd_workspace(&d, 4);
  d.seqlen = 1 << 20;
  assert_int_equal(mb_cpu_conv1d_bwd_workspace(&d, 4), w16);
  assert_true(w16 == mb_align_up(4 * 1536 * 4, 64) + 2 * (2 * mb_align_up(4 * 1536 * 4, 64) + 1536 * 4));
  mb_conv1d_desc s = {.batch = 1, .seqlen = 5, .dim = 3, .width = 2, .nthreads = 1};
  double x[15] = {0}, w[6] = {0}, dy[15] = {0}, dx[15], dw[6], db[3];
  void *ws = mb_host_malloc(mb_cpu_conv1d_bwd_workspace(&s, 8));
  mb_host_mem_reset_peak();
  const size_t before = mb_host_mem_stats().current;
  assert_int_equal(mb_cpu_conv1d_bwd_f64(&s, x, w, NULL, dy, dx, dw, db, ws, mb_cpu_conv1d_bwd_workspace(&s, 8)),
                   MB_OK);
  assert_int_equal(mb_host_mem_stats().peak, before);
  assert_int_equal(mb_cpu_conv1d_bwd_f64(&s, x, w, NULL, dy, dx, dw, db, ws, 8), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "workspace"));
  mb_host_free(ws);
}

static int report(void **state) {
  (void)state;
  print_message("grad_conv1d: max finite-difference error %.3g (bound %.0g); vs reference backward f64 %.3g "
                "(bound %.0g); f32 %.3g (bound %.0g)\n",
                worst_fd, TOL_FD, worst_ref, TOL_REF, worst_f32, TOL_F32);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_fd), cmocka_unit_test(test_optional_grads),
                                     cmocka_unit_test(test_workspace)};
  return cmocka_run_group_tests(tests, NULL, report);
}
