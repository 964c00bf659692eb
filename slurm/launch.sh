#!/usr/bin/env bash
# launch.sh: resolve and run the srun launch of `mambert train` inside a SLURM
# allocation: one task per GPU, MPI wired up through PMIx, NCCL environment.
# (Until several GPU ranks are wired into train, such ranks compute on the
# CPUs: see the note in train.sbatch.)
# Called by train.sbatch (1 node x N GPUs) and train-multinode.sbatch
# (M nodes x N GPUs); can also be run by hand inside `salloc`.
#
#   slurm/launch.sh [--dry-run] CONFIG [more mambert train arguments...]
#   slurm/launch.sh [--dry-run] --resume RUN_DIR [--set KEY=VALUE...]
#   DRY_RUN=1 slurm/launch.sh CONFIG     same as --dry-run
#
# With a CONFIG, train runs with --auto-resume: when the config's run
# directory already holds a run (a requeued job, or the same job submitted
# again after a time limit) it continues from its newest checkpoint, else it
# starts; a completed run is left as it is. MAMBERT_AUTO_RESUME=0 turns that
# off (train then refuses a run directory that holds a run). --resume
# RUN_DIR continues a run named by its directory (its saved config).
#
# --dry-run prints the resolved command and the environment the ranks get,
# then exits 0 without launching. Outside SLURM it takes the allocation from
# SLURM_* set by hand, else from the calling sbatch script's #SBATCH lines.
#
# Knobs (environment):
#   MAMBERT_ROOT        the repository (default: found from SLURM_SUBMIT_DIR or this script)
#   MAMBERT_BIN         the binary (default: $MAMBERT_ROOT/build/mambert)
#   MAMBERT_GPU_BIND    node (default): every rank sees all GPUs of its node and
#                       takes the one of its local rank; keeps CUDA IPC / NVLink
#                       P2P between ranks working on clusters that isolate GPUs
#                       per task with cgroups.
#                       task: srun --gpus-per-task=1, SLURM sets CUDA_VISIBLE_DEVICES
#                       per rank (each rank sees one GPU, device 0).
#   MAMBERT_SRUN_ARGS   extra srun arguments (e.g. "--cpu-bind=cores")
#   MAMBERT_COLLECTIVE_TIMEOUT  deadline of one collective (default here 600s:
#                       the first steps include NCCL setup and checkpoint writes)
#   MAMBERT_AUTO_RESUME 1 (default): a CONFIG job trains with --auto-resume;
#                       0: plain `train CONFIG` (refuses a run directory that
#                       holds a run). --force or --resume given by you turn it
#                       off, except --force in a requeued job (SLURM_RESTART_COUNT
#                       > 0), which becomes --auto-resume.
set -euo pipefail

die() { echo "slurm/launch.sh: $*" >&2; exit 2; }

dry_run="${DRY_RUN:-0}"
args=() # --dry-run may come anywhere; it is launch.sh's, not train's
for a in "$@"; do
  if [ "$a" = "--dry-run" ]; then dry_run=1; else args+=("$a"); fi
done
set -- "${args[@]+"${args[@]}"}"
usage="usage: slurm/launch.sh [--dry-run] CONFIG [mambert train args...] | [--dry-run] --resume RUN_DIR [args...]"
[ $# -ge 1 ] || die "$usage"
resume_dir=""
if [ "$1" = "--resume" ]; then
  if [ $# -lt 2 ] || [ "${2#-}" != "$2" ]; then die "--resume needs the run directory: $usage"; fi
  resume_dir="$2"; shift 2
  train_args=(--resume "$resume_dir")
else
  [ "${1#-}" = "$1" ] || die "'$1': expected the config first (or --dry-run / --resume RUN_DIR): $usage"
  config="$1"; shift
  train_args=("$config")
  case "${MAMBERT_AUTO_RESUME:-1}" in 1 | 0) ;; *) die "MAMBERT_AUTO_RESUME='${MAMBERT_AUTO_RESUME}': expected 1 or 0" ;; esac
  auto="${MAMBERT_AUTO_RESUME:-1}"
  rest=()
  for a in "$@"; do
    case "$a" in
      --resume) auto=0; rest+=("$a") ;; # the user's own choice
      --force)
        if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then
          # a requeued job: its first start moved the old run aside already;
          # --force again would move this job's partly trained run aside too
          echo "slurm/launch.sh: requeued job (SLURM_RESTART_COUNT=$SLURM_RESTART_COUNT): --force becomes --auto-resume" >&2
          auto=1
        else
          auto=0; rest+=("$a")
        fi ;;
      *) rest+=("$a") ;;
    esac
  done
  set -- "${rest[@]+"${rest[@]}"}"
  [ "$auto" = 1 ] && train_args+=(--auto-resume)
