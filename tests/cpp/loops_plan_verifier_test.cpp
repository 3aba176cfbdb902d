// loops_plan_verifier_test.cpp — the plan verifier accepts what the planning steps produce and names
// what a broken plan breaks: order, kernels run twice, arena overlap, missing storage.
#include <gtest/gtest.h>

#include <string>

#include "kiln/driver/lower.h"
#include "kiln/loops/plan_steps.h"
#include "kiln/loops/plan_verifier.h"
#include "kiln/support/error.h"

namespace kiln {
namespace {

// A matmul between two kernels, with intermediates in the arena.
const char* kGraph = R"(graph(%x: f32[8,8] strides [8,1] "x", %w: f32[8,8] strides [8,1] "w") {
  %a = exp(%x) : f32[8,8]
  %m = amax(%a) {dims=[1], keepdim=true} : f32[8,1]
  %mb = expand(%m) {sizes=[8,8]} : f32[8,8]
  %s = sub(%a, %mb) : f32[8,8]
  %p = matmul(%s, %w) : f32[8,8]
  %q = matmul(%p, %w) : f32[8,8]
  %t = tanh(%q) : f32[8,8]
  return %t strides [8,1]
})";

Lowered planned(const char* text = kGraph) {
  LowerOptions o;
  o.verify = true;  // every step's result verified as it is made
  o.stop_after = "in-place";
  return lower(parse_graph(text), o);
}

void expect_broken(const Lowered& l, const std::string& why) {
  try {
    verify_plan(l.graph, l.plan, PlanStage::Placed);
    FAIL() << "accepted a plan where " << why;
  } catch (const InternalError& e) {
    EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
  }
}

TEST(PlanVerifier, AcceptsEveryStepOfThePipeline) {
  const Lowered l = planned();
  EXPECT_EQ(l.last, "in-place");
  EXPECT_NO_THROW(verify_plan(l.graph, l.plan, PlanStage::Placed));
  EXPECT_GE(l.plan.steps.size(), 3u);
}

TEST(PlanVerifier, NamesAStepThatReadsBeforeItsInputIsComputed) {
  Lowered l = planned();
  std::swap(l.plan.steps.front(), l.plan.steps.back());
  expect_broken(l, "before any step computes it");
}

TEST(PlanVerifier, NamesAKernelThatRunsTwice) {
  Lowered l = planned();
  for (const Step& st : l.plan.steps)
    if (st.kind == Step::Kind::Kernel) {
      l.plan.steps.push_back(st);
      break;
    }
  expect_broken(l, "computed by step");
}

TEST(PlanVerifier, NamesArenaValuesThatShareBytesWhileAlive) {
  Lowered l = planned();
  int arena = 0;
  for (Storage& s : l.plan.storage)
    if (s.kind == Storage::Kind::Arena) {
      s.offset = SymExpr(0);  // every intermediate at offset 0: the live ones collide
      ++arena;
    }
  ASSERT_GE(arena, 2);
  expect_broken(l, "share arena bytes while both are alive");
}

TEST(PlanVerifier, NamesARealizedValueWithoutStorage) {
  Lowered l = planned();
  for (size_t v = 0; v < l.plan.storage.size(); ++v)
    if (l.plan.storage[v].kind == Storage::Kind::Arena) {
      l.plan.storage[v].kind = Storage::Kind::None;
      break;
    }
  expect_broken(l, "has no storage");
}

TEST(Lowering, StopsAfterAnyStepAndRefusesUnknownOnes) {
  for (const std::string& step : lowering_steps()) {
    LowerOptions o;
    o.verify = true;
    o.stop_after = step;
    std::string dumped;
    o.dump = [&](int, const std::string& name, const std::string&, const std::string&) { dumped = name; };
    const Lowered l = lower(parse_graph(kGraph), o);
    EXPECT_EQ(l.last, step);
    EXPECT_EQ(dumped, step);
    EXPECT_EQ(l.cpp.empty(), step != "emit-cpp");
  }
  LowerOptions o;
  o.stop_after = "fuse-everything";
  EXPECT_THROW(lower(parse_graph(kGraph), o), UserError);
  EXPECT_THROW(find_plan_step("fuse-everything"), UserError);
}

TEST(Lowering, EveryPlanningStepIsRegistered) {
  for (const std::string& step : lowering_steps()) {
    if (step == "simplify" || step == "emit-cpp") continue;
    EXPECT_EQ(find_plan_step(step).name, step);
  }
  EXPECT_EQ(all_plan_steps().size(), lowering_steps().size() - 2);
}

}  // namespace
}  // namespace kiln
