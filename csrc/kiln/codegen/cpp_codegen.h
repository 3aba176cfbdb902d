// cpp_codegen.h — C++ source for a scheduled graph: one kernel function per kernel plus the entry.
#pragma once
#include <string>

#include "kiln/loops/kernel_plan.h"

namespace kiln {

// The generated translation unit exports
//   extern "C" int kiln_entry(void* const* buffers, const int64_t* symbols, char* arena);
// buffers = graph inputs then graph outputs; symbols in graph.symbols order; arena of
// plan.arena_bytes bytes (64-byte aligned). Returns 0, or non-zero after kiln_set_error().
std::string generate_cpp(const Graph& g, const KernelPlan& plan);

}  // namespace kiln
