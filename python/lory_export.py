"""Rebuild a model exported by `lory export` in plain PyTorch, from its folder alone.

    import lory_export
    model = lory_export.load("exported/")             # weights.pt + config.json
    positions, log_probs = model.score(token_ids)     # as `lory score` (sliding windows)
    logits = model(torch.tensor([token_ids]))         # [B, L, V]

Everything this needs is in config.json's "layout" (written by the model and router plugins):
tensor names and [out, in] layouts, the packed q/k/v rows, rotate-half RoPE, RMSNorm, SwiGLU,
and the routers' rules. Supported FFNs: dense, lory (segment and prompt rules), topk and
expert_choice (its causal token top-k inference rule); any other router through its own rebuild
function, `feed_forward(model, h_BLD, layer, tokens_BL, routing, prompt_length) -> y_BLD`, passed
as `load(export_dir, router=...)` or in a Python file given to `--router-module` (for example
examples/routers/hash/hash_export.py). Command line:

    /usr/bin/python3 python/lory_export.py EXPORT_DIR --token-ids FILE [--routing segment|prompt]
        [--prompt-length P] [--stride S] [--router-module FILE.py]

prints the "position<TAB>token<TAB>logprob" columns of the lines `lory score` prints (same windows, same prompt
rule; `lory score` adds the token's text as a fourth column).
"""
import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def swiglu(h, w_gate, w_up, w_down):
    return (F.silu(h @ w_gate.transpose(-1, -2)) * (h @ w_up.transpose(-1, -2))) @ w_down.transpose(-1, -2)


