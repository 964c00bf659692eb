/* test_safetensors.c: the safetensors reader and writer (runtime/safetensors.h).
 *
 * - files written by the reference implementation (tests/fixtures/safetensors,
 *   made by tools/make_safetensors_fixture.py) read back with the right
 *   dtypes, shapes and values, and our writer reproduces them byte for byte;
 * - a round trip of every dtype, 0-dim, empty and 8-dim tensors;
 * - a hand-made file checked byte by byte against the format;
 * - every kind of corrupt file fails with MB_EFORMAT and a message naming
 *   the file and the tensor or field (asserted on the text), never a crash;
 *   random byte mutations of a valid file never crash either;
 * - tests/fixtures/safetensors/mambert_written.safetensors is what our writer
 *   produces for a fixed set of tensors (regenerate with
 *   MAMBERT_REGEN_FIXTURES=1); tools/check_safetensors_reference.py loads it
 *   with the reference implementation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/dtype.h"
#include "runtime/error.h"
#include "runtime/fileio.h"
#include "runtime/safetensors.h"
#include "runtime/tensor.h"

#define FIXTURES "tests/fixtures/safetensors"

static char root[64];

static int setup(void **state) {
  (void)state;
  strcpy(root, "/tmp/mb_st_XXXXXX");
  return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf %s", root);
  return system(cmd) == 0 ? 0 : -1;
}

static void tmp_path(char *out, size_t cap, const char *name) {
  assert_int_equal(mb_path_join(out, cap, root, name), MB_OK);
}

static char *slurp(const char *path, size_t *n) {
  char *d;
  if (mb_read_file(path, 1 << 26, &d, n) != MB_OK)
    fail_msg("%s", mb_error_message());
  return d;
}

/* A raw file: 8-byte little-endian length of `header`, header, data. */
static void write_raw(const char *path, uint64_t header_len, const char *header, const void *data, size_t ndata) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  for (int i = 0; i < 8; i++)
    fputc((int)((header_len >> (8 * i)) & 0xff), f);
  fwrite(header, 1, strlen(header), f);
  if (ndata)
    fwrite(data, 1, ndata, f);
  fclose(f);
}

/* ---- values by the fixture formulas ---- */

static double float_value(int64_t i) { return (double)(i - 3) / 4.0; }

/* Element i of a tensor as double (float dtypes decoded, ints widened). */
static double element(const mb_tensor *t, int64_t i) {
  const unsigned char *p = t->data;
  switch (t->dtype) {
  case MB_F64: return ((const double *)p)[i];
  case MB_F32: return ((const float *)p)[i];
  case MB_F16: return mb_f16_to_f32(((const uint16_t *)p)[i]);
  case MB_BF16: return mb_bf16_to_f32(((const uint16_t *)p)[i]);
  case MB_F8E4M3: return mb_e4m3_to_f32(p[i]);
  case MB_F8E5M2: return mb_e5m2_to_f32(p[i]);
  case MB_I8: return ((const int8_t *)p)[i];
  case MB_U8: return p[i];
  case MB_BOOL: return p[i];
  case MB_I16: return ((const int16_t *)p)[i];
  case MB_U16: return ((const uint16_t *)p)[i];
  case MB_I32: return ((const int32_t *)p)[i];
  case MB_U32: return ((const uint32_t *)p)[i];
  case MB_I64: return (double)((const int64_t *)p)[i];
  case MB_U64: return (double)((const uint64_t *)p)[i];
  default: fail_msg("dtype"); return 0;
  }
}

static int is_signed_int(mb_dtype dt) { return dt == MB_I8 || dt == MB_I16 || dt == MB_I32 || dt == MB_I64; }

static double expected(mb_dtype dt, int64_t i) {
  if (dt == MB_BOOL)
    return i % 2 == 1;
  if (mb_dtype_info_of(dt)->is_float)
    return float_value(i);
  return is_signed_int(dt) ? (double)(i - 3) : (double)i;
}

