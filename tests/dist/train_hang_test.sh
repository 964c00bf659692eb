#!/usr/bin/env bash
# train_hang_test.sh BIN MPIEXEC: a 2-rank `mambert train` whose rank 1 stops
# answering (SIGSTOP) mid-run ends the job, it does not hang: rank 0's
# collective misses MAMBERT_COLLECTIVE_TIMEOUT, the job exits with status 70,
# and run.json says "failed" with the reason, not "running". Skipped (77)
# without mpirun.
set -u
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
mpiexec="${2:-mpirun}"
command -v "$mpiexec" >/dev/null || { echo "no $mpiexec: skipped"; exit 77; }
tmp="$(mktemp -d /tmp/mb_disthang_XXXXXX)"
. "$(dirname "$0")/tiny_train.sh"
export MAMBERT_COLLECTIVE_TIMEOUT=3
cleanup() { pkill -CONT -f "$tmp/c.yaml" 2>/dev/null; pkill -9 -f "$tmp/c.yaml" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
tiny_train_yaml "$tmp/c.yaml" bert 1000 0 "$tmp/cache"
"$mpiexec" -np 2 "$bin" train "$tmp/c.yaml" --run-dir "$tmp/run" >"$tmp/log" 2>&1 &
job=$!
for i in $(seq 1 600); do
  grep -q '"step":4,' "$tmp/run/metrics.jsonl" 2>/dev/null && break
  kill -0 $job 2>/dev/null || break
  sleep 0.05
done
rank1="$(pgrep -f "^$bin train $tmp/c.yaml" | sort -n | tail -1)"
[ -n "$rank1" ] || { echo "FAIL: no rank to stop"; cat "$tmp/log"; exit 1; }
kill -STOP "$rank1"
rc=124
for i in $(seq 1 300); do # 30 s: the timeout is 3
  if ! kill -0 $job 2>/dev/null; then wait $job; rc=$?; break; fi
  sleep 0.1
done
fail=0
[ "$rc" -eq 70 ] || { echo "FAIL: the job ended with status $rc, expected 70 (124: still running after 30 s)"; fail=1; }
grep -q '"status": "failed"' "$tmp/run/run.json" || { echo "FAIL: run.json:"; cat "$tmp/run/run.json"; fail=1; }
grep -q '"error": ".*did not complete within 3' "$tmp/run/run.json" || { echo "FAIL: run.json names no reason"; fail=1; }
[ "$fail" -eq 0 ] && echo "ok: rank 1 stopped, the job ended with 70 and run.json says failed: $(grep '"error"' "$tmp/run/run.json" | cut -c1-120)"
[ "$fail" -eq 0 ] || tail -5 "$tmp/log"
exit $fail
