"""The call path of a compiled graph: the one native call (_C.BoxedCall) a static graph gets, and the
Python path it hands every other call to (inputs in another layout or dtype)."""
import pytest
import torch
from conftest import StatsWatch, assert_kiln_ran, assert_same
from torch.fx.experimental.proxy_tensor import make_fx

from kiln import _C, api
from kiln.backend import compile_aten_graph
from kiln.options import Options


def _boxed(fn, *example):
    gm = make_fx(fn)(*example)
    return compile_aten_graph(gm, list(example), opts=Options.from_args(None, None), kind="inference")


def _call_once(call, *inputs):
    """call's results for one boxed call on inputs, which must clear the list and run kiln once."""
    with StatsWatch() as w:
        args = list(inputs)
        got = call(args)
    assert args == []  # AOTAutograd's boxed convention: the call lets its inputs go
    assert_kiln_ran(w.delta)
    assert w.delta["calls"] == 1
    return got


def _two_outputs(x, y):
    return torch.relu(x @ y) + 1, (x * 2).sum(1)


def test_static_graph_call_is_one_native_call():
    x, y = torch.randn(7, 5), torch.randn(5, 3)
    call = _boxed(_two_outputs, x, y)
    assert isinstance(call, _C.BoxedCall) and call._boxed_call
    first, second = _call_once(call, x, y), _call_once(call, x, y)
    for got, want in zip(first, _two_outputs(x, y)):
        assert_same(got, want)
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(first, second))  # fresh outputs per call


def test_input_in_another_layout_takes_the_python_path():
    x, y = torch.randn(7, 5), torch.randn(5, 3)
    call = _boxed(_two_outputs, x, y)
    xt = torch.randn(5, 7).t()  # same sizes, column-major
    before = api.stats().get("inputs_restrided", 0)
    got = _call_once(call, xt, y)
    assert api.stats().get("inputs_restrided", 0) == before + 1
    for g, want in zip(got, _two_outputs(xt, y)):
        assert_same(g, want)


def test_input_of_another_dtype_runs_eagerly_not_wrongly():
    x, y = torch.randn(7, 5), torch.randn(5, 3)
    call = _boxed(_two_outputs, x, y)
    xd, yd = x.double(), y.double()
    got = call([xd, yd])
    for g, want in zip(got, _two_outputs(xd, yd)):
        assert g.dtype == torch.float64
        assert_same(g, want)


def _views_args_consts(a, b):
    y = a * 3
    return a.t(), y, y.view(-1), b, None  # a view of an input, of an output; an argument; a constant


def test_views_arguments_and_constants_are_returned_natively():
    x, y = torch.randn(4, 6), torch.randn(5)
    call = _boxed(_views_args_consts, x, y)
    assert isinstance(call, _C.BoxedCall)
    got = _call_once(call, x, y)
    want = _views_args_consts(x, y)
    assert len(got) == len(want)
    for g, e in zip(got[:3], want[:3]):
        assert_same(g, e)
    assert got[0].data_ptr() == x.data_ptr() and got[0].stride() == (1, 6)  # still a view of x
    assert got[2].data_ptr() == got[1].data_ptr()  # a view of the other output
    assert got[3] is y and got[4] is None


def test_parameters_views_and_tensor_subclasses_are_read_at_their_data():
    # Exact torch.Tensor and nn.Parameter objects have their pointer read by PyTorch's C function;
    # a subclass goes through its data_ptr() method. Each must give the data at its storage offset.
    class Tagged(torch.Tensor):
        pass

    x, y = torch.randn(7, 5), torch.randn(5, 3)
    call = _boxed(_two_outputs, x, y)
    want = _two_outputs(x, y)
    shifted = torch.cat([torch.randn(2, 5), x])[2:]  # x's values at storage offset 10
    for a, b in [(shifted, y), (torch.nn.Parameter(x.clone()), y), (x, torch.nn.Parameter(y.clone())),
                 (x.clone().as_subclass(Tagged), y)]:
        got = _call_once(call, a, b)
        for g, e in zip(got, want):
            assert_same(g.as_subclass(torch.Tensor), e)


def test_boxed_call_rejects_anything_but_one_list():
    x, y = torch.randn(7, 5), torch.randn(5, 3)
    call = _boxed(_two_outputs, x, y)
    for bad in [lambda: call((x, y)), lambda: call([x, y], [x, y]), lambda: call(), lambda: call(args=[x, y])]:
        with pytest.raises(TypeError, match="one list of arguments"):
            bad()
