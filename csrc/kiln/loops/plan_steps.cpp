// plan_steps.cpp — the table of planning steps, each a function of its own file.
#include "kiln/loops/plan_steps.h"

#include "kiln/loops/extern_parts.h"
#include "kiln/loops/realize.h"
#include "kiln/loops/reduction_schedules.h"
#include "kiln/support/error.h"

namespace kiln {

const std::vector<PlanStepInfo>& all_plan_steps() {
  using P = PlanStage;
  static const std::vector<PlanStepInfo> steps = {
      {"realize", [](const Graph& g, KernelPlan& p, const PlanContext& c) { decide_realization(g, c.alias_ok, p); },
       P::Realized, "which values get memory (realize.cpp); the rest are recomputed inside their users"},
      {"group-kernels", [](const Graph& g, KernelPlan& p, const PlanContext&) { group_into_kernels(g, p); }, P::Grouped,
       "realized values into kernels sharing outer loops, and the order of kernels and externs (fusion.cpp)"},
      {"extern-parts",
       [](const Graph& g, KernelPlan& p, const PlanContext&) {
         if (plan_extern_parts(g, p)) group_into_kernels(g, p);  // parts written in place: fewer copies to group
       },
       P::Grouped,
       "multi-result externs write their parts straight into the values that unpack them (extern_parts.cpp)"},
      {"gemm-groups", [](const Graph& g, KernelPlan& p, const PlanContext&) { plan_gemm_groups(g, p); }, P::Grouped,
       "sibling matmuls sharing an operand become one grouped GEMM call (gemm_groups.cpp)"},
      {"gemm-epilogues", [](const Graph& g, KernelPlan& p, const PlanContext&) { plan_gemm_epilogues(g, p); },
       P::Grouped, "a row-wise kernel after a matmul runs on the GEMM's finished rows (gemm_epilogue.cpp)"},
      {"memory", [](const Graph& g, KernelPlan& p, const PlanContext&) { plan_memory(g, p); }, P::Placed,
       "per-thread rows for kernel-local values, arena offsets with reuse (memory_plan.cpp)"},
      {"column-kernels",
       [](const Graph& g, KernelPlan& p, const PlanContext& c) { plan_column_kernels(g, p, c.target); }, P::Placed,
       "kernels reducing down columns run blocks of outer indices in vector lanes (column_kernels.cpp)"},
      {"reduction-schedules",
       [](const Graph& g, KernelPlan& p, const PlanContext& c) { plan_reduction_schedules(g, p, c.target); },
       P::Scheduled, "how each reduction combines its elements: lanes, blocks, order (reduction_schedules.cpp)"},
      {"in-place",
       [](const Graph& g, KernelPlan& p, const PlanContext& c) { plan_in_place(g, c.in_place_candidates, p); },
       P::Scheduled, "mutated inputs whose new value can be written over the old one (in_place.cpp)"},
  };
  return steps;
}

const PlanStepInfo& find_plan_step(std::string_view name) {
  std::string known;
  for (const PlanStepInfo& s : all_plan_steps()) {
    if (s.name == name) return s;
    known += (known.empty() ? "" : ", ") + s.name;
  }
  throw UserError(str_cat("unknown planning step '", name, "' (known steps: ", known, ")"));
}

std::string print_plan(const Graph& g, const KernelPlan& plan) {
  std::string s = "storage:\n";
  for (size_t v = 0; v < plan.storage.size(); ++v) {
    if (v >= plan.realized.size() || !plan.realized[v]) continue;
    const Storage& st = plan.storage[v];
    static const char* const kKinds[] = {"none", "input", "output", "arena", "local"};
    s += str_cat("  %", v, " ", to_string(g.type(static_cast<ValueId>(v)).sizes), " ",
                 kKinds[static_cast<int>(st.kind)]);
    if (st.kind == Storage::Kind::Input || st.kind == Storage::Kind::Output) s += str_cat(" ", st.index);
    if (st.kind == Storage::Kind::Arena) s += str_cat(" @", st.offset.str());
    if (st.kind == Storage::Kind::Local) s += str_cat(" in kernel ", st.kernel);
    s += str_cat(" strides ", to_string(st.strides), "\n");
  }
  if (!plan.steps.empty()) s += describe_plan(g, plan);
  for (const Kernel& k : plan.kernels)
    for (const Stage& st : k.stages)
      if (st.reduction && st.schedule.kind != ReduceSchedule::Kind::None)
        s += str_cat("schedule %", st.value, " in ", k.name, ": ", describe_schedule(st.schedule), "\n");
  if (plan.steps.empty() && plan.kernels.empty()) s += "(no kernels yet)\n";
  return s;
}

}  // namespace kiln
