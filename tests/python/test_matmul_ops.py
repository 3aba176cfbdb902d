"""Matrix products compiled by kiln: mm/bmm/addmm/baddbmm/matmul/linear/einsum, forward and gradients."""
import pytest
import torch
import torch.nn.functional as F
from conftest import StatsWatch, assert_kiln_ran, run_compiled

pytestmark = pytest.mark.usefixtures("every_isa")  # once per ISA level this CPU runs


def _mms(a, b, bt, c, bias, x3, w):
    """a (17, 65), b (65, 3), bt (3, 65) used transposed, c (65, 1), bias (3,), x3 (2, 5, 65), w (3, 65)."""
    return (
        a @ b, torch.mm(a, bt.t()), a.t().t() @ c, torch.addmm(bias, a, b), torch.addmm(bias, a, b, beta=0.5, alpha=-2),
        torch.addmm(bias.unsqueeze(0).expand(17, 3), a, b, beta=0),
        F.linear(a, w), F.linear(a, w, bias), F.linear(x3, w, bias), x3 @ b, (a.t() @ a)[:3, :5],
        torch.matmul(a[0], b), torch.matmul(a, b[:, 0]), torch.matmul(a[0], b[:, 0]),  # 1-D operands
        a[:1] @ b, a @ b[:, :1], b.t() @ bt.t(),
    )


def _shapes(dtype, requires_grad):
    g = torch.Generator().manual_seed(0)

    def r(*s):
        return torch.randn(*s, generator=g, dtype=dtype).requires_grad_(requires_grad)

    return r(17, 65), r(65, 3), r(3, 65), r(65, 1), r(3), r(2, 5, 65), r(3, 65)


def test_mm_family_float32_forward_and_grad():
    run_compiled(_mms, *_shapes(torch.float32, True), grad=True, rtol=1e-5, atol=5e-5)


def test_mm_family_float64_forward_and_grad():
    run_compiled(_mms, *_shapes(torch.float64, True), grad=True)


def _batched(p, q, qt, m, v, bias):
    """p (4, 17, 65), q (4, 65, 3), qt (4, 3, 65), m (65, 3), v (65,), bias (17, 3)."""
    return (
        torch.bmm(p, q), torch.bmm(p, qt.transpose(1, 2)), p @ m, p @ v, torch.baddbmm(bias, p, q),
        torch.baddbmm(bias, p, q, beta=2.0, alpha=0.5),
        p.unsqueeze(1) @ q.unsqueeze(0),  # (4, 1, 17, 65) @ (1, 4, 65, 3): batch broadcast
        p[:1] @ q,  # batch 1 against 4
        torch.matmul(p.transpose(0, 1)[:, :2], m),  # a non-contiguous batched operand
        torch.einsum("bik,bkj->bij", p, q), torch.einsum("bik,kj->bij", p, m), torch.einsum("bik,bjk->bij", p, qt),
        torch.einsum("bik,k->bi", p, v), torch.einsum("bij,bij->b", p, p), torch.einsum("bik,bkj->ij", p, q),
        torch.einsum("...qd,...kd->...qk", p, p),
    )


def _batched_inputs(dtype, requires_grad):
    g = torch.Generator().manual_seed(1)

    def r(*s):
        return torch.randn(*s, generator=g, dtype=dtype).requires_grad_(requires_grad)

    return r(4, 17, 65), r(4, 65, 3), r(4, 3, 65), r(65, 3), r(65), r(17, 3)


def test_batched_and_einsum_float32_forward_and_grad():
    run_compiled(_batched, *_batched_inputs(torch.float32, True), grad=True, rtol=1e-5, atol=5e-5)


def test_batched_and_einsum_float64_forward_and_grad():
    run_compiled(_batched, *_batched_inputs(torch.float64, True), grad=True)


def test_transposed_and_sliced_operands():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(65, 17, generator=g).t()  # (17, 65) column-major
    b = torch.randn(3, 65, generator=g).t()  # (65, 3) column-major
    big = torch.randn(40, 130, generator=g)
    sl = big[5:22, ::2]  # (17, 65), row stride 130, column stride 2
    p = torch.randn(65, 4, 17, generator=g).permute(1, 2, 0)  # (4, 17, 65), inner stride 68

    def f(a, b, sl, p):
        return a @ b, sl @ b, a.t() @ sl, p @ b, torch.bmm(p, p.transpose(1, 2)), F.linear(sl, a)

    run_compiled(f, a, b, sl, p, rtol=1e-5, atol=5e-5)


