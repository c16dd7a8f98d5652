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

/* ---- KV cache types and context policies ------------------------------------------ */

/* llm_kv_type: storage of the KV cache (see llm.h for the bytes of each). */
enum class KvType : int32_t {
  Default = LLM_KV_DEFAULT, /* F16 */
  F32 = LLM_KV_F32,
  F16 = LLM_KV_F16,
  BF16 = LLM_KV_BF16,
  Int8 = LLM_KV_INT8,
  Int4 = LLM_KV_INT4
};

/* "default", "f32", "f16", "bf16", "int8", "int4" ("unknown" otherwise). */
inline const char *to_string(KvType t) noexcept {
  switch (t) {
    case KvType::Default: return "default";
    case KvType::F32: return "f32";
    case KvType::F16: return "f16";
    case KvType::BF16: return "bf16";
    case KvType::Int8: return "int8";
    case KvType::Int4: return "int4";
  }
  return "unknown";
}

namespace detail {
inline std::string lower(std::string_view s) {
  std::string out;
  for (char c : s) out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
  return out;
}
}  // namespace detail

/* The KvType named by `name` (any case); throws Error(LLM_ERR_INVALID_ARGUMENT). */
inline KvType parse_kv_type(std::string_view name) {
  const std::string n = detail::lower(name);
  for (KvType t : {KvType::Default, KvType::F32, KvType::F16, KvType::BF16, KvType::Int8, KvType::Int4})
    if (n == to_string(t)) return t;
  throw Error(LLM_ERR_INVALID_ARGUMENT,
              "unknown KV type \"" + std::string(name) + "\" (expected f32, f16, bf16, int8, int4 or default)");
}

/* llm_context_policy: what happens when the context is full. */
enum class ContextPolicy : int32_t {
  Stop = LLM_CONTEXT_STOP,  /* eval fails with LLM_ERR_CONTEXT_FULL; generate stops */
  Shift = LLM_CONTEXT_SHIFT /* drop the oldest tokens after n_keep and go on */
};

inline const char *to_string(ContextPolicy p) noexcept {
  switch (p) {
    case ContextPolicy::Stop: return "stop";
    case ContextPolicy::Shift: return "shift";
  }
  return "unknown";
}

/* "stop" or "shift" (any case); throws Error(LLM_ERR_INVALID_ARGUMENT). */
inline ContextPolicy parse_context_policy(std::string_view name) {
  const std::string n = detail::lower(name);
  if (n == "stop") return ContextPolicy::Stop;
  if (n == "shift") return ContextPolicy::Shift;
  throw Error(LLM_ERR_INVALID_ARGUMENT, "unknown context policy \"" + std::string(name) + "\" (expected stop or shift)");
}

class KvPool;

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
  KvType kv_type;         /* storage of the KV cache (ignored on a pool: the pool's) */
  ContextPolicy context_policy;
  int32_t n_keep;         /* ContextPolicy::Shift: tokens at the start never dropped */
  int32_t n_discard;      /* ContextPolicy::Shift: tokens dropped per shift; 0 = half */
  /* nullptr: a KV cache of the session's own. Otherwise the pool (of the same
   * model) its pages come from; it need only be alive during the call that
   * takes these parameters. */
  const KvPool *kv_pool = nullptr;

  SessionParams() {
    llm_session_params p;
    llm_session_params_init(&p);
    n_ctx = p.n_ctx;
    n_batch = p.n_batch;
    logits_all = p.logits_all != 0;
    memory_limit = p.memory_limit;
    kv_type = static_cast<KvType>(p.kv_type);
    context_policy = static_cast<ContextPolicy>(p.context_policy);
    n_keep = p.n_keep;
    n_discard = p.n_discard;
  }

  /* The C struct (defined after KvPool). */
  llm_session_params to_c() const;
};

struct KvPoolParams {
  KvType kv_type;        /* cache type of every session on the pool */
  int32_t n_tokens;      /* capacity in positions over all its sessions (rounded up to pages) */
  uint64_t memory_limit; /* 0 = none; LLM_ERR_OUT_OF_MEMORY if the pool would exceed it */

