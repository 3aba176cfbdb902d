// gemm_kernels.h — register-blocked GEMM micro-kernels: AVX-512, AVX2+FMA and portable C++.
//
// Every kernel has the same contract: with Ap an MR x kc sliver of A and Bp a packed kc x NR sliver
// (Bp[k * NR + j]), it sets C[0:mr, 0:nr] = alpha * Ap.Bp + beta * C, where C has row stride rs and unit
// column stride, mr <= MR and nr <= NR. beta == 0 never reads C (NaN-safe). a_first says this is the
// A sliver's first use (a prefetch hint). The accumulators of the whole MR x NR tile live in registers
// for the entire kc loop; each step loads NR/L vectors of B and broadcasts MR scalars of A (the BLIS
// layout for a row-major C tile). Since A is only ever broadcast, its sliver needs no packed layout:
// it is read through a pitch `lda` in one of two shapes (the ROWS template flag):
//   interleaved  A(i, k) = Ap[k * lda + i]  (packed: lda = MR; column-major A in place: its column stride)
//   row panel    A(i, k) = Ap[i * lda + k]  (row-major A in place: its row stride; or a packed copy)
// Private to the runtime.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace kiln_rt::gemm {

template <typename T>
inline T madd(T a, T b, T c) {
#if defined(__FMA__)
  return std::fma(a, b, c);  // one rounding, like the vector kernels
#else
  return a * b + c;
#endif
}

// C[0:mr, 0:nr] = alpha * tile + beta * C for a tile computed into memory (edge tiles, portable kernel).
template <typename T>
inline void store_tile_scalar(const T* tile, int ld, T* c, int64_t rs, int mr, int nr, T alpha, T beta) {
  for (int i = 0; i < mr; ++i) {
    T* ci = c + i * rs;
    const T* ti = tile + i * ld;
    if (beta == T(0))
      for (int j = 0; j < nr; ++j) ci[j] = alpha * ti[j];
    else
      for (int j = 0; j < nr; ++j) ci[j] = madd(beta, ci[j], alpha * ti[j]);
  }
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

// Portable kernel: plain loops the compiler vectorizes over NR.
template <typename T, int MR_, int NR_>
struct GenericKernel {
  static constexpr int MR = MR_, NR = NR_;
  template <bool ROWS>
  __attribute__((noinline)) static void run(int64_t kc, const T* ap, int64_t lda, const T* __restrict b, T* c,
                                            int64_t rs, int mr, int nr, T alpha, T beta, bool /*a_first*/ = false) {
    ASliver<T, MR, ROWS> a(ap, lda);
    T acc[MR][NR] = {};
    for (int64_t k = 0; k < kc; ++k, a.next(), b += NR)
      for (int i = 0; i < MR; ++i) {
        const T ai = a.at(i);
        for (int j = 0; j < NR; ++j) acc[i][j] = madd(ai, b[j], acc[i][j]);
      }
    store_tile_scalar(&acc[0][0], NR, c, rs, mr, nr, alpha, beta);
  }
};

#if defined(__AVX512F__)

template <typename T>
struct V512;

template <>
struct V512<float> {
  using V = __m512;
  using Mask = __mmask16;
  static constexpr int L = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V load(const float* p) { return _mm512_load_ps(p); }
  static V loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void storeu(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V maskz_loadu(Mask m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
  static void mask_storeu(float* p, Mask m, V v) { _mm512_mask_storeu_ps(p, m, v); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static Mask mask(int n) { return n >= L ? Mask(0xFFFF) : Mask((1u << (n > 0 ? n : 0)) - 1); }
};

template <>
struct V512<double> {
  using V = __m512d;
  using Mask = __mmask8;
  static constexpr int L = 8;
  static V zero() { return _mm512_setzero_pd(); }
  static V set1(double x) { return _mm512_set1_pd(x); }
  static V load(const double* p) { return _mm512_load_pd(p); }
  static V loadu(const double* p) { return _mm512_loadu_pd(p); }
  static void storeu(double* p, V v) { _mm512_storeu_pd(p, v); }
  static V maskz_loadu(Mask m, const double* p) { return _mm512_maskz_loadu_pd(m, p); }
  static void mask_storeu(double* p, Mask m, V v) { _mm512_mask_storeu_pd(p, m, v); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static Mask mask(int n) { return n >= L ? Mask(0xFF) : Mask((1u << (n > 0 ? n : 0)) - 1); }
};

// MR x (NV * L) tile: NV * MR accumulators + NV B vectors + 1 broadcast must fit the 32 zmm registers
// (12 x 2 and 6 x 4 use 27 and 29). Edge tiles use masked loads/stores, so they cost the same as full ones.
template <typename T, int MR_, int NV>
struct Avx512Kernel {
  using X = V512<T>;
  using V = typename X::V;
  static constexpr int L = X::L, MR = MR_, NR = NV * L;
  static_assert(NV * MR + NV + 1 <= 32, "the tile must fit the vector registers");

  template <bool ROWS>
  __attribute__((noinline)) static void run(int64_t kc, const T* ap, int64_t lda, const T* __restrict b, T* c,
                                            int64_t rs, int mr, int nr, T alpha, T beta, bool a_first = false) {
    ASliver<T, MR, ROWS> a(ap, lda);
    V acc[NV][MR];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[v][i] = X::zero();
    // The C tile is touched only after the kc loop: start pulling it in now.
    for (int i = 0; i < mr; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(c + i * rs), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(c + i * rs + nr - 1), _MM_HINT_T0);
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
        for (int v = 0; v < NV; ++v) bv[v] = X::load(b + v * L);
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) {
          const V ai = X::set1(a.at(i));
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) acc[v][i] = X::fma(ai, bv[v], acc[v][i]);
        }
        a.next();
        b += NR;
      }
    }
    const V va = X::set1(alpha);
    typename X::Mask m[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) m[v] = X::mask(nr - v * L);
    if (beta == T(0)) {
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        if (i >= mr) break;
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) X::mask_storeu(c + i * rs + v * L, m[v], X::mul(acc[v][i], va));
      }
    } else {
      const V vb = X::set1(beta);
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        if (i >= mr) break;
        T* ci = c + i * rs;
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v)
          X::mask_storeu(ci + v * L, m[v], X::fma(vb, X::maskz_loadu(m[v], ci + v * L), X::mul(acc[v][i], va)));
      }
    }
  }
};

