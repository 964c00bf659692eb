#!/usr/bin/env bash
# tools/gpu_check.sh: THE GPU check of mambert (issues 8, 9, 10): every CUDA
# test, every GPU benchmark and their PyTorch peers, in one device call of
# about 8 minutes on a lent H100/H200, surviving partial failure (each step
# has its own time limit; one crashing test or benchmark does not stop the
# rest), ending with a short table.
#
# The GPU machine has the NVIDIA driver, the CUDA 13.0 toolkit and python3
# with torch + transformers, but none of our Debian libraries and no
# internet; the device tool copies the repository (so tools/*.py and
# data/samples, data/vocab are there) but nothing built. So the binaries are
# built HERE and carried:
#
#   1. here:   tools/gpu_check.sh bundle
#      builds build-gpu/ for sm_90a (RelWithDebInfo, stripped), stages every
#      CUDA test and GPU benchmark with the shared libraries the GPU image
#      lacks (RPATH $ORIGIN/lib), checks each starts from the bundle with an
#      empty LD_LIBRARY_PATH (exit 77 "no CUDA device" here; the sweep and
#      packed benchmarks also plan their programs host-side) and packs
#      gpu-bundle/mambert-gpu.tar.xz (git-ignored; must stay far under the
#      device tool's 64 MiB).
#   2. device: run(command="tools/gpu_check.sh run", carry=["gpu-bundle"], timeout_s=540)
#      about 8 minutes (GPU_CHECK_BUDGET, default 450 s of steps); returns
#      4 files in $OUT: gpu_check.md (the tables), gpu_check.json (every
#      result merged), gpu_check.log (the full log), gpu_raw.tar.gz (each
#      step's own JSON and log). The table prints last. Steps the budget did
#      not reach are listed as "skipped (budget)" with the call that runs them:
#        run(command="tools/gpu_check.sh run STEP ...", carry=["gpu-bundle"], timeout_s=...)
#   3. here:   copy the returned files into bench/results/<card>-<date>/ and
#      commit them (bench/results/README.md); to merge a second call's files:
#        tools/gpu_report.py --merge-raw A/gpu_raw.tar.gz B/gpu_raw.tar.gz --out DIR
#
# Modes:  bundle            build, stage, check, pack (gpu-bundle/)
#         verify            unpack the tarball to a temporary folder and check it here (part of bundle)
#         run [WHAT ...]    on the GPU machine: everything, or the named steps, groups
#                           (tests, bench, peers) or single tests (cuda_models ...)
#         sanitize [TEST ...]  on the GPU machine: the CUDA tests under compute-sanitizer
#                           memcheck, ~4 minutes (GPU_CHECK_SANITIZE_BUDGET, 240 s); returns
#                           sanitize.md and sanitize.log:
#                             run(command="tools/gpu_check.sh sanitize", carry=["gpu-bundle"], timeout_s=300)
#         profile [WHAT ...]  on the GPU machine: Nsight Compute (ncu, Firecracker machines) on
#                           the kernels that miss their predictions: scan (scan_fwd/bwd at
#                           L = 4096, Mamba-130m's layer), attention (flash fwd/bwd, L = 4096,
#                           D = 64 and 128), hopper (the wgmma forward, tiling 2), hopper_pipe
#                           (tiling 4), hopper_ws (tiling 5, warp-specialised), hopper_bwd
#                           (the wgmma dK/dV and dQ kernels), hopper_bwd_ws (backward tiling
#                           2's warp-specialised dK/dV and dQ kernels), hopper_bwd_bulk (tiling
#                           3's dK/dV kernel with its bulk-reduce dQ), hopper_bwd_b34 (the
#                           deterministic tilings 3 and 4 at D = 64), hopper_fwd_69 (forward
#                           tilings 6 and 9 at D = 64), gemm (one BERT-base bf16 GEMM, the
#                           cuBLAS yardstick);
#                           speed of light, occupancy, warp stalls, memory workload, source
#                           counters, then per SASS instruction the top excess sectors, bank
#                           conflicts and stalls (tools/ncu_source_top.py); ~3 minutes; returns
#                           profile_*.txt and profile_*_sass.csv.gz (one each per WHAT):
#                             run(command="tools/gpu_check.sh profile", carry=["gpu-bundle"], timeout_s=300)
#         list              the steps, their groups and time limits
# Environment: GPU_CHECK_BUDGET (s of steps, 450), GPU_CHECK_TEST_JOBS (tests
# run side by side, 4), GPU_CHECK_BUNDLE (gpu-bundle), GPU_CHECK_BUILD
# (build-gpu), GPU_CHECK_ARCHS (90a), GPU_CHECK_JOBS (build -j, 2).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE="${1:-}"
[ $# -gt 0 ] && shift
BUNDLE="${GPU_CHECK_BUNDLE:-$ROOT/gpu-bundle}"
BUILD="${GPU_CHECK_BUILD:-$ROOT/build-gpu}"
ARCHS="${GPU_CHECK_ARCHS:-90a}"
STAGE="$BUILD/bundle"
TARBALL_NAME=mambert-gpu.tar.xz
MAX_BUNDLE_MIB=40 # the device tool carries 64 MiB with the repository
BUDGET="${GPU_CHECK_BUDGET:-450}"
TEST_JOBS="${GPU_CHECK_TEST_JOBS:-4}"
BIN=/tmp/mambert-gpu

# The CUDA tests, each with its time limit (s). Order: longest first, so the
# parallel runner starts them early. NAME+wgmma runs test NAME again with
# MAMBERT_ATTN_TILING=wgmma (the Hopper attention kernels through the op
# table, CUDA graphs and the models). cuda_attention and cuda_attention_fp8
# run in two processes each (MAMBERT_ATTN_TEST_PART): all but the
# warp-specialised TMA tilings, and NAME+ws those alone, whose first hang
# or fault on a new GPU must not cost the rest.
TESTS=(cuda_attention_probe:40 cuda_attention:150 cuda_attention+ws:120 cuda_selective_scan:150 cuda_models:120 cuda_attention_ops:120 cuda_scan_ops:120
  cuda_train:120 cuda_ops:120 cuda_gemm:120 cuda_attention_fp8:90 cuda_attention_fp8+ws:60 cuda_conv1d:90 cuda_runtime:60
  runtime_cuda_alloc:60 runtime_dtype_cuda:30 cuda_attention_dispatch:30
  cuda_selective_scan_plan:30 cuda_attention_ops+wgmma:120 cuda_models+wgmma:120)
BENCHES=(bench_cuda_mlp bench_cuda_gemm bench_cuda_train bench_cuda_attention bench_cuda_selective_scan
  bench_cuda_sweep bench_cuda_packed mambert)
# need no GPU: exit 0 here too
NO_GPU_NEEDED=" runtime_dtype_cuda cuda_attention_dispatch cuda_selective_scan_plan "

# The steps of `run`, in order: name, group, time limit (s). A step gets
# min(its limit, what is left of the budget); under 10 s left it is skipped.
# The peers of the open issues' kernels (attention, selective scan) go
# first, the torch.compile ones (slow to compile) last.
STEPS=(
  "tests tests 170"
  "cli_train cli 150"
  "cli_eval cli 90"
  "fp8_probe bench 20"
  "bench_cuda_mlp bench 30"
  "bench_cuda_gemm bench 45"
  "bench_cuda_train_bert bench 45"
  "bench_cuda_train_mamba bench 45"
  "bench_cuda_train_bert_wgmma bench 45"
  "bench_cuda_attention bench 60"
  "bench_cuda_attention_tma bench 40"
  "bench_cuda_attention_bwd_ws bench 40"
  "bench_cuda_attention_fp8_ws bench 40"
  "bench_cuda_selective_scan bench 50"
  "bench_cuda_selective_scan_b1 bench 30"
  "bench_cuda_sweep bench 100"
  "bench_cuda_sweep_fp8 bench 60"
  "bench_cuda_packed bench 80"
  "torch_sdpa peers 85"
  "torch_scan peers 150"
  "torch_train peers 150"
  "torch_mlp_gemm peers 90"
  "torch_sweep peers 90"
  "torch_train_compile peers 200"
  "torch_train_compile_mamba peers 420"
)

die() {
  echo "gpu_check: $*" >&2
  exit 1
}

test_names() { for t in "${TESTS[@]}"; do echo "${t%%:*}"; done; }
# the binaries behind them (NAME+wgmma is NAME's binary)
test_bins() { test_names | sed 's/+.*//' | awk '!seen[$0]++'; }

# Shared libraries the bundle leaves to the GPU machine.
SYSTEM_LIBS='^(linux-vdso|ld-linux|libc\.so|libm\.so|libdl\.so|librt\.so|libpthread\.so|libresolv\.so|libutil\.so|libgcc_s\.so|libstdc\+\+\.so|libcuda\.so|libnvidia|libcudart\.so|libcublas|libcublasLt|libnccl|libcufft|libcurand|libcusparse|libcusolver|libnvrtc|libnvJitLink)'

# ---- bundle (build machine) -----------------------------------------------------------

bundle() {
  command -v cmake >/dev/null || die "cmake not found"
  command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"
  echo "gpu_check: configuring $BUILD (RelWithDebInfo: -O2; sm_$ARCHS; RPATH \$ORIGIN/lib)"
  mkdir -p "$BUILD"
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMAMBERT_CUDA_ARCHS="$ARCHS" -DMAMBERT_WITH_MPI=OFF \
    '-DCMAKE_BUILD_RPATH=$ORIGIN/lib' -DCMAKE_EXE_LINKER_FLAGS=-Wl,--disable-new-dtags >"$BUILD/gpu_check.configure.log" 2>&1 ||
    {
      cat "$BUILD/gpu_check.configure.log"
      die "configure failed"
    }
  grep -q "MAMBERT_HAVE_CUDA 1" "$BUILD/generated/mambert_build_config.h" || die "the build found no CUDA toolkit"
  local targets=() t
  for t in $(test_bins) "${BENCHES[@]}"; do targets+=(--target "$t"); done
  echo "gpu_check: building $((${#targets[@]} / 2)) targets (-j${GPU_CHECK_JOBS:-2})"
  cmake --build "$BUILD" -j"${GPU_CHECK_JOBS:-2}" "${targets[@]}" >"$BUILD/gpu_check.build.log" 2>&1 ||
    {
      tail -40 "$BUILD/gpu_check.build.log"
      die "build failed"
    }
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
  local b
  for b in $(test_bins) "${BENCHES[@]}"; do
    [ -x "$BUILD/$b" ] || die "$BUILD/$b was not built"
    cp "$BUILD/$b" "$STAGE/$b"
    strip --strip-unneeded "$STAGE/$b"
    # every library it loads that the GPU machine lacks, under its soname
    ldd "$BUILD/$b" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | while read -r soname path; do
      [[ "$soname" =~ $SYSTEM_LIBS ]] && continue
      [ -e "$STAGE/lib/$soname" ] || cp -L "$path" "$STAGE/lib/$soname"
    done
  done
  # the cuBLASLt fp8 probe (a diagnostic: which fp8 configurations run)
  local cuda_dir
  cuda_dir="$(dirname "$(dirname "$(command -v nvcc)")")"
  cc -std=c11 -O1 -Wall -Wextra -I"$cuda_dir/include" -o "$STAGE/fp8_probe" "$ROOT/tools/fp8_probe.c" \
    -L"$cuda_dir/lib64" -lcublasLt -lcudart || die "tools/fp8_probe.c did not build"
  (git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown) >"$STAGE/COMMIT"
  git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo "(with uncommitted changes)" >>"$STAGE/COMMIT"
  echo "gpu_check: packing $BUNDLE/$TARBALL_NAME"
  # Every program links the same kernels (~20 MB of fatbins each): with xz's
  # default 8 MiB dictionary the copies are packed again and again (44 MB
  # for 302 MiB on 2026-11-28, over the limit); a dictionary larger than the
  # programs packs each copy once (12 MB). Unpacking needs ~260 MiB of memory.
  { tar -cf - -C "$STAGE" . | xz -9 --lzma2=dict=256MiB >"$BUNDLE/$TARBALL_NAME.tmp"; } ||
    die "packing $BUNDLE/$TARBALL_NAME failed"
  mv "$BUNDLE/$TARBALL_NAME.tmp" "$BUNDLE/$TARBALL_NAME"
  verify
}

# Unpack the bundle's tarball into a fresh folder.
unpack() {
  local dest="$1"
  [ -f "$BUNDLE/$TARBALL_NAME" ] ||
    die "no $BUNDLE/$TARBALL_NAME (run 'tools/gpu_check.sh bundle' on the build machine and carry ${BUNDLE#"$ROOT"/})"
  rm -rf "$dest"
  mkdir -p "$dest"
  tar -xJf "$BUNDLE/$TARBALL_NAME" -C "$dest"
}

verify() {
  local dir mib
  dir=$(mktemp -d /tmp/mambert-gpu-verify.XXXXXX)
  unpack "$dir"
  mib=$(($(du -sb "$BUNDLE/$TARBALL_NAME" | cut -f1) / 1048576))
  echo "gpu_check: $BUNDLE/$TARBALL_NAME: $(du -h "$BUNDLE/$TARBALL_NAME" | cut -f1) packed (limit $MAX_BUNDLE_MIB MiB;" \
    "the device tool carries 64 MiB), $(($(du -sb "$dir" | cut -f1) / 1048576)) MiB unpacked; libraries carried:"
  ls "$dir/lib" | sed 's/^/    /'
  [ "$mib" -lt "$MAX_BUNDLE_MIB" ] || die "bundle too large for the device tool"
  local bad=0 b
  for b in $(test_bins) "${BENCHES[@]}"; do
    # every non-system library must resolve inside the bundle
    local stray
    stray=$(cd "$dir" && env -i PATH=/usr/bin:/bin LD_LIBRARY_PATH= ldd "./$b" |
      awk '$2 == "=>" {print $1, $3}' | while read -r so path; do
        [[ "$so" =~ $SYSTEM_LIBS ]] && continue
        [[ "$(realpath -m "$path")" == "$dir/lib/"* ]] || echo "$so=>$path"
      done)
    local out rc=0
    local args=() want=77
    [ "$b" = mambert ] && args=(info) && want=0 # the CLI: what it was built with and sees
    out=$(cd "$ROOT" && env -i PATH=/usr/bin:/bin HOME="${HOME:-/tmp}" LD_LIBRARY_PATH= "$dir/$b" "${args[@]}" 2>&1) || rc=$?
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
  # the model benchmarks' programs, planned host-side from the bundle (no GPU)
  local p
  for p in "bench_cuda_sweep --plan-only" "bench_cuda_packed --plan-only --models bert,mamba"; do
    # shellcheck disable=SC2086
    if (cd "$ROOT" && env -i PATH=/usr/bin:/bin HOME="${HOME:-/tmp}" LD_LIBRARY_PATH= "$dir"/$p >"$dir/plan.txt" 2>&1); then
      echo "  ${p%% *} --plan-only: $(grep -c ' GiB\|arena' "$dir/plan.txt") programs planned from the bundle"
    else
      echo "  ${p%% *} --plan-only: FAIL: $(tail -2 "$dir/plan.txt")"
      bad=1
    fi
  done
  rm -rf "$dir"
  [ "$bad" -eq 0 ] || die "bundle check failed"
  echo "gpu_check: bundle ready. Device call (about 8 minutes; then give_back unless a rerun follows at once):"
  echo "  run(command=\"tools/gpu_check.sh run\", carry=[\"${BUNDLE#"$ROOT"/}\"], timeout_s=540)"
}

# ---- on the GPU machine ---------------------------------------------------------------

# The directory holding libcublasLt.so.13 on the GPU machine.
find_cuda_libs() {
  local d
  for d in ${CUDA_HOME:+"$CUDA_HOME/lib64"} /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
    /usr/local/cuda-13*/lib64 /usr/local/cuda-13*/targets/x86_64-linux/lib; do
    [ -e "$d/libcublasLt.so.13" ] && {
      echo "$d"
      return 0
    }
  done
  d=$(
    python3 - 2>/dev/null <<'EOF'
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
  [ -n "$d" ] && {
    echo "$d"
    return 0
  }
  d=$(ldconfig -p 2>/dev/null | awk '/libcublasLt\.so\.13 / {print $NF; exit}') || true
  [ -n "$d" ] && {
    dirname "$d"
    return 0
  }
  return 1
}

now() { date +%s; }

# record NAME GROUP RC SECONDS LIMIT (rc 200: skipped for the budget)
record() { printf '%s\t%s\t%d\t%d\t%d\n' "$1" "$2" "$3" "$4" "$5" >>"$TSV"; }

say() { echo "gpu_check: $*" | tee -a "$LOG"; }

# A step's command runs with cwd = the repository root, our binaries from
# the unpacked bundle with cuBLASLt on their LD_LIBRARY_PATH (python keeps
# the image's own libraries), its output into the step's log.
ours() { env LD_LIBRARY_PATH="$CUDALIB" "$@"; }

run_tests() { # LIMIT [TEST ...]
  local limit=$1
  shift
  local want=" $* " t0 t name max
  t0=$(now)
  for t in "${TESTS[@]}"; do
    name=${t%%:*}
    max=${t##*:}
    [ "$want" = "  " ] || [[ "$want" == *" $name "* ]] || continue
    while [ "$(jobs -rp | wc -l)" -ge "$TEST_JOBS" ]; do wait -n 2>/dev/null || true; done
    local left=$((limit - ($(now) - t0)))
    if [ "$left" -lt 10 ]; then
      record "$name" test 200 0 0
      continue
    fi
    local tl=$((max < left ? max : left))
    (
      s=$(now)
      rc=0
      tiling=default part=
      [[ "$name" == *+wgmma ]] && tiling=wgmma
      case "$name" in
      cuda_attention | cuda_attention_fp8) part=base ;;
      *+ws) part=ws ;;
      esac
      cd "$ROOT" && OMP_NUM_THREADS=4 MAMBERT_SCAN_DUMP="$WORK/scan_dump.safetensors" \
        MAMBERT_ATTN_DUMP="$WORK/attn_dump.safetensors" MAMBERT_ATTN_TILING=$tiling MAMBERT_ATTN_TEST_PART=$part \
        ours timeout -k 5 "$tl" "$BIN/${name%%+*}" >"$WORK/logs/test_$name.log" 2>&1 || rc=$?
      record "$name" test "$rc" $(($(now) - s)) "$tl"
      echo "gpu_check: test $name exit $rc ($(($(now) - s)) s)"
    ) &
  done
  wait
}

# The command of a bench/peer step given its time limit T (s).
step_cmd() {
  local name=$1 T=$2 R="$WORK/raw"
  case "$name" in
  fp8_probe) echo "ours $BIN/fp8_probe" ;;
  bench_cuda_mlp) echo "ours $BIN/bench_cuda_mlp --json $R/bench_cuda_mlp.json" ;;
  bench_cuda_gemm) echo "ours $BIN/bench_cuda_gemm --json $R/bench_cuda_gemm.json" ;;
  bench_cuda_train_bert) echo "ours $BIN/bench_cuda_train --model bert --batch 32 --seq 128 --json $R/bench_cuda_train_bert.json" ;;
  bench_cuda_train_mamba) echo "ours $BIN/bench_cuda_train --model mamba --batch 32 --seq 128 --json $R/bench_cuda_train_mamba.json" ;;
  # BERT's step again with the Hopper attention tilings (opt-in until measured; sm_90 only)
  bench_cuda_train_bert_wgmma) echo "ours env MAMBERT_ATTN_TILING=wgmma $BIN/bench_cuda_train --model bert --batch 32 --seq 128 --json $R/bench_cuda_train_bert_wgmma.json" ;;
  # attention in four processes, each adding to one JSON: the kernels run on a GPU before, then
  # each family of TMA / mbarrier kernels, whose first hang or fault must not cost the others' numbers
  bench_cuda_attention) echo "ours $BIN/bench_cuda_attention --pass first --json $R/bench_cuda_attention.json" ;;
  bench_cuda_attention_tma) echo "ours $BIN/bench_cuda_attention --pass tma --json $R/bench_cuda_attention.json" ;;
  bench_cuda_attention_bwd_ws) echo "ours $BIN/bench_cuda_attention --pass bwd-ws --json $R/bench_cuda_attention.json" ;;
  bench_cuda_attention_fp8_ws) echo "ours $BIN/bench_cuda_attention --pass fp8-ws --json $R/bench_cuda_attention.json" ;;
  bench_cuda_selective_scan) echo "ours $BIN/bench_cuda_selective_scan --json $R/bench_cuda_selective_scan.json --budget $((T * 2 / 3))" ;;
  # batch 1 (a packed row's grid: rows split into parts): tokens/s against batch 8's, same run
  bench_cuda_selective_scan_b1) echo "ours $BIN/bench_cuda_selective_scan --batch 1 --min-len 1024 --json $R/bench_cuda_selective_scan_b1.json --budget $((T * 2 / 3))" ;;
  bench_cuda_sweep) echo "ours $BIN/bench_cuda_sweep --json $R/bench_cuda_sweep.json --budget-s $((T - 15))" ;;
  # BERT-base's evaluation with its attention in e4m3 (eval.attention: fp8) beside bf16, same lengths
  bench_cuda_sweep_fp8) echo "ours $BIN/bench_cuda_sweep --models bert,bert-fp8 --modes eval --lengths 512,2048,8192 --json $R/bench_cuda_sweep_fp8.json --budget-s $((T - 10))" ;;
  bench_cuda_packed) echo "ours $BIN/bench_cuda_packed --json $R/bench_cuda_packed.json --budget-s $((T - 10))" ;;
  torch_train) echo "python3 tools/bench_torch_peers.py --sections train --variants eager --json $R/torch_train.json --budget-s $((T - 20))" ;;
  torch_train_compile_mamba) echo "python3 tools/bench_torch_peers.py --sections train --models mamba --variants compile --json $R/torch_train_compile_mamba.json --budget-s $((T - 10))" ;;
  torch_train_compile) echo "python3 tools/bench_torch_peers.py --sections train --models bert --variants compile --json $R/torch_train_compile.json --budget-s $((T - 10))" ;;
  torch_mlp_gemm) echo "python3 tools/bench_torch_peers.py --sections mlp,gemm --json $R/torch_mlp_gemm.json --budget-s $((T - 10))" ;;
  torch_sweep) echo "python3 tools/bench_torch_peers.py --sections sweep --json $R/torch_sweep.json --budget-s $((T - 15))" ;;
  torch_sdpa) echo "torch_sdpa_step" ;;
  torch_scan) echo "torch_scan_step $T" ;;
  cli_train) echo "cli_train_step" ;;
  cli_eval) echo "cli_eval_step" ;;
  *) return 1 ;;
  esac
}

