/* dist.h: process bootstrap for single- and multi-rank runs.
 *
 * mb_dist_init finds out how the process was launched and sets up the world:
 *   - mpirun (Open MPI: OMPI_COMM_WORLD_*), srun (SLURM_PROCID with
 *     SLURM_STEP_NUM_TASKS; MPI wires up through PMIx), or another MPI
 *     launcher (PMI_RANK/PMI_SIZE): MPI_Init_thread, rank and size from
 *     MPI_COMM_WORLD (checked against what the launcher said), local rank
 *     and local size from an MPI_COMM_TYPE_SHARED split, node index and count;
 *   - no launcher: world size 1 without touching MPI (works in builds with
 *     no MPI at all).
 * With use_cuda the device is the local rank (or 0 when each rank sees a
 * single GPU, as with srun --gpus-per-task=1), and the data communicator is
 * NCCL (unique id broadcast over MPI, ncclCommInitRank). Otherwise it is MPI
 * (host memory), or the local backend at world size 1.
 *
 * It also sets the log prefix (mb_log_set_rank), starts the watchdog thread
 * (watchdog.h), puts MPI_ERRORS_RETURN on the communicators, and reads the
 * collective deadline from MAMBERT_COLLECTIVE_TIMEOUT ("60", "60s", "2m").
 *
 * Failure policy: any rank that cannot go on calls mb_dist_abort, which logs
 * the reason with the rank, aborts NCCL communicators, then MPI_Abort()s the
 * job (mpirun/srun kill the other ranks), so every rank exits non-zero.
 *
 * How the training loop uses this layer (buckets.h, zero.h, watchdog.h):
 *
 *   mb_dist *d;  MB_TRY(mb_dist_init(&(mb_dist_options){.use_cuda = gpu}, &d));
 *   const mb_dist_info *w = mb_dist_get_info(d);   // rank, world_size, device
 *   mb_comm *c = mb_dist_comm(d);                   // gradients
 *   // rank 0's initial parameters to everyone:
 *   MB_TRY(mb_comm_broadcast(c, params, numel, MB_F32, 0));
 *   // the parameters in the order the backward finalises their gradients:
 *   MB_TRY(mb_buckets_create(c, grads, numel, plist, n, &opts, &b));
 *   for each step:
 *     int watch = mb_watch_begin("step 17", step_timeout, NULL, NULL);
 *     for each micro-batch m of M:
 *       MB_TRY(mb_buckets_begin_step(b, m == M - 1));  // sync on the last
 *       forward; backward, whose hook calls mb_buckets_grad_ready(b, i);
 *     MB_TRY(mb_buckets_wait_all(b));                // averaged gradients
 *     optimizer (or, with ZeRO-1 and no buckets: mb_zero_step(c, &L, ...));
 *     mb_watch_end(watch);
 *   on any error:  mb_dist_abort_error(rc, "step 17");
 *   at the end:    mb_buckets_destroy(b); MB_TRY(mb_dist_finalize(d));
 */
#ifndef MB_DISTRIBUTED_DIST_H
#define MB_DISTRIBUTED_DIST_H

#include "distributed/comm.h"
#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Exit status of a job ended by mb_dist_abort (what mpirun returns). */
#define MB_DIST_EXIT_ABORT 70
#define MB_DIST_DEFAULT_TIMEOUT_S 300.0

typedef enum {
  MB_LAUNCH_NONE = 0, /* a plain process */
  MB_LAUNCH_MPIRUN,   /* Open MPI's mpirun / mpiexec */
  MB_LAUNCH_SRUN,     /* SLURM's srun */
  MB_LAUNCH_MPI       /* another MPI launcher (MPICH hydra, PMI) */
} mb_launcher;

const char *mb_launcher_name(mb_launcher l);

/* What the launcher's environment says, before any MPI call. Fields the
 * launcher does not set are -1. */
typedef struct {
  mb_launcher launcher;
  int rank, world_size;
  int local_rank, local_size;
  int node_index, num_nodes;
} mb_launch_env;

/* getenv-like lookup, so tests can feed a fake environment. */
typedef const char *(*mb_getenv_fn)(void *ctx, const char *name);

/* Read the launcher variables (getenv_fn NULL: the process environment).
 * MB_EINVAL when a variable is present but not a number or out of range
 * (names the variable). A SLURM batch step (the sbatch script itself, no
 * srun) is reported as MB_LAUNCH_NONE. */
int mb_dist_detect_launch(mb_getenv_fn getenv_fn, void *ctx, mb_launch_env *out) MB_NODISCARD;

/* Parse a duration: "60", "60s", "1.5m", "2h", "500ms". */
int mb_parse_duration(const char *s, double *seconds) MB_NODISCARD;

typedef struct {
  mb_comm_backend backend; /* AUTO: NCCL with use_cuda, else MPI if launched, else LOCAL */
  int use_cuda;            /* pick a GPU per local rank; device buffers */
  double timeout_s;        /* <= 0: MAMBERT_COLLECTIVE_TIMEOUT, else 300 s */
  int return_on_timeout;   /* tests: a timed-out wait returns MB_EDIST instead of aborting */
  int no_watchdog;         /* tests: do not start the watchdog thread */
} mb_dist_options;

typedef struct {
  int rank, world_size;
  int local_rank, local_size;
  int node_index, num_nodes;
  mb_launcher launcher;
  int mpi_initialized; /* 1 when this process called MPI_Init_thread */
  int mpi_thread_level;
  int device;          /* CUDA ordinal, -1 on CPU */
  double timeout_s;
  char hostname[64];
} mb_dist_info;

typedef struct mb_dist mb_dist;

/* Set up the world (see the top of this file). opt may be NULL (defaults).
 * One mb_dist per process. Errors name the rank, the launcher and what is
 * inconsistent (e.g. srun without --mpi=pmix: every rank sees world size 1). */
int mb_dist_init(const mb_dist_options *opt, mb_dist **out) MB_NODISCARD;

const mb_dist_info *mb_dist_get_info(const mb_dist *d);
/* The data-parallel communicator: NCCL (device buffers) or MPI / LOCAL (host). */
mb_comm *mb_dist_comm(mb_dist *d);
/* Always on host memory (MPI or LOCAL): agree on scalars, metrics, flags. */
mb_comm *mb_dist_host_comm(mb_dist *d);

/* Collective: barrier, destroy communicators, stop the watchdog,
 * MPI_Finalize if we initialised MPI. Frees d. */
int mb_dist_finalize(mb_dist *d) MB_NODISCARD;

/* Log "rank r/N: <message>" at error level and end the whole job with a
 * non-zero status: NCCL communicators are aborted, then MPI_Abort (or _exit
 * without MPI). Safe from any thread; only the first caller acts. */
_Noreturn void mb_dist_abort(int code, const char *fmt, ...) MB_PRINTF(2, 3);
/* Same, with the current error message (mb_error_message) as the reason. */
_Noreturn void mb_dist_abort_error(int code, const char *what);
/* Called once, on the aborting thread, after the reason is logged and
 * before the job ends (rank 0 of a training run marks run.json failed): it
 * must not wait on other ranks. NULL removes it. */
typedef void (*mb_dist_abort_hook)(void *arg, const char *reason);
void mb_dist_set_abort_hook(mb_dist_abort_hook fn, void *arg);

/* The process's mb_dist (NULL before init / after finalize). */
mb_dist *mb_dist_current(void);

#ifdef __cplusplus
}
#endif
#endif
