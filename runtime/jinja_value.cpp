// Python semantics of interpreter values: see jinja_value.h.
#include "runtime/jinja_value.h"

#include <utf8proc.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace llm::jinja {

void fail_unsupported(const std::string &what) {
  throw Error(LLM_ERR_UNSUPPORTED, "chat template uses " + what + ", which is not supported");
}

void fail_template(const std::string &message) {
  throw Error(LLM_ERR_INVALID_ARGUMENT, "chat template error: " + message);
}

// ---- construction and access -----------------------------------------------------

Value Value::undefined(const std::string &message) {
  Value v;
  if (!message.empty()) v.obj_ = std::make_shared<StringObj>(message);
  return v;
}

Value Value::none() {
  Value v;
  v.kind_ = Kind::None;
  return v;
}

Value Value::boolean(bool b) {
  Value v;
  v.kind_ = Kind::Bool;
  v.u_.b = b;
  return v;
}

Value Value::integer(int64_t i) {
  Value v;
  v.kind_ = Kind::Int;
  v.u_.i = i;
  return v;
}

Value Value::number(double f) {
  Value v;
  v.kind_ = Kind::Float;
  v.u_.f = f;
  return v;
}

Value Value::string(std::string s) {
  Value v;
  v.kind_ = Kind::String;
  v.obj_ = std::make_shared<StringObj>(std::move(s));
  return v;
}

Value Value::markup(std::string s) {
  Value v = string(std::move(s));
  v.u_.b = true;
  return v;
}

Value Value::seq(std::vector<Value> items, SeqKind kind) {
  auto obj = std::make_shared<SeqObj>();
  int deepest = 0;
  for (const Value &item : items) deepest = std::max(deepest, item.depth());
  if (deepest + 1 > kMaxValueDepth) fail_unsupported("values nested more than 128 levels deep");
  obj->items = std::move(items);
  obj->kind = kind;
  obj->depth = deepest + 1;
  Value v;
  v.kind_ = Kind::Seq;
  v.obj_ = std::move(obj);
  return v;
}

Value Value::dict(std::vector<std::pair<Value, Value>> items) {
  auto obj = std::make_shared<DictObj>();
  int deepest = 0;
  for (const auto &kv : items) deepest = std::max({deepest, kv.first.depth(), kv.second.depth()});
  if (deepest + 1 > kMaxValueDepth) fail_unsupported("values nested more than 128 levels deep");
  // Python keeps the first position of a key and its last value.
  for (auto &kv : items) {
    auto it = std::find_if(obj->items.begin(), obj->items.end(),
                           [&](const auto &e) { return equal(e.first, kv.first); });
    if (it != obj->items.end())
      it->second = std::move(kv.second);
    else
      obj->items.push_back(std::move(kv));
  }
  obj->depth = deepest + 1;
  Value v;
  v.kind_ = Kind::Dict;
  v.obj_ = std::move(obj);
  return v;
}

Value Value::ns(Namespace *ns) {
  Value v;
  v.kind_ = Kind::Namespace;
  v.u_.ns = ns;
  return v;
}

Value Value::callable(std::shared_ptr<const Callable> fn) {
  Value v;
  v.kind_ = Kind::Callable;
  v.obj_ = std::move(fn);
  return v;
}

Value Value::loop(std::shared_ptr<const LoopObj> loop) {
  Value v;
  v.kind_ = Kind::Loop;
  v.obj_ = std::move(loop);
  return v;
}

double Value::as_float() const {
  if (kind_ == Kind::Float) return u_.f;
  return static_cast<double>(as_int());
}

const std::string &Value::str() const {
  static const std::string empty;
  if (!obj_) return empty;
  return static_cast<const StringObj &>(*obj_).text;
}

const SeqObj &Value::seq_obj() const { return static_cast<const SeqObj &>(*obj_); }
const std::vector<Value> &Value::items() const { return seq_obj().items; }
SeqKind Value::seq_kind() const { return seq_obj().kind; }
const DictObj &Value::dict_obj() const { return static_cast<const DictObj &>(*obj_); }
const Callable &Value::fn() const { return static_cast<const Callable &>(*obj_); }
const LoopObj &Value::loop_obj() const { return static_cast<const LoopObj &>(*obj_); }

int Value::depth() const {
  if (kind_ == Kind::Seq) return seq_obj().depth;
  if (kind_ == Kind::Dict) return dict_obj().depth;
  if (kind_ == Kind::Loop) return loop_obj().items.depth() + 1;
  if (kind_ == Kind::Callable) return fn().depth();
  return 0;
}

