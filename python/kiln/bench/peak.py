"""The machine's limits: FMA peak (GFLOP/s) and triad bandwidth (GB/s), measured by a small C program.

Python cannot issue a tight loop of independent FMAs, so we compile one. Where no C compiler works we
fall back to stand-ins measured with torch (a large torch.mm, torch.addcmul) and say so in the report.
"""

import hashlib
import os
import shutil
import subprocess
import tempfile
import time

import torch

# Independent accumulators: 2 FMA ports x 4-cycle latency needs >= 8 chains; 12 hides the rest.
_SOURCE = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef float v4 __attribute__((vector_size(16)));
typedef float v8 __attribute__((vector_size(32)));
typedef float v16 __attribute__((vector_size(64)));
#define NACC 12

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }

typedef struct { long iters; int width; float sink; long lo, hi; float *a, *b, *c, *d; } job_t;
static volatile float seed_a = 0.999999f, seed_b = 1e-6f;

/* Named accumulators (not an array) so they stay in registers. */
#define STEP(x) x = x * a + b;
#define FMA_BODY(V, W) { \
    V a, b, x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11; \
    for (int k = 0; k < W; k++) { a[k] = seed_a; b[k] = seed_b; x0[k] = x1[k] = x2[k] = x3[k] = k; \
        x4[k] = x5[k] = x6[k] = x7[k] = x8[k] = x9[k] = x10[k] = x11[k] = k; } \
    for (long i = 0; i < job->iters; i++) { \
        STEP(x0) STEP(x1) STEP(x2) STEP(x3) STEP(x4) STEP(x5) \
        STEP(x6) STEP(x7) STEP(x8) STEP(x9) STEP(x10) STEP(x11) } \
    V s = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7 + x8 + x9 + x10 + x11; \
    float t = 0; for (int k = 0; k < W; k++) t += s[k]; job->sink = t; }

static void *fma_worker(void *p) {
    job_t *job = (job_t *)p;
    if (job->width == 16) FMA_BODY(v16, 16) else if (job->width == 8) FMA_BODY(v8, 8) else FMA_BODY(v4, 4)
    return NULL;
}

static void *triad_worker(void *p) {
    job_t *job = (job_t *)p;
    /* restrict: no aliasing, so the compiler vectorises without runtime checks */
    float *restrict a = job->a;
    const float *restrict b = job->b, *restrict c = job->c, *restrict d = job->d;
    for (long i = job->lo; i < job->hi; i++) a[i] = b[i] * c[i] + d[i];
    return NULL;
}

static void *touch_worker(void *p) {
    job_t *job = (job_t *)p;
    for (long i = job->lo; i < job->hi; i++) { job->a[i] = 0; job->b[i] = 1; job->c[i] = 2; job->d[i] = 3; }
    return NULL;
}

