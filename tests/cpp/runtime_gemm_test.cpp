// runtime_gemm_test.cpp — kiln_gemm_f32/f64 against a double-precision reference, every layout.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kiln/runtime/kiln_runtime.h"

namespace {

struct ThreadCountGuard {
  int saved = kiln_get_num_threads();
  ~ThreadCountGuard() { kiln_set_num_threads(saved); }
};

// How an operand of logical shape batch x rows x cols sits in memory.
enum class Layout { RowMajor, ColMajor, Padded, Strided, BatchBroadcast, RowBroadcast, Reversed };

const char* name(Layout l) {
  switch (l) {
    case Layout::RowMajor: return "row";
    case Layout::ColMajor: return "col";
    case Layout::Padded: return "padded";
    case Layout::Strided: return "strided";
    case Layout::BatchBroadcast: return "batch-bcast";
    case Layout::RowBroadcast: return "row-bcast";
    case Layout::Reversed: return "reversed";
  }
  return "?";
}

// A strided view over its own storage; `origin` is the element offset of (0, 0, 0).
template <typename T>
struct Operand {
  int64_t batch = 0, rows = 0, cols = 0;
  int64_t bs = 0, rs = 0, cs = 0;
  int64_t origin = 0;
  std::vector<T> store;

  T* data() { return store.data() + origin; }
  T& at(int64_t b, int64_t i, int64_t j) { return data()[b * bs + i * rs + j * cs]; }
};

template <typename T>
Operand<T> make(int64_t batch, int64_t rows, int64_t cols, Layout layout, std::mt19937& rng) {
  Operand<T> o;
  o.batch = batch, o.rows = rows, o.cols = cols;
  const int64_t r = std::max<int64_t>(rows, 1), c = std::max<int64_t>(cols, 1);
  switch (layout) {
    case Layout::RowMajor: o.rs = c, o.cs = 1, o.bs = r * c; break;
    case Layout::ColMajor: o.rs = 1, o.cs = r, o.bs = r * c; break;
    case Layout::Padded: o.rs = c + 5, o.cs = 1, o.bs = r * (c + 5) + 3; break;
    case Layout::Strided: o.rs = 2 * c + 1, o.cs = 2, o.bs = r * (2 * c + 1) + 7; break;
    case Layout::BatchBroadcast: o.rs = c, o.cs = 1, o.bs = 0; break;
    case Layout::RowBroadcast: o.rs = 0, o.cs = 1, o.bs = c; break;
    case Layout::Reversed: o.rs = -c, o.cs = 1, o.bs = r * c, o.origin = (r - 1) * c; break;
  }
  const int64_t span = (batch > 0 ? (batch - 1) * o.bs : 0) + (r - 1) * std::abs(o.rs) + (c - 1) * o.cs + 1;
  o.store.resize(static_cast<size_t>(span + 1));
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  for (auto& x : o.store) x = static_cast<T>(dist(rng));
  return o;
}

template <typename T>
void call_gemm(int64_t batch, int64_t m, int64_t n, int64_t k, T alpha, Operand<T>& a, Operand<T>& b, T beta,
               Operand<T>& c, int planes = 0) {
  if constexpr (std::is_same_v<T, float>)
    kiln_gemm_f32(batch, m, n, k, alpha, a.data(), a.bs, a.rs, a.cs, b.data(), b.bs, b.rs, b.cs, beta, c.data(), c.bs,
                  c.rs, c.cs, planes, nullptr, nullptr);
  else
    kiln_gemm_f64(batch, m, n, k, alpha, a.data(), a.bs, a.rs, a.cs, b.data(), b.bs, b.rs, b.cs, beta, c.data(), c.bs,
                  c.rs, c.cs, nullptr, nullptr);
}

// Relative error of one product term that a GEMM may make: float rounding, or what bfloat16 planes
// leave out (3 planes: float's; 2: about 2^-15; 1: operands rounded to bfloat16, about 2^-8).
template <typename T>
double unit_error(int planes) {
  if (!std::is_same_v<T, float>) return 1e-14;
  return planes == 2 ? 4e-5 : planes == 1 ? 8e-3 : 1e-6;
}

// Runs one GEMM and compares every C element with a double-precision reference.
template <typename T>
void check(int64_t batch, int64_t m, int64_t n, int64_t k, Layout la, Layout lb, Layout lc, double alpha, double beta,
           bool nan_c = false, int planes = 0) {
  std::mt19937 rng(static_cast<uint32_t>(batch * 1000003 + m * 10007 + n * 101 + k));
  Operand<T> a = make<T>(batch, m, k, la, rng), b = make<T>(batch, k, n, lb, rng), c = make<T>(batch, m, n, lc, rng);
  if (nan_c) std::fill(c.store.begin(), c.store.end(), std::numeric_limits<T>::quiet_NaN());
  std::vector<double> want(static_cast<size_t>(batch * m * n));
  for (int64_t bi = 0; bi < batch; ++bi)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t p = 0; p < k; ++p) s += double(a.at(bi, i, p)) * double(b.at(bi, p, j));
        const double old = beta == 0 ? 0.0 : beta * double(c.at(bi, i, j));
        want[static_cast<size_t>((bi * m + i) * n + j)] = alpha * s + old;
      }
  call_gemm<T>(batch, m, n, k, T(alpha), a, b, T(beta), c, planes);
  const double eps = unit_error<T>(planes);
  const double tol = 4 * eps * (double(k) + 2) * (std::abs(alpha) + std::abs(beta) + 1);
  for (int64_t bi = 0; bi < batch; ++bi)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        const double got = c.at(bi, i, j), w = want[static_cast<size_t>((bi * m + i) * n + j)];
        ASSERT_NEAR(got, w, tol) << "batch " << batch << " m " << m << " n " << n << " k " << k << " A " << name(la)
                                 << " B " << name(lb) << " C " << name(lc) << " alpha " << alpha << " beta " << beta
                                 << " planes " << planes << " at (" << bi << "," << i << "," << j << ")";
      }
}

