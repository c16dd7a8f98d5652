// Jinja evaluator: see jinja_interp.h.
#include "runtime/jinja_interp.h"

#include <cmath>

#include "runtime/jinja_builtins.h"

namespace llm::jinja {

// A scope: the template's top level, one for-loop iteration, a macro call or a
// with block. Lookups walk outwards through parents.
struct Frame {
  Frame *parent = nullptr;
  std::vector<std::pair<std::string, Value>> vars;

  const Value *find(const std::string &name) const {
    for (const Frame *f = this; f; f = f->parent)
      for (const auto &kv : f->vars)
        if (kv.first == name) return &kv.second;
    return nullptr;
  }
  void set(const std::string &name, Value v) {
    for (auto &kv : vars)
      if (kv.first == name) {
        kv.second = std::move(v);
        return;
      }
    vars.emplace_back(name, std::move(v));
  }
};

void fail_undefined(const Value &v) { fail_template(v.str().empty() ? "value is undefined" : v.str()); }

[[noreturn]] static void fail_limit(const std::string &what) {
  throw Error(LLM_ERR_UNSUPPORTED, "chat template exceeds the " + what + " limit");
}

// ---- macros ------------------------------------------------------------------------

struct MacroFn : Callable {
  const Stmt *def = nullptr;

  Value call(Interp &in, const Args &args) const override {
    const auto &params = def->params;
    if (args.pos.size() > params.size())
      fail_template("macro '" + name + "' takes not more than " + std::to_string(params.size()) + " argument(s)");
    for (const auto &kv : args.kw) {
      bool known = false;
      for (size_t i = 0; i < params.size(); ++i)
        if (params[i].first == kv.first) {
          known = true;
          if (i < args.pos.size()) fail_template("macro '" + name + "' got multiple values for argument '" + kv.first + "'");
        }
      if (!known) fail_template("macro '" + name + "' takes no keyword argument '" + kv.first + "'");
    }
    if (++in.call_depth_ > in.options_.limits.max_call_depth) fail_limit("macro recursion depth");
    Frame frame;
    frame.parent = in.root_;
    for (size_t i = 0; i < params.size(); ++i) {
      const Value *given = args.get(i, params[i].first.c_str());
      if (given) frame.set(params[i].first, *given);
      else if (params[i].second) frame.set(params[i].first, in.eval(*params[i].second, frame));
      else frame.set(params[i].first, Value::undefined("parameter '" + params[i].first + "' was not provided"));
    }
    std::string text = in.capture(def->body, frame);
    --in.call_depth_;
    return Value::string(std::move(text));
  }
};

// ---- driver --------------------------------------------------------------------------

struct Interp::DepthGuard {
  explicit DepthGuard(Interp &in) : in_(in) {
    if (++in_.depth_ > in_.options_.limits.max_eval_depth) fail_limit("nesting depth");
  }
  ~DepthGuard() { --in_.depth_; }
  Interp &in_;
};

Interp::Interp(const RenderOptions &options) : options_(options) {}
Interp::~Interp() = default;

std::string Interp::render(const Template &tmpl, const Variables &vars) {
  Frame root;
  root.vars = vars;
  root_ = &root;
  std::string out;
  out_ = &out;
  exec(tmpl.body, root);
  out_ = nullptr;
  root_ = nullptr;
  return out;
}

std::string render(std::string_view source, const Variables &vars, const RenderOptions &options) {
  std::unique_ptr<Template> tmpl = parse_template(source);
  Interp in(options);
  return in.render(*tmpl, vars);
}

void Interp::step() {
  if (++steps_ > options_.limits.max_steps) fail_limit("evaluation step");
}

void Interp::charge(size_t bytes) {
  steps_ += bytes / 16;
  step();
}

void Interp::check_size(size_t n) const {
  if (n > options_.limits.max_output_bytes)
    fail_limit("size (" + std::to_string(options_.limits.max_output_bytes) + " bytes or items)");
}

std::tm Interp::now() const {
  if (options_.now) return *options_.now;
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  return tm;
}

Namespace *Interp::new_namespace() {
  namespaces_.emplace_back();
  return &namespaces_.back();
}

void Interp::emit(const std::string &text) {
  check_size(out_->size() + text.size());
  charge(text.size());
  out_->append(text);
}

std::string Interp::capture(const Body &body, Frame &frame) {
  std::string buf;
  std::string *saved = out_;
  out_ = &buf;
  Flow flow = exec(body, frame);
  out_ = saved;
  if (flow != Flow::Normal) fail_unsupported("break or continue inside a captured block");
  return buf;
}

// ---- statements ------------------------------------------------------------------------

Interp::Flow Interp::exec(const Body &body, Frame &frame) {
  DepthGuard guard(*this);
  for (const auto &s : body) {
    Flow flow = exec_stmt(*s, frame);
    if (flow != Flow::Normal) return flow;
  }
  return Flow::Normal;
}

Interp::Flow Interp::exec_stmt(const Stmt &s, Frame &frame) {
  step();
  switch (s.type) {
    case Stmt::Type::Text: emit(s.text); return Flow::Normal;
    case Stmt::Type::Print: emit(to_str(eval(*s.expr, frame))); return Flow::Normal;
    case Stmt::Type::If:
      for (const auto &branch : s.branches)
        if (truthy(eval(*branch.first, frame))) return exec(branch.second, frame);
      return exec(s.else_body, frame);
    case Stmt::Type::For: exec_for(s, frame); return Flow::Normal;
    case Stmt::Type::Set:
    case Stmt::Type::SetAttr:
    case Stmt::Type::SetBlock: exec_set(s, frame); return Flow::Normal;
    case Stmt::Type::Macro: exec_macro_def(s, frame); return Flow::Normal;
    case Stmt::Type::Break: return Flow::Break;
    case Stmt::Type::Continue: return Flow::Continue;
    case Stmt::Type::With: {
      Frame inner;
      inner.parent = &frame;
      for (const auto &p : s.params) inner.set(p.first, eval(*p.second, inner));
      return exec(s.body, inner);
    }
    case Stmt::Type::FilterBlock:
      emit(to_str(eval_filter(*s.filter, Value::string(capture(s.body, frame)), frame)));
      return Flow::Normal;
    case Stmt::Type::Generation: return exec(s.body, frame);
  }
  return Flow::Normal;
}

void Interp::exec_for(const Stmt &s, Frame &frame) {
  std::vector<Value> items = iterate(eval(*s.expr, frame));
  if (s.cond) {  // `for x in xs if cond`: filtered before loop.length is known
    std::vector<Value> kept;
    for (auto &item : items) {
      Frame probe;
      probe.parent = &frame;
      assign(s.target, item, probe);
      if (truthy(eval(*s.cond, probe))) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    if (exec(s.else_body, frame) != Flow::Normal) fail_unsupported("break or continue in a for-else block");
    return;
  }
  auto loop = std::make_shared<LoopObj>();
  loop->items = Value::seq(std::move(items));
  const std::vector<Value> &seq = loop->items.items();
  Value loop_value = Value::loop(loop);
  for (size_t i = 0; i < seq.size(); ++i) {
    if (++iterations_ > options_.limits.max_loop_iterations) fail_limit("loop iteration");
    loop->index0 = i;
    Frame body;  // each iteration starts from the enclosing scope, as in jinja2
    body.parent = &frame;
    assign(s.target, seq[i], body);
    body.set("loop", loop_value);
    if (exec(s.body, body) == Flow::Break) break;
  }
}

void Interp::assign(const Target &t, const Value &v, Frame &frame) {
  if (!t.is_tuple) {
    frame.set(t.name, v);
    return;
  }
  std::vector<Value> parts = iterate(v);
  if (parts.size() > t.items.size())
    fail_template("too many values to unpack (expected " + std::to_string(t.items.size()) + ")");
  if (parts.size() < t.items.size())
    fail_template("not enough values to unpack (expected " + std::to_string(t.items.size()) + ", got " +
                  std::to_string(parts.size()) + ")");
  for (size_t i = 0; i < parts.size(); ++i) assign(t.items[i], parts[i], frame);
}

void Interp::exec_set(const Stmt &s, Frame &frame) {
  if (s.type == Stmt::Type::Set) {
    assign(s.target, eval(*s.expr, frame), frame);
  } else if (s.type == Stmt::Type::SetAttr) {
    Value v = eval(*s.expr, frame);
    const Value *target = frame.find(s.text);
    if (!target || target->kind() != Kind::Namespace)
      fail_template("cannot assign attribute on non-namespace object");
    target->ns_ptr()->set(s.attr, std::move(v));
  } else {
    Value v = Value::string(capture(s.body, frame));
    if (s.filter) v = eval_filter(*s.filter, v, frame);
    frame.set(s.text, std::move(v));
  }
}

void Interp::exec_macro_def(const Stmt &s, Frame &frame) {
  auto fn = std::make_shared<MacroFn>();
  fn->name = s.text;
  fn->def = &s;
  frame.set(s.text, Value::callable(std::move(fn)));
}

// ---- expressions ---------------------------------------------------------------------

Value Interp::lookup(const std::string &name, const Frame &frame) const {
  if (const Value *v = frame.find(name)) return *v;
  Value g = lookup_global(name);
  if (!g.is_undefined()) return g;
  return Value::undefined("'" + name + "' is undefined");
}

Args Interp::eval_args(const Expr &e, Frame &frame) {
  Args args;
  size_t n_kw = e.kw_names.size();
  size_t n_pos = e.kids.size() - 1 - n_kw;
  for (size_t i = 0; i < n_pos; ++i) args.pos.push_back(eval(*e.kids[1 + i], frame));
  for (size_t i = 0; i < n_kw; ++i) args.kw.emplace_back(e.kw_names[i], eval(*e.kids[1 + n_pos + i], frame));
  return args;
}

Value Interp::eval_filter(const Expr &e, const Value &operand, Frame &frame) {
  // In {% filter %} and {% set x | f %} chains, the innermost operand is the block.
  Value v = e.kids[0] ? eval_filter(*e.kids[0], operand, frame) : operand;
  return apply_filter(*this, e.name, v, eval_args(e, frame));
}

Value Interp::call(const Value &fn, const Args &args) {
  if (fn.is_undefined()) fail_undefined(fn);
  if (fn.kind() == Kind::Loop) fail_unsupported("recursive loops");
  if (fn.kind() != Kind::Callable) fail_template(std::string("'") + type_name(fn) + "' object is not callable");
  return fn.fn().call(*this, args);
}

Value Interp::eval_call(const Expr &e, Frame &frame) {
  Value callee = eval(*e.kids[0], frame);
  if (callee.is_undefined()) fail_undefined(callee);
  return call(callee, eval_args(e, frame));
}

static bool compare_op(const std::string &op, const Value &a, const Value &b) {
  if (op == "==") return equal(a, b);
  if (op == "!=") return !equal(a, b);
  if (op == "<") return less(a, b);
  if (op == "<=") return less(a, b) || equal(a, b);
  if (op == ">") return less(b, a);
  if (op == ">=") return less(b, a) || equal(a, b);
  if (op == "in") return contains(b, a);
  return !contains(b, a);  // notin
}

Value Interp::eval_compare(const Expr &e, Frame &frame) {
  Value left = eval(*e.kids[0], frame);
  for (size_t i = 0; i < e.ops.size(); ++i) {
    Value right = eval(*e.kids[i + 1], frame);
    if (!compare_op(e.ops[i], left, right)) return Value::boolean(false);
    left = std::move(right);
  }
  return Value::boolean(true);
}

// Python's slice.indices(): clamps start/stop for a sequence of length n.
static void slice_bounds(const Value *start, const Value *stop, int64_t step, int64_t n, int64_t &b, int64_t &e) {
  int64_t lower = step < 0 ? -1 : 0, upper = step < 0 ? n - 1 : n;
  auto clamp = [&](const Value *v, int64_t dflt) {
    if (!v) return dflt;
    int64_t x = v->as_int();
    if (x < 0) {
      x += n;
      if (x < lower) x = lower;
    } else if (x > upper) {
      x = upper;
    }
    return x;
  };
  b = clamp(start, step < 0 ? upper : lower);
  e = clamp(stop, step < 0 ? lower : upper);
}

Value Interp::eval_slice(const Expr &e, Frame &frame) {
  Value obj = eval(*e.kids[0], frame);
  Value parts[3];
  const Value *p[3] = {nullptr, nullptr, nullptr};
  for (int i = 0; i < 3; ++i) {
    if (!e.kids[1 + i]) continue;
    parts[i] = eval(*e.kids[1 + i], frame);
    if (parts[i].is_none()) continue;
    if (parts[i].kind() != Kind::Int && parts[i].kind() != Kind::Bool)
      fail_template("slice indices must be integers or None or have an __index__ method");
    p[i] = &parts[i];
  }
  if (obj.is_undefined()) fail_undefined(obj);
  int64_t step = p[2] ? p[2]->as_int() : 1;
  if (step == 0) fail_template("slice step cannot be zero");
  bool is_str = obj.is_string();
  if (is_str && obj.is_markup()) fail_unsupported("slicing a |safe or |escape result");
  if (!is_str && !(obj.is_seq() && (obj.seq_kind() == SeqKind::List || obj.seq_kind() == SeqKind::Tuple))) {
    if (obj.is_seq()) fail_unsupported(std::string("slicing a ") + type_name(obj));
    return Value::undefined(std::string("'") + type_name(obj) + " object' has no element slice");
  }
  std::vector<uint32_t> cps;
  if (is_str) cps = code_points(obj.str());
  int64_t n = is_str ? static_cast<int64_t>(cps.size()) : static_cast<int64_t>(obj.items().size());
  int64_t b, end;
  slice_bounds(p[0], p[1], step, n, b, end);
  std::string s;
  std::vector<Value> items;
  for (int64_t i = b; step > 0 ? i < end : i > end; i += step) {
    if (is_str) append_utf8(s, cps[static_cast<size_t>(i)]);
    else items.push_back(obj.items()[static_cast<size_t>(i)]);
  }
  charge(s.size() + items.size() * sizeof(Value));
  if (is_str) return Value::string(std::move(s));
  return Value::seq(std::move(items), obj.seq_kind());
}

Value Interp::eval_kids(const Expr &e, Frame &frame) {
  if (e.type == Expr::Type::Dict) {
    std::vector<std::pair<Value, Value>> pairs;
    for (size_t i = 0; i + 1 < e.kids.size(); i += 2) {
      Value k = eval(*e.kids[i], frame);
      if (k.is_seq() || k.is_dict() || k.is_undefined())
        fail_template(std::string("unhashable type: '") + type_name(k) + "'");
      pairs.emplace_back(std::move(k), eval(*e.kids[i + 1], frame));
    }
    return Value::dict(std::move(pairs));
  }
  std::vector<Value> items;
  for (const auto &k : e.kids) items.push_back(eval(*k, frame));
  return Value::seq(std::move(items), e.type == Expr::Type::Tuple ? SeqKind::Tuple : SeqKind::List);
}

static Value unary_op(const std::string &op, const Value &v) {
  if (v.is_undefined()) fail_undefined(v);
  if (!v.is_number()) fail_template("bad operand type for unary " + op + ": '" + type_name(v) + "'");
  if (op == "+") return v.kind() == Kind::Float ? v : Value::integer(v.as_int());
  if (v.kind() == Kind::Float) return Value::number(-v.as_float());
  if (v.as_int() == INT64_MIN) fail_unsupported("integers beyond 64 bits");
  return Value::integer(-v.as_int());
}

Value Interp::eval(const Expr &e, Frame &frame) {
  step();
  DepthGuard guard(*this);
  using T = Expr::Type;
  switch (e.type) {
    case T::Const: return e.value;
    case T::Name: return lookup(e.name, frame);
    case T::Attr: return get_attr(eval(*e.kids[0], frame), e.name);
    case T::Item: {
      Value obj = eval(*e.kids[0], frame);
      return get_item(obj, eval(*e.kids[1], frame));
    }
    case T::Slice: return eval_slice(e, frame);
    case T::Call: return eval_call(e, frame);
    case T::Filter: {
      Value v = eval(*e.kids[0], frame);
      return apply_filter(*this, e.name, v, eval_args(e, frame));
    }
    case T::Test: {
      Value v = eval(*e.kids[0], frame);
      return Value::boolean(apply_test(*this, e.name, v, eval_args(e, frame)));
    }
    case T::Unary: return unary_op(e.name, eval(*e.kids[0], frame));
    case T::Binary: {
      Value a = eval(*e.kids[0], frame);
      return binary_op(*this, e.name, a, eval(*e.kids[1], frame));
    }
    case T::And: {
      Value a = eval(*e.kids[0], frame);
      return truthy(a) ? eval(*e.kids[1], frame) : a;
    }
    case T::Or: {
      Value a = eval(*e.kids[0], frame);
      return truthy(a) ? a : eval(*e.kids[1], frame);
    }
    case T::Not: return Value::boolean(!truthy(eval(*e.kids[0], frame)));
    case T::Compare: return eval_compare(e, frame);
    case T::Cond:
      if (truthy(eval(*e.kids[1], frame))) return eval(*e.kids[0], frame);
      if (e.kids[2]) return eval(*e.kids[2], frame);
      return Value::undefined("the inline if-expression on line " + std::to_string(e.line) +
                              " evaluated to false and no else section was defined.");
    case T::List:
    case T::Tuple:
    case T::Dict: return eval_kids(e, frame);
  }
  return Value();
}

// ---- lookups ---------------------------------------------------------------------------

static Value missing(const Value &obj, const std::string &what) {
  return Value::undefined(std::string("'") + type_name(obj) + " object' has no " + what);
}

static Value loop_attr(const Value &obj, const std::string &name) {
  const LoopObj &l = obj.loop_obj();
  const auto &items = l.items.items();
  auto i = static_cast<int64_t>(l.index0), n = static_cast<int64_t>(items.size());
  if (name == "index0") return Value::integer(i);
  if (name == "index") return Value::integer(i + 1);
  if (name == "revindex") return Value::integer(n - i);
  if (name == "revindex0") return Value::integer(n - i - 1);
  if (name == "first") return Value::boolean(i == 0);
  if (name == "last") return Value::boolean(i == n - 1);
  if (name == "length") return Value::integer(n);
  // loop.depth counts recursive-loop levels, not nesting; recursive loops are refused.
  if (name == "depth") return Value::integer(1);
  if (name == "depth0") return Value::integer(0);
  if (name == "previtem") return i > 0 ? items[l.index0 - 1] : Value::undefined("there is no previous item");
  if (name == "nextitem") return i + 1 < n ? items[l.index0 + 1] : Value::undefined("there is no next item");
  if (name == "cycle" || name == "changed") return lookup_method(obj, name);
  return missing(obj, "attribute '" + name + "'");
}

Value Interp::get_attr(const Value &obj, const std::string &name) {
  switch (obj.kind()) {
    case Kind::Undefined: fail_undefined(obj);
    case Kind::Dict: {
      Value m = lookup_method(obj, name);
      if (!m.is_undefined()) return m;
      if (const Value *v = obj.dict_obj().find(name)) return *v;
      return missing(obj, "attribute '" + name + "'");
    }
    case Kind::Namespace: {
      if (const Value *v = obj.ns_ptr()->find(name)) return *v;
      return missing(obj, "attribute '" + name + "'");
    }
    case Kind::Loop: return loop_attr(obj, name);
    default: {
      Value m = lookup_method(obj, name);
      if (!m.is_undefined()) return m;
      return missing(obj, "attribute '" + name + "'");
    }
  }
}

static Value index_seq(const Value &obj, int64_t i) {
  if (obj.is_string()) {
    if (obj.is_markup()) fail_unsupported("indexing a |safe or |escape result");
    std::vector<uint32_t> cps = code_points(obj.str());
    auto n = static_cast<int64_t>(cps.size());
    if (i < 0) i += n;
    if (i < 0 || i >= n) return missing(obj, "element " + std::to_string(i));
    std::string s;
    append_utf8(s, cps[static_cast<size_t>(i)]);
    return Value::string(std::move(s));
  }
  if (obj.seq_kind() == SeqKind::Iterator || obj.seq_kind() == SeqKind::View)
    fail_unsupported(std::string("indexing a ") + type_name(obj));
  auto n = static_cast<int64_t>(obj.items().size());
  if (i < 0) i += n;
  if (i < 0 || i >= n) return missing(obj, "element " + std::to_string(i));
  return obj.items()[static_cast<size_t>(i)];
}

Value Interp::get_item(const Value &obj, const Value &key) {
  if (obj.is_undefined()) fail_undefined(obj);
  bool int_key = key.kind() == Kind::Int || key.kind() == Kind::Bool;
  if ((obj.is_string() || obj.is_seq()) && int_key) return index_seq(obj, key.as_int());
  if (obj.is_dict()) {
    if (key.is_seq() || key.is_dict()) fail_template(std::string("unhashable type: '") + type_name(key) + "'");
    if (const Value *v = obj.dict_obj().find(key)) return *v;
  }
  if (obj.kind() == Kind::Namespace && key.is_string()) {
    if (const Value *v = obj.ns_ptr()->find(key.str())) return *v;
    return missing(obj, "attribute '" + key.str() + "'");
  }
  if (obj.kind() == Kind::Loop && key.is_string()) return loop_attr(obj, key.str());
  if (key.is_string()) {  // item lookup failed: jinja2 falls back to the attribute
    Value m = lookup_method(obj, key.str());
    if (!m.is_undefined()) return m;
    return missing(obj, "attribute '" + key.str() + "'");
  }
  return missing(obj, "element " + repr(key));
}

std::vector<Value> Interp::iterate(const Value &v) {
  switch (v.kind()) {
    case Kind::Undefined: return {};
    case Kind::String: {
      if (v.is_markup()) fail_unsupported("iterating over a |safe or |escape result");
      std::vector<Value> out;
      for (uint32_t cp : code_points(v.str())) {
        std::string s;
        append_utf8(s, cp);
        out.push_back(Value::string(std::move(s)));
      }
      charge(out.size() * sizeof(Value));
      return out;
    }
    case Kind::Seq: return v.items();
    case Kind::Dict: {
      std::vector<Value> keys;
      for (const auto &kv : v.dict_obj().items) keys.push_back(kv.first);
      return keys;
    }
    case Kind::Loop: fail_unsupported("iterating over a loop object");
    default: fail_template(std::string("'") + type_name(v) + "' object is not iterable");
  }
}

// ---- operators ---------------------------------------------------------------------------

bool contains(const Value &container, const Value &item) {
  switch (container.kind()) {
    case Kind::Undefined: return false;
    case Kind::String:
      if (!item.is_string())
        fail_template(std::string("'in <string>' requires string as left operand, not ") + type_name(item));
      return container.str().find(item.str()) != std::string::npos;
    case Kind::Seq:
      for (const Value &x : container.items())
        if (equal(x, item)) return true;
      return false;
    case Kind::Dict: return container.dict_obj().find(item) != nullptr;
    case Kind::Namespace:
    case Kind::Loop: fail_unsupported(std::string("'in' on a ") + type_name(container));
    default: fail_template(std::string("argument of type '") + type_name(container) + "' is not iterable");
  }
}

static bool has_html_special(const std::string &s) { return s.find_first_of("&<>\"'") != std::string::npos; }

// jinja2 escapes plain strings joined to |safe/|escape results; allowed only
// where escaping would change nothing.
static bool markup_result(const Value &a, const std::string &a_text, const Value &b, const std::string &b_text) {
  bool ma = a.is_markup(), mb = b.is_markup();
  if (!ma && !mb) return false;
  if ((!ma && has_html_special(a_text)) || (!mb && has_html_special(b_text)))
    fail_unsupported("joining a |safe or |escape result with text that jinja2 would HTML-escape");
  return true;
}

[[noreturn]] static void fail_operands(const std::string &op, const Value &a, const Value &b) {
  if (op == "+" && a.is_string())
    fail_template(std::string("can only concatenate str (not \"") + type_name(b) + "\") to str");
  fail_template("unsupported operand type(s) for " + op + ": '" + type_name(a) + "' and '" + type_name(b) + "'");
}

static int64_t int_pow(int64_t base, int64_t exp) {
  int64_t result = 1;
  while (exp > 0) {
    if ((exp & 1) && __builtin_mul_overflow(result, base, &result)) fail_unsupported("integers beyond 64 bits");
    exp >>= 1;
    if (exp > 0 && __builtin_mul_overflow(base, base, &base)) fail_unsupported("integers beyond 64 bits");
  }
  return result;
}

static Value int_op(const std::string &op, int64_t x, int64_t y) {
  int64_t r = 0;
  bool overflow = false;
  if (op == "+") overflow = __builtin_add_overflow(x, y, &r);
  else if (op == "-") overflow = __builtin_sub_overflow(x, y, &r);
  else if (op == "*") overflow = __builtin_mul_overflow(x, y, &r);
  else if (op == "/") {
    if (y == 0) fail_template("division by zero");
    return Value::number(static_cast<double>(x) / static_cast<double>(y));
  } else if (op == "//" || op == "%") {
    if (y == 0) fail_template("integer division or modulo by zero");
    if (x == INT64_MIN && y == -1) fail_unsupported("integers beyond 64 bits");
    int64_t q = x / y, m = x % y;
    if (m != 0 && ((m < 0) != (y < 0))) {  // Python floors toward negative infinity
      --q;
      m += y;
    }
    r = op == "//" ? q : m;
  } else {  // **
    if (y < 0) {
      if (x == 0) fail_template("0.0 cannot be raised to a negative power");
      return Value::number(std::pow(static_cast<double>(x), static_cast<double>(y)));
    }
    r = int_pow(x, y);
  }
  if (overflow) fail_unsupported("integers beyond 64 bits");
  return Value::integer(r);
}

static Value float_op(const std::string &op, double x, double y) {
  if (op == "+") return Value::number(x + y);
  if (op == "-") return Value::number(x - y);
  if (op == "*") return Value::number(x * y);
  if (op == "/") {
    if (y == 0) fail_template("float division by zero");
    return Value::number(x / y);
  }
  if (op == "//" || op == "%") {  // CPython's float_divmod
    if (y == 0) fail_template("float modulo");
    double mod = std::fmod(x, y);
    double div = (x - mod) / y;
    if (mod != 0) {
      if ((y < 0) != (mod < 0)) {
        mod += y;
        div -= 1.0;
      }
    } else {
      mod = std::copysign(0.0, y);
    }
    double floordiv;
    if (div != 0) {
      floordiv = std::floor(div);
      if (div - floordiv > 0.5) floordiv += 1.0;
    } else {
      floordiv = std::copysign(0.0, x / y);
    }
    return Value::number(op == "//" ? floordiv : mod);
  }
  if (x == 0 && y < 0) fail_template("0.0 cannot be raised to a negative power");
  if (x < 0 && y != std::floor(y)) fail_unsupported("complex numbers");
  return Value::number(std::pow(x, y));
}

static Value repeat(Interp &in, const Value &seq, int64_t n) {
  if (n < 0) n = 0;
  if (seq.is_string()) {
    if (seq.is_markup()) fail_unsupported("repeating a |safe or |escape result");
    const std::string &s = seq.str();
    if (!s.empty() && static_cast<uint64_t>(n) > in.max_size() / s.size()) in.check_size(in.max_size() + 1);
    in.charge(s.size() * static_cast<size_t>(n));
    std::string out;
    for (int64_t i = 0; i < n; ++i) out += s;
    return Value::string(std::move(out));
  }
  const auto &items = seq.items();
  if (!items.empty() && static_cast<uint64_t>(n) > in.max_size() / items.size()) in.check_size(in.max_size() + 1);
  in.charge(items.size() * static_cast<size_t>(n) * sizeof(Value));
  std::vector<Value> out;
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), items.begin(), items.end());
  return Value::seq(std::move(out), seq.seq_kind());
}

