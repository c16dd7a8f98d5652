// Chat templates: the variables transformers passes to the template, and the
// render limits. See chat_template.h.
#include "runtime/chat_template.h"

#include "format/error.h"
#include "runtime/jinja_interp.h"
#include "runtime/unicode.h"

namespace llm {

namespace {

std::string repaired(const std::string &s) {
  if (unicode::is_valid_utf8(s)) return s;
  std::string out;
  unicode::append_lossy_utf8(out, s);
  return out;
}

}  // namespace

std::tm make_local_time(int year, int month, int day, int hour, int minute, int second) {
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  std::time_t t = timegm(&tm);  // normalizes and fills tm_wday / tm_yday
  std::tm out{};
  gmtime_r(&t, &out);
  return out;
}

std::string render_chat_template(const std::string &tmpl, const std::vector<ChatMessage> &messages,
                                 bool add_generation_prompt, const std::string &bos_token,
                                 const std::string &eos_token, const ChatTemplateOptions &options) {
  if (tmpl.empty()) throw Error(LLM_ERR_UNSUPPORTED, "the model has no chat template");
  using jinja::Value;
  size_t input_bytes = tmpl.size() + bos_token.size() + eos_token.size();
  std::vector<Value> list;
  for (const ChatMessage &m : messages) {
    input_bytes += m.role.size() + m.content.size();
    list.push_back(Value::dict({{Value::string("role"), Value::string(repaired(m.role))},
                                {Value::string("content"), Value::string(repaired(m.content))}}));
  }
  jinja::Variables vars = {
      {"messages", Value::seq(std::move(list))},
      {"tools", Value::none()},
      {"documents", Value::none()},
      {"add_generation_prompt", Value::boolean(add_generation_prompt)},
      {"bos_token", Value::string(repaired(bos_token))},
      {"eos_token", Value::string(repaired(eos_token))},
  };
  jinja::RenderOptions ro;
  ro.now = options.now;
  // Real templates copy each message a few times; the limits grow with the
  // input so that long conversations render while runaway templates stop.
  ro.limits.max_output_bytes = (size_t{1} << 20) + 4 * input_bytes;
  ro.limits.max_steps = 20000000 + 2 * static_cast<uint64_t>(input_bytes);
  return jinja::render(repaired(tmpl), vars, ro);
}

}  // namespace llm
