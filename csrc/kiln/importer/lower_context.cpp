// lower_context.cpp — argument access, promotion and broadcasting helpers for lowering rules.
#include "kiln/importer/lower_context.h"

namespace kiln {

const AtenArg& LowerContext::arg(size_t i) const {
  KILN_CHECK(i < args_.size(), target_, ": missing argument ", i);
  return args_[i];
}
ValueId LowerContext::tensor(size_t i) const {
  const AtenArg& a = arg(i);
  if (a.kind != AtenArg::Kind::Tensor) unsupported(str_cat("argument ", i, " is not a tensor"));
  return a.tensor;
}
int64_t LowerContext::int_arg(size_t i) const {
  const AtenArg& a = arg(i);
  if (a.kind == AtenArg::Kind::Int) return a.i;
  if (a.kind == AtenArg::Kind::Bool) return a.b;
  if (a.kind == AtenArg::Kind::Sym && a.sym.is_const()) return a.sym.const_value();
  unsupported(str_cat("argument ", i, " must be a constant int"));
}
double LowerContext::float_arg(size_t i) const {
  const AtenArg& a = arg(i);
  if (a.kind == AtenArg::Kind::Float) return a.f;
  if (a.kind == AtenArg::Kind::Int) return static_cast<double>(a.i);
  if (a.kind == AtenArg::Kind::Bool) return a.b;
  unsupported(str_cat("argument ", i, " must be a number"));
}
bool LowerContext::bool_arg(size_t i, bool dflt) const {
  if (!has(i)) return dflt;
  const AtenArg& a = arg(i);
  if (a.kind == AtenArg::Kind::Bool) return a.b;
  if (a.kind == AtenArg::Kind::Int) return a.i != 0;
  unsupported(str_cat("argument ", i, " must be a bool"));
}
SymExpr LowerContext::sym_arg(size_t i) const {
  const AtenArg& a = arg(i);
  if (a.kind == AtenArg::Kind::Sym) return a.sym;
  return SymExpr(int_arg(i));
}
std::vector<int64_t> LowerContext::ints_arg(size_t i) const {
  const AtenArg& a = arg(i);
  if (a.kind == AtenArg::Kind::Int) return {a.i};
  if (a.kind != AtenArg::Kind::List) unsupported(str_cat("argument ", i, " must be an int list"));
  std::vector<int64_t> v;
  for (const auto& x : a.list) {
    if (x.kind == AtenArg::Kind::Int)
      v.push_back(x.i);
    else if (x.kind == AtenArg::Kind::Sym && x.sym.is_const())
      v.push_back(x.sym.const_value());
    else
      unsupported(str_cat("argument ", i, " must be a list of constant ints"));
  }
  return v;
}
std::vector<ValueId> LowerContext::tensors_arg(size_t i) const {
  const AtenArg& a = arg(i);
  if (a.kind != AtenArg::Kind::List) unsupported(str_cat("argument ", i, " must be a tensor list"));
  std::vector<ValueId> v;
  for (const auto& x : a.list) {
    if (x.kind != AtenArg::Kind::Tensor) unsupported("tensor lists with None entries are not supported");
    v.push_back(x.tensor);
  }
  return v;
}
std::string LowerContext::str_arg(size_t i, const std::string& dflt) const {
  if (!has(i)) return dflt;
  const AtenArg& a = arg(i);
  if (a.kind != AtenArg::Kind::Str) unsupported(str_cat("argument ", i, " must be a string"));
  return a.s;
}

const AtenResult& LowerContext::result(size_t i) const {
  KILN_CHECK(i < results_.size(), target_, ": missing result metadata ", i);
  return results_[i];
}

ValueId LowerContext::node(Op op, std::vector<ValueId> inputs, Attrs attrs) {
  std::vector<TensorType> types;
  for (ValueId v : inputs) types.push_back(g_.type(v));
  TensorType t = infer_type(op, types, attrs);
  return g_.add_node(op, std::move(inputs), std::move(attrs), std::move(t), origin_);
}

ValueId LowerContext::cast(ValueId v, DType t) {
  if (type(v).dtype == t) return v;
  return node(Op::cast, {v}, {{"dtype", t}});
}

ValueId LowerContext::reshape(ValueId v, const std::vector<SymExpr>& sizes) {
  if (type(v).sizes == sizes) return v;
  return node(Op::reshape, {v}, {{"sizes", sizes}});
}

ValueId LowerContext::expand_to(ValueId v, const std::vector<SymExpr>& sizes) {
  const auto& s = type(v).sizes;
  if (s == sizes) return v;
  KILN_USER_CHECK(s.size() <= sizes.size(), target_, ": cannot broadcast ", type(v).str(), " to ", to_string(sizes));
  std::vector<SymExpr> aligned(sizes.size() - s.size(), SymExpr(1));
  aligned.insert(aligned.end(), s.begin(), s.end());
  ValueId r = reshape(v, aligned);
  if (aligned == sizes) return r;
  return node(Op::expand, {r}, {{"sizes", sizes}});
}

ValueId LowerContext::full(double value, DType t, const std::vector<SymExpr>& sizes) {
  Attr val;
  if (is_floating(t))
    val = value;
  else if (t == DType::Bool)
    val = value != 0;
  else
    val = static_cast<int64_t>(value);
  return node(Op::full, {}, {{"value", val}, {"dtype", t}, {"sizes", sizes}});
}

ValueId LowerContext::full(const AtenArg& a, DType t, const std::vector<SymExpr>& sizes) {
  switch (a.kind) {
    case AtenArg::Kind::Float: return full(a.f, t, sizes);
    case AtenArg::Kind::Bool: return full(a.b ? 1.0 : 0.0, t, sizes);
    case AtenArg::Kind::Int:
      if (is_floating(t)) return full(static_cast<double>(a.i), t, sizes);
      return node(Op::full, {},
                  {{"value", t == DType::Bool ? Attr(a.i != 0) : Attr(a.i)}, {"dtype", t}, {"sizes", sizes}});
    case AtenArg::Kind::Sym: {
      return node(Op::full, {}, {{"value", a.sym}, {"dtype", t}, {"sizes", sizes}});
    }
    default: unsupported("expected a scalar");
  }
}

ValueId LowerContext::operand(const AtenArg& a, DType t, const std::vector<SymExpr>& sizes) {
  if (a.kind == AtenArg::Kind::Tensor) return expand_to(cast(a.tensor, t), sizes);
  return full(a, t, sizes);
}
ValueId LowerContext::operand(size_t i, DType t, const std::vector<SymExpr>& sizes) {
  return operand(arg(i), t, sizes);
}

namespace {
int category(DType t) { return t == DType::Bool ? 0 : is_integral(t) ? 1 : 2; }
}  // namespace

DType LowerContext::common_dtype(const std::vector<size_t>& idx) const {
  // torch.result_type: dimensioned tensors decide, then 0-dim tensors, then Python scalars, each
  // only when it raises the category (bool < integer < floating).
  std::optional<DType> dim_t, zero_t, wrapped_t;
  auto merge = [](std::optional<DType>& acc, DType t) { acc = acc ? promote(*acc, t) : t; };
  for (size_t i : idx) {
    const AtenArg& a = arg(i);
    switch (a.kind) {
      case AtenArg::Kind::Tensor: merge(type(a.tensor).rank() > 0 ? dim_t : zero_t, type(a.tensor).dtype); break;
      case AtenArg::Kind::Bool: merge(wrapped_t, DType::Bool); break;
      case AtenArg::Kind::Int:
      case AtenArg::Kind::Sym: merge(wrapped_t, DType::I64); break;
      case AtenArg::Kind::Float: merge(wrapped_t, DType::F32); break;  // the default dtype
      default: break;
    }
  }
  std::optional<DType> r = dim_t;
  for (auto* next : {&zero_t, &wrapped_t}) {
    if (!*next) continue;
    if (!r)
      r = *next;
    else if (category(**next) > category(*r))
      r = (category(**next) == 2 && next == &wrapped_t) ? DType::F32 : promote(*r, **next);
  }
  KILN_CHECK(r.has_value(), target_, ": no operands to promote");
  return *r;
}

int64_t LowerContext::wrap_dim(int64_t d, int64_t rank) const {
  int64_t r = std::max<int64_t>(rank, 1);
  if (d < 0) d += r;
  KILN_USER_CHECK(d >= 0 && d < r, target_, ": dim out of range");
  return d;
}

void LowerContext::unsupported(const std::string& why) const { throw UserError(str_cat(target_, ": ", why)); }

}  // namespace kiln
