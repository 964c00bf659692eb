#!/usr/bin/env python3
"""bench_torch_peers.py: the PyTorch peers of mambert's GPU benchmarks, run on
the GPU machine in the same tools/gpu_check.sh run, with the same shapes and
protocols, so tools/gpu_report.py can print ratios:

  mlp    the study's MLP (../shared/SEED-STUDY.md section 1): Linear 256-512, ReLU,
         512-512, ReLU, 512-10, batch 128, f32; 10 warm-up then 100 timed
         forward passes with torch.cuda.synchronize() before and after, median
         of 5; eager and torch.compile(mode="reduce-overhead");
  gemm   torch.matmul(x, w.t()) in bf16 and torch._scaled_mm in fp8 e4m3
         (per-tensor scales, bf16 out) at BERT-base Linear shapes, CUDA events,
         10 warm-up, median of 3 x 20; plus the 8192^3 bf16 ceiling;
  train  Hugging Face BertForSequenceClassification (bert-base config) and a
         Mamba-130m-config MambaModel with mean pooling and a linear head,
         bf16 autocast over f32 weights, AdamW, clip_grad_norm_(1.0), batch
         32 x 128; samples/s and torch.cuda.max_memory_allocated; eager, and
         torch.compile while the time budget lasts (bench_cuda_train's peer);
  sweep  the study's length sweep, evaluation protocol (bench_cuda_sweep's
         eval peer): batch 32, every row L tokens, forward under bf16
         autocast in inference mode, logits argmax'ed on the host; one
         warm-up pass, then timed passes (at least 3 and 1 s, median);
         HF BERT-base with sdpa attention (max_position_embeddings raised
         to the longest L) and HF Mamba-130m (transformers' own path: the
         slow loop over time unless mamba_ssm's kernels are installed, which
         the GPU machine lacks); an out-of-memory stops that model there.

Run by tools/gpu_check.sh (python3 there has torch 2.11 + transformers):
    python3 tools/bench_torch_peers.py --json OUT/torch_peers.json --budget-s 300 [--sections train,sweep]
Sections that would overrun --budget-s are skipped and say so; the JSON is
rewritten after every result, so a timeout keeps what was measured. Never
needed to build or test mambert.
"""
import argparse
import json
import statistics
import sys
import time
import traceback

import torch

T0 = time.time()
RESULTS = []
OUT = {"path": None, "device": "?"}


def left(budget):
    return budget - (time.time() - T0)


def save():
    if OUT["path"]:
        with open(OUT["path"], "w") as f:
            json.dump({"bench": "torch_peers", "device": OUT["device"], "torch": torch.__version__,
                       "results": RESULTS}, f, indent=1)


def row(**kw):
    """Record one result and rewrite the JSON at once: a timeout keeps what was measured."""
    kw.setdefault("impl", "torch")
    RESULTS.append(kw)
    print(json.dumps(kw), flush=True)
    save()


def bench_mlp(budget):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512), torch.nn.ReLU(),
        torch.nn.Linear(512, 10)).cuda()
    x = torch.randn(128, 256, device="cuda")

    def timed(fn, repeats=5):
        for _ in range(10):
            fn(x)
        out = []
        for _ in range(repeats):
            torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(100):
                fn(x)
            torch.cuda.synchronize()
            out.append(time.perf_counter() - t)
        return statistics.median(out)

    s = timed(model)
    row(bench="mlp", variant="eager", batch=128, passes=100, seconds=s, us_per_pass=1e4 * s)
    if left(budget) < 45:  # compiling a 3-layer MLP and capturing its graph: ~20 s
        row(bench="mlp", variant="compile_reduce_overhead", status="skipped", why="time budget")
        return
    compiled = torch.compile(model, mode="reduce-overhead")
    t = time.time()
    for _ in range(3):
        compiled(x)
    torch.cuda.synchronize()
    s = timed(compiled)
    row(bench="mlp", variant="compile_reduce_overhead", batch=128, passes=100, seconds=s, us_per_pass=1e4 * s,
        compile_s=time.time() - t)


def time_events(fn, warm=10, reps=3, inner=20):
    for _ in range(warm):
        fn()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ts = []
    for _ in range(reps):
        a.record()
        for _ in range(inner):
            fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) / inner)
    return statistics.median(ts)


