// ir_text_roundtrip_test.cpp — every op and attribute kind survives print → parse → print; parse errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "kiln/ir/graph.h"
#include "kiln/support/error.h"

namespace kiln {
namespace {

const SymExpr s0 = SymExpr::symbol("s0");
const SymExpr s1 = SymExpr::symbol("s1");

ValueId add(Graph& g, Op op, std::vector<ValueId> ins, Attrs attrs = {}, std::string origin = "") {
  std::vector<TensorType> types;
  for (ValueId v : ins) types.push_back(g.type(v));
  TensorType t = infer_type(op, types, attrs);
  return g.add_node(op, std::move(ins), std::move(attrs), std::move(t), std::move(origin));
}

bool same_attr(const Attr& a, const Attr& b) {
  if (a.index() != b.index()) return false;
  if (auto* x = std::get_if<double>(&a)) {
    double y = std::get<double>(b);
    return std::isnan(*x) ? std::isnan(y) : std::memcmp(x, &y, sizeof y) == 0;  // -0.0 != 0.0 here
  }
  return attr_to_string(a) == attr_to_string(b);
}

// Field-by-field equality, stricter than comparing printed text (attribute kinds, float bits).
void expect_same_graph(const Graph& a, const Graph& b) {
  EXPECT_EQ(a.symbols, b.symbols);
  ASSERT_EQ(a.num_values(), b.num_values());
  ASSERT_EQ(a.inputs().size(), b.inputs().size());
  for (size_t i = 0; i < a.inputs().size(); ++i) {
    EXPECT_EQ(a.inputs()[i].value, b.inputs()[i].value);
    EXPECT_EQ(a.inputs()[i].strides, b.inputs()[i].strides);
    EXPECT_EQ(a.inputs()[i].name, b.inputs()[i].name);
  }
  for (size_t v = 0; v < a.num_values(); ++v) EXPECT_EQ(a.type(ValueId(v)), b.type(ValueId(v))) << "%" << v;
  ASSERT_EQ(a.nodes().size(), b.nodes().size());
  for (size_t i = 0; i < a.nodes().size(); ++i) {
    const Node &x = a.nodes()[i], &y = b.nodes()[i];
    EXPECT_EQ(x.op, y.op);
    EXPECT_EQ(x.inputs, y.inputs);
    EXPECT_EQ(x.result, y.result);
    EXPECT_EQ(x.origin, y.origin);
    ASSERT_EQ(x.attrs.size(), y.attrs.size()) << op_name(x.op);
    for (const auto& [k, v] : x.attrs) {
      ASSERT_TRUE(y.has_attr(k)) << k;
      EXPECT_TRUE(same_attr(v, y.attrs.at(k)))
          << k << ": " << attr_to_string(v) << " vs " << attr_to_string(y.attrs.at(k));
    }
  }
  ASSERT_EQ(a.outputs().size(), b.outputs().size());
  for (size_t i = 0; i < a.outputs().size(); ++i) {
    EXPECT_EQ(a.outputs()[i].value, b.outputs()[i].value);
    EXPECT_EQ(a.outputs()[i].strides, b.outputs()[i].strides);
  }
}

void expect_round_trip(const Graph& g) {
  std::string text = print_graph(g);
  Graph back = parse_graph(text);
  EXPECT_EQ(print_graph(back), text);
  expect_same_graph(g, back);
}

// One graph using every op in the table, symbolic sizes and every attribute kind.
Graph every_op_graph() {
  Graph g;
  g.symbols = {"s0", "s1"};
  ValueId x = g.add_input({DType::F32, {4, s0}}, {s0, 1}, "x");
  ValueId y = g.add_input({DType::F32, {4, s0}}, {1, 4}, "");  // unnamed, column-major
  ValueId i = g.add_input({DType::I64, {4, s0}}, {s0, 1}, "ints");
  ValueId b = g.add_input({DType::Bool, {4, s0}}, {s0, 1}, "a \"mask\"\\");
  ValueId m = g.add_input({DType::F32, {s0, 8}}, {8, 1}, "m");
  ValueId idx = g.add_input({DType::I32, {s1}}, {1}, "idx");

  for (Op op :
       {Op::neg,   Op::abs,        Op::exp,       Op::exp2,  Op::expm1, Op::log,   Op::log2,    Op::log1p, Op::sqrt,
        Op::rsqrt, Op::reciprocal, Op::sin,       Op::cos,   Op::tan,   Op::tanh,  Op::sigmoid, Op::erf,   Op::relu,
        Op::silu,  Op::gelu,       Op::gelu_tanh, Op::floor, Op::ceil,  Op::round, Op::trunc,   Op::sign,  Op::isnan})
    add(g, op, {x}, {}, str_cat("aten.", op_name(op), ".default"));
  add(g, Op::logical_not, {b});
  add(g, Op::bitwise_not, {i});
  add(g, Op::cast, {x}, {{"dtype", DType::F64}});
  for (Op op : {Op::add, Op::sub, Op::mul, Op::div, Op::floordiv, Op::truncdiv, Op::remainder, Op::fmod, Op::pow,
                Op::maximum, Op::minimum, Op::atan2, Op::eq, Op::ne, Op::lt, Op::le, Op::gt, Op::ge})
    add(g, op, {x, y});
  ValueId lt = add(g, Op::lt, {y, x});
  for (Op op : {Op::logical_and, Op::logical_or, Op::logical_xor}) add(g, op, {b, lt});
  for (Op op : {Op::bitwise_and, Op::bitwise_or, Op::bitwise_xor}) add(g, op, {i, i});
  ValueId w = add(g, Op::where, {b, x, y}, {}, "origin with # and // and \\ and\nnewline");
  add(g, Op::fma, {x, y, x});

  // Every attribute kind, floats at the edges of their text form.
  double floats[] = {0.5,
                     -0.0,
                     0.1,
                     1e-300,
                     1e20,
                     3.0,
                     std::numeric_limits<double>::infinity(),
                     -std::numeric_limits<double>::infinity(),
                     std::numeric_limits<double>::quiet_NaN(),
                     std::numeric_limits<double>::denorm_min()};
  for (double f : floats)
    add(g, Op::full, {}, {{"value", f}, {"dtype", DType::F32}, {"sizes", std::vector<SymExpr>{4, s0}}});
  add(g, Op::full, {}, {{"value", int64_t{-3}}, {"dtype", DType::I64}, {"sizes", std::vector<int64_t>{}}});
  add(g, Op::full, {},
      {{"value", true},
       {"dtype", DType::Bool},
       {"sizes", std::vector<int64_t>{2, 3}},
       {"note", std::string("tab\there, \"quotes\", back\\slash, // not a comment")}});
  add(g, Op::iota, {},
      {{"dim", int64_t{1}},
       {"start", int64_t{0}},
       {"step", int64_t{2}},
       {"dtype", DType::I64},
       {"sizes", std::vector<SymExpr>{4, floordiv(s0, 2) + 1}}});

  add(g, Op::permute, {x}, {{"dims", std::vector<int64_t>{1, 0}}});
  ValueId r = add(g, Op::reshape, {x}, {{"sizes", std::vector<SymExpr>{4, 1, s0}}});
  add(g, Op::expand, {r}, {{"sizes", std::vector<SymExpr>{4, 3, s0}}});
  add(g, Op::slice, {x}, {{"dim", int64_t{1}}, {"start", SymExpr(1)}, {"length", s0 - 1}, {"step", int64_t{1}}});
  add(g, Op::slice, {x},
      {{"dim", int64_t{1}}, {"start", int64_t{0}}, {"length", floordiv(s0 + 1, 2)}, {"step", int64_t{2}}});
  add(g, Op::select, {x}, {{"dim", int64_t{0}}, {"index", int64_t{2}}});
  add(g, Op::as_strided, {x},
      {{"sizes", std::vector<SymExpr>{2, sym_min(s0, 4)}},
       {"strides", std::vector<int64_t>{1, 2}},
       {"offset", mod(s0, 3)}});

  for (Op op : {Op::sum, Op::prod, Op::amax, Op::amin})
    add(g, op, {x}, {{"dims", std::vector<int64_t>{1}}, {"keepdim", op == Op::sum}});
  add(g, Op::argmax, {x}, {{"dims", std::vector<int64_t>{0}}, {"keepdim", false}});
  add(g, Op::argmin, {x}, {{"dims", std::vector<int64_t>{1}}, {"keepdim", true}});

  add(g, Op::cat, {x, y, w}, {{"dim", int64_t{0}}});
  add(g, Op::pad, {x}, {{"pads", std::vector<int64_t>{1, 2}}, {"value", 0.0}});
  ValueId strip = add(g, Op::slice, {y},
                      {{"dim", int64_t{0}}, {"start", int64_t{0}}, {"length", int64_t{2}}, {"step", int64_t{2}}});
  add(g, Op::slice_scatter, {x, strip}, {{"dim", int64_t{0}}, {"start", int64_t{0}}, {"step", int64_t{2}}});
  ValueId rows = add(g, Op::index_rows, {x, idx});
  ValueId mm = add(g, Op::matmul, {x, m});
  ValueId acc = add(g, Op::index_add_rows, {idx, rows}, {{"rows", SymExpr(4)}});
  // attention over [1, s0, 8] (q = k = v), then its backward with dout, out and lse unpacked by views
  ValueId q = add(g, Op::reshape, {m}, {{"sizes", std::vector<SymExpr>{1, s0, 8}}});
  ValueId att = add(g, Op::attention, {q, q, q}, {{"causal", true}, {"scale", 0.125}});
  ValueId att_out = add(g, Op::reshape,
                        {add(g, Op::slice, {att},
                             {{"dim", int64_t{0}}, {"start", int64_t{0}}, {"length", s0 * 8}, {"step", int64_t{1}}})},
                        {{"sizes", std::vector<SymExpr>{1, s0, 8}}});
  ValueId lse =
      add(g, Op::reshape,
          {add(g, Op::slice, {att}, {{"dim", int64_t{0}}, {"start", s0 * 8}, {"length", s0}, {"step", int64_t{1}}})},
          {{"sizes", std::vector<SymExpr>{1, s0}}});
  add(g, Op::attention_backward, {att_out, q, q, q, att_out, lse}, {{"causal", false}, {"scale", 0.5}});

  g.add_output(mm, {8, 1});
  g.add_output(acc, {1, 4});
  g.add_output(x, {s0, 1});  // an input can be an output
  return g;
}

TEST(IrText, EveryOpRoundTrips) {
  Graph g = every_op_graph();
  verify_graph(g);
  std::set<Op> used;
  for (const Node& n : g.nodes()) used.insert(n.op);
  for (int k = 0; k < static_cast<int>(Op::kNumOps); ++k)
    EXPECT_TRUE(used.count(static_cast<Op>(k))) << "op " << op_name(static_cast<Op>(k)) << " is not covered";
  expect_round_trip(g);
}

TEST(IrText, PrintedForm) {
  Graph g;
  g.symbols = {"s0"};
  ValueId x = g.add_input({DType::F32, {4, s0}}, {s0, 1}, "x");
  ValueId w = g.add_input({DType::F32, {1, s0}}, {s0, 1}, "w");
  ValueId e = add(g, Op::expand, {w}, {{"sizes", std::vector<SymExpr>{4, s0}}});
  ValueId p = add(g, Op::mul, {x, e}, {}, "aten.mul.Tensor mul_1");
  ValueId s = add(g, Op::sum, {p}, {{"dims", std::vector<int64_t>{1}}, {"keepdim", false}});
  g.add_output(s, {1});
  EXPECT_EQ(print_graph(g),
            "graph(%0: f32[4,s0] strides [s0,1] \"x\", %1: f32[1,s0] strides [s0,1] \"w\") symbols(s0) {\n"
            "  %2 = expand(%1) {sizes=<[4,s0]>} : f32[4,s0]\n"
            "  %3 = mul(%0, %2) : f32[4,s0]  # aten.mul.Tensor mul_1\n"
            "  %4 = sum(%3) {dims=[1], keepdim=false} : f32[4]\n"
            "  return %4 strides [1]\n"
            "}\n");
  expect_round_trip(g);
}

TEST(IrText, EmptyGraphRoundTrips) {
  Graph g;
  EXPECT_EQ(print_graph(g), "graph() {\n  return\n}\n");
  expect_round_trip(g);
}

TEST(IrText, HandWrittenTextIsRenumberedAndDefaulted) {
  // Names are free-form, comments are ignored, strides default to contiguous, blanks are flexible.
  Graph g = parse_graph(R"(
    // a hand-written graph
    graph(%x: f32[2,s0], %bias: f32[2,s0] "b") symbols(s0) {
      %t = add(%x, %bias) : f32[2,s0]   // not an origin
      %u=neg(%t):f32[2,s0]#from here
      return %u, %t strides [1,2]
    })");
  EXPECT_EQ(print_graph(g),
            "graph(%0: f32[2,s0] strides [s0,1], %1: f32[2,s0] strides [s0,1] \"b\") symbols(s0) {\n"
            "  %2 = add(%0, %1) : f32[2,s0]\n"
            "  %3 = neg(%2) : f32[2,s0]  # from here\n"
            "  return %3 strides [s0,1], %2 strides [1,2]\n"
            "}\n");
}

TEST(IrText, SizeExpressionsMayContainFloorDivision) {
  // `//` inside sizes is floor division, not a comment.
  Graph g = parse_graph(
      "graph(%0: f32[(s0//2),min(s0,4)] strides [min(4,s0),1]) symbols(s0) {\n"
      "  %1 = reshape(%0) {sizes=<[(s0//2)*min(4,s0)]>} : f32[min(4,s0)*(s0//2)]  // a comment\n"
      "  return %1 strides [1]\n"
      "}\n");
  EXPECT_EQ(g.type(0).sizes[0], floordiv(s0, 2));
  EXPECT_EQ(g.type(1).sizes[0], floordiv(s0, 2) * sym_min(s0, 4));
  expect_round_trip(g);
}

void expect_parse_error(const std::string& text, const std::string& where, const std::string& what) {
  try {
    parse_graph(text);
    ADD_FAILURE() << "no error for:\n" << text;
  } catch (const UserError& e) {
    std::string msg = e.what();
    EXPECT_EQ(msg.rfind(where + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
  }
}

TEST(IrText, ParseErrorsHaveLineAndColumn) {
  const std::string head = "graph(%0: f32[4] strides [1]) {\n";
  expect_parse_error("grph() {\n return\n}", "1:1", "expected 'graph'");
  expect_parse_error(head + "  %1 = frobnicate(%0) : f32[4]\n  return %1\n}", "2:8", "unknown op 'frobnicate'");
  expect_parse_error(head + "  %1 = neg(%7) : f32[4]\n  return %1\n}", "2:12", "%7 is not defined");
  expect_parse_error(head + "  %1 = neg(%0) : f32[5]\n  return %1\n}", "2:18",
                     "stated type f32[5] but neg gives f32[4]");
  expect_parse_error(head + "  %1 = neg(%0, %0) : f32[4]\n  return %1\n}", "2:8", "neg takes 1 inputs, got 2");
  expect_parse_error(head + "  %1 = cast(%0) : f32[4]\n  return %1\n}", "2:8", "cast needs attribute 'dtype'");
  expect_parse_error(head + "  %1 = cast(%0) {dtype=f16} : f32[4]\n  return %1\n}", "2:24",
                     "unknown attribute value 'f16'");
  expect_parse_error(head + "  %1 = neg(%0) : f32[4]\n  %1 = neg(%0) : f32[4]\n  return %1\n}", "3:3", "defined twice");
  expect_parse_error(head + "  %1 = neg(%0) : q32[4]\n  return %1\n}", "2:18", "unsupported dtype 'q32'");
  expect_parse_error(head + "  %1 = neg(%0) : f32[4+]\n  return %1\n}", "2:22", "size expression");
  expect_parse_error(head + "  %1 = neg(%0) {s=\"abc} : f32[4]\n  return %1\n}", "2:19", "unterminated string");
  expect_parse_error(head + "  return %0 strides [1,1]\n}", "2:21", "do not match the rank");
  expect_parse_error(head + "  return %0\n}\nextra", "4:1", "expected the end of the input");
  expect_parse_error("graph(%0: f32[s0] strides [1]) {\n  return %0\n}", "1:15", "symbol 's0' is not declared");
  expect_parse_error("graph(%0: f32[s0]) symbols(s0, s0) {\n  return %0\n}", "1:32", "declared twice");
  expect_parse_error("graph(%0: f32[4]) {\n  return %0\n", "3:1", "expected '}'");
}

}  // namespace
}  // namespace kiln
