// simplify.cpp — the simplification passes run together until none of them changes the graph.
#include "kiln/passes/passes.h"

namespace kiln {

Graph simplify(const Graph& g) {
  // Each pass only removes or replaces nodes, so a handful of rounds reaches the fixpoint; the cap
  // guards against a pair of rewrites undoing each other.
  constexpr int kMaxRounds = 16;
  Graph cur = g;
  std::string text = print_graph(cur);
  for (int round = 0; round < kMaxRounds; ++round) {
    for (auto* pass : {simplify_views, constant_fold, cse, dce}) cur = pass(cur);
    std::string next = print_graph(cur);
    if (next == text) break;
    text = std::move(next);
  }
  return cur;
}

}  // namespace kiln
