/* cuda_backend.c: the CUDA backend object (cuda.h): device memory through
 * the caching allocator, stream-ordered copies and fills, synchronisation
 * with the device-side error record, CUDA-graph capture and replay of
 * tapes, the fused optimizer updates and the gradient checks. */
#include "kernels/cuda/cuda.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/exec.h"
#include "autograd/graph.h"
#include "kernels/cuda/cuda_backend_internal.h"
#include "runtime/cuda_alloc.h"
#include "runtime/cuda_check.h"
#include "runtime/log.h"

mb_cuda_backend_opts mb_cuda_backend_defaults(void) {
  mb_cuda_backend_opts o;
  memset(&o, 0, sizeof o);
  o.graphs = 1;
  return o;
}

/* ---- errors found on the device ---- */

/* Wait for the stream, then report (and clear) a data error of a kernel. */
static int check_device(cuda_backend *c, const char *what) {
  if (mb_cuda_stream_is_capturing(c->stream))
    return MB_ERR(MB_EINVAL,
                  "cuda %s: the stream is being captured into a CUDA graph; a synchronisation cannot be part of a "
                  "graph (per-node profiling: turn graphs off with mb_cuda_backend_set_graphs(be, 0))",
                  what);
  MB_TRY(mb_cuda_stream_sync(c->stream, what));
  mb_cuda_err_rec rec;
  MB_CUDA_TRY(cudaMemcpyAsync(&rec, c->err, sizeof rec, cudaMemcpyDeviceToHost, c->stream));
  MB_TRY(mb_cuda_stream_sync(c->stream, what));
  if (rec.code == 0)
    return MB_OK;
  char msg[256];
  mb_cuda_err_describe(&rec, msg, sizeof msg);
  MB_CUDA_TRY(cudaMemsetAsync(c->err, 0, sizeof rec, c->stream));
  MB_TRY(mb_cuda_stream_sync(c->stream, what));
  return MB_ERR(rec.code, "%s (found on the GPU)", msg);
}

int mb_cuda_backend_check(mb_backend *be) { return check_device(cuda_of(be), "check"); }

/* ---- memory, copies, fills ---- */

static int cuda_alloc_fn(mb_backend *be, size_t bytes, void **out) {
  cuda_backend *c = cuda_of(be);
  return c->alloc->alloc(c->alloc, bytes ? bytes : 1, out);
}

static void cuda_free_fn(mb_backend *be, void *p) {
  cuda_backend *c = cuda_of(be);
  if (p)
    c->alloc->free(c->alloc, p);
}

static int is_pinned(const void *p) {
  struct cudaPointerAttributes a;
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return a.type == cudaMemoryTypeHost;
}

static int cuda_copy_in(mb_backend *be, void *dst, const void *host, size_t bytes) {
  cuda_backend *c = cuda_of(be);
  if (!bytes)
    return MB_OK;
  MB_TRY(mb_cuda_copy_h2d(dst, host, bytes, c->stream));
  /* pageable sources are staged before cudaMemcpyAsync returns; a pinned
   * one is read later by the DMA engine: wait, so the caller may reuse it */
  if (is_pinned(host))
    MB_TRY(mb_cuda_stream_sync(c->stream, "copy_in"));
  return MB_OK;
}

static int cuda_copy_out(mb_backend *be, void *host, const void *src, size_t bytes) {
  cuda_backend *c = cuda_of(be);
  if (bytes)
    MB_TRY(mb_cuda_copy_d2h(host, src, bytes, c->stream));
  return check_device(c, "copy_out");
}

static int cuda_fill_fn(mb_backend *be, void *dst, mb_dtype dt, size_t n, double value) {
  return mb_cuda_fill(dst, dt, n, value, cuda_of(be)->stream);
}

static int cuda_sync_fn(mb_backend *be) { return check_device(cuda_of(be), "sync"); }

/* ---- CUDA graphs ---- */

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

static uint64_t fnv_shape(uint64_t h, const mb_shape *s) {
  int nd = s->ndim;
  h = fnv(h, &nd, sizeof nd);
  return fnv(h, s->dim, (size_t)(nd > 0 ? nd : 0) * sizeof s->dim[0]);
}

