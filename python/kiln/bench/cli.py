"""`python -m kiln.bench`: run the selected suites for every contender side by side and write the report."""

import datetime
import faulthandler
import os
import sys
import time

import torch

from . import attention_grid, plots, report, transformer_rows
from .budget import WEIGHT
from .contenders import short_reason, warm_up_process
from .environment import compile_caches, cpu_count, cpu_name, parallel_region_probe_ms
from .progress import Progress
from .settings import from_args


def run(argv=None) -> list[dict]:
    """Run the benchmarks as `python -m kiln.bench ARGV` would; returns every result row as a dict."""
    settings = from_args(list(argv) if argv is not None else sys.argv[1:])
    os.makedirs(settings.out, exist_ok=True)
    for stale in (settings.error_log, os.path.join(settings.out, "partial.jsonl")):
        if os.path.exists(stale):
            os.remove(stale)
    # A crash in native code (a contender's kernel) should at least say where it happened.
    faulthandler.enable()
    saved_threads, saved_precision = torch.get_num_threads(), torch.get_float32_matmul_precision()
    torch.set_num_threads(settings.threads)
    torch.set_float32_matmul_precision(settings.matmul_precision)
    t_start = time.perf_counter()
    settings.load_start = _load()
    settings.fma_peaks = _fma_peaks(settings)
    settings.probe_start = parallel_region_probe_ms()
    try:
        with compile_caches(settings.cache) as cache_note:
            rows, warmups = _run_suites(settings)
    finally:
        torch.set_num_threads(saved_threads)
        torch.set_float32_matmul_precision(saved_precision)
    wall = time.perf_counter() - t_start
    _write(settings, rows, warmups, cache_note, wall)
    return rows


def main(argv=None) -> int:
    run(argv)
    return 0


def _run_suites(settings):
    needs_compile = any(s in settings.suites for s in ("attention", "transformer"))
    compiled = [c for c in settings.contenders if c.compiled] if needs_compile else []
    total = len(compiled) * WEIGHT["warm-up"]
    if "attention" in settings.suites:
        total += attention_grid.task_count(settings)
    if "transformer" in settings.suites:
        total += transformer_rows.task_count(settings)
    micro = None
    if "micro" in settings.suites:
        from . import micro  # noqa: PLC0415  (only --full and --only micro pay its imports)

        total += micro.task_count(settings)
    progress = Progress(total, enabled=settings.progress)
    warmups = {}
    rows = []
    try:
        for c in compiled:
            with progress.task(f"process warm-up {c.name}", WEIGHT["warm-up"]):
                try:
                    warmups[c.name] = f"{warm_up_process(c):.1f} s"
                except Exception as exc:
                    warmups[c.name] = f"failed ({short_reason(exc)})"
                    settings.log_error(f"warm-up {c.name}", exc)
        if "attention" in settings.suites:
            rows += attention_grid.run(settings, progress)
        if "transformer" in settings.suites:
            rows += transformer_rows.run(settings, progress)
        if "micro" in settings.suites:
            rows += micro.run(settings, progress)
    finally:
        progress.close()
    return rows, warmups


def kiln_levels(settings) -> dict:
    """{contender name: ISA level} for every kiln contender (its forced level, else kiln's own)."""
    import kiln

    own = kiln.target()["isa"]
    return {c.name: c.isa or own for c in settings.contenders if c.compiled and str(c.backend) == "kiln"}


def _fma_peaks(settings) -> dict:
    """{ISA level: (GFLOP/s, how)} for every level a kiln contender runs at: its own FMA loop."""
    from . import peak

    try:
        levels = sorted(set(kiln_levels(settings).values()))
    except Exception:  # kiln itself cannot load: its cells will say why
        return {}
    return {level: peak.fma_peak(settings.threads, level) for level in levels}


