#!/usr/bin/env bash
# predict_export_test.sh BIN: `mambert predict` and `mambert export` read
# what `eval --model` reads (a model directory, a run directory, a training
# checkpoint), refuse a tokenizer of another vocabulary as eval does (a
# model that records none only gets a warning), warn about an input without
# tokens, and refuse options that do not apply to the model. Run from the
# repository root (fixtures, data/samples, data/vocab).
set -u
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
tmp="$(mktemp -d /tmp/mb_predict_XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
fail=0
export OMP_NUM_THREADS=2
fx=tests/fixtures/models

expect() { # expect CODE PATTERN -- ARGS...: the exit status and a line of the output
  local code="$1" pat="$2"; shift 3
  local out rc
  out="$("$bin" "$@" 2>&1)"; rc=$?
  if [ "$rc" -ne "$code" ]; then
    echo "FAIL: mambert $* exited $rc, expected $code"; echo "$out" | tail -5; fail=1; return
  fi
  if ! grep -qE -- "$pat" <<<"$out"; then
    echo "FAIL: mambert $*: output lacks /$pat/"; echo "$out" | tail -5; fail=1; return
  fi
  if grep -qE "Sanitizer|runtime error:" <<<"$out"; then
    echo "FAIL: mambert $*: sanitizer report"; echo "$out" | grep -A20 -E "Sanitizer|runtime error:" | head -40
    fail=1; return
  fi
  echo "ok: $(grep -E -- "$pat" <<<"$out" | head -1 | cut -c1-150)"
}
lacks() { # lacks PATTERN -- ARGS...: exit 0 and no such line
  local pat="$1"; shift 2
  local out rc
  out="$("$bin" "$@" 2>&1)"; rc=$?
  if [ "$rc" -ne 0 ] || grep -qE -- "$pat" <<<"$out"; then
    echo "FAIL: mambert $*: exited $rc or printed /$pat/"; echo "$out" | tail -5; fail=1; return
  fi
  echo "ok: mambert $* (no /$pat/)"
}
same() { # same WHAT FILE1 FILE2
  if cmp -s "$2" "$3"; then echo "ok: $1"; else echo "FAIL: $1"; diff "$2" "$3" | head -6; fail=1; fi
}

# ---- a tokenizer of another model: refused as eval refuses it
expect 1 "mamba_tiny was trained with another vocabulary .* than the tokenizer $fx/bert_tiny/vocab.txt" -- \
  predict --model $fx/mamba_tiny --tokenizer $fx/bert_tiny/vocab.txt "a film"
awk 'NR == 50 { $0 = "zzzz" } 1' $fx/bert_tiny/vocab.txt > "$tmp/other-vocab.txt" # same size, another vocabulary
expect 1 "bert_tiny was trained with another vocabulary .* than the tokenizer $tmp/other-vocab.txt" -- \
  predict --model $fx/bert_tiny --tokenizer "$tmp/other-vocab.txt" "a film"
expect 1 "bert_tiny was trained with another vocabulary" -- \
  export --model $fx/bert_tiny --tokenizer "$tmp/other-vocab.txt" --out "$tmp/x-other"
expect 0 "^LABEL_[01]	0\.[0-9]{4}	a film$" -- predict --model $fx/bert_tiny --tokenizer $fx/bert_tiny/vocab.txt "a film"
# a model without a tokenizer file records no vocabulary: a smaller one is only warned about
mkdir "$tmp/bert-novocab" && cp $fx/bert_tiny/config.json $fx/bert_tiny/model.safetensors "$tmp/bert-novocab/"
head -95 $fx/bert_tiny/vocab.txt > "$tmp/small-vocab.txt"
expect 0 "the tokenizer $tmp/small-vocab.txt has 95 ids, the embedding 100 rows" -- \
  predict --model "$tmp/bert-novocab" --tokenizer "$tmp/small-vocab.txt" "a film"

# ---- an input without tokens: Mamba gets only the classifier's bias, and says so
expect 0 "input 1 \(argument\) has no tokens: its prediction is the classifier's bias alone" -- \
  predict --model $fx/mamba_tiny "a film" ""
lacks "no tokens" -- predict --model $fx/bert_tiny "a film" "" # [CLS] [SEP]

