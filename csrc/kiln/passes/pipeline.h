// pipeline.h — running a list of named passes over a graph, verifying and dumping between them.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "kiln/ir/graph.h"

namespace kiln {

// The passes a compiled graph goes through, in order (names from pass_registry.h).
std::vector<std::string> default_pipeline();

struct PipelineOptions {
  std::vector<std::string> passes = default_pipeline();
  bool verify_each = false;  // verify the input and the result of every pass (tests, debug builds)
  // Called with each pass's name and its result, before it is verified (KILN_DEBUG_DIR writes these).
  std::function<void(const std::string& pass_name, const Graph&)> dump;
};

// Throws UserError for an unknown pass name, InternalError when verification fails (naming the pass).
Graph run_graph_pipeline(const Graph& g, const PipelineOptions& options);

}  // namespace kiln
