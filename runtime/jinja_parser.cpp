// Jinja parser: tokens to syntax tree, following jinja2's grammar (see
// jinja2/parser.py for the reference behaviour) for the statements and
// expressions that chat templates use.
#include <algorithm>

#include "runtime/jinja_builtins.h"
#include "runtime/jinja_syntax.h"

namespace llm::jinja {
namespace {

using EType = Expr::Type;

std::string describe(const Token &t) {
  switch (t.type) {
    case Tok::Data: return "template data";
    case Tok::VarBegin: return "'{{'";
    case Tok::VarEnd: return "end of print statement";
    case Tok::BlockBegin: return "'{%'";
    case Tok::BlockEnd: return "end of statement block";
    case Tok::Name:
    case Tok::Op: return "'" + t.text + "'";
    case Tok::String: return "string";
    case Tok::Int: return "integer";
    case Tok::Float: return "float";
    case Tok::Eof: return "end of template";
  }
  return "token";
}

bool contains(std::initializer_list<const char *> names, const std::string &s) {
  return std::any_of(names.begin(), names.end(), [&](const char *n) { return s == n; });
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : toks_(std::move(tokens)) {}

  std::unique_ptr<Template> parse() {
    auto t = std::make_unique<Template>();
    t->body = subparse({});
    return t;
  }

 private:
  // ---- token access -------------------------------------------------------------

  const Token &cur() const { return toks_[pos_]; }
  const Token &peek() const { return toks_[std::min(pos_ + 1, toks_.size() - 1)]; }
  void advance() {
    if (pos_ + 1 < toks_.size()) ++pos_;
  }
  bool is_op(const char *op) const { return cur().type == Tok::Op && cur().text == op; }
  bool is_name(const char *name) const { return cur().type == Tok::Name && cur().text == name; }
  bool skip_op(const char *op) {
    if (!is_op(op)) return false;
    advance();
    return true;
  }
  bool skip_name(const char *name) {
    if (!is_name(name)) return false;
    advance();
    return true;
  }

  [[noreturn]] void error(const std::string &msg) const {
    fail_template("syntax error on line " + std::to_string(cur().line) + ": " + msg);
  }
  [[noreturn]] void unexpected() const { error("unexpected " + describe(cur())); }

  void expect_op(const char *op) {
    if (!skip_op(op)) error(std::string("expected '") + op + "', got " + describe(cur()));
  }
  std::string expect_name() {
    if (cur().type != Tok::Name) error("expected a name, got " + describe(cur()));
    std::string n = cur().text;
    advance();
    return n;
  }
  void expect_block_end() {
    if (cur().type != Tok::BlockEnd) error("expected end of statement block, got " + describe(cur()));
    advance();
  }

  // Bounds the recursion of the parser itself.
  struct Nest {
    explicit Nest(Parser &p) : p_(p) {
      if (++p_.nesting_ > kMaxParseNesting) fail_unsupported("a template nested more than 64 levels deep");
    }
    ~Nest() { --p_.nesting_; }
    Parser &p_;
  };

  ExprPtr node(EType type, int line, std::vector<ExprPtr> kids = {}) {
    auto e = std::make_unique<Expr>();
    e->type = type;
    e->line = line;
    for (const auto &k : kids)
      if (k) e->depth = std::max(e->depth, k->depth + 1);
    if (e->depth > kMaxExprDepth) fail_unsupported("an expression nested more than 96 levels deep");
    e->kids = std::move(kids);
    return e;
  }
  // Recomputes depth after kids were appended.
  ExprPtr finish(ExprPtr e) {
    for (const auto &k : e->kids)
      if (k) e->depth = std::max(e->depth, k->depth + 1);
    if (e->depth > kMaxExprDepth) fail_unsupported("an expression nested more than 96 levels deep");
    return e;
  }

  // ---- statements -----------------------------------------------------------------

  // Parses until a block tag named in `end_tags`; returns with that name as the
  // current token.
  Body subparse(std::initializer_list<const char *> end_tags) {
    Nest nest(*this);
    Body body;
    while (true) {
      const Token &t = cur();
      if (t.type == Tok::Eof) {
        if (end_tags.size() != 0)
          error(std::string("unexpected end of template, expected '") + *end_tags.begin() + "'");
        return body;
      }
      if (t.type == Tok::Data) {
        auto s = std::make_unique<Stmt>();
        s->type = Stmt::Type::Text;
        s->line = t.line;
        s->text = t.text;
        body.push_back(std::move(s));
        advance();
      } else if (t.type == Tok::VarBegin) {
        auto s = std::make_unique<Stmt>();
        s->type = Stmt::Type::Print;
        s->line = t.line;
        advance();
        s->expr = parse_tuple(true, {}, false);
        if (cur().type != Tok::VarEnd) unexpected();
        advance();
        body.push_back(std::move(s));
      } else if (t.type == Tok::BlockBegin) {
        advance();
        if (cur().type != Tok::Name) error("tag name expected");
        if (contains(end_tags, cur().text)) return body;
        body.push_back(parse_statement());
      } else {
        unexpected();
      }
    }
  }

  std::unique_ptr<Stmt> parse_statement() {
    std::string tag = cur().text;
    int line = cur().line;
    advance();
    std::unique_ptr<Stmt> s;
    if (tag == "if") s = parse_if();
    else if (tag == "for") s = parse_for();
    else if (tag == "set") s = parse_set();
    else if (tag == "macro") s = parse_macro();
    else if (tag == "with") s = parse_with();
    else if (tag == "filter") s = parse_filter_block();
    else if (tag == "generation") s = parse_generation();
    else if (tag == "break" || tag == "continue") s = parse_loop_control(tag);
    else if (contains({"block", "extends", "include", "import", "from", "call", "autoescape", "trans"}, tag))
      fail_unsupported("the {% " + tag + " %} tag");
    else
      error("encountered unknown tag '" + tag + "'");
    s->line = line;
    return s;
  }

  // Consumes `{% name %}` whose name subparse stopped at.
  void end_tag() {
    advance();
    expect_block_end();
  }

  std::unique_ptr<Stmt> new_stmt(Stmt::Type type) {
    auto s = std::make_unique<Stmt>();
    s->type = type;
    return s;
  }

  std::unique_ptr<Stmt> parse_if() {
    auto s = new_stmt(Stmt::Type::If);
    ExprPtr cond = parse_tuple(false, {}, false);
    while (true) {
      expect_block_end();
      Body body = subparse({"elif", "else", "endif"});
      s->branches.emplace_back(std::move(cond), std::move(body));
      std::string tag = cur().text;
      advance();
      if (tag == "elif") {
        cond = parse_tuple(false, {}, false);
        continue;
      }
      if (tag == "else") {
        expect_block_end();
        s->else_body = subparse({"endif"});
        end_tag();
      } else {
        expect_block_end();
      }
      return s;
    }
  }

  std::unique_ptr<Stmt> parse_for() {
    auto s = new_stmt(Stmt::Type::For);
    s->target = parse_target({"in"});
    if (!skip_name("in")) error("expected 'in', got " + describe(cur()));
    s->expr = parse_tuple(false, {"recursive"}, false);
    if (skip_name("if")) s->cond = parse_expression(true);
    if (is_name("recursive")) fail_unsupported("recursive for loops");
    expect_block_end();
    ++loop_depth_;
    s->body = subparse({"endfor", "else"});
    --loop_depth_;
    if (cur().text == "else") {
      end_tag();
      s->else_body = subparse({"endfor"});
    }
    end_tag();
    return s;
  }

  std::unique_ptr<Stmt> parse_set() {
    if (cur().type == Tok::Name && peek().type == Tok::Op && peek().text == ".") {
      auto s = new_stmt(Stmt::Type::SetAttr);
      s->text = expect_name();
      advance();
      s->attr = expect_name();
      expect_op("=");
      s->expr = parse_tuple(true, {}, false);
      expect_block_end();
      return s;
    }
    Target target = parse_target({});
    if (skip_op("=")) {
      auto s = new_stmt(Stmt::Type::Set);
      s->target = std::move(target);
      s->expr = parse_tuple(true, {}, false);
      expect_block_end();
      return s;
    }
    if (target.is_tuple) error("a block assignment takes a single name");
    auto s = new_stmt(Stmt::Type::SetBlock);
    s->text = target.name;
    if (is_op("|")) s->filter = parse_filter(nullptr, false);
    expect_block_end();
    s->body = subparse({"endset"});
    end_tag();
    return s;
  }

  std::unique_ptr<Stmt> parse_macro() {
    auto s = new_stmt(Stmt::Type::Macro);
    s->text = expect_name();
    expect_op("(");
    while (!is_op(")")) {
      if (!s->params.empty()) expect_op(",");
      if (is_op(")")) break;
      std::string name = expect_name();
      ExprPtr def;
      if (skip_op("=")) def = parse_expression(true);
      else if (!s->params.empty() && s->params.back().second) error("non-default argument follows default argument");
      s->params.emplace_back(std::move(name), std::move(def));
    }
    advance();
    expect_block_end();
    int saved_loops = loop_depth_;
    loop_depth_ = 0;
    ++macro_depth_;
    s->body = subparse({"endmacro"});
    --macro_depth_;
    loop_depth_ = saved_loops;
    end_tag();
    return s;
  }

  std::unique_ptr<Stmt> parse_with() {
    auto s = new_stmt(Stmt::Type::With);
    while (cur().type != Tok::BlockEnd) {
      if (!s->params.empty()) expect_op(",");
      std::string name = expect_name();
      expect_op("=");
      s->params.emplace_back(std::move(name), parse_expression(true));
    }
    expect_block_end();
    s->body = subparse({"endwith"});
    end_tag();
    return s;
  }

  std::unique_ptr<Stmt> parse_filter_block() {
    auto s = new_stmt(Stmt::Type::FilterBlock);
    s->filter = parse_filter(nullptr, true);
    expect_block_end();
    s->body = subparse({"endfilter"});
    end_tag();
    return s;
  }

  std::unique_ptr<Stmt> parse_generation() {
    auto s = new_stmt(Stmt::Type::Generation);
    expect_block_end();
    s->body = subparse({"endgeneration"});
    end_tag();
    return s;
  }

  std::unique_ptr<Stmt> parse_loop_control(const std::string &tag) {
    if (loop_depth_ == 0) error("'" + tag + "' outside of a loop");
    auto s = new_stmt(tag == "break" ? Stmt::Type::Break : Stmt::Type::Continue);
    expect_block_end();
    return s;
  }

  // ---- assignment targets -------------------------------------------------------

  bool tuple_end(std::initializer_list<const char *> extra) const {
    if (cur().type == Tok::VarEnd || cur().type == Tok::BlockEnd || is_op(")")) return true;
    return cur().type == Tok::Name && contains(extra, cur().text);
  }

  Target parse_target(std::initializer_list<const char *> extra) {
    Target t;
    bool is_tuple = false;
    while (true) {
      if (!t.items.empty()) expect_op(",");
      if (tuple_end(extra)) break;
      t.items.push_back(parse_target_primary());
      if (is_op(",")) is_tuple = true;
      else break;
    }
    if (is_tuple) {
      t.is_tuple = true;
      return t;
    }
    if (t.items.empty()) error("expected an assignment target, got " + describe(cur()));
    return std::move(t.items[0]);
  }

  Target parse_target_primary() {
    Nest nest(*this);
    if (skip_op("(")) {
      Target t = parse_target({});
      expect_op(")");
      return t;
    }
    if (cur().type != Tok::Name || contains({"true", "false", "none", "True", "False", "None"}, cur().text))
      error("can't assign to " + describe(cur()));
    Target t;
    t.name = expect_name();
    return t;
  }

  // ---- expressions -------------------------------------------------------------------

  ExprPtr parse_tuple(bool with_condexpr, std::initializer_list<const char *> extra, bool explicit_parens) {
    int line = cur().line;
    std::vector<ExprPtr> args;
    bool is_tuple = false;
    while (true) {
      if (!args.empty()) expect_op(",");
      if (tuple_end(extra)) break;
      args.push_back(parse_expression(with_condexpr));
      if (is_op(",")) is_tuple = true;
      else break;
    }
    if (!is_tuple) {
      if (!args.empty()) return std::move(args[0]);
      if (!explicit_parens) error("expected an expression, got " + describe(cur()));
    }
    return node(EType::Tuple, line, std::move(args));
  }

  ExprPtr parse_expression(bool with_condexpr) {
    Nest nest(*this);
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
    ExprPtr expr = parse_or();
    while (is_name("if")) {
      int line = cur().line;
      advance();
      ExprPtr test = parse_or();
      ExprPtr other;
      if (skip_name("else")) {
        Nest nest(*this);
        other = parse_condexpr();
      }
      std::vector<ExprPtr> kids;
      kids.push_back(std::move(expr));
      kids.push_back(std::move(test));
      kids.push_back(std::move(other));
      expr = node(EType::Cond, line, std::move(kids));
    }
    return expr;
  }

  ExprPtr binary(EType type, int line, ExprPtr a, ExprPtr b, const std::string &op = {}) {
    std::vector<ExprPtr> kids;
    kids.push_back(std::move(a));
    kids.push_back(std::move(b));
    ExprPtr e = node(type, line, std::move(kids));
    e->name = op;
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (is_name("or")) {
      int line = cur().line;
      advance();
      left = binary(EType::Or, line, std::move(left), parse_and());
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (is_name("and")) {
      int line = cur().line;
      advance();
      left = binary(EType::And, line, std::move(left), parse_not());
    }
    return left;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      Nest nest(*this);
      int line = cur().line;
      advance();
      std::vector<ExprPtr> kids;
      kids.push_back(parse_not());
      return node(EType::Not, line, std::move(kids));
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    int line = cur().line;
    ExprPtr first = parse_math1();
    std::vector<ExprPtr> kids;
    std::vector<std::string> ops;
    while (true) {
      if (cur().type == Tok::Op && contains({"==", "!=", "<", "<=", ">", ">="}, cur().text)) {
        ops.push_back(cur().text);
        advance();
      } else if (is_name("in")) {
        ops.push_back("in");
        advance();
      } else if (is_name("not") && peek().type == Tok::Name && peek().text == "in") {
        ops.push_back("notin");
        advance();
        advance();
      } else {
        break;
      }
      kids.push_back(parse_math1());
    }
    if (ops.empty()) return first;
    kids.insert(kids.begin(), std::move(first));
    ExprPtr e = node(EType::Compare, line, std::move(kids));
    e->ops = std::move(ops);
    return e;
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      std::string op = cur().text;
      int line = cur().line;
      advance();
      left = binary(EType::Binary, line, std::move(left), parse_concat(), op);
    }
    return left;
  }

  ExprPtr parse_concat() {
    ExprPtr left = parse_math2();
    while (is_op("~")) {
      int line = cur().line;
      advance();
      left = binary(EType::Binary, line, std::move(left), parse_math2(), "~");
    }
    return left;
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      std::string op = cur().text;
      int line = cur().line;
      advance();
      left = binary(EType::Binary, line, std::move(left), parse_pow(), op);
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    while (is_op("**")) {
      int line = cur().line;
      advance();
      left = binary(EType::Binary, line, std::move(left), parse_unary(true), "**");
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      Nest nest(*this);
      std::string op = cur().text;
      int line = cur().line;
      advance();
      std::vector<ExprPtr> kids;
      kids.push_back(parse_unary(false));
      e = node(EType::Unary, line, std::move(kids));
      e->name = op;
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr constant(Value v, int line) {
    ExprPtr e = node(EType::Const, line);
    e->value = std::move(v);
    return e;
  }

  ExprPtr parse_primary() {
    const Token &t = cur();
    int line = t.line;
    switch (t.type) {
      case Tok::Name: return parse_name();
      case Tok::String: {
        std::string s;
        while (cur().type == Tok::String) {  // adjacent literals concatenate
          s += cur().text;
          advance();
        }
        return constant(Value::string(std::move(s)), line);
      }
      case Tok::Int: advance(); return constant(Value::integer(t.int_value), line);
      case Tok::Float: advance(); return constant(Value::number(t.float_value), line);
      default: break;
    }
    if (is_op("(")) {
      Nest nest(*this);
      advance();
      ExprPtr e = parse_tuple(true, {}, true);
      expect_op(")");
      return e;
    }
    if (is_op("[")) return parse_list();
    if (is_op("{")) return parse_dict();
    unexpected();
  }

  ExprPtr parse_name() {
    const Token &t = cur();
    int line = t.line;
    std::string n = t.text;
    advance();
    if (n == "true" || n == "True") return constant(Value::boolean(true), line);
    if (n == "false" || n == "False") return constant(Value::boolean(false), line);
    if (n == "none" || n == "None") return constant(Value::none(), line);
    if (macro_depth_ > 0 && (n == "varargs" || n == "kwargs" || n == "caller"))
      fail_unsupported("the macro variable '" + n + "'");
    ExprPtr e = node(EType::Name, line);
    e->name = std::move(n);
    return e;
  }

  ExprPtr parse_list() {
    Nest nest(*this);
    ExprPtr e = node(EType::List, cur().line);
    advance();
    while (!is_op("]")) {
      if (!e->kids.empty()) expect_op(",");
      if (is_op("]")) break;
      e->kids.push_back(parse_expression(true));
    }
    advance();
    return finish(std::move(e));
  }

  ExprPtr parse_dict() {
    Nest nest(*this);
    ExprPtr e = node(EType::Dict, cur().line);
    advance();
    while (!is_op("}")) {
      if (!e->kids.empty()) expect_op(",");
      if (is_op("}")) break;
      e->kids.push_back(parse_expression(true));
      expect_op(":");
      e->kids.push_back(parse_expression(true));
    }
    advance();
    return finish(std::move(e));
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".") || is_op("[")) e = parse_subscript(std::move(e));
      else if (is_op("(")) e = parse_call(std::move(e));
      else return e;
    }
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (is_op("|")) e = parse_filter(std::move(e), false);
      else if (is_name("is")) e = parse_test(std::move(e));
      else if (is_op("(")) e = parse_call(std::move(e));
      else return e;
    }
  }