def _target_lines(settings) -> list[str]:
    import kiln

    try:
        t = kiln.target()
    except Exception as exc:
        return [f"**Target:** kiln cannot report its target ({short_reason(exc)})"]
    forced = " (forced by KILN_ISA)" if t["forced"] else ""
    lines = [f"**Target:** kiln's own level **{t['isa']}**{forced} ({t['vector_bits']}-bit vectors, "
             f"{t['vector_registers']} vector registers; the CPU's best level: {t['detected_isa']}); "
             f"L1d {t['l1d_bytes'] >> 10} KiB, L2 {t['l2_bytes'] >> 10} KiB, L3 {t['l3_bytes'] >> 20} MiB, "
             f"{t['cores']} CPUs"]
    forced_contenders = [c.name for c in settings.contenders if c.isa]
    if forced_contenders:
        lines.append(f"**Forced levels:** {', '.join(forced_contenders)} (kiln with options={{'isa': ...}}: "
                     "generated code compiled for the level and its runtime kernels)")
    if settings.fma_peaks:
        lines.append("**FMA peak per level:** " + "; ".join(
            f"{level} {g:.1f} GFLOP/s ({how.split(': ', 1)[-1]})" for level, (g, how) in settings.fma_peaks.items()))
    emulated = os.environ.get("KILN_BENCH_EMULATED")
    if emulated:
        lines.append(f"**Emulated CPU level:** {emulated}: every contender's kernels chosen as on a CPU of that level "
                     f"(ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY')}, ONEDNN_MAX_CPU_ISA="
                     f"{os.environ.get('ONEDNN_MAX_CPU_ISA')}, MKL_ENABLE_INSTRUCTIONS="
                     f"{os.environ.get('MKL_ENABLE_INSTRUCTIONS')}, KILN_ISA={os.environ.get('KILN_ISA')})")
    return lines


def _header(settings, rows, warmups, cache_note, wall) -> list[str]:
    s = settings
    probe_end = parallel_region_probe_ms()
    lines = [
        "# kiln benchmark results",
        "",
        f"**Date:** {datetime.datetime.now():%Y-%m-%d %H:%M:%S}",
        f"**Device:** CPU — {cpu_name()}, {cpu_count()} cores",
        *_target_lines(s),
        f"**PyTorch Version:** {torch.__version__}",
        f"**Threads:** {s.threads} (torch.set_num_threads, the same for every contender)",
        f"**float32 matmul precision:** {s.matmul_precision} (torch.set_float32_matmul_precision, every contender)",
        f"**Preset:** {s.preset}; suites: {', '.join(s.suites)}",
        f"**Contenders:** {', '.join(c.name for c in s.contenders)}",
        "",
        "**How measured:**",
        f"- warm-up {s.warmup} forward + {s.warmup} backward, then at least {s.min_iters} timed iterations "
        f"and {s.min_seconds:g} s per attention cell; TransformerLM rows: warm-up {s.warmup} steps, then at least "
        f"{s.lm_min_iters} steps and {s.lm_min_seconds:g} s; the TransformerLM contenders (and each GEMM micro "
        "shape's) are timed side by side, one timed call each per round (the first rotating), so host drift hits "
        "all of them alike; each timed call follows an untimed call of the same contender, so none starts "
        "with the caches another contender left behind",
        "- times are `mean±std (median)` ms; speedup = eager median / contender median (> 1 is faster than eager)",
        "- attention forward is timed with grad enabled; backward times `loss.backward()` after an untimed forward "
        "(`loss = out.sum()`, grads cleared)",
        "- compile (s) = first forward + first backward (or first step) wall time minus one steady-state call; "
        f"compile caches {cache_note}; `torch._dynamo.reset()` between cells (TransformerLM: after each "
        "contender's first calls; its timed calls are traced again, from the caches, in their warm-up)",
        "- one-time process warm-up (imports, toolchain), not counted in any cell: "
        + (", ".join(f"{k} {v}" for k, v in warmups.items()) or "none"),
        "- every compiled result is checked against eager (forward output and gradients, or logits, loss and "
        "parameters after one step); a mismatch fails the cell",
        _memory_line(s),
        f"- total wall time of this run: {wall:.0f} s; load average (1 min) at start {s.load_start}, at end {_load()}",
        f"- one parallel ATen op (x.pow(2), 221k floats) at start {s.probe_start:.2f} ms, at end {probe_end:.2f} ms "
        "(~0.03 ms on an idle machine)",
    ]
    disturbed = [r for r in rows if report.stalled(r)]
    if disturbed:
        lines.append(f"- {report.STALL_MARK} marks {len(disturbed)} of {len(rows)} rows measured while OpenMP "
                     "regions stalled (the probe above, taken before, between and after the phases of each "
                     "row, exceeded 1 ms); a stall inside a phase can still go unseen")
    if disturbed or _busy(s, probe_end):
        lines.append("- **WARNING: other processes competed for the cores during this run.** OpenMP regions stall "
                     "(eager and Inductor are inflated the most); do not quote these ratios, rerun on an idle "
                     "machine or with `--threads 1`")
    if s.budget_s:
        lines.append(f"- wall-time budget {s.budget_s:.0f} s: " + ("fell behind, later cells timed shorter (see notes)"
                                                                  if s.shortened else "timing not shortened"))
    if s.notes:
        lines += ["", "**Notes:**"] + [f"- {n}" for n in s.notes]
    return lines


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "?"


