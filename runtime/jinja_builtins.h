// Built-in filters, tests, globals and methods of the Jinja interpreter
// (jinja_builtins.cpp). Names jinja2 knows but this subset does not implement
// fail with LLM_ERR_UNSUPPORTED when reached; names jinja2 does not know fail
// at parse time, as jinja2 reports unknown filters when compiling.
#pragma once

#include <string>
#include <string_view>

#include "runtime/jinja_value.h"

namespace llm::jinja {

bool is_jinja_filter(std::string_view name);
bool is_jinja_test(std::string_view name);

// `value | name(args)`.
Value apply_filter(Interp &in, const std::string &name, const Value &value, const Args &args);
// `value is name(args)`.
bool apply_test(Interp &in, const std::string &name, const Value &value, const Args &args);
// Global functions and objects (range, namespace, raise_exception, ...), or
// Undefined if `name` is none of them.
Value lookup_global(const std::string &name);
// `obj.name` for str, dict and list methods: a bound method, or Undefined if
// Python has no such attribute. Fails for methods outside the subset.
Value lookup_method(const Value &obj, const std::string &name);

}  // namespace llm::jinja
