/* dist.c: launcher detection, MPI/NCCL bootstrap, device choice, and the
 * job-wide abort (dist.h). */
#include "distributed/dist.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "distributed/comm_impl.h"
#include "distributed/watchdog.h"
#include "mambert_build_config.h"
#include "runtime/log.h"

#if MAMBERT_HAVE_MPI
#include <mpi.h>
#endif
#if MAMBERT_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

struct mb_dist {
  mb_dist_info info;
  mb_comm *host; /* MPI or LOCAL, host memory */
  mb_comm *data; /* NCCL, MPI or LOCAL: the gradient communicator */
};

static mb_dist *g_dist;
static atomic_int g_aborting;
static _Atomic(mb_dist_abort_hook) g_abort_hook;
static void *_Atomic g_abort_hook_arg;

void mb_dist_set_abort_hook(mb_dist_abort_hook fn, void *arg) {
  atomic_store(&g_abort_hook_arg, arg);
  atomic_store(&g_abort_hook, fn);
}

const char *mb_launcher_name(mb_launcher l) {
  switch (l) {
  case MB_LAUNCH_NONE: return "none";
  case MB_LAUNCH_MPIRUN: return "mpirun";
  case MB_LAUNCH_SRUN: return "srun";
  case MB_LAUNCH_MPI: return "mpi";
  }
  return "?";
}

mb_dist *mb_dist_current(void) { return g_dist; }
const mb_dist_info *mb_dist_get_info(const mb_dist *d) { return &d->info; }
mb_comm *mb_dist_comm(mb_dist *d) { return d->data; }
mb_comm *mb_dist_host_comm(mb_dist *d) { return d->host; }

/* ---- environment ----------------------------------------------------------- */

/* -1 when absent; MB_EINVAL when present but not a non-negative int. */
static int env_int(mb_getenv_fn get, void *ctx, const char *name, int *out) {
  *out = -1;
  const char *s = get(ctx, name);
  if (!s)
    return MB_OK;
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < 0 || v > INT_MAX)
    return MB_ERR(MB_EINVAL, "environment: %s='%s' is not a non-negative integer", name, s);
  *out = (int)v;
  return MB_OK;
}

/* SLURM_STEP_TASKS_PER_NODE: "8(x2),4" = nodes 0,1 run 8 tasks, node 2 runs 4. */
static int slurm_tasks_on_node(const char *spec, int node, int *out) {
  *out = -1;
  int at = 0;
  const char *p = spec;
  while (*p) {
    char *end;
    long n = strtol(p, &end, 10);
    if (end == p || n <= 0)
      return MB_ERR(MB_EINVAL, "environment: SLURM_STEP_TASKS_PER_NODE='%s': expected a list like 8(x2),4", spec);
    long rep = 1;
    p = end;
    if (p[0] == '(' && p[1] == 'x') {
      rep = strtol(p + 2, &end, 10);
      if (end == p + 2 || *end != ')' || rep <= 0)
        return MB_ERR(MB_EINVAL, "environment: SLURM_STEP_TASKS_PER_NODE='%s': bad repeat", spec);
      p = end + 1;
    }
    if (*p && *p != ',')
      return MB_ERR(MB_EINVAL, "environment: SLURM_STEP_TASKS_PER_NODE='%s': unexpected '%c'", spec, *p);
    if (node >= at && node < at + rep) {
      *out = (int)n;
      return MB_OK;
    }
    at += (int)rep;
    if (*p == ',')
      p++;
  }
  return MB_OK; /* node not listed: unknown */
}

static const char *real_getenv(void *ctx, const char *name);

