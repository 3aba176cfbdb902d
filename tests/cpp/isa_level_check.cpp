// isa_level_check.cpp — the runtime tests run once per ISA level: with KILN_EXPECT_ISA set (CMake
// sets it beside KILN_ISA), every test is skipped where this CPU cannot run that level, and fails
// where the runtime did not take the forced level, so a level never passes by running another.
#include <gtest/gtest.h>

#include <cstdlib>

#include "kiln/runtime/kiln_runtime.h"

namespace {

class IsaLevel : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* want = std::getenv("KILN_EXPECT_ISA");
    if (!want || !*want) return;
    const int level = kiln_isa_from_name(want);
    ASSERT_GE(level, 0) << "KILN_EXPECT_ISA=" << want << " is not a level";
    kiln_target t;
    if (!kiln_target_for(level, &t))
      GTEST_SKIP() << "this CPU cannot run " << want << " (its best is "
                   << kiln_isa_name(kiln_get_target()->detected_isa) << ")";
    ASSERT_EQ(kiln_get_target()->isa, level) << "KILN_ISA did not force the runtime to " << want;
    const kiln_kernels* k = kiln_kernels_for(level);
    ASSERT_NE(k, nullptr) << kiln_last_error();
    ASSERT_EQ(k->isa, level);
  }
};

const auto* const registered = ::testing::AddGlobalTestEnvironment(new IsaLevel);

}  // namespace
