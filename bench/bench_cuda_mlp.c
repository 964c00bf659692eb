/* bench_cuda_mlp.c: the study's small MLP on the GPU (SEED-STUDY.md section
 * 1): Linear 256->512, ReLU, 512->512, ReLU, 512->10, batch 128, f32;
 * 10 warm-up forward passes, then 100 timed passes with a device
 * synchronisation before and after (the study's protocol), repeated and the
 * median taken. Three ways to run it:
 *   eager      each pass records the ops and runs each as it is recorded
 *              (mb_graph_set_eager; like PyTorch eager; the input is fed from
 *              host memory each pass, 128 KiB);
 *   tape       the compiled forward tape, one kernel launch per node;
 *   graph      the compiled tape replayed as one CUDA graph (the counterpart
 *              of torch.compile(mode="reduce-overhead")).
 * The PyTorch peers run in tools/bench_torch_peers.py; tools/gpu_report.py
 * puts both in one table with the ratios.
 *
 * Usage: bench_cuda_mlp [--json PATH] [--repeats N]   (default bench_cuda_mlp.json, 5) */
#include "mambert_build_config.h"

#include <stdio.h>

#if !MAMBERT_HAVE_CUDA
int main(void) {
  printf("bench_cuda_mlp: built without CUDA: nothing to measure\n");
  return 77;
}
#else

#include "autograd/autograd.h"
#include "bench_cuda_util.h"
#include "kernels/cuda/cuda.h"
#include "runtime/philox.h"

enum { BATCH = 128, IN = 256, HID = 512, OUT = 10, PASSES = 100, WARMUP = 10 };

static mb_var mlp(mb_graph *g, mb_var x) {
  mb_var h = mb_relu(g, mb_linear(g, x, mb_param(g, "fc1.weight", mb_shape2(HID, IN)),
                                  mb_param(g, "fc1.bias", mb_shape1(HID))));
  h = mb_relu(g, mb_linear(g, h, mb_param(g, "fc2.weight", mb_shape2(HID, HID)),
                           mb_param(g, "fc2.bias", mb_shape1(HID))));
  return mb_linear(g, h, mb_param(g, "fc3.weight", mb_shape2(OUT, HID)), mb_param(g, "fc3.bias", mb_shape1(OUT)));
}

static float *x_host;
static float y_eager[BATCH * OUT];

/* One eager pass: record and run. */
static void eager_pass(mb_params *params, mb_backend *be, int keep) {
  mb_graph *g;
  BCHECK(mb_graph_new(params, &g));
  BCHECK(mb_graph_set_eager(g, be));
  mb_var x = mb_input(g, "x", MB_F32, mb_shape2(BATCH, IN));
  BCHECK(mb_graph_feed(g, x, x_host));
  mb_var y = mlp(g, x);
  BCHECK(mb_graph_status(g));
  if (keep)
    BCHECK(be->copy_out(be, y_eager, mb_graph_eager_data(g, y), sizeof y_eager));
  mb_graph_free(g);
}

typedef enum { V_EAGER, V_TAPE, V_GRAPH } variant;

static double time_variant(variant v, mb_params *params, mb_backend *be, mb_exec *ex, int repeats) {
  mb_cuda_backend_set_graphs(be, v == V_GRAPH);
  double t[16];
  for (int w = 0; w < WARMUP; w++) {
    if (v == V_EAGER)
      eager_pass(params, be, 0);
    else
      BCHECK(mb_exec_forward(ex));
  }
  for (int r = 0; r < repeats; r++) {
    BCHECK(be->sync(be));
    double t0 = bench_now();
    for (int p = 0; p < PASSES; p++) {
      if (v == V_EAGER)
        eager_pass(params, be, 0);
      else
        BCHECK(mb_exec_forward(ex));
    }
    BCHECK(be->sync(be));
    t[r] = bench_now() - t0;
  }
  return bench_median(t, repeats);
}