fi

# ---- where things are ---------------------------------------------------------
if [ -z "${MAMBERT_ROOT:-}" ]; then
  if [ -n "${SLURM_SUBMIT_DIR:-}" ] && [ -f "$SLURM_SUBMIT_DIR/slurm/launch.sh" ]; then
    MAMBERT_ROOT="$SLURM_SUBMIT_DIR"
  else
    MAMBERT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  fi
fi
bin="${MAMBERT_BIN:-$MAMBERT_ROOT/build/mambert}"

# ---- the allocation -----------------------------------------------------------
if [ -z "${SLURM_JOB_ID:-}" ] && [ "$dry_run" != 1 ]; then
  die "not inside a SLURM allocation (SLURM_JOB_ID is unset): submit with sbatch slurm/train.sbatch CONFIG"
fi
# A dry run outside SLURM (bash slurm/train.sbatch --dry-run CONFIG): the
# allocation the calling script's #SBATCH lines would request, for what is
# not set by hand
if [ -z "${SLURM_JOB_ID:-}" ] && [ -n "${MAMBERT_SBATCH_FILE:-}" ] && [ -f "$MAMBERT_SBATCH_FILE" ]; then
  sbatch_opt() { sed -n "s/^#SBATCH --$1=\([0-9][0-9]*\)\$/\1/p" "$MAMBERT_SBATCH_FILE" | tail -1; }
  : "${SLURM_JOB_NUM_NODES:=$(sbatch_opt nodes)}"
  : "${SLURM_GPUS_ON_NODE:=$(sbatch_opt gpus-per-node)}"
  : "${SLURM_CPUS_PER_TASK:=$(sbatch_opt cpus-per-task)}"
  tpn="$(sbatch_opt ntasks-per-node)"
  if [ -z "${SLURM_NTASKS:-}" ] && [ -n "$tpn" ] && [ -n "$SLURM_JOB_NUM_NODES" ]; then
    SLURM_NTASKS=$(( tpn * SLURM_JOB_NUM_NODES ))
  fi
  [ -n "$SLURM_JOB_NUM_NODES" ] || unset SLURM_JOB_NUM_NODES
  [ -n "$SLURM_GPUS_ON_NODE" ] || unset SLURM_GPUS_ON_NODE
  [ -n "$SLURM_CPUS_PER_TASK" ] || unset SLURM_CPUS_PER_TASK
  echo "slurm/launch.sh: dry run outside SLURM: the allocation of $MAMBERT_SBATCH_FILE's #SBATCH lines" >&2
fi
nodes="${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}"
# GPUs per node: SLURM_GPUS_ON_NODE (set with --gpus-per-node / --gres), else
# SLURM_GPUS_PER_NODE ("8" or "h100:8"), else one task per GPU as requested
# with --ntasks-per-node.
gpn="${SLURM_GPUS_ON_NODE:-}"
if [ -z "$gpn" ] && [ -n "${SLURM_GPUS_PER_NODE:-}" ]; then gpn="${SLURM_GPUS_PER_NODE##*:}"; fi
if [ -z "$gpn" ] && [ -n "${SLURM_NTASKS_PER_NODE:-}" ]; then gpn="${SLURM_NTASKS_PER_NODE%%(*}"; fi
[ -n "$gpn" ] || die "cannot tell how many GPUs each node has: request them with #SBATCH --gpus-per-node=N"
[[ "$nodes" =~ ^[1-9][0-9]*$ ]] || die "SLURM_JOB_NUM_NODES='$nodes' is not a node count"
[[ "$gpn" =~ ^[1-9][0-9]*$ ]] || die "GPUs per node '$gpn' is not a positive number"
ntasks=$((nodes * gpn))
if [ -n "${SLURM_NTASKS:-}" ] && [ "$SLURM_NTASKS" != "$ntasks" ]; then
  die "the allocation has SLURM_NTASKS=$SLURM_NTASKS but $nodes node(s) x $gpn GPU(s) = $ntasks ranks; use --ntasks-per-node=$gpn"
fi
# CPU threads per rank (OpenMP in the data loader and CPU kernels).
if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then
  cpt="$SLURM_CPUS_PER_TASK"
