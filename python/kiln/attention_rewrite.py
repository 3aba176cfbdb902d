"""Hand-written attention -> scaled_dot_product_attention, before autograd, so both passes fuse.

The seed writes attention as matmul -> scale -> causal mask -> softmax -> matmul. kiln's fused
attention kernel can only replace it if the rewrite happens before AOTAutograd derives the backward
(afterwards the backward is already spelled as a dozen S x S ops). Dynamo's graph is torch-level and
has many spellings (`@`, einsum, masked_fill, where, softmax or max-exp-sum-div), so the graph is
first traced to ATen (one spelling each), matched there, and the rewritten ATen graph goes to
AOTAutograd.

Nothing is assumed from names or shapes alone. Every claim the rewrite rests on is checked by
evaluating the graph's own nodes at the real sizes, without allocating: view chains on meta tensors
(the bmm operands are q, k and v reshaped: views whose composition is exactly reshape / transpose; the
result feeds back as a plain reshape), and the mask through a kiln kernel that counts where it differs
from the causal `j <= i` pattern. Anything else stays as it
was. Graphs with symbolic sizes are left alone.
"""
from __future__ import annotations

import hashlib
import math
import operator
import os
import pickle

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.proxy_tensor import make_fx

from kiln import api
from kiln.log import logger

aten = torch.ops.aten

# Single-input ops that only rearrange (or copy) elements: a chain of them is one index map.
_VIEW_OPS = {
    aten.view.default, aten._unsafe_view.default, aten.reshape.default, aten.expand.default, aten.permute.default,
    aten.transpose.int, aten.t.default, aten.unsqueeze.default, aten.squeeze.dim, aten.squeeze.dims,
    aten.squeeze.default, aten.alias.default, aten.clone.default,
}
_MATMUL_TARGETS = {operator.matmul, torch.matmul, torch.bmm, torch.einsum, torch.Tensor.matmul, torch.Tensor.bmm}
_MATMUL_METHODS = {"matmul", "bmm", "__matmul__"}


def _might_have_attention(gm: torch.fx.GraphModule) -> bool:
    """Cheap gate before the ATen trace: at least two matrix products in Dynamo's graph."""
    count = 0
    for n in gm.graph.nodes:
        if (n.op == "call_function" and n.target in _MATMUL_TARGETS) or (
                n.op == "call_method" and n.target in _MATMUL_METHODS):
            count += 1
    return count >= 2


def _static_tensor(x) -> bool:
    return isinstance(x, torch.Tensor) and all(isinstance(s, int) for s in x.shape)


def _val(n):
    return n.meta.get("val") if isinstance(n, torch.fx.Node) else None


def _only_user(n: torch.fx.Node):
    users = list(n.users)
    return users[0] if len(users) == 1 else None


def _view_chain_up(n: torch.fx.Node) -> list[torch.fx.Node]:
    """n, then its view-op ancestors: [n, parent, grandparent, ...] while the ops are views."""
    chain = [n]
    while chain[-1].op == "call_function" and chain[-1].target in _VIEW_OPS:
        chain.append(chain[-1].args[0])
    return chain


def _run(nodes: list[torch.fx.Node], env: dict, *, clone_as_alias: bool = False) -> torch.Tensor:
    """Evaluates `nodes` (in order); env maps the other nodes they read.

    clone_as_alias: a clone copies values unchanged, so for an index map it is the identity; replaying
    it as an alias keeps the result a view whose strides still describe the whole map.
    """

    def look(a):
        return env[a] if isinstance(a, torch.fx.Node) else a

    for node in nodes:
        args = torch.fx.node.map_aggregate(node.args, look)
        kwargs = torch.fx.node.map_aggregate(node.kwargs, look)
        if clone_as_alias and node.target is aten.clone.default:
            env[node] = aten.alias.default(args[0])
        else:
            env[node] = node.target(*args, **kwargs)
    return env[nodes[-1]]


def _layout(t: torch.Tensor):
    return tuple(t.shape), tuple(t.stride()), t.storage_offset()


