// Helpers shared by the C API's translation units (c_api.cpp defines the
// non-template functions): the model handle, the thread-local error message,
// conversion of C++ exceptions into llm_status, and buffer copy-out.
#pragma once

#include <cstddef>
#include <exception>
#include <memory>
#include <new>
#include <string>

#include "format/error.h"
#include "llm.h"
#include "runtime/model.h"

struct llm_model {
  std::unique_ptr<llm::Model> model;
};

namespace llm::capi {

// Records `msg` as the calling thread's llm_last_error() and returns `st`.
llm_status set_error(llm_status st, const std::string &msg);
// The calling thread's last message.
const char *last_error();

// Runs f(), converting every exception into a status and message.
template <class F>
llm_status guarded(F &&f) {
  try {
    f();
    return LLM_OK;
  } catch (const llm::Error &e) {
    return set_error(e.status(), e.what());
  } catch (const std::bad_alloc &) {
    return set_error(LLM_ERR_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception &e) {
    return set_error(LLM_ERR_INTERNAL, std::string("internal error: ") + e.what());
  } catch (...) {
    return set_error(LLM_ERR_INTERNAL, "internal error: unknown exception");
  }
}

// Sets *len_out to text.size() and copies text (NUL-terminated when room is
// left) into out; LLM_ERR_BUFFER_TOO_SMALL when it does not fit.
llm_status copy_out_text(const std::string &text, char *out, size_t capacity, size_t *len_out);

}  // namespace llm::capi
