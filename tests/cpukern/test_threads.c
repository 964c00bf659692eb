/* test_threads.c (ctest: cpu_threads): how many threads each of several
 * ranks on one machine gets (mb_cpu_threads_per_rank), and that
 * mb_cpu_set_threads reaches both OpenMP and OpenBLAS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <omp.h>

#include "kernels/cpu/blas_env.h"

extern int openblas_get_num_threads(void);

static void test_per_rank(void **state) {
  (void)state;
  /* alone: every CPU it may use */
  assert_int_equal(mb_cpu_threads_per_rank(1, 16, 16), 16);
  assert_int_equal(mb_cpu_threads_per_rank(1, 4, 16), 4);
  /* 4 ranks that all see a 2-core machine (mpirun past 2 ranks): 1 each, not 2 */
  assert_int_equal(mb_cpu_threads_per_rank(4, 2, 2), 1);
  /* 4 ranks seeing all 64 CPUs: 16 each */
  assert_int_equal(mb_cpu_threads_per_rank(4, 64, 64), 16);
  /* bound to one socket of 32 out of 64 (two ranks per socket): 16 each */
  assert_int_equal(mb_cpu_threads_per_rank(4, 32, 64), 16);
  /* disjoint sets (srun --cpus-per-task=8, 4 tasks on 32 CPUs; bind-to core): keep them */
  assert_int_equal(mb_cpu_threads_per_rank(4, 8, 32), 8);
  assert_int_equal(mb_cpu_threads_per_rank(2, 1, 2), 1);
  /* nonsense counts do not give 0 threads */
  assert_int_equal(mb_cpu_threads_per_rank(8, 0, 4), 1);
  assert_int_equal(mb_cpu_threads_per_rank(3, 2, 0), 2);
}

static void test_set_threads(void **state) {
  (void)state;
  mb_cpu_set_threads(3);
  assert_int_equal(omp_get_max_threads(), 3);
  assert_int_equal(openblas_get_num_threads(), 3);
  mb_cpu_set_threads(1);
  assert_int_equal(omp_get_max_threads(), 1);
  assert_int_equal(openblas_get_num_threads(), 1);
  mb_cpu_set_threads(0); /* ignored */
  assert_int_equal(omp_get_max_threads(), 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_per_rank), cmocka_unit_test(test_set_threads)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
