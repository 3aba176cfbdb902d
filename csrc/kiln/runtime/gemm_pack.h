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

#include "kiln/runtime/simd.h"

namespace kiln_rt::gemm {

// Any layout, any element type: the compiler vectorizes the contiguous cases well enough.
template <typename T, int W>
inline void pack_sliver_generic(const T* src, int64_t lane_stride, int64_t k_stride, int lanes, int64_t kc,
                                T* __restrict dst) {
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

// Slivers in vectors of the build's ISA level: straight vector copies when lanes are contiguous,
// L x L register transposes when the reduction dimension is contiguous (column-major B, as in
// x @ W^T). Partial groups of lanes and steps go through the level's masked loads and stores.
template <typename T, int W>
__attribute__((noinline)) void pack_sliver_vec(const T* src, int64_t lane_stride, int64_t k_stride, int lanes,
                                               int64_t kc, T* __restrict dst) {
  using X = simd::Vec<T>;
  using V = typename X::V;
  constexpr int L = X::L;
  constexpr int G = (W + L - 1) / L;   // groups of L lanes
  constexpr int WL = W - L * (G - 1);  // lanes of the last group inside W
  if (lane_stride == 1) {
    for (int64_t k = 0; k < kc; ++k, dst += W) {
      const T* s = src + k * k_stride;
#pragma GCC unroll 8
      for (int g = 0; g < G; ++g) {
        const V v = lanes >= L * (g + 1) ? X::loadu(s + L * g) : X::load_first(s + L * g, lanes - L * g);
        if (g + 1 < G || WL == L)
          X::storeu(dst + L * g, v);
        else
          X::store_first(dst + L * g, WL, v);
      }
    }
    return;
  }
  if (k_stride == 1) {
    for (int g = 0; g < G; ++g) {
      const int glanes = lanes - L * g;  // may be <= 0: the group is all padding
      const int wn = g + 1 < G ? L : WL;
      for (int64_t k0 = 0; k0 < kc; k0 += L) {
        const int kn = kc - k0 < L ? static_cast<int>(kc - k0) : L;
        V r[L];
#pragma GCC unroll 16
        for (int l = 0; l < L; ++l) {
          const T* s = src + (L * g + l) * lane_stride + k0;
          r[l] = l >= glanes ? X::zero() : kn == L ? X::loadu(s) : X::load_first(s, kn);
        }
        X::transpose(r);
        T* d = dst + k0 * W + L * g;
#pragma GCC unroll 16
        for (int kk = 0; kk < L; ++kk) {
          if (kk >= kn) break;
          if (wn == L)
            X::storeu(d + kk * W, r[kk]);
          else
            X::store_first(d + kk * W, wn, r[kk]);
        }
      }
    }
    return;
  }
  pack_sliver_generic<T, W>(src, lane_stride, k_stride, lanes, kc, dst);
}

// Row-panel A sliver: row i of the sliver is copied to dst[i * ld + 0 : kc]; rows past `rows` are
// zero. For the partial last sliver of row-major A, whose full slivers the kernels read in place.
template <typename T, int MR>
inline void pack_rows(const T* src, int64_t rs, int rows, int64_t kc, T* __restrict dst, int64_t ld) {
  for (int i = 0; i < rows; ++i) std::memcpy(dst + i * ld, src + i * rs, sizeof(T) * kc);
  for (int i = rows; i < MR; ++i) std::memset(dst + i * ld, 0, sizeof(T) * kc);
}

// The packer a kernel uses.
template <typename T, int W>
inline void pack_sliver(const T* src, int64_t lane_stride, int64_t k_stride, int lanes, int64_t kc, T* dst) {
  pack_sliver_vec<T, W>(src, lane_stride, k_stride, lanes, kc, dst);
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
