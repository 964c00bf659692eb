/* test_dist_bootstrap.c: launcher detection from (fake) environments, and
 * the world that mb_dist_init builds: run plain (world 1, no MPI) and under
 * mpirun -np 1/2/4 (rank, size, local rank/size, node count, the rank set). */
#include <stdlib.h>
#include <string.h>

#include "dist_test_util.h"
#include "distributed/comm.h"
#include "distributed/watchdog.h"
#include "mambert_build_config.h"

/* A fake environment: NULL-terminated "NAME=value" list. */
static const char *fake_getenv(void *ctx, const char *name) {
  const char *const *kv = ctx;
  size_t n = strlen(name);
  for (; *kv; kv++)
    if (!strncmp(*kv, name, n) && (*kv)[n] == '=')
      return *kv + n + 1;
  return NULL;
}

static void test_detect_none(void **state) {
  (void)state;
  const char *env[] = {"HOME=/root", NULL};
  mb_launch_env e;
  assert_int_equal(mb_dist_detect_launch(fake_getenv, env, &e), MB_OK);
  assert_int_equal(e.launcher, MB_LAUNCH_NONE);
  assert_int_equal(e.rank, 0);
  assert_int_equal(e.world_size, 1);
  assert_int_equal(e.local_rank, 0);
  assert_int_equal(e.local_size, 1);
}

static void test_detect_mpirun(void **state) {
  (void)state;
  const char *env[] = {"OMPI_COMM_WORLD_RANK=5", "OMPI_COMM_WORLD_SIZE=8", "OMPI_COMM_WORLD_LOCAL_RANK=1",
                       "OMPI_COMM_WORLD_LOCAL_SIZE=4", NULL};
  mb_launch_env e;
  assert_int_equal(mb_dist_detect_launch(fake_getenv, env, &e), MB_OK);
  assert_int_equal(e.launcher, MB_LAUNCH_MPIRUN);
  assert_int_equal(e.rank, 5);
  assert_int_equal(e.world_size, 8);
  assert_int_equal(e.local_rank, 1);
  assert_int_equal(e.local_size, 4);
}

static void test_detect_srun(void **state) {
  (void)state;
  /* Task 17 of 20 on the third node of "8(x2),4": local rank 1 of 4. */
  const char *env[] = {"SLURM_JOB_ID=99",        "SLURM_PROCID=17",     "SLURM_STEP_NUM_TASKS=20",
                       "SLURM_NTASKS=20",        "SLURM_LOCALID=1",     "SLURM_NODEID=2",
                       "SLURM_STEP_NUM_NODES=3", "SLURM_STEP_TASKS_PER_NODE=8(x2),4", NULL};
  mb_launch_env e;
  assert_int_equal(mb_dist_detect_launch(fake_getenv, env, &e), MB_OK);
  assert_int_equal(e.launcher, MB_LAUNCH_SRUN);
  assert_int_equal(e.rank, 17);
  assert_int_equal(e.world_size, 20);
  assert_int_equal(e.local_rank, 1);
  assert_int_equal(e.local_size, 4);
  assert_int_equal(e.node_index, 2);
  assert_int_equal(e.num_nodes, 3);
}

static void test_detect_sbatch_step_is_not_srun(void **state) {
  (void)state;
  /* The batch script itself: the allocation's task count, but no step. */
  const char *env[] = {"SLURM_JOB_ID=99", "SLURM_PROCID=0", "SLURM_NTASKS=16", "SLURM_LOCALID=0", NULL};
  mb_launch_env e;
  assert_int_equal(mb_dist_detect_launch(fake_getenv, env, &e), MB_OK);
  assert_int_equal(e.launcher, MB_LAUNCH_NONE);
  assert_int_equal(e.world_size, 1);
}

static void test_detect_bad_values(void **state) {
  (void)state;
  const char *env1[] = {"SLURM_PROCID=abc", "SLURM_STEP_NUM_TASKS=4", NULL};
  mb_launch_env e;
  assert_int_equal(mb_dist_detect_launch(fake_getenv, env1, &e), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "SLURM_PROCID='abc'"));
  const char *env2[] = {"OMPI_COMM_WORLD_RANK=4", "OMPI_COMM_WORLD_SIZE=4", NULL};
  assert_int_equal(mb_dist_detect_launch(fake_getenv, env2, &e), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "rank 4 is not in [0, 4)"));
  const char *env3[] = {"SLURM_PROCID=0", "SLURM_STEP_NUM_TASKS=4", "SLURM_NODEID=0",
                        "SLURM_STEP_TASKS_PER_NODE=4(y2)", NULL};
  assert_int_equal(mb_dist_detect_launch(fake_getenv, env3, &e), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "SLURM_STEP_TASKS_PER_NODE"));
  mb_error_clear();
}

