/* tokenizer_impl.h: what WordPiece (wordpiece.c) and byte-level BPE (bpe.c)
 * share behind data/tokenizer.h: the tokenizer object, an open-addressing
 * string -> id map over a vocabulary, UTF-8 helpers, per-thread scratch
 * buffers, and the added-token matcher (leftmost-longest, as the Rust
 * `tokenizers` crate's aho-corasick split does). Private to data/.
 */
#ifndef MB_DATA_TOKENIZER_IMPL_H
#define MB_DATA_TOKENIZER_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"

/* ---- string -> id map ------------------------------------------------- */

typedef struct {
  uint64_t hash;
  uint32_t off, len; /* key bytes in keys[off .. off+len) */
  int32_t id;        /* -1: empty slot */
  int32_t pad_;
} mb_vmap_slot;

typedef struct {
  mb_vmap_slot *slots;
  size_t mask; /* capacity - 1, capacity a power of two */
  size_t count;
  char *keys;
  size_t keys_len, keys_cap;
} mb_vmap;

#define MB_FNV_BASIS 0xcbf29ce484222325ull
#define MB_FNV_PRIME 0x100000001b3ull

static inline uint64_t mb_fnv1a(uint64_t h, const void *p, size_t n) {
  const unsigned char *s = (const unsigned char *)p;
  for (size_t i = 0; i < n; i++) {
    h ^= s[i];
    h *= MB_FNV_PRIME;
  }
  return h;
}

int mb_vmap_init(mb_vmap *m, size_t expected) MB_NODISCARD;
void mb_vmap_free(mb_vmap *m);
/* Insert; if the key is already present, *prev_id gets its id and nothing
 * changes (returns MB_OK either way; *prev_id = -1 when it was new). */
int mb_vmap_put(mb_vmap *m, const char *key, size_t n, int32_t id, int32_t *prev_id) MB_NODISCARD;
/* Id of prefix+key (prefix may be empty), -1 if absent. prefix_state is
 * mb_fnv1a(MB_FNV_BASIS, prefix, nprefix), precomputed by the caller. */
int32_t mb_vmap_get2(const mb_vmap *m, uint64_t prefix_state, const char *prefix, size_t nprefix, const char *key,
                     size_t n);
