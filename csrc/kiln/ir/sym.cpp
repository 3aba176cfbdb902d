// sym.cpp — construction-time simplification, printing, evaluation and parsing of SymExpr.
#include "kiln/ir/sym.h"

#include <algorithm>
#include <cctype>

#include "kiln/support/error.h"

namespace kiln {

struct SymNode {
  SymExpr::Kind kind;
  int64_t value = 0;
  std::string name;
  std::vector<SymExpr> args;
  std::string key;  // canonical text
};

namespace {

int64_t py_floordiv(int64_t a, int64_t b) {
  KILN_USER_CHECK(b != 0, "division by zero in a size expression");
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}
int64_t py_mod(int64_t a, int64_t b) { return a - py_floordiv(a, b) * b; }

// A sum term split into integer coefficient and the (non-constant) monomial; mono empty => constant.
struct Term {
  int64_t coef;
  std::optional<SymExpr> mono;
};

}  // namespace

struct SymBuilder {
  static SymExpr leaf_const(int64_t v) {
    auto n = std::make_shared<SymNode>();
    n->kind = SymExpr::Kind::Const;
    n->value = v;
    n->key = std::to_string(v);
    return SymExpr(std::move(n));
  }
  static SymExpr raw(SymExpr::Kind k, std::vector<SymExpr> args) {
    auto n = std::make_shared<SymNode>();
    n->kind = k;
    n->args = std::move(args);
    n->key = render(*n);
    return SymExpr(std::move(n));
  }
  static std::string render(const SymNode& n) {
    switch (n.kind) {
      case SymExpr::Kind::Const: return std::to_string(n.value);
      case SymExpr::Kind::Symbol: return n.name;
      case SymExpr::Kind::Add: {
        std::string s;
        for (size_t i = 0; i < n.args.size(); ++i) {
          const std::string& t = n.args[i].str();
          if (i > 0 && t[0] != '-') s += "+";
          s += t;
        }
        return s;
      }
      case SymExpr::Kind::Mul: {
        std::string s;
        for (size_t i = 0; i < n.args.size(); ++i) {
          if (i == 0 && n.args[0].is_const(-1)) {
            s += "-";
            continue;
          }
          if (!s.empty() && s != "-") s += "*";
          s += n.args[i].str();
        }
        return s;
      }
      case SymExpr::Kind::FloorDiv: return "(" + wrap(n.args[0]) + "//" + wrap(n.args[1]) + ")";
      case SymExpr::Kind::Mod: return "(" + wrap(n.args[0]) + "%" + wrap(n.args[1]) + ")";
      case SymExpr::Kind::Min: return "min(" + n.args[0].str() + "," + n.args[1].str() + ")";
      case SymExpr::Kind::Max: return "max(" + n.args[0].str() + "," + n.args[1].str() + ")";
    }
    return "?";
  }
  static std::string wrap(const SymExpr& e) {
    if (e.kind() == SymExpr::Kind::Add || e.kind() == SymExpr::Kind::Mul || (e.is_const() && e.const_value() < 0))
      return "(" + e.str() + ")";
    return e.str();
  }

  static Term split_term(const SymExpr& e) {
    if (e.is_const()) return {e.const_value(), std::nullopt};
    if (e.kind() == SymExpr::Kind::Mul && e.args()[0].is_const()) {
      std::vector<SymExpr> rest(e.args().begin() + 1, e.args().end());
      return {e.args()[0].const_value(), rest.size() == 1 ? rest[0] : raw(SymExpr::Kind::Mul, rest)};
    }
    return {1, e};
  }
  static SymExpr join_term(int64_t coef, const std::optional<SymExpr>& mono) {
    if (!mono || coef == 0) return leaf_const(coef);
    if (coef == 1) return *mono;
    std::vector<SymExpr> f{leaf_const(coef)};
    if (mono->kind() == SymExpr::Kind::Mul)
      f.insert(f.end(), mono->args().begin(), mono->args().end());
    else
      f.push_back(*mono);
    return raw(SymExpr::Kind::Mul, f);
  }

