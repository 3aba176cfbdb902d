// pass_registry.cpp — the table of named graph passes.
#include "kiln/passes/pass_registry.h"

#include "kiln/passes/passes.h"
#include "kiln/support/error.h"

namespace kiln {

const std::vector<PassInfo>& all_passes() {
  static const std::vector<PassInfo> passes = {
      {"dce", dce, "drop nodes whose values reach no output"},
      {"cse", cse, "merge nodes with the same op, inputs and attributes"},
      {"constant-fold", constant_fold, "fold ops over full() splats and exact identities (x*1, x+(-0.0), ...)"},
      {"simplify-views", simplify_views, "drop identity views; compose reshape/permute/expand chains"},
      {"simplify", simplify, "simplify-views, constant-fold, cse and dce until nothing changes"},
  };
  return passes;
}

const PassInfo& find_pass(std::string_view name) {
  std::string known;
  for (const PassInfo& p : all_passes()) {
    if (p.name == name) return p;
    known += (known.empty() ? "" : ", ") + p.name;
  }
  throw UserError(str_cat("unknown pass '", name, "' (known passes: ", known, ")"));
}

}  // namespace kiln
