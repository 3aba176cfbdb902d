// graph.cpp — building and querying kiln IR graphs.
#include "kiln/ir/graph.h"

#include <cmath>
#include <cstdio>

#include "kiln/support/error.h"

namespace kiln {

std::string TensorType::str() const { return std::string(dtype_name(dtype)) + to_string(sizes); }

std::string attr_to_string(const Attr& a) {
  struct V {
    std::string operator()(bool b) const { return b ? "true" : "false"; }
    std::string operator()(int64_t i) const { return std::to_string(i); }
    std::string operator()(double d) const {
      if (std::isnan(d)) return "nan";
      if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.17g", d);
      std::string s = buf;
      // Keep a float visibly a float so the parser gives it back as a double.
      if (s.find_first_of(".eE") == std::string::npos) s += ".0";
      return s;
    }
    std::string operator()(const std::string& s) const { return "\"" + s + "\""; }
    std::string operator()(DType t) const { return std::string(dtype_name(t)); }
    std::string operator()(const SymExpr& e) const { return "<" + e.str() + ">"; }
    std::string operator()(const std::vector<int64_t>& v) const {
      std::string s = "[";
      for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
      return s + "]";
    }
    std::string operator()(const std::vector<SymExpr>& v) const {
      std::string s = "<[";
      for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + v[i].str();
      return s + "]>";
    }
  };
  return std::visit(V{}, a);
}

namespace {
const Attr& get_attr(const Node& n, const std::string& k) {
  auto it = n.attrs.find(k);
  KILN_CHECK(it != n.attrs.end(), "node ", op_name(n.op), " has no attribute '", k, "'");
  return it->second;
}
}  // namespace

int64_t Node::attr_int(const std::string& k) const {
  const Attr& a = get_attr(*this, k);
  if (auto* b = std::get_if<bool>(&a)) return *b;
  if (auto* e = std::get_if<SymExpr>(&a); e && e->is_const()) return e->const_value();
  KILN_CHECK(std::holds_alternative<int64_t>(a), "attribute '", k, "' of ", op_name(op), " is not an int");
  return std::get<int64_t>(a);
}
double Node::attr_float(const std::string& k) const {
  const Attr& a = get_attr(*this, k);
  if (auto* i = std::get_if<int64_t>(&a)) return static_cast<double>(*i);
  if (auto* b = std::get_if<bool>(&a)) return *b ? 1.0 : 0.0;
  KILN_CHECK(std::holds_alternative<double>(a), "attribute '", k, "' of ", op_name(op), " is not a float");
  return std::get<double>(a);
}
bool Node::attr_bool(const std::string& k) const {
  const Attr& a = get_attr(*this, k);
  if (auto* i = std::get_if<int64_t>(&a)) return *i != 0;
  KILN_CHECK(std::holds_alternative<bool>(a), "attribute '", k, "' of ", op_name(op), " is not a bool");
  return std::get<bool>(a);
}
DType Node::attr_dtype(const std::string& k) const {
  const Attr& a = get_attr(*this, k);
  KILN_CHECK(std::holds_alternative<DType>(a), "attribute '", k, "' of ", op_name(op), " is not a dtype");
  return std::get<DType>(a);
}
SymExpr Node::attr_sym(const std::string& k) const {
  const Attr& a = get_attr(*this, k);
  if (auto* i = std::get_if<int64_t>(&a)) return SymExpr(*i);
  KILN_CHECK(std::holds_alternative<SymExpr>(a), "attribute '", k, "' of ", op_name(op), " is not a size");
  return std::get<SymExpr>(a);
}
const std::vector<int64_t>& Node::attr_ints(const std::string& k) const {
  const Attr& a = get_attr(*this, k);
  KILN_CHECK(std::holds_alternative<std::vector<int64_t>>(a), "attribute '", k, "' of ", op_name(op),
             " is not an int list");
  return std::get<std::vector<int64_t>>(a);
}
std::vector<SymExpr> Node::attr_syms(const std::string& k) const {
  const Attr& a = get_attr(*this, k);
  if (auto* v = std::get_if<std::vector<int64_t>>(&a)) return std::vector<SymExpr>(v->begin(), v->end());
  KILN_CHECK(std::holds_alternative<std::vector<SymExpr>>(a), "attribute '", k, "' of ", op_name(op),
             " is not a size list");
  return std::get<std::vector<SymExpr>>(a);
}

ValueId Graph::add_input(TensorType type, std::vector<SymExpr> strides, std::string name) {
  KILN_CHECK(nodes_.empty(), "graph inputs must be added before nodes");
  KILN_CHECK(strides.size() == type.sizes.size(), "input strides rank mismatch");
  auto id = static_cast<ValueId>(values_.size());
  values_.push_back({std::move(type), -1, static_cast<int32_t>(inputs_.size())});
  inputs_.push_back({id, std::move(strides), std::move(name)});
  return id;
}

ValueId Graph::add_node(Op op, std::vector<ValueId> inputs, Attrs attrs, TensorType type, std::string origin) {
  for (ValueId v : inputs) KILN_CHECK(v >= 0 && static_cast<size_t>(v) < values_.size(), "bad input id ", v);
  auto id = static_cast<ValueId>(values_.size());
  values_.push_back({std::move(type), static_cast<int32_t>(nodes_.size()), -1});
  nodes_.push_back({op, std::move(inputs), std::move(attrs), id, std::move(origin)});
  return id;
}

void Graph::add_output(ValueId v, std::vector<SymExpr> strides) {
  KILN_CHECK(v >= 0 && static_cast<size_t>(v) < values_.size(), "bad output id ", v);
  KILN_CHECK(strides.size() == values_[v].type.sizes.size(), "output strides rank mismatch");
  outputs_.push_back({v, std::move(strides)});
}

const ValueInfo& Graph::value(ValueId v) const {
  KILN_CHECK(v >= 0 && static_cast<size_t>(v) < values_.size(), "bad value id ", v);
  return values_[static_cast<size_t>(v)];
}

const Node* Graph::producer(ValueId v) const {
  const ValueInfo& info = value(v);
  return info.node < 0 ? nullptr : &nodes_[static_cast<size_t>(info.node)];
}

std::vector<std::vector<int32_t>> Graph::users() const {
  std::vector<std::vector<int32_t>> u(values_.size());
  for (size_t i = 0; i < nodes_.size(); ++i)
    for (ValueId v : nodes_[i].inputs) u[static_cast<size_t>(v)].push_back(static_cast<int32_t>(i));
  return u;
}

}  // namespace kiln
