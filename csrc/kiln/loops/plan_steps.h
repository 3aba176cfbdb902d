// plan_steps.h — the planning steps by name: what turns a graph into a kernel plan, one step at a
// time (driver/lower.cpp runs them in order; kiln-opt stops after any of them).
#pragma once
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kiln/loops/kernel_plan.h"
#include "kiln/loops/plan_verifier.h"
#include "kiln/target/target.h"

namespace kiln {

// What the steps read besides the graph and the plan so far.
struct PlanContext {
  Target target = Target::host();
  std::vector<bool> alias_ok;                                    // per output: may be returned as a view of an input
  std::vector<std::pair<int32_t, int32_t>> in_place_candidates;  // (output, input) mutation pairs
};

using PlanStepFn = std::function<void(const Graph&, KernelPlan&, const PlanContext&)>;

struct PlanStepInfo {
  std::string name;  // "realize", "group-kernels", ...
  PlanStepFn run;
  PlanStage holds;      // what verify_plan checks after this step
  std::string summary;  // one line for kiln-opt --help
};

// Every planning step (driver/lower.cpp lists the order they run in).
const std::vector<PlanStepInfo>& all_plan_steps();
// The step called `name`; throws UserError listing the known names when there is none.
const PlanStepInfo& find_plan_step(std::string_view name);

// The plan with its storage and its steps, for dumps after each step (NN-<step>.plan).
std::string print_plan(const Graph& g, const KernelPlan& plan);

}  // namespace kiln
