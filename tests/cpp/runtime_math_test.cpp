// runtime_math_test.cpp — error bounds of the prelude's vectorizable math (and the fused attention's
// vector exp), over every float in range.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kiln/runtime/kiln_prelude.h"
#include "kiln/runtime/kiln_runtime.h"
#include "kiln/runtime/simd.h"
#include "kiln/runtime/softmax_exp.h"

// Reference: the double libm result rounded to float, the correctly rounded result except where the
// exact value lies within about 2^-29 ulp of a midpoint between two floats. exp, log and rsqrt
// are swept over every float of their range; the others over every float where they are more than
// their leading term (x near 0, +-1 or -1 where they saturate) and 1 in kTailStride floats of the
// rest. The file is built once per ISA level with that level's flags, as generated code is
// (CMakeLists.txt), so kiln's side vectorizes and libm's double functions dominate: 65 to 95 s in all
// on one core. Every float is swept at the CPU's own level; at the levels below it (forced, slower,
// the baseline without FMA) 1 float in kLowerLevelStride, so that each level's code is still checked
// across every range.

namespace {

constexpr uint32_t kTailStride = 16;
constexpr uint32_t kLowerLevelStride = 13;

// 1 where this build's level is the CPU's best, kLowerLevelStride below it.
uint32_t level_stride() {
  static const uint32_t s = [] {
    const int built = kiln_isa_from_name(kiln_rt::simd::kLevelName);
    // AMX is not vector code: an AVX-512 build is the CPU's own level there too.
    return built >= std::min<int>(kiln_get_target()->detected_isa, KILN_ISA_AVX512) ? 1u : kLowerLevelStride;
  }();
  return s;
}

uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

int64_t ordered(float f) {
  int32_t i;
  std::memcpy(&i, &f, 4);
  return i < 0 ? static_cast<int64_t>(INT32_MIN) - i : i;
}

int64_t ulp_distance(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b) ? 0 : INT64_MAX;
  int64_t d = ordered(a) - ordered(b);
  return d < 0 ? -d : d;
}

struct Worst {
  int64_t ulp = 0;
  float x = 0, got = 0, want = 0;
};

std::ostream& operator<<(std::ostream& os, const Worst& w) {
  return os << w.ulp << " ulp at x = " << std::hexfloat << w.x << std::defaultfloat << " (" << w.x << "): got " << w.got
            << ", want " << w.want;
}

// Every `stride`-th float from `a` to `b` (same sign; the bit patterns run monotonically between
// them). kiln's side is computed a block at a time in a plain loop, the shape generated code has.
template <class F, class Ref>
void sweep(float a, float b, uint32_t stride, F f, Ref ref, Worst& w) {
  constexpr uint32_t kBlock = 4096;
  static float xs[kBlock], ys[kBlock];
  uint64_t lo = std::min(bits_of(a), bits_of(b)), hi = std::max(bits_of(a), bits_of(b));
  stride *= level_stride();
  for (uint64_t base = lo; base <= hi; base += uint64_t{kBlock} * stride) {
    uint32_t n = 0;
    for (uint64_t u = base; u <= hi && n < kBlock; u += stride) {
      uint32_t u32 = static_cast<uint32_t>(u);
      std::memcpy(&xs[n++], &u32, 4);
    }
    for (uint32_t i = 0; i < n; ++i) ys[i] = f(xs[i]);
    for (uint32_t i = 0; i < n; ++i) {
      float want = ref(xs[i]);
      int64_t d = ulp_distance(ys[i], want);
      if (d > w.ulp) w = {d, xs[i], ys[i], want};
    }
  }
}

// Both signs: every float with `dense_from` <= |x| <= `dense_to`, and the tails [0, dense_from) and
// (dense_to, tail_to] on the stride.
template <class F, class Ref>
Worst sweep_both_signs(float dense_from, float dense_to, float tail_to, F f, Ref ref) {
  Worst w;
  for (float s : {1.0f, -1.0f}) {
    sweep(s * 0.0f, s * dense_from, kTailStride, f, ref, w);
    sweep(s * dense_from, s * dense_to, 1, f, ref, w);
    sweep(s * dense_to, s * tail_to, kTailStride, f, ref, w);
  }
  return w;
}

bool is_neg_zero(float x) { return x == 0.0f && std::signbit(x); }
bool is_pos_zero(float x) { return x == 0.0f && !std::signbit(x); }

constexpr float kMaxFloat = 0x1.fffffep127f;
constexpr float kMinDenormal = 0x1p-149f;

}  // namespace