def _source_through_views(operand: torch.fx.Node, expect) -> torch.fx.Node | None:
    """The furthest view ancestor X of `operand` with operand == expect(X) exactly.

    Checked on a meta tensor standing in for X: when both sides are views of it (no copy anywhere),
    equal sizes, strides and offset mean the same element at every index. Nothing is allocated.
    """
    chain = _view_chain_up(operand)
    for i in range(len(chain) - 1, -1, -1):
        src = chain[i]
        v = _val(src)
        if not _static_tensor(v) or v.dim() not in (3, 4):
            continue
        probe = torch.empty(tuple(v.shape), device="meta")
        try:
            got = _run(list(reversed(chain[:i])), {src: probe}, clone_as_alias=True) if i > 0 else probe
            want = expect(probe)
        except Exception:  # noqa: BLE001 - a chain the probe cannot replay is simply not a match
            continue
        if want is None or not (torch._C._is_alias_of(got, probe) and torch._C._is_alias_of(want, probe)):
            continue
        if _layout(got) == _layout(want):
            return src
    return None


def _input_free_ancestors(n: torch.fx.Node) -> list[torch.fx.Node] | None:
    """The nodes computing n, in graph order, if none of them reads a graph input."""
    seen, order = set(), []

    def visit(x):
        if x in seen:
            return True
        seen.add(x)
        if x.op != "call_function":
            return False
        for a in x.all_input_nodes:
            if not visit(a):
                return False
        order.append(x)
        return True

    return order if visit(n) else None


def _is_neg_inf(a) -> bool:
    if isinstance(a, float):
        return a == -math.inf
    if isinstance(a, torch.fx.Node) and a.op == "call_function" and a.target in (aten.scalar_tensor.default,
                                                                                  aten.full.default):
        value = a.args[0] if a.target is aten.scalar_tensor.default else a.args[1]
        return isinstance(value, float) and value == -math.inf
    return False


def _causal_mask_sense(cond: torch.fx.Node, sq: int, sk: int) -> bool | None:
    """True if cond is exactly the causal 'visible' mask (j <= i), False if exactly its complement.

    The mask's own nodes are evaluated at the real size, but by kiln: one fused kernel counts the
    positions where the mask and i >= j differ, so no sq x sk tensor is ever allocated.
    """
    nodes = _input_free_ancestors(cond)
    v = _val(cond)
    if nodes is None or v is None or v.dtype != torch.bool or v.dim() < 2 or tuple(v.shape[-2:]) != (sq, sk) or any(
            s != 1 for s in v.shape[:-2]):
        return None
    from kiln.mask_check import count_mismatches

    try:
        differ = count_mismatches(nodes, sq, sk)
    except Exception as e:  # noqa: BLE001 - an unprovable mask keeps the original graph
        logger.info("kiln: attention mask not checked (%s)", e)
        return None
    if differ == 0:
        return True
    if differ == sq * sk:
        return False
    return None


def _softmax_output(x: torch.fx.Node) -> torch.fx.Node | None:
    """The node computing softmax(x, dim=-1), as _softmax or as max-subtract-exp-sum-divide."""
    users = list(x.users)
    rank = _val(x).dim()
    last = lambda dims: list(dims) in ([-1], [rank - 1])  # noqa: E731
    if len(users) == 1 and users[0].target is aten._softmax.default:
        sm = users[0]
        return sm if sm.args[1] in (-1, rank - 1) and not sm.args[2] else None
    if len(users) != 2:
        return None
    amax = next((u for u in users if u.target is aten.amax.default), None)
    sub = next((u for u in users if u.target is aten.sub.Tensor), None)
    if amax is None or sub is None or len(amax.args) < 3 or not last(amax.args[1]) or not amax.args[2]:
        return None
    if sub.args[0] is not x or sub.args[1] is not amax or _only_user(amax) is not sub:
        return None
    exp = _only_user(sub)
    if exp is None or exp.target is not aten.exp.default:
        return None
    eu = list(exp.users)
    s = next((u for u in eu if u.target is aten.sum.dim_IntList), None)
    div = next((u for u in eu if u.target is aten.div.Tensor), None)
    if len(eu) != 2 or s is None or div is None or len(s.args) < 3 or not last(s.args[1]) or not s.args[2]:
        return None
    if div.args[0] is not exp or div.args[1] is not s or _only_user(s) is not div:
        return None
    return div


