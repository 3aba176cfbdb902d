"""Shared fixtures for kiln's Python tests.

* One kiln disk cache for the whole test run: KILN_CACHE_DIR is pointed at a session temp dir
  (unless the caller already set it) before kiln compiles anything, and child processes inherit it.
* TorchDynamo is reset between tests, so no test sees another's compiled code.
* `run_compiled(fn, *args, **compile_kwargs)` compiles fn with backend="kiln", runs it, checks every
  output (and optionally every gradient) against eager, and checks through kiln.stats() that kiln's
  native code actually ran and nothing fell back to eager.
* `run_python(code)` runs a fresh Python process with the test environment.
* `every_isa`: a test module that lists it (`pytestmark = pytest.mark.usefixtures("every_isa")`) runs
  each test once per ISA level this CPU executes (KILN_ISA forces the level of everything compiled),
  and checks that every graph the test compiled was compiled for that level.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest

if not os.environ.get("KILN_CACHE_DIR"):
    _CACHE_DIR = tempfile.mkdtemp(prefix="kiln-test-cache-")
    os.environ["KILN_CACHE_DIR"] = _CACHE_DIR
    atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)
# Tests run the IR verifier after every pass (an internal error is never expected by a test).
os.environ.setdefault("KILN_VERIFY", "1")

import torch  # noqa: E402

import kiln  # noqa: E402  (stats() for the helpers below)

# Counters that must not grow when a graph runs entirely in kiln.
_NO_FALLBACK_COUNTERS = ("eager_islands", "eager_calls", "graphs_failed")


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def stats_delta(before: dict, after: dict) -> dict:
    """after - before for numeric counters; for fallback_ops the per-op count that was added."""
    d = {}
    for k, v in after.items():
        if k == "fallback_ops":
            old = before.get(k, {})
            d[k] = {op: n - old.get(op, 0) for op, n in v.items() if n - old.get(op, 0)}
        elif isinstance(v, (int, float)):
            d[k] = v - before.get(k, 0)
    for k in _NO_FALLBACK_COUNTERS:
        d.setdefault(k, 0)
    d.setdefault("fallback_ops", {})
    return d


class StatsWatch:
    """with StatsWatch() as w: ...; w.delta is the kiln.stats() change over the block."""

    def __enter__(self):
        self.before = kiln.stats()
        self.delta = None
        return self

    def __exit__(self, *exc):
        self.delta = stats_delta(self.before, kiln.stats())
        return False


def default_tol(dtype):
    if dtype == torch.float64:
        return dict(rtol=1e-10, atol=1e-12)
    if dtype.is_floating_point:
        return dict(rtol=1e-5, atol=1e-5)
    return dict(rtol=0, atol=0)


def _flat(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        r = []
        for o in out:
            r.extend(_flat(o))
        return r
    return [out]


def assert_same(got, expected, *, rtol=None, atol=None, what="output"):
    """Every tensor in got equals expected: same type, shape, dtype; values within tolerance (NaN == NaN)."""
    g, e = _flat(got), _flat(expected)
    assert len(g) == len(e), f"{what}: {len(g)} values vs eager's {len(e)}"
    for i, (a, b) in enumerate(zip(g, e)):
        if not isinstance(b, torch.Tensor):
            assert a == b, f"{what}[{i}]: {a!r} != eager {b!r}"
            continue
        assert isinstance(a, torch.Tensor), f"{what}[{i}] is {type(a)}, eager gives a tensor"
        assert a.shape == b.shape, f"{what}[{i}]: shape {tuple(a.shape)} != eager {tuple(b.shape)}"
        assert a.dtype == b.dtype, f"{what}[{i}]: dtype {a.dtype} != eager {b.dtype}"
        tol = default_tol(b.dtype)
        if b.dtype.is_floating_point:
            tol = dict(rtol=tol["rtol"] if rtol is None else rtol, atol=tol["atol"] if atol is None else atol)
        torch.testing.assert_close(a, b, equal_nan=True, check_stride=False, msg=lambda m, i=i: f"{what}[{i}]: {m}",
                                   **tol)


def _differentiable(t):
    return isinstance(t, torch.Tensor) and t.requires_grad and (t.dtype.is_floating_point or t.dtype.is_complex)


def assert_kiln_ran(delta, *, allow_fallback=False):
    assert delta["calls"] > 0, f"kiln's native code never ran: {delta}"
    if not allow_fallback:
        assert delta["fallback_ops"] == {}, f"ops fell back to eager: {delta['fallback_ops']}"
        for k in _NO_FALLBACK_COUNTERS:
            assert delta[k] == 0, f"{k} grew by {delta[k]}: {delta}"


def run_compiled(fn, *args, rtol=None, atol=None, grad=False, grad_rtol=None, grad_atol=None, allow_fallback=False,
                 reset=True, **compile_kwargs):
    """Compiles fn with backend="kiln", runs it on args and compares with eager fn(*args).

    grad=True also compares torch.autograd.grad of every floating output (with fixed random cotangents)
    with respect to every argument that requires grad. Returns (compiled outputs, eager outputs, stats delta).
    """
    if reset:
        torch._dynamo.reset()
    compiled = torch.compile(fn, backend="kiln", **compile_kwargs)
    with torch.no_grad() if not grad else contextlib.nullcontext():
        expected = fn(*args)
    with StatsWatch() as w:
        with torch.no_grad() if not grad else contextlib.nullcontext():
            got = compiled(*args)
        if grad:
            leaves = [a for a in args if _differentiable(a)]
            assert leaves, "grad=True needs an argument with requires_grad"
            outs_g = [o for o in _flat(got) if _differentiable(o)]
            outs_e = [o for o in _flat(expected) if _differentiable(o)]
            assert len(outs_g) == len(outs_e) and outs_e, "no differentiable outputs to check gradients of"
            gen = torch.Generator().manual_seed(1234)
            cots = [torch.randn(o.shape, generator=gen, dtype=o.dtype) for o in outs_e]
            grads_g = torch.autograd.grad(outs_g, leaves, cots, allow_unused=True)
    assert_same(got, expected, rtol=rtol, atol=atol)
    if grad:
        grads_e = torch.autograd.grad(outs_e, leaves, cots, allow_unused=True)
        for i, (a, b) in enumerate(zip(grads_g, grads_e)):
            if b is None:
                assert a is None or not a.any(), f"grad[{i}]: kiln gives a gradient where eager gives none"
                continue
            assert a is not None, f"grad[{i}]: kiln gives no gradient"
            assert_same(a, b, rtol=grad_rtol if grad_rtol is not None else rtol,
                        atol=grad_atol if grad_atol is not None else atol, what=f"grad[{i}]")
    assert_kiln_ran(w.delta, allow_fallback=allow_fallback)
    return got, expected, w.delta


def runnable_isas() -> list[str]:
    """The ISA levels this CPU runs: baseline, avx2, avx512 where available, and the CPU's own."""
    levels = []
    for name in ("baseline", "avx2", "avx512", kiln.target()["detected_isa"]):
        try:
            kiln.target(name)
        except Exception:
            continue
        if name not in levels:
            levels.append(name)
    return levels


