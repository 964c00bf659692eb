/* bpe.c: byte-level BPE from a Hugging Face tokenizer.json (GPT-NeoX-20B,
 * the tokenizer of the Mamba models), with exact `tokenizers` parity:
 *   1. added tokens with normalized=false (<|endoftext|>, <|padding|>) are
 *      split out of the raw text, leftmost-longest as the crate's
 *      aho-corasick does;
 *   2. each remaining piece is NFC-normalized (utf8proc), then split on the
 *      normalized=true added tokens (GPT-NeoX's runs of 2..24 spaces), again
 *      leftmost-longest; so "a   b" is "a", "   ", "b" and "b" gets no Ġ;
 *   3. ByteLevel pre-tokenizer (add_prefix_space=false): the GPT-2 regex
 *      (PCRE2, UTF+UCP, JIT) on each piece; whitespace and \p{L}/\p{N} are
 *      spelled out so they match Oniguruma's Unicode tables (unicode_hf.h);
 *   4. bytes -> the GPT-2 byte-to-unicode alphabet, then merges by rank:
 *      always the lowest-ranked pair, leftmost first (as the crate's heap).
 * Decoding maps the alphabet back to bytes and replaces invalid UTF-8 as
 * Rust's String::from_utf8_lossy does.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pthread.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <utf8proc.h>

#include "data/tokenizer_impl.h"
#include "data/unicode_hf.h"

#define BPE_NO_RANK UINT32_MAX

struct mb_bpe {
  mb_vmap vocab;
  const char **id_str; /* id -> token bytes (vocab key or added content), NULL for holes */
  uint32_t *id_len;
  uint8_t *id_special; /* skipped by decode(skip_special_tokens=True) */
  int32_t n_ids;
  int32_t byte_id[256];
  int16_t char_byte[324]; /* byte-level alphabet code point -> byte, -1 if none */
  /* merges: (left id, right id) -> rank and merged id, open addressing */
  uint64_t *pair_key;
  uint32_t *pair_rank;
  int32_t *pair_new;
  size_t pair_mask;
  mb_added_set raw_added, norm_added;
  pcre2_code *re;
  int jit;
  uint32_t serial; /* unique per loaded tokenizer: tags per-thread caches */
};

/* Per-thread cache of word -> ids (direct-mapped; words up to 23 bytes that
 * give at most 6 ids), so frequent words skip the merge loop. */
#define BPE_CACHE_SLOTS 32768
#define BPE_CACHE_KEY 23
#define BPE_CACHE_IDS 6
typedef struct {
  uint32_t serial; /* 0: empty */
  uint8_t klen, nids;
  char key[BPE_CACHE_KEY];
  int32_t ids[BPE_CACHE_IDS];
} bpe_cache_slot;

static atomic_uint bpe_serial_counter;

/* ---- merges map -------------------------------------------------------------- */

static inline size_t pair_hash(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  return (size_t)k;
}

static inline uint32_t pair_lookup(const mb_bpe *b, int32_t l, int32_t r, int32_t *merged) {
  uint64_t k = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
  size_t j = pair_hash(k) & b->pair_mask;
  for (;;) {
    if (b->pair_rank[j] == BPE_NO_RANK)
      return BPE_NO_RANK;
    if (b->pair_key[j] == k) {
      *merged = b->pair_new[j];
      return b->pair_rank[j];
    }
    j = (j + 1) & b->pair_mask;
  }
}

/* ---- the byte-level alphabet -------------------------------------------------- */

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the
 * other 68 bytes to U+0100.. in byte order. */
static int32_t byte_char(int byte) {
  if ((byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || (byte >= 174 && byte <= 255))
    return byte;
  int n = 0;
  for (int b = 0; b < byte; b++)
    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)))
      n++;
  return 256 + n;
}

/* ---- loading -------------------------------------------------------------------- */

static int expect_null_or(json_t *v, int (*ok)(json_t *)) { return !v || json_is_null(v) || ok(v); }
static int is_false(json_t *v) { return json_is_false(v); }
static int is_empty_string(json_t *v) { return json_is_string(v) && json_string_length(v) == 0; }

static int build_regex(mb_bpe *b, const char *path) {
  static const char ws[] = "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
                           "\\x{202F}\\x{205F}\\x{3000}";
  const char *el = mb_uhf_regex_extra_letters(), *en = mb_uhf_regex_extra_numbers();
  size_t cap = 512 + 4 * sizeof(ws) + 2 * strlen(el) + 2 * strlen(en);
  char *pat = (char *)malloc(cap);
  if (!pat)
    return MB_ERR(MB_ENOMEM, "%s: out of memory", path);
  /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
  snprintf(pat, cap,
           "'s|'t|'re|'ve|'m|'ll|'d| ?[\\p{L}%s]+| ?[\\p{N}%s]+| ?[^%s\\p{L}%s\\p{N}%s]+|[%s]+(?![^%s])|[%s]+", el,
           en, ws, el, en, ws, ws, ws);
  int err;
  PCRE2_SIZE erroff;
  b->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &erroff, NULL);
  if (!b->re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    free(pat);
    return MB_ERR(MB_EINTERNAL, "%s: the ByteLevel regex does not compile at offset %zu: %s", path, (size_t)erroff,
                  (const char *)msg);
  }
  free(pat);
  b->jit = pcre2_jit_compile(b->re, PCRE2_JIT_COMPLETE) == 0;
  return MB_OK;
}

