// runtime_math_test.cpp — error bounds of the prelude's vectorizable math, over every float in range.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kiln/runtime/kiln_prelude.h"

namespace {

int64_t ordered(float f) {
  int32_t i;
  std::memcpy(&i, &f, 4);
  return i < 0 ? static_cast<int64_t>(INT32_MIN) - i : i;
}

int64_t ulp_distance(float a, float b) {
  int64_t d = ordered(a) - ordered(b);
  return d < 0 ? -d : d;
}

}  // namespace

// Every float32 in [-104, 89] (about 2.2e9 inputs): exp is within 1 ulp of the correctly rounded
// result. Strided over the bit patterns when CI asks for speed? No: the loop vectorizes and takes
// under a minute on one core; it runs the whole range.
TEST(RuntimeMath, ExpFloatWithinOneUlpOverItsWholeRange) {
  int64_t worst = 0;
  float worst_x = 0;
  for (uint64_t u = 0; u <= 0xffffffffull; u += 1) {
    uint32_t b = static_cast<uint32_t>(u);
    float x;
    std::memcpy(&x, &b, 4);
    if (!(x >= -104.0f && x <= 89.0f)) continue;
    float ref = static_cast<float>(std::exp(static_cast<double>(x)));
    int64_t d = ulp_distance(kiln_rt::exp(x), ref);
    if (d > worst) {
      worst = d;
      worst_x = x;
    }
  }
  EXPECT_LE(worst, 1) << "worst at x = " << worst_x;
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
