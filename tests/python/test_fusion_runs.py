"""The fusion golden test's patterns (tests/lit/fusion_kernels.kir), run through torch.compile against eager."""
import torch

import kiln


def _softmax_rmsnorm_chain(x, w):
    m = x.amax(-1, keepdim=True)
    e = torch.exp(x - m)
    p = e / e.sum(-1, keepdim=True)
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w
    c = torch.tanh(x * torch.sigmoid(x))
    return p, y, c


def test_fused_row_kernel_matches_eager():
    torch._dynamo.reset()
    x = torch.randn(4, 8, 16)
    w = torch.randn(16)
    before = kiln.stats()
    got = torch.compile(_softmax_rmsnorm_chain, backend="kiln")(x, w)
    after = kiln.stats()
    want = _softmax_rmsnorm_chain(x, w)
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6)
    assert after["calls"] > before["calls"]
    assert after["fallback_ops"] == before["fallback_ops"]
    # One graph, and every output computed by kiln kernels (a single fused row kernel).
    assert after["kernels_run"] - before["kernels_run"] == 1
