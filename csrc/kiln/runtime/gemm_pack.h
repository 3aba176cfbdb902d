// gemm_pack.h — copies GEMM operand slivers into the contiguous, zero-padded layout micro-kernels read.
//
// A sliver is W "lanes" (rows of A, or columns of B) by kc steps of the reduction dimension, written
// as dst[k * W + lane]. Source element (lane, k) lives at src[lane * lane_stride + k * k_stride], so one
// routine packs A slivers (lanes = rows) and B slivers (lanes = columns) of any layout. Lanes past
// `lanes` are zero so an edge tile computes on zeros instead of garbage. (Row-major and column-major A
// are mostly read in place by the kernels; see gemm.cpp.) Private to the runtime.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace kiln_rt::gemm {

// Any layout, any element type: the compiler vectorizes the contiguous cases well enough.
template <typename T, int W>
inline void pack_sliver_generic(const T* src, int64_t lane_stride, int64_t k_stride, int lanes,
                                int64_t kc, T* __restrict dst) {
  if (lane_stride == 1) {
    for (int64_t k = 0; k < kc; ++k, dst += W) {
      const T* s = src + k * k_stride;
      for (int l = 0; l < lanes; ++l) dst[l] = s[l];
      for (int l = lanes; l < W; ++l) dst[l] = T(0);
    }
    return;
  }
  for (int l = 0; l < lanes; ++l) {
    const T* s = src + l * lane_stride;
    for (int64_t k = 0; k < kc; ++k) dst[k * W + l] = s[k * k_stride];
  }
  for (int l = lanes; l < W; ++l)
    for (int64_t k = 0; k < kc; ++k) dst[k * W + l] = T(0);
}

#if defined(__AVX512F__)

inline __mmask16 lane_mask16(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n > 0 ? n : 0)) - 1);
}

// Index vectors for transpose16x16: stage b swaps bit b of the row index with bit b of the column
// index across row pairs (r, r | 2^b); after the four stages every bit has been swapped.
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

// In-register transpose of a 16x16 float block: r[i] holds row i on entry and column i on exit.
// 64 vpermt2ps, one per output half of each row pair and stage.
__attribute__((always_inline)) inline void transpose16x16(__m512 r[16]) {
#pragma GCC unroll 4
  for (int bit = 0; bit < 4; ++bit) {
    const int s = 1 << bit;
    const __m512i lo = _mm512_load_si512(kTransposeIndex.lo[bit]);
    const __m512i hi = _mm512_load_si512(kTransposeIndex.hi[bit]);
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) {
      if (i & s) continue;
      const __m512 a = r[i], b = r[i | s];
      r[i] = _mm512_permutex2var_ps(a, lo, b);
      r[i | s] = _mm512_permutex2var_ps(a, hi, b);
    }
  }
}

