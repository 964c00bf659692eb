#!/usr/bin/env bash
# train_resume_ranks_test.sh BIN COMPARE MPIEXEC: resuming on another number
# of ranks. A tiny Mamba trained on 2 ranks x batch 8 (plain and ZeRO-1) is
# stopped at its step-4 checkpoint (the later ones removed) and resumed on 1
# rank x 16, on 4 ranks x 4 and on 1 rank x 8 x 2 micro-batches (--set the
# per-rank batch so the global batch stays 16); each must end with the
# losses and final weights of an uninterrupted 1 rank x 16 run within 1e-5
# relative. ZeRO-1 shards are re-sliced (or gathered into a whole state on
# one rank). Resuming with another global batch, or packed batches
# mid-epoch, is refused, saying so.
# Skipped (77) without mpirun.
set -u
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
compare="$2"
mpiexec="${3:-mpirun}"
command -v "$mpiexec" >/dev/null || { echo "no $mpiexec: skipped"; exit 77; }
tmp="$(mktemp -d /tmp/mb_distrr_XXXXXX)"
trap '[ -n "${KEEP_TMP:-}" ] || rm -rf "$tmp"' EXIT
. "$(dirname "$0")/tiny_train.sh"
RTOL=1e-5
tiny_train_yaml "$tmp/c.yaml" mamba 2 2 "$tmp/cache" || exit 2
fail=0
launch() { # NP then the train arguments
  local np="$1"
  shift
  if [ "$np" = 1 ]; then "$bin" train "$@"; else "$mpiexec" -np "$np" --oversubscribe "$bin" train "$@"; fi
}
weights() { ls "$1"/checkpoints/*/model.safetensors | sort | tail -1; }
worst=0
same_as_ref() { # DIR WHAT
  local out rc v
  for mode in metrics weights; do
    if [ $mode = metrics ]; then
      out="$("$compare" metrics "$tmp/ref/metrics.jsonl" "$1/metrics.jsonl" $RTOL)"; rc=$?
    else
      out="$("$compare" weights "$(weights "$tmp/ref")" "$(weights "$1")" $RTOL)"; rc=$?
    fi
    echo "$2 $mode: $(echo "$out" | grep -E '^(weights|losses)')"
    v="$(echo "$out" | awk '/^max_rel_diff/ {print $2}')"
    worst="$(awk -v a="$worst" -v b="${v:-inf}" 'BEGIN {print (b + 0 > a + 0) ? b : a}')"
    [ $rc = 0 ] || { echo "FAIL $2: $mode differ from the uninterrupted 1 rank x 16"; fail=1; }
  done
}
launch 1 "$tmp/c.yaml" --run-dir "$tmp/ref" >"$tmp/ref.log" 2>&1 || { echo "FAIL: reference run"; tail -5 "$tmp/ref.log"; exit 1; }
[ "$(grep -c '"kind":"train"' "$tmp/ref/metrics.jsonl")" = 8 ] || { echo "FAIL: the reference did not log 8 steps"; exit 1; }
for zero in false true; do
  a="$tmp/two-$zero"
  launch 2 "$tmp/c.yaml" --run-dir "$a" --set data.batch_size=8 --set train.zero1=$zero >"$a.log" 2>&1 ||
    { echo "FAIL zero1=$zero: 2-rank run"; tail -5 "$a.log"; fail=1; continue; }
  if [ $zero = true ]; then
    ls "$a/checkpoints/step-00000002/optim/zero-00001-of-00002.safetensors" >/dev/null ||
      { echo "FAIL: no ZeRO shards in the 2-rank checkpoint"; fail=1; }
  fi
  for target in "1 16 1" "4 4 1" "1 8 2"; do
    set -- $target
    b="$tmp/resume-$zero-$1x$2x$3"
    cp -r "$a" "$b"
    rm -rf "$b"/checkpoints/step-0000000[468] # as if stopped right after step 2's checkpoint
    launch "$1" --resume "$b" --set data.batch_size=$2 --set train.grad_accum=$3 >"$b.log" 2>&1 ||
      { echo "FAIL zero1=$zero: resume on $1 x $2 x $3"; tail -5 "$b.log"; fail=1; continue; }
    grep -q "resuming a checkpoint of 2 rank(s) x batch 8 x 1 micro-batches on $1 x $2 x $3: epoch 0, 32 examples in" "$b.log" ||
      { echo "FAIL zero1=$zero $1x$2x$3: did not resume from step 2 as expected"; grep -i resum "$b.log"; fail=1; }
    same_as_ref "$b" "zero1=$zero 2 ranks x 8 -> $1 x $2 x $3 at step 2"
  done
done
# another global batch is refused, and says how to keep it
b="$tmp/resume-bad"
cp -r "$tmp/two-false" "$b"
rm -rf "$b"/checkpoints/step-0000000[468] # (a completed run has nothing to resume)
if launch 4 --resume "$b" >"$b.log" 2>&1; then
  echo "FAIL: resuming 2 x 8 on 4 x 8 (global batch 32) was accepted"; fail=1
elif ! grep -q "global batch of 2 rank(s) x data.batch_size 8 x train.grad_accum 1 = 16; this job has 4 x 8 x 1 = 32" "$b.log"; then
  echo "FAIL: unclear refusal:"; tail -3 "$b.log"; fail=1
fi
# packed batches cannot be mapped mid-epoch: a clear refusal
p="$tmp/packed"
if launch 2 "$tmp/c.yaml" --run-dir "$p" --set data.batch_size=8 --set data.batching=packed --set train.epochs=1 \
    >"$p.log" 2>&1; then
  rm -rf "$p"/checkpoints/step-0000000[468]
  if launch 1 --resume "$p" --set data.batch_size=16 >"$p.log2" 2>&1; then
    echo "FAIL: a packed checkpoint of 2 ranks resumed mid-epoch on 1"; fail=1
  elif ! grep -q "cannot be mapped onto 1 x 16: loader state: step .* of epoch 0 in batches that are packed" "$p.log2"; then
    echo "FAIL: unclear refusal of a packed checkpoint:"; tail -3 "$p.log2"; fail=1
  fi
else
  echo "FAIL: packed 2-rank run"; tail -5 "$p.log"; fail=1
fi
echo "worst relative difference over all resumed runs: $worst"
if grep -lE "Sanitizer|runtime error:" "$tmp"/*.log 2>/dev/null; then
  echo "FAIL: sanitizer reports above"; grep -hE -A20 "Sanitizer|runtime error:" "$tmp"/*.log | head -40; fail=1
fi
exit $fail
