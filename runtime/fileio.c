/* fileio.c: whole-file reads, atomic writes, mkdir -p, paths (fileio.h). */
#include "runtime/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static mb_fileio_fault_hook fault_hook;

void mb_fileio_set_fault_hook(mb_fileio_fault_hook hook) { fault_hook = hook; }

/* Ask the test hook whether `step` should fail; sets errno when it should. */
static int injected(const char *step, const char *path) {
  if (!fault_hook)
    return 0;
  int e = fault_hook(step, path);
  if (e)
    errno = e;
  return e != 0;
}

/* ---- reading ---- */

int mb_read_file(const char *path, size_t max_bytes, char **data, size_t *size) {
  *data = NULL;
  *size = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return MB_ERR(errno == ENOENT ? MB_ENOTFOUND : MB_EIO, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return MB_ERR(MB_EIO, "%s: cannot stat: %s", path, strerror(e));
  }
  if (S_ISDIR(st.st_mode)) {
    close(fd);
    return MB_ERR(MB_EIO, "%s: is a directory, expected a file", path);
  }
  if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max_bytes) {
    close(fd);
    return MB_ERR(MB_EINVAL, "%s: file is %llu bytes, more than the limit of %zu bytes", path,
                  (unsigned long long)st.st_size, max_bytes);
  }
  /* Regular files: one buffer of the stat size (re-checked while reading, in
   * case the file grows). Pipes and the like: grow as needed. */
  size_t cap = S_ISREG(st.st_mode) ? (size_t)st.st_size : 65536;
  if (cap > max_bytes)
    cap = max_bytes;
  char *buf = malloc(cap + 1);
  if (!buf) {
    close(fd);
    return MB_ERR(MB_ENOMEM, "%s: cannot allocate %zu bytes to read it", path, cap + 1);
  }
  size_t len = 0;
  for (;;) {
    if (len == cap) {
      /* Full: probe one more byte before growing, so a file of exactly
       * max_bytes is accepted and a longer one is refused. */
      char probe;
      ssize_t r = read(fd, &probe, 1);
      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0)
        goto read_error;
      if (r == 0)
        break;
      if (len >= max_bytes) {
        free(buf);
        close(fd);
        return MB_ERR(MB_EINVAL, "%s: file is larger than the limit of %zu bytes", path, max_bytes);
      }
      size_t ncap = cap * 2 > max_bytes ? max_bytes : cap * 2;
      if (ncap < cap + 1)
        ncap = cap + 1;
      char *nb = realloc(buf, ncap + 1);
      if (!nb) {
        free(buf);
        close(fd);
        return MB_ERR(MB_ENOMEM, "%s: cannot allocate %zu bytes to read it", path, ncap + 1);
      }
      buf = nb;
      cap = ncap;
      buf[len++] = probe;
      continue;
    }
    ssize_t r = read(fd, buf + len, cap - len);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      goto read_error;
    if (r == 0)
      break;
    len += (size_t)r;
  }
  close(fd);
  buf[len] = 0;
  *data = buf;
  *size = len;
  return MB_OK;

read_error: {
  int e = errno;
  free(buf);
  close(fd);
  return MB_ERR(MB_EIO, "%s: read failed after %zu bytes: %s", path, len, strerror(e));
}
}

/* ---- atomic writes ---- */

struct mb_atomic_file {
  int fd;
  char *path; /* the target */
  char *tmp;  /* the temporary beside it */
};

static atomic_uint tmp_counter;

const char *mb_atomic_temp_path(const mb_atomic_file *f) { return f->tmp; }

/* Directory part of path ("." when there is none). Caller frees. */
static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash)
    return strdup(".");
  if (slash == path)
    return strdup("/");
  return strndup(path, (size_t)(slash - path));
}

