"""The kiln backend as a user meets it: modes and options, fallback to eager, dynamic shapes, the disk
cache across processes, debug dumps, a corrupt cache entry, the installed package, kiln.compile."""
import glob
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import StatsWatch, assert_kiln_ran, assert_same, run_compiled

import kiln


def _small(x, y):
    return (x @ y).relu() * 2 + y.sum(0), F.softmax(x, -1)


def _small_inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(5, 5, generator=g), torch.randn(5, 5, generator=g)


@pytest.mark.parametrize("kwargs", [
    dict(mode="default"), dict(mode="reduce-overhead"), dict(mode="max-autotune"),
    dict(options={"mode": "max-autotune"}), dict(options={"mode": "reduce-overhead", "threads": 1}),
    dict(options={"fallback": "eager", "verify": True}),
], ids=["default", "reduce-overhead", "max-autotune", "options-max-autotune", "options-reduce-overhead-1-thread",
        "options-fallback-verify"])
def test_modes_and_options_accepted(kwargs):
    x, y = _small_inputs()
    run_compiled(_small, x, y, **kwargs)


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_outputs_are_fresh_on_every_call(mode):
    # reduce-overhead reuses its memory plan across calls; outputs handed out must not be overwritten.
    compiled = torch.compile(lambda x: (x.exp() + 1, x.sum(-1) * 3), backend="kiln", mode=mode)
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    out_a = compiled(a)
    keep = [t.clone() for t in out_a]
    out_b = compiled(b)
    for got, want in zip(out_a, keep):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert_same(out_b, (b.exp() + 1, b.sum(-1) * 3))
    assert out_a[0].data_ptr() != out_b[0].data_ptr()


@pytest.mark.parametrize("kwargs,match", [
    (dict(options={"no_such_option": 1}), r"unknown option.*no_such_option"),
    (dict(options={"fallback": "sometimes"}), r"fallback must be 'eager' or 'error'"),
    (dict(mode="fastest"), r"unknown mode 'fastest'"),
    (dict(options={"mode": "fastest"}), r"unknown mode 'fastest'"),
])
def test_bad_options_give_clear_errors(kwargs, match):
    compiled = torch.compile(lambda x: x + 1, backend="kiln", **kwargs)
    with pytest.raises(Exception, match=match):
        compiled(torch.ones(3))


def _partly_unsupported(x):
    y = x * 2 + 1
    c = torch.cumsum(y, -1)
    s = torch.sort(y, -1).values
    return c.exp() * 0.5, s - y.sum(-1, keepdim=True), y.amax()


def test_unsupported_ops_fall_back_to_eager():
    x = torch.randn(4, 6)
    _, _, delta = run_compiled(_partly_unsupported, x, allow_fallback=True)
    names = " ".join(delta["fallback_ops"])
    assert "cumsum" in names and "sort" in names, delta["fallback_ops"]
    assert delta["eager_islands"] >= 2, delta
    assert delta["calls"] > 0, delta  # the supported parts still ran in kiln


def test_unsupported_ops_fall_back_with_grad():
    x = torch.randn(4, 6).requires_grad_()
    _, _, delta = run_compiled(_partly_unsupported, x, grad=True, allow_fallback=True)
    assert any("cumsum" in n for n in delta["fallback_ops"]), delta["fallback_ops"]


def test_fallback_error_raises_naming_the_op():
    compiled = torch.compile(_partly_unsupported, backend="kiln", options={"fallback": "error"})
    with pytest.raises(Exception, match="cumsum"):
        compiled(torch.randn(4, 6))


