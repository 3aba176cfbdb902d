// runtime_attention_test.cpp — kiln_attention_fwd/bwd against a double-precision reference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kiln/runtime/kiln_runtime.h"

namespace {

struct Case {
  int64_t b1, b2, sq, sk, d, dv;
  bool causal;
  bool interleaved;  // operands stored as [b1, s, b2, d] (heads interleaved), not [b1, b2, s, d]
  double magnitude = 1.0;
  bool columns_outer = false;  // operands stored as [b1, b2, d, s]: no unit stride along a row
};

std::string describe(const Case& c) {
  return "b1=" + std::to_string(c.b1) + " b2=" + std::to_string(c.b2) + " sq=" + std::to_string(c.sq) +
         " sk=" + std::to_string(c.sk) + " d=" + std::to_string(c.d) + " dv=" + std::to_string(c.dv) +
         (c.causal ? " causal" : "") + (c.interleaved ? " interleaved" : "") +
         (c.columns_outer ? " columns-outer" : "") + " mag=" + std::to_string(c.magnitude);
}

// A [b1, b2, s, cols] tensor in one of two memory orders.
template <typename T>
struct Tensor {
  int64_t b1, b2, s, cols;
  std::vector<int64_t> st;  // b1, b2, row, column strides
  std::vector<T> data;
  Tensor(int64_t b1_, int64_t b2_, int64_t s_, int64_t cols_, bool interleaved, bool columns_outer = false)
      : b1(b1_), b2(b2_), s(s_), cols(cols_), data(static_cast<size_t>(b1_ * b2_ * s_ * cols_ + 1)) {
    if (columns_outer)
      st = {b2 * s * cols, s * cols, 1, s};
    else if (interleaved)
      st = {s * b2 * cols, cols, b2 * cols, 1};
    else
      st = {b2 * s * cols, s * cols, cols, 1};
  }
  T& at(int64_t i, int64_t j, int64_t r, int64_t c) {
    return data[static_cast<size_t>(i * st[0] + j * st[1] + r * st[2] + c * st[3])];
  }
};

template <typename T>
void check(const Case& c, int threads) {
  kiln_set_num_threads(threads);
  std::mt19937 rng(42);
  std::normal_distribution<double> nd(0.0, c.magnitude);
  const bool co = c.columns_outer;
  Tensor<T> q(c.b1, c.b2, c.sq, c.d, c.interleaved, co), k(c.b1, c.b2, c.sk, c.d, c.interleaved, co),
      v(c.b1, c.b2, c.sk, c.dv, c.interleaved, co), g(c.b1, c.b2, c.sq, c.dv, false, co),
      out(c.b1, c.b2, c.sq, c.dv, c.interleaved, co), dq(c.b1, c.b2, c.sq, c.d, false, co),
      dk(c.b1, c.b2, c.sk, c.d, c.interleaved, co), dv(c.b1, c.b2, c.sk, c.dv, false, co);
  for (auto* t : {&q, &k})
    for (auto& x : t->data) x = T(nd(rng));
  for (auto* t : {&v, &g})
    for (auto& x : t->data) x = T(nd(rng) / c.magnitude);
  std::vector<T> lse(static_cast<size_t>(c.b1 * c.b2 * c.sq + 1));
  std::vector<int64_t> lst = {c.b2 * c.sq, c.sq, 1};
  int64_t shape[6] = {c.b1, c.b2, c.sq, c.sk, c.d, c.dv};
  double scale = 1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(c.d, 1)));
  auto fwd = [&](auto... a) {
    if constexpr (sizeof(T) == 4)
      kiln_attention_fwd_f32(a...);
    else
      kiln_attention_fwd_f64(a...);
  };
  auto bwd = [&](auto... a) {
    if constexpr (sizeof(T) == 4)
      kiln_attention_bwd_f32(a...);
    else
      kiln_attention_bwd_f64(a...);
  };
  fwd(shape, c.causal ? 1 : 0, T(scale), q.data.data(), q.st.data(), k.data.data(), k.st.data(), v.data.data(),
      v.st.data(), out.data.data(), out.st.data(), lse.data(), lst.data());
  bwd(shape, c.causal ? 1 : 0, T(scale), g.data.data(), g.st.data(), q.data.data(), q.st.data(), k.data.data(),
      k.st.data(), v.data.data(), v.st.data(), out.data.data(), out.st.data(), lse.data(), lst.data(), dq.data.data(),
      dq.st.data(), dk.data.data(), dk.st.data(), dv.data.data(), dv.st.data());

  const double tol = sizeof(T) == 4 ? 2e-4 : 1e-10;
  double worst = 0;
  std::string where;
  auto expect = [&](double got, double want, const char* what) {
    double err = std::isnan(want) ? (std::isnan(got) ? 0.0 : 1e9) : std::abs(got - want) / (1.0 + std::abs(want));
    if (err > worst) {
      worst = err;
      where = what;
    }
  };
  for (int64_t i1 = 0; i1 < c.b1; ++i1)
    for (int64_t i2 = 0; i2 < c.b2; ++i2) {
      std::vector<double> P(static_cast<size_t>(c.sq * c.sk), 0.0), dP(P.size(), 0.0);
      std::vector<double> dqr(static_cast<size_t>(c.sq * c.d), 0.0), dkr(static_cast<size_t>(c.sk * c.d), 0.0),
          dvr(static_cast<size_t>(c.sk * c.dv), 0.0);
      for (int64_t i = 0; i < c.sq; ++i) {
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < c.sk; ++j) {
          double s = 0;
          for (int64_t e = 0; e < c.d; ++e) s += double(q.at(i1, i2, i, e)) * double(k.at(i1, i2, j, e));
          s = (c.causal && j > i) ? -std::numeric_limits<double>::infinity() : s * scale;
          P[static_cast<size_t>(i * c.sk + j)] = s;
          mx = std::max(mx, s);
        }
        double sum = 0;
        for (int64_t j = 0; j < c.sk; ++j) sum += std::exp(P[static_cast<size_t>(i * c.sk + j)] - mx);
        for (int64_t j = 0; j < c.sk; ++j)
          P[static_cast<size_t>(i * c.sk + j)] = std::exp(P[static_cast<size_t>(i * c.sk + j)] - mx) / sum;
        if (c.sk > 0) expect(lse[static_cast<size_t>(i1 * lst[0] + i2 * lst[1] + i)], mx + std::log(sum), "lse");
        for (int64_t e = 0; e < c.dv; ++e) {
          double o = 0;
          for (int64_t j = 0; j < c.sk; ++j) o += P[static_cast<size_t>(i * c.sk + j)] * double(v.at(i1, i2, j, e));
          expect(out.at(i1, i2, i, e), o, "out");
        }
        double delta = 0;
        for (int64_t j = 0; j < c.sk; ++j) {
          double dp = 0;
          for (int64_t e = 0; e < c.dv; ++e) dp += double(g.at(i1, i2, i, e)) * double(v.at(i1, i2, j, e));
          dP[static_cast<size_t>(i * c.sk + j)] = dp;
          delta += dp * P[static_cast<size_t>(i * c.sk + j)];
        }
        for (int64_t j = 0; j < c.sk; ++j) {
          double p = P[static_cast<size_t>(i * c.sk + j)];
          double ds = p * (dP[static_cast<size_t>(i * c.sk + j)] - delta);
          for (int64_t e = 0; e < c.d; ++e) {
            dqr[static_cast<size_t>(i * c.d + e)] += scale * ds * double(k.at(i1, i2, j, e));
            dkr[static_cast<size_t>(j * c.d + e)] += scale * ds * double(q.at(i1, i2, i, e));
          }
          for (int64_t e = 0; e < c.dv; ++e) dvr[static_cast<size_t>(j * c.dv + e)] += p * double(g.at(i1, i2, i, e));
        }
      }
      for (int64_t i = 0; i < c.sq; ++i)
        for (int64_t e = 0; e < c.d; ++e) expect(dq.at(i1, i2, i, e), dqr[static_cast<size_t>(i * c.d + e)], "dq");
      for (int64_t j = 0; j < c.sk; ++j) {
        for (int64_t e = 0; e < c.d; ++e) expect(dk.at(i1, i2, j, e), dkr[static_cast<size_t>(j * c.d + e)], "dk");
        for (int64_t e = 0; e < c.dv; ++e) expect(dv.at(i1, i2, j, e), dvr[static_cast<size_t>(j * c.dv + e)], "dv");
      }
    }
  EXPECT_LE(worst, tol * c.magnitude) << describe(c) << " worst in " << where << " threads=" << threads;
}

