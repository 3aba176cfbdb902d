"""bench_runtime_gemm.py — GFLOP/s of the runtime's kiln_gemm_f32 against torch.mm/bmm, same threads.

Usage: python tools/bench_runtime_gemm.py [path/to/libkiln_runtime.so] [--threads N] [--reps R] [--filter S]
Each shape is checked against torch first, then timed after warm-up: R rounds, each timing a block of
calls (at least ~20 ms) of kiln and then of torch, so both contenders see the same machine state. The
table shows the median over rounds of each and their ratio; "best" is the ratio of the fastest rounds,
which is the steadier figure on a machine shared with other work. On a busy shared machine, running it
under `chrt -r 10` (root) keeps other processes from preempting either contender mid-measurement.
"""

import argparse
import ctypes
import os
import statistics
import sys
import time

import torch

I64 = ctypes.c_int64

# (name, batch, m, n, k, transpose_a, transpose_b): A is m x k, B is k x n; a transposed operand is
# stored the other way round (column-major), as the backward passes see it.
SHAPES = [
    ("square 256", 1, 256, 256, 256, False, False),
    ("square 512", 1, 512, 512, 512, False, False),
    ("square 1024", 1, 1024, 1024, 1024, False, False),
    ("square 2048", 1, 2048, 2048, 2048, False, False),
    ("1152x192 @ 192x576", 1, 1152, 576, 192, False, False),
    ("1152x192 @ 192x768", 1, 1152, 768, 192, False, False),
    ("1152x768 @ 768x192", 1, 1152, 192, 768, False, False),
    ("36x 192x32 @ 32x192", 36, 192, 192, 32, False, False),
    ("36x 192x192 @ 192x32", 36, 192, 32, 192, False, False),
    ("4x 1024x64 @ 64x1024", 4, 1024, 1024, 64, False, False),
    ("4x 1024x1024 @ 1024x64", 4, 1024, 64, 1024, False, False),
    # backward-pass variants: dW = X^T . dY (A^T B) and dX = dY . W^T (A B^T)
    ("(192x1152)^T @ 1152x576", 1, 192, 576, 1152, True, False),
    ("1152x576 @ (192x576)^T", 1, 1152, 192, 576, False, True),
    ("(768x1152)^T @ 1152x192", 1, 768, 192, 1152, True, False),
    ("1152x192 @ (768x192)^T", 1, 1152, 768, 192, False, True),
    ("36x (32x192)^T @ 32x192", 36, 192, 192, 32, True, False),
    ("36x 192x192 @ (192x192)^T", 36, 192, 192, 192, False, True),
    ("36x (192x192)^T @ 192x32", 36, 192, 32, 192, True, False),
    ("4x 1024x1024 @ (1024x64)^T", 4, 1024, 1024, 64, False, True),
    ("4x (64x1024)^T @ 64x1024", 4, 1024, 1024, 64, True, False),
    ("4x (1024x1024)^T @ 1024x64", 4, 1024, 64, 1024, True, False),
    ("4x 1024x64 @ (64x1024)^T", 4, 1024, 64, 1024, False, True),
]


def default_lib():
    here = os.path.dirname(os.path.abspath(__file__))
    for cand in ("/tmp/rt/libkiln_runtime.so", os.path.join(here, "..", "build", "libkiln_runtime.so")):
        if os.path.exists(cand):
            return cand
    sys.exit("libkiln_runtime.so not found: pass its path")


def load(path):
    lib = ctypes.CDLL(path)
    lib.kiln_set_num_threads.argtypes = [ctypes.c_int]
    raw = ctypes.CDLL(path).kiln_gemm_f32  # a second handle: same function, no argtypes conversion
    raw.restype = None
    lib.kiln_gemm_f32_raw = raw
    return lib


def operand(batch, rows, cols, transposed):
    """A batch x rows x cols tensor, stored column-major per matrix when transposed."""
    if transposed:
        return torch.randn(batch, cols, rows).transpose(1, 2)
    return torch.randn(batch, rows, cols)


def kiln_call(lib, a, b, c):
    """A no-argument callable running kiln_gemm_f32 on (a, b) into c; ctypes arguments prebuilt so the
    Python-side cost per call stays around a microsecond."""
    batch, m, k = a.shape
    n = b.shape[2]
    fn = lib.kiln_gemm_f32_raw
    sa, sb, sc = a.stride(), b.stride(), c.stride()
    p = lambda t: ctypes.c_void_p(t.data_ptr())  # noqa: E731
    args = (I64(batch), I64(m), I64(n), I64(k), ctypes.c_float(1.0), p(a), I64(sa[0]), I64(sa[1]), I64(sa[2]),
            p(b), I64(sb[0]), I64(sb[1]), I64(sb[2]), ctypes.c_float(0.0), p(c), I64(sc[0]), I64(sc[1]), I64(sc[2]))
    return lambda: fn(*args)


def block_seconds(fn, inner):
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def calls_per_block(fn, min_time=0.02):
    fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    return max(1, int(min_time / one))  # batch tiny calls so timer overhead does not count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("lib", nargs="?", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--filter", default="")
    args = ap.parse_args()
    lib = load(args.lib or default_lib())
    torch.set_num_threads(args.threads)
    lib.kiln_set_num_threads(args.threads)
    torch.manual_seed(0)

    print(f"threads={args.threads}  torch {torch.__version__}")
    print(f"{'shape':30s} {'kiln GF/s':>10s} {'torch GF/s':>10s} {'ratio':>7s} {'best':>7s}")
    ratios = []
    for name, batch, m, n, k, ta, tb in SHAPES:
        if args.filter not in name:
            continue
        a, b = operand(batch, m, k, ta), operand(batch, k, n, tb)
        c = torch.empty(batch, m, n)
        run = kiln_call(lib, a, b, c)
        run()
        ref = torch.bmm(a, b)
        err = (c - ref).abs().max().item() / max(ref.abs().max().item(), 1e-30)
        if err > 1e-4:
            print(f"{name:30s} WRONG: max rel error {err:.2e}")
            continue
        out = torch.empty(batch, m, n)
        if batch == 1:
            a2, b2, o2 = a[0], b[0], out[0]
            torch_fn = lambda: torch.mm(a2, b2, out=o2)  # noqa: B023 (timed within this iteration)
        else:
            torch_fn = lambda: torch.bmm(a, b, out=out)  # noqa: B023 (timed within this iteration)
        flops = 2.0 * batch * m * n * k
        ik, it = calls_per_block(run), calls_per_block(torch_fn)
        tk, tt = [], []
        for _ in range(args.reps):
            # The pause lets the other side's idle threads stop spinning (libgomp spins for up to
            # milliseconds after a parallel region) so neither contender pays for the other's pool.
            time.sleep(0.01)
            tk.append(block_seconds(run, ik))
            time.sleep(0.01)
            tt.append(block_seconds(torch_fn, it))
        gk, gt = flops / statistics.median(tk) / 1e9, flops / statistics.median(tt) / 1e9
        best = min(tt) / min(tk)
        ratios.append(gk / gt)
        print(f"{name:30s} {gk:10.1f} {gt:10.1f} {gk / gt:7.2f} {best:7.2f}")
    if ratios:
        print(f"geomean ratio {statistics.geometric_mean(ratios):.2f}")


if __name__ == "__main__":
    main()