# ---- inputs as text is: a cut preview ends on a whole UTF-8 character, a NUL
# byte is part of the text, an empty stream is no error, a refused line is
# named by its file and line, output that cannot be written fails
python3 -c "print('가나다라마바사아자차카타파하' * 10); print('a' + '\U0001F44D' * 40)" > "$tmp/wide.txt"
"$bin" predict --model $fx/bert_tiny --file "$tmp/wide.txt" > "$tmp/wide-out.txt" 2>&1
if python3 -c "import sys; t = open(sys.argv[1], 'rb').read().decode(); assert t.count('...') == 2" "$tmp/wide-out.txt"
then echo "ok: cut previews are whole UTF-8 characters"; else echo "FAIL: a preview cuts a character"; fail=1; fi
printf 'nul\0inside\n' > "$tmp/nul.txt"
expect 0 '"text":"nul\\u0000inside"' -- predict --json --model $fx/mamba_tiny --file "$tmp/nul.txt"
: > "$tmp/empty.txt"
lacks "LABEL_" -- predict --model $fx/bert_tiny --file "$tmp/empty.txt"
printf 'fine\n\xff bad\n' > "$tmp/badline.txt"
expect 1 "input 1 \($tmp/badline.txt line 2\): tokenizer: invalid UTF-8" -- predict --model $fx/bert_tiny --file "$tmp/badline.txt"
expect 2 "--model given twice" -- predict --model $fx/bert_tiny --model $fx/mamba_tiny "a film"
# where to compute: the CPU by default and with --device cpu (the same output);
# reduced precision only with a GPU; cuda without one is an error naming --device
a="$("$bin" predict --model $fx/bert_tiny "a film" "so dull" 2>/dev/null)"
b="$("$bin" predict --model $fx/bert_tiny --device cpu --precision f32 "a film" "so dull" 2>/dev/null)"
if [ -z "$a" ] || [ "$a" != "$b" ]; then echo "FAIL: predict --device cpu differs from the default"; fail=1; else echo "ok: --device cpu"; fi
expect 2 "--precision bf16 needs a GPU: " -- predict --model $fx/bert_tiny --precision bf16 "a film"
expect 2 "--device 'gpu': expected cpu, cuda or auto" -- predict --model $fx/bert_tiny --device gpu "a film"
expect 2 "--precision 'fp8': expected f32, bf16 or fp16" -- predict --model $fx/bert_tiny --device cuda --precision fp8 "a"
expect 2 "--device needs a value \(got the option --precision\)" -- predict --model $fx/bert_tiny --device --precision f32 "a"
if "$bin" info 2>/dev/null | grep -qE "^GPUs: not built"; then
  expect 2 "--device cuda: this build has no CUDA backend; use --device cpu" -- predict --model $fx/bert_tiny --device cuda "a"
  expect 2 "--precision bf16 needs a GPU: this build has no CUDA backend" -- predict --model $fx/bert_tiny --device auto --precision bf16 "a"
elif "$bin" info 2>/dev/null | grep -qE "^GPUs: none"; then
  expect 1 "--device: cuda, but mambert predict sees no GPU .*; use --device cpu" -- predict --model $fx/bert_tiny --device cuda "a"
fi
if [ -w /dev/full ]; then
  if "$bin" predict --model $fx/bert_tiny "a film" > /dev/full 2>"$tmp/full.err"; then
    echo "FAIL: predict into a full device exited 0"; fail=1
  elif grep -q "writing to standard output failed" "$tmp/full.err"; then echo "ok: a failed write is an error"
  else echo "FAIL: no message for the failed write"; cat "$tmp/full.err"; fail=1; fi
fi

# ---- --pooling is Mamba's
expect 2 "--pooling applies to Mamba models only; $fx/bert_tiny is a BERT model" -- \
  export --model $fx/bert_tiny --pooling mean --out "$tmp/x-pool"
expect 2 "--pooling applies to Mamba models only; $fx/bert_tiny/config.json is a BERT model" -- \
  export --config $fx/bert_tiny/config.json --tokenizer $fx/bert_tiny/vocab.txt --pooling mean --out "$tmp/x-pool"
if [ -e "$tmp/x-pool" ]; then echo "FAIL: a refused export wrote $tmp/x-pool"; fail=1; fi
expect 0 "exported Mamba classifier" -- export --model $fx/mamba_tiny --pooling masked_mean --out "$tmp/mamba-mm"
if grep -q '"pooling": "masked_mean"' "$tmp/mamba-mm/classifier.json"; then echo "ok: masked_mean exported"
else echo "FAIL: $tmp/mamba-mm/classifier.json lacks masked_mean pooling"; fail=1; fi

# ---- what a batch changes: nothing printed (the help says logits agree to float32 rounding)
lacks "does not depend on the other inputs" -- predict --help
expect 0 "agree with those of a batch of one to float32 rounding" -- predict --help
printf 'a wonderful film\ntwo hours I will not get back\nfine\n\nthe plot was thin but the acting saved it\n' \
  > "$tmp/in.txt"
