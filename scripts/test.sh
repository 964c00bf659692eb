#!/usr/bin/env bash
# test.sh: set everything up and run the whole test suite, twice: the normal
# build (with the CUDA backend compiled when a toolkit is present; GPU tests
# report themselves skipped without a GPU) and an ASan+UBSan build.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$MAMBERT_ROOT"
mambert_install_packages

jobs="$(nproc 2>/dev/null || echo 2)"
mambert_build build -DCMAKE_BUILD_TYPE=RelWithDebInfo
(cd build && ctest --output-on-failure -j "$jobs" --timeout 1800)

# The sanitizer build is CPU-only: CUDA's runtime and ASan's shadow memory do not mix.
mambert_build build-asan -DCMAKE_BUILD_TYPE=Debug -DMAMBERT_SANITIZE=ON -DMAMBERT_WITH_CUDA=OFF
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:${ASAN_OPTIONS:-}"
export LSAN_OPTIONS="suppressions=$MAMBERT_ROOT/tests/lsan.supp:print_suppressions=0:${LSAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
(cd build-asan && ctest --output-on-failure -j "$jobs" --timeout 3600 -LE no_sanitize)
echo "test.sh: all tests passed (normal and sanitizer builds)"
