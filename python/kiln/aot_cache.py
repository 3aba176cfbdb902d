"""Warm starts skip AOTAutograd: its cache holds kiln's compiled forward/backward next to its own metadata.

AOTAutograd's cache (AOTAutogradCache, "bundled" entries) stores everything it derived from Dynamo's
graph (the joint trace, the partition, the runtime wrappers' metadata) together with the compiled
graphs, when those are `OutputCode` objects it can pickle. kiln's is `KilnOutputCode`: it carries the
ATen graph it was compiled from (GraphPickler bytes, fake-tensor metadata included), and on a cache hit
compiles that graph again, which finds its kernels in kiln's own disk cache. So a warm start costs
Dynamo's trace, the key, and loading the libraries, not the 2-3 s of AOTAutograd's trace and partition.

Entries live in kiln's cache directory, under a folder named after everything the stored graphs depend
on besides what AOTAutograd's key already covers (Dynamo's graph, inputs, torch, configs): kiln's build,
its Python sources, and the backend options. They never mix with Inductor's entries for the same graph.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import operator
import os
import time
import unittest.mock

import torch
from torch._inductor.output_code import OutputCode

from kiln import api
from kiln.log import logger

# Op namespaces kiln's ATen graphs use; GraphPickler refuses others (their ops may not exist on load).
_OP_NAMESPACES = ("torch.ops.aten", "torch.ops.prims", "torch.ops.kiln")

# Sources whose change alters the graphs AOTAutograd hands kiln, or what kiln does with them.
_SOURCES = ("backend.py", "decompositions.py", "partition.py", "mutations.py", "importer.py", "runner.py",
            "attention_rewrite.py", "mask_check.py", "symbolic.py", "aot_cache.py")
_source_digest: str | None = None


def _identity(opts) -> str:
    global _source_digest
    from kiln import _C

    if _source_digest is None:
        h = hashlib.sha256()
        here = os.path.dirname(os.path.abspath(__file__))
        for name in _SOURCES:
            with open(os.path.join(here, name), "rb") as f:
                h.update(f.read())
        _source_digest = h.hexdigest()
    # debug_dir and cache_dir only say where files go; they change no compiled code.
    relevant = {k: v for k, v in dataclasses.asdict(opts).items() if k not in ("debug_dir", "cache_dir")}
    parts = ["kiln-aot-v1", _C.build_id(), _source_digest, repr(sorted(relevant.items()))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def enabled(opts) -> bool:
    """Off with KILN_AOT_CACHE=0 and wherever PyTorch's caches are off (force_disable_caches)."""
    return os.environ.get("KILN_AOT_CACHE", "1") != "0" and not torch.compiler.config.force_disable_caches


# The options of the compile in progress: an entry loaded from the cache writes its debug files where
# this compile asks (its own options, pickled by the process that stored it, may name another place).
_current_opts: contextvars.ContextVar = contextvars.ContextVar("kiln_aot_opts", default=None)


@contextlib.contextmanager
def scope(opts):
    """While AOTAutograd runs: bundled entries, stored under kiln's cache directory.

    The backward is compiled with the forward (not at its first call) so that the entry, saved once
    both exist, is saved inside this scope; KilnOutputCode defers the backward's real work anyway.
    """
    import torch._inductor.codecache as codecache
    from torch._functorch._aot_autograd.autograd_cache import AOTAutogradCache

    from kiln import _C

    directory = os.path.join(_C.cache_dir(), "aot", _identity(opts))
    token = _current_opts.set(opts)
    with contextlib.ExitStack() as stack:
        stack.callback(_current_opts.reset, token)
        stack.enter_context(torch._functorch.config.patch(bundled_autograd_cache=True,
                                                          force_non_lazy_backward_lowering=True))
        stack.enter_context(unittest.mock.patch.object(AOTAutogradCache, "_get_tmp_dir",
                                                       classmethod(lambda cls: directory)))
        # The key's Inductor part would register Inductor's code generators to hash their custom
        # passes: importing most of Inductor (~0.5 s) for passes kiln never runs. kiln's key leaves
        # them out, the same way whether or not Inductor ran in this process.
        for name, value in (("init_backend_registration", lambda: None), ("custom_backend_passes", {}),
                            ("custom_backend_codegen_configs", {})):
            if hasattr(codecache, name):
                stack.enter_context(unittest.mock.patch.object(codecache, name, value))
        yield


