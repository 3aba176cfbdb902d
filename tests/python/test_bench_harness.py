"""The benchmark harness runs end to end on a tiny cell, and the reference TransformerLM computes what it claims."""

import csv
import math

import pytest
import torch
import torch.nn.functional as F

from kiln.bench import run
from kiln.models import attention, make_model, make_tokens, sdpa_attention
from kiln.models import transformer as tlm


def _markdown_tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table in `text` as rows of cells (separator rows dropped)."""
    tables, current = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-:") for c in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


def test_tiny_attention_cell_eager_only(tmp_path):
    out = tmp_path / "bench"
    rows = run(["--tiny", "--contenders", "eager", "--out", str(out), "--no-progress", "--memory", "all"])

    assert len(rows) == 1
    row = rows[0]
    assert row["suite"] == "attention" and row["contender"] == "eager" and not row["error"]
    assert row["fwd_median_ms"] > 0 and row["bwd_median_ms"] > 0 and row["fwd_n"] >= 3
    assert row["peak_mb"] >= 0  # measured in a subprocess of its own

    md = (out / "results.md").read_text()
    tables = _markdown_tables(md)
    assert tables, md
    header, body = tables[0][0], tables[0][1:]
    assert header[:2] == ["d_model", "seq_len"]
    assert "eager Forward (ms)" in header and "eager Backward (ms)" in header and "eager Peak (MB)" in header
    assert len(body) == 1 and all(len(r) == len(header) for r in body)
    cells = dict(zip(header, body[0]))
    assert (cells["d_model"], cells["seq_len"]) == ("16", "32")
    mean, rest = cells["eager Forward (ms)"].split("±")
    assert math.isclose(float(mean), row["fwd_mean_ms"], abs_tol=0.006)
    assert "(" in rest  # mean±std (median)

    with open(out / "results.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == 1 and csv_rows[0]["contender"] == "eager"
    assert float(csv_rows[0]["bwd_median_ms"]) == pytest.approx(row["bwd_median_ms"], rel=1e-4)


def test_matmul_precision_applies_to_the_run_and_is_restored(tmp_path):
    saved = torch.get_float32_matmul_precision()
    out = tmp_path / "bench"
    rows = run(["--tiny", "--contenders", "eager,kiln", "--matmul-precision", "medium", "--out", str(out),
                "--no-progress", "--no-plots", "--memory", "none"])
    assert torch.get_float32_matmul_precision() == saved
    assert rows and not any(r["error"] for r in rows), rows
    assert "**float32 matmul precision:** medium" in (out / "results.md").read_text()


def test_failing_contender_is_reported_in_its_cell(tmp_path, monkeypatch):
    from kiln.bench import contenders

    def broken(self, fn):
        if self.backend is None:
            return fn
        raise RuntimeError("no kernel for this\nsecond line")

    monkeypatch.setattr(contenders.Contender, "compile", broken)
    out = tmp_path / "bench"
    rows = run(["--tiny", "--contenders", "eager,kiln", "--out", str(out), "--no-progress", "--no-plots"])
    kiln_row = next(r for r in rows if r["contender"] == "kiln")
    assert kiln_row["error"] == "RuntimeError: no kernel for this"
    md = (out / "results.md").read_text()
    assert "kiln: RuntimeError: no kernel for this" in md
    assert (out / "errors.log").exists()


def test_reference_attention_matches_sdpa():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 24, 8, generator=gen) for _ in range(3))
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    got = tlm.scaled_dot_product_attention(q, k, v, tlm.causal_mask(24))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # The seed's single-head attention and the SDPA row compute the same thing too.
    torch.testing.assert_close(attention(q[:, 0], k[:, 0], v[:, 0]), sdpa_attention(q, k, v)[:, 0],
                               rtol=1e-5, atol=1e-5)


def test_transformer_attention_module_matches_sdpa_with_rope():
    torch.manual_seed(0)
    cfg = tlm.CONFIGS["tiny"]
    mha = tlm.CausalMultiHeadSelfAttention(cfg.d_model, cfg.num_heads, cfg.context_length, cfg.rope_theta)
    x = torch.randn(2, 12, cfg.d_model)
    b, s, d = x.shape
    heads = lambda t: t.view(b, s, cfg.num_heads, d // cfg.num_heads).transpose(1, 2)  # noqa: E731
    pos = torch.arange(s)
    q, k, v = heads(mha.q_proj(x)), heads(mha.k_proj(x)), heads(mha.v_proj(x))
    q, k = mha.rope(q, pos), mha.rope(k, pos)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, s, d)
    torch.testing.assert_close(mha(x), mha.output_proj(ref), rtol=1e-5, atol=1e-5)


def test_rope_rotates_pairs_and_keeps_norms():
    rope = tlm.RotaryEmbedding(context_length=16, d_k=8, theta=10000.0)
    x = torch.randn(3, 16, 8)
    y = rope(x, torch.arange(16))
    torch.testing.assert_close(y[:, 0], x[:, 0])  # position 0: no rotation
    pairs = lambda t: t.view(*t.shape[:-1], 4, 2).norm(dim=-1)  # noqa: E731
    torch.testing.assert_close(pairs(y), pairs(x))


def test_tiny_transformer_forward_and_step():
    model = make_model("tiny")
    tokens = make_tokens("tiny")
    cfg = tlm.CONFIGS["tiny"]
    logits = model(tokens)
    assert logits.shape == (cfg.batch, cfg.seq, cfg.vocab_size)
    assert torch.isfinite(logits).all()
    # Causality: changing the last token must not change earlier positions' logits.
    changed = tokens.clone()
    changed[:, -1] = (changed[:, -1] + 1) % cfg.vocab_size
    torch.testing.assert_close(model(changed)[:, :-1], logits[:, :-1])
    # Deterministic initialisation: every contender starts from the same weights.
    torch.testing.assert_close(make_model("tiny")(tokens), logits)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    opt.zero_grad()
    logits.sum().backward()
    opt.step()
    assert all(p.grad is not None for p in model.parameters())


def test_rmsnorm_computes_in_float32():
    norm = tlm.RMSNorm(8)
    x = torch.randn(4, 8, dtype=torch.bfloat16)
    y = norm(x)
    assert y.dtype == torch.bfloat16
    xf = x.float()
    expected = xf / torch.sqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)
    torch.testing.assert_close(y.float(), expected, rtol=1e-2, atol=1e-2)


def test_tiny_transformer_rows_timed_side_by_side(tmp_path):
    """The TransformerLM rows: each contender compiled and checked on its own, then all timed in
    interleaved rounds; every row gets forward/step medians, compiled rows a compile time."""
    out = tmp_path / "bench"
    rows = run(["--tiny", "--only", "transformer", "--size", "tiny", "--contenders", "eager,kiln", "--out", str(out),
                "--no-progress", "--no-plots"])
    assert {(r["contender"], r["version"]) for r in rows} == {("eager", "eager"), ("kiln", "model"),
                                                                ("kiln", "model+step")}
    for r in rows:
        assert not r["error"], r
        assert r["step_median_ms"] > 0 and r["step_n"] >= 3
        assert ("fwd_median_ms" in r) == (r["version"] != "model+step")
        assert ("compile_s" in r) == (r["contender"] == "kiln")
    assert "timed side by side" in (out / "results.md").read_text()


def test_isa_contenders_compile_kiln_at_their_level():
    """--isa adds kiln forced to each level beside kiln at the CPU's own, and 'kiln:avx2' is a level
    (options={"isa": ...}), not a mode."""
    from kiln.bench.contenders import parse_contenders

    cs = parse_contenders("eager,inductor,kiln,kiln:max-autotune", with_autotune=False, modes=False,
                          isas=["avx2", "baseline"])
    assert [c.name for c in cs] == ["eager", "inductor", "kiln", "kiln:avx2", "kiln:baseline", "kiln:max-autotune"]
    by = {c.name: c for c in cs}
    assert by["kiln:avx2"].isa == "avx2" and by["kiln:avx2"].mode is None
    assert by["kiln:max-autotune"].isa is None and by["kiln:max-autotune"].mode == "max-autotune"
    with pytest.raises(SystemExit, match="unknown level"):
        from kiln.bench.settings import from_args

        from_args(["--isa", "avx9"])
