#include "runtime/session.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "format/error.h"
#include "runtime/host_memory.h"

namespace llm {
namespace {

uint64_t align64(uint64_t n) { return (n + 63) / 64 * 64; }

// Carves consecutive 64-byte-aligned pieces out of one block.
class Carver {
 public:
  explicit Carver(void *base) : base_(static_cast<char *>(base)) {}
  template <class T>
  T *take(uint64_t count) {
    T *p = base_ ? reinterpret_cast<T *>(base_ + used_) : nullptr;
    used_ += align64(count * sizeof(T));
    return p;
  }
  uint64_t used() const { return used_; }

 private:
  char *base_;
  uint64_t used_ = 0;
};

struct Dims {
  int64_t d, q_dim, kv_dim, ffn, vocab, half;
};

Dims dims_of(const HParams &h) {
  return Dims{h.hidden_size, int64_t{h.num_heads} * h.head_dim, int64_t{h.num_kv_heads} * h.head_dim,
              h.intermediate_size, h.vocab_size, h.head_dim / 2};
}

// One layout function serves both planning (base == nullptr) and carving, so
// the reported size and the reserved memory cannot disagree.
struct BackendBuffers {
  float *x, *xb, *q, *k, *v, *att, *gate, *up, *logits, *scratch, *kv_k, *kv_v;
  char *mm_scratch;
};
uint64_t layout_backend(void *base, const Dims &dm, const SessionMemory &m, const HParams &h,
                        size_t scratch_floats, size_t mm_scratch_bytes, BackendBuffers *out) {
  Carver c(base);
  BackendBuffers b;
  b.x = c.take<float>(m.n_batch * dm.d);
  b.xb = c.take<float>(m.n_batch * dm.d);
  b.q = c.take<float>(m.n_batch * dm.q_dim);
  b.k = c.take<float>(m.n_batch * dm.kv_dim);
  b.v = c.take<float>(m.n_batch * dm.kv_dim);
  b.att = c.take<float>(m.n_batch * dm.q_dim);
  b.gate = c.take<float>(m.n_batch * dm.ffn);
  b.up = c.take<float>(m.n_batch * dm.ffn);
  b.logits = c.take<float>(m.n_logits * dm.vocab);
  b.scratch = c.take<float>(scratch_floats);
  b.mm_scratch = c.take<char>(mm_scratch_bytes);
  uint64_t kv_half = KvCache::bytes(h.num_layers, h.num_kv_heads, m.n_ctx, h.head_dim) / 2 / sizeof(float);
  b.kv_k = c.take<float>(kv_half);
  b.kv_v = c.take<float>(kv_half);
  if (out) *out = b;
  return c.used();
}

struct HostBuffers {
  float *logits, *cos, *sin, *probs;
  int32_t *tokens, *ids;
  char *piece;
};
uint64_t layout_host(void *base, const Dims &dm, const SessionMemory &m, size_t piece_cap,
                     HostBuffers *out) {
  Carver c(base);
  HostBuffers b;
  b.logits = c.take<float>(m.n_logits * dm.vocab);
  b.cos = c.take<float>(m.n_batch * dm.half);
  b.sin = c.take<float>(m.n_batch * dm.half);
  b.tokens = c.take<int32_t>(m.n_ctx);
  b.ids = c.take<int32_t>(dm.vocab);
  b.probs = c.take<float>(dm.vocab);
  b.piece = c.take<char>(piece_cap);
  if (out) *out = b;
  return c.used();
}

// Matmul workspace for the widest input of any product (the MLP's down
// projection reads intermediate_size columns).
size_t matmul_scratch(const Model &model, const SessionMemory &m) {
  const HParams &h = model.hparams();
  const int64_t widest = std::max<int64_t>({int64_t{h.hidden_size}, int64_t{h.num_heads} * h.head_dim,
                                            int64_t{h.intermediate_size}});
  return model.backend().matmul_scratch_bytes(m.n_batch, widest);
}

size_t piece_bytes_for(const Model &model) { return model.tokenizer().max_piece_bytes() + 16; }

}  // namespace

SessionMemory plan_session_memory(const Model &model, const SessionOptions &o) {
  if (model.vocab_only())
    fail(LLM_ERR_UNSUPPORTED, "the model file is vocab-only (no weights); sessions need weights");
  const HParams &h = model.hparams();
  if (o.n_ctx < 0 || o.n_batch < 0) fail_argument("n_ctx and n_batch must not be negative");
  SessionMemory m;
  m.n_ctx = o.n_ctx == 0 ? h.max_context : o.n_ctx;
  if (m.n_ctx > int64_t{h.max_context})
    fail_argument("n_ctx " + std::to_string(m.n_ctx) + " exceeds the model's context length " +
                  std::to_string(h.max_context));
  m.n_batch = o.n_batch == 0 ? std::min<int64_t>(512, m.n_ctx) : std::min<int64_t>(o.n_batch, m.n_ctx);
  m.n_logits = o.logits_all ? m.n_batch : 1;
  const Dims dm = dims_of(h);
  m.kv_bytes = KvCache::bytes(h.num_layers, h.num_kv_heads, m.n_ctx, h.head_dim);
  m.backend_bytes = layout_backend(nullptr, dm, m, h, model.backend().attention_scratch_floats(m.n_ctx),
                                   matmul_scratch(model, m), nullptr);
  m.activation_bytes = m.backend_bytes - m.kv_bytes;
  m.host_bytes = layout_host(nullptr, dm, m, piece_bytes_for(model), nullptr);
  m.overhead_bytes = sizeof(Session) + sizeof(Sampler) +
                     TextStream::kMaxStopStrings * TextStream::kMaxStopLength +
                     8 * (piece_bytes_for(model) + TextStream::kMaxStopLength);
  return m;
}

Session::Session(const Model &model, const SessionOptions &options)
    : model_(model), mem_(plan_session_memory(model, options)), backend_(model.backend()) {
  if (options.memory_limit != 0 && mem_.total() > options.memory_limit)
    fail(LLM_ERR_OUT_OF_MEMORY,
         "session needs " + std::to_string(mem_.total()) + " bytes (KV cache " +
             std::to_string(mem_.kv_bytes) + ", activations " + std::to_string(mem_.activation_bytes) +
             ", host buffers " + std::to_string(mem_.host_bytes) + ") but memory_limit is " +
             std::to_string(options.memory_limit));
  const HParams &h = model.hparams();
  const Dims dm = dims_of(h);

  backend_block_ = backend_.alloc(mem_.backend_bytes);
  host_block_ = host_alloc(mem_.host_bytes, 64);
  if (!host_block_) {
    backend_.free(backend_block_);
    fail(LLM_ERR_OUT_OF_MEMORY, "cannot allocate " + std::to_string(mem_.host_bytes) + " bytes of host memory");
  }
  BackendBuffers bb;
  layout_backend(backend_block_, dm, mem_, h, backend_.attention_scratch_floats(mem_.n_ctx),
                 matmul_scratch(model, mem_), &bb);
  mm_scratch_ = bb.mm_scratch;
  auto act = [&](float *p, int64_t cols) { return Act{p, mem_.n_batch, cols, cols}; };
  x_ = act(bb.x, dm.d);
  xb_ = act(bb.xb, dm.d);
  q_ = act(bb.q, dm.q_dim);
  k_ = act(bb.k, dm.kv_dim);
  v_ = act(bb.v, dm.kv_dim);
  att_ = act(bb.att, dm.q_dim);
  gate_ = act(bb.gate, dm.ffn);
  up_ = act(bb.up, dm.ffn);
  logits_dev_ = Act{bb.logits, mem_.n_logits, dm.vocab, dm.vocab};
  att_scratch_ = bb.scratch;
  kv_ = KvCache{bb.kv_k, bb.kv_v, h.num_layers, h.num_kv_heads, mem_.n_ctx, h.head_dim};

  HostBuffers hb;
  piece_cap_ = piece_bytes_for(model);
  layout_host(host_block_, dm, mem_, piece_cap_, &hb);
  logits_ = hb.logits;
  rope_cos_ = hb.cos;
  rope_sin_ = hb.sin;
  tokens_ = hb.tokens;
  piece_buf_ = hb.piece;
  try {
    sampler_ = std::make_unique<Sampler>(static_cast<int32_t>(dm.vocab), hb.ids, hb.probs);
    stream_ = std::make_unique<TextStream>(piece_cap_);
  } catch (...) {
    backend_.free(backend_block_);
    host_free(host_block_);
    throw;
  }
}

Session::~Session() {
  backend_.free(backend_block_);
  host_free(host_block_);
}

void Session::reset() {
  n_past_ = 0;
  n_logits_valid_ = 0;
  last_eval_n_ = 0;
  sampler_seeded = false;
  stop_reason = 0;
}

const float *Session::logits() const {
  return n_logits_valid_ > 0 ? logits_ + (n_logits_valid_ - 1) * model_.hparams().vocab_size : nullptr;
}

const float *Session::logits_at(int64_t i) const {
  if (mem_.n_logits == 1 || n_logits_valid_ == 0) return nullptr;
  if (i < 0) i += last_eval_n_;
  // Only the last chunk's rows are kept: they are the last n_logits_valid_ tokens.
  int64_t first_kept = last_eval_n_ - n_logits_valid_;
  if (i < first_kept || i >= last_eval_n_) return nullptr;
  return logits_ + (i - first_kept) * model_.hparams().vocab_size;
}

void Session::eval(const int32_t *tokens, size_t n, bool cancellable) {
  if (n == 0) return;
  if (!tokens) fail_argument("tokens is NULL");
  const int64_t vocab = model_.hparams().vocab_size;
  for (size_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= vocab)
      fail(LLM_ERR_INVALID_TOKEN, "token " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                                      " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
  if (static_cast<uint64_t>(n) > static_cast<uint64_t>(mem_.n_ctx - n_past_))
    fail(LLM_ERR_CONTEXT_FULL, "cannot evaluate " + std::to_string(n) + " tokens: the context holds " +
                                   std::to_string(n_past_) + " of " + std::to_string(mem_.n_ctx));
  n_logits_valid_ = 0;
  last_eval_n_ = static_cast<int64_t>(n);
  for (size_t done = 0; done < n;) {
    if (cancellable && cancelled()) fail(LLM_ERR_CANCELLED, "evaluation cancelled");
    int64_t chunk = std::min<int64_t>(mem_.n_batch, static_cast<int64_t>(n - done));
    bool last_chunk = done + chunk == n;
    forward(tokens + done, chunk, n_past_, mem_.n_logits > 1, cancellable);
    std::memcpy(tokens_ + n_past_, tokens + done, static_cast<size_t>(chunk) * sizeof(int32_t));
    n_past_ += chunk;
    done += chunk;
    if (last_chunk) {
      int64_t rows = mem_.n_logits > 1 ? chunk : 1;
      backend_.read(logits_dev_.slice_rows(0, rows), logits_);
      n_logits_valid_ = rows;
    }
  }
}

void Session::compute_rope_tables(int64_t pos0, int64_t n) {
  const std::vector<double> &inv_freq = model_.rope_inv_freq();
  const int64_t half = static_cast<int64_t>(inv_freq.size());
  const double scale = model_.rope_position_scale();
  for (int64_t i = 0; i < n; ++i) {
    const double pos = static_cast<double>(pos0 + i) * scale;
    for (int64_t j = 0; j < half; ++j) {
      const double angle = pos * inv_freq[j];
      rope_cos_[i * half + j] = static_cast<float>(std::cos(angle));
      rope_sin_[i * half + j] = static_cast<float>(std::sin(angle));
    }
  }
}

}  // namespace llm
