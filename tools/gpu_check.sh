#!/usr/bin/env bash
# tools/gpu_check.sh: the one GPU check of mambert's CUDA backend (issue 8):
# every CUDA test and benchmark, plus the PyTorch peers, in one run on a lent
# H100/H200, within about 8 minutes, ending with a table.
#
# The GPU machine has the NVIDIA driver, the CUDA 13.0 toolkit, python3 with
# torch + transformers, but none of our Debian libraries (OpenBLAS, jansson,
# OpenSSL 3, ...) and no internet. So the binaries are built HERE and carried:
#
#   1. here (builds build-gpu/ for sm_90a, stages the bundle in
#      build-gpu/bundle, checks that every binary starts from it with an empty
#      LD_LIBRARY_PATH and exits 77 "no CUDA device" here, and packs it as
#      gpu-bundle/mambert-gpu.tar.xz, ~7 MiB):
#        tools/gpu_check.sh bundle
#   2. the device tool, from a session whose checkout holds gpu-bundle/:
#        run(command="tools/gpu_check.sh run", carry=["gpu-bundle"], timeout_s=600)
#      (one call, ~8 minutes; prints the table last; $OUT gets gpu_check.json,
#      gpu_check.log, bench_cuda_*.json and torch_peers.json); then give_back.
#   3. here: copy the returned JSON files into bench/results/<card>-<date>/
#      and commit them (bench/results/README.md).
#
# The bundle: the test and benchmark executables (cuda_*, runtime_cuda_*,
# bench_cuda_*), statically linked against our libraries and the CUDA
# runtime, with DT_RPATH $ORIGIN/lib, and in lib/ every shared library they
# load except glibc's, libstdc++/libgcc_s (newer on the GPU machine), the
# driver (libcuda) and the CUDA toolkit's (cuBLASLt: 540 MB, found there by
# `run`, which puts the toolkit's lib64 on LD_LIBRARY_PATH).
#
# Modes:  bundle [DIR]   build, stage, check, pack into DIR (default gpu-bundle/)
#         run [DIR]      on the GPU machine: unpack DIR's tarball to /tmp and
#                        run everything from there
#         verify [DIR]   unpack DIR's tarball to a temporary folder and check
#                        it here (part of `bundle`)
#         sanitize [DIR] on the GPU machine, if device time is left after `run`:
#                        the CUDA tests under compute-sanitizer memcheck
#                        (out-of-bounds and misaligned accesses, leaks), ~5 min:
#                          run(command="tools/gpu_check.sh sanitize", carry=["gpu-bundle"], timeout_s=420)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE="${1:-}"
BUNDLE="${2:-$ROOT/gpu-bundle}"
BUILD="${GPU_CHECK_BUILD:-$ROOT/build-gpu}"
ARCHS="${GPU_CHECK_ARCHS:-90a}"
STAGE="$BUILD/bundle"
TARBALL_NAME=mambert-gpu.tar.xz
MAX_BUNDLE_MIB=40 # the device tool carries 64 MiB with the repository

TESTS=(runtime_dtype_cuda cuda_amp_logic runtime_cuda_alloc cuda_runtime cuda_gemm cuda_ops cuda_train)
BENCHES=(bench_cuda_mlp bench_cuda_gemm bench_cuda_train)
# needs no GPU: exits 0 here too
NO_GPU_NEEDED=" runtime_dtype_cuda cuda_amp_logic "

die() { echo "gpu_check: $*" >&2; exit 1; }

# Shared libraries the bundle leaves to the GPU machine.
SYSTEM_LIBS='^(linux-vdso|ld-linux|libc\.so|libm\.so|libdl\.so|librt\.so|libpthread\.so|libresolv\.so|libutil\.so|libgcc_s\.so|libstdc\+\+\.so|libcuda\.so|libnvidia|libcudart\.so|libcublas|libcublasLt|libnccl|libcufft|libcurand|libcusparse|libcusolver|libnvrtc|libnvJitLink)'

