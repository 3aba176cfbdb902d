// rewriter.cpp — GraphRewriter: copy-with-remapping, shared by all graph→graph passes.
#include "kiln/passes/rewriter.h"

#include "kiln/support/error.h"

namespace kiln {

GraphRewriter::GraphRewriter(const Graph& src) : src_(src), map_(src.num_values(), -1) {
  out_.symbols = src.symbols;
  // Inputs are the caller's ABI: every pass keeps all of them, in order, even unused ones.
  for (const GraphInput& in : src.inputs()) set(in.value, out_.add_input(src.type(in.value), in.strides, in.name));
}

ValueId GraphRewriter::map(ValueId v) const {
  KILN_CHECK(v >= 0 && static_cast<size_t>(v) < map_.size() && map_[static_cast<size_t>(v)] >= 0, "value %", v,
             " used before it was rewritten");
  return map_[static_cast<size_t>(v)];
}

std::vector<ValueId> GraphRewriter::map(const std::vector<ValueId>& vs) const {
  std::vector<ValueId> out;
  out.reserve(vs.size());
  for (ValueId v : vs) out.push_back(map(v));
  return out;
}

void GraphRewriter::set(ValueId source_value, ValueId new_value) {
  KILN_CHECK(source_value >= 0 && static_cast<size_t>(source_value) < map_.size(), "bad value %", source_value);
  // A replacement must be interchangeable with what it replaces.
  KILN_CHECK(src_.type(source_value) == out_.type(new_value), "rewrite changes the type of %", source_value, " from ",
             src_.type(source_value).str(), " to ", out_.type(new_value).str());
  map_[static_cast<size_t>(source_value)] = new_value;
}

ValueId GraphRewriter::copy(const Node& n) {
  ValueId v = out_.add_node(n.op, map(n.inputs), n.attrs, src_.type(n.result), n.origin);
  set(n.result, v);
  return v;
}

ValueId GraphRewriter::emit(Op op, std::vector<ValueId> inputs, Attrs attrs, std::string origin) {
  std::vector<TensorType> types;
  for (ValueId v : inputs) types.push_back(out_.type(v));
  TensorType t = infer_type(op, types, attrs);
  return out_.add_node(op, std::move(inputs), std::move(attrs), std::move(t), std::move(origin));
}

Graph GraphRewriter::finish() {
  for (const GraphOutput& o : src_.outputs()) out_.add_output(map(o.value), o.strides);
  return std::move(out_);
}

Graph rewrite_nodes(const Graph& g, const NodeRewrite& f) {
  GraphRewriter rw(g);
  for (const Node& n : g.nodes()) {
    std::vector<ValueId> ins = rw.map(n.inputs);
    if (auto v = f(rw, n, ins))
      rw.set(n.result, *v);
    else
      rw.copy(n);
  }
  return rw.finish();
}

}  // namespace kiln