/* Fill buf with the formula values for dt. */
static void fill(void *buf, mb_dtype dt, int64_t n) {
  unsigned char *p = buf;
  for (int64_t i = 0; i < n; i++) {
    double v = expected(dt, i);
    switch (dt) {
    case MB_F64: ((double *)p)[i] = v; break;
    case MB_F32: ((float *)p)[i] = (float)v; break;
    case MB_F16: ((uint16_t *)p)[i] = mb_f32_to_f16((float)v); break;
    case MB_BF16: ((uint16_t *)p)[i] = mb_f32_to_bf16((float)v); break;
    case MB_F8E4M3: p[i] = mb_f32_to_e4m3((float)v, MB_FP8_SATFINITE); break;
    case MB_F8E5M2: p[i] = mb_f32_to_e5m2((float)v, MB_FP8_SATFINITE); break;
    case MB_I8: ((int8_t *)p)[i] = (int8_t)v; break;
    case MB_U8:
    case MB_BOOL: p[i] = (uint8_t)v; break;
    case MB_I16: ((int16_t *)p)[i] = (int16_t)v; break;
    case MB_U16: ((uint16_t *)p)[i] = (uint16_t)v; break;
    case MB_I32: ((int32_t *)p)[i] = (int32_t)v; break;
    case MB_U32: ((uint32_t *)p)[i] = (uint32_t)v; break;
    case MB_I64: ((int64_t *)p)[i] = (int64_t)v; break;
    case MB_U64: ((uint64_t *)p)[i] = (uint64_t)v; break;
    default: fail_msg("dtype");
    }
  }
}

static void check_values(const mb_tensor *t, const char *name) {
  int64_t n = mb_tensor_numel(t);
  for (int64_t i = 0; i < n; i++)
    if (element(t, i) != expected(t->dtype, i))
      fail_msg("tensor '%s' element %lld: %g, want %g", name, (long long)i, element(t, i), expected(t->dtype, i));
}

/* ---- files from the reference writer ---- */

typedef struct {
  const char *name;
  mb_dtype dt;
  int ndim;
  int64_t dim[3];
} expect_t;

static const expect_t REFERENCE[] = {
    {"f64", MB_F64, 2, {2, 3}},      {"f32", MB_F32, 2, {2, 3}},     {"layer.0.weight", MB_F32, 2, {2, 2}},
    {"bf16", MB_BF16, 1, {3}},       {"f16", MB_F16, 2, {2, 2}},     {"e4m3", MB_F8E4M3, 1, {5}},
    {"e5m2", MB_F8E5M2, 1, {5}},     {"i64", MB_I64, 1, {5}},        {"position_ids", MB_I64, 2, {1, 4}},
    {"i32", MB_I32, 2, {2, 2}},      {"i16", MB_I16, 1, {3}},        {"i8", MB_I8, 1, {3}},
    {"u8", MB_U8, 1, {3}},           {"bool", MB_BOOL, 1, {4}},      {"scalar", MB_F32, 0, {0}},
    {"empty", MB_F32, 2, {0, 3}},
};
#define N_REFERENCE (sizeof REFERENCE / sizeof REFERENCE[0])

static void test_safetensors_reads_reference_file(void **state) {
  (void)state;
  const char *path = FIXTURES "/reference.safetensors";
  mb_safetensors *st;
  if (mb_safetensors_open(path, &st) != MB_OK)
    fail_msg("%s", mb_error_message());
  assert_string_equal(mb_safetensors_path(st), path);
  assert_int_equal(mb_safetensors_count(st), N_REFERENCE);
  assert_string_equal(mb_safetensors_metadata(st, "format"), "pt");
  assert_null(mb_safetensors_metadata(st, "absent"));
  assert_int_equal(mb_safetensors_metadata_count(st), 1);
  for (size_t k = 0; k < N_REFERENCE; k++) {
    const expect_t *x = &REFERENCE[k];
    const mb_st_entry *e = mb_safetensors_find(st, x->name);
    assert_non_null(e);
    assert_string_equal(e->name, x->name);
    assert_int_equal(e->dtype, x->dt);
    assert_string_equal(e->dtype_name, mb_dtype_info_of(x->dt)->safetensors);
    assert_int_equal(e->ndim, x->ndim);
    mb_tensor t;
    if (mb_safetensors_get(st, x->name, &t) != MB_OK)
      fail_msg("%s", mb_error_message());
    assert_int_equal(t.dtype, x->dt);
    assert_int_equal(t.shape.ndim, x->ndim);
    for (int d = 0; d < x->ndim; d++)
      assert_int_equal(t.shape.dim[d], x->dim[d]);
    assert_int_equal(t.owns, 0); /* zero copy: a pointer into the mapping */
    assert_ptr_equal(t.data, e->data);
    assert_int_equal(mb_tensor_nbytes(&t), e->end - e->begin);
    if (strcmp(x->name, "scalar") == 0) {
      assert_true(*(const float *)t.data == 42.5f);
    } else if (strcmp(x->name, "position_ids") == 0) { /* 0, 1, 2, 3 */
      for (int64_t i = 0; i < 4; i++)
        assert_int_equal(((const int64_t *)t.data)[i], i);
    } else
      check_values(&t, x->name);
    mb_tensor_free(&t);
  }
  /* entries come in offset order, tiling the data buffer */
  uint64_t pos = 0;
  for (size_t i = 0; i < mb_safetensors_count(st); i++) {
    const mb_st_entry *e = mb_safetensors_entry(st, i);
    assert_int_equal(e->begin, pos);
    pos = e->end;
  }
  assert_null(mb_safetensors_entry(st, N_REFERENCE));
  assert_null(mb_safetensors_find(st, "nope"));
  mb_tensor t;
  assert_int_equal(mb_safetensors_get(st, "nope", &t), MB_ENOTFOUND);
  assert_non_null(strstr(mb_error_message(), path));
  assert_non_null(strstr(mb_error_message(), "'nope'"));

  /* our writer, given the same tensors and metadata, writes the same bytes */
  mb_safetensors_writer *w;
  assert_int_equal(mb_safetensors_writer_new(&w), MB_OK);
  for (size_t i = mb_safetensors_count(st); i-- > 0;) { /* any insertion order */
    const mb_st_entry *e = mb_safetensors_entry(st, i);
    mb_shape s = mb_shape_of(e->ndim, e->shape);
    assert_int_equal(mb_safetensors_writer_add(w, e->name, e->dtype, &s, e->data), MB_OK);
  }
  assert_int_equal(mb_safetensors_writer_set_metadata(w, "format", "pt"), MB_OK);
  char out[256];
  tmp_path(out, sizeof out, "rewritten.safetensors");
  assert_int_equal(mb_safetensors_writer_write(w, out), MB_OK);
  mb_safetensors_writer_free(w);
  size_t na, nb;
  char *a = slurp(path, &na), *b = slurp(out, &nb);
  assert_int_equal(na, nb);
  assert_memory_equal(a, b, na);
  free(a);
  free(b);
  mb_safetensors_close(st);
}

