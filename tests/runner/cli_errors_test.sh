#!/usr/bin/env bash
# cli_errors_test.sh BIN: bad input to `mambert train` and `mambert eval`
# gives a clear message naming what is wrong (and where) and a non-zero
# exit, never a crash: unknown keys, wrong types, missing files, shards of
# another tokenizer, a checkpoint of another model or tokenizer, a run
# directory holding another run, a changed config on resume, reduced
# precision on the CPU, an --out that cannot be written (said before the
# work), a data file with no examples.
set -u
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
tmp="$(mktemp -d /tmp/mb_clierr_XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
fail=0
export OMP_NUM_THREADS=2

expect() { # expect CODE PATTERN -- ARGS...
  local code="$1" pat="$2"; shift 3
  local out rc
  out="$("$bin" "$@" 2>&1)"; rc=$?
  if [ "$rc" -ne "$code" ]; then echo "FAIL: mambert $* exited $rc, expected $code"; echo "$out" | tail -5; fail=1; return; fi
  if ! grep -qE -- "$pat" <<<"$out"; then echo "FAIL: mambert $*: output lacks /$pat/"; echo "$out" | tail -5; fail=1; return; fi
  if grep -qE "Sanitizer|runtime error:" <<<"$out"; then echo "FAIL: mambert $*: sanitizer report"; echo "$out" | grep -A20 -E "Sanitizer|runtime error:" | head -40; fail=1; return; fi
  echo "ok: $(grep -E -- "$pat" <<<"$out" | head -1 | cut -c1-150)"
}

base() { # a tiny bow config
  cat <<YAML
run:
  dir: $tmp/run
model:
  arch: bow
  d_model: 16
tokenizer: data/vocab/bert-base-uncased-vocab.txt
data:
  train: data/samples/imdb/train.tsv.gz
  test: data/samples/imdb/test.tsv.gz
  cache_dir: $tmp/cache
  max_length: 32
  train_limit: 64
eval:
  samples: 64
  warmup: 0
  repeats: 1
checkpoint:
  export: true
log:
  progress: off
YAML
}

base > "$tmp/ok.yaml"
# config errors: key, position, what was expected
printf 'optim:\n  lr: 1e-3\n  wd: 0.1\n' > "$tmp/unknown.yaml"
expect 1 "unknown.yaml:3:3: unknown key 'optim.wd' \(did you mean 'optim.weight_decay'" -- train "$tmp/unknown.yaml"
printf 'optim:\n  lr: fast\n' > "$tmp/type.yaml"
expect 1 "type.yaml:2:7: optim.lr: expected a number, got 'fast'" -- train "$tmp/type.yaml"
printf 'data:\n  batch_size: -1\n' > "$tmp/range.yaml"
expect 1 "range.yaml:2:15: data.batch_size: -1 is out of range" -- train "$tmp/range.yaml"
expect 1 "--set optim.lr: optim.lr: expected a number, got 'x'" -- train "$tmp/ok.yaml" --set optim.lr=x
expect 1 "unknown key 'optim.betaz' \(did you mean 'optim.betas'" -- train "$tmp/ok.yaml" --set optim.betaz=1
expect 2 "unknown option '--frobnicate'" -- train "$tmp/ok.yaml" --frobnicate
expect 1 "no-such.yaml: cannot open" -- train "$tmp/no-such.yaml"
if ! grep -q "MAMBERT_HAVE_CUDA 1" "$(dirname "$bin")/generated/mambert_build_config.h" 2>/dev/null; then
  expect 1 "train.precision \(set at --set train.precision\): bf16 needs a GPU" -- train "$tmp/ok.yaml" --set train.precision=bf16