int mb_dist_detect_launch(mb_getenv_fn get, void *ctx, mb_launch_env *out) {
  if (!get)
    get = real_getenv;
  mb_launch_env e = {MB_LAUNCH_NONE, 0, 1, 0, 1, 0, 1};
  int rank, size, lrank, lsize, node, nnodes;
  if (get(ctx, "OMPI_COMM_WORLD_SIZE")) {
    MB_TRY(env_int(get, ctx, "OMPI_COMM_WORLD_RANK", &rank));
    MB_TRY(env_int(get, ctx, "OMPI_COMM_WORLD_SIZE", &size));
    MB_TRY(env_int(get, ctx, "OMPI_COMM_WORLD_LOCAL_RANK", &lrank));
    MB_TRY(env_int(get, ctx, "OMPI_COMM_WORLD_LOCAL_SIZE", &lsize));
    e.launcher = MB_LAUNCH_MPIRUN;
    e.node_index = e.num_nodes = -1;
  } else if (get(ctx, "SLURM_PROCID") && get(ctx, "SLURM_STEP_NUM_TASKS")) {
    /* srun sets the SLURM_STEP_* variables; the batch script itself has
     * SLURM_PROCID=0 and SLURM_NTASKS of the allocation but no step. */
    MB_TRY(env_int(get, ctx, "SLURM_PROCID", &rank));
    MB_TRY(env_int(get, ctx, "SLURM_STEP_NUM_TASKS", &size));
    MB_TRY(env_int(get, ctx, "SLURM_LOCALID", &lrank));
    MB_TRY(env_int(get, ctx, "SLURM_NODEID", &node));
    MB_TRY(env_int(get, ctx, "SLURM_STEP_NUM_NODES", &nnodes));
    lsize = -1;
    const char *tpn = get(ctx, "SLURM_STEP_TASKS_PER_NODE");
    if (tpn && node >= 0)
      MB_TRY(slurm_tasks_on_node(tpn, node, &lsize));
    e.launcher = MB_LAUNCH_SRUN;
    e.node_index = node;
    e.num_nodes = nnodes;
  } else if (get(ctx, "PMI_RANK") && get(ctx, "PMI_SIZE")) {
    MB_TRY(env_int(get, ctx, "PMI_RANK", &rank));
    MB_TRY(env_int(get, ctx, "PMI_SIZE", &size));
    MB_TRY(env_int(get, ctx, "MPI_LOCALRANKID", &lrank));
    MB_TRY(env_int(get, ctx, "MPI_LOCALNRANKS", &lsize));
    e.launcher = MB_LAUNCH_MPI;
    e.node_index = e.num_nodes = -1;
  } else {
    *out = e;
    return MB_OK;
  }
  if (size < 1)
    return MB_ERR(MB_EINVAL, "environment (%s): world size %d: expected at least 1", mb_launcher_name(e.launcher),
                  size);
  if (rank < 0 || rank >= size)
    return MB_ERR(MB_EINVAL, "environment (%s): rank %d is not in [0, %d)", mb_launcher_name(e.launcher), rank,
                  size);
  if (lrank >= 0 && lsize >= 0 && lrank >= lsize)
    return MB_ERR(MB_EINVAL, "environment (%s): local rank %d is not in [0, %d)", mb_launcher_name(e.launcher),
                  lrank, lsize);
  e.rank = rank;
  e.world_size = size;
  e.local_rank = lrank;
  e.local_size = lsize;
  *out = e;
  return MB_OK;
}

int mb_parse_duration(const char *s, double *seconds) {
  if (!s || !*s)
    return MB_ERR(MB_EINVAL, "duration: empty; expected e.g. 60, 60s, 2m");
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || !(v > 0))
    return MB_ERR(MB_EINVAL, "duration '%s': expected a positive number with an optional unit (ms, s, m, h)", s);
  double mul = 1;
  if (!strcmp(end, "") || !strcmp(end, "s"))
    mul = 1;
  else if (!strcmp(end, "ms"))
    mul = 1e-3;
  else if (!strcmp(end, "m") || !strcmp(end, "min"))
    mul = 60;
  else if (!strcmp(end, "h"))
    mul = 3600;
  else
    return MB_ERR(MB_EINVAL, "duration '%s': unknown unit '%s' (expected ms, s, m or h)", s, end);
  *seconds = v * mul;
  return MB_OK;
}

static const char *real_getenv(void *ctx, const char *name) {
  (void)ctx;
  return getenv(name);
}

/* ---- abort ----------------------------------------------------------------- */

static _Noreturn void abort_job(int code, const char *reason) {
  if (atomic_exchange(&g_aborting, 1)) {
    /* Another thread is already ending the job; give it time, then go. */
    sleep(30);
    _exit(MB_DIST_EXIT_ABORT);
  }
  (void)code;
  const mb_dist *d = g_dist;
  if (d) {
    char who[32];
    int n = snprintf(who, sizeof who, "rank %d/%d", d->info.rank, d->info.world_size);
    if (!strncmp(reason, who, (size_t)n)) /* the reason already names the rank */
      mb_log(MB_LOG_ERROR, "%s (on %s)", reason, d->info.hostname);
    else
      mb_log(MB_LOG_ERROR, "%s on %s: %s", who, d->info.hostname, reason);
  } else
    mb_log(MB_LOG_ERROR, "%s", reason);
  mb_log(MB_LOG_ERROR, "ending the job (exit status %d)", MB_DIST_EXIT_ABORT);
  fflush(NULL);
  mb_dist_abort_hook hook = atomic_load(&g_abort_hook);
  if (hook)
    hook(atomic_load(&g_abort_hook_arg), reason);
  if (d) {
    /* NCCL: ncclCommAbort frees the GPU of kernels waiting on dead peers. */
    if (d->data && d->data->ops->abort)
      d->data->ops->abort(d->data);
    if (d->host && d->host != d->data && d->host->ops->abort)
      d->host->ops->abort(d->host);
  }
#if MAMBERT_HAVE_MPI
  int inited = 0, finalized = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&finalized);
  if (inited && !finalized) {
    /* If MPI_Abort itself cannot reach the launcher, SIGALRM ends us. */
    alarm(20);
    MPI_Abort(MPI_COMM_WORLD, MB_DIST_EXIT_ABORT);
  }
