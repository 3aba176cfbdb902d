// runtime_scatter_test.cpp — kiln_index_add_rows against a sequential loop; kiln_set/last_error.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kiln/runtime/kiln_runtime.h"

namespace {

struct ThreadCountGuard {
  int saved = kiln_get_num_threads();
  ~ThreadCountGuard() { kiln_set_num_threads(saved); }
};

template <typename T, typename I>
void check_scatter(int64_t rows, int64_t d, int64_t n, int64_t out_pad, int64_t src_pad, int64_t padding_idx,
                   bool with_bad) {
  std::mt19937 rng(static_cast<uint32_t>(rows * 31 + d * 7 + n));
  const int64_t out_rs = d + out_pad, src_rs = d + src_pad;
  std::vector<T> src(static_cast<size_t>(std::max<int64_t>(n * src_rs, 1)));
  std::uniform_real_distribution<double> dist(-1, 1);
  for (auto& x : src) x = T(dist(rng));
  std::vector<I> idx(static_cast<size_t>(n));
  std::uniform_int_distribution<int64_t> pick(0, std::max<int64_t>(rows - 1, 0));
  int64_t want_bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    int64_t v = rows > 0 ? pick(rng) : 0;
    if (with_bad && i % 13 == 5) v = (i % 2) ? -1 - i : rows + i;  // out of range both ways
    if (rows == 0) v = i;                                          // every index is out of range
    idx[static_cast<size_t>(i)] = static_cast<I>(v);
  }
  // The sequential loop the header describes (a padding_idx outside [0, rows) pads nothing).
  const T sentinel = T(12345);
  std::vector<T> want(static_cast<size_t>(std::max<int64_t>(rows * out_rs, 1)), sentinel);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < d; ++c) want[static_cast<size_t>(r * out_rs + c)] = T(0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t row = idx[static_cast<size_t>(i)];
    if (row == padding_idx && padding_idx >= 0 && padding_idx < rows) continue;
    if (row < 0 || row >= rows) {
      ++want_bad;
      continue;
    }
    for (int64_t c = 0; c < d; ++c)
      want[static_cast<size_t>(row * out_rs + c)] += src[static_cast<size_t>(i * src_rs + c)];
  }
  std::vector<T> out(want.size(), sentinel);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < d; ++c) out[static_cast<size_t>(r * out_rs + c)] = T(-777);  // must be overwritten
  int64_t bad;
  if constexpr (std::is_same_v<T, float>)
    bad = kiln_index_add_rows_f32(out.data(), rows, d, out_rs, idx.data(), sizeof(I) == 8, n, src.data(), src_rs,
                                  padding_idx);
  else
    bad = kiln_index_add_rows_f64(out.data(), rows, d, out_rs, idx.data(), sizeof(I) == 8, n, src.data(), src_rs,
                                  padding_idx);
  EXPECT_EQ(bad, want_bad);
  // Bit-identical: same additions in the same order as the sequential loop; padding untouched.
  ASSERT_EQ(0, std::memcmp(out.data(), want.data(), out.size() * sizeof(T)))
      << "rows " << rows << " d " << d << " n " << n;
}

TEST(RuntimeScatter, MatchesSequentialLoop) {
  ThreadCountGuard guard;
  for (int threads : {1, 2, 3}) {
    kiln_set_num_threads(threads);
    for (int64_t d : {1, 5, 16, 17, 100, 1000})
      for (int64_t n : {0, 1, 7, 300}) {
        check_scatter<float, int64_t>(50, d, n, 0, 0, -1, false);
        check_scatter<float, int32_t>(50, d, n, 3, 9, 4, true);
        check_scatter<double, int64_t>(17, d, n, 1, 0, 0, true);
        check_scatter<double, int32_t>(17, d, n, 0, 2, -1, false);
      }
  }
}

TEST(RuntimeScatter, LargeParallelCase) {
  ThreadCountGuard guard;
  kiln_set_num_threads(2);
  check_scatter<float, int64_t>(1000, 768, 4096, 0, 0, 0, true);
  check_scatter<double, int32_t>(300, 257, 2000, 5, 3, 299, false);
}

TEST(RuntimeScatter, CountsBadIndicesWithoutColumns) {
  check_scatter<float, int64_t>(10, 0, 50, 0, 0, -1, true);
  check_scatter<float, int64_t>(0, 8, 20, 0, 0, -1, false);  // no rows: every index is bad
}

TEST(RuntimeScatter, PaddingRowStaysZero) {
  const int64_t idx[] = {2, 0, 2, 1};
  const float src[] = {1, 1, 2, 2, 3, 3, 4, 4};
  float out[6] = {9, 9, 9, 9, 9, 9};
  EXPECT_EQ(kiln_index_add_rows_f32(out, 3, 2, 2, idx, 1, 4, src, 2, 2), 0);
  const float want[6] = {2, 2, 4, 4, 0, 0};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(out[i], want[i]) << i;
}

TEST(RuntimeError, SetAndReadBackPerThread) {
  kiln_set_error("index 7 is out of range for dimension 0 with size 3");
  EXPECT_STREQ(kiln_last_error(), "index 7 is out of range for dimension 0 with size 3");
  std::string other;
  std::thread t([&other] { other = kiln_last_error(); });
  t.join();
  EXPECT_EQ(other, "");  // each thread has its own message
  kiln_set_error(nullptr);
  EXPECT_STREQ(kiln_last_error(), "");
}

}  // namespace
