#!/usr/bin/env bash
# kill_resume_test.sh BIN: a training run killed with SIGKILL in the middle
# of an epoch and resumed with --resume ends with weights and optimizer state
# bit-identical to an uninterrupted run of the same config, and with the same
# metrics lines (each step once); resuming it again once complete does
# nothing. Tiny models on data/samples; well under 60 s.
# Models: bow (with gradient accumulation) always; bert (also with dynamic
# loss scaling that skips steps) and mamba when the build has models/.
set -u
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
tmp="$(mktemp -d /tmp/mb_resume_XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
fail=0
export OMP_NUM_THREADS=2

write_config() { # NAME ARCH-LINES TOKENIZER [TRAIN-LINES]
  cat > "$tmp/$1.yaml" <<YAML
run:
  seed: 5
model:
$2
tokenizer: $3
data:
  train: data/samples/imdb/train.tsv.gz
  cache_dir: $tmp/cache
  max_length: 64
  batch_size: 16
  train_limit: 384
optim:
  lr: 2e-3
schedule:
  warmup_steps: 5
train:
  epochs: 2
  threads: 2
${4:-}
eval:
  at_end: false
checkpoint:
  every: 7
  keep: 2
  export: false
log:
  every: 2
  progress: lines
YAML
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

check_model() { # NAME
  local n="$1" a="$tmp/$1-a" b="$tmp/$1-b" fail_before=$fail
  "$bin" train "$tmp/$n.yaml" --run-dir "$a" >"$tmp/$n-a.log" 2>&1 || { echo "FAIL $n: uninterrupted run failed"; cat "$tmp/$n-a.log"; fail=1; return; }
  local last
  last="$(ls "$a/checkpoints" | sort | tail -1)"
  # the run to kill: SIGKILL once it has logged step 12, past its checkpoint of
  # step 7 (mid-epoch: 24 steps per epoch), so it resumes from 7 and
  # metrics.jsonl must drop the lines logged after 7; 7 is inside the
  # metrics interval 7-8 (log.every 2), which the checkpoint carries over
  # bow starts and resumes with --auto-resume (one command, as a requeued job runs it)
  local start=(train "$tmp/$n.yaml" --run-dir "$b") resume=(train --resume "$b")
  if [ "$n" = bow ]; then
    start=(train --auto-resume "$tmp/$n.yaml" --run-dir "$b")
    resume=("${start[@]}")
  fi
  "$bin" "${start[@]}" >"$tmp/$n-b1.log" 2>&1 &
  local pid=$! i
  for i in $(seq 1 3000); do
    grep -q '"step":12,' "$b/metrics.jsonl" 2>/dev/null && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.01
  done
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
  local status
  status="$(grep -o '"status": "[a-z]*"' "$b/run.json")"
  if [ "$status" != '"status": "running"' ]; then
    echo "FAIL $n: could not kill the run mid-way (run.json $status)"; fail=1; return
  fi
  local killed_at
  killed_at="$(tail -1 "$b/metrics.jsonl" | grep -o '"step":[0-9]*')"
  "$bin" "${resume[@]}" >"$tmp/$n-b2.log" 2>&1 || { echo "FAIL $n: resume failed"; cat "$tmp/$n-b2.log"; fail=1; return; }
  grep -q "resumed from .*step-000000" "$tmp/$n-b2.log" || { echo "FAIL $n: did not resume from a checkpoint"; cat "$tmp/$n-b2.log"; fail=1; }
  local f
  for f in model.safetensors optimizer.safetensors; do
    if [ "$(sha "$a/checkpoints/$last/$f")" != "$(sha "$b/checkpoints/$last/$f")" ]; then
      echo "FAIL $n: $f of $last differs between the uninterrupted and the killed+resumed run"; fail=1
    fi
  done
  # metrics: the same steps, losses and gradient norms, each step once
  local line='"step":[0-9]*,"time":[0-9.]*,"loss":[0-9.e-]*,"lr":[0-9.e-]*,"grad_norm":[0-9.e-]*'
  if ! diff <(grep -o "$line" "$a/metrics.jsonl" | sed 's/"time":[0-9.]*,//') \
            <(grep -o "$line" "$b/metrics.jsonl" | sed 's/"time":[0-9.]*,//') >/dev/null; then
    echo "FAIL $n: metrics.jsonl differs"; fail=1
  fi
  # the counts of examples and tokens seen carry over the resume
  local counts='"(samples|tokens)_seen": [0-9.e+]*'
  if ! diff <(grep -oE "$counts" "$a/results.json") <(grep -oE "$counts" "$b/results.json") >/dev/null ||
     [ "$(grep -cE "$counts" "$a/results.json")" != 2 ]; then
    echo "FAIL $n: samples_seen / tokens_seen in results.json differ: $(grep -oE "$counts" "$a/results.json" "$b/results.json" | tr '\n' ' ')"
    fail=1
  fi
  local scaler='"loss_scale":[0-9.e+-]*,"skipped_steps":[0-9.]*'
  if ! diff <(grep -o "$scaler" "$a/metrics.jsonl") <(grep -o "$scaler" "$b/metrics.jsonl") >/dev/null; then
    echo "FAIL $n: the loss scale or the skipped steps in metrics.jsonl differ"; fail=1
  fi
  # resuming the completed run does nothing: no step, no line, no file touched
  local before after
  before="$(sha "$b/metrics.jsonl") $(sha "$b/run.json") $(sha "$b/results.json")"
  if ! "$bin" train --resume "$b" >"$tmp/$n-b3.log" 2>&1; then
    echo "FAIL $n: resuming the completed run failed"; cat "$tmp/$n-b3.log"; fail=1
  fi
  after="$(sha "$b/metrics.jsonl") $(sha "$b/run.json") $(sha "$b/results.json")"
  grep -q "is a completed run.*nothing to resume" "$tmp/$n-b3.log" || { echo "FAIL $n: no 'completed run' message"; cat "$tmp/$n-b3.log"; fail=1; }
  [ "$before" = "$after" ] || { echo "FAIL $n: resuming the completed run changed metrics.jsonl, run.json or results.json"; fail=1; }
  [ $fail = $fail_before ] && echo "ok $n: killed after $killed_at, resumed; $last weights and optimizer state bit-identical ($(sha "$b/checkpoints/$last/model.safetensors" | cut -c1-16))"
}

# bow also accumulates gradients over 2 micro-batches per step
write_config bow "  arch: bow
  d_model: 32
  dropout: 0.1" data/vocab/bert-base-uncased-vocab.txt "  grad_accum: 2"
check_model bow

if ! [ -e models/model.h ]; then
  echo "models/ not in this build: bert and mamba skipped"
else
  write_config bert "  arch: bert
  hidden_size: 32
  num_layers: 1
  num_heads: 2
  intermediate_size: 64
  max_position: 64
  dropout: 0.1" data/vocab/bert-base-uncased-vocab.txt
  check_model bert
  # dynamic loss scaling from 2^127 (the largest f32 power of two) with 8
  # micro-batches a step: their summed gradients overflow every 4th step or
  # so, the step is skipped and the scale halves, and 3 good steps double it
  # again; the scaler's state (2^126, mid-cycle) crosses the checkpoint of step 7
  write_config bert-scaled "  arch: bert
  hidden_size: 32
  num_layers: 1
  num_heads: 2
  intermediate_size: 64
  max_position: 64
  dropout: 0.1" data/vocab/bert-base-uncased-vocab.txt "  loss_scale: dynamic
  grad_accum: 8
  loss_scale_init: 1.7014118346046923e+38
  loss_scale_interval: 3"
  sed -i 's/^  batch_size: 16$/  batch_size: 4/' "$tmp/bert-scaled.yaml"
  check_model bert-scaled
  if ! grep -q '"skipped_steps":[1-9]' "$tmp/bert-scaled-a/metrics.jsonl"; then
    echo "FAIL bert-scaled: no step was skipped (the gradients never overflowed)"; fail=1
  fi
  # the run's total: the sum of the intervals', in results.json, the same after the resume
  for r in a b; do
    sum="$(grep -o '"skipped_steps":[0-9.]*' "$tmp/bert-scaled-$r/metrics.jsonl" | cut -d: -f2 | awk '{ s += $1 } END { print s + 0 }')"
    grep -q "\"skipped_steps\": $sum," "$tmp/bert-scaled-$r/results.json" ||
      { echo "FAIL bert-scaled-$r: results.json's skipped_steps is not the $sum of metrics.jsonl"; fail=1; }
  done
  # a power-of-two scale that never overflows changes nothing, bit for bit:
  # the gradients are S times larger exactly, and the step unscales them
  "$bin" train "$tmp/bert.yaml" --run-dir "$tmp/bert-pow2" --set train.loss_scale=dynamic \
    --set train.loss_scale_init=1024 --set train.loss_scale_interval=1000 >"$tmp/bert-pow2.log" 2>&1 ||
    { echo "FAIL bert-pow2: run failed"; tail -5 "$tmp/bert-pow2.log"; fail=1; }
  last="$(ls "$tmp/bert-a/checkpoints" | sort | tail -1)"
  if [ "$(sha "$tmp/bert-a/checkpoints/$last/model.safetensors")" != "$(sha "$tmp/bert-pow2/checkpoints/$last/model.safetensors")" ] ||
     ! grep -q '"loss_scale":1024' "$tmp/bert-pow2/metrics.jsonl"; then
    echo "FAIL bert-pow2: loss scale 1024 changed the weights (or was not applied)"; fail=1
  else
    echo "ok bert-pow2: loss scale 1024 leaves $last's weights bit-identical"
  fi
  write_config mamba "  arch: mamba
  d_model: 32
  num_layers: 1
  d_state: 4
  pooling: masked_mean" data/vocab/gpt-neox-20b-tokenizer.json
  check_model mamba
fi
# SIGTERM (Ctrl-C alike) during the final evaluation: it stops at its next batch, exits 3,
# run.json says interrupted, nothing is exported; --resume evaluates and
# exports, and metrics.jsonl holds one final eval line
cat > "$tmp/evalstop.yaml" <<YAML
model:
  arch: bow
  d_model: 32
tokenizer: data/vocab/bert-base-uncased-vocab.txt
data:
  train: data/samples/imdb/train.tsv.gz
  test: data/samples/imdb/test.tsv.gz
  cache_dir: $tmp/cache
  max_length: 64
  batch_size: 16
  train_limit: 64
eval:
  samples: 0
  warmup: 60
  repeats: 4
log:
  progress: lines
YAML
r="$tmp/evalstop"
"$bin" train "$tmp/evalstop.yaml" --run-dir "$r" >"$tmp/evalstop.log" 2>&1 &
pid=$!
for i in $(seq 1 3000); do
  grep -q "eval warm-up pass 2/" "$tmp/evalstop.log" 2>/dev/null && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.01
done
kill -TERM $pid 2>/dev/null # (a script's background job ignores SIGINT, and so does mambert then)
wait $pid; rc=$?
if [ $rc -ne 3 ] || ! grep -q "stopped by signal 15 during the final evaluation" "$tmp/evalstop.log" ||
   ! grep -q '"status": "interrupted"' "$r/run.json" || [ -e "$r/results.json" ] || [ -e "$r/model" ]; then
  echo "FAIL evalstop: exit $rc; $(grep -o '"status": "[a-z]*"' "$r/run.json")"; tail -5 "$tmp/evalstop.log"; fail=1
else
  "$bin" train --resume "$r" --set eval.repeats=1 >"$tmp/evalstop2.log" 2>&1 || { echo "FAIL evalstop: resume"; tail -5 "$tmp/evalstop2.log"; fail=1; }
  if [ "$(grep -c '"kind":"eval"' "$r/metrics.jsonl")" != 1 ] || [ ! -e "$r/results.json" ] || [ ! -e "$r/model/config.json" ]; then
    echo "FAIL evalstop: the resumed run did not evaluate and export once"; fail=1
  else
    echo "ok evalstop: SIGTERM in the final evaluation exits 3, interrupted; --resume evaluates and exports once"
  fi
fi

# a sanitizer build reports through the logs
if grep -lE "Sanitizer|runtime error:" "$tmp"/*.log* "$tmp"/*/*.log 2>/dev/null; then
  echo "FAIL: sanitizer reports above"; grep -hE -A20 "Sanitizer|runtime error:" "$tmp"/*.log* 2>/dev/null | head -40; fail=1
fi
exit $fail
