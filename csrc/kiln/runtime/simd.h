// simd.h — the runtime's one SIMD layer: Vec<T> for the ISA level this translation unit is built for.
//
// The runtime's kernels (GEMM, attention, packing) are compiled once per ISA level, each build in its
// own library with its own -march (see CMakeLists.txt), and written against Vec<T> only: this file is
// the one place that asks which instructions exist. Vec<T>::V is a GCC vector of the level's full
// width (16, 32 or 64 bytes), so + - * / and comparisons are plain operators; what operators cannot
// say (fused multiply-add, partial loads and stores, reductions, in-register transposes) are static
// functions with one body per level, in the shape of ATen's Vectorized<T> and ggml's simd mappings.
// Private to the runtime.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace kiln_rt::simd {

// What this build targets: vector width and the number of architectural vector registers, which
// bound every register tile (accumulators + operands must fit, or the kernel spills).
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__)
#define KILN_SIMD_AVX512 1
inline constexpr int kVectorBytes = 64;
inline constexpr int kVectorRegisters = 32;
inline constexpr const char* kLevelName = "avx512";
#elif defined(__AVX2__) && defined(__FMA__)
#define KILN_SIMD_AVX2 1
inline constexpr int kVectorBytes = 32;
inline constexpr int kVectorRegisters = 16;
inline constexpr const char* kLevelName = "avx2";
#else
#define KILN_SIMD_SSE 1
inline constexpr int kVectorBytes = 16;
inline constexpr int kVectorRegisters = 16;
inline constexpr const char* kLevelName = "baseline";
#endif

template <typename T>
struct Vec {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "Vec holds float or double");
  static constexpr int L = kVectorBytes / static_cast<int>(sizeof(T));
  // Element alignment only: loads through it may be unaligned.
  typedef T V __attribute__((vector_size(kVectorBytes), aligned(sizeof(T))));
  using I = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  typedef I VI __attribute__((vector_size(kVectorBytes)));

  static V zero() { return V{}; }
  // Broadcast, unaligned load and store: intrinsics per level (`V{} + x` would cost an add, as
  // 0 + -0 is not -0, and GCC splits memcpy through a vector of element alignment).
  static V set1(T x);
  static V loadu(const T* p);
  static void storeu(T* p, V v);
  static V lane_indices() {  // {0, 1, ..., L - 1}: lane compares mask by position
    V v;
    for (int i = 0; i < L; ++i) v[i] = T(i);
    return v;
  }
  // c ? a : b per lane, c from a comparison of two V.
  static V select(VI c, V a, V b) { return c ? a : b; }
  static V max(V a, V b) { return a > b ? a : b; }  // b where either is NaN: callers keep NaN in a

  // a * b + c with one rounding (two on the baseline, which has no FMA instruction).
  static V fma(V a, V b, V c);
  // Lanes [0, n) from p, zero above; lanes past n are not touched (no fault past the end).
  static V load_first(const T* p, int n);
  // Stores lanes [0, n) of v to p; memory past p + n is not touched.
  static void store_first(T* p, int n, V v);
  static T hsum(V v);
  static T hmax(V v);
  // r[i] holds row i of an L x L block on entry and column i on exit.
  static void transpose(V r[L]);
};

// ---- portable bodies: reductions, partial loads and stores, transposes through memory ---------
// Used where a level has no faster form; every level shares their semantics.
namespace portable {
template <typename T, typename V, int L>
inline T hsum(V v) {
  // Pairwise, as the vector forms below add: halves, then quarters, ...
  for (int w = L / 2; w > 0; w /= 2)
    for (int i = 0; i < w; ++i) v[i] = v[i] + v[i + w];
  return v[0];
}
template <typename T, typename V, int L>
inline T hmax(V v) {
  T r = v[0];
  for (int i = 1; i < L; ++i) r = v[i] > r ? v[i] : r;
  return r;
}
template <typename T, typename V, int L>
inline V load_first(const T* p, int n) {
  V v{};
  for (int i = 0; i < L && i < n; ++i) v[i] = p[i];
  return v;
}
template <typename T, typename V, int L>
inline void store_first(T* p, int n, V v) {
  for (int i = 0; i < L && i < n; ++i) p[i] = v[i];
}
template <typename T, typename V, int L>
inline void transpose(V r[L]) {
  for (int i = 0; i < L; ++i)
    for (int j = i + 1; j < L; ++j) {
      const T x = r[i][j];
      r[i][j] = r[j][i];
      r[j][i] = x;
    }
}
}  // namespace portable

#if defined(KILN_SIMD_AVX512)

