// runtime_gemm_group_test.cpp — kiln_gemm_group_f32/f64 (sibling products sharing A) against
// separate kiln_gemm calls and a double-precision reference.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kiln/runtime/kiln_runtime.h"

namespace {

struct ThreadCountGuard {
  int saved = kiln_get_num_threads();
  ~ThreadCountGuard() { kiln_set_num_threads(saved); }
};

struct Case {
  int64_t parts, m, n, k;
  bool b_col_major;  // B_p = W_p^T with W_p [n, k] row-major, as x @ W^T
};

struct Rows {
  std::vector<std::atomic<int>> seen;
  explicit Rows(int64_t m) : seen(static_cast<size_t>(m)) {}
};
void count_rows(void* ctx, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) static_cast<Rows*>(ctx)->seen[static_cast<size_t>(r)].fetch_add(1);
}

// Every `stride`-th row of one part's m x n result (row-major) within rounding of the double product
// of A and B given as strided views.
template <typename T>
void expect_near_product(const Case& cs, int64_t part, const T* got, const T* a, int64_t a_rs, int64_t a_cs, const T* b,
                         int64_t b_rs, int64_t b_cs, int64_t stride) {
  const double tol = (std::is_same_v<T, float> ? 4e-6 : 1e-13) * double(cs.k + 2);
  for (int64_t i = 0; i < cs.m; i += stride)
    for (int64_t j = 0; j < cs.n; ++j) {
      double s = 0;
      for (int64_t q = 0; q < cs.k; ++q) s += double(a[i * a_rs + q * a_cs]) * double(b[q * b_rs + j * b_cs]);
      ASSERT_NEAR(got[i * cs.n + j], s, tol) << "part " << part << " at " << i << "," << j;
    }
}

template <typename T>
int group_call(const Case& cs, const T* a, const std::vector<const T*>& b, int64_t b_rs, int64_t b_cs,
               const std::vector<T*>& c, Rows* rows) {
  if constexpr (std::is_same_v<T, float>)
    return kiln_gemm_group_f32(cs.parts, cs.m, cs.n, cs.k, a, cs.k, 1, b.data(), b_rs, b_cs, c.data(), cs.n, 1, 0,
                               rows ? count_rows : nullptr, rows);
  else
    return kiln_gemm_group_f64(cs.parts, cs.m, cs.n, cs.k, a, cs.k, 1, b.data(), b_rs, b_cs, c.data(), cs.n, 1,
                               rows ? count_rows : nullptr, rows);
}

template <typename T>
void one_call(const Case& cs, const T* a, const T* b, int64_t b_rs, int64_t b_cs, T* c) {
  if constexpr (std::is_same_v<T, float>)
    kiln_gemm_f32(1, cs.m, cs.n, cs.k, 1.f, a, 0, cs.k, 1, b, 0, b_rs, b_cs, 0.f, c, 0, cs.n, 1, 0, nullptr, nullptr);
  else
    kiln_gemm_f64(1, cs.m, cs.n, cs.k, 1.0, a, 0, cs.k, 1, b, 0, b_rs, b_cs, 0.0, c, 0, cs.n, 1, nullptr, nullptr);
}

