/* shard.c: the HDF5 shard writer and reader (shard.h). */
#include "data/shard.h"

#include <errno.h>
#include <dirent.h>
#include <glob.h>
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mambert_build_config.h"
#include "runtime/alloc.h"
#include "runtime/fileio.h"
#include "runtime/log.h"

#define IDS_CHUNK 65536  /* ids per chunk of /input_ids: 256 KiB before compression */
#define META_CHUNK 65536 /* elements per chunk of the per-example datasets */
#define DEFLATE_LEVEL 1  /* token ids: level 4 saves 2% of the bytes and takes 1.7x the time */

/* ---- HDF5 error handling ------------------------------------------------- */

/* HDF5 prints its whole error stack to stderr by default; we report our own
 * message instead. The setting is per thread in a thread-safe HDF5, so every
 * entry point calls this. */
static void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

typedef struct {
  char desc[200];
  int found;
} h5_err_walk;

static herr_t h5_walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
  h5_err_walk *w = data;
  (void)n;
  if (!w->found && e->desc && e->desc[0]) {
    snprintf(w->desc, sizeof w->desc, "%s", e->desc);
    w->found = 1;
  }
  return 0;
}

/* The innermost (most specific) message on HDF5's error stack; clears it. */
static const char *h5_message(char buf[200]) {
  h5_err_walk w = {"", 0};
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_walk_cb, &w);
  H5Eclear2(H5E_DEFAULT);
  snprintf(buf, 200, "%s", w.found ? w.desc : "no detail");
  return buf;
}

#define H5CLOSE(fn, id) \
  do {                  \
    if ((id) >= 0)      \
      fn(id);           \
    (id) = -1;          \
  } while (0)

/* ---- writer -------------------------------------------------------------- */

struct mb_shard_writer {
  char *path, *tmp;
  hid_t file, ids_ds;
  mb_shard_meta meta;
  int32_t *buf; /* ids not yet written to /input_ids */
  size_t buf_n, buf_cap;
  int64_t ids_written;
  /* per example */
  int64_t *offsets; /* [n + 1] */
  int32_t *lengths;
  int8_t *labels;
  int64_t *example_ids;
  int64_t *text_offsets; /* [n + 1] when has_text */
  size_t n, cap;
  char *text;
  size_t text_len, text_cap;
};

/* An empty 1-D chunked dataset, growable, with checksums and compression. */
static int create_dataset(mb_shard_writer *w, const char *name, hid_t ftype, hsize_t chunk, hid_t *out) {
  char hm[200];
  hsize_t dims = 0, maxdims = H5S_UNLIMITED;
  hid_t space = H5Screate_simple(1, &dims, &maxdims);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  int ok = space >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, 1, &chunk) >= 0;
  if (ok && H5Tget_size(ftype) > 1)
    ok = H5Pset_shuffle(dcpl) >= 0;
  ok = ok && H5Pset_deflate(dcpl, DEFLATE_LEVEL) >= 0 && H5Pset_fletcher32(dcpl) >= 0;
  hid_t ds = ok ? H5Dcreate2(w->file, name, ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT) : -1;
  H5CLOSE(H5Pclose, dcpl);
  H5CLOSE(H5Sclose, space);
  if (ds < 0)
    return MB_ERR(MB_EIO, "%s: cannot create dataset '%s' (HDF5: %s)", w->tmp, name, h5_message(hm));
  *out = ds;
  return MB_OK;
}

/* Append n elements at position cur of a 1-D dataset. */
static int append_dataset(const char *file, const char *name, hid_t ds, hid_t mtype, const void *data, hsize_t cur,
                          hsize_t n) {
  char hm[200];
  if (n == 0)
    return MB_OK;
  hsize_t total = cur + n;
  if (H5Dset_extent(ds, &total) < 0)
    return MB_ERR(MB_EIO, "%s: dataset '%s': cannot grow to %llu (HDF5: %s)", file, name, (unsigned long long)total,
                  h5_message(hm));
  hid_t fspace = H5Dget_space(ds);
  hid_t mspace = H5Screate_simple(1, &n, NULL);
  int ok = fspace >= 0 && mspace >= 0 && H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &cur, NULL, &n, NULL) >= 0 &&
           H5Dwrite(ds, mtype, mspace, fspace, H5P_DEFAULT, data) >= 0;
  H5CLOSE(H5Sclose, mspace);
  H5CLOSE(H5Sclose, fspace);
  if (!ok)
    return MB_ERR(MB_EIO, "%s: dataset '%s': write failed (HDF5: %s)", file, name, h5_message(hm));
  return MB_OK;
}

static int write_whole(mb_shard_writer *w, const char *name, hid_t ftype, hid_t mtype, const void *data, size_t n) {
  hid_t ds = H5I_INVALID_HID;
  hsize_t chunk = n < 1 ? 1 : n < META_CHUNK ? n : META_CHUNK;
  MB_TRY(create_dataset(w, name, ftype, chunk, &ds));
  int rc = append_dataset(w->tmp, name, ds, mtype, data, 0, n);
  if (H5Dclose(ds) < 0 && rc == MB_OK) {
    char hm[200];
    rc = MB_ERR(MB_EIO, "%s: dataset '%s': close failed (HDF5: %s)", w->tmp, name, h5_message(hm));
  }
  return rc;
}

static int attr_write(hid_t loc, const char *name, hid_t ftype, hid_t mtype, hid_t space, const void *v) {
  hid_t a = H5Acreate2(loc, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0)
    return -1;
  herr_t e = H5Awrite(a, mtype, v);
  H5Aclose(a);
  return e < 0 ? -1 : 0;
}