  static std::vector<Term> terms_of(const SymExpr& e) {
    std::vector<Term> out;
    if (e.kind() == SymExpr::Kind::Add)
      for (const auto& a : e.args()) out.push_back(split_term(a));
    else
      out.push_back(split_term(e));
    return out;
  }

  static SymExpr sum(const std::vector<Term>& terms) {
    std::map<std::string, std::pair<int64_t, SymExpr>> by_mono;
    int64_t constant = 0;
    for (const auto& t : terms) {
      if (!t.mono) {
        constant += t.coef;
        continue;
      }
      auto it = by_mono.find(t.mono->str());
      if (it == by_mono.end())
        by_mono.emplace(t.mono->str(), std::make_pair(t.coef, *t.mono));
      else
        it->second.first += t.coef;
    }
    // c * (x % n) + c*n * (x // n) == c * x (floor semantics, n > 0): what a reshape that splits a
    // dim and one that joins it again leave behind. Folding it keeps flat loop indices flat.
    for (auto& [k, cm] : by_mono) {
      const SymExpr& m = cm.second;
      if (cm.first == 0 || m.kind() != SymExpr::Kind::Mod || !m.args()[1].is_const() || m.args()[1].const_value() <= 0)
        continue;
      auto div = by_mono.find(raw(SymExpr::Kind::FloorDiv, {m.args()[0], m.args()[1]}).str());
      if (div == by_mono.end() || div->second.first != cm.first * m.args()[1].const_value()) continue;
      std::vector<Term> rest;
      for (auto& [k2, cm2] : by_mono)
        if (k2 != k && k2 != div->first && cm2.first != 0) rest.push_back({cm2.first, cm2.second});
      for (const auto& t : terms_of(m.args()[0])) rest.push_back({t.coef * cm.first, t.mono});
      if (constant != 0) rest.push_back({constant, std::nullopt});
      return sum(rest);
    }
    std::vector<SymExpr> out;
    for (auto& [k, cm] : by_mono)
      if (cm.first != 0) out.push_back(join_term(cm.first, cm.second));
    if (constant != 0 || out.empty()) out.push_back(leaf_const(constant));
    if (out.size() == 1) return out[0];
    return raw(SymExpr::Kind::Add, out);
  }

  static SymExpr add(const SymExpr& a, const SymExpr& b) {
    auto ta = terms_of(a), tb = terms_of(b);
    ta.insert(ta.end(), tb.begin(), tb.end());
    return sum(ta);
  }

  static SymExpr mul(const SymExpr& a, const SymExpr& b) {
    // Distribute over sums so that equal polynomials share one canonical form.
    if (a.kind() == SymExpr::Kind::Add || b.kind() == SymExpr::Kind::Add) {
      std::vector<Term> out;
      for (const auto& x : terms_of(a))
        for (const auto& y : terms_of(b)) {
          SymExpr p = mul_monomials(join_term(1, x.mono), join_term(1, y.mono));
          Term t = split_term(p);
          out.push_back({t.coef * x.coef * y.coef, t.mono});
        }
      return sum(out);
    }
    return mul_monomials(a, b);
  }
  static SymExpr mul_monomials(const SymExpr& a, const SymExpr& b) {
    int64_t coef = 1;
    std::vector<SymExpr> factors;
    for (const SymExpr* e : {&a, &b}) {
      if (e->is_const()) {
        coef *= e->const_value();
      } else if (e->kind() == SymExpr::Kind::Mul) {
        for (const auto& f : e->args())
          if (f.is_const())
            coef *= f.const_value();
          else
            factors.push_back(f);
      } else {
        factors.push_back(*e);
      }
    }
    if (coef == 0 || factors.empty()) return leaf_const(coef);
    std::sort(factors.begin(), factors.end());
    SymExpr mono = factors.size() == 1 ? factors[0] : raw(SymExpr::Kind::Mul, factors);
    return join_term(coef, mono);
  }

