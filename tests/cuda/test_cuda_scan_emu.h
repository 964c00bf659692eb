/* test_cuda_scan_emu.h: runs CUDA kernels written against
 * kernels/cuda/selective_scan_dev.cuh on the CPU, so that the CPU-only test
 * suite exercises the real kernel source (index arithmetic, warp scans,
 * shared-memory reductions, barriers, the host-side drivers) against the
 * CPU reference. Include it before the kernel headers, from C++.
 *
 * Model: a grid runs one block at a time; each thread of the block is a
 * fiber with its own stack, switched only at synchronisation
 * points: __syncthreads (sc_sync) and every warp shuffle. Shuffles follow
 * CUDA's full-mask semantics: each lane posts its value, the warp's 32 lanes
 * meet, each reads its source lane's value. Between two barriers each warp
 * runs to the barrier before the next warp starts, in ascending warp order
 * in one phase and descending in the next, so a read of shared memory that
 * lacks a barrier after another warp's write sees the stale value (shared
 * memory starts as NaN) in one of the two orders. The emulator stops the test with a message when a
 * barrier can never complete (some threads exited or wait elsewhere) or the
 * lanes of a warp are at different shuffles.
 *
 * It cannot see what only hardware shows: data races between barriers that
 * happen to be ordered here, register pressure, speed. Those are for the
 * GPU tests. Under AddressSanitizer the fiber switches are annotated.
 */
#ifndef MB_TESTS_CUDA_SCAN_EMU_H
#define MB_TESTS_CUDA_SCAN_EMU_H

#ifdef __CUDACC__
#error "test_cuda_scan_emu.h is for host compilers"
#endif

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <functional>
#include <vector>

#include "runtime/dtype.h"
#include "runtime/error.h"

#if defined(__SANITIZE_ADDRESS__)
#define SC_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SC_EMU_ASAN 1
#endif
#endif
#ifdef SC_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

/* Fiber switching. On x86-64 a hand-written switch (callee-saved
 * registers, the stack pointer, MXCSR and the x87 control word): no system
 * call per switch, unlike swapcontext's signal-mask save and restore, which
 * made the emulation ~20 times slower. Elsewhere: ucontext. */
#if defined(__x86_64__) && !defined(SC_EMU_UCONTEXT)
#define SC_EMU_ASM_SWITCH 1
extern "C" void sc_emu_switch(void **save_sp, void *load_sp);
__asm__(".text\n"
        ".globl sc_emu_switch\n"
        ".type sc_emu_switch,@function\n"
        "sc_emu_switch:\n"
        "  pushq %rbp\n"
        "  pushq %rbx\n"
        "  pushq %r12\n"
        "  pushq %r13\n"
        "  pushq %r14\n"
        "  pushq %r15\n"
        "  subq $8, %rsp\n"
        "  stmxcsr (%rsp)\n"
        "  fnstcw 4(%rsp)\n"
        "  movq %rsp, (%rdi)\n"
        "  movq %rsi, %rsp\n"
        "  ldmxcsr (%rsp)\n"
        "  fldcw 4(%rsp)\n"
        "  addq $8, %rsp\n"
        "  popq %r15\n"
        "  popq %r14\n"
        "  popq %r13\n"
        "  popq %r12\n"
        "  popq %rbx\n"
        "  popq %rbp\n"
        "  ret\n"
        ".size sc_emu_switch, .-sc_emu_switch\n"
        ".section .note.GNU-stack,\"\",@progbits\n"
        ".text\n");
#endif