/* Everything a tape's kernels see: every value's pointer, dtype and shape,
 * every node's op, operands and attributes, and the backend's options. */
static uint64_t tape_fingerprint(cuda_backend *c, mb_exec *ex, int tape) {
  mb_graph *g = mb_exec_graph(ex);
  uint64_t h = 1469598103934665603ull;
  h = fnv(h, &g, sizeof g);
  h = fnv(h, &tape, sizeof tape);
  h = fnv(h, &c->opts, sizeof c->opts);
  int nv = mb_graph_num_values(g);
  h = fnv(h, &nv, sizeof nv);
  for (int v = 0; v < nv; v++) {
    const mb_value *val = mb_graph_value(g, (mb_var){v});
    void *p = mb_exec_ptr(ex, (mb_var){v});
    int dt = (int)val->dtype;
    h = fnv(h, &p, sizeof p);
    h = fnv(h, &dt, sizeof dt);
    h = fnv_shape(h, &val->shape);
  }
  int nn = mb_graph_num_nodes(g, tape);
  h = fnv(h, &nn, sizeof nn);
  for (int i = 0; i < nn; i++) {
    const mb_node *n = mb_graph_node(g, tape, i);
    int32_t hdr[3] = {n->op, n->n_in, n->n_out};
    h = fnv(h, hdr, sizeof hdr);
    h = fnv(h, n->in, (size_t)n->n_in * sizeof n->in[0]);
    h = fnv(h, n->out, (size_t)n->n_out * sizeof n->out[0]);
    h = fnv(h, n->attr.i, sizeof n->attr.i);
    h = fnv(h, n->attr.f, sizeof n->attr.f);
    h = fnv_shape(h, &n->attr.shape);
  }
  return h;
}

static int run_eager(cuda_backend *c, mb_exec *ex, int tape) {
  int n = mb_graph_num_nodes(mb_exec_graph(ex), tape);
  for (int i = 0; i < n; i++)
    MB_TRY(mb_exec_run_node(ex, tape, i));
  pthread_mutex_lock(&c->mu);
  c->gstats.eager_runs++;
  pthread_mutex_unlock(&c->mu);
  return MB_OK;
}

static void entry_drop(cuda_backend *c, graph_entry *e) {
  if (e->used && e->exec && c->gstats.graphs_held > 0)
    c->gstats.graphs_held--;
  if (e->exec) {
    MB_CUDA_WARN(cudaStreamSynchronize(c->stream)); /* it may still be running */
    MB_CUDA_WARN(cudaGraphExecDestroy(e->exec));
  }
  memset(e, 0, sizeof *e);
}

/* The entry of (ex, tape), or a free / least recently used one reset for it. */
static graph_entry *entry_for(cuda_backend *c, const void *ex, int tape, int *fresh) {
  graph_entry *victim = NULL;
  for (int i = 0; i < MB_CUDA_GRAPH_CACHE; i++) {
    graph_entry *e = &c->graphs[i];
    if (e->used && e->ex == ex && e->tape == tape) {
      *fresh = 0;
      return e;
    }
    if (!victim || (!e->used && victim->used) || (e->used && victim->used && e->stamp < victim->stamp))
      victim = e;
  }
  entry_drop(c, victim);
  victim->used = 1;
  victim->ex = ex;
  victim->tape = tape;
  *fresh = 1;
  return victim;
}

/* Capture the tape into a graph; on failure leave no capture behind. */
static int capture(cuda_backend *c, mb_exec *ex, int tape, cudaGraphExec_t *out) {
  *out = NULL;
  MB_CUDA_TRY(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
  int n = mb_graph_num_nodes(mb_exec_graph(ex), tape), rc = MB_OK;
  for (int i = 0; i < n && rc == MB_OK; i++)
    rc = mb_exec_run_node(ex, tape, i);
  cudaGraph_t graph = NULL;
  cudaError_t e = cudaStreamEndCapture(c->stream, &graph);
  if (rc != MB_OK || e != cudaSuccess) {
    (void)cudaGetLastError();
    if (graph)
      MB_CUDA_WARN(cudaGraphDestroy(graph));
    if (rc == MB_OK)
      rc = MB_ERR(MB_EDEVICE, "cudaStreamEndCapture failed: %s", cudaGetErrorString(e));
    return rc;
  }
  e = cudaGraphInstantiate(out, graph, 0);
  MB_CUDA_WARN(cudaGraphDestroy(graph));
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    *out = NULL;
    return MB_ERR(MB_EDEVICE, "cudaGraphInstantiate failed: %s", cudaGetErrorString(e));
  }
  return MB_OK;
}

