#!/usr/bin/env bash
# train_equivalence_test.sh BIN COMPARE ARCH MPIEXEC: data parallelism through
# the real `mambert train`. A tiny ARCH (bert or mamba) trained with 1 rank x
# batch 16 must give the same per-step losses (metrics.jsonl) and final
# weights, within 1e-5 relative in fp32, as 2 ranks x 8 and 4 ranks x 4; with
# and without ZeRO-1; and with gradient accumulation (2 ranks x 4 x 2
# micro-batches, 4 ranks x 2 x 2 with ZeRO-1). What would break equivalence
# by design is off: dropout, length-sorting windows (data.sort_window: 0),
# bucketed lengths (data.bucket_multiple: 0: every batch is max_length long,
# so the Mamba pooling over padding sees the same shapes). COMPARE is
# dist_check. Skipped (77) without mpirun.
#
# BERT's attention key bias has a zero gradient by the maths (it adds the
# same q.b to every score of a row; softmax ignores that), so from its zero
# initialisation it only collects rounding noise of sums whose order differs
# with the rank count (1e-15 with SGD, 1e-8 once AdamW normalises it): no
# relative bound fits a tensor of pure noise. It is judged absolutely (max abs difference <= 1e-6, dist_check).
set -u
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
compare="$2"
arch="$3"
mpiexec="${4:-mpirun}"
command -v "$mpiexec" >/dev/null || { echo "no $mpiexec: skipped"; exit 77; }
tmp="$(mktemp -d /tmp/mb_disteq_XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/tiny_train.sh"
RTOL=1e-5
case "$arch" in
  bert) skip=attention.self.key.bias ;;
  mamba) skip= ;;
  *) echo "unknown arch $arch"; exit 2 ;;
esac
tiny_train_yaml "$tmp/c.yaml" "$arch" 1 0 "$tmp/cache" || exit 2
fail=0
# run NAME NP BATCH ACCUM ZERO [--set ...]
run() {
  local name="$1" np="$2" batch="$3" accum="$4" zero="$5"
  shift 5
  local launch=("$mpiexec" -np "$np" --oversubscribe)
  [ "$np" = 1 ] && launch=()
  "${launch[@]}" "$bin" train "$tmp/c.yaml" --run-dir "$tmp/$name" --set data.batch_size=$batch \
    --set train.grad_accum=$accum --set train.zero1=$zero "$@" >"$tmp/$name.log" 2>&1 ||
    { echo "FAIL $name: training failed"; tail -5 "$tmp/$name.log"; fail=1; return 1; }
}
weights() { ls "$tmp/$1"/checkpoints/*/model.safetensors | sort | tail -1; }
worst=0
check() { # NAME REF [SKIP]: NAME against the reference REF
  local name="$1" ref="$2" out rc
  for mode in metrics weights; do
    if [ $mode = metrics ]; then
      out="$("$compare" metrics "$tmp/$ref/metrics.jsonl" "$tmp/$name/metrics.jsonl" $RTOL)"; rc=$?
    else
      out="$("$compare" weights "$(weights "$ref")" "$(weights "$name")" $RTOL ${3:-})"; rc=$?
    fi
    echo "$arch $name $mode: $(echo "$out" | grep -E '^(weights|losses|absolute)' | tr '\n' ' ')"
    v="$(echo "$out" | awk '/^max_rel_diff/ {print $2}')"
    worst="$(awk -v a="$worst" -v b="${v:-inf}" 'BEGIN {print (b + 0 > a + 0) ? b : a}')"
    [ $rc = 0 ] || { echo "FAIL $arch $name: $mode differ from 1 rank x 16"; fail=1; }
  done
}
run ref 1 16 1 false || exit 1
# the reference took 4 steps of 16
[ "$(grep -c '"kind":"train"' "$tmp/ref/metrics.jsonl")" = 4 ] || { echo "FAIL: the reference did not log 4 steps"; exit 1; }
for spec in "np2 2 8 1 false" "np4 4 4 1 false" "np2_zero1 2 8 1 true" "np4_zero1 4 4 1 true" \
            "np2_accum2 2 4 2 false" "np4_accum2_zero1 4 2 2 true"; do
  set -- $spec
  run "$@" && check "$1" ref $skip
done
if [ "$arch" = bert ]; then # SGD with momentum and ZeRO-1's sharded SGD
  run ref_sgd 1 16 1 false --set optim.name=sgd --set optim.momentum=0.9 --set optim.lr=0.05 &&
    run np4_sgd_zero1 4 4 1 true --set optim.name=sgd --set optim.momentum=0.9 --set optim.lr=0.05 &&
    check np4_sgd_zero1 ref_sgd $skip
fi
# the checker is not blind: a run with another global batch differs
run other 2 4 1 false && {
  "$compare" weights "$(weights ref)" "$(weights other)" $RTOL >/dev/null
  [ $? = 1 ] || { echo "FAIL: 2 ranks x 4 (another global batch) compared equal to 1 rank x 16"; fail=1; }
}
echo "$arch: worst relative difference over all runs: $worst"
if grep -lE "Sanitizer|runtime error:" "$tmp"/*.log 2>/dev/null; then
  echo "FAIL: sanitizer reports above"; grep -hE -A20 "Sanitizer|runtime error:" "$tmp"/*.log | head -40; fail=1
fi
exit $fail
