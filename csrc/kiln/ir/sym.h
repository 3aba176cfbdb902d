// sym.h — symbolic integer expressions for sizes, strides and loop indices (s0*64, (i0//8)%4, ...).
//
// Expressions are immutable and simplified on construction into a canonical form (sums of
// coefficient*monomial with sorted terms), so structurally equal sizes compare equal and print
// identically: 64*s0 == s0*64. FloorDiv and Mod follow Python's floor semantics.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace kiln {

class SymExpr;
struct SymNode;
using SymBindings = std::map<std::string, int64_t>;

class SymExpr {
 public:
  enum class Kind : uint8_t { Const, Symbol, Add, Mul, FloorDiv, Mod, Min, Max };

  SymExpr();               // the constant 0
  SymExpr(int64_t value);  // NOLINT: implicit so sizes read naturally (x.sizes = {4, s0})
  static SymExpr symbol(const std::string& name);

  Kind kind() const;
  bool is_const() const { return kind() == Kind::Const; }
  bool is_const(int64_t v) const { return is_const() && const_value() == v; }
  int64_t const_value() const;             // requires is_const()
  const std::string& symbol_name() const;  // requires kind() == Symbol
  const std::vector<SymExpr>& args() const;

  // The canonical text form, e.g. "64*s0+1", "(s0//2)", "min(s0,4)". Also the identity key.
  const std::string& str() const;
  bool operator==(const SymExpr& o) const { return str() == o.str(); }
  bool operator!=(const SymExpr& o) const { return !(*this == o); }
  bool operator<(const SymExpr& o) const { return str() < o.str(); }

  int64_t eval(const SymBindings& env) const;  // throws UserError for an unbound symbol
  std::optional<int64_t> try_eval(const SymBindings& env) const;
  void collect_symbols(std::set<std::string>& out) const;
  // Replaces symbols for which `f` returns a value, re-simplifying.
  SymExpr substitute(const std::function<std::optional<SymExpr>(const std::string&)>& f) const;
  // C expression text; symbols are printed through `name` (default: as is).
  std::string to_c(const std::function<std::string(const std::string&)>& name = {}) const;

  friend SymExpr operator+(const SymExpr& a, const SymExpr& b);
  friend SymExpr operator-(const SymExpr& a, const SymExpr& b);
  friend SymExpr operator*(const SymExpr& a, const SymExpr& b);
  friend SymExpr operator-(const SymExpr& a);
  friend SymExpr floordiv(const SymExpr& a, const SymExpr& b);
  friend SymExpr mod(const SymExpr& a, const SymExpr& b);
  friend SymExpr sym_min(const SymExpr& a, const SymExpr& b);
  friend SymExpr sym_max(const SymExpr& a, const SymExpr& b);

 private:
  explicit SymExpr(std::shared_ptr<const SymNode> n) : node_(std::move(n)) {}
  static SymExpr make(Kind k, std::vector<SymExpr> args);
  std::shared_ptr<const SymNode> node_;
  friend struct SymBuilder;
};

SymExpr floordiv(const SymExpr& a, const SymExpr& b);
SymExpr mod(const SymExpr& a, const SymExpr& b);
SymExpr sym_min(const SymExpr& a, const SymExpr& b);
SymExpr sym_max(const SymExpr& a, const SymExpr& b);

// Product of sizes (numel); contiguous row-major strides for sizes.
SymExpr product(const std::vector<SymExpr>& sizes);
std::vector<SymExpr> contiguous_strides(const std::vector<SymExpr>& sizes);
std::string to_string(const std::vector<SymExpr>& v);  // "[4,s0]"

// Parses the text form ("64*s0+1", "(s0//2)%3", "min(s0,4)", "-2*s1"). Throws UserError.
SymExpr parse_sym_expr(const std::string& text);

}  // namespace kiln
