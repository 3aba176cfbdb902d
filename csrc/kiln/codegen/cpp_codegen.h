// cpp_codegen.h — C++ source for a scheduled graph: one kernel function per kernel plus the entry.
#pragma once
#include <string>

#include "kiln/loops/kernel_plan.h"
#include "kiln/target/target.h"

namespace kiln {

// The generated translation unit exports
//   extern "C" int kiln_entry(void* const* buffers, const int64_t* symbols, char* arena);
// buffers = graph inputs then graph outputs; symbols in graph.symbols order; arena of
// plan.arena_bytes bytes (64-byte aligned). Returns 0, or non-zero after kiln_set_error().
// The code is for `target`: its reduction lanes, and the runtime kernels of its ISA level.
std::string generate_cpp(const Graph& g, const KernelPlan& plan, const Target& target = Target::host());

}  // namespace kiln
