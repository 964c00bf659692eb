/* test_cuda_scan_plan.c: the GPU selective scan's and conv1d's host-side
 * arithmetic (kernels/cuda/selective_scan_plan.h, conv1d_plan.h): argument
 * checks, tile and group counts, shared memory within every target's
 * limit, the backward workspace layout (aligned, disjoint, the size the
 * header promises), and the states' shape equal to the CPU kernel's. Plain
 * C, no GPU, no CUDA toolkit. ctest: cuda_selective_scan_plan.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/cpu/selective_scan.h"
#include "kernels/cuda/conv1d_plan.h"
#include "kernels/cuda/selective_scan_plan.h"

/* sm_80 (A100) gives a block at most 163 KB of dynamic shared memory,
 * sm_90 (H100) 227 KB; we build for both. */
#define SMEM_LIMIT_SM80 166912u

static void test_geometry(void **state) {
  (void)state;
  /* the constants the kernels' static_asserts also check */
  assert_int_equal(MB_SCAN_FWD_SEGS * MB_SCAN_FWD_ITEMS, MB_SCAN_TILE);
  assert_int_equal(MB_SCAN_BWD_SEGS * MB_SCAN_BWD_ITEMS, MB_SCAN_TILE);
  assert_int_equal(MB_SCAN_GROUP * MB_SCAN_FWD_SEGS, MB_SCAN_FWD_THREADS);
  assert_int_equal(MB_SCAN_GROUP * MB_SCAN_BWD_SEGS, MB_SCAN_BWD_THREADS);
  assert_int_equal(32 % MB_SCAN_FWD_SEGS, 0);
  assert_int_equal(32 % MB_SCAN_BWD_SEGS, 0);
  assert_int_equal(MB_SCAN_RED_PITCH % 4, 0); /* rows stay 16-byte aligned */
  /* shared memory fits the smallest target for every state size */
  for (int N = 1; N <= MB_SCAN_MAX_DSTATE; N++) {
    assert_true(mb_scan_fwd_smem_bytes(N) + mb_scan_fwd_stage_bytes(sizeof(float)) <= SMEM_LIMIT_SM80);
    /* the forward's staged tiles follow 5 [*][N] float regions: 16-byte aligned */
    assert_int_equal((mb_scan_fwd_smem_bytes(N) - MB_SCAN_TILE) % 16, 0);
    assert_true(mb_scan_bwd_smem_bytes(N) <= SMEM_LIMIT_SM80);
    /* every region of the backward's shared memory starts 16-byte aligned */
    assert_int_equal((2 * N * MB_SCAN_TILE * 4) % 16, 0);
  }
  print_message("scan shared memory: forward %zu B (N=16) %zu B (N=64) + %zu B staged (16-bit; f32 twice); backward "
                "%zu B (N=16) %zu B (N=64)\n",
                mb_scan_fwd_smem_bytes(16), mb_scan_fwd_smem_bytes(64), mb_scan_fwd_stage_bytes(2),
                mb_scan_bwd_smem_bytes(16), mb_scan_bwd_smem_bytes(64));
}