fi
# missing files
expect 1 "train data $tmp/nope.tsv.gz: no such file" -- train "$tmp/ok.yaml" --set data.train=$tmp/nope.tsv.gz
expect 1 "tokenizer: .*nope-vocab.txt: cannot open" -- train "$tmp/ok.yaml" --set tokenizer=$tmp/nope-vocab.txt
# `config` checks what train and eval would open, and layers
expect 1 "tokenizer \(set at --set tokenizer\): .*nope-vocab.txt: no such file" -- config "$tmp/ok.yaml" --set tokenizer=$tmp/nope-vocab.txt
expect 1 "data.train \(set at --set data.train\): .*nope.tsv.gz: no such file" -- config "$tmp/ok.yaml" --set data.train=$tmp/nope.tsv.gz
expect 1 "model.checkpoint \(set at --set model.checkpoint\): .*nope: no such directory" -- config "$tmp/ok.yaml" --for eval --set model.checkpoint=$tmp/nope
expect 1 "model.num_layers .*a mamba model needs at least one layer" -- config "$tmp/ok.yaml" --set model.arch=mamba --set model.num_layers=0
printf 'sweep:\n  configs: [%s]\n  max_length: [16, 32]\n' "$tmp/ok.yaml" > "$tmp/sweep.yaml"
expect 0 "max_length: \[16, 32\]" -- config "$tmp/sweep.yaml" --for eval
printf 'sweep:\n  configs: [%s]\n  max_length: [16]\n' "$tmp/nope.yaml" > "$tmp/sweep-gone.yaml"
expect 1 "sweep.configs .*nope.yaml: no such file" -- config "$tmp/sweep-gone.yaml" --for eval
# eval is one process: started as ranks, it says so instead of timing them against each other
OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_LOCAL_RANK=0 OMPI_COMM_WORLD_LOCAL_SIZE=2 \
  expect 2 "started as 2 ranks by mpirun: eval runs as one process" -- eval "$tmp/ok.yaml"
# so are export, predict and prepare: every rank would write (or print) the same thing
for cmd in "export --model $tmp/nope --out $tmp/nope-out" "predict --model $tmp/nope text" \
           "prepare --dataset imdb --input $tmp/nope.tsv.gz --tokenizer data/vocab/bert-base-uncased-vocab.txt --out $tmp/x"; do
  OMPI_COMM_WORLD_SIZE=3 OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_LOCAL_RANK=0 OMPI_COMM_WORLD_LOCAL_SIZE=3 \
    expect 2 "started as 3 ranks by mpirun: ${cmd%% *} runs as one process" -- $cmd
done
# the other ranks refuse too, silently (rank 0 says it once)
out="$(OMPI_COMM_WORLD_SIZE=3 OMPI_COMM_WORLD_RANK=2 OMPI_COMM_WORLD_LOCAL_RANK=2 OMPI_COMM_WORLD_LOCAL_SIZE=3 \
       "$bin" predict --model "$tmp/nope" text 2>&1)"; rc=$?
if [ $rc = 2 ] && [ -z "$out" ]; then echo "ok: rank 2 refuses silently"; else echo "FAIL: rank 2: exit $rc, output '$out'"; fail=1; fi
# prepare: a missing input is named as missing, whatever its name says
expect 1 "$tmp/nope.tsv.gz: no such file" -- prepare --dataset imdb --input "$tmp/nope.tsv.gz" --tokenizer data/vocab/bert-base-uncased-vocab.txt --out "$tmp/nope-shards"
# --resume of something that is no run
expect 1 "--resume $tmp/nope: no such run directory" -- train --resume "$tmp/nope"
mkdir -p "$tmp/empty"
expect 1 "--resume $tmp/empty: no config.yaml there" -- train --resume "$tmp/empty"
# a vocabulary that misses the language: said on every run, the cached data's too
for r in unk1 unk2; do
  expect 0 "train data: .* of the tokens are \[UNK\]" -- train "$tmp/ok.yaml" --set data.dataset=nsmc \
    --set data.train=data/samples/nsmc/ratings_train.txt.gz --set data.test=data/samples/nsmc/ratings_test.txt.gz \
    --run-dir "$tmp/$r"
