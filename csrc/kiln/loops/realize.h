// realize.h — which values get storage (realized) and which are recomputed inside their users.
#pragma once
#include <vector>

#include "kiln/loops/kernel_plan.h"

namespace kiln {

// Fills plan.realized, plan.storage kinds/strides (arena offsets come later) and plan.output_alias.
void decide_realization(const Graph& g, const std::vector<bool>& alias_ok, KernelPlan& plan);

// Groups realized values into kernels and orders kernels and extern calls into plan.steps.
void group_into_kernels(const Graph& g, KernelPlan& plan);

// Assigns arena offsets with reuse by liveness (static sizes) or bump allocation (symbolic sizes).
void plan_memory(const Graph& g, KernelPlan& plan);

}  // namespace kiln