static int add_id(mb_bpe *b, int32_t id, const char *s, size_t n, int special, const char *path, const char *where) {
  if (id < 0 || id >= b->n_ids)
    return MB_ERR(MB_EFORMAT, "%s: %s: id %d is out of range", path, where, (int)id);
  b->id_str[id] = s;
  b->id_len[id] = (uint32_t)n;
  b->id_special[id] = (uint8_t)special;
  return MB_OK;
}

static int load_json(mb_bpe *b, json_t *root, const char *path, mb_tokenizer *t) {
  if (!json_is_object(root))
    return MB_ERR(MB_EFORMAT, "%s: the top level is not a JSON object (expected a tokenizer.json)", path);
  json_t *norm = json_object_get(root, "normalizer");
  if (norm && !json_is_null(norm)) {
    const char *type = json_string_value(json_object_get(norm, "type"));
    if (!type || strcmp(type, "NFC") != 0)
      return MB_ERR(MB_EUNSUPPORTED, "%s: normalizer %s is not supported (only NFC or none)", path,
                    type ? type : "(without a type)");
  }
  json_t *pre = json_object_get(root, "pre_tokenizer");
  const char *pre_type = json_string_value(json_object_get(pre, "type"));
  if (!pre_type || strcmp(pre_type, "ByteLevel") != 0)
    return MB_ERR(MB_EUNSUPPORTED, "%s: pre_tokenizer %s is not supported (only ByteLevel)", path,
                  pre_type ? pre_type : "(missing)");
  if (!expect_null_or(json_object_get(pre, "add_prefix_space"), is_false))
    return MB_ERR(MB_EUNSUPPORTED, "%s: pre_tokenizer.add_prefix_space=true is not supported", path);
  json_t *use_regex = json_object_get(pre, "use_regex");
  if (use_regex && !json_is_true(use_regex))
    return MB_ERR(MB_EUNSUPPORTED, "%s: pre_tokenizer.use_regex=false is not supported", path);

  json_t *model = json_object_get(root, "model");
  if (!json_is_object(model))
    return MB_ERR(MB_EFORMAT, "%s: missing object \"model\"", path);
  const char *mtype = json_string_value(json_object_get(model, "type"));
  if (mtype && strcmp(mtype, "BPE") != 0)
    return MB_ERR(MB_EUNSUPPORTED, "%s: model.type %s is not supported here (only BPE)", path, mtype);
  if (!expect_null_or(json_object_get(model, "dropout"), NULL) ||
      !expect_null_or(json_object_get(model, "continuing_subword_prefix"), is_empty_string) ||
      !expect_null_or(json_object_get(model, "end_of_word_suffix"), is_empty_string) ||
      !expect_null_or(json_object_get(model, "byte_fallback"), is_false) ||
      !expect_null_or(json_object_get(model, "ignore_merges"), is_false))
    return MB_ERR(MB_EUNSUPPORTED,
                  "%s: model options dropout/continuing_subword_prefix/end_of_word_suffix/byte_fallback/"
                  "ignore_merges must be null or off",
                  path);
  json_t *vocab = json_object_get(model, "vocab");
  if (!json_is_object(vocab))
    return MB_ERR(MB_EFORMAT, "%s: missing object model.vocab", path);
  json_t *merges = json_object_get(model, "merges");
  if (!json_is_array(merges))
    return MB_ERR(MB_EFORMAT, "%s: missing array model.merges", path);
  json_t *added = json_object_get(root, "added_tokens");
  if (added && !json_is_null(added) && !json_is_array(added))
    return MB_ERR(MB_EFORMAT, "%s: added_tokens is not an array", path);

  /* Ids: the largest over vocab and added tokens. */
  int64_t max_id = -1;
  const char *key;
  json_t *val;
  json_object_foreach(vocab, key, val) {
    if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) > INT32_MAX / 2)
      return MB_ERR(MB_EFORMAT, "%s: model.vocab[\"%.64s\"]: expected a non-negative integer id", path, key);
    if (json_integer_value(val) > max_id)
      max_id = json_integer_value(val);
  }
  size_t nadded = added ? json_array_size(added) : 0;
  for (size_t i = 0; i < nadded; i++) {
    json_t *a = json_array_get(added, i);
    json_t *id = json_object_get(a, "id");
    if (!json_is_object(a) || !json_is_integer(id) || !json_is_string(json_object_get(a, "content")) ||
        json_integer_value(id) < 0 || json_integer_value(id) > INT32_MAX / 2)
      return MB_ERR(MB_EFORMAT, "%s: added_tokens[%zu]: expected an object with an integer id and a content string",
                    path, i);
    if (json_integer_value(id) > max_id)
      max_id = json_integer_value(id);
  }
  if (max_id < 0)
    return MB_ERR(MB_EFORMAT, "%s: model.vocab is empty", path);
  b->n_ids = (int32_t)(max_id + 1);
  b->id_str = (const char **)calloc((size_t)b->n_ids, sizeof(char *));
  b->id_len = (uint32_t *)calloc((size_t)b->n_ids, sizeof(uint32_t));
  b->id_special = (uint8_t *)calloc((size_t)b->n_ids, 1);
  if (!b->id_str || !b->id_len || !b->id_special)
    return MB_ERR(MB_ENOMEM, "%s: out of memory", path);

  MB_TRY(mb_vmap_init(&b->vocab, json_object_size(vocab)));
  json_object_foreach(vocab, key, val) {
    size_t n = strlen(key);
    int32_t prev;
    MB_TRY(mb_vmap_put(&b->vocab, key, n, (int32_t)json_integer_value(val), &prev));
  }
  /* id -> string after all inserts (the key arena may move while growing). */
  for (size_t j = 0; j <= b->vocab.mask; j++) {
    const mb_vmap_slot *s = &b->vocab.slots[j];
    if (s->id < 0)
      continue;
    if (b->id_str[s->id])
      return MB_ERR(MB_EFORMAT, "%s: model.vocab: id %d is given to two tokens", path, (int)s->id);
    MB_TRY(add_id(b, s->id, b->vocab.keys + s->off, s->len, 0, path, "model.vocab"));
  }

  for (int byte = 0; byte < 256; byte++) {
    char u[4];
    int n = mb_utf8_put(byte_char(byte), u);
    b->byte_id[byte] = mb_vmap_get(&b->vocab, u, (size_t)n);
    /* 0xC0, 0xC1 and 0xF5..0xFF never occur in valid UTF-8 (GPT-NeoX's
     * vocabulary lacks them); every other byte needs its token. */
    int never = byte == 0xC0 || byte == 0xC1 || byte >= 0xF5;
    if (b->byte_id[byte] < 0 && !never)
      return MB_ERR(MB_EFORMAT, "%s: model.vocab lacks the byte-level token for byte 0x%02x ('%.*s')", path, byte, n,
                    u);
  }
  for (int i = 0; i < 324; i++)
    b->char_byte[i] = -1;
  for (int byte = 0; byte < 256; byte++)
    b->char_byte[byte_char(byte)] = (int16_t)byte;

  /* Merges, "a b" strings or ["a", "b"] pairs; rank = position. */
  size_t nm = json_array_size(merges);
  size_t cap = 64;
  while (cap < nm * 2 + 2)
    cap *= 2;
  b->pair_key = (uint64_t *)malloc(cap * sizeof(uint64_t));
  b->pair_rank = (uint32_t *)malloc(cap * sizeof(uint32_t));
  b->pair_new = (int32_t *)malloc(cap * sizeof(int32_t));
  if (!b->pair_key || !b->pair_rank || !b->pair_new)
    return MB_ERR(MB_ENOMEM, "%s: out of memory", path);
  b->pair_mask = cap - 1;
  for (size_t j = 0; j < cap; j++)
    b->pair_rank[j] = BPE_NO_RANK;
  char buf[1024];
  for (size_t i = 0; i < nm; i++) {
    json_t *m = json_array_get(merges, i);
    const char *l, *r;
    size_t ln, rn;
    if (json_is_string(m)) {
      const char *s = json_string_value(m);
      const char *sp = strchr(s, ' ');
      if (!sp || strchr(sp + 1, ' '))
        return MB_ERR(MB_EFORMAT, "%s: model.merges[%zu] = \"%.64s\": expected two tokens separated by one space",
                      path, i, s);
      l = s;
      ln = (size_t)(sp - s);
      r = sp + 1;
      rn = strlen(r);
    } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
               json_is_string(json_array_get(m, 1))) {
      l = json_string_value(json_array_get(m, 0));
      ln = json_string_length(json_array_get(m, 0));
      r = json_string_value(json_array_get(m, 1));
      rn = json_string_length(json_array_get(m, 1));
    } else {
      return MB_ERR(MB_EFORMAT, "%s: model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", path, i);
    }
    int32_t lid = mb_vmap_get(&b->vocab, l, ln), rid = mb_vmap_get(&b->vocab, r, rn);
    if (lid < 0 || rid < 0)
      return MB_ERR(MB_EFORMAT, "%s: model.merges[%zu]: token '%.*s' is not in model.vocab", path, i,
                    (int)(lid < 0 ? (ln > 64 ? 64 : ln) : (rn > 64 ? 64 : rn)), lid < 0 ? l : r);
    if (ln + rn > sizeof(buf))
      return MB_ERR(MB_EFORMAT, "%s: model.merges[%zu]: merged token is too long", path, i);
    memcpy(buf, l, ln);
    memcpy(buf + ln, r, rn);
    int32_t nid = mb_vmap_get(&b->vocab, buf, ln + rn);
    if (nid < 0)
      return MB_ERR(MB_EFORMAT, "%s: model.merges[%zu]: the merged token '%.*s' is not in model.vocab", path, i,
                    (int)(ln + rn > 64 ? 64 : ln + rn), buf);
    uint64_t k = ((uint64_t)(uint32_t)lid << 32) | (uint32_t)rid;
    size_t j = pair_hash(k) & b->pair_mask;
    while (b->pair_rank[j] != BPE_NO_RANK && b->pair_key[j] != k)
      j = (j + 1) & b->pair_mask;
    /* A repeated pair keeps its last rank, as the crate's HashMap collect does. */
    b->pair_key[j] = k;
    b->pair_rank[j] = (uint32_t)i;
    b->pair_new[j] = nid;
  }

  /* Added tokens. */
  for (size_t i = 0; i < nadded; i++) {
    json_t *a = json_array_get(added, i);
    const char *content = json_string_value(json_object_get(a, "content"));
    size_t clen = json_string_length(json_object_get(a, "content"));
    int32_t id = (int32_t)json_integer_value(json_object_get(a, "id"));
    char where[64];
    snprintf(where, sizeof(where), "added_tokens[%zu]", i);
    if (clen == 0)
      return MB_ERR(MB_EFORMAT, "%s: %s: empty content", path, where);
    if (json_is_true(json_object_get(a, "lstrip")) || json_is_true(json_object_get(a, "rstrip")) ||
        json_is_true(json_object_get(a, "single_word")))
      return MB_ERR(MB_EUNSUPPORTED, "%s: %s: lstrip/rstrip/single_word are not supported", path, where);
    int special = json_is_true(json_object_get(a, "special"));
    json_t *nz = json_object_get(a, "normalized");
    /* tokenizers' default: normalized = !special */
    int normalized = nz ? json_is_true(nz) : !special;
    mb_added_set *set = normalized ? &b->norm_added : &b->raw_added;
    MB_TRY(mb_added_add(set, content, clen, id, special));
    const mb_added_token *tk = &set->tok[set->n - 1];
    int32_t vid = mb_vmap_get(&b->vocab, content, clen);
    if (vid >= 0 && vid != id)
      return MB_ERR(MB_EFORMAT, "%s: %s: '%.64s' has id %d but model.vocab gives it %d", path, where, content,
                    (int)id, (int)vid);
    MB_TRY(add_id(b, id, tk->content, clen, special, path, where));
  }
  MB_TRY(mb_added_finish(&b->raw_added));
  MB_TRY(mb_added_finish(&b->norm_added));
  /* The set arrays were reallocated while adding: point id_str at their final place. */
  for (int s = 0; s < 2; s++) {
    const mb_added_set *set = s ? &b->norm_added : &b->raw_added;
    for (size_t i = 0; i < set->n; i++)
      b->id_str[set->tok[i].id] = set->tok[i].content;
  }

  MB_TRY(build_regex(b, path));
  b->serial = atomic_fetch_add(&bpe_serial_counter, 1) + 1;
  t->kind = MB_TOKENIZER_BPE;
  t->vocab_size = b->n_ids;
  snprintf(t->name, sizeof(t->name), "bpe");
  /* GPT-NeoX: <|endoftext|> is bos, eos and unk; the reference classifier
   * pads with it too (pad_token_id = eos_token_id). */
  int32_t eot = mb_vmap_get(&b->vocab, "<|endoftext|>", 13);
  t->special.bos = t->special.eos = t->special.unk = t->special.pad = eot;
  return MB_OK;
}

