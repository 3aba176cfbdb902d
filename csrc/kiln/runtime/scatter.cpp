// scatter.cpp — kiln_index_add_rows: deterministic row scatter-add (embedding backward, index_add).
//
// Threads split the columns, never the rows: each thread owns a range of whole cache lines of every
// output row and adds the source rows into it in index order, so the sums are bit-identical to a
// sequential loop for any thread count, and no two threads write the same cache line.
#include "kiln/runtime/kiln_runtime.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>

namespace {

constexpr int64_t kLineBytes = 64;
// Below about this many element updates a thread costs more to wake than it saves.
constexpr int64_t kMinWorkPerThread = 1 << 15;

template <typename T>
struct ScatterArgs {
  T* out;
  int64_t rows, d, out_rs;
  const void* idx;
  bool idx_is_i64;
  int64_t n;
  const T* src;
  int64_t src_rs;
  int64_t padding_idx;
  bool has_padding;  // padding_idx names a real row; otherwise nothing is padding
  int64_t cols_per_block;
  std::atomic<int64_t> bad;
};

inline int64_t index_at(const void* idx, bool is_i64, int64_t i) {
  return is_i64 ? static_cast<const int64_t*>(idx)[i] : static_cast<const int32_t*>(idx)[i];
}

template <typename T>
void scatter_columns(ScatterArgs<T>& a, int64_t c0, int64_t c1) {
  const int64_t w = c1 - c0;
  for (int64_t r = 0; r < a.rows; ++r) std::memset(a.out + r * a.out_rs + c0, 0, sizeof(T) * w);
  int64_t bad = 0;
  for (int64_t i = 0; i < a.n; ++i) {
    const int64_t row = index_at(a.idx, a.idx_is_i64, i);
    if (a.has_padding && row == a.padding_idx) continue;
    if (row < 0 || row >= a.rows) {
      ++bad;
      continue;
    }
    T* __restrict dst = a.out + row * a.out_rs + c0;
    const T* __restrict s = a.src + i * a.src_rs + c0;
    for (int64_t c = 0; c < w; ++c) dst[c] += s[c];
  }
  // Every column range sees every index; only the first range reports the count.
  if (c0 == 0) a.bad.store(bad, std::memory_order_relaxed);
}

template <typename T>
void scatter_range(void* ctx, int64_t b, int64_t e) {
  auto& a = *static_cast<ScatterArgs<T>*>(ctx);
  scatter_columns(a, b * a.cols_per_block, std::min(a.d, e * a.cols_per_block));
}

template <typename T>
int64_t index_add_rows(T* out, int64_t rows, int64_t d, int64_t out_rs, const void* idx, int idx_is_i64, int64_t n,
                       const T* src, int64_t src_rs, int64_t padding_idx) {
  ScatterArgs<T> a{
      out, rows, d, out_rs, idx, idx_is_i64 != 0, n, src, src_rs, padding_idx, padding_idx >= 0 && padding_idx < rows,
      0,   {0}};
  if (d <= 0) {  // nothing to add, but out-of-range indices still count
    int64_t bad = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t row = index_at(idx, a.idx_is_i64, i);
      if (!(a.has_padding && row == padding_idx) && (row < 0 || row >= rows)) ++bad;
    }
    return bad;
  }
  a.cols_per_block = kLineBytes / static_cast<int64_t>(sizeof(T));
  const int64_t blocks = (d + a.cols_per_block - 1) / a.cols_per_block;
  const int64_t work_per_block = std::max<int64_t>(1, (n + rows) * a.cols_per_block);
  const int64_t grain = std::max<int64_t>(1, kMinWorkPerThread / work_per_block);
  kiln_parallel_for(0, blocks, grain, scatter_range<T>, &a);
  return a.bad.load(std::memory_order_relaxed);
}

}  // namespace

extern "C" {

int64_t kiln_index_add_rows_f32(float* out, int64_t rows, int64_t d, int64_t out_rs, const void* idx, int idx_is_i64,
                                int64_t n, const float* src, int64_t src_rs, int64_t padding_idx) {
  return index_add_rows(out, rows, d, out_rs, idx, idx_is_i64, n, src, src_rs, padding_idx);
}

int64_t kiln_index_add_rows_f64(double* out, int64_t rows, int64_t d, int64_t out_rs, const void* idx, int idx_is_i64,
                                int64_t n, const double* src, int64_t src_rs, int64_t padding_idx) {
  return index_add_rows(out, rows, d, out_rs, idx, idx_is_i64, n, src, src_rs, padding_idx);
}

}  // extern "C"
