/* records.h: labelled reviews in memory, and the importers that read them.
 *
 * An importer turns one split of a data set into mb_records: for every
 * example its id, label (0 = negative, 1 = positive), rating where the data
 * set has one, where it came from, and its UTF-8 text (exactly the string the
 * reference Python pipeline hands its tokenizer). Sources:
 *   IMDB  TSV `id rating label text` (header, no quoting), .gz or plain, or
 *         the original aclImdb tree <root>/<split>/{neg,pos}/<id>_<rating>.txt;
 *         both give the same records in the same order: sorted by (label, id).
 *   NSMC  TSV `id document label` (header), .gz or plain, documents that
 *         contain '"' CSV-quoted with doubled quotes (import_nsmc.c says
 *         exactly what text comes out).
 * Malformed input (wrong field count, bad id/label, invalid UTF-8, a broken
 * quote, a truncated .gz) is MB_EFORMAT naming the file and line.
 */
#ifndef MB_DATA_RECORDS_H
#define MB_DATA_RECORDS_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int64_t id;       /* the data set's own id (IMDB: file name number; NSMC: review id) */
  int32_t label;    /* 0 negative, 1 positive */
  int32_t rating;   /* IMDB 1..10; -1 where the data set has none (NSMC) */
  int64_t line;     /* 1-based line in the TSV (the header is line 1); 0 for a tree */
  size_t text_off;  /* into mb_records.text; the text is NUL-terminated there */
  size_t text_len;  /* bytes, without the NUL */
} mb_record;

typedef struct {
  char dataset[16]; /* "imdb" or "nsmc" */
  char split[16];   /* "train" or "test" */
  char *source;     /* the path it was read from (malloc'd) */
  mb_record *rec;
  size_t n, cap;
  char *text; /* all texts, each followed by a NUL */
  size_t text_len, text_cap;
  int64_t label_count[2];
} mb_records;

static inline const char *mb_record_text(const mb_records *r, size_t i) { return r->text + r->rec[i].text_off; }

void mb_records_free(mb_records *r);

/* IMDB from its TSV (path ends .tsv or .tsv.gz; gzip is detected from the
 * bytes, so either works). split: "train"/"test", or NULL to take it from the
 * file name. */
int mb_import_imdb_tsv(const char *path, const char *split, mb_records *out) MB_NODISCARD;
/* IMDB from the aclImdb tree: root holds <split>/neg and <split>/pos. Tabs,
 * CR and LF in a review become spaces (as in the TSV). */
int mb_import_imdb_tree(const char *root, const char *split, mb_records *out) MB_NODISCARD;
/* NSMC from ratings_{train,test}.txt[.gz]. split NULL: from the file name. */
int mb_import_nsmc_tsv(const char *path, const char *split, mb_records *out) MB_NODISCARD;

/* Dispatch on the data set name ("imdb" | "nsmc"); for IMDB a directory is
 * read as an aclImdb tree, a file as the TSV. */
int mb_import(const char *dataset, const char *input, const char *split, mb_records *out) MB_NODISCARD;
/* "train"/"test" from a file name (its last path component), as a word of
 * its own: "ratings_test.txt", "imdb-train.tsv.gz"; NULL if neither or both
 * appear ("latest.tsv" names none). */
const char *mb_split_from_name(const char *path);
/* The data set a file holds, from its header line (gzip or plain; a UTF-8
 * BOM is skipped): "imdb" (id, rating, label, text) or "nsmc" (id,
 * document, label); a directory is an aclImdb tree ("imdb"); NULL when the
 * file cannot be read or its header is neither. */
const char *mb_dataset_from_content(const char *path);

/* Shared helpers (data/import_common.c). */

/* The whole file, gunzipped if it is gzip (zlib reads plain files through);
 * *buf is malloc'd with a NUL after the *len bytes. A truncated or corrupt
 * .gz is MB_EFORMAT naming the file. */
int mb_read_file_maybe_gz(const char *path, char **buf, size_t *len) MB_NODISCARD;
/* Strict UTF-8 (RFC 3629: no overlongs, surrogates, or code points past
 * U+10FFFF; NUL is refused too). 1 if valid; else 0 and *bad = byte offset. */
int mb_utf8_valid(const char *s, size_t n, size_t *bad);

#ifdef __cplusplus
}
#endif
#endif
