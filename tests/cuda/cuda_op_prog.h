/* cuda_op_prog.h: what the op-table tests of the CUDA backend share
 * (test_cuda_attention_ops.c, test_cuda_scan_ops.c, test_cuda_ops.c,
 * test_cuda_models.c): a one-node program (one op of the table on inputs
 * of given dtypes and shapes, compiled with poison on so unwritten outputs
 * fail, bound to host data), the cmocka CHECK_OK, and the CUDA backend's
 * set-up and its graph report at teardown. Header-only, cmocka-based: each
 * test is one executable and includes cmocka.h before this.
 *
 * CUDA_OP_PROG_EMULATED (the emulated scan-ops build, no CUDA toolkit):
 * no CUDA backend; programs run on a stand-in backend under the CUDA id. */
#ifndef MB_TESTS_CUDA_OP_PROG_H
#define MB_TESTS_CUDA_OP_PROG_H

#include <stdio.h>
#include <string.h>

#include "autograd/autograd.h"
#ifndef CUDA_OP_PROG_EMULATED
#include "kernels/cuda/cuda.h"
#endif

#define CHECK_OK(expr)                                                                                                 \
  do {                                                                                                                 \
    int ck_rc_ = (expr);                                                                                               \
    if (ck_rc_ != MB_OK)                                                                                               \
      fail_msg("%s failed (%d): %s", #expr, ck_rc_, mb_error_message());                                               \
  } while (0)

/* A one-node program: its inputs (host data) and outputs. */
typedef struct {
  mb_params *params;
  mb_graph *g;
  mb_exec *ex;
  mb_var in[11], out[8];
  int n_in, n_out;
} op_prog;

/* Build op on n_in inputs of dtypes dt and shapes shape, compile with poison
 * on, create its executor on be and bind host[j] to input j. */
static inline void op_prog_build(op_prog *p, mb_backend *be, int op, const mb_attrs *a, int n_in, const mb_dtype *dt,
                                 const mb_shape *shape, void *const *host) {
  memset(p, 0, sizeof *p);
  if (n_in > (int)(sizeof p->in / sizeof p->in[0]))
    fail_msg("op_prog_build: %d inputs (at most %d)", n_in, (int)(sizeof p->in / sizeof p->in[0]));
  CHECK_OK(mb_params_new(MB_F32, &p->params));
  CHECK_OK(mb_graph_new(p->params, &p->g));
  for (int j = 0; j < n_in; j++) {
    char name[16];
    snprintf(name, sizeof name, "in%d", j);
    p->in[j] = mb_input(p->g, name, dt[j], shape[j]);
  }
  p->n_in = n_in;
  p->n_out = mb_graph_op(p->g, MB_HERE, op, p->in, n_in, a, p->out);
  if (p->n_out <= 0)
    fail_msg("building %s: %s", mb_op_name(op), mb_graph_error(p->g));
  for (int k = 0; k < p->n_out; k++)
    CHECK_OK(mb_mark_output(p->g, p->out[k]));
  mb_compile_opts o;
  memset(&o, 0, sizeof o);
  o.poison = 1;
  CHECK_OK(mb_graph_compile(p->g, &o));
  CHECK_OK(mb_exec_new(p->g, be, &p->ex));
  for (int j = 0; j < n_in; j++)
    CHECK_OK(mb_exec_set_input(p->ex, p->in[j], host[j]));
}

static inline void op_prog_free(op_prog *p) {
#ifndef CUDA_OP_PROG_EMULATED
  /* drop the backend's captured graphs of this executor */
  if (mb_is_cuda_backend(mb_exec_backend(p->ex)))
    mb_cuda_backend_forget(mb_exec_backend(p->ex), p->ex);
#endif
  mb_exec_free(p->ex);
  mb_graph_free(p->g);
  mb_params_free(p->params);
}

#ifndef CUDA_OP_PROG_EMULATED
/* The CUDA backend with its defaults; -1 (cmocka's failed set-up) with the
 * reason on stderr. */
static inline int cuda_test_backend_open(mb_backend **be) {
  mb_cuda_backend_opts o = mb_cuda_backend_defaults();
  if (mb_cuda_backend_create(&o, be) != MB_OK) {
    fprintf(stderr, "cuda backend: %s\n", mb_error_message());
    return -1;
  }
  return 0;
}

/* Print the backend's CUDA-graph counts; the number of captures that fell
 * back to eager runs (a test that replays graphs fails on any). */
static inline unsigned long long cuda_test_graph_report(mb_backend *be, const char *test) {
  mb_cuda_graph_stats s = mb_cuda_backend_graph_stats(be);
  printf("graphs: %llu captures, %llu replays, %llu eager runs, %llu fallbacks\n", (unsigned long long)s.captures,
         (unsigned long long)s.replays, (unsigned long long)s.eager_runs, (unsigned long long)s.fallbacks);
  if (s.fallbacks)
    printf("%s: a capture fell back to eager runs (see the log above)\n", test);
  return (unsigned long long)s.fallbacks;
}
#endif

#endif
