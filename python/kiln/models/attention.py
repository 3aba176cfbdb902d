"""The seed benchmark's single-head attention, and its multi-head SDPA counterpart (benchmarks.md §1)."""

import math

import torch
import torch.nn.functional as F


def attention(Q: torch.Tensor, K: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """Causal attention over (B, S, D) inputs, written exactly as the seed writes it."""
    S, D = Q.shape[-2], Q.shape[-1]
    scores = Q @ K.transpose(-2, -1) / math.sqrt(D)
    # Rebuilt on every call, as in the seed: a compiler must turn this into an index predicate,
    # not a materialised S x S constant.
    mask = torch.tril(torch.ones(S, S))
    scores = scores.masked_fill(mask == 0, float("-inf"))
    return torch.softmax(scores, dim=-1) @ V


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal multi-head attention over (B, H, S, D) inputs through ATen's fused SDPA kernel."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)