inline __mmask16 mask16(int n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n > 0 ? n : 0)) - 1); }
inline __mmask8 mask8(int n) { return n >= 8 ? __mmask8(0xFF) : __mmask8((1u << (n > 0 ? n : 0)) - 1); }

// Index vectors for the 16x16 float transpose: stage b swaps bit b of the row index with bit b of the
// column index across row pairs (r, r | 2^b); after the four stages every bit has been swapped.
struct TransposeIndex {
  alignas(64) int32_t lo[4][16];  // low row keeps its bit-clear columns, takes the high row's
  alignas(64) int32_t hi[4][16];  // high row takes the low row's bit-set columns, keeps its own
};
constexpr TransposeIndex make_transpose_index() {
  TransposeIndex t{};
  for (int bit = 0; bit < 4; ++bit)
    for (int c = 0; c < 16; ++c) {
      const int s = 1 << bit;
      t.lo[bit][c] = (c & s) ? 16 + c - s : c;
      t.hi[bit][c] = (c & s) ? 16 + c : c + s;
    }
  return t;
}
inline constexpr TransposeIndex kTransposeIndex = make_transpose_index();

template <>
inline Vec<float>::V Vec<float>::set1(float x) {
  return (V)_mm512_set1_ps(x);
}
template <>
inline Vec<double>::V Vec<double>::set1(double x) {
  return (V)_mm512_set1_pd(x);
}
template <>
inline Vec<float>::V Vec<float>::loadu(const float* p) {
  return (V)_mm512_loadu_ps(p);
}
template <>
inline Vec<double>::V Vec<double>::loadu(const double* p) {
  return (V)_mm512_loadu_pd(p);
}
template <>
inline void Vec<float>::storeu(float* p, V v) {
  _mm512_storeu_ps(p, (__m512)v);
}
template <>
inline void Vec<double>::storeu(double* p, V v) {
  _mm512_storeu_pd(p, (__m512d)v);
}
template <>
inline Vec<float>::V Vec<float>::fma(V a, V b, V c) {
  return (V)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
}
template <>
inline Vec<double>::V Vec<double>::fma(V a, V b, V c) {
  return (V)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
}
template <>
inline Vec<float>::V Vec<float>::load_first(const float* p, int n) {
  return (V)_mm512_maskz_loadu_ps(mask16(n), p);
}
template <>
inline Vec<double>::V Vec<double>::load_first(const double* p, int n) {
  return (V)_mm512_maskz_loadu_pd(mask8(n), p);
}
template <>
inline void Vec<float>::store_first(float* p, int n, V v) {
  _mm512_mask_storeu_ps(p, mask16(n), (__m512)v);
}
template <>
inline void Vec<double>::store_first(double* p, int n, V v) {
  _mm512_mask_storeu_pd(p, mask8(n), (__m512d)v);
}
template <>
inline float Vec<float>::hsum(V v) {
  return _mm512_reduce_add_ps((__m512)v);
}
template <>
inline double Vec<double>::hsum(V v) {
  return _mm512_reduce_add_pd((__m512d)v);
}
template <>
inline float Vec<float>::hmax(V v) {
  return _mm512_reduce_max_ps((__m512)v);
}
template <>
inline double Vec<double>::hmax(V v) {
  return _mm512_reduce_max_pd((__m512d)v);
}
// 64 vpermt2ps, one per output half of each row pair and stage.
template <>
__attribute__((always_inline)) inline void Vec<float>::transpose(V r[16]) {
#pragma GCC unroll 4
  for (int bit = 0; bit < 4; ++bit) {
    const int s = 1 << bit;
    const __m512i lo = _mm512_load_si512(kTransposeIndex.lo[bit]);
    const __m512i hi = _mm512_load_si512(kTransposeIndex.hi[bit]);
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) {
      if (i & s) continue;
      const __m512 a = (__m512)r[i], b = (__m512)r[i | s];
      r[i] = (V)_mm512_permutex2var_ps(a, lo, b);
      r[i | s] = (V)_mm512_permutex2var_ps(a, hi, b);
    }
  }
}
template <>
inline void Vec<double>::transpose(V r[8]) {
  portable::transpose<double, V, 8>(r);
}

#elif defined(KILN_SIMD_AVX2)

// Lane masks for vmaskmov: lane i is set iff i < n.
inline __m256i mask_i32(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline __m256i mask_i64(int n) { return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3)); }

