#!/usr/bin/env bash
# prepare_cli_test.sh BIN: `mambert prepare` end to end on the shipped samples
# and vocabularies (run from the repository root): exit codes, files written,
# the summary, and clear messages for bad flags and bad input.
set -u
bin="$1"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/mambert-prepare-cli-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
fail=0
expect() { # expect CODE PATTERN -- ARGS...
  local code="$1" pat="$2"; shift 3
  local out rc
  out="$("$bin" "$@" 2>&1)"; rc=$?
  if [ "$rc" -ne "$code" ]; then echo "FAIL: mambert $* exited $rc, expected $code"; echo "$out"; fail=1; return; fi
  if ! grep -qE -- "$pat" <<<"$out"; then echo "FAIL: mambert $*: output lacks /$pat/"; echo "$out"; fail=1; fi
}
must_exist() { [ -f "$1" ] || { echo "FAIL: $1 was not written"; fail=1; }; }
must_not_exist() { [ ! -e "$1" ] || { echo "FAIL: $1 should not exist"; fail=1; }; }

V=data/vocab
expect 0 "Usage: mambert prepare" -- prepare --help
expect 2 "are required" -- prepare --dataset imdb
expect 2 "unknown option '--frobnicate'" -- prepare --frobnicate
expect 2 "--max-length 'abc': expected an integer" -- prepare --max-length abc
expect 2 "--dataset 'squad': expected imdb or nsmc" -- prepare --dataset squad --input x --tokenizer y --out z
expect 2 "--split 'dev'" -- prepare --dataset imdb --input x --tokenizer y --out z --split dev

# IMDB with BERT: summary, truncation count, file
expect 0 "prepared imdb/test: 1,000 reviews \(500 negative, 500 positive\)" -- prepare --dataset imdb \
  --input data/samples/imdb/test.tsv.gz --tokenizer $V/bert-base-uncased-vocab.txt --out "$tmp/imdb" \
  --max-length 128 --quiet
must_exist "$tmp/imdb/test.h5"
expect 0 "reviews truncated to 128" -- prepare --dataset imdb --input data/samples/imdb/test.tsv.gz \
  --tokenizer $V/bert-base-uncased-vocab.txt --out "$tmp/imdb" --max-length 128 --quiet
expect 0 "special tokens \[CLS\] \.\.\. \[SEP\]" -- prepare --dataset imdb --input data/samples/imdb/test.tsv.gz \
  --tokenizer $V/bert-base-uncased-vocab.txt --out "$tmp/imdb" --quiet

# NSMC with the BPE tokenizer in two shards, progress lines on a non-terminal
expect 0 "prepare nsmc/train: 2,000/2,000 reviews \(100%\)" -- prepare --dataset nsmc \
  --input data/samples/nsmc/ratings_train.txt.gz --tokenizer $V/gpt-neox-20b-tokenizer.json \
  --out "$tmp/nsmc" --shards 2 --threads 2
must_exist "$tmp/nsmc/train-00000-of-00002.h5"
must_exist "$tmp/nsmc/train-00001-of-00002.h5"
expect 0 "special tokens none" -- prepare --dataset nsmc --input data/samples/nsmc/ratings_train.txt.gz \
  --tokenizer $V/gpt-neox-20b-tokenizer.json --out "$tmp/nsmc" --quiet
must_exist "$tmp/nsmc/train.h5"
must_not_exist "$tmp/nsmc/train-00000-of-00002.h5"
# the other split of that directory with another tokenizer: said at once
expect 0 "nsmc/train.h5 was made with tokenizer 'bpe'.*train and eval refuse to pair them" -- prepare \
  --dataset nsmc --input data/samples/nsmc/ratings_test.txt.gz \
  --tokenizer $V/bert-base-multilingual-cased-vocab.txt --out "$tmp/nsmc" --quiet

# bad input names the file and line; nothing is written
printf 'id\tdocument\tlabel\n1\tgood\t0\n2\tbad label\t7\n' > "$tmp/ratings_test.txt"
expect 1 "ratings_test.txt: line 3: field 'label': expected 0 or 1, found '7'" -- prepare --dataset nsmc \
  --input "$tmp/ratings_test.txt" --tokenizer $V/bert-base-multilingual-cased-vocab.txt --out "$tmp/bad"
must_not_exist "$tmp/bad/test.h5"
expect 1 "no-such-vocab.txt" -- prepare --dataset nsmc --input data/samples/nsmc/ratings_test.txt.gz \
  --tokenizer "$tmp/no-such-vocab.txt" --out "$tmp/bad"
mkdir -p "$tmp/aclImdb/test/neg" "$tmp/aclImdb/test/pos"
printf 'Bad film.' > "$tmp/aclImdb/test/neg/1_2.txt"
printf 'Great film.' > "$tmp/aclImdb/test/pos/3_9.txt"
expect 1 "give the split" -- prepare --dataset imdb --input "$tmp/aclImdb" \
  --tokenizer $V/bert-base-uncased-vocab.txt --out "$tmp/tree"
expect 0 "prepared imdb/test: 2 reviews \(1 negative, 1 positive\)" -- prepare --dataset imdb \
  --input "$tmp/aclImdb" --split test --tokenizer $V/bert-base-uncased-vocab.txt --out "$tmp/tree"
exit $fail
