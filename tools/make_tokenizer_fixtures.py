#!/usr/bin/env python3
"""make_tokenizer_fixtures.py: reference token ids from Hugging Face for the
C tokenizers' parity tests (tests/tokenizer).

Run from the repository root (tokenizers 0.23.3, transformers 5.24.0):
  python tools/make_tokenizer_fixtures.py [--data ../shared/data] [--no-train]
Writes tests/tokenizer/fixtures/:
  edge_cases.json       hand-written texts; ids with special tokens, ids
                        truncated to max_length 8, and the decoded text
  <tok>.<set>.txt.gz    one line per review in file order, then sampled reviews
                        with full ids; <tok> in bert-base-uncased,
                        bert-base-multilingual-cased, gpt-neox-20b; <set> in
                        imdb-test, nsmc-test, imdb-train, nsmc-train
Line format of the .txt.gz files:
  # comment lines
  N <count> <hash bits>
  H <hash hex> [<n ids>]   per review, in file order (train sets: low 32 bits only)
  S <index> <max_length> <id> <id> ...    sampled reviews: full (max_length 0)
                                           and truncated to 128
Hash: FNV-1a 64 over the ids as little-endian int32 bytes (the C test does the
same; offset basis 0xcbf29ce484222325, prime 0x100000001b3).

The tokenizers: BertTokenizerFast(vocab file, do_lower_case=True/False), which
is what bert-base-uncased and WhitePeak/bert-base-cased-Korean-sentiment
(mBERT cased: do_lower_case=False, strip_accents=None) load as; and
tokenizers.Tokenizer.from_file(gpt-neox-20b tokenizer.json). Encodings are
with add_special_tokens=True ([CLS] ... [SEP] for BERT, nothing for GPT-NeoX)
and no truncation.

The text fed for each review (the C test and data/ importers do the same):
  IMDB  <set>.tsv.gz: header `id rating label text`, tab-separated, no
        quoting: the 4th field, bytes as they are.
  NSMC  ratings_<set>.txt.gz: header `id document label`, tab-separated;
        a document that starts with '"' is CSV-quoted (every such row here is
        wholly quoted): drop the outer quotes and turn each '""' into '"'
        (what pandas.read_csv(sep='\\t') and Python's csv module do). The
        original pipeline doubled quotes twice, so one level of '""' remains
        in the text. Empty documents are fed as "".
"""
import argparse
import gzip
import inspect
import json
import os
import random
import struct
import sys

import tokenizers
import transformers
from tokenizers import Tokenizer
from transformers import BertTokenizerFast

FNV_BASIS, FNV_PRIME, MASK64 = 0xCBF29CE484222325, 0x100000001B3, (1 << 64) - 1


def fnv1a(ids):
    h = FNV_BASIS
    for b in struct.pack("<%di" % len(ids), *ids):
        h = ((h ^ b) * FNV_PRIME) & MASK64
    return h


def read_imdb(path):
    texts = []
    with gzip.open(path, "rb") as f:
        lines = f.read().decode("utf-8").split("\n")
    assert lines[0] == "id\trating\tlabel\ttext", lines[0]
    for i, line in enumerate(lines[1:], 2):
        if line == "":
            continue
        fields = line.split("\t")
        assert len(fields) == 4, (path, i)
        texts.append(fields[3])
    return texts


def nsmc_document(field):
    if field.startswith('"'):
        assert len(field) >= 2 and field.endswith('"'), field
        inner = field[1:-1]
        assert '"' not in inner.replace('""', ""), field
        return inner.replace('""', '"')
    return field


def read_nsmc(path):
    texts = []
    with gzip.open(path, "rb") as f:
        lines = f.read().decode("utf-8").split("\n")
    assert lines[0] == "id\tdocument\tlabel", lines[0]
    for i, line in enumerate(lines[1:], 2):
        if line == "":
            continue
        fields = line.split("\t")
        assert len(fields) == 3, (path, i)
        texts.append(nsmc_document(fields[1]))
    return texts


def bert(vocab_path, lower):
    params = inspect.signature(BertTokenizerFast.__init__).parameters
    key = "vocab_file" if "vocab_file" in params else "vocab"  # transformers 5 renamed it
    tok = BertTokenizerFast(**{key: vocab_path}, do_lower_case=lower)
    assert tok.vocab_size > 1000, "the vocabulary was not loaded"
    return tok