static int attr_str(hid_t loc, const char *name, const char *v) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, strlen(v) + 1);
  H5Tset_strpad(t, H5T_STR_NULLTERM);
  H5Tset_cset(t, H5T_CSET_UTF8);
  hid_t s = H5Screate(H5S_SCALAR);
  int e = attr_write(loc, name, t, t, s, v);
  H5Sclose(s);
  H5Tclose(t);
  return e;
}

static int attr_i64(hid_t loc, const char *name, int64_t v) {
  hid_t s = H5Screate(H5S_SCALAR);
  int e = attr_write(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, s, &v);
  H5Sclose(s);
  return e;
}

static int attr_i64_array(hid_t loc, const char *name, const int64_t *v, hsize_t n) {
  hid_t s = H5Screate_simple(1, &n, NULL);
  int e = attr_write(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, s, v);
  H5Sclose(s);
  return e;
}

static void writer_free(mb_shard_writer *w) {
  free(w->path);
  free(w->tmp);
  free(w->buf);
  free(w->offsets);
  free(w->lengths);
  free(w->labels);
  free(w->example_ids);
  free(w->text_offsets);
  free(w->text);
  free(w);
}

int mb_shard_writer_open(const char *path, const mb_shard_meta *meta, mb_shard_writer **out) {
  h5_quiet();
  char hm[200];
  *out = NULL;
  mb_shard_writer *w = calloc(1, sizeof *w);
  if (!w)
    return MB_ERR(MB_ENOMEM, "out of memory");
  w->file = w->ids_ds = -1;
  w->meta = *meta;
  size_t tl = strlen(path) + 32 + 128;
  w->path = strdup(path);
  w->tmp = malloc(tl);
  w->buf_cap = 4 * IDS_CHUNK;
  w->buf = malloc(w->buf_cap * sizeof *w->buf);
  w->cap = 1024;
  w->offsets = malloc((w->cap + 1) * sizeof *w->offsets);
  w->lengths = malloc(w->cap * sizeof *w->lengths);
  w->labels = malloc(w->cap * sizeof *w->labels);
  w->example_ids = malloc(w->cap * sizeof *w->example_ids);
  w->text_offsets = meta->has_text ? malloc((w->cap + 1) * sizeof *w->text_offsets) : NULL;
  if (!w->path || !w->tmp || !w->buf || !w->offsets || !w->lengths || !w->labels || !w->example_ids ||
      (meta->has_text && !w->text_offsets)) {
    writer_free(w);
    return MB_ERR(MB_ENOMEM, "out of memory");
  }
  w->offsets[0] = 0;
  if (w->text_offsets)
    w->text_offsets[0] = 0;
  mb_shard_temp_path(path, w->tmp, tl);
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  /* The 1.10 format: superblock, object headers and the chunk indexes of
   * growable datasets (extensible arrays) all carry checksums. With the 1.8
   * format a damaged v1 B-tree key silently maps a chunk to the wrong place
   * (found by tests/shards/test_shard_errors.c's damage sweep). */
  H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110);
  w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  if (w->file < 0) {
    int rc = MB_ERR(MB_EIO, "%s: cannot create (HDF5: %s)", w->tmp, h5_message(hm));
    writer_free(w);
    return rc;
  }
  int rc = create_dataset(w, "input_ids", H5T_STD_I32LE, IDS_CHUNK, &w->ids_ds);
  if (rc != MB_OK) {
    mb_shard_writer_abort(w);
    return rc;
  }
  *out = w;
  return MB_OK;
}

void mb_shard_temp_path(const char *path, char *out, size_t cap) {
  char prefix[4200];
  snprintf(prefix, sizeof prefix, "%s.tmp-", path);
  mb_writer_temp_name(prefix, out, cap);
}

int mb_shard_remove_dead_temps(const char *dir) {
  DIR *d = opendir(dir);
  if (!d)
    return 0;
  int removed = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    /* <name>.h5.tmp-<host>-<pid>: the prefix up to and with ".tmp-" */
    const char *t = strstr(e->d_name, ".h5.tmp-");
    if (!t)
      continue;
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%.*s", (int)(t - e->d_name + 8), e->d_name);
    if (!mb_writer_temp_is_dead(prefix, e->d_name))
      continue;
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    if (unlink(p) == 0) {
      MB_INFO("removed %s (left by a prepare that was killed)", p);
      removed++;
    }
  }
  closedir(d);
  return removed;
}

static int flush_ids(mb_shard_writer *w) {
  MB_TRY(append_dataset(w->tmp, "input_ids", w->ids_ds, H5T_NATIVE_INT32, w->buf, (hsize_t)w->ids_written,
                        (hsize_t)w->buf_n));
  w->ids_written += (int64_t)w->buf_n;
  w->buf_n = 0;
  return MB_OK;
}

