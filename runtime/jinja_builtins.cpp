// Built-in filters, tests, globals and methods: see jinja_builtins.h. Each
// follows the behaviour of jinja2 3.1's implementation (jinja2/filters.py,
// jinja2/tests.py) or of the Python str/dict/list method it stands for, with
// transformers' replacements (tojson, raise_exception, strftime_now).
#include "runtime/jinja_builtins.h"

#include <utf8proc.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>

#include "runtime/jinja_interp.h"

namespace llm::jinja {
namespace {

using FilterFn = Value (*)(Interp &, const Value &, const Args &);
using TestFn = bool (*)(Interp &, const Value &, const Args &);
using MethodFn = Value (*)(Interp &, const Value &, const Args &);

bool one_of(std::string_view s, std::initializer_list<const char *> names) {
  return std::any_of(names.begin(), names.end(), [&](const char *n) { return s == n; });
}

// ---- argument helpers ---------------------------------------------------------------

const Value &arg_or(const Args &a, size_t i, const char *name, const Value &dflt) {
  const Value *v = a.get(i, name);
  return v ? *v : dflt;
}

int64_t int_arg(const Args &a, size_t i, const char *name, int64_t dflt) {
  const Value *v = a.get(i, name);
  if (!v || v->is_none()) return dflt;
  if (v->kind() != Kind::Int && v->kind() != Kind::Bool)
    fail_template(std::string("'") + type_name(*v) + "' object cannot be interpreted as an integer");
  return v->as_int();
}

bool bool_arg(const Args &a, size_t i, const char *name, bool dflt) {
  const Value *v = a.get(i, name);
  return v ? truthy(*v) : dflt;
}

// An optional str argument (nullptr when absent or None).
const std::string *str_arg(const Args &a, size_t i, const char *name) {
  const Value *v = a.get(i, name);
  if (!v || v->is_none()) return nullptr;
  if (!v->is_string()) fail_template(std::string("argument must be str, not ") + type_name(*v));
  return &v->str();
}

Value make_string(Interp &in, std::string s) {
  in.check_size(s.size());
  in.charge(s.size());
  return Value::string(std::move(s));
}

Value make_list(Interp &in, std::vector<Value> items, SeqKind kind = SeqKind::List) {
  in.check_size(items.size());
  in.charge(items.size() * sizeof(Value));
  return Value::seq(std::move(items), kind);
}

// jinja2's make_attrgetter: "a.b.0" looked up part by part with getitem.
Value get_path(Interp &in, const Value &item, const Value &attribute) {
  if (!attribute.is_string()) return in.get_item(item, attribute);
  Value v = item;
  const std::string &path = attribute.str();
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (digits && part.size() < 18) v = in.get_item(v, Value::integer(std::strtoll(part.c_str(), nullptr, 10)));
    else v = in.get_item(v, Value::string(part));
    if (dot == std::string::npos) return v;
    start = dot + 1;
  }
}

// Sort/compare key: the attribute if given, lowercased unless case-sensitive.
Value sort_key(Interp &in, const Value &item, const Value *attribute, bool case_sensitive) {
  Value k = attribute && !attribute->is_none() ? get_path(in, item, *attribute) : item;
  if (!case_sensitive && k.is_string()) return Value::string(py_lower(k.str()));
  return k;
}

void check_attribute(const Value *attribute) {
  if (attribute && attribute->is_string() && attribute->str().find(',') != std::string::npos)
    fail_unsupported("several comma-separated attributes in a filter");
}

// ---- filters -----------------------------------------------------------------------------

Value f_abs(Interp &, const Value &v, const Args &a) {
  a.check("abs", {});
  if (v.kind() == Kind::Float) return Value::number(std::fabs(v.as_float()));
  if (!v.is_number()) fail_template(std::string("bad operand type for abs(): '") + type_name(v) + "'");
  if (v.as_int() == INT64_MIN) fail_unsupported("integers beyond 64 bits");
  return Value::integer(std::llabs(v.as_int()));
}

Value f_attr(Interp &, const Value &v, const Args &a) {
  a.check("attr", {"name"});
  const std::string *name = str_arg(a, 0, "name");
  if (!name) fail_template("attr() requires a name");
  if (v.is_undefined()) fail_undefined(v);
  if (v.kind() == Kind::Namespace) {
    if (const Value *x = v.ns_ptr()->find(*name)) return *x;
  } else if (v.kind() != Kind::Loop) {
    Value m = lookup_method(v, *name);
    if (!m.is_undefined()) return m;
  } else {
    fail_unsupported("the attr filter on a loop object");
  }
  return Value::undefined(std::string("'") + type_name(v) + " object' has no attribute '" + *name + "'");
}

Value f_capitalize(Interp &in, const Value &v, const Args &a) {
  a.check("capitalize", {});
  return make_string(in, py_capitalize(to_str(v)));
}

Value f_length(Interp &, const Value &v, const Args &a) {
  a.check("length", {});
  switch (v.kind()) {
    case Kind::Undefined: return Value::integer(0);
    case Kind::String: return Value::integer(static_cast<int64_t>(code_point_count(v.str())));
    case Kind::Seq:
      if (v.seq_kind() == SeqKind::Iterator) fail_template("object of type 'generator' has no len()");
      return Value::integer(static_cast<int64_t>(v.items().size()));
    case Kind::Dict: return Value::integer(static_cast<int64_t>(v.dict_obj().items.size()));
    case Kind::Namespace: fail_unsupported("the length of a namespace");
    default: fail_template(std::string("object of type '") + type_name(v) + "' has no len()");
  }
}

Value f_default(Interp &, const Value &v, const Args &a) {
  a.check("default", {"default_value", "boolean"});
  static const Value empty = Value::string("");
  if (v.is_undefined() || (bool_arg(a, 1, "boolean", false) && !truthy(v)))
    return arg_or(a, 0, "default_value", empty);
  return v;
}

Value f_dictsort(Interp &in, const Value &v, const Args &a) {
  a.check("dictsort", {"case_sensitive", "by", "reverse"});
  if (!v.is_dict()) fail_template("You can only sort by either \"key\" or \"value\"");
  bool cs = bool_arg(a, 0, "case_sensitive", false), rev = bool_arg(a, 2, "reverse", false);
  const std::string *by = str_arg(a, 1, "by");
  int pos = 0;
  if (by && *by == "value") pos = 1;
  else if (by && *by != "key") fail_template("You can only sort by either \"key\" or \"value\"");
  std::vector<Value> pairs;
  for (const auto &kv : v.dict_obj().items) pairs.push_back(Value::seq({kv.first, kv.second}, SeqKind::Tuple));
  std::vector<Value> keys;
  for (const auto &p : pairs) keys.push_back(sort_key(in, p.items()[static_cast<size_t>(pos)], nullptr, cs));
  std::vector<size_t> order(pairs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) {
    in.charge(16);
    return rev ? less(keys[y], keys[x]) : less(keys[x], keys[y]);
  });
  std::vector<Value> out;
  for (size_t i : order) out.push_back(pairs[i]);
  return make_list(in, std::move(out));
}