  ExprPtr parse_subscript(ExprPtr obj) {
    int line = cur().line;
    if (skip_op(".")) {
      if (cur().type == Tok::Name) {
        std::vector<ExprPtr> kids;
        kids.push_back(std::move(obj));
        ExprPtr e = node(EType::Attr, line, std::move(kids));
        e->name = expect_name();
        return e;
      }
      if (cur().type == Tok::Int) {
        ExprPtr key = constant(Value::integer(cur().int_value), line);
        advance();
        return binary(EType::Item, line, std::move(obj), std::move(key));
      }
      error("expected name or number after '.', got " + describe(cur()));
    }
    Nest nest(*this);
    advance();  // [
    std::vector<ExprPtr> parts;  // start, stop, step of a slice
    bool is_slice = false;
    if (!is_op(":")) {
      parts.push_back(parse_expression(true));
      if (is_op(",")) fail_unsupported("tuple subscripts");
    } else {
      parts.push_back(nullptr);
    }
    if (skip_op(":")) {
      is_slice = true;
      parts.push_back(is_op(":") || is_op("]") ? nullptr : parse_expression(true));
      if (skip_op(":")) parts.push_back(is_op("]") ? nullptr : parse_expression(true));
      else parts.push_back(nullptr);
    }
    expect_op("]");
    if (!is_slice) return binary(EType::Item, line, std::move(obj), std::move(parts[0]));
    parts.insert(parts.begin(), std::move(obj));
    return node(EType::Slice, line, std::move(parts));
  }

