// extern_parts.cpp — multi-result externs write their parts where the graph wants them.
#include "kiln/loops/extern_parts.h"

#include <algorithm>

#include "kiln/loops/realize.h"

namespace kiln {

std::vector<ResultPart> extern_result_parts(const Graph& g, const Node& n) {
  if (n.op != Op::attention && n.op != Op::attention_backward) return {};
  const size_t o = n.op == Op::attention ? 0 : 1;  // the backward's first operand is dout
  const auto qs = g.type(n.inputs[o]).sizes, ks = g.type(n.inputs[o + 1]).sizes, vs = g.type(n.inputs[o + 2]).sizes;
  const size_t r = qs.size();
  const SymExpr b1 = r == 4 ? qs[0] : SymExpr(1), b2 = qs[r - 3];
  const SymExpr sq = qs[r - 2], sk = ks[r - 2], d = qs[r - 1], dv = vs[r - 1];
  // Leading (batch) dims of a part: [b1, b2] for rank-4 operands, [b] for rank 3.
  auto batch_dims = [&](std::vector<SymExpr> tail) {
    std::vector<SymExpr> s(qs.begin(), qs.end() - 2);
    s.insert(s.end(), tail.begin(), tail.end());
    return s;
  };
  if (n.op == Op::attention) {
    // Flat (infer.cpp): out stored as [b1, sq, b2, dv] (heads of a query row adjacent), then lse.
    ResultPart out{batch_dims({sq, dv}), SymExpr(0), {}};
    ResultPart lse{batch_dims({sq}), b1 * b2 * sq * dv, {}};
    if (r == 4) {
      out.strides = {sq * b2 * dv, dv, b2 * dv, SymExpr(1)};
      lse.strides = {b2 * sq, sq, SymExpr(1)};
    } else {
      out.strides = {sq * dv, dv, SymExpr(1)};
      lse.strides = {sq, SymExpr(1)};
    }
    return {out, lse};
  }
  // Backward: per batch element, dq, dk and dv as consecutive row-major blocks of one packed row.
  const std::vector<SymExpr> flat_strides = contiguous_strides(g.type(n.result).sizes);
  std::vector<ResultPart> parts;
  SymExpr start(0);
  for (auto [rows, cols] : {std::pair{sq, d}, std::pair{sk, d}, std::pair{sk, dv}}) {
    std::vector<SymExpr> st(flat_strides.begin(), flat_strides.end() - 1);
    st.push_back(cols);
    st.push_back(SymExpr(1));
    parts.push_back({batch_dims({rows, cols}), start, st});
    start = start + rows * cols;
  }
  return parts;
}

namespace {

bool same_window(const ResultPart& p, const AffineLayout& l) {
  return l.offset == p.offset && same_layout(p.sizes, l.strides, p.strides);
}

// Who reads `target`: the value of each kernel stage that loads it, -1 for an extern operand or an
// output copy.
std::vector<ValueId> readers_of(const Graph& g, const KernelPlan& plan, ValueId target) {
  std::vector<ValueId> readers;
  for (const Step& st : plan.steps) {
    if (st.kind == Step::Kind::Extern) {
      for (ValueId in : g.node(st.node).inputs) {
        auto lay = affine_layout(g, plan.realized, plan.storage, in);
        if (!lay || lay->base == target) readers.push_back(-1);
      }
      continue;
    }
    for (const Stage& s : plan.kernels[static_cast<size_t>(st.kernel)].stages) {
      std::vector<TracedLoad> loads;
      stage_loads(g, plan, s, loads);
      for (const TracedLoad& l : loads)
        if (l.value == target) readers.push_back(s.dest_output >= 0 ? ValueId(-1) : s.value);
    }
  }
  return readers;
}

}  // namespace

bool plan_extern_parts(const Graph& g, KernelPlan& plan) {
  const size_t nv = g.num_values();
  plan.written_by.assign(nv, -1);
  plan.part_values.clear();
  bool changed = false;
  for (size_t i = 0; i < g.nodes().size(); ++i) {
    const Node& n = g.nodes()[i];
    if (op_kind(n.op) != OpKind::Extern) continue;
    const std::vector<ResultPart> parts = extern_result_parts(g, n);
    const ValueId flat = n.result;
    if (parts.empty() || plan.storage[static_cast<size_t>(flat)].kind != Storage::Kind::Arena) continue;
    // Stored values that are exactly one part, seen through views of the flat buffer.
    std::vector<ValueId> chosen(parts.size(), -1);
    for (size_t v = 0; v < nv; ++v) {
      const Storage& s = plan.storage[v];
      const Node* p = g.producer(static_cast<ValueId>(v));
      if (static_cast<ValueId>(v) == flat || !plan.realized[v] || plan.written_by[v] >= 0 || !p ||
          op_kind(p->op) != OpKind::View || (s.kind != Storage::Kind::Output && s.kind != Storage::Kind::Arena))
        continue;
      std::vector<bool> without = plan.realized;
      without[v] = false;
      auto lay = affine_layout(g, without, plan.storage, static_cast<ValueId>(v));
      if (!lay || lay->base != flat) continue;
      for (size_t k = 0; k < parts.size(); ++k)
        if (chosen[k] < 0 && g.type(static_cast<ValueId>(v)).sizes == parts[k].sizes && same_window(parts[k], *lay)) {
          chosen[k] = static_cast<ValueId>(v);
          break;
        }
    }
    // Only the chosen values' own stages may read the flat buffer: once a part is written elsewhere,
    // the flat buffer no longer holds it.
    bool others_read = false;
    for (ValueId reader : readers_of(g, plan, flat))
      if (reader < 0 || std::find(chosen.begin(), chosen.end(), reader) == chosen.end()) others_read = true;
    if (others_read || std::all_of(chosen.begin(), chosen.end(), [](ValueId v) { return v < 0; })) continue;
    for (ValueId v : chosen)
      if (v >= 0) plan.written_by[static_cast<size_t>(v)] = static_cast<int32_t>(i);
    if (std::all_of(chosen.begin(), chosen.end(), [](ValueId v) { return v >= 0; }))
      plan.storage[static_cast<size_t>(flat)] = Storage{};  // nothing lands in it: not stored at all
    plan.part_values[static_cast<int32_t>(i)] = chosen;
    changed = true;
  }
  return changed;
}

}  // namespace kiln