ODD_SIZES = [(1, 1, 1), (1, 17, 3), (3, 1, 65), (65, 3, 1), (17, 65, 17), (64, 64, 65), (5, 128, 33)]


def test_odd_sizes():
    # Every (m, k, n) in one compiled graph: mm, addmm and a float64 mm per size.
    g = torch.Generator().manual_seed(4)
    args = []
    for m, k, n in ODD_SIZES:
        args += [torch.randn(m, k, generator=g), torch.randn(k, n, generator=g), torch.randn(n, generator=g)]

    def f(*args):
        out = []
        for i in range(0, len(args), 3):
            a, b, bias = args[i:i + 3]
            out += [a @ b, torch.addmm(bias, a, b), a.double() @ b.double()]
        return tuple(out)

    run_compiled(f, *args, rtol=1e-5, atol=5e-5)


def test_large_k_accuracy():
    # K = 4096: compare against a float64 reference; kiln's error must be of eager's order.
    g = torch.Generator().manual_seed(3)
    a = torch.randn(8, 4096, generator=g)
    b = torch.randn(4096, 5, generator=g)
    got, eager, _ = run_compiled(lambda a, b: a @ b, a, b, rtol=1e-4, atol=1e-3)
    ref = a.double() @ b.double()
    kiln_err = (got.double() - ref).abs().max().item()
    eager_err = (eager.double() - ref).abs().max().item()
    assert kiln_err <= max(8 * eager_err, 1e-4), (kiln_err, eager_err)


def test_zero_size_matmul():
    a = torch.randn(3, 0)
    b = torch.randn(0, 4)
    c = torch.randn(0, 5)
    bias = torch.randn(4)
    run_compiled(lambda a, b, c, bias: (a @ b, torch.addmm(bias, a, b), c.t() @ c, b.t() @ c), a, b, c, bias)