# torch's math backend on cuda_attention's dump (correctness), then torch
# SDPA (flash, cuDNN) on the attention benchmark's shapes, into its own file
torch_sdpa_step() {
  local ours_json=() rc=0
  if [ -f "$WORK/attn_dump.safetensors" ]; then
    python3 tools/check_torch_attention.py "$WORK/attn_dump.safetensors" 2>&1 | tee "$WORK/raw/attn_check.txt"
    tail -1 "$WORK/raw/attn_check.txt" | grep -q ": ok" || rc=1
  else
    echo "no dump from cuda_attention (the test did not run or failed first): no torch math-backend check" |
      tee "$WORK/raw/attn_check.txt"
  fi
  [ -f "$WORK/raw/bench_cuda_attention.json" ] && ours_json=(--ours "$WORK/raw/bench_cuda_attention.json")
  python3 tools/bench_torch_sdpa.py --json "$WORK/raw/torch_sdpa.json" "${ours_json[@]}" || rc=1
  return $rc
}

# the selective scan's peers: transformers' slow path on the GPU test's dump
# (correctness), then transformers' loop and a torch.compile'd scan (speed)
torch_scan_step() {
  local T=$1 rc=0
  if [ -f "$WORK/scan_dump.safetensors" ]; then
    python3 tools/bench_torch_scan.py --check-dump "$WORK/scan_dump.safetensors" 2>&1 | grep --line-buffered -v "falling back" |
      tee "$WORK/raw/scan_check.txt"
    tail -1 "$WORK/raw/scan_check.txt" | grep -q ": ok" || rc=1
  else
    echo "no dump from cuda_selective_scan (the test did not run or failed first): no transformers check" |
      tee "$WORK/raw/scan_check.txt"
  fi
  # a limit of its own under the step's, so the merge below still runs on what
  # it saved; --line-buffered, so its log survives that limit
  timeout -k 5 $((T - 15)) python3 tools/bench_torch_scan.py --json "$WORK/raw/torch_scan.json" --budget $((T - 35)) 2>&1 |
    grep --line-buffered -v "Warning\|falling back"
  if [ -f "$WORK/raw/bench_cuda_selective_scan.json" ]; then
    python3 tools/bench_torch_scan.py --merge "$WORK/raw/bench_cuda_selective_scan.json" "$WORK/raw/torch_scan.json" \
      --write "$WORK/raw/scan.json"
  fi
  return $rc
}

