/* import_common.c: what the importers share: reading a (gzipped) file with
 * zlib, strict UTF-8 validation, the record arena, line iteration, field
 * parsing, and the import dispatcher. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <zlib.h>

#include "data/import_internal.h"
#include "data/records.h"
#include "runtime/fileio.h"

void mb_records_free(mb_records *r) {
  if (!r)
    return;
  free(r->source);
  free(r->rec);
  free(r->text);
  memset(r, 0, sizeof *r);
}

int mb_records_init(mb_records *r, const char *dataset, const char *split, const char *source) {
  memset(r, 0, sizeof *r);
  snprintf(r->dataset, sizeof r->dataset, "%s", dataset);
  snprintf(r->split, sizeof r->split, "%s", split);
  r->source = strdup(source);
  if (!r->source)
    return MB_ERR(MB_ENOMEM, "out of memory");
  return MB_OK;
}

int mb_records_push(mb_records *r, int64_t id, int32_t label, int32_t rating, int64_t line, const char *text,
                    size_t len) {
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 1024;
    mb_record *p = realloc(r->rec, cap * sizeof *p);
    if (!p)
      return MB_ERR(MB_ENOMEM, "out of memory for %zu records", cap);
    r->rec = p;
    r->cap = cap;
  }
  if (r->text_len + len + 1 > r->text_cap) {
    size_t cap = r->text_cap ? r->text_cap : 1 << 20;
    while (cap < r->text_len + len + 1)
      cap *= 2;
    char *p = realloc(r->text, cap);
    if (!p)
      return MB_ERR(MB_ENOMEM, "out of memory for %zu bytes of text", cap);
    r->text = p;
    r->text_cap = cap;
  }
  memcpy(r->text + r->text_len, text, len);
  r->text[r->text_len + len] = 0;
  mb_record *rec = &r->rec[r->n++];
  rec->id = id;
  rec->label = label;
  rec->rating = rating;
  rec->line = line;
  rec->text_off = r->text_len;
  rec->text_len = len;
  r->text_len += len + 1;
  r->label_count[label]++;
  return MB_OK;
}

int mb_read_file_maybe_gz(const char *path, char **buf, size_t *len) {
  *buf = NULL;
  *len = 0;
  struct stat st;
  if (stat(path, &st) != 0)
    return MB_ERR(errno == ENOENT ? MB_ENOTFOUND : MB_EIO, "%s: %s", path, strerror(errno));
  if (!S_ISREG(st.st_mode))
    return MB_ERR(MB_EIO, "%s: not a regular file", path);
  gzFile f = gzopen(path, "rb");
  if (!f)
    return MB_ERR(MB_EIO, "%s: cannot open: %s", path, strerror(errno ? errno : ENOMEM));
  gzbuffer(f, 1 << 18);
  size_t cap = (size_t)st.st_size * 3 + (1 << 16), n = 0; /* a guess; grows as needed */
  char *b = malloc(cap);
  if (!b) {
    gzclose_r(f);
    return MB_ERR(MB_ENOMEM, "%s: out of memory", path);
  }
  for (;;) {
    if (cap - n < (1 << 20) + 1) {
      char *p = realloc(b, cap * 2);
      if (!p) {
        free(b);
        gzclose_r(f);
        return MB_ERR(MB_ENOMEM, "%s: out of memory", path);
      }
      b = p;
      cap *= 2;
    }
    int got = gzread(f, b + n, 1 << 20);
    if (got < 0) {
      int zerr = 0;
      const char *msg = gzerror(f, &zerr);
      int rc = MB_ERR(MB_EFORMAT, "%s: corrupt gzip data after %zu bytes (%s)", path, n, msg);
      free(b);
      gzclose_r(f);
      return rc;
    }
    if (got == 0)
      break;
    n += (size_t)got;
  }
  /* zlib reports a stream cut short only here, not as a read error. */
  int zerr = 0;
  const char *msg = gzerror(f, &zerr);
  if (zerr != Z_OK) {
    int rc = MB_ERR(MB_EFORMAT, "%s: truncated or corrupt gzip file after %zu bytes (%s)", path, n, msg);
    free(b);
    gzclose_r(f);
    return rc;
  }
  int crc = gzclose_r(f);
  if (crc != Z_OK) {
    free(b);
    return MB_ERR(MB_EFORMAT, "%s: truncated or corrupt gzip file (zlib status %d)", path, crc);
  }
  b[n] = 0;
  *buf = b;
  *len = n;
  return MB_OK;
}

