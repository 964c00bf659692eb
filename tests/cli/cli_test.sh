#!/usr/bin/env bash
# cli_test.sh BIN: the command table's contract: help exits 0, unknown
# commands and flags exit non-zero with a message that names them.
set -u
bin="$1"
fail=0
expect() { # expect CODE PATTERN -- ARGS...
  local code="$1" pat="$2"; shift 3
  local out rc
  out="$("$bin" "$@" 2>&1)"; rc=$?
  if [ "$rc" -ne "$code" ]; then echo "FAIL: mambert $* exited $rc, expected $code"; echo "$out"; fail=1; return; fi
  if ! grep -qE -- "$pat" <<<"$out"; then echo "FAIL: mambert $*: output lacks /$pat/"; echo "$out"; fail=1; fi
}
expect 0 "Commands:" -- --help
expect 2 "Commands:" --
expect 2 "unknown command 'frobnicate'" -- frobnicate
expect 0 "Usage: mambert info" -- info --help
expect 0 "OpenBLAS" -- info
expect 2 "info: unexpected argument 'extra'" -- info extra
expect 2 "config: --schema takes no config file" -- config --schema experiments/demo-bert.yaml
expect 0 "^model.pooling +auto\|cls\|mean\|masked_mean +auto +auto:" -- config --schema
# OpenBLAS's pthreads beside OpenMP's workers: mambert restarts itself with
# sleeping workers unless the user chose (kernels/cpu/blas_env.h)
OMP_WAIT_POLICY=ACTIVE expect 0 "OpenMP waiting   ACTIVE" -- info
# (the pthreads build is the one linked, or installed beside the OpenMP one
# and loaded instead of it through LD_LIBRARY_PATH)
pthread_dir="$(dirname "$(dirname "$(ldd "$bin" 2>/dev/null | awk '/libopenblas/ {print $3}')")")/openblas-pthread"
if ldd "$bin" 2>/dev/null | grep -q 'openblas-pthread' || [ -e "$pthread_dir/libopenblas.so.0" ]; then
  (unset OMP_WAIT_POLICY GOMP_SPINCOUNT
   export LD_LIBRARY_PATH="$pthread_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
   OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 expect 0 "OpenMP waiting   PASSIVE" -- info
   OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 expect 0 "OpenBLAS         2 \\(pthreads\\)" -- info
   exit $fail) || fail=1
fi
# The OpenMP build of OpenBLAS (the one CMake prefers) shares OpenMP's pool:
# nothing to restart for, and info says which build runs the GEMMs
if ldd "$bin" 2>/dev/null | grep -q 'openblas-openmp'; then
  (unset OMP_WAIT_POLICY GOMP_SPINCOUNT; OMP_NUM_THREADS=2 expect 0 "OpenBLAS         2 \\(OpenMP\\)" -- info
   OMP_NUM_THREADS=2 expect 0 "OpenMP waiting   default" -- info
   exit $fail) || fail=1
fi
expect 0 "^mambert [0-9]" -- --version
# train.device and train.precision are obeyed or refused, never ignored (a
# run asked for a GPU went to the CPU in f32): on a machine without a GPU,
# each request fails before any data is read, naming the key
if ! nvidia-smi -L 2>/dev/null | grep -q GPU; then
  demo="$(cd "$(dirname "$0")/../.." && pwd)/experiments/demo-bert.yaml"
  tmp="$(mktemp -d)"
  expect 1 "train\.device.*cuda" -- train "$demo" --set train.device=cuda --set run.dir="$tmp/a"
  expect 1 "train\.precision.*bf16.*GPU" -- train "$demo" --set train.precision=bf16 --set run.dir="$tmp/b"
  [ -e "$tmp/a/data" ] || [ -e "$tmp/b/data" ] && { echo "FAIL: data prepared before the device was refused"; fail=1; }
  rm -rf "$tmp"
fi
# a raw file whose name says no split is the split of the key naming it
root="$(cd "$(dirname "$0")/../.." && pwd)"
tmp="$(mktemp -d)"
cp "$root/data/samples/imdb/train.tsv.gz" "$tmp/reviews.tsv.gz"
(cd "$root" && # the config's tokenizer path is relative to the repository
  expect 0 "prepared 2000 train examples" -- train experiments/demo-mamba.yaml --set train.device=cpu \
    --set data.train="$tmp/reviews.tsv.gz" --set train.max_steps=1 --set eval.every=0 --set eval.samples=16 \
    --set checkpoint.every=0 --set log.progress=off --set run.dir="$tmp/run"
  exit $fail) || fail=1
rm -rf "$tmp"
exit $fail
