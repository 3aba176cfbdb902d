"""Public API: kiln.compile, kiln.stats and kiln.target."""
from __future__ import annotations

import collections
import threading

import torch

_lock = threading.Lock()
_py_stats: collections.Counter = collections.Counter()
fallback_ops: collections.Counter = collections.Counter()


def count(key: str, n: float = 1) -> None:
    with _lock:
        _py_stats[key] += n


def stats() -> dict:
    """Counters since process start: graphs compiled, kernels run, cache hits/misses, fallbacks."""
    from kiln import _C

    s = dict(_C.stats())
    s["cache_misses"] = s["compiler_runs"]
    s["cache_hits"] = s["cache_disk_hits"] + s["cache_memory_hits"]
    with _lock:
        s.update(_py_stats)
        s["fallback_ops"] = dict(fallback_ops)
    s.setdefault("eager_islands", 0)
    s.setdefault("eager_calls", 0)
    return s


def target(isa: str | None = None) -> dict:
    """The machine kiln compiles for: ISA level, vector width and registers, caches, cores, CPU.

    With `isa` ("baseline", "avx2", "avx512", "avx512_amx"), this machine at that level (what
    options={"isa": ...} compiles for); without, the process's level ($KILN_ISA or the CPU's best).
    """
    from kiln import _C

    return dict(_C.target(isa or ""))


def reset_stats() -> None:
    from kiln import _C

    _C.reset_stats()
    with _lock:
        _py_stats.clear()
        fallback_ops.clear()


def compile(model=None, *, mode: str | None = None, options: dict | None = None, **kwargs):
    """torch.compile(model, backend="kiln", ...), with kiln's mode/options folded together."""
    if mode is not None and options is not None:
        options = {**options, "mode": mode}
        mode = None
    return torch.compile(model, backend="kiln", mode=mode, options=options, **kwargs)
