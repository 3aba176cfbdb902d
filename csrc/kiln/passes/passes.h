// passes.h — the graph→graph passes, one per file. Each returns a new graph and leaves its input alone.
#pragma once
#include "kiln/ir/graph.h"

namespace kiln {

// Drops nodes whose values reach no graph output. Graph inputs are always kept (they are the ABI).
Graph dce(const Graph& g);

// Merges nodes with the same op, inputs (in any order for commutative ops) and attributes.
Graph cse(const Graph& g);

// Folds pointwise ops over `full` splats into a `full`, views of a splat into a splat of the view's
// sizes, and applies algebraic identities that are exact in IEEE arithmetic (x*1, x/1, x+(-0.0),
// x-0.0, same-dtype cast, where over a constant condition). Graph inputs are never constants.
Graph constant_fold(const Graph& g);

// Drops identity views and composes reshape∘reshape, permute∘permute and expand∘expand into one.
Graph simplify_views(const Graph& g);

// The four passes above, repeated until the graph stops changing.
Graph simplify(const Graph& g);

}  // namespace kiln
