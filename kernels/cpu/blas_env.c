/* blas_env.c: pick OpenBLAS's kernels for CPUs it does not know (blas_env.h). */
#include "kernels/cpu/blas_env.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/log.h"

extern char *openblas_get_corename(void);

const char *mb_blas_core_name(void) { return openblas_get_corename(); }

/* The generic fallbacks OpenBLAS uses for a CPU model it cannot place. */
static int is_fallback_core(const char *core) {
  static const char *generic[] = {"Prescott", "Core2", "Penryn", "Nehalem", "Sandybridge", "Dunnington"};
  for (size_t i = 0; i < sizeof generic / sizeof generic[0]; i++)
    if (strcmp(core, generic[i]) == 0)
      return 1;
  return 0;
}

void mb_blas_env_fix(int argc, char **argv) {
  (void)argc;
#if defined(__x86_64__) && defined(__GNUC__)
  if (getenv("OPENBLAS_CORETYPE"))
    return; /* the user's choice, or our own re-exec */
  const char *core = openblas_get_corename();
  if (!core || !is_fallback_core(core))
    return;
  const char *want = NULL;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl"))
    want = "SkylakeX";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    want = "Haswell";
  if (!want)
    return;
  setenv("OPENBLAS_CORETYPE", want, 1);
  MB_DEBUG("OpenBLAS chose its %s kernels for this CPU; restarting with OPENBLAS_CORETYPE=%s", core, want);
  execv("/proc/self/exe", argv);
  MB_WARN("OpenBLAS uses its slow %s kernels on this CPU and re-executing with OPENBLAS_CORETYPE=%s failed; "
          "set it yourself for 2-3x faster matmuls",
          core, want);
#else
  (void)argv;
#endif
}
