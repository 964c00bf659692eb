#!/usr/bin/env bash
# gpu_check_scan.sh: the selective-scan / conv1d part of the GPU check
# (issue 10): the CUDA tests against the CPU reference, the benchmark, its
# PyTorch peers and the speed-ups, in about 3 minutes on an H100. Meant to
# be called by tools/gpu_check.sh (the CUDA backend's one GPU script) or on
# its own.
#
#   tools/gpu_check_scan.sh prepare [DIR]   on a machine with nvcc and the
#       project's build dependencies (no GPU needed): builds the scan tests
#       and benchmark for sm_90a in build-gpu-scan/ and copies them, with the
#       shared libraries the GPU machine lacks (cmocka, jansson, gomp,
#       cudart), into DIR (default gpu-scan/, ignored by git); carry DIR.
#   tools/gpu_check_scan.sh run [DIR]       on the GPU machine, from the
#       repository root: runs everything from DIR (the tests, mambert vs
#       transformers' slow path on one f32 case, the benchmark, the peers)
#       and writes four files to $OUT (or DIR/results): scan_summary.txt,
#       scan_log.txt, scan_mambert.json, scan_torch.json. DIR may also be a
#       CMake build directory.
#
# Budgets (seconds; env): SCAN_BENCH_BUDGET (default 40) for
# bench_cuda_selective_scan, SCAN_TORCH_BUDGET (default 100) for
# tools/bench_torch_scan.py. Exit status: non-zero if a test failed.
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
[ -d "$bin" ] || bin=$dir # a CMake build directory
# the bundled libraries for our binaries only (python keeps the image's own)
libpath=${LD_LIBRARY_PATH:-}
[ -d "$dir/lib" ] && libpath="$root/$dir/lib${libpath:+:$libpath}"
out=${OUT:-$dir/results}
mkdir -p "$out"
log=$out/scan_log.txt # tests, benchmark and peers; $OUT returns few files, so one log
sum=$out/scan_summary.txt
: >"$log"
: >"$sum"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)} # the CPU reference of the tests
start=$(date +%s)
status=0

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv,noheader 2>&1 | tee -a "$sum"

echo "== tests" | tee -a "$log"
dump=${TMPDIR:-/tmp}/scan_dump.safetensors
rm -f "$dump" # written by cuda_selective_scan below, only on a GPU
for t in cuda_selective_scan_plan cuda_selective_scan cuda_conv1d; do
  t0=$(date +%s)
  LD_LIBRARY_PATH=$libpath MAMBERT_SCAN_DUMP=$dump timeout 300 "$bin/$t" >>"$log" 2>&1
  rc=$?
  res=passed
  [ $rc = 77 ] && res=skipped
  [ $rc != 0 ] && [ $rc != 77 ] && res="FAILED (exit $rc)" && status=1
  echo "$t: $res ($(($(date +%s) - t0)) s)" | tee -a "$sum"
done
grep -E "worst relative error|bitwise" "$log" | tee -a "$sum"
grep -E "FAIL|device fault" "$log" | head -20
if [ -f "$dump" ]; then
  echo "== mambert vs transformers' slow path on the GPU" | tee -a "$log"
  python3 tools/bench_torch_scan.py --check-dump "$dump" 2>&1 | grep -v "falling back" | tee -a "$log" | tee -a "$sum" |
    tail -1 | grep -q ": ok" || status=1
fi

echo "== bench_cuda_selective_scan" | tee -a "$log"
LD_LIBRARY_PATH=$libpath timeout 240 "$bin/bench_cuda_selective_scan" --json "$out/scan_mambert.json" \
  --budget "${SCAN_BENCH_BUDGET:-40}" 2>&1 | tee -a "$log" | tail -25
echo "== bench_torch_scan.py" | tee -a "$log"
PYTHONUNBUFFERED=1 timeout 300 python3 tools/bench_torch_scan.py --json "$out/scan_torch.json" \
  --budget "${SCAN_TORCH_BUDGET:-100}" 2>&1 | grep -v "Warning\|falling back" | tee -a "$log" | tail -25
echo "== speed-ups"
if [ -f "$out/scan_mambert.json" ] && [ -f "$out/scan_torch.json" ]; then
  python3 tools/bench_torch_scan.py --merge "$out/scan_mambert.json" "$out/scan_torch.json" | tee -a "$sum"
fi
echo "gpu_check_scan: $(($(date +%s) - start)) s, status $status" | tee -a "$sum"
exit $status
