#!/usr/bin/env python3
"""bow_baseline.py: a bag-of-n-grams logistic regression over a tokenizer's
token ids, the peer that tells whether a small classifier trained from
scratch learned more than which tokens occur (experiments/RESULTS.md,
nsmc-bert). TF-IDF (sublinear tf, min_df 2) of token-id n-grams, then
scikit-learn's LogisticRegression (C 2), trained on the whole training set
and scored on the whole test set.

Needs tokenizers and scikit-learn (a virtual environment outside the repo);
mambert never does.

  python tools/bow_baseline.py ../shared/data/nsmc/ratings_train.txt.gz \\
      ../shared/data/nsmc/ratings_test.txt.gz \\
      --vocab data/vocab/bert-base-multilingual-cased-vocab.txt --cased
  python tools/bow_baseline.py ... --tokenizer data/vocab/gpt-neox-20b-tokenizer.json
"""
import argparse
import csv
import gzip
import json
import sys


def load(path):
    """(texts, labels) of an NSMC .txt[.gz] (id, document, label) or an
    IMDB .tsv[.gz] (id, rating, label, text): the columns are found by name."""
    opener = gzip.open if path.endswith(".gz") else open
    csv.field_size_limit(sys.maxsize)
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(rows)
        text_col = header.index("document") if "document" in header else header.index("text")
        label_col = header.index("label")
        texts, labels = [], []
        for r in rows:
            if len(r) <= max(text_col, label_col):
                continue
            texts.append(r[text_col])
            labels.append(int(r[label_col]))
    return texts, labels


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("train")
    ap.add_argument("test")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--vocab", help="WordPiece vocab.txt")
    g.add_argument("--tokenizer", help="tokenizer.json (BPE)")
    ap.add_argument("--cased", action="store_true", help="WordPiece: no lower-casing, no accent stripping")
    ap.add_argument("--ngrams", default="1,2", help="n-gram orders to report, e.g. 1,2 (each as 1..n)")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from tokenizers import BertWordPieceTokenizer, Tokenizer

    if a.vocab:
        tok = BertWordPieceTokenizer(a.vocab, lowercase=not a.cased)  # accents stripped iff lower-cased, as HF
        name = a.vocab
    else:
        tok = Tokenizer.from_file(a.tokenizer)
        name = a.tokenizer
    xtr, ytr = load(a.train)
    xte, yte = load(a.test)

    def ids(texts):
        return [" ".join(map(str, e.ids)) for e in tok.encode_batch(texts)]

    tr, te = ids(xtr), ids(xte)
    results = []
    for n in [int(v) for v in a.ngrams.split(",")]:
        vec = TfidfVectorizer(token_pattern=r"\S+", ngram_range=(1, n), min_df=2, sublinear_tf=True)
        ftr = vec.fit_transform(tr)
        fte = vec.transform(te)
        clf = LogisticRegression(C=2, max_iter=1000).fit(ftr, ytr)
        r = {"tokenizer": name, "ngrams": n, "features": ftr.shape[1],
             "train_accuracy": clf.score(ftr, ytr), "test_accuracy": clf.score(fte, yte),
             "train": len(ytr), "test": len(yte)}
        results.append(r)
        print(f"1..{n}-grams of {name}: {r['features']} features, train accuracy {r['train_accuracy']:.4f}, "
              f"test accuracy {r['test_accuracy']:.4f} ({r['test']} examples)", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
