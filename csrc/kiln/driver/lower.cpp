// lower.cpp — the whole of kiln's compiler in order, one line per step. Each step is registered by
// name (graph passes: passes/pass_registry.cpp; planning steps: loops/plan_steps.cpp), dumped after it
// runs when a dump is asked for, and verified after it runs when verification is on.
#include "kiln/driver/lower.h"

#include <algorithm>
#include <chrono>

#include "kiln/codegen/cpp_codegen.h"
#include "kiln/loops/plan_steps.h"
#include "kiln/loops/plan_verifier.h"
#include "kiln/passes/pass_registry.h"
#include "kiln/support/error.h"

namespace kiln {
namespace {

// The steps, in order. Graph passes rewrite the IR; planning steps decide, on the final IR, what is
// stored where, which kernels compute what and in which order; emit-cpp prints the plan as C++.
constexpr const char* kGraphPasses[] = {
    "simplify",  // views composed, constants folded, common subexpressions merged, dead nodes dropped
};
constexpr const char* kPlanSteps[] = {
    "realize",              // which values get memory; the rest are recomputed inside their users
    "group-kernels",        // stored values into kernels sharing outer loops, kernels and externs in order
    "extern-parts",         // multi-result externs write their parts straight into their users' values
    "gemm-groups",          // sibling matmuls sharing an operand: one grouped GEMM call
    "gemm-epilogues",       // a row-wise kernel after a matmul runs on the GEMM's finished rows
    "memory",               // kernel-local rows, arena offsets with reuse
    "column-kernels",       // column reductions run blocks of outer indices in vector lanes
    "reduction-schedules",  // each reduction's accumulators, blocks and order
    "in-place",             // mutated inputs written over where no old value is read afterwards
};
constexpr const char* kEmit = "emit-cpp";

std::string verify_context(const std::string& step, const std::string& what) {
  return str_cat("after ", step, ": ", what);
}

class Lowering {
 public:
  Lowering(const Graph& imported, const LowerOptions& o) : o_(o) {
    r_.graph = imported;
    ctx_.target = o.target;
    ctx_.alias_ok = o.alias_ok;
    ctx_.alias_ok.resize(imported.outputs().size(), false);
    ctx_.in_place_candidates = o.in_place_candidates;
    if (!o.stop_after.empty()) {
      const auto names = lowering_steps();
      KILN_USER_CHECK(std::find(names.begin(), names.end(), o.stop_after) != names.end(), "unknown step '",
                      o.stop_after, "' to stop after (steps: ", join(names), ")");
    }
    if (o.verify) verified("input (before any pass)", [&] { verify_graph(r_.graph); });
  }

  bool done() const { return !r_.last.empty() && r_.last == o_.stop_after; }

  void graph_pass(const char* name) {
    if (done()) return;
    r_.graph = find_pass(name).run(r_.graph);
    finish(name, "kir", print_graph(r_.graph), [&] { verify_graph(r_.graph); });
  }

  void plan_step(const char* name) {
    if (done()) return;
    if (!planning_) {  // the graph is final: the plan sizes its tables from it
      planning_ = true;
      ctx_.alias_ok.resize(r_.graph.outputs().size(), false);
    }
    const PlanStepInfo& step = find_plan_step(name);
    step.run(r_.graph, r_.plan, ctx_);
    finish(name, "plan", print_plan(r_.graph, r_.plan), [&] { verify_plan(r_.graph, r_.plan, step.holds); });
  }

  void emit_cpp() {
    r_.passes_seconds = seconds_since(start_);
    if (done()) return;
    const auto t = std::chrono::steady_clock::now();
    r_.cpp = generate_cpp(r_.graph, r_.plan, o_.target);
    r_.emit_seconds = seconds_since(t);
    finish(kEmit, "cpp", r_.cpp, [] {});
  }

  Lowered take() { return std::move(r_); }

 private:
  template <class F>
  void verified(const std::string& step, F&& check) {
    try {
      check();
    } catch (const InternalError& e) {
      throw InternalError(verify_context(step, e.what()));
    }
  }

  template <class F>
  void finish(const std::string& name, const char* ext, const std::string& text, F&& check) {
    ++step_;
    r_.last = name;
    if (o_.dump) o_.dump(step_, name, ext, text);
    if (o_.verify) verified(str_cat("step '", name, "'"), check);
  }

  static std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
  }

  static double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  }

  const LowerOptions& o_;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  PlanContext ctx_;
  Lowered r_;
  int step_ = 0;
  bool planning_ = false;
};

}  // namespace

Lowered lower(const Graph& imported, const LowerOptions& options) {
  Lowering l(imported, options);
  for (const char* pass : kGraphPasses) l.graph_pass(pass);
  for (const char* step : kPlanSteps) l.plan_step(step);
  l.emit_cpp();
  return l.take();
}

std::string describe_kernels(const Graph& g, const Target& target) {
  LowerOptions o;
  o.target = target;
  o.alias_ok.assign(g.outputs().size(), true);
  o.stop_after = kPlanSteps[std::size(kPlanSteps) - 1];
  const Lowered l = lower(g, o);
  return describe_plan(l.graph, l.plan);
}

std::vector<std::string> lowering_steps() {
  std::vector<std::string> names(std::begin(kGraphPasses), std::end(kGraphPasses));
  names.insert(names.end(), std::begin(kPlanSteps), std::end(kPlanSteps));
  names.push_back(kEmit);
  return names;
}

}  // namespace kiln
