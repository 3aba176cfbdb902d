// load_trace.h — which realized values (at which coordinates) computing an inlined value reads.
#pragma once
#include <vector>

#include "kiln/ir/graph.h"

namespace kiln {

struct TracedLoad {
  ValueId value;
  std::vector<SymExpr> coords;
  bool data_dependent = false;  // coordinates depend on loaded data (a gather's row)
};

// Loads made by computing node `n`'s element at `coords` (its domain coordinates: the input's for a
// reduction), inlining every value that is not realized.
void trace_node_loads(const Graph& g, const std::vector<bool>& realized, const Node& n,
                      const std::vector<SymExpr>& coords, std::vector<TracedLoad>& out);

}  // namespace kiln
