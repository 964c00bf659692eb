/* wordpiece.c: BERT WordPiece with exact Hugging Face parity (the Rust
 * `tokenizers` pipeline that BertTokenizer(Fast) runs):
 *   1. added tokens: [PAD] [UNK] [CLS] [SEP] [MASK] are split out of the raw
 *      text first (leftmost-longest, not normalized), each piece then goes
 *      through 2-5 on its own;
 *   2. BertNormalizer, per character and in this order: clean_text (drop NUL,
 *      U+FFFD and controls, whitespace -> ' '), spaces around CJK ideographs,
 *      strip accents (NFD, drop Mn) and then lower-case (Rust to_lowercase);
 *      note the fast tokenizer strips before it lower-cases;
 *   3. BertPreTokenizer: split on Rust whitespace, isolate punctuation;
 *   4. WordPiece: greedy longest match first with "##" continuations; a word
 *      of more than 100 characters, or one without a full cover, is [UNK].
 * Everything streams one character at a time into a fixed word buffer, so
 * encoding allocates nothing but the output ids.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer_impl.h"
#include "data/unicode_hf.h"

#define WP_MAX_CHARS 100 /* max_input_chars_per_word */

struct mb_wordpiece {
  mb_vmap vocab;
  uint32_t *tok_off, *tok_len; /* id -> key bytes in vocab.keys */
  int32_t n_tokens;
  int lowercase, strip_accents, chinese;
  int32_t unk;
  mb_added_set added;
  uint64_t cont_state; /* FNV state after "##" */
  size_t max_bytes, max_cont_bytes; /* longest token; longest "##" token without the "##" */
  /* ASCII fast path: class (0 word, 1 space, 2 punct, 3 dropped) and the
   * character after lower-casing. */
  uint8_t ascii_class[128];
  char ascii_lower[128];
  /* Non-ASCII BMP fast path: what the normalizer makes of each code point,
   * precomputed at load (see build_bmp_table). */
  struct bmp_entry {
    uint8_t kind, nbytes;
    uint16_t pad_;
    uint32_t off; /* into bmp_pool: the UTF-8 of the output characters */
  } *bmp;
  char *bmp_pool;
};

enum { BMP_SLOW = 0, BMP_DROP, BMP_SPACE, BMP_WORD, BMP_ISOLATED };

/* ---- loading -------------------------------------------------------------- */

static int read_whole_file(const char *path, char **data, size_t *size) {
  *data = NULL;
  *size = 0;
  FILE *f = fopen(path, "rb");
  if (!f)
    return MB_ERR(MB_EIO, "%s: cannot open the vocabulary file", path);
  size_t cap = 1 << 20, n = 0;
  char *buf = (char *)malloc(cap);
  if (!buf) {
    fclose(f);
    return MB_ERR(MB_ENOMEM, "%s: out of memory", path);
  }
  for (;;) {
    if (n == cap) {
      char *b = (char *)realloc(buf, cap * 2);
      if (!b) {
        free(buf);
        fclose(f);
        return MB_ERR(MB_ENOMEM, "%s: out of memory", path);
      }
      buf = b;
      cap *= 2;
    }
    size_t r = fread(buf + n, 1, cap - n, f);
    n += r;
    if (r == 0)
      break;
  }
  int err = ferror(f);
  fclose(f);
  if (err) {
    free(buf);
    return MB_ERR(MB_EIO, "%s: read error", path);
  }
  *data = buf;
  *size = n;
  return MB_OK;
}

/* -1 unknown, else whether an ordinary token (not [X] or <X>) has an ASCII
 * upper-case letter: a cased vocabulary. */
static int vocab_has_upper(const mb_wordpiece *wp) {
  for (int32_t i = 0; i < wp->n_tokens; i++) {
    const char *s = wp->vocab.keys + wp->tok_off[i];
    uint32_t n = wp->tok_len[i];
    if (n >= 2 && ((s[0] == '[' && s[n - 1] == ']') || (s[0] == '<' && s[n - 1] == '>')))
      continue;
    for (uint32_t k = 0; k < n; k++)
      if (s[k] >= 'A' && s[k] <= 'Z')
        return 1;
  }
  return 0;
}