class ExportedModel(torch.nn.Module):
    def __init__(self, weights, info, router=None):
        super().__init__()
        self.info = info
        self.model = info["layout"]["model"]
        self.ffn = info["layout"]["ffn"]
        self.router = router
        if self.model.get("model") != "transformer":
            raise ValueError(f"unsupported model plugin {self.model.get('model')!r}: this loader knows 'transformer'")
        if router is None and self.ffn.get("router") not in ("dense", "lory", "topk", "expert_choice"):
            raise ValueError(f"router {self.ffn.get('router')!r} is not built into this loader: pass its rebuild "
                             "function (load(..., router=feed_forward) or --router-module FILE.py)")
        self.w = {name: tensor.float() for name, tensor in weights.items()}
        m = self.model
        K = m["head_width"]
        inverse_frequency = m["rope_theta"] ** (-torch.arange(0, K // 2, dtype=torch.float64) * 2.0 / K)
        angles = torch.outer(torch.arange(m["context_length"], dtype=torch.float64), inverse_frequency)
        angles = torch.cat([angles, angles], -1)
        self.cos, self.sin = angles.cos().float(), angles.sin().float()

    # ---- attention -------------------------------------------------------------------------
    def attention(self, x, i):
        m = self.model
        B, L, D = x.shape
        H, K = m["n_heads"], m["head_width"]
        qkv = (x @ self.w[f"block{i}.attention.w_qkv_3DD"].T).view(B, L, 3, H, K).permute(2, 0, 3, 1, 4)

        def rotate(t):
            half = torch.cat([-t[..., K // 2:], t[..., : K // 2]], -1)
            return t * self.cos[:L] + half * self.sin[:L]

        q, k, v = rotate(qkv[0]), rotate(qkv[1]), qkv[2]
        scores = q @ k.transpose(-1, -2) / math.sqrt(K)
        scores = scores.masked_fill(torch.ones(L, L, dtype=torch.bool).triu(1), float("-inf"))
        out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, L, D)
        return out @ self.w[f"block{i}.attention.w_out_DD"].T

    # ---- FFN -------------------------------------------------------------------------------
    def expert_tensors(self, i):
        p = f"block{i}.ffn."
        return self.w[p + "w_gate_EFD"], self.w[p + "w_up_EFD"], self.w[p + "w_down_EDF"], self.w[p + "router_ED"]

    def merged(self, h_BLD, w_BE, i):
        G, U, W, _ = self.expert_tensors(i)
        g = torch.einsum("be,efd->bfd", w_BE, G)
        u = torch.einsum("be,efd->bfd", w_BE, U)
        d = torch.einsum("be,edf->bdf", w_BE, W)
        return swiglu(h_BLD, g, u, d)

    def lory(self, h, i, routing, prompt_length):
        f = self.ffn
        _, _, _, R = self.expert_tensors(i)
        B, L, D = h.shape
        E = f["experts"]
        route = lambda mean_XD: (mean_XD @ R.T).softmax(-1)
        if routing == "prompt":
            P = max(1, min(prompt_length, L))
            return self.merged(h, route(h[:, :P].mean(1)), i)
        T = min(f["segment_length"], L)
        outputs, previous = [], None
        for start in range(0, L, T):
            segment = h[:, start:start + T]
            if start == 0:
                if f["first_segment"] == "uniform":
                    w = torch.full((B, E), 1.0 / E)
                elif f["first_segment"] == "first_token":
                    w = route(h[:, 0])
                else:
                    w = route(segment.mean(1))
            else:
                # prefix routing: segment 1's mean routes every later segment, whatever first_segment
                w = route(h[:, :T].mean(1)) if f["routing"] == "prefix" else route(previous.mean(1))
            outputs.append(self.merged(segment, w, i))
            previous = segment
        return torch.cat(outputs, 1)

    def token_choice(self, h, i, k, gate_rule, renormalize, scale):
        G, U, W, R = self.expert_tensors(i)
        logits = h @ R.T
        p = torch.sigmoid(logits) if gate_rule == "sigmoid" else logits.softmax(-1)
        bias = self.w.get(f"block{i}.ffn.expert_bias_E")
        if bias is not None:  # aux-loss-free balancing: the bias picks the experts, the gates stay p
            experts = (p + bias).topk(k, -1).indices
            values = p.gather(-1, experts)
        else:
            values, experts = p.topk(k, -1)
        if renormalize:
            values = values / values.sum(-1, keepdim=True)
        values = values * scale
        y = torch.zeros_like(h)
        for e in range(G.shape[0]):
            gate = (values * (experts == e)).sum(-1, keepdim=True)
            chosen = (experts == e).any(-1)
            if chosen.any():
                y = y + torch.where(chosen.unsqueeze(-1), gate * swiglu(h, G[e], U[e], W[e]), torch.zeros_like(h))
        return y

    def feed_forward(self, h, i, routing, prompt_length):
        f = self.ffn
        if f["router"] == "dense":
            p = f"block{i}.ffn."
            return swiglu(h, self.w[p + "w_gate_FD"], self.w[p + "w_up_FD"], self.w[p + "w_down_DF"])
        if f["router"] == "lory":
            return self.lory(h, i, routing, prompt_length)
        if f["router"] == "topk":
            if f["capacity_factor"] > 0:
                raise ValueError("topk with a capacity is not supported by this loader")
            y = self.token_choice(h, i, f["k"], f["gate"], f["renormalize"] and f["k"] > 1, f["gate_scale"])
            if f.get("shared_experts", 0) > 0:
                p = f"block{i}.ffn."
                y = y + swiglu(h, self.w[p + "shared_gate_FD"], self.w[p + "shared_up_FD"], self.w[p + "shared_down_DF"])
            return y
        if f["inference_routing"] != "token_topk":
            raise ValueError("expert_choice's training rule is not causal; export with inference_routing = token_topk")
        return self.token_choice(h, i, f["inference_k"], "softmax", f["inference_renormalize"], 1.0)

    # ---- the model -------------------------------------------------------------------------
    def forward(self, tokens_BL, routing="segment", prompt_length=1):
        m = self.model
        x = F.embedding(tokens_BL, self.w["embedding_VD"])
        for i in range(m["n_layers"]):
            h = x + self.attention(rms_norm(x, self.w[f"block{i}.attention_norm.weight_D"], m["norm_eps"]), i)
            normed = rms_norm(h, self.w[f"block{i}.ffn_norm.weight_D"], m["norm_eps"])
            if self.router is not None:
                x = h + self.router(self, normed, i, tokens_BL, routing, prompt_length)
            else:
                x = h + self.feed_forward(normed, i, routing, prompt_length)
        x = rms_norm(x, self.w["final_norm.weight_D"], m["norm_eps"])
        head = self.w["embedding_VD"] if m["tie_embeddings"] else self.w["lm_head_VD"]
        return x @ head.T

    @torch.no_grad()
    def score(self, token_ids, routing="segment", prompt_length=0, stride=None):
        """(positions, log-probs) of the text's tokens, as `lory score` cuts it: windows of the context
        length advancing by `stride` (default: half the context, at most context - prompt), each
        scoring the tokens after the previous window's with the tokens before them as context. Under
        prompt routing the first prompt_length tokens are the prompt and are not scored, and every
        window routes from its own first prompt_length tokens."""
        context = self.model["context_length"]
        P = prompt_length if routing == "prompt" else 0
        if stride is None:
            stride = max(1, min(context // 2, context - P))
        if P >= context or not 1 <= stride <= context - P:
            raise ValueError(f"prompt {P} and stride {stride} do not fit the context {context}")
        if len(token_ids) < max(2, P + 1):
            raise ValueError(f"the text has {len(token_ids)} tokens: nothing to score after a {P}-token prompt")
        positions, out = [], []
        n, next_target, start = len(token_ids), max(1, P), 0
        while next_target < n:
            end = min(n, start + context + 1)
            window = torch.tensor(token_ids[start:end]).unsqueeze(0)
            log_probs = self.forward(window[:, :-1], routing, max(P, 1)).double().log_softmax(-1)
            log_probs = log_probs.gather(-1, window[:, 1:].unsqueeze(-1)).view(-1)
            out.append(log_probs[next_target - start - 1:])
            positions.extend(range(next_target, end))
            next_target, start = end, start + stride
        return positions, torch.cat(out)


def load(export_dir, router=None):
    """The exported model; `router` rebuilds an FFN layer the loader does not know:
    router(model, h_BLD, layer, tokens_BL, routing, prompt_length) -> y_BLD, reading the layer's
    tensors from model.w["block{layer}.ffn.<name>"] and its options from model.ffn."""
    with open(os.path.join(export_dir, "config.json")) as f:
        info = json.load(f)
    if "layout" not in info:
        raise ValueError(f"{export_dir}/config.json has no 'layout': export the run again with this lory")
    weights = torch.load(os.path.join(export_dir, "weights.pt"))
    return ExportedModel(weights, info, router).eval()


def load_router_module(path):
    """The `feed_forward` function of a Python file (a router's rebuild function)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("lory_router_rebuild", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "feed_forward"):
        raise ValueError(f"{path} defines no feed_forward(model, h_BLD, layer, tokens_BL, routing, prompt_length)")
    return module.feed_forward


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir")
    parser.add_argument("--token-ids", required=True, help="file of whitespace-separated token ids")
    parser.add_argument("--routing", choices=["segment", "prompt"], default="segment")
    parser.add_argument("--prompt-length", type=int, default=128, help="prompt tokens under --routing prompt")
    parser.add_argument("--stride", type=int, default=None, help="new tokens per window (default: as lory score)")
    parser.add_argument("--router-module", default=None,
                        help="Python file with the router's rebuild function feed_forward(model, h_BLD, layer, "
                             "tokens_BL, routing, prompt_length)")
    args = parser.parse_args()
    with open(args.token_ids) as f:
        ids = [int(t) for t in f.read().split()]
    model = load(args.export_dir, load_router_module(args.router_module) if args.router_module else None)
    positions, log_probs = model.score(ids, args.routing, args.prompt_length, args.stride)
    for position, lp in zip(positions, log_probs.tolist()):
        print(f"{position}\t{ids[position]}\t{lp:.6f}")


if __name__ == "__main__":
    sys.exit(main())
