#!/usr/bin/env python3
"""Write safetensors files with the reference implementation, for
tests/runtime/test_safetensors.c to read.

Run from the repository root:
    python tools/make_safetensors_fixture.py
(made with safetensors 0.8.0, torch 2.15.0 CPU). Writes
    tests/fixtures/safetensors/reference.safetensors
        every dtype mambert has (F64 F32 BF16 F16 F8_E4M3 F8_E5M2 I64 I32 I16
        I8 U8 BOOL), a 0-dim and an empty tensor, metadata {"format": "pt"};
        with one metadata key its bytes are fully determined, so the C test
        also checks that our writer reproduces them exactly.
    tests/fixtures/safetensors/reference_metadata.safetensors
        several metadata keys (non-ASCII included) and one tensor.
Element values follow formulas the C test recomputes: element i (row-major)
of a float tensor is (i - 3) / 4, of a signed integer tensor i - 3, of an
unsigned one i, of a bool one i % 2 == 1; "scalar" holds 42.5.
"""
import os

import torch
from safetensors.torch import save_file

OUT = os.path.join("tests", "fixtures", "safetensors")


def floats(shape, dtype):
    n = 1
    for d in shape:
        n *= d
    return ((torch.arange(n, dtype=torch.float64) - 3) / 4).reshape(shape).to(dtype)


def ints(shape, dtype, signed=True):
    n = 1
    for d in shape:
        n *= d
    v = torch.arange(n, dtype=torch.int64) - (3 if signed else 0)
    return v.reshape(shape).to(dtype)


def main():
    os.makedirs(OUT, exist_ok=True)
    tensors = {
        "f64": floats([2, 3], torch.float64),
        "f32": floats([2, 3], torch.float32),
        "layer.0.weight": floats([2, 2], torch.float32),
        "bf16": floats([3], torch.bfloat16),
        "f16": floats([2, 2], torch.float16),
        "e4m3": floats([5], torch.float8_e4m3fn),
        "e5m2": floats([5], torch.float8_e5m2),
        "i64": ints([5], torch.int64),
        "position_ids": ints([1, 4], torch.int64, signed=False),
        "i32": ints([2, 2], torch.int32),
        "i16": ints([3], torch.int16),
        "i8": ints([3], torch.int8),
        "u8": ints([3], torch.uint8, signed=False),
        "bool": (torch.arange(4) % 2 == 1),
        "scalar": torch.tensor(42.5, dtype=torch.float32),
        "empty": torch.zeros([0, 3], dtype=torch.float32),
    }
    save_file(tensors, os.path.join(OUT, "reference.safetensors"), metadata={"format": "pt"})
    save_file(
        {"x": floats([2], torch.float32)},
        os.path.join(OUT, "reference_metadata.safetensors"),
        metadata={"format": "pt", "source": "tools/make_safetensors_fixture.py", "note": "caf\u00e9 \u2713"},
    )


if __name__ == "__main__":
    main()
