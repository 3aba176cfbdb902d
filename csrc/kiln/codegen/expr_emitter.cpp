// expr_emitter.cpp — element expressions: loads through views, pointwise math, gathers, sources.
#include "kiln/codegen/expr_emitter.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "kiln/loops/index_map.h"
#include "kiln/support/error.h"

namespace kiln {

std::string c_symbol_name(const std::string& s) { return "sym_" + s; }

std::string c_index(const SymExpr& e, const std::vector<std::string>& graph_symbols) {
  return e.to_c([&](const std::string& name) {
    bool graph_sym = std::find(graph_symbols.begin(), graph_symbols.end(), name) != graph_symbols.end();
    return graph_sym ? c_symbol_name(name) : name;
  });
}

std::string float_literal(double d, DType t) {
  std::string ty(dtype_c_type(t));
  if (std::isnan(d)) return "kiln_rt::quiet_nan<" + ty + ">()";
  if (std::isinf(d)) return std::string(d < 0 ? "-" : "") + "kiln_rt::infinity<" + ty + ">()";
  char buf[64];
  // Hex floats are exact: the constant in the kernel is bit-identical to the one PyTorch used.
  std::snprintf(buf, sizeof buf, "%a", d);
  return t == DType::F32 ? "static_cast<float>(" + std::string(buf) + ")" : std::string(buf);
}

std::string c_literal(const Attr& value, DType t, const std::vector<std::string>& syms) {
  std::string ty(dtype_c_type(t));
  if (auto* d = std::get_if<double>(&value)) {
    if (is_floating(t)) return float_literal(*d, t);
    if (t == DType::Bool) return *d != 0 ? "true" : "false";
    return ty + "(" + std::to_string(static_cast<int64_t>(*d)) + "LL)";
  }
  if (auto* i = std::get_if<int64_t>(&value)) {
    if (is_floating(t)) return float_literal(static_cast<double>(*i), t);
    if (t == DType::Bool) return *i != 0 ? "true" : "false";
    if (*i == INT64_MIN) return "int64_t(INT64_MIN)";
    return ty + "(" + std::to_string(*i) + "LL)";
  }
  if (auto* b = std::get_if<bool>(&value))
    return t == DType::Bool ? (*b ? "true" : "false") : ty + "(" + (*b ? "1" : "0") + ")";
  if (auto* e = std::get_if<SymExpr>(&value)) return "static_cast<" + ty + ">(" + c_index(*e, syms) + ")";
  throw InternalError("bad literal attribute");
}

std::string ExprEmitter::element(ValueId v, const std::vector<SymExpr>& coords) {
  const Storage& s = plan_.storage[static_cast<size_t>(v)];
  SymExpr off(0);
  for (size_t d = 0; d < coords.size(); ++d) off = off + coords[d] * s.strides[d];
  if (s.kind == Storage::Kind::Local && !local_lane_.empty()) off = off + s.offset * SymExpr::symbol(local_lane_);
  return idx(off);
}

std::string ExprEmitter::value(ValueId v, const std::vector<SymExpr>& coords) {
  std::string key = std::to_string(v) + ":" + to_string(coords);
  for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
    auto f = it->find(key);
    if (f != it->end()) return f->second;
  }
  std::string r;
  const TensorType& t = g_.type(v);
  if (plan_.realized[static_cast<size_t>(v)]) {
    r = temp();
    line(str_cat("const ", dtype_c_type(t.dtype), " ", r, " = v", v, "[", element(v, coords), "];"));
  } else {
    const Node* n = g_.producer(v);
    KILN_CHECK(n != nullptr, "unrealized input");
    r = compute(*n, coords);
  }
  scopes_.back()[key] = r;
  return r;
}

std::string ExprEmitter::node_value(const Node& n, const std::vector<SymExpr>& coords) { return compute(n, coords); }

