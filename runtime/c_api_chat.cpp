// C API: llm_chat_apply_template (include/llm.h). Argument checks here; the
// rendering is runtime/chat_template.h.
#include <string>
#include <vector>

#include "llm.h"
#include "runtime/c_api_util.h"
#include "runtime/chat_template.h"

namespace {

// Text of a special token, or "" when the model has none.
std::string token_text(const llm::Model &model, int32_t id) {
  const auto &vocab = model.tokenizer().spec().vocab;
  if (id < 0 || static_cast<size_t>(id) >= vocab.size()) return {};
  return vocab[static_cast<size_t>(id)];
}

}  // namespace

extern "C" llm_status llm_chat_apply_template(const llm_model *model, const llm_chat_message *messages, size_t n,
                                              int add_generation_prompt, char *buf, size_t capacity,
                                              size_t *len_out) {
  using llm::capi::set_error;
  if (!model) return set_error(LLM_ERR_INVALID_ARGUMENT, "model is NULL");
  if (!len_out) return set_error(LLM_ERR_INVALID_ARGUMENT, "len_out is NULL");
  *len_out = 0;
  if (!messages && n > 0) return set_error(LLM_ERR_INVALID_ARGUMENT, "messages is NULL");
  if (!buf && capacity > 0) return set_error(LLM_ERR_INVALID_ARGUMENT, "buf is NULL but capacity is not 0");
  for (size_t i = 0; i < n; ++i) {
    if (!messages[i].role)
      return set_error(LLM_ERR_INVALID_ARGUMENT, "messages[" + std::to_string(i) + "].role is NULL");
    if (!messages[i].content)
      return set_error(LLM_ERR_INVALID_ARGUMENT, "messages[" + std::to_string(i) + "].content is NULL");
  }
  llm_status st = LLM_OK;
  llm_status g = llm::capi::guarded([&] {
    const llm::Model &m = *model->model;
    const llm::GenerationConfig &gen = m.meta().generation;
    std::vector<llm::ChatMessage> conversation;
    conversation.reserve(n);
    for (size_t i = 0; i < n; ++i) conversation.push_back({messages[i].role, messages[i].content});
    std::string text = llm::render_chat_template(gen.chat_template, conversation, add_generation_prompt != 0,
                                                 token_text(m, gen.bos_id),
                                                 gen.eos_ids.empty() ? std::string() : token_text(m, gen.eos_ids[0]));
    st = llm::capi::copy_out_text(text, buf, capacity, len_out);
  });
  return g != LLM_OK ? g : st;
}
