/* rundir.c: claiming a run directory without ever overwriting another run
 * (rundir.h). */
#include "experiments/rundir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mambert_build_config.h"
#include "runtime/fileio.h"
#include "runtime/log.h"

struct mb_rundir {
  char path[1024];
  int lock_fd;
  char created[40];
};

static int dir_is_empty(const char *path) {
  DIR *d = opendir(path);
  if (!d)
    return 0;
  struct dirent *e;
  int empty = 1;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 && strcmp(e->d_name, ".lock") != 0)
      empty = 0;
  closedir(d);
  return empty;
}

/* Take <dir>/.lock; MB_EINVAL naming the holder's pid when taken. */
static int take_lock(const char *dir, int *fd_out) {
  char path[1100];
  snprintf(path, sizeof path, "%s/.lock", dir);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0)
    return MB_ERR(MB_EIO, "%s: cannot open: %s", path, strerror(errno));
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = "?";
    ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
    pid[n > 0 ? n : 0] = 0;
    char *nl = strchr(pid, '\n');
    if (nl)
      *nl = 0;
    close(fd);
    return MB_ERR(MB_EINVAL, "run directory %s is in use by another mambert process (pid %s)", dir, pid);
  }
  char pid[32];
  int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n)
    MB_WARN("%s: could not record the pid", path);
  *fd_out = fd;
  return MB_OK;
}

static void describe_run(const char *dir, char *buf, size_t cap) {
  char path[1100];
  snprintf(path, sizeof path, "%s/run.json", dir);
  json_error_t err;
  json_t *j = json_load_file(path, 0, &err);
  const char *name = j ? json_string_value(json_object_get(j, "name")) : NULL;
  const char *created = j ? json_string_value(json_object_get(j, "created")) : NULL;
  const char *status = j ? json_string_value(json_object_get(j, "status")) : NULL;
  snprintf(buf, cap, "run '%s' (created %s, %s)", name ? name : "?", created ? created : "?",
           status ? status : "status unknown");
  json_decref(j);
}

static void stamp(char *buf, size_t cap, const char *fmt) {
  time_t t = time(NULL);
  struct tm tm;
  localtime_r(&t, &tm);
  strftime(buf, cap, fmt, &tm);
}

static int move_aside(const char *dir) {
  char ts[32], to[1100];
  stamp(ts, sizeof ts, "%Y%m%d-%H%M%S");
  snprintf(to, sizeof to, "%s.replaced-%s", dir, ts);
  for (int k = 1; mb_file_exists(to) && k < 100; k++)
    snprintf(to, sizeof to, "%s.replaced-%s-%d", dir, ts, k);
  if (rename(dir, to) != 0)
    return MB_ERR(MB_EIO, "--force: cannot move %s aside to %s: %s", dir, to, strerror(errno));
  MB_WARN("--force: moved the previous contents of %s to %s", dir, to);
  return MB_OK;
}

