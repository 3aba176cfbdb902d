"""kiln: a torch.compile backend whose compiler is written in C++.

    model = torch.compile(model, backend="kiln")          # registered through an entry point
    model = kiln.compile(model, mode="max-autotune")       # the same, spelled through kiln
"""
from kiln.api import compile, reset_stats, stats, target  # noqa: F401  (public API)
from kiln.options import Options  # noqa: F401

__all__ = ["compile", "stats", "reset_stats", "target", "Options"]
__version__ = "0.1.0"
