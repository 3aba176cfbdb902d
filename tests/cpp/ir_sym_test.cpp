// ir_sym_test.cpp — symbolic size expressions: canonical forms, arithmetic, floor ops, eval, parsing.
#include <gtest/gtest.h>

#include "kiln/ir/sym.h"
#include "kiln/support/error.h"

namespace kiln {
namespace {

const SymExpr s0 = SymExpr::symbol("s0");
const SymExpr s1 = SymExpr::symbol("s1");

TEST(IrSym, ConstantsAndSymbols) {
  EXPECT_TRUE(SymExpr().is_const(0));
  EXPECT_TRUE(SymExpr(7).is_const(7));
  EXPECT_EQ(SymExpr(-3).str(), "-3");
  EXPECT_EQ(s0.kind(), SymExpr::Kind::Symbol);
  EXPECT_EQ(s0.symbol_name(), "s0");
  EXPECT_THROW(SymExpr::symbol("0x"), UserError);
  EXPECT_THROW(SymExpr::symbol(""), UserError);
}

TEST(IrSym, CanonicalFormsAreOrderIndependent) {
  EXPECT_EQ(s0 * 64, 64 * s0);
  EXPECT_EQ((s0 * 64).str(), "64*s0");
  EXPECT_EQ(s0 * s1, s1 * s0);
  EXPECT_EQ((s1 + s0).str(), (s0 + s1).str());
  EXPECT_EQ((s0 + 1 + s0).str(), "2*s0+1");
  EXPECT_EQ((1 + s0 + s0), (s0 * 2 + 1));
  // Products distribute over sums so equal polynomials print alike.
  EXPECT_EQ(((s0 + 1) * (s0 + 1)).str(), "2*s0+s0*s0+1");
  EXPECT_EQ((s0 + 1) * (s0 + 1), s0 * s0 + 2 * s0 + 1);
}

TEST(IrSym, Arithmetic) {
  EXPECT_TRUE((s0 - s0).is_const(0));
  EXPECT_EQ((s0 + s1) - s1, s0);
  EXPECT_TRUE((s0 * 0).is_const(0));
  EXPECT_EQ(s0 * 1, s0);
  EXPECT_EQ((-s0).str(), "-s0");
  EXPECT_EQ((s0 - 2 * s1).str(), "s0-2*s1");
  EXPECT_EQ((-2 * s1).str(), "-2*s1");
  EXPECT_TRUE((SymExpr(3) * SymExpr(4)).is_const(12));
  EXPECT_EQ(product({4, s0, 2}).str(), "8*s0");
  EXPECT_EQ(to_string(contiguous_strides({4, s0, 8})), "[8*s0,8,1]");
}

TEST(IrSym, FloorDivFollowsPython) {
  EXPECT_TRUE(floordiv(SymExpr(-7), 2).is_const(-4));
  EXPECT_TRUE(floordiv(SymExpr(7), -2).is_const(-4));
  EXPECT_TRUE(floordiv(SymExpr(7), 2).is_const(3));
  EXPECT_EQ(floordiv(64 * s0 + 8, 8).str(), "8*s0+1");  // divisible terms come out
  EXPECT_EQ(floordiv(floordiv(s0, 2), 4).str(), "(s0//8)");
  EXPECT_EQ(floordiv(s0 + 1, 2).str(), "((s0+1)//2)");
  EXPECT_EQ(floordiv(s0, 1), s0);
  EXPECT_TRUE(floordiv(s0, s0).is_const(1));
  EXPECT_EQ(floordiv(s0, s1).str(), "(s0//s1)");
  EXPECT_THROW(floordiv(s0, 0), UserError);
}

TEST(IrSym, ModFollowsPython) {
  EXPECT_TRUE(mod(SymExpr(-7), 2).is_const(1));
  EXPECT_TRUE(mod(SymExpr(7), -2).is_const(-1));
  EXPECT_TRUE(mod(8 * s0 + 3, 8).is_const(3));
  EXPECT_TRUE(mod(8 * s0, 8).is_const(0));
  EXPECT_EQ(mod(s0, 8).str(), "(s0%8)");
  EXPECT_EQ(mod(mod(s0, 8), 8), mod(s0, 8));
  EXPECT_EQ(mod(floordiv(s0, 8), 4).str(), "((s0//8)%4)");
  EXPECT_TRUE(mod(s0, 1).is_const(0));
  EXPECT_THROW(mod(s0, 0), UserError);
}

TEST(IrSym, SplitAndJoinedIndexFolds) {
  const SymExpr o = SymExpr::symbol("o0"), i = SymExpr::symbol("i0");
  // A [1152] index split into [6, 192] and joined again (row pitch 768): 768*o0.
  EXPECT_EQ((768 * mod(o, 192) + 147456 * floordiv(o, 192) + i).str(), (768 * o + i).str());
  EXPECT_EQ((mod(o + 3, 8) + 8 * floordiv(o + 3, 8)).str(), (o + 3).str());
  // Only the exact identity: other multiples, other divisors and negative divisors stay as they are.
  EXPECT_NE((mod(o, 192) + 100 * floordiv(o, 192)).str(), o.str());
  EXPECT_NE((mod(o, 8) + 8 * floordiv(o, 4)).str(), o.str());
  // Checked by evaluation on both sides of zero (floor semantics).
  for (int64_t v : {-17, -1, 0, 5, 191, 192, 1151}) {
    const SymExpr e = 768 * mod(o, 192) + 147456 * floordiv(o, 192);
    EXPECT_EQ(e.eval({{"o0", v}}), 768 * v);
  }
}

TEST(IrSym, MinMax) {
  EXPECT_TRUE(sym_min(3, 5).is_const(3));
  EXPECT_TRUE(sym_max(3, 5).is_const(5));
  EXPECT_EQ(sym_min(s0, 4), sym_min(4, s0));  // argument order is canonical
  EXPECT_EQ(sym_min(s0, 4).str(), "min(4,s0)");
  EXPECT_EQ(sym_max(s1, s0).str(), "max(s0,s1)");
  EXPECT_EQ(sym_max(s0, s0), s0);
}

TEST(IrSym, Eval) {
  SymBindings env{{"s0", 10}, {"s1", 3}};
  EXPECT_EQ((64 * s0 + 1).eval(env), 641);
  EXPECT_EQ(floordiv(s0, s1).eval(env), 3);
  EXPECT_EQ(mod(s0, s1).eval(env), 1);
  EXPECT_EQ(floordiv(-s0, s1).eval(env), -4);  // floor, not truncation
  EXPECT_EQ(mod(-s0, s1).eval(env), 2);
  EXPECT_EQ(sym_min(s0, s1).eval(env), 3);
  EXPECT_EQ(sym_max(s0, s1 * 5).eval(env), 15);
  EXPECT_THROW((s0 + SymExpr::symbol("s9")).eval(env), UserError);
  EXPECT_FALSE((s0 + SymExpr::symbol("s9")).try_eval(env).has_value());
}

TEST(IrSym, SymbolsAndSubstitution) {
  std::set<std::string> syms;
  (floordiv(s0, 2) + sym_min(s1, 4)).collect_symbols(syms);
  EXPECT_EQ(syms, (std::set<std::string>{"s0", "s1"}));
  SymExpr e = (s0 * 4 + s1).substitute([](const std::string& n) -> std::optional<SymExpr> {
    if (n == "s1") return SymExpr::symbol("s0") * 2;
    return std::nullopt;
  });
  EXPECT_EQ(e.str(), "6*s0");
}

TEST(IrSym, ParseGivesTheCanonicalForm) {
  EXPECT_EQ(parse_sym_expr("s0*64"), 64 * s0);
  EXPECT_EQ(parse_sym_expr(" 1 + s0 + s0 ").str(), "2*s0+1");
  EXPECT_EQ(parse_sym_expr("(s0//2)%3"), mod(floordiv(s0, 2), 3));
  EXPECT_EQ(parse_sym_expr("min(s0, 4)"), sym_min(s0, 4));
  EXPECT_EQ(parse_sym_expr("-2*s1"), -2 * s1);
  EXPECT_EQ(parse_sym_expr("s0-(s1-3)").str(), "s0-s1+3");
  EXPECT_THROW(parse_sym_expr("s0+"), UserError);
  EXPECT_THROW(parse_sym_expr("(s0"), UserError);
  EXPECT_THROW(parse_sym_expr("s0 $ 2"), UserError);
}

TEST(IrSym, PrintParseRoundTrip) {
  const std::vector<SymExpr> cases = {
      0,
      5,
      -5,
      s0,
      -s0,
      64 * s0,
      2 * s0 + 1,
      s0 * s1 * 2 + s1,
      (s0 + 1) * (s1 - 1),
      floordiv(s0, 8),
      floordiv(s0 + 1, 2),
      floordiv(-s0, 3),
      floordiv(s0, s1),
      mod(s0, 8),
      mod(floordiv(s0, 8), 4),
      mod(s0 + 2 * s1, 3),
      sym_min(s0, 4),
      sym_max(s0, s1),
      sym_min(floordiv(s0, 2), s1 + 1) * 3 - 7,
  };
  for (const SymExpr& e : cases) {
    SymExpr back = parse_sym_expr(e.str());
    EXPECT_EQ(back.str(), e.str()) << e.str();
    EXPECT_EQ(back.eval({{"s0", 37}, {"s1", 5}}), e.eval({{"s0", 37}, {"s1", 5}})) << e.str();
  }
}

}  // namespace
}  // namespace kiln
