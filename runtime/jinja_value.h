// Values of the Jinja interpreter behind chat templates (runtime/chat_template.h),
// with the Python semantics that jinja2 inherits: truthiness, equality and
// ordering, str()/repr() conversions, json.dumps as transformers' tojson does.
// Strings are UTF-8 and indexed by code point, as Python's str is.
//
// Everything here is immutable once built, as in jinja2's
// ImmutableSandboxedEnvironment, except namespace() objects, which the
// interpreter owns for the length of one render (so reference cycles through
// them cannot leak) and values refer to by plain pointer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "format/error.h"

namespace llm::jinja {

// A construct jinja2 supports but this interpreter does not: LLM_ERR_UNSUPPORTED.
[[noreturn]] void fail_unsupported(const std::string &what);
// An error jinja2 would raise too (raise_exception, undefined access, type
// errors, syntax errors): LLM_ERR_INVALID_ARGUMENT.
[[noreturn]] void fail_template(const std::string &message);

enum class Kind : uint8_t {
  Undefined, None, Bool, Int, Float, String, Seq, Dict, Namespace, Callable, Loop
};

// Python types that all behave as sequences here. Iterator (generators from
// filters such as select or map) and View (range(), dict.items()) can be
// iterated but not printed: jinja2 would print an object address.
enum class SeqKind : uint8_t { List, Tuple, Iterator, View };

class Value;
class Interp;
struct Args;

// Base of the shared, immutable heap parts of values.
struct Object {
  virtual ~Object() = default;
};

struct StringObj : Object {
  std::string text;
  explicit StringObj(std::string t) : text(std::move(t)) {}
};

// Nesting depth of containers, capped so that recursive operations on values
// (printing, comparison, destruction) stay shallow.
constexpr int kMaxValueDepth = 128;

struct SeqObj;
struct DictObj;
struct Namespace;
struct Callable;
struct LoopObj;

class Value {
 public:
  Value() = default;  // Undefined
  static Value undefined(const std::string &message = {});
  static Value none();
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value number(double f);
  static Value string(std::string s);
  // A string marked safe (|safe, |escape): jinja2 would HTML-escape plain
  // strings combined with it, so the interpreter allows few operations on it.
  static Value markup(std::string s);
  static Value seq(std::vector<Value> items, SeqKind kind = SeqKind::List);
  static Value dict(std::vector<std::pair<Value, Value>> items);
  static Value ns(Namespace *ns);
  static Value callable(std::shared_ptr<const Callable> fn);
  static Value loop(std::shared_ptr<const LoopObj> loop);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::Undefined; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_markup() const { return kind_ == Kind::String && u_.b; }
  bool is_int() const { return kind_ == Kind::Int; }      // bool excluded
  bool is_number() const { return kind_ == Kind::Int || kind_ == Kind::Float || kind_ == Kind::Bool; }
  bool is_seq() const { return kind_ == Kind::Seq; }
  bool is_dict() const { return kind_ == Kind::Dict; }

  bool as_bool() const { return u_.b; }
  int64_t as_int() const { return kind_ == Kind::Bool ? (u_.b ? 1 : 0) : u_.i; }
  double as_float() const;  // any number
  // String; Undefined: the error message that using it raises.
  const std::string &str() const;
  const SeqObj &seq_obj() const;
  const std::vector<Value> &items() const;  // Seq
  SeqKind seq_kind() const;
  const DictObj &dict_obj() const;
  Namespace *ns_ptr() const { return u_.ns; }
  const Callable &fn() const;
  const LoopObj &loop_obj() const;
  // Nesting depth: 0 for scalars, 1 + the deepest element for containers.
  int depth() const;
  // The shared heap object, for Python's `is` (identity) comparison.
  const Object *identity() const { return obj_.get(); }

 private:
  Kind kind_ = Kind::Undefined;
  union {
    bool b;
    int64_t i;
    double f;
    Namespace *ns;
  } u_{};
  std::shared_ptr<const Object> obj_;
};

struct SeqObj : Object {
  std::vector<Value> items;
  SeqKind kind = SeqKind::List;
  int depth = 1;
};

// Insertion-ordered, like Python's dict. Keys compare with Python equality.
struct DictObj : Object {
  std::vector<std::pair<Value, Value>> items;
  int depth = 1;
  const Value *find(const Value &key) const;
  const Value *find(std::string_view key) const;
};

// jinja2's namespace(): the one mutable object (`{% set ns.x = ... %}`).
struct Namespace {
  std::vector<std::pair<std::string, Value>> attrs;
  const Value *find(std::string_view name) const;
  void set(const std::string &name, Value v);
};

struct Args {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
  // Positional argument i or keyword `name` (or nullptr), as Python binds them.
  const Value *get(size_t i, const char *name) const;
  // Fails unless every argument is one of `names` (in order) and at most one each.
  void check(const char *fn, std::initializer_list<const char *> names) const;
};

struct Callable : Object {
  std::string name;
  virtual Value call(Interp &in, const Args &args) const = 0;
  // Depth of the values it holds (a bound method holds its object).
  virtual int depth() const { return 0; }
};

// The `loop` variable of a for loop. The interpreter advances `index0`.
struct LoopObj : Object {
  mutable size_t index0 = 0;
  Value items;  // the (filtered) sequence iterated, a list
};

// ---- Python semantics ----------------------------------------------------------

bool truthy(const Value &v);
// Python ==, with jinja2's Undefined == Undefined.
bool equal(const Value &a, const Value &b);
// Python <; fails with a TypeError message for unorderable operands.
bool less(const Value &a, const Value &b);
// Python type name for error messages ("str", "int", "NoneType", ...).
const char *type_name(const Value &v);
// str(v) as jinja2 prints it; Undefined prints as "".
std::string to_str(const Value &v);
// repr(v) as Python writes it inside a printed list or dict.
std::string repr(const Value &v);
std::string float_repr(double f);
struct JsonOptions {
  bool ensure_ascii = false;
  bool sort_keys = false;
  bool indent_set = false;
  std::string indent;  // when indent_set
  std::string item_sep = ", ";
  std::string key_sep = ": ";
};
// json.dumps(v, ...) as transformers' tojson filter calls it.
std::string to_json(const Value &v, const JsonOptions &options);

// ---- UTF-8 and Python str helpers ----------------------------------------------

// Decodes valid UTF-8; a byte that does not start a valid sequence counts as one
// code point of its own value (the interpreter repairs its input beforehand, so
// this only keeps hostile bytes from crashing anything).
std::vector<uint32_t> code_points(std::string_view s);
void append_utf8(std::string &out, uint32_t cp);
std::string from_code_points(const std::vector<uint32_t> &cps, size_t begin, size_t end);
size_t code_point_count(std::string_view s);
// Python str.isspace() for one code point.
bool py_isspace(uint32_t cp);
// str.strip/lstrip/rstrip; chars == nullptr strips whitespace.
std::string py_strip(std::string_view s, const std::string *chars, bool left, bool right);
std::vector<std::string> py_split(std::string_view s, const std::string *sep, int64_t maxsplit, bool from_right);
std::string py_replace(std::string_view s, std::string_view old, std::string_view repl, int64_t count,
                       size_t max_bytes);
std::string py_upper(std::string_view s);
std::string py_lower(std::string_view s);
std::string py_capitalize(std::string_view s);
std::string py_title(std::string_view s);   // str.title()
std::string jinja_title(std::string_view s);  // the `title` filter

}  // namespace llm::jinja
