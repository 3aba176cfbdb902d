"""Reductions compiled by kiln agree with eager: sum/mean/amax/amin/max.dim/argmax/prod, softmax, RMSNorm.

Long reductions are checked against a float64 reference: kiln's error must be comparable to eager's
(pairwise/cascade summation), not that of a naive running sum.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import run_compiled

pytestmark = pytest.mark.usefixtures("every_isa")  # once per ISA level this CPU runs


def _reductions(x):
    return (
        x.sum(), x.sum(0), x.sum(-1), x.sum((0, 2)), x.sum((-1, -3)), x.sum(1, keepdim=True),
        x.sum((0, 1), keepdim=True),
        x.mean(), x.mean(1), x.mean((-2, -1)), x.mean(0, keepdim=True),
        x.amax(), x.amax(-1), x.amax((0, 2)), x.amin(1, keepdim=True), x.amin((0, -1)),
        x.max(), x.min(),
        x.max(1).values, x.max(-1, keepdim=True).values, x.min(0).values,
        x.sum(2).amax(0), (x * x).mean(-1).sum(),
    )


def _prods(x):
    # Forward only: prod's backward decomposes into cumprod/flip, which kiln does not lower.
    return x.prod(), x.prod(1), x.prod(-1, keepdim=True), x.prod(0).prod(0)


def _index_reductions(x):
    return (x.max(1).indices, x.max(-1, keepdim=True).indices, x.min(0).indices, x.argmax(), x.argmax(1),
            x.argmin(-1, keepdim=True), x.argmax(0, keepdim=True), x.argmin())


def test_reductions_float32_forward_and_grad():
    torch.manual_seed(0)
    x = (1 + 0.1 * torch.randn(6, 7, 9)).requires_grad_()  # near 1, so the full prod stays finite
    run_compiled(_reductions, x, grad=True, rtol=2e-5, atol=2e-5)


def test_reductions_float64_permuted_input_forward_and_grad():
    torch.manual_seed(1)
    x = (1 + 0.1 * torch.randn(9, 6, 7, dtype=torch.float64)).permute(1, 2, 0).detach().requires_grad_()
    assert x.shape == (6, 7, 9) and not x.is_contiguous()
    run_compiled(_reductions, x, grad=True)


def test_index_reductions():
    torch.manual_seed(2)
    x = torch.randn(5, 8, 11)
    t = x.transpose(0, 2)  # (11, 8, 5), non-contiguous
    p = 1 + 0.1 * torch.randn(6, 7, 9, dtype=torch.float64)
    p[2, 3, 4] = 0.0
    p[1, 1, 1] = -2.0
    run_compiled(lambda x, t, p: _index_reductions(x) + _index_reductions(t) + _prods(x) + _prods(p) + _prods(t),
                 x, t, p)


def test_index_reductions_ties_and_nan():
    # Ties: eager returns the first index. NaN: max/min propagate it and report its index.
    x = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0],
                      [2.0, 2.0, 2.0, 2.0, 2.0],
                      [-1.0, math.nan, 5.0, math.nan, -7.0],
                      [-math.inf, -math.inf, -math.inf, -math.inf, -math.inf],
                      [0.0, -0.0, 0.0, 4.0, 4.0]])

    def f(x):
        return (x.max(1), x.min(1), x.argmax(1), x.argmin(1), x.amax(1), x.amin(1), x.max(0), x.argmax(0),
                x.max(), x.min())

    run_compiled(f, x)


def test_integer_and_bool_reductions():
    i = torch.tensor([[3, -1, 4, 1, -5], [9, 2, -6, 5, 3]])
    b = torch.tensor([[True, False, True, True, False], [False, False, True, True, True]])

    def f(i, b):
        return (i.sum(), i.sum(1), i.sum(0, keepdim=True), i.amax(1), i.amin(0), i.max(1), i.min(), i.argmax(1),
                i.prod(1), b.sum(), b.sum(0), (i > 0).sum(-1), i.to(torch.float32).mean(1),
                i.to(torch.int32).sum(1), i.sum(1, dtype=torch.float64), i.double().sum(1))

    run_compiled(f, i, b)


def test_reductions_over_size_zero_and_size_one_dims():
    e = torch.randn(0, 5)
    one = torch.randn(3, 1, 4)

    def f(e, one):
        return e.sum(0), e.sum(1), e.prod(0), e.mean(1), e.sum(), one.sum(1), one.amax(1), one.max(1).indices, \
            one.mean((1, 2)), one.argmax(1)

    run_compiled(f, e, one)


def _abs_err(v, ref):
    return abs(float(v) - float(ref))


def test_long_reduction_accuracy_matches_eager():
    torch.manual_seed(3)
    n = 1 << 20
    x = torch.rand(n) + 0.5  # all positive: a naive float32 running sum would lose ~3 digits
    rows = torch.rand(4, n // 4) + 0.5

    def f(x, rows):
        return x.sum(), x.mean(), rows.sum(-1), rows.mean(1), (x * x).sum(), rows.t().sum(0)

    got, eager, _ = run_compiled(f, x, rows, rtol=1e-4, atol=0)
    ref = (x.double().sum(), x.double().mean(), rows.double().sum(-1), rows.double().mean(1),
           (x.double() ** 2).sum(), rows.double().sum(-1))
    for k, (g, e, r) in enumerate(zip(got, eager, ref)):
        kiln_err = (g.double() - r).abs().max().item()
        eager_err = (e.double() - r).abs().max().item()
        scale = r.abs().max().item()
        # Comparable to eager's cascade sum: within 8x of eager's error, or below 1e-6 relative (a few
        # float32 ulps of the result). A naive running sum is off by ~2e-5 relative here.
        assert kiln_err <= max(8 * eager_err, 1e-6 * scale), \
            f"result {k}: kiln error {kiln_err:.3g} vs eager {eager_err:.3g} (|ref| {scale:.3g})"


def _softmaxes(x):
    return (F.softmax(x, -1), F.softmax(x, 0), F.softmax(x, 1), F.log_softmax(x, -1), F.log_softmax(x, 1),
            torch.softmax(x * 3, dim=-2), x.log_softmax(0))


def test_softmax_log_softmax_forward_and_grad():
    torch.manual_seed(4)
    x = (torch.randn(4, 5, 33) * 4).requires_grad_()
    run_compiled(_softmaxes, x, grad=True)


def test_softmax_float64_transposed_forward_and_grad():
    torch.manual_seed(5)
    x = (torch.randn(33, 5, 4, dtype=torch.float64) * 4).transpose(0, 2).detach().requires_grad_()
    run_compiled(_softmaxes, x, grad=True)


def test_softmax_with_neg_inf_masks():
    torch.manual_seed(6)
    x = torch.randn(6, 10)
    mask = torch.rand(6, 10) > 0.5
    mask[:, 3] = True
    mask[5] = False  # a fully masked row: eager gives NaN there

    def f(x, mask):
        m = x.masked_fill(~mask, float("-inf"))
        return F.softmax(m, -1), F.log_softmax(m, -1), F.softmax(m[:5], -1).sum(-1)

    run_compiled(f, x, mask)


def test_softmax_long_row():
    torch.manual_seed(7)
    x = torch.randn(2, 1 << 18) * 5

    def f(x):
        return F.softmax(x, -1), F.log_softmax(x, -1)

    got, _, _ = run_compiled(f, x, rtol=1e-4, atol=1e-9)
    s = got[0].double().sum(-1)
    torch.testing.assert_close(s, torch.ones_like(s), rtol=0, atol=1e-4)


def rms_norm(x, weight, eps=1e-5):
    """The TransformerLM's RMSNorm, as a function."""
    in_dtype = x.dtype
    x = x.to(torch.float32)
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight
    return x.to(in_dtype)


