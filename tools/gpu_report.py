#!/usr/bin/env python3
"""gpu_report.py: the last step of tools/gpu_check.sh run: merges the steps'
results (raw/steps.tsv: name, group, exit code, seconds, limit) and every
step's JSON (mambert's bench_cuda_*.json, the PyTorch peers' torch_*.json,
the selective scan's scan.json and scan_check.txt, the attention's
attn_check.txt) into OUT/gpu_check.json
(everything) and OUT/gpu_check.md (the tables, with the ratios mambert /
PyTorch taken within the run), and prints the markdown last.

  gpu_report.py --raw RAW_DIR --out OUT_DIR
  gpu_report.py --merge-raw A/gpu_raw.tar.gz B/gpu_raw.tar.gz ... --out DIR
      (results of several device calls, e.g. a rerun of the steps the first
      call's budget did not reach: later calls win per file and per step)

Ratios: "x faster" = mambert's rate / torch's rate (> 1: mambert faster);
"memory" = mambert's peak / torch's peak (< 1: mambert smaller). Numbers of
different cards are never compared. Standard library only."""
import argparse
import glob
import json
import os
import sys
import tarfile
import tempfile

STATUS = {0: "passed", 77: "skipped (no GPU)", 124: "TIMEOUT", 137: "TIMEOUT (killed)", 200: "skipped (budget)"}


def default_tilings(r):
    """The keys of the forward and backward the dispatcher takes by default
    for benchmark row r, as kernels/cuda/attention.cu's attn_env_tiling
    decides: on Hopper (the wgmma tilings timed) forward tiling 5 and
    backward tiling 3 (ordered bulk dQ; until 2026-11-29 tiling 1 at head
    dim 128 and 0 at 64); elsewhere tiling 0 for both."""
    hopper = bool(r.get("fwd_v5_tflops"))
    fwd = "fwd_v5_tflops" if hopper else "fwd_tflops"
    bwd = "bwd_v3_tflops" if hopper and r.get("bwd_v3_tflops") else "bwd_tflops"
    return fwd, bwd


def fastest_tilings(rows, min_len=1024):
    """Lines naming, per head dim, the fastest forward tiling and backward
    (geometric mean of TFLOP/s over L >= min_len, only tilings timed at every
    such L): the candidates for the sm_90 defaults (choose_fwd_variant and
    its backward twin in kernels/cuda/), to be taken only if cuda_attention
    passed on the same card."""
    def gmean(xs):
        prod = 1.0
        for x in xs:
            prod *= x
        return prod ** (1.0 / len(xs))

    out = []
    for D in sorted({r["D"] for r in rows}):
        rs = [r for r in rows if r["D"] == D and r["L"] >= min_len]
        if not rs:
            continue
        parts = []
        for what, keys in (("forward", [("0", "fwd_tflops")] + [(str(t), f"fwd_v{t}_tflops") for t in range(2, 11)]),
                           ("backward", [("0 (deterministic)", "bwd_tflops"), ("1 (wgmma)", "bwd_v1_tflops"),
                                         ("2 (warp-specialised)", "bwd_v2_tflops"),
                                         ("3 (ordered bulk dQ)", "bwd_v3_tflops"),
                                         ("4 (3, 128-query tiles)", "bwd_v4_tflops")]),
                           # the fast modes (dQ by atomics, as SDPA's backends): the fair race with SDPA
                           ("fast backward", [("0 (f32 atomics)", "bwd_fast_tflops"),
                                              ("2 (f32 atomics)", "bwd_v2_fast_tflops"),
                                              ("3 (bulk reduce)", "bwd_v3_fast_tflops"),
                                              ("4 (bulk reduce, 128-query tiles)", "bwd_v4_fast_tflops")]),
                           # the e4m3 forward's Hopper kernels: its default on sm_90 (attn_flash_fwd_fp8) is
                           # pipe (tilings 4-6) until ws (7), wsp (8) or wspf (9-10) beats it
                           ("e4m3 forward", [("4 (pipe)", "fp8_pipe_fwd_tflops"), ("7 (ws)", "fp8_ws_fwd_tflops"),
                                             ("8 (wsp)", "fp8_wsp_fwd_tflops"),
                                             ("9 (wspf)", "fp8_wspf_fwd_tflops")])):
            means = {name: gmean([r[k] for r in rs]) for name, k in keys if all(r.get(k) for r in rs)}
            if not means:
                continue
            best = max(means, key=means.get)
            base = means.get(keys[0][0])
            vs = f", {means[best] / base:.2f}x tiling {keys[0][0]}" if base and best != keys[0][0] else ""
            parts.append(f"{what} tiling {best} ({means[best]:.0f} TFLOP/s{vs})")
        if parts:
            out.append(f"\nfastest at D = {D}, L >= {min_len} (geometric mean): " + "; ".join(parts))
    return out


