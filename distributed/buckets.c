/* buckets.c: gradient buckets and their overlapped all-reduce (buckets.h). */
#include "distributed/buckets.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distributed/watchdog.h"
#include "runtime/log.h"

typedef struct {
  mb_bucket_info info;
  int pending;            /* gradients not yet reported this step */
  int launched, finished; /* this step */
  mb_comm_request *req;
  void *staging;
  mb_comm_segment *segs;
  char label[32];
} bucket;

struct mb_buckets {
  mb_comm *comm;
  unsigned char *grads;
  size_t numel, esize;
  mb_dtype dtype;
  mb_reduce_op op;
  int nparams, nbuckets;
  char **names;
  size_t *offset, *count;
  int *bucket_of;
  unsigned char *ready; /* per parameter, this step */
  bucket *bk;
  int next_launch; /* buckets start in order */
  int sync, step, step_open;
  int nready;
  double t_first_ready, t_last_ready;
  size_t staging_bytes;
  mb_timeline *tl;
};

int mb_buckets_count(const mb_buckets *b) { return b->nbuckets; }
const mb_bucket_info *mb_buckets_info(const mb_buckets *b, int k) {
  return k >= 0 && k < b->nbuckets ? &b->bk[k].info : NULL;
}
int mb_buckets_bucket_of(const mb_buckets *b, int i) { return i >= 0 && i < b->nparams ? b->bucket_of[i] : -1; }
size_t mb_buckets_staging_bytes(const mb_buckets *b) { return b->staging_bytes; }

static size_t env_bucket_bytes(void) {
  const char *s = getenv("MAMBERT_BUCKET_MB");
  if (!s || !*s)
    return MB_BUCKET_DEFAULT_BYTES;
  char *end;
  errno = 0;
  double mb = strtod(s, &end);
  if (errno || end == s || *end || !(mb > 0)) {
    mb_log_once(MB_LOG_WARN, "bucket-mb", "MAMBERT_BUCKET_MB=%s is not a positive number of MiB; using 25", s);
    return MB_BUCKET_DEFAULT_BYTES;
  }
  return (size_t)(mb * (1 << 20));
}

void mb_buckets_destroy(mb_buckets *b) {
  if (!b)
    return;
  for (int k = 0; k < b->nbuckets; k++) {
    if (b->bk[k].req) {
      /* Abandoned mid-flight: wait briefly so the buffer is not freed
       * under a running collective. */
      if (mb_comm_wait(&b->bk[k].req, 0) != MB_OK)
        mb_log_error_status(mb_error_code(), "gradient bucket at teardown");
    }
    mb_comm_free(b->comm, b->bk[k].staging);
    free(b->bk[k].segs);
  }
  if (b->names)
    for (int i = 0; i < b->nparams; i++)
      free(b->names[i]);
  free(b->names);
  free(b->offset);
  free(b->count);
  free(b->bucket_of);
  free(b->ready);
  free(b->bk);
  free(b);
}

static void reset_step(mb_buckets *b);

static const mb_grad_param *sort_params;
static int cmp_by_offset(const void *a, const void *b) {
  size_t oa = sort_params[*(const int *)a].offset, ob = sort_params[*(const int *)b].offset;
  return oa < ob ? -1 : oa > ob;
}

