#!/usr/bin/env python3
"""bench_torch_cpu.py: the PyTorch peer of bench/bench_cpu_train.c on the same
CPU, thread count, models and protocol, and the merged table.

Models (random weights): the demo BERT (hidden 64, 2 layers, 2 heads, MLP
256, 128 positions) and Mamba (d_model 64, 2 layers, d_state 8, masked mean
pooling), batch 32 x 128; BERT-base and Mamba-130m at batch 8 x 128.
BERT: transformers' BertForSequenceClassification (its default attention);
Mamba: transformers' MambaModel (its CPU path, a loop over time: mamba_ssm
has no CPU kernels) with a mean over the mask and a linear head, as
tools/mamba_classifier.py loads mambert's exports. Per model a training
step (forward, backward, clip_grad_norm_(1.0), AdamW; train mode, dropout
as configured) and an evaluation pass (eval mode, inference_mode, logits
argmax'ed), on padded rows of random ids, every row full length; three
warm-up runs, then --steps timed ones, the median. Threads:
torch.set_num_threads(OMP_NUM_THREADS).

    OMP_NUM_THREADS=2 build/bench_cpu_train --models demo --json mambert.json
    OMP_NUM_THREADS=2 python tools/bench_torch_cpu.py --models demo --json torch.json --merge mambert.json

--merge prints both side by side with mambert / PyTorch for samples/s. A
model over --budget-s (default 600) for its first timed run is skipped and
says so. Never needed by the build or the tests.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
from transformers import BertConfig, BertForSequenceClassification, MambaConfig, MambaModel

SPECS = [("bert-demo", True, 32, 128), ("mamba-demo", False, 32, 128), ("bert-base", True, 8, 128),
         ("mamba-130m", False, 8, 128)]


class MambaClassifier(torch.nn.Module):
    """MambaModel, masked mean over positions, linear head (mambert's Mamba classifier)."""

    def __init__(self, cfg, num_labels=2):
        super().__init__()
        self.backbone = MambaModel(cfg)
        self.head = torch.nn.Linear(cfg.hidden_size, num_labels)

    def forward(self, input_ids, attention_mask):
        h = self.backbone(input_ids=input_ids).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return self.head((h * m).sum(1) / m.sum(1).clamp(min=1))


def build(name, bert):
    if bert:
        if "demo" in name:
            cfg = BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256,
                             max_position_embeddings=128, num_labels=2)
        else:
            cfg = BertConfig(num_labels=2)
        return BertForSequenceClassification(cfg), 30522
    if "demo" in name:
        cfg = MambaConfig(vocab_size=50280, hidden_size=64, num_hidden_layers=2, state_size=8, expand=2,
                          conv_kernel=4)
    else:
        cfg = MambaConfig(vocab_size=50280, hidden_size=768, num_hidden_layers=24, state_size=16, expand=2,
                          conv_kernel=4)
    return MambaClassifier(cfg), 50277


def run(name, bert, B, L, steps, budget):
    torch.manual_seed(42)
    model, vocab = build(name, bert)
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(1000, vocab, (B, L), generator=g)
    if bert:
        ids[:, 0] = 101
    mask = torch.ones(B, L, dtype=torch.long)
    y = torch.randint(0, 2, (B,), generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
    rows = []
    for mode in ("train", "eval"):
        model.train(mode == "train")
        times = []
        loss = float("nan")
        for run_i in range(-3, steps):
            t0 = time.perf_counter()
            if mode == "train":
                if bert:
                    out = model(input_ids=ids, attention_mask=mask, labels=y).loss
                else:
                    out = torch.nn.functional.cross_entropy(model(ids, mask), y)
                out.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
                loss = out.item()
            else:
                with torch.inference_mode():
                    logits = model(input_ids=ids, attention_mask=mask).logits if bert else model(ids, mask)
                    logits.argmax(-1).numpy()
            dt = time.perf_counter() - t0
            if run_i >= 0:
                times.append(dt)
            if run_i == -3 and dt > budget:
                rows.append({"impl": "torch", "model": name, "batch": B, "seq": L, "mode": mode,
                             "status": f"over budget ({dt:.0f} s for one run)"})
                break
        if times:
            ms = 1e3 * statistics.median(times)
            rows.append({"impl": "torch", "model": name, "batch": B, "seq": L, "mode": mode, "status": "ok",
                         "samples_per_s": 1e3 * B / ms, "ms": ms, "ms_min": 1e3 * min(times), "runs": len(times),
                         "loss": loss if mode == "train" else None,
                         "params": sum(p.numel() for p in model.parameters())})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="demo", choices=["demo", "base", "all"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--budget-s", type=float, default=600)
    ap.add_argument("--json", default="bench_torch_cpu.json")
    ap.add_argument("--merge", help="bench_cpu_train's JSON: print both side by side")
    a = ap.parse_args()
    threads = int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))
    torch.set_num_threads(threads)
    rows = []
    for name, bert, B, L in SPECS:
        if a.models != "all" and (("demo" in name) != (a.models == "demo")):
            continue
        rows += run(name, bert, B, L, a.steps, a.budget_s)
        for r in rows[-2:]:
            print(f"  torch {r['model']:<11} {r['mode']:<5} " +
                  (f"{r['samples_per_s']:10.1f} samples/s {r['ms']:10.2f} ms" if r["status"] == "ok" else r["status"]),
                  flush=True)
    doc = {"bench": "torch_cpu", "threads": threads, "torch": torch.__version__,
           "mkldnn": torch.backends.mkldnn.is_available(), "rows": rows}
    with open(a.json, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"wrote {a.json}")
    if a.merge:
        with open(a.merge) as f:
            mine = json.load(f)
        theirs = {(r["model"], r["mode"]): r for r in rows}
        print(f"\nCPU, {threads} threads: mambert (OpenBLAS {mine.get('blas_core')}, "
              f"{mine.get('blas_threading', 'pthreads')} threads) vs PyTorch {torch.__version__}, "
              "samples/s (median)")
        print(f"| model | batch x seq | mode | mambert | PyTorch | mambert / PyTorch |")
        print("|---|---|---|---:|---:|---:|")
        for r in mine["rows"]:
            t = theirs.get((r["model"], r["mode"]))
            ts = t["samples_per_s"] if t and t["status"] == "ok" else None
            ratio = f"{r['samples_per_s'] / ts:.2f}" if ts else (t["status"] if t else "not run")
            print(f"| {r['model']} | {r['batch']} x {r['seq']} | {r['mode']} | {r['samples_per_s']:.1f} | "
                  f"{ts:.1f} | {ratio} |" if ts else
                  f"| {r['model']} | {r['batch']} x {r['seq']} | {r['mode']} | {r['samples_per_s']:.1f} | - | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
