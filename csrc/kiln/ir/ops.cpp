// ops.cpp — the op table's data and name lookup.
#include "kiln/ir/ops.h"

#include <string>
#include <unordered_map>

#include "kiln/support/error.h"

namespace kiln {

namespace {
const OpInfo kOps[] = {
#define KILN_OP_INFO(name, kind, arity, comm) {#name, OpKind::kind, arity, comm},
    KILN_FOR_EACH_OP(KILN_OP_INFO)
#undef KILN_OP_INFO
};
}  // namespace

const OpInfo& op_info(Op op) {
  auto i = static_cast<size_t>(op);
  KILN_CHECK(i < static_cast<size_t>(Op::kNumOps), "bad op id ", i);
  return kOps[i];
}

std::optional<Op> op_from_name(std::string_view name) {
  static const auto* table = [] {
    auto* m = new std::unordered_map<std::string, Op>();
    for (size_t i = 0; i < static_cast<size_t>(Op::kNumOps); ++i) (*m)[std::string(kOps[i].name)] = static_cast<Op>(i);
    return m;
  }();
  auto it = table->find(std::string(name));
  if (it == table->end()) return std::nullopt;
  return it->second;
}

bool is_comparison(Op op) {
  switch (op) {
    case Op::eq:
    case Op::ne:
    case Op::lt:
    case Op::le:
    case Op::gt:
    case Op::ge:
    case Op::isnan:
    case Op::logical_not:
    case Op::logical_and:
    case Op::logical_or:
    case Op::logical_xor: return true;
    default: return false;
  }
}

}  // namespace kiln
