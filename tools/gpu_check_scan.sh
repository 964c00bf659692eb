#!/usr/bin/env bash
# gpu_check_scan.sh: the selective-scan / conv1d part of the GPU check
# (issue 10): the CUDA tests against the CPU reference, mambert vs
# transformers' slow path on the GPU, the benchmark, its PyTorch peers and
# the speed-ups, in about 3 minutes on an H100.
#
#   tools/gpu_check_scan.sh run [DIR]       on the GPU machine, from the
#       repository root, with the binaries in DIR: the unpacked bundle of
#       tools/gpu_check.sh (its `run` can call this with DIR=/tmp/mambert-gpu
#       once the bundle lists cuda_selective_scan, cuda_conv1d and
#       bench_cuda_selective_scan), a CMake build directory, or what
#       `prepare` made. Writes ONE file to $OUT (or DIR/results): scan.json
#       (test summary, the transformers check, both benchmarks, speed-ups;
#       $OUT returns at most 8 files for the whole GPU run), and appends its
#       log to $SCAN_LOG (default $OUT/scan_log.txt). The summary is printed
#       last.
#   tools/gpu_check_scan.sh prepare [DIR]   on a machine with nvcc and the
#       project's dependencies, no GPU needed, for use without
#       tools/gpu_check.sh: builds the scan tests and benchmark for sm_90a in
#       build-gpu-scan/ and copies them, with the shared libraries a CUDA +
#       PyTorch image lacks (cmocka, jansson, gomp, cudart), into DIR
#       (default gpu-scan/, ~6 MB, git-ignored); carry DIR to the device.
#
# Budgets (seconds; env): SCAN_BENCH_BUDGET (default 40) for
# bench_cuda_selective_scan, SCAN_TORCH_BUDGET (default 100) for
# tools/bench_torch_scan.py. Exit status: non-zero if a test or the
# transformers check failed.
set -u -o pipefail

mode=${1:-run}
dir=${2:-gpu-scan}
root=$(cd "$(dirname "$0")/.." && pwd)
targets="cuda_selective_scan cuda_conv1d cuda_selective_scan_plan bench_cuda_selective_scan"

if [ "$mode" = prepare ]; then
  cd "$root" || exit 1
  build="build-gpu-scan"
  # default build type (-O2; device code is optimised either way); a packaging
  # build, so other layers' warnings do not stop it (the normal builds check them)
  cmake -S . -B "$build" -DMAMBERT_CUDA_ARCHS=90a -DMAMBERT_WERROR=OFF -DMAMBERT_WITH_MPI=OFF >"$build.cfg.log" 2>&1 ||
    { tail -20 "$build.cfg.log"; exit 1; }
  # shellcheck disable=SC2086
  cmake --build "$build" -j2 --target $targets || exit 1
  rm -rf "$dir" && mkdir -p "$dir/bin" "$dir/lib"
  for t in $targets; do
    cp "$build/$t" "$dir/bin/" || exit 1
    # the shared libraries a CUDA/PyTorch image may lack; not the C and C++
    # runtimes (the GPU image's are newer) nor the driver's libcuda
    ldd "$build/$t" | awk '$3 ~ /^\// {print $3}' |
      grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libcuda|libstdc\+\+|libgcc_s)\.so' |
      while read -r lib; do cp -L "$lib" "$dir/lib/"; done
  done
  exclude=$(git rev-parse --git-path info/exclude)
  grep -qxF "/$dir/" "$exclude" 2>/dev/null || echo "/$dir/" >>"$exclude"
  du -sh "$dir"
  echo "carry '$dir' and run: tools/gpu_check_scan.sh run $dir"
  exit 0
fi

if [ "$mode" != run ]; then
  echo "usage: $0 prepare|run [DIR]" >&2
  exit 2
fi