int mb_shard_writer_add(mb_shard_writer *w, int64_t example_id, int32_t label, const int32_t *ids, int32_t n,
                        int truncated, const char *text, size_t text_len) {
  if (label != 0 && label != 1)
    return MB_ERR(MB_EINVAL, "%s: example %lld: label %d is not 0 or 1", w->path, (long long)example_id, label);
  if (n < 0)
    return MB_ERR(MB_EINVAL, "%s: example %lld: negative length", w->path, (long long)example_id);
  for (int32_t i = 0; i < n; i++)
    if (ids[i] < 0 || (w->meta.vocab_size > 0 && ids[i] >= w->meta.vocab_size))
      return MB_ERR(MB_EINVAL, "%s: example %lld: token id %d outside the vocabulary [0, %d)", w->path,
                    (long long)example_id, ids[i], w->meta.vocab_size);
  if (w->n == w->cap) {
    size_t cap = w->cap * 2;
    int64_t *o = realloc(w->offsets, (cap + 1) * sizeof *o);
    if (o)
      w->offsets = o;
    int32_t *l = realloc(w->lengths, cap * sizeof *l);
    if (l)
      w->lengths = l;
    int8_t *b = realloc(w->labels, cap * sizeof *b);
    if (b)
      w->labels = b;
    int64_t *e = realloc(w->example_ids, cap * sizeof *e);
    if (e)
      w->example_ids = e;
    int64_t *t = w->text_offsets;
    if (t) {
      t = realloc(w->text_offsets, (cap + 1) * sizeof *t);
      if (t)
        w->text_offsets = t;
    }
    if (!o || !l || !b || !e || (w->meta.has_text && !t))
      return MB_ERR(MB_ENOMEM, "%s: out of memory at example %zu", w->path, w->n);
    w->cap = cap;
  }
  /* ids: through the buffer, written a few chunks at a time */
  for (int32_t done = 0; done < n;) {
    size_t take = w->buf_cap - w->buf_n;
    if (take > (size_t)(n - done))
      take = (size_t)(n - done);
    memcpy(w->buf + w->buf_n, ids + done, take * sizeof *ids);
    w->buf_n += take;
    done += (int32_t)take;
    if (w->buf_n == w->buf_cap)
      MB_TRY(flush_ids(w));
  }
  if (w->meta.has_text) {
    if (w->text_len + text_len > w->text_cap) {
      size_t cap = w->text_cap ? w->text_cap : 1 << 20;
      while (cap < w->text_len + text_len)
        cap *= 2;
      char *p = realloc(w->text, cap);
      if (!p)
        return MB_ERR(MB_ENOMEM, "%s: out of memory for text", w->path);
      w->text = p;
      w->text_cap = cap;
    }
    if (text_len)
      memcpy(w->text + w->text_len, text, text_len);
    w->text_len += text_len;
    w->text_offsets[w->n + 1] = (int64_t)w->text_len;
  }
  w->offsets[w->n + 1] = w->offsets[w->n] + n;
  w->lengths[w->n] = n;
  w->labels[w->n] = (int8_t)label;
  w->example_ids[w->n] = example_id;
  w->n++;
  w->meta.label_count[label]++;
  w->meta.n_truncated += truncated ? 1 : 0;
  return MB_OK;
}

static int write_attributes(mb_shard_writer *w) {
  const mb_shard_meta *m = &w->meta;
  hid_t f = w->file;
  int e = 0;
  e |= attr_str(f, "format", MB_SHARD_FORMAT);
  e |= attr_i64(f, "format_version", MB_SHARD_FORMAT_VERSION);
  e |= attr_str(f, "dataset", m->dataset);
  e |= attr_str(f, "split", m->split);
  e |= attr_str(f, "tokenizer", m->tokenizer);
  e |= attr_str(f, "vocab_sha256", m->vocab_sha256);
  e |= attr_i64(f, "vocab_size", m->vocab_size);
  e |= attr_i64(f, "add_special", m->add_special);
  e |= attr_i64(f, "max_length", m->max_length);
  e |= attr_i64(f, "pad_id", m->pad_id);
  e |= attr_str(f, "source", m->source);
  e |= attr_str(f, "created_by", "mambert " MAMBERT_VERSION);
  e |= attr_i64(f, "shard_index", m->shard_index);
  e |= attr_i64(f, "shard_count", m->shard_count);
  e |= attr_i64(f, "n_examples", (int64_t)w->n);
  e |= attr_i64(f, "n_tokens", w->ids_written);
  e |= attr_i64_array(f, "label_counts", m->label_count, 2);
  e |= attr_i64(f, "n_truncated", m->n_truncated);
  e |= attr_i64(f, "has_text", m->has_text);
  if (e) {
    char hm[200];
    return MB_ERR(MB_EIO, "%s: cannot write attributes (HDF5: %s)", w->tmp, h5_message(hm));
  }
  return MB_OK;
}