for m in bert_tiny mamba_tiny; do
  "$bin" predict --model $fx/$m --file "$tmp/in.txt" --batch-size 1 > "$tmp/$m-b1.txt" 2>/dev/null
  "$bin" predict --model $fx/$m --file "$tmp/in.txt" > "$tmp/$m-b32.txt" 2>/dev/null
  same "$m: labels and probabilities of batch 1 and batch 32 agree" "$tmp/$m-b1.txt" "$tmp/$m-b32.txt"
done

# ---- a BERT directory with tokenizer.json and no vocab.txt (what transformers 5
# saves): predicts as with vocab.txt, and exports its tokenizer.json
mkdir -p "$tmp/bert-tokjson"
cp $fx/bert_tiny/config.json $fx/bert_tiny/model.safetensors "$tmp/bert-tokjson/"
cp tests/tokenizer/fixtures/wordpiece_json/bert_tiny.tokenizer.json "$tmp/bert-tokjson/tokenizer.json"
"$bin" predict --json --model $fx/bert_tiny --file "$tmp/in.txt" > "$tmp/tj-vocab.txt" 2>/dev/null
"$bin" predict --json --model "$tmp/bert-tokjson" --file "$tmp/in.txt" > "$tmp/tj-json.txt" 2>/dev/null
same "a BERT tokenizer.json predicts as its vocab.txt" "$tmp/tj-vocab.txt" "$tmp/tj-json.txt"
expect 0 "exported BertForSequenceClassification" -- export --model "$tmp/bert-tokjson" --out "$tmp/bert-tokjson-exp"
if [ -f "$tmp/bert-tokjson-exp/tokenizer.json" ] && [ ! -e "$tmp/bert-tokjson-exp/vocab.txt" ]; then
  echo "ok: the export carries the tokenizer.json"
else echo "FAIL: the export of a tokenizer.json model"; ls "$tmp/bert-tokjson-exp"; fail=1; fi

# ---- run directories and training checkpoints, as eval --model takes them
if [ ! -e data/samples/imdb/train.tsv.gz ]; then
  echo "skipped: no data/samples (run from the repository root)"; [ $fail -ne 0 ] && exit 1; exit 77
fi
mkdir -p "$tmp/empty"
expect 1 "--model $tmp/empty: not a model directory \(config.json\), a checkpoint \(manifest.json\) or a run" -- \
  predict --model "$tmp/empty" "a film"
expect 1 "--model $tmp/nope: no such directory" -- export --model "$tmp/nope" --out "$tmp/x-nope"
cat > "$tmp/bert.yaml" <<YAML
run:
  dir: $tmp/bert
model:
  arch: bert
  hidden_size: 16
  num_layers: 1
  num_heads: 2
  max_position: 32
tokenizer: data/vocab/bert-base-uncased-vocab.txt
data:
  train: data/samples/imdb/train.tsv.gz
  test: data/samples/imdb/test.tsv.gz
  cache_dir: $tmp/cache
  max_length: 32
  batch_size: 8
  train_limit: 64
train:
  epochs: 2
checkpoint:
  every: 4
  keep: 10
eval:
  samples: 32
  warmup: 0
  repeats: 1
log:
  progress: off
YAML
expect 0 "done: " -- train "$tmp/bert.yaml"
first="$tmp/bert/checkpoints/$(ls "$tmp/bert/checkpoints" | head -1)"
last="$tmp/bert/checkpoints/$(ls "$tmp/bert/checkpoints" | tail -1)"
[ "$first" != "$last" ] || { echo "FAIL: one checkpoint only"; fail=1; }
texts=("a wonderful film" "two hours I will not get back")
# an intermediate checkpoint: predict reads it, export writes it, and both agree
expect 0 "^LABEL_[01]	0\.[0-9]{4}	a wonderful film$" -- predict --model "$first" "${texts[@]}"
expect 0 "exported BertForSequenceClassification \($first, " -- export --model "$first" --out "$tmp/exp-first"
"$bin" predict --json --model "$first" "${texts[@]}" > "$tmp/p-ckpt.txt" 2>&1
"$bin" predict --json --model "$tmp/exp-first" "${texts[@]}" > "$tmp/p-exp.txt" 2>&1
same "the checkpoint and its export predict the same logits" "$tmp/p-ckpt.txt" "$tmp/p-exp.txt"
"$bin" predict --json --model "$tmp/bert/model" "${texts[@]}" > "$tmp/p-final.txt" 2>&1
if cmp -s "$tmp/p-ckpt.txt" "$tmp/p-final.txt"; then
  echo "FAIL: the first checkpoint predicts as the final model"; fail=1