def test_dynamic_compiles_once_for_two_sequence_lengths():
    def f(x, w):
        h = x @ w
        return F.softmax(h, -1) * h.sum(1, keepdim=True), x.sum(1), h.amax(1)

    g = torch.Generator().manual_seed(1)
    w = torch.randn(8, 8, generator=g)
    compiled = torch.compile(f, backend="kiln", dynamic=True)
    with StatsWatch() as st:
        for seq in (7, 19):
            x = torch.randn(2, seq, 8, generator=g)
            assert_same(compiled(x, w), f(x, w))
    assert_kiln_ran(st.delta)
    assert st.delta["graphs_compiled"] == 1, st.delta
    assert st.delta["calls"] == 2, st.delta


def test_dynamic_mean_over_the_dynamic_dim_runs_in_kiln():
    compiled = torch.compile(lambda x: x.mean(1) * 2, backend="kiln", dynamic=True)
    g = torch.Generator().manual_seed(4)
    with StatsWatch() as st:
        for seq in (7, 19):
            x = torch.randn(2, seq, 8, generator=g)
            assert_same(compiled(x), x.mean(1) * 2)
    assert_kiln_ran(st.delta)
    assert st.delta["graphs_compiled"] == 1, st.delta


def _dynamic_grad_check(f, shapes, w):
    g = torch.Generator().manual_seed(2)
    compiled = torch.compile(f, backend="kiln", dynamic=True)
    with StatsWatch() as st:
        for shape in shapes:
            x = torch.randn(*shape, generator=g).requires_grad_()
            got = compiled(x, w)
            want = f(x, w)
            assert_same(got, want)
            cot = torch.randn(got.shape, generator=g)
            gx, gw = torch.autograd.grad(got, (x, w), cot)
            ex, ew = torch.autograd.grad(want, (x, w), cot)
            assert_same((gx, gw), (ex, ew), what="grad")
    assert_kiln_ran(st.delta)
    assert st.delta["graphs_compiled"] == 2, st.delta  # one forward, one backward


def _attn_like(x, w):
    return (F.softmax(x @ w, -1) * x).sum(-2)


def test_dynamic_with_grad_compiles_forward_and_backward_once():
    w = torch.randn(8, 8, generator=torch.Generator().manual_seed(3)).requires_grad_()
    _dynamic_grad_check(_attn_like, [(6, 8), (11, 8)], w)


def test_dynamic_with_grad_batched_matmul():
    w = torch.randn(8, 8, generator=torch.Generator().manual_seed(3)).requires_grad_()
    _dynamic_grad_check(_attn_like, [(3, 6, 8), (3, 11, 8)], w)


def test_input_mutation_is_written_back():
    def f(x, y):
        x.mul_(2)
        y[:, 0].fill_(-1.0)
        y.add_(x[0])
        return x + y

    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    x_e, y_e = x.clone(), y.clone()
    want = f(x_e, y_e)
    with StatsWatch() as st:
        got = torch.compile(f, backend="kiln")(x, y)
    assert_kiln_ran(st.delta)
    assert_same(got, want)
    assert_same((x, y), (x_e, y_e), what="mutated input")


def test_constant_tensor_in_graph_is_right_and_not_silent():
    # A tensor constant becomes a get_attr node, which kiln does not import: the graph runs eagerly,
    # and the stats must say so.
    def f(x):
        return x * torch.tensor([1.0, -2.0, 3.0, 0.5]) + 1

    x = torch.randn(3, 4)
    with StatsWatch() as st:
        got = torch.compile(f, backend="kiln")(x)
    assert_same(got, f(x))
    ran_in_kiln = st.delta["calls"] > 0 and st.delta["graphs_failed"] == 0 and not st.delta["fallback_ops"]
    assert ran_in_kiln or st.delta["graphs_failed"] > 0 or st.delta["fallback_ops"], st.delta


