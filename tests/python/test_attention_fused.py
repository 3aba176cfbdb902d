"""Fused attention: SDPA lowered to kiln's flash kernels, and the hand-written causal pattern rewritten
to it (only where the meaning matches exactly), forward and gradients against eager."""
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import run_compiled

from kiln.models import attention

pytestmark = pytest.mark.usefixtures("every_isa")  # once per ISA level this CPU runs


def _qkv(b, h, sq, sk, d, dv=None, dtype=torch.float32, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    lead = (b, h) if h else (b,)
    q = (torch.randn(*lead, sq, d, generator=g, dtype=dtype) * scale).requires_grad_()
    k = (torch.randn(*lead, sk, d, generator=g, dtype=dtype) * scale).requires_grad_()
    v = torch.randn(*lead, sk, dv or d, generator=g, dtype=dtype).requires_grad_()
    return q, k, v


# ---- SDPA, kept whole and lowered -----------------------------------------------------------------
@pytest.mark.parametrize("b,h,sq,sk,d,dv,causal", [
    (2, 3, 70, 70, 16, 16, True),     # S not a multiple of the 64-row block
    (1, 2, 130, 130, 24, 24, False),  # non-causal, odd head dim
    (2, 1, 64, 200, 32, 40, False),   # cross attention: more keys than queries, dv != d
    (1, 1, 1, 1, 8, 8, True),
    (1, 4, 257, 257, 64, 64, True),
])
def test_sdpa_matches_eager_with_gradients(b, h, sq, sk, d, dv, causal):
    q, k, v = _qkv(b, h, sq, sk, d, dv)

    def fn(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    _, _, delta = run_compiled(fn, q, k, v, grad=True, rtol=1e-4, atol=1e-5)
    assert delta["fallback_ops"] == {}


def test_sdpa_explicit_scale_float64_and_strided_inputs():
    q, k, v = _qkv(2, 3, 50, 50, 16, dtype=torch.float64)

    def fn(q, k, v):
        # heads interleaved in memory: the kernel reads through the strides
        qt, kt, vt = (x.transpose(1, 2).contiguous().transpose(1, 2) for x in (q, k, v))
        return F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, scale=0.3)

    run_compiled(fn, q, k, v, grad=True, rtol=1e-9, atol=1e-10)


def test_sdpa_large_magnitudes_stay_finite():
    q, k, v = _qkv(1, 2, 96, 96, 16, scale=30.0)  # logits in the thousands

    def fn(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    got, _, _ = run_compiled(fn, q, k, v, grad=True, rtol=1e-3, atol=1e-3)
    assert torch.isfinite(got).all()


def test_sdpa_with_dropout_or_mask_is_not_claimed():
    q, k, v = _qkv(1, 2, 16, 16, 8)
    mask = torch.rand(16, 16) > 0.5

    def fn(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    run_compiled(fn, q, k, v, allow_fallback=True, rtol=1e-4, atol=1e-5)


# ---- the hand-written pattern ---------------------------------------------------------------------
def test_seed_attention_is_rewritten_and_matches(kiln_stats):
    q, k, v = _qkv(3, 0, 200, 200, 32)
    _, _, delta = run_compiled(attention, q, k, v, grad=True, rtol=1e-4, atol=1e-5)
    assert delta.get("attention_rewrites", 0) == 1


def _einsum_where_attention(q, k, v):
    """The TransformerLM's spelling: einsum, where(i >= j), max-exp-sum-div softmax."""
    s = q.shape[-2]
    mask = torch.arange(s)[:, None] >= torch.arange(s)[None, :]
    scores = torch.einsum("...qd,...kd->...qk", q, k) / math.sqrt(q.shape[-1])
    scores = torch.where(mask, scores, float("-inf"))
    scores = scores - scores.amax(dim=-1, keepdim=True)
    e = torch.exp(scores)
    return torch.einsum("...qk,...kd->...qd", e / e.sum(dim=-1, keepdim=True), v)


def test_transformer_spelling_is_rewritten_and_matches():
    q, k, v = _qkv(2, 3, 100, 100, 16)
    _, _, delta = run_compiled(_einsum_where_attention, q, k, v, grad=True, rtol=1e-4, atol=1e-5)
    assert delta.get("attention_rewrites", 0) == 1


def test_transformer_spelling_on_head_split_views_is_rewritten():
    """Heads split from [B, S, H*D] projections: q, k, v are transposed views, and einsum copies them."""
    g = torch.Generator().manual_seed(5)
    x = [torch.randn(2, 50, 3 * 16, generator=g).requires_grad_() for _ in range(3)]

    def fn(xq, xk, xv):
        q, k, v = (t.view(2, 50, 3, 16).transpose(1, 2) for t in (xq, xk, xv))
        return _einsum_where_attention(q, k, v).transpose(1, 2).reshape(2, 50, 48)

    _, _, delta = run_compiled(fn, *x, grad=True, rtol=1e-4, atol=1e-5)
    assert delta.get("attention_rewrites", 0) == 1


def test_multiply_by_scale_and_large_inputs():
    q, k, v = _qkv(2, 0, 80, 80, 8, scale=20.0)

    def fn(q, k, v):
        s = (q @ k.transpose(-2, -1)) * 0.125
        s = s.masked_fill(torch.ones(80, 80).tril() == 0, float("-inf"))
        return torch.softmax(s, dim=-1) @ v

    _, _, delta = run_compiled(fn, q, k, v, grad=True, rtol=1e-3, atol=1e-3)
    assert delta.get("attention_rewrites", 0) == 1


@pytest.mark.parametrize("variant", ["diagonal_above", "upper", "softmax_dim0", "mask_shifted_down"])
def test_near_misses_are_not_rewritten_but_still_right(variant):
    """Patterns that look like causal attention but mean something else keep their own meaning."""
    q, k, v = _qkv(2, 0, 40, 40, 8)

    def fn(q, k, v):
        s = q @ k.transpose(-2, -1) / math.sqrt(8)
        ones = torch.ones(40, 40)
        if variant == "diagonal_above":
            mask = torch.tril(ones, diagonal=1)
        elif variant == "upper":
            mask = torch.triu(ones)
        elif variant == "mask_shifted_down":
            mask = torch.tril(ones, diagonal=-1)  # row 0 sees nothing: NaN there, as in eager
        else:
            mask = torch.tril(ones)
        s = s.masked_fill(mask == 0, float("-inf"))
        return torch.softmax(s, dim=-2 if variant == "softmax_dim0" else -1) @ v

    _, _, delta = run_compiled(fn, q, k, v, grad=variant != "mask_shifted_down", rtol=1e-4, atol=1e-5)
    assert delta.get("attention_rewrites", 0) == 0


def test_attention_weights_used_elsewhere_are_not_lost():
    q, k, v = _qkv(2, 0, 30, 30, 8)

    def fn(q, k, v):
        s = q @ k.transpose(-2, -1) / math.sqrt(8)
        s = s.masked_fill(torch.tril(torch.ones(30, 30)) == 0, float("-inf"))
        p = torch.softmax(s, dim=-1)
        return p @ v, p.sum()

    run_compiled(fn, q, k, v, grad=True, rtol=1e-4, atol=1e-5)