std::string html_escape(const std::string &s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

Value f_escape(Interp &in, const Value &v, const Args &a) {
  a.check("escape", {});
  if (v.is_markup()) return v;
  std::string s = html_escape(to_str(v));
  in.check_size(s.size());
  return Value::markup(std::move(s));
}

Value f_safe(Interp &, const Value &v, const Args &a) {
  a.check("safe", {});
  return v.is_markup() ? v : Value::markup(to_str(v));
}

Value f_first(Interp &in, const Value &v, const Args &a) {
  a.check("first", {});
  std::vector<Value> items = in.iterate(v);
  if (items.empty()) return Value::undefined("No first item, sequence was empty.");
  return items.front();
}

Value f_last(Interp &in, const Value &v, const Args &a) {
  a.check("last", {});
  if (v.is_seq() && v.seq_kind() == SeqKind::Iterator) fail_template("'generator' object is not reversible");
  std::vector<Value> items = in.iterate(v);
  if (items.empty()) return Value::undefined("No last item, sequence was empty.");
  return items.back();
}

// Removes the underscores Python allows between digits; false if misplaced.
bool strip_underscores(std::string &s, bool (*is_digit)(char)) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '_') {
      out += s[i];
      continue;
    }
    if (i == 0 || i + 1 >= s.size() || !is_digit(s[i - 1]) || !is_digit(s[i + 1])) return false;
  }
  s = out;
  return true;
}

std::string strip_ascii_and_py_space(const std::string &s) { return py_strip(s, nullptr, true, true); }

// Python float(str).
bool parse_py_float(const std::string &text, double &out) {
  std::string s = strip_ascii_and_py_space(text);
  if (s.empty()) return false;
  std::string lower = py_lower(s);
  size_t sign = (lower[0] == '+' || lower[0] == '-') ? 1 : 0;
  std::string body = lower.substr(sign);
  if (body == "inf" || body == "infinity" || body == "nan") {
    double x = body == "nan" ? NAN : INFINITY;
    out = lower[0] == '-' ? -x : x;
    return true;
  }
  for (char c : body)
    if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == '+' || c == '-' || c == '_')) return false;
  if (!strip_underscores(body, [](char c) { return c >= '0' && c <= '9'; })) return false;
  if (body.empty() || body == ".") return false;
  std::string full = (sign ? lower.substr(0, 1) : "") + body;
  char *end = nullptr;
  out = std::strtod(full.c_str(), &end);
  return end && *end == '\0';
}

int digit_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = static_cast<char>(c | 0x20);
  return c >= 'a' && c <= 'z' ? c - 'a' + 10 : 99;
}

// Python int(str, base) for bases 0 and 2..36.
bool parse_py_int(const std::string &text, int64_t base, int64_t &out) {
  if (base != 0 && (base < 2 || base > 36)) fail_template("int() base must be >= 2 and <= 36, or 0");
  std::string s = strip_ascii_and_py_space(text);
  bool neg = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    neg = s[0] == '-';
    s.erase(0, 1);
  }
  if (s.size() >= 2 && s[0] == '0') {
    char p = static_cast<char>(s[1] | 0x20);
    int64_t prefixed = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 0;
    if (prefixed && (base == 0 || base == prefixed)) {
      base = prefixed;
      s.erase(0, 2);
      if (!s.empty() && s[0] == '_') s.erase(0, 1);
    }
  }
  if (base == 0) {
    if (s.size() > 1 && s[0] == '0' && s.find_first_not_of("0_") != std::string::npos) return false;
    base = 10;
  }
  if (s.empty() || s.front() == '_' || s.back() == '_' || s.find("__") != std::string::npos) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c == '_') continue;
    int d = digit_value(c);
    if (d >= base) return false;
    if (v > (static_cast<uint64_t>(INT64_MAX) - static_cast<uint64_t>(d)) / static_cast<uint64_t>(base))
      fail_unsupported("integers beyond 64 bits");
    v = v * static_cast<uint64_t>(base) + static_cast<uint64_t>(d);
  }
  out = neg ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
  return true;
}

Value float_to_int(double f) {
  if (std::isnan(f) || std::isinf(f)) fail_template("cannot convert float NaN or infinity to integer");
  if (std::fabs(f) >= 9.2e18) fail_unsupported("integers beyond 64 bits");
  return Value::integer(static_cast<int64_t>(f));
}

Value f_int(Interp &, const Value &v, const Args &a) {
  a.check("int", {"default", "base"});
  static const Value zero = Value::integer(0);
  const Value &dflt = arg_or(a, 0, "default", zero);
  if (v.is_undefined()) fail_undefined(v);
  if (v.is_markup()) fail_unsupported("|int on a |safe result");
  if (v.kind() == Kind::Float) return float_to_int(v.as_float());
  if (v.is_number()) return Value::integer(v.as_int());
  if (!v.is_string()) return dflt;
  int64_t i = 0;
  if (parse_py_int(v.str(), int_arg(a, 1, "base", 10), i)) return Value::integer(i);
  double f = 0;
  if (parse_py_float(v.str(), f)) return float_to_int(f);
  return dflt;
}

Value f_float(Interp &, const Value &v, const Args &a) {
  a.check("float", {"default"});
  static const Value zero = Value::number(0.0);
  if (v.is_undefined()) fail_undefined(v);
  if (v.is_number()) return Value::number(v.as_float());
  double f = 0;
  if (v.is_string() && parse_py_float(v.str(), f)) return Value::number(f);
  return arg_or(a, 0, "default", zero);
}

// Python str.splitlines().
std::vector<std::string> splitlines(const std::string &s, bool keepends) {
  std::vector<uint32_t> cps = code_points(s);
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t i = 0; i < cps.size(); ++i) {
    uint32_t c = cps[i];
    bool brk = c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || (c >= 0x1c && c <= 0x1e) || c == 0x85 ||
               c == 0x2028 || c == 0x2029;
    if (!brk) continue;
    size_t end = i;
    if (c == '\r' && i + 1 < cps.size() && cps[i + 1] == '\n') ++i;
    lines.push_back(from_code_points(cps, start, keepends ? i + 1 : end));
    start = i + 1;
  }
  if (start < cps.size()) lines.push_back(from_code_points(cps, start, cps.size()));
  return lines;
}

