// llm chat: an interactive multi-turn chat on stdin/stdout.
//
// One session holds the whole conversation. Each turn renders the messages
// with the model's chat template and evaluates only the text after what the
// session already holds: the conversation so far is a prefix of the new
// rendering for every ordinary template, so a turn costs the tokens of the
// new message and the template's markup around it, not the whole history.
// A template that rewrites earlier turns (the prefix check fails) makes the
// turn start over from an empty context, which --stats reports.
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unistd.h>
#include <vector>

#include "llm.h"

namespace {

const char kUsage[] =
    "usage: llm chat -m MODEL [--system TEXT] [-n 256] [--temp 0.7] [--top-k 40] [--top-p 0.95]\n"
    "                [--min-p 0.05] [--repeat-penalty 1.1] [--seed 0] [--ctx N] [-t N] [--no-verify]\n"
    "                [--kv f16|f32|bf16|int8|int4] [--device cpu|cuda|cuda:N] [--stats]\n"
    "Reads one user message per line from stdin and streams the replies to stdout.\n"
    "Lines /reset (forget the conversation) and /quit are commands; end of input quits.\n"
    "A model without a chat template is driven with a plain \"User: / Assistant:\" format.\n";

struct ChatOptions {
  std::string model, system, device = "cpu";
  int32_t n_predict = 256, top_k = 40, n_ctx = 0, n_threads = 0, kv_type = LLM_KV_DEFAULT;
  float temp = 0.7f, top_p = 0.95f, min_p = 0.05f, repeat_penalty = 1.1f;
  uint64_t seed = 0;
  bool verify = true, stats = false;
};

[[noreturn]] void fail(const std::string &what) {
  std::fprintf(stderr, "llm chat: %s\n", what.c_str());
  std::exit(1);
}

void check(llm_status st, const char *what) {
  if (st != LLM_OK) fail(std::string(what) + ": " + llm_status_string(st) + ": " + llm_last_error());
}

double number(const char *key, const char *v) {
  char *end = nullptr;
  double x = std::strtod(v, &end);
  if (!end || *end || end == v) fail(std::string("invalid number for ") + key + ": " + v);
  return x;
}

ChatOptions parse(int argc, char **argv) {
  ChatOptions o;
  for (int i = 2; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "-h" || k == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (k == "--stats") { o.stats = true; continue; }
    if (k == "--no-verify") { o.verify = false; continue; }
    if (i + 1 >= argc) fail("option " + k + " needs a value");
    const char *v = argv[++i];
    if (k == "-m" || k == "--model") o.model = v;
    else if (k == "--system") o.system = v;
    else if (k == "--device") o.device = v;
    else if (k == "-n") o.n_predict = static_cast<int32_t>(number(k.c_str(), v));
    else if (k == "--temp") o.temp = static_cast<float>(number(k.c_str(), v));
    else if (k == "--top-k") o.top_k = static_cast<int32_t>(number(k.c_str(), v));
    else if (k == "--top-p") o.top_p = static_cast<float>(number(k.c_str(), v));
    else if (k == "--min-p") o.min_p = static_cast<float>(number(k.c_str(), v));
    else if (k == "--repeat-penalty") o.repeat_penalty = static_cast<float>(number(k.c_str(), v));
    else if (k == "--seed") o.seed = static_cast<uint64_t>(number(k.c_str(), v));
    else if (k == "--ctx") o.n_ctx = static_cast<int32_t>(number(k.c_str(), v));
    else if (k == "--kv") {
      const std::string t = v;
      if (t == "f32") o.kv_type = LLM_KV_F32;
      else if (t == "f16") o.kv_type = LLM_KV_F16;
      else if (t == "bf16") o.kv_type = LLM_KV_BF16;
      else if (t == "int8") o.kv_type = LLM_KV_INT8;
      else if (t == "int4") o.kv_type = LLM_KV_INT4;
      else fail("invalid KV type for --kv: " + t + " (f32, f16, bf16, int8 or int4)");
    }
    else if (k == "-t" || k == "--threads") o.n_threads = static_cast<int32_t>(number(k.c_str(), v));
    else fail("unknown option " + k + "\n" + kUsage);
  }
  if (o.model.empty()) fail(std::string("-m MODEL is required\n") + kUsage);
  return o;
}

struct Message {
  std::string role, content;
};

// The conversation as the model's template renders it; plain "Role: text"
// lines when the model has none.
class Renderer {
 public:
  explicit Renderer(const llm_model *model) : model_(model) {
    llm_chat_message probe = {"user", "x"};
    size_t len = 0;
    llm_status st = llm_chat_apply_template(model_, &probe, 1, 1, nullptr, 0, &len);
    has_template_ = st == LLM_OK || st == LLM_ERR_BUFFER_TOO_SMALL;
    if (!has_template_)
      std::fprintf(stderr, "llm chat: the model has no usable chat template (%s); using a plain "
                           "\"User: / Assistant:\" format\n", llm_last_error());
  }

  std::string render(const std::vector<Message> &messages, bool add_generation_prompt) const {
    if (!has_template_) return render_plain(messages, add_generation_prompt);
    std::vector<llm_chat_message> m;
    for (const Message &x : messages) m.push_back({x.role.c_str(), x.content.c_str()});
    std::string out(256, '\0');
    size_t len = 0;
    llm_status st = llm_chat_apply_template(model_, m.data(), m.size(), add_generation_prompt, out.data(),
                                            out.size(), &len);
    if (st == LLM_ERR_BUFFER_TOO_SMALL) {
      out.resize(len + 1);
      st = llm_chat_apply_template(model_, m.data(), m.size(), add_generation_prompt, out.data(), out.size(),
                                   &len);
    }
    check(st, "rendering the chat template");
    out.resize(len);
    return out;
  }

