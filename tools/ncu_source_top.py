#!/usr/bin/env python3
"""ncu_source_top.py: the instructions that cost, from Nsight Compute's
source page (`ncu --import R.ncu-rep --page source --print-source sass
--csv`): for each kernel in the CSV and each counter that points at a
culprit (excess L2 sectors of global accesses: uncoalesced; excess shared
wavefronts: bank conflicts; warp stall samples: where time goes), the top
instructions with their share of the kernel's total. Standard library
only: it runs on the GPU machine right after the profile
(tools/gpu_check.sh profile), and here on a saved CSV.

    python3 tools/ncu_source_top.py profile_scan_sass.csv [--top 12]

Column names differ between Nsight Compute versions, so columns are found by
pattern; a CSV with none of them prints its header, to adapt the patterns.
"""
import argparse
import csv
import re
import sys

# (label, pattern on the column name); the first column matching each wins
COUNTERS = [
    ("excess global sectors (uncoalesced)", r"Sectors.*Global.*Excessive|Excessive.*Sectors"),
    ("excess shared wavefronts (bank conflicts)", r"Wavefronts.*Shared.*Excessive|Shared.*Excessive"),
    ("stall samples (all)", r"Warp Stall Sampling \(All"),
    ("stall samples (not issued)", r"Warp Stall Sampling \(Not"),
]


def number(text):
    try:
        return float(str(text).replace(",", ""))
    except ValueError:
        return 0.0


def tables(rows):
    """(title, header, data rows) per kernel: a header is a row naming both
    an address and a source column; rows of one or two cells before it are
    the title (the kernel's name)."""
    title, header, data, out = "", None, [], []
    for r in rows:
        cells = [c.strip() for c in r]
        if any(re.fullmatch(r"#?\s*Address", c) for c in cells) and "Source" in cells:
            if header:
                out.append((title, header, data))
            header, data = cells, []
            continue
        if header is None or len([c for c in cells if c]) <= 2:
            if any(cells):
                if header:
                    out.append((title, header, data))
                    header, data = None, []
                title = " ".join(c for c in cells if c)
            continue
        data.append(cells)
    if header:
        out.append((title, header, data))
    return out


def report(path, top):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    found = tables(rows)
    if not found:
        print(f"ncu_source_top: no source table in {path} (first line: {rows[0] if rows else 'empty'})")
        return 1
    for title, header, data in found:
        src = header.index("Source")
        addr = next(i for i, c in enumerate(header) if re.fullmatch(r"#?\s*Address", c))
        print(f"\n== {title or 'kernel'}: {len(data)} SASS instructions")
        shown = 0
        for label, pat in COUNTERS:
            col = next((i for i, c in enumerate(header) if re.search(pat, c)), None)
            if col is None:
                continue
            vals = [(number(r[col]) if col < len(r) else 0.0, r) for r in data]
            total = sum(v for v, _ in vals)
            if total <= 0:
                print(f"-- {label} [{header[col]}]: 0")
                continue
            shown += 1
            print(f"-- {label} [{header[col]}]: total {total:.4g}; top {top}:")
            for v, r in sorted(vals, key=lambda x: -x[0])[:top]:
                if v <= 0:
                    break
                print(f"   {100 * v / total:5.1f}%  {r[addr]:>8}  {r[src][:100]}")
        # what the sampled warps were waiting on, over the whole kernel
        stalls = []
        for i, c in enumerate(header):
            if c.startswith("stall_") and "not_issued" not in c.lower() and "Not Issued" not in c:
                stalls.append((sum(number(r[i]) for r in data if i < len(r)), c[6:]))
        total = sum(v for v, _ in stalls)
        if total > 0:
            shown += 1
            print("-- stall reasons (share of samples): " +
                  ", ".join(f"{n} {100 * v / total:.0f}%" for v, n in sorted(stalls, reverse=True)[:8] if v > 0))
        if not shown:
            print("   none of the counters found; columns: " + " | ".join(header))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv")
    ap.add_argument("--top", type=int, default=12)
    a = ap.parse_args()
    return report(a.csv, a.top)


if __name__ == "__main__":
    sys.exit(main())
