// plan_verifier.cpp — the invariants of a kernel plan: storage, computed once, dependency order,
// epilogues only on matmuls, non-overlapping arena memory for values alive at once.
#include "kiln/loops/plan_verifier.h"

#include <algorithm>

#include "kiln/loops/step_reads.h"
#include "kiln/support/error.h"

namespace kiln {
namespace {

// A multi-result extern whose every part is written straight into the value that unpacks it keeps
// its flat result realized but unstored (extern_parts.h).
bool flat_result_not_stored(const Graph& g, const KernelPlan& plan, size_t v) {
  const int32_t node = g.value(static_cast<ValueId>(v)).node;
  auto parts = plan.part_values.find(node);
  if (node < 0 || parts == plan.part_values.end()) return false;
  return std::all_of(parts->second.begin(), parts->second.end(), [](ValueId p) { return p >= 0; });
}

bool stored(const Graph& g, const KernelPlan& plan, size_t v) {
  return plan.realized[v] && !(plan.storage[v].kind == Storage::Kind::None && flat_result_not_stored(g, plan, v));
}

void check_storage(const Graph& g, const KernelPlan& plan) {
  const size_t nv = g.num_values();
  KILN_CHECK(plan.realized.size() == nv && plan.storage.size() == nv, "plan: realized/storage sized ",
             plan.realized.size(), "/", plan.storage.size(), " for ", nv, " values");
  for (size_t v = 0; v < nv; ++v) {
    const Storage& s = plan.storage[v];
    if (!stored(g, plan, v)) continue;
    KILN_CHECK(s.kind != Storage::Kind::None, "plan: realized %", v, " has no storage");
    KILN_CHECK(s.strides.size() == g.type(static_cast<ValueId>(v)).sizes.size(), "plan: %", v, " has ",
               s.strides.size(), " strides for rank ", g.type(static_cast<ValueId>(v)).sizes.size());
    if (g.value(static_cast<ValueId>(v)).input >= 0)
      KILN_CHECK(s.kind == Storage::Kind::Input, "plan: graph input %", v, " is not stored as an input");
  }
}

// Each realized non-input value is written by exactly one step, and every value a step reads is an
// input or written by an earlier step (or an earlier stage of the same kernel, or, for a matmul's
// epilogue, the matmul itself).
void check_steps(const Graph& g, const KernelPlan& plan) {
  const size_t nv = g.num_values();
  std::vector<int> kernel_runs(plan.kernels.size(), 0);
  std::vector<int64_t> written(nv, -1);
  const auto reads = step_reads(g, plan);
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    const Step& st = plan.steps[i];
    std::vector<ValueId> writes;
    if (st.kind == Step::Kind::Extern) {
      KILN_CHECK(st.node >= 0 && static_cast<size_t>(st.node) < g.nodes().size(), "plan: step ", i, " has node ",
                 st.node);
      for (int32_t e : st.extern_nodes()) {
        const Node& n = g.node(e);
        KILN_CHECK(op_kind(n.op) == OpKind::Extern, "plan: step ", i, " calls ", op_name(n.op), ", not an extern");
        if (stored(g, plan, static_cast<size_t>(n.result))) writes.push_back(n.result);
        KILN_CHECK(st.epilogue < 0 || n.op == Op::matmul, "plan: step ", i, " gives ", op_name(n.op),
                   " an epilogue (matmuls only)");
      }
      auto parts = plan.part_values.find(st.node);
      if (parts != plan.part_values.end())
        for (ValueId v : parts->second)
          if (v >= 0) writes.push_back(v);
    } else {
      KILN_CHECK(st.epilogue < 0 && st.siblings.empty(), "plan: kernel step ", i, " has extern fields");
    }
    const int32_t k = st.kernel_run();
    if (k >= 0) {
      KILN_CHECK(static_cast<size_t>(k) < plan.kernels.size(), "plan: step ", i, " runs kernel ", k);
      ++kernel_runs[static_cast<size_t>(k)];
      for (const Stage& s : plan.kernels[static_cast<size_t>(k)].stages)
        if (s.dest_output < 0) writes.push_back(s.value);
    }
    // Reads before this step's writes are recorded: a value read here must exist already, unless this
    // very step computes it earlier (a kernel's earlier stage, or the matmul an epilogue follows).
    for (ValueId v : reads[i]) {
      const size_t u = static_cast<size_t>(v);
      KILN_CHECK(stored(g, plan, u), "plan: step ", i, " reads %", v, ", which has no storage");
      const bool ready =
          g.value(v).input >= 0 || written[u] >= 0 || std::find(writes.begin(), writes.end(), v) != writes.end();
      KILN_CHECK(ready, "plan: step ", i, " reads %", v, " before any step computes it");
    }
    for (ValueId v : writes) {
      const size_t u = static_cast<size_t>(v);
      KILN_CHECK(plan.realized[u], "plan: step ", i, " computes %", v, ", which is not realized");
      KILN_CHECK(written[u] < 0, "plan: %", v, " is computed by step ", written[u], " and again by step ", i);
      written[u] = static_cast<int64_t>(i);
    }
  }
  for (size_t k = 0; k < plan.kernels.size(); ++k)
    KILN_CHECK(kernel_runs[k] == 1, "plan: kernel ", plan.kernels[k].name, " runs ", kernel_runs[k], " times");
  for (size_t v = 0; v < nv; ++v) {
    if (!stored(g, plan, v) || g.value(static_cast<ValueId>(v)).input >= 0) continue;
    KILN_CHECK(written[v] >= 0, "plan: realized %", v, " is computed by no step");
  }
}

// Arena values alive in overlapping step ranges never share bytes (static sizes; symbolic arenas
// are bump-allocated).
void check_arena(const Graph& g, const KernelPlan& plan) {
  struct Block {
    ValueId v;
    int64_t begin, end, born, dies;
  };
  const auto reads = step_reads(g, plan);
  const StepLiveness live = step_liveness(g, plan, reads);
  std::vector<Block> blocks;
  for (size_t v = 0; v < g.num_values(); ++v) {
    const Storage& s = plan.storage[v];
    if (s.kind != Storage::Kind::Arena) continue;
    const SymExpr bytes =
        g.type(static_cast<ValueId>(v)).numel() * SymExpr(dtype_size(g.type(static_cast<ValueId>(v)).dtype));
    if (!s.offset.is_const() || !bytes.is_const()) return;
    KILN_CHECK(s.offset.const_value() % 64 == 0, "plan: arena value %", v, " at unaligned offset ", s.offset.str());
    blocks.push_back({static_cast<ValueId>(v), s.offset.const_value(), s.offset.const_value() + bytes.const_value(),
                      live.def[v], std::max(live.last[v], live.def[v])});
  }
  if (plan.arena_bytes.is_const())
    for (const Block& b : blocks)
      KILN_CHECK(b.end <= plan.arena_bytes.const_value(), "plan: %", b.v, " ends past the arena");
  for (size_t i = 0; i < blocks.size(); ++i)
    for (size_t j = i + 1; j < blocks.size(); ++j) {
      const Block &a = blocks[i], &b = blocks[j];
      const bool alive_together = a.born <= b.dies && b.born <= a.dies;
      const bool overlap = a.begin < b.end && b.begin < a.end;
      KILN_CHECK(!(alive_together && overlap), "plan: %", a.v, " and %", b.v,
                 " share arena bytes while both are alive (steps ", a.born, "-", a.dies, " and ", b.born, "-", b.dies,
                 ")");
    }
}

// Every reduction has a schedule: outer lanes exactly in lane kernels, inner lanes only over an
// inner loop, arg reductions in order.
void check_schedules(const Graph& g, const KernelPlan& plan) {
  using K = ReduceSchedule::Kind;
  using C = ReduceSchedule::Combine;
  for (const Kernel& k : plan.kernels)
    for (const Stage& s : k.stages) {
      if (!s.reduction) continue;
      const ReduceSchedule& r = s.schedule;
      KILN_CHECK(r.kind != K::None, "plan: reduction %", s.value, " in ", k.name, " has no schedule");
      KILN_CHECK((r.kind == K::OuterLanes) == (k.lanes > 0), "plan: reduction %", s.value, " in ", k.name,
                 " is scheduled in outer lanes iff its kernel runs lanes");
      KILN_CHECK(r.kind != K::InnerLanes || (r.lanes > 0 && !s.inner_dims.empty()), "plan: reduction %", s.value,
                 " has inner lanes without an inner loop");
      KILN_CHECK(r.kind == K::Sequential || (r.combine != C::ArgMax && r.combine != C::ArgMin), "plan: %", s.value,
                 " is an arg reduction out of order");
      (void)g;
    }
}

}  // namespace

void verify_plan(const Graph& g, const KernelPlan& plan, PlanStage stage) {
  check_storage(g, plan);
  if (stage >= PlanStage::Grouped) check_steps(g, plan);
  if (stage >= PlanStage::Placed) check_arena(g, plan);
  if (stage >= PlanStage::Scheduled) check_schedules(g, plan);
}

}  // namespace kiln
