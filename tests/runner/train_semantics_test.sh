#!/usr/bin/env bash
# train_semantics_test.sh BIN: what the trainer feeds its steps, checked from
# the outside on a tiny bow model:
#   - the learning rate of every step follows schedule.warmup_ratio (of all
#     steps, not of one epoch) and the linear decay, as mb_lr_at says;
#   - the logged loss, token and sample rates are what they say;
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
  --set optim.lr=0.004 --set schedule.warmup_ratio=0.25 --set data.max_length=512 >"$tmp/lr.log" 2>&1 || { echo "FAIL: lr run"; tail -5 "$tmp/lr.log"; fail=1; }
got="$(field "$tmp/lr/metrics.jsonl" lr | paste -sd' ')"
# step s (1-based) runs at mb_lr_at(s-1): warm-up s-1 < 2: 0.004 (s-1)/2, then 0.004 (8-(s-1))/6
want="$(awk 'BEGIN { for (s = 1; s <= 8; s++) { k = s - 1; v = k < 2 ? 0.004 * k / 2 : 0.004 * (8 - k) / 6; printf "%s%.6g", (s > 1 ? " " : ""), v } }')"
if [ "$(echo "$got" | awk '{ for (i = 1; i <= NF; i++) printf "%s%.6g", (i > 1 ? " " : ""), $i }')" = "$want" ]; then
  echo "ok: learning rates $want"
else
  echo "FAIL: learning rates $got, expected $want"; fail=1
fi

# the logged numbers themselves: a fresh 2-class head starts near ln 2 (the
# mean over rows, not over steps), real tokens are at most the padded ones,
# and the per-line rates times each line's seconds add up to the examples seen
l1="$(field "$tmp/lr/metrics.jsonl" loss | head -1)"
if awk -v l="$l1" 'BEGIN { exit !(l > 0.3 && l < 1.5) }'; then echo "ok: first loss $l1 (about ln 2)"; else
  echo "FAIL: first loss $l1, expected about ln 2 = 0.693"; fail=1; fi
if paste <(field "$tmp/lr/metrics.jsonl" tokens_per_s) <(field "$tmp/lr/metrics.jsonl" padded_tokens_per_s) |
   awk '{ if ($1 > $2 * (1 + 1e-9) || $1 <= 0) bad = 1; if ($1 < $2) less = 1 } END { exit bad || !less }'; then
  echo "ok: tokens/s <= padded tokens/s (reviews padded to 512)"
else
  echo "FAIL: tokens_per_s above padded_tokens_per_s, zero, or never below"; fail=1
fi
seen="$(paste <(field "$tmp/lr/metrics.jsonl" samples_per_s) <(field "$tmp/lr/metrics.jsonl" elapsed_s) |
        awk '{ s += $1 * ($2 - prev); prev = $2 } END { printf "%.1f", s }')"
if awk -v s="$seen" 'BEGIN { exit !(s > 127 && s < 129) }'; then echo "ok: samples/s x seconds = $seen = 2 x 64"; else
  echo "FAIL: samples_per_s x seconds over the lines = $seen, expected 128"; fail=1; fi

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
