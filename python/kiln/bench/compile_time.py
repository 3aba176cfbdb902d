"""Cold and warm compile time of the TransformerLM forward + backward, each in a fresh process.

Cold: an empty cache directory; warm: the same directory, filled by the cold run. The shared part
(Dynamo + AOTAutograd tracing) is the `null` backend's time (aot_autograd with a pass-through compiler);
the backend's own stages come from its timers where it has them (Inductor's compilation metrics,
`kiln.stats()`).
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from .environment import CACHE_ENV
from .memory import _package_root

CHILD_TIMEOUT_S = 900

# Inductor's timers (torch._dynamo.utils.compilation_time_metrics), summed over the forward and backward
# graphs. Inductor compiles kernels while it generates code, so those two are one stage here.
INDUCTOR_STAGES = {
    "lowering": ("GraphLowering.run",),
    "codegen + C++ compile": ("GraphLowering.compile_to_module",),
}
INDUCTOR_TOTAL = "compile_fx_inner"


def _backends(settings) -> list[str]:
    return ["null"] + [c.name for c in settings.contenders if c.compiled]


def task_count(settings) -> int:
    return 1 + 2 * (len(_backends(settings)) - 1)


def run(settings, progress) -> list[dict]:
    rows = []
    size = "seed"
    for name in _backends(settings):
        with tempfile.TemporaryDirectory(prefix="kiln-bench-compile-") as cache:
            for state in ("cold",) if name == "null" else ("cold", "warm"):
                with progress.task(f"compile time {name} {state}"):
                    res = _spawn({"contender": name, "size": size, "threads": settings.threads,
                                  "matmul_precision": settings.matmul_precision}, cache)
                row = {"suite": "micro", "bench": "compile", "contender": name, "cache": state, "size": size,
                       "error": res.pop("error", "")}
                row.update(res)
                rows.append(row)
    null = next((r.get("compile_s") for r in rows if r["contender"] == "null"), None)
    for r in rows:
        # Only a cold start traces: a warm one may skip tracing too (Inductor's AOTAutograd cache).
        if r["contender"] != "null" and r["cache"] == "cold" and null is not None and r.get("compile_s") is not None:
            r["tracing_s"] = null
            r["backend_s"] = r["compile_s"] - null
    return rows


def _spawn(spec: dict, cache: str) -> dict:
    env = dict(os.environ)
    for k in CACHE_ENV:
        path = os.path.join(cache, k.lower())
        os.makedirs(path, exist_ok=True)
        env[k] = path
    env["PYTHONPATH"] = os.pathsep.join(p for p in [_package_root(), env.get("PYTHONPATH")] if p)
    cmd = [sys.executable, "-m", "kiln.bench.compile_time", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {CHILD_TIMEOUT_S} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("KILN_BENCH_COMPILE "):
            return json.loads(line[len("KILN_BENCH_COMPILE "):])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"child exit {proc.returncode}: {tail[:80]}"}


def _child(spec: dict) -> dict:
    import torch

    from ..models.transformer import make_model, make_tokens
    from .contenders import parse_contenders
    from .micro import null_contender

    torch.set_num_threads(spec["threads"])
    torch.set_float32_matmul_precision(spec.get("matmul_precision", "highest"))
    model, tokens = make_model(spec["size"]), make_tokens(spec["size"])
    name = spec["contender"]
    contender = null_contender() if name == "null" else parse_contenders(name, with_autotune=False, modes=False)[-1]

    def fwd_bwd(fn):
        t0 = time.perf_counter()
        fn(tokens).sum().backward()
        return time.perf_counter() - t0

    compiled = contender.compile(model)
    first = fwd_bwd(compiled)
    steady = min(fwd_bwd(compiled) for _ in range(3))
    out = {"first_s": first, "compile_s": max(first - steady, 0.0)}
    stages = {}
    if name.startswith("inductor"):
        from torch._dynamo.utils import compilation_time_metrics as metrics

        def total(keys):
            return sum(sum(metrics.get(k, [])) for k in keys)

        for stage, keys in INDUCTOR_STAGES.items():
            stages[stage] = total(keys)
        stages["other"] = max(total([INDUCTOR_TOTAL]) - sum(stages.values()), 0.0)
    elif name.startswith("kiln"):
        stages.update(_kiln_stage_times())
    if stages:
        out["stages"] = ", ".join(f"{k} {v:.2f} s" for k, v in stages.items())
    return out


def _kiln_stage_times() -> dict:
    """Numeric timing entries of kiln.stats(), whatever shape it has (it is being written as we go)."""
    try:
        import kiln

        stats = kiln.stats()
        stats = stats if isinstance(stats, dict) else vars(stats)
    except Exception:
        return {}
    found = {}

    def walk(prefix, obj):
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}{k}.", v)
        elif isinstance(obj, (int, float)) and any(w in prefix for w in ("time", "_s.", "seconds", "_ms.")):
            key = prefix.rstrip(".")
            found[key] = obj / 1e3 if key.endswith("_ms") else obj

    walk("", stats)
    return found


if __name__ == "__main__":
    try:
        result = _child(json.loads(sys.argv[1]))
    except Exception as exc:
        from .contenders import short_reason

        result = {"error": short_reason(exc)}
    print("KILN_BENCH_COMPILE " + json.dumps(result), flush=True)