/* A tape's first run (and its first after a change) is eager; the next is
 * captured and launched; from then on the graph is launched. A failed
 * capture makes the tape eager-only, with one warning. */
static int cuda_run_tape(mb_backend *be, mb_exec *ex, int tape) {
  cuda_backend *c = cuda_of(be);
  if (!c->opts.graphs || mb_graph_num_nodes(mb_exec_graph(ex), tape) == 0)
    return run_eager(c, ex, tape);
  uint64_t fp = tape_fingerprint(c, ex, tape);
  pthread_mutex_lock(&c->mu);
  int fresh;
  graph_entry *e = entry_for(c, ex, tape, &fresh);
  if (!fresh && e->fingerprint != fp) { /* re-bound or changed: warm up again */
    entry_drop(c, e);
    e->used = 1;
    e->ex = ex;
    e->tape = tape;
    fresh = 1;
  }
  e->stamp = ++c->clock;
  e->fingerprint = fp;
  if (fresh)
    e->state = GRAPH_WARM;
  graph_state st = e->state;
  cudaGraphExec_t gexec = e->exec;
  pthread_mutex_unlock(&c->mu);

  if (fresh || st == GRAPH_EAGER_ONLY)
    return run_eager(c, ex, tape);
  if (st == GRAPH_WARM) {
    int rc = capture(c, ex, tape, &gexec);
    pthread_mutex_lock(&c->mu);
    if (rc != MB_OK) {
      e->state = GRAPH_EAGER_ONLY;
      c->gstats.fallbacks++;
      pthread_mutex_unlock(&c->mu);
      char key[64];
      snprintf(key, sizeof key, "cuda-graph-fallback-%p-%d", (const void *)ex, tape);
      mb_log_once(MB_LOG_WARN, key, "cuda: the %s tape runs eagerly, its capture into a CUDA graph failed: %s",
                  tape ? "backward" : "forward", mb_error_message());
      mb_error_clear();
      return run_eager(c, ex, tape);
    }
    e->exec = gexec;
    e->state = GRAPH_CAPTURED;
    c->gstats.captures++;
    c->gstats.graphs_held++;
    pthread_mutex_unlock(&c->mu);
  }
  MB_CUDA_TRY(cudaGraphLaunch(gexec, c->stream));
  pthread_mutex_lock(&c->mu);
  c->gstats.replays++;
  pthread_mutex_unlock(&c->mu);
  return MB_OK;
}

mb_cuda_graph_stats mb_cuda_backend_graph_stats(mb_backend *be) {
  cuda_backend *c = cuda_of(be);
  pthread_mutex_lock(&c->mu);
  mb_cuda_graph_stats s = c->gstats;
  pthread_mutex_unlock(&c->mu);
  return s;
}

void mb_cuda_backend_forget(mb_backend *be, const void *ex) {
  cuda_backend *c = cuda_of(be);
  pthread_mutex_lock(&c->mu);
  for (int i = 0; i < MB_CUDA_GRAPH_CACHE; i++)
    if (c->graphs[i].used && c->graphs[i].ex == ex)
      entry_drop(c, &c->graphs[i]);
  pthread_mutex_unlock(&c->mu);
}

/* ---- optimizers and gradient statistics ---- */

