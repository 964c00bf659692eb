#!/usr/bin/env python3
"""train_wordpiece_vocab.py: a cased WordPiece vocabulary (BERT's vocab.txt
format) learned from a data set's training texts with Hugging Face
tokenizers, for corpora the shipped vocabularies cover badly. The motivating
case: mBERT's vocabulary maps 1.7% of NSMC's tokens to [UNK] (30% of the
reviews have one), because WordPiece drops a whole word when one piece is
missing: ㅋㅋ, ㅠㅠ and even 재밌다 become [UNK] (experiments/RESULTS.md).

The pre-tokenisation and normalisation are BERT's cased ones (no
lower-casing and no accent stripping: NFD would split Hangul syllables into
jamo), exactly what mambert's WordPiece tokenizer does with a vocabulary
whose file name says "cased"; special tokens [PAD] [UNK] [CLS] [SEP] [MASK]
first. Only the training split is read, so the test set stays unseen.

Needs `tokenizers` (a virtual environment outside the repo); mambert loads
the result with no Python:

  python tools/train_wordpiece_vocab.py ../shared/data/nsmc/ratings_train.txt.gz \\
      --vocab-size 16000 --out runs/vocab/nsmc-wordpiece-cased-16k-vocab.txt

Not reproducible to the byte: tokenizers' trainer seeds its hash maps per
process (threads do not matter: TOKENIZERS_PARALLELISM=false changes
nothing), so characters and merges of equal count are ordered differently on
each run. Two runs (and a run and the shipped
data/vocab/nsmc-wordpiece-cased-16k-vocab.txt, sha256 eed47628...) share all
but about 10 of the 16,000 tokens, with the same coverage ([UNK] 0.00%,
16.0 tokens per review), in another order, so other ids: a model trained
with one vocabulary needs that file. An existing --out is kept unless
--force.
"""
import argparse
import gzip
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bow_baseline import load  # noqa: E402  (the same TSV reader: NSMC or IMDB)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("train", help="training split (.txt/.tsv, optionally .gz)")
    ap.add_argument("--vocab-size", type=int, default=16000)
    ap.add_argument("--min-frequency", type=int, default=2)
    ap.add_argument("--out", required=True, help="vocab.txt to write (its directory is created); its name should "
                    "contain 'cased'")
    ap.add_argument("--force", action="store_true", help="replace an existing --out (a shipped vocabulary: models "
                    "trained with it need its ids)")
    a = ap.parse_args()
    if "cased" not in os.path.basename(a.out) or "uncased" in os.path.basename(a.out):
        ap.error("--out: the file name must say 'cased' (mambert infers the casing from it)")
    if os.path.exists(a.out) and not a.force:
        ap.error(f"--out {a.out} exists: give another path, or --force to replace it (a rerun does not reproduce "
                 "a vocabulary byte for byte, and models trained with it need its ids)")
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    from tokenizers import BertWordPieceTokenizer

    texts, _ = load(a.train)
    tok = BertWordPieceTokenizer(clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False)
    tok.train_from_iterator(texts, vocab_size=a.vocab_size, min_frequency=a.min_frequency,
                            special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
                            limit_alphabet=3000, wordpieces_prefix="##", show_progress=False)
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    tmp = a.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for t, _ in vocab:
            f.write(t + "\n")
    os.replace(tmp, a.out)
    # how much of the training text falls to [UNK] with it
    unk = tok.token_to_id("[UNK]")
    n = u = rows_u = 0
    for enc in tok.encode_batch(texts):
        ids = enc.ids
        n += len(ids)
        k = sum(1 for i in ids if i == unk)
        u += k
        rows_u += k > 0
    print(f"{a.out}: {len(vocab)} tokens from {len(texts)} texts; [UNK] {100 * u / max(n, 1):.2f}% of tokens, "
          f"in {100 * rows_u / max(len(texts), 1):.1f}% of texts; {n / max(len(texts), 1):.1f} tokens per text")


if __name__ == "__main__":
    main()