# 48: small enough that the call keeps the GIL; 160: it releases it, so the threads run the graph (and
# take its arena) at the same time.
@pytest.mark.parametrize("n", [48, 160])
def test_compiled_graph_called_from_several_threads(n):
    import threading

    def f(x, y):
        return ((x @ y).relu() + x.sum(-1, keepdim=True)).softmax(-1)

    g = torch.Generator().manual_seed(6)
    xs = [torch.randn(n, n, generator=g) for _ in range(6)]
    y = torch.randn(n, n, generator=g)
    compiled = torch.compile(f, backend="kiln")
    compiled(xs[0], y)
    errors = []

    def work(i):
        try:
            want = f(xs[i], y)
            for _ in range(15):
                torch.testing.assert_close(compiled(xs[i], y), want, rtol=1e-5, atol=1e-6)
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    with StatsWatch() as st:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    assert_kiln_ran(st.delta)
    assert st.delta["calls"] == 6 * 15, st.delta


# Run in this process and in a child with the same KILN_CACHE_DIR: the child must load, not compile.
CACHED_PROGRAM = """
import torch
def cached_graph(x):
    return (x * 3.25 - 1).tanh().sum(-1), x.t() @ x
x = torch.arange(35, dtype=torch.float32).reshape(5, 7) / 10
out = torch.compile(cached_graph, backend="kiln")(x)
want = cached_graph(x)
for a, b in zip(out, want):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
"""

REPORT_STATS = """
import json, kiln
s = kiln.stats()
print("STATS" + json.dumps({k: s[k] for k in ("compiler_runs", "cache_disk_hits", "cache_bad_entries", "calls")}))
"""


def _child_stats(proc):
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("STATS")][-1]
    return json.loads(line[len("STATS"):])


def test_second_process_loads_from_disk_cache(run_python):
    exec(compile(CACHED_PROGRAM, "<cached>", "exec"), {})
    child = _child_stats(run_python(CACHED_PROGRAM + REPORT_STATS))
    assert child["calls"] == 1, child
    assert child["compiler_runs"] == 0, child
    assert child["cache_disk_hits"] > 0, child


def test_corrupt_cache_entry_is_rebuilt(run_python, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("KILN_CACHE_DIR", str(cache))
    # A graph no other test compiles, so this process's in-memory cache cannot answer for it.
    program = CACHED_PROGRAM.replace("3.25", "3.3125")
    exec(compile(program, "<corrupt>", "exec"), {})
    entries = glob.glob(str(cache / "*.so"))
    assert entries, os.listdir(cache)
    for so in entries:
        # Replace every entry by its first 100 bytes. Not truncated in place: this process has the
        # file mapped, and shrinking a mapped file under it would SIGBUS us, not test kiln.
        with open(so, "rb") as f:
            head = f.read(100)
        with open(so + ".part", "wb") as f:
            f.write(head)
        os.replace(so + ".part", so)
    child = _child_stats(run_python(program + REPORT_STATS))
    assert child["compiler_runs"] >= 1, child
    assert child["cache_bad_entries"] >= 1, child
    assert child["calls"] == 1, child
    # The rebuilt entries are good: a third process loads them without compiling.
    child = _child_stats(run_python(program + REPORT_STATS))
    assert child["compiler_runs"] == 0 and child["cache_disk_hits"] > 0, child


def test_cache_dir_option(tmp_path, monkeypatch):
    # The backend exports options["cache_dir"] as KILN_CACHE_DIR; monkeypatch restores the session's.
    monkeypatch.setenv("KILN_CACHE_DIR", os.environ["KILN_CACHE_DIR"])
    cache = tmp_path / "own-cache"
    run_compiled(lambda x: (x * 0.4375 - 3).sin(), torch.randn(6), options={"cache_dir": str(cache)})
    assert glob.glob(str(cache / "*.so")), list(cache.iterdir()) if cache.exists() else "no cache dir"


def test_debug_dir_gets_ir_generated_cpp_and_kernel_plan(tmp_path, monkeypatch):
    debug = tmp_path / "debug"
    monkeypatch.setenv("KILN_DEBUG_DIR", str(debug))
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "cache"))  # a miss: the whole pipeline runs

    def f(x):
        return (x * 0.8125 + 2.0625).cos().sum(0)

    x = torch.randn(3, 7)
    run_compiled(f, x)
    graphs = [d for d in debug.iterdir() if d.is_dir()]
    assert len(graphs) == 1, list(debug.iterdir())
    files = {p.name: p for p in graphs[0].iterdir()}
    imported = [n for n in files if n.startswith("00-") and n.endswith(".kir")]
    assert imported, sorted(files)
    assert "cos" in files[imported[0]].read_text()
    cpp = [n for n in files if n.endswith(".cpp")]
    assert cpp, sorted(files)
    assert any("kiln_entry" in files[n].read_text() for n in cpp), sorted(files)
    plans = [n for n in files if "kernel" in n or "plan" in n]
    assert plans and all(files[n].stat().st_size > 0 for n in plans), sorted(files)


