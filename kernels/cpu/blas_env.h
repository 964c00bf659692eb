/* blas_env.h: make OpenBLAS use the CPU's real GEMM kernels.
 *
 * OpenBLAS built with DYNAMIC_ARCH picks its kernels from a table of CPU
 * models when it loads. A model newer than the library (Debian 12's 0.3.21 on
 * Sapphire/Emerald Rapids, for one) falls back to the SSE3 "Prescott"
 * kernels, 2-3x slower on every matmul. The choice can only be changed
 * through OPENBLAS_CORETYPE before the library loads, so programs call
 * mb_blas_env_fix() first thing in main(): when OpenBLAS fell back while the
 * CPU has AVX-512 (or AVX2), it sets OPENBLAS_CORETYPE to SkylakeX (or
 * Haswell) and re-executes the program once. A user's own
 * OPENBLAS_CORETYPE is always respected. The same restart sets
 * OMP_WAIT_POLICY=PASSIVE when OpenBLAS runs its own threads (its pthreads
 * build) and the user set neither it nor GOMP_SPINCOUNT: OpenMP workers
 * spinning between ops would take the cores OpenBLAS's GEMMs need. */
#ifndef MB_KERNELS_CPU_BLAS_ENV_H
#define MB_KERNELS_CPU_BLAS_ENV_H

#ifdef __cplusplus
extern "C" {
#endif

/* Returns only if nothing needs changing or the re-exec failed (then the
 * program goes on with the slower kernels and a warning). */
void mb_blas_env_fix(int argc, char **argv);
/* The kernel family OpenBLAS is using ("SkylakeX", "Haswell", "Prescott"...). */
const char *mb_blas_core_name(void);
/* Threads for this process's CPU kernels (OpenMP) and OpenBLAS's GEMMs. */
void mb_cpu_set_threads(int n);

/* When local_size processes (ranks) share this machine: the threads each
 * should use so that together they fill its CPUs without oversubscribing
 * them. Ranks bound to disjoint CPU sets (srun --cpus-per-task, mpirun
 * --bind-to core) keep the CPUs they may run on; ranks that all see the
 * whole machine (mpirun's default past 2 ranks) get the online CPUs divided
 * among them, at least 1. cpus_mine and cpus_online are omp_get_num_procs()
 * and the machine's online CPUs (arguments, so tests can feed them). */
int mb_cpu_threads_per_rank(int local_size, int cpus_mine, int cpus_online);

/* How the loaded OpenBLAS runs its GEMMs in parallel: "OpenMP" (on the
 * kernels' own OpenMP pool, the build CMake prefers), "pthreads" (its own
 * threads) or "serial". */
const char *mb_blas_threading(void);

#ifdef __cplusplus
}
#endif
#endif