def _busy(s, probe_end) -> bool:
    """Stalled parallel regions, or a load above what this run puts on the machine: someone else ran too."""
    if max(s.probe_start, probe_end) > 1.0:
        return True
    try:
        # Compile workers and memory children add to our own load; beyond that, someone else ran.
        return max(float(s.load_start), os.getloadavg()[0]) > s.threads + 1.5
    except ValueError:
        return False


def _memory_line(s) -> str:
    if s.memory == "none" and not s.memory_transformer:
        return "- peak memory: not measured in this run (`--memory all` to measure)"
    which = {"all": "every attention cell", "auto": f"attention cells with seq_len >= {s.memory_min_seq}",
             "none": "no attention cell"}[s.memory]
    which += " and the TransformerLM rows" if s.memory_transformer else " (not the TransformerLM rows)"
    return (f"- peak (MB): {which}, each contender in a fresh subprocess: rise of the RSS high-water mark "
            "(VmHWM) over the RSS just before the first call, over the first call (compilation included) and one more")


def _write(settings, rows, warmups, cache_note, wall):
    s = settings
    md = _header(s, rows, warmups, cache_note, wall)
    if any(r["suite"] == "attention" for r in rows):
        md += ["", "## Attention Module Compilation Results", "",
               f"The seed's attention, one head, B={s.attn_batch}, float32; compiled vs uncompiled:", "",
               report.attention_table(rows, s.contenders, "attention")]
    if any(r["suite"] == "sdpa" for r in rows):
        md += ["", "## SDPA Attention (`F.scaled_dot_product_attention`, is_causal=True)", "",
               f"B={s.sdpa_batch}, {s.sdpa_heads} heads, inputs (B, H, S, D); eager runs ATen's fused kernel:", "",
               report.attention_table(rows, s.contenders, "sdpa")]
    for size in s.sizes if any(r["suite"] == "transformer" for r in rows) else []:
        md += ["", f"## Transformer Model Compilation Results ({size})", "", "### Model Configuration"]
        md += transformer_rows.config_lines(size)
        md += ["", "### Performance Results", "", report.transformer_table(rows, size)]
    if any(r["suite"] == "micro" for r in rows):
        from . import micro_report  # noqa: PLC0415

        md += ["", "## Micro-benchmarks", ""] + micro_report.sections(rows, s.contenders)
    obs = report.observations(rows, s.contenders, kiln_levels(s), s.fma_peaks)
    if obs:
        md += ["", "## Analysis", "", "### Key Observations", ""] + obs
    errors = sum(1 for r in rows if r.get("error"))
    if errors:
        md += ["", f"{errors} failed cell(s); full tracebacks in `{s.error_log}`."]
    text = "\n".join(md) + "\n"
    report.write_markdown(os.path.join(s.out, "results.md"), text)
    report.write_csv(os.path.join(s.out, "results.csv"), rows)
    written = []
    if s.plots:
        try:
            written = plots.write_all(rows, s.contenders, s.out)
        except Exception as exc:  # a plot is never worth losing the tables for
            print(f"plots failed: {short_reason(exc)}")
    partial = os.path.join(s.out, "partial.jsonl")
    if os.path.exists(partial):  # everything is in results.csv now
        os.remove(partial)
    print(text)
    files = ["results.md", "results.csv"] + [os.path.basename(p) for p in written]
    if s.plots and not plots.available():
        files.append("(no plots: matplotlib is not installed)")
    print(f"Wrote {', '.join(files)} to {s.out}/")
