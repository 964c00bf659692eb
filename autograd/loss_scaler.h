/* loss_scaler.h: dynamic loss scaling for fp16 training, the logic of
 * torch.cuda.amp.GradScaler. Host code, backend-agnostic: the trainer tests
 * the gradients through their global norm (mb_clip_grad_norm sums squares in
 * f64, so the norm is finite exactly when every gradient is), or with
 * mb_cuda_grads_nonfinite on the CUDA backend.
 *
 * One step:
 *   feed the scale S = mb_loss_scaler_scale(&sc) as the loss-scale input
 *     (the model computes loss * S, so every gradient is scaled by S);
 *   forward, backward;
 *   found = the gradients hold an Inf or NaN (their global norm is not finite);
 *   if (mb_loss_scaler_update(&sc, found, &inv))   // 1: take the step
 *     mb_optimizer_step(opt, lr, inv * clip);      // gradients times 1/S
 * update() skips the step when a gradient overflowed and halves S; after
 * growth_interval good steps in a row it doubles S.
 */
#ifndef MB_AUTOGRAD_LOSS_SCALER_H
#define MB_AUTOGRAD_LOSS_SCALER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  double scale;            /* S, the factor the loss is multiplied by */
  double growth_factor;    /* 2 */
  double backoff_factor;   /* 0.5 */
  int64_t growth_interval; /* 2000 good steps before growing */
  int64_t good_steps;      /* finite steps since the last change of S */
  int64_t bad_steps;       /* overflows in a row (0 after a finite step) */
  int64_t steps, skipped;  /* updates seen, and how many were skipped */
} mb_loss_scaler;

/* torch's defaults: S = init_scale (65536 if <= 0) rounded to f32, growth
 * 2, backoff 0.5, interval 2000. As torch, S never grows past the largest
 * f32 and has no lower bound. */
void mb_loss_scaler_init(mb_loss_scaler *s, double init_scale);
double mb_loss_scaler_scale(const mb_loss_scaler *s);
/* After backward. Returns 1 if the optimizer should step, with
 * *inv_scale = 1/S of this step (multiply the gradients by it); 0 if the
 * step is skipped. Then adjusts S for the next step. */
int mb_loss_scaler_update(mb_loss_scaler *s, int found_inf, double *inv_scale);

#ifdef __cplusplus
}
#endif
#endif