static int cuda_adamw(mb_backend *be, const mb_adamw_args *a) {
  cuda_backend *c = cuda_of(be);
  if (a->dtype != MB_F32)
    return MB_ERR(MB_EUNSUPPORTED, "cuda adamw: master weights must be f32 (got %s)", mb_dtype_name(a->dtype));
  MB_TRY(mb_cuda_segtab_set(c->seg_update, a->seg_begin, a->seg_end, a->seg_decay, a->n_seg, c->stream));
  mb_cuda_adamw_hparams h = {a->lr, a->beta1, a->beta2, a->eps, a->weight_decay, a->step, a->grad_scale};
  return mb_cuda_adamw(a->param, a->grad, a->m, a->v, c->seg_update, &h, NULL, c->stream);
}

static int cuda_sgd(mb_backend *be, const mb_sgd_args *a) {
  cuda_backend *c = cuda_of(be);
  if (a->dtype != MB_F32)
    return MB_ERR(MB_EUNSUPPORTED, "cuda sgd: master weights must be f32 (got %s)", mb_dtype_name(a->dtype));
  MB_TRY(mb_cuda_segtab_set(c->seg_update, a->seg_begin, a->seg_end, a->seg_decay, a->n_seg, c->stream));
  return mb_cuda_sgd(a->param, a->grad, a->momentum_buf, c->seg_update, a->lr, a->momentum, a->dampening,
                     a->weight_decay, a->nesterov, a->step, a->grad_scale, c->stream);
}

static int ensure_scratch(cuda_backend *c, size_t bytes) {
  if (bytes <= c->scratch_bytes)
    return MB_OK;
  /* the old block may still be read by queued work: wait before freeing */
  MB_TRY(mb_cuda_stream_sync(c->stream, "growing scratch"));
  if (c->scratch)
    c->alloc->free(c->alloc, c->scratch);
  c->scratch = NULL;
  c->scratch_bytes = 0;
  MB_TRY(c->alloc->alloc(c->alloc, bytes, &c->scratch));
  c->scratch_bytes = bytes;
  return MB_OK;
}

static int cuda_sumsq(mb_backend *be, const void *x, mb_dtype dt, const int64_t *sb, const int64_t *se, int n,
                      double *out) {
  cuda_backend *c = cuda_of(be);
  MB_TRY(mb_cuda_segtab_set(c->seg_sumsq, sb, se, NULL, n, c->stream));
  MB_TRY(ensure_scratch(c, mb_cuda_sumsq_workspace(c->seg_sumsq)));
  MB_TRY(mb_cuda_sumsq(x, dt, c->seg_sumsq, c->sumsq_out, c->scratch, c->scratch_bytes, c->stream));
  MB_TRY(mb_cuda_copy_d2h(out, c->sumsq_out, sizeof *out, c->stream));
  return check_device(c, "sumsq");
}

int mb_cuda_grads_nonfinite(mb_backend *be, const void *grad, mb_dtype dt, int64_t n, int *found) {
  cuda_backend *c = cuda_of(be);
  *found = 0;
  MB_TRY(mb_cuda_memset(c->flag, 0, sizeof(int), c->stream));
  MB_TRY(mb_cuda_nonfinite_check(grad, dt, n, c->flag, c->stream));
  MB_TRY(mb_cuda_copy_d2h(found, c->flag, sizeof(int), c->stream));
  return check_device(c, "non-finite check");
}

/* ---- the object ---- */

int mb_is_cuda_backend(const mb_backend *be) { return be && be->id == MB_BACKEND_CUDA && be->ctx == (void *)be; }
mb_cuda_stream mb_cuda_backend_stream(mb_backend *be) { return cuda_of(be)->stream; }
mb_device_allocator *mb_cuda_backend_allocator(mb_backend *be) { return cuda_of(be)->alloc; }
mb_gemm_ctx *mb_cuda_backend_gemm(mb_backend *be) { return cuda_of(be)->gemm; }
void mb_cuda_backend_set_graphs(mb_backend *be, int on) { cuda_of(be)->opts.graphs = !!on; }
void mb_cuda_backend_set_fp8(mb_backend *be, int on) { cuda_of(be)->opts.fp8_matmul = !!on; }
void mb_cuda_backend_set_tf32(mb_backend *be, int on) { cuda_of(be)->opts.tf32 = !!on; }