fi
# a run directory: its final model, else its newest checkpoint
"$bin" predict --json --model "$tmp/bert" "${texts[@]}" > "$tmp/p-run.txt" 2>&1
same "a run directory predicts with its final model" "$tmp/p-final.txt" "$tmp/p-run.txt"
mv "$tmp/bert/model" "$tmp/bert-final-model"
"$bin" predict --json --model "$tmp/bert" "${texts[@]}" > "$tmp/p-run2.txt" 2>&1
"$bin" predict --json --model "$last" "${texts[@]}" > "$tmp/p-last.txt" 2>&1
same "a run directory without model/ predicts with its newest checkpoint" "$tmp/p-last.txt" "$tmp/p-run2.txt"
expect 0 "exported BertForSequenceClassification \($last, " -- export --model "$tmp/bert" --out "$tmp/exp-run"
# a checkpoint's vocabulary is checked too
expect 1 "$first: made with tokenizer wordpiece-uncased .* not bpe" -- \
  predict --model "$first" --tokenizer data/vocab/gpt-neox-20b-tokenizer.json "a film"
# model.labels names the classes: predict prints them, the export's id2label
# has them, and its checkpoints keep them
expect 0 "done: " -- train "$tmp/bert.yaml" --set "model.labels=[negative, positive]" --set train.max_steps=4 \
  --run-dir "$tmp/bert-labels"
expect 0 "^(negative|positive)	0\.[0-9]{4}	a wonderful film$" -- predict --model "$tmp/bert-labels" "a wonderful film"
expect 0 "^(negative|positive)	" -- predict --model "$tmp/bert-labels/checkpoints/step-00000004" "a film"
if grep -q '"1": "positive"' "$tmp/bert-labels/model/config.json"; then echo "ok: the export's id2label has the names"
else echo "FAIL: the export's id2label lacks model.labels"; grep -A3 id2label "$tmp/bert-labels/model/config.json"; fail=1; fi
# label2id is its inverse (what pipeline() and Trainer read back)
l2i="$(tr -d ' \n' < "$tmp/bert-labels/model/config.json" | grep -o '"label2id":{[^}]*}')"
if [ "$l2i" = '"label2id":{"negative":0,"positive":1}' ]; then echo "ok: label2id inverts id2label"
else echo "FAIL: label2id is $l2i, expected negative 0 and positive 1"; fail=1; fi
# a checkpoint named directly is checked against its manifest, as a run's newest is
cp -r "$first" "$tmp/damaged-ckpt"
printf 'XX' | dd of="$tmp/damaged-ckpt/model.safetensors" bs=1 seek=2000 conv=notrunc 2>/dev/null
expect 1 "damaged-ckpt/model.safetensors: sha256 .* differs from the manifest's" -- \
  export --model "$tmp/damaged-ckpt" --out "$tmp/exp-damaged"
[ ! -e "$tmp/exp-damaged" ] || { echo "FAIL: a damaged checkpoint was exported"; fail=1; }
expect 1 "--model $tmp/bert/run.json: a file; give the directory" -- predict --model "$tmp/bert/run.json" "a film"

# ---- export: through a link to a directory, not over the link; what a killed
# export left is cleaned up (the previous export put back when nothing
# replaced it); a tokenizer larger than the embedding and a --seed that would
# do nothing are refused
mkdir -p "$tmp/link-target" && ln -s "$tmp/link-target" "$tmp/link"
expect 0 "exported" -- export --model $fx/bert_tiny --out "$tmp/link"
if [ -L "$tmp/link" ] && [ -f "$tmp/link-target/config.json" ]; then echo "ok: export wrote through the link"
else echo "FAIL: export replaced the link"; ls -la "$tmp" | grep link; fail=1; fi
sh -c 'exit 0' & dead=$!; wait $dead
host=$(hostname)
mkdir -p "$tmp/killed.tmp-$host-$dead" && cp -r "$tmp/link-target" "$tmp/killed.old-$host-$dead"
mkdir -p "$tmp/killed.tmp-$host-2-$dead" # another host whose name starts with ours: not ours to touch
expect 0 "put back the previous export $tmp/killed moved aside" -- export --model $fx/mamba_tiny --out "$tmp/killed"
[ "$(ls -d "$tmp"/killed.* 2>/dev/null)" = "$tmp/killed.tmp-$host-2-$dead" ] ||
  { echo "FAIL: leftovers of the killed export stay, or another host's went"; ls -d "$tmp"/killed.*; fail=1; }
expect 1 "the tokenizer data/vocab/bert-base-multilingual-cased-vocab.txt has 119547 ids but the model's embedding has 100 rows" -- \
  export --config $fx/bert_tiny/config.json --tokenizer data/vocab/bert-base-multilingual-cased-vocab.txt --out "$tmp/x-vocab"
expect 2 "with --model alone it would do nothing" -- export --model $fx/bert_tiny --seed 3 --out "$tmp/x-seed"
exit $fail