static void test_safetensors_reads_reference_metadata(void **state) {
  (void)state;
  mb_safetensors *st;
  assert_int_equal(mb_safetensors_open(FIXTURES "/reference_metadata.safetensors", &st), MB_OK);
  assert_int_equal(mb_safetensors_metadata_count(st), 3);
  const char *k, *v;
  mb_safetensors_metadata_at(st, 0, &k, &v); /* sorted by key */
  assert_string_equal(k, "format");
  assert_string_equal(v, "pt");
  mb_safetensors_metadata_at(st, 1, &k, &v);
  assert_string_equal(k, "note");
  assert_string_equal(v, "caf\xc3\xa9 \xe2\x9c\x93");
  mb_safetensors_metadata_at(st, 2, &k, &v);
  assert_string_equal(k, "source");
  assert_string_equal(v, "tools/make_safetensors_fixture.py");
  mb_safetensors_metadata_at(st, 3, &k, &v);
  assert_null(k);
  mb_tensor t;
  assert_int_equal(mb_safetensors_get(st, "x", &t), MB_OK);
  check_values(&t, "x");
  mb_safetensors_close(st);
}

/* ---- round trips ---- */

/* The fixed content of mambert_written.safetensors. */
typedef struct {
  const char *name;
  mb_dtype dt;
  int ndim;
  int64_t dim[8];
} spec_t;

static const spec_t WRITTEN[] = {
    {"embeddings.word_embeddings.weight", MB_F32, 2, {4, 3}},
    {"h.0.norm.weight", MB_BF16, 1, {3}},
    {"h.0.scale_e4m3", MB_F8E4M3, 1, {5}},
    {"h.0.grad_e5m2", MB_F8E5M2, 1, {5}},
    {"half", MB_F16, 2, {2, 2}},
    {"double", MB_F64, 1, {3}},
    {"ids", MB_I64, 2, {2, 2}},
    {"mask", MB_BOOL, 1, {5}},
    {"u8", MB_U8, 1, {3}},
    {"i8", MB_I8, 1, {3}},
    {"i16", MB_I16, 1, {3}},
    {"u16", MB_U16, 1, {2}},
    {"i32", MB_I32, 1, {3}},
    {"u32", MB_U32, 1, {2}},
    {"u64", MB_U64, 1, {2}},
    {"scalar", MB_F32, 0, {0}},
    {"empty", MB_F16, 1, {0}},
    {"empty3", MB_I32, 3, {3, 0, 2}},
    {"deep", MB_F32, 8, {1, 1, 1, 1, 1, 1, 1, 2}},
    {"\xe5\x90\x8d\xe5\x89\x8d", MB_F32, 1, {1}}, /* a UTF-8 name */
};
#define N_WRITTEN (sizeof WRITTEN / sizeof WRITTEN[0])

