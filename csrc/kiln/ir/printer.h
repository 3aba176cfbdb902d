// printer.h — pieces of the IR text form shared by the printer, the parser and the verifier's messages.
#pragma once
#include <string>

#include "kiln/ir/graph.h"

namespace kiln {

// One node's line without indentation: `%3 = mul(%0, %2) : f32[4,s0]  # origin`. Safe on malformed
// graphs (out-of-range ids print as-is and the type as `?`), so the verifier can quote a bad node.
std::string print_node(const Graph& g, const Node& n);

// An attribute in the text form: attr_to_string, except that strings are escaped (\" \\ \n \r \t) so
// that any string reads back unchanged.
std::string print_attr(const Attr& a);
std::string quote_string(const std::string& s);

}  // namespace kiln