  KvPoolParams() {
    llm_kv_pool_params p;
    llm_kv_pool_params_init(&p);
    kv_type = static_cast<KvType>(p.kv_type);
    n_tokens = p.n_tokens;
    memory_limit = p.memory_limit;
  }
  explicit KvPoolParams(int32_t tokens, KvType type = KvType::Default) : KvPoolParams() {
    n_tokens = tokens;
    kv_type = type;
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
  uint64_t kv_bytes = 0;      /* KV cache reserved by the session (0 on a shared pool) */
  uint64_t memory_bytes = 0;
  /* Since API version 2. */
  KvType kv_type = KvType::Default;  /* the type in use (never Default from a version-2 library) */
  ContextPolicy context_policy = ContextPolicy::Stop;
  uint64_t kv_bytes_per_token = 0;   /* KV bytes of one position, all layers */
  uint64_t n_shifts = 0;             /* context shifts so far */
};

struct KvPoolInfo {
  KvType kv_type = KvType::Default;
  int32_t page_tokens = 0;      /* LLM_KV_PAGE_TOKENS */
  int64_t n_pages = 0;
  int64_t pages_used = 0;       /* holding tokens of some session */
  int64_t pages_committed = 0;  /* promised to sessions, not yet used */
  int64_t pages_shared = 0;     /* used by more than one session */
  uint64_t bytes = 0;           /* memory reserved by the pool */

  /* Pages neither used nor promised: what new sessions can still get. */
  int64_t pages_free() const noexcept { return n_pages - pages_used - pages_committed; }
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

  /* A KV pool of `n_tokens` positions for sessions of this model (defined below). */
  KvPool kv_pool(int32_t n_tokens, KvType kv_type = KvType::Default) const;

 private:
  friend class Session;
  friend class KvPool;

  llm_model_info raw_info() const {
    llm_model_info i{};
    i.struct_size = sizeof i;
    detail::check(llm_model_get_info(get(), &i));
    return i;
  }

  std::shared_ptr<llm_model> model_;
  int32_t vocab_size_ = 0;
};

/* ---- KV pool ---------------------------------------------------------------------- */

/* A pool of KV-cache pages shared by sessions of one model (llm_kv_pool).
 * Memory is committed up front: a session created on the pool reserves every
 * page it may still need (less those it shares), or fails with
 * LLM_ERR_OUT_OF_MEMORY, so generation never runs out of pages. Sessions of
 * the pool using ContextPolicy::Stop share the full pages of a common prefix
 * copy-on-write (Session::fork). Thread-safe; move-only. */
class KvPool {
 public:
  /* An empty handle. */
  KvPool() noexcept = default;

  /* Reserve a pool; throws Error (LLM_ERR_OUT_OF_MEMORY stating the bytes needed, ...). */
  KvPool(const Model &model, const KvPoolParams &params) : model_(model.model_), vocab_size_(model.vocab_size_) {
    if (!model_) throw Error(LLM_ERR_INVALID_ARGUMENT, "the model is empty");
    llm_kv_pool_params p;
    llm_kv_pool_params_init(&p);
    p.kv_type = static_cast<int32_t>(params.kv_type);
    p.n_tokens = params.n_tokens;
    p.memory_limit = params.memory_limit;
    llm_kv_pool *raw = nullptr;
    detail::check(llm_kv_pool_create(model_.get(), &p, &raw));
    pool_ = std::shared_ptr<llm_kv_pool>(raw, llm_kv_pool_free);
  }
  KvPool(const Model &model, int32_t n_tokens, KvType kv_type = KvType::Default)
      : KvPool(model, KvPoolParams(n_tokens, kv_type)) {}

  KvPool(const KvPool &) = delete;
  KvPool &operator=(const KvPool &) = delete;
  KvPool(KvPool &&other) noexcept
      : model_(std::move(other.model_)),
        pool_(std::move(other.pool_)),
        vocab_size_(std::exchange(other.vocab_size_, 0)) {}
  KvPool &operator=(KvPool &&other) noexcept {
    pool_ = std::move(other.pool_);  // the pool goes before the model it may keep alive
    model_ = std::move(other.model_);
    vocab_size_ = std::exchange(other.vocab_size_, 0);
    return *this;
  }

