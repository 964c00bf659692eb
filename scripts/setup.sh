#!/usr/bin/env bash
# setup.sh: install the Debian packages mambert builds against (only those
# missing), then configure and build. Sourced by demo.sh and test.sh; can also
# be run alone:  scripts/setup.sh [build-dir] [extra cmake args...]
set -euo pipefail

MAMBERT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MAMBERT_PACKAGES=(
  build-essential cmake pkg-config
  libopenblas-openmp-dev libhdf5-dev zlib1g-dev libopenmpi-dev openmpi-bin
  libyaml-dev libjansson-dev libssl-dev libutf8proc-dev libpcre2-dev libcmocka-dev
)

mambert_install_packages() {
  local missing=()
  for p in "${MAMBERT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  echo "setup: installing ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then sudo="sudo"; else
      echo "setup: need root (or sudo) to install: ${missing[*]}" >&2
      return 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends "${missing[@]}" ||
    { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends "${missing[@]}"; }
}

# mambert_build DIR [cmake args...]: configure (once) and build into DIR.
mambert_build() {
  local dir="$1"; shift
  local jobs
  jobs="$(nproc 2>/dev/null || echo 2)"
  mkdir -p "$dir"
  cmake -S "$MAMBERT_ROOT" -B "$dir" "$@" >"$dir/configure.log" 2>&1 ||
    { cat "$dir/configure.log" >&2; return 1; }
  grep -E "^-- mambert:" "$dir/configure.log" || true
  cmake --build "$dir" -j "$jobs"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  mambert_install_packages
  dir="${1:-$MAMBERT_ROOT/build}"
  [ $# -gt 0 ] && shift
  mambert_build "$dir" "$@"
fi
