/* import_imdb.c: IMDB (Maas et al. 2011) from its TSV or from the aclImdb tree.
 *
 * TSV: header `id<TAB>rating<TAB>label<TAB>text`, one review per line, no
 * quoting at all (texts contain '"'); the text is the fourth field verbatim,
 * `<br />` included. The tree: <root>/<split>/{neg,pos}/<id>_<rating>.txt,
 * label from the folder; tabs, CR and LF in a review become one space each
 * (what the TSV holds) and the records come sorted by (label, id), the TSV's
 * order, so both forms of the same data give identical records.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/import_internal.h"
#include "data/records.h"

int mb_import_imdb_tsv(const char *path, const char *split, mb_records *out) {
  memset(out, 0, sizeof *out);
  char sp[16];
  MB_TRY(mb_resolve_split(path, split, sp));
  char *buf = NULL;
  size_t len = 0;
  MB_TRY(mb_read_file_maybe_gz(path, &buf, &len));
  int rc = mb_records_init(out, "imdb", sp, path);
  mb_line_iter it = {buf, len, 0, 0};
  const char *line;
  size_t n;
  char pv[64];
  if (rc != MB_OK)
    goto done;
  if (!mb_next_line(&it, &line, &n)) {
    rc = MB_ERR(MB_EFORMAT, "%s: empty file (expected the header '%s')", path, "id<TAB>rating<TAB>label<TAB>text");
    goto done;
  }
  const char *header_of = mb_dataset_of_header(line, n);
  if (!header_of || strcmp(header_of, "imdb") != 0) {
    char hv[160];
    mb_header_preview(line, n, hv, sizeof hv);
    const int other = header_of && strcmp(header_of, "nsmc") == 0;
    rc = MB_ERR(MB_EFORMAT, "%s: line 1: expected the header 'id<TAB>rating<TAB>label<TAB>text', found %s%s", path,
                hv, other ? " (an NSMC file: data.dataset / --dataset nsmc)" : "");
    goto done;
  }
  while (mb_next_line(&it, &line, &n)) {
    const char *f[4];
    size_t fl[4];
    int nf = 0;
    const char *p = line, *end = line + n;
    for (;;) {
      const char *tab = memchr(p, '\t', (size_t)(end - p));
      const char *fe = tab ? tab : end;
      if (nf < 4) {
        f[nf] = p;
        fl[nf] = (size_t)(fe - p);
      }
      nf++;
      if (!tab)
        break;
      p = tab + 1;
    }
    if (nf != 4) {
      rc = MB_ERR(MB_EFORMAT, "%s: line %lld: expected 4 tab-separated fields (id, rating, label, text), found %d",
                  path, (long long)it.lineno, nf);
      goto done;
    }
    int64_t id, rating, label;
    if (mb_parse_u64_field(f[0], fl[0], &id) != MB_OK) {
      mb_field_preview(f[0], fl[0], pv);
      rc = MB_ERR(MB_EFORMAT, "%s: line %lld: field 'id': expected a non-negative integer, found %s", path,
                  (long long)it.lineno, pv);
      goto done;
    }
    if (mb_parse_u64_field(f[1], fl[1], &rating) != MB_OK || rating < 1 || rating > 10) {
      mb_field_preview(f[1], fl[1], pv);
      rc = MB_ERR(MB_EFORMAT, "%s: line %lld: field 'rating': expected an integer 1..10, found %s", path,
                  (long long)it.lineno, pv);
      goto done;
    }
    if (mb_parse_u64_field(f[2], fl[2], &label) != MB_OK || fl[2] != 1 || label > 1) {
      mb_field_preview(f[2], fl[2], pv);
      rc = MB_ERR(MB_EFORMAT, "%s: line %lld: field 'label': expected 0 or 1, found %s", path, (long long)it.lineno,
                  pv);
      goto done;
    }
    size_t bad;
    if (!mb_utf8_valid(f[3], fl[3], &bad)) {
      rc = MB_ERR(MB_EFORMAT, "%s: line %lld: field 'text': invalid UTF-8 at byte %zu of the text (byte 0x%02x)",
                  path, (long long)it.lineno, bad, (unsigned char)f[3][bad]);
      goto done;
    }
    rc = mb_records_push(out, id, (int32_t)label, (int32_t)rating, it.lineno, f[3], fl[3]);
    if (rc != MB_OK)
      goto done;
  }
done:
  free(buf);
  if (rc != MB_OK)
    mb_records_free(out);
  return rc;
}

/* ---- the aclImdb tree ---------------------------------------------------- */

typedef struct {
  int64_t id, rating;
  char *name;
} tree_entry;

static int cmp_entry_id(const void *a, const void *b) {
  const tree_entry *x = a, *y = b;
  return (x->id > y->id) - (x->id < y->id);
}

/* "<id>_<rating>.txt" -> id, rating; MB_EFORMAT otherwise. */
static int parse_review_name(const char *name, int64_t *id, int64_t *rating) {
  const char *us = strchr(name, '_');
  const char *dot = strrchr(name, '.');
  if (!us || !dot || dot < us || strcmp(dot, ".txt") != 0)
    return MB_EFORMAT;
  if (mb_parse_u64_field(name, (size_t)(us - name), id) != MB_OK)
    return MB_EFORMAT;
  if (mb_parse_u64_field(us + 1, (size_t)(dot - us - 1), rating) != MB_OK || *rating < 1 || *rating > 10)
    return MB_EFORMAT;
  return MB_OK;
}

