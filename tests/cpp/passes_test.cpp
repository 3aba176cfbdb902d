// passes_test.cpp — each simplification pass on small graphs, the registry and the pipeline.
#include <gtest/gtest.h>

#include <cmath>

#include "kiln/passes/pass_registry.h"
#include "kiln/passes/passes.h"
#include "kiln/passes/pipeline.h"
#include "kiln/support/error.h"

namespace kiln {
namespace {

// Parses `text`, runs `pass`, verifies the result and returns it printed.
std::string run(const PassFn& pass, const std::string& text) {
  Graph out = pass(parse_graph(text));
  verify_graph(out);
  return print_graph(out);
}
// The printed form of a graph given in (possibly hand-written) text.
std::string canon(const std::string& text) { return print_graph(parse_graph(text)); }

// The `value` attribute of the node defining the first output, which must be a `full`.
Attr folded_value(const std::string& printed) {
  Graph g = parse_graph(printed);
  const Node* p = g.producer(g.outputs().at(0).value);
  EXPECT_TRUE(p && p->op == Op::full) << printed;
  return p ? p->attrs.at("value") : Attr{false};
}

// ---- dce ----

TEST(Passes, DceDropsDeadNodesAndKeepsOutputsAndInputs) {
  std::string in = R"(graph(%x: f32[4], %unused: f32[4]) {
    %a = neg(%x) : f32[4]
    %dead = exp(%a) : f32[4]
    %dead2 = add(%dead, %x) : f32[4]
    %b = abs(%a) : f32[4]
    return %b, %x
  })";
  EXPECT_EQ(run(dce, in), canon(R"(graph(%x: f32[4], %unused: f32[4]) {
    %a = neg(%x) : f32[4]
    %b = abs(%a) : f32[4]
    return %b, %x
  })"));
}

TEST(Passes, DceKeepsEverythingLive) {
  std::string in = R"(graph(%x: f32[4]) {
    %a = neg(%x) : f32[4]
    %b = mul(%a, %a) : f32[4]
    return %b, %a
  })";
  EXPECT_EQ(run(dce, in), canon(in));
}

// ---- cse ----

TEST(Passes, CseMergesIdenticalNodesAndTheirUsers) {
  std::string in = R"(graph(%x: f32[4], %y: f32[4]) {
    %a = sub(%x, %y) : f32[4]
    %b = sub(%x, %y) : f32[4]
    %c = exp(%a) : f32[4]
    %d = exp(%b) : f32[4]
    %e = add(%c, %d) : f32[4]
    return %e
  })";
  EXPECT_EQ(run(cse, in), canon(R"(graph(%x: f32[4], %y: f32[4]) {
    %a = sub(%x, %y) : f32[4]
    %c = exp(%a) : f32[4]
    %e = add(%c, %c) : f32[4]
    return %e
  })"));
}

TEST(Passes, CseMergesCommutativeOpsWithSwappedInputs) {
  std::string in = R"(graph(%x: f32[4], %y: f32[4]) {
    %a = add(%x, %y) : f32[4]
    %b = add(%y, %x) : f32[4]
    %c = mul(%a, %b) : f32[4]
    %d = mul(%b, %a) : f32[4]
    %e = sub(%c, %d) : f32[4]
    return %e
  })";
  EXPECT_EQ(run(cse, in), canon(R"(graph(%x: f32[4], %y: f32[4]) {
    %a = add(%x, %y) : f32[4]
    %c = mul(%a, %a) : f32[4]
    %e = sub(%c, %c) : f32[4]
    return %e
  })"));
}

