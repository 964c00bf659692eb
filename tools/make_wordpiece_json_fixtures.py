#!/usr/bin/env python3
"""Write tests/tokenizer/fixtures/wordpiece_json: BERT tokenizer.json files as
Hugging Face saves them (transformers 5 writes only this file for BERT), and
the ids HF's tokenizers gives for a set of texts.

A small vocabulary (vocab.txt): the special tokens, every piece that
bert-base-multilingual-cased's tokenizer makes of the texts under each option
set, and ASCII letters, digits and punctuation alone and as ##pieces. Then one
tokenizer.json per option set (uncased, cased, uncased keeping accents,
uncased without CJK splitting) and expected_ids.json. Also
bert_tiny.tokenizer.json: tests/fixtures/models/bert_tiny's vocab.txt as
tokenizer.json (tests/cli/predict_export_test.sh).

Needs transformers and tokenizers (a venv outside the repository):
    python tools/make_wordpiece_json_fixtures.py
"""
import json
import os
import string

from tokenizers import Tokenizer
from transformers import BertTokenizerFast

OUT = "tests/tokenizer/fixtures/wordpiece_json"
TEXTS = ["A wonderful film!", "Café déjà vu, NAÏVE résumé", "東京 and 北京 films", "Ⅻ ½ ﬁne",
         "the movie was [SEP] great [MASK]", "don't stop", "   spaces\tand\nlines  ", "",
         "Hello, World... 영화가 좋다 정말", "e\u0301 combining", "\u200bzero\u200dwidth", "unaffable is a word",
         "UNAFFABLE", "über straße Straße", "emoji 👍 and 😀", "a" * 120, "x\x00y control\x07",
         "The Movie Was TERRIBLE, really terrible.", "너무 재밌었다 ㅋㅋ", "I'd rate it 10/10 -- no, 9.5"]
OPTIONS = [("uncased", dict(do_lower_case=True)), ("cased", dict(do_lower_case=False)),
           ("uncased-keepaccents", dict(do_lower_case=True, strip_accents=False)),
           ("uncased-nocjk", dict(do_lower_case=True, tokenize_chinese_chars=False))]


def main():
    os.makedirs(OUT, exist_ok=True)
    full = "data/vocab/bert-base-multilingual-cased-vocab.txt"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    seen = set(vocab)
    for _, kw in OPTIONS:
        t = BertTokenizerFast(vocab=full, **kw)
        for x in TEXTS:
            for tok in t.tokenize(x):
                if tok not in seen:
                    seen.add(tok)
                    vocab.append(tok)
    for c in string.ascii_letters + string.digits + string.punctuation:
        for tok in (c, "##" + c):
            if tok not in seen:
                seen.add(tok)
                vocab.append(tok)
    vocab_path = os.path.join(OUT, "vocab.txt")
    with open(vocab_path, "w") as f:
        f.write("\n".join(vocab) + "\n")
    res = {"texts": TEXTS, "ids": {}}
    for name, kw in OPTIONS:
        path = os.path.join(OUT, f"{name}.tokenizer.json")
        BertTokenizerFast(vocab=vocab_path, **kw).backend_tokenizer.save(path)
        tk = Tokenizer.from_file(path)
        res["ids"][name] = [tk.encode(x).ids for x in TEXTS]
    with open(os.path.join(OUT, "expected_ids.json"), "w") as f:
        json.dump(res, f, ensure_ascii=True)
    BertTokenizerFast(vocab="tests/fixtures/models/bert_tiny/vocab.txt").backend_tokenizer.save(
        os.path.join(OUT, "bert_tiny.tokenizer.json"))
    print(f"{len(vocab)} tokens; wrote {OUT}")


if __name__ == "__main__":
    main()
