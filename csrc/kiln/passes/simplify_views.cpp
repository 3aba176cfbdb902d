// simplify_views.cpp — view canonicalisation: identity views vanish, chains of one view kind compose.
#include <numeric>

#include "kiln/passes/passes.h"
#include "kiln/passes/rewriter.h"

namespace kiln {

namespace {

// The attributes of a single `outer.op` view equal to `outer` applied after `inner`, if the two compose.
std::optional<Attrs> compose(const Node& outer, const Node& inner) {
  if (outer.op != inner.op) return std::nullopt;
  switch (outer.op) {
    case Op::reshape:
    case Op::expand: return outer.attrs;  // only the final sizes matter
    case Op::permute: {
      // out[i] = mid[p2[i]] = in[p1[p2[i]]]
      const auto &p1 = inner.attr_ints("dims"), &p2 = outer.attr_ints("dims");
      std::vector<int64_t> dims;
      for (int64_t d : p2) dims.push_back(p1[static_cast<size_t>(d)]);
      return Attrs{{"dims", dims}};
    }
    default: return std::nullopt;
  }
}

bool is_identity(Op op, const Node& attrs_of, const TensorType& in, const TensorType& out) {
  switch (op) {
    case Op::reshape:
    case Op::expand: return in.sizes == out.sizes;
    case Op::permute: {
      const auto& dims = attrs_of.attr_ints("dims");
      std::vector<int64_t> iota(dims.size());
      std::iota(iota.begin(), iota.end(), 0);
      return dims == iota;
    }
    case Op::slice: {
      auto dim = static_cast<size_t>(attrs_of.attr_int("dim"));
      return attrs_of.attr_sym("start").is_const(0) && attrs_of.attr_int("step") == 1 &&
             attrs_of.attr_sym("length") == in.sizes[dim];
    }
    default: return false;
  }
}

}  // namespace

Graph simplify_views(const Graph& g) {
  return rewrite_nodes(
      g, [&](GraphRewriter& rw, const Node& n, const std::vector<ValueId>& ins) -> std::optional<ValueId> {
        if (op_kind(n.op) != OpKind::View) return std::nullopt;
        const TensorType& type = g.type(n.result);
        if (is_identity(n.op, n, rw.graph().type(ins[0]), type)) return ins[0];
        // Inputs are already simplified, so one step of composition reaches the start of any chain.
        const Node* inner = rw.graph().producer(ins[0]);
        std::optional<Attrs> attrs = inner ? compose(n, *inner) : std::nullopt;
        if (!attrs) return std::nullopt;
        ValueId src = inner->inputs[0];
        Node view{n.op, {}, std::move(*attrs), -1, n.origin};
        if (is_identity(n.op, view, rw.graph().type(src), type)) return src;
        return rw.emit(n.op, {src}, std::move(view.attrs), n.origin);
      });
}

}  // namespace kiln