// Every float in [-104, 89] (about 2.2e9 inputs), exp's whole finite, non-zero range: measured 1 ulp.
TEST(RuntimeMath, ExpFloatWithinOneUlpOverItsWholeRange) {
  auto f = [](float x) { return kiln_rt::exp(x); };
  auto ref = [](float x) { return static_cast<float>(std::exp(static_cast<double>(x))); };
  Worst w;
  sweep(0.0f, 89.0f, 1, f, ref, w);
  sweep(-0.0f, -104.0f, 1, f, ref, w);
  EXPECT_LE(w.ulp, 1) << w;
}

TEST(RuntimeMath, ExpFloatSpecialValues) {
  EXPECT_EQ(kiln_rt::exp(INFINITY), INFINITY);
  EXPECT_EQ(kiln_rt::exp(-INFINITY), 0.0f);
  EXPECT_TRUE(std::isnan(kiln_rt::exp(NAN)));
  EXPECT_EQ(kiln_rt::exp(0.0f), 1.0f);
  EXPECT_EQ(kiln_rt::exp(-0.0f), 1.0f);
  EXPECT_EQ(kiln_rt::exp(89.0f), INFINITY);
  EXPECT_EQ(kiln_rt::exp(-105.0f), 0.0f);
}

// Every finite float in (-18, 89) except |x| < 2^-20 (where expm1(x) rounds to x; on the stride):
// measured 1 ulp. Below -18 it is -1 (strided to -1e30).
TEST(RuntimeMath, Expm1FloatWithinOneUlp) {
  auto f = [](float x) { return kiln_rt::expm1(x); };
  auto ref = [](float x) { return static_cast<float>(std::expm1(static_cast<double>(x))); };
  Worst w;
  sweep(0.0f, 0x1p-20f, kTailStride, f, ref, w);
  sweep(0x1p-20f, 89.0f, 1, f, ref, w);
  sweep(-0.0f, -0x1p-20f, kTailStride, f, ref, w);
  sweep(-0x1p-20f, -18.0f, 1, f, ref, w);
  sweep(-18.0f, -1e30f, kTailStride, f, ref, w);
  EXPECT_LE(w.ulp, 1) << w;
}

TEST(RuntimeMath, Expm1FloatSpecialValues) {
  EXPECT_EQ(kiln_rt::expm1(INFINITY), INFINITY);
  EXPECT_EQ(kiln_rt::expm1(-INFINITY), -1.0f);
  EXPECT_TRUE(std::isnan(kiln_rt::expm1(NAN)));
  EXPECT_TRUE(is_pos_zero(kiln_rt::expm1(0.0f)));
  EXPECT_TRUE(is_neg_zero(kiln_rt::expm1(-0.0f)));
  EXPECT_EQ(kiln_rt::expm1(kMinDenormal), kMinDenormal);
  EXPECT_EQ(kiln_rt::expm1(-kMinDenormal), -kMinDenormal);
  EXPECT_EQ(kiln_rt::expm1(89.0f), INFINITY);
  EXPECT_LE(ulp_distance(kiln_rt::expm1(88.72f), static_cast<float>(std::expm1(double{88.72f}))), 1);
  EXPECT_EQ(kiln_rt::expm1(-kMaxFloat), -1.0f);
}

// Every positive finite float, denormals included (about 2.1e9 inputs): measured 1 ulp.
TEST(RuntimeMath, LogFloatWithinOneUlpOverEveryPositiveFloat) {
  Worst w;
  sweep(
      kMinDenormal, kMaxFloat, 1, [](float x) { return kiln_rt::log(x); },
      [](float x) { return static_cast<float>(std::log(static_cast<double>(x))); }, w);
  EXPECT_LE(w.ulp, 1) << w;
}

TEST(RuntimeMath, LogFloatSpecialValues) {
  EXPECT_EQ(kiln_rt::log(0.0f), -INFINITY);
  EXPECT_EQ(kiln_rt::log(-0.0f), -INFINITY);
  EXPECT_EQ(kiln_rt::log(INFINITY), INFINITY);
  EXPECT_TRUE(std::isnan(kiln_rt::log(-INFINITY)));
  EXPECT_TRUE(std::isnan(kiln_rt::log(-1.0f)));
  EXPECT_TRUE(std::isnan(kiln_rt::log(-kMinDenormal)));
  EXPECT_TRUE(std::isnan(kiln_rt::log(NAN)));
  EXPECT_TRUE(is_pos_zero(kiln_rt::log(1.0f)));
  EXPECT_LE(ulp_distance(kiln_rt::log(kMinDenormal), static_cast<float>(std::log(double{kMinDenormal}))), 1);
}

