#!/usr/bin/env bash
# cli_test.sh BIN FIXTURE: `mambert predict` and `mambert export` on a model
# fixture (tests/fixtures/models/FIXTURE): labels and probabilities for texts,
# --json, --file, stdin; results independent of batching; an export predicts
# exactly as its source; a random-initialised export loads; bad uses fail
# with a message naming the problem.
set -u
bin="$1"
fx="tests/fixtures/models/$2"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fail=0
expect() { # expect CODE PATTERN -- ARGS...   (stdin from $STDIN if set)
  local code="$1" pat="$2"; shift 3
  local out rc
  if [ -n "${STDIN:-}" ]; then out="$(printf '%s' "$STDIN" | "$bin" "$@" 2>&1)"; rc=$?
  else out="$("$bin" "$@" 2>&1 </dev/null)"; rc=$?; fi
  if [ "$rc" -ne "$code" ]; then echo "FAIL: mambert $* exited $rc, expected $code"; echo "$out"; fail=1; return; fi
  if ! grep -qE -- "$pat" <<<"$out"; then echo "FAIL: mambert $*: output lacks /$pat/"; echo "$out"; fail=1; return; fi
  echo "ok: mambert $* -> /$pat/"
}

expect 0 "^LABEL_[01]	0\.[0-9]{4}	a great movie$" -- predict --model "$fx" "a great movie"
expect 0 '"label":"LABEL_[01]".*"score":0\.[0-9]+' -- predict --model "$fx" --json "a great movie" "so boring"
printf 'a great movie\nthe worst film ever\n\nfun\n' > "$tmp/in.txt"
n=$("$bin" predict --model "$fx" --file "$tmp/in.txt" 2>/dev/null | wc -l)
[ "$n" -eq 4 ] && echo "ok: --file gives 4 lines" || { echo "FAIL: --file gave $n lines, expected 4"; fail=1; }
STDIN=$'one\ntwo\n' expect 0 "LABEL_[01]	0\.[0-9]{4}	two" -- predict --model "$fx" -
# batching: each input alone or all together, the same logits
"$bin" predict --model "$fx" --json --file "$tmp/in.txt" --batch-size 1 > "$tmp/b1.json" 2>/dev/null
"$bin" predict --model "$fx" --json --file "$tmp/in.txt" --batch-size 3 > "$tmp/b3.json" 2>/dev/null
logits() { sed -E 's/.*"logits":\[([^]]*)\].*/\1/' "$1" | tr ',' ' '; }
if [ -s "$tmp/b1.json" ] && paste -d' ' <(logits "$tmp/b1.json") <(logits "$tmp/b3.json") |
   awk '{ h = NF / 2; if (h < 1) exit 1; for (i = 1; i <= h; i++) { d = $i - $(i + h); if (d < 0) d = -d;
          s = $(i + h) < 0 ? -$(i + h) : $(i + h); if (d > 1e-5 * (s > 1 ? s : 1)) exit 1 } } END { if (NR != 4) exit 1 }'
then echo "ok: batch size 1 and 3 agree"; else echo "FAIL: batch size changes the logits"; diff "$tmp/b1.json" "$tmp/b3.json"; fail=1; fi

# export -> predict: the same output
expect 0 "^exported" -- export --model "$fx" --out "$tmp/exp"
"$bin" predict --model "$fx" --json --file "$tmp/in.txt" > "$tmp/a.json" 2>/dev/null
"$bin" predict --model "$tmp/exp" --json --file "$tmp/in.txt" > "$tmp/e.json" 2>/dev/null
if [ -s "$tmp/a.json" ] && cmp -s "$tmp/a.json" "$tmp/e.json"; then echo "ok: export predicts identically"
else echo "FAIL: export predicts differently"; diff "$tmp/a.json" "$tmp/e.json"; fail=1; fi
# a Hugging Face BERT folder (bert-base-uncased's files): vocab.txt beside a
# tokenizer.json mambert's BPE reader cannot read, and transformers'
# model_max_length "no limit" (1e30, beyond int64): it predicts as the fixture
if [ -f "$fx/vocab.txt" ]; then
  cp -r "$fx" "$tmp/hf"
  echo '{"version": "1.0", "normalizer": {"type": "BertNormalizer"}, "model": {"type": "WordPiece", "vocab": {}}}' \
    > "$tmp/hf/tokenizer.json"
  echo '{"do_lower_case": true, "model_max_length": 1000000000000000019884624838656}' > "$tmp/hf/tokenizer_config.json"
  "$bin" predict --model "$tmp/hf" --json --file "$tmp/in.txt" > "$tmp/hf.json" 2> "$tmp/hf.log"
  if [ -s "$tmp/hf.json" ] && cmp -s "$tmp/a.json" "$tmp/hf.json"; then
    echo "ok: an HF folder with tokenizer.json predicts"
  else echo "FAIL: the HF folder does not predict as the fixture"; cat "$tmp/hf.log"; fail=1; fi
  expect 0 "^LABEL_[01]	" -- predict --model "$tmp/hf" --tokenizer "$fx/vocab.txt" "a great movie"
fi
# random initialisation from the fixture's config
expect 0 "random initialisation" -- export --config "$fx/config.json" --seed 7 --out "$tmp/rnd"
expect 0 "LABEL_" -- predict --model "$tmp/rnd" --tokenizer "$(ls "$fx"/vocab.txt "$fx"/tokenizer.json 2>/dev/null | head -1)" "hello"

# bad uses
expect 2 "--model DIR is required" -- predict "text"
expect 2 "no inputs" -- predict --model "$fx"
expect 2 "unknown option '--frobnicate'" -- predict --model "$fx" --frobnicate x
expect 1 "nowhere: no such directory" -- predict --model "$tmp/nowhere" "text"
expect 1 "cannot open" -- predict --model "$fx" --file "$tmp/nowhere.txt"
expect 2 "exactly one of --model DIR and --config FILE" -- export --out "$tmp/x"
expect 1 "invalid JSON" -- export --config "$tmp/in.txt" --out "$tmp/x"
expect 0 "Usage: mambert predict" -- predict --help
expect 0 "Usage: mambert export" -- export --help
exit $fail
