// realize.cpp — realization: reductions, externs, outputs and costly shared values get storage.
#include "kiln/loops/realize.h"

#include <functional>

#include "kiln/support/error.h"

namespace kiln {

namespace {

// Rough per-element cost of computing a node inline; transcendental ops cost more.
int op_cost(Op op) {
  switch (op_kind(op)) {
    case OpKind::View:
    case OpKind::Source: return 0;
    case OpKind::Gather: return 1;
    default: break;
  }
  switch (op) {
    case Op::exp:
    case Op::exp2:
    case Op::expm1:
    case Op::log:
    case Op::log2:
    case Op::log1p:
    case Op::tanh:
    case Op::sigmoid:
    case Op::erf:
    case Op::silu:
    case Op::gelu:
    case Op::gelu_tanh:
    case Op::pow:
    case Op::sin:
    case Op::cos:
    case Op::tan:
    case Op::atan2: return 4;
    case Op::cast: return 0;
    default: return 1;
  }
}

void assign_storage(const Graph& g, KernelPlan& plan) {
  size_t nv = g.num_values();
  plan.storage.assign(nv, Storage{});
  for (size_t i = 0; i < g.inputs().size(); ++i) {
    auto& s = plan.storage[static_cast<size_t>(g.inputs()[i].value)];
    s.kind = Storage::Kind::Input;
    s.index = static_cast<int32_t>(i);
    s.strides = g.inputs()[i].strides;
  }
  for (size_t j = 0; j < g.outputs().size(); ++j) {
    if (plan.output_alias[j]) continue;
    if (const ValueId e = plan.output_through[j]; e >= 0) {
      plan.storage[static_cast<size_t>(e)] = {Storage::Kind::Output, static_cast<int32_t>(j), SymExpr(0), -1,
                                              contiguous_strides(g.type(e).sizes)};
      continue;
    }
    auto& s = plan.storage[static_cast<size_t>(g.outputs()[j].value)];
    if (s.kind != Storage::Kind::None) continue;  // an input, or an earlier output: copied later
    s.kind = Storage::Kind::Output;
    s.index = static_cast<int32_t>(j);
    s.strides = g.outputs()[j].strides;
  }
  for (size_t v = 0; v < nv; ++v) {
    if (!plan.realized[v] || plan.storage[v].kind != Storage::Kind::None) continue;
    plan.storage[v].kind = Storage::Kind::Arena;
    plan.storage[v].strides = contiguous_strides(g.type(static_cast<ValueId>(v)).sizes);
  }
}

// Extern operands must be strided windows onto storage (and, for scatter, unit column stride).
bool fix_extern_operands(const Graph& g, KernelPlan& plan) {
  bool changed = false;
  for (const Node& n : g.nodes()) {
    if (op_kind(n.op) != OpKind::Extern) continue;
    auto operand_ok = [&](ValueId in) {
      auto lay = affine_layout(g, plan.realized, plan.storage, in);
      if (!lay || n.op != Op::index_add_rows) return lay.has_value();
      const auto& sizes = g.type(in).sizes;
      size_t last = sizes.size() - 1;
      return lay->strides[last].is_const(1) || sizes[last].is_const(1);
    };
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      ValueId in = n.inputs[k];
      if (!operand_ok(in)) {
        KILN_USER_CHECK(!plan.realized[static_cast<size_t>(in)], "kiln cannot pass a value with this layout to ",
                        op_name(n.op));
        // Prefer storing a value further down the operand's views, the deepest one under which
        // the views read it in place: the value under them all (a matmul reads a [B*S, D] reshape of
        // a [B, S, D] norm) keeps its kernel's natural loop domain and fuses with its neighbours;
        // one in between (a [B, S, H, D] permute of attention's [B, H, S, D] gradient, which a
        // matmul reads as [B*S, H*D] and another as its transpose) is one copy that every such
        // operand reads in place, where storing each operand would copy once per operand.
        std::vector<ValueId> chain{in};
        while (const Node* p = g.producer(chain.back())) {
          if (op_kind(p->op) != OpKind::View || plan.realized[static_cast<size_t>(p->inputs[0])]) break;
          chain.push_back(p->inputs[0]);
        }
        bool placed = false;
        for (size_t c = chain.size(); c-- > 1 && !placed;) {
          const Node* cp = g.producer(chain[c]);
          if (!cp || op_kind(cp->op) == OpKind::Source) continue;
          plan.realized[static_cast<size_t>(chain[c])] = true;
          assign_storage(g, plan);
          placed = operand_ok(in);
          if (!placed) {
            plan.realized[static_cast<size_t>(chain[c])] = false;
            assign_storage(g, plan);
          }
        }
        if (!placed) plan.realized[static_cast<size_t>(in)] = true;
        changed = true;
      }
    }
  }
  return changed;
}

// A value stored for its several uses whose uses all turned out to read it through one stored view
// of it (the copy fix_extern_operands made for a matmul operand, such as the [B, S, H, D] permute of a
// rotary-embedding gradient): that copy's kernel computes it instead, and it is not stored twice.
// Only pure view chains: the copy reads each element once, so nothing is recomputed.
bool inline_into_sole_view_copy(const Graph& g, KernelPlan& plan) {
  const auto users = g.users();
  std::vector<bool> is_output(g.num_values(), false);
  for (const auto& o : g.outputs()) is_output[static_cast<size_t>(o.value)] = true;
  bool changed = false;
  for (const Node& n : g.nodes()) {
    const size_t v = static_cast<size_t>(n.result);
    const OpKind kind = op_kind(n.op);
    if (!plan.realized[v] || is_output[v] || plan.storage[v].kind != Storage::Kind::Arena ||
        kind == OpKind::Reduction || kind == OpKind::Extern || kind == OpKind::Source)
      continue;
    // Follow the uses through unstored values; every path must be views ending at the same stored one.
    ValueId sole = -1;
    bool ok = true;
    std::vector<ValueId> todo{n.result};
    while (!todo.empty() && ok) {
      const ValueId u = todo.back();
      todo.pop_back();
      for (int32_t ni : users[static_cast<size_t>(u)]) {
        const Node& user = g.nodes()[static_cast<size_t>(ni)];
        if (op_kind(user.op) != OpKind::View || is_output[static_cast<size_t>(user.result)]) {
          ok = false;
          break;
        }
        if (!plan.realized[static_cast<size_t>(user.result)]) {
          todo.push_back(user.result);
        } else if (sole < 0 || sole == user.result) {
          sole = user.result;
        } else {
          ok = false;
        }
      }
    }
    if (!ok || sole < 0) continue;
    plan.realized[v] = false;
    changed = true;
  }
  return changed;
}

// An output that is a view of all of a value, in the very layout that value is stored in (the
// logits' [B, S, V] reshape of the lm_head GEMM's [B*S, V] result; the [B*S, D] reshape of a norm's
// [B, S, D] result saved for the backward): the value itself is stored in the output's buffer, by
// its extern call or its own kernel stage, and no kernel copies it there. A value computed by a
// kernel keeps its own loop domain, so it fuses with the kernel that computes its neighbours (the
// norm's reduction) instead of forming a kernel of the output's shape.
void write_values_into_outputs(const Graph& g, KernelPlan& plan) {
  assign_storage(g, plan);
  std::vector<int> stored_for(g.num_values(), 0);
  for (const auto& o : g.outputs()) stored_for[static_cast<size_t>(o.value)] += 1;
  for (size_t j = 0; j < g.outputs().size(); ++j) {
    const ValueId v = g.outputs()[j].value;
    const Node* n = g.producer(v);
    if (plan.output_alias[j] || !n || op_kind(n->op) != OpKind::View || stored_for[static_cast<size_t>(v)] != 1)
      continue;
    bool viewed = false;  // another output returned as a view of this one's buffer
    for (const auto& a : plan.output_alias) viewed = viewed || (a && a->base == v);
    if (viewed) continue;
    ValueId u = v;  // the value under all the views
    while (const Node* p = g.producer(u)) {
      if (op_kind(p->op) != OpKind::View) break;
      u = p->inputs[0];
    }
    const Node* producer = g.producer(u);
    const size_t ui = static_cast<size_t>(u);
    if (!producer || op_kind(producer->op) == OpKind::Source || stored_for[ui] != 0) continue;
    const bool was_realized = plan.realized[ui];
    if (was_realized && plan.storage[ui].kind != Storage::Kind::Arena) continue;
    plan.realized[ui] = true;
    plan.realized[static_cast<size_t>(v)] = false;
    assign_storage(g, plan);  // u contiguous in the arena, as it would be in the output
    const auto lay = affine_layout(g, plan.realized, plan.storage, v);
    const TensorType &vt = g.type(v), &ut = g.type(u);
    if (lay && lay->base == u && lay->offset.is_const(0) && vt.numel() == ut.numel() &&
        same_layout(vt.sizes, lay->strides, g.outputs()[j].strides)) {
      plan.output_through[j] = u;
    } else {
      plan.realized[ui] = was_realized;
      plan.realized[static_cast<size_t>(v)] = true;
    }
    assign_storage(g, plan);
  }
}

}  // namespace