static void build_ascii_tables(mb_wordpiece *wp) {
  for (int c = 0; c < 128; c++) {
    uint8_t cls = 0;
    if (mb_uhf_is_dropped(c))
      cls = 3;
    else if (mb_uhf_is_clean_space(c))
      cls = 1;
    else if (mb_uhf_is_bert_punct(c))
      cls = 2;
    wp->ascii_class[c] = cls;
    wp->ascii_lower[c] = (char)((wp->lowercase && c >= 'A' && c <= 'Z') ? c + 32 : c);
  }
}

/* The normalized output of one character: strip accents (NFD, drop Mn),
 * then lower-case, as BertNormalizer orders them. Returns the count. */
static int normalize_char(const mb_wordpiece *wp, int32_t c, int32_t *out) {
  int32_t d[MB_UHF_MAX_EXPAND];
  int nd = 1;
  d[0] = c;
  if (wp->strip_accents)
    nd = mb_uhf_nfd_strip(c, d);
  int n = 0;
  for (int i = 0; i < nd; i++) {
    if (!wp->lowercase) {
      out[n++] = d[i];
      continue;
    }
    int32_t lo[MB_UHF_MAX_EXPAND];
    int nl = mb_uhf_lower(d[i], lo);
    for (int k = 0; k < nl && n < MB_UHF_MAX_EXPAND; k++)
      out[n++] = lo[k];
  }
  return n;
}

/* For U+0080..U+FFFF: dropped, a space, word characters (their UTF-8 in the
 * pool) or one isolated punctuation character; anything else (an output
 * mixing classes) takes the slow path. */
static int build_bmp_table(mb_wordpiece *wp) {
  wp->bmp = (struct bmp_entry *)calloc(0x10000, sizeof(*wp->bmp));
  size_t cap = 1 << 18, used = 0;
  wp->bmp_pool = (char *)malloc(cap);
  if (!wp->bmp || !wp->bmp_pool)
    return MB_ERR(MB_ENOMEM, "tokenizer: out of memory for the WordPiece character table");
  for (int32_t c = 0x80; c < 0x10000; c++) {
    struct bmp_entry *e = &wp->bmp[c];
    if (c >= 0xD800 && c <= 0xDFFF)
      continue;
    if (mb_uhf_is_dropped(c)) {
      e->kind = BMP_DROP;
      continue;
    }
    if (mb_uhf_is_clean_space(c)) {
      e->kind = BMP_SPACE;
      continue;
    }
    int32_t o[MB_UHF_MAX_EXPAND];
    int n = normalize_char(wp, c, o);
    int words = 0, puncts = 0;
    for (int i = 0; i < n; i++) {
      if (mb_uhf_is_whitespace(o[i]))
        ;
      else if (mb_uhf_is_bert_punct(o[i]))
        puncts++;
      else
        words++;
    }
    int cjk = wp->chinese && mb_uhf_is_cjk(c);
    if (n == 0 && !cjk) {
      e->kind = BMP_DROP; /* e.g. a combining mark, stripped */
      continue;
    }
    uint8_t kind;
    if (words == n && n > 0)
      kind = cjk ? BMP_ISOLATED : BMP_WORD;
    else if (n == 1 && puncts == 1)
      kind = BMP_ISOLATED;
    else
      continue; /* BMP_SLOW */
    if (used + 4 * MB_UHF_MAX_EXPAND > cap) {
      char *p = (char *)realloc(wp->bmp_pool, cap * 2);
      if (!p)
        return MB_ERR(MB_ENOMEM, "tokenizer: out of memory for the WordPiece character table");
      wp->bmp_pool = p;
      cap *= 2;
    }
    e->off = (uint32_t)used;
    for (int i = 0; i < n; i++)
      used += (size_t)mb_utf8_put(o[i], wp->bmp_pool + used);
    e->nbytes = (uint8_t)(used - e->off);
    e->kind = kind;
  }
  return MB_OK;
}

