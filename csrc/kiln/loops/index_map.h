// index_map.h — how a view maps coordinates of its result to coordinates of its input.
#pragma once
#include <vector>

#include "kiln/ir/graph.h"

namespace kiln {

// Coordinates (symbolic expressions over loop variables) of `view`'s input element that equals the
// view's element at `out`. Reshapes split into groups of dims whose products match, so merges and
// splits cost one div/mod only where dims are really regrouped.
std::vector<SymExpr> view_input_coords(const Graph& g, const Node& view, const std::vector<SymExpr>& out);

// Row-major linear index of `coords` in a tensor of `sizes`, and its inverse.
SymExpr linearize(const std::vector<SymExpr>& coords, const std::vector<SymExpr>& sizes);
std::vector<SymExpr> delinearize(const SymExpr& linear, const std::vector<SymExpr>& sizes);

}  // namespace kiln