int mb_utf8_valid(const char *str, size_t n, size_t *bad) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    if (c >= 0x01 && c < 0x80) {
      i++;
      continue;
    }
    size_t need;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF)
      need = 1;
    else if (c == 0xE0)
      need = 2, lo = 0xA0;
    else if (c == 0xED)
      need = 2, hi = 0x9F; /* no UTF-16 surrogates */
    else if (c >= 0xE1 && c <= 0xEF)
      need = 2;
    else if (c == 0xF0)
      need = 3, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3)
      need = 3;
    else if (c == 0xF4)
      need = 3, hi = 0x8F;
    else
      goto invalid; /* NUL, a continuation byte, C0/C1, F5..FF */
    if (need > n - i - 1)
      goto invalid; /* cut off at the end */
    if (s[i + 1] < lo || s[i + 1] > hi)
      goto invalid;
    for (size_t k = 2; k <= need; k++)
      if (s[i + k] < 0x80 || s[i + k] > 0xBF)
        goto invalid;
    i += need + 1;
  }
  return 1;
invalid:
  if (bad)
    *bad = i;
  return 0;
}

/* `word` in s as a word of its own (any case): no letter just before or
 * after it, so "ratings_test.txt", "imdb-train.tsv" and "TEST.tsv" name
 * theirs and "latest.tsv" or "contest.txt" name none. */
static int has_word(const char *s, const char *word) {
  const size_t wl = strlen(word);
  for (const char *p = s; *p; p++) {
    if (strncasecmp(p, word, wl) != 0)
      continue;
    const int before = p > s && isalpha((unsigned char)p[-1]), after = isalpha((unsigned char)p[wl]);
    if (!before && !after)
      return 1;
  }
  return 0;
}

const char *mb_split_from_name(const char *path) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  int tr = has_word(base, "train"), te = has_word(base, "test");
  if (tr == te)
    return NULL;
  return tr ? "train" : "test";
}

const char *mb_dataset_of_header(const char *line, size_t n) {
  static const char imdb[] = "id\trating\tlabel\ttext", nsmc[] = "id\tdocument\tlabel";
  if (n == sizeof imdb - 1 && memcmp(line, imdb, n) == 0)
    return "imdb";
  if (n == sizeof nsmc - 1 && memcmp(line, nsmc, n) == 0)
    return "nsmc";
  return NULL;
}

const char *mb_dataset_from_content(const char *path) {
  if (mb_is_dir(path))
    return "imdb"; /* an aclImdb tree */
  gzFile f = gzopen(path, "rb"); /* plain files read through */
  if (!f)
    return NULL;
  char line[256];
  const char *got = gzgets(f, line, sizeof line) ? line : NULL;
  gzclose(f);
  if (!got)
    return NULL;
  if (memcmp(got, "\xEF\xBB\xBF", 3) == 0)
    got += 3;
  size_t n = strlen(got);
  while (n > 0 && (got[n - 1] == '\n' || got[n - 1] == '\r'))
    n--;
  return mb_dataset_of_header(got, n);
}

int mb_resolve_split(const char *path, const char *split, char out[16]) {
  if (!split) {
    split = mb_split_from_name(path);
    if (!split && !mb_file_exists(path)) /* the first thing wrong with it */
      return MB_ERR(MB_ENOTFOUND, "%s: no such file or directory", path);
    if (!split)
      return MB_ERR(MB_EINVAL, "%s: cannot tell the split from the file name; give it (train or test)", path);
  }
  if (strcmp(split, "train") != 0 && strcmp(split, "test") != 0)
    return MB_ERR(MB_EINVAL, "split '%s': expected train or test", split);
  snprintf(out, 16, "%s", split);
  return MB_OK;
}

int mb_parse_u64_field(const char *s, size_t n, int64_t *out) {
  if (n == 0 || n > 18)
    return MB_EFORMAT; /* 18 digits always fit in int64 */
  int64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return MB_EFORMAT;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return MB_OK;
}