/* The special tokens HF registers as added tokens (matched in raw text). */
static const char *const bert_specials[5] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

static int is_bert_special(const char *s) {
  for (int k = 0; k < 5; k++)
    if (strcmp(s, bert_specials[k]) == 0)
      return 1;
  return 0;
}

int mb_wordpiece_load(const char *path, const mb_tokenizer_options *opt, mb_tokenizer *t) {
  char *data;
  size_t size;
  MB_TRY(read_whole_file(path, &data, &size));
  return mb_wordpiece_load_buffer(path, data, size, opt, t);
}

int mb_wordpiece_load_json(const char *path, mb_tokenizer *t, int *is_wordpiece) {
  *is_wordpiece = 0;
  json_error_t err;
  json_t *root = json_load_file(path, 0, &err);
  if (!root)
    return MB_ERR(MB_EFORMAT, "%s: line %d, column %d: invalid JSON: %s", path, err.line, err.column, err.text);
  json_t *model = json_object_get(root, "model");
  const char *mtype = json_string_value(json_object_get(model, "type"));
  if (!mtype || strcmp(mtype, "WordPiece") != 0) {
    json_decref(root);
    return MB_OK; /* the BPE loader's */
  }
  *is_wordpiece = 1;
  int rc = MB_OK;
  char *buf = NULL;
  const char **by_id = NULL;
  /* what HF's BertTokenizerFast writes; anything else would tokenize otherwise */
  json_t *norm = json_object_get(root, "normalizer"), *pre = json_object_get(root, "pre_tokenizer");
  const char *ntype = json_string_value(json_object_get(norm, "type"));
  const char *ptype = json_string_value(json_object_get(pre, "type"));
  const char *prefix = json_string_value(json_object_get(model, "continuing_subword_prefix"));
  const char *unk = json_string_value(json_object_get(model, "unk_token"));
  if (!ntype || strcmp(ntype, "BertNormalizer") != 0)
    rc = MB_ERR(MB_EUNSUPPORTED, "%s: a WordPiece tokenizer with normalizer %s (supported: BertNormalizer)", path,
                ntype ? ntype : "none");
  else if (!ptype || strcmp(ptype, "BertPreTokenizer") != 0)
    rc = MB_ERR(MB_EUNSUPPORTED, "%s: a WordPiece tokenizer with pre_tokenizer %s (supported: BertPreTokenizer)", path,
                ptype ? ptype : "none");
  else if (prefix && strcmp(prefix, "##") != 0)
    rc = MB_ERR(MB_EUNSUPPORTED, "%s: continuing_subword_prefix '%s' (supported: '##')", path, prefix);
  else if (unk && strcmp(unk, "[UNK]") != 0)
    rc = MB_ERR(MB_EUNSUPPORTED, "%s: unk_token '%s' (supported: '[UNK]')", path, unk);
  else if (json_is_false(json_object_get(norm, "clean_text")))
    rc = MB_ERR(MB_EUNSUPPORTED, "%s: normalizer.clean_text false (supported: true, BERT's)", path);
  json_t *mic = json_object_get(model, "max_input_chars_per_word");
  if (rc == MB_OK && mic && !(json_is_integer(mic) && json_integer_value(mic) == 100))
    rc = MB_ERR(MB_EUNSUPPORTED, "%s: max_input_chars_per_word other than 100 (BERT's)", path);
  json_t *vocab = json_object_get(model, "vocab");
  const size_t n = json_is_object(vocab) ? json_object_size(vocab) : 0;
  if (rc == MB_OK && n == 0)
    rc = MB_ERR(MB_EFORMAT, "%s: model.vocab: expected an object {token: id}, non-empty", path);
  /* the vocabulary as vocab.txt has it: one token per line, in id order */
  size_t bytes = 0;
  if (rc == MB_OK && !(by_id = (const char **)calloc(n, sizeof *by_id)))
    rc = MB_ERR(MB_ENOMEM, "%s: out of memory", path);
  const char *tok;
  json_t *idv;
  json_object_foreach(vocab, tok, idv) {
    if (rc != MB_OK)
      break;
    const json_int_t id = json_is_integer(idv) ? json_integer_value(idv) : -1;
    if (id < 0 || (size_t)id >= n || by_id[id])
      rc = MB_ERR(MB_EFORMAT, "%s: model.vocab['%.64s']: expected the ids 0..%zu, each once", path, tok, n - 1);
    else if (strpbrk(tok, "\n\r"))
      rc = MB_ERR(MB_EFORMAT, "%s: model.vocab: a token with a line break (id %lld)", path, (long long)id);
    else
      by_id[id] = tok, bytes += strlen(tok) + 1;
  }
  /* added tokens outside the vocabulary would be matched in raw text by HF
   * and not here: refused rather than tokenized otherwise */
  json_t *added = json_object_get(root, "added_tokens");
  for (size_t i = 0; rc == MB_OK && i < json_array_size(added); i++) {
    json_t *a = json_array_get(added, i);
    const char *content = json_string_value(json_object_get(a, "content"));
    const json_int_t id = json_integer_value(json_object_get(a, "id"));
    if (!content || id < 0 || (size_t)id >= n || !by_id[id] || strcmp(by_id[id], content) != 0)
      rc = MB_ERR(MB_EUNSUPPORTED, "%s: added token '%.64s' (id %lld) outside model.vocab: not supported", path,
                  content ? content : "?", (long long)id);
    else if (!is_bert_special(content))
      rc = MB_ERR(MB_EUNSUPPORTED, "%s: added token '%.64s' besides BERT's five: not supported", path, content);
  }
  if (rc == MB_OK && !(buf = (char *)malloc(bytes + 1)))
    rc = MB_ERR(MB_ENOMEM, "%s: out of memory", path);
  size_t at = 0;
  for (size_t i = 0; rc == MB_OK && i < n; i++) {
    const size_t l = strlen(by_id[i]);
    memcpy(buf + at, by_id[i], l);
    buf[at + l] = '\n';
    at += l + 1;
  }
  mb_tokenizer_options o = mb_tokenizer_default_options();
  if (rc == MB_OK) {
    json_t *lc = json_object_get(norm, "lowercase"), *sa = json_object_get(norm, "strip_accents");
    json_t *cjk = json_object_get(norm, "handle_chinese_chars");
    o.lowercase = json_is_boolean(lc) ? json_is_true(lc) : 1; /* HF's default */
    o.strip_accents = json_is_boolean(sa) ? json_is_true(sa) : -1; /* null: follow lowercase */
    o.tokenize_chinese_chars = json_is_boolean(cjk) ? json_is_true(cjk) : 1;
  }
  free(by_id);
  json_decref(root);
  if (rc != MB_OK) {
    free(buf);
    return rc;
  }
  return mb_wordpiece_load_buffer(path, buf, at, &o, t);
}