TEST(Passes, CseKeepsNonCommutativeSwapsAndDifferentAttributes) {
  std::string in = R"(graph(%x: f32[4,4], %y: f32[4,4]) {
    %a = sub(%x, %y) : f32[4,4]
    %b = sub(%y, %x) : f32[4,4]
    %c = sum(%a) {dims=[0], keepdim=false} : f32[4]
    %d = sum(%a) {dims=[1], keepdim=false} : f32[4]
    %e = full() {dtype=f32, sizes=[4], value=1.0} : f32[4]
    %f = full() {dtype=f32, sizes=[4], value=1.0} : f32[4]
    %g = full() {dtype=f32, sizes=[4], value=2.0} : f32[4]
    return %b, %c, %d, %e, %f, %g
  })";
  EXPECT_EQ(run(cse, in), canon(R"(graph(%x: f32[4,4], %y: f32[4,4]) {
    %a = sub(%x, %y) : f32[4,4]
    %b = sub(%y, %x) : f32[4,4]
    %c = sum(%a) {dims=[0], keepdim=false} : f32[4]
    %d = sum(%a) {dims=[1], keepdim=false} : f32[4]
    %e = full() {dtype=f32, sizes=[4], value=1.0} : f32[4]
    %g = full() {dtype=f32, sizes=[4], value=2.0} : f32[4]
    return %b, %c, %d, %e, %e, %g
  })"));
}

// ---- constant-fold ----

TEST(Passes, ConstantFoldFoldsSplats) {
  std::string in = R"(graph(%x: f32[2,3]) {
    %a = full() {dtype=f32, sizes=[2,3], value=2.0} : f32[2,3]
    %b = full() {dtype=f32, sizes=[2,3], value=3.0} : f32[2,3]
    %c = mul(%a, %b) : f32[2,3]
    %d = neg(%c) : f32[2,3]
    %e = add(%x, %d) : f32[2,3]
    return %e
  })";
  // Folding chains in one pass; the operands it no longer needs are left for dce.
  EXPECT_EQ(run(constant_fold, in), canon(R"(graph(%x: f32[2,3]) {
    %a = full() {dtype=f32, sizes=[2,3], value=2.0} : f32[2,3]
    %b = full() {dtype=f32, sizes=[2,3], value=3.0} : f32[2,3]
    %c = full() {dtype=f32, sizes=[2,3], value=6.0} : f32[2,3]
    %d = full() {dtype=f32, sizes=[2,3], value=-6.0} : f32[2,3]
    %e = add(%x, %d) : f32[2,3]
    return %e
  })"));
}

TEST(Passes, ConstantFoldNeverTreatsInputsAsConstants) {
  std::string in = R"(graph(%x: f32[4], %w: f32[4] "weight") {
    %a = mul(%w, %w) : f32[4]
    %b = exp(%x) : f32[4]
    %c = reshape(%w) {sizes=[2,2]} : f32[2,2]
    %two = full() {dtype=f32, sizes=[4], value=2.0} : f32[4]
    %d = add(%w, %two) : f32[4]
    return %a, %b, %c, %d
  })";
  EXPECT_EQ(run(constant_fold, in), canon(in));
}

TEST(Passes, ConstantFoldRoundsToF32) {
  std::string in = R"(graph() {
    %a = full() {dtype=f32, sizes=[8], value=0.1} : f32[8]
    %b = full() {dtype=f32, sizes=[8], value=0.2} : f32[8]
    %c = add(%a, %b) : f32[8]
    return %c
  })";
  Attr v = folded_value(run(constant_fold, in));
  ASSERT_TRUE(std::holds_alternative<double>(v));
  double want = static_cast<float>(static_cast<double>(0.1f) + static_cast<double>(0.2f));
  EXPECT_EQ(std::get<double>(v), want);
  EXPECT_EQ(std::get<double>(v), static_cast<double>(0.1f + 0.2f));  // what f32 arithmetic gives
  EXPECT_NE(std::get<double>(v), 0.1 + 0.2);                         // not the f64 answer

  std::string sqrt2 = R"(graph() {
    %a = full() {dtype=f32, sizes=[], value=2} : f32[]
    %b = sqrt(%a) : f32[]
    return %b
  })";
  EXPECT_EQ(std::get<double>(folded_value(run(constant_fold, sqrt2))), static_cast<double>(std::sqrt(2.0f)));
}

