// lower_context.h — what an ATen lowering rule sees: its arguments, its results' metadata, and
// helpers that keep promotion and broadcasting explicit in the IR.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "kiln/importer/aten_importer.h"
#include "kiln/support/error.h"

namespace kiln {

class LowerContext {
 public:
  LowerContext(Graph& g, const std::string& target, const std::vector<AtenArg>& args,
               const std::vector<AtenResult>& results, const std::string& origin)
      : g_(g), target_(target), args_(args), results_(results), origin_(origin) {}

  // ---- arguments -------------------------------------------------------------------------------
  size_t num_args() const { return args_.size(); }
  const AtenArg& arg(size_t i) const;
  bool has(size_t i) const { return i < args_.size() && args_[i].kind != AtenArg::Kind::None; }
  bool is_tensor(size_t i) const { return has(i) && args_[i].kind == AtenArg::Kind::Tensor; }
  ValueId tensor(size_t i) const;
  int64_t int_arg(size_t i) const;
  int64_t int_arg(size_t i, int64_t dflt) const { return has(i) ? int_arg(i) : dflt; }
  double float_arg(size_t i) const;
  bool bool_arg(size_t i, bool dflt) const;
  SymExpr sym_arg(size_t i) const;  // an int or a symbolic int
  std::vector<int64_t> ints_arg(size_t i) const;
  std::vector<ValueId> tensors_arg(size_t i) const;
  std::string str_arg(size_t i, const std::string& dflt) const;

  // ---- results ---------------------------------------------------------------------------------
  const AtenResult& result(size_t i = 0) const;
  size_t num_results() const { return results_.size(); }
  DType out_dtype(size_t i = 0) const { return result(i).dtype; }
  const std::vector<SymExpr>& out_sizes(size_t i = 0) const { return result(i).sizes; }

  // ---- building --------------------------------------------------------------------------------
  const TensorType& type(ValueId v) const { return g_.type(v); }
  int64_t rank(ValueId v) const { return type(v).rank(); }
  ValueId node(Op op, std::vector<ValueId> inputs, Attrs attrs = {});
  ValueId cast(ValueId v, DType t);
  ValueId reshape(ValueId v, const std::vector<SymExpr>& sizes);
  ValueId expand_to(ValueId v, const std::vector<SymExpr>& sizes);  // numpy-style broadcast
  ValueId full(const AtenArg& scalar, DType t, const std::vector<SymExpr>& sizes);
  ValueId full(double value, DType t, const std::vector<SymExpr>& sizes);
  // A tensor or Python-scalar argument as a value of dtype `t` broadcast to `sizes`.
  ValueId operand(size_t i, DType t, const std::vector<SymExpr>& sizes);
  ValueId operand(const AtenArg& a, DType t, const std::vector<SymExpr>& sizes);
  // PyTorch's result_type over the given arguments (tensors, 0-dim tensors and Python scalars).
  DType common_dtype(const std::vector<size_t>& arg_indices) const;
  int64_t wrap_dim(int64_t d, int64_t rank) const;

  [[noreturn]] void unsupported(const std::string& why) const;
  const std::string& target() const { return target_; }

 private:
  Graph& g_;
  const std::string& target_;
  const std::vector<AtenArg>& args_;
  const std::vector<AtenResult>& results_;
  const std::string& origin_;
};

using LoweringRule = std::function<std::vector<ValueId>(LowerContext&)>;
// Every rule, keyed by ATen target ("aten.add.Tensor"). Rules are registered by the lower_*.cpp files.
const std::map<std::string, LoweringRule>& lowering_rules();
void register_pointwise_rules(std::map<std::string, LoweringRule>& r);
void register_view_rules(std::map<std::string, LoweringRule>& r);
void register_reduction_rules(std::map<std::string, LoweringRule>& r);
void register_other_rules(std::map<std::string, LoweringRule>& r);
void register_attention_rules(std::map<std::string, LoweringRule>& r);

}  // namespace kiln
