// compiled_graph.h — from an imported graph to a loaded native executable, and running it.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "kiln/ir/graph.h"
#include "kiln/jit/jit.h"
#include "kiln/target/target.h"

namespace kiln {

struct CompileOptions {
  std::string include_dir;  // kiln runtime headers (…/include)
  std::string lib_dir;      // libkiln_runtime.so
  std::string debug_dir;    // KILN_DEBUG_DIR/<graph>: every stage written here when set
  std::string mode = "default";
  bool verify = false;         // verify the IR after every pass
  std::vector<bool> alias_ok;  // per output: may be returned as a view of an input
  // (output, input) pairs: the output is the graph's new value of that input (a mutation). The
  // planner decides which may be written straight into the input's buffer (plan_in_place).
  std::vector<std::pair<int32_t, int32_t>> in_place_candidates;
  // float matmuls: bfloat16 planes per operand on AMX (kiln_gemm_f32's bf16_planes; 0: float FMA
  // only). Stamped on each float matmul as its bf16_planes attribute before keying and passes.
  int gemm_bf16_planes = 0;
  // The machine and ISA level the code is for: the -march it is compiled with, its vector lanes,
  // the runtime kernels it calls. Part of the cache key.
  Target target = Target::host();
};

struct OutputAlias {
  int32_t input = -1;  // graph input (or output, when of_output) it views
  bool of_output = false;
  SymExpr offset;
  std::vector<SymExpr> strides;
};

struct TensorArg {
  void* data = nullptr;
  int64_t ndim = 0;
  const int64_t* sizes = nullptr;
  const int64_t* strides = nullptr;  // in elements
  DType dtype = DType::F32;
};

struct CompileTimes {
  double passes = 0, codegen = 0, compiler = 0, total = 0;
  bool cache_hit = false;
};

class CompiledGraph {
 public:
  static std::shared_ptr<CompiledGraph> compile(const Graph& imported, const CompileOptions& options);

  const Graph& graph() const { return graph_; }
  const std::optional<OutputAlias>& output_alias(size_t j) const { return aliases_.at(j); }
  // The graph input whose buffer output j is written into, or -1 (its own buffer).
  int32_t in_place_of(size_t j) const { return in_place_.at(j); }
  const CompileTimes& times() const { return times_; }
  size_t num_kernels() const { return num_kernels_; }
  const std::string& plan_summary() const { return plan_summary_; }
  // The ISA level the code was compiled for (Target::isa_name).
  const std::string& isa() const { return isa_; }

  // Sizes and strides of output j for these symbol values.
  void output_layout(size_t j, const std::vector<int64_t>& syms, std::vector<int64_t>& sizes,
                     std::vector<int64_t>& strides) const;
  // Checks inputs against what the code was compiled for; throws UserError naming the mismatch.
  void check_inputs(const std::vector<TensorArg>& inputs, const std::vector<int64_t>& syms) const;
  // Runs the entry function. buffers = graph inputs then outputs. Safe to call from several threads.
  void run(void* const* buffers, const std::vector<int64_t>& syms);

 private:
  Graph graph_;
  std::shared_ptr<jit::Library> library_;
  int (*entry_)(void* const*, const int64_t*, char*) = nullptr;
  SymExpr arena_bytes_;
  std::vector<std::optional<OutputAlias>> aliases_;
  std::vector<int32_t> in_place_;
  CompileTimes times_;
  size_t num_kernels_ = 0;
  std::string plan_summary_;
  std::string isa_;

  struct Arena {
    char* data = nullptr;
    int64_t bytes = 0;
    bool hot = false;  // it is hot_, taken without the lock
  };
  // hot_ serves one caller at a time without a lock; concurrent callers share free_arenas_.
  std::atomic_flag hot_taken_;
  Arena hot_;
  std::mutex arenas_mu_;
  std::vector<Arena> free_arenas_;
  Arena acquire_arena(int64_t bytes);
  static Arena new_arena(int64_t bytes);
  void release_arena(Arena a);

 public:
  ~CompiledGraph();
};

// Process-wide counters for kiln.stats().
struct DriverStats {
  int64_t graphs_compiled = 0;
  int64_t kernels_compiled = 0;
  int64_t calls = 0;
  int64_t kernels_run = 0;
  double passes_seconds = 0, codegen_seconds = 0;
};
// A hash of kiln's C++ sources: part of every cache key, so a rebuilt kiln never reuses old entries.
const char* build_id();

DriverStats driver_stats();
void reset_driver_stats();

}  // namespace kiln
