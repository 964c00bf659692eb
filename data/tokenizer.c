/* tokenizer.c: the parts of data/tokenizer.h that do not depend on the kind
 * of tokenizer: loading by file kind, names, the vocabulary fingerprint,
 * encode/decode dispatch with special tokens and truncation, plus the shared
 * helpers of tokenizer_impl.h (vocabulary hash map, UTF-8 validation,
 * per-thread scratch, added-token matching).
 */
#include "data/tokenizer_impl.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fileio.h"
#include "runtime/hash.h"

/* ---- vocabulary map ----------------------------------------------------- */

int mb_vmap_init(mb_vmap *m, size_t expected) {
  memset(m, 0, sizeof(*m));
  size_t cap = 64;
  while (cap < expected * 2 + 2)
    cap *= 2;
  m->slots = (mb_vmap_slot *)malloc(cap * sizeof(mb_vmap_slot));
  if (!m->slots)
    return MB_ERR(MB_ENOMEM, "tokenizer: out of memory for a vocabulary of %zu entries", expected);
  for (size_t i = 0; i < cap; i++)
    m->slots[i].id = -1;
  m->mask = cap - 1;
  return MB_OK;
}

void mb_vmap_free(mb_vmap *m) {
  free(m->slots);
  free(m->keys);
  memset(m, 0, sizeof(*m));
}

static int vmap_grow(mb_vmap *m) {
  size_t cap = (m->mask + 1) * 2;
  mb_vmap_slot *s = (mb_vmap_slot *)malloc(cap * sizeof(mb_vmap_slot));
  if (!s)
    return MB_ERR(MB_ENOMEM, "tokenizer: out of memory growing the vocabulary map");
  for (size_t i = 0; i < cap; i++)
    s[i].id = -1;
  for (size_t i = 0; i <= m->mask; i++) {
    if (m->slots[i].id < 0)
      continue;
    size_t j = (size_t)m->slots[i].hash & (cap - 1);
    while (s[j].id >= 0)
      j = (j + 1) & (cap - 1);
    s[j] = m->slots[i];
  }
  free(m->slots);
  m->slots = s;
  m->mask = cap - 1;
  return MB_OK;
}

int mb_vmap_put(mb_vmap *m, const char *key, size_t n, int32_t id, int32_t *prev_id) {
  *prev_id = -1;
  if (n > UINT32_MAX / 2)
    return MB_ERR(MB_EINVAL, "tokenizer: vocabulary entry of %zu bytes is too long", n);
  uint64_t h = mb_fnv1a(MB_FNV_BASIS, key, n);
  size_t j = (size_t)h & m->mask;
  while (m->slots[j].id >= 0) {
    const mb_vmap_slot *s = &m->slots[j];
    if (s->hash == h && s->len == n && memcmp(m->keys + s->off, key, n) == 0) {
      *prev_id = s->id;
      return MB_OK;
    }
    j = (j + 1) & m->mask;
  }
  if (m->keys_len + n + 1 > m->keys_cap) {
    size_t cap = m->keys_cap ? m->keys_cap : 4096;
    while (cap < m->keys_len + n + 1)
      cap *= 2;
    char *k = (char *)realloc(m->keys, cap);
    if (!k)
      return MB_ERR(MB_ENOMEM, "tokenizer: out of memory for vocabulary strings");
    m->keys = k;
    m->keys_cap = cap;
  }
  if (m->keys_len > UINT32_MAX - n - 1)
    return MB_ERR(MB_EINVAL, "tokenizer: vocabulary strings exceed 4 GiB");
  memcpy(m->keys + m->keys_len, key, n);
  m->keys[m->keys_len + n] = 0;
  m->slots[j].hash = h;
  m->slots[j].off = (uint32_t)m->keys_len;
  m->slots[j].len = (uint32_t)n;
  m->slots[j].id = id;
  m->keys_len += n + 1;
  m->count++;
  if (m->count * 2 > m->mask + 1)
    return vmap_grow(m);
  return MB_OK;
}

