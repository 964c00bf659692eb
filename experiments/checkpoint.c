/* checkpoint.c: atomic, verified, rotated training checkpoints (checkpoint.h). */
#define _XOPEN_SOURCE 700
#include "experiments/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mambert_build_config.h"
#include "runtime/alloc.h"
#include "runtime/fileio.h"
#include "runtime/hash.h"
#include "runtime/log.h"
#include "runtime/safetensors.h"

#define MAX_FILES 64

struct mb_ckpt_writer {
  char root[1024];
  char tmp[1100];
  char final[1100];
  int64_t step;
  int nfiles;
  char files[MAX_FILES][128]; /* relative names written so far */
};

static mb_fileio_fault_hook dir_hook;
void mb_ckpt_set_fault_hook(mb_fileio_fault_hook hook) { dir_hook = hook; }

static int dir_fault(const char *step, const char *path) {
  if (!dir_hook)
    return 0;
  int e = dir_hook(step, path);
  if (e)
    errno = e;
  return e;
}

/* ---- small file-system helpers ------------------------------------------ */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)ftw;
  int r = (flag == FTW_DP) ? rmdir(path) : unlink(path);
  return r == 0 || errno == ENOENT ? 0 : -1;
}

int mb_rm_rf(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0)
    return errno == ENOENT ? MB_OK : MB_ERR(MB_EIO, "%s: %s", path, strerror(errno));
  if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
    return MB_ERR(MB_EIO, "%s: cannot remove: %s", path, strerror(errno));
  return MB_OK;
}

int mb_fsync_dir(const char *path) {
  if (dir_fault("ckpt_fsync", path))
    return MB_ERR(MB_EIO, "%s: fsync failed: %s", path, strerror(errno));
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return MB_ERR(MB_EIO, "%s: cannot open directory: %s", path, strerror(errno));
  int r = fsync(fd);
  int e = errno;
  close(fd);
  if (r != 0 && e != EINVAL) /* some file systems cannot sync directories */
    return MB_ERR(MB_EIO, "%s: fsync failed: %s", path, strerror(e));
  return MB_OK;
}

static int record_file(mb_ckpt_writer *w, const char *name) {
  for (int i = 0; i < w->nfiles; i++)
    if (strcmp(w->files[i], name) == 0)
      return MB_OK;
  if (w->nfiles >= MAX_FILES || strlen(name) >= sizeof w->files[0])
    return MB_ERR(MB_EINTERNAL, "checkpoint: too many files or name too long (%s)", name);
  strcpy(w->files[w->nfiles++], name);
  return MB_OK;
}

static int file_in(char *out, size_t cap, const mb_ckpt_writer *w, const char *name) {
  return mb_path_join(out, cap, w->tmp, name);
}

/* ---- writing ---------------------------------------------------------------- */

int mb_ckpt_begin(const char *ckpt_root, int64_t step, mb_ckpt_writer **out) {
  mb_ckpt_writer *w = calloc(1, sizeof *w);
  if (!w)
    return MB_ERR(MB_ENOMEM, "out of memory");
  snprintf(w->root, sizeof w->root, "%s", ckpt_root);
  snprintf(w->tmp, sizeof w->tmp, "%s/.tmp-step-%08lld", ckpt_root, (long long)step);
  snprintf(w->final, sizeof w->final, "%s/step-%08lld", ckpt_root, (long long)step);
  w->step = step;
  int rc = mb_mkdir_p(ckpt_root);
  if (rc == MB_OK)
    rc = mb_rm_rf(w->tmp); /* a crashed writer's leftovers */
  if (rc == MB_OK && mkdir(w->tmp, 0777) != 0)
    rc = MB_ERR(MB_EIO, "%s: cannot create: %s", w->tmp, strerror(errno));
  if (rc != MB_OK) {
    free(w);
    return mb_error_context(rc, "starting checkpoint of step %lld", (long long)step);
  }
  *out = w;
  return MB_OK;
}

