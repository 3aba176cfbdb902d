"""kiln runs on every x86-64 CPU: kernels per ISA level, code compiled for the level in use, a cache
that never hands one level's code to another, and a wheel that installs and runs anywhere."""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import runnable_isas

import kiln

LIB_DIR = pathlib.Path(kiln.__file__).parent / "lib"
REPO = pathlib.Path(__file__).resolve().parents[2]


def _registers(path: pathlib.Path) -> set:
    """The vector register files an object's code touches (xmm, ymm, zmm), by disassembly."""
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump is not installed")
    text = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(path)], capture_output=True, text=True,
                          check=True).stdout
    return {r for r in ("xmm", "ymm", "zmm") if f"%{r}" in text}


def test_target_describes_this_machine_and_each_level():
    t = kiln.target()
    assert t["isa"] in ("baseline", "avx2", "avx512", "avx512_amx")
    assert t["vector_bits"] in (128, 256, 512) and t["vector_registers"] in (16, 32)
    assert t["l1d_bytes"] > 0 and t["l2_bytes"] > 0 and t["cores"] >= 1 and t["cpu"]
    geometry = {"baseline": (128, 16, ["-march=x86-64-v2", "-mtune=native"]),
                "avx2": (256, 16, ["-march=x86-64-v3", "-mtune=native"]),
                "avx512": (512, 32, ["-march=x86-64-v4", "-mtune=native"])}
    for level in runnable_isas():
        lt = kiln.target(level)
        assert lt["isa"] == level and lt["cpu"] == t["cpu"]
        if level in geometry and level != lt["detected_isa"]:
            assert (lt["vector_bits"], lt["vector_registers"], lt["compiler_flags"]) == geometry[level]
        if level == lt["detected_isa"]:
            assert lt["compiler_flags"] == ["-march=native"]
    with pytest.raises(Exception, match="not a level"):
        kiln.target("avx1024")


def test_kernel_libraries_use_only_their_levels_registers():
    """The prebuilt code never assumes the build machine's ISA: the runtime and the module use no
    AVX registers, the baseline kernels none either, the AVX2 kernels no 512-bit ones."""
    assert not _registers(LIB_DIR / "libkiln_runtime.so") & {"ymm", "zmm"}
    assert not _registers(pathlib.Path(kiln._C.__file__)) & {"ymm", "zmm"}
    assert not _registers(LIB_DIR / "libkiln_kernels_baseline.so") & {"ymm", "zmm"}
    assert "zmm" not in _registers(LIB_DIR / "libkiln_kernels_avx2.so")
    assert {"ymm", "zmm"} <= _registers(LIB_DIR / "libkiln_kernels_avx512.so")


SEED_PROGRAM = """
import json, torch, kiln
from kiln.models import transformer as tlm
torch.manual_seed(0)
cfg = tlm.CONFIGS["tiny"]
model = tlm.BasicsTransformerLM(cfg)
x = torch.randint(0, cfg.vocab_size, (cfg.batch, cfg.seq))
want = model(x)
want.sum().backward()
want_grads = [p.grad.clone() for p in model.parameters()]
model.zero_grad()
got = torch.compile(model, backend="kiln")(x)
got.sum().backward()
err = max([(got - want).abs().max().item()] +
          [(p.grad - g).abs().max().item() for p, g in zip(model.parameters(), want_grads)])
s = kiln.stats()
print(json.dumps({"err": err, "graphs_by_isa": s["graphs_by_isa"], "calls": s["calls"],
                  "fallback_ops": s["fallback_ops"], "target": kiln.target()["isa"]}))
"""


def _seed_model_at(run_python, level, *, python=None, env=None):
    env = {"KILN_ISA": level, **(env or {})}
    if python is None:
        p = run_python(SEED_PROGRAM, env=env)
    else:
        full_env = {**os.environ, **env}
        full_env.pop("PYTHONPATH", None)
        p = subprocess.run([python, "-c", SEED_PROGRAM], env=full_env, capture_output=True, text=True, timeout=600,
                           cwd="/")
        assert p.returncode == 0, p.stderr[-4000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("level", runnable_isas())
def test_seed_model_runs_at_every_level(run_python, level):
    out = _seed_model_at(run_python, level)
    assert out["target"] == level
    assert set(out["graphs_by_isa"]) == {level} and out["calls"] > 0 and not out["fallback_ops"], out
    assert out["err"] < 1e-4, out


CACHED_PROGRAM = """
import json, torch, kiln
f = torch.compile(lambda a, b: torch.softmax(a @ b, dim=-1).sum(0), backend="kiln")
a, b = torch.ones(32, 16), torch.ones(16, 24)
f(a, b)
s = kiln.stats()
print(json.dumps({"runs": s["compiler_runs"], "hits": s["cache_disk_hits"], "isa": s["graphs_by_isa"]}))
"""


def test_cache_never_loads_code_built_for_another_level(run_python, tmp_path):
    """One cache directory, the same graph compiled at two levels in turn: each level compiles its
    own entry once, and a later process finds only its own."""
    levels = runnable_isas()
    if len(levels) < 2:
        pytest.skip("this CPU runs one ISA level only")
    lo, hi = levels[0], levels[-1]
    env = {"KILN_CACHE_DIR": str(tmp_path / "cache"), "KILN_AOT_CACHE": "0"}
    for level, runs in ((lo, 1), (hi, 1), (lo, 0), (hi, 0)):
        p = run_python(CACHED_PROGRAM, env={**env, "KILN_ISA": level})
        out = json.loads(p.stdout.strip().splitlines()[-1])
        assert out["isa"] == {level: 1} and out["runs"] == runs and out["hits"] == 1 - runs, (level, out)


@pytest.mark.skipif(not (os.environ.get("CI") or os.environ.get("KILN_WHEEL_TEST")),
                    reason="builds a wheel and a fresh venv (minutes): CI=true or KILN_WHEEL_TEST=1 runs it")
def test_wheel_installs_in_a_fresh_venv_and_runs_every_level(tmp_path):
    """`pip wheel .`, installed with torch into a new virtual environment, runs the seed model at every
    level this CPU runs, from a directory outside the checkout."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(REPO)], check=True, timeout=1200)
    (wheel,) = wheels.glob("kiln-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", f"torch=={torch.__version__.split('+')[0]}", str(wheel)],
                   check=True, timeout=1200)
    for level in runnable_isas():
        out = _seed_model_at(None, level, python=python, env={"KILN_CACHE_DIR": str(tmp_path / "cache")})
        assert out["target"] == level and set(out["graphs_by_isa"]) == {level}, out
        assert out["err"] < 1e-4, out


def test_a_cpu_without_the_asked_level_falls_back_to_its_own(run_python):
    """KILN_CPU_CAP makes this machine behave as a CPU whose best level is lower: a KILN_ISA above it
    is refused with one warning and the CPU's level is used; options={"isa": ...} above it is an error."""
    levels = runnable_isas()
    if len(levels) < 2:
        pytest.skip("this CPU runs one ISA level only")
    low, high = levels[0], levels[-1]
    env = {"KILN_CPU_CAP": low, "KILN_ISA": high}
    p = run_python(SEED_PROGRAM, env=env)
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["target"] == low and set(out["graphs_by_isa"]) == {low} and out["err"] < 1e-4, out
    assert f"KILN_ISA={high}" in p.stderr and f"at most {low}" in p.stderr
    p = run_python(f"""
        import torch, kiln
        try:
            kiln.target("{high}")
        except Exception as e:
            print("refused:", e)
        """, env={"KILN_CPU_CAP": low})
    assert "refused:" in p.stdout and "cannot run on this CPU" in p.stdout