def tiling_ratios(rows, pairs=((5, 7), (5, 8), (6, 9), (5, 10))):
    """Per head dim, forward tiling t over tiling base at each L, for each
    (base, t): 7 and 8 over 5 (the rule for making one of them the sm_90
    default is "wins at L <= 2k and ties beyond": kernels/cuda/ATTENTION.md,
    tiling 7), and 9 over 6 and 10 over 5, their kernels without the
    FMA-pipe exponentials (ATTENTION.md, tiling 9)."""
    out = []
    for D in sorted({r["D"] for r in rows}):
        for base, t in pairs:
            rs = sorted((r for r in rows if r["D"] == D and r.get(f"fwd_v{base}_tflops")), key=lambda r: r["L"])
            cells = [f"{r['L']}: {r[f'fwd_v{t}_tflops'] / r[f'fwd_v{base}_tflops']:.2f}x"
                     for r in rs if r.get(f"fwd_v{t}_tflops")]
            if cells:
                out.append(f"forward tiling {t} / tiling {base} at D = {D}: " + ", ".join(cells))
    return out


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def f(x, spec, dash="-"):
    return format(x, spec) if isinstance(x, (int, float)) and x == x else dash


def gib(b):
    return f(b / 2**30, ".2f") if isinstance(b, (int, float)) and b else "-"


def read_steps(paths):
    steps = {}
    for p in paths:
        try:
            with open(p) as fh:
                for line in fh:
                    parts = line.rstrip("\n").split("\t")
                    if len(parts) < 5:
                        continue
                    name, group, rc, secs, limit = parts[0], parts[1], int(parts[2]), int(parts[3]), int(parts[4])
                    st = STATUS.get(rc, f"FAILED (exit {rc})")
                    if group in ("bench", "peers") and rc == 0:
                        st = "ok"
                    steps[name] = {"name": name, "group": group, "exit": rc, "seconds": secs, "limit": limit,
                                   "status": st}
        except OSError:
            pass
    return list(steps.values())


