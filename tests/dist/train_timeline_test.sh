#!/usr/bin/env bash
# train_timeline_test.sh BIN CHECK MPIEXEC: log.timeline through the real
# `mambert train` on 2 ranks. With small gradient buckets (train.bucket_mb)
# the recorded step's Chrome traces (timeline-rank-R.json per rank and
# timeline.json with both) must exist, be valid JSON, and show several
# all-reduces, one at least starting before the backward's last op ends;
# the summary goes to the log and metrics.jsonl. With one bucket (25 MiB) no
# all-reduce can start before the backward ends, and the checker says so.
# CHECK is dist_check. Skipped (77) without mpirun.
set -u
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
check="$2"
mpiexec="${3:-mpirun}"
command -v "$mpiexec" >/dev/null || { echo "no $mpiexec: skipped"; exit 77; }
tmp="$(mktemp -d /tmp/mb_disttl_XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/tiny_train.sh"
cat > "$tmp/c.yaml" <<YAML
model:
  arch: bert
  hidden_size: 32
  num_layers: 2
  num_heads: 2
  intermediate_size: 64
  max_position: 64
tokenizer: data/vocab/bert-base-uncased-vocab.txt
data:
  train: data/samples/imdb/train.tsv.gz
  cache_dir: $tmp/cache
  max_length: 48
  batch_size: 8
  train_limit: 64
train:
  epochs: 1
  threads: 1
  bucket_mb: 0.02
eval:
  at_end: false
checkpoint:
  at_end: false
  export: false
log:
  every: 1
  progress: lines
  timeline: 2
YAML
fail=0
run() { "$mpiexec" -np 2 --oversubscribe "$bin" train "$tmp/c.yaml" --run-dir "$tmp/$1" "${@:2}" >"$tmp/$1.log" 2>&1 ||
  { echo "FAIL $1: training failed"; tail -5 "$tmp/$1.log"; fail=1; return 1; }; }
if run small; then
  for r in 0 1; do
    "$check" trace "$tmp/small/timeline-rank-$r.json" 2 || { echo "FAIL: rank $r's timeline"; fail=1; }
  done
  "$check" trace "$tmp/small/timeline.json" 4 || { echo "FAIL: the timeline of both ranks"; fail=1; }
  line="$(grep -o 'timeline of step 2 .*' "$tmp/small.log")"
  echo "$line"
  echo "$line" | grep -qE '[0-9]+ bucket all-reduces per rank, [0-9.]+ started before .* hidden [0-9.]+%' ||
    { echo "FAIL: no summary line in the log"; fail=1; }
  grep -q '"kind":"timeline","step":2,.*"hidden_fraction"' "$tmp/small/metrics.jsonl" ||
    { echo "FAIL: no timeline line in metrics.jsonl"; fail=1; }
  [ "$(ls "$tmp/small" | grep -c '^timeline')" = 3 ] || { echo "FAIL: timeline files other than the three expected"; ls "$tmp/small"; fail=1; }
fi
# the checker can fail: one bucket starts only when the backward is over
if run one --set train.bucket_mb=25; then
  if "$check" trace "$tmp/one/timeline-rank-0.json" 1 >"$tmp/one.check"; then
    echo "FAIL: one 25 MiB bucket reported as overlapping the backward"; cat "$tmp/one.check"; fail=1
  fi
fi
if grep -lE "Sanitizer|runtime error:" "$tmp"/*.log 2>/dev/null; then
  echo "FAIL: sanitizer reports above"; grep -hE -A20 "Sanitizer|runtime error:" "$tmp"/*.log | head -40; fail=1
fi
exit $fail