static void write_spec(const char *path, void **buffers) {
  mb_safetensors_writer *w;
  assert_int_equal(mb_safetensors_writer_new(&w), MB_OK);
  for (size_t k = 0; k < N_WRITTEN; k++) {
    mb_shape s = mb_shape_of(WRITTEN[k].ndim, WRITTEN[k].dim);
    int64_t n = mb_shape_numel(&s);
    buffers[k] = malloc((size_t)n * mb_dtype_size(WRITTEN[k].dt) + 1);
    fill(buffers[k], WRITTEN[k].dt, n);
    assert_int_equal(mb_safetensors_writer_add(w, WRITTEN[k].name, WRITTEN[k].dt, &s, buffers[k]), MB_OK);
  }
  assert_int_equal(mb_safetensors_writer_set_metadata(w, "producer", "mambert"), MB_OK);
  assert_int_equal(mb_safetensors_writer_set_metadata(w, "format", "np"), MB_OK);
  assert_int_equal(mb_safetensors_writer_set_metadata(w, "note", "caf\xc3\xa9 \xe2\x9c\x93"), MB_OK);
  assert_int_equal(mb_safetensors_writer_set_metadata(w, "format", "pt"), MB_OK); /* replaces */
  if (mb_safetensors_writer_write(w, path) != MB_OK)
    fail_msg("%s", mb_error_message());
  mb_safetensors_writer_free(w);
}

static void test_safetensors_round_trip_every_dtype(void **state) {
  (void)state;
  char path[256];
  tmp_path(path, sizeof path, "all.safetensors");
  void *buffers[N_WRITTEN];
  write_spec(path, buffers);
  mb_safetensors *st;
  if (mb_safetensors_open(path, &st) != MB_OK)
    fail_msg("%s", mb_error_message());
  assert_int_equal(mb_safetensors_count(st), N_WRITTEN);
  assert_int_equal(mb_safetensors_metadata_count(st), 3);
  assert_string_equal(mb_safetensors_metadata(st, "format"), "pt");
  assert_string_equal(mb_safetensors_metadata(st, "producer"), "mambert");
  int seen[MB_DTYPE_COUNT] = {0};
  for (size_t k = 0; k < N_WRITTEN; k++) {
    mb_tensor t;
    if (mb_safetensors_get(st, WRITTEN[k].name, &t) != MB_OK)
      fail_msg("%s", mb_error_message());
    mb_shape s = mb_shape_of(WRITTEN[k].ndim, WRITTEN[k].dim);
    assert_int_equal(t.dtype, WRITTEN[k].dt);
    assert_true(mb_shape_equal(&t.shape, &s));
    assert_int_equal(t.owns, 0);
    assert_memory_equal(t.data, buffers[k], mb_tensor_nbytes(&t));
    check_values(&t, WRITTEN[k].name);
    seen[t.dtype] = 1;
    mb_tensor_free(&t);
    free(buffers[k]);
  }
  for (int d = 0; d < MB_DTYPE_COUNT; d++)
    if (!seen[d])
      fail_msg("dtype %s not covered", mb_dtype_name((mb_dtype)d));
  /* writing order: by descending reference dtype rank, then name */
  const char *order[] = {"u64", "ids", "double", "deep", "embeddings.word_embeddings.weight", "scalar",
                         "\xe5\x90\x8d\xe5\x89\x8d", "u32", "empty3", "i32", "h.0.norm.weight", "empty", "half",
                         "u16", "i16", "h.0.scale_e4m3", "h.0.grad_e5m2", "i8", "u8", "mask"};
  for (size_t i = 0; i < N_WRITTEN; i++)
    assert_string_equal(mb_safetensors_entry(st, i)->name, order[i]);
  mb_safetensors_close(st);

  /* the committed fixture is exactly what we write */
  size_t na, nb;
  const char *fixture = FIXTURES "/mambert_written.safetensors";
  const char *regen = getenv("MAMBERT_REGEN_FIXTURES");
  if (regen && regen[0] == '1') {
    char *d = slurp(path, &na);
    assert_int_equal(mb_write_file_atomic(fixture, d, na), MB_OK);
    free(d);
  }
  char *a = slurp(fixture, &na), *b = slurp(path, &nb);
  assert_int_equal(na, nb);
  assert_memory_equal(a, b, na);
  free(a);
  free(b);
}

