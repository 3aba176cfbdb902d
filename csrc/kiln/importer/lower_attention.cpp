// lower_attention.cpp — ATen's fused CPU attention ops (kept whole by the backend) onto kiln's fused
// attention externs. Each op's results share one flat buffer, unpacked by views.
#include <cmath>

#include "kiln/importer/lower_context.h"

namespace kiln {

namespace {

// The softmax scale: the explicit `scale` argument, else ATen's default 1 / sqrt(head dim).
double attention_scale(LowerContext& c, size_t scale_arg, ValueId q) {
  if (c.has(scale_arg)) return c.float_arg(scale_arg);
  SymExpr d = c.type(q).sizes.back();
  if (!d.is_const()) c.unsupported("the default scale needs a static head dim");
  return 1.0 / std::sqrt(static_cast<double>(d.const_value()));
}

void check_plain(LowerContext& c, size_t dropout_arg, size_t mask_arg) {
  if (c.has(dropout_arg) && c.float_arg(dropout_arg) != 0.0) c.unsupported("dropout in attention");
  if (c.has(mask_arg)) c.unsupported("an explicit attention mask");
}

ValueId last_dim_slice(LowerContext& c, ValueId v, const SymExpr& start, const SymExpr& length) {
  int64_t d = c.rank(v) - 1;
  return c.node(Op::slice, {v}, {{"dim", d}, {"start", start}, {"step", int64_t{1}}, {"length", length}});
}

// _scaled_dot_product_flash_attention_for_cpu(q, k, v, dropout_p, is_causal, *, attn_mask, scale)
//   -> (output, logsumexp)
std::vector<ValueId> lower_flash_forward(LowerContext& c) {
  check_plain(c, 3, 5);
  DType t = c.type(c.tensor(0)).dtype;
  ValueId q = c.tensor(0), k = c.cast(c.tensor(1), t), v = c.cast(c.tensor(2), t);
  Attrs attrs{{"causal", c.bool_arg(4, false)}, {"scale", attention_scale(c, 6, q)}};
  ValueId flat = c.node(Op::attention, {q, k, v}, attrs);
  // The flat result (see infer.cpp): out stored as [b1, sq, b2, dv] (rank 3: [b, sq, dv]), then lse.
  const std::vector<SymExpr> qs = c.type(q).sizes;
  const SymExpr dv = c.type(v).sizes.back();
  std::vector<SymExpr> out_sizes(qs), lse_sizes(qs.begin(), qs.end() - 1);
  out_sizes.back() = dv;
  const SymExpr n_out = product(out_sizes);
  ValueId out = last_dim_slice(c, flat, SymExpr(0), n_out);
  if (qs.size() == 4) {
    out = c.reshape(out, {qs[0], qs[2], qs[1], dv});
    out = c.node(Op::permute, {out}, {{"dims", std::vector<int64_t>{0, 2, 1, 3}}});
  } else {
    out = c.reshape(out, out_sizes);
  }
  ValueId lse = c.reshape(last_dim_slice(c, flat, n_out, product(lse_sizes)), lse_sizes);
  return {c.cast(out, c.out_dtype(0)), c.cast(lse, c.out_dtype(1))};
}

// _scaled_dot_product_flash_attention_for_cpu_backward(grad_out, q, k, v, out, logsumexp, dropout_p,
//   is_causal, *, attn_mask, scale) -> (grad_q, grad_k, grad_v)
std::vector<ValueId> lower_flash_backward(LowerContext& c) {
  check_plain(c, 6, 8);
  ValueId q = c.tensor(1);
  DType t = c.type(q).dtype;
  std::vector<ValueId> ins;
  for (size_t i = 0; i < 6; ++i) ins.push_back(c.cast(c.tensor(i), t));
  Attrs attrs{{"causal", c.bool_arg(7, false)}, {"scale", attention_scale(c, 9, q)}};
  ValueId packed = c.node(Op::attention_backward, ins, attrs);
  std::vector<ValueId> grads;
  SymExpr start(0);
  for (size_t i = 1; i <= 3; ++i) {
    const std::vector<SymExpr> sizes = c.type(ins[i]).sizes;  // a copy: adding nodes moves the types
    SymExpr n = sizes[sizes.size() - 2] * sizes.back();
    ValueId g = c.reshape(last_dim_slice(c, packed, start, n), sizes);
    grads.push_back(c.cast(g, c.out_dtype(i - 1)));
    start = start + n;
  }
  return grads;
}

}  // namespace

void register_attention_rules(std::map<std::string, LoweringRule>& r) {
  r["aten._scaled_dot_product_flash_attention_for_cpu.default"] = lower_flash_forward;
  r["aten._scaled_dot_product_flash_attention_for_cpu_backward.default"] = lower_flash_backward;
}

}  // namespace kiln
