"""Tables in the seed's layout (Markdown, printed and written) and the CSV of every result row."""

import csv
import math
import os

DASH = "—"


STALL_MARK = "†"  # measured while OpenMP regions stalled (another process held a core)


def stalled(row) -> bool:
    from .environment import STALL_MS

    return bool(row) and (row.get("stall_ms") or 0.0) > STALL_MS


def fmt_ms(row, prefix) -> str:
    """mean±std (median), the seed's mean±std plus the median the ratios use; † marks a disturbed row."""
    if row.get(f"{prefix}_median_ms") is None:
        return DASH
    mark = STALL_MARK if stalled(row) else ""
    return f"{row[prefix + '_mean_ms']:.2f}±{row[prefix + '_std_ms']:.2f} ({row[prefix + '_median_ms']:.2f}){mark}"


def speedup(row, base, prefix) -> float | None:
    if not base or row.get(f"{prefix}_median_ms") is None or base.get(f"{prefix}_median_ms") is None:
        return None
    return base[f"{prefix}_median_ms"] / row[f"{prefix}_median_ms"]


def fmt_x(x) -> str:
    return DASH if x is None else f"{x:.2f}x"


def failed(row, phase) -> bool:
    """Did this row fail at or before `phase` (so its `phase` cell shows the reason)?"""
    return bool(row and row.get("error")) and row.get(f"{phase}_median_ms") is None


def cell(row, prefix, contender) -> str:
    if row is None:
        return DASH
    if failed(row, prefix):
        return f"{contender}: {row['error']}"
    return fmt_ms(row, prefix)


def table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("-" * (len(h) + 2) for h in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in body]
    return "\n".join(lines)


def attention_table(rows, contenders, suite) -> str:
    """d_model | seq_len | forward per contender and speedup | backward likewise | compile s | peak MB."""
    names = [c.name for c in contenders]
    compiled = [c.name for c in contenders if c.compiled]
    keys = []
    by = {}
    for r in rows:
        if r["suite"] != suite:
            continue
        key = (r["H"], r["D"], r["S"])
        if key not in by:
            keys.append(key)
            by[key] = {}
        by[key][r["contender"]] = r
    lead = ["heads", "d_head", "seq_len"] if suite == "sdpa" else ["d_model", "seq_len"]
    header = list(lead)
    for _prefix, word in (("fwd", "Forward"), ("bwd", "Backward")):
        for n in names:
            header.append(f"{n} {word} (ms)")
            if n in compiled:
                header.append(f"{n} {word} Speedup")
    header += [f"{n} Compile (s)" for n in compiled]
    header += [f"{n} Peak (MB)" for n in names]
    body = []
    for key in keys:
        cells = by[key]
        base = cells.get("eager")
        H, D, S = key
        line = [H, D, S] if suite == "sdpa" else [D, S]
        for prefix in ("fwd", "bwd"):
            for n in names:
                r = cells.get(n)
                line.append(cell(r, prefix, n))
                if n in compiled:
                    line.append(fmt_x(speedup(r, base, prefix)) if r and not failed(r, prefix) else DASH)
        for n in compiled:
            r = cells.get(n) or {}
            line.append(f"{r['compile_s']:.1f}" if r.get("compile_s") is not None else DASH)
        for n in names:
            line.append(fmt_peak(cells.get(n)))
        body.append(line)
    return table(header, body)


def fmt_peak(r) -> str:
    if not r:
        return DASH
    if r.get("peak_mb") is not None:
        return f"{r['peak_mb']:.0f}"
    if r.get("peak_error"):
        return f"error: {r['peak_error']}"
    return DASH


VERSION_LABEL = {"eager": "Uncompiled (eager)", "model": "model compiled",
                 "model+step": "model and optimizer step compiled"}


def transformer_table(rows, size) -> str:
    header = ["Version", "Forward Only (ms)", "Forward Speedup", "Forward+Backward+Optimizer (ms)",
              "Full Step Speedup", "Compile (s)", "Peak (MB)"]
    mine = [r for r in rows if r["suite"] == "transformer" and r["size"] == size]
    base = next((r for r in mine if r["version"] == "eager"), None)
    body = []
    for r in mine:
        label = VERSION_LABEL[r["version"]]
        if r["version"] != "eager":
            label = f"{r['contender']}: {label}"
        fwd_has_row = r["version"] != "model+step"
        body.append([
            label,
            cell(r, "fwd", r["contender"]) if fwd_has_row else "(as model compiled)",
            fmt_x(speedup(r, base, "fwd")) if fwd_has_row else DASH,
            cell(r, "step", r["contender"]) if not (fwd_has_row and failed(r, "fwd")) else DASH,
            fmt_x(speedup(r, base, "step")),
            f"{r['compile_s']:.1f}" if r.get("compile_s") is not None else DASH,
            fmt_peak(r),
        ])
    return table(header, body)


