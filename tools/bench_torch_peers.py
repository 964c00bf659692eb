#!/usr/bin/env python3
"""bench_torch_peers.py: the PyTorch peers of mambert's GPU benchmarks, run on
the GPU machine in the same tools/gpu_check.sh run, with the same shapes and
protocols, so tools/gpu_report.py can print ratios:

  mlp    the study's MLP (SEED-STUDY.md section 1): Linear 256-512, ReLU,
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
         torch.compile while the time budget lasts.

Run by tools/gpu_check.sh (python3 there has torch 2.11 + transformers):
    python3 tools/bench_torch_peers.py --json OUT/torch_peers.json --budget-s 300
Sections that would overrun --budget-s are skipped and say so. Never needed to
build or test mambert.
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
    if left(budget) < 90:
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


def bench_train(budget, B=32, L=128):
    import transformers
    from transformers import BertConfig, BertForSequenceClassification, MambaConfig

    def bert_loss(m, ids, mask, labels):
        return m(input_ids=ids, attention_mask=mask, labels=labels).loss

    def mamba_loss(m, ids, mask, labels):
        return m(ids, mask, labels)

    for model_name in ("bert", "mamba"):
        for variant in ("eager", "compile"):
            need = 60 if variant == "eager" else 200
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", default="torch_peers.json")
    ap.add_argument("--budget-s", type=float, default=300)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("bench_torch_peers: no CUDA device", flush=True)
        return 77
    dev = torch.cuda.get_device_name()
    OUT["path"], OUT["device"] = a.json, dev
    save()
    print(f"bench_torch_peers: torch {torch.__version__} on {dev}, budget {a.budget_s:.0f} s", flush=True)
    for name, fn in (("mlp", bench_mlp), ("gemm", bench_gemm), ("train", bench_train)):
        try:
            fn(a.budget_s)
        except Exception as e:
            traceback.print_exc()
            row(bench=name, status="failed", why=repr(e)[:300])
    return 0


if __name__ == "__main__":
    sys.exit(main())
