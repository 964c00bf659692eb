/* device.h: the backend a command computes on, from train.device and
 * train.precision: the CPU, or (a CUDA build with a GPU visible) the CUDA
 * backend with f32, bf16 or fp16 compute; and the model's loss-scale input
 * (dynamic loss scaling, train.loss_scale). */
#ifndef MB_EXPERIMENTS_DEVICE_H
#define MB_EXPERIMENTS_DEVICE_H

#include "autograd/autograd.h"
#include "experiments/config.h"
#include "experiments/net.h"
#include "runtime/alloc.h"

typedef struct {
  mb_backend *be;
  int gpu;           /* 1: the CUDA backend (owned: mb_cli_device_close frees it) */
  mb_dtype compute;  /* MB_F32, MB_BF16 or MB_F16 */
  mb_device_allocator *mem; /* the GPU's allocator (its peak is the GPU's peak memory); NULL on the CPU */
  char desc[320];    /* "cpu, f32" or "GPU 0: NVIDIA H200 (...), bf16 compute" */
} mb_cli_device;

/* Resolves train.device (auto: the GPU when this build has CUDA and one is
 * visible, else the CPU; cpu; cuda: a GPU or an error) and train.precision
 * (f32 anywhere; bf16 and fp16 on a GPU; fp8 is refused: its amax history
 * is neither calibrated nor checkpointed). nranks > 1
 * with cuda is refused (the NCCL path is not wired into the commands yet);
 * with auto it computes on the CPU, with a warning.
 * `what` names the command in messages. */
int mb_cli_device_open(const mb_config *c, int nranks, int profiling, const char *what,
                       mb_cli_device *out) MB_NODISCARD;
/* The same with the names messages give the two settings (predict's
 * "--device" and "--precision"). */
int mb_cli_device_open_as(const mb_config *c, int nranks, int profiling, const char *what, const char *device_key,
                          const char *precision_key, mb_cli_device *out) MB_NODISCARD;
/* The compute precision on a net's model, and with loss_scale = 1 the
 * "loss_scale" input that multiplies its training loss (before any program
 * is built). */
int mb_cli_device_apply(const mb_cli_device *d, mb_net *net, int loss_scale) MB_NODISCARD;
/* key (eval.attention) = fp8: the net's evaluation programs run attention
 * with q, k, v in e4m3, each with its own per-tensor scale (bert only; on
 * a GPU with bf16 compute, the e4m3 kernel; on the CPU the same
 * quantisation, f32 arithmetic). Before any program is built; desc says so. */
int mb_cli_device_fp8_attention(mb_cli_device *d, mb_net *net, const char *key) MB_NODISCARD;
/* The loss scale S fed to the programs from now on (mb_cli_device_apply
 * with loss_scale = 1 first). */
int mb_cli_device_set_loss_scale(mb_net *net, double scale) MB_NODISCARD;
/* Frees the CUDA backend; call after everything made on it is freed. */
void mb_cli_device_close(mb_cli_device *d);

#endif
