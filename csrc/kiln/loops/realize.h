// realize.h — which values get storage (realized) and which are recomputed inside their users.
#pragma once
#include <vector>

#include "kiln/loops/kernel_plan.h"
#include "kiln/loops/load_trace.h"

namespace kiln {

// Fills plan.realized, plan.storage kinds/strides (arena offsets come later) and plan.output_alias.
void decide_realization(const Graph& g, const std::vector<bool>& alias_ok, KernelPlan& plan);

// Groups realized values into kernels and orders kernels and extern calls into plan.steps.
void group_into_kernels(const Graph& g, KernelPlan& plan);

// A stage's domain coordinates: o<k> for its k-th outer dim, i<k> for its k-th inner dim.
std::vector<SymExpr> stage_domain_coords(const Stage& s);

// The loads one element of stage `s` makes (in its domain coordinates).
void stage_loads(const Graph& g, const KernelPlan& plan, const Stage& s, std::vector<TracedLoad>& out);

// Decides which mutated inputs each output may be written into (plan.in_place_of). `candidates` are
// (output, input) pairs: the graph's new value of that input. A pair is taken only when no old value
// can be read after the new one is written: every read of the input, anywhere in the plan, is in the
// stage that stores the output, at the element it stores, and the two share sizes and strides.
void plan_in_place(const Graph& g, const std::vector<std::pair<int32_t, int32_t>>& candidates, KernelPlan& plan);

// Merges matmul steps of a run of extern steps that share A (or B: the same window) and whose other
// operand and C agree in sizes and strides into one step (Step::siblings), computed by one grouped
// GEMM call at the first member's place.
void plan_gemm_groups(const Graph& g, KernelPlan& plan);

// Attaches to a matmul the kernel right after it when that kernel works row by row on the matmul's
// result (Step::epilogue): it then runs per finished block of rows, on the GEMM's threads.
void plan_gemm_epilogues(const Graph& g, KernelPlan& plan);

// Marks kernels whose reductions walk columns to run blocks of outer indices in lanes (Kernel::lanes).
void plan_column_kernels(const Graph& g, KernelPlan& plan, const Target& target);

// Assigns arena offsets with reuse by liveness (static sizes) or bump allocation (symbolic sizes).
void plan_memory(const Graph& g, KernelPlan& plan);

}  // namespace kiln
