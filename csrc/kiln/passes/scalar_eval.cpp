// scalar_eval.cpp — PyTorch's pointwise semantics on scalars, for constant folding.
#include "kiln/passes/scalar_eval.h"

#include <cmath>
#include <limits>

namespace kiln {

namespace {

double round_to(DType t, double v) { return t == DType::F32 ? static_cast<double>(static_cast<float>(v)) : v; }

// Two's-complement wrap to the dtype's width, as PyTorch's integer arithmetic does.
int64_t wrap_to(DType t, uint64_t v) {
  if (t == DType::I32) return static_cast<int32_t>(static_cast<uint32_t>(v));
  if (t == DType::Bool) return v != 0;
  return static_cast<int64_t>(v);
}

bool fits(DType t, int64_t v) {
  if (t == DType::I32) return v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max();
  if (t == DType::Bool) return v == 0 || v == 1;
  return true;
}

bool truthy(const Scalar& s) { return is_floating(s.dtype) ? s.f != 0 : s.i != 0; }  // NaN is true

Scalar make_float(DType t, double v) { return {t, round_to(t, v), 0}; }
Scalar make_int(DType t, int64_t v) { return {t, 0, v}; }

int64_t py_floordiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if (a % b != 0 && ((a < 0) != (b < 0))) --q;
  return q;
}

std::optional<double> eval_float(Op op, double a, double b) {
  constexpr double kSqrt2OverPi = 0.79788456080286535587989211986876;
  constexpr double kSqrtHalf = 0.70710678118654752440084436210485;
  switch (op) {
    case Op::neg: return -a;
    case Op::abs: return std::fabs(a);
    case Op::exp: return std::exp(a);
    case Op::exp2: return std::exp2(a);
    case Op::expm1: return std::expm1(a);
    case Op::log: return std::log(a);
    case Op::log2: return std::log2(a);
    case Op::log1p: return std::log1p(a);
    case Op::sqrt: return std::sqrt(a);
    case Op::rsqrt: return 1.0 / std::sqrt(a);
    case Op::reciprocal: return 1.0 / a;
    case Op::sin: return std::sin(a);
    case Op::cos: return std::cos(a);
    case Op::tan: return std::tan(a);
    case Op::tanh: return std::tanh(a);
    case Op::sigmoid: return 1.0 / (1.0 + std::exp(-a));
    case Op::erf: return std::erf(a);
    case Op::silu: return a / (1.0 + std::exp(-a));
    case Op::gelu: return 0.5 * a * (1.0 + std::erf(a * kSqrtHalf));
    case Op::gelu_tanh: return 0.5 * a * (1.0 + std::tanh(kSqrt2OverPi * (a + 0.044715 * a * a * a)));
    case Op::relu:
      if (a == 0) return std::nullopt;  // eager's sign of relu(-0.0) depends on its code path
      return std::isnan(a) || a > 0 ? a : 0.0;
    case Op::floor: return std::floor(a);
    case Op::ceil: return std::ceil(a);
    case Op::round: return std::nearbyint(a);  // half to even, as torch.round
    case Op::trunc: return std::trunc(a);
    case Op::sign:
      if (std::isnan(a)) return std::nullopt;
      return a > 0 ? 1.0 : a < 0 ? -1.0 : 0.0;
    case Op::add: return a + b;
    case Op::sub: return a - b;
    case Op::mul: return a * b;
    case Op::div: return a / b;
    case Op::floordiv: {  // ATen's div_floor_floating
      if (b == 0) return a / b;
      double m = std::fmod(a, b);
      double d = (a - m) / b;
      if (m != 0 && ((b < 0) != (m < 0))) d -= 1;
      if (d == 0) return std::copysign(0.0, a / b);
      double fl = std::floor(d);
      return d - fl > 0.5 ? fl + 1 : fl;
    }
    case Op::truncdiv: return std::trunc(a / b);
    case Op::remainder: {  // ATen: the result takes the divisor's sign
      double m = std::fmod(a, b);
      if (m != 0 && ((b < 0) != (m < 0))) m += b;
      return m;
    }
    case Op::fmod: return std::fmod(a, b);
    case Op::pow: return std::pow(a, b);
    case Op::maximum:
    case Op::minimum:
      if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<double>::quiet_NaN();
      if (a == b && std::signbit(a) != std::signbit(b)) return std::nullopt;  // max(0.0, -0.0)
      return op == Op::maximum ? std::fmax(a, b) : std::fmin(a, b);
    case Op::atan2: return std::atan2(a, b);
    default: return std::nullopt;
  }
}

std::optional<uint64_t> eval_int(Op op, int64_t a, int64_t b) {
  auto ua = static_cast<uint64_t>(a), ub = static_cast<uint64_t>(b);  // unsigned: wrap, never UB
  switch (op) {
    case Op::neg: return 0 - ua;
    case Op::abs: return a < 0 ? 0 - ua : ua;
    case Op::sign: return static_cast<uint64_t>((a > 0) - (a < 0));
    case Op::relu: return a > 0 ? ua : 0;
    case Op::floor:
    case Op::ceil:
    case Op::round:
    case Op::trunc: return ua;
    case Op::bitwise_not: return ~ua;
    case Op::add: return ua + ub;
    case Op::sub: return ua - ub;
    case Op::mul: return ua * ub;
    case Op::floordiv:
    case Op::truncdiv:
    case Op::remainder:
    case Op::fmod:
      if (b == 0 || (a == std::numeric_limits<int64_t>::min() && b == -1)) return std::nullopt;
      if (op == Op::floordiv) return static_cast<uint64_t>(py_floordiv(a, b));
      if (op == Op::truncdiv) return static_cast<uint64_t>(a / b);
      if (op == Op::remainder) return static_cast<uint64_t>(a - py_floordiv(a, b) * b);
      return static_cast<uint64_t>(a % b);
    case Op::pow: {
      if (b < 0) return std::nullopt;  // eager raises for integers to negative powers
      uint64_t r = 1, base = ua;
      for (auto e = static_cast<uint64_t>(b); e; e >>= 1, base *= base)
        if (e & 1) r *= base;
      return r;
    }
    case Op::maximum: return static_cast<uint64_t>(std::max(a, b));
    case Op::minimum: return static_cast<uint64_t>(std::min(a, b));
    case Op::bitwise_and: return ua & ub;
    case Op::bitwise_or: return ua | ub;
    case Op::bitwise_xor: return ua ^ ub;
    default: return std::nullopt;
  }
}

// Ops whose result is bool whatever the operands' dtype.
std::optional<bool> eval_predicate(Op op, const Scalar& a, const Scalar& b) {
  bool fl = is_floating(a.dtype);
  auto cmp = [&](auto f) { return fl ? f(a.f, b.f) : f(static_cast<double>(a.i), static_cast<double>(b.i)); };
  if (!fl && (op == Op::eq || op == Op::ne || op == Op::lt || op == Op::le || op == Op::gt || op == Op::ge)) {
    // Compare integers as integers: int64 values beyond 2^53 are not exact in double.
    switch (op) {
      case Op::eq: return a.i == b.i;
      case Op::ne: return a.i != b.i;
      case Op::lt: return a.i < b.i;
      case Op::le: return a.i <= b.i;
      case Op::gt: return a.i > b.i;
      default: return a.i >= b.i;
    }
  }
  switch (op) {
    case Op::eq: return cmp([](double x, double y) { return x == y; });
    case Op::ne: return cmp([](double x, double y) { return x != y; });
    case Op::lt: return cmp([](double x, double y) { return x < y; });
    case Op::le: return cmp([](double x, double y) { return x <= y; });
    case Op::gt: return cmp([](double x, double y) { return x > y; });
    case Op::ge: return cmp([](double x, double y) { return x >= y; });
    case Op::isnan: return fl && std::isnan(a.f);
    case Op::logical_not: return !truthy(a);
    case Op::logical_and: return truthy(a) && truthy(b);
    case Op::logical_or: return truthy(a) || truthy(b);
    case Op::logical_xor: return truthy(a) != truthy(b);
    default: return std::nullopt;
  }
}

std::optional<Scalar> eval_cast(const Scalar& a, DType to) {
  if (to == DType::Bool) return make_int(to, truthy(a));
  if (is_floating(to)) {
    if (is_floating(a.dtype)) return make_float(to, a.f);
    // Straight from the integer, not through double: i64 → f32 via double could round twice.
    if (to == DType::F32) return make_float(to, static_cast<double>(static_cast<float>(a.i)));
    return make_float(to, static_cast<double>(a.i));
  }
  if (!is_floating(a.dtype)) return make_int(to, wrap_to(to, static_cast<uint64_t>(a.i)));
  // Float to integer truncates; NaN and out-of-range values are undefined in C++ and in eager.
  double t = std::trunc(a.f);
  if (std::isnan(t) || t < -9.2233720368547758e18 || t >= 9.2233720368547758e18) return std::nullopt;
  auto v = static_cast<int64_t>(t);
  if (!fits(to, v)) return std::nullopt;
  return make_int(to, v);
}

}  // namespace

