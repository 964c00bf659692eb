#!/usr/bin/env bash
# dist_resume_test.sh BIN [MPIEXEC]: two ranks under mpirun, plain data
# parallel, ZeRO-1, and ZeRO-1 with dynamic loss scaling that skips steps: a
# run killed with SIGKILL mid-epoch and resumed ends with the same weights
# and optimizer shards as an uninterrupted run (every rank's data position,
# ZeRO shard and the loss scaler are in the checkpoint). Skipped (77)
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
# a BERT with dynamic loss scaling from 2^127 and 8 micro-batches a step,
# whose summed gradients overflow every few steps (skipped on both ranks at
# once: the decision comes from the global norm), with ZeRO-1
sed -e 's/^  arch: bow$/  arch: bert\n  hidden_size: 32\n  num_layers: 1\n  num_heads: 2\n  intermediate_size: 64\n  max_position: 64/' \
    -e 's/^  batch_size: 8$/  batch_size: 2/' -e 's/^  d_model: 32$//' \
    -e 's/^  threads: 1$/  threads: 1\n  grad_accum: 8\n  loss_scale: dynamic\n  loss_scale_init: 1.7014118346046923e+38\n  loss_scale_interval: 3/' \
    "$tmp/c.yaml" > "$tmp/scaled.yaml"
for zero in false true scaled; do
  a="$tmp/a-$zero" b="$tmp/b-$zero" fail_before=$fail cfg="$tmp/c.yaml" z=$zero
  [ $zero = scaled ] && cfg="$tmp/scaled.yaml" z=true
  run "$cfg" --run-dir "$a" --set train.zero1=$z >"$a.log" 2>&1 || { echo "FAIL zero1=$zero: run"; tail -5 "$a.log"; fail=1; continue; }
  if [ $zero = scaled ] && ! grep -q '"skipped_steps":[1-9]' "$a/metrics.jsonl"; then
    echo "FAIL scaled: no step was skipped"; fail=1
  fi
  run "$cfg" --run-dir "$b" --set train.zero1=$z >"$b.log1" 2>&1 &
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
  local_diff="$(diff <(grep -o '"loss":[0-9.e-]*\|"loss_scale":[0-9.e+]*,"skipped_steps":[0-9.]*' "$a/metrics.jsonl") \
                      <(grep -o '"loss":[0-9.e-]*\|"loss_scale":[0-9.e+]*,"skipped_steps":[0-9.]*' "$b/metrics.jsonl"))"
  [ -z "$local_diff" ] || { echo "FAIL zero1=$zero: metrics.jsonl differs"; fail=1; }
  # the logged rates count both ranks: samples/s x each line's seconds add up to 1024
  seen="$(grep '"kind":"train"' "$a/metrics.jsonl" | grep -o '"samples_per_s":[0-9.e+-]*,"elapsed_s":[0-9.e+-]*' |
          tr ':,' '  ' | awk '{ s += $2 * ($4 - prev); prev = $4 } END { printf "%.1f", s }')"
  awk -v s="$seen" 'BEGIN { exit !(s > 1014 && s < 1034) }' ||
    { echo "FAIL zero1=$zero: samples_per_s x seconds over the lines = $seen, expected 1024 (both ranks)"; fail=1; }
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
