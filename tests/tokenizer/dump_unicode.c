/* dump_unicode.c: prints, for every code point, how our tokenizers treat it,
 * in the format of tools/dump_hf_unicode.py, so the two can be diffed
 * (tools/gen_unicode_hf_tables.py does that to derive the exception tables).
 * Usage: tok_dump_unicode <gpt-neox tokenizer.json> > ours.tsv
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "data/tokenizer_impl.h"
#include "data/unicode_hf.h"

static void enc(const int32_t *v, int n, int32_t c, char *out) {
  if (n == 1 && v[0] == c) {
    strcpy(out, "=");
    return;
  }
  out[0] = 0;
  for (int i = 0; i < n; i++)
    sprintf(out + strlen(out), i ? ",%x" : "%x", (unsigned)v[i]);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s tokenizer.json\n", argv[0]);
    return 2;
  }
  mb_tokenizer *t;
  if (mb_tokenizer_load(argv[1], NULL, &t) != MB_OK) {
    fprintf(stderr, "%s\n", mb_error_message());
    return 1;
  }
  for (int32_t c = 0; c < 0x110000; c++) {
    if (c >= 0xD800 && c <= 0xDFFF)
      continue;
    char cl = mb_uhf_is_dropped(c) ? '-' : (mb_uhf_is_clean_space(c) && c != ' ') ? 's' : '.';
    char pu = mb_uhf_is_whitespace(c) ? 'w' : mb_uhf_is_bert_punct(c) ? 'p' : '.';
    int32_t v[MB_UHF_MAX_EXPAND];
    char st[128], lo[128];
    enc(v, mb_uhf_nfd_strip(c, v), c, st);
    enc(v, mb_uhf_lower(c, v), c, lo);
    char buf[8], u[4];
    int n = mb_utf8_put(c, u);
    size_t ka, kd, kq;
    buf[0] = 'a';
    memcpy(buf + 1, u, (size_t)n);
    if (mb_bpe_count_pretokens(t->bpe, buf, (size_t)n + 1, &ka) != MB_OK)
      return 1;
    buf[0] = '1';
    if (mb_bpe_count_pretokens(t->bpe, buf, (size_t)n + 1, &kd) != MB_OK)
      return 1;
    buf[0] = '!';
    if (mb_bpe_count_pretokens(t->bpe, buf, (size_t)n + 1, &kq) != MB_OK)
      return 1;
    char k = ka == 1 ? 'L' : kd == 1 ? 'N' : kq == 1 ? 'O' : 'S';
    /* NFC of a single character through the BPE encoder is not exposed;
     * utf8proc's NFC of one code point: */
    char nfc[128];
    {
      utf8proc_uint8_t *m = NULL;
      int32_t w[8];
      int nw = 0;
      if (utf8proc_map((const utf8proc_uint8_t *)u, n, &m, UTF8PROC_STABLE | UTF8PROC_COMPOSE) > 0) {
        size_t k2 = 0, ml = strlen((const char *)m);
        while (k2 < ml && nw < 8)
          w[nw++] = mb_utf8_next(m, &k2);
      }
      free(m);
      if (c == 0) /* strlen cannot see a NUL */
        strcpy(nfc, "=");
      else
        enc(w, nw, c, nfc);
    }
    printf("%x\t%c\t%c\t%s\t%s\t%c\t%s\n", (unsigned)c, cl, pu, st, lo, k, nfc);
  }
  mb_tokenizer_free(t);
  return 0;
}
