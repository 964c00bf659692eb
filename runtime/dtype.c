/* dtype.c: the dtype table and lookups (dtype.h). Conversions: dtype_convert.c. */
#include "runtime/dtype.h"

#include <string.h>

#include "runtime/error.h"

static const mb_dtype_info table[MB_DTYPE_COUNT] = {
    [MB_F32] = {"f32", "F32", 4, 1},       [MB_F64] = {"f64", "F64", 8, 1},
    [MB_F16] = {"f16", "F16", 2, 1},       [MB_BF16] = {"bf16", "BF16", 2, 1},
    [MB_F8E4M3] = {"f8e4m3", "F8_E4M3", 1, 1}, [MB_F8E5M2] = {"f8e5m2", "F8_E5M2", 1, 1},
    [MB_I8] = {"i8", "I8", 1, 0},          [MB_U8] = {"u8", "U8", 1, 0},
    [MB_I16] = {"i16", "I16", 2, 0},       [MB_U16] = {"u16", "U16", 2, 0},
    [MB_I32] = {"i32", "I32", 4, 0},       [MB_U32] = {"u32", "U32", 4, 0},
    [MB_I64] = {"i64", "I64", 8, 0},       [MB_U64] = {"u64", "U64", 8, 0},
    [MB_BOOL] = {"bool", "BOOL", 1, 0},
};

const mb_dtype_info *mb_dtype_info_of(mb_dtype dt) {
  if ((unsigned)dt >= MB_DTYPE_COUNT)
    return NULL;
  return &table[dt];
}

const char *mb_dtype_name(mb_dtype dt) {
  const mb_dtype_info *i = mb_dtype_info_of(dt);
  return i ? i->name : "?";
}

size_t mb_dtype_size(mb_dtype dt) {
  const mb_dtype_info *i = mb_dtype_info_of(dt);
  return i ? i->size : 0;
}

int mb_dtype_from_name(const char *name, mb_dtype *out) {
  for (int i = 0; i < MB_DTYPE_COUNT; i++)
    if (strcmp(table[i].name, name) == 0) {
      *out = (mb_dtype)i;
      return MB_OK;
    }
  if (mb_dtype_from_safetensors(name, out) == MB_OK)
    return MB_OK;
  mb_error_clear();
  return MB_ERR(MB_ENOTFOUND, "unknown dtype '%s' (expected f32, f64, f16, bf16, f8e4m3, f8e5m2, i32, i64, ...)", name);
}

int mb_dtype_from_safetensors(const char *name, mb_dtype *out) {
  for (int i = 0; i < MB_DTYPE_COUNT; i++)
    if (strcmp(table[i].safetensors, name) == 0) {
      *out = (mb_dtype)i;
      return MB_OK;
    }
  return MB_ERR(MB_ENOTFOUND, "dtype '%s' is not one mambert reads", name);
}
