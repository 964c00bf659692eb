/* test_cuda_attention_probe.c (ctest: cuda_attention_probe; GPU): the
 * Hopper building blocks under the wgmma attention tilings, one at a time
 * (mb_cuda_attn_hopper_probe, kernels/cuda/attention_probe.cu): every wgmma
 * operand layout the kernels use, the register A fragment, TMA boxes with
 * the 128-byte swizzle and their mbarrier, e4m3 -- each product exact, or
 * the probe says which element went wrong. A step of its own in
 * tools/gpu_check.sh, before cuda_attention: if a wgmma tiling fails there
 * with errors of order 1, this says which layout was misread; a hang here
 * points at TMA or the mbarrier. Skipped (77) without an sm_90 GPU. */
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda/attention.h"
#include "tests/cuda/test_cuda_attention_util.h"

int main(void) {
  at_require_gpu("cuda_attention_probe");
  const size_t bytes = mb_cuda_attn_hopper_probe_workspace();
  void *ws = at_dev(bytes);
  char report[2048];
  int failed = -1;
  const int rc = mb_cuda_attn_hopper_probe(ws, bytes, report, sizeof report, &failed);
  AT_CUDA(cudaFree(ws));
  if (rc == MB_EUNSUPPORTED) {
    printf("cuda_attention_probe: %s: skipping\n", mb_error_message());
    return 77;
  }
  if (rc != MB_OK) {
    printf("cuda_attention_probe: %s\n", mb_error_message());
    return 1;
  }
  printf("%s", report);
  printf("cuda_attention_probe: %d of 9 probes not exact\n", failed);
  return failed ? 1 : 0;
}
