// parser.cpp — parse_graph: reads the text form print_graph writes (grammar in docs/ir.md).
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <set>
#include <unordered_map>

#include "kiln/ir/verifier.h"
#include "kiln/support/error.h"

namespace kiln {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

bool is_ident_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool is_ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.'; }

class Parser {
 public:
  explicit Parser(const std::string& text) : t_(text) {}

  Graph parse() {
    skip();
    keyword("graph");
    expect('(');
    if (!eat(')')) {
      do input();
      while (eat(','));
      expect(')');
    }
    if (eat_keyword("symbols")) symbols();
    check_pending_symbols();
    expect('{');
    while (!at_keyword("return")) {
      if (!at('%')) fail(p_, str_cat("expected a node ('%name = op(...) : type') or 'return', found ", found()));
      node();
    }
    keyword("return");
    if (!at('}')) {
      do output();
      while (eat(','));
    }
    expect('}');
    if (p_ != t_.size()) fail(p_, "expected the end of the input after the graph's '}'");
    try {
      verify_graph(g_);  // the checks above give positions; this is the backstop for anything they miss
    } catch (const InternalError& e) {
      fail(0, str_cat("invalid graph: ", e.what()));
    }
    return std::move(g_);
  }

 private:
  // ---- errors and positions ----
  [[noreturn]] void fail(size_t pos, const std::string& msg) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < pos && i < t_.size(); ++i) {
      if (t_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    throw UserError(str_cat(line, ":", col, ": ", msg));
  }
  std::string found() const {
    if (p_ >= t_.size()) return "the end of the input";
    size_t e = p_ + 1;
    while (e < t_.size() && is_ident_char(t_[e]) && is_ident_char(t_[p_])) ++e;
    return "'" + t_.substr(p_, e - p_) + "'";
  }

  // ---- lexing: whitespace and `//` comments separate tokens; sizes, strings and origins are read raw ----
  void skip() {
    for (;;) {
      while (p_ < t_.size() && std::isspace(static_cast<unsigned char>(t_[p_]))) ++p_;
      if (t_.compare(p_, 2, "//") != 0) return;
      while (p_ < t_.size() && t_[p_] != '\n') ++p_;
    }
  }
  bool at(char c) const { return p_ < t_.size() && t_[p_] == c; }
  bool eat(char c) {
    if (!at(c)) return false;
    ++p_;
    skip();
    return true;
  }
  void expect(char c) {
    if (!eat(c)) fail(p_, str_cat("expected '", c, "', found ", found()));
  }
  bool at_keyword(const char* kw) const {
    size_t n = std::char_traits<char>::length(kw);
    return t_.compare(p_, n, kw) == 0 && (p_ + n == t_.size() || !is_ident_char(t_[p_ + n]));
  }
  bool eat_keyword(const char* kw) {
    if (!at_keyword(kw)) return false;
    p_ += std::char_traits<char>::length(kw);
    skip();
    return true;
  }
  void keyword(const char* kw) {
    if (!eat_keyword(kw)) fail(p_, str_cat("expected '", kw, "', found ", found()));
  }
  std::string ident(const char* what) {
    if (p_ >= t_.size() || !is_ident_start(t_[p_])) fail(p_, str_cat("expected ", what, ", found ", found()));
    size_t b = p_;
    while (p_ < t_.size() && is_ident_char(t_[p_])) ++p_;
    std::string s = t_.substr(b, p_ - b);
    skip();
    return s;
  }
  std::string string_literal() {
    size_t start = p_;
    expect_raw('"');
    std::string s;
    for (;;) {
      if (p_ >= t_.size() || t_[p_] == '\n') fail(start, "unterminated string");
      char c = t_[p_++];
      if (c == '"') break;
      if (c != '\\') {
        s += c;
        continue;
      }
      if (p_ >= t_.size()) fail(start, "unterminated string");
      char e = t_[p_++];
      switch (e) {
        case 'n': s += '\n'; break;
        case 'r': s += '\r'; break;
        case 't': s += '\t'; break;
        case '"':
        case '\\': s += e; break;
        default: fail(p_ - 2, str_cat("unknown escape '\\", e, "' in string"));
      }
    }
    skip();
    return s;
  }
  void expect_raw(char c) {
    if (!at(c)) fail(p_, str_cat("expected '", c, "', found ", found()));
    ++p_;
  }
  // The text up to `close` (exclusive), consumed with it; sizes never contain brackets or '>'.
  std::pair<size_t, std::string> raw_until(char close) {
    size_t b = p_;
    size_t e = t_.find(close, p_);
    if (e == std::string::npos) fail(b, str_cat("missing '", close, "'"));
    p_ = e + 1;
    line_end_from_ = p_;
    skip();
    return {b, t_.substr(b, e - b)};
  }

  // ---- sizes ----
  SymExpr sym_at(size_t pos, const std::string& text) {
    try {
      SymExpr e = parse_sym_expr(text);
      note_symbols(pos, {e});
      return e;
    } catch (const UserError& err) {
      fail(pos, err.what());
    }
  }
  // "a, b, min(c,d)" → its size expressions, split at top-level commas.
  std::vector<SymExpr> sym_items(size_t pos, const std::string& body) {
    std::vector<SymExpr> out;
    if (body.find_first_not_of(" \t\r\n") == std::string::npos) return out;
    int depth = 0;
    size_t b = 0;
    for (size_t i = 0; i <= body.size(); ++i) {
      if (i == body.size() || (body[i] == ',' && depth == 0)) {
        out.push_back(sym_at(pos + b, body.substr(b, i - b)));
        b = i + 1;
      } else if (body[i] == '(') {
        ++depth;
      } else if (body[i] == ')') {
        --depth;
      }
    }
    return out;
  }
  std::vector<SymExpr> size_list() {
    expect_raw('[');
    auto [pos, body] = raw_until(']');
    return sym_items(pos, body);
  }
  TensorType type() {
    size_t pos = p_;
    std::string name = ident("a dtype");
    TensorType t;
    try {
      t.dtype = dtype_from_name(name);
    } catch (const UserError& e) {
      fail(pos, e.what());
    }
    t.sizes = size_list();
    return t;
  }
  std::vector<SymExpr> strides_or_contiguous(const TensorType& t) {
    if (!eat_keyword("strides")) return contiguous_strides(t.sizes);
    size_t pos = p_;
    auto s = size_list();
    if (s.size() != t.sizes.size()) fail(pos, str_cat("strides ", to_string(s), " do not match the rank of ", t.str()));
    return s;
  }

  // Symbols are declared after the inputs that use them, so uses are checked once the header is read.
  void note_symbols(size_t pos, const std::vector<SymExpr>& exprs) {
    std::set<std::string> used;
    collect_symbols(exprs, used);
    for (const auto& s : used) pending_.push_back({pos, s});
    if (header_done_) check_pending_symbols();
  }
  void check_pending_symbols() {
    header_done_ = true;
    std::set<std::string> declared(g_.symbols.begin(), g_.symbols.end());
    for (const auto& [pos, s] : pending_)
      if (!declared.count(s)) fail(pos, str_cat("symbol '", s, "' is not declared in the graph's symbols(...)"));
    pending_.clear();
  }
  void symbols() {
    expect('(');
    if (eat(')')) return;
    do {
      size_t pos = p_;
      std::string s = ident("a symbol name");
      for (const auto& d : g_.symbols)
        if (d == s) fail(pos, str_cat("symbol '", s, "' is declared twice"));
      g_.symbols.push_back(s);
    } while (eat(','));
    expect(')');
  }

  // ---- values ----
  std::string value_name() {
    expect_raw('%');
    size_t b = p_;
    while (p_ < t_.size() && is_ident_char(t_[p_])) ++p_;
    if (p_ == b) fail(b, "expected a value name after '%'");
    std::string s = t_.substr(b, p_ - b);
    skip();
    return s;
  }
  void define(size_t pos, const std::string& name, ValueId v) {
    if (!names_.emplace(name, v).second) fail(pos, str_cat("value %", name, " is defined twice"));
  }
  ValueId use() {
    size_t pos = p_;
    std::string name = value_name();
    auto it = names_.find(name);
    if (it == names_.end()) fail(pos, str_cat("value %", name, " is not defined (values must be defined before use)"));
    return it->second;
  }

  void input() {
    size_t pos = p_;
    std::string name = value_name();
    expect(':');
    TensorType t = type();
    auto strides = strides_or_contiguous(t);
    std::string label = at('"') ? string_literal() : "";
    define(pos, name, g_.add_input(std::move(t), std::move(strides), std::move(label)));
  }
  void output() {
    ValueId v = use();
    g_.add_output(v, strides_or_contiguous(g_.type(v)));
  }

  // ---- attributes ----
  Attr number() {
    size_t b = p_;
    if (at('-')) ++p_;
    if (at_keyword("inf")) {
      p_ += 3;
      skip();
      return t_[b] == '-' ? -kInf : kInf;
    }
    while (p_ < t_.size() && (std::isalnum(static_cast<unsigned char>(t_[p_])) || t_[p_] == '.' ||
                              ((t_[p_] == '-' || t_[p_] == '+') && (t_[p_ - 1] == 'e' || t_[p_ - 1] == 'E'))))
      ++p_;
    std::string tok = t_.substr(b, p_ - b);
    skip();
    if (tok.find_first_of(".eE") != std::string::npos) {
      double d = 0;  // from_chars, unlike strtod, ignores the process's locale
      auto [ptr, ec] = std::from_chars(tok.data(), tok.data() + tok.size(), d);
      if (ec != std::errc() || ptr != tok.data() + tok.size()) fail(b, str_cat("bad number '", tok, "'"));
      return d;
    }
    int64_t v = 0;
    auto [ptr, ec] = std::from_chars(tok.data(), tok.data() + tok.size(), v);
    if (ec != std::errc() || ptr != tok.data() + tok.size()) fail(b, str_cat("bad integer '", tok, "'"));
    return v;
  }
  std::vector<int64_t> int_list() {
    expect('[');
    std::vector<int64_t> v;
    if (eat(']')) return v;
    do {
      size_t pos = p_;
      Attr a = number();
      if (!std::holds_alternative<int64_t>(a)) fail(pos, "expected an integer in an int list");
      v.push_back(std::get<int64_t>(a));
    } while (eat(','));
    expect(']');
    return v;
  }
  Attr attr_value() {
    if (at('"')) return string_literal();
    if (at('[')) return int_list();
    if (at('<')) {  // <size> or <[size, ...]>
      ++p_;
      auto [pos, body] = raw_until('>');
      size_t open = body.find_first_not_of(" \t");
      if (open != std::string::npos && body[open] == '[') {
        size_t close = body.find_last_not_of(" \t");
        if (body[close] != ']') fail(pos + close, "expected ']' before '>'");
        return sym_items(pos + open + 1, body.substr(open + 1, close - open - 1));
      }
      return sym_at(pos, body);
    }
    if (at('-') || (p_ < t_.size() && std::isdigit(static_cast<unsigned char>(t_[p_])))) return number();
    size_t pos = p_;
    std::string id = ident("an attribute value");
    if (id == "true" || id == "false") return id == "true";
    if (id == "inf") return kInf;
    if (id == "nan") return std::numeric_limits<double>::quiet_NaN();
    try {
      return dtype_from_name(id);
    } catch (const UserError&) {
      fail(pos, str_cat("unknown attribute value '", id, "'"));
    }
  }
  Attrs attrs() {
    Attrs a;
    if (!eat('{')) return a;
    if (eat('}')) return a;
    do {
      size_t pos = p_;
      std::string k = ident("an attribute name");
      expect('=');
      if (!a.emplace(k, attr_value()).second) fail(pos, str_cat("attribute '", k, "' is given twice"));
    } while (eat(','));
    expect('}');
    return a;
  }

  // ---- nodes ----
  // `# text` on the line the node ends on, to the end of that line, unescaping what the printer escaped.
  std::string origin() {
    if (!at('#') || t_.find('\n', line_end_from_) < p_) return "";
    ++p_;
    if (at(' ')) ++p_;
    std::string s;
    while (p_ < t_.size() && t_[p_] != '\n') {
      char c = t_[p_++];
      if (c == '\\' && p_ < t_.size() && (t_[p_] == '\\' || t_[p_] == 'n' || t_[p_] == 'r')) {
        char e = t_[p_++];
        s += e == 'n' ? '\n' : e == 'r' ? '\r' : '\\';
      } else {
        s += c;
      }
    }
    skip();
    return s;
  }
  void node() {
    size_t pos = p_;
    std::string name = value_name();
    expect('=');
    size_t op_pos = p_;
    std::string op_text = ident("an op name");
    std::optional<Op> op = op_from_name(op_text);
    if (!op) fail(op_pos, str_cat("unknown op '", op_text, "'"));
    expect('(');
    std::vector<ValueId> ins;
    if (!eat(')')) {
      do ins.push_back(use());
      while (eat(','));
      expect(')');
    }
    Attrs a = attrs();
    expect(':');
    size_t type_pos = p_;
    TensorType stated = type();
    std::string org = origin();

    const OpInfo& info = op_info(*op);
    if (info.arity >= 0 ? static_cast<int>(ins.size()) != info.arity : ins.empty())
      fail(op_pos, str_cat(info.name, " takes ", info.arity >= 0 ? std::to_string(info.arity) : "one or more",
                           " inputs, got ", ins.size()));
    if (std::string why = check_required_attrs(*op, a); !why.empty()) fail(op_pos, why);
    std::vector<TensorType> in_types;
    for (ValueId v : ins) in_types.push_back(g_.type(v));
    TensorType inferred;
    try {
      inferred = infer_type(*op, in_types, a);
    } catch (const std::exception& e) {
      fail(op_pos, e.what());
    }
    if (inferred != stated)
      fail(type_pos, str_cat("stated type ", stated.str(), " but ", info.name, " gives ", inferred.str()));
    define(pos, name, g_.add_node(*op, std::move(ins), std::move(a), std::move(stated), std::move(org)));
  }

  const std::string& t_;
  size_t p_ = 0;
  Graph g_;
  std::unordered_map<std::string, ValueId> names_;
  std::vector<std::pair<size_t, std::string>> pending_;  // (position, symbol) used before symbols(...)
  bool header_done_ = false;
  size_t line_end_from_ = 0;  // where the last raw token ended: an origin must follow on that line
};

}  // namespace

Graph parse_graph(const std::string& text) { return Parser(text).parse(); }

}  // namespace kiln