/* A file spelled out byte by byte. */
static void test_safetensors_hand_made_bytes(void **state) {
  (void)state;
  char path[256];
  tmp_path(path, sizeof path, "hand.safetensors");
  float w[2] = {1.0f, -2.0f};
  uint16_t h = 0x3c00; /* f16 1.0 */
  mb_safetensors_writer *wr;
  assert_int_equal(mb_safetensors_writer_new(&wr), MB_OK);
  assert_int_equal(mb_safetensors_writer_add(wr, "w", MB_F32, &(mb_shape){1, {2}}, w), MB_OK);
  assert_int_equal(mb_safetensors_writer_add(wr, "a", MB_F16, &(mb_shape){0, {0}}, &h), MB_OK);
  assert_int_equal(mb_safetensors_writer_set_metadata(wr, "format", "pt"), MB_OK);
  assert_int_equal(mb_safetensors_writer_write(wr, path), MB_OK);
  mb_safetensors_writer_free(wr);
  const char json[] = "{\"__metadata__\":{\"format\":\"pt\"},"
                      "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"a\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[8,10]}}";
  size_t jl = strlen(json); /* 138 bytes, padded with 6 spaces to 144 */
  assert_int_equal(jl, 138);
  unsigned char want[8 + 144 + 10];
  memset(want, 0, sizeof want);
  want[0] = 144; /* the length, u64 little-endian */
  memcpy(want + 8, json, jl);
  memset(want + 8 + jl, ' ', 144 - jl);
  const unsigned char data[10] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x3c};
  memcpy(want + 152, data, 10);
  size_t n;
  char *got = slurp(path, &n);
  assert_int_equal(n, sizeof want);
  assert_memory_equal(got, want, sizeof want);
  free(got);

  /* The reader takes any key order, whitespace, no padding, and an odd
   * header length, which leaves the F32 data misaligned: then it copies. */
  char hdr[256] = "{ \"b\" : {\"data_offsets\":[2,10],\"shape\":[2],\"dtype\":\"F32\"},\n"
                  "  \"a\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[0,2]} }";
  while (strlen(hdr) % 8 != 4) /* data starts 4 bytes off an 8-byte boundary: 'a' (F16) */
    strcat(hdr, "\t");       /* is aligned, 'b' (F32, 2 bytes further) is not */
  unsigned char d2[10] = {0x00, 0x3c, 0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0};
  write_raw(path, strlen(hdr), hdr, d2, sizeof d2);
  mb_safetensors *st;
  if (mb_safetensors_open(path, &st) != MB_OK)
    fail_msg("%s", mb_error_message());
  assert_string_equal(mb_safetensors_entry(st, 0)->name, "a");
  assert_string_equal(mb_safetensors_entry(st, 1)->name, "b");
  mb_tensor t;
  assert_int_equal(mb_safetensors_get(st, "b", &t), MB_OK);
  assert_int_equal(t.owns, 1); /* misaligned in the file: an aligned copy */
  assert_true(((const float *)t.data)[0] == 1.0f && ((const float *)t.data)[1] == -2.0f);
  mb_tensor_free(&t);
  assert_int_equal(mb_safetensors_get(st, "a", &t), MB_OK);
  assert_int_equal(t.owns, 0);
  assert_int_equal(*(const uint16_t *)t.data, 0x3c00);
  /* the mapping is copy-on-write: writing through it is allowed and private */
  *(uint16_t *)t.data = 0x4000;
  mb_safetensors_close(st);
  char *again = slurp(path, &n);
  assert_int_equal((unsigned char)again[8 + strlen(hdr) + 1], 0x3c);
  free(again);

  /* no tensors at all, only a header */
  write_raw(path, 2, "{}", NULL, 0);
  assert_int_equal(mb_safetensors_open(path, &st), MB_OK);
  assert_int_equal(mb_safetensors_count(st), 0);
  assert_int_equal(mb_safetensors_metadata_count(st), 0);
  mb_safetensors_close(st);
}

/* Dtypes of the format that mambert does not compute in still open. */
static void test_safetensors_foreign_dtypes(void **state) {
  (void)state;
  char path[256];
  tmp_path(path, sizeof path, "foreign.safetensors");
  const char *hdr = "{\"c\":{\"dtype\":\"C64\",\"shape\":[1],\"data_offsets\":[0,8]},"
                    "\"f4\":{\"dtype\":\"F4\",\"shape\":[4],\"data_offsets\":[8,10]},"
                    "\"nine\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[10,12]}}";
  unsigned char data[12] = {0};
  write_raw(path, strlen(hdr), hdr, data, sizeof data);
  mb_safetensors *st;
  if (mb_safetensors_open(path, &st) != MB_OK)
    fail_msg("%s", mb_error_message());
  const mb_st_entry *e = mb_safetensors_find(st, "c");
  assert_non_null(e);
  assert_int_equal(e->dtype, MB_DTYPE_COUNT);
  assert_string_equal(e->dtype_name, "C64");
  mb_tensor t;
  assert_int_equal(mb_safetensors_get(st, "c", &t), MB_EUNSUPPORTED);
  assert_non_null(strstr(mb_error_message(), path));
  assert_non_null(strstr(mb_error_message(), "tensor 'c': dtype C64"));
  assert_int_equal(mb_safetensors_get(st, "nine", &t), MB_EUNSUPPORTED);
  assert_non_null(strstr(mb_error_message(), "9 dimensions"));
  assert_int_equal(mb_safetensors_find(st, "nine")->numel, 2);
  mb_safetensors_close(st);
  /* 3 four-bit values are not a whole number of bytes */
  hdr = "{\"f4\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}";
  write_raw(path, strlen(hdr), hdr, data, 2);
  assert_int_equal(mb_safetensors_open(path, &st), MB_EFORMAT);
  assert_non_null(strstr(mb_error_message(), "tensor 'f4': 3 elements of F4 are not a whole number of bytes"));
}

