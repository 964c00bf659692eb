/* safetensors.c: the safetensors reader (mmap, validated) and writer
 * (reference order, atomic). Format and rules: safetensors.h. */
#include "runtime/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/alloc.h"
#include "runtime/fileio.h"
#include "runtime/log.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this reader assumes a little-endian host"
#endif

/* Every dtype of the format, in the reference's enum order (its rank is the
 * writer's sort key), with its size in bits and our dtype if we have one. */
typedef struct {
  const char *name;
  unsigned bits;
  mb_dtype dt;
} st_dtype;

#define NO_DT MB_DTYPE_COUNT
static const st_dtype ST_DTYPES[] = {
    {"BOOL", 8, MB_BOOL},       {"F4", 4, NO_DT},           {"F6_E2M3", 6, NO_DT},
    {"F6_E3M2", 6, NO_DT},      {"U8", 8, MB_U8},           {"I8", 8, MB_I8},
    {"F8_E5M2", 8, MB_F8E5M2},  {"F8_E4M3", 8, MB_F8E4M3},  {"F8_E8M0", 8, NO_DT},
    {"F8_E4M3FNUZ", 8, NO_DT},  {"F8_E5M2FNUZ", 8, NO_DT},  {"I16", 16, MB_I16},
    {"U16", 16, MB_U16},        {"F16", 16, MB_F16},        {"BF16", 16, MB_BF16},
    {"I32", 32, MB_I32},        {"U32", 32, MB_U32},        {"F32", 32, MB_F32},
    {"C64", 64, NO_DT},         {"F64", 64, MB_F64},        {"I64", 64, MB_I64},
    {"U64", 64, MB_U64},
};
#define N_ST_DTYPES (sizeof ST_DTYPES / sizeof ST_DTYPES[0])

static int st_dtype_find(const char *name) {
  for (size_t i = 0; i < N_ST_DTYPES; i++)
    if (strcmp(ST_DTYPES[i].name, name) == 0)
      return (int)i;
  return -1;
}

static int st_dtype_of(mb_dtype dt) {
  const mb_dtype_info *info = mb_dtype_info_of(dt);
  return info ? st_dtype_find(info->safetensors) : -1;
}

/* ---- reading ---- */

struct mb_safetensors {
  char *path;
  unsigned char *map;
  size_t map_len;
  json_t *root; /* owns every name and metadata string we hand out */
  mb_st_entry *entries; /* sorted by data offsets */
  size_t n;
  const mb_st_entry **by_name; /* sorted by name, for lookup */
  int64_t *shapes;
  const char **meta_key, **meta_val; /* sorted by key */
  size_t n_meta;
};

static const char *json_kind(const json_t *j) {
  switch (json_typeof(j)) {
  case JSON_OBJECT: return "an object";
  case JSON_ARRAY: return "an array";
  case JSON_STRING: return "a string";
  case JSON_INTEGER: return "an integer";
  case JSON_REAL: return "a real number";
  case JSON_TRUE:
  case JSON_FALSE: return "a boolean";
  default: return "null";
  }
}

static int cmp_by_offsets(const void *pa, const void *pb) {
  const mb_st_entry *a = pa, *b = pb;
  if (a->begin != b->begin)
    return a->begin < b->begin ? -1 : 1;
  if (a->end != b->end)
    return a->end < b->end ? -1 : 1;
  return strcmp(a->name, b->name);
}

static int cmp_by_name(const void *pa, const void *pb) {
  const mb_st_entry *const *a = pa, *const *b = pb;
  return strcmp((*a)->name, (*b)->name);
}

static int cmp_str_ptr(const void *pa, const void *pb) {
  return strcmp(*(const char *const *)pa, *(const char *const *)pb);
}

void mb_safetensors_close(mb_safetensors *st) {
  if (!st)
    return;
  if (st->map && st->map != MAP_FAILED)
    munmap(st->map, st->map_len);
  if (st->root)
    json_decref(st->root);
  free(st->entries);
  free(st->by_name);
  free(st->shapes);
  free(st->meta_key);
  free(st->meta_val);
  free(st->path);
  free(st);
}

/* A non-negative JSON integer, or -1 when `j` is anything else. */
static int64_t json_uint(const json_t *j) {
  if (!json_is_integer(j) || json_integer_value(j) < 0)
    return -1;
  return (int64_t)json_integer_value(j);
}

