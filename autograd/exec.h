/* exec.h: running compiled graphs, the memory plan's report, gradient-ready
 * hooks, per-node timing, and a cache of compiled programs keyed by shape.
 *
 * An executor binds a compiled graph to a backend: one arena holds every
 * intermediate at its planned offset (inputs and outputs included),
 * parameters and gradients are the store's flat buffers. Forward and
 * backward are separate calls (evaluation runs only the forward).
 *
 *   mb_exec *ex;
 *   MB_TRY(mb_exec_new(g, mb_cpu_backend(), &ex));
 *   MB_TRY(mb_exec_set_input(ex, ids, host_ids));
 *   MB_TRY(mb_exec_forward(ex));
 *   MB_TRY(mb_exec_backward(ex));          // gradients now in mb_params_grad()
 *   MB_TRY(mb_exec_get(ex, loss, &loss_value));
 *
 * Gradient-ready hook (for bucketed all-reduce): during mb_exec_backward the
 * executor calls fn(user, &info) once per trainable parameter, right after
 * the node that finishes that parameter's gradient ran, in backward-tape
 * order (mb_exec_grad_order lists that order before any run, so buckets can
 * be laid out ahead of time). On the CPU the gradient is complete in memory
 * when the hook runs. A backend with its own run_tape (CUDA graphs) calls
 * mb_exec_grad_ready_after(ex, node) itself, after enqueueing that node, to
 * learn which gradients it finishes (to record an event there).
 * Parameters whose gradient is identically zero (unused by the loss) are
 * written at the very start of backward and reported first.
 */
#ifndef MB_AUTOGRAD_EXEC_H
#define MB_AUTOGRAD_EXEC_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "autograd/backend.h"
#include "autograd/graph.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the memory plan (computed by mb_graph_compile) ---- */

typedef struct {
  size_t arena_bytes;          /* planned peak: the arena size */
  size_t sum_bytes;            /* every planned buffer laid end to end */
  size_t activation_bytes;     /* forward values kept alive into backward */
  int n_buffers;               /* buffers placed in the arena */
  int n_nodes_fwd, n_nodes_bwd;/* after DCE (and recompute) */
  int n_recomputed;            /* forward nodes re-emitted in backward */
} mb_plan_stats;

mb_plan_stats mb_graph_plan_stats(const mb_graph *g);
/* Planned placement of one value: -1 if it is not in the arena (params,
 * gradients, views); first and last get the node positions (forward then
 * backward tape, 0-based) of its lifetime. */
int64_t mb_graph_plan_offset(const mb_graph *g, mb_var v, int *first, int *last);
/* Testing hook: shorten a value's planned lifetime to end at node position
 * `last` and re-place the arena (simulates a planner bug; see the tests). */
int mb_graph_plan_debug_truncate(mb_graph *g, mb_var v, int last);

/* ---- executor ---- */

typedef struct {
  int param_index;   /* in the store */
  const char *name;
  int64_t offset;    /* elements into the flat gradient buffer */
  int64_t numel;
  int bwd_node;      /* backward-tape node after which it is final, -1: at start */
} mb_grad_ready;

typedef void (*mb_grad_ready_fn)(void *user, const mb_grad_ready *info);

int mb_exec_new(mb_graph *g, mb_backend *be, mb_exec **out) MB_NODISCARD;
void mb_exec_free(mb_exec *ex);
mb_graph *mb_exec_graph(mb_exec *ex);
mb_backend *mb_exec_backend(mb_exec *ex);

/* Copy an input from host memory (its declared dtype and shape). */
int mb_exec_set_input(mb_exec *ex, mb_var input, const void *host) MB_NODISCARD;
int mb_exec_set_input_by_name(mb_exec *ex, const char *name, const void *host) MB_NODISCARD;
/* Copy a value to host memory (outputs and the loss stay valid after a run;
 * other values only while alive, so mark what you want to read). */
int mb_exec_get(mb_exec *ex, mb_var v, void *host) MB_NODISCARD;
/* A value's device pointer (NULL if none), for backends and tests. */
void *mb_exec_ptr(mb_exec *ex, mb_var v);

int mb_exec_forward(mb_exec *ex) MB_NODISCARD;
int mb_exec_backward(mb_exec *ex) MB_NODISCARD;
/* Run one node of a tape (0 forward, 1 backward): for backends' run_tape. */
int mb_exec_run_node(mb_exec *ex, int tape, int index) MB_NODISCARD;
/* Gradients finished by backward node `index`: count, and the infos. */
int mb_exec_grad_ready_after(mb_exec *ex, int index, const mb_grad_ready **infos);

void mb_exec_on_grad_ready(mb_exec *ex, mb_grad_ready_fn fn, void *user);
/* Node hook (timelines): after each node that runs a kernel in the host
 * loop, fn(user, tape (0 forward, 1 backward), index, op name, t0, t1), in
 * CLOCK_MONOTONIC seconds. NULL turns it off. Backends with their own
 * run_tape (CUDA graphs) do not call it. */
typedef void (*mb_node_hook_fn)(void *user, int tape, int index, const char *op, double t0, double t1);
void mb_exec_on_node(mb_exec *ex, mb_node_hook_fn fn, void *user);
/* Every trainable parameter in the order backward finishes them. */
const mb_grad_ready *mb_exec_grad_order(mb_exec *ex, int *n);

/* Use external arena memory of at least the planned size (the program cache
 * shares one arena between its programs). NULL: allocate an own arena. */
int mb_exec_bind_arena(mb_exec *ex, void *base, size_t bytes) MB_NODISCARD;

/* Per-node timing. */
void mb_exec_set_profiling(mb_exec *ex, int on);
typedef struct {
  int tape, index, op;
  double seconds; /* accumulated */
  int64_t calls;
} mb_node_time;
const mb_node_time *mb_exec_profile(mb_exec *ex, int *n);
void mb_exec_profile_reset(mb_exec *ex);
/* A table of time per op kind, largest first. */
void mb_exec_profile_print(mb_exec *ex, FILE *f);

/* ---- compiled programs cached by shape key ---- */

/* Builds the forward of one shape (e.g. key = {batch, seq_len}); marks the
 * loss/outputs. Called once per new key. */
typedef int (*mb_build_fn)(void *user, mb_graph *g, const int64_t *key, int nkey);

typedef struct mb_program_cache mb_program_cache;

int mb_program_cache_new(mb_params *params, mb_backend *be, const mb_compile_opts *opts, mb_build_fn build,
                         void *user, mb_program_cache **out) MB_NODISCARD;
void mb_program_cache_free(mb_program_cache *c);
/* The executor for this key (built and compiled on first use). All
 * executors of one cache share one arena, grown to the largest plan, so at
 * most one of them may be mid-run at a time. */
int mb_program_cache_get(mb_program_cache *c, const int64_t *key, int nkey, mb_exec **out) MB_NODISCARD;
int mb_program_cache_size(const mb_program_cache *c);

#ifdef __cplusplus
}
#endif
#endif
