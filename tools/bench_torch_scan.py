#!/usr/bin/env python3
"""bench_torch_scan.py: the PyTorch peers of bench/cuda_selective_scan.c.

Times the selective scan's forward and backward (softplus(delta + bias), the
D skip and SiLU(z) gate included; A = -exp(A_log) inside, so dA_log is a
gradient) at the same shapes as the mambert benchmark (batch 8, d_inner
1536, d_state 16, bf16 activations, f32 parameters, L = 256, 512, ...):

  hf_slow   transformers' slow path: the Python loop over time of
            transformers.models.mamba.modeling_mamba.mamba_selective_scan
            (torch path; MambaMixer.slow_forward's loop in older versions, of
            which `transcribed_slow_scan` below is a line-by-line copy, used
            only when the installed transformers has no such function);
  compiled  torch.compile of a reference scan whose time recurrence is
            torch's associative_scan (a parallel scan; the path transformers
            takes under torch.compile with use_associative_scan=True).

Each method runs until its time share of --budget or the GPU memory runs
out; nothing is extrapolated: a length that did not run is simply absent.
Timing: CUDA events around each call, median of repeats after a warm-up;
the compiled method's first call (compilation) is reported separately.

Run on the GPU machine (after bench_cuda_selective_scan):
  python3 tools/bench_torch_scan.py --json OUT/scan_torch.json [--budget 100]
and print the speed-ups of mambert over both (--write: one combined JSON):
  python3 tools/bench_torch_scan.py --merge scan_mambert.json scan_torch.json [--write scan.json]
Compare mambert's GPU scan with transformers' slow path on the same inputs,
on the GPU (the dump is written by `MAMBERT_SCAN_DUMP=PATH cuda_selective_scan`):
  python3 tools/bench_torch_scan.py --check-dump PATH
A quick CPU check of the script's logic (tiny shapes):
  python3 tools/bench_torch_scan.py --device cpu --batch 1 --dim 8 --max-len 64 --json /tmp/t.json
"""
import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def transcribed_slow_scan(u, delta, A, B, C, D, z, delta_bias):
    """MambaMixer.slow_forward's scan (transformers <= 4.x), copied: u, delta,
    z [b, d, l]; A [d, n]; B, C [b, n, l]."""
    dt = F.softplus(delta + delta_bias[None, :, None])
    B = B.transpose(1, 2)
    C = C.transpose(1, 2)
    discrete_A = torch.exp(A[None, :, None, :] * dt[:, :, :, None])
    deltaB_u = dt[:, :, :, None] * B[:, None, :, :].float() * u[:, :, :, None].float()
    ssm_state = torch.zeros(u.shape[0], u.shape[1], A.shape[-1], dtype=u.dtype, device=u.device)
    outs = []
    for i in range(u.shape[2]):
        ssm_state = discrete_A[:, :, i, :] * ssm_state + deltaB_u[:, :, i, :]
        outs.append(torch.matmul(ssm_state.to(u.dtype), C[:, i, :].unsqueeze(-1))[:, :, 0])
    y = torch.stack(outs, dim=-1)
    y = y + u * D[None, :, None]
    return y * F.silu(z)


def hf_slow_fn():
    try:
        from transformers.models.mamba.modeling_mamba import mamba_selective_scan

        def fn(u, delta, A, B, C, D, z, delta_bias):
            return mamba_selective_scan(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=True)

        return fn, "transformers.models.mamba.modeling_mamba.mamba_selective_scan (torch loop)"
    except ImportError:
        return transcribed_slow_scan, "transcription of MambaMixer.slow_forward's loop"


def assoc_scan(u, delta, A, B, C, D, z, delta_bias):
    """The same math with the recurrence as an associative scan over time."""
    from torch._higher_order_ops.associative_scan import associative_scan

    dt = F.softplus(delta.float() + delta_bias[None, :, None])
    dA = torch.exp(A[None, :, None, :] * dt[:, :, :, None])  # [b, d, l, n]
    dBu = dt[:, :, :, None] * B.transpose(1, 2)[:, None, :, :].float() * u[:, :, :, None].float()

    def combine(left, right):
        a_l, b_l = left
        a_r, b_r = right
        return a_l * a_r, a_r * b_l + b_r

    mode = "pointwise" if u.is_cuda else "generic"
    _, h = associative_scan(combine, (dA, dBu), dim=2, combine_mode=mode)
    y = torch.einsum("bdln,bnl->bdl", h, C.float())
    y = y + u.float() * D[None, :, None]
    return (y * F.silu(z.float())).to(u.dtype)


