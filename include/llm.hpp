/*
 * llm.hpp - header-only C++17 wrapper over the libllm C API (llm.h).
 *
 * The C header stays the only ABI: everything here is inline code calling
 * llm_* functions, so a program built with this header links against the
 * same shared or static library as a C program.
 *
 *   llm::cpp::Model model("model.llm");
 *   llm::cpp::Session session = model.session();
 *   llm::cpp::GenerateParams params;
 *   params.max_tokens = 64;
 *   session.generate("Once upon a time", params, [](std::string_view piece) {
 *     std::cout << piece << std::flush;
 *   });
 *
 * Names live in namespace llm::cpp, apart from the runtime's internal C++
 * classes (llm::Model, llm::Session, llm::Error), so both can appear in one
 * program without clashing.
 *
 * Errors are thrown as llm::cpp::Error (status + message). Handles are
 * move-only RAII objects; a moved-from object is empty (operator bool is
 * false) and may only be assigned to or destroyed.
 *
 * Thread safety is the C API's: a Model is read-only and may be used from any
 * number of threads at once (all its members are const); a Session is used
 * by one thread at a time, except Session::cancel(), which any thread may
 * call while another one runs eval/generate. A Session keeps its model alive
 * (shared ownership of the llm_model), so destroying the Model object first is
 * safe.
 */
#ifndef LLM_HPP
#define LLM_HPP

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "llm.h"

namespace llm::cpp {

/* ---- Errors ------------------------------------------------------------------- */

/* A failed libllm call: what() is "message (LLM_ERR_...)". */
class Error : public std::runtime_error {
 public:
  Error(llm_status status, std::string message)
      : std::runtime_error(message.empty() ? std::string(llm_status_string(status))
                                           : message + " (" + llm_status_string(status) + ")"),
        status_(status),
        message_(std::move(message)) {}

  llm_status status() const noexcept { return status_; }
  /* The library's message alone. */
  const std::string &message() const noexcept { return message_; }
  /* "LLM_ERR_IO", ... */
  const char *status_name() const noexcept { return llm_status_string(status_); }

 private:
  llm_status status_;
  std::string message_;
};

namespace detail {

/* Throws the calling thread's last error for a failed status. */
inline void check(llm_status status) {
  if (status != LLM_OK) throw Error(status, llm_last_error());
}

/* Calls f(buffer, capacity, &size) by the header's buffer rules until the
 * buffer is big enough; returns the filled container. */
template <class Container, class F>
Container fill(size_t initial, F &&f) {
  Container out(initial > 0 ? initial : 1, typename Container::value_type());
  for (int attempt = 0; attempt < 4; ++attempt) {
    size_t n = 0;
    llm_status st = f(out.data(), out.size(), &n);
    if (st == LLM_OK) {
      out.resize(n < out.size() ? n : out.size());
      return out;
    }
    if (st != LLM_ERR_BUFFER_TOO_SMALL || n <= out.size()) check(st);
    out.resize(n);
  }
  throw Error(LLM_ERR_INTERNAL, "the required buffer size kept changing");
}

/* The state of one generate() call, seen by the C callback below. */
struct StreamContext {
  bool (*invoke)(void *callback, std::string_view piece, llm_token token);
  void *callback;
  std::exception_ptr error;
};

extern "C" {
/* The llm_stream_fn: calls the user's callback; an exception it throws is
 * caught here (nothing unwinds through the C library), stops generation, and
 * is rethrown once llm_generate has returned. C language linkage, internal
 * linkage: no symbol is exported and no ODR question arises. */
static inline int llm_cpp_stream_trampoline(const char *piece, size_t len, llm_token token,
                                            void *user_data) noexcept {
  auto *ctx = static_cast<StreamContext *>(user_data);
  if (ctx->error) return 1;
  try {
    std::string_view text = piece ? std::string_view(piece, len) : std::string_view();
    return ctx->invoke(ctx->callback, text, token) ? 0 : 1;
  } catch (...) {
    ctx->error = std::current_exception();
    return 1;
  }
}
}

/* Calls a callback taking (piece) or (piece, token) and returning void
 * (continue) or something convertible to bool (true: continue). */
template <class F>
bool invoke_callback(void *callback, std::string_view piece, llm_token token) {
  F &f = *static_cast<F *>(callback);
  if constexpr (std::is_invocable_v<F &, std::string_view, llm_token>) {
    if constexpr (std::is_void_v<std::invoke_result_t<F &, std::string_view, llm_token>>) {
      f(piece, token);
      return true;
    } else {
      return static_cast<bool>(f(piece, token));
    }
  } else {
    static_assert(std::is_invocable_v<F &, std::string_view>,
                  "the generate() callback must take (std::string_view) or (std::string_view, llm_token)");
    if constexpr (std::is_void_v<std::invoke_result_t<F &, std::string_view>>) {
      f(piece);
      return true;
    } else {
      return static_cast<bool>(f(piece));
    }
  }
}

inline std::string opt_string(const char *s) { return s ? std::string(s) : std::string(); }

}  // namespace detail

/* "MAJOR.MINOR.PATCH" and LLM_API_VERSION of the library actually loaded. */
inline std::string version() { return llm_version(); }
inline int api_version() { return llm_api_version(); }

/* ---- Parameters ----------------------------------------------------------------- */
/* Each default constructor takes the library's defaults (llm_*_params_init). */

struct ModelParams {
  int32_t n_threads;    /* CPU worker threads; 0 = number of online cores */
  std::string device;   /* "" (default) or "cpu" */
  llm_verify verify;    /* LLM_VERIFY_FULL (default) or LLM_VERIFY_NONE */

