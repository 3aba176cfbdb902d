"""The debug directory's Python files: the FX graph kiln compiled, and a repro.py that rebuilds it."""
from __future__ import annotations

import os

import torch

_REPRO = '''"""Repro of one graph kiln compiled ({name}): rebuilds the ATen graph from its code, runs it through
kiln and eagerly on random inputs of the recorded shapes, strides and dtypes, and compares.

    python repro.py          # exit status 0: kiln agrees with eager
"""
import math
import os
import sys

import torch

from kiln.options import Options
from kiln.runner import compile_graph

# (kind, ...): ("tensor", sizes, strides, dtype) or ("scalar", value) per placeholder, in order.
INPUTS = {inputs!r}
CODE = {code!r}
HERE = os.path.dirname(os.path.abspath(__file__))


def make_inputs(seed=0):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for spec in INPUTS:
        if spec[0] == "scalar":
            out.append(spec[1])
            continue
        _, sizes, strides, dtype = spec
        dtype = getattr(torch, dtype)
        span = 1 + sum((s - 1) * abs(st) for s, st in zip(sizes, strides) if s > 0)
        if dtype.is_floating_point:
            base = torch.randn(span, generator=gen, dtype=dtype)
        elif dtype == torch.bool:
            base = torch.rand(span, generator=gen) > 0.5
        else:  # indices: small, so that they address any dim they index
            base = torch.randint(0, 2, (span,), generator=gen, dtype=dtype)
        out.append(torch.as_strided(base, sizes, strides))
    return out


def build(inputs):
    namespace = {{"torch": torch, "inf": math.inf, "nan": math.nan, "device": torch.device}}
    exec(CODE, namespace)

    class Graph(torch.nn.Module):
        forward = namespace["forward"]

    module = Graph()
    constants = os.path.join(HERE, "constants.pt")
    if os.path.exists(constants):
        for k, v in torch.load(constants).items():
            setattr(module, k, v)
    # make_fx records every node's fake value (meta["val"]), which kiln's importer reads.
    return torch.fx.experimental.proxy_tensor.make_fx(module)(*inputs)


def main():
    inputs = make_inputs()
    gm = build(inputs)
    want = gm(*inputs)
    runner = compile_graph(gm, Options.from_args(None, {{"fallback": "error", "verify": True}}), "repro")
    got = runner(*inputs)
    want = list(want) if isinstance(want, (list, tuple)) else [want]
    worst = 0.0
    for i, (g, w) in enumerate(zip(got, want)):
        if not isinstance(w, torch.Tensor):
            continue
        if w.dtype.is_floating_point:
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5, equal_nan=True,
                                       msg=lambda m, i=i: f"output {{i}}: {{m}}")
            worst = max(worst, float((g - w).abs().nan_to_num(0).max()) if w.numel() else 0.0)
        else:
            assert torch.equal(g, w), f"output {{i}} differs"
    print(f"OK: kiln agrees with eager on {{len(want)}} outputs (largest difference {{worst:.3g}})")


if __name__ == "__main__":
    sys.exit(main())
'''


def _input_spec(node: torch.fx.Node):
    val = node.meta.get("val")
    if isinstance(val, torch.Tensor):
        hint = [_hint(s) for s in val.shape], [_hint(s) for s in val.stride()]
        return ("tensor", *hint, str(val.dtype).removeprefix("torch."))
    return ("scalar", _hint(val) if val is not None else 1)


def _hint(x) -> int:
    """A symbolic size's value in this compile (its hint), or the int itself."""
    if isinstance(x, torch.SymInt):
        hint = x.node.hint
        return int(hint) if hint is not None else 8
    return int(x)


def write(gm: torch.fx.GraphModule, directory: str, name: str) -> None:
    """fx_graph.txt (the graph as PyTorch prints it) and repro.py (see _REPRO) into `directory`."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "fx_graph.txt"), "w") as f:
        f.write(gm.print_readable(print_output=False))
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    constants = {n.target: getattr(gm, n.target) for n in gm.graph.nodes if n.op == "get_attr"}
    if constants:
        torch.save(constants, os.path.join(directory, "constants.pt"))
    text = _REPRO.format(name=name, inputs=[_input_spec(p) for p in placeholders], code=gm.code)
    with open(os.path.join(directory, "repro.py"), "w") as f:
        f.write(text)