Value f_indent(Interp &in, const Value &v, const Args &a) {
  a.check("indent", {"width", "first", "blank"});
  const Value *w = a.get(0, "width");
  std::string indention = w && w->is_string() ? w->str() : std::string(static_cast<size_t>(std::max<int64_t>(0, std::min<int64_t>(int_arg(a, 0, "width", 4), 1000))), ' ');
  if (v.is_markup()) fail_unsupported("|indent on a |safe result");
  std::vector<std::string> lines = splitlines(to_str(v) + "\n", false);
  std::string out;
  if (bool_arg(a, 2, "blank", false)) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i) out += "\n" + indention;
      out += lines[i];
      in.check_size(out.size());
    }
  } else {
    out = lines.empty() ? "" : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      out += "\n";
      if (!lines[i].empty()) out += indention;
      out += lines[i];
      in.check_size(out.size());
    }
  }
  if (bool_arg(a, 1, "first", false)) out = indention + out;
  return make_string(in, std::move(out));
}

Value f_items(Interp &in, const Value &v, const Args &a) {
  a.check("items", {});
  if (v.is_undefined()) return Value::seq({}, SeqKind::Iterator);
  if (!v.is_dict()) fail_template("Can only get item pairs from a mapping.");
  std::vector<Value> pairs;
  for (const auto &kv : v.dict_obj().items) pairs.push_back(Value::seq({kv.first, kv.second}, SeqKind::Tuple));
  return make_list(in, std::move(pairs), SeqKind::Iterator);
}

Value f_join(Interp &in, const Value &v, const Args &a) {
  a.check("join", {"d", "attribute"});
  const Value *d = a.get(0, "d");
  std::string sep = d ? to_str(*d) : "";
  const Value *attribute = a.get(1, "attribute");
  check_attribute(attribute);
  std::string out;
  bool first = true;
  for (const Value &item : in.iterate(v)) {
    if (!first) out += sep;
    first = false;
    out += to_str(attribute && !attribute->is_none() ? get_path(in, item, *attribute) : item);
    in.check_size(out.size());
  }
  return make_string(in, std::move(out));
}

Value f_list(Interp &in, const Value &v, const Args &a) {
  a.check("list", {});
  return make_list(in, in.iterate(v));
}

Value f_lower(Interp &in, const Value &v, const Args &a) {
  a.check("lower", {});
  return make_string(in, py_lower(to_str(v)));
}

Value f_upper(Interp &in, const Value &v, const Args &a) {
  a.check("upper", {});
  return make_string(in, py_upper(to_str(v)));
}

Value f_title(Interp &in, const Value &v, const Args &a) {
  a.check("title", {});
  return make_string(in, jinja_title(to_str(v)));
}

Value f_map(Interp &in, const Value &v, const Args &a) {
  std::vector<Value> out;
  if (!truthy(v)) return Value::seq({}, SeqKind::Iterator);
  std::vector<Value> items = in.iterate(v);
  if (a.pos.empty()) {
    const Value *attribute = nullptr, *dflt = nullptr;
    for (const auto &kv : a.kw) {
      if (kv.first == "attribute") attribute = &kv.second;
      else if (kv.first == "default") dflt = &kv.second;
      else fail_template("Unexpected keyword argument '" + kv.first + "'");
    }
    if (!attribute) fail_template("map requires a filter or an attribute");
    check_attribute(attribute);
    for (const Value &item : items) {
      Value x = get_path(in, item, *attribute);
      out.push_back(dflt && x.is_undefined() ? *dflt : x);
    }
  } else {
    if (!a.pos[0].is_string()) fail_template("map: filter name must be a string");
    const std::string &name = a.pos[0].str();
    if (!is_jinja_filter(name)) fail_template("No filter named '" + name + "'.");
    Args rest;
    rest.pos.assign(a.pos.begin() + 1, a.pos.end());
    rest.kw = a.kw;
    for (const Value &item : items) out.push_back(apply_filter(in, name, item, rest));
  }
  return make_list(in, std::move(out), SeqKind::Iterator);
}

Value min_max(Interp &in, const Value &v, const Args &a, bool want_max, const char *fn) {
  a.check(fn, {"case_sensitive", "attribute"});
  bool cs = bool_arg(a, 0, "case_sensitive", false);
  const Value *attribute = a.get(1, "attribute");
  check_attribute(attribute);
  std::vector<Value> items = in.iterate(v);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  Value best_key = sort_key(in, items[0], attribute, cs);
  for (size_t i = 1; i < items.size(); ++i) {
    Value k = sort_key(in, items[i], attribute, cs);
    in.charge(16);
    if (want_max ? less(best_key, k) : less(k, best_key)) {
      best = i;
      best_key = k;
    }
  }
  return items[best];
}

Value f_max(Interp &in, const Value &v, const Args &a) { return min_max(in, v, a, true, "max"); }
Value f_min(Interp &in, const Value &v, const Args &a) { return min_max(in, v, a, false, "min"); }

// select / reject / selectattr / rejectattr.
Value select_or_reject(Interp &in, const Value &v, const Args &a, bool keep_if, bool by_attr) {
  if (!a.kw.empty() && by_attr) fail_unsupported("keyword arguments to selectattr/rejectattr");
  if (!truthy(v)) return Value::seq({}, SeqKind::Iterator);
  size_t off = 0;
  const Value *attribute = nullptr;
  if (by_attr) {
    if (a.pos.empty()) fail_template("Missing parameter for attribute name");
    attribute = &a.pos[0];
    check_attribute(attribute);
    off = 1;
  }
  const std::string *test = nullptr;
  Args rest;
  if (a.pos.size() > off) {
    if (!a.pos[off].is_string()) fail_template("test name must be a string");
    test = &a.pos[off].str();
    if (!is_jinja_test(*test)) fail_template("No test named '" + *test + "'.");
    rest.pos.assign(a.pos.begin() + static_cast<long>(off) + 1, a.pos.end());
    rest.kw = a.kw;
  }
  std::vector<Value> out;
  for (const Value &item : in.iterate(v)) {
    Value x = attribute ? get_path(in, item, *attribute) : item;
    bool ok = test ? apply_test(in, *test, x, rest) : truthy(x);
    if (ok == keep_if) out.push_back(item);
  }
  return make_list(in, std::move(out), SeqKind::Iterator);
}

