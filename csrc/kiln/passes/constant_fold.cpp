// constant_fold.cpp — folds computations over `full` splats and exact algebraic identities.
//
// A `full` is a splat (one value, any size), so folding never materialises a tensor and needs no
// size cap. Graph inputs (parameters included) are never treated as constants.
#include <algorithm>
#include <cmath>

#include "kiln/passes/passes.h"
#include "kiln/passes/rewriter.h"
#include "kiln/passes/scalar_eval.h"

namespace kiln {

namespace {

// The splat value of new-graph value `v`, if it is produced by a `full`.
std::optional<Scalar> splat(const Graph& g, ValueId v) {
  const Node* p = g.producer(v);
  if (!p || p->op != Op::full) return std::nullopt;
  auto it = p->attrs.find("value");
  if (it == p->attrs.end()) return std::nullopt;
  return Scalar::from_attr(it->second, g.type(v).dtype);
}

ValueId emit_full(GraphRewriter& rw, const Scalar& s, const TensorType& t, const std::string& origin) {
  bool all_const = std::all_of(t.sizes.begin(), t.sizes.end(), [](const SymExpr& e) { return e.is_const(); });
  Attr sizes = t.sizes;  // static sizes print as a plain int list, which reads better
  if (all_const) {
    std::vector<int64_t> ints;
    for (const SymExpr& e : t.sizes) ints.push_back(e.const_value());
    sizes = ints;
  }
  return rw.emit(Op::full, {}, {{"value", s.to_attr()}, {"dtype", t.dtype}, {"sizes", sizes}}, origin);
}

// Identities that hold for every value of x, signed zeros and NaN included: x*1, x/1 (floats),
// x//1 and trunc(x/1) (integers), x+(-0.0) and x-0.0 (x+0 and x-0 for integers), a cast to x's
// own dtype, and where() over a constant condition. Returns the operand the node equals.
std::optional<ValueId> identity(const Graph& g, const Node& n, const std::vector<ValueId>& in) {
  auto is_splat = [&](size_t k, double v, bool negative_zero = false) {
    auto s = splat(g, in[k]);
    if (!s || !s->is(v)) return false;
    return !is_floating(s->dtype) || v != 0 || std::signbit(s->f) == negative_zero;
  };
  bool fl = is_floating(g.type(in[0]).dtype);
  switch (n.op) {
    case Op::mul:
      if (is_splat(1, 1)) return in[0];
      if (is_splat(0, 1)) return in[1];
      break;
    case Op::div:
      if (fl && is_splat(1, 1)) return in[0];
      break;
    case Op::floordiv:
    case Op::truncdiv:
      if (!fl && is_splat(1, 1)) return in[0];
      break;
    case Op::add:
      // x + 0.0 is not x for x = -0.0; x + (-0.0) is.
      if (is_splat(1, 0, fl)) return in[0];
      if (is_splat(0, 0, fl)) return in[1];
      break;
    case Op::sub:
      if (is_splat(1, 0, false)) return in[0];
      break;
    case Op::cast:
      if (n.attr_dtype("dtype") == g.type(in[0]).dtype) return in[0];
      break;
    case Op::where:
      if (auto c = splat(g, in[0])) return c->i ? in[1] : in[2];
      break;
    default: break;
  }
  return std::nullopt;
}

}  // namespace

Graph constant_fold(const Graph& g) {
  return rewrite_nodes(g,
                       [&](GraphRewriter& rw, const Node& n, const std::vector<ValueId>& in) -> std::optional<ValueId> {
                         const Graph& out = rw.graph();
                         const TensorType& type = g.type(n.result);
                         OpKind kind = op_kind(n.op);
                         if (kind == OpKind::View) {
                           // Every element of a view of a splat is the splat's value.
                           if (auto s = splat(out, in[0])) return emit_full(rw, *s, type, n.origin);
                           return std::nullopt;
                         }
                         if (kind != OpKind::Pointwise) return std::nullopt;
                         std::vector<Scalar> args;
                         for (ValueId v : in) {
                           auto s = splat(out, v);
                           if (!s) break;
                           args.push_back(*s);
                         }
                         if (args.size() == in.size())
                           if (auto r = eval_pointwise(n.op, args, n.attrs, type.dtype))
                             return emit_full(rw, *r, type, n.origin);
                         return identity(out, n, in);
                       });
}

}  // namespace kiln
