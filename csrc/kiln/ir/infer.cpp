// infer.cpp — result types of kiln ops (the one place that knows each op's shape rule).
#include <algorithm>

#include "kiln/ir/graph.h"
#include "kiln/support/error.h"

namespace kiln {

namespace {

const Attr& need(const Attrs& a, const char* k, Op op) {
  auto it = a.find(k);
  KILN_CHECK(it != a.end(), op_name(op), " needs attribute '", k, "'");
  return it->second;
}
int64_t get_int(const Attrs& a, const char* k, Op op) {
  const Attr& v = need(a, k, op);
  if (auto* b = std::get_if<bool>(&v)) return *b;
  KILN_CHECK(std::holds_alternative<int64_t>(v), op_name(op), ".", k, " must be an int");
  return std::get<int64_t>(v);
}
SymExpr get_sym(const Attrs& a, const char* k, Op op) {
  const Attr& v = need(a, k, op);
  if (auto* i = std::get_if<int64_t>(&v)) return SymExpr(*i);
  KILN_CHECK(std::holds_alternative<SymExpr>(v), op_name(op), ".", k, " must be a size");
  return std::get<SymExpr>(v);
}
std::vector<SymExpr> get_syms(const Attrs& a, const char* k, Op op) {
  const Attr& v = need(a, k, op);
  if (auto* l = std::get_if<std::vector<int64_t>>(&v)) return {l->begin(), l->end()};
  KILN_CHECK(std::holds_alternative<std::vector<SymExpr>>(v), op_name(op), ".", k, " must be a size list");
  return std::get<std::vector<SymExpr>>(v);
}
std::vector<int64_t> get_ints(const Attrs& a, const char* k, Op op) {
  const Attr& v = need(a, k, op);
  KILN_CHECK(std::holds_alternative<std::vector<int64_t>>(v), op_name(op), ".", k, " must be an int list");
  return std::get<std::vector<int64_t>>(v);
}
DType get_dtype(const Attrs& a, const char* k, Op op) {
  const Attr& v = need(a, k, op);
  KILN_CHECK(std::holds_alternative<DType>(v), op_name(op), ".", k, " must be a dtype");
  return std::get<DType>(v);
}
int64_t check_dim(int64_t d, int64_t rank, Op op) {
  KILN_CHECK(d >= 0 && d < rank, op_name(op), ": dim ", d, " out of range for rank ", rank);
  return d;
}

}  // namespace

TensorType infer_type(Op op, const std::vector<TensorType>& in, const Attrs& attrs) {
  const OpInfo& info = op_info(op);
  if (info.arity >= 0)
    KILN_CHECK(static_cast<int>(in.size()) == info.arity, op_name(op), " takes ", info.arity, " inputs, got ",
               in.size());
  switch (info.kind) {
    case OpKind::Pointwise: {
      for (size_t i = 1; i < in.size(); ++i)
        KILN_CHECK(in[i].sizes == in[0].sizes, op_name(op), ": operand sizes differ (", in[0].str(), " vs ",
                   in[i].str(), "); broadcasting must be explicit");
      if (op == Op::cast) return {get_dtype(attrs, "dtype", op), in[0].sizes};
      if (op == Op::where) {
        KILN_CHECK(in[0].dtype == DType::Bool, "where: condition must be bool, got ", in[0].str());
        KILN_CHECK(in[1].dtype == in[2].dtype, "where: branch dtypes differ");
        return in[1];
      }
      for (size_t i = 1; i < in.size(); ++i)
        KILN_CHECK(in[i].dtype == in[0].dtype, op_name(op), ": operand dtypes differ (", in[0].str(), " vs ",
                   in[i].str(), "); promotion must be explicit");
      if (is_comparison(op)) return {DType::Bool, in[0].sizes};
      return in[0];
    }
    case OpKind::Source: {
      TensorType t{get_dtype(attrs, "dtype", op), get_syms(attrs, "sizes", op)};
      if (op == Op::iota) check_dim(get_int(attrs, "dim", op), t.rank(), op);
      return t;
    }
    case OpKind::View: {
      const TensorType& x = in[0];
      switch (op) {
        case Op::permute: {
          auto dims = get_ints(attrs, "dims", op);
          KILN_CHECK(static_cast<int64_t>(dims.size()) == x.rank(), "permute: dims rank mismatch");
          std::vector<bool> seen(dims.size());
          std::vector<SymExpr> s;
          for (auto d : dims) {
            check_dim(d, x.rank(), op);
            KILN_CHECK(!seen[static_cast<size_t>(d)], "permute: repeated dim ", d);
            seen[static_cast<size_t>(d)] = true;
            s.push_back(x.sizes[static_cast<size_t>(d)]);
          }
          return {x.dtype, s};
        }
        case Op::expand: {
          auto s = get_syms(attrs, "sizes", op);
          KILN_CHECK(static_cast<int64_t>(s.size()) == x.rank(), "expand: rank must match (reshape first)");
          for (size_t i = 0; i < s.size(); ++i)
            KILN_CHECK(x.sizes[i].is_const(1) || x.sizes[i] == s[i], "expand: cannot expand ", x.str(), " to ",
                       to_string(s));
          return {x.dtype, s};
        }
        case Op::reshape: {
          auto s = get_syms(attrs, "sizes", op);
          SymExpr a = x.numel(), b = product(s);
          KILN_CHECK(a == b || !(a.is_const() && b.is_const()), "reshape: ", x.str(), " has ", a.str(),
                     " elements, not ", b.str());
          return {x.dtype, s};
        }
        case Op::slice: {
          int64_t d = check_dim(get_int(attrs, "dim", op), x.rank(), op);
          auto s = x.sizes;
          s[static_cast<size_t>(d)] = get_sym(attrs, "length", op);
          KILN_CHECK(get_int(attrs, "step", op) >= 1, "slice: step must be positive");
          get_sym(attrs, "start", op);
          return {x.dtype, s};
        }
        case Op::select: {
          int64_t d = check_dim(get_int(attrs, "dim", op), x.rank(), op);
          get_sym(attrs, "index", op);
          auto s = x.sizes;
          s.erase(s.begin() + d);
          return {x.dtype, s};
        }
        case Op::as_strided: {
          auto s = get_syms(attrs, "sizes", op);
          KILN_CHECK(get_syms(attrs, "strides", op).size() == s.size(), "as_strided: strides rank mismatch");
          get_sym(attrs, "offset", op);
          return {x.dtype, s};
        }
        default: break;
      }
      break;
    }
    case OpKind::Reduction: {
      const TensorType& x = in[0];
      auto dims = get_ints(attrs, "dims", op);
      bool keep = get_int(attrs, "keepdim", op) != 0;
      std::vector<SymExpr> s;
      for (int64_t i = 0; i < x.rank(); ++i) {
        bool reduced = std::find(dims.begin(), dims.end(), i) != dims.end();
        if (!reduced)
          s.push_back(x.sizes[static_cast<size_t>(i)]);
        else if (keep)
          s.push_back(SymExpr(1));
      }
      for (auto d : dims) check_dim(d, x.rank(), op);
      DType t = x.dtype;
      if (op == Op::argmax || op == Op::argmin) {
        KILN_CHECK(dims.size() == 1, op_name(op), " reduces one dim");
        t = DType::I64;
      }
      if ((op == Op::sum || op == Op::prod) && t == DType::Bool) t = DType::I64;
      return {t, s};
    }
    case OpKind::Gather: {
      if (op == Op::index_rows) {
        KILN_CHECK(is_integral(in[1].dtype), "index_rows: indices must be integers, got ", in[1].str());
        KILN_CHECK(in[0].rank() >= 1, "index_rows: data must have rank >= 1");
        std::vector<SymExpr> s = in[1].sizes;
        s.insert(s.end(), in[0].sizes.begin() + 1, in[0].sizes.end());
        return {in[0].dtype, s};
      }
      if (op == Op::cat) {
        KILN_CHECK(!in.empty(), "cat needs inputs");
        int64_t d = check_dim(get_int(attrs, "dim", op), in[0].rank(), op);
        auto s = in[0].sizes;
        for (size_t i = 1; i < in.size(); ++i) {
          KILN_CHECK(in[i].dtype == in[0].dtype && in[i].rank() == in[0].rank(), "cat: operand types differ");
          for (int64_t k = 0; k < in[0].rank(); ++k)
            if (k != d)
              KILN_CHECK(in[i].sizes[static_cast<size_t>(k)] == s[static_cast<size_t>(k)], "cat: sizes differ");
          s[static_cast<size_t>(d)] = s[static_cast<size_t>(d)] + in[i].sizes[static_cast<size_t>(d)];
        }
        return {in[0].dtype, s};
      }
      if (op == Op::slice_scatter) {
        int64_t d = check_dim(get_int(attrs, "dim", op), in[0].rank(), op);
        KILN_CHECK(in[1].dtype == in[0].dtype && in[1].rank() == in[0].rank(), "slice_scatter: src type differs");
        for (int64_t k = 0; k < in[0].rank(); ++k)
          if (k != d)
            KILN_CHECK(in[1].sizes[static_cast<size_t>(k)] == in[0].sizes[static_cast<size_t>(k)],
                       "slice_scatter: sizes differ");
        KILN_CHECK(get_int(attrs, "step", op) >= 1, "slice_scatter: step must be positive");
        get_sym(attrs, "start", op);
        return in[0];
      }
      if (op == Op::pad) {
        auto pads = get_syms(attrs, "pads", op);
        KILN_CHECK(pads.size() % 2 == 0 && static_cast<int64_t>(pads.size()) <= 2 * in[0].rank(), "pad: bad pads");
        auto s = in[0].sizes;
        for (size_t i = 0; i < pads.size() / 2; ++i) {
          size_t d = s.size() - 1 - i;
          s[d] = s[d] + pads[2 * i] + pads[2 * i + 1];
        }
        need(attrs, "value", op);
        return {in[0].dtype, s};
      }
      break;
    }
    case OpKind::Extern: {
      if (op == Op::matmul) {
        const TensorType &a = in[0], &b = in[1];
        KILN_USER_CHECK(is_floating(a.dtype) && a.dtype == b.dtype,
                        "matmul: kiln supports f32/f64 operands of one "
                        "dtype, got ",
                        a.str(), " and ", b.str());
        KILN_CHECK(a.rank() == b.rank() && (a.rank() == 2 || a.rank() == 3),
                   "matmul: operands must both be rank 2 or 3");
        size_t r = static_cast<size_t>(a.rank());
        KILN_CHECK(a.sizes[r - 1] == b.sizes[r - 2], "matmul: inner sizes differ: ", a.str(), " x ", b.str());
        if (r == 3) KILN_CHECK(a.sizes[0] == b.sizes[0], "matmul: batch sizes differ");
        std::vector<SymExpr> s = a.sizes;
        s[r - 1] = b.sizes[r - 1];
        return {a.dtype, s};
      }
      if (op == Op::attention || op == Op::attention_backward) {
        size_t o = op == Op::attention ? 0 : 1;  // the backward's first operand is dout
        const TensorType &q = in[o], &k = in[o + 1], &v = in[o + 2];
        KILN_USER_CHECK(is_floating(q.dtype) && q.dtype == k.dtype && q.dtype == v.dtype,
                        "attention: kiln supports f32/f64 operands of one dtype");
        KILN_CHECK(q.rank() == k.rank() && q.rank() == v.rank() && (q.rank() == 3 || q.rank() == 4),
                   "attention: operands must all be rank 3 or 4");
        size_t r = static_cast<size_t>(q.rank());
        for (size_t i = 0; i + 2 < r; ++i)
          KILN_CHECK(q.sizes[i] == k.sizes[i] && q.sizes[i] == v.sizes[i], "attention: batch sizes differ");
        KILN_CHECK(q.sizes[r - 1] == k.sizes[r - 1] && k.sizes[r - 2] == v.sizes[r - 2], "attention: ", q.str(), ", ",
                   k.str(), ", ", v.str(), " do not fit");
        std::vector<SymExpr> s(q.sizes.begin(), q.sizes.end() - 2);
        if (op == Op::attention) {
          // Flat: out in [b1, sq, b2, dv] order (rank 3: [b, sq, dv]), then lse [.., sq]. Heads of one
          // query row are adjacent, so out.transpose(1, 2).reshape(b1, sq, b2 * dv) is a free view.
          SymExpr batch(1);
          for (const SymExpr& e : s) batch = batch * e;
          return {q.dtype, {batch * q.sizes[r - 2] * (v.sizes[r - 1] + SymExpr(1))}};
        }
        std::vector<SymExpr> out_sizes(s), lse_sizes(s);
        out_sizes.push_back(q.sizes[r - 2]);
        out_sizes.push_back(v.sizes[r - 1]);
        lse_sizes.push_back(q.sizes[r - 2]);
        KILN_CHECK(in[0].sizes == out_sizes && in[4].sizes == out_sizes && in[5].sizes == lse_sizes &&
                       in[0].dtype == q.dtype && in[4].dtype == q.dtype && in[5].dtype == q.dtype,
                   "attention_backward: dout, out or lse do not fit");
        s.push_back(q.sizes[r - 2] * q.sizes[r - 1] + k.sizes[r - 2] * k.sizes[r - 1] +
                    v.sizes[r - 2] * v.sizes[r - 1]);
        return {q.dtype, s};
      }
      if (op == Op::index_add_rows) {
        const TensorType &idx = in[0], &src = in[1];
        KILN_CHECK(is_integral(idx.dtype) && idx.rank() == 1, "index_add_rows: indices must be 1-D integers");
        KILN_CHECK(src.rank() == 2 && src.sizes[0] == idx.sizes[0], "index_add_rows: src must be [N, D]");
        KILN_USER_CHECK(is_floating(src.dtype), "index_add_rows: src must be floating");
        return {src.dtype, {get_sym(attrs, "rows", op), src.sizes[1]}};
      }
      break;
    }
  }
  throw InternalError(str_cat("infer_type: no rule for ", op_name(op)));
}

}  // namespace kiln
