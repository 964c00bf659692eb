/* cpu.h: the CPU backend (C + OpenMP + CBLAS): the reference for every op.
 *
 * mb_cpu_backend() returns the process-wide CPU backend and, the first time
 * it is called, registers every CPU kernel into the op table (thread-safe,
 * idempotent). There is no other way to get the backend, so a program can
 * never run on the CPU with its kernels unregistered. */
#ifndef MB_KERNELS_CPU_CPU_H
#define MB_KERNELS_CPU_CPU_H

#include "autograd/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

mb_backend *mb_cpu_backend(void);
/* Register the CPU kernels (called by mb_cpu_backend; safe to call again). */
void mb_kernels_cpu_init(void);

#ifdef __cplusplus
}
#endif
#endif
