/* test_cuda_attention_emu.cpp (ctest: cuda_attention_emulated): the CUDA
 * attention kernels and their launchers, unmodified, run on the CPU by the
 * emulator in test_cuda_attention_emu.h, against the CPU reference
 * (kernels/cpu/attention.h) in float64 on the same rounded inputs. No GPU
 * needed: this is how the tiling, the fragment layouts, the masks, the
 * varlen tile search, the pipelining (cp.async waits and barriers) and the
 * fp8 key permutation are checked on a machine without one; the GPU test
 * (cuda_attention) checks the same on the hardware. Needs neither a GPU nor
 * the CUDA toolkit (test_cuda_attention_emu_shim.h stands in for its
 * headers), so every build runs it.
 *
 * Cases are smaller than the GPU test's (the emulator runs every CUDA
 * thread as a fiber): L = 1, 7, 129, 200, 300, 600 with right padding,
 * holes and causal masks, varlen with lengths 0 and 1 and a budget tail;
 * head_dim 64 and 128; bf16 (forward tilings 0-6, of which 2-6 on Hopper's
 * wgmma, 5 and 6 warp-specialised with TMA and mbarriers, 6 with
 * ping-pong; backward tilings 0 and 1), f16, e4m3 forward (mma.sync and
 * wgmma), the reference kernels (f32, bf16), the wgmma operand addressing
 * against the PTX ISA's examples (and the 128-byte swizzle against values
 * worked by hand) and MAMBERT_ATTN_TILING. Every run also repeats with the CUDA
 * threads resumed in another order and must give the same bits (a missing
 * barrier would not). Bounds as in cuda_attention.
 */
#ifdef _FORTIFY_SOURCE /* _longjmp between fiber stacks: no __longjmp_chk */
#undef _FORTIFY_SOURCE
#endif

/* no CUDA toolkit needed: the shim stands in for its headers */
#define ATTN_EMULATE_SHIM "tests/cuda/test_cuda_attention_emu_shim.h"
#define ATTN_EMULATE "tests/cuda/test_cuda_attention_emu.h"
#include "kernels/cuda/attention.cu"
#include "kernels/cuda/attention_flash_bwd.cu"
#include "kernels/cuda/attention_flash_fp8.cu"
#include "kernels/cuda/attention_flash_fwd.cu"
#include "kernels/cuda/attention_hopper_bwd.cu"
#include "kernels/cuda/attention_hopper_fwd.cu"
#include "kernels/cuda/attention_probe.cu"
#include "kernels/cuda/attention_ref.cu"

#include <cmath>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
extern "C" {
#include <cmocka.h>
}

#include <sys/mman.h>

#include <new>

#include "kernels/cpu/attention.h"
#include "tests/cuda/test_cuda_attention_check.h"

/* "Device" memory: every buffer the kernels see ends at a PROT_NONE page
 * (its start 16-byte aligned, so at most 15 bytes of slack), so a read or
 * write past the end of q, k, v, a mask, cu_seqlens, an output or the
 * workspace faults at once -- the bounds check ASan would give, without
 * running the fibers under ASan. */
