// fusion.h — a readable summary of how a graph is fused into kernels (kiln-opt --print-kernels).
#pragma once
#include <string>

#include "kiln/ir/graph.h"

namespace kiln {

// Plans the graph (every output may alias) and describes its kernels and extern calls.
std::string describe_kernels(const Graph& g);

}  // namespace kiln
