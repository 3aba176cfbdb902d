// expr_emitter.h — emits C++ statements computing one element of a value, inlining producers.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "kiln/loops/kernel_plan.h"

namespace kiln {

// Names used in generated code for graph symbols (sym_s0) and realized values' pointers (v12).
std::string c_symbol_name(const std::string& graph_symbol);
std::string c_index(const SymExpr& e, const std::vector<std::string>& graph_symbols);
// An exact C++ literal for a float constant of dtype t (hex float; inf and NaN spelled by name).
std::string float_literal(double d, DType t);
std::string c_literal(const Attr& value, DType t, const std::vector<std::string>& graph_symbols);

class ExprEmitter {
 public:
  ExprEmitter(const Graph& g, const KernelPlan& plan, std::vector<std::string>& lines, int indent, int& temp_counter)
      : g_(g), plan_(plan), lines_(lines), indent_(indent), temps_(temp_counter) {
    scopes_.emplace_back();
  }
  // A C expression (usually a temporary's name) for v's element at coords.
  std::string value(ValueId v, const std::vector<SymExpr>& coords);
  // Like value(), but computes v's node from its inputs even if v is realized.
  std::string node_value(const Node& n, const std::vector<SymExpr>& coords);
  // The C expression for the address offset (in elements) of a realized value at coords.
  std::string element(ValueId v, const std::vector<SymExpr>& coords);
  void line(const std::string& s) { lines_.push_back(std::string(static_cast<size_t>(indent_) * 2, ' ') + s); }
  void open(const std::string& s) {
    line(s);
    ++indent_;
    scopes_.emplace_back();
  }
  void close(const std::string& s = "}") {
    scopes_.pop_back();
    --indent_;
    line(s);
  }
  std::string temp() { return "t" + std::to_string(temps_++); }
  // Lane kernels (Kernel::lanes): each lane has its own row of every local value, at `lane` rows.
  void set_local_lane(const std::string& lane) { local_lane_ = lane; }
  std::string idx(const SymExpr& e) const { return c_index(e, g_.symbols); }

 private:
  std::string compute(const Node& n, const std::vector<SymExpr>& coords);
  std::string pointwise(const Node& n, const std::vector<std::string>& a);
  const Graph& g_;
  const KernelPlan& plan_;
  std::vector<std::string>& lines_;
  int indent_;
  int& temps_;
  std::vector<std::map<std::string, std::string>> scopes_;
  std::string local_lane_;
};

}  // namespace kiln
