#!/usr/bin/env bash
# gpu_check_attention.sh: the attention part of the GPU check (about 2
# minutes on an H100). tools/gpu_check.sh (the CUDA backend's script, which
# builds for sm_90a and ships the binaries) calls it; it can also run alone:
#
#   tools/gpu_check_attention.sh BUILD_DIR [OUT_DIR]
#
# BUILD_DIR holds cuda_attention_dispatch, cuda_attention, cuda_attention_fp8
# and bench_cuda_attention (cmake --build BUILD_DIR --target those);
# OUT_DIR (default $OUT, else .) receives three files, so the device tool's
# 8-file limit leaves room for the rest of the check:
#   attention.log             every test's and benchmark's output
#   attention_bench.json      bench_cuda_attention --json
#   attention_torch.json      tools/bench_torch_sdpa.py --json (ratios in the log)
# It prints a short table last and exits non-zero if a test failed (a test
# that skips, exit 77, is reported as skipped). Commit the JSON files under
# bench/results/ with the card's name.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${1:?usage: gpu_check_attention.sh BUILD_DIR [OUT_DIR]}"
out="${2:-${OUT:-.}}"
mkdir -p "$out"
log="$out/attention.log"
: > "$log"
python="${PYTHON:-python3}"

declare -A result
failed=0
for t in cuda_attention_dispatch cuda_attention cuda_attention_fp8; do
  start=$(date +%s)
  echo "==== $t" >> "$log"
  timeout 300 "$bin/$t" >> "$log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  case $rc in
    0) result[$t]="passed (${secs}s)" ;;
    77) result[$t]="skipped (${secs}s)" ;;
    124) result[$t]="TIMED OUT (300s)"; failed=1 ;;
    *) result[$t]="FAILED rc=$rc (${secs}s)"; failed=1 ;;
  esac
done

echo "==== bench_cuda_attention" >> "$log"
timeout 300 "$bin/bench_cuda_attention" --json "$out/attention_bench.json" >> "$log" 2>&1
bench_rc=$?
echo "==== bench_torch_sdpa" >> "$log"
if [ $bench_rc -eq 0 ]; then
  timeout 300 "$python" "$here/bench_torch_sdpa.py" --json "$out/attention_torch.json" \
    --ours "$out/attention_bench.json" >> "$log" 2>&1
  torch_rc=$?
else
  timeout 300 "$python" "$here/bench_torch_sdpa.py" --json "$out/attention_torch.json" >> "$log" 2>&1
  torch_rc=$?
fi

echo
echo "---- attention: tests"
for t in cuda_attention_dispatch cuda_attention cuda_attention_fp8; do
  printf '  %-26s %s\n' "$t" "${result[$t]}"
done
grep -h "worst normwise error" "$log" | sed 's/^/  /'
echo "---- attention: benchmark (bench_cuda_attention rc=$bench_rc, bench_torch_sdpa rc=$torch_rc)"
sed -n '/^bf16 GEMM peak/p; /^L  *D  *B  *H/,/^$/p; /packed vs padded/,/packed speed-up/p; /^mambert \/ torch SDPA/,$p' \
  "$log" | sed 's/^/  /'
exit $failed