// Every float in (-1, 2^24] except |x| < 2^-20 (log1p(x) rounds to x there; on the stride, as is
// (2^24, max], where the rounding of 1 + x no longer matters): measured 1 ulp.
TEST(RuntimeMath, Log1pFloatWithinOneUlp) {
  auto f = [](float x) { return kiln_rt::log1p(x); };
  auto ref = [](float x) { return static_cast<float>(std::log1p(static_cast<double>(x))); };
  Worst w;
  sweep(0.0f, 0x1p-20f, kTailStride, f, ref, w);
  sweep(0x1p-20f, 0x1p24f, 1, f, ref, w);
  sweep(0x1p24f, kMaxFloat, kTailStride, f, ref, w);
  sweep(-0.0f, -0x1p-20f, kTailStride, f, ref, w);
  sweep(-0x1p-20f, -0x1.fffffep-1f, 1, f, ref, w);
  EXPECT_LE(w.ulp, 1) << w;
}

TEST(RuntimeMath, Log1pFloatSpecialValues) {
  EXPECT_EQ(kiln_rt::log1p(-1.0f), -INFINITY);
  EXPECT_TRUE(std::isnan(kiln_rt::log1p(-1.0000001f)));
  EXPECT_TRUE(std::isnan(kiln_rt::log1p(-INFINITY)));
  EXPECT_TRUE(std::isnan(kiln_rt::log1p(NAN)));
  EXPECT_EQ(kiln_rt::log1p(INFINITY), INFINITY);
  EXPECT_TRUE(is_pos_zero(kiln_rt::log1p(0.0f)));
  EXPECT_TRUE(is_neg_zero(kiln_rt::log1p(-0.0f)));
  EXPECT_EQ(kiln_rt::log1p(kMinDenormal), kMinDenormal);
  EXPECT_EQ(kiln_rt::log1p(-kMinDenormal), -kMinDenormal);
  EXPECT_LE(ulp_distance(kiln_rt::log1p(kMaxFloat), static_cast<float>(std::log1p(double{kMaxFloat}))), 1);
}

// Every float with 2^-16 <= |x| <= 9.02 (tanh rounds to +-1 from 9.0109), the rest on the stride:
// measured 1 ulp.
TEST(RuntimeMath, TanhFloatWithinOneUlp) {
  Worst w = sweep_both_signs(
      0x1p-16f, 9.02f, kMaxFloat, [](float x) { return kiln_rt::tanh(x); },
      [](float x) { return static_cast<float>(std::tanh(static_cast<double>(x))); });
  EXPECT_LE(w.ulp, 1) << w;
}

TEST(RuntimeMath, TanhFloatSpecialValues) {
  EXPECT_EQ(kiln_rt::tanh(INFINITY), 1.0f);
  EXPECT_EQ(kiln_rt::tanh(-INFINITY), -1.0f);
  EXPECT_TRUE(std::isnan(kiln_rt::tanh(NAN)));
  EXPECT_TRUE(is_pos_zero(kiln_rt::tanh(0.0f)));
  EXPECT_TRUE(is_neg_zero(kiln_rt::tanh(-0.0f)));
  EXPECT_EQ(kiln_rt::tanh(kMinDenormal), kMinDenormal);
  EXPECT_EQ(kiln_rt::tanh(-kMinDenormal), -kMinDenormal);
  EXPECT_EQ(kiln_rt::tanh(9.5f), 1.0f);
  EXPECT_EQ(kiln_rt::tanh(-kMaxFloat), -1.0f);
}

// Every float with 2^-16 <= |x| <= 3.92 (erf rounds to +-1 from 3.9192059), the rest on the stride:
// measured 1 ulp.
TEST(RuntimeMath, ErfFloatWithinOneUlp) {
  Worst w = sweep_both_signs(
      0x1p-16f, 3.92f, kMaxFloat, [](float x) { return kiln_rt::erf(x); },
      [](float x) { return static_cast<float>(std::erf(static_cast<double>(x))); });
  EXPECT_LE(w.ulp, 1) << w;
}

TEST(RuntimeMath, ErfFloatSpecialValues) {
  EXPECT_EQ(kiln_rt::erf(INFINITY), 1.0f);
  EXPECT_EQ(kiln_rt::erf(-INFINITY), -1.0f);
  EXPECT_TRUE(std::isnan(kiln_rt::erf(NAN)));
  EXPECT_TRUE(is_pos_zero(kiln_rt::erf(0.0f)));
  EXPECT_TRUE(is_neg_zero(kiln_rt::erf(-0.0f)));
  EXPECT_EQ(kiln_rt::erf(4.0f), 1.0f);
  EXPECT_EQ(kiln_rt::erf(-kMaxFloat), -1.0f);
}

// Every positive finite float: 1 / sqrt(x) with IEEE sqrt and division, measured 1 ulp.
TEST(RuntimeMath, RsqrtFloatWithinOneUlpOverEveryPositiveFloat) {
  Worst w;
  sweep(
      kMinDenormal, kMaxFloat, 1, [](float x) { return kiln_rt::rsqrt(x); },
      [](float x) { return static_cast<float>(1.0 / std::sqrt(static_cast<double>(x))); }, w);
  EXPECT_LE(w.ulp, 1) << w;
}

