#!/usr/bin/env bash
# eval_test.sh BIN: `mambert eval` on a trained tiny model: the comparison
# table and JSON (accuracy, timing of R repeats with the median, real and
# padded tokens/s, peak memory), the three selections (first N of IMDB's
# label-ordered test file is all negative; balanced and strided are not),
# and `--sweep max_length=...` writing sweep.md, sweep.json and an SVG plot;
# eval.attention: fp8 on a BERT fixture, refused on bow.
set -u
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
tmp="$(mktemp -d /tmp/mb_eval_XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
fail=0
export OMP_NUM_THREADS=2
check() { # check DESCRIPTION COMMAND...
  local what="$1"; shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; fail=1; fi
}

cat > "$tmp/bow.yaml" <<YAML
run:
  dir: $tmp/run
model:
  arch: bow
  d_model: 32
tokenizer: data/vocab/bert-base-uncased-vocab.txt
data:
  train: data/samples/imdb/train.tsv.gz
  test: data/samples/imdb/test.tsv.gz
  cache_dir: $tmp/cache
  max_length: 128
optim:
  lr: 3e-3
train:
  epochs: 2
eval:
  samples: 200
  warmup: 1
  repeats: 3
log:
  progress: off
YAML
"$bin" train "$tmp/bow.yaml" > "$tmp/train.log" 2>&1 || { echo "FAIL: training"; cat "$tmp/train.log"; exit 1; }

"$bin" eval "$tmp/bow.yaml" --out "$tmp/first" > "$tmp/first.log" 2>&1 || { echo "FAIL: eval"; cat "$tmp/first.log"; exit 1; }
check "table header" grep -q "| model | samples | accuracy | max_length | batch | seconds (median of R) | samples/s | real tokens/s | padded tokens/s | peak MB" "$tmp/first.log"
check "first 200 in file order are all negative" grep -q "first 200 of 1000 in file order (200 negative, 0 positive)" "$tmp/first.log"
check "three timed repeats" grep -q '"seconds": \[' "$tmp/first/eval.json"
check "json has both token rates and memory" bash -c "grep -q real_tokens_per_s '$tmp/first/eval.json' && grep -q padded_tokens_per_s '$tmp/first/eval.json' && grep -q peak_mb '$tmp/first/eval.json'"
check "padded positions = 200 rows x 128 (the last batch has its 8 rows, as the reference slices)" grep -q '"padded_tokens": 25600' "$tmp/first/eval.json"
"$bin" eval "$tmp/bow.yaml" --set eval.selection=balanced > "$tmp/bal.log" 2>&1
check "balanced selection" grep -q "200 of 1000 balanced: the first 100 of each label" "$tmp/bal.log"
# an odd count: the description says what was selected, and the confusion matrix agrees
"$bin" eval "$tmp/bow.yaml" --set eval.selection=balanced --set eval.samples=5 --set eval.warmup=0 \
  --set eval.repeats=1 --out "$tmp/bal5" > "$tmp/bal5.log" 2>&1 ||
  { echo "FAIL: eval of 5 balanced"; cat "$tmp/bal5.log"; fail=1; }
check "balanced odd count described as selected" \
  grep -q "5 of 1000 balanced: the first 2 negative and 3 positive in file order" "$tmp/bal5.log"
rows="$(tr -d ' \n' < "$tmp/bal5/eval.json" | grep -oE '"confusion":\[\[[0-9]+,[0-9]+\],\[[0-9]+,[0-9]+\]\]' |
        tr -c '0-9' ' ')"
check "its confusion matrix holds 2 negative and 3 positive ($rows)" \
  awk -v r="$rows" 'BEGIN { split(r, c, " "); exit !(c[1] + c[2] == 2 && c[3] + c[4] == 3) }'
"$bin" eval "$tmp/bow.yaml" --set eval.selection=strided --set eval.samples=100 > "$tmp/str.log" 2>&1
check "strided selection" grep -qE "100 of 1000 evenly strided \([0-9]+ negative, [0-9]+ positive\)" "$tmp/str.log"
# accuracy on the balanced selection is that of a trained model, not a constant guess
acc="$(grep -E '^\| ok ' "$tmp/bal.log" | cut -d'|' -f4 | tr -d ' ')"
[ -z "$acc" ] && acc="$(grep -E '^\| bow ' "$tmp/bal.log" | cut -d'|' -f4 | tr -d ' ')"
check "trained accuracy ($acc) beats chance on balanced data" awk -v a="$acc" 'BEGIN { exit !(a > 0.6) }'

"$bin" eval "$tmp/bow.yaml" --sweep max_length=32,64,128 --set eval.samples=64 --out "$tmp/sweep" > "$tmp/sweep.log" 2>&1 || { echo "FAIL: sweep"; cat "$tmp/sweep.log"; fail=1; }
check "sweep table rows" bash -c "grep -qE '^\| 32 \|' '$tmp/sweep/sweep.md' && grep -qE '^\| 128 \|' '$tmp/sweep/sweep.md'"
check "sweep json has 3 ok points" test "$(grep -c '"status": "ok"' "$tmp/sweep/sweep.json")" -eq 3
check "sweep svg is an svg with 2 panels" bash -c "head -2 '$tmp/sweep/sweep.svg' | grep -q '<svg' && grep -q 'Throughput' '$tmp/sweep/sweep.svg' && grep -q 'Peak memory' '$tmp/sweep/sweep.svg' && grep -c '<circle' '$tmp/sweep/sweep.svg' | grep -q '^6$'"
# a sweep file (as experiments/sweep.yaml) takes --set overrides of its sweep: section
printf 'sweep:\n  configs: [%s]\n  max_length: [128]\n  samples: 64\n  out: %s/sf-file\n' "$tmp/bow.yaml" "$tmp" \
  > "$tmp/sweepfile.yaml"
