#!/usr/bin/env bash
# demo.sh: set everything up, build, then train a small BERT and a small Mamba
# from scratch on the IMDB sample shipped in data/samples (2,000 training
# reviews; about 15 seconds each on a 2-core CPU), evaluate both with the study's
# protocol on the 1,000 sample test reviews, and print the comparison table.
# Runs go to runs/demo-bert and runs/demo-mamba (this script replaces its own
# earlier demo runs there); metrics: runs/*/metrics.jsonl, TensorBoard:
# tensorboard --logdir runs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$MAMBERT_ROOT"
mambert_install_packages
jobs="$(nproc 2>/dev/null || echo 2)"
mkdir -p build
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >build/configure.log 2>&1 || { cat build/configure.log >&2; exit 1; }
cmake --build build -j "$jobs" --target mambert
build/mambert info

t0=$(date +%s)
rm -rf runs/demo-bert runs/demo-mamba runs/demo-eval
echo; echo "== training a small BERT (hidden 64, 2 layers) on data/samples/imdb =="
build/mambert train experiments/demo-bert.yaml --set eval.at_end=false
echo; echo "== training a small Mamba (d_model 64, 2 blocks) on data/samples/imdb =="
build/mambert train experiments/demo-mamba.yaml --set eval.at_end=false
echo; echo "== evaluating both: the 1,000 sample test reviews, batch 32, max_length 128, warm-up + 2 timed passes =="
build/mambert eval experiments/demo-bert.yaml experiments/demo-mamba.yaml --out runs/demo-eval
echo
echo "demo done in $(( $(date +%s) - t0 )) s (after the build). Runs: runs/demo-bert, runs/demo-mamba;"
echo "table and JSON: runs/demo-eval; curves: tensorboard --logdir runs"