static double run(void *(*fn)(void *), job_t *jobs, int threads) {
    pthread_t t[256];
    double t0 = now();
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, fn, &jobs[i]);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    return now() - t0;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int threads = atoi(argv[2]);
    if (threads < 1 || threads > 256) return 2;
    job_t jobs[256];
    memset(jobs, 0, sizeof jobs);
    double best = 0;
    if (!strcmp(argv[1], "fma")) {
        /* ~30 ms per run, 8 runs per width, alternating: a short dip of a shared host cannot decide it.
           argv[3]: the widest vector, in floats, of the ISA level it was compiled for (4, 8 or 16). */
        int widest = argc > 3 ? atoi(argv[3]) : 16;
        for (int rep = 0; rep < 8; rep++)
            for (int width = widest > 4 ? 8 : 4; width <= widest; width *= 2) {
                long iters = 200000000L / width;
                for (int i = 0; i < threads; i++) { jobs[i].iters = iters; jobs[i].width = width; }
                double s = run(fma_worker, jobs, threads);
                double gflops = 2.0 * NACC * width * iters * threads / s / 1e9;
                if (gflops > best) best = gflops;
            }
    } else {
        long n = argc > 3 ? atol(argv[3]) : 64L << 20;
        float *a = malloc(n * 4), *b = malloc(n * 4), *c = malloc(n * 4), *d = malloc(n * 4);
        if (!a || !b || !c || !d) return 3;
        for (int i = 0; i < threads; i++) {
            jobs[i].lo = n * i / threads; jobs[i].hi = n * (i + 1) / threads;
            jobs[i].a = a; jobs[i].b = b; jobs[i].c = c; jobs[i].d = d;
        }
        run(touch_worker, jobs, threads);  /* first touch by the thread that uses the pages */
        for (int rep = 0; rep < 5; rep++) {
            double s = run(triad_worker, jobs, threads);
            double gbps = 16.0 * n / s / 1e9;  /* 3 reads + 1 write of 4 bytes */
            if (gbps > best) best = gbps;
        }
    }
    printf("%.3f\n", best);
    return 0;
}
"""


# The same FMA and triad loops as library functions run on PyTorch's own OpenMP pool (its
# GOMP_parallel is passed in), so that they can take turns with GEMMs or pointwise kernels in one
# timing loop: the machine's limits at the same moments.
_IN_PROCESS_SOURCE = r"""
/* W: floats per vector of the ISA level it is compiled for (-DW=4, 8 or 16). */
typedef float V __attribute__((vector_size(4 * W)));
typedef struct { long iters; float sink[256]; } job_t;
static volatile float seed_a = 0.999999f, seed_b = 1e-6f;
#define STEP(x) x = x * a + b;
static void body(void *p) {
    job_t *job = (job_t *)p;
    V a, b, x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11;
    for (int k = 0; k < W; k++) { a[k] = seed_a; b[k] = seed_b; x0[k] = x1[k] = x2[k] = x3[k] = k;
        x4[k] = x5[k] = x6[k] = x7[k] = x8[k] = x9[k] = x10[k] = x11[k] = k; }
    for (long i = 0; i < job->iters; i++) {
        STEP(x0) STEP(x1) STEP(x2) STEP(x3) STEP(x4) STEP(x5) STEP(x6) STEP(x7) STEP(x8) STEP(x9) STEP(x10) STEP(x11) }
    V s = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7 + x8 + x9 + x10 + x11;
    float t = 0; for (int k = 0; k < W; k++) t += s[k];
    job->sink[0] += t;  /* racy on purpose: only keeps the loop alive */
}
typedef void (*gomp_parallel_t)(void (*)(void *), void *, unsigned, unsigned);
/* Every thread of the pool runs iters steps of 12 independent W-wide FMAs: 24 * W * iters flops each. */
void kiln_bench_fma(void *gomp_parallel, unsigned threads, long iters) {
    job_t job = {iters, {0}};
    ((gomp_parallel_t)gomp_parallel)(body, &job, threads, 0);
}
/* a[i] = b[i] * c[i] + d[i]: each pool thread claims one of `parts` equal pieces, as the C triad
   program's threads do. */
typedef struct { float *a; const float *b, *c, *d; long n; unsigned parts, next; } triad_t;
static void triad_body(void *p) {
    triad_t *t = (triad_t *)p;
    unsigned k = __atomic_fetch_add(&t->next, 1, __ATOMIC_RELAXED);
    if (k >= t->parts) return;
    long lo = t->n * k / t->parts, hi = t->n * (k + 1) / t->parts;
    float *restrict a = t->a;
    const float *restrict b = t->b, *restrict c = t->c, *restrict d = t->d;
    for (long i = lo; i < hi; i++) a[i] = b[i] * c[i] + d[i];
}
void kiln_bench_triad(void *gomp_parallel, unsigned threads, float *a, const float *b, const float *c,
                      const float *d, long n) {
    triad_t t = {a, b, c, d, n, threads, 0};
    ((gomp_parallel_t)gomp_parallel)(triad_body, &t, threads, 0);
}
"""


# Per ISA level: the compiler's target and the widest float vector (the FMA loop's width).
ISA_FLAGS = {"baseline": (["-march=x86-64-v2"], 4), "avx2": (["-march=x86-64-v3"], 8),
             "avx512": (["-march=x86-64-v4"], 16), "avx512_amx": (["-march=x86-64-v4"], 16)}


def _level(isa: str | None) -> tuple[str, list[str], int]:
    """(level name, compiler flags, float width) for `isa`, None meaning kiln's own (kiln.target())."""
    if isa is None:
        import kiln

        isa = kiln.target()["isa"]
    flags, width = ISA_FLAGS[isa]
    return isa, flags, width


def _compile(source: str, name: str, flags: list[str]) -> str:
    """Path of a compiled helper (cached by source hash); raises if no compiler works."""
    cxx = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc") or shutil.which("gcc")
    if not cxx:
        raise RuntimeError("no C compiler on PATH")
    key = hashlib.sha256((source + cxx + " ".join(flags)).encode()).hexdigest()[:16]
    out = os.path.join(tempfile.gettempdir(), f"kiln-bench-{name}-{os.getuid()}-{key}")
    if not os.path.exists(out):
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, f"{name}.c")
            with open(src, "w") as f:
                f.write(source)
            # -O3 (vectorised triad) without -ffast-math; GNU C contracts a*b+c into FMA by default.
            # -march=native first: a level's -march in `flags` replaces it.
            cmd = [cxx, "-O3", "-march=native", *flags, "-o", out + ".tmp", src]
            subprocess.run(cmd, check=True, capture_output=True, timeout=120)
            os.replace(out + ".tmp", out)
    return out