"$bin" eval "$tmp/sweepfile.yaml" --set 'sweep.max_length=[32,64]' --set sweep.samples=8 --set "sweep.out=$tmp/sf" \
  --set eval.warmup=0 --set eval.repeats=1 > "$tmp/sf.log" 2>&1 ||
  { echo "FAIL: sweep file"; cat "$tmp/sf.log"; fail=1; }
check "a sweep file writes to --set sweep.out" test -s "$tmp/sf/sweep.json"
lengths="$(grep -oE '^\| [0-9]+ \|' "$tmp/sf/sweep.md" 2>/dev/null | tr -dc '0-9\n' | paste -sd,)"
check "at the lengths of --set sweep.max_length ($lengths)" test "$lengths" = "32,64"
check "with --set sweep.samples per point" test "$(grep -c '"samples": 8,' "$tmp/sf/sweep.json")" -eq 2
# a model.checkpoint directory that is not there is what gets reported (not its missing tokenizer)
printf 'run:\n  name: gone\nmodel:\n  checkpoint: %s/no-such-model\ndata:\n  test: %s\n' \
  "$tmp" data/samples/imdb/test.tsv.gz > "$tmp/gone.yaml"
"$bin" eval "$tmp/gone.yaml" > "$tmp/gone.log" 2>&1
check "eval of a missing model.checkpoint exits 1" test $? -eq 1
check "and names the directory" \
  grep -qE "model.checkpoint.*$tmp/no-such-model.*(does not exist|no such directory)" "$tmp/gone.log"
check "not its tokenizer" bash -c "! grep -q 'no tokenizer' '$tmp/gone.log'"
# packed batches (a BERT fixture: bow is padded only) count the same 200
# reviews and give the padded loss: their empty rows (label -1) count nowhere
printf 'model:\n  checkpoint: tests/fixtures/models/bert_tiny\ndata:\n  test: %s\n  cache_dir: %s/cache\n  max_length: 32\neval:\n  samples: 200\n  selection: strided\n  warmup: 0\n  repeats: 1\n' \
  data/samples/imdb/test.tsv.gz "$tmp" > "$tmp/bert.yaml"
for b in padded packed; do
  "$bin" eval "$tmp/bert.yaml" --set eval.batching=$b --out "$tmp/bert-$b" > "$tmp/bert-$b.log" 2>&1 ||
    { echo "FAIL: $b eval of bert_tiny"; tail -3 "$tmp/bert-$b.log"; fail=1; }
done
check "packed eval counts 200 reviews" grep -q '"samples": 200,' "$tmp/bert-packed/eval.json"
pl="$(grep -o '"loss": [0-9.e-]*' "$tmp/bert-padded/eval.json" | cut -d' ' -f2)"
kl="$(grep -o '"loss": [0-9.e-]*' "$tmp/bert-packed/eval.json" | cut -d' ' -f2)"
check "and the padded eval's loss to 1e-5 ($pl, $kl)" awk -v a="$pl" -v b="$kl" 'BEGIN { d = a - b; exit !(a > 0 && d < 1e-5 && d > -1e-5) }'
# eval.attention: fp8 (q, k, v through e4m3 with per-tensor scales; on the
# CPU simulated): recorded in eval.json and the table's title, the loss
# close to the plain eval's but not its bits, padded and packed; a model
# without attention is refused with the key named
for b in padded packed; do
  "$bin" eval "$tmp/bert.yaml" --set eval.batching=$b --set eval.attention=fp8 --out "$tmp/bert8-$b" \
    > "$tmp/bert8-$b.log" 2>&1 || { echo "FAIL: $b fp8 eval of bert_tiny"; tail -3 "$tmp/bert8-$b.log"; fail=1; }
  check "fp8 $b eval records its attention" grep -q '"attention": "fp8"' "$tmp/bert8-$b/eval.json"
  ql="$(grep -o '"loss": [0-9.e-]*' "$tmp/bert8-$b/eval.json" | cut -d' ' -f2)"
  check "and its loss within 2% of the plain eval's, not equal ($ql, $pl)" \
    awk -v a="$ql" -v b="$pl" 'BEGIN { d = (a - b) / b; exit !(a > 0 && a != b && d < 0.02 && d > -0.02) }'
done
check "the fp8 table says so" grep -q 'fp8 attention (simulated)' "$tmp/bert8-padded/eval.md"
"$bin" eval "$tmp/bow.yaml" --set eval.attention=fp8 --set eval.samples=8 > "$tmp/bow8.log" 2>&1
check "fp8 attention on bow exits 1" test $? -eq 1
check "naming eval.attention" grep -q "eval.attention: fp8: the bow model has no attention" "$tmp/bow8.log"
# a sanitizer build reports through the logs
if grep -lE "Sanitizer|runtime error:" "$tmp"/*.log* "$tmp"/*/*.log 2>/dev/null; then
  echo "FAIL: sanitizer reports above"; grep -hE -A20 "Sanitizer|runtime error:" "$tmp"/*.log* 2>/dev/null | head -40; fail=1
fi
exit $fail
