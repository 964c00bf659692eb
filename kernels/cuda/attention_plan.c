/* attention_plan.c: the CUDA attention dispatcher's decisions, in plain C
 * (see attention.h). Nothing here touches the GPU or device memory, so the
 * choices are tested on any machine (tests/cuda/test_cuda_attention_dispatch.c).
 *
 * The rule, like PyTorch SDPA's: the fused (flash) kernel when it can run
 * the request, else the reference kernel with a one-sentence reason. The
 * first reason that applies wins, in the order: dtype, architecture,
 * head_dim, alignment.
 */
#include "kernels/cuda/attention.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* CUDA grid limits the launchers rely on: gridDim.y and gridDim.z are
 * 16-bit; the varlen grids are ceil(T / 64) + nseq + 1 CTAs wide. */
#define ATTN_MAX_GRID_YZ 65535
#define ATTN_MAX_NSEQ (1 << 24)
/* The reference kernel keeps one query row (f32) in shared memory. */
#define ATTN_REF_MAX_HEAD_DIM 1024

int mb_cuda_attn_check(const mb_attn_desc *d) {
  if (!d)
    return MB_ERR(MB_EINVAL, "cuda attention: NULL descriptor");
  if (d->batch < 0 || d->seqlen < 0)
    return MB_ERR(MB_EINVAL, "cuda attention: batch %d and seqlen %d must be >= 0", d->batch, d->seqlen);
  if (d->heads < 1 || d->head_dim < 1)
    return MB_ERR(MB_EINVAL, "cuda attention: heads %d and head_dim %d must be >= 1", d->heads, d->head_dim);
  if (!(d->scale >= 0.0) || isinf(d->scale))
    return MB_ERR(MB_EINVAL, "cuda attention: scale %g must be finite and >= 0 (0 = 1/sqrt(head_dim))", d->scale);
  if (d->heads > ATTN_MAX_GRID_YZ)
    return MB_ERR(MB_EINVAL, "cuda attention: heads %d exceeds %d (a CUDA grid dimension)", d->heads, ATTN_MAX_GRID_YZ);
  const double tokens = (double)d->batch * d->seqlen;
  if (tokens > (double)INT32_MAX)
    return MB_ERR(MB_EINVAL, "cuda attention: batch %d x seqlen %d tokens exceeds %d", d->batch, d->seqlen, INT32_MAX);
  if (tokens * d->heads * d->head_dim > (double)INT64_MAX / 8)
    return MB_ERR(MB_EINVAL, "cuda attention: [%d x %d, %d, %d] is too large to index", d->batch, d->seqlen, d->heads,
                  d->head_dim);
  if (d->cu_seqlens) {
    if (d->batch != 1)
      return MB_ERR(MB_EINVAL, "cuda attention: varlen mode (cu_seqlens given) needs batch = 1, got %d", d->batch);
    if (d->key_mask)
      return MB_ERR(MB_EINVAL, "cuda attention: give key_mask (padded) or cu_seqlens (varlen), not both");
    if (d->nseq < 0 || d->nseq > ATTN_MAX_NSEQ)
      return MB_ERR(MB_EINVAL, "cuda attention: nseq %d must be in [0, %d]", d->nseq, ATTN_MAX_NSEQ);
  } else if (d->batch > ATTN_MAX_GRID_YZ) {
    return MB_ERR(MB_EINVAL,
                  "cuda attention: batch %d exceeds %d (a CUDA grid dimension); pack the batch "
                  "into varlen mode instead",
                  d->batch, ATTN_MAX_GRID_YZ);
  }
  return MB_OK;
}

const char *mb_cuda_attn_kernel_name(mb_cuda_attn_kernel k) {
  switch (k) {
  case MB_CUDA_ATTN_AUTO: return "auto";
  case MB_CUDA_ATTN_REFERENCE: return "reference";
  case MB_CUDA_ATTN_FLASH: return "flash";
  case MB_CUDA_ATTN_FLASH_FP8: return "flash-fp8";
  }
  return "unknown";
}

