"""Masks and constants built inside the graph: tril(ones), arange comparisons, full/zeros/ones/arange."""
import math

import torch
from conftest import StatsWatch, assert_kiln_ran, run_compiled


def test_tril_ones_masks():
    torch.manual_seed(0)
    scores = torch.randn(2, 9, 9)

    def f(scores):
        S = scores.shape[-1]
        mask = torch.tril(torch.ones(S, S))
        return (mask, torch.triu(torch.ones(S, S), 1), torch.tril(torch.ones(S, S), -2),
                torch.tril(torch.ones(5, S), 3), scores.masked_fill(mask == 0, float("-inf")),
                torch.softmax(scores.masked_fill(mask == 0, -math.inf), -1),
                torch.tril(scores), torch.triu(scores, -1), mask.bool(), mask.sum())

    run_compiled(f, scores)


def test_arange_comparison_masks():
    torch.manual_seed(1)
    scores = torch.randn(3, 2, 7, 7)

    def f(scores):
        S = scores.shape[-1]
        qi = torch.arange(S)[:, None]
        kj = torch.arange(S)[None, :]
        causal = qi >= kj
        local = (qi - kj).abs() <= 2
        return (causal, local, causal & local, torch.where(causal, scores, float("-inf")),
                torch.where(causal & local, scores, -1e9).softmax(-1), (qi > kj).to(torch.float32) * scores,
                torch.arange(S) < 3, qi == kj)

    run_compiled(f, scores)


def test_full_zeros_ones_arange():
    x = torch.randn(4, 5)

    def f(x):
        return (
            torch.full((2, 3), 7.5), torch.full((3,), 4), torch.full((2, 2), True), torch.full((2,), -math.inf),
            torch.zeros(3, 4), torch.zeros(2, dtype=torch.int64), torch.ones(4, 1, dtype=torch.float64),
            torch.ones(2, 3, dtype=torch.bool), torch.zeros_like(x), torch.ones_like(x) * x, torch.full_like(x, 2.5),
            x.new_zeros(3), x.new_ones((2, 2)), x.new_full((3,), -1.0),
            torch.arange(6), torch.arange(2, 11, 3), torch.arange(10, 0, -3), torch.arange(0.0, 1.0, 0.125),
            torch.arange(-2.5, 2.5, 0.5, dtype=torch.float64), torch.arange(5, dtype=torch.float32),
            torch.arange(3, dtype=torch.int32), torch.arange(x.shape[0]) * x.shape[1],
            x + torch.arange(5), torch.scalar_tensor(3.25), torch.zeros(0, 3), torch.ones(2, 0) + 1,
        )

    run_compiled(f, x)


def test_mask_with_dynamic_sequence_length():
    torch.manual_seed(2)

    def f(scores):
        S = scores.shape[-1]
        mask = torch.tril(torch.ones(S, S))
        qi = torch.arange(S)[:, None]
        kj = torch.arange(S)[None, :]
        s = scores.masked_fill(mask == 0, float("-inf"))
        return torch.softmax(s, -1), torch.where(qi >= kj, scores, 0.0).sum(-1), torch.arange(S) * 2.0

    compiled = torch.compile(f, backend="kiln", dynamic=True)
    with StatsWatch() as w:
        for S in (5, 12, 3):  # sizes 0 and 1 are specialised by dynamo: stay above them
            scores = torch.randn(2, S, S)
            got = compiled(scores)
            want = f(scores)
            for g, e in zip(got, want):
                torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert_kiln_ran(w.delta)
    assert w.delta["graphs_compiled"] == 1, w.delta
    assert w.delta["calls"] == 3, w.delta
