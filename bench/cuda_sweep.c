/* cuda_sweep.c (bench_cuda_sweep): the study's sequence-length sweep on the
 * GPU (SEED-STUDY.md section 4), with the real models of models/:
 * BERT-base against Mamba-130m (random weights: speed and memory do not
 * depend on them), bf16 compute with f32 master weights.
 *
 *   eval   the study's protocol: batch 32 (--eval-batch), every row
 *          max_length tokens, forward and logits read back; warm-up (eager
 *          run, CUDA-graph capture, a replay), then timed passes (at least
 *          3 and 1 s), the median; samples/s, tokens/s and peak allocated
 *          GPU memory over the timed passes (weights included, as
 *          torch.cuda.max_memory_allocated after reset_peak_memory_stats);
 *   train  a training step (forward, backward, clip 1.0, AdamW) at a fixed
 *          token count per step (--train-tokens 16384: batch = tokens / L,
 *          at least 1), so time per token shows the cost of length alone:
 *          flat for Mamba, growing with L for BERT's attention.
 *
 * Lengths: 256, 512, 1024, 2048, 4096, 8192, 16384 (--lengths a,b,...).
 * BERT's 512 position embeddings are extended to the longest length (a
 * BERT-base-sized model; bert-base-uncased itself stops at 512). A point
 * that does not fit the card's memory is reported as "oom" (with the arena
 * it planned) and that model and mode stop there; a point whose predicted
 * time (the last point's, scaled by the length) would overrun the budget
 * (--budget-s, default 120) is reported as "skipped". Lengths run in
 * increasing order, both models at each length, so a short budget still
 * covers both models at the short lengths.
 *
 * --models bert-fp8 adds BERT-base with its attention in e4m3 (q, k, v
 * quantised per tensor: eval.attention fp8), evaluation only, timed beside
 * the bf16 one at each length ("attention": "fp8" in the JSON).
 *
 * Usage: bench_cuda_sweep [--models bert,mamba,bert-fp8] [--lengths ...] [--modes eval,train]
 *                         [--eval-batch 32] [--train-tokens 16384] [--precision bf16]
 *                         [--budget-s 120] [--json PATH] [--plan-only]
 * --plan-only needs no GPU: it records and compiles every point's program
 * and prints the planned activation arena (what the GPU run will ask for),
 * to check the programs and predict out-of-memory points ahead of a run.
 * The PyTorch peers (tools/bench_torch_peers.py --sections sweep) run HF
 * BERT (sdpa) and HF Mamba (its slow path: no mamba_ssm kernels there) on
 * the same shapes. */
#include "mambert_build_config.h"

#include <stdio.h>

#if !MAMBERT_HAVE_CUDA
int main(void) {
  printf("bench_cuda_sweep: built without CUDA: nothing to measure\n");
  return 77;
}
#else

#include "bench_cuda_models.h"

#define MAX_LENGTHS 16

typedef struct {
  int stopped;        /* oom: no longer lengths */
  double last_cost_s; /* wall time of the last point */
  int last_L;
} track;

/* Whether the comma-separated list names item exactly. */
static int has_item(const char *list, const char *item) {
  const size_t n = strlen(item);
  for (const char *s = list; s && *s; s = strchr(s, ',') ? strchr(s, ',') + 1 : NULL)
    if (strncmp(s, item, n) == 0 && (s[n] == ',' || s[n] == '\0'))
      return 1;
  return 0;
}

static int parse_list(const char *s, int *out, int cap) {
  int n = 0;
  while (*s && n < cap) {
    out[n++] = atoi(s);
    const char *c = strchr(s, ',');
    if (!c)
      break;
    s = c + 1;
  }
  return n;
}

/* Record and compile each point's program on the host (no device): the
 * planned arena per point. */
