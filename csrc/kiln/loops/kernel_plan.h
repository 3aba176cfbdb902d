// kernel_plan.h — the scheduled form of a graph: where each value lives, which values are
// computed by which kernel, and the order of kernels and extern calls.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kiln/ir/graph.h"
#include "kiln/target/target.h"

namespace kiln {

// Where a realized value's elements are.
struct Storage {
  enum class Kind { None, Input, Output, Arena, Local } kind = Kind::None;
  int32_t index = -1;  // graph input / output index
  SymExpr offset;      // Arena: byte offset
  // Local: a value only its own kernel reads, at the same outer index. It lives in a per-thread
  // scratch row (strides are 0 for the outer dims), never in the arena.
  int32_t kernel = -1;
  std::vector<SymExpr> strides;  // element strides of the value's logical dims
};

// A strided window onto a realized value: what views compose to when they stay affine.
struct AffineLayout {
  ValueId base = -1;
  SymExpr offset;                // elements, relative to the base's storage
  std::vector<SymExpr> strides;  // per dim of the viewed value
};

// One realized value computed inside a kernel. Its loop domain is `outer` (shared by the kernel)
// followed by `inner` (its own): for a reduction, inner are the reduced dims.
// How a reduction stage combines its elements: decided by the reduction-schedules planning step
// (reduction_schedules.cpp), printed by the emitter.
struct ReduceSchedule {
  enum class Kind {
    None,        // not decided yet (or not a reduction)
    Sequential,  // one accumulator in loop order (arg reductions keep the first best position)
    InnerLanes,  // `lanes` accumulators across the innermost reduced loop, combined pairwise
    OuterLanes,  // a lane kernel (Kernel::lanes): one accumulator per outer index of the block
  } kind = Kind::None;
  enum class Combine { Add, Mul, Max, Min, ArgMax, ArgMin } combine = Combine::Add;
  int64_t lanes = 0;          // InnerLanes: accumulators
  int64_t block = 0;          // InnerLanes: elements per partial sum (float sums; 0: none)
  int64_t part = 0, mid = 0;  // OuterLanes: elements per partial sum and partials per middle sum (float sums)
};

struct Stage {
  ValueId value = -1;
  bool reduction = false;
  ReduceSchedule schedule;          // reductions only
  std::vector<int64_t> outer_dims;  // dims of the stage's domain mapped to the kernel's outer loops
  std::vector<int64_t> inner_dims;  // remaining dims, looped inside, in this order
  std::vector<SymExpr> domain;      // the stage's domain sizes (input sizes for a reduction)
  int32_t dest_output = -1;         // >= 0: a copy of an already stored value into this output
};

struct Kernel {
  std::string name;
  std::vector<SymExpr> outer;  // outer loop sizes, flattened and split across threads
  std::vector<Stage> stages;
  // > 0: blocks of this many outer indices run together, the lane loop innermost (column_kernels.cpp).
  int64_t lanes = 0;
};

struct Step {
  enum class Kind { Kernel, Extern } kind;
  int32_t kernel = -1;    // index into kernels
  int32_t node = -1;      // Extern: graph node index
  int32_t epilogue = -1;  // Extern matmul: a kernel run per finished block of its rows (gemm_epilogue.cpp)
  // Extern matmul: further matmul nodes sharing its A (or, siblings_share_b, its B), computed in the
  // same call (gemm_groups.cpp).
  std::vector<int32_t> siblings;
  bool siblings_share_b = false;

  // The extern nodes this step computes: `node`, then its siblings.
  std::vector<int32_t> extern_nodes() const {
    std::vector<int32_t> ns{node};
    ns.insert(ns.end(), siblings.begin(), siblings.end());
    return ns;
  }

  // The kernel this step runs, if any (its own, or a matmul's epilogue).
  int32_t kernel_run() const { return kind == Kind::Kernel ? kernel : epilogue; }
};

struct KernelPlan {
  std::vector<bool> realized;    // per value
  std::vector<Storage> storage;  // per value (None for inlined values)
  std::vector<Kernel> kernels;
  std::vector<Step> steps;
  SymExpr arena_bytes;
  // Per graph output: when set, the output is a view of a graph input (returned as a view).
  std::vector<std::optional<AffineLayout>> output_alias;
  // Per graph output: the value stored in its buffer, the output being a view of all of it in the
  // very layout that value is stored in (-1: none). See decide_realization.
  std::vector<ValueId> output_through;
  // Per graph output: the graph input whose buffer it is written into (-1: its own buffer). Set by
  // plan_in_place for inputs the graph mutates; see in_place.h.
  std::vector<int32_t> in_place_of;
  // Multi-result externs (extern_parts.h): per extern node index, per part, the stored value the call
  // writes that part into directly (-1: into its flat result buffer). Per value: the extern node
  // index that writes it (-1: a kernel computes it, or it is not stored).
  std::map<int32_t, std::vector<ValueId>> part_values;
  std::vector<int32_t> written_by;
};

// Equal strides wherever the size is not 1 (a size-1 dim's stride addresses nothing).
bool same_layout(const std::vector<SymExpr>& sizes, const std::vector<SymExpr>& a, const std::vector<SymExpr>& b);

// Follows view ops from v down to a realized value while the composition stays a strided window.
std::optional<AffineLayout> affine_layout(const Graph& g, const std::vector<bool>& realized,
                                          const std::vector<Storage>& storage, ValueId v);

// Kernel counts and membership, one line per kernel: for golden tests and logs.
std::string describe_plan(const Graph& g, const KernelPlan& plan);

}  // namespace kiln