static bool is_plain_seq(const Value &v) {
  return v.is_seq() && (v.seq_kind() == SeqKind::List || v.seq_kind() == SeqKind::Tuple);
}

static Value concat(Interp &in, const Value &a, const Value &b) {
  if (a.is_string() && b.is_string()) {
    bool markup = markup_result(a, a.str(), b, b.str());
    in.check_size(a.str().size() + b.str().size());
    in.charge(a.str().size() + b.str().size());
    std::string s = a.str() + b.str();
    return markup ? Value::markup(std::move(s)) : Value::string(std::move(s));
  }
  if (is_plain_seq(a) && is_plain_seq(b) && a.seq_kind() == b.seq_kind()) {
    in.check_size(a.items().size() + b.items().size());
    in.charge((a.items().size() + b.items().size()) * sizeof(Value));
    std::vector<Value> items = a.items();
    items.insert(items.end(), b.items().begin(), b.items().end());
    return Value::seq(std::move(items), a.seq_kind());
  }
  if (a.is_seq() && b.is_seq() && a.seq_kind() == SeqKind::List)
    fail_template(std::string("can only concatenate list (not \"") + type_name(b) + "\") to list");
  fail_operands("+", a, b);
}

Value binary_op(Interp &in, const std::string &op, const Value &a, const Value &b) {
  if (op == "~") {
    std::string x = to_str(a), y = to_str(b);
    bool markup = markup_result(a, x, b, y);
    in.check_size(x.size() + y.size());
    in.charge(x.size() + y.size());
    return markup ? Value::markup(x + y) : Value::string(x + y);
  }
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  if (a.is_number() && b.is_number()) {
    if (a.kind() != Kind::Float && b.kind() != Kind::Float) return int_op(op, a.as_int(), b.as_int());
    return float_op(op, a.as_float(), b.as_float());
  }
  if (op == "+") return concat(in, a, b);
  if (op == "*") {
    bool a_int = a.kind() == Kind::Int || a.kind() == Kind::Bool;
    bool b_int = b.kind() == Kind::Int || b.kind() == Kind::Bool;
    if ((a.is_string() || is_plain_seq(a)) && b_int) return repeat(in, a, b.as_int());
    if ((b.is_string() || is_plain_seq(b)) && a_int) return repeat(in, b, a.as_int());
  }
  if (op == "%" && a.is_string()) fail_unsupported("printf-style string formatting ('%' on strings)");
  fail_operands(op, a, b);
}

}  // namespace llm::jinja
