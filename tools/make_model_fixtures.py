#!/usr/bin/env python3
"""Parity fixtures for mambert's BERT and Mamba classifiers
(tests/models/test_parity.c).

Run from the repository root:
    HF_HUB_OFFLINE=1 python tools/make_model_fixtures.py
(made with torch 2.15.0 CPU, transformers 5.24.0, tokenizers 0.23.3,
safetensors 0.8.0). Deterministic (fixed seeds).

Writes one directory per configuration under tests/fixtures/models/:
    bert_tiny   2 layers, hidden 64, 4 heads, intermediate 128, vocab 100
                (with a 100-entry vocab.txt), 2 labels; HF names.
    bert_odd    3 layers, hidden 48, 3 heads, intermediate 100, vocab 97,
                3 labels; names without the "bert." prefix, LayerNorm
                gamma/beta, and a position_ids buffer (the variants old
                checkpoints have).
    mamba_tiny  mamba_ssm config form: d_model 64, 2 layers, d_state 16,
                d_conv 4, expand 2, vocab 300 (a 300-id byte-level BPE
                tokenizer.json) padded to 304; the reference classifier's
                names (backbone.embedding, classification_head.
                classification_head); 2 labels.
    mamba_odd   HF MambaConfig form: hidden 40, 3 layers, state 5,
                conv_kernel 3, expand 3, time_step_rank 7, vocab 97,
                in/out_proj biases; HF names (backbone.embeddings) and a
                "classifier." head; 3 labels.
Each holds config.json, model.safetensors (f32 weights: the transformers
initialisation plus noise, so LayerNorm/RMSNorm weights and biases are not
1/0) and reference.safetensors:
    input_ids i32 [B, L], attention_mask i32 [B, L] (right padding with the
    pad id 0), labels i32 [B], logits f32 [B, C], loss f32 [],
    grad.<canonical parameter name> f32 (mambert's names), and
    logits_torch_f32 / loss_torch_f32: the same model run in float32.
The reference values are computed in float64 from the stored f32 weights
(model.double()), so a test measures mambert's own float32 error;
torch's float32 error on the same inputs is printed for comparison.

BERT: transformers' BertForSequenceClassification, eager attention, eval
mode (no dropout); loss = cross-entropy mean.
Mamba: transformers' MambaModel on CPU (its slow path, sequential scan; in
float64 its few internal .float() casts keep dB*u in f32), no attention
mask passed (the reference classifier ignores it), then as ../shared/MODELS.md 4.4:
logits = head(mean over ALL L positions of the final RMSNorm output). The
script cross-checks that against a direct implementation of MODELS.md 4.2-4.3
(selective_scan_ref semantics) in float64.
"""
import json
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import BertConfig, BertForSequenceClassification, MambaConfig, MambaModel

OUT = os.path.join("tests", "fixtures", "models")

BERT_WORDS = ("the a an and or but of to in on at for with is was are were be been it this that "
              "movie film story plot actor actors acting good great bad awful boring fun funny love "
              "loved hate hated best worst not very really just so too much more most well time "
              "one two scene scenes end character characters watch watched see seen like make made "
              "i you he she we they . , ! ? ' - ##s ##ed ##ing ##ly ##er").split()


def bert_vocab(n):
    v = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + BERT_WORDS
    assert len(v) <= n, len(v)
    v += [f"[unused{i}]" for i in range(n - len(v))]
    return v


def perturb(model, gen, scale):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("A_log") or name.endswith(".D"):
                p.add_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.add_(scale * torch.randn(p.shape, generator=gen))


def padded_inputs(gen, lengths, L, vocab, first=None, last=None):
    B = len(lengths)
    ids = torch.zeros(B, L, dtype=torch.long)
    mask = torch.zeros(B, L, dtype=torch.long)
    for b, n in enumerate(lengths):
        ids[b, :n] = torch.randint(5 if first is not None else 1, vocab, (n,), generator=gen)
        if first is not None:
            ids[b, 0] = first
            ids[b, n - 1] = last
        mask[b, :n] = 1
    return ids, mask


def rel_err(a, b):
    return (a - b).abs().max().item() / max(b.abs().max().item(), 1e-30)


def save_dir(name, config_json, weights, extra_files, ref):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config_json, f, indent=2, sort_keys=True)
        f.write("\n")
    save_file({k: v.contiguous() for k, v in weights.items()}, os.path.join(d, "model.safetensors"),
              metadata={"format": "pt"})
    for fname, text in extra_files.items():
        with open(os.path.join(d, fname), "w") as f:
            f.write(text)
    save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(d, "reference.safetensors"))
    sizes = {f: os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)}
    print(f"  wrote {d}: " + ", ".join(f"{f} {s / 1024:.0f} KiB" for f, s in sorted(sizes.items())))


def run_and_grads(forward, model, labels):
    model.zero_grad()
    logits = forward()
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    return logits.detach(), loss.detach(), grads


# ---------------------------------------------------------------- BERT

