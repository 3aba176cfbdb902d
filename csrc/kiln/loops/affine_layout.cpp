// affine_layout.cpp — composes view ops over a realized value into one strided window, when possible.
#include "kiln/loops/kernel_plan.h"
#include "kiln/support/error.h"

namespace kiln {

namespace {

// ATen's view-stride rule: strides for `shape` over memory laid out as (old_sizes, old_strides), or
// nullopt when the reshape would need a copy.
std::optional<std::vector<SymExpr>> reshape_strides(const std::vector<SymExpr>& old_sizes,
                                                    const std::vector<SymExpr>& old_strides,
                                                    const std::vector<SymExpr>& shape) {
  if (shape.empty()) return std::vector<SymExpr>{};
  if (old_sizes.empty()) {
    std::vector<SymExpr> st(shape.size(), SymExpr(1));
    return st;
  }
  std::vector<SymExpr> st(shape.size());
  int64_t view_d = static_cast<int64_t>(shape.size()) - 1;
  SymExpr chunk_base = old_strides.back();
  SymExpr tensor_numel(1), view_numel(1);
  for (int64_t td = static_cast<int64_t>(old_sizes.size()) - 1; td >= 0; --td) {
    tensor_numel = tensor_numel * old_sizes[static_cast<size_t>(td)];
    bool chunk_end = td == 0;
    if (!chunk_end) {
      const SymExpr& prev_size = old_sizes[static_cast<size_t>(td - 1)];
      const SymExpr& prev_stride = old_strides[static_cast<size_t>(td - 1)];
      chunk_end = !prev_size.is_const(1) && prev_stride != tensor_numel * chunk_base;
    }
    if (!chunk_end) continue;
    while (view_d >= 0 && (view_numel != tensor_numel || shape[static_cast<size_t>(view_d)].is_const(1))) {
      st[static_cast<size_t>(view_d)] = view_numel * chunk_base;
      view_numel = view_numel * shape[static_cast<size_t>(view_d)];
      --view_d;
      if (view_numel.is_const() && tensor_numel.is_const() && view_numel.const_value() > tensor_numel.const_value())
        return std::nullopt;
    }
    if (view_numel != tensor_numel) return std::nullopt;
    if (td > 0) {
      chunk_base = old_strides[static_cast<size_t>(td - 1)];
      tensor_numel = SymExpr(1);
      view_numel = SymExpr(1);
    }
  }
  if (view_d != -1) return std::nullopt;
  return st;
}

}  // namespace

bool same_layout(const std::vector<SymExpr>& sizes, const std::vector<SymExpr>& a, const std::vector<SymExpr>& b) {
  if (a.size() != sizes.size() || b.size() != sizes.size()) return false;
  for (size_t d = 0; d < sizes.size(); ++d)
    if (!sizes[d].is_const(1) && a[d] != b[d]) return false;
  return true;
}

std::optional<AffineLayout> affine_layout(const Graph& g, const std::vector<bool>& realized,
                                          const std::vector<Storage>& storage, ValueId v) {
  if (realized[static_cast<size_t>(v)]) {
    const Storage& s = storage[static_cast<size_t>(v)];
    std::vector<SymExpr> strides = s.kind == Storage::Kind::None ? contiguous_strides(g.type(v).sizes) : s.strides;
    return AffineLayout{v, SymExpr(0), strides};
  }
  const Node* n = g.producer(v);
  if (!n || op_kind(n->op) != OpKind::View) return std::nullopt;
  auto in = affine_layout(g, realized, storage, n->inputs[0]);
  if (!in) return std::nullopt;
  const TensorType& it = g.type(n->inputs[0]);
  const TensorType& ot = g.type(v);
  AffineLayout r{in->base, in->offset, {}};
  switch (n->op) {
    case Op::permute:
      for (auto d : n->attr_ints("dims")) r.strides.push_back(in->strides[static_cast<size_t>(d)]);
      return r;
    case Op::expand:
      for (size_t d = 0; d < ot.sizes.size(); ++d)
        r.strides.push_back(it.sizes[d].is_const(1) && !ot.sizes[d].is_const(1) ? SymExpr(0) : in->strides[d]);
      return r;
    case Op::slice: {
      size_t d = static_cast<size_t>(n->attr_int("dim"));
      r.strides = in->strides;
      r.offset = r.offset + n->attr_sym("start") * in->strides[d];
      r.strides[d] = in->strides[d] * SymExpr(n->attr_int("step"));
      return r;
    }
    case Op::select: {
      size_t d = static_cast<size_t>(n->attr_int("dim"));
      r.strides = in->strides;
      r.offset = r.offset + n->attr_sym("index") * in->strides[d];
      r.strides.erase(r.strides.begin() + static_cast<long>(d));
      return r;
    }
    case Op::reshape: {
      auto st = reshape_strides(it.sizes, in->strides, ot.sizes);
      if (!st) return std::nullopt;
      r.strides = *st;
      return r;
    }
    case Op::as_strided: {
      if (in->strides != contiguous_strides(it.sizes)) return std::nullopt;
      r.strides = n->attr_syms("strides");
      r.offset = r.offset + n->attr_sym("offset");
      return r;
    }
    default: return std::nullopt;
  }
}

}  // namespace kiln
