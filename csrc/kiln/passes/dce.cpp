// dce.cpp — dead code elimination: keep only the nodes that graph outputs depend on.
#include "kiln/passes/passes.h"
#include "kiln/passes/rewriter.h"

namespace kiln {

Graph dce(const Graph& g) {
  std::vector<bool> live(g.num_values(), false);
  for (const GraphOutput& o : g.outputs()) live[static_cast<size_t>(o.value)] = true;
  // Nodes are in topological order, so one backward sweep sees every user before its inputs.
  for (auto it = g.nodes().rbegin(); it != g.nodes().rend(); ++it)
    if (live[static_cast<size_t>(it->result)])
      for (ValueId v : it->inputs) live[static_cast<size_t>(v)] = true;

  GraphRewriter rw(g);
  for (const Node& n : g.nodes())
    if (live[static_cast<size_t>(n.result)]) rw.copy(n);
  return rw.finish();
}

}  // namespace kiln
