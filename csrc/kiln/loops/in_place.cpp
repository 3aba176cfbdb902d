// in_place.cpp — which outputs may be written straight into the input they replace (AdamW's p, m, v).
#include <algorithm>

#include "kiln/loops/realize.h"

namespace kiln {

void plan_in_place(const Graph& g, const std::vector<std::pair<int32_t, int32_t>>& candidates, KernelPlan& plan) {
  plan.in_place_of.assign(g.outputs().size(), -1);
  std::vector<bool> input_taken(g.inputs().size(), false);
  for (auto [j, i] : candidates) {
    if (j < 0 || i < 0 || static_cast<size_t>(j) >= g.outputs().size() || static_cast<size_t>(i) >= g.inputs().size())
      continue;
    if (plan.in_place_of[static_cast<size_t>(j)] >= 0 || input_taken[static_cast<size_t>(i)]) continue;
    const ValueId out = g.outputs()[static_cast<size_t>(j)].value;
    const ValueId in = g.inputs()[static_cast<size_t>(i)].value;
    if (out == in || plan.output_alias[static_cast<size_t>(j)]) continue;
    const TensorType &ot = g.type(out), &it = g.type(in);
    if (ot.dtype != it.dtype || ot.sizes != it.sizes ||
        !same_layout(ot.sizes, g.outputs()[static_cast<size_t>(j)].strides, g.inputs()[static_cast<size_t>(i)].strides))
      continue;
    // The input must not be visible through another output (a view of it, or it returned as is).
    bool exposed = false;
    for (size_t k = 0; k < g.outputs().size(); ++k) {
      const auto& a = plan.output_alias[k];
      if (g.outputs()[k].value == in || (a && a->base == in)) exposed = true;
    }
    // Extern calls read their operands in place: any that reaches the input rules it out.
    for (const Node& n : g.nodes()) {
      if (op_kind(n.op) != OpKind::Extern) continue;
      for (ValueId v : n.inputs) {
        auto l = affine_layout(g, plan.realized, plan.storage, v);
        if (v == in || (l && l->base == in)) exposed = true;
      }
    }
    if (exposed) continue;
    // The stage that stores the output, and every load of the input in the whole plan.
    const Stage* writer = nullptr;
    bool safe = true;
    for (const Kernel& k : plan.kernels)
      for (const Stage& s : k.stages) {
        const bool writes = s.dest_output == j || (s.dest_output < 0 && s.value == out);
        if (writes) writer = &s;
        std::vector<TracedLoad> loads;
        stage_loads(g, plan, s, loads);
        const auto coords = stage_domain_coords(s);
        for (const TracedLoad& l : loads) {
          if (l.value != in) continue;
          // Only the writer may read it, each element just before overwriting that same element.
          if (!writes || s.reduction || l.data_dependent || l.coords != coords) safe = false;
        }
      }
    if (!safe || writer == nullptr || writer->reduction) continue;
    const Storage& st = plan.storage[static_cast<size_t>(out)];
    if (writer->dest_output < 0 && !(st.kind == Storage::Kind::Output && st.index == j)) continue;
    plan.in_place_of[static_cast<size_t>(j)] = i;
    input_taken[static_cast<size_t>(i)] = true;
  }
}

}  // namespace kiln