def make_bert(name, seed, cfg, lengths, L, num_labels, variant):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    config = BertConfig(num_labels=num_labels, attn_implementation="eager", **cfg)
    model = BertForSequenceClassification(config).eval()
    perturb(model, gen, 0.05)
    ids, mask = padded_inputs(gen, lengths, L, cfg["vocab_size"], first=2, last=3)
    labels = torch.randint(0, num_labels, (len(lengths),), generator=gen)

    def fwd(m, dt):
        return lambda: m(input_ids=ids, attention_mask=mask).logits

    m32 = model
    l32, loss32, _ = run_and_grads(fwd(m32, torch.float32), m32, labels)
    m64 = BertForSequenceClassification(config).eval()
    m64.load_state_dict(model.state_dict())
    m64 = m64.double()
    l64, loss64, g64 = run_and_grads(fwd(m64, torch.float64), m64, labels)
    print(f"{name}: torch f32 vs f64: logits {rel_err(l32.double(), l64):.2e}, "
          f"loss {abs(loss32.item() - loss64.item()) / abs(loss64.item()):.2e}")

    sd = {k: v for k, v in model.state_dict().items()}
    weights = {}
    for k, v in sd.items():
        if k.endswith("position_ids") or k.endswith("token_type_ids"):
            continue
        out = k
        if variant == "old":
            out = out[len("bert."):] if out.startswith("bert.") else out
            out = out.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        weights[out] = v.float()
    if variant == "old":
        weights["embeddings.position_ids"] = torch.arange(cfg["max_position_embeddings"]).unsqueeze(0)
    ref = {
        "input_ids": ids.int(), "attention_mask": mask.int(), "labels": labels.int(),
        "logits": l64.float(), "loss": loss64.float().reshape(()),
        "logits_torch_f32": l32, "loss_torch_f32": loss32.reshape(()),
    }
    for k, g in g64.items():
        ref["grad." + k] = g.float()
    cj = config.to_dict()
    cj = {k: v for k, v in cj.items() if k not in ("transformers_version", "_attn_implementation_autoset")}
    extra = {}
    if variant == "hf":
        extra["vocab.txt"] = "\n".join(bert_vocab(cfg["vocab_size"])) + "\n"
        extra["tokenizer_config.json"] = json.dumps({"do_lower_case": True, "model_max_length": 32}) + "\n"
    save_dir(name, cj, weights, extra, ref)


# ---------------------------------------------------------------- Mamba

def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def mamba_direct(sd, prefix, n_layer, eps, ids, dt_rank, d_state, d_conv, head_w, head_b):
    """MODELS.md 4.2-4.3 written out (float64), sequential selective scan."""
    r = sd[prefix + "embeddings.weight"][ids]
    for l in range(n_layer):
        p = f"{prefix}layers.{l}."
        u = rmsnorm(r, sd[p + "norm.weight"], eps)
        xz = u @ sd[p + "mixer.in_proj.weight"].T
        if p + "mixer.in_proj.bias" in sd:
            xz = xz + sd[p + "mixer.in_proj.bias"]
        E = xz.shape[-1] // 2
        x, z = xz[..., :E], xz[..., E:]
        w = sd[p + "mixer.conv1d.weight"][:, 0, :]  # [E, K]
        xp = F.pad(x.transpose(1, 2), (d_conv - 1, 0))
        xc = sum(w[:, k, None] * xp[:, :, k:k + x.shape[1]] for k in range(d_conv)).transpose(1, 2)
        if p + "mixer.conv1d.bias" in sd:
            xc = xc + sd[p + "mixer.conv1d.bias"]
        xc = F.silu(xc)
        dbl = xc @ sd[p + "mixer.x_proj.weight"].T
        dt, Bm, Cm = dbl[..., :dt_rank], dbl[..., dt_rank:dt_rank + d_state], dbl[..., dt_rank + d_state:]
        delta = F.softplus(dt @ sd[p + "mixer.dt_proj.weight"].T + sd[p + "mixer.dt_proj.bias"])
        A = -torch.exp(sd[p + "mixer.A_log"])
        h = torch.zeros(x.shape[0], E, d_state, dtype=x.dtype)
        ys = []
        for t in range(x.shape[1]):
            h = torch.exp(delta[:, t, :, None] * A) * h + delta[:, t, :, None] * Bm[:, t, None, :] * xc[:, t, :, None]
            ys.append((h * Cm[:, t, None, :]).sum(-1))
        y = torch.stack(ys, 1) + xc * sd[p + "mixer.D"]
        y = y * F.silu(z)
        o = y @ sd[p + "mixer.out_proj.weight"].T
        if p + "mixer.out_proj.bias" in sd:
            o = o + sd[p + "mixer.out_proj.bias"]
        r = r + o
    out = rmsnorm(r, sd[prefix + "norm_f.weight"], eps)
    return out.mean(1) @ head_w.T + head_b


class MambaClassifier(torch.nn.Module):
    """transformers' MambaModel backbone + the reference head (MODELS.md 4.4)."""

    def __init__(self, config, num_labels):
        super().__init__()
        self.backbone = MambaModel(config)
        self.classification_head = torch.nn.Linear(config.hidden_size, num_labels)

    def forward(self, ids):
        h = self.backbone(input_ids=ids).last_hidden_state
        return self.classification_head(h.mean(dim=1))