bundle() {
  command -v cmake >/dev/null || die "cmake not found"
  command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"
  echo "gpu_check: configuring $BUILD (RelWithDebInfo: -O2, the flags CI checks; sm_$ARCHS, RPATH \$ORIGIN/lib)"
  mkdir -p "$BUILD"
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMAMBERT_CUDA_ARCHS="$ARCHS" -DMAMBERT_WITH_MPI=OFF \
    '-DCMAKE_BUILD_RPATH=$ORIGIN/lib' -DCMAKE_EXE_LINKER_FLAGS=-Wl,--disable-new-dtags >"$BUILD/gpu_check.configure.log" 2>&1 ||
    { cat "$BUILD/gpu_check.configure.log"; die "configure failed"; }
  grep -q "MAMBERT_HAVE_CUDA 1" "$BUILD/generated/mambert_build_config.h" || die "the build found no CUDA toolkit"
  local targets=()
  for t in "${TESTS[@]}" "${BENCHES[@]}"; do targets+=(--target "$t"); done
  echo "gpu_check: building ${#targets[@]} targets (-j${GPU_CHECK_JOBS:-2})"
  cmake --build "$BUILD" -j"${GPU_CHECK_JOBS:-2}" "${targets[@]}" >"$BUILD/gpu_check.build.log" 2>&1 ||
    { tail -40 "$BUILD/gpu_check.build.log"; die "build failed"; }
  rm -rf "$STAGE"
  mkdir -p "$STAGE/lib" "$BUNDLE"
  # keep the bundle out of git (the device tool carries ignored paths only when named)
  if [[ "$BUNDLE" == "$ROOT"/* ]] && git -C "$ROOT" rev-parse --git-common-dir >/dev/null 2>&1; then
    local excl rel
    excl="$(git -C "$ROOT" rev-parse --git-common-dir)/info/exclude"
    [[ "$excl" = /* ]] || excl="$ROOT/$excl"
    rel="/${BUNDLE#"$ROOT"/}/"
    mkdir -p "$(dirname "$excl")"
    grep -qxF "$rel" "$excl" 2>/dev/null || echo "$rel" >>"$excl"
  fi
  for b in "${TESTS[@]}" "${BENCHES[@]}"; do
    [ -x "$BUILD/$b" ] || die "$BUILD/$b was not built"
    cp "$BUILD/$b" "$STAGE/$b"
    strip --strip-unneeded "$STAGE/$b"
    # every library it loads that the GPU machine lacks, under its soname
    ldd "$BUILD/$b" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | while read -r soname path; do
      [[ "$soname" =~ $SYSTEM_LIBS ]] && continue
      [ -e "$STAGE/lib/$soname" ] || cp -L "$path" "$STAGE/lib/$soname"
    done
  done
  (git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown) >"$STAGE/COMMIT"
  git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo "(with uncommitted changes)" >>"$STAGE/COMMIT"
  echo "gpu_check: packing $BUNDLE/$TARBALL_NAME"
  tar -cJf "$BUNDLE/$TARBALL_NAME.tmp" -C "$STAGE" . && mv "$BUNDLE/$TARBALL_NAME.tmp" "$BUNDLE/$TARBALL_NAME"
  verify
}

# Unpack the bundle's tarball into a fresh folder; print its path.
unpack() {
  local dest="$1"
  [ -f "$BUNDLE/$TARBALL_NAME" ] || die "no $BUNDLE/$TARBALL_NAME (run 'tools/gpu_check.sh bundle' on the build machine and carry ${BUNDLE#"$ROOT"/})"
  rm -rf "$dest"
  mkdir -p "$dest"
  tar -xJf "$BUNDLE/$TARBALL_NAME" -C "$dest"
}

verify() {
  local dir mib
  dir=$(mktemp -d /tmp/mambert-gpu-verify.XXXXXX)
  unpack "$dir"
  mib=$(($(du -sb "$BUNDLE" | cut -f1) / 1048576))
  echo "gpu_check: $BUNDLE: ${mib} MiB packed (limit $MAX_BUNDLE_MIB), $(($(du -sb "$dir" | cut -f1) / 1048576)) MiB unpacked; libraries carried:"
  ls "$dir/lib" | sed 's/^/    /'
  [ "$mib" -le "$MAX_BUNDLE_MIB" ] || die "bundle too large for the device tool"
  local bad=0
  for b in "${TESTS[@]}" "${BENCHES[@]}"; do
    # every non-system library must resolve inside the bundle
    local stray
    stray=$(cd "$dir" && env -i PATH=/usr/bin:/bin LD_LIBRARY_PATH= ldd "./$b" |
      awk '$2 == "=>" {print $1, $3}' | while read -r so path; do
        [[ "$so" =~ $SYSTEM_LIBS ]] && continue
        [[ "$(realpath -m "$path")" == "$dir/lib/"* ]] || echo "$so=>$path"
      done)
    local out rc=0
    out=$(cd "$dir" && env -i PATH=/usr/bin:/bin HOME="${HOME:-/tmp}" LD_LIBRARY_PATH= "./$b" 2>&1) || rc=$?
    local want=77
    [[ "$NO_GPU_NEEDED" == *" $b "* ]] && want=0
    if [ -n "$stray" ]; then
      echo "  $b: FAIL: libraries outside the bundle: $stray"
      bad=1
    elif [ "$rc" -ne "$want" ] || { [ "$want" -eq 77 ] && ! grep -q "no CUDA device" <<<"$out"; }; then
      echo "  $b: FAIL: exit $rc (want $want): $(tail -2 <<<"$out")"
      bad=1
    else
      echo "  $b: starts from the bundle, exit $rc$([ "$want" -eq 77 ] && echo ' (no CUDA device here)')"
    fi
  done
  rm -rf "$dir"
  [ "$bad" -eq 0 ] || die "bundle check failed"
  echo "gpu_check: bundle ready. Device call:"
  echo "  run(command=\"tools/gpu_check.sh run\", carry=[\"${BUNDLE#"$ROOT"/}\"], timeout_s=600)"
}

# The directory holding libcublasLt.so.13 on the GPU machine.
find_cuda_libs() {
  local d
  for d in ${CUDA_HOME:+"$CUDA_HOME/lib64"} /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
    /usr/local/cuda-13*/lib64 /usr/local/cuda-13*/targets/x86_64-linux/lib; do
    [ -e "$d/libcublasLt.so.13" ] && { echo "$d"; return 0; }
  done
  d=$(python3 - 2>/dev/null <<'EOF'
import os
try:
    import nvidia
    for base in list(nvidia.__path__):
        for dirpath, _, files in os.walk(base):
            if "libcublasLt.so.13" in files:
                print(dirpath); raise SystemExit
except ImportError:
    pass
EOF
  ) || true
  [ -n "$d" ] && { echo "$d"; return 0; }
  d=$(ldconfig -p 2>/dev/null | awk '/libcublasLt\.so\.13 / {print $NF; exit}') || true
  [ -n "$d" ] && { dirname "$d"; return 0; }
  return 1
}

run() {
  local start=$SECONDS out="${OUT:-$BUILD/gpu-out}"
  mkdir -p "$out"
  local log="$out/gpu_check.log" results=/tmp/gpu_check_tests.tsv
  : >"$log"
  : >"$results"
  local bin=/tmp/mambert-gpu
  unpack "$bin"
  local cudalib
  cudalib=$(find_cuda_libs) || die "libcublasLt.so.13 not found on this machine"
  export LD_LIBRARY_PATH="$cudalib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  {
    echo "== gpu_check run: bundle of commit $(tr '\n' ' ' <"$bin/COMMIT"), cuBLASLt from $cudalib"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1 || true
  } | tee -a "$log"
  for t in "${TESTS[@]}"; do
    local t0=$SECONDS rc=0
    echo "== test $t" >>"$log"
    (cd "$bin" && timeout 240 "./$t") >>"$log" 2>&1 || rc=$?
    printf '%s\t%d\t%d\n' "$t" "$rc" $((SECONDS - t0)) >>"$results"
    echo "gpu_check: $t exit $rc ($((SECONDS - t0)) s)"
  done
  local b
  for b in "bench_cuda_mlp" "bench_cuda_gemm" "bench_cuda_train --model bert --batch 32 --seq 128" \
    "bench_cuda_train --model mamba --batch 32 --seq 128"; do
    local name=${b%% *} rc=0 t0=$SECONDS json
    json="$out/$name.json"
    [[ "$b" == *"--model bert"* ]] && json="$out/bench_cuda_train_bert.json"
    [[ "$b" == *"--model mamba"* ]] && json="$out/bench_cuda_train_mamba.json"
    echo "== bench $b" >>"$log"
    # shellcheck disable=SC2086
    (cd "$bin" && timeout 150 ./$b --json "$json") >>"$log" 2>&1 || rc=$?
    printf '%s\t%d\t%d\n' "$(basename "$json" .json)" "$rc" $((SECONDS - t0)) >>"$results"
    echo "gpu_check: $b exit $rc ($((SECONDS - t0)) s)"
  done
  # the PyTorch peers get what is left of ~8.5 minutes
  local budget=$((510 - (SECONDS - start)))
  [ "$budget" -lt 60 ] && budget=60
  echo "== torch peers (budget ${budget} s)" >>"$log"
  local rc=0 t0=$SECONDS
  PYTHONUNBUFFERED=1 timeout $((budget + 30)) python3 "$ROOT/tools/bench_torch_peers.py" --json "$out/torch_peers.json" \
    --budget-s "$budget" >>"$log" 2>&1 || rc=$?
  printf '%s\t%d\t%d\n' "torch_peers" "$rc" $((SECONDS - t0)) >>"$results"
  echo "gpu_check: torch peers exit $rc ($((SECONDS - t0)) s)"
  python3 "$ROOT/tools/gpu_report.py" "$out" "$results" | tee -a "$log"
}

sanitize() {
  local out="${OUT:-$BUILD/gpu-out}" bin=/tmp/mambert-gpu cs
  mkdir -p "$out"
  unpack "$bin"
  export LD_LIBRARY_PATH="$(find_cuda_libs)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null) || die "no compute-sanitizer"
  local t rc
  for t in cuda_gemm cuda_ops cuda_train; do
    rc=0
    (cd "$bin" && timeout 130 "$cs" --tool memcheck --error-exitcode 99 --print-limit 20 "./$t") \
      >"$out/sanitize_$t.log" 2>&1 || rc=$?
    echo "gpu_check: memcheck $t: exit $rc ($([ $rc -eq 0 ] && echo clean || { [ $rc -eq 99 ] && echo ERRORS || echo 'failed or timed out'; }))"
    grep -E "ERROR SUMMARY|Invalid|out of bounds" "$out/sanitize_$t.log" | head -5 || true
  done
}

case "$MODE" in
bundle) bundle ;;
sanitize) sanitize ;;
verify) verify ;;
run) run ;;
*)
  awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"
  exit 2
  ;;
esac
