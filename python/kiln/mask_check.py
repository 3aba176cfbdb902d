"""Counts where an input-free mask subgraph differs from the causal mask, in one kiln kernel.

The attention rewrite must prove a mask is exactly `j <= i`. Running the mask's nodes in eager would
allocate several sq x sk tensors (the int64 difference of two aranges alone is 8 bytes an element);
compiled by kiln, the comparison and the count fuse into one reduction that allocates nothing.
"""
from __future__ import annotations

import itertools

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.passes.fake_tensor_prop import FakeTensorProp

from kiln import api

aten = torch.ops.aten
_ids = itertools.count()


_memo: dict = {}


def _structure(nodes: list[torch.fx.Node]) -> tuple:
    """A key equal for two subgraphs that compute the same thing (each layer rebuilds the same mask)."""
    index = {n: i for i, n in enumerate(nodes)}

    def arg(a):
        return ("node", index[a]) if isinstance(a, torch.fx.Node) else repr(a)

    return tuple((str(n.target), tuple(torch.fx.node.map_aggregate(n.args, arg)),
                  tuple(sorted((k, repr(torch.fx.node.map_aggregate(v, arg))) for k, v in n.kwargs.items())))
                 for n in nodes)


def count_mismatches(nodes: list[torch.fx.Node], sq: int, sk: int) -> int:
    """Number of (i, j) where the bool mask computed by `nodes` (last one) differs from j <= i."""
    key = (_structure(nodes), sq, sk)
    if key not in _memo:
        api.count("mask_checks_compiled")  # one proof graph compiled and run
        _memo[key] = _count(nodes, sq, sk)
    else:
        api.count("mask_check_memo_hits")  # proved earlier in this process: no kernel compiled
    return _memo[key]


def _count(nodes: list[torch.fx.Node], sq: int, sk: int) -> int:
    from kiln.options import Options
    from kiln.runner import KilnGraph

    g = torch.fx.Graph()
    env: dict = {}
    for n in nodes:
        env[n] = g.node_copy(n, lambda a: env[a])
    mask = g.call_function(aten.view.default, (env[nodes[-1]], [sq, sk]))
    rows = g.call_function(aten.unsqueeze.default, (g.call_function(aten.arange.default, (sq,)), 1))
    cols = g.call_function(aten.unsqueeze.default, (g.call_function(aten.arange.default, (sk,)), 0))
    causal = g.call_function(aten.ge.Tensor, (rows, cols))
    differ = g.call_function(aten.ne.Tensor, (mask, causal))
    count = g.call_function(aten.sum.default, (differ,))
    g.output((count,))
    gm = torch.fx.GraphModule(torch.nn.Module(), g)
    FakeTensorProp(gm, FakeTensorMode()).propagate()
    (result,) = KilnGraph(gm, Options.from_args(None, None), f"mask_check{next(_ids)}")()
    return int(result)