const Layout kAllInputs[] = {Layout::RowMajor, Layout::ColMajor, Layout::Padded, Layout::Strided, Layout::Reversed};
const Layout kAllOutputs[] = {Layout::RowMajor, Layout::ColMajor, Layout::Padded, Layout::Strided};

TEST(RuntimeGemm, OddSizesEveryLayoutF32) {
  const int64_t sizes[] = {1, 3, 12, 17, 33};
  for (int64_t m : sizes)
    for (int64_t n : sizes)
      for (int64_t k : {1, 5, 17})
        for (Layout la : kAllInputs)
          for (Layout lb : kAllInputs) check<float>(1, m, n, k, la, lb, Layout::RowMajor, 1.0, 0.0);
}

TEST(RuntimeGemm, OutputLayoutsAlphaBetaF32) {
  for (Layout lc : kAllOutputs)
    for (auto [alpha, beta] : {std::pair{1.0, 0.0}, {1.0, 1.0}, {-0.5, 2.0}, {2.0, -1.0}, {0.0, 0.5}})
      for (int64_t m : {1, 13, 40})
        for (int64_t n : {1, 31, 50}) {
          check<float>(2, m, n, 23, Layout::RowMajor, Layout::ColMajor, lc, alpha, beta);
          check<float>(1, m, n, 7, Layout::ColMajor, Layout::RowMajor, lc, alpha, beta);
        }
}

TEST(RuntimeGemm, BetaZeroNeverReadsC) {
  for (Layout lc : kAllOutputs) {
    check<float>(3, 29, 45, 19, Layout::RowMajor, Layout::RowMajor, lc, 1.0, 0.0, /*nan_c=*/true);
    check<double>(3, 29, 45, 19, Layout::ColMajor, Layout::RowMajor, lc, 0.5, 0.0, /*nan_c=*/true);
  }
}

TEST(RuntimeGemm, EmptyReduction) {
  // k == 0: C = beta * C, and exactly zero (NaN wiped) for beta == 0.
  check<float>(2, 7, 9, 0, Layout::RowMajor, Layout::RowMajor, Layout::RowMajor, 1.0, 0.0, /*nan_c=*/true);
  check<float>(2, 7, 9, 0, Layout::RowMajor, Layout::RowMajor, Layout::Strided, 1.0, 0.5);
  check<double>(1, 5, 3, 0, Layout::RowMajor, Layout::RowMajor, Layout::ColMajor, 2.0, -3.0);
}

