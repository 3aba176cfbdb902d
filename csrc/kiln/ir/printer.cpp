// printer.cpp — print_graph: the deterministic text form of a graph (grammar in docs/ir.md).
#include "kiln/ir/printer.h"

namespace kiln {

namespace {

std::string value_ref(ValueId v) { return "%" + std::to_string(v); }

// Origins are free text up to the end of the line; escape what would end the line early or be
// read as an escape on the way back.
std::string escape_origin(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else if (c == '\r')
      out += "\\r";
    else
      out += c;
  }
  return out;
}

std::string strides_clause(const std::vector<SymExpr>& strides) { return " strides " + to_string(strides); }

}  // namespace

std::string quote_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default: out += c;
    }
  }
  return out + "\"";
}

std::string print_attr(const Attr& a) {
  if (auto* s = std::get_if<std::string>(&a)) return quote_string(*s);
  return attr_to_string(a);
}

std::string print_node(const Graph& g, const Node& n) {
  std::string s = value_ref(n.result) + " = " + std::string(op_name(n.op)) + "(";
  for (size_t i = 0; i < n.inputs.size(); ++i) s += (i ? ", " : "") + value_ref(n.inputs[i]);
  s += ")";
  if (!n.attrs.empty()) {
    s += " {";
    bool first = true;
    for (const auto& [k, v] : n.attrs) {
      s += (first ? "" : ", ") + k + "=" + print_attr(v);
      first = false;
    }
    s += "}";
  }
  bool known = n.result >= 0 && static_cast<size_t>(n.result) < g.num_values();
  s += " : " + (known ? g.type(n.result).str() : std::string("?"));
  if (!n.origin.empty()) s += "  # " + escape_origin(n.origin);
  return s;
}

std::string print_graph(const Graph& g) {
  std::string s = "graph(";
  for (size_t i = 0; i < g.inputs().size(); ++i) {
    const GraphInput& in = g.inputs()[i];
    s += (i ? ", " : "") + value_ref(in.value) + ": " + g.type(in.value).str() + strides_clause(in.strides);
    if (!in.name.empty()) s += " " + quote_string(in.name);
  }
  s += ")";
  if (!g.symbols.empty()) {
    s += " symbols(";
    for (size_t i = 0; i < g.symbols.size(); ++i) s += (i ? ", " : "") + g.symbols[i];
    s += ")";
  }
  s += " {\n";
  for (const Node& n : g.nodes()) s += "  " + print_node(g, n) + "\n";
  s += "  return";
  for (size_t i = 0; i < g.outputs().size(); ++i) {
    const GraphOutput& out = g.outputs()[i];
    s += (i ? ", " : " ") + value_ref(out.value) + strides_clause(out.strides);
  }
  return s + "\n}\n";
}

}  // namespace kiln