int mb_wordpiece_load_buffer(const char *path, char *data, size_t size, const mb_tokenizer_options *opt,
                             mb_tokenizer *t) {
  mb_wordpiece *wp = (mb_wordpiece *)calloc(1, sizeof(*wp));
  if (!wp) {
    free(data);
    return MB_ERR(MB_ENOMEM, "%s: out of memory", path);
  }
  t->kind = MB_TOKENIZER_WORDPIECE;
  t->wp = wp;
  int rc = MB_OK;
  /* Count lines: a final line without '\n' counts, an empty tail does not. */
  size_t lines = 0;
  for (size_t i = 0; i < size; i++)
    lines += data[i] == '\n';
  if (size > 0 && data[size - 1] != '\n')
    lines++;
  if (lines == 0) {
    rc = MB_ERR(MB_EFORMAT, "%s: empty vocabulary file (expected one WordPiece token per line)", path);
    goto done;
  }
  if (lines > INT32_MAX / 2) {
    rc = MB_ERR(MB_EFORMAT, "%s: %zu lines is too many for a vocabulary", path, lines);
    goto done;
  }
  if ((rc = mb_vmap_init(&wp->vocab, lines)) != MB_OK)
    goto done;
  wp->tok_off = (uint32_t *)malloc(lines * sizeof(uint32_t));
  wp->tok_len = (uint32_t *)malloc(lines * sizeof(uint32_t));
  if (!wp->tok_off || !wp->tok_len) {
    rc = MB_ERR(MB_ENOMEM, "%s: out of memory", path);
    goto done;
  }
  size_t pos = 0;
  for (size_t line = 0; line < lines; line++) {
    size_t end = pos;
    while (end < size && data[end] != '\n')
      end++;
    size_t n = end - pos;
    if (n > 0 && data[pos + n - 1] == '\r') /* CRLF files, as Rust's lines() reads them */
      n--;
    size_t bad = mb_utf8_invalid_at(data + pos, n);
    if (bad < n) {
      rc = MB_ERR(MB_EFORMAT, "%s: line %zu: invalid UTF-8 at byte %zu of the line", path, line + 1, bad + 1);
      goto done;
    }
    int32_t prev;
    if ((rc = mb_vmap_put(&wp->vocab, data + pos, n, (int32_t)line, &prev)) != MB_OK)
      goto done;
    if (prev >= 0) {
      rc = MB_ERR(MB_EFORMAT, "%s: line %zu: duplicate token '%.*s' (first on line %d)", path, line + 1,
                  (int)(n > 64 ? 64 : n), data + pos, (int)prev + 1);
      goto done;
    }
    pos = end + 1;
  }
  wp->n_tokens = (int32_t)lines;
  {
    /* Longest-match candidates longer than any token cannot match: skip them. */
    size_t p0 = 0;
    for (size_t line = 0; line < lines; line++) {
      size_t e = p0;
      while (e < size && data[e] != '\n')
        e++;
      size_t n = e - p0;
      if (n > 0 && data[p0 + n - 1] == '\r')
        n--;
      if (n > wp->max_bytes)
        wp->max_bytes = n;
      if (n >= 2 && data[p0] == '#' && data[p0 + 1] == '#' && n - 2 > wp->max_cont_bytes)
        wp->max_cont_bytes = n - 2;
      p0 = e + 1;
    }
  }
  /* id -> string: walk the slots once. */
  for (size_t j = 0; j <= wp->vocab.mask; j++) {
    const mb_vmap_slot *s = &wp->vocab.slots[j];
    if (s->id >= 0) {
      wp->tok_off[s->id] = s->off;
      wp->tok_len[s->id] = s->len;
    }
  }
  wp->unk = mb_vmap_get(&wp->vocab, "[UNK]", 5);
  if (wp->unk < 0) {
    rc = MB_ERR(MB_EFORMAT, "%s: the vocabulary has no [UNK] token (WordPiece needs one)", path);
    goto done;
  }
  const char *const *specials = bert_specials;
  int32_t sid[5];
  for (int k = 0; k < 5; k++) {
    sid[k] = mb_vmap_get(&wp->vocab, specials[k], strlen(specials[k]));
    if (sid[k] >= 0 && (rc = mb_added_add(&wp->added, specials[k], strlen(specials[k]), sid[k], 1)) != MB_OK)
      goto done;
  }
  if ((rc = mb_added_finish(&wp->added)) != MB_OK)
    goto done;
  if (sid[2] < 0 || sid[3] < 0) {
    rc = MB_ERR(MB_EFORMAT, "%s: the vocabulary has no %s token", path, sid[2] < 0 ? "[CLS]" : "[SEP]");
    goto done;
  }
  t->special.pad = sid[0];
  t->special.unk = sid[1];
  t->special.cls = sid[2];
  t->special.sep = sid[3];
  t->special.mask = sid[4];
  t->vocab_size = wp->n_tokens;

  int lower = opt->lowercase;
  if (lower < 0) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strstr(base, "uncased"))
      lower = 1;
    else if (strstr(base, "cased"))
      lower = 0;
    else
      lower = !vocab_has_upper(wp);
  }
  wp->lowercase = lower != 0;
  wp->strip_accents = opt->strip_accents < 0 ? wp->lowercase : opt->strip_accents != 0;
  wp->chinese = opt->tokenize_chinese_chars != 0;
  wp->cont_state = mb_fnv1a(MB_FNV_BASIS, "##", 2);
  build_ascii_tables(wp);
  if ((rc = build_bmp_table(wp)) != MB_OK)
    goto done;
  snprintf(t->name, sizeof(t->name), "wordpiece-%s%s%s", wp->lowercase ? "uncased" : "cased",
           wp->strip_accents == wp->lowercase ? "" : (wp->strip_accents ? "-strip" : "-keepaccents"),
           wp->chinese ? "" : "-nocjk");