namespace sc_emu {

enum fstate { F_RUN, F_BLOCK, F_WARP, F_DONE };

struct fiber {
  ucontext_t ctx; /* ucontext switching */
  void *sp;       /* asm switching: the saved stack pointer */
  fstate st;
  long long shuffles, syncs; /* how many of each this thread has done */
  void *fake_stack;          /* ASan's per-fiber bookkeeping */
};

struct runtime {
  int nthreads = 0;
  std::vector<fiber> f;
  std::vector<char *> stacks;
  size_t stack_bytes = 512 * 1024;
  ucontext_t sched;
  void *sched_sp = nullptr;
  int cur = -1;
  long long bid = 0, nblocks = 0;
  std::vector<unsigned char> smem;
  std::vector<float> xch; /* [warps][2][32]: shuffle mailboxes, double-buffered */
  std::function<void()> body;
  const void *sched_bottom = nullptr;
  size_t sched_size = 0;
  void *sched_fake = nullptr;
  long long switches = 0;
  /* The fiber stacks are cached across launches; a test that never calls
   * release_stacks() still frees them at exit (LeakSanitizer checks after). */
  ~runtime() {
    for (char *s : stacks)
      free(s);
  }
};

inline runtime &rt() {
  static runtime r;
  return r;
}

[[noreturn]] inline void die(const char *what) {
  runtime &r = rt();
  fprintf(stderr, "cuda emulator: %s (block %lld of %lld, %d threads)\n", what, r.bid, r.nblocks, r.nthreads);
  int counts[4] = {0, 0, 0, 0};
  for (int i = 0; i < r.nthreads; i++)
    counts[r.f[i].st]++;
  fprintf(stderr, "cuda emulator: threads running %d, at a barrier %d, at a shuffle %d, exited %d\n", counts[F_RUN],
          counts[F_BLOCK], counts[F_WARP], counts[F_DONE]);
  abort();
}

inline void fiber_entry();

/* scheduler -> fiber i */
inline void switch_to_fiber(int i) {
  runtime &r = rt();
  r.cur = i;
  r.switches++;
#ifdef SC_EMU_ASAN
  __sanitizer_start_switch_fiber(&r.sched_fake, r.stacks[i], r.stack_bytes);
#endif
#ifdef SC_EMU_ASM_SWITCH
  sc_emu_switch(&r.sched_sp, r.f[i].sp);
#else
  swapcontext(&r.sched, &r.f[i].ctx);
#endif
#ifdef SC_EMU_ASAN
  __sanitizer_finish_switch_fiber(r.sched_fake, nullptr, nullptr);
#endif
}

/* fiber -> scheduler */
inline void yield_to_sched() {
  runtime &r = rt();
  fiber &me = r.f[r.cur];
  r.switches++;
#ifdef SC_EMU_ASAN
  __sanitizer_start_switch_fiber(&me.fake_stack, r.sched_bottom, r.sched_size);
#endif
#ifdef SC_EMU_ASM_SWITCH
  sc_emu_switch(&me.sp, r.sched_sp);
#else
  swapcontext(&me.ctx, &r.sched);
#endif
#ifdef SC_EMU_ASAN
  __sanitizer_finish_switch_fiber(me.fake_stack, &r.sched_bottom, &r.sched_size);
#endif
}

inline void fiber_entry() {
  runtime &r = rt();
#ifdef SC_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &r.sched_bottom, &r.sched_size);
#endif
  r.body();
  r.f[r.cur].st = F_DONE;
#ifdef SC_EMU_ASAN
  __sanitizer_start_switch_fiber(nullptr, r.sched_bottom, r.sched_size);
#endif
#ifdef SC_EMU_ASM_SWITCH
  void *dead;
  sc_emu_switch(&dead, r.sched_sp); /* never comes back */
#else
  setcontext(&r.sched);
#endif
  die("a finished fiber was resumed");
}

/* A fresh fiber on stack i that starts in fiber_entry. */
inline void fiber_init(int i) {
  runtime &r = rt();
  fiber &fb = r.f[i];
#ifdef SC_EMU_ASAN
  /* the previous block's fiber left its frames' redzones poisoned here */
  ASAN_UNPOISON_MEMORY_REGION(r.stacks[i], r.stack_bytes);
#endif
#ifdef SC_EMU_ASM_SWITCH
  /* what sc_emu_switch pops: MXCSR/x87 word, r15..r12, rbx, rbp, then the
   * return address (fiber_entry), above it a slot standing for fiber_entry's
   * own return address, so that it starts with rsp = 8 (mod 16) as if called */
  uintptr_t top = ((uintptr_t)r.stacks[i] + r.stack_bytes) & ~(uintptr_t)15;
  uint64_t *sp = (uint64_t *)top;
  *--sp = 0; /* fiber_entry's return address: never used */
  *--sp = (uint64_t)(uintptr_t)&fiber_entry;
  for (int k = 0; k < 6; k++)
    *--sp = 0; /* rbp rbx r12 r13 r14 r15 */
  uint32_t ctl[2];
  __asm__ volatile("stmxcsr %0" : "=m"(ctl[0]));
  __asm__ volatile("fnstcw %0" : "=m"(ctl[1]));
  --sp;
  memcpy(sp, ctl, sizeof ctl);
  fb.sp = sp;
#else
  if (getcontext(&fb.ctx) != 0)
    die("getcontext failed");
  fb.ctx.uc_stack.ss_sp = r.stacks[i];
  fb.ctx.uc_stack.ss_size = r.stack_bytes;
  fb.ctx.uc_link = nullptr;
  makecontext(&fb.ctx, fiber_entry, 0);
#endif
}

inline void run_block() {
  runtime &r = rt();
  const int n = r.nthreads;
  for (int i = 0; i < n; i++) {
    fiber &fb = r.f[i];
    fiber_init(i);
    fb.st = F_RUN;
    fb.shuffles = fb.syncs = 0;
    fb.fake_stack = nullptr;
  }
  memset(r.smem.data(), 0xff, r.smem.size()); /* NaN in every float format */
  for (size_t i = 0; i < r.xch.size(); i++)
    r.xch[i] = NAN;
  const int nwarps = n / 32;
  for (long long phase = 0;; phase++) {
    /* Each warp runs as far as it can (through its shuffles, up to the next
     * __syncthreads or its end) before the next warp starts; the warp order
     * and the lane order flip every phase. So between two barriers one
     * warp's accesses come entirely before or entirely after another's. */
    const bool desc = phase & 1;
    for (int k = 0; k < nwarps; k++) {
      const int w = desc ? nwarps - 1 - k : k;
      for (;;) {
        for (int j = 0; j < 32; j++) {
          const int i = w * 32 + (desc ? 31 - j : j);
          if (r.f[i].st == F_RUN)
            switch_to_fiber(i);
        }
        r.cur = -1;
        int at_shuffle = 0;
        for (int l = 0; l < 32; l++)
          at_shuffle += r.f[w * 32 + l].st == F_WARP;
        if (at_shuffle == 0)
          break; /* the warp is at a barrier or done */
        if (at_shuffle != 32)
          die("deadlock: lanes of a warp diverged at a shuffle (some lanes at a barrier or exited)");
        for (int l = 1; l < 32; l++)
          if (r.f[w * 32 + l].shuffles != r.f[w * 32].shuffles)
            die("lanes of a warp met at different shuffles");
        for (int l = 0; l < 32; l++)
          r.f[w * 32 + l].st = F_RUN;
      }
    }
    int done = 0, at_block = 0;
    for (int i = 0; i < n; i++) {
      done += r.f[i].st == F_DONE;
      at_block += r.f[i].st == F_BLOCK;
    }
    if (done == n)
      return;
    if (at_block != n)
      die("deadlock: a __syncthreads that not every thread reaches (divergent barrier or an early exit)");
    for (int i = 1; i < n; i++)
      if (r.f[i].syncs != r.f[0].syncs)
        die("threads of a block met at different __syncthreads counts");
    for (int i = 0; i < n; i++)
      r.f[i].st = F_RUN;
  }
}

/* Runs body() as every thread of every block of a 1-D grid. */
inline void run_grid(long long blocks, int threads, size_t smem_bytes, std::function<void()> body) {
  runtime &r = rt();
  if (threads <= 0 || threads % 32 || threads > 1024)
    die("block size must be a multiple of 32 up to 1024");
  if ((int)r.stacks.size() < threads) {
    for (int i = (int)r.stacks.size(); i < threads; i++) {
      char *s = (char *)malloc(r.stack_bytes);
      if (!s)
        die("out of memory for fiber stacks");
      r.stacks.push_back(s);
    }
  }
  r.nthreads = threads;
  r.f.assign(threads, fiber());
  r.smem.assign(smem_bytes ? smem_bytes : 16, 0);
  r.xch.assign((size_t)threads / 32 * 2 * 32, 0.0f);
  r.body = std::move(body);
  r.nblocks = blocks;
  for (long long b = 0; b < blocks; b++) {
    r.bid = b;
    run_block();
  }
  r.body = nullptr;
}

inline void release_stacks() {
  runtime &r = rt();
  for (char *s : r.stacks)
    free(s);
  r.stacks.clear();
}

inline void sync_block() {
  runtime &r = rt();
  r.f[r.cur].st = F_BLOCK;
  r.f[r.cur].syncs++;
  yield_to_sched();
}

enum shfl_mode { SH_IDX, SH_UP, SH_DOWN, SH_XOR };

inline float shuffle(float v, shfl_mode mode, int arg) {
  runtime &r = rt();
  const int me = r.cur, lane = me & 31, warp = me >> 5;
  fiber &fb = r.f[me];
  float *box = &r.xch[((size_t)warp * 2 + (size_t)(fb.shuffles & 1)) * 32];
  box[lane] = v;
  fb.shuffles++;
  fb.st = F_WARP;
  yield_to_sched();
  int src = lane;
  switch (mode) {
  case SH_IDX: src = arg & 31; break;
  case SH_UP: src = lane - arg >= 0 ? lane - arg : lane; break;
  case SH_DOWN: src = lane + arg < 32 ? lane + arg : lane; break;
  case SH_XOR: src = (lane ^ arg) < 32 ? lane ^ arg : lane; break;
  }
  /* the mailbox is written again two shuffles later, after a meeting that
   * this lane can only reach once it has read it */
  return box[src];
}

} // namespace sc_emu

