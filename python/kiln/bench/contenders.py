"""The contenders: eager, Inductor, kiln (and OpenVINO when installed), each a way to compile a function."""

import importlib.util
import time
from dataclasses import dataclass

import torch

KILN_MODES = ("reduce-overhead", "max-autotune")
ISA_LEVELS = ("baseline", "avx2", "avx512", "avx512_amx")


@dataclass
class Contender:
    name: str  # label in tables: "eager", "inductor", "kiln", "kiln:max-autotune", "kiln:avx2", ...
    backend: object  # None: run eagerly; a registered name, or a backend callable
    mode: str | None = None
    isa: str | None = None  # kiln forced to this ISA level (options={"isa": ...}); None: its own

    @property
    def compiled(self) -> bool:
        return self.backend is not None

    def compile(self, fn):
        """A fresh compiled wrapper of `fn` (identity for eager); failures surface at the first call or here."""
        if self.backend is None:
            return fn
        backend = self.backend if callable(self.backend) else resolve_backend(self.backend)
        if self.isa is not None:
            options = {"isa": self.isa} | ({"mode": self.mode} if self.mode else {})
            return torch.compile(fn, backend=backend, options=options)
        return torch.compile(fn, backend=backend, mode=self.mode)


def parse_contenders(spec: str, *, with_autotune: bool, modes: bool, isas: list[str] = ()) -> list[Contender]:
    """'eager,inductor,kiln' -> contenders; 'name:mode' picks a mode, 'kiln:avx2' an ISA level (`isas`
    adds kiln at each level). eager always comes first (the baseline)."""
    # eager first: it fills the reference every compiled result is checked against.
    names = ["eager"] + [s.strip() for s in spec.split(",") if s.strip() and s.strip() != "eager"]
    if with_autotune and "inductor" in names and "inductor:max-autotune" not in names:
        names.insert(names.index("inductor") + 1, "inductor:max-autotune")
    if modes and "kiln" in names:
        at = names.index("kiln") + 1
        for m in reversed(KILN_MODES):
            if f"kiln:{m}" not in names:
                names.insert(at, f"kiln:{m}")
    if isas and "kiln" in names:
        at = names.index("kiln") + 1
        for level in reversed(isas):
            if f"kiln:{level}" not in names:
                names.insert(at, f"kiln:{level}")
    out = []
    for name in names:
        backend, _, mode = name.partition(":")
        isa = mode if backend == "kiln" and mode in ISA_LEVELS else None
        out.append(Contender(name, None if backend == "eager" else backend, None if isa else mode or None, isa))
    return out


def default_contender_spec() -> str:
    spec = "eager,inductor,kiln"
    if importlib.util.find_spec("openvino") is not None:
        spec += ",openvino"
    return spec


def resolve_backend(name: str):
    """The backend to hand torch.compile: the registered name if Dynamo knows it, else kiln's callable."""
    from torch._dynamo.backends.registry import lookup_backend

    try:
        lookup_backend(name)
        return name
    except Exception:
        if name != "kiln":
            raise
    # Not pip-installed (no entry point): an in-tree checkout on PYTHONPATH still has the callable.
    if name == "kiln":
        from kiln.backend import kiln_backend  # noqa: PLC0415

        return kiln_backend
    return name


def warm_up_process(contender: Contender) -> float:
    """Pay one-time costs (imports, toolchain probing, precompiled headers) outside the first cell.

    Returns seconds; raises what the backend raised.
    """
    torch._dynamo.reset()
    fn = contender.compile(lambda x: torch.sin(x * 2.0) + 1.0)
    x = torch.randn(8, requires_grad=True)
    t0 = time.perf_counter()
    fn(x).sum().backward()
    seconds = time.perf_counter() - t0
    torch._dynamo.reset()
    return seconds


def short_reason(exc: BaseException, limit: int = 72) -> str:
    """One line naming the innermost cause: Dynamo wraps backend errors in a multi-line message."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "inner_exception", None) or exc.__cause__
        if inner is None:
            break
        exc = inner
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    msg = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    msg = msg.replace("|", "/")  # keep Markdown tables intact
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"