def _match(bmm1: torch.fx.Node):
    """(q, k, v, out_node, scale, causal) for the attention starting at bmm1, or None."""
    qv, kv = _val(bmm1.args[0]), _val(bmm1.args[1])
    if not (_static_tensor(qv) and _static_tensor(kv)) or qv.dtype not in (torch.float32, torch.float64):
        return None
    n, sq, d = qv.shape
    sk = kv.shape[2]
    # scores: bmm1 -> views -> scale (div or mul by a Python number)
    x = bmm1
    while (u := _only_user(x)) is not None and u.target in _VIEW_OPS:
        x = u
    scale_node = _only_user(x)
    if scale_node is None or len(scale_node.args) != 2 or scale_node.args[0] is not x or not isinstance(
            scale_node.args[1], (int, float)):
        return None
    if scale_node.target is aten.div.Tensor:
        scale = 1.0 / float(scale_node.args[1])
    elif scale_node.target is aten.mul.Tensor:
        scale = float(scale_node.args[1])
    else:
        return None
    scores = scale_node
    sv = _val(scores)
    if tuple(sv.shape[-2:]) != (sq, sk) or math.prod(sv.shape[:-2]) != n:
        return None
    # mask: where(visible, s, -inf) or where(masked, -inf, s)
    w = _only_user(scores)
    if w is None or w.target is not aten.where.self or len(w.args) != 3 or _val(w).shape != sv.shape:
        return None
    if w.args[1] is scores and _is_neg_inf(w.args[2]):
        want_visible = True
    elif w.args[2] is scores and _is_neg_inf(w.args[1]):
        want_visible = False
    else:
        return None
    if _causal_mask_sense(w.args[0], sq, sk) is not want_visible:
        return None
    p = _softmax_output(w)
    if p is None:
        return None
    # P -> views -> bmm2(P, V)
    y = p
    while (u := _only_user(y)) is not None and u.target in _VIEW_OPS:
        y = u
    bmm2 = _only_user(y)
    if bmm2 is None or bmm2.target is not aten.bmm.default or bmm2.args[0] is not y:
        return None
    if _source_through_views(y, lambda t: t.reshape(n, sq, sk) if t.shape == sv.shape else None) is not p:
        return None
    vv = _val(bmm2.args[1])
    if not _static_tensor(vv) or vv.dtype != qv.dtype:
        return None
    dv = vv.shape[2]

    def lead_ok(t):
        return t.dim() in (3, 4) and math.prod(t.shape[:-2]) == n

    q = _source_through_views(
        bmm1.args[0], lambda t: t.reshape(n, sq, d) if lead_ok(t) and t.shape[-2:] == (sq, d) else None)
    k = _source_through_views(
        bmm1.args[1], lambda t: t.reshape(n, sk, d).transpose(1, 2) if lead_ok(t) and t.shape[-2:] == (sk, d) else None)
    v = _source_through_views(
        bmm2.args[1], lambda t: t.reshape(n, sk, dv) if lead_ok(t) and t.shape[-2:] == (sk, dv) else None)
    if q is None or k is None or v is None:
        return None
    lead = tuple(_val(q).shape[:-2])
    if tuple(_val(k).shape[:-2]) != lead or tuple(_val(v).shape[:-2]) != lead:
        return None
    # out: bmm2 -> views -> a node shaped [lead, sq, dv] that is exactly bmm2 reshaped
    out = bmm2
    z = bmm2
    while (u := _only_user(z)) is not None and u.target in _VIEW_OPS:
        z = u
        if tuple(_val(z).shape) == lead + (sq, dv):
            out = z
    if out is bmm2 and tuple(_val(bmm2).shape) != lead + (sq, dv):
        return None
    unflattened = _source_through_views(out, lambda t: t.reshape(lead + (sq, dv)) if t.shape == (n, sq, dv) else None)
    if out is not bmm2 and unflattened is not bmm2:
        return None
    return q, k, v, out, scale, want_visible