int mb_next_line(mb_line_iter *it, const char **start, size_t *n) {
  if (it->pos == 0 && it->len >= 3 && memcmp(it->buf, "\xEF\xBB\xBF", 3) == 0)
    it->pos = 3; /* a UTF-8 byte order mark (Windows editors write one): not part of the header */
  if (it->pos >= it->len)
    return 0;
  const char *b = it->buf + it->pos;
  /* blank lines at the very end of the file (an editor's) end it; a blank
   * line between records is still a line with too few fields */
  size_t rest = it->pos;
  while (rest < it->len && (it->buf[rest] == '\n' || it->buf[rest] == '\r' || it->buf[rest] == ' ' ||
                            it->buf[rest] == '\t'))
    rest++;
  if (rest == it->len && (b[0] == '\n' || b[0] == '\r'))
    return 0;
  const char *nl = memchr(b, '\n', it->len - it->pos);
  size_t m = nl ? (size_t)(nl - b) : it->len - it->pos;
  it->pos += m + (nl ? 1 : 0);
  if (m > 0 && b[m - 1] == '\r')
    m--; /* CRLF files read like LF files (pandas does the same) */
  it->lineno++;
  *start = b;
  *n = m;
  return 1;
}

void mb_header_preview(const char *s, size_t n, char *out, size_t cap) {
  size_t k = 0;
  out[k++] = '\'';
  for (size_t i = 0; i < n; i++) {
    const unsigned char c = (unsigned char)s[i];
    /* room for the longest piece (<TAB>), the closing quote and the NUL,
     * checked before every byte: any bytes, valid UTF-8 or not */
    if (k + 5 + 2 > cap)
      break;
    if (c == '\t') {
      memcpy(out + k, "<TAB>", 5);
      k += 5;
    } else {
      out[k++] = c < 0x20 ? ' ' : (char)c;
    }
  }
  /* a cut character's lead and continuation bytes are taken back out */
  size_t j = k;
  while (j > 1 && ((unsigned char)out[j - 1] & 0xC0) == 0x80)
    j--;
  if (j > 1 && ((unsigned char)out[j - 1] & 0x80)) {
    const unsigned char lead = (unsigned char)out[j - 1];
    const size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (k - (j - 1) < want)
      k = j - 1;
  }
  out[k++] = '\'';
  out[k] = 0;
}

void mb_field_preview(const char *s, size_t n, char out[64]) {
  size_t m = n > 40 ? 40 : n;
  while (m > 0 && m < n && ((unsigned char)s[m] & 0xC0) == 0x80)
    m--; /* do not cut a character in half */
  size_t k = 0;
  out[k++] = '\'';
  for (size_t i = 0; i < m; i++) {
    char c = s[i];
    out[k++] = (c == '\t' || c == '\0') ? ' ' : c;
  }
  out[k++] = '\'';
  if (m < n) {
    memcpy(out + k, "...", 3);
    k += 3;
  }
  out[k] = 0;
}

static int import_any(const char *dataset, const char *input, const char *split, mb_records *out) {
  if (strcmp(dataset, "imdb") == 0) {
    struct stat st;
    if (stat(input, &st) == 0 && S_ISDIR(st.st_mode)) {
      if (!split)
        return MB_ERR(MB_EINVAL, "%s: an aclImdb tree holds both splits; give the split (train or test)", input);
      return mb_import_imdb_tree(input, split, out);
    }
    return mb_import_imdb_tsv(input, split, out);
  }
  if (strcmp(dataset, "nsmc") == 0)
    return mb_import_nsmc_tsv(input, split, out);
  return MB_ERR(MB_EINVAL, "unknown data set '%s' (expected imdb or nsmc)", dataset);
}

int mb_import(const char *dataset, const char *input, const char *split, mb_records *out) {
  memset(out, 0, sizeof *out);
  MB_TRY(import_any(dataset, input, split, out));
  if (out->n == 0) { /* said here, not later as an empty loader */
    mb_records_free(out);
    if (mb_is_dir(input))
      return MB_ERR(MB_EFORMAT, "%s: no examples (no reviews in %s/neg and %s/pos)", input, split, split);
    return MB_ERR(MB_EFORMAT, "%s: no examples (the file holds only its header)", input);
  }
  return MB_OK;
}