  // The plain format stops a reply at the next "User:" line. (The token that
  // completed the stop string stays in the session although its text is not
  // part of the reply: a small inexactness of this fallback.)
  const char *stop_string() const { return has_template_ ? nullptr : "\nUser:"; }

 private:
  static std::string render_plain(const std::vector<Message> &messages, bool add_generation_prompt) {
    std::string out;
    for (const Message &x : messages) {
      std::string role = x.role;
      if (!role.empty()) role[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(role[0])));
      // A reply is stored as generated after "Assistant:" (its leading space
      // included), so the rendering keeps what the session holds as a prefix.
      out += role + (x.role == "assistant" ? ":" : ": ") + x.content + "\n";
    }
    if (add_generation_prompt) out += "Assistant:";
    return out;
  }

  const llm_model *model_;
  bool has_template_ = false;
};

struct Reply {
  std::string text;
  size_t n_generated = 0;
};

int on_piece(const char *piece, size_t len, llm_token token, void *user) {
  auto *r = static_cast<Reply *>(user);
  std::fwrite(piece, 1, len, stdout);
  std::fflush(stdout);
  r->text.append(piece, len);
  if (token >= 0) ++r->n_generated;
  return 0;
}

size_t count_tokens(const llm_model *model, const std::string &text, bool add_special) {
  size_t n = 0;
  llm_status st = llm_tokenize(model, text.data(), text.size(), add_special, nullptr, 0, &n);
  if (st != LLM_OK && st != LLM_ERR_BUFFER_TOO_SMALL) check(st, "tokenize");
  return n;
}

size_t n_tokens(const llm_session *session) {
  size_t n = 0;
  check(llm_session_n_tokens(session, &n), "session size");
  return n;
}

}  // namespace

int cmd_chat(int argc, char **argv) {
  const ChatOptions o = parse(argc, argv);
  llm_model_params mp;
  llm_model_params_init(&mp);
  mp.n_threads = o.n_threads;
  mp.device = o.device.c_str();
  if (!o.verify) mp.verify = LLM_VERIFY_NONE;
  llm_model *model = nullptr;
  check(llm_model_load(o.model.c_str(), &mp, &model), "loading the model");
  llm_session_params sp;
  llm_session_params_init(&sp);
  sp.n_ctx = o.n_ctx;
  sp.kv_type = o.kv_type;
  llm_session *session = nullptr;
  check(llm_session_create(model, &sp, &session), "creating the session");
  const Renderer renderer(model);

  llm_generate_params gp;
  llm_generate_params_init(&gp);
  gp.max_tokens = o.n_predict;
  gp.temperature = o.temp;
  gp.top_k = o.top_k;
  gp.top_p = o.top_p;
  gp.min_p = o.min_p;
  gp.repeat_penalty = o.repeat_penalty;
  gp.seed = o.seed;
  if (const char *stop = renderer.stop_string()) {
    gp.stop[0] = stop;
    gp.n_stop = 1;
  }

  std::vector<Message> messages;
  if (!o.system.empty()) messages.push_back({"system", o.system});
  // The text whose tokens the session holds: every prompt evaluated so far
  // and the replies as delivered.
  std::string held;
  const bool interactive = isatty(STDIN_FILENO) != 0;
  std::string line;
  int turn = 0;
  for (;;) {
    if (interactive) {
      std::fputs("> ", stdout);
      std::fflush(stdout);
    }
    line.clear();
    int c;
    while ((c = std::fgetc(stdin)) != EOF && c != '\n') line.push_back(static_cast<char>(c));
    if (c == EOF && line.empty()) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (!interactive) std::printf("> %s\n", line.c_str());  // a readable transcript of scripted input
    if (line == "/quit" || line == "/exit") break;
    if (line == "/reset") {
      messages.resize(o.system.empty() ? 0 : 1);
      held.clear();
      check(llm_session_reset(session), "reset");
      std::fputs("(conversation cleared)\n", stdout);
      continue;
    }
    ++turn;
    messages.push_back({"user", line});
    const std::string rendered = renderer.render(messages, true);
    const size_t before = n_tokens(session);
    std::string prompt;
    bool restarted = false;
    if (rendered.compare(0, held.size(), held) == 0) {
      prompt = rendered.substr(held.size());
    } else {
      // The template changed text it rendered before: start over.
      check(llm_session_reset(session), "reset");
      prompt = rendered;
      held.clear();
      restarted = true;
    }
    const size_t prompt_tokens = count_tokens(model, prompt, n_tokens(session) == 0);

    Reply reply;
    llm_status st = llm_generate(session, prompt.c_str(), &gp, on_piece, &reply);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    if (st == LLM_ERR_CONTEXT_FULL) {
      std::fprintf(stderr, "llm chat: the conversation no longer fits in the context (%s); /reset to start "
                           "again\n", llm_last_error());
      messages.pop_back();
      continue;
    }
    check(st, "generate");
    held += prompt + reply.text;
    messages.push_back({"assistant", reply.text});
    if (o.stats) {
      std::fprintf(stderr,
                   "llm chat: turn %d: context %zu -> %zu tokens; evaluated %zu prompt tokens (the whole "
                   "conversation renders to %zu) + %zu generated; %s; stop reason %d\n",
                   turn, before, n_tokens(session), prompt_tokens, count_tokens(model, rendered, true),
                   reply.n_generated, restarted ? "restarted" : "continued", llm_session_stop_reason(session));
    }
    if (llm_session_stop_reason(session) == LLM_STOP_CONTEXT_FULL)
      std::fprintf(stderr, "llm chat: the context is full; /reset to start again\n");
  }
  llm_session_free(session);
  llm_model_free(model);
  return 0;
}
