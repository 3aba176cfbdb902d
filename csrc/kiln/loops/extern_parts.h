// extern_parts.h — the parts of a multi-result extern (attention's out and lse, its backward's dq,
// dk, dv) and which of them the call writes straight into the value that unpacks them.
#pragma once
#include <vector>

#include "kiln/loops/kernel_plan.h"

namespace kiln {

// One result of an extern whose results share a flat buffer: where its elements lie in that buffer,
// for a contiguous flat buffer (offset and strides in elements, one stride per dim of the part).
struct ResultPart {
  std::vector<SymExpr> sizes;
  SymExpr offset;
  std::vector<SymExpr> strides;
};

// The parts of node n's flat result, in the order the runtime call takes them; empty for externs
// with a single result.
std::vector<ResultPart> extern_result_parts(const Graph& g, const Node& n);

// Lets an extern write a part straight into a stored value that is exactly that part (the same
// elements in the same order: an output such as attention's `out`, unpacked by views), instead of
// into its flat buffer for a kernel to copy out. Only where nothing else reads the flat buffer, so
// the flat buffer never holds a stale part; when every part goes elsewhere it is not stored at all.
// Fills plan.part_values and plan.written_by; group_into_kernels must run again afterwards.
// Returns whether anything changed.
bool plan_extern_parts(const Graph& g, KernelPlan& plan);

}  // namespace kiln