# \`mambert train\` itself on the GPU (train.device: cuda): the demo BERT and
# Mamba for 40 steps in f32, bf16 and fp16 (dynamic loss scaling) and on the
# CPU. f32 on the GPU runs the CPU's program: its losses must follow the
# CPU's; fp16's must stay within 0.1. Exact resume: a copy of the bf16 and of
# the fp16 run cut back to its step-20 checkpoint and resumed must export the
# same weights byte for byte.
cli_train_step() {
  local rc=0 arch prec d
  local common=(--set train.max_steps=40 --set checkpoint.every=20 --set eval.every=0
    --set data.cache_dir="$WORK/cli-cache" --set log.progress=lines)
  for arch in bert mamba; do
    for prec in f32 bf16 fp16; do
      d="$WORK/raw/cli-$arch-$prec"
      ours "$BIN/mambert" train "experiments/demo-$arch.yaml" --set train.device=cuda --set train.precision=$prec \
        --set run.dir="$d" "${common[@]}" || rc=1
    done
    ours "$BIN/mambert" train "experiments/demo-$arch.yaml" --set train.device=cpu --set run.dir="$WORK/raw/cli-$arch-cpu" \
      "${common[@]}" || rc=1
    for prec in bf16 fp16; do # fp16: the loss scaler's state is in the checkpoint too
      d="$WORK/raw/cli-$arch-$prec"
      [ -d "$d/checkpoints" ] || continue
      rm -rf "$d-resumed"
      cp -r "$d" "$d-resumed"
      rm -rf "$d-resumed"/checkpoints/step-00000040
      ours "$BIN/mambert" train --resume "$d-resumed" || rc=1
      if cmp -s "$d/model/model.safetensors" "$d-resumed/model/model.safetensors"; then
        echo "cli_train: $arch $prec resumed from step 20: the same weights byte for byte"
      else
        echo "cli_train: $arch $prec resumed from step 20: the exported weights DIFFER"
        rc=1
      fi
    done
  done
  python3 - "$WORK/raw" <<'PY' || rc=1
import json, sys, os
raw = sys.argv[1]
def losses(d):
    out = {}
    p = os.path.join(d, "metrics.jsonl")
    if os.path.exists(p):
        for line in open(p):
            j = json.loads(line)
            if j.get("kind") == "train" and "loss" in j:
                out[j["step"]] = j["loss"]
    return out
def acc(d):
    p = os.path.join(d, "results.json")
    try:
        return json.load(open(p))["eval"]["accuracy"]
    except Exception:
        return None
bad = 0
print("| model | run | loss at the logged steps | accuracy (1000 test reviews) |")
print("|---|---|---|---|")
for arch in ("bert", "mamba"):
    cpu = losses(os.path.join(raw, f"cli-{arch}-cpu"))
    for run in ("cpu", "f32", "bf16", "fp16"):
        d = os.path.join(raw, f"cli-{arch}-{run}")
        l = losses(d)
        print(f"| {arch} | {run} | " + " ".join(f"{s}:{v:.4f}" for s, v in sorted(l.items())) + f" | {acc(d)} |")
    # fp16: every logged loss finite, within 0.1 of the f32 CPU run's (40 steps
    # from the same seed), and the skipped steps the loss scaler reports
    half = losses(os.path.join(raw, f"cli-{arch}-fp16"))
    skipped = 0
    p = os.path.join(raw, f"cli-{arch}-fp16", "metrics.jsonl")
    if os.path.exists(p):
        skipped = sum(int(json.loads(x).get("skipped_steps", 0)) for x in open(p) if '"kind":"train"' in x)
    worst = max((abs(half[s] - cpu[s]) for s in cpu if s in half), default=float("inf"))
    ok = worst <= 0.1 and len(half) == len(cpu) > 0
    bad += not ok
    print(f"cli_train: {arch} fp16 (dynamic loss scaling, {skipped} steps skipped) vs the CPU: largest loss "
          f"difference {worst:.2e} (bound 0.1): " + ("ok" if ok else "FAILED"))
    gpu = losses(os.path.join(raw, f"cli-{arch}-f32"))
    worst = max((abs(gpu[s] - cpu[s]) for s in cpu if s in gpu), default=float("inf"))
    ok = worst <= 2e-2 and len(gpu) == len(cpu) > 0
    bad += not ok
    print(f"cli_train: {arch} f32 on the GPU vs the CPU: largest loss difference {worst:.2e} (bound 2e-2): "
          + ("ok" if ok else "FAILED"))
sys.exit(1 if bad else 0)
PY
  return $rc
}

