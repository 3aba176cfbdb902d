"""Input mutations that AOTAutograd leaves in an inference graph (keep_inference_input_mutations=True).

AOTAutograd ends such a graph with `copy_(input, new_value)`. kiln compiles functional graphs, so each
copy_ is taken out and its new value becomes an extra graph output. After the call the value is copied
into the caller's tensor, unless kiln wrote it there in the first place: an input whose old values
nothing in the graph reads (`o.copy_(a * b + c)`) is handed to the compiled code as that output's
buffer, and the result lands in place with no copy and no allocation. So is an input the graph does
read when kiln's planner proves every read comes just before the write of the same element (an
optimizer's `p`, `exp_avg`, `exp_avg_sq`): see plan_in_place in csrc/kiln/loops/realize.h.
"""
from __future__ import annotations

import dataclasses

import torch

aten = torch.ops.aten


@dataclasses.dataclass
class Mutation:
    arg: int        # position of the mutated input among the graph's placeholders
    in_place: bool  # the graph never reads the input's old values: write the new ones straight into it


def _reads_only_metadata(user: torch.fx.Node, dst: torch.fx.Node, copy_node: torch.fx.Node) -> bool:
    if user is copy_node:
        return True
    # copy(dst, src) takes only dst's shape, dtype and strides; its values come from src.
    return user.target is aten.copy.default and user.args[0] is dst and dst not in user.args[1:]


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
        dv, vv = dst.meta.get("val"), value.meta.get("val")
        same = (isinstance(dv, torch.Tensor) and isinstance(vv, torch.Tensor) and dv.shape == vv.shape
                and dv.dtype == vv.dtype)
        in_place = same and value.op != "placeholder" and all(
            _reads_only_metadata(u, dst, node) for u in dst.users)
        node.replace_all_uses_with(dst)
        gm.graph.erase_node(node)
        found.append((Mutation(position[dst], in_place), value))
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