#endif
  _exit(MB_DIST_EXIT_ABORT);
}

_Noreturn void mb_dist_abort(int code, const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  abort_job(code, msg);
}

_Noreturn void mb_dist_abort_error(int code, const char *what) {
  const char *m = mb_error_message();
  mb_dist_abort(code, "%s: %s", what ? what : "error", m[0] ? m : mb_status_name(code));
}

static void watchdog_abort(int code, const char *msg) { abort_job(code, msg); }

/* ---- init ------------------------------------------------------------------ */

#if MAMBERT_HAVE_MPI
static int mpi_err(int rc, const char *call, int rank) {
  char s[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, s, &len) != MPI_SUCCESS)
    snprintf(s, sizeof s, "MPI error code %d", rc);
  return MB_ERR(MB_EDIST, "rank %d: %s failed: %s", rank, call, s);
}

static int mpi_bootstrap(const mb_launch_env *env, mb_dist_info *info, double timeout) {
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited) {
    int w = mb_watch_begin("MPI_Init_thread (the launcher or a peer did not answer)", timeout, NULL, NULL);
    int provided = 0;
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided);
    mb_watch_end(w);
    if (rc != MPI_SUCCESS)
      return MB_ERR(MB_EDIST, "rank %d (from %s): MPI_Init_thread failed with code %d", env->rank,
                    mb_launcher_name(env->launcher), rc);
    info->mpi_initialized = 1;
    info->mpi_thread_level = provided;
  } else {
    MPI_Query_thread(&info->mpi_thread_level);
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &info->rank);
  MPI_Comm_size(MPI_COMM_WORLD, &info->world_size);
  if (info->world_size != env->world_size) {
    if (env->launcher == MB_LAUNCH_SRUN)
      return MB_ERR(MB_EDIST,
                    "srun started %d tasks but MPI sees a world of %d (task %d): MPI did not wire up through "
                    "SLURM; launch with srun --mpi=pmix (see srun --mpi=list) and an MPI built with PMIx",
                    env->world_size, info->world_size, env->rank);
    return MB_ERR(MB_EDIST, "%s says %d ranks but MPI sees a world of %d (rank %d): mixed MPI installations?",
                  mb_launcher_name(env->launcher), env->world_size, info->world_size, env->rank);
  }
  if (info->rank != env->rank)
    MB_WARN("rank %d: the launcher says rank %d; using MPI's numbering", info->rank, env->rank);

  int w = mb_watch_begin("the bootstrap's node discovery (MPI_Comm_split_type)", timeout, NULL, NULL);
  MPI_Comm node;
  int rc = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, info->rank, MPI_INFO_NULL, &node);
  if (rc != MPI_SUCCESS) {
    mb_watch_end(w);
    return mpi_err(rc, "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)", info->rank);
  }
  MPI_Comm_set_errhandler(node, MPI_ERRORS_RETURN);
  MPI_Comm_rank(node, &info->local_rank);
  MPI_Comm_size(node, &info->local_size);
  /* Node index: the number of node leaders (local rank 0) before ours. */
  int leader = info->local_rank == 0, before = 0;
  rc = MPI_Exscan(&leader, &before, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rc == MPI_SUCCESS) {
    if (info->rank == 0)
      before = 0; /* MPI_Exscan leaves rank 0's result undefined */
    rc = MPI_Bcast(&before, 1, MPI_INT, 0, node);
  }
  if (rc == MPI_SUCCESS)
    rc = MPI_Allreduce(&leader, &info->num_nodes, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Comm_free(&node);
  mb_watch_end(w);
  if (rc != MPI_SUCCESS)
    return mpi_err(rc, "node discovery", info->rank);
  info->node_index = before;
  if (env->local_rank >= 0 && env->local_rank != info->local_rank)
    MB_WARN("rank %d: the launcher says local rank %d, the shared-memory split says %d; using the split",
            info->rank, env->local_rank, info->local_rank);
  return MB_OK;
}
#endif