std::optional<Scalar> Scalar::from_attr(const Attr& value, DType dtype) {
  if (auto* d = std::get_if<double>(&value)) {
    if (is_floating(dtype)) return make_float(dtype, *d);
    if (dtype == DType::Bool) return make_int(dtype, *d != 0);
    if (std::isnan(*d) || std::trunc(*d) != *d || std::fabs(*d) >= 9.2233720368547758e18) return std::nullopt;
    auto v = static_cast<int64_t>(*d);
    return fits(dtype, v) ? std::optional<Scalar>(make_int(dtype, v)) : std::nullopt;
  }
  int64_t v;
  if (auto* b = std::get_if<bool>(&value))
    v = *b;
  else if (auto* i = std::get_if<int64_t>(&value))
    v = *i;
  else
    return std::nullopt;
  if (dtype == DType::F32) return make_float(dtype, static_cast<double>(static_cast<float>(v)));
  if (dtype == DType::F64) return make_float(dtype, static_cast<double>(v));
  if (dtype == DType::Bool) return make_int(dtype, v != 0);
  return fits(dtype, v) ? std::optional<Scalar>(make_int(dtype, v)) : std::nullopt;
}

Attr Scalar::to_attr() const {
  if (is_floating(dtype)) return f;
  if (dtype == DType::Bool) return i != 0;
  return i;
}