const Value *DictObj::find(const Value &key) const {
  for (const auto &kv : items)
    if (equal(kv.first, key)) return &kv.second;
  return nullptr;
}

const Value *DictObj::find(std::string_view key) const {
  for (const auto &kv : items)
    if (kv.first.is_string() && kv.first.str() == key) return &kv.second;
  return nullptr;
}

const Value *Namespace::find(std::string_view name) const {
  for (const auto &kv : attrs)
    if (kv.first == name) return &kv.second;
  return nullptr;
}

void Namespace::set(const std::string &name, Value v) {
  for (auto &kv : attrs)
    if (kv.first == name) {
      kv.second = std::move(v);
      return;
    }
  attrs.emplace_back(name, std::move(v));
}

const Value *Args::get(size_t i, const char *name) const {
  if (i < pos.size()) return &pos[i];
  for (const auto &kv : kw)
    if (kv.first == name) return &kv.second;
  return nullptr;
}

void Args::check(const char *fn, std::initializer_list<const char *> names) const {
  if (pos.size() > names.size())
    fail_template(std::string(fn) + "() takes at most " + std::to_string(names.size()) + " arguments (" +
                  std::to_string(pos.size()) + " given)");
  for (const auto &kv : kw) {
    size_t idx = 0;
    bool known = false;
    for (const char *n : names) {
      if (kv.first == n) {
        known = true;
        if (idx < pos.size()) fail_template(std::string(fn) + "() got multiple values for argument '" + n + "'");
      }
      ++idx;
    }
    if (!known) fail_template(std::string(fn) + "() got an unexpected keyword argument '" + kv.first + "'");
  }
}

// ---- truthiness, equality, ordering ------------------------------------------

bool truthy(const Value &v) {
  switch (v.kind()) {
    case Kind::Undefined:
    case Kind::None: return false;
    case Kind::Bool: return v.as_bool();
    case Kind::Int: return v.as_int() != 0;
    case Kind::Float: return v.as_float() != 0.0;
    case Kind::String: return !v.str().empty();
    case Kind::Seq: return v.seq_kind() == SeqKind::Iterator || !v.items().empty();  // generators are always true
    case Kind::Dict: return !v.dict_obj().items.empty();
    default: return true;
  }
}

const char *type_name(const Value &v) {
  switch (v.kind()) {
    case Kind::Undefined: return "Undefined";
    case Kind::None: return "NoneType";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::Seq:
      switch (v.seq_kind()) {
        case SeqKind::List: return "list";
        case SeqKind::Tuple: return "tuple";
        case SeqKind::Iterator: return "generator";
        case SeqKind::View: return "range";
      }
      return "list";
    case Kind::Dict: return "dict";
    case Kind::Namespace: return "Namespace";
    case Kind::Callable: return "function";
    case Kind::Loop: return "LoopContext";
  }
  return "object";
}

// Python compares int and float exactly; doubles hold every int a chat
// template computes, so comparing in the wider of the two types is enough.
static int compare_numbers(const Value &a, const Value &b) {
  if (a.kind() != Kind::Float && b.kind() != Kind::Float) {
    int64_t x = a.as_int(), y = b.as_int();
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  double x = a.as_float(), y = b.as_float();
  if (std::isnan(x) || std::isnan(y)) return 2;  // unordered
  return x < y ? -1 : (x > y ? 1 : 0);
}

static bool is_opaque_seq(const Value &v) {
  return v.is_seq() && (v.seq_kind() == SeqKind::Iterator || v.seq_kind() == SeqKind::View);
}

bool equal(const Value &a, const Value &b) {
  if (a.is_number() && b.is_number()) return compare_numbers(a, b) == 0;
  if (is_opaque_seq(a) || is_opaque_seq(b)) fail_unsupported(std::string("comparing a ") + type_name(is_opaque_seq(a) ? a : b));
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Kind::Undefined:
    case Kind::None: return true;
    case Kind::String: return a.str() == b.str();
    case Kind::Seq: {
      if (a.seq_kind() != b.seq_kind() || a.items().size() != b.items().size()) return false;
      for (size_t i = 0; i < a.items().size(); ++i)
        if (!equal(a.items()[i], b.items()[i])) return false;
      return true;
    }
    case Kind::Dict: {
      const auto &x = a.dict_obj().items;
      if (x.size() != b.dict_obj().items.size()) return false;
      for (const auto &kv : x) {
        const Value *other = b.dict_obj().find(kv.first);
        if (!other || !equal(kv.second, *other)) return false;
      }
      return true;
    }
    case Kind::Namespace: return a.ns_ptr() == b.ns_ptr();
    case Kind::Callable: return &a.fn() == &b.fn();
    case Kind::Loop: return &a.loop_obj() == &b.loop_obj();
    default: return false;
  }
}

