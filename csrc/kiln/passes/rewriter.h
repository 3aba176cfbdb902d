// rewriter.h — rebuilding a graph node by node: the one mechanism every graph→graph pass uses.
#pragma once
#include <functional>
#include <optional>
#include <vector>

#include "kiln/ir/graph.h"

namespace kiln {

// Builds a new graph from `src`: symbols and inputs are copied up front; the pass then visits the
// source nodes in order and, for each, either copies it, emits replacement nodes, maps its result
// to a value that already exists in the new graph, or drops it. Outputs are mapped at finish().
class GraphRewriter {
 public:
  explicit GraphRewriter(const Graph& src);

  const Graph& source() const { return src_; }
  const Graph& graph() const { return out_; }  // the graph being built

  // The new value standing for source value `v` (which must have been mapped already).
  ValueId map(ValueId v) const;
  std::vector<ValueId> map(const std::vector<ValueId>& vs) const;
  void set(ValueId source_value, ValueId new_value);

  // Copies `n` with its inputs mapped and records its result's mapping.
  ValueId copy(const Node& n);
  // Appends a node over new-graph values; its type is inferred.
  ValueId emit(Op op, std::vector<ValueId> inputs, Attrs attrs, std::string origin = "");

  Graph finish();

 private:
  const Graph& src_;
  Graph out_;
  std::vector<ValueId> map_;  // source value → new value, -1 while unmapped
};

// The common shape of a local rewrite: visit each source node with its inputs already mapped and
// return the new value for its result, or nullopt to copy it unchanged.
using NodeRewrite = std::function<std::optional<ValueId>(GraphRewriter&, const Node&, const std::vector<ValueId>&)>;
Graph rewrite_nodes(const Graph& g, const NodeRewrite& f);

}  // namespace kiln
