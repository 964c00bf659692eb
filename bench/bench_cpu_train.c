/* bench_cpu_train.c: the classifiers of models/ on the CPU, next to the same
 * models in PyTorch (tools/bench_torch_cpu.py, run after it on the same
 * machine and thread count, merged into one table by its --merge).
 *
 * Models (random weights): the demo's BERT (experiments/demo-bert.yaml:
 * hidden 64, 2 layers, 2 heads, MLP 256) and Mamba (demo-mamba.yaml:
 * d_model 64, 2 layers, d_state 8, masked mean pooling), and the study's
 * BERT-base and Mamba-130m at a smaller batch. Per model: a training step
 * (forward, backward, clip_grad_norm 1.0, AdamW; dropout on for BERT, as
 * HF's train mode; the fused attention has no dropout on the probabilities)
 * and an evaluation pass (forward, logits read back), on a padded batch of
 * random ids, every row full length: samples/s (the median of timed runs
 * after warm-up) and the host allocator's peak over the timed runs
 * (weights, gradients, AdamW state, the activation arena).
 *
 * Usage: bench_cpu_train [--models demo|base|all] [--steps N] [--json PATH]
 * Threads: OMP_NUM_THREADS (OpenBLAS follows it); the peer uses the same. */
#include <math.h>
#include <omp.h>

#include "autograd/autograd.h"
#include "autograd/optim.h"
#include "bench_batch.h"
#include "bench_util.h"
#include "kernels/cpu/blas_env.h"
#include "kernels/cpu/cpu.h"
#include "models/model.h"
#include "runtime/alloc.h"

typedef struct {
  const char *name;
  int bert;
  int batch, seq;
} spec;

/* The sizes of experiments/demo-*.yaml, or the defaults (BERT-base, Mamba-130m). */
static mb_model_config config_of(const spec *s) {
  mb_model_config c = mb_model_config_default(s->bert ? MB_ARCH_BERT : MB_ARCH_MAMBA);
  if (strstr(s->name, "demo")) {
    if (s->bert) {
      c.bert.hidden_size = 64;
      c.bert.num_layers = 2;
      c.bert.num_heads = 2;
      c.bert.intermediate_size = 256;
      c.bert.max_position = 128;
    } else {
      c.mamba.d_model = 64;
      c.mamba.n_layer = 2;
      c.mamba.d_state = 8;
      c.mamba.pooling = MB_POOL_MASKED_MEAN;
      mb_mamba_config_derive(&c.mamba, 0);
    }
  }
  return c;
}

typedef struct {
  double ms, ms_min;
  int runs;
  double peak_mb, arena_mb;
  float loss;
} result;

/* train: forward + backward + clip + AdamW; else forward + logits read back.
 * Three warm-up runs, then `steps` timed ones; the median. */
static void time_program(mb_model *m, const mb_batch *b, int train, mb_optimizer *opt, int steps, result *r) {
  memset(r, 0, sizeof *r);
  mb_backend *be = mb_cpu_backend();
  mb_graph *g;
  BCHECK(mb_graph_new(mb_model_params(m), &g));
  mb_model_shape s = {0, b->rows, b->seq_len, train};
  BCHECK(mb_model_build_shape(m, g, &s));
  mb_compile_opts o;
  memset(&o, 0, sizeof o);
  o.train = train;
  BCHECK(mb_graph_compile(g, &o));
  r->arena_mb = (double)mb_graph_plan_stats(g).arena_bytes / (1 << 20);
  mb_exec *ex;
  BCHECK(mb_exec_new(g, be, &ex));
  BCHECK(mb_model_feed(m, ex, b, (uint64_t[2]){1234, 0}));
  const mb_var drop_rng = mb_graph_find_input(g, "dropout_rng");
  float *logits = malloc(sizeof(float) * (size_t)b->rows * MB_MODEL_MAX_LABELS);
  double *times = malloc(sizeof(double) * (size_t)steps);
  for (int run = -3; run < steps; run++) {
    if (run == 0)
      mb_host_mem_reset_peak();
    const double t0 = bench_now();
    BCHECK(bench_model_step(ex, m, opt, drop_rng, run, train, logits));
    if (run >= 0)
      times[run] = bench_now() - t0;
  }
  r->peak_mb = (double)mb_host_mem_stats().peak / (1 << 20);
  BCHECK(mb_exec_get(ex, mb_model_loss(g), &r->loss));
  r->runs = steps;
  r->ms = 1e3 * bench_median(times, steps); /* sorts times */
  r->ms_min = 1e3 * times[0];
  free(times);
  free(logits);
  mb_exec_free(ex);
  mb_graph_free(g);
}