int mb_shard_writer_close(mb_shard_writer *w) {
  h5_quiet();
  char hm[200];
  int rc = flush_ids(w);
  if (rc == MB_OK)
    rc = write_whole(w, "offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, w->offsets, w->n + 1);
  if (rc == MB_OK)
    rc = write_whole(w, "lengths", H5T_STD_I32LE, H5T_NATIVE_INT32, w->lengths, w->n);
  if (rc == MB_OK)
    rc = write_whole(w, "labels", H5T_STD_I8LE, H5T_NATIVE_INT8, w->labels, w->n);
  if (rc == MB_OK)
    rc = write_whole(w, "example_ids", H5T_STD_I64LE, H5T_NATIVE_INT64, w->example_ids, w->n);
  if (rc == MB_OK && w->meta.has_text) {
    rc = write_whole(w, "text", H5T_STD_U8LE, H5T_NATIVE_UINT8, w->text, w->text_len);
    if (rc == MB_OK)
      rc = write_whole(w, "text_offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, w->text_offsets, w->n + 1);
  }
  if (rc == MB_OK)
    rc = write_attributes(w);
  if (rc != MB_OK) {
    mb_shard_writer_abort(w);
    return rc;
  }
  herr_t e1 = H5Dclose(w->ids_ds);
  w->ids_ds = -1;
  herr_t e2 = H5Fclose(w->file);
  w->file = -1;
  if (e1 < 0 || e2 < 0) {
    rc = MB_ERR(MB_EIO, "%s: closing failed (HDF5: %s)", w->tmp, h5_message(hm));
  } else if (rename(w->tmp, w->path) != 0) {
    rc = MB_ERR(MB_EIO, "cannot rename %s to %s: %s", w->tmp, w->path, strerror(errno));
  }
  if (rc != MB_OK)
    unlink(w->tmp);
  writer_free(w);
  return rc;
}

void mb_shard_writer_abort(mb_shard_writer *w) {
  if (!w)
    return;
  h5_quiet();
  H5CLOSE(H5Dclose, w->ids_ds);
  H5CLOSE(H5Fclose, w->file);
  H5Eclear2(H5E_DEFAULT);
  unlink(w->tmp);
  writer_free(w);
}

/* ---- reader -------------------------------------------------------------- */

static int open_file(const char *path, hid_t *out) {
  char hm[200];
  struct stat st;
  if (stat(path, &st) != 0)
    return MB_ERR(errno == ENOENT ? MB_ENOTFOUND : MB_EIO, "%s: %s", path, strerror(errno));
  if (!S_ISREG(st.st_mode))
    return MB_ERR(MB_EIO, "%s: not a regular file", path);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0)
    return MB_ERR(MB_EFORMAT, "%s: not a readable HDF5 file: truncated, corrupt or another format (HDF5: %s)", path,
                  h5_message(hm));
  *out = f;
  return MB_OK;
}

static int get_attr_str(hid_t f, const char *path, const char *name, char *buf, size_t cap) {
  char hm[200];
  if (H5Aexists(f, name) <= 0)
    return MB_ERR(MB_EFORMAT, "%s: attribute '%s' missing (not a mambert shard, or damaged)", path, name);
  hid_t a = H5Aopen(f, name, H5P_DEFAULT);
  hid_t t = a >= 0 ? H5Aget_type(a) : -1;
  int rc = MB_OK;
  if (t < 0) {
    rc = MB_ERR(MB_EFORMAT, "%s: attribute '%s' unreadable (HDF5: %s)", path, name, h5_message(hm));
  } else if (H5Tget_class(t) != H5T_STRING) {
    rc = MB_ERR(MB_EFORMAT, "%s: attribute '%s': expected a string", path, name);
  } else if (H5Tis_variable_str(t) > 0) {
    char *v = NULL;
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    H5Tset_cset(mt, H5Tget_cset(t)); /* ASCII or UTF-8: HDF5 converts neither into the other */
    if (H5Aread(a, mt, &v) < 0 || !v)
      rc = MB_ERR(MB_EFORMAT, "%s: attribute '%s' unreadable (HDF5: %s)", path, name, h5_message(hm));
    else if (strlen(v) >= cap)
      rc = MB_ERR(MB_EFORMAT, "%s: attribute '%s': longer than %zu bytes", path, name, cap - 1);
    else
      snprintf(buf, cap, "%s", v);
    if (v)
      H5free_memory(v);
    H5Tclose(mt);
  } else {
    size_t sz = H5Tget_size(t); /* with or without a NUL, by who wrote it */
    char *v = sz < 65536 ? malloc(sz + 1) : NULL;
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, sz + 1);
    H5Tset_strpad(mt, H5T_STR_NULLTERM);
    H5Tset_cset(mt, H5Tget_cset(t));
    if (!v)
      rc = MB_ERR(MB_EFORMAT, "%s: attribute '%s': %zu bytes is too long", path, name, sz);
    else if (H5Aread(a, mt, v) < 0)
      rc = MB_ERR(MB_EFORMAT, "%s: attribute '%s' unreadable (HDF5: %s)", path, name, h5_message(hm));
    else if (strlen(v) >= cap)
      rc = MB_ERR(MB_EFORMAT, "%s: attribute '%s': longer than %zu bytes", path, name, cap - 1);
    else
      snprintf(buf, cap, "%s", v);
    free(v);
    H5Tclose(mt);
  }
  H5CLOSE(H5Tclose, t);
  H5CLOSE(H5Aclose, a);
  return rc;
}

/* An integer attribute with n elements (n = 1: scalar or [1]). */
static int get_attr_i64(hid_t f, const char *path, const char *name, int64_t *v, hssize_t n) {
  char hm[200];
  if (H5Aexists(f, name) <= 0)
    return MB_ERR(MB_EFORMAT, "%s: attribute '%s' missing (not a mambert shard, or damaged)", path, name);
  hid_t a = H5Aopen(f, name, H5P_DEFAULT);
  hid_t t = a >= 0 ? H5Aget_type(a) : -1;
  hid_t s = a >= 0 ? H5Aget_space(a) : -1;
  int rc = MB_OK;
  if (t < 0 || s < 0)
    rc = MB_ERR(MB_EFORMAT, "%s: attribute '%s' unreadable (HDF5: %s)", path, name, h5_message(hm));
  else if (H5Tget_class(t) != H5T_INTEGER)
    rc = MB_ERR(MB_EFORMAT, "%s: attribute '%s': expected an integer", path, name);
  else if (H5Sget_simple_extent_npoints(s) != n)
    rc = MB_ERR(MB_EFORMAT, "%s: attribute '%s': expected %lld value(s), found %lld", path, name, (long long)n,
                (long long)H5Sget_simple_extent_npoints(s));
  else if (H5Aread(a, H5T_NATIVE_INT64, v) < 0)
    rc = MB_ERR(MB_EFORMAT, "%s: attribute '%s' unreadable (HDF5: %s)", path, name, h5_message(hm));
  H5CLOSE(H5Sclose, s);
  H5CLOSE(H5Tclose, t);
  H5CLOSE(H5Aclose, a);
  return rc;
}

static int get_attr_i32(hid_t f, const char *path, const char *name, int32_t *v, int64_t lo, int64_t hi) {
  int64_t x;
  MB_TRY(get_attr_i64(f, path, name, &x, 1));
  if (x < lo || x > hi)
    return MB_ERR(MB_EFORMAT, "%s: attribute '%s' = %lld, expected %lld..%lld", path, name, (long long)x,
                  (long long)lo, (long long)hi);
  *v = (int32_t)x;
  return MB_OK;
}

