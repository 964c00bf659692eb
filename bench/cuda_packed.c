/* cuda_packed.c (bench_cuda_packed): fine-tuning throughput with packed
 * variable-length batches against padded ones, on IMDB's real length
 * distribution (issue 9), with the real models of models/ on the GPU in
 * bf16 (f32 master weights, AdamW, clip 1.0; dropout on, as in training).
 *
 * Data: the shipped IMDB sample (data/samples/imdb/train.tsv.gz: 2,000 real
 * reviews; --data for another TSV), tokenised with the shipped vocabulary
 * (BERT: data/vocab/bert-base-uncased-vocab.txt, [CLS] ... [SEP]; Mamba:
 * the GPT-NeoX BPE of data/vocab/gpt-neox-20b-tokenizer.json, no specials)
 * by data/tokenizer.h, held as an in-memory shard set and batched by the
 * run loop's own loader (data/loader.h), max_length 512, batch 32:
 *   padded-512  every batch [32, 512]: the reference protocol (pads every
 *               review to max_length);
 *   bucketed    the loader's training default: batches sorted by length
 *               within windows, L = the longest rounded up to 64 (a few
 *               shapes, one compiled program and CUDA graph each);
 *   packed      reviews laid end to end in a budget of 32 x 512 = 16384
 *               tokens (at most 128 sequences), cu_seqlens given to the
 *               fused varlen attention (BERT) or to conv1d and the scan,
 *               which restart at every review (Mamba): one static shape.
 * Each mode trains one epoch over the same reviews as warm-up (every shape
 * compiled and captured), then one timed epoch: reviews/s, real tokens/s,
 * the share of computed tokens that are real, peak GPU memory; the
 * speed-ups of packed over padded-512 and over bucketed.
 *
 * Usage: bench_cuda_packed [--models bert,mamba] [--data PATH] [--limit 1024]
 *                          [--max-length 512] [--batch 32] [--budget-s 90] [--json PATH]
 *                          [--plan-only]
 * --plan-only needs no GPU: tokenises, batches one epoch of each mode
 * (steps, shapes, real share of the computed tokens) and compiles each
 * shape's program on the host (planned arena).
 * Run from the repository root (the data and vocabulary paths are relative). */
#include "mambert_build_config.h"

#include <stdio.h>

#if !MAMBERT_HAVE_CUDA
int main(void) {
  printf("bench_cuda_packed: built without CUDA: nothing to measure\n");
  return 77;
}
#else

#include "bench_cuda_models.h"
#include "data/loader.h"
#include "data/records.h"
#include "data/tokenizer.h"

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return x < y ? -1 : x > y;
}

/* The reviews tokenised (no truncation: the loader truncates as HF does)
 * into an in-memory shard set, as `mambert prepare` would write it. */
