# tiny_train.sh: sourced by the trainer-level distributed tests
# (train_equivalence_test.sh, train_resume_ranks_test.sh,
# train_timeline_test.sh): the environment for mpirun on a CI machine and
# the tiny training config they share, so the tests train the same model.

# One thread per rank, collectives that fail fast, Open MPI as root in a
# container, ranks that yield when oversubscribed.
export OMP_NUM_THREADS=1 MAMBERT_COLLECTIVE_TIMEOUT=60
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_mpi_yield_when_idle=1

# tiny_train_yaml FILE ARCH EPOCHS CHECKPOINT_EVERY CACHE: a tiny ARCH (bert
# or mamba) on the first 64 sample reviews, batch 16, every batch
# max_length long in the epoch's order (data.sort_window 0, bucket_multiple
# 0) and no dropout: what N ranks x B = 1 rank x N*B needs. A checkpoint
# every CHECKPOINT_EVERY steps (0: none), the last 10 kept.
tiny_train_yaml() {
  local file="$1" arch="$2" epochs="$3" every="$4" cache="$5" model tokenizer
  case "$arch" in
    bert) model="  arch: bert
  hidden_size: 32
  num_layers: 2
  num_heads: 2
  intermediate_size: 64
  max_position: 64
  dropout: 0
  attention_dropout: 0"
      tokenizer=data/vocab/bert-base-uncased-vocab.txt ;;
    mamba) model="  arch: mamba
  d_model: 16
  num_layers: 2
  d_state: 4
  pooling: masked_mean"
      tokenizer=data/vocab/gpt-neox-20b-tokenizer.json ;;
    *) echo "tiny_train_yaml: unknown arch $arch" >&2; return 2 ;;
  esac
  cat > "$file" <<YAML
model:
$model
tokenizer: $tokenizer
data:
  train: data/samples/imdb/train.tsv.gz
  cache_dir: $cache
  max_length: 48
  batch_size: 16
  train_limit: 64
  bucket_multiple: 0
  sort_window: 0
optim:
  lr: 3.0e-3
train:
  epochs: $epochs
  threads: 1
  clip_grad_norm: 1.0
eval:
  at_end: false
checkpoint:
  every: $every
  keep: 10
  export: false
log:
  every: 1
  progress: lines
YAML
}
