#!/usr/bin/env python3
"""bench_torch_sdpa.py: PyTorch's scaled_dot_product_attention on the shapes
bench_cuda_attention measures: as a user calls it (backend "default", SDPA's
own choice, which is recorded: "chosen"), and with the flash and the cuDNN backends forced
(torch.nn.attention.sdpa_kernel); and the ratios to mambert's kernels.

Run on the GPU machine, after bench_cuda_attention in the same session
(tools/gpu_check.sh run does both):

    python3 tools/bench_torch_sdpa.py --ours bench_cuda_attention.json --merge
    python3 tools/bench_torch_sdpa.py --json torch.json [--ours bench_cuda_attention.json]

--merge writes the results into the --ours file (key "torch_sdpa"), so the
GPU check returns no extra file; --json writes them to a file of their own.

Same shapes and conventions as bench/cuda_attention.c: N = 16384 tokens in
total (batch = N / L), 16 heads, L = 512 .. 16384, head_dim 64 and 128,
bf16, non-causal; q, k, v are [B, L, H, D] in memory (token-major, like
mambert's) seen as [B, H, L, D] through a transpose, so both read the same
layout. FLOPs: forward 4 B H L^2 D, backward 2.5 x forward. Times are the
median of --reps samples, each 5 back-to-back runs between two CUDA events
(per run), after 3 warm-ups, as bench_cuda_attention times; the backward is
torch.autograd.grad of the same graph (retain_graph=True). The card's bf16
peak is measured in the same run (an 8192^3 torch.matmul). A backend that
refuses a shape is recorded with its reason (SDPA's warning text).
With --ours, prints ours / torch for each backend (> 1: mambert faster),
ours being the tilings mambert's dispatcher takes by default on that card
(tools/gpu_report.py, default_tilings).
Needs torch (2.3+ for sdpa_kernel); no other package.
"""
import argparse
import contextlib
import json
import statistics
import sys
import warnings


RUNS_PER_SAMPLE = 5  # as bench_cuda_attention: back-to-back runs per event pair hide the host's dispatch


def median_ms(fn, reps, torch):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(RUNS_PER_SAMPLE):
            fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / RUNS_PER_SAMPLE)
    return statistics.median(times)


def time_backend(F, torch, q, k, v, dout, args):
    """(forward ms, backward ms) of SDPA under the backend in force."""
    with torch.no_grad():
        fwd = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=args.causal), args.reps, torch)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=args.causal)
    bwd = median_ms(lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True), args.reps, torch)
    return fwd, bwd


def sdpa_choice(torch, q, k, v, causal):
    """The backend SDPA picks for these inputs when the user forces none
    (torch._fused_sdp_choice, what scaled_dot_product_attention asks itself):
    "cudnn" on Hopper with torch >= 2.10 and a cuDNN newer than 9.15, else
    usually "flash". Private API: "unknown (...)" where it is missing."""
    from torch.nn.attention import SDPBackend
    try:
        choice = int(torch._fused_sdp_choice(q, k, v, None, 0.0, causal))
    except (AttributeError, RuntimeError, TypeError) as e:
        return f"unknown ({type(e).__name__})"
    names = {"FLASH_ATTENTION": "flash", "CUDNN_ATTENTION": "cudnn", "EFFICIENT_ATTENTION": "efficient",
             "MATH": "math"}
    for member, value in SDPBackend.__members__.items():
        if int(value) == choice:
            return names.get(member, member.lower())
    return f"unknown ({choice})"


def measure_peak(torch, reps):
    n = 8192
    x = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    y = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    ms = median_ms(lambda: torch.matmul(x, y), reps, torch)
    return 2.0 * n ** 3 / (ms * 1e-3) / 1e12, ms


