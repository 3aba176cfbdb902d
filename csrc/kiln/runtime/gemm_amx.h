// gemm_amx.h — float GEMM on AMX tiles, each float split into bfloat16 planes (private to the runtime).
//
// AMX multiplies bfloat16 pairs into float accumulators, 16x the FMA units' multiply-adds per cycle.
// A float x splits exactly into x0 + x1 + x2, three bfloat16 numbers holding 8 significand bits
// each (truncation, so nothing rounds), and every product xi * yj of two planes is exact in float.
// With 3 planes the kernel sums the six products whose magnitude can reach 2^-16 |x y|; the three
// it leaves out are below 2^-24 |x y| together with rounding, the same order as the float rounding a
// plain FMA GEMM makes at every step. 2 planes (each rounded to nearest) sum x0 y0 + x0 y1 + x1 y0,
// about 16 significand bits (PyTorch's "high"); 1 plane is x rounded to bfloat16 ("medium").
// The split is exact only for finite floats with 2^-103 <= |x| < 2^127 (and zeros); a product whose
// operands hold anything else (inf, NaN, subnormal or nearly so) is redone on the FMA kernels, so
// those inputs keep IEEE float semantics. Results below FLT_MIN may flush to zero.
#pragma once

#include <cstdint>

#include "kiln/runtime/gemm_common.h"

namespace kiln_rt::gemm::amx {

// Whether this CPU has AMX-BF16 and the kernel granted this process the tile state (asked once).
// KILN_GEMM_AMX=0 in the environment turns the path off.
bool available();

// The AMX path for gemm.cpp's parallel driver: C tiles of 32 x 32, A always packed.
struct Path {
  static constexpr int MR = 32, NR = 32;
  static constexpr int64_t kMinTaskColumnTiles = 8, kMinTaskRowSlivers = 6;
  static bool a_in_place(const Problem<float>&) { return false; }
  static bool b_packed_once(const Problem<float>&) { return false; }
  // C[m0:m1, n0:n1] of batch element bi = alpha * A B (p.beta must be 0, p.bf16_planes in 1..3).
  // Returns false, with that rectangle of C unspecified, when an operand holds a value the split
  // cannot represent exactly (see above); the caller recomputes.
  static bool rect(const Problem<float>& p, int64_t bi, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
};

}  // namespace kiln_rt::gemm::amx
