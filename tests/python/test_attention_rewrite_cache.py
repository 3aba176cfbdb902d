"""The attention rewrite's disk cache: a warm start loads the rewritten graph (no ATen trace, no mask
proof), a corrupt entry is recomputed, and a graph without the pattern caches that verdict too."""
import glob
import os

import pytest
import torch
from conftest import StatsWatch, assert_same

import kiln.attention_rewrite as rewrite
from kiln.models import attention


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))
    return tmp_path


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 40, 8, generator=g) for _ in range(3)]


def _compile_and_run(fn, args):
    torch._dynamo.reset()
    with StatsWatch() as w, torch.no_grad():
        got = torch.compile(fn, backend="kiln")(*args)
    assert_same(got, fn(*args), rtol=1e-5, atol=1e-5)
    assert w.delta["calls"] > 0 and w.delta["eager_calls"] == 0, w.delta
    return w.delta


def _forbid_trace(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("the rewrite traced again instead of using its cache entry")

    monkeypatch.setattr(rewrite, "_rewrite", fail)


def test_warm_start_loads_the_rewritten_graph(cache_dir, monkeypatch):
    args = _inputs()
    cold = _compile_and_run(attention, args)
    assert cold["attention_rewrites"] == 1 and cold.get("attention_rewrite_cache_hits", 0) == 0
    assert len(glob.glob(str(cache_dir / "*.blob"))) == 1
    _forbid_trace(monkeypatch)
    warm = _compile_and_run(attention, args)
    assert warm["attention_rewrites"] == 1 and warm["attention_rewrite_cache_hits"] == 1, warm
    assert warm["compiler_runs"] == 0, warm  # same graph text: kiln's own entries hit too


def test_other_shapes_are_other_entries(cache_dir):
    _compile_and_run(attention, _inputs())
    b, s, d = 3, 17, 4
    g = torch.Generator().manual_seed(1)
    other = _compile_and_run(attention, [torch.randn(b, s, d, generator=g) for _ in range(3)])
    assert other.get("attention_rewrite_cache_hits", 0) == 0 and other["attention_rewrites"] == 1
    assert len(glob.glob(str(cache_dir / "*.blob"))) == 2


def test_corrupt_entry_is_recomputed(cache_dir):
    args = _inputs()
    _compile_and_run(attention, args)
    (blob,) = glob.glob(str(cache_dir / "*.blob"))
    with open(blob, "r+b") as f:
        f.seek(os.path.getsize(blob) // 2)
        f.write(b"\x00garbage\x00")
    again = _compile_and_run(attention, args)
    assert again["cache_bad_entries"] == 1, again
    assert again.get("attention_rewrite_cache_hits", 0) == 0 and again["attention_rewrites"] == 1
    assert len(glob.glob(str(cache_dir / "*.blob"))) == 1  # rewritten


def test_no_pattern_verdict_is_cached(cache_dir, monkeypatch):
    def two_matmuls(a, b, c):
        return torch.relu(a @ b.transpose(-2, -1)) @ c

    args = _inputs()
    first = _compile_and_run(two_matmuls, args)
    assert first.get("attention_rewrites", 0) == 0
    _forbid_trace(monkeypatch)
    second = _compile_and_run(two_matmuls, args)
    assert second["attention_rewrite_cache_hits"] == 1 and second.get("attention_rewrites", 0) == 0