done
# shards made with another tokenizer
"$bin" prepare -q --dataset imdb --input data/samples/imdb/test.tsv.gz --tokenizer data/vocab/gpt-neox-20b-tokenizer.json --out "$tmp/bpe-shards" >/dev/null
expect 1 "made with tokenizer 'bpe'.*wordpiece-uncased" -- eval "$tmp/ok.yaml" --set data.test=$tmp/bpe-shards
# a run directory that holds another run
expect 0 "done: " -- train "$tmp/ok.yaml"
expect 1 "already holds run 'ok' \(created .*completed\); use --resume to continue it, --force" -- train "$tmp/ok.yaml"
expect 2 "contradict" -- train "$tmp/ok.yaml" --resume --force
expect 2 "--auto-resume and --force contradict" -- train "$tmp/ok.yaml" --auto-resume --force
expect 2 "give a config file" -- train --auto-resume
mkdir -p "$tmp/mine" && echo keep > "$tmp/mine/notes.txt"
expect 1 "is not empty and holds no mambert run" -- train "$tmp/ok.yaml" --run-dir "$tmp/mine"
# resuming with a config that changes training
expect 1 "changed: optim.lr: 0.001 -> 0.5" -- train --resume "$tmp/run" --set optim.lr=0.5
sed 's/d_model: 16/d_model: 24/' "$tmp/ok.yaml" > "$tmp/wider.yaml"
expect 1 "differs from the run's saved config .* model.d_model: 16 -> 24" -- train "$tmp/wider.yaml" --resume --run-dir "$tmp/run"
# a checkpoint of another model / another tokenizer
expect 1 "weights do not fit this bow model.*embedding.weight \(file F32\[30522, 16\], model F32\[30522, 24\]\)" -- eval "$tmp/ok.yaml" --set model.d_model=24 --model "$tmp/run/checkpoints/$(ls "$tmp/run/checkpoints" | tail -1)"
expect 1 "made with tokenizer wordpiece-uncased .* the config's is bpe" -- eval "$tmp/ok.yaml" --set tokenizer=data/vocab/gpt-neox-20b-tokenizer.json --model "$tmp/run/checkpoints/$(ls "$tmp/run/checkpoints" | tail -1)"
expect 1 "not a model directory \(config.json\), a checkpoint" -- eval "$tmp/ok.yaml" --model "$tmp/mine"
# eval of the finished run works, and says where its weights came from; a run
# directory stands for its saved config, and --model RUN alone reads it too
expect 0 "weights: $tmp/run/model" -- eval "$tmp/ok.yaml"
expect 0 "weights: $tmp/run/model" -- eval "$tmp/run"
expect 0 "its saved config.yaml gives the data" -- eval --model "$tmp/run"
# an --out that cannot take files is said before the evaluation, not after it
: > "$tmp/afile"
expect 1 "^mambert eval: --out: mkdir $tmp/afile/x: $tmp/afile exists and is not a directory" -- \
  eval "$tmp/ok.yaml" --out "$tmp/afile/x"
if "$bin" eval "$tmp/ok.yaml" --out "$tmp/afile/x" 2>&1 | grep -q "^| "; then
  echo "FAIL: eval with an unwritable --out evaluated first"; fail=1
fi
expect 1 "^mambert prepare: --out: mkdir $tmp/afile/x" -- prepare --dataset imdb --input data/samples/imdb/test.tsv.gz \
  --tokenizer data/vocab/bert-base-uncased-vocab.txt --out "$tmp/afile/x"
# the raw-data cache knows a file by its content: the same size and time
# with other labels (cp -p, rsync -t of a fixed file) is prepared again
zcat data/samples/imdb/train.tsv.gz | head -65 > "$tmp/t_train.tsv"
touch -d "2020-01-01 00:00:00" "$tmp/t_train.tsv"
expect 0 "preparing $tmp/t_train.tsv" -- train "$tmp/ok.yaml" --set data.train=$tmp/t_train.tsv --set train.max_steps=1 \
  --set checkpoint.export=false --run-dir "$tmp/cache1"
sed -i 's/\t0\t/\t1\t/' "$tmp/t_train.tsv"
touch -d "2020-01-01 00:00:00" "$tmp/t_train.tsv"
expect 0 "preparing $tmp/t_train.tsv" -- train "$tmp/ok.yaml" --set data.train=$tmp/t_train.tsv --set train.max_steps=1 \
  --set checkpoint.export=false --run-dir "$tmp/cache2"
# a data file with only its header: said at import, naming the file
printf 'id\trating\tlabel\ttext\n' > "$tmp/header-only.tsv"
expect 1 "importing train data $tmp/header-only.tsv: .*: no examples \(the file holds only its header\)" -- \
  train "$tmp/ok.yaml" --set data.train=$tmp/header-only.tsv --run-dir "$tmp/header-only"

if [ -e models/model.h ]; then
  # a tiny BERT run, then its checkpoint and export given to a Mamba config
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
  train_limit: 64
eval:
  samples: 32
  warmup: 0
  repeats: 1
log:
  progress: off