static mb_shardset *tokenise(const mb_records *r, const char *vocab, int64_t limit, int32_t *vocab_size) {
  mb_tokenizer_options o = mb_tokenizer_default_options();
  mb_tokenizer *t;
  BCHECK(mb_tokenizer_load(vocab, &o, &t));
  const int special = mb_tokenizer_kind_of(t) == MB_TOKENIZER_WORDPIECE;
  int64_t n = limit > 0 && (size_t)limit < r->n ? limit : (int64_t)r->n;
  mb_shardset *s = calloc(1, sizeof *s);
  s->n = n;
  s->offsets = malloc(sizeof(int64_t) * (size_t)(n + 1));
  s->lengths = malloc(sizeof(int32_t) * (size_t)n);
  s->labels = malloc(sizeof(int32_t) * (size_t)n);
  s->example_ids = malloc(sizeof(int64_t) * (size_t)n);
  size_t cap = 1 << 20, used = 0;
  s->tokens = malloc(sizeof(int32_t) * cap);
  mb_ids ids = {0};
  for (int64_t i = 0; i < n; i++) {
    BCHECK(mb_tokenizer_encode(t, mb_record_text(r, (size_t)i), r->rec[i].text_len, special, 0, &ids));
    while (used + ids.n > cap)
      s->tokens = realloc(s->tokens, sizeof(int32_t) * (cap *= 2));
    memcpy(s->tokens + used, ids.ids, sizeof(int32_t) * ids.n);
    s->offsets[i] = (int64_t)used;
    s->lengths[i] = (int32_t)ids.n;
    s->labels[i] = r->rec[i].label;
    s->example_ids[i] = r->rec[i].id;
    used += ids.n;
  }
  s->offsets[n] = (int64_t)used;
  s->n_tokens = (int64_t)used;
  mb_shard_meta *m = &s->meta;
  snprintf(m->dataset, sizeof m->dataset, "imdb");
  snprintf(m->split, sizeof m->split, "train");
  snprintf(m->tokenizer, sizeof m->tokenizer, "%s", mb_tokenizer_name(t));
  snprintf(m->vocab_sha256, sizeof m->vocab_sha256, "%s", mb_tokenizer_vocab_sha256(t));
  m->vocab_size = mb_tokenizer_vocab_size(t);
  m->add_special = special;
  m->pad_id = mb_tokenizer_special_ids(t).pad >= 0 ? mb_tokenizer_special_ids(t).pad : 0;
  m->shard_count = 1;
  m->shard_index = -1;
  m->n_examples = n;
  m->n_tokens = (int64_t)used;
  for (int64_t i = 0; i < n; i++)
    m->label_count[s->labels[i] ? 1 : 0]++;
  *vocab_size = m->vocab_size;
  mb_ids_free(&ids);
  mb_tokenizer_free(t);
  return s;
}

static void shardset_free(mb_shardset *s) {
  free(s->tokens), free(s->offsets), free(s->lengths), free(s->labels), free(s->example_ids);
  free(s);
}

typedef struct {
  const char *name;
  int packed, bucket;
} mode_t_;

static mb_loader_config loader_config(const mode_t_ *md, int batch, int max_len) {
  mb_loader_config lc = mb_loader_train_config(batch, max_len, 5);
  lc.bucket_multiple = md->bucket;
  if (md->packed) {
    lc.mode = MB_BATCH_PACKED;
    lc.token_budget = (int64_t)batch * max_len;
    lc.max_seqs = 128;
  }
  return lc;
}

typedef struct {
  double seconds;
  int64_t steps, reviews, real_tokens, computed_tokens;
  int shapes;
  size_t peak;
} epoch_stats;

/* One epoch of training steps through the program cache; timed with the
 * device synchronised at both ends. */
static int run_epoch(bm_model *bm, mb_loader *ld, int64_t epoch, mb_program_cache *cache, double deadline,
                     epoch_stats *st) {
  memset(st, 0, sizeof *st);
  mb_device_allocator *al = bm_alloc(bm);
  int64_t steps;
  BCHECK(mb_loader_steps_in_epoch(ld, epoch, &steps));
  BCHECK(mb_loader_seek(ld, (mb_loader_position){epoch, 0}));
  BCHECK(bm->be->sync(bm->be));
  al->reset_peak(al);
  double t0 = bench_now();
  for (int64_t s = 0; s < steps; s++) {
    if (bench_now() > deadline)
      return -1;
    const mb_batch *b;
    BCHECK(mb_loader_next(ld, &b));
    int64_t key[MB_MODEL_KEY_LEN];
    mb_exec *ex;
    BCHECK(mb_model_key_for_batch(b, 1, key));
    int rc = mb_program_cache_get(cache, key, MB_MODEL_KEY_LEN, &ex);
    if (rc != MB_OK)
      return rc;
    uint64_t rng[2] = {77, (uint64_t)(epoch * 100000 + s) << 32};
    BCHECK(mb_model_feed(bm->m, ex, b, rng));
    BCHECK(mb_exec_forward(ex));
    BCHECK(mb_exec_backward(ex));
    double norm, scale;
    BCHECK(mb_clip_grad_norm(mb_model_params(bm->m), 1.0, &norm, &scale));
    BCHECK(mb_optimizer_step(bm->opt, 2e-5, scale));
    st->steps++;
    st->reviews += b->n_seqs;
    st->real_tokens += b->n_tokens;
    st->computed_tokens += b->mode == MB_BATCH_PACKED ? b->seq_len : (int64_t)b->rows * b->seq_len;
  }
  BCHECK(bm->be->sync(bm->be));
  st->seconds = bench_now() - t0;
  st->peak = al->stats(al).peak;
  st->shapes = mb_program_cache_size(cache);
  return MB_OK;
}