  ModelParams() {
    llm_model_params p;
    llm_model_params_init(&p);
    n_threads = p.n_threads;
    verify = static_cast<llm_verify>(p.verify);
  }
};

struct SessionParams {
  int32_t n_ctx;          /* 0 = the model's context length */
  int32_t n_batch;        /* 0 = min(512, n_ctx) */
  bool logits_all;        /* keep logits of every position of the last eval */
  uint64_t memory_limit;  /* 0 = no limit */

  SessionParams() {
    llm_session_params p;
    llm_session_params_init(&p);
    n_ctx = p.n_ctx;
    n_batch = p.n_batch;
    logits_all = p.logits_all != 0;
    memory_limit = p.memory_limit;
  }

  llm_session_params to_c() const {
    llm_session_params p;
    llm_session_params_init(&p);
    p.n_ctx = n_ctx;
    p.n_batch = n_batch;
    p.logits_all = logits_all ? 1 : 0;
    p.memory_limit = memory_limit;
    return p;
  }
};

struct GenerateParams {
  int32_t max_tokens;      /* <= 0: until end-of-generation or a full context */
  float temperature;       /* <= 0: greedy */
  int32_t top_k;           /* 0 = off */
  float top_p;             /* 1 = off */
  float min_p;             /* 0 = off */
  float repeat_penalty;    /* 1 = off */
  int32_t repeat_last_n;
  uint64_t seed;
  bool add_special;        /* add BOS etc. when the session is empty */
  bool parse_special;      /* recognise special-token strings in the prompt */
  std::vector<std::string> stop;  /* at most LLM_MAX_STOP_STRINGS */
  bool ignore_eos;

  GenerateParams() {
    llm_generate_params p;
    llm_generate_params_init(&p);
    max_tokens = p.max_tokens;
    temperature = p.temperature;
    top_k = p.top_k;
    top_p = p.top_p;
    min_p = p.min_p;
    repeat_penalty = p.repeat_penalty;
    repeat_last_n = p.repeat_last_n;
    seed = p.seed;
    add_special = p.add_special != 0;
    parse_special = p.parse_special != 0;
    ignore_eos = p.ignore_eos != 0;
  }

  /* The defaults with temperature 0: always the most likely token. */
  static GenerateParams greedy() {
    GenerateParams p;
    p.temperature = 0.0f;
    return p;
  }

