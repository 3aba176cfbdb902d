"""Input mutations that AOTAutograd leaves in an inference graph (keep_inference_input_mutations=True).

AOTAutograd ends such a graph with `copy_(input, new_value)`. kiln compiles functional graphs, so each
copy_ is taken out and its new value becomes an extra graph output. Each such output is offered to
kiln's planner as a candidate for the input's own buffer (plan_in_place, csrc/kiln/loops/realize.h): it
is written straight into the caller's tensor when no old value can be read after it is overwritten
(`o.copy_(a * b + c)`, which never reads `o`; an optimizer's `p`, `exp_avg`, `exp_avg_sq`, each read
just before the same element is written). Anything else is copied into the caller's tensor after the
call.
"""
from __future__ import annotations

import dataclasses

import torch

aten = torch.ops.aten


@dataclasses.dataclass
class Mutation:
    arg: int  # position of the mutated input among the graph's placeholders


def split_mutations(gm: torch.fx.GraphModule) -> list[Mutation]:
    """Removes every copy_(placeholder, value) node from gm; each value becomes an extra output."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    position = {p: i for i, p in enumerate(placeholders)}
    found: list[tuple[Mutation, torch.fx.Node]] = []
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not aten.copy_.default:
            continue
        dst, value = node.args[0], node.args[1]
        if not isinstance(dst, torch.fx.Node) or dst.op != "placeholder" or not isinstance(value, torch.fx.Node):
            continue
        node.replace_all_uses_with(dst)
        gm.graph.erase_node(node)
        found.append((Mutation(position[dst]), value))
    if not found:
        return []
    out = next(n for n in gm.graph.nodes if n.op == "output")
    results = out.args[0]
    results = tuple(results) if isinstance(results, (tuple, list)) else (results,)
    out.args = (results + tuple(v for _, v in found),)
    gm.recompile()
    return [m for m, _ in found]


def with_mutations(call, mutations: list[Mutation]):
    """Wraps a boxed graph call: drops the extra outputs after writing each into its input."""
    if not mutations:
        return call

    def run(args):
        targets = [args[m.arg] for m in mutations]  # before the call clears args
        outs = call(args)
        n = len(outs) - len(mutations)
        for dst, new in zip(targets, outs[n:]):
            if new is not dst:
                dst.copy_(new)
        return outs[:n]

    run._boxed_call = True
    return run