[[noreturn]] static void fail_order(const Value &a, const Value &b) {
  if (a.is_undefined() || b.is_undefined()) fail_template((a.is_undefined() ? a : b).str());
  fail_template(std::string("'<' not supported between instances of '") + type_name(a) + "' and '" + type_name(b) +
                "'");
}

bool less(const Value &a, const Value &b) {
  if (a.is_number() && b.is_number()) return compare_numbers(a, b) == -1;
  if (a.is_string() && b.is_string()) return a.str() < b.str();  // UTF-8 byte order is code point order
  if (a.is_seq() && b.is_seq() && a.seq_kind() == b.seq_kind() &&
      (a.seq_kind() == SeqKind::List || a.seq_kind() == SeqKind::Tuple)) {
    const auto &x = a.items(), &y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i)
      if (!equal(x[i], y[i])) return less(x[i], y[i]);
    return x.size() < y.size();
  }
  fail_order(a, b);
}

// ---- conversion to text -------------------------------------------------------------

std::string float_repr(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f < 0 ? "-inf" : "inf";
  // Shortest digits that read back as f, as Python's repr chooses.
  char buf[40];
  for (int prec = 0; prec <= 17; ++prec) {
    std::snprintf(buf, sizeof buf, "%.*e", prec, f);
    if (std::strtod(buf, nullptr) == f) break;
  }
  std::string s(buf);
  bool neg = s[0] == '-';
  if (neg) s.erase(0, 1);
  size_t e = s.find('e');
  int exp10 = std::atoi(s.c_str() + e + 1);
  std::string digits;
  for (size_t i = 0; i < e; ++i)
    if (s[i] != '.') digits += s[i];
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  std::string out = neg ? "-" : "";
  if (exp10 < -4 || exp10 >= 16) {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char exp[16];
    std::snprintf(exp, sizeof exp, "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
    return out + exp;
  }
  int point = exp10 + 1;  // digits before the decimal point
  if (point <= 0) return out + "0." + std::string(-point, '0') + digits;
  if (static_cast<size_t>(point) >= digits.size())
    return out + digits + std::string(point - digits.size(), '0') + ".0";
  return out + digits.substr(0, point) + "." + digits.substr(point);
}

static bool py_isprintable(uint32_t cp) {
  if (cp == ' ') return true;
  if (cp < 0x20 || cp == 0x7f) return false;
  if (cp < 0x7f) return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_ZS: return false;
    default: return true;
  }
}