cd "$root" || exit 1
bin=$dir/bin
[ -d "$bin" ] || bin=$dir # a bundle or a CMake build directory
# bundled libraries for our binaries only (python keeps the image's own)
libpath=${LD_LIBRARY_PATH:-}
[ -d "$dir/lib" ] && libpath="$(cd "$dir/lib" && pwd)${libpath:+:$libpath}"
out=${OUT:-$dir/results}
mkdir -p "$out"
log=${SCAN_LOG:-$out/scan_log.txt}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check_scan.XXXXXX")
sum=$tmp/summary.txt
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)} # the CPU reference of the tests
start=$(date +%s)
status=0
note() { echo "$*" | tee -a "$sum"; }

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv,noheader 2>&1 | tee -a "$sum" >>"$log"

echo "== gpu_check_scan: tests" >>"$log"
dump=$tmp/scan_dump.safetensors
for t in cuda_selective_scan_plan cuda_selective_scan cuda_conv1d; do
  if [ ! -x "$bin/$t" ]; then
    [ "$t" = cuda_selective_scan_plan ] || { note "$t: MISSING from $bin"; status=1; }
    continue
  fi
  t0=$(date +%s)
  rc=0
  LD_LIBRARY_PATH=$libpath MAMBERT_SCAN_DUMP=$dump timeout 300 "$bin/$t" >>"$log" 2>&1 || rc=$?
  res=passed
  [ $rc = 77 ] && res=skipped
  [ $rc != 0 ] && [ $rc != 77 ] && res="FAILED (exit $rc)" && status=1
  note "$t: $res ($(($(date +%s) - t0)) s)"
done
grep -E "worst relative error|bitwise" "$log" | tail -6 | tee -a "$sum" >/dev/null
grep -E " FAIL|device fault" "$log" | head -10 | tee -a "$sum" >/dev/null
if [ -f "$dump" ]; then
  echo "== gpu_check_scan: mambert vs transformers' slow path on the GPU" >>"$log"
  python3 tools/bench_torch_scan.py --check-dump "$dump" 2>&1 | grep -v "falling back" >"$tmp/check.txt"
  cat "$tmp/check.txt" >>"$log"
  tail -1 "$tmp/check.txt" | sed 's/^/transformers check: /' | tee -a "$sum" >/dev/null
  tail -1 "$tmp/check.txt" | grep -q ": ok" || status=1
fi

echo "== gpu_check_scan: bench_cuda_selective_scan" >>"$log"
if [ -x "$bin/bench_cuda_selective_scan" ]; then
  LD_LIBRARY_PATH=$libpath timeout 240 "$bin/bench_cuda_selective_scan" --json "$tmp/scan_mambert.json" \
    --budget "${SCAN_BENCH_BUDGET:-40}" >>"$log" 2>&1 || note "bench_cuda_selective_scan: exit $?"
else
  note "bench_cuda_selective_scan: MISSING from $bin"
fi
echo "== gpu_check_scan: bench_torch_scan.py" >>"$log"
PYTHONUNBUFFERED=1 timeout 300 python3 tools/bench_torch_scan.py --json "$tmp/scan_torch.json" \
  --budget "${SCAN_TORCH_BUDGET:-100}" 2>&1 | grep -v "Warning\|falling back" >>"$log"
note "gpu_check_scan: $(($(date +%s) - start)) s, status $status"
if [ -f "$tmp/scan_mambert.json" ]; then
  sed -n '/^L  *fwd ms/,/^stopped:/p' "$log" | tee -a "$sum" >/dev/null # the benchmark's table
  python3 tools/bench_torch_scan.py --merge "$tmp/scan_mambert.json" "$tmp/scan_torch.json" \
    --write "$out/scan.json" --summary "$sum" >"$tmp/merge.txt" 2>&1
  cat "$tmp/merge.txt" >>"$log"
  echo "== selective scan / conv1d"
  cat "$sum"
  grep -v "^wrote" "$tmp/merge.txt"
else
  echo "== selective scan / conv1d"
  cat "$sum"
fi
rm -rf "$tmp"
exit $status
