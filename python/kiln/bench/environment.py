"""The machine and process state a run depends on: CPU name, thread count, compile cache directories."""

import contextlib
import os
import platform
import shutil
import tempfile

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