done:
  free(data);
  if (rc != MB_OK) {
    mb_wordpiece_free(wp);
    t->wp = NULL;
  }
  return rc;
}

void mb_wordpiece_free(mb_wordpiece *wp) {
  if (!wp)
    return;
  mb_vmap_free(&wp->vocab);
  free(wp->tok_off);
  free(wp->tok_len);
  mb_added_free(&wp->added);
  free(wp->bmp);
  free(wp->bmp_pool);
  free(wp);
}

/* ---- encoding ---------------------------------------------------------------- */

typedef struct {
  const mb_wordpiece *wp;
  mb_ids *out;
  size_t limit; /* stop when out->n reaches it */
  int full;
  int nchars, overflow;
  size_t wlen;
  uint16_t off[WP_MAX_CHARS + 1]; /* byte offset of each character */
  char word[WP_MAX_CHARS * 4 + 4];
} wp_state;

static int wp_emit(wp_state *st, int32_t id) {
  if (st->out->n >= st->limit) {
    st->full = 1;
    return MB_OK;
  }
  return mb_ids_push(st->out, id);
}

/* WordPiece on the buffered word, then reset it. */
static int wp_flush(wp_state *st) {
  int nch = st->nchars;
  if (nch == 0)
    return MB_OK;
  st->nchars = 0;
  st->wlen = 0;
  const mb_wordpiece *wp = st->wp;
  if (st->overflow) {
    st->overflow = 0;
    return wp_emit(st, wp->unk);
  }
  int32_t pieces[WP_MAX_CHARS];
  uint64_t h[WP_MAX_CHARS + 1];
  int np = 0, start = 0;
  while (start < nch) {
    /* FNV-1a of (## +) word[start..end) for every end in one pass, up to the
     * longest token; then try ends from the longest down. */
    const char *s = st->word + st->off[start];
    size_t maxb = start == 0 ? wp->max_bytes : wp->max_cont_bytes;
    uint64_t hs = start == 0 ? MB_FNV_BASIS : wp->cont_state;
    int end = start;
    while (end < nch && (size_t)(st->off[end + 1] - st->off[start]) <= maxb) {
      hs = mb_fnv1a(hs, st->word + st->off[end], (size_t)(st->off[end + 1] - st->off[end]));
      h[++end] = hs;
    }
    int32_t id = -1;
    while (end > start) {
      size_t n = (size_t)(st->off[end] - st->off[start]);
      id = start == 0 ? mb_vmap_get_hashed(&wp->vocab, h[end], "", 0, s, n)
                      : mb_vmap_get_hashed(&wp->vocab, h[end], "##", 2, s, n);
      if (id >= 0)
        break;
      end--;
    }
    if (id < 0)
      return wp_emit(st, wp->unk);
    pieces[np++] = id;
    start = end;
  }
  for (int i = 0; i < np && !st->full; i++)
    MB_TRY(wp_emit(st, pieces[i]));
  return MB_OK;
}

