// step_reads.cpp — what each step of a plan reads and writes (memory planning, the plan verifier).
#include "kiln/loops/step_reads.h"

#include "kiln/loops/load_trace.h"
#include "kiln/support/error.h"

namespace kiln {

std::vector<std::set<ValueId>> step_reads(const Graph& g, const KernelPlan& plan) {
  std::vector<std::set<ValueId>> reads(plan.steps.size());
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    const Step& st = plan.steps[i];
    if (st.kind == Step::Kind::Extern) {
      for (int32_t e : st.extern_nodes())
        for (ValueId in : g.node(e).inputs) {
          auto lay = affine_layout(g, plan.realized, plan.storage, in);
          KILN_CHECK(lay.has_value(), "extern operand without a layout");
          reads[i].insert(lay->base);
        }
    }
    if (st.kernel_run() < 0) continue;
    for (const Stage& s : plan.kernels[static_cast<size_t>(st.kernel_run())].stages) {
      std::vector<TracedLoad> loads;
      std::vector<SymExpr> coords(s.domain.size(), SymExpr(0));
      if (s.dest_output >= 0)
        loads.push_back({s.value, coords, false});
      else
        trace_node_loads(g, plan.realized, *g.producer(s.value), coords, loads);
      for (const auto& l : loads) reads[i].insert(l.value);
    }
  }
  return reads;
}

StepLiveness step_liveness(const Graph& g, const KernelPlan& plan, const std::vector<std::set<ValueId>>& reads) {
  const size_t nv = g.num_values();
  StepLiveness r{std::vector<int64_t>(nv, -1), std::vector<int64_t>(nv, -1)};
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    const Step& st = plan.steps[i];
    if (st.kind == Step::Kind::Extern) {
      for (int32_t e : st.extern_nodes()) r.def[static_cast<size_t>(g.node(e).result)] = static_cast<int64_t>(i);
      auto parts = plan.part_values.find(st.node);
      if (parts != plan.part_values.end())
        for (ValueId v : parts->second)
          if (v >= 0) r.def[static_cast<size_t>(v)] = static_cast<int64_t>(i);
    }
    if (st.kernel_run() >= 0)
      for (const Stage& s : plan.kernels[static_cast<size_t>(st.kernel_run())].stages)
        if (s.dest_output < 0 && r.def[static_cast<size_t>(s.value)] < 0)
          r.def[static_cast<size_t>(s.value)] = static_cast<int64_t>(i);
    for (ValueId v : reads[i]) r.last[static_cast<size_t>(v)] = static_cast<int64_t>(i);
  }
  return r;
}

}  // namespace kiln
