// Chat-template rendering: the Jinja template a model ships in its
// tokenizer_config.json, applied to a conversation the way transformers'
// apply_chat_template does (jinja2 sandbox with trim_blocks and lstrip_blocks,
// raise_exception, strftime_now, transformers' tojson). The interpreter covers
// the subset of Jinja that published chat templates use (runtime/jinja_*.h);
// anything else fails with LLM_ERR_UNSUPPORTED rather than rendering wrongly.
#pragma once

#include <ctime>
#include <optional>
#include <string>
#include <vector>

namespace llm {

struct ChatMessage {
  std::string role;
  std::string content;
};

struct ChatTemplateOptions {
  // The local time strftime_now() reports; unset means the current time
  // (tests fix it).
  std::optional<std::tm> now;
};

// Renders `messages` with the Jinja source `tmpl`. Invalid UTF-8 in the
// template or the messages is first repaired to U+FFFD. Throws llm::Error:
//   LLM_ERR_UNSUPPORTED       empty template, Jinja features outside the
//                             subset, or a render past the size/work limits;
//   LLM_ERR_INVALID_ARGUMENT  malformed template, or an error jinja2 raises
//                             too (raise_exception, undefined attribute
//                             access, type errors).
std::string render_chat_template(const std::string &tmpl, const std::vector<ChatMessage> &messages,
                                 bool add_generation_prompt, const std::string &bos_token,
                                 const std::string &eos_token, const ChatTemplateOptions &options = {});

// A broken-down time for ChatTemplateOptions::now (month 1-12), with the
// weekday and day of the year filled in.
std::tm make_local_time(int year, int month, int day, int hour, int minute, int second);

}  // namespace llm
