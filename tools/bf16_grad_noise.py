#!/usr/bin/env python3
"""bf16_grad_noise.py: how far bf16 moves the gradients of the small random
BERT of tests/cuda/test_cuda_models.c (hidden 128, 2 layers, 2 heads, MLP 256,
batch of lengths 48/17/1/33) from float64, in PyTorch on the CPU: autocast bf16
(f32 weights, bf16 matmuls) and the whole model in bf16, relative L2 error over
all gradients, 5 seeds. It sizes cuda_models' bf16 gradient bound: the
problem itself, not the kernels, sets that noise floor.
Usage: python3 tools/bf16_grad_noise.py (needs torch and transformers)."""
import torch, math
from transformers import BertConfig, BertForSequenceClassification
torch.manual_seed(0)
cfg = BertConfig(vocab_size=100, hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256,
                 max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=2)
B, L = 4, 48
lens = [48, 17, 1, 33]
g = torch.Generator().manual_seed(1)
ids = torch.randint(5, 95, (B, L), generator=g)
mask = torch.zeros(B, L, dtype=torch.long)
for b, n in enumerate(lens):
    mask[b, :n] = 1
    ids[b, n:] = 0
ids[:, 0] = 2
lab = torch.tensor([1, 0, 1, 0])
def grads(model, dtype=None, autocast=False):
    model.zero_grad()
    if autocast:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(input_ids=ids, attention_mask=mask, labels=lab)
    else:
        out = model(input_ids=ids, attention_mask=mask, labels=lab)
    out.loss.backward()
    return {n: p.grad.detach().double().clone() for n, p in model.named_parameters() if p.grad is not None}
errs = []
for seed in range(5):
    torch.manual_seed(seed)
    m = BertForSequenceClassification(cfg).double()
    ref = grads(m)
    m32 = BertForSequenceClassification(cfg); m32.load_state_dict({k: v.float() for k, v in m.state_dict().items()})
    ac = grads(m32, autocast=True)
    mb = BertForSequenceClassification(cfg); mb.load_state_dict({k: v.float() for k, v in m.state_dict().items()}); mb = mb.to(torch.bfloat16)
    pb = grads(mb)
    def rel(x):
        num = sum(((x[k] - ref[k]) ** 2).sum() for k in ref); den = sum((ref[k] ** 2).sum() for k in ref)
        return math.sqrt(num / den)
    errs.append((rel(ac), rel(pb)))
    print(f"seed {seed}: autocast bf16 {errs[-1][0]:.3e}  pure bf16 {errs[-1][1]:.3e}")