static void free_entries(tree_entry *e, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(e[i].name);
  free(e);
}

static int list_label_dir(const char *dir, tree_entry **out, size_t *count) {
  *out = NULL;
  *count = 0;
  DIR *d = opendir(dir);
  if (!d)
    return MB_ERR(errno == ENOENT ? MB_ENOTFOUND : MB_EIO, "%s: %s", dir, strerror(errno));
  tree_entry *e = NULL;
  size_t n = 0, cap = 0;
  int rc = MB_OK;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.')
      continue; /* ".", "..", and hidden files such as .DS_Store */
    int64_t id, rating;
    if (parse_review_name(de->d_name, &id, &rating) != MB_OK) {
      rc = MB_ERR(MB_EFORMAT, "%s/%s: expected review files named <id>_<rating>.txt (rating 1..10)", dir, de->d_name);
      break;
    }
    if (n == cap) {
      cap = cap ? cap * 2 : 4096;
      tree_entry *p = realloc(e, cap * sizeof *p);
      if (!p) {
        rc = MB_ERR(MB_ENOMEM, "out of memory listing %s", dir);
        break;
      }
      e = p;
    }
    e[n].id = id;
    e[n].rating = rating;
    e[n].name = strdup(de->d_name);
    if (!e[n].name) {
      rc = MB_ERR(MB_ENOMEM, "out of memory listing %s", dir);
      break;
    }
    n++;
  }
  closedir(d);
  if (rc != MB_OK) {
    free_entries(e, n);
    return rc;
  }
  if (n > 1) /* an empty folder has no array at all */
    qsort(e, n, sizeof *e, cmp_entry_id);
  for (size_t i = 1; i < n; i++) {
    if (e[i].id == e[i - 1].id) {
      rc = MB_ERR(MB_EFORMAT, "%s: two reviews with id %lld (%s and %s)", dir, (long long)e[i].id, e[i - 1].name,
                  e[i].name);
      free_entries(e, n);
      return rc;
    }
  }
  *out = e;
  *count = n;
  return MB_OK;
}

static int read_review(const char *path, char **text, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return MB_ERR(MB_EIO, "%s: %s", path, strerror(errno));
  size_t cap = 8192, n = 0;
  char *b = malloc(cap);
  int rc = MB_OK;
  while (b) {
    if (n == cap) {
      char *p = realloc(b, cap * 2);
      if (!p) {
        free(b);
        b = NULL;
        break;
      }
      b = p;
      cap *= 2;
    }
    size_t got = fread(b + n, 1, cap - n, f);
    n += got;
    if (got == 0)
      break;
  }
  if (!b)
    rc = MB_ERR(MB_ENOMEM, "%s: out of memory", path);
  else if (ferror(f))
    rc = MB_ERR(MB_EIO, "%s: read error", path);
  fclose(f);
  if (rc != MB_OK) {
    free(b);
    return rc;
  }
  for (size_t i = 0; i < n; i++)
    if (b[i] == '\t' || b[i] == '\r' || b[i] == '\n')
      b[i] = ' ';
  *text = b;
  *len = n;
  return MB_OK;
}

int mb_import_imdb_tree(const char *root, const char *split, mb_records *out) {
  memset(out, 0, sizeof *out);
  if (!split || (strcmp(split, "train") != 0 && strcmp(split, "test") != 0))
    return MB_ERR(MB_EINVAL, "%s: split '%s': expected train or test", root, split ? split : "(none)");
  MB_TRY(mb_records_init(out, "imdb", split, root));
  static const char *const label_dirs[2] = {"neg", "pos"};
  int rc = MB_OK;
  for (int label = 0; label < 2 && rc == MB_OK; label++) {
    size_t plen = strlen(root) + strlen(split) + 64;
    char *dir = malloc(plen);
    if (!dir) {
      rc = MB_ERR(MB_ENOMEM, "out of memory");
      break;
    }
    snprintf(dir, plen, "%s/%s/%s", root, split, label_dirs[label]);
    tree_entry *e = NULL;
    size_t n = 0;
    rc = list_label_dir(dir, &e, &n);
    for (size_t i = 0; i < n && rc == MB_OK; i++) {
      size_t flen = strlen(dir) + strlen(e[i].name) + 2;
      char *file = malloc(flen);
      if (!file) {
        rc = MB_ERR(MB_ENOMEM, "out of memory");
        break;
      }
      snprintf(file, flen, "%s/%s", dir, e[i].name);
      char *text = NULL;
      size_t tl = 0;
      rc = read_review(file, &text, &tl);
      size_t bad;
      if (rc == MB_OK && !mb_utf8_valid(text, tl, &bad))
        rc = MB_ERR(MB_EFORMAT, "%s: invalid UTF-8 at byte %zu (byte 0x%02x)", file, bad, (unsigned char)text[bad]);
      if (rc == MB_OK)
        rc = mb_records_push(out, e[i].id, label, (int32_t)e[i].rating, 0, text, tl);
      free(text);
      free(file);
    }
    free_entries(e, n);
    free(dir);
  }
  if (rc != MB_OK)
    mb_records_free(out);
  return rc;
}