int main(int argc, char **argv) {
  if (bench_flag(argc, argv, "--help") || bench_flag(argc, argv, "-h")) {
    printf("usage: %s [--models demo|base|all] [--steps N] [--json PATH]\n"
           "Training steps and evaluation passes of the demo (or BERT-base / Mamba-130m) models on the CPU;\n"
           "a table on stdout and JSON in PATH (default bench_cpu_train.json). The peer: tools/bench_torch_cpu.py.\n",
           argv[0]);
    return 0;
  }
  mb_blas_env_fix(argc, argv);
  const char *which = bench_arg(argc, argv, "--models", "demo");
  const int steps = atoi(bench_arg(argc, argv, "--steps", "10"));
  const char *json_path = bench_arg(argc, argv, "--json", "bench_cpu_train.json");
  const int demo = strcmp(which, "demo") == 0 || strcmp(which, "all") == 0;
  const int base = strcmp(which, "base") == 0 || strcmp(which, "all") == 0;
  if ((!demo && !base) || steps < 1) {
    fprintf(stderr, "usage: %s [--models demo|base|all] [--steps N] [--json PATH]\n", argv[0]);
    return 2;
  }
  const spec specs[] = {{"bert-demo", 1, 32, 128}, {"mamba-demo", 0, 32, 128}, {"bert-base", 1, 8, 128},
                        {"mamba-130m", 0, 8, 128}};
  FILE *js = fopen(json_path, "w");
  if (!js) {
    fprintf(stderr, "bench_cpu_train: cannot write %s\n", json_path);
    return 1;
  }
  const int threads = omp_get_max_threads();
  const char *wait = getenv("OMP_WAIT_POLICY"); /* mb_blas_env_fix's PASSIVE unless the user chose */
  fprintf(js, "{\"bench\": \"cpu_train\", \"threads\": %d, \"blas_core\": \"%s\", \"blas_threading\": \"%s\", "
              "\"omp_wait_policy\": \"%s\", \"rows\": [",
          threads, mb_blas_core_name(), mb_blas_threading(), wait ? wait : "default");
  printf("mambert on the CPU (%d threads, OpenBLAS %s kernels on %s threads, OMP_WAIT_POLICY %s), f32, random "
         "weights, padded rows of random ids\n",
         threads, mb_blas_core_name(), mb_blas_threading(), wait ? wait : "default");
  printf("  %-11s %5s %5s %6s %10s %10s %9s %9s %8s\n", "model", "batch", "seq", "mode", "samples/s", "ms", "peak MB",
         "arena MB", "loss");
  int nrow = 0;
  for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
    const spec *s = &specs[k];
    if (!(strstr(s->name, "demo") ? demo : base))
      continue;
    mb_model_config c = config_of(s);
    mb_model *m;
    BCHECK(mb_model_new(&c, NULL, mb_cpu_backend(), &m));
    BCHECK(mb_model_init_random(m, 42));
    bench_batch rb;
    bench_batch_random(&rb, s->bert ? c.bert.vocab_size : c.mamba.vocab_size_config, s->bert, s->batch, s->seq, 7);
    mb_adamw_cfg ac = mb_adamw_defaults();
    ac.lr = 2e-5;
    mb_optimizer *opt;
    BCHECK(mb_optimizer_adamw(mb_model_params(m), &ac, &opt));
    for (int train = 1; train >= 0; train--) {
      result r;
      time_program(m, &rb.b, train, opt, steps, &r);
      const double sps = 1e3 * s->batch / r.ms;
      printf("  %-11s %5d %5d %6s %10.1f %10.2f %9.1f %9.1f %8.4f\n", s->name, s->batch, s->seq,
             train ? "train" : "eval", sps, r.ms, r.peak_mb, r.arena_mb, r.loss);
      fprintf(js,
              "%s\n  {\"impl\": \"mambert\", \"model\": \"%s\", \"batch\": %d, \"seq\": %d, \"mode\": \"%s\", "
              "\"samples_per_s\": %.3f, \"ms\": %.4f, \"ms_min\": %.4f, \"runs\": %d, \"peak_mb\": %.2f, "
              "\"arena_mb\": %.2f, \"params\": %lld, \"loss\": %.5f}",
              nrow++ ? "," : "", s->name, s->batch, s->seq, train ? "train" : "eval", sps, r.ms, r.ms_min, r.runs,
              r.peak_mb, r.arena_mb, (long long)mb_params_total(mb_model_params(m)),
              isfinite(r.loss) ? r.loss : -1.0);
      fflush(stdout);
    }
    mb_optimizer_free(opt);
    bench_batch_free(&rb);
    mb_model_free(m);
  }
  fprintf(js, "\n]}\n");
  fclose(js);
  printf("wrote %s\n", json_path);
  return 0;
}