static int read_meta(hid_t f, const char *path, mb_shard_meta *m) {
  memset(m, 0, sizeof *m);
  char fmt[32];
  if (H5Aexists(f, "format") <= 0)
    return MB_ERR(MB_EFORMAT, "%s: not a mambert shard (no 'format' attribute)", path);
  MB_TRY(get_attr_str(f, path, "format", fmt, sizeof fmt));
  if (strcmp(fmt, MB_SHARD_FORMAT) != 0)
    return MB_ERR(MB_EFORMAT, "%s: not a mambert shard (format '%s', expected '%s')", path, fmt, MB_SHARD_FORMAT);
  int32_t ver = 0;
  MB_TRY(get_attr_i32(f, path, "format_version", &ver, 0, INT32_MAX));
  if (ver != MB_SHARD_FORMAT_VERSION)
    return MB_ERR(MB_EFORMAT, "%s: shard format version %d; this build reads version %d (run mambert prepare again)",
                  path, ver, MB_SHARD_FORMAT_VERSION);
  m->format_version = ver;
  MB_TRY(get_attr_str(f, path, "dataset", m->dataset, sizeof m->dataset));
  MB_TRY(get_attr_str(f, path, "split", m->split, sizeof m->split));
  MB_TRY(get_attr_str(f, path, "tokenizer", m->tokenizer, sizeof m->tokenizer));
  MB_TRY(get_attr_str(f, path, "vocab_sha256", m->vocab_sha256, sizeof m->vocab_sha256));
  MB_TRY(get_attr_i32(f, path, "vocab_size", &m->vocab_size, 1, INT32_MAX));
  MB_TRY(get_attr_i32(f, path, "add_special", &m->add_special, 0, 1));
  MB_TRY(get_attr_i32(f, path, "max_length", &m->max_length, 0, INT32_MAX));
  MB_TRY(get_attr_i32(f, path, "pad_id", &m->pad_id, 0, INT32_MAX));
  MB_TRY(get_attr_str(f, path, "source", m->source, sizeof m->source));
  MB_TRY(get_attr_str(f, path, "created_by", m->created_by, sizeof m->created_by));
  MB_TRY(get_attr_i32(f, path, "shard_count", &m->shard_count, 1, 1 << 20));
  MB_TRY(get_attr_i32(f, path, "shard_index", &m->shard_index, 0, m->shard_count - 1));
  MB_TRY(get_attr_i64(f, path, "n_examples", &m->n_examples, 1));
  MB_TRY(get_attr_i64(f, path, "n_tokens", &m->n_tokens, 1));
  MB_TRY(get_attr_i64(f, path, "label_counts", m->label_count, 2));
  MB_TRY(get_attr_i64(f, path, "n_truncated", &m->n_truncated, 1));
  MB_TRY(get_attr_i32(f, path, "has_text", &m->has_text, 0, 1));
  if (m->n_examples < 0 || m->n_tokens < 0 || m->label_count[0] < 0 || m->label_count[1] < 0 ||
      m->label_count[0] + m->label_count[1] != m->n_examples || m->n_truncated < 0 || m->n_truncated > m->n_examples)
    return MB_ERR(MB_EFORMAT,
                  "%s: inconsistent counts: n_examples %lld, n_tokens %lld, label_counts [%lld, %lld], n_truncated %lld",
                  path, (long long)m->n_examples, (long long)m->n_tokens, (long long)m->label_count[0],
                  (long long)m->label_count[1], (long long)m->n_truncated);
  if (strlen(m->vocab_sha256) != 64)
    return MB_ERR(MB_EFORMAT, "%s: attribute 'vocab_sha256' is not a sha256 in hex ('%s')", path, m->vocab_sha256);
  return MB_OK;
}

/* Open a 1-D integer dataset of the given element size and length. */
static int open_dataset(hid_t f, const char *path, const char *name, size_t elem, int is_signed, int64_t len,
                        hid_t *out) {
  char hm[200];
  if (H5Lexists(f, name, H5P_DEFAULT) <= 0)
    return MB_ERR(MB_EFORMAT, "%s: dataset '%s' missing", path, name);
  hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
  if (ds < 0)
    return MB_ERR(MB_EFORMAT, "%s: dataset '%s' unreadable (HDF5: %s)", path, name, h5_message(hm));
  hid_t t = H5Dget_type(ds), s = H5Dget_space(ds);
  int rc = MB_OK;
  if (t < 0 || s < 0) {
    rc = MB_ERR(MB_EFORMAT, "%s: dataset '%s' unreadable (HDF5: %s)", path, name, h5_message(hm));
  } else if (H5Tget_class(t) != H5T_INTEGER || H5Tget_size(t) != elem ||
             (H5Tget_sign(t) == H5T_SGN_2) != (is_signed != 0)) {
    rc = MB_ERR(MB_EFORMAT, "%s: dataset '%s': expected %s %zu-byte integers", path, name,
                is_signed ? "signed" : "unsigned", elem);
  } else if (H5Sget_simple_extent_ndims(s) != 1) {
    rc = MB_ERR(MB_EFORMAT, "%s: dataset '%s': expected 1 dimension, found %d", path, name,
                H5Sget_simple_extent_ndims(s));
  } else {
    hsize_t d = 0;
    H5Sget_simple_extent_dims(s, &d, NULL);
    if ((int64_t)d != len)
      rc = MB_ERR(MB_EFORMAT, "%s: dataset '%s': expected %lld elements, found %llu", path, name, (long long)len,
                  (unsigned long long)d);
  }
  H5CLOSE(H5Sclose, s);
  H5CLOSE(H5Tclose, t);
  if (rc != MB_OK) {
    H5Dclose(ds);
    return rc;
  }
  *out = ds;
  return MB_OK;
}

