/* tfevents.c: TFRecord-framed Event protobufs for TensorBoard (tfevents.h). */
#include "experiments/tfevents.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "runtime/fileio.h"

/* ---- CRC32C, reflected polynomial 0x82F63B78, one table ------------------- */

static uint32_t crc_table[256];
static int crc_ready;

static void crc_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++)
      c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    crc_table[i] = c;
  }
  crc_ready = 1;
}

uint32_t mb_crc32c(const void *data, size_t n) {
  if (!crc_ready)
    crc_init();
  const uint8_t *p = data;
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++)
    c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t mb_crc32c_masked(const void *data, size_t n) {
  uint32_t c = mb_crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

/* ---- protobuf pieces ------------------------------------------------------- */

typedef struct {
  uint8_t *p;
  size_t len, cap;
  int overflow;
} pbuf;

static void put_byte(pbuf *b, uint8_t v) {
  if (b->len < b->cap)
    b->p[b->len] = v;
  else
    b->overflow = 1;
  b->len++;
}

static void put_varint(pbuf *b, uint64_t v) {
  while (v >= 0x80) {
    put_byte(b, (uint8_t)(v | 0x80));
    v >>= 7;
  }
  put_byte(b, (uint8_t)v);
}

static void put_tag(pbuf *b, int field, int wire) { put_varint(b, ((uint64_t)field << 3) | (uint64_t)wire); }

static void put_fixed(pbuf *b, const void *v, int n) { /* little-endian host */
  for (int i = 0; i < n; i++)
    put_byte(b, ((const uint8_t *)v)[i]);
}

static void put_bytes(pbuf *b, int field, const void *data, size_t n) {
  put_tag(b, field, 2);
  put_varint(b, n);
  for (size_t i = 0; i < n; i++)
    put_byte(b, ((const uint8_t *)data)[i]);
}

static size_t varint_len(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

/* Summary.Value { tag = 1 (string); simple_value = 2 (float) } */
static size_t value_len(const char *tag) {
  size_t t = strlen(tag);
  return 1 + varint_len(t) + t + 1 + 4;
}

size_t mb_tfevent_encode(uint8_t *buf, size_t cap, double wall_time, int64_t step, const char *file_version,
                         const char *const *tags, const double *values, int n, int session_status) {
  pbuf b = {buf, 0, cap, 0};
  put_tag(&b, 1, 1); /* wall_time: double */
  put_fixed(&b, &wall_time, 8);
  if (step != 0) { /* proto3: zero is the default and not written */
    put_tag(&b, 2, 0);
    put_varint(&b, (uint64_t)step);
  }
  if (file_version)
    put_bytes(&b, 3, file_version, strlen(file_version));
  if (n > 0) {
    size_t summary_len = 0;
    for (int i = 0; i < n; i++) {
      size_t vl = value_len(tags[i]);
      summary_len += 1 + varint_len(vl) + vl;
    }
    put_tag(&b, 5, 2);
    put_varint(&b, summary_len);
    for (int i = 0; i < n; i++) {
      put_tag(&b, 1, 2);
      put_varint(&b, value_len(tags[i]));
      put_bytes(&b, 1, tags[i], strlen(tags[i]));
      float f = (float)values[i];
      put_tag(&b, 2, 5); /* simple_value: float, fixed32 */
      put_fixed(&b, &f, 4);
    }
  }
  if (session_status > 0) {
    put_tag(&b, 7, 2); /* session_log (7): SessionLog { status = 1 (enum) }; 6 is the deprecated log_message */
    put_varint(&b, 1 + varint_len((uint64_t)session_status));
    put_tag(&b, 1, 0);
    put_varint(&b, (uint64_t)session_status);
  }
  return b.overflow ? 0 : b.len;
}

/* ---- the file ---------------------------------------------------------------- */

struct mb_tfevents {
  FILE *f;
  char path[1024];
  uint8_t *buf;
  size_t cap;
};

static double wall_now(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
}

static int write_record(mb_tfevents *w, const uint8_t *data, size_t n) {
  uint64_t len = n;
  uint8_t head[12];
  memcpy(head, &len, 8);
  uint32_t c1 = mb_crc32c_masked(head, 8);
  memcpy(head + 8, &c1, 4);
  uint32_t c2 = mb_crc32c_masked(data, n);
  if (fwrite(head, 1, 12, w->f) != 12 || fwrite(data, 1, n, w->f) != n || fwrite(&c2, 1, 4, w->f) != 4 ||
      fflush(w->f) != 0)
    return MB_ERR(MB_EIO, "%s: write failed: %s", w->path, strerror(errno));
  return MB_OK;
}

static int write_event(mb_tfevents *w, int64_t step, const char *fv, const char *const *tags, const double *values,
                       int n, int status) {
  for (;;) {
    size_t len = mb_tfevent_encode(w->buf, w->cap, wall_now(), step, fv, tags, values, n, status);
    if (len)
      return write_record(w, w->buf, len);
    size_t nc = w->cap * 2;
    uint8_t *nb = realloc(w->buf, nc);
    if (!nb)
      return MB_ERR(MB_ENOMEM, "out of memory for an event");
    w->buf = nb;
    w->cap = nc;
  }
}

int mb_tfevents_open(const char *dir, mb_tfevents **out, char *path_out, size_t cap) {
  char host[128] = "localhost";
  gethostname(host, sizeof host - 1);
  host[sizeof host - 1] = 0;
  char name[256];
  static int seq;
  /* unique even when reopened within the same second by the same process */
  char suffix[16] = "";
  if (seq)
    snprintf(suffix, sizeof suffix, ".%d", seq);
  seq++;
  snprintf(name, sizeof name, "events.out.tfevents.%lld.%s.%d%s.mambert", (long long)time(NULL), host, (int)getpid(),
           suffix);
  mb_tfevents *w = calloc(1, sizeof *w);
  if (!w)
    return MB_ERR(MB_ENOMEM, "out of memory");
  int rc = mb_path_join(w->path, sizeof w->path, dir, name);
  if (rc != MB_OK) {
    free(w);
    return rc;
  }
  w->f = fopen(w->path, "wbx");
  if (!w->f) {
    rc = MB_ERR(MB_EIO, "%s: cannot create: %s", w->path, strerror(errno));
    free(w);
    return rc;
  }
  w->cap = 256;
  w->buf = malloc(w->cap);
  if (!w->buf || write_event(w, 0, "brain.Event:2", NULL, NULL, 0, 0) != MB_OK) {
    rc = w->buf ? mb_error_code() : MB_ERR(MB_ENOMEM, "out of memory");
    fclose(w->f);
    free(w->buf);
    free(w);
    return rc;
  }
  if (path_out)
    snprintf(path_out, cap, "%s", w->path);
  *out = w;
  return MB_OK;
}

int mb_tfevents_scalars(mb_tfevents *w, int64_t step, const char *const *tags, const double *values, int n) {
  return write_event(w, step, NULL, tags, values, n, 0);
}

int mb_tfevents_scalar(mb_tfevents *w, const char *tag, int64_t step, double value) {
  return mb_tfevents_scalars(w, step, &tag, &value, 1);
}

int mb_tfevents_session_start(mb_tfevents *w, int64_t step) { return write_event(w, step, NULL, NULL, NULL, 0, 1); }

int mb_tfevents_close(mb_tfevents *w) {
  if (!w)
    return MB_OK;
  int rc = MB_OK;
  if (fclose(w->f) != 0)
    rc = MB_ERR(MB_EIO, "%s: close failed: %s", w->path, strerror(errno));
  free(w->buf);
  free(w);
  return rc;
}