// float slivers with AVX-512: straight vector copies when lanes are contiguous, 16x16 register
// transposes when the reduction dimension is contiguous (column-major B, as in x @ W^T).
template <int W>
__attribute__((noinline)) void pack_sliver_f32(const float* src, int64_t lane_stride, int64_t k_stride, int lanes,
                                               int64_t kc, float* __restrict dst) {
  static_assert(W % 4 == 0, "sliver width must keep rows 16-byte aligned");
  constexpr int G = (W + 15) / 16;  // groups of 16 lanes
  if (lane_stride == 1) {
    __mmask16 m[G];
    for (int g = 0; g < G; ++g) m[g] = lane_mask16(lanes - 16 * g);
    const __mmask16 wmask = lane_mask16(W - 16 * (G - 1));  // lanes of the last group inside W
    for (int64_t k = 0; k < kc; ++k, dst += W) {
      const float* s = src + k * k_stride;
      for (int g = 0; g < G; ++g) {
        const __m512 v = _mm512_maskz_loadu_ps(m[g], s + 16 * g);
        if (g + 1 < G || W % 16 == 0)
          _mm512_storeu_ps(dst + 16 * g, v);
        else
          _mm512_mask_storeu_ps(dst + 16 * g, wmask, v);
      }
    }
    return;
  }
  if (k_stride == 1) {
    for (int g = 0; g < G; ++g) {
      const int glanes = lanes - 16 * g;  // may be <= 0: the group is all padding
      const __mmask16 wmask = lane_mask16(W - 16 * g);
      for (int64_t k0 = 0; k0 < kc; k0 += 16) {
        const int64_t kn = kc - k0 < 16 ? kc - k0 : 16;
        const __mmask16 km = lane_mask16(kn);
        __m512 r[16];
#pragma GCC unroll 16
        for (int l = 0; l < 16; ++l)
          r[l] = l < glanes ? _mm512_maskz_loadu_ps(km, src + (16 * g + l) * lane_stride + k0)
                            : _mm512_setzero_ps();
        transpose16x16(r);
        float* d = dst + k0 * W + 16 * g;
        if (kn == 16) {
#pragma GCC unroll 16
          for (int kk = 0; kk < 16; ++kk) _mm512_mask_storeu_ps(d + kk * W, wmask, r[kk]);
        } else {
#pragma GCC unroll 16
          for (int kk = 0; kk < 16; ++kk)
            if (kk < kn) _mm512_mask_storeu_ps(d + kk * W, wmask, r[kk]);
        }
      }
    }
    return;
  }
  pack_sliver_generic<float, W>(src, lane_stride, k_stride, lanes, kc, dst);
}

#endif  // __AVX512F__

// Row-panel A sliver: row i of the sliver is copied to dst[i * ld + 0 : kc]; rows past `rows` are
// zero. For the partial last sliver of row-major A, whose full slivers the kernels read in place.
template <typename T, int MR>
inline void pack_rows(const T* src, int64_t rs, int rows, int64_t kc, T* __restrict dst, int64_t ld) {
  for (int i = 0; i < rows; ++i) std::memcpy(dst + i * ld, src + i * rs, sizeof(T) * kc);
  for (int i = rows; i < MR; ++i) std::memset(dst + i * ld, 0, sizeof(T) * kc);
}

// The packer a kernel uses: the AVX-512 float fast paths where available, the generic one otherwise.
template <typename T, int W>
inline void pack_sliver(const T* src, int64_t lane_stride, int64_t k_stride, int lanes, int64_t kc, T* dst) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float> && W % 4 == 0) {
    pack_sliver_f32<W>(src, lane_stride, k_stride, lanes, kc, dst);
    return;
  }
#endif
  pack_sliver_generic<T, W>(src, lane_stride, k_stride, lanes, kc, dst);
}

// Packs `lanes` lanes (any count) as consecutive W-lane slivers of kc steps each: sliver s at
// dst + s * W * kc. When lanes are contiguous but steps far apart (column-major A, row-major B), each
// step of a sliver sits on its own line, often its own page, where the hardware prefetcher does not
// follow; walking 16 steps of every sliver at a time reads each step's lanes front to back instead.
template <typename T, int W>
inline void pack_panel(const T* src, int64_t lane_stride, int64_t k_stride, int64_t lanes, int64_t kc, T* dst) {
  const int64_t slivers = (lanes + W - 1) / W;
  auto lanes_of = [&](int64_t s) { return static_cast<int>(lanes - s * W < W ? lanes - s * W : W); };
  if (lane_stride == 1 && k_stride != 1 && slivers > 1) {
    for (int64_t k0 = 0; k0 < kc; k0 += 16) {
      const int64_t kn = kc - k0 < 16 ? kc - k0 : 16;
      for (int64_t s = 0; s < slivers; ++s)
        pack_sliver<T, W>(src + s * W + k0 * k_stride, 1, k_stride, lanes_of(s), kn, dst + s * W * kc + k0 * W);
    }
    return;
  }
  for (int64_t s = 0; s < slivers; ++s)
    pack_sliver<T, W>(src + s * W * lane_stride, lane_stride, k_stride, lanes_of(s), kc, dst + s * W * kc);
}

}  // namespace kiln_rt::gemm