template <>
inline Vec<float>::V Vec<float>::set1(float x) {
  return (V)_mm256_set1_ps(x);
}
template <>
inline Vec<double>::V Vec<double>::set1(double x) {
  return (V)_mm256_set1_pd(x);
}
template <>
inline Vec<float>::V Vec<float>::loadu(const float* p) {
  return (V)_mm256_loadu_ps(p);
}
template <>
inline Vec<double>::V Vec<double>::loadu(const double* p) {
  return (V)_mm256_loadu_pd(p);
}
template <>
inline void Vec<float>::storeu(float* p, V v) {
  _mm256_storeu_ps(p, (__m256)v);
}
template <>
inline void Vec<double>::storeu(double* p, V v) {
  _mm256_storeu_pd(p, (__m256d)v);
}
template <>
inline Vec<float>::V Vec<float>::fma(V a, V b, V c) {
  return (V)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
}
template <>
inline Vec<double>::V Vec<double>::fma(V a, V b, V c) {
  return (V)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
}
template <>
inline Vec<float>::V Vec<float>::load_first(const float* p, int n) {
  return (V)_mm256_maskload_ps(p, mask_i32(n));
}
template <>
inline Vec<double>::V Vec<double>::load_first(const double* p, int n) {
  return (V)_mm256_maskload_pd(p, mask_i64(n));
}
template <>
inline void Vec<float>::store_first(float* p, int n, V v) {
  _mm256_maskstore_ps(p, mask_i32(n), (__m256)v);
}
template <>
inline void Vec<double>::store_first(double* p, int n, V v) {
  _mm256_maskstore_pd(p, mask_i64(n), (__m256d)v);
}
template <>
inline float Vec<float>::hsum(V v) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128((__m256)v), _mm256_extractf128_ps((__m256)v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}
template <>
inline double Vec<double>::hsum(V v) {
  __m128d x = _mm_add_pd(_mm256_castpd256_pd128((__m256d)v), _mm256_extractf128_pd((__m256d)v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(x, _mm_unpackhi_pd(x, x)));
}
template <>
inline float Vec<float>::hmax(V v) {
  return portable::hmax<float, V, 8>(v);
}
template <>
inline double Vec<double>::hmax(V v) {
  return portable::hmax<double, V, 4>(v);
}
// 8x8: unpack pairs, shuffle quads, swap 128-bit halves (24 shuffles).
template <>
__attribute__((always_inline)) inline void Vec<float>::transpose(V r[8]) {
  __m256 t[8], u[8];
#pragma GCC unroll 4
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps((__m256)r[i], (__m256)r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps((__m256)r[i], (__m256)r[i + 1]);
  }
#pragma GCC unroll 2
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    r[i] = (V)_mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = (V)_mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}
template <>
inline void Vec<double>::transpose(V r[4]) {
  portable::transpose<double, V, 4>(r);
}

#else  // baseline: SSE (x86-64-v2), or anything GCC vectors run on

template <>
inline Vec<float>::V Vec<float>::set1(float x) {
  return (V)_mm_set1_ps(x);
}
template <>
inline Vec<double>::V Vec<double>::set1(double x) {
  return (V)_mm_set1_pd(x);
}
template <>
inline Vec<float>::V Vec<float>::loadu(const float* p) {
  return (V)_mm_loadu_ps(p);
}
template <>
inline Vec<double>::V Vec<double>::loadu(const double* p) {
  return (V)_mm_loadu_pd(p);
}
template <>
inline void Vec<float>::storeu(float* p, V v) {
  _mm_storeu_ps(p, (__m128)v);
}
template <>
inline void Vec<double>::storeu(double* p, V v) {
  _mm_storeu_pd(p, (__m128d)v);
}
template <typename T>
inline typename Vec<T>::V Vec<T>::fma(V a, V b, V c) {
  return a * b + c;  // no FMA instruction at this level; -ffp-contract=off keeps it two roundings
}
template <typename T>
inline typename Vec<T>::V Vec<T>::load_first(const T* p, int n) {
  return portable::load_first<T, V, L>(p, n);
}
template <typename T>
inline void Vec<T>::store_first(T* p, int n, V v) {
  portable::store_first<T, V, L>(p, n, v);
}
template <typename T>
inline T Vec<T>::hsum(V v) {
  return portable::hsum<T, V, L>(v);
}
template <typename T>
inline T Vec<T>::hmax(V v) {
  return portable::hmax<T, V, L>(v);
}
template <>
inline void Vec<float>::transpose(V r[4]) {
  __m128 a = (__m128)r[0], b = (__m128)r[1], c = (__m128)r[2], d = (__m128)r[3];
  _MM_TRANSPOSE4_PS(a, b, c, d);
  r[0] = (V)a, r[1] = (V)b, r[2] = (V)c, r[3] = (V)d;
}
template <>
inline void Vec<double>::transpose(V r[2]) {
  portable::transpose<double, V, 2>(r);
}

#endif

}  // namespace kiln_rt::simd
