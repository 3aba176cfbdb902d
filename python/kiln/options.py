"""Backend options: what `mode=` and `options=` may say, validated once per compile."""
from __future__ import annotations

import dataclasses
import os

MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# float32 matmul precision -> bfloat16 planes per operand for AMX GEMMs (0: float FMA kernels only).
MATMUL_PLANES = {"highest": 0, "high": 2, "medium": 1}


@dataclasses.dataclass(frozen=True)
class Options:
    mode: str = "default"
    threads: int = 0  # 0: torch.get_num_threads()
    fallback: str = "eager"  # "eager": unsupported parts run in PyTorch; "error": raise instead
    cache_dir: str | None = None
    debug_dir: str | None = None
    verify: bool = False  # verify the IR after every pass (tests turn it on)
    # float32 matmul precision, as torch.set_float32_matmul_precision spells it; None: PyTorch's
    # setting when the graph is compiled. "high" and "medium" let GEMMs run on AMX with operands
    # split into two bfloat16 planes (about 16 significand bits) or rounded to one.
    matmul_precision: str | None = None
    # ISA level of the generated code and the runtime kernels it calls: "baseline", "avx2", "avx512",
    # "avx512_amx"; None: $KILN_ISA as it is when the graph compiles, else the CPU's best (kiln.target()).
    isa: str | None = None

    def gemm_bf16_planes(self) -> int:
        """bfloat16 planes per float GEMM operand (kiln_gemm_f32's bf16_planes) for this precision."""
        if self.matmul_precision is None:
            import torch

            return MATMUL_PLANES[torch.get_float32_matmul_precision()]
        return MATMUL_PLANES[self.matmul_precision]

    @staticmethod
    def from_args(mode: str | None = None, options: dict | None = None) -> Options:
        opts = dict(options or {})
        unknown = set(opts) - {f.name for f in dataclasses.fields(Options)}
        if unknown:
            raise ValueError(f"kiln: unknown option(s) {sorted(unknown)}; known: "
                             f"{sorted(f.name for f in dataclasses.fields(Options))}")
        if mode is not None:
            opts["mode"] = mode
        opts.setdefault("debug_dir", os.environ.get("KILN_DEBUG_DIR") or None)
        opts.setdefault("verify", os.environ.get("KILN_VERIFY", "") not in ("", "0"))
        if opts.get("matmul_precision") is None:
            import torch

            opts["matmul_precision"] = torch.get_float32_matmul_precision()
        o = Options(**opts)
        if o.mode not in MODES:
            raise ValueError(f"kiln: unknown mode {o.mode!r}; expected one of {MODES}")
        if o.matmul_precision not in MATMUL_PLANES:
            raise ValueError(f"kiln: matmul_precision must be one of {tuple(MATMUL_PLANES)}, "
                             f"not {o.matmul_precision!r}")
        if o.isa is not None:
            from kiln import _C

            _C.target(o.isa)  # a clear error now for a level that is not one or that this CPU cannot run
        else:
            o = dataclasses.replace(o, isa=_isa_from_environment())
        if o.fallback not in ("eager", "error"):
            raise ValueError(f"kiln: fallback must be 'eager' or 'error', not {o.fallback!r}")
        return o


def _isa_from_environment() -> str | None:
    """$KILN_ISA when it names a level this CPU runs; otherwise None (the CPU's best), said once."""
    name = os.environ.get("KILN_ISA", "")
    if not name or name == "native":
        return None
    from kiln import _C

    try:
        _C.target(name)
        return name
    except Exception as exc:  # not a level, or above this CPU's: the runtime warned the same way
        from kiln.log import log_once

        log_once(f"isa:{name}", f"KILN_ISA={name} ignored: {exc}")
        return None
