/* loss_scaler.c: the dynamic loss scaler (loss_scaler.h). */
#include "autograd/loss_scaler.h"

#include <math.h>

void mb_loss_scaler_init(mb_loss_scaler *s, double init_scale) {
  /* an f32 value, as the model is fed (and torch keeps it): 1/S then
   * unscales exactly what the loss was multiplied by */
  s->scale = init_scale > 0 ? (double)(float)init_scale : 65536.0;
  s->growth_factor = 2.0;
  s->backoff_factor = 0.5;
  s->growth_interval = 2000;
  s->good_steps = 0;
  s->bad_steps = 0;
  s->steps = 0;
  s->skipped = 0;
}

double mb_loss_scaler_scale(const mb_loss_scaler *s) { return s->scale; }

int mb_loss_scaler_update(mb_loss_scaler *s, int found_inf, double *inv_scale) {
  s->steps++;
  *inv_scale = 1.0 / s->scale;
  if (found_inf) {
    s->skipped++;
    s->bad_steps++;
    s->good_steps = 0;
    s->scale *= s->backoff_factor;
    return 0;
  }
  s->bad_steps = 0;
  if (++s->good_steps >= s->growth_interval) {
    s->good_steps = 0;
    /* as torch: a scale that would not be a finite f32 is not taken */
    const double grown = s->scale * s->growth_factor;
    if (isfinite((float)grown))
      s->scale = grown;
  }
  return 1;
}