TEST(Passes, ConstantFoldIntegerAndBoolSemantics) {
  auto fold = [](const std::string& dtype, const std::string& op, const std::string& a, const std::string& b) {
    std::string t = dtype + "[3]";
    return folded_value(run(constant_fold, "graph() {\n  %a = full() {dtype=" + dtype + ", sizes=[3], value=" + a +
                                               "} : " + t + "\n  %b = full() {dtype=" + dtype +
                                               ", sizes=[3], value=" + b + "} : " + t + "\n  %c = " + op +
                                               "(%a, %b) : " + (op == "lt" ? "bool[3]" : t) + "\n  return %c\n}"));
  };
  EXPECT_EQ(std::get<int64_t>(fold("i32", "add", "2147483647", "1")), -2147483648);  // wraps like int32
  EXPECT_EQ(std::get<int64_t>(fold("i64", "floordiv", "-7", "2")), -4);
  EXPECT_EQ(std::get<int64_t>(fold("i64", "truncdiv", "-7", "2")), -3);
  EXPECT_EQ(std::get<int64_t>(fold("i64", "remainder", "-7", "2")), 1);
  EXPECT_EQ(std::get<int64_t>(fold("i64", "fmod", "-7", "2")), -1);
  EXPECT_EQ(std::get<double>(fold("f64", "remainder", "-7.0", "2.0")), 1.0);
  EXPECT_EQ(std::get<double>(fold("f64", "floordiv", "-7.0", "2.0")), -4.0);
  EXPECT_EQ(std::get<bool>(fold("i64", "lt", "3", "4")), true);
  EXPECT_EQ(std::get<bool>(fold("f32", "lt", "nan", "4.0")), false);
  EXPECT_TRUE(std::isnan(std::get<double>(fold("f32", "maximum", "nan", "4.0"))));  // NaN propagates

  // Integer division by zero is left for run time.
  std::string div0 = R"(graph() {
    %a = full() {dtype=i64, sizes=[3], value=1} : i64[3]
    %b = full() {dtype=i64, sizes=[3], value=0} : i64[3]
    %c = floordiv(%a, %b) : i64[3]
    return %c
  })";
  EXPECT_EQ(run(constant_fold, div0), canon(div0));
}

TEST(Passes, ConstantFoldCastsAndViewsOfSplats) {
  std::string in = R"(graph() symbols(s0) {
    %a = full() {dtype=f64, sizes=<[4,s0]>, value=2.5} : f64[4,s0]
    %b = cast(%a) {dtype=i32} : i32[4,s0]
    %c = permute(%b) {dims=[1,0]} : i32[s0,4]
    %d = cast(%a) {dtype=f32} : f32[4,s0]
    return %c, %d
  })";
  EXPECT_EQ(run(constant_fold, in), canon(R"(graph() symbols(s0) {
    %a = full() {dtype=f64, sizes=<[4,s0]>, value=2.5} : f64[4,s0]
    %b = full() {dtype=i32, sizes=<[4,s0]>, value=2} : i32[4,s0]
    %c = full() {dtype=i32, sizes=<[s0,4]>, value=2} : i32[s0,4]
    %d = full() {dtype=f32, sizes=<[4,s0]>, value=2.5} : f32[4,s0]
    return %c, %d
  })"));
  // NaN has no integer value: the cast stays.
  std::string nan_cast = R"(graph() {
    %a = full() {dtype=f32, sizes=[2], value=nan} : f32[2]
    %b = cast(%a) {dtype=i64} : i64[2]
    return %b
  })";
  EXPECT_EQ(run(constant_fold, nan_cast), canon(nan_cast));
}

