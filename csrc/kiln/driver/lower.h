// lower.h — the one lowering function: an imported graph through every pass and planning step, in
// order, to one C++ translation unit.
#pragma once
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "kiln/ir/graph.h"
#include "kiln/loops/kernel_plan.h"
#include "kiln/target/target.h"

namespace kiln {

struct LowerOptions {
  Target target = Target::host();
  std::vector<bool> alias_ok;                                    // per output: may be returned as a view of an input
  std::vector<std::pair<int32_t, int32_t>> in_place_candidates;  // (output, input) mutation pairs
  bool verify = false;  // verify the IR after every graph pass and the plan after every planning step
  // Stop after this step ("" runs them all): a graph pass, a planning step or "emit-cpp".
  std::string stop_after;
  // Called after each step with its number, name, file extension (kir, plan, cpp) and text, before the
  // step's result is verified (so a broken result is on disk): KILN_DEBUG_DIR writes NN-<name>.<ext>.
  std::function<void(int step, const std::string& name, const std::string& ext, const std::string& text)> dump;
};

struct Lowered {
  Graph graph;                                  // after the graph passes
  KernelPlan plan;                              // after the planning steps that ran
  std::string cpp;                              // the translation unit ("" when stopped before emit-cpp)
  std::string last;                             // the name of the last step that ran
  double passes_seconds = 0, emit_seconds = 0;  // graph passes and planning; emit-cpp
};

// Throws UserError for an unknown stop_after, InternalError when a verification fails (naming the step).
Lowered lower(const Graph& imported, const LowerOptions& options);

// Every step's name, in order: graph passes, planning steps, "emit-cpp" (for kiln-opt --help).
std::vector<std::string> lowering_steps();

// The graph lowered through its planning steps (every output may alias), its kernels and extern calls
// described one per line: kiln-opt --print-kernels, logs.
std::string describe_kernels(const Graph& g, const Target& target = Target::host());

}  // namespace kiln
