#!/usr/bin/env python3
"""sass_loops.py: what a kernel's machine code does per loop iteration, read
off nvdisasm's output, for the kernels we cannot profile without a GPU.

For each kernel matching --kernel it prints the instruction mix of every
innermost loop (a backward branch to a label: the loop body is the code
between the label and the branch), the local-memory traffic (LDL/STL: spills)
inside and outside loops, and, for each run of global loads (LDG) outside
the loops, how many are issued before the first instruction that uses one
of their results: 1 means one load in flight at a time, i.e. one memory
latency per load, the pattern that made the first selective-scan kernels
~10x slower than their bounds (kernels/cuda/SCAN.md).

  nvcc -cubin -arch=sm_90a -O3 -I. -o scan.cubin kernels/cuda/selective_scan.cu
  nvdisasm -c scan.cubin > scan.sass        # nvdisasm: the CUDA toolkit's,
  tools/sass_loops.py scan.sass --kernel scan_fwd   # or pip nvidia-cuda-nvdisasm

It is a static reading (no timing, no dual issue, no latencies), meant to
compare two versions of a kernel and to check that a loop has no spills.
"""
import argparse
import collections
import json
import re
import sys

FUNC = re.compile(r"^\.text\.(\S+):\s*$")
INSN = re.compile(r"^\s+/\*([0-9a-f]+)\*/\s+(@!?U?P[0-9T]+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")
LABEL = re.compile(r"^(\.L_x_\d+):")
BRANCH_TARGET = re.compile(r"`\((\.L_x_\d+)\)")
REG = re.compile(r"\bR(\d+)\b")


def parse(path):
    """{kernel: [(kind, ...)]}: ('label', name) or ('insn', addr, pred, op, args)."""
    kernels, cur = {}, None
    with open(path) as f:
        for line in f:
            m = FUNC.match(line)
            if m:
                cur = kernels.setdefault(m.group(1), [])
                continue
            if cur is None:
                continue
            m = LABEL.match(line)
            if m:
                cur.append(("label", m.group(1)))
                continue
            m = INSN.match(line)
            if m:
                cur.append(("insn", int(m.group(1), 16), (m.group(2) or "").strip(), m.group(3), m.group(4)))
    return kernels


def loops(body, innermost=True):
    """Loops: (start index, end index) of label .. backward branch; only the
    innermost unless innermost is False."""
    where, found = {}, []
    for i, it in enumerate(body):
        if it[0] == "label":
            where[it[1]] = i
        elif it[3].startswith("BRA"):
            t = BRANCH_TARGET.search(it[4])
            if t and t.group(1) in where:
                found.append((where[t.group(1)], i))
    if not innermost:
        return sorted(set(found))
    # keep the innermost: drop a loop that contains another
    return [lp for lp in found if not any(o != lp and lp[0] <= o[0] and o[1] <= lp[1] for o in found)]


def base_op(op):
    return op.split(".")[0]


def mix(insns):
    c = collections.Counter(base_op(it[3]) for it in insns)
    return dict(c.most_common())


def load_runs(body, skip):
    """For global loads outside loops: runs of loads issued before any use of
    a loaded register. Returns the list of run lengths."""
    runs, pending, count = [], set(), 0
    for i, it in enumerate(body):
        if i in skip or it[0] != "insn":
            if it[0] == "label" and count:  # a branch target ends a straight-line run
                runs.append(count)
                pending, count = set(), 0
            continue
        op, args = it[3], it[4]
        regs = REG.findall(args)
        if op.startswith("LDG"):
            srcs = set(regs[1:])
            if pending & srcs:
                runs.append(count)
                pending, count = set(), 0
            if regs:
                pending.add(regs[0])
                if op.split(".")[-1] in ("64", "128"):
                    pending.add(str(int(regs[0]) + 1))
            count += 1
            continue
        # any instruction reading a pending register (sources are after the destination)
        srcs = set(regs[1:]) if not op.startswith(("ST", "BRA")) else set(regs)
        if count and pending & srcs:
            runs.append(count)
            pending, count = set(), 0
    if count:
        runs.append(count)
    return runs


def report(name, body, all_loops=False):
    insns = [it for it in body if it[0] == "insn"]
    lps = loops(body, innermost=not all_loops)
    in_loop = set()
    out = {"kernel": name, "instructions": len(insns), "loops": []}
    for a, b in lps:
        seg = [it for it in body[a:b + 1] if it[0] == "insn"]
        in_loop.update(range(a, b + 1))
        out["loops"].append({"first": hex(seg[0][1]) if seg else None, "instructions": len(seg), "mix": mix(seg)})
    outside = [it for i, it in enumerate(body) if it[0] == "insn" and i not in in_loop]
    out["spills_in_loops"] = sum(1 for i, it in enumerate(body) if i in in_loop and it[0] == "insn"
                                 and base_op(it[3]) in ("LDL", "STL"))
    out["spills_outside"] = sum(1 for it in outside if base_op(it[3]) in ("LDL", "STL"))
    runs = load_runs(body, in_loop)
    out["global_load_runs"] = runs
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sass", help="nvdisasm -c output")
    ap.add_argument("--kernel", default="", help="substring of the mangled kernel name")
    ap.add_argument("--min-loop", type=int, default=40, help="report loops of at least this many instructions")
    ap.add_argument("--all-loops", action="store_true", help="outer loops too (their counts include the inner ones)")
    ap.add_argument("--json", help="also write the reports here")
    a = ap.parse_args()
    ks = parse(a.sass)
    reports = []
    for name, body in ks.items():
        if a.kernel not in name:
            continue
        r = report(name, body, a.all_loops)
        r["loops"] = [lp for lp in r["loops"] if lp["instructions"] >= a.min_loop]
        reports.append(r)
        print(f"{name}: {r['instructions']} instructions; spills (LDL/STL) in loops {r['spills_in_loops']}, "
              f"outside {r['spills_outside']}")
        for lp in r["loops"]:
            top = ", ".join(f"{k} {v}" for k, v in list(lp["mix"].items())[:10])
            print(f"  loop at {lp['first']}: {lp['instructions']} instructions: {top}")
        runs = r["global_load_runs"]
        if runs:
            single = sum(1 for x in runs if x == 1)
            print(f"  global loads outside loops: {sum(runs)} in {len(runs)} runs (longest {max(runs)}; "
                  f"{single} loads alone, each waiting for its own latency)")
    if not reports:
        sys.exit(f"sass_loops: no kernel matching '{a.kernel}' in {a.sass}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(reports, f, indent=1)


if __name__ == "__main__":
    main()