  /* The C struct; its stop pointers point into this object's strings. */
  llm_generate_params to_c() const {
    if (stop.size() > LLM_MAX_STOP_STRINGS)
      throw Error(LLM_ERR_INVALID_ARGUMENT, std::to_string(stop.size()) + " stop strings given; at most " +
                                                std::to_string(LLM_MAX_STOP_STRINGS) + " are supported");
    llm_generate_params p;
    llm_generate_params_init(&p);
    p.max_tokens = max_tokens;
    p.temperature = temperature;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.repeat_penalty = repeat_penalty;
    p.repeat_last_n = repeat_last_n;
    p.seed = seed;
    p.add_special = add_special ? 1 : 0;
    p.parse_special = parse_special ? 1 : 0;
    p.ignore_eos = ignore_eos ? 1 : 0;
    for (size_t i = 0; i < stop.size(); ++i) p.stop[i] = stop[i].c_str();
    p.n_stop = static_cast<int32_t>(stop.size());
    return p;
  }
};

enum class StopReason : int {
  None = LLM_STOP_NONE,
  Eos = LLM_STOP_EOS,
  MaxTokens = LLM_STOP_MAX_TOKENS,
  StopString = LLM_STOP_STRING,
  Callback = LLM_STOP_CALLBACK,
  ContextFull = LLM_STOP_CONTEXT_FULL
};

struct ModelInfo {
  std::string architecture;  /* "llama", "qwen2", ... */
  std::string name;
  int32_t vocab_size = 0;
  int32_t context_length = 0;
  int32_t n_layers = 0;
  int32_t hidden_size = 0;
  int32_t n_heads = 0;
  int32_t n_kv_heads = 0;
  uint64_t n_params = 0;
  uint64_t weights_bytes = 0;
  llm_token bos_token = -1;  /* -1 if none */
  llm_token eos_token = -1;  /* -1 if none */
  bool vocab_only = false;
  /* Fields a library older than this header may not fill. */
  std::optional<uint64_t> decode_bytes_per_token;
  std::optional<std::string> weights_type;
};

struct SessionInfo {
  int32_t n_ctx = 0;
  int32_t n_batch = 0;
  int32_t n_tokens = 0;
  uint64_t kv_bytes = 0;
  uint64_t memory_bytes = 0;
};

struct ChatMessage {
  std::string role;  /* "system", "user", "assistant", ... */
  std::string content;
};

class Session;

/* ---- Model ------------------------------------------------------------------------ */

class Model {
 public:
  /* An empty handle. */
  Model() noexcept = default;

  /* Load a model file; throws Error (LLM_ERR_IO naming the path, LLM_ERR_FORMAT, ...). */
  explicit Model(const std::string &path, const ModelParams &params = ModelParams()) {
    llm_model_params p;
    llm_model_params_init(&p);
    p.n_threads = params.n_threads;
    p.device = params.device.empty() ? nullptr : params.device.c_str();
    p.verify = params.verify;
    llm_model *raw = nullptr;
    detail::check(llm_model_load(path.c_str(), &p, &raw));
    model_ = std::shared_ptr<llm_model>(raw, llm_model_free);
    vocab_size_ = raw_info().vocab_size;
  }

  Model(const Model &) = delete;
  Model &operator=(const Model &) = delete;
  Model(Model &&other) noexcept
      : model_(std::move(other.model_)), vocab_size_(std::exchange(other.vocab_size_, 0)) {}
  Model &operator=(Model &&other) noexcept {
    model_ = std::move(other.model_);
    vocab_size_ = std::exchange(other.vocab_size_, 0);
    return *this;
  }

  explicit operator bool() const noexcept { return model_ != nullptr; }
  /* The C handle (owned by this object and its sessions). */
  llm_model *get() const noexcept { return model_.get(); }
  int32_t vocab_size() const noexcept { return vocab_size_; }

  ModelInfo info() const {
    llm_model_info i = raw_info();
    auto has = [&](size_t end) { return i.struct_size >= end; };
    ModelInfo r;
    r.architecture = detail::opt_string(i.architecture);
    r.name = detail::opt_string(i.name);
    r.vocab_size = i.vocab_size;
    r.context_length = i.context_length;
    r.n_layers = i.n_layers;
    r.hidden_size = i.hidden_size;
    r.n_heads = i.n_heads;
    r.n_kv_heads = i.n_kv_heads;
    r.n_params = i.n_params;
    r.weights_bytes = i.weights_bytes;
    r.bos_token = i.bos_token;
    r.eos_token = i.eos_token;
    r.vocab_only = i.vocab_only != 0;
    if (has(offsetof(llm_model_info, decode_bytes_per_token) + sizeof i.decode_bytes_per_token))
      r.decode_bytes_per_token = i.decode_bytes_per_token;
    if (has(offsetof(llm_model_info, weights_type) + sizeof i.weights_type) && i.weights_type)
      r.weights_type = std::string(i.weights_type);
    return r;
  }