/* ---- corrupt files ---- */

static void expect_fail(const char *path, const char *needle, const char *needle2) {
  mb_safetensors *st = (mb_safetensors *)1;
  mb_error_clear();
  int rc = mb_safetensors_open(path, &st);
  if (rc == MB_OK)
    fail_msg("%s opened, expected an error containing \"%s\"", path, needle);
  assert_null(st);
  const char *msg = mb_error_message();
  if (!strstr(msg, path) || !strstr(msg, needle) || (needle2 && !strstr(msg, needle2)))
    fail_msg("message \"%s\" lacks the path, \"%s\" or \"%s\"", msg, needle, needle2 ? needle2 : "");
}

static void corrupt(const char *name, const char *header, size_t ndata, const char *needle, const char *needle2) {
  char path[256];
  tmp_path(path, sizeof path, name);
  static unsigned char zeros[256];
  write_raw(path, strlen(header), header, zeros, ndata);
  expect_fail(path, needle, needle2);
}

static void test_safetensors_corrupt_files(void **state) {
  (void)state;
  char path[256];
  const char *ok = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";

  /* truncated: the file ends inside the data, inside the header, inside the length */
  tmp_path(path, sizeof path, "truncated.safetensors");
  unsigned char data[8] = {0};
  write_raw(path, strlen(ok), ok, data, 7);
  expect_fail(path, "tensor 'w': data_offsets [0, 8] run past the end of the data buffer", "(7 bytes");
  write_raw(path, strlen(ok) + 40, ok, NULL, 0);
  expect_fail(path, "header length 94 runs past the end of the file (62 bytes)", NULL);
  FILE *f = fopen(path, "wb");
  fwrite("\x10\0\0", 1, 3, f);
  fclose(f);
  expect_fail(path, "file is 3 bytes, too short for the 8-byte header length", NULL);
  tmp_path(path, sizeof path, "missing.safetensors");
  assert_int_equal(mb_safetensors_open(path, &(mb_safetensors *){NULL}), MB_ENOTFOUND);
  assert_non_null(strstr(mb_error_message(), path));

  /* header length beyond the limit (checked before anything is read) */
  tmp_path(path, sizeof path, "huge_header.safetensors");
  write_raw(path, 100000001ull, ok, data, 8);
  expect_fail(path, "header length 100000001 is larger than the limit of 100000000 bytes", NULL);
  write_raw(path, 0xffffffffffffffffull, ok, data, 8);
  expect_fail(path, "header length 18446744073709551615 is larger than the limit", NULL);

  /* not JSON, not an object, not UTF-8 */
  corrupt("bad_json.safetensors", "{\"w\":{\"dtype\":\"F32\",", 0, "header is not valid JSON", "line 1");
  corrupt("trailing.safetensors", "{} x", 0, "header is not valid JSON", NULL);
  corrupt("array.safetensors", "[1, 2]", 0, "header is an array, expected a JSON object", NULL);
  corrupt("utf8.safetensors", "{\"\xff\xfe\":{}}", 0, "header is not valid JSON", NULL);

  /* fields */
  corrupt("no_offsets.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8,
          "tensor 'w': missing field 'data_offsets'", NULL);
  corrupt("no_dtype.safetensors", "{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
          "tensor 'w': missing field 'dtype'", NULL);
  corrupt("no_shape.safetensors", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8,
          "tensor 'w': missing field 'shape'", NULL);
  corrupt("entry_not_object.safetensors", "{\"w\":[1,2]}", 0, "tensor 'w': is an array, expected an object", NULL);
  corrupt("dtype_number.safetensors", "{\"w\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
          "tensor 'w': field 'dtype' is an integer, expected a string", NULL);
  corrupt("unknown_dtype.safetensors", "{\"w\":{\"dtype\":\"F7\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
          "tensor 'w': unknown dtype 'F7'", NULL);
  corrupt("lower_dtype.safetensors", "{\"w\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
          "tensor 'w': unknown dtype 'f32'", NULL);
  corrupt("negative_shape.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4,-2],\"data_offsets\":[0,8]}}", 8,
          "tensor 'w': shape[1] is -2, expected a non-negative integer", NULL);
  corrupt("real_shape.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8,
          "tensor 'w': shape[0] is a real number", NULL);
  corrupt("shape_object.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,8]}}", 8,
          "tensor 'w': field 'shape' is an object", NULL);
  corrupt("offsets_three.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 8,
          "tensor 'w': field 'data_offsets' is [0,8,8], expected [BEGIN, END]", NULL);
  corrupt("offsets_negative.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8,
          "tensor 'w': field 'data_offsets' is [-8,0]", NULL);
  corrupt("offsets_reversed.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8,
          "tensor 'w': data_offsets [8, 0] end before they begin", NULL);
  corrupt("overflow.safetensors",
          "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8,
          "tensor 'w': shape has too many elements", NULL);
  corrupt("meta_number.safetensors", "{\"__metadata__\":{\"format\":1},\"w\":{\"dtype\":\"F32\",\"shape\":[2],"
          "\"data_offsets\":[0,8]}}", 8, "__metadata__: value of 'format' is an integer, expected a string", NULL);
  corrupt("meta_array.safetensors", "{\"__metadata__\":[\"pt\"]}", 0, "__metadata__ is an array", NULL);

  /* sizes and layout */
  corrupt("wrong_size.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,16]}}", 16,
          "tensor 'w': data_offsets [0, 16] hold 16 bytes, but shape [2, 3] of F32 needs 24", NULL);
  corrupt("past_end.safetensors",
          "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
          "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 16,
          "tensor 'b': data_offsets [8, 24] run past the end of the data buffer", NULL);
  corrupt("overlap.safetensors",
          "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
          "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
          "tensor 'b': data_offsets [4, 12] overlap tensor 'a' [0, 8]", NULL);
  corrupt("same_place.safetensors",
          "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
          "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
          "tensor 'b': data_offsets [0, 8] overlap tensor 'a' [0, 8]", NULL);
  corrupt("gap.safetensors",
          "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
          "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", 20,
          "tensor 'b': gap of 4 bytes between it (data_offsets [12, 20]) and tensor 'a' (ending at 8)", NULL);
  corrupt("gap_at_start.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
          "tensor 'w': data starts at byte 4, but the first tensor must start at 0", NULL);
  corrupt("stray_bytes.safetensors", ok, 11, "the tensors cover 8 bytes of the data buffer, but it has 11",
          "3 stray bytes");
  corrupt("duplicate.safetensors",
          "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
          "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16,
          "tensor 'w': the name appears more than once in the header", NULL);
  /* empty tensors may share an offset (the reference allows it) */
  tmp_path(path, sizeof path, "shared_empty.safetensors");
  const char *hdr = "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                    "\"b\":{\"dtype\":\"I64\",\"shape\":[0,5],\"data_offsets\":[0,0]}}";
  write_raw(path, strlen(hdr), hdr, NULL, 0);
  mb_safetensors *st;
  assert_int_equal(mb_safetensors_open(path, &st), MB_OK);
  mb_safetensors_close(st);
}

