#!/usr/bin/env bash
# slurm_dryrun_test.sh REPO [BIN]: the sbatch scripts' dry runs under fake SLURM
# allocations print the launch we expect (srun with PMIx, one task per GPU,
# kill-on-bad-exit, threads per rank), pass the NCCL settings through, and
# refuse inconsistent allocations with a message naming the problem; with
# BIN, a job under a fake srun trains and, submitted again, resumes.
set -u
root="$1"
fail=0
# run EXPECTED_RC PATTERN... -- VAR=VALUE... -- SCRIPT ARGS...
run() {
  local want="$1"; shift
  local pats=()
  while [ "$1" != "--" ]; do pats+=("$1"); shift; done; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  local out rc
  out="$(env -i PATH="$PATH" HOME="${HOME:-/tmp}" "${envs[@]}" bash "$@" 2>&1)"; rc=$?
  if [ "$rc" -ne "$want" ]; then echo "FAIL: $* exited $rc, expected $want"; echo "$out"; fail=1; return; fi
  for p in "${pats[@]}"; do
    if ! grep -qF -- "$p" <<<"$out"; then echo "FAIL: $*: output lacks '$p'"; echo "$out"; fail=1; fi
  done
}

# 4 nodes x 8 GPUs, 96 cores per node.
run 0 "launch: srun --mpi=pmix --nodes=4 --ntasks=32 --ntasks-per-node=8 --cpus-per-task=12 --kill-on-bad-exit=1 $root/build/mambert train experiments/imdb-bert.yaml --auto-resume --seed 3" \
      "env: OMP_NUM_THREADS=12" "env: NCCL_IB_HCA=mlx5_0,mlx5_1" "env: NCCL_SOCKET_IFNAME (unset" \
      "env: MAMBERT_COLLECTIVE_TIMEOUT=600s" "4 node(s) x 8 GPU(s) = 32 ranks" -- \
    SLURM_JOB_ID=4242 SLURM_JOB_NUM_NODES=4 SLURM_GPUS_ON_NODE=8 SLURM_NTASKS=32 SLURM_CPUS_ON_NODE=96 \
    SLURM_SUBMIT_DIR="$root" NCCL_IB_HCA=mlx5_0,mlx5_1 -- \
    "$root/slurm/train-multinode.sbatch" --dry-run experiments/imdb-bert.yaml --seed 3

# One node, GPUs given as type:count, one GPU bound per task, DRY_RUN=1 form.
run 0 "launch: srun --mpi=pmix --nodes=1 --ntasks=4 --ntasks-per-node=4 --cpus-per-task=16 --kill-on-bad-exit=1 --gpus-per-task=1 $root/build/mambert train cfg.yaml --auto-resume" -- \
    DRY_RUN=1 SLURM_JOB_ID=7 SLURM_NNODES=1 SLURM_GPUS_PER_NODE=h100:4 SLURM_CPUS_PER_TASK=16 \
    MAMBERT_GPU_BIND=task MAMBERT_ROOT="$root" -- \
    "$root/slurm/train.sbatch" cfg.yaml

# A run continued by its directory; auto-resume off; --dry-run anywhere.
run 0 "$root/build/mambert train --resume runs/x --set eval.samples=10" -- SLURM_JOB_ID=1 SLURM_GPUS_ON_NODE=1 -- \
    "$root/slurm/train.sbatch" --dry-run --resume runs/x --set eval.samples=10
run 0 "$root/build/mambert train cfg.yaml --seed 1" -- SLURM_JOB_ID=1 SLURM_GPUS_ON_NODE=1 MAMBERT_AUTO_RESUME=0 -- \
    "$root/slurm/train.sbatch" cfg.yaml --seed 1 --dry-run
run 0 "$root/build/mambert train cfg.yaml --force" -- SLURM_JOB_ID=1 SLURM_GPUS_ON_NODE=1 -- \
    "$root/slurm/train.sbatch" --dry-run cfg.yaml --force
run 0 "$root/build/mambert train cfg.yaml --auto-resume" "--force becomes --auto-resume" -- SLURM_JOB_ID=1 \
    SLURM_GPUS_ON_NODE=1 SLURM_RESTART_COUNT=1 -- "$root/slurm/train.sbatch" --dry-run cfg.yaml --force
run 2 "--resume needs the run directory" -- SLURM_JOB_ID=1 SLURM_GPUS_ON_NODE=1 -- \
    "$root/slurm/train.sbatch" --dry-run --resume --set a=b
run 2 "MAMBERT_AUTO_RESUME='yes'" -- SLURM_JOB_ID=1 SLURM_GPUS_ON_NODE=1 MAMBERT_AUTO_RESUME=yes -- \
    "$root/slurm/train.sbatch" --dry-run cfg.yaml