const char *mb_ckpt_temp_dir(const mb_ckpt_writer *w) { return w->tmp; }

/* A host copy of `bytes` of the parameter store's backend memory at src (on
 * a GPU, device memory; on the CPU a plain copy, so that both run the same
 * path). NULL with the error set. */
static void *host_copy_of(mb_params *p, const void *src, size_t bytes, const char *what) {
  mb_backend *be = mb_params_backend(p);
  void *h = mb_host_malloc(bytes ? bytes : 1);
  if (!h) {
    MB_ERR(MB_ENOMEM, "checkpoint: out of memory copying %s (%zu bytes)", what, bytes);
    return NULL;
  }
  const int rc = bytes ? be->copy_out(be, h, src, bytes) : MB_OK;
  if (rc != MB_OK) {
    mb_host_free(h);
    mb_error_context(rc, "checkpoint: copying %s to the host", what);
    return NULL;
  }
  return h;
}

int mb_ckpt_write_weights(mb_ckpt_writer *w, mb_params *p, const char *arch) {
  mb_safetensors_writer *sw;
  MB_TRY(mb_safetensors_writer_new(&sw));
  int rc = MB_OK;
  const size_t es = mb_dtype_size(mb_params_dtype(p));
  char *base = host_copy_of(p, mb_params_data(p), (size_t)mb_params_total(p) * es, "the weights");
  if (!base) {
    mb_safetensors_writer_free(sw);
    return mb_error_code();
  }
  for (int i = 0; rc == MB_OK && i < mb_params_count(p); i++) {
    const mb_param_info *pi = mb_params_info(p, i);
    rc = mb_safetensors_writer_add(sw, pi->name, mb_params_dtype(p), &pi->shape, base + (size_t)pi->offset * es);
  }
  char step[32], path[1200];
  snprintf(step, sizeof step, "%lld", (long long)w->step);
  if (rc == MB_OK)
    rc = mb_safetensors_writer_set_metadata(sw, "format", "pt");
  if (rc == MB_OK)
    rc = mb_safetensors_writer_set_metadata(sw, "arch", arch);
  if (rc == MB_OK)
    rc = mb_safetensors_writer_set_metadata(sw, "step", step);
  if (rc == MB_OK)
    rc = file_in(path, sizeof path, w, "model.safetensors");
  if (rc == MB_OK)
    rc = mb_safetensors_writer_write(sw, path);
  mb_safetensors_writer_free(sw);
  mb_host_free(base);
  if (rc == MB_OK)
    rc = record_file(w, "model.safetensors");
  return rc;
}

/* Optimizer state tensors are named "<state>.<param>". */
static const char *state_names(const char *kind, int *n) {
  if (strcmp(kind, "adamw") == 0) {
    *n = 2;
    return "exp_avg\0exp_avg_sq";
  }
  *n = 1;
  return "momentum_buffer";
}

