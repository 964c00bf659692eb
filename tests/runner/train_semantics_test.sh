#!/usr/bin/env bash
# train_semantics_test.sh BIN: what the trainer feeds its steps, checked from
# the outside on a tiny bow model:
#   - the learning rate of every step follows schedule.warmup_ratio (of all
#     steps, not of one epoch) and the linear decay, as mb_lr_at says;
#   - dropout draws a new mask every step: with lr 0 (the weights stay put)
#     and one batch seen again each epoch, the step losses differ with
#     dropout and are identical without it.
set -u
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
tmp="$(mktemp -d /tmp/mb_sem_XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
fail=0
export OMP_NUM_THREADS=2
cat > "$tmp/c.yaml" <<YAML
model:
  arch: bow
  d_model: 16
tokenizer: data/vocab/bert-base-uncased-vocab.txt
data:
  train: data/samples/imdb/train.tsv.gz
  cache_dir: $tmp/cache
  max_length: 32
  batch_size: 16
  shuffle: false
eval:
  at_end: false
checkpoint:
  at_end: false
  export: false
log:
  every: 1
  progress: lines
YAML
field() { grep -o "\"$2\":[0-9.e+-]*" "$1" | cut -d: -f2; }

# 64 examples, batch 16, 2 epochs = 8 steps; warmup_ratio 0.25 = 2 steps
"$bin" train "$tmp/c.yaml" --run-dir "$tmp/lr" --set data.train_limit=64 --set train.epochs=2 \
  --set optim.lr=0.004 --set schedule.warmup_ratio=0.25 >"$tmp/lr.log" 2>&1 || { echo "FAIL: lr run"; tail -5 "$tmp/lr.log"; fail=1; }
got="$(field "$tmp/lr/metrics.jsonl" lr | paste -sd' ')"
# step s (1-based) runs at mb_lr_at(s-1): warm-up s-1 < 2: 0.004 (s-1)/2, then 0.004 (8-(s-1))/6
want="$(awk 'BEGIN { for (s = 1; s <= 8; s++) { k = s - 1; v = k < 2 ? 0.004 * k / 2 : 0.004 * (8 - k) / 6; printf "%s%.6g", (s > 1 ? " " : ""), v } }')"
if [ "$(echo "$got" | awk '{ for (i = 1; i <= NF; i++) printf "%s%.6g", (i > 1 ? " " : ""), $i }')" = "$want" ]; then
  echo "ok: learning rates $want"
else
  echo "FAIL: learning rates $got, expected $want"; fail=1
fi

# one batch (16 examples) seen again every epoch, lr 0: only dropout changes the loss
for p in 0.5 0; do
  "$bin" train "$tmp/c.yaml" --run-dir "$tmp/drop-$p" --set data.train_limit=16 --set train.epochs=4 \
    --set optim.lr=0 --set model.dropout=$p >"$tmp/drop-$p.log" 2>&1 || { echo "FAIL: dropout $p run"; tail -5 "$tmp/drop-$p.log"; fail=1; }
done
distinct() { field "$1" loss | sort -u | wc -l; }
n="$(field "$tmp/drop-0.5/metrics.jsonl" loss | wc -l)"
if [ "$n" = 4 ] && [ "$(distinct "$tmp/drop-0.5/metrics.jsonl")" = 4 ] && [ "$(distinct "$tmp/drop-0/metrics.jsonl")" = 1 ]; then
  echo "ok: 4 steps on one batch: 4 losses with dropout 0.5, 1 without"
else
  echo "FAIL: dropout masks: losses $(field "$tmp/drop-0.5/metrics.jsonl" loss | paste -sd' ') with dropout 0.5, $(field "$tmp/drop-0/metrics.jsonl" loss | paste -sd' ') without"
  fail=1
fi
# a sanitizer build reports through the logs
if grep -lE "Sanitizer|runtime error:" "$tmp"/*.log 2>/dev/null; then
  echo "FAIL: sanitizer reports above"; grep -hE -A20 "Sanitizer|runtime error:" "$tmp"/*.log | head -40; fail=1
fi
exit $fail
