// Owning handles of the C API's models and sessions, for tests.
#pragma once

#include <memory>

#include "llm.h"

namespace llm_test {

struct ModelDeleter {
  void operator()(llm_model *m) const { llm_model_free(m); }
};
struct SessionDeleter {
  void operator()(llm_session *s) const { llm_session_free(s); }
};
using ModelPtr = std::unique_ptr<llm_model, ModelDeleter>;
using SessionPtr = std::unique_ptr<llm_session, SessionDeleter>;

}  // namespace llm_test