TEST(Passes, ConstantFoldAppliesOnlyExactIdentities) {
  std::string in = R"(graph(%x: f32[4], %c: bool[4]) {
    %one = full() {dtype=f32, sizes=[4], value=1.0} : f32[4]
    %pz = full() {dtype=f32, sizes=[4], value=0.0} : f32[4]
    %nz = full() {dtype=f32, sizes=[4], value=-0.0} : f32[4]
    %t = full() {dtype=bool, sizes=[4], value=true} : bool[4]
    %a = mul(%one, %x) : f32[4]
    %b = div(%x, %one) : f32[4]
    %d = add(%x, %nz) : f32[4]
    %e = sub(%x, %pz) : f32[4]
    %f = cast(%x) {dtype=f32} : f32[4]
    %g = where(%t, %x, %one) : f32[4]
    %keep1 = add(%x, %pz) : f32[4]
    %keep2 = div(%one, %x) : f32[4]
    %keep3 = where(%c, %x, %one) : f32[4]
    return %a, %b, %d, %e, %f, %g, %keep1, %keep2, %keep3
  })";
  // -0.0 + 0.0 is +0.0, so x + 0.0 is not x; x + (-0.0) and x - 0.0 are.
  EXPECT_EQ(run(constant_fold, in), canon(R"(graph(%x: f32[4], %c: bool[4]) {
    %one = full() {dtype=f32, sizes=[4], value=1.0} : f32[4]
    %pz = full() {dtype=f32, sizes=[4], value=0.0} : f32[4]
    %nz = full() {dtype=f32, sizes=[4], value=-0.0} : f32[4]
    %t = full() {dtype=bool, sizes=[4], value=true} : bool[4]
    %keep1 = add(%x, %pz) : f32[4]
    %keep2 = div(%one, %x) : f32[4]
    %keep3 = where(%c, %x, %one) : f32[4]
    return %x, %x, %x, %x, %x, %x, %keep1, %keep2, %keep3
  })"));
}

// ---- simplify-views ----

TEST(Passes, SimplifyViewsDropsIdentities) {
  std::string in = R"(graph(%x: f32[4,s0]) symbols(s0) {
    %a = reshape(%x) {sizes=<[4,s0]>} : f32[4,s0]
    %b = permute(%a) {dims=[0,1]} : f32[4,s0]
    %c = slice(%b) {dim=1, length=<s0>, start=0, step=1} : f32[4,s0]
    %d = expand(%c) {sizes=<[4,s0]>} : f32[4,s0]
    %e = slice(%d) {dim=1, length=<s0-1>, start=1, step=1} : f32[4,s0-1]
    %f = slice(%d) {dim=1, length=<s0>, start=0, step=2} : f32[4,s0]
    return %d, %e
  })";
  EXPECT_EQ(run(simplify_views, in), canon(R"(graph(%x: f32[4,s0]) symbols(s0) {
    %e = slice(%x) {dim=1, length=<s0-1>, start=1, step=1} : f32[4,s0-1]
    %f = slice(%x) {dim=1, length=<s0>, start=0, step=2} : f32[4,s0]
    return %x, %e
  })"));
}

TEST(Passes, SimplifyViewsComposesChains) {
  std::string in = R"(graph(%x: f32[2,3,4], %y: f32[1,4]) {
    %a = reshape(%x) {sizes=[6,4]} : f32[6,4]
    %b = reshape(%a) {sizes=[24]} : f32[24]
    %c = reshape(%b) {sizes=[4,6]} : f32[4,6]
    %p = permute(%x) {dims=[2,0,1]} : f32[4,2,3]
    %q = permute(%p) {dims=[0,2,1]} : f32[4,3,2]
    %r = permute(%q) {dims=[2,1,0]} : f32[2,3,4]
    %e = expand(%y) {sizes=[1,4]} : f32[1,4]
    %f = expand(%y) {sizes=[3,4]} : f32[3,4]
    %g = expand(%f) {sizes=[3,4]} : f32[3,4]
    return %c, %q, %r, %g, %e
  })";
  // Dead intermediate views stay for dce; %r composes back to the identity.
  EXPECT_EQ(run(simplify_views, in), canon(R"(graph(%x: f32[2,3,4], %y: f32[1,4]) {
    %a = reshape(%x) {sizes=[6,4]} : f32[6,4]
    %b = reshape(%x) {sizes=[24]} : f32[24]
    %c = reshape(%x) {sizes=[4,6]} : f32[4,6]
    %p = permute(%x) {dims=[2,0,1]} : f32[4,2,3]
    %q = permute(%x) {dims=[2,1,0]} : f32[4,3,2]
    %f = expand(%y) {sizes=[3,4]} : f32[3,4]
    return %c, %q, %x, %f, %y
  })"));
}