int mb_bpe_load(const char *path, mb_tokenizer *t) {
  json_error_t jerr;
  json_t *root = json_load_file(path, JSON_ALLOW_NUL, &jerr);
  if (!root) {
    if (jerr.line < 0)
      return MB_ERR(MB_EIO, "%s: cannot read the tokenizer file: %s", path, jerr.text);
    return MB_ERR(MB_EFORMAT, "%s: line %d, column %d: invalid JSON: %s", path, jerr.line, jerr.column, jerr.text);
  }
  mb_bpe *b = (mb_bpe *)calloc(1, sizeof(*b));
  if (!b) {
    json_decref(root);
    return MB_ERR(MB_ENOMEM, "%s: out of memory", path);
  }
  t->bpe = b;
  int rc = load_json(b, root, path, t);
  json_decref(root);
  if (rc != MB_OK) {
    mb_bpe_free(b);
    t->bpe = NULL;
  }
  return rc;
}

void mb_bpe_free(mb_bpe *b) {
  if (!b)
    return;
  mb_vmap_free(&b->vocab);
  free(b->id_str);
  free(b->id_len);
  free(b->id_special);
  free(b->pair_key);
  free(b->pair_rank);
  free(b->pair_new);
  mb_added_free(&b->raw_added);
  mb_added_free(&b->norm_added);
  if (b->re)
    pcre2_code_free(b->re);
  free(b);
}

