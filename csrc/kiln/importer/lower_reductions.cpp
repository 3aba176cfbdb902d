// lower_reductions.cpp — sums, means, max/min (with indices), and the softmax family kept whole.
#include <algorithm>

#include "kiln/importer/lower_context.h"

namespace kiln {

namespace {

using Rules = std::map<std::string, LoweringRule>;

// Normalised, sorted, de-duplicated reduction dims; an absent or empty list means every dim.
std::vector<int64_t> reduction_dims(LowerContext& c, ValueId x, size_t arg_index) {
  int64_t r = c.rank(x);
  std::vector<int64_t> dims;
  if (c.has(arg_index)) dims = c.ints_arg(arg_index);
  if (dims.empty())
    for (int64_t i = 0; i < r; ++i) dims.push_back(i);
  for (auto& d : dims) d = c.wrap_dim(d, r);
  std::sort(dims.begin(), dims.end());
  dims.erase(std::unique(dims.begin(), dims.end()), dims.end());
  if (r == 0) dims.clear();
  return dims;
}

ValueId reduce(LowerContext& c, Op op, ValueId x, const std::vector<int64_t>& dims, bool keepdim) {
  if (dims.empty()) return x;  // reducing a 0-dim tensor is the identity
  return c.node(op, {x}, {{"dims", dims}, {"keepdim", keepdim}});
}

LoweringRule simple(Op op, size_t dims_arg, size_t keep_arg) {
  return [=](LowerContext& c) -> std::vector<ValueId> {
    ValueId x = c.cast(c.tensor(0), c.out_dtype());
    auto dims = reduction_dims(c, x, dims_arg);
    return {reduce(c, op, x, dims, c.bool_arg(keep_arg, false))};
  };
}

LoweringRule mean(size_t dims_arg, size_t keep_arg) {
  return [=](LowerContext& c) -> std::vector<ValueId> {
    DType t = c.out_dtype();
    ValueId x = c.cast(c.tensor(0), t);
    auto dims = reduction_dims(c, x, dims_arg);
    ValueId s = reduce(c, Op::sum, x, dims, c.bool_arg(keep_arg, false));
    SymExpr n(1);
    for (auto d : dims) n = n * c.type(x).sizes[static_cast<size_t>(d)];
    AtenArg count;
    if (n.is_const()) {
      count.kind = AtenArg::Kind::Float;
      count.f = static_cast<double>(n.const_value());
    } else {
      count.kind = AtenArg::Kind::Sym;
      count.sym = n;
    }
    return {c.node(Op::div, {s, c.full(count, t, c.type(s).sizes)})};
  };
}

// max.dim / min.dim: (values, indices).
LoweringRule with_indices(Op value_op, Op index_op) {
  return [=](LowerContext& c) -> std::vector<ValueId> {
    ValueId x = c.tensor(0);
    int64_t d = c.wrap_dim(c.int_arg(1), c.rank(x));
    bool keep = c.bool_arg(2, false);
    if (c.rank(x) == 0) return {x, c.full(0, DType::I64, {})};
    return {reduce(c, value_op, x, {d}, keep), reduce(c, index_op, x, {d}, keep)};
  };
}

LoweringRule arg_reduction(Op op) {
  return [=](LowerContext& c) -> std::vector<ValueId> {
    ValueId x = c.tensor(0);
    bool keep = c.bool_arg(2, false);
    if (!c.has(1)) {
      x = c.reshape(x, {c.type(x).numel()});
      ValueId r = reduce(c, op, x, {0}, false);
      return {keep ? c.reshape(r, c.out_sizes()) : r};
    }
    return {reduce(c, op, x, {c.wrap_dim(c.int_arg(1), c.rank(x))}, keep)};
  };
}

ValueId expand_back(LowerContext& c, ValueId v, ValueId like) { return c.expand_to(v, c.type(like).sizes); }

// softmax(x) = exp(x - max) / sum(exp(x - max)) along dim, computed in the result dtype.
std::vector<ValueId> lower_softmax(LowerContext& c, bool log) {
  DType t = c.out_dtype();
  ValueId x = c.cast(c.tensor(0), t);
  if (c.rank(x) == 0) return {log ? c.full(0.0, t, {}) : c.full(1.0, t, {})};
  int64_t d = c.wrap_dim(c.int_arg(1), c.rank(x));
  ValueId m = reduce(c, Op::amax, x, {d}, true);
  ValueId shifted = c.node(Op::sub, {x, expand_back(c, m, x)});
  ValueId e = c.node(Op::exp, {shifted});
  ValueId s = reduce(c, Op::sum, e, {d}, true);
  if (log) return {c.node(Op::sub, {shifted, expand_back(c, c.node(Op::log, {s}), x)})};
  return {c.node(Op::div, {e, expand_back(c, s, x)})};
}

std::vector<ValueId> lower_softmax_backward(LowerContext& c, bool log) {
  DType t = c.out_dtype();
  ValueId grad = c.cast(c.tensor(0), t), out = c.cast(c.tensor(1), t);
  int64_t d = c.wrap_dim(c.int_arg(2), c.rank(out));
  if (log) {  // grad - exp(out) * sum(grad)
    ValueId s = reduce(c, Op::sum, grad, {d}, true);
    return {c.node(Op::sub, {grad, c.node(Op::mul, {c.node(Op::exp, {out}), expand_back(c, s, out)})})};
  }
  // out * (grad - sum(grad * out))
  ValueId go = c.node(Op::mul, {grad, out});
  ValueId s = reduce(c, Op::sum, go, {d}, true);
  return {c.node(Op::mul, {out, c.node(Op::sub, {grad, expand_back(c, s, out)})})};
}

}  // namespace

void register_reduction_rules(Rules& r) {
  r["aten.sum.dim_IntList"] = simple(Op::sum, 1, 2);
  r["aten.sum.default"] = simple(Op::sum, 99, 99);
  r["aten.prod.dim_int"] = simple(Op::prod, 1, 2);
  r["aten.prod.default"] = simple(Op::prod, 99, 99);
  r["aten.amax.default"] = simple(Op::amax, 1, 2);
  r["aten.amin.default"] = simple(Op::amin, 1, 2);
  r["aten.max.default"] = simple(Op::amax, 99, 99);
  r["aten.min.default"] = simple(Op::amin, 99, 99);
  // any/all: the max/min of the values as bools.
  auto logical = [](Op op, size_t dims_arg, size_t keep_arg) -> LoweringRule {
    return [=](LowerContext& c) -> std::vector<ValueId> {
      ValueId x = c.cast(c.tensor(0), DType::Bool);
      auto dims = reduction_dims(c, x, dims_arg);
      return {c.cast(reduce(c, op, x, dims, c.bool_arg(keep_arg, false)), c.out_dtype())};
    };
  };
  for (auto [name, op] : {std::pair{"any", Op::amax}, std::pair{"all", Op::amin}}) {
    r[str_cat("aten.", name, ".dim")] = logical(op, 1, 2);
    r[str_cat("aten.", name, ".dims")] = logical(op, 1, 2);
    r[str_cat("aten.", name, ".default")] = logical(op, 99, 99);
  }
  r["aten.mean.dim"] = mean(1, 2);
  r["aten.mean.default"] = mean(99, 99);
  r["aten.max.dim"] = with_indices(Op::amax, Op::argmax);
  r["aten.min.dim"] = with_indices(Op::amin, Op::argmin);
  r["aten.argmax.default"] = arg_reduction(Op::argmax);
  r["aten.argmin.default"] = arg_reduction(Op::argmin);
  r["aten._softmax.default"] = [](LowerContext& c) { return lower_softmax(c, false); };
  r["aten._log_softmax.default"] = [](LowerContext& c) { return lower_softmax(c, true); };
  r["aten._softmax_backward_data.default"] = [](LowerContext& c) { return lower_softmax_backward(c, false); };
  r["aten._log_softmax_backward_data.default"] = [](LowerContext& c) { return lower_softmax_backward(c, true); };
}

}  // namespace kiln