def geomean(xs):
    xs = [x for x in xs if x]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def attention_gflops(r, phase) -> float | None:
    """Causal attention's rate: 2 B H S^2 D multiply-adds per product, halved for causal, counted as
    2 flops each; the forward has 2 products (Q K^T, P V), the backward 5 (S, dP, dV, dK, dQ)."""
    ms = r.get(f"{phase}_median_ms")
    if not ms or failed(r, phase):
        return None
    products = 2 if phase == "fwd" else 5
    return products * 2 * r["B"] * r["H"] * r["S"] ** 2 * r["D"] / 2 / (ms * 1e6)


def peak_share_line(title, name, mine, level, peak, inductor) -> str | None:
    """S >= 1024 cells: each direction's share of the level's FMA peak, and the cells faster than Inductor."""
    big = [r for r in mine if r["S"] >= 1024 and not r.get("error")]
    if not big or not peak:
        return None
    parts = []
    for phase, what in (("fwd", "forward"), ("bwd", "backward")):
        shares = [g / peak for g in (attention_gflops(r, phase) for r in big) if g]
        if shares:
            parts.append(f"{what} {100 * min(shares):.0f}-{100 * max(shares):.0f}% (geomean "
                         f"{100 * geomean(shares):.0f}%)")
    beats = [speedup(r, inductor.get((r["H"], r["D"], r["S"])), p) for r in big for p in ("fwd", "bwd")]
    beats = [x for x in beats if x is not None]
    vs = f"; faster than Inductor in {sum(x > 1 for x in beats)} of {len(beats)} cell directions" if beats else ""
    return (f"- **{title}, {name}, S >= 1024:** {', '.join(parts)} of the {level} FMA peak ({peak:.0f} GFLOP/s)"
            f"{vs}")


def observations(rows, contenders, levels=None, peaks=None) -> list[str]:
    """The seed's "Key Observations", as geometric means of the median ratios; for kiln's contenders
    also their attention's share of their ISA level's FMA peak (levels: {name: level}, peaks:
    {level: (GFLOP/s, how)})."""
    out = []
    levels, peaks = levels or {}, peaks or {}
    for c in contenders:
        if not c.compiled:
            continue
        for suite, title in (("attention", "Attention"), ("sdpa", "SDPA attention")):
            cells = [r for r in rows if r["suite"] == suite]
            if not cells:
                continue
            base = {(r["H"], r["D"], r["S"]): r for r in cells if r["contender"] == "eager"}
            mine = [r for r in cells if r["contender"] == c.name]
            fw = geomean([speedup(r, base.get((r["H"], r["D"], r["S"])), "fwd") for r in mine])
            bw = geomean([speedup(r, base.get((r["H"], r["D"], r["S"])), "bwd") for r in mine])
            bad = sum(1 for r in mine if r.get("error"))
            out.append(f"- **{title}, {c.name}:** forward **{fmt_x(fw)}**, backward **{fmt_x(bw)}** over eager "
                       f"(geometric mean of {len(mine) - bad} cells; {bad} failed)")
            level = levels.get(c.name)
            if level:
                inductor = {(r["H"], r["D"], r["S"]): r for r in cells if r["contender"] == "inductor"}
                line = peak_share_line(title, c.name, mine, level, peaks.get(level, (None,))[0], inductor)
                if line:
                    out.append(line)
        lm = [r for r in rows if r["suite"] == "transformer" and r["contender"] == c.name]
        for r in lm:
            base = next((b for b in rows if b["suite"] == "transformer" and b["size"] == r["size"]
                         and b["version"] == "eager"), None)
            what = VERSION_LABEL[r["version"]]
            if r.get("error"):
                out.append(f"- **TransformerLM {r['size']}, {c.name} ({what}):** failed — {r['error']}")
            else:
                out.append(f"- **TransformerLM {r['size']}, {c.name} ({what}):** full step "
                           f"**{fmt_x(speedup(r, base, 'step'))}** over eager")
    return out


def write_csv(path: str, rows: list[dict]):
    keys = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_value(r.get(k)) for k in keys})


def _csv_value(v):
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else v


def write_markdown(path: str, text: str):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write(text if text.endswith("\n") else text + "\n")