static int read_dataset(hid_t f, const char *path, const char *name, size_t elem, int is_signed, int64_t len,
                        hid_t mtype, void *dst) {
  char hm[200];
  hid_t ds = H5I_INVALID_HID;
  MB_TRY(open_dataset(f, path, name, elem, is_signed, len, &ds));
  int rc = MB_OK;
  if (len > 0 && H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
    rc = MB_ERR(MB_EFORMAT, "%s: dataset '%s': read failed, the file is corrupt (HDF5: %s)", path, name,
                h5_message(hm));
  H5Dclose(ds);
  return rc;
}

int mb_shard_read_meta(const char *path, mb_shard_meta *out) {
  h5_quiet();
  hid_t f;
  MB_TRY(open_file(path, &f));
  int rc = read_meta(f, path, out);
  H5Fclose(f);
  H5Eclear2(H5E_DEFAULT);
  return rc;
}

void mb_shardset_free(mb_shardset *s) {
  if (!s)
    return;
  mb_host_free(s->tokens);
  mb_host_free(s->offsets);
  mb_host_free(s->lengths);
  mb_host_free(s->labels);
  mb_host_free(s->example_ids);
  mb_host_free(s->text);
  mb_host_free(s->text_offsets);
  for (int i = 0; i < s->n_files; i++)
    free(s->files[i]);
  free(s->files);
  free(s);
}

/* Read file's data into the set at example ex0 / token tok0 / text byte txt0. */
static int read_file_data(hid_t f, const char *path, const mb_shard_meta *m, mb_shardset *s, int64_t ex0,
                          int64_t tok0, int64_t txt0) {
  const int64_t n = m->n_examples, T = m->n_tokens;
  int64_t *off = s->offsets + ex0; /* read this file's offsets in place, then rebase */
  int64_t saved = off[0];          /* the previous file's end, overwritten by our offsets[0] */
  MB_TRY(read_dataset(f, path, "offsets", 8, 1, n + 1, H5T_NATIVE_INT64, off));
  if (off[0] != 0)
    return MB_ERR(MB_EFORMAT, "%s: dataset 'offsets': starts at %lld, expected 0", path, (long long)off[0]);
  for (int64_t i = 0; i < n; i++)
    if (off[i + 1] < off[i])
      return MB_ERR(MB_EFORMAT, "%s: dataset 'offsets': decreases at example %lld", path, (long long)i);
  if (off[n] != T)
    return MB_ERR(MB_EFORMAT, "%s: dataset 'offsets': ends at %lld, but there are %lld tokens", path,
                  (long long)off[n], (long long)T);
  MB_TRY(read_dataset(f, path, "lengths", 4, 1, n, H5T_NATIVE_INT32, s->lengths + ex0));
  for (int64_t i = 0; i < n; i++) {
    if (s->lengths[ex0 + i] != off[i + 1] - off[i])
      return MB_ERR(MB_EFORMAT, "%s: dataset 'lengths': example %lld has length %d but offsets say %lld", path,
                    (long long)i, s->lengths[ex0 + i], (long long)(off[i + 1] - off[i]));
    if (m->max_length > 0 && s->lengths[ex0 + i] > m->max_length)
      return MB_ERR(MB_EFORMAT, "%s: example %lld has %d tokens, more than max_length %d", path, (long long)i,
                    s->lengths[ex0 + i], m->max_length);
  }
  MB_TRY(read_dataset(f, path, "labels", 1, 1, n, H5T_NATIVE_INT32, s->labels + ex0));
  int64_t lc[2] = {0, 0};
  for (int64_t i = 0; i < n; i++) {
    int32_t l = s->labels[ex0 + i];
    if (l != 0 && l != 1)
      return MB_ERR(MB_EFORMAT, "%s: dataset 'labels': example %lld has label %d, expected 0 or 1", path,
                    (long long)i, l);
    lc[l]++;
  }
  if (lc[0] != m->label_count[0] || lc[1] != m->label_count[1])
    return MB_ERR(MB_EFORMAT, "%s: dataset 'labels' counts [%lld, %lld] but attribute 'label_counts' says [%lld, %lld]",
                  path, (long long)lc[0], (long long)lc[1], (long long)m->label_count[0],
                  (long long)m->label_count[1]);
  MB_TRY(read_dataset(f, path, "example_ids", 8, 1, n, H5T_NATIVE_INT64, s->example_ids + ex0));
  MB_TRY(read_dataset(f, path, "input_ids", 4, 1, T, H5T_NATIVE_INT32, s->tokens + tok0));
  for (int64_t i = 0; i < T; i++) {
    int32_t id = s->tokens[tok0 + i];
    if (id < 0 || id >= m->vocab_size)
      return MB_ERR(MB_EFORMAT, "%s: dataset 'input_ids': id %d at position %lld is outside the vocabulary [0, %d)",
                    path, id, (long long)i, m->vocab_size);
  }
  if (m->has_text) {
    int64_t *to = s->text_offsets + ex0;
    int64_t tsaved = to[0];
    char hm[200];
    hid_t ds;
    MB_TRY(read_dataset(f, path, "text_offsets", 8, 1, n + 1, H5T_NATIVE_INT64, to));
    for (int64_t i = 0; i < n; i++)
      if (to[i + 1] < to[i] || to[0] != 0)
        return MB_ERR(MB_EFORMAT, "%s: dataset 'text_offsets': not increasing from 0 at example %lld", path,
                      (long long)i);
    /* The text's length is only known from its offsets, which we checked. */
    MB_TRY(open_dataset(f, path, "text", 1, 0, to[n], &ds));
    if (to[n] > 0 && H5Dread(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, s->text + txt0) < 0) {
      H5Dclose(ds);
      return MB_ERR(MB_EFORMAT, "%s: dataset 'text': read failed, the file is corrupt (HDF5: %s)", path,
                    h5_message(hm));
    }
    H5Dclose(ds);
    for (int64_t i = 0; i <= n; i++)
      to[i] += txt0;
    if (ex0 > 0 && to[0] != tsaved)
      return MB_ERR(MB_EINTERNAL, "text offsets do not join");
  }
  for (int64_t i = 0; i <= n; i++)
    off[i] += tok0;
  if (ex0 > 0 && off[0] != saved)
    return MB_ERR(MB_EINTERNAL, "token offsets do not join");
  return MB_OK;
}

/* Text bytes of one file, from its text_offsets' last element. */
static int text_bytes_of(hid_t f, const char *path, int64_t n, int64_t *bytes) {
  char hm[200];
  hid_t ds = H5I_INVALID_HID;
  MB_TRY(open_dataset(f, path, "text_offsets", 8, 1, n + 1, &ds));
  hid_t fs = H5Dget_space(ds);
  hsize_t start = (hsize_t)n, one = 1;
  hid_t ms = H5Screate_simple(1, &one, NULL);
  int ok = fs >= 0 && ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &one, NULL) >= 0 &&
           H5Dread(ds, H5T_NATIVE_INT64, ms, fs, H5P_DEFAULT, bytes) >= 0;
  H5CLOSE(H5Sclose, ms);
  H5CLOSE(H5Sclose, fs);
  H5Dclose(ds);
  if (!ok)
    return MB_ERR(MB_EFORMAT, "%s: dataset 'text_offsets': read failed (HDF5: %s)", path, h5_message(hm));
  if (*bytes < 0)
    return MB_ERR(MB_EFORMAT, "%s: dataset 'text_offsets': negative", path);
  return MB_OK;
}

