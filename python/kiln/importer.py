"""Walks an ATen FX graph into kiln's C++ graph builder (every semantic decision is made in C++)."""
from __future__ import annotations

import operator

import torch

from kiln import _C
from kiln.symbolic import free_symbols, sym_text

# Nodes that only assert facts about sizes: nothing to compute.
IGNORED_TARGETS = {
    "aten._assert_scalar.default",
    "aten.sym_constrain_range_for_size.default",
    "aten._assert_tensor_metadata.default",
    "aten.sym_constrain_range.default",
}


def meta_val(node):
    return node.meta.get("val", node.meta.get("example_value"))


def is_symint_node(node) -> bool:
    return isinstance(meta_val(node), (torch.SymInt, int)) and not isinstance(meta_val(node), bool)


def target_name(node) -> str:
    return str(node.target)


def normalized_args(node) -> list:
    """Positional args followed by keyword args in schema order (defaults filled)."""
    schema = node.target._schema
    out = []
    for i, a in enumerate(schema.arguments):
        if i < len(node.args):
            out.append(node.args[i])
        elif a.name in node.kwargs:
            out.append(node.kwargs[a.name])
        elif a.has_default_value():
            out.append(a.default_value)
        else:
            out.append(None)
    return out


class NodeRejected(ValueError):
    """An op kiln supports in general, rejected by its lowering rule for these arguments."""

    def __init__(self, node: torch.fx.Node, message: str):
        super().__init__(message)
        self.node = node
        self.reason = f"{target_name(node)} ({message.removeprefix('[kiln user error] ').split(': ', 1)[-1]})"


class GraphImport:
    """The C++ graph of an FX graph, and how to call it: symbol sources, inputs, outputs."""

    def __init__(self, gm: torch.fx.GraphModule):
        self.builder = _C.GraphBuilder()
        self.placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        self.tensor_args: list[int] = []  # placeholder positions of the graph's tensor inputs
        self.input_strides: list = []  # per tensor input: its static strides, or None
        self.symbols: list[str] = []
        self.symbol_sources: list[tuple[int, int]] = []  # (placeholder position, dim or -1)
        self.outputs: list[tuple] = []  # ("kiln", j) | ("arg", i) | ("const", v) | ("sym", expr)
        self.kiln_outputs: list[torch.fx.Node] = []
        self.alias_ok: list[bool] = []
        self.single_output = False  # the graph returns one value, not a tuple
        self._env: dict = {}
        self._bind_symbols()
        self._walk(gm)

    def _bind_symbols(self) -> None:
        syms: set = set()
        for p in self.placeholders:
            v = meta_val(p)
            if isinstance(v, torch.Tensor):
                for s in list(v.shape) + list(v.stride()):
                    syms |= free_symbols(s)
            elif isinstance(v, torch.SymInt):
                syms |= free_symbols(v)
        for s in sorted(syms):
            source = None
            for i, p in enumerate(self.placeholders):
                v = meta_val(p)
                if isinstance(v, torch.SymInt) and str(v.node.expr) == s:
                    source = (i, -1)
                    break
            if source is None:
                for i, p in enumerate(self.placeholders):
                    v = meta_val(p)
                    if isinstance(v, torch.Tensor):
                        for d, size in enumerate(v.shape):
                            if isinstance(size, torch.SymInt) and str(size.node.expr) == s:
                                source = (i, d)
                                break
                    if source:
                        break
            if source is None:
                raise ValueError(f"[kiln user error] cannot find where size symbol {s} comes from")
            self.symbols.append(s)
            self.symbol_sources.append(source)
            self.builder.add_symbol(s)

    def _arg(self, a):
        if isinstance(a, torch.fx.Node):
            v = self._env[a]
            if isinstance(v, list):
                raise ValueError("[kiln user error] multi-result node used as a tensor")
            return v
        if isinstance(a, (list, tuple)):
            return [self._arg(x) for x in a]
        if isinstance(a, torch.dtype):
            return str(a)
        if isinstance(a, (torch.device, torch.layout, torch.memory_format)):
            return None  # placement arguments: kiln runs on the CPU, strided
        if isinstance(a, torch.SymInt):
            return _C.Sym(sym_text(a))
        if isinstance(a, (bool, int, float, str)) or a is None:
            return a
        raise ValueError(f"[kiln user error] unsupported argument {a!r}")

    @staticmethod
    def _result(t: torch.Tensor):
        return (str(t.dtype), [_size(s) for s in t.shape], [_size(s) for s in t.stride()])

    def _walk(self, gm) -> None:
        for i, p in enumerate(self.placeholders):
            v = meta_val(p)
            if isinstance(v, torch.Tensor):
                self.tensor_args.append(i)
                # Static strides the code is compiled for (None when symbolic): the runner copies an
                # input that arrives in another layout (a tangent, say) into this one.
                self.input_strides.append(tuple(v.stride()) if all(isinstance(s, int) for s in v.stride()) else None)
                self._env[p] = self.builder.add_input(
                    str(v.dtype), [_size(s) for s in v.shape], [_size(s) for s in v.stride()], p.name)
            elif isinstance(v, torch.SymInt):
                self._env[p] = _C.Sym(sym_text(v))
            elif isinstance(v, (int, float, bool)) or v is None:
                self._env[p] = v
            else:
                raise ValueError(f"[kiln user error] graph input {p.name} is a {type(v).__name__}, not a tensor")
        for n in gm.graph.nodes:
            if n.op == "placeholder":
                continue
            if n.op == "output":
                self._outputs(n.args[0])
                continue
            if n.op != "call_function":
                raise ValueError(f"[kiln user error] {n.op} nodes are not supported")
            if n.target is operator.getitem:
                self._env[n] = self._env[n.args[0]][n.args[1]]
                continue
            if is_symint_node(n):
                self._env[n] = _C.Sym(sym_text(meta_val(n)))
                continue
            name = target_name(n)
            if name in IGNORED_TARGETS:
                continue
            val = meta_val(n)
            results = [self._result(val)] if isinstance(val, torch.Tensor) else [
                self._result(t) for t in val if isinstance(t, torch.Tensor)]
            args = [self._arg(a) for a in normalized_args(n)]
            try:
                outs = self.builder.add_call(name, args, results, n.name)
            except ValueError as e:
                raise NodeRejected(n, str(e)) from e
            self._env[n] = outs[0] if isinstance(val, torch.Tensor) else list(outs)

    def _outputs(self, outs) -> None:
        if not isinstance(outs, (list, tuple)):
            self.single_output = True
            outs = [outs]
        for o in outs:
            if o is None or not isinstance(o, torch.fx.Node):
                self.outputs.append(("const", o))
            elif o.op == "placeholder":
                self.outputs.append(("arg", self.placeholders.index(o)))
            elif is_symint_node(o):
                self.outputs.append(("sym", meta_val(o)))
            elif o in self.kiln_outputs:
                # The same value returned twice (a forward's output that is also saved for the
                # backward): one buffer, returned twice, as eager returns one tensor twice.
                self.outputs.append(("kiln", self.kiln_outputs.index(o)))
            else:
                val = meta_val(o)
                j = len(self.kiln_outputs)
                self.kiln_outputs.append(o)
                self.builder.add_output(self._env[o], [_size(s) for s in val.stride()])
                target = getattr(o.target, "is_view", False)
                self.alias_ok.append(bool(target))
                self.outputs.append(("kiln", j))


def _size(s):
    return s if isinstance(s, int) else _C.Sym(sym_text(s))
