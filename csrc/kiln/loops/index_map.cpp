// index_map.cpp — coordinate mapping through permute/expand/reshape/slice/select/as_strided.
#include "kiln/loops/index_map.h"

#include "kiln/support/error.h"

namespace kiln {

SymExpr linearize(const std::vector<SymExpr>& coords, const std::vector<SymExpr>& sizes) {
  KILN_CHECK(coords.size() == sizes.size());
  SymExpr lin(0);
  for (size_t i = 0; i < coords.size(); ++i) lin = lin * sizes[i] + coords[i];
  return lin;
}

std::vector<SymExpr> delinearize(const SymExpr& linear, const std::vector<SymExpr>& sizes) {
  std::vector<SymExpr> out(sizes.size());
  SymExpr inner(1);
  for (size_t i = sizes.size(); i-- > 0;) {
    SymExpr q = floordiv(linear, inner);
    // The leading coordinate needs no modulo: it is already below its size.
    out[i] = i == 0 ? q : (sizes[i].is_const(1) ? SymExpr(0) : mod(q, sizes[i]));
    inner = inner * sizes[i];
  }
  return out;
}

namespace {

// Reshape as groups: consecutive output dims and input dims whose size products agree map
// group by group, so [B,S,H*D] -> [B,S,H,D] needs no division at all.
std::vector<SymExpr> reshape_coords(const std::vector<SymExpr>& in_sizes, const std::vector<SymExpr>& out_sizes,
                                    const std::vector<SymExpr>& out) {
  std::vector<SymExpr> in(in_sizes.size(), SymExpr(0));
  size_t i = 0, o = 0;
  while (i < in_sizes.size() || o < out_sizes.size()) {
    // Size-1 dims on either side map to coordinate 0 and need no grouping.
    if (i < in_sizes.size() && in_sizes[i].is_const(1)) {
      in[i++] = SymExpr(0);
      continue;
    }
    if (o < out_sizes.size() && out_sizes[o].is_const(1)) {
      ++o;
      continue;
    }
    size_t i0 = i, o0 = o;
    SymExpr pi = i < in_sizes.size() ? in_sizes[i++] : SymExpr(1);
    SymExpr po = o < out_sizes.size() ? out_sizes[o++] : SymExpr(1);
    while (pi != po) {
      bool grow_in;
      if (pi.is_const() && po.is_const())
        grow_in = pi.const_value() < po.const_value();
      else
        grow_in = o >= out_sizes.size() || (i < in_sizes.size() && pi.str().size() <= po.str().size());
      if (grow_in && i < in_sizes.size())
        pi = pi * in_sizes[i++];
      else if (o < out_sizes.size())
        po = po * out_sizes[o++];
      else if (i < in_sizes.size())
        pi = pi * in_sizes[i++];
      else
        break;
    }
    if (pi != po) {
      // No grouping found (symbolic sizes that do not factor visibly): go through the linear index.
      return delinearize(linearize(out, out_sizes), in_sizes);
    }
    std::vector<SymExpr> gsizes(out_sizes.begin() + static_cast<long>(o0), out_sizes.begin() + static_cast<long>(o));
    std::vector<SymExpr> gcoords(out.begin() + static_cast<long>(o0), out.begin() + static_cast<long>(o));
    std::vector<SymExpr> isizes(in_sizes.begin() + static_cast<long>(i0), in_sizes.begin() + static_cast<long>(i));
    SymExpr lin = linearize(gcoords, gsizes);
    auto part = isizes.size() == 1 ? std::vector<SymExpr>{lin} : delinearize(lin, isizes);
    for (size_t k = 0; k < part.size(); ++k) in[i0 + k] = part[k];
  }
  return in;
}

}  // namespace

std::vector<SymExpr> view_input_coords(const Graph& g, const Node& view, const std::vector<SymExpr>& out) {
  const TensorType& in_t = g.type(view.inputs[0]);
  const TensorType& out_t = g.type(view.result);
  switch (view.op) {
    case Op::permute: {
      const auto& dims = view.attr_ints("dims");
      std::vector<SymExpr> in(dims.size());
      for (size_t k = 0; k < dims.size(); ++k) in[static_cast<size_t>(dims[k])] = out[k];
      return in;
    }
    case Op::expand: {
      std::vector<SymExpr> in(out.size());
      for (size_t d = 0; d < out.size(); ++d)
        in[d] = (in_t.sizes[d].is_const(1) && !out_t.sizes[d].is_const(1)) ? SymExpr(0) : out[d];
      return in;
    }
    case Op::reshape: return reshape_coords(in_t.sizes, out_t.sizes, out);
    case Op::slice: {
      auto in = out;
      size_t d = static_cast<size_t>(view.attr_int("dim"));
      in[d] = view.attr_sym("start") + SymExpr(view.attr_int("step")) * out[d];
      return in;
    }
    case Op::select: {
      auto in = out;
      in.insert(in.begin() + view.attr_int("dim"), view.attr_sym("index"));
      return in;
    }
    case Op::as_strided: {
      auto strides = view.attr_syms("strides");
      SymExpr lin = view.attr_sym("offset");
      for (size_t d = 0; d < out.size(); ++d) lin = lin + out[d] * strides[d];
      return delinearize(lin, in_t.sizes);
    }
    default: break;
  }
  throw InternalError(str_cat("view_input_coords: ", op_name(view.op), " is not a view"));
}

}  // namespace kiln
