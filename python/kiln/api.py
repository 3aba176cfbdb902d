"""Public API: kiln.compile, kiln.stats and kiln.target."""
from __future__ import annotations

import collections
import threading

import torch

_lock = threading.Lock()
_py_stats: collections.Counter = collections.Counter()
fallback_ops: collections.Counter = collections.Counter()
graphs_by_isa: collections.Counter = collections.Counter()  # compiled graphs per ISA level of their code


def count(key: str, n: float = 1) -> None:
    with _lock:
        _py_stats[key] += n


def count_graph_isa(isa: str) -> None:
    with _lock:
        graphs_by_isa[isa] += 1


def stats() -> dict:
    """Counters since process start: graphs compiled, kernels run, cache hits/misses, fallbacks."""
    from kiln import _C

    s = dict(_C.stats())
    s["cache_misses"] = s["compiler_runs"]
    s["cache_hits"] = s["cache_disk_hits"] + s["cache_memory_hits"]
    with _lock:
        s.update(_py_stats)
        s["fallback_ops"] = dict(fallback_ops)
        s["graphs_by_isa"] = dict(graphs_by_isa)
    s.setdefault("eager_islands", 0)
    s.setdefault("eager_calls", 0)
    return s


def target(isa: str | None = None) -> dict:
    """The machine kiln compiles for: ISA level, vector width and registers, caches, cores, CPU.

    With `isa` ("baseline", "avx2", "avx512", "avx512_amx"), this machine at that level (what
    options={"isa": ...} compiles for); without, the level a compile uses now ($KILN_ISA, else the
    CPU's best).
    """
    from kiln import _C
    from kiln.options import _isa_from_environment

    return dict(_C.target(isa or _isa_from_environment() or ""))


def reset_stats() -> None:
    from kiln import _C

    _C.reset_stats()
    with _lock:
        _py_stats.clear()
        fallback_ops.clear()
        graphs_by_isa.clear()


def compile(model=None, *, mode: str | None = None, options: dict | None = None, **kwargs):
    """torch.compile(model, backend="kiln", ...), with kiln's mode/options folded together."""
    if mode is not None and options is not None:
        options = {**options, "mode": mode}
        mode = None
    return torch.compile(model, backend="kiln", mode=mode, options=options, **kwargs)