/* Same, with the FNV-1a hash of prefix+key already computed. */
static inline int32_t mb_vmap_get_hashed(const mb_vmap *m, uint64_t h, const char *prefix, size_t nprefix,
                                         const char *key, size_t n) {
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
static inline int32_t mb_vmap_get(const mb_vmap *m, const char *key, size_t n) {
  return mb_vmap_get2(m, MB_FNV_BASIS, "", 0, key, n);
}

/* ---- UTF-8 ------------------------------------------------------------- */

/* Offset of the first byte that is not part of valid UTF-8 (overlongs,
 * surrogates and code points past U+10FFFF are invalid), or n. */
size_t mb_utf8_invalid_at(const char *s, size_t n);
/* Decode one code point from valid UTF-8 at s[*i], advancing *i. */
static inline int32_t mb_utf8_next(const unsigned char *s, size_t *i) {
  unsigned c = s[*i];
  if (c < 0x80) {
    (*i) += 1;
    return (int32_t)c;
  }
  if (c < 0xE0) {
    int32_t cp = (int32_t)(((c & 0x1Fu) << 6) | (s[*i + 1] & 0x3Fu));
    (*i) += 2;
    return cp;
  }
  if (c < 0xF0) {
    int32_t cp = (int32_t)(((c & 0x0Fu) << 12) | ((s[*i + 1] & 0x3Fu) << 6) | (s[*i + 2] & 0x3Fu));
    (*i) += 3;
    return cp;
  }
  int32_t cp = (int32_t)(((c & 0x07u) << 18) | ((s[*i + 1] & 0x3Fu) << 12) | ((s[*i + 2] & 0x3Fu) << 6) |
                         (s[*i + 3] & 0x3Fu));
  (*i) += 4;
  return cp;
}
/* Encode cp into out (4 bytes room); returns the byte count. */
static inline int mb_utf8_put(int32_t cp, char *out) {
  uint32_t c = (uint32_t)cp;
  if (c < 0x80) {
    out[0] = (char)c;
    return 1;
  }
  if (c < 0x800) {
    out[0] = (char)(0xC0 | (c >> 6));
    out[1] = (char)(0x80 | (c & 0x3F));
    return 2;
  }
  if (c < 0x10000) {
    out[0] = (char)(0xE0 | (c >> 12));
    out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[2] = (char)(0x80 | (c & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | (c >> 18));
  out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
  out[3] = (char)(0x80 | (c & 0x3F));
  return 4;
}

/* ---- per-thread scratch --------------------------------------------- */

/* Buffers that live as long as the thread and only grow, so encode does
 * not allocate per call once warm. Freed when the thread exits. */
typedef struct {
  char *text; /* normalized text (BPE: NFC output) */
  size_t text_cap;
  int32_t *cps; /* code points (NFC work area) */
  size_t cps_cap;
  int32_t *sym; /* BPE symbols of one word and their links */
  size_t sym_cap;
  void *match_data; /* pcre2_match_data_8 *, owned by bpe.c */
  void (*free_match_data)(void *);
  void *bpe_cache; /* bpe.c's word cache, tagged with its tokenizer's serial */
} mb_tok_scratch;

mb_tok_scratch *mb_tok_scratch_get(void); /* NULL only when out of memory */
int mb_tok_reserve(void **p, size_t *cap, size_t need, size_t elem) MB_NODISCARD;

/* ---- added tokens ------------------------------------------------------ */

typedef struct {
  char *content;
  size_t len;
  int32_t id;
  int special;
} mb_added_token;

typedef struct {
  int32_t child, sibling; /* node indices, -1 none */
  int32_t tok;            /* token ending here (index into tok), -1 none */
  uint8_t byte;
} mb_added_node;

typedef struct {
  mb_added_token *tok; /* sorted by descending length */
  size_t n;
  uint8_t first[256]; /* 1 when some token starts with this byte */
  mb_added_node *trie; /* byte trie over the contents; node 0 is the root */
  size_t ntrie;
} mb_added_set;

/* Leftmost-longest match at or after `from`: returns the start (or n when
 * none) and sets *which. */
size_t mb_added_find(const mb_added_set *a, const char *s, size_t n, size_t from, size_t *which);
int mb_added_add(mb_added_set *a, const char *content, size_t len, int32_t id, int special) MB_NODISCARD;
/* Sort and build the trie; call once after the last mb_added_add. */
int mb_added_finish(mb_added_set *a) MB_NODISCARD;
void mb_added_free(mb_added_set *a);

/* ---- id output with a limit ------------------------------------------ */

static inline int mb_ids_push(mb_ids *v, int32_t id) {
  if (v->n == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 256;
    int32_t *p = (int32_t *)realloc(v->ids, cap * sizeof(int32_t));
    if (!p)
      return MB_ERR(MB_ENOMEM, "tokenizer: out of memory growing the id buffer to %zu ids", cap);
    v->ids = p;
    v->cap = cap;
  }
  v->ids[v->n++] = id;
  return MB_OK;
}

/* ---- the two implementations ------------------------------------------- */

typedef struct mb_wordpiece mb_wordpiece;
typedef struct mb_bpe mb_bpe;

struct mb_tokenizer {
  mb_tokenizer_kind kind;
  char name[48];
  char sha256[65];
  int32_t vocab_size;
  mb_special_ids special;
  mb_wordpiece *wp;
  mb_bpe *bpe;
};

int mb_wordpiece_load(const char *path, const mb_tokenizer_options *opt, mb_tokenizer *t) MB_NODISCARD;
/* The same from a vocab.txt's bytes (data: malloc'd, taken over and freed);
 * path names it in messages and, with lowercase -1, decides the casing. */
int mb_wordpiece_load_buffer(const char *path, char *data, size_t size, const mb_tokenizer_options *opt,
                             mb_tokenizer *t) MB_NODISCARD;
/* A tokenizer.json whose model is WordPiece (BertNormalizer,
 * BertPreTokenizer: what transformers saves for BERT): *is_wordpiece 0 and
 * nothing loaded for any other model (byte-level BPE). */
int mb_wordpiece_load_json(const char *path, mb_tokenizer *t, int *is_wordpiece) MB_NODISCARD;
void mb_wordpiece_free(mb_wordpiece *wp);
/* Append the ids of text (no special tokens) to out, stopping at `limit`
 * ids in out. */
int mb_wordpiece_encode(const mb_wordpiece *wp, const char *text, size_t len, size_t limit, mb_ids *out) MB_NODISCARD;
int mb_wordpiece_decode(const mb_wordpiece *wp, const int32_t *ids, size_t n, char **out) MB_NODISCARD;

int mb_bpe_load(const char *path, mb_tokenizer *t) MB_NODISCARD;
void mb_bpe_free(mb_bpe *b);
int mb_bpe_encode(const mb_bpe *b, const char *text, size_t len, size_t limit, mb_ids *out) MB_NODISCARD;
int mb_bpe_decode(const mb_bpe *b, const int32_t *ids, size_t n, char **out) MB_NODISCARD;
/* For tests: the number of pieces the ByteLevel regex alone cuts s into. */
int mb_bpe_count_pretokens(const mb_bpe *b, const char *s, size_t n, size_t *count) MB_NODISCARD;
/* For tests: piece ends of ASCII text by the hand-written path or PCRE2. */
int mb_bpe_debug_split(const mb_bpe *b, const char *s, size_t n, int ascii, size_t *ends, size_t cap,
                       size_t *count) MB_NODISCARD;

#endif