Value f_select(Interp &in, const Value &v, const Args &a) { return select_or_reject(in, v, a, true, false); }
Value f_reject(Interp &in, const Value &v, const Args &a) { return select_or_reject(in, v, a, false, false); }
Value f_selectattr(Interp &in, const Value &v, const Args &a) { return select_or_reject(in, v, a, true, true); }
Value f_rejectattr(Interp &in, const Value &v, const Args &a) { return select_or_reject(in, v, a, false, true); }

Value f_replace(Interp &in, const Value &v, const Args &a) {
  a.check("replace", {"old", "new", "count"});
  const Value *old = a.get(0, "old"), *repl = a.get(1, "new");
  if (!old || !repl) fail_template("replace() missing required arguments");
  return make_string(in, py_replace(to_str(v), to_str(*old), to_str(*repl), int_arg(a, 2, "count", -1),
                                    in.max_size()));
}

Value f_reverse(Interp &in, const Value &v, const Args &a) {
  a.check("reverse", {});
  if (v.is_string()) {
    std::vector<uint32_t> cps = code_points(v.str());
    std::reverse(cps.begin(), cps.end());
    return make_string(in, from_code_points(cps, 0, cps.size()));
  }
  std::vector<Value> items = in.iterate(v);
  std::reverse(items.begin(), items.end());
  // reversed() of a generator fails, and jinja2 then builds a reversed list.
  bool to_list = v.is_seq() && v.seq_kind() == SeqKind::Iterator;
  return make_list(in, std::move(items), to_list ? SeqKind::List : SeqKind::Iterator);
}

Value f_round(Interp &, const Value &v, const Args &a) {
  a.check("round", {"precision", "method"});
  int64_t precision = int_arg(a, 0, "precision", 0);
  const std::string *method = str_arg(a, 1, "method");
  std::string m = method ? *method : "common";
  if (m != "common" && m != "ceil" && m != "floor") fail_template("method must be common, ceil or floor");
  if (!v.is_number()) fail_template(std::string("type ") + type_name(v) + " doesn't define __round__ method");
  if (precision < 0 || precision > 15) fail_unsupported("|round with a negative or large precision");
  if (m == "common") {
    if (v.kind() != Kind::Float) return Value::integer(v.as_int());
    char buf[512];  // printf rounds the exact binary value half-to-even, as Python's round does
    std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(precision), v.as_float());
    return Value::number(std::strtod(buf, nullptr));
  }
  double scale = std::pow(10.0, static_cast<double>(precision));
  double x = v.as_float() * scale;
  return Value::number((m == "ceil" ? std::ceil(x) : std::floor(x)) / scale);
}

Value f_sort(Interp &in, const Value &v, const Args &a) {
  a.check("sort", {"reverse", "case_sensitive", "attribute"});
  bool rev = bool_arg(a, 0, "reverse", false), cs = bool_arg(a, 1, "case_sensitive", false);
  const Value *attribute = a.get(2, "attribute");
  check_attribute(attribute);
  std::vector<Value> items = in.iterate(v);
  std::vector<Value> keys;
  for (const Value &item : items) keys.push_back(sort_key(in, item, attribute, cs));
  std::vector<size_t> order(items.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) {
    in.charge(16);
    return rev ? less(keys[y], keys[x]) : less(keys[x], keys[y]);
  });
  std::vector<Value> out;
  for (size_t i : order) out.push_back(items[i]);
  return make_list(in, std::move(out));
}

Value f_string(Interp &in, const Value &v, const Args &a) {
  a.check("string", {});
  if (v.is_string()) return v;
  return make_string(in, to_str(v));
}

Value f_sum(Interp &in, const Value &v, const Args &a) {
  a.check("sum", {"attribute", "start"});
  const Value *attribute = a.get(0, "attribute");
  check_attribute(attribute);
  static const Value zero = Value::integer(0);
  Value total = arg_or(a, 1, "start", zero);
  for (const Value &item : in.iterate(v))
    total = binary_op(in, "+", total, attribute && !attribute->is_none() ? get_path(in, item, *attribute) : item);
  return total;
}