# The allocation's task count disagrees with nodes x GPUs.
run 2 "SLURM_NTASKS=10 but 2 node(s) x 8 GPU(s) = 16 ranks" -- \
    SLURM_JOB_ID=1 SLURM_JOB_NUM_NODES=2 SLURM_GPUS_ON_NODE=8 SLURM_NTASKS=10 -- \
    "$root/slurm/train.sbatch" --dry-run cfg.yaml
# No GPU count anywhere.
run 2 "cannot tell how many GPUs each node has" -- SLURM_JOB_ID=1 SLURM_JOB_NUM_NODES=2 -- \
    "$root/slurm/train.sbatch" --dry-run cfg.yaml
# README's dry run, outside SLURM with nothing set: the script's #SBATCH lines.
run 0 "dry run outside SLURM" "1 node(s) x 8 GPU(s) = 8 ranks, 8 CPU(s) per rank" \
      "launch: srun --mpi=pmix --nodes=1 --ntasks=8 --ntasks-per-node=8 --cpus-per-task=8" -- -- \
    "$root/slurm/train.sbatch" --dry-run experiments/imdb-bert.yaml
run 0 "2 node(s) x 8 GPU(s) = 16 ranks" -- -- "$root/slurm/train-multinode.sbatch" --dry-run experiments/imdb-bert.yaml
# The job log goes where sbatch is run: Slurm creates no directory for it.
for f in train.sbatch train-multinode.sbatch; do
  if grep -q '^#SBATCH --output=.*/' "$root/slurm/$f"; then echo "FAIL: $f: --output in a directory Slurm may not find"; fail=1; fi
done
# A real launch outside an allocation.
run 2 "not inside a SLURM allocation" -- -- "$root/slurm/launch.sh" cfg.yaml
run 2 "MAMBERT_GPU_BIND='socket'" -- SLURM_GPUS_ON_NODE=2 MAMBERT_GPU_BIND=socket -- \
    "$root/slurm/launch.sh" --dry-run cfg.yaml

# The sbatch headers ask for one task per GPU.
for f in train.sbatch train-multinode.sbatch; do
  g=$(sed -n 's/^#SBATCH --gpus-per-node=\([0-9]*\)/\1/p' "$root/slurm/$f")
  t=$(sed -n 's/^#SBATCH --ntasks-per-node=\([0-9]*\)/\1/p' "$root/slurm/$f")
  if [ -z "$g" ] || [ "$g" != "$t" ]; then echo "FAIL: $f: --gpus-per-node=$g but --ntasks-per-node=$t"; fail=1; fi
done
# A job run for real under a fake srun (it drops srun's options and runs the
# one task): submitted, it trains; submitted again, --auto-resume finds the
# completed run and leaves it as it is; --resume RUN_DIR says the same.
bin="${2:-}"
if [ -n "$bin" ] && [ -x "$bin" ]; then
  tmp="$(mktemp -d /tmp/mb_slurm_XXXXXX)"
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/fake"
  cat > "$tmp/fake/srun" <<'SH'
#!/usr/bin/env bash
while [ "${1#--}" != "$1" ]; do shift; done # srun's own options
exec "$@"
SH
  chmod +x "$tmp/fake/srun"
  printf 'model:\n  arch: bow\n  d_model: 16\ntokenizer: data/vocab/bert-base-uncased-vocab.txt\ndata:\n  train: %s\n  cache_dir: %s\n  max_length: 32\n  batch_size: 16\n  train_limit: 64\neval:\n  at_end: false\nlog:\n  progress: lines\n' \
    data/samples/imdb/train.tsv.gz "$tmp/cache" > "$tmp/c.yaml"
  job=(SLURM_JOB_ID=5 SLURM_GPUS_ON_NODE=1 SLURM_CPUS_PER_TASK=1 MAMBERT_ROOT="$root" MAMBERT_BIN="$bin"
       PATH="$tmp/fake:$PATH")
  run 0 "train $tmp/c.yaml --auto-resume --run-dir $tmp/run" "--auto-resume: no run there yet: starting" "done: 4 steps" -- \
    "${job[@]}" -- "$root/slurm/train.sbatch" "$tmp/c.yaml" --run-dir "$tmp/run"
  run 0 "--auto-resume: the run directory holds a run: resuming it" "is a completed run" -- "${job[@]}" -- \
    "$root/slurm/train.sbatch" "$tmp/c.yaml" --run-dir "$tmp/run"
  run 0 "is a completed run" -- "${job[@]}" -- "$root/slurm/train.sbatch" --resume "$tmp/run"
fi
[ "$fail" -eq 0 ] && echo "slurm dry runs: all as expected"
exit $fail