static void test_plan(void **state) {
  (void)state;
  mb_scan_desc d = {.batch = 8, .seqlen = 65536, .dim = 1536, .dstate = 16, .delta_softplus = 1};
  assert_int_equal(mb_scan_plan_check(&d, MB_BF16, MB_F32), MB_OK);
  mb_scan_plan p;
  mb_scan_plan_make(&d, &p);
  assert_int_equal(p.ntiles, 512);
  assert_int_equal(p.ngroups, 48);
  assert_int_equal(p.blocks, 8 * 48);
  /* the states have the CPU kernel's shape at its default chunk */
  d.chunk = 0;
  const int cpu_nchunks = mb_cpu_scan_nchunks(&d);
  assert_int_equal(p.ntiles, cpu_nchunks);
  d.chunk = MB_SCAN_TILE;
  assert_int_equal(mb_scan_plan_check(&d, MB_BF16, MB_F32), MB_OK);

  /* workspace: regions aligned, in order, disjoint, of the promised sizes */
  const size_t bc = (size_t)8 * 48 * 65536 * 16 * 4;
  assert_int_equal(p.ws_dB, 0);
  assert_int_equal(p.ws_dC, bc);
  assert_int_equal(p.ws_dA, 2 * bc);
  assert_true(p.ws_dD >= p.ws_dA + (size_t)8 * 1536 * 16 * 4);
  assert_true(p.ws_dbias >= p.ws_dD + (size_t)8 * 1536 * 4);
  assert_true(p.ws_bytes >= p.ws_dbias + (size_t)8 * 1536 * 4);
  assert_true(p.ws_bytes < p.ws_dbias + (size_t)8 * 1536 * 4 + MB_SCAN_WS_ALIGN);
  const size_t offs[] = {p.ws_dB, p.ws_dC, p.ws_dA, p.ws_dD, p.ws_dbias, p.ws_bytes};
  for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++)
    assert_int_equal(offs[i] % MB_SCAN_WS_ALIGN, 0);
  print_message("B=8 L=65536 D=1536 N=16: %d tiles, %d groups, %lld blocks, backward workspace %.2f GB\n", p.ntiles,
                p.ngroups, p.blocks, (double)p.ws_bytes / 1e9);

  /* the row split (mb_scan_choose_parts): none when the grid is full (384
   * blocks), eleven parts for a packed row of 16k tokens (48 blocks -> 528:
   * two forward waves and four backward ones on 132 SMs, none part-filled),
   * none for rows too short for two parts of MB_SCAN_MIN_PART_TILES tiles */
  assert_int_equal(p.parts, 1);
  assert_int_equal(p.part_tiles, 512);
  mb_scan_desc packed = {.batch = 1, .seqlen = 16384, .dim = 1536, .dstate = 16, .delta_softplus = 1};
  mb_scan_plan_make(&packed, &p);
  assert_int_equal(p.parts, 11);
  assert_int_equal(p.part_tiles, 12); /* 10 x 12 + 8 = 128 tiles */
  assert_true((long long)p.parts * p.part_tiles >= p.ntiles && (p.parts - 1) * p.part_tiles < p.ntiles);
  /* the backward's per-(row, part) regions: dA, dD, ddelta_bias partials, the fold's P and E */
  const size_t da11 = (size_t)11 * 1536 * 16 * 4, dd11 = (size_t)11 * 1536 * 4;
  assert_true(p.ws_dD >= p.ws_dA + da11 && p.ws_dbias >= p.ws_dD + dd11 && p.ws_P >= p.ws_dbias + dd11);
  assert_true(p.ws_E >= p.ws_P + da11 && p.ws_bytes >= p.ws_E + da11);
  /* the model's choices for Mamba-130m's 48 groups per row: batch 2 and 3
   * also take eleven parts (whole waves), batch 4 (192 blocks) and 5 none
   * (the split would cost a wave more than its fold saves), batch 6 and
   * more fill a forward wave already */
  const struct {
    int batch, parts;
  } split[] = {{2, 11}, {3, 11}, {4, 1}, {5, 1}, {6, 1}, {8, 1}};
  for (size_t i = 0; i < sizeof split / sizeof split[0]; i++) {
    mb_scan_desc b = packed;
    b.batch = split[i].batch;
    mb_scan_plan_make(&b, &p);
    assert_int_equal(p.parts, split[i].parts);
  }
  /* integers: the same choice on every host, and never past the caps */
  assert_int_equal(mb_scan_choose_parts(1, 1 << 20), MB_SCAN_MAX_PARTS);
  assert_int_equal(mb_scan_choose_parts(48, 7), 1);
  assert_int_equal(mb_scan_choose_parts(0, 100), 1);
  assert_int_equal(p.ws_P % MB_SCAN_WS_ALIGN, 0);
  assert_int_equal(p.ws_E % MB_SCAN_WS_ALIGN, 0);
  packed.seqlen = 7 * MB_SCAN_TILE; /* 7 tiles: one part */
  mb_scan_plan_make(&packed, &p);
  assert_int_equal(p.parts, 1);
  packed.seqlen = 8 * MB_SCAN_TILE; /* 8 tiles: two parts of 4 */
  mb_scan_plan_make(&packed, &p);
  assert_int_equal(p.parts, 2);
  assert_int_equal(p.part_tiles, 4);
  for (int L = 1; L <= 200 * MB_SCAN_TILE; L += 97) { /* no empty part, every non-last part >= 2 tiles (fold slots) */
    packed.seqlen = L;
    mb_scan_plan_make(&packed, &p);
    assert_true(p.parts >= 1 && p.part_tiles >= (p.parts > 1 ? MB_SCAN_MIN_PART_TILES : 0));
    assert_true((long long)p.parts * p.part_tiles >= p.ntiles && (p.parts - 1) * p.part_tiles < p.ntiles);
  }

  /* odd sizes */
  mb_scan_desc o = {.batch = 3, .seqlen = 129, .dim = 33, .dstate = 5};
  assert_int_equal(mb_scan_plan_check(&o, MB_F32, MB_F32), MB_OK);
  mb_scan_plan_make(&o, &p);
  assert_int_equal(p.ntiles, 2);
  assert_int_equal(p.ngroups, 2);
  o.seqlen = 1;
  mb_scan_plan_make(&o, &p);
  assert_int_equal(p.ntiles, 1);
  o.seqlen = 0;
  assert_int_equal(mb_scan_plan_check(&o, MB_F32, MB_F32), MB_OK);
  mb_scan_plan_make(&o, &p);
  assert_int_equal(p.ntiles, 0);
}

