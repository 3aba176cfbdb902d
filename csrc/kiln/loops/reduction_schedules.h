// reduction_schedules.h — the planning step that decides how each reduction combines its elements.
#pragma once
#include <string>

#include "kiln/loops/kernel_plan.h"
#include "kiln/support/error.h"
#include "kiln/target/target.h"

namespace kiln {

// Sets Stage::schedule of every reduction stage (run after column-kernels, which sets Kernel::lanes).
void plan_reduction_schedules(const Graph& g, KernelPlan& plan, const Target& target);

// "add inner-lanes 16 blocks of 4096": for plan dumps.
std::string describe_schedule(const ReduceSchedule& r);

}  // namespace kiln
