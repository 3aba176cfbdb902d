"""TransformerLM rows (benchmarks.md §2): forward only, and forward + backward + AdamW step, per contender."""

import torch

from ..models.transformer import CONFIGS, make_model, make_tokens
from . import budget
from .budget import WEIGHT
from .contenders import short_reason
from .environment import stall_probe
from .memory import measure_in_subprocess
from .timing import measure, measure_interleaved, timed_call
from .verify import check

# Parameters compared after the first training step: the embedding's gradient flows through every
# block and the lm_head's through none, so together they catch a broken backward or optimizer.
CHECKED_PARAMS = ("token_embeddings.weight", "lm_head.weight")
# After one AdamW step a parameter moves by ~lr; where eager's gradient is ~0 a different summation
# order may flip the sign of that move, so parameters get a looser tolerance than activations.
PARAM_REL_TOL = 1e-2


def versions(contender) -> list[str]:
    """eager is one row; a compiled contender has 'model compiled' and 'model and optimizer step compiled'."""
    return ["model", "model+step"] if contender.compiled else ["eager"]


class TransformerCase:
    """One contender and version on one model size: model, optimizer, inputs and the timed phases."""

    def __init__(self, spec: dict, contender):
        self.spec, self.contender = spec, contender
        self.warmup = spec.get("warmup", 3)
        self.version = spec["version"]
        self.model = make_model(spec["size"])
        self.tokens = make_tokens(spec["size"])
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.cmodel, self.opt_step = self.model, self.opt.step

    def compile(self):
        torch._dynamo.reset()
        self.cmodel = self.contender.compile(self.model)
        if self.version == "model+step":
            opt = self.opt

            def opt_step():  # the recipe of PyTorch's "compiling the optimizer" tutorial
                opt.step()

            self.opt_step = self.contender.compile(opt_step)

    @property
    def has_forward_row(self) -> bool:
        # "model and optimizer step compiled" runs the same compiled forward as "model compiled".
        return self.version != "model+step"

    def forward(self):
        with torch.no_grad():
            return self.cmodel(self.tokens)

    def train_step(self):
        self.opt.zero_grad(set_to_none=True)
        loss = self.cmodel(self.tokens).sum()
        loss.backward()
        self.opt_step()
        return loss.detach()

    def checked_params(self):
        named = dict(self.model.named_parameters())
        return [named[n].detach().clone() for n in CHECKED_PARAMS]

    def run_for_memory(self):
        self.compile()
        if self.has_forward_row:
            for _ in range(1 + self.warmup):
                out = self.forward()
                del out
        for _ in range(1 + self.warmup):
            self.train_step()


def prepare_case(spec: dict, contender, settings, ref: dict):
    """Compiles one contender's version, makes its first calls (where compilation happens) and checks
    them against eager's. Returns (row, case); case is None when that failed, and the row says why."""
    spec = dict(spec, threads=settings.threads, warmup=settings.warmup)
    row = {"suite": "transformer", "size": spec["size"], "version": spec["version"],
           "contender": contender.name, "error": ""}
    phase = "compile"
    row["stall_ms"] = stall_probe()
    try:
        case = TransformerCase(spec, contender)
        case.compile()
        case.first_s = 0.0
        if case.has_forward_row:
            phase = "forward"
            logits, case.first_s = timed_call(case.forward)
            if not contender.compiled:
                ref["logits"] = logits
            elif "logits" in ref:
                row["max_rel_err"] = check(logits, ref["logits"], "logits")
            del logits
        phase = "step"
        loss, first_step = timed_call(case.train_step)
        case.first_s += first_step
        params = case.checked_params()
        if not contender.compiled:
            ref["loss"], ref["params"] = loss, params
        elif "loss" in ref:
            check(loss, ref["loss"], "loss")
            err = max(_rel(p, r) for p, r in zip(params, ref["params"]))
            if not err <= PARAM_REL_TOL:
                raise RuntimeError(f"wrong parameters after one step: max rel err {err:.1e}")
        return row, case
    except Exception as exc:
        row["error"], row["error_phase"] = short_reason(exc), phase
        settings.log_error(f"transformer {spec['size']} {spec['version']} {contender.name} [{phase}]", exc)
        return row, None
    finally:
        # The next contender compiles from a clean Dynamo, as in a process of its own. This case's
        # compiled code is traced again (from the compilers' caches) in its untimed warm-up calls.
        torch._dynamo.reset()


