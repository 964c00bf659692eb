#!/usr/bin/env python3
"""check_tensorboard.py RUN_DIR [RUN_DIR ...]: read a mambert run's
TensorBoard event files with TensorBoard's own reader and compare every
scalar with metrics.jsonl.

Checks: every record's framing and masked CRC32C (TensorBoard's record
reader verifies both and raises on a mismatch), the file_version event
first, that each (tag, step) in the event files equals the JSON line's value
(to float32 precision), and that after a resume (SessionLog START) the
steps TensorBoard keeps are exactly those of metrics.jsonl.

Run with a Python that has tensorboard (a virtual environment outside the repo):
    python tools/check_tensorboard.py runs/demo-bert
Exit 0 when everything matches; prints a summary per run directory."""
import glob
import json
import math
import os
import sys

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat.proto import event_pb2


def raw_events(path):
    """Every Event of one file, through TensorBoard's CRC-checking reader."""
    from tensorboard.backend.event_processing import event_file_loader

    return list(event_file_loader.RawEventFileLoader(path).Load())


def check_run(run_dir):
    files = sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*")))
    if not files:
        return [f"{run_dir}: no event files"]
    problems = []
    n_records = 0
    for f in files:
        recs = raw_events(f)
        n_records += len(recs)
        first = event_pb2.Event.FromString(recs[0])
        if first.file_version != "brain.Event:2":
            problems.append(f"{f}: first event is not file_version brain.Event:2")
    # what TensorBoard shows (purges after SessionLog START applied)
    acc = event_accumulator.EventAccumulator(run_dir, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    tb = {}
    for tag in acc.Tags()["scalars"]:
        for ev in acc.Scalars(tag):
            if (tag, ev.step) in tb:  # a resume whose START event did not purge what the killed run logged
                problems.append(f"{run_dir}: {tag} step {ev.step} twice in TensorBoard")
            tb[(tag, ev.step)] = ev.value
    js = {}
    with open(os.path.join(run_dir, "metrics.jsonl")) as fh:
        for line in fh:
            d = json.loads(line)
            for k, v in d.items():
                if k in ("kind", "step", "time") or v is None:
                    continue
                js[(f"{d['kind']}/{k}", d["step"])] = v
    for key, v in js.items():
        if key not in tb:
            problems.append(f"{run_dir}: {key} in metrics.jsonl but not in TensorBoard")
        elif not math.isclose(tb[key], v, rel_tol=1e-6, abs_tol=1e-30) and abs(tb[key] - v) > 1e-7 * max(1, abs(v)):
            problems.append(f"{run_dir}: {key}: TensorBoard {tb[key]} vs metrics.jsonl {v}")
    for key in tb:
        if key not in js:
            problems.append(f"{run_dir}: {key} in TensorBoard but not in metrics.jsonl")
    tags = sorted({t for t, _ in tb})
    print(f"{run_dir}: {len(files)} event file(s), {n_records} records (CRC checked), {len(tags)} tags, "
          f"{len(tb)} points; metrics.jsonl {len(js)} values: {'match' if not problems else 'MISMATCH'}")
    return problems


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    problems = []
    for d in sys.argv[1:]:
        problems += check_run(d)
    for p in problems[:20]:
        print("  " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
