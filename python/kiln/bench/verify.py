"""Compare a contender's result with eager's, so a fast wrong kernel never shows up as a win."""

import torch

REL_TOL = 1e-3
# Under torch.set_float32_matmul_precision("medium") any contender (eager included) may multiply in
# bfloat16 (8 significand bits), so results agree only to about 2^-8 of their scale.
REL_TOL_BFLOAT16 = 3e-2


def tolerance() -> float:
    return REL_TOL_BFLOAT16 if torch.get_float32_matmul_precision() == "medium" else REL_TOL


def max_rel_err(got, ref) -> float:
    """max |got - ref| / max |ref| over tensors (or lists of tensors)."""
    if isinstance(got, (list, tuple)):
        return max((max_rel_err(g, r) for g, r in zip(got, ref)), default=0.0)
    if got is None or ref is None:  # e.g. a gradient that never arrived
        return 0.0 if got is None and ref is None else float("inf")
    got, ref = got.detach().double(), ref.detach().double()
    if got.shape != ref.shape:
        return float("inf")
    scale = ref.abs().max().item() if ref.numel() else 0.0
    return (got - ref).abs().max().item() / max(scale, 1e-12) if ref.numel() else 0.0


def check(got, ref, what: str) -> float:
    """Raise if `got` is not eager's result to tolerance(); return the error otherwise."""
    err = max_rel_err(got, ref)
    if not err <= tolerance():  # also catches NaN
        raise WrongResult(f"wrong {what}: max rel err {err:.1e}")
    return err


class WrongResult(RuntimeError):
    pass
