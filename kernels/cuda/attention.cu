/* attention.cu: the CUDA attention dispatcher (see attention.h): checks the
 * arguments, asks attention_plan.c which kernel to use on this device, logs
 * the choice once per shape, and runs it. The kernels live in
 * attention_ref.cu, attention_flash_fwd.cu, attention_flash_bwd.cu and
 * attention_flash_fp8.cu.
 */
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda/attention_common.cuh"

int attn_flash_fp8_code_version(int head_dim, int *version); /* attention_flash_fp8.cu */

int mb_cuda_attn_device_cc(int *cc) {
  int dev = 0, major = 0, minor = 0;
  MB_CUDA_TRY(cudaGetDevice(&dev));
  MB_CUDA_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  MB_CUDA_TRY(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
  *cc = major * 10 + minor;
  return MB_OK;
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

int attn_env_tiling(int *fwd, int *bwd) {
  *fwd = *bwd = 0;
  const char *e = getenv("MAMBERT_ATTN_TILING");
  if (!e || !*e || strcmp(e, "default") == 0) {
    /* The default is what the H200 measured fastest (bench/results/
     * h200-2026-11-28-b and h200-2026-11-29, ATTENTION.md "Measured"):
     * forward tiling 5 at 1.39x (D = 64) and 1.82x (D = 128) tiling 0 (6 is
     * within 1-4% of it, either way); backward tiling 3 (warp-specialised
     * dK/dV, dQ summed by bulk reduces in key-tile order: deterministic) at
     * 1.71x (D = 64) and 2.28x (D = 128) tiling 0, 1.42x tiling 1 at
     * D = 128. Elsewhere the mma.sync tilings. */
    int hopper = 0;
    MB_TRY(attn_hopper_fwd_runs(&hopper));
    if (hopper) {
      *fwd = 5;
      *bwd = 3;
    }
    return MB_OK;
  }
  int f = 2, b = 1, used = 0;
  if (strcmp(e, "wgmma") != 0) {
    /* FWD or FWD,BWD: the numbers of mb_cuda_attn_set_flash_*_variant */
    b = -1;
    const int n = sscanf(e, "%d%n,%d%n", &f, &used, &b, &used);
    if (n < 1 || e[used] != '\0' || f < 0 || f > 10 || (n == 2 && (b < 0 || b > 4)))
      return MB_ERR(MB_EINVAL, "MAMBERT_ATTN_TILING=%s: expected default, wgmma (forward tiling 2, backward 1), or "
                               "FWD[,BWD] with a forward tiling 0-10 and a backward tiling 0-4",
                    e);
    if (n == 1)
      b = 0;
  }
  int ok = 1;
  if (f >= 2 || b >= 1)
    MB_TRY(attn_hopper_fwd_runs(&ok));
  if (!ok)
    mb_log_once(MB_LOG_WARN, "attn tiling wgmma",
                "MAMBERT_ATTN_TILING=%s: the wgmma tilings need an sm_90 GPU and an sm_90a build; using tiling 0", e);
  *fwd = ok || f < 2 ? f : 0;
  *bwd = ok ? b : 0;
  return MB_OK;
}

size_t mb_cuda_attn_bwd_workspace(const mb_attn_desc *d) {
  if (mb_cuda_attn_check(d) != MB_OK)
    return 0;
  return attn_ws_dq_bytes(d) + attn_ws_stats_bytes(d);
}

/* The request for this device; force from the caller, or (AUTO) from
 * MAMBERT_ATTN_KERNEL. */
static int make_request(const mb_attn_desc *d, mb_dtype dt, mb_cuda_attn_pass pass, bool all_aligned,
                        mb_cuda_attn_kernel force, mb_cuda_attn_request *r) {
  memset(r, 0, sizeof *r);
  r->dtype = dt;
  r->pass = pass;
  r->aligned16 = all_aligned;
  MB_TRY(mb_cuda_attn_device_cc(&r->cc));
  if (dt == MB_F8E4M3 && (d->head_dim == 64 || d->head_dim == 128)) {
    /* an sm_80 image runs on an sm_89 GPU too but has no fp8 kernel: plan
     * with the code version the driver picked */
    int code = 0;
    MB_TRY(attn_flash_fp8_code_version(d->head_dim, &code));
    if (code < r->cc)
      r->cc = code;
  }
  r->force = force;
  if (force == MB_CUDA_ATTN_AUTO)
    MB_TRY(mb_cuda_attn_parse_force(getenv("MAMBERT_ATTN_KERNEL"), &r->force));
  return MB_OK;
}

/* Plan, and log the choice once per shape: a fallback as a warning with the
 * reason (like SDPA's "Flash attention kernel not used because ..."), the
 * fused kernel at debug level. */
static int plan_and_log(const mb_attn_desc *d, const mb_cuda_attn_request *r, mb_cuda_attn_plan *p) {
  MB_TRY(mb_cuda_attn_choose(d, r, p));
  char key[256];
  mb_cuda_attn_plan_key(d, r, p, key, sizeof key);
  mb_log_once(p->fallback ? MB_LOG_WARN : MB_LOG_DEBUG, key, "attention (%s): %s", key, p->reason);
  return MB_OK;
}

static int run_fwd(const mb_cuda_attn_plan *p, const mb_attn_desc *d, mb_dtype dt, const void *q, const void *k,
                   const void *v, const float *qds, const float *kds, const float *vds, void *out, float *lse,
                   cudaStream_t s) {
  const mb_dtype out_dt = dt == MB_F8E4M3 ? MB_BF16 : dt;
  switch (p->kernel) {
  case MB_CUDA_ATTN_REFERENCE: return attn_reference_fwd(d, dt, q, k, v, qds, kds, vds, out, out_dt, lse, s);
  case MB_CUDA_ATTN_FLASH: return attn_flash_fwd(d, dt, q, k, v, out, lse, s);
  case MB_CUDA_ATTN_FLASH_FP8: return attn_flash_fwd_fp8(d, q, k, v, qds, kds, vds, out, lse, s);
  default: return MB_ERR(MB_EINTERNAL, "cuda attention: plan chose kernel %d", (int)p->kernel);
  }
}

static int fwd_common(mb_cuda_attn_kernel force, const mb_attn_desc *d, mb_dtype dt, const void *q, const void *k,
                      const void *v, const float *qds, const float *kds, const float *vds, void *out, float *lse,
                      cudaStream_t s) {
  MB_TRY(mb_cuda_attn_check(d));
  if (attn_tokens(d) == 0)
    return MB_OK;
  if (!q || !k || !v || !out || !lse)
    return MB_ERR(MB_EINVAL, "cuda attention forward: NULL q, k, v, out or lse");
  mb_cuda_attn_request r;
  MB_TRY(
      make_request(d, dt, MB_CUDA_ATTN_FWD, aligned16(q) && aligned16(k) && aligned16(v) && aligned16(out), force, &r));
  mb_cuda_attn_plan p;
  MB_TRY(plan_and_log(d, &r, &p));
  return run_fwd(&p, d, dt, q, k, v, qds, kds, vds, out, lse, s);
}

int mb_cuda_attn_fwd(const mb_attn_desc *d, mb_dtype dt, const void *q, const void *k, const void *v, void *out,
                     float *lse, struct CUstream_st *stream) {
  if (dt == MB_F8E4M3)
    return MB_ERR(MB_EINVAL, "cuda attention forward: e4m3 inputs go through mb_cuda_attn_fwd_fp8 (descales)");
  return fwd_common(MB_CUDA_ATTN_AUTO, d, dt, q, k, v, NULL, NULL, NULL, out, lse, stream);
}

int mb_cuda_attn_fwd_with(mb_cuda_attn_kernel kernel, const mb_attn_desc *d, mb_dtype dt, const void *q, const void *k,
                          const void *v, void *out, float *lse, struct CUstream_st *stream) {
  if (dt == MB_F8E4M3)
    return MB_ERR(MB_EINVAL, "cuda attention forward: e4m3 inputs go through mb_cuda_attn_fwd_fp8_with");
  if (kernel == MB_CUDA_ATTN_AUTO)
    return MB_ERR(MB_EINVAL, "cuda attention: *_with needs a kernel, not auto");
  return fwd_common(kernel, d, dt, q, k, v, NULL, NULL, NULL, out, lse, stream);
}

int mb_cuda_attn_fwd_fp8(const mb_attn_desc *d, const void *q8, const void *k8, const void *v8, const float *q_descale,
                         const float *k_descale, const float *v_descale, void *out_bf16, float *lse,
                         struct CUstream_st *stream) {
  return fwd_common(MB_CUDA_ATTN_AUTO, d, MB_F8E4M3, q8, k8, v8, q_descale, k_descale, v_descale, out_bf16, lse,
                    stream);
}

int mb_cuda_attn_fwd_fp8_with(mb_cuda_attn_kernel kernel, const mb_attn_desc *d, const void *q8, const void *k8,
                              const void *v8, const float *q_descale, const float *k_descale, const float *v_descale,
                              void *out_bf16, float *lse, struct CUstream_st *stream) {
  if (kernel == MB_CUDA_ATTN_AUTO)
    return MB_ERR(MB_EINVAL, "cuda attention: *_with needs a kernel, not auto");
  return fwd_common(kernel, d, MB_F8E4M3, q8, k8, v8, q_descale, k_descale, v_descale, out_bf16, lse, stream);
}

static int bwd_common(mb_cuda_attn_kernel force, const mb_attn_desc *d, mb_dtype dt, const void *q, const void *k,
                      const void *v, const void *out, const float *lse, const void *dout, void *dq, void *dk, void *dv,
                      void *ws, size_t ws_bytes, cudaStream_t s) {
  MB_TRY(mb_cuda_attn_check(d));
  if (attn_tokens(d) == 0)
    return MB_OK;
  if (!q || !k || !v || !out || !lse || !dout || !dq || !dk || !dv)
    return MB_ERR(MB_EINVAL, "cuda attention backward: NULL input or gradient pointer");
  const size_t need = mb_cuda_attn_bwd_workspace(d);
  if (!ws || ws_bytes < need)
    return MB_ERR(MB_EINVAL, "cuda attention backward: workspace has %zu bytes, needs %zu", ws ? ws_bytes : 0, need);
  if (!aligned16(ws))
    return MB_ERR(MB_EINVAL, "cuda attention backward: workspace must be 16-byte aligned");
  const bool al = aligned16(q) && aligned16(k) && aligned16(v) && aligned16(out) && aligned16(dout) && aligned16(dq) &&
                  aligned16(dk) && aligned16(dv);
  mb_cuda_attn_request r;
  MB_TRY(make_request(d, dt, MB_CUDA_ATTN_BWD, al, force, &r));
  mb_cuda_attn_plan p;
  MB_TRY(plan_and_log(d, &r, &p));
  switch (p.kernel) {
  case MB_CUDA_ATTN_REFERENCE: return attn_reference_bwd(d, dt, q, k, v, out, lse, dout, dq, dk, dv, ws, ws_bytes, s);
  case MB_CUDA_ATTN_FLASH: return attn_flash_bwd(d, dt, q, k, v, out, lse, dout, dq, dk, dv, ws, ws_bytes, s);
  default: return MB_ERR(MB_EINTERNAL, "cuda attention backward: plan chose kernel %d", (int)p.kernel);
  }
}

int mb_cuda_attn_bwd(const mb_attn_desc *d, mb_dtype dt, const void *q, const void *k, const void *v, const void *out,
                     const float *lse, const void *dout, void *dq, void *dk, void *dv, void *workspace,
                     size_t workspace_bytes, struct CUstream_st *stream) {
  return bwd_common(MB_CUDA_ATTN_AUTO, d, dt, q, k, v, out, lse, dout, dq, dk, dv, workspace, workspace_bytes, stream);
}

int mb_cuda_attn_bwd_with(mb_cuda_attn_kernel kernel, const mb_attn_desc *d, mb_dtype dt, const void *q, const void *k,
                          const void *v, const void *out, const float *lse, const void *dout, void *dq, void *dk,
                          void *dv, void *workspace, size_t workspace_bytes, struct CUstream_st *stream) {
  if (kernel == MB_CUDA_ATTN_AUTO)
    return MB_ERR(MB_EINVAL, "cuda attention: *_with needs a kernel, not auto");
  return bwd_common(kernel, d, dt, q, k, v, out, lse, dout, dq, dk, dv, workspace, workspace_bytes, stream);
}