elif [ -n "${SLURM_CPUS_ON_NODE:-}" ]; then
  cpt=$(( SLURM_CPUS_ON_NODE / gpn )); [ "$cpt" -ge 1 ] || cpt=1
else
  cpt=1
fi

# ---- the command --------------------------------------------------------------
cmd=(srun --mpi=pmix --nodes="$nodes" --ntasks="$ntasks" --ntasks-per-node="$gpn"
     --cpus-per-task="$cpt"
     # one rank exiting non-zero (mb_dist_abort, a crash) ends the whole step
     --kill-on-bad-exit=1)
case "${MAMBERT_GPU_BIND:-node}" in
  node) ;;  # every rank sees the node's GPUs; mambert picks device = local rank
  task) cmd+=(--gpus-per-task=1) ;;
  *) die "MAMBERT_GPU_BIND='${MAMBERT_GPU_BIND}': expected node or task" ;;
esac
if [ -n "${MAMBERT_SRUN_ARGS:-}" ]; then
  read -r -a extra <<<"$MAMBERT_SRUN_ARGS"
  cmd+=("${extra[@]}")
fi
cmd+=("$bin" train "${train_args[@]}" "$@")

# ---- the ranks' environment ---------------------------------------------------
export OMP_NUM_THREADS="$cpt"
export MAMBERT_COLLECTIVE_TIMEOUT="${MAMBERT_COLLECTIVE_TIMEOUT:-600s}"
# NCCL: warnings and errors only (NCCL_DEBUG=INFO prints the topology and the
# transport each ring uses; turn it on when checking that IB / NVLink are used).
export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"
# ---- per cluster: set these in the sbatch script or the environment ----------
# NCCL_IB_HCA: the InfiniBand adapters NCCL may use, e.g. "mlx5_0,mlx5_1,..."
#   (one per GPU on 8-GPU nodes; `ibv_devinfo` lists them). Unset: NCCL picks.
# NCCL_SOCKET_IFNAME: the interface for NCCL's bootstrap and socket fallback,
#   e.g. "ib0" or "eth0" or "^docker,lo" (exclude list). Wrong value = hang at init.
# NCCL_IB_GID_INDEX: RoCE clusters only (often 3).
# NCCL_NET_GDR_LEVEL / NCCL_NET_GDR_READ: GPUDirect RDMA policy; defaults are
#   right on most systems.
# UCX_TLS / OMPI_MCA_pml: Open MPI transports for the host-side collectives
#   (small: metrics, flags); defaults are fine.
nccl_vars=(NCCL_IB_HCA NCCL_SOCKET_IFNAME NCCL_IB_GID_INDEX NCCL_NET_GDR_LEVEL NCCL_NET_GDR_READ NCCL_CROSS_NIC
           NCCL_ALGO NCCL_PROTO UCX_TLS OMPI_MCA_pml OMPI_MCA_btl)

print_env() {
  echo "env: OMP_NUM_THREADS=$OMP_NUM_THREADS"
  echo "env: MAMBERT_COLLECTIVE_TIMEOUT=$MAMBERT_COLLECTIVE_TIMEOUT"
  echo "env: NCCL_DEBUG=$NCCL_DEBUG"
  for v in "${nccl_vars[@]}"; do
    if [ -n "${!v:-}" ]; then echo "env: $v=${!v}"; else echo "env: $v (unset: library default)"; fi
  done
  [ -n "${CUDA_VISIBLE_DEVICES:-}" ] && echo "env: CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"
  return 0
}

echo "mambert: job ${SLURM_JOB_ID:-none}: $nodes node(s) x $gpn GPU(s) = $ntasks ranks, $cpt CPU(s) per rank, GPU binding ${MAMBERT_GPU_BIND:-node}"
print_launch() { printf 'launch:'; printf ' %q' "${cmd[@]}"; printf '\n'; }
if [ "$dry_run" = 1 ]; then
  print_launch
  print_env
  exit 0
fi
[ -x "$bin" ] || die "$bin is not built: run scripts/setup.sh (with CUDA and NCCL found) first"
if [ -n "$resume_dir" ]; then
  [ -f "$resume_dir/config.yaml" ] || die "--resume $resume_dir: no run there (no config.yaml; relative paths are from $(pwd))"
else
  [ -f "$config" ] || die "config $config not found (relative paths are from $(pwd))"
fi
print_launch # the job log says what ran
print_env
exec "${cmd[@]}"
