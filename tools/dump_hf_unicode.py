#!/usr/bin/env python3
"""dump_hf_unicode.py: how Hugging Face `tokenizers` treats every code point.

Run: python tools/dump_hf_unicode.py > /tmp/hf_unicode.tsv
(tokenizers 0.23.3), then
  python3 tools/dump_hf_unicode.py --rle tests/tokenizer/fixtures/hf_unicode.txt.gz < /tmp/hf_unicode.tsv Used once to find where the Rust crate's Unicode tables
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
import gzip
import sys

if len(sys.argv) == 3 and sys.argv[1] == "--rle":
    # Compact form for tests/tokenizer/fixtures/hf_unicode.txt.gz:
    #   dump_hf_unicode.py > hf.tsv; dump_hf_unicode.py --rle OUT < hf.tsv
    # lines "lo hi <clean><punct><bl>" for runs whose strip/lower/nfc are
    # unchanged, else "cp cp <clean><punct><bl> strip lower nfc" ('-' = empty).
    rows = [line.rstrip("\n").split("\t") for line in sys.stdin]
    out, i = [], 0
    plain = lambda r: r[3] == "=" and r[4] == "=" and r[6] == "="
    while i < len(rows):
        r = rows[i]
        if plain(r):
            j = i
            while (j + 1 < len(rows) and int(rows[j + 1][0], 16) == int(rows[j][0], 16) + 1 and plain(rows[j + 1])
                   and rows[j + 1][1] == r[1] and rows[j + 1][2] == r[2] and rows[j + 1][5] == r[5]):
                j += 1
            out.append("%s %s %s%s%s" % (r[0], rows[j][0], r[1], r[2], r[5]))
            i = j + 1
        else:
            out.append("%s %s %s%s%s %s %s %s" % (r[0], r[0], r[1], r[2], r[5], r[3] or "-", r[4] or "-", r[6] or "-"))
            i += 1
    with gzip.GzipFile(sys.argv[2], "wb", mtime=0) as g:
        g.write(("# tools/dump_hf_unicode.py --rle: lo hi <clean><punct><bytelevel> [strip lower nfc]\n" +
                 "\n".join(out) + "\n").encode("ascii"))
    sys.exit(0)

from tokenizers import normalizers, pre_tokenizers  # noqa: E402

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