static void test_check(void **state) {
  (void)state;
  mb_scan_desc d = {.batch = 2, .seqlen = 10, .dim = 4, .dstate = 16};
  assert_int_equal(mb_scan_plan_check(NULL, MB_F32, MB_F32), MB_EINVAL);
  d.chunk = 64;
  assert_int_equal(mb_scan_plan_check(&d, MB_F32, MB_F32), MB_EUNSUPPORTED);
  assert_non_null(strstr(mb_error_message(), "chunk 64"));
  d.chunk = 0;
  d.dstate = 65;
  assert_int_equal(mb_scan_plan_check(&d, MB_F32, MB_F32), MB_EUNSUPPORTED);
  assert_non_null(strstr(mb_error_message(), "dstate 65"));
  d.dstate = 0;
  assert_int_equal(mb_scan_plan_check(&d, MB_F32, MB_F32), MB_EUNSUPPORTED);
  d.dstate = 16;
  d.dim = 0;
  assert_int_equal(mb_scan_plan_check(&d, MB_F32, MB_F32), MB_EINVAL);
  d.dim = 4;
  d.seqlen = -1;
  assert_int_equal(mb_scan_plan_check(&d, MB_F32, MB_F32), MB_EINVAL);
  d.seqlen = 10;
  assert_int_equal(mb_scan_plan_check(&d, MB_F64, MB_F32), MB_EUNSUPPORTED);
  assert_non_null(strstr(mb_error_message(), "f64"));
  assert_int_equal(mb_scan_plan_check(&d, MB_F32, MB_I32), MB_EUNSUPPORTED);
  assert_int_equal(mb_scan_plan_check(&d, MB_F16, MB_BF16), MB_OK);
  const int32_t cu[] = {0, 5, 10};
  d.cu_seqlens = cu;
  d.nseq = 2;
  assert_int_equal(mb_scan_plan_check(&d, MB_F32, MB_F32), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "batch = 1"));
  d.batch = 1;
  assert_int_equal(mb_scan_plan_check(&d, MB_F32, MB_F32), MB_OK);
  d.nseq = -1;
  assert_int_equal(mb_scan_plan_check(&d, MB_F32, MB_F32), MB_EINVAL);
  /* the grid limit: batch * ngroups blocks */
  mb_scan_desc big = {.batch = 1 << 30, .seqlen = 1, .dim = 64, .dstate = 1};
  assert_int_equal(mb_scan_plan_check(&big, MB_F32, MB_F32), MB_EINVAL);
  /* int token indices: the last tile's end must fit */
  mb_scan_desc longest = {.batch = 1, .seqlen = INT_MAX - MB_SCAN_TILE, .dim = 1, .dstate = 1};
  assert_int_equal(mb_scan_plan_check(&longest, MB_F32, MB_F32), MB_OK);
  longest.seqlen++;
  assert_int_equal(mb_scan_plan_check(&longest, MB_F32, MB_F32), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "seqlen"));
}

