#!/usr/bin/env python3
"""make_samples.py: the small balanced samples of IMDB and NSMC shipped in
data/samples/ (for the demo and the tests; no network, no ../shared/data needed).

Rule (data/samples/README.md): for each data set, split and label, order the
rows by sha256("<dataset>/<split>/<id>") (hex, ascending) and keep the first
K: 1,000 per label for train, 500 per label for test. The kept rows are
written byte for byte as in the source file (header included, NSMC's quoting
untouched), in the source file's order, gzip level 9 with no name and mtime 0
(so the output bytes depend only on the input and zlib).

Run from the repository root (standard library only; any Python 3):
  python3 tools/make_samples.py ../shared/data data/samples
"""
import gzip
import hashlib
import os
import sys

PER_LABEL = {"train": 1000, "test": 500}
FILES = [
    # dataset, split, source and output path (under the roots), label field
    # (NSMC's label is the last field: its quoted documents hold no tab)
    ("imdb", "train", "imdb/train.tsv.gz", 2),
    ("imdb", "test", "imdb/test.tsv.gz", 2),
    ("nsmc", "train", "nsmc/ratings_train.txt.gz", -1),
    ("nsmc", "test", "nsmc/ratings_test.txt.gz", -1),
]


def main():
    src_root = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
    out_root = sys.argv[2] if len(sys.argv) > 2 else "data/samples"
    for dataset, split, path, label_col in FILES:
        with gzip.open(os.path.join(src_root, path), "rb") as f:
            lines = f.read().split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        header, rows = lines[0], lines[1:]
        by_label = {b"0": [], b"1": []}
        for i, row in enumerate(rows):
            fields = row.split(b"\t")
            rid, label = fields[0].decode(), fields[label_col]
            key = hashlib.sha256(f"{dataset}/{split}/{rid}".encode()).hexdigest()
            by_label[label].append((key, i))
        keep = []
        for label in (b"0", b"1"):
            keep += [i for _, i in sorted(by_label[label])[: PER_LABEL[split]]]
        keep.sort()
        out_path = os.path.join(out_root, path)
        os.makedirs(os.path.dirname(out_path), exist_ok=True)
        with open(out_path, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=raw, mtime=0) as gz:
                gz.write(header + b"\n")
                for i in keep:
                    gz.write(rows[i] + b"\n")
        print(f"{out_path}: {len(keep)} rows")


if __name__ == "__main__":
    main()
