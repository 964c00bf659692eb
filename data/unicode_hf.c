/* unicode_hf.c: code-point properties as Hugging Face's Rust `tokenizers`
 * crate sees them, from utf8proc plus the generated exception tables (see
 * unicode_hf.h for why the exceptions exist).
 */
#include "data/unicode_hf.h"

#include <stddef.h>
#include <utf8proc.h>

#include "data/unicode_hf_tables.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static int in_ranges(const int32_t (*r)[2], size_t n, int32_t c) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (c < r[mid][0])
      hi = mid;
    else if (c > r[mid][1])
      lo = mid + 1;
    else
      return r[mid][0] >= 0;
  }
  return 0;
}

/* Rows {cp, count, out...} sorted by cp; returns the row or NULL. */
static const int32_t *find_override(const int32_t (*r)[2 + MB_UHF_MAX_EXPAND], size_t n, int32_t c) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (c < r[mid][0])
      hi = mid;
    else if (c > r[mid][0])
      lo = mid + 1;
    else
      return r[mid];
  }
  return NULL;
}

int mb_uhf_is_whitespace(int32_t c) {
  if (c < 0x80)
    return c == ' ' || (c >= 0x09 && c <= 0x0D);
  switch (c) {
  case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
    return 1;
  default:
    return c >= 0x2000 && c <= 0x200A;
  }
}

int mb_uhf_is_clean_space(int32_t c) {
  return c == '\t' || c == '\n' || c == '\r' || mb_uhf_is_whitespace(c);
}

int mb_uhf_is_dropped(int32_t c) {
  if (c == 0 || c == 0xFFFD)
    return 1;
  if (c == '\t' || c == '\n' || c == '\r')
    return 0;
  if (c < 0x20 || c == 0x7F)
    return 1;
  if (c < 0x80)
    return 0;
  utf8proc_category_t cat = utf8proc_category(c);
  if (cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CO)
    return 1;
  if (cat == UTF8PROC_CATEGORY_CF)
    return !in_ranges(uhf_cf_kept, NELEM(uhf_cf_kept), c);
  return 0;
}

int mb_uhf_is_bert_punct(int32_t c) {
  if (c < 0x80)
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
  utf8proc_category_t cat = utf8proc_category(c);
  if (cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO)
    return !in_ranges(uhf_punct_not, NELEM(uhf_punct_not), c);
  return in_ranges(uhf_punct_extra, NELEM(uhf_punct_extra), c);
}

int mb_uhf_is_cjk(int32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

int mb_uhf_nfd_strip(int32_t c, int32_t *out) {
  if (c < 0xC0) {
    out[0] = c;
    return 1;
  }
  const int32_t *o = find_override(uhf_strip_override, NELEM(uhf_strip_override), c);
  if (o) {
    for (int i = 0; i < o[1]; i++)
      out[i] = o[2 + i];
    return o[1];
  }
  utf8proc_int32_t buf[32];
  int last = 0;
  utf8proc_ssize_t n = utf8proc_decompose_char(c, buf, 32, UTF8PROC_DECOMPOSE, &last);
  if (n < 0 || n > 32) {
    out[0] = c;
    return 1;
  }
  int k = 0;
  for (utf8proc_ssize_t i = 0; i < n && k < MB_UHF_MAX_EXPAND; i++)
    if (utf8proc_category(buf[i]) != UTF8PROC_CATEGORY_MN)
      out[k++] = buf[i];
  return k;
}

int mb_uhf_lower(int32_t c, int32_t *out) {
  if (c < 0x80) {
    out[0] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
    return 1;
  }
  const int32_t *o = find_override(uhf_lower_override, NELEM(uhf_lower_override), c);
  if (o) {
    for (int i = 0; i < o[1]; i++)
      out[i] = o[2 + i];
    return o[1];
  }
  out[0] = utf8proc_tolower(c);
  return 1;
}

const char *mb_uhf_regex_extra_letters(void) { return uhf_regex_extra_letters; }
const char *mb_uhf_regex_extra_numbers(void) { return uhf_regex_extra_numbers; }