TEST(RuntimeGemm, EmptyOutputsTouchNothing) {
  float a[4] = {1, 2, 3, 4}, b[4] = {1, 2, 3, 4}, c[4] = {7, 7, 7, 7};
  kiln_gemm_f32(0, 2, 2, 2, 1.f, a, 4, 2, 1, b, 4, 2, 1, 0.f, c, 4, 2, 1, 0, nullptr, nullptr);
  kiln_gemm_f32(1, 0, 2, 2, 1.f, a, 4, 2, 1, b, 4, 2, 1, 0.f, c, 4, 2, 1, 0, nullptr, nullptr);
  kiln_gemm_f32(1, 2, 0, 2, 1.f, a, 4, 2, 1, b, 4, 2, 1, 0.f, c, 4, 2, 1, 0, nullptr, nullptr);
  for (float x : c) EXPECT_EQ(x, 7.f);
}

TEST(RuntimeGemm, BatchedAndBroadcastOperands) {
  for (Layout la : {Layout::RowMajor, Layout::BatchBroadcast, Layout::RowBroadcast, Layout::ColMajor})
    for (Layout lb : {Layout::RowMajor, Layout::BatchBroadcast, Layout::RowBroadcast, Layout::ColMajor}) {
      check<float>(5, 24, 40, 16, la, lb, Layout::RowMajor, 1.0, 0.0);
      check<float>(3, 13, 7, 33, la, lb, Layout::ColMajor, 1.0, 1.0);
    }
  // Shared B against stacked A rows (folded into one taller GEMM) and shared A against stacked B.
  check<float>(6, 50, 37, 29, Layout::RowMajor, Layout::BatchBroadcast, Layout::RowMajor, 1.0, 0.0);
  check<float>(6, 37, 50, 29, Layout::BatchBroadcast, Layout::ColMajor, Layout::ColMajor, 1.0, 0.0);
  check<double>(4, 21, 19, 11, Layout::BatchBroadcast, Layout::RowMajor, Layout::RowMajor, 1.0, 0.5);
}

TEST(RuntimeGemm, CacheBlockBoundaries) {
  // Past the k block (several k passes accumulate), the n block and many row slivers.
  check<float>(1, 70, 700, 900, Layout::RowMajor, Layout::RowMajor, Layout::RowMajor, 1.0, 0.0);
  check<float>(1, 130, 90, 1000, Layout::ColMajor, Layout::ColMajor, Layout::RowMajor, 0.75, 1.5);
  check<float>(1, 50, 40, 777, Layout::ColMajor, Layout::Strided, Layout::RowMajor, 1.0, 0.0);
  check<float>(1, 50, 40, 1501, Layout::Strided, Layout::RowMajor, Layout::ColMajor, 1.0, 1.0);
  check<float>(1, 2500, 5, 3, Layout::RowMajor, Layout::ColMajor, Layout::RowMajor, 1.0, 0.0);
  check<double>(1, 40, 300, 500, Layout::RowMajor, Layout::ColMajor, Layout::RowMajor, 1.0, 1.0);
  // Row-major A whose rows are a multiple of 4 KiB apart is packed rather than read in place, with a
  // partial last sliver; with n inside one micro-tile it is read in place again.
  check<float>(1, 29, 70, 1024, Layout::RowMajor, Layout::RowMajor, Layout::RowMajor, 1.0, 0.5);
  check<float>(1, 29, 16, 2048, Layout::RowMajor, Layout::ColMajor, Layout::RowMajor, 1.0, 0.0);
  check<double>(1, 17, 40, 512, Layout::RowMajor, Layout::RowMajor, Layout::RowMajor, 1.0, 0.0);
}

