"""Wall-clock timing of one callable: warm-up, then at least N iterations or T seconds."""

import gc
import statistics
import time
from dataclasses import dataclass


@dataclass
class Stats:
    mean_ms: float
    std_ms: float
    median_ms: float
    n: int

    def fields(self, prefix: str) -> dict:
        return {
            f"{prefix}_mean_ms": self.mean_ms,
            f"{prefix}_std_ms": self.std_ms,
            f"{prefix}_median_ms": self.median_ms,
            f"{prefix}_n": self.n,
        }


def measure(step, *, prepare=None, warmup=3, min_iters=10, min_seconds=2.0, max_iters=100000) -> Stats:
    """Time `step(prepared)` where `prepared = prepare()` runs untimed before every call.

    Runs until both `min_iters` iterations and `min_seconds` of timed work are done.
    """
    for _ in range(warmup):
        arg = prepare() if prepare else None
        result = step(arg) if prepare else step()
        del result, arg
    times = []
    total = 0.0
    gc.collect()
    # Python's collector would otherwise run at arbitrary points inside timed calls.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        while (len(times) < min_iters or total < min_seconds) and len(times) < max_iters:
            arg = prepare() if prepare else None
            t0 = time.perf_counter()
            result = step(arg) if prepare else step()
            t1 = time.perf_counter()
            # Free the result (and the autograd graph it holds) outside the timed region.
            del result, arg
            times.append(t1 - t0)
            total += t1 - t0
    finally:
        if was_enabled:
            gc.enable()
    return _stats(times)


def measure_interleaved(steps, *, warmup=3, min_iters=10, min_seconds=2.0, max_iters=100000) -> list[Stats]:
    """Time several callables side by side: rounds of one timed call each, the starting one rotating.

    A host whose speed drifts over minutes (shared machines: up to 2x here) then slows every contender
    alike instead of whichever ran during the slow minute, so their ratio holds. Each timed call comes
    right after an untimed call of the same callable: timed back to back with a different contender,
    a call would start with the caches (packed operands, outputs, weights) the other left behind,
    always the same neighbour in a rotation. In a loop of one model, as users run it, its own
    previous call is what precedes it. Runs until each has `min_iters` iterations and `min_seconds`
    of timed work.
    """
    for step in steps:
        for _ in range(warmup):
            result = step()
            del result
    times = [[] for _ in steps]
    totals = [0.0] * len(steps)
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        rounds = 0
        while any(len(t) < min_iters or total < min_seconds for t, total in zip(times, totals)) and rounds < max_iters:
            for k in range(len(steps)):
                i = (rounds + k) % len(steps)
                del_result = steps[i]()  # untimed: the contender's own previous call precedes the timed one
                del del_result
                t0 = time.perf_counter()
                result = steps[i]()
                t1 = time.perf_counter()
                del result
                times[i].append(t1 - t0)
                totals[i] += t1 - t0
            rounds += 1
    finally:
        if was_enabled:
            gc.enable()
    return [_stats(t) for t in times]


def _stats(times) -> Stats:
    ms = [t * 1e3 for t in times]
    return Stats(
        mean_ms=statistics.fmean(ms),
        std_ms=statistics.stdev(ms) if len(ms) > 1 else 0.0,
        median_ms=statistics.median(ms),
        n=len(ms),
    )


def timed_call(fn, *args):
    """(result, seconds) of one call: used for first calls, where compilation happens."""
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0
