// gemm_kernels.h — register-blocked GEMM micro-kernels, one template for every ISA level (simd.h).
//
// Every kernel has the same contract: with Ap an MR x kc sliver of A and Bp a kc x NR block of B whose
// rows are ldb apart (Bp[k * ldb + j]; ldb = NR for a packed sliver), it sets C[0:mr, 0:nr] = alpha * Ap.Bp + beta * C,
// where C has row stride rs and unit column stride, mr <= MR and nr <= NR. beta == 0 never reads C (NaN-safe). a_first
// says this is the A sliver's first use (a prefetch hint). The accumulators of the whole MR x NR tile live in registers
// for the entire kc loop; each step loads NR/L vectors of B and broadcasts MR scalars of A (the BLIS
// layout for a row-major C tile). Since A is only ever broadcast, its sliver needs no packed layout:
// it is read through a pitch `lda` in one of two shapes (the ROWS template flag):
//   interleaved  A(i, k) = Ap[k * lda + i]  (packed: lda = MR; column-major A in place: its column stride)
//   row panel    A(i, k) = Ap[i * lda + k]  (row-major A in place: its row stride; or a packed copy)
// Private to the runtime.
#pragma once

#include <cmath>
#include <cstdint>

#include "kiln/runtime/simd.h"

namespace kiln_rt::gemm {

template <typename T>
inline T madd(T a, T b, T c) {
#if defined(__FMA__)
  return std::fma(a, b, c);  // one rounding, like the vector kernels
#else
  return a * b + c;
#endif
}

// Reads A(i, k) from either sliver layout; next() steps k, prefetch(d) asks for step k + d.
template <typename T, int MR, bool ROWS>
struct ASliver;

// Interleaved: A(i, k) = a[k * ks + i] (ks = MR when packed, A's column stride when read in place).
// One sequential stream the hardware prefetcher follows without help.
template <typename T, int MR>
struct ASliver<T, MR, false> {
  const T* p;
  int64_t ks;
  ASliver(const T* a, int64_t lda) : p(a), ks(lda) {}
  T at(int i) const { return p[i]; }
  void next() { p += ks; }
  void prefetch(int64_t) const {}
};

// Row panel: A(i, k) = a[i * lda + k]. Rows are reached as base[i / 3] + (i % 3) * lda so each
// broadcast is one x86 address mode ([base + lda*4] or [base + lda*8]) and only ceil(MR / 3) pointers
// advance per step. MR short streams are too many for the hardware prefetcher to pick up quickly,
// so the kernel prefetches each row ahead itself.
template <typename T, int MR>
struct ASliver<T, MR, true> {
  static constexpr int G = (MR + 2) / 3;
  const T* base[G];
  int64_t ld;
  ASliver(const T* a, int64_t lda) : ld(lda) {
    for (int g = 0; g < G; ++g) base[g] = a + 3 * g * lda;
  }
  T at(int i) const { return base[i / 3][(i % 3) * ld]; }
  void next() {
    for (int g = 0; g < G; ++g) ++base[g];
  }
  void prefetch(int64_t ahead) const {
    for (int i = 0; i < MR; ++i) __builtin_prefetch(&base[i / 3][(i % 3) * ld + ahead], 0, 3);
  }
};

// The register-blocked micro-kernel, for every ISA level (simd.h): an MR x (NV * L) tile of C in
// NV * MR accumulators, with NV vectors of B and one broadcast of A live beside them, so the tile
// must fit the level's vector registers (the static_assert). B rows are `ldb` apart: ldb = NR for
// GEMM's packed slivers, the block pitch for the fused attention's blocks (which use the same
// kernels on operands they keep in L1). Edge tiles (nr < NR) store through lane masks.
template <typename T, int MR_, int NV>
struct MicroKernel {
  using X = simd::Vec<T>;
  using V = typename X::V;
  static constexpr int L = X::L, MR = MR_, NR = NV * L;
  static_assert(NV * MR + NV + 1 <= simd::kVectorRegisters, "the tile must fit the vector registers");