/* Field `field` of tensor `name`: checks and fills e (except data). */
static int parse_entry(const char *path, const char *name, json_t *obj, mb_st_entry *e, int64_t *shape_out) {
  if (!json_is_object(obj))
    return MB_ERR(MB_EFORMAT, "%s: tensor '%s': is %s, expected an object with dtype, shape and data_offsets",
                  path, name, json_kind(obj));
  json_t *dtype = json_object_get(obj, "dtype");
  json_t *shape = json_object_get(obj, "shape");
  json_t *offs = json_object_get(obj, "data_offsets");
  const char *missing = !dtype ? "dtype" : !shape ? "shape" : !offs ? "data_offsets" : NULL;
  if (missing)
    return MB_ERR(MB_EFORMAT, "%s: tensor '%s': missing field '%s'", path, name, missing);
  if (!json_is_string(dtype))
    return MB_ERR(MB_EFORMAT, "%s: tensor '%s': field 'dtype' is %s, expected a string such as \"F32\"", path,
                  name, json_kind(dtype));
  int k = st_dtype_find(json_string_value(dtype));
  if (k < 0)
    return MB_ERR(MB_EFORMAT, "%s: tensor '%s': unknown dtype '%s'", path, name, json_string_value(dtype));
  e->name = name;
  e->dtype_name = ST_DTYPES[k].name;
  e->dtype = ST_DTYPES[k].dt;

  if (!json_is_array(shape))
    return MB_ERR(MB_EFORMAT, "%s: tensor '%s': field 'shape' is %s, expected an array of non-negative integers",
                  path, name, json_kind(shape));
  e->ndim = (int)json_array_size(shape);
  uint64_t numel = 1;
  int overflow = 0;
  for (int d = 0; d < e->ndim; d++) {
    json_t *v = json_array_get(shape, (size_t)d);
    int64_t dim = json_uint(v);
    if (dim < 0) {
      if (json_is_integer(v))
        return MB_ERR(MB_EFORMAT, "%s: tensor '%s': shape[%d] is %lld, expected a non-negative integer", path,
                      name, d, (long long)json_integer_value(v));
      return MB_ERR(MB_EFORMAT, "%s: tensor '%s': shape[%d] is %s, expected a non-negative integer", path, name,
                    d, json_kind(v));
    }
    shape_out[d] = dim;
    overflow |= __builtin_mul_overflow(numel, (uint64_t)dim, &numel);
  }
  uint64_t nbits;
  if (overflow || numel > (uint64_t)INT64_MAX || __builtin_mul_overflow(numel, (uint64_t)ST_DTYPES[k].bits, &nbits))
    return MB_ERR(MB_EFORMAT, "%s: tensor '%s': shape has too many elements (overflow)", path, name);
  e->shape = shape_out;
  e->numel = (int64_t)numel;

  if (!json_is_array(offs) || json_array_size(offs) != 2 || json_uint(json_array_get(offs, 0)) < 0 ||
      json_uint(json_array_get(offs, 1)) < 0) {
    char *text = json_dumps(offs, JSON_COMPACT | JSON_ENCODE_ANY);
    int rc = MB_ERR(MB_EFORMAT, "%s: tensor '%s': field 'data_offsets' is %s, expected [BEGIN, END] (two non-negative integers)",
                    path, name, text ? text : "?");
    free(text);
    return rc;
  }
  e->begin = (uint64_t)json_uint(json_array_get(offs, 0));
  e->end = (uint64_t)json_uint(json_array_get(offs, 1));
  if (e->end < e->begin)
    return MB_ERR(MB_EFORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", path, name,
                  (unsigned long long)e->begin, (unsigned long long)e->end);
  if (nbits % 8 != 0)
    return MB_ERR(MB_EFORMAT, "%s: tensor '%s': %llu elements of %s are not a whole number of bytes", path, name,
                  (unsigned long long)numel, e->dtype_name);
  if (e->end - e->begin != nbits / 8) {
    char sbuf[256] = "[";
    size_t len = 1;
    for (int d = 0; d < e->ndim && len < sizeof sbuf - 32; d++)
      len += (size_t)snprintf(sbuf + len, sizeof sbuf - len, d ? ", %lld" : "%lld", (long long)shape_out[d]);
    snprintf(sbuf + len, sizeof sbuf - len, "]");
    return MB_ERR(MB_EFORMAT,
                  "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, but shape %s of %s needs %llu", path,
                  name, (unsigned long long)e->begin, (unsigned long long)e->end,
                  (unsigned long long)(e->end - e->begin), sbuf, e->dtype_name, (unsigned long long)(nbits / 8));
  }
  return MB_OK;
}

