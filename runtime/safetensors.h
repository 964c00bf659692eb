/* safetensors.h: read and write the safetensors format (Hugging Face),
 * exactly as the reference implementation (huggingface/safetensors,
 * safetensors/src/tensor.rs) defines it. See ../shared/MODELS.md section 5.
 *
 *   [8 bytes: N, u64 little-endian][N bytes: JSON header][data buffer]
 *   header: {"__metadata__": {str: str}?,
 *            NAME: {"dtype": "F32", "shape": [..], "data_offsets": [BEGIN, END]}, ...}
 *   offsets are relative to the data buffer (file offset 8 + N), END exclusive.
 *
 * Reading maps the file (mmap) and hands out pointers into the mapping: no
 * copy. The mapping is private and copy-on-write, so writing through a
 * tensor changes this process's view only, never the file. Opening checks
 * everything the reference reader checks, and each error names the file and
 * the tensor or field at fault:
 *   N <= 100,000,000 and 8 + N <= file size; the header is UTF-8 JSON, an
 *   object, without duplicate keys; each tensor has a known dtype string, a
 *   shape of non-negative integers and data_offsets [BEGIN <= END]; END -
 *   BEGIN == numel * dtype size; sorted by offsets the tensors cover the
 *   data buffer from 0 with no gap and no overlap, and the last END is
 *   exactly where the file ends; __metadata__ maps strings to strings.
 * Files may hold dtypes the format knows but mambert does not compute in
 * (C64, F8_E8M0, F4, ...): they open, and only mb_safetensors_get on those
 * tensors fails (MB_EUNSUPPORTED).
 *
 * Writing produces what the reference writer produces: tensors ordered by
 * descending dtype (the reference's dtype order: U64, I64, F64, C64, F32,
 * U32, I32, BF16, F16, U16, I16, ..., F8_E4M3, F8_E5M2, I8, U8, ..., BOOL),
 * then by name; __metadata__ first; compact JSON padded with spaces to a
 * multiple of 8. With at most one metadata key the bytes equal the reference
 * writer's (with several, the reference orders them by hash; we sort them).
 * The file is written atomically (fileio.h). Little-endian hosts only.
 */
#ifndef MB_RUNTIME_SAFETENSORS_H
#define MB_RUNTIME_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/error.h"
#include "runtime/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MB_SAFETENSORS_MAX_HEADER 100000000ull

/* One tensor of an open file. Pointers stay valid until the file is closed. */
typedef struct {
  const char *name;
  const char *dtype_name; /* as in the file: "F32", "BF16", "C64", ... */
  mb_dtype dtype;         /* MB_DTYPE_COUNT when mambert has no such dtype */
  int ndim;               /* any number; mb_safetensors_get takes <= MB_MAX_DIMS */
  const int64_t *shape;
  int64_t numel;
  uint64_t begin, end;    /* byte offsets within the data buffer */
  const void *data;       /* into the mapping */
} mb_st_entry;

typedef struct mb_safetensors mb_safetensors;

int mb_safetensors_open(const char *path, mb_safetensors **out) MB_NODISCARD;
void mb_safetensors_close(mb_safetensors *st);
const char *mb_safetensors_path(const mb_safetensors *st);

/* Tensors in data-offset order (index 0 .. count-1). */
size_t mb_safetensors_count(const mb_safetensors *st);
const mb_st_entry *mb_safetensors_entry(const mb_safetensors *st, size_t i);
/* By name; NULL when absent (no error is set). */
const mb_st_entry *mb_safetensors_find(const mb_safetensors *st, const char *name);

/* The named tensor as an mb_tensor on the CPU. Zero copy (owns = 0, valid
 * while st is open) when its data is aligned to its element size, which
 * files from the reference writer always are; otherwise an aligned copy
 * (owns = 1). mb_tensor_free is right in both cases. MB_ENOTFOUND for an
 * absent name, MB_EUNSUPPORTED for a dtype or rank mambert lacks. */
int mb_safetensors_get(const mb_safetensors *st, const char *name, mb_tensor *out) MB_NODISCARD;

/* __metadata__: value for key, or NULL; and all pairs (sorted by key). */
const char *mb_safetensors_metadata(const mb_safetensors *st, const char *key);
size_t mb_safetensors_metadata_count(const mb_safetensors *st);
void mb_safetensors_metadata_at(const mb_safetensors *st, size_t i, const char **key, const char **value);

/* ---- writing ---- */

typedef struct mb_safetensors_writer mb_safetensors_writer;

int mb_safetensors_writer_new(mb_safetensors_writer **out) MB_NODISCARD;
/* Add a tensor: `data` holds numel(shape) * size(dt) bytes, row-major, and
 * is only read by mb_safetensors_writer_write (keep it alive until then).
 * Names must be unique and not "__metadata__". */
int mb_safetensors_writer_add(mb_safetensors_writer *w, const char *name, mb_dtype dt,
                              const mb_shape *shape, const void *data) MB_NODISCARD;
/* Add a host tensor (same rules). */
int mb_safetensors_writer_add_tensor(mb_safetensors_writer *w, const char *name,
                                     const mb_tensor *t) MB_NODISCARD;
/* Set (or replace) a __metadata__ entry. */
int mb_safetensors_writer_set_metadata(mb_safetensors_writer *w, const char *key,
                                       const char *value) MB_NODISCARD;
/* Write everything to path, atomically. The writer can be written again. */
int mb_safetensors_writer_write(mb_safetensors_writer *w, const char *path) MB_NODISCARD;
void mb_safetensors_writer_free(mb_safetensors_writer *w);

#ifdef __cplusplus
}
#endif
#endif