YAML
  sed -e 's/arch: bert/arch: mamba/' -e 's/hidden_size: 16/d_model: 16/' -e '/num_heads/d' -e '/max_position/d' \
      -e 's#bert-base-uncased-vocab.txt#gpt-neox-20b-tokenizer.json#' -e "s#dir: $tmp/bert#dir: $tmp/mamba#" "$tmp/bert.yaml" > "$tmp/mamba.yaml"
  expect 0 "done: " -- train "$tmp/bert.yaml"
  ck="$tmp/bert/checkpoints/$(ls "$tmp/bert/checkpoints" | tail -1)"
  expect 1 "a checkpoint of a bert model; the config builds a mamba model" -- eval "$tmp/mamba.yaml" --model "$ck"
  expect 1 "trained with another vocabulary|a tokenizer of another model" -- eval "$tmp/bert.yaml" --set tokenizer=data/vocab/gpt-neox-20b-tokenizer.json --model "$tmp/bert/model"
  expect 1 "model.arch is mamba but model.checkpoint .* holds a bert model" -- train "$tmp/mamba.yaml" --set model.checkpoint=$tmp/bert/model --set tokenizer=data/vocab/bert-base-uncased-vocab.txt --set data.cache_dir=$tmp/ft-cache --run-dir "$tmp/ft"
  # ... said before the data is prepared
  [ ! -e "$tmp/ft-cache" ] || { echo "FAIL: the data was prepared before the checkpoint's arch was checked"; fail=1; }
  expect 1 "data.max_length 64 is longer than the model's 32 position embeddings|longer than model.max_position 32" -- train "$tmp/bert.yaml" --set data.max_length=64 --run-dir "$tmp/long"
  # the same number of ids but another vocabulary: caught by the files' sha256
  sed 's/^the$/the-other/' data/vocab/bert-base-uncased-vocab.txt > "$tmp/vocab-other.txt"
  expect 1 "trained with another vocabulary" -- eval "$tmp/bert.yaml" --set tokenizer=$tmp/vocab-other.txt --model "$tmp/bert/model"
  # fine-tuning from the export, and evaluating it with the protocol
  expect 0 "model.hidden_size .*ignored, model.checkpoint" -- train "$tmp/bert.yaml" --set model.checkpoint=$tmp/bert/model --set model.arch= --run-dir "$tmp/ft2"
  # its saved config reads back (nothing there that only a model from scratch
  # may set) and names the same files from another directory: as if stopped
  # in its final evaluation (no results.json), the resume evaluates and
  # exports again, opening the tokenizer and the data through the saved
  # paths; the completed run then does nothing more
  rm -f "$tmp/ft2/results.json"
  pushd / >/dev/null
  expect 0 "done: " -- train --resume "$tmp/ft2"
  expect 0 "is a completed run .*nothing to resume" -- train --resume "$tmp/ft2"
  popd >/dev/null
  if grep -qE 'hidden_size|position_init|"data/' "$tmp/ft2/config.yaml"; then
    echo "FAIL: $tmp/ft2/config.yaml keeps a from-scratch key or a relative path"; fail=1
  fi
  # the note on attention dropout names the key that applies it
  expect 0 "attention_probs_dropout_prob 0.1 ignored; set model.attention_dropout_exact: true" -- \
    train "$tmp/bert.yaml" --run-dir "$tmp/note"
  # an HF BERT folder (vocab.txt beside the fast tokenizer's tokenizer.json, transformers'
  # model_max_length "no limit" = 1e30) fine-tunes with its vocab.txt, with exact attention dropout
  cp -r "$tmp/bert/model" "$tmp/hf"
  echo '{"version": "1.0", "normalizer": {"type": "BertNormalizer"}, "model": {"type": "WordPiece", "vocab": {}}}' \
    > "$tmp/hf/tokenizer.json"
  echo '{"do_lower_case": true, "model_max_length": 1000000000000000019884624838656}' > "$tmp/hf/tokenizer_config.json"
  "$bin" train "$tmp/bert.yaml" --set model.checkpoint="$tmp/hf" --set model.arch= --set tokenizer= \
    --set model.attention_dropout_exact=true --run-dir "$tmp/ft3" > "$tmp/ft3.log" 2>&1
  if [ $? -eq 0 ] && grep -q "done: " "$tmp/ft3.log" && ! grep -q "dropout_prob 0.1 ignored" "$tmp/ft3.log" &&
     grep -q "attention_dropout_exact: true" "$tmp/ft3/config.yaml"; then
    echo "ok: an HF BERT folder with tokenizer.json fine-tunes, with model.attention_dropout_exact"
  else
    echo "FAIL: fine-tuning the HF BERT folder"; tail -5 "$tmp/ft3.log"; fail=1
  fi
fi
exit $fail