std::optional<Scalar> eval_pointwise(Op op, const std::vector<Scalar>& args, const Attrs& attrs, DType result) {
  if (op == Op::cast) {
    auto it = attrs.find("dtype");
    if (it == attrs.end() || !std::holds_alternative<DType>(it->second)) return std::nullopt;
    return eval_cast(args[0], std::get<DType>(it->second));
  }
  if (op == Op::where) return truthy(args[0]) ? args[1] : args[2];
  const Scalar& a = args[0];
  const Scalar& b = args.size() > 1 ? args[1] : args[0];
  if (is_comparison(op)) {
    auto r = eval_predicate(op, a, b);
    return r ? std::optional<Scalar>(make_int(DType::Bool, *r)) : std::nullopt;
  }
  if (is_floating(result)) {
    auto r = eval_float(op, a.f, b.f);
    return r ? std::optional<Scalar>(make_float(result, *r)) : std::nullopt;
  }
  if (result == DType::Bool) {
    // bool operands, bool result: only the bitwise ops and max/min (or/and) are well defined.
    switch (op) {
      case Op::bitwise_not: return make_int(result, !a.i);
      case Op::bitwise_and:
      case Op::minimum: return make_int(result, a.i & b.i);
      case Op::bitwise_or:
      case Op::maximum: return make_int(result, a.i | b.i);
      case Op::bitwise_xor: return make_int(result, a.i ^ b.i);
      default: return std::nullopt;
    }
  }
  auto r = eval_int(op, a.i, b.i);
  if (!r) return std::nullopt;
  bool divides = op == Op::floordiv || op == Op::truncdiv || op == Op::remainder || op == Op::fmod;
  if (divides && !fits(result, static_cast<int64_t>(*r))) return std::nullopt;  // INT32_MIN // -1
  return make_int(result, wrap_to(result, *r));
}

}  // namespace kiln