/* A character after normalization: split on whitespace, isolate punctuation,
 * else add it to the current word. */
static int wp_put(wp_state *st, int32_t c) {
  if (mb_uhf_is_whitespace(c))
    return wp_flush(st);
  if (mb_uhf_is_bert_punct(c)) {
    MB_TRY(wp_flush(st));
    st->off[0] = 0;
    st->wlen = (size_t)mb_utf8_put(c, st->word);
    st->off[1] = (uint16_t)st->wlen;
    st->nchars = 1;
    return wp_flush(st);
  }
  if (st->nchars >= WP_MAX_CHARS) {
    st->overflow = 1; /* counted as too long; keep consuming the word */
    return MB_OK;
  }
  st->off[st->nchars] = (uint16_t)st->wlen;
  st->wlen += (size_t)mb_utf8_put(c, st->word + st->wlen);
  st->nchars++;
  st->off[st->nchars] = (uint16_t)st->wlen;
  return MB_OK;
}

/* Append word characters given as UTF-8 (from the BMP table). */
static int wp_append_utf8(wp_state *st, const char *u, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned char b = (unsigned char)u[i];
    size_t cl = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    if (st->nchars >= WP_MAX_CHARS) {
      st->overflow = 1;
    } else {
      st->off[st->nchars] = (uint16_t)st->wlen;
      memcpy(st->word + st->wlen, u + i, cl);
      st->wlen += cl;
      st->nchars++;
      st->off[st->nchars] = (uint16_t)st->wlen;
    }
    i += cl;
  }
  return MB_OK;
}

