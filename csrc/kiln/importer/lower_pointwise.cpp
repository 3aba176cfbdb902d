// lower_pointwise.cpp — ATen elementwise ops: arithmetic, comparisons, where, casts, activations.
#include <cmath>

#include "kiln/importer/lower_context.h"

namespace kiln {

namespace {

using Rules = std::map<std::string, LoweringRule>;

// An elementwise op computed in the result dtype: every operand is cast and broadcast to it.
LoweringRule arith(Op op, std::vector<size_t> operands) {
  return [op, operands](LowerContext& c) -> std::vector<ValueId> {
    DType t = c.out_dtype();
    std::vector<ValueId> in;
    for (size_t i : operands) in.push_back(c.operand(i, t, c.out_sizes()));
    return {c.node(op, in)};
  };
}

// A comparison: operands are promoted to their common dtype; the result is bool.
LoweringRule compare(Op op) {
  return [op](LowerContext& c) -> std::vector<ValueId> {
    DType t = c.common_dtype({0, 1});
    ValueId r = c.node(op, {c.operand(0, t, c.out_sizes()), c.operand(1, t, c.out_sizes())});
    return {c.cast(r, c.out_dtype())};
  };
}

// add/sub with alpha: a op (alpha * b).
LoweringRule add_like(Op op) {
  return [op](LowerContext& c) -> std::vector<ValueId> {
    DType t = c.out_dtype();
    ValueId a = c.operand(0, t, c.out_sizes());
    ValueId b = c.operand(1, t, c.out_sizes());
    if (c.has(2)) {
      const AtenArg& alpha = c.arg(2);
      bool one =
          (alpha.kind == AtenArg::Kind::Int && alpha.i == 1) || (alpha.kind == AtenArg::Kind::Float && alpha.f == 1.0);
      if (!one) b = c.node(Op::mul, {b, c.full(alpha, t, c.out_sizes())});
    }
    return {c.node(op, {a, b})};
  };
}

std::vector<ValueId> lower_pow_scalar_exponent(LowerContext& c) {
  DType t = c.out_dtype();
  ValueId x = c.operand(0, t, c.out_sizes());
  const AtenArg& e = c.arg(1);
  if (e.kind == AtenArg::Kind::Int || e.kind == AtenArg::Kind::Float) {
    double p = e.kind == AtenArg::Kind::Int ? static_cast<double>(e.i) : e.f;
    // The exponents ATen itself special-cases, computed the same way so results match bit for bit.
    if (p == 1.0) return {x};
    if (p == 2.0) return {c.node(Op::mul, {x, x})};
    if (p == 3.0) return {c.node(Op::mul, {c.node(Op::mul, {x, x}), x})};
    if (is_floating(t) && p == 0.5) return {c.node(Op::sqrt, {x})};
    if (is_floating(t) && p == -0.5) return {c.node(Op::rsqrt, {x})};
    if (is_floating(t) && p == -1.0) return {c.node(Op::reciprocal, {x})};
    if (is_floating(t) && p == -2.0) return {c.node(Op::reciprocal, {c.node(Op::mul, {x, x})})};
  }
  return {c.node(Op::pow, {x, c.operand(1, t, c.out_sizes())})};
}

std::vector<ValueId> lower_div_mode(LowerContext& c) {
  std::string mode = c.str_arg(2, "");
  DType t = c.out_dtype();
  ValueId a = c.operand(0, t, c.out_sizes()), b = c.operand(1, t, c.out_sizes());
  if (mode.empty()) return {c.node(Op::div, {a, b})};
  if (mode == "trunc") return {c.node(Op::truncdiv, {a, b})};
  if (mode == "floor") return {c.node(Op::floordiv, {a, b})};
  c.unsupported("unknown rounding_mode '" + mode + "'");
}

std::vector<ValueId> lower_where(LowerContext& c) {
  DType t = c.out_dtype();
  ValueId cond = c.operand(0, DType::Bool, c.out_sizes());
  return {c.node(Op::where, {cond, c.operand(1, t, c.out_sizes()), c.operand(2, t, c.out_sizes())})};
}

// masked_fill(x, mask, value) == where(mask, value, x).
std::vector<ValueId> lower_masked_fill(LowerContext& c) {
  DType t = c.out_dtype();
  ValueId mask = c.operand(1, DType::Bool, c.out_sizes());
  return {c.node(Op::where, {mask, c.operand(2, t, c.out_sizes()), c.operand(0, t, c.out_sizes())})};
}

std::vector<ValueId> lower_clamp(LowerContext& c) {
  DType t = c.out_dtype();
  ValueId x = c.operand(0, t, c.out_sizes());
  // clamp propagates NaN from x; maximum/minimum propagate NaN like ATen's clamp kernels.
  if (c.has(1)) x = c.node(Op::maximum, {x, c.operand(1, t, c.out_sizes())});
  if (c.has(2)) x = c.node(Op::minimum, {x, c.operand(2, t, c.out_sizes())});
  return {x};
}

std::vector<ValueId> lower_to_copy(LowerContext& c) {
  ValueId x = c.tensor(0);
  ValueId r = c.cast(x, c.out_dtype());
  // A copy that keeps the dtype is a new tensor in eager; kiln values are immutable, so the value
  // itself stands for it (outputs never alias inputs unless the op was a view).
  return {r};
}

std::vector<ValueId> lower_gelu(LowerContext& c) {
  std::string approx = c.str_arg(1, "none");
  ValueId x = c.operand(0, c.out_dtype(), c.out_sizes());
  if (approx == "none") return {c.node(Op::gelu, {x})};
  if (approx == "tanh") return {c.node(Op::gelu_tanh, {x})};
  c.unsupported("unknown gelu approximation '" + approx + "'");
}

}  // namespace

void register_pointwise_rules(Rules& r) {
  const std::pair<const char*, Op> unary[] = {{"neg", Op::neg},
                                              {"abs", Op::abs},
                                              {"exp", Op::exp},
                                              {"exp2", Op::exp2},
                                              {"expm1", Op::expm1},
                                              {"log", Op::log},
                                              {"log2", Op::log2},
                                              {"log1p", Op::log1p},
                                              {"sqrt", Op::sqrt},
                                              {"rsqrt", Op::rsqrt},
                                              {"reciprocal", Op::reciprocal},
                                              {"sin", Op::sin},
                                              {"cos", Op::cos},
                                              {"tan", Op::tan},
                                              {"tanh", Op::tanh},
                                              {"sigmoid", Op::sigmoid},
                                              {"erf", Op::erf},
                                              {"relu", Op::relu},
                                              {"silu", Op::silu},
                                              {"floor", Op::floor},
                                              {"ceil", Op::ceil},
                                              {"round", Op::round},
                                              {"trunc", Op::trunc},
                                              {"sign", Op::sign},
                                              {"bitwise_not", Op::bitwise_not}};
  for (auto [name, op] : unary) r[str_cat("aten.", name, ".default")] = arith(op, {0});
  r["aten.isnan.default"] = [](LowerContext& c) -> std::vector<ValueId> { return {c.node(Op::isnan, {c.tensor(0)})}; };
  r["aten.logical_not.default"] = [](LowerContext& c) -> std::vector<ValueId> {
    return {c.node(Op::logical_not, {c.cast(c.tensor(0), DType::Bool)})};
  };
  r["aten.gelu.default"] = lower_gelu;

  const std::pair<const char*, Op> binary[] = {{"mul", Op::mul},
                                               {"div", Op::div},
                                               {"maximum", Op::maximum},
                                               {"minimum", Op::minimum},
                                               {"remainder", Op::remainder},
                                               {"fmod", Op::fmod},
                                               {"atan2", Op::atan2},
                                               {"bitwise_and", Op::bitwise_and},
                                               {"bitwise_or", Op::bitwise_or},
                                               {"bitwise_xor", Op::bitwise_xor}};
  for (auto [name, op] : binary) {
    for (const char* ov : {"Tensor", "Scalar", "default", "Scalar_Tensor"})
      r[str_cat("aten.", name, ".", ov)] = arith(op, {0, 1});
  }
  for (const char* ov : {"Tensor", "Scalar"}) {
    r[str_cat("aten.add.", ov)] = add_like(Op::add);
    r[str_cat("aten.sub.", ov)] = add_like(Op::sub);
    r[str_cat("aten.rsub.", ov)] = [](LowerContext& c) -> std::vector<ValueId> {
      DType t = c.out_dtype();
      return {c.node(Op::sub, {c.operand(1, t, c.out_sizes()), c.operand(0, t, c.out_sizes())})};
    };
  }
  r["aten.div.Tensor_mode"] = lower_div_mode;
  r["aten.div.Scalar_mode"] = lower_div_mode;
  r["aten.pow.Tensor_Scalar"] = lower_pow_scalar_exponent;
  r["aten.pow.Tensor_Tensor"] = arith(Op::pow, {0, 1});
  r["aten.pow.Scalar"] = arith(Op::pow, {0, 1});

  const std::pair<const char*, Op> cmp[] = {{"eq", Op::eq}, {"ne", Op::ne}, {"lt", Op::lt},
                                            {"le", Op::le}, {"gt", Op::gt}, {"ge", Op::ge}};
  for (auto [name, op] : cmp)
    for (const char* ov : {"Tensor", "Scalar"}) r[str_cat("aten.", name, ".", ov)] = compare(op);
  const std::pair<const char*, Op> logical[] = {
      {"logical_and", Op::logical_and}, {"logical_or", Op::logical_or}, {"logical_xor", Op::logical_xor}};
  for (auto [name, op] : logical)
    r[str_cat("aten.", name, ".default")] = [op](LowerContext& c) -> std::vector<ValueId> {
      return {c.node(op, {c.operand(0, DType::Bool, c.out_sizes()), c.operand(1, DType::Bool, c.out_sizes())})};
    };

  r["aten.where.self"] = lower_where;
  r["aten.where.ScalarSelf"] = lower_where;
  r["aten.where.ScalarOther"] = lower_where;
  r["aten.where.Scalar"] = lower_where;
  r["aten.masked_fill.Scalar"] = lower_masked_fill;
  r["aten.masked_fill.Tensor"] = lower_masked_fill;
  r["aten.clamp.default"] = lower_clamp;
  r["aten.hardtanh.default"] = [](LowerContext& c) -> std::vector<ValueId> {
    DType t = c.out_dtype();
    ValueId x = c.operand(0, t, c.out_sizes());
    AtenArg lo, hi;
    lo.kind = hi.kind = AtenArg::Kind::Float;
    lo.f = c.has(1) ? c.float_arg(1) : -1.0;
    hi.f = c.has(2) ? c.float_arg(2) : 1.0;
    x = c.node(Op::maximum, {x, c.operand(lo, t, c.out_sizes())});
    return {c.node(Op::minimum, {x, c.operand(hi, t, c.out_sizes())})};
  };
  r["prims.fma.default"] = arith(Op::fma, {0, 1, 2});
  r["aten.clamp.Tensor"] = lower_clamp;
  r["aten.clamp_min.default"] = lower_clamp;
  r["aten.clamp_max.default"] = [](LowerContext& c) -> std::vector<ValueId> {
    DType t = c.out_dtype();
    return {c.node(Op::minimum, {c.operand(0, t, c.out_sizes()), c.operand(1, t, c.out_sizes())})};
  };
  r["aten._to_copy.default"] = lower_to_copy;
  r["prims.convert_element_type.default"] = lower_to_copy;
  for (const char* name : {"aten.clone.default", "aten.alias.default", "aten.detach.default",
                           "aten.lift_fresh_copy.default", "aten.copy.default"})
    r[name] = [](LowerContext& c) -> std::vector<ValueId> {
      // copy(dst, src) returns src's values in dst's dtype; the others return their input.
      size_t src = c.target() == "aten.copy.default" ? 1 : 0;
      return {c.expand_to(c.cast(c.tensor(src), c.out_dtype()), c.out_sizes())};
    };
}

}  // namespace kiln
