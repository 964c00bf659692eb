/* bench_cuda_train.c: training steps of the study's two classifiers, the
 * real models of models/ (BERT-base and Mamba-130m, randomly initialised),
 * on the GPU in bf16 mixed precision (f32 master weights, AdamW, gradient
 * clipping at 1.0; models/model.h "precision"): samples/s and peak GPU
 * memory (the caching allocator's peak over the timed steps: weights,
 * gradients, AdamW state, the activation arena, as
 * torch.cuda.max_memory_allocated counts), next to Hugging Face
 * transformers eager and torch.compile run by tools/bench_torch_peers.py on
 * the same batch and length (padded rows, every row full length).
 *
 * BERT: the training program has HF's dropout (hidden 0.1) except on the
 * attention probabilities (the fused attention has none; HF's sdpa path
 * applies 0.1 there). Mamba: mean pooling over the row, as the peer's
 * masked mean with an all-ones mask.
 *
 * Usage: bench_cuda_train [--model bert|mamba|both] [--batch 32] [--seq 128]
 *                         [--steps 10] [--precision bf16|f16|f32] [--json PATH] */
#include "mambert_build_config.h"

#include <stdio.h>

#if !MAMBERT_HAVE_CUDA
int main(void) {
  printf("bench_cuda_train: built without CUDA: nothing to measure\n");
  return 77;
}
#else

#include "bench_cuda_models.h"

static mb_dtype parse_precision(const char *s) {
  if (strcmp(s, "bf16") == 0)
    return MB_BF16;
  if (strcmp(s, "f16") == 0)
    return MB_F16;
  if (strcmp(s, "f32") == 0)
    return MB_F32;
  fprintf(stderr, "bench_cuda_train: --precision %s: expected bf16, f16 or f32\n", s);
  exit(2);
}

int main(int argc, char **argv) {
  const char *which = bench_arg(argc, argv, "--model", "both");
  const int B = atoi(bench_arg(argc, argv, "--batch", "32")), L = atoi(bench_arg(argc, argv, "--seq", "128"));
  const int steps = atoi(bench_arg(argc, argv, "--steps", "10"));
  const char *prec_name = bench_arg(argc, argv, "--precision", "bf16");
  const mb_dtype prec = parse_precision(prec_name);
  const char *json_path = bench_arg(argc, argv, "--json", "bench_cuda_train.json");
  int do_bert = strcmp(which, "bert") == 0 || strcmp(which, "both") == 0;
  int do_mamba = strcmp(which, "mamba") == 0 || strcmp(which, "both") == 0;
  if ((!do_bert && !do_mamba) || B < 1 || L < 1 || steps < 1) {
    fprintf(stderr,
            "usage: %s [--model bert|mamba|both] [--batch B] [--seq L] [--steps N] [--precision bf16] "
            "[--json PATH]\n",
            argv[0]);
    return 2;
  }
  char desc[512];
  mb_cuda_device_info info;
  bench_require_gpu("bench_cuda_train", desc, sizeof desc, &info);
  mb_backend *be;
  BCHECK(mb_cuda_backend_create(NULL, &be));
  bench_json j;
  int have_json = bench_json_open(&j, json_path, "cuda_train", desc) == 0;
  printf("\nclassifier training step (models/: BERT-base, Mamba-130m), %s compute, f32 master weights, AdamW, "
         "clip 1.0, batch %d x %d tokens, on %s\n",
         prec_name, B, L, desc);
  printf("  %-11s %10s %10s %10s %10s %8s %8s\n", "model", "samples/s", "ms/step", "peak GiB", "arena GiB", "build s",
         "loss");
  int bad = 0;
  for (int k = 0; k < 2; k++) {
    int bert = k == 0;
    if ((bert && !do_bert) || (!bert && !do_mamba))
      continue;
    bm_model bm;
    bm_model_new(&bm, be, bert, 0, prec);
    bm_batch bb;
    bm_batch_random(&bb, &bm, B, L, 7);
    bm_result r;
    bm_time(&bm, &bb.b, 1, steps, steps, 0.0, &r);
    double sps = strcmp(r.status, "ok") == 0 ? 1e3 * B / r.ms : 0;
    if (strcmp(r.status, "ok") == 0)
      printf("  %-11s %10.1f %10.2f %10.2f %10.2f %8.2f %8.4f\n", bm_name(&bm), sps, r.ms,
             (double)r.peak_bytes / (1 << 30), (double)r.arena_bytes / (1 << 30), r.build_s, r.loss);
    else
      printf("  %-11s %s: %s\n", bm_name(&bm), r.status, r.why);
    bad |= strcmp(r.status, "ok") != 0 || !isfinite(r.loss);
    if (have_json)
      bench_json_row(&j,
                     "{\"impl\": \"mambert\", \"model\": \"%s\", \"batch\": %d, \"seq\": %d, \"steps\": %d, "
                     "\"precision\": \"%s\", \"status\": \"%s\", \"why\": \"%s\", \"attention\": \"%s\", "
                     "\"samples_per_s\": %.3f, \"ms_per_step\": %.4f, \"ms_per_step_min\": %.4f, "
                     "\"peak_bytes\": %zu, \"arena_bytes\": %zu, \"params\": %lld, \"build_s\": %.3f, "
                     "\"loss\": %.5f}",
                     bert ? "bert" : "mamba", B, L, r.runs, prec_name, r.status, bm_json_safe(r.why),
                     bert ? "fused (no probability dropout)" : "n/a", sps, r.ms, r.ms_min, r.peak_bytes, r.arena_bytes,
                     (long long)bm.nparams, r.build_s, isfinite(r.loss) ? r.loss : -1.0);
    bm_batch_free(&bb);
    bm_model_free(&bm);
  }
  mb_cuda_graph_stats gs = mb_cuda_backend_graph_stats(be);
  printf("  CUDA graphs: %llu captures, %llu replays, %llu fallbacks to eager\n", (unsigned long long)gs.captures,
         (unsigned long long)gs.replays, (unsigned long long)gs.fallbacks);
  if (have_json)
    bench_json_close(&j);
  mb_cuda_backend_destroy(be);
  return bad;
}
#endif