@pytest.fixture(params=runnable_isas())
def every_isa(request, monkeypatch):
    monkeypatch.setenv("KILN_ISA", request.param)
    before = dict(kiln.stats()["graphs_by_isa"])
    yield request.param
    after = kiln.stats()["graphs_by_isa"]
    other = {isa: n - before.get(isa, 0) for isa, n in after.items()
             if isa != request.param and n != before.get(isa, 0)}
    assert not other, f"graphs compiled for another level than {request.param}: {other}"


@pytest.fixture
def kiln_stats():
    """A StatsWatch factory: `with kiln_stats() as w: ...` then inspect w.delta."""
    return StatsWatch


@pytest.fixture
def run_python(tmp_path):
    """Runs `code` in a fresh interpreter (the test environment, KILN_CACHE_DIR included).

    Returns the CompletedProcess; fails the test with the child's output when it exits non-zero
    (unless check=False).
    """

    def run(code: str, *, env: dict | None = None, cwd=None, check=True, timeout=300):
        full_env = dict(os.environ)
        full_env.pop("PYTHONPATH", None)  # the installed package, not a source checkout
        full_env.update(env or {})
        p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=str(cwd or tmp_path), env=full_env,
                           capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            pytest.fail(f"child exited with {p.returncode}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr[-6000:]}")
        return p

    return run
