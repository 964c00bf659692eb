/* test_philox.c: Philox4x32-10 (runtime/philox.h) against the published
 * known-answer vectors, the stream layout (offsets, blocks, threads), and
 * statistical sanity of the uniform and normal draws. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/philox.h"

/* Known-answer vectors from the Random123 distribution, file tests/kat_vectors,
 * lines 24-29 (https://github.com/DEShawResearch/random123, commit
 * 9545ff6413f258be2f04c1d319d99aaef7521150, release v1.14.0). Each line is
 * "philox4x32 ROUNDS ctr0 ctr1 ctr2 ctr3 key0 key1   out0 out1 out2 out3". */
typedef struct {
  int rounds;
  uint32_t ctr[4], key[2], out[4];
} kat;

static const kat KATS[] = {
    {7, {0x00000000, 0x00000000, 0x00000000, 0x00000000}, {0x00000000, 0x00000000},
     {0x5f6fb709, 0x0d893f64, 0x4f121f81, 0x4f730a48}},
    {7, {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
     {0x5207ddc2, 0x45165e59, 0x4d8ee751, 0x8c52f662}},
    {7, {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
     {0x4dfccaba, 0x190a87f0, 0xc47362ba, 0xb6b5242a}},
    {10, {0x00000000, 0x00000000, 0x00000000, 0x00000000}, {0x00000000, 0x00000000},
     {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
    {10, {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
     {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
    {10, {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
     {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
};

static void test_philox_known_answers(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof KATS / sizeof KATS[0]; i++) {
    const kat *k = &KATS[i];
    mb_u32x4 c;
    memcpy(c.w, k->ctr, sizeof c.w);
    mb_u32x4 r = mb_philox4x32_rounds(c, k->key[0], k->key[1], k->rounds);
    for (int j = 0; j < 4; j++)
      if (r.w[j] != k->out[j])
        fail_msg("KAT %zu (%d rounds) word %d: 0x%08x, want 0x%08x", i, k->rounds, j, r.w[j], k->out[j]);
    if (k->rounds == 10) {
      r = mb_philox4x32_10(c, k->key[0], k->key[1]);
      assert_memory_equal(r.w, k->out, sizeof r.w);
    }
  }
  /* the stream layout: seed -> key words (lo, hi), block -> counter words 0, 1 */
  mb_u32x4 b = mb_philox_block(0xffffffffffffffffull, 0);
  mb_u32x4 c = {{0, 0, 0, 0}};
  mb_u32x4 want = mb_philox4x32_10(c, 0xffffffffu, 0xffffffffu);
  assert_memory_equal(b.w, want.w, sizeof b.w);
  c.w[0] = 0x89abcdefu;
  c.w[1] = 0x01234567u;
  b = mb_philox_block(0x299f31d0a4093822ull, 0x0123456789abcdefull);
  want = mb_philox4x32_10(c, 0xa4093822u, 0x299f31d0u);
  assert_memory_equal(b.w, want.w, sizeof b.w);
}

static void test_philox_u01_mapping(void **state) {
  (void)state;
  assert_true(mb_philox_u01(0) == 0.0f);
  assert_true(mb_philox_u01(0xffffffffu) == 1.0f - 0x1p-24f); /* largest: strictly below 1 */
  assert_true(mb_philox_u01(0x000000ffu) == 0.0f);            /* the low 8 bits are dropped */
  assert_true(mb_philox_u01(0x00000100u) == 0x1p-24f);
  assert_true(mb_philox_u01(0x80000000u) == 0.5f);
  assert_true(mb_philox_u01_open0(0) == 0x1p-24f);
  assert_true(mb_philox_u01_open0(0xffffffffu) == 1.0f);
  float n0, n1;
  mb_philox_box_muller(0xffffffffu, 0, &n0, &n1); /* u1 = 1: radius 0 */
  assert_true(n0 == 0.0f && n1 == 0.0f);
  mb_philox_box_muller(0, 0, &n0, &n1); /* u1 = 2^-24: the largest radius, theta 0 */
  assert_float_equal(n0, sqrtf(-2.0f * logf(0x1p-24f)), 1e-5);
  assert_true(fabsf(n0) < 5.78f);
}

static void test_philox_stream_layout(void **state) {
  (void)state;
  const uint64_t seed = 1234567890123ull;
  enum { N = 103 };
  uint32_t all[N], part[N];
  mb_philox_fill_u32(seed, 0, all, N);
  for (uint64_t e = 0; e < N; e++)
    assert_int_equal(all[e], mb_philox_block(seed, e / 4).w[e % 4]);
  /* any offset, not only block-aligned ones, and any split of the range */
  for (uint64_t off = 0; off < 9; off++) {
    for (size_t cut = 0; cut + off <= N; cut += 7) {
      memset(part, 0, sizeof part);
      mb_philox_fill_u32(seed, off, part, cut);
      mb_philox_fill_u32(seed, off + cut, part + cut, N - off - cut);
      assert_memory_equal(part, all + off, (N - off) * sizeof(uint32_t));
    }
  }
  float u[N], z[N];
  mb_philox_fill_uniform(seed, 5, u, N - 5, 0.0f, 1.0f);
  mb_philox_fill_normal(seed, 5, z, N - 5, 0.0f, 1.0f);
  for (uint64_t i = 0; i < N - 5; i++) {
    assert_true(u[i] == mb_philox_u01(all[i + 5]));
    assert_true(u[i] == mb_philox_uniform_at(seed, i + 5));
    assert_true(z[i] == mb_philox_normal_at(seed, i + 5));
  }
  /* the normal pairs come from lanes (0,1) and (2,3) of a block */
  float n0, n1;
  mb_philox_box_muller(all[8], all[9], &n0, &n1);
  assert_true(z[3] == n0 && z[4] == n1);
  /* scale and shift */
  float s[8];
  mb_philox_fill_normal(seed, 8, s, 8, 3.0f, 2.0f);
  for (int i = 0; i < 8; i++)
    assert_float_equal(s[i], 3.0f + 2.0f * z[i + 3], 1e-6);
  mb_philox_fill_uniform(seed, 8, s, 8, -1.0f, 1.0f);
  for (int i = 0; i < 8; i++)
    assert_true(s[i] == -1.0f + 2.0f * u[i + 3]);
  /* different seeds, different streams; a 64-bit seed uses both key words */
  uint32_t other[N];
  mb_philox_fill_u32(seed ^ (1ull << 40), 0, other, N);
  assert_memory_not_equal(all, other, sizeof all);
  /* state: offsets are handed out in whole blocks */
  mb_philox_state st = mb_philox_init(seed);
  assert_int_equal(mb_philox_take(&st, 5), 0);
  assert_int_equal(mb_philox_take(&st, 4), 8);
  assert_int_equal(mb_philox_take(&st, 0), 12);
  assert_int_equal(mb_philox_take(&st, 1), 12);
  assert_int_equal(st.offset, 16);
  /* a block counter past 2^32 carries into counter word 1 */
  uint32_t hi[4];
  mb_philox_fill_u32(seed, (1ull << 34), hi, 4);
  mb_u32x4 c = {{0, 1, 0, 0}};
  mb_u32x4 want = mb_philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32));
  assert_memory_equal(hi, want.w, sizeof hi);
}

/* Large fills run on OpenMP threads: the same numbers as element-wise. */
static void test_philox_parallel_fill_matches(void **state) {
  (void)state;
  const size_t n = 1u << 20;
  const uint64_t off = 6;
  uint32_t *w = malloc(n * sizeof *w);
  float *z = malloc(n * sizeof *z);
  assert_non_null(w);
  assert_non_null(z);
  mb_philox_fill_u32(42, off, w, n);
  mb_philox_fill_normal(42, off, z, n, 0.0f, 1.0f);
  for (size_t i = 0; i < n; i += 997) {
    assert_int_equal(w[i], mb_philox_block(42, (off + i) / 4).w[(off + i) % 4]);
    assert_true(z[i] == mb_philox_normal_at(42, off + i));
  }
  assert_int_equal(w[n - 1], mb_philox_block(42, (off + n - 1) / 4).w[(off + n - 1) % 4]);
  free(w);
  free(z);
}

/* Moments and a histogram; bounds are ~6 standard errors, so a correct
 * generator fails with probability ~1e-9 and a biased one fails clearly. */
static void test_philox_statistics(void **state) {
  (void)state;
  const size_t n = 1u << 22;
  float *x = malloc(n * sizeof *x);
  assert_non_null(x);

  mb_philox_fill_uniform(2024, 0, x, n, 0.0f, 1.0f);
  double sum = 0, sq = 0;
  enum { BINS = 64 };
  double hist[BINS] = {0};
  for (size_t i = 0; i < n; i++) {
    assert_true(x[i] >= 0.0f && x[i] < 1.0f);
    sum += x[i];
    sq += (double)x[i] * x[i];
    hist[(int)(x[i] * BINS)]++;
  }
  double mean = sum / n, var = sq / n - mean * mean;
  assert_true(fabs(mean - 0.5) < 6 * sqrt(1.0 / 12 / n));
  assert_true(fabs(var - 1.0 / 12) < 6 * sqrt(1.0 / 180 / n)); /* var of (u - 1/2)^2 is 1/180 */
  double chi2 = 0, expect = (double)n / BINS;
  for (int b = 0; b < BINS; b++)
    chi2 += (hist[b] - expect) * (hist[b] - expect) / expect;
  assert_true(chi2 < 130.0); /* 63 degrees of freedom: P(chi2 > 130) ~ 1e-6 */

  mb_philox_fill_normal(2024, 0, x, n, 0.0f, 1.0f);
  double s1 = 0, s2 = 0, s4 = 0;
  size_t within1 = 0;
  for (size_t i = 0; i < n; i++) {
    double v = x[i];
    assert_true(isfinite(v) && fabs(v) < 5.78);
    s1 += v;
    s2 += v * v;
    s4 += v * v * v * v;
    within1 += fabs(v) < 1.0;
  }
  mean = s1 / n;
  var = s2 / n - mean * mean;
  assert_true(fabs(mean) < 6 * sqrt(1.0 / n));
  assert_true(fabs(var - 1.0) < 6 * sqrt(2.0 / n));
  assert_true(fabs(s4 / n - 3.0) < 6 * sqrt(96.0 / n)); /* kurtosis; var of z^4 is 96 */
  double p1 = 0.6826894921370859, frac = (double)within1 / n;
  assert_true(fabs(frac - p1) < 6 * sqrt(p1 * (1 - p1) / n));
  /* neighbouring lanes are not correlated (the Box-Muller pairs in particular) */
  double c01 = 0;
  for (size_t i = 0; i + 1 < n; i += 2)
    c01 += (double)x[i] * x[i + 1];
  assert_true(fabs(c01 / (n / 2)) < 6 * sqrt(1.0 / (n / 2)));
  free(x);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_philox_known_answers),     cmocka_unit_test(test_philox_u01_mapping),
      cmocka_unit_test(test_philox_stream_layout),     cmocka_unit_test(test_philox_parallel_fill_matches),
      cmocka_unit_test(test_philox_statistics),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
