"""Row lookups compiled by kiln: weight[idx], F.embedding, their gradients, and out-of-range indices."""
import pytest
import torch
import torch.nn.functional as F
from conftest import StatsWatch, assert_kiln_ran, assert_same, run_compiled


def _weights(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return torch.randn(11, 6, generator=g, dtype=dtype).requires_grad_()


IDX = torch.tensor([[3, 0, 10, 3, 3], [7, 7, 1, 0, 10]])  # repeated rows and both ends of the table


def _lookups(w, idx):
    return w[idx], F.embedding(idx, w), w[idx[0]] * 2, F.embedding(idx.t(), w).sum(0), w[idx].exp()


def test_lookup_forward_and_grad():
    run_compiled(_lookups, _weights(), IDX, grad=True)


def test_lookup_float64_int32_indices_forward_and_grad():
    run_compiled(_lookups, _weights(torch.float64), IDX.to(torch.int32), grad=True)


def test_lookup_from_noncontiguous_weight_forward_and_grad():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(6, 11, generator=g).t().detach().requires_grad_()  # (11, 6), column-major
    run_compiled(_lookups, w, IDX, grad=True)


def test_negative_indices_wrap_like_eager():
    w = _weights().detach()
    idx = torch.tensor([-1, -11, 0, 5, -3])
    run_compiled(lambda w, idx: (w[idx], w[idx] + 1), w, idx)


def test_embedding_padding_idx_grad():
    w = _weights()
    run_compiled(lambda w, idx: F.embedding(idx, w, padding_idx=3) * 3, w, IDX, grad=True)


def test_rope_table_lookup_by_arange():
    # The TransformerLM's RoPE: cos/sin tables indexed by positions built inside the graph.
    g = torch.Generator().manual_seed(2)
    cos = torch.randn(32, 4, generator=g)
    x = torch.randn(2, 16, 8, generator=g).requires_grad_()

    def f(cos, x):
        pos = torch.arange(x.shape[1])
        c = cos[pos]
        return x[..., 0::2] * c - x[..., 1::2] * c

    run_compiled(f, cos, x, grad=True)


@pytest.mark.parametrize("bad", [11, 1000, -12])
def test_out_of_range_index_raises(bad):
    """Eager raises IndexError; kiln must raise too (or run eagerly and raise) — never return garbage."""
    w = _weights().detach()
    ok = torch.tensor([1, 2, 3, 4])
    compiled = torch.compile(lambda w, idx: w[idx] * 2, backend="kiln")
    with StatsWatch() as st:
        first = compiled(w, ok)  # compile with valid indices: the range check is a runtime one
    assert_kiln_ran(st.delta)
    assert_same(first, w[ok] * 2)
    bad_idx = torch.tensor([1, bad, 3, 4])
    with pytest.raises(IndexError):
        w[bad_idx]
    with pytest.raises((IndexError, RuntimeError, ValueError)):
        compiled(w, bad_idx)
    # The next call with valid indices is right again (no sticky error state).
    assert_same(compiled(w, ok + 1), w[ok + 1] * 2)


def _check_embedding_raises(bads):
    w = _weights().detach()
    compiled = torch.compile(lambda idx, w: F.embedding(idx, w) + 1, backend="kiln")
    assert_same(compiled(torch.tensor([0, 10]), w), F.embedding(torch.tensor([0, 10]), w) + 1)
    for bad in bads:
        with pytest.raises(IndexError):
            F.embedding(torch.tensor([0, bad]), w)
        with pytest.raises((IndexError, RuntimeError, ValueError)):
            compiled(torch.tensor([0, bad]), w)


def test_out_of_range_embedding_raises():
    _check_embedding_raises([11, 1000, -12])


def test_negative_embedding_index_raises():
    _check_embedding_raises([-1])


def test_out_of_range_index_with_grad_raises():
    w = _weights()
    compiled = torch.compile(lambda w, idx: (w[idx] ** 2).sum(), backend="kiln")
    compiled(w, torch.tensor([0, 1])).backward()
    with pytest.raises((IndexError, RuntimeError, ValueError)):
        compiled(w, torch.tensor([0, 11])).backward()
