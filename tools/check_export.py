#!/usr/bin/env python3
"""Check that mambert's exports load in Python and give mambert's logits.

Run from the repository root after building:
    python tools/check_export.py [--mambert build/mambert] [--n 16]
(torch 2.15.0, transformers 5.24.0; offline). For each case it writes an
export with `mambert export`, labels N real reviews with
`mambert predict --json` (each review alone: packed batches), loads the
export in Python and compares:
  BERT:  BertForSequenceClassification.from_pretrained(DIR) and
         AutoTokenizer.from_pretrained(DIR), unchanged; each review alone and
         all of them as one padded batch with the attention mask.
  Mamba: tools/mamba_classifier.py (transformers' MambaModel + the reference
         head) and AutoTokenizer; each review alone (the reference pools over
         all positions, so a padded batch would differ by design).
It also checks that the Python tokenizer gives as many tokens as mambert's.
Cases: the parity fixtures bert_tiny and mamba_tiny (tiny vocabularies), and
random-initialised models with the real vocabularies of the study
(bert-base-uncased, bert-base-multilingual-cased on NSMC reviews, GPT-NeoX
for Mamba), so the tokenizer files of the export are exercised too.
Prints the largest |logit difference| per case; exits 1 above --tol.
"""
import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch
from transformers import AutoTokenizer, BertForSequenceClassification

from convert_bin_to_safetensors import convert
from mamba_classifier import MambaTextClassifier


def reviews(path, n, col):
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        k = header.index(col)
        for line in f:
            t = line.rstrip("\n").split("\t")[k]
            if t:
                out.append(t)
            if len(out) == n:
                break
    return out