def bench_gemm(budget):
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) * 0.03
    ms = time_events(lambda: torch.matmul(a, b.t()))
    row(bench="gemm", M=8192, K=8192, N=8192, type="bf16", ms=ms, tflops=2 * 8192**3 / (ms * 1e-3) / 1e12,
        ceiling=True)
    del a, b
    x_full = torch.randn(16384, 3072, device="cuda", dtype=torch.bfloat16)
    w_full = torch.randn(3072, 768, device="cuda", dtype=torch.bfloat16) * 0.03
    fp8 = hasattr(torch, "_scaled_mm") and torch.cuda.get_device_capability() >= (8, 9)
    for M in (4096, 8192, 16384):
        for K, N in ((768, 768), (768, 3072), (3072, 768)):
            x = x_full.view(-1)[: M * K].view(M, K)
            w = w_full.view(-1)[: N * K].view(N, K)
            ms = time_events(lambda: torch.matmul(x, w.t()))
            row(bench="gemm", M=M, K=K, N=N, type="bf16", ms=ms, tflops=2 * M * N * K / (ms * 1e-3) / 1e12)
            if not fp8:
                continue
            sx = (448.0 / x.abs().max().float()).reciprocal()
            sw = (448.0 / w.abs().max().float()).reciprocal()
            xq = (x.float() / sx).to(torch.float8_e4m3fn)
            wq = (w.float() / sw).to(torch.float8_e4m3fn)
            try:
                ms = time_events(lambda: torch._scaled_mm(xq, wq.t(), scale_a=sx, scale_b=sw,
                                                          out_dtype=torch.bfloat16))
                row(bench="gemm", M=M, K=K, N=N, type="fp8", ms=ms, tflops=2 * M * N * K / (ms * 1e-3) / 1e12)
            except Exception as e:  # an API change should not hide the bf16 numbers
                row(bench="gemm", M=M, K=K, N=N, type="fp8", status="failed", why=repr(e)[:200])
                fp8 = False