  static SymExpr floordiv(const SymExpr& a, const SymExpr& b) {
    if (b.is_const()) {
      int64_t c = b.const_value();
      KILN_USER_CHECK(c != 0, "division by zero in a size expression");
      if (a.is_const()) return leaf_const(py_floordiv(a.const_value(), c));
      if (c == 1) return a;
      if (c > 0) {
        // (q*c + r) // c == q + r // c for floor division: pull out the divisible terms.
        std::vector<Term> whole, rest;
        for (const auto& t : terms_of(a)) {
          if (t.coef % c == 0)
            whole.push_back({t.coef / c, t.mono});
          else
            rest.push_back(t);
        }
        if (!whole.empty()) {
          SymExpr w = sum(whole);
          if (rest.empty()) return w;
          return add(w, floordiv(sum(rest), b));
        }
        // (x // c1) // c2 == x // (c1*c2) for positive divisors.
        if (a.kind() == SymExpr::Kind::FloorDiv && a.args()[1].is_const() && a.args()[1].const_value() > 0)
          return floordiv(a.args()[0], leaf_const(a.args()[1].const_value() * c));
      }
    }
    if (a == b) return leaf_const(1);
    if (a.is_const(0)) return a;
    return raw(SymExpr::Kind::FloorDiv, {a, b});
  }

  static SymExpr mod(const SymExpr& a, const SymExpr& b) {
    if (b.is_const()) {
      int64_t c = b.const_value();
      KILN_USER_CHECK(c != 0, "modulo by zero in a size expression");
      if (a.is_const()) return leaf_const(py_mod(a.const_value(), c));
      if (c == 1 || c == -1) return leaf_const(0);
      if (c > 0) {
        std::vector<Term> rest;
        bool dropped = false;
        for (const auto& t : terms_of(a)) {
          if (t.coef % c == 0)
            dropped = true;
          else
            rest.push_back(t);
        }
        if (rest.empty()) return leaf_const(0);
        if (dropped) return mod(sum(rest), b);
        if (a.kind() == SymExpr::Kind::Mod && a.args()[1] == b) return a;
      }
    }
    if (a == b || a.is_const(0)) return leaf_const(0);
    return raw(SymExpr::Kind::Mod, {a, b});
  }

