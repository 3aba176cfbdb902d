// aten_importer.cpp — dispatches each ATen call to its lowering rule and checks the result
// against the metadata PyTorch recorded for it.
#include "kiln/importer/aten_importer.h"

#include "kiln/importer/lower_context.h"

namespace kiln {

DType dtype_from_torch(const std::string& name) {
  if (name == "torch.float32") return DType::F32;
  if (name == "torch.float64") return DType::F64;
  if (name == "torch.int64") return DType::I64;
  if (name == "torch.int32") return DType::I32;
  if (name == "torch.bool") return DType::Bool;
  throw UserError(str_cat("dtype ", name, " is not supported by kiln yet (float32, float64, int64, int32, bool)"));
}

const std::map<std::string, LoweringRule>& lowering_rules() {
  static const auto* rules = [] {
    auto* r = new std::map<std::string, LoweringRule>();
    register_pointwise_rules(*r);
    register_view_rules(*r);
    register_reduction_rules(*r);
    register_other_rules(*r);
    register_attention_rules(*r);
    return r;
  }();
  return *rules;
}

bool AtenImporter::supports(const std::string& target) { return lowering_rules().count(target) != 0; }

bool AtenImporter::supports_dtypes(const std::string& target, const std::vector<DType>& dtypes) {
  static const char* float_only[] = {"aten.mm.default",
                                     "aten.bmm.default",
                                     "aten.addmm.default",
                                     "aten.baddbmm.default",
                                     "aten.embedding_dense_backward.default",
                                     "aten.index_put.default",
                                     "aten._unsafe_index_put.default",
                                     "aten._scaled_dot_product_flash_attention_for_cpu.default",
                                     "aten._scaled_dot_product_flash_attention_for_cpu_backward.default"};
  for (const char* t : float_only) {
    if (target != t) continue;
    // Index tensors are integers; every other tensor must be floating.
    int floats = 0;
    for (DType d : dtypes) floats += is_floating(d);
    if (target.find("index_put") != std::string::npos || target.find("embedding") != std::string::npos)
      return floats > 0;
    return floats == static_cast<int>(dtypes.size());
  }
  return true;
}

std::string AtenImporter::classify(const std::string& target, const std::vector<std::optional<DType>>& dtypes,
                                   bool on_cpu) {
  if (!supports(target)) return target;
  if (!on_cpu) return target + " (device)";
  std::vector<DType> known;
  for (const auto& d : dtypes) {
    if (!d) return target + " (dtype)";
    known.push_back(*d);
  }
  return supports_dtypes(target, known) ? std::string() : target + " (dtype)";
}

std::vector<std::string> AtenImporter::supported_targets() {
  std::vector<std::string> v;
  for (const auto& [k, _] : lowering_rules()) v.push_back(k);
  return v;
}

ValueId AtenImporter::add_input(DType dtype, std::vector<SymExpr> sizes, std::vector<SymExpr> strides,
                                std::string name) {
  return graph_.add_input(TensorType{dtype, std::move(sizes)}, std::move(strides), std::move(name));
}

std::vector<ValueId> AtenImporter::add_call(const std::string& target, const std::vector<AtenArg>& args,
                                            const std::vector<AtenResult>& results, const std::string& origin) {
  auto it = lowering_rules().find(target);
  if (it == lowering_rules().end()) throw UserError(str_cat(target, " has no kiln lowering"));
  LowerContext ctx(graph_, target, args, results, origin);
  std::vector<ValueId> out = it->second(ctx);
  KILN_CHECK(out.size() == results.size(), target, " lowered to ", out.size(), " values, expected ", results.size());
  for (size_t i = 0; i < out.size(); ++i) {
    const TensorType& got = graph_.type(out[i]);
    TensorType want{results[i].dtype, results[i].sizes};
    if (got != want)
      throw UserError(
          str_cat(target, ": kiln computed ", got.str(), " but PyTorch expects ", want.str(), " (please report this)"));
  }
  return out;
}

}  // namespace kiln