def make_inputs(b, d, n, L, dtype, device, gen):
    def rnd(*shape, mean=0.0, std=1.0, dt=dtype):
        return (mean + std * torch.randn(*shape, generator=gen, device=device)).to(dt).requires_grad_()

    u = rnd(b, d, L)
    delta = rnd(b, d, L, mean=-1.0, std=0.5)
    z = rnd(b, d, L)
    Bm = rnd(b, n, L)
    Cm = rnd(b, n, L)
    A_log = torch.log(torch.arange(1, n + 1, device=device, dtype=torch.float32)).repeat(d, 1).requires_grad_()
    D = rnd(d, dt=torch.float32)
    bias = rnd(d, std=0.5, dt=torch.float32)
    dy = torch.randn(b, d, L, generator=gen, device=device).to(dtype)
    return (u, delta, A_log, Bm, Cm, D, z, bias), dy


def call(fn, inp):
    u, delta, A_log, Bm, Cm, D, z, bias = inp
    return fn(u, delta, -torch.exp(A_log), Bm, Cm, D, z, bias)


class Timer:
    def __init__(self, device):
        self.cuda = device.startswith("cuda")

    def __call__(self, f):
        if self.cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            out = f()
            b.record()
            b.synchronize()
            return a.elapsed_time(b), out
        t0 = time.perf_counter()
        out = f()
        return (time.perf_counter() - t0) * 1e3, out


def clear_grads(inp):
    for t in inp:
        t.grad = None