/* Random byte flips in a valid file: every result is a clean open or a
 * clean error naming the file (ASan/UBSan watch the rest). */
static void test_safetensors_mutations_never_crash(void **state) {
  (void)state;
  size_t n;
  char *orig = slurp(FIXTURES "/reference.safetensors", &n);
  char *buf = malloc(n);
  char path[256];
  tmp_path(path, sizeof path, "mutant.safetensors");
  uint64_t s = 88172645463325252ull;
  int opened = 0, refused = 0;
  for (int iter = 0; iter < 1500; iter++) {
    memcpy(buf, orig, n);
    int flips = 1 + iter % 4;
    for (int k = 0; k < flips; k++) {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      size_t at = (iter % 3 == 0) ? (size_t)(s % 8) : (size_t)(s % (n < 700 ? n : 700)); /* length or header */
      buf[at] = (char)(s >> 32);
    }
    size_t len = (iter % 5 == 0) ? (size_t)(s % n) : n; /* sometimes truncated too */
    FILE *f = fopen(path, "wb");
    fwrite(buf, 1, len, f);
    fclose(f);
    mb_safetensors *st;
    if (mb_safetensors_open(path, &st) == MB_OK) {
      for (size_t i = 0; i < mb_safetensors_count(st); i++) {
        mb_tensor t;
        const mb_st_entry *e = mb_safetensors_entry(st, i);
        if (mb_safetensors_get(st, e->name, &t) == MB_OK) {
          volatile unsigned char sink = 0;
          for (size_t b = 0; b < mb_tensor_nbytes(&t); b++)
            sink ^= ((const unsigned char *)t.data)[b];
          (void)sink;
          mb_tensor_free(&t);
        }
      }
      mb_safetensors_close(st);
      opened++;
    } else {
      if (!strstr(mb_error_message(), path))
        fail_msg("message without the path: %s", mb_error_message());
      refused++;
    }
  }
  assert_true(refused > 0);
  print_message("mutations: %d opened, %d refused with a message\n", opened, refused);
  free(buf);
  free(orig);
}