const Case kCases[] = {
    {1, 1, 1, 1, 1, 1, true, false},
    {2, 3, 70, 70, 16, 16, true, false},      // S not a multiple of the block
    {1, 2, 130, 130, 33, 20, false, true},    // odd head dims, interleaved heads, non-causal
    {2, 1, 64, 200, 64, 64, true, false},     // more keys than queries
    {1, 1, 100, 37, 8, 8, true, true},        // more queries than keys
    {1, 2, 5, 0, 4, 4, false, false},         // no keys: out is 0
    {1, 1, 0, 9, 4, 4, true, false},          // no queries: dk, dv are 0
    {2, 2, 192, 192, 128, 128, true, false},  // wide heads
    {1, 3, 257, 257, 24, 40, true, true},
    {1, 2, 600, 600, 32, 32, true, false},             // several groups of query blocks, the last one short
    {1, 1, 300, 520, 16, 16, false, false},            // groups over more keys than queries
    {1, 1, 96, 96, 16, 16, true, false, 30.0},         // large logits: the online softmax must not overflow
    {2, 3, 192, 192, 32, 32, true, false, 1.0, true},  // every operand column-major per head
    {1, 2, 70, 130, 20, 33, false, false, 1.0, true},
};

}  // namespace

TEST(RuntimeAttention, MatchesReferenceF32) {
  for (const Case& c : kCases)
    for (int threads : {1, 2}) check<float>(c, threads);
}