int mb_rundir_claim(const char *dir, int resume, int force, mb_rundir **out, int *is_resume) {
  *is_resume = 0;
  if (!dir || !*dir)
    return MB_ERR(MB_EINVAL, "no run directory (run.dir or --run-dir)");
  struct stat st;
  int exists = stat(dir, &st) == 0;
  if (exists && !S_ISDIR(st.st_mode))
    return MB_ERR(MB_EINVAL, "run directory %s exists and is not a directory", dir);
  char runjson[1100];
  snprintf(runjson, sizeof runjson, "%s/run.json", dir);
  int has_run = exists && mb_file_exists(runjson);
  int fd = -1;
  if (exists) {
    /* a live trainer there: refuse whatever the flags */
    MB_TRY(take_lock(dir, &fd));
    if (has_run && resume) {
      *is_resume = 1;
    } else if (has_run || !dir_is_empty(dir)) {
      char what[512];
      if (has_run)
        describe_run(dir, what, sizeof what);
      if (resume && !has_run) {
        close(fd);
        return MB_ERR(MB_EINVAL, "--resume: %s does not hold a mambert run (no run.json)", dir);
      }
      if (!force) {
        close(fd);
        if (has_run)
          return MB_ERR(MB_EINVAL,
                        "run directory %s already holds %s; use --resume to continue it, --force to move it aside "
                        "and start over, or --run-dir DIR for a new directory",
                        dir, what);
        return MB_ERR(MB_EINVAL,
                      "run directory %s is not empty and holds no mambert run; refusing to write into it (use "
                      "--run-dir DIR for another directory, or --force to move it aside)",
                      dir);
      }
      close(fd); /* released before the move; the new directory gets its own lock */
      fd = -1;
      MB_TRY(move_aside(dir));
    }
  } else if (resume) {
    return MB_ERR(MB_ENOTFOUND, "--resume: run directory %s does not exist", dir);
  }
  if (fd < 0) {
    MB_TRY(mb_mkdir_p(dir));
    MB_TRY(take_lock(dir, &fd));
  }
  mb_rundir *r = calloc(1, sizeof *r);
  if (!r) {
    close(fd);
    return MB_ERR(MB_ENOMEM, "out of memory");
  }
  snprintf(r->path, sizeof r->path, "%s", dir);
  r->lock_fd = fd;
  stamp(r->created, sizeof r->created, "%Y-%m-%dT%H:%M:%S%z");
  if (*is_resume) { /* keep the original creation time */
    json_error_t err;
    json_t *j = json_load_file(runjson, 0, &err);
    const char *c = j ? json_string_value(json_object_get(j, "created")) : NULL;
    if (c)
      snprintf(r->created, sizeof r->created, "%s", c);
    json_decref(j);
  }
  *out = r;
  return MB_OK;
}

int mb_rundir_write_info(mb_rundir *r, const char *name, const char *config_sha256, const char *arch,
                         const char *status, const char *extra_json) {
  char host[128] = "?", updated[40];
  gethostname(host, sizeof host - 1);
  stamp(updated, sizeof updated, "%Y-%m-%dT%H:%M:%S%z");
  json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:s}", "format", "mambert-run-1", "name", name,
                        "created", r->created, "updated", updated, "host", host, "config_sha256", config_sha256,
                        "arch", arch, "status", status, "pid", (int)getpid(), "mambert_version", MAMBERT_VERSION);
  if (!j)
    return MB_ERR(MB_ENOMEM, "out of memory");
  if (extra_json) {
    json_error_t err;
    json_t *x = json_loads(extra_json, 0, &err);
    if (x) {
      json_object_update(j, x);
      json_decref(x);
    }
  }
  char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  json_decref(j);
  if (!text)
    return MB_ERR(MB_ENOMEM, "out of memory");
  char path[1100];
  snprintf(path, sizeof path, "%s/run.json", r->path);
  size_t n = strlen(text);
  text[n] = 0;
  int rc = mb_write_file_atomic(path, text, n);
  free(text);
  return rc;
}

const char *mb_rundir_path(const mb_rundir *r) { return r->path; }

int64_t mb_rundir_completed_steps(const mb_rundir *r) {
  char path[1100];
  snprintf(path, sizeof path, "%s/results.json", r->path);
  if (!mb_file_exists(path))
    return -1;
  snprintf(path, sizeof path, "%s/run.json", r->path);
  json_error_t err;
  json_t *j = json_load_file(path, 0, &err);
  const char *status = j ? json_string_value(json_object_get(j, "status")) : NULL;
  json_t *steps = j ? json_object_get(j, "steps") : NULL;
  const int done = status && strcmp(status, "completed") == 0 && json_is_integer(steps);
  const int64_t n = done ? json_integer_value(steps) : -1;
  json_decref(j);
  return n;
}

void mb_rundir_release(mb_rundir *r) {
  if (!r)
    return;
  if (r->lock_fd >= 0)
    close(r->lock_fd);
  free(r);
}
