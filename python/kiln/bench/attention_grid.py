"""The attention grid (benchmarks.md §1): the seed's attention and the SDPA variant, per cell and contender."""

import torch

from ..models.attention import attention, sdpa_attention
from . import budget
from .budget import WEIGHT
from .contenders import short_reason
from .environment import stall_probe
from .memory import measure_in_subprocess
from .timing import measure, timed_call
from .verify import WrongResult, check


class AttentionCell:
    """One (B, [H,] S, D) cell for one contender: inputs, the compiled function, and its phases."""

    def __init__(self, spec: dict, contender):
        self.spec = spec
        self.contender = contender
        self.warmup = spec.get("warmup", 3)
        shape = (spec["B"], spec["S"], spec["D"])
        if spec["suite"] == "sdpa":
            shape = (spec["B"], spec["H"], spec["S"], spec["D"])
        # Same seed for every contender: same inputs, as the rules require.
        gen = torch.Generator().manual_seed(1234)
        self.inputs = [torch.randn(shape, generator=gen).requires_grad_(True) for _ in range(3)]
        self.fn = sdpa_attention if spec["suite"] == "sdpa" else attention
        self.cfn = None

    def compile(self):
        # A fresh function per cell: otherwise automatic dynamic shapes would turn later cells symbolic.
        torch._dynamo.reset()
        self.cfn = self.contender.compile(self.fn)

    def forward(self):
        return self.cfn(*self.inputs)

    def prepare_backward(self):
        """Untimed: clear grads (so every timed backward does the same work) and run the forward."""
        for t in self.inputs:
            t.grad = None
        return self.forward().sum()

    @staticmethod
    def backward(loss):
        loss.backward()

    def grads(self):
        return [t.grad for t in self.inputs]

    def run_for_memory(self):
        """What the memory child measures: compile, first call, then `warmup` more iterations."""
        self.compile()
        self.prepare_backward().backward()
        for _ in range(self.warmup):
            out = self.forward()
            del out
        for _ in range(self.warmup):
            self.prepare_backward().backward()


def cells(settings) -> list[dict]:
    """The grid in the seed's order: d_model outer, seq_len inner; then the SDPA row."""
    out = []
    for D in settings.attn_dims:
        for S in settings.attn_seqs:
            out.append({"suite": "attention", "B": settings.attn_batch, "H": 1, "S": S, "D": D})
    if settings.sdpa_seqs:
        for D in settings.sdpa_dims:
            for S in settings.sdpa_seqs:
                out.append({"suite": "sdpa", "B": settings.sdpa_batch, "H": settings.sdpa_heads, "S": S, "D": D})
    return out


def wants_memory(settings, spec) -> bool:
    if settings.memory == "all":
        return True
    return settings.memory == "auto" and spec["S"] >= settings.memory_min_seq


def run_cell(spec: dict, contender, settings, ref: dict) -> dict:
    """Time one contender on one cell. `ref` carries eager's outputs (filled by the eager contender)."""
    spec = dict(spec, threads=settings.threads, warmup=settings.warmup)
    row = {**{k: spec[k] for k in ("suite", "B", "H", "S", "D")}, "contender": contender.name, "error": ""}
    phase = "compile"
    row["stall_ms"] = stall_probe()
    try:
        cell = AttentionCell(spec, contender)
        cell.compile()
        phase = "forward"
        out, first_fwd = timed_call(cell.forward)
        row["first_fwd_s"] = first_fwd
        if not contender.compiled:
            ref["out"] = out.detach()
        elif "out" in ref:
            row["max_rel_err"] = check(out, ref["out"], "forward output")
        phase = "backward"
        loss = out.sum()
        del out
        _, first_bwd = timed_call(cell.backward, loss)
        row["first_bwd_s"] = first_bwd
        wrong_grads = None
        if not contender.compiled:
            ref["grads"] = [g.detach().clone() for g in cell.grads()]
        elif "grads" in ref:
            try:
                row["max_rel_err"] = max(row.get("max_rel_err", 0.0), check(cell.grads(), ref["grads"], "gradients"))
            except WrongResult as exc:
                wrong_grads = exc  # the forward is right: time it, and fail only the backward cell
        phase = "forward"
        fwd = measure(cell.forward, warmup=settings.warmup, min_iters=settings.min_iters,
                      min_seconds=settings.min_seconds)
        row.update(fwd.fields("fwd"))
        row["stall_ms"] = max(row["stall_ms"], stall_probe())  # between the phases, too
        phase = "backward"
        if wrong_grads is not None:
            raise wrong_grads
        bwd = measure(cell.backward, prepare=cell.prepare_backward, warmup=settings.warmup,
                      min_iters=settings.min_iters, min_seconds=settings.min_seconds)
        row.update(bwd.fields("bwd"))
        if contender.compiled:
            # First-call time net of one steady-state call: what compilation cost.
            net = first_fwd + first_bwd - (fwd.median_ms + bwd.median_ms) / 1e3
            row["compile_s"] = max(net, 0.0)
    except Exception as exc:
        row["error"], row["error_phase"] = short_reason(exc), phase
        settings.log_error(f"attention {spec} {contender.name} [{phase}]", exc)
    finally:
        torch._dynamo.reset()
        row["stall_ms"] = max(row["stall_ms"], stall_probe())
    return row


def measure_memory(spec: dict, contender, settings) -> dict:
    result = measure_in_subprocess(dict(spec, contender=contender.name, threads=settings.threads))
    if "error" in result:
        return {"peak_error": result["error"]}
    return {"peak_mb": result["peak_mb"]}


def run(settings, progress) -> list[dict]:
    rows = []
    plan = [(spec, wants_memory(settings, spec)) for spec in cells(settings)]  # as counted in task_count
    for spec, mem in plan:
        ref = {}
        for contender in settings.contenders:
            label = f"{spec['suite']} S={spec['S']} D={spec['D']} {contender.name}"
            budget.check(settings, progress)
            with progress.task(label, WEIGHT["cell"]):
                row = run_cell(spec, contender, settings, ref)
            if mem:
                with progress.task(label + " memory", WEIGHT["memory"]):
                    if not row["error"] and wants_memory(settings, spec):  # the budget may have said no
                        row.update(measure_memory(spec, contender, settings))
            settings.record(row)
            rows.append(row)
    return rows


def task_count(settings) -> int:
    n = 0
    for spec in cells(settings):
        per = WEIGHT["cell"] + (WEIGHT["memory"] if wants_memory(settings, spec) else 0)
        n += len(settings.contenders) * per
    return n