static int parse_metadata(mb_safetensors *st, json_t *meta) {
  if (json_is_null(meta))
    return MB_OK;
  if (!json_is_object(meta))
    return MB_ERR(MB_EFORMAT, "%s: __metadata__ is %s, expected an object of strings", st->path, json_kind(meta));
  size_t n = json_object_size(meta);
  st->meta_key = calloc(n ? n : 1, sizeof *st->meta_key);
  st->meta_val = calloc(n ? n : 1, sizeof *st->meta_val);
  if (!st->meta_key || !st->meta_val)
    return MB_ERR(MB_ENOMEM, "%s: out of memory reading __metadata__", st->path);
  const char *key;
  json_t *v;
  json_object_foreach(meta, key, v) {
    if (!json_is_string(v))
      return MB_ERR(MB_EFORMAT, "%s: __metadata__: value of '%s' is %s, expected a string", st->path, key,
                    json_kind(v));
    st->meta_key[st->n_meta++] = key;
  }
  qsort(st->meta_key, st->n_meta, sizeof *st->meta_key, cmp_str_ptr);
  for (size_t i = 0; i < st->n_meta; i++)
    st->meta_val[i] = json_string_value(json_object_get(meta, st->meta_key[i]));
  return MB_OK;
}

/* jansson reports duplicate keys as: duplicate object key near '"NAME"'. */
static int duplicate_key_error(const char *path, const json_error_t *je) {
  const char *q = strstr(je->text, "near '\"");
  size_t len = q ? strlen(q + 7) : 0;
  if (q && len >= 2 && strcmp(q + 7 + len - 2, "\"'") == 0)
    return MB_ERR(MB_EFORMAT, "%s: tensor '%.*s': the name appears more than once in the header (line %d, column %d)",
                  path, (int)(len - 2), q + 7, je->line, je->column);
  return MB_ERR(MB_EFORMAT, "%s: header has a duplicate key: %s", path, je->text);
}