int32_t mb_vmap_get2(const mb_vmap *m, uint64_t prefix_state, const char *prefix, size_t nprefix, const char *key,
                     size_t n) {
  uint64_t h = mb_fnv1a(prefix_state, key, n);
  size_t j = (size_t)h & m->mask;
  for (;;) {
    const mb_vmap_slot *s = &m->slots[j];
    if (s->id < 0)
      return -1;
    if (s->hash == h && s->len == n + nprefix && memcmp(m->keys + s->off, prefix, nprefix) == 0 &&
        memcmp(m->keys + s->off + nprefix, key, n) == 0)
      return s->id;
    j = (j + 1) & m->mask;
  }
}

/* ---- UTF-8 -------------------------------------------------------------- */

size_t mb_utf8_invalid_at(const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  while (i < n) {
    /* ASCII runs 8 bytes at a time. */
    while (i + 8 <= n) {
      uint64_t w;
      memcpy(&w, s + i, 8);
      if (w & 0x8080808080808080ull)
        break;
      i += 8;
    }
    if (i >= n)
      break;
    unsigned c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t need;
    uint32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
      cp = c & 0x1F;
      min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      cp = c & 0x0F;
      min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      cp = c & 0x07;
      min = 0x10000;
    } else {
      return i;
    }
    for (size_t k = 1; k <= need; k++) {
      if (i + k >= n || (s[i + k] & 0xC0) != 0x80)
        return i;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return i;
    i += need + 1;
  }
  return n;
}

/* ---- per-thread scratch ------------------------------------------------ */

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static _Thread_local mb_tok_scratch *tls_scratch; /* also a root for leak checkers */

static void scratch_free(void *p) {
  mb_tok_scratch *s = (mb_tok_scratch *)p;
  if (!s)
    return;
  if (s->match_data && s->free_match_data)
    s->free_match_data(s->match_data);
  free(s->text);
  free(s->cps);
  free(s->sym);
  free(s->bpe_cache);
  free(s);
}

static void scratch_key_init(void) {
  if (pthread_key_create(&scratch_key, scratch_free) != 0)
    scratch_key = 0;
}

mb_tok_scratch *mb_tok_scratch_get(void) {
  if (tls_scratch)
    return tls_scratch;
  pthread_once(&scratch_once, scratch_key_init);
  mb_tok_scratch *s = (mb_tok_scratch *)calloc(1, sizeof(*s));
  if (!s)
    return NULL;
  tls_scratch = s;
  pthread_setspecific(scratch_key, s);
  return s;
}

int mb_tok_reserve(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap)
    return MB_OK;
  size_t c = *cap ? *cap : 1024;
  while (c < need)
    c *= 2;
  void *q = realloc(*p, c * elem);
  if (!q)
    return MB_ERR(MB_ENOMEM, "tokenizer: out of memory for %zu scratch elements", c);
  *p = q;
  *cap = c;
  return MB_OK;
}

/* ---- added tokens ------------------------------------------------------ */

int mb_added_add(mb_added_set *a, const char *content, size_t len, int32_t id, int special) {
  mb_added_token *t = (mb_added_token *)realloc(a->tok, (a->n + 1) * sizeof(*t));
  if (!t)
    return MB_ERR(MB_ENOMEM, "tokenizer: out of memory for added tokens");
  a->tok = t;
  char *c = (char *)malloc(len + 1);
  if (!c)
    return MB_ERR(MB_ENOMEM, "tokenizer: out of memory for added tokens");
  memcpy(c, content, len);
  c[len] = 0;
  t[a->n].content = c;
  t[a->n].len = len;
  t[a->n].id = id;
  t[a->n].special = special;
  a->n++;
  a->first[(unsigned char)content[0]] = 1;
  return MB_OK;
}

static int added_cmp(const void *x, const void *y) {
  const mb_added_token *a = (const mb_added_token *)x, *b = (const mb_added_token *)y;
  if (a->len != b->len)
    return a->len > b->len ? -1 : 1;
  return a->id < b->id ? -1 : (a->id > b->id);
}