  static SymExpr minmax(SymExpr::Kind k, const SymExpr& a, const SymExpr& b) {
    if (a.is_const() && b.is_const()) {
      int64_t x = a.const_value(), y = b.const_value();
      return leaf_const(k == SymExpr::Kind::Min ? std::min(x, y) : std::max(x, y));
    }
    if (a == b) return a;
    return a < b ? raw(k, {a, b}) : raw(k, {b, a});
  }
};

SymExpr::SymExpr() : SymExpr(SymBuilder::leaf_const(0)) {}
SymExpr::SymExpr(int64_t value) : SymExpr(SymBuilder::leaf_const(value)) {}

SymExpr SymExpr::symbol(const std::string& name) {
  KILN_USER_CHECK(!name.empty() && (std::isalpha(static_cast<unsigned char>(name[0])) || name[0] == '_'),
                  "bad symbol name '", name, "'");
  auto n = std::make_shared<SymNode>();
  n->kind = Kind::Symbol;
  n->name = name;
  n->key = name;
  return SymExpr(std::move(n));
}

SymExpr::Kind SymExpr::kind() const { return node_->kind; }
int64_t SymExpr::const_value() const {
  KILN_CHECK(is_const(), "not a constant: ", str());
  return node_->value;
}
const std::string& SymExpr::symbol_name() const {
  KILN_CHECK(kind() == Kind::Symbol);
  return node_->name;
}
const std::vector<SymExpr>& SymExpr::args() const { return node_->args; }
const std::string& SymExpr::str() const { return node_->key; }

std::optional<int64_t> SymExpr::try_eval(const SymBindings& env) const {
  switch (kind()) {
    case Kind::Const: return node_->value;
    case Kind::Symbol: {
      auto it = env.find(node_->name);
      if (it == env.end()) return std::nullopt;
      return it->second;
    }
    default: break;
  }
  std::vector<int64_t> v;
  for (const auto& a : args()) {
    auto x = a.try_eval(env);
    if (!x) return std::nullopt;
    v.push_back(*x);
  }
  switch (kind()) {
    case Kind::Add: {
      int64_t s = 0;
      for (auto x : v) s += x;
      return s;
    }
    case Kind::Mul: {
      int64_t p = 1;
      for (auto x : v) p *= x;
      return p;
    }
    case Kind::FloorDiv: return py_floordiv(v[0], v[1]);
    case Kind::Mod: return py_mod(v[0], v[1]);
    case Kind::Min: return std::min(v[0], v[1]);
    case Kind::Max: return std::max(v[0], v[1]);
    default: break;
  }
  throw InternalError("bad SymExpr kind");
}

int64_t SymExpr::eval(const SymBindings& env) const {
  auto v = try_eval(env);
  if (!v) throw UserError(str_cat("size expression '", str(), "' has an unbound symbol"));
  return *v;
}

void SymExpr::collect_symbols(std::set<std::string>& out) const {
  if (kind() == Kind::Symbol) out.insert(node_->name);
  for (const auto& a : args()) a.collect_symbols(out);
}

SymExpr SymExpr::substitute(const std::function<std::optional<SymExpr>(const std::string&)>& f) const {
  switch (kind()) {
    case Kind::Const: return *this;
    case Kind::Symbol: {
      auto r = f(node_->name);
      return r ? *r : *this;
    }
    default: break;
  }
  std::vector<SymExpr> a;
  for (const auto& x : args()) a.push_back(x.substitute(f));
  return make(kind(), std::move(a));
}

SymExpr SymExpr::make(Kind k, std::vector<SymExpr> a) {
  switch (k) {
    case Kind::Add: {
      SymExpr s(0);
      for (const auto& x : a) s = s + x;
      return s;
    }
    case Kind::Mul: {
      SymExpr p(1);
      for (const auto& x : a) p = p * x;
      return p;
    }
    case Kind::FloorDiv: return floordiv(a[0], a[1]);
    case Kind::Mod: return mod(a[0], a[1]);
    case Kind::Min: return sym_min(a[0], a[1]);
    case Kind::Max: return sym_max(a[0], a[1]);
    default: break;
  }
  throw InternalError("SymExpr::make on a leaf");
}

std::string SymExpr::to_c(const std::function<std::string(const std::string&)>& name) const {
  auto paren = [&](const SymExpr& e) { return "(" + e.to_c(name) + ")"; };
  switch (kind()) {
    case Kind::Const:
      return node_->value < 0 ? "(" + std::to_string(node_->value) + "L)" : std::to_string(node_->value) + "L";
    case Kind::Symbol: return name ? name(node_->name) : node_->name;
    case Kind::Add: {
      std::string s;
      for (size_t i = 0; i < args().size(); ++i) s += (i ? " + " : "") + args()[i].to_c(name);
      return s;
    }
    case Kind::Mul: {
      std::string s;
      for (size_t i = 0; i < args().size(); ++i) {
        const auto& f = args()[i];
        s += (i ? "*" : "") + (f.kind() == Kind::Add ? paren(f) : f.to_c(name));
      }
      return s;
    }
    // Sizes and indices are non-negative, where C's truncating division equals floor division.
    case Kind::FloorDiv: return "(" + paren(args()[0]) + " / " + paren(args()[1]) + ")";
    case Kind::Mod: return "(" + paren(args()[0]) + " % " + paren(args()[1]) + ")";
    // Plain conditionals: generated code includes no standard header for std::min/max.
    case Kind::Min:
      return "(" + paren(args()[0]) + " < " + paren(args()[1]) + " ? " + paren(args()[0]) + " : " + paren(args()[1]) +
             ")";
    case Kind::Max:
      return "(" + paren(args()[0]) + " > " + paren(args()[1]) + " ? " + paren(args()[0]) + " : " + paren(args()[1]) +
             ")";
  }
  return "?";
}

SymExpr operator+(const SymExpr& a, const SymExpr& b) {
  if (a.is_const() && b.is_const()) return SymExpr(a.const_value() + b.const_value());
  return SymBuilder::add(a, b);
}
SymExpr operator-(const SymExpr& a) { return SymBuilder::mul(SymExpr(-1), a); }
SymExpr operator-(const SymExpr& a, const SymExpr& b) { return a + (-b); }
SymExpr operator*(const SymExpr& a, const SymExpr& b) {
  if (a.is_const() && b.is_const()) return SymExpr(a.const_value() * b.const_value());
  return SymBuilder::mul(a, b);
}
SymExpr floordiv(const SymExpr& a, const SymExpr& b) { return SymBuilder::floordiv(a, b); }
SymExpr mod(const SymExpr& a, const SymExpr& b) { return SymBuilder::mod(a, b); }
SymExpr sym_min(const SymExpr& a, const SymExpr& b) { return SymBuilder::minmax(SymExpr::Kind::Min, a, b); }
SymExpr sym_max(const SymExpr& a, const SymExpr& b) { return SymBuilder::minmax(SymExpr::Kind::Max, a, b); }

SymExpr product(const std::vector<SymExpr>& sizes) {
  SymExpr p(1);
  for (const auto& s : sizes) p = p * s;
  return p;
}

std::vector<SymExpr> contiguous_strides(const std::vector<SymExpr>& sizes) {
  std::vector<SymExpr> st(sizes.size());
  SymExpr acc(1);
  for (size_t i = sizes.size(); i-- > 0;) {
    st[i] = acc;
    acc = acc * sizes[i];
  }
  return st;
}

std::string to_string(const std::vector<SymExpr>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + v[i].str();
  return s + "]";
}

// ---- parser --------------------------------------------------------------------------------------
namespace {
class SymParser {
 public:
  explicit SymParser(const std::string& t) : t_(t) {}
  SymExpr parse() {
    SymExpr e = expr();
    skip();
    KILN_USER_CHECK(p_ == t_.size(), "unexpected '", t_.substr(p_), "' in size expression '", t_, "'");
    return e;
  }