/* Lower-casing stage (after accent stripping, as BertNormalizer orders them). */
static int wp_lower_put(wp_state *st, int32_t c) {
  if (!st->wp->lowercase)
    return wp_put(st, c);
  int32_t lo[MB_UHF_MAX_EXPAND];
  int n = mb_uhf_lower(c, lo);
  for (int i = 0; i < n; i++)
    MB_TRY(wp_put(st, lo[i]));
  return MB_OK;
}

static int wp_strip_put(wp_state *st, int32_t c) {
  if (!st->wp->strip_accents)
    return wp_lower_put(st, c);
  int32_t d[MB_UHF_MAX_EXPAND];
  int n = mb_uhf_nfd_strip(c, d);
  for (int i = 0; i < n; i++)
    MB_TRY(wp_lower_put(st, d[i]));
  return MB_OK;
}

/* One segment between added tokens. */
static int wp_segment(wp_state *st, const unsigned char *s, size_t n) {
  const mb_wordpiece *wp = st->wp;
  size_t i = 0;
  while (i < n && !st->full) {
    unsigned char b = s[i];
    if (b < 0x80) {
      i++;
      switch (wp->ascii_class[b]) {
      case 0:
        if (st->nchars >= WP_MAX_CHARS) {
          st->overflow = 1;
        } else {
          st->off[st->nchars] = (uint16_t)st->wlen;
          st->word[st->wlen++] = wp->ascii_lower[b];
          st->nchars++;
          st->off[st->nchars] = (uint16_t)st->wlen;
        }
        break;
      case 1:
        MB_TRY(wp_flush(st));
        break;
      case 2:
        MB_TRY(wp_flush(st));
        st->off[0] = 0;
        st->word[0] = (char)b;
        st->wlen = 1;
        st->off[1] = 1;
        st->nchars = 1;
        MB_TRY(wp_flush(st));
        break;
      default:
        break; /* dropped control character */
      }
      continue;
    }
    int32_t c = mb_utf8_next(s, &i);
    if (c < 0x10000 && wp->bmp[c].kind != BMP_SLOW) {
      const struct bmp_entry *e = &wp->bmp[c];
      if (e->kind == BMP_DROP)
        continue;
      if (e->kind == BMP_SPACE) {
        MB_TRY(wp_flush(st));
        continue;
      }
      if (e->kind == BMP_ISOLATED)
        MB_TRY(wp_flush(st));
      MB_TRY(wp_append_utf8(st, wp->bmp_pool + e->off, e->nbytes));
      if (e->kind == BMP_ISOLATED)
        MB_TRY(wp_flush(st));
      continue;
    }
    if (mb_uhf_is_dropped(c))
      continue;
    if (mb_uhf_is_clean_space(c)) {
      MB_TRY(wp_flush(st));
      continue;
    }
    if (wp->chinese && mb_uhf_is_cjk(c)) {
      MB_TRY(wp_flush(st));
      MB_TRY(wp_strip_put(st, c));
      MB_TRY(wp_flush(st));
      continue;
    }
    MB_TRY(wp_strip_put(st, c));
  }
  return wp_flush(st);
}

