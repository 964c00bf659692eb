#!/usr/bin/env python3
"""gpu_report.py: the last step of tools/gpu_check.sh run: merges the test
results (a TSV: name, exit code, seconds) and the JSON of mambert's GPU
benchmarks (bench_cuda_*.json) and of the PyTorch peers (torch_peers.json)
found in OUT into OUT/gpu_check.json, and prints one table with the ratios
(mambert over torch: > 1 means mambert is faster, for times the inverse).

Usage: python3 tools/gpu_report.py OUT TESTS_TSV
Standard library only."""
import glob
import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def fmt(x, spec):
    return format(x, spec) if isinstance(x, (int, float)) else "-"


def main():
    out, tsv = sys.argv[1], sys.argv[2]
    tests = []
    with open(tsv) as f:
        for line in f:
            name, rc, secs = line.rstrip("\n").split("\t")
            rc = int(rc)
            status = {0: "passed", 77: "skipped"}.get(rc, "FAILED" if rc != 124 else "TIMEOUT")
            tests.append({"name": name, "exit": rc, "seconds": int(secs), "status": status})
    benches = {os.path.basename(p)[:-5]: load(p) for p in sorted(glob.glob(os.path.join(out, "bench_cuda_*.json")))}
    torch_p = load(os.path.join(out, "torch_peers.json")) or {"results": []}
    device = next((b["device"] for b in benches.values() if b and "device" in b), torch_p.get("device", "?"))
    mine = [r for b in benches.values() if b for r in b.get("results", [])]
    peers = torch_p.get("results", [])
    lines = []
    p = lines.append
    p("")
    p(f"==== mambert GPU check on {device} (torch {torch_p.get('torch', '?')}) ====")
    p("tests and benchmark programs:")
    for t in tests:
        p(f"  {t['name']:<28} {t['status']:<8} {t['seconds']:>4} s")

    # the study's MLP
    mlp = {r["variant"]: r for r in mine if "passes" in r and r.get("impl") == "mambert"}
    tmlp = {r["variant"]: r for r in peers if r.get("bench") == "mlp" and "seconds" in r}
    summary = {"device": device, "tests": tests, "mlp": {}, "gemm": [], "train": []}
    if mlp or tmlp:
        p("")
        p("study MLP, 100 forward passes (s; lower is better)")
        te, tc = tmlp.get("eager", {}).get("seconds"), tmlp.get("compile_reduce_overhead", {}).get("seconds")
        for v, label in (("eager", "mambert eager"), ("tape", "mambert tape (launch per node)"),
                         ("graph", "mambert tape as CUDA graph")):
            s = mlp.get(v, {}).get("seconds")
            p(f"  {label:<34} {fmt(s, '.5f'):>9}")
        p(f"  {'torch eager':<34} {fmt(te, '.5f'):>9}")
        p(f"  {'torch.compile(reduce-overhead)':<34} {fmt(tc, '.5f'):>9}")
        me, mg = mlp.get("eager", {}).get("seconds"), mlp.get("graph", {}).get("seconds")
        if me and te:
            p(f"  mambert eager vs torch eager: {te / me:.2f}x")
        if mg and tc:
            p(f"  mambert graph vs torch.compile(reduce-overhead): {tc / mg:.2f}x")
        if mg and te:
            p(f"  mambert graph vs torch eager: {te / mg:.2f}x")
        summary["mlp"] = {"mambert": mlp, "torch": tmlp}

    # GEMMs
    mg = {(r["M"], r["K"], r["N"], r["type"]): r for r in mine if "tflops" in r}
    tg = {(r["M"], r["K"], r["N"], r["type"]): r for r in peers if r.get("bench") == "gemm" and "tflops" in r}
    if mg or tg:
        p("")
        p("GEMM y = x @ w^T, TFLOP/s (higher is better)")
        p(f"  {'M':>6} {'K':>6} {'N':>6} {'type':<5} {'mambert':>9} {'torch':>9} {'ratio':>7}")
        for key in sorted(set(mg) | set(tg), key=lambda k: (k[3], k[:3] != (8192, 8192, 8192), k[0], k[1], k[2])):
            a, b = mg.get(key, {}).get("tflops"), tg.get(key, {}).get("tflops")
            ratio = f"{a / b:.2f}x" if a and b else "-"
            tag = "  (ceiling)" if key[:3] == (8192, 8192, 8192) else ""
            p(f"  {key[0]:>6} {key[1]:>6} {key[2]:>6} {key[3]:<5} {fmt(a, '.1f'):>9} {fmt(b, '.1f'):>9} {ratio:>7}{tag}")
            summary["gemm"].append({"M": key[0], "K": key[1], "N": key[2], "type": key[3], "mambert_tflops": a,
                                    "torch_tflops": b})

    # training steps
    mt = [r for r in mine if r.get("model")]
    tt = [r for r in peers if r.get("bench") == "train"]
    if mt or tt:
        p("")
        p("training step, bf16, batch x seq as listed: samples/s (higher is better), peak GiB")
        models = []
        for r in mt + tt:
            if r.get("model") and r["model"] not in models:
                models.append(r["model"])
        for m in models:
            r = next((x for x in mt if x.get("model") == m), None)
            ok = r is not None and r.get("status") == "ok"
            if r is None:
                p(f"  mambert {m:<6} not run")
            elif not ok:
                p(f"  mambert {m:<6} {r.get('status')}: {r.get('why', '')}")
            else:
                p(f"  mambert {m:<6} {r['batch']}x{r['seq']}: {r['samples_per_s']:9.1f} samples/s, "
                  f"{r['peak_bytes'] / 2**30:6.2f} GiB  (attention: {r.get('attention')})")
            for t in (x for x in tt if x.get("model") == m):
                if t.get("status") != "ok":
                    p(f"    torch {t['variant']:<8} {t.get('status')}: {t.get('why', '')}")
                    continue
                line = (f"    torch {t['variant']:<8} {t['samples_per_s']:9.1f} samples/s, "
                        f"{t['peak_bytes'] / 2**30:6.2f} GiB")
                if ok:
                    line += (f"   mambert/torch: {r['samples_per_s'] / t['samples_per_s']:.2f}x speed, "
                             f"{r['peak_bytes'] / t['peak_bytes']:.2f}x memory")
                p(line)
        summary["train"] = {"mambert": mt, "torch": tt}

    failed = [t["name"] for t in tests if t["status"] in ("FAILED", "TIMEOUT")]
    p("")
    p("RESULT: " + ("all tests and benchmarks ran" if not failed else "FAILED: " + ", ".join(failed)))
    summary["failed"] = failed
    with open(os.path.join(out, "gpu_check.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print("\n".join(lines))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
