"""The forward/backward split: PyTorch's min-cut partitioner, told to recompute input-free values.

Values computed from no graph input at all — masks such as tril(ones(S, S)) or `qi >= kj`, aranges,
constants — cost nothing to recompute inside a kiln kernel (they become index predicates), while
saving them for the backward would materialise them (an S×S mask). Tagging them MUST_RECOMPUTE
makes the partitioner rebuild them in the backward graph instead of saving them.
"""
from __future__ import annotations

import torch
from functorch.compile import min_cut_rematerialization_partition
from torch.utils.checkpoint import CheckpointPolicy


def tag_input_free_nodes(graph: torch.fx.Graph) -> int:
    free: set = set()
    for n in graph.nodes:
        if n.op != "call_function":
            continue
        if any(a not in free for a in n.all_input_nodes):
            continue
        val = n.meta.get("val")
        if not isinstance(val, torch.Tensor):
            continue
        if hasattr(n.target, "tags") and torch.Tag.nondeterministic_seeded in n.target.tags:
            continue  # random values must be saved, never recomputed
        free.add(n)
        n.meta.setdefault("recompute", CheckpointPolicy.MUST_RECOMPUTE)
    return len(free)


def kiln_partition(joint_module: torch.fx.GraphModule, joint_inputs, **kwargs):
    tag_input_free_nodes(joint_module.graph)
    return min_cut_rematerialization_partition(joint_module, joint_inputs, **kwargs)