int mb_safetensors_open(const char *path, mb_safetensors **out) {
  *out = NULL;
  mb_safetensors *st = calloc(1, sizeof *st);
  if (!st || !(st->path = strdup(path))) {
    free(st);
    return MB_ERR(MB_ENOMEM, "%s: out of memory opening it", path);
  }
  int rc = MB_OK;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    rc = MB_ERR(errno == ENOENT ? MB_ENOTFOUND : MB_EIO, "%s: cannot open: %s", path, strerror(errno));
    goto fail;
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    rc = MB_ERR(MB_EIO, "%s: not a regular file", path);
    close(fd);
    goto fail;
  }
  uint64_t fsize = (uint64_t)sb.st_size;
  if (fsize < 8) {
    close(fd);
    rc = MB_ERR(MB_EFORMAT, "%s: file is %llu bytes, too short for the 8-byte header length", path,
                (unsigned long long)fsize);
    goto fail;
  }
  st->map_len = (size_t)fsize;
  /* Private and writable: copy-on-write, so callers may modify tensors. */
  st->map = mmap(NULL, st->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  int map_errno = errno;
  close(fd);
  if (st->map == MAP_FAILED) {
    st->map = NULL;
    rc = MB_ERR(MB_EIO, "%s: cannot map %llu bytes: %s", path, (unsigned long long)fsize, strerror(map_errno));
    goto fail;
  }

  uint64_t n = 0;
  for (int i = 7; i >= 0; i--)
    n = (n << 8) | st->map[i];
  if (n > MB_SAFETENSORS_MAX_HEADER) {
    rc = MB_ERR(MB_EFORMAT, "%s: header length %llu is larger than the limit of %llu bytes", path,
                (unsigned long long)n, MB_SAFETENSORS_MAX_HEADER);
    goto fail;
  }
  if (8 + n > fsize) {
    rc = MB_ERR(MB_EFORMAT, "%s: header length %llu runs past the end of the file (%llu bytes)", path,
                (unsigned long long)n, (unsigned long long)fsize);
    goto fail;
  }
  json_error_t je;
  st->root = json_loadb((const char *)st->map + 8, (size_t)n, JSON_REJECT_DUPLICATES, &je);
  if (!st->root) {
    if (json_error_code(&je) == json_error_duplicate_key)
      rc = duplicate_key_error(path, &je);
    else
      rc = MB_ERR(MB_EFORMAT, "%s: header is not valid JSON: %s (line %d, column %d)", path, je.text, je.line,
                  je.column);
    goto fail;
  }
  if (!json_is_object(st->root)) {
    rc = MB_ERR(MB_EFORMAT, "%s: header is %s, expected a JSON object", path, json_kind(st->root));
    goto fail;
  }

  /* Entries: one per key except __metadata__. */
  size_t nkeys = json_object_size(st->root), total_dims = 0;
  const char *key;
  json_t *val;
  json_object_foreach(st->root, key, val) {
    if (strcmp(key, "__metadata__") != 0 && json_is_object(val)) {
      json_t *shape = json_object_get(val, "shape");
      total_dims += json_is_array(shape) ? json_array_size(shape) : 0;
    }
  }
  st->entries = calloc(nkeys ? nkeys : 1, sizeof *st->entries);
  st->by_name = calloc(nkeys ? nkeys : 1, sizeof *st->by_name);
  st->shapes = calloc(total_dims ? total_dims : 1, sizeof *st->shapes);
  if (!st->entries || !st->by_name || !st->shapes) {
    rc = MB_ERR(MB_ENOMEM, "%s: out of memory reading the header", path);
    goto fail;
  }
  size_t dims_used = 0;
  json_object_foreach(st->root, key, val) {
    if (strcmp(key, "__metadata__") == 0) {
      if ((rc = parse_metadata(st, val)) != MB_OK)
        goto fail;
      continue;
    }
    mb_st_entry *e = &st->entries[st->n];
    if ((rc = parse_entry(path, key, val, e, st->shapes + dims_used)) != MB_OK)
      goto fail;
    dims_used += (size_t)e->ndim;
    st->n++;
  }

  /* Sorted by offsets, the tensors must tile the data buffer exactly. */
  qsort(st->entries, st->n, sizeof *st->entries, cmp_by_offsets);
  uint64_t data_len = fsize - 8 - n, pos = 0;
  for (size_t i = 0; i < st->n; i++) {
    const mb_st_entry *e = &st->entries[i];
    if (e->begin > pos) {
      if (i == 0)
        rc = MB_ERR(MB_EFORMAT, "%s: tensor '%s': data starts at byte %llu, but the first tensor must start at 0 "
                    "(gap of %llu bytes)", path, e->name, (unsigned long long)e->begin,
                    (unsigned long long)e->begin);
      else
        rc = MB_ERR(MB_EFORMAT, "%s: tensor '%s': gap of %llu bytes between it (data_offsets [%llu, %llu]) and "
                    "tensor '%s' (ending at %llu)", path, e->name, (unsigned long long)(e->begin - pos),
                    (unsigned long long)e->begin, (unsigned long long)e->end, st->entries[i - 1].name,
                    (unsigned long long)pos);
      goto fail;
    }
    if (e->begin < pos) {
      const mb_st_entry *p = &st->entries[i - 1];
      rc = MB_ERR(MB_EFORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' [%llu, %llu]", path,
                  e->name, (unsigned long long)e->begin, (unsigned long long)e->end, p->name,
                  (unsigned long long)p->begin, (unsigned long long)p->end);
      goto fail;
    }
    if (e->end > data_len) {
      rc = MB_ERR(MB_EFORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the data buffer "
                  "(%llu bytes after the %llu-byte header)", path, e->name, (unsigned long long)e->begin,
                  (unsigned long long)e->end, (unsigned long long)data_len, (unsigned long long)n);
      goto fail;
    }
    pos = e->end;
  }
  if (pos != data_len) {
    rc = MB_ERR(MB_EFORMAT, "%s: the tensors cover %llu bytes of the data buffer, but it has %llu "
                "(%llu stray bytes at the end of the file)", path, (unsigned long long)pos,
                (unsigned long long)data_len, (unsigned long long)(data_len - pos));
    goto fail;
  }
  const unsigned char *data = st->map + 8 + n;
  for (size_t i = 0; i < st->n; i++) {
    st->entries[i].data = data + st->entries[i].begin;
    st->by_name[i] = &st->entries[i];
  }
  qsort(st->by_name, st->n, sizeof *st->by_name, cmp_by_name);
  *out = st;
  return MB_OK;

fail:
  mb_safetensors_close(st);
  return rc;
}