int mb_cuda_attn_parse_force(const char *s, mb_cuda_attn_kernel *force) {
  if (!s || !*s || strcmp(s, "auto") == 0)
    *force = MB_CUDA_ATTN_AUTO;
  else if (strcmp(s, "reference") == 0)
    *force = MB_CUDA_ATTN_REFERENCE;
  else if (strcmp(s, "flash") == 0)
    *force = MB_CUDA_ATTN_FLASH;
  else
    return MB_ERR(MB_EINVAL, "MAMBERT_ATTN_KERNEL=%s: expected auto, reference or flash", s);
  return MB_OK;
}

/* "padded", "padded+key_mask", "varlen(3 seqs)", each "+causal" when so. */
static void attn_mode(const mb_attn_desc *d, char *buf, size_t cap) {
  if (d->cu_seqlens)
    snprintf(buf, cap, "varlen(%d seqs)%s", d->nseq, d->causal ? "+causal" : "");
  else
    snprintf(buf, cap, "padded%s%s", d->key_mask ? "+key_mask" : "", d->causal ? "+causal" : "");
}

void mb_cuda_attn_plan_key(const mb_attn_desc *d, const mb_cuda_attn_request *req, const mb_cuda_attn_plan *plan,
                           char *buf, size_t cap) {
  char mode[64];
  attn_mode(d, mode, sizeof mode);
  snprintf(buf, cap, "attn %s %s B=%d L=%d H=%d D=%d %s sm%d -> %s", req->pass == MB_CUDA_ATTN_BWD ? "bwd" : "fwd",
           mb_dtype_name(req->dtype), d->batch, d->seqlen, d->heads, d->head_dim, mode, req->cc,
           mb_cuda_attn_kernel_name(plan->kernel));
}

/* Why this dtype's fused kernel cannot run the request; NULL if it can. */
static const char *fused_blocker(const mb_attn_desc *d, const mb_cuda_attn_request *r, char *buf, size_t cap) {
  const int fp8 = r->dtype == MB_F8E4M3;
  if (r->dtype == MB_F32) {
    snprintf(buf, cap,
             "f32 inputs: the flash kernel needs bf16 or f16 q/k/v (tensor cores); cast them to "
             "bf16 for the fused path");
  } else if (fp8 && r->cc < 89) {
    snprintf(buf, cap, "compute capability %d.%d: the fp8 flash kernel needs sm_89 or newer (e4m3 mma)", r->cc / 10,
             r->cc % 10);
  } else if (!fp8 && r->cc < 80) {
    snprintf(buf, cap,
             "compute capability %d.%d: the flash kernel needs sm_80 or newer (bf16/f16 mma.sync, "
             "cp.async)",
             r->cc / 10, r->cc % 10);
  } else if (d->head_dim != 64 && d->head_dim != 128) {
    snprintf(buf, cap, "head_dim %d: the flash kernels are built for head_dim 64 and 128", d->head_dim);
  } else if (!r->aligned16) {
    snprintf(buf, cap, "a tensor pointer is not 16-byte aligned: the flash kernel moves 16-byte vectors");
  } else {
    return NULL;
  }
  return buf;
}

