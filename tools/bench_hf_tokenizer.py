#!/usr/bin/env python3
"""bench_hf_tokenizer.py: Hugging Face `tokenizers` single-thread encode times
on the IMDB and NSMC test sets, for bench/bench_tokenizer.c to compare with.

Run from the repository root (tokenizers 0.23.3), then the C bench:
  python tools/bench_hf_tokenizer.py --out /tmp/hf_bench.json
  build/bench_tokenizer --hf /tmp/hf_bench.json --json /tmp/bench_tokenizer.json
Single thread: RAYON_NUM_THREADS=1 is set before tokenizers is imported, so
encode_batch runs on one thread too. Texts are read exactly as the C side
reads them (tools/make_tokenizer_fixtures.py's readers). Times are the best of
--reps passes over all reviews: one encode() call per review, and one
encode_batch() over all reviews; add_special_tokens=True, no truncation.
"""
import os

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tokenizer_fixtures as fx  # noqa: E402
import tokenizers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(here, "..", "..", "shared", "data"))
    ap.add_argument("--out", default="hf_bench.json")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    v = os.path.join(a.data, "vocab")
    toks = {
        "bert-base-uncased": fx.bert(os.path.join(v, "bert-base-uncased-vocab.txt"), True).backend_tokenizer,
        "bert-base-multilingual-cased":
            fx.bert(os.path.join(v, "bert-base-multilingual-cased-vocab.txt"), False).backend_tokenizer,
        "gpt-neox-20b": Tokenizer.from_file(os.path.join(v, "gpt-neox-20b-tokenizer.json")),
    }
    sets = {"imdb-test": fx.read_imdb(os.path.join(a.data, "imdb", "test.tsv.gz")),
            "nsmc-test": fx.read_nsmc(os.path.join(a.data, "nsmc", "ratings_test.txt.gz"))}
    results = []
    for sname, texts in sets.items():
        nbytes = sum(len(t.encode("utf-8")) for t in texts)
        for tname, tok in toks.items():
            tok.no_truncation()
            one, batch, ntok = 1e30, 1e30, 0
            for _ in range(a.reps):
                t0 = time.perf_counter()
                n = 0
                for t in texts:
                    n += len(tok.encode(t, add_special_tokens=True).ids)
                one = min(one, time.perf_counter() - t0)
                ntok = n
                t0 = time.perf_counter()
                tok.encode_batch(texts, add_special_tokens=True)
                batch = min(batch, time.perf_counter() - t0)
            results.append({"tokenizer": tname, "set": sname, "bytes": nbytes, "tokens": ntok,
                            "one_by_one_s": one, "batch_s": batch})
            print("%-29s %-10s %6.1f MB  one-by-one %6.2f MB/s  batch %6.2f MB/s" %
                  (tname, sname, nbytes / 1e6, nbytes / 1e6 / one, nbytes / 1e6 / batch), flush=True)
    with open(a.out, "w") as f:
        json.dump({"tool": "tools/bench_hf_tokenizer.py", "tokenizers": tokenizers.__version__,
                   "threads": 1, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
