"""Calling a compiled graph: bind symbols, allocate outputs, one native call, rebuild views."""
from __future__ import annotations

import logging
import os

import sympy
import torch

import kiln
from kiln import _C, api
from kiln.importer import GraphImport, NodeRejected
from kiln.log import log_once, logger
from kiln.options import Options

_PKG = os.path.dirname(os.path.abspath(kiln.__file__))
INCLUDE_DIR = os.path.join(_PKG, "include")
LIB_DIR = os.path.join(_PKG, "lib")

_DTYPES = {"f32": torch.float32, "f64": torch.float64, "i64": torch.int64, "i32": torch.int32, "bool": torch.bool}

# Output allocation on the call path: the allocator Inductor's generated code uses (no dispatcher
# round trip, about half of torch.empty_strided's cost), where this torch has it.
try:
    from torch._C._dynamo.guards import _empty_strided_cpu as _alloc
except ImportError:  # pragma: no cover - another torch
    def _alloc(sizes, strides, dtype):
        return torch.empty_strided(sizes, strides, dtype=dtype)


# Reading data pointers on the call path: the C function PyTorch publishes for compiled code (its
# address; _C calls it on exact torch.Tensor / nn.Parameter objects), where this torch has it.
try:
    from torch._C._dynamo.guards import _torchinductor_pyobject_tensor_data_ptr as _data_ptr_fn
except ImportError:  # pragma: no cover - another torch: t.data_ptr() through Python
    _data_ptr_fn = None
if isinstance(_data_ptr_fn, int) and _data_ptr_fn != 0:
    _C.use_fast_data_ptr(_data_ptr_fn, torch.Tensor, torch.nn.Parameter)


