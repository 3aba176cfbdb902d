// lower_other.cpp — sources (full, arange), matrix products, indexing/embedding, cat and pad.
#include "kiln/importer/lower_context.h"

namespace kiln {

namespace {

using Rules = std::map<std::string, LoweringRule>;

std::vector<ValueId> lower_full(LowerContext& c, size_t value_arg) {
  return {c.full(c.arg(value_arg), c.out_dtype(), c.out_sizes())};
}

// arange(start, end, step): iota along dim 0 with the result's length.
std::vector<ValueId> lower_arange(LowerContext& c, size_t start_arg, size_t step_arg) {
  DType t = c.out_dtype();
  auto num = [&](size_t i, double dflt) -> Attr {
    if (i == SIZE_MAX || !c.has(i)) return is_floating(t) ? Attr(dflt) : Attr(static_cast<int64_t>(dflt));
    const AtenArg& a = c.arg(i);
    if (a.kind == AtenArg::Kind::Sym) return a.sym;
    if (is_floating(t)) return c.float_arg(i);
    return c.int_arg(i);
  };
  Attrs attrs{{"dim", int64_t{0}},
              {"start", num(start_arg, 0)},
              {"step", num(step_arg, 1)},
              {"dtype", t},
              {"sizes", c.out_sizes()}};
  return {c.node(Op::iota, {}, attrs)};
}

// mm/bmm, with an optional addmm-style bias: beta * bias + alpha * (a @ b).
std::vector<ValueId> lower_matmul(LowerContext& c, size_t a_arg, size_t b_arg, int bias_arg) {
  DType t = c.out_dtype();
  ValueId a = c.cast(c.tensor(a_arg), t), b = c.cast(c.tensor(b_arg), t);
  ValueId r = c.node(Op::matmul, {a, b});
  if (bias_arg < 0) return {r};
  auto scalar_is_one = [&](size_t i) {
    return !c.has(i) || (c.arg(i).kind == AtenArg::Kind::Int && c.arg(i).i == 1) ||
           (c.arg(i).kind == AtenArg::Kind::Float && c.arg(i).f == 1.0);
  };
  size_t beta = static_cast<size_t>(bias_arg) + 3, alpha = beta + 1;
  if (!scalar_is_one(alpha)) r = c.node(Op::mul, {r, c.full(c.arg(alpha), t, c.out_sizes())});
  ValueId bias = c.operand(static_cast<size_t>(bias_arg), t, c.out_sizes());
  if (!scalar_is_one(beta)) {
    const AtenArg& bt = c.arg(beta);
    bool zero = (bt.kind == AtenArg::Kind::Int && bt.i == 0) || (bt.kind == AtenArg::Kind::Float && bt.f == 0.0);
    if (zero) return {r};  // beta == 0 ignores the bias entirely, NaNs included
    bias = c.node(Op::mul, {bias, c.full(bt, t, c.out_sizes())});
  }
  return {c.node(Op::add, {bias, r})};
}

// x[idx] along dim 0 (embedding lookups): index_rows.
std::vector<ValueId> lower_index(LowerContext& c) {
  ValueId x = c.tensor(0);
  const AtenArg& list = c.arg(1);
  if (list.kind != AtenArg::Kind::List || list.list.size() != 1 || list.list[0].kind != AtenArg::Kind::Tensor)
    c.unsupported("only a single index tensor on dim 0 is supported");
  ValueId idx = list.list[0].tensor;
  if (c.type(idx).dtype == DType::Bool) c.unsupported("boolean mask indexing is not supported");
  return {c.node(Op::index_rows, {x, idx}, {{"wrap_negative", true}})};
}

std::vector<ValueId> lower_embedding(LowerContext& c) {
  return {c.node(Op::index_rows, {c.tensor(0), c.tensor(1)}, {{"wrap_negative", false}})};
}

ValueId index_add(LowerContext& c, ValueId idx, ValueId src, const SymExpr& rows, int64_t padding_idx,
                  const std::vector<SymExpr>& out_sizes) {
  SymExpr n = c.type(idx).numel();
  SymExpr d = floordiv(c.type(src).numel(), n);
  if (!n.is_const() || !c.type(src).numel().is_const()) {
    // D is the product of the trailing dims of src past idx's rank.
    d = SymExpr(1);
    for (size_t i = static_cast<size_t>(c.rank(idx)); i < c.type(src).sizes.size(); ++i) d = d * c.type(src).sizes[i];
  }
  ValueId flat_idx = c.reshape(idx, {n});
  ValueId flat_src = c.reshape(src, {n, d});
  ValueId r = c.node(Op::index_add_rows, {flat_idx, flat_src}, {{"rows", rows}, {"padding_idx", padding_idx}});
  return c.reshape(r, out_sizes);
}

std::vector<ValueId> lower_embedding_backward(LowerContext& c) {
  if (c.bool_arg(4, false)) c.unsupported("scale_grad_by_freq=True is not supported");
  ValueId grad = c.cast(c.tensor(0), c.out_dtype());
  return {index_add(c, c.tensor(1), grad, c.sym_arg(2), c.int_arg(3, -1), c.out_sizes())};
}

// index_put(base, [idx], values, accumulate=True) == base + index_add_rows(idx, values).
std::vector<ValueId> lower_index_put(LowerContext& c) {
  if (!c.bool_arg(3, false)) c.unsupported("index_put without accumulate is not supported");
  const AtenArg& list = c.arg(1);
  if (list.kind != AtenArg::Kind::List || list.list.size() != 1 || list.list[0].kind != AtenArg::Kind::Tensor)
    c.unsupported("only a single index tensor on dim 0 is supported");
  DType t = c.out_dtype();
  ValueId base = c.cast(c.tensor(0), t);
  ValueId idx = list.list[0].tensor;
  if (c.type(idx).dtype == DType::Bool) c.unsupported("boolean mask indexing is not supported");
  std::vector<SymExpr> src_sizes = c.type(idx).sizes;
  src_sizes.insert(src_sizes.end(), c.type(base).sizes.begin() + 1, c.type(base).sizes.end());
  ValueId values = c.operand(2, t, src_sizes);
  ValueId added = index_add(c, idx, values, c.type(base).sizes[0], INT64_MIN, c.out_sizes());
  return {c.node(Op::add, {base, added})};
}

// scatter(base, dim, index, src) where index and src have size 1 along dim (max/min backward):
// out[.., j, ..] = j == index[.., 0, ..] ? src[.., 0, ..] : base[.., j, ..].
std::vector<ValueId> lower_scatter(LowerContext& c) {
  ValueId base = c.cast(c.tensor(0), c.out_dtype());
  int64_t d = c.wrap_dim(c.int_arg(1), c.rank(base));
  ValueId index = c.tensor(2);
  const auto& is = c.type(index).sizes;
  if (c.rank(index) != c.rank(base) || !is[static_cast<size_t>(d)].is_const(1))
    c.unsupported("scatter is supported only with a size-1 index along dim");
  for (int64_t k = 0; k < c.rank(base); ++k)
    if (k != d && is[static_cast<size_t>(k)] != c.type(base).sizes[static_cast<size_t>(k)])
      c.unsupported("scatter index must match the base outside dim");
  const auto& sizes = c.type(base).sizes;
  ValueId src = c.is_tensor(3) ? c.cast(c.tensor(3), c.out_dtype()) : c.full(c.arg(3), c.out_dtype(), is);
  if (c.is_tensor(3) && c.type(src).sizes != is) c.unsupported("scatter src must have the index's sizes");
  ValueId pos = c.node(
      Op::iota, {}, {{"dim", d}, {"start", int64_t{0}}, {"step", int64_t{1}}, {"dtype", DType::I64}, {"sizes", sizes}});
  ValueId hit = c.node(Op::eq, {pos, c.expand_to(c.cast(index, DType::I64), sizes)});
  return {c.node(Op::where, {hit, c.expand_to(src, sizes), base})};
}

std::vector<ValueId> lower_cat(LowerContext& c) {
  DType t = c.out_dtype();
  std::vector<ValueId> parts;
  for (ValueId v : c.tensors_arg(0)) {
    // Legacy behaviour: 1-D empty tensors are skipped by cat.
    if (c.rank(v) == 1 && c.type(v).sizes[0].is_const(0) && static_cast<int64_t>(c.out_sizes().size()) != 1) continue;
    parts.push_back(c.cast(v, t));
  }
  int64_t d = c.wrap_dim(c.int_arg(1, 0), static_cast<int64_t>(c.out_sizes().size()));
  if (parts.size() == 1) return {parts[0]};
  return {c.node(Op::cat, parts, {{"dim", d}})};
}

// slice_scatter(base, src, dim, start, end, step): base with base[start:end:step] (along dim) = src.
std::vector<ValueId> lower_slice_scatter(LowerContext& c) {
  DType t = c.out_dtype();
  ValueId base = c.cast(c.tensor(0), t), src = c.cast(c.tensor(1), t);
  int64_t d = c.wrap_dim(c.int_arg(2, 0), c.rank(base));
  SymExpr size = c.type(base).sizes[static_cast<size_t>(d)];
  SymExpr start(0);
  if (c.has(3)) {
    start = c.sym_arg(3);
    if (start.is_const() && start.const_value() < 0) start = start + size;
  }
  int64_t step = c.int_arg(5, 1);
  return {c.node(Op::slice_scatter, {base, src}, {{"dim", d}, {"start", start}, {"step", step}})};
}

std::vector<ValueId> lower_pad(LowerContext& c) {
  auto pads = c.ints_arg(1);
  for (auto p : pads)
    if (p < 0) c.unsupported("negative padding is not supported");
  double value = c.has(2) ? c.float_arg(2) : 0.0;
  Attr v = is_floating(c.out_dtype()) ? Attr(value) : Attr(static_cast<int64_t>(value));
  return {c.node(Op::pad, {c.tensor(0)}, {{"pads", pads}, {"value", v}})};
}

}  // namespace

void register_other_rules(Rules& r) {
  r["aten.full.default"] = [](LowerContext& c) { return lower_full(c, 1); };
  r["aten.full_like.default"] = [](LowerContext& c) { return lower_full(c, 1); };
  r["aten.scalar_tensor.default"] = [](LowerContext& c) { return lower_full(c, 0); };
  for (const char* name : {"aten.empty.memory_format", "aten.empty_strided.default", "aten.empty_like.default",
                           "aten.zeros.default", "aten.zeros_like.default", "aten.new_zeros.default",
                           "aten.new_empty.default", "aten.new_empty_strided.default"})
    r[name] = [](LowerContext& c) -> std::vector<ValueId> { return {c.full(0.0, c.out_dtype(), c.out_sizes())}; };
  for (const char* name : {"aten.ones.default", "aten.ones_like.default", "aten.new_ones.default"})
    r[name] = [](LowerContext& c) -> std::vector<ValueId> { return {c.full(1.0, c.out_dtype(), c.out_sizes())}; };
  r["aten.arange.start_step"] = [](LowerContext& c) { return lower_arange(c, 0, 2); };
  r["aten.arange.start"] = [](LowerContext& c) { return lower_arange(c, 0, SIZE_MAX); };
  r["aten.arange.default"] = [](LowerContext& c) { return lower_arange(c, SIZE_MAX, SIZE_MAX); };
  r["aten.mm.default"] = [](LowerContext& c) { return lower_matmul(c, 0, 1, -1); };
  r["aten.bmm.default"] = [](LowerContext& c) { return lower_matmul(c, 0, 1, -1); };
  r["aten.addmm.default"] = [](LowerContext& c) { return lower_matmul(c, 1, 2, 0); };
  r["aten.baddbmm.default"] = [](LowerContext& c) { return lower_matmul(c, 1, 2, 0); };
  r["aten.index.Tensor"] = lower_index;
  r["aten.embedding.default"] = lower_embedding;
  r["aten.embedding_dense_backward.default"] = lower_embedding_backward;
  r["aten.index_put.default"] = lower_index_put;
  r["aten._unsafe_index_put.default"] = lower_index_put;
  r["aten.scatter.src"] = lower_scatter;
  r["aten.scatter.value"] = lower_scatter;
  r["aten.cat.default"] = lower_cat;
  r["aten.constant_pad_nd.default"] = lower_pad;
  r["aten.slice_scatter.default"] = lower_slice_scatter;
}

}  // namespace kiln