class KilnOutputCode(OutputCode):
    """A kiln-compiled ATen graph, as AOTAutograd calls and caches it (boxed calling convention).

    The graph's pickle is taken before compiling, since compiling edits the graph (mutations split
    off, partitions fused). A backward graph is compiled at its first call, as AOTAutograd would do
    without a cache; a forward or inference graph at once, so its errors surface at compile time.
    """

    def __init__(self, gm: torch.fx.GraphModule, opts, kind: str):
        super().__init__()
        # An instance attribute: the wrappers AOTAutograd puts around a compiled graph (functools.wraps)
        # copy the instance's __dict__, and this flag must reach them.
        self._boxed_call = True
        self._payload = _dumps(gm)
        self._opts, self._kind = opts, kind
        self._gm, self._fn = gm, None
        self._call = self._first_call
        if kind != "backward":
            self._materialize()

    def _materialize(self):
        if self._fn is None:
            from kiln.backend import compile_aten_graph

            gm, self._gm = self._gm, None
            if gm is None:
                gm = _loads(self._payload)
            self._fn = compile_aten_graph(gm, None, opts=self._opts, kind=self._kind)
            self._call = self._fn
        return self._fn

    def _first_call(self, inputs):
        return self._materialize()(inputs)

    # Calling the object calls self._call: the compiled graph itself once it exists (a native
    # _C.BoxedCall for most graphs). A property over a C getter, not a method: a method would put a
    # Python frame on every call (measured 0.15 µs of a one-op graph's call).
    __call__ = property(operator.attrgetter("_call"))

    def prepare_for_serialization(self) -> None:
        from torch._functorch._aot_autograd.autograd_cache import BypassAOTAutogradCache

        if self._payload is None:
            raise BypassAOTAutogradCache("kiln: this graph cannot be pickled")
        self._gm, self._fn, self._call = None, None, self._first_call

    def post_compile(self, example_inputs, constants, graph_kwargs) -> None:
        """A cache hit: the graph compiles again, finding its kernels in kiln's disk cache."""
        api.count("aot_cache_hits")
        if self._kind != "backward":
            self._materialize()

    def set_triton_bundle(self, triton_bundle) -> None:
        pass

    def __getstate__(self):
        state = {**self.__dict__, "_gm": None, "_fn": None}
        state.pop("_call", None)  # a bound method of this object, or the native graph: rebuilt
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._call = self._first_call
        # Where files go is this process's choice: the debug and cache directories of the compile
        # loading the entry, not of the one that stored it (they are not in the key either).
        current = _current_opts.get()
        if current is not None:
            self._opts = dataclasses.replace(self._opts, debug_dir=current.debug_dir, cache_dir=current.cache_dir)


def _dumps(gm: torch.fx.GraphModule) -> bytes | None:
    from torch.fx._graph_pickler import GraphPickler, Options

    t0 = time.perf_counter()
    try:
        payload = GraphPickler.dumps(gm, Options(ops_filter=lambda name: name.startswith(_OP_NAMESPACES)))
    except Exception as e:  # noqa: BLE001 - an unpicklable graph is only not cached
        logger.info("kiln: graph not cached by AOTAutograd's cache (%s)", e)
        return None
    api.count("aot_cache_pickle_s", time.perf_counter() - t0)
    return payload


def _loads(payload: bytes) -> torch.fx.GraphModule:
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx._graph_pickler import GraphPickler
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    return GraphPickler.loads(payload, FakeTensorMode(shape_env=ShapeEnv()))


def compiler(opts, kind: str):
    """AOTAutograd's compiler for `kind` graphs ("forward", "backward", "inference"), cacheable."""
    from torch._functorch._aot_autograd.schemas import SerializableAOTDispatchCompiler

    return SerializableAOTDispatchCompiler(KilnOutputCode, lambda gm, _inputs: KilnOutputCode(gm, opts, kind))