/* ---- encoding ---------------------------------------------------------------------- */

typedef struct {
  const mb_bpe *b;
  mb_tok_scratch *sc;
  bpe_cache_slot *cache;
  mb_ids *out;
  size_t limit;
  int full;
  /* mb_bpe_debug_split only */
  size_t *split_ends, split_n, split_cap;
  const char *split_base;
} bpe_state;

static int bpe_emit(bpe_state *st, int32_t id) {
  if (st->out->n >= st->limit) {
    st->full = 1;
    return MB_OK;
  }
  return mb_ids_push(st->out, id);
}

/* Small words: symbols in an array, the lowest-ranked pair found by a scan. */
static size_t bpe_merge_small(const mb_bpe *b, const unsigned char *s, size_t n, int32_t *id) {
  uint32_t rank[256];
  int32_t merged[256];
  for (size_t i = 0; i < n; i++)
    id[i] = b->byte_id[s[i]];
  for (size_t i = 0; i + 1 < n; i++)
    rank[i] = pair_lookup(b, id[i], id[i + 1], &merged[i]);
  size_t m = n;
  while (m > 1) {
    size_t best = 0;
    uint32_t br = BPE_NO_RANK;
    for (size_t i = 0; i + 1 < m; i++)
      if (rank[i] < br) {
        br = rank[i];
        best = i;
      }
    if (br == BPE_NO_RANK)
      break;
    id[best] = merged[best];
    /* drop symbol best+1 (m ids, m-1 pairs) */
    memmove(id + best + 1, id + best + 2, (m - best - 2) * sizeof(int32_t));
    if (m - best > 2) {
      memmove(rank + best + 1, rank + best + 2, (m - best - 3) * sizeof(uint32_t));
      memmove(merged + best + 1, merged + best + 2, (m - best - 3) * sizeof(int32_t));
    }
    m--;
    if (best > 0)
      rank[best - 1] = pair_lookup(b, id[best - 1], id[best], &merged[best - 1]);
    if (best + 1 < m)
      rank[best] = pair_lookup(b, id[best], id[best + 1], &merged[best]);
  }
  return m;
}

