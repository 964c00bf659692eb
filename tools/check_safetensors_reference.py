#!/usr/bin/env python3
"""Check that files written by mambert's safetensors writer load in the
reference implementation, with the right dtypes, shapes, values and metadata,
and that the reference writer, given the same tensors, writes the same header
(up to the order of metadata keys, which it takes from a hash map) and the
same data bytes.

Run from the repository root:
    python tools/check_safetensors_reference.py \
        [tests/fixtures/safetensors/mambert_written.safetensors]
(checked with safetensors 0.8.0, torch 2.15.0 CPU). The default file is
written by tests/runtime/test_safetensors.c (MAMBERT_REGEN_FIXTURES=1); the
expected content below mirrors WRITTEN[] there. Prints one line per tensor
and exits non-zero on any difference.
"""
import json
import struct
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save

PATH = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/safetensors/mambert_written.safetensors"

# name -> (torch dtype, shape); values: element i of a float tensor is
# (i - 3) / 4, of a signed integer i - 3, of an unsigned one i, of bool i % 2 == 1.
EXPECTED = {
    "embeddings.word_embeddings.weight": (torch.float32, [4, 3]),
    "h.0.norm.weight": (torch.bfloat16, [3]),
    "h.0.scale_e4m3": (torch.float8_e4m3fn, [5]),
    "h.0.grad_e5m2": (torch.float8_e5m2, [5]),
    "half": (torch.float16, [2, 2]),
    "double": (torch.float64, [3]),
    "ids": (torch.int64, [2, 2]),
    "mask": (torch.bool, [5]),
    "u8": (torch.uint8, [3]),
    "i8": (torch.int8, [3]),
    "i16": (torch.int16, [3]),
    "u16": (torch.uint16, [2]),
    "i32": (torch.int32, [3]),
    "u32": (torch.uint32, [2]),
    "u64": (torch.uint64, [2]),
    "scalar": (torch.float32, []),
    "empty": (torch.float16, [0]),
    "empty3": (torch.int32, [3, 0, 2]),
    "deep": (torch.float32, [1, 1, 1, 1, 1, 1, 1, 2]),
    "\u540d\u524d": (torch.float32, [1]),
}
METADATA = {"format": "pt", "producer": "mambert", "note": "caf\u00e9 \u2713"}
SIGNED = {torch.int8, torch.int16, torch.int32, torch.int64}


def expected_values(dtype, n):
    i = list(range(n))
    if dtype == torch.bool:
        return [k % 2 == 1 for k in i]
    if dtype.is_floating_point:
        return [(k - 3) / 4 for k in i]
    if dtype in SIGNED:
        return [k - 3 for k in i]
    return i


def as_list(t):
    flat = t.reshape(-1)
    if t.dtype.is_floating_point:
        return flat.to(torch.float64).tolist()
    if t.dtype in (torch.uint16, torch.uint32, torch.uint64):
        # few ops exist for these; go through their bytes
        return [int.from_bytes(bytes(b), "little") for b in flat.view(torch.uint8).reshape(-1, t.element_size()).tolist()]
    return flat.tolist()


def main():
    bad = 0
    loaded = {}
    with safe_open(PATH, framework="pt") as f:
        meta = f.metadata()
        if meta != METADATA:
            print(f"metadata {meta!r} != {METADATA!r}")
            bad += 1
        names = set(f.keys())
        if names != set(EXPECTED):
            print(f"names differ: extra {names - set(EXPECTED)}, missing {set(EXPECTED) - names}")
            bad += 1
        for name, (dtype, shape) in EXPECTED.items():
            t = f.get_tensor(name)
            loaded[name] = t
            ok = t.dtype == dtype and list(t.shape) == shape
            ok = ok and as_list(t) == expected_values(dtype, t.numel())
            print(f"{'ok  ' if ok else 'BAD '} {name!r:40} {str(t.dtype):22} {list(t.shape)}")
            bad += not ok

    ours = open(PATH, "rb").read()
    theirs = save(loaded, metadata=METADATA)
    n_ours, n_theirs = struct.unpack("<Q", ours[:8])[0], struct.unpack("<Q", theirs[:8])[0]
    h_ours, h_theirs = ours[8 : 8 + n_ours], theirs[8 : 8 + n_theirs]
    same_header = n_ours == n_theirs and json.loads(h_ours) == json.loads(h_theirs)
    # tensor order in the header (JSON object order) must match too
    order = lambda h: [k for k in json.loads(h) if k != "__metadata__"]
    same_order = order(h_ours) == order(h_theirs)
    same_data = ours[8 + n_ours :] == theirs[8 + n_theirs :]
    print(f"reference writer: header equal {same_header}, tensor order equal {same_order}, data equal {same_data}")
    bad += not (same_header and same_order and same_data)
    print("PASS" if bad == 0 else f"FAIL ({bad} problems)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