static std::string repr_string(const std::string &s) {
  bool has_single = s.find('\'') != std::string::npos;
  char quote = has_single && s.find('"') == std::string::npos ? '"' : '\'';
  std::string out(1, quote);
  for (uint32_t cp : code_points(s)) {
    char buf[16];
    if (cp == static_cast<uint32_t>(quote) || cp == '\\') {
      out += '\\';
      out += static_cast<char>(cp);
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (py_isprintable(cp)) {
      append_utf8(out, cp);
    } else {
      std::snprintf(buf, sizeof buf, cp < 0x100 ? "\\x%02x" : (cp < 0x10000 ? "\\u%04x" : "\\U%08x"), cp);
      out += buf;
    }
  }
  return out + quote;
}

[[noreturn]] static void fail_print(const Value &v) {
  fail_unsupported(std::string("printing a ") + type_name(v) + " (jinja2 prints an object description)");
}

std::string repr(const Value &v) {
  switch (v.kind()) {
    case Kind::Undefined: return "Undefined";
    case Kind::String: return repr_string(v.str());
    case Kind::Seq: {
      SeqKind k = v.seq_kind();
      if (k == SeqKind::Iterator || k == SeqKind::View) fail_print(v);
      std::string out = k == SeqKind::Tuple ? "(" : "[";
      const auto &items = v.items();
      for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + repr(items[i]);
      if (k == SeqKind::Tuple && items.size() == 1) out += ",";
      return out + (k == SeqKind::Tuple ? ")" : "]");
    }
    case Kind::Dict: {
      std::string out = "{";
      bool first = true;
      for (const auto &kv : v.dict_obj().items) {
        out += (first ? "" : ", ") + repr(kv.first) + ": " + repr(kv.second);
        first = false;
      }
      return out + "}";
    }
    default: return to_str(v);
  }
}

std::string to_str(const Value &v) {
  switch (v.kind()) {
    case Kind::Undefined: return "";
    case Kind::None: return "None";
    case Kind::Bool: return v.as_bool() ? "True" : "False";
    case Kind::Int: return std::to_string(v.as_int());
    case Kind::Float: return float_repr(v.as_float());
    case Kind::String: return v.str();
    case Kind::Seq:
    case Kind::Dict: return repr(v);
    default: fail_print(v);
  }
}

// ---- JSON -------------------------------------------------------------------------------

static void json_string(std::string &out, const std::string &s, bool ensure_ascii) {
  out += '"';
  for (uint32_t cp : code_points(s)) {
    char buf[16];
    switch (cp) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      case '\b': out += "\\b"; continue;
      case '\f': out += "\\f"; continue;
      default: break;
    }
    if (cp < 0x20 || (ensure_ascii && cp >= 0x7f)) {
      if (cp >= 0x10000) {
        uint32_t v = cp - 0x10000;
        std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
      } else {
        std::snprintf(buf, sizeof buf, "\\u%04x", cp);
      }
      out += buf;
    } else {
      append_utf8(out, cp);
    }
  }
  out += '"';
}

static std::string json_float(double f) {
  if (std::isnan(f)) return "NaN";
  if (std::isinf(f)) return f < 0 ? "-Infinity" : "Infinity";
  return float_repr(f);
}

[[noreturn]] static void fail_json(const Value &v) {
  fail_template(std::string("Object of type ") + type_name(v) + " is not JSON serializable");
}

static std::string json_key(const Value &k) {
  switch (k.kind()) {
    case Kind::String: return k.str();
    case Kind::Int: return std::to_string(k.as_int());
    case Kind::Float: return json_float(k.as_float());
    case Kind::Bool: return k.as_bool() ? "true" : "false";
    case Kind::None: return "null";
    default: fail_template(std::string("keys must be str, int, float, bool or None, not ") + type_name(k));
  }
}

static void json_value(std::string &out, const Value &v, const JsonOptions &o, int level);

static void json_newline(std::string &out, const JsonOptions &o, int level) {
  if (!o.indent_set) return;
  out += '\n';
  for (int i = 0; i < level; ++i) out += o.indent;
}

static void json_seq(std::string &out, const Value &v, const JsonOptions &o, int level) {
  if (v.seq_kind() == SeqKind::Iterator || v.seq_kind() == SeqKind::View) fail_json(v);
  const auto &items = v.items();
  if (items.empty()) {
    out += "[]";
    return;
  }
  out += '[';
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += o.item_sep;
    json_newline(out, o, level + 1);
    json_value(out, items[i], o, level + 1);
  }
  json_newline(out, o, level);
  out += ']';
}

static void json_dict(std::string &out, const Value &v, const JsonOptions &o, int level) {
  std::vector<const std::pair<Value, Value> *> entries;
  for (const auto &kv : v.dict_obj().items) entries.push_back(&kv);
  if (entries.empty()) {
    out += "{}";
    return;
  }
  if (o.sort_keys)
    std::stable_sort(entries.begin(), entries.end(), [](auto *a, auto *b) { return less(a->first, b->first); });
  out += '{';
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i) out += o.item_sep;
    json_newline(out, o, level + 1);
    json_string(out, json_key(entries[i]->first), o.ensure_ascii);
    out += o.key_sep;
    json_value(out, entries[i]->second, o, level + 1);
  }
  json_newline(out, o, level);
  out += '}';
}

static void json_value(std::string &out, const Value &v, const JsonOptions &o, int level) {
  switch (v.kind()) {
    case Kind::None: out += "null"; return;
    case Kind::Bool: out += v.as_bool() ? "true" : "false"; return;
    case Kind::Int: out += std::to_string(v.as_int()); return;
    case Kind::Float: out += json_float(v.as_float()); return;
    case Kind::String: json_string(out, v.str(), o.ensure_ascii); return;
    case Kind::Seq: json_seq(out, v, o, level); return;
    case Kind::Dict: json_dict(out, v, o, level); return;
    default: fail_json(v);
  }
}

