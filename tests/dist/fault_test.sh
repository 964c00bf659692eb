#!/usr/bin/env bash
# fault_test.sh MPIEXEC NP EXE MODE MAX_SECONDS PATTERN [MPIEXEC ARGS...]
# Runs `MPIEXEC -np NP --oversubscribe [ARGS] EXE MODE` and asserts that the
# whole job ends non-zero within MAX_SECONDS and that its output matches the
# extended regex PATTERN. A hard `timeout` 60 s past the limit keeps the test
# itself from hanging. Prints the measured seconds and exit status.
set -u
mpiexec="$1" np="$2" exe="$3" mode="$4" max="$5" pattern="$6"
shift 6
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
start=$(date +%s.%N)
timeout --kill-after=5 $((max + 60)) "$mpiexec" -np "$np" --oversubscribe "$@" "$exe" "$mode" >"$out" 2>&1
rc=$?
end=$(date +%s.%N)
secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
echo "fault $mode: $np ranks, job ended with status $rc after $secs s (limit $max s)"
fail=0
if [ "$rc" -eq 0 ]; then echo "FAIL: the job exited 0; a fault must end it non-zero"; fail=1; fi
# (past the limit also covers a job the hard timeout had to kill)
if [ "$(awk -v s="$secs" -v m="$max" 'BEGIN{print (s > m)}')" = 1 ]; then
  echo "FAIL: took $secs s, more than $max s"; fail=1
fi
if ! grep -qE -- "$pattern" "$out"; then echo "FAIL: output lacks /$pattern/"; fail=1; fi
echo "---- job output ----"
cat "$out"
exit $fail