def _build(isa: str | None = None) -> str:
    level, flags, _ = _level(isa) if isa is not None else (None, [], 16)
    return _compile(_SOURCE, f"peak-{level or 'native'}", ["-pthread", *flags])


def _in_process(isa: str | None = None):
    """(PyTorch's GOMP_parallel address, the in-process helper library built for `isa`), or None where
    there is no OpenMP pool or no C compiler."""
    import ctypes

    try:
        with open("/proc/self/maps") as maps:
            gomp = sorted({line.split()[-1] for line in maps if "libgomp" in line and "/" in line})
        if not gomp:
            return None
        parallel = ctypes.cast(ctypes.CDLL(gomp[0]).GOMP_parallel, ctypes.c_void_p).value
        level, flags, width = _level(isa)
        lib = ctypes.CDLL(_compile(_IN_PROCESS_SOURCE, f"in-process-{level}",
                                   ["-shared", "-fPIC", *flags, f"-DW={width}"]))
        return parallel, lib, width
    except Exception:
        return None


def fma_step(threads: int, flops: float, isa: str | None = None):
    """(callable, flops per call): the FMA peak loop of ISA level `isa` (kiln's own when None) on
    PyTorch's OpenMP pool, to time side by side with other work; None where there is no OpenMP pool
    or no C compiler."""
    import ctypes

    found = _in_process(isa)
    if found is None:
        return None
    parallel, lib, width = found
    run = lib.kiln_bench_fma
    run.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_long]
    per_step = 24 * width
    iters = max(1, int(flops / (per_step * threads)))
    return (lambda: run(parallel, threads, iters)), float(per_step * threads * iters)


def triad_step(threads: int, out: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor):
    """A callable writing b * c + d into out (contiguous float32 tensors of one size) with the C triad
    loop on PyTorch's OpenMP pool, to time side by side with other work; None where there is no
    OpenMP pool or no C compiler. The tensors must outlive the callable."""
    import ctypes

    found = _in_process()
    if found is None or any(t.dtype != torch.float32 or not t.is_contiguous() for t in (out, b, c, d)):
        return None
    parallel, lib, _ = found
    run = lib.kiln_bench_triad
    run.argtypes = [ctypes.c_void_p, ctypes.c_uint] + [ctypes.c_void_p] * 4 + [ctypes.c_long]
    ptrs = [t.data_ptr() for t in (out, b, c, d)]
    return lambda: run(parallel, threads, *ptrs, out.numel())


def fma_peak(threads: int, isa: str | None = None) -> tuple[float, str]:
    """(GFLOP/s, how it was measured) of ISA level `isa` (kiln's own level when None): its own FMA loop,
    compiled for the level, as wide as its vectors (and narrower where that is faster)."""
    try:
        level, _, width = _level(isa)
        out = subprocess.run([_build(level), "fma", str(threads), str(width)], check=True, capture_output=True,
                             text=True, timeout=120)
        widths = {4: "4-wide, no FMA instruction", 8: "8-wide", 16: "8- and 16-wide, best"}[width]
        return float(out.stdout), f"{level}: C loop of independent multiply-adds ({widths}), {threads} threads"
    except Exception as exc:
        n = 2048
        a, b = torch.randn(n, n), torch.randn(n, n)
        best = _best_seconds(lambda: torch.mm(a, b), 5)
        return 2 * n**3 / best / 1e9, f"stand-in: torch.mm {n}x{n} (no FMA loop: {type(exc).__name__})"


def triad_bandwidth(threads: int, n: int) -> tuple[float, str]:
    """(GB/s of a[i] = b[i]*c[i] + d[i] on n floats, 16 bytes per element; how it was measured)."""
    try:
        out = subprocess.run([_build(None), "triad", str(threads), str(n)], check=True, capture_output=True,
                             text=True, timeout=300)
        return float(out.stdout), f"C triad loop, {threads} threads, buffers reused"
    except Exception as exc:
        a, b, c, d = (torch.rand(n) for _ in range(4))
        best = _best_seconds(lambda: torch.addcmul(d, b, c, out=a), 5)
        return 16 * n / best / 1e9, f"stand-in: torch.addcmul (no C triad: {type(exc).__name__})"


def _best_seconds(fn, reps) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
