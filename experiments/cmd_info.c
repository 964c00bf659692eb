/* cmd_info.c: `mambert info`: what this binary was built with and what it sees
 * (build features, library versions, BLAS and OpenMP threads, GPUs). */
#include <hdf5.h>
#include <jansson.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <yaml.h>
#include <zlib.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "experiments/cli.h"
#include "kernels/cpu/blas_env.h"
#include "mambert_build_config.h"

#if MAMBERT_HAVE_MPI
#include <mpi.h>
#endif
#if MAMBERT_HAVE_CUDA
#include <cublasLt.h>
#include <cuda_runtime_api.h>
#endif
#if MAMBERT_HAVE_NCCL
#include <nccl.h>
#endif

/* OpenBLAS's own queries (declared in its cblas.h; repeated here so we do not
 * depend on which cblas.h the include path finds first). */
extern char *openblas_get_config(void);
extern int openblas_get_num_threads(void);

static void print_gpus(void) {
#if MAMBERT_HAVE_CUDA
  int runtime = 0, driver = 0, count = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  printf("  CUDA runtime     %d.%d (toolkit %s), cuBLASLt %zu\n", runtime / 1000, (runtime % 1000) / 10,
         MAMBERT_CUDA_VERSION, cublasLtGetVersion());
  if (driver)
    printf("  CUDA driver      %d.%d\n", driver / 1000, (driver % 1000) / 10);
  else
    printf("  CUDA driver      none\n");
#if MAMBERT_HAVE_NCCL
  int nccl = 0;
  ncclGetVersion(&nccl);
  printf("  NCCL             %d.%d.%d\n", nccl / 10000, (nccl % 10000) / 100, nccl % 100);
#endif
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    printf("GPUs: none (%s)\n", cudaGetErrorString(err));
    return;
  }
  printf("GPUs: %d\n", count);
  for (int i = 0; i < count; i++) {
    struct cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, i) == cudaSuccess)
      printf("  [%d] %s, sm_%d%d, %.1f GiB, %d SMs\n", i, p.name, p.major, p.minor,
             (double)p.totalGlobalMem / (1u << 30), p.multiProcessorCount);
  }
#else
  printf("GPUs: not built with CUDA\n");
#endif
}

extern const mb_command mb_cmd_info;

static int run_info(int argc, char **argv) {
  if (argc > 1)
    return mb_cli_usage_error(&mb_cmd_info, "unexpected argument '%s' (info takes none)", argv[1]);
  printf("mambert %s (%s, %s)\n", MAMBERT_VERSION, MAMBERT_BUILD_TYPE, MAMBERT_C_COMPILER);
  printf("Features:\n");
  printf("  CUDA backend     %s\n", MAMBERT_HAVE_CUDA ? "yes (sm " MAMBERT_CUDA_ARCHS ")" : "no");
  printf("  NCCL             %s\n", MAMBERT_HAVE_NCCL ? "yes" : "no");
  printf("  MPI              %s\n", MAMBERT_HAVE_MPI ? "yes" : "no");
  printf("Libraries:\n");
  printf("  OpenBLAS         %s (kernels: %s)\n", openblas_get_config(), mb_blas_core_name());
  unsigned hmaj, hmin, hrel;
  H5get_libversion(&hmaj, &hmin, &hrel);
  printf("  HDF5             %u.%u.%u\n", hmaj, hmin, hrel);
  printf("  zlib             %s\n", zlibVersion());
  printf("  libyaml          %s\n", yaml_get_version_string());
  printf("  jansson          %s\n", jansson_version_str());
  printf("  utf8proc         %s (Unicode %s)\n", utf8proc_version(), utf8proc_unicode_version());
  char pcre_ver[64] = "";
  pcre2_config(PCRE2_CONFIG_VERSION, pcre_ver);
  printf("  PCRE2            %s\n", pcre_ver);
#if MAMBERT_HAVE_MPI
  char mpi_ver[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(mpi_ver, &len);
  char *nl = strchr(mpi_ver, '\n');
  if (nl)
    *nl = 0;
  char *comma = strchr(mpi_ver, ',');
  if (comma)
    *comma = 0;
  printf("  MPI              %s\n", mpi_ver);
#endif
  printf("Threads:\n");
  printf("  OpenMP           %d (max threads; set OMP_NUM_THREADS to change)\n", omp_get_max_threads());
  const char *wait = getenv("OMP_WAIT_POLICY");
  printf("  OpenMP waiting   %s\n", wait ? wait : "default (spin, then sleep)");
  printf("  OpenBLAS         %d (%s)\n", openblas_get_num_threads(), mb_blas_threading());
  print_gpus();
  return MB_EXIT_OK;
}

const mb_command mb_cmd_info = {
    "info",
    "show build features, library versions, threads and GPUs",
    "Usage: mambert info\n\n"
    "Prints what this binary was built with (CUDA, NCCL, MPI), the versions of\n"
    "the libraries it links, the BLAS and OpenMP thread counts, and the GPUs it sees.\n",
    run_info,
};