// Every part equals its own kiln_gemm call bit for bit, is within rounding of the double product, and
// rows_done saw each row once when the call says it ran the epilogue (never otherwise).
template <typename T>
void check_group(const Case& cs) {
  std::mt19937 rng(static_cast<uint32_t>(cs.parts * 7919 + cs.m * 101 + cs.n * 11 + cs.k));
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<T> a(static_cast<size_t>(cs.m * cs.k));
  for (auto& x : a) x = static_cast<T>(dist(rng));
  // Parts live in separate allocations (as separate weights do), not at a common stride.
  std::vector<std::vector<T>> bs, cs_group, cs_alone;
  std::vector<const T*> b_ptrs;
  std::vector<T*> c_ptrs;
  for (int64_t p = 0; p < cs.parts; ++p) {
    bs.emplace_back(static_cast<size_t>(cs.k * cs.n + p));
    for (auto& x : bs.back()) x = static_cast<T>(dist(rng));
    cs_group.emplace_back(static_cast<size_t>(cs.m * cs.n), T(-7));
    cs_alone.emplace_back(static_cast<size_t>(cs.m * cs.n), T(-7));
  }
  for (int64_t p = 0; p < cs.parts; ++p) {
    b_ptrs.push_back(bs[static_cast<size_t>(p)].data() + p);  // odd offsets: no common alignment
    c_ptrs.push_back(cs_group[static_cast<size_t>(p)].data());
  }
  const int64_t b_rs = cs.b_col_major ? 1 : cs.n, b_cs = cs.b_col_major ? cs.k : 1;
  Rows rows(cs.m);
  const int reported = group_call<T>(cs, a.data(), b_ptrs, b_rs, b_cs, c_ptrs, &rows);
  for (int64_t r = 0; r < cs.m; ++r) ASSERT_EQ(rows.seen[static_cast<size_t>(r)].load(), reported) << "row " << r;
  for (int64_t p = 0; p < cs.parts; ++p) {
    one_call<T>(cs, a.data(), b_ptrs[static_cast<size_t>(p)], b_rs, b_cs, cs_alone[static_cast<size_t>(p)].data());
    const auto& got = cs_group[static_cast<size_t>(p)];
    ASSERT_EQ(0, std::memcmp(got.data(), cs_alone[static_cast<size_t>(p)].data(), got.size() * sizeof(T)))
        << "part " << p << " of " << cs.parts << " m " << cs.m << " n " << cs.n << " k " << cs.k;
    expect_near_product<T>(cs, p, got.data(), a.data(), cs.k, 1, b_ptrs[static_cast<size_t>(p)], b_rs, b_cs, 7);
  }
}

// Whole-tile parts (one problem: QKV-like 192-wide, SwiGLU-like 768-wide) and parts that are not a
// multiple of the micro-tile (run part by part), both B layouts, across thread counts.
TEST(RuntimeGemmGroup, PartsMatchSeparateCalls) {
  ThreadCountGuard guard;
  for (int threads : {1, 2, 3}) {
    kiln_set_num_threads(threads);
    for (Case cs :
         {Case{3, 301, 192, 96, true}, Case{2, 130, 768, 64, true}, Case{3, 97, 128, 40, false},
          Case{2, 50, 100, 33, true}, Case{4, 13, 17, 5, false}, Case{2, 1, 64, 8, true}, Case{3, 40, 64, 1, false}}) {
      check_group<float>(cs);
      check_group<double>(cs);
    }
  }
}

TEST(RuntimeGemmGroup, EmptyProductsAndOnePart) {
  std::vector<float> a(8, 1.f), b(8, 1.f), c0(4, 5.f), c1(4, 5.f);
  const float* bp[2] = {b.data(), b.data()};
  float* cp[2] = {c0.data(), c1.data()};
  // k == 0: every C is zero (C = A B over an empty sum).
  EXPECT_EQ(0, kiln_gemm_group_f32(2, 2, 2, 0, a.data(), 0, 1, bp, 2, 1, cp, 2, 1, 0, nullptr, nullptr));
  for (float x : c0) EXPECT_EQ(x, 0.f);
  for (float x : c1) EXPECT_EQ(x, 0.f);
  // m == 0 and n == 0 touch nothing.
  c0.assign(4, 5.f);
  kiln_gemm_group_f32(2, 0, 2, 2, a.data(), 2, 1, bp, 2, 1, cp, 2, 1, 0, nullptr, nullptr);
  kiln_gemm_group_f32(2, 2, 0, 2, a.data(), 2, 1, bp, 2, 1, cp, 2, 1, 0, nullptr, nullptr);
  for (float x : c0) EXPECT_EQ(x, 5.f);
  // One part is a plain GEMM.
  kiln_gemm_group_f32(1, 2, 2, 4, a.data(), 4, 1, bp, 2, 1, cp, 2, 1, 0, nullptr, nullptr);
  for (float x : c0) EXPECT_EQ(x, 4.f);
}

}  // namespace