class KilnGraph:
    """A compiled FX graph; calling it returns what the graph's output node returns."""

    def __init__(self, gm: torch.fx.GraphModule, opts: Options, name: str, mutations=()):
        self.fallback = gm.forward
        self.imp = GraphImport(gm)
        debug_dir = os.path.join(opts.debug_dir, name) if opts.debug_dir else ""
        if debug_dir:  # the FX graph and a runnable repro beside every stage C++ writes
            from kiln import repro

            repro.write(gm, debug_dir, name)
        # Mutated inputs: the planner decides which new values can be written over the old ones
        # (kiln.mutations).
        candidates = {}
        first_extra = len(self.imp.outputs) - len(mutations)
        for k, m in enumerate(mutations):
            kind, j = self.imp.outputs[first_extra + k]
            if (kind == "kiln" and m.arg in self.imp.tensor_args
                    and self.imp.outputs.count((kind, j)) == 1):
                candidates[j] = (self.imp.tensor_args.index(m.arg), m.arg)
        self.compiled = _C.compile(self.imp.builder, INCLUDE_DIR, LIB_DIR, debug_dir, opts.mode, opts.verify,
                                   self.imp.alias_ok, [(j, i) for j, (i, _) in candidates.items()],
                                   opts.gemm_bf16_planes(), opts.isa or "")
        t = self.compiled.times
        api.count("compile_seconds", t["total"])
        api.count_graph_isa(self.compiled.isa)
        logger.info("compiled %s: %d kernels, %.3fs (passes %.3fs, codegen %.3fs, compiler %.3fs, cache hit %s)",
                    name, self.compiled.num_kernels, t["total"], t["passes"], t["codegen"], t["compiler"],
                    t["cache_hit"])
        self.name = name
        self.static = not self.imp.symbols
        self.out_dtypes = [_DTYPES[self.compiled.output_dtype(j)] for j in range(len(self.imp.kiln_outputs))]
        self._static_layouts = self._layouts([]) if self.static else None
        self.write_into: dict[int, int] = {}  # kiln output -> argument that is its buffer (kiln.mutations)
        for j, (i, arg) in candidates.items():
            if self.compiled.in_place_of(j) == i:
                self.write_into[j] = arg
        # The common call: static sizes, fresh outputs, only kiln results; views are only of other
        # outputs (an output returned again as its alias).
        self._fast = None
        if self.static and all(alias is None or alias[0] == "output" for _, _, alias in self._static_layouts) and all(
                kind == "kiln" for kind, _ in self.imp.outputs):
            allocs = [None if alias is not None else (tuple(sz), tuple(st), dt)
                      for (sz, st, alias), dt in zip(self._static_layouts, self.out_dtypes)]
            views = [(j, alias[1], tuple(sz), tuple(st), alias[2])
                     for j, (sz, st, alias) in enumerate(self._static_layouts) if alias is not None]
            self._fast = (allocs, [v for _, v in self.imp.outputs], views)

    def _layouts(self, syms):
        layouts = []
        for j in range(len(self.imp.kiln_outputs)):
            sizes, strides = self.compiled.output_layout(j, syms)
            layouts.append((sizes, strides, self.compiled.output_alias(j, syms)))
        return layouts

    def _outputs_in_place(self, args, layouts):
        outs = []
        for j, ((sizes, strides, alias), dt) in enumerate(zip(layouts, self.out_dtypes)):
            t = args[self.write_into[j]] if j in self.write_into else None
            fits = t is not None and alias is None and t.dtype == dt and tuple(t.shape) == tuple(sizes) and all(
                n <= 1 or s == w for n, s, w in zip(sizes, t.stride(), strides))
            outs.append(t if fits else None if alias is not None else torch.empty_strided(sizes, strides, dtype=dt))
        return outs

    def _restride(self, inputs, layouts):
        """inputs with every wrongly strided one copied into its compiled strides (None if that can't be)."""
        aliased = {alias[1] for _, _, alias in layouts if alias is not None and alias[0] == "input"}
        fixed = list(inputs)
        for i, (t, want) in enumerate(zip(inputs, self.imp.input_strides)):
            if all(n <= 1 or s == w for n, s, w in zip(t.shape, t.stride(), want or t.stride())):
                continue
            if want is None or i in aliased:  # a returned view must stay a view of the caller's tensor
                return None
            fixed[i] = torch.empty_strided(t.shape, want, dtype=t.dtype).copy_(t)
        return fixed

    def boxed(self):
        """The boxed call AOTAutograd makes (a list of arguments, cleared by the call).

        The common call is one native call: _C.BoxedCall checks the inputs, allocates the outputs,
        runs the graph, makes the outputs that are views and returns the results (kiln outputs,
        arguments, constants). Graphs with dynamic sizes, size results or outputs written into an
        input, and calls with inputs in another layout, go through __call__ here.
        """
        def slow(args):
            out = self(*args)
            args.clear()  # let AOTAutograd's inputs die early
            return out

        slow._boxed_call = True
        kinds = {"kiln": 0, "arg": 1, "const": 2}  # _C.BoxedCall's result kinds
        if not self.static or self.write_into or any(kind not in kinds for kind, _ in self.imp.outputs):
            return slow
        outputs = [(0, tuple(sz), tuple(st), dt) if alias is None else
                   (1, alias[0] == "input", alias[1], tuple(sz), tuple(st), alias[2])
                   for (sz, st, alias), dt in zip(self._static_layouts, self.out_dtypes)]
        results = [(kinds[kind], v) for kind, v in self.imp.outputs]
        try:
            native = _C.BoxedCall(self.compiled, self.imp.tensor_args, outputs, results, _alloc, torch.as_strided,
                                  slow)
        except ValueError:  # a layout it does not take (a view of a later view): the Python path does
            return slow
        native._boxed_call = True
        return native

    def __call__(self, *args):
        fast = self._fast
        if fast is not None and not self.write_into:
            outs = [a and _alloc(*a) for a in fast[0]]
            try:
                self.compiled.run([args[i] for i in self.imp.tensor_args], outs, ())
            except ValueError:  # raised before any kernel ran: the general path sorts it out
                return self._call(args)
            for j, k, sizes, strides, offset in fast[2]:
                outs[j] = torch.as_strided(outs[k], sizes, strides, outs[k].storage_offset() + offset)
            return [outs[v] for v in fast[1]]
        return self._call(args)

    def _call(self, args):
        imp = self.imp
        syms = [int(args[i]) if d < 0 else args[i].shape[d] for i, d in imp.symbol_sources]
        inputs = [args[i] for i in imp.tensor_args]
        layouts = self._static_layouts if self.static else self._layouts(syms)
        outs = [None if alias is not None else torch.empty_strided(sizes, strides, dtype=dt)
                for (sizes, strides, alias), dt in zip(layouts, self.out_dtypes)] if not self.write_into else \
            self._outputs_in_place(args, layouts)
        try:
            self.compiled.run(inputs, outs, syms)
        except ValueError as e:
            # An input in a layout the code was not compiled for (AOTAutograd passes tangents as
            # autograd made them, not as traced): copy it into the compiled layout, or run eagerly.
            restrided = self._restride(inputs, layouts) if "stride" in str(e) else None
            if restrided is None:
                log_once(f"runfail:{self.name}", f"kiln: {self.name} runs eagerly: {e}")
                api.count("eager_calls")
                return self.fallback(*args)
            log_once(f"restride:{self.name}", f"kiln: {self.name}: {e}; such inputs are copied", logging.INFO)
            api.count("inputs_restrided")
            inputs = restrided
            self.compiled.run(inputs, outs, syms)
        for j, (sizes, strides, alias) in enumerate(layouts):
            if alias is not None:
                base = inputs[alias[1]] if alias[0] == "input" else outs[alias[1]]
                outs[j] = torch.as_strided(base, sizes, strides, base.storage_offset() + alias[2])
        result = []
        env = None
        for kind, v in imp.outputs:
            if kind == "kiln":
                result.append(outs[v])
            elif kind == "arg":
                result.append(args[v])
            elif kind == "const":
                result.append(v)
            else:  # a size expression, evaluated with this call's symbol values
                if env is None:
                    env = dict(zip(imp.symbols, syms))
                if isinstance(v, torch.SymInt):
                    expr = v.node.expr
                    # Substitute the expression's own Symbol objects: they carry PyTorch's assumptions.
                    expr = expr.xreplace({s: sympy.Integer(env[str(s)]) for s in expr.free_symbols})
                    result.append(int(expr))
                else:
                    result.append(v)
        return result


def compile_graph(gm: torch.fx.GraphModule, opts: Options, name: str, *, raise_rejected: bool = False,
                  mutations=()):
    """A KilnGraph for gm, or None (with the reason logged) when kiln cannot compile it.

    raise_rejected: let a NodeRejected through, so the caller can run just that node eagerly.
    """
    try:
        return KilnGraph(gm, opts, name, mutations)
    except (ValueError, NotImplementedError) as e:
        if opts.fallback == "error" or (raise_rejected and isinstance(e, NodeRejected)):
            raise
        log_once(f"compilefail:{e}", f"kiln: a graph runs eagerly: {e}", logging.WARNING)
        api.count("graphs_failed")
        return None
