// Greedy decoding through the C API, for the reference tests.
#pragma once

#include <gtest/gtest.h>

#include <vector>

#include "llm.h"
#include "tests/common/handles.h"

namespace llm_test {

// Evaluates `prompt` in a fresh session with default parameters, then
// samples and evaluates n tokens greedily. Records a test failure and
// returns what it has on any error.
inline std::vector<llm_token> greedy_continuation(llm_model *model, const std::vector<llm_token> &prompt, size_t n) {
  std::vector<llm_token> got;
  llm_session *raw = nullptr;
  if (llm_session_create(model, nullptr, &raw) != LLM_OK) {
    ADD_FAILURE() << llm_last_error();
    return got;
  }
  SessionPtr s(raw);
  if (llm_session_eval(s.get(), prompt.data(), prompt.size()) != LLM_OK) {
    ADD_FAILURE() << llm_last_error();
    return got;
  }
  llm_generate_params gp;
  llm_generate_params_init(&gp);
  gp.temperature = 0;
  for (size_t i = 0; i < n; ++i) {
    llm_token t = -1;
    if (llm_session_sample(s.get(), &gp, &t) != LLM_OK || llm_session_eval(s.get(), &t, 1) != LLM_OK) {
      ADD_FAILURE() << llm_last_error();
      break;
    }
    got.push_back(t);
  }
  return got;
}

}  // namespace llm_test