TEST(RuntimeAttention, MatchesReferenceF64) {
  for (const Case& c : kCases) check<double>(c, 2);
}

TEST(RuntimeAttention, FullyMaskedRowIsNaNLikeEager) {
  // Causal with the key block empty for no row is impossible (key 0 is always visible), so a
  // NaN logit stands in: it must poison its row only.
  int64_t shape[6] = {1, 1, 3, 3, 2, 2};
  std::vector<float> q = {1, 0, NAN, 0, 0, 1}, k = {1, 0, 0, 1, 1, 1}, v = {1, 2, 3, 4, 5, 6}, out(6), lse(3);
  std::vector<int64_t> st = {6, 6, 2, 1}, lst = {3, 3, 1};
  kiln_attention_fwd_f32(shape, 0, 1.0f, q.data(), st.data(), k.data(), st.data(), v.data(), st.data(), out.data(),
                         st.data(), lse.data(), lst.data());
  EXPECT_FALSE(std::isnan(out[0]));
  EXPECT_TRUE(std::isnan(out[2]));
  EXPECT_FALSE(std::isnan(out[4]));
}

TEST(RuntimeAttention, NaNQueryOnTheCausalDiagonalPoisonsOnlyItsRow) {
  // The diagonal block runs as a staircase of 16-key chunks that masks lanes by select: a NaN score
  // must survive it in its own row (eager: NaN) and reach no other row, forward and backward.
  constexpr int64_t s = 40, d = 4;
  int64_t shape[6] = {1, 1, s, s, d, d};
  std::vector<float> q(s * d), k(s * d), v(s * d), g(s * d, 1.0f), out(s * d), lse(s);
  std::vector<float> dq(s * d), dk(s * d), dv(s * d);
  for (int64_t i = 0; i < s * d; ++i) {
    q[i] = std::sin(0.37f * i);
    k[i] = std::cos(0.11f * i);
    v[i] = 0.01f * i;
  }
  constexpr int64_t bad = 21;  // inside the second chunk of the first (diagonal) block
  q[bad * d + 1] = NAN;
  std::vector<int64_t> st = {s * d, s * d, d, 1}, lst = {s, s, 1};
  kiln_attention_fwd_f32(shape, 1, 0.5f, q.data(), st.data(), k.data(), st.data(), v.data(), st.data(), out.data(),
                         st.data(), lse.data(), lst.data());
  for (int64_t i = 0; i < s; ++i) EXPECT_EQ(std::isnan(out[i * d]), i == bad) << "row " << i;
  kiln_attention_bwd_f32(shape, 1, 0.5f, g.data(), st.data(), q.data(), st.data(), k.data(), st.data(), v.data(),
                         st.data(), out.data(), st.data(), lse.data(), lst.data(), dq.data(), st.data(), dk.data(),
                         st.data(), dv.data(), st.data());
  for (int64_t i = 0; i < s; ++i) EXPECT_EQ(std::isnan(dq[i * d]), i == bad) << "dq row " << i;
  // Key j is seen by query `bad` iff j <= bad: exactly those keys' gradients carry the NaN.
  for (int64_t j = 0; j < s; ++j) EXPECT_EQ(std::isnan(dv[j * d]), j <= bad) << "dv row " << j;
}