TEST(RuntimeGemm, RowPanelKernelEdges) {
  // Row-major A runs the row-panel kernel (6 x 64 with AVX-512): tiles cut at every lane group.
  for (int64_t m : {5, 6, 7, 13})
    for (int64_t n : {15, 16, 17, 48, 63, 64, 65, 129})
      for (double beta : {0.0, 1.0}) {
        check<float>(1, m, n, 37, Layout::RowMajor, Layout::ColMajor, Layout::RowMajor, 1.0, beta);
        check<double>(1, m, n, 11, Layout::RowMajor, Layout::RowMajor, Layout::Padded, 0.5, beta);
      }
}

TEST(RuntimeGemm, TransformerShapesF32) {
  // Small-k and small-n shapes of attention heads, with the transposed operands of backward passes.
  for (Layout la : {Layout::RowMajor, Layout::ColMajor})
    for (Layout lb : {Layout::RowMajor, Layout::ColMajor}) {
      check<float>(3, 96, 96, 32, la, lb, Layout::RowMajor, 1.0, 0.0);
      check<float>(3, 96, 32, 96, la, lb, Layout::RowMajor, 1.0, 0.0);
      check<float>(1, 144, 72, 48, la, lb, Layout::RowMajor, 1.0, 1.0);
    }
}

TEST(RuntimeGemm, OddSizesF64) {
  for (int64_t m : {1, 5, 12, 13, 30})
    for (int64_t n : {1, 7, 16, 17, 33})
      for (int64_t k : {1, 4, 19})
        for (Layout la : {Layout::RowMajor, Layout::ColMajor, Layout::Strided})
          for (Layout lb : {Layout::RowMajor, Layout::ColMajor, Layout::Strided})
            check<double>(2, m, n, k, la, lb, m % 2 ? Layout::RowMajor : Layout::ColMajor, 1.0, n % 2 ? 0.0 : 1.0);
}

// A batch that writes one shared C (batch stride 0) sums every product into it after scaling C once.
TEST(RuntimeGemm, SharedOutputAccumulatesOverBatch) {
  const int64_t batch = 4, m = 9, n = 11, k = 6;
  std::vector<float> a(batch * m * k), b(batch * k * n), c(m * n, 2.f);
  for (size_t i = 0; i < a.size(); ++i) a[i] = float(i % 7) - 3;
  for (size_t i = 0; i < b.size(); ++i) b[i] = float(i % 5) - 2;
  kiln_gemm_f32(batch, m, n, k, 1.f, a.data(), m * k, k, 1, b.data(), k * n, n, 1, 0.5f, c.data(), 0, n, 1, 0, nullptr,
                nullptr);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 1.0;  // 0.5 * 2
      for (int64_t bi = 0; bi < batch; ++bi)
        for (int64_t p = 0; p < k; ++p) s += double(a[(bi * m + i) * k + p]) * b[(bi * k + p) * n + j];
      ASSERT_EQ(c[i * n + j], float(s));
    }
}

// Threads split only M or N, never k: every element is computed the same way whatever the thread count.
TEST(RuntimeGemm, ResultIndependentOfThreadCount) {
  ThreadCountGuard guard;
  std::mt19937 rng(7);
  struct Shape {
    int64_t batch, m, n, k;
  };
  for (Shape s : {Shape{1, 301, 257, 420}, Shape{7, 61, 45, 39}, Shape{3, 20, 500, 64}}) {
    Operand<float> a = make<float>(s.batch, s.m, s.k, Layout::RowMajor, rng);
    Operand<float> b = make<float>(s.batch, s.k, s.n, Layout::ColMajor, rng);
    std::vector<std::vector<float>> results;
    for (int threads : {1, 2, 3}) {
      kiln_set_num_threads(threads);
      Operand<float> c = make<float>(s.batch, s.m, s.n, Layout::RowMajor, rng);
      std::fill(c.store.begin(), c.store.end(), 0.f);
      call_gemm<float>(s.batch, s.m, s.n, s.k, 1.f, a, b, 0.f, c);
      results.push_back(c.store);
    }
    for (size_t r = 1; r < results.size(); ++r)
      ASSERT_EQ(0, std::memcmp(results[0].data(), results[r].data(), results[0].size() * sizeof(float)));
  }
}