def test_rms_norm_forward_and_grad():
    torch.manual_seed(8)
    x = torch.randn(3, 5, 64).requires_grad_()
    w = (1 + 0.1 * torch.randn(64)).requires_grad_()
    run_compiled(rms_norm, x, w, grad=True)


def test_rms_norm_float64_input_forward_and_grad():
    # float64 input: the norm computes in float32 and casts back, exactly like eager.
    torch.manual_seed(9)
    x = torch.randn(4, 48, dtype=torch.float64).requires_grad_()
    w = (1 + 0.1 * torch.randn(48)).requires_grad_()

    def f(x, w):
        return rms_norm(x, w), rms_norm(x * 2, w).sum(-1)

    run_compiled(f, x, w, grad=True, rtol=1e-6, atol=1e-6)


def test_large_odd_shapes():
    # Row and column reductions over sizes that are not multiples of any vector width, split across threads.
    torch.manual_seed(10)
    b = torch.randn(257, 1031)

    def f(b):
        return b.sum(0), b.sum(1), b.amax(0), b.amin(1), b.mean(0), b.max(0), b.argmin(1), b.t().sum(1), \
            b[:, 3:].softmax(-1), b[1:].log_softmax(0)

    # Sums of 257 or 1031 unit-scale values: rounding differences of order 1e-5 are expected.
    run_compiled(f, b, rtol=1e-5, atol=1e-4)