  explicit operator bool() const noexcept { return pool_ != nullptr; }
  llm_kv_pool *get() const noexcept { return pool_.get(); }
  /* The model's C handle (kept alive by this pool). */
  llm_model *model() const noexcept { return model_.get(); }

  KvPoolInfo info() const {
    llm_kv_pool_info i{};
    i.struct_size = sizeof i;
    detail::check(llm_kv_pool_get_info(get(), &i));
    KvPoolInfo r;
    r.kv_type = static_cast<KvType>(i.kv_type);
    r.page_tokens = i.page_tokens;
    r.n_pages = i.n_pages;
    r.pages_used = i.pages_used;
    r.pages_committed = i.pages_committed;
    r.pages_shared = i.pages_shared;
    r.bytes = i.bytes;
    return r;
  }

  /* A session on the pool's model taking its pages from this pool
   * (params.kv_pool is set to this pool). Defined below. */
  Session session(SessionParams params = SessionParams()) const;

 private:
  std::shared_ptr<llm_model> model_;  // declared first: released after pool_
  std::shared_ptr<llm_kv_pool> pool_;
  int32_t vocab_size_ = 0;
};

inline llm_session_params SessionParams::to_c() const {
  llm_session_params p;
  llm_session_params_init(&p);
  p.n_ctx = n_ctx;
  p.n_batch = n_batch;
  p.logits_all = logits_all ? 1 : 0;
  p.memory_limit = memory_limit;
  p.kv_type = static_cast<int32_t>(kv_type);
  p.context_policy = static_cast<int32_t>(context_policy);
  p.n_keep = n_keep;
  p.n_discard = n_discard;
  p.kv_pool = kv_pool ? kv_pool->get() : nullptr;
  return p;
}

inline KvPool Model::kv_pool(int32_t n_tokens, KvType kv_type) const { return KvPool(*this, n_tokens, kv_type); }

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
    SessionInfo r;
    r.n_ctx = i.n_ctx;
    r.n_batch = i.n_batch;
    r.n_tokens = i.n_tokens;
    r.kv_bytes = i.kv_bytes;
    r.memory_bytes = i.memory_bytes;
    if (i.struct_size >= offsetof(llm_session_info, n_shifts) + sizeof i.n_shifts) {
      r.kv_type = static_cast<KvType>(i.kv_type);
      r.context_policy = static_cast<ContextPolicy>(i.context_policy);
      r.kv_bytes_per_token = i.kv_bytes_per_token;
      r.n_shifts = i.n_shifts;
    }
    return r;
  }

  /* Keep only the first n tokens of the context (the KV cache of the rest is
   * dropped without recomputation; logits() is nullptr until the next eval).
   * Throws LLM_ERR_INVALID_ARGUMENT if n exceeds the context,
   * LLM_ERR_OUT_OF_MEMORY (nothing changed) if a shared page cannot be copied. */
  void truncate(size_t n) { detail::check(llm_session_truncate(session_, n)); }

  /* A new session holding a copy of this one's context (tokens, KV cache,
   * last logits) with this session's settings and pool; on a pool (and with
   * ContextPolicy::Stop) the full pages are shared copy-on-write. */
  Session fork() const {
    llm_session *raw = nullptr;
    detail::check(llm_session_fork(session_, nullptr, &raw));
    return Session(raw, model_, vocab_size_);
  }

  /* fork() with other parameters: with params.kv_pool this session's pool the
   * pages are shared, otherwise the cache is copied and must keep this
   * session's type (KvType::Default here means "the source's type"). */
  Session fork(const SessionParams &params) const {
    llm_session_params p = params.to_c();
    if (!params.kv_pool && params.kv_type == KvType::Default) p.kv_type = static_cast<int32_t>(info().kv_type);
    llm_session *raw = nullptr;
    detail::check(llm_session_fork(session_, &p, &raw));
    return Session(raw, model_, vocab_size_);
  }

  /* Bytes save_state() would return now. */
  size_t state_size() const {
    size_t n = 0;
    detail::check(llm_session_state_size(session_, &n));
    return n;
  }

  /* The session's state (tokens, KV cache, last logits): a versioned,
   * checksummed byte string bound to the model file. */
  std::vector<uint8_t> save_state() const {
    return detail::fill<std::vector<uint8_t>>(state_size(), [&](uint8_t *out, size_t cap, size_t *len) {
      return llm_session_save(session_, out, cap, len);
    });
  }

  /* Replace the context with a saved state. Throws LLM_ERR_FORMAT (truncated,
   * corrupt, another version), LLM_ERR_INVALID_ARGUMENT (another model file
   * or KV type), LLM_ERR_CONTEXT_FULL; on failure the session is unchanged. */
  void restore_state(const void *data, size_t len) { detail::check(llm_session_restore(session_, data, len)); }
  void restore_state(const std::vector<uint8_t> &state) { restore_state(state.data(), state.size()); }

  /* The same through a file (written atomically). */
  void save_state_file(const std::string &path) const {
    detail::check(llm_session_save_file(session_, path.c_str()));
  }
  void restore_state_file(const std::string &path) {
    detail::check(llm_session_restore_file(session_, path.c_str()));
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
  friend class KvPool;

  /* Adopts a session just made by the C library. */
  Session(llm_session *raw, std::shared_ptr<llm_model> model, int32_t vocab_size) noexcept
      : session_(raw), model_(std::move(model)), vocab_size_(vocab_size) {}

  void release() noexcept {
    llm_session_free(session_);
    session_ = nullptr;
  }

  llm_session *session_ = nullptr;
  std::shared_ptr<llm_model> model_;  // keeps the model alive; released after session_
  int32_t vocab_size_ = 0;
};

