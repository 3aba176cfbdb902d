// graph.h — kiln IR: a functional graph of tensor ops over symbolically sized values.
//
// Every value is produced once (by a graph input or a node); nodes are kept in a valid topological
// order. Values are logical tensors: their layout is decided later (memory planning); only graph
// inputs and outputs carry strides, because those are the caller's memory.
#pragma once
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "kiln/ir/dtype.h"
#include "kiln/ir/ops.h"
#include "kiln/ir/sym.h"

namespace kiln {

struct TensorType {
  DType dtype = DType::F32;
  std::vector<SymExpr> sizes;

  int64_t rank() const { return static_cast<int64_t>(sizes.size()); }
  SymExpr numel() const { return product(sizes); }
  std::string str() const;  // "f32[4,s0]"
  bool operator==(const TensorType& o) const { return dtype == o.dtype && sizes == o.sizes; }
  bool operator!=(const TensorType& o) const { return !(*this == o); }
};

// Attribute values. Floats keep full precision in text (and spell inf/-inf/nan).
using Attr =
    std::variant<bool, int64_t, double, std::string, DType, SymExpr, std::vector<int64_t>, std::vector<SymExpr>>;
using Attrs = std::map<std::string, Attr>;
std::string attr_to_string(const Attr& a);

using ValueId = int32_t;

struct Node {
  Op op;
  std::vector<ValueId> inputs;
  Attrs attrs;
  ValueId result = -1;
  std::string origin;  // where it came from ("aten.add.Tensor add_3"): comments in generated code

  bool has_attr(const std::string& k) const { return attrs.count(k) != 0; }
  int64_t attr_int(const std::string& k) const;
  double attr_float(const std::string& k) const;
  bool attr_bool(const std::string& k) const;
  DType attr_dtype(const std::string& k) const;
  SymExpr attr_sym(const std::string& k) const;  // accepts an int attr too
  const std::vector<int64_t>& attr_ints(const std::string& k) const;
  std::vector<SymExpr> attr_syms(const std::string& k) const;  // accepts int lists too
};

struct ValueInfo {
  TensorType type;
  int32_t node = -1;   // index into nodes(), or -1 for a graph input
  int32_t input = -1;  // index into inputs(), or -1
};

struct GraphInput {
  ValueId value;
  std::vector<SymExpr> strides;
  std::string name;
};

struct GraphOutput {
  ValueId value;
  std::vector<SymExpr> strides;
};

class Graph {
 public:
  // Size symbols, in the order the caller binds them at run time.
  std::vector<std::string> symbols;

  ValueId add_input(TensorType type, std::vector<SymExpr> strides, std::string name = "");
  // Appends a node; its inputs must already exist. Returns the value it defines.
  ValueId add_node(Op op, std::vector<ValueId> inputs, Attrs attrs, TensorType type, std::string origin = "");
  void add_output(ValueId v, std::vector<SymExpr> strides);
  // Sets one attribute of node i (a setting that does not change its type, such as a precision).
  void set_attr(int32_t i, const std::string& key, Attr value) {
    nodes_.at(static_cast<size_t>(i)).attrs[key] = std::move(value);
  }

  const ValueInfo& value(ValueId v) const;
  const TensorType& type(ValueId v) const { return value(v).type; }
  size_t num_values() const { return values_.size(); }
  const std::vector<Node>& nodes() const { return nodes_; }
  const Node& node(int32_t i) const { return nodes_.at(static_cast<size_t>(i)); }
  // The node defining v, or nullptr for a graph input.
  const Node* producer(ValueId v) const;
  const std::vector<GraphInput>& inputs() const { return inputs_; }
  const std::vector<GraphOutput>& outputs() const { return outputs_; }
  // users[v] = indices of nodes that read v (a node reading v twice appears twice).
  std::vector<std::vector<int32_t>> users() const;

 private:
  std::vector<ValueInfo> values_;
  std::vector<Node> nodes_;
  std::vector<GraphInput> inputs_;
  std::vector<GraphOutput> outputs_;
};

// Text form (see docs/ir.md). print(parse(text)) == text for printed graphs.
std::string print_graph(const Graph& g);
Graph parse_graph(const std::string& text);  // throws UserError with line:col

// Checks structure (ids, order, arity, attributes) and re-infers every node's type. Throws
// InternalError naming the node on the first violation.
void verify_graph(const Graph& g);

// The result type of `op` applied to inputs of the given types; throws UserError when the
// combination is unsupported and InternalError when it is malformed.
TensorType infer_type(Op op, const std::vector<TensorType>& inputs, const Attrs& attrs);

}  // namespace kiln
