"""The `kiln` torch.compile backend: AOTAutograd in front, kiln's C++ compiler behind."""
from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import operator

import torch
from torch._dynamo.backends.common import aot_autograd
from torch.fx.passes.infra.partitioner import CapabilityBasedPartitioner
from torch.fx.passes.operator_support import OperatorSupportBase

from kiln import _C, aot_cache, api
from kiln.decompositions import decomposition_table
from kiln.importer import IGNORED_TARGETS, NodeRejected, is_symint_node, meta_val, target_name
from kiln.log import log_once, logger
from kiln.mutations import split_mutations, with_mutations
from kiln.options import Options
from kiln.runner import compile_graph

_graph_ids = itertools.count()


def unsupported_reason(node) -> str | None:
    """None if kiln compiles this node, else a short reason (the op name)."""
    if node.op != "call_function":
        return None
    if "kiln_rejected" in node.meta:  # its lowering rule refused these arguments
        return node.meta["kiln_rejected"]
    if node.target is operator.getitem:
        # Unpacking a result is supported exactly when the op that produced it is.
        src = node.args[0]
        if isinstance(src, torch.fx.Node) and src.op == "call_function":
            return unsupported_reason(src)
        return "getitem"
    if is_symint_node(node):
        return None
    if not isinstance(node.target, torch._ops.OpOverload):
        return target_name(node)
    name = target_name(node)
    if name in IGNORED_TARGETS:
        return None
    tensors = [t for v in [meta_val(node)] + [meta_val(a) for a in node.all_input_nodes]
               for t in (v if isinstance(v, (list, tuple)) else [v]) if isinstance(t, torch.Tensor)]
    return _C.classify(name, [t.dtype for t in tensors], all(t.device.type == "cpu" for t in tensors)) or None


class _Support(OperatorSupportBase):
    def is_node_supported(self, submodules, node) -> bool:
        if node.op != "call_function" or is_symint_node(node) or target_name(node) in IGNORED_TARGETS:
            return False  # size arithmetic stays with the caller of the islands
        return unsupported_reason(node) is None


def _boxed(fn):
    def call(args):
        out = fn(*args)
        args.clear()  # let AOTAutograd's inputs die early
        return out

    call._boxed_call = True
    return call


_pool_chosen = False


def _choose_thread_pool() -> None:
    """Run kiln's parallel loops on PyTorch's own OpenMP pool when one is loaded (KILN_POOL=kiln opts out).

    PyTorch's OpenMP workers spin for a while after every eager op; a second pool beside them loses
    its core to that spinning. Sharing the one pool removes the fight.
    """
    global _pool_chosen
    if _pool_chosen:
        return
    _pool_chosen = True
    import os

    if os.environ.get("KILN_POOL", "openmp") != "openmp":
        return
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libgomp" in line and "/" in line}
    except OSError:
        return
    for path in sorted(paths):
        if _C.share_openmp_pool(path):
            logger.info("kiln: parallel loops run on PyTorch's OpenMP pool (%s)", path)
            return


def compile_aten_graph(gm: torch.fx.GraphModule, example_inputs, *, opts: Options, kind: str):
    """AOTAutograd's forward / backward / inference compiler."""
    _choose_thread_pool()
    if opts.threads:
        _C.set_num_threads(opts.threads)
    else:
        _C.set_num_threads(torch.get_num_threads())
    name = f"graph{next(_graph_ids)}_{kind}"
    mutations = split_mutations(gm)  # only inference graphs keep input mutations (copy_ nodes)
    reasons = {}
    has_constants = False
    for n in gm.graph.nodes:
        r = unsupported_reason(n)
        has_constants = has_constants or n.op == "get_attr"
        if r is not None:
            reasons.setdefault(r, n)
    if not reasons and not has_constants:
        try:
            runner = compile_graph(gm, opts, name, raise_rejected=True, mutations=mutations)
        except NodeRejected as e:  # that one node runs eagerly; the rest is partitioned below
            e.node.meta["kiln_rejected"] = e.reason
            reasons[e.reason] = e.node
        else:
            return with_mutations(runner.boxed() if runner is not None else _boxed(gm.forward), mutations)

    # Tensor constants (get_attr) stay outside the partitions, which take them as inputs.
    for r in reasons:
        api.fallback_ops[r] += 1
        log_once(f"fallback:{r}", f"kiln: {r} is not supported; it runs eagerly")
    if opts.fallback == "error":
        raise ValueError(f"[kiln user error] unsupported ops (fallback='error'): {sorted(reasons)}")

    partitioner = CapabilityBasedPartitioner(gm, _Support(), allows_single_node_partition=True)
    fused = partitioner.fuse_partitions(partitioner.propose_partitions())
    islands = 0
    for child_name, child in list(fused.named_children()):
        if not child_name.startswith("fused_"):
            continue
        runner = compile_graph(child, opts, f"{name}_{child_name}")
        if runner is not None:
            setattr(fused, child_name, _Island(runner))
            islands += 1
    api.count("eager_islands", sum(1 for n in fused.graph.nodes if n.op == "call_function" and
                                   unsupported_reason(n) is not None))
    logger.info("%s: %d kiln partitions, eager ops: %s", name, islands, sorted(reasons))
    fused.recompile()
    return with_mutations(_boxed(fused.forward), mutations)


class _Island(torch.nn.Module):
    """A kiln-compiled partition inside a graph that also has eager ops."""

    def __init__(self, runner):
        super().__init__()
        self.runner = runner

    def forward(self, *args):
        out = self.runner(*args)
        return out[0] if len(out) == 1 and self.runner.imp.single_output else tuple(out)


def kiln_backend(gm: torch.fx.GraphModule, example_inputs, *, mode: str | None = None, options: dict | None = None,
                 **kwargs):
    """Entry point for torch.compile(..., backend="kiln")."""
    if options and "mode" in options and mode is None:
        mode = options["mode"]
        options = {k: v for k, v in options.items() if k != "mode"}
    opts = Options.from_args(mode, options)
    if opts.cache_dir:
        import os

        os.environ["KILN_CACHE_DIR"] = opts.cache_dir
    from kiln.attention_rewrite import rewrite_attention
    from kiln.partition import kiln_partition

    gm = rewrite_attention(gm, example_inputs, decomposition_table())
    if aot_cache.enabled(opts):
        compilers = {kind: aot_cache.compiler(opts, kind) for kind in ("forward", "backward", "inference")}
        scope = aot_cache.scope(opts)
    else:
        compilers = {kind: functools.partial(compile_aten_graph, opts=opts, kind=kind)
                     for kind in ("forward", "backward", "inference")}
        scope = contextlib.nullcontext()
    with scope:
        return aot_autograd(
            fw_compiler=compilers["forward"],
            bw_compiler=compilers["backward"],
            inference_compiler=compilers["inference"],
            decompositions=decomposition_table(),
            partition_fn=kiln_partition,
            keep_inference_input_mutations=True,  # copy_ nodes: see kiln.mutations
        )(gm, example_inputs)


def _register() -> None:
    from torch._dynamo import list_backends, register_backend

    if "kiln" not in list_backends(exclude_tags=()):
        register_backend(compiler_fn=kiln_backend, name="kiln")


try:
    _register()
except Exception:  # registration through the entry point works without it
    logging.getLogger("kiln").debug("kiln: in-code registration skipped", exc_info=True)
