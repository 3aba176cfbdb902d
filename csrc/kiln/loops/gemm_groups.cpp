// gemm_groups.cpp — sibling matmuls that share their left operand run as one GEMM call
// (kiln_gemm_group_f32): the Q, K and V projections of one input, a SwiGLU's two up-projections.
// One call reads each sliver of A once for every sibling's columns and wakes the threads once
// (measured 5.6% faster on 3 x 1152x192x192, 7.9% on 2 x 1152x192x768).
#include "kiln/loops/realize.h"

namespace kiln {

namespace {

bool same_window(const AffineLayout& a, const AffineLayout& b) {
  return a.base == b.base && a.offset == b.offset && a.strides == b.strides;
}

// Whether matmul y can join the group led by matmul x: both 2-D, same dtype and precision, the same
// A window, B and C of the same sizes and strides, and y reading nothing the group computes.
bool joins(const Graph& g, const KernelPlan& plan, const Node& x, const Node& y, const std::vector<ValueId>& results) {
  const auto& tx = g.type(x.result);
  const auto& ty = g.type(y.result);
  if (tx.sizes.size() != 2 || tx.sizes != ty.sizes || tx.dtype != ty.dtype) return false;
  if (g.type(x.inputs[1]).sizes != g.type(y.inputs[1]).sizes) return false;
  const auto planes = [](const Node& n) { return n.has_attr("bf16_planes") ? n.attr_int("bf16_planes") : 0; };
  if (planes(x) != planes(y)) return false;
  const auto ax = affine_layout(g, plan.realized, plan.storage, x.inputs[0]);
  const auto ay = affine_layout(g, plan.realized, plan.storage, y.inputs[0]);
  const auto bx = affine_layout(g, plan.realized, plan.storage, x.inputs[1]);
  const auto by = affine_layout(g, plan.realized, plan.storage, y.inputs[1]);
  if (!ax || !ay || !bx || !by || !same_window(*ax, *ay) || bx->strides != by->strides) return false;
  for (ValueId r : results)
    if (by->base == r) return false;
  const Storage& cx = plan.storage[static_cast<size_t>(x.result)];
  const Storage& cy = plan.storage[static_cast<size_t>(y.result)];
  return cx.strides == cy.strides;
}

}  // namespace

void plan_gemm_groups(const Graph& g, KernelPlan& plan) {
  std::vector<Step> steps;
  for (const Step& st : plan.steps) {
    if (!steps.empty() && st.kind == Step::Kind::Extern && g.node(st.node).op == Op::matmul) {
      Step& last = steps.back();
      if (last.kind == Step::Kind::Extern && g.node(last.node).op == Op::matmul) {
        std::vector<ValueId> results{g.node(last.node).result};
        for (int32_t s : last.siblings) results.push_back(g.node(s).result);
        if (joins(g, plan, g.node(last.node), g.node(st.node), results)) {
          last.siblings.push_back(st.node);
          continue;
        }
      }
    }
    steps.push_back(st);
  }
  plan.steps = std::move(steps);
}

}  // namespace kiln