std::string ExprEmitter::compute(const Node& n, const std::vector<SymExpr>& coords) {
  const TensorType& t = g_.type(n.result);
  std::string ty(dtype_c_type(t.dtype));
  switch (op_kind(n.op)) {
    case OpKind::View: return value(n.inputs[0], view_input_coords(g_, n, coords));
    case OpKind::Source: {
      if (n.op == Op::full) return c_literal(n.attrs.at("value"), t.dtype, g_.symbols);
      // iota: start + step * coordinate along dim
      const SymExpr& c = coords[static_cast<size_t>(n.attr_int("dim"))];
      std::string r = temp();
      line(str_cat("const ", ty, " ", r, " = static_cast<", ty, ">(",
                   c_literal(n.attrs.at("start"), t.dtype, g_.symbols), " + ",
                   c_literal(n.attrs.at("step"), t.dtype, g_.symbols), " * static_cast<", ty, ">(", idx(c), "));"));
      return r;
    }
    case OpKind::Pointwise: {
      std::vector<std::string> a;
      for (ValueId in : n.inputs) a.push_back(value(in, coords));
      std::string r = temp();
      line(str_cat("const ", ty, " ", r, " = ", pointwise(n, a), ";  // ", op_name(n.op),
                   n.origin.empty() ? "" : " from " + n.origin));
      return r;
    }
    case OpKind::Gather: {
      if (n.op == Op::index_rows) {
        ValueId data = n.inputs[0], index = n.inputs[1];
        size_t r = static_cast<size_t>(g_.type(index).rank());
        std::vector<SymExpr> ic(coords.begin(), coords.begin() + static_cast<long>(r));
        std::string raw = value(index, ic);
        std::string row = "r" + std::to_string(temps_++);
        // x[idx] wraps negative indices like Python; F.embedding rejects them.
        bool wrap = !n.has_attr("wrap_negative") || n.attr_bool("wrap_negative");
        line(str_cat("const int64_t ", row, " = kiln_rt::checked_index(static_cast<int64_t>(", raw, "), ",
                     idx(g_.type(data).sizes[0]), ", ", wrap ? "true" : "false", ", index_bad);"));
        std::vector<SymExpr> dc{SymExpr::symbol(row)};
        dc.insert(dc.end(), coords.begin() + static_cast<long>(r), coords.end());
        return value(data, dc);
      }
      std::string r = temp();
      if (n.op == Op::cat) {
        size_t d = static_cast<size_t>(n.attr_int("dim"));
        line(str_cat(ty, " ", r, ";"));
        SymExpr off(0);
        for (size_t k = 0; k < n.inputs.size(); ++k) {
          ValueId in = n.inputs[k];
          SymExpr end = off + g_.type(in).sizes[d];
          bool last = k + 1 == n.inputs.size();
          std::string head =
              std::string(k ? "else " : "") + (last ? "{" : str_cat("if (", idx(coords[d]), " < ", idx(end), ") {"));
          open(head);
          auto c = coords;
          c[d] = c[d] - off;
          line(str_cat(r, " = ", value(in, c), ";"));
          close();
          off = end;
        }
        return r;
      }
      if (n.op == Op::slice_scatter) {
        // Inside the slice (and on its stride) the element comes from src, elsewhere from base.
        size_t d = static_cast<size_t>(n.attr_int("dim"));
        int64_t step = n.attr_int("step");
        const SymExpr& len = g_.type(n.inputs[1]).sizes[d];
        std::string rel = "q" + std::to_string(temps_++);
        line(str_cat("const int64_t ", rel, " = ", idx(coords[d] - n.attr_sym("start")), ";"));
        std::string cond = str_cat(rel, " >= 0 && ", rel, " < ", idx(len * SymExpr(step)));
        if (step > 1) cond += str_cat(" && ", rel, " % ", step, " == 0");
        line(str_cat(ty, " ", r, ";"));
        open(str_cat("if (", cond, ") {"));
        auto c = coords;
        c[d] = step > 1 ? floordiv(SymExpr::symbol(rel), SymExpr(step)) : SymExpr::symbol(rel);
        line(str_cat(r, " = ", value(n.inputs[1], c), ";"));
        close();
        open("else {");
        line(str_cat(r, " = ", value(n.inputs[0], coords), ";"));
        close();
        return r;
      }
      if (n.op == Op::pad) {
        auto pads = n.attr_syms("pads");
        const auto& in_sizes = g_.type(n.inputs[0]).sizes;
        auto c = coords;
        std::string cond = "true";
        for (size_t i = 0; i < pads.size() / 2; ++i) {
          size_t d = c.size() - 1 - i;
          c[d] = c[d] - pads[2 * i];
          cond += str_cat(" && ", idx(c[d]), " >= 0 && ", idx(c[d]), " < ", idx(in_sizes[d]));
        }
        line(str_cat(ty, " ", r, " = ", c_literal(n.attrs.at("value"), t.dtype, g_.symbols), ";"));
        open(str_cat("if (", cond, ") {"));
        line(str_cat(r, " = ", value(n.inputs[0], c), ";"));
        close();
        return r;
      }
      break;
    }
    default: break;
  }
  throw InternalError(str_cat("cannot compute ", op_name(n.op), " inline"));
}