int mb_buckets_create(mb_comm *comm, void *grads, size_t grad_numel, const mb_grad_param *params, int nparams,
                      const mb_buckets_options *opt, mb_buckets **out) {
  *out = NULL;
  mb_buckets_options o = {0};
  if (opt)
    o = *opt;
  if (!comm)
    return MB_ERR(MB_EINVAL, "gradient buckets: no communicator");
  if (nparams <= 0 || !params)
    return MB_ERR(MB_EINVAL, "gradient buckets: no parameters");
  if (!grads)
    return MB_ERR(MB_EINVAL, "gradient buckets: no gradient buffer");
  if (o.dtype != MB_F32 && o.dtype != MB_F64 && o.dtype != MB_F16 && o.dtype != MB_BF16)
    return MB_ERR(MB_EINVAL, "gradient buckets: gradients of dtype %s cannot be averaged", mb_dtype_name(o.dtype));
  size_t cap = o.bucket_bytes ? o.bucket_bytes : env_bucket_bytes();
  size_t first_cap = o.first_bucket_bytes ? o.first_bucket_bytes : cap;

  for (int i = 0; i < nparams; i++) {
    const mb_grad_param *p = &params[i];
    const char *nm = p->name ? p->name : "(unnamed)";
    if (p->count == 0)
      return MB_ERR(MB_EINVAL, "gradient buckets: parameter %d '%s' has no elements", i, nm);
    if (p->offset > grad_numel || p->count > grad_numel - p->offset)
      return MB_ERR(MB_EINVAL,
                    "gradient buckets: parameter %d '%s' spans elements [%zu, %zu) of a %zu-element gradient buffer",
                    i, nm, p->offset, p->offset + p->count, grad_numel);
  }

  mb_buckets *b = calloc(1, sizeof *b);
  if (!b)
    return MB_ERR(MB_ENOMEM, "gradient buckets: no memory");
  b->comm = comm;
  b->grads = grads;
  b->numel = grad_numel;
  b->dtype = o.dtype;
  b->esize = mb_dtype_size(o.dtype);
  b->op = o.sum ? MB_REDUCE_SUM : MB_REDUCE_AVG;
  b->nparams = nparams;
  b->sync = 1;
  b->tl = o.timeline;
  b->names = calloc((size_t)nparams, sizeof *b->names);
  b->offset = calloc((size_t)nparams, sizeof *b->offset);
  b->count = calloc((size_t)nparams, sizeof *b->count);
  b->bucket_of = calloc((size_t)nparams, sizeof *b->bucket_of);
  b->ready = calloc((size_t)nparams, 1);
  b->bk = calloc((size_t)nparams, sizeof *b->bk); /* at most one bucket per parameter */
  int *order = calloc((size_t)nparams, sizeof *order), *pos = calloc((size_t)nparams, sizeof *pos);
  int rc = MB_OK;
  if (!b->names || !b->offset || !b->count || !b->bucket_of || !b->ready || !b->bk || !order || !pos) {
    rc = MB_ERR(MB_ENOMEM, "gradient buckets: no memory for %d parameters", nparams);
    goto fail;
  }
  for (int i = 0; i < nparams; i++) {
    b->names[i] = strdup(params[i].name ? params[i].name : "(unnamed)");
    if (!b->names[i]) {
      rc = MB_ERR(MB_ENOMEM, "gradient buckets: no memory");
      goto fail;
    }
    b->offset[i] = params[i].offset;
    b->count[i] = params[i].count;
    order[i] = i;
  }
  /* Sorted by offset: neighbours must not overlap; pos[i] = rank of i in it. */
  sort_params = params;
  qsort(order, (size_t)nparams, sizeof *order, cmp_by_offset);
  sort_params = NULL;
  for (int j = 0; j < nparams; j++) {
    pos[order[j]] = j;
    if (j > 0) {
      int a = order[j - 1], c = order[j];
      if (b->offset[a] + b->count[a] > b->offset[c]) {
        rc = MB_ERR(MB_EINVAL, "gradient buckets: parameters '%s' [%zu, %zu) and '%s' [%zu, %zu) overlap",
                    b->names[a], b->offset[a], b->offset[a] + b->count[a], b->names[c], b->offset[c],
                    b->offset[c] + b->count[c]);
        goto fail;
      }
    }
  }

  /* Group consecutive parameters of the backward order. */
  int k = 0;
  size_t acc = 0;
  for (int i = 0; i < nparams; i++) {
    bucket *bk = &b->bk[k];
    if (bk->info.num_params == 0)
      bk->info.first = i;
    bk->info.num_params++;
    bk->info.count += b->count[i];
    b->bucket_of[i] = k;
    acc += b->count[i] * b->esize;
    if (acc >= (k == 0 ? first_cap : cap) && i + 1 < nparams) {
      k++;
      acc = 0;
    }
  }
  b->nbuckets = k + 1;

  for (k = 0; k < b->nbuckets; k++) {
    bucket *bk = &b->bk[k];
    mb_bucket_info *in = &bk->info;
    in->bytes = in->count * b->esize;
    snprintf(bk->label, sizeof bk->label, "bucket %d", k);
    int pmin = nparams, pmax = -1;
    size_t lo = (size_t)-1, hi = 0;
    for (int i = in->first; i < in->first + in->num_params; i++) {
      if (pos[i] < pmin)
        pmin = pos[i];
      if (pos[i] > pmax)
        pmax = pos[i];
      if (b->offset[i] < lo)
        lo = b->offset[i];
      if (b->offset[i] + b->count[i] > hi)
        hi = b->offset[i] + b->count[i];
    }
    /* Adjacent in the sorted order = no other bucket's parameter inside
     * [lo, hi); unowned padding is tolerated up to 1/8 of the bucket. */
    int adjacent = pmax - pmin + 1 == in->num_params;
    size_t gap = (hi - lo) - in->count;
    if (adjacent && gap <= in->count / 8 && !o.force_staging) {
      in->contiguous = 1;
      in->offset = lo;
      in->span = hi - lo;
      continue;
    }
    in->contiguous = 0;
    in->offset = lo;
    in->span = hi - lo;
    bk->segs = calloc((size_t)in->num_params, sizeof *bk->segs);
    if (!bk->segs) {
      rc = MB_ERR(MB_ENOMEM, "gradient buckets: no memory");
      goto fail;
    }
    int ns = 0;
    for (int i = in->first; i < in->first + in->num_params; i++) {
      unsigned char *p = b->grads + b->offset[i] * b->esize;
      if (ns > 0 && (unsigned char *)bk->segs[ns - 1].ptr + bk->segs[ns - 1].count * b->esize == p) {
        bk->segs[ns - 1].count += b->count[i]; /* adjacent in backward order too: one piece */
        continue;
      }
      bk->segs[ns].ptr = p;
      bk->segs[ns].count = b->count[i];
      ns++;
    }
    in->num_segments = ns;
    rc = mb_comm_alloc(comm, in->bytes, &bk->staging);
    if (rc != MB_OK) {
      rc = mb_error_context(rc, "gradient bucket %d staging", k);
      goto fail;
    }
    b->staging_bytes += in->bytes;
  }
  free(order);
  free(pos);
  reset_step(b);
  *out = b;
  return MB_OK;
fail:
  free(order);
  free(pos);
  mb_buckets_destroy(b);
  return rc;
}

