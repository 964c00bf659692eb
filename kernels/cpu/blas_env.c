/* blas_env.c: pick OpenBLAS's kernels for CPUs it does not know, its threads'
 * waiting, and how many threads a process uses (blas_env.h). */
#include "kernels/cpu/blas_env.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/log.h"

extern char *openblas_get_corename(void);
extern int openblas_get_parallel(void);
extern int openblas_get_num_threads(void);
extern void openblas_set_num_threads(int num_threads);

const char *mb_blas_core_name(void) { return openblas_get_corename(); }

void mb_cpu_set_threads(int n) {
  if (n < 1)
    return;
  omp_set_num_threads(n);
  openblas_set_num_threads(n); /* the pthreads build keeps its own count; the OpenMP build follows either way */
}

int mb_cpu_threads_per_rank(int local_size, int cpus_mine, int cpus_online) {
  if (cpus_mine < 1)
    cpus_mine = 1;
  if (local_size <= 1 || cpus_online < 1 || (long)cpus_mine * local_size <= cpus_online)
    return cpus_mine; /* alone, or each rank has CPUs of its own */
  const int share = cpus_online / local_size;
  return share < 1 ? 1 : share < cpus_mine ? share : cpus_mine;
}

const char *mb_blas_threading(void) {
  switch (openblas_get_parallel()) {
  case 1: return "pthreads";
  case 2: return "OpenMP";
  default: return "serial";
  }
}

/* The generic fallbacks OpenBLAS uses for a CPU model it cannot place. */
static int is_fallback_core(const char *core) {
  static const char *generic[] = {"Prescott", "Core2", "Penryn", "Nehalem", "Sandybridge", "Dunnington"};
  for (size_t i = 0; i < sizeof generic / sizeof generic[0]; i++)
    if (strcmp(core, generic[i]) == 0)
      return 1;
  return 0;
}

/* OpenBLAS's own worker threads (its pthreads build, Debian's default) and
 * mambert's OpenMP threads share the cores: GNU OpenMP's idle workers spin
 * for ~300k iterations after every parallel region, right while the next
 * op's GEMM wants those cores, which measured 1.3-2.5x slower training
 * steps of the demo models on a busy 2-core machine (bench_cpu_train).
 * Sleeping workers (OMP_WAIT_POLICY=PASSIVE) give the cores back; a user's
 * OMP_WAIT_POLICY or GOMP_SPINCOUNT is always kept. */
static int want_passive_wait(void) {
  if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT"))
    return 0;
  return strcmp(mb_blas_threading(), "pthreads") == 0 && openblas_get_num_threads() > 1;
}

void mb_blas_env_fix(int argc, char **argv) {
  (void)argc;
  const char *want = NULL, *core = openblas_get_corename();
#if defined(__x86_64__) && defined(__GNUC__)
  if (!getenv("OPENBLAS_CORETYPE") && core && is_fallback_core(core)) { /* else the user's choice, or our re-exec */
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))
      want = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      want = "Haswell";
  }
#endif
  const int passive = want_passive_wait();
  if (!want && !passive)
    return;
  /* both are read when the libraries load, before main: a restart applies them */
  if (want) {
    setenv("OPENBLAS_CORETYPE", want, 1);
    MB_DEBUG("OpenBLAS chose its %s kernels for this CPU; restarting with OPENBLAS_CORETYPE=%s", core, want);
  }
  if (passive) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    MB_DEBUG("OpenBLAS runs its own threads beside OpenMP's; restarting with OMP_WAIT_POLICY=PASSIVE");
  }
  execv("/proc/self/exe", argv);
  if (want)
    MB_WARN("OpenBLAS uses its slow %s kernels on this CPU and re-executing with OPENBLAS_CORETYPE=%s failed; "
            "set it yourself for 2-3x faster matmuls",
            core, want);
  if (passive)
    MB_WARN("re-executing with OMP_WAIT_POLICY=PASSIVE failed; set it yourself: spinning OpenMP threads slow "
            "OpenBLAS's matmuls down");
}
