// Error type used inside libllm and its tools. The C API layer converts it to
// an llm_status plus the thread-local message; nothing else catches it.
#pragma once

#include <stdexcept>
#include <string>

#include "llm.h"

namespace llm {

class Error : public std::runtime_error {
 public:
  Error(llm_status status, const std::string &message)
      : std::runtime_error(message), status_(status) {}
  llm_status status() const { return status_; }

 private:
  llm_status status_;
};

[[noreturn]] inline void fail(llm_status status, const std::string &message) {
  throw Error(status, message);
}

// Shorthands for the most common failures.
[[noreturn]] inline void fail_format(const std::string &message) {
  throw Error(LLM_ERR_FORMAT, message);
}
[[noreturn]] inline void fail_argument(const std::string &message) {
  throw Error(LLM_ERR_INVALID_ARGUMENT, message);
}

}  // namespace llm
