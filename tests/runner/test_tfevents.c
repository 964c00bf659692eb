/* test_tfevents.c: the TensorBoard event writer (experiments/tfevents.h)
 * and metrics.jsonl (experiments/metrics.h): CRC32C against its check value,
 * an Event's protobuf bytes worked out by hand, the TFRecord framing of a
 * written file read back and checked, and a resumed run's metrics dropping
 * the lines logged after its checkpoint. tools/check_tensorboard.py reads the
 * same files with TensorBoard itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "experiments/metrics.h"
#include "experiments/tfevents.h"
#include "runtime/error.h"
#include "runtime/fileio.h"

static char root[64];

static int setup(void **state) {
  (void)state;
  strcpy(root, "/tmp/mb_tfevents_XXXXXX");
  return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", root);
  return system(cmd) == 0 ? 0 : -1;
}

static void test_crc32c(void **state) {
  (void)state;
  assert_int_equal(mb_crc32c("123456789", 9), 0xE3069283u); /* the CRC-32C check value */
  assert_int_equal(mb_crc32c("", 0), 0);
  uint32_t c = mb_crc32c("123456789", 9);
  assert_int_equal(mb_crc32c_masked("123456789", 9), ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

static void test_event_bytes(void **state) {
  (void)state;
  uint8_t buf[64];
  const char *tags[] = {"a"};
  const double vals[] = {2.0};
  size_t n = mb_tfevent_encode(buf, sizeof buf, 1.5, 3, NULL, tags, vals, 1, 0);
  /* wall_time (1, fixed64) = 1.5; step (2, varint) = 3; summary (5) { value (1) {
   * tag (1) = "a"; simple_value (2, fixed32) = 2.0f } } */
  const uint8_t want[] = {0x09, 0, 0, 0, 0, 0, 0, 0xF8, 0x3F, 0x10, 0x03, 0x2A, 0x0A, 0x0A,
                          0x08, 0x0A, 0x01, 'a', 0x15, 0, 0, 0, 0x40};
  assert_int_equal(n, sizeof want);
  assert_memory_equal(buf, want, sizeof want);
  /* file_version event; step 0 is proto3's default and is not written */
  n = mb_tfevent_encode(buf, sizeof buf, 0.0, 0, "brain.Event:2", NULL, NULL, 0, 0);
  assert_int_equal(n, 9 + 2 + 13);
  assert_int_equal(buf[9], 0x1A);
  assert_int_equal(buf[10], 13);
  assert_memory_equal(buf + 11, "brain.Event:2", 13);
  /* session_log (field 7) START at step 300 (varint 0xAC 0x02): the bytes
   * TensorBoard's event_pb2 serialises, 10ac023a020801 (field 6 is the
   * deprecated log_message, which TensorBoard does not purge on) */
  n = mb_tfevent_encode(buf, sizeof buf, 0.0, 300, NULL, NULL, NULL, 0, 1);
  const uint8_t tail[] = {0x10, 0xAC, 0x02, 0x3A, 0x02, 0x08, 0x01};
  assert_int_equal(n, 9 + sizeof tail);
  assert_memory_equal(buf + 9, tail, sizeof tail);
  /* step 1, the first training step: written (only 0 is proto3's default) */
  n = mb_tfevent_encode(buf, sizeof buf, 0.0, 1, NULL, NULL, NULL, 0, 1);
  const uint8_t one[] = {0x10, 0x01, 0x3A, 0x02, 0x08, 0x01};
  assert_int_equal(n, 9 + sizeof one);
  assert_memory_equal(buf + 9, one, sizeof one);
  /* too small a buffer: 0, nothing promised */
  assert_int_equal(mb_tfevent_encode(buf, 10, 1.5, 3, NULL, tags, vals, 1, 0), 0);
}

/* Read every record of an event file, checking both CRCs; returns the count. */
static int read_records(const char *path, uint8_t *first, size_t *first_len) {
  char *data;
  size_t n;
  assert_int_equal(mb_read_file(path, 1 << 24, &data, &n), MB_OK);
  size_t off = 0;
  int count = 0;
  while (off < n) {
    assert_true(off + 12 <= n);
    uint64_t len;
    uint32_t c1, c2;
    memcpy(&len, data + off, 8);
    memcpy(&c1, data + off + 8, 4);
    assert_int_equal(c1, mb_crc32c_masked(data + off, 8));
    assert_true(off + 12 + len + 4 <= n);
    memcpy(&c2, data + off + 12 + len, 4);
    assert_int_equal(c2, mb_crc32c_masked(data + off + 12, len));
    if (count == 0 && first) {
      memcpy(first, data + off + 12, len);
      *first_len = len;
    }
    off += 12 + len + 4;
    count++;
  }
  free(data);
  return count;
}

static void test_file_framing(void **state) {
  (void)state;
  mb_tfevents *w;
  char path[512];
  assert_int_equal(mb_tfevents_open(root, &w, path, sizeof path), MB_OK);
  assert_non_null(strstr(path, "events.out.tfevents."));
  assert_int_equal(mb_tfevents_scalar(w, "train/loss", 1, 0.69), MB_OK);
  const char *tags[] = {"train/loss", "train/lr"};
  const double vals[] = {0.5, 1e-4};
  assert_int_equal(mb_tfevents_scalars(w, 2, tags, vals, 2), MB_OK);
  assert_int_equal(mb_tfevents_session_start(w, 2), MB_OK);
  assert_int_equal(mb_tfevents_close(w), MB_OK);
  uint8_t first[256];
  size_t flen = 0;
  assert_int_equal(read_records(path, first, &flen), 4);
  int found = 0;
  for (size_t i = 0; i + 13 <= flen; i++)
    found |= memcmp(first + i, "brain.Event:2", 13) == 0;
  assert_true(found);
  unlink(path);
}

static int count_lines(const char *path) {
  char *data;
  size_t n;
  assert_int_equal(mb_read_file(path, 1 << 24, &data, &n), MB_OK);
  int lines = 0;
  for (size_t i = 0; i < n; i++)
    lines += data[i] == '\n';
  free(data);
  return lines;
}

static void test_metrics_resume_truncates(void **state) {
  (void)state;
  mb_metrics *m;
  assert_int_equal(mb_metrics_open(root, 1, -1, 0, &m), MB_OK);
  const char *keys[] = {"loss", "nan"};
  for (int s = 1; s <= 10; s++) {
    double v[] = {1.0 / s, 0.0 / 0.0};
    assert_int_equal(mb_metrics_log(m, "train", s, keys, v, 2), MB_OK);
  }
  assert_int_equal(mb_metrics_close(m), MB_OK);
  char jl[512];
  snprintf(jl, sizeof jl, "%s/metrics.jsonl", root);
  assert_int_equal(count_lines(jl), 10);
  char *data;
  size_t n;
  assert_int_equal(mb_read_file(jl, 1 << 20, &data, &n), MB_OK);
  assert_non_null(strstr(data, "\"nan\":null")); /* non-finite values are null, not invalid JSON */
  free(data);
  /* a crash left half a line; resume from a checkpoint at step 6 */
  FILE *f = fopen(jl, "ab");
  fputs("{\"kind\":\"train\",\"st", f);
  fclose(f);
  assert_int_equal(mb_metrics_open(root, 1, 6, 0, &m), MB_OK);
  double v[] = {0.25, 1};
  assert_int_equal(mb_metrics_log(m, "train", 7, keys, v, 2), MB_OK);
  assert_int_equal(mb_metrics_close(m), MB_OK);
  assert_int_equal(count_lines(jl), 7);
  assert_int_equal(mb_read_file(jl, 1 << 20, &data, &n), MB_OK);
  assert_null(strstr(data, "\"step\":8"));
  assert_non_null(strstr(data, "\"step\":7,"));
  free(data);
}

/* killed during the final evaluation's export: the resumed run evaluates
 * again, and metrics.jsonl keeps one final eval line, not two */
static void test_metrics_redo_final_eval(void **state) {
  (void)state;
  mb_metrics *m;
  assert_int_equal(mb_metrics_open(root, 0, -1, 0, &m), MB_OK);
  const char *keys[] = {"accuracy"};
  double v[] = {0.5};
  for (int s = 4; s <= 8; s += 4) {
    assert_int_equal(mb_metrics_log(m, "train", s, keys, v, 1), MB_OK);
    assert_int_equal(mb_metrics_log(m, "eval", s, keys, v, 1), MB_OK);
  }
  assert_int_equal(mb_metrics_close(m), MB_OK);
  char jl[512];
  snprintf(jl, sizeof jl, "%s/metrics.jsonl", root);
  assert_int_equal(mb_metrics_open(root, 0, 8, 1, &m), MB_OK);
  assert_int_equal(mb_metrics_close(m), MB_OK);
  char *data;
  size_t n;
  assert_int_equal(mb_read_file(jl, 1 << 20, &data, &n), MB_OK);
  assert_int_equal(count_lines(jl), 3); /* step 4's two lines stay, and step 8's train line */
  assert_non_null(strstr(data, "{\"kind\":\"eval\",\"step\":4,"));
  assert_non_null(strstr(data, "{\"kind\":\"train\",\"step\":8,"));
  assert_null(strstr(data, "{\"kind\":\"eval\",\"step\":8,"));
  free(data);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_crc32c),
      cmocka_unit_test(test_event_bytes),
      cmocka_unit_test_setup_teardown(test_file_framing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_metrics_resume_truncates, setup, teardown),
      cmocka_unit_test_setup_teardown(test_metrics_redo_final_eval, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