int mb_atomic_open(const char *path, mb_atomic_file **out) {
  *out = NULL;
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  if (!*base)
    return MB_ERR(MB_EINVAL, "%s: not a file name (ends with '/')", path);
  mb_atomic_file *f = calloc(1, sizeof *f);
  size_t cap = strlen(path) + 64;
  if (!f || !(f->path = strdup(path)) || !(f->tmp = malloc(cap))) {
    if (f)
      free(f->path);
    free(f);
    return MB_ERR(MB_ENOMEM, "%s: out of memory opening it for writing", path);
  }
  size_t dirlen = (size_t)(base - path);
  for (int attempt = 0;; attempt++) {
    snprintf(f->tmp, cap, "%.*s.%s.tmp.%ld.%u", (int)dirlen, path, base, (long)getpid(),
             atomic_fetch_add(&tmp_counter, 1));
    if (injected("open", f->tmp)) {
      f->fd = -1;
    } else {
      f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    }
    if (f->fd >= 0)
      break;
    if (errno == EEXIST && attempt < 100)
      continue; /* a stale temporary from a crashed process with our pid */
    int e = errno;
    free(f->path);
    free(f->tmp);
    free(f);
    return MB_ERR(MB_EIO, "%s: cannot create a temporary file beside it: %s", path, strerror(e));
  }
  *out = f;
  return MB_OK;
}

