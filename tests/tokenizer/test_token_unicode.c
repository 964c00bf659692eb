/* test_token_unicode.c: every Unicode code point (all 1,112,064 scalar
 * values) treated exactly as Hugging Face tokenizers treats it: dropped by
 * clean_text or mapped to a space, BertPreTokenizer whitespace/punctuation,
 * NFD with Mn stripped, Rust lower-casing, the ByteLevel regex class, NFC.
 * The reference is tests/tokenizer/fixtures/hf_unicode.txt.gz
 * (tools/dump_hf_unicode.py). This guards the exception tables in
 * data/unicode_hf_tables.h against a different utf8proc or PCRE2 version.
 * Needs the GPT-NeoX tokenizer.json for the regex; skips (77) without it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "tok_test_util.h"
#include "unicode_props.h"

static mb_tokenizer *bpe;

static void test_every_code_point(void **state) {
  (void)state;
  char *fx = tok_read_file(TOK_FIXTURES "/hf_unicode.txt.gz", NULL);
  assert_non_null(fx);
  long checked = 0, bad = 0;
  int32_t next = 0;
  for (char *line = strtok(fx, "\n"); line; line = strtok(NULL, "\n")) {
    if (line[0] == '#')
      continue;
    unsigned lo, hi;
    char cls[4], st[96] = "=", lw[96] = "=", nf[96] = "=";
    int f = sscanf(line, "%x %x %3s %95s %95s %95s", &lo, &hi, cls, st, lw, nf);
    assert_true(f == 3 || f == 6);
    assert_int_equal((int32_t)lo, next); /* the runs cover every code point in order */
    char *res[3] = {st, lw, nf};
    for (int i = 0; i < 3; i++)
      if (strcmp(res[i], "-") == 0)
        res[i][0] = 0;
    for (uint32_t c = lo; c <= hi; c++) {
      tok_uprops p;
      assert_int_equal(tok_uprops_get(bpe, (int32_t)c, &p), 0);
      int ok = p.clean == cls[0] && p.punct == cls[1] && p.bl == cls[2] && !strcmp(p.strip, st) &&
               !strcmp(p.lower, lw) && !strcmp(p.nfc, nf);
      if (!ok && bad++ < 10)
        fprintf(stderr, "U+%04X: hf %c%c%c strip[%s] lower[%s] nfc[%s]; ours %c%c%c strip[%s] lower[%s] nfc[%s]\n",
                c, cls[0], cls[1], cls[2], st, lw, nf, p.clean, p.punct, p.bl, p.strip, p.lower, p.nfc);
      checked++;
    }
    next = (int32_t)hi + 1;
    if (next == 0xD800)
      next = 0xE000;
  }
  free(fx);
  fprintf(stderr, "%ld code points checked, %ld differ\n", checked, bad);
  assert_int_equal(next, 0x110000);
  assert_int_equal(checked, 1112064);
  assert_int_equal(bad, 0);
}

int main(void) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/gpt-neox-20b-tokenizer.json", tok_vocab_dir());
  if (!tok_file_exists(path)) {
    printf("skipped: %s not found (set MAMBERT_DATA_DIR)\n", path);
    return 77;
  }
  if (mb_tokenizer_load(path, NULL, &bpe) != MB_OK) {
    fprintf(stderr, "%s\n", mb_error_message());
    return 1;
  }
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_every_code_point)};
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  mb_tokenizer_free(bpe);
  return rc;
}
