// load_trace.cpp — walks inlined producers to the realized values they read.
#include "kiln/loops/load_trace.h"

#include "kiln/loops/index_map.h"
#include "kiln/support/error.h"

namespace kiln {

namespace {

void trace_value(const Graph& g, const std::vector<bool>& realized, ValueId v, const std::vector<SymExpr>& coords,
                 bool dyn, std::vector<TracedLoad>& out) {
  if (realized[static_cast<size_t>(v)]) {
    out.push_back({v, coords, dyn});
    return;
  }
  const Node* n = g.producer(v);
  KILN_CHECK(n != nullptr, "unrealized graph input");
  trace_node_loads(g, realized, *n, coords, out);
  if (dyn)
    for (auto& l : out) l.data_dependent = true;
}

}  // namespace

void trace_node_loads(const Graph& g, const std::vector<bool>& realized, const Node& n,
                      const std::vector<SymExpr>& coords, std::vector<TracedLoad>& out) {
  switch (op_kind(n.op)) {
    case OpKind::Pointwise:
    case OpKind::Reduction:
      for (ValueId in : n.inputs) trace_value(g, realized, in, coords, false, out);
      return;
    case OpKind::Source: return;
    case OpKind::View: trace_value(g, realized, n.inputs[0], view_input_coords(g, n, coords), false, out); return;
    case OpKind::Gather: {
      if (n.op == Op::index_rows) {
        ValueId idx = n.inputs[1];
        size_t r = static_cast<size_t>(g.type(idx).rank());
        std::vector<SymExpr> ic(coords.begin(), coords.begin() + static_cast<long>(r));
        trace_value(g, realized, idx, ic, false, out);
        std::vector<SymExpr> dc{SymExpr::symbol("__row")};
        dc.insert(dc.end(), coords.begin() + static_cast<long>(r), coords.end());
        size_t before = out.size();
        trace_value(g, realized, n.inputs[0], dc, false, out);
        for (size_t k = before; k < out.size(); ++k) out[k].data_dependent = true;
        return;
      }
      if (n.op == Op::cat) {
        size_t d = static_cast<size_t>(n.attr_int("dim"));
        SymExpr off(0);
        for (ValueId in : n.inputs) {
          auto c = coords;
          c[d] = c[d] - off;
          trace_value(g, realized, in, c, false, out);
          off = off + g.type(in).sizes[d];
        }
        return;
      }
      if (n.op == Op::slice_scatter) {
        size_t d = static_cast<size_t>(n.attr_int("dim"));
        trace_value(g, realized, n.inputs[0], coords, false, out);
        auto c = coords;
        c[d] = floordiv(c[d] - n.attr_sym("start"), SymExpr(n.attr_int("step")));
        trace_value(g, realized, n.inputs[1], c, false, out);
        return;
      }
      if (n.op == Op::pad) {
        auto pads = n.attr_syms("pads");
        auto c = coords;
        for (size_t i = 0; i < pads.size() / 2; ++i) {
          size_t d = c.size() - 1 - i;
          c[d] = c[d] - pads[2 * i];
        }
        trace_value(g, realized, n.inputs[0], c, false, out);
        return;
      }
      break;
    }
    case OpKind::Extern: break;
  }
  throw InternalError(str_cat("trace_node_loads: cannot inline ", op_name(n.op)));
}

}  // namespace kiln