def test_backend_works_without_importing_kiln(run_python):
    p = run_python("""
        import sys, torch
        out = torch.compile(lambda x: x + 1, backend="kiln")(torch.ones(3))
        assert torch.equal(out, torch.full((3,), 2.0)), out
        print("IMPORTED", "kiln" in sys.modules)
        import kiln
        assert kiln.stats()["calls"] == 1, kiln.stats()
        print("OK")
    """)
    assert "OK" in p.stdout


def test_installed_package_works_from_another_directory(run_python):
    p = run_python("""
        import os, kiln, torch
        assert "/work/main/python" not in os.path.abspath(kiln.__file__), kiln.__file__
        pkg = os.path.dirname(kiln.__file__)
        assert os.path.isdir(os.path.join(pkg, "include")), os.listdir(pkg)
        from kiln.models import attention
        q = torch.randn(1, 6, 4)
        out = torch.compile(attention, backend="kiln")(q, q, q)
        torch.testing.assert_close(out, attention(q, q, q), rtol=1e-5, atol=1e-6)
        assert kiln.stats()["calls"] == 2  # the graph, and the kernel that proved its causal mask
        print("OK", kiln.__file__)
    """, cwd="/tmp")
    assert "OK" in p.stdout


def test_kiln_compile_module():
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(6, 9), torch.nn.GELU(), torch.nn.Linear(9, 3))
    x = torch.randn(4, 6)
    want = model(x)
    for kwargs in (dict(), dict(mode="max-autotune", options={"threads": 1})):
        torch._dynamo.reset()
        compiled = kiln.compile(model, **kwargs)
        with StatsWatch() as st:
            got = compiled(x)
        assert_same(got, want)
        assert_kiln_ran(st.delta)
        loss = compiled(x).square().sum()
        grads = torch.autograd.grad(loss, list(model.parameters()))
        want_grads = torch.autograd.grad(model(x).square().sum(), list(model.parameters()))
        assert_same(grads, want_grads, what="grad")


def test_value_returned_twice_is_one_buffer():
    # AOTAutograd's forward returns an activation twice when it is both the user's output and saved for
    # the backward (exp saves its result): one buffer returned twice, not a second buffer and a copy.
    from torch.fx.experimental.proxy_tensor import make_fx

    from kiln.options import Options
    from kiln.runner import compile_graph

    def f(x):
        y = torch.ops.aten.exp.default(x)
        return (y, y, torch.ops.aten.neg.default(y))

    x = torch.randn(5, 3)
    graph = compile_graph(make_fx(f)(x), Options(), "returned_twice")
    assert graph is not None
    with StatsWatch() as w:
        a, b, c = graph(x)
    assert a is b
    assert_same((a, c), (x.exp(), -x.exp()))
    assert_kiln_ran(w.delta)


DEBUG_PROGRAM = """
import torch
f = torch.compile(lambda x, w: torch.tanh(torch.softmax(x, dim=1) @ w) + x.sum(), backend="kiln")
f(torch.randn(8, 16), torch.randn(16, 16))
"""


