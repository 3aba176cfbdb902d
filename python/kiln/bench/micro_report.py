"""Markdown tables of the micro-benchmarks, against the machine's measured limits."""

from .report import DASH, table


def _get(rows, **match):
    return [r for r in rows if r["suite"] == "micro" and all(r.get(k) == v for k, v in match.items())]


def _num(v, fmt="{:.1f}"):
    return DASH if v is None else fmt.format(v)


def sections(rows, contenders) -> list[str]:
    out = []
    limits = _get(rows, bench="peak")
    fma = {r.get("isa"): r["value"] for r in limits if r["kind"] == "fma"}  # per ISA level
    triad = next((r for r in limits if r["kind"] == "triad"), None)
    if limits:
        out += ["### Machine limits", ""]
        for r in limits:
            what = f"FMA peak, {r['isa']}" if r["kind"] == "fma" and r.get("isa") else (
                "FMA peak" if r["kind"] == "fma" else "triad bandwidth")
            out.append(f"- **{what}:** {r['value']:.1f} {r['unit']} ({r['method']})")
        out.append("")
    out += _gemm(rows, contenders, fma)
    out += _bandwidth(rows, "pointwise", "Pointwise `a * b + c`, 64M float32", triad)
    out += _bandwidth(rows, "reduction", "Reduction `x.sum(1)`, x 8192 x 8192 float32", triad)
    out += _overhead(rows)
    out += _compile(rows)
    return out


def _gemm(rows, contenders, fma) -> list[str]:
    gemm = _get(rows, bench="gemm")
    if not gemm:
        return []
    names = [c.name for c in contenders]
    shapes = []
    for r in gemm:
        if r["shape"] not in shapes:
            shapes.append(r["shape"])
    header = ["shape", "M x K x N"] + [f"{n} GFLOP/s" for n in names]
    header += [f"{n} vs torch.mm" for n in names if n != "eager"]
    body = []
    for s in shapes:
        by = {r["contender"]: r for r in gemm if r["shape"] == s}
        any_row = next(iter(by.values()))
        line = [s, f"{any_row['M']} x {any_row['K']} x {any_row['N']}"]
        for n in names:
            r = by.get(n, {})
            if r.get("error"):
                line.append(f"{n}: {r['error']}")
            elif r.get("gflops") is not None:
                peak = (fma or {}).get(r.get("isa"))
                shares = [f"{100 * r['gflops'] / p:.0f}%" for p in (peak, r.get("fma_same_rounds_gflops")) if p]
                line.append(f"{r['gflops']:.1f} ({' / '.join(shares)})" if shares else f"{r['gflops']:.1f}")
            else:
                line.append(DASH)
        base = by.get("eager", {}).get("gflops")
        for n in names:
            if n != "eager":
                g = by.get(n, {}).get("gflops")
                line.append(f"{g / base:.2f}x" if g and base else DASH)
        body.append(line)
    note = ("eager is `torch.mm`; (a% / b%): the share of the FMA peak of the contender's ISA level (kiln "
            "forced to a level: that level's; every other contender: the CPU's) measured at the start of the run, "
            "and of that level's FMA peak loop timed in the same rounds as the contenders (same pool, same flops "
            "per call; it shows the machine's speed at those moments on a shared host)")
    return ["### GEMM", "", note, "", table(header, body), ""]


def _bandwidth(rows, bench, title, triad) -> list[str]:
    mine = _get(rows, bench=bench)
    if not mine:
        return []
    header = ["contender", "kind", "median ms", "GB/s", "vs triad", "vs eager"]
    base = {r["kind"]: r.get("median_ms") for r in mine if r["contender"] == "eager"}
    body = []
    for r in mine:
        if r.get("error"):
            body.append([r["contender"], r["kind"], f"{r['contender']}: {r['error']}", DASH, DASH, DASH])
            continue
        limits = [p for p in (triad and triad["value"], r.get("triad_same_rounds_gbps")) if p]
        vs_triad = " / ".join(f"{100 * r['gbps'] / p:.0f}%" for p in limits) if r.get("gbps") and limits else DASH
        b = base.get(r["kind"])
        vs_eager = f"{b / r['median_ms']:.2f}x" if b and r.get("median_ms") else DASH
        body.append([r["contender"], r["kind"], _num(r.get("median_ms"), "{:.2f}"), _num(r.get("gbps")),
                     vs_triad, vs_eager])
    note = ("kernel: buffers reused (output written in place); end to end: fresh outputs, page faults "
            "included; GB/s counts every byte read and written once; vs triad (a% / b%): against the triad "
            "bandwidth measured at the start of the run, and (kernel rows of `a * b + c`) against the C triad "
            "loop timed in the same rounds on the same buffers and pool")
    return [f"### {title}", "", note, "", table(header, body), ""]


def _overhead(rows) -> list[str]:
    mine = _get(rows, bench="overhead")
    if not mine:
        return []
    header = ["contender", "µs per call", "net of null (µs)", "net of no work (µs)"]
    body = []
    for r in mine:
        per_call = f"{r['contender']}: {r['error']}" if r.get("error") else _num(r.get("us_per_call"), "{:.2f}")
        body.append([r["contender"], per_call, _num(r.get("net_us"), "{:.2f}"),
                     _num(r.get("net_of_no_work_us"), "{:.2f}")])
    note = ("one-op graph (`x + 1`) on a 1-element tensor, contenders in turns; null = aot_autograd with a "
            "pass-through compiler (it runs the FX graph's aten op in Python, so a compiled call can cost "
            "less: net < 0); no work = aot_autograd whose compiled graph only allocates its result; "
            "dynamo only = Dynamo's `eager` backend (no AOTAutograd)")
    return ["### Per-call overhead", "", note, "", table(header, body), ""]


def _compile(rows) -> list[str]:
    mine = _get(rows, bench="compile")
    if not mine:
        return []
    header = ["contender", "cache", "compile (s)", "tracing, shared (s)", "backend own (s)", "backend stages"]
    body = []
    for r in mine:
        if r.get("error"):
            body.append([r["contender"], r["cache"], f"{r['contender']}: {r['error']}", DASH, DASH, DASH])
            continue
        body.append([r["contender"], r["cache"], _num(r.get("compile_s")), _num(r.get("tracing_s")),
                     _num(r.get("backend_s")), r.get("stages") or DASH])
    note = ("TransformerLM seed forward + backward, each line a fresh process; cold = empty cache dir, warm = "
            "the cache the cold run filled; compile = first call minus a steady call; shared tracing = the null "
            "backend's compile time")
    return ["### Compile time", "", note, "", table(header, body), ""]
