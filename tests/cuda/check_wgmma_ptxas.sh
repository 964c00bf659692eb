#!/bin/sh
# check_wgmma_ptxas.sh NVCC ROOT (ctest: cuda_wgmma_ptxas): the Hopper
# attention kernels (and their probe) compile for sm_90a with no ptxas warning C7520 -- which
# means ptxas serialised every wgmma of a kernel (a wgmma issued on a path it
# cannot prove uniform; kernels/cuda/ATTENTION.md) and so silently lost the
# asynchrony the kernels are built on -- and with no register spills; and
# the warp-specialised (*_ws_kernel) ones with every register 384 (512)
# threads can have, 168 (128): setmaxnreg's split needs them all at launch,
# or the consumers wait for ever (AttnRegSplit, attention_common.cuh). Needs
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
  # entry name, then its "Used N registers": the forward's three consumer
  # warpgroups (CWG 3, D 64: "fwd_ws_kernel...Li64ELi3E" in the name) run
  # 512 threads, the others 384 (the backward's "Li3E" is its dQ mode)
  short=$(echo "$out" | awk '
    /Compiling entry function/ { name = $0; sub(/.*function ./, "", name); sub(/. for .*/, "", name) }
    /Used [0-9]+ registers/ && name ~ /_ws_kernel/ {
      n = $0; sub(/.*Used /, "", n); sub(/ registers.*/, "", n)
      want = name ~ /fwd_ws_kernel.*Li64ELi3E/ ? 128 : 168
      if (n + 0 != want) print name ": " n " registers, setmaxnreg needs " want
      name = "" }')
  if [ -n "$short" ]; then
    echo "$f: warp-specialised kernels launched with too few registers:"
    echo "$short"
    fail=1
  fi
  ws=$(echo "$out" | grep -c "Compiling entry function .*_ws_kernel" || true)
  echo "$f: $(echo "$out" | grep -c 'Used [0-9]* registers') kernels for sm_90a ($ws warp-specialised at 168 / 128" \
    "registers), no C7520, no spills"
done
exit $fail