std::string to_json(const Value &v, const JsonOptions &options) {
  std::string out;
  json_value(out, v, options, 0);
  return out;
}

// ---- UTF-8 -----------------------------------------------------------------------------

std::vector<uint32_t> code_points(std::string_view s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  utf8proc_int32_t cp;
  size_t i = 0;
  while (i < s.size()) {
    auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t *>(s.data() + i),
                              static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
    if (n <= 0) {  // invalid byte: counts as one replacement character
      out.push_back(0xFFFD);
      ++i;
    } else {
      out.push_back(static_cast<uint32_t>(cp));
      i += static_cast<size_t>(n);
    }
  }
  return out;
}

void append_utf8(std::string &out, uint32_t cp) {
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
  utf8proc_uint8_t buf[4];
  auto n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(cp), buf);
  out.append(reinterpret_cast<const char *>(buf), static_cast<size_t>(n));
}

std::string from_code_points(const std::vector<uint32_t> &cps, size_t begin, size_t end) {
  std::string out;
  for (size_t i = begin; i < end && i < cps.size(); ++i) append_utf8(out, cps[i]);
  return out;
}

size_t code_point_count(std::string_view s) {
  bool ascii = std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  return ascii ? s.size() : code_points(s).size();
}

bool py_isspace(uint32_t cp) {
  if (cp <= 0x7f) return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20);
  return cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 ||
         cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

std::string py_strip(std::string_view s, const std::string *chars, bool left, bool right) {
  std::vector<uint32_t> cps = code_points(s);
  std::vector<uint32_t> set;
  if (chars) set = code_points(*chars);
  auto strip_it = [&](uint32_t cp) {
    return chars ? std::find(set.begin(), set.end(), cp) != set.end() : py_isspace(cp);
  };
  size_t b = 0, e = cps.size();
  if (left)
    while (b < e && strip_it(cps[b])) ++b;
  if (right)
    while (e > b && strip_it(cps[e - 1])) --e;
  return from_code_points(cps, b, e);
}

// Whitespace split (sep None): runs of whitespace separate, ends ignored.
static std::vector<std::string> split_whitespace(std::string_view s, int64_t maxsplit, bool from_right) {
  std::vector<uint32_t> cps = code_points(s);
  std::vector<std::string> parts;
  if (from_right) std::reverse(cps.begin(), cps.end());
  size_t i = 0, n = cps.size();
  while (true) {
    while (i < n && py_isspace(cps[i])) ++i;
    if (i == n) break;
    if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
      parts.push_back(from_code_points(cps, i, n));  // the rest keeps its trailing whitespace
      break;
    }
    size_t j = i;
    while (j < n && !py_isspace(cps[j])) ++j;
    parts.push_back(from_code_points(cps, i, j));
    i = j;
  }
  if (from_right) {
    std::reverse(parts.begin(), parts.end());
    for (auto &p : parts) {  // undo the character reversal inside each part
      std::vector<uint32_t> c = code_points(p);
      std::reverse(c.begin(), c.end());
      p = from_code_points(c, 0, c.size());
    }
  }
  return parts;
}

std::vector<std::string> py_split(std::string_view s, const std::string *sep, int64_t maxsplit, bool from_right) {
  if (!sep) return split_whitespace(s, maxsplit, from_right);
  if (sep->empty()) fail_template("empty separator");
  std::vector<std::string> parts;
  if (!from_right) {
    size_t start = 0;
    while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
      size_t at = s.find(*sep, start);
      if (at == std::string_view::npos) break;
      parts.emplace_back(s.substr(start, at - start));
      start = at + sep->size();
    }
    parts.emplace_back(s.substr(start));
    return parts;
  }
  size_t end = s.size();
  while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
    if (end < sep->size()) break;
    size_t at = s.rfind(*sep, end - sep->size());
    if (at == std::string_view::npos) break;
    parts.emplace_back(s.substr(at + sep->size(), end - at - sep->size()));
    end = at;
  }
  parts.emplace_back(s.substr(0, end));
  std::reverse(parts.begin(), parts.end());
  return parts;
}

static void check_size(size_t n, size_t max_bytes) {
  if (n > max_bytes) fail_unsupported("a string longer than the output limit");
}