static int pick_device(mb_dist_info *info) {
#if MAMBERT_HAVE_CUDA
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  const char *vis = getenv("CUDA_VISIBLE_DEVICES");
  if (e != cudaSuccess || count == 0)
    return MB_ERR(MB_EDEVICE, "rank %d on %s: no CUDA device visible (%s; CUDA_VISIBLE_DEVICES=%s)", info->rank,
                  info->hostname, e != cudaSuccess ? cudaGetErrorString(e) : "0 devices", vis ? vis : "unset");
  if (info->local_size <= count)
    info->device = info->local_rank;
  else if (count == 1)
    info->device = 0; /* each rank was given its own GPU (srun --gpus-per-task=1) */
  else
    return MB_ERR(MB_EDEVICE,
                  "rank %d on %s: %d ranks on this node but %d GPUs visible (CUDA_VISIBLE_DEVICES=%s): run one "
                  "rank per GPU",
                  info->rank, info->hostname, info->local_size, count, vis ? vis : "unset");
  e = cudaSetDevice(info->device);
  if (e != cudaSuccess)
    return MB_ERR(MB_EDEVICE, "rank %d on %s: cudaSetDevice(%d): %s", info->rank, info->hostname, info->device,
                  cudaGetErrorString(e));
  return MB_OK;
#else
  return MB_ERR(MB_EUNSUPPORTED, "rank %d: GPU training was asked for but this build has no CUDA", info->rank);
#endif
}

static void dist_free(mb_dist *d) {
  if (!d)
    return;
  if (d->data && d->data != d->host)
    mb_comm_destroy(d->data);
  if (d->host)
    mb_comm_destroy(d->host);
  free(d);
}

static int make_comms(mb_dist *d, const mb_dist_options *o) {
  mb_dist_info *info = &d->info;
#if MAMBERT_HAVE_MPI
  if (info->mpi_initialized || info->launcher != MB_LAUNCH_NONE) {
    MPI_Comm world = MPI_COMM_WORLD;
    MB_TRY(mb_comm_mpi_create(&world, &d->host));
  }
#endif
  if (!d->host)
    MB_TRY(mb_comm_local_create(0, &d->host));

  mb_comm_backend b = o->backend;
  if (b == MB_COMM_AUTO) {
    if (o->use_cuda)
      b = info->world_size > 1 ? MB_COMM_NCCL : MB_COMM_LOCAL;
    else
      b = d->host->backend;
  }
  switch (b) {
  case MB_COMM_LOCAL:
    if (info->world_size > 1)
      return MB_ERR(MB_EINVAL, "rank %d: the local backend serves one rank, the world has %d", info->rank,
                    info->world_size);
    MB_TRY(mb_comm_local_create(o->use_cuda, &d->data));
    break;
  case MB_COMM_MPI:
    if (o->use_cuda)
      return MB_ERR(MB_EUNSUPPORTED, "rank %d: the MPI backend works on host memory; GPU training uses NCCL",
                    info->rank);
    if (d->host->backend != MB_COMM_MPI)
      return MB_ERR(MB_EUNSUPPORTED, "rank %d: the MPI backend needs a launch by mpirun or srun%s", info->rank,
                    MAMBERT_HAVE_MPI ? "" : " and a build with MPI");
#if MAMBERT_HAVE_MPI
    {
      /* Its own duplicate: gradient traffic never interleaves with the
       * host communicator's (metrics, flags) in MPI's ordering. */
      MPI_Comm world = MPI_COMM_WORLD;
      MB_TRY(mb_comm_mpi_create(&world, &d->data));
    }
#endif
    break;
  case MB_COMM_NCCL:
    if (!o->use_cuda)
      return MB_ERR(MB_EINVAL, "rank %d: the NCCL backend needs use_cuda", info->rank);
#if MAMBERT_HAVE_NCCL
    MB_TRY(mb_comm_nccl_create(d->host, info->device, d->host->timeout_s, &d->data));
#else
    return MB_ERR(MB_EUNSUPPORTED, "rank %d: multi-GPU training needs NCCL, and this build has none", info->rank);
#endif
    break;
  case MB_COMM_AUTO:
    break;
  }
  return MB_OK;
}

