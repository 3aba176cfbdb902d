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


def _momentum_step(p, grad, m):
    """Reads and updates p and m, like an optimizer step."""
    m.mul_(0.9).add_(grad, alpha=0.1)
    p.add_(m * m.abs().sqrt(), alpha=-0.01)


def _momentum_state():
    g = torch.Generator().manual_seed(0)
    p, grad, m = (torch.randn(64, 33, generator=g) for _ in range(3))
    return p, grad, m, p.clone(), m.clone()


def test_inputs_read_and_updated_like_an_optimizer_step():
    p, grad, m, want_p, want_m = _momentum_state()
    step = _momentum_step

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


def _runners(monkeypatch):
    """The KilnGraphs compiled from here on (to see which outputs were written in place)."""
    import kiln.backend as backend

    made = []
    real = backend.compile_graph

    def spy(*args, **kwargs):
        r = real(*args, **kwargs)
        made.append(r)
        return r

    monkeypatch.setattr(backend, "compile_graph", spy)
    return made


def test_optimizer_state_is_updated_in_place(monkeypatch):
    # p and m are read and written: the planner proves each element is read just before it is
    # overwritten, so the new values go straight into the caller's tensors (no second buffer, no copy).
    made = _runners(monkeypatch)
    p, grad, m, want_p, want_m = _momentum_state()
    with torch.no_grad():
        f = _compiled(_momentum_step)
        for _ in range(3):
            _momentum_step(want_p, grad, want_m)
            f(p, grad, m)
    torch.testing.assert_close(m, want_m, rtol=1e-5, atol=1e-6)  # fused multiply-adds round once
    torch.testing.assert_close(p, want_p, rtol=1e-5, atol=1e-6)
    (runner,) = made
    assert sorted(runner.write_into.values()) == [0, 2], runner.write_into  # p and m, not grad


def test_adamw_step_matches_eager_and_writes_in_place(monkeypatch):
    import copy

    from kiln.models import make_model, make_tokens

    made = _runners(monkeypatch)
    m1 = make_model("tiny")
    m2 = copy.deepcopy(m1)
    o1 = torch.optim.AdamW(m1.parameters(), lr=1e-2, weight_decay=0.1)
    o2 = torch.optim.AdamW(m2.parameters(), lr=1e-2, weight_decay=0.1)
    tokens = make_tokens("tiny")
    torch._dynamo.reset()
    step2 = torch.compile(o2.step, backend="kiln")
    for _ in range(3):
        for model in (m1, m2):
            model.zero_grad()
            model(tokens).float().pow(2).mean().backward()
        o1.step()
        with StatsWatch() as w:
            step2()
        assert_kiln_ran(w.delta)
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    in_place = sum(len(r.write_into) for r in made if r is not None)
    assert in_place >= 3 * len(list(m1.parameters())), in_place  # every p, exp_avg, exp_avg_sq


def test_reads_of_other_elements_keep_a_separate_buffer(monkeypatch):
    # Each of these reads the old value at another element (or all of them) after some are replaced:
    # writing in place would read new values. The planner must refuse, and the result must be eager's.
    made = _runners(monkeypatch)
    cases = [
        lambda x: x.copy_(x.roll(1, 0) * 2),
        lambda x: x.add_(x.sum()),
        lambda x: x.copy_(x.t() + 1),
        lambda x: x.copy_(torch.cumsum(x, 0)),
    ]
    for fn in cases:
        x = torch.randn(17, 17)
        want = fn(x.clone())
        made.clear()
        with torch.no_grad():
            _compiled(fn)(x)
        torch.testing.assert_close(x, want)
        assert all(not r.write_into for r in made if r is not None)