#define SAME_STR(field, what)                                                                                       \
  if (strcmp(m[i].field, m[0].field) != 0)                                                                         \
    return MB_ERR(MB_EFORMAT, "shards do not belong together: %s has %s '%s' but %s has '%s'", paths[i], what,       \
                  m[i].field, paths[0], m[0].field);
#define SAME_INT(field, what)                                                                                       \
  if (m[i].field != m[0].field)                                                                                    \
    return MB_ERR(MB_EFORMAT, "shards do not belong together: %s has %s %lld but %s has %lld", paths[i], what,       \
                  (long long)m[i].field, paths[0], (long long)m[0].field);

static int check_set(const char *const *paths, const mb_shard_meta *m, int n, int *order) {
  for (int i = 1; i < n; i++) {
    SAME_STR(dataset, "data set");
    SAME_STR(split, "split");
    SAME_STR(tokenizer, "tokenizer");
    SAME_STR(vocab_sha256, "vocabulary sha256");
    SAME_INT(vocab_size, "vocab_size");
    SAME_INT(add_special, "add_special");
    SAME_INT(max_length, "max_length");
    SAME_INT(pad_id, "pad_id");
    SAME_INT(shard_count, "shard_count");
    SAME_INT(has_text, "has_text");
  }
  if (m[0].shard_count != n)
    return MB_ERR(MB_EFORMAT, "%s is shard %d of %d, but %d shard file(s) were given", paths[0], m[0].shard_index,
                  m[0].shard_count, n);
  for (int k = 0; k < n; k++)
    order[k] = -1;
  for (int i = 0; i < n; i++) {
    int k = m[i].shard_index;
    if (order[k] >= 0)
      return MB_ERR(MB_EFORMAT, "%s and %s are both shard %d of %d", paths[order[k]], paths[i], k, n);
    order[k] = i;
  }
  return MB_OK;
}

