"""Elementwise ops compiled by kiln agree with eager: values, dtypes (type promotion), NaN/inf, gradients.

Cases are batched: one compiled function computes many ops on the same inputs and returns a tuple,
so each test is one or two compiler runs.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import run_compiled

pytestmark = pytest.mark.usefixtures("every_isa")  # once per ISA level this CPU runs


def _unary_ops(x):
    p = x.abs() + 0.1  # positive, for log / sqrt / fractional powers
    return (x.neg(), x.abs(), x.exp(), torch.exp2(x), torch.expm1(x), p.log(), torch.log2(p), torch.log1p(p),
            p.sqrt(), p.rsqrt(), x.reciprocal(), x.sin(), x.cos(), x.tan(), x.tanh(), x.sigmoid(), torch.erf(x),
            x.relu(), F.silu(x), F.gelu(x), F.gelu(x, approximate="tanh"), x.floor(), x.ceil(), x.round(),
            x.trunc(), x.sign(), x * x, x ** 2, x ** 3, p ** 0.5, p ** -0.5, p ** -1, p ** 2.5, p ** -2,
            torch.atan2(x, p), 2.0 ** x, x.square(), torch.exp(-x * x) * x)


def test_unary_float32_transposed_input_forward_and_grad():
    torch.manual_seed(0)
    x = (torch.randn(13, 14) * 3).t().detach().requires_grad_()  # a non-contiguous leaf
    assert not x.is_contiguous()
    run_compiled(_unary_ops, x, grad=True, rtol=2e-5, atol=2e-5)


def test_unary_float64_strided_slice_forward_and_grad():
    torch.manual_seed(1)
    # A leaf that is a slice with a step and an offset: non-dense strides, storage offset 1.
    x = (torch.randn(6, 34, dtype=torch.float64) * 3)[:, 1::3].detach().requires_grad_()
    assert x.stride() == (34, 3) and x.storage_offset() == 1
    run_compiled(_unary_ops, x, grad=True)


def test_unary_special_values():
    vals = [0.0, -0.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 1e-30, -1e30, 88.0, -104.0, 1e38, math.inf, -math.inf,
            math.nan, 3.0, -7.25]
    x = torch.tensor(vals, dtype=torch.float32)

    def f(x):
        return (x.neg(), x.abs(), x.exp(), torch.expm1(x), x.log(), torch.log1p(x), x.sqrt(), x.rsqrt(),
                x.reciprocal(), x.tanh(), x.sigmoid(), torch.erf(x), x.relu(), F.silu(x),
                # eager's float32 gelu gives NaN at +inf (float64 and kiln give inf): finite values only here
                F.gelu(x.clamp(-1e30, 1e30)), F.gelu(x, approximate="tanh"), x.floor(),
                x.ceil(), x.round(), x.trunc(), torch.where(x.isnan(), 0.0, x).sign(),  # sign(NaN): see below
                x * 2, x ** 2, torch.isnan(x), x.sin(), 1.0 / x)

    run_compiled(f, x)


def test_sign_of_nan_matches_eager():
    x = torch.tensor([math.nan, 1.0, -2.0, 0.0])
    run_compiled(lambda x: (x.sign(), x.double().sign()), x)


def test_round_half_to_even_float64():
    x = torch.arange(-20, 21, dtype=torch.float64) / 4  # every quarter: exact ties at .5
    run_compiled(lambda x: (x.round(), (x * 2).round(), x.floor(), x.ceil(), x.trunc()), x)


def _binary_ops(a, b, s):
    return (a + b, a - b, a * b, a / b, torch.add(a, b, alpha=2.5), torch.sub(a, b, alpha=-3), torch.rsub(a, 2.0),
            a + 3, 3.5 - a, a * -2, a / 4, 2 / b, torch.maximum(a, b), torch.minimum(a, b),
            torch.pow(b.abs() + 0.5, a), torch.atan2(a, b), torch.remainder(a, b), torch.fmod(a, b),
            a * s, a + s * b, b / s, torch.maximum(a, s), a ** 2 + b ** 2)


def test_binary_broadcasting_scalars_and_0dim_forward_and_grad():
    torch.manual_seed(2)
    a = torch.randn(4, 1, 5).requires_grad_()
    b = (torch.randn(3, 5) + 3 * torch.randn(3, 5).sign()).requires_grad_()  # away from 0
    s = torch.tensor(-1.75).requires_grad_()  # a 0-dim tensor
    run_compiled(_binary_ops, a, b, s, grad=True, rtol=2e-5, atol=2e-5)


def test_binary_float64_noncontiguous_forward_and_grad():
    torch.manual_seed(3)
    a = torch.randn(5, 7, dtype=torch.float64).t().detach().requires_grad_()  # (7, 5), transposed
    b = (torch.randn(7, 15, dtype=torch.float64) + 2)[:, ::3].detach().requires_grad_()  # (7, 5), step 3
    s = torch.tensor(0.625, dtype=torch.float64).requires_grad_()
    run_compiled(_binary_ops, a, b, s, grad=True)


def test_type_promotion():
    i64 = torch.tensor([[-7, -6, -1, 0, 1, 5, 7, 9]], dtype=torch.int64)
    d = torch.tensor([[3], [-3], [2], [-4]], dtype=torch.int64)  # divisors with both signs, never 0
    i32 = torch.tensor([1, -2, 3, 40, -5, 6, 7, -8], dtype=torch.int32)
    f32 = torch.linspace(-3, 3, 8)
    f64_0d = torch.tensor(1.25, dtype=torch.float64)
    i64_0d = torch.tensor(3)
    bools = torch.tensor([True, False, True, True, False, False, True, False])

    def f(i64, d, i32, f32, f64_0d, i64_0d, bools):
        return (
            i64 + 2.5,  # int tensor + float scalar -> default float dtype
            i64 * 2,  # stays int64
            i64 / d,  # true division of ints -> float32
            i64 // d, torch.remainder(i64, d), i64 % -3, -i64 // 4,  # floor semantics with negatives
            torch.div(i64, d, rounding_mode="trunc"), torch.div(i64, d, rounding_mode="floor"),
            torch.fmod(i64, d),
            f32 // 0.7, f32 % 0.7, f32 % -0.7, torch.fmod(f32, -0.7), torch.div(f32, 0.7, rounding_mode="trunc"),
            i32 + i64,  # int32 + int64 -> int64
            i32 * 3,  # stays int32
            i32 + f32,  # -> float32
            i32 + i64_0d,  # a 0-dim int64 does not promote int32
            f32 + f64_0d,  # a 0-dim float64 does not promote float32
            i64 * f64_0d,  # int tensor with a 0-dim float64: float wins
            i32.to(torch.float64) + f32,  # -> float64
            bools + bools, bools * 3, bools + 0.5, bools & bools.logical_not(), bools | ~bools, bools ^ True,
            i64 & 6, i64 | 1, i64 ^ 5, ~i64, ~bools,
            i64.abs(), -i32, i64 ** 2, i64.sign(),
            torch.maximum(i64, d), torch.minimum(i32, i64),
            f32 * True, i64 == 1.0, i32 > 2.5,
        )

    run_compiled(f, i64, d, i32, f32, f64_0d, i64_0d, bools)


def test_comparisons_and_logical():
    a = torch.tensor([[1.0, -2.0, math.nan, 3.0, -0.0, math.inf], [0.0, 2.0, 2.0, math.nan, -math.inf, 1e-8]])
    b = torch.tensor([1.0, 2.0, math.nan, -3.0, 0.0, math.inf])
    ints = torch.tensor([[1, 2, 3, 4, 5, 6]])

    def f(a, b, ints):
        return (a == b, a != b, a < b, a <= b, a > b, a >= b, a == 2, a != 2, a < 0.5, a <= -2, a > ints, a >= 1,
                ints == 3, ints < 3.5, ints > b, torch.isnan(a), (a > 0) & (b > 0), torch.logical_and(a > 0, ints),
                torch.logical_or(a, b), torch.logical_xor(a > 0, b > 0), torch.logical_not(a), torch.logical_not(ints),
                (a > b).to(torch.float32))

    run_compiled(f, a, b, ints)


def test_where_and_masked_fill_forward_and_grad():
    torch.manual_seed(4)
    x = torch.randn(3, 4, 5).requires_grad_()
    y = torch.randn(4, 1).requires_grad_()
    v = torch.tensor(2.5).requires_grad_()
    cond = torch.randn(4, 5) > 0

    def f(x, y, v, cond):
        return (torch.where(cond, x, y), torch.where(cond, x, 0.0), torch.where(cond, -1.0, x),
                torch.where(cond, 1.0, 2.0), torch.where(x > 0, x, x * 0.1),
                x.masked_fill(cond, float("-inf")).exp(), x.masked_fill(~cond, 7), x.masked_fill(cond, v),
                torch.where(cond, x, v), torch.where(cond, 3, 4))

    run_compiled(f, x, y, v, cond, grad=True)


def test_where_int_float_mix():
    cond = torch.tensor([True, False, True, False])
    i = torch.tensor([1, 2, 3, 4])
    f32 = torch.tensor([0.5, 1.5, 2.5, 3.5])

    def f(cond, i, f32):
        return (torch.where(cond, i, f32), torch.where(cond, i, 2.5), torch.where(cond, i, -1),
                torch.where(cond, f32, i), i.masked_fill(cond, 9), torch.where(cond, cond, ~cond))

    run_compiled(f, cond, i, f32)


def test_casts():
    x = torch.tensor([-2.7, -1.5, -0.5, -0.0, 0.0, 0.4, 0.5, 1.5, 2.7, 100.9, -100.9, 1e-40])
    i = torch.tensor([-3, -1, 0, 1, 2, 3, 100, 2**40, -(2**40), 7, 8, 9])
    bools = torch.tensor([True, False] * 6)

    def f(x, i, bools):
        return (x.to(torch.int64), x.to(torch.int32), x.to(torch.bool), x.to(torch.float64), x.double().float(),
                i.to(torch.float32), i.to(torch.float64), i.to(torch.bool), i.to(torch.int32).to(torch.int64) * 0 + i,
                bools.to(torch.float32), bools.to(torch.int64), bools.long().sum(), x.long().float(), x.int() + i,
                (x * 1e3).to(torch.float64) / 3, i.to(torch.float32) / 3)

    run_compiled(f, x, i, bools)


def test_clamp_forward_and_grad():
    torch.manual_seed(5)
    x = (torch.randn(6, 9) * 2).requires_grad_()
    lo = (torch.randn(9) - 1).requires_grad_()
    hi = (torch.randn(6, 1) + 1).requires_grad_()

    def f(x, lo, hi):
        return (x.clamp(-1, 1), x.clamp(min=0.5), x.clamp(max=-0.25), torch.clamp_min(x, 0.0), torch.clamp_max(x, 0.3),
                x.clamp(lo, hi), x.clamp(min=lo), x.clamp(max=hi), x.clamp(-0.5, 0.5) * x)

    run_compiled(f, x, lo, hi, grad=True)


def test_clamp_integer():
    i = torch.arange(-10, 11)
    run_compiled(lambda i: (i.clamp(-3, 4), i.clamp(min=2), i.clamp(max=-5), i.clamp(-2.5, 2.5)), i)


def test_nan_propagation():
    nan, inf = math.nan, math.inf
    a = torch.tensor([nan, 1.0, nan, -inf, inf, 0.0, -1.0, 2.0])
    b = torch.tensor([0.0, nan, nan, 1.0, nan, -0.0, -inf, inf])

    def f(a, b):
        return (torch.maximum(a, b), torch.minimum(a, b), a.relu(), b.relu(), a.clamp(-1, 1), b.clamp(min=0.0),
                a.clamp(max=0.0), a.clamp(min=b), a.clamp(max=b), a * 0, a - a,
                a + b, torch.max(torch.stack([a, b]), 0).values, a.sigmoid(), a.tanh(), torch.where(a > b, a, b),
                a.clamp(min=-inf, max=inf))

    run_compiled(f, a, b)


def test_neg_inf_mask_then_exp_and_sum():
    torch.manual_seed(6)
    x = torch.randn(5, 7)
    mask = torch.rand(5, 7) > 0.4
    mask[:, 0] = True  # every row keeps one finite entry

    def f(x, mask):
        m = x.masked_fill(~mask, float("-inf"))
        e = (m - m.amax(-1, keepdim=True)).exp()
        return m, e, e / e.sum(-1, keepdim=True), torch.where(mask, x, -math.inf).max(-1).values, m * 0 + 1

    run_compiled(f, x, mask)


def test_size_zero_and_size_one_dims():
    torch.manual_seed(7)
    empty = torch.randn(0, 5)
    one = torch.randn(1, 5)
    col = torch.randn(4, 1)
    e3 = torch.randn(3, 0, 2)

    def f(empty, one, col, e3):
        return (empty.exp() + 1, empty * one, one * col, (one + col).sigmoid(), col.t() * col, e3 + 1,
                e3 * e3.sum(1, keepdim=True), empty > 0, one.expand(3, 5) + 0, col - one)

    run_compiled(f, empty, one, col, e3)


def test_zero_dim_only():
    a = torch.tensor(1.5)
    b = torch.tensor(-4)
    c = torch.tensor(True)

    def f(a, b, c):
        return a * b, a + 1, b // 3, b % 3, a > b, torch.where(c, a, b), a.exp(), b.abs(), c.logical_not(), a ** b

    run_compiled(f, a, b, c)


def test_large_odd_sizes():
    # Lengths that are not multiples of any vector width, big enough to be split across threads.
    torch.manual_seed(8)
    a = torch.randn(100003)
    b = torch.randn(257, 1031)
    c = torch.randn(1031)

    def f(a, b, c):
        return (a.exp() * 2 + 1, (b * c).sigmoid(), b.t() * 3 + 1, torch.where(b > c, b, c), a[1::2] - a[:-1:2],
                b[:, 3:] * c[3:], (b.t()[5:] > 0).to(torch.float32))

    run_compiled(f, a, b, c)