def bench_method(name, fn, args, budget_s, note):
    """fwd and bwd medians per L, until the budget share or memory runs out."""
    device = args.device
    timer = Timer(device)
    gen = torch.Generator(device=device)
    gen.manual_seed(1234)
    rows, stopped = [], "max-len reached"
    t_start = time.perf_counter()
    L = args.min_len
    next_cost = 0.0  # seconds the next length should take: twice the last one's calls
    first_call_ms = None
    while L <= args.max_len:
        elapsed = time.perf_counter() - t_start
        if rows and elapsed + next_cost > budget_s:
            stopped = "time budget"
            break
        try:
            inp, dy = make_inputs(args.batch, args.dim, args.dstate, L, args.dtype, device, gen)
            # two warm-ups: the first may compile (forward and backward graphs,
            # then again for a symbolic length); the second is timed to size
            # the repeats
            t0 = time.perf_counter()
            for w in range(2):
                if w == 1:
                    t1 = time.perf_counter()
                ms, y = timer(lambda: call(fn, inp))
                if first_call_ms is None:
                    first_call_ms = ms
                y.backward(dy)
                clear_grads(inp)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
            once = time.perf_counter() - t1
            warm = time.perf_counter() - t0
            # at least 3, so that the median drops a one-off recompilation
            reps = max(3, min(10, int(0.5 / max(once, 1e-6))))
            if elapsed + (reps + 1) * once > budget_s and rows:
                stopped = "time budget"
                break
            fwd, bwd = [], []
            for _ in range(reps):
                ms, y = timer(lambda: call(fn, inp))
                fwd.append(ms)
                ms, _ = timer(lambda: y.backward(dy))
                bwd.append(ms)
                clear_grads(inp)
                del y
            row = {"L": L, "fwd_ms": statistics.median(fwd), "bwd_ms": statistics.median(bwd), "reps": reps}
            if device.startswith("cuda"):
                row["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
                torch.cuda.reset_peak_memory_stats()
            rows.append(row)
            print(f"  {name:9s} L {L:6d}: fwd {row['fwd_ms']:10.3f} ms  bwd {row['bwd_ms']:10.3f} ms  [{reps} reps]",
                  flush=True)
            steady = (row["fwd_ms"] + row["bwd_ms"]) / 1e3
            next_cost = 2 * steady * (reps + 2)
            if len(rows) == 1:  # the second length may compile again (then with a symbolic length)
                next_cost += max(0.0, warm - 2 * steady)
        except torch.cuda.OutOfMemoryError:
            stopped = "memory"
            print(f"  {name:9s} L {L:6d}: out of GPU memory: stopping", flush=True)
            break
        except Exception as e:  # a method that cannot run (compile error, ...) is reported, not fatal
            stopped = f"error: {type(e).__name__}: {str(e)[:300]}"
            print(f"  {name:9s} L {L:6d}: {stopped}", flush=True)
            break
        finally:
            inp = dy = y = None
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
        L *= 2
    return {"method": name, "source": note, "results": rows, "stopped": stopped,
            "first_call_ms": first_call_ms, "seconds": time.perf_counter() - t_start}


def run(args):
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[args.dtype_name]
    args.dtype = dtype
    dev = {"device": args.device}
    if args.device.startswith("cuda"):
        p = torch.cuda.get_device_properties(0)
        dev.update(name=p.name, sm_count=p.multi_processor_count, total_gib=p.total_memory / 2**30)
    print(f"bench_torch_scan: torch {torch.__version__} on {dev.get('name', args.device)}; batch {args.batch}, "
          f"d_inner {args.dim}, d_state {args.dstate}, {args.dtype_name}", flush=True)
    out = {"bench": "torch_scan", "torch": torch.__version__, "device": dev,
           "config": {"batch": args.batch, "dim": args.dim, "dstate": args.dstate, "dtype": args.dtype_name},
           "methods": []}
    try:
        import transformers

        out["transformers"] = transformers.__version__
    except ImportError:
        out["transformers"] = None
    def save():  # after each method: a step killed at its time limit keeps what it measured
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)

    slow, note = hf_slow_fn()
    out["methods"].append(bench_method("hf_slow", slow, args, args.budget * 0.35, note))
    save()
    # default dynamic=None: the first length compiles static, the second
    # recompiles with a symbolic length that the later ones reuse (where the
    # scan's lowering allows; otherwise one compile per length, so the
    # recompile limit is raised: past it dynamo would silently run eagerly)
    for knob in ("cache_size_limit", "recompile_limit"):
        if hasattr(torch._dynamo.config, knob):
            setattr(torch._dynamo.config, knob, 64)
    compiled = torch.compile(assoc_scan)
    out["methods"].append(bench_method("compiled", compiled, args, args.budget * 0.65,
                                       "torch.compile(associative_scan reference); first_call_ms includes compilation"))
    save()
    print(f"wrote {args.json}")


def merge(mambert_path, torch_path, write=None, summary=None):
    """Prints the speed-up table; with `write`, one JSON holding both runs,
    the table and the text of `summary` (a file), for $OUT's few files."""
    with open(mambert_path) as f:
        mb = json.load(f)
    try:
        with open(torch_path) as f:
            tb = json.load(f)
    except (OSError, ValueError) as e:
        tb = {"methods": [], "error": f"no torch results: {e}"}
    mine = {r["L"]: r["fwd_ms"] + r["bwd_ms"] for r in mb["results"]}
    peers = {m["method"]: {r["L"]: r["fwd_ms"] + r["bwd_ms"] for r in m["results"]} for m in tb["methods"]}
    dev = mb.get("device", {}).get("name", "?")
    print(f"selective scan forward + backward, batch {mb['config']['batch']}, d_inner {mb['config']['dim']}, "
          f"d_state {mb['config']['dstate']}, {mb['config']['dtype']}, on {dev} (torch on "
          f"{tb.get('device', {}).get('name', '?')})")
    names = list(peers)
    head = f"{'L':>7} {'mambert ms':>11}" + "".join(f" {n + ' ms':>13} {'speed-up':>9}" for n in names)
    print(head)
    table = []
    for L in sorted(set(mine).union(*[set(p) for p in peers.values()])):
        line = f"{L:>7} " + (f"{mine[L]:>11.3f}" if L in mine else f"{'-':>11}")
        row = {"L": L, "mambert_ms": mine.get(L)}
        for n in names:
            if L in peers[n]:
                t = peers[n][L]
                sp = f"{t / mine[L]:>8.1f}x" if L in mine else f"{'-':>9}"
                line += f" {t:>13.3f} {sp}"
                row[n + "_ms"] = t
                row[n + "_speedup"] = t / mine[L] if L in mine else None
            else:
                line += f" {'(not run)':>13} {'-':>9}"
        print(line)
        table.append(row)
    for m in tb["methods"]:
        print(f"{m['method']}: {m['source']}; stopped: {m['stopped']}"
              + (f"; first call {m['first_call_ms']:.0f} ms" if m.get("first_call_ms") else ""))
    if write:
        text = None
        if summary:
            with open(summary) as f:
                text = f.read()
        with open(write, "w") as f:
            json.dump({"bench": "gpu_check_scan", "summary": text, "speedups": table, "mambert": mb, "torch": tb},
                      f, indent=2)
        print(f"wrote {write}")


