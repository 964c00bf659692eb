/* unicode_hf.h: code-point properties exactly as the Rust `tokenizers` crate
 * (what Hugging Face fast tokenizers run) sees them. utf8proc gives the
 * Unicode data; the crate mixes several Unicode versions (unicode_categories
 * for control/punctuation/Mn is old, Rust std's to_lowercase and
 * is_whitespace and Oniguruma's \p{L}/\p{N} are newer than utf8proc 2.8's
 * Unicode 15), so data/unicode_hf_tables.h lists the code points where they
 * differ. tools/gen_unicode_hf_tables.py generates it from
 * tools/dump_hf_unicode.py's output; tests/tokenizer checks every code point.
 */
#ifndef MB_DATA_UNICODE_HF_H
#define MB_DATA_UNICODE_HF_H

#include <stdint.h>

#define MB_UHF_MAX_EXPAND 8

/* BertNormalizer clean_text: the character is dropped (NUL, U+FFFD, and
 * "is_other" minus \t \n \r: Cc, Cf and Co as the crate's tables see them). */
int mb_uhf_is_dropped(int32_t c);
/* BertNormalizer clean_text maps it to ' ' (\t \n \r and Rust's White_Space). */
int mb_uhf_is_clean_space(int32_t c);
/* Rust char::is_whitespace (the White_Space property). */
int mb_uhf_is_whitespace(int32_t c);
/* BertPreTokenizer punctuation: ASCII punctuation or Unicode P*. */
int mb_uhf_is_bert_punct(int32_t c);
/* BertNormalizer's CJK ideograph ranges (handle_chinese_chars). */
int mb_uhf_is_cjk(int32_t c);
/* NFD of c with non-spacing marks (Mn) removed; returns the count (0..8). */
int mb_uhf_nfd_strip(int32_t c, int32_t *out);
/* Rust char::to_lowercase (full mapping, no context); returns the count. */
int mb_uhf_lower(int32_t c, int32_t *out);

/* Extra code points to add to PCRE2's \p{L} / \p{N} so the ByteLevel regex
 * classifies as Oniguruma does, as a PCRE2 class fragment ("\x{..}-\x{..}..."). */
const char *mb_uhf_regex_extra_letters(void);
const char *mb_uhf_regex_extra_numbers(void);

#endif