int mb_atomic_write(mb_atomic_file *f, const void *data, size_t n) {
  const char *p = data;
  while (n > 0) {
    ssize_t w;
    if (injected("write", f->tmp))
      w = -1;
    else
      w = write(f->fd, p, n > (1u << 30) ? (1u << 30) : n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return MB_ERR(MB_EIO, "%s: write failed: %s", f->path, strerror(errno));
    p += w;
    n -= (size_t)w;
  }
  return MB_OK;
}

static void atomic_free(mb_atomic_file *f) {
  free(f->path);
  free(f->tmp);
  free(f);
}

void mb_atomic_abort(mb_atomic_file *f) {
  if (!f)
    return;
  if (f->fd >= 0)
    close(f->fd);
  unlink(f->tmp);
  atomic_free(f);
}

int mb_atomic_commit(mb_atomic_file *f) {
  int rc = MB_OK;
  if (injected("fsync", f->tmp) || fsync(f->fd) != 0) {
    rc = MB_ERR(MB_EIO, "%s: fsync failed: %s", f->path, strerror(errno));
    mb_atomic_abort(f);
    return rc;
  }
  int failed_close = injected("close", f->tmp);
  if (failed_close) {
    int e = errno;
    close(f->fd);
    errno = e;
  } else {
    failed_close = close(f->fd) != 0;
  }
  f->fd = -1;
  if (failed_close) {
    rc = MB_ERR(MB_EIO, "%s: closing the written file failed: %s", f->path, strerror(errno));
    mb_atomic_abort(f);
    return rc;
  }
  if (injected("rename", f->tmp) || rename(f->tmp, f->path) != 0) {
    rc = MB_ERR(MB_EIO, "%s: cannot move the written file into place: %s", f->path, strerror(errno));
    mb_atomic_abort(f);
    return rc;
  }
  /* Make the rename itself durable. Some file systems cannot fsync a
   * directory (EINVAL); the data is in place, so only real errors count. */
  char *dir = dir_of(f->path);
  int dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
  if (dfd >= 0) {
    if ((injected("fsync_dir", dir) || fsync(dfd) != 0) && errno != EINVAL && errno != ENOTSUP)
      rc = MB_ERR(MB_EIO, "%s: written, but syncing its directory %s failed: %s", f->path, dir,
                  strerror(errno));
    close(dfd);
  }
  free(dir);
  atomic_free(f);
  return rc;
}

int mb_write_file_atomic(const char *path, const void *data, size_t n) {
  mb_atomic_file *f;
  MB_TRY(mb_atomic_open(path, &f));
  int rc = mb_atomic_write(f, data, n);
  if (rc != MB_OK) {
    mb_atomic_abort(f);
    return rc;
  }
  return mb_atomic_commit(f);
}

/* ---- directories and paths ---- */

int mb_mkdir_p(const char *path) {
  if (!path || !*path)
    return MB_ERR(MB_EINVAL, "mkdir: empty path");
  char *p = strdup(path);
  if (!p)
    return MB_ERR(MB_ENOMEM, "mkdir %s: out of memory", path);
  /* Visit every prefix ending at a '/' and then the whole path. */
  for (char *s = p + 1;; s++) {
    int end = *s == 0;
    if (*s == '/' || end) {
      char saved = *s;
      *s = 0;
      if (mkdir(p, 0777) != 0 && errno != EEXIST) {
        int e = errno;
        int rc = MB_ERR(MB_EIO, "mkdir %s: cannot create %s: %s", path, p, strerror(e));
        free(p);
        return rc;
      }
      if (!mb_is_dir(p)) {
        int rc = MB_ERR(MB_EIO, "mkdir %s: %s exists and is not a directory", path, p);
        free(p);
        return rc;
      }
      *s = saved;
      if (end)
        break;
      while (s[1] == '/') /* collapse "a//b" */
        s++;
      if (s[1] == 0)
        break; /* trailing slash */
    }
  }
  free(p);
  return MB_OK;
}

int mb_dir_writable(const char *path, const char *what) {
  int rc = mb_mkdir_p(path);
  if (rc != MB_OK)
    return mb_error_context(rc, "%s", what);
  char probe[4200];
  if (snprintf(probe, sizeof probe, "%s/.mambert-write-test-XXXXXX", path) >= (int)sizeof probe)
    return MB_ERR(MB_EINVAL, "%s %s: path too long", what, path);
  int fd = mkstemp(probe);
  if (fd < 0)
    return MB_ERR(MB_EIO, "%s %s: cannot write there: %s", what, path, strerror(errno));
  close(fd);
  unlink(probe);
  return MB_OK;
}

int mb_path_join(char *out, size_t cap, const char *a, const char *b) {
  int n;
  if (!a || !*a || b[0] == '/')
    n = snprintf(out, cap, "%s", b);
  else if (!*b)
    n = snprintf(out, cap, "%s", a);
  else
    n = snprintf(out, cap, "%s%s%s", a, a[strlen(a) - 1] == '/' ? "" : "/", b);
  if (n < 0 || (size_t)n >= cap)
    return MB_ERR(MB_EINVAL, "path %s/%s is longer than %zu bytes", a ? a : "", b, cap ? cap - 1 : 0);
  return MB_OK;
}

int mb_path_absolute(char *out, size_t cap, const char *path) {
  char cwd[4096], copy[4096];
  if (path[0] != '/' && !getcwd(cwd, sizeof cwd))
    return MB_ERR(MB_EIO, "%s: cannot make it absolute: the working directory: %s", path, strerror(errno));
  if (snprintf(copy, sizeof copy, "%s", path) >= (int)sizeof copy) /* out may alias path */
    return MB_ERR(MB_EINVAL, "path %.64s... is longer than %zu bytes", path, sizeof copy - 1);
  return mb_path_join(out, cap, path[0] == '/' ? "" : cwd, copy);
}

int mb_file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

int mb_is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int mb_file_size(const char *path, uint64_t *size) {
  struct stat st;
  if (stat(path, &st) != 0)
    return MB_ERR(errno == ENOENT ? MB_ENOTFOUND : MB_EIO, "%s: cannot stat: %s", path, strerror(errno));
  *size = (uint64_t)st.st_size;
  return MB_OK;
}

/* ---- writers' temporaries ------------------------------------------------ */

static void host_name(char *out, size_t cap) {
  if (gethostname(out, cap - 1) != 0)
    snprintf(out, cap, "host");
  out[cap - 1] = 0;
  for (char *c = out; *c; c++) /* a name for a file, and no glob characters */
    if (*c == '/' || *c == '*' || *c == '?' || *c == '[' || *c == ']')
      *c = '_';
}

void mb_writer_temp_name(const char *prefix, char *out, size_t cap) {
  char host[128];
  host_name(host, sizeof host);
  snprintf(out, cap, "%s%s-%ld", prefix, host, (long)getpid());
}

int mb_writer_temp_is_dead(const char *prefix, const char *name) {
  char host[128];
  host_name(host, sizeof host);
  const size_t pl = strlen(prefix), hl = strlen(host);
  /* exactly <prefix><host>-<digits>: host "node" does not match "node-2-17" */
  if (strncmp(name, prefix, pl) != 0 || strncmp(name + pl, host, hl) != 0 || name[pl + hl] != '-')
    return 0;
  const char *digits = name + pl + hl + 1;
  char *end;
  const long pid = strtol(digits, &end, 10);
  if (!*digits || *end || pid <= 0 || pid == (long)getpid())
    return 0;
  return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}
