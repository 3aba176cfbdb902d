// plan_verifier.h — checks a kernel plan's invariants after each planning step (KILN_VERIFY, tests).
#pragma once
#include "kiln/loops/kernel_plan.h"

namespace kiln {

// How far planning has got: what the plan must hold by then.
enum class PlanStage {
  Realized,   // realized values have storage kinds and strides
  Grouped,    // ... and every realized value is computed once, by a step in dependency order
  Placed,     // ... and arena values have offsets, and no two live at the same time overlap
  Scheduled,  // ... and every reduction stage has a schedule that fits its kernel
};

// Throws InternalError naming the broken invariant and the value, kernel or step.
void verify_plan(const Graph& g, const KernelPlan& plan, PlanStage stage);

}  // namespace kiln
