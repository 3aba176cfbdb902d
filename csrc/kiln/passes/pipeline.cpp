// pipeline.cpp — the order of kiln's graph passes, and the loop that runs them.
#include "kiln/passes/pipeline.h"

#include "kiln/passes/pass_registry.h"
#include "kiln/support/error.h"

namespace kiln {

std::vector<std::string> default_pipeline() { return {"simplify"}; }

namespace {
void verify_after(const Graph& g, const std::string& stage) {
  try {
    verify_graph(g);
  } catch (const InternalError& e) {
    throw InternalError(str_cat("after ", stage, ": ", e.what()));
  }
}
}  // namespace

Graph run_graph_pipeline(const Graph& g, const PipelineOptions& options) {
  std::vector<const PassInfo*> passes;
  for (const std::string& name : options.passes) passes.push_back(&find_pass(name));  // fail before any work
  if (options.verify_each) verify_after(g, "input (before any pass)");
  Graph cur = g;
  for (const PassInfo* p : passes) {
    cur = p->run(cur);
    if (options.dump) options.dump(p->name, cur);  // before verifying, so a broken graph is on disk
    if (options.verify_each) verify_after(cur, "pass '" + p->name + "'");
  }
  return cur;
}

}  // namespace kiln
