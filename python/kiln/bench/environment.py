"""The machine and process state a run depends on: CPU name, thread count, compile cache directories."""

import contextlib
import os
import platform
import shutil
import statistics
import tempfile
import time

# Where each compiling contender keeps its on-disk cache.
CACHE_ENV = ("TORCHINDUCTOR_CACHE_DIR", "KILN_CACHE_DIR")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@contextlib.contextmanager
def compile_caches(policy: str):
    """policy "fresh": empty cache dirs for this run, so first-call compile times are cold; "user": leave as is.

    Yields a description for the report header. Environment variables are restored afterwards
    (the harness also runs inside pytest).
    """
    if policy != "fresh":
        yield "the user's compile caches (compile times may be warm)"
        return
    root = tempfile.mkdtemp(prefix="kiln-bench-cache-")
    saved = {k: os.environ.get(k) for k in CACHE_ENV}
    try:
        for k in CACHE_ENV:
            path = os.path.join(root, k.lower())
            os.makedirs(path)
            os.environ[k] = path
        yield "empty at the start of the run (fresh TORCHINDUCTOR_CACHE_DIR and KILN_CACHE_DIR)"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(root, ignore_errors=True)


def parallel_region_probe_ms(calls: int = 20) -> float:
    """Median time of a small op that ATen runs on all threads (x.pow(2), 221k floats; ~0.03 ms when idle).

    When another process holds a core, every OpenMP region waits for a descheduled thread: on the shared
    2-core machines here that costs ~8 ms per region, which inflates eager and Inductor far more than
    a pool that lets the caller finish the work alone. The header reports it so nobody quotes such a run.
    """
    import torch

    x = torch.randn(1152, 192)
    x.pow(2)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        x.pow(2)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


STALL_MS = 1.0  # a probe above this: OpenMP regions were stalling


def stall_probe() -> float:
    """A cheap probe (~0.3 ms when idle) taken around each measurement; rows keep the worse of the two."""
    return parallel_region_probe_ms(calls=8)