int mb_ckpt_write_optimizer(mb_ckpt_writer *w, mb_params *p, mb_optimizer *o, const char *kind) {
  int nstates;
  const char *names = state_names(kind, &nstates);
  int64_t begin, end;
  mb_optimizer_range(o, &begin, &end);
  mb_safetensors_writer *sw;
  MB_TRY(mb_safetensors_writer_new(&sw));
  int rc = MB_OK;
  const size_t es = mb_dtype_size(mb_params_dtype(p));
  char tname[512];
  int wrote = 0;
  char *host[2] = {NULL, NULL}; /* the writer keeps pointers until it writes */
  for (int k = 0; k < nstates && rc == MB_OK; k++, names += strlen(names) + 1) {
    const char *dev = mb_optimizer_state(o, k);
    if (!dev)
      continue; /* SGD without momentum keeps nothing */
    const char *buf = host[k] = host_copy_of(p, dev, (size_t)(end - begin) * es, names);
    if (!buf) {
      rc = mb_error_code();
      break;
    }
    for (int i = 0; rc == MB_OK && i < mb_params_count(p); i++) {
      const mb_param_info *pi = mb_params_info(p, i);
      if (!pi->trainable)
        continue;
      if (pi->offset < begin || pi->offset + pi->numel > end)
        continue;
      snprintf(tname, sizeof tname, "%s.%s", names, pi->name);
      rc = mb_safetensors_writer_add(sw, tname, mb_params_dtype(p), &pi->shape,
                                     buf + (size_t)(pi->offset - begin) * es);
      wrote++;
    }
  }
  char steps[32], path[1200];
  snprintf(steps, sizeof steps, "%lld", (long long)mb_optimizer_steps(o));
  if (rc == MB_OK)
    rc = mb_safetensors_writer_set_metadata(sw, "optimizer", kind);
  if (rc == MB_OK)
    rc = mb_safetensors_writer_set_metadata(sw, "step", steps);
  if (rc == MB_OK)
    rc = file_in(path, sizeof path, w, "optimizer.safetensors");
  if (rc == MB_OK)
    rc = mb_safetensors_writer_write(sw, path);
  mb_safetensors_writer_free(sw);
  mb_host_free(host[0]);
  mb_host_free(host[1]);
  (void)wrote;
  if (rc == MB_OK)
    rc = record_file(w, "optimizer.safetensors");
  return rc;
}

static void hex_of(const uint8_t *b, size_t n, char *out) {
  static const char d[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = d[b[i] >> 4];
    out[2 * i + 1] = d[b[i] & 15];
  }
  out[2 * n] = 0;
}

static int unhex(const char *s, uint8_t *b, size_t n) {
  if (strlen(s) != 2 * n)
    return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    if (sscanf(s + 2 * i, "%2x", &v) != 1)
      return 0;
    b[i] = (uint8_t)v;
  }
  return 1;
}

static int write_json(mb_ckpt_writer *w, const char *name, json_t *j) {
  char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
  if (!text)
    return MB_ERR(MB_ENOMEM, "out of memory encoding %s", name);
  size_t n = strlen(text);
  int rc = mb_ckpt_write_text(w, name, text, n);
  free(text);
  return rc;
}

int mb_ckpt_write_state(mb_ckpt_writer *w, const mb_ckpt_state *s) {
  char loader_hex[2 * MB_LOADER_STATE_BYTES + 1];
  hex_of(s->loader, MB_LOADER_STATE_BYTES, loader_hex);
  /* 64-bit seeds as strings: JSON numbers lose precision past 2^53 */
  char seed[32], dseed[32];
  snprintf(seed, sizeof seed, "%llu", (unsigned long long)s->seed);
  snprintf(dseed, sizeof dseed, "%llu", (unsigned long long)s->dropout_seed);
  json_t *j = json_pack("{s:s, s:I, s:I, s:I, s:s, s:s, s:s, s:i, s:b, s:f, s:f, s:f, s:s, s:s, s:s, s:s, s:s, s:s}",
                        "format", "mambert-checkpoint-state-1", "step", (json_int_t)s->step, "micro_step",
                        (json_int_t)s->micro_step, "epoch", (json_int_t)s->epoch, "loader", loader_hex, "seed",
                        seed, "dropout_seed", dseed, "world_size", s->world_size, "zero1", s->zero1, "samples_seen",
                        s->samples_seen, "tokens_seen", s->tokens_seen, "train_seconds", s->train_seconds, "arch",
                        s->arch, "tokenizer", s->tokenizer_name, "tokenizer_sha256", s->tokenizer_sha256,
                        "config_sha256", s->config_sha256, "params_sha256", s->params_sha256, "mambert_version",
                        MAMBERT_VERSION);
  if (!j)
    return MB_ERR(MB_ENOMEM, "out of memory");
  json_t *win = json_array(); /* a diverged loss is NaN, which JSON lacks: null */
  for (int i = 0; win && i < 8; i++)
    json_array_append_new(win, isfinite(s->log_window[i]) ? json_real(s->log_window[i]) : json_null());
  json_object_set_new(j, "log_window", win);
  /* samples_seen / tokens_seen are every rank's (older checkpoints: rank 0's) */
  json_object_set_new(j, "counts", json_string("all_ranks"));
  if (s->has_loss_scaler) {
    const mb_loss_scaler *ls = &s->loss_scaler; /* the scale as a JSON real: %.17g, exact */
    json_t *o = json_pack("{s:f, s:f, s:f, s:I, s:I, s:I, s:I, s:I, s:I}", "scale", ls->scale,
                                  "growth_factor", ls->growth_factor, "backoff_factor", ls->backoff_factor,
                                  "growth_interval", (json_int_t)ls->growth_interval, "good_steps",
                                  (json_int_t)ls->good_steps, "bad_steps", (json_int_t)ls->bad_steps, "steps",
                                  (json_int_t)ls->steps, "skipped", (json_int_t)ls->skipped, "window_skipped",
                                  (json_int_t)s->window_skipped);
    if (!o || json_object_set_new(j, "loss_scaler", o) != 0) {
      json_decref(j);
      return MB_ERR(MB_ENOMEM, "out of memory encoding the loss scaler's state");
    }
  }
  if (s->rank_loaders && s->world_size > 1) {
    json_t *arr = json_array();
    for (int r = 0; r < s->world_size; r++) {
      hex_of(s->rank_loaders + (size_t)r * MB_LOADER_STATE_BYTES, MB_LOADER_STATE_BYTES, loader_hex);
      json_array_append_new(arr, json_string(loader_hex));
    }
    json_object_set_new(j, "rank_loaders", arr);
  }
  int rc = write_json(w, "state.json", j);
  json_decref(j);
  return rc;
}

