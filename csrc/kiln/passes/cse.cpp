// cse.cpp — common subexpression elimination over the (functional, side-effect-free) graph.
#include <algorithm>
#include <unordered_map>

#include "kiln/ir/printer.h"
#include "kiln/passes/passes.h"
#include "kiln/passes/rewriter.h"

namespace kiln {

namespace {

// Two nodes compute the same value exactly when these keys are equal: every kiln op is a pure
// function of its inputs and attributes. Inputs are new-graph ids, so merged inputs merge users.
std::string node_key(const Node& n, std::vector<ValueId> inputs, const TensorType& type) {
  if (op_info(n.op).commutative) std::sort(inputs.begin(), inputs.end());
  std::string key(op_name(n.op));
  for (ValueId v : inputs) key += " %" + std::to_string(v);
  for (const auto& [k, a] : n.attrs) key += " " + k + "=" + print_attr(a);
  return key + " : " + type.str();
}

}  // namespace

Graph cse(const Graph& g) {
  std::unordered_map<std::string, ValueId> seen;
  return rewrite_nodes(g, [&](GraphRewriter& rw, const Node& n, const std::vector<ValueId>& ins) {
    std::string key = node_key(n, ins, g.type(n.result));
    auto it = seen.find(key);
    if (it != seen.end()) return it->second;
    ValueId v = rw.copy(n);
    seen.emplace(std::move(key), v);
    return v;
  });
}

}  // namespace kiln