/* Long words: a linked list of symbols and a binary heap of candidate pairs
 * ordered by (rank, position), stale entries skipped: O(n log n). */
typedef struct {
  uint32_t rank, pos, right;
  int32_t lid, rid;
} bpe_cand;

static int cand_less(const bpe_cand *a, const bpe_cand *b) {
  return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(bpe_cand *h, size_t *n, bpe_cand c) {
  size_t i = (*n)++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!cand_less(&c, &h[p]))
      break;
    h[i] = h[p];
    i = p;
  }
  h[i] = c;
}

static bpe_cand heap_pop(bpe_cand *h, size_t *n) {
  bpe_cand top = h[0], last = h[--(*n)];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1;
    if (l >= *n)
      break;
    size_t c = (l + 1 < *n && cand_less(&h[l + 1], &h[l])) ? l + 1 : l;
    if (!cand_less(&h[c], &last))
      break;
    h[i] = h[c];
    i = c;
  }
  h[i] = last;
  return top;
}

static int bpe_word_large(bpe_state *st, const unsigned char *s, size_t n) {
  const mb_bpe *b = st->b;
  mb_tok_scratch *sc = st->sc;
  /* id, next, prev per symbol; 3n candidates of 5 words each */
  size_t need = 3 * n + 3 * n * (sizeof(bpe_cand) / sizeof(int32_t)) + 8;
  MB_TRY(mb_tok_reserve((void **)&sc->sym, &sc->sym_cap, need, sizeof(int32_t)));
  int32_t *id = sc->sym, *next = id + n, *prev = next + n;
  bpe_cand *heap = (bpe_cand *)(void *)(prev + n + (n & 1));
  size_t nh = 0;
  for (size_t i = 0; i < n; i++) {
    id[i] = b->byte_id[s[i]];
    next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
    prev[i] = (int32_t)i - 1;
  }
  for (size_t i = 0; i + 1 < n; i++) {
    int32_t mid;
    uint32_t r = pair_lookup(b, id[i], id[i + 1], &mid);
    if (r != BPE_NO_RANK)
      heap_push(heap, &nh, (bpe_cand){r, (uint32_t)i, (uint32_t)(i + 1), id[i], id[i + 1]});
  }
  while (nh > 0) {
    bpe_cand c = heap_pop(heap, &nh);
    /* Stale: the left symbol was merged away or changed, or its right neighbour did. */
    if (id[c.pos] != c.lid || next[c.pos] != (int32_t)c.right || id[c.right] != c.rid)
      continue;
    int32_t mid = -1;
    pair_lookup(b, c.lid, c.rid, &mid);
    id[c.pos] = mid;
    int32_t nx = next[c.right];
    next[c.pos] = nx;
    if (nx >= 0)
      prev[nx] = (int32_t)c.pos;
    id[c.right] = -1; /* dead */
    next[c.right] = -2;
    int32_t pv = prev[c.pos];
    int32_t m2;
    if (pv >= 0) {
      uint32_t r = pair_lookup(b, id[pv], mid, &m2);
      if (r != BPE_NO_RANK)
        heap_push(heap, &nh, (bpe_cand){r, (uint32_t)pv, c.pos, id[pv], mid});
    }
    if (nx >= 0) {
      uint32_t r = pair_lookup(b, mid, id[nx], &m2);
      if (r != BPE_NO_RANK)
        heap_push(heap, &nh, (bpe_cand){r, c.pos, (uint32_t)nx, mid, id[nx]});
    }
  }
  for (int32_t i = 0; i >= 0 && !st->full; i = next[i])
    MB_TRY(bpe_emit(st, id[i]));
  return MB_OK;
}

