// aten_importer.h — turns ATen FX nodes (as the Python walker describes them) into kiln IR.
//
// Python hands over each node's target name, its normalised arguments and the result metadata
// (`meta["val"]`); every semantic decision — type promotion, broadcasting, which kiln ops express
// an ATen op — is made here.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "kiln/ir/graph.h"

namespace kiln {

// One argument of an ATen call.
struct AtenArg {
  enum class Kind { None, Bool, Int, Float, Sym, Str, Tensor, List } kind = Kind::None;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  SymExpr sym;
  std::string s;
  ValueId tensor = -1;
  std::vector<AtenArg> list;
};

// What meta["val"] says about one result.
struct AtenResult {
  DType dtype;
  std::vector<SymExpr> sizes;
  std::vector<SymExpr> strides;
};

// torch dtype spelling ("torch.float32") → kiln dtype; throws UserError for what kiln lacks.
DType dtype_from_torch(const std::string& name);

class AtenImporter {
 public:
  void add_symbol(const std::string& name) { graph_.symbols.push_back(name); }
  ValueId add_input(DType dtype, std::vector<SymExpr> sizes, std::vector<SymExpr> strides, std::string name);
  // Lowers one ATen call; returns one value per ATen result. Throws UserError when unsupported.
  std::vector<ValueId> add_call(const std::string& target, const std::vector<AtenArg>& args,
                                const std::vector<AtenResult>& results, const std::string& origin);
  void add_output(ValueId v, std::vector<SymExpr> strides) { graph_.add_output(v, std::move(strides)); }
  const Graph& graph() const { return graph_; }
  Graph take() { return std::move(graph_); }

  // Whether `target` (e.g. "aten.add.Tensor") has a lowering at all.
  static bool supports(const std::string& target);
  // Whether kiln lowers `target` for these tensor dtypes (inputs and results): matrix products and
  // scatter-adds take floating point only.
  static bool supports_dtypes(const std::string& target, const std::vector<DType>& dtypes);
  static std::vector<std::string> supported_targets();
  // The one decision whether kiln compiles a node: "" when it does, else the reason the partitioner
  // logs and counts ("aten.cumsum.default", "aten.mm.default (dtype)", "... (device)"). `dtypes` are
  // its tensors' (inputs and results), nullopt for a dtype kiln has no IR type for.
  static std::string classify(const std::string& target, const std::vector<std::optional<DType>>& dtypes, bool on_cpu);

 private:
  Graph graph_;
};

}  // namespace kiln
