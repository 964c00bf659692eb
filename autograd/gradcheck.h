/* gradcheck.h: finite-difference checks of the AOT backward in float64.
 *
 * The caller builds a forward on an f64 parameter store and returns one
 * float output y; the check adds loss = sum(y * R) for a random R (so every
 * element of y matters with its own weight), compiles with poisoning on,
 * draws every parameter uniformly from [-1, 1] (then lets the caller adjust
 * values and feed inputs), runs forward+backward, and compares each checked
 * element of each trainable parameter's gradient with the central difference
 * (L(p+eps) - L(p-eps)) / (2 eps). Inputs never get gradients: anything to
 * be checked is declared as a parameter.
 */
#ifndef MB_AUTOGRAD_GRADCHECK_H
#define MB_AUTOGRAD_GRADCHECK_H

#include <stdint.h>

#include "autograd/exec.h"
#include "autograd/graph.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  /* Record the forward into g; return the output to check in *y. */
  int (*build)(void *user, mb_graph *g, mb_var *y);
  /* Optional: after parameters are randomised, set special values
   * (mb_params_set) and feed inputs (mb_exec_set_input). */
  int (*init)(void *user, mb_graph *g, mb_exec *ex);
  void *user;
} mb_gradcheck_fn;

typedef struct {
  double eps;      /* default 1e-6 */
  double atol;     /* default 1e-7 */
  double rtol;     /* default 1e-5 */
  int max_checks;  /* elements per parameter; 0: default 64, < 0: all */
  uint64_t seed;
  int recompute;   /* compile with activation recompute */
  int verbose;     /* print per-parameter errors */
} mb_gradcheck_opts;

typedef struct {
  double max_abs_err, max_rel_err;
  int n_checked;
  int n_params;
  char worst[256]; /* where the largest error was */
} mb_gradcheck_result;

/* MB_OK if every checked gradient element is within atol + rtol*|numeric|;
 * otherwise an error naming the parameter, element, analytic and numeric
 * values. `res` gets the statistics either way. */
int mb_gradcheck(mb_backend *be, const mb_gradcheck_fn *fn, const mb_gradcheck_opts *opts,
                 mb_gradcheck_result *res) MB_NODISCARD;

#ifdef __cplusplus
}
#endif
#endif
