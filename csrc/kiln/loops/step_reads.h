// step_reads.h — which realized values each step of a plan reads, and when each is born and last read.
#pragma once
#include <cstdint>
#include <set>
#include <vector>

#include "kiln/loops/kernel_plan.h"

namespace kiln {

// Realized values each step reads (an extern's operands through their view chains, a kernel's
// loads through the values it inlines).
std::vector<std::set<ValueId>> step_reads(const Graph& g, const KernelPlan& plan);

// Per value: the step that writes it (-1: none; an input) and the last step that reads it (-1: none).
// A matmul's epilogue counts as written in the matmul's step: it runs during the GEMM.
struct StepLiveness {
  std::vector<int64_t> def, last;
};
StepLiveness step_liveness(const Graph& g, const KernelPlan& plan, const std::vector<std::set<ValueId>>& reads);

}  // namespace kiln
