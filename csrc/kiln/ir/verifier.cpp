// verifier.cpp — verify_graph: structural and type invariants every pass must preserve.
#include "kiln/ir/verifier.h"

#include <vector>

#include "kiln/ir/printer.h"
#include "kiln/support/error.h"

namespace kiln {

namespace {

// Attribute kinds as bits over the Attr variant's alternatives.
enum : unsigned {
  kBool = 1u << 0,
  kInt = 1u << 1,
  kFloat = 1u << 2,
  kString = 1u << 3,
  kDType = 1u << 4,
  kSym = 1u << 5,
  kInts = 1u << 6,
  kSyms = 1u << 7,
};
constexpr unsigned kSize = kInt | kSym;     // a (possibly symbolic) integer
constexpr unsigned kSizes = kInts | kSyms;  // a list of them
constexpr unsigned kScalar = kBool | kInt | kFloat;

struct AttrRule {
  const char* name;
  unsigned kinds;
};

std::vector<AttrRule> rules_for(Op op) {
  switch (op) {
    case Op::cast: return {{"dtype", kDType}};
    case Op::full: return {{"value", kScalar | kSym}, {"dtype", kDType}, {"sizes", kSizes}};
    case Op::iota:
      return {{"dim", kInt}, {"start", kScalar | kSym}, {"step", kScalar | kSym}, {"dtype", kDType}, {"sizes", kSizes}};
    case Op::permute: return {{"dims", kInts}};
    case Op::expand:
    case Op::reshape: return {{"sizes", kSizes}};
    case Op::slice: return {{"dim", kInt}, {"start", kSize}, {"length", kSize}, {"step", kInt}};
    case Op::select: return {{"dim", kInt}, {"index", kSize}};
    case Op::as_strided: return {{"sizes", kSizes}, {"strides", kSizes}, {"offset", kSize}};
    case Op::cat: return {{"dim", kInt}};
    case Op::pad: return {{"pads", kSizes}, {"value", kScalar}};
    case Op::slice_scatter: return {{"dim", kInt}, {"start", kSize}, {"step", kInt}};
    case Op::index_add_rows: return {{"rows", kSize}};
    case Op::attention:
    case Op::attention_backward: return {{"causal", kBool}, {"scale", kScalar}};
    default: break;
  }
  if (op_kind(op) == OpKind::Reduction) return {{"dims", kInts}, {"keepdim", kBool | kInt}};
  return {};
}

}  // namespace

std::string check_required_attrs(Op op, const Attrs& attrs) {
  for (const AttrRule& r : rules_for(op)) {
    auto it = attrs.find(r.name);
    if (it == attrs.end()) return str_cat(op_name(op), " needs attribute '", r.name, "'");
    if (!(r.kinds & (1u << it->second.index())))
      return str_cat(op_name(op), ": attribute '", r.name, "' has the wrong kind (", attr_to_string(it->second), ")");
  }
  return "";
}

void collect_symbols(const std::vector<SymExpr>& sizes, std::set<std::string>& out) {
  for (const SymExpr& e : sizes) e.collect_symbols(out);
}

void collect_symbols(const Attrs& attrs, std::set<std::string>& out) {
  for (const auto& [k, v] : attrs) {
    if (auto* e = std::get_if<SymExpr>(&v)) e->collect_symbols(out);
    if (auto* l = std::get_if<std::vector<SymExpr>>(&v)) collect_symbols(*l, out);
  }
}

namespace {

[[noreturn]] void fail_at(const Graph& g, const Node& n, const std::string& why) {
  throw InternalError(str_cat("verify: ", why, "\n  at: ", print_node(g, n)));
}
[[noreturn]] void fail(const std::string& why) { throw InternalError("verify: " + why); }

std::string undeclared(const std::set<std::string>& used, const std::set<std::string>& declared) {
  std::string out;
  for (const auto& s : used)
    if (!declared.count(s)) out += (out.empty() ? "" : ", ") + s;
  return out;
}

void check_strides(const Graph& g, ValueId v, const std::vector<SymExpr>& strides, const char* what) {
  if (strides.size() != g.type(v).sizes.size())
    fail(str_cat(what, " %", v, ": strides ", to_string(strides), " do not match the rank of ", g.type(v).str()));
}

}  // namespace

void verify_graph(const Graph& g) {
  const std::set<std::string> declared(g.symbols.begin(), g.symbols.end());
  if (declared.size() != g.symbols.size()) fail("a symbol is declared twice");
  auto in_range = [&](ValueId v) { return v >= 0 && static_cast<size_t>(v) < g.num_values(); };
  auto check_declared = [&](const std::set<std::string>& used, const std::string& where) {
    std::string bad = undeclared(used, declared);
    if (!bad.empty()) fail(str_cat(where, " uses undeclared symbol(s) ", bad));
  };

  for (size_t i = 0; i < g.inputs().size(); ++i) {
    const GraphInput& in = g.inputs()[i];
    if (!in_range(in.value) || g.value(in.value).input != static_cast<int32_t>(i))
      fail(str_cat("graph input ", i, " has a bad value id %", in.value));
    check_strides(g, in.value, in.strides, "graph input");
    std::set<std::string> used;
    collect_symbols(g.type(in.value).sizes, used);
    collect_symbols(in.strides, used);
    check_declared(used, str_cat("graph input %", in.value));
  }

  for (size_t i = 0; i < g.nodes().size(); ++i) {
    const Node& n = g.nodes()[i];
    if (!in_range(n.result) || g.value(n.result).node != static_cast<int32_t>(i))
      fail_at(g, n, "result id does not name this node");
    const OpInfo& info = op_info(n.op);
    if (info.arity >= 0 ? static_cast<int>(n.inputs.size()) != info.arity : n.inputs.empty())
      fail_at(g, n,
              str_cat(info.name, " takes ", info.arity >= 0 ? std::to_string(info.arity) : "one or more",
                      " inputs, got ", n.inputs.size()));
    std::vector<TensorType> types;
    for (ValueId v : n.inputs) {
      if (!in_range(v)) fail_at(g, n, str_cat("input %", v, " does not exist"));
      int32_t def = g.value(v).node;
      if (def >= static_cast<int32_t>(i)) fail_at(g, n, str_cat("input %", v, " is used before it is defined"));
      types.push_back(g.type(v));
    }
    if (std::string why = check_required_attrs(n.op, n.attrs); !why.empty()) fail_at(g, n, why);
    TensorType inferred;
    try {
      inferred = infer_type(n.op, types, n.attrs);
    } catch (const std::exception& e) {
      fail_at(g, n, str_cat("type inference failed: ", e.what()));
    }
    if (inferred != g.type(n.result))
      fail_at(g, n, str_cat("stated type ", g.type(n.result).str(), " but ", info.name, " gives ", inferred.str()));
    std::set<std::string> used;
    collect_symbols(inferred.sizes, used);
    collect_symbols(n.attrs, used);
    if (std::string bad = undeclared(used, declared); !bad.empty()) fail_at(g, n, "uses undeclared symbol(s) " + bad);
  }

  for (const GraphOutput& out : g.outputs()) {
    if (!in_range(out.value)) fail(str_cat("graph output %", out.value, " does not exist"));
    check_strides(g, out.value, out.strides, "graph output");
    std::set<std::string> used;
    collect_symbols(out.strides, used);
    check_declared(used, str_cat("graph output %", out.value));
  }
}

}  // namespace kiln
