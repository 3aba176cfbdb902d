// verifier.h — the per-node checks verify_graph makes, shared with the parser so that text input
// gets the same checks with a line:column.
#pragma once
#include <set>
#include <string>

#include "kiln/ir/graph.h"

namespace kiln {

// The attributes `op` requires and the kinds each may take; returns "" or what is wrong.
std::string check_required_attrs(Op op, const Attrs& attrs);

// Every size symbol `type`, `strides` or `attrs` mention (the verifier checks they are declared).
void collect_symbols(const std::vector<SymExpr>& sizes, std::set<std::string>& out);
void collect_symbols(const Attrs& attrs, std::set<std::string>& out);

}  // namespace kiln