int mb_dist_init(const mb_dist_options *opt, mb_dist **out) {
  *out = NULL;
  mb_dist_options o = {0};
  if (opt)
    o = *opt;
  if (g_dist)
    return MB_ERR(MB_EINVAL, "distributed: already initialised in this process");

  double timeout = o.timeout_s;
  if (timeout <= 0) {
    const char *s = getenv("MAMBERT_COLLECTIVE_TIMEOUT");
    timeout = MB_DIST_DEFAULT_TIMEOUT_S;
    if (s && *s) {
      int rc = mb_parse_duration(s, &timeout);
      if (rc != MB_OK)
        return mb_error_context(rc, "MAMBERT_COLLECTIVE_TIMEOUT");
    }
  }

  mb_launch_env env;
  MB_TRY(mb_dist_detect_launch(NULL, NULL, &env));

  mb_dist *d = calloc(1, sizeof *d);
  if (!d)
    return MB_ERR(MB_ENOMEM, "no memory for the distributed state");
  mb_dist_info *info = &d->info;
  info->launcher = env.launcher;
  info->rank = 0;
  info->world_size = 1;
  info->local_rank = 0;
  info->local_size = 1;
  info->node_index = 0;
  info->num_nodes = 1;
  info->device = -1;
  info->timeout_s = timeout;
  if (gethostname(info->hostname, sizeof info->hostname) != 0)
    snprintf(info->hostname, sizeof info->hostname, "?");
  info->hostname[sizeof info->hostname - 1] = 0;

  int rc = MB_OK;
  if (!o.no_watchdog) {
    mb_watchdog_set_abort(watchdog_abort);
    rc = mb_watchdog_start(0.2);
  }
  /* g_dist is set early so an abort during bootstrap names the host. */
  g_dist = d;

  if (rc == MB_OK && env.launcher != MB_LAUNCH_NONE) {
#if MAMBERT_HAVE_MPI
    rc = mpi_bootstrap(&env, info, timeout);
#else
    if (env.world_size > 1)
      rc = MB_ERR(MB_EUNSUPPORTED,
                  "%s started %d ranks but this build has no MPI: install Open MPI (libopenmpi-dev) and rebuild",
                  mb_launcher_name(env.launcher), env.world_size);
#endif
  } else if (rc == MB_OK) {
    const char *nt = getenv("SLURM_NTASKS");
    if (nt && strcmp(nt, "1") != 0 && getenv("SLURM_JOB_ID"))
      MB_WARN("inside a SLURM job with SLURM_NTASKS=%s but not started by srun: running as one process "
              "(use srun, see slurm/)",
              nt);
  }
  mb_log_set_rank(info->rank, info->world_size);
  if (rc == MB_OK && o.use_cuda)
    rc = pick_device(info);
  if (rc == MB_OK)
    rc = make_comms(d, &o);
  if (rc == MB_OK) {
    d->host->timeout_s = timeout;
    d->data->timeout_s = timeout;
    d->host->return_on_timeout = o.return_on_timeout;
    d->data->return_on_timeout = o.return_on_timeout;
  }
  if (rc != MB_OK) {
    rc = mb_error_context(rc, "distributed init (launcher %s)", mb_launcher_name(env.launcher));
    int mpi_ours = info->mpi_initialized, world = info->world_size;
    dist_free(d);
    g_dist = NULL;
    mb_watchdog_stop();
#if MAMBERT_HAVE_MPI
    /* Each rank fails alone here; a world of one (the srun/PMIx mismatch)
     * can be finalised, a larger one is left for the caller's exit. */
    if (mpi_ours && world == 1)
      MPI_Finalize();
#else
    (void)mpi_ours;
    (void)world;
#endif
    return rc;
  }
  if (info->rank == 0)
    MB_INFO("distributed: %d rank%s on %d node%s (%s), %s backend%s, collective timeout %.0f s",
            info->world_size, info->world_size == 1 ? "" : "s", info->num_nodes, info->num_nodes == 1 ? "" : "s",
            mb_launcher_name(info->launcher), mb_comm_backend_name(d->data->backend),
            info->device >= 0 ? ", one GPU per rank" : "", timeout);
  *out = d;
  return MB_OK;
}

int mb_dist_finalize(mb_dist *d) {
  if (!d)
    return MB_OK;
  int rc = MB_OK;
  if (d->info.world_size > 1) {
    rc = mb_comm_sync(d->data);
    if (rc == MB_OK)
      rc = mb_comm_barrier(d->host);
    if (rc != MB_OK)
      rc = mb_error_context(rc, "distributed finalize");
  }
  int mpi_ours = d->info.mpi_initialized;
  double timeout = d->info.timeout_s;
  dist_free(d);
#if MAMBERT_HAVE_MPI
  if (mpi_ours) {
    int w = mb_watch_begin("MPI_Finalize", timeout, NULL, NULL);
    MPI_Finalize();
    mb_watch_end(w);
  }
#else
  (void)mpi_ours;
  (void)timeout;
#endif
  g_dist = NULL;
  mb_watchdog_stop();
  return rc;
}