std::string py_replace(std::string_view s, std::string_view old, std::string_view repl, int64_t count,
                       size_t max_bytes) {
  std::string out;
  int64_t done = 0;
  if (old.empty()) {  // Python inserts repl before every character and at the end
    std::vector<uint32_t> cps = code_points(s);
    for (size_t i = 0; i <= cps.size(); ++i) {
      if (count < 0 || done < count) {
        out += repl;
        ++done;
      }
      if (i < cps.size()) append_utf8(out, cps[i]);
      check_size(out.size(), max_bytes);
    }
    return out;
  }
  size_t start = 0;
  while (count < 0 || done < count) {
    size_t at = s.find(old, start);
    if (at == std::string_view::npos) break;
    out.append(s.substr(start, at - start));
    out.append(repl);
    check_size(out.size(), max_bytes);
    start = at + old.size();
    ++done;
  }
  out.append(s.substr(start));
  check_size(out.size(), max_bytes);
  return out;
}

// ---- case mapping ------------------------------------------------------------------------

// Characters whose Python upper/title case is several characters (SpecialCasing):
// utf8proc maps one to one, so these are refused rather than mapped wrongly.
static bool special_upper(uint32_t cp) {
  return cp == 0xDF || cp == 0x149 || cp == 0x1F0 || cp == 0x390 || cp == 0x3B0 || cp == 0x587 ||
         (cp >= 0x1E96 && cp <= 0x1E9A) || (cp >= 0x1F50 && cp <= 0x1F56 && cp % 2 == 0) ||
         (cp >= 0x1F80 && cp <= 0x1FFC && cp != 0x1FB0 && cp != 0x1FB1) || (cp >= 0xFB00 && cp <= 0xFB06) ||
         (cp >= 0xFB13 && cp <= 0xFB17);
}

// İ lowercases to two characters and Σ depends on its context in Python.
static bool special_lower(uint32_t cp) { return cp == 0x130 || cp == 0x3A3; }

enum class CaseOp { Upper, Lower, Title };

static uint32_t map_case(uint32_t cp, CaseOp op) {
  if (cp < 0x80) {
    if (op == CaseOp::Lower) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    return (cp >= 'a' && cp <= 'z') ? cp - 32 : cp;
  }
  if (op == CaseOp::Lower ? special_lower(cp) : special_upper(cp))
    fail_unsupported("case mapping of U+" + std::to_string(cp) + " (a multi-character mapping)");
  auto c = static_cast<utf8proc_int32_t>(cp);
  switch (op) {
    case CaseOp::Upper: return static_cast<uint32_t>(utf8proc_toupper(c));
    case CaseOp::Lower: return static_cast<uint32_t>(utf8proc_tolower(c));
    case CaseOp::Title: return static_cast<uint32_t>(utf8proc_totitle(c));
  }
  return cp;
}

static std::string map_all(std::string_view s, CaseOp op) {
  std::string out;
  out.reserve(s.size());
  for (uint32_t cp : code_points(s)) append_utf8(out, map_case(cp, op));
  return out;
}

std::string py_upper(std::string_view s) { return map_all(s, CaseOp::Upper); }
std::string py_lower(std::string_view s) { return map_all(s, CaseOp::Lower); }

std::string py_capitalize(std::string_view s) {
  std::vector<uint32_t> cps = code_points(s);
  std::string out;
  for (size_t i = 0; i < cps.size(); ++i) append_utf8(out, map_case(cps[i], i == 0 ? CaseOp::Title : CaseOp::Lower));
  return out;
}

static bool is_cased(uint32_t cp) {
  if (cp < 0x80) return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
  auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
}

std::string py_title(std::string_view s) {
  std::string out;
  bool prev_cased = false;
  for (uint32_t cp : code_points(s)) {
    append_utf8(out, map_case(cp, prev_cased ? CaseOp::Lower : CaseOp::Title));
    prev_cased = is_cased(cp);
  }
  return out;
}

std::string jinja_title(std::string_view s) {
  // jinja2 splits on runs of -, whitespace, (, {, [ and <, then uppercases
  // the first character of every piece and lowercases the rest.
  auto is_sep = [](uint32_t cp) {
    return cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || py_isspace(cp);
  };
  std::string out;
  bool piece_start = true, prev_sep = false;
  for (uint32_t cp : code_points(s)) {
    bool sep = is_sep(cp);
    if (sep != prev_sep) piece_start = true;
    append_utf8(out, map_case(cp, piece_start ? CaseOp::Upper : CaseOp::Lower));
    piece_start = false;
    prev_sep = sep;
  }
  return out;
}

}  // namespace llm::jinja
