/* gradcheck.c: float64 central-difference checks of backward rules and
 * kernels (gradcheck.h). */
#include "autograd/gradcheck.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/graph_internal.h"
#include "autograd/ops.h"
#include "autograd/params.h"

/* splitmix64: a tiny deterministic generator for test data. */
static uint64_t mix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static double unif(uint64_t *s) { return (double)(mix(s) >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0; }

static int run_loss(mb_exec *ex, mb_var loss, double *out) {
  MB_TRY(mb_exec_forward(ex));
  return mb_exec_get(ex, loss, out);
}

int mb_gradcheck(mb_backend *be, const mb_gradcheck_fn *fn, const mb_gradcheck_opts *opts, mb_gradcheck_result *res) {
  mb_gradcheck_opts o = {0};
  if (opts)
    o = *opts;
  if (o.eps <= 0)
    o.eps = 1e-6;
  if (o.atol <= 0)
    o.atol = 1e-7;
  if (o.rtol <= 0)
    o.rtol = 1e-5;
  if (o.max_checks == 0)
    o.max_checks = 64;
  uint64_t rng = o.seed ? o.seed : 0x5eed;
  memset(res, 0, sizeof *res);

  mb_params *params = NULL;
  mb_graph *g = NULL;
  mb_exec *ex = NULL;
  double *host = NULL, *grad = NULL, *rbuf = NULL;
  int rc = mb_params_new(MB_F64, &params);
  if (rc == MB_OK)
    rc = mb_graph_new(params, &g);
  mb_var y = MB_VAR_NONE, loss = MB_VAR_NONE, r = MB_VAR_NONE;
  if (rc == MB_OK)
    rc = fn->build(fn->user, g, &y);
  if (rc == MB_OK)
    rc = mb_graph_status(g);
  if (rc == MB_OK) {
    const mb_value *yv = mb_graph_value(g, y);
    if (!yv || yv->dtype != MB_F64)
      rc = MB_ERR(MB_EINVAL, "gradcheck: the checked output must be an f64 value");
    else {
      r = mb_input(g, "gradcheck.R", MB_F64, yv->shape);
      loss = mb_sum(g, mb_mul(g, y, r));
      rc = mb_set_loss(g, loss);
    }
  }
  mb_compile_opts co = {.train = 1, .poison = 1, .recompute = o.recompute};
  if (rc == MB_OK)
    rc = mb_graph_compile(g, &co);
  if (rc == MB_OK)
    rc = mb_exec_new(g, be, &ex);
  if (rc != MB_OK)
    goto done;

  int64_t total = mb_params_total(params);
  host = calloc((size_t)(total ? total : 1), sizeof *host);
  grad = calloc((size_t)(total ? total : 1), sizeof *grad);
  int64_t rn = mb_shape_numel(&mb_graph_value(g, y)->shape);
  rbuf = malloc((size_t)(rn ? rn : 1) * sizeof *rbuf);
  if (!host || !grad || !rbuf) {
    rc = MB_ERR(MB_ENOMEM, "gradcheck buffers");
    goto done;
  }
  for (int i = 0; i < mb_params_count(params) && rc == MB_OK; i++) {
    const mb_param_info *pi = mb_params_info(params, i);
    for (int64_t e = 0; e < pi->numel; e++)
      host[pi->offset + e] = unif(&rng);
    rc = mb_params_set(params, i, host + pi->offset);
  }
  for (int64_t e = 0; e < rn; e++)
    rbuf[e] = unif(&rng);
  if (rc == MB_OK)
    rc = mb_exec_set_input(ex, r, rbuf);
  if (rc == MB_OK && fn->init)
    rc = fn->init(fn->user, g, ex);
  double l0 = 0;
  if (rc == MB_OK)
    rc = run_loss(ex, loss, &l0);
  if (rc == MB_OK)
    rc = mb_exec_backward(ex);
  if (rc == MB_OK)
    rc = be->copy_out(be, grad, mb_params_grad(params), (size_t)total * sizeof(double));
  if (rc == MB_OK)
    rc = be->copy_out(be, host, mb_params_data(params), (size_t)total * sizeof(double));
  if (rc != MB_OK)
    goto done;
  if (!isfinite(l0)) {
    rc = MB_ERR(MB_EINVAL, "gradcheck: the loss is not finite (%g)", l0);
    goto done;
  }

  double *pdata = mb_params_data(params); /* host memory on the CPU backend */
  int on_host = be->device.type == MB_DEVICE_CPU;
  for (int i = 0; i < mb_params_count(params) && rc == MB_OK; i++) {
    const mb_param_info *pi = mb_params_info(params, i);
    if (!pi->trainable)
      continue;
    res->n_params++;
    int64_t nchk = (o.max_checks < 0 || pi->numel <= o.max_checks) ? pi->numel : o.max_checks;
    double pmax_abs = 0, pmax_rel = 0;
    for (int64_t c = 0; c < nchk && rc == MB_OK; c++) {
      int64_t e = nchk == pi->numel ? c : (int64_t)(mix(&rng) % (uint64_t)pi->numel);
      int64_t at = pi->offset + e;
      double orig = host[at], lp = 0, lm = 0;
      double vp = orig + o.eps, vm = orig - o.eps;
      if (on_host)
        pdata[at] = vp;
      else
        rc = be->copy_in(be, pdata + at, &vp, sizeof vp);
      if (rc == MB_OK)
        rc = run_loss(ex, loss, &lp);
      if (on_host)
        pdata[at] = vm;
      else if (rc == MB_OK)
        rc = be->copy_in(be, pdata + at, &vm, sizeof vm);
      if (rc == MB_OK)
        rc = run_loss(ex, loss, &lm);
      if (on_host)
        pdata[at] = orig;
      else if (rc == MB_OK)
        rc = be->copy_in(be, pdata + at, &orig, sizeof orig);
      if (rc != MB_OK)
        break;
      double num = (lp - lm) / (2 * o.eps), ana = grad[at];
      double err = fabs(num - ana), rel = err / (fabs(num) > 1e-12 ? fabs(num) : 1e-12);
      res->n_checked++;
      if (err > pmax_abs)
        pmax_abs = err;
      if (err > res->max_abs_err) {
        res->max_abs_err = err;
        snprintf(res->worst, sizeof res->worst, "%s[%lld]: analytic %.10g numeric %.10g", pi->name, (long long)e,
                 ana, num);
      }
      if (fabs(num) > 1e-6 && rel > pmax_rel)
        pmax_rel = rel;
      if (fabs(num) > 1e-6 && rel > res->max_rel_err)
        res->max_rel_err = rel;
      if (!(err <= o.atol + o.rtol * fabs(num)))
        rc = MB_ERR(MB_EINVAL, "gradient mismatch at %s[%lld]: analytic %.12g, numeric %.12g (|diff| %.3g > %.3g)",
                    pi->name, (long long)e, ana, num, err, o.atol + o.rtol * fabs(num));
    }
    if (o.verbose)
      printf("  gradcheck %-32s %6lld checked  max abs %.3g  max rel %.3g\n", pi->name, (long long)nchk, pmax_abs,
             pmax_rel);
  }

done:
  mb_exec_free(ex);
  mb_graph_free(g);
  mb_params_free(params);
  free(host);
  free(grad);
  free(rbuf);
  return rc;
}
