// pass_registry.h — graph passes by name, for kiln-opt and the pipeline.
#pragma once
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/ir/graph.h"

namespace kiln {

using PassFn = std::function<Graph(const Graph&)>;

struct PassInfo {
  std::string name;  // as written on kiln-opt's command line: "constant-fold"
  PassFn run;
  std::string summary;  // one line for --help
};

const std::vector<PassInfo>& all_passes();
// The pass called `name`; throws UserError listing the known names when there is none.
const PassInfo& find_pass(std::string_view name);

}  // namespace kiln