// Threads that split M each pack all of B: shapes with several k blocks, several column blocks and a
// ragged last sliver, packed and in-place A, on 2 and 3 threads, each against the reference and bit for
// bit against 1 thread.
TEST(RuntimeGemm, RowSplitOverManyBlocksAcrossThreads) {
  ThreadCountGuard guard;
  struct Shape {
    int64_t m, n, k;
    Layout la, lb;
  };
  const Shape shapes[] = {
      {500, 900, 1024, Layout::RowMajor, Layout::RowMajor},  // A rows 4 KiB apart: packed A
      {192, 200, 1152, Layout::ColMajor, Layout::RowMajor},  // a weight gradient: Xᵀ dY
      {768, 190, 1152, Layout::ColMajor, Layout::ColMajor},
      {301, 77, 700, Layout::Strided, Layout::Reversed},
  };
  for (const Shape& s : shapes) {
    std::vector<std::vector<float>> results;
    for (int threads : {1, 2, 3}) {
      kiln_set_num_threads(threads);
      if (threads > 1) check<float>(1, s.m, s.n, s.k, s.la, s.lb, Layout::RowMajor, 1.0, threads == 3 ? 0.5 : 0.0);
      std::mt19937 rng(11);
      Operand<float> a = make<float>(1, s.m, s.k, s.la, rng), b = make<float>(1, s.k, s.n, s.lb, rng);
      Operand<float> c = make<float>(1, s.m, s.n, Layout::RowMajor, rng);
      call_gemm<float>(1, s.m, s.n, s.k, 1.f, a, b, 0.f, c);
      results.push_back(c.store);
    }
    for (size_t r = 1; r < results.size(); ++r)
      ASSERT_EQ(0, std::memcmp(results[0].data(), results[r].data(), results[0].size() * sizeof(float)))
          << "m " << s.m << " n " << s.n << " k " << s.k;
  }
}

// A NaN in row 2 of A makes row 2 of C NaN; an inf in column 33 of B makes column 33 inf elsewhere.
void check_nan_and_inf_propagate(int64_t m, int64_t n, int64_t k, int planes) {
  std::vector<float> a(m * k, 1.f), b(k * n, 1.f), c(m * n);
  a[2 * k + 3] = std::numeric_limits<float>::quiet_NaN();
  b[4 * n + 33] = std::numeric_limits<float>::infinity();
  kiln_gemm_f32(1, m, n, k, 1.f, a.data(), 0, k, 1, b.data(), 0, n, 1, 0.f, c.data(), 0, n, 1, planes, nullptr,
                nullptr);
  for (int64_t j = 0; j < n; ++j) EXPECT_TRUE(std::isnan(c[2 * n + j])) << j;
  EXPECT_TRUE(std::isinf(c[0 * n + 33]));
  EXPECT_EQ(c[0 * n + 0], float(k));
}

TEST(RuntimeGemm, NanAndInfPropagate) { check_nan_and_inf_propagate(5, 40, 9, 0); }

// ---- AMX: float products through bfloat16 planes (kiln_gemm_f32's bf16_planes) ------------------
// Without AMX (another CPU, KILN_GEMM_AMX=0) the same calls run the FMA kernels and still pass,
// except the tests that ask for AMX's own results, which skip.

TEST(RuntimeGemmAmx, PlanesEveryEdgeLayoutAndBlock) {
  struct Shape {
    int64_t batch, m, n, k;
  };
  // Tile edges in every dimension (batched to pass the AMX size threshold), several k blocks, two
  // n blocks.
  const Shape shapes[] = {{8, 33, 31, 75}, {8, 17, 40, 64}, {8, 64, 64, 33}, {1, 95, 97, 200}, {1, 130, 600, 700}};
  for (int planes : {1, 2, 3})
    for (Shape s : shapes)
      for (Layout la : {Layout::RowMajor, Layout::ColMajor, Layout::Strided, Layout::Reversed})
        for (Layout lb : {Layout::RowMajor, Layout::ColMajor, Layout::Strided}) {
          if (s.k == 700 && (la != Layout::RowMajor || lb == Layout::Strided)) continue;  // keep it quick
          check<float>(s.batch, s.m, s.n, s.k, la, lb, Layout::RowMajor, 1.0, 0.0, false, planes);
        }
  // Outputs that go through the tile buffer: alpha != 1, strided and column-major C, NaN-filled C.
  for (int planes : {1, 3})
    for (Layout lc : kAllOutputs) {
      check<float>(1, 70, 90, 300, Layout::RowMajor, Layout::ColMajor, lc, 0.5, 0.0, true, planes);
      check<float>(4, 40, 33, 100, Layout::ColMajor, Layout::RowMajor, lc, 1.0, 0.0, true, planes);
    }
}