TEST(RuntimeAttention, ReferenceFollowsScoresThatGrowAcrossBlocks) {
  // The forward takes probabilities against a reference that moves only when a block's max exceeds
  // it by more than a slack: scores rising by 0.05 to 1.5 per key (3 to 96 per 64-key block) move it
  // every block, every few blocks, or inside the slack for many; out and lse must match float64.
  constexpr int64_t sq = 20, sk = 600, d = 2;
  for (double step : {0.05, 0.3, 1.5}) {
    int64_t shape[6] = {1, 1, sq, sk, d, d};
    std::vector<float> q(sq * d), k(sk * d), v(sk * d), out(sq * d), lse(sq);
    for (int64_t i = 0; i < sq; ++i) q[i * d] = 1.0f + 0.01f * i, q[i * d + 1] = 0.5f;
    for (int64_t j = 0; j < sk; ++j) {
      k[j * d] = float(step * j), k[j * d + 1] = float(std::sin(0.7 * j));
      v[j * d] = float(std::cos(0.3 * j)), v[j * d + 1] = float(j % 7);
    }
    std::vector<int64_t> qst = {sq * d, sq * d, d, 1}, kst = {sk * d, sk * d, d, 1}, lst = {sq, sq, 1};
    kiln_attention_fwd_f32(shape, 0, 1.0f, q.data(), qst.data(), k.data(), kst.data(), v.data(), kst.data(), out.data(),
                           qst.data(), lse.data(), lst.data());
    for (int64_t i = 0; i < sq; ++i) {
      std::vector<double> s(sk);
      double m = -INFINITY, l = 0, o[d] = {0, 0};
      for (int64_t j = 0; j < sk; ++j) {
        s[j] = double(q[i * d]) * k[j * d] + double(q[i * d + 1]) * k[j * d + 1];
        m = std::max(m, s[j]);
      }
      for (int64_t j = 0; j < sk; ++j) {
        const double p = std::exp(s[j] - m);
        l += p;
        for (int64_t c = 0; c < d; ++c) o[c] += p * v[j * d + c];
      }
      for (int64_t c = 0; c < d; ++c)
        EXPECT_NEAR(out[i * d + c], o[c] / l, 2e-5 * (1 + std::abs(o[c] / l))) << "step " << step << " row " << i;
      EXPECT_NEAR(lse[i], m + std::log(l), 2e-5 * (1 + std::abs(m))) << "step " << step << " row " << i;
    }
  }
}