static void test_detect_pmi(void **state) {
  (void)state;
  const char *env[] = {"PMI_RANK=2", "PMI_SIZE=3", "MPI_LOCALRANKID=0", "MPI_LOCALNRANKS=1", NULL};
  mb_launch_env e;
  assert_int_equal(mb_dist_detect_launch(fake_getenv, env, &e), MB_OK);
  assert_int_equal(e.launcher, MB_LAUNCH_MPI);
  assert_int_equal(e.rank, 2);
  assert_int_equal(e.world_size, 3);
}

static void test_parse_duration(void **state) {
  (void)state;
  double s = 0;
  assert_int_equal(mb_parse_duration("60", &s), MB_OK);
  assert_true(s == 60.0);
  assert_int_equal(mb_parse_duration("60s", &s), MB_OK);
  assert_true(s == 60.0);
  assert_int_equal(mb_parse_duration("1.5m", &s), MB_OK);
  assert_true(s == 90.0);
  assert_int_equal(mb_parse_duration("2h", &s), MB_OK);
  assert_true(s == 7200.0);
  assert_int_equal(mb_parse_duration("250ms", &s), MB_OK);
  assert_true(s > 0.2499 && s < 0.2501);
  assert_int_equal(mb_parse_duration("10 parsecs", &s), MB_EINVAL);
  assert_int_equal(mb_parse_duration("-3", &s), MB_EINVAL);
  assert_int_equal(mb_parse_duration("", &s), MB_EINVAL);
  mb_error_clear();
}

/* The world built by mb_dist_init in this very process. */
static void test_world(void **state) {
  (void)state;
  const mb_dist_info *info = mb_dist_get_info(g_test_dist);
  const char *ompi_size = getenv("OMPI_COMM_WORLD_SIZE");
  if (!ompi_size) {
    assert_int_equal(info->launcher, MB_LAUNCH_NONE);
    assert_int_equal(info->world_size, 1);
    assert_int_equal(info->mpi_initialized, 0);
    assert_int_equal(mb_comm_get_backend(mb_dist_comm(g_test_dist)), MB_COMM_LOCAL);
    assert_int_equal(mb_comm_get_backend(mb_dist_host_comm(g_test_dist)), MB_COMM_LOCAL);
  } else {
    assert_int_equal(info->launcher, MB_LAUNCH_MPIRUN);
    assert_int_equal(info->world_size, atoi(ompi_size));
    assert_int_equal(info->rank, atoi(getenv("OMPI_COMM_WORLD_RANK")));
    assert_int_equal(info->mpi_initialized, 1);
    assert_int_equal(mb_comm_get_backend(mb_dist_comm(g_test_dist)), MB_COMM_MPI);
    assert_int_equal(mb_comm_get_backend(mb_dist_host_comm(g_test_dist)), MB_COMM_MPI);
  }
  /* All ranks of these tests share one machine. */
  assert_int_equal(info->local_size, info->world_size);
  assert_int_equal(info->local_rank, info->rank);
  assert_int_equal(info->num_nodes, 1);
  assert_int_equal(info->node_index, 0);
  assert_int_equal(info->device, -1);
  assert_true(info->timeout_s == 30.0); /* MAMBERT_COLLECTIVE_TIMEOUT from ctest */
  assert_true(mb_watchdog_running());

  /* Every rank number appears exactly once. */
  int n = info->world_size;
  int *ranks = calloc((size_t)n, sizeof *ranks);
  int32_t mine[2] = {info->rank, info->local_rank};
  int32_t *all = calloc((size_t)n * 2, sizeof *all);
  assert_int_equal(mb_comm_allgather(mb_dist_host_comm(g_test_dist), mine, all, 2, MB_I32), MB_OK);
  for (int r = 0; r < n; r++) {
    assert_int_equal(all[2 * r], r);
    ranks[all[2 * r]]++;
  }
  for (int r = 0; r < n; r++)
    assert_int_equal(ranks[r], 1);
  free(ranks);
  free(all);
  assert_int_equal(mb_comm_size(mb_dist_comm(g_test_dist)), n);
  assert_int_equal(mb_comm_rank(mb_dist_comm(g_test_dist)), info->rank);
}

static void test_double_init_refused(void **state) {
  (void)state;
  mb_dist *d2 = NULL;
  assert_int_equal(mb_dist_init(NULL, &d2), MB_EINVAL);
  assert_null(d2);
  assert_ptr_equal(mb_dist_current(), g_test_dist);
  mb_error_clear();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_detect_none),       cmocka_unit_test(test_detect_mpirun),
      cmocka_unit_test(test_detect_srun),       cmocka_unit_test(test_detect_sbatch_step_is_not_srun),
      cmocka_unit_test(test_detect_bad_values), cmocka_unit_test(test_detect_pmi),
      cmocka_unit_test(test_parse_duration),    cmocka_unit_test(test_world),
      cmocka_unit_test(test_double_init_refused),
  };
  return DIST_TEST_MAIN("dist_bootstrap", tests, NULL);
}