def mambert(binary, *args):
    r = subprocess.run([binary, *args], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"mambert {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    return r.stdout


def ours(binary, model, texts, tmp):
    path = os.path.join(tmp, "texts.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(t.replace("\n", " ") + "\n" for t in texts))
    rows = [json.loads(l) for l in mambert(binary, "predict", "--model", model, "--json", "--file", path).splitlines()]
    return torch.tensor([r["logits"] for r in rows], dtype=torch.float64), [r["tokens"] for r in rows]


def check_bert(binary, export, texts, tmp):
    model = BertForSequenceClassification.from_pretrained(export).eval()
    tok = AutoTokenizer.from_pretrained(export)
    z, ntok = ours(binary, export, texts, tmp)
    maxlen = model.config.max_position_embeddings
    with torch.no_grad():
        alone, counts = [], []
        for t in texts:
            enc = tok(t, truncation=True, max_length=maxlen, return_tensors="pt")
            counts.append(enc["input_ids"].shape[1])
            alone.append(model(**enc).logits[0].double())
        alone = torch.stack(alone)
        enc = tok(texts, truncation=True, max_length=maxlen, padding=True, return_tensors="pt")
        batched = model(**enc).logits.double()
    return z, ntok, counts, {"alone": alone, "padded batch": batched}


def check_mamba(binary, export, texts, tmp):
    model, tok = MambaTextClassifier.from_pretrained(export)
    z, ntok = ours(binary, export, texts, tmp)
    with torch.no_grad():
        alone, counts = [], []
        for t in texts:
            enc = tok(t, return_tensors="pt")
            counts.append(enc["input_ids"].shape[1])
            alone.append(model(enc["input_ids"], enc["attention_mask"])[0].double())
    return z, ntok, counts, {"alone": torch.stack(alone)}


def write_config(tmp, name, cfg):
    path = os.path.join(tmp, name + ".json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path


def check_convert(binary, tmp, texts):
    """A pytorch_model.bin as the reference checkpoints ship them (legacy
    pickle, a "module." prefix, a tied tensor) converted with
    convert_bin_to_safetensors.py predicts exactly as the source."""
    from safetensors.torch import load_file
    src = "tests/fixtures/models/mamba_tiny"
    sd = {"module." + k: v for k, v in load_file(os.path.join(src, "model.safetensors")).items()}
    sd["module.lm_head.weight"] = sd["module.backbone.embedding.weight"]  # tied, as in mamba-130m
    bin_dir = os.path.join(tmp, "bin")
    os.makedirs(bin_dir)
    torch.save(sd, os.path.join(bin_dir, "pytorch_model.bin"), _use_new_zipfile_serialization=False)
    for f in ("config.json", "tokenizer.json"):
        with open(os.path.join(src, f), "rb") as a, open(os.path.join(bin_dir, f), "wb") as b:
            b.write(a.read())
    out = os.path.join(tmp, "converted")
    convert(bin_dir, out)
    # lm_head.weight is a pretraining head: mambert refuses it unless told to
    # start a fresh head, so drop it here to compare the classifier exactly
    conv = load_file(os.path.join(out, "model.safetensors"))
    assert conv["lm_head.weight"].data_ptr() != conv["backbone.embedding.weight"].data_ptr()
    del conv["lm_head.weight"]
    from safetensors.torch import save_file
    save_file(conv, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    a, _ = ours(binary, src, texts, tmp)
    b, _ = ours(binary, out, texts, tmp)
    d = (a - b).abs().max().item()
    print(f"convert_bin_to_safetensors (legacy pickle, module. prefix, tied tensor): predictions differ by {d:.1e}")
    return d


def main():
    ap = argparse.ArgumentParser(description="compare mambert exports with transformers")
    ap.add_argument("--mambert", default="build/mambert")
    ap.add_argument("--n", type=int, default=16, help="reviews per case")
    ap.add_argument("--tol", type=float, default=1e-4, help="max |logit difference| allowed")
    a = ap.parse_args()
    torch.set_num_threads(2)
    imdb = reviews("data/samples/imdb/test.tsv.gz", a.n, "text")
    nsmc = reviews("data/samples/nsmc/ratings_test.txt.gz", a.n, "document")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        worst = max(worst, check_convert(a.mambert, tmp, imdb[:4]))
        bert_small = dict(model_type="bert", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=128, max_position_embeddings=512, initializer_range=0.2)
        cases = [
            ("bert_tiny fixture", "bert", ["--model", "tests/fixtures/models/bert_tiny"], imdb),
            ("mamba_tiny fixture", "mamba", ["--model", "tests/fixtures/models/mamba_tiny"], imdb),
            ("BERT random init, bert-base-uncased vocab", "bert",
             ["--config", write_config(tmp, "bu", dict(bert_small, vocab_size=30522)),
              "--tokenizer", "data/vocab/bert-base-uncased-vocab.txt", "--seed", "11"], imdb),
            ("BERT random init, multilingual cased vocab (NSMC)", "bert",
             ["--config", write_config(tmp, "bm", dict(bert_small, vocab_size=119547, hidden_size=32,
                                                        num_attention_heads=2)),
              "--tokenizer", "data/vocab/bert-base-multilingual-cased-vocab.txt", "--seed", "12"], nsmc),
            ("Mamba random init, GPT-NeoX tokenizer", "mamba",
             ["--config", write_config(tmp, "mm", dict(d_model=64, n_layer=2, vocab_size=50277, ssm_cfg={},
                                                        rms_norm=True, residual_in_fp32=True, fused_add_norm=True,
                                                        pad_vocab_size_multiple=8)),
              "--tokenizer", "data/vocab/gpt-neox-20b-tokenizer.json", "--seed", "13", "--num-labels", "2"], imdb),
        ]
        for i, (name, arch, src, texts) in enumerate(cases):
            export = os.path.join(tmp, f"export{i}")
            mambert(a.mambert, "export", *src, "--out", export)
            check = check_bert if arch == "bert" else check_mamba
            z, ntok, counts, refs = check(a.mambert, export, texts, tmp)
            tok_ok = ntok == counts
            scale = max(1.0, z.abs().max().item())
            parts = []
            for what, r in refs.items():
                d = (z - r).abs().max().item()
                worst = max(worst, d / scale)
                parts.append(f"{what}: max |diff| {d:.2e}")
            same = (z.argmax(1) == refs["alone"].argmax(1)).all().item()
            print(f"{name}: {len(texts)} reviews, {sum(counts)} tokens "
                  f"({'same' if tok_ok else 'DIFFERENT'} token counts), |logits| <= {z.abs().max():.2f}; "
                  + "; ".join(parts) + f"; labels {'agree' if same else 'DIFFER'}")
            if not tok_ok:
                bad = [(j, x, y) for j, (x, y) in enumerate(zip(ntok, counts)) if x != y]
                print(f"  token counts differ (index, mambert, python): {bad[:5]}")
                worst = float("inf")
    print(f"largest difference relative to max(1, |logits|): {worst:.2e} (tolerance {a.tol:.0e})")
    return 0 if worst <= a.tol else 1


if __name__ == "__main__":
    sys.exit(main())