/* The length distribution before truncation: printed and, with j, a JSON row. */
static void length_report(const mb_shardset *set, int max_len, int bert, bench_json *jp) {
  /* the length distribution (before truncation) */
  int32_t *ls = malloc(sizeof(int32_t) * (size_t)set->n);
  memcpy(ls, set->lengths, sizeof(int32_t) * (size_t)set->n);
  qsort(ls, (size_t)set->n, sizeof *ls, cmp_i32);
  int64_t over = 0, trunc_tokens = 0;
  for (int64_t i = 0; i < set->n; i++) {
    over += ls[i] > max_len;
    trunc_tokens += ls[i] > max_len ? max_len : ls[i];
  }
  printf("  %s tokens per review (%s): median %d, p90 %d, p99 %d, max %d; %.1f%% longer than %d; mean after "
         "truncation %.0f\n",
         bert ? "bert" : "mamba", set->meta.tokenizer, ls[set->n / 2], ls[set->n * 9 / 10], ls[set->n * 99 / 100],
         ls[set->n - 1], 100.0 * over / set->n, max_len, (double)trunc_tokens / set->n);
  if (jp)
    bench_json_row(jp,
                   "{\"impl\": \"mambert\", \"model\": \"%s\", \"lengths\": {\"tokenizer\": \"%s\", \"n\": %lld, "
                   "\"median\": %d, \"p90\": %d, \"p99\": %d, \"max\": %d, \"over_max_length\": %lld, "
                   "\"mean_truncated\": %.1f}}",
                   bert ? "bert" : "mamba", set->meta.tokenizer, (long long)set->n, ls[set->n / 2], ls[set->n * 9 / 10],
                   ls[set->n * 99 / 100], ls[set->n - 1], (long long)over, (double)trunc_tokens / set->n);
  free(ls);
}

/* Host only: one epoch of each mode batched and each shape compiled. */
static void plan_mode(mb_model *m, const mb_shardset *set, const mb_loader_config *lc, const char *name,
                      const char *model) {
  mb_loader *ld;
  BCHECK(mb_loader_create(set, lc, &ld));
  int64_t steps, reviews = 0, real = 0, comp = 0;
  BCHECK(mb_loader_steps_in_epoch(ld, 0, &steps));
  int seen[64], nseen = 0;
  size_t arena_max = 0;
  for (int64_t s = 0; s < steps; s++) {
    const mb_batch *b;
    BCHECK(mb_loader_next(ld, &b));
    reviews += b->n_seqs;
    real += b->n_tokens;
    comp += b->mode == MB_BATCH_PACKED ? b->seq_len : (int64_t)b->rows * b->seq_len;
    int known = 0;
    for (int i = 0; i < nseen; i++)
      known |= seen[i] == b->seq_len;
    if (known || nseen == 64)
      continue;
    seen[nseen++] = b->seq_len;
    mb_graph *g;
    BCHECK(mb_graph_new(mb_model_params(m), &g));
    mb_model_shape sh = {b->mode == MB_BATCH_PACKED, b->rows, b->seq_len, 1};
    BCHECK(mb_model_build_shape(m, g, &sh));
    mb_compile_opts o;
    memset(&o, 0, sizeof o);
    o.train = 1;
    BCHECK(mb_graph_compile(g, &o));
    size_t a = mb_graph_plan_stats(g).arena_bytes;
    arena_max = a > arena_max ? a : arena_max;
    mb_graph_free(g);
  }
  printf("  %-6s %-10s %6lld steps, %5lld reviews, %8lld real of %8lld computed tokens (%3.0f%%), %2d shapes, "
         "largest arena %.2f GiB\n",
         model, name, (long long)steps, (long long)reviews, (long long)real, (long long)comp, 100.0 * real / comp,
         nseen, (double)arena_max / (1 << 30));
  mb_loader_free(ld);
}