Value f_tojson(Interp &in, const Value &v, const Args &a) {
  a.check("tojson", {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonOptions o;
  o.ensure_ascii = bool_arg(a, 0, "ensure_ascii", false);
  o.sort_keys = bool_arg(a, 3, "sort_keys", false);
  const Value *indent = a.get(1, "indent");
  if (indent && !indent->is_none()) {
    o.indent_set = true;
    if (indent->is_string()) o.indent = indent->str();
    else o.indent = std::string(static_cast<size_t>(std::clamp<int64_t>(int_arg(a, 1, "indent", 0), 0, 1000)), ' ');
    o.item_sep = ",";
  }
  const Value *seps = a.get(2, "separators");
  if (seps && !seps->is_none()) {
    if (!seps->is_seq() || seps->items().size() != 2 || !seps->items()[0].is_string() || !seps->items()[1].is_string())
      fail_template("separators must be a pair of strings");
    o.item_sep = seps->items()[0].str();
    o.key_sep = seps->items()[1].str();
  }
  std::string s = to_json(v, o);
  return make_string(in, std::move(s));
}

Value f_trim(Interp &in, const Value &v, const Args &a) {
  a.check("trim", {"chars"});
  return make_string(in, py_strip(to_str(v), str_arg(a, 0, "chars"), true, true));
}

Value f_unique(Interp &in, const Value &v, const Args &a) {
  a.check("unique", {"case_sensitive", "attribute"});
  bool cs = bool_arg(a, 0, "case_sensitive", false);
  const Value *attribute = a.get(1, "attribute");
  check_attribute(attribute);
  std::vector<Value> out, seen;
  for (const Value &item : in.iterate(v)) {
    Value k = sort_key(in, item, attribute, cs);
    if (k.is_seq() || k.is_dict()) fail_template(std::string("unhashable type: '") + type_name(k) + "'");
    bool dup = false;
    for (const Value &s : seen) {
      in.charge(16);
      if (equal(s, k)) {
        dup = true;
        break;
      }
    }
    if (dup) continue;
    seen.push_back(k);
    out.push_back(item);
  }
  return make_list(in, std::move(out), SeqKind::Iterator);
}

bool is_word_char(uint32_t cp) {
  if (cp == '_') return true;
  if (cp < 0x80) return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
      return true;
    default: return false;
  }
}

Value f_wordcount(Interp &, const Value &v, const Args &a) {
  a.check("wordcount", {});
  int64_t words = 0;
  bool in_word = false;
  for (uint32_t cp : code_points(to_str(v))) {
    bool w = is_word_char(cp);
    if (w && !in_word) ++words;
    in_word = w;
  }
  return Value::integer(words);
}

struct FilterEntry {
  const char *name;
  FilterFn fn;  // nullptr: a jinja2 filter outside the subset
};

const FilterEntry kFilters[] = {
    {"abs", f_abs}, {"attr", f_attr}, {"batch", nullptr}, {"capitalize", f_capitalize}, {"center", nullptr},
    {"count", f_length}, {"d", f_default}, {"default", f_default}, {"dictsort", f_dictsort}, {"e", f_escape},
    {"escape", f_escape}, {"filesizeformat", nullptr}, {"first", f_first}, {"float", f_float},
    {"forceescape", nullptr}, {"format", nullptr}, {"groupby", nullptr}, {"indent", f_indent}, {"int", f_int},
    {"items", f_items}, {"join", f_join}, {"last", f_last}, {"length", f_length}, {"list", f_list},
    {"lower", f_lower}, {"map", f_map}, {"max", f_max}, {"min", f_min}, {"pprint", nullptr},
    {"random", nullptr}, {"reject", f_reject}, {"rejectattr", f_rejectattr}, {"replace", f_replace},
    {"reverse", f_reverse}, {"round", f_round}, {"safe", f_safe}, {"select", f_select},
    {"selectattr", f_selectattr}, {"slice", nullptr}, {"sort", f_sort}, {"string", f_string},
    {"striptags", nullptr}, {"sum", f_sum}, {"title", f_title}, {"tojson", f_tojson}, {"trim", f_trim},
    {"truncate", nullptr}, {"unique", f_unique}, {"upper", f_upper}, {"urlencode", nullptr}, {"urlize", nullptr},
    {"wordcount", f_wordcount}, {"wordwrap", nullptr}, {"xmlattr", nullptr},
};

const FilterEntry *find_filter(std::string_view name) {
  for (const auto &f : kFilters)
    if (name == f.name) return &f;
  return nullptr;
}

// ---- tests ------------------------------------------------------------------------------------

const Value &test_arg(const Args &a, const char *test) {
  if (a.pos.empty()) fail_template(std::string("test '") + test + "' requires an argument");
  return a.pos[0];
}

bool cased_all(const Value &v, bool want_lower) {
  // Python str.islower()/isupper(): some cased character, none of the other case.
  bool any = false;
  for (uint32_t cp : code_points(to_str(v))) {
    auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
    if (cat == UTF8PROC_CATEGORY_LT) return false;
    if (cat == UTF8PROC_CATEGORY_LL) {
      if (!want_lower) return false;
      any = true;
    } else if (cat == UTF8PROC_CATEGORY_LU) {
      if (want_lower) return false;
      any = true;
    }
  }
  return any;
}

Value modulo(Interp &in, const Value &v, const Value &by) { return binary_op(in, "%", v, by); }

bool t_sameas(const Value &v, const Value &other) {
  if (v.kind() != other.kind()) return false;
  switch (v.kind()) {
    case Kind::None: return true;
    case Kind::Bool: return v.as_bool() == other.as_bool();
    case Kind::Namespace: return v.ns_ptr() == other.ns_ptr();
    case Kind::Seq:
    case Kind::Dict:
    case Kind::Callable:
    case Kind::Loop: return v.identity() == other.identity();
    default: fail_unsupported(std::string("the sameas test on a ") + type_name(v));
  }
}

bool run_test(Interp &in, const std::string &name, const Value &v, const Args &a) {
  Kind k = v.kind();
  if (name == "defined") return k != Kind::Undefined;
  if (name == "undefined") return k == Kind::Undefined;
  if (name == "none") return k == Kind::None;
  if (name == "boolean") return k == Kind::Bool;
  if (name == "true") return k == Kind::Bool && v.as_bool();
  if (name == "false") return k == Kind::Bool && !v.as_bool();
  if (name == "integer") return k == Kind::Int;
  if (name == "float") return k == Kind::Float;
  if (name == "number") return v.is_number();
  if (name == "string") return k == Kind::String;
  if (name == "mapping") return k == Kind::Dict;
  if (name == "iterable") return k == Kind::String || k == Kind::Seq || k == Kind::Dict || k == Kind::Undefined || k == Kind::Loop;
  if (name == "sequence") {
    if (k == Kind::Seq && v.seq_kind() == SeqKind::View) fail_unsupported("the sequence test on a view");
    return k == Kind::String || k == Kind::Dict || k == Kind::Undefined ||
           (k == Kind::Seq && v.seq_kind() != SeqKind::Iterator);
  }
  if (name == "callable") return k == Kind::Callable || k == Kind::Undefined || k == Kind::Loop;
  if (name == "escaped") return v.is_markup();
  if (name == "sameas") return t_sameas(v, test_arg(a, "sameas"));
  if (name == "in") return contains(test_arg(a, "in"), v);
  if (name == "eq" || name == "equalto" || name == "==") return equal(v, test_arg(a, name.c_str()));
  if (name == "ne" || name == "!=") return !equal(v, test_arg(a, name.c_str()));
  if (name == "lt" || name == "lessthan" || name == "<") return less(v, test_arg(a, name.c_str()));
  if (name == "gt" || name == "greaterthan" || name == ">") return less(test_arg(a, name.c_str()), v);
  if (name == "le" || name == "<=") return less(v, test_arg(a, "le")) || equal(v, test_arg(a, "le"));
  if (name == "ge" || name == ">=") return less(test_arg(a, "ge"), v) || equal(v, test_arg(a, "ge"));
  if (name == "odd") return equal(modulo(in, v, Value::integer(2)), Value::integer(1));
  if (name == "even") return equal(modulo(in, v, Value::integer(2)), Value::integer(0));
  if (name == "divisibleby") return equal(modulo(in, v, test_arg(a, "divisibleby")), Value::integer(0));
  if (name == "lower") return cased_all(v, true);
  if (name == "upper") return cased_all(v, false);
  fail_unsupported("the '" + name + "' test");
}

const char *const kTests[] = {"boolean", "callable", "defined", "divisibleby", "eq", "equalto", "escaped",
                              "even", "false", "filter", "float", "ge", "gt", "greaterthan", "in", "integer",
                              "iterable", "le", "lessthan", "lower", "lt", "mapping", "ne", "none", "number",
                              "odd", "sameas", "sequence", "string", "test", "true", "undefined", "upper",
                              "==", "!=", "<", "<=", ">", ">="};

// ---- callables -------------------------------------------------------------------------------

struct BuiltinFn : Callable {
  Value (*fn)(Interp &, const Args &) = nullptr;
  Value call(Interp &in, const Args &args) const override { return fn(in, args); }
};

struct BoundMethod : Callable {
  Value self;
  MethodFn fn = nullptr;
  Value call(Interp &in, const Args &args) const override { return fn(in, self, args); }
  int depth() const override { return self.depth() + 1; }
};

Value g_range(Interp &in, const Args &a) {
  if (!a.kw.empty()) fail_template("range() takes no keyword arguments");
  if (a.pos.empty() || a.pos.size() > 3) fail_template("range expected 1 to 3 arguments");
  int64_t start = 0, stop, step = 1;
  if (a.pos.size() == 1) {
    stop = int_arg(a, 0, "stop", 0);
  } else {
    start = int_arg(a, 0, "start", 0);
    stop = int_arg(a, 1, "stop", 0);
    if (a.pos.size() == 3) step = int_arg(a, 2, "step", 1);
  }
  for (const Value &p : a.pos)
    if (p.is_none()) fail_template("'NoneType' object cannot be interpreted as an integer");
  if (step == 0) fail_template("range() arg 3 must not be zero");
  // The sandbox refuses ranges longer than 100000 (jinja2's MAX_RANGE). Unsigned
  // arithmetic keeps the span exact for any int64 bounds.
  bool up = step > 0;
  uint64_t span = up ? static_cast<uint64_t>(stop) - static_cast<uint64_t>(start)
                     : static_cast<uint64_t>(start) - static_cast<uint64_t>(stop);
  uint64_t stride = up ? static_cast<uint64_t>(step) : 0 - static_cast<uint64_t>(step);
  bool empty = up ? start >= stop : start <= stop;
  uint64_t len = empty ? 0 : (span - 1) / stride + 1;
  if (len > 100000) fail_template("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
  std::vector<Value> items;
  for (uint64_t i = 0; i < len; ++i)
    items.push_back(Value::integer(static_cast<int64_t>(static_cast<uint64_t>(start) + i * static_cast<uint64_t>(step))));
  return make_list(in, std::move(items), SeqKind::View);
}

Value g_namespace(Interp &in, const Args &a) {
  Namespace *ns = in.new_namespace();
  if (a.pos.size() > 1) fail_template("namespace expected at most 1 argument");
  if (a.pos.size() == 1) {
    if (!a.pos[0].is_dict()) fail_unsupported("namespace() from a non-dict argument");
    for (const auto &kv : a.pos[0].dict_obj().items) {
      if (!kv.first.is_string()) fail_unsupported("namespace() with non-string keys");
      ns->set(kv.first.str(), kv.second);
    }
  }
  for (const auto &kv : a.kw) ns->set(kv.first, kv.second);
  return Value::ns(ns);
}

Value g_dict(Interp &, const Args &a) {
  if (!a.pos.empty()) fail_unsupported("dict() with positional arguments");
  std::vector<std::pair<Value, Value>> pairs;
  for (const auto &kv : a.kw) pairs.emplace_back(Value::string(kv.first), kv.second);
  return Value::dict(std::move(pairs));
}

Value g_raise_exception(Interp &, const Args &a) {
  a.check("raise_exception", {"message"});
  const Value *m = a.get(0, "message");
  throw Error(LLM_ERR_INVALID_ARGUMENT, "chat template raised an error: " + (m ? to_str(*m) : std::string()));
}

Value g_strftime_now(Interp &in, const Args &a) {
  a.check("strftime_now", {"format"});
  const std::string *fmt = str_arg(a, 0, "format");
  if (!fmt) fail_template("strftime_now() requires a format");
  // Python's datetime handles these itself, differently from C strftime.
  for (const char *py_only : {"%f", "%z", "%Z", "%:"})
    if (fmt->find(py_only) != std::string::npos) fail_unsupported(std::string("strftime_now with ") + py_only);
  if (fmt->size() > 256) fail_unsupported("strftime_now with a format longer than 256 bytes");
  std::tm tm = in.now();
  std::string buf(4096, '\0');
  size_t n = std::strftime(&buf[0], buf.size(), fmt->c_str(), &tm);
  buf.resize(n);
  return Value::string(buf);
}

Value g_unsupported(Interp &, const Args &) { fail_unsupported("lipsum(), cycler() and joiner()"); }

Value builtin(const char *name, Value (*fn)(Interp &, const Args &)) {
  auto f = std::make_shared<BuiltinFn>();
  f->name = name;
  f->fn = fn;
  return Value::callable(std::move(f));
}

Value bind(const Value &self, const std::string &name, MethodFn fn) {
  auto m = std::make_shared<BoundMethod>();
  m->name = name;
  m->self = self;
  m->fn = fn;
  return Value::callable(std::move(m));
}

// ---- str methods ------------------------------------------------------------------------------

Value m_strip(Interp &in, const Value &s, const Args &a) {
  a.check("strip", {"chars"});
  return make_string(in, py_strip(s.str(), str_arg(a, 0, "chars"), true, true));
}
Value m_lstrip(Interp &in, const Value &s, const Args &a) {
  a.check("lstrip", {"chars"});
  return make_string(in, py_strip(s.str(), str_arg(a, 0, "chars"), true, false));
}
Value m_rstrip(Interp &in, const Value &s, const Args &a) {
  a.check("rstrip", {"chars"});
  return make_string(in, py_strip(s.str(), str_arg(a, 0, "chars"), false, true));
}

Value split_impl(Interp &in, const Value &s, const Args &a, bool from_right) {
  a.check(from_right ? "rsplit" : "split", {"sep", "maxsplit"});
  std::vector<Value> out;
  for (auto &p : py_split(s.str(), str_arg(a, 0, "sep"), int_arg(a, 1, "maxsplit", -1), from_right))
    out.push_back(Value::string(std::move(p)));
  return make_list(in, std::move(out));
}
Value m_split(Interp &in, const Value &s, const Args &a) { return split_impl(in, s, a, false); }
Value m_rsplit(Interp &in, const Value &s, const Args &a) { return split_impl(in, s, a, true); }

bool affix_match(const Value &s, const Args &a, const char *fn, bool at_end) {
  a.check(fn, {"prefix"});
  const Value *p = a.get(0, "prefix");
  if (!p) fail_template(std::string(fn) + "() takes at least 1 argument (0 given)");
  auto matches = [&](const Value &x) {
    if (!x.is_string()) fail_template(std::string(fn) + " first arg must be str or a tuple of str");
    const std::string &t = s.str(), &q = x.str();
    if (q.size() > t.size()) return false;
    return at_end ? t.compare(t.size() - q.size(), q.size(), q) == 0 : t.compare(0, q.size(), q) == 0;
  };
  if (p->is_seq() && p->seq_kind() == SeqKind::Tuple)
    return std::any_of(p->items().begin(), p->items().end(), matches);
  return matches(*p);
}
Value m_startswith(Interp &, const Value &s, const Args &a) { return Value::boolean(affix_match(s, a, "startswith", false)); }
Value m_endswith(Interp &, const Value &s, const Args &a) { return Value::boolean(affix_match(s, a, "endswith", true)); }

Value m_upper(Interp &in, const Value &s, const Args &a) {
  a.check("upper", {});
  return make_string(in, py_upper(s.str()));
}
Value m_lower(Interp &in, const Value &s, const Args &a) {
  a.check("lower", {});
  return make_string(in, py_lower(s.str()));
}
Value m_title(Interp &in, const Value &s, const Args &a) {
  a.check("title", {});
  return make_string(in, py_title(s.str()));
}
Value m_capitalize(Interp &in, const Value &s, const Args &a) {
  a.check("capitalize", {});
  return make_string(in, py_capitalize(s.str()));
}

const std::string &required_str(const Args &a, size_t i, const char *name, const char *fn) {
  const std::string *s = str_arg(a, i, name);
  if (!s) fail_template(std::string(fn) + "() missing a string argument");
  return *s;
}

Value m_replace(Interp &in, const Value &s, const Args &a) {
  a.check("replace", {"old", "new", "count"});
  const std::string &old = required_str(a, 0, "old", "replace"), &repl = required_str(a, 1, "new", "replace");
  return make_string(in, py_replace(s.str(), old, repl, int_arg(a, 2, "count", -1), in.max_size()));
}

Value find_impl(const Value &s, const Args &a, bool from_right) {
  a.check(from_right ? "rfind" : "find", {"sub"});
  const std::string &sub = required_str(a, 0, "sub", "find");
  size_t at = from_right ? s.str().rfind(sub) : s.str().find(sub);
  if (at == std::string::npos) return Value::integer(-1);
  return Value::integer(static_cast<int64_t>(code_point_count(std::string_view(s.str()).substr(0, at))));
}
Value m_find(Interp &, const Value &s, const Args &a) { return find_impl(s, a, false); }
Value m_rfind(Interp &, const Value &s, const Args &a) { return find_impl(s, a, true); }

Value m_str_count(Interp &, const Value &s, const Args &a) {
  a.check("count", {"sub"});
  const std::string &sub = required_str(a, 0, "sub", "count");
  if (sub.empty()) return Value::integer(static_cast<int64_t>(code_point_count(s.str()) + 1));
  int64_t n = 0;
  for (size_t at = s.str().find(sub); at != std::string::npos; at = s.str().find(sub, at + sub.size())) ++n;
  return Value::integer(n);
}

Value m_join(Interp &in, const Value &s, const Args &a) {
  a.check("join", {"iterable"});
  const Value *it = a.get(0, "iterable");
  if (!it) fail_template("join() takes exactly one argument (0 given)");
  std::string out;
  size_t i = 0;
  for (const Value &x : in.iterate(*it)) {
    if (!x.is_string())
      fail_template("sequence item " + std::to_string(i) + ": expected str instance, " + type_name(x) + " found");
    if (i++) out += s.str();
    out += x.str();
    in.check_size(out.size());
  }
  return make_string(in, std::move(out));
}

Value m_splitlines(Interp &in, const Value &s, const Args &a) {
  a.check("splitlines", {"keepends"});
  std::vector<Value> out;
  for (auto &line : splitlines(s.str(), bool_arg(a, 0, "keepends", false))) out.push_back(Value::string(line));
  return make_list(in, std::move(out));
}

Value affix_remove(Interp &in, const Value &s, const Args &a, bool suffix) {
  a.check(suffix ? "removesuffix" : "removeprefix", {"affix"});
  const std::string &x = required_str(a, 0, "affix", "removeprefix");
  const std::string &t = s.str();
  if (x.size() <= t.size()) {
    if (!suffix && t.compare(0, x.size(), x) == 0) return make_string(in, t.substr(x.size()));
    if (suffix && t.compare(t.size() - x.size(), x.size(), x) == 0) return make_string(in, t.substr(0, t.size() - x.size()));
  }
  return s;
}
Value m_removeprefix(Interp &in, const Value &s, const Args &a) { return affix_remove(in, s, a, false); }
Value m_removesuffix(Interp &in, const Value &s, const Args &a) { return affix_remove(in, s, a, true); }

Value m_isspace(Interp &, const Value &s, const Args &a) {
  a.check("isspace", {});
  std::vector<uint32_t> cps = code_points(s.str());
  return Value::boolean(!cps.empty() && std::all_of(cps.begin(), cps.end(), py_isspace));
}
Value m_islower(Interp &, const Value &s, const Args &a) {
  a.check("islower", {});
  return Value::boolean(cased_all(s, true));
}
Value m_isupper(Interp &, const Value &s, const Args &a) {
  a.check("isupper", {});
  return Value::boolean(cased_all(s, false));
}

// ---- dict, list and loop methods ---------------------------------------------------------------

Value m_get(Interp &, const Value &d, const Args &a) {
  if (!a.kw.empty()) fail_template("get() takes no keyword arguments");
  if (a.pos.empty() || a.pos.size() > 2) fail_template("get expected 1 or 2 arguments");
  if (const Value *v = d.dict_obj().find(a.pos[0])) return *v;
  return a.pos.size() == 2 ? a.pos[1] : Value::none();
}

Value dict_view(Interp &in, const Value &d, int which) {
  std::vector<Value> out;
  for (const auto &kv : d.dict_obj().items) {
    if (which == 0) out.push_back(kv.first);
    else if (which == 1) out.push_back(kv.second);
    else out.push_back(Value::seq({kv.first, kv.second}, SeqKind::Tuple));
  }
  return make_list(in, std::move(out), SeqKind::View);
}
Value m_keys(Interp &in, const Value &d, const Args &a) {
  a.check("keys", {});
  return dict_view(in, d, 0);
}
Value m_values(Interp &in, const Value &d, const Args &a) {
  a.check("values", {});
  return dict_view(in, d, 1);
}
Value m_items(Interp &in, const Value &d, const Args &a) {
  a.check("items", {});
  return dict_view(in, d, 2);
}
Value m_copy(Interp &, const Value &self, const Args &a) {
  a.check("copy", {});
  return self;  // values are immutable, so a copy may share
}

Value m_seq_count(Interp &, const Value &s, const Args &a) {
  a.check("count", {"value"});
  const Value *x = a.get(0, "value");
  if (!x) fail_template("count() takes exactly one argument (0 given)");
  return Value::integer(std::count_if(s.items().begin(), s.items().end(), [&](const Value &y) { return equal(y, *x); }));
}

Value m_seq_index(Interp &, const Value &s, const Args &a) {
  a.check("index", {"value"});
  const Value *x = a.get(0, "value");
  if (!x) fail_template("index expected at least 1 argument, got 0");
  for (size_t i = 0; i < s.items().size(); ++i)
    if (equal(s.items()[i], *x)) return Value::integer(static_cast<int64_t>(i));
  fail_template(repr(*x) + " is not in " + type_name(s));
}

Value m_unsafe(Interp &, const Value &self, const Args &) {
  fail_template(std::string("access to a mutating method of '") + type_name(self) + "' object is unsafe.");
}

Value m_cycle(Interp &, const Value &loop, const Args &a) {
  if (a.pos.empty()) fail_template("no items for cycling given");
  return a.pos[loop.loop_obj().index0 % a.pos.size()];
}

Value m_unsupported_method(Interp &, const Value &self, const Args &) {
  fail_unsupported(std::string("this method of a ") + type_name(self));
}

struct MethodEntry {
  const char *name;
  MethodFn fn;  // nullptr: a Python method outside the subset
};

const MethodEntry kStrMethods[] = {
    {"strip", m_strip}, {"lstrip", m_lstrip}, {"rstrip", m_rstrip}, {"split", m_split}, {"rsplit", m_rsplit},
    {"startswith", m_startswith}, {"endswith", m_endswith}, {"upper", m_upper}, {"lower", m_lower},
    {"title", m_title}, {"capitalize", m_capitalize}, {"replace", m_replace}, {"find", m_find},
    {"rfind", m_rfind}, {"count", m_str_count}, {"join", m_join}, {"splitlines", m_splitlines},
    {"removeprefix", m_removeprefix}, {"removesuffix", m_removesuffix}, {"isspace", m_isspace},
    {"islower", m_islower}, {"isupper", m_isupper}, {"casefold", nullptr}, {"center", nullptr},
    {"encode", nullptr}, {"expandtabs", nullptr}, {"format", nullptr}, {"format_map", nullptr},
    {"index", nullptr}, {"isalnum", nullptr}, {"isalpha", nullptr}, {"isascii", nullptr},
    {"isdecimal", nullptr}, {"isdigit", nullptr}, {"isidentifier", nullptr}, {"isnumeric", nullptr},
    {"isprintable", nullptr}, {"istitle", nullptr}, {"ljust", nullptr}, {"maketrans", nullptr},
    {"partition", nullptr}, {"rindex", nullptr}, {"rjust", nullptr}, {"rpartition", nullptr},
    {"swapcase", nullptr}, {"translate", nullptr}, {"zfill", nullptr},
};

const MethodEntry kDictMethods[] = {
    {"get", m_get}, {"keys", m_keys}, {"values", m_values}, {"items", m_items}, {"copy", m_copy},
    {"clear", m_unsafe}, {"pop", m_unsafe}, {"popitem", m_unsafe}, {"setdefault", m_unsafe},
    {"update", m_unsafe}, {"fromkeys", nullptr},
};

const MethodEntry kListMethods[] = {
    {"count", m_seq_count}, {"index", m_seq_index}, {"copy", m_copy}, {"append", m_unsafe},
    {"clear", m_unsafe}, {"extend", m_unsafe}, {"insert", m_unsafe}, {"pop", m_unsafe},
    {"remove", m_unsafe}, {"reverse", m_unsafe}, {"sort", m_unsafe},
};

const MethodEntry kTupleMethods[] = {{"count", m_seq_count}, {"index", m_seq_index}};

template <size_t N>
Value find_method(const Value &self, const std::string &name, const MethodEntry (&table)[N]) {
  for (const auto &m : table) {
    if (name != m.name) continue;
    if (!m.fn) fail_unsupported(std::string("the ") + type_name(self) + " method '" + name + "'");
    return bind(self, name, m.fn);
  }
  return Value();
}

}  // namespace

bool is_jinja_filter(std::string_view name) { return find_filter(name) != nullptr; }

bool is_jinja_test(std::string_view name) {
  return std::any_of(std::begin(kTests), std::end(kTests), [&](const char *t) { return name == t; });
}

Value apply_filter(Interp &in, const std::string &name, const Value &value, const Args &args) {
  const FilterEntry *f = find_filter(name);
  if (!f) fail_template("no filter named '" + name + "'");
  if (!f->fn) fail_unsupported("the '" + name + "' filter");
  if (value.is_markup() && !one_of(name, {"length", "count", "string", "safe", "e", "escape", "default", "d", "tojson"}))
    fail_unsupported("the '" + name + "' filter on a |safe or |escape result");
  return f->fn(in, value, args);
}

bool apply_test(Interp &in, const std::string &name, const Value &value, const Args &args) {
  if (!is_jinja_test(name)) fail_template("no test named '" + name + "'");
  return run_test(in, name, value, args);
}

Value lookup_global(const std::string &name) {
  if (name == "range") return builtin("range", g_range);
  if (name == "namespace") return builtin("namespace", g_namespace);
  if (name == "dict") return builtin("dict", g_dict);
  if (name == "raise_exception") return builtin("raise_exception", g_raise_exception);
  if (name == "strftime_now") return builtin("strftime_now", g_strftime_now);
  if (name == "lipsum" || name == "cycler" || name == "joiner") return builtin(name.c_str(), g_unsupported);
  return Value();
}

Value lookup_method(const Value &obj, const std::string &name) {
  switch (obj.kind()) {
    case Kind::String:
      if (obj.is_markup()) {
        Value m = find_method(obj, name, kStrMethods);
        if (!m.is_undefined()) fail_unsupported("string methods on a |safe or |escape result");
        return m;
      }
      return find_method(obj, name, kStrMethods);
    case Kind::Dict: return find_method(obj, name, kDictMethods);
    case Kind::Seq:
      if (obj.seq_kind() == SeqKind::List) return find_method(obj, name, kListMethods);
      if (obj.seq_kind() == SeqKind::Tuple) return find_method(obj, name, kTupleMethods);
      return Value();
    case Kind::Loop:
      if (name == "cycle") return bind(obj, name, m_cycle);
      if (name == "changed") return bind(obj, name, m_unsupported_method);
      return Value();
    case Kind::Int:
    case Kind::Float:
    case Kind::Bool:
      if (one_of(name, {"real", "imag", "numerator", "denominator", "conjugate", "bit_length", "bit_count",
                        "to_bytes", "as_integer_ratio", "is_integer", "hex"}))
        fail_unsupported(std::string("the ") + type_name(obj) + " attribute '" + name + "'");
      return Value();
    default: return Value();
  }
}

}  // namespace llm::jinja