static int plan_only(const int *want /* [3] */, const int *want_mode, const int *lengths, int nl, int maxL, int eval_batch,
                     int train_tokens, mb_dtype prec) {
  mb_kernels_cuda_init(); /* the CUDA kernels' workspace sizes enter the plan */
  printf("planned activation arenas (no GPU used), %s compute\n", mb_dtype_name(prec));
  printf("  %-10s %-5s %6s %5s %10s %10s\n", "model", "mode", "L", "B", "arena GiB", "params M");
  for (int k = 0; k < 3; k++) {
    if (!want[k])
      continue;
    mb_model_config c = mb_model_config_default(k != 1 ? MB_ARCH_BERT : MB_ARCH_MAMBA);
    if (k != 1 && maxL > c.bert.max_position)
      c.bert.max_position = maxL;
    mb_model *m;
    BCHECK(mb_model_new(&c, NULL, NULL, &m));
    mb_model_precision p = {.compute = prec, .fp8_attention = k == 2};
    BCHECK(mb_model_set_precision(m, &p));
    for (int mode = 0; mode < 2 - (k == 2); mode++)
      for (int li = 0; want_mode[mode] && li < nl; li++) {
        const int L = lengths[li], train = mode == 1;
        const int B = train ? (train_tokens / L > 0 ? train_tokens / L : 1) : eval_batch;
        mb_graph *g;
        BCHECK(mb_graph_new(mb_model_params(m), &g));
        mb_model_shape s = {0, B, L, train};
        BCHECK(mb_model_build_shape(m, g, &s));
        mb_compile_opts o;
        memset(&o, 0, sizeof o);
        o.train = train;
        BCHECK(mb_graph_compile(g, &o));
        printf("  %-11s %-5s %6d %5d %10.2f %10.1f\n", k == 1 ? "mamba-130m" : k ? "bert-fp8att" : "bert-base",
               train ? "train" : "eval", L,
               B, (double)mb_graph_plan_stats(g).arena_bytes / (1 << 30),
               (double)mb_params_total(mb_model_params(m)) / 1e6);
        mb_graph_free(g);
      }
    mb_model_free(m);
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *models = bench_arg(argc, argv, "--models", "bert,mamba");
  const char *modes = bench_arg(argc, argv, "--modes", "eval,train");
  int lengths[MAX_LENGTHS];
  int nl = parse_list(bench_arg(argc, argv, "--lengths", "256,512,1024,2048,4096,8192,16384"), lengths, MAX_LENGTHS);
  const int eval_batch = atoi(bench_arg(argc, argv, "--eval-batch", "32"));
  const int train_tokens = atoi(bench_arg(argc, argv, "--train-tokens", "16384"));
  const double budget = atof(bench_arg(argc, argv, "--budget-s", "120"));
  const char *prec_name = bench_arg(argc, argv, "--precision", "bf16");
  const mb_dtype prec = strcmp(prec_name, "f32") == 0 ? MB_F32 : strcmp(prec_name, "f16") == 0 ? MB_F16 : MB_BF16;
  const char *json_path = bench_arg(argc, argv, "--json", "bench_cuda_sweep.json");
  /* bert-fp8: BERT-base with its attention in e4m3 (eval.attention: fp8), evaluation only */
  const int want[3] = {has_item(models, "bert"), has_item(models, "mamba"), has_item(models, "bert-fp8")};
  const int want_mode[2] = {strstr(modes, "eval") != NULL, strstr(modes, "train") != NULL};
  int maxL = 0;
  for (int i = 0; i < nl; i++)
    maxL = lengths[i] > maxL ? lengths[i] : maxL;
  if (nl < 1 || eval_batch < 1 || train_tokens < 1 || maxL < 1) {
    fprintf(stderr, "bench_cuda_sweep: bad arguments\n");
    return 2;
  }
  const double start = bench_now();
  if (bench_flag(argc, argv, "--plan-only"))
    return plan_only(want, want_mode, lengths, nl, maxL, eval_batch, train_tokens, prec);
  char desc[512];
  mb_cuda_device_info info;
  bench_require_gpu("bench_cuda_sweep", desc, sizeof desc, &info);
  mb_backend *be;
  BCHECK(mb_cuda_backend_create(NULL, &be));
  bench_json j;
  int have_json = bench_json_open(&j, json_path, "cuda_sweep", desc) == 0;
  printf("\nsequence-length sweep, %s compute (f32 master weights), on %s; budget %.0f s\n", prec_name, desc, budget);
  printf("  eval: batch %d, forward + logits; train: %d tokens per step (batch = tokens / L), clip + AdamW\n",
         eval_batch, train_tokens);
  printf("  %-10s %-5s %6s %5s %11s %12s %9s %9s  %s\n", "model", "mode", "L", "B", "samples/s", "tokens/s", "ms",
         "peak GiB", "status");

  bm_model mods[3];
  int made[3] = {0, 0, 0};
  track tr[3][2];
  memset(tr, 0, sizeof tr);
  for (int li = 0; li < nl; li++) {
    const int L = lengths[li];
    for (int k = 0; k < 3; k++) {
      if (!want[k])
        continue;
      if (!made[k]) {
        bm_model_new(&mods[k], be, k != 1, k != 1 ? maxL : 0, prec);
        if (k == 2)
          bm_model_set_fp8_attention(&mods[k]);
        made[k] = 1;
      }
      bm_model *bm = &mods[k];
      for (int mode = 0; mode < 2; mode++) {
        if (!want_mode[mode] || (k == 2 && mode == 1)) /* fp8 attention: evaluation programs only */
          continue;
        track *t = &tr[k][mode];
        const int train = mode == 1;
        const int B = train ? (train_tokens / L > 0 ? train_tokens / L : 1) : eval_batch;
        bm_result r;
        memset(&r, 0, sizeof r);
        const double left = budget - (bench_now() - start);
        /* predicted cost: the last point's, times the growth in work (tokens
         * x length for BERT's attention share, bounded above by L^2 growth) */
        double growth = 1;
        if (t->last_L) {
          double lr = (double)L / t->last_L, tok = train ? 1.0 : lr;
          growth = k != 1 ? tok * lr : tok;
        }
        const double predicted = t->last_cost_s * growth;
        if (t->stopped) {
          snprintf(r.status, sizeof r.status, "skipped");
          snprintf(r.why, sizeof r.why, "a shorter length ran out of memory");
        } else if (left < 5 || predicted > left) {
          snprintf(r.status, sizeof r.status, "skipped");
          snprintf(r.why, sizeof r.why, "time budget (%.0f s left, this point predicted %.0f s)", left, predicted);
        } else {
          bm_batch bb;
          bm_batch_random(&bb, bm, B, L, 100 + (uint64_t)L);
          double t0 = bench_now();
          bm_time(bm, &bb.b, train, 3, 50, 1.0, &r);
          t->last_cost_s = bench_now() - t0;
          t->last_L = L;
          bm_batch_free(&bb);
          if (strcmp(r.status, "ok") != 0)
            t->stopped = 1;
        }
        const int ok = strcmp(r.status, "ok") == 0;
        const double sps = ok ? 1e3 * B / r.ms : 0, tps = sps * L;
        if (ok)
          printf("  %-10s %-5s %6d %5d %11.1f %12.0f %9.2f %9.2f  ok\n", bm_name(bm), train ? "train" : "eval", L, B,
                 sps, tps, r.ms, (double)r.peak_bytes / (1 << 30));
        else
          printf("  %-10s %-5s %6d %5d %11s %12s %9s %9s  %s: %s\n", bm_name(bm), train ? "train" : "eval", L, B, "-",
                 "-", "-", "-", r.status, r.why);
        fflush(stdout);
        if (have_json)
          bench_json_row(&j,
                         "{\"impl\": \"mambert\", \"model\": \"%s\", \"mode\": \"%s\", \"L\": %d, \"batch\": %d, "
                         "\"precision\": \"%s\", \"attention\": \"%s\", \"status\": \"%s\", \"why\": \"%s\", "
                         "\"runs\": %d, \"ms\": %.4f, \"ms_min\": %.4f, \"samples_per_s\": %.3f, \"tokens_per_s\": "
                         "%.1f, \"peak_bytes\": %zu, \"arena_bytes\": %zu, \"build_s\": %.3f}",
                         k == 1 ? "mamba" : "bert", train ? "train" : "eval", L, B, prec_name,
                         k == 1 ? "none" : k == 2 ? "fp8" : prec_name, r.status,
                         bm_json_safe(r.why), r.runs, r.ms, r.ms_min, sps, tps, r.peak_bytes, r.arena_bytes, r.build_s);
      }
    }
  }
  for (int k = 0; k < 3; k++)
    if (made[k])
      bm_model_free(&mods[k]);
  printf("  bench_cuda_sweep: %.0f s\n", bench_now() - start);
  if (have_json)
    bench_json_close(&j);
  mb_cuda_backend_destroy(be);
  return 0;
}
#endif
