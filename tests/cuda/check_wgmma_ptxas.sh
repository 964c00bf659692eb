#!/bin/sh
# check_wgmma_ptxas.sh NVCC ROOT (ctest: cuda_wgmma_ptxas): the Hopper
# attention kernels (and their probe) compile for sm_90a with no ptxas warning C7520 -- which
# means ptxas serialised every wgmma of a kernel (a wgmma issued on a path it
# cannot prove uniform; kernels/cuda/ATTENTION.md) and so silently lost the
# asynchrony the kernels are built on -- and with no register spills. Needs
# the CUDA toolkit, not a GPU.
set -eu
nvcc=$1
root=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
for f in attention_hopper_fwd attention_hopper_bwd attention_flash_fp8 attention_probe; do
  if ! out=$("$nvcc" -std=c++17 -O3 -arch=sm_90a -cubin -I"$root" -o "$tmp/$f.cubin" "$root/kernels/cuda/$f.cu" \
    -Xptxas -v 2>&1); then
    echo "$f: nvcc failed:"
    echo "$out"
    fail=1
    continue
  fi
  if echo "$out" | grep -q C7520; then
    echo "$f: ptxas serialises wgmma:"
    echo "$out" | grep C7520
    fail=1
  fi
  spills=$(echo "$out" | grep -E '[1-9][0-9]* bytes spill (stores|loads)' || true)
  if [ -n "$spills" ]; then
    echo "$f: register spills: $spills"
    fail=1
  fi
  echo "$f: $(echo "$out" | grep -c 'Used [0-9]* registers') kernels for sm_90a, no C7520, no spills"
done
exit $fail