class Report:
    def __init__(self, raw):
        self.raw = raw
        self.lines = []
        self.summary = {}

    def p(self, s=""):
        self.lines.append(s)

    def j(self, name):
        return load(os.path.join(self.raw, name))

    def rows(self, name):
        d = self.j(name)
        return (d or {}).get("results", []) if isinstance(d, dict) else []

    # ---- sections ----

    def steps(self, steps):
        self.p("| step | group | status | s | limit s |")
        self.p("| --- | --- | --- | ---: | ---: |")
        order = {"tests": 0, "test": 0, "bench": 1, "peers": 2}
        for s in sorted(steps, key=lambda s: (order.get(s["group"], 3))):
            self.p(f"| {s['name']} | {s['group']} | {s['status']} | {s['seconds']} | {s['limit']} |")

    def mlp(self):
        mine = {r.get("variant"): r for r in self.rows("bench_cuda_mlp.json") if "passes" in r}
        peers = {r.get("variant"): r for r in self.rows("torch_mlp_gemm.json") if r.get("bench") == "mlp" and "seconds" in r}
        if not mine and not peers:
            return
        self.p("\n### Study MLP, 100 forward passes (s, lower is better)\n")
        self.p("| variant | seconds |")
        self.p("| --- | ---: |")
        for v, label in (("eager", "mambert eager (record + run)"), ("tape", "mambert tape (a launch per node)"),
                         ("graph", "mambert tape as one CUDA graph")):
            self.p(f"| {label} | {f(mine.get(v, {}).get('seconds'), '.5f')} |")
        te, tc = peers.get("eager", {}).get("seconds"), peers.get("compile_reduce_overhead", {}).get("seconds")
        self.p(f"| torch eager | {f(te, '.5f')} |")
        self.p(f"| torch.compile(mode=\"reduce-overhead\") | {f(tc, '.5f')} |")
        me, mg = mine.get("eager", {}).get("seconds"), mine.get("graph", {}).get("seconds")
        ratios = []
        if me and te:
            ratios.append(f"mambert eager vs torch eager {te / me:.2f}x")
        if mg and tc:
            ratios.append(f"mambert graph vs torch.compile {tc / mg:.2f}x")
        if mg and te:
            ratios.append(f"mambert graph vs torch eager {te / mg:.2f}x")
        if ratios:
            self.p("\n" + "; ".join(ratios) + " (> 1: mambert faster)")
        self.summary["mlp"] = {"mambert": mine, "torch": peers}

    def gemm(self):
        mg = {(r["M"], r["K"], r["N"], r["type"]): r for r in self.rows("bench_cuda_gemm.json") if "tflops" in r}
        tg = {(r["M"], r["K"], r["N"], r["type"]): r for r in self.rows("torch_mlp_gemm.json")
              if r.get("bench") == "gemm" and "tflops" in r}
        if not mg and not tg:
            return
        self.p("\n### GEMM y = x @ w^T, TFLOP/s (higher is better)\n")
        self.p("| M | K | N | type | mambert | torch | mambert/torch |")
        self.p("| ---: | ---: | ---: | --- | ---: | ---: | ---: |")
        out = []
        for key in sorted(set(mg) | set(tg), key=lambda k: (k[3], k[:3] != (8192, 8192, 8192), k[0], k[1], k[2])):
            a, b = mg.get(key, {}).get("tflops"), tg.get(key, {}).get("tflops")
            tag = " (ceiling)" if key[:3] == (8192, 8192, 8192) else ""
            self.p(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]}{tag} | {f(a, '.1f')} | {f(b, '.1f')} | "
                   f"{f(a / b, '.2f') + 'x' if a and b else '-'} |")
            out.append({"M": key[0], "K": key[1], "N": key[2], "type": key[3], "mambert_tflops": a, "torch_tflops": b})
        self.summary["gemm"] = out

    def train(self):
        mine = self.rows("bench_cuda_train_bert.json") + self.rows("bench_cuda_train_mamba.json")
        peers = [r for r in self.rows("torch_train.json") + self.rows("torch_train_compile.json")
                 + self.rows("torch_train_compile_mamba.json")
                 if r.get("bench") == "train"]
        if not mine and not peers:
            return
        self.p("\n### Training step, bf16 (f32 master weights, AdamW, clip 1.0): samples/s (higher is better), "
               "peak GiB\n")
        self.p("| model | implementation | batch x seq | samples/s | peak GiB | mambert: x faster | mambert: memory |")
        self.p("| --- | --- | --- | ---: | ---: | ---: | ---: |")
        for m in ("bert", "mamba"):
            r = next((x for x in mine if x.get("model") == m), None)
            ok = r is not None and r.get("status") == "ok"
            if r is None:
                self.p(f"| {m} | mambert | - | not run | | | |")
            elif not ok:
                self.p(f"| {m} | mambert | {r.get('batch')}x{r.get('seq')} | {r.get('status')}: {r.get('why', '')} | | | |")
            else:
                self.p(f"| {m} | mambert (models/, CUDA graphs) | {r['batch']}x{r['seq']} | {r['samples_per_s']:.1f} | "
                       f"{gib(r['peak_bytes'])} | | |")
            w = next((x for x in self.rows(f"bench_cuda_{'train_' + m}_wgmma.json") if x.get("model") == m), None)
            if w is not None and w.get("status") == "ok":
                gain = f"{w['samples_per_s'] / r['samples_per_s']:.2f}x of the above" if ok else "-"
                self.p(f"| {m} | mambert, attention tilings 2,1 (MAMBERT_ATTN_TILING=wgmma) | {w['batch']}x{w['seq']} | "
                       f"{w['samples_per_s']:.1f} | {gib(w['peak_bytes'])} | {gain} | |")
            elif w is not None:
                self.p(f"| {m} | mambert, wgmma attention | - | {w.get('status')}: {w.get('why', '')} | | | |")
            for t in (x for x in peers if x.get("model") == m):
                if t.get("status") != "ok":
                    self.p(f"| {m} | HF {t.get('variant')} | {t.get('batch')}x{t.get('seq')} | {t.get('status')}: "
                           f"{t.get('why', '')} | | | |")
                    continue
                sp = f"{r['samples_per_s'] / t['samples_per_s']:.2f}x" if ok else "-"
                mem = f"{r['peak_bytes'] / t['peak_bytes']:.2f}x" if ok and t.get("peak_bytes") else "-"
                self.p(f"| {m} | HF transformers {t['variant']} | {t['batch']}x{t['seq']} | {t['samples_per_s']:.1f} | "
                       f"{gib(t.get('peak_bytes'))} | {sp} | {mem} |")
        self.summary["train"] = {"mambert": mine, "torch": peers}

    def attention(self):
        att = self.j("bench_cuda_attention.json")
        sd = self.j("torch_sdpa.json") or (att or {}).get("torch_sdpa") or {}
        check = self.check_line("attn_check.txt")
        if check:
            self.p(f"\n### Fused attention vs torch's SDPA math backend (f32) on cuda_attention's dump "
                   f"(bf16, default kernels; tools/check_torch_attention.py): {check}\n")
        if not att or not att.get("rows"):
            return
        sdpa = {(r["L"], r["D"], r["backend"]): r for r in sd.get("rows", [])}

        def ratio(r, kind, backend, peer_kind=None):
            t = sdpa.get((r["L"], r["D"], backend), {})
            pk = peer_kind or kind
            return f"{r[kind] / t[pk]:.2f}x" if t.get(pk) and r.get(kind) else "-"

        self.p(f"\n### Fused attention, bf16, {att.get('tokens')} tokens x {att.get('heads')} heads: TFLOP/s "
               f"(share of the measured {f(att.get('peak_bf16_gemm_tflops'), '.0f')} TFLOP/s bf16 GEMM peak); "
               f"mambert / torch SDPA (> 1: mambert faster). fwd 0: tiling 0 (mma.sync, the default off Hopper); "
               f"fwd wgmma: tilings 2 / 3 (D = 64: two CTAs per SM) / 4 (softmax under the product) / 5 (4 "
               f"warp-specialised, TMA) / 6 (5 with ping-pong) / 7 (5 persistent: a CTA per SM) / 8 (7 with "
               f"3 consumer warpgroups, 192-row tiles, at D = 64) / 9, 10 (6, 5 with 3/16 of the exponentials on "
               f"the FMA pipe), Hopper only; "
               f"bwd 0: tiling 0 with the "
               f"deterministic dQ (a separate dQ pass, the same bits every run); bwd fast: f32 atomics, as "
               f"FlashAttention-2 and SDPA; bwd 1 / 2 / 3 / 4: tiling 1 (Hopper only; dK, dV and dQ on wgmma, summed in "
               f"order) / tiling 2 (both kernels warp-specialised; fast: its dQ by f32 atomics in the dK/dV "
               f"kernel) / tiling 3 (2's dK/dV kernel with FlashAttention-3's dQ: summed over 128 keys by one "
               f"warpgroup, added by TMA bulk reduces, in key-tile order; fast: in any order) / tiling 4 (3 with "
               f"128-query tiles, D = 64 only); default: what the dispatcher takes on this card (attn_env_tiling: on Hopper forward "
               f"tiling 5, backward tiling 3), and the ratios are the default's; SDPA: "
               f"torch's scaled_dot_product_attention as a user calls it (its own backend choice)\n")
        self.p("| L | D | fwd 0 | fwd wgmma | fwd default | peak | bwd 0 | bwd fast | bwd 1 / 2 / 3 / 4 | bwd default "
               "| fwd / SDPA | fwd / flash | fwd / cuDNN | bwd / SDPA | bwd / flash | bwd / flash (fast) "
               "| bwd / cuDNN |")
        self.p("|" + " ---: |" * 17)
        for r in att["rows"]:
            # tilings 3 to 10 after 2, "-" where one did not run (3: D = 64 only)
            v3 = "".join(" / " + f(r.get(f"fwd_v{t}_tflops"), ".1f") for t in range(3, 11)) \
                if r.get("fwd_v2_tflops") else ""
            fk, bk = default_tilings(r)
            b2 = " / " + f(r.get("bwd_v2_tflops"), ".1f") if r.get("bwd_v2_tflops") else ""
            for t in (3, 4):  # 4: head dim 64 only
                if r.get(f"bwd_v{t}_tflops"):
                    b2 += " / " + f(r.get(f"bwd_v{t}_tflops"), ".1f")
            if r.get("bwd_v2_fast_tflops"):
                b2 += " (fast " + f(r.get("bwd_v2_fast_tflops"), ".1f") + \
                    "".join(" / " + f(r.get(f"bwd_v{t}_fast_tflops"), ".1f")
                            for t in (3, 4) if r.get(f"bwd_v{t}_fast_tflops")) + ")"
            peak = att.get("peak_bf16_gemm_tflops")
            share = f"{100 * r[fk] / peak:.0f}%" if peak and r.get(fk) else "-"
            self.p(f"| {r['L']} | {r['D']} | {r['fwd_tflops']:.1f} | {f(r.get('fwd_v2_tflops'), '.1f')}{v3} | "
                   f"{f(r.get(fk), '.1f')} | {share} | {r['bwd_tflops']:.1f} | {f(r.get('bwd_fast_tflops'), '.1f')} | "
                   f"{f(r.get('bwd_v1_tflops'), '.1f')}{b2} | {f(r.get(bk), '.1f')} | "
                   f"{ratio(r, fk, 'default', 'fwd_tflops')} | "
                   f"{ratio(r, fk, 'flash', 'fwd_tflops')} | {ratio(r, fk, 'cudnn', 'fwd_tflops')} | "
                   f"{ratio(r, bk, 'default', 'bwd_tflops')} | "
                   f"{ratio(r, bk, 'flash', 'bwd_tflops')} | {ratio(r, 'bwd_fast_tflops', 'flash', 'bwd_tflops')} | "
                   f"{ratio(r, bk, 'cudnn', 'bwd_tflops')} |")
        chosen = sorted({(r["D"], r["chosen"]) for r in sd.get("rows", []) if r.get("chosen")})
        if chosen:  # the "SDPA" columns' backend (tools/bench_torch_sdpa.py, sdpa_choice)
            dims = sorted({d for d, _ in chosen})
            self.p("\nSDPA as a user calls it chose: " +
                   "; ".join(f"D = {D}: {', '.join(c for d, c in chosen if d == D)}" for D in dims))
        for line in fastest_tilings(att["rows"]):
            self.p(line)
        ratios = tiling_ratios(att["rows"])
        if ratios:
            self.p("")
            for line in ratios:
                self.p(line + "  ")
        if any(r.get("fp8_fwd_tflops") for r in att["rows"]):
            self.p("\ne4m3 forward (evaluation; descales 1, P quantised with 2^8): TFLOP/s and x over the bf16 "
                   "forward of the same family (mma.sync: tiling 0; wgmma: tiling 2; pipe: the wgmma kernel with "
                   "S_{j+1} issued before softmax_j, over tiling 4; the dispatcher takes pipe at forward tilings "
                   "4-6, so on Hopper by default; ws / wsp: warp-specialised with TMA, persistent, forward tilings "
                   "7 / 8, V^T made by the consumers / by the producer's warps, over bf16 tiling 5; wspf: wsp "
                   "with 3 of 16 exponentials on the FMA pipe, tilings 9-10, over wsp); last: the default fp8 over "
                   "the default bf16 forward\n")
            self.p("| L | D | mma.sync | x bf16 | wgmma | x bf16 | pipe | x bf16 | ws | x bf16 5 | wsp | x bf16 5 "
                   "| wspf | x wsp | default fp8 / default bf16 |")
            self.p("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
                   "---: | ---: |")
            for r in att["rows"]:
                cells = []
                for t, b in (("fp8_fwd_tflops", "fwd_tflops"), ("fp8_wgmma_fwd_tflops", "fwd_v2_tflops"),
                             ("fp8_pipe_fwd_tflops", "fwd_v4_tflops"), ("fp8_ws_fwd_tflops", "fwd_v5_tflops"),
                             ("fp8_wsp_fwd_tflops", "fwd_v5_tflops"), ("fp8_wspf_fwd_tflops", "fp8_wsp_fwd_tflops")):
                    x = f"{r[t] / r[b]:.2f}x" if r.get(t) and r.get(b) else "-"
                    cells.append(f"{f(r.get(t), '.1f')} | {x}")
                fk = default_tilings(r)[0]
                e8 = "fp8_pipe_fwd_tflops" if fk == "fwd_v5_tflops" else "fp8_fwd_tflops"
                cells.append(f"{r[e8] / r[fk]:.2f}x" if r.get(e8) and r.get(fk) else "-")
                self.p(f"| {r['L']} | {r['D']} | " + " | ".join(cells) + " |")
        pv = att.get("packed_vs_padded")
        if pv:
            self.p(f"\nkernel level, packed vs padded ({pv['nseq']} sequences, {pv['real_tokens']} of "
                   f"{pv['padded_tokens']} tokens real): packed {pv['padded_fwd_ms'] / pv['packed_fwd_ms']:.2f}x faster "
                   f"forward, {pv['padded_bwd_ms'] / pv['packed_bwd_ms']:.2f}x backward")
            base = pv.get("packed_fwd_v5_ms")
            cells = [f"tiling {t} {base / pv[f'packed_fwd_v{t}_ms']:.2f}x"
                     for t in (7, 8) if base and pv.get(f"packed_fwd_v{t}_ms")]
            if cells:  # the persistent tilings on mixed lengths, where a fixed tile order can balance worse
                self.p(f"\npacked forward, speed over tiling 5 ({base:.3f} ms; > 1: faster): " + ", ".join(cells))
        self.summary["attention"] = {"mambert": att, "torch_sdpa": sd}

    def check_line(self, name):
        """The verdict (last line) of a correctness check's text file in raw/, or None."""
        try:
            with open(os.path.join(self.raw, name)) as fh:
                lines = [x.strip() for x in fh if x.strip()]
                return lines[-1] if lines else None
        except OSError:
            return None

    def scan(self):
        mb = self.j("bench_cuda_selective_scan.json")
        merged = self.j("scan.json")
        check = self.check_line("scan_check.txt")
        if not mb and not merged and not check:
            return
        self.p("\n### Selective scan + conv1d (batch 8, d_inner 1536, d_state 16, bf16), forward + backward\n")
        if check:
            self.p(f"transformers' slow path on the GPU vs mambert (cuda_selective_scan's dump): {check}\n")
        if mb:
            copy = mb.get("copy_gbps") or 0
            self.p(f"mambert alone: effective GB/s (the bytes that must move once) against the measured copy "
                   f"bandwidth ({f(copy, '.0f')} GB/s)\n")
            self.p("| L | fwd ms | bwd ms | fwd GB/s | fwd % of copy bw | bwd GB/s | bwd % | exp floor ms |")
            self.p("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            for r in mb.get("results", []):
                self.p(f"| {r['L']} | {r['fwd_ms']:.3f} | {r['bwd_ms']:.3f} | {r['fwd_gbps']:.0f} | "
                       f"{f(100 * r['fwd_gbps'] / copy if copy else None, '.0f')}% | {r['bwd_gbps']:.0f} | "
                       f"{f(100 * r['bwd_gbps'] / copy if copy else None, '.0f')}% | {r['exp_floor_ms']:.3f} |")
        if merged and merged.get("speedups"):
            names = sorted({k[:-3] for r in merged["speedups"] for k in r if k.endswith("_ms") and k != "mambert_ms"})
            self.p("\nforward + backward against transformers' slow loop and a torch.compile'd associative scan "
                   "(each run until its time budget):\n")
            self.p("| L | mambert ms | " + " | ".join(f"{n} ms | speed-up" for n in names) + " |")
            self.p("| ---: | ---: | " + " | ".join("---: | ---:" for _ in names) + " |")
            for r in merged["speedups"]:
                cells = [f"{f(r.get(n + '_ms'), '.3f')} | {f(r.get(n + '_speedup'), '.1f')}x" for n in names]
                self.p(f"| {r['L']} | {f(r.get('mambert_ms'), '.3f')} | " + " | ".join(cells) + " |")
        b1 = self.j("bench_cuda_selective_scan_b1.json")
        if b1 and mb:
            # batch 1 is a packed row's grid (48 blocks unless the row is split into parts): its tokens/s against
            # batch 8's at the same L, from the same run
            b8 = {r["L"]: r for r in mb.get("results", [])}
            self.p("\nbatch 1 (rows split into parts) vs batch 8, forward + backward tokens/s:\n")
            self.p("| L | parts | batch 1 tokens/s | batch 8 tokens/s | batch 1 / batch 8 |")
            self.p("| ---: | ---: | ---: | ---: | ---: |")
            for r in b1.get("results", []):
                o = b8.get(r["L"])
                ratio = r["tokens_per_s"] / o["tokens_per_s"] if o and o.get("tokens_per_s") else None
                self.p(f"| {r['L']} | {r.get('parts', '-')} | {r['tokens_per_s']:.3g} | "
                       f"{f(o.get('tokens_per_s') if o else None, '.3g')} | {f(ratio, '.2f')} |")
        self.summary["scan"] = {"check": check, "merged": merged, "mambert": mb, "mambert_batch1": b1}

    def sweep(self):
        mine = [r for r in self.rows("bench_cuda_sweep.json") if "L" in r]
        peers = [r for r in self.rows("torch_sweep.json") if r.get("bench") == "sweep"]
        if not mine and not peers:
            return
        Ls = sorted({r["L"] for r in mine + peers})

        def cell(rows, model, mode, L, key="samples_per_s", fmt=".1f"):
            r = next((x for x in rows if x.get("model") == model and x.get("mode") == mode and x.get("L") == L), None)
            if r is None:
                return "-", "-"
            if r.get("status") != "ok":
                return r.get("status", "?"), "-"
            return f(r.get(key), fmt), gib(r.get("peak_bytes"))

        self.p("\n### Sequence-length sweep, bf16: evaluation (batch 32, forward + logits): samples/s | peak GiB\n")
        self.p("| L | mambert BERT | GiB | HF BERT (sdpa) | GiB | mambert Mamba | GiB | HF Mamba (slow path) | GiB |")
        self.p("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for L in Ls:
            a, b, c, d = (cell(mine, "bert", "eval", L), cell(peers, "bert", "eval", L),
                          cell(mine, "mamba", "eval", L), cell(peers, "mamba", "eval", L))
            self.p(f"| {L} | {a[0]} | {a[1]} | {b[0]} | {b[1]} | {c[0]} | {c[1]} | {d[0]} | {d[1]} |")
        tr = [r for r in mine if r.get("mode") == "train"]
        if tr:
            self.p("\ntraining step at a fixed token count per step (batch = tokens / L): tokens/s | peak GiB\n")
            self.p("| L | batch | mambert BERT | GiB | mambert Mamba | GiB |")
            self.p("| ---: | ---: | ---: | ---: | ---: | ---: |")
            for L in sorted({r["L"] for r in tr}):
                a, c = cell(tr, "bert", "train", L, "tokens_per_s", ".0f"), cell(tr, "mamba", "train", L,
                                                                              "tokens_per_s", ".0f")
                B = next((r.get("batch") for r in tr if r["L"] == L), "-")
                self.p(f"| {L} | {B} | {a[0]} | {a[1]} | {c[0]} | {c[1]} |")
        self.summary["sweep"] = {"mambert": mine, "torch": peers}

    def sweep_fp8(self):
        """BERT-base evaluation with its attention in e4m3 (eval.attention: fp8) beside bf16, same run."""
        rows = [r for r in self.rows("bench_cuda_sweep_fp8.json") if "L" in r and r.get("mode") == "eval"]
        if not rows:
            return

        def at(att, L):
            return next((r for r in rows if r.get("attention") == att and r["L"] == L), None)

        self.p("\n### BERT-base evaluation with fp8 attention (batch 32): samples/s | peak GiB\n")
        self.p("| L | bf16 | GiB | fp8 attention | GiB | fp8 / bf16 |")
        self.p("| ---: | ---: | ---: | ---: | ---: | ---: |")
        for L in sorted({r["L"] for r in rows}):
            b, q = at("bf16", L), at("fp8", L)
            ok = [x if x and x.get("status") == "ok" else None for x in (b, q)]
            ratio = ok[1]["samples_per_s"] / ok[0]["samples_per_s"] if all(ok) else None
            cells = [f(x.get("samples_per_s"), ".1f") if x else (y.get("status", "?") if y else "-")
                     for x, y in zip(ok, (b, q))]
            self.p(f"| {L} | {cells[0]} | {gib(ok[0].get('peak_bytes')) if ok[0] else '-'} | {cells[1]} | "
                   f"{gib(ok[1].get('peak_bytes')) if ok[1] else '-'} | {f(ratio, '.2f')} |")
        self.summary["sweep_fp8"] = rows

    def packed(self):
        rows = self.rows("bench_cuda_packed.json")
        if not rows:
            return
        self.p("\n### Fine-tuning on IMDB's real lengths (shipped sample, max_length 512, batch 32), bf16\n")
        for r in rows:
            if "lengths" in r:
                ln = r["lengths"]
                self.p(f"- {r['model']} ({ln['tokenizer']}): median {ln['median']}, p90 {ln['p90']}, p99 {ln['p99']} "
                       f"tokens; {ln['over_max_length']} of {ln['n']} reviews longer than 512")
        self.p("\n| model | batching | reviews/s | real tokens/s | real share | steps | shapes | peak GiB | "
               "packed: x faster |")
        self.p("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        modes = [r for r in rows if "mode" in r]
        for m in ("bert", "mamba"):
            pk = next((r for r in modes if r["model"] == m and r["mode"] == "packed" and r["status"] == "ok"), None)
            for r in (x for x in modes if x["model"] == m):
                if r["status"] != "ok":
                    self.p(f"| {m} | {r['mode']} | {r['status']}: {r.get('why', '')} | | | | | | |")
                    continue
                share = r["real_tokens"] / r["computed_tokens"] if r.get("computed_tokens") else None
                sp = f"{pk['reviews_per_s'] / r['reviews_per_s']:.2f}x" if pk and r is not pk else "-"
                self.p(f"| {m} | {r['mode']} | {r['reviews_per_s']:.1f} | {r['real_tokens_per_s']:.0f} | "
                       f"{f(100 * share if share else None, '.0f')}% | {r['steps']} | {r['shapes']} | "
                       f"{gib(r['peak_bytes'])} | {sp} |")
        self.summary["packed"] = rows


def report(raw, out):
    steps = read_steps([os.path.join(raw, "steps.tsv")] + sorted(glob.glob(os.path.join(raw, "steps.*.tsv"))))
    r = Report(raw)
    device, torch_v = "?", "?"
    for name in sorted(os.listdir(raw)) if os.path.isdir(raw) else []:
        d = load(os.path.join(raw, name)) if name.endswith(".json") else None
        if isinstance(d, dict):
            dev = d.get("device")
            if isinstance(dev, dict):
                dev = dev.get("name")
            if dev and device == "?":
                device = dev
            if isinstance(d.get("torch"), str) and torch_v == "?":
                torch_v = d["torch"]
    r.p(f"## mambert GPU check on {device} (torch {torch_v})\n")
    r.steps(steps)
    for sec in (r.train, r.sweep, r.sweep_fp8, r.attention, r.scan, r.packed, r.mlp, r.gemm):
        try:
            sec()
        except Exception as e:  # a malformed file must not hide the other tables
            r.p(f"\n(report section {sec.__name__} failed: {e!r})")
    failed = [s["name"] for s in steps if s["status"].startswith(("FAILED", "TIMEOUT"))]
    skipped = [s["name"] for s in steps if s["status"] == "skipped (budget)"]
    r.p("")
    if skipped:
        tests = [s for s in skipped if s.startswith(("cuda_", "runtime_"))]
        others = [s for s in skipped if s not in tests]
        r.p("Not reached within the budget; the call that runs them: run(command=\"tools/gpu_check.sh run "
            + " ".join(others + tests) + "\", carry=[\"gpu-bundle\"], timeout_s=540)")
    r.p("RESULT: " + ("every step ran and passed" if not failed and not skipped
                      else ("FAILED: " + ", ".join(failed) if failed else "no failures") +
                      (f"; {len(skipped)} not reached" if skipped else "")))
    everything = {"device": device, "torch": torch_v, "steps": steps, "failed": failed, "skipped": skipped,
                  "summary": r.summary, "raw": {}}
    for name in sorted(os.listdir(raw)) if os.path.isdir(raw) else []:
        if name.endswith(".json"):
            everything["raw"][name] = load(os.path.join(raw, name))
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "gpu_check.json"), "w") as fh:
        json.dump(everything, fh, indent=1)
    text = "\n".join(r.lines) + "\n"
    with open(os.path.join(out, "gpu_check.md"), "w") as fh:
        fh.write(text)
    print(text)
    return 1 if failed else 0


def merge_raw(tars, out):
    """Unpack the calls' gpu_raw.tar.gz in order into one raw folder (later
    files win); each call's steps.tsv is kept as steps.N.tsv (later rows win)."""
    tmp = tempfile.mkdtemp(prefix="gpu_report_")
    raw = os.path.join(tmp, "raw")
    os.makedirs(raw)
    for i, t in enumerate(tars):
        with tarfile.open(t) as tf:
            members = [m for m in tf.getmembers() if m.isfile() and m.name.startswith("raw/") and ".." not in m.name]
            for m in members:
                m.name = os.path.basename(m.name)
                if m.name == "steps.tsv":
                    m.name = f"steps.{i:02d}.tsv"
                # a check that did not run (its test was not in that call) keeps an earlier call's verdict
                if m.name.endswith("_check.txt") and os.path.exists(os.path.join(raw, m.name)) and \
                        tf.extractfile(m).read().startswith(b"no dump"):
                    continue
                tf.extract(m, raw)
    return report(raw, out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--raw", help="a run's raw folder (steps.tsv and the steps' JSON)")
    ap.add_argument("--merge-raw", nargs="+", metavar="TAR", help="gpu_raw.tar.gz of several calls, in order")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.merge_raw:
        return merge_raw(a.merge_raw, a.out)
    if not a.raw:
        ap.error("--raw or --merge-raw")
    return report(a.raw, a.out)


if __name__ == "__main__":
    sys.exit(main())
