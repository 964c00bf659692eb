/* dist_fault.c: a multi-rank program that fails on purpose, for
 * fault_test.sh, which asserts that every rank exits non-zero within a
 * bounded time and that the log says what happened. Modes:
 *   kill9     rank 1 SIGKILLs itself while the others are in all-reduces
 *   hang      rank 1 never joins a bucket all-reduce (sleeps); the others'
 *             deadline (MAMBERT_COLLECTIVE_TIMEOUT) must end the job
 *   error     rank 1 hits an error and calls mb_dist_abort while the
 *             others wait in a barrier
 *   watchdog  rank 0 gets stuck outside any collective (a sleep standing
 *             in for a hung CUDA sync) under an open watch; the watchdog
 *             thread must end the job
 * A run that returns normally exits 0, which the driver treats as failure.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "distributed/buckets.h"
#include "distributed/dist.h"
#include "distributed/watchdog.h"
#include "runtime/log.h"

static void die_init(void) {
  fprintf(stderr, "dist_fault: init failed: %s\n", mb_error_message());
  exit(2);
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  mb_dist *d;
  if (mb_dist_init(NULL, &d) != MB_OK)
    die_init();
  mb_comm *c = mb_dist_comm(d);
  int rank = mb_comm_rank(c), n = mb_comm_size(c);
  if (n < 2) {
    fprintf(stderr, "dist_fault: needs at least 2 ranks\n");
    return 2;
  }
  size_t count = 1u << 20;
  float *x = calloc(count, sizeof *x);
  /* A collective that works, so the failure happens mid-run. */
  if (mb_comm_allreduce(c, x, x, count, MB_F32, MB_REDUCE_SUM) != MB_OK)
    mb_dist_abort_error(MB_EDIST, "warm-up all-reduce");
  fprintf(stderr, "dist_fault: rank %d/%d ready (pid %d, mode %s)\n", rank, n, (int)getpid(), mode);

  if (!strcmp(mode, "kill9")) {
    if (rank == 1) {
      struct timespec ts = {0, 300 * 1000 * 1000};
      nanosleep(&ts, NULL); /* let the others get into the collective */
      raise(SIGKILL);
    }
    for (int i = 0; i < 1000000; i++)
      if (mb_comm_allreduce(c, x, x, count, MB_F32, MB_REDUCE_AVG) != MB_OK)
        mb_dist_abort_error(MB_EDIST, "all-reduce");
  } else if (!strcmp(mode, "hang")) {
    mb_grad_param p[2] = {{"encoder.weight", 0, count / 2}, {"embeddings.weight", count / 2, count / 2}};
    mb_buckets_options o = {.bucket_bytes = 1}; /* one bucket per parameter */
    mb_buckets *b;
    if (mb_buckets_create(c, x, count, p, 2, &o, &b) != MB_OK)
      mb_dist_abort_error(MB_EINVAL, "buckets");
    if (rank == 1) {
      sleep(300); /* never reports its gradients */
    } else {
      if (mb_buckets_grad_ready(b, 0) != MB_OK || mb_buckets_grad_ready(b, 1) != MB_OK ||
          mb_buckets_wait_all(b) != MB_OK)
        mb_dist_abort_error(MB_EDIST, "gradient all-reduce");
    }
  } else if (!strcmp(mode, "error")) {
    if (rank == 1) {
      int rc = MB_ERR(MB_EIO, "reading data/shard-0007.h5: checksum mismatch");
      rc = mb_error_context(rc, "step 3");
      mb_dist_abort_error(rc, "training");
    }
    if (mb_comm_barrier(mb_dist_host_comm(d)) != MB_OK)
      mb_dist_abort_error(MB_EDIST, "barrier");
  } else if (!strcmp(mode, "watchdog")) {
    if (rank == 0) {
      mb_watch_begin("rank 0: step 5 (forward + backward)", 2.0, NULL, NULL);
      sleep(300); /* stuck where no collective deadline can see it */
    }
    if (mb_comm_barrier(mb_dist_host_comm(d)) != MB_OK)
      mb_dist_abort_error(MB_EDIST, "barrier");
  } else {
    fprintf(stderr, "dist_fault: unknown mode '%s' (kill9, hang, error, watchdog)\n", mode);
    return 2;
  }
  free(x);
  if (mb_dist_finalize(d) != MB_OK)
    return 3;
  return 0;
}