def _replace(g: torch.fx.Graph, q, k, v, out, scale: float) -> None:
    four_d = _val(q).dim() == 4
    with g.inserting_before(out):
        args = []
        for t in (q, k, v):
            args.append(t if four_d else g.call_function(aten.unsqueeze.default, (t, 1)))
        sdpa = g.call_function(aten.scaled_dot_product_attention.default, tuple(args),
                               {"dropout_p": 0.0, "is_causal": True, "scale": scale})
        result = sdpa if four_d else g.call_function(aten.squeeze.dim, (sdpa, 1))
    out.replace_all_uses_with(result)


class _Ref:
    """A reference to an earlier node by name, in a serialized graph."""

    def __init__(self, name: str):
        self.name = name


def _dump_graph(gm: torch.fx.GraphModule) -> list:
    """The graph as plain picklable rows (op, name, target, args, kwargs); ATen targets by name.

    Pickling the GraphModule itself would re-trace its code symbolically on load (hundreds of ms)."""
    rows = []
    for n in gm.graph.nodes:
        t = n.target
        if isinstance(t, torch._ops.OpOverload):
            t = ("aten-op", t._schema.name, t._overloadname)
        rows.append((n.op, n.name, t, torch.fx.node.map_arg(n.args, lambda a: _Ref(a.name)),
                     torch.fx.node.map_arg(n.kwargs, lambda a: _Ref(a.name))))
    return rows


def _load_graph(rows: list) -> torch.fx.GraphModule:
    g = torch.fx.Graph()
    env: dict[str, torch.fx.Node] = {}

    def resolve(a):
        if isinstance(a, _Ref):
            return env[a.name]
        if isinstance(a, (list, tuple)):
            return type(a)(resolve(x) for x in a)
        if isinstance(a, dict):
            return {k: resolve(v) for k, v in a.items()}
        return a

    for op, name, target, args, kwargs in rows:
        if isinstance(target, tuple) and len(target) == 3 and target[0] == "aten-op":
            ns, _, op_name = target[1].partition("::")
            packet = getattr(getattr(torch.ops, ns), op_name)
            target = getattr(packet, target[2] or "default")
        node = g.create_node(op, target, resolve(args), resolve(kwargs), name=name)
        env[name] = node
    return torch.fx.GraphModule(torch.nn.Module(), g)


def _source_digest() -> str:
    """The Python half of the rewrite's identity (kiln's build id covers the C++ half)."""
    h = hashlib.sha256()
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("attention_rewrite.py", "mask_check.py", "decompositions.py"):
        with open(os.path.join(here, name), "rb") as f:
            h.update(f.read())
    return h.hexdigest()


_SOURCE_DIGEST = None


def _cache_key(gm: torch.fx.GraphModule, example_inputs) -> str | None:
    """What the rewrite's outcome depends on: the graph's code and its inputs' metadata. None when
    the graph reads constants (get_attr), whose values the code does not show."""
    global _SOURCE_DIGEST
    if any(n.op == "get_attr" for n in gm.graph.nodes):
        return None
    if _SOURCE_DIGEST is None:
        _SOURCE_DIGEST = _source_digest()
    from kiln import _C

    parts = ["kiln-attention-rewrite-v2", _C.build_id(), torch.__version__, _SOURCE_DIGEST, gm.code]
    for x in example_inputs:
        if isinstance(x, torch.Tensor):
            parts.append(repr((tuple(x.shape), x.stride(), x.storage_offset(), x.dtype, x.requires_grad,
                               x.device.type)))
        else:
            parts.append(repr((type(x).__name__, x)))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _cached(key: str):
    """(hit, module or None); a miss on any trouble (the entry is then recomputed and replaced)."""
    from kiln import _C

    try:
        payload = _C.cache_load(key)
        if payload is None:
            return False, None
        entry = pickle.loads(payload)
        return True, entry
    except Exception as e:  # noqa: BLE001 - a cache problem only costs the trace
        logger.info("kiln: attention rewrite cache entry unusable (%s); tracing again", e)
        return False, None


