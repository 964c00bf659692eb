#!/usr/bin/env python3
"""pandas_text_reference.py: what text the reference Python pipeline feeds its
tokenizer for every IMDB and NSMC review, as compact hashes for tests/shards.

The reference reads NSMC with pandas.read_csv(path, sep='\\t') (default CSV
quoting) and IMDB with quoting=csv.QUOTE_NONE (../shared/SOURCES.md). For every row we
serialise  f"{id}\\t{label}\\t{text}\\n"  (text "" where pandas gives NaN: the
empty documents) and record the sha256 of all rows and of each block of 5,000
rows (to find a mismatch quickly), the counts, and a few rows in full.

Run (a Python with pandas 3.1.1, from the repository root):
  python tools/pandas_text_reference.py ../shared/data \
      > tests/shards/fixtures/pandas_text.json
"""
import csv
import hashlib
import json
import sys

import pandas as pd

BLOCK = 5000


def summarise(path, quoting, text_col):
    df = pd.read_csv(path, sep="\t", quoting=quoting)
    texts = ["" if pd.isna(t) else str(t) for t in df[text_col]]
    total = hashlib.sha256()
    blocks = []
    h = hashlib.sha256()
    for i, (rid, lab, t) in enumerate(zip(df["id"], df["label"], texts)):
        row = f"{int(rid)}\t{int(lab)}\t{t}\n".encode("utf-8")
        total.update(row)
        h.update(row)
        if (i + 1) % BLOCK == 0 or i + 1 == len(df):
            blocks.append(h.hexdigest())
            h = hashlib.sha256()
    quoted = [i for i, t in enumerate(texts) if '"' in t]
    empty = [i for i, t in enumerate(texts) if t == ""]
    # NSMC's quirks in full (IMDB has no quoting: nothing to show).
    picks = quoted[:3] + empty[:2] if quoting != csv.QUOTE_NONE else []
    examples = [{"row": i, "id": int(df["id"][i]), "text": texts[i]} for i in picks]
    return {
        "rows": len(df),
        "label_counts": [int((df["label"] == 0).sum()), int((df["label"] == 1).sum())],
        "empty_texts": len(empty),
        "texts_with_quote": len(quoted),
        "sha256": total.hexdigest(),
        "block_rows": BLOCK,
        "block_sha256": blocks,
        "examples": examples,
    }


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
    out = {"pandas": pd.__version__, "serialisation": "id\\tlabel\\ttext\\n per row, utf-8", "splits": {}}
    for name, path, quoting, col in [
        ("imdb/train", "imdb/train.tsv.gz", csv.QUOTE_NONE, "text"),
        ("imdb/test", "imdb/test.tsv.gz", csv.QUOTE_NONE, "text"),
        ("nsmc/train", "nsmc/ratings_train.txt.gz", csv.QUOTE_MINIMAL, "document"),
        ("nsmc/test", "nsmc/ratings_test.txt.gz", csv.QUOTE_MINIMAL, "document"),
    ]:
        out["splits"][name] = summarise(f"{root}/{path}", quoting, col)
    json.dump(out, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
