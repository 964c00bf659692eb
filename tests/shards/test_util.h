/* test_util.h: temporary directories and files for the shard/loader tests.
 * Tests run from the repository root (tests/CMakeLists.txt). */
#ifndef MB_TESTS_SHARD_TEST_UTIL_H
#define MB_TESTS_SHARD_TEST_UTIL_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "runtime/error.h"

/* cmocka assertion of MB_OK that shows mb_error_message() when it fails. */
#define assert_ok(expr)                                                        \
  do {                                                                         \
    int tu_rc_ = (expr);                                                       \
    if (tu_rc_ != MB_OK)                                                       \
      fail_msg("%s returned %d: %s", #expr, tu_rc_, mb_error_message());      \
  } while (0)

/* A fresh directory under $TMPDIR (or /tmp); returns a malloc'd path. */
static inline char *tu_mkdtemp(const char *tag) {
  const char *base = getenv("TMPDIR");
  char *p = malloc(4096);
  snprintf(p, 4096, "%s/mambert-%s-XXXXXX", base && base[0] ? base : "/tmp", tag);
  if (!mkdtemp(p)) {
    perror("mkdtemp");
    abort();
  }
  return p;
}

/* Remove a directory tree (no symlink following: lstat). */
static inline void tu_rm_rf(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0)
    return;
  if (S_ISDIR(st.st_mode)) {
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
        continue;
      char *sub = malloc(strlen(path) + strlen(e->d_name) + 2);
      sprintf(sub, "%s/%s", path, e->d_name);
      tu_rm_rf(sub);
      free(sub);
    }
    if (d)
      closedir(d);
    rmdir(path);
  } else {
    unlink(path);
  }
}

static inline void tu_write(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, n, f) != n) {
    perror(path);
    abort();
  }
  fclose(f);
}

static inline void tu_write_gz(const char *path, const void *data, size_t n) {
  gzFile f = gzopen(path, "wb9");
  if (!f || gzwrite(f, data, (unsigned)n) != (int)n) {
    perror(path);
    abort();
  }
  gzclose(f);
}

static inline void tu_write_str(const char *path, const char *s) { tu_write(path, s, strlen(s)); }

/* Full data sets: $MAMBERT_DATA_DIR or ../shared/data (from the repo root). */
static inline const char *tu_data_dir(void) {
  const char *d = getenv("MAMBERT_DATA_DIR");
  return d && d[0] ? d : "../shared/data";
}

static inline int tu_exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

#endif