#endif  // __AVX512F__

#if defined(__AVX2__) && defined(__FMA__)

template <typename T>
struct V256;

template <>
struct V256<float> {
  using V = __m256;
  static constexpr int L = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V load(const float* p) { return _mm256_load_ps(p); }
  static V loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void storeu(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
};

template <>
struct V256<double> {
  using V = __m256d;
  static constexpr int L = 4;
  static V zero() { return _mm256_setzero_pd(); }
  static V set1(double x) { return _mm256_set1_pd(x); }
  static V load(const double* p) { return _mm256_load_pd(p); }
  static V loadu(const double* p) { return _mm256_loadu_pd(p); }
  static void storeu(double* p, V v) { _mm256_storeu_pd(p, v); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
};

// MR x 2L tile in 16 ymm registers (MR = 6: 12 accumulators + 2 B vectors + 1 broadcast). AVX2 has no
// cheap lane masks, so edge tiles go through a small buffer.
template <typename T, int MR_>
struct Avx2Kernel {
  using X = V256<T>;
  using V = typename X::V;
  static constexpr int L = X::L, MR = MR_, NR = 2 * L;

  template <bool ROWS>
  __attribute__((noinline)) static void run(int64_t kc, const T* ap, int64_t lda, const T* __restrict b, T* c,
                                            int64_t rs, int mr, int nr, T alpha, T beta, bool a_first = false) {
    ASliver<T, MR, ROWS> a(ap, lda);
    V acc0[MR], acc1[MR];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = X::zero();
    constexpr int64_t kStep = 64 / sizeof(T);  // as in Avx512Kernel
    for (int64_t k0 = 0; k0 < kc; k0 += kStep) {
      if (a_first) a.prefetch(4 * kStep);
      const int64_t kn = kc - k0 < kStep ? kc - k0 : kStep;
#pragma GCC unroll 4
      for (int64_t k = 0; k < kn; ++k) {
        const V b0 = X::load(b), b1 = X::load(b + L);
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) {
          const V ai = X::set1(a.at(i));
          acc0[i] = X::fma(ai, b0, acc0[i]);
          acc1[i] = X::fma(ai, b1, acc1[i]);
        }
        a.next();
        b += NR;
      }
    }
    const V va = X::set1(alpha);
    if (mr == MR && nr == NR) {
      const V vb = X::set1(beta);
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        T* ci = c + i * rs;
        V r0 = X::mul(acc0[i], va), r1 = X::mul(acc1[i], va);
        if (beta != T(0)) {
          r0 = X::fma(vb, X::loadu(ci), r0);
          r1 = X::fma(vb, X::loadu(ci + L), r1);
        }
        X::storeu(ci, r0);
        X::storeu(ci + L, r1);
      }
      return;
    }
    alignas(32) T tile[MR * NR];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      X::storeu(tile + i * NR, acc0[i]);
      X::storeu(tile + i * NR + L, acc1[i]);
    }
    store_tile_scalar(tile, NR, c, rs, mr, nr, alpha, beta);
  }
};

#endif  // __AVX2__ && __FMA__

// The kernels this build uses for T. RowKernel runs when A is read in place as row panels (row-major
// A): a 6 x 64 tile there measured 6-17% faster than 12 x 32 on the Transformer's shapes (fewer loads
// per FMA: 4 B vectors per broadcast). Interleaved A (packed, or column-major in place) keeps 12 x 32,
// which reads each A line for twice as many columns (6 x 64 was 10-15% slower there).
#if defined(__AVX512F__)
template <typename T>
using Kernel = Avx512Kernel<T, 12, 2>;
template <typename T>
using RowKernel = Avx512Kernel<T, 6, 4>;
#elif defined(__AVX2__) && defined(__FMA__)
template <typename T>
using Kernel = Avx2Kernel<T, 6>;
template <typename T>
using RowKernel = Kernel<T>;
#else
template <typename T>
using Kernel = GenericKernel<T, 4, 16 / sizeof(T) * 2>;
template <typename T>
using RowKernel = Kernel<T>;
#endif

}  // namespace kiln_rt::gemm