// ---- simplify, registry, pipeline ----

TEST(Passes, SimplifyReachesAFixpoint) {
  std::string in = R"(graph(%x: f32[2,3]) {
    %one = full() {dtype=f32, sizes=[3,2], value=1.0} : f32[3,2]
    %ones = permute(%one) {dims=[1,0]} : f32[2,3]
    %a = mul(%x, %ones) : f32[2,3]
    %b = reshape(%a) {sizes=[6]} : f32[6]
    %c = reshape(%b) {sizes=[2,3]} : f32[2,3]
    %d = exp(%c) : f32[2,3]
    %e = exp(%x) : f32[2,3]
    %f = add(%d, %e) : f32[2,3]
    return %f
  })";
  std::string want = canon(R"(graph(%x: f32[2,3]) {
    %d = exp(%x) : f32[2,3]
    %f = add(%d, %d) : f32[2,3]
    return %f
  })");
  EXPECT_EQ(run(simplify, in), want);
  EXPECT_EQ(run(simplify, want), want);
}

TEST(Passes, PassesKeepInputsOriginsAndSymbols) {
  std::string in = R"(graph(%x: f32[s0,s1] strides [1,s0] "x", %unused: i64[s1] "u") symbols(s0, s1) {
    %a = neg(%x) : f32[s0,s1]  # aten.neg.default neg
    return %a strides [1,s0]
  })";
  for (const PassInfo& p : all_passes()) EXPECT_EQ(run(p.run, in), canon(in)) << p.name;
}

TEST(Passes, RegistryKnowsEveryPass) {
  for (const char* name : {"dce", "cse", "constant-fold", "simplify-views", "simplify"})
    EXPECT_EQ(find_pass(name).name, name);
  EXPECT_THROW(find_pass("nope"), UserError);
}

TEST(Passes, PipelineVerifiesAndDumpsAfterEachPass) {
  Graph g = parse_graph(R"(graph(%x: f32[4]) {
    %a = neg(%x) : f32[4]
    %b = neg(%x) : f32[4]
    %c = add(%a, %b) : f32[4]
    %dead = exp(%x) : f32[4]
    return %c
  })");
  PipelineOptions opts;
  opts.passes = {"cse", "dce"};
  opts.verify_each = true;
  std::vector<std::string> seen;
  opts.dump = [&](const std::string& name, const Graph& after) {
    seen.push_back(name + ":" + std::to_string(after.nodes().size()));
  };
  Graph out = run_graph_pipeline(g, opts);
  EXPECT_EQ(seen, (std::vector<std::string>{"cse:3", "dce:2"}));
  EXPECT_EQ(out.nodes().size(), 2u);
  EXPECT_EQ(default_pipeline(), PipelineOptions{}.passes);

  opts.passes = {"cse", "no-such-pass"};
  seen.clear();
  EXPECT_THROW(run_graph_pipeline(g, opts), UserError);
  EXPECT_TRUE(seen.empty());  // names are checked before any pass runs
}

TEST(Passes, PipelineVerifiesItsInput) {
  Graph g = parse_graph("graph(%x: f32[4]) {\n  return %x\n}");
  PipelineOptions opts;
  opts.passes = {"dce"};
  opts.verify_each = true;
  Graph bad = g;
  bad.symbols.push_back("s0");
  bad.symbols.push_back("s0");  // declared twice
  try {
    run_graph_pipeline(bad, opts);
    ADD_FAILURE() << "accepted a malformed input";
  } catch (const InternalError& e) {
    EXPECT_NE(std::string(e.what()).find("before any pass"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kiln