static int bpe_word(bpe_state *st, const unsigned char *s, size_t n) {
  if (st->split_ends) { /* mb_bpe_debug_split: record the piece, no BPE */
    if (st->split_n < st->split_cap)
      st->split_ends[st->split_n] = (size_t)((const char *)s + n - st->split_base);
    st->split_n++;
    return MB_OK;
  }
  if (n == 1)
    return bpe_emit(st, st->b->byte_id[s[0]]);
  if (n > 256)
    return bpe_word_large(st, s, n);
  bpe_cache_slot *slot = NULL;
  if (n <= BPE_CACHE_KEY && st->cache) {
    slot = &st->cache[mb_fnv1a(MB_FNV_BASIS, s, n) & (BPE_CACHE_SLOTS - 1)];
    if (slot->serial == st->b->serial && slot->klen == n && memcmp(slot->key, s, n) == 0) {
      for (int i = 0; i < slot->nids && !st->full; i++)
        MB_TRY(bpe_emit(st, slot->ids[i]));
      return MB_OK;
    }
  }
  int32_t ids[256];
  size_t m = bpe_merge_small(st->b, s, n, ids);
  if (slot && m <= BPE_CACHE_IDS) {
    slot->serial = st->b->serial;
    slot->klen = (uint8_t)n;
    slot->nids = (uint8_t)m;
    memcpy(slot->key, s, n);
    memcpy(slot->ids, ids, m * sizeof(int32_t));
  }
  for (size_t i = 0; i < m && !st->full; i++)
    MB_TRY(bpe_emit(st, ids[i]));
  return MB_OK;
}

/* The GPT-2 regex on ASCII text, by hand (same matches as the pattern,
 * alternative by alternative): contractions, ` ?letters`, ` ?digits`,
 * ` ?others`, whitespace not followed by non-space, whitespace. */
enum { A_OTHER = 0, A_LETTER, A_DIGIT, A_SPACE };
static uint8_t ascii_cls[128];
static pthread_once_t ascii_cls_once = PTHREAD_ONCE_INIT;
static void ascii_cls_init(void) {
  for (int c = 0; c < 128; c++)
    ascii_cls[c] = ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) ? A_LETTER
                   : (c >= '0' && c <= '9')                          ? A_DIGIT
                   : (c == ' ' || (c >= 9 && c <= 13))                ? A_SPACE
                                                                      : A_OTHER;
}

static int bpe_pretokenize_ascii(bpe_state *st, const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  size_t pos = 0;
  while (pos < n && !st->full) {
    unsigned char c = u[pos];
    size_t end;
    if (c == '\'' && pos + 1 < n &&
        (u[pos + 1] == 's' || u[pos + 1] == 't' || u[pos + 1] == 'm' || u[pos + 1] == 'd')) {
      end = pos + 2;
    } else if (c == '\'' && pos + 2 < n &&
               ((u[pos + 1] == 'r' && u[pos + 2] == 'e') || (u[pos + 1] == 'v' && u[pos + 2] == 'e') ||
                (u[pos + 1] == 'l' && u[pos + 2] == 'l'))) {
      end = pos + 3;
    } else {
      size_t q = pos + (c == ' ');
      int k = q < n ? ascii_cls[u[q]] : A_SPACE;
      if (k != A_SPACE) {
        end = q + 1;
        while (end < n && ascii_cls[u[end]] == k)
          end++;
      } else {
        size_t r = pos;
        while (r < n && ascii_cls[u[r]] == A_SPACE)
          r++;
        /* \s+(?!\S): up to the end, or all but the last before a non-space;
         * else \s+ takes the single whitespace character */
        end = (r == n || r - pos == 1) ? r : r - 1;
      }
    }
    MB_TRY(bpe_word(st, u + pos, end - pos));
    pos = end;
  }
  return MB_OK;
}

/* The ByteLevel regex over one piece; every character is matched by one of
 * its alternatives, so the matches tile the piece (a gap would still be a
 * piece of its own, as the crate's Isolated split keeps it). */
