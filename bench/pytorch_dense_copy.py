#!/usr/bin/python3
"""A plain PyTorch-Python copy of lory's dense model (the transformer plugin with the dense
router: RMSNorm pre-norm, RoPE causal attention, SwiGLU FFN, untied LM head), trained the way
eager PyTorch users write it: nn.Module, F.cross_entropy over full logits, torch.optim.AdamW.
It is the reference lory_bench_train's speeds are compared with (bench/train_throughput.sh
runs both in one go). Prints one line per shape: tokens/s, fp32 and (--bf16) CPU autocast bf16.

Usage: /usr/bin/python3 bench/pytorch_dense_copy.py [--threads N] [--steps N] [--bf16]
"""
import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F


class RMSNorm(torch.nn.Module):
    def __init__(self, width, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(width))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate(x, cos, sin):
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), -1) * sin


class Block(torch.nn.Module):
    def __init__(self, d_model, heads, d_ff, context):
        super().__init__()
        self.heads, self.head_width = heads, d_model // heads
        self.attention_norm, self.ffn_norm = RMSNorm(d_model), RMSNorm(d_model)
        self.qkv = torch.nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = torch.nn.Linear(d_model, d_model, bias=False)
        self.gate = torch.nn.Linear(d_model, d_ff, bias=False)
        self.up = torch.nn.Linear(d_model, d_ff, bias=False)
        self.down = torch.nn.Linear(d_ff, d_model, bias=False)
        half = self.head_width // 2
        inverse_frequency = 10000.0 ** (-torch.arange(0, half, dtype=torch.float64) * 2 / self.head_width)
        angles = torch.outer(torch.arange(context, dtype=torch.float64), inverse_frequency)
        angles = torch.cat((angles, angles), -1)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)
        self.register_buffer("mask", torch.ones(context, context, dtype=torch.bool).triu(1), persistent=False)

    def forward(self, x):
        B, L, D = x.shape
        q, k, v = self.qkv(self.attention_norm(x)).view(B, L, 3, self.heads, self.head_width).permute(2, 0, 3, 1, 4)
        q, k = rotate(q, self.cos[:L], self.sin[:L]), rotate(k, self.cos[:L], self.sin[:L])
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_width)
        scores = scores.masked_fill(self.mask[:L, :L], float("-inf"))
        attended = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(B, L, D)
        h = x + self.out(attended)
        f = self.ffn_norm(h)
        return h + self.down(F.silu(self.gate(f)) * self.up(f))


class DenseModel(torch.nn.Module):
    def __init__(self, vocab, d_model, layers, heads, d_ff, context):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, d_model)
        self.blocks = torch.nn.ModuleList(Block(d_model, heads, d_ff, context) for _ in range(layers))
        self.final_norm = RMSNorm(d_model)
        self.lm_head = torch.nn.Linear(d_model, vocab, bias=False)

    def forward(self, tokens):
        x = self.embedding(tokens)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.final_norm(x))


SHAPES = {  # name: vocab, d_model, layers, heads, d_ff, context, batch (lory_bench_train's shapes)
    "quickstart d128 V4096": (4096, 128, 4, 4, 352, 256, 16),
    "study d128 V8192": (8192, 128, 4, 4, 352, 256, 16),
    "d512 V4096": (4096, 512, 4, 8, 1408, 256, 8),
}


def seconds_per_step(shape, steps, bf16):
    vocab, d_model, layers, heads, d_ff, context, batch = shape
    torch.manual_seed(0)
    model = DenseModel(vocab, d_model, layers, heads, d_ff, context)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    tokens = torch.randint(vocab, (batch, context + 1))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(tokens[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, vocab).float(), tokens[:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times), batch * context


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--bf16", action="store_true", help="also CPU autocast to bfloat16")
    parser.add_argument("--shape", action="append", choices=sorted(SHAPES), help="only these shapes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"PyTorch {torch.__version__}, threads {args.threads}, median of {args.steps} steps")
    for name in args.shape or SHAPES:
        fp32, tokens = seconds_per_step(SHAPES[name], args.steps, False)
        line = f"pytorch-python {name:<22} fp32 {tokens / fp32:8.0f} tokens/s"
        if args.bf16:
            bf16, _ = seconds_per_step(SHAPES[name], args.steps, True)
            line += f"   autocast bf16 {tokens / bf16:8.0f} tokens/s"
        print(line, flush=True)


if __name__ == "__main__":
    main()
