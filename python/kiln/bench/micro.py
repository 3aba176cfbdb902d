"""Micro-benchmarks (benchmarks.md §3): GEMM, pointwise, reduction, per-call overhead, cold/warm compile."""

import time

import torch

from . import compile_time, peak
from .contenders import Contender, short_reason
from .timing import measure, measure_interleaved

# (label, M, K, N): square sizes, then the suite's skinny shapes.
GEMM_SHAPES = [(f"square {n}", n, n, n) for n in (256, 512, 1024, 2048)] + [
    ("LM seed qkv/out proj", 1152, 192, 192),  # batch 6 x seq 192 tokens
    ("LM seed ffn up", 1152, 192, 768),
    ("LM seed ffn down", 1152, 768, 192),
    ("LM seed lm_head", 1152, 192, 1000),
    ("attn S=1024 D=64 QK^T", 1024, 64, 1024),
    ("attn S=1024 D=64 PV", 1024, 1024, 64),
]
POINTWISE_N = 64 << 20  # 64M floats
REDUCTION_SHAPE = (8192, 8192)  # 64M floats, summed over each row
OVERHEAD_CALLS = 2000


def _compiled(contender, fn):
    torch._dynamo.reset()
    return contender.compile(fn)


def null_contender() -> Contender:
    """What every aot_autograd backend pays: Dynamo + AOTAutograd with a pass-through compiler."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    def passthrough(gm, _example_inputs):
        # Materialise the lazily generated forward, or every call pays the lazy-recompile check.
        if hasattr(gm, "real_recompile"):
            gm.real_recompile()
        return make_boxed_func(gm.forward)

    return Contender("null", aot_autograd(fw_compiler=passthrough, bw_compiler=passthrough))


def no_work_contender() -> Contender:
    """The least an aot_autograd backend can pay for the one-op graph: Dynamo, AOTAutograd and the
    result's allocation (with the allocator Inductor's generated code uses), but no computation."""
    from torch._dynamo.backends.common import aot_autograd

    try:
        from torch._C._dynamo.guards import _empty_strided_cpu as alloc
    except ImportError:  # pragma: no cover - another torch
        def alloc(sizes, strides, dtype):
            return torch.empty_strided(sizes, strides, dtype=dtype)

    def allocate_only(gm, _example_inputs):
        val = next(n for n in gm.graph.nodes if n.op == "output").args[0][0].meta["val"]
        sizes, strides, dtype = tuple(val.shape), tuple(val.stride()), val.dtype

        def call(args):
            args.clear()
            return [alloc(sizes, strides, dtype)]

        call._boxed_call = True
        return call

    return Contender("no work", aot_autograd(fw_compiler=allocate_only, inference_compiler=allocate_only))


def _time(settings, fn, *args):
    with torch.no_grad():
        fn(*args)  # first call: compilation, not timed
        return measure(lambda: fn(*args), warmup=settings.warmup, min_iters=settings.min_iters,
                       min_seconds=min(settings.min_seconds, 1.0))


def contender_levels(settings) -> dict:
    """{contender name: the ISA level whose FMA peak its GEMM rows are measured against}: a kiln
    contender's own level, every other contender's the CPU's (as kiln's default level sees it)."""
    from .cli import kiln_levels  # noqa: PLC0415

    levels = kiln_levels(settings)
    own = levels.get("kiln") or (next(iter(levels.values())) if levels else None)
    return {c.name: levels.get(c.name, own) for c in settings.contenders}


def gemm(settings, progress) -> list[dict]:
    """Each shape: every contender compiled and run once, then all timed side by side
    (measure_interleaved), so host drift between contenders does not decide the ratio."""
    rows = []
    levels = contender_levels(settings)
    for label, M, K, N in GEMM_SHAPES:
        gen = torch.Generator().manual_seed(0)
        a, b = torch.randn(M, K, generator=gen), torch.randn(K, N, generator=gen)
        ready = []
        for c in settings.contenders:
            row = {"suite": "micro", "bench": "gemm", "shape": label, "M": M, "K": K, "N": N,
                   "contender": c.name, "isa": levels.get(c.name), "error": ""}
            with progress.task(f"gemm {label} {c.name}"):
                try:
                    fn = _compiled(c, lambda x, y: torch.mm(x, y))
                    with torch.no_grad():
                        fn(a, b)  # first call: compilation, not timed
                    ready.append((row, fn))
                except Exception as exc:
                    row["error"] = short_reason(exc)
                    settings.log_error(f"gemm {label} {c.name}", exc)
            rows.append(row)
        if ready:
            steps = [lambda fn=fn: fn(a, b) for _, fn in ready]  # noqa: B023 (timed within this iteration)
            # The FMA peak loop of each ISA level in use takes turns with the contenders, on the same
            # pool and the same number of flops: the peak at the same moments, for a shared host whose
            # speed drifts.
            fma = {}
            for level in sorted({row["isa"] for row, _ in ready if row["isa"]}):
                step = peak.fma_step(settings.threads, 2 * M * K * N, level)
                if step is not None:
                    fma[level] = (len(steps), step[1])
                    steps.append(step[0])
            with torch.no_grad():
                # The contenders' code was traced after a Dynamo reset each: their warm-up calls
                # trace it again (from the compilers' caches), untimed.
                stats = measure_interleaved(steps, warmup=settings.warmup, min_iters=settings.min_iters,
                                            min_seconds=min(settings.min_seconds, 1.0))
            same_rounds = {level: flops / stats[i].median_ms / 1e6 for level, (i, flops) in fma.items()}
            for (row, _), st in zip(ready, stats):
                row.update(median_ms=st.median_ms, gflops=2 * M * K * N / st.median_ms / 1e6,
                           fma_same_rounds_gflops=same_rounds.get(row["isa"]))
    return rows


def _into(a, b, c, o):
    """The kernel alone: a * b + c written into a buffer reused across calls."""
    return o.copy_(a * b + c)


def pointwise(settings, progress) -> list[dict]:
    """The kernel rows (buffers reused) are timed side by side with the C triad loop on the same
    buffers and pool (measure_interleaved): the bandwidth at the same moments, for a shared host
    whose memory bandwidth drifts. End-to-end rows (fresh outputs) are timed one contender at a time."""
    n = POINTWISE_N
    a, b, c, o, t = (torch.rand(n) for _ in range(5))
    nbytes = 16 * n  # read a, b, c; write the result
    rows, kernels = [], []

    def add(kind, name, fn, *args):
        row = {"suite": "micro", "bench": "pointwise", "kind": kind, "contender": name, "error": ""}
        rows.append(row)
        try:
            with torch.no_grad():
                fn(*args)  # first call: compilation, not timed
            if kind == "kernel":
                kernels.append((row, lambda: fn(*args)))
                return
            st = _time(settings, fn, *args)
            row.update(median_ms=st.median_ms, gbps=nbytes / st.median_ms / 1e6)
        except Exception as exc:
            row["error"] = short_reason(exc)
            settings.log_error(f"pointwise {kind} {name}", exc)

    for cont in settings.contenders:
        with progress.task(f"pointwise {cont.name}"):
            if cont.compiled:
                add("kernel", cont.name, _compiled(cont, _into), a, b, c, o)
            else:
                # eager runs a*b+c as two kernels; addcmul is its best single kernel.
                add("kernel", "eager", lambda: torch.add(torch.mul(a, b, out=t), c, out=o))
                add("kernel", "eager (addcmul)", lambda: torch.addcmul(c, a, b, out=o))
            add("end to end", cont.name, _compiled(cont, lambda x, y, z: x * y + z), a, b, c)
    if kernels:
        triad = peak.triad_step(settings.threads, o, a, b, c)
        steps = [fn for _, fn in kernels] + ([triad] if triad is not None else [])
        with progress.task("pointwise kernels and triad (interleaved rounds)"), torch.no_grad():
            stats = measure_interleaved(steps, warmup=settings.warmup, min_iters=settings.min_iters,
                                        min_seconds=min(settings.min_seconds, 1.0))
        same_rounds = nbytes / stats[-1].median_ms / 1e6 if triad is not None else None
        for (row, _), st in zip(kernels, stats):
            row.update(median_ms=st.median_ms, gbps=nbytes / st.median_ms / 1e6, triad_same_rounds_gbps=same_rounds)
    return rows


def reduction(settings, progress) -> list[dict]:
    x = torch.rand(*REDUCTION_SHAPE)
    o = torch.empty(REDUCTION_SHAPE[0])
    nbytes = 4 * (x.numel() + o.numel())
    rows = []
    for cont in settings.contenders:
        with progress.task(f"reduction {cont.name}"):
            for kind in ("kernel", "end to end"):
                row = {"suite": "micro", "bench": "reduction", "kind": kind, "contender": cont.name, "error": ""}
                try:
                    if kind == "kernel" and not cont.compiled:
                        st = _time(settings, lambda: torch.sum(x, 1, out=o))
                    elif kind == "kernel":
                        st = _time(settings, _compiled(cont, lambda y, out: out.copy_(y.sum(1))), x, o)
                    else:
                        st = _time(settings, _compiled(cont, lambda y: y.sum(1)), x)
                    row.update(median_ms=st.median_ms, gbps=nbytes / st.median_ms / 1e6)
                except Exception as exc:
                    row["error"] = short_reason(exc)
                    settings.log_error(f"reduction {kind} {cont.name}", exc)
                rows.append(row)
    return rows


def overhead(settings, progress) -> list[dict]:
    """Per-call cost of a one-op graph on a 1-element tensor, net of the `null` backend (benchmarks.md)
    and net of `no work` (what remains of a call beyond Dynamo, AOTAutograd and allocating the result).

    The contenders take turns, one batch of calls each per round, and each reports its median batch:
    a host that speeds up or slows down during the measurement shifts every contender alike."""
    x = torch.ones(1)
    rows, fns = [], {}
    torch._dynamo.reset()
    # "dynamo only" (Dynamo's own pass-through, no AOTAutograd) shows what the frame hook and guards cost.
    extra = [null_contender(), no_work_contender(), Contender("dynamo only", "eager")]
    for cont in [settings.contenders[0]] + extra + settings.contenders[1:]:
        row = {"suite": "micro", "bench": "overhead", "contender": cont.name, "error": ""}
        with progress.task(f"overhead {cont.name} (compile)"):
            try:
                # A code object of its own per contender: Dynamo caches compiled code per code
                # object, and all of them must stay compiled while they take turns.
                ns: dict = {}
                exec("def one_op(y):\n    return y + 1\n", ns)  # noqa: S102 - a fixed string
                fn = cont.compile(ns["one_op"])
                fn(x)
                fns[cont.name] = fn
            except Exception as exc:
                row["error"] = short_reason(exc)
                settings.log_error(f"overhead {cont.name}", exc)
        rows.append(row)
    per_call = {name: [] for name in fns}
    with progress.task("overhead (interleaved rounds)"):
        for _ in range(max(settings.min_iters, 30)):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                for _ in range(OVERHEAD_CALLS):
                    fn(x)
                per_call[name].append((time.perf_counter() - t0) / OVERHEAD_CALLS * 1e6)
    for row in rows:
        times = sorted(per_call.get(row["contender"], []))
        if times:
            row["us_per_call"] = times[len(times) // 2]
    refs = {name: next((r.get("us_per_call") for r in rows if r["contender"] == name), None)
            for name in ("null", "no work")}
    for r in rows:
        if r.get("us_per_call") is None or r["contender"] in ("eager", "null", "no work", "dynamo only"):
            continue
        for key, name in (("net_us", "null"), ("net_of_no_work_us", "no work")):
            if refs[name] is not None:
                r[key] = r["us_per_call"] - refs[name]
    torch._dynamo.reset()
    return rows


def limits(settings, progress) -> list[dict]:
    """The FMA peak of every ISA level a contender runs at (measured at the start of the run, see
    cli._fma_peaks) and the triad bandwidth."""
    with progress.task("peak FMA and triad"):
        peaks = dict(settings.fma_peaks)
        for level in sorted({v for v in contender_levels(settings).values() if v} - set(peaks)):
            peaks[level] = peak.fma_peak(settings.threads, level)
        gbps, how_t = peak.triad_bandwidth(settings.threads, POINTWISE_N)
    rows = [{"suite": "micro", "bench": "peak", "kind": "fma", "isa": level, "value": g, "unit": "GFLOP/s",
             "method": how} for level, (g, how) in peaks.items()]
    return rows + [{"suite": "micro", "bench": "peak", "kind": "triad", "value": gbps, "unit": "GB/s",
                    "method": how_t}]


def run(settings, progress) -> list[dict]:
    rows = []
    for bench in (limits, gemm, pointwise, reduction, overhead, compile_time.run):
        done = bench(settings, progress)
        settings.record(done)
        rows += done
    torch._dynamo.reset()
    return rows


def task_count(settings) -> int:
    n = len(settings.contenders)
    return 1 + len(GEMM_SHAPES) * n + 2 * n + (n + 2) + compile_time.task_count(settings)