def _column_reductions(x):
    return (x.sum(0), x.mean(0), x.amax(0), x.amin(0), (x * x).sum(0, keepdim=True),
            torch.exp(x).sum(0) / x.shape[0])


def test_column_reductions_run_in_lanes(tmp_path):
    """Reductions down columns (the outer index is the unit-stride dim) run blocks of outer indices in
    vector lanes (Kernel::lanes); every lane tail (column counts around the 64-lane block and the
    16-wide vector) and a strided view agree with eager, forward and gradient."""
    torch.manual_seed(11)
    for cols in (16, 17, 63, 64, 65, 130, 192):
        x = torch.randn(37, cols).requires_grad_()
        run_compiled(_column_reductions, x, grad=True, rtol=1e-5, atol=1e-5,
                     options={"debug_dir": str(tmp_path / str(cols))})
    # Every other row and column of a wider tensor: lanes read with a stride of 2.
    wide = torch.randn(80, 300)
    run_compiled(lambda w: _column_reductions(w[::2, 1::2]), wide, rtol=1e-5, atol=1e-5)
    plans = "".join(p.read_text() for p in tmp_path.rglob("90-kernels.txt"))
    assert "lanes=64" in plans, plans


def test_norm_weight_gradient_in_lanes(tmp_path):
    """The RMSNorm weight gradient sums over batch and tokens (two reduced loops) per channel, the
    shape of the Transformer's backward; with an embedding in front, its lanes read a gathered row."""
    torch.manual_seed(12)
    emb = torch.randn(50, 96).requires_grad_()
    w = (1 + 0.1 * torch.randn(96)).requires_grad_()
    ids = torch.randint(0, 50, (3, 40))

    def f(emb, w, ids):
        return rms_norm(emb[ids], w) * 2

    run_compiled(f, emb, w, ids, grad=True, rtol=1e-4, atol=1e-4, options={"debug_dir": str(tmp_path)})
    plans = "".join(p.read_text() for p in tmp_path.rglob("90-kernels.txt"))
    assert "lanes=64" in plans, plans


def test_column_reduction_special_values_and_empty_columns():
    x = torch.randn(40, 70)
    x[3, 5] = float("nan")
    x[:, 7] = float("-inf")
    x[10, 9] = float("inf")
    e = torch.randn(0, 70)
    run_compiled(lambda x, e: (x.amax(0), x.amin(0), x.sum(0), e.sum(0), e.amax(1)), x, e)


def test_long_column_reduction_accuracy_matches_eager():
    # 2^18 rows per column: a running sum per lane would lose ~3 digits; the lanes' three-level sum
    # (partials of 256 rows, then of 64 partials) must stay near eager's cascade sum.
    torch.manual_seed(13)
    x = torch.rand(1 << 18, 24) + 0.5
    got, eager, _ = run_compiled(lambda x: (x.sum(0), x.mean(0)), x, rtol=1e-4, atol=0)
    ref = (x.double().sum(0), x.double().mean(0))
    for g, e, r in zip(got, eager, ref):
        kiln_err = (g.double() - r).abs().max().item()
        eager_err = (e.double() - r).abs().max().item()
        assert kiln_err <= max(8 * eager_err, 1e-6 * r.abs().max().item()), (kiln_err, eager_err)