static void test_conv_plan(void **state) {
  (void)state;
  mb_conv1d_desc d = {.batch = 8, .seqlen = 65536, .dim = 1536, .width = 4, .silu = 1};
  assert_int_equal(mb_conv1d_plan_check(&d, MB_BF16, MB_F32), MB_OK);
  mb_conv1d_plan p;
  mb_conv1d_plan_make(&d, &p);
  assert_int_equal(p.dblocks, 1536 / MB_CONV1D_THREADS);
  assert_int_equal(p.fwd_runs, 65536 / MB_CONV1D_FWD_RUN);
  assert_int_equal(p.bwd_runs, 65536 / MB_CONV1D_BWD_RUN);
  assert_int_equal(p.fwd_blocks, (long long)8 * p.fwd_runs * p.dblocks);
  assert_int_equal(p.bwd_blocks, (long long)8 * p.bwd_runs * p.dblocks);
  assert_int_equal(p.ws_bytes, (size_t)8 * p.bwd_runs * 1536 * 5 * 4);
  d.width = 5;
  assert_int_equal(mb_conv1d_plan_check(&d, MB_BF16, MB_F32), MB_EUNSUPPORTED);
  d.width = 0;
  assert_int_equal(mb_conv1d_plan_check(&d, MB_BF16, MB_F32), MB_EINVAL);
  d.width = 1;
  assert_int_equal(mb_conv1d_plan_check(&d, MB_BF16, MB_F32), MB_OK);
  assert_int_equal(mb_conv1d_plan_check(&d, MB_F64, MB_F32), MB_EUNSUPPORTED);
  const int32_t cu[] = {0, 3};
  d.cu_seqlens = cu;
  d.nseq = 1;
  assert_int_equal(mb_conv1d_plan_check(&d, MB_F32, MB_F32), MB_EINVAL);
  d.batch = 1;
  assert_int_equal(mb_conv1d_plan_check(&d, MB_F32, MB_F32), MB_OK);
  /* the kernels index tokens with int, a run past the end included */
  mb_conv1d_desc big = {.batch = 1, .seqlen = INT_MAX - MB_CONV1D_BWD_RUN, .dim = 1, .width = 4};
  assert_int_equal(mb_conv1d_plan_check(&big, MB_F32, MB_F32), MB_OK);
  big.seqlen++;
  assert_int_equal(mb_conv1d_plan_check(&big, MB_F32, MB_F32), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "seqlen"));
  mb_conv1d_desc e = {.batch = 1, .seqlen = 1, .dim = 1, .width = 2};
  mb_conv1d_plan_make(&e, &p);
  assert_int_equal(p.dblocks, 1);
  assert_int_equal(p.fwd_runs, 1);
  assert_int_equal(p.bwd_runs, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_geometry),
      cmocka_unit_test(test_plan),
      cmocka_unit_test(test_check),
      cmocka_unit_test(test_conv_plan),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