  // alpha and beta come by reference, so that nothing but the tile competes for vector registers in
  // the k loop: passed by value they stay live in two registers, and with 16 of them (AVX2) GCC then
  // kept an accumulator on the stack (1024^3 at 73% of the FMA peak instead of 8x%).
  template <bool ROWS>
  __attribute__((noinline)) static void run(int64_t kc, const T* ap, int64_t lda, const T* __restrict b, int64_t ldb,
                                            T* c, int64_t rs, int mr, int nr, const T& alpha, const T& beta,
                                            bool a_first = false) {
    ASliver<T, MR, ROWS> a(ap, lda);
    V acc[NV][MR];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[v][i] = X::zero();
    // The C tile is touched only after the kc loop: start pulling it in now, where that loop is long
    // enough to hide the wait (short ones, the fused attention's, find their C in L1).
    if (kc >= 64)
      for (int i = 0; i < mr; ++i) {
        __builtin_prefetch(c + i * rs, 1, 3);
        __builtin_prefetch(c + i * rs + nr - 1, 1, 3);
      }
    // Steps of one cache line of a row-panel A sliver. On the sliver's first use (a_first), each block
    // prefetches the rows 4 lines ahead; later uses find it in L1, where prefetches only cost loads.
    constexpr int64_t kStep = 64 / sizeof(T);
    for (int64_t k0 = 0; k0 < kc; k0 += kStep) {
      if (a_first) a.prefetch(4 * kStep);
      const int64_t kn = kc - k0 < kStep ? kc - k0 : kStep;
#pragma GCC unroll 4  // fewer loop-control uops per FMA: measured +2-7% when the core is contended
      for (int64_t k = 0; k < kn; ++k) {
        V bv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) bv[v] = X::loadu(b + v * L);
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) {
          const V ai = X::set1(a.at(i));
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) acc[v][i] = X::fma(ai, bv[v], acc[v][i]);
        }
        a.next();
        b += ldb;
      }
    }
    // C = alpha * acc + beta * C; alpha == 1 (every call but a scaled GEMM's) skips the multiply.
    if (alpha == T(1))
      store<false>(acc, c, rs, mr, nr, alpha, beta);
    else
      store<true>(acc, c, rs, mr, nr, alpha, beta);
  }

 private:
  template <bool SCALE>
  __attribute__((always_inline)) static void store(const V (&acc)[NV][MR], T* c, int64_t rs, int mr, int nr,
                                                   const T& alpha, const T& beta) {
    const V va = X::set1(alpha), vb = X::set1(beta);
    auto scaled = [&](V x) { return SCALE ? x * va : x; };
    if (nr == NR) {
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        if (i >= mr) break;
        T* ci = c + i * rs;
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v)
          X::storeu(ci + v * L, beta == T(0) ? scaled(acc[v][i]) : X::fma(vb, X::loadu(ci + v * L), scaled(acc[v][i])));
      }
      return;
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      if (i >= mr) break;
      T* ci = c + i * rs;
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        const int n = nr - v * L;
        if (n <= 0) break;
        const V r = beta == T(0) ? scaled(acc[v][i]) : X::fma(vb, X::load_first(ci + v * L, n), scaled(acc[v][i]));
        X::store_first(ci + v * L, n, r);
      }
    }
  }
};

// The GEMM's two tiles, from the register count. Interleaved A (packed, or column-major in place)
// takes Kernel; row-major A read in place as row panels takes RowKernel. With 32 registers (AVX-512),
// 12 x 2L and 6 x 4L (27 and 29 registers): the row-panel tile loads fewer B vectors per broadcast,
// and measured 6-17% faster than 12 x 32 on the Transformer's shapes, while interleaved A reads each
// line for twice the columns at 12 rows (6 x 64 was 10-15% slower there). With 16 (AVX2, baseline),
// 6 x 2L (15 registers, the BLIS Haswell shape) for both.
inline constexpr bool kWideRegisterFile = simd::kVectorRegisters >= 32;
template <typename T>
using Kernel = MicroKernel<T, kWideRegisterFile ? 12 : 6, 2>;
template <typename T>
using RowKernel = MicroKernel<T, 6, kWideRegisterFile ? 4 : 2>;

}  // namespace kiln_rt::gemm