def _store_payload(key: str, payload: bytes) -> None:
    from kiln import _C

    try:
        _C.cache_store(key, payload)
    except Exception as e:  # noqa: BLE001
        logger.info("kiln: attention rewrite not cached (%s)", e)


def rewrite_attention(gm: torch.fx.GraphModule, example_inputs, decompositions: dict) -> torch.fx.GraphModule:
    """Dynamo's graph, or its ATen trace with each exact causal attention replaced by SDPA.

    The outcome is cached on disk by the graph's code and input metadata, so a warm start neither
    traces nor proves again: it loads the rewritten graph (or the verdict "nothing to rewrite"). A
    fresh rewrite continues with the graph as loaded back, so both starts hand AOTAutograd the same
    code (same node names: kiln's own cache keys match).
    """
    if not _might_have_attention(gm) or not all(_static_tensor(x) or not isinstance(x, torch.Tensor)
                                                for x in example_inputs):
        return gm
    if any(isinstance(x, torch.SymInt) for x in example_inputs):
        return gm
    key = _cache_key(gm, example_inputs)
    if key is not None:
        hit, entry = _cached(key)
        if hit and isinstance(entry, dict) and "count" in entry:
            api.count("attention_rewrite_cache_hits")
            if not entry["count"]:
                return gm
            api.count("attention_rewrites", entry["count"])
            logger.info("kiln: %d causal attention pattern(s) rewritten (cached)", entry["count"])
            return _load_graph(entry["graph"])
    result, count = _rewrite(gm, example_inputs, decompositions)
    if key is not None and count:
        # Continue with the graph as a warm start will load it (see the docstring).
        try:
            payload = pickle.dumps({"count": count, "graph": _dump_graph(result)})
            result = _load_graph(pickle.loads(payload)["graph"])
            _store_payload(key, payload)
        except Exception as e:  # noqa: BLE001 - e.g. a module that does not pickle
            logger.info("kiln: attention rewrite not cached (%s)", e)
    elif key is not None and count == 0:
        _store_payload(key, pickle.dumps({"count": 0, "graph": None}))
    return result


def _rewrite(gm: torch.fx.GraphModule, example_inputs, decompositions: dict):
    """(graph, rewrites made); rewrites is None when the trace failed (nothing worth caching)."""
    try:
        # Dynamo hands backends real example inputs; the trace runs on static fake copies of them
        # (a fresh fake mode: Dynamo's own would make the sizes symbolic again).
        mode = FakeTensorMode()
        fakes = [mode.from_tensor(x) if isinstance(x, torch.Tensor) else x for x in example_inputs]
        with mode:
            traced = make_fx(gm, decomposition_table=decompositions, tracing_mode="real")(*fakes)
    except Exception as e:  # noqa: BLE001 - the rewrite is an optimisation; the original graph still compiles
        logger.info("kiln: attention rewrite skipped (ATen trace failed: %s)", e)
        return gm, None
    traced.graph.eliminate_dead_code()  # dead aliases would count as extra users of pattern nodes
    matches = []
    for node in traced.graph.nodes:
        if node.op == "call_function" and node.target is aten.bmm.default:
            try:
                m = _match(node)
            except Exception as e:  # noqa: BLE001 - a matcher bug must never break compilation
                logger.info("kiln: attention match at %s skipped (%s: %s)", node.name, type(e).__name__, e)
                m = None
            if m is not None:
                matches.append(m)
    if not matches:
        return gm, 0
    for q, k, v, out, scale, _ in matches:
        _replace(traced.graph, q, k, v, out, scale)
    traced.graph.eliminate_dead_code()
    traced.recompile()
    api.count("attention_rewrites", len(matches))
    logger.info("kiln: %d causal attention pattern(s) rewritten to the fused attention kernel", len(matches))
    return traced, len(matches)