int mb_cuda_attn_choose(const mb_attn_desc *d, const mb_cuda_attn_request *r, mb_cuda_attn_plan *p) {
  if (!r || !p)
    return MB_ERR(MB_EINVAL, "cuda attention: NULL request or plan");
  memset(p, 0, sizeof *p);
  MB_TRY(mb_cuda_attn_check(d));
  if (r->pass != MB_CUDA_ATTN_FWD && r->pass != MB_CUDA_ATTN_BWD)
    return MB_ERR(MB_EINVAL, "cuda attention: pass %d is neither forward nor backward", (int)r->pass);
  if (r->force != MB_CUDA_ATTN_AUTO && r->force != MB_CUDA_ATTN_REFERENCE && r->force != MB_CUDA_ATTN_FLASH &&
      r->force != MB_CUDA_ATTN_FLASH_FP8)
    return MB_ERR(MB_EINVAL, "cuda attention: unknown kernel %d requested", (int)r->force);

  switch (r->dtype) {
  case MB_F32:
  case MB_BF16:
  case MB_F16: break;
  case MB_F8E4M3:
    if (r->pass == MB_CUDA_ATTN_BWD) {
      snprintf(p->reason, sizeof p->reason, "fp8 attention is forward only (evaluation); train in bf16 or f16");
      return MB_ERR(MB_EUNSUPPORTED, "cuda attention backward: %s", p->reason);
    }
    break;
  default:
    snprintf(p->reason, sizeof p->reason, "dtype %s has no CUDA attention kernel (f32, bf16, f16; f8e4m3 forward)",
             mb_dtype_name(r->dtype));
    return MB_ERR(MB_EUNSUPPORTED, "cuda attention: %s", p->reason);
  }
  const mb_cuda_attn_kernel fused = r->dtype == MB_F8E4M3 ? MB_CUDA_ATTN_FLASH_FP8 : MB_CUDA_ATTN_FLASH;
  char why_buf[256], mode[64];
  const char *why = fused_blocker(d, r, why_buf, sizeof why_buf);
  attn_mode(d, mode, sizeof mode);

  if (r->force == MB_CUDA_ATTN_FLASH || r->force == MB_CUDA_ATTN_FLASH_FP8) {
    if (r->force != MB_CUDA_ATTN_FLASH && r->force != fused)
      why = "the fp8 flash kernel takes e4m3 inputs only";
    if (why) {
      snprintf(p->reason, sizeof p->reason, "flash attention was requested but cannot run: %s", why);
      return MB_ERR(MB_EUNSUPPORTED, "cuda attention: %s", p->reason);
    }
    p->kernel = fused;
    snprintf(p->reason, sizeof p->reason, "%s kernel as requested (%s, head_dim %d, %s)",
             mb_cuda_attn_kernel_name(fused), mb_dtype_name(r->dtype), d->head_dim, mode);
    return MB_OK;
  }

  const int want_reference = r->force == MB_CUDA_ATTN_REFERENCE || why != NULL;
  if (want_reference && d->head_dim > ATTN_REF_MAX_HEAD_DIM) {
    snprintf(p->reason, sizeof p->reason,
             "head_dim %d exceeds the reference kernel's limit of %d (the flash "
             "kernels take 64 and 128)",
             d->head_dim, ATTN_REF_MAX_HEAD_DIM);
    return MB_ERR(MB_EUNSUPPORTED, "cuda attention: %s", p->reason);
  }
  if (r->force == MB_CUDA_ATTN_REFERENCE) {
    p->kernel = MB_CUDA_ATTN_REFERENCE;
    p->fallback = 1;
    snprintf(p->reason, sizeof p->reason, "reference kernel as requested (slow: f32, no tensor cores)%s%s",
             why ? "; the flash kernel could not have run anyway: " : "", why ? why : "");
  } else if (why) {
    p->kernel = MB_CUDA_ATTN_REFERENCE;
    p->fallback = 1;
    snprintf(p->reason, sizeof p->reason,
             "flash attention not used because %s; using the reference kernel "
             "(f32, no tensor cores: slow)",
             why);
  } else {
    p->kernel = fused;
    /* Hopper takes the wgmma tilings by default where the image has
     * sm_90a code (kernels/cuda/attention.cu, attn_env_tiling: what the
     * H200 measured fastest); for e4m3 the wgmma form of the fp8 kernel
     * follows them, since ptxas lowers e4m3 mma.sync to f16 HMMA there. */
    const char *note = r->cc != 90 ? ""
                       : fused == MB_CUDA_ATTN_FLASH
                           ? "; the tiling set by mb_cuda_attn_set_flash_*_variant or MAMBERT_ATTN_TILING (default "
                             "with sm_90a code: forward tiling 5, wgmma with TMA, warp-specialised; backward "
                             "tiling 3, warp-specialised with the dQ by ordered bulk reduces)"
                           : "; on sm_90 the wgmma form with sm_90a code (the default forward tilings; about 0.7x "
                             "the bf16 forward's speed on an H200: not yet warp-specialised), else mma.sync, which "
                             "runs as f16 HMMA there (MAMBERT_ATTN_TILING=0 or 1)";
    snprintf(p->reason, sizeof p->reason, "%s kernel (%s, head_dim %d, %s, sm_%d%s)", mb_cuda_attn_kernel_name(fused),
             mb_dtype_name(r->dtype), d->head_dim, mode, r->cc, note);
  }
  return MB_OK;
}
