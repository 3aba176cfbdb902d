// gemm_epilogue.cpp — kernels that run as a GEMM's row epilogue: on the GEMM's own threads, for each
// block of rows as soon as it is final, while those rows are still in that core's cache
// (kiln_gemm_f32's rows_done). The GEMM result is still stored; what the epilogue saves is reading it
// back from memory and a separate pass over the threads.
#include <algorithm>

#include "kiln/loops/index_map.h"
#include "kiln/loops/realize.h"

namespace kiln {

namespace {

// Whether kernel k can run as the row epilogue of matmul step x: its flattened outer index ranges over
// the rows of x's results (batch dims folded: row b * M + i), and every element of a result of x it
// reads is in the row of its own outer index. Whatever else it reads was computed before x; what it
// writes the memory planner keeps apart from x's operands (both belong to x's step).
bool runs_per_row(const Graph& g, const KernelPlan& plan, const Step& x, const Kernel& k) {
  if (x.siblings_share_b) return false;  // its rows are the parts' rows one after another: none is reported
  std::vector<ValueId> results;
  for (int32_t e : x.extern_nodes()) results.push_back(g.node(e).result);
  const auto& sizes = g.type(results[0]).sizes;
  if (sizes.size() < 2) return false;
  const std::vector<SymExpr> row_sizes(sizes.begin(), sizes.end() - 1);
  if (product(k.outer) != product(row_sizes)) return false;
  std::vector<SymExpr> outer_vars;
  for (size_t d = 0; d < k.outer.size(); ++d) outer_vars.push_back(SymExpr::symbol("o" + std::to_string(d)));
  const SymExpr row = linearize(outer_vars, k.outer);
  bool reads_x = false;
  for (const Stage& s : k.stages) {
    std::vector<TracedLoad> loads;
    stage_loads(g, plan, s, loads);
    for (const TracedLoad& l : loads) {
      if (std::find(results.begin(), results.end(), l.value) == results.end()) continue;
      if (l.data_dependent) return false;
      const std::vector<SymExpr> lead(l.coords.begin(), l.coords.end() - 1);
      if (linearize(lead, row_sizes) != row) return false;
      reads_x = true;
    }
  }
  return reads_x;
}

}  // namespace

void plan_gemm_epilogues(const Graph& g, KernelPlan& plan) {
  for (size_t i = 0; i + 1 < plan.steps.size(); ++i) {
    Step& s = plan.steps[i];
    const Step& next = plan.steps[i + 1];
    if (s.kind != Step::Kind::Extern || next.kind != Step::Kind::Kernel || g.node(s.node).op != Op::matmul) continue;
    if (!runs_per_row(g, plan, s, plan.kernels[static_cast<size_t>(next.kernel)])) continue;
    s.epilogue = next.kernel;
    plan.steps.erase(plan.steps.begin() + static_cast<std::ptrdiff_t>(i) + 1);
  }
}

}  // namespace kiln
