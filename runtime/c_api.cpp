// The C API (include/llm.h): argument checks, handle casts, and conversion of
// C++ exceptions into llm_status plus a thread-local message. All logic lives
// in the C++ classes below this layer; no exception crosses it.
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "format/error.h"
#include "llm.h"
#include "runtime/c_api_util.h"
#include "runtime/file_io.h"
#include "runtime/generate.h"
#include "runtime/model.h"
#include "runtime/session.h"

struct llm_session {
  std::unique_ptr<llm::Session> session;
  llm_model *owner = nullptr;
  bool shared_pool = false;  // its KV pages come from an llm_kv_pool
};

struct llm_kv_pool {
  std::shared_ptr<llm::KvPool> pool;
  llm_model *owner = nullptr;
};

namespace llm::capi {

namespace {
thread_local std::string t_last_error;
}  // namespace

llm_status set_error(llm_status status, const std::string &message) {
  try {
    t_last_error = message;
  } catch (...) {
    // Out of memory while recording the message: keep the status.
  }
  return status;
}

const char *last_error() { return t_last_error.c_str(); }

llm_status copy_out_text(const std::string &text, char *out, size_t capacity, size_t *len_out) {
  *len_out = text.size();
  if (text.size() > capacity)
    return set_error(LLM_ERR_BUFFER_TOO_SMALL, "need room for " + std::to_string(text.size()) +
                                                   " bytes, capacity is " + std::to_string(capacity));
  if (!text.empty()) std::memcpy(out, text.data(), text.size());
  if (text.size() < capacity) out[text.size()] = '\0';
  return LLM_OK;
}

}  // namespace llm::capi

namespace {

using llm::capi::copy_out_text;
using llm::capi::guarded;
using llm::capi::set_error;

#define LLM_CHECK_ARG(cond, msg) \
  do {                           \
    if (!(cond)) return set_error(LLM_ERR_INVALID_ARGUMENT, msg); \
  } while (0)

// Copies a caller's parameter struct over the defaults. struct_size must be
// at least that of the first published layout and at most ours (a larger one
// comes from a newer header than this library).
template <class T>
llm_status read_params(const T *in, T *out, size_t min_size, const char *what) {
  if (!in) return LLM_OK;
  if (in->struct_size < min_size || in->struct_size > sizeof(T))
    return set_error(LLM_ERR_INVALID_ARGUMENT,
                     std::string(what) + ".struct_size is " + std::to_string(in->struct_size) +
                         "; expected " + std::to_string(sizeof(T)) + " (call " + what + "_init first)");
  std::memcpy(static_cast<void *>(out), in, in->struct_size);
  out->struct_size = sizeof(T);
  return LLM_OK;
}

llm_status copy_out_ids(const std::vector<int32_t> &ids, llm_token *out, size_t capacity, size_t *n_out) {
  *n_out = ids.size();
  if (ids.size() > capacity)
    return set_error(LLM_ERR_BUFFER_TOO_SMALL, "need room for " + std::to_string(ids.size()) +
                                                   " tokens, capacity is " + std::to_string(capacity));
  if (!ids.empty()) std::memcpy(out, ids.data(), ids.size() * sizeof(llm_token));
  return LLM_OK;
}


// Copies a filled info struct into the caller's, no more than the caller's
// struct_size bytes (which must cover at least the first published layout).
template <class T>
llm_status copy_info(const T &full, T *out, size_t min_size, const char *what) {
  if (out->struct_size < min_size)
    return set_error(LLM_ERR_INVALID_ARGUMENT, std::string(what) + "->struct_size is " +
                                                   std::to_string(out->struct_size) + "; set it to sizeof(" +
                                                   what + ")");
  const size_t n = std::min(out->struct_size, sizeof(T));
  std::memcpy(static_cast<void *>(out), &full, n);
  out->struct_size = n;
  return LLM_OK;
}

}  // namespace

