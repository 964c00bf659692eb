/* optim.h: optimizers, gradient clipping and learning-rate schedules over
 * the flat parameter store (params.h).
 *
 * One fused update covers every trainable parameter (a list of segments of
 * the flat buffers), which is the shape CUDA ("AdamW over all parameters in
 * one launch") and ZeRO-1 (update a contiguous shard) want; the arithmetic
 * runs in the backend (backend.h: adamw, sgd, sumsq).
 *
 * AdamW follows torch.optim.AdamW (single-tensor path, amsgrad off):
 *   p *= 1 - lr*wd;  m = lerp(m, g, 1-b1);  v = b2*v + (1-b2)*g*g
 *   p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
 * with the state m, v in the store's dtype (f32 for f32 master weights).
 * SGD follows torch.optim.SGD (coupled weight decay, momentum with
 * dampening, optional Nesterov). Parameters with weight_decay = 0 in the
 * store (biases, norms, if the caller says so) are not decayed.
 */
#ifndef MB_AUTOGRAD_OPTIM_H
#define MB_AUTOGRAD_OPTIM_H

#include <stdint.h>

#include "autograd/params.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  double lr, beta1, beta2, eps, weight_decay;
} mb_adamw_cfg;

typedef struct {
  double lr, momentum, dampening, weight_decay;
  int nesterov;
} mb_sgd_cfg;

/* torch defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 1e-2. */
mb_adamw_cfg mb_adamw_defaults(void);

typedef struct mb_optimizer mb_optimizer;

/* The store must be materialised (its backend runs the updates). */
int mb_optimizer_adamw(mb_params *p, const mb_adamw_cfg *cfg, mb_optimizer **out) MB_NODISCARD;
int mb_optimizer_sgd(mb_params *p, const mb_sgd_cfg *cfg, mb_optimizer **out) MB_NODISCARD;
void mb_optimizer_free(mb_optimizer *o);

/* One update of every trainable parameter with learning rate `lr` (from a
 * schedule, 0 included; negative means the configured lr); gradients are
 * multiplied by grad_scale first (the clipping coefficient; 1 = none). */
int mb_optimizer_step(mb_optimizer *o, double lr, double grad_scale) MB_NODISCARD;
/* The same restricted to flat elements [begin, end) (a ZeRO-1 shard). Each
 * rank calls it once per step with its own range. */
int mb_optimizer_step_range(mb_optimizer *o, double lr, double grad_scale, int64_t begin, int64_t end) MB_NODISCARD;

/* ZeRO-1: an AdamW (or SGD) whose state covers only flat elements
 * [begin, end) (a rank's shard; end may run past the store's total into
 * padding, which is never updated). Step it with mb_optimizer_step_shard on
 * buffers that hold exactly that range: the rank's slice of the parameters
 * and its reduce-scattered gradient shard. For distributed/zero.h's update
 * callback (params, grads, global_offset, count): check global_offset ==
 * begin and call mb_optimizer_step_shard(o, lr, scale, params, grads). */
int mb_optimizer_adamw_shard(mb_params *p, const mb_adamw_cfg *cfg, int64_t begin, int64_t end,
                             mb_optimizer **out) MB_NODISCARD;
int mb_optimizer_sgd_shard(mb_params *p, const mb_sgd_cfg *cfg, int64_t begin, int64_t end,
                           mb_optimizer **out) MB_NODISCARD;
int mb_optimizer_step_shard(mb_optimizer *o, double lr, double grad_scale, void *params,
                            const void *grads) MB_NODISCARD;
/* Sum of squares of the trainable elements of a gradient shard laid out like
 * mb_optimizer_step_shard's (for the global clipping norm across ranks). */
int mb_optimizer_shard_sumsq(mb_optimizer *o, const void *grads, double *sumsq) MB_NODISCARD;
/* The range an optimizer's state covers. */
void mb_optimizer_range(const mb_optimizer *o, int64_t *begin, int64_t *end);
/* min(1, max_norm / (norm + 1e-6)): torch's clipping coefficient. */
double mb_clip_coef(double norm, double max_norm);

/* Steps taken so far; state buffers (AdamW: 0 = m, 1 = v; SGD: 0 = momentum)
 * laid out like the parameters over the optimizer's range (element
 * `begin` first), for checkpoints. */
int64_t mb_optimizer_steps(const mb_optimizer *o);
void mb_optimizer_set_steps(mb_optimizer *o, int64_t steps);
void *mb_optimizer_state(mb_optimizer *o, int which);

/* Global L2 norm of the trainable gradients (torch.nn.utils.clip_grad_norm_):
 * *norm = ||g||, *scale = min(1, max_norm / (||g|| + 1e-6)). Pass the scale to
 * mb_optimizer_step (the gradients themselves are not rewritten). */
int mb_clip_grad_norm(mb_params *p, double max_norm, double *norm, double *scale) MB_NODISCARD;

/* Learning rate schedules as in transformers' get_{linear,cosine}_schedule_
 * with_warmup: linear warm-up from 0 over warmup_steps, then linear decay to 0
 * at total_steps or half a cosine period to 0. `step` counts updates already
 * taken (0 for the first update). */
typedef enum { MB_LR_CONSTANT = 0, MB_LR_LINEAR = 1, MB_LR_COSINE = 2 } mb_lr_decay;

typedef struct {
  double base_lr;
  int64_t warmup_steps, total_steps;
  mb_lr_decay decay;
} mb_lr_schedule;

double mb_lr_at(const mb_lr_schedule *s, int64_t step);

#ifdef __cplusplus
}
#endif
#endif
