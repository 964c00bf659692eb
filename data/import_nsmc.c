/* import_nsmc.c: the Naver Sentiment Movie Corpus (e9t/nsmc) TSV.
 *
 * Header `id<TAB>document<TAB>label`. The text we hand the tokenizer is what
 * pandas.read_csv(path, sep='\t') yields for `document` (the reference
 * Python pipeline reads the file that way), verified on every row of both
 * splits by tests/shards (fixture from tools/nsmc_pandas_reference.py):
 *  - a document that starts with '"' is a CSV-quoted field: the outer quotes
 *    go and each '""' inside becomes '"'. In the canonical files (623 train,
 *    233 test rows) the quotes were doubled twice by the original pipeline,
 *    so the text keeps one level of doubled quotes: the field
 *    `"""a ""b""."""` is the text `"a ""b"".`, as pandas gives it.
 *    A quote inside a field that does not start with one is kept as is.
 *  - an empty document (5 in train, 3 in test) is the empty text "". pandas
 *    reads it as NaN (a float, which the tokenizer would reject); we keep the
 *    row with an empty text so counts match the canonical files.
 * A quoted field must close before the end of its line and be followed by
 * the tab; otherwise the line is an error (a field spanning lines is not
 * supported). Blank lines are errors, as are ids that are not integers and
 * labels other than 0/1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/import_internal.h"
#include "data/records.h"

int mb_import_nsmc_tsv(const char *path, const char *split, mb_records *out) {
  memset(out, 0, sizeof *out);
  char sp[16];
  MB_TRY(mb_resolve_split(path, split, sp));
  char *buf = NULL;
  size_t len = 0;
  MB_TRY(mb_read_file_maybe_gz(path, &buf, &len));
  int rc = mb_records_init(out, "nsmc", sp, path);
  mb_line_iter it = {buf, len, 0, 0};
  const char *line;
  size_t n;
  char pv[64];
  char *doc = NULL; /* unquoted document text; a line is never longer than the file */
  if (rc != MB_OK)
    goto done;
  doc = malloc(len + 1);
  if (!doc) {
    rc = MB_ERR(MB_ENOMEM, "%s: out of memory", path);
    goto done;
  }
  if (!mb_next_line(&it, &line, &n)) {
    rc = MB_ERR(MB_EFORMAT, "%s: empty file (expected the header 'id<TAB>document<TAB>label')", path);
    goto done;
  }
  const char *header_of = mb_dataset_of_header(line, n);
  if (!header_of || strcmp(header_of, "nsmc") != 0) {
    char hv[160];
    mb_header_preview(line, n, hv, sizeof hv);
    const int other = header_of && strcmp(header_of, "imdb") == 0;
    rc = MB_ERR(MB_EFORMAT, "%s: line 1: expected the header 'id<TAB>document<TAB>label', found %s%s", path, hv,
                other ? " (an IMDB file: data.dataset / --dataset imdb)" : "");
    goto done;
  }
  while (mb_next_line(&it, &line, &n)) {
    const long long ln = (long long)it.lineno;
    const char *end = line + n;
    const char *tab1 = memchr(line, '\t', n);
    if (!tab1) {
      rc = MB_ERR(MB_EFORMAT, "%s: line %lld: expected 3 tab-separated fields (id, document, label), found 1", path,
                  ln);
      goto done;
    }
    int64_t id;
    if (mb_parse_u64_field(line, (size_t)(tab1 - line), &id) != MB_OK) {
      mb_field_preview(line, (size_t)(tab1 - line), pv);
      rc = MB_ERR(MB_EFORMAT, "%s: line %lld: field 'id': expected a non-negative integer, found %s", path, ln, pv);
      goto done;
    }
    /* The document: quoted or plain. */
    const char *p = tab1 + 1;
    size_t dl = 0;
    const char *after; /* first byte after the document field */
    if (p < end && *p == '"') {
      const char *q = p + 1;
      int closed = 0;
      while (q < end) {
        if (*q == '"') {
          if (q + 1 < end && q[1] == '"') {
            doc[dl++] = '"';
            q += 2;
            continue;
          }
          closed = 1;
          q++;
          break;
        }
        doc[dl++] = *q++;
      }
      if (!closed) {
        rc = MB_ERR(MB_EFORMAT, "%s: line %lld: field 'document': quoted text does not end with '\"' on this line",
                    path, ln);
        goto done;
      }
      if (q < end && *q != '\t') {
        rc = MB_ERR(MB_EFORMAT,
                    "%s: line %lld: field 'document': text after the closing quote (a quote inside a quoted field "
                    "must be doubled)",
                    path, ln);
        goto done;
      }
      after = q;
    } else {
      const char *tab2 = memchr(p, '\t', (size_t)(end - p));
      after = tab2 ? tab2 : end;
      dl = (size_t)(after - p);
      memcpy(doc, p, dl);
    }
    /* The label: exactly one more field. */
    int nf = 2;
    const char *lab = NULL, *lab_end = end;
    if (after < end) {
      nf = 3;
      lab = after + 1;
      const char *extra = memchr(lab, '\t', (size_t)(end - lab));
      if (extra) {
        for (const char *x = extra; x; x = memchr(x + 1, '\t', (size_t)(end - x - 1)))
          nf++;
        lab_end = extra;
      }
    }
    if (nf != 3) {
      rc = MB_ERR(MB_EFORMAT, "%s: line %lld: expected 3 tab-separated fields (id, document, label), found %d", path,
                  ln, nf);
      goto done;
    }
    size_t labn = (size_t)(lab_end - lab);
    if (labn != 1 || (lab[0] != '0' && lab[0] != '1')) {
      mb_field_preview(lab, labn, pv);
      rc = MB_ERR(MB_EFORMAT, "%s: line %lld: field 'label': expected 0 or 1, found %s", path, ln, pv);
      goto done;
    }
    size_t bad;
    if (!mb_utf8_valid(doc, dl, &bad)) {
      rc = MB_ERR(MB_EFORMAT, "%s: line %lld: field 'document': invalid UTF-8 at byte %zu of the text (byte 0x%02x)",
                  path, ln, bad, (unsigned char)doc[bad]);
      goto done;
    }
    rc = mb_records_push(out, id, lab[0] - '0', -1, it.lineno, doc, dl);
    if (rc != MB_OK)
      goto done;
  }
done:
  free(doc);
  free(buf);
  if (rc != MB_OK)
    mb_records_free(out);
  return rc;
}