def test_nan_and_inf_propagate_through_mm():
    a = torch.tensor([[1.0, float("nan")], [2.0, 3.0], [float("inf"), 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    bias = torch.tensor([float("nan"), 1.0])

    def f(a, b, bias):
        # beta=0 ignores the bias entirely, NaN included (eager's documented behaviour).
        return a @ b, torch.addmm(bias, b, b), torch.addmm(bias, b, b, beta=0)

    run_compiled(f, a, b, bias)


def test_float32_matmul_precision_reaches_the_gemm():
    """PyTorch's float32 matmul precision at compile time (or options["matmul_precision"]) decides how
    many bfloat16 planes kiln's AMX GEMM keeps of each operand: "highest" is float, "high" two planes,
    "medium" one. Without AMX (at this ISA level) every setting computes in float."""
    import kiln

    # x = 1 + 2^-10 + 2^-18: rounded to one bfloat16 it is 1, to two 1 + 2^-10; w = 1 is exact. Every
    # partial sum of up to 32 such terms is exact in float, whatever the order.
    x, w = torch.full((128, 32), 1.0 + 2.0**-10 + 2.0**-18), torch.ones(128, 32)
    exact = 32 * (1.0 + 2.0**-10 + 2.0**-18)
    want = {"highest": exact, "high": 32 * (1.0 + 2.0**-10), "medium": 32.0} if kiln.target()["amx"] else \
        {p: exact for p in ("highest", "high", "medium")}

    def linear(options=None):
        torch._dynamo.reset()
        with StatsWatch() as watch:
            got = torch.compile(torch.nn.functional.linear, backend="kiln", options=options)(x, w)
        assert_kiln_ran(watch.delta)
        return got

    saved = torch.get_float32_matmul_precision()
    try:
        for precision, value in want.items():
            torch.set_float32_matmul_precision(precision)
            got = linear()
            assert torch.all(got == value), (precision, got.flatten()[:4])
        # The option overrides PyTorch's setting (which is "medium" here).
        assert torch.all(linear({"matmul_precision": "highest"}) == exact)
    finally:
        torch.set_float32_matmul_precision(saved)


def test_matmul_precision_option_is_checked():
    import pytest

    with pytest.raises(Exception, match="matmul_precision"):
        torch.compile(lambda a: a @ a, backend="kiln", options={"matmul_precision": "fast"})(torch.ones(2, 2))


def test_row_epilogues_after_gemms(tmp_path):
    """Kernels that work row by row on a GEMM's result run as its row epilogue (on the GEMM's threads,
    per finished block of rows); forward and gradients match eager."""
    def f(x, w1, w3, w2, g):
        h = F.silu(x @ w1) * (x @ w3)
        o = h @ w2
        return o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + 1e-5) * g

    gen = torch.Generator().manual_seed(5)
    shapes = ((2, 96, 64), (64, 128), (64, 128), (128, 64), (64,))
    args = [torch.randn(*s, generator=gen).requires_grad_() for s in shapes]
    run_compiled(f, *args, grad=True, rtol=1e-4, atol=1e-4, options={"debug_dir": str(tmp_path)})
    plans = "".join(p.read_text() for p in tmp_path.rglob("90-kernels.txt"))
    assert "rows then" in plans, plans


def test_gemm_writes_a_view_output_in_place(tmp_path):
    """An output that is a reshape of a whole matmul result (an lm_head's logits) is written by the
    GEMM straight into the output buffer; kernels that read the result afterwards read it there."""
    def f(x, w):
        logits = (x.reshape(-1, x.shape[-1]) @ w.t()).reshape(x.shape[0], x.shape[1], -1)
        return logits, logits.softmax(-1).amax(-1)

    gen = torch.Generator().manual_seed(6)
    x, w = torch.randn(3, 7, 16, generator=gen).requires_grad_(), torch.randn(40, 16, generator=gen).requires_grad_()
    run_compiled(f, x, w, grad=True, rtol=1e-5, atol=1e-5, options={"debug_dir": str(tmp_path)})
    plans = "".join(p.read_text() for p in tmp_path.rglob("90-kernels.txt"))
    assert "extern matmul -> %" in plans and "(out0)" in plans, plans


def test_sibling_matmuls_run_as_one_grouped_gemm(tmp_path):
    """Projections of one input (Q, K, V; SwiGLU's w1 and w3) are one grouped GEMM call, with the
    epilogue reading both results row by row; their weight gradients (sharing the input) are one call
    too. Parts that are whole micro-tiles run as one problem, others part by part; transposed and
    sliced weights, float64, forward and gradients match eager."""
    def f(x, wq, wk, wv, w1, w3):
        q, k, v = F.linear(x, wq), F.linear(x, wk), F.linear(x, wv)
        h = F.silu(F.linear(x, w1)) * F.linear(x, w3)
        return q * k + v, h

    gen = torch.Generator().manual_seed(9)
    for dtype, d, dff in ((torch.float32, 64, 128), (torch.float32, 40, 72), (torch.float64, 64, 96)):
        def r(*s):
            return torch.randn(*s, generator=gen, dtype=dtype)  # noqa: B023 (called within this iteration)

        x = r(3, 37, d).requires_grad_()
        wq, wk = r(d, d).requires_grad_(), r(d, d).requires_grad_()
        wv = r(2 * d, d)[::2].requires_grad_()  # every other row: strided, not grouped with wq, wk
        w1 = r(d, dff).t().requires_grad_()  # [dff, d] view of a transposed weight
        w3 = r(d, dff).t().requires_grad_()
        run_compiled(f, x, wq, wk, wv.detach().requires_grad_(), w1.detach().requires_grad_(),
                     w3.detach().requires_grad_(), grad=True, rtol=1e-4, atol=1e-4,
                     options={"debug_dir": str(tmp_path / f"{dtype}{d}")})
    plans = [p.read_text() for p in tmp_path.rglob("90-kernels.txt")]
    grouped = [p for p in plans if "extern matmul -> %" in p and " + %" in p]
    assert len(grouped) >= 3, plans  # each forward groups its siblings
    assert any("rows then" in line and " + %" in line for p in grouped for line in p.splitlines()), grouped
    assert sum("[shared B]" in p for p in plans) >= 3, plans  # each backward groups its weight gradients
