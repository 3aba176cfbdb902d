// column_kernels.cpp — kernels that reduce down columns run a block of outer indices in vector lanes.
//
// A kernel computes, per outer index, its stages' inner loops. When a reduction's inner loop walks
// its inputs with a large stride while neighbouring outer indices are neighbours in memory (the
// weight gradient of a norm: sum over tokens, one column per outer index), that inner loop is a
// scalar gather touching one cache line per element, and every line is fetched again for each of
// its 16 columns. Such a kernel runs instead a block of Kernel::lanes consecutive outer indices at
// once, with the lane loop innermost: each step of the reduction loads a contiguous run of the block
// and the compiler vectorizes across lanes. Each outer index still reduces its own elements in loop
// order, one accumulator per lane, so results do not depend on the block or the thread split.
#include <optional>

#include "kiln/loops/realize.h"

namespace kiln {

namespace {

// The constant step of `addr` when loop variable `var` steps by one, if it is constant.
std::optional<int64_t> stride_along(const SymExpr& addr, const std::string& var) {
  const SymExpr next = addr.substitute([&](const std::string& s) -> std::optional<SymExpr> {
    if (s == var) return SymExpr::symbol(var) + SymExpr(1);
    return std::nullopt;
  });
  const SymExpr d = next - addr;
  if (d.is_const()) return d.const_value();
  return std::nullopt;
}

// Votes of one access for lanes over the outer index (+1: contiguous across outer indices, strided
// along the inner loop) or against (-1: contiguous along the inner loop, which lanes would break).
int vote(const SymExpr& addr, const std::string& inner) {
  const auto so = stride_along(addr, "o0"), si = stride_along(addr, inner);
  if (so == 1 && si && *si != 0 && *si != 1) return 1;
  if (si == 1 && so != 0) return -1;
  return 0;
}

SymExpr address(const Storage& s, const std::vector<SymExpr>& coords) {
  SymExpr off(0);
  for (size_t d = 0; d < coords.size(); ++d) off = off + coords[d] * s.strides[d];
  return off;
}

bool is_arg_reduction(const Graph& g, const Stage& s) {
  const Node* n = g.producer(s.value);
  return s.reduction && n && (n->op == Op::argmax || n->op == Op::argmin);
}

}  // namespace

void plan_column_kernels(const Graph& g, KernelPlan& plan, const Target& target) {
  // Outer indices per block: several vectors of floats, enough to amortise the reduction loop.
  const int64_t lanes = target.column_lanes();
  for (Kernel& k : plan.kernels) {
    k.lanes = 0;
    // One outer dim, so that consecutive outer indices are consecutive columns.
    if (k.outer.size() != 1 || (k.outer[0].is_const() && k.outer[0].const_value() < 16)) continue;
    int score = 0;
    bool ok = true, reduces = false;
    for (const Stage& s : k.stages) {
      if (is_arg_reduction(g, s)) ok = false;
      if (!ok) break;
      if (s.inner_dims.empty()) continue;
      reduces = reduces || s.reduction;
      const std::string inner = "i" + std::to_string(s.inner_dims.size() - 1);
      std::vector<TracedLoad> loads;
      stage_loads(g, plan, s, loads);
      for (const TracedLoad& l : loads) {
        // A gathered row (an embedding) has no stride to vote with; lanes read it contiguously too.
        const Storage& st = plan.storage[static_cast<size_t>(l.value)];
        if (l.data_dependent || st.kind == Storage::Kind::Local || st.kind == Storage::Kind::None) continue;
        score += vote(address(st, l.coords), inner);
      }
      // A map stage's stores move with its loops too.
      const Storage& dst = plan.storage[static_cast<size_t>(s.value)];
      if (!s.reduction && s.dest_output < 0 && dst.kind != Storage::Kind::Local && dst.kind != Storage::Kind::None)
        score += vote(address(dst, stage_domain_coords(s)), inner);
    }
    if (ok && reduces && score > 0) k.lanes = lanes;
  }
}

}  // namespace kiln
