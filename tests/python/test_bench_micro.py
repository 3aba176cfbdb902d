"""The micro-benchmarks' references: the FMA loop that takes turns with GEMMs, the GEMM rows' share
of it, the triad loop that takes turns with the pointwise kernels, and the per-call overhead rows net
of `null` and of `no work`."""
import pytest
import torch
from conftest import StatsWatch, assert_kiln_ran, runnable_isas

import kiln
from kiln.bench import micro, micro_report, peak
from kiln.bench.progress import Progress
from kiln.bench.settings import from_args


def _settings(tmp_path):
    return from_args(["--only", "micro", "--contenders", "eager,kiln", "--out", str(tmp_path), "--no-progress",
                      "--min-iters", "3", "--min-seconds", "0"])


@pytest.mark.parametrize("isa", [None] + runnable_isas())
def test_fma_step_runs_on_the_openmp_pool_and_reports_its_flops(isa):
    torch.mm(torch.randn(8, 8), torch.randn(8, 8))  # PyTorch's OpenMP pool is loaded
    step = peak.fma_step(torch.get_num_threads(), 1e8, isa)
    if step is None:
        pytest.skip("no OpenMP pool or no C compiler")
    run, flops = step
    width = peak.ISA_FLAGS[isa or kiln.target()["isa"]][1]  # floats per vector of the level
    assert flops >= 1e8 * 0.99 and flops % (24 * width) == 0  # 12 independent multiply-adds per step
    run()  # must return, on every thread of the pool


def test_fma_peak_of_each_level_is_measured_for_that_level():
    levels = runnable_isas()
    peaks = {level: peak.fma_peak(1, level) for level in levels}
    for level, (gflops, how) in peaks.items():
        assert gflops > 0 and how.startswith(f"{level}:"), (level, how)
    if "baseline" in peaks and "avx2" in peaks:  # 4-wide without FMA against 8-wide FMAs
        assert peaks["avx2"][0] > 1.5 * peaks["baseline"][0]


def test_gemm_rows_carry_the_fma_loop_of_the_same_rounds(tmp_path, monkeypatch):
    monkeypatch.setattr(micro, "GEMM_SHAPES", [("tiny", 48, 40, 64)])
    settings = _settings(tmp_path)
    with StatsWatch() as w:
        rows = micro.gemm(settings, Progress(10, enabled=False))
    assert_kiln_ran(w.delta)
    assert {r["contender"] for r in rows} == {"eager", "kiln"}
    for r in rows:
        assert not r["error"] and r["gflops"] > 0
        assert r["fma_same_rounds_gflops"] is None or r["fma_same_rounds_gflops"] > 0
    text = "\n".join(micro_report.sections(rows, settings.contenders))
    assert "| tiny | 48 x 40 x 64 |" in text


def test_gemm_rows_of_a_forced_level_are_measured_against_that_levels_peak(tmp_path, monkeypatch):
    levels = [x for x in runnable_isas() if x != kiln.target()["isa"]]
    if not levels:
        pytest.skip("this CPU runs one ISA level only")
    monkeypatch.setattr(micro, "GEMM_SHAPES", [("tiny", 48, 40, 64)])
    settings = from_args(["--only", "micro", "--contenders", "eager,kiln", "--isa", levels[0], "--out",
                          str(tmp_path), "--no-progress", "--min-iters", "3", "--min-seconds", "0"])
    rows = micro.gemm(settings, Progress(10, enabled=False))
    by = {r["contender"]: r for r in rows}
    assert set(by) == {"eager", "kiln", f"kiln:{levels[0]}"}
    assert by[f"kiln:{levels[0]}"]["isa"] == levels[0] and by["kiln"]["isa"] == kiln.target()["isa"]
    assert all(not r["error"] and r["gflops"] > 0 for r in rows)


def test_overhead_rows_are_net_of_null_and_of_no_work(tmp_path, monkeypatch):
    monkeypatch.setattr(micro, "OVERHEAD_CALLS", 20)
    settings = _settings(tmp_path)
    with StatsWatch() as w:
        rows = micro.overhead(settings, Progress(10, enabled=False))
    assert_kiln_ran(w.delta)
    by = {r["contender"]: r for r in rows}
    assert set(by) == {"eager", "null", "no work", "dynamo only", "kiln"}
    assert all(not r["error"] and r["us_per_call"] > 0 for r in rows)
    kiln = by["kiln"]
    assert kiln["net_us"] == pytest.approx(kiln["us_per_call"] - by["null"]["us_per_call"])
    assert kiln["net_of_no_work_us"] == pytest.approx(kiln["us_per_call"] - by["no work"]["us_per_call"])
    assert "net of no work" in "\n".join(micro_report.sections(rows, settings.contenders))


def test_triad_step_writes_b_times_c_plus_d_on_the_openmp_pool():
    torch.mm(torch.randn(8, 8), torch.randn(8, 8))  # PyTorch's OpenMP pool is loaded
    b, c, d = (torch.randn(10007) for _ in range(3))  # a size no thread count divides
    out = torch.full_like(b, float("nan"))
    step = peak.triad_step(torch.get_num_threads(), out, b, c, d)
    if step is None:
        pytest.skip("no OpenMP pool or no C compiler")
    step()
    torch.testing.assert_close(out, torch.addcmul(d, b, c), rtol=1e-6, atol=1e-6)
    assert peak.triad_step(1, out, b.double(), c, d) is None  # float32 only


def test_pointwise_kernel_rows_carry_the_triad_of_the_same_rounds(tmp_path, monkeypatch):
    monkeypatch.setattr(micro, "POINTWISE_N", 1 << 16)
    settings = _settings(tmp_path)
    with StatsWatch() as w:
        rows = micro.pointwise(settings, Progress(10, enabled=False))
    assert_kiln_ran(w.delta)
    kinds = {(r["contender"], r["kind"]) for r in rows}
    assert kinds == {("eager", "kernel"), ("eager (addcmul)", "kernel"), ("eager", "end to end"),
                     ("kiln", "kernel"), ("kiln", "end to end")}
    for r in rows:
        assert not r["error"] and r["gbps"] > 0
        if r["kind"] == "kernel":
            assert r["triad_same_rounds_gbps"] is None or r["triad_same_rounds_gbps"] > 0
    text = "\n".join(micro_report.sections(rows, settings.contenders))
    assert "Pointwise `a * b + c`" in text