// 1 + 2^-10 is not a bfloat16; its planes are 1 and 2^-10. Each plane count gives its own exact sum.
TEST(RuntimeGemmAmx, EachPlaneCountKeepsItsBits) {
  if (!kiln_gemm_has_amx()) GTEST_SKIP() << "no AMX here: planes run on the FMA kernels";
  const int64_t n = 128;
  std::vector<float> a(n * n, 1.0f + 0x1p-10f), b(n * n, 1.0f + 0x1p-10f), c(n * n);
  const float want[] = {128.0f, 128.25f, 128.2501220703125f};  // 1 plane, 2 planes, 3 planes
  for (int planes : {1, 2, 3}) {
    kiln_gemm_f32(1, n, n, n, 1.f, a.data(), 0, n, 1, b.data(), 0, n, 1, 0.f, c.data(), 0, n, 1, planes, nullptr,
                  nullptr);
    for (float x : c) ASSERT_EQ(x, want[planes - 1]) << planes << " planes";
  }
}

// Values the split cannot hold exactly send the whole product to the FMA kernels: IEEE results.
TEST(RuntimeGemmAmx, NonFiniteAndSubnormalInputsKeepFloatSemantics) {
  const int64_t n = 128;
  check_nan_and_inf_propagate(n, n, n, 3);
  std::vector<float> a(n * n), b(n * n), c(n * n);
  // Subnormal A (AMX would read it as zero), and large B: the products are normal floats.
  std::fill(a.begin(), a.end(), 1e-39f);
  std::fill(b.begin(), b.end(), 1e10f);
  kiln_gemm_f32(1, n, n, n, 1.f, a.data(), 0, n, 1, b.data(), 0, n, 1, 0.f, c.data(), 0, n, 1, 3, nullptr, nullptr);
  for (float x : c) ASSERT_NEAR(x, n * 1e-29, n * 1e-29 * 1e-5);
}

// Three planes are as accurate as float FMAs: the largest error against a double reference.
TEST(RuntimeGemmAmx, ThreePlanesAsAccurateAsFloat) {
  std::mt19937 rng(11);
  const int64_t m = 200, n = 160, k = 1000;
  Operand<float> a = make<float>(1, m, k, Layout::RowMajor, rng), b = make<float>(1, k, n, Layout::ColMajor, rng);
  double err[2] = {0, 0};
  for (int planes : {0, 3}) {
    Operand<float> c = make<float>(1, m, n, Layout::RowMajor, rng);
    call_gemm<float>(1, m, n, k, 1.f, a, b, 0.f, c, planes);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t p = 0; p < k; ++p) s += double(a.at(0, i, p)) * double(b.at(0, p, j));
        err[planes ? 1 : 0] = std::max(err[planes ? 1 : 0], std::abs(s - c.at(0, i, j)));
      }
  }
  EXPECT_LE(err[1], 1.5 * err[0]) << "FMA kernels " << err[0] << ", 3 planes " << err[1];
}

// ---- row epilogues (rows_done) -------------------------------------------------------------------

struct RowWatch {
  const float* c;
  int64_t n, rs;
  std::vector<double> want;  // row-major batch*m x n
  std::vector<std::atomic<int>> seen;
  std::atomic<int> stale{0};
  RowWatch(const float* c_, int64_t rows, int64_t n_, int64_t rs_) : c(c_), n(n_), rs(rs_), seen(rows) {}
};