static int launch(mb_buckets *b, int k) {
  bucket *bk = &b->bk[k];
  mb_bucket_info *in = &bk->info;
  in->t_start = mb_time_now();
  int rc;
  if (in->contiguous)
    rc = mb_comm_iallreduce(b->comm, b->grads + in->offset * b->esize, b->grads + in->offset * b->esize, in->span,
                            b->dtype, b->op, bk->label, &bk->req);
  else
    rc = mb_comm_iallreduce_segments(b->comm, bk->segs, in->num_segments, bk->staging, b->dtype, b->op, bk->label,
                                     &bk->req);
  if (rc != MB_OK)
    return mb_error_context(rc, "step %d: starting the all-reduce of gradient bucket %d", b->step, k);
  bk->launched = 1;
  return MB_OK;
}

static void note_finished(mb_buckets *b, int k) {
  bucket *bk = &b->bk[k];
  bk->finished = 1;
  bk->info.t_end = mb_time_now();
  mb_timeline_add(b->tl, MB_TRACK_COMM, "allreduce", bk->label, bk->info.t_start, bk->info.t_end,
                  (int64_t)bk->info.bytes);
}

/* Test the buckets in flight: drives MPI progress and timestamps completion. */
static int poll_inflight(mb_buckets *b) {
  for (int k = 0; k < b->next_launch; k++) {
    bucket *bk = &b->bk[k];
    if (!bk->req)
      continue;
    int done = 0;
    int rc = mb_comm_test(&bk->req, &done);
    if (rc != MB_OK)
      return mb_error_context(rc, "step %d: gradient bucket %d", b->step, k);
    if (done)
      note_finished(b, k);
  }
  return MB_OK;
}

static int check_idle(mb_buckets *b, const char *what) {
  for (int k = 0; k < b->nbuckets; k++)
    if (b->bk[k].req)
      return MB_ERR(MB_EINVAL, "%s: gradient bucket %d of step %d is still in flight (call mb_buckets_wait_all first)",
                    what, k, b->step);
  return MB_OK;
}

static void reset_step(mb_buckets *b) {
  memset(b->ready, 0, (size_t)b->nparams);
  for (int k = 0; k < b->nbuckets; k++) {
    b->bk[k].pending = b->bk[k].info.num_params;
    b->bk[k].launched = b->bk[k].finished = 0;
  }
  b->next_launch = 0;
  b->nready = 0;
}

int mb_buckets_begin_step(mb_buckets *b, int sync) {
  MB_TRY(check_idle(b, "begin step"));
  reset_step(b);
  b->sync = sync ? 1 : 0;
  b->step++;
  b->step_open = 1;
  if (b->tl)
    mb_timeline_set_step(b->tl, b->step);
  return MB_OK;
}