template <class T> struct guard_alloc {
  typedef T value_type;
  static constexpr size_t PAGE = 4096;
  guard_alloc() = default;
  template <class U> guard_alloc(const guard_alloc<U> &) {}
  static size_t span(size_t bytes) { return (bytes + PAGE - 1) / PAGE * PAGE + PAGE; }
  T *allocate(size_t n) {
    const size_t bytes = n * sizeof(T), sp = span(bytes);
    void *m = mmap(NULL, sp, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
      throw std::bad_alloc();
    unsigned char *base = (unsigned char *)m, *guard = base + sp - PAGE;
    if (mprotect(guard, PAGE, PROT_NONE) != 0)
      at_die("mprotect failed");
    return (T *)(((uintptr_t)guard - bytes) & ~(uintptr_t)15);
  }
  void deallocate(T *p, size_t n) {
    const size_t bytes = n * sizeof(T), sp = span(bytes);
    const uintptr_t guard = ((uintptr_t)p + bytes + PAGE - 1) / PAGE * PAGE;
    munmap((void *)(guard + PAGE - sp), sp);
  }
};
template <class T, class U> bool operator==(const guard_alloc<T> &, const guard_alloc<U> &) { return true; }
template <class T, class U> bool operator!=(const guard_alloc<T> &, const guard_alloc<U> &) { return false; }
template <class T> using gvec = std::vector<T, guard_alloc<T>>;

static double tol_of(mb_dtype dt, int grad) {
  switch (dt) {
  case MB_BF16: return 1e-2;
  case MB_F16: return 5e-3;
  case MB_F8E4M3: return 6e-2;
  default: return grad ? 1e-3 : 5e-5; /* grad: the zero gradients of L = 1 rows sit at ~2e-4 of the floor */
  }
}
#define TOL_LSE 5e-4

struct ecase {
  const char *name;
  int batch, seqlen, heads, causal, mask_kind, nseq;
  int lens[40], tail;
  float qstd;
  int settled; /* key 0 of every row holds each query's max: later key tiles leave the maxima alone */
};

static const ecase cases[] = {
    {"L1", 3, 1, 2, 0, 0, 0, {0}, 0, 1.0f, 0},
    {"L7-causal", 2, 7, 3, 1, 0, 0, {0}, 0, 1.0f, 0},
    {"L129-pad", 3, 129, 2, 0, 1, 0, {0}, 0, 2.5f, 0},
    {"L200-holes-causal", 2, 200, 1, 1, 2, 0, {0}, 0, 1.0f, 0},
    /* the last sequence (200) ends inside a tile, so TMA reads the NaN tail */
    {"varlen", 1, 0, 2, 0, 0, 6, {1, 129, 7, 0, 64, 200}, 37, 1.0f, 0},
    {"varlen-causal", 1, 0, 2, 1, 0, 5, {5, 1, 257, 128, 64}, 3, 1.0f, 0},
    {"L300-settled", 2, 300, 2, 0, 0, 0, {0}, 0, 1.0f, 1},
    /* five 128-key tiles: the wgmma forward's rings refill stages (tiling 4
     * loads K three tiles ahead), causal with padding in the last tile */
    {"L600-causal", 1, 600, 1, 1, 0, 0, {0}, 0, 1.0f, 0},
    /* 40 sequences: every kernel's tile search (attn_find_tile_at) scans
     * cu_seqlens 32 at a time, so tiles past the first 32 sequences take
     * its second step; sequence 33 is empty, and the persistent forward's
     * producer searches under its 24 registers */
    {"varlen-40seq",
     1,
     0,
     2,
     0,
     0,
     40,
     {1,  38, 75, 15, 52, 89, 29, 66, 6,  43, 80, 20, 57, 94, 34, 71, 11, 48, 85, 25,
      62, 2,  39, 76, 16, 53, 90, 30, 67, 7,  44, 81, 21, 0,  95, 35, 72, 12, 49, 86},
     5,
     1.0f,
     0},
    /* row 1's first key tile is all padding and real keys follow: the
     * backward skips that tile's CTA, which tiling 3's ordered dQ must not
     * let hold up the next one */
    {"L300-leftpad", 2, 300, 1, 0, 3, 0, {0}, 0, 1.0f, 0},
};

/* One problem: host buffers stand in for device memory. */
struct problem {
  mb_attn_desc d;
  mb_dtype dt;
  size_t tokens, n, nl;
  std::vector<float> q, k, v, dout;
  std::vector<double> ref_out, ref_lse, ref_dq, ref_dk, ref_dv;
  gvec<int32_t> mask, cu;
  gvec<unsigned char> dev_q, dev_k, dev_v, dev_dout, out, dq, dk, dv, ws; /* "device" memory */
  gvec<float> lse, scales;
  gvec<unsigned char> fwd_out; /* the last checked forward's, for the backward */
  gvec<float> fwd_lse;
};

static gvec<unsigned char> to_dev(const std::vector<float> &x, mb_dtype dt) {
  gvec<unsigned char> b(x.size() * mb_dtype_size(dt));
  if (mb_convert(b.data(), dt, x.data(), MB_F32, x.size()) != MB_OK)
    at_die(mb_error_message());
  return b;
}

static std::vector<float> from_dev(const gvec<unsigned char> &b, size_t n, mb_dtype dt) {
  std::vector<float> x(n);
  if (mb_convert(x.data(), MB_F32, b.data(), dt, n) != MB_OK)
    at_die(mb_error_message());
  return x;
}

/* e4m3 with scale amax / 448; x becomes the dequantised values */
static float quantize(std::vector<float> &x) {
  float amax = 0;
  for (float y : x)
    amax = fabsf(y) > amax ? fabsf(y) : amax;
  const float s = amax > 0 ? amax / 448.0f : 1.0f;
  for (float &y : x)
    y = mb_e4m3_to_f32(mb_f32_to_e4m3(y / s, MB_FP8_SATFINITE)) * s;
  return s;
}

static void problem_init(problem &p, const ecase &c, mb_dtype dt, int D) {
  p = problem();
  p.dt = dt;
  memset(&p.d, 0, sizeof p.d);
  p.d.heads = c.heads;
  p.d.head_dim = D;
  p.d.causal = c.causal;
  if (c.nseq) {
    p.cu.assign(c.nseq + 1, 0);
    for (int s = 0; s < c.nseq; s++)
      p.cu[s + 1] = p.cu[s] + c.lens[s];
    p.d.batch = 1;
    p.d.seqlen = p.cu[c.nseq] + c.tail;
    p.d.nseq = c.nseq;
  } else {
    p.d.batch = c.batch;
    p.d.seqlen = c.seqlen;
  }
  p.tokens = (size_t)p.d.batch * p.d.seqlen;
  p.n = p.tokens * c.heads * D;
  p.nl = p.tokens * c.heads;
  if (c.mask_kind) {
    p.mask.assign(p.tokens, 0);
    std::vector<int> r(p.tokens);
    at_randint(r.data(), p.tokens, 100);
    for (int b = 0; b < p.d.batch; b++) {
      const int keep = b == 0 ? p.d.seqlen : 1 + r[(size_t)b * p.d.seqlen] * (p.d.seqlen - 1) / 100;
      for (int i = 0; i < p.d.seqlen; i++) {
        const size_t t = (size_t)b * p.d.seqlen + i;
        /* 1: right padding; 2: random holes; 3: left padding of a whole key tile (rows after the first) */
        p.mask[t] = c.mask_kind == 1 ? i < keep : c.mask_kind == 2 ? (i == 0 || r[t] >= 30) : (b == 0 || i >= 128);
      }
    }
  }
  p.q.resize(p.n);
  p.k.resize(p.n);
  p.v.resize(p.n);
  p.dout.resize(p.n);
  at_randn(p.q.data(), p.n, c.qstd);
  at_randn(p.k.data(), p.n, 1.0f);
  at_randn(p.v.data(), p.n, 1.0f);
  at_randn(p.dout.data(), p.n, 1.0f);
  if (c.settled) {
    /* q >= 0 and key 0 = 0.7 everywhere: q.k0 = 0.7 sum(q) ~ 36 at D = 64
     * beats the other keys' q.kj (~N(0, |q|^2), max over 300 ~ 25) by ~1
     * after the 1/sqrt(D) scale, so the row maxima are set in the first
     * key tile and the flash forward skips its O rescale afterwards, while
     * the other keys still weigh e^-1 .. e^-6 each */
    for (float &x : p.q)
      x = fabsf(x);
    const size_t row = (size_t)c.heads * D;
    for (int b = 0; b < p.d.batch; b++)
      for (size_t e = 0; e < row; e++)
        p.k[(size_t)b * p.d.seqlen * row + e] = 0.7f;
  }
  if (dt == MB_F8E4M3) {
    p.scales = {quantize(p.q), quantize(p.k), quantize(p.v)};
    std::vector<float> q8(p.n), k8(p.n), v8(p.n); /* the e4m3 codes' values: x / scale exactly */
    for (size_t i = 0; i < p.n; i++) {
      q8[i] = p.q[i] / p.scales[0];
      k8[i] = p.k[i] / p.scales[1];
      v8[i] = p.v[i] / p.scales[2];
    }
    p.dev_q = to_dev(q8, dt);
    p.dev_k = to_dev(k8, dt);
    p.dev_v = to_dev(v8, dt);
  } else {
    at_round(p.q.data(), p.n, dt);
    at_round(p.k.data(), p.n, dt);
    at_round(p.v.data(), p.n, dt);
    at_round(p.dout.data(), p.n, dt);
    p.dev_q = to_dev(p.q, dt);
    p.dev_k = to_dev(p.k, dt);
    p.dev_v = to_dev(p.v, dt);
    p.dev_dout = to_dev(p.dout, dt);
  }
  if (c.nseq) { /* the varlen budget's tail is nobody's: NaN there must not reach any output (0 x NaN = NaN) */
    const size_t es = mb_dtype_size(dt), from = (size_t)p.cu[c.nseq] * c.heads * D * es;
    for (gvec<unsigned char> *b : {&p.dev_q, &p.dev_k, &p.dev_v, &p.dev_dout})
      if (!b->empty()) /* fp8 problems have no dout */
        std::fill(b->begin() + from, b->end(), 0xff);
  }
  /* the CPU reference, float64 */
  mb_attn_desc hd = p.d;
  hd.key_mask = p.mask.empty() ? NULL : p.mask.data();
  hd.cu_seqlens = p.cu.empty() ? NULL : p.cu.data();
  std::vector<double> qd(p.q.begin(), p.q.end()), kd(p.k.begin(), p.k.end()), vd(p.v.begin(), p.v.end()),
      dod(p.dout.begin(), p.dout.end());
  p.ref_out.resize(p.n);
  p.ref_lse.resize(p.nl);
  p.ref_dq.resize(p.n);
  p.ref_dk.resize(p.n);
  p.ref_dv.resize(p.n);
  if (mb_cpu_attn_fwd_f64(&hd, qd.data(), kd.data(), vd.data(), p.ref_out.data(), p.ref_lse.data(), NULL, 0) != MB_OK ||
      mb_cpu_attn_bwd_f64(&hd, qd.data(), kd.data(), vd.data(), p.ref_out.data(), p.ref_lse.data(), dod.data(),
                          p.ref_dq.data(), p.ref_dk.data(), p.ref_dv.data(), NULL, 0) != MB_OK)
    at_die(mb_error_message());
  /* "device" side: the kernels see these host buffers */
  p.d.key_mask = hd.key_mask;
  p.d.cu_seqlens = hd.cu_seqlens;
  const size_t es = mb_dtype_size(dt == MB_F8E4M3 ? MB_BF16 : dt);
  p.out.assign(p.n * es, 0xff);
  p.dq.assign(p.n * es, 0xff);
  p.dk.assign(p.n * es, 0xff);
  p.dv.assign(p.n * es, 0xff);
  p.lse.assign(p.nl, NAN);
  p.ws.assign(mb_cuda_attn_bwd_workspace(&p.d), 0xff);
}

static void poison(problem &p) {
  std::fill(p.out.begin(), p.out.end(), 0xff);
  std::fill(p.dq.begin(), p.dq.end(), 0xff);
  std::fill(p.dk.begin(), p.dk.end(), 0xff);
  std::fill(p.dv.begin(), p.dv.end(), 0xff);
  std::fill(p.ws.begin(), p.ws.end(), 0xff);
  std::fill(p.lse.begin(), p.lse.end(), NAN);
}

static void expect_no_emu_error(const char *label) {
  if (emu::S().errors)
    fail_msg("%s: the emulator reported %lld error(s), first: %s", label, emu::S().errors, emu::S().first_error);
}

static void check(const problem &p, const char *label, const char *what, const gvec<unsigned char> &dev, mb_dtype dt,
                  const std::vector<double> &ref, double tol) {
  const std::vector<float> x = from_dev(dev, p.n, dt);
  const at_err e = at_compare(x.data(), ref.data(), p.n);
  printf(" %s %.2e (elem max %.1e p99 %.1e)", what, e.norm, e.max, e.p99);
  if (!(e.norm <= tol))
    fail_msg("%s: %s error %.3e exceeds %.1e", label, what, e.norm, tol);
  unsigned char *pad =
      at_pad_tokens(p.tokens, p.mask.empty() ? NULL : p.mask.data(), p.cu.empty() ? NULL : p.cu.data(), p.d.nseq);
  const size_t nz = at_nonzero_pad(x.data(), pad, p.tokens, (size_t)p.d.heads * p.d.head_dim);
  free(pad);
  if (nz)
    fail_msg("%s: %zu %s values of padded tokens are not 0", label, nz, what);
}

static void check_lse(const char *label, const problem &p) {
  size_t inf_bad = 0;
  const double el = at_compare_lse(p.lse.data(), p.ref_lse.data(), p.nl, &inf_bad);
  printf(" lse %.1e", el);
  if (inf_bad)
    fail_msg("%s: %zu lse values of padded rows are not +inf", label, inf_bad);
  if (!(el <= TOL_LSE))
    fail_msg("%s: lse differs by %.3e", label, el);
}

static int order_turn; /* rotates the fiber order between runs */

static void set_order(int o) { emu::S().order = o; }

/* Forward with `kernel`, checked; then (reps = 2) again in another thread
 * order: the same bits. */
static void forward(problem &p, mb_cuda_attn_kernel kernel, const char *label, int reps = 2) {
  const mb_dtype odt = p.dt == MB_F8E4M3 ? MB_BF16 : p.dt;
  gvec<unsigned char> first_out;
  gvec<float> first_lse;
  for (int rep = 0; rep < reps; rep++) {
    set_order((order_turn + rep) % 4);
    poison(p);
    int rc;
    if (p.dt == MB_F8E4M3)
      rc = mb_cuda_attn_fwd_fp8_with(kernel, &p.d, p.dev_q.data(), p.dev_k.data(), p.dev_v.data(), &p.scales[0],
                                     &p.scales[1], &p.scales[2], p.out.data(), p.lse.data(), NULL);
    else
      rc = mb_cuda_attn_fwd_with(kernel, &p.d, p.dt, p.dev_q.data(), p.dev_k.data(), p.dev_v.data(), p.out.data(),
                                 p.lse.data(), NULL);
    expect_no_emu_error(label);
    if (rc != MB_OK)
      fail_msg("%s: forward failed: %s", label, mb_error_message());
    if (rep == 0) {
      printf("%s fwd", label);
      /* the reference kernel computes in f32 from e4m3 inputs: only its bf16 output rounds */
      const double tol = kernel == MB_CUDA_ATTN_REFERENCE && p.dt == MB_F8E4M3 ? 1e-2 : tol_of(p.dt, 0);
      check(p, label, "out", p.out, odt, p.ref_out, tol);
      check_lse(label, p);
      printf("\n");
      first_out = p.out;
      first_lse = p.lse;
      p.fwd_out = p.out;
      p.fwd_lse = p.lse;
    } else if (first_out != p.out || memcmp(first_lse.data(), p.lse.data(), p.nl * sizeof(float))) {
      fail_msg("%s: the forward changed with the order the threads ran in (a missing barrier?)", label);
    }
  }
  order_turn++;
}

/* Backward on the last forward's out and lse. */
static void backward(problem &p, mb_cuda_attn_kernel kernel, const char *label) {
  gvec<unsigned char> out = p.fwd_out; /* p.out is poisoned below */
  gvec<float> lse = p.fwd_lse;
  gvec<unsigned char> first_dk, first_dv;
  for (int rep = 0; rep < 2; rep++) {
    set_order((order_turn + rep) % 4);
    poison(p);
    const int rc = mb_cuda_attn_bwd_with(kernel, &p.d, p.dt, p.dev_q.data(), p.dev_k.data(), p.dev_v.data(), out.data(),
                                         lse.data(), p.dev_dout.data(), p.dq.data(), p.dk.data(), p.dv.data(),
                                         p.ws.data(), p.ws.size(), NULL);
    expect_no_emu_error(label);
    if (rc != MB_OK)
      fail_msg("%s: backward failed: %s", label, mb_error_message());
    if (rep == 0) {
      printf("%s bwd", label);
      check(p, label, "dq", p.dq, p.dt, p.ref_dq, tol_of(p.dt, 1));
      check(p, label, "dk", p.dk, p.dt, p.ref_dk, tol_of(p.dt, 1));
      check(p, label, "dv", p.dv, p.dt, p.ref_dv, tol_of(p.dt, 1));
      printf("\n");
      first_dk = p.dk;
      first_dv = p.dv;
    } else if (first_dk != p.dk || first_dv != p.dv) {
      fail_msg("%s: the backward's dk/dv changed with the thread order (a missing barrier?)", label);
    }
  }
  order_turn++;
}

/* MAMBERT_ATTN_TILING chooses the tilings until a program sets them (this
 * test runs first, before any test sets them): a bad value is an error
 * naming the variable, "6,1" runs forward tiling 6 (TMA loads) and the
 * wgmma backward (the emulator is an sm_90 device). */
static void test_env_tiling(void **state) {
  (void)state;
  problem p;
  problem_init(p, cases[2], MB_BF16, 64);
  for (const char *bad : {"hopper", "11", "6,5", "6,", "2x", "-1"}) {
    setenv("MAMBERT_ATTN_TILING", bad, 1);
    int rc = mb_cuda_attn_fwd_with(MB_CUDA_ATTN_FLASH, &p.d, MB_BF16, p.dev_q.data(), p.dev_k.data(),
                                   p.dev_v.data(), p.out.data(), p.lse.data(), NULL);
    assert_int_equal(rc, MB_EINVAL);
    char want[64];
    snprintf(want, sizeof want, "MAMBERT_ATTN_TILING=%s:", bad);
    assert_non_null(strstr(mb_error_message(), want));
  }
  setenv("MAMBERT_ATTN_TILING", "6,1", 1);
  const long long before = emu::S().wgmma_issued, tma_before = emu::S().tma_issued;
  set_order(0);
  forward(p, MB_CUDA_ATTN_FLASH, "bf16 D=64  L129-pad          env 6,1", 1);
  const long long after_fwd = emu::S().wgmma_issued, tma = emu::S().tma_issued - tma_before;
  backward(p, MB_CUDA_ATTN_FLASH, "bf16 D=64  L129-pad          env 6,1");
  unsetenv("MAMBERT_ATTN_TILING");
  printf("wgmma issued: forward %lld (TMA boxes %lld), backward %lld\n", after_fwd - before, tma,
         emu::S().wgmma_issued - after_fwd);
  assert_true(after_fwd > before);
  assert_true(tma > 0);
  assert_true(emu::S().wgmma_issued > after_fwd);

  /* unset, with the tilings set back to -1 (chosen again): sm_90's default,
   * forward tiling 5 (TMA) and backward tiling 3 (wgmma) at both head dims */
  assert_int_equal(mb_cuda_attn_set_flash_fwd_variant(-1), MB_OK);
  assert_int_equal(mb_cuda_attn_set_flash_bwd_variant(-1), MB_OK);
  problem p128;
  problem_init(p128, cases[2], MB_BF16, 128);
  problem *ps[2] = {&p, &p128};
  for (int i = 0; i < 2; i++) {
    const char *label = i ? "bf16 D=128 L129-pad          default" : "bf16 D=64  L129-pad          default";
    const long long tma0 = emu::S().tma_issued;
    forward(*ps[i], MB_CUDA_ATTN_FLASH, label, 1);
    const long long w0 = emu::S().wgmma_issued;
    backward(*ps[i], MB_CUDA_ATTN_FLASH, label);
    printf("default tilings at D=%d: forward TMA boxes %lld, backward wgmma %lld\n", i ? 128 : 64,
           emu::S().tma_issued - tma0, emu::S().wgmma_issued - w0);
    assert_true(emu::S().tma_issued > tma0);
    assert_true(emu::S().wgmma_issued > w0);
  }
}

/* The emulator's wgmma operand addressing against the PTX ISA's worked
 * examples ("Shared Memory Matrix Layout", canonical layouts), which give
 * each layout exactly as a CuTe shape:stride in elements:
 *   K-major, no swizzle, tf32 (T = 4, LBO 64, SBO 32 elements):
 *     ((8,2),(4,4)):((4,32),(1,64))  -- (row, k) -> offset
 *   MN-major, no swizzle, bf16 (T = 8, LBO 128, SBO 64 elements):
 *     ((8,1,2),(8,2)):((1,8,64),(8,128))  -- (mn, k) -> offset
 * and the 8-bit K-major form the fp8 kernel uses (16 elements per core
 * matrix row, LBO 128 bytes, SBO 8 rows x 64 bytes). */
static uint64_t emu_desc(uint32_t lbo_bytes, uint32_t sbo_bytes) {
  return ((uint64_t)(lbo_bytes >> 4) << 16) | ((uint64_t)(sbo_bytes >> 4) << 32); /* start 0, no swizzle */
}

static void test_wgmma_layouts(void **state) {
  (void)state;
  emu::State &s = emu::S();
  s.smem.assign(16384, 0);
  s.unfenced_by.assign(s.smem.size() / 16 + 1, 0);
  const unsigned char *base = s.smem.data();
  for (int r = 0; r < 16; r++)
    for (int k = 0; k < 16; k++) {
      const size_t want = (size_t)(r % 8) * 4 + (r / 8) * 32 + (k % 4) + (k / 4) * 64; /* elements */
      const unsigned char *e = emu::wgmma_elem(emu_desc(64 * 4, 32 * 4), false, r, k, 4);
      assert_non_null(e);
      assert_int_equal((size_t)(e - base), want * 4);
    }
  for (int mn = 0; mn < 16; mn++)
    for (int k = 0; k < 16; k++) {
      const size_t want = (size_t)(mn % 8) + (mn / 8) * 64 + (k % 8) * 8 + (k / 8) * 128;
      const unsigned char *e = emu::wgmma_elem(emu_desc(128 * 2, 64 * 2), true, mn, k, 2);
      assert_non_null(e);
      assert_int_equal((size_t)(e - base), want * 2);
    }
  for (int r = 0; r < 16; r++)
    for (int k = 0; k < 64; k++) {
      const size_t want = (size_t)(r % 8) * 16 + (r / 8) * 512 + (k % 16) + (k / 16) * 128;
      const unsigned char *e = emu::wgmma_elem(emu_desc(128, 512), false, r, k, 1);
      assert_non_null(e);
      assert_int_equal((size_t)(e - base), want);
    }
  /* The 128-byte swizzle (mode 1), as TMA writes tiles for tiling 5:
   * CUTLASS's canonical layouts (see wgmma_elem) with Swizzle<3,4,3>, the
   * 16-byte chunk XOR the row within 8, on byte offsets. Two values by
   * hand first: K-major bf16, row 1 k 0 sits at 128 + 16 (chunk 0 ^ 1);
   * row 3 k 8 (chunk 1) at 3 x 128 + 16 (1 ^ 3 = 2) x 2 ... = 416. */
  const uint64_t sw = 1ull << 62;
  assert_int_equal((size_t)(emu::wgmma_elem(emu_desc(16, 1024) | sw, false, 1, 0, 2) - base), 144);
  assert_int_equal((size_t)(emu::wgmma_elem(emu_desc(16, 1024) | sw, false, 3, 8, 2) - base), 416);
  auto swz = [](size_t b) { return b ^ (((b >> 7) & 7) << 4); };
  for (int kk = 0; kk < 4; kk++) /* the k-steps of 16 within a 64-column chunk: start + 32 kk bytes */
    for (int r = 0; r < 64; r++)
      for (int k = 0; k < 16; k++) {
        const uint64_t desc = emu_desc(16, 1024) | sw | (uint64_t)(2 * kk);
        const size_t want = swz((size_t)(r % 8) * 128 + (r / 8) * 1024 + 32 * kk + 2 * k);
        const unsigned char *e = emu::wgmma_elem(desc, false, r, k, 2);
        assert_non_null(e);
        assert_int_equal((size_t)(e - base), want);
      }
  for (int mn = 0; mn < 128; mn++) /* MN-major: 64 columns per 128-byte row, the next 64 LBO = 8192 on */
    for (int k = 0; k < 16; k++) {
      const size_t want = swz((size_t)(mn % 64) * 2 + (mn / 64) * 8192 + (k % 8) * 128 + (k / 8) * 1024);
      const unsigned char *e = emu::wgmma_elem(emu_desc(8192, 1024) | sw, true, mn, k, 2);
      assert_non_null(e);
      assert_int_equal((size_t)(e - base), want);
    }
  /* The 64-byte swizzle (mode 2), K-major, as TMA writes e4m3 rows of 64
   * bytes (head_dim 64) for the warp-specialised fp8 forward: CUTLASS's
   * Swizzle<2,4,3>, chunk bits 4-5 XOR address bits 7-8. By hand: row 2 k 0
   * at 128 + 16 (chunk 0 ^ 1); row 3 k 16 (chunk 1, 3 x 64 + 16 = 208,
   * bits 7-8 = 1) at 192 (1 ^ 1 = 0); then every row and k-step (+32
   * bytes) of a 64-row tile against the formula. */
  const uint64_t sw64 = 2ull << 62;
  assert_int_equal((size_t)(emu::wgmma_elem(emu_desc(16, 512) | sw64, false, 2, 0, 1) - base), 144);
  assert_int_equal((size_t)(emu::wgmma_elem(emu_desc(16, 512) | sw64, false, 3, 16, 1) - base), 192);
  auto swz64 = [](size_t b) { return b ^ (((b >> 7) & 3) << 4); };
  for (int kk = 0; kk < 2; kk++)
    for (int r = 0; r < 64; r++)
      for (int k = 0; k < 32; k++) {
        const uint64_t desc = emu_desc(16, 512) | sw64 | (uint64_t)(2 * kk);
        const size_t want = swz64((size_t)(r % 8) * 64 + (r / 8) * 512 + 32 * kk + k);
        const unsigned char *e = emu::wgmma_elem(desc, false, r, k, 1);
        assert_non_null(e);
        assert_int_equal((size_t)(e - base), want);
      }
  /* modes it does not model are errors, not wrong addresses (32 bytes;
   * 64 bytes MN-major); so is a swizzled start inside the pattern (it
   * would need the base offset), or a K-major k past the swizzled row */
  const long long errors = s.errors;
  assert_null(emu::wgmma_elem(emu_desc(128, 512) | (3ull << 62), false, 0, 0, 2));
  assert_true(s.errors > errors);
  assert_null(emu::wgmma_elem(emu_desc(16, 1024) | sw | (128 >> 4), false, 0, 0, 2));
  assert_true(s.errors > errors + 1);
  assert_null(emu::wgmma_elem(emu_desc(16, 512) | sw64, true, 0, 0, 1));
  assert_true(s.errors > errors + 2);
  assert_null(emu::wgmma_elem(emu_desc(16, 512) | sw64 | (64 >> 4), false, 0, 0, 1));
  assert_true(s.errors > errors + 3);
  assert_null(emu::wgmma_elem(emu_desc(16, 512) | sw64 | 2, false, 0, 32, 1));
  assert_true(s.errors > errors + 4);
  s.errors = 0;
  s.first_error[0] = 0;
}

/* The Hopper probe (attention_probe.cu) on the emulator: every probe exact
 * (the emulator decodes the layouts as the probe writes them; on a GPU the
 * same probe checks the hardware's reading). */
static void test_hopper_probe(void **state) {
  (void)state;
  gvec<unsigned char> ws(mb_cuda_attn_hopper_probe_workspace());
  char report[2048];
  int failed = -1;
  set_order(1);
  assert_int_equal(mb_cuda_attn_hopper_probe(ws.data(), ws.size(), report, sizeof report, &failed), MB_OK);
  expect_no_emu_error("hopper probe");
  printf("%s", report);
  assert_int_equal(failed, 0);
  assert_int_equal(mb_cuda_attn_hopper_probe(ws.data(), 16, report, sizeof report, &failed), MB_EINVAL);
}

/* Tiling 3 exists for head_dim 64 only: at 128 the forward refuses. */
static void test_tiling3_head_dim(void **state) {
  (void)state;
  problem p;
  problem_init(p, cases[1], MB_BF16, 128);
  assert_int_equal(mb_cuda_attn_set_flash_fwd_variant(3), MB_OK);
  const int rc = mb_cuda_attn_fwd_with(MB_CUDA_ATTN_FLASH, &p.d, MB_BF16, p.dev_q.data(), p.dev_k.data(),
                                       p.dev_v.data(), p.out.data(), p.lse.data(), NULL);
  assert_int_equal(mb_cuda_attn_set_flash_fwd_variant(0), MB_OK);
  assert_int_equal(rc, MB_EUNSUPPORTED);
  assert_non_null(strstr(mb_error_message(), "head_dim 64 only"));
}

/* setmaxnreg's split needs the registers ptxas gives at launch (AttnRegSplit:
 * 168 per thread for 24 / 240, all that 384 threads can have): a kernel
 * built with fewer (say under -maxrregcount) would leave its consumers
 * waiting for ever on a GPU, so the launchers refuse it, naming the kernel. */
static void test_setmaxnreg_guard(void **state) {
  (void)state;
  static_assert(AttnRegSplit<24, 240, 256>::launch_min == 168 && AttnRegSplit<24, 240, 256>::launch_max == 168,
                "tilings 5-7 and backward tiling 2: no register to spare");
  static_assert(AttnRegSplit<40, 224, 256>::launch_min == 163, "e4m3 tiling 8 (the producer's warps transpose)");
  static_assert(AttnRegSplit<24, 160, 384>::launch_min == 126 && AttnRegSplit<24, 160, 384>::launch_max == 128,
                "three consumer warpgroups");
  problem p;
  problem_init(p, cases[1], MB_BF16, 64);
  set_order(0);
  emu::S().func_regs = 167;
  assert_int_equal(mb_cuda_attn_set_flash_fwd_variant(7), MB_OK);
  int rc = mb_cuda_attn_fwd_with(MB_CUDA_ATTN_FLASH, &p.d, MB_BF16, p.dev_q.data(), p.dev_k.data(), p.dev_v.data(),
                                 p.out.data(), p.lse.data(), NULL);
  assert_int_equal(rc, MB_EUNSUPPORTED);
  assert_non_null(strstr(mb_error_message(), "attn_hopper_fwd_ws_kernel was built with 167 registers"));
  assert_int_equal(mb_cuda_attn_set_flash_fwd_variant(0), MB_OK);
  assert_int_equal(mb_cuda_attn_set_flash_bwd_variant(2), MB_OK);
  rc = mb_cuda_attn_bwd_with(MB_CUDA_ATTN_FLASH, &p.d, MB_BF16, p.dev_q.data(), p.dev_k.data(), p.dev_v.data(),
                             p.out.data(), p.lse.data(), p.dev_dout.data(), p.dq.data(), p.dk.data(), p.dv.data(),
                             p.ws.data(), p.ws.size(), NULL);
  assert_int_equal(rc, MB_EUNSUPPORTED);
  assert_non_null(strstr(mb_error_message(), "needs at least 168 at launch"));
  emu::S().func_regs = 168;
  assert_int_equal(mb_cuda_attn_set_flash_bwd_variant(0), MB_OK);
  expect_no_emu_error("setmaxnreg guard");
}

/* The process-wide kernel switches back to their defaults (a failed test
 * may have left them set). */
static void reset_switches() {
  assert_int_equal(mb_cuda_attn_set_flash_fwd_variant(0), MB_OK);
  assert_int_equal(mb_cuda_attn_set_flash_bwd_variant(0), MB_OK);
  assert_int_equal(mb_cuda_attn_set_deterministic(1), MB_OK);
}

/* One backward run: its label's tag, the backward tiling and the dQ mode. */
struct bwd_run {
  const char *tag;
  int variant, deterministic;
};

/* p's backward as run b, labelled "<prefix> <tag>"; the switches back to
 * tiling 0, deterministic, after it. */
static void backward_as(problem &p, const char *prefix, const bwd_run &b) {
  char label[112];
  snprintf(label, sizeof label, "%s %s", prefix, b.tag);
  assert_int_equal(mb_cuda_attn_set_flash_bwd_variant(b.variant), MB_OK);
  assert_int_equal(mb_cuda_attn_set_deterministic(b.deterministic), MB_OK);
  backward(p, MB_CUDA_ATTN_FLASH, label);
  assert_int_equal(mb_cuda_attn_set_flash_bwd_variant(0), MB_OK);
  assert_int_equal(mb_cuda_attn_set_deterministic(1), MB_OK);
}

/* Backward tilings 2 to 4 on p, each as backward_as runs it; tiling 4
 * (128-query tiles; head_dim 64: at 128 it runs tiling 3's kernel) must
 * give tiling 3's bits: the same products summed in the same order. The
 * fast modes' dq sums in the order the reduces land, so there dk and dv. */
static void backward_ws_tilings(problem &p, const char *prefix) {
  gvec<unsigned char> dq3, dk3, dv3, dk3f, dv3f;
  long long wgmma3 = 0; /* tiling 3's wgmma count: tiling 4's must differ (its own kernel ran, not 3's) */
  for (const bwd_run &b : {bwd_run{"flash-b2", 2, 1}, bwd_run{"flash-b2f", 2, 0}, bwd_run{"flash-b3", 3, 1},
                           bwd_run{"flash-b3f", 3, 0}, bwd_run{"flash-b4", 4, 1}, bwd_run{"flash-b4f", 4, 0}}) {
    if (b.variant == 4 && p.d.head_dim != 64)
      continue;
    const long long before = emu::S().wgmma_issued;
    backward_as(p, prefix, b);
    const long long issued = emu::S().wgmma_issued - before;
    if (b.variant == 3 && b.deterministic)
      wgmma3 = issued;
    else if (b.variant == 4 && b.deterministic && issued == wgmma3)
      fail_msg("%s %s: as many wgmma as tiling 3 (%lld): its 128-query kernel did not run", prefix, b.tag, issued);
    if (b.variant == 3 && b.deterministic) {
      dq3 = p.dq, dk3 = p.dk, dv3 = p.dv;
    } else if (b.variant == 3) {
      dk3f = p.dk, dv3f = p.dv;
    } else if (b.variant == 4 && (p.dk != (b.deterministic ? dk3 : dk3f) || p.dv != (b.deterministic ? dv3 : dv3f) ||
                                  (b.deterministic && p.dq != dq3))) {
      fail_msg("%s %s: the gradients differ from tiling 3's", prefix, b.tag);
    }
  }
}

/* Tilings 9 and 10 are tilings 6 and 5 with some of the softmax's
 * exponentials on the FMA pipe (attn_exp2_fma): within the error bound
 * (forward checked that), but not their base's bits where a row has more
 * than one key -- the same bits would mean the polynomial never ran. */
static void expect_exp_on_fma(const problem &p, const gvec<unsigned char> &base_out, const char *label) {
  if (p.d.seqlen > 1 && base_out == p.out)
    fail_msg("%s: the same bits as its tiling without the polynomial (were any exponentials taken on the FMA "
             "pipe?)",
             label);
}

static void test_flash_bf16(void **state) {
  (void)state;
  reset_switches();
  for (const ecase &c : cases)
    for (int D : {64, 128}) {
      problem p;
      problem_init(p, c, MB_BF16, D);
      char label[96];
      gvec<unsigned char> v5_out, v6_out;
      gvec<float> v5_lse;
      for (int variant : {1, 2, 3, 4, 5, 7, 8, 10, 6, 9, 0}) {
        if (variant == 3 && D != 64)
          continue; /* tiling 3: head_dim 64 only */
        assert_int_equal(mb_cuda_attn_set_flash_fwd_variant(variant), MB_OK);
        snprintf(label, sizeof label, "bf16 D=%-3d %-17s flash-v%d", D, c.name, variant);
        /* tilings 5-10 twice: TMA lands late in one order, early in the next */
        forward(p, MB_CUDA_ATTN_FLASH, label, variant == 0 || variant >= 5 ? 2 : 1);
        if (variant == 6)
          v6_out = p.out;
        else if (variant == 9)
          expect_exp_on_fma(p, v6_out, label);
        else if (variant == 10)
          expect_exp_on_fma(p, v5_out, label);
        if (variant == 5) {
          v5_out = p.out;
          v5_lse = p.lse;
        } else if ((variant == 7 || variant == 8) &&
                   (v5_out != p.out || memcmp(v5_lse.data(), p.lse.data(), p.nl * sizeof(float)))) {
          /* tiling 7 is tiling 5's kernel walking the tiles on 3 CTAs (the
           * emulator's 3 SMs), 8 the same with 192-row tiles at D = 64:
           * every row sees the same products in the same order, so the
           * same bits */
          fail_msg("%s: the persistent forward differs from tiling 5", label);
        }
      }
      snprintf(label, sizeof label, "bf16 D=%-3d %-17s", D, c.name);
      /* tiling 0 fast and deterministic, tiling 1, tiling 2 (the
       * warp-specialised kernels: TMA, mbarriers) and its fast mode (dQ by
       * f32 atomics in the dK/dV kernel), tiling 3 (dQ by bulk reduces: in
       * key-tile order, then in any order) */
      for (const bwd_run &b : {bwd_run{"flash-fs", 0, 0}, bwd_run{"flash-dt", 0, 1}, bwd_run{"flash-b1", 1, 1}})
        backward_as(p, label, b);
      backward_ws_tilings(p, label);
    }
}

/* dq is linear in dO: dO x 2^40 gives dq x 2^40 (exact power of two),
 * finite: the deterministic dQ pass has no range limit. */
static void test_dq_large(void **state) {
  (void)state;
  problem p;
  problem_init(p, cases[2], MB_BF16, 64);
  std::vector<float> dq[2];
  const float big = 1099511627776.0f; /* 2^40 */
  for (int k = 0; k < 2; k++) {
    if (k == 1) {
      for (float &x : p.dout)
        x *= big;
      p.dev_dout = to_dev(p.dout, MB_BF16);
    }
    set_order(0);
    poison(p);
    assert_int_equal(mb_cuda_attn_fwd_with(MB_CUDA_ATTN_FLASH, &p.d, MB_BF16, p.dev_q.data(), p.dev_k.data(),
                                           p.dev_v.data(), p.out.data(), p.lse.data(), NULL),
                     MB_OK);
    gvec<unsigned char> out = p.out;
    gvec<float> lse = p.lse;
    assert_int_equal(mb_cuda_attn_bwd_with(MB_CUDA_ATTN_FLASH, &p.d, MB_BF16, p.dev_q.data(), p.dev_k.data(),
                                           p.dev_v.data(), out.data(), lse.data(), p.dev_dout.data(), p.dq.data(),
                                           p.dk.data(), p.dv.data(), p.ws.data(), p.ws.size(), NULL),
                     MB_OK);
    expect_no_emu_error("dq large");
    dq[k] = from_dev(p.dq, p.n, MB_BF16);
  }
  double num = 0, den = 0;
  size_t bad = 0;
  for (size_t i = 0; i < p.n; i++) {
    bad += !std::isfinite(dq[1][i]);
    const double d = (double)dq[1][i] / big - dq[0][i];
    num += d * d;
    den += (double)dq[0][i] * dq[0][i];
  }
  const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  printf("dq with dO x 2^40: %zu of %zu not finite, relative difference from 2^40 dq %.2e\n", bad, p.n, rel);
  assert_int_equal(bad, 0);
  assert_true(rel < 1e-2);
}

static void test_flash_f16(void **state) {
  (void)state;
  reset_switches();
  for (int ci : {2, 5})
    for (int D : {64, 128}) {
      problem p;
      problem_init(p, cases[ci], MB_F16, D);
      char label[96];
      gvec<unsigned char> v5_out, v6_out;
      for (int variant : {2, 3, 4, 5, 6, 7, 8, 9, 10, 0}) {
        if (variant == 3 && D != 64)
          continue;
        assert_int_equal(mb_cuda_attn_set_flash_fwd_variant(variant), MB_OK);
        snprintf(label, sizeof label, "f16  D=%-3d %-17s flash-v%d", D, cases[ci].name, variant);
        forward(p, MB_CUDA_ATTN_FLASH, label, 1);
        if (variant == 5 || variant == 6)
          (variant == 5 ? v5_out : v6_out) = p.out;
        else if (variant >= 9)
          expect_exp_on_fma(p, variant == 9 ? v6_out : v5_out, label);
      }
      snprintf(label, sizeof label, "f16  D=%-3d %-17s", D, cases[ci].name);
      for (const bwd_run &b : {bwd_run{"flash-b0", 0, 1}, bwd_run{"flash-b1", 1, 1}})
        backward_as(p, label, b);
      backward_ws_tilings(p, label);
    }
}

static void test_flash_fp8(void **state) {
  (void)state;
  reset_switches();
  /* forward tilings 2-3 take the fp8 wgmma kernel, 4-6 its pipelined form,
   * 7-8 the warp-specialised persistent one (TMA with the 128-byte swizzle
   * at D = 128, the 64-byte one at D = 64; 7: each consumer warpgroup
   * transposes V, 8: the producer's warps do; 9: 8 with some exponentials on the FMA pipe);
   * L600-causal: five key tiles, so the kernels refill stages;
   * varlen: the NaN tail past the last sequence reaches V through TMA */
  for (int ci : {2, 3, 4, 5, 7, 8})
    for (int D : {64, 128}) {
      problem p;
      problem_init(p, cases[ci], MB_F8E4M3, D);
      char label[96];
      gvec<unsigned char> pipe_out;
      gvec<float> pipe_lse;
      for (int variant : {4, 7, 8, 9, 2, 0}) {
        if ((ci == 5 || ci == 8) && (variant == 2 || variant == 0))
          continue; /* the varlen cases are for the TMA kernels' tails and tile search */
        assert_int_equal(mb_cuda_attn_set_flash_fwd_variant(variant), MB_OK);
        snprintf(label, sizeof label, "e4m3 D=%-3d %-17s flash-%s", D, cases[ci].name,
                 variant == 4   ? "pipe"
                 : variant == 7 ? "ws"
                 : variant == 8 ? "wsp"
                 : variant == 9 ? "wspf"
                 : variant      ? "wg"
                                : "v0");
        forward(p, MB_CUDA_ATTN_FLASH_FP8, label);
        if (variant == 4) {
          pipe_out = p.out;
          pipe_lse = p.lse;
        } else if (variant == 9) { /* tiling 8's kernel with polynomial exponentials: not its bits */
          expect_exp_on_fma(p, pipe_out, label);
        } else if (variant >= 7 &&
                   (pipe_out != p.out || memcmp(pipe_lse.data(), p.lse.data(), p.nl * sizeof(float)))) {
          /* the same products in the same order, V^T's keys past the end
           * zeros as the pipelined kernel loads them: the same bits */
          fail_msg("%s: the warp-specialised fp8 forward differs from the pipelined one", label);
        }
      }
    }
}

static void test_reference(void **state) {
  (void)state;
  const struct {
    int ci;
    mb_dtype dt;
    int D;
  } runs[] = {{1, MB_F32, 64}, {3, MB_F32, 128}, {4, MB_F32, 64}, {5, MB_BF16, 128}, {2, MB_F8E4M3, 64}};
  for (const auto &r : runs) {
    problem p;
    problem_init(p, cases[r.ci], r.dt, r.D);
    char label[96];
    snprintf(label, sizeof label, "%-4s D=%-3d %-17s ref     ", mb_dtype_name(r.dt), r.D, cases[r.ci].name);
    if (r.dt == MB_F8E4M3) { /* no fp8 backward */
      forward(p, MB_CUDA_ATTN_REFERENCE, label);
      continue;
    }
    forward(p, MB_CUDA_ATTN_REFERENCE, label);
    backward(p, MB_CUDA_ATTN_REFERENCE, label);
  }
}

/* attn_exp2_fma (tilings 9 and 10's exponentials on the FMA pipe) runs here as the
 * GPU runs it: IEEE adds, fused multiply-adds and a power-of-two multiply,
 * each rounded once, so these are the GPU's bits. Within the polynomial's
 * 7.48e-5 of 2^x over the whole range a softmax meets (P = 2^x, x <= 0;
 * the fp8 kernels' x <= 8), every integer x the same mantissa (2^j lands
 * in the exponent), -inf (a masked score) a normal number no larger than
 * 2^-124, NaN still NaN; and the columns chosen: 3 of 16, spread out. */
static void test_exp2_fma(void **state) {
  (void)state;
  double worst = 0, worst_x = 0;
  const int n = 1 << 22;
  for (int i = 0; i <= n; i++) {
    const float x = -125.0f + 133.0f * (float)i / (float)n;
    const double want = std::exp2((double)x), rel = std::fabs(attn_exp2_fma(x) - want) / want;
    if (rel > worst) {
      worst = rel;
      worst_x = x;
    }
  }
  printf("attn_exp2_fma: largest relative error %.3e (at x = %.6g) over %d points of [-125, 8]\n", worst, worst_x,
         n + 1);
  assert_true(worst < 7.5e-5);
  assert_true(worst > 1e-5); /* a polynomial, not exp2f by mistake */
  const float one = attn_exp2_fma(0.0f);
  for (int j = -125; j <= 8; j++)
    assert_true(attn_exp2_fma((float)j) == std::ldexp(one, j));
  const float masked = attn_exp2_fma(-INFINITY);
  assert_true(masked > 0.0f && masked <= std::ldexp(1.0f, -124) && std::fpclassify(masked) == FP_NORMAL);
  assert_true(std::isnan(attn_exp2_fma(NAN)));
  int chosen = 0;
  for (int nj = 0; nj < 16; nj++) {
    chosen += attn_exp_on_fma<16, 3>(nj);
    assert_false((attn_exp_on_fma<16, 0>(nj)));
  }
  assert_int_equal(chosen, 3);
  assert_true((attn_exp_on_fma<16, 3>(0) && attn_exp_on_fma<16, 3>(6) && attn_exp_on_fma<16, 3>(11)));
}

int main(void) {
  at_seed_init("cuda_attention_emulated");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_wgmma_layouts), cmocka_unit_test(test_env_tiling),
      cmocka_unit_test(test_hopper_probe),  cmocka_unit_test(test_exp2_fma),
      cmocka_unit_test(test_flash_bf16),    cmocka_unit_test(test_flash_f16),
      cmocka_unit_test(test_dq_large),      cmocka_unit_test(test_tiling3_head_dim),
      cmocka_unit_test(test_setmaxnreg_guard),
      cmocka_unit_test(test_flash_fp8),  cmocka_unit_test(test_reference),
  };
  if (const char *only = getenv("MAMBERT_EMU_TESTS")) /* e.g. test_flash_f16 (a glob) while checking a change */
    cmocka_set_test_filter(only);
  const int failed = cmocka_run_group_tests(tests, NULL, NULL);
  printf("cuda_attention_emulated: %lld launches, %lld warp operations emulated\n", emu::S().launches,
         emu::S().collectives);
  return failed;
}