/* ---- the primitives selective_scan_dev.cuh expects ---- */

#define SC_EMULATION 1
#define SC_NS mb_scan_emu_impl
#define SC_DEV inline
#define SC_KERNEL inline
#define SC_BOUNDS(threads, min_blocks)
#define SC_UNROLL
#define SC_SMEM(name) unsigned char *name = sc_emu::rt().smem.data()

namespace SC_NS {
struct sc_bf16 {
  uint16_t bits;
};
struct sc_f16 {
  uint16_t bits;
};
struct sc_float4 {
  float x, y, z, w;
};
inline int sc_tid() { return sc_emu::rt().cur; }
inline long long sc_bid() { return sc_emu::rt().bid; }
inline long long sc_nblocks() { return sc_emu::rt().nblocks; }
inline void sc_sync() { sc_emu::sync_block(); }
inline float sc_shfl(float v, int src_lane) { return sc_emu::shuffle(v, sc_emu::SH_IDX, src_lane); }
inline float sc_shfl_up(float v, int delta) { return sc_emu::shuffle(v, sc_emu::SH_UP, delta); }
inline float sc_shfl_down(float v, int delta) { return sc_emu::shuffle(v, sc_emu::SH_DOWN, delta); }
inline float sc_shfl_xor(float v, int mask) { return sc_emu::shuffle(v, sc_emu::SH_XOR, mask); }
inline float sc_bf16_to_f32(sc_bf16 x) { return mb_bf16_to_f32(x.bits); }
inline sc_bf16 sc_f32_to_bf16(float x) { return sc_bf16{mb_f32_to_bf16(x)}; }
inline float sc_f16_to_f32(sc_f16 x) { return mb_f16_to_f32(x.bits); }
inline sc_f16 sc_f32_to_f16(float x) { return sc_f16{mb_f32_to_f16(x)}; }
/* like ex2.approx.ftz.f32: subnormal results flushed to zero */
inline float sc_exp2(float x) {
  const float y = exp2f(x);
  return fabsf(y) < 1.17549435e-38f ? 0.0f : y;
}
inline sc_float4 sc_ld4(const float *p) {
  if ((uintptr_t)p % 16)
    sc_emu::die("misaligned 16-byte shared-memory load");
  sc_float4 v;
  memcpy(&v, p, sizeof v);
  return v;
}
inline void sc_st4(float *p, sc_float4 v) {
  if ((uintptr_t)p % 16)
    sc_emu::die("misaligned 16-byte shared-memory store");
  memcpy(p, &v, sizeof v);
}
} // namespace SC_NS

/* The launch functor the drivers take: runs the grid on fibers, after the
 * checks a real launch would make (block size, shared memory within the
 * smallest limit we build for: sm_80's 163 KB per block). */
struct sc_emu_launch {
  long long launches = 0;
  template <class P>
  int operator()(void (*kernel)(P), long long blocks, int threads, size_t smem, const P &p, const char *what) {
    if (blocks < 1 || threads < 32 || threads > 1024 || threads % 32)
      return MB_ERR(MB_EINTERNAL, "%s: bad launch %lld x %d", what, blocks, threads);
    if (smem > 166912)
      return MB_ERR(MB_EUNSUPPORTED, "%s: %zu bytes of shared memory exceed sm_80's 166912", what, smem);
    launches++;
    P copy = p;
    sc_emu::run_grid(blocks, threads, smem, [kernel, copy]() { kernel(copy); });
    return MB_OK;
  }
};

#endif