int mb_buckets_grad_ready(mb_buckets *b, int i) {
  if (i < 0 || i >= b->nparams)
    return MB_ERR(MB_EINVAL, "grad_ready: parameter index %d is not in [0, %d)", i, b->nparams);
  if (!b->step_open)
    MB_TRY(mb_buckets_begin_step(b, 1)); /* a step begins at its first gradient */
  if (b->ready[i])
    return MB_ERR(MB_EINVAL,
                  "grad_ready: parameter %d '%s' reported twice in step %d (a gradient is final once; "
                  "call mb_buckets_begin_step between steps)",
                  i, b->names[i], b->step);
  double now = mb_time_now();
  b->ready[i] = 1;
  if (b->nready++ == 0)
    b->t_first_ready = now;
  b->t_last_ready = now;
  mb_timeline_add(b->tl, MB_TRACK_COMPUTE, "grad_ready", b->names[i], now, now, i);
  int k = b->bucket_of[i];
  bucket *bk = &b->bk[k];
  if (--bk->pending == 0)
    bk->info.t_ready = now;
  if (!b->sync)
    return MB_OK;
  while (b->next_launch < b->nbuckets && b->bk[b->next_launch].pending == 0) {
    MB_TRY(launch(b, b->next_launch));
    b->next_launch++;
  }
  return poll_inflight(b);
}

static int missing_params(mb_buckets *b, int k) {
  bucket *bk = &b->bk[k];
  char list[512];
  size_t n = 0;
  int shown = 0, missing = 0;
  list[0] = 0;
  for (int i = bk->info.first; i < bk->info.first + bk->info.num_params; i++) {
    if (b->ready[i])
      continue;
    missing++;
    if (shown < 4 && n < sizeof list) {
      n += (size_t)snprintf(list + n, sizeof list - n, "%s'%s'", shown ? ", " : "", b->names[i]);
      shown++;
    }
  }
  if (missing == 0) /* complete, but an earlier bucket is not */
    return MB_ERR(MB_EINVAL, "step %d: gradient bucket %d is complete but waits for an earlier incomplete bucket",
                  b->step, k);
  return MB_ERR(MB_EINVAL,
                "step %d: gradient bucket %d never started: %d of its parameters were never reported ready (%s%s); "
                "every listed parameter must get a gradient each step",
                b->step, k, missing, list, missing > shown ? ", ..." : "");
}

int mb_buckets_wait_bucket(mb_buckets *b, int k) {
  if (k < 0 || k >= b->nbuckets)
    return MB_ERR(MB_EINVAL, "wait: bucket %d is not in [0, %d)", k, b->nbuckets);
  bucket *bk = &b->bk[k];
  if (!b->sync || bk->finished)
    return MB_OK;
  if (!bk->launched)
    return missing_params(b, k);
  double t0 = mb_time_now();
  int rc = mb_comm_wait(&bk->req, 0);
  if (rc != MB_OK)
    return mb_error_context(rc, "step %d: waiting for gradient bucket %d", b->step, k);
  note_finished(b, k);
  mb_timeline_add(b->tl, MB_TRACK_WAIT, "wait", bk->label, t0, bk->info.t_end, k);
  return MB_OK;
}

int mb_buckets_wait_all(mb_buckets *b) {
  if (b->sync && b->step_open) {
    /* Report a never-started bucket before blocking on the others. */
    for (int k = 0; k < b->nbuckets; k++)
      if (!b->bk[k].launched)
        return missing_params(b, k);
    for (int k = 0; k < b->nbuckets; k++)
      MB_TRY(mb_buckets_wait_bucket(b, k));
    MB_TRY(mb_comm_sync(b->comm));
  }
  b->step_open = 0;
  return MB_OK;
}

int mb_buckets_overlap(const mb_buckets *b, mb_overlap_stats *out) {
  memset(out, 0, sizeof *out);
  out->backward_begin = b->t_first_ready;
  out->backward_end = b->t_last_ready;
  out->buckets = b->nbuckets;
  double last_end = 0;
  for (int k = 0; k < b->nbuckets; k++) {
    const mb_bucket_info *in = &b->bk[k].info;
    if (!b->bk[k].finished)
      return MB_ERR(MB_EINVAL, "overlap: bucket %d of step %d has not finished", k, b->step);
    double d = in->t_end - in->t_start;
    out->comm_total += d;
    double s = in->t_start > out->backward_begin ? in->t_start : out->backward_begin;
    double e = in->t_end < out->backward_end ? in->t_end : out->backward_end;
    if (e > s)
      out->comm_hidden += e - s;
    if (in->t_start < out->backward_end)
      out->buckets_started_before_end++;
    if (in->t_end > last_end)
      last_end = in->t_end;
  }
  out->hidden_fraction = out->comm_total > 0 ? out->comm_hidden / out->comm_total : 0;
  out->exposed = last_end > out->backward_end ? last_end - out->backward_end : 0;
  return MB_OK;
}
