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


def _softmax_matmul_tanh(x, w):
    return torch.tanh(torch.softmax(x, dim=1) @ w)


def test_lowered_steps_graph_matches_eager():
    """tests/lit/lower_steps.kir and emit_cpp.kir's graph (softmax rows, a matmul, tanh on its rows)
    through torch.compile at every ISA level this CPU runs, against eager."""
    from conftest import runnable_isas

    x, w = torch.randn(8, 16), torch.randn(16, 8)
    want = _softmax_matmul_tanh(x, w)
    for isa in runnable_isas():
        torch._dynamo.reset()
        before = kiln.stats()
        got = torch.compile(_softmax_matmul_tanh, backend="kiln", options={"isa": isa})(x, w)
        after = kiln.stats()
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        assert after["calls"] > before["calls"] and after["fallback_ops"] == before["fallback_ops"]
        assert after["graphs_by_isa"].get(isa, 0) > before["graphs_by_isa"].get(isa, 0)
