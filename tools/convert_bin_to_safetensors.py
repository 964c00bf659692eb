#!/usr/bin/env python3
"""Convert a PyTorch checkpoint (pytorch_model.bin) into model.safetensors,
the only weight format mambert reads.

The reference checkpoints ship .bin files only (../shared/MODELS.md):
textattack/bert-base-uncased-imdb (a legacy, pre-zip pickle from 2020),
WhitePeak/bert-base-cased-Korean-sentiment, trinhxuankhai/mamba_text_
classification and state-spaces/mamba-130m. Run this once per checkpoint:

    python tools/convert_bin_to_safetensors.py SRC OUT_DIR [options]

SRC is a directory holding pytorch_model.bin (or the shards listed by
pytorch_model.bin.index.json) or a .bin file itself. OUT_DIR receives
model.safetensors (metadata {"format": "pt"}, every tensor contiguous) plus
copies of the files mambert and transformers read next to it: config.json,
classifier.json, vocab.txt, tokenizer.json, tokenizer_config.json,
special_tokens_map.json, added_tokens.json (those that exist).

What it does to the tensors:
  * tensors that share storage (tied weights, e.g. state-spaces/mamba-130m's
    lm_head.weight and backbone.embedding.weight) are cloned: safetensors
    refuses shared storage;
  * a "module." prefix (a DataParallel save) is stripped; a checkpoint
    wrapped as {"state_dict": ...} or {"model": ...} is unwrapped;
  * non-tensor entries are dropped (listed);
  * --dtype float32 upcasts half-precision weights (default: keep dtypes;
    mambert converts F16/BF16 to f32 when it loads).
Names are kept as they are (mambert maps the known variants itself).

Options:
  --tokenizer FILE   also copy FILE into OUT_DIR under the name mambert looks
                     for: tokenizer.json (a .json tokenizer, e.g.
                     data/vocab/gpt-neox-20b-tokenizer.json for the Mamba
                     checkpoints, which ship none) or vocab.txt (a .txt
                     WordPiece vocabulary)
  --dtype float32    upcast floating tensors
Tested with torch 2.15.0 and safetensors 0.8.0 (tests: see the end of
models/README.md).
"""
import argparse
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file

SIDE_FILES = ["config.json", "classifier.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json", "added_tokens.json"]


def load_bin(path):
    # weights_only: no arbitrary code from the pickle; legacy (pre-1.6) files load too
    sd = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise SystemExit(f"{path}: not a state dict (got {type(sd).__name__})")
    return sd


def bin_files(src):
    if os.path.isfile(src):
        return [src], os.path.dirname(src) or "."
    index = os.path.join(src, "pytorch_model.bin.index.json")
    if os.path.exists(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        return [os.path.join(src, s) for s in shards], src
    path = os.path.join(src, "pytorch_model.bin")
    if not os.path.exists(path):
        raise SystemExit(f"{src}: no pytorch_model.bin or pytorch_model.bin.index.json")
    return [path], src


def tokenizer_name(path):
    """The name mambert reads a tokenizer file under in a model directory."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".json":
        return "tokenizer.json"
    if ext == ".txt":
        return "vocab.txt"
    raise SystemExit(f"--tokenizer {path}: expected a tokenizer .json or a vocab .txt")


def convert(src, out, tokenizer=None, dtype=None):
    tok_name = tokenizer_name(tokenizer) if tokenizer else None  # before any work
    files, src_dir = bin_files(src)
    merged, dropped = {}, []
    for path in files:
        for name, value in load_bin(path).items():
            if not torch.is_tensor(value):
                dropped.append(name)
                continue
            if name.startswith("module."):
                name = name[len("module."):]
            if name in merged:
                raise SystemExit(f"{path}: tensor {name} appears twice")
            merged[name] = value
    seen, shared = {}, 0
    tensors = {}
    for name, t in merged.items():
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if ptr is not None and ptr in seen:
            shared += 1
        if ptr is not None:
            seen.setdefault(ptr, name)
        # clone every tensor: contiguous, and no storage shared with another
        tensors[name] = t.detach().contiguous().clone()
    os.makedirs(out, exist_ok=True)
    target = os.path.join(out, "model.safetensors")
    tmp = target + ".tmp"
    save_file(tensors, tmp, metadata={"format": "pt"})
    os.replace(tmp, target)
    copied = []
    for f in SIDE_FILES:
        p = os.path.join(src_dir, f)
        if os.path.exists(p) and os.path.abspath(p) != os.path.abspath(os.path.join(out, f)):
            shutil.copyfile(p, os.path.join(out, f))
            copied.append(f)
    if tokenizer:
        shutil.copyfile(tokenizer, os.path.join(out, tok_name))
        copied.append(f"{tokenizer} as {tok_name}")
    n = sum(t.numel() for t in tensors.values())
    print(f"wrote {target}: {len(tensors)} tensors, {n:,} values"
          f"{f', {shared} shared tensors cloned' if shared else ''}")
    if dropped:
        print(f"  dropped non-tensor entries: {', '.join(dropped)}")
    if copied:
        print(f"  copied: {', '.join(copied)}")
    return tensors


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="directory with pytorch_model.bin (or its shards), or a .bin file")
    ap.add_argument("out", help="output directory")
    ap.add_argument("--tokenizer", help="a tokenizer file to copy along, as tokenizer.json (.json) or vocab.txt (.txt)")
    ap.add_argument("--dtype", choices=["float32"], help="upcast floating tensors")
    a = ap.parse_args()
    convert(a.src, a.out, a.tokenizer, torch.float32 if a.dtype == "float32" else None)


if __name__ == "__main__":
    sys.exit(main())