int mb_ckpt_write_text(mb_ckpt_writer *w, const char *name, const char *text, size_t len) {
  char path[1200];
  MB_TRY(file_in(path, sizeof path, w, name));
  const char *slash = strrchr(name, '/');
  if (slash) { /* a subdirectory such as optim/ */
    char sub[1200];
    snprintf(sub, sizeof sub, "%.*s", (int)(strlen(path) - strlen(slash)), path);
    MB_TRY(mb_mkdir_p(sub));
  }
  MB_TRY(mb_write_file_atomic(path, text, len));
  return record_file(w, name);
}

void mb_ckpt_abort(mb_ckpt_writer *w) {
  if (!w)
    return;
  if (mb_rm_rf(w->tmp) != MB_OK)
    MB_WARN("could not remove the unfinished checkpoint %s: %s", w->tmp, mb_error_message());
  free(w);
}

/* Add files other ranks put into the temporary directory (optim/zero-*). */
static int scan_extra_files(mb_ckpt_writer *w) {
  char sub[1200];
  snprintf(sub, sizeof sub, "%s/optim", w->tmp);
  DIR *d = opendir(sub);
  if (!d)
    return MB_OK;
  struct dirent *e;
  int rc = MB_OK;
  while (rc == MB_OK && (e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue;
    char name[300];
    snprintf(name, sizeof name, "optim/%s", e->d_name);
    rc = record_file(w, name);
  }
  closedir(d);
  return rc;
}

static int cmp_steps_desc(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? 1 : x > y ? -1 : 0;
}

/* Steps of the step-* directories under root, newest first; *n of cap. */
static int list_steps(const char *root, int64_t *steps, int cap, int *n) {
  *n = 0;
  DIR *d = opendir(root);
  if (!d)
    return errno == ENOENT ? MB_OK : MB_ERR(MB_EIO, "%s: cannot list: %s", root, strerror(errno));
  struct dirent *e;
  while ((e = readdir(d))) {
    long long s;
    char tail;
    if (sscanf(e->d_name, "step-%lld%c", &s, &tail) == 1 && *n < cap)
      steps[(*n)++] = s;
  }
  closedir(d);
  qsort(steps, (size_t)*n, sizeof *steps, cmp_steps_desc);
  return MB_OK;
}

int mb_ckpt_commit(mb_ckpt_writer *w, int keep, char *final_dir, size_t cap) {
  int rc = scan_extra_files(w);
  json_t *files = json_object();
  for (int i = 0; rc == MB_OK && i < w->nfiles; i++) {
    char path[1200], hex[65];
    uint64_t size = 0;
    rc = file_in(path, sizeof path, w, w->files[i]);
    if (rc == MB_OK)
      rc = mb_sha256_file_hex(path, hex);
    if (rc == MB_OK)
      rc = mb_file_size(path, &size);
    if (rc == MB_OK)
      json_object_set_new(files, w->files[i], json_pack("{s:s, s:I}", "sha256", hex, "bytes", (json_int_t)size));
  }
  if (rc == MB_OK) {
    json_t *m = json_pack("{s:s, s:I, s:o}", "format", "mambert-checkpoint-1", "step", (json_int_t)w->step, "files",
                          files);
    files = NULL;
    rc = write_json(w, "manifest.json", m);
    json_decref(m);
  }
  json_decref(files);
  if (rc == MB_OK)
    rc = mb_fsync_dir(w->tmp);
  /* a checkpoint of this step already there (a resume that fell back past a
   * damaged one): move it aside first, remove it after */
  char aside[1200] = "";
  if (rc == MB_OK && mb_file_exists(w->final)) {
    snprintf(aside, sizeof aside, "%s/.old-step-%08lld", w->root, (long long)w->step);
    rc = mb_rm_rf(aside);
    if (rc == MB_OK && rename(w->final, aside) != 0)
      rc = MB_ERR(MB_EIO, "%s: cannot move aside: %s", w->final, strerror(errno));
  }
  if (rc == MB_OK) {
    if (dir_fault("ckpt_rename", w->final) || rename(w->tmp, w->final) != 0)
      rc = MB_ERR(MB_EIO, "renaming %s to %s: %s", w->tmp, w->final, strerror(errno));
  }
  if (rc == MB_OK)
    rc = mb_fsync_dir(w->root);
  if (rc != MB_OK) {
    if (aside[0] && !mb_file_exists(w->final) && rename(aside, w->final) != 0)
      MB_WARN("could not move %s back to %s", aside, w->final);
    rc = mb_error_context(rc, "writing checkpoint %s", w->final);
    char msg[2048];
    snprintf(msg, sizeof msg, "%s", mb_error_message());
    int code = mb_error_code();
    mb_ckpt_abort(w);
    return mb_error_set(code, __FILE__, __LINE__, "%s", msg);
  }
  if (aside[0] && mb_rm_rf(aside) != MB_OK)
    MB_WARN("could not remove %s: %s", aside, mb_error_message());
  if (final_dir)
    snprintf(final_dir, cap, "%s", w->final);
  /* rotation: only after the new one is safely in place */
  int64_t steps[4096];
  int n = 0;
  if (list_steps(w->root, steps, 4096, &n) == MB_OK) {
    for (int i = keep; i < n; i++) {
      char old[1200];
      snprintf(old, sizeof old, "%s/step-%08lld", w->root, (long long)steps[i]);
      if (mb_rm_rf(old) != MB_OK)
        MB_WARN("could not remove old checkpoint %s: %s", old, mb_error_message());
    }
  }
  free(w);
  return MB_OK;
}

/* ---- reading ------------------------------------------------------------------ */

static int read_json(const char *path, json_t **out) {
  char *text;
  size_t n;
  MB_TRY(mb_read_file(path, 64 << 20, &text, &n));
  json_error_t err;
  json_t *j = json_loadb(text, n, 0, &err);
  free(text);
  if (!j)
    return MB_ERR(MB_EFORMAT, "%s:%d:%d: not valid JSON: %s", path, err.line, err.column, err.text);
  *out = j;
  return MB_OK;
}

int mb_ckpt_verify(const char *dir) {
  char path[1200];
  MB_TRY(mb_path_join(path, sizeof path, dir, "manifest.json"));
  json_t *m;
  int rc = read_json(path, &m);
  if (rc != MB_OK)
    return rc;
  json_t *files = json_object_get(m, "files");
  if (!json_is_object(files) || json_object_size(files) == 0) {
    json_decref(m);
    return MB_ERR(MB_EFORMAT, "%s: no 'files' in the manifest", path);
  }
  const char *name;
  json_t *info;
  json_object_foreach(files, name, info) {
    const char *want = json_string_value(json_object_get(info, "sha256"));
    json_int_t bytes = json_integer_value(json_object_get(info, "bytes"));
    char fp[1200], hex[65];
    uint64_t size = 0;
    rc = mb_path_join(fp, sizeof fp, dir, name);
    if (rc == MB_OK && !want)
      rc = MB_ERR(MB_EFORMAT, "%s: entry '%s' has no sha256", path, name);
    if (rc == MB_OK)
      rc = mb_file_size(fp, &size);
    if (rc == MB_OK && (json_int_t)size != bytes)
      rc = MB_ERR(MB_EFORMAT, "%s: %llu bytes, the manifest says %lld", fp, (unsigned long long)size,
                  (long long)bytes);
    if (rc == MB_OK)
      rc = mb_sha256_file_hex(fp, hex);
    if (rc == MB_OK && strcmp(hex, want) != 0)
      rc = MB_ERR(MB_EFORMAT, "%s: sha256 %.16s... differs from the manifest's %.16s...", fp, hex, want);
    if (rc != MB_OK)
      break;
  }
  json_decref(m);
  return rc;
}

int mb_ckpt_find_latest(const char *ckpt_root, char *dir, size_t cap) {
  int64_t steps[4096];
  int n;
  MB_TRY(list_steps(ckpt_root, steps, 4096, &n));
  for (int i = 0; i < n; i++) {
    char d[1200];
    snprintf(d, sizeof d, "%s/step-%08lld", ckpt_root, (long long)steps[i]);
    if (mb_ckpt_verify(d) == MB_OK) {
      snprintf(dir, cap, "%s", d);
      return MB_OK;
    }
    MB_WARN("skipping damaged checkpoint %s: %s", d, mb_error_message());
  }
  return MB_ERR(MB_ENOTFOUND, "%s: no complete checkpoint", ckpt_root);
}

int mb_ckpt_read_state(const char *dir, mb_ckpt_state *s) {
  char path[1200];
  MB_TRY(mb_path_join(path, sizeof path, dir, "state.json"));
  json_t *j;
  MB_TRY(read_json(path, &j));
  memset(s, 0, sizeof *s);
  const char *format = json_string_value(json_object_get(j, "format"));
  const char *loader = json_string_value(json_object_get(j, "loader"));
  const char *seed = json_string_value(json_object_get(j, "seed"));
  const char *dseed = json_string_value(json_object_get(j, "dropout_seed"));
  int rc = MB_OK;
  if (!format || strcmp(format, "mambert-checkpoint-state-1") != 0)
    rc = MB_ERR(MB_EFORMAT, "%s: not a mambert checkpoint state (format '%s')", path, format ? format : "?");
  else if (!loader || !unhex(loader, s->loader, MB_LOADER_STATE_BYTES))
    rc = MB_ERR(MB_EFORMAT, "%s: 'loader' is not %d hex bytes", path, MB_LOADER_STATE_BYTES);
  else if (!seed || !dseed)
    rc = MB_ERR(MB_EFORMAT, "%s: seeds missing", path);
  if (rc == MB_OK) {
    s->step = json_integer_value(json_object_get(j, "step"));
    s->micro_step = json_integer_value(json_object_get(j, "micro_step"));
    s->epoch = json_integer_value(json_object_get(j, "epoch"));
    s->seed = strtoull(seed, NULL, 10);
    s->dropout_seed = strtoull(dseed, NULL, 10);
    s->world_size = (int)json_integer_value(json_object_get(j, "world_size"));
    s->zero1 = json_is_true(json_object_get(j, "zero1"));
    s->samples_seen = json_number_value(json_object_get(j, "samples_seen"));
    s->tokens_seen = json_number_value(json_object_get(j, "tokens_seen"));
    s->train_seconds = json_number_value(json_object_get(j, "train_seconds"));
    const char *counts = json_string_value(json_object_get(j, "counts"));
    s->counts_all_ranks = counts && strcmp(counts, "all_ranks") == 0;
    json_t *win = json_object_get(j, "log_window");
    if (win && (!json_is_array(win) || json_array_size(win) != 8))
      rc = MB_ERR(MB_EFORMAT, "%s: 'log_window' is not an array of 8 numbers", path);
    for (size_t i = 0; rc == MB_OK && win && i < 8; i++)
      s->log_window[i] = json_is_null(json_array_get(win, i)) ? NAN : json_number_value(json_array_get(win, i));
    json_t *ls = json_object_get(j, "loss_scaler");
    if (rc == MB_OK && ls) {
      mb_loss_scaler *o = &s->loss_scaler;
      json_t *scale = json_object_get(ls, "scale");
      if (!json_is_object(ls) || !json_is_number(scale) || !(json_number_value(scale) > 0) ||
          !json_is_integer(json_object_get(ls, "good_steps")) || !json_is_integer(json_object_get(ls, "steps")))
        rc = MB_ERR(MB_EFORMAT, "%s: 'loss_scaler' needs a positive scale and integer good_steps and steps", path);
      if (rc == MB_OK) {
        s->has_loss_scaler = 1;
        mb_loss_scaler_init(o, 0);
        o->scale = json_number_value(scale); /* exactly what was saved */
        json_t *f;
        if ((f = json_object_get(ls, "growth_factor")) && json_is_number(f))
          o->growth_factor = json_number_value(f);
        if ((f = json_object_get(ls, "backoff_factor")) && json_is_number(f))
          o->backoff_factor = json_number_value(f);
        o->growth_interval = json_integer_value(json_object_get(ls, "growth_interval"));
        o->good_steps = json_integer_value(json_object_get(ls, "good_steps"));
        o->bad_steps = json_integer_value(json_object_get(ls, "bad_steps"));
        o->steps = json_integer_value(json_object_get(ls, "steps"));
        o->skipped = json_integer_value(json_object_get(ls, "skipped"));
        s->window_skipped = json_integer_value(json_object_get(ls, "window_skipped"));
      }
    }
    const char *v;
#define COPY_STR(field, key)                                  \
  v = json_string_value(json_object_get(j, key));             \
  snprintf(s->field, sizeof s->field, "%s", v ? v : "");
    COPY_STR(arch, "arch");
    COPY_STR(tokenizer_name, "tokenizer");
    COPY_STR(tokenizer_sha256, "tokenizer_sha256");
    COPY_STR(config_sha256, "config_sha256");
    COPY_STR(params_sha256, "params_sha256");
#undef COPY_STR
    json_t *arr = json_object_get(j, "rank_loaders");
    if (json_is_array(arr)) {
      if ((int)json_array_size(arr) != s->world_size) {
        rc = MB_ERR(MB_EFORMAT, "%s: %zu rank loader positions for %d ranks", path, json_array_size(arr),
                    s->world_size);
      } else {
        s->rank_loaders = malloc((size_t)s->world_size * MB_LOADER_STATE_BYTES);
        if (!s->rank_loaders)
          rc = MB_ERR(MB_ENOMEM, "out of memory");
        for (int r = 0; rc == MB_OK && r < s->world_size; r++) {
          const char *h = json_string_value(json_array_get(arr, (size_t)r));
          if (!h || !unhex(h, s->rank_loaders + (size_t)r * MB_LOADER_STATE_BYTES, MB_LOADER_STATE_BYTES))
            rc = MB_ERR(MB_EFORMAT, "%s: rank_loaders[%d] is not %d hex bytes", path, r, MB_LOADER_STATE_BYTES);
        }
        if (rc != MB_OK) {
          free(s->rank_loaders);
          s->rank_loaders = NULL;
        }
      }
    }
  }
  json_decref(j);
  return rc;
}

int mb_ckpt_read_optimizer(const char *dir, mb_params *p, mb_optimizer *o, const char *kind) {
  char path[1200];
  MB_TRY(mb_path_join(path, sizeof path, dir, "optimizer.safetensors"));
  mb_safetensors *st;
  MB_TRY(mb_safetensors_open(path, &st));
  int rc = MB_OK;
  const char *fkind = mb_safetensors_metadata(st, "optimizer");
  const char *steps = mb_safetensors_metadata(st, "step");
  if (!fkind || strcmp(fkind, kind) != 0)
    rc = MB_ERR(MB_EINVAL, "%s: optimizer state of %s, but the config says optim.name: %s", path,
                fkind ? fkind : "(unknown)", kind);
  else if (!steps)
    rc = MB_ERR(MB_EFORMAT, "%s: no 'step' in the metadata", path);
  int nstates;
  const char *names = state_names(kind, &nstates);
  int64_t begin, end;
  mb_optimizer_range(o, &begin, &end);
  const size_t es = mb_dtype_size(mb_params_dtype(p));
  char tname[512];
  for (int k = 0; rc == MB_OK && k < nstates; k++, names += strlen(names) + 1) {
    char *dev = mb_optimizer_state(o, k);
    if (!dev)
      continue;
    /* staged on the host: the present state (what no tensor replaces stays),
     * the file's tensors over it, then back into the backend's memory */
    const size_t bytes = (size_t)(end - begin) * es;
    char *buf = host_copy_of(p, dev, bytes, names);
    if (!buf) {
      rc = mb_error_code();
      break;
    }
    for (int i = 0; rc == MB_OK && i < mb_params_count(p); i++) {
      const mb_param_info *pi = mb_params_info(p, i);
      if (!pi->trainable || pi->offset < begin || pi->offset + pi->numel > end)
        continue;
      snprintf(tname, sizeof tname, "%s.%s", names, pi->name);
      const mb_st_entry *e = mb_safetensors_find(st, tname);
      if (!e)
        rc = MB_ERR(MB_EFORMAT, "%s: no tensor '%s'", path, tname);
      else if (e->numel != pi->numel || e->dtype != mb_params_dtype(p))
        rc = MB_ERR(MB_EFORMAT, "%s: '%s' has %lld %s elements, the model %lld %s", path, tname,
                    (long long)e->numel, e->dtype_name, (long long)pi->numel, mb_dtype_name(mb_params_dtype(p)));
      else
        memcpy(buf + (size_t)(pi->offset - begin) * es, e->data, (size_t)pi->numel * es);
    }
    mb_backend *be = mb_params_backend(p);
    if (rc == MB_OK && bytes && (rc = be->copy_in(be, dev, buf, bytes)) != MB_OK)
      rc = mb_error_context(rc, "%s: copying the optimizer state into the backend", path);
    mb_host_free(buf);
  }
  if (rc == MB_OK)
    mb_optimizer_set_steps(o, strtoll(steps, NULL, 10));
  mb_safetensors_close(st);
  return rc;
}

void mb_params_layout_sha256(const mb_params *p, char hex[65]) {
  mb_sha256 *h = mb_sha256_new();
  char buf[256];
  for (int i = 0; i < mb_params_count(p); i++) {
    const mb_param_info *pi = mb_params_info(p, i);
    mb_sha256_update(h, pi->name, strlen(pi->name) + 1);
    mb_shape_str(&pi->shape, buf, sizeof buf);
    mb_sha256_update(h, buf, strlen(buf) + 1);
  }
  mb_sha256_update(h, mb_dtype_name(mb_params_dtype(p)), strlen(mb_dtype_name(mb_params_dtype(p))));
  uint8_t d[32];
  mb_sha256_final(h, d);
  mb_sha256_hex(d, hex);
}