def check_dump(path, device):
    """transformers' slow path (f32, autograd) on the dumped inputs vs the
    dumped mambert outputs; relative errors per tensor, bound 1e-4 (two f32
    computations in different orders)."""
    from safetensors.torch import load_file

    t = {k: v.to(device) for k, v in load_file(path).items()}
    fn, note = hf_slow_fn()
    cl = lambda x: x.transpose(1, 2).contiguous().requires_grad_()  # [b, l, c] -> [b, c, l]
    u, delta, z, B, C = cl(t["u"]), cl(t["delta"]), cl(t["z"]), cl(t["B"]), cl(t["C"])
    A_log, D, bias = (t[k].clone().requires_grad_() for k in ("A_log", "D", "delta_bias"))
    y = fn(u, delta, -torch.exp(A_log), B, C, D, z, bias)
    y.backward(t["dy"].transpose(1, 2))
    back = lambda g: g.transpose(1, 2)
    pairs = [("y", back(y.detach())), ("du", back(u.grad)), ("ddelta", back(delta.grad)), ("dz", back(z.grad)),
             ("dB", back(B.grad)), ("dC", back(C.grad)), ("dA_log", A_log.grad), ("dD", D.grad),
             ("ddelta_bias", bias.grad)]
    print(f"mambert (GPU) vs {note} on {device}:")
    worst = 0.0
    for name, ref in pairs:
        rel = ((t[name] - ref).norm() / ref.norm()).item()
        worst = max(worst, rel if math.isfinite(rel) else math.inf)
        print(f"  {name:12s} rel {rel:.2e}")
    ok = worst <= 1e-4
    print(f"worst {worst:.2e} (bound 1e-4): {'ok' if ok else 'FAIL'}")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default="scan_torch.json")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--dim", type=int, default=1536)
    ap.add_argument("--dstate", type=int, default=16)
    ap.add_argument("--dtype", dest="dtype_name", default="bf16", choices=["bf16", "f16", "f32"])
    ap.add_argument("--min-len", type=int, default=256, help="first L (256; at most --max-len: lowered to it)")
    ap.add_argument("--max-len", type=int, default=65536)
    ap.add_argument("--budget", type=float, default=100.0, help="seconds for both methods together")
    ap.add_argument("--merge", nargs=2, metavar=("MAMBERT_JSON", "TORCH_JSON"))
    ap.add_argument("--write", metavar="JSON", help="with --merge: one combined JSON")
    ap.add_argument("--summary", metavar="TEXT", help="with --write: a text file to include")
    ap.add_argument("--check-dump", metavar="SAFETENSORS")
    args = ap.parse_args()
    if args.min_len < 1 or args.max_len < 1:
        ap.error("--min-len and --max-len must be >= 1")
    args.min_len = min(args.min_len, args.max_len)  # a short --max-len alone must still measure something
    if args.check_dump:
        return check_dump(args.check_dump, args.device if torch.cuda.is_available() else "cpu")
    if args.merge:
        merge(*args.merge, write=args.write, summary=args.summary)
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_torch_scan: no CUDA device: skipping")
        return 77
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
