#!/usr/bin/env bash
# dist_resume_test.sh BIN [MPIEXEC]: two ranks under mpirun, plain data
# parallel and ZeRO-1: a run killed with SIGKILL mid-epoch and resumed ends
# with the same weights and optimizer shards as an uninterrupted run (every
# rank's data position and ZeRO shard are in the checkpoint). Skipped (77)
# without mpirun.
set -u
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
mpiexec="${2:-mpirun}"
command -v "$mpiexec" >/dev/null || { echo "no $mpiexec: skipped"; exit 77; }
tmp="$(mktemp -d /tmp/mb_distres_XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1 MAMBERT_COLLECTIVE_TIMEOUT=60
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_mpi_yield_when_idle=1
fail=0
cat > "$tmp/c.yaml" <<YAML
model:
  arch: bow
  d_model: 32
  dropout: 0.1
tokenizer: data/vocab/bert-base-uncased-vocab.txt
data:
  train: data/samples/imdb/train.tsv.gz
  cache_dir: $tmp/cache
  max_length: 64
  batch_size: 8
  train_limit: 512
train:
  epochs: 2
  threads: 1
eval:
  at_end: false
checkpoint:
  every: 8
  export: false
log:
  every: 2
  progress: lines
YAML
run() { "$mpiexec" -np 2 --oversubscribe "$bin" train "$@"; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
for zero in false true; do
  a="$tmp/a-$zero" b="$tmp/b-$zero" fail_before=$fail
  run "$tmp/c.yaml" --run-dir "$a" --set train.zero1=$zero >"$a.log" 2>&1 || { echo "FAIL zero1=$zero: run"; tail -5 "$a.log"; fail=1; continue; }
  run "$tmp/c.yaml" --run-dir "$b" --set train.zero1=$zero >"$b.log1" 2>&1 &
  pid=$!
  for i in $(seq 1 3000); do
    grep -q '"step":12,' "$b/metrics.jsonl" 2>/dev/null && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.01
  done
  pkill -9 -f "run-dir $b" ; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  grep -q '"status": "running"' "$b/run.json" || { echo "FAIL zero1=$zero: not killed mid-run"; fail=1; continue; }
  run --resume "$b" >"$b.log2" 2>&1 || { echo "FAIL zero1=$zero: resume"; tail -5 "$b.log2"; fail=1; continue; }
  last="$(ls "$a/checkpoints" | sort | tail -1)"
  for f in $(cd "$a/checkpoints/$last" && ls *.safetensors optim/*.safetensors 2>/dev/null); do
    [ "$(sha "$a/checkpoints/$last/$f")" = "$(sha "$b/checkpoints/$last/$f")" ] || { echo "FAIL zero1=$zero: $f differs"; fail=1; }
  done
  # both ranks' examples count: 2 epochs of the 512 = 1024, also across the resume
  for r in "$a" "$b"; do
    grep -q '"samples_seen": 1024\.0' "$r/results.json" ||
      { echo "FAIL zero1=$zero: $r/results.json: $(grep samples_seen "$r/results.json"), expected 1024 (both ranks)"; fail=1; }
  done
  [ $fail = $fail_before ] && echo "ok zero1=$zero: 2 ranks killed mid-epoch and resumed: $last identical ($(cd "$a/checkpoints/$last" && ls *.safetensors optim/*.safetensors 2>/dev/null | tr '\n' ' '))"
done
# a sanitizer build reports through the logs
if grep -lE "Sanitizer|runtime error:" "$tmp"/*.log* "$tmp"/*/*.log 2>/dev/null; then
  echo "FAIL: sanitizer reports above"; grep -hE -A20 "Sanitizer|runtime error:" "$tmp"/*.log* 2>/dev/null | head -40; fail=1
fi
exit $fail