const char *mb_safetensors_path(const mb_safetensors *st) { return st->path; }
size_t mb_safetensors_count(const mb_safetensors *st) { return st->n; }

const mb_st_entry *mb_safetensors_entry(const mb_safetensors *st, size_t i) {
  return i < st->n ? &st->entries[i] : NULL;
}

const mb_st_entry *mb_safetensors_find(const mb_safetensors *st, const char *name) {
  size_t lo = 0, hi = st->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = strcmp(st->by_name[mid]->name, name);
    if (c == 0)
      return st->by_name[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

int mb_safetensors_get(const mb_safetensors *st, const char *name, mb_tensor *out) {
  memset(out, 0, sizeof *out);
  const mb_st_entry *e = mb_safetensors_find(st, name);
  if (!e)
    return MB_ERR(MB_ENOTFOUND, "%s: no tensor named '%s'", st->path, name);
  if (e->dtype == MB_DTYPE_COUNT)
    return MB_ERR(MB_EUNSUPPORTED, "%s: tensor '%s': dtype %s is valid safetensors but mambert has no such dtype",
                  st->path, name, e->dtype_name);
  if (e->ndim > MB_MAX_DIMS)
    return MB_ERR(MB_EUNSUPPORTED, "%s: tensor '%s': %d dimensions, mambert tensors have at most %d", st->path,
                  name, e->ndim, MB_MAX_DIMS);
  mb_shape shape = mb_shape_of(e->ndim, e->shape);
  size_t esize = mb_dtype_size(e->dtype);
  if ((uintptr_t)e->data % esize == 0) {
    mb_tensor_wrap(out, e->dtype, shape, mb_cpu(), (void *)e->data);
    return MB_OK;
  }
  /* Only files from other writers can get here (the reference orders
   * tensors so each is aligned): hand out an aligned copy. */
  mb_log_once(MB_LOG_WARN, st->path, "%s: tensor '%s' is not aligned to its %zu-byte elements; copying it", st->path,
              name, esize);
  MB_TRY(mb_tensor_alloc_host(out, e->dtype, shape));
  memcpy(out->data, e->data, (size_t)(e->end - e->begin));
  return MB_OK;
}

const char *mb_safetensors_metadata(const mb_safetensors *st, const char *key) {
  for (size_t i = 0; i < st->n_meta; i++)
    if (strcmp(st->meta_key[i], key) == 0)
      return st->meta_val[i];
  return NULL;
}

size_t mb_safetensors_metadata_count(const mb_safetensors *st) { return st->n_meta; }

void mb_safetensors_metadata_at(const mb_safetensors *st, size_t i, const char **key, const char **value) {
  *key = i < st->n_meta ? st->meta_key[i] : NULL;
  *value = i < st->n_meta ? st->meta_val[i] : NULL;
}

/* ---- writing ---- */

typedef struct {
  char *name;
  int st_dtype; /* index into ST_DTYPES */
  mb_shape shape;
  const void *data;
  size_t nbytes;
} w_entry;

typedef struct {
  char *key, *value;
} w_meta;

struct mb_safetensors_writer {
  w_entry *e;
  size_t n, cap;
  w_meta *m;
  size_t nm, mcap;
};

int mb_safetensors_writer_new(mb_safetensors_writer **out) {
  *out = calloc(1, sizeof **out);
  if (!*out)
    return MB_ERR(MB_ENOMEM, "out of memory creating a safetensors writer");
  return MB_OK;
}

void mb_safetensors_writer_free(mb_safetensors_writer *w) {
  if (!w)
    return;
  for (size_t i = 0; i < w->n; i++)
    free(w->e[i].name);
  for (size_t i = 0; i < w->nm; i++) {
    free(w->m[i].key);
    free(w->m[i].value);
  }
  free(w->e);
  free(w->m);
  free(w);
}

int mb_safetensors_writer_add(mb_safetensors_writer *w, const char *name, mb_dtype dt, const mb_shape *shape,
                              const void *data) {
  if (!name)
    return MB_ERR(MB_EINVAL, "safetensors writer: tensor name is NULL");
  if (strcmp(name, "__metadata__") == 0)
    return MB_ERR(MB_EINVAL, "safetensors writer: '__metadata__' is reserved and cannot name a tensor");
  int k = st_dtype_of(dt);
  if (k < 0)
    return MB_ERR(MB_EINVAL, "safetensors writer: tensor '%s': invalid dtype %d", name, (int)dt);
  if (mb_shape_validate(shape) != MB_OK)
    return mb_error_context(MB_EINVAL, "safetensors writer: tensor '%s'", name);
  for (size_t i = 0; i < w->n; i++)
    if (strcmp(w->e[i].name, name) == 0)
      return MB_ERR(MB_EINVAL, "safetensors writer: tensor '%s' added twice", name);
  size_t nbytes = (size_t)mb_shape_numel(shape) * mb_dtype_size(dt);
  if (!data && nbytes)
    return MB_ERR(MB_EINVAL, "safetensors writer: tensor '%s': no data for %zu bytes", name, nbytes);
  if (w->n == w->cap) {
    size_t ncap = w->cap ? 2 * w->cap : 16;
    w_entry *ne = realloc(w->e, ncap * sizeof *ne);
    if (!ne)
      return MB_ERR(MB_ENOMEM, "safetensors writer: out of memory adding '%s'", name);
    w->e = ne;
    w->cap = ncap;
  }
  w_entry *e = &w->e[w->n];
  if (!(e->name = strdup(name)))
    return MB_ERR(MB_ENOMEM, "safetensors writer: out of memory adding '%s'", name);
  e->st_dtype = k;
  e->shape = *shape;
  e->data = data;
  e->nbytes = nbytes;
  w->n++;
  return MB_OK;
}

int mb_safetensors_writer_add_tensor(mb_safetensors_writer *w, const char *name, const mb_tensor *t) {
  if (t->device.type != MB_DEVICE_CPU)
    return MB_ERR(MB_EUNSUPPORTED, "safetensors writer: tensor '%s' is on a device; copy it to the host first",
                  name ? name : "?");
  return mb_safetensors_writer_add(w, name, t->dtype, &t->shape, t->data);
}

int mb_safetensors_writer_set_metadata(mb_safetensors_writer *w, const char *key, const char *value) {
  if (!key || !value)
    return MB_ERR(MB_EINVAL, "safetensors writer: metadata key and value must not be NULL");
  char *v = strdup(value);
  if (!v)
    return MB_ERR(MB_ENOMEM, "safetensors writer: out of memory setting metadata '%s'", key);
  for (size_t i = 0; i < w->nm; i++)
    if (strcmp(w->m[i].key, key) == 0) {
      free(w->m[i].value);
      w->m[i].value = v;
      return MB_OK;
    }
  if (w->nm == w->mcap) {
    size_t ncap = w->mcap ? 2 * w->mcap : 4;
    w_meta *nm = realloc(w->m, ncap * sizeof *nm);
    if (!nm) {
      free(v);
      return MB_ERR(MB_ENOMEM, "safetensors writer: out of memory setting metadata '%s'", key);
    }
    w->m = nm;
    w->mcap = ncap;
  }
  if (!(w->m[w->nm].key = strdup(key))) {
    free(v);
    return MB_ERR(MB_ENOMEM, "safetensors writer: out of memory setting metadata '%s'", key);
  }
  w->m[w->nm++].value = v;
  return MB_OK;
}

/* The reference writer's order: descending dtype rank, then name. */
static int cmp_write_order(const void *pa, const void *pb) {
  const w_entry *a = *(const w_entry *const *)pa, *b = *(const w_entry *const *)pb;
  if (a->st_dtype != b->st_dtype)
    return a->st_dtype > b->st_dtype ? -1 : 1;
  return strcmp(a->name, b->name);
}

static int cmp_meta_key(const void *pa, const void *pb) {
  return strcmp((*(const w_meta *const *)pa)->key, (*(const w_meta *const *)pb)->key);
}

/* The header JSON, padded with spaces to a multiple of 8. Caller frees. */
static int build_header(const mb_safetensors_writer *w, const w_entry *const *order, const char *path, char **out,
                        size_t *out_len) {
  json_t *root = json_object();
  int ok = root != NULL;
  if (ok && w->nm) {
    const w_meta **sorted = malloc(w->nm * sizeof *sorted);
    json_t *meta = json_object();
    if (meta && !sorted)
      json_decref(meta);
    /* json_object_set_new takes meta's reference even when it fails */
    ok = sorted && meta && json_object_set_new(root, "__metadata__", meta) == 0;
    if (ok) {
      for (size_t i = 0; i < w->nm; i++)
        sorted[i] = &w->m[i];
      qsort(sorted, w->nm, sizeof *sorted, cmp_meta_key);
      for (size_t i = 0; i < w->nm && ok; i++)
        ok = json_object_set_new(meta, sorted[i]->key, json_string(sorted[i]->value)) == 0;
    }
    free(sorted);
  }
  uint64_t offset = 0;
  for (size_t k = 0; k < w->n && ok; k++) {
    const w_entry *e = order[k];
    json_t *info = json_object(), *shape = json_array(), *offs = json_array();
    ok = info && shape && offs;
    for (int d = 0; ok && d < e->shape.ndim; d++)
      ok = json_array_append_new(shape, json_integer((json_int_t)e->shape.dim[d])) == 0;
    ok = ok && json_array_append_new(offs, json_integer((json_int_t)offset)) == 0 &&
         json_array_append_new(offs, json_integer((json_int_t)(offset + e->nbytes))) == 0;
    /* field order as the reference serializes TensorInfo */
    ok = ok && json_object_set_new(info, "dtype", json_string(ST_DTYPES[e->st_dtype].name)) == 0;
    ok = ok && json_object_set(info, "shape", shape) == 0 && json_object_set(info, "data_offsets", offs) == 0;
    json_decref(shape);
    json_decref(offs);
    if (ok)
      ok = json_object_set_new(root, e->name, info) == 0; /* takes info, even on failure */
    else if (info)
      json_decref(info);
    offset += e->nbytes;
  }
  char *text = ok ? json_dumps(root, JSON_COMPACT) : NULL;
  json_decref(root);
  if (!text)
    return MB_ERR(MB_EINVAL, "%s: cannot encode the header (names and metadata must be valid UTF-8)", path);
  size_t len = strlen(text), padded = (len + 7) / 8 * 8;
  if (padded > MB_SAFETENSORS_MAX_HEADER) {
    free(text);
    return MB_ERR(MB_EINVAL, "%s: header would be %zu bytes, more than the format's limit of %llu", path, padded,
                  MB_SAFETENSORS_MAX_HEADER);
  }
  char *buf = realloc(text, padded + 1);
  if (!buf) {
    free(text);
    return MB_ERR(MB_ENOMEM, "%s: out of memory building the header", path);
  }
  memset(buf + len, ' ', padded - len);
  buf[padded] = 0;
  *out = buf;
  *out_len = padded;
  return MB_OK;
}

int mb_safetensors_writer_write(mb_safetensors_writer *w, const char *path) {
  const w_entry **order = malloc((w->n ? w->n : 1) * sizeof *order);
  if (!order)
    return MB_ERR(MB_ENOMEM, "%s: out of memory writing", path);
  for (size_t i = 0; i < w->n; i++)
    order[i] = &w->e[i];
  qsort(order, w->n, sizeof *order, cmp_write_order);
  char *header = NULL;
  size_t hlen = 0;
  int rc = build_header(w, order, path, &header, &hlen);
  if (rc != MB_OK) {
    free(order);
    return rc;
  }
  unsigned char len8[8];
  for (int i = 0; i < 8; i++)
    len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
  mb_atomic_file *f = NULL;
  rc = mb_atomic_open(path, &f);
  if (rc == MB_OK)
    rc = mb_atomic_write(f, len8, 8);
  if (rc == MB_OK)
    rc = mb_atomic_write(f, header, hlen);
  for (size_t k = 0; k < w->n && rc == MB_OK; k++)
    rc = mb_atomic_write(f, order[k]->data, order[k]->nbytes);
  if (rc == MB_OK)
    rc = mb_atomic_commit(f);
  else if (f)
    mb_atomic_abort(f);
  free(header);
  free(order);
  return rc;
}
