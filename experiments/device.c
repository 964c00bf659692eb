/* device.c: choosing the backend for train and eval (device.h). */
#include "experiments/device.h"

#include <stdio.h>
#include <string.h>

#include "kernels/cpu/cpu.h"
#include "mambert_build_config.h"
#include "models/model.h"
#include "runtime/cuda_device.h"
#include "runtime/log.h"
#if MAMBERT_HAVE_CUDA
#include "kernels/cuda/cuda.h"
#endif

/* "train.device: cpu" for a config key, "--device cpu" for a flag */
static const char *value_sep(const char *key) { return key[0] == '-' ? " " : ": "; }

int mb_cli_device_open(const mb_config *c, int nranks, int profiling, const char *what, mb_cli_device *out) {
  return mb_cli_device_open_as(c, nranks, profiling, what, "train.device", "train.precision", out);
}

int mb_cli_device_open_as(const mb_config *c, int nranks, int profiling, const char *what, const char *dkey,
                          const char *pkey, mb_cli_device *out) {
  memset(out, 0, sizeof *out);
  out->be = mb_cpu_backend();
  out->compute = MB_F32;
  const int want_gpu = strcmp(c->device, "cuda") == 0, want_cpu = strcmp(c->device, "cpu") == 0;
  int gpus = 0;
  char why[256] = "this build has no CUDA backend";
#if MAMBERT_HAVE_CUDA
  if (!want_cpu && mb_cuda_device_count(&gpus, why, sizeof why) != MB_OK) {
    mb_error_clear();
    gpus = 0;
  }
#endif
  if (want_gpu && gpus == 0)
    return MB_ERR(MB_EUNSUPPORTED, "%s: cuda, but %s sees no GPU (%s); use %s%scpu", dkey, what, why, dkey,
                  value_sep(dkey));
  int gpu = gpus > 0 && !want_cpu;
  if (gpu && !want_gpu && nranks > 1) { /* auto with several ranks: the CPU, as before GPUs were wired in */
    MB_WARN("%s: auto with %d ranks: computing on the CPU (several GPU ranks are not wired into %s yet; "
            "set %s%scpu to silence this)",
            dkey, nranks, what, dkey, value_sep(dkey));
    gpu = 0;
  }
  if (!gpu) {
    if (strcmp(c->precision, "f32") != 0)
      return MB_ERR(MB_EUNSUPPORTED,
                    "%s: %s needs a GPU and %s runs on the CPU here (%s); set %s%sf32", pkey, c->precision, what,
                    want_cpu ? "the device is cpu" : why, pkey, value_sep(pkey));
    snprintf(out->desc, sizeof out->desc, "cpu, f32");
    return MB_OK;
  }
  if (strcmp(c->precision, "fp8") == 0)
    return MB_ERR(MB_EUNSUPPORTED,
                  "%s: fp8 is not in %s yet (its delayed-scaling amax history is neither calibrated "
                  "before the first batch nor checkpointed); use bf16, fp16 or f32",
                  pkey, what);
  if (nranks > 1)
    return MB_ERR(MB_EUNSUPPORTED,
                  "%s: %s with %d ranks: %s runs one GPU per job for now (the NCCL data-parallel path is "
                  "not wired into it yet); run one rank, or set %s%scpu",
                  dkey, c->device, nranks, what, dkey, value_sep(dkey));
#if MAMBERT_HAVE_CUDA
  mb_cuda_backend_opts o = mb_cuda_backend_defaults();
  o.device = 0;
  o.graphs = !profiling; /* per-node profiling syncs inside a tape: no capture */
  MB_TRY(mb_cuda_backend_create(&o, &out->be));
  out->gpu = 1;
  out->mem = mb_cuda_backend_allocator(out->be);
  out->compute = strcmp(c->precision, "bf16") == 0 ? MB_BF16 : strcmp(c->precision, "fp16") == 0 ? MB_F16 : MB_F32;
  mb_cuda_device_info info;
  char dev[256] = "?";
  if (mb_cuda_device_get_info(0, &info) == MB_OK)
    mb_cuda_device_describe(&info, dev, sizeof dev);
  else
    mb_error_clear();
  snprintf(out->desc, sizeof out->desc, "GPU 0: %s, %s compute", dev, mb_dtype_name(out->compute));
  return MB_OK;
#else
  (void)profiling;
  return MB_ERR(MB_EINTERNAL, "a GPU counted in a build without CUDA");
#endif
}

int mb_cli_device_apply(const mb_cli_device *d, mb_net *net, int loss_scale) {
  if (d->compute == MB_F32 && !loss_scale)
    return MB_OK;
  struct mb_model *m = mb_net_model(net);
  if (!m && d->compute != MB_F32)
    return MB_ERR(MB_EUNSUPPORTED, "train.precision: %s: the %s model computes in f32 only", mb_dtype_name(d->compute),
                  net->arch);
  if (!m)
    return MB_ERR(MB_EUNSUPPORTED, "train.loss_scale: the %s model has no loss scale input (set it off)", net->arch);
  mb_model_precision p = mb_model_precision_of(m); /* keeps fp8_attention */
  p.compute = d->compute;
  p.loss_scale = loss_scale;
  return mb_model_set_precision(m, &p);
}

int mb_cli_device_fp8_attention(mb_cli_device *d, mb_net *net, const char *key) {
  struct mb_model *m = mb_net_model(net);
  if (!m)
    return MB_ERR(MB_EUNSUPPORTED, "%s: fp8: the %s model has no attention", key, net->arch);
  if (d->gpu && d->compute != MB_BF16)
    return MB_ERR(MB_EUNSUPPORTED,
                  "%s: fp8 on the GPU quantises bf16 q, k, v (its e4m3 kernel writes bf16), and train.precision "
                  "is %s; set train.precision: bf16",
                  key, mb_dtype_name(d->compute));
  mb_model_precision p = mb_model_precision_of(m);
  p.fp8_attention = 1;
  if (mb_model_set_precision(m, &p) != MB_OK) {
    char why[256];
    snprintf(why, sizeof why, "%s", mb_error_message());
    mb_error_clear();
    return MB_ERR(MB_EUNSUPPORTED, "%s: %s", key, why);
  }
  const size_t len = strlen(d->desc);
  snprintf(d->desc + len, sizeof d->desc - len, ", fp8 attention%s", d->gpu ? "" : " (simulated)");
  return MB_OK;
}

int mb_cli_device_set_loss_scale(mb_net *net, double scale) {
  struct mb_model *m = mb_net_model(net);
  if (!m)
    return MB_ERR(MB_EINTERNAL, "the %s model has no loss scale input", net->arch);
  mb_model_set_loss_scale(m, scale);
  return MB_OK;
}

void mb_cli_device_close(mb_cli_device *d) {
#if MAMBERT_HAVE_CUDA
  if (d->gpu && d->be)
    mb_cuda_backend_destroy(d->be);
#endif
  d->be = NULL;
  d->mem = NULL;
  d->gpu = 0;
}