  /* Non-zero if `token` ends generation. */
  bool is_eog(llm_token token) const noexcept { return llm_token_is_eog(get(), token) != 0; }

  /* Tokenize UTF-8 text (add_special: BOS etc.; parse_special = false treats
   * special-token strings such as "<s>" as plain text, for untrusted input). */
  std::vector<llm_token> tokenize(std::string_view text, bool add_special = true,
                                  bool parse_special = true) const {
    const int flags = parse_special ? LLM_TOKENIZE_DEFAULT : LLM_TOKENIZE_PARSE_SPECIAL_OFF;
    return detail::fill<std::vector<llm_token>>(text.size() + 4, [&](llm_token *out, size_t cap, size_t *n) {
      return llm_tokenize_ex(get(), text.data(), text.size(), add_special ? 1 : 0, flags, out, cap, n);
    });
  }

  /* Decode ids as Hugging Face's decode(ids) does (special tokens kept). */
  std::string detokenize(const llm_token *tokens, size_t n) const {
    return detail::fill<std::string>(n * 8 + 16, [&](char *out, size_t cap, size_t *len) {
      return llm_detokenize(get(), tokens, n, out, cap, len);
    });
  }
  std::string detokenize(const std::vector<llm_token> &tokens) const {
    return detokenize(tokens.data(), tokens.size());
  }

  /* The raw bytes of one token's piece (may be part of a UTF-8 sequence). */
  std::string token_to_piece(llm_token token) const {
    return detail::fill<std::string>(32, [&](char *out, size_t cap, size_t *len) {
      return llm_token_to_piece(get(), token, out, cap, len);
    });
  }

  /* Render a chat with the model's template (LLM_ERR_UNSUPPORTED if it has none). */
  std::string apply_chat_template(const std::vector<ChatMessage> &messages,
                                  bool add_generation_prompt = true) const {
    std::vector<llm_chat_message> raw;
    raw.reserve(messages.size());
    size_t guess = 64;
    for (const ChatMessage &m : messages) {
      raw.push_back(llm_chat_message{m.role.c_str(), m.content.c_str()});
      guess += m.role.size() + m.content.size() + 32;
    }
    return detail::fill<std::string>(guess, [&](char *out, size_t cap, size_t *len) {
      return llm_chat_apply_template(get(), raw.data(), raw.size(), add_generation_prompt ? 1 : 0, out, cap,
                                     len);
    });
  }

  /* Bytes a session with these parameters would reserve. */
  uint64_t memory_required(const SessionParams &params = SessionParams()) const {
    llm_session_params p = params.to_c();
    uint64_t bytes = 0;
    detail::check(llm_session_memory_required(get(), &p, &bytes));
    return bytes;
  }

  /* A new session on this model (defined below). */
  Session session(const SessionParams &params = SessionParams()) const;

 private:
  friend class Session;

  llm_model_info raw_info() const {
    llm_model_info i{};
    i.struct_size = sizeof i;
    detail::check(llm_model_get_info(get(), &i));
    return i;
  }

  std::shared_ptr<llm_model> model_;
  int32_t vocab_size_ = 0;
};

/* ---- Session ---------------------------------------------------------------------- */

class Session {
 public:
  /* An empty handle. */
  Session() noexcept = default;

  /* Reserve a session on `model`; throws Error (LLM_ERR_OUT_OF_MEMORY, ...). */
  explicit Session(const Model &model, const SessionParams &params = SessionParams())
      : model_(model.model_), vocab_size_(model.vocab_size_) {
    if (!model_) throw Error(LLM_ERR_INVALID_ARGUMENT, "the model is empty");
    llm_session_params p = params.to_c();
    detail::check(llm_session_create(model_.get(), &p, &session_));
  }

  ~Session() { release(); }

