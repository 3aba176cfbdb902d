"""Peak memory of one contender on one cell, measured in a subprocess of its own.

CPU PyTorch has no allocator statistics and the RSS high-water mark only rises, so each measurement
gets a fresh process: peak = rise of the high-water mark over the RSS just before the first call
(the first call includes compilation, as a user sees it). Like the timing process, the child first
pays the one-time process warm-up (imports, toolchain probing) on a tiny unrelated function.

The high-water mark is read as VmHWM from /proc/self/status, not from getrusage(RUSAGE_SELF).ru_maxrss:
on Linux ru_maxrss also keeps the peak of the image the process exec'd from, so a child spawned by the
(large) benchmark process reports the parent's peak. VmHWM is per address space and can be reset
(/proc/self/clear_refs "5"). Where /proc is missing we fall back to ru_maxrss.
"""

import json
import os
import resource
import subprocess
import sys

CHILD_TIMEOUT_S = 900
# Iterations after the first call: the peak comes with the first call (compilation, arenas, caches);
# one more shows anything that grows on the second. More would only cost time on the largest cells.
REPEATS = 1


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss_mb() -> float:
    kb = _status_kb("VmRSS")
    return (kb if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024.0


def high_water_mb() -> float:
    kb = _status_kb("VmHWM")
    return (kb if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024.0


def reset_high_water() -> bool:
    """Set the high-water mark to the current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_in_subprocess(spec: dict, env: dict | None = None) -> dict:
    """Run `spec` (a workload description) in a fresh interpreter; returns {"peak_mb": ...} or {"error": ...}."""
    import torch

    spec = dict(spec, warmup=REPEATS, matmul_precision=torch.get_float32_matmul_precision())
    cmd = [sys.executable, "-m", "kiln.bench.memory", json.dumps(spec)]
    child_env = dict(os.environ if env is None else env)
    # The child must import kiln.bench the same way we did.
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in [_package_root(), child_env.get("PYTHONPATH")] if p)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"error": f"memory child timed out after {CHILD_TIMEOUT_S} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("KILN_BENCH_MEMORY "):
            return json.loads(line[len("KILN_BENCH_MEMORY ") :])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"memory child exit {proc.returncode}: {tail[:80]}"}


def _package_root() -> str:
    # .../python/kiln/bench/memory.py -> .../python (works for a namespace or a regular kiln package).
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _child(spec: dict) -> dict:
    import torch

    from .contenders import parse_contenders, warm_up_process

    torch.set_num_threads(spec["threads"])
    torch.set_float32_matmul_precision(spec.get("matmul_precision", "highest"))
    contender = parse_contenders(spec["contender"], with_autotune=False, modes=False)[-1]
    # The same one-time process warm-up the timing process pays before its first cell (imports of
    # Dynamo, AOTAutograd and the backend, toolchain probing): module code is not the cell's memory.
    warm_up_process(contender)
    if spec["suite"] in ("attention", "sdpa"):
        from .attention_grid import AttentionCell as Workload
    else:
        from .transformer_rows import TransformerCase as Workload
    work = Workload(spec, contender)  # builds inputs before the baseline is taken
    before = current_rss_mb()
    reset_high_water()
    work.run_for_memory()  # first call (compilation) + REPEATS more iterations
    peak = high_water_mb() - before
    return {"peak_mb": round(max(peak, 0.0), 1), "rss_before_mb": round(before, 1)}


if __name__ == "__main__":
    try:
        result = _child(json.loads(sys.argv[1]))
    except Exception as exc:  # the parent puts the reason in the table cell
        from .contenders import short_reason

        result = {"error": short_reason(exc)}
    print("KILN_BENCH_MEMORY " + json.dumps(result), flush=True)
