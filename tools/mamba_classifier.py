#!/usr/bin/env python3
"""Load a mambert Mamba classifier export (or the reference checkpoint,
trinhxuankhai/mamba_text_classification, after convert_bin_to_safetensors.py)
with transformers alone: transformers' MambaModel as the backbone (its CPU
path works without mamba_ssm or CUDA) plus the reference head
(../shared/MODELS.md 4.4).

The reference classifier's own class, MambaTextClassification, is tutorial
code on top of mamba_ssm (CUDA only) and is not in transformers. Its
from_pretrained reads config.json (mamba_ssm's MambaConfig: mambert writes
exactly that form) and pytorch_model.bin with the names
backbone.embedding.weight, backbone.layers.{i}.*, backbone.norm_f.weight,
classification_head.classification_head.{weight,bias} (mambert's
model.safetensors uses those names); --write-bin below writes that
pytorch_model.bin for users of the reference class.

Usage as a library:
    import sys; sys.path.insert(0, "tools")
    from mamba_classifier import MambaTextClassifier
    model, tok = MambaTextClassifier.from_pretrained("exports/imdb-mamba")
    enc = tok(["a great movie", "dull"], return_tensors="pt", padding=True)
    logits = model(enc["input_ids"], enc["attention_mask"])  # the mask: masked_mean pooling needs it

Usage from the shell:
    python tools/mamba_classifier.py DIR "text" ...   # label and probability
    python tools/mamba_classifier.py DIR --write-bin  # DIR/pytorch_model.bin

Files read: DIR/config.json (mamba_ssm MambaConfig form, or HF MambaConfig),
DIR/classifier.json (num_labels, id2label, pooling; optional: else 2 labels
and the reference's mean over all positions), DIR/model.safetensors,
DIR/tokenizer.json + tokenizer_config.json (AutoTokenizer).
Tested with torch 2.15.0, transformers 5.24.0.
"""
import json
import math
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, MambaConfig, MambaModel


def hf_config(cfg):
    """An HF MambaConfig from either config.json form."""
    if cfg.get("model_type") == "mamba":
        return MambaConfig(**{k: v for k, v in cfg.items() if k not in ("architectures",)})
    ssm = cfg.get("ssm_cfg") or {}
    for unsupported in ("layer",):
        if ssm.get(unsupported, "Mamba1") != "Mamba1":
            raise ValueError(f"ssm_cfg.{unsupported}={ssm[unsupported]} is not supported")
    d_model = cfg["d_model"]
    vocab = cfg["vocab_size"]
    mult = cfg.get("pad_vocab_size_multiple", 8)
    if vocab % mult:
        vocab += mult - vocab % mult
    dt_rank = ssm.get("dt_rank", "auto")
    return MambaConfig(
        hidden_size=d_model, num_hidden_layers=cfg["n_layer"], vocab_size=vocab,
        state_size=ssm.get("d_state", 16), conv_kernel=ssm.get("d_conv", 4), expand=ssm.get("expand", 2),
        time_step_rank=math.ceil(d_model / 16) if dt_rank == "auto" else dt_rank,
        use_bias=ssm.get("bias", False), use_conv_bias=ssm.get("conv_bias", True),
        layer_norm_epsilon=cfg.get("norm_epsilon", 1e-5), residual_in_fp32=True,
        pad_token_id=0, bos_token_id=0, eos_token_id=0)


class MambaTextClassifier(torch.nn.Module):
    def __init__(self, config, num_labels=2, pooling="mean", id2label=None):
        super().__init__()
        self.backbone = MambaModel(config)
        self.classification_head = torch.nn.Linear(config.hidden_size, num_labels)
        self.pooling = pooling
        self.id2label = id2label or {i: f"LABEL_{i}" for i in range(num_labels)}

    def forward(self, input_ids, attention_mask=None):
        # without a mask, padding would be averaged in silently: the token ids
        # cannot tell it (the pad id is <|endoftext|>, which texts may hold)
        if self.pooling == "masked_mean" and attention_mask is None:
            raise ValueError("this classifier pools with masked_mean (classifier.json): pass attention_mask, "
                             "e.g. model(enc[\"input_ids\"], enc[\"attention_mask\"])")
        # no mask into the backbone: the reference ignores it (right padding
        # cannot reach earlier positions of a causal model anyway)
        h = self.backbone(input_ids=input_ids).last_hidden_state
        if self.pooling == "masked_mean":
            m = attention_mask.to(h.dtype).unsqueeze(-1)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)
        else:
            pooled = h.mean(dim=1)  # the reference: every position, padding included
        return self.classification_head(pooled)

    @classmethod
    def from_pretrained(cls, path, with_tokenizer=True):
        with open(os.path.join(path, "config.json")) as f:
            cfg = json.load(f)
        extra = {}
        p = os.path.join(path, "classifier.json")
        if os.path.exists(p):
            with open(p) as f:
                extra = json.load(f)
        if "norm_epsilon" in extra:
            cfg["norm_epsilon"] = extra["norm_epsilon"]
        config = hf_config(cfg)
        sd = load_file(os.path.join(path, "model.safetensors"))
        head = next((k for k in sd if k.endswith("weight") and (k.startswith("classification_head")
                                                                  or k.startswith("classifier"))), None)
        num_labels = extra.get("num_labels") or (sd[head].shape[0] if head else 2)
        id2label = {int(k): v for k, v in (extra.get("id2label") or cfg.get("id2label") or {}).items()} or None
        model = cls(config, num_labels, extra.get("pooling", "mean"), id2label)
        renamed = {}
        for k, v in sd.items():
            k2 = k if k.startswith("backbone.") or k.startswith("classification_head") or k.startswith("classifier") \
                else "backbone." + k
            k2 = k2.replace("backbone.embedding.", "backbone.embeddings.")
            k2 = k2.replace("classification_head.classification_head.", "classification_head.")
            k2 = k2.replace("classifier.", "classification_head.")
            renamed[k2] = v
        missing, unexpected = model.load_state_dict(renamed, strict=False)
        if missing or unexpected:
            raise ValueError(f"{path}: missing {missing}, unexpected {unexpected}")
        model.eval()
        tok = AutoTokenizer.from_pretrained(path) if with_tokenizer else None
        return model, tok

    def reference_state_dict(self):
        """The names of mamba_ssm's MambaTextClassification (the reference)."""
        out = {}
        for k, v in self.state_dict().items():
            k = k.replace("backbone.embeddings.", "backbone.embedding.")
            k = k.replace("classification_head.", "classification_head.classification_head.")
            out[k] = v.contiguous()
        return out


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    path = sys.argv[1]
    model, tok = MambaTextClassifier.from_pretrained(path, with_tokenizer=sys.argv[2] != "--write-bin")
    if sys.argv[2] == "--write-bin":
        torch.save(model.reference_state_dict(), os.path.join(path, "pytorch_model.bin"))
        print(f"wrote {os.path.join(path, 'pytorch_model.bin')}")
        return
    with torch.no_grad():
        for text in sys.argv[2:]:
            enc = tok(text, return_tensors="pt")
            p = torch.softmax(model(enc["input_ids"], enc["attention_mask"])[0].double(), -1)
            k = int(p.argmax())
            print(f"{model.id2label.get(k, f'LABEL_{k}')}\t{p[k]:.4f}\t{text[:60]}")


if __name__ == "__main__":
    main()