  Session(const Session &) = delete;
  Session &operator=(const Session &) = delete;
  Session(Session &&other) noexcept
      : session_(std::exchange(other.session_, nullptr)),
        model_(std::move(other.model_)),
        vocab_size_(std::exchange(other.vocab_size_, 0)) {}
  Session &operator=(Session &&other) noexcept {
    if (this != &other) {
      release();  // the old session goes before the model it may keep alive
      session_ = std::exchange(other.session_, nullptr);
      model_ = std::move(other.model_);
      vocab_size_ = std::exchange(other.vocab_size_, 0);
    }
    return *this;
  }

  explicit operator bool() const noexcept { return session_ != nullptr; }
  llm_session *get() const noexcept { return session_; }
  /* The model's C handle (kept alive by this session). */
  llm_model *model() const noexcept { return model_.get(); }

  /* Forget every token in the context. */
  void reset() { detail::check(llm_session_reset(session_)); }

  size_t n_tokens() const {
    size_t n = 0;
    detail::check(llm_session_n_tokens(session_, &n));
    return n;
  }

  SessionInfo info() const {
    llm_session_info i{};
    i.struct_size = sizeof i;
    detail::check(llm_session_get_info(session_, &i));
    return SessionInfo{i.n_ctx, i.n_batch, i.n_tokens, i.kv_bytes, i.memory_bytes};
  }

  /* Append tokens and run the model over them. */
  void eval(const llm_token *tokens, size_t n) { detail::check(llm_session_eval(session_, tokens, n)); }
  void eval(const std::vector<llm_token> &tokens) { eval(tokens.data(), tokens.size()); }

  /* vocab_size() logits of the last evaluated position, or nullptr; valid
   * until the next eval/generate/reset. */
  const float *logits() const noexcept { return llm_session_logits(session_); }
  const float *logits_at(int32_t i) const noexcept { return llm_session_logits_at(session_, i); }
  int32_t vocab_size() const noexcept { return vocab_size_; }

  /* Sample one token from the current logits. */
  llm_token sample(const GenerateParams &params = GenerateParams()) {
    llm_generate_params p = params.to_c();
    llm_token token = -1;
    detail::check(llm_session_sample(session_, &p, &token));
    return token;
  }

  /* Stop a running eval/generate at its next step (it then throws Error
   * with LLM_ERR_CANCELLED). The one member that may be called from another
   * thread while this session works. */
  void cancel() const noexcept { llm_session_cancel(session_); }

  StopReason stop_reason() const noexcept { return static_cast<StopReason>(llm_session_stop_reason(session_)); }

  /* Evaluate `prompt` after the context ("" continues from it), then sample
   * tokens and call `on_piece` with the text of each: a callable taking
   * (std::string_view piece) or (std::string_view piece, llm_token token)
   * (token -1 for text held back until the end) and returning void (go on)
   * or bool (true: go on, false: stop). Pieces are complete UTF-8 and may
   * be empty. An exception thrown by on_piece stops generation and is
   * rethrown here after llm_generate returns; the session stays usable.
   * Returns why generation stopped. */
  template <class F>
  StopReason generate(std::string_view prompt, const GenerateParams &params, F &&on_piece) {
    using Fn = std::remove_reference_t<F>;
    const std::string prompt_z(prompt);  // NUL-terminated
    const llm_generate_params p = params.to_c();
    detail::StreamContext ctx{&detail::invoke_callback<Fn>,
                              const_cast<void *>(static_cast<const void *>(std::addressof(on_piece))), nullptr};
    const llm_status st =
        llm_generate(session_, prompt_z.c_str(), &p, &detail::llm_cpp_stream_trampoline, &ctx);
    if (ctx.error) std::rethrow_exception(ctx.error);
    detail::check(st);
    return stop_reason();
  }

  /* generate() collecting the text. */
  std::string generate(std::string_view prompt, const GenerateParams &params = GenerateParams()) {
    std::string text;
    generate(prompt, params, [&text](std::string_view piece) { text.append(piece); });
    return text;
  }

 private:
  void release() noexcept {
    llm_session_free(session_);
    session_ = nullptr;
  }

  llm_session *session_ = nullptr;
  std::shared_ptr<llm_model> model_;  // keeps the model alive; released after session_
  int32_t vocab_size_ = 0;
};

inline Session Model::session(const SessionParams &params) const { return Session(*this, params); }

}  // namespace llm::cpp

#endif /* LLM_HPP */