def _stage_files(debug):
    graphs = [d for d in debug.iterdir() if d.is_dir()]
    assert len(graphs) == 1, sorted(p.name for p in debug.iterdir())
    return graphs[0], {p.name for p in graphs[0].iterdir()}


def test_debug_dir_gets_every_stage_and_a_runnable_repro_even_on_a_cache_hit(run_python, tmp_path):
    """Every lowering step (NN-<step>.kir/.plan/.cpp), the FX graph, the compile command and a repro.py
    that rebuilds the graph and compares kiln with eager; a second process, whose code comes from the
    cache, writes them all again."""
    from kiln import _C

    cache = tmp_path / "cache"
    for run, debug in enumerate((tmp_path / "cold", tmp_path / "warm")):
        run_python(DEBUG_PROGRAM, env={"KILN_CACHE_DIR": str(cache), "KILN_DEBUG_DIR": str(debug)})
        graph, files = _stage_files(debug)
        for step in _C.lowering_steps():
            assert any(n.endswith(f"-{step}.kir") or n.endswith(f"-{step}.plan") or n.endswith(f"-{step}.cpp")
                       for n in files), (step, sorted(files))
        for name in ("00-imported.kir", "90-kernels.txt", "91-generated.cpp", "build.sh", "compile.log",
                     "fx_graph.txt", "repro.py"):
            assert name in files, (name, sorted(files))
        assert ("cache hit" in (graph / "compile.log").read_text()) == (run == 1)
    env = {k: v for k, v in os.environ.items() if k not in ("KILN_DEBUG_DIR", "PYTHONPATH")}
    p = subprocess.run([sys.executable, str(graph / "repro.py")], env={**env, "KILN_CACHE_DIR": str(cache)}, cwd="/",
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and p.stdout.startswith("OK: kiln agrees with eager"), p.stdout + p.stderr[-3000:]


def test_warm_start_through_the_aot_cache_dumps_into_the_current_debug_dir(run_python, tmp_path):
    """The AOT cache stores kiln's compiled graphs with their options; where debug files go is the
    loading process's KILN_DEBUG_DIR, not the storing one's."""
    env = {"KILN_CACHE_DIR": str(tmp_path / "cache"), "KILN_AOT_CACHE": "1"}
    first, second = tmp_path / "first", tmp_path / "second"
    run_python(DEBUG_PROGRAM, env={**env, "KILN_DEBUG_DIR": str(first)})
    before = sorted(p.name for p in first.rglob("*"))
    p = run_python(DEBUG_PROGRAM + "import kiln; print(kiln.stats()['aot_cache_hits'])",
                   env={**env, "KILN_DEBUG_DIR": str(second)})
    assert int(p.stdout.strip().splitlines()[-1]) >= 1, "the second process did not start warm"
    assert sorted(p.name for p in first.rglob("*")) == before, "the warm start wrote into the first debug dir"
    _, files = _stage_files(second)
    assert "91-generated.cpp" in files and "repro.py" in files, sorted(files)


def test_one_call_classifies_a_node_by_the_cpp_rules():
    """_C.classify is the one decision whether kiln compiles a node: unknown ops, dtypes kiln has no
    IR type for, float-only ops on integers and non-CPU tensors each say why."""
    from kiln import _C

    assert _C.classify("aten.add.Tensor", [torch.float32, torch.float32, torch.float32], True) == ""
    assert _C.classify("aten.no_such_op.default", [torch.float32], True) == "aten.no_such_op.default"
    assert _C.classify("aten.add.Tensor", [torch.complex64], True) == "aten.add.Tensor (dtype)"
    assert _C.classify("aten.mm.default", [torch.int64, torch.int64, torch.int64], True) == "aten.mm.default (dtype)"
    assert _C.classify("aten.mm.default", [torch.float64] * 3, True) == ""
    assert _C.classify("aten.add.Tensor", [torch.float32], False) == "aten.add.Tensor (device)"