def train_bpe(vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    text = [" ".join(BERT_WORDS)] * 4 + [
        "This movie was great, I loved the acting and the story.",
        "The worst film I have ever seen: boring plot, bad actors.",
        "A really funny and well made movie. Watch it!",
        "Not good. Too long, and the end was awful.",
    ]
    tok.train_from_iterator(text, trainer)
    assert tok.get_vocab_size() == vocab_size, tok.get_vocab_size()
    return tok.to_str()


def make_mamba(name, seed, hf, lengths, L, num_labels, variant, ssm_form=None, tokenizer_json=None):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    config = MambaConfig(num_labels=num_labels, **hf)
    model = MambaClassifier(config, num_labels).eval()
    perturb(model, gen, 0.05)
    ids, _ = padded_inputs(gen, lengths, L, hf["vocab_size"])
    mask = (torch.arange(L)[None, :] < torch.tensor(lengths)[:, None]).long()
    labels = torch.randint(0, num_labels, (len(lengths),), generator=gen)

    l32, loss32, _ = run_and_grads(lambda: model(ids), model, labels)
    m64 = MambaClassifier(config, num_labels).eval()
    m64.load_state_dict(model.state_dict())
    m64 = m64.double()
    l64, loss64, g64 = run_and_grads(lambda: m64(ids), m64, labels)
    sd64 = {k: v.detach() for k, v in m64.state_dict().items()}
    direct = mamba_direct(sd64, "backbone.", hf["num_hidden_layers"], hf["layer_norm_epsilon"], ids,
                          config.time_step_rank, hf["state_size"], hf["conv_kernel"],
                          sd64["classification_head.weight"], sd64["classification_head.bias"])
    print(f"{name}: torch f32 vs f64: logits {rel_err(l32.double(), l64):.2e}, "
          f"loss {abs(loss32.item() - loss64.item()) / abs(loss64.item()):.2e}; "
          f"HF slow path f64 vs direct MODELS.md f64: {rel_err(l64, direct.detach()):.2e}")
    assert rel_err(l64, direct.detach()) < 1e-6

    def canonical(k):
        k = k.replace("backbone.embeddings.", "backbone.embedding.")
        return k.replace("classification_head.", "classification_head.classification_head.")

    weights = {}
    for k, v in model.state_dict().items():
        out = canonical(k) if variant == "reference" else k.replace("classification_head.", "classifier.")
        weights[out] = v.float()
    ref = {
        "input_ids": ids.int(), "attention_mask": mask.int(), "labels": labels.int(),
        "logits": l64.float(), "loss": loss64.float().reshape(()),
        "logits_torch_f32": l32, "loss_torch_f32": loss32.reshape(()),
    }
    for k, g in g64.items():
        ref["grad." + canonical(k)] = g.float()
    if variant == "reference":
        cj = ssm_form
    else:
        cj = {k: v for k, v in config.to_dict().items() if k not in ("transformers_version",)}
        cj["num_labels"] = num_labels
        cj["id2label"] = {str(i): f"LABEL_{i}" for i in range(num_labels)}
    extra = {"tokenizer.json": tokenizer_json} if tokenizer_json else {}
    save_dir(name, cj, weights, extra, ref)


def main():
    torch.set_num_threads(1)
    make_bert("bert_tiny", 1, dict(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   intermediate_size=128, max_position_embeddings=32, initializer_range=0.1),
              lengths=[12, 7, 3], L=12, num_labels=2, variant="hf")
    make_bert("bert_odd", 2, dict(vocab_size=97, hidden_size=48, num_hidden_layers=3, num_attention_heads=3,
                                  intermediate_size=100, max_position_embeddings=24, type_vocab_size=1,
                                  initializer_range=0.1, layer_norm_eps=1e-12),
              lengths=[9, 4, 9, 6], L=9, num_labels=3, variant="old")
    tok = train_bpe(300)
    make_mamba("mamba_tiny", 3,
               dict(vocab_size=304, hidden_size=64, num_hidden_layers=2, state_size=16, conv_kernel=4, expand=2,
                    layer_norm_epsilon=1e-5, use_bias=False, use_conv_bias=True),
               lengths=[12, 8, 5], L=12, num_labels=2, variant="reference",
               ssm_form={"d_model": 64, "n_layer": 2, "vocab_size": 300, "ssm_cfg": {}, "rms_norm": True,
                         "residual_in_fp32": True, "fused_add_norm": True, "pad_vocab_size_multiple": 8},
               tokenizer_json=tok)
    make_mamba("mamba_odd", 4,
               dict(vocab_size=97, hidden_size=40, num_hidden_layers=3, state_size=5, conv_kernel=3, expand=3,
                    time_step_rank=7, layer_norm_epsilon=1e-5, use_bias=True, use_conv_bias=False),
               lengths=[10, 10, 3, 7], L=10, num_labels=3, variant="hf")


if __name__ == "__main__":
    main()