inline Session Model::session(const SessionParams &params) const { return Session(*this, params); }

inline Session KvPool::session(SessionParams params) const {
  if (!pool_) throw Error(LLM_ERR_INVALID_ARGUMENT, "the KV pool is empty");
  params.kv_pool = this;
  llm_session_params p = params.to_c();
  llm_session *raw = nullptr;
  detail::check(llm_session_create(model_.get(), &p, &raw));
  return Session(raw, model_, vocab_size_);
}

/* ---- Batched decode ------------------------------------------------------------------- */

/* Evaluate one token in each of n sessions of one model with a single pass
 * over the weights (llm_decode_batch): tokens[i] is appended to sessions[i],
 * whose logits are then those of its new token. The sessions must be
 * distinct, of one model, and not in use elsewhere; n must not exceed the
 * first one's n_batch. Throws before evaluating anything:
 * LLM_ERR_INVALID_ARGUMENT (a session twice, an empty one, sessions of
 * different models, sizes differ), LLM_ERR_INVALID_TOKEN, LLM_ERR_CONTEXT_FULL
 * (a full context under ContextPolicy::Stop; one under Shift is shifted). */
inline void decode_batch(Session *const *sessions, const llm_token *tokens, size_t n) {
  std::vector<llm_session *> raw(n);
  for (size_t i = 0; i < n; ++i) {
    if (!sessions[i] || !*sessions[i])
      throw Error(LLM_ERR_INVALID_ARGUMENT, "sessions[" + std::to_string(i) + "] is empty");
    raw[i] = sessions[i]->get();
  }
  detail::check(llm_decode_batch(raw.data(), tokens, n));
}

inline void decode_batch(const std::vector<Session *> &sessions, const std::vector<llm_token> &tokens) {
  if (sessions.size() != tokens.size())
    throw Error(LLM_ERR_INVALID_ARGUMENT, std::to_string(sessions.size()) + " sessions but " +
                                              std::to_string(tokens.size()) + " tokens");
  decode_batch(sessions.data(), tokens.data(), sessions.size());
}

inline void decode_batch(std::vector<Session> &sessions, const std::vector<llm_token> &tokens) {
  std::vector<Session *> ptrs;
  ptrs.reserve(sessions.size());
  for (Session &s : sessions) ptrs.push_back(&s);
  decode_batch(ptrs, tokens);
}

}  // namespace llm::cpp

#endif /* LLM_HPP */
