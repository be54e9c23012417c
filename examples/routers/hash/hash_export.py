"""The hash router's rebuild function for python/lory_export.py: an exported run of the `hash`
example router, rebuilt in plain PyTorch.

    /usr/bin/python3 python/lory_export.py EXPORT_DIR --token-ids FILE \\
        --router-module examples/routers/hash/hash_export.py
"""
import torch
import torch.nn.functional as F


def feed_forward(model, h_BLD, layer, tokens_BL, routing, prompt_length):
    f = model.ffn  # the layer's export layout: experts, key, salt
    p = f"block{layer}.ffn."
    G, U, W = model.w[p + "w_gate_EFD"], model.w[p + "w_up_EFD"], model.w[p + "w_down_EDF"]
    B, L, _ = h_BLD.shape
    key = tokens_BL if f["key"] == "token" else torch.arange(L).expand(B, L)
    mixed = ((key.long() + f["salt"]) * 2654435761) % (1 << 32)
    expert = (mixed // (1 << 16)) % f["experts"]
    y = torch.zeros_like(h_BLD)
    for e in range(G.shape[0]):
        chosen = (expert == e).unsqueeze(-1)
        if chosen.any():
            out = (F.silu(h_BLD @ G[e].T) * (h_BLD @ U[e].T)) @ W[e].T
            y = torch.where(chosen, out, y)
    return y