int main(int argc, char **argv) {
  const char *models = bench_arg(argc, argv, "--models", "bert,mamba");
  const char *data = bench_arg(argc, argv, "--data", "data/samples/imdb/train.tsv.gz");
  const int64_t limit = atoll(bench_arg(argc, argv, "--limit", "1024"));
  const int max_len = atoi(bench_arg(argc, argv, "--max-length", "512"));
  const int batch = atoi(bench_arg(argc, argv, "--batch", "32"));
  const double budget = atof(bench_arg(argc, argv, "--budget-s", "90"));
  const char *json_path = bench_arg(argc, argv, "--json", "bench_cuda_packed.json");
  const double start = bench_now();
  const int plan = bench_flag(argc, argv, "--plan-only");
  char desc[512] = "no GPU (--plan-only)";
  mb_cuda_device_info info;
  if (!plan)
    bench_require_gpu("bench_cuda_packed", desc, sizeof desc, &info);
  mb_records recs;
  BCHECK(mb_import_imdb_tsv(data, NULL, &recs));
  const mode_t_ modes[3] = {{"padded-512", 0, 0}, {"bucketed", 0, 64}, {"packed", 1, 0}};
  if (plan) {
    mb_kernels_cuda_init(); /* the CUDA kernels' workspace sizes enter the plan */
    for (int k = 0; k < 2; k++) {
      if (!strstr(models, k == 0 ? "bert" : "mamba"))
        continue;
      int32_t vs;
      mb_shardset *set =
          tokenise(&recs, k == 0 ? "data/vocab/bert-base-uncased-vocab.txt" : "data/vocab/gpt-neox-20b-tokenizer.json",
                   limit, &vs);
      length_report(set, max_len, k == 0, NULL);
      mb_model_config c = mb_model_config_default(k == 0 ? MB_ARCH_BERT : MB_ARCH_MAMBA);
      mb_model *m;
      BCHECK(mb_model_new(&c, NULL, NULL, &m));
      mb_model_precision p = {.compute = MB_BF16};
      BCHECK(mb_model_set_precision(m, &p));
      for (int mi = 0; mi < 3; mi++) {
        mb_loader_config lc = loader_config(&modes[mi], batch, max_len);
        plan_mode(m, set, &lc, modes[mi].name, k == 0 ? "bert" : "mamba");
      }
      mb_model_free(m);
      shardset_free(set);
    }
    mb_records_free(&recs);
    return 0;
  }
  mb_backend *be;
  BCHECK(mb_cuda_backend_create(NULL, &be));
  bench_json j;
  int have_json = bench_json_open(&j, json_path, "cuda_packed", desc) == 0;
  printf("\npacked vs padded fine-tuning, bf16, %lld IMDB reviews of %s, max_length %d, batch %d "
         "(packed: %d tokens per batch), on %s\n",
         (long long)(limit > 0 && (size_t)limit < recs.n ? limit : (int64_t)recs.n), data, max_len, batch,
         batch * max_len, desc);
  for (int k = 0; k < 2; k++) {
    const int bert = k == 0;
    if (!strstr(models, bert ? "bert" : "mamba"))
      continue;
    int32_t vs;
    mb_shardset *set = tokenise(
        &recs, bert ? "data/vocab/bert-base-uncased-vocab.txt" : "data/vocab/gpt-neox-20b-tokenizer.json", limit, &vs);
    length_report(set, max_len, bert, have_json ? &j : NULL);
    bm_model bm;
    bm_model_new(&bm, be, bert, 0, MB_BF16);
    mb_adamw_cfg ac = mb_adamw_defaults();
    ac.lr = 2e-5;
    BCHECK(mb_optimizer_adamw(mb_model_params(bm.m), &ac, &bm.opt));
    printf("  %-6s %-10s %9s %12s %9s %7s %6s %6s %9s\n", "model", "mode", "reviews/s", "real tok/s", "real/comp",
           "steps", "shapes", "s", "peak GiB");
    double rate[3] = {0, 0, 0};
    for (int mi = 0; mi < 3; mi++) {
      const mode_t_ *md = &modes[mi];
      mb_loader_config lc = loader_config(md, batch, max_len);
      mb_loader *ld;
      BCHECK(mb_loader_create(set, &lc, &ld));
      mb_compile_opts to;
      memset(&to, 0, sizeof to);
      to.train = 1;
      mb_program_cache *cache;
      BCHECK(mb_program_cache_new(mb_model_params(bm.m), be, &to, mb_model_build, bm.m, &cache));
      epoch_stats warm, st;
      const double deadline = start + budget;
      int rc = run_epoch(&bm, ld, 0, cache, deadline, &warm);
      if (rc == MB_OK)
        rc = run_epoch(&bm, ld, 1, cache, deadline, &st);
      const char *status = rc == MB_OK ? "ok" : rc == -1 ? "skipped" : rc == MB_ENOMEM ? "oom" : "failed";
      char why[256] = "";
      if (rc == -1)
        snprintf(why, sizeof why, "time budget (%.0f s) reached", budget);
      else if (rc != MB_OK)
        snprintf(why, sizeof why, "%s", mb_error_message());
      if (rc == MB_OK) {
        rate[mi] = st.reviews / st.seconds;
        printf("  %-6s %-10s %9.1f %12.0f %8.0f%% %7lld %6d %6.2f %9.2f\n", bert ? "bert" : "mamba", md->name, rate[mi],
               st.real_tokens / st.seconds, 100.0 * st.real_tokens / st.computed_tokens, (long long)st.steps, st.shapes,
               st.seconds, (double)st.peak / (1 << 30));
      } else {
        printf("  %-6s %-10s %s: %s\n", bert ? "bert" : "mamba", md->name, status, why);
        memset(&st, 0, sizeof st);
      }
      if (have_json)
        bench_json_row(&j,
                       "{\"impl\": \"mambert\", \"model\": \"%s\", \"mode\": \"%s\", \"status\": \"%s\", \"why\": "
                       "\"%s\", \"batch\": %d, \"max_length\": %d, \"token_budget\": %lld, \"steps\": %lld, "
                       "\"reviews\": %lld, \"real_tokens\": %lld, \"computed_tokens\": %lld, \"seconds\": %.4f, "
                       "\"reviews_per_s\": %.3f, \"real_tokens_per_s\": %.1f, \"shapes\": %d, \"peak_bytes\": %zu, "
                       "\"warmup_s\": %.3f}",
                       bert ? "bert" : "mamba", md->name, status, bm_json_safe(why), batch, max_len,
                       (long long)(md->packed ? (int64_t)batch * max_len : 0), (long long)st.steps,
                       (long long)st.reviews, (long long)st.real_tokens, (long long)st.computed_tokens, st.seconds,
                       rate[mi], st.seconds > 0 ? st.real_tokens / st.seconds : 0.0, st.shapes, st.peak, warm.seconds);
      mb_program_cache_free(cache);
      mb_loader_free(ld);
      bm_alloc(&bm)->empty_cache(bm_alloc(&bm));
    }
    if (rate[2] > 0 && rate[0] > 0)
      printf("  %s: packed %.2fx the reviews/s of padded-512%s\n", bert ? "bert" : "mamba", rate[2] / rate[0],
             rate[1] > 0 ? "" : "");
    if (rate[2] > 0 && rate[1] > 0)
      printf("  %s: packed %.2fx the reviews/s of bucketed\n", bert ? "bert" : "mamba", rate[2] / rate[1]);
    bm_model_free(&bm);
    shardset_free(set);
  }
  if (have_json)
    bench_json_close(&j);
  mb_records_free(&recs);
  mb_cuda_backend_destroy(be);
  printf("  bench_cuda_packed: %.0f s\n", bench_now() - start);
  return 0;
}
#endif
