"""Inputs mutated by an inference graph: written into the caller's tensor, in place when nothing reads them."""
import torch

from conftest import StatsWatch, assert_kiln_ran


def _compiled(fn):
    torch._dynamo.reset()
    return torch.compile(fn, backend="kiln")


def test_output_buffer_is_written_in_place():
    a, b, c = (torch.randn(300, 70) for _ in range(3))
    o = torch.empty(300, 70)
    ptr = o.data_ptr()
    f = _compiled(lambda a, b, c, o: o.copy_(a * b + c))
    with StatsWatch() as w:
        r = f(a, b, c, o)
        r2 = f(a + 1, b, c, o)
    assert_kiln_ran(w.delta)
    torch.testing.assert_close(o, (a + 1) * b + c)
    assert r is o and r2 is o and o.data_ptr() == ptr


def test_strided_destination_still_gets_the_values():
    a = torch.randn(40, 30)
    o = torch.empty(30, 40).t()  # column-major destination
    f = _compiled(lambda a, o: o.copy_(a.exp()))
    with StatsWatch() as w:
        f(a, o)
    assert_kiln_ran(w.delta)
    torch.testing.assert_close(o, a.exp())


def test_inputs_read_and_updated_like_an_optimizer_step():
    g = torch.Generator().manual_seed(0)
    p, grad, m = (torch.randn(64, 33, generator=g) for _ in range(3))
    want_p, want_m = p.clone(), m.clone()

    def step(p, grad, m):
        m.mul_(0.9).add_(grad, alpha=0.1)
        p.add_(m * m.abs().sqrt(), alpha=-0.01)

    with torch.no_grad():
        step(want_p, grad, want_m)
        f = _compiled(step)
        with StatsWatch() as w:
            f(p, grad, m)
    assert_kiln_ran(w.delta)
    torch.testing.assert_close(m, want_m)
    torch.testing.assert_close(p, want_p)


def test_a_returned_value_is_not_the_mutated_input():
    a, b = torch.randn(20), torch.randn(20)
    o = torch.zeros(20)

    def fn(a, b, o):
        y = a * b
        o.copy_(y)
        return y

    y = _compiled(fn)(a, b, o)
    torch.testing.assert_close(o, a * b)
    o.zero_()  # y must be its own tensor, as in eager
    torch.testing.assert_close(y, a * b)