// The epilogue checks that each row it is given already holds its final values.
void watch_rows(void* ctx, int64_t r0, int64_t r1) {
  auto& w = *static_cast<RowWatch*>(ctx);
  for (int64_t r = r0; r < r1; ++r) {
    w.seen[static_cast<size_t>(r)].fetch_add(1);
    for (int64_t j = 0; j < w.n; ++j)
      if (std::abs(w.c[r * w.rs + j] - w.want[static_cast<size_t>(r * w.n + j)]) > 1e-3) w.stale.fetch_add(1);
  }
}

// rows_done sees every row of C exactly once, after it is final, or (return 0) never.
TEST(RuntimeGemm, RowEpilogueSeesEachFinishedRowOnce) {
  ThreadCountGuard guard;
  struct Case {
    int64_t batch, m, n, k;
    bool b_shared;
    int planes;
  };
  // M splits (reported inline), an N split (wide n), stacked batches, AMX (reported after, if at all).
  for (int threads : {1, 2, 3})
    for (Case cs : {Case{1, 301, 64, 100, false, 0}, Case{1, 40, 900, 64, false, 0}, Case{3, 50, 70, 33, true, 0},
                    Case{4, 37, 20, 16, false, 0}, Case{1, 256, 256, 64, false, 3}}) {
      kiln_set_num_threads(threads);
      std::mt19937 rng(3);
      std::uniform_real_distribution<float> dist(-1, 1);
      const int64_t rows = cs.batch * cs.m;
      std::vector<float> a(rows * cs.k), b((cs.b_shared ? 1 : cs.batch) * cs.k * cs.n), c(rows * cs.n);
      for (auto& x : a) x = dist(rng);
      for (auto& x : b) x = dist(rng);
      RowWatch w(c.data(), rows, cs.n, cs.n);
      w.want.resize(static_cast<size_t>(rows * cs.n));
      for (int64_t bi = 0; bi < cs.batch; ++bi)
        for (int64_t i = 0; i < cs.m; ++i)
          for (int64_t j = 0; j < cs.n; ++j) {
            double s = 0;
            for (int64_t p = 0; p < cs.k; ++p)
              s += double(a[(bi * cs.m + i) * cs.k + p]) * b[(cs.b_shared ? 0 : bi) * cs.k * cs.n + p * cs.n + j];
            w.want[static_cast<size_t>((bi * cs.m + i) * cs.n + j)] = s;
          }
      const int reported = kiln_gemm_f32(cs.batch, cs.m, cs.n, cs.k, 1.f, a.data(), cs.m * cs.k, cs.k, 1, b.data(),
                                         cs.b_shared ? 0 : cs.k * cs.n, cs.n, 1, 0.f, c.data(), cs.m * cs.n, cs.n, 1,
                                         cs.planes, watch_rows, &w);
      for (int64_t r = 0; r < rows; ++r) ASSERT_EQ(w.seen[static_cast<size_t>(r)].load(), reported) << "row " << r;
      EXPECT_EQ(w.stale.load(), 0);
      if (cs.m == 301) EXPECT_EQ(reported, 1) << "an M split reports its rows";
    }
}

// A column-major C (computed transposed) and a shared C never report rows.
TEST(RuntimeGemm, RowEpilogueNotCalledWhenRowsAreNotFinalInOrder) {
  const int64_t m = 64, n = 48, k = 32;
  std::vector<float> a(m * k, 1.f), b(k * n, 1.f), c(m * n);
  RowWatch w(c.data(), m, n, n);
  EXPECT_EQ(0, kiln_gemm_f32(1, m, n, k, 1.f, a.data(), 0, k, 1, b.data(), 0, n, 1, 0.f, c.data(), 0, 1, m, 0,
                             watch_rows, &w));
  EXPECT_EQ(0, kiln_gemm_f32(2, m, n, k, 1.f, a.data(), 0, k, 1, b.data(), 0, n, 1, 0.f, c.data(), 0, n, 1, 0,
                             watch_rows, &w));
  for (auto& s : w.seen) EXPECT_EQ(s.load(), 0);
}

}  // namespace
