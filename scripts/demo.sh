#!/usr/bin/env bash
# demo.sh: set everything up, build, and run the demo on the data in the repo.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$MAMBERT_ROOT"
mambert_install_packages
mambert_build build -DCMAKE_BUILD_TYPE=RelWithDebInfo
build/mambert info