# \`mambert eval\` and \`predict\` on the GPU (train.device: cuda, --device cuda): the demo BERT and Mamba
# (random weights from the config's seed: the same on both) evaluated on the
# GPU and on the CPU must agree (mean loss within 1e-3 relative, accuracy
# within 5 of 1000 reviews); the GPU's peak is its allocator's. Then a short
# sequence-length sweep on the GPU (the study's measurement).
cli_eval_step() {
  local rc=0 dev
  local common=(experiments/demo-bert.yaml experiments/demo-mamba.yaml --set data.cache_dir="$WORK/cli-cache"
    --set eval.warmup=1 --set eval.repeats=3)
  for dev in cuda cpu; do
    ours "$BIN/mambert" eval "${common[@]}" --set train.device=$dev --out "$WORK/raw/cli-eval-$dev" || rc=1
  done
  ours "$BIN/mambert" eval experiments/demo-bert.yaml experiments/demo-mamba.yaml --set train.device=cuda \
    --set data.cache_dir="$WORK/cli-cache" --set eval.samples=256 --sweep max_length=128,512,2048 --out "$WORK/raw/cli-sweep-cuda" || rc=1
  python3 - "$WORK/raw" <<'PY' || rc=1
import json, os, sys
raw = sys.argv[1]
def load(dev):
    try:
        return {r["model"]: r for r in json.load(open(os.path.join(raw, f"cli-eval-{dev}", "eval.json")))}
    except Exception as e:
        print(f"cli_eval: no eval.json from the {dev} run ({e})")
        return {}
gpu, cpu = load("cuda"), load("cpu")
bad = 0 if gpu and cpu else 1
print("| model | device | accuracy | loss | samples/s | peak MB (of) |")
print("|---|---|---:|---:|---:|---|")
for name in sorted(cpu):
    for dev, res in (("gpu", gpu), ("cpu", cpu)):
        r = res.get(name)
        if r:
            print(f"| {name} | {dev} | {r['accuracy']:.4f} | {r['loss']:.5f} | {r['samples_per_s']:.0f} | "
                  f"{r['peak_mb']:.1f} ({r.get('peak_of', '?')}) |")
    g, c = gpu.get(name), cpu.get(name)
    ok = bool(g and c) and abs(g["loss"] - c["loss"]) <= 1e-3 * abs(c["loss"]) and \
        abs(g["accuracy"] - c["accuracy"]) <= 0.005 and g.get("peak_of") == "gpu allocator"
    bad += not ok
    print(f"cli_eval: {name} on the GPU vs the CPU: " + ("ok" if ok else "FAILED"))
sys.exit(1 if bad else 0)
PY
  # eval.attention: fp8 on the GPU (bf16 compute, the e4m3 attention kernel)
  # against the CPU's simulation of the same quantisation (f32)
  local prec
  for dev in cuda cpu; do
    prec=f32
    [ $dev = cuda ] && prec=bf16
    ours "$BIN/mambert" eval experiments/demo-bert.yaml --set data.cache_dir="$WORK/cli-cache" --set train.device=$dev \
      --set train.precision=$prec --set eval.attention=fp8 --set eval.warmup=0 --set eval.repeats=1 \
      --out "$WORK/raw/cli-eval8-$dev" || rc=1
  done
  python3 - "$WORK/raw" <<'PY' || rc=1
import json, os, sys
res = {}
for dev in ("cuda", "cpu"):
    try:
        res[dev] = json.load(open(os.path.join(sys.argv[1], f"cli-eval8-{dev}", "eval.json")))[0]
    except Exception as e:
        print(f"cli_eval fp8: no eval.json from the {dev} run ({e})")
g, c = res.get("cuda"), res.get("cpu")
ok = bool(g and c) and g.get("attention") == c.get("attention") == "fp8" and \
    abs(g["loss"] - c["loss"]) <= 2e-2 * abs(c["loss"]) and abs(g["accuracy"] - c["accuracy"]) <= 0.01
if g and c:
    print(f"cli_eval fp8 attention: GPU (bf16, e4m3 kernel) loss {g['loss']:.5f} accuracy {g['accuracy']:.4f}, "
          f"CPU (simulated) loss {c['loss']:.5f} accuracy {c['accuracy']:.4f}")
print("cli_eval: fp8 attention on the GPU vs the CPU's simulation: " + ("ok" if ok else "FAILED"))
sys.exit(0 if ok else 1)
PY
  # predict --device cuda against the CPU on 300 test reviews: the same labels
  # (but where the CPU's top probability is within 1e-3 of a tie), and
  # probabilities within 1e-3 in f32
  zcat data/samples/imdb/test.tsv.gz | tail -n +2 | cut -f4 | head -300 > "$WORK/raw/predict-in.txt"
  local m
  for m in bert_tiny mamba_tiny; do
    for dev in cuda cpu; do
      ours "$BIN/mambert" predict --json --model tests/fixtures/models/$m --device $dev \
        --file "$WORK/raw/predict-in.txt" > "$WORK/raw/predict-$m-$dev.jsonl" || rc=1
    done
  done
  python3 - "$WORK/raw" <<'PY' || rc=1
import json, os, sys
raw = sys.argv[1]
bad = 0
for m in ("bert_tiny", "mamba_tiny"):
    try:
        g = [json.loads(x) for x in open(os.path.join(raw, f"predict-{m}-cuda.jsonl"))]
        c = [json.loads(x) for x in open(os.path.join(raw, f"predict-{m}-cpu.jsonl"))]
    except Exception as e:
        print(f"cli_eval: predict {m}: no output ({e}): FAILED"); bad += 1; continue
    worst = max((abs(x["probabilities"][k] - y["probabilities"][k]) for x, y in zip(g, c) for k in y["probabilities"]),
                default=9)
    flips = sum(x["label_id"] != y["label_id"] and y["score"] - 0.5 > 1e-3 for x, y in zip(g, c))
    ok = len(g) == len(c) == 300 and worst <= 1e-3 and flips == 0
    bad += not ok
    print(f"cli_eval: predict {m} on the GPU vs the CPU, {len(g)} reviews: largest probability difference "
          f"{worst:.2e}, {flips} labels differ: " + ("ok" if ok else "FAILED"))
sys.exit(1 if bad else 0)
PY
  return $rc
}

