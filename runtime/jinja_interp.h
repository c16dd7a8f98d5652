// Evaluator of parsed Jinja templates (jinja_syntax.h) with jinja2's runtime
// semantics under transformers' ImmutableSandboxedEnvironment: scoping (a for
// loop body is a fresh scope per iteration, `if` is not a scope), Undefined
// values, attribute-then-item lookup, loop controls.
//
// A render is bounded in output size, work, loop iterations and recursion so
// that hostile templates fail with an error instead of exhausting the process.
#pragma once

#include <ctime>
#include <deque>
#include <string_view>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/jinja_syntax.h"
#include "runtime/jinja_value.h"

namespace llm::jinja {

struct RenderLimits {
  size_t max_output_bytes = size_t{1} << 20;  // also the largest string or list built
  uint64_t max_loop_iterations = 1000000;      // over all loops of a render
  uint64_t max_steps = 20000000;               // evaluation steps, plus bytes built / 16
  int max_call_depth = 32;                     // nested macro calls
  int max_eval_depth = 400;                    // nested statements and expressions
};

struct RenderOptions {
  RenderLimits limits;
  // The local time strftime_now() formats; unset means the current time.
  std::optional<std::tm> now;
};

using Variables = std::vector<std::pair<std::string, Value>>;

// Parses and renders in one call.
std::string render(std::string_view source, const Variables &vars, const RenderOptions &options);

struct Frame;

class Interp {
 public:
  explicit Interp(const RenderOptions &options);
  ~Interp();
  Interp(const Interp &) = delete;
  Interp &operator=(const Interp &) = delete;

  std::string render(const Template &tmpl, const Variables &vars);

  // ---- services for the built-ins --------------------------------------------
  Value call(const Value &fn, const Args &args);
  // jinja2's getattr (attribute, then item) and getitem (item, then attribute).
  Value get_attr(const Value &obj, const std::string &name);
  Value get_item(const Value &obj, const Value &key);
  // The elements a for loop over v visits; fails for non-iterables.
  std::vector<Value> iterate(const Value &v);
  Namespace *new_namespace();
  // Accounts for building `bytes` of data; fails past the limits.
  void charge(size_t bytes);
  // Fails if a string or list of `n` bytes/elements would exceed the limit.
  void check_size(size_t n) const;
  size_t max_size() const { return options_.limits.max_output_bytes; }
  std::tm now() const;

 private:
  friend struct MacroFn;
  enum class Flow { Normal, Break, Continue };

  Flow exec(const Body &body, Frame &frame);
  Flow exec_stmt(const Stmt &s, Frame &frame);
  void exec_for(const Stmt &s, Frame &frame);
  void exec_set(const Stmt &s, Frame &frame);
  void exec_macro_def(const Stmt &s, Frame &frame);
  std::string capture(const Body &body, Frame &frame);
  void assign(const Target &t, const Value &v, Frame &frame);
  void emit(const std::string &text);

  Value eval(const Expr &e, Frame &frame);
  Value eval_kids(const Expr &e, Frame &frame);
  Value eval_call(const Expr &e, Frame &frame);
  Value eval_filter(const Expr &e, const Value &operand, Frame &frame);
  Value eval_compare(const Expr &e, Frame &frame);
  Value eval_slice(const Expr &e, Frame &frame);
  Args eval_args(const Expr &e, Frame &frame);
  Value lookup(const std::string &name, const Frame &frame) const;
  void step();

  struct DepthGuard;

  RenderOptions options_;
  std::string *out_ = nullptr;
  Frame *root_ = nullptr;
  std::deque<Namespace> namespaces_;  // owned here so cycles through them cannot leak
  uint64_t steps_ = 0;
  uint64_t iterations_ = 0;
  int depth_ = 0;
  int call_depth_ = 0;
};

// Python's binary operators as jinja2 applies them ("+", "//", "~", ...).
Value binary_op(Interp &in, const std::string &op, const Value &a, const Value &b);
// Python's `item in container`.
bool contains(const Value &container, const Value &item);
[[noreturn]] void fail_undefined(const Value &v);

}  // namespace llm::jinja