extern "C" {

const char *llm_version(void) { return "0.1.0"; }
int llm_api_version(void) { return LLM_API_VERSION; }

const char *llm_status_string(llm_status status) {
  // A C caller may pass any int; read the bits as one, never as an
  // out-of-range C++ enum value.
  int value = 0;
  static_assert(sizeof status == sizeof value, "llm_status is int-sized");
  std::memcpy(&value, &status, sizeof value);
  switch (value) {
    case LLM_OK: return "LLM_OK";
    case LLM_ERR_INVALID_ARGUMENT: return "LLM_ERR_INVALID_ARGUMENT";
    case LLM_ERR_IO: return "LLM_ERR_IO";
    case LLM_ERR_FORMAT: return "LLM_ERR_FORMAT";
    case LLM_ERR_UNSUPPORTED: return "LLM_ERR_UNSUPPORTED";
    case LLM_ERR_OUT_OF_MEMORY: return "LLM_ERR_OUT_OF_MEMORY";
    case LLM_ERR_CONTEXT_FULL: return "LLM_ERR_CONTEXT_FULL";
    case LLM_ERR_BUFFER_TOO_SMALL: return "LLM_ERR_BUFFER_TOO_SMALL";
    case LLM_ERR_CANCELLED: return "LLM_ERR_CANCELLED";
    case LLM_ERR_INVALID_TOKEN: return "LLM_ERR_INVALID_TOKEN";
    case LLM_ERR_INTERNAL: return "LLM_ERR_INTERNAL";
  }
  return "LLM_ERR_UNKNOWN";
}

const char *llm_last_error(void) { return llm::capi::last_error(); }

// ---- model --------------------------------------------------------------------

void llm_model_params_init(llm_model_params *p) {
  if (!p) return;
  std::memset(p, 0, sizeof *p);
  p->struct_size = sizeof *p;
  p->n_threads = 0;
  p->device = nullptr;
  p->verify = LLM_VERIFY_FULL;
}

llm_status llm_model_load(const char *path, const llm_model_params *params, llm_model **out) {
  LLM_CHECK_ARG(out, "out is NULL");
  *out = nullptr;
  LLM_CHECK_ARG(path, "path is NULL");
  llm_model_params p;
  llm_model_params_init(&p);
  if (llm_status st = read_params(params, &p, sizeof(llm_model_params), "llm_model_params")) return st;
  LLM_CHECK_ARG(p.verify == LLM_VERIFY_FULL || p.verify == LLM_VERIFY_NONE, "verify must be an llm_verify value");
  LLM_CHECK_ARG(p.n_threads >= 0 && p.n_threads <= 1024, "n_threads must be in [0, 1024]");
  return guarded([&] {
    llm::ModelOptions o;
    o.n_threads = p.n_threads;
    if (p.device) o.device = p.device;
    o.verify = p.verify == LLM_VERIFY_NONE ? llm::ModelFile::Verify::None : llm::ModelFile::Verify::Full;
    auto handle = std::make_unique<llm_model>();
    handle->model = llm::Model::load(path, o);
    *out = handle.release();
  });
}

void llm_model_free(llm_model *model) { delete model; }

llm_status llm_model_get_info(const llm_model *model, llm_model_info *info) {
  LLM_CHECK_ARG(model, "model is NULL");
  LLM_CHECK_ARG(info, "info is NULL");
  const llm::Model &m = *model->model;
  const llm::HParams &h = m.hparams();
  llm_model_info r;
  std::memset(&r, 0, sizeof r);
  r.struct_size = sizeof r;
  r.architecture = llm::arch_name(m.meta().arch);
  r.name = m.meta().name.c_str();
  r.vocab_size = static_cast<int32_t>(h.vocab_size);
  r.context_length = static_cast<int32_t>(h.max_context);
  r.n_layers = static_cast<int32_t>(h.num_layers);
  r.hidden_size = static_cast<int32_t>(h.hidden_size);
  r.n_heads = static_cast<int32_t>(h.num_heads);
  r.n_kv_heads = static_cast<int32_t>(h.num_kv_heads);
  r.n_params = m.meta().parameter_count;
  r.weights_bytes = m.file().weights_bytes();
  r.bos_token = m.meta().generation.bos_id;
  r.eos_token = m.meta().generation.eos_ids.empty() ? -1 : m.meta().generation.eos_ids[0];
  r.vocab_only = m.vocab_only() ? 1 : 0;
  r.decode_bytes_per_token = m.decode_bytes_per_token();
  r.weights_type = m.weights_type();
  return copy_info(r, info, sizeof(llm_model_info), "llm_model_info");
}

int llm_token_is_eog(const llm_model *model, llm_token token) {
  return model && model->model->is_eog(token) ? 1 : 0;
}

// ---- tokenizer --------------------------------------------------------------------

llm_status llm_tokenize_ex(const llm_model *model, const char *text, size_t len, int add_special,
                           int flags, llm_token *out, size_t capacity, size_t *n_out) {
  LLM_CHECK_ARG(model, "model is NULL");
  LLM_CHECK_ARG(n_out, "n_out is NULL");
  *n_out = 0;
  LLM_CHECK_ARG(text || len == 0, "text is NULL");
  LLM_CHECK_ARG(out || capacity == 0, "out is NULL but capacity is not 0");
  LLM_CHECK_ARG((flags & ~LLM_TOKENIZE_PARSE_SPECIAL_OFF) == 0, "unknown tokenize flags");
  llm_status st = LLM_OK;
  llm_status g = guarded([&] {
    bool parse_special = (flags & LLM_TOKENIZE_PARSE_SPECIAL_OFF) == 0;
    std::vector<int32_t> ids = model->model->tokenizer().encode(
        std::string_view(text ? text : "", len), add_special != 0, parse_special);
    st = copy_out_ids(ids, out, capacity, n_out);
  });
  return g != LLM_OK ? g : st;
}

llm_status llm_tokenize(const llm_model *model, const char *text, size_t len, int add_special,
                        llm_token *out, size_t capacity, size_t *n_out) {
  return llm_tokenize_ex(model, text, len, add_special, LLM_TOKENIZE_DEFAULT, out, capacity, n_out);
}

llm_status llm_detokenize(const llm_model *model, const llm_token *tokens, size_t n, char *out,
                          size_t capacity, size_t *len_out) {
  LLM_CHECK_ARG(model, "model is NULL");
  LLM_CHECK_ARG(len_out, "len_out is NULL");
  *len_out = 0;
  LLM_CHECK_ARG(tokens || n == 0, "tokens is NULL");
  LLM_CHECK_ARG(out || capacity == 0, "out is NULL but capacity is not 0");
  llm_status st = LLM_OK;
  llm_status g = guarded([&] {
    std::string text = model->model->tokenizer().decode(tokens, n);
    st = copy_out_text(text, out, capacity, len_out);
  });
  return g != LLM_OK ? g : st;
}

llm_status llm_token_to_piece(const llm_model *model, llm_token token, char *out, size_t capacity,
                              size_t *len_out) {
  LLM_CHECK_ARG(model, "model is NULL");
  LLM_CHECK_ARG(len_out, "len_out is NULL");
  *len_out = 0;
  LLM_CHECK_ARG(out || capacity == 0, "out is NULL but capacity is not 0");
  const llm::Tokenizer &tok = model->model->tokenizer();
  if (token < 0 || token >= tok.vocab_size())
    return set_error(LLM_ERR_INVALID_TOKEN, "token " + std::to_string(token) + " is outside the vocabulary");
  return guarded([&] {
    std::string piece(tok.max_piece_bytes(), '\0');
    piece.resize(tok.token_to_piece(token, false, piece.data(), piece.size()));
    llm_status st = copy_out_text(piece, out, capacity, len_out);
    if (st != LLM_OK) throw llm::Error(st, llm_last_error());
  });
}

// ---- session ----------------------------------------------------------------------

void llm_session_params_init(llm_session_params *p) {
  if (!p) return;
  std::memset(p, 0, sizeof *p);
  p->struct_size = sizeof *p;
}

// Layout sizes of the first published versions of growing structs.
constexpr size_t kSessionParamsV1 = offsetof(llm_session_params, kv_type);
constexpr size_t kSessionInfoV1 = offsetof(llm_session_info, kv_type);

static bool kv_type_of(int32_t v, llm::KvType *t) {
  switch (v) {
    case LLM_KV_DEFAULT:
    case LLM_KV_F16: *t = llm::KvType::F16; return true;
    case LLM_KV_F32: *t = llm::KvType::F32; return true;
    case LLM_KV_BF16: *t = llm::KvType::BF16; return true;
    case LLM_KV_INT8: *t = llm::KvType::Q8; return true;
    case LLM_KV_INT4: *t = llm::KvType::Q4; return true;
    default: return false;
  }
}

static int32_t kv_type_value(llm::KvType t) {
  switch (t) {
    case llm::KvType::F32: return LLM_KV_F32;
    case llm::KvType::F16: return LLM_KV_F16;
    case llm::KvType::BF16: return LLM_KV_BF16;
    case llm::KvType::Q8: return LLM_KV_INT8;
    case llm::KvType::Q4: return LLM_KV_INT4;
  }
  return LLM_KV_DEFAULT;
}

static llm_status session_options(const llm_model *model, const llm_session_params *params,
                                  llm::SessionOptions *o) {
  llm_session_params p;
  llm_session_params_init(&p);
  if (llm_status st = read_params(params, &p, kSessionParamsV1, "llm_session_params")) return st;
  LLM_CHECK_ARG(p.n_ctx >= 0 && p.n_batch >= 0, "n_ctx and n_batch must not be negative");
  LLM_CHECK_ARG(p.n_keep >= 0 && p.n_discard >= 0, "n_keep and n_discard must not be negative");
  LLM_CHECK_ARG(kv_type_of(p.kv_type, &o->kv_type), "kv_type is not an llm_kv_type value");
  LLM_CHECK_ARG(p.context_policy == LLM_CONTEXT_STOP || p.context_policy == LLM_CONTEXT_SHIFT,
                "context_policy is not an llm_context_policy value");
  LLM_CHECK_ARG(!p.kv_pool || p.kv_pool->owner == model, "kv_pool belongs to another model");
  o->n_ctx = p.n_ctx;
  o->n_batch = p.n_batch;
  o->logits_all = p.logits_all != 0;
  o->memory_limit = p.memory_limit;
  o->policy = p.context_policy == LLM_CONTEXT_SHIFT ? llm::ContextPolicy::Shift : llm::ContextPolicy::Stop;
  o->n_keep = p.n_keep;
  o->n_discard = p.n_discard;
  o->pool = p.kv_pool ? p.kv_pool->pool : nullptr;
  return LLM_OK;
}

llm_status llm_session_memory_required(const llm_model *model, const llm_session_params *params,
                                       uint64_t *bytes) {
  LLM_CHECK_ARG(model, "model is NULL");
  LLM_CHECK_ARG(bytes, "bytes is NULL");
  llm::SessionOptions o;
  if (llm_status st = session_options(model, params, &o)) return st;
  return guarded([&] { *bytes = llm::plan_session_memory(*model->model, o).total(); });
}

llm_status llm_session_create(llm_model *model, const llm_session_params *params, llm_session **out) {
  LLM_CHECK_ARG(out, "out is NULL");
  *out = nullptr;
  LLM_CHECK_ARG(model, "model is NULL");
  llm::SessionOptions o;
  if (llm_status st = session_options(model, params, &o)) return st;
  return guarded([&] {
    auto handle = std::make_unique<llm_session>();
    handle->session = std::make_unique<llm::Session>(*model->model, o);
    handle->owner = model;
    handle->shared_pool = o.pool != nullptr;
    *out = handle.release();
  });
}

llm_status llm_session_fork(const llm_session *src, const llm_session_params *params, llm_session **out) {
  LLM_CHECK_ARG(out, "out is NULL");
  *out = nullptr;
  LLM_CHECK_ARG(src, "src is NULL");
  llm::SessionOptions o;
  if (params) {
    if (llm_status st = session_options(src->owner, params, &o)) return st;
    // LLM_KV_DEFAULT in a fork means the source's type (what a copy needs).
    if (params->struct_size <= kSessionParamsV1 || params->kv_type == LLM_KV_DEFAULT)
      o.kv_type = src->session->kv().geometry().type;
  } else {
    o = src->session->options();
    if (!src->shared_pool) o.pool = nullptr;  // src's own pool serves only src
  }
  return guarded([&] {
    auto handle = std::make_unique<llm_session>();
    handle->session = std::make_unique<llm::Session>(*src->owner->model, o, src->session.get());
    handle->owner = src->owner;
    handle->shared_pool = o.pool != nullptr;
    *out = handle.release();
  });
}

void llm_kv_pool_params_init(llm_kv_pool_params *p) {
  if (!p) return;
  std::memset(p, 0, sizeof *p);
  p->struct_size = sizeof *p;
}

llm_status llm_kv_pool_create(llm_model *model, const llm_kv_pool_params *params, llm_kv_pool **out) {
  LLM_CHECK_ARG(out, "out is NULL");
  *out = nullptr;
  LLM_CHECK_ARG(model, "model is NULL");
  llm_kv_pool_params p;
  llm_kv_pool_params_init(&p);
  if (llm_status st = read_params(params, &p, sizeof(llm_kv_pool_params), "llm_kv_pool_params")) return st;
  llm::KvType t;
  LLM_CHECK_ARG(kv_type_of(p.kv_type, &t), "kv_type is not an llm_kv_type value");
  LLM_CHECK_ARG(p.n_tokens > 0, "n_tokens must be positive");
  return guarded([&] {
    const llm::KvGeometry g = llm::kv_geometry(*model->model, t);
    const int64_t pages = llm::pages_for(p.n_tokens);
    const uint64_t bytes = static_cast<uint64_t>(pages) * g.page_bytes();
    if (p.memory_limit && bytes > p.memory_limit)
      llm::fail(LLM_ERR_OUT_OF_MEMORY, "the KV pool needs " + std::to_string(bytes) + " bytes (" +
                                           std::to_string(pages) + " pages) but memory_limit is " +
                                           std::to_string(p.memory_limit));
    auto handle = std::make_unique<llm_kv_pool>();
    handle->pool = std::make_shared<llm::KvPool>(model->model->backend(), g, pages);
    handle->owner = model;
    *out = handle.release();
  });
}

void llm_kv_pool_free(llm_kv_pool *pool) { delete pool; }

llm_status llm_kv_pool_get_info(const llm_kv_pool *pool, llm_kv_pool_info *info) {
  LLM_CHECK_ARG(pool, "pool is NULL");
  LLM_CHECK_ARG(info, "info is NULL");
  const llm::KvPool &kp = *pool->pool;
  const llm::KvPool::Usage u = kp.usage();
  llm_kv_pool_info r;
  std::memset(&r, 0, sizeof r);
  r.struct_size = sizeof r;
  r.kv_type = kv_type_value(kp.geometry().type);
  r.page_tokens = static_cast<int32_t>(llm::kPageTokens);
  r.n_pages = kp.n_pages();
  r.pages_used = u.used;
  r.pages_committed = u.committed;
  r.pages_shared = u.shared;
  r.bytes = kp.bytes();
  return copy_info(r, info, sizeof(llm_kv_pool_info), "llm_kv_pool_info");
}

void llm_session_free(llm_session *session) { delete session; }

llm_status llm_session_reset(llm_session *session) {
  LLM_CHECK_ARG(session, "session is NULL");
  return guarded([&] { session->session->reset(); });
}

llm_status llm_session_truncate(llm_session *session, size_t n_tokens) {
  LLM_CHECK_ARG(session, "session is NULL");
  LLM_CHECK_ARG(n_tokens <= static_cast<size_t>(session->session->n_tokens()),
                "n_tokens " + std::to_string(n_tokens) + " exceeds the " +
                    std::to_string(session->session->n_tokens()) + " tokens the session holds");
  return guarded([&] { session->session->truncate(static_cast<int64_t>(n_tokens)); });
}

llm_status llm_decode_batch(llm_session *const *sessions, const llm_token *tokens, size_t n) {
  LLM_CHECK_ARG(sessions || n == 0, "sessions is NULL");
  LLM_CHECK_ARG(tokens || n == 0, "tokens is NULL");
  if (n == 0) return LLM_OK;
  if (n > 1024) return set_error(LLM_ERR_INVALID_ARGUMENT, "at most 1024 sessions in one batch");
  llm::Session *list[1024];
  for (size_t i = 0; i < n; ++i) {
    LLM_CHECK_ARG(sessions[i], "sessions[" + std::to_string(i) + "] is NULL");
    list[i] = sessions[i]->session.get();
  }
  return guarded([&] { llm::Session::decode_batch(list, tokens, n); });
}

llm_status llm_session_state_size(const llm_session *session, size_t *bytes) {
  LLM_CHECK_ARG(session, "session is NULL");
  LLM_CHECK_ARG(bytes, "bytes is NULL");
  *bytes = session->session->state_size();
  return LLM_OK;
}

llm_status llm_session_save(const llm_session *session, void *buf, size_t capacity, size_t *len_out) {
  LLM_CHECK_ARG(session, "session is NULL");
  LLM_CHECK_ARG(len_out, "len_out is NULL");
  const size_t need = session->session->state_size();
  *len_out = need;
  if (capacity < need)
    return set_error(LLM_ERR_BUFFER_TOO_SMALL, "the session state needs " + std::to_string(need) +
                                                   " bytes, capacity is " + std::to_string(capacity));
  LLM_CHECK_ARG(buf, "buf is NULL");
  return guarded([&] { session->session->save_state(static_cast<uint8_t *>(buf), capacity); });
}

llm_status llm_session_restore(llm_session *session, const void *buf, size_t len) {
  LLM_CHECK_ARG(session, "session is NULL");
  LLM_CHECK_ARG(buf || len == 0, "buf is NULL");
  return guarded([&] { session->session->restore_state(static_cast<const uint8_t *>(buf), len); });
}

llm_status llm_session_save_file(const llm_session *session, const char *path) {
  LLM_CHECK_ARG(session, "session is NULL");
  LLM_CHECK_ARG(path && *path, "path is NULL or empty");
  return guarded([&] {
    std::vector<uint8_t> bytes(session->session->state_size());
    session->session->save_state(bytes.data(), bytes.size());
    llm::write_file_atomically(path, bytes.data(), bytes.size());
  });
}

llm_status llm_session_restore_file(llm_session *session, const char *path) {
  LLM_CHECK_ARG(session, "session is NULL");
  LLM_CHECK_ARG(path && *path, "path is NULL or empty");
  return guarded([&] {
    std::vector<uint8_t> bytes = llm::read_whole_file(path);
    session->session->restore_state(bytes.data(), bytes.size());
  });
}

llm_status llm_session_get_info(const llm_session *session, llm_session_info *info) {
  LLM_CHECK_ARG(session, "session is NULL");
  LLM_CHECK_ARG(info, "info is NULL");
  const llm::Session &s = *session->session;
  llm_session_info r;
  std::memset(&r, 0, sizeof r);
  r.struct_size = sizeof r;
  r.n_ctx = static_cast<int32_t>(s.n_ctx());
  r.n_batch = static_cast<int32_t>(s.memory().n_batch);
  r.n_tokens = static_cast<int32_t>(s.n_tokens());
  r.kv_bytes = s.memory().kv_bytes;
  r.memory_bytes = s.memory().total();
  r.kv_type = kv_type_value(s.kv().geometry().type);
  r.context_policy = s.options().policy == llm::ContextPolicy::Shift ? LLM_CONTEXT_SHIFT : LLM_CONTEXT_STOP;
  r.kv_bytes_per_token = s.kv().geometry().bytes_per_token();
  r.n_shifts = s.n_shifts();
  return copy_info(r, info, kSessionInfoV1, "llm_session_info");
}

llm_status llm_session_n_tokens(const llm_session *session, size_t *n_out) {
  LLM_CHECK_ARG(session, "session is NULL");
  LLM_CHECK_ARG(n_out, "n_out is NULL");
  *n_out = static_cast<size_t>(session->session->n_tokens());
  return LLM_OK;
}

llm_status llm_session_eval(llm_session *session, const llm_token *tokens, size_t n) {
  LLM_CHECK_ARG(session, "session is NULL");
  LLM_CHECK_ARG(tokens || n == 0, "tokens is NULL");
  session->session->clear_cancel();
  return guarded([&] { session->session->eval(tokens, n); });
}

// The logits come from backend memory on first use, which can fail (a GPU
// error): NULL then, with the reason in llm_last_error.
const float *llm_session_logits(const llm_session *session) {
  const float *out = nullptr;
  if (session) guarded([&] { out = session->session->logits(); });
  return out;
}

const float *llm_session_logits_at(const llm_session *session, int32_t i) {
  const float *out = nullptr;
  if (session) guarded([&] { out = session->session->logits_at(i); });
  return out;
}

void llm_session_cancel(llm_session *session) {
  if (session) session->session->cancel();
}

// ---- generation ---------------------------------------------------------------------

void llm_generate_params_init(llm_generate_params *p) {
  if (!p) return;
  std::memset(p, 0, sizeof *p);
  p->struct_size = sizeof *p;
  p->max_tokens = 256;
  p->temperature = 0.8f;
  p->top_k = 40;
  p->top_p = 0.95f;
  p->min_p = 0.05f;
  p->repeat_penalty = 1.0f;
  p->repeat_last_n = 64;
  p->seed = 0;
  p->add_special = 1;
  p->parse_special = 1;
}

static llm_status sampler_params(const llm_generate_params *params, llm_generate_params *p,
                                 llm::SamplerParams *sp) {
  llm_generate_params_init(p);
  if (llm_status st = read_params(params, p, sizeof(llm_generate_params), "llm_generate_params")) return st;
  LLM_CHECK_ARG(p->temperature == p->temperature, "temperature is NaN");
  LLM_CHECK_ARG(p->top_p == p->top_p && p->min_p == p->min_p, "top_p / min_p is NaN");
  LLM_CHECK_ARG(p->repeat_penalty > 0, "repeat_penalty must be > 0");
  LLM_CHECK_ARG(p->n_stop >= 0 && p->n_stop <= LLM_MAX_STOP_STRINGS, "n_stop out of range");
  sp->temperature = p->temperature;
  sp->top_k = p->top_k;
  sp->top_p = p->top_p;
  sp->min_p = p->min_p;
  sp->repeat_penalty = p->repeat_penalty;
  sp->repeat_last_n = p->repeat_last_n;
  return LLM_OK;
}

llm_status llm_generate(llm_session *session, const char *prompt, const llm_generate_params *params,
                        llm_stream_fn on_piece, void *user_data) {
  LLM_CHECK_ARG(session, "session is NULL");
  llm_generate_params p;
  llm::GenerateOptions o;
  if (llm_status st = sampler_params(params, &p, &o.sampler)) return st;
  for (int32_t i = 0; i < p.n_stop; ++i) {
    LLM_CHECK_ARG(p.stop[i], "stop string is NULL");
    o.stops[i] = p.stop[i];
  }
  o.n_stops = static_cast<size_t>(p.n_stop);
  o.max_tokens = p.max_tokens;
  o.seed = p.seed;
  o.add_special = p.add_special != 0;
  o.parse_special = p.parse_special != 0;
  o.ignore_eos = p.ignore_eos != 0;
  session->session->clear_cancel();
  return guarded([&] {
    llm::generate(*session->session, prompt ? std::string_view(prompt) : std::string_view(), o, on_piece,
                  user_data);
  });
}

int llm_session_stop_reason(const llm_session *session) {
  return session ? session->session->stop_reason : LLM_STOP_NONE;
}

llm_status llm_session_sample(llm_session *session, const llm_generate_params *params, llm_token *out) {
  LLM_CHECK_ARG(session, "session is NULL");
  LLM_CHECK_ARG(out, "out is NULL");
  llm_generate_params p;
  llm::SamplerParams sp;
  if (llm_status st = sampler_params(params, &p, &sp)) return st;
  llm::Session &s = *session->session;
  if (!s.has_logits()) return set_error(LLM_ERR_INVALID_ARGUMENT, "no logits: evaluate tokens first");
  if (!s.sampler_seeded) {
    s.sampler().seed(p.seed);
    s.sampler_seeded = true;
  }
  return guarded([&] { *out = s.sample(sp); });
}

}  // extern "C"