def run(args):
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if not torch.cuda.is_available():
        print("bench_torch_sdpa: no CUDA device")
        return 77
    dev = torch.cuda.get_device_name(0)
    peak, peak_ms = measure_peak(torch, args.reps)
    print(f"bench_torch_sdpa on {dev}, torch {torch.__version__}, {args.tokens} tokens x {args.heads} heads, "
          f"bf16, {'causal' if args.causal else 'non-causal'}, median of {args.reps}")
    print(f"bf16 GEMM peak (torch.matmul 8192^3): {peak_ms:.3f} ms, {peak:.1f} TFLOP/s")
    backends = [("default", None), ("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)]
    rows = []
    H = args.heads
    print(f"\n{'backend':8} {'L':>6} {'D':>4} {'B':>5} | {'fwd ms':>9} {'TFLOP/s':>8} | {'bwd ms':>9} {'TFLOP/s':>8}")
    for D in (64, 128):
        for L in (512, 1024, 2048, 4096, 8192, 16384):
            if L > args.tokens:
                continue
            B = args.tokens // L
            g = torch.Generator(device="cuda").manual_seed(1234 + L + D)

            def mk():
                t = torch.randn(B, L, H, D, device="cuda", dtype=torch.bfloat16, generator=g)
                return t.transpose(1, 2).requires_grad_(True)

            q, k, v = mk(), mk(), mk()
            dout = torch.randn(B, L, H, D, device="cuda", dtype=torch.bfloat16, generator=g).transpose(1, 2)
            fwd_flop = 4.0 * B * H * L * L * D / (2 if args.causal else 1)
            for name, backend in backends:
                row = {"backend": name, "L": L, "D": D, "B": B, "H": H, "causal": args.causal}
                # SDPA says why it refuses a backend in warnings, then raises a RuntimeError
                with warnings.catch_warnings(record=True) as said:
                    warnings.simplefilter("always")
                    try:
                        measured = None
                        with sdpa_kernel(backend) if backend is not None else contextlib.nullcontext():
                            measured = time_backend(F, torch, q, k, v, dout, args)
                    except RuntimeError as e:
                        reason = "; ".join(str(w.message).strip().splitlines()[0] for w in said) or str(e)
                if backend is None:
                    row["chosen"] = sdpa_choice(torch, q, k, v, args.causal)
                if measured:
                    fwd, bwd = measured
                    row.update(fwd_ms=fwd, fwd_tflops=fwd_flop / (fwd * 1e-3) / 1e12, bwd_ms=bwd,
                               bwd_tflops=2.5 * fwd_flop / (bwd * 1e-3) / 1e12)
                    print(f"{name:8} {L:6d} {D:4d} {B:5d} | {fwd:9.3f} {row['fwd_tflops']:8.1f} | "
                          f"{bwd:9.3f} {row['bwd_tflops']:8.1f}" +
                          (f"  (SDPA chose {row['chosen']})" if "chosen" in row else ""))
                else:
                    row["unsupported"] = reason[:400]
                    print(f"{name:8} {L:6d} {D:4d} {B:5d} | not run: {row['unsupported']}")
                rows.append(row)
                sys.stdout.flush()
            del q, k, v, dout
            torch.cuda.empty_cache()
    result = {"device": dev, "torch": torch.__version__, "tokens": args.tokens, "heads": H, "reps": args.reps,
              "peak_bf16_gemm_tflops": peak, "flop_convention": "fwd 4*B*H*L^2*D (/2 causal); bwd 2.5 x fwd",
              "rows": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json}")
    if args.ours:
        try:
            compare(args.ours, result)
        except (OSError, ValueError, KeyError) as e:
            print(f"bench_torch_sdpa: no ratios: cannot read {args.ours}: {e}")
        if args.merge:
            try:
                with open(args.ours) as f:
                    ours = json.load(f)
            except (OSError, ValueError):
                ours = {"bench": "cuda_attention", "note": "bench_cuda_attention wrote nothing"}
            ours["torch_sdpa"] = result
            with open(args.ours, "w") as f:
                json.dump(ours, f, indent=2)
            print(f"merged into {args.ours} (key torch_sdpa)")
    return 0


def default_tilings(r):
    """mambert's default forward and backward for a benchmark row: the
    report's rule (tools/gpu_report.py), or tiling 0 if it is not beside us."""
    try:
        from gpu_report import default_tilings as rule
    except ImportError:
        return "fwd_tflops", "bwd_tflops"
    return rule(r)


def compare(ours_path, torch_result):
    """ours / torch per shape and backend: > 1 means mambert is faster."""
    with open(ours_path) as f:
        ours = json.load(f)
    if torch_result["device"] not in str(ours.get("device")):  # ours: the name, then the properties
        print(f"warning: ours ran on {ours.get('device')}, torch on {torch_result['device']}: ratios mean little")
    by_shape = {}
    for r in torch_result["rows"]:
        by_shape.setdefault((r["L"], r["D"]), {})[r["backend"]] = r
    print(f"\nmambert / torch SDPA (TFLOP/s ratio, > 1: mambert faster); peaks: mambert run "
          f"{ours.get('peak_bf16_gemm_tflops', 0):.0f}, torch run {torch_result['peak_bf16_gemm_tflops']:.0f} TFLOP/s")
    names = ("default", "flash", "cudnn")
    print(f"{'L':>6} {'D':>4} | {'ours fwd':>8} " + " ".join(f"{'/' + n:>8}" for n in names) +
          f" | {'ours bwd':>8} " + " ".join(f"{'/' + n:>8}" for n in names))
    for r in ours.get("rows", []):
        t = by_shape.get((r["L"], r["D"]), {})
        fk, bk = default_tilings(r)

        def ratio(key, kind, backend):
            x = t.get(backend, {})
            return f"{r[key] / x[kind]:8.2f}" if r.get(key) and x.get(kind) else f"{'-':>8}"

        chose = t.get("default", {}).get("chosen")
        print(f"{r['L']:6d} {r['D']:4d} | {r.get(fk, 0):8.1f} " +
              " ".join(ratio(fk, "fwd_tflops", n) for n in names) + f" | {r.get(bk, 0):8.1f} " +
              " ".join(ratio(bk, "bwd_tflops", n) for n in names) + (f"  (default = {chose})" if chose else ""))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", help="write the results here")
    p.add_argument("--ours", help="bench_cuda_attention's JSON: print the ratios")
    p.add_argument("--tokens", type=int, default=16384)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--causal", action="store_true")
    p.add_argument("--merge", action="store_true", help="write the results into the --ours file (key torch_sdpa)")
    p.add_argument("--compare-only", metavar="TORCH_JSON", help="no GPU work: ratios of --ours to this file")
    args = p.parse_args()
    if args.merge and not args.ours:
        p.error("--merge needs --ours")
    if args.compare_only:
        if not args.ours:
            p.error("--compare-only needs --ours")
        with open(args.compare_only) as f:
            compare(args.ours, json.load(f))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