class MambaClassifier(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        from transformers import MambaModel
        self.backbone = MambaModel(cfg)
        self.head = torch.nn.Linear(cfg.hidden_size, 2)

    def forward(self, input_ids, attention_mask, labels):
        h = self.backbone(input_ids=input_ids).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        logits = self.head((h * m).sum(1) / m.sum(1).clamp(min=1))
        return torch.nn.functional.cross_entropy(logits.float(), labels)


def train_rate(model, loss_fn, B, L, vocab, steps, warm):
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
    ids = torch.randint(0, vocab, (B, L), device="cuda")
    mask = torch.ones(B, L, dtype=torch.long, device="cuda")
    labels = torch.randint(0, 2, (B,), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn(model, ids, mask, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    t = time.time()
    for _ in range(warm):
        step()
    torch.cuda.synchronize()
    warm_s = time.time() - t
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        loss = step()
    torch.cuda.synchronize()
    s = time.perf_counter() - t
    return B * steps / s, 1e3 * s / steps, torch.cuda.max_memory_allocated(), warm_s, float(loss)


def bench_train(budget, B=32, L=128, models=("bert", "mamba"), variants=("eager", "compile")):
    import transformers
    from transformers import BertConfig, BertForSequenceClassification, MambaConfig

    def bert_loss(m, ids, mask, labels):
        return m(input_ids=ids, attention_mask=mask, labels=labels).loss

    def mamba_loss(m, ids, mask, labels):
        return m(ids, mask, labels)

    for model_name in models:
        for variant in variants:
            need = 60 if variant == "eager" else 120  # BERT-base fwd+bwd compiles in 1-2 minutes
            if model_name == "mamba" and variant == "compile":
                need = 400  # the slow path's Python loop compiles for minutes
            if left(budget) < need:
                row(bench="train", model=model_name, variant=variant, batch=B, seq=L, status="skipped",
                    why="time budget")
                continue
            try:
                torch.manual_seed(0)
                if model_name == "bert":
                    model = BertForSequenceClassification(BertConfig(num_labels=2)).cuda()
                    vocab, fn, extra = 30522, bert_loss, {"attn_implementation": model.config._attn_implementation}
                else:
                    cfg = MambaConfig(vocab_size=50280, hidden_size=768, num_hidden_layers=24, state_size=16, expand=2,
                                      conv_kernel=4, time_step_rank=48)
                    model = MambaClassifier(cfg).cuda()
                    vocab, fn, extra = 50280, mamba_loss, {"path": "transformers slow path (no mamba_ssm kernels)"}
                model.train()
                if variant == "compile":
                    model = torch.compile(model)
                steps, warm = (10, 3) if model_name == "bert" else (3, 2)
                sps, ms, peak, warm_s, loss = train_rate(model, fn, B, L, vocab, steps, warm)
                row(bench="train", model=model_name, variant=variant, batch=B, seq=L, steps=steps, status="ok",
                    samples_per_s=sps, ms_per_step=ms, peak_bytes=peak, warmup_s=warm_s, loss=loss,
                    transformers=transformers.__version__, **extra)
                del model
                torch.cuda.empty_cache()
            except Exception as e:
                traceback.print_exc()
                row(bench="train", model=model_name, variant=variant, batch=B, seq=L, status="failed",
                    why=repr(e)[:300])


def bench_sweep(budget, lengths=(256, 512, 1024, 2048, 4096, 8192, 16384), B=32):
    import transformers
    from transformers import BertConfig, BertForSequenceClassification, MambaConfig, MambaModel

    class MambaCls(torch.nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.backbone = MambaModel(cfg)
            self.head = torch.nn.Linear(cfg.hidden_size, 2)

        def forward(self, input_ids, attention_mask):
            h = self.backbone(input_ids=input_ids).last_hidden_state
            return self.head(h.mean(1))

    maxL = max(lengths)
    last = {}
    for L in lengths:
        for name in ("bert", "mamba"):
            st = last.get(name)
            if st == "stop":
                row(bench="sweep", model=name, mode="eval", L=L, batch=B, status="skipped",
                    why="a shorter length ran out of memory")
                continue
            # predicted from the previous length: x4 for BERT (quadratic), x2 for Mamba
            pred = st[1] * (4 if name == "bert" else 2) if st else 20
            if left(budget) < pred + 5:
                row(bench="sweep", model=name, mode="eval", L=L, batch=B, status="skipped",
                    why=f"time budget ({left(budget):.0f} s left, predicted {pred:.0f} s)")
                last[name] = ("skip", 1e9)
                continue
            t0 = time.time()
            model = None
            try:
                torch.manual_seed(0)
                if name == "bert":
                    model = BertForSequenceClassification(BertConfig(num_labels=2, max_position_embeddings=max(512, maxL),
                                                                     attn_implementation="sdpa")).cuda().eval()
                    vocab, impl = 30522, "sdpa"
                else:
                    cfg = MambaConfig(vocab_size=50280, hidden_size=768, num_hidden_layers=24, state_size=16, expand=2,
                                      conv_kernel=4, time_step_rank=48)
                    model = MambaCls(cfg).cuda().eval()
                    vocab, impl = 50280, "transformers path (no mamba_ssm kernels)"
                ids = torch.randint(1000, vocab, (B, L), device="cuda")
                mask = torch.ones(B, L, dtype=torch.long, device="cuda")

                def fwd():
                    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                        out = model(input_ids=ids, attention_mask=mask)
                        logits = out.logits if hasattr(out, "logits") else out
                    return logits.argmax(-1).cpu()

                fwd()
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                ts = []
                while len(ts) < 3 or sum(ts) < 1.0:
                    torch.cuda.synchronize()
                    t = time.perf_counter()
                    fwd()
                    torch.cuda.synchronize()
                    ts.append(time.perf_counter() - t)
                    if len(ts) >= 50 or left(budget) < 5:
                        break
                s = statistics.median(ts)
                row(bench="sweep", model=name, mode="eval", L=L, batch=B, status="ok", ms=1e3 * s,
                    samples_per_s=B / s, tokens_per_s=B * L / s, peak_bytes=torch.cuda.max_memory_allocated(),
                    runs=len(ts), attention=impl, transformers=transformers.__version__)
                last[name] = ("ok", time.time() - t0)
            except torch.cuda.OutOfMemoryError as e:
                row(bench="sweep", model=name, mode="eval", L=L, batch=B, status="oom", why=str(e)[:200])
                last[name] = "stop"
            except Exception as e:
                traceback.print_exc()
                row(bench="sweep", model=name, mode="eval", L=L, batch=B, status="failed", why=repr(e)[:300])
                last[name] = "stop"
            del model
            torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", default="torch_peers.json")
    ap.add_argument("--budget-s", type=float, default=300)
    ap.add_argument("--sections", default="mlp,gemm,train,sweep",
                    help="comma-separated, run in this order: mlp, gemm, train, sweep")
    ap.add_argument("--models", default="bert,mamba", help="train section: which models (bert, mamba)")
    ap.add_argument("--variants", default="eager,compile", help="train section: eager, compile or both")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("bench_torch_peers: no CUDA device", flush=True)
        return 77
    dev = torch.cuda.get_device_name()
    OUT["path"], OUT["device"] = a.json, dev
    save()
    print(f"bench_torch_peers: torch {torch.__version__} on {dev}, budget {a.budget_s:.0f} s", flush=True)
    models, variants = tuple(a.models.split(",")), tuple(a.variants.split(","))
    if not set(models) <= {"bert", "mamba"} or not set(variants) <= {"eager", "compile"}:
        print(f"bench_torch_peers: --models takes bert,mamba and --variants eager,compile", flush=True)
        return 2
    table = {"mlp": bench_mlp, "gemm": bench_gemm, "sweep": bench_sweep,
             "train": lambda b: bench_train(b, models=models, variants=variants)}
    for name in a.sections.split(","):
        fn = table.get(name.strip())
        if fn is None:
            print(f"bench_torch_peers: unknown section {name!r}", flush=True)
            return 2
        try:
            fn(a.budget_s)
        except Exception as e:
            traceback.print_exc()
            row(bench=name, status="failed", why=repr(e)[:300])
    return 0


if __name__ == "__main__":
    sys.exit(main())