std::string ExprEmitter::pointwise(const Node& n, const std::vector<std::string>& a) {
  DType in_t = g_.type(n.inputs[0]).dtype;
  std::string T(dtype_c_type(in_t));
  auto call = [&](const std::string& f) {
    std::string s = f + "(";
    for (size_t i = 0; i < a.size(); ++i) s += (i ? ", " : "") + a[i];
    return s + ")";
  };
  auto infix = [&](const char* op) { return str_cat("(", a[0], " ", op, " ", a[1], ")"); };
  switch (n.op) {
    case Op::neg: return in_t == DType::Bool ? a[0] : "(-" + a[0] + ")";
    case Op::abs: return is_floating(in_t) ? call("kiln_rt::fabs") : call("kiln_rt::iabs");
    case Op::exp: return call("kiln_rt::exp");
    case Op::exp2: return call("kiln_rt::exp2");
    case Op::expm1: return call("kiln_rt::expm1");
    case Op::log: return call("kiln_rt::log");
    case Op::log2: return call("kiln_rt::log2");
    case Op::log1p: return call("kiln_rt::log1p");
    case Op::sqrt: return call("kiln_rt::sqrt");
    case Op::rsqrt: return call("kiln_rt::rsqrt");
    case Op::reciprocal: return call("kiln_rt::reciprocal");
    case Op::sin: return call("kiln_rt::sin");
    case Op::cos: return call("kiln_rt::cos");
    case Op::tan: return call("kiln_rt::tan");
    case Op::tanh: return call("kiln_rt::tanh");
    case Op::sigmoid: return call("kiln_rt::sigmoid");
    case Op::erf: return call("kiln_rt::erf");
    case Op::relu:
      return is_floating(in_t) ? call("kiln_rt::relu") : str_cat("(", a[0], " > 0 ? ", a[0], " : ", T, "(0))");
    case Op::silu: return call("kiln_rt::silu");
    case Op::gelu: return call("kiln_rt::gelu");
    case Op::gelu_tanh: return call("kiln_rt::gelu_tanh");
    case Op::floor: return is_floating(in_t) ? call("kiln_rt::floor") : a[0];
    case Op::ceil: return is_floating(in_t) ? call("kiln_rt::ceil") : a[0];
    case Op::round: return is_floating(in_t) ? call("kiln_rt::round_half_even") : a[0];
    case Op::trunc: return is_floating(in_t) ? call("kiln_rt::trunc") : a[0];
    case Op::sign: return call("kiln_rt::sign");
    case Op::isnan: return call("kiln_rt::isnan_");
    case Op::logical_not: return "(!" + a[0] + ")";
    case Op::bitwise_not: return in_t == DType::Bool ? "(!" + a[0] + ")" : "(~" + a[0] + ")";
    case Op::cast: {
      DType to = n.attr_dtype("dtype");
      if (to == DType::Bool) return str_cat("(", a[0], " != 0)");
      return str_cat("static_cast<", dtype_c_type(to), ">(", a[0], ")");
    }
    case Op::add: return in_t == DType::Bool ? infix("||") : infix("+");
    case Op::sub: return infix("-");
    case Op::mul: return in_t == DType::Bool ? infix("&&") : infix("*");
    case Op::div: return infix("/");
    case Op::floordiv: return call("kiln_rt::floordiv<" + T + ">");
    case Op::truncdiv: return call("kiln_rt::truncdiv<" + T + ">");
    case Op::remainder: return call("kiln_rt::remainder<" + T + ">");
    case Op::fmod: return call("kiln_rt::fmod_<" + T + ">");
    case Op::pow: return call("kiln_rt::pow_<" + T + ">");
    case Op::maximum: return call("kiln_rt::maximum<" + T + ">");
    case Op::minimum: return call("kiln_rt::minimum<" + T + ">");
    case Op::atan2: return call("kiln_rt::atan2");
    case Op::eq: return infix("==");
    case Op::ne: return infix("!=");
    case Op::lt: return infix("<");
    case Op::le: return infix("<=");
    case Op::gt: return infix(">");
    case Op::ge: return infix(">=");
    case Op::logical_and: return infix("&&");
    case Op::logical_or: return infix("||");
    case Op::logical_xor: return infix("!=");
    case Op::bitwise_and: return infix("&");
    case Op::bitwise_or: return infix("|");
    case Op::bitwise_xor: return infix("^");
    case Op::where: return str_cat("(", a[0], " ? ", a[1], " : ", a[2], ")");
    case Op::fma: return is_floating(in_t) ? call("kiln_rt::fma") : str_cat("(", a[0], " * ", a[1], " + ", a[2], ")");
    default: break;
  }
  throw InternalError(str_cat("no C++ spelling for ", op_name(n.op)));
}

}  // namespace kiln