namespace {

// Sibling products sharing B (rows in parts): each part equals its own kiln_gemm call bit for bit and
// is within rounding of the double product.
template <typename T>
void check_shared_b(const Case& cs, bool a_col_major) {
  std::mt19937 rng(static_cast<uint32_t>(cs.parts * 31 + cs.m * 7 + cs.n * 3 + cs.k));
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  const int64_t b_rs = cs.b_col_major ? 1 : cs.n, b_cs = cs.b_col_major ? cs.k : 1;
  const int64_t a_rs = a_col_major ? 1 : cs.k, a_cs = a_col_major ? cs.m : 1;
  std::vector<T> b(static_cast<size_t>(cs.k * cs.n));
  for (auto& x : b) x = static_cast<T>(dist(rng));
  std::vector<std::vector<T>> as, c_group, c_alone;
  std::vector<const T*> a_ptrs;
  std::vector<T*> c_ptrs;
  for (int64_t p = 0; p < cs.parts; ++p) {
    as.emplace_back(static_cast<size_t>(cs.m * cs.k + 1));
    for (auto& x : as.back()) x = static_cast<T>(dist(rng));
    c_group.emplace_back(static_cast<size_t>(cs.m * cs.n), T(-7));
    c_alone.emplace_back(static_cast<size_t>(cs.m * cs.n), T(-7));
  }
  for (int64_t p = 0; p < cs.parts; ++p) {
    a_ptrs.push_back(as[static_cast<size_t>(p)].data() + (p % 2));
    c_ptrs.push_back(c_group[static_cast<size_t>(p)].data());
  }
  if constexpr (std::is_same_v<T, float>)
    kiln_gemm_shared_b_f32(cs.parts, cs.m, cs.n, cs.k, a_ptrs.data(), a_rs, a_cs, b.data(), b_rs, b_cs, c_ptrs.data(),
                           cs.n, 1, 0);
  else
    kiln_gemm_shared_b_f64(cs.parts, cs.m, cs.n, cs.k, a_ptrs.data(), a_rs, a_cs, b.data(), b_rs, b_cs, c_ptrs.data(),
                           cs.n, 1);
  for (int64_t p = 0; p < cs.parts; ++p) {
    const T* a = a_ptrs[static_cast<size_t>(p)];
    T* alone = c_alone[static_cast<size_t>(p)].data();
    if constexpr (std::is_same_v<T, float>)
      kiln_gemm_f32(1, cs.m, cs.n, cs.k, 1.f, a, 0, a_rs, a_cs, b.data(), 0, b_rs, b_cs, 0.f, alone, 0, cs.n, 1, 0,
                    nullptr, nullptr);
    else
      kiln_gemm_f64(1, cs.m, cs.n, cs.k, 1.0, a, 0, a_rs, a_cs, b.data(), 0, b_rs, b_cs, 0.0, alone, 0, cs.n, 1,
                    nullptr, nullptr);
    const auto& got = c_group[static_cast<size_t>(p)];
    ASSERT_EQ(0, std::memcmp(got.data(), alone, got.size() * sizeof(T)))
        << "part " << p << " of " << cs.parts << " m " << cs.m << " n " << cs.n << " k " << cs.k;
    expect_near_product<T>(cs, p, got.data(), a, a_rs, a_cs, b.data(), b_rs, b_cs, 5);
  }
}

// Whole-sliver parts (192 and 96 rows: multiples of every kernel's MR) run as one problem, others
// part by part; A row- and column-major (weight gradients read dY transposed), across thread counts.
TEST(RuntimeGemmGroup, SharedBPartsMatchSeparateCalls) {
  ThreadCountGuard guard;
  for (int threads : {1, 2, 3}) {
    kiln_set_num_threads(threads);
    for (Case cs : {Case{3, 192, 64, 300, false}, Case{2, 96, 130, 77, true}, Case{3, 50, 40, 20, false},
                    Case{2, 13, 7, 5, true}, Case{3, 24, 64, 1, false}})
      for (bool a_col : {false, true}) {
        check_shared_b<float>(cs, a_col);
        check_shared_b<double>(cs, a_col);
      }
  }
}

}  // namespace