static void test_safetensors_writer_errors(void **state) {
  (void)state;
  mb_safetensors_writer *w;
  assert_int_equal(mb_safetensors_writer_new(&w), MB_OK);
  float x[2] = {1, 2};
  mb_shape s = mb_shape1(2);
  assert_int_equal(mb_safetensors_writer_add(w, "x", MB_F32, &s, x), MB_OK);
  assert_int_equal(mb_safetensors_writer_add(w, "x", MB_F32, &s, x), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "tensor 'x' added twice"));
  assert_int_equal(mb_safetensors_writer_add(w, "__metadata__", MB_F32, &s, x), MB_EINVAL);
  assert_int_equal(mb_safetensors_writer_add(w, "y", MB_F32, &s, NULL), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "'y'"));
  mb_shape neg = mb_shape1(-1);
  assert_int_equal(mb_safetensors_writer_add(w, "z", MB_F32, &neg, x), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "tensor 'z'"));
  assert_int_equal(mb_safetensors_writer_add(w, "q", MB_DTYPE_COUNT, &s, x), MB_EINVAL);
  mb_tensor dev;
  mb_tensor_wrap(&dev, MB_F32, s, (mb_device){MB_DEVICE_CUDA, 0}, x);
  assert_int_equal(mb_safetensors_writer_add_tensor(w, "gpu", &dev), MB_EUNSUPPORTED);
  assert_int_equal(mb_safetensors_writer_add(w, "e", MB_F32, &(mb_shape){1, {0}}, NULL), MB_OK); /* empty: no data */
  assert_int_equal(mb_safetensors_writer_add(w, "bad\xff", MB_F32, &s, x), MB_OK);
  char path[256];
  tmp_path(path, sizeof path, "writer.safetensors");
  assert_int_equal(mb_safetensors_writer_write(w, path), MB_EINVAL); /* invalid UTF-8 name */
  assert_non_null(strstr(mb_error_message(), "UTF-8"));
  assert_false(mb_file_exists(path));
  mb_safetensors_writer_free(w);

  /* a failed write leaves the previous file whole */
  assert_int_equal(mb_safetensors_writer_new(&w), MB_OK);
  assert_int_equal(mb_safetensors_writer_add(w, "x", MB_F32, &s, x), MB_OK);
  assert_int_equal(mb_safetensors_writer_write(w, path), MB_OK);
  size_t n0, n1;
  char *before = slurp(path, &n0);
  float more[4] = {0};
  assert_int_equal(mb_safetensors_writer_add(w, "more", MB_F32, &(mb_shape){1, {4}}, more), MB_OK);
  tmp_path(path, sizeof path, "no/dir/writer.safetensors");
  assert_int_equal(mb_safetensors_writer_write(w, path), MB_EIO);
  assert_non_null(strstr(mb_error_message(), path));
  tmp_path(path, sizeof path, "writer.safetensors");
  char *after = slurp(path, &n1);
  assert_int_equal(n0, n1);
  assert_memory_equal(before, after, n0);
  free(before);
  free(after);
  assert_int_equal(mb_safetensors_writer_write(w, path), MB_OK); /* and it can be written again */
  mb_safetensors *st;
  assert_int_equal(mb_safetensors_open(path, &st), MB_OK);
  assert_int_equal(mb_safetensors_count(st), 2);
  mb_safetensors_close(st);
  mb_safetensors_writer_free(w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_safetensors_reads_reference_file),
      cmocka_unit_test(test_safetensors_reads_reference_metadata),
      cmocka_unit_test(test_safetensors_round_trip_every_dtype),
      cmocka_unit_test(test_safetensors_hand_made_bytes),
      cmocka_unit_test(test_safetensors_foreign_dtypes),
      cmocka_unit_test(test_safetensors_corrupt_files),
      cmocka_unit_test(test_safetensors_mutations_never_crash),
      cmocka_unit_test(test_safetensors_writer_errors),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