int mb_added_finish(mb_added_set *a) {
  if (a->n > 1)
    qsort(a->tok, a->n, sizeof(*a->tok), added_cmp);
  size_t bytes = 1;
  for (size_t k = 0; k < a->n; k++)
    bytes += a->tok[k].len;
  free(a->trie);
  a->trie = (mb_added_node *)malloc(bytes * sizeof(mb_added_node));
  if (!a->trie)
    return MB_ERR(MB_ENOMEM, "tokenizer: out of memory for added tokens");
  a->trie[0] = (mb_added_node){-1, -1, -1, 0};
  a->ntrie = 1;
  for (size_t k = 0; k < a->n; k++) {
    int32_t node = 0;
    for (size_t i = 0; i < a->tok[k].len; i++) {
      uint8_t b = (uint8_t)a->tok[k].content[i];
      int32_t c = a->trie[node].child;
      while (c >= 0 && a->trie[c].byte != b)
        c = a->trie[c].sibling;
      if (c < 0) {
        c = (int32_t)a->ntrie++;
        a->trie[c] = (mb_added_node){-1, a->trie[node].child, -1, b};
        a->trie[node].child = c;
      }
      node = c;
    }
    if (a->trie[node].tok < 0) /* two tokens with one content: the first (longest-sorted, lowest id) wins */
      a->trie[node].tok = (int32_t)k;
  }
  return MB_OK;
}

void mb_added_free(mb_added_set *a) {
  for (size_t i = 0; i < a->n; i++)
    free(a->tok[i].content);
  free(a->tok);
  free(a->trie);
  memset(a, 0, sizeof(*a));
}

size_t mb_added_find(const mb_added_set *a, const char *s, size_t n, size_t from, size_t *which) {
  if (a->n == 0)
    return n;
  const mb_added_node *t = a->trie;
  for (size_t i = from; i < n; i++) {
    if (!a->first[(unsigned char)s[i]])
      continue;
    /* Walk the trie from i; the deepest token seen is the longest match. */
    int32_t node = 0, best = -1;
    for (size_t j = i; j < n; j++) {
      int32_t c = t[node].child;
      while (c >= 0 && t[c].byte != (uint8_t)s[j])
        c = t[c].sibling;
      if (c < 0)
        break;
      node = c;
      if (t[node].tok >= 0)
        best = t[node].tok;
    }
    if (best >= 0) {
      *which = (size_t)best;
      return i;
    }
  }
  return n;
}

/* ---- the public API ------------------------------------------------------ */