  // Parses `(args)` into call-like node e (whose kids[0] is already set).
  void parse_args(Expr &e) {
    Nest nest(*this);
    expect_op("(");
    while (!is_op(")")) {
      if (e.kids.size() > 1) expect_op(",");
      if (is_op(")")) break;
      if (is_op("*") || is_op("**")) fail_unsupported("*args and **kwargs in calls");
      if (cur().type == Tok::Name && peek().type == Tok::Op && peek().text == "=") {
        std::string key = expect_name();
        advance();
        if (std::find(e.kw_names.begin(), e.kw_names.end(), key) != e.kw_names.end())
          error("keyword argument '" + key + "' repeated");
        e.kw_names.push_back(key);
        e.kids.push_back(parse_expression(true));
      } else {
        if (!e.kw_names.empty()) error("invalid syntax for function call expression");
        e.kids.push_back(parse_expression(true));
      }
    }
    advance();
  }

  ExprPtr parse_call(ExprPtr callee) {
    std::vector<ExprPtr> kids;
    kids.push_back(std::move(callee));
    ExprPtr e = node(EType::Call, cur().line, std::move(kids));
    parse_args(*e);
    return finish(std::move(e));
  }

  std::string parse_dotted_name() {
    std::string n = expect_name();
    while (skip_op(".")) n += "." + expect_name();
    return n;
  }

