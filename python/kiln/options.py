"""Backend options: what `mode=` and `options=` may say, validated once per compile."""
from __future__ import annotations

import dataclasses
import os

MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclasses.dataclass(frozen=True)
class Options:
    mode: str = "default"
    threads: int = 0  # 0: torch.get_num_threads()
    fallback: str = "eager"  # "eager": unsupported parts run in PyTorch; "error": raise instead
    cache_dir: str | None = None
    debug_dir: str | None = None
    verify: bool = False  # verify the IR after every pass (tests turn it on)

    @staticmethod
    def from_args(mode: str | None = None, options: dict | None = None) -> "Options":
        opts = dict(options or {})
        unknown = set(opts) - {f.name for f in dataclasses.fields(Options)}
        if unknown:
            raise ValueError(f"kiln: unknown option(s) {sorted(unknown)}; known: "
                             f"{sorted(f.name for f in dataclasses.fields(Options))}")
        if mode is not None:
            opts["mode"] = mode
        opts.setdefault("debug_dir", os.environ.get("KILN_DEBUG_DIR") or None)
        opts.setdefault("verify", os.environ.get("KILN_VERIFY", "") not in ("", "0"))
        o = Options(**opts)
        if o.mode not in MODES:
            raise ValueError(f"kiln: unknown mode {o.mode!r}; expected one of {MODES}")
        if o.fallback not in ("eager", "error"):
            raise ValueError(f"kiln: fallback must be 'eager' or 'error', not {o.fallback!r}")
        return o