int mb_wordpiece_encode(const mb_wordpiece *wp, const char *text, size_t len, size_t limit, mb_ids *out) {
  wp_state st;
  st.wp = wp;
  st.out = out;
  st.limit = limit;
  st.full = 0;
  st.nchars = 0;
  st.overflow = 0;
  st.wlen = 0;
  size_t pos = 0;
  while (pos < len && !st.full) {
    size_t which = 0;
    size_t at = mb_added_find(&wp->added, text, len, pos, &which);
    MB_TRY(wp_segment(&st, (const unsigned char *)text + pos, at - pos));
    if (at >= len)
      break;
    MB_TRY(wp_emit(&st, wp->added.tok[which].id));
    pos = at + wp->added.tok[which].len;
  }
  return MB_OK;
}

/* ---- decoding ------------------------------------------------------------------ */

typedef struct {
  char *p;
  size_t n, cap;
} strbuf;

static int sb_put(strbuf *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->n + n + 1)
      cap *= 2;
    char *p = (char *)realloc(b->p, cap);
    if (!p)
      return MB_ERR(MB_ENOMEM, "tokenizer: out of memory decoding");
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
  return MB_OK;
}

/* The WordPiece decoder's per-token cleanup (tokenizers' decoders::wordpiece::cleanup). */
static size_t cleanup_token(char *s, size_t n) {
  static const char *const from[] = {" .", " ?", " !", " ,", " ' ", " n't", " 'm", " do not", " 's", " 've", " 're"};
  static const char *const to[] = {".", "?", "!", ",", "'", "n't", "'m", " don't", "'s", "'ve", "'re"};
  for (size_t r = 0; r < sizeof(from) / sizeof(from[0]); r++) {
    size_t fl = strlen(from[r]), tl = strlen(to[r]);
    size_t w = 0, i = 0;
    /* to is never longer than from, so the rewrite can run in place. */
    while (i < n) {
      if (i + fl <= n && memcmp(s + i, from[r], fl) == 0) {
        memmove(s + w, to[r], tl);
        w += tl;
        i += fl;
      } else {
        s[w++] = s[i++];
      }
    }
    n = w;
  }
  return n;
}

int mb_wordpiece_decode(const mb_wordpiece *wp, const int32_t *ids, size_t n, char **out) {
  strbuf b = {0};
  char tok[1024];
  int rc = sb_put(&b, "", 0);
  size_t emitted = 0;
  for (size_t i = 0; i < n && rc == MB_OK; i++) {
    int skip = 0;
    for (size_t k = 0; k < wp->added.n; k++)
      skip |= wp->added.tok[k].id == ids[i];
    if (skip)
      continue;
    const char *s = wp->vocab.keys + wp->tok_off[ids[i]];
    size_t len = wp->tok_len[ids[i]];
    size_t tl = 0;
    if (emitted > 0) {
      if (len >= 2 && s[0] == '#' && s[1] == '#') {
        s += 2;
        len -= 2;
      } else {
        tok[tl++] = ' ';
      }
    }
    if (len > sizeof(tok) - 2)
      len = sizeof(tok) - 2;
    memcpy(tok + tl, s, len);
    tl += len;
    tl = cleanup_token(tok, tl);
    rc = sb_put(&b, tok, tl);
    emitted++;
  }
  if (rc != MB_OK) {
    free(b.p);
    return rc;
  }
  *out = b.p;
  return MB_OK;
}
