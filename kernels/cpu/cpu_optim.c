/* cpu_optim.c: the fused optimizer updates over flat parameter buffers
 * (AdamW as torch.optim.AdamW's single-tensor path, SGD as torch.optim.SGD)
 * and the segment sum of squares used by gradient clipping. The f32 path
 * rounds each step in float in torch's order, so a fixture made with torch
 * matches to the last bits or close to it. */
#include <math.h>
#include <stdlib.h>

#include "kernels/cpu/cpu_internal.h"

#define FN(name) MB_CAT(name, SFX)

#define T float
#define SFX f32
#define SQRT sqrtf
#define FMA fmaf
#include "kernels/cpu/cpu_optim_body.h"
#undef T
#undef SFX
#undef SQRT
#undef FMA

#define T double
#define SFX f64
#define SQRT sqrt
#define FMA fma
#include "kernels/cpu/cpu_optim_body.h"
#undef T
#undef SFX
#undef SQRT
#undef FMA

int mb_cpu_adamw(mb_backend *be, const mb_adamw_args *a) {
  (void)be;
  switch (a->dtype) {
  case MB_F32: return adamw_f32(a);
  case MB_F64: return adamw_f64(a);
  default: return MB_ERR(MB_EUNSUPPORTED, "cpu adamw: dtype %s", mb_dtype_name(a->dtype));
  }
}

int mb_cpu_sgd(mb_backend *be, const mb_sgd_args *a) {
  (void)be;
  switch (a->dtype) {
  case MB_F32: return sgd_f32(a);
  case MB_F64: return sgd_f64(a);
  default: return MB_ERR(MB_EUNSUPPORTED, "cpu sgd: dtype %s", mb_dtype_name(a->dtype));
  }
}

int mb_cpu_sumsq(mb_backend *be, const void *x, mb_dtype dt, const int64_t *sb, const int64_t *se, int n,
                 double *out) {
  (void)be;
  /* Fixed blocks, partials summed in order: the same for any thread count. */
  const int64_t bs = 16384;
  int64_t nblk = 0;
  for (int s = 0; s < n; s++)
    nblk += (se[s] - sb[s] + bs - 1) / bs;
  double *part = calloc((size_t)(nblk ? nblk : 1), sizeof *part);
  int64_t *blk_begin = malloc((size_t)(nblk ? nblk : 1) * sizeof *blk_begin);
  int64_t *blk_end = malloc((size_t)(nblk ? nblk : 1) * sizeof *blk_end);
  if (!part || !blk_begin || !blk_end) {
    free(part), free(blk_begin), free(blk_end);
    return MB_ERR(MB_ENOMEM, "sumsq partials");
  }
  int64_t b = 0;
  for (int s = 0; s < n; s++)
    for (int64_t i = sb[s]; i < se[s]; i += bs, b++) {
      blk_begin[b] = i;
      blk_end[b] = i + bs < se[s] ? i + bs : se[s];
    }
  if (dt != MB_F32 && dt != MB_F64) {
    free(part), free(blk_begin), free(blk_end);
    return MB_ERR(MB_EUNSUPPORTED, "cpu sumsq: dtype %s", mb_dtype_name(dt));
  }
  MB_PAR_FOR(nblk > 4,
    for (int64_t j = 0; j < nblk; j++) {
      double s = 0;
      if (dt == MB_F32)
        for (int64_t i = blk_begin[j]; i < blk_end[j]; i++)
          s += (double)((const float *)x)[i] * (double)((const float *)x)[i];
      else
        for (int64_t i = blk_begin[j]; i < blk_end[j]; i++)
          s += ((const double *)x)[i] * ((const double *)x)[i];
      part[j] = s;
    });
  double total = 0;
  for (int64_t j = 0; j < nblk; j++)
    total += part[j];
  *out = total;
  free(part), free(blk_begin), free(blk_end);
  return MB_OK;
}

