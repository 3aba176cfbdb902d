"""Entry point of `python -m kiln.bench`."""

import os
import sys

# --emulate LEVEL: every contender's kernels are chosen as on a CPU of that level, which the libraries
# read from the environment when they start (ATen's dispatch and Inductor's vector width through
# ATEN_CPU_CAPABILITY, oneDNN's and MKL's through their own variables, kiln's through KILN_ISA): so
# the run starts again, with them set, before anything imports torch.
EMULATE_ENV = {
    "baseline": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                 "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "KILN_ISA": "baseline"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
             "KILN_ISA": "avx2"},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
               "MKL_ENABLE_INSTRUCTIONS": "AVX512", "KILN_ISA": "avx512"},
}


def _emulated_level(argv):
    for i, a in enumerate(argv):
        if a == "--emulate" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--emulate="):
            return a.split("=", 1)[1]
    return None


level = _emulated_level(sys.argv[1:])
if level in EMULATE_ENV and os.environ.get("KILN_BENCH_EMULATED") != level:
    os.environ.update(EMULATE_ENV[level], KILN_BENCH_EMULATED=level)
    os.execv(sys.executable, [sys.executable, "-m", "kiln.bench", *sys.argv[1:]])

from .cli import main  # noqa: E402  (after the re-execution above)

sys.exit(main())
