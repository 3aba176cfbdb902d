"""Spelling PyTorch's sympy size expressions in kiln's SymExpr text form (s0*64, (s0//2)%3)."""
from __future__ import annotations

import sympy
import torch


def sym_text(x) -> str:
    """An int, SymInt or sympy expression as kiln size text."""
    if isinstance(x, torch.SymInt):
        x = x.node.expr
    if isinstance(x, int):
        return str(x)
    return _expr(sympy.sympify(x))


def _expr(e) -> str:
    name = type(e).__name__
    if e.is_Integer:
        return str(int(e))
    if e.is_Symbol:
        return str(e)
    if isinstance(e, sympy.Add):
        return "(" + "+".join(_expr(a) for a in e.args) + ")"
    if isinstance(e, sympy.Mul):
        return "(" + "*".join(_expr(a) for a in e.args) + ")"
    if isinstance(e, sympy.Pow) and e.exp.is_Integer and int(e.exp) > 0:
        return "(" + "*".join([_expr(e.base)] * int(e.exp)) + ")"
    if name in ("FloorDiv",):
        return f"({_expr(e.args[0])}//{_expr(e.args[1])})"
    if name in ("Mod", "PythonMod"):
        return f"({_expr(e.args[0])}%{_expr(e.args[1])})"
    if name == "Min" and len(e.args) == 2:
        return f"min({_expr(e.args[0])},{_expr(e.args[1])})"
    if name == "Max" and len(e.args) == 2:
        return f"max({_expr(e.args[0])},{_expr(e.args[1])})"
    raise NotImplementedError(f"kiln cannot express the size {e} ({name})")


def free_symbols(x) -> set:
    if isinstance(x, torch.SymInt):
        return {str(s) for s in x.node.expr.free_symbols}
    return set()
