"""The CS336 BasicsTransformerLM, written from its description in benchmarks.md §2 (torch only)."""

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LMConfig:
    vocab_size: int
    context_length: int
    d_model: int
    num_layers: int
    num_heads: int
    d_ff: int
    batch: int  # the benchmark's input batch, not a model parameter
    seq: int  # the benchmark's input length (<= context_length)
    rope_theta: float = 10000.0


CONFIGS = {
    # The seed benchmark's model and input.
    "seed": LMConfig(1000, 384, 192, 3, 6, 768, batch=6, seq=192),
    # `--size small`: how the ratios move with scale.
    "small": LMConfig(10000, 256, 768, 12, 12, 3072, batch=4, seq=256),
    # For tests only: compiles and runs in a fraction of a second.
    "tiny": LMConfig(64, 32, 32, 2, 4, 64, batch=2, seq=16),
}


def _trunc_normal_(t: torch.Tensor, std: float) -> torch.Tensor:
    # Truncated at three standard deviations, the CS336 initialisation.
    return nn.init.trunc_normal_(t, mean=0.0, std=std, a=-3 * std, b=3 * std)


class Linear(nn.Module):
    """y = x @ W.T with W of shape (out, in); no bias."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        _trunc_normal_(self.weight, std=math.sqrt(2.0 / (in_features + out_features)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T


class Embedding(nn.Module):
    """Token lookup by indexing the weight matrix."""

    def __init__(self, num_embeddings: int, embedding_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_embeddings, embedding_dim))
        _trunc_normal_(self.weight, std=1.0)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.weight[token_ids]


class RMSNorm(nn.Module):
    """x * rsqrt(mean(x^2) + eps) * weight, computed in float32 and cast back."""

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_dtype = x.dtype
        x = x.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight
        return x.to(in_dtype)


class RotaryEmbedding(nn.Module):
    """RoPE on interleaved pairs (x[2i], x[2i+1]) with cos/sin tables precomputed for context_length."""

    def __init__(self, context_length: int, d_k: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, d_k, 2, dtype=torch.float32) / d_k))
        angles = torch.outer(torch.arange(context_length, dtype=torch.float32), inv_freq)
        # Not persistent: derived data, not state to save.
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor, token_positions: torch.Tensor) -> torch.Tensor:
        cos, sin = self.cos[token_positions], self.sin[token_positions]  # (seq, d_k / 2)
        x_even, x_odd = x[..., 0::2], x[..., 1::2]
        rotated = torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), dim=-1)
        return rotated.flatten(-2)


def softmax(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Hand-written softmax: subtract the max for stability, exponentiate, normalise."""
    x = x - x.amax(dim=dim, keepdim=True)
    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)


def causal_mask(seq: int, device=None) -> torch.Tensor:
    """True where query i may attend to key j (i >= j); built on every call, as the benchmark requires."""
    qi = torch.arange(seq, device=device)[:, None]
    kj = torch.arange(seq, device=device)[None, :]
    return qi >= kj


def scaled_dot_product_attention(Q, K, V, mask):
    """einsum scores / sqrt(d_k) -> where(mask, s, -inf) -> softmax -> einsum with V."""
    d_k = Q.shape[-1]
    scores = torch.einsum("...qd,...kd->...qk", Q, K) / math.sqrt(d_k)
    scores = torch.where(mask, scores, float("-inf"))
    return torch.einsum("...qk,...kd->...qd", softmax(scores, dim=-1), V)


class CausalMultiHeadSelfAttention(nn.Module):
    """Multi-head causal self-attention with RoPE on Q and K; projections without bias."""

    def __init__(self, d_model: int, num_heads: int, context_length: int, theta: float):
        super().__init__()
        assert d_model % num_heads == 0
        self.num_heads = num_heads
        self.d_k = d_model // num_heads
        self.q_proj = Linear(d_model, d_model)
        self.k_proj = Linear(d_model, d_model)
        self.v_proj = Linear(d_model, d_model)
        self.output_proj = Linear(d_model, d_model)
        self.rope = RotaryEmbedding(context_length, self.d_k, theta)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        return x.view(b, s, self.num_heads, self.d_k).transpose(1, 2)  # (b, h, s, d_k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q = self._split_heads(self.q_proj(x))
        k = self._split_heads(self.k_proj(x))
        v = self._split_heads(self.v_proj(x))
        positions = torch.arange(s, device=x.device)
        q, k = self.rope(q, positions), self.rope(k, positions)
        out = scaled_dot_product_attention(q, k, v, causal_mask(s, device=x.device))
        return self.output_proj(out.transpose(1, 2).reshape(b, s, d))


class SwiGLU(nn.Module):
    """w2(silu(w1 x) * w3 x), silu written out as x * sigmoid(x)."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.w1 = Linear(d_model, d_ff)
        self.w2 = Linear(d_ff, d_model)
        self.w3 = Linear(d_model, d_ff)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.w1(x)
        return self.w2(a * torch.sigmoid(a) * self.w3(x))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + ffn(norm(x))."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.ln1 = RMSNorm(cfg.d_model)
        self.attn = CausalMultiHeadSelfAttention(cfg.d_model, cfg.num_heads, cfg.context_length, cfg.rope_theta)
        self.ln2 = RMSNorm(cfg.d_model)
        self.ffn = SwiGLU(cfg.d_model, cfg.d_ff)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.ffn(self.ln2(x))


class BasicsTransformerLM(nn.Module):
    """Embedding -> pre-norm blocks -> final RMSNorm -> untied lm_head; returns logits (B, S, vocab)."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.cfg = cfg
        self.token_embeddings = Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.num_layers))
        self.ln_final = RMSNorm(cfg.d_model)
        self.lm_head = Linear(cfg.d_model, cfg.vocab_size)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        x = self.token_embeddings(token_ids)
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.ln_final(x))


def make_model(size: str = "seed", seed: int = 0) -> BasicsTransformerLM:
    """A model with deterministic weights, so every contender starts from the same parameters."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return BasicsTransformerLM(CONFIGS[size])


def make_tokens(size: str = "seed", seed: int = 1) -> torch.Tensor:
    """The benchmark's input batch of token ids, (batch, seq) int64."""
    cfg = CONFIGS[size]
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, cfg.vocab_size, (cfg.batch, cfg.seq), generator=gen)