int main(int argc, char **argv) {
  const char *json_path = bench_arg(argc, argv, "--json", "bench_cuda_mlp.json");
  int repeats = atoi(bench_arg(argc, argv, "--repeats", "5"));
  if (repeats < 1 || repeats > 16)
    repeats = 5;
  char desc[512];
  mb_cuda_device_info info;
  bench_require_gpu("bench_cuda_mlp", desc, sizeof desc, &info);
  mb_backend *be;
  BCHECK(mb_cuda_backend_create(NULL, &be));

  mb_params *params;
  BCHECK(mb_params_new(MB_F32, &params));
  mb_graph *g;
  BCHECK(mb_graph_new(params, &g));
  mb_var x = mb_input(g, "x", MB_F32, mb_shape2(BATCH, IN));
  mb_var y = mlp(g, x);
  BCHECK(mb_mark_output(g, y));
  mb_compile_opts o = {0};
  BCHECK(mb_graph_compile(g, &o));
  mb_exec *ex;
  BCHECK(mb_exec_new(g, be, &ex));
  /* torch.nn.Linear's initialisation: U(-1/sqrt(in), 1/sqrt(in)); x ~ N(0, 1) */
  for (int i = 0; i < mb_params_count(params); i++) {
    const mb_param_info *pi = mb_params_info(params, i);
    int64_t fan_in = pi->shape.ndim == 2 ? pi->shape.dim[1] : (i == 1 ? IN : HID);
    float bound = 1.0f / sqrtf((float)fan_in);
    float *v = malloc((size_t)pi->numel * sizeof *v);
    mb_philox_fill_uniform(1234, (uint64_t)i << 32, v, (size_t)pi->numel, -bound, bound);
    BCHECK(mb_params_set(params, i, v));
    free(v);
  }
  x_host = malloc(BATCH * IN * sizeof *x_host);
  mb_philox_fill_normal(99, 0, x_host, BATCH * IN, 0.0f, 1.0f);
  BCHECK(mb_exec_set_input(ex, x, x_host));

  double s_tape = time_variant(V_TAPE, params, be, ex, repeats);
  float y_tape[BATCH * OUT], y_graph[BATCH * OUT];
  BCHECK(mb_exec_get(ex, y, y_tape));
  double s_graph = time_variant(V_GRAPH, params, be, ex, repeats);
  BCHECK(mb_exec_get(ex, y, y_graph));
  double s_eager = time_variant(V_EAGER, params, be, ex, repeats);
  eager_pass(params, be, 1);
  /* the graph replays the tape's kernels: identical bits; eager buffers
   * may be aligned differently (another GEMM algorithm): a tolerance */
  double num = 0, den = 0;
  for (int i = 0; i < BATCH * OUT; i++) {
    num += ((double)y_eager[i] - y_tape[i]) * ((double)y_eager[i] - y_tape[i]);
    den += (double)y_tape[i] * y_tape[i];
  }
  int same = memcmp(y_tape, y_graph, sizeof y_tape) == 0 && sqrt(num) <= 1e-5 * sqrt(den);
  mb_cuda_graph_stats gs = mb_cuda_backend_graph_stats(be);

  printf("\nSEED-STUDY MLP (256-512-512-10, batch 128, f32), %d forward passes, median of %d, on %s\n", PASSES,
         repeats, desc);
  printf("%-34s %12s %12s %10s\n", "mambert", "s / 100", "us / pass", "vs eager");
  printf("%-34s %12.5f %12.2f %10s\n", "eager (record + run each op)", s_eager, 1e6 * s_eager / PASSES, "1.00x");
  printf("%-34s %12.5f %12.2f %9.2fx\n", "tape (a launch per node)", s_tape, 1e6 * s_tape / PASSES, s_eager / s_tape);
  printf("%-34s %12.5f %12.2f %9.2fx\n", "tape as one CUDA graph", s_graph, 1e6 * s_graph / PASSES,
         s_eager / s_graph);
  printf("graph output == tape output bit for bit, eager within 1e-5: %s; graphs captured %llu, replays %llu\n", same ? "yes" : "NO",
         (unsigned long long)gs.captures, (unsigned long long)gs.replays);

  bench_json j;
  if (bench_json_open(&j, json_path, "cuda_mlp", desc) == 0) {
    const char *names[3] = {"eager", "tape", "graph"};
    double secs[3] = {s_eager, s_tape, s_graph};
    for (int i = 0; i < 3; i++)
      bench_json_row(&j,
                     "{\"impl\": \"mambert\", \"variant\": \"%s\", \"batch\": %d, \"passes\": %d, \"repeats\": %d, "
                     "\"seconds\": %.6f, \"us_per_pass\": %.3f}",
                     names[i], BATCH, PASSES, repeats, secs[i], 1e6 * secs[i] / PASSES);
    bench_json_row(&j, "{\"check\": \"outputs_agree\", \"ok\": %s}", same ? "true" : "false");
    bench_json_close(&j);
  }
  mb_cuda_backend_forget(be, ex);
  mb_exec_free(ex);
  mb_graph_free(g);
  mb_params_free(params);
  free(x_host);
  mb_cuda_backend_destroy(be);
  return same ? 0 : 1;
}
#endif