mb_tokenizer_options mb_tokenizer_default_options(void) {
  mb_tokenizer_options o;
  o.lowercase = -1;
  o.strip_accents = -1;
  o.tokenize_chinese_chars = 1;
  return o;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

int mb_tokenizer_load(const char *path, const mb_tokenizer_options *opt, mb_tokenizer **out) {
  *out = NULL;
  if (!path)
    return MB_ERR(MB_EINVAL, "tokenizer: no vocabulary path given");
  mb_tokenizer_options defaults = mb_tokenizer_default_options();
  if (!opt)
    opt = &defaults;
  if (mb_is_dir(path)) { /* a model folder given for its tokenizer: name the file in it */
    const char *files[] = {"tokenizer.json", "vocab.txt"};
    char inside[4200] = "", p[4096];
    for (int i = 0; i < 2 && !inside[0]; i++)
      if (mb_path_join(p, sizeof p, path, files[i]) == MB_OK && mb_file_exists(p))
        snprintf(inside, sizeof inside, " (this one holds %s)", p);
    mb_error_clear();
    return MB_ERR(MB_EINVAL, "%s: is a directory; the tokenizer is a file: vocab.txt (WordPiece) or tokenizer.json "
                             "(BPE)%s",
                  path, inside);
  }
  /* The kind: *.json (or content starting with '{') is a tokenizer.json. */
  FILE *f = fopen(path, "rb");
  if (!f)
    return MB_ERR(MB_EIO, "%s: cannot open the tokenizer file", path);
  int first = ' ';
  while (first == ' ' || first == '\t' || first == '\n' || first == '\r')
    first = fgetc(f);
  fclose(f);
  int is_json = ends_with(path, ".json") || first == '{';

  mb_tokenizer *t = (mb_tokenizer *)calloc(1, sizeof(*t));
  if (!t)
    return MB_ERR(MB_ENOMEM, "%s: out of memory", path);
  t->special = (mb_special_ids){-1, -1, -1, -1, -1, -1, -1};
  int wordpiece_json = 0;
  int rc = is_json ? mb_wordpiece_load_json(path, t, &wordpiece_json) : MB_OK;
  if (rc == MB_OK && !wordpiece_json)
    rc = is_json ? mb_bpe_load(path, t) : mb_wordpiece_load(path, opt, t);
  if (rc == MB_OK) {
    rc = mb_sha256_file_hex(path, t->sha256);
  }
  if (rc != MB_OK) {
    mb_tokenizer_free(t);
    return rc;
  }
  *out = t;
  return MB_OK;
}

void mb_tokenizer_free(mb_tokenizer *t) {
  if (!t)
    return;
  mb_wordpiece_free(t->wp);
  mb_bpe_free(t->bpe);
  free(t);
}

mb_tokenizer_kind mb_tokenizer_kind_of(const mb_tokenizer *t) { return t->kind; }
const char *mb_tokenizer_name(const mb_tokenizer *t) { return t->name; }
const char *mb_tokenizer_vocab_sha256(const mb_tokenizer *t) { return t->sha256; }
int32_t mb_tokenizer_vocab_size(const mb_tokenizer *t) { return t->vocab_size; }
mb_special_ids mb_tokenizer_special_ids(const mb_tokenizer *t) { return t->special; }

void mb_ids_free(mb_ids *v) {
  if (!v)
    return;
  free(v->ids);
  v->ids = NULL;
  v->n = v->cap = 0;
}

int mb_tokenizer_encode(const mb_tokenizer *t, const char *text, size_t len, int add_special, int max_length,
                        mb_ids *out) {
  if (!t || !out || (!text && len))
    return MB_ERR(MB_EINVAL, "tokenizer: encode needs a tokenizer, text and an output buffer");
  out->n = 0;
  if (max_length < 0)
    return MB_ERR(MB_EINVAL, "tokenizer: max_length %d is negative", max_length);
  size_t bad = mb_utf8_invalid_at(text, len);
  if (bad < len)
    return MB_ERR(MB_EINVAL, "tokenizer: invalid UTF-8 at byte offset %zu (byte 0x%02x)", bad,
                  (unsigned)(unsigned char)text[bad]);
  if (t->kind == MB_TOKENIZER_WORDPIECE) {
    int nspecial = add_special ? 2 : 0;
    if (max_length > 0 && max_length < nspecial + 1)
      return MB_ERR(MB_EINVAL, "tokenizer: max_length %d leaves no room for text besides [CLS] and [SEP]",
                    max_length);
    size_t limit = max_length > 0 ? (size_t)(max_length - nspecial) : SIZE_MAX;
    if (add_special)
      MB_TRY(mb_ids_push(out, t->special.cls));
    /* the limit counts ids in out, [CLS] included */
    MB_TRY(mb_wordpiece_encode(t->wp, text, len, limit == SIZE_MAX ? SIZE_MAX : limit + (add_special ? 1 : 0),
                               out));
    if (add_special)
      MB_TRY(mb_ids_push(out, t->special.sep));
    return MB_OK;
  }
  size_t limit = max_length > 0 ? (size_t)max_length : SIZE_MAX;
  return mb_bpe_encode(t->bpe, text, len, limit, out);
}

int mb_tokenizer_decode(const mb_tokenizer *t, const int32_t *ids, size_t n, char **out) {
  *out = NULL;
  if (!t || (!ids && n))
    return MB_ERR(MB_EINVAL, "tokenizer: decode needs a tokenizer and ids");
  for (size_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= t->vocab_size)
      return MB_ERR(MB_EINVAL, "tokenizer: id %d at position %zu is outside the vocabulary [0, %d)", (int)ids[i], i,
                    (int)t->vocab_size);
  if (t->kind == MB_TOKENIZER_WORDPIECE)
    return mb_wordpiece_decode(t->wp, ids, n, out);
  return mb_bpe_decode(t->bpe, ids, n, out);
}