def time_cases(prepared, settings) -> None:
    """Times every prepared case side by side (measure_interleaved): the forward rows, then the steps.
    Compile time is each case's first calls minus one steady-state call of each."""
    for phase, pick, call in (("forward", lambda c: c.has_forward_row, lambda c: c.forward),
                              ("step", lambda c: True, lambda c: c.train_step)):
        group = [(row, case) for row, case in prepared if case is not None and pick(case) and not row["error"]]
        if not group:
            continue
        try:
            stats = measure_interleaved([call(case) for _, case in group], warmup=settings.warmup,
                                        min_iters=settings.lm_min_iters, min_seconds=settings.lm_min_seconds)
        except Exception as exc:  # one contender failing mid-run: time the rest without it
            settings.log_error(f"transformer {phase} (timed side by side)", exc)
            stats = []
            for row, case in group:
                try:
                    stats.append(measure(call(case), warmup=settings.warmup, min_iters=settings.lm_min_iters,
                                         min_seconds=settings.lm_min_seconds))
                except Exception as one:
                    row["error"], row["error_phase"] = short_reason(one), phase
                    stats.append(None)
        for (row, case), st in zip(group, stats):
            if st is None:
                continue
            row.update(st.fields("fwd" if phase == "forward" else "step"))
            case.first_s -= st.median_ms / 1e3
            row["stall_ms"] = max(row["stall_ms"], stall_probe())
    for row, case in prepared:
        if case is not None and case.contender.compiled and not row["error"]:
            row["compile_s"] = max(case.first_s, 0.0)


def _rel(got, ref) -> float:
    return ((got - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()


def run(settings, progress) -> list[dict]:
    rows = []
    memory = settings.memory_transformer  # as planned when the progress total was counted
    for size in settings.sizes:
        ref = {}
        prepared, specs = [], []
        for contender in settings.contenders:
            for version in versions(contender):
                spec = {"suite": "transformer", "size": size, "version": version}
                budget.check(settings, progress)
                with progress.task(f"transformer {size} {contender.name} {version}", WEIGHT["model"] // 2):
                    prepared.append(prepare_case(spec, contender, settings, ref))
                specs.append((spec, contender))
        with progress.task(f"transformer {size}: timing side by side", WEIGHT["model"] // 2 * len(prepared)):
            time_cases(prepared, settings)
        del ref
        prepared = [row for row, _ in prepared]  # the models go before the memory subprocesses
        torch._dynamo.reset()
        for row, (spec, contender) in zip(prepared, specs):
            if memory:
                with progress.task(f"transformer {size} {contender.name} {spec['version']} memory", WEIGHT["memory"]):
                    if not row["error"] and settings.memory_transformer:  # the budget may have said no
                        row.update(_memory(spec, contender, settings))
            settings.record(row)
            rows.append(row)
    return rows


def _memory(spec, contender, settings) -> dict:
    result = measure_in_subprocess(dict(spec, contender=contender.name, threads=settings.threads))
    return {"peak_error": result["error"]} if "error" in result else {"peak_mb": result["peak_mb"]}


def task_count(settings) -> int:
    per = sum(len(versions(c)) for c in settings.contenders)
    weight = WEIGHT["model"] + (WEIGHT["memory"] if settings.memory_transformer else 0)
    return len(settings.sizes) * per * weight


def config_lines(size: str) -> list[str]:
    """The seed's "Model Configuration" list."""
    cfg = CONFIGS[size]
    return [
        f"- **vocab_size:** {cfg.vocab_size}",
        f"- **context_length:** {cfg.context_length}",
        f"- **d_model:** {cfg.d_model}",
        f"- **num_layers:** {cfg.num_layers}",
        f"- **num_heads:** {cfg.num_heads}",
        f"- **d_ff:** {cfg.d_ff}",
        "- **device:** cpu",
        f"- **Batch size:** {cfg.batch}",
        f"- **Sequence length:** {cfg.seq}",
    ]