void decide_realization(const Graph& g, const std::vector<bool>& alias_ok, KernelPlan& plan) {
  size_t nv = g.num_values();
  plan.realized.assign(nv, false);
  plan.output_alias.assign(g.outputs().size(), std::nullopt);
  plan.output_through.assign(g.outputs().size(), -1);
  for (const auto& in : g.inputs()) plan.realized[static_cast<size_t>(in.value)] = true;

  // Outputs that are views of inputs are returned as views, with no kernel at all.
  assign_storage(g, plan);
  for (size_t j = 0; j < g.outputs().size(); ++j) {
    ValueId v = g.outputs()[j].value;
    const Node* n = g.producer(v);
    // A view output whose views simplified away entirely is the input itself: still a view.
    if (j < alias_ok.size() && alias_ok[j] && (!n || op_kind(n->op) == OpKind::View)) {
      auto lay = affine_layout(g, plan.realized, plan.storage, v);
      if (lay && plan.storage[static_cast<size_t>(lay->base)].kind == Storage::Kind::Input) plan.output_alias[j] = lay;
    }
  }
  for (size_t j = 0; j < g.outputs().size(); ++j)
    if (!plan.output_alias[j]) plan.realized[static_cast<size_t>(g.outputs()[j].value)] = true;
  // A view output of a value that another output stores is a view of that output, as in eager.
  assign_storage(g, plan);
  for (size_t j = 0; j < g.outputs().size(); ++j) {
    ValueId v = g.outputs()[j].value;
    const Node* n = g.producer(v);
    if (plan.output_alias[j] || j >= alias_ok.size() || !alias_ok[j]) continue;
    // The very value another output stores, in its layout (a forward's output and its alias saved
    // for the backward): that output's buffer, returned again.
    const Storage& own = plan.storage[static_cast<size_t>(v)];
    if (own.kind == Storage::Kind::Output && own.index != static_cast<int32_t>(j) &&
        same_layout(g.type(v).sizes, g.outputs()[j].strides, own.strides)) {
      plan.output_alias[j] = AffineLayout{v, SymExpr(0), g.outputs()[j].strides};
      continue;
    }
    if (!n || op_kind(n->op) != OpKind::View) continue;
    std::vector<bool> others = plan.realized;
    others[static_cast<size_t>(v)] = false;
    auto lay = affine_layout(g, others, plan.storage, v);
    if (!lay || lay->base == v) continue;
    const Storage& bs = plan.storage[static_cast<size_t>(lay->base)];
    if (bs.kind != Storage::Kind::Output || bs.index == static_cast<int32_t>(j)) continue;
    plan.output_alias[j] = lay;
    bool stored_for_other_output = false;
    for (size_t k = 0; k < g.outputs().size(); ++k)
      if (k != j && !plan.output_alias[k] && g.outputs()[k].value == v) stored_for_other_output = true;
    if (!stored_for_other_output) plan.realized[static_cast<size_t>(v)] = false;
  }
  for (const Node& n : g.nodes())
    if (op_kind(n.op) == OpKind::Reduction || op_kind(n.op) == OpKind::Extern)
      plan.realized[static_cast<size_t>(n.result)] = true;
  write_values_into_outputs(g, plan);

  // Shared values: realize when recomputing them in every consumer would cost more than a load.
  // Walk backwards so each value knows how many realized stages would inline it.
  auto users = g.users();
  std::vector<int64_t> inline_uses(nv, 0), cost(nv, 0);
  for (const auto& o : g.outputs()) inline_uses[static_cast<size_t>(o.value)] += 1;
  for (const Node& n : g.nodes()) {
    int64_t c = op_cost(n.op);
    for (ValueId in : n.inputs) c += plan.realized[static_cast<size_t>(in)] ? 0 : cost[static_cast<size_t>(in)];
    cost[static_cast<size_t>(n.result)] = std::min<int64_t>(c, 1 << 20);
  }
  for (size_t i = g.nodes().size(); i-- > 0;) {
    const Node& n = g.nodes()[i];
    size_t v = static_cast<size_t>(n.result);
    int64_t uses = inline_uses[v];
    // A view is free to recompute: its uses pass down to the value under it, which is stored instead.
    if (!plan.realized[v] && uses > 1 && cost[v] >= 4 && op_kind(n.op) != OpKind::View) plan.realized[v] = true;
    int64_t contribution = plan.realized[v] ? 1 : std::min<int64_t>(uses, 1 << 20);
    // A broadcast recomputes its input once per copy: a costly scalar (AdamW's bias correction, a
    // pow of the step) read through an expand counts as used many times, so it is computed once.
    if (n.op == Op::expand && g.type(n.inputs[0]).numel() != g.type(n.result).numel())
      contribution = std::max<int64_t>(contribution, 2);
    for (ValueId in : n.inputs) inline_uses[static_cast<size_t>(in)] += contribution;
  }

  assign_storage(g, plan);
  while (fix_extern_operands(g, plan)) assign_storage(g, plan);
  if (inline_into_sole_view_copy(g, plan)) assign_storage(g, plan);
}

}  // namespace kiln