mb_cuda_fp8_stats mb_cuda_backend_fp8_stats(mb_backend *be) {
  const cuda_backend *c = cuda_of(be);
  mb_cuda_fp8_stats st = {c->n_fp8, 0, c->fp8_attentions};
  for (int i = 0; i < c->n_fp8; i++)
    st.fallbacks += c->fp8[i].disabled;
  return st;
}

void mb_cuda_backend_destroy(mb_backend *be) {
  if (!be)
    return;
  cuda_backend *c = cuda_of(be);
  if (c->stream)
    MB_CUDA_WARN(cudaStreamSynchronize(c->stream));
  for (int i = 0; i < MB_CUDA_GRAPH_CACHE; i++)
    if (c->graphs[i].used)
      entry_drop(c, &c->graphs[i]);
  mb_cuda_fp8_states_free(c);
  mb_gemm_ctx_destroy(c->gemm);
  mb_cuda_segtab_free(c->seg_update);
  mb_cuda_segtab_free(c->seg_sumsq);
  if (c->alloc) {
    if (c->scratch)
      c->alloc->free(c->alloc, c->scratch);
    c->alloc->destroy(c->alloc);
  }
  if (c->err)
    MB_CUDA_WARN(cudaFree(c->err));
  mb_cuda_stream_destroy(c->stream);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

int mb_cuda_backend_create(const mb_cuda_backend_opts *opts, mb_backend **out) {
  *out = NULL;
  mb_cuda_backend_opts o = opts ? *opts : mb_cuda_backend_defaults();
  char why[256];
  int count = 0;
  MB_TRY(mb_cuda_device_count(&count, why, sizeof why));
  if (count == 0)
    return MB_ERR(MB_EUNSUPPORTED, "no CUDA device: %s", why);
  MB_TRY(mb_cuda_set_device(o.device));
  mb_kernels_cuda_init();
  cuda_backend *c = calloc(1, sizeof *c);
  if (!c)
    return MB_ERR(MB_ENOMEM, "cuda backend");
  pthread_mutex_init(&c->mu, NULL);
  c->be.ctx = c; /* so a failed creation can be destroyed like a whole one */
  c->opts = o;
  int rc = mb_cuda_stream_create(&c->stream, 0);
  if (rc == MB_OK)
    rc = mb_cuda_allocator_create(o.device, &c->alloc);
  if (rc == MB_OK)
    rc = mb_gemm_ctx_create(c->alloc, o.gemm_workspace, &c->gemm);
  if (rc == MB_OK)
    rc = mb_cuda_segtab_new(&c->seg_update);
  if (rc == MB_OK)
    rc = mb_cuda_segtab_new(&c->seg_sumsq);
  if (rc == MB_OK) {
    /* one small block: the error record, the check flag, the sumsq result */
    cudaError_t e = cudaMalloc((void **)&c->err, 256);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      rc = MB_ERR(mb_cuda_status(e), "cuda backend: cudaMalloc: %s", cudaGetErrorString(e));
    } else {
      c->flag = (int *)((char *)c->err + 64);
      c->sumsq_out = (double *)((char *)c->err + 128);
      e = cudaMemset(c->err, 0, 256);
      if (e != cudaSuccess)
        rc = MB_ERR(mb_cuda_status(e), "cuda backend: cudaMemset: %s", cudaGetErrorString(e));
    }
  }
  if (rc != MB_OK) {
    mb_cuda_backend_destroy(&c->be);
    return mb_error_context(rc, "creating the CUDA backend on device %d", o.device);
  }
  c->be.id = MB_BACKEND_CUDA;
  c->be.name = "cuda";
  c->be.device = (mb_device){MB_DEVICE_CUDA, o.device};
  c->be.ctx = c;
  c->be.alloc = cuda_alloc_fn;
  c->be.free = cuda_free_fn;
  c->be.copy_in = cuda_copy_in;
  c->be.copy_out = cuda_copy_out;
  c->be.fill = cuda_fill_fn;
  c->be.sync = cuda_sync_fn;
  c->be.run_tape = cuda_run_tape;
  c->be.adamw = cuda_adamw;
  c->be.sgd = cuda_sgd;
  c->be.sumsq = cuda_sumsq;
  *out = &c->be;
  return MB_OK;
}
