// lower_views.cpp — ATen view ops: reshape family, permute/transpose, expand, slice, select.
#include "kiln/importer/lower_context.h"

namespace kiln {

namespace {

using Rules = std::map<std::string, LoweringRule>;

// Ops whose result is the input reinterpreted with the result's sizes (row-major order kept).
std::vector<ValueId> lower_reshape(LowerContext& c) { return {c.reshape(c.tensor(0), c.out_sizes())}; }

std::vector<ValueId> lower_permute(LowerContext& c) {
  ValueId x = c.tensor(0);
  auto dims = c.ints_arg(1);
  bool identity = true;
  for (size_t i = 0; i < dims.size(); ++i) {
    dims[i] = c.wrap_dim(dims[i], c.rank(x));
    identity = identity && dims[i] == static_cast<int64_t>(i);
  }
  if (identity) return {x};
  return {c.node(Op::permute, {x}, {{"dims", dims}})};
}

std::vector<ValueId> lower_transpose(LowerContext& c) {
  ValueId x = c.tensor(0);
  int64_t r = c.rank(x);
  if (r < 2) return {x};
  int64_t a = c.target() == "aten.t.default" ? 0 : c.wrap_dim(c.int_arg(1), r);
  int64_t b = c.target() == "aten.t.default" ? 1 : c.wrap_dim(c.int_arg(2), r);
  if (a == b) return {x};
  std::vector<int64_t> dims(static_cast<size_t>(r));
  for (int64_t i = 0; i < r; ++i) dims[static_cast<size_t>(i)] = i;
  std::swap(dims[static_cast<size_t>(a)], dims[static_cast<size_t>(b)]);
  return {c.node(Op::permute, {x}, {{"dims", dims}})};
}

std::vector<ValueId> lower_expand(LowerContext& c) { return {c.expand_to(c.tensor(0), c.out_sizes())}; }

std::vector<ValueId> lower_slice(LowerContext& c) {
  ValueId x = c.tensor(0);
  int64_t d = c.wrap_dim(c.int_arg(1, 0), c.rank(x));
  SymExpr size = c.type(x).sizes[static_cast<size_t>(d)];
  int64_t step = c.int_arg(4, 1);
  SymExpr start(0);
  if (c.has(2)) {
    start = c.sym_arg(2);
    if (start.is_const() && start.const_value() < 0) start = start + size;
    if (start.is_const() && start.const_value() < 0) start = SymExpr(0);
    if (start.is_const() && size.is_const() && start.const_value() > size.const_value()) start = size;
  }
  SymExpr length = c.out_sizes()[static_cast<size_t>(d)];
  if (start.is_const(0) && step == 1 && length == size) return {x};
  return {c.node(Op::slice, {x}, {{"dim", d}, {"start", start}, {"step", step}, {"length", length}})};
}

std::vector<ValueId> lower_select(LowerContext& c) {
  ValueId x = c.tensor(0);
  int64_t d = c.wrap_dim(c.int_arg(1), c.rank(x));
  SymExpr index = c.sym_arg(2);
  if (index.is_const() && index.const_value() < 0) index = index + c.type(x).sizes[static_cast<size_t>(d)];
  return {c.node(Op::select, {x}, {{"dim", d}, {"index", index}})};
}

// split/split_with_sizes: consecutive slices along dim, one per result.
std::vector<ValueId> lower_split(LowerContext& c) {
  ValueId x = c.tensor(0);
  int64_t d = c.wrap_dim(c.int_arg(2, 0), c.rank(x));
  std::vector<ValueId> out;
  SymExpr start(0);
  for (size_t i = 0; i < c.num_results(); ++i) {
    SymExpr len = c.result(i).sizes[static_cast<size_t>(d)];
    if (start.is_const(0) && len == c.type(x).sizes[static_cast<size_t>(d)])
      out.push_back(x);
    else
      out.push_back(c.node(Op::slice, {x}, {{"dim", d}, {"start", start}, {"step", int64_t{1}}, {"length", len}}));
    start = start + len;
  }
  return out;
}

}  // namespace

void register_view_rules(Rules& r) {
  for (const char* name : {"aten.view.default", "aten._unsafe_view.default", "aten.reshape.default",
                           "aten.unsqueeze.default", "aten.squeeze.dim", "aten.squeeze.dims", "aten.squeeze.default",
                           "aten.flatten.using_ints", "aten.unflatten.int", "aten.view_as.default"})
    r[name] = lower_reshape;
  r["aten.permute.default"] = lower_permute;
  r["aten.transpose.int"] = lower_transpose;
  r["aten.t.default"] = lower_transpose;
  r["aten.expand.default"] = lower_expand;
  r["aten.expand_as.default"] = lower_expand;
  r["aten.slice.Tensor"] = lower_slice;
  r["aten.select.int"] = lower_select;
  r["aten.split_with_sizes.default"] = lower_split;
  r["aten.split.Tensor"] = lower_split;
}

}  // namespace kiln