EDGE = [
    ("empty", ""),
    ("ascii", "Hello, world! This is a TEST of the tokenizer."),
    ("accents", "Héllo wörld Ünïcödé café naïve résumé Ångström façade"),
    ("special_casing", "İstanbul ΟΔΟΣ ΣΊΣΥΦΟΣ straße ǅemal ﬁne ẞ Ω K Å"),
    ("cjk", "我爱北京天安门。日本語のテキスト、중국어 漢字 𠀀𪚥 豈"),
    ("korean", "아 더빙.. 진짜 짜증나네요 목소리 굳 ㅋ ㅋㅋㅋㅋㅋㅋ 최고!!! 갑니다ㅎㅎ"),
    ("emoji", "I love it 😍🔥👍🏽 👨‍👩‍👧‍👦 🥰 ❤️ ☺︎ 🫠"),
    ("controls", "a\u0000b\u0001c\u007fd\u200be\ufeff f\ufffdg\u00adh\u0890i\u200dj\u2060k\U000e0001l"),
    ("whitespace", "tab\there\nnewline\r\ncrlf\u00a0nbsp\u2003emsp\u3000ideo\u2028ls \u0085nel \u000bvt \u000cff \u180emvs \u200bzw"),
    ("word_100", "a" * 100),
    ("word_101", "a" * 101),
    ("word_120", "supercalifragilistic" * 6),
    ("word_100_chars_101_bytes", "x" * 99 + "é"),
    ("word_101_chars_accented", "é" * 101),
    ("word_100_chars_nfd_longer", "é" * 60 + "a" * 40),
    ("many_spaces", "a  b   c    d" + " " * 30 + "e" + " " * 25 + "f" + " " * 24 + "g" + " " * 48 + "h"),
    ("lead_trail_spaces", "   lead and trail   "),
    ("only_spaces", "  "),
    ("one_space", " "),
    ("newlines", "\n\na\n\nb\t\tc"),
    ("br", "<br /><br />This movie was<br />great. I'd give it 10/10!<br /><br />"),
    ("bert_specials", "[CLS] [SEP] [MASK] [UNK] [PAD] [cls] x[SEP]y [[SEP]] [MASK[SEP]]"),
    ("gpt_specials", "<|endoftext|> hello<|padding|>world <|endoftext|<|endoftext|>"),
    ("punctuation", "Don't stop—it's “quoted” ‘single’ … «guillemets» ¿qué? ¡sí! 1,000.50 $5 #tag @user http://example.com/a_b?c=d&e=f ~`^|\\"),
    ("numbers", "123456789 1234567890123 ١٢٣ ½ ² Ⅻ ⑳ 3.14159"),
    ("combining", "e\u0301 a\u0308 n\u0303 A\u030a \ufb00 \u1e9b\u0323 q\u0307\u0323 \u0958 \u2126"),
    ("scripts", "Привет мир! Γειά σου κόσμε! שלום עולם مرحبا بالعالم नमस्ते दुनिया สวัสดีชาวโลก ქართული"),
    ("kana", "カタカナ ひらがな ｶﾀｶﾅ ＡＢＣ１２３！"),
    ("contractions", "'s 't 're 've 'm 'll 'd 'S 'LL it's I'M we'Re don''t"),
    ("long_punct", "!" * 400 + "?" * 3),
    ("long_letters", "ab" * 700),
    ("long_mixed_word", "déjà" * 80),
    ("new_unicode", "\u166d \u1c89x \u2e43 \U000105c0\U000105c1 \u0890 \u31ef \U0001e030 A\u1c89B"),
    ("math_letters", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐁𝐨𝐥𝐝 ℌ𝔢𝔩𝔩𝔬"),
    ("imdb_like", "This movie was terrible... I mean REALLY terrible!!! The acting (if you can call it that) was 2/10. "
                  "Don't waste your $10 on it.<br /><br />Rating: 1/10 -- avoid!!"),
    ("nsmc_like", '"너무재밓었다그래서보는것을추천한다" ""진짜"" 최고의 영화... 10점 만점에 10점!!'),
    ("tabs_mixed", "a\tb \t c\u00a0\u00a0d"),
    ("private_use", "x\ue000y\U000f0000z"),
    ("greek_final_sigma", "ΣΊΣΥΦΟΣ ὈΔΥΣΣΕΎΣ"),
    ("turkish_dotless", "DIŞ İÇ ı i̇"),
    ("apostrophes", "rock'n'roll ʼn ’s O’Neil"),
]


def write_edge(path, toks):
    cases = []
    for name, text in EDGE:
        c = {"name": name, "text": text}
        for tname, (tok, is_bert) in toks.items():
            if is_bert:
                backend = tok.backend_tokenizer
                backend.no_truncation()
                ids = tok(text, add_special_tokens=True)["input_ids"]
                assert backend.encode(text).ids == ids
                trunc = tok(text, add_special_tokens=True, truncation=True, max_length=8)["input_ids"]
            else:
                backend = tok
                ids = tok.encode(text).ids
                tok.enable_truncation(max_length=8)
                trunc = tok.encode(text).ids
                tok.no_truncation()
            c[tname] = {"ids": ids, "trunc8": trunc, "decoded": backend.decode(ids, skip_special_tokens=True)}
        cases.append(c)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"made_by": "tools/make_tokenizer_fixtures.py", "tokenizers": tokenizers.__version__,
                   "transformers": transformers.__version__, "cases": cases}, f, ensure_ascii=True, indent=0)
        f.write("\n")


