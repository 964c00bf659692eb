/* dump_unicode.c: prints, for every code point, how our tokenizers treat it,
 * in the format of tools/dump_hf_unicode.py, so the two can be diffed
 * (tools/gen_unicode_hf_tables.py does that to derive the exception tables).
 * Usage: tok_dump_unicode <gpt-neox tokenizer.json> > ours.tsv
 */
#include "unicode_props.h"

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
    tok_uprops p;
    if (tok_uprops_get(t, c, &p) != 0)
      return 1;
    printf("%x\t%c\t%c\t%s\t%s\t%c\t%s\n", (unsigned)c, p.clean, p.punct, p.strip, p.lower, p.bl, p.nfc);
  }
  mb_tokenizer_free(t);
  return 0;
}