 private:
  void skip() {
    while (p_ < t_.size() && std::isspace(static_cast<unsigned char>(t_[p_]))) ++p_;
  }
  bool eat(const char* s) {
    skip();
    size_t n = std::char_traits<char>::length(s);
    if (t_.compare(p_, n, s) == 0) {
      p_ += n;
      return true;
    }
    return false;
  }
  SymExpr expr() {
    SymExpr e = term();
    for (;;) {
      if (eat("+"))
        e = e + term();
      else if (eat("-"))
        e = e - term();
      else
        return e;
    }
  }
  SymExpr term() {
    SymExpr e = unary();
    for (;;) {
      if (eat("//"))
        e = floordiv(e, unary());
      else if (eat("*"))
        e = e * unary();
      else if (eat("%"))
        e = mod(e, unary());
      else
        return e;
    }
  }
  SymExpr unary() {
    if (eat("-")) return -unary();
    return atom();
  }
  SymExpr atom() {
    skip();
    KILN_USER_CHECK(p_ < t_.size(), "size expression '", t_, "' ends early");
    char c = t_[p_];
    if (eat("(")) {
      SymExpr e = expr();
      KILN_USER_CHECK(eat(")"), "missing ')' in size expression '", t_, "'");
      return e;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) {
      int64_t v = 0;
      while (p_ < t_.size() && std::isdigit(static_cast<unsigned char>(t_[p_]))) v = v * 10 + (t_[p_++] - '0');
      return SymExpr(v);
    }
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t b = p_;
      while (p_ < t_.size() && (std::isalnum(static_cast<unsigned char>(t_[p_])) || t_[p_] == '_')) ++p_;
      std::string id = t_.substr(b, p_ - b);
      if ((id == "min" || id == "max") && eat("(")) {
        SymExpr a = expr();
        KILN_USER_CHECK(eat(","), "expected ',' in ", id, "() in '", t_, "'");
        SymExpr b2 = expr();
        KILN_USER_CHECK(eat(")"), "missing ')' in '", t_, "'");
        return id == "min" ? sym_min(a, b2) : sym_max(a, b2);
      }
      return SymExpr::symbol(id);
    }
    throw UserError(str_cat("unexpected '", std::string(1, c), "' in size expression '", t_, "'"));
  }
  const std::string& t_;
  size_t p_ = 0;
};
}  // namespace

SymExpr parse_sym_expr(const std::string& text) { return SymParser(text).parse(); }

}  // namespace kiln