int mb_shardset_open(const char *const *paths, int n_paths, mb_shardset **out) {
  h5_quiet();
  *out = NULL;
  if (n_paths < 1)
    return MB_ERR(MB_EINVAL, "no shard files given");
  hid_t *fid = malloc((size_t)n_paths * sizeof *fid);
  mb_shard_meta *m = calloc((size_t)n_paths, sizeof *m);
  int *order = malloc((size_t)n_paths * sizeof *order);
  mb_shardset *s = calloc(1, sizeof *s);
  int rc = MB_OK;
  if (!fid || !m || !order || !s) {
    free(fid);
    free(m);
    free(order);
    free(s);
    return MB_ERR(MB_ENOMEM, "out of memory");
  }
  for (int i = 0; i < n_paths; i++)
    fid[i] = -1;
  int64_t text_total = 0;
  for (int i = 0; i < n_paths && rc == MB_OK; i++) {
    rc = open_file(paths[i], &fid[i]);
    if (rc == MB_OK)
      rc = read_meta(fid[i], paths[i], &m[i]);
  }
  if (rc == MB_OK)
    rc = check_set(paths, m, n_paths, order);
  if (rc == MB_OK) {
    s->meta = m[0];
    s->meta.shard_index = -1;
    s->meta.n_examples = s->meta.n_tokens = s->meta.n_truncated = 0;
    s->meta.label_count[0] = s->meta.label_count[1] = 0;
    for (int i = 0; i < n_paths; i++) {
      s->meta.n_examples += m[i].n_examples;
      s->meta.n_tokens += m[i].n_tokens;
      s->meta.n_truncated += m[i].n_truncated;
      s->meta.label_count[0] += m[i].label_count[0];
      s->meta.label_count[1] += m[i].label_count[1];
      if (m[i].has_text && rc == MB_OK) {
        int64_t b = 0;
        rc = text_bytes_of(fid[i], paths[i], m[i].n_examples, &b);
        text_total += b;
      }
    }
    s->n = s->meta.n_examples;
    s->n_tokens = s->meta.n_tokens;
  }
  if (rc == MB_OK) {
    s->tokens = mb_host_malloc((size_t)s->n_tokens * sizeof *s->tokens);
    s->offsets = mb_host_malloc((size_t)(s->n + 1) * sizeof *s->offsets);
    s->lengths = mb_host_malloc((size_t)s->n * sizeof *s->lengths);
    s->labels = mb_host_malloc((size_t)s->n * sizeof *s->labels);
    s->example_ids = mb_host_malloc((size_t)s->n * sizeof *s->example_ids);
    if (s->meta.has_text) {
      s->text = mb_host_malloc((size_t)text_total + 1);
      s->text_offsets = mb_host_malloc((size_t)(s->n + 1) * sizeof *s->text_offsets);
    }
    s->files = calloc((size_t)n_paths, sizeof *s->files);
    if (!s->tokens || !s->offsets || !s->lengths || !s->labels || !s->example_ids || !s->files ||
        (s->meta.has_text && (!s->text || !s->text_offsets)))
      rc = MB_ERR(MB_ENOMEM, "out of memory for %lld examples, %lld tokens", (long long)s->n, (long long)s->n_tokens);
    else
      s->offsets[0] = 0;
    if (s->text_offsets)
      s->text_offsets[0] = 0;
  }
  int64_t ex0 = 0, tok0 = 0;
  for (int k = 0; k < n_paths && rc == MB_OK; k++) {
    int i = order[k];
    rc = read_file_data(fid[i], paths[i], &m[i], s, ex0, tok0, s->text_offsets ? s->text_offsets[ex0] : 0);
    s->files[k] = strdup(paths[i]);
    s->n_files = k + 1;
    if (rc == MB_OK && !s->files[k])
      rc = MB_ERR(MB_ENOMEM, "out of memory");
    ex0 += m[i].n_examples;
    tok0 += m[i].n_tokens;
  }
  for (int i = 0; i < n_paths; i++)
    H5CLOSE(H5Fclose, fid[i]);
  H5Eclear2(H5E_DEFAULT);
  free(fid);
  free(m);
  free(order);
  if (rc != MB_OK) {
    mb_shardset_free(s);
    return rc;
  }
  *out = s;
  return MB_OK;
}

static int glob_append(const char *pattern, glob_t *g, int flags) {
  int e = glob(pattern, flags, NULL, g);
  if (e != 0 && e != GLOB_NOMATCH)
    return MB_ERR(MB_EIO, "%s: cannot list files (glob error %d)", pattern, e);
  return MB_OK;
}

int mb_shardset_open_spec(const char *spec, const char *split, mb_shardset **out) {
  *out = NULL;
  glob_t g;
  memset(&g, 0, sizeof g);
  struct stat st;
  int rc = MB_OK;
  if (stat(spec, &st) == 0 && S_ISDIR(st.st_mode)) {
    if (!split)
      return MB_ERR(MB_EINVAL, "%s is a directory of shards: say which split (train or test)", spec);
    size_t n = strlen(spec) + strlen(split) + 32;
    char *pat = malloc(n);
    if (!pat)
      return MB_ERR(MB_ENOMEM, "out of memory");
    snprintf(pat, n, "%s/%s.h5", spec, split);
    rc = glob_append(pat, &g, 0);
    if (rc == MB_OK) {
      snprintf(pat, n, "%s/%s-*-of-*.h5", spec, split);
      rc = glob_append(pat, &g, g.gl_pathc ? GLOB_APPEND : 0);
    }
    free(pat);
    if (rc == MB_OK && g.gl_pathc == 0)
      rc = MB_ERR(MB_ENOTFOUND, "%s: no shards of split '%s' (expected %s.h5 or %s-NNNNN-of-NNNNN.h5; run mambert prepare)",
                  spec, split, split, split);
  } else if (strpbrk(spec, "*?[")) {
    rc = glob_append(spec, &g, 0);
    if (rc == MB_OK && g.gl_pathc == 0)
      rc = MB_ERR(MB_ENOTFOUND, "%s: no shard files match", spec);
  } else {
    return mb_shardset_open(&spec, 1, out);
  }
  if (rc == MB_OK) {
    if (g.gl_pathc > (size_t)(1 << 20))
      rc = MB_ERR(MB_EINVAL, "%s: too many shard files", spec);
    else
      rc = mb_shardset_open((const char *const *)g.gl_pathv, (int)g.gl_pathc, out);
  }
  if (g.gl_pathc || g.gl_pathv)
    globfree(&g);
  return rc;
}

int mb_shardset_check_tokenizer(const mb_shardset *s, const char *tokenizer_name, const char *vocab_sha256) {
  if (strcmp(s->meta.tokenizer, tokenizer_name) == 0 && strcmp(s->meta.vocab_sha256, vocab_sha256) == 0)
    return MB_OK;
  return MB_ERR(MB_EINVAL,
                "%s%s: the shards were made with tokenizer '%s' (vocabulary sha256 %.12s...) but the model uses '%s' "
                "(vocabulary sha256 %.12s...); run mambert prepare with the model's tokenizer",
                s->n_files ? s->files[0] : "(shards)", s->n_files > 1 ? " and the other shards" : "", s->meta.tokenizer,
                s->meta.vocab_sha256, tokenizer_name, vocab_sha256);
}
