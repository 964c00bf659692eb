#!/usr/bin/env python3
"""make_adamw_fixture.py: reference optimizer trajectories from PyTorch for
tests/autograd/test_optim.c.

How it was run (from the repository root):
    python tools/make_adamw_fixture.py tests/fixtures/autograd/optim.json

What it records, all in float32 on the CPU:
  * AdamW (torch.optim.AdamW; lr 1e-2, betas (0.9, 0.999), eps 1e-8,
    weight_decay 0.1) over three parameters, one of them (a bias) in a group
    with weight_decay 0; the learning rate follows a LambdaLR with linear
    warm-up (2 steps) then linear decay to 0 at step 8, as transformers'
    get_linear_schedule_with_warmup; from step 3 on the gradients are clipped
    with torch.nn.utils.clip_grad_norm_(max_norm=0.5) before the step.
  * SGD (torch.optim.SGD; lr 0.1, momentum 0.9, weight_decay 0.01,
    nesterov True) over the same shapes, 4 steps, constant lr.
For every step: the gradients fed in, the lr used, the clip norm (if any)
and every parameter after the step. Floats are written with repr() of the
float32 value widened to double, so they read back exactly.
"""
import json
import sys

import torch

SHAPES = {"w": [4, 3], "b": [5], "k": [2, 2, 3]}
NO_DECAY = {"b"}


def flat(t):
    return [float(x) for x in t.detach().reshape(-1).tolist()]


def make_params(gen):
    return {n: torch.randn(s, generator=gen, dtype=torch.float32).requires_grad_(True) for n, s in SHAPES.items()}


def linear_warmup(warmup, total):
    def f(step):
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))
    return f


def adamw_run(gen):
    params = make_params(gen)
    init = {n: flat(p) for n, p in params.items()}
    cfg = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    groups = [
        {"params": [p for n, p in params.items() if n not in NO_DECAY]},
        {"params": [p for n, p in params.items() if n in NO_DECAY], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, **cfg)
    warmup, total, steps, clip_from, max_norm = 2, 8, 7, 3, 0.5
    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_warmup(warmup, total))
    out_steps = []
    for step in range(steps):
        grads = {n: torch.randn(s, generator=gen, dtype=torch.float32) for n, s in SHAPES.items()}
        for n, p in params.items():
            p.grad = grads[n].clone()
        rec = {"lr": opt.param_groups[0]["lr"], "grads": {n: flat(g) for n, g in grads.items()}}
        if step >= clip_from:
            norm = torch.nn.utils.clip_grad_norm_(list(params.values()), max_norm)
            rec["clip_norm"] = float(norm)
        opt.step()
        sched.step()
        rec["params_after"] = {n: flat(p) for n, p in params.items()}
        out_steps.append(rec)
    return {
        "config": {"lr": cfg["lr"], "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.1,
                   "no_decay": sorted(NO_DECAY), "warmup": warmup, "total": total,
                   "clip_from": clip_from, "max_norm": max_norm},
        "init": init,
        "steps": out_steps,
    }


def sgd_run(gen):
    params = make_params(gen)
    init = {n: flat(p) for n, p in params.items()}
    cfg = dict(lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True)
    opt = torch.optim.SGD(list(params.values()), **cfg)
    out_steps = []
    for _ in range(4):
        grads = {n: torch.randn(s, generator=gen, dtype=torch.float32) for n, s in SHAPES.items()}
        for n, p in params.items():
            p.grad = grads[n].clone()
        opt.step()
        out_steps.append({"grads": {n: flat(g) for n, g in grads.items()},
                          "params_after": {n: flat(p) for n, p in params.items()}})
    return {"config": dict(cfg, dampening=0.0), "init": init, "steps": out_steps}


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/autograd/optim.json"
    gen = torch.Generator().manual_seed(1234)
    fixture = {
        "made_by": "tools/make_adamw_fixture.py",
        "torch_version": torch.__version__,
        "shapes": SHAPES,
        "adamw": adamw_run(gen),
        "sgd": sgd_run(gen),
    }
    with open(path, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
