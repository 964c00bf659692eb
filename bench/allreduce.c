/* allreduce.c (bench_allreduce): what our communicator layer costs and what
 * bucketing buys, on whatever backend the launch gives (MPI on CPU here).
 *
 *   mpirun -np 2 build/bench_allreduce [--max-mb 25] [--json bench-allreduce.json]
 *           [--timeline trace.json] [--compute-ms 40]
 *
 * Table 1: all-reduce of one buffer through mb_comm_allreduce (average,
 *   non-blocking + polling wait with a deadline) against the peer, a plain
 *   blocking MPI_Allreduce on the same data; time and bus bandwidth
 *   (2(N-1)/N x bytes / time, the number nccl-tests reports). The last
 *   column is the MPI call our MPI backend makes, without our layer
 *   (MPI_Iallreduce into a scratch buffer, MPI_Test until done).
 * Table 2: one training step's gradient exchange, 24 MiB of gradients in 16
 *   parameters: (a) backward then one all-reduce of everything, (b) buckets
 *   started as gradients become ready during the backward. The "backward"
 *   is simulated compute (a busy loop, compute-ms in total) between the
 *   parameters' grad_ready calls. Reports step time, communication hidden.
 * Medians of 5 runs after a warm-up. Writes JSON; with --timeline, rank 0
 * writes the last bucketed step of every rank as one Chrome trace.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distributed/buckets.h"
#include "distributed/dist.h"
#include "distributed/timeline.h"
#include "distributed/watchdog.h"
#include "mambert_build_config.h"
#include "runtime/log.h"

#if MAMBERT_HAVE_MPI
#include <mpi.h>
#endif

#define REPS 5

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return v[n / 2];
}

/* Busy "compute" for `s` seconds (a sleep would free the core for MPI's
 * progress and flatter the overlap). */
static volatile double sink;
static void compute_for(double s) {
  double t0 = mb_time_now(), x = 1.0;
  while (mb_time_now() - t0 < s)
    for (int i = 0; i < 1000; i++)
      x = x * 1.0000001 + 1e-9;
  sink = x;
}

static void die(const char *what) { mb_dist_abort_error(mb_error_code() ? mb_error_code() : MB_EDIST, what); }

int main(int argc, char **argv) {
  double max_mb = 25, compute_ms = 40;
  const char *json_path = "bench-allreduce.json", *trace = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--max-mb") && i + 1 < argc)
      max_mb = atof(argv[++i]);
    else if (!strcmp(argv[i], "--json") && i + 1 < argc)
      json_path = argv[++i];
    else if (!strcmp(argv[i], "--timeline") && i + 1 < argc)
      trace = argv[++i];
    else if (!strcmp(argv[i], "--compute-ms") && i + 1 < argc)
      compute_ms = atof(argv[++i]);
    else {
      fprintf(stderr, "usage: bench_allreduce [--max-mb N] [--json PATH] [--timeline TRACE.json] [--compute-ms MS]\n");
      return 2;
    }
  }
  mb_dist *d;
  if (mb_dist_init(NULL, &d) != MB_OK) {
    fprintf(stderr, "bench_allreduce: %s\n", mb_error_message());
    return 1;
  }
  mb_comm *c = mb_dist_comm(d);
  int rank = mb_comm_rank(c), n = mb_comm_size(c);
  double bus = n > 1 ? 2.0 * (n - 1) / n : 1.0;
  FILE *js = NULL;
  if (rank == 0) {
    js = fopen(json_path, "w");
    if (!js)
      fprintf(stderr, "bench_allreduce: cannot write %s\n", json_path);
    else
      fprintf(js, "{\"ranks\": %d, \"backend\": \"%s\", \"allreduce\": [", n,
              mb_comm_backend_name(mb_comm_get_backend(c)));
    printf("all-reduce, %d ranks, %s backend (bus bandwidth = 2(N-1)/N x bytes / time)\n", n,
           mb_comm_backend_name(mb_comm_get_backend(c)));
    printf("%10s | %12s %10s | %12s %10s | %8s | %14s\n", "bytes", "mambert ms", "GB/s", "MPI ms", "GB/s", "ratio",
           "Iallreduce ms");
  }