def write_set(path, tname, setname, texts, tok, is_bert, hash_bits):
    backend = tok.backend_tokenizer if is_bert else tok
    backend.no_truncation()
    encs = backend.encode_batch(texts, add_special_tokens=True)
    rng = random.Random(1234)
    sample = sorted(set(rng.sample(range(len(texts)), min(200, len(texts)))) |
                    {max(range(len(texts)), key=lambda i: len(texts[i]))} |
                    {min(range(len(texts)), key=lambda i: len(texts[i]))})
    with gzip.GzipFile(path, "wb", mtime=0) as g:
        w = lambda s: g.write(s.encode("ascii"))
        w("# tools/make_tokenizer_fixtures.py; tokenizers %s transformers %s\n" % (tokenizers.__version__,
                                                                                transformers.__version__))
        w("# tokenizer %s set %s add_special 1\n" % (tname, setname))
        w("N %d %d\n" % (len(texts), hash_bits))
        for e in encs:
            h = fnv1a(e.ids)
            if hash_bits == 64:
                w("H %016x %d\n" % (h, len(e.ids)))
            else:
                w("H %08x\n" % (h & 0xFFFFFFFF))
        for i in sample:
            ids = encs[i].ids
            if is_bert:
                backend.no_truncation()
                assert tok(texts[i])["input_ids"] == ids
                t128 = tok(texts[i], truncation=True, max_length=128)["input_ids"]
            else:
                tok.enable_truncation(max_length=128)
                t128 = tok.encode(texts[i]).ids
                tok.no_truncation()
            w("S %d 0 %s\n" % (i, " ".join(map(str, ids))))
            w("S %d 128 %s\n" % (i, " ".join(map(str, t128))))
    return sum(len(e.ids) for e in encs)


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--data", default=os.path.join(here, "..", "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "tokenizer", "fixtures"))
    ap.add_argument("--no-train", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    v = os.path.join(a.data, "vocab")
    toks = {
        "bert-base-uncased": (bert(os.path.join(v, "bert-base-uncased-vocab.txt"), True), True),
        "bert-base-multilingual-cased": (bert(os.path.join(v, "bert-base-multilingual-cased-vocab.txt"), False), True),
        "gpt-neox-20b": (Tokenizer.from_file(os.path.join(v, "gpt-neox-20b-tokenizer.json")), False),
    }
    write_edge(os.path.join(a.out, "edge_cases.json"), toks)
    sets = [("imdb-test", lambda: read_imdb(os.path.join(a.data, "imdb", "test.tsv.gz")), 64),
            ("nsmc-test", lambda: read_nsmc(os.path.join(a.data, "nsmc", "ratings_test.txt.gz")), 64)]
    if not a.no_train:
        sets += [("imdb-train", lambda: read_imdb(os.path.join(a.data, "imdb", "train.tsv.gz")), 32),
                 ("nsmc-train", lambda: read_nsmc(os.path.join(a.data, "nsmc", "ratings_train.txt.gz")), 32)]
    for setname, reader, bits in sets:
        texts = reader()
        for tname, (tok, is_bert) in toks.items():
            n = write_set(os.path.join(a.out, "%s.%s.txt.gz" % (tname, setname)), tname, setname, texts, tok,
                          is_bert, bits)
            print("%-30s %-11s %6d reviews %9d ids" % (tname, setname, len(texts), n), flush=True)


if __name__ == "__main__":
    sys.exit(main())