TEST(RuntimeMath, RsqrtFloatSpecialValues) {
  EXPECT_EQ(kiln_rt::rsqrt(0.0f), INFINITY);
  EXPECT_EQ(kiln_rt::rsqrt(-0.0f), -INFINITY);
  EXPECT_TRUE(is_pos_zero(kiln_rt::rsqrt(INFINITY)));
  EXPECT_TRUE(std::isnan(kiln_rt::rsqrt(-1.0f)));
  EXPECT_TRUE(std::isnan(kiln_rt::rsqrt(-kMinDenormal)));
  EXPECT_TRUE(std::isnan(kiln_rt::rsqrt(-INFINITY)));
  EXPECT_TRUE(std::isnan(kiln_rt::rsqrt(NAN)));
  EXPECT_EQ(kiln_rt::rsqrt(4.0f), 0.5f);
  EXPECT_LE(ulp_distance(kiln_rt::rsqrt(kMinDenormal), static_cast<float>(1.0 / std::sqrt(double{kMinDenormal}))), 1);
}

// The activations built on them keep their special values.
TEST(RuntimeMath, ActivationsOnTheVectorMath) {
  EXPECT_EQ(kiln_rt::sigmoid(-INFINITY), 0.0f);
  EXPECT_EQ(kiln_rt::sigmoid(INFINITY), 1.0f);
  EXPECT_TRUE(std::isnan(kiln_rt::sigmoid(NAN)));
  EXPECT_EQ(kiln_rt::gelu(INFINITY), INFINITY);
  EXPECT_TRUE(std::isnan(kiln_rt::gelu(NAN)));
  EXPECT_EQ(kiln_rt::gelu_tanh(INFINITY), INFINITY);
  EXPECT_NEAR(kiln_rt::gelu(1.0f), 0.8413447f, 1e-6f);
  EXPECT_NEAR(kiln_rt::gelu_tanh(1.0f), 0.8411920f, 1e-6f);
  EXPECT_NEAR(kiln_rt::silu(1.0f), 0.7310586f, 1e-6f);
}

// The fused attention's exp, one vector of the level at a time as the kernels call it: every float in
// [-87.3, 0] (about 1.1e9 inputs, the arguments a softmax gives it once the row max is subtracted):
// measured 1 ulp. Below -87.3, and for masked (-inf) entries, it gives exp(-87.3), a normal float.
TEST(RuntimeMath, SoftmaxExpVectorWithinOneUlpOnSoftmaxArguments) {
  using V = kiln_rt::simd::Vec<float>::V;
  constexpr int L = kiln_rt::simd::Vec<float>::L;
  auto ref = [](float x) { return static_cast<float>(std::exp(static_cast<double>(x))); };
  Worst w;
  const uint32_t lo = bits_of(-0.0f), hi = bits_of(-87.3f);  // negative floats: bits grow with |x|
  alignas(64) float xs[L], ys[L];
  const uint64_t stride = level_stride();
  for (uint64_t base = lo; base <= hi; base += L * stride) {
    for (int i = 0; i < L; ++i) {
      const uint32_t u = static_cast<uint32_t>(std::min<uint64_t>(base + i * stride, hi));
      std::memcpy(&xs[i], &u, 4);
    }
    V x;
    std::memcpy(&x, xs, sizeof x);
    const V y = kiln_rt::attn::softmax_exp(x);
    std::memcpy(ys, &y, sizeof y);
    for (int i = 0; i < L; ++i) {
      const float want = ref(xs[i]);
      const int64_t d = ulp_distance(ys[i], want);
      if (d > w.ulp) w = {d, xs[i], ys[i], want};
    }
  }
  EXPECT_LE(w.ulp, 1) << w;

  const float specials[8] = {-INFINITY, -1e30f, -87.31f, -200.0f, NAN, 0.0f, -0.0f, -1.0f};
  float y[8];
  for (int i0 = 0; i0 < 8; i0 += L) {  // 8 specials in vectors of L lanes (4 on the baseline)
    V x{};
    for (int i = 0; i < L && i0 + i < 8; ++i) x[i] = specials[i0 + i];
    const V r = kiln_rt::attn::softmax_exp(x);
    for (int i = 0; i < L && i0 + i < 8; ++i) y[i0 + i] = r[i];
  }
  const float* special = specials;
  const float floor_value = ref(-87.3f);
  for (int i = 0; i < 4; ++i) EXPECT_LE(ulp_distance(y[i], floor_value), 1) << "x = " << special[i];
  EXPECT_TRUE(std::isnan(y[4]));
  EXPECT_EQ(y[5], 1.0f);
  EXPECT_EQ(y[6], 1.0f);
  EXPECT_LE(ulp_distance(y[7], ref(-1.0f)), 1);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(kiln_rt::attn::softmax_exp(special[i]) == y[i] || std::isnan(y[i]), true);
}
