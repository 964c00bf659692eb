/* unicode_props.h: how our tokenizers treat one code point, in the terms of
 * tools/dump_hf_unicode.py (clean / punct / strip / lower / ByteLevel class /
 * NFC), shared by tok_dump_unicode and the token_unicode test. */
#ifndef MB_TESTS_UNICODE_PROPS_H
#define MB_TESTS_UNICODE_PROPS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "data/tokenizer_impl.h"
#include "data/unicode_hf.h"

typedef struct {
  char clean, punct, bl;
  char strip[96], lower[96], nfc[96]; /* "=" unchanged, "" empty, else hex list */
} tok_uprops;

static inline void tok_uprops_enc(const int32_t *v, int n, int32_t c, char *out) {
  if (n == 1 && v[0] == c) {
    strcpy(out, "=");
    return;
  }
  out[0] = 0;
  for (int i = 0; i < n; i++)
    sprintf(out + strlen(out), i ? ",%x" : "%x", (unsigned)v[i]);
}

/* bpe: a loaded byte-level BPE tokenizer (for its pre-tokenizer regex). */
static inline int tok_uprops_get(const mb_tokenizer *bpe, int32_t c, tok_uprops *p) {
  p->clean = mb_uhf_is_dropped(c) ? '-' : (mb_uhf_is_clean_space(c) && c != ' ') ? 's' : '.';
  p->punct = mb_uhf_is_whitespace(c) ? 'w' : mb_uhf_is_bert_punct(c) ? 'p' : '.';
  int32_t v[MB_UHF_MAX_EXPAND];
  tok_uprops_enc(v, mb_uhf_nfd_strip(c, v), c, p->strip);
  tok_uprops_enc(v, mb_uhf_lower(c, v), c, p->lower);
  /* ByteLevel class as dump_hf_unicode.py probes it: does c join a letter,
   * a digit, or '!' into one pre-token? */
  char buf[8], u[4];
  int n = mb_utf8_put(c, u);
  size_t k[3];
  const char lead[3] = {'a', '1', '!'};
  for (int i = 0; i < 3; i++) {
    buf[0] = lead[i];
    memcpy(buf + 1, u, (size_t)n);
    if (mb_bpe_count_pretokens(bpe->bpe, buf, (size_t)n + 1, &k[i]) != MB_OK)
      return -1;
  }
  p->bl = k[0] == 1 ? 'L' : k[1] == 1 ? 'N' : k[2] == 1 ? 'O' : 'S';
  if (c == 0) { /* utf8proc_map works on NUL-terminated text */
    strcpy(p->nfc, "=");
    return 0;
  }
  utf8proc_uint8_t *m = NULL;
  int32_t w[8];
  int nw = 0;
  if (utf8proc_map((const utf8proc_uint8_t *)u, n, &m, UTF8PROC_STABLE | UTF8PROC_COMPOSE) > 0) {
    size_t i = 0, ml = strlen((const char *)m);
    while (i < ml && nw < 8)
      w[nw++] = mb_utf8_next(m, &i);
  }
  free(m);
  tok_uprops_enc(w, nw, c, p->nfc);
  return 0;
}

#endif