static int bpe_pretokenize(bpe_state *st, const char *s, size_t n) {
  const mb_bpe *b = st->b;
  pcre2_match_data *md = (pcre2_match_data *)st->sc->match_data;
  size_t pos = 0;
  while (pos < n && !st->full) {
    int rc = b->jit ? pcre2_jit_match(b->re, (PCRE2_SPTR)s, n, pos, 0, md, NULL)
                    : pcre2_match(b->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* huge pieces: the interpreter keeps its frames on the heap */
      rc = pcre2_match(b->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
    size_t ms, me;
    if (rc < 0) {
      if (rc != PCRE2_ERROR_NOMATCH)
        return MB_ERR(MB_EINTERNAL, "tokenizer: PCRE2 match failed with code %d", rc);
      ms = me = n;
    } else {
      PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
      ms = ov[0];
      me = ov[1];
      if (me <= ms) /* cannot happen with this pattern; never loop forever */
        return MB_ERR(MB_EINTERNAL, "tokenizer: empty pre-token match at byte %zu", ms);
    }
    if (ms > pos)
      MB_TRY(bpe_word(st, (const unsigned char *)s + pos, ms - pos));
    if (me > ms)
      MB_TRY(bpe_word(st, (const unsigned char *)s + ms, me - ms));
    pos = me;
  }
  return MB_OK;
}

/* NFC of s into the scratch text buffer; ASCII is returned as is. */
static int bpe_nfc(bpe_state *st, const char *s, size_t n, const char **out, size_t *out_n) {
  size_t i = 0;
  while (i < n && (unsigned char)s[i] < 0x80)
    i++;
  if (i == n) {
    *out = s;
    *out_n = n;
    return MB_OK;
  }
  mb_tok_scratch *sc = st->sc;
  const int opts = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
  MB_TRY(mb_tok_reserve((void **)&sc->cps, &sc->cps_cap, n + 8, sizeof(int32_t)));
  utf8proc_ssize_t len;
  for (;;) {
    len = utf8proc_decompose((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, (utf8proc_int32_t *)sc->cps,
                             (utf8proc_ssize_t)sc->cps_cap, (utf8proc_option_t)opts);
    if (len < 0)
      return MB_ERR(MB_EINVAL, "tokenizer: NFC failed: %s", utf8proc_errmsg(len));
    if ((size_t)len <= sc->cps_cap)
      break;
    MB_TRY(mb_tok_reserve((void **)&sc->cps, &sc->cps_cap, (size_t)len, sizeof(int32_t)));
  }
  len = utf8proc_normalize_utf32((utf8proc_int32_t *)sc->cps, len, (utf8proc_option_t)opts);
  if (len < 0)
    return MB_ERR(MB_EINVAL, "tokenizer: NFC failed: %s", utf8proc_errmsg(len));
  MB_TRY(mb_tok_reserve((void **)&sc->text, &sc->text_cap, (size_t)len * 4 + 1, 1));
  size_t w = 0;
  for (utf8proc_ssize_t k = 0; k < len; k++)
    w += (size_t)mb_utf8_put(sc->cps[k], sc->text + w);
  *out = sc->text;
  *out_n = w;
  return MB_OK;
}

static int bpe_normalized_piece(bpe_state *st, const char *raw, size_t rn) {
  const char *s = raw;
  size_t n = 0;
  MB_TRY(bpe_nfc(st, raw, rn, &s, &n));
  int ascii = s == raw; /* bpe_nfc hands ASCII back untouched */
  const mb_added_set *na = &st->b->norm_added;
  size_t pos = 0;
  while (pos < n && !st->full) {
    size_t which = 0;
    size_t at = mb_added_find(na, s, n, pos, &which);
    MB_TRY(ascii ? bpe_pretokenize_ascii(st, s + pos, at - pos) : bpe_pretokenize(st, s + pos, at - pos));
    if (at >= n)
      break;
    MB_TRY(bpe_emit(st, na->tok[which].id));
    pos = at + na->tok[which].len;
  }
  return MB_OK;
}

static void free_match_data(void *p) { pcre2_match_data_free((pcre2_match_data *)p); }

int mb_bpe_encode(const mb_bpe *b, const char *text, size_t len, size_t limit, mb_ids *out) {
  mb_tok_scratch *sc = mb_tok_scratch_get();
  if (!sc)
    return MB_ERR(MB_ENOMEM, "tokenizer: out of memory for scratch buffers");
  if (!sc->match_data) {
    sc->match_data = pcre2_match_data_create(1, NULL);
    if (!sc->match_data)
      return MB_ERR(MB_ENOMEM, "tokenizer: out of memory for regex match data");
    sc->free_match_data = free_match_data;
  }
  pthread_once(&ascii_cls_once, ascii_cls_init);
  if (!sc->bpe_cache)
    sc->bpe_cache = calloc(BPE_CACHE_SLOTS, sizeof(bpe_cache_slot)); /* NULL: run uncached */
  bpe_state st = {b, sc, (bpe_cache_slot *)sc->bpe_cache, out, limit, 0, NULL, 0, 0, NULL};
  size_t pos = 0;
  while (pos < len && !st.full) {
    size_t which = 0;
    size_t at = mb_added_find(&b->raw_added, text, len, pos, &which);
    if (at > pos)
      MB_TRY(bpe_normalized_piece(&st, text + pos, at - pos));
    if (at >= len)
      break;
    MB_TRY(bpe_emit(&st, b->raw_added.tok[which].id));
    pos = at + b->raw_added.tok[which].len;
  }
  return MB_OK;
}

/* ---- decoding ------------------------------------------------------------------------ */

/* Length of the invalid sequence at s[0] as Rust's Utf8Chunks reports it
 * (0 when s starts with a valid character). */
static size_t utf8_invalid_len(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  if (c < 0x80)
    return 0;
  size_t need;
  unsigned lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF)
    need = 1;
  else if (c >= 0xE0 && c <= 0xEF) {
    need = 2;
    if (c == 0xE0)
      lo = 0xA0;
    if (c == 0xED)
      hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 3;
    if (c == 0xF0)
      lo = 0x90;
    if (c == 0xF4)
      hi = 0x8F;
  } else
    return 1;
  for (size_t k = 1; k <= need; k++) {
    if (k >= n)
      return k;
    unsigned d = s[k];
    if (k == 1 ? (d < lo || d > hi) : (d < 0x80 || d > 0xBF))
      return k;
  }
  return 0;
}

int mb_bpe_decode(const mb_bpe *b, const int32_t *ids, size_t n, char **out) {
  size_t cap = 64;
  for (size_t i = 0; i < n; i++)
    cap += b->id_len[ids[i]];
  unsigned char *bytes = (unsigned char *)malloc(cap);
  if (!bytes)
    return MB_ERR(MB_ENOMEM, "tokenizer: out of memory decoding");
  size_t w = 0;
  for (size_t i = 0; i < n; i++) {
    const char *s = b->id_str[ids[i]];
    size_t len = b->id_len[ids[i]];
    if (!s || b->id_special[ids[i]])
      continue;
    /* A token whose characters are all in the byte alphabet decodes to
     * those bytes; any other (an added token of plain spaces) to itself. */
    size_t start = w, k = 0;
    int raw = 0;
    while (k < len) {
      int32_t c = mb_utf8_next((const unsigned char *)s, &k);
      if (c >= 324 || b->char_byte[c] < 0) {
        raw = 1;
        break;
      }
      bytes[w++] = (unsigned char)b->char_byte[c];
    }
    if (raw) {
      w = start;
      memcpy(bytes + w, s, len);
      w += len;
    }
  }
  /* from_utf8_lossy: each invalid sequence becomes one U+FFFD (3 bytes). */
  char *res = (char *)malloc(w * 3 + 1);
  if (!res) {
    free(bytes);
    return MB_ERR(MB_ENOMEM, "tokenizer: out of memory decoding");
  }
  size_t r = 0, i = 0;
  while (i < w) {
    size_t bad = utf8_invalid_len(bytes + i, w - i);
    if (bad) {
      memcpy(res + r, "\xEF\xBF\xBD", 3);
      r += 3;
      i += bad;
      continue;
    }
    size_t clen = bytes[i] < 0x80 ? 1 : bytes[i] < 0xE0 ? 2 : bytes[i] < 0xF0 ? 3 : 4;
    memcpy(res + r, bytes + i, clen);
    r += clen;
    i += clen;
  }
  res[r] = 0;
  free(bytes);
  *out = res;
  return MB_OK;
}

/* For tests: how many pieces the ByteLevel regex alone cuts s into. */
int mb_bpe_count_pretokens(const mb_bpe *b, const char *s, size_t n, size_t *count) {
  pcre2_match_data *md = pcre2_match_data_create(1, NULL);
  if (!md)
    return MB_ERR(MB_ENOMEM, "tokenizer: out of memory for regex match data");
  size_t pos = 0, k = 0;
  while (pos < n) {
    int rc = pcre2_match(b->re, (PCRE2_SPTR)s, n, pos, 0, md, NULL);
    if (rc < 0) {
      k++;
      break;
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    k += (ov[0] > pos) + (ov[1] > ov[0]);
    if (ov[1] <= pos)
      break;
    pos = ov[1];
  }
  pcre2_match_data_free(md);
  *count = k;
  return MB_OK;
}

/* For tests: the ends of the pieces the pre-tokenizer cuts ASCII text s into,
 * by the hand-written ASCII path (ascii=1) or by the PCRE2 regex (0). */
int mb_bpe_debug_split(const mb_bpe *b, const char *s, size_t n, int ascii, size_t *ends, size_t cap,
                       size_t *count) {
  mb_tok_scratch *sc = mb_tok_scratch_get();
  if (!sc)
    return MB_ERR(MB_ENOMEM, "tokenizer: out of memory for scratch buffers");
  if (!sc->match_data) {
    sc->match_data = pcre2_match_data_create(1, NULL);
    if (!sc->match_data)
      return MB_ERR(MB_ENOMEM, "tokenizer: out of memory for regex match data");
    sc->free_match_data = free_match_data;
  }
  pthread_once(&ascii_cls_once, ascii_cls_init);
  mb_ids dummy = {0};
  bpe_state st = {b, sc, NULL, &dummy, SIZE_MAX, 0, ends, 0, cap, s};
  MB_TRY(ascii ? bpe_pretokenize_ascii(&st, s, n) : bpe_pretokenize(&st, s, n));
  *count = st.split_n;
  return MB_OK;
}
