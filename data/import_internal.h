/* import_internal.h: pieces the IMDB and NSMC importers share (not public). */
#ifndef MB_DATA_IMPORT_INTERNAL_H
#define MB_DATA_IMPORT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "data/records.h"

/* Start an empty record set for (dataset, split, source). */
int mb_records_init(mb_records *r, const char *dataset, const char *split, const char *source);
/* Append a record whose text is copied into the text arena. */
int mb_records_push(mb_records *r, int64_t id, int32_t label, int32_t rating, int64_t line, const char *text,
                    size_t len);

/* Check split is "train" or "test" (or infer it when NULL); writes into out[16]. */
int mb_resolve_split(const char *path, const char *split, char out[16]);

/* A decimal integer field: digits only, no sign or spaces, fits int64. */
int mb_parse_u64_field(const char *s, size_t n, int64_t *out);

/* One line of a text buffer: [start, end) without the LF (and without a CR
 * before it). Returns 0 at the end of the buffer. */
typedef struct {
  const char *buf;
  size_t len, pos;
  int64_t lineno; /* 1-based number of the line just returned */
} mb_line_iter;
int mb_next_line(mb_line_iter *it, const char **start, size_t *n);

/* The data set whose header the line is: "imdb" (id, rating, label, text),
 * "nsmc" (id, document, label), or NULL. */
const char *mb_dataset_of_header(const char *line, size_t n);
/* A header line for an error message: quoted, tabs shown as <TAB>, at
 * most cap bytes with its NUL. */
void mb_header_preview(const char *s, size_t n, char *out, size_t cap);
/* Field text for an error message: at most 40 bytes, cut on a UTF-8 boundary. */
void mb_field_preview(const char *s, size_t n, char out[64]);

#endif