#if MAMBERT_HAVE_MPI
  MPI_Comm peer = MPI_COMM_NULL;
  if (mb_comm_get_backend(c) == MB_COMM_MPI)
    MPI_Comm_dup(MPI_COMM_WORLD, &peer);
#endif
  size_t max_n = (size_t)(max_mb * (1 << 20)) / sizeof(float);
  float *buf = malloc((max_n ? max_n : 1) * sizeof *buf), *scratch = malloc((max_n ? max_n : 1) * sizeof *buf);
  for (size_t i = 0; i < max_n; i++)
    buf[i] = (float)(i % 7);
  int first = 1;
  for (size_t count = 16384; count <= max_n; count *= 4) {
    double ours[REPS], theirs[REPS], nb[REPS];
    for (int r = -1; r < REPS; r++) {
      if (mb_comm_barrier(c) != MB_OK)
        die("barrier");
      double t0 = mb_time_now();
      if (mb_comm_allreduce(c, buf, buf, count, MB_F32, MB_REDUCE_AVG) != MB_OK)
        die("all-reduce");
      double t1 = mb_time_now();
      if (r >= 0)
        ours[r] = t1 - t0;
      theirs[r < 0 ? 0 : r] = 0;
      nb[r < 0 ? 0 : r] = 0;
#if MAMBERT_HAVE_MPI
      if (peer != MPI_COMM_NULL) {
        MPI_Barrier(peer);
        t0 = mb_time_now();
        MPI_Allreduce(MPI_IN_PLACE, buf, (int)count, MPI_FLOAT, MPI_SUM, peer);
        t1 = mb_time_now();
        if (r >= 0)
          theirs[r] = t1 - t0;
        /* what our MPI backend calls, without our layer: out of place
         * into a scratch buffer, tested until done */
        MPI_Barrier(peer);
        t0 = mb_time_now();
        MPI_Request q;
        int flag = 0;
        MPI_Iallreduce(buf, scratch, (int)count, MPI_FLOAT, MPI_SUM, peer, &q);
        while (!flag)
          MPI_Test(&q, &flag, MPI_STATUS_IGNORE);
        t1 = mb_time_now();
        if (r >= 0)
          nb[r] = t1 - t0;
      }
#endif
    }
    double a = median(ours, REPS), b = median(theirs, REPS), q = median(nb, REPS);
    /* the mean over ranks of each rank's median */
    double ab[3] = {a, b, q};
    if (mb_comm_allreduce(mb_dist_host_comm(d), ab, ab, 3, MB_F64, MB_REDUCE_SUM) != MB_OK)
      die("gathering times");
    a = ab[0] / n;
    b = ab[1] / n;
    q = ab[2] / n;
    double bytes = (double)count * sizeof(float);
    if (rank == 0) {
      printf("%10.0f | %12.3f %10.2f | %12.3f %10.2f | %8.2f | %14.3f\n", bytes, a * 1e3, bus * bytes / a / 1e9,
             b * 1e3, b > 0 ? bus * bytes / b / 1e9 : 0, b > 0 ? a / b : 0, q * 1e3);
      if (js)
        fprintf(js, "%s{\"bytes\": %.0f, \"mambert_s\": %.6g, \"mpi_allreduce_s\": %.6g, \"mpi_iallreduce_s\": %.6g}",
                first ? "" : ", ", bytes, a, b, q);
    }
    first = 0;
  }

  /* ---- a step's gradient exchange: after the backward vs. overlapped ---- */
  enum { P = 16 };
  size_t per = (size_t)3 << 17; /* 1.5 MiB of f32 per parameter, 24 MiB total */
  size_t total = per * P;
  float *g = calloc(total, sizeof *g);
  mb_grad_param params[P];
  char names[P][24];
  for (int i = 0; i < P; i++) {
    snprintf(names[i], sizeof names[i], "layer%d.weight", P - 1 - i);
    params[i].name = names[i];
    params[i].offset = (size_t)(P - 1 - i) * per; /* forward layout, backward order */
    params[i].count = per;
  }
  mb_timeline *tl = NULL;
  if (mb_timeline_create(rank, 0, &tl) != MB_OK)
    die("timeline");
  mb_buckets_options o = {.bucket_bytes = 4 << 20, .timeline = tl};
  mb_buckets *b;
  if (mb_buckets_create(c, g, total, params, P, &o, &b) != MB_OK)
    die("buckets");
  double t_seq[REPS], t_ovl[REPS], hidden[REPS], comm[REPS];
  double slice = compute_ms * 1e-3 / P;
  for (int r = -1; r < REPS; r++) {
    if (mb_comm_barrier(c) != MB_OK)
      die("barrier");
    double t0 = mb_time_now();
    for (int i = 0; i < P; i++)
      compute_for(slice);
    if (mb_comm_allreduce(c, g, g, total, MB_F32, MB_REDUCE_AVG) != MB_OK)
      die("all-reduce");
    double t1 = mb_time_now();
    if (mb_comm_barrier(c) != MB_OK)
      die("barrier");
    mb_timeline_clear(tl);
    double t2 = mb_time_now();
    if (mb_buckets_begin_step(b, 1) != MB_OK)
      die("begin step");
    for (int i = 0; i < P; i++) {
      double s0 = mb_time_now();
      compute_for(slice);
      mb_timeline_add(tl, MB_TRACK_COMPUTE, "backward", names[i], s0, mb_time_now(), i);
      if (mb_buckets_grad_ready(b, i) != MB_OK)
        die("grad_ready");
    }
    if (mb_buckets_wait_all(b) != MB_OK)
      die("wait");
    double t3 = mb_time_now();
    if (r >= 0) {
      mb_overlap_stats st;
      if (mb_buckets_overlap(b, &st) != MB_OK)
        die("overlap");
      t_seq[r] = t1 - t0;
      t_ovl[r] = t3 - t2;
      hidden[r] = st.hidden_fraction;
      comm[r] = st.comm_total;
    }
  }
  double s = median(t_seq, REPS), v = median(t_ovl, REPS), h = median(hidden, REPS), cm = median(comm, REPS);
  if (rank == 0) {
    printf("\none step: %.0f MiB of gradients in %d parameters, %d buckets of 4 MiB, %.0f ms of simulated backward\n",
           total * 4.0 / (1 << 20), P, mb_buckets_count(b), compute_ms);
    printf("%-34s %10s\n", "", "step ms");
    printf("%-34s %10.2f\n", "backward, then one all-reduce", s * 1e3);
    printf("%-34s %10.2f\n", "bucketed, overlapping the backward", v * 1e3);
    printf("bucket all-reduces: %.2f ms in total, %.0f%% of it inside the backward (rank 0)\n", cm * 1e3, h * 100);
    if (js)
      fprintf(js, "], \"step\": {\"grad_bytes\": %zu, \"buckets\": %d, \"compute_ms\": %g, \"sequential_s\": %.6g, "
                  "\"overlapped_s\": %.6g, \"bucket_comm_s\": %.6g, \"hidden_fraction\": %.4f}}\n",
              total * 4, mb_buckets_count(b), compute_ms, s, v, cm, h);
  }
  if (js)
    fclose(js);
  if (trace && mb_timeline_write_chrome_all(tl, mb_dist_host_comm(d), trace) != MB_OK)
    mb_log_error_status(mb_error_code(), "timeline");
  mb_buckets_destroy(b);
  mb_timeline_destroy(tl);
  free(g);
  free(buf);
  free(scratch);
#if MAMBERT_HAVE_MPI
  if (peer != MPI_COMM_NULL)
    MPI_Comm_free(&peer);
#endif
  return mb_dist_finalize(d) == MB_OK ? 0 : 1;
}