run_step() { # NAME GROUP LIMIT
  local name=$1 group=$2 limit=$3 cmd rc=0 s
  cmd=$(step_cmd "$name" "$limit") || {
    say "unknown step $name"
    return
  }
  s=$(now)
  say "$name: up to $limit s"
  (cd "$ROOT" && PYTHONUNBUFFERED=1 timeout -k 5 "$limit" bash -c "$cmd") >"$WORK/logs/$name.log" 2>&1 || rc=$?
  record "$name" "$group" "$rc" $(($(now) - s)) "$limit"
  say "$name exit $rc ($(($(now) - s)) s)"
}

run() {
  local start out
  start=$(now)
  out="${OUT:-$BUILD/gpu-out}"
  mkdir -p "$out"
  WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
  mkdir -p "$WORK/raw" "$WORK/logs"
  TSV="$WORK/raw/steps.tsv"
  LOG="$WORK/gpu_check.log"
  : >"$TSV"
  : >"$LOG"
  unpack "$BIN"
  CUDALIB=$(find_cuda_libs) || die "libcublasLt.so.13 not found on this machine"
  export WORK TSV LOG CUDALIB BIN ROOT
  export -f ours now record torch_sdpa_step torch_scan_step cli_train_step cli_eval_step # steps run in child shells
  {
    echo "== gpu_check run: bundle of commit $(tr '\n' ' ' <"$BIN/COMMIT"), cuBLASLt from $CUDALIB, budget $BUDGET s"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1 || true
    python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" 2>&1 || true
  } | tee -a "$LOG"
  # what to run: everything, or the named steps / groups / tests
  local sel=" $* " tests_sel=() t
  for t in $(test_names); do [[ "$sel" == *" $t "* ]] && tests_sel+=("$t"); done
  local line name group limit
  for line in "${STEPS[@]}"; do
    read -r name group limit <<<"$line"
    if [ "$sel" != "  " ] && [[ "$sel" != *" $name "* ]] && [[ "$sel" != *" $group "* ]] && [[ "$sel" != *" all "* ]]; then
      [ "$name" = tests ] && [ ${#tests_sel[@]} -gt 0 ] || continue
    fi
    local left=$((BUDGET - ($(now) - start)))
    local tl=$((limit < left ? limit : left))
    if [ "$tl" -lt 10 ]; then
      if [ "$name" = tests ]; then
        for t in $(test_names); do record "$t" test 200 0 0; done
      else
        record "$name" "$group" 200 0 0
      fi
      say "$name: skipped (budget)"
      continue
    fi
    if [ "$name" = tests ]; then
      say "tests: ${#TESTS[@]} CUDA tests, $TEST_JOBS at a time, up to $tl s"
      run_tests "$tl" "${tests_sel[@]}" 2>&1 | tee -a "$LOG"
    else
      run_step "$name" "$group" "$tl"
    fi
  done
  # the full log: the orchestration, then every step's own log
  {
    cat "$LOG"
    for f in "$WORK"/logs/*.log; do
      [ -f "$f" ] || continue
      echo
      echo "======== $(basename "$f" .log)"
      cat "$f"
    done
  } >"$out/gpu_check.log"
  cp "$WORK"/logs/*.log "$WORK/raw/" 2>/dev/null || true
  tar -czf "$out/gpu_raw.tar.gz" -C "$WORK" raw
  say "steps done in $(($(now) - start)) s; files in $out: gpu_check.md gpu_check.json gpu_check.log gpu_raw.tar.gz"
  python3 "$ROOT/tools/gpu_report.py" --raw "$WORK/raw" --out "$out"
}

sanitize() {
  local out="${OUT:-$BUILD/gpu-out}" cs start budget="${GPU_CHECK_SANITIZE_BUDGET:-240}"
  mkdir -p "$out"
  unpack "$BIN"
  CUDALIB=$(find_cuda_libs) || die "libcublasLt.so.13 not found on this machine"
  cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null) || die "no compute-sanitizer"
  start=$(now)
  local list=("$@") t rc md="$out/sanitize.md" log="$out/sanitize.log"
  [ ${#list[@]} -gt 0 ] || list=(cuda_gemm cuda_ops cuda_scan_ops cuda_conv1d cuda_attention_ops cuda_train cuda_models
    cuda_selective_scan cuda_attention)
  export MAMBERT_ATTN_TEST_QUICK=1 # cuda_attention without its L = 1000 cases
  : >"$log"
  {
    echo "| test | memcheck | seconds |"
    echo "| --- | --- | ---: |"
  } >"$md"
  for t in "${list[@]}"; do
    local left=$((budget - ($(now) - start))) s
    if [ "$left" -lt 15 ]; then
      echo "| $t | skipped (budget) | 0 |" >>"$md"
      continue
    fi
    rc=0
    s=$(now)
    echo "======== $t" >>"$log"
    (cd "$ROOT" && OMP_NUM_THREADS=16 LD_LIBRARY_PATH="$CUDALIB" timeout -k 5 "$left" "$cs" --tool memcheck \
      --error-exitcode 99 --print-limit 20 "$BIN/$t") >>"$log" 2>&1 || rc=$?
    local verdict
    case $rc in
    0) verdict=clean ;;
    99) verdict="ERRORS" ;;
    77) verdict="skipped (no device)" ;;
    124 | 137) verdict="timed out" ;;
    *) verdict="failed (exit $rc)" ;;
    esac
    grep -q "Device not supported" "$log" && verdict="$verdict; sanitizer: device not supported (gVisor machine?)"
    echo "| $t | $verdict | $(($(now) - s)) |" >>"$md"
    echo "gpu_check: memcheck $t: $verdict ($(($(now) - s)) s)"
  done
  echo
  cat "$md"
}

# ncu on one benchmark: LAUNCHES launches of the kernels matching REGEX (after
# SKIP; the report's launch statistics name each one's grid), with the
# sections that explain a latency- or bandwidth-bound kernel. The first
# scan launches are the warm-up's forward and backward at L = 4096; the
# attention ones, --quick's first shapes.
ncu_one() { # NAME REGEX SKIP LAUNCHES -- COMMAND...
  local name=$1 regex=$2 skip=$3 count=$4 out="${OUT:-$BUILD/gpu-out}"
  shift 5
  local ncu
  ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  [ -n "$ncu" ] || die "no ncu on this machine (profiling needs Nsight Compute: a Firecracker GPU machine has it)"
  echo "gpu_check: profile $name: $*"
  local rep=/tmp/ncu_$name rc=0
  (cd "$ROOT" && LD_LIBRARY_PATH="$CUDALIB" timeout -k 5 150 "$ncu" --clock-control none --target-processes all \
    --kernel-name-base "${NCU_NAME_BASE:-function}" --kernel-name "regex:$regex" --launch-skip "$skip" \
    --launch-count "$count" \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
    --section SchedulerStats --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables \
    --section ComputeWorkloadAnalysis --section InstructionStats --section SourceCounters \
    --export "$rep" --force-overwrite "$@") >"$out/profile_$name.txt" 2>&1 || rc=$?
  # the report once more: the sections' details, then per SASS instruction
  # (the kernels carry -lineinfo) the counters that say which load, store or
  # wait costs (excess sectors, bank-conflict wavefronts, stall samples),
  # summed up by tools/ncu_source_top.py; the whole table gzipped beside it
  if [ -f "$rep.ncu-rep" ]; then
    "$ncu" --import "$rep.ncu-rep" --page details --print-details all >>"$out/profile_$name.txt" 2>&1
    if "$ncu" --import "$rep.ncu-rep" --page source --print-source sass --csv >"/tmp/profile_${name}_sass.csv" \
      2>"/tmp/profile_${name}_sass.err"; then
      python3 "$ROOT/tools/ncu_source_top.py" "/tmp/profile_${name}_sass.csv" >>"$out/profile_$name.txt" 2>&1
      gzip -9c "/tmp/profile_${name}_sass.csv" >"$out/profile_${name}_sass.csv.gz"
    else
      { echo "== ncu --page source failed:"; head -20 "/tmp/profile_${name}_sass.err"; } >>"$out/profile_$name.txt"
    fi
  fi
  echo "gpu_check: profile $name exit $rc ($(wc -l <"$out/profile_$name.txt") lines)"
}

profile() {
  local out="${OUT:-$BUILD/gpu-out}" what=("$@")
  mkdir -p "$out"
  unpack "$BIN"
  CUDALIB=$(find_cuda_libs) || die "libcublasLt.so.13 not found on this machine"
  [ ${#what[@]} -gt 0 ] || what=(scan attention hopper hopper_pipe hopper_ws hopper_bwd hopper_bwd_ws gemm)
  local w
  for w in "${what[@]}"; do
    case $w in
    scan) ncu_one scan 'scan_(fwd|bwd)_kernel' 0 2 -- "$BIN/bench_cuda_selective_scan" --min-len 4096 --max-len 4096 \
      --budget 60 --json /tmp/profile_scan.json ;;
    attention) ncu_one attention 'attn_flash_(fwd|bwd)_kernel' 0 8 -- "$BIN/bench_cuda_attention" --quick --reps 1 \
      --json /tmp/profile_attention.json ;;
    hopper) ncu_one hopper 'attn_hopper_fwd_kernel' 0 2 -- "$BIN/bench_cuda_attention" --quick --reps 1 \
      --json /tmp/profile_hopper.json ;;
    hopper_pipe) ncu_one hopper_pipe 'attn_hopper_fwd_pipe_kernel' 0 1 -- "$BIN/bench_cuda_attention" --quick \
      --reps 1 --json /tmp/profile_hopper_pipe.json ;;
    hopper_ws) ncu_one hopper_ws 'attn_hopper_fwd_ws_kernel' 0 1 -- "$BIN/bench_cuda_attention" --quick \
      --reps 1 --json /tmp/profile_hopper_ws.json ;;
    hopper_bwd) ncu_one hopper_bwd 'attn_hopper_(bwd|dq)_kernel' 0 2 -- "$BIN/bench_cuda_attention" --quick --reps 1 \
      --json /tmp/profile_hopper_bwd.json ;;
    hopper_bwd_ws) ncu_one hopper_bwd_ws 'attn_hopper_(bwd|dq)_ws_kernel' 0 2 -- "$BIN/bench_cuda_attention" --quick \
      --reps 1 --json /tmp/profile_hopper_bwd_ws.json ;;
    # tiling 3's fast mode: the dK/dV kernel with DQ = BWD_DQ_BULK and 64-query tiles (the template's
    # last two arguments), picked out by its mangled name
    hopper_bwd_bulk) NCU_NAME_BASE=mangled ncu_one hopper_bwd_bulk 'attn_hopper_bwd_ws_kernel.*Li2ELi64EE' 0 1 -- \
      "$BIN/bench_cuda_attention" --quick --reps 1 --pass bwd-ws --json /tmp/profile_hopper_bwd_bulk.json ;;
    # the deterministic defaults side by side at D = 64, bf16: tiling 3 (ordered bulk dQ, 64-query
    # tiles) and tiling 4 (the same with 128-query tiles), one launch each (a regex matching both
    # would take the first one's warm-ups: every timing launches its kernel 7 times and more)
    hopper_bwd_b34)
      for q in 64 128; do
        NCU_NAME_BASE=mangled ncu_one "hopper_bwd_b34_q$q" \
          "attn_hopper_bwd_ws_kernelI13__nv_bfloat16Li64ELi3ELi${q}EE" 0 1 -- \
          "$BIN/bench_cuda_attention" --quick --reps 1 --pass bwd-ws --json /tmp/profile_hopper_bwd_b34.json
      done ;;
    # forward tiling 6 (ping-pong) and tiling 9 (6 with 3/16 of the exponentials on the FMA pipe) at
    # D = 64, bf16, one launch each: the pipes' shares (MUFU vs FMA) and the issue stalls say whether
    # the polynomial exponentials moved the bottleneck
    hopper_fwd_69)
      for e in 0 3; do
        NCU_NAME_BASE=mangled ncu_one "hopper_fwd_69_e$e" \
          "attn_hopper_fwd_ws_kernelI13__nv_bfloat16Li64ELi2ELb1ELb0ELb0ELi${e}EE" 0 1 -- \
          "$BIN/bench_cuda_attention" --quick --reps 1 --pass tma --json /tmp/profile_hopper_fwd_69.json
      done ;;
    gemm) ncu_one gemm 'nvjet|gemm|xmma' 5 1 -- "$BIN/bench_cuda_gemm" --json /tmp/profile_gemm.json ;;
    *) die "profile: unknown '$w' (scan, attention, hopper, hopper_pipe, hopper_ws, hopper_bwd, hopper_bwd_ws," \
      "hopper_bwd_bulk, hopper_bwd_b34, hopper_fwd_69, gemm)" ;;
    esac
  done
  echo "gpu_check: profiles in $out: $(cd "$out" && ls profile_*.txt | tr '\n' ' ')"
}

list_steps() {
  local line name group limit
  echo "steps of 'run' (budget $BUDGET s; a step gets min(limit, what is left)):"
  for line in "${STEPS[@]}"; do
    read -r name group limit <<<"$line"
    printf '  %-28s %-6s %4d s\n' "$name" "$group" "$limit"
  done
  echo "tests ($TEST_JOBS at a time): $(test_names | tr '\n' ' ')"
}

case "$MODE" in
bundle) bundle ;;
verify) verify ;;
run) run "$@" ;;
sanitize) sanitize "$@" ;;
profile) profile "$@" ;;
list) list_steps ;;
*)
  awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"
  exit 2
  ;;
esac