  ExprPtr parse_filter(ExprPtr operand, bool start_inline) {
    while (is_op("|") || start_inline) {
      if (!start_inline) advance();
      start_inline = false;
      int line = cur().line;
      std::string name = parse_dotted_name();
      if (!is_jinja_filter(name)) error("no filter named '" + name + "'");
      std::vector<ExprPtr> kids;
      kids.push_back(std::move(operand));
      ExprPtr f = node(EType::Filter, line, std::move(kids));
      f->name = name;
      if (is_op("(")) parse_args(*f);
      operand = finish(std::move(f));
    }
    return operand;
  }

  ExprPtr parse_test(ExprPtr operand) {
    int line = cur().line;
    advance();  // is
    bool negated = skip_name("not");
    std::string name = parse_dotted_name();
    if (!is_jinja_test(name)) error("no test named '" + name + "'");
    std::vector<ExprPtr> kids;
    kids.push_back(std::move(operand));
    ExprPtr t = node(EType::Test, line, std::move(kids));
    t->name = name;
    const Token &c = cur();
    bool arg_follows = c.type == Tok::Name || c.type == Tok::String || c.type == Tok::Int || c.type == Tok::Float ||
                       is_op("[") || is_op("{");
    if (is_op("(")) {
      parse_args(*t);
    } else if (arg_follows && !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) error("you cannot chain multiple tests with is");
      Nest nest(*this);
      t->kids.push_back(parse_postfix(parse_primary()));
    }
    t = finish(std::move(t));
    if (!negated) return t;
    std::vector<ExprPtr> not_kids;
    not_kids.push_back(std::move(t));
    return node(EType::Not, line, std::move(not_kids));
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
  int nesting_ = 0;
  int loop_depth_ = 0;
  int macro_depth_ = 0;
};

}  // namespace

std::unique_ptr<Template> parse_template(std::string_view source) {
  return Parser(tokenize(source)).parse();
}

}  // namespace llm::jinja
