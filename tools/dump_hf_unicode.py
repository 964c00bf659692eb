#!/usr/bin/env python3
"""dump_hf_unicode.py: how Hugging Face `tokenizers` treats every code point.

Run: /work/venv/bin/python tools/dump_hf_unicode.py > /tmp/hf_unicode.tsv
(tokenizers 0.23.3). Used once to find where the Rust crate's Unicode tables
(unicode_categories, unicode-normalization-alignments, onig, Rust std) differ
from utf8proc/PCRE2, which our C tokenizers use; the differences are mirrored
in data/unicode_hf.c and checked by tests/tokenizer (see the exception list
there). Output, one line per code point (surrogates skipped):
  cp<TAB>clean<TAB>punct<TAB>strip<TAB>lower<TAB>bl<TAB>nfc
clean: '-' dropped by clean_text, 's' mapped to space, '.' kept
punct: 'p' BertPreTokenizer splits it off as punctuation, 'w' splits on it as
       whitespace, '.' neither
strip/lower/nfc: hex code points of the result ('=' if unchanged)
bl: the ByteLevel/GPT-2 regex class: 'L' letter, 'N' number, 'S' space, 'O' other
"""
import sys
from tokenizers import normalizers, pre_tokenizers

clean = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False)
strip = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=True, lowercase=False)
lower = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=False, lowercase=True)
nfc = normalizers.NFC()
bert_pre = pre_tokenizers.BertPreTokenizer()
bl = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


def enc(s, c):
    return "=" if s == c else ",".join("%x" % ord(x) for x in s)


out = sys.stdout
for cp in range(0x110000):
    if 0xD800 <= cp <= 0xDFFF:
        continue
    c = chr(cp)
    r = clean.normalize_str(c)
    cl = "-" if r == "" else ("s" if r == " " and c != " " else ".")
    parts = [p for p, _ in bert_pre.pre_tokenize_str("a" + c + "a")]
    if parts == ["a", c, "a"]:
        pu = "p"
    elif parts == ["a", "a"]:
        pu = "w"
    else:
        pu = "."
    # ByteLevel class: after a letter does it join (L), after a digit (N),
    # does "x" + c + "x" stay one piece apart, etc.
    a = [p for p, _ in bl.pre_tokenize_str("a" + c)]
    d = [p for p, _ in bl.pre_tokenize_str("1" + c)]
    q = [p for p, _ in bl.pre_tokenize_str("!" + c)]
    if len(a) == 1:
        k = "L"
    elif len(d) == 1:
        k = "N"
    elif len(q) == 1:
        k = "O"
    else:
        k = "S"
    out.write("%x\t%s\t%s\t%s\t%s\t%s\t%s\n" % (cp, cl, pu, enc(strip.normalize_str(c), c),
                                               enc(lower.normalize_str(c), c), k, enc(nfc.normalize_str(c), c)))
